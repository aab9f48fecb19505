"""The prepared device check: everything a GPU machine should prove, in one command.

Run first whenever a machine with an NVIDIA GPU and CuPy is available, from a fresh
clone after ``pip install -e ".[test,cuda13]"`` (or cuda12). In order, each step with
its own time limit so that one hang cannot eat the rest:

1. ``nnx info --json``: versions, the GPU, what ``--device auto`` picks;
2. ``nnx bench --device cpu,cuda --sweep``: every gradient method on both devices;
3. the book's training run on cuda and on cpu with the same seed: the final test
   accuracies must agree within 0.3 points;
4. the test suite's CUDA lanes with ``NNX_REQUIRE_CUDA=1`` (a missing lane fails), last:
   compiling CuPy's kernels for the first time is the slowest part.

Everything goes into ``benchmarks/<gpu-name>/`` (or ``--out``), with ``summary.md``
naming the device; every file written is printed. The exit status is 0 only when every
step passed; the whole check stops after 8 minutes (a step that would start later is
marked as skipped). ``--dry-run`` runs the same steps on the CPU with tiny sizes (CI does, so
this script cannot rot). Usage: python scripts/gpu_check.py [--dry-run] [--out DIR]
[--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.003  # final test accuracies on cpu and cuda, same seed
BUDGET_S = 480  # the whole check: a lent GPU's time is short
DEADLINE = time.monotonic() + BUDGET_S
TRAIN = ["--iters", "10000"]
TINY_TRAIN = ["--iters", "30", "--eval-every", "30", "--no-plots"]
BENCH = ["--sweep", "--max-seconds", "3"]
TINY_BENCH = ["--repeat", "3", "--numerical-repeat", "1", "--warmup", "1", "--loop-sample", "8",
              "--batch", "10", "--hidden", "5", "--no-peer", "--sweep", "--max-batch", "30",
              "--max-hidden", "10"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="the same steps on the CPU, tiny sizes")
    p.add_argument("--out", type=Path, help="output folder (default: benchmarks/<gpu-name>)")
    p.add_argument("--data-dir", help="directory with the MNIST files (default: the loader's)")
    args = p.parse_args(argv)
    gpu, dry = "cpu" if args.dry_run else "cuda", args.dry_run
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    steps: list[tuple[str, bool, str]] = []

    info_proc = _run([sys.executable, "-m", "nnx.cli", "info", "--json"], 120)
    info = json.loads(info_proc.stdout) if info_proc.returncode == 0 else {}
    name = "dry-run" if dry else _gpu_name(info)
    out = args.out or ROOT / "benchmarks" / _slug(name)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "info.json", info_proc.stdout or info_proc.stderr)
    steps.append(("nnx info", info_proc.returncode == 0 and (dry or bool(info.get("gpus"))),
                  f"{name}; auto resolves to {info.get('resolves_to')} ({info.get('reason')})"))

    bench = [sys.executable, "-m", "nnx.cli", "bench", "--device", f"cpu,{gpu}" if not dry
             else "cpu", *(TINY_BENCH if dry else BENCH), *data, "--out", str(out)]
    proc = _run(bench, 240)
    _write(out / "bench.log", proc.stdout + proc.stderr)
    steps.append(("nnx bench", proc.returncode == 0, f"exit {proc.returncode}"))

    accuracy = {}
    for device in dict.fromkeys((gpu, "cpu")):  # the dry run trains on the CPU once
        run_dir = out / f"train-{device}-seed0"
        cmd = [sys.executable, "-m", "nnx.cli", "train", "--device", device, "--seed", "0",
               *(TINY_TRAIN if dry else TRAIN), *data, "--out", str(run_dir), "--overwrite"]
        start = time.perf_counter()
        proc = _run(cmd, 240)
        _write(out / f"train-{device}.log", proc.stdout + proc.stderr)
        history = run_dir / "history.json"
        if proc.returncode == 0 and history.exists():
            h = json.loads(history.read_text())
            accuracy[device] = (h["final_test_acc"], h["elapsed"], time.perf_counter() - start)
        steps.append((f"nnx train --device {device}", device in accuracy,
                      "test acc {:.4f}, training {:.2f} s, process {:.2f} s".format(
                          *accuracy[device]) if device in accuracy else f"exit {proc.returncode}"))
    if len(accuracy) == 2 and not dry:
        gap = abs(accuracy[gpu][0] - accuracy["cpu"][0])
        steps.append(("same seed, same accuracy", gap <= TOLERANCE,
                      f"|cuda - cpu| = {gap:.4f} (at most {TOLERANCE})"))

    env = dict(os.environ) if dry else {**os.environ, "NNX_REQUIRE_CUDA": "1"}
    tests = [sys.executable, "-m", "pytest", "-q", "--no-cov", "-p", "no:cacheprovider",
             "-k", "cuda or cupy", "--ignore", "tests/test_docker.py"]  # images: not the GPU's
    proc = _run(tests + (["--collect-only"] if dry else []), 300, env=env)
    _write(out / "tests.txt", proc.stdout + proc.stderr)
    last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    steps.append(("CUDA test lanes", proc.returncode == 0, last))

    lines = [f"# Device check: {name}", "", f"Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; "
             f"command: `python scripts/gpu_check.py {' '.join(argv or sys.argv[1:])}`", "",
             "| step | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {s} | {'pass' if ok else 'FAIL'} | {d} |" for s, ok, d in steps]
    _write(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"wrote {path}")
    return 0 if all(ok for _, ok, _ in steps) else 1


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """``cmd`` with at most ``timeout`` seconds, and never past the whole check's deadline."""
    timeout = min(timeout, DEADLINE - time.monotonic())
    if timeout < 10:
        return subprocess.CompletedProcess(cmd, 124, "", f"skipped: the check's {BUDGET_S} s "
                                           "are spent")
    print(f"$ {' '.join(cmd)}", flush=True)
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(cmd, 124, _text(exc.stdout),
                                           _text(exc.stderr) + f"\ntimed out after {timeout} s")


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def _gpu_name(info: dict) -> str:
    gpus = info.get("gpus") or []
    return gpus[0]["name"] if gpus else "no-gpu"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def _write(path: Path, text: str) -> None:
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
