"""Train the two-layer net on MNIST (the book's chapter 5 run) and save the run.

Each run writes a directory: config.json, history.json, history.csv (loss and gradient
time per iteration), epochs.csv (accuracies per epoch), accuracy.png, loss.png, and the
final parameters as params.npz. A stopped run (Ctrl-C, SIGTERM, SIGHUP) saves what was
done and a checkpoint; ``--resume RUN_DIR`` continues it exactly. The run itself is
:class:`nnx.run.Run`; this module parses its flags and prints.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nnx import io, program, stops
from nnx import plots as figures
from nnx.advice import loop_warning, nothing_learned
from nnx.errors import InputError
from nnx.layers import ACTIVATIONS
from nnx.mnist import load_mnist
from nnx.network import METHODS
from nnx.optimizers import OPTIMIZERS, hyperparameters_of
from nnx.run import Run
from nnx.training import GRADS, TrainConfig


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
    program.add_hidden_argument(parser, d.hidden,
                                "hidden layer size(s) (default: 50); several make a deeper net")
    a("--activation", default=d.activation, choices=tuple(ACTIVATIONS), help="default: relu")
    a("--weight-init-std", default=str(d.weight_init_std),
      help="initial weight scale: a number, 'he' or 'xavier' (default: 0.01)")
    a("--optimizer", default=d.optimizer, choices=tuple(OPTIMIZERS), help="default: sgd")
    program.add_hyper_arguments(parser)
    a("--weight-decay", type=float, default=d.weight_decay, metavar="L",
      help="weight decay: L/2 * sum(W**2) added to the loss (default: 0, none)")
    a("--dropout", type=float, default=d.dropout, metavar="R",
      help="drop each hidden unit with probability R in training, in [0, 1) (default: 0)")
    a("--batch-norm", action="store_true", help="batch normalization after each hidden Affine")
    a("--val-split", type=float, default=d.val_split, metavar="F",
      help="hold out this fraction of the training set, drawn with --seed, and report its "
      "accuracy as val acc (default: 0)")
    program.add_seed_argument(parser, "the initial weights, the batches, the dropout masks "
                              "and the validation split")
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
    made: list[Path] = []  # the default run directory, and runs/, if this made them
    try:
        opened, given = _open(args, made)
        with opened as run:
            if args.resume is not None:
                _check_resumed(args, given, run.config)
            return _train(args, run)
    except BaseException:
        for path in made:  # deepest first; a directory that holds anything stays
            io.remove_if_empty(path)
        raise


def _open(args: argparse.Namespace, made: list[Path]) -> tuple[Run, set[str]]:
    if args.resume is not None:
        if args.out is not None or args.overwrite:
            raise InputError("--resume RUN_DIR continues that directory: drop --out and "
                             "--overwrite")
        given = _given(args)
        return Run.resume(args.resume, device=args.device,
                          iters=args.iters if "iters" in given else None), given
    config = _config(args)
    config.validate()  # before a default run directory is made for it
    return Run.create(args.out or _default_out(config, made), config,
                      overwrite=args.overwrite), set()


def _train(args: argparse.Namespace, run: Run) -> int:
    if not args.no_plots:
        figures.preload()  # while the data load
    data = load_mnist(data_dir=args.data_dir, download=not args.no_download)
    slow = loop_warning(run.config, data, run.backend)
    if slow:
        print(f"nnx train: warning: {slow}", file=sys.stderr)
    with stops.deferred() as noted:
        result = run.train(data, stop=noted.requested, plots=not args.no_plots,
                           checkpoint_every=args.checkpoint_every)
        print(f"saved {result.status} run to {run.path}")
        why = nothing_learned(result, data) if result.status == "completed" else None
        if why:
            print(f"nnx train: warning: {why}", file=sys.stderr)
        if result.status == "interrupted":
            print(f"{result.message}; continue it with nnx train --resume {run.path}")
            if noted.signum is None:  # a Ctrl-C the loop caught itself
                return 130
    return 0


# What --resume takes besides the run's own flags: where the run goes and how it is kept.
RESUME_FLAGS = {"device", "iters", "data_dir", "no_download", "resume", "checkpoint_every",
                "no_plots", "out", "overwrite"}


def _given(args: argparse.Namespace) -> set[str]:
    """The flags on the command line itself (``args`` holds defaults for the others)."""
    parser, unset = argparse.ArgumentParser(add_help=False), object()
    configure(parser)
    given, _ = parser.parse_known_args(list(getattr(args, "_argv", ["train"]))[1:],
                                       argparse.Namespace(**{k: unset for k in vars(args)
                                                          if not k.startswith("_")}))
    return {k for k, v in vars(given).items() if v is not unset and not k.startswith("_")}


def _check_resumed(args: argparse.Namespace, given: set[str], config: TrainConfig) -> None:
    """Refuse a training flag given with --resume that differs from the run's own: a resumed
    run is the run it continues (only --iters extends it)."""
    asked = _config(args)
    ours = {**hyperparameters_of(OPTIMIZERS[config.optimizer]), **config.optimizer_options}
    for dest in sorted(given - RESUME_FLAGS):
        if dest in asked.optimizer_options:  # --momentum, --beta1, ...
            want, have = asked.optimizer_options[dest], ours.get(dest)
        else:
            want, have = getattr(asked, dest), getattr(config, dest)
        if want != have:
            flag, shown = "--" + dest.replace("_", "-"), _shown(want)
            raise InputError(f"--resume continues the run with its own flags, and {flag} "
                             f"{shown} differs from its {_shown(have)}; drop {flag}, or train "
                             "a new run with another --out")


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple | list):
        return " ".join(map(str, value))
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _config(args: argparse.Namespace) -> TrainConfig:
    std = args.weight_init_std
    try:
        std = float(std)
    except ValueError:
        pass  # "he" / "xavier": checked by the network
    options = program.hyper_from_args(args)  # one the optimizer does not take is refused
    return TrainConfig(
        device=args.device, dtype=args.dtype, grad=args.grad,
        numerical_method=args.numerical_method, iters=args.iters, batch_size=args.batch_size,
        lr=_default_lr(args.optimizer) if args.lr is None else args.lr,
        hidden=tuple(args.hidden), activation=args.activation,
        weight_init_std=std, optimizer=args.optimizer, optimizer_options=options,
        seed=args.seed, eval_every=args.eval_every, weight_decay=args.weight_decay,
        dropout=args.dropout, batch_norm=args.batch_norm, val_split=args.val_split,
    )


def _default_lr(optimizer: str) -> float:
    """The rate of a run without ``--lr``: the book's 0.1 for SGD (``train_neuralnet.py``),
    else the optimizer's own default (the book's chapter 6: 0.01, Adam 0.001), at which
    each trains this net; Adam or RMSprop at 0.1 end far from it."""
    if optimizer == "sgd":
        return TrainConfig().lr
    return hyperparameters_of(OPTIMIZERS[optimizer])["lr"]


def _default_out(config: TrainConfig, made: list[Path]) -> Path:
    """``runs/<time>-<grad>``, made here and now (added to ``made``, with ``runs`` if this
    made it): a name taken by a run started in the same second gets ``-2``, ``-3``, ...,
    each claimed by one mkdir, so two runs never share one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{config.grad}"
    out, n = base, 1
    try:
        try:
            base.parent.mkdir()
            made.append(base.parent)
        except FileExistsError:
            pass
        while True:
            try:
                out.mkdir()
                made.insert(0, out)
                return out
            except FileExistsError:
                n += 1
                out = base.with_name(f"{base.name}-{n}")
    except OSError as exc:  # runs/ unwritable (a bind mount Docker made as root), a full disk
        raise io.unwritable(out, exc) from exc
