"""Everything that touches CuPy. Imported lazily: CuPy is optional."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

INSTALL_HINT = 'install it with pip install "nnx[cuda12]" (or "nnx[cuda13]" for CUDA 13 drivers)'
DRIVER_HINT = (
    "check that the NVIDIA driver works (nvidia-smi); inside Docker, run with --gpus all "
    "on a host with the NVIDIA Container Toolkit"
)


@functools.lru_cache(maxsize=1)
def _import() -> tuple[ModuleType | None, str]:
    try:
        import cupy
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc}); {INSTALL_HINT}"
    except Exception as exc:  # a broken CUDA install can raise anything at import time
        return None, f"CuPy failed to import ({type(exc).__name__}: {exc}); {DRIVER_HINT}"
    return cupy, ""


@functools.lru_cache(maxsize=1)
def _count() -> tuple[int, str]:
    cupy, problem = _import()
    if cupy is None:
        return 0, problem
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError and friends: no driver, no device
        if _driver_version(cupy) == 0:
            # CUDA calls a missing driver "insufficient"; say what is really wrong.
            return 0, f"CuPy is installed but no NVIDIA driver is visible; {DRIVER_HINT}"
        return 0, f"CuPy is installed but no CUDA device answers ({_short(exc)}); {DRIVER_HINT}"
    if n == 0:
        return 0, f"CuPy is installed but it sees no CUDA device; {DRIVER_HINT}"
    return n, ""


@functools.cache
def _device_problem(index: int) -> str:
    """Run a tiny kernel on one device: proves the driver, runtime and NVRTC all work."""
    cupy, _ = _import()
    try:
        with cupy.cuda.Device(index):
            value = float((cupy.arange(3, dtype=cupy.float64) * 2.0).sum())
    except Exception as exc:  # missing libnvrtc, driver too old, out of memory, ...
        return f"CUDA device cuda:{index} does not work ({_short(exc)}); {DRIVER_HINT}"
    if value != 6.0:
        return f"CUDA device cuda:{index} computed a wrong result in a self-test"
    return ""


def _driver_version(cupy: ModuleType) -> int | None:
    try:
        return int(cupy.cuda.runtime.driverGetVersion())
    except Exception:  # the query itself failing tells us nothing more
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def problem(index: int | None) -> str:
    """Why CUDA device ``index`` (None: the current one) cannot be used, or "" if it can."""
    n, why = _count()
    if why:
        return why
    if index is not None and index >= n:
        have = ", ".join(f"cuda:{i}" for i in range(n))
        return f"device cuda:{index} does not exist: this machine has {n} CUDA device(s) ({have})"
    return _device_problem(0 if index is None else index)


def working_devices() -> list[int]:
    n, _ = _count()
    return [i for i in range(n) if not _device_problem(i)]


def namespace(index: int | None) -> tuple[ModuleType, int]:
    import array_api_compat.cupy as xp

    cupy, _ = _import()
    if index is not None:
        # CuPy runs kernels on the current device: arrays of cuda:N need N to be current.
        cupy.cuda.Device(index).use()
    idx = cupy.cuda.runtime.getDevice() if index is None else index
    return xp, idx


def device(index: int) -> Any:
    cupy, _ = _import()
    return cupy.cuda.Device(index)


def is_cupy_array(x: Any) -> bool:
    """Whether ``x`` is a CuPy array (without importing CuPy when nothing did)."""
    return type(x).__module__.startswith("cupy")


def device_index(x: Any) -> int:
    return x.device.id


def memory_free(index: int) -> int:
    """Bytes free on device ``index``; blocks held free by CuPy's pool count, it reuses them."""
    cupy, _ = _import()
    with cupy.cuda.Device(index):
        free, _total = cupy.cuda.runtime.memGetInfo()
        return int(free + cupy.get_default_memory_pool().free_bytes())


def synchronize() -> None:
    cupy, _ = _import()
    cupy.cuda.get_current_stream().synchronize()


class EventTimer:
    """Intervals measured by CUDA events: recording does not wait for the GPU."""

    def __init__(self) -> None:
        self._cupy, _ = _import()
        self._pairs: list[tuple[Any, Any]] = []
        self._start: Any = None

    def start(self) -> None:
        self._start = self._cupy.cuda.Event()
        self._start.record()

    def stop(self) -> None:
        end = self._cupy.cuda.Event()
        end.record()
        self._pairs.append((self._start, end))

    def drain(self) -> list[float]:
        if not self._pairs:
            return []
        self._pairs[-1][1].synchronize()
        get = self._cupy.cuda.get_elapsed_time
        times = [get(a, b) / 1000.0 for a, b in self._pairs]
        self._pairs = []
        return times


def describe() -> list[dict[str, Any]]:
    """Name, memory and versions of each GPU CuPy sees (empty when none)."""
    cupy, _ = _import()
    n, _ = _count()
    gpus = []
    for i in range(n):
        props = cupy.cuda.runtime.getDeviceProperties(i)
        name = props["name"]
        gpus.append({
            "device": f"cuda:{i}",
            "name": name.decode() if isinstance(name, bytes) else str(name),
            "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
            "compute_capability": f"{props['major']}.{props['minor']}",
        })
    return gpus


def versions() -> dict[str, str]:
    cupy, _ = _import()
    if cupy is None:
        return {}
    out = {"cupy": cupy.__version__}
    try:
        out["cuda_runtime"] = _cuda_version(cupy.cuda.runtime.runtimeGetVersion())
        out["cuda_driver"] = _cuda_version(cupy.cuda.runtime.driverGetVersion())
    except Exception as exc:  # no driver: the versions are unknowable, say why
        out["cuda"] = f"unavailable ({_short(exc)})"
    return out


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"
