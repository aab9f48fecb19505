"""One backprop step and the full numerical gradient of the book's net, measured side by side.

Part 1 times one gradient step (batch 100, 784-50-10, ReLU, float64) of nnx's
``net.gradient(x, t)`` against two reference implementations written for
this comparison (:mod:`nnx.bench.refs`: a hand-fused NumPy step and a re-implementation
of the book's layered net) and, when installed, PyTorch CPU autograd; all in one run,
interleaved, each with its ratio to the fused step. Part 2 times the full numerical
gradient of the same net: nnx's vectorised method against the book's one-coordinate
loop (extrapolated from a sample, or run in full with --full-loop), and their speedup.
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
from backends import get_backend
from nnx import io
from nnx.bench import report
from nnx.bench.cases import (
    DataSource,
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
from nnx.bench.gradients import describe, positive
from nnx.bench.refs import BookStyleNet, fused_step
from nnx.bench.timing import (
    Case,
    CpuWatch,
    fmt_ratio,
    fmt_seconds,
    fmt_spread,
    ratio,
    run_interleaved,
    summarize,
)
from nnx.cli.program import output_dir, run_module

SCHEMA = "nnx-bench-backprop/1"
TARGET_BACKPROP = 1.3  # nnx's step within this factor of the fused one
TARGET_SPEEDUP = 20.0  # vectorised numerical gradient at least this much faster than the loop
HEAD = ["case", "median", "IQR (25-75%)", "n", "vs fused", "range"]


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--repeat", type=positive, default=300, help="timed backprop steps per case (default 300)")
    add("--rounds", type=positive, default=10, help="interleaved rounds (default 10)")
    add("--warmup", type=int, default=10, help="untimed warm-up steps per case (default 10)")
    add("--numerical-repeat", type=positive, default=3,
        help="timed calls of each numerical gradient (default 3)")
    add("--loop-sample", type=positive, default=400, metavar="N",
        help="coordinates of the one-coordinate loop to time and extrapolate from (default 400)")
    add("--full-loop", action="store_true",
        help="run the one-coordinate loop over all 39,760 coordinates (15-35 s) instead")
    add("--no-torch", action="store_true", help="skip the PyTorch autograd peer")
    add("--data-dir", metavar="DIR", help="directory with the MNIST files (default synthetic)")
    add("--seed", type=int, default=0, help="seed of the batch, weights and loop sample")
    add("--out", type=Path, help="also write backprop.{json,md,txt} to this folder")
    add("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    if args.out is None:
        return _run(args)
    with output_dir(args.out):  # an unwritable --out fails before any timing
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    be = get_backend("cpu", "float64")
    source = DataSource(args.data_dir, args.seed)
    info = backends.machine_info()
    load_start, watch = os.getloadavg(), CpuWatch()
    host = source.batch(100)
    net = make_net(be, 50, args.seed)
    x, t = on_device(be, host)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": report.command_line(),
        "machine": info, "device": describe(be, info), "data": source.describe(100),
        "config": {"sizes": [784, 50, 10], "activation": "relu", "batch": 100,
                   "dtype": "float64", "repeat": args.repeat, "rounds": args.rounds,
                   "warmup": args.warmup, "seed": args.seed},
    }
    log("part 1: timing backprop steps side by side")
    result["backprop"] = backprop_part(be, net, x, t, host, args)
    log("part 2: timing the numerical gradient")
    result["numerical"] = numerical_part(be, net, x, t, args, log)
    result["other_cpu"] = {"run": watch.others()}
    result["load_average"] = {"start": list(load_start), "end": list(os.getloadavg())}
    text = render(result)
    print(text, end="")
    if args.out is not None:
        io.write_bytes(args.out / "backprop.txt", text.encode())
        io.write_bytes(args.out / "backprop.md", render(result, markdown=True).encode())
        io.write_json(args.out / "backprop.json", result)
        log(f"wrote {args.out}/backprop.{{json,md,txt}}")
    return 0


def backprop_part(be, net, x, t, host, args) -> dict[str, Any]:
    w = {k: be.to_numpy(v).copy() for k, v in net.params.items()}
    xh, th = host.x, host.t
    book = BookStyleNet(w)
    th_hot = np.eye(10)[th]  # the book trains on one-hot labels
    cases = {
        "fused": ("fused NumPy step (reference written for this benchmark)",
                  lambda: fused_step(w["W1"], w["b1"], w["W2"], w["b2"], xh, th)),
        "nnx": ("nnx net.gradient(x, t)", lambda: net.gradient(x, t)),
        "book": ("book-style layers (reference re-implementation)",
                 lambda: book.gradient(xh, th_hot)),
    }
    torch, why = (None, "skipped (--no-torch)") if args.no_torch else torch_status("cpu")
    peer = None
    if torch is not None:
        peer = TorchStep(torch, net, host, "cpu")
        cases["torch"] = (f"PyTorch {peer.version} CPU autograd (peer, "
                          f"{torch.get_num_threads()} threads)", peer.step)
    timed = [Case(k, fn, be) for k, (_, fn) in cases.items()]
    run_interleaved(timed, args.repeat, args.warmup, rounds=args.rounds)
    stats = {c.name: c.summary() for c in timed}
    reference = fused_step(w["W1"], w["b1"], w["W2"], w["b2"], xh, th)[1]
    grads = {"nnx": {k: be.to_numpy(v) for k, v in net.gradient(x, t).items()},
             "book": book.gradient(xh, th_hot)}
    if peer is not None:
        grads["torch"] = {k: v.detach().numpy() for k, v in peer.step().items()}
    out = {"cases": {}, "torch": "measured" if peer is not None else why}
    for key, (label, _) in cases.items():
        entry = {"label": label, **stats[key], "vs_fused": ratio(stats[key], stats["fused"])}
        if key in grads:
            entry["max_abs_diff_vs_fused"] = max(
                float(np.max(np.abs(grads[key][k] - reference[k]))) for k in reference)
        out["cases"][key] = entry
    nnx_ratio = out["cases"]["nnx"]["vs_fused"]["ratio"]
    out["target"] = {"nnx_vs_fused_at_most": TARGET_BACKPROP, "met": nnx_ratio <= TARGET_BACKPROP}
    return out


def numerical_part(be, net, x, t, args, log) -> dict[str, Any]:
    sizes = param_sizes(50)
    total = sum(sizes.values())
    vec = Case("vectorized", lambda: net.numerical_gradient(x, t), be)
    run_interleaved([vec], args.numerical_repeat, 1)
    out: dict[str, Any] = {"coordinates": total, "vectorized": {
        "label": "nnx vectorised (method=\"vectorized\")", **summarize(vec.times)}}
    indices = sample_indices(sizes, args.loop_sample, args.seed)
    sample = LoopSample(net, x, t, indices)
    n = sum(len(v) for v in indices.values())
    if args.full_loop:
        log(f"running the one-coordinate loop over all {total:,} coordinates (one run)")
        loop = {"label": f"book's one-coordinate loop (all {total:,} coords, 1 run)",
                **time_full_loop(be, net, x, t)}
    else:
        log(f"timing the one-coordinate loop on {n:,} of {total:,} coordinates")
        loop = time_sampled_loop(be, sample, sizes, args.numerical_repeat)
        loop = {"label": f"book's one-coordinate loop ({loop.pop('how')})", **loop}
    out["loop"] = loop
    grads = net.numerical_gradient(x, t)
    out["max_abs_diff_on_sample"] = max(
        float(np.max(np.abs(be.to_numpy(sample.call(k))
                            - be.to_numpy(grads[k]).reshape(-1)[indices[k]])))
        for k in indices)
    out["speedup"] = ratio(loop, out["vectorized"])
    out["target"] = {"speedup_at_least": TARGET_SPEEDUP,
                     "met": out["speedup"]["ratio"] >= TARGET_SPEEDUP}
    return out


def render(result: dict[str, Any], markdown: bool = False) -> str:
    table = report.md_table if markdown else report.text_table
    bp, num = result["backprop"], result["numerical"]
    c = result["config"]
    head = [
        f"net: {'-'.join(map(str, c['sizes']))}, ReLU, batch {c['batch']}, float64; "
        f"data: {result['data']}",
        f"device: cpu, {result['device']}",
        f"date: {result['date']}; 1-min load average {result['load_average']['start'][0]:.2f} "
        f"at start; CPU used by other processes during the run: {_share(result['other_cpu'])}",
        f"command: {result['command']}",
        *report.noise_warnings(result["other_cpu"],
                               [*bp["cases"].values(), num["vectorized"], num["loop"]]),
    ]
    rows1 = [_row(e, e["vs_fused"]) for e in bp["cases"].values()]
    if bp["torch"] != "measured":
        rows1.append([f"PyTorch CPU autograd (peer): {bp['torch']}", "-", "-", "-", "-", "-"])
    diffs = ", ".join(f"{k} {e['max_abs_diff_vs_fused']:.1e}" for k, e in bp["cases"].items()
                      if "max_abs_diff_vs_fused" in e)
    r = bp["cases"]["nnx"]["vs_fused"]["ratio"]
    part1 = [
        f"(1) one backprop step: median and IQR of {c['repeat']} steps per case, interleaved "
        f"in {c['rounds']} rounds after {c['warmup']} warm-up steps",
        table(rows1, HEAD),
        "range: the lowest and highest ratio of medians within one interleaved round",
        f"gradients agree with the fused step: max |difference| {diffs}",
        f"target nnx within {TARGET_BACKPROP}x of fused: "
        f"{'met' if bp['target']['met'] else 'NOT met'} ({fmt_ratio(r)})",
    ]
    sp = num["speedup"]
    rows2 = [_row(num["vectorized"], None), _row(num["loop"], None)]
    part2 = [
        f"(2) full numerical gradient ({num['coordinates']:,} coordinates), same net and batch",
        table(rows2, HEAD[:4]),
        f"speedup of vectorised over the loop: {fmt_ratio(sp['ratio'])} (range from the "
        f"quartiles {fmt_ratio(sp['low'])}–{fmt_ratio(sp['high'])}); "
        f"target >= {TARGET_SPEEDUP:g}x: {'met' if num['target']['met'] else 'NOT met'}",
        "vectorised and loop agree on the sampled coordinates to "
        f"{num['max_abs_diff_on_sample']:.1e}",
    ]
    if markdown:
        bullets = "\n".join(f"- {line}" for line in head)
        return "\n\n".join(["# Backprop and numerical gradient benchmark", bullets,
                            "## " + part1[0], *part1[1:], "## " + part2[0], *part2[1:]]) + "\n"
    return "\n\n".join(["\n".join(head), "\n".join(part1[:1]) + "\n" + part1[1],
                        "\n".join(part1[2:]), part2[0] + "\n" + part2[1],
                        "\n".join(part2[2:])]) + "\n"


def _share(other_cpu: dict[str, float | None]) -> str:
    share = other_cpu["run"]
    return "unknown" if share is None else f"{share:.0%}"


def _row(e: dict[str, Any], r: dict[str, float] | None) -> list[str]:
    row = [e["label"], fmt_seconds(e["median_s"]), fmt_spread(e), str(e["n"])]
    if r is not None:
        row += [fmt_ratio(r["ratio"]), f"{fmt_ratio(r['low'])}–{fmt_ratio(r['high'])}"]
    return row


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` and run; user errors print one line on stderr and return 2."""
    return run_module(__doc__, configure, run, argv, prog)


if __name__ == "__main__":
    sys.exit(main(prog="python -m nnx.bench.backprop"))
