"""The prepared device check, rehearsed on the CPU as a GPU machine would run it.

A GPU machine gets a copy of the tree without ``../shared``, runs the check from wherever
it likes with a relative ``--out``, and has no second try: the rehearsal does the same.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import MNIST_DIR
from tests.helpers import ROOT

SCRIPT = ROOT / "scripts" / "gpu_check.py"
STEPS = ("wheels", "environment", "nvidia-smi", "cupy.show_config()", "nnx info",
         "train strict float64", "train strict float32", "train cpu float64",
         "same seed: strict vs cpu, float64", "float32 vs float64 on strict", "CUDA test lanes",
         "nnx bench")
FILES = {"summary.md", "wheels.log", "environment.json", "nvidia-smi.txt", "cupy-config.txt",
         "info.json", "tests.txt", "bench.log", "bench/gradients.json", "bench/gradients.md"}
FILES |= {f"train-{r}.log" for r in ("gpu-float64", "gpu-float32", "cpu-float64")}
FILES |= {f"train-{r}/history.json" for r in ("gpu-float64", "gpu-float32", "cpu-float64")}


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env() -> dict[str, str]:
    """This environment without coverage's hooks (the copy is not the measured source)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("COVERAGE_", "COV_CORE_")) and k != "NNX_DATA_DIR"}


@pytest.fixture
def rehearsal(tmp_path) -> tuple[Path, Path]:
    """(a copy of the tree with MNIST in .gpu-mnist, an empty folder beside it)."""
    tree = tmp_path / "tree"
    for name in ("backends", "nnx", "scripts", "tests"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    (tree / ".gpu-mnist").mkdir()
    for gz in MNIST_DIR.glob("*-ubyte.gz"):
        (tree / ".gpu-mnist" / gz.name).symlink_to(gz)
    (tmp_path / "elsewhere").mkdir()
    assert not (tree.parent / "shared").exists()
    return tree, tmp_path / "elsewhere"


def _check(tree: Path, cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(tree / "scripts" / "gpu_check.py"), *args],
                          cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _wheel(folder: Path) -> Path:
    """A one-module wheel, to install as the check installs the packages a machine lacks."""
    path = folder / "nnxprobe-1.0-py3-none-any.whl"
    info = "nnxprobe-1.0.dist-info"
    files = {"nnxprobe.py": "", f"{info}/METADATA": "Metadata-Version: 2.1\nName: nnxprobe\n"
             "Version: 1.0\n", f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
             "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    folder.mkdir()
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


@pytest.mark.slow
def test_the_dry_run_passes_on_a_copy_without_shared_from_another_folder(rehearsal):
    tree, elsewhere = rehearsal
    _wheel(tree / ".gpu-wheels")
    proc = _check(tree, elsewhere, "--dry-run", "--wheels", "../tree/.gpu-wheels",
                  "--data-dir", "../tree/.gpu-mnist", "--out", "gc", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = elsewhere / "gc"
    assert not (tree / "gc").exists()
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# Device check: dry run") and "Result: PASS." in summary
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in summary.splitlines()
            if line.startswith("| ") and not line.startswith(("| step", "| ---"))}
    assert list(rows) == list(STEPS), summary
    assert rows["nvidia-smi"] == "skipped" and rows["wheels"] == "pass", summary
    assert all(r == "pass" for n, r in rows.items() if n not in ("nvidia-smi",
               "cupy.show_config()")), summary
    assert "installed nnxprobe-1.0" in summary and f"nnx from {tree}" in summary
    # The lanes' MNIST came through NNX_DATA_DIR: two strict tests read it and passed.
    tests = (out / "tests.txt").read_text()
    assert "test_same_seed_same_run_on_every_backend[strict-float64] PASSED" in tests
    assert " failed" not in tests and " error" not in tests
    written = {Path(line[len("wrote "):]) for line in proc.stdout.splitlines()
               if line.startswith("wrote ")}
    assert all(p.is_file() and p.is_relative_to(out) for p in written)
    assert FILES <= {p.relative_to(out).as_posix() for p in written}
    history = json.loads((out / "train-gpu-float32" / "history.json").read_text())
    assert history["final_test_acc"] > 0.2


def test_bad_input_is_one_sentence_naming_the_fix_and_leaves_no_folder(rehearsal):
    tree, elsewhere = rehearsal
    (elsewhere / "a-file").write_text("")
    cases = [(["--dry-run", "--out", "a-file"], "is a file; name a folder"),
             (["--dry-run", "--data-dir", "nowhere", "--out", "gc"], "does not exist; copy the "
              "four MNIST files"),
             (["--dry-run", "--data-dir", ".", "--out", "gc"], "lacks train-images-idx3-ubyte"),
             (["--dry-run", "--wheels", ".", "--out", "gc"], "holds no wheels; download them")]
    if shutil.which("nvidia-smi") is None:
        cases.append((["--data-dir", "../tree/.gpu-mnist", "--out", "gc"],
                      "no NVIDIA GPU answers on this machine (nvidia-smi not found); run the "
                      "check on a GPU machine, or add --dry-run"))
    for args, words in cases:
        proc = _check(tree, elsewhere, *args, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("gpu_check.py: error: ") and words in lines[0], lines[0]
        assert not (elsewhere / "gc").exists()
    assert (elsewhere / "a-file").is_file()


def test_a_failed_step_gives_its_reason_from_stderr_when_stdout_is_empty():
    gc = _module()
    proc = subprocess.CompletedProcess([], 1, "", "Exit: NNX_REQUIRE_CUDA=1 but no driver\n\n")
    assert gc.reason(proc, prefer="stdout") == "Exit: NNX_REQUIRE_CUDA=1 but no driver (exit 1)"
    proc = subprocess.CompletedProcess([], 1, "== 2 failed, 3 passed in 1s ==\n", "warning\n")
    assert gc.reason(proc, prefer="stdout") == "2 failed, 3 passed in 1s (exit 1)"
    assert gc.reason(subprocess.CompletedProcess([], 124, "", "")) == "exit 124, no output"


def _dry_check(tmp_path):
    """A dry-run check writing into ``tmp_path / "out"``, no step run yet."""
    gc = _module()
    check = gc.Check(True, None, ["--dry-run"], tmp_path / "site")
    check.out = tmp_path / "out"
    check.out.mkdir()
    return check


def test_the_summary_is_written_whatever_a_step_does(tmp_path, monkeypatch):
    check = _dry_check(tmp_path)

    def crash():
        raise RuntimeError("the unexpected")

    check.step("crashing step", crash)
    # A run that exits 0 without a final test accuracy: a FAIL with its reason, no crash.
    run = check.out / "train-gpu-float64"
    run.mkdir()
    (run / "history.json").write_text(json.dumps({"final_test_acc": None, "elapsed": 1.0,
                                                  "grad_time": [0.1]}))
    monkeypatch.setattr(check, "call", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    check.step("train strict float64", lambda: check.train("gpu", "float64"))
    check.step("same seed", lambda: check.compare(("gpu", "float64"), ("cpu", "float64"), 0.003))
    summary = (check.out / "summary.md").read_text()
    assert "| crashing step | FAIL | the step crashed: RuntimeError: the unexpected |" in summary
    assert ("| train strict float64 | FAIL | exit 0 but history.json has no final test "
            "accuracy (None) |") in summary
    assert "| same seed | FAIL | no accuracy to compare: a training step failed |" in summary
    assert "Result: running" in summary
    check.write_summary(final=True)
    assert "Result: FAIL: crashing step, train strict float64, same seed." in \
        (check.out / "summary.md").read_text()


def test_a_stopped_check_names_the_step_it_stopped_and_those_not_run(tmp_path, monkeypatch):
    check = _dry_check(tmp_path)

    def stop():
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "environment", stop)
    assert check.run_all() == 1
    summary = (check.out / "summary.md").read_text()
    assert "| wheels | skipped |" in summary
    assert "| environment | FAIL | stopped while it ran (interrupted) |" in summary
    assert "| nnx bench | FAIL | not run: stopped (interrupted) |" in summary
    assert summary.count("not run: stopped") == len(STEPS) - 2


def test_the_check_has_help_with_the_preparation():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for words in ("--dry-run", "--out", "pip download --no-deps", ".gpu-wheels", ".gpu-mnist",
                  "python3 scripts/gpu_check.py --wheels .gpu-wheels --data-dir .gpu-mnist"):
        assert words in proc.stdout
