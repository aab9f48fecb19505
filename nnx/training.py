"""Mini-batch training of chapter 5, on any device, with backprop or numerical gradients.

The loop follows the book (random mini-batches drawn with replacement, evaluation on the
whole training and test sets once per epoch) and records what the book's table shows:
the loss and the gradient time of every iteration, and accuracies per epoch.

On a GPU nothing in an iteration waits for the device: the data set stays resident,
batch indices for a whole epoch are moved at once, gradient times are CUDA events, and
losses are read back every ``CHECK_EVERY`` iterations (when divergence is checked).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from backends import Backend, get_backend, small_pages
from nnx.config import GRADS, TrainConfig, config_dict  # noqa: F401  (the training API)
from nnx.errors import InputError, plural, positive_int
from nnx.functions import one_hot
from nnx.network import MultiLayerNet
from nnx.optimizers import make_optimizer
from nnx.rundir import Checkpoint

CHECK_EVERY = 50  # iterations between reads of the loss (divergence checks)
MAX_BLOCK = 1000  # iterations whose batch indices are drawn (and moved) at once
# A loss this many times the first one counts as diverged: with log-sum-exp the loss grows
# with the logits instead of saturating, and can take thousands of steps to overflow.
DIVERGENCE_FACTOR = 1000.0

Data = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class TrainResult:
    """The trained net, its history, and how the run ended."""

    net: MultiLayerNet
    history: dict[str, list]
    status: str  # "completed", "interrupted" or "diverged"
    elapsed: float
    message: str = ""
    diverged_at: int | None = None  # the iteration (from 1) whose loss diverged
    checkpoint: Checkpoint | None = None  # where the run stopped, to resume it


def train(
    config: TrainConfig,
    data: Data,
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
    *,
    backend: Backend | None = None,
    resume: Checkpoint | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    checkpoint_every: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train on ``data`` = ``((x_train, t_train), (x_test, t_test))`` (host arrays, labels
    as class indices) and return the result; Ctrl-C ends the run early, keeping what was done.

    ``log`` receives one line per epoch (default: stdout); ``progress`` shows a bar
    (default: only when stderr is a terminal). ``resume`` continues from a
    :class:`Checkpoint` (on any device) and ends with the parameters of the run left
    alone, bit for bit on the same device. ``on_checkpoint`` receives one every
    ``checkpoint_every`` iterations (default: at every evaluation). ``stop`` is polled
    between iterations, and within a numerical gradient: when it returns true the run ends
    as "interrupted", exactly between two iterations (one cut short is dropped whole; a
    Ctrl-C that is not caught that way may land inside one). ``backend`` is the device
    ``config.device`` names, when the caller has resolved it.
    """
    (x_train, t_train), (x_test, t_test) = data
    _check_data(x_train, t_train, "training")
    _check_data(x_test, t_test, "test")
    config.validate(train_size=x_train.shape[0])
    if checkpoint_every is not None:
        positive_int("checkpoint every", checkpoint_every)
    be = get_backend(config.device if backend is None else backend, config.dtype)
    init_seed, batch_seed, split_seed = np.random.SeedSequence(config.seed).spawn(3)
    val_host = None
    if config.val_split:  # drawn from the run's seed: a resumed run holds out the same rows
        order = np.random.default_rng(split_seed).permutation(x_train.shape[0])
        n_val = config.val_size(x_train.shape[0])
        val_host = (x_train[order[:n_val]], t_train[order[:n_val]])
        x_train, t_train = x_train[order[n_val:]], t_train[order[n_val:]]
    net = MultiLayerNet(
        x_train.shape[1], list(config.hidden), 10, config.activation,
        config.weight_init_std, device=be, seed=init_seed, **config.net_options(),
    )
    optimizer = make_optimizer(config.optimizer, lr=config.lr, **config.optimizer_options)
    rng = np.random.default_rng(batch_seed)
    loop = _Loop(config, be, net, optimizer, rng, log or tqdm.write,
                 sys.stderr.isatty() if progress is None else progress, on_checkpoint,
                 stop or (lambda: False))
    if val_host is not None:
        loop.history["val_acc"] = []
        loop.val_host = val_host
    with be.scope():  # CuPy computes on the current device: make it the run's
        if resume is not None:
            loop.restore(resume)
        return loop.run((x_train, t_train), (x_test, t_test), checkpoint_every)


class _Loop:
    """The state of one run: the net, the optimizer, the batch Generator, the history."""

    def __init__(self, config: TrainConfig, be: Backend, net: MultiLayerNet, optimizer: Any,
                 rng: np.random.Generator, write: Callable[[str], None], show: bool,
                 on_checkpoint: Callable[[Checkpoint], None] | None,
                 stop: Callable[[], bool]) -> None:
        self.config, self.be, self.net, self.optimizer, self.rng = config, be, net, optimizer, rng
        self.write, self.show, self.on_checkpoint, self.stop = write, show, on_checkpoint, stop
        self.history: dict[str, list] = {k: [] for k in (
            "loss", "grad_time", "eval_iter", "eval_epoch", "train_acc", "test_acc",
            "eval_elapsed")}
        self.i = self.block_start = 0
        self.val_host: Any = None  # the validation split's (images, labels), if any
        self.block_rng = rng.bit_generator.state
        self.elapsed_before = 0.0

    def restore(self, c: Checkpoint) -> None:
        if set(c.params) != set(self.net.params):
            raise InputError("the checkpoint's parameters do not match the run's net")
        for k, v in c.params.items():
            if tuple(v.shape) != tuple(self.net.params[k].shape):
                raise InputError(f"the checkpoint's {k} has shape {v.shape}, the net's "
                                 f"{tuple(self.net.params[k].shape)}")

        def to_device(a: Any) -> Any:  # a copy: training updates it in place
            return self.be.asarray(np.array(a, copy=True), dtype=self.be.dtype)

        for k, v in c.params.items():
            self.net.params[k] = to_device(v)
        if set(c.buffers) != set(self.net.buffers()):
            raise InputError("the checkpoint's batch norm statistics do not match the run's net")
        self.net.load_buffers({k: to_device(v) for k, v in c.buffers.items()})
        if c.mask_rng is not None:
            self.net.mask_rng.bit_generator.state = c.mask_rng
        self.optimizer.load_state_dict(c.optimizer, to_device)
        self.rng.bit_generator.state = c.rng
        self.history = {k: list(v) for k, v in c.history.items()}
        self.i, self.block_start, self.elapsed_before = c.iteration, c.block_start, c.elapsed

    def checkpoint(self, start: float) -> Checkpoint:
        def to_host(a: Any) -> np.ndarray:
            return np.array(self.be.to_numpy(a), copy=True)  # a copy: training goes on in place

        opt = {k: to_host(v) if not isinstance(v, int) else v
               for k, v in self.optimizer.state_dict().items()}
        return Checkpoint(self.i, self.block_start, self.block_rng,
                          {k: to_host(v) for k, v in self.net.params.items()}, opt,
                          {k: list(v) for k, v in self.history.items()}, self._elapsed(start),
                          {k: to_host(v) for k, v in self.net.buffers().items()},
                          self.net.mask_rng.bit_generator.state if self.net.dropouts else None)

    def _elapsed(self, start: float) -> float:
        return self.elapsed_before + time.perf_counter() - start

    def run(self, train_host: Any, test_host: Any, checkpoint_every: int | None) -> TrainResult:
        config, be, net, history = self.config, self.be, self.net, self.history
        x_train, t_train = train_host
        train_set = _to_device(be, x_train, t_train)
        test_set = _to_device(be, *test_host)
        val_set = _to_device(be, *self.val_host) if self.val_host is not None else None
        gradient = _gradient_fn(net, config, self.stop)
        per_epoch = config.iters_per_epoch(x_train.shape[0])
        eval_every = config.eval_every or per_epoch
        every = checkpoint_every or eval_every
        self.write(f"training {net.describe()} on {be} ({be.reason})")
        self.write(f"{config.grad} gradient, {config.iters} iterations, batch "
                   f"{config.batch_size}, {config.optimizer} lr {config.lr}, seed {config.seed}"
                   + (f"; resumed at iteration {self.i}" if self.i else ""))
        timer = be.interval_timer()
        # A GPU's one-time costs (library handles, the first kernels' compilation) are paid
        # here, untimed: one gradient of the first rows, which changes no parameter.
        x0, _, t0 = (a[: config.batch_size, ...] for a in train_set)
        be.warm_up(lambda: net.gradient(x0, t0))
        pending: list[Any] = []  # device 0-d losses not yet read back
        status, message, diverged_at = "completed", "", None
        start = time.perf_counter()
        bar = tqdm(total=config.iters, initial=self.i, disable=not self.show, unit="it",
                   leave=False, file=sys.stderr)
        # Backprop's steps are small products: on NumPy one BLAS thread runs them as fast
        # and never waits for a core another program holds; evaluations get every thread.
        small = be.small_work(enabled=config.grad == "backprop")
        try:
            small.__enter__()  # left in the finally below: the loop's own exits are many
            while self.i < config.iters and status == "completed":
                self.block_rng = self.rng.bit_generator.state  # a resume draws it again
                start_i = self.block_start
                block = min(eval_every - start_i % eval_every, config.iters - start_i, MAX_BLOCK)
                batches = be.asarray(self.rng.integers(0, x_train.shape[0],
                                                       size=(block, config.batch_size)))
                for b in range(self.i - start_i, block):
                    if self.stop():
                        raise KeyboardInterrupt
                    x, t = _batch(be, train_set, batches[b, :])
                    timer.start()
                    grads = gradient(x, t)
                    timer.stop()
                    self.optimizer.update(net.params, grads, scratch=True)
                    pending.append(net.last_layer.loss)
                    self.i += 1
                    if config.grad == "numerical":  # seconds to hours an iteration: show each
                        bar.update(self.i - bar.n)
                    due = self.i % every == 0 and self.on_checkpoint is not None
                    if len(pending) == CHECK_EVERY or b == block - 1 or due:
                        status, message, diverged_at = _read_back(be, pending, timer, history,
                                                                  config)
                        pending = []
                        bar.update(self.i - bar.n)
                        if status != "completed":
                            break
                    if self.i % eval_every == 0 or self.i == config.iters:
                        with small.paused():
                            _evaluate(net, train_set, test_set, history, self.i, per_epoch,
                                      start, self.elapsed_before, val_set)
                        self.write(_epoch_line(history, per_epoch))
                    if due:
                        self.on_checkpoint(self.checkpoint(start))
                self.block_start = start_i + block
        except KeyboardInterrupt:
            _read_back(be, pending, timer, history, config)
            status, message = "interrupted", f"interrupted after {plural(self.i, 'iteration')}"
        finally:
            small.__exit__(None, None, None)
            bar.close()
        return TrainResult(net, history, status, self._elapsed(start), message, diverged_at,
                           self.checkpoint(start) if status == "interrupted" else None)


# -- the pieces of the loop ---------------------------------------------------------------


def _gradient_fn(net: MultiLayerNet, config: TrainConfig,
                 stop: Callable[[], bool]) -> Callable[[Any, Any], dict]:
    if config.grad == "backprop":
        return lambda x, t: net.gradient(x, t)

    def numerical(x: Any, t: Any) -> dict:
        # Polled inside too: one iteration of the book's loop takes seconds.
        grads = net.numerical_gradient(x, t, method=config.numerical_method, stop=stop)
        net.loss(x, t)  # the loss of this batch, for the history
        return grads

    return numerical


def _to_device(be: Backend, x: np.ndarray, t: np.ndarray) -> tuple[Any, Any, Any]:
    """Images in the net's dtype, labels as indices and as one-hot rows, all on the device.

    The images are converted once, here: kept in MNIST's float32 they would be converted
    again in every batch and in every evaluation of the whole set.
    """
    with small_pages():  # first touched here, once: no stall for huge pages
        x_dev = be.asarray(x, dtype=be.dtype)
    t_dev = be.asarray(t.astype(np.int64))
    return x_dev, t_dev, one_hot(t_dev, 10, be.dtype)


def _batch(be: Backend, data: tuple[Any, Any, Any], idx: Any) -> tuple[Any, Any]:
    xp = be.xp
    x, _, t_hot = data
    return xp.take(x, idx, axis=0), xp.take(t_hot, idx, axis=0)


def _read_back(
    be: Backend, pending: list[Any], timer: Any, history: dict, config: TrainConfig
) -> tuple[str, str, int | None]:
    """Move the pending losses and gradient times to the history; detect divergence
    (status, message, and the iteration that diverged)."""
    times = timer.drain()
    if not pending:
        return "completed", "", None
    losses = be.to_numpy(be.xp.stack(pending)).astype(float)
    n = min(len(losses), len(times))
    first = len(history["loss"])
    history["loss"].extend(losses[:n].tolist())
    history["grad_time"].extend(times[:n])
    limit = DIVERGENCE_FACTOR * max(history["loss"][0], 1.0) if history["loss"] else np.inf
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isfinite(losses[:n]) | (losses[:n] > limit))
    if bad.size:
        at = first + int(bad[0]) + 1
        return "diverged", (
            f"the loss became {losses[bad[0]]:.4g} at iteration {at}: training diverged; "
            "try a smaller learning rate"
        ), at
    return "completed", "", None


def _evaluate(net: MultiLayerNet, train_set: tuple, test_set: tuple, history: dict,
              i: int, per_epoch: int, start: float, before: float = 0.0,
              val_set: tuple | None = None) -> None:
    history["eval_iter"].append(i)
    history["eval_epoch"].append(i / per_epoch)
    sets = [("train_acc", train_set), ("test_acc", test_set)]
    if val_set is not None:
        sets.insert(1, ("val_acc", val_set))
    for key, (x, t, _) in sets:
        history[key].append(net.accuracy(x, t))
    history["eval_elapsed"].append(before + time.perf_counter() - start)


def _epoch_line(history: dict, per_epoch: int) -> str:
    i = history["eval_iter"][-1]
    prev = history["eval_iter"][-2] if len(history["eval_iter"]) > 1 else 0
    grad_ms = 1000 * float(np.mean(history["grad_time"][prev:i]))
    loss = float(np.mean(history["loss"][prev:i]))
    return (f"epoch {history['eval_epoch'][-1]:6.2f}  iter {i:6d}  grad {grad_ms:9.3f} ms  "
            f"loss {loss:.4f}  train acc {history['train_acc'][-1]:.4f}  "
            + (f"val acc {history['val_acc'][-1]:.4f}  " if history.get("val_acc") else "")
            + f"test acc {history['test_acc'][-1]:.4f}  {history['eval_elapsed'][-1]:7.1f} s")


def _check_data(x: np.ndarray, t: np.ndarray, name: str) -> None:
    if x.ndim != 2 or t.ndim != 1 or x.shape[0] != t.shape[0] or x.shape[0] == 0:
        raise InputError(
            f"{name} data must be images (N, D) and labels (N,), got {x.shape} and {t.shape}"
        )
    # One pass without a temporary: any NaN or infinity makes the sum non-finite.
    if not np.isfinite(np.sum(x, dtype=np.float64)) and not np.all(np.isfinite(x)):
        raise InputError(f"{name} images contain NaN or infinite values")
    if t.min() < 0 or t.max() > 9:
        raise InputError(f"{name} labels must be class indices 0..9")
