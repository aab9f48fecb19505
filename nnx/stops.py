"""Stop signals: SIGINT (Ctrl-C), SIGTERM (``docker stop``, ``kill``), SIGHUP (a closed
terminal).

Each stops a program as Ctrl-C does, with exit status 128 + the signal's number (130,
143, 129) and the line ``PROG: interrupted``. This module imports nothing heavy, so that
``nnx`` can take over the signals before it imports NumPy: a stop during the start-up
is as clean as a stop during the work, and a stop while the interpreter exits after the
work changes nothing (:func:`exit_after`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn

SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                if hasattr(signal, n))


class Stopped(KeyboardInterrupt):
    """A stop signal, raised where the program can end cleanly."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


class Stops:
    """The stop signals received inside :func:`deferred` (``signum``: the first)."""

    signum: int | None = None

    def requested(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """A safe point: raise :class:`Stopped` if a stop came."""
        if self.signum is not None:
            raise Stopped(self.signum)


@contextlib.contextmanager
def _handlers(handler: Callable[[int, object], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only
        return
    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


_received: list[int] = []  # stops raised by raising(), delivered or not


def _raise(signum: int, _frame: object) -> None:
    _received.append(signum)
    raise Stopped(signum)


def swallowed() -> int | None:
    """The first stop that :func:`raising` raised, if any: a program that ends normally
    after one had it discarded (Python ignores an exception raised inside a finalizer or a
    weakref callback, "Exception ignored in ..."), and must still end as stopped."""
    return _received[0] if _received else None


def raising() -> contextlib.AbstractContextManager[None]:
    """Inside the block a stop signal raises :class:`Stopped` (a ``KeyboardInterrupt``);
    :func:`swallowed` says afterwards whether one came (anything noted before is forgotten)."""
    _received.clear()
    return _handlers(_raise)


@contextlib.contextmanager
def deferred(doing: str = "finishing the current step and saving") -> Iterator[Stops]:
    """Inside the block a stop signal is only noted (the work polls ``requested()``, e.g.
    between training iterations, or calls ``check()`` at its safe points, and saves are never
    cut short), with the line "stopping: DOING"; at its end a noted stop is raised as
    :class:`Stopped`."""
    stops = Stops()

    def note(signum: int, _frame: object) -> None:
        if stops.signum is None:
            stops.signum = signum
            print(f"stopping: {doing}", file=sys.stderr)

    with _handlers(note):
        yield stops
    if stops.signum is not None:
        raise Stopped(stops.signum)


def interrupted(name: str, exc: KeyboardInterrupt) -> int:
    """Report a stop as ``NAME: interrupted``; the exit status, 128 + the signal's number."""
    print(f"{name}: interrupted", file=sys.stderr)
    return 128 + getattr(exc, "signum", signal.SIGINT)


def exit_after(main: Callable[..., int], *args: object, **kwargs: object) -> NoReturn:
    """Run a program's ``main(*args, **kwargs)`` and end the process with its status.

    The work is over then and its status decided, so stop signals are ignored from there
    on: one that came while the interpreter exits (joining threads, running ``atexit``)
    would otherwise kill it with no word and another status.
    """
    try:
        status: int | str | None = main(*args, **kwargs)
    except SystemExit as exc:  # argparse's --help and usage errors
        status = exc.code
    finally:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
    sys.exit(status)
