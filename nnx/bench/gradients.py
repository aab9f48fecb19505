"""Time each gradient method on each device: backprop, the vectorised numerical gradient
and the book's one-coordinate loop, with their ratios, reference steps, a PyTorch peer and
a scaling sweep.

The book's net (batch 100, 784-50-10, ReLU) on every device that works here, or those
named with --device. Each figure is the median of several calls after warm-up, the cases
interleaved so that load from other processes hits them alike. On the CPU, backprop is
timed beside two NumPy reference steps (:mod:`nnx.bench.refs`) and held to a target ratio
to the fused one. The loop is timed on a seeded sample of coordinates and extrapolated
(--full-loop also runs it all on the CPU). Results go to stdout and, as JSON, Markdown
and PNG charts, to --out. Run it as ``nnx bench gradients``, or plain ``nnx bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import backends
from backends import Backend, get_backend
from nnx import io
from nnx.bench import cases, peers, report, sweep
from nnx.bench.refs import BookStyleNet, fused_step
from nnx.bench.timing import Case, Check, CpuWatch, Row, Stats, cuda_event_times, ratio, time_rows
from nnx.errors import InputError, non_negative_int, positive_int, positive_number
from nnx.io import output_dir
from nnx.program import add_dtype_argument, add_hidden_argument, add_out_argument

SCHEMA = "nnx-bench-gradients/3"
TARGET_BACKPROP = 1.15  # nnx's backprop within this factor of the fused NumPy step
TARGET_SPEEDUP = 20.0  # the vectorised numerical gradient at least this much faster than the loop
TARGET_PEER = 1.3  # nnx's backprop within this factor of PyTorch's autograd step, same device
Grads = Callable[[], dict[str, np.ndarray]]


COUNTS = ("batch", "hidden", "repeat", "rounds", "numerical_repeat", "loop_sample",
          "max_batch", "max_hidden")


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--device", action="append", default=[], metavar="DEV",
        help="device to measure (repeatable, or a comma list: cpu,cuda:0,strict); "
             "default: every device that works here")
    add_dtype_argument(parser, "the net and batch")
    add("--batch", type=int, default=100, help="batch size (default 100)")
    add_hidden_argument(parser, [50], "hidden layer size of the book's two-layer net "
                        "(default 50)")
    add("--repeat", type=int, default=100,
        help="timed calls of backprop, the reference steps and the peer per device (default 100)")
    add("--rounds", type=int, default=10, help="interleaved rounds of those calls (default 10)")
    add("--numerical-repeat", type=int, default=3,
        help="timed calls of each numerical gradient (default 3)")
    add("--warmup", type=int, default=10, help="untimed warm-up calls of backprop (default 10)")
    add("--loop-sample", type=int, default=400, metavar="N",
        help="coordinates of the one-coordinate loop to time and extrapolate from (default 400)")
    add("--full-loop", action="store_true",
        help="also run the one-coordinate loop over every coordinate on the CPU (15-35 s)")
    add("--no-peer", "--no-torch", action="store_true", help="skip the PyTorch autograd peer")
    add("--no-refs", action="store_true", help="skip the NumPy reference steps on the CPU")
    add("--sweep", action="store_true",
        help="also sweep batch size (10..--max-batch) and hidden size (10..--max-hidden)")
    add("--max-batch", type=int, default=10000, help="largest sweep batch (default 10000)")
    add("--max-hidden", type=int, default=1000, help="largest sweep hidden size (default 1000)")
    add("--max-seconds", type=float, default=5.0, help="skip sweep points where one numerical "
        "gradient is predicted to take longer (default 5)")
    # Not add_data_arguments: without --data-dir this times a synthetic batch, never downloads.
    add("--data-dir", metavar="DIR",
        help="directory with the MNIST files: time on real training images (default synthetic)")
    add("--seed", type=int, default=0, help="seed of the batch, weights and loop sample")
    add_out_argument(parser, "runs/bench", "results")
    add("--quiet", action="store_true", help="no progress lines on stderr")


def resolve_devices(specs: Sequence[str], dtype: str) -> list[Backend]:
    """Backends for the named devices (default: all that work); an unusable one raises."""
    names = [n.strip() for spec in specs for n in spec.split(",") if n.strip()]
    result: dict[str, Backend] = {}
    for name in names or backends.available():
        be = get_backend(name, dtype)
        result.setdefault(be.device, be)
    return list(result.values())


def run(args: argparse.Namespace) -> int:
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if len(args.hidden) != 1:
        raise InputError("the benchmark times the book's two-layer net: give one --hidden size, "
                         f"not {' '.join(map(str, args.hidden))}")
    args.hidden = args.hidden[0]
    for name in COUNTS:  # flags are checked here, so that an error is one sentence
        positive_int("--" + name.replace("_", "-"), getattr(args, name))
    positive_number("--max-seconds", args.max_seconds)
    non_negative_int("--seed", args.seed)
    non_negative_int("--warmup", args.warmup)
    devs = resolve_devices(args.device, args.dtype)
    # Refuse what cannot fit before spending any time: first what the batch itself and
    # backprop need, then (knowing the batch's sparsity) the numerical gradient.
    book = [(args.batch, args.hidden)]
    sweep.check_memory(devs, book, what="the point", hint="--batch/--hidden")
    if args.sweep:
        pts = sweep.points(args.batch, args.hidden, args.max_batch, args.max_hidden)
        sweep.check_memory(devs, [p for axis in pts.values() for p in axis])
    source = cases.DataSource(args.data_dir, args.seed)
    host = source.batch(args.batch)
    density = float(np.count_nonzero(host.x)) / host.x.size
    sweep.check_memory(devs, book, book, density, what="the point", hint="--batch/--hidden")
    with output_dir(args.out) as out:  # an unwritable --out fails before any timing
        info = backends.machine_info()
        load_start, watch = os.getloadavg(), CpuWatch()
        result = measure(devs, source, host, args, info, log)
        result["other_cpu"] = {"measurement": watch.others()}
        if args.sweep:
            reference = {r.device: (r.stats.median, sweep.work(args.batch, args.hidden))
                         for r in result["rows"] if r.method == "numerical_vectorized"}
            watch = CpuWatch()
            result["sweep"] = sweep.run_sweep(devs, source, args, log, reference)
            result["other_cpu"]["sweep"] = watch.others()
        result["load_average"] = {"start": list(load_start), "end": list(os.getloadavg())}
        text = report.render(result)
        print(text, end="")
        save(result, text, out)
        log(f"wrote {out}/gradients.{{json,md,txt,png}}")
    return 0


def measure(devs: list[Backend], source: cases.DataSource, host: cases.HostBatch,
            args: argparse.Namespace, info: dict[str, Any], log: Callable[[str], None]) -> dict:
    """Time every method on every device at the book's point; the result without the sweep."""
    sizes = cases.param_sizes(args.hidden)
    indices = cases.sample_indices(sizes, args.loop_sample, args.seed)
    n_sample, total = sum(len(v) for v in indices.values()), sum(sizes.values())
    setup, fast, numerical, untimed, grads = {}, [], [], [], {}
    for be in devs:
        net, (x, t) = cases.make_net(be, args.hidden, args.seed), cases.on_device(be, host)
        setup[be.device] = be, net, x, t
        fast.append((Row(be.device, "backprop", "backprop (net.gradient)"),
                     Case.on(be, lambda n=net, x=x, t=t: n.gradient(x, t))))
        numerical.append((Row(be.device, "numerical_vectorized", "numerical, vectorised"),
                          Case.on(be, lambda n=net, x=x, t=t: n.numerical_gradient(x, t))))
        for row, case, grad in companions(be, net, host, args):
            fast += [(row, case)] if case else []
            untimed += [] if case else [row]
            grads[row.device, row.method] = grad
    log(f"timing backprop, the reference steps and the peer on {', '.join(setup)}")
    with contextlib.ExitStack() as small:  # the threads a training step runs on
        for be in devs:
            small.enter_context(be.small_work())
        timed = time_rows(fast, args.repeat, args.warmup, args.rounds)
    log(f"timing the vectorised numerical gradient on {', '.join(setup)}")
    timed += time_rows(numerical, args.numerical_repeat, 1)
    rows: list[Row] = []
    for be, net, x, t in setup.values():
        mine = {k: be.to_numpy(v) for k, v in net.gradient(x, t).items()}
        by = {r.method: r for r in timed + untimed if r.device == be.device}
        for r in by.values():
            if grads.get((r.device, r.method)):
                r.extra["max_abs_diff_vs_nnx"] = cases.max_abs_diff(grads[be.device, r.method](),
                                                                    mine)
        events = cuda_event_times(be, lambda n=net, x=x, t=t: n.gradient(x, t), args.repeat,
                                  args.warmup)
        if events is not None:
            by["backprop"].extra["cuda_events"] = Stats.of(events)
        log(f"timing the one-coordinate loop on {be.device}: {n_sample:,} of {total:,} coordinates")
        sample = cases.LoopSample(net, x, t, indices)
        by["numerical_loop"] = loop = sample.time(be, args.numerical_repeat)
        vec = {k: be.to_numpy(v).reshape(-1) for k, v in net.numerical_gradient(x, t).items()}
        loop.extra["max_abs_diff_vs_vectorized"] = cases.max_abs_diff(
            {k: be.to_numpy(sample.call(k)) for k in indices},
            {k: vec[k][i] for k, i in indices.items()})
        if args.full_loop and be.numpy_native:
            log(f"running the one-coordinate loop over all {total:,} coordinates on {be.device}")
            by["numerical_loop_full"] = cases.time_full_loop(be, net, x, t)
        base = by["backprop"].stats
        rows += [replace(r, vs=ratio(r.stats, base) if r.stats else None)
                 for r in sorted(by.values(), key=lambda r: ORDER.index(r.method))]
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": report.command_line(args), "machine": info,
        "config": {"sizes": [784, args.hidden, 10], "activation": "relu", "batch": args.batch,
                   "dtype": args.dtype, "repeat": args.repeat, "rounds": args.rounds,
                   "warmup": args.warmup, "numerical_repeat": args.numerical_repeat,
                   "loop_sample": n_sample, "full_loop": args.full_loop, "seed": args.seed},
        "data": source.describe(args.batch),
        "devices": {be.device: {"backend": be.library, "description": be.describe()}
                    for be in devs},
        "rows": rows, "checks": [k for d in setup for k in checks(d, rows)],
        "vs_cpu": vs_cpu(rows, [be.device for be in devs if be.hardware and not be.numpy_native]),
    }


ORDER = ("backprop", "numerical_vectorized", "numerical_loop", "numerical_loop_full",
         "ref_fused", "ref_book", "peer_torch")


def companions(be: Backend, net: Any, host: cases.HostBatch,
               args: argparse.Namespace) -> list[tuple[Row, Case | None, Grads | None]]:
    """What backprop is timed beside: the NumPy reference steps on the CPU, and the PyTorch
    peer where it can run (else a row saying why not); each with its gradients."""
    out: list[tuple[Row, Case | None, Grads | None]] = []
    if be.numpy_native and not args.no_refs:
        w = {k: be.to_numpy(v).copy() for k, v in net.params.items()}
        xh, th, hot = host.x.astype(w["W1"].dtype), host.t, np.eye(10)[host.t]
        book = BookStyleNet(w)
        fused = lambda: fused_step(w["W1"], w["b1"], w["W2"], w["b2"], xh, th)[1]  # noqa: E731
        layered = lambda: book.gradient(xh, hot)  # noqa: E731
        out += [(Row(be.device, "ref_fused", "ref: fused NumPy step (written for this benchmark)"),
                 Case.on(be, fused), fused),
                (Row(be.device, "ref_book", "ref: book-style layers, one-hot labels"),
                 Case.on(be, layered), layered)]
    torch, why = (None, "skipped (--no-peer)") if args.no_peer else peers.torch_status(be)
    if torch is None:
        return [*out, (Row(be.device, "peer_torch", "peer: PyTorch autograd", note=why),
                       None, None)]
    step = peers.TorchStep(torch, net, host, be.hardware)
    threads = f", {torch.get_num_threads()} threads" if be.hardware == "cpu" else ""
    return [*out, (Row(be.device, "peer_torch", f"peer: PyTorch {step.version} autograd{threads}"),
                   Case(step.step, step.sync), step.host_grads)]


def checks(device: str, rows: list[Row]) -> list[Check]:
    """Backprop against the fused step (where timed), the vectorised gradient against the loop."""
    by = {r.method: r for r in rows if r.device == device}
    out = []
    if by.get("ref_fused") and by["ref_fused"].stats:
        r = ratio(by["backprop"].stats, by["ref_fused"].stats)
        out.append(Check(device, "backprop (nnx net.gradient) / fused NumPy step", r,
                         f"nnx backprop within {TARGET_BACKPROP:g}x of the fused step",
                         r.value <= TARGET_BACKPROP))
    if by.get("peer_torch") and by["peer_torch"].stats:
        r = ratio(by["backprop"].stats, by["peer_torch"].stats)
        out.append(Check(device, "backprop (nnx net.gradient) / PyTorch autograd step", r,
                         f"nnx backprop within {TARGET_PEER:g}x of PyTorch's own step",
                         r.value <= TARGET_PEER))
    loop = by.get("numerical_loop_full") or by["numerical_loop"]
    r = ratio(loop.stats, by["numerical_vectorized"].stats)
    return [*out, Check(device, f"speedup of vectorised over the loop ({loop.method} / "
                        "numerical_vectorized)", r, f"vectorised numerical gradient at least "
                        f"{TARGET_SPEEDUP:g}x faster than the loop", r.value >= TARGET_SPEEDUP)]


def vs_cpu(rows: list[Row], devices: Sequence[str]) -> list[Check]:
    """NumPy-on-the-CPU time / the device's time of each method measured on both, for each of
    ``devices`` (GPUs, PyTorch's CPU): above 1, the device is faster."""
    cpu = {r.method: r.stats for r in rows if r.device == "cpu" and r.stats}
    return [Check(r.device, r.label, ratio(cpu[r.method], r.stats)) for r in rows
            if r.device in devices and r.stats and r.method in cpu]


def save(result: dict[str, Any], text: str, out: Path) -> None:
    """The results' files in ``out``: all of them, or (a full disk) none and one sentence."""
    charts = ["gradients.png"]
    with io.writing(out, "the results") as written:
        written.append(out / "gradients.png")
        report.chart_methods(result, written[-1])
        for axis in (result.get("sweep") or {}).get("axes", []):
            written.append(out / f"sweep_{axis}.png")
            report.chart_sweep(result, axis, written[-1])
            charts.append(f"sweep_{axis}.png")
        result["files"] = ["gradients.json", "gradients.md", "gradients.txt", *charts]
        written.append(out / "gradients.txt")
        io.write_bytes(written[-1], text.encode())
        written.append(out / "gradients.md")
        io.write_bytes(written[-1], report.render(result, True, charts).encode())
        written.append(out / "gradients.json")
        io.write_json(written[-1], report.jsonable(result))
