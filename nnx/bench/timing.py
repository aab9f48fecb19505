"""Timing for the benchmarks: warm-up, interleaved rounds, median and spread, ratios.

Every figure comes from :meth:`backends.Backend.time`, which synchronises the device
around each call (or, for the PyTorch peer, from the same loop with PyTorch's own
synchronisation). Cases that are compared are timed in interleaved rounds -- a few
calls of each case, then a few of the next, round after round -- so a burst of load
from other processes lands on all of them rather than on whichever ran last, and a
ratio is taken from figures measured side by side.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends import Backend


@dataclass
class Case:
    """One thing to time: ``fn`` on ``backend`` (or with its own ``sync`` for a peer)."""

    name: str
    fn: Callable[[], Any]
    backend: Backend | None = None
    sync: Callable[[], None] | None = None
    times: list[float] = field(default_factory=list)
    rounds: list[list[float]] = field(default_factory=list)
    run: int | None = None  # which interleaved run timed it: only such cases pair up

    def warm_up(self, n: int) -> None:
        for _ in range(n):
            self.fn()
        self._sync()

    def measure(self, n: int) -> None:
        """Time ``n`` calls as one round, the device synchronised around each call.

        One untimed call comes first: when cases take turns, the thread pools of the
        previous case (OpenBLAS, PyTorch's OpenMP) may still be spinning on the cores and
        this case's may have gone to sleep; on a 2-core machine that doubles a step.
        """
        if self.backend is not None:
            this = self.backend.time(self.fn, repeat=n, warmup=1).tolist()
        else:
            self.fn()
            self._sync()
            this = []
            for _ in range(n):
                start = time.perf_counter()
                self.fn()
                self._sync()
                this.append(time.perf_counter() - start)
        self.rounds.append(this)
        self.times.extend(this)

    def summary(self) -> dict[str, Any]:
        """:func:`summarize` of all calls, plus the median of each round (for paired ratios)."""
        out = summarize(self.times)
        out["round_medians_s"] = [float(np.median(r)) for r in self.rounds if r]
        out["run"] = self.run
        return out

    def _sync(self) -> None:
        if self.backend is not None:
            self.backend.synchronize()
        elif self.sync is not None:
            self.sync()


_RUN_IDS = itertools.count(1)


def run_interleaved(
    cases: Sequence[Case], repeat: int, warmup: int, rounds: int | None = None
) -> None:
    """Warm every case up, then time ``repeat`` calls of each in interleaved rounds."""
    run = next(_RUN_IDS)
    for case in cases:
        case.run, case.rounds, case.times = run, [], []
        case.warm_up(warmup)
    rounds = max(1, min(repeat, rounds or repeat))
    done = 0
    for r in range(rounds):
        n = (repeat * (r + 1)) // rounds - done
        for case in cases:
            case.measure(n)
        done += n


def summarize(times: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Median, quartiles, extremes and count of a list of seconds (and the list itself)."""
    t = np.asarray(times, dtype=float)
    if t.size == 0:
        raise ValueError("no timings to summarise")
    q1, med, q3 = np.percentile(t, [25, 50, 75])
    return {
        "median_s": float(med),
        "q1_s": float(q1),
        "q3_s": float(q3),
        "min_s": float(t.min()),
        "max_s": float(t.max()),
        "n": int(t.size),
        "times_s": [float(v) for v in t],
    }


def ratio(num: dict[str, Any], den: dict[str, Any]) -> dict[str, Any]:
    """``num / den`` of two summaries: the ratio of medians, and a range around it.

    When both were timed in the same interleaved rounds, the range is the lowest and
    highest ratio of the two cases' medians within one round: the pairs that ran side by
    side under the same load ("per-round"). Otherwise it is q1/q3 .. q3/q1, deliberately
    wide: the ratio if the middle halves of the timings fell least and most favourably.
    """
    value = num["median_s"] / den["median_s"]
    a, b = num.get("round_medians_s", []), den.get("round_medians_s", [])
    paired = num.get("run") is not None and num.get("run") == den.get("run")
    if paired and len(a) == len(b) > 1:
        per_round = [x / y for x, y in zip(a, b, strict=True)]
        return {"ratio": value, "low": min(per_round), "high": max(per_round),
                "range": "per-round"}
    return {"ratio": value, "low": num["q1_s"] / den["q3_s"], "high": num["q3_s"] / den["q1_s"],
            "range": "quartiles"}


def cuda_event_times(backend: Backend, fn: Callable[[], Any], repeat: int, warmup: int) -> Any:
    """Seconds per call measured by CUDA events around each call, or None off CUDA.

    A second opinion on CUDA devices: the GPU time of each call, without the host's
    launch overhead (the backend's :meth:`~backends.Backend.interval_timer`).
    """
    if backend.name != "cupy":
        return None
    for _ in range(warmup):
        fn()
    timer = backend.interval_timer()
    for _ in range(repeat):
        timer.start()
        fn()
        timer.stop()
    return np.asarray(timer.drain(), dtype=float)


class CpuWatch:
    """How much CPU other processes used while this one measured (Linux; else None).

    The machine's busy time from /proc/stat, less this process's own CPU time (all its
    threads), as a fraction of all cores over the wall time. The load average cannot tell
    this: it counts the benchmark's own threads too.
    """

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float | None, float]:
        own = os.times()
        busy = None
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
            busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            pass
        return time.perf_counter(), busy, own.user + own.system

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
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    return f"{s / 60:.3g} min"


def fmt_ratio(r: float) -> str:
    """A ratio as 1.23x, 45.6x, 3,700x or 0.042x."""
    if r >= 100:
        return f"{r:,.0f}x"
    return f"{r:.3g}x"


def fmt_spread(stats: dict[str, Any]) -> str:
    """The interquartile range of a summary, in one unit."""
    return f"{fmt_seconds(stats['q1_s'])}–{fmt_seconds(stats['q3_s'])}"
