"""A training run as one object: its directory created and locked, the net trained with
checkpoints, the results saved, and a stopped run resumed, from Python as from ``nnx train``.

>>> run = Run.create("runs/a", TrainConfig(iters=1000))
>>> result = run.train(load_mnist(), stop=lambda: False)  # stop() true: "interrupted"
>>> result = Run.resume("runs/a").train(load_mnist())   # continues it exactly

A :class:`Run` holds its directory's lock from :meth:`Run.create` or :meth:`Run.resume`
until :meth:`Run.train` returns (or :meth:`Run.close`; it is also a context manager). The
directory's files are :mod:`nnx.rundir`'s. A diverged run is saved, then raises
:class:`DivergenceError` with a learning rate checked to get past it; running out of host or
device memory raises :class:`InputError` naming the flag that shrinks the largest array.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backends import Backend, get_backend, is_out_of_memory, machine_info
from nnx import batchnorm_file, io, rundir
from nnx import plots as figures
from nnx.errors import DataError, DivergenceError, InputError, out_of_memory, plural
from nnx.network import MultiLayerNet
from nnx.numerical import numerical_gradient
from nnx.training import Data, TrainConfig, TrainResult, config_dict, describe, train

PathLike = str | os.PathLike[str]


class Run:
    """One run directory and the config it trains; made by :meth:`create` or :meth:`resume`."""

    def __init__(self, path: Path, config: TrainConfig, backend: Backend, mode: str | None,
                 held: contextlib.ExitStack) -> None:
        self.path, self.config, self.backend = path, config, backend
        self._mode, self._held = mode, held

    @classmethod
    def create(cls, path: PathLike, config: TrainConfig, *, overwrite: bool = False) -> Run:
        """A new run in ``path``; a directory that holds a run is refused, unless
        ``overwrite``, which replaces it once :meth:`train` starts."""
        return cls._open(Path(path), config, "overwrite" if overwrite else "new")

    @classmethod
    def resume(cls, path: PathLike, *, device: str | None = None) -> Run:
        """The stopped run in ``path``, with its own config (``device`` may move it)."""
        path = Path(path)
        if not (path / rundir.CONFIG).is_file():
            raise InputError(f"cannot resume {path}: it holds no {rundir.CONFIG} of an nnx run")
        return cls._open(path, saved_config(rundir.read_json(path / rundir.CONFIG), device),
                         "resume")

    @classmethod
    def _open(cls, path: Path, config: TrainConfig, mode: str) -> Run:
        config.validate()
        be = get_backend(config.device, config.dtype)  # a bad device fails before any work
        held = contextlib.ExitStack()
        try:
            out = held.enter_context(io.output_dir(path))
            held.enter_context(rundir.locked(out))
            if mode != "overwrite":  # a used directory is refused before any work
                rundir.prepare(out, mode)
        except BaseException:
            held.__exit__(*sys.exc_info())  # a directory made for it goes again
            raise
        return cls(out, config, be, mode, held)

    def close(self) -> None:
        """Release the directory without training (:meth:`train` releases it itself)."""
        self._mode = None
        self._held.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode = None
        self._held.__exit__(*exc)

    def train(self, data: Data, *, stop: Callable[[], bool] | None = None,
              checkpoint_every: int | None = None, plots: bool = True,
              log: Callable[[str], None] | None = None,
              progress: bool | None = None) -> TrainResult:
        """Train on ``data`` (:func:`nnx.training.train`'s), checkpointing into the directory,
        save the results and release the directory; a ``stop()`` that turns true ends the run
        "interrupted", with its checkpoint kept for :meth:`resume`."""
        out, config, be = self.path, self.config, self.backend
        if self._mode is None:
            raise InputError(f"this Run of {out} has ended; Run.resume continues a stopped run")
        mode, self._mode = self._mode, None
        with self._held:
            if mode == "overwrite":  # the old run goes only once the new one can start
                rundir.prepare(out, "overwrite")
            resume = rundir.load_checkpoint(out) if mode == "resume" else None
            io.write_json(out / rundir.CONFIG, {
                **config_dict(config), "resolved_device": be.device, "device_reason": be.reason,
                "sizes": [data[0][0].shape[1], *config.hidden, 10],
                "machine": machine_info(gpus=be.is_gpu)})
            try:
                result = train(config, data, log, progress, backend=be, resume=resume,
                               stop=stop, checkpoint_every=checkpoint_every,
                               on_checkpoint=lambda c: rundir.save_checkpoint(out, c))
                save(out, config, result, plots)
            except Exception as exc:  # MemoryError, or a GPU library's own out-of-memory error
                if not is_out_of_memory(exc):
                    raise
                raise InputError(memory_advice(config, be, data, exc)) from None
            finally:
                if not any((out / n).exists() for n in (rundir.CHECKPOINT, rundir.HISTORY)):
                    (out / rundir.CONFIG).unlink(missing_ok=True)  # nothing done: leave nothing
            if result.status == "diverged":
                raise DivergenceError(divergence_advice(config, data, result))
        return result


def load_run(run_dir: str | os.PathLike[str], device: str | Backend | None = None
             ) -> tuple[MultiLayerNet, dict[str, Any]]:
    """The net saved in ``run_dir`` (by ``nnx train``) on ``device``, in the run's dtype, and
    its config; :class:`InputError` or :class:`DataError` naming the file and the fix."""
    path = Path(run_dir)
    if not (path / rundir.CONFIG).is_file():
        raise InputError(f"{path} is not an nnx run directory (it holds no {rundir.CONFIG}); "
                         "give a directory that nnx train wrote")
    config = rundir.read_json(path / rundir.CONFIG)
    sizes, activation = config.get("sizes"), config.get("activation")
    if not (isinstance(sizes, list) and len(sizes) > 1 and isinstance(activation, str)):
        raise DataError(f"{path / rundir.CONFIG} names no layer sizes and activation; restore "
                        "it or re-train")
    if not (path / rundir.PARAMS).exists():
        status = (rundir.read_json(path / rundir.HISTORY).get("status")
                  if (path / rundir.HISTORY).is_file() else None)
        fix = ("it diverged; re-train with a smaller --lr" if status == "diverged" else
               f"continue it with nnx train --resume {path}" if (path / rundir.CHECKPOINT)
               .exists() else "wait for the run to finish, or re-train")
        raise InputError(f"{path / rundir.PARAMS} does not exist: the run saved no "
                         f"parameters; {fix}")
    params = io.load_params(path / rundir.PARAMS, sizes=sizes)
    be = get_backend(device, config.get("dtype", "float64"))
    options = saved_config({k: v for k, v in config.items() if k != "hidden"}).net_options()
    net = MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], activation, device=be, **options)
    for key, value in params.items():  # predict reads the dict at every call
        net.params[key] = be.asarray(value, dtype=be.dtype)
    if net.batchnorms:
        batchnorm_file.load(path / rundir.BATCHNORM, net)
    return net, config


def save(out: Path, config: TrainConfig, result: TrainResult, plots: bool = True) -> None:
    """Write the results into ``out``, the history (with the status) last.

    An interrupted run also keeps its checkpoint (to resume); a finished one drops it.
    """
    net, h = result.net, result.history
    with rundir.saving(out) as written:
        if result.checkpoint is not None:
            rundir.save_checkpoint(out, result.checkpoint)
        per_iter = zip(h["loss"], h["grad_time"], strict=True)
        written.append(out / rundir.HISTORY_CSV)
        io.write_csv(written[-1], ["iter", "loss", "grad_time"],
                     [(i, loss, gt) for i, (loss, gt) in enumerate(per_iter, start=1)])
        val = ["val_acc"] if "val_acc" in h else []
        columns = ["eval_iter", "eval_epoch", "train_acc", *val, "test_acc", "eval_elapsed"]
        written.append(out / rundir.EPOCHS_CSV)
        io.write_csv(written[-1], ["iter", "epoch", "train_acc", *val, "test_acc", "elapsed"],
                     list(zip(*(h[c] for c in columns), strict=True)))
        if result.status != "diverged":
            written.append(out / rundir.PARAMS)
            io.save_params(written[-1], {k: net.backend.to_numpy(v) for k, v in net.params.items()
                                         if k[0] in "Wb" and k[1:].isdigit()})
            if net.batchnorms:
                written.append(out / rundir.BATCHNORM)
                batchnorm_file.save(written[-1], net)
        if plots and h["loss"]:
            title = f"{describe(net)}, {config.grad}, {net.backend.device}"
            if h["test_acc"]:
                written.append(out / rundir.ACCURACY_PNG)
                figures.plot_accuracy(h, written[-1], title)
            written.append(out / rundir.LOSS_PNG)
            figures.plot_loss(h, written[-1], title)
        written.append(out / rundir.HISTORY)
        io.write_json(written[-1], {
            **h, "status": result.status, "message": result.message,
            "elapsed": result.elapsed,
            "final_test_acc": h["test_acc"][-1] if h["test_acc"] else None}, indent=None)
    if result.status != "interrupted":
        (out / rundir.CHECKPOINT).unlink(missing_ok=True)


def saved_config(saved: dict, device: str | None = None) -> TrainConfig:
    """The :class:`TrainConfig` a run directory's config holds; ``device`` replaces its own."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        config = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    except TypeError as exc:
        raise InputError(f"the run's config.json is not an nnx training config ({exc})") from None
    config.hidden = tuple(config.hidden)
    if device is not None:
        config.device = device  # a run may continue on another device
    return config


# -- advice ---------------------------------------------------------------------------------
def divergence_advice(config: TrainConfig, data: Data, result: TrainResult) -> str:
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
        if tried.status == "completed" and nothing_learned(tried, data) is None:
            return (f"{head}; --lr {lr:g} trains past iteration {probe.iters} without "
                    f"diverging, to test accuracy {tried.history['test_acc'][-1]:.2f} (tried "
                    "from the same start)")
    return (f"{head}; no rate down to --lr {lr:g} learns within "
            f"{plural(iters, 'iteration')} without diverging (tried from the same start), so "
            "try smaller ones and check the data and --weight-init-std too")


def nothing_learned(result: TrainResult, data: Data) -> str | None:
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


def loop_warning(config: TrainConfig, data: Data, be: Backend, sample: int = 20) -> str | None:
    """How long the book's one-coordinate loop would take this run (``--numerical-method
    loop``), from the time of ``sample`` of its coordinates on the run's device; None for
    any other gradient."""
    if config.grad != "numerical" or config.numerical_method != "loop":
        return None
    (x_train, t_train), _ = data
    net = MultiLayerNet(x_train.shape[1], list(config.hidden), 10, config.activation,
                        config.weight_init_std, device=be, seed=config.seed)
    n = min(config.batch_size, x_train.shape[0])
    x, t = be.asarray(x_train[:n], dtype=be.dtype), be.asarray(t_train[:n].astype(np.int64))
    w = net.params["W1"]
    with be.scope():
        seconds = float(be.time(lambda: numerical_gradient(lambda _w: net.loss(x, t), w,
                                                           indices=range(sample)), 1)[0])
    coords = sum(int(np.prod(p.shape)) for p in net.params.values())
    total = seconds / sample * coords * config.iters
    return (f"--numerical-method loop computes {coords:,} partial derivatives one at a time "
            f"in each of {plural(config.iters, 'iteration')}: about {_duration(total)} on "
            f"{be.device}; --numerical-method vectorized gives the same values far faster")


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * size:
            return plural(round(seconds / size), unit)
    return plural(max(round(seconds), 1), "second")


def memory_advice(config: TrainConfig, be: Any, data: Any, exc: BaseException) -> str:
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
    return f"{out_of_memory(exc)} training on {be.device}; try {hint}"
