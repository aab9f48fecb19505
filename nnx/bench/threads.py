"""Time each kind of NumPy work at one BLAS thread and at every thread, quiet and busy.

nnx runs a training step's products on one BLAS thread and the rest of its work on every
thread (:mod:`backends.numpy_backend`). This program shows what each choice costs on the
machine at hand: every workload below is timed both ways, in interleaved rounds, and
with ``--busy`` again while another process keeps one core half busy. The report says
which setting won each workload and what nnx chose for it.

The workloads, on the book's 784-50-10 ReLU net and real MNIST images where given:

- a training step: the gradient of a batch of 100 and SGD's update (``nnx train``);
- an evaluation: the labels of 10,000 images (``nnx train``'s accuracies, ``nnx evaluate``);
- the vectorised numerical gradient of a batch of 10 (``nnx train --grad numerical``);
- a gradient check of 3 images, every coordinate (``nnx gradcheck``'s default).

Thread counts are NumPy's BLAS's: the program runs on the CPU only. Where the user set
``OPENBLAS_NUM_THREADS`` (or the like), nnx does not change the threads, and both columns
time the same setting: the report says so.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
from collections.abc import Callable
from typing import Any

from backends import get_backend, machine_info, usable_cores, user_threads
from nnx import io
from nnx.bench import report
from nnx.bench.busy import Burner, check_cores
from nnx.bench.cases import DataSource
from nnx.bench.timing import Case, CpuWatch, Stats, fmt_seconds, ratio, run_interleaved
from nnx.errors import positive_int
from nnx.gradcheck import gradient_check
from nnx.io import output_dir
from nnx.network import TwoLayerNet
from nnx.optimizers import SGD
from nnx.program import add_out_argument

SCHEMA = "nnx-bench-threads/1"
SETTINGS = ("one thread", "every thread")


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--repeat", type=int, default=15, help="timed calls of each workload in each setting "
      "(default: %(default)s)")
    a("--dtype", choices=("float64", "float32"), default="float64",
      help="the net's dtype (default: float64; the numerical gradient works in float64)")
    a("--seed", type=int, default=0, help="seed of the batches and weights (default: 0)")
    a("--busy", action="store_true", help="also time every workload while another process "
      "keeps one core half busy")
    a("--data-dir", metavar="DIR", default=None,
      help="directory with the MNIST files (default: synthetic images like MNIST's)")
    add_out_argument(parser, "runs/bench-threads", "results")


class Workload:
    """``calls`` calls of ``fn`` make one timed call; nnx gives it ``choice``."""

    def __init__(self, name: str, command: str, fn: Callable[[], Any], calls: int,
                 choice: str) -> None:
        self.name, self.command, self.fn, self.calls, self.choice = name, command, fn, calls, choice

    def case(self, one_thread: Callable[[], Any]) -> Case:
        """One timed call: ``calls`` calls in the thread setting ``one_thread()`` makes."""
        def run() -> None:
            with one_thread():
                for _ in range(self.calls):
                    self.fn()

        return Case(run)


def workloads(be: Any, source: DataSource, seed: int) -> list[Workload]:
    """The four kinds of work, each on its own net and batch (nothing shared between them)."""
    def net() -> TwoLayerNet:
        return TwoLayerNet(784, 50, 10, weight_init_std="he", device=be, seed=seed)

    def batch(n: int, dtype: Any = None) -> tuple[Any, Any]:
        b = source.batch(n)
        return be.asarray(b.x, dtype=dtype or be.dtype), be.asarray(b.t)

    step_net, opt = net(), SGD(lr=0.1)
    x, t = batch(100)

    def step() -> None:
        opt.update(step_net.params, step_net.gradient(x, t), scratch=True)

    eval_net, (xe, _) = net(), batch(10_000)
    num_net, (xn, tn) = net(), batch(10, "float64")
    check_net = TwoLayerNet(784, 50, 10, weight_init_std="he", device=be, seed=seed,
                            dtype="float64")
    xc, tc = batch(3, "float64")
    return [
        Workload("training step (batch 100)", "nnx train", step, 20, SETTINGS[0]),
        Workload("evaluation (10,000 images)", "nnx train, nnx evaluate",
                 lambda: eval_net.predict_labels(xe), 1, SETTINGS[1]),
        Workload("numerical gradient, vectorised (batch 10)", "nnx train --grad numerical",
                 lambda: num_net.numerical_gradient(xn, tn), 1, SETTINGS[1]),
        Workload("gradient check (3 images, every coordinate)", "nnx gradcheck",
                 lambda: gradient_check(check_net, xc, tc), 1, SETTINGS[1]),
    ]


def run(args: argparse.Namespace) -> int:
    repeat = positive_int("--repeat", args.repeat)
    if args.busy:
        check_cores()
    be = get_backend("cpu", args.dtype)  # a thread setting no BLAS can honour fails here
    users = user_threads()
    with output_dir(args.out) as out:
        source = DataSource(args.data_dir, args.seed)
        works = workloads(be, source, args.seed)

        cases = [w.case(setting) for w in works
                 for setting in (be.small_work, contextlib.nullcontext)]
        watch, results = CpuWatch(), {}
        for mode in ("quiet", "busy") if args.busy else ("quiet",):
            print(f"timing {len(works)} workloads x {len(SETTINGS)} settings, {mode}: "
                  f"{repeat} calls each, interleaved", flush=True)
            with Burner() if mode == "busy" else contextlib.nullcontext():
                stats = run_interleaved(cases, repeat, warmup=1)
            results[mode] = stats
        rows = [_row(w, {m: s[2 * i: 2 * i + 2] for m, s in results.items()})
                for i, w in enumerate(works)]
        result = {
            "schema": SCHEMA, "command": report.command_line(args),
            "machine": machine_info(gpus=False),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cores": usable_cores(), "dtype": args.dtype, "batches": source.describe(100),
            "user_threads": users, "rows": rows, "other_cpu": {"runs": watch.others()},
            "load_average": list(os.getloadavg()),
        }
        markdown = render(result)
        print(f"\n{markdown}", end="")
        io.write_json(out / "bench_threads.json", report.jsonable(result))
        io.write_bytes(out / "bench_threads.md", markdown.encode())
        print(f"\nwrote {out / 'bench_threads.json'} and {out / 'bench_threads.md'}")
    return 0


def _row(w: Workload, stats: dict[str, list[Stats]]) -> dict[str, Any]:
    """One workload's seconds per call of its work, per mode and setting, and the winner."""
    row: dict[str, Any] = {"workload": w.name, "command": w.command, "nnx_choice": w.choice}
    for mode, (one, every) in stats.items():
        r = ratio(every, one)  # per round: each round times both settings
        row[mode] = {
            "one_thread_s": one.median / w.calls, "every_thread_s": every.median / w.calls,
            "one_thread_times": [t / w.calls for t in one.times],
            "every_thread_times": [t / w.calls for t in every.times],
            "every_over_one": r.value, "every_over_one_range": [r.low, r.high],
            "winner": SETTINGS[0] if r.value > 1 else SETTINGS[1],
        }
    return row


def render(result: dict[str, Any]) -> str:
    """The Markdown report: one row per workload and mode."""
    head = ["workload", "used by", "mode", "one thread (median)", "every thread (median)",
            "every / one (range per round)", "faster", "nnx's choice"]
    table = []
    for r in result["rows"]:
        for mode in ("quiet", "busy"):
            if mode not in r:
                continue
            m = r[mode]
            lo, hi = m["every_over_one_range"]
            table.append([r["workload"], r["command"], mode,
                          fmt_seconds(m["one_thread_s"]), fmt_seconds(m["every_thread_s"]),
                          f"{m['every_over_one']:.2f}x ({lo:.2f}x–{hi:.2f}x)", m["winner"],
                          r["nnx_choice"]])
    users = result["user_threads"]
    lines = [
        f"machine: {result['machine']['cpu']} ({result['cores']} usable); NumPy "
        f"{result['machine']['numpy']}; dtype {result['dtype']}",
        f"date: {result['date']}; CPU used by other processes: "
        + (f"{result['other_cpu']['runs']:.0%}" if result["other_cpu"]["runs"] is not None
           else "unknown") + " (busy rounds included)",
        f"command: {result['command']}",
        f"batches: {result['batches']}",
        "timing: each workload's calls at one BLAS thread and at every thread, in "
        "interleaved rounds; busy: while another process keeps one core half busy",
    ]
    if users:
        lines.append("the environment sets " + ", ".join(f"{k}={v}" for k, v in users.items())
                     + ": nnx keeps that setting, so both columns time it")
    return "\n\n".join(["# BLAS threads: one against every thread, per workload",
                        "\n".join(f"- {x}" for x in lines), report.md_table(table, head)]) + "\n"
