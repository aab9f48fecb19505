"""Gradient check: backpropagation against central differences, per parameter.

For each checked coordinate the relative error is ``|a - n| / max(|a|, |n|, tiny)``
(``a`` backprop, ``n`` numerical). Three modes:

- ``"full"``: every coordinate, numerically by the vectorised method;
- ``"sample"``: ``n_samples`` coordinates per parameter, chosen on the host, by the
  book's one-coordinate loop;
- ``"direction"``: one random unit direction ``v`` over all parameters, two loss
  evaluations: ``(L(p + h v) - L(p - h v)) / 2h`` against ``sum(grad * v)`` (the fast
  mode of JAX's ``check_grads`` and PyTorch's ``gradcheck``).

The numerical work runs on a float64 copy of the net whatever its training dtype: a
float32 central difference with h=1e-4 is noise at the 1e-3 level.

ReLU kinks. A coordinate *crosses a kink* when its +-h step changes some ReLU mask
(``pre-activation > 0``) anywhere downstream; there the central difference measures a
different one-sided slope than backprop, and a large error says nothing about the
code. Such coordinates are reported (count, flat indices, their largest error) and left
out of the verdict. ``"sample"`` and ``"direction"`` observe the masks of the perturbed
forward passes. ``"full"`` predicts them without running those passes: as long as no
mask changes, a step ``s`` of ``W_k[i, j]`` moves the pre-activations of layer ``k`` by
``s * u[n] * e_j`` (``u`` the layer's input column ``i``, or 1 for ``b_k[j]``) and those
of each later layer ``l`` linearly, by ``s * u[n] * J_l[n, j, :]`` with
``J_{l+1} = (J_l * mask_l) @ W_{l+1}``. So the first mask to change, if any, is found
exactly by testing ``|a_l[n, m]| <= h * |u[n]| * |J_l[n, j, m]|`` for every ReLU input
``a_l`` (with a 1e-6 relative margin for rounding): the prediction is the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnx.errors import one_of, positive_int, positive_number
from nnx.layers import Relu
from nnx.numerical import numerical_gradient

Array = Any
MODES = ("full", "sample", "direction")
_MARGIN = 1e-6  # relative slack on the step when predicting kinks: rounding, never a miss
_BUDGET = 2**22  # elements of the largest temporary array of the kink prediction


@dataclass(frozen=True)
class ParamCheck:
    """The check of one parameter (or, in direction mode, of the one direction)."""

    name: str
    shape: tuple[int, ...]
    checked: int  # coordinates (or directions) in the verdict
    max_rel: float
    mean_rel: float
    max_abs: float
    mean_abs: float
    tol: float
    kink_indices: tuple[int, ...] = ()  # flat C-order indices left out: crossed a ReLU kink
    kink_max_rel: float = 0.0  # the largest relative error among those, for information

    @property
    def kinks(self) -> int:
        """How many coordinates crossed a ReLU kink (excluded from the verdict)."""
        return len(self.kink_indices)

    @property
    def ok(self) -> bool:
        """No checked coordinate has a relative error above ``tol`` (NaN fails)."""
        return self.max_rel <= self.tol


@dataclass(frozen=True)
class GradCheckReport:
    """Per-parameter errors of a gradient check; ``str()`` gives a table."""

    mode: str
    h: float
    tol: float
    tiny: float
    device: str
    params: dict[str, ParamCheck] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No coordinate outside the kinks failed (see :attr:`conclusive`)."""
        return all(p.ok for p in self.params.values())

    @property
    def conclusive(self) -> bool:
        """Every parameter had at least one coordinate checked away from kinks."""
        return all(p.checked > 0 for p in self.params.values())

    @property
    def max_rel(self) -> float:
        """The largest relative error over all checked coordinates."""
        return max(p.max_rel for p in self.params.values())

    @property
    def kinks(self) -> int:
        """Coordinates excluded because their step crossed a ReLU kink."""
        return sum(p.kinks for p in self.params.values())

    def __str__(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        if self.ok and not self.conclusive:
            verdict = "NO VERDICT (every coordinate of a parameter crossed a ReLU kink)"
        head = (f"gradient check ({self.mode}, h={self.h:g}, tol={self.tol:g}, "
                f"tiny={self.tiny:g}) on {self.device}: {verdict}")
        cols = f"{'param':<6} {'shape':>11} {'checked':>8} {'kinks':>6} " + " ".join(
            f"{c:>9}" for c in ("max rel", "mean rel", "max abs", "mean abs")
        )
        lines = [head, cols]
        for p in self.params.values():
            shape = "x".join(str(d) for d in p.shape) or "()"
            nums = " ".join(f"{v:9.2e}" for v in (p.max_rel, p.mean_rel, p.max_abs, p.mean_abs))
            flag = "" if p.ok else "  <- FAIL"
            note = f"  (kinks: max rel {p.kink_max_rel:.2e})" if p.kinks else ""
            lines.append(f"{p.name:<6} {shape:>11} {p.checked:>8} {p.kinks:>6} {nums}{flag}{note}")
        return "\n".join(lines)


def gradient_check(
    net: Any,
    x: Array,
    t: Array,
    mode: str = "full",
    n_samples: int = 32,
    seed: int | None = 0,
    h: float = 1e-4,
    tol: float = 1e-5,
    tiny: float = 1e-5,
) -> GradCheckReport:
    """Compare ``net.gradient(x, t)`` with central differences of ``net.loss(x, t)``.

    ``net`` is a :class:`nnx.network.MultiLayerNet`; ``x``, ``t`` a batch on its device.
    ``mode`` is "full", "sample" (``n_samples`` coordinates per parameter, drawn by a
    NumPy Generator seeded with ``seed``) or "direction" (one direction drawn likewise).
    ``tiny`` is the gradient size below which errors count absolutely: a coordinate
    passes if ``|a - n| <= tol * max(|a|, |n|, tiny)``. The float64 central difference
    of the book's loop carries rounding noise of about ``1e-16 * |L| / h`` (~1e-12 for L~1),
    so the defaults accept that noise and still catch a 1% error in any gradient entry
    larger than ~1e-8. Nothing leaves the device until the summary statistics.
    """
    one_of("mode", mode, MODES)
    positive_int("n_samples", n_samples)
    h, tol, tiny = (positive_number(k, v) for k, v in (("h", h), ("tol", tol), ("tiny", tiny)))
    net.check_layers()  # the float64 copy below is built from the net's own layers
    net.check_values(x, t)
    net64 = net.astype("float64")
    net64.hold_masks()  # dropout: one mask for the backprop and every perturbed pass
    xp = net64.xp
    with net.backend.scope():  # CuPy computes on the current device: make it the net's
        x64 = xp.astype(x, xp.float64)
        grads = net64.gradient(x64, t)
        relus = [layer for layer in net64.layers if isinstance(layer, Relu)]
        base_masks = [layer.mask for layer in relus]  # of the unperturbed forward pass
        rng = np.random.default_rng(seed)
        ctx = _Context(net64, x64, t, h, tol, tiny, relus, base_masks)
        if mode == "full" and net64.extended:  # the book's loop over every coordinate
            rows = _sample(ctx, grads, max(math.prod(p.shape) for p in net64.params.values()),
                           rng)
        elif mode == "full":
            rows = _full(ctx, grads)
        elif mode == "sample":
            rows = _sample(ctx, grads, n_samples, rng)
        else:
            rows = _direction(ctx, grads, rng)
    return GradCheckReport(mode, float(h), float(tol), float(tiny), str(net64.backend), rows)


@dataclass
class _Context:
    net: Any
    x: Array
    t: Array
    h: float
    tol: float
    tiny: float
    relus: list[Relu]
    base_masks: list[Array]


def _full(ctx: _Context, grads: dict[str, Array]) -> dict[str, ParamCheck]:
    xp, dev = ctx.net.xp, ctx.net.backend.array_device
    numerical = ctx.net.numerical_gradient(ctx.x, ctx.t, method="vectorized", h=ctx.h)
    kinks = _predicted_kinks(ctx.net, ctx.x, ctx.h) if ctx.relus and not ctx.net.extended \
        else {}
    rows = {}
    for key, g in grads.items():
        kink = kinks.get(key, xp.zeros(g.shape, dtype=xp.bool, device=dev))
        flat = [xp.reshape(a, (-1,)) for a in (g, numerical[key], kink)]
        rows[key] = _summarise(ctx, key, tuple(g.shape), *flat, positions=None)
    return rows


def _sample(
    ctx: _Context, grads: dict[str, Array], n_samples: int, rng: np.random.Generator
) -> dict[str, ParamCheck]:
    net, xp, be = ctx.net, ctx.net.xp, ctx.net.backend
    rows = {}
    for key, param in net.params.items():
        size = math.prod(param.shape)
        positions = np.sort(rng.choice(size, size=min(n_samples, size), replace=False))
        crossed: list[Array] = []
        f = _observing_loss(ctx, crossed)
        num = numerical_gradient(f, param, ctx.h, indices=positions.tolist())
        a = xp.take(xp.reshape(grads[key], (-1,)), be.asarray(positions))
        if crossed:  # two forward passes per coordinate: +h, then -h
            kink = xp.any(xp.reshape(xp.stack(crossed), (-1, 2)), axis=1)
        else:
            kink = xp.zeros(num.shape, dtype=xp.bool, device=be.array_device)
        rows[key] = _summarise(ctx, key, tuple(param.shape), a, num, kink, positions=positions)
    return rows


def _observing_loss(ctx: _Context, crossed: list[Array]) -> Any:
    """``net.loss`` for the one-coordinate loop, noting whether any ReLU mask moved."""

    def f(_w: Array) -> Array:
        loss = ctx.net.loss(ctx.x, ctx.t, train_flg=True)
        if ctx.relus:
            crossed.append(_masks_changed(ctx, ctx.relus))
        return loss

    return f


def _masks_changed(ctx: _Context, relus: Sequence[Relu]) -> Array:
    xp = ctx.net.xp
    changed = None
    for layer, base in zip(relus, ctx.base_masks, strict=True):
        c = xp.any(layer.mask != base)
        changed = c if changed is None else xp.logical_or(changed, c)
    return changed


def _direction(
    ctx: _Context, grads: dict[str, Array], rng: np.random.Generator
) -> dict[str, ParamCheck]:
    net, xp, be = ctx.net, ctx.net.xp, ctx.net.backend
    host = {k: rng.standard_normal(tuple(p.shape)) for k, p in net.params.items()}
    norm = math.sqrt(sum(float(np.sum(v * v)) for v in host.values()))
    v = {k: be.asarray(d / norm, dtype="float64") for k, d in host.items()}
    analytic = sum(xp.sum(grads[k] * v[k]) for k in v)
    losses, crossed = [], []
    for sign in (1.0, -1.0):
        moved = net.astype("float64")
        moved.params = {k: p + (sign * ctx.h) * v[k] for k, p in net.params.items()}
        losses.append(moved.loss(ctx.x, ctx.t, train_flg=True))
        if ctx.relus:
            crossed.append(_masks_changed(ctx, [m for m in moved.layers if isinstance(m, Relu)]))
    numeric = (losses[0] - losses[1]) / (2 * ctx.h)
    if crossed:
        kink = xp.reshape(xp.logical_or(crossed[0], crossed[1]), (1,))
    else:
        kink = xp.zeros((1,), dtype=xp.bool, device=be.array_device)
    size = sum(math.prod(p.shape) for p in net.params.values())
    a, n = xp.reshape(analytic, (1,)), xp.reshape(numeric, (1,))
    # One "coordinate": the direction; a kink there is reported as index 0.
    return {"all": _summarise(ctx, "all", (size,), a, n, kink, positions=np.zeros(1, np.int64))}


def _summarise(ctx: _Context, name: str, shape: tuple[int, ...], a: Array, n: Array,
               kink: Array, positions: np.ndarray | None) -> ParamCheck:
    """Errors of 1-D ``a`` against ``n`` outside ``kink``: one small host transfer."""
    xp, be = ctx.net.xp, ctx.net.backend
    err = xp.abs(a - n)
    rel = err / xp.maximum(xp.maximum(xp.abs(a), xp.abs(n)), ctx.tiny)
    keep = xp.logical_not(kink)
    stats = xp.stack([
        xp.max(xp.where(keep, rel, 0.0)),
        xp.sum(xp.where(keep, rel, 0.0)),
        xp.max(xp.where(keep, err, 0.0)),
        xp.sum(xp.where(keep, err, 0.0)),
        xp.sum(xp.astype(keep, xp.float64)),
        xp.max(xp.where(kink, rel, 0.0)),
    ])
    max_rel, sum_rel, max_abs, sum_abs, checked, kink_rel = be.to_numpy(stats).tolist()
    where = np.flatnonzero(be.to_numpy(kink))
    where = where if positions is None else positions[where]
    count = max(int(checked), 1)
    return ParamCheck(name, shape, int(checked), max_rel, sum_rel / count, max_abs,
                      sum_abs / count, ctx.tol, tuple(int(i) for i in where), kink_rel)


def _predicted_kinks(net: Any, x: Array, h: float) -> dict[str, Array]:
    """For every parameter, which coordinates' +-h step changes a ReLU mask (see module doc)."""
    xp = net.xp
    dev = net.backend.array_device
    affines = net.affines
    last = len(affines) - 1
    trace = net.trace(x)  # the forward pass: each Affine's input and pre-activation
    inputs, pre = [a for a, _ in trace], [z for _, z in trace]
    step = h * (1.0 + _MARGIN)
    flags = {}
    for k, layer in enumerate(affines):
        W = layer.W
        if k == last:  # nothing downstream of the logits but the softmax
            flags[f"W{k + 1}"] = xp.zeros(W.shape, dtype=xp.bool, device=dev)
            flags[f"b{k + 1}"] = xp.zeros(layer.b.shape, dtype=xp.bool, device=dev)
            continue
        n_in, n_out = W.shape
        widest = max([n_out] + [p.shape[-1] for p in pre[k + 1 : last]])
        chunk = max(1, _BUDGET // max(n_in * n_out, n_out * widest))
        fw = xp.zeros(W.shape, dtype=xp.bool, device=dev)
        fb = xp.zeros(layer.b.shape, dtype=xp.bool, device=dev)
        for start in range(0, x.shape[0], chunk):
            rows = slice(start, min(start + chunk, x.shape[0]))
            reach = _reach(xp, pre, affines, k, last, rows)  # (c, n_out)
            fb = xp.logical_or(fb, xp.any(reach <= step, axis=0))
            u = xp.abs(inputs[k][rows, :])  # (c, n_in)
            hit = (u[:, :, None] * step >= reach[:, None, :]) & (u[:, :, None] > 0)
            fw = xp.logical_or(fw, xp.any(hit, axis=0))
        flags[f"W{k + 1}"], flags[f"b{k + 1}"] = fw, fb
    return flags


def _reach(xp: Any, pre: list[Array], affines: list[Any], k: int, last: int, rows: slice) -> Array:
    """The smallest |u * s| that changes a ReLU mask, per sample and unit j of layer k.

    min over ReLU inputs a_m (m >= k) and their units of |a_m[n, :]| / |J_m[n, j, :]| (J_k = I).
    """
    reach = xp.abs(pre[k][rows, :])
    jac = None
    for m in range(k + 1, last):
        mask = xp.astype(pre[m - 1][rows, :] > 0, pre[m].dtype)
        w = affines[m].W
        if jac is None:  # (I * mask_k) @ W
            jac = mask[:, :, None] * w[None, :, :]
        else:
            jac = xp.matmul(jac * mask[:, None, :], w)
        size = xp.abs(jac)
        moved = size > 0
        ratio = xp.abs(pre[m][rows, :])[:, None, :] / xp.where(moved, size, 1.0)
        reach = xp.minimum(reach, xp.min(xp.where(moved, ratio, xp.inf), axis=2))
    return reach
