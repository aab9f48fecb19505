"""What every program of this project does around its work: flags, exit codes, outputs.

A program (``nnx <command>``, a benchmark, a script) builds an ``argparse`` parser and a
``run(args) -> int``, and hands both to :func:`run_program`. Errors a user can cause
(:class:`~nnx.errors.NnxError`, :class:`~backends.BackendError`, an ``OSError`` such as
a full disk, running out of host or device memory) end as one line ``PROG: error: ...``
on stderr and exit status 2; Ctrl-C ends as ``PROG: interrupted`` and 130, SIGTERM and
SIGHUP as 143 and 129 (:mod:`nnx.stops`). Output that cannot be written never stops the
work (:class:`GuardedStdout`): a closed pipe (``nnx train | head``) ends the program, once
its work is done and saved, with 141 as a SIGPIPE ends the usual tools, and no word; any
other failure of stdout (``/dev/full``) with one line and 2. The ``add_*`` helpers add the
flags that several programs share, with one spelling and one help text. ``nnx.cli`` and
``nnx.bench`` both use this module, and neither imports the other.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from signal import SIGPIPE
from typing import TextIO

from backends import BackendError, is_out_of_memory
from nnx import errors, stops
from nnx.errors import InputError, NnxError, out_of_memory
from nnx.optimizers import OPTIMIZERS, Optimizer, hyperparameters_of, make_optimizer

Run = Callable[[argparse.Namespace], "int | None"]

def run_program(
    prog: str | Callable[[argparse.Namespace], str] | None,
    parser: argparse.ArgumentParser,
    run: Run,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), call ``run(args)`` and return the exit status.

    ``prog`` names the program in error lines: a string, a function of the parsed
    arguments (``nnx train``), or ``None`` for ``parser.prog``. Bad flags are argparse's
    (usage line, exit 2); ``run``'s return value ``None`` counts as 0.
    """
    args = parser.parse_args(argv)
    name = prog(args) if callable(prog) else (prog or parser.prog)
    with guarded_stdout() as stdout:
        status = _run(name, run, args)
    if stdout.error is None or status != 0:
        return status
    if stdout.error.errno == errno.EPIPE:  # the reader went away (nnx train | head)
        return 128 + SIGPIPE
    why = stdout.error.strerror or stdout.error
    print(f"{name}: error: cannot write to standard output ({why}), so what it had to say "
          "was lost; the work itself is done", file=sys.stderr)
    return 2


def _run(name: str, run: Run, args: argparse.Namespace) -> int:
    try:
        with stops.raising():
            status = int(run(args) or 0)
        if status == 0 and (signum := stops.swallowed()) is not None:  # never lost
            raise stops.Stopped(signum)
        return status
    except (NnxError, BackendError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt as exc:  # Ctrl-C, or a stop signal
        return stops.interrupted(name, exc)
    except Exception as exc:  # MemoryError, CuPy's cuBLAS and CUDA errors, PyTorch's OOM
        if not (is_out_of_memory(exc) or mapping_failed(exc)):
            raise
        print(f"{name}: error: {out_of_memory(exc)}; try smaller sizes", file=sys.stderr)
    return 2


class GuardedStdout:
    """``stdout`` whose failures never reach the program: the first write or flush that
    fails (a closed pipe, a full disk, ``/dev/full``) is kept in ``error``, the file
    descriptor is pointed at the null device (so no later flush, the interpreter's own at
    exit included, fails again), and everything after it is dropped."""

    def __init__(self, stream: TextIO) -> None:
        self._stream, self.error = stream, None  # type: OSError | None

    def write(self, text: str) -> int:
        if self.error is None:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._lost(exc)
        return len(text)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lost(exc)

    def _lost(self, exc: OSError) -> None:
        self.error = exc
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()  # what its buffer still holds goes there

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_stdout() -> Iterator[GuardedStdout]:
    """``sys.stdout`` as a :class:`GuardedStdout` for the block, flushed at its end: output
    that cannot be written never costs a program its work."""
    real = sys.stdout
    guard = GuardedStdout(real)
    sys.stdout = guard  # type: ignore[assignment]
    try:
        yield guard
    finally:
        guard.flush()
        sys.stdout = real


def mapping_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is an import that failed for want of address space ("failed to map
    segment from shared object"): out of memory, as a ``MemoryError`` is."""
    return isinstance(exc, ImportError) and "failed to map segment" in str(exc)


# -- shared flags ---------------------------------------------------------------------------
def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: one device string, ``None`` when not given (``$NNX_DEVICE``, else auto)."""
    parser.add_argument("--device", default=None, metavar="DEV",
                        help="auto (default, or $NNX_DEVICE), cpu, cuda, cuda:N, torch:cpu, "
                        "torch:cuda[:N], torch:mps or strict")


def add_out_argument(parser: argparse.ArgumentParser, default: str | os.PathLike[str] | None,
                     what: str = "outputs", shown: str = "") -> None:
    """``--out DIR`` (a :class:`~pathlib.Path`), the directory for the program's files;
    ``default`` None leaves it to the program (``shown`` says what it picks)."""
    parser.add_argument("--out", type=Path, default=None if default is None else Path(default),
                        metavar="DIR", help=f"directory for the {what} "
                        f"(default: {shown or default})")


def add_dtype_argument(parser: argparse.ArgumentParser, what: str = "the net") -> None:
    """``--dtype float64|float32`` (default float64, the book's precision)."""
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help=f"floating dtype of {what} (default: float64)")


def add_seed_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--seed N``: a non-negative integer (default 0) seeding ``what``."""
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                        help=f"seed of {what} (default: 0)")


def non_negative_int(text: str) -> int:
    """An argparse ``type``: an integer >= 0 (argparse reports anything else)."""
    try:
        return errors.non_negative_int("value", int(text))
    except ValueError:  # not an integer, or an InputError (a ValueError) for one below 0
        shown = text if text.strip().lstrip("+-").isdigit() else repr(text)
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {shown}") \
            from None


def add_hidden_argument(parser: argparse.ArgumentParser, default: Sequence[int],
                        help_text: str) -> None:
    """``--hidden UNITS [UNITS ...]``: hidden layer sizes, spelled one way in every program
    (``--hidden 100 100``; the flag given again adds sizes, ``--hidden 100 --hidden 100``)."""
    parser.add_argument("--hidden", type=int, nargs="+", action=_Sizes, default=list(default),
                        metavar="UNITS", help=help_text)


class _Sizes(argparse.Action):
    """Sizes of every ``--hidden`` given, in order; the default only when none is."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        given = getattr(namespace, "_given_" + self.dest, False)
        before = list(getattr(namespace, self.dest)) if given else []
        setattr(namespace, self.dest, before + list(values))  # type: ignore[call-overload]
        setattr(namespace, "_given_" + self.dest, True)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--no-download``, for :func:`nnx.mnist.load_mnist`."""
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="directory with the MNIST files (default: $NNX_DATA_DIR, "
                        "else the user cache)")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading missing MNIST files")


def hyper_flags() -> dict[str, list[str]]:
    """Each hyper-parameter other than the rate that some optimizer's constructor takes,
    and the optimizers that take it: one ``--NAME`` flag each."""
    flags: dict[str, list[str]] = {}
    for name, cls in OPTIMIZERS.items():
        for hyper in hyperparameters_of(cls):
            if hyper != "lr":
                flags.setdefault(hyper, []).append(name)
    return flags


def add_hyper_arguments(parser: argparse.ArgumentParser) -> None:
    """``--momentum``, ``--beta1``, ...: one flag for each of :func:`hyper_flags`."""
    for hyper, takers in hyper_flags().items():
        defaults = {hyperparameters_of(OPTIMIZERS[n])[hyper] for n in takers}
        shown = " or ".join(f"{d:g}" for d in sorted(defaults))
        parser.add_argument(f"--{hyper.replace('_', '-')}", type=float, default=None,
                            help=f"{hyper} of {' and '.join(takers)} (default: {shown})")


def hyper_from_args(args: argparse.Namespace, optimizer: str | None = None) -> dict[str, float]:
    """The hyper-parameter flags given, those ``optimizer`` takes (all, if None)."""
    wanted = hyper_flags() if optimizer is None else hyperparameters_of(OPTIMIZERS[optimizer])
    return {k: getattr(args, k) for k in wanted
            if k != "lr" and getattr(args, k, None) is not None}


def add_optimizer_arguments(parser: argparse.ArgumentParser, default: Sequence[str],
                            default_lr: str) -> None:
    """``--optimizer NAME`` (repeatable), ``--lr [NAME=]VALUE`` (repeatable), and the
    hyper-parameter flags (:func:`add_hyper_arguments`).

    ``default_lr`` says in the help which rates apply when ``--lr`` is not given.
    """
    a = parser.add_argument
    a("--optimizer", action="append", metavar="NAME",
      help=f"an optimizer (repeatable; one of {', '.join(OPTIMIZERS)}; "
      f"default: {' '.join(default)})")
    a("--lr", action="append", default=[], metavar="[NAME=]VALUE",
      help=f"learning rate of every optimizer, or NAME=VALUE of one (repeatable; "
      f"default: {default_lr})")
    add_hyper_arguments(parser)


def optimizers_from_args(args: argparse.Namespace, default: Sequence[str],
                         default_lr: Mapping[str, float] | None = None) -> list[Optimizer]:
    """The optimizers the flags of :func:`add_optimizer_arguments` ask for, validated.

    Rates come from ``--lr`` (a bare VALUE sets every optimizer, NAME=VALUE one), else
    from ``default_lr``, else the optimizer's own default; each hyper-parameter flag
    applies to the optimizers that take it. Raises :class:`InputError`.
    """
    names = [n.strip().lower() for n in (args.optimizer or default)]
    for n in names:
        if n not in OPTIMIZERS:
            make_optimizer(n)  # raises the library's one-sentence error listing the names
    rates = _rates(args.lr, names, default_lr or {})
    return [make_optimizer(n, lr=rates[n], **hyper_from_args(args, n)) for n in names]


def _rates(specs: Sequence[str], names: list[str],
           default_lr: Mapping[str, float]) -> dict[str, float | None]:
    rates: dict[str, float | None] = {n: default_lr.get(n) for n in names}
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
            raise InputError(f"--lr {spec} names {name!r}, which is not among the optimizers "
                             f"chosen ({', '.join(names)})")
        rates[name] = value
    return rates
