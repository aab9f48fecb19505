"""Reading an ``.npz`` that someone else may have written: every member named, shaped and
sized as expected before a byte of it is inflated, so a small file never costs more memory
than the arrays it should hold.

The zip directory declares each member's uncompressed size and its compression method. A
member nnx does not expect, a method nnx never writes (bzip2, LZMA), or a declared size
above what the expected array needs is refused from the directory alone; an array's
``.npy`` header is then read (a few hundred bytes) and checked against the expected shape
and dtype kind before the array is allocated. Reading a member never yields more than its
declared size (``zipfile`` stops there), so the checks bound the memory.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Collection, Mapping
from typing import IO

import numpy as np
from numpy.lib import format as npy

from nnx.io import BadFile, brief

HEADER = 1 << 16  # an .npy header's bytes, at most (numpy writes 128)
ITEM = 8  # the widest item nnx reads: float64, int64
METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # np.savez and np.savez_compressed


class Spec:
    """An expected member: its ``shape`` (``None`` entries: any length, up to ``max_items``
    elements in all) and the dtype kinds it may have (numpy's ``dtype.kind`` letters)."""

    def __init__(self, shape: tuple[int | None, ...], kinds: str = "f",
                 max_items: int | None = None) -> None:
        self.shape, self.kinds = shape, kinds
        self.max_items = math.prod(shape) if None not in shape else max_items or 0

    def fits(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and math.prod(shape) <= self.max_items and all(
            want is None or want == got for want, got in zip(self.shape, shape, strict=True))


def read(file: IO[bytes], specs: Mapping[str, Spec], required: Collection[str] = (),
         finite: bool = True) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` open in ``file``, by key (member name without ``.npy``);
    :class:`BadFile` (a phrase reading on from the file's name) unless every member is one
    of ``specs``, each of ``required`` is there, and each array fits its spec (and holds no
    NaN or infinity, if ``finite``)."""
    with zipfile.ZipFile(file) as archive:
        infos = archive.infolist()
        keys = [info.filename.removesuffix(".npy") for info in infos]
        for info, key in zip(infos, keys, strict=True):
            spec = specs.get(key)
            if spec is None or not info.filename.endswith(".npy") or keys.count(key) > 1:
                raise BadFile(f"holds a member {brief(info.filename)!r} that nnx never writes "
                              "there")
            if info.compress_type not in METHODS:
                raise BadFile(f"holds {key} compressed with zip method {info.compress_type}, "
                              "which nnx never writes")
            if info.file_size > HEADER + spec.max_items * ITEM:
                raise BadFile(f"declares {key} as {info.file_size:,} bytes, more than its "
                              f"expected shape {_shape(spec.shape)} can take")
        missing = [k for k in required if k not in keys]
        if missing:
            raise BadFile(f"lacks {', '.join(missing)}")
        for info, key in zip(infos, keys, strict=True):  # headers first: nothing large yet
            with archive.open(info) as f:
                version = npy.read_magic(f)
                read_header = npy.read_array_header_1_0 if version == (1, 0) else \
                    npy.read_array_header_2_0
                shape, _, dtype = read_header(f)
                spec = specs[key]
                if dtype.kind not in spec.kinds or dtype.fields is not None \
                        or dtype.itemsize > ITEM or not spec.fits(shape):
                    raise BadFile(f"holds {key} as {shape} {brief(dtype)}, not "
                                  f"{_shape(spec.shape)} {_kinds(spec.kinds)}")
                if f.tell() + math.prod(shape) * dtype.itemsize != info.file_size:
                    raise BadFile(f"holds {key} in {info.file_size:,} bytes, not an intact "
                                  f"{shape} array")
        arrays = {}
        for info, key in zip(infos, keys, strict=True):
            with archive.open(info) as f:
                a = npy.read_array(f, allow_pickle=False)
            if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
                raise BadFile(f"holds NaN or infinite values in {key}")
            arrays[key] = a
    return arrays


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("N" if n is None else str(n) for n in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _kinds(kinds: str) -> str:
    if set(kinds) >= {"f", "i"}:
        return "real numbers"
    names = {"f": "floating-point", "i": "integer", "u": "unsigned integer"}
    return " or ".join(names.get(k, k) for k in kinds) + " numbers"
