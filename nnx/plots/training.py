"""Figures of a training run: accuracy per evaluation, loss per iteration, and several
runs' losses in one chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnx.errors import plural
from nnx.plots.style import MAX_POINTS, PathLike, figure, save_figure


def plot_accuracy(history: Mapping[str, Any], path: PathLike, title: str) -> None:
    """Train and test accuracy at each evaluation, against the epoch."""
    fig = figure(6, 4)
    ax = fig.add_subplot()
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


def plot_loss(history: Mapping[str, Any], path: PathLike, title: str) -> None:
    """Mini-batch loss per iteration, with a moving average to show the trend.

    A long run's raw losses are drawn as the band between the smallest and the largest of
    each stretch of iterations: a 600-pixel-wide plot shows no more than ``MAX_POINTS``
    points, and the band keeps every spike.
    """
    loss = np.asarray(history["loss"], dtype=float)
    fig = figure(6, 4)
    ax = fig.add_subplot()
    iters = np.arange(1, loss.size + 1)
    step = max(1, -(-loss.size // MAX_POINTS))
    if step == 1:
        ax.plot(iters, loss, linewidth=0.5, alpha=0.5, label="mini-batch loss")
    else:
        starts = np.arange(0, loss.size, step)
        ax.fill_between(iters[starts], np.minimum.reduceat(loss, starts),
                        np.maximum.reduceat(loss, starts), alpha=0.35, linewidth=0,
                        label=f"mini-batch loss (range of each {plural(step, 'iteration')})")
    window = max(1, min(100, loss.size // 20))
    if window > 1:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(iters[window - 1 :: step], smooth[::step], linewidth=1.5,
                label=f"moving average ({window})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (cross-entropy)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    save_figure(fig, path)


def plot_loss_curves(curves: Sequence[tuple[str, Sequence[float]]], path: PathLike,
                     title: str, iters: int) -> None:
    """Several runs' mini-batch loss per iteration in one log-scale chart, as ``(label, losses)``.

    Each curve is drawn faintly and as a moving average (shorter at the start), in its own
    colour; the x axis spans ``iters`` iterations so runs that stopped early show it.
    """
    fig = figure(8.0, 5.2)
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
    save_figure(fig, path)


def _running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` points at each point (of fewer at the start)."""
    if window <= 1 or y.size < 2:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    end = np.arange(1, y.size + 1)
    lo = np.maximum(0, end - window)
    return (c[end] - c[lo]) / (end - lo)
