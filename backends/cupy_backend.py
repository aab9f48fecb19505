"""CuPy on an NVIDIA GPU. Everything that calls CuPy itself is in :mod:`backends._cuda`."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from backends import _cuda
from backends.base import Backend, BackendError, DeviceSpec
from backends.timing import IntervalTimer


class CupyBackend(Backend):
    """CuPy arrays on one CUDA device, cuda:N."""

    library = "cupy"
    prefixes = ("cuda", "gpu", "cupy")
    spelling = "cuda, cuda:N (or gpu, gpu:N)"
    is_gpu = True
    has_events = True

    def __init__(self, index: int, xp: Any, dtype: Any, reason: str) -> None:
        super().__init__(f"cuda:{index}", xp, dtype, reason, array_device=_cuda.device(index))
        self.index = index
        self.hardware = self.device

    @classmethod
    def parse(cls, kind: str) -> DeviceSpec | None:
        if kind == "":
            return DeviceSpec(cls.library, "cuda")
        return DeviceSpec(cls.library, "cuda", int(kind)) if kind.isdigit() else None

    @classmethod
    def asked(cls, spec: DeviceSpec) -> str:
        return "CUDA"

    @classmethod
    def create(cls, spec: DeviceSpec, dtype: Any, reason: str) -> Backend:
        problem = _cuda.problem(spec.index)
        if problem:
            raise BackendError(problem)
        xp, index = _cuda.namespace(spec.index)
        return cls(index, xp, xp.float64, reason).with_dtype(dtype)

    @classmethod
    def devices(cls) -> list[str]:
        return [f"cuda:{i}" for i in _cuda.working_devices()]

    @classmethod
    def findings(cls) -> dict[str, Any]:
        return _cuda.findings()

    @classmethod
    def array_words(cls, x: Any) -> str | None:
        gpu = _cuda.array_device(x)
        return None if gpu is None else f"a CuPy array on cuda:{gpu.id}"

    @classmethod
    def out_of_memory(cls, exc: BaseException) -> bool:
        return _cuda.out_of_memory(exc)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        # On this device, whichever one is current.
        return _cuda.asarray(self.index, x, None if dtype is None else self.resolve_dtype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        self.check(x, "array")
        return _cuda.to_host(x)

    def owns(self, x: Any) -> bool:
        return isinstance(x, self.xp.ndarray) and _cuda.device_index(x) == self.index

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return self.array_device  # a cupy.cuda.Device is a context manager

    def memory_free(self) -> int:
        return _cuda.memory_free(self.index)

    def synchronize(self) -> None:
        _cuda.synchronize(self.index)

    def interval_timer(self) -> IntervalTimer:
        return _cuda.EventTimer(self.index)

    def describe(self) -> str:
        gpu = next((g for g in _cuda.describe() if g["device"] == self.device), {})
        v = _cuda.versions()
        return (f"{gpu.get('name', self.device)}, {gpu.get('memory_gib', '?')} GiB; CUDA "
                f"runtime {v.get('cuda_runtime', '?')}, driver {v.get('cuda_driver', '?')}; "
                f"CuPy {v.get('cupy')}")
