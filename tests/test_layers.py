"""Every layer's backward against central differences, and that backward leaves dout alone.

The reference is the book's one-coordinate numerical gradient of a scalar function
``sum(forward(...) * r)`` for a fixed random ``r``: its gradient with respect to each input
is exactly what ``backward(r)`` must return.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnx.layers import AddLayer, Affine, MulLayer, Relu, Sigmoid, SoftmaxWithLoss, SquareLayer
from nnx.numerical import numerical_gradient
from tests.conftest import assert_on

TOL = 1e-8  # central differences of smooth functions of O(1) values in float64


def assert_scalar_on(backend, value) -> None:
    """Like assert_on for 0-d results: NumPy arithmetic on 0-d arrays gives NumPy scalars."""
    if backend.numpy_native:
        assert isinstance(value, (np.ndarray, np.generic)), type(value)
    else:
        assert_on(backend, value)


def _rand(backend, shape, seed, away_from_zero=False):
    host = np.random.default_rng(seed).standard_normal(shape)
    if away_from_zero:  # keep ReLU inputs off the kink: |x| >= 0.1 > h
        host = np.sign(host) * (0.1 + np.abs(host))
    return backend.asarray(host, dtype=backend.dtype)


def _weighted_sum(backend, forward, r):
    """The scalar sum(forward() * r) whose gradient is backward(r)."""
    xp = backend.xp
    return lambda _x: xp.sum(forward() * r)


def _assert_grad(backend, backprop, f, x, sample=None):
    """backprop == numerical gradient of f at x: everywhere, or at ``sample`` flat positions."""
    assert_on(backend, backprop)
    assert tuple(backprop.shape) == tuple(x.shape)
    got = backend.to_numpy(backprop)
    if sample is None:
        numerical = numerical_gradient(f, x)
    else:
        positions = np.random.default_rng(0).choice(got.size, sample, replace=False)
        numerical = numerical_gradient(f, x, indices=positions.tolist())
        got = got.reshape(-1)[positions]
    assert_on(backend, numerical)
    np.testing.assert_allclose(got, backend.to_numpy(numerical), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("shape", [(3, 5), (2, 1, 28, 28)], ids=["flat", "image"])
def test_affine_backward(backend64, shape):
    be = backend64
    n_in = int(np.prod(shape[1:]))
    x, W, b = _rand(be, shape, 0), _rand(be, (n_in, 4), 1), _rand(be, (4,), 2)
    layer = Affine(W, b)
    out = layer.forward(x)
    assert tuple(out.shape) == (shape[0], 4)
    r = _rand(be, out.shape, 3)
    dx = layer.backward(r)
    f = _weighted_sum(be, lambda: layer.forward(x), r)
    sample = 150 if len(shape) > 2 else None  # an image batch has thousands of coordinates
    _assert_grad(be, dx, f, x, sample)
    _assert_grad(be, layer.dW, f, W, sample)
    _assert_grad(be, layer.db, f, b)


def test_affine_without_input_grad_returns_none_and_the_same_parameter_grads(backend64):
    be = backend64
    x, W, b = _rand(be, (3, 5), 0), _rand(be, (5, 4), 1), _rand(be, (4,), 2)
    full, first = Affine(W, b), Affine(W, b, input_grad=False)
    r = _rand(be, (3, 4), 3)
    full.forward(x)
    first.forward(x)
    full.backward(r)
    assert first.backward(r) is None
    f = _weighted_sum(be, lambda: first.forward(x), r)
    _assert_grad(be, first.dW, f, W)
    _assert_grad(be, first.db, f, b)
    assert np.array_equal(be.to_numpy(first.dW), be.to_numpy(full.dW))


@pytest.mark.parametrize("cls", [Relu, Sigmoid, SquareLayer])
def test_elementwise_backward(backend64, cls):
    be = backend64
    x = _rand(be, (4, 6), 0, away_from_zero=True)
    layer = cls()
    r = _rand(be, (4, 6), 1)
    layer.forward(x)
    dx = layer.backward(r)
    _assert_grad(be, dx, _weighted_sum(be, lambda: layer.forward(x), r), x)


def test_relu_passes_gradient_only_where_input_was_positive(backend):
    x = backend.asarray([[-1.0, 0.0, 2.0]], dtype=backend.dtype)
    layer = Relu()
    layer.forward(x)
    dx = layer.backward(backend.asarray([[5.0, 6.0, 7.0]], dtype=backend.dtype))
    assert_on(backend, dx)
    assert backend.to_numpy(dx).tolist() == [[0.0, 0.0, 7.0]]


@pytest.mark.parametrize("cls", [MulLayer, AddLayer])
def test_binary_backward(backend64, cls):
    be = backend64
    x, y = _rand(be, (3, 4), 0), _rand(be, (3, 4), 1)
    layer = cls()
    r = _rand(be, (3, 4), 2)
    layer.forward(x, y)
    dx, dy = layer.backward(r)
    f = _weighted_sum(be, lambda: layer.forward(x, y), r)
    _assert_grad(be, dx, f, x)
    _assert_grad(be, dy, f, y)


def test_the_books_apple_example(backend):
    """Chapter 5: 2 apples at 100, tax 1.1: price 220; d/dapple 2.2, d/dnum 110, d/dtax 200."""
    apple, num, tax = (backend.asarray(v, dtype=backend.dtype) for v in (100.0, 2.0, 1.1))
    mul_apple, mul_tax = MulLayer(), MulLayer()
    price = mul_tax.forward(mul_apple.forward(apple, num), tax)
    dprice = backend.asarray(1.0, dtype=backend.dtype)
    dapple_price, dtax = mul_tax.backward(dprice)
    dapple, dnum = mul_apple.backward(dapple_price)
    for value in (price, dapple, dnum, dtax):
        assert_scalar_on(backend, value)
    got = [float(v) for v in (price, dapple, dnum, dtax)]
    np.testing.assert_allclose(got, [220.0, 2.2, 110.0, 200.0], rtol=1e-6)


@pytest.mark.parametrize("labels", ["index", "one-hot"])
def test_softmax_with_loss_backward(backend64, labels):
    be = backend64
    x = _rand(be, (5, 4), 0)
    idx = np.array([0, 3, 1, 3, 2])
    t = be.asarray(idx) if labels == "index" else be.asarray(np.eye(4)[idx], dtype=be.dtype)
    layer = SoftmaxWithLoss()
    for dout in (1.0, be.asarray(2.5, dtype=be.dtype)):
        layer.forward(x, t)  # the numerical loop below leaves a perturbed forward cached
        dx = layer.backward(dout)
        scale = float(dout)
        _assert_grad(be, dx, lambda _x, s=scale: layer.forward(x, t) * s, x)


def _dout_cases(be):
    """(name, layer, forward args, dout) for every layer."""
    x = _rand(be, (3, 4), 0, away_from_zero=True)
    y = _rand(be, (3, 4), 1)
    W, b = _rand(be, (4, 2), 2), _rand(be, (2,), 3)
    img = _rand(be, (2, 1, 2, 2), 4)
    d = _rand(be, (3, 4), 5)
    d2 = _rand(be, (3, 2), 6)
    t = be.asarray(np.array([1, 0, 3]))
    return [
        ("affine", Affine(W, b), (x,), d2),
        ("affine-image", Affine(W, b), (img,), _rand(be, (2, 2), 7)),
        ("relu", Relu(), (x,), d),
        ("sigmoid", Sigmoid(), (x,), d),
        ("square", SquareLayer(), (x,), d),
        ("mul", MulLayer(), (x, y), d),
        ("add", AddLayer(), (x, y), d),
        ("softmax-loss", SoftmaxWithLoss(), (x, t), be.asarray(1.5, dtype=be.dtype)),
    ]


def test_backward_never_modifies_dout(backend):
    for name, layer, args, dout in _dout_cases(backend):
        before = backend.to_numpy(dout).copy()
        layer.forward(*args)
        result = layer.backward(dout)
        assert np.array_equal(backend.to_numpy(dout), before), name
        outs = result if isinstance(result, tuple) else (result,)
        assert_on(backend, *outs)
        for out in outs:
            assert out is not dout, name
            assert out.dtype == backend.dtype, name


def test_affine_on_thousands_of_rows_computes_the_same_product(backend):
    """From FEATURE_MAJOR_ROWS rows the product is taken as (W.T @ x.T).T: same values."""
    from nnx.layers import FEATURE_MAJOR_ROWS

    rng = np.random.default_rng(7)
    n = FEATURE_MAJOR_ROWS + 3
    x, w, b = rng.standard_normal((n, 9)), rng.standard_normal((9, 4)), rng.standard_normal(4)
    layer = Affine(backend.asarray(w, dtype=backend.dtype), backend.asarray(b, dtype=backend.dtype))
    out = layer.forward(backend.asarray(x, dtype=backend.dtype))
    assert_on(backend, out)
    tol = 1e-5 if backend.dtype == backend.xp.float32 else 1e-12
    np.testing.assert_allclose(backend.to_numpy(out), x @ w + b, rtol=tol, atol=tol)
    dx = layer.backward(backend.asarray(np.ones((n, 4)), dtype=backend.dtype))
    np.testing.assert_allclose(backend.to_numpy(layer.dW), x.T @ np.ones((n, 4)), rtol=tol)
    np.testing.assert_allclose(backend.to_numpy(dx), np.ones((n, 4)) @ w.T, rtol=tol, atol=tol)
