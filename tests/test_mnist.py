"""MNIST loading: IDX parsing, verification, where files come from, and downloads over file://.

Synthetic IDX files go through the real parsing and verification code; their hashes
are patched into ``nnx.mnist.SHA256``. Nothing here touches the network. End-to-end
tests read the real files from the offline directory and check known MNIST facts.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import struct
import sys
import threading
import tracemalloc
import zlib
from pathlib import Path
from urllib.error import HTTPError

import numpy as np
import pytest

import nnx.io
from nnx import mnist
from nnx.errors import DataError
from nnx.mnist import MNIST_FILES, default_data_dir, load_mnist, read_idx, resolve_data_dir
from tests.test_io import no_blocking

CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
         np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray, magic: bytes | None = None, dims=None) -> bytes:
    """An IDX file's content, written from the format's description (not by nnx)."""
    array = np.asarray(array)
    dims = array.shape if dims is None else dims
    if magic is None:
        magic = bytes([0, 0, CODES[array.dtype], len(dims)])
    payload = array.astype(array.dtype.newbyteorder(">")).tobytes()
    return magic + struct.pack(f">{len(dims)}I", *dims) + payload


def write(path: Path, content: bytes, gz: bool | None = None) -> Path:
    """Write ``content`` to ``path``, gzip-compressed when the name ends in .gz."""
    gz = path.name.endswith(".gz") if gz is None else gz
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


def synthetic() -> dict[str, bytes]:
    """Decompressed content of four tiny MNIST-shaped files: 3 training, 2 test images."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    train[0, 0, 0], train[0, 0, 1] = 0, 255
    return {
        "train-images-idx3-ubyte": idx_bytes(train),
        "train-labels-idx1-ubyte": idx_bytes(np.array([5, 0, 9], np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": idx_bytes(np.array([7, 2], np.uint8)),
    }


@pytest.fixture
def fake(monkeypatch) -> dict[str, bytes]:
    """The synthetic files' contents, with their hashes made the expected ones."""
    files = synthetic()
    for name, content in files.items():
        monkeypatch.setitem(mnist.SHA256, name, hashlib.sha256(content).hexdigest())
    return files


def populate(directory: Path, files: dict[str, bytes], gz: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        write(directory / (f"{name}.gz" if gz else name), content)
    return directory


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees the user's environment or cache, nor reaches a real mirror."""
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(mnist, "MIRRORS", ())


def one_sentence(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.count(". ") == 0
    return message


# -- the IDX parser -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trips_every_type(tmp_path, dtype, gz):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = write(tmp_path / ("a.idx.gz" if gz else "a.idx"), idx_bytes(array))
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)
    got[0, 0, 0] = 1  # writable


def test_read_idx_rejects_a_bad_file_in_one_sentence(tmp_path):
    path = write(tmp_path / "bad.idx", b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(DataError, match=r"bad\.idx is truncated .*5 bytes.*but 3") as exc:
        read_idx(path)
    one_sentence(exc)


# -- verification: each bad file is one DataError naming it -----------------------------


def flip(data: bytes, at: int) -> bytes:
    """``data`` with the byte at ``at`` inverted."""
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


def _labels(values) -> bytes:
    return idx_bytes(np.array(values, np.uint8))


BAD_FILES = {
    # case: (file name, its bytes on disk from the good content, what the message must say)
    "corrupt deflate": ("train-labels-idx1-ubyte.gz", lambda c: flip(gzip.compress(c), 10),
                        r"not a valid gzip file \(Error -3 while decompressing"),
    "bad gzip crc": ("train-labels-idx1-ubyte.gz", lambda c: flip(gzip.compress(c), -5),
                     r"not a valid gzip file \(CRC check failed"),
    "not gzip at all": ("train-labels-idx1-ubyte.gz", lambda c: c, r"not a valid gzip file"),
    "truncated gzip": ("train-labels-idx1-ubyte.gz", lambda c: gzip.compress(c)[:-12],
                       r"truncated \(its gzip stream ends early\)"),
    "truncated payload": ("train-labels-idx1-ubyte", lambda c: c[:-1],
                          r"truncated \(its header declares 3 uint8 values, 3 bytes, but 2"),
    "truncated header": ("train-labels-idx1-ubyte", lambda c: c[:6], r"truncated"),
    "empty": ("train-labels-idx1-ubyte", lambda c: b"", r"truncated \(only 0 bytes"),
    "wrong magic": ("train-labels-idx1-ubyte", lambda c: b"\x12\x34" + c[2:],
                    r"not an IDX file \(its magic number is 0x12340801\)"),
    "extra bytes": ("train-labels-idx1-ubyte", lambda c: c + b"\0\0", r"too long"),
    "wrong size": ("train-labels-idx1-ubyte",
                   lambda c: idx_bytes(np.array([5, 0, 9], np.uint8), dims=(4,)),
                   r"declares 4 uint8 values, 4 bytes, but 3 bytes follow"),
    "wrong dims": ("train-labels-idx1-ubyte", lambda c: idx_bytes(np.zeros((3, 1), np.uint8)),
                   r"holds uint8 values of shape \(3, 1\), not MNIST labels"),
    "wrong type": ("train-labels-idx1-ubyte", lambda c: idx_bytes(np.array([5, 0, 9], np.int32)),
                   r"holds int32 values .*not MNIST labels"),
    "label out of range": ("train-labels-idx1-ubyte", lambda c: _labels([5, 10, 9]),
                           r"holds label 10, outside 0\.\.9"),
    "hash mismatch": ("train-labels-idx1-ubyte", lambda c: _labels([5, 1, 9]),
                      r"is not the standard MNIST train-labels-idx1-ubyte \(the SHA-256"),
    "image size": ("train-images-idx3-ubyte", lambda c: idx_bytes(np.zeros((3, 28, 27), np.uint8)),
                   r"shape \(3, 28, 27\), not MNIST images"),
}


@pytest.mark.parametrize("case", BAD_FILES)
@pytest.mark.parametrize("download", [True, False])
def test_a_bad_file_is_one_sentence_naming_it_and_the_fix(tmp_path, fake, case, download):
    file_name, make, pattern = BAD_FILES[case]
    name = file_name.removesuffix(".gz")
    files = {k: v for k, v in fake.items() if k != name}
    directory = populate(tmp_path / "data", files)
    bad = directory / file_name
    content = make(fake[name])
    bad.write_bytes(content)
    with pytest.raises(DataError, match=pattern) as exc:
        load_mnist(data_dir=directory, download=download)
    message = one_sentence(exc)
    assert message.startswith(str(bad))
    assert ("delete it" in message) if download else ("replace it" in message)
    assert bad.read_bytes() == content  # left for the user to deal with


def test_the_real_hash_table_rejects_a_well_formed_stranger(tmp_path):
    directory = populate(tmp_path / "data", synthetic())  # no hashes patched in
    with pytest.raises(DataError, match="is not the standard MNIST train-images-idx3-ubyte"):
        load_mnist(data_dir=directory, download=False)


def test_image_and_label_counts_must_agree(tmp_path, fake, monkeypatch):
    labels = _labels([1, 2])
    monkeypatch.setitem(mnist.SHA256, "train-labels-idx1-ubyte", hashlib.sha256(labels).hexdigest())
    directory = populate(tmp_path / "data", {**fake, "train-labels-idx1-ubyte": labels})
    with pytest.raises(DataError, match="3 images in train-images.* but 2 labels in train-labels"):
        load_mnist(data_dir=directory)


# -- the book's options, on synthetic files ----------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_options_give_the_books_shapes_and_dtypes(tmp_path, fake, gz):
    directory = populate(tmp_path / "data", fake, gz=gz)
    (x, t), (x_test, t_test) = load_mnist(data_dir=directory, download=False)
    assert x.shape == (3, 784) and x.dtype == np.float32 and x_test.shape == (2, 784)
    assert x[0, 0] == 0.0 and x[0, 1] == 1.0 and 0.0 <= x.min() and x.max() <= 1.0
    assert t.dtype == np.int64 and t.tolist() == [5, 0, 9] and t_test.tolist() == [7, 2]

    (x, t), _ = load_mnist(normalize=False, flatten=False, one_hot_label=True, data_dir=directory)
    expected = np.frombuffer(fake["train-images-idx3-ubyte"], np.uint8, offset=16)
    assert x.shape == (3, 1, 28, 28) and x.dtype == np.uint8 and x.flags.writeable
    np.testing.assert_array_equal(x.reshape(-1), expected)
    assert t.shape == (3, 10) and t.dtype == np.float32
    assert t.sum(axis=1).tolist() == [1, 1, 1] and t.argmax(axis=1).tolist() == [5, 0, 9]


def test_gzip_file_is_preferred_and_any_compression_level_passes(tmp_path, fake):
    directory = populate(tmp_path / "data", fake, gz=False)
    content = fake["train-labels-idx1-ubyte"]
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(content, 1, mtime=7))
    (directory / "train-labels-idx1-ubyte").write_bytes(b"junk")  # shadowed by the .gz
    (_, t), _ = load_mnist(data_dir=directory, download=False)
    assert t.tolist() == [5, 0, 9]


# -- where files come from -------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CACHE_HOME is Linux's")
def test_default_directory_is_the_user_cache(tmp_path):
    assert default_data_dir() == tmp_path / "xdg-cache" / "nnx" / "mnist"
    assert resolve_data_dir() == default_data_dir()


def test_resolution_order_argument_then_environment_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    for blank in ("", "  "):
        monkeypatch.setenv(mnist.ENV_VAR, blank)
        assert resolve_data_dir() == default_data_dir()
        assert resolve_data_dir(blank) == default_data_dir()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CACHE_HOME is Linux's")
@pytest.mark.parametrize("where", ["argument", "environment", "cache", "blank environment"])
def test_load_reads_from_the_resolved_directory(tmp_path, fake, monkeypatch, where):
    good, empty = tmp_path / "good", tmp_path / "empty"
    empty.mkdir()
    cache = tmp_path / "xdg-cache" / "nnx" / "mnist"
    if where == "argument":
        populate(good, fake)
        monkeypatch.setenv(mnist.ENV_VAR, str(empty))
        (_, t), _ = load_mnist(data_dir=good, download=False)
    elif where == "environment":
        populate(good, fake)
        populate(cache, {k: b"junk" for k in fake})
        monkeypatch.setenv(mnist.ENV_VAR, str(good))
        (_, t), _ = load_mnist(download=False)
    else:
        populate(cache, fake)
        if where == "blank environment":
            monkeypatch.setenv(mnist.ENV_VAR, " ")
        (_, t), _ = load_mnist(download=False)
    assert t.tolist() == [5, 0, 9]


def test_missing_files_without_download_say_which_and_where(tmp_path, fake):
    directory = populate(tmp_path / "data", {k: v for k, v in fake.items() if "labels" in k})
    with pytest.raises(DataError) as exc:
        load_mnist(data_dir=directory, download=False)
    message = one_sentence(exc)
    assert "train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz" in message
    assert "labels" not in message and f"in {directory}," in message
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{k}.gz" for k in fake
                                                                 if "labels" in k)


# -- downloads, over file:// ------------------------------------------------------------


def mirror(directory: Path, files: dict[str, bytes]) -> str:
    populate(directory, files)
    return directory.as_uri() + "/"


def test_download_skips_a_failing_mirror_and_caches_verified_files(tmp_path, fake, monkeypatch):
    empty = (tmp_path / "empty-mirror").as_uri() + "/"
    monkeypatch.setattr(mnist, "MIRRORS", (empty, mirror(tmp_path / "good-mirror", fake)))
    (_, t), (_, t_test) = load_mnist()  # into the cache directory
    assert t.tolist() == [5, 0, 9] and t_test.tolist() == [7, 2]
    cache = default_data_dir()
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{name}.gz" for name in fake)
    monkeypatch.setattr(mnist, "MIRRORS", ())  # the second load needs no network
    (_, t), _ = load_mnist(download=False)
    assert t.tolist() == [5, 0, 9]


def test_download_fills_in_only_the_missing_files_of_an_explicit_directory(
    tmp_path, fake, monkeypatch
):
    kept = {"t10k-labels-idx1-ubyte": fake["t10k-labels-idx1-ubyte"]}
    directory = populate(tmp_path / "new" / "data", kept, gz=False)
    monkeypatch.setattr(mnist, "MIRRORS", (mirror(tmp_path / "m", fake),))
    load_mnist(data_dir=directory)
    assert sorted(p.name for p in directory.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


TAMPERED = {
    "hash": lambda content: gzip.compress(_labels([5, 0, 8])),
    "truncated": lambda content: gzip.compress(content)[:20],
}


@pytest.mark.parametrize("tamper", TAMPERED)
def test_a_tampered_download_is_rejected_and_the_next_mirror_used(tmp_path, fake, monkeypatch,
                                                                  tamper):
    bad_url = mirror(tmp_path / "bad-mirror", fake)
    served = tmp_path / "bad-mirror" / "train-labels-idx1-ubyte.gz"
    served.write_bytes(TAMPERED[tamper](fake["train-labels-idx1-ubyte"]))
    directory = tmp_path / "data"

    monkeypatch.setattr(mnist, "MIRRORS", (bad_url,))
    with pytest.raises(DataError) as exc:
        load_mnist(data_dir=directory)
    message = one_sentence(exc)
    assert "could not download train-labels-idx1-ubyte.gz" in message and bad_url in message
    assert "the file it served" in message
    assert "train-labels-idx1-ubyte.gz" not in [p.name for p in directory.iterdir()]
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temp files

    monkeypatch.setattr(mnist, "MIRRORS", (bad_url, mirror(tmp_path / "good-mirror", fake)))
    (_, t), _ = load_mnist(data_dir=directory)
    assert t.tolist() == [5, 0, 9]
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{name}.gz" for name in fake)


def test_every_mirror_failing_is_one_sentence_with_the_offline_way(tmp_path, monkeypatch):
    urls = tuple((tmp_path / f"nowhere{i}").as_uri() + "/" for i in range(2))
    monkeypatch.setattr(mnist, "MIRRORS", urls)
    with pytest.raises(DataError) as exc:
        load_mnist()
    message = str(exc.value)
    assert "\n" not in message and message.startswith("could not download train-images")
    assert all(url in message for url in urls) and "last error:" in message
    assert "--data-dir" in message and mnist.ENV_VAR in message
    assert list(default_data_dir().iterdir()) == []


def test_http_errors_are_reported_by_status(tmp_path, monkeypatch):
    def refuse(request, timeout):
        assert timeout == mnist.TIMEOUT_S
        raise HTTPError(request.full_url, 403, "Forbidden", {}, None)

    monkeypatch.setattr(nnx.io, "urlopen", refuse)
    monkeypatch.setattr(mnist, "MIRRORS", ("https://example.invalid/mnist/",))
    with pytest.raises(DataError, match=r"last error: HTTP 403 Forbidden\)"):
        load_mnist(data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_directory_is_one_sentence(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(mnist, "MIRRORS", (mirror(tmp_path / "m", fake),))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DataError, match=r"cannot create .*file.* --data-dir"):
        load_mnist(data_dir=blocker / "mnist")


def test_concurrent_downloads_do_not_clash(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(mnist, "MIRRORS", (mirror(tmp_path / "m", fake),))
    results, errors = [], []

    def load():
        try:
            results.append(load_mnist(data_dir=tmp_path / "data")[0][1].tolist())
        except Exception as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == [[5, 0, 9]] * 4
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(
        f"{name}.gz" for name in fake)


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setattr(mnist, "MIRRORS", (mirror(tmp_path / "m", fake),))
    load_mnist(data_dir=tmp_path / "data")
    assert capsys.readouterr().err == ""


# -- the real files, from the offline directory --------------------------------------------


@functools.cache
def real(directory: Path, **options):
    return load_mnist(data_dir=directory, download=False, **options)


TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_defaults(mnist_dir):
    (x, t), (x_test, t_test) = real(mnist_dir)
    assert x.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x.dtype == x_test.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0 and x_test.min() == 0.0 and x_test.max() == 1.0
    assert t.shape == (60000,) and t_test.shape == (10000,) and t.dtype == np.int64
    assert t[0] == 5
    assert np.bincount(t).tolist() == TRAIN_COUNTS
    assert np.bincount(t_test).tolist() == TEST_COUNTS


def test_real_mnist_raw_unflattened_one_hot(mnist_dir):
    (x, t), (x_test, t_test) = real(mnist_dir, normalize=False, flatten=False, one_hot_label=True)
    assert x.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x.dtype == np.uint8 and x.max() == 255
    (x_norm, _), _ = real(mnist_dir)
    np.testing.assert_array_equal(x.reshape(60000, 784) / np.float32(255), x_norm)
    assert t.shape == (60000, 10) and t.dtype == np.float32 and t_test.shape == (10000, 10)
    assert np.all(t.sum(axis=1) == 1) and np.all(t_test.sum(axis=1) == 1)
    assert t.argmax(axis=1)[0] == 5
    assert t.sum(axis=0).tolist() == TRAIN_COUNTS and t_test.sum(axis=0).tolist() == TEST_COUNTS


def test_real_files_pass_the_real_hashes_however_compressed(mnist_dir, tmp_path):
    name = MNIST_FILES["test_labels"]
    raw = gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == mnist.SHA256[name]
    for other in ("train_images", "train_labels", "test_images"):
        source = mnist_dir / f"{MNIST_FILES[other]}.gz"
        (tmp_path / source.name).symlink_to(source)
    (tmp_path / name).write_bytes(raw)  # the same content, uncompressed
    (_, _), (_, t_test) = load_mnist(data_dir=tmp_path, download=False)
    assert np.bincount(t_test).tolist() == TEST_COUNTS


# -- hostile inputs: bombs, files in the way, corrupt next to missing, ~user paths ---------


def bomb(size: int) -> bytes:
    """A gzip stream of ``size`` zero bytes, about a thousandth of that long."""
    packer, block = zlib.compressobj(9, wbits=31), bytes(1 << 20)
    parts = [packer.compress(block[: min(1 << 20, size - i)]) for i in range(0, size, 1 << 20)]
    return b"".join(parts) + packer.flush()


def peak_bytes(call) -> int:
    """The most memory Python held while ``call()`` ran (it must raise DataError)."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("gz", [True, False])
def test_a_file_longer_than_any_faithful_copy_is_rejected_unread(tmp_path, fake, gz):
    directory = populate(tmp_path / "data", {k: v for k, v in fake.items() if "labels" not in k})
    name = "train-labels-idx1-ubyte"
    big = directory / (f"{name}.gz" if gz else name)
    if gz:
        big.write_bytes(bomb(64 << 20))  # 64 MiB of zeros in about 64 KB
    else:
        with open(big, "wb") as f:
            f.truncate(64 << 20)  # sparse: stat says 64 MiB, nothing is written
    pattern = r"too long \((it decompresses to more than 60,008 bytes|67,108,864 bytes, more th)"
    with pytest.raises(DataError, match=pattern) as exc:
        load_mnist(data_dir=directory, download=False)
    assert one_sentence(exc).startswith(str(big))
    assert peak_bytes(lambda: load_mnist(data_dir=directory, download=False)) < 4 << 20


def test_a_bomb_from_a_mirror_is_rejected_without_inflating_it(tmp_path, fake, monkeypatch):
    name = "train-labels-idx1-ubyte.gz"
    small, big = tmp_path / "small-bomb", tmp_path / "big-bomb"
    mirror(small, fake)
    (small / name).write_bytes(bomb(16 << 20))  # ~16 KB: under the download cap
    mirror(big, fake)
    (big / name).write_bytes(bomb(256 << 20))  # ~256 KB: over it
    for served, reason in ((small, "it decompresses to more than 60,008 bytes"),
                           (big, "more than 61,632 bytes")):
        monkeypatch.setattr(mnist, "MIRRORS", (served.as_uri() + "/",))
        with pytest.raises(DataError) as exc:
            load_mnist(data_dir=tmp_path / "data")
        assert f"the file it served is too long ({reason})" in one_sentence(exc)
        assert peak_bytes(lambda: load_mnist(data_dir=tmp_path / "data")) < 4 << 20
        assert name not in [p.name for p in (tmp_path / "data").iterdir()]


IN_THE_WAY = {
    "directory": (lambda p: p.mkdir(), "is a directory, not a regular file"),
    "FIFO": (lambda p: os.mkfifo(p), "is a FIFO, not a regular file"),
    "dangling symlink": (lambda p: p.symlink_to(p.parent / "gone"),
                         "is a dangling symbolic link (to "),
}


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("kind", IN_THE_WAY)
@pytest.mark.parametrize("download", [True, False])
def test_something_in_the_way_of_a_file_is_named(tmp_path, fake, monkeypatch, kind, gz, download):
    monkeypatch.setattr(mnist, "MIRRORS", (mirror(tmp_path / "m", fake),))
    name = "t10k-images-idx3-ubyte"
    directory = populate(tmp_path / "data", {k: v for k, v in fake.items() if k != name})
    obstacle = directory / (f"{name}.gz" if gz else name)
    make, says = IN_THE_WAY[kind]
    make(obstacle)
    with no_blocking(), pytest.raises(DataError) as exc:  # opening a FIFO would block
        load_mnist(data_dir=directory, download=download)
    message = one_sentence(exc)
    assert message.startswith(f"{obstacle} {says}") and "remove it" in message
    assert "--data-dir" in message and mnist.ENV_VAR in message


@pytest.mark.parametrize("mirrors", ["offline", "good"])
def test_a_corrupt_file_beside_a_missing_one_is_named_before_any_download(tmp_path, fake,
                                                                          monkeypatch, mirrors):
    if mirrors == "good":
        monkeypatch.setattr(mnist, "MIRRORS", (mirror(tmp_path / "m", fake),))
    files = {k: v for k, v in fake.items() if k != "train-images-idx3-ubyte"}  # the first
    directory = populate(tmp_path / "data", {**files, "t10k-labels-idx1-ubyte": _labels([7, 1])})
    with pytest.raises(DataError) as exc:
        load_mnist(data_dir=directory)
    message = one_sentence(exc)
    assert message.startswith(str(directory / "t10k-labels-idx1-ubyte.gz"))
    assert "could not download" not in message and "delete it" in message
    assert not (directory / "train-images-idx3-ubyte.gz").exists()


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_a_tilde_naming_no_user_is_one_sentence(monkeypatch, where):
    value = "~nnx-no-such-user-here/mnist"
    if where == "environment":
        monkeypatch.setenv(mnist.ENV_VAR, value)
    with pytest.raises(DataError) as exc:
        load_mnist(data_dir=value if where == "argument" else None, download=False)
    message = one_sentence(exc)
    assert value in message and "full path" in message
    assert (mnist.ENV_VAR in message) == (where == "environment")


def test_a_gz_is_kept_decompressed_and_the_copy_is_checked_like_the_file(tmp_path, fake,
                                                                         monkeypatch):
    data = populate(tmp_path / "data", fake)
    first = load_mnist(data_dir=data, download=False)
    folder = default_data_dir().parent / "mnist-decoded"
    copies = {p.name.split(".")[0]: p for p in folder.iterdir()}
    assert set(copies) == set(fake) and all(copies[n].read_bytes() == fake[n] for n in fake)
    with monkeypatch.context() as m:  # the copies are read now: nothing is decompressed
        m.setattr(mnist, "decompress", lambda *a, **k: pytest.fail("decompressed again"))
        again = load_mnist(data_dir=data, download=False)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # A damaged copy is never trusted: the verified file is read and the copy rebuilt.
    copies["t10k-labels-idx1-ubyte"].write_bytes(b"\0\0\x08\x01\0\0\0\x02\x09\x09")
    (_, _), (_, t_test) = load_mnist(data_dir=data, download=False)
    assert t_test.tolist() == [7, 2]
    assert copies["t10k-labels-idx1-ubyte"].read_bytes() == fake["t10k-labels-idx1-ubyte"]
    # A corrupt file is named, never hidden by the copy of its earlier, good version.
    write(data / "train-labels-idx1-ubyte.gz", fake["train-labels-idx1-ubyte"][:-1])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz is truncated"):
        load_mnist(data_dir=data, download=False)
