"""Files in and out: the one atomic writer, JSON, CSV, ``.npz`` parameters (no pickle),
and downloads.

Every file is written to a temporary name in its directory and moved into place with
``os.replace``, so a reader (or a crash) never sees half a file, and two writers (two
downloads of one file, say) never write the same temporary file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import Request, urlopen

import numpy as np

from nnx.errors import NnxError


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


T = TypeVar("T")


def download(url: str, target: Path, verify: Callable[[bytes], T], timeout: float) -> T:
    """Fetch ``url`` into ``target`` atomically; ``verify(data)`` must accept the bytes
    (its result is returned) before the file is moved into place.

    ``timeout`` bounds each connection attempt and each read. A progress bar shows on a
    terminal. Raises ``OSError`` (``URLError`` included) or whatever ``verify`` raises;
    either way nothing is left behind.
    """
    from tqdm import tqdm

    chunks = []
    request = Request(url, headers={"User-Agent": "nnx-mnist-loader"})
    with atomic_path(target) as tmp, open(tmp, "wb") as out, \
            urlopen(request, timeout=timeout) as response:
        size = response.headers.get("Content-Length")
        show = bool(getattr(sys.stderr, "isatty", None) and sys.stderr.isatty())
        with tqdm(total=int(size) if size and size.isdigit() else None, desc=target.name,
                  unit="B", unit_scale=True, disable=not show) as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                chunks.append(chunk)
                bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
        return verify(b"".join(chunks))


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


def writable_dir(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` (and parents) and prove it writable; whether it was created.

    Raises ``OSError`` (the caller words the fix) before any work is done.
    """
    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
    os.close(fd)
    os.unlink(probe)
    return created


def remove_if_empty(path: Path) -> None:
    """Remove a directory this run created if nothing was written into it."""
    with contextlib.suppress(OSError):
        path.rmdir()
