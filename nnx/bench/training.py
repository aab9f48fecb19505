"""Time the book's whole training run: nnx against the book's loop and a fused NumPy loop.

Each contender runs the book's ``train_neuralnet.py`` job (batches of 100 drawn with
replacement, SGD lr 0.1, 784-50-10 ReLU, accuracy on both sets every 600 iterations):
:func:`nnx.training.train` as ``nnx train`` runs it on each device asked, the book's code
re-written operation for operation and the job in fused NumPy (:mod:`nnx.bench.refs`).
They take turns, one run each per round (run r seeded with --seed + r); the report gives
each one's wall time and its ratio to the first nnx run, with its range within a round.
"""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from backends import get_backend, machine_info
from nnx import io
from nnx.bench import report
from nnx.bench.refs import book_training, fused_training
from nnx.bench.timing import Case, CpuWatch, Row, ratio, time_rows
from nnx.cli.program import add_data_arguments, add_out_argument, output_dir, run_module
from nnx.errors import InputError, positive_int
from nnx.mnist import load_mnist
from nnx.training import TrainConfig, train

SCHEMA = "nnx-bench-training/2"


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--device", action="append", default=None,
      help="device(s) for the nnx run (repeatable; default: cpu)")
    a("--iters", type=int, default=10_000, help="iterations per run (default: %(default)s)")
    a("--repeat", type=int, default=3, help="runs of each contender (default: %(default)s)")
    a("--seed", type=int, default=0, help="seed of the first round (default: 0)")
    add_data_arguments(parser)
    add_out_argument(parser, "runs/bench-training", "results")


def nnx_training(device: str) -> Callable[[Any, int, int], float]:
    def job(data: Any, iters: int, seed: int) -> float:
        config = TrainConfig(device=device, iters=iters, seed=seed)
        return train(config, data, log=lambda _: None, progress=False).history["test_acc"][-1]

    return job


def run(args: argparse.Namespace) -> int:
    iters, repeat = positive_int("--iters", args.iters), positive_int("--repeat", args.repeat)
    if args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {args.seed}")
    nnx_devices, cpu = [get_backend(d) for d in (args.device or ["cpu"])], get_backend("cpu")
    with output_dir(args.out) as out:  # an unwritable --out fails before any timing
        data = load_mnist(data_dir=args.data_dir, download=not args.no_download)
        jobs = [(Row(be.device, "nnx", f"nnx ({be.device})"), be, nnx_training(be.device))
                for be in nnx_devices]
        jobs += [(Row("cpu", "book", "book-style loop (NumPy)"), cpu, book_training),
                 (Row("cpu", "fused", "fused NumPy loop"), cpu, fused_training)]
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
        result = {
            "schema": SCHEMA, "command": report.command_line(), "machine": machine_info(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "config": {"iters": iters, "repeat": repeat, "seed": args.seed, "batch": 100,
                       "sizes": [784, 50, 10], "lr": 0.1, "eval_every": 600,
                       "devices": [be.device for be in nnx_devices]},
            "rows": rows, "other_cpu": {"runs": watch.others()},
            "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        }
        markdown = render(result)
        print(f"\n{markdown}", end="")
        io.write_json(out / "bench_training.json", report.jsonable(result))
        io.write_bytes(out / "bench_training.md", markdown.encode())
        print(f"\nwrote {out / 'bench_training.json'} and {out / 'bench_training.md'}")
    return 0


def render(result: dict[str, Any]) -> str:
    """The Markdown report: the job, the machine, one row per contender."""
    c, m, rows = result["config"], result["machine"], result["rows"]
    head = ["contender", "median", "IQR (25-75%)", "n", f"vs {rows[0].label}", "range",
            "final test acc (median)"]
    table = [[*report.cells(r)[1:], f"{float(np.median(r.extra['test_acc'])):.4f}"] for r in rows]
    lines = [
        f"job: the book's training run ({c['iters']} iterations, batch 100, 784-50-10 ReLU, "
        f"SGD lr 0.1, accuracy every 600 iterations), {c['repeat']} runs each, interleaved",
        "timing: wall-clock time of each whole run, evaluations included",
        f"machine: {m['cpu']}; Python {m['python']}, NumPy {m['numpy']}"
        + (f", CuPy {m['cupy']}" if m.get("cupy") else ""),
        *report.environment_lines(result), report.RANGES,
    ]
    return "\n\n".join(["# The book's training run", "\n".join(f"- {x}" for x in lines),
                        report.md_table(table, head)]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/bench_training.py``."""
    return run_module(__doc__, configure, run, argv, "bench_training.py")
