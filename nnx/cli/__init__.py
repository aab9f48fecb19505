"""The ``nnx`` command: ``info``, ``train``, ``gradcheck``, ``evaluate``, ``predict``, ``bench``.

Each subcommand lives in its own module, which provides ``configure(parser)`` to add
its flags and ``run(args) -> int``; only the module of the subcommand that runs is
imported. Errors a user can cause end as one sentence, ``nnx COMMAND: error: ...``, on
stderr and exit status 2; Ctrl-C exits with 130 (:func:`nnx.cli.program.run_program`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from nnx.cli import stops

SUBCOMMANDS = {
    "info": ("nnx.cli.info", "show versions, devices and what --device auto picks"),
    "train": ("nnx.cli.train", "train the two-layer net on MNIST"),
    "gradcheck": ("nnx.cli.gradcheck", "compare backprop with numerical gradients (chapter 5)"),
    "bench": ("nnx.bench.gradients", "time backprop and numerical gradients on every device"),
    "evaluate": ("nnx.cli.evaluate", "per-class accuracy and figures of a trained run"),
    "predict": ("nnx.cli.predict", "classify PNG or JPEG images of digits with a trained run"),
}


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first word that is not a flag."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; the flags of the subcommand named in ``argv`` (if any) are added."""
    parser = argparse.ArgumentParser(
        prog="nnx",
        description="The MNIST two-layer net of Deep Learning from Scratch on NumPy or CuPy.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _command(argv)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            p.description = mod.__doc__.split("\n\n")[0]
            mod.configure(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``nnx COMMAND ...``; returns the exit status.

    The stop signals are taken over first, before the subcommand's module (and NumPy) is
    imported, so a stop at any moment ends as ``nnx COMMAND: interrupted``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with stops.raising():
            from nnx.cli.program import run_program

            return run_program(lambda args: f"nnx {args.command}", build_parser(argv),
                               lambda args: args._run(args), argv)
    except KeyboardInterrupt as exc:  # a stop while the program started
        chosen = _command(argv)
        return stops.interrupted(f"nnx {chosen}" if chosen in SUBCOMMANDS else "nnx", exc)


def entry() -> NoReturn:
    """The ``nnx`` command's entry point: :func:`main`, then exit with its status."""
    stops.exit_after(main)
