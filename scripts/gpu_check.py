"""The prepared device check: everything a GPU machine should prove, in one command.

Steps, each with its own time limit (the whole check stops after 8 minutes):
the environment (packages, where nnx is imported from, the CuPy kernel cache), the
output of ``nvidia-smi`` and ``cupy.show_config()``, ``nnx info --json`` (the GPU's
name); the book's training, seed 0, on cuda in float64 and in float32 and on cpu in
float64 (final test accuracies compared); the test suite's CUDA lanes with
``NNX_REQUIRE_CUDA=1``; ``nnx bench --device cpu,cuda --sweep`` (warm-up first; PyTorch's
GPU too where the machine's PyTorch drives one). Every
result goes into one folder, ``--out``, with a ``summary.md`` naming the device and
PASS/FAIL per step with the reason of each FAIL; it is written at the start and after
every step, so it is there even if the check is stopped. The exit status is 0 only when
no step failed. ``--dry-run`` runs the same steps on the CPU with tiny sizes, the
``strict`` test device standing in for the GPU, and writes the same files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREPARE = """\
On a GPU machine without internet access whose Python lacks some of nnx's pure-Python
dependencies, prepare on a machine with internet access, in the repository root:

  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
      -d .gpu-wheels array-api-compat array-api-strict platformdirs autograd threadpoolctl
  mkdir -p .gpu-mnist && cp ../shared/mnist/*-ubyte.gz .gpu-mnist/

(--python-version: the GPU machine's; the four .gz files: MNIST, from any folder that
holds them). Both folders are ignored by git: take them along with the working tree.
Then, on the GPU machine, in the repository root, the one command:

  python3 scripts/gpu_check.py --wheels .gpu-wheels --data-dir .gpu-mnist --out gpu-check

and bring back the folder as one file: tar czf gpu-check.tar.gz gpu-check. The wheels
are installed into a temporary folder for the check's own processes, nothing else.
"""
BUDGET_S = 480  # the whole check: time on a GPU machine is short
SEED_TOLERANCE = 0.003  # |final test accuracy on the GPU - on the CPU|, float64, same seed
FLOAT32_TOLERANCE = 0.005  # float32 against float64 on the GPU, same seed
MNIST = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")
PACKAGES = ("numpy", "matplotlib", "tqdm", "pytest", "pytest-cov", "pillow", "array-api-compat",
            "array-api-strict", "platformdirs", "autograd", "threadpoolctl")
TRAINS = (("gpu", "float64"), ("gpu", "float32"), ("cpu", "float64"))
TRAIN = ["--iters", "10000"]
TINY_TRAIN = ["--iters", "30", "--eval-every", "30"]
BENCH = ["--sweep", "--max-seconds", "2", "--warmup", "20"]
TINY_BENCH = ["--repeat", "3", "--numerical-repeat", "1", "--warmup", "1", "--loop-sample", "8",
              "--batch", "10", "--hidden", "5", "--no-peer", "--sweep", "--max-batch", "30",
              "--max-hidden", "10"]
LANES = "cuda or cupy"  # the CUDA lanes and the tests of CuPy's setup
# Dry, those are skipped: two tests that read MNIST as the lanes do run on strict instead.
DRY_LANES = f"{LANES} or (strict-float64 and (same_seed or three_mnist_images))"
ENVIRONMENT = """\
import importlib.metadata as md, json, platform, sys
import nnx
dists = {(d.metadata["Name"] or "").lower() for d in md.distributions()}
names = sorted(n for n in dists if n.startswith("cupy")) + sys.argv[1:]
versions = {}
for n in names:
    try:
        versions[n] = md.version(n)
    except md.PackageNotFoundError:
        versions[n] = None
print(json.dumps({"python": platform.python_version(), "executable": sys.executable,
                  "nnx": nnx.__file__, "packages": versions}, indent=2))
"""


class Stop(Exception):
    """A bad input: one sentence naming the fix."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=PREPARE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true",
                   help="the same steps on the CPU with tiny sizes, strict standing in for cuda")
    p.add_argument("--out", metavar="DIR", help="the results folder (default: "
                   "benchmarks/<gpu-name>, or runs/gpu-check-dry-run); relative to where the "
                   "check is run")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding the four MNIST files "
                   "(default: nnx's, which downloads them)")
    p.add_argument("--wheels", metavar="DIR", help="folder of wheels to install for the check's "
                   "processes (the packages the machine lacks)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    site = Path(tempfile.mkdtemp(prefix="nnx-gpu-check-site-"))
    try:
        return prepare(args, sys.argv[1:] if argv is None else argv, site).run_all()
    except Stop as exc:
        print(f"gpu_check.py: error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(site, ignore_errors=True)


def prepare(args: argparse.Namespace, argv: list[str], site: Path) -> Check:
    """Check the inputs, install the wheels, find the GPU; then make the results folder."""
    out = _absolute(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise Stop(f"--out {out} is a file; name a folder for the results instead")
    data = _absolute(args.data_dir) if args.data_dir else None
    if data is not None:
        if not data.is_dir():
            raise Stop(f"the data folder {data} does not exist; copy the four MNIST files "
                       "into it (see --help) or leave --data-dir out to download them")
        missing = [n for n in MNIST if not any((data / f"{n}{s}").is_file() for s in ("", ".gz"))]
        if missing:
            raise Stop(f"the data folder {data} lacks {', '.join(missing)}; copy the four "
                       "MNIST files into it (see --help)")
    wheels = sorted(_absolute(args.wheels).glob("*.whl")) if args.wheels else []
    if args.wheels and not wheels:
        raise Stop(f"--wheels {_absolute(args.wheels)} holds no wheels; download them first "
                   "(see --help)")
    check = Check(args.dry_run, data, argv, site)
    check.install(wheels)
    check.find_gpu()
    if not args.dry_run and not check.gpu_seen:
        raise Stop(f"no NVIDIA GPU answers on this machine ({check.smi_reason}); run the check "
                   "on a GPU machine, or add --dry-run to rehearse it on the CPU")
    where = "runs/gpu-check-dry-run" if args.dry_run else f"benchmarks/{_slug(check.name)}"
    check.out = out or ROOT / where
    try:
        check.out.mkdir(parents=True, exist_ok=True)
        check.write_summary()
    except OSError as exc:
        raise Stop(f"cannot write the results folder {check.out} ({exc.strerror or exc}); "
                   "name a folder you can write with --out") from exc
    return check


class Check:
    """The steps' results, the processes they run and the summary they keep up to date."""

    def __init__(self, dry: bool, data: Path | None, argv: list[str], site: Path) -> None:
        self.dry, self.data, self.argv, self.site = dry, data, argv, site
        self.gpu = "strict" if dry else "cuda"
        self.started, self.deadline = time.time(), time.monotonic() + BUDGET_S
        path = os.pathsep.join([str(self.site), str(ROOT), os.environ.get("PYTHONPATH", "")])
        self.env = {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep)}
        self.out = Path()  # set once the GPU's name is known
        self.name = "dry run on the CPU (strict stands in for the GPU)" if dry else "unknown GPU"
        self.steps: dict[str, tuple[str, str]] = {}
        self.accuracy: dict[tuple[str, str], float] = {}
        self.facts: dict = {}  # nnx info's, once asked
        self.running = ""  # the step under way
        self.smi = self.smi_full = None
        self.smi_reason = "nvidia-smi not run"
        self.info = subprocess.CompletedProcess([], 1, "", "nnx info not run")
        self.install([])

    # -- before the results folder exists ------------------------------------------------
    def install(self, wheels: list[Path]) -> None:
        """Install ``wheels`` into the folder the check's processes import from first."""
        self.wheels_result = ("skipped", "no --wheels: the packages come from this Python")
        self.wheels_log = "no --wheels\n"
        if wheels:
            proc = self.call([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                              "--no-deps", "--no-compile", "--disable-pip-version-check",
                              "--target", str(self.site), *map(str, wheels)], 120)
            names = ", ".join(w.name.split("-py")[0] for w in wheels)
            self.wheels_result = ("pass", f"installed {names}") if proc.returncode == 0 else \
                ("FAIL", f"pip: {reason(proc)}")
            self.wheels_log = proc.stdout + proc.stderr

    def find_gpu(self) -> None:
        smi = shutil.which("nvidia-smi")
        self.smi = self.call([smi, "--query-gpu=name,driver_version,memory.total,compute_cap",
                              "--format=csv,noheader"], 30) if smi else None
        self.smi_full = self.call([smi], 30) if smi else None
        rows = [r for r in (self.smi.stdout.splitlines() if self.smi else []) if r.strip()]
        self.smi_reason = "nvidia-smi not found" if smi is None else (
            "nvidia-smi lists no GPU" if not rows else f"nvidia-smi: {rows[0]}")
        self.info = self.call([sys.executable, "-m", "nnx.cli", "info", "--json"], 60)
        try:
            self.facts = json.loads(self.info.stdout) if self.info.returncode == 0 else {}
        except ValueError:
            self.facts = {}
        gpus = self.facts.get("gpus") or []
        self.gpu_seen = self.smi is not None and self.smi.returncode == 0 and bool(rows) or \
            bool(gpus)
        if not self.dry:
            self.name = rows[0].split(",")[0].strip() if rows else (
                gpus[0]["name"] if gpus else self.name)

    # -- the steps -------------------------------------------------------------------------
    def run_all(self) -> int:
        plan: list[tuple[str, Callable[[], tuple[str, str]]]] = [
            ("wheels", self.wheels), ("environment", self.environment),
            ("nvidia-smi", self.nvidia_smi), ("cupy.show_config()", self.cupy_config),
            ("nnx info", self.nnx_info)]
        plan += [(f"train {self._device(role)} {dtype}", lambda r=role, t=dtype: self.train(r, t))
                 for role, dtype in TRAINS]
        plan += [(f"same seed: {self.gpu} vs cpu, float64", lambda: self.compare(
                     ("gpu", "float64"), ("cpu", "float64"), SEED_TOLERANCE)),
                 (f"float32 vs float64 on {self.gpu}", lambda: self.compare(
                     ("gpu", "float32"), ("gpu", "float64"), FLOAT32_TOLERANCE)),
                 ("CUDA test lanes", self.tests), ("nnx bench", self.bench)]
        try:
            for name, fn in plan:
                self.step(name, fn)
        except (KeyboardInterrupt, SystemExit) as exc:
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"exit {exc.code}"
            for name, _ in plan:
                what = "stopped while it ran" if name == self.running else "not run: stopped"
                self.steps.setdefault(name, ("FAIL", f"{what} ({why})"))
        finally:
            self.write_summary(final=True)
        print((self.out / "summary.md").read_text())
        for path in sorted(p for p in self.out.rglob("*") if p.is_file()):
            print(f"wrote {path}")
        return 0 if all(r != "FAIL" for r, _ in self.steps.values()) else 1

    def step(self, name: str, fn: Callable[[], tuple[str, str]]) -> None:
        """Run one step; whatever it raises is its FAIL, and the summary is rewritten."""
        self.running = name
        if self.deadline - time.monotonic() < 10:
            result = ("FAIL", f"not run: the check's {BUDGET_S} s were spent")
        else:
            try:
                result = fn()
            except Exception as exc:  # a step's crash is its result, never the check's end
                result = ("FAIL", f"the step crashed: {type(exc).__name__}: {exc}")
        self.steps[name] = result
        self.write_summary()

    def wheels(self) -> tuple[str, str]:
        self.write("wheels.log", self.wheels_log)
        return self.wheels_result

    def environment(self) -> tuple[str, str]:
        proc = self.call([sys.executable, "-c", ENVIRONMENT, *PACKAGES], 60)
        self.write("environment.json", proc.stdout or reason(proc))
        if proc.returncode != 0:
            return "FAIL", reason(proc)
        env = json.loads(proc.stdout)
        missing = [n for n, v in env["packages"].items() if v is None]
        cupys = [n for n in env["packages"] if n.startswith("cupy")]
        if len(cupys) > 1:
            return "FAIL", f"{' and '.join(cupys)} are both installed; uninstall all but one"
        if not self.dry and not cupys:
            missing.append("cupy")
        cache = self._kernel_cache()
        detail = f"Python {env['python']}; nnx from {Path(env['nnx']).parent.parent}; {cache}"
        if missing:
            return "FAIL", f"missing {', '.join(missing)}: carry their wheels in --wheels"
        if not Path(env["nnx"]).resolve().is_relative_to(ROOT):
            return "FAIL", f"nnx is imported from {env['nnx']}, not from {ROOT}"
        return "pass", detail

    def nvidia_smi(self) -> tuple[str, str]:
        text = "\n".join(f"$ {' '.join(p.args)}\n{p.stdout}{p.stderr}" for p in
                         (self.smi_full, self.smi) if p is not None)
        self.write("nvidia-smi.txt", text or "nvidia-smi: not found on this machine\n")
        if self.smi is not None and self.smi.returncode == 0:
            return "pass", self.smi_reason
        return ("skipped" if self.dry else "FAIL"), self.smi_reason

    def cupy_config(self) -> tuple[str, str]:
        proc = self.call([sys.executable, "-c", "import cupy; cupy.show_config()"], 60)
        self.write("cupy-config.txt", proc.stdout + proc.stderr)
        if proc.returncode != 0:
            return ("skipped" if self.dry else "FAIL"), reason(proc)
        found = re.findall(r"^(CUDA Driver Version|NVRTC Version|cuBLAS Version)\s*: (.*)$",
                           proc.stdout, re.M)
        bad = any("Error" in v for _, v in found)  # a library that does not load
        detail = "; ".join(f"{k} {v.split('(')[0] if 'Error' in v else v}" for k, v in found)
        return ("pass" if not bad else "skipped" if self.dry else "FAIL"), detail

    def nnx_info(self) -> tuple[str, str]:
        self.write("info.json", self.info.stdout if self.facts else
                   json.dumps({"error": reason(self.info)}))
        if not self.facts:
            return "FAIL", reason(self.info)
        gpus = self.facts.get("gpus") or []
        detail = f"auto resolves to {self.facts.get('resolves_to')}; GPUs: " + (
            ", ".join(f"{g.get('device')} {g.get('name')}" for g in gpus)
            or f"none ({self.facts.get('reason')})")
        return ("pass" if self.dry or gpus else "FAIL"), detail

    def train(self, role: str, dtype: str) -> tuple[str, str]:
        run = self.out / f"train-{role}-{dtype}"
        cmd = [sys.executable, "-m", "nnx.cli", "train", "--device", self._device(role), "--dtype",
               dtype, "--seed", "0", *(TINY_TRAIN if self.dry else TRAIN), "--no-plots",
               *self._data(no_download=True), "--out", str(run), "--overwrite"]
        start = time.monotonic()
        proc = self.call(cmd, 90)
        self.write(f"train-{role}-{dtype}.log", proc.stdout + proc.stderr)
        if proc.returncode != 0:
            return "FAIL", reason(proc)
        h = json.loads((run / "history.json").read_text())
        acc, grad = h.get("final_test_acc"), h.get("grad_time") or []
        if not isinstance(acc, (int, float)) or not grad:
            return "FAIL", f"exit 0 but history.json has no final test accuracy ({acc!r})"
        self.accuracy[role, dtype] = acc
        median = sorted(grad)[len(grad) // 2]
        return "pass", (f"test acc {acc:.4f}; training {h['elapsed']:.2f} s, process "
                        f"{time.monotonic() - start:.2f} s; grad first {grad[0] * 1e3:.3f} ms, "
                        f"median {median * 1e3:.3f} ms")

    def compare(self, a: tuple[str, str], b: tuple[str, str], tolerance: float) -> tuple[str, str]:
        if a not in self.accuracy or b not in self.accuracy:
            return "FAIL", "no accuracy to compare: a training step failed"
        gap = abs(self.accuracy[a] - self.accuracy[b])
        return ("pass" if gap <= tolerance else "FAIL"), (
            f"|{self.accuracy[a]:.4f} - {self.accuracy[b]:.4f}| = {gap:.4f} (at most {tolerance})")

    def tests(self) -> tuple[str, str]:
        env = {**self.env, **({"NNX_DATA_DIR": str(self.data)} if self.data else {})}
        if not self.dry:
            env["NNX_REQUIRE_CUDA"] = "1"
        lanes = DRY_LANES if self.dry else LANES
        proc = self.call([sys.executable, "-m", "pytest", "-v", "-rfE", "--no-cov", "-p",
                          "no:cacheprovider", "--durations=10", "-k", lanes, "--ignore",
                          "tests/test_docker.py", "--ignore", "tests/test_gpu_check.py"], 200,
                         env=env)
        self.write("tests.txt", proc.stdout + proc.stderr)
        return ("pass" if proc.returncode == 0 else "FAIL"), reason(proc, prefer="stdout")

    def bench(self) -> tuple[str, str]:
        # PyTorch's GPU beside CuPy's where this machine's PyTorch drives it (nnx info lists it).
        torch = [d["device"] for d in self.facts.get("torch_devices") or []
                 if d["device"].startswith("torch:cuda")][:1]
        devices = ",".join(["cpu", self.gpu, *([] if self.dry else torch)])
        cmd = [sys.executable, "-m", "nnx.cli", "bench", "--device", devices,
               *(TINY_BENCH if self.dry else BENCH), *self._data(), "--out",
               str(self.out / "bench")]
        proc = self.call(cmd, 300)
        self.write("bench.log", proc.stdout + proc.stderr)
        if proc.returncode != 0:
            return "FAIL", reason(proc)
        return "pass", f"results in bench/ ({len(list((self.out / 'bench').iterdir()))} files)"

    # -- plumbing -------------------------------------------------------------------------
    def call(self, cmd: list[str], limit: float, env: dict | None = None
             ) -> subprocess.CompletedProcess:
        """``cmd`` in the repository root, for at most ``limit`` s and never past the
        deadline; on a timeout its whole process group is killed."""
        limit = max(1.0, min(limit, self.deadline - time.monotonic()))
        print(f"$ {shlex.join(cmd)}", flush=True)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env or self.env, text=True, errors="replace",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=limit)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):  # it may just have ended
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            err += f"\ntimed out after {limit:.0f} s"
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def write(self, name: str, text: str) -> None:
        tmp = self.out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.out / name)

    def write_summary(self, final: bool = False) -> None:
        steps = dict(self.steps)
        failed = [n for n, (r, _) in steps.items() if r == "FAIL"]
        state = ("FAIL: " + ", ".join(failed) if failed else "PASS") if final else "running"
        took = time.time() - self.started
        f = self.facts
        date = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.started))
        lines = [f"# Device check: {self.name}", "",
                 f"Result: {state}. Started {date}; {took:.0f} s of the {BUDGET_S} s allowed.", "",
                 f"Machine: {self.smi_reason}; CPU {f.get('cpu')}; Python {f.get('python')}, "
                 f"NumPy {f.get('numpy')}, CuPy {f.get('cupy')} (CUDA runtime "
                 f"{f.get('cuda_runtime')}, driver {f.get('cuda_driver')})", "",
                 f"Command: `python scripts/gpu_check.py {shlex.join(self.argv)}`", "",
                 "| step | result | detail |", "| --- | --- | --- |"]
        lines += [f"| {n} | {r} | {_cell(d)} |" for n, (r, d) in steps.items()]
        self.write("summary.md", "\n".join(lines) + "\n")

    def _device(self, role: str) -> str:
        return self.gpu if role == "gpu" else "cpu"

    def _data(self, no_download: bool = False) -> list[str]:
        if self.data is None:
            return []
        return ["--data-dir", str(self.data), *(["--no-download"] if no_download else [])]

    def _kernel_cache(self) -> str:
        """CuPy compiles kernels into a cache folder: where it cannot write, use a fresh one."""
        cache = Path(os.environ.get("CUPY_CACHE_DIR") or Path.home() / ".cupy" / "kernel_cache")
        existing = next((p for p in (cache, *cache.parents) if p.exists()), Path("/"))
        if os.access(existing, os.W_OK):
            return f"kernel cache {cache}"
        self.env["CUPY_CACHE_DIR"] = str(self.site / "kernel_cache")
        return f"kernel cache {cache} is read-only: using {self.env['CUPY_CACHE_DIR']}"


def reason(proc: subprocess.CompletedProcess, prefer: str = "stderr") -> str:
    """The last line a process printed, from ``prefer``-ed stream first, with its exit status."""
    streams = (proc.stderr, proc.stdout) if prefer == "stderr" else (proc.stdout, proc.stderr)
    for text in streams:
        lines = [line.strip(" =") for line in (text or "").splitlines() if line.strip(" =")]
        if lines:
            return f"{lines[-1]} (exit {proc.returncode})"
    return f"exit {proc.returncode}, no output"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _absolute(path: str) -> Path:
    """``path`` resolved against where the check is run, once, at its start."""
    return (Path.cwd() / Path(path).expanduser()).resolve()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
