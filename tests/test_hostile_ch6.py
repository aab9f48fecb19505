"""Chapter 6 run directories as hostile input: ``batchnorm.npz``, the config's batch norm,
dropout, weight decay and validation split, the dropout masks' generator in a checkpoint;
and a stop during ``nnx bench training`` that must stop it."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnx import rundir, runfiles, stops
from nnx.errors import DataError
from nnx.run import Run, load_run
from nnx.training import TrainConfig
from tests.helpers import one_line_error, run
from tests.test_hostile import (
    SIZES,
    _bomb,
    _copy,
    _data,
    _members,
    _peak,
    _refused_naming,
    _set,
)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A batch norm and dropout run stopped after 7 iterations: its checkpoint, and the
    parameters and batchnorm.npz an interrupted run saves."""
    out = tmp_path_factory.mktemp("stopped-ch6") / "run"
    config = TrainConfig(device="cpu", iters=20, batch_size=10, hidden=(5,), eval_every=3,
                         batch_norm=True, dropout=0.2, weight_decay=0.01, val_split=0.2)
    calls = iter(range(100))
    result = Run.create(out, config).train(_data(), stop=lambda: next(calls) >= 7, plots=False,
                                           log=lambda _: None, progress=False)
    assert result.status == "interrupted"
    assert (out / rundir.BATCHNORM).is_file()
    return out


def _resume(run_dir: Path):
    return rundir.load_checkpoint(run_dir, runfiles.read_config(run_dir), SIZES)


# -- batchnorm.npz ------------------------------------------------------------------------------
def _edit(key: str, value):
    def change(path: Path) -> None:
        arrays = _members(path)
        if value is KeyError:
            del arrays[key]
        else:
            arrays[key] = value
        np.savez(path, **arrays)
    return change


def _replace(kind: str):
    def change(path: Path) -> None:
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "directory":
            path.mkdir()
        elif kind == "device":
            path.symlink_to("/dev/zero")
        elif kind == "empty":
            path.write_bytes(b"")
    return change


def _outside_link(path: Path) -> None:
    outside = path.parent.parent / "outside.npz"
    path.rename(outside)
    path.symlink_to(outside)


BATCHNORM = {  # what batchnorm.npz holds, and what the one sentence says of it
    "missing": (_replace("missing"), "does not exist"),
    "fifo": (_replace("fifo"), "is a FIFO"),
    "directory": (_replace("directory"), "batchnorm.npz"),
    "device": (_replace("device"), "is a symbolic link"),
    "empty": (_replace("empty"), "not an intact"),
    "link": (_outside_link, "is a symbolic link"),
    "wrong-shape": (_edit("running_mean1", np.zeros(4)), "running_mean1 as (4,)"),
    "nan-variance": (_edit("running_var1", np.full(5, np.nan)), "NaN or infinite"),
    "inf-mean": (_edit("running_mean1", np.full(5, np.inf)), "NaN or infinite"),
    "negative-variance": (_edit("running_var1", -np.ones(5)), "running_var1"),
    "integer-gamma": (_edit("gamma1", np.ones(5, np.int64)), "gamma1 as"),
    "extra-member": (_edit("extra", np.ones(3)), "'extra.npy'"),
    "member-missing": (_edit("beta1", KeyError), "lacks beta1"),
}


@pytest.mark.parametrize("case", BATCHNORM, ids=list(BATCHNORM))
def test_a_bad_batchnorm_file_is_one_sentence_naming_it(stopped, tmp_path, case):
    change, says = BATCHNORM[case]
    run_dir = _copy(stopped, tmp_path / "run")
    change(run_dir / rundir.BATCHNORM)
    with pytest.raises(DataError) as info:
        load_run(run_dir, "cpu")
    message = str(info.value)
    assert "batchnorm.npz" in message and says in message, message
    assert "\n" not in message


@pytest.mark.parametrize(("name", "method"), [("extra.npy", zipfile.ZIP_BZIP2),
                                              ("gamma1.npy", zipfile.ZIP_DEFLATED)],
                         ids=["bzip2-extra", "deflate-as-gamma1"])
def test_a_batchnorm_bomb_is_refused_before_it_inflates(stopped, tmp_path, name, method):
    run_dir = _copy(stopped, tmp_path / "run")
    path = run_dir / rundir.BATCHNORM
    if name == "gamma1.npy":
        _edit("gamma1", KeyError)(path)
    _bomb(path, name, method)
    with pytest.raises(DataError, match=r"batchnorm\.npz"):
        load_run(run_dir, "cpu")
    assert _peak(lambda: load_run(run_dir, "cpu")) < 8 << 20  # the net itself: about 40 KB


def test_a_batchnorm_file_beside_a_config_without_batch_norm_is_refused(stopped, tmp_path):
    run_dir = _copy(stopped, tmp_path / "run")
    config = json.loads((run_dir / rundir.CONFIG).read_text())
    (run_dir / rundir.CONFIG).write_text(json.dumps({**config, "batch_norm": False}))
    with pytest.raises(DataError, match="batch_norm is false"):
        load_run(run_dir, "cpu")


def test_predict_on_a_batchnorm_fifo_is_one_line_and_does_not_hang(stopped, tmp_path):
    from PIL import Image

    run_dir = _copy(stopped, tmp_path / "run")
    _replace("fifo")(run_dir / rundir.BATCHNORM)
    image = tmp_path / "digit.png"
    pixels = np.full((28, 28), 255, np.uint8)
    pixels[6:22, 12:16] = 0
    Image.fromarray(pixels).save(image)
    proc = run("-m", "nnx.cli", "predict", "--device", "cpu", str(run_dir), str(image))
    assert proc.returncode == 2
    assert "batchnorm.npz is a FIFO" in one_line_error(proc)


# -- config.json --------------------------------------------------------------------------------
CONFIG = [("batch_norm", v) for v in ("yes", 1, None, [True])] + \
    [("dropout", v) for v in ("0.2", [0.2], None, -0.1, 1.0)] + \
    [("weight_decay", v) for v in ("x", None, -1)] + \
    [("val_split", v) for v in ("0.1", None, 1.0, [0.1], True)]


@pytest.mark.parametrize(("field", "value"), CONFIG)
def test_a_tampered_chapter6_config_field_is_one_sentence_naming_it(stopped, tmp_path, field,
                                                                     value):
    run_dir = _copy(stopped, tmp_path / "run")
    config = json.loads((run_dir / rundir.CONFIG).read_text())
    (run_dir / rundir.CONFIG).write_text(json.dumps({**config, field: value}))
    for read in (lambda: load_run(run_dir, "cpu"), lambda: Run.resume(run_dir)):
        with pytest.raises(DataError) as info:
            read()
        assert "config.json" in str(info.value) and field in str(info.value), str(info.value)


# -- the checkpoint's dropout generator and batch norm statistics -------------------------------
CHECKPOINT = {  # the field a sentence must name, and the change
    "mask-rng-missing": ("mask_rng", _set("mask_rng", KeyError)),
    "mask-rng-null": ("mask_rng", _set("mask_rng", None)),
    "mask-rng-string": ("mask_rng", _set("mask_rng", "x")),
    "mask-rng-even-inc": ("mask_rng.state", _set("mask_rng.state.inc", 0)),
    "mask-rng-has-uint32": ("mask_rng", _set("mask_rng.has_uint32", 2)),
    "mask-rng-other-generator": ("mask_rng.bit_generator",
                                 _set("mask_rng.bit_generator", "MT19937")),
    "negative-running-var": ("buf/running_var1",
                             lambda _m, a: a.update({"buf/running_var1": -np.ones(5)})),
    "running-var-missing": ("buf/running_var1", lambda _m, a: a.pop("buf/running_var1")),
}


@pytest.mark.parametrize("case", CHECKPOINT, ids=list(CHECKPOINT))
def test_a_tampered_chapter6_checkpoint_is_one_sentence_naming_it(stopped, tmp_path, case):
    _refused_naming(stopped, tmp_path, *CHECKPOINT[case], _resume)


def test_a_dropout_generator_in_a_run_without_dropout_is_refused(stopped, tmp_path):
    run_dir = _copy(stopped, tmp_path / "run")
    config = json.loads((run_dir / rundir.CONFIG).read_text())
    (run_dir / rundir.CONFIG).write_text(json.dumps({**config, "dropout": 0.0}))
    with pytest.raises(DataError, match="mask_rng"):
        _resume(run_dir)


def test_the_untampered_checkpoint_still_resumes(stopped, tmp_path):
    run_dir = _copy(stopped, tmp_path / "run")
    assert _resume(run_dir).mask_rng is not None
    net, _ = load_run(run_dir, "cpu")
    assert net.batchnorms


# -- a stop during nnx bench training -----------------------------------------------------------
def test_a_stop_caught_by_train_stops_bench_training(monkeypatch):
    from nnx.bench import training as bench
    from nnx.training import train

    def stopped_train(config, data, **kwargs):  # as a Ctrl-C in the first iteration ends it
        return train(config, data, **kwargs, stop=lambda: True)

    monkeypatch.setattr(bench, "train", stopped_train)
    loops: list[float] = []
    job = bench.nnx_training("cpu", "float64", loops)
    with pytest.raises(stops.Stopped):
        job(_data(200), 5, 0)
    assert loops == []  # no timing of a run cut short
