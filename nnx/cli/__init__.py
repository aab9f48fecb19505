"""The ``nnx`` command: ``nnx info``, ``nnx train``, ``nnx bench``.

Each subcommand lives in its own module, which provides ``configure(parser)`` to add
its flags and ``run(args) -> int``. Errors a user can cause end as one sentence,
``nnx COMMAND: error: ...``, on stderr and exit status 2; Ctrl-C exits with 130
(:func:`nnx.cli.program.run_program`).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from nnx.cli.program import run_program

SUBCOMMANDS = {
    "info": ("nnx.cli.info", "show versions, devices and what --device auto picks"),
    "train": ("nnx.cli.train", "train the two-layer net on MNIST"),
    "bench": ("nnx.bench.gradients", "time backprop and numerical gradients on every device"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnx",
        description="The MNIST two-layer net of Deep Learning from Scratch on NumPy or CuPy.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=mod.__doc__.split("\n\n")[0])
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_program(lambda args: f"nnx {args.command}", build_parser(),
                       lambda args: args._run(args), argv)

