"""The xp layer: the only code that knows one array library from another.

>>> from backends import get_backend
>>> be = get_backend("cpu")
>>> be.xp.sum(be.asarray([1.0, 2.0]))

One :class:`Backend` subclass per library (NumPy, CuPy, PyTorch, array-api-strict), one
registry (:data:`LIBRARIES`), one parser of device strings (:func:`parse_device`).
"""

from backends.base import Backend, BackendError, DeviceSpec
from backends.core import (
    ACCEPTED,
    ENV_VAR,
    LIBRARIES,
    available,
    default_device,
    describe_array,
    device_of,
    device_scope,
    get_backend,
    is_out_of_memory,
    parse_device,
    xp_of,
)
from backends.host import host_memory_free, small_pages, usable_cores
from backends.info import machine_info
from backends.numpy_backend import user_threads
from backends.timing import time_calls

__all__ = [
    "ACCEPTED",
    "ENV_VAR",
    "LIBRARIES",
    "Backend",
    "BackendError",
    "DeviceSpec",
    "available",
    "default_device",
    "describe_array",
    "device_of",
    "device_scope",
    "get_backend",
    "host_memory_free",
    "is_out_of_memory",
    "machine_info",
    "parse_device",
    "small_pages",
    "time_calls",
    "usable_cores",
    "user_threads",
    "xp_of",
]
