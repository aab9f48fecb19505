"""Training plots (matplotlib, headless): accuracy per epoch, loss per iteration, loss curves
of several runs compared."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnx.runio import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display needed, on any machine
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 120,
                bbox_inches: str | None = "tight") -> None:
    """Save a figure as PNG atomically (the usual file mode, never half a file) and close it.

    ``fig`` may come from pyplot or be a ``matplotlib.figure.Figure`` made without it (no
    GUI, no global state). The directory must exist (:func:`nnx.runio.prepare_dir`).
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches=bbox_inches)
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:  # a figure pyplot made is kept by it until closed
        plt.close(fig)


def plot_accuracy(history: Mapping[str, Any], path: str | os.PathLike[str], title: str) -> None:
    """Train and test accuracy at each evaluation, against the epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = history["eval_epoch"]
    ax.plot(epochs, history["train_acc"], marker="o", label="train")
    ax.plot(epochs, history["test_acc"], marker="s", linestyle="--", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    save_figure(fig, path)


def plot_loss(history: Mapping[str, Any], path: str | os.PathLike[str], title: str) -> None:
    """Mini-batch loss per iteration, with a moving average to show the trend."""
    plt = _pyplot()
    loss = np.asarray(history["loss"], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4))
    iters = np.arange(1, loss.size + 1)
    ax.plot(iters, loss, linewidth=0.5, alpha=0.5, label="mini-batch loss")
    window = max(1, min(100, loss.size // 20))
    if window > 1:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(iters[window - 1 :], smooth, linewidth=1.5, label=f"moving average ({window})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (cross-entropy)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    save_figure(fig, path)


def plot_loss_curves(curves: Sequence[tuple[str, Sequence[float]]], path: str | os.PathLike[str],
                     title: str, iters: int) -> None:
    """Several runs' mini-batch loss per iteration in one log-scale chart, as ``(label, losses)``.

    Each curve is drawn faintly and as a moving average (shorter at the start), in its own
    colour; the x axis spans ``iters`` iterations so runs that stopped early show it.
    """
    from matplotlib.figure import Figure  # pyplot-free: nothing global to close

    fig = Figure(figsize=(8.0, 5.2), layout="constrained")
    ax = fig.add_subplot()
    window = max(1, min(50, iters // 40))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for i, (label, losses) in enumerate(curves):
        y = np.asarray(losses, dtype=float)
        steps = np.arange(1, y.size + 1)
        color = colors[i % len(colors)]
        if window > 1:
            ax.plot(steps, y, color=color, alpha=0.2, lw=0.6)
        ax.plot(steps, _running_mean(y, window), color=color, lw=1.6, label=label)
    ax.set_yscale("log")
    ax.set(xlabel="iteration", xlim=(0, iters),
           ylabel="mini-batch loss (cross-entropy)" + (f", mean of {window}" if window > 1 else ""),
           title=title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    save_figure(fig, path, dpi=110, bbox_inches=None)


def _running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` points at each point (of fewer at the start)."""
    if window <= 1 or y.size < 2:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    end = np.arange(1, y.size + 1)
    lo = np.maximum(0, end - window)
    return (c[end] - c[lo]) / (end - lo)
