"""Initial weights: the host Generator a seed makes, and the scale a net's weights start at
(a standard deviation, or He's and Xavier's rules)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnx.errors import InputError, non_negative_int


def generator(seed: Any) -> np.random.Generator:
    """A host Generator for ``seed``: None, a non-negative int or a SeedSequence."""
    if seed is not None and not isinstance(seed, np.random.SeedSequence):
        non_negative_int("seed", seed, or_none=True)
    return np.random.default_rng(seed)


def init_std(spec: float | str, fan_in: int) -> float:
    if isinstance(spec, str):
        if spec.lower() == "he":
            return math.sqrt(2.0 / fan_in)
        if spec.lower() == "xavier":
            return math.sqrt(1.0 / fan_in)
        raise InputError(f"unknown weight_init_std {spec!r}: expected a number, 'he' or 'xavier'")
    numeric = isinstance(spec, (int, float, np.integer, np.floating)) and not isinstance(spec, bool)
    if not (numeric and spec > 0 and math.isfinite(spec)):
        raise InputError(f"weight_init_std must be a positive number, got {spec}")
    return float(spec)
