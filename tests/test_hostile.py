"""A run directory, a checkpoint and an image as a hostile user would write them: each ends
in one sentence naming the file and the field, within a bounded amount of memory."""

from __future__ import annotations

import json
import os
import signal
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnx import program, rundir, runfiles, stops
from nnx.errors import DataError, InputError
from nnx.photos import read_image
from nnx.run import Run, load_run
from nnx.training import TrainConfig
from tests.helpers import one_line_error, run

SIZES = [784, 5, 10]


def _data(n: int = 60):
    rng = np.random.default_rng(0)
    x = rng.random((n, 784), dtype=np.float32)
    t = rng.integers(0, 10, n)
    return (x, t), (x[:20], t[:20])


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A run stopped after 7 iterations: config.json and checkpoint.npz (Adam: every slot)."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    config = TrainConfig(device="cpu", iters=20, batch_size=10, hidden=(5,), optimizer="adam",
                         lr=0.001, eval_every=3)
    calls = iter(range(100))
    result = Run.create(out, config).train(_data(), stop=lambda: next(calls) >= 7, plots=False,
                                           log=lambda _: None, progress=False)
    assert result.status == "interrupted"
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    config = TrainConfig(device="cpu", iters=6, batch_size=10, hidden=(5,), eval_every=3)
    Run.create(out, config).train(_data(), plots=False, log=lambda _: None, progress=False)
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in os.listdir(src):
        if not name.startswith("."):
            (dst / name).write_bytes((src / name).read_bytes())
    return dst


def _members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rewrite(run_dir: Path, change) -> None:
    arrays = _members(run_dir / rundir.CHECKPOINT)
    meta = json.loads(bytes(arrays["meta"]))
    change(meta, arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(run_dir / rundir.CHECKPOINT, **arrays)


def _resume(run_dir: Path):
    config = runfiles.read_config(run_dir)
    return rundir.load_checkpoint(run_dir, config, SIZES)


def _set(path: str, value):
    def change(meta, _arrays):
        *head, last = path.split(".")
        target = meta
        for k in head:
            target = target[k]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return change


TAMPERED = {  # the field a sentence must name, and the change
    "rng-string": ("rng", _set("rng", "x")),
    "rng-other-generator": ("rng.bit_generator", _set("rng.bit_generator", "MT19937")),
    "rng-negative": ("rng.state.state", _set("rng.state.state", -1)),
    "rng-huge": ("rng", _set("rng.state.inc", 2**200)),
    "iteration-negative": ("iteration", _set("iteration", -1)),
    "iteration-past-the-run": ("iteration", _set("iteration", 10**6)),
    "iteration-a-string": ("iteration", _set("iteration", "7")),
    "block-start-past-iteration": ("block_start", _set("block_start", 8)),
    "history-a-string": ("history", _set("history", "x")),
    "history-a-list": ("history", _set("history", [])),
    "history-key-missing": ("history", _set("history.loss", KeyError)),
    "history-short": ("history.loss", _set("history.loss", [0.5])),
    "history-strings": ("history.test_acc", _set("history.test_acc", ["a", "b"])),
    "optimizer-iter-string": ("optimizer.iter", _set("optimizer.iter", "x")),
    "optimizer-iter-wrong": ("optimizer.iter", _set("optimizer.iter", 3)),
    "optimizer-extra": ("optimizer", _set("optimizer.lr", 5.0)),
    "elapsed-negative": ("elapsed", _set("elapsed", -1)),
    "meta-a-list": ("meta", lambda meta, _a: (meta.clear())),
}


@pytest.mark.parametrize("case", TAMPERED, ids=list(TAMPERED))
def test_a_tampered_checkpoint_field_is_one_sentence_naming_it(stopped, tmp_path, case):
    _refused_naming(stopped, tmp_path, *TAMPERED[case], _resume)


def _refused_naming(stopped: Path, tmp_path: Path, field: str, change: Any,
                    resume: Any) -> None:
    """A copy of ``stopped`` whose checkpoint ``change`` tampers is refused by ``resume`` in
    one sentence naming the file and ``field``."""
    run_dir = _copy(stopped, tmp_path / "run")
    _rewrite(run_dir, change)
    with pytest.raises(DataError) as info:
        resume(run_dir)
    message = str(info.value)
    assert "checkpoint.npz" in message and field in message, message
    assert "\n" not in message


def _array_member(name: str, array: np.ndarray):
    def change(_meta, arrays):
        arrays[name] = array
    return change


BAD_ARRAYS = {
    "learning-rate-override": _array_member("opt/__dict__/lr", np.array(100.0)),
    "complex-params": _array_member("param/W1", np.zeros((784, 5), complex)),
    "structured-params": _array_member("param/b1", np.zeros(5, "f8,f8")),
    "string-params": _array_member("param/b1", np.array(["a"] * 5)),
    "nan-params": _array_member("param/b1", np.full(5, np.nan)),
    "inf-state": _array_member("opt/m/b1", np.full(5, np.inf)),
    "wrong-shape": _array_member("param/W1", np.zeros((784, 6))),
    "state-of-another-optimizer": _array_member("opt/h/W1", np.zeros((784, 5))),
}


@pytest.mark.parametrize("case", BAD_ARRAYS, ids=list(BAD_ARRAYS))
def test_a_bad_checkpoint_array_is_refused(stopped, tmp_path, case):
    run_dir = _copy(stopped, tmp_path / "run")
    _rewrite(run_dir, BAD_ARRAYS[case])
    with pytest.raises(DataError, match=r"checkpoint\.npz .*; restore the file"):
        _resume(run_dir)


def _bomb(path: Path, name: str, method: int, size: int = 64 << 20) -> None:
    """Add a member ``name`` that inflates to ``size`` zero bytes (a few KB on disk)."""
    with zipfile.ZipFile(path, "a", compression=method) as z, z.open(name, "w") as f:
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    except DataError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize(("name", "method"), [("extra.npy", zipfile.ZIP_BZIP2),
                                              ("extra.npy", zipfile.ZIP_DEFLATED),
                                              ("param/W1.npy", zipfile.ZIP_DEFLATED)],
                         ids=["bzip2-extra", "deflate-extra", "deflate-as-W1"])
def test_a_checkpoint_bomb_is_refused_before_it_inflates(stopped, tmp_path, name, method):
    run_dir = _copy(stopped, tmp_path / "run")
    if name == "param/W1.npy":  # replace W1 by a member that declares 64 MB
        arrays = _members(run_dir / rundir.CHECKPOINT)
        del arrays["param/W1"]
        np.savez(run_dir / rundir.CHECKPOINT, **arrays)
    _bomb(run_dir / rundir.CHECKPOINT, name, method)
    with pytest.raises(DataError, match=r"checkpoint\.npz"):
        _resume(run_dir)
    assert _peak(lambda: _resume(run_dir)) < 8 << 20  # the arrays of the net: about 100 KB


@pytest.mark.parametrize(("rows", "why"), [(784 * 2000, r"is [\d,]+ bytes"),
                                           (784 * 30, "declares W1")])
def test_a_params_bomb_is_refused_before_it_inflates(finished, tmp_path, rows, why):
    run_dir = _copy(finished, tmp_path / "run")
    params = _members(run_dir / rundir.PARAMS)
    big = (rows, 5)  # up to 62 MB of zeros in W1's header and data; deflates to ~60 KB
    with zipfile.ZipFile(run_dir / rundir.PARAMS, "w", zipfile.ZIP_DEFLATED) as z:
        for key, a in params.items():
            with z.open(f"{key}.npy", "w") as f:
                if key != "W1":
                    np.lib.format.write_array(f, a)
                    continue
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "<f8", "fortran_order": False, "shape": big})
                f.write(bytes(big[0] * 5 * 8))
    with pytest.raises(DataError, match=rf"params\.npz {why}"):
        load_run(run_dir, "cpu")
    assert _peak(lambda: load_run(run_dir, "cpu")) < 8 << 20


@pytest.mark.parametrize(("field", "value"), [
    ("hidden", 5), ("hidden", None), ("hidden", ["5"]), ("optimizer_options", [0.9]),
    ("optimizer_options", {"nope": 1.0}), ("iters", "20"), ("lr", "x"), ("seed", -1),
    ("optimizer", "nope"), ("sizes", [784, 6, 10]),
])
def test_a_tampered_config_field_is_one_sentence_naming_it(stopped, tmp_path, field, value):
    run_dir = _copy(stopped, tmp_path / "run")
    config = json.loads((run_dir / rundir.CONFIG).read_text())
    config[field] = value
    (run_dir / rundir.CONFIG).write_text(json.dumps(config))
    with pytest.raises(DataError) as info:
        Run.resume(run_dir)
    assert "config.json" in str(info.value) and field in str(info.value), str(info.value)


@pytest.mark.parametrize("name", ["config.json", "history.json"])
def test_deeply_nested_json_is_one_sentence(finished, tmp_path, name):
    run_dir = _copy(finished, tmp_path / "run")
    (run_dir / name).write_text("[" * 200_000)
    read = runfiles.read_history if name == "history.json" else runfiles.read_net_config
    with pytest.raises(DataError, match="nests too deeply"):
        read(run_dir)


@pytest.mark.parametrize("value", ["0.9", [0.9], 2.0])
def test_a_bad_final_test_accuracy_is_one_sentence(finished, tmp_path, value):
    run_dir = _copy(finished, tmp_path / "run")
    history = json.loads((run_dir / rundir.HISTORY).read_text())
    history["final_test_acc"] = value
    (run_dir / rundir.HISTORY).write_text(json.dumps(history))
    with pytest.raises(DataError, match=r"history\.json holds final_test_acc"):
        runfiles.read_history(run_dir)


def test_a_net_of_other_than_ten_classes_is_refused(finished, tmp_path):
    run_dir = _copy(finished, tmp_path / "run")
    config = json.loads((run_dir / rundir.CONFIG).read_text())
    config["sizes"] = [784, 5, 3]
    (run_dir / rundir.CONFIG).write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"config\.json holds sizes .* 10 classes"):
        load_run(run_dir, "cpu")


def test_nan_params_are_refused(finished, tmp_path):
    run_dir = _copy(finished, tmp_path / "run")
    params = _members(run_dir / rundir.PARAMS)
    params["b2"][3] = np.nan
    np.savez(run_dir / rundir.PARAMS, **params)
    with pytest.raises(DataError, match=r"params\.npz holds NaN or infinite values in b2"):
        load_run(run_dir, "cpu")


# -- links ------------------------------------------------------------------------------------
def test_a_planted_lock_link_is_never_followed(stopped, tmp_path):
    run_dir = _copy(stopped, tmp_path / "run")
    outside = tmp_path / "outside"
    (run_dir / ".lock").symlink_to(outside)
    with pytest.raises(InputError, match=r"\.lock is a symbolic link"):
        Run.resume(run_dir)
    assert not outside.exists()


@pytest.mark.parametrize("name", [rundir.CONFIG, rundir.CHECKPOINT])
def test_a_run_file_that_is_a_link_is_refused(stopped, tmp_path, name):
    run_dir = _copy(stopped, tmp_path / "run")
    (run_dir / name).rename(tmp_path / name)
    (run_dir / name).symlink_to(tmp_path / name)
    with pytest.raises(DataError, match="is a symbolic link"):
        _resume(run_dir)


# -- images ------------------------------------------------------------------------------------
def _png(path: Path, width: int, height: int) -> None:
    """A valid greyscale PNG of zeros, compressed to a few hundred KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    z, row, parts = zlib.compressobj(9), bytes(width + 1), []
    for _ in range(height):
        parts.append(z.compress(row))
    parts.append(z.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IDAT", b"".join(parts)) +
        chunk(b"IEND", b""))


def test_an_image_of_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    _png(path, 9400, 9400)
    with pytest.raises(DataError, match=r"is 9400x9400 pixels"):
        read_image(path)
    assert _peak(lambda: read_image(path)) < 8 << 20


def test_a_large_photo_is_reduced_before_its_arithmetic(tmp_path):
    from PIL import Image, ImageDraw

    img = Image.new("L", (6000, 6000), 255)
    ImageDraw.Draw(img).ellipse((2000, 1500, 4000, 4500), outline=0, width=300)
    img.save(tmp_path / "zero.png")
    del img
    peak = _peak(lambda: read_image(tmp_path / "zero.png"))
    assert read_image(tmp_path / "zero.png").max() == pytest.approx(1.0)
    assert peak < 200 << 20  # 36 megapixels, in float64 arrays: 1.7 GB unreduced


# -- stops ---------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the point
def test_a_stop_swallowed_by_a_finalizer_still_stops_the_program(capsys):
    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # lands here: Python ignores what it raises

    def work(_args) -> int:
        Finalized()  # collected at once
        return 0

    import argparse

    stops._received.clear()
    status = program.run_program("prog", argparse.ArgumentParser(), work, [])
    stops._received.clear()
    assert status == 130
    assert capsys.readouterr().err.strip().endswith("prog: interrupted")


def test_resume_of_a_tampered_checkpoint_exits_2_in_one_line(stopped, tmp_path, mnist_dir):
    run_dir = _copy(stopped, tmp_path / "run")
    _rewrite(run_dir, _set("rng", "x"))
    proc = run("-m", "nnx.cli", "train", "--resume", str(run_dir), "--data-dir", str(mnist_dir))
    assert proc.returncode == 2
    assert "checkpoint.npz holds rng" in one_line_error(proc)


@pytest.mark.parametrize("name", ["params.npz", "history.csv", "batchnorm.npz"])
@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_result_file_that_is_not_a_plain_file_is_refused_before_resuming(
        stopped, tmp_path, name, kind):
    """Found only at the final save, it would cost every iteration since the checkpoint."""
    run_dir = _copy(stopped, tmp_path / "run")
    (run_dir / name).unlink(missing_ok=True)  # a stopped run may hold one already
    if kind == "folder":
        (run_dir / name).mkdir()
    else:
        (run_dir / name).symlink_to(tmp_path / "elsewhere")
    before = sorted(os.listdir(run_dir))
    with pytest.raises(InputError, match=f"its {name} is not a plain file"):
        Run.resume(run_dir)
    assert sorted(os.listdir(run_dir)) == before and not (tmp_path / "elsewhere").exists()
