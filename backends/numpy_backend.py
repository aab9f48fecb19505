"""NumPy on the host's CPU: the reference library, and the one every machine has."""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.base import Backend, DeviceSpec


class NumPyBackend(Backend):
    """NumPy arrays through array-api-compat's NumPy namespace."""

    library = "numpy"
    prefixes = ("cpu", "numpy")
    spelling = "cpu (or numpy)"
    numpy_native = True

    @classmethod
    def asked(cls, spec: DeviceSpec) -> str:
        return "the CPU"

    @classmethod
    def create(cls, spec: DeviceSpec, dtype: Any, reason: str) -> Backend:
        import array_api_compat.numpy as xp

        return cls("cpu", xp, xp.float64, reason, array_device="cpu").with_dtype(dtype)

    @classmethod
    def devices(cls) -> list[str]:
        return ["cpu"]

    @classmethod
    def array_words(cls, x: Any) -> str | None:
        return "a NumPy array on the host" if isinstance(x, np.ndarray) else None

    @classmethod
    def out_of_memory(cls, exc: BaseException) -> bool:
        return isinstance(exc, MemoryError)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        return np.asarray(x, dtype=None if dtype is None else self.resolve_dtype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        self.check(x, "array")
        return np.asarray(x)

    def owns(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))  # reductions return NumPy scalars

    def describe(self) -> str:
        from backends.info import cpu_name

        try:
            blas = f" with {np.show_config(mode='dicts')['Build Dependencies']['blas']['name']}"
        except Exception:  # older NumPy or an unusual build: the BLAS name is a nicety
            blas = ""
        return f"{cpu_name()}; NumPy {np.__version__}{blas}"
