"""The backend protocol: one device, its array namespace, and what the standard leaves out.

A :class:`Backend` subclass per array library (``numpy_backend``, ``strict_backend``,
``cupy_backend``, ``torch_backend``) implements it; :mod:`backends.core` holds the one
registry of them and parses device strings. The rest of nnx asks a backend about
capabilities (``is_gpu``, ``has_events``, ``float64``, ``numpy_native``, ``hardware``),
never about its library's name.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from backends.timing import HostTimer, IntervalTimer, time_calls


class BackendError(Exception):
    """A device or array problem a user can cause; the message is one sentence."""


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device string: the library (a registry key, or "auto"), the kind of device
    within it ("cpu", "cuda", "mps", ...) and its index when one was given."""

    library: str
    kind: str = ""
    index: int | None = None


class _NoChange:
    def __enter__(self) -> _NoChange:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def paused(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class Backend:
    """One device and the array namespace that computes on it.

    ``xp`` follows the Array API standard; the methods cover what it leaves out:
    host<->device moves, the current device, synchronisation, timing and memory. A
    subclass per library fills them in and says what it can do:

    - ``is_gpu``: arrays live in a GPU's memory (host memory is not what limits them);
    - ``has_events``: the device times intervals itself (``interval_timer`` never stalls it);
    - ``float64``: the device computes in float64;
    - ``numpy_native``: its arrays are NumPy arrays, so NumPy code may take them as they are;
    - ``hardware``: the machine's device it computes on, in one spelling for every library
      ("cpu", "cuda:0", "mps"), or None for a device that stands in for one.
    """

    library: ClassVar[str] = ""  # the registry key; for records and messages, not for branching
    prefixes: ClassVar[tuple[str, ...]] = ()  # the device strings' prefixes it answers to
    spelling: ClassVar[str] = ""  # the accepted spellings, for error messages and --help

    is_gpu: bool = False
    has_events: bool = False
    float64: bool = True
    numpy_native: bool = False
    hardware: str | None = "cpu"

    def __init__(self, device: str, xp: ModuleType, dtype: Any, reason: str = "",
                 array_device: Any = None) -> None:
        self.device = device  # "cpu", "cuda:N", "strict", "torch:cpu", "torch:cuda:N", ...
        self.xp = xp
        self.dtype = dtype  # the default floating dtype, an xp dtype
        self.reason = reason  # why this backend (what was asked, or what auto found)
        self.array_device = array_device  # the value for ``device=`` keywords

    # -- the registry's side: parsing and making ------------------------------------------
    @classmethod
    def parse(cls, kind: str) -> DeviceSpec | None:
        """The spec for what follows the prefix ("" when nothing does), or None if unknown."""
        return DeviceSpec(cls.library) if kind == "" else None

    @classmethod
    def asked(cls, spec: DeviceSpec) -> str:
        """The device of ``spec`` in words ("the CPU", "CUDA", "torch:mps")."""
        return f"{spec.library}:{spec.kind}" if spec.kind else spec.library

    @classmethod
    def create(cls, spec: DeviceSpec, dtype: Any, reason: str) -> Backend:
        """The backend for ``spec``; :class:`BackendError` (one sentence) if it cannot work."""
        raise NotImplementedError

    @classmethod
    def devices(cls) -> list[str]:
        """The devices of this library that work on this machine."""
        return []

    @classmethod
    def findings(cls) -> dict[str, Any]:
        """What ``nnx info`` reports of this library: versions, devices, problems."""
        return {}

    @classmethod
    def array_words(cls, x: Any) -> str | None:
        """``x`` in words ("a CuPy array on cuda:1") if it is this library's array, else None."""
        return None

    @classmethod
    def out_of_memory(cls, exc: BaseException) -> bool:
        """Whether ``exc``, raised by this library, means its device ran out of memory."""
        return False

    # -- dtypes ---------------------------------------------------------------------------
    def resolve_dtype(self, dtype: Any = None) -> Any:
        """Map ``None`` (the default), "float32"/"float64", NumPy or xp dtypes to an xp dtype."""
        if dtype is None:
            return self.dtype
        for name in ("float32", "float64"):
            if _is_dtype(dtype, name, getattr(self.xp, name)):
                if name == "float64" and not self.float64:
                    raise BackendError(f"{self.device} has no float64; use --dtype float32")
                return getattr(self.xp, name)
        raise BackendError(f"unsupported dtype {dtype!r}: expected 'float32' or 'float64'")

    def with_dtype(self, dtype: Any) -> Backend:
        """This backend with another default floating dtype (itself when ``dtype`` is None)."""
        if dtype is None:
            return self
        clone = copy.copy(self)
        clone.dtype = self.resolve_dtype(dtype)
        return clone

    # -- moving arrays ----------------------------------------------------------------------
    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Copy host data (NumPy arrays, lists, scalars) onto this device."""
        raise NotImplementedError

    def to_numpy(self, x: Any) -> np.ndarray:
        """A host NumPy array of an array of this backend (no copy where none is needed)."""
        raise NotImplementedError

    def owns(self, x: Any) -> bool:
        """Whether ``x`` is an array of this backend, on this device."""
        raise NotImplementedError

    def check(self, x: Any, what: str) -> None:
        """Raise a clear error if ``x`` is not an array on this backend's device."""
        if not self.owns(x):
            from backends.core import describe_array

            raise BackendError(
                f"{what} is {describe_array(x)}, but this computation runs on {self}; move it "
                "there with backend.asarray()"
            )

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """A ``with`` block in which this backend's device is the current one (CuPy makes
        arrays and runs kernels on its *current* device); elsewhere it does nothing."""
        return contextlib.nullcontext()

    # -- memory -------------------------------------------------------------------------------
    def memory_free(self) -> int:
        """Bytes a new allocation can take on this device: GPU memory, or the host's."""
        from backends.host import host_memory_free

        return host_memory_free()

    # -- threads ------------------------------------------------------------------------------
    def small_work(self, enabled: bool = True) -> Any:
        """A ``with`` block of small work (a training step's products), whose ``paused()``
        block is for large work inside it (an evaluation). What it changes is the
        library's: NumPy's BLAS runs small products on one thread. ``enabled=False``
        changes nothing (a step that is large work itself)."""
        return _NoChange()

    # -- time ---------------------------------------------------------------------------------
    def synchronize(self) -> None:
        """Wait until all queued work on the device is done (nothing to wait for on a CPU)."""

    def warm_up(self, fn: Callable[[], Any]) -> None:
        """Pay the device's one-time costs (library handles, first kernel compilations) by
        running ``fn`` once, untimed, before the work is timed, on a GPU; a CPU has no such
        costs worth a call."""
        if self.is_gpu:
            with self.scope():
                fn()
            self.synchronize()

    def time(self, fn: Callable[[], Any], repeat: int = 10, warmup: int = 2) -> np.ndarray:
        """Seconds per call of ``fn``: warm-up first, then ``repeat`` timed calls.

        The device is synchronised around each call, so the figure is the time the work
        took, not the time it took to queue it.
        """
        return time_calls(fn, repeat, warmup, sync=self.synchronize)

    def interval_timer(self) -> IntervalTimer:
        """A timer for many short intervals.

        With device events each interval is a pair of events on the device's stream, read
        back by ``drain``: the device's time between them, which includes any time it sat
        idle waiting for the host to launch work, and the device never waits for a reading.
        Otherwise it is the wall clock, the device synchronised at each end.
        """
        return HostTimer()

    # -- words --------------------------------------------------------------------------------
    def describe(self) -> str:
        """The device in words for a benchmark's record: the hardware and library versions."""
        return str(self)

    def __str__(self) -> str:
        return f"{self.device} ({self.library})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.device} {_dtype_name(self.dtype)}>"

    # A backend is a value: equal when it is the same library, device and dtype.
    def _key(self) -> tuple[Any, ...]:
        return type(self), self.device, _dtype_name(self.dtype)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Backend) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def _dtype_name(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def _is_dtype(dtype: Any, name: str, xp_dtype: Any) -> bool:
    if isinstance(dtype, str):
        return dtype == name
    if dtype is xp_dtype or (type(dtype) is type(xp_dtype) and dtype == xp_dtype):
        return True
    try:
        return np.dtype(dtype) == np.dtype(name)
    except TypeError:
        return False


def array_words(x: Any) -> str:
    """Any array in words, from what the Array API says of it (the fallback)."""
    if hasattr(x, "__array_namespace__"):
        import array_api_compat

        try:
            return f"an array on {array_api_compat.device(x)}"
        except (TypeError, AttributeError):
            return f"an array of type {type(x).__module__}.{type(x).__name__}"
    return f"a {type(x).__name__}, not an array"
