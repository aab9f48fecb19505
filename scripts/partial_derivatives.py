"""Partial derivatives by central differences (chapter 4): f(x0, x1) = x0^2 + x1^2.

At each point the partial derivatives are computed twice, as the book does: with
``numerical_diff`` on a one-variable slice (x1 held fixed, then x0), and with
``numerical_gradient`` on a device array. Both are printed beside the exact gradient
(2 x0, 2 x1). For this quadratic, central differences are exact in real arithmetic,
((x + h)^2 - (x - h)^2) / 2h = 2x, so every difference printed is rounding error.

The gradient field over [-2, 2]^2 (the book's figure 4-9) is computed the book's way,
as the numerical gradient of the sum of f over all grid points, and drawn as arrows
pointing along -grad f.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import numpy as np

from backends import Backend, BackendError, get_backend, xp_of
from nnx.errors import InputError, NnxError
from nnx.gradients import H, numerical_diff, numerical_gradient

PROG = Path(__file__).name
NAME = Path(__file__).stem
POINTS = [(3.0, 4.0), (0.0, 2.0), (3.0, 0.0), (-2.0, 1.5), (0.5, -1.25), (0.0, 0.0)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Partial derivatives of f(x0, x1) = x0^2 + x1^2 by central differences, "
        "beside the exact 2x, and the gradient field (figure 4-9).",
    )
    p.add_argument(
        "--point",
        nargs=2,
        type=float,
        action="append",
        metavar=("X0", "X1"),
        help="a point to differentiate at (repeatable; default: the book's (3, 4), (0, 2), "
        "(3, 0) and (-2, 1.5), (0.5, -1.25), (0, 0))",
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


def f(x):
    """x0^2 + x1^2; for a stack of points (N, 2), the sum of f over the points."""
    return xp_of(x).sum(x * x)


def partials(backend: Backend, point: tuple[float, float]) -> dict[str, list[float]]:
    x0, x1 = point
    by_diff = [
        numerical_diff(lambda t: t * t + x1 * x1, x0),  # the book's function_tmp1
        numerical_diff(lambda t: x0 * x0 + t * t, x1),  # the book's function_tmp2
    ]
    x = backend.asarray([x0, x1], dtype="float64")
    grad = backend.to_numpy(numerical_gradient(f, x))
    return {
        "diff": [float(v) for v in by_diff],
        "grad": [float(v) for v in grad],
        "exact": [2 * x0, 2 * x1],
    }


def gradient_field(backend: Backend) -> tuple[np.ndarray, np.ndarray, float]:
    """Grid points (host), numerical gradients (host) and their max deviation from 2x."""
    axis = np.arange(-2.0, 2.5, 0.25)
    X, Y = np.meshgrid(axis, axis)
    points = np.stack([X.ravel(), Y.ravel()], axis=1)
    # d/dp of sum_q f(q) is grad f(p): one numerical gradient gives the whole field.
    grad = backend.to_numpy(numerical_gradient(f, backend.asarray(points, dtype="float64")))
    return points, grad, float(np.max(np.abs(grad - 2 * points)))


def plot(points: np.ndarray, grad: np.ndarray, path: Path) -> None:
    from matplotlib.figure import Figure  # pyplot-free: rendered by Agg, no GUI, no globals

    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    ax = fig.add_subplot()
    ax.quiver(
        points[:, 0],
        points[:, 1],
        -grad[:, 0],
        -grad[:, 1],
        angles="xy",
        color="#555555",
        label=r"$-\nabla f$ (central differences, h = 1e-4)",
    )
    ax.plot([0], [0], "r+", markersize=14, mew=2, label="minimum (0, 0)")
    ax.set(
        xlim=(-2.4, 2.4),
        ylim=(-2.4, 2.4),
        xlabel="$x_0$",
        ylabel="$x_1$",
        title="Gradient field of $f(x_0, x_1) = x_0^2 + x_1^2$:\n"
        "arrows point along $-\\nabla f$, the way down",
    )
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2)
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
    points = [tuple(p) for p in args.point] if args.point else POINTS
    for p in points:
        if not all(math.isfinite(v) for v in p):
            raise InputError(f"--point must be finite numbers, got {p[0]:g} {p[1]:g}")
    backend = get_backend(args.device)
    print(
        "f(x0, x1) = x0^2 + x1^2: partial derivatives by central differences "
        f"(h = {H:g}) beside the exact (2 x0, 2 x1)"
    )
    print(f"device: {backend} - {backend.reason}")
    print(
        "numerical_diff: one variable at a time, the other held fixed (host floats); "
        "numerical_gradient: on the device array"
    )
    head = (
        "x0",
        "x1",
        "diff d/dx0",
        "diff d/dx1",
        "grad d/dx0",
        "grad d/dx1",
        "2 x0",
        "2 x1",
        "max|diff|",
    )
    print(
        f"{head[0]:>8} {head[1]:>8}  "
        + " ".join(f"{h:>18}" for h in head[2:6])
        + f"  {head[6]:>8} {head[7]:>8}  {head[8]:>9}"
    )
    worst = 0.0
    for p in points:
        r = partials(backend, p)
        dev = max(
            abs(a - e) for key in ("diff", "grad") for a, e in zip(r[key], r["exact"], strict=True)
        )
        worst = max(worst, dev)
        print(
            f"{p[0]:>8g} {p[1]:>8g}  "
            + " ".join(f"{v:>18.15g}" for v in r["diff"] + r["grad"])
            + f"  {r['exact'][0]:>8g} {r['exact'][1]:>8g}  {dev:>9.2e}"
        )
    print(f"max |numerical - exact| over {len(points)} points: {worst:.2e}")
    grid, grad, field_dev = gradient_field(backend)
    print(
        f"gradient field: {len(grid)} grid points on [-2, 2]^2, "
        f"max |numerical - exact| = {field_dev:.2e}"
    )
    out = args.out / "gradient_field.png"
    plot(grid, grad, out)
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
