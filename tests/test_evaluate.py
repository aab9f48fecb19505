"""``nnx evaluate`` and ``nnx predict``: a trained run looked at from outside.

References come from elsewhere: the accuracies ``nnx train`` recorded (``net.accuracy``),
MNIST's class counts, a forward pass written here in NumPy from params.npz, and MNIST's
own images written out as PNG and JPEG files.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnx import photos
from nnx.cli import main as nnx_main
from nnx.io import save_params
from nnx.mnist import load_mnist
from tests.helpers import trained_run

TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # MNIST's test set


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished 2000-iteration run on the CPU (about 94% test accuracy)."""
    return trained_run(tmp_path_factory, "runs", "--iters", "2000", "--eval-every", "2000")


@pytest.fixture(scope="module")
def mnist():
    from tests.conftest import MNIST_DIR

    return load_mnist(normalize=False, data_dir=MNIST_DIR, download=False)


def _numpy_labels(run: Path, x: np.ndarray) -> np.ndarray:
    """The class of each row by the book's forward pass, in NumPy, from the saved weights."""
    with np.load(run / "params.npz") as p:
        hidden = np.maximum(x @ p["W1"] + p["b1"], 0)
        return np.argmax(hidden @ p["W2"] + p["b2"], axis=1)


def _nnx(capsys, *argv: str) -> tuple[int, str, str]:
    code = nnx_main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_evaluate_reproduces_the_runs_test_accuracy_on_every_device(run_dir, mnist, mnist_dir,
                                                                    backend64, tmp_path, capsys):
    out = tmp_path / "ev"
    code, stdout, err = _nnx(capsys, "evaluate", run_dir, "--device", backend64.device,
                             "--data-dir", mnist_dir, "--out", out)
    assert code == 0, err
    history = json.loads((run_dir / "history.json").read_text())
    report = json.loads((out / "evaluation.json").read_text())
    confusion = np.array(report["confusion"])
    assert report["accuracy"] == history["final_test_acc"]  # exactly: the same arithmetic
    assert confusion.sum() == 10_000 and np.trace(confusion) / 10_000 == report["accuracy"]
    assert confusion.sum(axis=1).tolist() == TEST_COUNTS
    (_, _), (x, t) = mnist
    want = np.zeros((10, 10), dtype=int)
    np.add.at(want, (t, _numpy_labels(run_dir, x / 255.0)), 1)
    assert (confusion == want).all()
    for row in report["classes"]:
        k = row["class"]
        assert row["recall"] == pytest.approx(want[k, k] / TEST_COUNTS[k])
        assert row["precision"] == pytest.approx(want[k, k] / want[:, k].sum())
        assert row["accuracy"] == pytest.approx(1 - (want[k].sum() + want[:, k].sum()
                                                     - 2 * want[k, k]) / 10_000)
    wrong = report["most_confident_wrong"]
    assert len(wrong) == 24
    assert [w["true"] for w in wrong] == [int(t[w["index"]]) for w in wrong]
    assert all(w["predicted"] != w["true"] for w in wrong)
    probs = [w["probability"] for w in wrong]
    assert probs == sorted(probs, reverse=True) and 0.5 < probs[-1] <= probs[0] <= 1
    assert f"  all   10000     {history['final_test_acc']:.4f}" in stdout
    assert len([line for line in stdout.splitlines() if line[:5].strip().isdigit()]) == 10
    with Image.open(out / "confusion.png") as a, Image.open(out / "misclassified.png") as b:
        assert a.format == b.format == "PNG" and a.size[0] > 500 and b.size[0] > 500


def test_evaluate_the_training_set_writes_into_the_run_directory(run_dir, mnist_dir, capsys):
    code, stdout, err = _nnx(capsys, "evaluate", run_dir, "--set", "train", "--device", "cpu",
                             "--data-dir", mnist_dir, "--no-download")
    assert code == 0, err
    history = json.loads((run_dir / "history.json").read_text())
    report = json.loads((run_dir / "evaluation.json").read_text())
    assert report["set"] == "train" and report["images"] == 60_000
    assert report["accuracy"] == history["train_acc"][-1]
    assert (run_dir / "confusion.png").is_file() and (run_dir / "misclassified.png").is_file()
    assert not list(run_dir.glob(".*.part"))


def _files(folder: Path, images: np.ndarray, make, suffix: str = ".png") -> list[Path]:
    folder.mkdir()
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{i}{suffix}")
        make(Image.fromarray(image.reshape(28, 28))).save(paths[-1])
    return paths


def test_predict_agrees_with_evaluate_on_mnist_digits_as_files(run_dir, mnist, tmp_path, capsys):
    (_, _), (x, _) = mnist
    x = x[:200]
    want = _numpy_labels(run_dir, x / 255.0)
    kinds = {
        "plain": lambda im: im,
        "inverted": lambda im: Image.fromarray(255 - np.asarray(im)),
        "scaled": lambda im: im.resize((200, 200)),  # Pillow's default: bicubic
        "colour": lambda im: Image.merge("RGB", [Image.fromarray(255 - np.asarray(im) // d)
                                                 for d in (1, 2, 4)]).resize((90, 120)),
    }
    agree = {}
    for kind, make in kinds.items():
        suffix = ".jpg" if kind == "colour" else ".png"
        paths = _files(tmp_path / kind, x, make, suffix)
        code, stdout, err = _nnx(capsys, "predict", run_dir, *paths, "--device", "cpu")
        assert code == 0, err
        lines = stdout.splitlines()
        assert [line.split()[0] for line in lines] == [str(p) for p in paths]
        got = np.array([int(line.split()[1]) for line in lines])
        agree[kind] = float(np.mean(got == want))
    assert agree["plain"] == 1.0, agree
    assert min(agree["inverted"], agree["scaled"]) >= 0.97, agree
    assert agree["colour"] >= 0.9, agree  # a tinted, stretched, lossy JPEG
    shown = lines[0].split("(")[1].rstrip(")").split(", ")
    assert len(shown) == 3 and shown[0].startswith(lines[0].split()[1] + ":")


def test_a_digit_is_boxed_into_20x20_and_centred_by_its_mass():
    grey = np.ones((100, 80))  # a dark bar, 40 high and 10 wide, on white
    grey[30:70, 20:30] = 0.0
    image = photos.mnist_like(grey).reshape(28, 28)
    rows, cols = np.nonzero(image)
    assert (np.ptp(rows) + 1, np.ptp(cols) + 1) == (20, 5)  # the aspect ratio kept
    assert image.max() == pytest.approx(1.0) and image.dtype == np.float32
    mass = image.sum()
    assert abs(np.arange(28) @ image.sum(axis=1) / mass - 14) <= 0.5
    assert abs(np.arange(28) @ image.sum(axis=0) / mass - 14) <= 0.5


def test_a_transparent_image_takes_the_background_its_ink_needs(tmp_path):
    rgba = np.zeros((60, 60, 4), dtype=np.uint8)  # black ink on nothing
    rgba[10:50, 25:35, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "ink.png")
    white = np.zeros((60, 60), dtype=np.uint8)
    white[10:50, 25:35] = 255
    Image.fromarray(white).save(tmp_path / "white.png")
    assert np.array_equal(photos.read_image(tmp_path / "ink.png"),
                          photos.read_image(tmp_path / "white.png"))


# -- bad input: one sentence naming the file and the fix, exit 2, nothing written -------------
def _broken_run(kind: str, good: Path, where: Path) -> tuple[Path, str]:
    """A run directory broken as ``kind``, and the text its error must contain."""
    run = where / kind
    shutil.copytree(good, run)
    for name in ("evaluation.json", "confusion.png", "misclassified.png"):
        (run / name).unlink(missing_ok=True)
    if kind == "not-a-run":
        (run / "config.json").unlink()
        return run, f"{run} is not an nnx run directory"
    if kind == "bad-config":
        (run / "config.json").write_text("{ no")
        return run, f"cannot read {run / 'config.json'}"
    if kind == "interrupted":
        (run / "params.npz").unlink()
        (run / "history.json").unlink()
        (run / "checkpoint.npz").write_bytes(b"kept")
        return run, f"{run / 'params.npz'} does not exist"
    if kind == "diverged":
        (run / "params.npz").unlink()
        (run / "history.json").write_text('{"status": "diverged"}')
        return run, "diverged; re-train with a smaller --lr"
    if kind == "damaged":
        data = (run / "params.npz").read_bytes()
        (run / "params.npz").write_bytes(data[: len(data) // 2])
        return run, f"{run / 'params.npz'} is not an intact .npz"
    rng = np.random.default_rng(0)  # "mismatched": a 784-30-10 net where the config says 50
    save_params(run / "params.npz", {"W1": rng.random((784, 30)), "b1": np.zeros(30),
                                     "W2": rng.random((30, 10)), "b2": np.zeros(10)})
    return run, "holds W1 as (784, 30) float64, not (784, 50) real numbers"


@pytest.mark.parametrize("kind", ["not-a-run", "bad-config", "interrupted", "diverged",
                                  "damaged", "mismatched"])
def test_a_bad_run_is_one_sentence_and_nothing_is_written(run_dir, mnist_dir, tmp_path, capsys,
                                                          kind):
    run, says = _broken_run(kind, run_dir, tmp_path)
    before = sorted(p.name for p in run.iterdir())
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(tmp_path / "digit.png")
    for argv in (["evaluate", run, "--device", "cpu", "--data-dir", mnist_dir],
                 ["evaluate", run, "--out", tmp_path / "new"],
                 ["predict", run, tmp_path / "digit.png", "--device", "cpu"]):
        code, stdout, err = _nnx(capsys, *argv)
        assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
        assert f"nnx {argv[0]}: error: " in err and says in err, err
        assert sorted(p.name for p in run.iterdir()) == before
        assert not (tmp_path / "new").exists()
    if kind == "interrupted":
        assert f"continue it with nnx train --resume {run}" in err


def _zero_width_png() -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    Image.new("L", (3, 3)).save(buffer, "PNG")
    raw = bytearray(buffer.getvalue())
    raw[16:20] = struct.pack(">I", 0)  # IHDR's width, and its checksum made to match
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    return bytes(raw)


BAD_IMAGES = {
    "text.png": (lambda p: p.write_text("not an image"), "is not a PNG or JPEG image"),
    "empty.png": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "no-pixels.png": (lambda p: p.write_bytes(_zero_width_png()), "is not a PNG or JPEG image"),
    "white.png": (lambda p: Image.new("L", (40, 30), 255).save(p), "is blank"),
    "grey.jpg": (lambda p: Image.new("RGB", (40, 30), (90, 120, 90)).save(p), "is blank"),
    "cut.png": (lambda p: p.write_bytes(_zero_width_png()[:30]), "is not a PNG or JPEG image"),
    "folder.png": (lambda p: p.mkdir(), "is a directory, not a regular file"),
    "missing.png": (lambda p: None, "does not exist"),
}


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_a_bad_image_is_one_sentence_before_anything_is_printed(run_dir, tmp_path, capsys,
                                                                name):
    make, says = BAD_IMAGES[name]
    make(tmp_path / name)
    good = tmp_path / "good.png"
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(good)
    code, stdout, err = _nnx(capsys, "predict", run_dir, good, tmp_path / name)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert f"nnx predict: error: {tmp_path / name} {says}" in err, err
    assert err.strip().endswith("; give a PNG or JPEG image of a digit") or "blank" in err


@pytest.mark.parametrize("kind", ["fifo", "directory", "device-link"])
def test_a_history_that_is_not_a_file_is_one_sentence_and_nothing_is_written(
        run_dir, mnist_dir, tmp_path, capsys, kind):
    import os

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    history = run / "history.json"
    history.unlink()
    {"fifo": os.mkfifo, "directory": os.mkdir,
     "device-link": lambda p: os.symlink("/dev/zero", p)}[kind](history)
    code, stdout, err = _nnx(capsys, "evaluate", run, "--device", "cpu", "--data-dir", mnist_dir,
                             "--out", tmp_path / "new")
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert "history.json" in err, err
    assert not (tmp_path / "new").exists()
