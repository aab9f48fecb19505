"""Chapter 6's layers and net options against independent references: backprop against the
book's central differences (batch norm; dropout under a fixed mask; weight decay), on every
backend lane, and the book's definitions of each layer's inference pass; ``nnx gradcheck``
on such nets with its defaults."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from nnx.errors import InputError
from nnx.gradcheck import gradient_check
from nnx.layers import BatchNormalization, Dropout
from nnx.network import MultiLayerNet, NumericalFallback
from tests import helpers
from tests.conftest import NO_TORCH, assert_on
from tests.test_layers import _assert_grad, _rand, _weighted_sum


def test_batchnorm_backward(backend64):
    be = backend64
    x, gamma, beta = _rand(be, (6, 5), 0), _rand(be, (5,), 1), _rand(be, (5,), 2)
    layer = BatchNormalization(gamma, beta)
    r = _rand(be, (6, 5), 3)
    out = layer.forward(x, train_flg=True)
    assert_on(be, out)
    dx = layer.backward(r)
    f = _weighted_sum(be, lambda: layer.forward(x, train_flg=True), r)
    _assert_grad(be, dx, f, x)
    _assert_grad(be, layer.dgamma, f, gamma)
    _assert_grad(be, layer.dbeta, f, beta)


def test_batchnorm_normalises_in_training_and_uses_running_statistics_after(backend64):
    be = backend64
    x = _rand(be, (50, 4), 0) * 3.0 + 7.0
    layer = BatchNormalization(be.asarray(np.ones(4)), be.asarray(np.zeros(4)), momentum=0.0)
    out = be.to_numpy(layer.forward(x, train_flg=True))
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-6)
    # momentum 0: the running statistics are this batch's, so inference gives the same rows
    np.testing.assert_allclose(be.to_numpy(layer.forward(x, train_flg=False)), out, atol=1e-12)


def test_dropout_backward_under_a_fixed_mask(backend64):
    be = backend64
    x = _rand(be, (4, 6), 0)
    layer = Dropout(0.4, np.random.default_rng(1))
    layer.hold = True
    r = _rand(be, (4, 6), 2)
    out = layer.forward(x)
    assert_on(be, out)
    dx = layer.backward(r)
    _assert_grad(be, dx, _weighted_sum(be, lambda: layer.forward(x), r), x)


def test_dropout_keeps_one_minus_ratio_and_scales_at_inference(backend):
    x = backend.asarray(np.ones((200, 100)), dtype=backend.dtype)
    layer = Dropout(0.3, np.random.default_rng(0))
    kept = float(np.mean(backend.to_numpy(layer.forward(x))))
    assert abs(kept - 0.7) < 0.01  # 20,000 draws: the standard error is 0.003
    assert np.allclose(backend.to_numpy(layer.forward(x, train_flg=False)), 0.7)


def test_dropout_masks_are_the_same_on_every_device(backend):
    x = backend.asarray(np.ones((3, 8)), dtype=backend.dtype)
    got = backend.to_numpy(Dropout(0.5, np.random.default_rng(5)).forward(x))
    want = (np.random.default_rng(5).random((3, 8)) >= 0.5).astype(float)
    assert np.array_equal(got, want)


NETS = {
    "batchnorm": dict(use_batchnorm=True),
    "dropout": dict(use_dropout=True, dropout_ratio=0.3),
    "decay": dict(weight_decay_lambda=0.1),
    "all": dict(use_batchnorm=True, use_dropout=True, weight_decay_lambda=0.05),
}


@pytest.mark.parametrize("mode", ["full", "direction"])
@pytest.mark.parametrize("kind", list(NETS))
def test_gradient_check_passes_for_chapter_6_nets(backend, kind, mode):
    """The book's batch_norm_gradient_check, and the same for dropout and weight decay."""
    be = backend
    rng = np.random.default_rng(0)
    x = be.asarray(rng.random((6, 12)), dtype=be.dtype)
    t = be.asarray(rng.integers(0, 10, 6))
    net = MultiLayerNet(12, [16, 12], 10, "relu", "he", device=be, seed=1, **NETS[kind])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalFallback)
        report = gradient_check(net, x, t, mode=mode)
    assert report.ok and report.conclusive, str(report)


def test_the_check_fails_a_wrong_batchnorm_gradient(backend64, monkeypatch):
    """The check above can fail: a batch norm backward missing the mean term is caught."""
    be = backend64
    wrong = BatchNormalization.backward

    def backward(self, dout):
        return wrong(self, dout) + be.xp.mean(self.gamma * dout, axis=0) / self.std

    monkeypatch.setattr(BatchNormalization, "backward", backward)
    rng = np.random.default_rng(0)
    x = be.asarray(rng.random((6, 12)), dtype="float64")
    net = MultiLayerNet(12, [8], 10, "relu", "he", device=be, seed=1, use_batchnorm=True)
    assert not gradient_check(net, x, be.asarray(rng.integers(0, 10, 6)), mode="direction").ok


def test_the_vectorised_numerical_gradient_falls_back_with_a_sentence(backend64):
    be = backend64
    rng = np.random.default_rng(0)
    x, t = be.asarray(rng.random((4, 6)), dtype="float64"), be.asarray(rng.integers(0, 10, 4))
    net = MultiLayerNet(6, [5], 10, device=be, seed=0, use_batchnorm=True)
    with pytest.warns(NumericalFallback, match="book's one-coordinate loop"):
        net.numerical_gradient(x, t)


def test_weight_decay_is_handled_by_the_vectorised_gradient(backend64):
    be = backend64
    rng = np.random.default_rng(0)
    x, t = be.asarray(rng.random((4, 6)), dtype="float64"), be.asarray(rng.integers(0, 10, 4))
    net = MultiLayerNet(6, [5], 10, device=be, seed=0, weight_decay_lambda=0.3)
    fast = net.numerical_gradient(x, t)
    slow = net.numerical_gradient(x, t, method="loop")
    for k in fast:
        np.testing.assert_allclose(be.to_numpy(fast[k]), be.to_numpy(slow[k]), atol=1e-9)


def test_defaults_leave_the_net_unchanged(backend64):
    be = backend64
    plain = MultiLayerNet(6, [5], 10, device=be, seed=3)
    same = MultiLayerNet(6, [5], 10, device=be, seed=3, weight_decay_lambda=0.0,
                         use_dropout=False, use_batchnorm=False)
    assert list(plain.params) == ["W1", "b1", "W2", "b2"] and not plain.extended
    x = be.asarray(np.random.default_rng(0).random((3, 6)), dtype="float64")
    t = be.asarray(np.array([1, 2, 3]))
    a, b = plain.gradient(x, t), same.gradient(x, t)
    assert all(np.array_equal(be.to_numpy(a[k]), be.to_numpy(b[k])) for k in a)


@pytest.mark.parametrize("kwargs, words", [
    (dict(use_dropout=True, dropout_ratio=1.0), "dropout ratio must be in"),
    (dict(use_dropout=True, dropout_ratio=-0.1), "dropout ratio must be in"),
    (dict(weight_decay_lambda=-1e-3), "weight decay must be"),
    (dict(weight_decay_lambda=float("nan")), "weight decay must be"),
])
def test_bad_options_are_one_sentence(kwargs, words):
    with pytest.raises(InputError, match=words):
        MultiLayerNet(6, [5], 10, device="cpu", **kwargs)


# -- nnx gradcheck on chapter 6's nets, through the command -------------------------------


def _gradcheck(*args: str):
    return helpers.run("-m", "nnx.cli", "gradcheck", *args, timeout=300)


def _rows(out: str) -> dict[str, list[str]]:
    """The table's rows of ``nnx gradcheck``'s output, by parameter name."""
    table = out.splitlines()
    start = next(i for i, line in enumerate(table) if line.startswith("param ")) + 1
    rows = {}
    for line in table[start:]:
        if not line or line.startswith("mean abs:"):
            break
        rows[line.split()[0]] = line.split()
    return rows


@pytest.mark.parametrize(("flags", "head", "params"), [
    (["--batch-norm"], "the first 10 training images",
     ["W1", "b1", "gamma1", "beta1", "W2", "b2"]),
    (["--dropout", "0.2"], "the first 3 training images", ["W1", "b1", "W2", "b2"]),
    (["--weight-decay", "0.1"], "the first 3 training images", ["W1", "b1", "W2", "b2"]),
], ids=["batch-norm", "dropout", "weight-decay"])
def test_nnx_gradcheck_of_chapter_6_nets_passes_with_its_defaults(mnist_dir, flags, head,
                                                                   params):
    out = helpers.ok(_gradcheck("--device", "cpu", "--data-dir", str(mnist_dir), *flags))
    assert f"784-50-10 relu net, {head}" in out and ": PASS" in out
    rows = _rows(out)
    assert list(rows) == params
    for row in rows.values():  # every coordinate of every parameter checked, none failed
        assert int(row[2]) + int(row[3]) == math.prod(int(d) for d in row[1].split("x"))
        assert float(row[4]) <= (1e-4 if "--batch-norm" in flags else 1e-5)


def test_batch_norm_on_three_images_fails_the_books_step_by_the_steps_own_error(mnist_dir):
    """Why --batch-norm has its own defaults: on the book's 3 images and h=1e-4 the check
    fails, and the error is the central difference's, not backprop's: it shrinks with h^2
    (a tenth of the step, a hundredth of the error, down to the rounding floor)."""
    base = ("--device", "cpu", "--data-dir", str(mnist_dir), "--batch-norm", "--batch", "3",
            "--tol", "1e-5")
    books = _gradcheck(*base, "--step", "1e-4")
    assert books.returncode == 1 and "Traceback" not in books.stderr, books.stderr
    coarse = _rows(books.stdout)["W1"]
    assert coarse[-1] == "FAIL" and 1e-5 < float(coarse[4]) < 1e-2
    fine = _rows(helpers.ok(_gradcheck(*base, "--step", "1e-5")))["W1"]
    assert float(fine[4]) < float(coarse[4]) / 30


@pytest.mark.parametrize("device", ["strict", pytest.param(
    "torch:cpu", marks=pytest.mark.skipif(bool(NO_TORCH), reason=f"no torch lane: {NO_TORCH}"))])
def test_nnx_gradcheck_of_a_chapter_6_net_passes_on_other_devices(mnist_dir, device):
    # A sample of each parameter: the one-coordinate loop over all of them takes minutes here.
    out = helpers.ok(_gradcheck("--device", device, "--data-dir", str(mnist_dir),
                                "--batch-norm", "--dropout", "0.2", "--weight-decay", "0.1",
                                "--mode", "sample", "--samples", "16"))
    assert f"the first 10 training images, seed 0; device {device}" in out and ": PASS" in out
    assert list(_rows(out)) == ["W1", "b1", "gamma1", "beta1", "W2", "b2"]
