"""Charts of timings: log-scale bars with their spread, and log-log lines against a size.

A timing is ``(median, low, high)`` (the interquartile range, drawn as error bars); the
benchmarks turn their result rows into these (:mod:`nnx.bench.report`).
"""

from __future__ import annotations

from collections.abc import Sequence

from nnx.plots.style import PathLike, figure, save_figure

Spread = tuple[float, float, float]  # median, first quartile, third quartile


def log_bars(labels: Sequence[str], values: Sequence[Spread], notes: Sequence[str],
             xlabel: str, title: str, path: PathLike) -> None:
    """Horizontal bars on a log scale, one per label, the spread as error bars and a note
    (the value as text) at the end of each."""
    med = [v[0] for v in values]
    lo = [v[0] - v[1] for v in values]
    hi = [v[2] - v[0] for v in values]
    fig = figure(9, 0.45 * len(values) + 1.6)
    ax = fig.add_subplot()
    ax.barh(range(len(values)), med, xerr=[lo, hi], color="tab:blue", capsize=3)
    ax.set_yticks(range(len(values)), list(labels), fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    for i, (v, up, note) in enumerate(zip(med, hi, notes, strict=True)):
        ax.annotate(note, (v + up, i), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=7)
    save_figure(fig, path)


def log_lines(lines: Sequence[tuple[str, str, str, Sequence[float], Sequence[Spread]]],
              marks: Sequence[tuple[float, str]], xlabel: str, ylabel: str, title: str,
              path: PathLike) -> None:
    """Log-log lines ``(label, style, colour, xs, values)`` with their spreads as error
    bars, and vertical ``marks`` ``(x, text)``."""
    fig = figure(7, 4.5)
    ax = fig.add_subplot()
    for label, style, color, xs, values in lines:
        ax.errorbar(list(xs), [v[0] for v in values],
                    yerr=[[v[0] - v[1] for v in values], [v[2] - v[0] for v in values]],
                    fmt=style, color=color, capsize=2, label=label)
    for x, text in marks:
        ax.axvline(x, color="grey", lw=0.8, ls=":")
        ax.annotate(text, (x, 0.02), rotation=90, xycoords=("data", "axes fraction"),
                    fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)
