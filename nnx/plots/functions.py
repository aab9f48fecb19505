"""Figures of the small functions of chapters 4 and 6: a gradient field, descent paths and
optimizer paths. The paths are :class:`nnx.descent.Trajectory` objects; a diverged one is
drawn up to its last point within bounds and says so in its title."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nnx.descent import LIMIT, Trajectory
from nnx.plots.style import PathLike, figure, save_figure


def _fmt(v: np.ndarray) -> str:
    return f"{float(v[0]):.4g}" if v.size == 1 else "(" + ", ".join(f"{c:.4g}" for c in v) + ")"


def descent_label(path: Trajectory) -> str:
    """E.g. "lr = 0.1: x_100 = -6.111e-10", or "lr = 1.1: DIVERGED at step 70"."""
    lr = path.optimizer.lr
    if path.diverged_at is not None:
        return f"lr = {lr:g}: DIVERGED at step {path.diverged_at}"
    return f"lr = {lr:g}: x_{path.steps} = {_fmt(path.points[-1])}"


def plot_gradient_field(points: np.ndarray, grad: np.ndarray, path: PathLike) -> None:
    """Arrows along -grad f at each point of a grid on [-2, 2]^2 (the book's figure 4-9)."""
    fig = figure(6.4, 6.0)
    ax = fig.add_subplot()
    ax.quiver(points[:, 0], points[:, 1], -grad[:, 0], -grad[:, 1], angles="xy",
              color="#555555", label=r"$-\nabla f$ (central differences, h = 1e-4)")
    ax.plot([0], [0], "r+", markersize=14, mew=2, label="minimum (0, 0)")
    ax.set(xlim=(-2.4, 2.4), ylim=(-2.4, 2.4), xlabel="$x_0$", ylabel="$x_1$",
           title="Gradient field of $f(x_0, x_1) = x_0^2 + x_1^2$:\n"
           "arrows point along $-\\nabla f$, the way down")
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2)
    save_figure(fig, path)


def plot_descent_1d(paths: Sequence[Trajectory], x0: float, path: PathLike) -> None:
    """One panel per learning rate: the iterates of gradient descent on f(x) = x^2."""
    n = len(paths)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = figure(4.6 * cols, 4.0 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    span = 1.6 * max(abs(x0), 1e-3)
    grid = np.linspace(-span, span, 400)
    for ax, run in zip(axes, paths, strict=False):
        xs = np.array([p[0] for p in run.points])
        lr, diverged = run.optimizer.lr, run.diverged_at is not None
        ax.plot(grid, grid**2, color="0.6", lw=1.5, label="$f(x) = x^2$")
        ax.plot(xs, xs**2, "o-", color="tab:red" if diverged else "tab:blue", ms=3.5, lw=0.8,
                alpha=0.8, label=descent_label(run))
        ax.plot(xs[:1], xs[:1] ** 2, "s", color="black", ms=6, label=f"start x0 = {x0:g}")
        title = f"lr = {lr:g}, {len(xs) - 1} steps"
        if diverged:
            ax.annotate("leaves the plot, |x| grows without bound", xy=(0.5, 0.9),
                        xycoords="axes fraction", ha="center", color="tab:red")
            title = f"lr = {lr:g}: DIVERGED (|x| > {LIMIT:g} at step {run.diverged_at})"
        ax.set(xlim=(-span, span), ylim=(-0.05 * span**2, 1.15 * span**2), xlabel="x",
               ylabel="f(x)", title=title)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, ncols=1)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(
        "Gradient descent on $f(x) = x^2$ with a numerical gradient: $x_k = x_0 (1 - 2\\,lr)^k$"
    )
    save_figure(fig, path)


def plot_descent_2d(run: Trajectory, path: PathLike) -> None:
    """The iterates on x0^2 + x1^2 over its contours (the book's figure 4-10)."""
    fig = figure(5.6, 6.2)
    ax = fig.add_subplot()
    g0, g1 = np.meshgrid(np.linspace(-3.5, 3.5, 200), np.linspace(-4.5, 4.5, 200))
    cs = ax.contour(g0, g1, g0**2 + g1**2, levels=[1, 4, 9, 16, 25], colors="0.75", linewidths=0.8)
    ax.clabel(cs, fontsize=7)
    pts = np.array(run.points)
    ax.plot(pts[:, 0], pts[:, 1], "o", color="tab:blue", ms=4, label=descent_label(run))
    ax.plot([-5, 5], [0, 0], "--b", lw=0.6)
    ax.plot([0, 0], [-5, 5], "--b", lw=0.6)
    ax.set(xlim=(-3.5, 3.5), ylim=(-4.5, 4.5), xlabel="$x_0$", ylabel="$x_1$",
           title=f"Gradient descent on $x_0^2 + x_1^2$ from ({pts[0, 0]:g}, {pts[0, 1]:g}),\n"
           f"lr = {run.optimizer.lr:g}, {run.steps} steps (the book's figure 4-10)")
    ax.set_aspect("equal")
    fig.legend(loc="outside lower center")
    save_figure(fig, path)


def plot_optimizer_paths(paths: Sequence[Trajectory], start: Sequence[float], steps: int,
                         path: PathLike) -> None:
    """One panel per optimizer: its path over the contours of x^2/20 + y^2 (figure 6-8)."""
    n = len(paths)
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    fig = figure(6.2 * cols, 3.9 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    xmax = max(10.0, 1.2 * abs(start[0]))
    ymax = max(5.0, 1.2 * abs(start[1]))
    gx, gy = np.meshgrid(np.linspace(-xmax, xmax, 300), np.linspace(-ymax, ymax, 300))
    levels = np.geomspace(0.05, gx.max() ** 2 / 20 + gy.max() ** 2, 12)
    for ax, run in zip(axes, paths, strict=False):
        ax.contour(gx, gy, gx**2 / 20 + gy**2, levels=levels, colors="0.7", linewidths=0.7)
        pts = np.array(run.points)
        opt = run.optimizer
        hyper = ", ".join(f"{k}={v:g}" for k, v in opt.hyperparameters.items())
        title = f"{type(opt).__name__} ({hyper})"
        if run.diverged_at is None:
            label = (f"{len(pts) - 1} steps, ends at ({pts[-1, 0]:.2g}, {pts[-1, 1]:.2g}), "
                     f"f = {run.values[-1]:.2g}")
            color = "tab:red"
        else:
            label = f"DIVERGED at step {run.diverged_at}: drawn up to step {len(pts) - 1}"
            color = "tab:purple"
            title += f": DIVERGED at step {run.diverged_at}"
        ax.plot(pts[:, 0], pts[:, 1], "o-", color=color, ms=2.5, lw=0.8, label=label)
        ax.plot([pts[0, 0]], [pts[0, 1]], "s", color="black", ms=5, label="start")
        ax.plot([0], [0], "+", color="black", ms=10, mew=1.5, label="minimum (0, 0)")
        ax.set(xlim=(-xmax, xmax), ylim=(-ymax, ymax), xlabel="x", ylabel="y", title=title)
        ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(
        f"Minimising $f(x, y) = x^2/20 + y^2$ from ({start[0]:g}, {start[1]:g}), "
        f"{steps} steps; gradient from a Mul/Add/Square graph"
    )
    save_figure(fig, path)
