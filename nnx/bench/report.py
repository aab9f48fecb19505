"""One report pipeline for the benchmarks: :class:`~nnx.bench.timing.Row` s to text and
Markdown tables, JSON (``dataclasses.asdict``) and log-scale PNG charts.

The programs write the files with :mod:`nnx.io` (atomically, never half a file); charts
use matplotlib's ``Figure`` directly, never pyplot, saved by :func:`nnx.plots.save_figure`.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nnx.bench.timing import Row, Stats, fmt_ratio, fmt_seconds
from nnx.plots.bench import log_bars, log_lines

HEAD = ["device", "method", "median", "IQR (25-75%)", "n", "vs backprop", "range"]
VS_CPU_HEAD = ["device", "method", "NumPy CPU time / device time", "range"]
SWEEP_HEAD = ["sweep", "batch", "hidden", "method", "device", "median", "IQR / note"]
RANGES = ("range: per-round = the lowest and highest ratio of medians within one interleaved "
          "round; quartiles = q1/q3 to q3/q1 of cases timed apart")


def command_line(args: argparse.Namespace) -> str:
    """The command that is running, as a user would type it again: ``nnx`` and the words
    it was given (``python -m nnx.cli`` is the same program)."""
    return shlex.join(["nnx", *getattr(args, "_argv", sys.argv[1:])])


def jsonable(obj: Any) -> Any:
    """``obj`` with every dataclass in it (rows, stats, checks) as a dict."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


# -- tables ------------------------------------------------------------------------------
def cells(row: Row) -> list[str]:
    """[device, label, median, IQR, n, vs base, range]; dashes and the note if not measured."""
    if row.stats is None:
        return [row.device, f"{row.label} ({row.note or 'not measured'})", *"-----"]
    s, v = row.stats, row.vs
    vs = [fmt_ratio(v.value), v.span()] if v else ["-", "-"]
    return [row.device, row.label, fmt_seconds(s.median), s.spread(), str(s.n), *vs]


def text_table(table: list[list[str]], head: list[str]) -> str:
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, table)])


def md_table(table: list[list[str]], head: list[str]) -> str:
    esc = lambda c: c.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(esc(c) for c in r) + " |" for r in table])


def noise_warnings(other_cpu: dict[str, float | None], stats: Sequence[Stats]) -> list[str]:
    """Say so when other processes probably disturbed the figures."""
    out = [f"warning: other processes used {share:.0%} of the machine's CPU time during the "
           f"{phase}: these figures are disturbed"
           for phase, share in other_cpu.items() if share is not None and share > 0.1]
    wide = [s for s in stats if s.n >= 4 and s.q3 > 2 * s.q1]
    if wide:
        out.append(f"warning: wide spread (75th percentile over twice the 25th) for {len(wide)} "
                   "row(s): timings were disturbed; rerun on an idle machine")
    return out


def environment_lines(result: dict[str, Any]) -> list[str]:
    """Date, load, other processes' CPU share, the command and any noise warnings."""
    others = ", ".join(f"{v:.0%} during the {k}" for k, v in result["other_cpu"].items()
                       if v is not None) or "unknown"
    stats = [r.stats for r in result["rows"] if r.stats is not None]
    return [f"date: {result['date']}; 1-min load average {result['load_average']['start'][0]:.2f}"
            f" at start; CPU used by other processes: {others}",
            f"command: {result['command']}", *noise_warnings(result["other_cpu"], stats)]


def render(result: dict[str, Any], markdown: bool = False, charts: Sequence[str] = ()) -> str:
    """The text (or Markdown) report of ``nnx bench``."""
    table = md_table if markdown else text_table
    lines: Callable[[list[str]], str] = lambda ls: "\n".join(  # noqa: E731
        f"- {x}" if markdown else x for x in ls)
    c = result["config"]
    head = [f"net: {'-'.join(map(str, c['sizes']))}, {c['activation']}, batch {c['batch']}, "
            f"{c['dtype']} (numerical gradients computed in float64)", f"data: {result['data']}",
            *(f"device {d}: {v['description']}" for d, v in result["devices"].items()),
            "timing: median and interquartile range of n calls after warm-up, interleaved "
            "across cases; device synchronised around each call", *environment_lines(result)]
    parts = ["# Gradient timings"] * markdown + [lines(head),
                                                 table([cells(r) for r in result["rows"]], HEAD)]
    parts.append(lines([RANGES, *finding_lines(result)]))
    if result["vs_cpu"]:
        parts += ["## Each device vs NumPy on the CPU"] * markdown + [table([
            [k.device, k.what, fmt_ratio(k.ratio.value), k.ratio.span()]
            for k in result["vs_cpu"]], VS_CPU_HEAD)]
    if result.get("sweep"):
        sweep = result["sweep"]
        parts += ["## Scaling sweep"] * markdown + [table([
            [r.extra["axis"], str(r.extra["batch"]), str(r.extra["hidden"]), r.method, r.device,
             fmt_seconds(r.stats.median) if r.stats else "skipped",
             r.stats.spread() if r.stats else r.note] for r in sweep["rows"]], SWEEP_HEAD)]
        parts.append(lines([f"crossover ({x['axis']} sweep, {x['method']}, {x['gpu']} vs cpu): "
                            f"{x['text']}" for x in sweep["crossover"]]
                           or ["crossover: no GPU measured, so no GPU/CPU crossover to report"]))
    parts += [f"![{name}]({name})" for name in charts]
    return "\n\n".join(parts) + "\n"


def finding_lines(result: dict[str, Any]) -> list[str]:
    """The checks with their targets, and how closely the gradients agree."""
    out = []
    for k in result["checks"]:
        out.append(f"{k.device}: {k.what}: {k.ratio}")
        if k.target:
            out.append(f"target: {k.target}: {'met' if k.met else 'NOT met'} "
                       f"({fmt_ratio(k.ratio.value)})")
    for device in result["devices"]:
        rows = [r for r in result["rows"] if r.device == device]
        diffs = [f"{r.method} {r.extra['max_abs_diff_vs_nnx']:.1e}" for r in rows
                 if "max_abs_diff_vs_nnx" in r.extra]
        if diffs:
            out.append(f"{device}: gradients agree with nnx backprop: max |difference| "
                       + ", ".join(diffs))
        for r in rows:
            if "max_abs_diff_vs_vectorized" in r.extra:
                out.append(f"{device}: vectorised and loop agree on the {r.extra['sample']:,} "
                           f"sampled coordinates to {r.extra['max_abs_diff_vs_vectorized']:.1e}")
    return out


# -- charts ------------------------------------------------------------------------------
def chart_methods(result: dict[str, Any], path: Path) -> None:
    """Horizontal bars (log scale) of every measured row, IQR as error bars."""
    rows = [r for r in result["rows"] if r.stats is not None]
    c = result["config"]
    log_bars([f"{r.device}: {r.label}" for r in rows], [_spread(r.stats) for r in rows],
             [fmt_seconds(r.stats.median) for r in rows],
             "seconds per gradient (median, IQR bars; log scale)",
             f"Gradient of the {'-'.join(map(str, c['sizes']))} net, batch {c['batch']}, "
             f"{c['dtype']}", path)


def chart_sweep(result: dict[str, Any], axis: str, path: Path) -> None:
    """Log-log lines of time against one sweep axis, per device and method."""
    rows = [r for r in result["sweep"]["rows"] if r.extra["axis"] == axis and r.stats]
    devices = sorted({r.device for r in rows})
    lines = []
    for method, style in {"backprop": "-o", "numerical_vectorized": "--s"}.items():
        for i, device in enumerate(devices):
            pts = [r for r in rows if r.method == method and r.device == device]
            if pts:
                lines.append((f"{method}, {device}", style, f"C{i}", [r.extra[axis] for r in pts],
                              [_spread(r.stats) for r in pts]))
    marks = [(x["from"], f"{x['gpu']} beats cpu ({x['method']})")
             for x in result["sweep"]["crossover"] if x["axis"] == axis and x["from"] is not None]
    fixed = "hidden" if axis == "batch" else "batch"
    log_lines(lines, marks, f"{axis} size ({fixed} = {rows[0].extra[fixed] if rows else '?'})",
              "seconds per gradient (median, IQR bars)", f"Gradient time against {axis} size",
              path)


def _spread(s: Stats) -> tuple[float, float, float]:
    return s.median, s.q1, s.q3
