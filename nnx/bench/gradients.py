"""Time each gradient method on each device: backprop, the vectorised numerical gradient
and the book's one-coordinate loop, with their ratios, a PyTorch peer and a scaling sweep.

The book found the numerical gradient of its two-layer net about 40,000 times slower
than backprop. This measures that contrast on this machine, for every device that works
here (or those named with --device), on the book's net: batch 100, 784-50-10, ReLU.
Each figure is the median of several calls after warm-up, with the device synchronised
around each call, the cases interleaved so that load from other processes hits them
alike; the spread is the interquartile range. The one-coordinate loop is timed on a
seeded sample of coordinates and extrapolated (--full-loop runs it all on the CPU).
Results go to stdout and, as JSON, Markdown and PNG charts, to --out.

Run it as ``nnx bench``, ``python -m nnx.bench`` or ``scripts/bench_gradients.py``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import backends
from backends import Backend, get_backend
from nnx import io
from nnx.bench import report
from nnx.bench.cases import (
    DataSource,
    HostBatch,
    LoopSample,
    TorchStep,
    make_net,
    on_device,
    param_sizes,
    sample_indices,
    time_full_loop,
    time_sampled_loop,
    torch_status,
)
from nnx.bench.sweep import check_memory, points, run_sweep, work
from nnx.bench.timing import Case, CpuWatch, cuda_event_times, ratio, run_interleaved, summarize
from nnx.cli.program import output_dir, run_module

SCHEMA = "nnx-bench-gradients/1"


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--device", action="append", default=[], metavar="DEV",
        help="device to measure (repeatable, or a comma list: cpu,cuda:0,strict); "
             "default: every device that works here")
    add("--dtype", choices=("float64", "float32"), default="float64",
        help="dtype of the net and batch (default float64, as in the book)")
    add("--batch", type=positive, default=100, help="batch size (default 100)")
    add("--hidden", type=positive, default=50, help="hidden layer size (default 50)")
    add("--repeat", type=positive, default=30,
        help="timed calls of backprop and the peer per device (default 30)")
    add("--numerical-repeat", type=positive, default=3,
        help="timed calls of each numerical gradient (default 3)")
    add("--warmup", type=int, default=3, help="untimed warm-up calls of backprop (default 3)")
    add("--loop-sample", type=positive, default=400, metavar="N",
        help="coordinates of the one-coordinate loop to time and extrapolate from (default 400)")
    add("--full-loop", action="store_true",
        help="also run the one-coordinate loop over every coordinate on the CPU (15-35 s)")
    add("--no-peer", action="store_true", help="skip the PyTorch autograd peer")
    add("--sweep", action="store_true",
        help="also sweep batch size (10..--max-batch) and hidden size (10..--max-hidden)")
    add("--max-batch", type=positive, default=10000, help="largest sweep batch (default 10000)")
    add("--max-hidden", type=positive, default=1000,
        help="largest sweep hidden size (default 1000)")
    add("--max-seconds", type=float, default=5.0,
        help="skip sweep points where one numerical gradient is predicted to take longer "
             "(default 5)")
    add("--data-dir", metavar="DIR",
        help="directory with the MNIST files: time on real training images (default synthetic)")
    add("--seed", type=int, default=0, help="seed of the batch, weights and loop sample")
    add("--out", type=Path, default=Path("runs/bench"), help="output folder (default runs/bench)")
    add("--quiet", action="store_true", help="no progress lines on stderr")


def resolve_devices(specs: Sequence[str], dtype: str) -> list[Backend]:
    """Backends for the named devices (default: all that work); an unusable one raises."""
    names = [n.strip() for spec in specs for n in spec.split(",") if n.strip()]
    result: dict[str, Backend] = {}
    for name in names or backends.available():
        be = get_backend(name, dtype)
        result.setdefault(be.device, be)
    return list(result.values())


def describe(be: Backend, info: dict[str, Any]) -> str:
    """The device in words: CPU model and cores, or GPU name with CUDA and CuPy versions."""
    if be.name == "numpy":
        return f"{info['cpu']}; NumPy {info['numpy']}{_blas()}"
    if be.name == "strict":
        import array_api_strict

        return (f"array-api-strict {array_api_strict.__version__} on its non-CPU device "
                f"(NumPy underneath on {info['cpu']}; a stand-in for a GPU)")
    gpu = next((g for g in info.get("gpus", []) if g["device"] == be.device), {})
    return (f"{gpu.get('name', be.device)}, {gpu.get('memory_gib', '?')} GiB; CUDA runtime "
            f"{info.get('cuda_runtime', '?')}, driver {info.get('cuda_driver', '?')}; "
            f"CuPy {info.get('cupy')}")


def _blas() -> str:
    try:
        return f" with {np.show_config(mode='dicts')['Build Dependencies']['blas']['name']}"
    except Exception:  # older NumPy or an unusual build: the BLAS name is a nicety
        return ""


def run(args: argparse.Namespace) -> int:
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    devs = resolve_devices(args.device, args.dtype)
    # Refuse what cannot fit before spending any time: first what the batch itself and
    # backprop need, then (knowing the batch's sparsity) the numerical gradient.
    book = [(args.batch, args.hidden)]
    check_memory(devs, book, what="the point", hint="--batch/--hidden")
    if args.sweep:
        pts = points(args.batch, args.hidden, args.max_batch, args.max_hidden)
        check_memory(devs, [p for axis in pts.values() for p in axis])
    source = DataSource(args.data_dir, args.seed)
    host = source.batch(args.batch)
    density = float(np.count_nonzero(host.x)) / host.x.size
    check_memory(devs, book, book, density, what="the point", hint="--batch/--hidden")
    with output_dir(args.out) as out:  # an unwritable --out fails before any timing
        info = backends.machine_info()
        load_start, watch = os.getloadavg(), CpuWatch()
        result = measure(devs, source, host, args, info, log)
        result["other_cpu"] = {"measurement": watch.others()}
        if args.sweep:
            reference = {d: (r["methods"]["numerical_vectorized"]["median_s"],
                             work(args.batch, args.hidden)) for d, r in result["devices"].items()}
            watch = CpuWatch()
            result["sweep"] = run_sweep(devs, source, args, log, reference)
            result["other_cpu"]["sweep"] = watch.others()
        result["load_average"] = {"start": list(load_start), "end": list(os.getloadavg())}
        text = report.render_text(result)
        print(text, end="")
        save(result, text, out)
        log(f"wrote {out}/gradients.{{json,md,txt,png}}")
    return 0


def measure(devs: list[Backend], source: DataSource, host: HostBatch, args: argparse.Namespace,
            info: dict[str, Any], log: Any) -> dict[str, Any]:
    """Time every method on every device at the book's point; the result without the sweep."""
    sizes = param_sizes(args.hidden)
    total = sum(sizes.values())
    indices = sample_indices(sizes, args.loop_sample, args.seed)
    n_sample = sum(len(v) for v in indices.values())
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": report.command_line(),
        "machine": info,
        "config": {"sizes": [784, args.hidden, 10], "activation": "relu", "batch": args.batch,
                   "dtype": args.dtype, "repeat": args.repeat, "warmup": args.warmup,
                   "numerical_repeat": args.numerical_repeat, "loop_sample": n_sample,
                   "full_loop": args.full_loop, "seed": args.seed},
        "data": source.describe(args.batch),
        "devices": {},
    }
    nets, fast, numerical = {}, [], []
    for be in devs:
        net = make_net(be, args.hidden, args.seed)
        x, t = on_device(be, host)
        nets[be.device] = (net, x, t)
        result["devices"][be.device] = {"backend": be.name, "description": describe(be, info),
                                        "methods": {}}
        fast.append(Case(f"{be.device}|backprop",
                         lambda n=net, x=x, t=t: n.gradient(x, t), be))
        numerical.append(Case(f"{be.device}|numerical_vectorized",
                              lambda n=net, x=x, t=t: n.numerical_gradient(x, t), be))
    peers = _peers(devs, nets, host, fast, result, args.no_peer)
    log(f"timing backprop{' and the PyTorch peer' if peers else ''} on {', '.join(nets)}")
    run_interleaved(fast, args.repeat, args.warmup, rounds=5)
    log(f"timing the vectorised numerical gradient on {', '.join(nets)}")
    run_interleaved(numerical, args.numerical_repeat, 1)
    labels = {"backprop": "backprop (net.gradient)",
              "numerical_vectorized": "numerical, vectorised",
              "peer_torch": "peer: PyTorch {} autograd"}
    for case in fast + numerical:
        device, key = case.name.split("|")
        entry = {"label": labels[key].format(peers.get(device, ("",))[0]), **case.summary()}
        result["devices"][device]["methods"][key] = entry
    for be in devs:
        net, x, t = nets[be.device]
        methods = result["devices"][be.device]["methods"]
        if peers.get(be.device):
            methods["peer_torch"]["max_abs_diff_vs_nnx"] = peers[be.device][1].max_abs_diff(
                net.gradient(x, t), be)
        events = cuda_event_times(be, lambda n=net, x=x, t=t: n.gradient(x, t),
                                  args.repeat, args.warmup)
        if events is not None:
            methods["backprop"]["cuda_events"] = summarize(events)
        log(f"timing the one-coordinate loop on {be.device}: {n_sample:,} of {total:,} coordinates")
        loop = time_sampled_loop(be, LoopSample(net, x, t, indices), sizes, args.numerical_repeat)
        methods["numerical_loop"] = {"label": f"numerical, book's loop ({loop.pop('how')})",
                                     **loop}
        if args.full_loop and be.name == "numpy":
            log(f"running the one-coordinate loop over all {total:,} coordinates on {be.device}")
            methods["numerical_loop_full"] = {
                "label": f"numerical, book's loop (all {total:,} coords, 1 run)",
                **time_full_loop(be, net, x, t)}
        base = methods["backprop"]
        result["devices"][be.device]["ratios"] = {
            f"{k}/backprop": ratio(m, base) for k, m in methods.items()
            if k != "backprop" and "median_s" in m
        }
    result["gpu_vs_cpu"] = _gpu_vs_cpu(result["devices"])
    return result


def _peers(devs, nets, host, cases: list[Case], result, skip: bool) -> dict[str, Any]:
    """A PyTorch case per device where it can run; elsewhere the reason it does not."""
    out = {}
    for be in devs:
        torch, why = (None, "skipped (--no-peer)") if skip else torch_status(be.device)
        if torch is None:
            result["devices"][be.device]["methods"]["peer_torch"] = {
                "label": "peer: PyTorch autograd", "status": why}
            continue
        step = TorchStep(torch, nets[be.device][0], host, be.device)
        out[be.device] = (step.version, step)
        cases.append(Case(f"{be.device}|peer_torch", step.step, sync=step.sync))
    return out


def _gpu_vs_cpu(devices: dict[str, Any]) -> dict[str, Any]:
    """CPU time / GPU time of each method measured on both (above 1: the GPU is faster)."""
    if "cpu" not in devices:
        return {}
    cpu = devices["cpu"]["methods"]
    return {
        gpu: {k: ratio(cpu[k], m) for k, m in d["methods"].items()
              if "median_s" in m and "median_s" in cpu.get(k, {})}
        for gpu, d in devices.items() if gpu.startswith("cuda")
    }


def save(result: dict[str, Any], text: str, out: Path) -> None:
    charts = ["gradients.png"]
    report.chart_methods(result, out / "gradients.png")
    if result.get("sweep"):
        for axis in result["sweep"]["axes"]:
            report.chart_sweep(result, axis, out / f"sweep_{axis}.png")
            charts.append(f"sweep_{axis}.png")
    result["files"] = ["gradients.json", "gradients.md", "gradients.txt", *charts]
    io.write_bytes(out / "gradients.txt", text.encode())
    io.write_bytes(out / "gradients.md", report.render_markdown(result, charts).encode())
    io.write_json(out / "gradients.json", result)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` and run; user errors print one line on stderr and return 2."""
    return run_module(__doc__, configure, run, argv, prog)


if __name__ == "__main__":
    sys.exit(main(prog="python -m nnx.bench.gradients"))
