"""Numerical differentiation of chapter 4: central differences with h = 1e-4.

``numerical_gradient`` is the book's routine, one coordinate at a time: the faithful,
slow reference. ``layered_numerical_gradient`` computes the same central differences
for every parameter of a layered net at once.

The vectorised method computes the same quantity as the book's loop --
(L(w + h) - L(w - h)) / 2h for each parameter w, with the same floating-point step -- but
evaluates all perturbed nets in a few array operations, using what a perturbation of
one parameter can change:

- the loss is a mean over rows, and perturbing ``W[i, j]`` of an Affine layer by s
  changes row n only through ``s * x[n, i]`` added to output column ``j``; rows with
  ``x[n, i] == 0`` (most MNIST pixels) do not change at all and are skipped. The bias is
  handled as a weight on an extra input column of ones;
- the activation after it changes only that column, so the next Affine's output moves
  by the rank-one ``dz * W_next[j, :]``; later layers are evaluated on the moved rows.

Each moved row's loss change comes from its logits' change ``d`` as
``log(sum_c p_c exp(d_c)) - d_t`` (``p`` the unperturbed softmax of that row), written
with ``log1p``/``expm1``: the same difference of losses, without subtracting two nearly
equal numbers, so it is at least as accurate as the loop's. Summing the row changes of
each parameter and dividing by N and 2h gives its central difference.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from backends import device_of, xp_of
from nnx.functions import as_one_hot, softmax
from nnx.layers import ACTIVATIONS

Array = Any
H = 1e-4


def numerical_diff(f: Callable[[Any], Any], x: Any, h: float = H) -> Any:
    """(f(x + h) - f(x - h)) / 2h: the central difference of a scalar function."""
    return (f(x + h) - f(x - h)) / (2 * h)


def numerical_gradient(
    f: Callable[[Array], Any], x: Array, h: float = H, indices: Sequence[int] | None = None,
    *, stop: Callable[[], bool] | None = None,
) -> Array:
    """Gradient of ``f`` at ``x`` by central differences, one coordinate at a time.

    As in the book, ``x`` is perturbed in place (and restored), so ``f`` may ignore its
    argument and read ``x`` through a closure, as ``lambda W: net.loss(x, t)`` does.
    With ``indices`` (flat, C-order positions), only those partial derivatives are
    computed and returned as a 1-D array in that order: a sample of the full loop.
    ``stop`` is polled before each coordinate (see :func:`poll`).
    """
    xp = xp_of(x)
    if indices is None:
        grad = xp.zeros_like(x)
        for idx in _indices(x.shape):
            poll(stop)
            grad[idx] = _central(f, x, idx, h)
        return grad
    out = xp.zeros((len(indices),), dtype=x.dtype, device=device_of(x))
    for m, flat in enumerate(indices):
        poll(stop)
        out[m] = _central(f, x, _unravel(int(flat), x.shape), h)
    return out


def poll(stop: Callable[[], bool] | None) -> None:
    """Raise ``KeyboardInterrupt`` if ``stop()`` is true: a stop asked for during a gradient
    (the book's loop takes seconds per batch) ends it between two steps, with ``x`` restored."""
    if stop is not None and stop():
        raise KeyboardInterrupt


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


def _indices(shape: tuple[int, ...]) -> itertools.product:
    """Every index of an array of ``shape``, in C order (host-side; no array data touched)."""
    return itertools.product(*(range(d) for d in shape))


# Elements of the largest temporary array: 2**22 float64 values are 32 MiB.
DEFAULT_BUDGET = 2**22


def layered_numerical_gradient(
    net: Any, x: Array, t: Array, h: float = 1e-4, budget: int = DEFAULT_BUDGET,
    *, stop: Callable[[], bool] | None = None,
) -> dict[str, Array]:
    """Central-difference gradients of ``net.loss(x, t)`` for every parameter of ``net``.

    ``net`` is a :class:`nnx.network.MultiLayerNet` (float64 for meaningful results);
    ``budget`` bounds the elements of the largest temporary array; ``stop`` is polled before
    each chunk of it (see :func:`poll`).
    """
    s = _State(net, x, t)
    grads: dict[str, Array] = {}
    for k, layer in enumerate(s.affines):
        n_in = layer.W.shape[0]
        g = _affine_gradient(s, k, h, budget, stop)
        grads[f"W{k + 1}"], grads[f"b{k + 1}"] = g[:n_in, :], g[n_in, :]
    return grads


class _State:
    """One forward pass (:meth:`~nnx.network.MultiLayerNet.trace`): each Affine's input
    and output, the activation, the softmax and the one-hot labels."""

    def __init__(self, net: Any, x: Array, t: Array) -> None:
        self.xp = net.xp
        trace = net.trace(x)
        self.affines = net.affines
        self.inputs = [a for a, _ in trace]
        self.outputs = [z for _, z in trace]
        self.acts = [ACTIVATIONS[net.activation].fn] * (len(trace) - 1)
        self.p = softmax(self.outputs[-1])
        self.t = as_one_hot(t, self.p.shape[-1], self.p.dtype)


def _affine_gradient(s: _State, k: int, h: float, budget: int,
                     stop: Callable[[], bool] | None = None) -> Array:
    """Central differences for ``[W; b]`` of Affine ``k``, shape (in + 1, out)."""
    xp = s.xp
    layer = s.affines[k]
    n, n_out = s.outputs[k].shape
    dev = device_of(layer.W)
    ones = xp.ones((n, 1), dtype=layer.W.dtype, device=dev)
    x_aug = xp.concat([s.inputs[k], ones], axis=1)  # (N, in + 1)
    w_aug = xp.concat([layer.W, layer.b[None, :]], axis=0)  # (in + 1, out)
    # The loop's real steps: (w + h) - w is not exactly h in floating point.
    up, down = (w_aug + h) - w_aug, (w_aug - h) - w_aug
    # Pairs (input i, row n) where x[n, i] != 0, sorted by i: the only rows that move.
    nonzero = x_aug.T != 0
    pairs = xp.nonzero(xp.reshape(nonzero, (-1,)))[0]
    x_flat = xp.reshape(x_aug.T, (-1,))
    width = n_out * max([o.shape[-1] for o in s.outputs[k + 1 :]] + [1])
    chunk = max(1, budget // width)
    parts = []
    for start in range(0, pairs.shape[0], chunk):
        poll(stop)
        p = pairs[start : min(start + chunk, pairs.shape[0])]
        i, rows = p // n, p % n
        xv = xp.take(x_flat, p)[:, None]
        d_up = xp.take(up, i, axis=0) * xv  # (P, out): each column a separate copy
        d_down = xp.take(down, i, axis=0) * xv
        parts.append(_row_change(s, k, rows, d_up) - _row_change(s, k, rows, d_down))
    if not parts:
        return xp.zeros_like(w_aug)
    u = xp.concat(parts, axis=0)  # (pairs, out)
    # Sum each input's rows: differences of a running sum at the segment ends.
    counts = xp.sum(xp.astype(nonzero, xp.int64), axis=1)
    ends = xp.cumulative_sum(counts)
    total = xp.concat([xp.zeros((1, n_out), dtype=u.dtype, device=dev),
                       xp.cumulative_sum(u, axis=0)], axis=0)
    g = xp.take(total, ends, axis=0) - xp.take(total, ends - counts, axis=0)
    return g / (n * 2 * h)


def _row_change(s: _State, k: int, rows: Array, d: Array) -> Array:
    """Loss change of row ``rows[m]`` when output ``j`` of Affine ``k`` moves by ``d[m, j]``.

    Returns (P, out): one value per (pair, output column), each a separate perturbed net.
    """
    xp = s.xp
    p = xp.take(s.p, rows, axis=0)  # (P, C)
    t = xp.take(s.t, rows, axis=0)
    if k == len(s.outputs) - 1:
        # Only logit j moves: log(1 + p_j expm1(d)) - t_j d.
        return xp.log1p(p * xp.expm1(d)) - t * d
    act = s.acts[k]
    before = xp.take(s.outputs[k], rows, axis=0)  # (P, out)
    dz = act(before + d) - act(before)
    w_next = s.affines[k + 1].W  # (out, out_next)
    if k + 1 == len(s.outputs) - 1:
        # The logits move by dz[:, j] * w_next[j, :]; the true class's share is
        # dz * (t @ w_next.T), with no (P, out, C) product needed.
        # A batched matrix-vector product: no conjugate or broadcast copy, as vecdot makes.
        moved = xp.matmul(xp.expm1(dz[:, :, None] * w_next[None, :, :]), p[:, :, None])[..., 0]
        return xp.log1p(moved) - dz * xp.matmul(t, w_next.T)
    delta = dz[:, :, None] * w_next[None, :, :]  # (P, out, out_next)
    for j in range(k + 1, len(s.outputs) - 1):
        base = xp.take(s.outputs[j], rows, axis=0)[:, None, :]
        z = s.acts[j](base + delta)
        nxt = s.affines[j + 1]
        delta = xp.matmul(z, nxt.W) + nxt.b - xp.take(s.outputs[j + 1], rows, axis=0)[:, None, :]
    moved = xp.matmul(xp.expm1(delta), p[:, :, None])[..., 0]
    return xp.log1p(moved) - xp.matmul(delta, t[:, :, None])[..., 0]
