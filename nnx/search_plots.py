"""The search's figures, with matplotlib: the book's 20 best learning curves, the
optimisation history, and the parameters' importance."""

from __future__ import annotations

import os
from typing import Any

PathLike = str | os.PathLike[str]


def _pyplot() -> Any:
    from nnx.plots.style import matplotlib_dirs

    matplotlib_dirs()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_best_curves(trials: list[Any], path: PathLike) -> None:
    """Validation (solid) and training (dashed) accuracy of each trial, one panel each."""
    plt = _pyplot()
    fig, axes = plt.subplots(4, 5, figsize=(15, 11), sharey=True, squeeze=False)
    for ax, (rank, t) in zip(axes.flat, enumerate(trials, start=1), strict=False):
        ax.plot(t.user_attrs.get("val_acc", []), label="validation")
        ax.plot(t.user_attrs.get("train_acc", []), "--", label="training")
        ax.set_title(f"best {rank}: {t.value:.3f}\nlr {t.params['lr']:.2g}, "
                     f"wd {t.params['weight_decay']:.2g}", fontsize=8)
        ax.set_ylim(0, 1)
    for ax in axes.flat[len(trials):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_history(values: list[tuple[int, float]], path: PathLike) -> None:
    """Each completed trial's validation accuracy and the best so far."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if values:
        numbers, accs = zip(*values, strict=True)
        best = [max(accs[: i + 1]) for i in range(len(accs))]
        ax.plot(numbers, accs, "o", ms=3, label="trial")
        ax.plot(numbers, best, "-", label="best so far")
        ax.legend()
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_importance(importance: dict[str, float], path: PathLike) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.5))
    names = list(importance)
    ax.barh(names, [importance[n] for n in names])
    ax.set_xlabel("importance for validation accuracy (fANOVA)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
