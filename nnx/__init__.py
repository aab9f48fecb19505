"""nnx: the two-layer MNIST net of Deep Learning from Scratch on NumPy or CuPy.

>>> import nnx
>>> (x_train, t_train), (x_test, t_test) = nnx.load_mnist()
>>> net = nnx.TwoLayerNet(784, 50, 10, device="auto", seed=0)
>>> be = net.backend
>>> grads = net.gradient(be.asarray(x_train[:100]), be.asarray(t_train[:100]))
"""

from nnx.errors import DataError, DivergenceError, InputError, NnxError
from nnx.functions import (
    cross_entropy_error,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    step_function,
)
from nnx.gradcheck import gradient_check
from nnx.io import load_params
from nnx.layers import AddLayer, Affine, MulLayer, Relu, Sigmoid, SoftmaxWithLoss, SquareLayer
from nnx.mnist import load_mnist
from nnx.network import MultiLayerNet, TwoLayerNet
from nnx.numerical import numerical_diff, numerical_gradient
from nnx.optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop, make_optimizer
from nnx.training import TrainConfig, TrainResult, train

__all__ = [
    "SGD",
    "AdaGrad",
    "Adam",
    "AddLayer",
    "Affine",
    "DataError",
    "DivergenceError",
    "InputError",
    "Momentum",
    "MulLayer",
    "MultiLayerNet",
    "Nesterov",
    "NnxError",
    "RMSprop",
    "Relu",
    "Sigmoid",
    "SoftmaxWithLoss",
    "SquareLayer",
    "TrainConfig",
    "TrainResult",
    "TwoLayerNet",
    "cross_entropy_error",
    "gradient_check",
    "load_mnist",
    "load_params",
    "log_softmax",
    "make_optimizer",
    "numerical_diff",
    "numerical_gradient",
    "relu",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "step_function",
    "train",
]
