"""PyTorch's tensors on its CPU, an NVIDIA GPU (torch:cuda:N) or Apple's GPU (torch:mps).

Through array-api-compat's torch namespace, the same code that runs on NumPy and CuPy runs
on PyTorch: a second, independently implemented library with its own dtype rules, device
placement and kernels. PyTorch is optional (``pip install ".[torch]"``) and imported only
when a torch device is asked for, listed or described; :func:`_import` is the one seam.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from types import ModuleType
from typing import Any

import numpy as np

from backends.base import Backend, BackendError, DeviceSpec
from backends.timing import EventTimer, HostTimer, IntervalTimer

INSTALL_HINT = 'install it with pip install ".[torch]" in nnx\'s folder'


@functools.lru_cache(maxsize=1)
def _import() -> tuple[ModuleType | None, str]:
    """PyTorch, or None and why not (the seam the tests replace)."""
    try:
        import torch
    except ImportError:
        return None, f"PyTorch is not installed; {INSTALL_HINT}"
    except Exception as exc:  # a broken install can raise anything at import time
        return None, f"PyTorch failed to import ({type(exc).__name__}: {exc}); reinstall it"
    return torch, ""


def _mps_available(torch: ModuleType) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


class TorchBackend(Backend):
    """PyTorch tensors on one of its devices."""

    library = "torch"
    prefixes = ("torch",)
    spelling = "torch:cpu, torch:cuda, torch:cuda:N, torch:mps"

    def __init__(self, torch: ModuleType, kind: str, index: int | None, xp: Any,
                 reason: str) -> None:
        self._torch, self.kind, self.index = torch, kind, index
        device = torch.device(kind, index) if kind != "cpu" else torch.device("cpu")
        name = f"torch:{kind}" + (f":{index}" if kind == "cuda" else "")
        # MPS has no float64: its default is float32 (asking for float64 is refused).
        dtype = xp.float64 if kind != "mps" else xp.float32
        super().__init__(name, xp, dtype, reason, array_device=device)
        self.is_gpu = kind != "cpu"
        self.has_events = kind == "cuda"
        self.float64 = kind != "mps"
        self.hardware = {"cpu": "cpu", "cuda": f"cuda:{index}", "mps": "mps"}[kind]

    # -- the registry's side ----------------------------------------------------------------
    @classmethod
    def parse(cls, kind: str) -> DeviceSpec | None:
        base, _, index = kind.partition(":")
        if kind in ("", "cpu"):
            return DeviceSpec(cls.library, "cpu")
        if base == "cuda" and (not index or index.isdigit()):
            return DeviceSpec(cls.library, "cuda", int(index) if index else None)
        if kind in ("mps", "mps:0"):
            return DeviceSpec(cls.library, "mps")
        return None

    @classmethod
    def create(cls, spec: DeviceSpec, dtype: Any, reason: str) -> Backend:
        torch, why = _import()
        if torch is None:
            raise BackendError(why)
        index = None
        if spec.kind == "cuda":
            if not torch.cuda.is_available():
                built = ("built without CUDA" if torch.version.cuda is None
                         else "sees no CUDA device")
                raise BackendError(f"PyTorch {torch.__version__} {built}, so torch:cuda cannot "
                                   "run; use --device torch:cpu, or install a CUDA build of "
                                   "PyTorch on a machine with an NVIDIA GPU")
            n, index = torch.cuda.device_count(), spec.index or 0
            if index >= n:
                have = ", ".join(f"torch:cuda:{i}" for i in range(n))
                raise BackendError(f"device torch:cuda:{index} does not exist: PyTorch sees {n} "
                                   f"CUDA device(s) ({have}); choose one of them with --device")
        elif spec.kind == "mps":
            if not _mps_available(torch):
                raise BackendError("torch:mps is not available here: PyTorch's MPS device needs "
                                   "a Mac with Apple silicon and a PyTorch built with MPS; use "
                                   "--device torch:cpu")
            index = 0
        import array_api_compat.torch as xp

        return cls(torch, spec.kind, index, xp, reason).with_dtype(dtype)

    @classmethod
    def devices(cls) -> list[str]:
        torch, _ = _import()
        if torch is None:
            return []
        found = ["torch:cpu"]
        if torch.cuda.is_available():
            found += [f"torch:cuda:{i}" for i in range(torch.cuda.device_count())]
        if _mps_available(torch):
            found.append("torch:mps")
        return found

    @classmethod
    def findings(cls) -> dict[str, Any]:
        torch, why = _import()
        if torch is None:
            return {"torch": None, "torch_problem": why}
        devices = []
        for device in cls.devices():
            entry: dict[str, Any] = {"device": device}
            if device.startswith("torch:cuda:"):
                index = int(device.rsplit(":", 1)[1])
                props = torch.cuda.get_device_properties(index)
                entry.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1))
            devices.append(entry)
        return {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
                "torch_devices": devices}

    @classmethod
    def array_words(cls, x: Any) -> str | None:
        torch = sys.modules.get("torch")  # a torch tensor exists only once torch is imported
        if torch is None or not isinstance(x, torch.Tensor):
            return None
        return f"a PyTorch tensor on {x.device}"

    @classmethod
    def out_of_memory(cls, exc: BaseException) -> bool:
        torch = sys.modules.get("torch")
        if torch is None:
            return False
        oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
        # MPS says so in a RuntimeError: "MPS backend out of memory".
        return isinstance(exc, oom) or (isinstance(exc, RuntimeError)
                                        and "out of memory" in str(exc))

    # -- arrays -------------------------------------------------------------------------------
    def asarray(self, x: Any, dtype: Any = None) -> Any:
        torch = self._torch
        dtype = None if dtype is None else self.resolve_dtype(dtype)
        if isinstance(x, torch.Tensor):
            return x.to(device=self.array_device, dtype=dtype)
        # NumPy's dtype rules for host data (a Python float is float64, as on NumPy).
        x = np.asarray(x)
        if not x.flags.writeable:  # torch shares memory with the array it is given
            x = x.copy()
        return torch.as_tensor(x, dtype=dtype, device=self.array_device)

    def to_numpy(self, x: Any) -> np.ndarray:
        self.check(x, "array")
        return x.detach().cpu().numpy()

    def owns(self, x: Any) -> bool:
        return isinstance(x, self._torch.Tensor) and x.device == self.array_device

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        # Tensors compute on their own device; the current one only decides where a
        # library handle or a default-device allocation goes.
        if self.kind == "cuda":
            return self._torch.cuda.device(self.index)
        return contextlib.nullcontext()

    # -- memory and time ----------------------------------------------------------------------
    def memory_free(self) -> int:
        torch = self._torch
        if self.kind == "cuda":
            free, _total = torch.cuda.mem_get_info(self.index)
            # Blocks PyTorch's caching allocator holds but does not use are free to it.
            cuda = torch.cuda
            cached = cuda.memory_reserved(self.index) - cuda.memory_allocated(self.index)
            return int(free) + int(cached)
        if self.kind == "mps":
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        return super().memory_free()

    def synchronize(self) -> None:
        if self.kind == "cuda":
            self._torch.cuda.synchronize(self.index)
        elif self.kind == "mps":
            self._torch.mps.synchronize()

    def interval_timer(self) -> IntervalTimer:
        if self.kind == "cuda":
            return _EventTimer(self._torch, self.index)
        return HostTimer(self.synchronize if self.is_gpu else None)

    def describe(self) -> str:
        torch = self._torch
        if self.kind == "cuda":
            props = torch.cuda.get_device_properties(self.index)
            return (f"{props.name}, {props.total_memory / 2**30:.1f} GiB; PyTorch "
                    f"{torch.__version__} (CUDA {torch.version.cuda})")
        if self.kind == "mps":
            return f"Apple GPU (MPS); PyTorch {torch.__version__}"
        from backends.info import cpu_name

        return f"{cpu_name()}; PyTorch {torch.__version__}, {torch.get_num_threads()} threads"


class _EventTimer(EventTimer):
    """Intervals by pairs of CUDA events on the device's current stream; see
    :meth:`Backend.interval_timer` for what they measure."""

    def __init__(self, torch: ModuleType, index: int) -> None:
        super().__init__()
        self._torch, self._index = torch, index

    def _new(self) -> Any:
        return self._torch.cuda.Event(enable_timing=True)

    def _record_event(self, event: Any) -> None:
        event.record(self._torch.cuda.current_stream(self._index))

    def _seconds(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1000.0  # milliseconds
