"""A trained net's batch normalization, ``batchnorm.npz`` beside ``params.npz``: each hidden
layer's ``gamma{k}`` and ``beta{k}`` and its running statistics ``running_mean{k}`` and
``running_var{k}``, which inference needs. Plain arrays, no pickle."""

from __future__ import annotations

import os
from typing import Any

from nnx import io


def save(path: str | os.PathLike[str], net: Any) -> None:
    """Write ``net``'s batch norm arrays (host copies) to ``path``."""
    arrays = {k: v for k, v in net.params.items() if k.startswith(("gamma", "beta"))}
    arrays.update(net.buffers())
    io.save_params(path, {k: net.backend.to_numpy(v) for k, v in arrays.items()})


def put(net: Any, arrays: dict[str, Any]) -> None:
    """Put the host ``arrays`` of a ``batchnorm.npz`` (read and checked by
    :func:`nnx.runfiles.read_batchnorm`) into ``net``, made with ``use_batchnorm``."""
    be = net.backend
    for k, v in arrays.items():
        if k in net.params:
            net.params[k] = be.asarray(v, dtype=be.dtype)
    net.load_buffers({k: be.asarray(arrays[k], dtype=be.dtype) for k in net.buffers()})
