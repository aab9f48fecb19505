"""A stand-in for CuPy 14, for proving the GPU code paths on a machine without a GPU.

It mirrors the part of CuPy's API that ``backends/_cuda.py`` uses, with what each call
does on a real machine (checked against CuPy 14.2's docstrings and user guide):

- ``cuda.runtime``: ``getDeviceCount`` (raises ``CUDARuntimeError`` for no driver, a
  driver too old for the runtime, or no device), ``getDevice``, ``driverGetVersion``
  (0 without a driver), ``runtimeGetVersion``, ``getDeviceProperties``, ``memGetInfo``
  (of the current device);
- ``cuda.Device(i)``: a context manager that makes ``i`` current and restores the old
  one, ``.use()``, ``.id``, ``.synchronize()``; ``Device(None)`` is the current device;
  it accepts a Device (and here an array-api-strict device) and keeps its id;
- ``cuda.Event``: made on the current device, ``record()`` on the current stream (the
  event's device must be current, as in CUDA), ``synchronize()``;
  ``cuda.get_elapsed_time`` in milliseconds, refused until the events are done;
- ``get_default_memory_pool()``: ``free_bytes``/``used_bytes``/``get_limit`` of the
  current device (0: no limit).

Its array namespace (``xp``) is array-api-strict with CuPy's device semantics: cuda:0
and cuda:1 are strict's ``device1`` and ``device2`` (whose arrays refuse to be mixed);
creation functions put arrays on the *current* device whatever ``device=`` says, except
``asarray``, which honours ``device=`` as array-api-compat 1.16's CuPy wrapper does
(``with cp.cuda.Device(device)``); and any operation on an array of another device than
the current one raises CuPy's ``ValueError: Array device must be same as the current
device``. :func:`activate` installs it in ``backends._cuda`` for one test.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Any

import array_api_strict as strict
import numpy as np

Array = strict._array_object.Array
STRICT_DEVICES = (strict.Device("device1"), strict.Device("device2"))

# CUDA's codes and messages, as CuPy's CUDARuntimeError formats them.
ERRORS = {
    35: ("cudaErrorInsufficientDriver",
         "CUDA driver version is insufficient for CUDA runtime version"),
    2: ("cudaErrorMemoryAllocation", "out of memory"),
    100: ("cudaErrorNoDevice", "no CUDA-capable device is detected"),
    101: ("cudaErrorInvalidDevice", "invalid device ordinal"),
    400: ("cudaErrorInvalidResourceHandle", "invalid resource handle"),
    600: ("cudaErrorNotReady", "device not ready"),
}


class CUDARuntimeError(RuntimeError):
    """Like ``cupy_backends.cuda.api.runtime.CUDARuntimeError``: a status and its name."""

    def __init__(self, status: int) -> None:
        self.status = status
        name, text = ERRORS[status]
        super().__init__(f"{name}: {text}")


class StandInCupy(types.ModuleType):
    """A fake ``cupy`` module; every instance is one machine.

    ``devices``: GPUs present; ``driver``: the CUDA version the driver supports (0: no
    driver); ``runtime``: the CUDA version CuPy was built with (a driver below it is
    "insufficient"); ``broken``: devices whose kernels fail; ``wrong``: devices whose
    kernels compute wrong values; ``no_cublas``: CuPy installed without its ``[ctk]``
    libraries (kernels compile, the first matrix product cannot load cuBLAS);
    ``first_kernel_ms``: GPU time each kernel takes at its first call on a device (its
    compilation, and the library handle a first matrix product makes).
    """

    def __init__(self, devices: int = 2, driver: int = 13000, runtime: int = 13000,
                 broken: tuple[int, ...] = (), wrong: tuple[int, ...] = (),
                 no_cublas: bool = False, first_kernel_ms: float = 0.0) -> None:
        super().__init__("cupy")
        self.__version__ = "14.2.0"
        self.n_devices, self.driver, self.runtime_version = devices, driver, runtime
        self.broken, self.wrong = set(broken), set(wrong)
        self.no_cublas, self.first_kernel_ms, self.started = no_cublas, first_kernel_ms, set()
        self.current = 0
        self.clock = [0.0] * max(devices, 1)  # GPU time (ms) of each device's stream
        self.synced: list[int] = []  # the devices whose stream or whole device was waited on
        self.recorded: list[Any] = []  # events, in the order they were recorded
        self.mem = {i: (8 << 30, 16 << 30) for i in range(devices)}  # (free, total)
        self.pools = {i: _Pool() for i in range(devices)}
        self.ndarray = Array
        self.cuda = types.SimpleNamespace(
            runtime=_Runtime(self), Device=_device_class(self), Event=_event_class(self),
            get_elapsed_time=self._elapsed, get_current_stream=self._stream,
        )
        self.xp = _namespace(self)

    # -- what the tests look at and set ---------------------------------------------
    def advance(self, device: int, ms: float) -> None:
        """Let ``ms`` milliseconds of GPU time pass on ``device``'s stream."""
        self.clock[device] += ms

    def check_usable(self) -> None:
        """Raise as CUDA does when no driver, or one too old, stands behind the runtime."""
        if self.driver < self.runtime_version:
            raise CUDARuntimeError(35)
        if self.n_devices == 0:
            raise CUDARuntimeError(100)

    def check_current(self, *arrays: Any) -> None:
        """CuPy's kernels refuse arrays that are not on the current device."""
        for a in arrays:
            if isinstance(a, Array) and STRICT_DEVICES.index(a.device) != self.current:
                raise ValueError(
                    "Array device must be same as the current device: array device = "
                    f"{STRICT_DEVICES.index(a.device)} while current = {self.current}"
                )

    # -- cupy.* ---------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:  # cupy.arange, cupy.float64, ...: the namespace's
        if name.startswith("__") or "xp" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["xp"], name)

    def get_default_memory_pool(self) -> _Pool:
        self.check_usable()
        return _PoolView(self)

    def asnumpy(self, a: Any) -> np.ndarray:
        return np.asarray(a.to_device(strict.Device("CPU_DEVICE")))  # from a's own device

    def _elapsed(self, start: Any, end: Any) -> float:
        if not (start.done and end.done):
            raise CUDARuntimeError(600)
        if start.device != end.device:
            raise CUDARuntimeError(400)
        return end.time - start.time

    def _stream(self, device_id: int = -1) -> Any:
        self.check_usable()
        index = self.current if device_id < 0 else device_id
        return types.SimpleNamespace(synchronize=lambda: self.synced.append(index))


class _Pool:
    def __init__(self) -> None:
        self.free, self.used, self.limit = 0, 0, 0


class _PoolView:
    """``cupy.get_default_memory_pool()``: it answers for the current device."""

    def __init__(self, cupy: StandInCupy) -> None:
        self._cupy = cupy

    def _pool(self) -> _Pool:
        return self._cupy.pools[self._cupy.current]

    def free_bytes(self) -> int:
        return self._pool().free

    def used_bytes(self) -> int:
        return self._pool().used

    def get_limit(self) -> int:
        return self._pool().limit


class _Runtime:
    def __init__(self, cupy: StandInCupy) -> None:
        self._cupy = cupy
        self.CUDARuntimeError = CUDARuntimeError

    def getDeviceCount(self) -> int:  # noqa: N802 (CuPy's names)
        self._cupy.check_usable()
        return self._cupy.n_devices

    def getDevice(self) -> int:  # noqa: N802
        self._cupy.check_usable()
        return self._cupy.current

    def driverGetVersion(self) -> int:  # noqa: N802
        return self._cupy.driver

    def runtimeGetVersion(self) -> int:  # noqa: N802
        return self._cupy.runtime_version

    def getDeviceProperties(self, index: int) -> dict[str, Any]:  # noqa: N802
        self._cupy.check_usable()
        if not 0 <= index < self._cupy.n_devices:
            raise CUDARuntimeError(101)
        return {"name": f"Stand-in GPU {index}".encode(), "totalGlobalMem": 16 << 30,
                "major": 9, "minor": 0}

    def memGetInfo(self) -> tuple[int, int]:  # noqa: N802
        self._cupy.check_usable()
        return self._cupy.mem[self._cupy.current]


def _device_class(cupy: StandInCupy) -> type:
    class Device:
        """``cupy.cuda.Device``: equal by id and unhashable, as CuPy's is."""

        def __init__(self, device: Any = None) -> None:
            if device is None:
                device = cupy.cuda.runtime.getDevice()
            elif isinstance(device, Device):
                device = device.id
            elif isinstance(device, strict.Device):
                device = STRICT_DEVICES.index(device)
            self.id = int(device)
            self._previous: list[int] = []

        def use(self) -> None:
            cupy.check_usable()
            if not 0 <= self.id < cupy.n_devices:
                raise CUDARuntimeError(101)
            cupy.current = self.id

        def synchronize(self) -> None:
            cupy.check_usable()
            cupy.synced.append(self.id)

        def __enter__(self) -> Device:
            self._previous.append(cupy.cuda.runtime.getDevice())
            self.use()
            return self

        def __exit__(self, *exc: object) -> None:
            cupy.current = self._previous.pop()

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Device) and other.id == self.id

        __hash__ = None  # type: ignore[assignment]

        def __repr__(self) -> str:
            return f"<CUDA Device {self.id}>"

    return Device


def _event_class(cupy: StandInCupy) -> type:
    class Event:
        """``cupy.cuda.Event``: belongs to the device current when it is made."""

        def __init__(self) -> None:
            cupy.check_usable()
            self.device, self.time, self.done = cupy.current, None, False

        def record(self, stream: Any = None) -> None:
            if self.device != cupy.current:  # the current stream is another device's
                raise CUDARuntimeError(400)
            self.time, self.done = cupy.clock[self.device], False
            cupy.recorded.append(self)

        def synchronize(self) -> None:
            # A stream runs in order: this event done means every one recorded before it is
            # (an event recorded again counts where it was recorded last).
            last = len(cupy.recorded) - cupy.recorded[::-1].index(self)
            for e in cupy.recorded[:last]:
                e.done = e.done or e.device == self.device

    return Event


# -- the array namespace --------------------------------------------------------------

CREATION = ("zeros", "ones", "empty", "full", "arange", "eye", "linspace")
LIKE = ("zeros_like", "ones_like", "empty_like", "full_like")
NO_KERNEL = {"isdtype", "result_type", "can_cast", "finfo", "iinfo", "asarray", "from_dlpack"}


def _namespace(cupy: StandInCupy) -> types.SimpleNamespace:
    def here() -> Any:
        return STRICT_DEVICES[cupy.current]

    def kernel(fn: Any) -> Any:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            values = [*args, *kwargs.values()]
            for v in list(values):
                if isinstance(v, (list, tuple)):  # stack, concat, meshgrid
                    values.extend(v)
            cupy.check_current(*values)
            if cupy.current in cupy.broken:
                raise RuntimeError("CuPy failed to load libnvrtc.so.13: OSError: "
                                   "libnvrtc.so.13: cannot open shared object file")
            if cupy.no_cublas and fn.__name__ in ("matmul", "tensordot", "vecdot"):
                raise ImportError('Failure finding "libcublasLt.so.13 or libcublasLt.so.12": '
                                  "No such file: libcublasLt.so.13 or libcublasLt.so.12")
            if (cupy.current, fn.__name__) not in cupy.started:  # compiled at its first call
                cupy.started.add((cupy.current, fn.__name__))
                cupy.advance(cupy.current, cupy.first_kernel_ms)
            return fn(*args, **kwargs)

        return run

    def creation(fn: Any) -> Any:  # array-api-compat's CuPy wrappers drop device=
        @functools.wraps(fn)
        def make(*args: Any, device: Any = None, **kwargs: Any) -> Any:
            cupy.check_usable()
            out = fn(*args, device=here(), **kwargs)
            if cupy.current in cupy.wrong and fn.__name__ == "arange":
                out = out + 1
            return out

        return make  # *_like too: CuPy allocates them on the current device, not x's

    def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: Any = None) -> Any:
        cupy.check_usable()
        with cupy.cuda.Device(device):  # None: the current device
            return strict.asarray(obj, dtype=dtype, device=here(), copy=copy)

    ns = types.SimpleNamespace(__name__="standin_cupy.xp", ndarray=Array, asarray=asarray)
    for name in strict.__all__:
        value = getattr(strict, name)
        if name in CREATION or name in LIKE:
            value = creation(value)
        elif callable(value) and not isinstance(value, type) and name not in NO_KERNEL:
            value = kernel(value)
        if name != "asarray":
            setattr(ns, name, value)
    return ns


OPERATORS = [n for n in dir(Array) if n.startswith("__") and n[2:-2] in {
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
    "xor", "lshift", "rshift", "lt", "le", "gt", "ge", "eq", "ne", "neg", "pos", "abs",
    "invert", "setitem"} | {f"{p}{o}" for p in ("i", "r") for o in (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
    "lshift", "rshift")}]


def activate(monkeypatch: Any, cupy: StandInCupy) -> StandInCupy:
    """Make ``backends`` see ``cupy`` as CuPy for one test (monkeypatch undoes it)."""
    from backends import _cuda, core

    monkeypatch.setattr(_cuda, "_import", lambda: (cupy, ""))
    monkeypatch.setattr(_cuda, "_namespace", lambda: cupy.xp, raising=False)
    # For code that imports the namespace itself (as backends did before the seam).
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", cupy.xp)
    # What a CuPy array has beyond the standard: x.get(), x.sum() and x.device.id.
    monkeypatch.setattr(Array, "get", lambda self: cupy.asnumpy(self), raising=False)
    monkeypatch.setattr(Array, "sum", lambda self: cupy.xp.sum(self), raising=False)
    monkeypatch.setattr(strict.Device, "id", property(STRICT_DEVICES.index), raising=False)
    monkeypatch.setattr(core, "_NAMESPACE_BY_TYPE", {})  # xp_of's cache
    # array_namespace(x) (and so xp_of) must answer the stand-in, as it answers CuPy's.
    monkeypatch.setattr(Array, "__array_namespace__", lambda self, api_version=None: cupy.xp)
    for name in OPERATORS:
        monkeypatch.setattr(Array, name, _checked(getattr(Array, name), cupy))
    getitem = Array.__getitem__

    def index(self: Array, key: Any) -> Any:  # basic slicing makes a view, no kernel
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, Array) for k in keys):
            cupy.check_current(self, *keys)
        return getitem(self, key)

    monkeypatch.setattr(Array, "__getitem__", index)
    _cuda._count.cache_clear()
    _cuda._device_problem.cache_clear()
    return cupy


def _checked(method: Any, cupy: StandInCupy) -> Any:
    @functools.wraps(method)
    def run(self: Array, *args: Any) -> Any:
        cupy.check_current(self, *args)
        return method(self, *args)

    return run
