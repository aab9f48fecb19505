"""Generated bad inputs, each ending in one clean DataError sentence that names the file.

IDX files truncated at every header boundary and inside the payload, random byte flips in
copies of the real test files (gzip-compressed and plain), gzip bombs, and damaged ``.npz``
parameter files. A seeded generator makes every failure reproduce; it all runs in seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import tracemalloc
import zipfile
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from nnx import io, mnist
from nnx.errors import DataError
from nnx.mnist import load_mnist, read_idx
from tests.conftest import MNIST_DIR

SEED = 20240611
LABELS, IMAGES = "t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte"


def clean(exc: pytest.ExceptionInfo, path: Path) -> str:
    """The message, checked: one sentence on one line that starts with the file's name."""
    message = str(exc.value)
    assert exc.type is DataError and "\n" not in message and ". " not in message
    assert message.startswith(str(path)), message
    return message


@pytest.fixture(scope="module")
def real() -> dict[str, bytes]:
    """The decompressed content of the real test labels and test images."""
    files = {name: gzip.decompress((MNIST_DIR / f"{name}.gz").read_bytes())
             for name in (LABELS, IMAGES)}
    assert all(hashlib.sha256(v).hexdigest() == mnist.SHA256[k] for k, v in files.items())
    return files


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setattr(mnist, "MIRRORS", ())


def alone(tmp_path: Path, name: str, content: bytes, gz: bool) -> Path:
    """A data directory holding only ``name``: the loader verifies it before it says what
    is missing, so a bad copy is named."""
    path = tmp_path / "data" / (f"{name}.gz" if gz else name)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(gzip.compress(content, 1) if gz else content)
    return path


def rejects(path: Path) -> str:
    with pytest.raises(DataError) as exc:
        load_mnist(data_dir=path.parent, download=False)
    return clean(exc, path)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", [LABELS, IMAGES])
def test_a_faithful_copy_alone_passes_and_only_the_others_are_missing(tmp_path, real, name, gz):
    path = alone(tmp_path, name, real[name], gz)
    with pytest.raises(DataError, match="MNIST files missing") as exc:
        load_mnist(data_dir=path.parent, download=False)
    assert name not in str(exc.value)


# -- truncations ---------------------------------------------------------------------------


def cuts(content: bytes, header: int, n: int, rng: np.random.Generator) -> list[int]:
    """Every length up to and including the header, and ``n`` random ones inside the payload."""
    inside = rng.choice(np.arange(header + 1, len(content)), n, replace=False)
    return [*range(header + 1), *sorted(int(i) for i in inside)]


@pytest.mark.parametrize("gz", [True, False])
def test_labels_truncated_anywhere(tmp_path, real, gz):
    content, rng = real[LABELS], np.random.default_rng(SEED)
    for cut in cuts(content, 8, 16, rng):
        path = alone(tmp_path, LABELS, content[:cut], gz)
        assert "is truncated" in rejects(path), cut


def test_images_truncated_at_every_header_boundary_and_inside(tmp_path, real):
    content, rng = real[IMAGES], np.random.default_rng(SEED)
    for cut in cuts(content, 16, 4, rng):
        path = alone(tmp_path, IMAGES, content[:cut], gz=False)
        assert "is truncated" in rejects(path), cut


def test_a_gzip_stream_cut_short_anywhere(tmp_path, real):
    packed, rng = gzip.compress(real[LABELS]), np.random.default_rng(SEED)
    path = alone(tmp_path, LABELS, b"", gz=True)
    for cut in [*range(12), *rng.integers(12, len(packed), 24)]:  # the gzip header, then deflate
        path.write_bytes(packed[:cut])
        message = rejects(path)
        assert "truncated" in message or "not a valid gzip file" in message, cut


# -- byte flips ------------------------------------------------------------------------------


def flipped(content: bytes, at: int, rng: np.random.Generator, digits: bool = False) -> bytes:
    """``content`` with the byte at ``at`` changed: to another digit 0..9 if ``digits``."""
    out = bytearray(content)
    choices = [v for v in (range(10) if digits else range(256)) if v != out[at]]
    out[at] = int(rng.choice(choices))
    return bytes(out)


@pytest.mark.parametrize("gz", [True, False])
def test_label_flips_are_caught_and_payload_flips_by_the_sha256(tmp_path, real, gz):
    content, rng = real[LABELS], np.random.default_rng(SEED)
    for at in range(8):  # every header byte
        rejects(alone(tmp_path, LABELS, flipped(content, at, rng), gz))
    for at in rng.integers(8, len(content), 12):  # still labels 0..9: only the hash can tell
        message = rejects(alone(tmp_path, LABELS, flipped(content, int(at), rng, True), gz))
        assert "is not the standard MNIST t10k-labels-idx1-ubyte (the SHA-256" in message


@pytest.mark.parametrize("gz", [True, False])
def test_image_flips_in_its_first_bytes_are_caught(tmp_path, real, gz):
    content, rng = real[IMAGES], np.random.default_rng(SEED)
    for at in [*rng.choice(16, 4, replace=False), *rng.integers(16, 4096, 4)]:
        message = rejects(alone(tmp_path, IMAGES, flipped(content, int(at), rng), gz))
        if at >= 16:
            assert "(the SHA-256 of its decompressed content" in message


def test_flips_in_the_gzip_file_itself_are_caught(tmp_path, real):
    packed, rng = gzip.compress(real[LABELS]), np.random.default_rng(SEED)
    path = alone(tmp_path, LABELS, b"", gz=True)
    for at in [*range(4), *rng.integers(10, len(packed), 20)]:  # magic, method, deflate, crc
        path.write_bytes(flipped(packed, int(at), rng))
        rejects(path)


# -- gzip bombs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """~64 KB of gzip that inflates to 64 MiB of zeros, as one stream and as 64 members."""
    packer, block = zlib.compressobj(9, wbits=31), bytes(1 << 20)
    one = b"".join([packer.compress(block) for _ in range(64)] + [packer.flush()])
    return {"one stream": one, "many members": gzip.compress(block, 9) * 64}


def peak(call) -> tuple[pytest.ExceptionInfo, int]:
    """What ``call()`` raised (it must be a DataError) and the most memory Python held."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as exc:
            call()
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["one stream", "many members"])
def test_a_gzip_bomb_is_cut_short(tmp_path, bombs, kind):
    assert len(bombs[kind]) < 100_000
    path = alone(tmp_path, LABELS, b"", gz=True)
    path.write_bytes(bombs[kind])
    exc, most = peak(lambda: load_mnist(data_dir=path.parent, download=False))
    assert "is too long (it decompresses to more than 10,008 bytes)" in clean(exc, path)
    assert most < 1 << 20  # 64 MiB would have been held had it been inflated
    exc, most = peak(lambda: read_idx(path, max_bytes=100_000))
    assert "more than 100,000 bytes" in clean(exc, path) and most < 1 << 20


def test_a_bomb_served_by_a_mirror_is_cut_short(tmp_path, monkeypatch):
    served = tmp_path / "mirror" / f"{LABELS}.gz"
    served.parent.mkdir()
    served.write_bytes(gzip.compress(bytes(4 << 20), 9))  # under the download cap, 4 MiB inside
    data = tmp_path / "data"
    data.mkdir()
    for other in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", IMAGES):
        (data / f"{other}.gz").symlink_to(MNIST_DIR / f"{other}.gz")
    monkeypatch.setattr(mnist, "MIRRORS", (served.parent.as_uri() + "/",))
    with pytest.raises(DataError, match=r"the file it served is too long \(it decompresses to "
                       r"more than 10,008 bytes\)"):
        load_mnist(data_dir=data)
    assert not (data / f"{LABELS}.gz").exists()


# -- damaged parameter files -------------------------------------------------------------------


def npz(path: Path, members: dict[str, np.ndarray | bytes], deflate: bool = False) -> Path:
    """A zip of ``.npy`` members (any array, pickled objects too) or raw bytes."""
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, value in members.items():
            if isinstance(value, np.ndarray):
                buf = BytesIO()
                np.save(buf, value, allow_pickle=True)
                value = buf.getvalue()
            archive.writestr(name, value)
    return path


def net(sizes=(6, 4, 3)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    out = {}
    for i in range(1, len(sizes)):
        out[f"W{i}.npy"] = rng.standard_normal((sizes[i - 1], sizes[i]))
        out[f"b{i}.npy"] = rng.standard_normal(sizes[i])
    return out


def unloadable(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as exc:
        io.load_params(path, **kwargs)
    message = clean(exc, path)
    assert message.endswith("; re-train or restore the file")
    return message


def test_a_truncated_npz_at_every_few_dozen_bytes(tmp_path):
    good = npz(tmp_path / "good.npz", net()).read_bytes()
    path = tmp_path / "p.npz"
    for cut in range(0, len(good), 37):
        path.write_bytes(good[:cut])
        unloadable(path)


@pytest.mark.parametrize("deflate", [False, True])
def test_flipped_bytes_in_an_npz_are_rejected_or_harmless(tmp_path, deflate):
    good = npz(tmp_path / "good.npz", net(), deflate).read_bytes()
    expected, rng = io.load_params(tmp_path / "good.npz"), np.random.default_rng(SEED)
    path, rejected = tmp_path / "p.npz", 0
    for at in rng.integers(0, len(good), 80):
        path.write_bytes(flipped(good, int(at), rng))
        try:  # with the sizes: a flipped entry count can leave a well-formed one-layer net
            got = io.load_params(path, sizes=[6, 4, 3])
        except DataError as exc:
            clean(pytest.ExceptionInfo.from_exc_info((DataError, exc, exc.__traceback__)), path)
            rejected += 1
            continue
        assert list(got) == list(expected)  # a flip in a timestamp, say: the arrays are intact
        assert all(np.array_equal(got[k], expected[k]) for k in got)
    assert rejected > 40


W, B = np.ones((6, 4)), np.ones(4)
BAD_NPZ = {
    # case: (members, what the message must say)
    "garbage member": ({"W1.npy": b"not an array at all", "b1.npy": B}, "is not an intact .npz"),
    "pickled objects": ({"W1.npy": np.array([{"x": 1}, None], dtype=object), "b1.npy": B},
                        "holds W1.npy as (2,) object"),
    "booleans": ({"W1.npy": W > 0, "b1.npy": B}, "not an intact array of real numbers"),
    "complex": ({"W1.npy": W + 1j, "b1.npy": B}, "complex128"),
    "strings": ({"W1.npy": np.array([["a"]]), "b1.npy": np.array(["a"])}, "<U1"),
    "structured": ({"W1.npy": np.zeros((6, 4), "f8,i4"), "b1.npy": B}, "real numbers"),
    "empty archive": ({}, "holds nothing, not W1, b1"),
    "extra key": ({"W1.npy": W, "b1.npy": B, "c.npy": B}, "holds W1.npy, b1.npy, c.npy, not"),
    "missing bias": ({"W1.npy": W, "W2.npy": np.ones((4, 3)), "b2.npy": np.ones(3)}, "not W1"),
    "gap": ({"W1.npy": W, "b1.npy": B, "W3.npy": W, "b3.npy": B}, "not W1, b1"),
    "no .npy": ({"W1": W, "b1": B}, "holds W1, b1, not"),
    "lower case": ({"w1.npy": W, "b1.npy": B}, "holds w1.npy"),
    "W2 rows": ({**net(), "W2.npy": np.ones((5, 3))}, r"holds W2 of shape (5, 3), not (4, 3)"),
    "b1 length": ({**net(), "b1.npy": np.ones(5)}, r"holds b1 of shape (5,), not (4,)"),
    "b1 2-D": ({**net(), "b1.npy": np.ones((1, 4))}, r"holds b1 of shape (1, 4), not (4,)"),
    "W1 1-D": ({"W1.npy": np.ones(4), "b1.npy": B}, r"holds W1 of shape (4,), not (4, 4)"),
    "W1 3-D": ({"W1.npy": np.ones((6, 4, 1)), "b1.npy": B}, "holds W1 of shape (6, 4, 1)"),
    "W1 scalar": ({"W1.npy": np.array(1.0), "b1.npy": B}, "holds W1 of shape ()"),
    "zero width": ({"W1.npy": np.ones((6, 0)), "b1.npy": np.ones(0)}, "holds W1 of shape (6, 0)"),
}


@pytest.mark.parametrize("case", BAD_NPZ)
def test_a_bad_npz_is_one_sentence(tmp_path, case):
    members, says = BAD_NPZ[case]
    assert says in unloadable(npz(tmp_path / "p.npz", members))


def test_duplicate_members_are_rejected(tmp_path):
    path = npz(tmp_path / "p.npz", net((6, 4)))
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr("W1.npy", b"\x93NUMPY")
    assert "W1.npy, b1.npy, W1.npy, not" in unloadable(path)


def test_a_huge_header_shape_allocates_nothing(tmp_path):
    header = BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    path = npz(tmp_path / "p.npz", {"W1.npy": header.getvalue() + bytes(64), "b1.npy": B})
    tracemalloc.start()
    try:
        message = unloadable(path)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20  # not 8 TB, nor a MemoryError
    finally:
        tracemalloc.stop()
    assert "holds W1.npy as (1000000, 1000000) float64 in 192 bytes" in message


def test_wrong_layer_sizes_are_named(tmp_path):
    path = npz(tmp_path / "p.npz", net((6, 4, 3)))
    assert "holds a 6-4-3 net, not the [784, 50, 10] expected" in unloadable(path,
                                                                            sizes=[784, 50, 10])
    assert set(io.load_params(path, sizes=(6, 4, 3))) == {"W1", "b1", "W2", "b2"}
