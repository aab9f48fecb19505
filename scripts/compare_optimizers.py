"""Optimizers compared on MNIST (chapter 6, figure 6-9): SGD, Momentum, AdaGrad, Adam.

Every optimizer trains its own copy of the same network with ``nnx.training.train``:
the same seed gives the same initial weights and the same sequence of mini-batches,
so the loss curves differ only by the update rule. The book's experiment is a 5-layer
ReLU net of 100 units per hidden layer, He initialisation, batch 128, 2000 iterations,
and each optimizer's default hyper-parameters; those are the defaults here. The loss of
an iteration is the mini-batch loss of that iteration's forward pass, before its
update; test accuracy is measured once, at the end. A loss that stops being finite (or
grows a thousandfold) stops that optimizer, reported as DIVERGED. The seconds include
the final evaluation. Plot: OUT/compare_optimizers.png.

Usage: python scripts/compare_optimizers.py [--optimizer NAME ...] [--lr [NAME=]VALUE ...]
       [--hidden UNITS ...] [--iters N] [--batch-size B] [--seed S] [--dtype DT]
       [--data-dir DIR] [--no-download] [--device DEV] [--out DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from backends import get_backend
from nnx import io, program, stops
from nnx.errors import InputError
from nnx.mnist import load_mnist
from nnx.plots import plot_loss_curves
from nnx.training import TrainConfig, train

PROG = "compare_optimizers.py"
DEFAULT_OPTIMIZERS = ["sgd", "momentum", "adagrad", "adam"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Train one MNIST network per optimizer "
                                "from the same initial weights on the same mini-batches and draw "
                                "their loss curves in one chart.")
    program.add_optimizer_arguments(p, DEFAULT_OPTIMIZERS,
                            "each optimizer's own, sgd/momentum/adagrad 0.01, adam 0.001")
    program.add_hidden_argument(p, [100, 100, 100, 100], "hidden layer size(s) (default: "
                                "100 100 100 100, the book's 5-layer net; --hidden 50 is the "
                                "two-layer net)")
    p.add_argument("--iters", type=int, default=2000, help="iterations (default: 2000)")
    p.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default: 128)")
    program.add_seed_argument(p, "the initial weights and the batch order")
    program.add_dtype_argument(p, "the networks")
    program.add_data_arguments(p)
    program.add_device_argument(p)
    program.add_out_argument(p, "runs/compare_optimizers", "PNG")
    return p


def run(args: argparse.Namespace) -> int:
    hidden = args.hidden
    for flag, value in (("--iters", args.iters), ("--batch-size", args.batch_size)):
        if value < 1:
            raise InputError(f"{flag} must be a positive integer, got {value}")
    if any(h < 1 for h in hidden):
        raise InputError(f"--hidden must be positive integers, got {' '.join(map(str, hidden))}")
    opts = program.optimizers_from_args(args, DEFAULT_OPTIMIZERS)
    backend = get_backend(args.device, dtype=args.dtype)
    with io.output_dir(args.out) as out:
        data = load_mnist(data_dir=args.data_dir, download=not args.no_download)
        sizes = "-".join(map(str, [data[0][0].shape[1], *hidden, 10]))
        print(f"MNIST, ReLU net {sizes} (He init, seed {args.seed}), batch {args.batch_size}, "
              f"{args.iters} iterations, {args.dtype}")
        print(f"device: {backend} - {backend.reason}")
        print(f"{'optimizer':<10} {'first loss':>10} {'final loss':>10} {'last-10% mean':>13} "
              f"{'test acc':>8} {'seconds':>8}  hyper-parameters")
        tail, curves = max(1, args.iters // 10), []
        for opt in opts:
            hyper = opt.hyperparameters
            config = TrainConfig(
                device=backend.device, dtype=args.dtype, iters=args.iters,
                batch_size=args.batch_size, lr=hyper.pop("lr"), hidden=tuple(hidden),
                weight_init_std="he", optimizer=opt.name, optimizer_options=hyper,
                seed=args.seed, eval_every=args.iters)
            r = train(config, data, log=lambda _: None)
            if r.status == "interrupted":
                raise KeyboardInterrupt
            # a diverged run's history goes on past the bad loss, to the next read-back
            losses = np.asarray(r.history["loss"][: r.diverged_at and r.diverged_at - 1])
            label = ", ".join(f"{k}={v:g}" for k, v in opt.hyperparameters.items())
            label = f"{type(opt).__name__} ({label})"
            if r.diverged_at is not None:
                print(f"{opt.name:<10} {'DIVERGED':>10}  at iteration {r.diverged_at} (loss "
                      f"{r.history['loss'][r.diverged_at - 1]:.4g})  {opt!r}")
                curves.append((f"{label}: DIVERGED at iteration {r.diverged_at}", losses))
                continue
            print(f"{opt.name:<10} {losses[0]:>10.4f} {losses[-1]:>10.4f} "
                  f"{np.mean(losses[-tail:]):>13.4f} {r.history['test_acc'][-1]:>8.4f} "
                  f"{r.elapsed:>8.2f}  {opt!r}")
            curves.append((f"{label}: last-10% mean {np.mean(losses[-tail:]):.3g}", losses))
        title = (f"Optimizers on MNIST: ReLU net {sizes}, batch {args.batch_size}, "
                 f"same init and batches\n(device {backend.device}, {args.dtype})")
        plot_loss_curves(curves, out / "compare_optimizers.png", title, args.iters)
    print(f"wrote {out / 'compare_optimizers.png'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return program.run_program(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    stops.exit_after(main)
