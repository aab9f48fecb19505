"""Train the two-layer net on MNIST (the book's chapter 5 run) and save the run.

Each run writes a directory: config.json, history.json, history.csv (loss and gradient
time per iteration), epochs.csv (accuracies per epoch), accuracy.png, loss.png, and the
final parameters as params.npz. A stopped run (Ctrl-C, SIGTERM, SIGHUP) saves what was
done and a checkpoint; ``--resume RUN_DIR`` continues it exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from backends import get_backend, is_out_of_memory, machine_info
from nnx import io, rundir
from nnx import plots as figures
from nnx.cli import program, stops
from nnx.errors import DivergenceError, InputError
from nnx.layers import ACTIVATIONS
from nnx.mnist import load_mnist
from nnx.network import METHODS
from nnx.optimizers import OPTIMIZERS
from nnx.training import GRADS, TrainConfig, TrainResult, config_dict, describe, train

HYPER = {"momentum": float, "beta1": float, "beta2": float, "decay_rate": float}


def configure(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    a = parser.add_argument
    program.add_device_argument(parser)
    program.add_dtype_argument(parser)
    a("--grad", default=d.grad, choices=GRADS,
      help="gradient method (default: %(default)s); numerical is the book's slow way")
    a("--numerical-method", default=d.numerical_method, choices=METHODS,
      help="with --grad numerical: all coordinates at once, or the book's one-at-a-time loop")
    a("--iters", type=int, default=d.iters, help="iterations (default: %(default)s)")
    a("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    a("--lr", type=float, default=None,
      help=f"learning rate (default: {d.lr} with sgd, as the book's train_neuralnet.py; the "
      "optimizer's own otherwise: " + ", ".join(f"{n} {_default_lr(n):g}" for n in OPTIMIZERS
                                                if n != "sgd") + ")")
    a("--hidden", type=int, nargs="+", default=list(d.hidden),
      help="hidden layer size(s) (default: 50); several make a deeper net")
    a("--activation", default=d.activation, choices=tuple(ACTIVATIONS), help="default: relu")
    a("--weight-init-std", default=str(d.weight_init_std),
      help="initial weight scale: a number, 'he' or 'xavier' (default: 0.01)")
    a("--optimizer", default=d.optimizer, choices=tuple(OPTIMIZERS), help="default: sgd")
    for name in HYPER:
        a(f"--{name.replace('_', '-')}", type=float, default=None,
          help=f"optimizer {name} (where the optimizer has one)")
    program.add_seed_argument(parser, "the initial weights and the batches")
    a("--eval-every", type=int, default=None,
      help="iterations between accuracy evaluations (default: one epoch)")
    program.add_data_arguments(parser)
    program.add_out_argument(parser, None, "run", "runs/<time>-<grad>")
    a("--overwrite", action="store_true", help="replace the run already in --out")
    a("--resume", metavar="RUN_DIR", help="continue the stopped run in RUN_DIR with its own "
      "flags (--device may move it)")
    a("--checkpoint-every", type=int, metavar="N",
      help="iterations between checkpoints (default: at every evaluation)")
    a("--no-plots", action="store_true", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        if args.out is not None or args.overwrite:
            raise InputError("--resume RUN_DIR continues that directory: drop --out and "
                             "--overwrite")
        out, mode = Path(args.resume), "resume"
        if not (out / "config.json").is_file():
            raise InputError(f"cannot resume {out}: it holds no config.json of an nnx run")
        config = _saved_config(rundir.read_json(out / "config.json"), args.device)
    else:
        config, mode = _config(args), "overwrite" if args.overwrite else "new"
        out = args.out or _default_out(config)
    config.validate()
    be = get_backend(config.device, config.dtype)  # a bad device fails before any work
    with program.output_dir(out) as out, rundir.locked(out):
        if mode != "overwrite":  # a used directory is refused before any work
            rundir.prepare(out, mode)
        if not args.no_plots:
            figures.preload()  # while the data load
        data = load_mnist(data_dir=args.data_dir, download=not args.no_download)
        if mode == "overwrite":  # the old run goes only once the new one can start
            rundir.prepare(out, mode)
        resume = rundir.load_checkpoint(out) if mode == "resume" else None
        sizes = [data[0][0].shape[1], *config.hidden, 10]
        io.write_json(out / "config.json", {
            **config_dict(config), "resolved_device": be.device, "device_reason": be.reason,
            "sizes": sizes, "machine": machine_info(gpus=be.is_gpu)})
        try:
            with stops.deferred() as noted:
                result = train(config, data, backend=be, resume=resume, stop=noted.requested,
                               on_checkpoint=lambda c: rundir.save_checkpoint(out, c),
                               checkpoint_every=args.checkpoint_every)
                save_run(out, config, result, plots=not args.no_plots)
                print(f"saved {result.status} run to {out}")
                why = _nothing_learned(result, data) if result.status == "completed" else None
                if why:
                    print(f"nnx train: warning: {why}", file=sys.stderr)
                if result.status == "interrupted":
                    print(f"{result.message}; continue it with nnx train --resume {out}")
                    if noted.signum is None:  # a Ctrl-C the loop caught itself
                        return 130
        except Exception as exc:  # MemoryError, or a GPU library's own out-of-memory error
            if not is_out_of_memory(exc):
                raise
            raise InputError(_memory_advice(config, be, data, exc)) from None
        finally:
            if not (out / rundir.CHECKPOINT).exists() and not (out / "history.json").exists():
                (out / "config.json").unlink(missing_ok=True)  # nothing was done: leave nothing
    if result.status == "diverged":
        raise DivergenceError(_divergence_advice(config, data, result))
    return 0


def _divergence_advice(config: TrainConfig, data: Any, result: TrainResult) -> str:
    """The run's message, with a learning rate checked to get past the divergence: the same
    run (weights, batches) is tried at 1/10, 1/100, ... of the rate (six at most), each for
    twice the iterations that diverged (100 at least: losses are checked every 50)."""
    at = result.diverged_at or 1
    iters = min(max(2 * at, 100), config.iters)
    head = result.message.removesuffix("; try a smaller learning rate")
    for k in range(1, 7):
        lr = config.lr / 10**k
        probe = dataclasses.replace(config, lr=lr, iters=iters)
        probe.eval_every = probe.iters
        tried = train(probe, data, log=lambda _: None, progress=False)
        if tried.status == "completed" and _nothing_learned(tried, data) is None:
            return (f"{head}; --lr {lr:g} trains past iteration {probe.iters} without "
                    f"diverging, to test accuracy {tried.history['test_acc'][-1]:.2f} (tried "
                    "from the same start)")
    return (f"{head}; no rate down to --lr {lr:g} learns within {iters} iterations without "
            "diverging (tried from the same start), so try smaller ones and check the data "
            "and --weight-init-std too")


def _nothing_learned(result: TrainResult, data: Any) -> str | None:
    """Why the run learned nothing, or None if it did: its last test accuracy is no better
    than always answering the most common digit of the test set (a net whose ReLUs all
    died does that, and so does one left where it started)."""
    labels, acc = data[1][1], result.history["test_acc"]
    guess = float(np.bincount(labels).max() / labels.size)
    if not acc or acc[-1] > guess:
        return None
    return (f"the net learned nothing: its test accuracy {acc[-1]:.4f} is no better than "
            f"always answering the most common digit ({guess:.4f}); a learning rate far too "
            "large or far too small does this, so try another --lr")


def save_run(out: Path, config: TrainConfig, result: TrainResult, plots: bool = True) -> None:
    """Write the results into ``out``, ``history.json`` (with the status) last.

    An interrupted run also keeps its checkpoint (``--resume``); a finished one drops it.
    """
    net, h = result.net, result.history
    with rundir.saving(out) as written:
        if result.checkpoint is not None:
            rundir.save_checkpoint(out, result.checkpoint)
        per_iter = zip(h["loss"], h["grad_time"], strict=True)
        written.append(out / "history.csv")
        io.write_csv(written[-1], ["iter", "loss", "grad_time"],
                     [(i, loss, gt) for i, (loss, gt) in enumerate(per_iter, start=1)])
        epochs = zip(h["eval_iter"], h["eval_epoch"], h["train_acc"], h["test_acc"],
                     h["eval_elapsed"], strict=True)
        written.append(out / "epochs.csv")
        io.write_csv(written[-1], ["iter", "epoch", "train_acc", "test_acc", "elapsed"],
                     list(epochs))
        if result.status != "diverged":
            written.append(out / "params.npz")
            io.save_params(written[-1], {k: net.backend.to_numpy(v)
                                         for k, v in net.params.items()})
        if plots and h["loss"]:
            title = f"{describe(net)}, {config.grad}, {net.backend.device}"
            if h["test_acc"]:
                written.append(out / "accuracy.png")
                figures.plot_accuracy(h, written[-1], title)
            written.append(out / "loss.png")
            figures.plot_loss(h, written[-1], title)
        written.append(out / "history.json")
        io.write_json(written[-1], {
            **h, "status": result.status, "message": result.message,
            "elapsed": result.elapsed,
            "final_test_acc": h["test_acc"][-1] if h["test_acc"] else None}, indent=None)
    if result.status != "interrupted":
        (out / rundir.CHECKPOINT).unlink(missing_ok=True)


def _saved_config(saved: dict, device: str | None) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        config = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    except TypeError as exc:
        raise InputError(f"the run's config.json is not an nnx training config ({exc})") from None
    config.hidden = tuple(config.hidden)
    if device is not None:
        config.device = device  # a run may continue on another device
    return config


def _config(args: argparse.Namespace) -> TrainConfig:
    std = args.weight_init_std
    try:
        std = float(std)
    except ValueError:
        pass  # "he" / "xavier": checked by the network
    options = {k: getattr(args, k) for k in HYPER if getattr(args, k) is not None}
    return TrainConfig(
        device=args.device, dtype=args.dtype, grad=args.grad,
        numerical_method=args.numerical_method, iters=args.iters, batch_size=args.batch_size,
        lr=_default_lr(args.optimizer) if args.lr is None else args.lr,
        hidden=tuple(args.hidden), activation=args.activation,
        weight_init_std=std, optimizer=args.optimizer, optimizer_options=options,
        seed=args.seed, eval_every=args.eval_every,
    )


def _default_lr(optimizer: str) -> float:
    """The rate of a run without ``--lr``: the book's 0.1 for SGD (``train_neuralnet.py``),
    else the optimizer's own default (the book's chapter 6: 0.01, Adam 0.001), at which
    each trains this net; Adam or RMSprop at 0.1 end far from it."""
    if optimizer == "sgd":
        return TrainConfig().lr
    return inspect.signature(OPTIMIZERS[optimizer]).parameters["lr"].default


def _memory_advice(config: TrainConfig, be: Any, data: Any, exc: BaseException) -> str:
    """The failed allocation, and the flag that shrinks the largest of the run's arrays:
    the weights (--hidden, to sizes whose weights, gradients and optimizer state fit), the
    activations of a batch (--batch-size) or the data set on the device (--dtype float32)."""
    (x_train, _), (x_test, _) = data
    n_in, item = x_train.shape[1], 4 if config.dtype == "float32" else 8

    def weights(hidden: list[int]) -> int:
        return sum(a * b for a, b in itertools.pairwise([n_in, *hidden, 10]))

    batch = config.batch_size * (n_in + sum(config.hidden) + 10)
    dataset = (x_train.shape[0] + x_test.shape[0]) * n_in
    if weights(list(config.hidden)) >= max(batch, dataset):
        hidden, free = [max(h // 2, 1) for h in config.hidden], be.memory_free()
        while 8 * item * weights(hidden) > free and max(hidden) > 1:  # ~8 copies of W
            hidden = [max(h // 2, 1) for h in hidden]
        hint = f"a smaller --hidden (e.g. {' '.join(map(str, hidden))})"
    elif batch >= dataset:
        hint = f"a smaller --batch-size (e.g. {max(config.batch_size // 2, 1)})"
    elif config.dtype == "float64":
        hint = "--dtype float32 (the data set on the device takes half the memory)"
    else:
        hint = "a device with more free memory"
    return f"{program.out_of_memory(exc)} training on {be.device}; try {hint}"


def _default_out(config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{config.grad}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out
