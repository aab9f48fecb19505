"""Training plots (matplotlib, headless): accuracy per epoch and loss per iteration."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from nnx.runio import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display needed, on any machine
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """Save a figure as PNG atomically and close it."""
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
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
