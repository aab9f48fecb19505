"""Errors a user can cause, and the validators that raise them.

Each message is one sentence saying what is wrong and what to do. The validators are the
one place arguments are checked for type and range; every module uses them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any


class NnxError(Exception):
    """Base class: the CLI prints the message and exits non-zero, without a traceback."""


class DataError(NnxError):
    """A data file is missing, corrupt, truncated or of the wrong kind."""


class InputError(NnxError, ValueError):
    """An argument has the wrong shape, range, dtype or device."""


class DivergenceError(NnxError):
    """Training produced a non-finite loss."""


def out_of_memory(exc: BaseException) -> str:
    """"out of memory (what failed to allocate)", from the library's message."""
    lines = str(exc).strip().splitlines()
    detail = lines[0].rstrip(".") if lines else ""
    if detail.lower().startswith("out of memory"):  # CuPy: "Out of memory allocating N bytes"
        return "out of memory" + detail[len("out of memory"):]
    return f"out of memory ({detail[:1].lower()}{detail[1:]})" if detail else "out of memory"


def plural(n: int, noun: str) -> str:
    """"1 run", "2 runs": a count and its noun, in the number it takes."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int if it is a positive integer (not a bool), else :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(name: str, value: Any, or_none: bool = False) -> int:
    """``value`` as an int if it is an integer >= 0 (not a bool), else :class:`InputError`;
    a seed is checked here, wherever it comes from."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        also = " or None" if or_none else ""
        raise InputError(f"{name} must be a non-negative integer{also}, got {value!r}")
    return int(value)


def positive_number(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite real number above zero, else :class:`InputError`."""
    x = _real(name, value)
    if not (x > 0 and math.isfinite(x)):
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    return x


def unit_interval(name: str, value: Any) -> float:
    """``value`` as a float if it lies in [0, 1), else :class:`InputError`."""
    x = _real(name, value)
    if not 0.0 <= x < 1.0:  # also rejects NaN
        raise InputError(f"{name} must be in [0, 1), got {value!r}")
    return x


def one_of(name: str, value: Any, options: Iterable[str]) -> str:
    """``value`` if it is one of ``options``, else :class:`InputError` listing them."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise InputError(f"unknown {name} {value!r}: expected one of {', '.join(options)}")
    return value


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}")
    return float(value)


def check_weight_decay(value: Any) -> float:
    """``value`` as a float if it is a finite number >= 0, else :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not (value >= 0 and math.isfinite(value)):
        raise InputError(f"weight decay must be a finite number >= 0, got {value!r}")
    return float(value)


def check_dropout(value: Any) -> float:
    """``value`` as a float if it lies in [0, 1), else :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0.0 <= value < 1.0:
        raise InputError(f"the dropout ratio must be in [0, 1), got {value!r}")
    return float(value)
