"""Figures of an evaluated net: the confusion matrix and the most confidently wrong images."""

from __future__ import annotations

import numpy as np

from nnx.evaluation import Evaluation
from nnx.photos import SIDE
from nnx.plots.style import PathLike, figure, save_figure


def plot_confusion(confusion: np.ndarray, path: PathLike, title: str) -> None:
    """The confusion matrix as a heatmap with its counts (log colour scale: errors show)."""
    fig = figure(7.0, 6.2)  # first: it sets matplotlib's directories before the import
    from matplotlib.colors import LogNorm

    ax = fig.add_subplot()
    shown = np.ma.masked_equal(confusion, 0)
    image = ax.imshow(shown, cmap="Blues", norm=LogNorm(1, max(int(confusion.max()), 2)))
    n = confusion.shape[0]
    for i in range(n):
        for j in range(n):
            dark = confusion[i, j] > confusion.max() ** 0.6
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted class", ylabel="true class",
           title=title)
    fig.colorbar(image, ax=ax, label="images (log scale)")
    save_figure(fig, path)


def plot_misclassified(images: np.ndarray, ev: Evaluation, path: PathLike,
                       title: str, cols: int = 6) -> None:
    """A grid of the most confidently wrong of ``images`` (host, (N, 784)), with their labels."""
    n = max(len(ev.wrong_index), 1)
    rows = -(-n // cols)
    fig = figure(1.45 * cols, 1.6 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, i, t, p, q in zip(axes, ev.wrong_index, ev.wrong_true, ev.wrong_label, ev.wrong_prob,
                              strict=False):
        ax.imshow(np.asarray(images[i]).reshape(SIDE, SIDE), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"#{i}: true {t}\npredicted {p}, p = {q:.2f}", fontsize=8)
    if not len(ev.wrong_index):
        axes[0].text(0.5, 0.5, "no image is misclassified", ha="center", va="center")
    fig.suptitle(title)
    save_figure(fig, path)
