"""PyTorch as a second real library: its devices as nnx spells them, what is refused in one
sentence, and runs that move between PyTorch and NumPy.

The one-body lanes of every other test file run on ``torch:cpu`` too (``tests/conftest.py``);
this file holds what only PyTorch has. Where PyTorch is not installed, the tests that need it
are skipped with the reason, and the ones about its absence run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import backends
from backends import BackendError, get_backend, torch_backend
from nnx import rundir
from nnx.training import TrainConfig, train
from tests.conftest import NO_TORCH
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def mnist():
    from nnx.mnist import load_mnist
    from tests.conftest import SHARED_MNIST

    return load_mnist(data_dir=SHARED_MNIST, download=False)


needs_torch = pytest.mark.skipif(bool(NO_TORCH), reason=f"no torch lane: {NO_TORCH}")


def _nnx(*args: str, without_torch: bool = False) -> subprocess.CompletedProcess:
    """``nnx ARGS`` in a new process; ``without_torch`` makes ``import torch`` fail there."""
    hide = "import sys; sys.modules['torch'] = None; " if without_torch else ""
    code = (f"{hide}import sys; from nnx.cli import entry; sys.argv = ['nnx', *sys.argv[1:]]; "
            "entry()")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def _one_sentence(proc: subprocess.CompletedProcess, command: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"nnx {command}: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


# -- what is refused ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A trained run on NumPy, to evaluate and predict with."""
    from tests.conftest import SHARED_MNIST

    out = tmp_path_factory.mktemp("tiny") / "run"
    proc = _nnx("train", "--device", "cpu", "--iters", "5", "--hidden", "5", "--no-plots",
                "--data-dir", str(SHARED_MNIST), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("command", ["train", "gradcheck", "bench", "evaluate", "predict"])
def test_a_torch_device_without_torch_names_the_extra(tmp_path, tiny_run, command):
    out = tmp_path / "out"
    args = {"train": ["--out", str(out)], "gradcheck": [], "bench": ["--out", str(out)],
            "evaluate": [str(tiny_run), "--out", str(out)],
            "predict": [str(tiny_run), str(tmp_path / "digit.png")]}[command]
    if command == "predict":
        from PIL import Image

        ink = np.zeros((28, 28), dtype=np.uint8)
        ink[6:22, 12:16] = 255
        Image.fromarray(ink).save(tmp_path / "digit.png")
    proc = _nnx(command, "--device", "torch:cpu", *args, without_torch=True)
    line = _one_sentence(proc, command)
    assert "PyTorch is not installed" in line and 'pip install ".[torch]"' in line
    assert not out.exists()


def test_torch_missing_is_said_by_the_seam(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    torch, why = torch_backend._import.__wrapped__()
    assert torch is None and why.startswith("PyTorch is not installed")


@pytest.mark.parametrize("device", ["jax:0", "torch:tpu", "torch:cuda:x"])
def test_an_unknown_device_is_one_sentence_and_nothing_is_written(tmp_path, device):
    proc = _nnx("train", "--device", device, "--out", str(tmp_path / "run"))
    line = _one_sentence(proc, "train")
    assert f"unknown device {device!r}" in line and "torch:mps" in line
    assert not (tmp_path / "run").exists()


@needs_torch
def test_mps_where_there_is_none_is_one_sentence(tmp_path):
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    proc = _nnx("train", "--device", "torch:mps", "--dtype", "float32", "--out",
                str(tmp_path / "run"))
    assert "torch:mps is not available here" in _one_sentence(proc, "train")
    assert not (tmp_path / "run").exists()


@needs_torch
def test_torch_cuda_where_pytorch_has_none_is_one_sentence(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("PyTorch sees a CUDA device here")
    proc = _nnx("train", "--device", "torch:cuda:3", "--out", str(tmp_path / "run"))
    assert "so torch:cuda cannot run" in _one_sentence(proc, "train")
    assert not (tmp_path / "run").exists()


@needs_torch
def test_a_cuda_index_beyond_pytorchs_devices_names_those_present(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(BackendError) as info:
        get_backend("torch:cuda:3")
    assert str(info.value) == ("device torch:cuda:3 does not exist: PyTorch sees 1 CUDA "
                               "device(s) (torch:cuda:0); choose one of them with --device")


@needs_torch
def test_float64_on_mps_is_refused_naming_float32(monkeypatch):
    import torch

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.raises(BackendError, match=r"^torch:mps has no float64; use --dtype float32$"):
        get_backend("torch:mps", "float64")
    be = get_backend("torch:mps")  # a library user who asked for no dtype gets MPS's own
    assert be.dtype == torch.float32 and be.is_gpu and not be.float64 and not be.has_events
    assert be.hardware == "mps" and be.array_device == torch.device("mps", 0)


# -- what PyTorch's devices are -------------------------------------------------------------


@needs_torch
def test_nnx_info_lists_the_torch_devices():
    proc = _nnx("info", "--json")
    info = json.loads(proc.stdout)
    assert info["torch"] and "torch:cpu" in [d["device"] for d in info["torch_devices"]]
    assert "torch:cpu" in backends.available()


@needs_torch
def test_a_torch_backend_is_a_value_with_capabilities():
    import torch

    be = get_backend("torch:cpu", "float32")
    assert be == get_backend("torch:cpu", "float32") and hash(be) == hash(get_backend(be))
    assert be != get_backend("torch:cpu", "float64") and be != get_backend("cpu", "float32")
    assert (be.device, be.hardware, be.dtype) == ("torch:cpu", "cpu", torch.float32)
    assert not (be.is_gpu or be.has_events or be.numpy_native) and be.float64
    # Host data keeps NumPy's dtype rules: a Python float is float64 here too.
    assert be.asarray([1.5]).dtype == torch.float64
    # A read-only NumPy array is copied, not shared (PyTorch would warn and could write it).
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    moved = be.asarray(frozen, dtype="float32")
    moved += 1
    assert frozen.sum() == 0 and be.owns(moved)


@needs_torch
def test_the_same_seed_gives_the_same_weights_and_batches_as_numpy(mnist):
    data = ((mnist[0][0][:2000], mnist[0][1][:2000]), (mnist[1][0][:500], mnist[1][1][:500]))
    runs = {}
    for device in ("cpu", "torch:cpu"):
        config = TrainConfig(device=device, iters=40, eval_every=20, seed=5)
        runs[device] = train(config, data, log=lambda _: None, progress=False,
                             stop=lambda: False)
    # Identical initial weights: the first loss is the same to rounding.
    np.testing.assert_allclose(runs["torch:cpu"].history["loss"], runs["cpu"].history["loss"],
                               rtol=1e-9)
    be = runs["torch:cpu"].net.backend
    for key, want in runs["cpu"].net.params.items():
        np.testing.assert_allclose(be.to_numpy(runs["torch:cpu"].net.params[key]), want,
                                   rtol=1e-7, atol=1e-12)


@needs_torch
@pytest.mark.parametrize(("first", "then"), [("torch:cpu", "cpu"), ("cpu", "torch:cpu")])
def test_a_run_moves_between_pytorch_and_numpy(mnist, tmp_path, first, then):
    """A checkpoint written by one library resumes on the other and ends where the run
    left alone on the first ends (to rounding: the kernels differ)."""
    data = ((mnist[0][0][:2000], mnist[0][1][:2000]), (mnist[1][0][:500], mnist[1][1][:500]))
    quiet = {"log": lambda _: None, "progress": False}
    config = TrainConfig(device=first, iters=90, eval_every=30, optimizer="adam", lr=0.001)
    alone = train(config, data, **quiet)
    calls = []
    stopped = train(config, data, stop=lambda: calls.append(1) or len(calls) > 45, **quiet)
    rundir.save_checkpoint(tmp_path, stopped.checkpoint)  # through the file, as --resume does
    config.device = then
    checkpoint = rundir.load_checkpoint(tmp_path, config, [784, *config.hidden, 10])
    moved = train(config, data, resume=checkpoint, **quiet)
    assert moved.net.backend.device == then and len(moved.history["loss"]) == 90
    for key, want in alone.net.params.items():
        got = moved.net.backend.to_numpy(moved.net.params[key])
        np.testing.assert_allclose(got, alone.net.backend.to_numpy(want), rtol=1e-9, atol=1e-12)


@needs_torch
def test_torch_cuda_times_with_reused_events_on_its_stream(monkeypatch):
    """torch:cuda's timer, with PyTorch's CUDA events stood in for: pairs of events on the
    device's stream, each made once and reused after a drain (no GPU here)."""
    import torch

    made, clock = [], [0.0]

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing
            made.append(self)

        def record(self, stream: object) -> None:
            assert stream == "stream of cuda:1"
            self.at = clock[0]

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, end: Event) -> float:
            return end.at - self.at  # milliseconds, as PyTorch's

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda index: f"stream of cuda:{index}")
    be = get_backend("torch:cuda:1")
    assert (be.device, be.hardware, be.is_gpu, be.has_events) == ("torch:cuda:1", "cuda:1",
                                                                  True, True)
    timer = be.interval_timer()
    for _ in range(3):
        for ms in (2.0, 5.0):
            timer.start()
            clock[0] += ms
            timer.stop()
            clock[0] += 100.0  # between intervals: never counted
        assert timer.drain() == pytest.approx([0.002, 0.005])
    assert len(made) == 4 and timer.drain() == []


def test_nnx_search_without_optuna_names_the_extra(tmp_path):
    """Optional libraries are one sentence when missing: Optuna for nnx search, as PyTorch
    for the torch devices above."""
    hide = "import sys; sys.modules['optuna'] = None; "
    code = (f"{hide}import sys; from nnx.cli import entry; sys.argv = ['nnx', *sys.argv[1:]]; "
            "entry()")
    proc = subprocess.run([sys.executable, "-c", code, "search", "--trials", "1", "--out",
                           str(tmp_path / "s")], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    line = _one_sentence(proc, "search")
    assert 'nnx search needs Optuna: install it with pip install ".[search]"' in line
    assert not (tmp_path / "s").exists()


@needs_torch
def test_the_numerical_gradient_is_refused_where_float64_is_missing():
    """MPS has no float64, which the numerical gradient computes in: one sentence naming
    another device, never a library error. Shown on torch:cpu marked as MPS marks itself."""
    import copy

    from nnx.errors import InputError
    from nnx.network import TwoLayerNet

    be = copy.copy(get_backend("torch:cpu", "float32"))
    be.float64 = False  # what torch:mps says of itself
    net = TwoLayerNet(6, 4, 3, device=be, seed=0)
    x, t = be.asarray(np.ones((2, 6)), dtype="float32"), be.asarray(np.array([0, 2]))
    assert set(net.gradient(x, t)) == {"W1", "b1", "W2", "b2"}  # backprop needs no float64
    with pytest.raises(InputError, match=r"^the numerical gradient computes in float64, which "
                                         r"torch:cpu \(torch\) does not have; compute it on "
                                         r"another device \(--device cpu\)$"):
        net.numerical_gradient(x, t)
