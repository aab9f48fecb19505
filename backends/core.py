"""The registry of backend classes, the one parser of device strings, and ``get_backend``.

Adding an array library is one module with a :class:`~backends.base.Backend` subclass and
one line in :data:`LIBRARIES`.
"""

from __future__ import annotations

import contextlib
import os
from types import ModuleType
from typing import Any

import array_api_compat

from backends import _cuda
from backends.base import Backend, BackendError, DeviceSpec, array_words
from backends.cupy_backend import CupyBackend
from backends.numpy_backend import NumPyBackend
from backends.strict_backend import StrictBackend
from backends.torch_backend import TorchBackend

# Every library nnx runs on. A device string's prefix picks one ("cuda:1" -> CuPy).
LIBRARIES: tuple[type[Backend], ...] = (NumPyBackend, CupyBackend, TorchBackend, StrictBackend)
# What "auto" tries, in order: the first that works is chosen.
AUTO: tuple[type[Backend], ...] = (CupyBackend, NumPyBackend)

ENV_VAR = "NNX_DEVICE"
ACCEPTED = "auto, " + ", ".join(cls.spelling for cls in LIBRARIES)


def parse_device(device: str | None) -> DeviceSpec:
    """Parse a device string; ``None``, empty or blank means "read NNX_DEVICE, else auto"."""
    if device is None or not str(device).strip():
        device = default_device()
    text = str(device).strip().lower()
    if text == "auto":
        return DeviceSpec("auto")
    prefix, sep, rest = text.partition(":")
    for cls in LIBRARIES:
        if prefix in cls.prefixes:
            spec = cls.parse(rest) if rest or not sep else None
            if spec is not None:
                return spec
            break
    raise BackendError(f"unknown device {device!r}: expected one of {ACCEPTED}")


def default_device() -> str:
    """The device used when none is given: $NNX_DEVICE if set and not blank, else "auto"."""
    value = os.environ.get(ENV_VAR, "")
    return value.strip() or "auto"


def library(name: str) -> type[Backend]:
    """The backend class registered as ``name``."""
    return next(cls for cls in LIBRARIES if cls.library == name)


def get_backend(device: str | Backend | None = None, dtype: Any = None) -> Backend:
    """The backend for a device string (see :data:`ACCEPTED`), or ``device`` itself in
    ``dtype`` when it already is one.

    ``None`` reads ``$NNX_DEVICE`` and falls back to "auto". "auto" picks CuPy only when it
    imports and a device answers, and records why in ``backend.reason``; "auto" and "cuda"
    mean cuda:0, never "whichever device is current", and making a backend leaves the
    current device alone. Asking for a device that does not work raises
    :class:`BackendError` naming the cause; it never falls back to the CPU.
    """
    if isinstance(device, Backend):
        return device.with_dtype(dtype)
    spec = parse_device(device)
    if spec.library != "auto":
        cls = library(spec.library)
        return cls.create(spec, dtype, f"asked for {cls.asked(spec)}")
    problems: list[str] = []
    for cls in AUTO:
        try:
            be = cls.create(cls.parse(""), dtype, "")
        except BackendError as exc:
            if cls is AUTO[-1]:  # the fallback itself refused: that is the user's fault to fix
                raise
            problems.append(str(exc))
            continue
        # The fact only: the fix of a problem is nnx info's to give, not every command's.
        why = problems[0].split("; ")[0] + " (nnx info says how to fix it)" if problems \
            else f"{be.device} answers its self-test"
        be.reason = f"auto chose {cls.asked(cls.parse(''))}: {why}"
        return be
    raise AssertionError("unreachable: the last of AUTO returns or raises")


def available(include_strict: bool = False) -> list[str]:
    """Devices that work on this machine: "cpu", "cuda:N" for each GPU CuPy drives, then
    PyTorch's devices when it is installed; "strict" on request."""
    devices = [d for cls in LIBRARIES if cls is not StrictBackend for d in cls.devices()]
    return devices + (["strict"] if include_strict else [])


def findings() -> dict[str, Any]:
    """What every library reports of itself for ``nnx info``."""
    out: dict[str, Any] = {}
    for cls in LIBRARIES:
        out.update(cls.findings())
    return out


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` means that some device (the host's included) ran out of memory."""
    return any(cls.out_of_memory(exc) for cls in LIBRARIES)


def describe_array(x: Any) -> str:
    """What ``x`` is and where it lives, for an error message."""
    for cls in LIBRARIES:
        words = cls.array_words(x)
        if words:
            return words
    return array_words(x)


_NAMESPACE_BY_TYPE: dict[type, ModuleType] = {}


def xp_of(x: Any) -> ModuleType:
    """The array namespace of one array, cached by its type: cheap enough for a hot loop."""
    try:
        return _NAMESPACE_BY_TYPE[type(x)]
    except KeyError:
        xp = array_api_compat.array_namespace(x)
        _NAMESPACE_BY_TYPE[type(x)] = xp
        return xp


def device_of(x: Any) -> Any:
    """The device of an array, as its namespace's ``device=`` keywords take it."""
    return array_api_compat.device(x)


def device_scope(x: Any) -> contextlib.AbstractContextManager[Any]:
    """A ``with`` block in which the device of array ``x`` is current (see
    :meth:`Backend.scope`): for code that has an array but no backend."""
    gpu = _cuda.array_device(x)
    return contextlib.nullcontext() if gpu is None else gpu
