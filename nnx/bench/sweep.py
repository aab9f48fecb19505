"""The scaling sweep: gradient time against batch size and hidden size, per device.

Two one-dimensional sweeps around the book's point (batch 100, hidden 50): the batch
size at the book's hidden size, and the hidden size at the book's batch size, each over
1-3-10 steps. Backprop is timed at every point; the vectorised numerical gradient only
where one call is predicted (from the previous point, linearly in the work) to take at
most ``max_seconds``; the others are marked skipped. Every point's memory is estimated
before anything runs, and a sweep that would not fit is refused up front.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from backends import Backend, host_memory_free
from nnx.bench.cases import INPUT, OUTPUT, DataSource, make_net, on_device
from nnx.bench.timing import Case, run_interleaved
from nnx.errors import InputError
from nnx.numerical import DEFAULT_BUDGET

GiB = 2**30
METHODS = ("backprop", "numerical_vectorized")


def grid(lo: int, hi: int) -> list[int]:
    """1-3-10 steps from ``lo`` to ``hi``, ``hi`` included: grid(10, 2000) = [10, 30, ..., 2000]."""
    if hi < lo:
        return [hi]
    out, decade = [], 1
    while decade <= hi:
        out += [v for v in (decade, 3 * decade) if lo <= v < hi]
        decade *= 10
    return sorted(set(out)) + [hi]


def points(batch: int, hidden: int, max_batch: int, max_hidden: int) -> dict[str, list[tuple]]:
    """The (batch, hidden) points of each axis."""
    return {
        "batch": [(b, hidden) for b in grid(10, max_batch)],
        "hidden": [(batch, h) for h in grid(10, max_hidden)],
    }


def backprop_bytes(batch: int, hidden: int, itemsize: int) -> int:
    """Device memory of one backprop step (generous): the batch, about five (batch, hidden)
    and (batch, 10) activations and gradients, the parameters and their gradients twice."""
    params = INPUT * hidden + hidden + hidden * OUTPUT + OUTPUT
    return itemsize * (batch * INPUT + 5 * batch * (hidden + OUTPUT) + 4 * params)


def host_batch_bytes(batch: int) -> int:
    """Host memory to make one float64 batch (with the synthetic generator's temporaries)."""
    return 4 * batch * INPUT * 8


def numerical_bytes(batch: int, hidden: int, density: float) -> int:
    """Device memory of the vectorised numerical gradient (always float64; generous).

    It moves only the rows where an input is non-zero, so its largest arrays -- one value
    per (non-zero input, output column), kept three times over (the chunks, their
    concatenation and its running sum) -- scale with the batch's ``density`` of non-zero
    pixels; on top come copies of the batch and forward pass, and about five temporaries
    of the size of its element budget.
    """
    params = INPUT * hidden + hidden + hidden * OUTPUT + OUTPUT
    pairs = density * batch * INPUT + batch  # the bias counts as an input of ones
    return int(8 * (
        2 * batch * (INPUT + 1) + 3 * batch * (hidden + OUTPUT) + 2 * params
        + 3 * pairs * hidden + 2 * pairs + 5 * DEFAULT_BUDGET
    ))


def check_memory(
    backends: list[Backend],
    backprop_points: list[tuple[int, int]],
    numerical_points: list[tuple[int, int]] = (),
    density: float = 1.0,
    free: Callable[[Backend], int] = Backend.memory_free,
    host_free: Callable[[], int] = host_memory_free,
    what: str = "sweep point",
    hint: str = "--max-batch/--max-hidden",
) -> None:
    """Refuse, before anything runs, points that must run but would not fit in memory.

    Every point runs backprop on every device at once (host-backed devices share the
    host's memory, with the host batch); ``numerical_points`` also run the vectorised
    numerical gradient, one device at a time.
    """
    host_devices = [be for be in backends if be.name != "cupy"]
    host_bytes = host_free()
    wanted = sorted(set(backprop_points) | set(numerical_points))
    for b, h in wanted:
        extra = numerical_bytes(b, h, density) if (b, h) in numerical_points else 0
        need = host_batch_bytes(b) + sum(backprop_bytes(b, h, _itemsize(be)) for be in host_devices)
        if host_devices:
            need += extra
        over = f"{what} batch={b}, hidden={h}", hint
        _refuse_over(*over, need, host_bytes, "the host")
        for be in backends:
            if be.name == "cupy":
                need = backprop_bytes(b, h, _itemsize(be)) + extra
                _refuse_over(*over, need, free(be), be.device)


def gib(n: float) -> str:
    """Bytes as GiB for a message: 0.0123, 4.56, 3,140."""
    return f"{n / GiB:,.0f}" if n >= 100 * GiB else f"{n / GiB:.3g}"


def _itemsize(be: Backend) -> int:
    return 4 if be.dtype == be.xp.float32 else 8


def _refuse_over(point: str, hint: str, need: int, available: int, where: str) -> None:
    if need > available:
        raise InputError(
            f"{point} needs ~{gib(need)} GiB, more than the {gib(available)} GiB "
            f"available on {where}; use a smaller {hint}"
        )


def work(batch: int, hidden: int) -> int:
    """The vectorised numerical gradient's work at a point, only ever used as a ratio.

    Each (input, row) pair of a layer moves that layer's output columns, so the work
    grows as batch x hidden, as coordinates x batch x the width of the layer after.
    """
    return batch * (INPUT * hidden * OUTPUT + hidden * OUTPUT + hidden * OUTPUT + OUTPUT)


def run_sweep(
    backends: list[Backend], source: DataSource, opts: Any, log: Callable[[str], None],
    reference: dict[str, tuple[float, int]] | None = None,
) -> dict[str, Any]:
    """Time both methods at every point of both axes on every device.

    ``opts`` carries batch, hidden, max_batch, max_hidden, max_seconds, repeat,
    numerical_repeat, warmup and seed. ``reference`` maps a device to (seconds, work)
    of a numerical gradient already measured, to predict the first point's time.
    """
    pts = points(opts.batch, opts.hidden, opts.max_batch, opts.max_hidden)
    check_memory(backends, [p for axis in pts.values() for p in axis])
    out: dict[str, Any] = {"max_seconds": opts.max_seconds, "axes": {}}
    for axis, axis_points in pts.items():
        last = dict(reference or {})
        rows = []
        for b, h in axis_points:
            log(f"sweep {axis}: batch={b}, hidden={h}")
            rows.append(_point(backends, source, opts, b, h, last))
        out["axes"][axis] = {"points": rows, "crossover": crossovers(rows, axis)}
    return out


def _point(backends, source, opts, b: int, h: int, last: dict) -> dict[str, Any]:
    host = source.batch(b)
    density = float(np.count_nonzero(host.x)) / host.x.size
    backprop, numerical, row = [], [], {"batch": b, "hidden": h, "backprop": {},
                                        "numerical_vectorized": {}}
    for be in backends:
        net = make_net(be, h, opts.seed)
        x, t = on_device(be, host)
        backprop.append(Case(be.device, lambda n=net, x=x, t=t: n.gradient(x, t), be))
        predicted = None
        if be.device in last:
            seconds, done = last[be.device]
            predicted = seconds * work(b, h) / done
        need, available = numerical_bytes(b, h, density), be.memory_free()
        if predicted is not None and predicted > opts.max_seconds:
            skipped = (f"one call predicted to take ~{predicted:.3g} s, "
                       f"more than --max-seconds {opts.max_seconds:g}")
        elif need > available:
            skipped = f"would need ~{gib(need)} GiB, more than the {gib(available)} GiB available"
        else:
            skipped = ""
        if skipped:
            row["numerical_vectorized"][be.device] = {"skipped": skipped}
            continue
        numerical.append(Case(be.device, lambda n=net, x=x, t=t: n.numerical_gradient(x, t), be))
    run_interleaved(backprop, opts.repeat, opts.warmup)
    run_interleaved(numerical, opts.numerical_repeat, 1)
    for case in backprop:
        row["backprop"][case.name] = case.summary()
    for case in numerical:
        stats = case.summary()
        row["numerical_vectorized"][case.name] = stats
        last[case.name] = (stats["median_s"], work(b, h))
    return row


def crossovers(rows: list[dict], axis: str) -> dict[str, dict[str, Any]]:
    """For each method and GPU: the smallest size from which the GPU beats the CPU."""
    out: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        devices = {d for r in rows for d in r[method] if d.startswith("cuda")}
        for gpu in sorted(devices):
            pairs = [
                (r[axis], r[method][gpu]["median_s"] < r[method]["cpu"]["median_s"])
                for r in rows
                if "median_s" in r[method].get(gpu, {}) and "median_s" in r[method].get("cpu", {})
            ]
            out.setdefault(method, {})[gpu] = _crossover(pairs, axis)
    return out


def _crossover(pairs: list[tuple[int, bool]], axis: str) -> dict[str, Any]:
    if not pairs:
        return {"from": None, "text": "no point measured on both devices"}
    start = None
    for size, gpu_faster in reversed(pairs):
        if not gpu_faster:
            break
        start = size
    if start is None:
        return {"from": None, "text": f"CPU faster up to {axis}={pairs[-1][0]}"}
    if start == pairs[0][0]:
        return {"from": start, "text": f"GPU faster at every {axis} from {start}"}
    return {"from": start, "text": f"GPU faster from {axis}={start} on"}
