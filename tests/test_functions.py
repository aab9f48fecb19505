"""Activations and losses against closed forms computed on the host with Python's math."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnx.functions import (
    cross_entropy_error,
    log_softmax,
    one_hot,
    relu,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    step_function,
)
from tests.conftest import assert_on

ROWS = [[0.3, -1.2, 2.5, 0.0], [-4.0, 7.5, 1.0, -0.5], [12.0, -30.0, 0.25, 3.0]]


def _rtol(backend) -> float:
    return 1e-6 if backend.dtype == backend.xp.float32 else 1e-14


def _eps(backend) -> float:
    """Machine epsilon of the lane: the absolute error of results of order 1."""
    return 2.0**-23 if backend.dtype == backend.xp.float32 else 2.0**-52


def assert_scalar_on(backend, value) -> None:
    """Like assert_on for 0-d results: NumPy reductions return NumPy scalars, not 0-d arrays."""
    if backend.numpy_native:
        assert isinstance(value, (np.ndarray, np.generic)), type(value)
    else:
        assert_on(backend, value)


def _host_log_softmax(row: list[float]) -> list[float]:
    m = max(row)
    lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def _close(actual: np.ndarray, expected, rtol: float, atol: float = 0.0) -> None:
    np.testing.assert_allclose(actual, np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol)


def test_sigmoid_matches_the_closed_form_and_keeps_dtype(backend):
    values = [-30.0, -5.0, -1.0, -0.1, 0.0, 0.1, 1.0, 5.0, 30.0]
    y = sigmoid(backend.asarray(values, dtype=backend.dtype))
    assert_on(backend, y)
    assert y.dtype == backend.dtype
    # (1 + tanh(x/2)) / 2 is accurate to eps absolutely, not relatively, in the far left tail.
    expected = [1 / (1 + math.exp(-v)) for v in values]
    _close(backend.to_numpy(y), expected, _rtol(backend), _eps(backend))


def test_sigmoid_of_huge_inputs_is_exactly_0_and_1(backend):
    y = backend.to_numpy(sigmoid(backend.asarray([-1000.0, 1000.0], dtype=backend.dtype)))
    assert np.all(np.isfinite(y))
    assert y.tolist() == [0.0, 1.0]


def test_relu_and_step_function(backend):
    values = [-2.0, -0.5, 0.0, 0.5, 3.0]
    x = backend.asarray(values, dtype=backend.dtype)
    y, s = relu(x), step_function(x)
    assert_on(backend, y, s)
    assert y.dtype == s.dtype == backend.dtype
    assert backend.to_numpy(y).tolist() == [max(v, 0.0) for v in values]
    assert backend.to_numpy(s).tolist() == [1.0 if v > 0 else 0.0 for v in values]


def test_softmax_and_log_softmax_match_the_closed_form(backend):
    x = backend.asarray(ROWS, dtype=backend.dtype)
    y, logy = softmax(x), log_softmax(x)
    assert_on(backend, y, logy)
    assert y.dtype == logy.dtype == backend.dtype
    expected_log = [_host_log_softmax(r) for r in ROWS]
    # x - logsumexp(x) cancels where p is near 1: accurate to eps * |logits| absolutely.
    _close(backend.to_numpy(logy), expected_log, _rtol(backend), 64 * _eps(backend))
    expected = [[math.exp(v) for v in r] for r in expected_log]
    _close(backend.to_numpy(y), expected, 4 * _rtol(backend), _eps(backend))
    np.testing.assert_allclose(backend.to_numpy(y).sum(axis=1), 1.0, rtol=4 * _rtol(backend))


def test_softmax_is_stable_for_huge_logits(backend):
    x = backend.asarray([[1000.0, 1000.0], [1000.0, 0.0], [-1000.0, 1000.0]], dtype=backend.dtype)
    y = backend.to_numpy(softmax(x))
    logy = backend.to_numpy(log_softmax(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(logy))
    assert y.tolist() == [[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]
    # exp(-1000) underflows, so log-sum-exp is exactly the maximum.
    ln2 = math.log(2.0)
    _close(logy, [[-ln2, -ln2], [0.0, -1000.0], [-2000.0, 0.0]], _rtol(backend))


def test_softmax_of_a_single_vector(backend):
    y = softmax(backend.asarray(ROWS[0], dtype=backend.dtype))
    assert_on(backend, y)
    _close(backend.to_numpy(y), [math.exp(v) for v in _host_log_softmax(ROWS[0])], _rtol(backend))


def test_softmax_cross_entropy_matches_the_closed_form(backend):
    labels = [2, 1, 3]
    x = backend.asarray(ROWS, dtype=backend.dtype)
    loss = softmax_cross_entropy(x, backend.asarray(labels))
    assert_scalar_on(backend, loss)
    assert loss.ndim == 0 and loss.dtype == backend.dtype
    expected = -math.fsum(_host_log_softmax(r)[k] for r, k in zip(ROWS, labels, strict=True)) / 3
    assert math.isclose(float(loss), expected, rel_tol=_rtol(backend))


def test_cross_entropy_of_confident_wrong_logits_is_finite_and_exact(backend):
    x = backend.asarray([[1000.0, 0.0, 0.0], [0.0, -1000.0, 0.0]], dtype=backend.dtype)
    loss = float(softmax_cross_entropy(x, backend.asarray([1, 1])))
    # Row 1: log-sum-exp is 1000, so -log p = 1000; row 2: log(2 + e^-1000) + 1000.
    expected = (1000.0 + (math.log(2.0) + 1000.0)) / 2
    assert math.isfinite(loss)
    assert math.isclose(loss, expected, rel_tol=_rtol(backend))


def test_integer_and_one_hot_labels_give_the_same_loss(backend):
    x = backend.asarray(ROWS, dtype=backend.dtype)
    idx = backend.asarray([2, 1, 3])
    hot = backend.asarray(np.eye(4)[[2, 1, 3]], dtype=backend.dtype)
    a, b = softmax_cross_entropy(x, idx), softmax_cross_entropy(x, hot)
    assert_scalar_on(backend, a)
    assert_scalar_on(backend, b)
    assert float(a) == float(b)
    y = softmax(x)
    assert float(cross_entropy_error(y, idx)) == float(cross_entropy_error(y, hot))


def test_one_hot_rows(backend):
    h = one_hot(backend.asarray([2, 0, 3]), 4, backend.dtype)
    assert_on(backend, h)
    assert h.dtype == backend.dtype
    assert backend.to_numpy(h).tolist() == np.eye(4)[[2, 0, 3]].tolist()


def test_book_cross_entropy_matches_the_closed_form_and_never_takes_log_0(backend):
    probs = [[0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]]
    y = backend.asarray(probs, dtype=backend.dtype)
    # The book's example: label 2 with p = 0.6 gives 0.5108...
    right = cross_entropy_error(y, backend.asarray([2]))
    assert_scalar_on(backend, right)
    assert math.isclose(float(right), -math.log(0.6), rel_tol=_rtol(backend))
    wrong = float(cross_entropy_error(y, backend.asarray([3])))  # p = 0 exactly
    tiny = float(np.finfo(np.float32 if backend.dtype == backend.xp.float32 else np.float64).tiny)
    assert math.isfinite(wrong)
    assert math.isclose(wrong, -math.log(tiny), rel_tol=1e-6)


@pytest.mark.parametrize("fn", [softmax, log_softmax, sigmoid, relu])
def test_functions_leave_their_input_alone(backend, fn):
    x = backend.asarray(ROWS, dtype=backend.dtype)
    before = backend.to_numpy(x).copy()
    fn(x)
    assert np.array_equal(backend.to_numpy(x), before)
