"""Reporting the benchmarks: a text table, Markdown and log-scale PNG charts.

The programs write the files with :mod:`nnx.io` (atomically, never half a file);
charts use matplotlib's ``Figure`` directly (the Agg canvas), never pyplot's global
state, and are saved by :func:`nnx.plots.save_figure`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from nnx.bench.timing import fmt_ratio, fmt_seconds, fmt_spread
from nnx.plots import figure, save_figure

ORDER = ("backprop", "numerical_vectorized", "numerical_loop", "numerical_loop_full", "peer_torch")


def command_line() -> str:
    """The command that is running, as a user would type it again."""
    argv0 = Path(sys.argv[0])
    if argv0.suffix == ".py" and argv0.parent.name == "nnx":
        first = ["python", "-m", f"nnx.{argv0.stem}"]
    elif argv0.suffix == ".py":
        first = ["python", sys.argv[0]]
    else:
        first = [argv0.name]
    return shlex.join([*first, *sys.argv[1:]])


# -- tables ------------------------------------------------------------------------------
def rows(result: dict[str, Any]) -> list[list[str]]:
    """[device, method, median, IQR, n, vs backprop] for every measured (or missing) method."""
    out = []
    for device, d in result["devices"].items():
        base = d["methods"]["backprop"]
        for key in ORDER:
            m = d["methods"].get(key)
            if m is None:
                continue
            if "median_s" not in m:
                out.append([device, f"{m['label']} ({m.get('status', 'not measured')})",
                            "-", "-", "-", "-"])
                continue
            vs = fmt_ratio(m["median_s"] / base["median_s"])
            out.append([device, m["label"], fmt_seconds(m["median_s"]), fmt_spread(m),
                        str(m["n"]), vs])
    return out


HEAD = ["device", "method", "median", "IQR (25-75%)", "n", "vs backprop"]


def text_table(table: list[list[str]], head: list[str]) -> str:
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, table)])


def md_table(table: list[list[str]], head: list[str]) -> str:
    esc = lambda c: c.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in table]
    return "\n".join(lines)


def gpu_rows(result: dict[str, Any]) -> list[list[str]]:
    out = []
    for gpu, methods in result.get("gpu_vs_cpu", {}).items():
        for key, r in methods.items():
            label = result["devices"][gpu]["methods"][key]["label"]
            out.append([gpu, label, fmt_ratio(r["ratio"]),
                        f"{fmt_ratio(r['low'])}–{fmt_ratio(r['high'])}"])
    return out


GPU_HEAD = ["GPU", "method", "CPU time / GPU time", "range"]


def sweep_rows(result: dict[str, Any]) -> list[list[str]]:
    out = []
    sweep = result.get("sweep") or {"axes": {}}
    for axis, a in sweep["axes"].items():
        for p in a["points"]:
            for method in ("backprop", "numerical_vectorized"):
                for device, m in p[method].items():
                    cell = fmt_seconds(m["median_s"]) if "median_s" in m else "skipped"
                    spread = fmt_spread(m) if "median_s" in m else m["skipped"]
                    out.append([axis, str(p["batch"]), str(p["hidden"]), method, device,
                                cell, spread])
    return out


SWEEP_HEAD = ["sweep", "batch", "hidden", "method", "device", "median", "IQR / note"]


def header_lines(result: dict[str, Any]) -> list[str]:
    c = result["config"]
    lines = [
        f"net: {'-'.join(map(str, c['sizes']))}, {c['activation']}, batch {c['batch']}, "
        f"{c['dtype']} (numerical gradients computed in float64)",
        f"data: {result['data']}",
    ]
    for device, d in result["devices"].items():
        lines.append(f"device {device}: {d['description']}")
    load = result["load_average"]
    others = ", ".join(f"{v:.0%} during the {k}" for k, v in result["other_cpu"].items()
                       if v is not None) or "unknown"
    lines.append(f"date: {result['date']}; 1-min load average {load['start'][0]:.2f} at start; "
                 f"CPU used by other processes: {others}")
    lines.append("timing: median and interquartile range of n calls after warm-up, interleaved "
                 "across cases; device synchronised around each call")
    measured = [m for d in result["devices"].values() for m in d["methods"].values()]
    lines += noise_warnings(result["other_cpu"], measured)
    return lines


def noise_warnings(other_cpu: dict[str, float | None], measured: list[dict]) -> list[str]:
    """Say so when other processes probably disturbed the figures."""
    out = []
    for phase, share in other_cpu.items():
        if share is not None and share > 0.1:
            out.append(f"warning: other processes used {share:.0%} of the machine's CPU time "
                       f"during the {phase}: these figures are disturbed")
    wide = [m for m in measured if m.get("n", 0) >= 4 and m["q3_s"] > 2 * m["q1_s"]]
    if wide:
        out.append(f"warning: wide spread (75th percentile over twice the 25th) for {len(wide)} "
                   "row(s): timings were disturbed; rerun on an idle machine")
    return out


def crossover_lines(result: dict[str, Any]) -> list[str]:
    sweep = result.get("sweep")
    if not sweep:
        return []
    lines = []
    for axis, a in sweep["axes"].items():
        for method, per_gpu in a["crossover"].items():
            for gpu, c in per_gpu.items():
                lines.append(f"crossover ({axis} sweep, {method}, {gpu} vs cpu): {c['text']}")
    if not lines:
        lines.append("crossover: no GPU measured, so no GPU/CPU crossover to report")
    return lines


def render_text(result: dict[str, Any]) -> str:
    parts = ["\n".join(header_lines(result)), text_table(rows(result), HEAD)]
    if result.get("gpu_vs_cpu"):
        parts.append(text_table(gpu_rows(result), GPU_HEAD))
    if result.get("sweep"):
        parts.append(text_table(sweep_rows(result), SWEEP_HEAD))
        parts.append("\n".join(crossover_lines(result)))
    return "\n\n".join(parts) + "\n"


def render_markdown(result: dict[str, Any], charts: list[str]) -> str:
    parts = ["# Gradient timings", "\n".join(f"- {line}" for line in header_lines(result)),
             f"Command: `{result['command']}`", md_table(rows(result), HEAD)]
    if result.get("gpu_vs_cpu"):
        parts += ["## GPU vs CPU", md_table(gpu_rows(result), GPU_HEAD)]
    if result.get("sweep"):
        parts += ["## Scaling sweep", md_table(sweep_rows(result), SWEEP_HEAD),
                  "\n".join(f"- {line}" for line in crossover_lines(result))]
    parts += [f"![{name}]({name})" for name in charts]
    return "\n\n".join(parts) + "\n"


# -- charts ------------------------------------------------------------------------------
def chart_methods(result: dict[str, Any], path: Path) -> None:
    """Horizontal bars (log scale) of every method on every device, IQR as error bars."""
    labels, medians, lo, hi = [], [], [], []
    for device, d in result["devices"].items():
        for key in ORDER:
            m = d["methods"].get(key)
            if m and "median_s" in m:
                labels.append(f"{device}: {m['label']}")
                medians.append(m["median_s"])
                lo.append(m["median_s"] - m["q1_s"])
                hi.append(m["q3_s"] - m["median_s"])
    fig = figure(9, 0.45 * len(labels) + 1.6)
    ax = fig.add_subplot()
    ax.barh(range(len(labels)), medians, xerr=[lo, hi], color="tab:blue", capsize=3)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds per gradient (median, IQR bars; log scale)")
    c = result["config"]
    ax.set_title(f"Gradient of the {'-'.join(map(str, c['sizes']))} net, batch {c['batch']}, "
                 f"{c['dtype']}", fontsize=10)
    for i, (v, up) in enumerate(zip(medians, hi, strict=True)):
        ax.annotate(fmt_seconds(v), (v + up, i), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=7)
    save_figure(fig, path)


def chart_sweep(result: dict[str, Any], axis: str, path: Path) -> None:
    """Log-log lines of time against one sweep axis, per device and method."""
    a = result["sweep"]["axes"][axis]
    fig = figure(7, 4.5)
    ax = fig.add_subplot()
    styles = {"backprop": "-o", "numerical_vectorized": "--s"}
    devices = sorted({d for p in a["points"] for m in styles for d in p[m]})
    colors = {d: f"C{i}" for i, d in enumerate(devices)}
    for method, style in styles.items():
        for device in devices:
            pts = [(p[axis], p[method][device]) for p in a["points"]
                   if "median_s" in p[method].get(device, {})]
            if not pts:
                continue
            xs = [x for x, _ in pts]
            med = [m["median_s"] for _, m in pts]
            err = [[m["median_s"] - m["q1_s"] for _, m in pts],
                   [m["q3_s"] - m["median_s"] for _, m in pts]]
            ax.errorbar(xs, med, yerr=err, fmt=style, color=colors[device], capsize=2,
                        label=f"{method}, {device}")
    for method, per_gpu in a["crossover"].items():
        for gpu, c in per_gpu.items():
            if c["from"] is not None:
                ax.axvline(c["from"], color="grey", lw=0.8, ls=":")
                ax.annotate(f"{gpu} beats cpu ({method})", (c["from"], 0.02), rotation=90,
                            xycoords=("data", "axes fraction"), fontsize=7, color="grey")
    fixed = "hidden" if axis == "batch" else "batch"
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"{axis} size ({fixed} = {a['points'][0][fixed]})")
    ax.set_ylabel("seconds per gradient (median, IQR bars)")
    ax.set_title(f"Gradient time against {axis} size", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)
