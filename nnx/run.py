"""A training run as one object: its directory created and locked, the net trained with
checkpoints, the results saved, and a stopped run resumed, from Python as from ``nnx train``.

>>> run = Run.create("runs/a", TrainConfig(iters=1000))
>>> result = run.train(load_mnist(), stop=lambda: False)  # stop() true: "interrupted"
>>> result = Run.resume("runs/a").train(load_mnist())   # continues it exactly

A :class:`Run` holds its directory's lock from :meth:`Run.create` or :meth:`Run.resume`
until :meth:`Run.train` returns (or :meth:`Run.close`; it is also a context manager). The
directory's files are :mod:`nnx.rundir`'s. A diverged run is saved, then raises
:class:`DivergenceError` with a learning rate checked to get past it; running out of host or
device memory raises :class:`InputError` naming the flag that shrinks the largest array
(:mod:`nnx.advice`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backends import Backend, BackendError, get_backend, is_out_of_memory, machine_info
from nnx import batchnorm_file, io, rundir, runfiles
from nnx import plots as figures
from nnx.advice import divergence_advice, memory_advice
from nnx.errors import DataError, DivergenceError, InputError
from nnx.network import MultiLayerNet
from nnx.training import Data, TrainConfig, TrainResult, config_dict, train

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
    def resume(cls, path: PathLike, *, device: str | None = None,
               iters: int | None = None) -> Run:
        """The stopped run in ``path``, with its own config (``device`` may move it, and
        ``iters`` extend it to that many iterations in all: the same run as one trained for
        ``iters`` from the start)."""
        path = Path(path)
        if not (path / rundir.CONFIG).is_file():
            raise InputError(f"cannot resume {path}: it holds no {rundir.CONFIG} of an nnx run")
        config = runfiles.read_config(path, device)
        if iters is not None:
            if iters < config.iters:
                raise InputError(f"--iters {iters} is fewer than the {config.iters} iterations "
                                 f"of the run in {path}; --resume can extend a run, not shorten it")
            config.iters = iters
        try:
            return cls._open(path, config, "resume")
        except BackendError as exc:
            if device is not None:
                raise
            raise BackendError(f"{exc}; or continue the run on this machine's CPU with "
                               f"nnx train --resume {path} --device cpu") from None

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
            sizes = [data[0][0].shape[1], *config.hidden, 10]
            resume = rundir.load_checkpoint(out, config, sizes) if mode == "resume" else None
            io.write_json(out / rundir.CONFIG, {
                **config_dict(config), "resolved_device": be.device, "device_reason": be.reason,
                "sizes": [data[0][0].shape[1], *config.hidden, 10],
                "machine": machine_info(gpus=be.is_gpu)})
            try:
                with _quiet():
                    result = train(config, data, log, progress, backend=be, resume=resume,
                                   stop=stop, checkpoint_every=checkpoint_every,
                                   on_checkpoint=lambda c: _checkpoint(out, c))
                save(out, config, result, plots)
            except Exception as exc:  # MemoryError, or a GPU library's own out-of-memory error
                if not is_out_of_memory(exc):
                    raise
                raise InputError(memory_advice(config, be, data, exc)) from None
            finally:
                if not any((out / n).exists() for n in (rundir.CHECKPOINT, rundir.HISTORY)):
                    (out / rundir.CONFIG).unlink(missing_ok=True)  # nothing done: leave nothing
            if result.status == "diverged":
                with _quiet():
                    raise DivergenceError(divergence_advice(config, data, result))
        return result


def _quiet() -> contextlib.AbstractContextManager[Any]:
    """No NumPy warnings of overflow: a divergence is the loop's to report, in one sentence."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def _checkpoint(out: Path, c: rundir.Checkpoint) -> None:
    """A checkpoint during training; one that cannot be written (a full disk) is one
    sentence naming the directory, and the one before it stays."""
    with io.writing(out, "a checkpoint of the run", " (the last checkpoint, if any, is kept)"):
        rundir.save_checkpoint(out, c)  # written atomically: a failed one leaves the last


def load_run(run_dir: str | os.PathLike[str], device: str | Backend | None = None
             ) -> tuple[MultiLayerNet, dict[str, Any]]:
    """The net saved in ``run_dir`` (by ``nnx train``) on ``device``, in the run's dtype, and
    its config; :class:`InputError` or :class:`DataError` naming the file and the fix."""
    path = Path(run_dir)
    if not (path / rundir.CONFIG).is_file():
        raise InputError(f"{path} is not an nnx run directory (it holds no {rundir.CONFIG}); "
                         "give a directory that nnx train wrote")
    config = runfiles.read_net_config(path)
    sizes, activation = config["sizes"], config["activation"]
    if not (path / rundir.PARAMS).exists():
        status = (runfiles.read_history(path).get("status")
                  if (path / rundir.HISTORY).is_file() else None)
        fix = ("it diverged; re-train with a smaller --lr" if status == "diverged" else
               f"continue it with nnx train --resume {path}" if (path / rundir.CHECKPOINT)
               .exists() else "wait for the run to finish, or re-train")
        raise InputError(f"{path / rundir.PARAMS} does not exist: the run saved no "
                         f"parameters; {fix}")
    params = runfiles.read_params(path, sizes)
    be = get_backend(device, config.get("dtype", "float64"))
    options = saved_config({k: v for k, v in config.items() if k != "hidden"}).net_options()
    net = MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], activation, device=be, **options)
    for key, value in params.items():  # predict reads the dict at every call
        net.params[key] = be.asarray(value, dtype=be.dtype)
    if net.batchnorms:
        batchnorm_file.put(net, runfiles.read_batchnorm(path, sizes))
    elif os.path.lexists(path / rundir.BATCHNORM):  # nnx writes one only beside batch_norm
        raise DataError(f"{path / rundir.BATCHNORM} belongs to a net with batch norm, but "
                        f"{path / rundir.CONFIG} says batch_norm is false; restore the config "
                        "or re-train")
    return net, config


def save(out: Path, config: TrainConfig, result: TrainResult, plots: bool = True) -> None:
    """Write the results into ``out``, the history (with the status) last.

    An interrupted run also keeps its checkpoint (to resume), and so does a diverged one
    (the last state before the divergence, with no parameters beside it); a completed one
    drops it.
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
        if result.status == "diverged":  # a resumed run's earlier parameters would contradict it
            for name in (rundir.PARAMS, rundir.BATCHNORM):
                (out / name).unlink(missing_ok=True)
        else:
            written.append(out / rundir.PARAMS)
            io.save_params(written[-1], {k: net.backend.to_numpy(v) for k, v in net.params.items()
                                         if k[0] in "Wb" and k[1:].isdigit()})
            if net.batchnorms:
                written.append(out / rundir.BATCHNORM)
                batchnorm_file.save(written[-1], net)
        if plots and h["loss"]:
            title = f"{net.describe()}, {config.grad}, {net.backend.device}"
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
    if result.status == "completed":  # a diverged run keeps its last good state, as a record
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
