"""Runs that survive: stop signals, consistent run directories, and --resume bit for bit.

The reference for a resumed run is the same run left alone: its parameters must be equal
to the last bit on the same device."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import nnx.io
from nnx import rundir
from nnx.cli import main as nnx_main
from nnx.errors import DataError, InputError
from nnx.io import load_params
from nnx.mnist import load_mnist
from nnx.training import TrainConfig, train

ADAM = ["--device", "cpu", "--optimizer", "adam", "--lr", "0.001", "--iters", "3000",
        "--no-plots"]


def _nnx(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nnx.cli", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted Adam run's parameters."""
    from tests.conftest import MNIST_DIR

    out = tmp_path_factory.mktemp("ref") / "run"
    code, _, err = _finish(_nnx(*ADAM, "--data-dir", str(MNIST_DIR), "--out", str(out)))
    assert code == 0, err
    return load_params(out / "params.npz")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_saves_and_resume_continues_bit_for_bit(mnist_dir, tmp_path, reference,
                                                              sig):
    out = tmp_path / "run"
    proc = _nnx(*ADAM, "--data-dir", str(mnist_dir), "--out", str(out))
    deadline, line = time.monotonic() + 120, ""
    while "epoch" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
    proc.send_signal(sig)
    code, _, err = _finish(proc)
    assert code == 128 + sig, err
    assert err.strip().splitlines()[-1] == "nnx train: interrupted"
    history = json.loads((out / "history.json").read_text())
    assert history["status"] == "interrupted" and 600 <= len(history["loss"]) < 3000
    assert (out / "checkpoint.npz").exists() and (out / "params.npz").exists()
    code, stdout, err = _finish(_nnx("--resume", str(out), "--data-dir", str(mnist_dir)))
    assert code == 0, err
    assert f"resumed at iteration {len(history['loss'])}" in stdout
    history = json.loads((out / "history.json").read_text())
    assert history["status"] == "completed" and len(history["loss"]) == 3000
    assert not (out / "checkpoint.npz").exists()  # a completed run has nothing to resume
    resumed = load_params(out / "params.npz")
    for key, want in reference.items():
        assert np.array_equal(resumed[key], want), key


def _small():
    from tests.conftest import MNIST_DIR

    (x, t), (xt, tt) = load_mnist(data_dir=MNIST_DIR, download=False)
    return (x[:3000], t[:3000]), (xt[:500], tt[:500])


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_resuming_from_any_checkpoint_equals_the_run_left_alone(mnist_dir, optimizer):
    data = _small()

    def config(device="cpu"):
        return TrainConfig(device=device, iters=260, optimizer=optimizer, lr=0.01,
                           eval_every=100)

    quiet = {"log": lambda _: None, "progress": False}
    alone = train(config(), data, **quiet)
    checkpoints = []
    train(config(), data, on_checkpoint=checkpoints.append, checkpoint_every=70, **quiet)
    assert [c.iteration for c in checkpoints] == [70, 140, 210]
    for c in checkpoints:
        resumed = train(config(), data, resume=c, **quiet)
        for key, want in alone.net.params.items():
            assert np.array_equal(resumed.net.params[key], want), (c.iteration, key)
        assert resumed.history["loss"] == alone.history["loss"]
        assert resumed.history["test_acc"] == alone.history["test_acc"]
    # A run moved to another device continues the same numbers (strict: NumPy underneath).
    moved = train(config("strict"), data, resume=checkpoints[1], **quiet)
    for key, want in alone.net.params.items():
        got = moved.net.backend.to_numpy(moved.net.params[key])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_a_stop_polled_between_iterations_ends_exactly_there(mnist_dir):
    data, calls = _small(), []
    result = train(TrainConfig(device="cpu", iters=300, eval_every=100), data,
                   log=lambda _: None, progress=False,
                   stop=lambda: calls.append(1) or len(calls) > 123)
    assert result.status == "interrupted" and result.checkpoint.iteration == 123
    assert len(result.history["loss"]) == 123 and result.checkpoint.block_start == 100


def _cli(*args: str) -> int:
    return nnx_main(["train", "--device", "cpu", "--iters", "20", "--eval-every", "10",
                     "--no-plots", *args])


def test_a_used_run_directory_is_refused_until_resumed_or_overwritten(mnist_dir, tmp_path,
                                                                      capsys):
    out = tmp_path / "run"
    data = ["--data-dir", str(mnist_dir), "--out", str(out)]
    assert _cli(*data) == 0
    (out / "accuracy.png").write_bytes(b"a plot of the first run")
    assert _cli(*data) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--overwrite" in err[0]
    # An overwrite that cannot start (no data here) leaves the old run whole.
    before = sorted(p.name for p in out.iterdir())
    assert _cli("--data-dir", str(tmp_path / "empty"), "--no-download", "--out", str(out),
                "--overwrite") == 2
    assert "MNIST files missing" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert _cli(*data, "--overwrite") == 0
    assert not (out / "accuracy.png").exists()  # nothing of the first run is left beside it
    assert nnx_main(["train", "--resume", str(out), "--data-dir", str(mnist_dir)]) == 2
    assert "it completed" in capsys.readouterr().err


def test_a_locked_run_directory_is_refused_and_stale_parts_are_removed(mnist_dir, tmp_path,
                                                                       capsys):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".history.json.abc.part").write_text("half a file from a killed write")
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert _cli("--data-dir", str(mnist_dir), "--out", str(out)) == 2
        assert "another process is writing the run" in capsys.readouterr().err
        assert (out / ".lock").exists()  # the holder's lock is left alone
    assert _cli("--data-dir", str(mnist_dir), "--out", str(out)) == 0
    assert not list(out.glob(".*.part")) and not (out / ".lock").exists()


def test_a_full_disk_while_saving_leaves_no_half_run(mnist_dir, tmp_path, capsys, monkeypatch):
    real = nnx.io.write_csv

    def full(path, *args):
        if path.name == "epochs.csv":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args)

    monkeypatch.setattr(nnx.io, "write_csv", full)
    out = tmp_path / "run"
    assert _cli("--data-dir", str(mnist_dir), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "free some space" in err[0]
    assert not (out / "history.json").exists() and not (out / "history.csv").exists()


def test_a_stop_during_the_save_waits_for_it(mnist_dir, tmp_path, monkeypatch):
    real = nnx.io.write_csv

    def interrupted(path, *args):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the save
        return real(path, *args)

    monkeypatch.setattr(nnx.io, "write_csv", interrupted)
    out = tmp_path / "run"
    assert _cli("--data-dir", str(mnist_dir), "--out", str(out)) == 130
    history = json.loads((out / "history.json").read_text())
    assert history["status"] == "completed"
    assert (out / "params.npz").exists() and (out / "epochs.csv").exists()


def test_a_damaged_checkpoint_is_one_sentence(tmp_path):
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"checkpoint\.npz is not a readable nnx checkpoint"):
        rundir.load_checkpoint(tmp_path, TrainConfig())


def _consistent(out) -> str:
    """The state of a run directory after any stop; fails if it is not a consistent one."""
    assert not list(out.glob(".*.part")) and not (out / ".lock").exists()
    names = {p.name for p in out.iterdir()} if out.exists() else set()
    if "history.json" not in names:  # stopped before anything was done, or killed
        assert names <= {"config.json", "checkpoint.npz"}, names
        return "nothing saved"
    status = json.loads((out / "history.json").read_text())["status"]
    assert status in ("completed", "interrupted")
    assert {"config.json", "history.csv", "epochs.csv", "params.npz"} <= names
    assert ("checkpoint.npz" in names) == (status == "interrupted")
    return status


def _wait_until_the_program_handles(proc: subprocess.Popen, signum: int) -> None:
    """Wait until ``proc`` catches or ignores ``signum`` (its handlers are installed) or has
    ended. Before that the interpreter is still starting, which no program can answer for:
    on a busy machine that alone can take longer than the delays drawn below."""
    bit = 1 << (signum - 1)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/status", encoding="ascii") as f:
                masks = {k: int(v, 16) for k, v in (line.split(":") for line in f
                                                      if line.startswith(("SigCgt", "SigIgn")))}
        except OSError:  # not Linux, or the process just ended: no way to wait
            return
        if any(mask & bit for mask in masks.values()):
            return
        time.sleep(0.005)


def test_stop_signals_at_random_moments_leave_consistent_run_directories(mnist_dir, tmp_path):
    rng = np.random.default_rng(2026)
    seen = set()
    for k, delay in enumerate(rng.uniform(0.0, 3.0, size=3)):
        out = tmp_path / f"run{k}"
        proc = _nnx("--device", "cpu", "--iters", "1200", "--eval-every", "300", "--data-dir",
                    str(mnist_dir), "--out", str(out))
        time.sleep(delay)
        _wait_until_the_program_handles(proc, signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        code, _, _ = _finish(proc)
        assert code in (0, 128 + signal.SIGTERM)
        seen.add(_consistent(out))
        if (out / "checkpoint.npz").exists():
            code, _, err = _finish(_nnx("--resume", str(out), "--data-dir", str(mnist_dir)))
            assert code == 0, err
            assert _consistent(out) == "completed"
    assert seen  # each moment gave one of the consistent states


def test_a_stop_while_the_command_starts_is_one_sentence(monkeypatch, capsys):
    import nnx.cli

    real = nnx.cli.build_parser

    def stopped_while_importing(argv):  # as if SIGTERM came while NumPy was imported
        os.kill(os.getpid(), signal.SIGTERM)
        return real(argv)

    def callers(signum, frame):  # so that a stop the command misses cannot end pytest
        pass

    monkeypatch.setattr(nnx.cli, "build_parser", stopped_while_importing)
    old = signal.signal(signal.SIGTERM, callers)
    try:  # a bad flag: were the stop missed, the command would end at once with status 2
        assert nnx_main(["train", "--iters", "0"]) == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is callers  # the caller's handler is back
    finally:
        signal.signal(signal.SIGTERM, old)
    assert capsys.readouterr().err.strip().splitlines() == ["nnx train: interrupted"]


def test_the_command_takes_the_stop_signals_before_importing_numpy():
    code = ("import sys, nnx.cli; "
            "print(sorted(m for m in ('numpy', 'backends', 'nnx.network') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_lazy_package_offers_every_name_it_lists():
    code = ("import nnx, nnx.network as net; "
            "missing = [n for n in nnx.__all__ if not hasattr(nnx, n)]; "
            "assert not missing, missing; assert nnx.TwoLayerNet is net.TwoLayerNet; "
            "assert nnx.io.load_params is nnx.load_params and 'train' in dir(nnx); "
            "hasattr(nnx, 'nothing') and sys.exit('nnx.nothing exists')")
    done = subprocess.run([sys.executable, "-c", f"import sys; {code}"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args", [["info"], ["train", "--help"]],
                         ids=["a finished command", "--help"])
def test_a_stop_while_the_interpreter_exits_changes_nothing(args):
    # atexit handlers run in the interpreter's exit, after the command has returned; a
    # signal there used to kill the process (status -15) although its work was done
    code = ("import atexit, os, runpy, signal, sys; "
            "atexit.register(os.kill, os.getpid(), signal.SIGTERM); "
            f"sys.argv = ['nnx', *{args!r}]; runpy.run_module('nnx.cli', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "interrupted" not in done.stderr


def test_resume_mistakes_are_one_sentence(mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli("--data-dir", str(mnist_dir), "--out", str(out)) == 0
    cases = [
        (["--resume", str(out), "--out", str(tmp_path / "x")], "drop --out and --overwrite"),
        (["--resume", str(tmp_path / "nothing")], "holds no config.json of an nnx run"),
    ]
    (out / "history.json").write_text(json.dumps({"status": "interrupted"}))
    cases.append((["--resume", str(out)], "it holds no checkpoint.npz"))
    for args, words in cases:
        assert nnx_main(["train", "--data-dir", str(mnist_dir), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "x").exists() and not (tmp_path / "nothing").exists()


def test_a_checkpoint_of_another_net_is_refused(mnist_dir):
    data, checkpoints = _small(), []
    train(TrainConfig(device="cpu", iters=20, hidden=(8,), eval_every=10), data,
          log=lambda _: None, progress=False, on_checkpoint=checkpoints.append)
    with pytest.raises(InputError, match=r"^the checkpoint's W1 has shape \(784, 8\)"):
        train(TrainConfig(device="cpu", iters=20, eval_every=10), data, log=lambda _: None,
              progress=False, resume=checkpoints[0])


def test_a_run_trained_stopped_and_resumed_from_python_equals_the_run_left_alone(mnist_dir,
                                                                               tmp_path):
    from nnx import Run  # the package's own name for it

    data, calls = _small(), []
    config = TrainConfig(device="cpu", iters=260, optimizer="adam", lr=0.001, eval_every=100)
    quiet = {"log": lambda _: None, "progress": False}
    alone = Run.create(tmp_path / "alone", config).train(data, plots=False, **quiet)
    assert alone.status == "completed"
    stopped = Run.create(tmp_path / "run", config).train(
        data, stop=lambda: calls.append(1) or len(calls) > 150, plots=False, **quiet)
    assert stopped.status == "interrupted" and len(stopped.history["loss"]) == 150
    assert (tmp_path / "run" / rundir.CHECKPOINT).exists()
    resumed = Run.resume(tmp_path / "run").train(data, plots=False, **quiet)
    assert resumed.status == "completed"
    assert resumed.history["loss"] == alone.history["loss"]
    for name in ("alone", "run"):  # the files, as another process would read them
        history = json.loads((tmp_path / name / rundir.HISTORY).read_text())
        assert history["status"] == "completed" and len(history["loss"]) == 260
        assert not (tmp_path / name / rundir.CHECKPOINT).exists()
        assert not (tmp_path / name / ".lock").exists()  # the directory was released
    for key, want in load_params(tmp_path / "alone" / rundir.PARAMS).items():
        assert np.array_equal(load_params(tmp_path / "run" / rundir.PARAMS)[key], want), key
        assert np.array_equal(resumed.net.params[key], want), key


def test_a_run_object_trains_once_and_refuses_a_used_directory(mnist_dir, tmp_path):
    from nnx.run import Run

    data, out = _small(), tmp_path / "run"
    run = Run.create(out, TrainConfig(device="cpu", iters=20, eval_every=10))
    run.train(data, plots=False, log=lambda _: None, progress=False)
    with pytest.raises(InputError, match="has ended; Run.resume continues a stopped run"):
        run.train(data)
    with pytest.raises(InputError, match="already holds a run"):
        Run.create(out, TrainConfig(device="cpu"))
    with pytest.raises(InputError, match="it completed"):
        Run.resume(out)
    with Run.create(tmp_path / "unused", TrainConfig(device="cpu")) as unused:
        assert (unused.path / ".lock").exists()
    assert not any((tmp_path / "unused").iterdir())  # closed untrained: released, no file
    with pytest.raises(OSError), Run.create(tmp_path / "failed", TrainConfig(device="cpu")):
        raise OSError("the data could not be read")
    assert not (tmp_path / "failed").exists()  # made for a run that failed: removed


def test_a_run_killed_before_its_first_checkpoint_is_told_to_start_anew(mnist_dir, tmp_path,
                                                                        capsys):
    out = tmp_path / "run"
    out.mkdir()  # what a SIGKILL before the first checkpoint leaves: the config only
    (out / "config.json").write_text(json.dumps({"device": "cpu", "iters": 20}))
    for args in (["--out", str(out)], ["--resume", str(out)]):
        assert _cli("--data-dir", str(mnist_dir), *args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "was stopped before its first checkpoint" in err[0], err
        assert f"start it anew with --overwrite (nnx train --out {out} --overwrite)" in err[0]
    assert _cli("--data-dir", str(mnist_dir), "--out", str(out), "--overwrite") == 0
    assert json.loads((out / "history.json").read_text())["status"] == "completed"
