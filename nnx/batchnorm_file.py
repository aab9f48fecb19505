"""A trained net's batch normalization, ``batchnorm.npz`` beside ``params.npz``: each hidden
layer's ``gamma{k}`` and ``beta{k}`` and its running statistics ``running_mean{k}`` and
``running_var{k}``, which inference needs. Plain arrays, no pickle."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from nnx import io
from nnx.errors import DataError


def save(path: str | os.PathLike[str], net: Any) -> None:
    """Write ``net``'s batch norm arrays (host copies) to ``path``."""
    arrays = {k: v for k, v in net.params.items() if k.startswith(("gamma", "beta"))}
    arrays.update(net.buffers())
    io.save_params(path, {k: net.backend.to_numpy(v) for k, v in arrays.items()})


def load(path: str | os.PathLike[str], net: Any) -> None:
    """Put the arrays in ``path`` into ``net`` (made with ``use_batchnorm``);
    :class:`DataError` naming the file unless it holds exactly the arrays the net needs."""
    want = {k: tuple(v.shape) for k, v in net.params.items() if k.startswith(("gamma", "beta"))}
    want.update({k: tuple(v.shape) for k, v in net.buffers().items()})
    try:
        if io.file_size(path) is None:
            raise io.BadFile("does not exist")
        with np.load(path, allow_pickle=False) as z:
            got = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile, zlib, numpy: damaged bytes raise any kind
        raise DataError(f"{path} is not a readable batch norm file ({io.brief(exc)}); re-train "
                        "or restore it") from exc
    shapes = {k: tuple(v.shape) for k, v in got.items()}
    if shapes != want or not all(np.issubdtype(v.dtype, np.floating) for v in got.values()):
        raise DataError(f"{path} does not hold the batch norm arrays of this net ("
                        f"{', '.join(sorted(want))}); re-train or restore it")
    be = net.backend
    for k, v in got.items():
        if k in net.params:
            net.params[k] = be.asarray(v, dtype=be.dtype)
    net.load_buffers({k: be.asarray(got[k], dtype=be.dtype) for k in net.buffers()})
