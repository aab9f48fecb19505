"""An optimizer's path on a small function (chapters 4 and 6), stopped when it diverges.

:func:`follow` takes the steps of any optimizer of :mod:`nnx.optimizers` along a gradient
the caller computes (numerically, or by a graph's backward pass) on arrays of any
device, and keeps a host copy of every point, value and gradient for tables and plots.
A point that stops being finite or leaves the box ``|coordinate| <= limit`` ends the
path: its step is reported as ``diverged_at`` and it is not recorded, so everything in
the path can be plotted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends import Backend
from nnx.errors import InputError
from nnx.optimizers import Optimizer

LIMIT = 1e6  # |coordinate| beyond this counts as divergence
MAX_STEPS = 1_000_000  # a path keeps a host copy of every point: bound the work and memory

Params = dict[str, Any]
Objective = Callable[[Params], tuple[Any, Mapping[str, Any]]]


@dataclass
class Trajectory:
    """Points 0, 1, ... of a descent (host copies, the params' values in key order)."""

    optimizer: Optimizer
    points: list[np.ndarray] = field(default_factory=list)
    values: list[float] = field(default_factory=list)  # f at each point
    grads: list[np.ndarray] = field(default_factory=list)  # the gradient used at each point
    diverged_at: int | None = None  # the first step whose point was not finite or in bounds

    @property
    def steps(self) -> int:
        """Steps recorded after the start."""
        return len(self.points) - 1


def follow(fn: Objective, params: Params, optimizer: Optimizer, steps: int,
           backend: Backend, limit: float = LIMIT) -> Trajectory:
    """Take up to ``steps`` steps of ``optimizer`` from ``params`` (updated in place).

    ``fn(params)`` returns f and its gradients (a dict with the keys of ``params``) at
    the current point. The path stops early at the first point, the start included, that
    is not finite, has a coordinate beyond ``limit`` in absolute value, or where f is
    not finite. Overflow on the way is expected there, so NumPy's warnings are silenced.
    """
    if steps > MAX_STEPS:
        raise InputError(f"steps must be at most {MAX_STEPS:,}, got {steps:,}")
    path = Trajectory(optimizer)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for k in range(steps + 1):
            point = _host(backend, params, params)
            if not _within(point, limit):
                path.diverged_at = k
                break
            value, grads = fn(params)
            f = float(np.sum(backend.to_numpy(value)))
            if not math.isfinite(f):
                path.diverged_at = k
                break
            path.points.append(point)
            path.values.append(f)
            path.grads.append(_host(backend, grads, params))
            if k < steps:
                optimizer.update(params, grads)
    return path


def _within(point: np.ndarray, limit: float) -> bool:
    return bool(np.all(np.isfinite(point)) and np.max(np.abs(point)) <= limit)


def _host(backend: Backend, arrays: Mapping[str, Any], keys: Mapping[str, Any]) -> np.ndarray:
    """``arrays`` in the order of ``keys``, as one new host vector (never a view of a param)."""
    return np.concatenate([np.asarray(backend.to_numpy(arrays[k]), dtype=float).ravel()
                           for k in keys])
