"""The prepared device check, run dry on the CPU so that it cannot rot before a GPU comes."""

from __future__ import annotations

from pathlib import Path

from tests import helpers


def test_the_device_check_runs_every_step_dry_and_lists_its_files(tmp_path, mnist_dir):
    proc = helpers.run("scripts/gpu_check.py", "--dry-run", "--out", str(tmp_path),
                       "--data-dir", str(mnist_dir), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("# Device check: dry-run")
    for step in ("nnx info", "CUDA test lanes", "nnx bench", "nnx train --device cpu"):
        assert f"| {step} | pass |" in summary, summary
    written = [Path(line[len("wrote "):]) for line in proc.stdout.splitlines()
               if line.startswith("wrote ")]
    assert all(p.is_file() for p in written) and len(written) == len(set(written))
    names = {p.name for p in written}
    assert {"summary.md", "info.json", "tests.txt", "gradients.json", "gradients.md",
            "history.json", "params.npz"} <= names


def test_the_device_check_has_help():
    out = helpers.ok(helpers.run("scripts/gpu_check.py", "--help"))
    assert "--dry-run" in out and "--out" in out
