"""Time the book's whole training run: nnx against the book's loop and a fused NumPy loop.

Each contender runs the book's ``train_neuralnet.py`` job (batches of 100 drawn with
replacement, SGD lr 0.1, 784-50-10 ReLU, accuracy on both sets every 600 iterations):
:func:`nnx.training.train` as ``nnx train`` runs it on each device asked, the book's code
re-written operation for operation and the job in fused NumPy (:mod:`nnx.bench.refs`).
They take turns, one run each per round (run r seeded with --seed + r); the report gives
each one's wall time and its ratio to the first nnx run, with its range within a round.

The floor of the job, in each --dtype, is the time of its matrix products alone: each
product timed at its shape (forward 100x784x50, dW1, the three 10-wide products of a step;
the two products of an evaluation of 70,000 images) times how often the run makes it.
nnx's training time (its loop, as ``nnx train`` reports it) is given as a ratio to it, and
to the same products made in a loop on batches gathered as the run gathers them (100
random rows of the training set per iteration: memory traffic that no implementation of
the job avoids), with nothing else. The first nnx contender also runs as a whole
``nnx train`` process, timed against the training time it reports, and on NumPy once more
with ``OPENBLAS_NUM_THREADS`` set to the cores (its steps on every thread, as a user who
sets the threads gets it), against the same floor.

PyTorch and JAX run the same job as peers where they are installed (a peer that is not
has a row saying so, and the benchmark goes on). With ``--busy`` every contender also runs
while a process the benchmark starts keeps one core half busy, and each one's busy/quiet
ratio is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from backends import get_backend, machine_info, usable_cores, user_threads
from nnx import io, stops
from nnx.bench import peers, report
from nnx.bench.busy import Burner, check_cores
from nnx.bench.refs import book_training, fused_training
from nnx.bench.timing import Case, CpuWatch, Row, ratio, time_rows
from nnx.errors import InputError, non_negative_int, plural, positive_int
from nnx.io import output_dir
from nnx.mnist import load_mnist
from nnx.program import add_data_arguments, add_out_argument
from nnx.training import TrainConfig, train

SCHEMA = "nnx-bench-training/3"
FLOOR_THREADS = (
    "The floor's products run on every BLAS thread. The run's steps take theirs on the "
    "threads nnx gives them (NumPy: one, unless the environment sets the threads), so the last "
    "two columns time the gathered products on those threads too: what the run could at best "
    "reach with the threads it uses.")


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--device", action="append", default=None,
      help="device(s) for the nnx run (repeatable; default: cpu)")
    a("--iters", type=int, default=10_000, help="iterations per run (default: %(default)s)")
    a("--repeat", type=int, default=3, help="runs of each contender (default: %(default)s)")
    a("--seed", type=int, default=0, help="seed of the first round (default: 0)")
    a("--dtype", action="append", choices=("float64", "float32"), default=None,
      help="dtype(s) of the nnx runs, peers and floors (repeatable; default: float64 and "
      "float32)")
    a("--no-peers", action="store_true", help="skip the PyTorch and JAX peers")
    a("--busy", action="store_true", help="also run every contender while another process "
      "keeps one core half busy, and report each one's busy/quiet ratio")
    add_data_arguments(parser)
    add_out_argument(parser, "runs/bench-training", "results")


def nnx_training(device: str, dtype: str, loops: list[float]) -> Callable[[Any, int, int], float]:
    """The job as ``nnx train`` runs it; each run's loop time is appended to ``loops``."""
    def job(data: Any, iters: int, seed: int) -> float:
        config = TrainConfig(device=device, dtype=dtype, iters=iters, seed=seed)
        result = train(config, data, log=lambda _: None, progress=False)
        if result.status == "interrupted":  # train() caught the stop: no timing, and it goes on
            raise stops.Stopped(stops.swallowed() or signal.SIGINT)
        loops.append(result.elapsed)
        return result.history["test_acc"][-1]

    return job


def nnx_process(device: str, dtype: str, args: argparse.Namespace,
                training: list[float], env: dict[str, str] | None = None,
                ) -> Callable[[Any, int, int], float]:
    """The job as a whole ``nnx train`` process (``env`` added to its environment); each
    run's training time (from its history.json) is appended to ``training``."""
    def job(_data: Any, iters: int, seed: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "nnx.cli", "train", "--device", device, "--dtype",
                   dtype, "--iters", str(iters), "--seed", str(seed), "--out", f"{tmp}/run"]
            cmd += ["--data-dir", args.data_dir] if args.data_dir else []
            done = subprocess.run(cmd + (["--no-download"] if args.no_download else []),
                                  capture_output=True, text=True, env={**os.environ, **(env or {})})
            if done.returncode != 0:
                raise InputError(f"nnx train failed: {done.stderr.strip()}")
            history = json.loads((Path(tmp) / "run" / "history.json").read_text())
        training.append(history["elapsed"])
        return history["final_test_acc"]

    return job


def floor(be: Any, iters: int, rows: int, x_train: Any = None, batch: int = 100,
          hidden: int = 50, steps: Callable[[], Any] = contextlib.nullcontext) -> dict[str, Any]:
    """Seconds of the run's products alone: each timed at its shape (median of many calls,
    the device synchronised) times how often the run makes it; and, given ``x_train``
    (host images), of the same products made in a loop on batches gathered as the run
    gathers them (fresh random rows each step), with nothing else. A step's products run
    inside ``steps()`` (``be.small_work``: the threads nnx gives them), an evaluation's
    on every thread, as in the run."""
    xp, rng = be.xp, np.random.default_rng(0)

    def a(*shape: int) -> Any:
        return be.asarray(rng.random(shape), dtype=be.dtype)

    x, w1, d1, z, w2, dy = a(batch, 784), a(784, hidden), a(batch, hidden), a(batch, hidden), \
        a(hidden, 10), a(batch, 10)
    chunk = min(rows, 10_000)  # predict_labels' chunk
    xe, ze = a(chunk, 784), a(chunk, hidden)
    step = {"x @ W1": lambda: xp.matmul(x, w1), "x.T @ dZ1": lambda: xp.matmul(x.T, d1),
            "Z1 @ W2": lambda: xp.matmul(z, w2), "Z1.T @ dY": lambda: xp.matmul(z.T, dy),
            "dY @ W2.T": lambda: xp.matmul(dy, w2.T)}
    with steps():
        each = {k: float(np.median(be.time(f, repeat=200, warmup=20))) for k, f in step.items()}
    # An evaluation's products in the order nnx takes them (W.T @ x.T: the faster one).
    evaluation = sum(float(np.median(be.time(f, repeat=10, warmup=2))) for f in
                     (lambda: xp.matmul(w1.T, xe.T), lambda: xp.matmul(w2.T, ze.T))) \
        * rows / chunk
    evals = -(-iters // 600)  # every 600 iterations and at the end
    out = {"products_s": each, "evaluation_s": evaluation, "evaluations": evals,
           "seconds": iters * sum(each.values()) + evals * evaluation}
    if x_train is not None:  # the products again, each step on a batch gathered as the run
        images = be.asarray(x_train, dtype=be.dtype)  # gathers it: its memory traffic too
        picks = be.asarray(rng.integers(0, x_train.shape[0], (iters, batch)))

        def looped() -> None:
            for i in range(iters):
                xb = xp.take(images, picks[i, :], axis=0)
                xp.matmul(xb, w1), xp.matmul(xb.T, d1), xp.matmul(z, w2), xp.matmul(z.T, dy)
                xp.matmul(dy, w2.T)

        with steps():
            out["looped_seconds"] = float(be.time(looped, repeat=1, warmup=0)[0]) \
                + evals * evaluation
    return out


def run(args: argparse.Namespace) -> int:
    iters, repeat = positive_int("--iters", args.iters), positive_int("--repeat", args.repeat)
    non_negative_int("--seed", args.seed)
    dtypes = list(dict.fromkeys(args.dtype or ["float64", "float32"]))
    if args.busy:
        check_cores()
    nnx_devices = [get_backend(d, t) for d in (args.device or ["cpu"]) for t in dtypes]
    cpu = get_backend("cpu")
    with output_dir(args.out) as out:  # an unwritable --out fails before any timing
        data = load_mnist(data_dir=args.data_dir, download=not args.no_download)
        loops: list[list[float]] = [[] for _ in nnx_devices]
        first, processes, threaded = nnx_devices[0], [], []
        # A user's own thread setting: the steps' products on every thread, as on a machine
        # that nothing else uses (NumPy only; where the user set the threads, it is theirs).
        every = {k: str(usable_cores()) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")} \
            if first.numpy_native and not user_threads() else None

        def contenders(loops: list[list[float]], processes: list[float],
                       threaded: list[float]) -> list[tuple]:
            jobs = [(Row(be.device, "nnx", f"nnx ({be.device}, {_name(be)})"), be,
                     nnx_training(be.device, _name(be), loop))
                    for be, loop in zip(nnx_devices, loops, strict=True)]
            jobs += [(Row(first.device, "process", f"nnx train process ({first.device}, "
                          f"{_name(first)})"), first,
                      nnx_process(first.device, _name(first), args, processes))]
            if every is not None:
                jobs += [(Row(first.device, "process_threads", f"nnx train process ("
                              f"{first.device}, {_name(first)}), OPENBLAS_NUM_THREADS="
                              f"{usable_cores()}"), first,
                          nnx_process(first.device, _name(first), args, threaded, every))]
            jobs += [(Row("cpu", "book", "book-style loop (NumPy)"), cpu, book_training),
                     (Row("cpu", "fused", "fused NumPy loop"), cpu, fused_training)]
            for library, module in found:
                jobs += [(Row("cpu", f"peer_{library}", f"{peers.TITLES[library]} "
                              f"{module.__version__} ({dtype})"), cpu,
                          peers.PEERS[library](module, dtype)) for dtype in dtypes]
            return jobs

        found, untimed = [], []
        for library in [] if args.no_peers else peers.PEERS:
            module, why = peers.status(library)
            if module is None:  # its row says why; the benchmark goes on
                untimed += [Row("cpu", f"peer_{library}", f"{peers.TITLES[library]} ({dtype})",
                                note=why, extra={"test_acc": []}) for dtype in dtypes]
            else:
                found.append((library, module))
        jobs = contenders(loops, processes, threaded)
        if args.busy:  # each contender again beside a half-busy core; its times kept apart
            jobs += [(replace(row, method=f"{row.method}_busy", label=f"{row.label}, busy"), be,
                      _busy(job)) for row, be, job in
                     contenders([[] for _ in nnx_devices], [], [])]
        accs: list[list[float]] = [[] for _ in jobs]
        timed = [(row, Case.on(be, lambda j=job, a=a: a.append(j(data, iters, args.seed + len(a)))))
                 for (row, be, job), a in zip(jobs, accs, strict=True)]  # run r: seed + r

        def progress(i: int, seconds: list[float]) -> None:
            print(f"run {len(accs[i])}/{repeat}  {jobs[i][0].label:<28} {seconds[0]:7.2f} s  "
                  f"test acc {accs[i][-1]:.4f}", flush=True)

        load_start, watch = os.getloadavg(), CpuWatch()
        rows = time_rows(timed, repeat, warmup=0, settle=0, after=progress)
        rows = [replace(r, vs=ratio(r.stats, rows[0].stats), extra={"test_acc": a})
                for r, a in zip(rows, accs, strict=True)]
        quiet = {r.label: r for r in rows}
        for r in rows:
            if r.method.endswith("_busy"):
                calm = quiet[r.label.removesuffix(", busy")]
                calm.extra["busy_over_quiet"] = r.stats.median / calm.stats.median
        rows += untimed
        n_eval = data[0][0].shape[0] + data[1][0].shape[0]
        floors = []
        for be, loop in zip(nnx_devices, loops, strict=True):
            with be.scope():  # the products on every thread, then as the run threads them
                f = floor(be, iters, n_eval, data[0][0])
                same = floor(be, iters, n_eval, data[0][0], steps=be.small_work)
            f["training_s"], mid = loop, float(np.median(loop))
            f["training_over_floor"] = mid / f["seconds"]
            f["training_over_looped"] = mid / f["looped_seconds"]
            f["steps_threads"] = {"seconds": same["seconds"],
                                  "looped_seconds": same["looped_seconds"],
                                  "training_over_floor": mid / same["seconds"],
                                  "training_over_looped": mid / same["looped_seconds"]}
            floors.append({"device": be.device, "dtype": _name(be), **f})
        if threaded:  # the first nnx run again, its steps on every thread
            mid = float(np.median(threaded))
            floors[0]["every_thread"] = {"env": every, "training_s": threaded,
                                         "training_over_looped": mid / floors[0]["looped_seconds"],
                                         "training_over_floor": mid / floors[0]["seconds"]}
        process_row = rows[len(nnx_devices)]
        per_run = [w / t for w, t in zip(process_row.stats.times, processes, strict=True)]
        process = {"row": process_row.label, "training_s": processes, "ratios": per_run,
                   "median": float(np.median(per_run)), "min": min(per_run),
                   "max": max(per_run)}
        result = {
            "schema": SCHEMA, "command": report.command_line(args), "machine": machine_info(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "config": {"iters": iters, "repeat": repeat, "seed": args.seed, "batch": 100,
                       "sizes": [784, 50, 10], "lr": 0.1, "eval_every": 600,
                       "devices": [be.device for be in nnx_devices]},
            "rows": rows, "floors": floors, "process_over_training": process,
            "other_cpu": {"runs": watch.others()},
            "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        }
        markdown = render(result)
        print(f"\n{markdown}", end="")
        with io.writing(out, "the results") as written:
            written.append(out / "bench_training.json")
            io.write_json(written[-1], report.jsonable(result))
            written.append(out / "bench_training.md")
            io.write_bytes(written[-1], markdown.encode())
        print(f"\nwrote {out / 'bench_training.json'} and {out / 'bench_training.md'}")
    return 0


def render(result: dict[str, Any]) -> str:
    """The Markdown report: the job, the machine, one row per contender."""
    c, m, rows = result["config"], result["machine"], result["rows"]
    head = ["contender", "median", "IQR (25-75%)", "n", f"vs {rows[0].label}", "range",
            "final test acc (median)", "busy / quiet"]
    table = [[*report.cells(r)[1:], f"{float(np.median(r.extra['test_acc'])):.4f}"
              if r.extra.get("test_acc") else "-",
              f"{r.extra['busy_over_quiet']:.2f}x" if "busy_over_quiet" in r.extra else ""]
             for r in rows]
    lines = [
        f"job: the book's training run ({c['iters']} iterations, batch 100, 784-50-10 ReLU, "
        f"SGD lr 0.1, accuracy every 600 iterations), {plural(c['repeat'], 'run')} each, "
        "interleaved",
        "timing: wall-clock time of each whole run, evaluations included",
        f"machine: {m['cpu']}; Python {m['python']}, NumPy {m['numpy']}"
        + (f", CuPy {m['cupy']}" if m.get("cupy") else ""),
        *report.environment_lines(result), report.RANGES,
    ]
    floors = [[f"nnx ({f['device']}, {f['dtype']})", f"{f['seconds']:.2f} s",
               f"{f['evaluations']} x {f['evaluation_s'] * 1e3:.1f} ms",
               f"{f['looped_seconds']:.2f} s ({f['looped_seconds'] / f['seconds']:.2f}x)",
               f"{float(np.median(f['training_s'])):.2f} s", f"{f['training_over_floor']:.2f}x",
               f"{f['training_over_looped']:.2f}x",
               f"{f['steps_threads']['looped_seconds']:.2f} s",
               f"{f['steps_threads']['training_over_looped']:.2f}x"] for f in result["floors"]]
    floor_head = ["run", "floor: products alone", "of which evaluations",
                  "products on gathered batches (vs floor)", "training (median)",
                  "training / floor", "training / products on gathered batches",
                  "the same, steps' products on the run's threads",
                  "training / those"]
    p = result["process_over_training"]
    process = (f"{p['row']}: the whole process takes {p['median']:.3g}x the training time it "
               f"reports (median of {plural(len(p['ratios']), 'run')}; {p['min']:.3g}x–"
               f"{p['max']:.3g}x)")
    return "\n\n".join(["# The book's training run", "\n".join(f"- {x}" for x in lines),
                        report.md_table(table, head), process,
                        "## The floor: the run's products alone",
                        report.md_table(floors, floor_head), FLOOR_THREADS,
                        *_every_thread_line(result["floors"])]) + "\n"


def _every_thread_line(floors: list[dict[str, Any]]) -> list[str]:
    """What the first run takes with its steps on every thread, against the same floor."""
    if not floors or "every_thread" not in floors[0]:
        return []
    f, e = floors[0], floors[0]["every_thread"]
    env = " ".join(f"{k}={v}" for k, v in e["env"].items())
    return [f"With `{env}` (the steps' products on every thread too), `nnx train` "
            f"({f['device']}, {f['dtype']}) trains in {float(np.median(e['training_s'])):.2f} s "
            f"(median of {plural(len(e['training_s']), 'run')}): "
            f"{e['training_over_looped']:.2f}x the products on gathered batches, "
            f"{e['training_over_floor']:.2f}x the floor."]


def _busy(job: Callable[[Any, int, int], float]) -> Callable[[Any, int, int], float]:
    """``job`` run while another process keeps one core half busy."""
    def run_busy(data: Any, iters: int, seed: int) -> float:
        with Burner():
            return job(data, iters, seed)

    return run_busy


def _name(be: Any) -> str:
    return "float32" if be.dtype == be.xp.float32 else "float64"
