"""The vectorised numerical gradient of a layered net: every central difference at once.

It computes the same quantity as the book's loop -- (L(w + h) - L(w - h)) / 2h for each
parameter w, with the same floating-point step -- but uses what a perturbation of one
parameter can change, and evaluates thousands of perturbed nets in one array operation:

- perturbing ``W[i, j]`` of an Affine layer by s adds ``s * x[:, i]`` to column ``j`` of
  its output only (``b[j]``: adds s);
- the activation after it changes only that column, so the next Affine's output moves
  by the rank-one ``dz[:, None] * W_next[j, :]``;
- any later layers are evaluated on the stack of perturbed activations.

The loss change of each perturbed copy is then computed from the change of the logits
``d`` as ``mean_n [ log(sum_c p_nc exp(d_nc)) - d_n,t ]`` (``p`` the unperturbed softmax),
written with ``log1p``/``expm1``: the same loss difference, without subtracting two
nearly equal losses, so it is at least as accurate as the loop's.
"""

from __future__ import annotations

from typing import Any

from backends import device_of
from nnx.functions import as_one_hot, relu, sigmoid, softmax
from nnx.layers import Affine, Relu, Sigmoid

Array = Any
_ACT = {Relu: relu, Sigmoid: sigmoid}
# Elements of the largest temporary stack: 2**22 float64 values are 32 MiB.
DEFAULT_BUDGET = 2**22


def layered_numerical_gradient(
    net: Any, x: Array, t: Array, h: float = 1e-4, budget: int = DEFAULT_BUDGET
) -> dict[str, Array]:
    """Central-difference gradients of ``net.loss(x, t)`` for every parameter of ``net``.

    ``net`` is a :class:`nnx.network.MultiLayerNet` (float64 for meaningful results);
    ``budget`` bounds the elements of the largest temporary array.
    """
    xp = net.xp
    state = _forward(net, x, t)
    grads: dict[str, Array] = {}
    for k in range(len(state.affines)):
        for kind in ("W", "b"):
            param = net.params[f"{kind}{k + 1}"]
            flat = xp.reshape(param, (-1,))
            n = flat.shape[0]
            width = state.widths[k]
            chunk = max(1, budget // max(1, x.shape[0] * width))
            parts = []
            for start in range(0, n, chunk):
                coords = xp.arange(start, min(start + chunk, n), device=device_of(x))
                w = xp.take(flat, coords)
                # The loop's real steps: (w + h) - w is not exactly h in floating point.
                up = _delta_loss(state, k, kind, coords, (w + h) - w)
                down = _delta_loss(state, k, kind, coords, (w - h) - w)
                parts.append((up - down) / (2 * h))
            grads[f"{kind}{k + 1}"] = xp.reshape(xp.concat(parts), param.shape)
    return grads


class _State:
    """One forward pass: each Affine's input and output, each activation, softmax, labels."""

    def __init__(self) -> None:
        self.inputs: list[Array] = []
        self.outputs: list[Array] = []
        self.acts: list[Any] = []
        self.widths: list[int] = []
        self.affines: list[Affine] = []
        self.xp: Any = None
        self.p: Array = None
        self.t: Array = None


def _forward(net: Any, x: Array, t: Array) -> _State:
    xp = net.xp
    s = _State()
    s.xp = xp
    s.affines = net._affines()
    h = xp.reshape(x, (x.shape[0], -1))
    for layer in net.layers:
        if isinstance(layer, Affine):
            s.inputs.append(h)
            h = xp.matmul(h, layer.W) + layer.b
            s.outputs.append(h)
        else:
            s.acts.append(_ACT[type(layer)])
            h = s.acts[-1](h)
    s.p = softmax(h)
    s.t = as_one_hot(t, h.shape[-1], h.dtype)
    # The widest stack a perturbation of Affine k builds: the widest later output, or
    # (for the last layer) one logit column per copy.
    n = len(s.outputs)
    s.widths = [max((o.shape[-1] for o in s.outputs[k + 1 :]), default=1) for k in range(n)]
    return s


def _delta_loss(s: _State, k: int, kind: str, coords: Array, step: Array) -> Array:
    """Loss change of each perturbed copy: coordinate ``coords[m]`` moved by ``step[m]``."""
    xp = s.xp
    out_width = s.outputs[k].shape[-1]
    cols = coords % out_width if kind == "W" else coords
    if kind == "W":
        rows = coords // out_width
        d = step[:, None] * xp.take(s.inputs[k], rows, axis=1).T  # (K, N)
    else:
        d = step[:, None] * xp.ones_like(s.outputs[k][:, 0])[None, :]
    last = k == len(s.outputs) - 1
    if last:
        # Only logit column ``cols`` moves: log(1 + p_j expm1(d)) - t_j d per row.
        p = xp.take(s.p, cols, axis=1).T
        t = xp.take(s.t, cols, axis=1).T
        return xp.mean(xp.log1p(p * xp.expm1(d)) - t * d, axis=1)
    act = s.acts[k]
    before = xp.take(s.outputs[k], cols, axis=1).T
    dz = act(before + d) - act(before)  # (K, N): change of activation column ``cols``
    w_next = xp.take(s.affines[k + 1].W, cols, axis=0)  # (K, out)
    if k + 1 == len(s.outputs) - 1:
        # The logits move by the rank-one dz[:, :, None] * w_next[:, None, :]; the true
        # class's share of it is dz * (w_next @ t.T), with no (K, N, C) product needed.
        moved = xp.vecdot(xp.expm1(dz[:, :, None] * w_next[:, None, :]), s.p, axis=-1)
        return xp.mean(xp.log1p(moved) - dz * xp.matmul(w_next, s.t.T), axis=1)
    delta = dz[:, :, None] * w_next[:, None, :]  # (K, N, out): change of the next output
    for j in range(k + 1, len(s.outputs) - 1):
        z = s.acts[j](s.outputs[j] + delta)
        delta = xp.matmul(z, s.affines[j + 1].W) + s.affines[j + 1].b - s.outputs[j + 1]
    return _loss_change(s, delta)


def _loss_change(s: _State, d: Array) -> Array:
    """mean_n [log(sum_c p_nc exp(d_nc)) - d_n,t] for a stack of logit changes (K, N, C)."""
    xp = s.xp
    moved = xp.vecdot(xp.expm1(d), s.p, axis=-1)
    return xp.mean(xp.log1p(moved) - xp.vecdot(d, s.t, axis=-1), axis=1)
