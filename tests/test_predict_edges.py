"""``nnx evaluate`` and ``nnx predict`` at their edges: a stop that lands anywhere (even in a
finalizer) ends them at a safe point with nothing written or printed, a file name cannot
forge a result line, a 16-bit PNG of 8-bit values is a digit, and a valid image too large
for the memory at hand is not called unreadable."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnx import evaluation, images, photos, rundir, stops
from nnx.cli import main as nnx_main
from nnx.mnist import load_mnist
from tests.helpers import trained_run

pytestmark = pytest.mark.filterwarnings(  # the stop a finalizer raises is ignored: the point
    "ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory, "finished", "--iters", "300", "--eval-every", "300")


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    """MNIST's first test image (a 7), as 0-255 values."""
    from tests.conftest import MNIST_DIR

    _, (x, _) = load_mnist(normalize=False, data_dir=MNIST_DIR, download=False)
    return x[0].reshape(28, 28).astype(np.uint8)


def _stop_in_a_finalizer() -> None:
    """A Ctrl-C that lands in a finalizer, where Python ignores whatever it raises."""
    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)

    Finalized()


@pytest.fixture(autouse=True)
def _no_stops_left():
    stops._received.clear()
    yield
    stops._received.clear()


def test_a_stop_while_evaluating_ends_it_before_anything_is_written(finished, mnist_dir,
                                                                    capsys, monkeypatch):
    real = evaluation.evaluate

    def stopped(*args, **kwargs):
        _stop_in_a_finalizer()
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", stopped)
    code = nnx_main(["evaluate", str(finished), "--device", "cpu", "--data-dir", str(mnist_dir)])
    captured = capsys.readouterr()
    assert code == 130 and captured.err.strip().endswith("nnx evaluate: interrupted")
    assert captured.out == ""
    assert not {p.name for p in finished.iterdir()} & set(rundir.EVALUATION_FILES)


def test_a_stop_while_reading_images_ends_predict_before_any_result(finished, digit, tmp_path,
                                                                    capsys, monkeypatch):
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for p in paths:
        Image.fromarray(digit).save(p)
    real = photos.read_image

    def stopped(path):
        _stop_in_a_finalizer()
        return real(path)

    monkeypatch.setattr(photos, "read_image", stopped)
    code = nnx_main(["predict", str(finished), *map(str, paths), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 130 and captured.err.strip().endswith("nnx predict: interrupted")
    assert captured.out == ""


def test_a_file_name_cannot_forge_a_result_line(finished, digit, tmp_path, capsys):
    forged = tmp_path / "a.png\n2   (2: 100.0%, 3:   0.0%, 1:   0.0%)"
    Image.fromarray(digit).save(forged, format="PNG")
    assert nnx_main(["predict", str(finished), str(forged), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(repr(str(forged))), lines


@pytest.mark.parametrize("scale", [1, 257], ids=["values-0-255", "values-0-65535"])
def test_a_16_bit_png_is_the_digit_its_values_draw(digit, tmp_path, scale):
    Image.fromarray(digit).save(tmp_path / "8.png")
    Image.fromarray(digit.astype(np.uint16) * scale).save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode.startswith("I;16")
    want = photos.read_image(tmp_path / "8.png")
    assert np.allclose(photos.read_image(tmp_path / "16.png"), want, atol=1e-6)


def test_a_valid_image_that_does_not_fit_in_memory_is_the_memory_sentence(finished, digit,
                                                                          tmp_path, capsys,
                                                                          monkeypatch):
    path = tmp_path / "seven.png"
    Image.fromarray(digit).save(path)

    def no_memory(_img):
        raise MemoryError

    monkeypatch.setattr(images, "load", no_memory)
    assert nnx_main(["predict", str(finished), str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"nnx predict: error: out of memory reading {path}, a valid image; give nnx "
                   "more memory or scale the image down"]



@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_nan_parameters_are_refused_naming_the_file_not_shown_as_nan(finished, digit, mnist_dir,
                                                                      tmp_path, capsys, command):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    with np.load(run_dir / "params.npz") as z:
        params = {k: z[k] for k in z.files}
    params["b2"][3] = np.nan
    np.savez(run_dir / "params.npz", **params)
    Image.fromarray(digit).save(tmp_path / "seven.png")
    more = [str(tmp_path / "seven.png")] if command == "predict" else \
        ["--data-dir", str(mnist_dir)]
    assert nnx_main([command, str(run_dir), *more, "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "nan" not in captured.out.lower()
    assert captured.err.strip().splitlines() == [
        f"nnx {command}: error: {run_dir / 'params.npz'} holds NaN or infinite values in b2; "
        "restore the file or start a new run"]
