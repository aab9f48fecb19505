"""nnx: the two-layer MNIST net of Deep Learning from Scratch on NumPy or CuPy.

>>> import nnx
>>> (x_train, t_train), (x_test, t_test) = nnx.load_mnist()
>>> net = nnx.TwoLayerNet(784, 50, 10, device="auto", seed=0)
>>> be = net.backend
>>> grads = net.gradient(be.asarray(x_train[:100]), be.asarray(t_train[:100]))
>>> run = nnx.Run.create("runs/first", nnx.TrainConfig(iters=1000))
>>> result = run.train(((x_train, t_train), (x_test, t_test)))

The names below are imported on first use (PEP 562), so ``import nnx.cli`` imports no
NumPy and the ``nnx`` command takes over the stop signals before its heavy imports.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "nnx.errors": ("DataError", "DivergenceError", "InputError", "NnxError"),
    "nnx.functions": ("cross_entropy_error", "log_softmax", "relu", "sigmoid", "softmax",
                      "softmax_cross_entropy", "step_function"),
    "nnx.gradcheck": ("gradient_check",),
    "nnx.io": ("load_params",),
    "nnx.layers": ("AddLayer", "Affine", "MulLayer", "Relu", "Sigmoid", "SoftmaxWithLoss",
                   "SquareLayer"),
    "nnx.mnist": ("load_mnist",),
    "nnx.network": ("MultiLayerNet", "TwoLayerNet"),
    "nnx.numerical": ("numerical_diff", "numerical_gradient"),
    "nnx.optimizers": ("SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop",
                       "make_optimizer"),
    "nnx.run": ("Run", "load_run"),
    "nnx.training": ("TrainConfig", "TrainResult", "train"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """``nnx.NAME`` for the names above, and ``nnx.SUBMODULE``, imported on first use."""
    module = _MODULE_OF.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif not name.startswith("_"):
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later uses find it directly
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
