"""Files in and out: the one atomic writer, JSON, CSV, ``.npz`` parameters (no pickle),
downloads, and what is in the way where a file should be.

Every file is written to a temporary name in its directory and moved into place with
``os.replace``, so a reader (or a crash) never sees half a file, and two writers (two
downloads of one file, say) never write the same temporary file.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import stat
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import Request, urlopen

import numpy as np
from numpy.lib import format as npy

from nnx.errors import DataError, InputError


class BadFile(ValueError):
    """Why a file cannot be used: a phrase that reads on from its name."""


def file_size(path: str | os.PathLike[str]) -> int | None:
    """The size of regular file ``path`` (symlinks followed), or None if nothing is there;
    :class:`BadFile` if something else is in the way. Never opens it (a FIFO would block)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            raise BadFile(f"is a dangling symbolic link (to {os.readlink(path)})") from None
        return None
    except OSError as exc:
        raise BadFile(f"cannot be read ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        kind = {"d": "directory", "p": "FIFO", "s": "socket"}.get(stat.filemode(st.st_mode)[0])
        raise BadFile(f"is a {kind or 'special file'}, not a regular file")
    return st.st_size


def open_nofollow(path: str | os.PathLike[str], limit: int | None = None) -> io.BufferedReader:
    """``path`` opened for reading without following a symbolic link or blocking on a FIFO;
    :class:`BadFile` unless it is a regular file (of at most ``limit`` bytes, if given)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise BadFile("does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise BadFile("is a symbolic link, and nnx follows none in a run directory") from None
        raise BadFile(f"cannot be read ({exc.strerror or exc})") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        f.close()
        kind = {"d": "directory", "p": "FIFO", "s": "socket"}.get(stat.filemode(st.st_mode)[0])
        raise BadFile(f"is a {kind or 'special file'}, not a regular file")
    if limit is not None and st.st_size > limit:
        f.close()
        raise BadFile(f"is {st.st_size:,} bytes, more than the {limit:,} its run can need")
    return f


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.umask(mask := os.umask(0))  # read the umask (and put it back)
    os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; a finished file gets the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = os.fspath(path)  # a failed write() names no file: name the target
        raise


T = TypeVar("T")


def download(url: str, target: Path, verify: Callable[[bytes], T], timeout: float,
             max_bytes: int | None = None) -> T:
    """Fetch ``url`` into ``target`` atomically; ``verify(data)`` must accept the bytes (its
    result is returned) before the file is moved into place. ``timeout`` bounds each connection
    attempt and each read. A progress bar shows on a terminal. Raises ``OSError`` (``URLError``
    included), :class:`BadFile` as soon as more than ``max_bytes`` arrive, or whatever
    ``verify`` raises; nothing is left behind."""
    from tqdm import tqdm

    chunks, received = [], 0
    request = Request(url, headers={"User-Agent": "nnx-mnist-loader"})
    with atomic_path(target) as tmp, open(tmp, "wb") as out, \
            urlopen(request, timeout=timeout) as response:
        size = response.headers.get("Content-Length")
        show = bool(getattr(sys.stderr, "isatty", None) and sys.stderr.isatty())
        with tqdm(total=int(size) if size and size.isdigit() else None, desc=target.name,
                  unit="B", unit_scale=True, disable=not show) as bar:
            while chunk := response.read(1 << 16):
                if max_bytes is not None and (received := received + len(chunk)) > max_bytes:
                    raise BadFile(f"is too long (more than {max_bytes:,} bytes)")
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


def write_csv(path: str | os.PathLike[str], header: Sequence[str],
              rows: Sequence[Sequence]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    write_bytes(path, buf.getvalue().encode())


def save_params(path: str | os.PathLike[str], params: Mapping[str, np.ndarray]) -> None:
    """Save host arrays as an uncompressed ``.npz`` (plain arrays, no pickle)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in params.items()})


def load_params(path: str | os.PathLike[str],
                sizes: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """A layered net's parameters ``W1, b1, ..., Wk, bk`` saved by :func:`save_params`, as host
    arrays, of layer ``sizes`` if given (e.g. ``[784, 50, 10]``); :class:`~nnx.errors.DataError`,
    one sentence naming the file, unless it holds exactly those real arrays, in chained shapes."""
    try:
        keys = _check_npz(Path(path))
        with np.load(path, allow_pickle=False) as data:
            params = {key: data[key] for key in keys}
        # The layer sizes the weights imply: W1's rows, then every W's columns.
        ws = [params[f"W{i}"].shape for i in range(1, len(keys) // 2 + 1)]
        dims = [w[-1] if w else 0 for w in [ws[0][:1], *ws]]
        for i in range(1, len(ws) + 1):  # W{i} must be (dims[i-1], dims[i]), b{i} (dims[i],)
            for key, want in ((f"W{i}", (dims[i - 1], dims[i])), (f"b{i}", (dims[i],))):
                if params[key].shape != want or 0 in want:
                    raise BadFile(f"holds {key} of shape {params[key].shape}, not {want}")
        if sizes is not None and dims != list(sizes):
            raise BadFile(f"holds a {'-'.join(map(str, dims))} net, not the {list(sizes)} expected")
        return params
    except Exception as exc:  # zipfile, zlib, bz2, lzma, numpy: damaged bytes raise any kind
        reason = brief(exc) or type(exc).__name__
        problem = exc if isinstance(exc, BadFile) else f"is not an intact .npz ({reason})"
        raise DataError(f"{path} {problem}; re-train or restore the file") from exc


def _check_npz(path: Path) -> list[str]:
    # The keys W1, b1, ...; each header must agree with its member's size: no huge allocation.
    if (size := file_size(path)) is None:
        raise BadFile("does not exist")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        keys = [f"{p}{i}" for i in range(1, len(names) // 2 + 1) for p in "Wb"]
        if not keys or sorted(names) != sorted(f"{k}.npy" for k in keys):
            raise BadFile(f"holds {brief(', '.join(names)) or 'nothing'}, not W1, b1, ..., Wk, bk")
        if sum(info.file_size for info in archive.infolist()) > 1100 * size + 4096:
            raise BadFile("claims more data than deflate can pack into its size")  # <= 1032x
        for info in archive.infolist():
            with archive.open(info) as f:
                read = npy.read_array_header_1_0, npy.read_array_header_2_0  # by version
                shape, _, dtype = read[npy.read_magic(f) != (1, 0)](f)
                if dtype.kind not in "iuf" or \
                        f.tell() + math.prod(shape) * dtype.itemsize != info.file_size:
                    raise BadFile(f"holds {info.filename} as {shape} {brief(dtype)} in "
                                  f"{info.file_size:,} bytes, not an intact array of real numbers")
    return keys


def shown(path: str | os.PathLike[str]) -> str:
    """A file name as printed on one line: as it is, or, if it holds a newline or another
    character that is not printable (or bytes that are not text), quoted with escapes."""
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)


def brief(what: object) -> str:  # a short phrase on one line, no full stop ending a sentence
    text = "".join(c if c.isprintable() else "?" for c in str(what))
    return text.replace(". ", ", ").rstrip(".")[:80]


def writable_dir(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` (and parents) and prove it writable; whether it was created. Raises
    ``OSError`` (the caller words the fix) before any work is done."""
    return bool(_make_writable(Path(path)))


def _make_writable(path: Path) -> list[Path]:
    """:func:`writable_dir`'s work; the directories it created, deepest first."""
    created = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
    os.close(fd)
    os.unlink(probe)
    return created


def write_failure(exc: OSError, path: str | os.PathLike[str]) -> str:
    """Why writing under the directory ``path`` failed, with the fix: the end of a sentence.

    A full disk, a read-only file system (a container started with ``--read-only``) and a
    directory another user owns (a bind mount Docker created as root) each have their own.
    """
    where = exc.filename if exc.filename is not None else path
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"{exc.strerror}; free some space or choose another --out"
    if exc.errno == errno.EROFS:
        return (f"{where} is on a read-only file system; make that place writable (in a "
                "container: a volume, a bind mount or a --tmpfs) or choose another --out")
    if exc.errno in (errno.EACCES, errno.EPERM) and hasattr(os, "getuid"):
        owned = Path(path)
        while not owned.exists() and owned != owned.parent:
            owned = owned.parent
        owner, me = owned.stat().st_uid, os.getuid()
        return (f"permission denied: {owned} belongs to UID {owner} and nnx runs as UID {me}; "
                f"make it writable for UID {me} (chown or chmod) or choose another --out")
    return exc.strerror or str(exc)


def unwritable(out: Path, exc: OSError) -> InputError:
    """The sentence for an output directory that cannot be made or written, with the fix."""
    return InputError(f"cannot write to output directory {out}: {write_failure(exc, out)}")


def remove_if_empty(path: Path) -> None:
    """Remove a directory this run created if nothing was written into it."""
    with contextlib.suppress(OSError):
        path.rmdir()


@contextlib.contextmanager
def output_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``path`` and prove it writable before any work is done, then yield it.

    If the body fails, a directory this created is removed again while still empty, so
    a failed run leaves nothing behind.
    """
    out = Path(path)
    try:
        created = _make_writable(out)
    except OSError as exc:
        raise unwritable(out, exc) from exc
    try:
        yield out
    except BaseException:
        for made in created:  # its parents too (runs/ of runs/x): a refusal leaves nothing
            remove_if_empty(made)
        raise


@contextlib.contextmanager
def writing(path: Path, what: str, after: str = "") -> Iterator[list[Path]]:
    """Collect the files a save into the directory ``path`` writes (the body appends each
    before writing it); if writing fails, remove them and raise :class:`InputError`: "cannot
    save WHAT in PATH: why and the fix", then ``after``."""
    written: list[Path] = []
    try:
        yield written
    except OSError as exc:
        for p in written:
            p.unlink(missing_ok=True)
        raise InputError(f"cannot save {what} in {path}: {write_failure(exc, path)}{after}") \
            from exc
