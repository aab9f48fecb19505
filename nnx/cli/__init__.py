"""The ``nnx`` command: ``info``, ``train``, ``gradcheck``, ``evaluate``, ``predict``, ``bench``.

Each subcommand lives in its own module, which provides ``configure(parser)`` to add
its flags and ``run(args) -> int``; only the module of the subcommand that runs is
imported. A package in the table (``nnx.bench``) has a table of its own, ``SUBCOMMANDS``,
and the one that runs when none is named, ``DEFAULT``. Errors a user can cause end as one
sentence, ``nnx COMMAND: error: ...``, on stderr and exit status 2; Ctrl-C exits with 130
(:func:`nnx.program.run_program`).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from nnx import stops

SUBCOMMANDS = {
    "info": ("nnx.cli.info", "show versions, devices and what --device auto picks"),
    "train": ("nnx.cli.train", "train the two-layer net on MNIST"),
    "gradcheck": ("nnx.cli.gradcheck", "compare backprop with numerical gradients (chapter 5)"),
    "bench": ("nnx.bench", "time gradients (the default) or the whole training run"),
    "evaluate": ("nnx.cli.evaluate", "per-class accuracy and figures of a trained run"),
    "predict": ("nnx.cli.predict", "classify PNG or JPEG images of digits with a trained run"),
    "search": ("nnx.cli.search", "the book's hyperparameter search (chapter 6) on Optuna"),
}


def nnx_version() -> str:
    """The installed distribution's version ("unknown" when run from an uninstalled tree)."""
    try:
        return version("nnx")
    except PackageNotFoundError:
        return "unknown"


def _words(argv: Sequence[str]) -> list[str]:
    """The words of ``argv`` before its first flag: the command and a subcommand."""
    words = []
    for a in argv:
        if a.startswith("-"):
            break
        words.append(a)
    return words


def _expand(argv: list[str], table: tuple[dict[str, tuple[str, str]], str] | None
            ) -> list[str]:
    """``argv`` with the default subcommand of ``table`` put in where none is named
    (``nnx bench --device cpu`` is ``nnx bench gradients --device cpu``)."""
    if table is None or (argv[1:2] and (argv[1] in table[0] or argv[1] in ("-h", "--help"))):
        return argv
    return [argv[0], table[1], *argv[1:]]


def _table(name: str) -> tuple[dict[str, tuple[str, str]], str] | None:
    """The subcommand table and default of the command ``name``, if it has them."""
    mod = importlib.import_module(SUBCOMMANDS[name][0])  # the module that runs, anyway
    return (mod.SUBCOMMANDS, mod.DEFAULT) if hasattr(mod, "SUBCOMMANDS") else None


def _plain(text: str) -> str:
    """A docstring's text without its reStructuredText markup, for ``--help``."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")


def _add(sub: argparse._SubParsersAction, table: dict[str, tuple[str, str]],
         chosen: list[str]) -> None:
    for name, (module, help_text) in table.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != (chosen[:1] or [None])[0]:
            continue
        mod = importlib.import_module(module)
        if hasattr(mod, "configure"):
            p.description = _plain(mod.__doc__.split("\n\n")[0])
            mod.configure(p)
            p.set_defaults(_run=mod.run)
        else:  # a package of subcommands
            inner = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            p.description = f"{help_text}; without a SUBCOMMAND, {mod.DEFAULT}"
            _add(inner, mod.SUBCOMMANDS, chosen[1:])


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; the flags of the subcommand named in ``argv`` (if any) are added."""
    parser = argparse.ArgumentParser(
        prog="nnx",
        description="The MNIST two-layer net of Deep Learning from Scratch on NumPy, CuPy "
        "or PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"nnx {nnx_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add(sub, SUBCOMMANDS, [w for w in argv if not w.startswith("-")][:2])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``nnx COMMAND ...``; returns the exit status.

    The stop signals are taken over first, before the subcommand's module (and NumPy) is
    imported, so a stop at any moment ends as ``nnx COMMAND: interrupted``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    words = _words(argv)
    name = f"nnx {words[0]}" if words and words[0] in SUBCOMMANDS else "nnx"
    try:
        with stops.raising():
            from nnx.program import run_program

            table = _table(words[0]) if name != "nnx" else None
            if table is not None and words[1:2] and words[1] in table[0]:
                name += f" {words[1]}"  # nnx bench training
            expanded = _expand(argv, table)
            parser = build_parser(expanded)
            parser.set_defaults(_argv=argv)  # the command as typed, for a record of it
            return run_program(name, parser, lambda args: args._run(args), expanded)
    except KeyboardInterrupt as exc:  # a stop while the program started
        return stops.interrupted(name, exc)
    except ImportError as exc:  # a module that cannot be mapped: no address space left
        if "failed to map segment" not in str(exc):
            raise
        print(f"{name}: error: out of memory ({exc}); give the process more memory",
              file=sys.stderr)
        return 2


def entry() -> NoReturn:
    """The ``nnx`` command's entry point: :func:`main`, then exit with its status."""
    stops.exit_after(main)
