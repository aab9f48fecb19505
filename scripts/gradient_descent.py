"""Gradient descent with a numerical gradient (chapter 4), against its closed form.

On f(x) = x^2 each step is x <- x - lr * 2x, so after k steps x_k = x0 (1 - 2 lr)^k:
it shrinks when |1 - 2 lr| < 1 (0 < lr < 1) and grows geometrically when lr > 1. The
gradient is the library's central difference, which for a quadratic is exact up to
rounding, so the descent must match the closed form to ~1e-12. A run whose |x| passes
1e6 or stops being finite is reported as DIVERGED and drawn only up to that point.

Then the book's 2-D example (figure 4-10): f(x0, x1) = x0^2 + x1^2 from (-3, 4), lr 0.1,
20 steps, where x_k = (-3, 4) * 0.8^k. Plots: OUT/gradient_descent.png, _2d.png.

Usage: python scripts/gradient_descent.py [--lr LR ...] [--steps K ...] [--x0 X0]
       [--device DEV] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from backends import Backend, get_backend, xp_of
from nnx import io, program, stops
from nnx.descent import LIMIT, MAX_STEPS, Trajectory, follow
from nnx.errors import InputError
from nnx.numerical import H, numerical_gradient
from nnx.optimizers import SGD
from nnx.plots import plot_descent_1d, plot_descent_2d

PROG = "gradient_descent.py"
START_2D, LR_2D, STEPS_2D = (-3.0, 4.0), 0.1, 20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Gradient descent on f(x) = x^2 with a "
                                "numerical gradient, against the closed form x_k = x0 (1 - 2 lr)^k;"
                                " then the book's 2-D example on x0^2 + x1^2.")
    p.add_argument("--lr", type=float, action="append",
                   help="a learning rate (repeatable; default: 0.1, 0.01 and 1.1, which diverges)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 100], metavar="K",
                   help="step counts to report (default: 10 100); the runs go to the largest")
    p.add_argument("--x0", type=float, default=-3.0, help="starting point (default: -3)")
    program.add_device_argument(p)
    program.add_out_argument(p, "runs/gradient_descent", "PNGs")
    return p


def descend(backend: Backend, start: Sequence[float], lr: float, steps: int) -> Trajectory:
    """The book's gradient_descent loop: x -= lr * numerical_gradient(f, x), in place."""
    def f(x):
        return xp_of(x).sum(x * x)

    x = {"x": backend.asarray(list(start), dtype="float64")}
    return follow(lambda p: (f(p["x"]), {"x": numerical_gradient(f, p["x"])}), x, SGD(lr=lr),
                  steps, backend)


def closed_form(x0: float, lr: float, k: int) -> float:
    """x0 (1 - 2 lr)^k, the k-th iterate of gradient descent on x^2; +-inf past overflow."""
    try:
        return x0 * (1 - 2 * lr) ** k
    except OverflowError:
        return math.copysign(math.inf, x0) * (1 if k % 2 == 0 or lr < 1 else -1)


def run(args: argparse.Namespace) -> int:
    rates = args.lr or [0.1, 0.01, 1.1]
    for lr in rates:
        SGD(lr=lr)  # validates: one sentence for a non-positive or non-finite rate
    if any(not 1 <= k <= MAX_STEPS for k in args.steps):
        raise InputError(f"--steps must be integers from 1 to {MAX_STEPS:,}, got "
                         f"{' '.join(map(str, args.steps))}")
    if not (math.isfinite(args.x0) and abs(args.x0) <= LIMIT):
        raise InputError(f"--x0 must be a finite number within +-{LIMIT:g}, got {args.x0}")
    steps, x0 = sorted(set(args.steps)), args.x0
    backend = get_backend(args.device)
    print(f"gradient descent on f(x) = x^2 from x0 = {x0:g}; gradient by central "
          f"differences (h = {H:g}); closed form x_k = x0 (1 - 2 lr)^k")
    print(f"device: {backend} - {backend.reason}")
    print(f"{'lr':>8} {'steps':>6} {'x_k (descent)':>24} {'x0 (1 - 2 lr)^k':>24} "
          f"{'rel. diff':>9}  status")
    runs = []
    for lr in rates:
        runs.append(r := descend(backend, [x0], lr, steps[-1]))
        for k in steps:
            exact = closed_form(x0, lr, k)
            if r.diverged_at is not None and k >= r.diverged_at:
                print(f"{lr:>8g} {k:>6} {'DIVERGED':>24} {exact:>24.17g} {'-':>9}  "
                      f"DIVERGED at step {r.diverged_at} (|x| > {LIMIT:g} or not finite)")
                continue
            xk = float(r.points[k][0])
            rel = abs(xk - exact) / abs(exact) if exact else abs(xk)
            status = "converging" if abs(xk) < abs(x0) else "growing"
            print(f"{lr:>8g} {k:>6} {xk:>24.17g} {exact:>24.17g} {rel:>9.1e}  {status}")
    r2 = descend(backend, START_2D, LR_2D, STEPS_2D)
    exact2 = [c * (1 - 2 * LR_2D) ** STEPS_2D for c in START_2D]
    final = r2.points[-1]
    rel2 = max(abs(a - e) / abs(e) for a, e in zip(final, exact2, strict=True))
    print(f"2-D: x0^2 + x1^2 from ({START_2D[0]:g}, {START_2D[1]:g}), lr {LR_2D:g}, "
          f"{STEPS_2D} steps: x = ({final[0]:.17g}, {final[1]:.17g}); "
          f"closed form ({exact2[0]:.17g}, {exact2[1]:.17g}); max rel. diff {rel2:.1e}")
    with io.output_dir(args.out) as out:
        plot_descent_1d(runs, x0, out / "gradient_descent.png")
        plot_descent_2d(r2, out / "gradient_descent_2d.png")
    print(f"wrote {out / 'gradient_descent.png'}")
    print(f"wrote {out / 'gradient_descent_2d.png'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return program.run_program(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    stops.exit_after(main)
