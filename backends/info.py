"""What a user needs to know when a device does not behave: versions, GPUs, auto's choice."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from backends.base import BackendError
from backends.core import default_device, get_backend
from backends.host import usable_cores


def cpu_name() -> str:
    """The CPU model as the OS names it, with the number of cores Python may use."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    return f"{name}, {usable_cores()} cores"


def machine_info(gpus: bool = True) -> dict[str, Any]:
    """Python, NumPy, the CPU, what every optional library finds (CuPy and CUDA's versions
    and GPUs, PyTorch's devices), and what "auto" resolves to.

    ``gpus=False`` (the record of a CPU run) leaves out the optional libraries: importing
    CuPy and PyTorch to describe them takes time that such a run does not need.
    """
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "cpu": cpu_name(),
    }
    if not gpus:
        return info
    from backends.core import findings  # each library's own report (CuPy's GPUs, torch's devices)

    info.update(findings())
    info["default_device"] = default_device()
    try:
        be = get_backend(info["default_device"])
        info["resolves_to"] = be.device
        info["reason"] = be.reason
    except BackendError as exc:
        info["resolves_to"] = None
        info["reason"] = str(exc)
    return info
