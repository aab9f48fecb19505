"""Gradient descent with a numerical gradient (chapter 4), against its closed form.

On f(x) = x^2 each step is x <- x - lr * 2x, so after k steps x_k = x0 (1 - 2 lr)^k:
it shrinks when |1 - 2 lr| < 1 (0 < lr < 1) and grows geometrically when lr > 1. The
gradient is the library's central difference, which for a quadratic is exact up to
rounding, so the descent must match the closed form to ~1e-12. A run whose |x| passes
1e6 or stops being finite is reported as DIVERGED and drawn only up to that point.

Then the book's 2-D example (figure 4-10): f(x0, x1) = x0^2 + x1^2 from (-3, 4), lr 0.1,
20 steps, where x_k = (-3, 4) * 0.8^k.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backends import Backend, BackendError, get_backend, xp_of
from nnx.errors import InputError, NnxError
from nnx.gradients import H, numerical_gradient
from nnx.optimizers import SGD

PROG = Path(__file__).name
NAME = Path(__file__).stem
LIMIT = 1e6  # |x| beyond this counts as divergence
START_2D, LR_2D, STEPS_2D = (-3.0, 4.0), 0.1, 20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Gradient descent on f(x) = x^2 with a numerical gradient, against the "
        "closed form x_k = x0 (1 - 2 lr)^k; then the book's 2-D example on x0^2 + x1^2.",
    )
    p.add_argument(
        "--lr",
        type=float,
        action="append",
        help="a learning rate (repeatable; default: 0.1, 0.01 and 1.1, which diverges)",
    )
    p.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=[10, 100],
        metavar="K",
        help="step counts to report (default: 10 100); the runs go to the largest",
    )
    p.add_argument("--x0", type=float, default=-3.0, help="starting point (default: -3)")
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N, strict or auto (default: auto)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / NAME,
        help=f"directory for the PNGs (default: runs/{NAME})",
    )
    return p


def f(x):
    return xp_of(x).sum(x * x)


@dataclass
class Run:
    lr: float
    path: list[np.ndarray] = field(default_factory=list)  # host copies, finite part only
    diverged_at: int | None = None

    @property
    def label(self) -> str:
        if self.diverged_at is not None:
            return f"lr = {self.lr:g}: DIVERGED at step {self.diverged_at}"
        return f"lr = {self.lr:g}: x_{len(self.path) - 1} = {_fmt(self.path[-1])}"


def descend(backend: Backend, start: Sequence[float], lr: float, steps: int) -> Run:
    """Gradient descent with the numerical gradient; stops early when it diverges."""
    opt = SGD(lr=lr)  # x -= lr * grad, in place: the book's gradient_descent loop
    x = backend.asarray(list(start), dtype="float64")
    run = Run(lr, [np.array(backend.to_numpy(x))])
    for k in range(1, steps + 1):
        opt.update({"x": x}, {"x": numerical_gradient(f, x)})
        host = np.array(backend.to_numpy(x))  # a copy: on NumPy, x is updated in place
        if not (np.all(np.isfinite(host)) and np.max(np.abs(host)) <= LIMIT):
            run.diverged_at = k
            break
        run.path.append(host)
    return run


def closed_form(x0: float, lr: float, k: int) -> float:
    """x0 (1 - 2 lr)^k, the k-th iterate of gradient descent on x^2; +-inf past overflow."""
    try:
        return x0 * (1 - 2 * lr) ** k
    except OverflowError:
        return math.copysign(math.inf, x0) * (1 if k % 2 == 0 or lr < 1 else -1)


def _fmt(v: np.ndarray) -> str:
    return f"{float(v[0]):.4g}" if v.size == 1 else "(" + ", ".join(f"{c:.4g}" for c in v) + ")"


def plot_1d(runs: list[Run], x0: float, path: Path) -> None:
    from matplotlib.figure import Figure  # pyplot-free: rendered by Agg, no GUI, no globals

    n = len(runs)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.6 * cols, 4.0 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    span = 1.6 * max(abs(x0), 1e-3)
    grid = np.linspace(-span, span, 400)
    for ax, run in zip(axes, runs, strict=False):
        xs = np.array([p[0] for p in run.path])
        ax.plot(grid, grid**2, color="0.6", lw=1.5, label="$f(x) = x^2$")
        color = "tab:red" if run.diverged_at is not None else "tab:blue"
        ax.plot(xs, xs**2, "o-", color=color, ms=3.5, lw=0.8, alpha=0.8, label=run.label)
        ax.plot(xs[:1], xs[:1] ** 2, "s", color="black", ms=6, label=f"start x0 = {x0:g}")
        if run.diverged_at is not None:
            ax.annotate(
                "leaves the plot, |x| grows without bound",
                xy=(0.5, 0.9),
                xycoords="axes fraction",
                ha="center",
                color="tab:red",
            )
        title = f"lr = {run.lr:g}, {len(xs) - 1} steps"
        if run.diverged_at is not None:
            title = f"lr = {run.lr:g}: DIVERGED (|x| > {LIMIT:g} at step {run.diverged_at})"
        ax.set(
            xlim=(-span, span),
            ylim=(-0.05 * span**2, 1.15 * span**2),
            xlabel="x",
            ylabel="f(x)",
            title=title,
        )
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, ncols=1)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(
        "Gradient descent on $f(x) = x^2$ with a numerical gradient: $x_k = x_0 (1 - 2\\,lr)^k$"
    )
    save_png(fig, path)


def plot_2d(run: Run, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 6.2), layout="constrained")
    ax = fig.add_subplot()
    g0, g1 = np.meshgrid(np.linspace(-3.5, 3.5, 200), np.linspace(-4.5, 4.5, 200))
    cs = ax.contour(g0, g1, g0**2 + g1**2, levels=[1, 4, 9, 16, 25], colors="0.75", linewidths=0.8)
    ax.clabel(cs, fontsize=7)
    pts = np.array(run.path)
    ax.plot(pts[:, 0], pts[:, 1], "o", color="tab:blue", ms=4, label=run.label)
    ax.plot([-5, 5], [0, 0], "--b", lw=0.6)
    ax.plot([0, 0], [-5, 5], "--b", lw=0.6)
    ax.set(
        xlim=(-3.5, 3.5),
        ylim=(-4.5, 4.5),
        xlabel="$x_0$",
        ylabel="$x_1$",
        title=f"Gradient descent on $x_0^2 + x_1^2$ from ({START_2D[0]:g}, {START_2D[1]:g}),\n"
        f"lr = {run.lr:g}, {len(run.path) - 1} steps (the book's figure 4-10)",
    )
    ax.set_aspect("equal")
    fig.legend(loc="outside lower center")
    save_png(fig, path)


def save_png(fig, path: Path) -> None:
    """Write the figure to ``path`` atomically: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "xb") rather than mkstemp: the PNG gets the umask's mode, not 0600
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fig.savefig(fh, format="png", dpi=110)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    rates = args.lr or [0.1, 0.01, 1.1]
    for lr in rates:
        SGD(lr=lr)  # validates: one sentence for a non-positive or non-finite rate
    if any(k < 1 for k in args.steps):
        raise InputError(f"--steps must be positive integers, got {' '.join(map(str, args.steps))}")
    if not math.isfinite(args.x0):
        raise InputError(f"--x0 must be a finite number, got {args.x0}")
    steps = sorted(set(args.steps))
    backend = get_backend(args.device)
    x0 = args.x0
    print(
        f"gradient descent on f(x) = x^2 from x0 = {x0:g}; gradient by central "
        f"differences (h = {H:g}); closed form x_k = x0 (1 - 2 lr)^k"
    )
    print(f"device: {backend} - {backend.reason}")
    print(
        f"{'lr':>8} {'steps':>6} {'x_k (descent)':>24} {'x0 (1 - 2 lr)^k':>24} "
        f"{'rel. diff':>9}  status"
    )
    runs = []
    for lr in rates:
        # A huge rate may overflow: that is detected and reported as divergence, NumPy's
        # warnings would only repeat it on stderr.
        with np.errstate(over="ignore", invalid="ignore"):
            r = descend(backend, [x0], lr, steps[-1])
        runs.append(r)
        for k in steps:
            exact = closed_form(x0, lr, k)
            if r.diverged_at is not None and k >= r.diverged_at:
                print(
                    f"{lr:>8g} {k:>6} {'DIVERGED':>24} {exact:>24.17g} {'-':>9}  "
                    f"DIVERGED at step {r.diverged_at} (|x| > {LIMIT:g} or not finite)"
                )
                continue
            xk = float(r.path[k][0])
            rel = abs(xk - exact) / abs(exact) if exact else abs(xk)
            status = "converging" if abs(xk) < abs(x0) else "growing"
            print(f"{lr:>8g} {k:>6} {xk:>24.17g} {exact:>24.17g} {rel:>9.1e}  {status}")
    r2 = descend(backend, START_2D, LR_2D, STEPS_2D)
    exact2 = [c * (1 - 2 * LR_2D) ** STEPS_2D for c in START_2D]
    final = r2.path[-1]
    rel2 = max(abs(a - e) / abs(e) for a, e in zip(final, exact2, strict=True))
    print(
        f"2-D: x0^2 + x1^2 from ({START_2D[0]:g}, {START_2D[1]:g}), lr {LR_2D:g}, "
        f"{STEPS_2D} steps: x = ({final[0]:.17g}, {final[1]:.17g}); "
        f"closed form ({exact2[0]:.17g}, {exact2[1]:.17g}); max rel. diff {rel2:.1e}"
    )
    out1, out2 = args.out / "gradient_descent.png", args.out / "gradient_descent_2d.png"
    plot_1d(runs, x0, out1)
    plot_2d(r2, out2)
    print(f"wrote {out1}")
    print(f"wrote {out2}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (NnxError, BackendError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
    except OSError as exc:
        print(
            f"{PROG}: error: cannot write {exc.filename or args.out}: {exc.strerror or exc}",
            file=sys.stderr,
        )
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
