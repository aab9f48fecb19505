"""Chapter 4's numerical differentiation against closed forms, and the loop against its variants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnx.numerical import numerical_diff, numerical_gradient
from tests.conftest import assert_on


def _fn1(x):
    """The book's function_1: 0.01 x^2 + 0.1 x, derivative 0.02 x + 0.1."""
    return 0.01 * x**2 + 0.1 * x


@pytest.mark.parametrize(("x0", "slope"), [(5.0, 0.2), (10.0, 0.3)])
def test_numerical_diff_of_the_books_function(x0, slope):
    assert math.isclose(numerical_diff(_fn1, x0), slope, abs_tol=1e-9)


def test_numerical_diff_on_device(backend64):
    d = numerical_diff(_fn1, backend64.asarray([5.0, 10.0], dtype=backend64.dtype))
    assert_on(backend64, d)
    np.testing.assert_allclose(backend64.to_numpy(d), [0.2, 0.3], atol=1e-9)


@pytest.mark.parametrize(("point", "grad"), [((3.0, 4.0), (6.0, 8.0)), ((0.0, 2.0), (0.0, 4.0)),
                                             ((3.0, 0.0), (6.0, 0.0))])
def test_numerical_gradient_of_the_books_function_2(backend64, point, grad):
    xp = backend64.xp
    x = backend64.asarray(point, dtype=backend64.dtype)
    g = numerical_gradient(lambda v: xp.sum(v**2), x)
    assert_on(backend64, g)
    assert g.dtype == backend64.dtype
    np.testing.assert_allclose(backend64.to_numpy(g), grad, atol=1e-6)


def _smooth(backend, shape):
    """A smooth scalar function of an array and the same function of a stack of copies."""
    xp = backend.xp
    r = backend.asarray(np.random.default_rng(1).standard_normal(shape), dtype=backend.dtype)

    def f(x):
        return xp.sum(xp.sin(x) * r + 0.5 * x * x)

    def f_stack(stack):
        values = xp.sin(stack) * r + 0.5 * stack * stack
        return xp.sum(xp.reshape(values, (stack.shape[0], -1)), axis=1)

    return f, f_stack


def _point(backend, shape):
    # Values where (x + h) - h != x in floating point: restoring x must not rely on arithmetic.
    host = np.random.default_rng(0).standard_normal(shape) + 1.0 / 3.0
    return backend.asarray(host, dtype=backend.dtype)


def test_sampled_indices_equal_the_full_loop_exactly(backend):
    shape = (3, 4)
    f, _ = _smooth(backend, shape)
    x = _point(backend, shape)
    full = backend.to_numpy(numerical_gradient(f, x)).reshape(-1)
    positions = [7, 0, 11, 3, 7]  # any order, repeats allowed: answered in the order asked
    sample = numerical_gradient(f, x, indices=positions)
    assert_on(backend, sample)
    assert sample.dtype == x.dtype and tuple(sample.shape) == (len(positions),)
    assert np.array_equal(backend.to_numpy(sample), full[positions])


def test_the_loop_equals_the_exact_gradient(backend64):
    shape = (3, 4)
    f, _ = _smooth(backend64, shape)
    x = _point(backend64, shape)
    loop = numerical_gradient(f, x)
    assert_on(backend64, loop)
    assert tuple(loop.shape) == shape and loop.dtype == x.dtype
    np.testing.assert_allclose(backend64.to_numpy(loop), backend64.to_numpy(_exact(backend64, x)),
                               atol=1e-7)


def _exact(backend, x):
    r = backend.asarray(np.random.default_rng(1).standard_normal(x.shape), dtype=backend.dtype)
    return backend.xp.cos(x) * r + x


def test_the_loop_restores_x_exactly(backend):
    shape = (2, 3)
    f, _ = _smooth(backend, shape)
    x = _point(backend, shape)
    before = backend.to_numpy(x).copy()
    numerical_gradient(f, x)
    numerical_gradient(f, x, indices=[4, 1])
    assert np.array_equal(backend.to_numpy(x), before)


class _ViewIndexed(np.ndarray):
    """A NumPy array whose x[i, j] is a 0-d *view*, as CuPy's is (NumPy returns a copy)."""

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == self.ndim and all(
            isinstance(k, int) for k in key
        ):
            cell = np.ndarray.__getitem__(self, tuple(slice(k, k + 1) for k in key))
            return cell.reshape(())
        return np.ndarray.__getitem__(self, key)


def test_the_loop_is_right_when_indexing_returns_a_view():
    x = np.array([[1.0 / 3.0, 2.0], [0.1, -5.0]]).view(_ViewIndexed)
    before = np.asarray(x).copy()
    g = numerical_gradient(lambda v: np.sum(np.asarray(v) ** 2), x)
    np.testing.assert_allclose(np.asarray(g), 2 * before, atol=1e-6)
    assert np.array_equal(np.asarray(x), before)
