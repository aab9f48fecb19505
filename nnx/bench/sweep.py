"""The scaling sweep: gradient time against batch size (at hidden 50) and hidden size (at
batch 100) in 1-3-10 steps, per device. Backprop runs at every point, the vectorised
numerical gradient where one call is predicted (linearly in the work from the previous
point) to take at most ``max_seconds``. A sweep that would not fit in memory is refused
before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from backends import Backend, host_memory_free
from nnx.bench.cases import INPUT, OUTPUT, DataSource, make_net, on_device
from nnx.bench.timing import Case, Row, time_rows
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
    return {"batch": [(b, hidden) for b in grid(10, max_batch)],
            "hidden": [(batch, h) for h in grid(10, max_hidden)]}


def work(batch: int, hidden: int) -> int:
    """The vectorised numerical gradient's work at a point, only ever used as a ratio: each
    (input, row) pair of a layer moves that layer's output columns."""
    return batch * (INPUT * hidden * OUTPUT + hidden * OUTPUT + hidden * OUTPUT + OUTPUT)


def backprop_bytes(batch: int, hidden: int, itemsize: int) -> int:
    """Device memory of one backprop step (generous): the batch, about five (batch, hidden)
    and (batch, 10) activations and gradients, the parameters and their gradients twice."""
    params = INPUT * hidden + hidden + hidden * OUTPUT + OUTPUT
    return itemsize * (batch * INPUT + 5 * batch * (hidden + OUTPUT) + 4 * params)


def numerical_bytes(batch: int, hidden: int, density: float) -> int:
    """Device memory of the vectorised numerical gradient (float64; generous). It moves only
    the rows where an input is non-zero, so its largest arrays -- one value per (non-zero
    input, output column), NumPy's peak holds about 4.2 of them at batch 3000 -- scale with
    the batch's ``density``; on top come copies of the batch and forward pass and five
    temporaries of its budget. Five such arrays leave room for a GPU pool's spare blocks."""
    params = INPUT * hidden + hidden + hidden * OUTPUT + OUTPUT
    pairs = density * batch * INPUT + batch  # the bias counts as an input of ones
    return int(8 * (2 * batch * (INPUT + 1) + 3 * batch * (hidden + OUTPUT) + 2 * params
                    + 5 * pairs * hidden + 2 * pairs + 5 * DEFAULT_BUDGET))


def check_memory(
    backends: list[Backend], backprop_points: list[tuple[int, int]],
    numerical_points: list[tuple[int, int]] = (), density: float = 1.0,
    free: Callable[[Backend], int] = lambda be: be.memory_free(),
    host_free: Callable[[], int] = host_memory_free,
    what: str = "sweep point", hint: str = "--max-batch/--max-hidden",
) -> None:
    """Refuse, before anything runs, points that would not fit in memory. Every point runs
    backprop on every device at once (host-backed devices share the host's memory, with the
    host batch); ``numerical_points`` also run the numerical gradient, a device at a time."""
    on_host = [be for be in backends if not be.is_gpu]
    host_bytes = host_free()
    size = lambda be: 4 if be.dtype == be.xp.float32 else 8  # noqa: E731
    for b, h in sorted(set(backprop_points) | set(numerical_points)):
        extra = numerical_bytes(b, h, density) if (b, h) in numerical_points else 0
        need = 4 * b * INPUT * 8 + sum(backprop_bytes(b, h, size(be)) for be in on_host)
        wants = [(need + extra * bool(on_host), host_bytes, "the host")]
        wants += [(backprop_bytes(b, h, size(be)) + extra, free(be), be.device)
                  for be in backends if be.is_gpu]
        for need, available, where in wants:
            if need > available:
                raise InputError(f"{what} batch={b}, hidden={h} needs ~{gib(need)} GiB, more "
                                 f"than the {gib(available)} GiB available on {where}; "
                                 f"use a smaller {hint}")


def gib(n: float) -> str:
    """Bytes as GiB for a message: 0.0123, 4.56, 3,140."""
    return f"{n / GiB:,.0f}" if n >= 100 * GiB else f"{n / GiB:.3g}"


def run_sweep(
    backends: list[Backend], source: DataSource, opts: Any, log: Callable[[str], None],
    reference: dict[str, tuple[float, int]] | None = None,
) -> dict[str, Any]:
    """Rows of both methods at every point of both axes on every device (memory checked
    first by :func:`check_memory`), and the crossovers. ``opts`` has the program's flags;
    ``reference`` maps a device to (seconds, work) of a numerical gradient measured."""
    pts = points(opts.batch, opts.hidden, opts.max_batch, opts.max_hidden)
    rows: list[Row] = []
    for axis, axis_points in pts.items():
        last = dict(reference or {})
        for b, h in axis_points:
            log(f"sweep {axis}: batch={b}, hidden={h}")
            rows += _point(backends, source, opts, axis, b, h, last)
    gpus = [be.device for be in backends if be.is_gpu]
    crossover = [c for axis in pts for c in crossovers(rows, axis, gpus)]
    return {"max_seconds": opts.max_seconds, "axes": list(pts), "rows": rows,
            "crossover": crossover}


def _point(backends: list[Backend], source: DataSource, opts: Any, axis: str, b: int, h: int,
           last: dict[str, tuple[float, int]]) -> list[Row]:
    host = source.batch(b)
    density = float(np.count_nonzero(host.x)) / host.x.size
    where = {"axis": axis, "batch": b, "hidden": h}
    backprop, numerical, skipped = [], [], []
    for be in backends:
        net, (x, t) = make_net(be, h, opts.seed), on_device(be, host)
        backprop.append((Row(be.device, "backprop", axis, extra=where),
                         Case.on(be, lambda n=net, x=x, t=t: n.gradient(x, t))))
        need, available, note = numerical_bytes(b, h, density), be.memory_free(), ""
        seconds, done = last.get(be.device, (0.0, 1))
        if seconds * work(b, h) / done > opts.max_seconds:
            note = (f"one call predicted to take ~{seconds * work(b, h) / done:.3g} s, "
                    f"more than --max-seconds {opts.max_seconds:g}")
        elif need > available:
            note = f"would need ~{gib(need)} GiB, more than the {gib(available)} GiB available"
        row = Row(be.device, "numerical_vectorized", axis, note=note, extra=where)
        if note:
            skipped.append(row)
        else:
            numerical.append((row, Case.on(be, lambda n=net, x=x, t=t: n.numerical_gradient(x, t))))
    backprop = time_rows(backprop, opts.repeat, opts.warmup)
    numerical = time_rows(numerical, opts.numerical_repeat, 1)
    last.update({r.device: (r.stats.median, work(b, h)) for r in numerical})
    return backprop + numerical + skipped


def crossovers(rows: list[Row], axis: str, gpus: Sequence[str]) -> list[dict[str, Any]]:
    """For each method and GPU (``gpus``: their devices) on one axis: the smallest size from
    which the GPU beats NumPy on the CPU at every larger size."""
    out = []
    for method in METHODS:
        mine = [r for r in rows if r.method == method and r.extra.get("axis") == axis]
        at = {(r.extra[axis], r.device): r.stats.median for r in mine if r.stats is not None}
        sizes = sorted({s for s, _ in at})
        for gpu in sorted({r.device for r in mine if r.device in gpus}):
            pairs = [(s, at[s, gpu] < at[s, "cpu"]) for s in sizes
                     if (s, gpu) in at and (s, "cpu") in at]
            out.append({"axis": axis, "method": method, "gpu": gpu, **_crossover(pairs, axis)})
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
