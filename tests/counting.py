"""Counting on the strict lane what a GPU would pay for: host reads, arrays made, launches.

array-api-strict makes every array through ``Array._new``. It also makes arrays that
NumPy and CuPy never make -- a Python scalar in an operation promoted to a 0-d array,
and a 0-d operand given a dimension to dodge NumPy's scalar rules -- and those are not
counted. A host read is any conversion of a device array to a host value.

Launches stand for the kernels a GPU would run: every array computed (a view -- a
transpose, a slice, a reshape that shares memory -- runs none) and every in-place update
(``+=``, ``-=``, ``*=``, ``/=``, item assignment), which makes no array but runs a kernel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import array_api_strict._array_object as _strict

READS = ("__float__", "__int__", "__bool__", "__index__", "__complex__", "to_device",
         "__array__", "__dlpack__")
UPDATES = ("__iadd__", "__isub__", "__imul__", "__itruediv__", "__ipow__", "__setitem__")


@dataclass
class Counts:
    arrays: int = 0
    reads: int = 0
    views: int = 0  # arrays made that share another's memory
    updates: int = 0  # in-place operations

    @property
    def launches(self) -> int:
        return self.arrays - self.views + self.updates


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """Count arrays made and host reads of strict arrays inside the block."""
    counts, promoting = Counts(), [0]
    cls = _strict.Array
    new, promote = cls.__dict__["_new"], cls.__dict__["_promote_scalar"]
    normalize = cls.__dict__["_normalize_two_args"]
    originals = {name: cls.__dict__[name] for name in READS if name in cls.__dict__}
    updates = {name: cls.__dict__[name] for name in UPDATES if name in cls.__dict__}

    def counted_new(klass, x, *args, **kwargs):
        if not promoting[0]:
            counts.arrays += 1
            counts.views += getattr(x, "base", None) is not None
        return new.__func__(klass, x, *args, **kwargs)

    def counted_promote(self, scalar):
        promoting[0] += 1
        try:
            return promote(self, scalar)
        finally:
            promoting[0] -= 1

    def reading(original):
        def read(self, *args, **kwargs):
            counts.reads += 1
            return original(self, *args, **kwargs)
        return read

    def updating(original):
        def update(self, *args, **kwargs):
            counts.updates += 1
            promoting[0] += 1  # the operand's promotion is no array the kernel makes
            try:
                return original(self, *args, **kwargs)
            finally:
                promoting[0] -= 1
        return update

    def counted_normalize(x1, x2):
        promoting[0] += 1
        try:
            return normalize.__func__(x1, x2)
        finally:
            promoting[0] -= 1

    cls._new = classmethod(counted_new)
    cls._promote_scalar = counted_promote
    cls._normalize_two_args = staticmethod(counted_normalize)
    for name, original in originals.items():
        setattr(cls, name, reading(original))
    for name, original in updates.items():
        setattr(cls, name, updating(original))
    try:
        yield counts
    finally:
        cls._new, cls._promote_scalar, cls._normalize_two_args = new, promote, normalize
        for name, original in {**originals, **updates}.items():
            setattr(cls, name, original)
