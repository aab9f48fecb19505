"""What several test files need: the repository root and running a program of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python ARGS...`` in the repository root, output captured as text."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    """The stdout of a run that must have succeeded without a traceback."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The one stderr line of a run that must have failed cleanly."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def trained_run(tmp_path_factory, name: str, *flags: str) -> Path:
    """A run directory that ``nnx train --device cpu --no-plots FLAGS`` finished on MNIST."""
    from nnx.cli import main
    from tests.conftest import MNIST_DIR

    out = tmp_path_factory.mktemp(name) / "run"
    assert main(["train", "--device", "cpu", "--no-plots", *flags, "--data-dir", str(MNIST_DIR),
                 "--out", str(out)]) == 0
    return out
