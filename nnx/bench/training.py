"""Time the book's whole training run: nnx against the book's loop and a fused NumPy loop.

All contenders run the same job, the book's ``train_neuralnet.py``: 10000 iterations of
batch 100 drawn with replacement, SGD with learning rate 0.1 on a 784-50-10 ReLU net,
and train/test accuracy on the full sets once per epoch of 600 iterations. They are
interleaved in each repetition so that a busy machine slows them alike, and the report
gives the median and range of the wall time of each and their ratios.

- ``nnx`` is :func:`nnx.training.train` as ``nnx train`` runs it (on each device asked);
- ``book`` is the book's code re-written operation for operation
  (``nnx.bench.refs.BookStyleNet`` and the loop of ``train_neuralnet.py``): float32
  images against float64 weights, one-hot labels, gradient, update, then a second
  forward pass for the loss, accuracy at iterations 0, 600, ..., as the book does;
- ``fused`` is the job written for speed in plain NumPy (``nnx.bench.refs.fused_step``,
  images converted to float64 once): the floor to compare with.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from backends import get_backend, machine_info
from nnx import io
from nnx.bench.refs import BookStyleNet, fused_step
from nnx.cli.program import add_data_arguments, output_dir, run_module
from nnx.errors import InputError
from nnx.mnist import load_mnist
from nnx.training import TrainConfig, train


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--device", action="append", default=None,
      help="device(s) for the nnx run (repeatable; default: cpu)")
    a("--iters", type=int, default=10_000, help="iterations per run (default: %(default)s)")
    a("--repeat", type=int, default=3, help="runs of each contender (default: %(default)s)")
    a("--seed", type=int, default=0)
    add_data_arguments(parser)
    a("--out", default="runs/bench-training", help="output directory (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    if args.iters < 1 or args.repeat < 1:
        raise InputError("--iters and --repeat must be positive integers")
    devices = [get_backend(d).device for d in (args.device or ["cpu"])]
    with output_dir(args.out) as out:  # an unwritable --out fails before any timing
        data = load_mnist(data_dir=args.data_dir, download=not args.no_download)
        contenders = {f"nnx ({d})": _nnx_run(d) for d in devices}
        contenders["book-style loop (NumPy)"] = _book_run
        contenders["fused NumPy loop"] = _fused_run
        times: dict[str, list[float]] = {name: [] for name in contenders}
        accs: dict[str, list[float]] = {name: [] for name in contenders}
        for r in range(args.repeat):
            for name, fn in contenders.items():
                seconds, acc = fn(data, args.iters, args.seed + r)
                times[name].append(seconds)
                accs[name].append(acc)
                print(f"run {r + 1}/{args.repeat}  {name:<28} {seconds:7.2f} s  test acc {acc:.4f}",
                      flush=True)
        report = _report(times, accs, args, devices)
        print()
        print(report["markdown"])
        io.write_json(out / "bench_training.json", report)
        io.write_bytes(out / "bench_training.md", report["markdown"].encode())
        print(f"\nwrote {out / 'bench_training.json'} and {out / 'bench_training.md'}")
    return 0


def _report(times: dict, accs: dict, args: argparse.Namespace, devices: list[str]) -> dict:
    first = next(iter(times))
    base = statistics.median(times[first])
    lines = [
        f"Book's training run ({args.iters} iterations, batch 100, 784-50-10 ReLU, SGD lr 0.1, "
        f"accuracy every 600 iterations), {args.repeat} runs each, interleaved.",
        "",
        f"| contender | median s | min-max s | x {first} | range of x within a round "
        "| final test acc (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        # The runs of one round follow each other, so their ratio sees the same load on the machine.
        paired = [a / b for a, b in zip(ts, times[first], strict=True)]
        rows[name] = {"seconds": ts, "median": med, "min": min(ts), "max": max(ts),
                      "ratio_to_first": med / base, "ratio_in_round": paired,
                      "test_acc": accs[name]}
        lines.append(f"| {name} | {med:.2f} | {min(ts):.2f}-{max(ts):.2f} | {med / base:.2f} | "
                     f"{min(paired):.2f}-{max(paired):.2f} | "
                     f"{statistics.median(accs[name]):.4f} |")
    info = machine_info()
    lines += ["", "Times are wall-clock seconds of the whole run, evaluations included.",
              "", f"Machine: {info['cpu']}; Python {info['python']}, NumPy {info['numpy']}"
              + (f", CuPy {info['cupy']}" if info.get("cupy") else "")
              + f"; {time.strftime('%Y-%m-%d')}."]
    return {"contenders": rows, "iters": args.iters, "repeat": args.repeat, "devices": devices,
            "machine": info, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "markdown": "\n".join(lines) + "\n"}


def _nnx_run(device: str):
    def run_once(data: Any, iters: int, seed: int) -> tuple[float, float]:
        config = TrainConfig(device=device, iters=iters, seed=seed)
        start = time.perf_counter()
        result = train(config, data, log=lambda _: None, progress=False)
        return time.perf_counter() - start, result.history["test_acc"][-1]

    return run_once


def _init(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W1": 0.01 * rng.standard_normal((784, 50)), "b1": np.zeros(50),
            "W2": 0.01 * rng.standard_normal((50, 10)), "b2": np.zeros(10)}


def _book_run(data: Any, iters: int, seed: int) -> tuple[float, float]:
    """The book's ``train_neuralnet.py``: its data as its loader returns them (float32
    images, float64 one-hot labels), its net, its loop and its evaluation schedule."""
    (x_train, t_train), (x_test, t_test) = data
    eye = np.eye(10)
    t_train, t_test = eye[t_train], eye[t_test]  # the book trains on one-hot rows
    net = BookStyleNet(_init(seed))
    rng = np.random.default_rng(seed + 1)
    train_size = x_train.shape[0]
    iter_per_epoch = max(train_size / 100, 1)
    start = time.perf_counter()
    for i in range(iters):
        mask = rng.choice(train_size, 100)
        x_batch, t_batch = x_train[mask], t_train[mask]
        grad = net.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= 0.1 * grad[key]
        net.loss(x_batch, t_batch)  # the book records the loss after every update
        if i % iter_per_epoch == 0:
            net.accuracy(x_train, t_train)
            test_acc = net.accuracy(x_test, t_test)
    return time.perf_counter() - start, float(test_acc)


def _fused_run(data: Any, iters: int, seed: int) -> tuple[float, float]:
    """The same job as plain NumPy written for speed: the images converted to float64
    once, integer labels, the fused step, accuracy (feature-major products, whole sets at
    once) once per epoch and at the end."""
    start = time.perf_counter()
    (x_train, t_train), (x_test, t_test) = data
    x_train, x_test = x_train.astype(np.float64), x_test.astype(np.float64)
    p = _init(seed)
    rng = np.random.default_rng(seed + 1)
    per_epoch = max(x_train.shape[0] // 100, 1)

    def accuracy(x: np.ndarray, t: np.ndarray) -> float:
        # Feature-major, as nnx evaluates: the BLAS runs W.T @ x.T faster than x @ W here.
        y = p["W2"].T @ np.maximum(p["W1"].T @ x.T + p["b1"][:, None], 0.0) + p["b2"][:, None]
        return float(np.mean(np.argmax(y, axis=0) == t))

    for i in range(iters):
        mask = rng.integers(0, x_train.shape[0], 100)
        grads = fused_step(**p, x=x_train[mask], t=t_train[mask])[1]
        for key in ("W1", "b1", "W2", "b2"):
            p[key] -= 0.1 * grads[key]
        if (i + 1) % per_epoch == 0 or i + 1 == iters:
            accuracy(x_train, t_train)
            test_acc = accuracy(x_test, t_test)
    return time.perf_counter() - start, test_acc


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/bench_training.py``."""
    return run_module(__doc__, configure, run, argv, "bench_training.py")
