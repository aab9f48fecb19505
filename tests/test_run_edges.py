"""A run at its edges: flags given with --resume, a resumed run extended by --iters bit for
bit, a resumed run that diverges, a learning rate that overflows, a run that cannot go on
where it is, and the memory advice naming the array that failed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnx import rundir
from nnx.advice import memory_advice
from nnx.cli import main as nnx_main
from nnx.io import load_params
from nnx.mnist import load_mnist
from nnx.run import Run
from nnx.training import TrainConfig

CONFIG = dict(device="cpu", iters=20, batch_size=10, hidden=(5,), optimizer="momentum",
              lr=0.05, eval_every=10)


@pytest.fixture(scope="module")
def data():
    from tests.conftest import MNIST_DIR

    return load_mnist(data_dir=MNIST_DIR, download=False)


def _stopped(data, out: Path, after: int = 7, **changes) -> Path:
    calls = iter(range(10**6))
    result = Run.create(out, TrainConfig(**{**CONFIG, **changes})).train(
        data, stop=lambda: next(calls) >= after, plots=False, log=lambda _: None,
        progress=False)
    assert result.status == "interrupted"
    return out


def _resume(run_dir: Path, mnist_dir: Path, *flags: str) -> int:
    return nnx_main(["train", "--resume", str(run_dir), "--data-dir", str(mnist_dir),
                     "--no-plots", *flags])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(("flags", "words"), [
    (["--lr", "0.5"], "--lr 0.5 differs from its 0.05"),
    (["--hidden", "7"], "--hidden 7 differs from its 5"),
    (["--optimizer", "sgd"], "--optimizer sgd differs from its momentum"),
    (["--momentum", "0.5"], "--momentum 0.5 differs from its 0.9"),
    (["--batch-norm"], "--batch-norm on differs from its off"),
    (["--seed", "3"], "--seed 3 differs from its 0"),
    (["--iters", "10"], "--iters 10 is fewer than the 20 iterations"),
])
def test_a_flag_that_differs_from_the_resumed_runs_own_is_refused(data, mnist_dir, tmp_path,
                                                                  capsys, flags, words):
    run_dir = _stopped(data, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert _resume(run_dir, mnist_dir, *flags) == 2
    line = _one_line(capsys)
    assert line.startswith("nnx train: error: ") and words in line, line
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # nothing touched


def test_a_flag_equal_to_the_runs_own_is_taken(data, mnist_dir, tmp_path, capsys):
    run_dir = _stopped(data, tmp_path / "run")
    assert _resume(run_dir, mnist_dir, "--lr", "0.05", "--momentum", "0.9", "--hidden", "5") == 0
    assert json.loads((run_dir / "history.json").read_text())["status"] == "completed"


def test_resume_with_iters_extends_the_run_to_the_run_of_that_length(data, mnist_dir, tmp_path,
                                                                     capsys):
    alone = Run.create(tmp_path / "alone", TrainConfig(**{**CONFIG, "iters": 45})).train(
        data, plots=False, log=lambda _: None, progress=False)
    # Stopped inside its last block, which 15 iterations cut short: drawn again whole.
    run_dir = _stopped(data, tmp_path / "run", after=13, iters=15)
    assert _resume(run_dir, mnist_dir, "--iters", "45") == 0
    history = json.loads((run_dir / "history.json").read_text())
    assert history["status"] == "completed" and len(history["loss"]) == 45
    assert history["loss"] == alone.history["loss"]
    assert json.loads((run_dir / "config.json").read_text())["iters"] == 45
    for key, want in load_params(run_dir / "params.npz").items():
        assert np.array_equal(want, alone.net.backend.to_numpy(alone.net.params[key])), key


def test_a_resumed_run_that_diverges_keeps_its_checkpoint_and_no_stale_parameters(
        data, mnist_dir, tmp_path, capsys):
    run_dir = _stopped(data, tmp_path / "run", optimizer="sgd", lr=0.1)
    assert (run_dir / "params.npz").exists()  # an interrupted run saves what it has
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "lr": 1e6}))
    assert _resume(run_dir, mnist_dir) == 2
    assert "training diverged" in _one_line(capsys)
    assert json.loads((run_dir / "history.json").read_text())["status"] == "diverged"
    assert not (run_dir / "params.npz").exists()  # it spoke of the run before the divergence
    kept = rundir.load_checkpoint(run_dir)
    assert 7 <= kept.iteration < 20 and all(np.isfinite(v).all() for v in kept.params.values())
    assert _resume(run_dir, mnist_dir) == 2
    assert "it diverged (its checkpoint.npz keeps the last state" in _one_line(capsys)


def test_an_overflowing_rate_is_one_sentence_naming_the_parameters(mnist_dir, tmp_path,
                                                                   capsys):
    out = tmp_path / "run"
    code = nnx_main(["train", "--device", "cpu", "--lr", "1e308", "--iters", "100",
                     "--hidden", "5", "--no-plots", "--data-dir", str(mnist_dir),
                     "--out", str(out)])
    assert code == 2
    line = _one_line(capsys)  # no NumPy RuntimeWarning before it
    assert "training diverged (its parameters became NaN or infinite)" in line, line


def test_a_run_whose_device_is_missing_here_is_told_it_can_move(data, mnist_dir, tmp_path,
                                                                capsys):
    run_dir = _stopped(data, tmp_path / "run")
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "device": "cuda:7"}))
    assert _resume(run_dir, mnist_dir) == 2
    line = _one_line(capsys)
    assert line.endswith(f"continue the run on this machine's CPU with nnx train --resume "
                         f"{run_dir} --device cpu"), line


def test_a_momentum_checkpoint_resumed_as_sgd_names_the_file(data, mnist_dir, tmp_path, capsys):
    run_dir = _stopped(data, tmp_path / "run")
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "optimizer": "sgd"}))
    assert _resume(run_dir, mnist_dir) == 2
    line = _one_line(capsys)
    assert f"{run_dir / 'checkpoint.npz'} holds a member 'opt/v/" in line, line


# -- memory advice -------------------------------------------------------------------------------
class _Host:
    device = "cpu"

    def memory_free(self) -> int:
        return 2**40


class _Failed(MemoryError):
    """NumPy's MemoryError names the shape it could not allocate."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__(f"Unable to allocate an array with shape {shape}")
        self.shape = shape


@pytest.mark.parametrize(("hidden", "shape", "advice"), [
    ((2000,), (10000, 2000), "try a smaller --hidden (e.g. 1000): the accuracy evaluations "
                             "hold the hidden activations of 10,000 images"),
    ((2000,), (100, 2000), "try a smaller --batch-size (e.g. 50) or --hidden"),
    ((2000,), (784, 2000), "try a smaller --hidden (e.g. 1000)"),
    ((2000,), (60000, 784), "try --dtype float32"),
])
def test_the_memory_advice_names_what_to_reduce_for_the_array_that_failed(hidden, shape,
                                                                          advice):
    fake = ((np.zeros((60000, 784), np.float32), None), (np.zeros((10000, 784)), None))
    text = memory_advice(TrainConfig(hidden=hidden), _Host(), fake, _Failed(shape))
    assert advice in text, text
    assert ("--dtype" in text) == ("dtype" in advice)
