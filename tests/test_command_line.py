"""The command line spelled one way: each message a user reads, and each shared flag."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest

from backends import get_backend
from nnx.cli import main as nnx_main
from nnx.errors import DataError, plural
from nnx.mnist import load_mnist
from nnx.training import TrainConfig
from tests.helpers import one_line_error, run


def test_nnx_version_and_nnx_info_name_the_installed_version(capsys):
    want = version("nnx")  # the distribution's metadata, not the code that prints it
    with pytest.raises(SystemExit) as done:
        nnx_main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"nnx {want}"
    assert nnx_main(["info"]) == 0
    assert re.search(rf"^nnx\s+{re.escape(want)}$", capsys.readouterr().out, re.M)
    assert nnx_main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nnx"] == want


@pytest.mark.parametrize("command", ["info", "train", "gradcheck", "evaluate", "predict",
                                     "bench", "bench gradients", "bench training"])
def test_help_shows_no_markup(command, capsys):
    with pytest.raises(SystemExit):
        nnx_main([*command.split(), "--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":mod:" not in text and ":func:" not in text, text
    assert text.startswith(f"usage: nnx {command}")


def test_the_bench_without_a_subcommand_is_the_gradient_benchmark(capsys):
    with pytest.raises(SystemExit):
        nnx_main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert "gradients" in text and "training" in text and "without a SUBCOMMAND, gradients" \
        in text


def test_no_download_error_names_the_flag(tmp_path):
    line = one_line_error(run("-m", "nnx.cli", "train", "--data-dir", str(tmp_path / "none"),
                              "--no-download", "--out", str(tmp_path / "run")))
    assert line.startswith("nnx train: error: MNIST files missing")
    assert line.endswith("or allow downloading (drop --no-download; download=True in Python)")


def test_a_mistyped_data_directory_variable_is_refused_not_created(tmp_path, monkeypatch):
    typo = tmp_path / "nonexistent"
    monkeypatch.setenv("NNX_DATA_DIR", str(typo))
    with pytest.raises(DataError) as caught:
        load_mnist()
    assert str(caught.value) == (f"NNX_DATA_DIR names {typo}, which is not a directory; "
                                 "correct the variable, or create the directory to download "
                                 "MNIST into it")
    assert not typo.exists()


@pytest.mark.parametrize(("n", "noun", "words"), [(1, "run", "1 run"), (2, "run", "2 runs"),
                                                  (0, "iteration", "0 iterations"),
                                                  (1, "iteration", "1 iteration")])
def test_counts_take_their_number(n, noun, words):
    assert plural(n, noun) == words


def test_a_run_stopped_after_one_iteration_says_one_iteration(mnist_dir):
    from nnx.training import train

    (x, t), (xt, tt) = load_mnist(data_dir=mnist_dir, download=False)
    calls = []
    result = train(TrainConfig(device="cpu", iters=5), ((x[:500], t[:500]), (xt[:100], tt[:100])),
                   log=lambda _: None, progress=False,
                   stop=lambda: calls.append(1) or len(calls) > 1)
    assert result.message == "interrupted after 1 iteration"


def _parse(argv):
    from nnx.cli import build_parser

    return build_parser(argv).parse_args(argv)


@pytest.mark.parametrize("argv", [["train"], ["gradcheck"]])
def test_hidden_is_spelled_one_way(argv):
    assert _parse([*argv, "--hidden", "100", "100"]).hidden == [100, 100]
    assert _parse([*argv, "--hidden", "100", "--hidden", "100"]).hidden == [100, 100]
    assert _parse(argv).hidden == [50]


def test_compare_optimizers_takes_hidden_as_nnx_train_does():
    from tests.test_scripts_ch4_6 import load

    parser = load("compare_optimizers").build_parser()
    assert parser.parse_args(["--hidden", "100", "100"]).hidden == [100, 100]
    assert parser.parse_args(["--hidden", "100", "--hidden", "100"]).hidden == [100, 100]
    assert parser.parse_args([]).hidden == [100, 100, 100, 100]


def test_the_benchmark_takes_one_hidden_size_and_says_so(tmp_path):
    assert _parse(["bench", "gradients", "--hidden", "100"]).hidden == [100]
    line = one_line_error(run("-m", "nnx.cli", "bench", "--device", "cpu", "--hidden", "100",
                              "100", "--out", str(tmp_path / "x")))
    assert line == ("nnx bench: error: the benchmark times the book's two-layer net: give one "
                    "--hidden size, not 100 100")
    assert not (tmp_path / "x").exists()


def test_the_loop_method_warns_with_its_duration(monkeypatch, mnist_dir):
    from nnx.advice import loop_warning

    data = load_mnist(data_dir=mnist_dir, download=False)
    be = get_backend("cpu")
    assert loop_warning(TrainConfig(grad="numerical"), data, be) is None  # vectorised
    assert loop_warning(TrainConfig(numerical_method="loop"), data, be) is None  # backprop
    # 20 coordinates in 0.5 s: 0.025 s each, x 39,760 coordinates x 10,000 iterations
    monkeypatch.setattr(type(be), "time", lambda self, fn, repeat=10, warmup=2: np.array([0.5]))
    text = loop_warning(TrainConfig(grad="numerical", numerical_method="loop"), data, be)
    days = round(0.025 * 39_760 * 10_000 / 86_400)
    assert text == ("--numerical-method loop computes 39,760 partial derivatives one at a time "
                    f"in each of 10000 iterations: about {days} days on cpu; "
                    "--numerical-method vectorized gives the same values far faster")


def test_nnx_train_prints_the_loop_warning_first(mnist_dir, tmp_path):
    proc = run("-m", "nnx.cli", "train", "--device", "cpu", "--grad", "numerical",
               "--numerical-method", "loop", "--iters", "1", "--hidden", "1", "--batch-size",
               "10", "--no-plots", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    # 784 x 1 + 1 + 1 x 10 + 10 coordinates
    assert first.startswith("nnx train: warning: --numerical-method loop computes 805 partial "
                            "derivatives one at a time in each of 1 iteration: about ")


def test_the_recorded_bench_command_is_one_that_exists(tmp_path):
    proc = run("-m", "nnx.cli", "bench", "--device", "cpu", "--repeat", "2", "--rounds", "1",
               "--warmup", "1", "--numerical-repeat", "1", "--loop-sample", "4", "--no-peer",
               "--no-refs", "--hidden", "3", "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    command = json.loads((tmp_path / "gradients.json").read_text())["command"]
    assert command.startswith("nnx bench --device cpu --repeat 2")
    assert subprocess.run([sys.executable, "-m", "nnx.cli", *command.split()[1:2], "--help"],
                          capture_output=True).returncode == 0


def test_an_optimizer_is_one_class_and_its_flags_follow(monkeypatch):
    """A new optimizer written in one file: its hyper-parameter becomes a flag of nnx train
    and of the scripts, passed to it, with its constructor's default in the help."""
    from nnx import optimizers, program

    class Decayed(optimizers.SGD):
        name = "decayed"

        def __init__(self, lr: float = 0.01, rho: float = 0.5) -> None:
            super().__init__(lr)
            self.rho = rho

    monkeypatch.setitem(optimizers.OPTIMIZERS, "decayed", Decayed)
    assert program.hyper_flags()["rho"] == ["decayed"]
    args = _parse(["train", "--optimizer", "decayed", "--rho", "0.25"])
    from nnx.cli import train as command

    config = command._config(args)
    assert config.optimizer_options == {"rho": 0.25} and config.lr == 0.01
    made = optimizers.make_optimizer("decayed", lr=config.lr, **config.optimizer_options)
    assert made.hyperparameters == {"lr": 0.01, "rho": 0.25}
    import argparse

    parser = argparse.ArgumentParser()
    program.add_optimizer_arguments(parser, ["sgd"], "0.1")
    assert "rho of decayed (default: 0.5)" in " ".join(parser.format_help().split())
    opts = program.optimizers_from_args(parser.parse_args(
        ["--optimizer", "decayed", "--optimizer", "sgd", "--rho", "0.75"]), ["sgd"])
    assert [o.hyperparameters for o in opts] == [{"lr": 0.01, "rho": 0.75}, {"lr": 0.01}]


@pytest.mark.parametrize("where", ["network", "train", "program", "bench"])
def test_the_seed_is_checked_by_one_validator(where, monkeypatch):
    import argparse

    from nnx import config, errors, initialization, network, program

    calls = []
    real = errors.non_negative_int
    monkeypatch.setattr(errors, "non_negative_int",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    for module in (initialization, config):  # where the net's and the run's seeds are checked
        monkeypatch.setattr(module, "non_negative_int", errors.non_negative_int)
    if where == "network":
        network.TwoLayerNet(4, 3, 2, seed=5)
    elif where == "train":
        TrainConfig(seed=5).validate()
    elif where == "program":
        assert program.non_negative_int("5") == 5
        with pytest.raises(argparse.ArgumentTypeError, match="got -1$"):
            program.non_negative_int("-1")
    else:
        import nnx.bench.gradients as bench

        monkeypatch.setattr(bench, "non_negative_int", errors.non_negative_int)
        parser = argparse.ArgumentParser()
        bench.configure(parser)
        args = parser.parse_args(["--device", "cpu", "--seed", "-1"])
        args._argv = []
        with pytest.raises(errors.InputError, match="^--seed must be a non-negative integer"):
            bench.run(args)
    assert calls and calls[0][1] in (5, -1)
