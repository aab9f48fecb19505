"""``checkpoint.npz``, read back as input anyone could have written.

:func:`read_checkpoint` bounds the file by what the run's config implies (its parameters,
the optimizer's state, the batch norms' statistics, a history as long as the run) before
inflating anything, then checks every field of its JSON meta: the iteration against the
run and the history's lengths, the batch and dropout generators' states, the optimizer's
counters. A field that fails is one sentence naming the file and the field
(:class:`~nnx.errors.DataError`), through the checks of :mod:`nnx.runfiles`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnx import io, npzfile, rundir
from nnx.runfiles import (
    JSON_LIMIT,
    JSON_PER_ITERATION,
    Bad,
    buffer_shapes,
    check_history,
    check_variances,
    fail,
    is_int,
    is_real,
    npz_limit,
    optimizer_state,
    param_shapes,
)
from nnx.training import MAX_BLOCK, TrainConfig


def read_checkpoint(run: Path, config: TrainConfig, sizes: Sequence[int]) -> rundir.Checkpoint:
    """``run``'s ``checkpoint.npz`` for ``config`` and a net of ``sizes``, every field checked."""
    path = run / rundir.CHECKPOINT
    shapes = param_shapes(sizes, config.batch_norm)
    slots, counters = optimizer_state(config)
    meta_bytes = JSON_LIMIT + JSON_PER_ITERATION * config.iters
    specs = {f"param/{k}": npzfile.Spec(s) for k, s in shapes.items()}
    specs.update({f"opt/{slot}/{k}": npzfile.Spec(s) for slot in slots for k, s in shapes.items()})
    specs.update({f"buf/{k}": npzfile.Spec(s)
                  for k, s in buffer_shapes(sizes, config.batch_norm).items()})
    specs["meta"] = npzfile.Spec((None,), "u", max_items=meta_bytes)
    try:
        with io.open_nofollow(path, npz_limit(specs)) as f:
            arrays = npzfile.read(f, specs, required=[k for k in specs if not k.startswith("opt/")])
        check_variances(arrays)
        meta_array = arrays.pop("meta")
        if meta_array.dtype != np.uint8:
            raise io.BadFile(f"holds meta as {meta_array.dtype}, not bytes (uint8)")
        try:
            meta = json.loads(meta_array.tobytes().decode("utf-8"))
        except RecursionError:
            raise io.BadFile("holds a meta JSON that nests too deeply") from None
        except (UnicodeError, ValueError) as exc:
            raise io.BadFile(f"holds a meta that is not JSON ({io.brief(exc)})") from None
        return _checkpoint(meta, arrays, config, shapes, slots, counters)
    except (io.BadFile, Bad) as exc:
        raise fail(path, exc) from None
    except Exception as exc:  # zipfile, zlib, numpy: damaged bytes raise any kind
        why = io.brief(exc) or type(exc).__name__
        raise fail(path, f"is not a readable nnx checkpoint ({why})") from None


def _checkpoint(meta: Any, arrays: dict[str, np.ndarray], config: TrainConfig,
                shapes: dict[str, tuple[int, ...]], slots: list[str],
                counters: list[str]) -> rundir.Checkpoint:
    keys = {"iteration", "block_start", "rng", "elapsed", "history", "optimizer"}
    if not isinstance(meta, dict) or not keys <= set(meta) <= keys | {"mask_rng"}:
        raise Bad("meta", meta if not isinstance(meta, dict) else sorted(meta),
                  f"an object of {', '.join(sorted(keys))}")
    it, start = meta["iteration"], meta["block_start"]
    if not (is_int(it) and 0 <= it <= config.iters):
        raise Bad("iteration", it, f"an iteration from 0 to the run's {config.iters}")
    if not (is_int(start) and 0 <= start <= it and it - start <= MAX_BLOCK):
        raise Bad("block_start", start, f"an iteration from {max(it - MAX_BLOCK, 0)} to {it}")
    if not (is_real(meta["elapsed"]) and 0 <= meta["elapsed"] < math.inf):
        raise Bad("elapsed", meta["elapsed"], "a number of seconds")
    _check_rng(meta["rng"], "rng")
    mask_rng = meta.get("mask_rng")  # dropout's Generator: a run with dropout has one
    if (mask_rng is None) != (config.dropout == 0):
        raise Bad("mask_rng", mask_rng, "the dropout masks' generator state" if config.dropout
                  else "null (the run has no dropout)")
    if mask_rng is not None:
        _check_rng(mask_rng, "mask_rng")
    history = check_history(meta["history"], it, with_val=config.val_split > 0)
    opt: dict[str, Any] = {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
    for slot in slots:  # a slot's arrays are made at the first step, all at once
        have = sum(f"{slot}/{k}" in opt for k in shapes)
        if have != (len(shapes) if it else 0):
            raise Bad(f"opt/{slot}", f"{have} arrays", f"one per parameter after iteration {it}")
    scalars = meta["optimizer"]
    if not isinstance(scalars, dict) or set(scalars) != set(counters):
        raise Bad("optimizer", scalars, f"an object of {', '.join(counters) or 'nothing'}")
    for name in counters:  # each counts the steps taken
        if not (is_int(scalars[name]) and scalars[name] == it):
            raise Bad(f"optimizer.{name}", scalars[name], f"the iteration, {it}")
    opt.update(scalars)
    params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
    buffers = {k[4:]: v for k, v in arrays.items() if k.startswith("buf/")}
    return rundir.Checkpoint(it, start, meta["rng"], params, opt, history, float(meta["elapsed"]),
                             buffers, meta.get("mask_rng"))


def _check_rng(state: Any, name: str) -> None:
    """A state of the batch Generator's kind, with every number in range."""
    template = np.random.default_rng(0).bit_generator.state

    def same(value: Any, like: Any, field: str) -> None:
        if isinstance(like, dict):
            if not isinstance(value, dict) or set(value) != set(like):
                raise Bad(field, value, f"an object of {', '.join(sorted(like))}")
            for k in like:
                same(value[k], like[k], f"{field}.{k}")
        elif isinstance(like, str):
            if value != like:
                raise Bad(field, value, repr(like))
        elif not (is_int(value) and value >= 0):
            raise Bad(field, value, "a non-negative integer")

    same(state, template, name)
    if template["bit_generator"] == "PCG64":  # 128-bit state and increment, the latter odd
        s = state["state"]
        if not (s["state"] < 1 << 128 and s["inc"] < 1 << 128 and s["inc"] % 2 == 1):
            raise Bad(f"{name}.state", s, "a PCG64 state (128-bit numbers, inc odd)")
        if state["has_uint32"] not in (0, 1) or state["uinteger"] >= 1 << 32:
            raise Bad(name, state, "a PCG64 state (has_uint32 0 or 1, a 32-bit uinteger)")
    try:
        np.random.default_rng(0).bit_generator.state = state
    except (TypeError, ValueError, OverflowError) as exc:
        raise Bad(name, state, f"a valid {template['bit_generator']} state ({exc})") from None
