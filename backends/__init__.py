"""The xp layer: the only code that knows NumPy from CuPy.

>>> from backends import get_backend
>>> be = get_backend("cpu")
>>> be.xp.sum(be.asarray([1.0, 2.0]))
"""

from backends.core import (
    ACCEPTED,
    ENV_VAR,
    Backend,
    BackendError,
    available,
    default_device,
    device_of,
    device_scope,
    get_backend,
    parse_device,
    xp_of,
)
from backends.host import host_memory_free, small_pages
from backends.info import machine_info

__all__ = [
    "ACCEPTED",
    "ENV_VAR",
    "Backend",
    "BackendError",
    "available",
    "default_device",
    "device_of",
    "device_scope",
    "get_backend",
    "host_memory_free",
    "machine_info",
    "parse_device",
    "small_pages",
    "xp_of",
]
