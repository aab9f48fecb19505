"""The IDX file format MNIST is stored in: gunzip with a bound, parse the header, check
that the payload is exactly what the header declares."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from io import BytesIO
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nnx import io
from nnx.errors import DataError

# Type code (the magic number's third byte) -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
                              0x0E: ">f8"}


class IdxError(io.BadFile):
    """Why some bytes are not a good IDX file: a phrase that reads on from the file's name."""


def decompress(data: bytes | BinaryIO, max_bytes: int | None = None) -> bytes:
    """Gunzip ``data`` (bytes, or a binary file read only as far as needed); :class:`IdxError`
    (never a zlib or gzip error) if it is corrupt or inflates to more than ``max_bytes``."""
    try:
        with gzip.GzipFile(fileobj=BytesIO(data) if isinstance(data, bytes) else data) as f:
            chunks = iter(lambda: f.read(1 << 16), b"")  # each full until the end: stop past max
            out = b"".join(chunks if max_bytes is None else islice(chunks, max_bytes // 65536 + 1))
    except EOFError as exc:
        raise IdxError("is truncated (its gzip stream ends early)") from exc
    except (OSError, zlib.error) as exc:
        raise IdxError(f"is not a valid gzip file ({exc})") from exc
    if max_bytes is not None and len(out) > max_bytes:
        raise IdxError(f"is too long (it decompresses to more than {max_bytes:,} bytes)")
    return out


def read_bytes(path: str | os.PathLike[str], max_bytes: int | None = None) -> bytes:
    """The content of ``path``, decompressed when its name ends in ``.gz``; :class:`IdxError` if
    it is not a readable file, its gzip stream is corrupt, or it holds over ``max_bytes``."""
    path = Path(path)
    if (size := io.file_size(path)) is None:
        raise IdxError("does not exist")
    gz = path.name.endswith(".gz")
    if not gz and max_bytes is not None and size > max_bytes:  # measured, never read
        raise IdxError(f"is too long ({size:,} bytes, more than the {max_bytes:,} expected)")
    try:
        with open(path, "rb") as f:
            return decompress(f, max_bytes) if gz else f.read()
    except OSError as exc:
        raise IdxError(f"cannot be read ({exc.strerror or exc})") from exc


def parse_idx(data: bytes) -> np.ndarray:
    """Parse the (decompressed) bytes of an IDX file into an array in native byte order.

    Raises :class:`IdxError` for a wrong magic number or a payload whose length is not
    the product of the dimensions times the item size. One-byte types come back as a
    read-only view of ``data``; copy the result if you need to write to it.
    """
    if len(data) < 4:
        raise IdxError(f"is truncated (only {len(data)} bytes, shorter than an IDX header)")
    code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or code not in IDX_DTYPES:
        raise IdxError(f"is not an IDX file (its magic number is 0x{data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"is truncated (its {ndim} dimensions are cut short)")
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    dtype = np.dtype(IDX_DTYPES[code])
    count = math.prod(dims)
    expected, payload = count * dtype.itemsize, len(data) - header
    if payload != expected:
        shape = "x".join(map(str, dims)) or "scalar"
        problem = "is truncated" if payload < expected else "is too long"
        raise IdxError(f"{problem} (its header declares {shape} {dtype.name} values, "
                       f"{expected} bytes, but {payload} bytes follow)")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


def read_idx(path: str | os.PathLike[str], max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed when its name ends in ``.gz``) into a writable array.

    Raises :class:`~nnx.errors.DataError`, one sentence naming the file and what is wrong,
    if it cannot be read, is not valid gzip, holds more than ``max_bytes`` (decompressed), or
    is not a well-formed IDX file.
    """
    try:
        array = parse_idx(read_bytes(path, max_bytes))
    except io.BadFile as exc:
        raise DataError(f"{path} {exc}; replace it with a valid IDX file") from exc
    return array if array.flags.writeable else array.copy()
