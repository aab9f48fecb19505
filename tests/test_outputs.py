"""Where the programs' output goes wrong: stdout that cannot be written (a closed pipe,
``/dev/full``), a full disk mid-training and while saving an evaluation or a benchmark, an
overwritten run's old files, default run directories, and a run directory another process
holds. The work is never lost and every failure is one sentence."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nnx.io
from nnx import rundir
from nnx.cli import main as nnx_main
from nnx.cli import train as train_cli
from tests.helpers import ROOT, trained_run

SMALL = ["--device", "cpu", "--iters", "30", "--batch-size", "10", "--eval-every", "10",
         "--hidden", "5", "--lr", "0.5", "--no-plots"]  # learns: 0.21 test accuracy


def _enospc(path: object = None) -> OSError:
    """A full disk, as write() reports it (no file named)."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory, "finished", *SMALL)


# -- stdout -----------------------------------------------------------------------------------
def _train(out: Path, mnist_dir: Path, stdout, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nnx.cli", "train", *SMALL, "--data-dir", str(mnist_dir),
         "--out", str(out)], cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def _saved(out: Path) -> None:
    assert json.loads((out / "history.json").read_text())["status"] == "completed"
    assert (out / "params.npz").is_file()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_stdout_on_a_full_device_costs_the_run_nothing(mnist_dir, tmp_path):
    out = tmp_path / "run"
    with open("/dev/full", "w") as full:  # unbuffered: the first line already fails
        proc = _train(out, mnist_dir, full, PYTHONUNBUFFERED="1")
        _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "nnx train: error: cannot write to standard output (No space left on device)"), err
    _saved(out)


def test_a_closed_pipe_ends_as_sigpipe_would_once_the_run_is_saved(mnist_dir, tmp_path):
    out = tmp_path / "run"
    proc = _train(out, mnist_dir, subprocess.PIPE)  # block-buffered: it fails at the end
    proc.stdout.close()  # nnx train | head, with head long gone
    err = proc.stderr.read()
    proc.wait(timeout=600)
    assert proc.returncode == 141, err  # 128 + SIGPIPE, as `seq 1 100000 | head` ends
    assert err == "", err  # no "Exception ignored", no traceback
    _saved(out)


# -- a full disk --------------------------------------------------------------------------------
def test_a_full_disk_at_a_checkpoint_names_the_directory_and_keeps_the_last(
        mnist_dir, tmp_path, capsys, monkeypatch):
    real, calls = rundir.save_checkpoint, []

    def full_the_second_time(path, c):
        calls.append(c.iteration)
        if len(calls) == 2:
            raise _enospc()
        return real(path, c)

    monkeypatch.setattr(rundir, "save_checkpoint", full_the_second_time)
    out = tmp_path / "run"
    assert nnx_main(["train", *SMALL, "--data-dir", str(mnist_dir), "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert line == (f"nnx train: error: cannot save a checkpoint of the run in {out}: No space "
                    "left on device; free some space or choose another --out (the last "
                    "checkpoint, if any, is kept)")
    assert rundir.load_checkpoint(out).iteration == calls[0] == 10  # resumable from there
    assert not (out / "history.json").exists()


def _full_disk_for(monkeypatch, hit) -> None:
    """``nnx.io.write_bytes`` fails as a full disk does for each path that ``hit`` picks."""
    real = nnx.io.write_bytes

    def full(path, data):
        if hit(Path(path)):
            raise _enospc()
        return real(path, data)

    monkeypatch.setattr(nnx.io, "write_bytes", full)


def test_a_full_disk_while_evaluating_names_the_directory_and_writes_nothing(
        finished, mnist_dir, tmp_path, capsys, monkeypatch):
    _full_disk_for(monkeypatch, lambda path: path.name == "evaluation.json")
    out = tmp_path / "eval"
    code = nnx_main(["evaluate", str(finished), "--device", "cpu", "--data-dir", str(mnist_dir),
                     "--out", str(out)])
    assert code == 2
    assert _one_line(capsys).startswith(f"nnx evaluate: error: cannot save the evaluation in "
                                        f"{out}: No space left on device; free some space")
    assert not out.exists()  # no confusion.png without its evaluation: nothing, not even --out


def test_a_full_disk_while_saving_a_benchmark_names_the_directory(tmp_path, capsys,
                                                                  monkeypatch):
    _full_disk_for(monkeypatch, lambda path: path.suffix == ".md")
    out = tmp_path / "bench"
    code = nnx_main(["bench", "--device", "cpu", "--repeat", "2", "--numerical-repeat", "1",
                     "--loop-sample", "8", "--quiet", "--no-peer", "--hidden", "5",
                     "--out", str(out)])
    assert code == 2
    assert _one_line(capsys).startswith(f"nnx bench: error: cannot save the results in {out}: "
                                        "No space left on device")
    assert not out.exists()  # made for the results, and removed with them


# -- stale and shared run directories -------------------------------------------------------------
def test_overwrite_removes_the_old_runs_evaluation(finished, mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert nnx_main(["evaluate", str(finished), "--device", "cpu", "--data-dir", str(mnist_dir),
                     "--out", str(out)]) == 0
    assert nnx_main(["train", *SMALL, "--data-dir", str(mnist_dir), "--out", str(out),
                     "--overwrite"]) == 0
    capsys.readouterr()
    names = {p.name for p in out.iterdir()}
    assert "params.npz" in names and not names & set(rundir.EVALUATION_FILES), names


def test_runs_started_in_the_same_second_get_directories_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_cli.time, "strftime", lambda _fmt: "20260101-000000")
    made: list[Path] = []
    config = train_cli.TrainConfig()
    outs = [train_cli._default_out(config, made) for _ in range(3)]
    assert [p.name for p in outs] == ["20260101-000000-backprop", "20260101-000000-backprop-2",
                                      "20260101-000000-backprop-3"]
    assert all(p.is_dir() for p in outs) and Path("runs") in made


def test_a_runs_folder_nnx_cannot_write_is_one_sentence_with_the_fix(tmp_path, capsys,
                                                                      monkeypatch):
    """As a bind mount that Docker made as root is for a container's UID 1000."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    real = Path.mkdir

    def refused(self, *args, **kwargs):
        if self.parent.name == "runs":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refused)
    assert nnx_main(["train", *SMALL, "--data-dir", str(tmp_path), "--no-download"]) == 2
    line = _one_line(capsys)
    assert line.startswith("nnx train: error: cannot write to output directory runs/"), line
    assert "permission denied" in line and "chown" in line, line
    assert not any((tmp_path / "runs").iterdir())


def test_a_run_without_out_that_fails_leaves_no_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert nnx_main(["train", *SMALL, "--data-dir", str(tmp_path / "empty"),
                     "--no-download"]) == 2
    assert "MNIST files missing" in _one_line(capsys)
    assert not (tmp_path / "runs").exists()


def test_evaluate_refuses_a_run_directory_another_process_holds(finished, mnist_dir, tmp_path,
                                                                capsys):
    pytest.importorskip("fcntl")
    held = tmp_path / "held"
    held.mkdir()
    for name in ("config.json", "history.json", "params.npz"):
        (held / name).write_bytes((finished / name).read_bytes())
    with rundir.locked(held):  # as a resuming nnx train holds it
        code = nnx_main(["evaluate", str(held), "--device", "cpu", "--data-dir",
                         str(mnist_dir)])
    assert code == 2
    assert f"another process is writing the run in {held}" in _one_line(capsys)
    assert not set(rundir.EVALUATION_FILES) & {p.name for p in held.iterdir()}
