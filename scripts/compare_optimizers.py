"""Optimizers compared on MNIST (chapter 6, figure 6-9): SGD, Momentum, AdaGrad, Adam.

Every optimizer trains its own copy of the same network, with the same initial weights
(same seed) on the same sequence of mini-batches (one host NumPy Generator), so the loss
curves differ only by the update rule. The book's experiment is a 5-layer ReLU net of
100 units per hidden layer, He initialisation, batch 128, 2000 iterations, and each
optimizer's default hyper-parameters; those are the defaults here. The recorded loss of
an iteration is the mini-batch loss computed by that iteration's forward pass, before
its update. A non-finite loss stops that optimizer and is reported as DIVERGED.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends import BackendError, get_backend
from nnx.errors import InputError, NnxError
from nnx.mnist import load_mnist
from nnx.network import MultiLayerNet
from nnx.optimizers import OPTIMIZERS, Optimizer, make_optimizer

PROG = Path(__file__).name
NAME = Path(__file__).stem
DEFAULT_OPTIMIZERS = ["sgd", "momentum", "adagrad", "adam"]
CHECK_EVERY = 100  # iterations between reading the losses back (a GPU sync)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train one MNIST network per optimizer from the same initial weights on "
        "the same mini-batches and draw their loss curves in one chart.",
    )
    p.add_argument(
        "--optimizer",
        action="append",
        metavar="NAME",
        help=f"an optimizer to compare (repeatable; one of {', '.join(OPTIMIZERS)}; "
        f"default: {' '.join(DEFAULT_OPTIMIZERS)})",
    )
    p.add_argument(
        "--lr",
        action="append",
        default=[],
        metavar="[NAME=]VALUE",
        help="learning rate for every optimizer, or NAME=VALUE for one (repeatable; "
        "default: each optimizer's own, sgd/momentum/adagrad 0.01, adam 0.001)",
    )
    p.add_argument(
        "--momentum",
        type=float,
        default=None,
        help="momentum of momentum and nesterov (default: 0.9)",
    )
    p.add_argument(
        "--hidden",
        type=int,
        action="append",
        metavar="UNITS",
        help="units of one hidden layer (repeatable; default: 100 100 100 100, the "
        "book's 5-layer net; --hidden 50 is the two-layer net)",
    )
    p.add_argument("--iters", type=int, default=2000, help="iterations (default: 2000)")
    p.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default: 128)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial weights and the batch order (default: 0)",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float64",
        help="floating dtype of the networks (default: float64)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="directory with the MNIST files (default: $NNX_DATA_DIR or the cache)",
    )
    p.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading missing MNIST files"
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N, strict or auto (default: auto)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / NAME,
        help=f"directory for the PNG (default: runs/{NAME})",
    )
    return p


@dataclass
class Result:
    optimizer: Optimizer
    losses: np.ndarray  # one per iteration run; stops before a non-finite one
    diverged_at: int | None
    test_accuracy: float
    seconds: float


def parse_rates(specs: list[str], names: list[str]) -> dict[str, float | None]:
    """--lr values: a bare VALUE sets every optimizer, NAME=VALUE one of them."""
    rates: dict[str, float | None] = dict.fromkeys(names)
    for spec in specs:
        name, sep, text = spec.rpartition("=")
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"--lr expects VALUE or NAME=VALUE, got {spec!r}") from None
        if not sep:
            rates = dict.fromkeys(names, value)
            continue
        name = name.strip().lower()
        if name not in rates:
            raise InputError(
                f"--lr {spec} names {name!r}, which is not among the optimizers "
                f"compared ({', '.join(names)})"
            )
        rates[name] = value
    return rates


def build_optimizers(args: argparse.Namespace) -> list[Optimizer]:
    names = [n.strip().lower() for n in (args.optimizer or DEFAULT_OPTIMIZERS)]
    for n in names:
        if n not in OPTIMIZERS:
            make_optimizer(n)  # raises the library's one-sentence error listing the names
    rates = parse_rates(args.lr, names)
    opts = []
    for n in names:
        hyper: dict[str, float | None] = {"lr": rates[n]}
        if "momentum" in OPTIMIZERS[n].HYPERPARAMETERS:
            hyper["momentum"] = args.momentum
        opts.append(make_optimizer(n, **hyper))
    return opts


def train(opt: Optimizer, make_net, backend, x_train, t_train, batches, test) -> Result:
    net = make_net()
    losses, recorded, diverged_at = [], [], None
    start = time.perf_counter()
    for i, idx in enumerate(batches):
        x = backend.asarray(x_train[idx], dtype=net.dtype)
        t = backend.asarray(t_train[idx])
        grads = net.gradient(x, t, check=False)
        losses.append(net.last_layer.loss)  # this batch's loss, from gradient's forward pass
        opt.update(net.params, grads)
        if (i + 1) % CHECK_EVERY == 0 or i + 1 == len(batches):
            chunk = backend.to_numpy(backend.xp.stack(losses))
            losses = []
            bad = np.flatnonzero(~np.isfinite(chunk))
            if bad.size:
                recorded.append(chunk[: bad[0]])
                diverged_at = i + 1 - len(chunk) + int(bad[0]) + 1
                break
            recorded.append(chunk)
    backend.synchronize()
    seconds = time.perf_counter() - start
    accuracy = float("nan") if diverged_at else net.accuracy(*test, check=False)
    return Result(opt, np.concatenate(recorded), diverged_at, accuracy, seconds)


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` points (shorter at the start)."""
    if window <= 1 or len(y) < 2:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty_like(y)
    for i in range(len(y)):
        lo = max(0, i + 1 - window)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def plot(results: list[Result], title: str, iters: int, out: Path) -> None:
    from matplotlib.figure import Figure  # pyplot-free: rendered by Agg, no GUI, no globals

    fig = Figure(figsize=(8.0, 5.2), layout="constrained")
    ax = fig.add_subplot()
    window = max(1, min(50, iters // 40))
    for r, color in zip(
        results,
        ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"] * 2,
        strict=False,
    ):
        steps = np.arange(1, len(r.losses) + 1)
        hyper = ", ".join(f"{k}={v:g}" for k, v in r.optimizer.hyperparameters.items())
        label = f"{type(r.optimizer).__name__} ({hyper})"
        if r.diverged_at is not None:
            label += f": DIVERGED at iteration {r.diverged_at}"
        else:
            label += f": last-10% mean {np.mean(r.losses[-max(1, iters // 10) :]):.3g}"
        if window > 1:
            ax.plot(steps, r.losses, color=color, alpha=0.2, lw=0.6)
        ax.plot(steps, smooth(r.losses, window), color=color, lw=1.6, label=label)
    ax.set_yscale("log")
    ax.set(
        xlabel="iteration",
        xlim=(0, iters),
        ylabel="mini-batch loss (cross-entropy)" + (f", mean of {window}" if window > 1 else ""),
        title=title,
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    save_png(fig, out)


def save_png(fig, path: Path) -> None:
    """Write the figure to ``path`` atomically: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "xb") rather than mkstemp: the PNG gets the umask's mode, not 0600
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fig.savefig(fh, format="png", dpi=110)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    hidden = args.hidden or [100, 100, 100, 100]
    for flag, value in (("--iters", args.iters), ("--batch-size", args.batch_size)):
        if value < 1:
            raise InputError(f"{flag} must be a positive integer, got {value}")
    if any(h < 1 for h in hidden):
        raise InputError(f"--hidden must be positive integers, got {' '.join(map(str, hidden))}")
    opts = build_optimizers(args)
    backend = get_backend(args.device, dtype=args.dtype)
    (x_train, t_train), (x_test, t_test) = load_mnist(
        data_dir=args.data_dir, download=not args.no_download
    )
    if args.batch_size > len(x_train):
        raise InputError(f"--batch-size must be at most {len(x_train)}, got {args.batch_size}")

    def make_net() -> MultiLayerNet:
        return MultiLayerNet(
            x_train.shape[1],
            hidden,
            10,
            activation="relu",
            weight_init_std="he",
            device=backend,
            seed=args.seed,
        )

    rng = np.random.default_rng(args.seed)
    batches = rng.integers(0, len(x_train), size=(args.iters, args.batch_size))
    test = (backend.asarray(x_test, dtype=backend.dtype), backend.asarray(t_test))
    sizes = "-".join(map(str, [x_train.shape[1], *hidden, 10]))
    print(
        f"MNIST, ReLU net {sizes} (He init, seed {args.seed}), batch {args.batch_size}, "
        f"{args.iters} iterations, {args.dtype}"
    )
    print(f"device: {backend} - {backend.reason}")
    tail = max(1, args.iters // 10)
    print(
        f"{'optimizer':<10} {'first loss':>10} {'final loss':>10} {'last-10% mean':>13} "
        f"{'test acc':>8} {'seconds':>8}  hyper-parameters"
    )
    results = []
    for opt in opts:
        # A diverging run overflows: the non-finite loss is reported, NumPy's warnings
        # would only repeat it on stderr.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r = train(opt, make_net, backend, x_train, t_train, batches, test)
        results.append(r)
        if r.diverged_at is not None:
            print(
                f"{opt.name:<10} {'DIVERGED':>10}  at iteration {r.diverged_at} (non-finite "
                f"loss)  {opt!r}"
            )
            continue
        print(
            f"{opt.name:<10} {r.losses[0]:>10.4f} {r.losses[-1]:>10.4f} "
            f"{np.mean(r.losses[-tail:]):>13.4f} {r.test_accuracy:>8.4f} {r.seconds:>8.2f}  "
            f"{opt!r}"
        )
    out = args.out / "compare_optimizers.png"
    title = (
        f"Optimizers on MNIST: ReLU net {sizes}, batch {args.batch_size}, "
        f"same init and batches\n(device {backend.device}, {args.dtype})"
    )
    plot(results, title, args.iters, out)
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (NnxError, BackendError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"{PROG}: error: {exc.strerror or exc}: {exc.filename or args.out}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
