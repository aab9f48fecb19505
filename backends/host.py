"""The host: the cores this process may use, how much memory is free, and how NumPy asks the
kernel for it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system says it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def host_memory_free() -> int:
    """Bytes of host memory available to a new allocation (MemAvailable), or a lower bound."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 2**63  # unknowable: do not refuse on a guess


THP_DEFRAG = "/sys/kernel/mm/transparent_hugepage/defrag"


@contextlib.contextmanager
def small_pages(defrag_path: str = THP_DEFRAG) -> Iterator[bool]:
    """Within the block NumPy does not advise huge pages where that can stall; yields
    whether it changed anything.

    NumPy marks each array of 4 MiB or more ``MADV_HUGEPAGE``. Where the kernel's defrag
    policy is ``madvise`` or ``defer+madvise``, a fault in such memory compacts memory
    synchronously when no huge page is free: the first touch of a data set just loaded
    can take seconds instead of a tenth of one. Meant for such one-time allocations;
    memory freed and taken again (the numerical gradient's temporaries) gains from huge
    pages. A user's own ``NUMPY_MADVISE_HUGEPAGE`` is left to decide.
    """
    core = getattr(np, "_core", None) or np.core  # NumPy 2, NumPy 1
    toggle = getattr(core.multiarray, "_set_madvise_hugepage", None)  # NumPy's global state
    try:
        with open(defrag_path, encoding="ascii") as f:
            policy = f.read()
    except OSError:
        policy = ""
    if (toggle is None or "NUMPY_MADVISE_HUGEPAGE" in os.environ
            or not ("[madvise]" in policy or "[defer+madvise]" in policy)):
        yield False
        return
    before = toggle(False)
    try:
        yield True
    finally:
        toggle(before)
