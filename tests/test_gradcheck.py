"""The gradient check: passes correct nets, catches broken backward passes, sets kinks aside."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from backends import BackendError, get_backend
from nnx.errors import InputError
from nnx.gradcheck import gradient_check
from nnx.layers import Affine, Sigmoid
from nnx.network import MultiLayerNet, TwoLayerNet
from nnx.numerical import numerical_gradient
from tests import helpers
from tests.conftest import NO_TORCH, assert_on

MODES = ["full", "sample", "direction"]
H = 1e-4


def _net(backend, activation, hidden=(6, 5), seed=0, dtype=None):
    """A small net with random weights and biases (init leaves biases 0)."""
    net = MultiLayerNet(8, list(hidden), 3, activation, "he", device=backend, seed=seed,
                        dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    for key, p in net.params.items():
        net.params[key] = net.backend.asarray(0.5 * rng.standard_normal(tuple(p.shape)),
                                              dtype=net.dtype)
    return net


def _batch(backend, n=5, seed=1, dtype=None):
    rng = np.random.default_rng(seed)
    x = backend.asarray(rng.standard_normal((n, 8)), dtype=dtype or backend.dtype)
    return x, backend.asarray(rng.integers(0, 3, n))


def _set(net, key, host):
    net.params[key] = net.backend.asarray(np.asarray(host, dtype=np.float64), dtype=net.dtype)


def _host_params(net):
    return {k: net.backend.to_numpy(v).copy() for k, v in net.params.items()}


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_passes_on_a_correct_net(backend64, mode, activation):
    net = _net(backend64, activation)
    x, t = _batch(backend64)
    before = _host_params(net)
    report = gradient_check(net, x, t, mode=mode, n_samples=10, seed=3)
    assert report.ok and report.conclusive, str(report)
    assert report.kinks == 0 and report.max_rel <= 1e-6
    assert report.mode == mode and str(backend64) in report.device
    text = str(report)
    assert "PASS" in text and "FAIL" not in text
    if mode == "direction":
        size = sum(int(np.prod(p.shape)) for p in net.params.values())
        assert list(report.params) == ["all"] and report.params["all"].checked == 1
        assert report.params["all"].shape == (size,)
    else:
        assert list(report.params) == list(net.params)
        for key, row in report.params.items():
            size = int(np.prod(net.params[key].shape))
            assert row.checked == (size if mode == "full" else min(10, size))
            assert row.shape == tuple(net.params[key].shape)
            assert key in text
    after = _host_params(net)  # the check works on a copy
    assert all(np.array_equal(before[k], after[k]) for k in before)


def _counting_losses(monkeypatch):
    """Count MultiLayerNet.loss calls outside net.gradient (whose forward pass is backprop's)."""
    calls, inside = [], []
    loss, gradient = MultiLayerNet.loss, MultiLayerNet.gradient

    def counted_loss(self, *args, **kwargs):
        if not inside:
            calls.append(1)
        return loss(self, *args, **kwargs)

    def marked_gradient(self, *args, **kwargs):
        inside.append(1)
        try:
            return gradient(self, *args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(MultiLayerNet, "loss", counted_loss)
    monkeypatch.setattr(MultiLayerNet, "gradient", marked_gradient)
    return calls


def test_direction_mode_takes_exactly_two_loss_evaluations(backend64, monkeypatch):
    net = _net(backend64, "relu")
    x, t = _batch(backend64)
    calls = _counting_losses(monkeypatch)
    assert gradient_check(net, x, t, mode="direction").ok
    assert len(calls) == 2
    calls.clear()
    gradient_check(net, x, t, mode="sample", n_samples=4)  # the counter counts: 2 per coordinate
    assert len(calls) == 2 * sum(min(4, int(np.prod(p.shape))) for p in net.params.values())


def _scaled_dw(backward):
    def broken(self, dout):
        dx = backward(self, dout)
        self.dW = self.dW * 1.01
        return dx

    return broken


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bug", ["dW * 1.01 (relu)", "dW * 1.01 (sigmoid)", "sigmoid derivative"])
def test_a_broken_backward_is_caught_by_every_mode(backend64, monkeypatch, mode, bug):
    if bug.startswith("dW"):
        monkeypatch.setattr(Affine, "backward", _scaled_dw(Affine.backward))
        broken_params = {"W1", "W2", "W3"}
    else:  # forgets the (1 - y) factor of y' = y (1 - y)
        monkeypatch.setattr(Sigmoid, "backward", lambda self, dout: dout * self.out)
        broken_params = {"W1", "b1", "W2", "b2"}
    net = _net(backend64, "relu" if "relu" in bug else "sigmoid")
    x, t = _batch(backend64)
    report = gradient_check(net, x, t, mode=mode, n_samples=10)
    assert not report.ok and "FAIL" in str(report)
    if mode != "direction":
        failed = {k for k, row in report.params.items() if not row.ok}
        assert failed == broken_params, str(report)
        assert min(report.params[k].max_rel for k in failed) > 1e-3


def _kinked_net(backend):
    """TwoLayerNet(4, 3, 2) and a 2-image batch with two pre-activations at ReLU kinks.

    Image 0 is all zeros, so its pre-activations are b1 and a1[0, 0] = b1[0] = 0 exactly.
    Image 1 has a1[1, 1] = 0.3 h: stepping b1[1], or W1[i, 1] where |x[1, i]| >= 0.3, by
    +-h crosses 0; W1[i, 1] with |x[1, i]| < 0.3 does not. So the kinks are exactly
    W1 flat {0*3+1, 2*3+1} and b1 {0, 1}.
    """
    net = TwoLayerNet(4, 3, 2, "relu", device=backend, seed=0)
    w1 = np.array([[0.5, 0.4, -0.3], [0.2, -0.6, 0.1], [-0.4, 0.3, 0.7], [0.6, 0.2, -0.5]])
    x1 = np.array([2.0, 0.1, -1.0, 0.05])
    _set(net, "W1", w1)
    _set(net, "b1", [0.0, 0.3 * H - x1 @ w1[:, 1], 0.2])
    _set(net, "W2", [[0.3, -0.2], [-0.5, 0.4], [0.6, 0.1]])
    _set(net, "b2", [0.1, -0.1])
    x = backend.asarray(np.stack([np.zeros(4), x1]), dtype=backend.dtype)
    return net, x, backend.asarray(np.array([1, 0]))


EXPECTED_KINKS = {"W1": (1, 7), "b1": (0, 1), "W2": (), "b2": ()}


@pytest.mark.parametrize("mode", ["full", "sample"])
def test_relu_kinks_are_reported_apart_and_do_not_fail_the_check(backend64, mode):
    net, x, t = _kinked_net(backend64)
    report = gradient_check(net, x, t, mode=mode, n_samples=100)  # sample: every coordinate
    assert {k: row.kink_indices for k, row in report.params.items()} == EXPECTED_KINKS
    assert report.ok and report.conclusive, str(report)
    assert report.params["b1"].kink_max_rel > 0.1  # the errors there are real, and large
    assert report.params["W1"].checked == 10 and report.params["b1"].checked == 1
    assert report.kinks == 4 and "kinks" in str(report)


def test_a_direction_that_crosses_a_kink_gives_no_verdict(backend64):
    net, x, t = _kinked_net(backend64)  # a1[0, 0] = 0: any move of b1[0] changes its mask
    report = gradient_check(net, x, t, mode="direction")
    row = report.params["all"]
    assert (row.checked, row.kinks) == (0, 1)
    assert report.ok and not report.conclusive
    assert "NO VERDICT" in str(report)


def test_kinks_downstream_are_predicted_exactly_as_observed(backend64):
    """A kink in the second hidden layer: full mode predicts exactly what sample mode observes."""
    net = _net(backend64, "relu", hidden=(4, 4), seed=5)
    x, t = _batch(backend64, n=3, seed=6)
    host = _host_params(net)
    z1 = np.maximum(backend64.to_numpy(x) @ host["W1"] + host["b1"], 0.0)
    a2 = z1 @ host["W2"] + host["b2"]
    host["b2"][0] += 0.3 * H - a2[0, 0]  # a2[0, 0] = 0.3 h
    _set(net, "b2", host["b2"])
    full = gradient_check(net, x, t, mode="full")
    sample = gradient_check(net, x, t, mode="sample", n_samples=1000)
    kinks = {k: row.kink_indices for k, row in full.params.items()}
    assert kinks == {k: row.kink_indices for k, row in sample.params.items()}
    assert 0 in kinks["b2"] and kinks["W1"] and not kinks["W3"] and not kinks["b3"]
    assert full.ok and sample.ok


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_a_float32_net_is_checked_in_float64(backend64, activation):
    be32 = get_backend(backend64, "float32")
    net = _net(be32, activation, dtype="float32")
    x, t = _batch(be32)
    for mode in MODES:
        report = gradient_check(net, x, t, mode=mode, n_samples=10)
        assert report.ok and report.max_rel <= 1e-6, str(report)
        assert max(row.max_abs for row in report.params.values()) <= 1e-9
    assert net.dtype == be32.xp.float32 and all(p.dtype == net.dtype for p in net.params.values())
    # What the float64 copy avoids: the same central difference taken in float32 is noise.
    w = net.params[f"W{len(net.sizes) - 1}"]
    noisy = numerical_gradient(lambda _w: net.loss(x, t), w)
    assert_on(be32, noisy)
    exact = be32.to_numpy(net.gradient(x, t)[f"W{len(net.sizes) - 1}"])
    rel = np.abs(be32.to_numpy(noisy) - exact) / np.maximum(np.abs(exact), 1e-5)
    assert rel.max() > 1e-4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "fast"}, r"unknown mode 'fast': expected one of full, sample, direction"),
        ({"n_samples": 0}, r"n_samples must be a positive integer"),
        ({"n_samples": 2.5}, r"n_samples must be a positive integer"),
        ({"n_samples": True}, r"n_samples must be a positive integer"),
        ({"h": 0.0}, r"h must be a positive finite number"),
        ({"h": float("nan")}, r"h must be a positive finite number"),
        ({"tol": -1e-5}, r"tol must be a positive finite number"),
        ({"tiny": 0}, r"tiny must be a positive finite number"),
    ],
)
def test_bad_arguments_are_input_errors(kwargs, message):
    be = get_backend("cpu")
    net = _net(be, "relu")
    x, t = _batch(be)
    with pytest.raises(InputError, match=message):
        gradient_check(net, x, t, **kwargs)


def test_arrays_from_another_device_are_backend_errors(backend):
    other = get_backend("strict" if backend.numpy_native else "cpu")
    net = _net(backend, "sigmoid")
    x, t = _batch(backend)
    with pytest.raises(BackendError, match=r"^x is "):
        gradient_check(net, other.asarray(backend.to_numpy(x)), t)


def test_the_same_seed_gives_the_same_report(backend64):
    net = _net(backend64, "relu")
    x, t = _batch(backend64)
    for mode in ("sample", "direction"):
        a, b = (gradient_check(net, x, t, mode=mode, n_samples=5, seed=9) for _ in range(2))
        assert a == b


# -- nnx gradcheck: the book's gradient_check.py as a command ------------------------------


def _gradcheck(*args: str) -> subprocess.CompletedProcess:
    return helpers.run("-m", "nnx.cli", "gradcheck", *args, timeout=300)


@pytest.mark.parametrize("device", ["cpu", "strict", pytest.param(
    "torch:cpu", marks=pytest.mark.skipif(bool(NO_TORCH), reason=f"no torch lane: {NO_TORCH}"))])
def test_nnx_gradcheck_names_every_parameter_with_the_books_figure(mnist_dir, device):
    out = helpers.ok(_gradcheck("--device", device, "--data-dir", str(mnist_dir)))
    assert "784-50-10 relu net, the first 3 training images" in out
    assert ": PASS" in out
    shapes = {"W1": "784x50", "b1": "50", "W2": "50x10", "b2": "10"}
    for name, shape in shapes.items():
        row = next(line.split() for line in out.splitlines() if line.startswith(name + " "))
        assert row[1] == shape
        checked, kinks = int(row[2]), int(row[3])
        assert checked + kinks == math.prod(int(d) for d in shape.split("x"))
        max_rel, mean_abs = float(row[4]), float(row[7])
        # The book reports ~1e-10 or less per parameter; a wrong gradient is far above.
        assert 0 <= mean_abs < 1e-9 and max_rel <= 1e-5


def test_nnx_gradcheck_fails_with_status_1_when_a_parameter_fails(mnist_dir):
    # An impossible tolerance: the rounding noise of the central difference exceeds it.
    proc = _gradcheck("--device", "cpu", "--data-dir", str(mnist_dir), "--mode", "sample",
                      "--samples", "8", "--tol", "1e-300")
    assert proc.returncode == 1, proc.stderr
    assert "FAIL" in proc.stdout and "Traceback" not in proc.stderr


def test_nnx_gradcheck_sigmoid_direction_mode(mnist_dir):
    out = helpers.ok(_gradcheck("--device", "cpu", "--data-dir", str(mnist_dir), "--mode",
                                "direction", "--activation", "sigmoid", "--batch", "5"))
    assert "sigmoid net, the first 5 training images" in out and "gradient check (direction" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--batch", "70000"], "--batch 70000 is larger than the 60000 training images"),
        (["--batch", "0"], "--batch must be a positive integer"),
        (["--tol", "-1"], "--tol must be a positive finite number"),
        (["--step", "0"], "--step must be a positive finite number"),
        (["--mode", "fast"], "invalid choice: 'fast'"),
        (["--seed", "-1"], "expected a non-negative integer"),
    ],
)
def test_nnx_gradcheck_bad_input_is_one_sentence(mnist_dir, args, words):
    proc = _gradcheck("--data-dir", str(mnist_dir), *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert words in proc.stderr.strip().splitlines()[-1]


def test_a_net_whose_layers_were_changed_is_refused_with_the_way_on():
    """The numerical gradient and the gradient check rebuild the net's own layers; a net
    changed by hand (here a second Sigmoid) would be differentiated as the unchanged one.
    The book's routine on its loss, which the refusal names, agrees with its backprop."""
    rng = np.random.default_rng(0)
    x, t = rng.random((5, 6)), np.array([0, 1, 2, 1, 0])
    net = MultiLayerNet(6, [4], 3, activation="sigmoid", device="cpu", seed=0)
    net.layers.insert(1, Sigmoid())
    words = r"^this net's layers \(Affine-Sigmoid-Sigmoid-Affine-SoftmaxWithLoss\) are not"
    for method in ("vectorized", "loop"):
        with pytest.raises(InputError, match=words):
            net.numerical_gradient(x, t, method=method)
    with pytest.raises(InputError, match=words):
        gradient_check(net, x, t)
    backprop = net.gradient(x, t)
    for key, param in net.params.items():
        loop = numerical_gradient(lambda _w: net.loss(x, t), param)
        np.testing.assert_allclose(loop, backprop[key], rtol=1e-6, atol=1e-9)
