"""Activation and loss functions of chapters 3-4, written once against the array namespace.

All are numerically stable: sigmoid never overflows, softmax is shifted by the row
maximum, and the cross-entropy of logits uses log-sum-exp instead of ``log(y + 1e-7)``,
so its exact derivative is ``(softmax(x) - t) / batch``.
"""

from __future__ import annotations

from typing import Any

from backends import device_of, device_scope, xp_of

Array = Any


def sigmoid(x: Array) -> Array:
    """1 / (1 + exp(-x)), from e = exp(-|x|) so no exp overflows and both tails keep
    full relative accuracy: 1 / (1 + e) for x >= 0, e / (1 + e) below."""
    xp = xp_of(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0, e) / (1.0 + e)


def relu(x: Array) -> Array:
    """max(x, 0) elementwise."""
    return xp_of(x).maximum(x, 0.0)


def step_function(x: Array) -> Array:
    """1 where x > 0, else 0, in x's dtype (chapter 3's perceptron activation)."""
    xp = xp_of(x)
    return xp.astype(x > 0, x.dtype)


def softmax(x: Array) -> Array:
    """Softmax over the last axis, shifted by the maximum so exp never overflows."""
    xp = xp_of(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def log_softmax(x: Array) -> Array:
    """log(softmax(x)) over the last axis, by log-sum-exp: finite even where softmax is 0."""
    xp = xp_of(x)
    shifted = x - xp.max(x, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


_CLASSES: dict[tuple, Array] = {}  # a (1, C) row 0..C-1 per (C, dtype, device): made once


def one_hot(t: Array, num_classes: int, dtype: Any = None) -> Array:
    """(N,) integer labels as an (N, num_classes) one-hot array on the same device."""
    xp = xp_of(t)
    key = (num_classes, t.dtype, type(t), str(getattr(t, "device", "")))
    classes = _CLASSES.get(key)
    if classes is None:
        with device_scope(t):  # CuPy makes arrays on the current device, not on device=
            row = xp.arange(num_classes, dtype=t.dtype, device=device_of(t))
        classes = _CLASSES[key] = xp.reshape(row, (1, num_classes))
    out = t[:, None] == classes
    return xp.astype(out, xp.float64 if dtype is None else dtype)


def as_one_hot(t: Array, num_classes: int, dtype: Any) -> Array:
    """Labels as one-hot rows in ``dtype``: integer labels are expanded, one-hot are cast."""
    xp = xp_of(t)
    if t.ndim == 1:
        return one_hot(t, num_classes, dtype)
    return t if t.dtype == dtype else xp.astype(t, dtype)


def softmax_cross_entropy(logits: Array, t: Array) -> Array:
    """Mean cross-entropy of softmax(logits) against labels (class indices or one-hot).

    Computed from the logits by log-sum-exp; no epsilon inside the log.
    """
    xp = xp_of(logits)
    if logits.ndim == 1:
        logits, t = logits[None, :], t[None, ...]
    t = as_one_hot(t, logits.shape[-1], logits.dtype)
    return -xp.sum(t * log_softmax(logits)) / logits.shape[0]


def cross_entropy_error(y: Array, t: Array) -> Array:
    """The book's cross-entropy of probabilities ``y`` (not logits) against labels ``t``.

    log(0) is avoided by clipping y at the smallest positive normal number of its dtype,
    which changes nothing for any y a softmax can produce in practice.
    """
    xp = xp_of(y)
    if y.ndim == 1:
        y, t = y[None, :], t[None, ...]
    t = as_one_hot(t, y.shape[-1], y.dtype)
    tiny = xp.finfo(y.dtype).smallest_normal
    return -xp.sum(t * xp.log(xp.maximum(y, tiny))) / y.shape[0]
