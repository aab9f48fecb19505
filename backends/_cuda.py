"""Everything that touches CuPy. Imported lazily: CuPy is optional.

CuPy allocates and launches kernels on its *current* device, a per-thread global. Nothing
here changes it for good: each call that allocates, waits or records runs inside
``with cupy.cuda.Device(i)``, so a backend for cuda:1 stays on cuda:1 whatever is current.
CuPy and its array namespace come through one seam each, :func:`_import` and
:func:`_namespace`, which the tests replace with a stand-in (``tests/standin_cupy.py``).
"""

from __future__ import annotations

import functools
import re
import time
import warnings
from types import ModuleType
from typing import Any

from backends import timing

INSTALL_HINT = ('install it with pip install ".[cuda12]" in nnx\'s folder (".[cuda13]" for '
                "CUDA 13 drivers)")
DRIVER_HINT = (
    "check that the NVIDIA driver works (nvidia-smi); inside Docker, run with --gpus all "
    "on a host with the NVIDIA Container Toolkit"
)
OLD_DRIVER_HINT = (
    "update the NVIDIA driver, or install the CuPy build for your driver's CUDA "
    '(pip install ".[cuda12]" in nnx\'s folder for a CUDA 12 driver)'
)
NO_DRIVER = "no NVIDIA driver is visible"


@functools.lru_cache(maxsize=1)
def _import() -> tuple[ModuleType | None, str]:
    """CuPy, or None and why not (the seam the tests replace)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import cupy
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc}); {INSTALL_HINT}"
    except Exception as exc:  # a broken CUDA install can raise anything at import time
        return None, f"CuPy failed to import ({type(exc).__name__}: {exc}); {DRIVER_HINT}"
    duplicates = _duplicates(caught)
    for w in caught:  # CuPy's other import-time warnings still reach the user
        if "multiple CuPy packages" not in str(w.message):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return (None, duplicates) if duplicates else (cupy, "")


def _duplicates(caught: list[warnings.WarningMessage]) -> str:
    """CuPy's own warning that several CuPy wheels are installed, as one sentence."""
    for w in caught:
        text = str(w.message)
        if "multiple CuPy packages" in text:
            listed = text.split("environment:", 1)[-1].split("Follow", 1)[0]
            found = ", ".join(dict.fromkeys(re.findall(r"[\w-]*cupy[-\w]*", listed)))
            return (f"several CuPy packages are installed at once ({found}); pip uninstall "
                    "all of them, then install the one nnx extra that matches the driver's "
                    'CUDA version (nvidia-smi): pip install ".[cuda12]" or ".[cuda13]"')
    return ""


def _namespace() -> ModuleType:
    """CuPy's Array API namespace (the seam the tests replace)."""
    import array_api_compat.cupy as xp

    return xp


@functools.lru_cache(maxsize=1)
def _count() -> tuple[int, str]:
    cupy, problem = _import()
    if cupy is None:
        return 0, problem
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, a driver too old, no device
        driver, runtime = _driver_version(cupy), _runtime_version(cupy)
        if driver == 0:
            # CUDA calls a missing driver "insufficient"; say what is really wrong.
            return 0, f"CuPy is installed but {NO_DRIVER}; {DRIVER_HINT}"
        if "InsufficientDriver" in str(exc) and driver and runtime:
            return 0, (
                f"the NVIDIA driver supports CUDA {_cuda_version(driver)} but this CuPy "
                f"needs CUDA {_cuda_version(runtime)}; {OLD_DRIVER_HINT}"
            )
        return 0, f"CuPy is installed but no CUDA device answers ({_short(exc)}); {DRIVER_HINT}"
    if n == 0:
        return 0, f"CuPy is installed but it sees no CUDA device; {DRIVER_HINT}"
    return n, ""


SELF_TEST_SECONDS: dict[int, float] = {}  # how long each device's first kernels took


@functools.cache
def _device_problem(index: int) -> str:
    """Run a tiny product on one device: proves the driver, runtime, NVRTC (its first
    kernels are compiled) and cuBLAS (a matrix product) all load and work."""
    cupy, _ = _import()
    start = time.perf_counter()
    try:
        with cupy.cuda.Device(index):
            xp = _namespace()
            a = xp.reshape(xp.arange(4, dtype=xp.float64), (2, 2))
            value = float(xp.sum(xp.matmul(a, a)))  # [[0, 1], [2, 3]] squared sums to 22
        SELF_TEST_SECONDS[index] = time.perf_counter() - start  # float() waited for the GPU
    except Exception as exc:  # missing libraries, driver too old, out of memory, ...
        library = missing_library(exc)
        if library:
            return (f"CuPy cannot load CUDA's {library} library on cuda:{index} ({_short(exc)}); "
                    f"CuPy's [ctk] extra provides it: {INSTALL_HINT}")
        return f"CUDA device cuda:{index} does not work ({_short(exc)}); {DRIVER_HINT}"
    if value != 22.0:
        return (f"CUDA device cuda:{index} computed a wrong result in a self-test "
                f"(a 2x2 product summed to {value}, not 22); {DRIVER_HINT}")
    return ""


LIBRARIES = {"cublas": "cuBLAS", "nvrtc": "NVRTC", "curand": "cuRAND", "cusparse": "cuSPARSE",
             "nvjitlink": "nvJitLink", "cudart": "CUDA runtime"}


def missing_library(exc: BaseException) -> str:
    """The CUDA library that ``exc`` says could not be loaded ("cuBLAS"), or ""."""
    if not isinstance(exc, (ImportError, OSError, RuntimeError)):
        return ""
    found = re.search(r"lib(cublas|nvrtc|curand|cusparse|nvjitlink|cudart)\w*\.so", str(exc),
                      re.IGNORECASE)
    return LIBRARIES[found.group(1).lower()] if found else ""


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is CuPy's way of saying the GPU or pinned memory ran out: its
    ``OutOfMemoryError`` (a MemoryError), cuBLAS failing to allocate its workspace, or the
    CUDA runtime failing an allocation (pinned host memory, a kernel's launch)."""
    if isinstance(exc, MemoryError):
        return True
    name, text = type(exc).__name__, str(exc)
    return ((name == "CUBLASError" and "ALLOC_FAILED" in text)
            or (name == "CUDARuntimeError" and "cudaErrorMemoryAllocation" in text))


def _driver_version(cupy: ModuleType) -> int | None:
    """The CUDA version the driver supports; 0 when there is no driver (CUDA's convention)."""
    try:
        return int(cupy.cuda.runtime.driverGetVersion())
    except Exception:  # the query itself failing tells us nothing more
        return None


def _runtime_version(cupy: ModuleType) -> int | None:
    try:
        return int(cupy.cuda.runtime.runtimeGetVersion())
    except Exception:  # as above
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def problem(index: int | None) -> str:
    """Why CUDA device ``index`` (None: the default, cuda:0) cannot be used, or "" if it can."""
    n, why = _count()
    if why:
        return why
    if index is not None and index >= n:
        have = ", ".join(f"cuda:{i}" for i in range(n))
        return (f"device cuda:{index} does not exist: this machine has {n} CUDA device(s) "
                f"({have}); choose one of them with --device")
    return _device_problem(0 if index is None else index)


def working_devices() -> list[int]:
    n, _ = _count()
    return [i for i in range(n) if not _device_problem(i)]


def namespace(index: int | None) -> tuple[ModuleType, int]:
    """The array namespace and the device a backend computes on: ``index``, else cuda:0.

    The default is cuda:0, not "whatever is current", so a backend never depends on
    who called ``Device.use()`` before; nothing here changes the current device.
    """
    return _namespace(), 0 if index is None else index


def device(index: int) -> Any:
    """The ``cupy.cuda.Device``: a ``with`` block on it makes ``index`` current."""
    cupy, _ = _import()
    return cupy.cuda.Device(index)


def array_device(x: Any) -> Any:
    """The ``cupy.cuda.Device`` holding array ``x``, or None when ``x`` is no CuPy array.

    NumPy values are answered without importing CuPy, so CPU code never pays for it.
    """
    if x is None or type(x).__module__.startswith("numpy") or isinstance(x, (int, float)):
        return None
    cupy, _ = _import()
    if cupy is None or not isinstance(x, cupy.ndarray):
        return None
    return cupy.cuda.Device(x.device)  # CuPy takes a Device here and keeps its id


def device_index(x: Any) -> int:
    """The index N of the cuda:N holding CuPy array ``x``."""
    cupy, _ = _import()
    return cupy.cuda.Device(x.device).id


def asarray(index: int, x: Any, dtype: Any) -> Any:
    """``x`` copied onto cuda:``index`` (CuPy's ``asarray`` puts it on the current device)."""
    with device(index):
        return _namespace().asarray(x, dtype=dtype)


def to_host(x: Any) -> Any:
    """A NumPy copy of CuPy array ``x`` (CuPy copies from the array's own device)."""
    cupy, _ = _import()
    return cupy.asnumpy(x)


def memory_free(index: int) -> int:
    """Bytes a new allocation can take on device ``index``.

    Blocks held free by CuPy's pool count (it reuses them); a pool limit
    (``CUPY_GPU_MEMORY_LIMIT`` or ``set_limit``; 0 means none) caps what the pool may
    hold in all. The pool answers for the current device, hence the ``with``.
    """
    cupy, _ = _import()
    with cupy.cuda.Device(index):
        pool = cupy.get_default_memory_pool()
        free, _total = cupy.cuda.runtime.memGetInfo()
        free = int(free) + int(pool.free_bytes())
        limit = int(pool.get_limit())
        if limit:
            free = min(free, max(limit - int(pool.used_bytes()), 0))
        return free


def synchronize(index: int) -> None:
    """Wait for the work queued on device ``index``'s current stream."""
    cupy, _ = _import()
    with cupy.cuda.Device(index):
        cupy.cuda.get_current_stream().synchronize()


class EventTimer(timing.EventTimer):
    """Intervals measured by pairs of CUDA events recorded on one device's current stream.

    An interval is the GPU time between its two events on the stream: the work queued
    between them, *plus* any time the GPU sat idle waiting for the host to launch that
    work; when the host is the bottleneck, launch overhead is in the figure.
    """

    def __init__(self, index: int) -> None:
        super().__init__()
        self._cupy, _ = _import()
        self._index = index

    def _scope(self) -> Any:
        # An event belongs to the device current when it is made; record it there too.
        return self._cupy.cuda.Device(self._index)

    def _new(self) -> Any:
        return self._cupy.cuda.Event()

    def _record_event(self, event: Any) -> None:
        event.record()

    def _seconds(self, start: Any, end: Any) -> float:
        return self._cupy.cuda.get_elapsed_time(start, end) / 1000.0  # milliseconds


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


def versions() -> dict[str, str | None]:
    """CuPy's version, the CUDA runtime it was built with, and the driver's CUDA version.

    Without a driver CUDA reports version 0; that is said as ``None`` with the reason in
    ``cuda_driver_problem``, not as "0.0".
    """
    cupy, _ = _import()
    if cupy is None:
        return {}
    out: dict[str, str | None] = {"cupy": cupy.__version__}
    runtime, driver = _runtime_version(cupy), _driver_version(cupy)
    out["cuda_runtime"] = _cuda_version(runtime) if runtime else None
    out["cuda_driver"] = _cuda_version(driver) if driver else None
    if not driver:
        _, why = _count()
        out["cuda_driver_problem"] = why or NO_DRIVER
    return out


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def findings() -> dict[str, Any]:
    """What ``nnx info`` says of CuPy: its version, CUDA's, the GPUs, and the diagnosis."""
    cupy, problem = _import()
    out: dict[str, Any] = {"cupy": cupy.__version__ if cupy is not None else None}
    out.update({k: v for k, v in versions().items() if k != "cupy"})
    out["gpus"] = describe() if cupy is not None and not _count()[1] else []
    if cupy is None:
        out["cupy_problem"] = problem
    from backends.cuda_setup import diagnose  # it builds on this module

    out["gpu_setup"] = diagnose()
    return out
