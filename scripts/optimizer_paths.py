"""Optimizer paths on f(x, y) = x^2/20 + y^2 (chapter 6, figure 6-8).

f is built as a computational graph of chapter 5's layers, SquareLayer(x) -> MulLayer
(by 1/20) -> AddLayer(+ SquareLayer(y)): forward computes f, backward gives (df/dx,
df/dy), checked at every step against the exact (x/10, 2y). Each optimizer of
``nnx.optimizers`` then follows that gradient from the start point on arrays of the
chosen device. The defaults are the book's figure's: SGD 0.95, Momentum 0.1, AdaGrad 1.5,
Adam 0.3, from (-7, 2) for 30 steps. A path whose |x| or |y| passes 1e6 or stops being
finite is reported as DIVERGED and drawn only up to that point. Plot:
OUT/optimizer_paths.png.

Usage: python scripts/optimizer_paths.py [--start X Y] [--steps N] [--optimizer NAME ...]
       [--lr [NAME=]VALUE ...] [--momentum M] [--device DEV] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import numpy as np

from backends import Backend, get_backend
from nnx import io, program, stops
from nnx.descent import LIMIT, MAX_STEPS, Trajectory, follow
from nnx.errors import InputError
from nnx.layers import AddLayer, MulLayer, SquareLayer
from nnx.optimizers import Optimizer
from nnx.plots import plot_optimizer_paths

PROG = "optimizer_paths.py"
DEFAULT_OPTIMIZERS = ["sgd", "momentum", "adagrad", "adam"]
# Rates that suit this function: the book's figure 6-8 for the first four.
DEFAULT_LR = {"sgd": 0.95, "momentum": 0.1, "adagrad": 1.5, "adam": 0.3, "nesterov": 0.1,
              "rmsprop": 0.1}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Paths of SGD, Momentum, AdaGrad and "
                                "Adam on f(x, y) = x^2/20 + y^2, whose gradient comes from a "
                                "computational graph of Mul/Add/Square layers.")
    p.add_argument("--start", nargs=2, type=float, default=[-7.0, 2.0], metavar=("X", "Y"),
                   help="starting point (default: -7 2, as the book's figure 6-8)")
    p.add_argument("--steps", type=int, default=30,
                   help="steps per optimizer (default: 30, as the book's figure 6-8)")
    program.add_optimizer_arguments(p, DEFAULT_OPTIMIZERS,
                            ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()))
    program.add_device_argument(p)
    program.add_out_argument(p, "runs/optimizer_paths", "PNG")
    return p


def graph_f(params: dict):
    """f = x^2/20 + y^2 as a graph of chapter 5's layers: its forward, and backward's (dx, dy)."""
    square_x, scale, square_y, add = SquareLayer(), MulLayer(), SquareLayer(), AddLayer()
    f = add.forward(scale.forward(square_x.forward(params["x"]), 1 / 20),
                    square_y.forward(params["y"]))
    d_scaled, d_y2 = add.backward(1.0)
    d_x2, _ = scale.backward(d_scaled)
    return f, {"x": square_x.backward(d_x2), "y": square_y.backward(d_y2)}


def walk(backend: Backend, opt: Optimizer, start: Sequence[float], steps: int) -> Trajectory:
    params = {k: backend.asarray([v], dtype="float64") for k, v in zip("xy", start, strict=True)}
    return follow(graph_f, params, opt, steps, backend)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.steps <= MAX_STEPS:
        raise InputError(f"--steps must be an integer from 1 to {MAX_STEPS:,}, got {args.steps}")
    if not all(math.isfinite(c) and abs(c) <= LIMIT for c in args.start):
        raise InputError(f"--start must be finite numbers within +-{LIMIT:g}, got "
                         f"{args.start[0]:g} {args.start[1]:g}")
    opts = program.optimizers_from_args(args, DEFAULT_OPTIMIZERS, DEFAULT_LR)
    backend = get_backend(args.device)
    start = args.start
    print(f"f(x, y) = x^2/20 + y^2 as a graph of SquareLayer, MulLayer, AddLayer; start "
          f"({start[0]:g}, {start[1]:g}), {args.steps} steps")
    print(f"device: {backend} - {backend.reason}")
    paths = [walk(backend, opt, start, args.steps) for opt in opts]
    # the graph's backward against the exact gradient (x/10, 2y), at every point visited
    points = np.concatenate([p.points for p in paths])
    exact = points / [10.0, 0.5]
    grads = np.concatenate([p.grads for p in paths])
    worst = np.max(np.abs(grads - exact) / np.maximum(np.abs(exact), 1e-300))
    print(f"graph backward vs exact (x/10, 2y): max relative difference {worst:.1e} over "
          f"{len(points)} points")
    print(f"{'optimizer':<10} {'final x':>18} {'final y':>18} {'final f':>18}  "
          f"{'status':<8}  hyper-parameters")
    for p in paths:
        (x, y), status = p.points[-1], "ok" if p.diverged_at is None else "DIVERGED"
        print(f"{p.optimizer.name:<10} {x:>18.10e} {y:>18.10e} {p.values[-1]:>18.10e}  "
              f"{status:<8}  {p.optimizer!r}")
    for p in paths:
        if p.diverged_at is not None:
            print(f"{p.optimizer.name} diverged at step {p.diverged_at}: |x| or |y| passed "
                  f"{LIMIT:g} or f stopped being finite; its row shows the last point within "
                  "bounds")
    with io.output_dir(args.out) as out:
        plot_optimizer_paths(paths, start, args.steps, out / "optimizer_paths.png")
    print(f"wrote {out / 'optimizer_paths.png'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return program.run_program(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    stops.exit_after(main)
