"""Writing run outputs atomically: JSON, CSV, ``.npz`` parameters (no pickle), PNG plots.

Every file is written to a temporary name in its directory and moved into place with
``os.replace``, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnx.errors import InputError, NnxError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """JSON (NaN and infinity written as JavaScript does, as Python's json reads them)."""
    write_bytes(path, (json.dumps(obj, indent=indent) + "\n").encode())


def write_csv(
    path: str | os.PathLike[str], header: Sequence[str], rows: Sequence[Sequence]
) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_bytes(path, buf.getvalue().encode())


def save_params(path: str | os.PathLike[str], params: Mapping[str, np.ndarray]) -> None:
    """Save host arrays as an uncompressed ``.npz`` (plain arrays, no pickle)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in params.items()})


def load_params(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a parameter ``.npz`` written by :func:`save_params` as host arrays."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise NnxError(f"cannot read parameters from {path}: {exc}") from exc


def prepare_dir(path: str | os.PathLike[str]) -> tuple[Path, bool]:
    """Create ``path`` (and parents) and prove it is writable; return it and whether it is new.

    Fails up front, before any work is done, with one sentence naming the directory.
    """
    path = Path(path)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"cannot write to output directory {path}: {reason}") from exc
    return path, created


def remove_if_empty(path: Path) -> None:
    """Remove a directory this run created if nothing was written into it."""
    with contextlib.suppress(OSError):
        path.rmdir()
