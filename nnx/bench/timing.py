"""The measurement kernel and its typed results: cases timed in interleaved rounds (a
few calls of each, then of the next, so a burst of load from other processes lands on
all of them), the device synchronised around each call; :class:`Stats` of each case,
:class:`Ratio` of two, :class:`Row` and :class:`Check` for the reports. The stats of one
run share its token: only such stats pair up round by round in a ratio.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from backends import Backend, time_calls


@dataclass(frozen=True)
class Stats:
    """Seconds per call: median, quartiles, extremes, count, every call, each interleaved
    round's median, and the token of the run that timed them."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int
    times: list[float]
    round_medians: list[float] = field(default_factory=list)
    run: str = ""

    @classmethod
    def of(cls, times: Sequence[float], rounds: Sequence[Sequence[float]] = (),
           run: str = "") -> Stats:
        """The stats of ``times`` (seconds), of ``rounds`` timed in the run ``run``."""
        t = np.asarray(times, dtype=float)
        if t.size == 0:
            raise ValueError("no timings to summarise")
        q1, med, q3 = (float(v) for v in np.percentile(t, [25, 50, 75]))
        return cls(med, q1, q3, float(t.min()), float(t.max()), int(t.size), t.tolist(),
                   [float(np.median(r)) for r in rounds if len(r)], run)

    def spread(self) -> str:
        """The interquartile range, in one unit."""
        return f"{fmt_seconds(self.q1)}–{fmt_seconds(self.q3)}"


@dataclass(frozen=True)
class Ratio:
    """``num / den`` of two medians and a range around it: ``per-round`` (the lowest and
    highest ratio of the round medians of one run) or ``quartiles`` (q1/q3 .. q3/q1)."""

    value: float
    low: float
    high: float
    range: str

    def span(self) -> str:
        return f"{fmt_ratio(self.low)}–{fmt_ratio(self.high)}"

    def __str__(self) -> str:
        return f"{fmt_ratio(self.value)} ({self.range} range {self.span()})"


def ratio(num: Stats, den: Stats) -> Ratio:
    """The :class:`Ratio` of two stats; per-round only when one run timed both."""
    a, b = num.round_medians, den.round_medians
    if num.run and num.run == den.run and len(a) == len(b) > 1:
        per_round = [x / y for x, y in zip(a, b, strict=True)]
        return Ratio(num.median / den.median, min(per_round), max(per_round), "per-round")
    return Ratio(num.median / den.median, num.q1 / den.q3, num.q3 / den.q1, "quartiles")


@dataclass
class Row:
    """One result line, read by every renderer: ``stats`` when measured, else a ``note``
    saying why not; ``vs``: its ratio to the program's base row; ``extra``: the rest."""

    device: str
    method: str
    label: str
    stats: Stats | None = None
    note: str = ""
    vs: Ratio | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """A ratio worth a line of its own, with the target it must meet (if any)."""

    device: str
    what: str
    ratio: Ratio
    target: str = ""
    met: bool | None = None


@dataclass(frozen=True)
class Case:
    """One thing to time: ``fn``, and ``sync`` to wait for its device (PyTorch's own)."""

    fn: Callable[[], Any]
    sync: Callable[[], None] = lambda: None

    @classmethod
    def on(cls, backend: Backend, fn: Callable[[], Any]) -> Case:
        """``fn`` synchronised by ``backend``."""
        return cls(fn, backend.synchronize)

    def measure(self, n: int, settle: int = 1) -> list[float]:
        """Seconds of ``n`` calls, after ``settle`` untimed ones: when cases take turns, the
        previous case's thread pools (OpenBLAS, OpenMP) may still spin on the cores."""
        return time_calls(self.fn, n, settle, sync=self.sync).tolist()


def run_interleaved(
    cases: Sequence[Case], repeat: int, warmup: int, rounds: int | None = None, settle: int = 1,
    after: Callable[[int, list[float]], None] | None = None,
) -> list[Stats]:
    """Warm every case up, time ``repeat`` calls of each in interleaved ``rounds`` (default:
    one call per round); their stats, in order, with one run token. ``after(i, seconds)``
    hears of each round of case ``i``."""
    token = uuid.uuid4().hex[:12]
    for case in cases:
        for _ in range(warmup):
            case.fn()
        case.sync()
    rounds, times = max(1, min(repeat, rounds or repeat)), [[] for _ in cases]
    for r in range(rounds):
        for i, case in enumerate(cases):
            times[i].append(case.measure(repeat * (r + 1) // rounds - repeat * r // rounds, settle))
            if after is not None:
                after(i, times[i][-1])
    return [Stats.of([t for rr in per for t in rr], per, token) for per in times]


def time_rows(timed: Sequence[tuple[Row, Case]], repeat: int, warmup: int,
              rounds: int | None = None, **kw: Any) -> list[Row]:
    """The rows with the stats of their cases, timed together by :func:`run_interleaved`."""
    stats = run_interleaved([case for _, case in timed], repeat, warmup, rounds, **kw)
    return [replace(row, stats=s) for (row, _), s in zip(timed, stats, strict=True)]


def cuda_event_times(backend: Backend, fn: Callable[[], Any], repeat: int, warmup: int) -> Any:
    """Seconds per call by the device's own events, or None where it has none.

    An interval is the device's time from the event before a call to the event after it:
    the work, plus any time the device sat idle waiting for the host to launch it, so when
    the host is the bottleneck the launch overhead is in the figure."""
    if not backend.has_events:
        return None
    return time_calls(fn, repeat, warmup, timer=backend.interval_timer())


class CpuWatch:
    """How much CPU other processes used since this was made (Linux; else None): the busy
    time in /proc/stat less this process's own and its finished children's, over all cores'
    wall time (the load average cannot tell this: it counts the benchmark's own threads)."""

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float | None, float]:
        own, busy = os.times(), None
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
            busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            pass
        return time.perf_counter(), busy, own.user + own.system + own.children_user \
            + own.children_system  # its own children (an ``nnx train`` it ran) are its own

    def others(self) -> float | None:
        """Fraction of the machine's CPU time (0..1) other processes used since the start."""
        (w0, b0, o0), (w1, b1, o1) = self._start, self._snapshot()
        if b0 is None or b1 is None or w1 <= w0:
            return None
        return max(0.0, min(1.0, ((b1 - b0) - (o1 - o0)) / ((w1 - w0) * (os.cpu_count() or 1))))


def fmt_seconds(s: float) -> str:
    """A duration with a unit chosen for it: 412 µs, 1.52 ms, 14.1 s, 3.2 min."""
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s" if s < 120 else f"{s / 60:.3g} min"


def fmt_ratio(r: float) -> str:
    """A ratio as 1.23x, 45.6x, 3,700x or 0.042x."""
    return f"{r:,.0f}x" if r >= 100 else f"{r:.3g}x"
