"""The backend value: a device, its array namespace, and what the standard leaves out."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from backends import _cuda
from backends.host import host_memory_free

ENV_VAR = "NNX_DEVICE"
ACCEPTED = "auto, cpu (or numpy), cuda, cuda:N (or gpu, gpu:N), strict"


class BackendError(Exception):
    """A device or array problem a user can cause; the message is one sentence."""


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device string: kind is "auto", "cpu", "cuda" or "strict"."""

    kind: str
    index: int | None = None


def parse_device(device: str | None) -> DeviceSpec:
    """Parse a device string; ``None``, empty or blank means "read NNX_DEVICE, else auto"."""
    if device is None or not str(device).strip():
        device = default_device()
    text = str(device).strip().lower()
    if text in ("auto",):
        return DeviceSpec("auto")
    if text in ("cpu", "numpy"):
        return DeviceSpec("cpu")
    if text == "strict":
        return DeviceSpec("strict")
    kind, sep, index = text.partition(":")
    if kind in ("cuda", "gpu", "cupy"):
        if not sep:
            return DeviceSpec("cuda")
        if index.isdigit():
            return DeviceSpec("cuda", int(index))
    raise BackendError(f"unknown device {device!r}: expected one of {ACCEPTED}")


def default_device() -> str:
    """The device used when none is given: $NNX_DEVICE if set and not blank, else "auto"."""
    value = os.environ.get(ENV_VAR, "")
    return value.strip() or "auto"


@dataclass(frozen=True)
class Backend:
    """One device and the array namespace that computes on it.

    ``xp`` follows the Array API standard; the methods cover what it leaves out:
    host<->device moves, synchronisation and timing.
    """

    name: str  # "numpy", "cupy" or "strict"
    device: str  # "cpu", "cuda:N" or "strict"
    xp: ModuleType
    dtype: Any  # default floating dtype, an xp dtype
    reason: str = ""
    array_device: Any = field(default=None, repr=False)  # the value for ``device=`` keywords

    # -- dtypes ---------------------------------------------------------------
    def resolve_dtype(self, dtype: Any = None) -> Any:
        """Map ``None`` (the default), "float32"/"float64", NumPy or xp dtypes to an xp dtype."""
        if dtype is None:
            return self.dtype
        for name in ("float32", "float64"):
            if _is_dtype(dtype, name, getattr(self.xp, name)):
                return getattr(self.xp, name)
        raise BackendError(f"unsupported dtype {dtype!r}: expected 'float32' or 'float64'")

    # -- moving arrays ----------------------------------------------------------
    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Copy host data (NumPy arrays, lists, scalars) onto this device."""
        if self.name == "numpy":
            return np.asarray(x, dtype=None if dtype is None else self.resolve_dtype(dtype))
        if self.name == "cupy":  # on this device, whichever one is current
            return _cuda.asarray(self._gpu, x, None if dtype is None else self.resolve_dtype(dtype))
        if not isinstance(x, self.xp._array_object.Array):
            x = np.asarray(x)
        return self.xp.asarray(
            x, dtype=None if dtype is None else self.resolve_dtype(dtype), device=self.array_device
        )

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy an array of this backend to a host NumPy array."""
        self.check(x, "array")
        if self.name == "numpy":
            return np.asarray(x)
        if self.name == "cupy":
            return _cuda.to_host(x)
        return np.asarray(x.to_device(self.xp.Device("CPU_DEVICE")))

    def owns(self, x: Any) -> bool:
        """Whether ``x`` is an array of this backend, on this device."""
        if self.name == "numpy":
            return isinstance(x, (np.ndarray, np.generic))  # reductions return NumPy scalars
        if self.name == "cupy":
            return isinstance(x, self.xp.ndarray) and _cuda.device_index(x) == self._gpu
        return isinstance(x, self.xp._array_object.Array) and x.device == self.array_device

    def check(self, x: Any, what: str) -> None:
        """Raise a clear error if ``x`` is not an array on this backend's device."""
        if not self.owns(x):
            raise BackendError(
                f"{what} is {_describe(x)}, but this computation runs on {self.device} "
                f"({self.name}); move it there with backend.asarray()"
            )

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """A ``with`` block in which this backend's device is the current one.

        CuPy makes arrays and runs kernels on its *current* device; on NumPy and
        array-api-strict this does nothing.
        """
        if self.name == "cupy":
            return self.array_device  # a cupy.cuda.Device is a context manager
        return contextlib.nullcontext()

    # -- memory ---------------------------------------------------------------
    def memory_free(self) -> int:
        """Bytes a new allocation can take on this device: GPU memory, or the host's."""
        if self.name == "cupy":
            return _cuda.memory_free(self._gpu)
        return host_memory_free()

    # -- time -----------------------------------------------------------------
    def synchronize(self) -> None:
        """Wait until all queued work on the device is done (no-op on CPU)."""
        if self.name == "cupy":
            _cuda.synchronize(self._gpu)

    def time(self, fn: Callable[[], Any], repeat: int = 10, warmup: int = 2) -> np.ndarray:
        """Seconds per call of ``fn``: warm-up first, then ``repeat`` timed calls.

        On CUDA the device is synchronised around each call, so the figure is the
        time the work took, not the time it took to queue it.
        """
        for _ in range(warmup):
            fn()
        self.synchronize()
        times = np.empty(repeat)
        for i in range(repeat):
            start = time.perf_counter()
            fn()
            self.synchronize()
            times[i] = time.perf_counter() - start
        return times

    def interval_timer(self) -> IntervalTimer:
        """A timer for many short intervals that never stalls the device between them.

        On CUDA each interval is a pair of events on the device's stream, read back by
        ``drain``: GPU time between them, which includes any time the GPU sat idle waiting
        for the host to launch work. On CPU it is the wall clock (the work is done when the
        call returns).
        """
        if self.name == "cupy":
            return _cuda.EventTimer(self._gpu)
        return _HostTimer()

    @property
    def _gpu(self) -> int:
        return _index(self.device) or 0

    def __str__(self) -> str:
        return f"{self.device} ({self.name})"


class IntervalTimer:
    """``start()``/``stop()`` around each interval; ``drain()`` returns their seconds."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def drain(self) -> list[float]: ...


class _HostTimer(IntervalTimer):
    def __init__(self) -> None:
        self._t0 = 0.0
        self._times: list[float] = []

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self._times.append(time.perf_counter() - self._t0)

    def drain(self) -> list[float]:
        times, self._times = self._times, []
        return times


def _is_dtype(dtype: Any, name: str, xp_dtype: Any) -> bool:
    if isinstance(dtype, str):
        return dtype == name
    if dtype is xp_dtype:
        return True
    try:
        return np.dtype(dtype) == np.dtype(name)
    except TypeError:
        return False


def _index(device: str) -> int | None:
    _, _, index = device.partition(":")
    return int(index) if index else None


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return "a NumPy array on the host"
    gpu = _cuda.array_device(x)
    if gpu is not None:
        return f"a CuPy array on cuda:{gpu.id}"
    if hasattr(x, "__array_namespace__"):
        try:
            return f"an array on {array_api_compat.device(x)}"
        except (TypeError, AttributeError):
            return f"an array of type {type(x).__module__}.{type(x).__name__}"
    return f"a {type(x).__name__}, not an array"


def _numpy_backend(dtype: Any, reason: str) -> Backend:
    import array_api_compat.numpy as xp

    be = Backend("numpy", "cpu", xp, xp.float64, reason, array_device="cpu")
    return _with_dtype(be, dtype)


def _strict_backend(dtype: Any) -> Backend:
    import array_api_strict as xp

    device = xp.Device("device1")
    be = Backend(
        "strict", "strict", xp, xp.float64, "array-api-strict on its non-CPU device", device
    )
    return _with_dtype(be, dtype)


def _cupy_backend(index: int | None, dtype: Any, reason: str) -> Backend:
    xp, idx = _cuda.namespace(index)
    be = Backend("cupy", f"cuda:{idx}", xp, xp.float64, reason, array_device=_cuda.device(idx))
    return _with_dtype(be, dtype)


def _with_dtype(be: Backend, dtype: Any) -> Backend:
    if dtype is None:
        return be
    return Backend(be.name, be.device, be.xp, be.resolve_dtype(dtype), be.reason, be.array_device)


def get_backend(device: str | Backend | None = None, dtype: Any = None) -> Backend:
    """The backend for a device string.

    ``device`` is "cpu"/"numpy", "cuda"/"gpu"/"cuda:N", "auto" or "strict"; ``None`` reads
    ``$NNX_DEVICE`` and falls back to "auto". "auto" picks CuPy only when it imports and a
    device answers, and records why in ``backend.reason``; "auto" and "cuda" mean cuda:0,
    never "whichever device is current", and making a backend leaves the current device
    alone. Asking for CUDA where there is none raises :class:`BackendError` naming the
    cause; it never falls back to the CPU.
    """
    if isinstance(device, Backend):
        return _with_dtype(device, dtype)
    spec = parse_device(device)
    if spec.kind == "cpu":
        return _numpy_backend(dtype, "asked for the CPU")
    if spec.kind == "strict":
        return _strict_backend(dtype)
    if spec.kind == "cuda":
        problem = _cuda.problem(spec.index)
        if problem:
            raise BackendError(problem)
        return _cupy_backend(spec.index, dtype, "asked for CUDA")
    problem = _cuda.problem(None)
    if problem:
        return _numpy_backend(dtype, f"auto chose the CPU: {problem}")
    return _cupy_backend(None, dtype, "auto chose CUDA: CuPy imports and cuda:0 answers")


def available(include_strict: bool = False) -> list[str]:
    """Devices that work on this machine: "cpu", then "cuda:N" for each GPU that answers."""
    devices = ["cpu"] + [f"cuda:{i}" for i in _cuda.working_devices()]
    if include_strict:
        devices.append("strict")
    return devices


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
