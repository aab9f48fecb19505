"""Smoke tests of the chapter 4-6 scripts: tiny runs in a subprocess, numbers checked
against closed forms computed here, and user errors ending in one line on stderr."""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import ROOT, ok

SCRIPTS = ("partial_derivatives", "gradient_descent", "optimizer_paths", "compare_optimizers")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FLOAT = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|inf|nan)"


def run(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return helpers.run(f"scripts/{name}.py", *args, timeout=timeout)


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def rows(text: str, fields: int) -> list[list[str]]:
    """Lines of ``text`` whose first ``fields`` whitespace-separated words are numbers."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= fields and all(re.fullmatch(FLOAT, w) for w in words[:fields]):
            out.append(words)
    return out


def load(name: str):
    """The script as a module, to call its main() in-process (the error cases are fast)."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    out = ok(run(name, "--help", timeout=60))
    assert f"usage: {name}.py" in out and "--out" in out
    if name != "partial_derivatives":
        assert "--lr" in out or "--optimizer" in out


# -- chapter 4 ------------------------------------------------------------------------------
def test_partial_derivatives_match_2x_on_the_strict_device(tmp_path):
    out = ok(run("partial_derivatives", "--device", "strict", "--out", str(tmp_path)))
    assert "device: strict" in out
    table = rows(out, 9)
    points = [(float(r[0]), float(r[1])) for r in table]
    assert {(3.0, 4.0), (0.0, 2.0), (3.0, 0.0)} <= set(points)  # the book's points
    for r in table:
        x0, x1, *numerical = (float(w) for w in r[:6])
        for got, exact in zip(numerical, [2 * x0, 2 * x1] * 2, strict=True):
            assert abs(got - exact) < 1e-6, r
    field = re.search(rf"gradient field: (\d+) grid points.*= ({FLOAT})", out)
    assert int(field[1]) == 18 * 18 and float(field[2]) < 1e-6
    assert_png(tmp_path / "gradient_field.png")


def test_gradient_descent_follows_the_closed_form(tmp_path):
    x0 = -3.0
    out = ok(
        run(
            "gradient_descent",
            "--device",
            "cpu",
            "--lr",
            "0.1",
            "--lr",
            "0.01",
            "--lr",
            "1.1",
            "--steps",
            "10",
            "100",
            "--x0",
            str(x0),
            "--out",
            str(tmp_path),
        )
    )
    table = {(float(r[0]), int(r[1])): r for r in rows(out, 2)}
    assert set(table) == {(lr, k) for lr in (0.1, 0.01, 1.1) for k in (10, 100)}
    for (lr, k), r in table.items():
        exact = x0 * (1 - 2 * lr) ** k
        if (lr, k) == (1.1, 100):  # 3 * 1.2^k passes 1e6 at k = 70
            assert r[2] == "DIVERGED" and "DIVERGED at step 70" in " ".join(r)
            continue
        assert abs(float(r[2]) - exact) <= 1e-6 * abs(exact), r
    # the book's 2-D example: (-3, 4) * 0.8^20
    line = next(x for x in out.splitlines() if x.startswith("2-D"))
    got = [float(v) for v in re.search(rf"x = \(({FLOAT}), ({FLOAT})\)", line).groups()]
    for g, start in zip(got, (-3.0, 4.0), strict=True):
        assert g == pytest.approx(start * 0.8**20, rel=1e-6)
    assert_png(tmp_path / "gradient_descent.png")
    assert_png(tmp_path / "gradient_descent_2d.png")


# -- chapter 6 ------------------------------------------------------------------------------
def test_optimizer_paths_reach_the_minimum_on_the_strict_device(tmp_path):
    out = ok(run("optimizer_paths", "--device", "strict", "--out", str(tmp_path)))
    assert "start (-7, 2), 30 steps" in out  # the book's figure 6-8
    graph = re.search(rf"max relative difference ({FLOAT})", out)
    assert float(graph[1]) < 1e-12  # the Mul/Add/Square graph's backward is (x/10, 2y)
    final = {}
    for line in out.splitlines():
        words = line.split()
        if words and words[0] in ("sgd", "momentum", "adagrad", "adam") and len(words) >= 5:
            final[words[0]] = [float(w) for w in words[1:4]] + [words[4]]
    assert set(final) == {"sgd", "momentum", "adagrad", "adam"}
    assert all(v[3] == "ok" for v in final.values())
    # SGD on a separable quadratic: x_k = -7 (1 - lr/10)^k, y_k = 2 (1 - 2 lr)^k, a zigzag
    x, y, f, _ = final["sgd"]
    assert x == pytest.approx(-7 * (1 - 0.095) ** 30, rel=1e-9)
    assert y == pytest.approx(2 * (1 - 1.9) ** 30, rel=1e-9)
    # The figure's lesson: AdaGrad, which scales each coordinate's step, gets closest; each
    # ends far below the start's f = 49/20 + 4 = 6.45.
    x, y, f, _ = final["adagrad"]
    assert abs(y) < 1e-6 and f < 1e-3 and f == min(v[2] for v in final.values())
    assert all(v[2] < 6.45 / 30 for v in final.values()), final
    assert_png(tmp_path / "optimizer_paths.png")


def test_optimizer_paths_reports_divergence(tmp_path, capsys):
    # y_k = 2 (1 - 2.4)^k passes 1e6 at k = 39; lr 1e300 overflows at once.
    code = load("optimizer_paths").main(
        [
            "--device",
            "cpu",
            "--start",
            "-7",
            "2",
            "--steps",
            "100",
            "--optimizer",
            "sgd",
            "--optimizer",
            "adagrad",
            "--lr",
            "sgd=1.2",
            "--lr",
            "adagrad=1e300",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^sgd .* DIVERGED ", out, re.M) and "sgd diverged at step 39" in out
    assert re.search(r"^adagrad .* DIVERGED ", out, re.M) and "adagrad diverged at step 1" in out
    assert_png(tmp_path / "optimizer_paths.png")


def test_compare_optimizers_on_real_mnist(tmp_path, mnist_dir):
    out = ok(
        run(
            "compare_optimizers",
            "--device",
            "cpu",
            "--iters",
            "30",
            "--hidden",
            "20",
            "--batch-size",
            "64",
            "--data-dir",
            str(mnist_dir),
            "--no-download",
            "--out",
            str(tmp_path),
        )
    )
    results = {}
    for line in out.splitlines():
        words = line.split()
        if words and words[0] in ("sgd", "momentum", "adagrad", "adam"):
            results[words[0]] = [float(w) for w in words[1:6]]
    assert set(results) == {"sgd", "momentum", "adagrad", "adam"}
    firsts = {r[0] for r in results.values()}
    # Same initial weights and the same first batch: the first loss is the same number,
    # near ln 10 = 2.30 (He-initialised ReLU net, 10 classes).
    assert len(firsts) == 1 and abs(firsts.pop() - math.log(10)) < 0.3
    for name, (first, last, tail_mean, accuracy, _) in results.items():
        assert math.isfinite(last) and tail_mean < first, (name, results[name])
        assert 0.15 < accuracy <= 1.0, (name, accuracy)  # chance is 0.1
    assert_png(tmp_path / "compare_optimizers.png")


# -- errors a user can cause ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "args", "words"),
    [
        ("gradient_descent", ["--lr", "-0.1"], "lr must be a positive"),
        ("optimizer_paths", ["--momentum", "1.5"], "momentum must be in [0, 1)"),
        ("compare_optimizers", ["--optimizer", "adamw"], "unknown optimizer 'adamw'"),
    ],
)
def test_bad_input_is_one_line_in_a_subprocess(tmp_path, name, args, words):
    proc = run(name, *args, "--device", "cpu", "--out", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == "" or "wrote" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}.py: error: "), proc.stderr
    assert words in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "args", "words"),
    [
        ("partial_derivatives", ["--point", "nan", "1"], "--point must be finite"),
        ("partial_derivatives", ["--point", "1e300", "1e300"], "x0^2 + x1^2 overflows float64"),
        ("partial_derivatives", ["--point", "1e154", "1e154"], "at most 9e+153"),
        ("partial_derivatives", ["--device", "tpu"], "unknown device 'tpu'"),
        ("gradient_descent", ["--lr", "0"], "lr must be a positive"),
        ("gradient_descent", ["--lr", "inf"], "lr must be a positive"),
        ("gradient_descent", ["--steps", "0"], "--steps must be integers from 1 to"),
        ("gradient_descent", ["--steps", "100000000000"], "from 1 to 1,000,000, got 1000000"),
        ("optimizer_paths", ["--steps", "1000000000"], "from 1 to 1,000,000, got 1000000000"),
        ("optimizer_paths", ["--optimizer", "adamw"], "sgd, momentum, nesterov, adagrad"),
        ("optimizer_paths", ["--lr", "-1"], "lr must be a positive"),
        ("optimizer_paths", ["--lr", "adam=x"], "--lr expects VALUE or NAME=VALUE"),
        ("optimizer_paths", ["--optimizer", "sgd", "--lr", "adam=0.1"], "not among"),
        ("compare_optimizers", ["--lr", "sgd=-0.5"], "lr must be a positive"),
        ("compare_optimizers", ["--momentum", "1.5"], "momentum must be in [0, 1)"),
        ("compare_optimizers", ["--hidden", "0"], "--hidden must be positive"),
    ],
)
def test_bad_input_is_one_sentence(tmp_path, capsys, name, args, words):
    code = load(name).main([*args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"{name}.py: error: ") and words in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed", ["-1", "1.5", "abc"])
def test_a_bad_seed_is_a_flag_error(tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as info:
        load("compare_optimizers").main(["--seed", seed, "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --seed: expected a non-negative integer" in last
    assert not (tmp_path / "out").exists()


def test_missing_mnist_is_one_sentence(tmp_path, capsys):
    code = load("compare_optimizers").main(
        [
            "--device",
            "cpu",
            "--iters",
            "1",
            "--data-dir",
            str(tmp_path / "empty"),
            "--no-download",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "compare_optimizers.py: error:" in err
    assert not (tmp_path / "out").exists()


def test_a_refusal_leaves_no_parent_directory_made_for_the_output(tmp_path, capsys):
    empty = tmp_path / "no-mnist"
    empty.mkdir()
    code = load("compare_optimizers").main(["--data-dir", str(empty), "--no-download",
                                            "--out", str(tmp_path / "runs" / "compare")])
    assert code == 2 and "compare_optimizers.py: error: " in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_matplotlib_writes_nothing_into_the_users_config(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "scripts/partial_derivatives.py", "--device", "cpu",
                           "--out", str(tmp_path / "out")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "gradient_field.png").stat().st_size > 0
    assert not (tmp_path / "home" / ".config").exists()
    assert (tmp_path / "home" / ".cache" / "nnx" / "matplotlib").is_dir()  # kept: fonts once
