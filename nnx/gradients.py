"""Numerical differentiation of chapter 4: central differences with h = 1e-4.

``numerical_gradient`` is the book's routine, one coordinate at a time: the faithful,
slow reference. ``numerical_gradient_batched`` computes the same central differences
for a function that evaluates a whole stack of perturbed copies at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from backends import device_of, xp_of

Array = Any
H = 1e-4


def numerical_diff(f: Callable[[Any], Any], x: Any, h: float = H) -> Any:
    """(f(x + h) - f(x - h)) / 2h: the central difference of a scalar function."""
    return (f(x + h) - f(x - h)) / (2 * h)


def numerical_gradient(
    f: Callable[[Array], Any], x: Array, h: float = H, indices: Sequence[int] | None = None
) -> Array:
    """Gradient of ``f`` at ``x`` by central differences, one coordinate at a time.

    As in the book, ``x`` is perturbed in place (and restored), so ``f`` may ignore its
    argument and read ``x`` through a closure, as ``lambda W: net.loss(x, t)`` does.
    With ``indices`` (flat, C-order positions), only those partial derivatives are
    computed and returned as a 1-D array in that order: a sample of the full loop.
    """
    xp = xp_of(x)
    if indices is None:
        grad = xp.zeros_like(x)
        for idx in _indices(x.shape):
            grad[idx] = _central(f, x, idx, h)
        return grad
    out = xp.zeros((len(indices),), dtype=x.dtype, device=device_of(x))
    for m, flat in enumerate(indices):
        out[m] = _central(f, x, _unravel(int(flat), x.shape), h)
    return out


def _central(f: Callable[[Array], Any], x: Array, idx: tuple[int, ...], h: float) -> Any:
    # A copy: CuPy's x[idx] is a 0-d view, which the writes below would move.
    original = xp_of(x).asarray(x[idx], copy=True)
    x[idx] = original + h
    fxh1 = f(x)
    x[idx] = original - h
    fxh2 = f(x)
    x[idx] = original
    return (fxh1 - fxh2) / (2 * h)


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    idx = []
    for d in reversed(shape):
        flat, r = divmod(flat, d)
        idx.append(r)
    return tuple(reversed(idx))


def numerical_gradient_batched(
    f_stack: Callable[[Array], Array], x: Array, h: float = H, chunk: int = 1024
) -> Array:
    """The same central differences as :func:`numerical_gradient`, ``chunk`` coordinates at once.

    ``f_stack`` takes a stack of K copies of ``x`` of shape ``(K, *x.shape)`` and returns
    the K function values. Each copy differs from ``x`` in one coordinate, perturbed by
    exactly the same floating-point step the one-coordinate loop applies.
    """
    xp = xp_of(x)
    n = 1
    for d in x.shape:
        n *= d
    flat = xp.reshape(x, (1, n))
    parts = []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        coords = xp.arange(start, stop, device=device_of(x))
        cols = xp.arange(n, device=device_of(x))
        hit = coords[:, None] == cols[None, :]
        plus = xp.where(hit, flat + h, flat)
        minus = xp.where(hit, flat - h, flat)
        shape = (stop - start, *x.shape)
        fp = f_stack(xp.reshape(plus, shape))
        fm = f_stack(xp.reshape(minus, shape))
        parts.append((fp - fm) / (2 * h))
    return xp.reshape(xp.concat(parts), x.shape)


def _indices(shape: tuple[int, ...]) -> itertools.product:
    """Every index of an array of ``shape``, in C order (host-side; no array data touched)."""
    return itertools.product(*(range(d) for d in shape))
