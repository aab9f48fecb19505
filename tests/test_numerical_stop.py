"""A stop asked for during a numerical gradient ends it there, not at the end of the batch.

One iteration of the book's loop takes seconds on the real net (and ``docker stop`` kills
after 10 s), so ``stop`` is polled inside the gradient too; the iteration cut short is
dropped whole and the resumed run still equals the run left alone, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnx.network import MultiLayerNet
from nnx.numerical import layered_numerical_gradient, numerical_gradient
from nnx.training import TrainConfig, train

QUIET = {"log": lambda _: None, "progress": False}


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((60, 20))
    t = rng.integers(0, 10, 60)
    return (x, t), (x[:20], t[:20])


def _after(n: int):
    """A stop that turns true at its n-th poll, and the count of polls."""
    calls: list[int] = []
    return (lambda: calls.append(1) or len(calls) >= n), calls


@pytest.mark.parametrize("method", ["loop", "vectorized"])
def test_a_stop_inside_a_numerical_gradient_ends_the_run_there(method):
    config = TrainConfig(device="cpu", grad="numerical", numerical_method=method, iters=4,
                         batch_size=10, hidden=(6,), eval_every=2)
    alone = train(config, _data(), **QUIET)
    # Polls of one whole run: the loop polls once per coordinate, the vectorised method
    # once per chunk, and the training loop once per iteration.
    never, counted = _after(10**9)
    train(config, _data(), stop=never, **QUIET)
    per_iteration = len(counted) // config.iters
    assert per_iteration > 1, "the gradient does not poll the stop"
    # Stop in the middle of the third iteration's gradient.
    stop, calls = _after(2 * per_iteration + per_iteration // 2 + 1)
    result = train(config, _data(), stop=stop, **QUIET)
    assert len(calls) == 2 * per_iteration + per_iteration // 2 + 1  # nothing after the stop
    assert result.status == "interrupted" and result.checkpoint.iteration == 2
    assert len(result.history["loss"]) == 2
    resumed = train(config, _data(), resume=result.checkpoint, **QUIET)
    for key, want in alone.net.params.items():
        assert np.array_equal(resumed.net.params[key], want), key


def test_a_stopped_gradient_leaves_its_inputs_as_they_were():
    net = MultiLayerNet(20, [6], 10, "relu", 0.01, device="cpu", seed=0)
    (x, t), _ = _data()
    before = {k: np.array(v, copy=True) for k, v in net.params.items()}
    for method in ("loop", "vectorized"):
        with pytest.raises(KeyboardInterrupt):
            net.numerical_gradient(x[:10], t[:10], method=method, stop=_after(2)[0])
    for key, want in before.items():
        assert np.array_equal(net.params[key], want), key
    w = np.array([1.0, 2.0, 3.0])
    with pytest.raises(KeyboardInterrupt):
        numerical_gradient(lambda v: float(np.sum(v**2)), w, stop=_after(3)[0])
    assert w.tolist() == [1.0, 2.0, 3.0]
    net64 = net.astype("float64")
    with pytest.raises(KeyboardInterrupt):
        layered_numerical_gradient(net64, x[:10], t[:10], budget=64, stop=_after(5)[0])
