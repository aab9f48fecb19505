"""A busy machine, made by the benchmark itself: another process keeping one core half busy.

A laptop is never idle (a browser, an indexer, the tests in another terminal). The burner
spins for 5 ms and sleeps for 5 ms, over and over, in a child process, from ``with`` until
the block ends, when it is stopped (and killed if it does not stop).
"""

from __future__ import annotations

import subprocess
import sys

from backends import usable_cores
from nnx.errors import InputError

SPIN = """
import time
while True:
    end = time.perf_counter() + {on}
    while time.perf_counter() < end:
        pass
    time.sleep({off})
"""


def check_cores() -> None:
    """``--busy`` loads one core besides the work: refuse a machine that has only one."""
    n = usable_cores()
    if n < 2:
        raise InputError(f"--busy keeps one core half busy beside the runs, and this process may "
                         f"use {n} core; run it on a machine with two or more, or drop --busy")


class Burner:
    """A child process using about ``share`` of one core while the ``with`` block runs."""

    def __init__(self, share: float = 0.5, period: float = 0.01) -> None:
        self.code = SPIN.format(on=share * period, off=(1 - share) * period)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Burner:
        self.proc = subprocess.Popen([sys.executable, "-c", self.code],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
