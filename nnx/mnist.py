"""MNIST as the book loads it: ``load_mnist()`` returns host NumPy arrays.

The four IDX files are looked for in one directory, the first of: the ``data_dir``
argument, ``$NNX_DATA_DIR`` (blank means unset), the user's cache directory
(:func:`default_data_dir`). Each may be gzip-compressed (``train-images-idx3-ubyte.gz``)
or plain (``train-images-idx3-ubyte``). With ``download=True`` a missing file is
downloaded into that same directory, an explicit one included, from the first of
:data:`MIRRORS` that serves a good copy; with ``download=False`` it is an error.

Every file is checked before use: its gzip stream, IDX header and size, shape, label
range, and the SHA-256 of its *decompressed* content, so any faithful copy passes however
it was compressed; a download is renamed into place only once verified. IDX: a 4-byte
magic number (0, 0, a type code, the number of dimensions), a big-endian uint32 per
dimension, then the values in C order. A .gz is also kept decompressed in the user cache,
verified like the original and tied to its path, size and time: it loads at disk speed.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import suppress
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError, URLError

import numpy as np
import platformdirs

from backends import small_pages
from nnx import io
from nnx.errors import DataError
from nnx.idx import IdxError, decompress, parse_idx, read_bytes, read_idx  # noqa: F401  (the API)

ENV_VAR = "NNX_DATA_DIR"

# Role -> file name without ".gz" (the book's ``key_file``, in its order).
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of each file's decompressed content. Read at call time, so tests can patch it.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Size of each file's decompressed content: reading stops past it, so a gzip bomb is cut short.
MAX_BYTES: dict[str, int] = {
    "train-images-idx3-ubyte": 47_040_016, "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016, "t10k-labels-idx1-ubyte": 10_008,
}

# Base URLs tried in order; each serves "<name>.gz". yann.lecun.com, the book's source,
# answers 403 to scripts: listing it would only make "HTTP 403" the last error.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
)

TIMEOUT_S = 30.0  # per connection attempt and per read, not for the whole file
ROWS = COLS = 28

def default_data_dir() -> Path:
    """The user's cache directory for MNIST: ``platformdirs.user_cache_dir("nnx")/mnist``
    (``$XDG_CACHE_HOME/nnx/mnist``, by default ``~/.cache/nnx/mnist``, on Linux)."""
    return Path(platformdirs.user_cache_dir("nnx", appauthor=False)) / "mnist"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory MNIST is read from: ``data_dir``, else ``$NNX_DATA_DIR``, else
    :func:`default_data_dir`; blank values count as unset."""
    for value, where in ((data_dir, "the data directory"), (os.environ.get(ENV_VAR), ENV_VAR)):
        if value is not None and str(value).strip():
            try:
                return Path(value).expanduser()
            except RuntimeError as exc:  # "~nosuchuser", or no home directory to be found
                raise DataError(f"{where} {value} starts with a ~ that names no known home "
                                "directory; give the full path instead") from exc
    return default_data_dir()


def load_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load MNIST as ``(x_train, t_train), (x_test, t_test)``, like the book's ``load_mnist``.

    Images are ``(N, 784)`` when ``flatten`` else ``(N, 1, 28, 28)``; ``float32`` in
    [0, 1] when ``normalize`` else ``uint8`` in 0..255. Labels are ``int64`` class
    indices, or ``(N, 10)`` ``float32`` one-hot rows when ``one_hot_label``. N is 60000
    for training and 10000 for test. Arrays are always host NumPy arrays.

    ``data_dir`` names the directory holding the four files (else ``$NNX_DATA_DIR``,
    else :func:`default_data_dir`). ``download`` lets missing files be fetched into that
    directory; files already there are verified, never replaced.

    Raises :class:`~nnx.errors.DataError`, one sentence saying what to do, when a file is
    missing (and ``download`` is false or every mirror fails) or fails verification.
    """
    directory = resolve_data_dir(data_dir)
    if (data_dir is None or not str(data_dir).strip()) and os.environ.get(ENV_VAR, "").strip() \
            and not directory.is_dir():  # a typo there must not become a new directory
        raise DataError(f"{ENV_VAR} names {directory}, which is not a directory; correct the "
                        "variable, or create the directory to download MNIST into it")
    raw = _load_files(directory, download)
    splits = []
    for split in ("train", "test"):
        images, labels = raw[f"{split}_images"], raw[f"{split}_labels"]
        if len(images) != len(labels):
            names = MNIST_FILES[f"{split}_images"], MNIST_FILES[f"{split}_labels"]
            raise DataError(f"{directory} holds {len(images)} images in {names[0]} but "
                            f"{len(labels)} labels in {names[1]}; replace both with copies")
        splits.append((_images(images, normalize, flatten), _labels(labels, one_hot_label)))
    return splits[0], splits[1]


def _images(x: np.ndarray, normalize: bool, flatten: bool) -> np.ndarray:
    with small_pages():  # x is a read-only view of the decompressed bytes
        out = x.astype(np.float32) if normalize else x.copy()
    if normalize:
        out /= np.float32(255)
    n, rows, cols = x.shape
    return out.reshape(n, rows * cols) if flatten else out.reshape(n, 1, rows, cols)


def _labels(t: np.ndarray, one_hot: bool) -> np.ndarray:
    t = t.astype(np.int64)
    return np.eye(10, dtype=np.float32)[t] if one_hot else t


# -- finding and verifying files ----------------------------------------------------


def _load_files(directory: Path, download: bool) -> dict[str, np.ndarray]:
    """Role -> verified array, downloading missing files into ``directory`` if allowed."""
    found = {name: _find(directory, name) for name in MNIST_FILES.values()}
    # Verify what is here first: a corrupt file is named as such, not hidden by a download.
    arrays = {role: _read_verified(found[name], name, download)
              for role, name in MNIST_FILES.items() if found[name]}
    missing = [name for name, path in found.items() if path is None]
    if missing and not download:
        wanted = ", ".join(f"{name}.gz" for name in missing)
        raise DataError(f"MNIST files missing: put {wanted} (gzip-compressed, or the same names "
                        f"without .gz uncompressed) in {directory}, or allow downloading "
                        "(drop --no-download; download=True in Python)")
    if missing:
        what = f"write to {directory}" if directory.is_dir() else f"create {directory}"
        try:
            io.writable_dir(directory)
        except OSError as exc:
            raise DataError(f"cannot {what} to download MNIST into ({exc.strerror or exc}); "
                            f"choose a writable directory with --data-dir or {ENV_VAR}") from exc
    for role, name in MNIST_FILES.items():
        if role not in arrays:
            arrays[role] = _download(name, directory)
    return arrays


def _find(directory: Path, name: str) -> Path | None:
    """The file for ``name`` in ``directory``, gzip-compressed preferred, or None; DataError
    if something else is in the way (a directory, a FIFO, a dangling symlink)."""
    for candidate in (directory / f"{name}.gz", directory / name):
        try:
            if io.file_size(candidate) is not None:
                return candidate
        except io.BadFile as exc:
            raise DataError(f"{candidate} {exc}; remove it or choose another directory with "
                            f"--data-dir or {ENV_VAR}") from exc
    return None


def _verify(raw: bytes, name: str) -> np.ndarray:
    """Parse the decompressed content of MNIST file ``name``; :class:`IdxError` if it is not
    a faithful copy. Cheap checks first, so the message names the most specific fault."""
    array = parse_idx(raw)
    images = "images" in name
    if images and (array.dtype != np.uint8 or array.shape[1:] != (ROWS, COLS)):
        raise IdxError(f"holds {array.dtype.name} values of shape {array.shape}, not MNIST images")
    if not images and (array.dtype != np.uint8 or array.ndim != 1):
        raise IdxError(f"holds {array.dtype.name} values of shape {array.shape}, not MNIST labels")
    if not images and array.size and int(array.max()) > 9:
        raise IdxError(f"holds label {int(array.max())}, outside 0..9")
    digest, expected = hashlib.sha256(raw).hexdigest(), SHA256.get(name, "")
    if digest != expected:
        raise IdxError(f"is not the standard MNIST {name} (the SHA-256 of its decompressed "
                       f"content starts {digest[:16]}, expected {expected[:16]})")
    return array


def _read_verified(path: Path, name: str, download: bool) -> np.ndarray:
    cache = _decoded(path, name)  # the decompressed copy (module docstring)
    with suppress(OSError, io.BadFile):
        if cache is not None and io.file_size(cache):
            return _verify(read_bytes(cache, MAX_BYTES.get(name)), name)
    try:
        raw = read_bytes(path, MAX_BYTES.get(name))
        array = _verify(raw, name)
    except io.BadFile as exc:
        fix = "delete it to download a fresh copy" if download else \
            f"replace it with a faithful copy of {name}.gz"
        raise DataError(f"{path} {exc}; {fix}") from exc
    with suppress(OSError):
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            for old in cache.parent.glob(f"{name}.*"):  # of an earlier version of the file
                old.unlink()
            io.write_bytes(cache, raw)
    return array


def _decoded(path: Path, name: str) -> Path | None:
    if not path.name.endswith(".gz"):
        return None
    st = path.stat()
    tag = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    return default_data_dir().parent / "mnist-decoded" / f"{name}.{tag[:16]}"


# -- downloading ----------------------------------------------------------------------


def _download(name: str, directory: Path) -> np.ndarray:
    """Fetch ``name``.gz from the first mirror that serves a verified copy; keep it in
    ``directory`` and return its array."""
    target = directory / f"{name}.gz"
    mirrors = tuple(MIRRORS)
    reason = "no mirrors are configured"
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{target.name}"
        try:
            return _fetch(url, target, name)
        except (OSError, HTTPException, ValueError) as exc:  # URLError and IdxError included
            reason = _describe(exc)
    raise DataError(
        f"could not download {target.name} into {directory} from any mirror "
        f"(tried {', '.join(mirrors) or 'none'}; last error: {reason}); to work offline, "
        f"copy the four MNIST files into a directory and pass it with --data-dir or {ENV_VAR}"
    )


def _fetch(url: str, target: Path, name: str) -> np.ndarray:
    most = MAX_BYTES.get(name)  # a gzip file is at most a little longer than its content
    return io.download(url, target, lambda data: _verify(decompress(data, most), name),
                       TIMEOUT_S, most and most + most // 100 + 1024)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, URLError):
        return str(exc.reason)
    if isinstance(exc, io.BadFile):
        return f"the file it served {exc}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT_S:g} s"
    return str(exc) or type(exc).__name__
