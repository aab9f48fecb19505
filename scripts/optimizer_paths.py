"""Optimizer paths on f(x, y) = x^2/20 + y^2 (chapter 6, figure 6-8).

f is built as a computational graph of chapter 5's layers, SquareLayer(x) -> MulLayer
(by 1/20) -> AddLayer(+ SquareLayer(y)): forward computes f, backward gives (df/dx,
df/dy), checked at every step against the exact (x/10, 2y). Each optimizer of
``nnx.optimizers`` then follows that gradient from the start point on arrays of the
chosen device. The default rates are the book's: SGD 0.95, Momentum 0.1, AdaGrad 1.5,
Adam 0.3. A path whose |x| or |y| passes 1e6 or stops being finite is reported as
DIVERGED and drawn only up to that point.
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

from backends import Backend, BackendError, get_backend
from nnx.errors import InputError, NnxError
from nnx.layers import AddLayer, MulLayer, SquareLayer
from nnx.optimizers import OPTIMIZERS, Optimizer, make_optimizer

PROG = Path(__file__).name
NAME = Path(__file__).stem
LIMIT = 1e6
DEFAULT_OPTIMIZERS = ["sgd", "momentum", "adagrad", "adam"]
# Rates that suit this function: the book's figure 6-8 for the first four.
DEFAULT_LR = {
    "sgd": 0.95,
    "momentum": 0.1,
    "adagrad": 1.5,
    "adam": 0.3,
    "nesterov": 0.1,
    "rmsprop": 0.1,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Paths of SGD, Momentum, AdaGrad and Adam on f(x, y) = x^2/20 + y^2, "
        "whose gradient comes from a computational graph of Mul/Add/Square layers.",
    )
    p.add_argument(
        "--start",
        nargs=2,
        type=float,
        default=[8.0, 1.0],
        metavar=("X", "Y"),
        help="starting point (default: 8 1; the book's figure 6-8 starts at -7 2)",
    )
    p.add_argument("--steps", type=int, default=100, help="steps per optimizer (default: 100)")
    p.add_argument(
        "--optimizer",
        action="append",
        metavar="NAME",
        help=f"an optimizer to run (repeatable; one of {', '.join(OPTIMIZERS)}; "
        f"default: {' '.join(DEFAULT_OPTIMIZERS)})",
    )
    p.add_argument(
        "--lr",
        action="append",
        default=[],
        metavar="[NAME=]VALUE",
        help="learning rate for every optimizer, or NAME=VALUE for one (repeatable; "
        "default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")",
    )
    p.add_argument(
        "--momentum",
        type=float,
        default=None,
        help="momentum of momentum and nesterov (default: 0.9)",
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N, strict or auto (default: auto)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / NAME,
        help=f"directory for the PNG (default: runs/{NAME})",
    )
    return p


class GraphFunction:
    """f(x, y) = x^2/20 + y^2 as a computational graph of chapter 5's layers."""

    def __init__(self) -> None:
        self.square_x, self.scale, self.square_y, self.add = (
            SquareLayer(),
            MulLayer(),
            SquareLayer(),
            AddLayer(),
        )

    def forward(self, x, y):
        return self.add.forward(
            self.scale.forward(self.square_x.forward(x), 1 / 20), self.square_y.forward(y)
        )

    def backward(self, dout=1.0):
        """(df/dx, df/dy) for the last forward."""
        d_scaled, d_y2 = self.add.backward(dout)
        d_x2, _ = self.scale.backward(d_scaled)
        return self.square_x.backward(d_x2), self.square_y.backward(d_y2)


@dataclass
class Path2D:
    optimizer: Optimizer
    points: list[tuple[float, float]] = field(default_factory=list)
    values: list[float] = field(default_factory=list)  # f at each point
    diverged_at: int | None = None
    max_rel_error: float = 0.0  # graph gradient vs the exact (x/10, 2y)


def follow(backend: Backend, opt: Optimizer, start: Sequence[float], steps: int) -> Path2D:
    graph = GraphFunction()
    params = {
        "x": backend.asarray([start[0]], dtype="float64"),
        "y": backend.asarray([start[1]], dtype="float64"),
    }
    path = Path2D(opt)
    for k in range(steps + 1):
        fxy = graph.forward(params["x"], params["y"])
        dx, dy = graph.backward()
        point = tuple(float(backend.to_numpy(params[key])[0]) for key in ("x", "y"))
        value = float(backend.to_numpy(fxy)[0])
        if not (all(math.isfinite(c) and abs(c) <= LIMIT for c in point) and math.isfinite(value)):
            path.diverged_at = k
            break
        path.points.append(point)
        path.values.append(value)
        exact = (point[0] / 10, 2 * point[1])
        got = (float(backend.to_numpy(dx)[0]), float(backend.to_numpy(dy)[0]))
        for g, e in zip(got, exact, strict=True):
            path.max_rel_error = max(path.max_rel_error, abs(g - e) / max(abs(e), 1e-300))
        if k < steps:
            opt.update(params, {"x": dx, "y": dy})
    return path


def parse_rates(specs: list[str], names: list[str]) -> dict[str, float | None]:
    """--lr values: a bare VALUE sets every optimizer, NAME=VALUE one of them."""
    rates: dict[str, float | None] = {n: DEFAULT_LR.get(n) for n in names}
    for spec in specs:
        name, sep, text = spec.rpartition("=")
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"--lr expects VALUE or NAME=VALUE, got {spec!r}") from None
        if not sep:
            rates = dict.fromkeys(names, value)
            continue
        name = name.strip().lower()
        if name not in rates:
            raise InputError(
                f"--lr {spec} names {name!r}, which is not among the optimizers "
                f"run ({', '.join(names)})"
            )
        rates[name] = value
    return rates


def build_optimizers(args: argparse.Namespace) -> list[Optimizer]:
    names = [n.strip().lower() for n in (args.optimizer or DEFAULT_OPTIMIZERS)]
    for n in names:
        if n not in OPTIMIZERS:
            make_optimizer(n)  # raises the library's one-sentence error listing the names
    rates = parse_rates(args.lr, names)
    opts = []
    for n in names:
        hyper: dict[str, float | None] = {"lr": rates[n]}
        if "momentum" in OPTIMIZERS[n].HYPERPARAMETERS:
            hyper["momentum"] = args.momentum
        opts.append(make_optimizer(n, **hyper))
    return opts


def plot(paths: list[Path2D], start: Sequence[float], steps: int, out: Path) -> None:
    from matplotlib.figure import Figure  # pyplot-free: rendered by Agg, no GUI, no globals

    n = len(paths)
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(6.2 * cols, 3.9 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    xmax = max(10.0, 1.2 * abs(start[0]))
    ymax = max(5.0, 1.2 * abs(start[1]))
    gx, gy = np.meshgrid(np.linspace(-xmax, xmax, 300), np.linspace(-ymax, ymax, 300))
    levels = np.geomspace(0.05, gx.max() ** 2 / 20 + gy.max() ** 2, 12)
    for ax, path in zip(axes, paths, strict=False):
        ax.contour(gx, gy, gx**2 / 20 + gy**2, levels=levels, colors="0.7", linewidths=0.7)
        pts = np.array(path.points)
        opt = path.optimizer
        hyper = ", ".join(f"{k}={v:g}" for k, v in opt.hyperparameters.items())
        if path.diverged_at is None:
            label = (
                f"{len(pts) - 1} steps, ends at ({pts[-1, 0]:.2g}, {pts[-1, 1]:.2g}), "
                f"f = {path.values[-1]:.2g}"
            )
            color = "tab:red"
        else:
            label = f"DIVERGED at step {path.diverged_at}: drawn up to step {len(pts) - 1}"
            color = "tab:purple"
        ax.plot(pts[:, 0], pts[:, 1], "o-", color=color, ms=2.5, lw=0.8, label=label)
        ax.plot([pts[0, 0]], [pts[0, 1]], "s", color="black", ms=5, label="start")
        ax.plot([0], [0], "+", color="black", ms=10, mew=1.5, label="minimum (0, 0)")
        title = f"{type(opt).__name__} ({hyper})"
        if path.diverged_at is not None:
            title += f": DIVERGED at step {path.diverged_at}"
        ax.set(xlim=(-xmax, xmax), ylim=(-ymax, ymax), xlabel="x", ylabel="y", title=title)
        ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(
        f"Minimising $f(x, y) = x^2/20 + y^2$ from ({start[0]:g}, {start[1]:g}), "
        f"{steps} steps; gradient from a Mul/Add/Square graph"
    )
    save_png(fig, out)


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
    if args.steps < 1:
        raise InputError(f"--steps must be a positive integer, got {args.steps}")
    if not all(math.isfinite(c) and abs(c) <= LIMIT for c in args.start):
        raise InputError(
            f"--start must be finite numbers within +-{LIMIT:g}, got "
            f"{args.start[0]:g} {args.start[1]:g}"
        )
    opts = build_optimizers(args)
    backend = get_backend(args.device)
    start = args.start
    print(
        f"f(x, y) = x^2/20 + y^2 as a graph of SquareLayer, MulLayer, AddLayer; start "
        f"({start[0]:g}, {start[1]:g}), {args.steps} steps"
    )
    print(f"device: {backend} - {backend.reason}")
    # A diverging path may overflow: it is detected and reported, NumPy's warnings would
    # only repeat it on stderr.
    with np.errstate(over="ignore", invalid="ignore"):
        paths = [follow(backend, opt, start, args.steps) for opt in opts]
    n_evals = sum(len(p.points) for p in paths)
    worst = max(p.max_rel_error for p in paths)
    print(
        f"graph backward vs exact (x/10, 2y): max relative difference {worst:.1e} over "
        f"{n_evals} points"
    )
    print(
        f"{'optimizer':<10} {'final x':>18} {'final y':>18} {'final f':>18}  "
        f"{'status':<8}  hyper-parameters"
    )
    for p in paths:
        x, y = p.points[-1]
        status = "ok" if p.diverged_at is None else "DIVERGED"
        print(
            f"{p.optimizer.name:<10} {x:>18.10e} {y:>18.10e} {p.values[-1]:>18.10e}  "
            f"{status:<8}  {p.optimizer!r}"
        )
    for p in paths:
        if p.diverged_at is not None:
            print(
                f"{p.optimizer.name} diverged at step {p.diverged_at}: |x| or |y| passed "
                f"{LIMIT:g} or f stopped being finite; its row shows the last point within "
                "bounds"
            )
    out = args.out / "optimizer_paths.png"
    plot(paths, start, args.steps, out)
    print(f"wrote {out}")
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
