"""What nnx reads back from a run directory, validated as input anyone could have written.

One reader per file: :func:`read_config` (``config.json`` as a :class:`TrainConfig`),
:func:`read_net_config` (the net ``evaluate`` and ``predict`` load), :func:`read_history`,
:func:`read_params` and :func:`read_batchnorm`; ``checkpoint.npz`` has a module of its own,
:mod:`nnx.checkpointfile`, built on the checks here. Each opens its file without following a
link, bounds its size by what the run's config implies before reading, checks every value
against a schema (types, ranges, shapes from the config, cross-checks such as the iteration
against the history's lengths) and raises :class:`DataError`: one sentence naming the file
and the field. What the config implies lives in two functions, :func:`param_shapes` and
:func:`optimizer_state`, so a net with more parameters or state extends them in one place.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnx import io, npzfile, rundir
from nnx.errors import DataError, InputError, NnxError
from nnx.optimizers import make_optimizer
from nnx.training import TrainConfig

CLASSES, PIXELS = 10, 784  # what evaluate and predict feed a net: MNIST images
JSON_LIMIT = rundir.JSON_LIMIT
PER_ITERATION = ("loss", "grad_time")  # the history's lists: one entry per iteration...
PER_EVALUATION = ("eval_iter", "eval_epoch", "train_acc", "test_acc", "eval_elapsed")  # ...each
JSON_PER_ITERATION = 64  # bytes of JSON an iteration adds to the history, at most (with room)


class Bad(ValueError):
    """A field's value that cannot be used: ``field`` and a phrase saying what it must be."""

    def __init__(self, field: str, value: Any, want: str) -> None:
        super().__init__(f"holds {field} = {io.brief(repr(value))[:60]}, not {want}")


def fail(path: Path, exc: Exception) -> DataError:
    """The one sentence for a file that fails: its path, what is wrong, the fix."""
    return DataError(f"{path} {exc}; restore the file or start a new run")


# -- what a config implies ----------------------------------------------------------------------
def param_shapes(sizes: Sequence[int], batch_norm: bool = False) -> dict[str, tuple[int, ...]]:
    """The parameters of a layered net of ``sizes`` (e.g. ``[784, 50, 10]``) and their shapes;
    with ``batch_norm``, each hidden layer's ``gamma`` and ``beta`` too."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        shapes[f"W{i}"], shapes[f"b{i}"] = (a, b), (b,)
        if batch_norm and i < len(sizes) - 1:
            shapes[f"gamma{i}"], shapes[f"beta{i}"] = (b,), (b,)
    return shapes


def buffer_shapes(sizes: Sequence[int], batch_norm: bool) -> dict[str, tuple[int, ...]]:
    """The batch norms' running statistics a net of ``sizes`` keeps, and their shapes."""
    if not batch_norm:
        return {}
    return {f"{name}{i}": (b,) for i, b in enumerate(sizes[1:-1], start=1)
            for name in ("running_mean", "running_var")}


def optimizer_state(config: TrainConfig) -> tuple[list[str], list[str]]:
    """The optimizer's state: its array slots (``v``, ``h``, ``m``: one array per parameter)
    and its counters (``iter``), as :meth:`Optimizer.state_dict` writes them."""
    opt = make_optimizer(config.optimizer, lr=config.lr, **config.optimizer_options)
    slots = [k for k, v in vars(opt).items() if isinstance(v, dict)]
    return slots, [k for k in ("iter",) if hasattr(opt, k)]


# -- JSON ---------------------------------------------------------------------------------------
read_json = rundir.read_json


def is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _str_or_none(v: Any) -> bool:
    return v is None or isinstance(v, str)


CONFIG_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "device": (_str_or_none, "a device string"),
    "dtype": (lambda v: v in ("float64", "float32"), "float64 or float32"),
    "grad": (lambda v: isinstance(v, str), "a string"),
    "numerical_method": (lambda v: isinstance(v, str), "a string"),
    "iters": (lambda v: is_int(v) and v > 0, "a positive integer"),
    "batch_size": (lambda v: is_int(v) and v > 0, "a positive integer"),
    "lr": (lambda v: is_real(v) and 0 < v < math.inf, "a positive number"),
    "hidden": (lambda v: isinstance(v, list) and v and all(is_int(h) and h > 0 for h in v),
               "a list of positive layer sizes"),
    "activation": (lambda v: isinstance(v, str), "a string"),
    "weight_init_std": (lambda v: isinstance(v, str) or (is_real(v) and 0 < v < math.inf),
                        "a positive number, 'he' or 'xavier'"),
    "optimizer": (lambda v: isinstance(v, str), "a string"),
    "optimizer_options": (lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and is_real(x) for k, x in v.items()), "an object of numbers"),
    "seed": (lambda v: is_int(v) and v >= 0, "a non-negative integer"),
    "eval_every": (lambda v: v is None or (is_int(v) and v > 0), "a positive integer or null"),
    "weight_decay": (lambda v: is_real(v) and 0 <= v < math.inf, "a finite number >= 0"),
    "dropout": (lambda v: is_real(v) and 0 <= v < 1, "a ratio in [0, 1)"),
    "batch_norm": (lambda v: isinstance(v, bool), "true or false"),
    "val_split": (lambda v: is_real(v) and 0 <= v < 1, "a fraction in [0, 1)"),
}
NET_FIELDS = ("weight_decay", "dropout", "batch_norm", "val_split")  # the net's, beside sizes


def _check_fields(saved: dict[str, Any], names: Any) -> None:
    for name in sorted(set(names) & set(saved)):
        check, want = CONFIG_FIELDS.get(name, (lambda v: True, ""))
        if not check(saved[name]):
            raise Bad(name, saved[name], want)


def read_config(run: Path, device: str | None = None) -> TrainConfig:
    """The :class:`TrainConfig` in ``run``'s ``config.json``; ``device`` replaces its own."""
    path = run / rundir.CONFIG
    saved = read_json(path)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        _check_fields(saved, fields)
        config = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
        config.hidden = tuple(config.hidden)
        if device is not None:
            config.device = device  # a run may continue on another device
        config.validate()
        try:
            optimizer_state(config)
        except InputError as exc:
            raise Bad("optimizer_options", config.optimizer_options,
                      f"options of optimizer {config.optimizer!r} ({exc})") from None
        if "sizes" in saved:
            _check_sizes(saved["sizes"], config.hidden)
    except (Bad, InputError) as exc:
        raise fail(path, exc if isinstance(exc, Bad) else f"is not a usable config ({exc})") \
            from None
    return config


def _check_sizes(sizes: Any, hidden: Sequence[int] | None = None) -> list[int]:
    if not (isinstance(sizes, list) and len(sizes) > 2 and all(is_int(n) and n > 0 for n in sizes)):
        raise Bad("sizes", sizes, "a list of three or more positive layer sizes")
    if sizes[0] != PIXELS or sizes[-1] != CLASSES:
        raise Bad("sizes", sizes, f"a net from {PIXELS} pixels to {CLASSES} classes")
    if hidden is not None and list(sizes[1:-1]) != list(hidden):
        raise Bad("sizes", sizes, f"the layers of hidden = {list(hidden)}")
    return list(sizes)


def read_net_config(run: Path) -> dict[str, Any]:
    """``run``'s ``config.json`` as ``evaluate`` and ``predict`` need it: ``sizes`` (from
    784 pixels to 10 classes), ``activation`` and ``dtype`` checked."""
    path = run / rundir.CONFIG
    config = read_json(path)
    try:
        hidden = config.get("hidden")
        _check_sizes(config.get("sizes"), hidden if isinstance(hidden, list) else None)
        from nnx.layers import ACTIVATIONS

        if config.get("activation") not in ACTIVATIONS:
            raise Bad("activation", config.get("activation"), f"one of {', '.join(ACTIVATIONS)}")
        if config.get("dtype", "float64") not in ("float64", "float32"):
            raise Bad("dtype", config.get("dtype"), "float64 or float32")
        _check_fields(config, NET_FIELDS)
    except Bad as exc:
        raise fail(path, exc) from None
    return config


def read_history(run: Path) -> dict[str, Any]:
    """``run``'s ``history.json``, with its ``status`` and ``final_test_acc`` checked."""
    path = run / rundir.HISTORY
    history = read_json(path, limit=JSON_LIMIT + JSON_PER_ITERATION * _iters(run))
    try:
        if not isinstance(history.get("status"), str | None):
            raise Bad("status", history["status"], "a string")
        acc = history.get("final_test_acc")
        if acc is not None and not (is_real(acc) and 0 <= acc <= 1):
            raise Bad("final_test_acc", acc, "an accuracy between 0 and 1, or null")
    except Bad as exc:
        raise fail(path, exc) from None
    return history


def _iters(run: Path) -> int:  # the history's length the config implies (no config: small)
    try:
        iters = read_json(run / rundir.CONFIG).get("iters")
    except NnxError:
        return 1 << 14
    return iters if is_int(iters) and 0 < iters < 1 << 40 else 1 << 14


# -- arrays -------------------------------------------------------------------------------------
def read_params(run: Path, sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """``run``'s ``params.npz``: exactly the parameters of a net of ``sizes``, finite."""
    return _read_arrays(run / rundir.PARAMS, param_shapes(sizes), "fiu")


def read_batchnorm(run: Path, sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """``run``'s ``batchnorm.npz``: exactly the ``gamma``, ``beta`` and running statistics
    of a net of ``sizes`` with batch norm, finite, its variances never negative."""
    shapes = {k: s for k, s in param_shapes(sizes, batch_norm=True).items()
              if k.startswith(("gamma", "beta"))}
    shapes.update(buffer_shapes(sizes, batch_norm=True))
    return _read_arrays(run / rundir.BATCHNORM, shapes, "f")


def _read_arrays(path: Path, shapes: dict[str, tuple[int, ...]], kinds: str
                 ) -> dict[str, np.ndarray]:
    specs = {k: npzfile.Spec(s, kinds) for k, s in shapes.items()}
    try:
        with io.open_nofollow(path, npz_limit(specs)) as f:
            arrays = npzfile.read(f, specs, required=list(shapes))
        check_variances(arrays)
        return arrays
    except (io.BadFile, Bad) as exc:
        raise fail(path, exc) from None
    except Exception as exc:  # zipfile, zlib, numpy: damaged bytes raise any kind
        raise fail(path, f"is not an intact .npz ({io.brief(exc) or type(exc).__name__})") \
            from None


def npz_limit(specs: dict[str, npzfile.Spec]) -> int:
    """The most bytes a file of these members can take on disk (stored, with headers)."""
    return sum(s.max_items * npzfile.ITEM + 4096 for s in specs.values()) + 4096


def check_variances(arrays: dict[str, np.ndarray]) -> None:
    """A batch norm's running variance is never negative (its square root is taken)."""
    for k, v in arrays.items():
        if k.rpartition("/")[2].startswith("running_var") and (v < 0).any():
            raise Bad(k, f"{int((v < 0).sum())} negative values", "variances >= 0")


def check_history(history: Any, it: int, with_val: bool = False) -> dict[str, list]:
    per_evaluation = (*PER_EVALUATION, "val_acc") if with_val else PER_EVALUATION
    keys = (*PER_ITERATION, *per_evaluation)
    if not isinstance(history, dict) or set(history) != set(keys):
        raise Bad("history", history if not isinstance(history, dict) else sorted(history),
                  f"an object of {', '.join(keys)}")
    for k in keys:
        v = history[k]
        if not (isinstance(v, list) and all(is_real(x) for x in v)):
            raise Bad(f"history.{k}", v, "a list of numbers")
    for k in PER_ITERATION:
        if len(history[k]) != it:
            raise Bad(f"history.{k}", f"{len(history[k])} entries", f"one per iteration ({it})")
    evals = history["eval_iter"]
    for k in per_evaluation:
        if len(history[k]) != len(evals):
            raise Bad(f"history.{k}", f"{len(history[k])} entries",
                      f"one per evaluation ({len(evals)})")
    if not all(is_int(i) and 0 < i <= it for i in evals) or evals != sorted(set(evals)):
        raise Bad("history.eval_iter", evals, f"rising iterations up to {it}")
    return {k: list(history[k]) for k in keys}
