"""Partial derivatives by central differences (chapter 4): f(x0, x1) = x0^2 + x1^2.

At each point the partial derivatives are computed twice, as the book does: with
``numerical_diff`` on a one-variable slice (x1 held fixed, then x0), and with
``numerical_gradient`` on a device array. Both are printed beside the exact gradient
(2 x0, 2 x1). For this quadratic, central differences are exact in real arithmetic,
((x + h)^2 - (x - h)^2) / 2h = 2x, so every difference printed is rounding error.

The gradient field over [-2, 2]^2 (the book's figure 4-9) is computed the book's way,
as the numerical gradient of the sum of f over all grid points, and drawn as arrows
pointing along -grad f into OUT/gradient_field.png.

Usage: python scripts/partial_derivatives.py [--point X0 X1 ...] [--device DEV] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import numpy as np

from backends import Backend, get_backend, xp_of
from nnx import io, program, stops
from nnx.errors import InputError
from nnx.numerical import H, numerical_diff, numerical_gradient
from nnx.plots import plot_gradient_field

PROG = "partial_derivatives.py"
POINTS = [(3.0, 4.0), (0.0, 2.0), (3.0, 0.0), (-2.0, 1.5), (0.5, -1.25), (0.0, 0.0)]
LARGEST = 9e153  # both at most this: x0^2 + x1^2 stays below float64's largest, 1.8e308
HEAD = ("diff d/dx0", "diff d/dx1", "grad d/dx0", "grad d/dx1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Partial derivatives of f(x0, x1) = "
                                "x0^2 + x1^2 by central differences, beside the exact 2x, and "
                                "the gradient field (figure 4-9).")
    p.add_argument("--point", nargs=2, type=float, action="append", metavar=("X0", "X1"),
                   help="a point to differentiate at (repeatable; default: the book's (3, 4), "
                   "(0, 2), (3, 0) and (-2, 1.5), (0.5, -1.25), (0, 0))")
    program.add_device_argument(p)
    program.add_out_argument(p, "runs/partial_derivatives", "PNG")
    return p


def f(x):
    """x0^2 + x1^2; for a stack of points (N, 2), the sum of f over the points."""
    return xp_of(x).sum(x * x)


def partials(backend: Backend, x0: float, x1: float) -> list[float]:
    """d/dx0, d/dx1 by numerical_diff on host floats, then by numerical_gradient on the device."""
    by_diff = [numerical_diff(lambda t: t * t + x1 * x1, x0),  # the book's function_tmp1
               numerical_diff(lambda t: x0 * x0 + t * t, x1)]  # the book's function_tmp2
    grad = backend.to_numpy(numerical_gradient(f, backend.asarray([x0, x1], dtype="float64")))
    return [float(v) for v in [*by_diff, *grad]]


def run(args: argparse.Namespace) -> int:
    points = [tuple(p) for p in args.point] if args.point else POINTS
    for p in points:
        if not all(math.isfinite(v) for v in p):
            raise InputError(f"--point must be finite numbers, got {p[0]:g} {p[1]:g}")
        # f at x +- h must be a float64 number, or its differences are inf - inf = NaN
        if not math.isfinite(sum((abs(v) + H) * (abs(v) + H) for v in p)):
            raise InputError(f"--point {p[0]:g} {p[1]:g} is too large: x0^2 + x1^2 overflows "
                             f"float64 there; give coordinates of at most {LARGEST:g} in size")
    backend = get_backend(args.device)
    print("f(x0, x1) = x0^2 + x1^2: partial derivatives by central differences "
          f"(h = {H:g}) beside the exact (2 x0, 2 x1)")
    print(f"device: {backend} - {backend.reason}")
    print("numerical_diff: one variable at a time, the other held fixed (host floats); "
          "numerical_gradient: on the device array")
    print(f"{'x0':>8} {'x1':>8}  " + " ".join(f"{h:>18}" for h in HEAD)
          + f"  {'2 x0':>8} {'2 x1':>8}  {'max|diff|':>9}")
    worst = 0.0
    for x0, x1 in points:
        got = partials(backend, x0, x1)
        dev = max(abs(g - e) for g, e in zip(got, [2 * x0, 2 * x1] * 2, strict=True))
        worst = max(worst, dev)
        print(f"{x0:>8g} {x1:>8g}  " + " ".join(f"{v:>18.15g}" for v in got)
              + f"  {2 * x0:>8g} {2 * x1:>8g}  {dev:>9.2e}")
    print(f"max |numerical - exact| over {len(points)} points: {worst:.2e}")
    # d/dp of sum_q f(q) is grad f(p): one numerical gradient gives the whole field.
    axis = np.arange(-2.0, 2.5, 0.25)
    grid = np.stack([c.ravel() for c in np.meshgrid(axis, axis)], axis=1)
    grad = backend.to_numpy(numerical_gradient(f, backend.asarray(grid, dtype="float64")))
    print(f"gradient field: {len(grid)} grid points on [-2, 2]^2, "
          f"max |numerical - exact| = {np.max(np.abs(grad - 2 * grid)):.2e}")
    with io.output_dir(args.out) as out:
        plot_gradient_field(grid, grad, out / "gradient_field.png")
    print(f"wrote {out / 'gradient_field.png'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return program.run_program(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    stops.exit_after(main)
