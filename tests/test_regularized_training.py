"""Chapter 6 in training runs, checked against the book's findings at its small scale (same
seeds): weight decay and dropout narrow the gap between training and test accuracy of an
overfitting net; batch norm learns where a net of small initial weights stalls. Plus the
validation split, checkpoints and resume, the saved run, and the flags' bad values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nnx.cli import main as nnx_main
from nnx.mnist import load_mnist
from nnx.run import load_run
from nnx.training import TrainConfig, train
from tests.conftest import NO_TORCH, assert_on


@pytest.fixture
def mnist(mnist_dir):
    return load_mnist(data_dir=mnist_dir, download=False)


def _accuracies(data, **kw):
    config = TrainConfig(device="cpu", batch_size=100, seed=0, **kw)
    config.eval_every = config.iters
    h = train(config, data, log=lambda _: None, progress=False).history
    return h["train_acc"][-1], h["test_acc"][-1]


# The book's overfit_*.py: 300 training images, 6 hidden layers of 100, SGD at 0.01.
OVERFIT = dict(hidden=(100,) * 6, lr=0.01, weight_init_std="he")


@pytest.mark.parametrize("option, iters", [({"weight_decay": 0.1}, 603),  # 201 epochs
                                           ({"dropout": 0.2}, 903)])  # 301 epochs
def test_weight_decay_and_dropout_narrow_the_overfitting_gap(mnist, option, iters):
    (x, t), (xt, tt) = mnist
    data = ((x[:300], t[:300]), (xt[:2000], tt[:2000]))
    plain_train, plain_test = _accuracies(data, iters=iters, **OVERFIT)
    reg_train, reg_test = _accuracies(data, iters=iters, **OVERFIT, **option)
    assert plain_train == 1.0  # it overfits: every training image right
    assert (reg_train - reg_test) < (plain_train - plain_test) - 0.05


def test_batch_norm_learns_where_small_initial_weights_stall(mnist):
    """The book's batch_norm_test: 1000 images, 5 hidden layers of 100, weights N(0, 0.01^2)."""
    (x, t), (xt, tt) = mnist
    data = ((x[:1000], t[:1000]), (xt[:2000], tt[:2000]))
    setting = dict(hidden=(100,) * 5, lr=0.01, iters=200, weight_init_std=0.01)
    assert _accuracies(data, **setting)[0] < 0.2  # stalls near chance
    assert _accuracies(data, **setting, batch_norm=True)[0] > 0.9


def test_validation_split_is_drawn_with_the_seed_and_reported(mnist, capsys):
    (x, t), (xt, tt) = mnist
    data = ((x[:500], t[:500]), (xt[:500], tt[:500]))
    lines = []
    config = TrainConfig(device="cpu", iters=40, val_split=0.2, seed=3)
    h = train(config, data, log=lines.append, progress=False).history
    assert len(h["val_acc"]) == len(h["test_acc"]) == 10  # 400 left: 4 iterations an epoch
    assert "val acc" in lines[-1]
    again = train(config, data, log=lambda _: None, progress=False).history
    assert again["val_acc"] == h["val_acc"]


def test_resume_of_a_dropout_batch_norm_run_is_exact(mnist):
    (x, t), (xt, tt) = mnist
    data = ((x[:600], t[:600]), (xt[:300], tt[:300]))
    config = TrainConfig(device="cpu", iters=60, hidden=(30, 20), dropout=0.3,
                         batch_norm=True, weight_decay=0.01, val_split=0.1, seed=2)
    whole = train(config, data, log=lambda _: None, progress=False)
    calls = iter(range(10**6))
    stopped = train(config, data, log=lambda _: None, progress=False,
                    stop=lambda: next(calls) == 25)
    assert stopped.status == "interrupted"
    assert stopped.checkpoint.buffers and stopped.checkpoint.mask_rng
    resumed = train(config, data, log=lambda _: None, progress=False,
                    resume=stopped.checkpoint)
    for k, v in whole.net.params.items():
        assert np.array_equal(v, resumed.net.params[k]), k
    for k, v in whole.net.buffers().items():
        assert np.array_equal(v, resumed.net.buffers()[k]), k
    assert whole.history["val_acc"] == resumed.history["val_acc"]


@pytest.mark.parametrize("device", ["cpu", "strict", pytest.param(
    "torch:cpu", marks=pytest.mark.skipif(bool(NO_TORCH), reason=f"no torch lane: {NO_TORCH}"))])
def test_a_saved_batch_norm_run_evaluates_in_inference_mode(mnist_dir, tmp_path, capsys,
                                                            device):
    out = tmp_path / "run"
    data = ["--data-dir", str(mnist_dir), "--no-download"]
    assert nnx_main(["train", "--device", device, "--iters", "100", "--batch-norm",
                     "--dropout", "0.1", "--weight-decay", "0.01", "--val-split", "0.1",
                     "--hidden", "30", "--no-plots", *data, "--out", str(out)]) == 0
    assert (out / "batchnorm.npz").exists()
    assert "val_acc" in (out / "epochs.csv").read_text().splitlines()[0]
    net, _ = load_run(out, device)
    assert_on(net.backend, *net.params.values(), *net.buffers().values())
    (_, _), (xt, tt) = load_mnist(data_dir=mnist_dir, download=False)
    x = net.backend.asarray(xt[:1000], dtype=net.dtype)
    acc = net.accuracy(x, net.backend.asarray(tt[:1000]))
    assert acc == net.accuracy(x, net.backend.asarray(tt[:1000]))  # no masks, no batch stats
    assert acc > 0.5
    capsys.readouterr()
    assert nnx_main(["evaluate", str(out), "--device", device, *data,
                     "--out", str(tmp_path / "eval")]) == 0
    image = tmp_path / "digit.png"
    Image.fromarray(np.round(xt[0].reshape(28, 28) * 255).astype(np.uint8)).save(image)
    capsys.readouterr()
    assert nnx_main(["predict", str(out), str(image), "--device", device]) == 0
    assert capsys.readouterr().out.split()[:2] == [str(image), str(int(tt[0]))]


@pytest.mark.parametrize("flags, words", [
    (["--dropout", "1"], "dropout ratio must be in [0, 1)"),
    (["--dropout", "-0.5"], "dropout ratio must be in [0, 1)"),
    (["--weight-decay", "-0.1"], "weight decay must be a finite number >= 0"),
    (["--val-split", "0.9999999"], "leaves 0 to train on"),
    (["--val-split", "1"], "validation split must be in [0, 1)"),
])
def test_bad_chapter_6_flags_are_one_sentence_and_exit_2(mnist_dir, tmp_path, capsys, flags,
                                                         words):
    code = nnx_main(["train", "--device", "cpu", "--iters", "5", "--no-plots", *flags,
                     "--data-dir", str(mnist_dir), "--no-download", "--out",
                     str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "r" / "config.json").exists()
