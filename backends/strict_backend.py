"""array-api-strict on its non-CPU device: the stand-in for a GPU on a machine without one.

There ``np.asarray(x)`` and NumPy functions on its arrays raise, so an accidental NumPy
call in a device code path fails a test on the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.base import Backend, DeviceSpec


class StrictBackend(Backend):
    """array-api-strict's arrays on ``device1``."""

    library = "strict"
    prefixes = ("strict",)
    spelling = "strict"
    hardware = None  # it stands in for a device; no machine has it

    @classmethod
    def create(cls, spec: DeviceSpec, dtype: Any, reason: str) -> Backend:
        import array_api_strict as xp

        return cls("strict", xp, xp.float64, "array-api-strict on its non-CPU device",
                   xp.Device("device1")).with_dtype(dtype)

    @classmethod
    def array_words(cls, x: Any) -> str | None:
        import sys

        strict = sys.modules.get("array_api_strict")
        if strict is None or not isinstance(x, strict._array_object.Array):
            return None
        return f"an array on {x.device}"

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        if not isinstance(x, self.xp._array_object.Array):
            x = np.asarray(x)
        return self.xp.asarray(
            x, dtype=None if dtype is None else self.resolve_dtype(dtype), device=self.array_device
        )

    def to_numpy(self, x: Any) -> np.ndarray:
        self.check(x, "array")
        return np.asarray(x.to_device(self.xp.Device("CPU_DEVICE")))

    def owns(self, x: Any) -> bool:
        return isinstance(x, self.xp._array_object.Array) and x.device == self.array_device

    def describe(self) -> str:
        from backends.info import cpu_name

        return (f"array-api-strict {self.xp.__version__} on its non-CPU device (NumPy "
                f"underneath on {cpu_name()}; a stand-in for a GPU)")
