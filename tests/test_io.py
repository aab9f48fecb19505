"""nnx.io: what is in the way where a file should be, capped downloads, and load_params.

Every bad input is one DataError sentence naming the file; a FIFO is never opened.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import zipfile

import numpy as np
import pytest

from nnx import io
from nnx.errors import DataError


@contextlib.contextmanager
def no_blocking(seconds: int = 20):
    """Fail, rather than hang, if the code opens a FIFO (the alarm interrupts the open)."""
    def expire(signum, frame):
        pytest.fail("blocked: a FIFO was opened")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def one_sentence(exc: pytest.ExceptionInfo, path) -> str:
    message = str(exc.value)
    assert "\n" not in message and ". " not in message and message.startswith(str(path))
    return message


def net(sizes=(6, 4, 3), seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {}
    for i, (m, n) in enumerate(itertools.pairwise(sizes), start=1):
        params[f"W{i}"], params[f"b{i}"] = rng.standard_normal((m, n)), rng.standard_normal(n)
    return params


# -- file_size: what is in the way --------------------------------------------------------


def test_file_size_of_a_file_and_of_nothing(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    assert io.file_size(tmp_path / "f") == io.file_size(tmp_path / "link") == 3
    assert io.file_size(tmp_path / "missing") is None
    assert io.file_size(tmp_path / "f" / "under-a-file") is None


def _make(kind: str, path):
    if kind == "directory":
        path.mkdir()
    elif kind == "FIFO":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock
    else:
        path.symlink_to(path.parent / "nowhere")
    return None


KINDS = {"directory": "is a directory, not a regular file", "FIFO": "is a FIFO, not a regular",
         "socket": "is a socket, not a regular", "dangling symlink": "is a dangling symbolic link"}


@pytest.mark.parametrize("kind", KINDS)
def test_file_size_names_what_is_in_the_way(tmp_path, kind):
    path = tmp_path / "x"
    sock = _make(kind, path)
    try:
        with no_blocking(), pytest.raises(io.BadFile, match=KINDS[kind]):
            io.file_size(path)
    finally:
        if sock:
            sock.close()


# -- downloads are capped --------------------------------------------------------------


def test_download_stops_past_max_bytes_and_leaves_nothing(tmp_path):
    served = tmp_path / "served"
    served.write_bytes(bytes(300_000))
    target = tmp_path / "out" / "file"
    target.parent.mkdir()
    seen = []
    with pytest.raises(io.BadFile, match=r"is too long \(more than 100,000 bytes\)"):
        io.download(served.as_uri(), target, seen.append, 5.0, max_bytes=100_000)
    assert seen == [] and list(target.parent.iterdir()) == []
    assert io.download(served.as_uri(), target, len, 5.0, max_bytes=300_000) == 300_000
    assert target.read_bytes() == bytes(300_000)


# -- load_params --------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(6, 4, 3), (5, 7, 2, 3), (4, 2)])
def test_load_params_round_trips_any_layered_net(tmp_path, sizes):
    params = net(sizes)
    io.save_params(tmp_path / "p.npz", params)
    got = io.load_params(tmp_path / "p.npz", sizes=list(sizes))
    assert list(got) == list(params)
    for key, value in params.items():
        np.testing.assert_array_equal(got[key], value)
        assert got[key].dtype == value.dtype and got[key].flags.writeable


def test_load_params_takes_integers_fortran_order_big_endian_and_compression(tmp_path):
    params = {"W1": np.asfortranarray(np.arange(6.0).reshape(2, 3)).astype(">f4"),
              "b1": np.arange(3, dtype=np.int16)}
    np.savez_compressed(tmp_path / "p.npz", **params)
    got = io.load_params(tmp_path / "p.npz", sizes=[2, 3])
    np.testing.assert_array_equal(got["W1"], params["W1"])
    np.testing.assert_array_equal(got["b1"], params["b1"])


def test_load_params_checks_the_expected_sizes(tmp_path):
    io.save_params(tmp_path / "p.npz", net((6, 4, 3)))
    with pytest.raises(DataError, match=r"holds a 6-4-3 net, not the \[6, 5, 3\] expected") as exc:
        io.load_params(tmp_path / "p.npz", sizes=[6, 5, 3])
    assert "re-train or restore the file" in one_sentence(exc, tmp_path / "p.npz")


@pytest.mark.parametrize("kind", ["missing", *KINDS])
def test_load_params_of_no_file_is_one_sentence(tmp_path, kind):
    path = tmp_path / "p.npz"
    sock = None if kind == "missing" else _make(kind, path)
    try:
        with no_blocking(), pytest.raises(DataError) as exc:
            io.load_params(path)
        assert ("does not exist" if kind == "missing" else KINDS[kind]) in one_sentence(exc, path)
    finally:
        if sock:
            sock.close()


def test_load_params_rejects_what_the_old_loader_returned(tmp_path):
    path = tmp_path / "p.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("W1", b"garbage, not an array")
    with pytest.raises(DataError, match=r"holds W1, not W1, b1, \.\.\., Wk, bk") as exc:
        io.load_params(path)
    one_sentence(exc, path)
