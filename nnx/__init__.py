"""nnx: the two-layer MNIST net of Deep Learning from Scratch on NumPy or CuPy."""

from nnx.errors import DataError, DivergenceError, InputError, NnxError

__all__ = ["DataError", "DivergenceError", "InputError", "NnxError"]
