"""What a run tells its user when it goes wrong or will be slow: a learning rate that gets
past a divergence (tried from the same start), why a run learned nothing, the flag that
shrinks the largest array when memory runs out, and how long the book's one-coordinate
loop would take. :class:`nnx.run.Run` and ``nnx train`` use them."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from backends import Backend
from nnx.errors import out_of_memory, plural
from nnx.network import PREDICT_CHUNK, MultiLayerNet
from nnx.numerical import numerical_gradient
from nnx.training import Data, TrainConfig, TrainResult, train


def divergence_advice(config: TrainConfig, data: Data, result: TrainResult) -> str:
    """The run's message, with a learning rate checked to get past the divergence: the same
    run (weights, batches) is tried at 1/10, 1/100, ... of the rate (six at most), each for
    twice the iterations that diverged (100 at least: losses are checked every 50)."""
    at = result.diverged_at or 1
    iters = min(max(2 * at, 100), config.iters)
    head = result.message.removesuffix("; try a smaller learning rate")
    net = result.net
    if not all(np.isfinite(net.backend.to_numpy(v)).all() for v in net.params.values()):
        head += " (its parameters became NaN or infinite)"  # the loss alone may be nan
    for k in range(1, 7):
        lr = config.lr / 10**k
        probe = dataclasses.replace(config, lr=lr, iters=iters)
        probe.eval_every = probe.iters
        tried = train(probe, data, log=lambda _: None, progress=False)
        if tried.status == "completed" and nothing_learned(tried, data) is None:
            return (f"{head}; --lr {lr:g} trains past iteration {probe.iters} without "
                    f"diverging, to test accuracy {tried.history['test_acc'][-1]:.2f} (tried "
                    "from the same start)")
    return (f"{head}; no rate down to --lr {lr:g} learns within "
            f"{plural(iters, 'iteration')} without diverging (tried from the same start), so "
            "try smaller ones and check the data and --weight-init-std too")


def nothing_learned(result: TrainResult, data: Data) -> str | None:
    """Why the run learned nothing, or None if it did: its last test accuracy is no better
    than always answering the most common digit of the test set (a net whose ReLUs all
    died does that, and so does one left where it started)."""
    labels, acc = data[1][1], result.history["test_acc"]
    guess = float(np.bincount(labels).max() / labels.size)
    if not acc or acc[-1] > guess:
        return None
    return (f"the net learned nothing: its test accuracy {acc[-1]:.4f} is no better than "
            f"always answering the most common digit ({guess:.4f}); a learning rate far too "
            "large or far too small does this, so try another --lr")


def loop_warning(config: TrainConfig, data: Data, be: Backend, sample: int = 20) -> str | None:
    """How long the book's one-coordinate loop would take this run (``--numerical-method
    loop``), from the time of ``sample`` of its coordinates on the run's device; None for
    any other gradient."""
    if config.grad != "numerical" or config.numerical_method != "loop":
        return None
    (x_train, t_train), _ = data
    net = MultiLayerNet(x_train.shape[1], list(config.hidden), 10, config.activation,
                        config.weight_init_std, device=be, seed=config.seed)
    n = min(config.batch_size, x_train.shape[0])
    x, t = be.asarray(x_train[:n], dtype=be.dtype), be.asarray(t_train[:n].astype(np.int64))
    w = net.params["W1"]
    with be.scope():
        seconds = float(be.time(lambda: numerical_gradient(lambda _w: net.loss(x, t), w,
                                                           indices=range(sample)), 1)[0])
    coords = sum(int(np.prod(p.shape)) for p in net.params.values())
    total = seconds / sample * coords * config.iters
    return (f"--numerical-method loop computes {coords:,} partial derivatives one at a time "
            f"in each of {plural(config.iters, 'iteration')}: about {_duration(total)} on "
            f"{be.device}; --numerical-method vectorized gives the same values far faster")


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * size:
            return plural(round(seconds / size), unit)
    return plural(max(round(seconds), 1), "second")


def memory_advice(config: TrainConfig, be: Any, data: Any, exc: BaseException) -> str:
    """The failed allocation, and what to reduce: the array that failed where the error
    names its shape (NumPy's does), else the largest of the run's arrays: the weights
    (--hidden, to sizes whose weights, gradients and optimizer state fit), a batch's
    activations (--batch-size), the hidden activations of the accuracy evaluations, which
    classify PREDICT_CHUNK images at a time (--hidden), or the data set on the device
    (--dtype float32)."""
    (x_train, _), (x_test, _) = data
    n_in, item = x_train.shape[1], 4 if config.dtype == "float32" else 8
    layers = [n_in, *config.hidden, 10]

    def weights(hidden: list[int]) -> int:
        return sum(a * b for a, b in itertools.pairwise([n_in, *hidden, 10]))

    sizes = {"weights": weights(list(config.hidden)),
             "batch": config.batch_size * (n_in + sum(config.hidden) + 10),
             "evaluation": min(PREDICT_CHUNK, x_train.shape[0]) * (sum(config.hidden) + 10),
             "dataset": (x_train.shape[0] + x_test.shape[0]) * n_in}
    failed = _failed_array(tuple(getattr(exc, "shape", None) or ()), config, layers)
    failed = failed or max(sizes, key=lambda k: sizes[k])
    hidden, free = [max(h // 2, 1) for h in config.hidden], be.memory_free()
    while 8 * item * weights(hidden) > free and max(hidden) > 1:  # ~8 copies of W
        hidden = [max(h // 2, 1) for h in hidden]
    smaller_hidden = f"a smaller --hidden (e.g. {' '.join(map(str, hidden))})"
    if failed == "weights":
        hint = smaller_hidden
    elif failed == "batch":
        hint = f"a smaller --batch-size (e.g. {max(config.batch_size // 2, 1)})"
        if sum(config.hidden) > n_in:
            hint += " or --hidden"
    elif failed == "evaluation":
        hint = (f"{smaller_hidden}: the accuracy evaluations hold the hidden activations of "
                f"{PREDICT_CHUNK:,} images at a time")
    elif config.dtype == "float64":
        hint = "--dtype float32 (the data set on the device takes half the memory)"
    else:
        hint = "a device with more free memory"
    return f"{out_of_memory(exc)} training on {be.device}; try {hint}"


def _failed_array(shape: tuple[int, ...], config: TrainConfig, layers: list[int]) -> str | None:
    """Which of the run's arrays an allocation of ``shape`` was, if the shape tells."""
    if len(shape) != 2:
        return None
    rows, cols = shape
    if (rows, cols) in itertools.pairwise(layers):
        return "weights"
    if rows <= config.batch_size:
        return "batch"
    if cols in layers[1:]:  # a layer's output for more rows than a batch: an evaluation
        return "evaluation"
    return "dataset" if cols == layers[0] else None
