"""Layers of chapter 5 as plain classes.

``forward`` caches what ``backward`` needs; ``backward(dout)`` returns the gradient with
respect to the input(s) and stores parameter gradients (``dW``, ``db``). ``dout`` is
never modified: every layer returns new arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from backends import device_of, xp_of
from nnx.functions import as_one_hot, relu, sigmoid

Array = Any
FEATURE_MAJOR_ROWS = 1000  # from this many rows Affine computes (W.T @ x.T).T


class MulLayer:
    """out = x * y (the computational-graph multiply node)."""

    def forward(self, x: Any, y: Any) -> Any:
        self.x, self.y = x, y
        return x * y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        return dout * self.y, dout * self.x


class AddLayer:
    """out = x + y (the computational-graph add node)."""

    def forward(self, x: Any, y: Any) -> Any:
        return x + y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        return dout * 1, dout * 1


class SquareLayer:
    """out = x ** 2 (for graphs such as f(x, y) = x^2/20 + y^2)."""

    def forward(self, x: Any) -> Any:
        self.x = x
        return x * x

    def backward(self, dout: Any) -> Any:
        return dout * 2 * self.x


class Relu:
    """max(x, 0); the gradient passes where the input was positive."""

    def forward(self, x: Array) -> Array:
        xp = xp_of(x)
        out = xp.maximum(x, 0.0)  # cheaper than a where; a NaN stays a NaN
        # The mask as 1.0 where x > 0, else 0.0, in x's dtype (sign of a non-negative
        # array, one array): backward multiplies by it, a fifth of the time of a where on a
        # fresh mask, whose branches the CPU cannot predict.
        self.mask = xp.sign(out)
        return out

    def backward(self, dout: Array) -> Array:
        return dout * self.mask


class Sigmoid:
    """1 / (1 + exp(-x)); its derivative is out * (1 - out)."""

    def forward(self, x: Array) -> Array:
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout: Array) -> Array:
        return dout * (1.0 - self.out) * self.out


class Affine:
    """out = x @ W + b, for x of shape (N, ...) flattened to (N, in).

    ``input_grad=False`` skips computing ``dx`` (``backward`` then returns ``None``):
    the first layer of a network never needs it, and it is a third of the matmul work.
    """

    def __init__(self, W: Array, b: Array, input_grad: bool = True) -> None:
        self.W, self.b = W, b
        self.input_grad = input_grad
        self.dW: Array | None = None
        self.db: Array | None = None

    def forward(self, x: Array) -> Array:
        xp = xp_of(x)
        self.original_x_shape = x.shape
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], -1))
        self.x = x
        if x.shape[0] >= FEATURE_MAJOR_ROWS:  # thousands of rows meet a narrow W: the BLAS
            out = xp.matmul(self.W.T, x.T).T  # runs this order faster; only the sums' order
        else:  # differs
            out = xp.matmul(x, self.W)
        out += self.b  # in place: the product is ours, and one array fewer per call
        self.out = out  # kept for the numerical gradient's trace
        return out

    def backward(self, dout: Array) -> Array | None:
        xp = xp_of(dout)
        self.dW = xp.matmul(self.x.T, dout)
        self.db = xp.sum(dout, axis=0)
        if not self.input_grad:
            return None
        dx = xp.matmul(dout, self.W.T)
        if len(self.original_x_shape) == 2:
            return dx
        return xp.reshape(dx, self.original_x_shape)


class SoftmaxWithLoss:
    """Softmax and mean cross-entropy in one layer, from the logits.

    The loss is computed by log-sum-exp, ``-mean(sum_c t_c (x_c - m - log sum_k exp(x_k -
    m)))`` with ``m`` the row maximum, so ``backward`` -- ``(softmax - t) / N`` -- is its
    exact derivative. ``t`` may be class indices (N,) or one-hot rows (N, C). The
    temporaries are updated in place: a training step makes as few arrays as it can.
    """

    def forward(self, x: Array, t: Array) -> Array:
        xp = xp_of(x)
        self.t = as_one_hot(t, x.shape[-1], x.dtype)
        self.batch_size = x.shape[0]
        shifted = x - xp.max(x, axis=-1, keepdims=True)
        y = xp.exp(shifted)
        total = xp.sum(y, axis=-1, keepdims=True)
        y /= total
        self.y = y
        shifted -= xp.log(total)  # now log(softmax), in place: the array is ours
        loss = xp.sum(self.t * shifted)  # rows of t sum to one
        loss /= -self.batch_size
        self.loss = loss
        return loss

    def backward(self, dout: Any = 1.0) -> Array:
        dx = self.y - self.t
        dx *= dout / self.batch_size
        return dx


class Activation(NamedTuple):
    """An activation as a layer (for backprop) and as a function (for everything else)."""

    layer: type
    fn: Callable[[Array], Array]


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(Relu, relu),
    "sigmoid": Activation(Sigmoid, sigmoid),
}


# -- chapter 6: dropout and batch normalization --------------------------------------------


class Dropout:
    """The book's dropout: in training each unit is kept with probability ``1 - ratio``; at
    inference every unit passes, scaled by ``1 - ratio`` (``forward(x, train_flg)``).

    Masks are drawn on the host from ``rng`` (a NumPy Generator) and moved to ``x``'s device
    by ``to_device(mask)`` (default: the array library's ``asarray``), so a seed gives the same
    masks on every device. With ``hold`` true, a mask once drawn is kept for later forward
    passes of the same shape: the gradient check compares backprop and central differences
    of one function.
    """

    def __init__(self, dropout_ratio: float = 0.5, rng: Any = None,
                 to_device: Callable[[Any], Array] | None = None) -> None:
        self.dropout_ratio = float(dropout_ratio)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.to_device = to_device
        self.hold = False
        self.mask: Array | None = None

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        if not train_flg:
            return x * (1.0 - self.dropout_ratio)
        if not (self.hold and self.mask is not None and self.mask.shape == x.shape):
            keep = (self.rng.random(tuple(x.shape)) >= self.dropout_ratio).astype(float)
            if self.to_device is not None:
                self.mask = self.to_device(keep)
            else:
                xp = xp_of(x)
                self.mask = xp.asarray(keep, dtype=x.dtype, device=device_of(x))
        return x * self.mask

    def backward(self, dout: Array) -> Array:
        return dout * self.mask


class BatchNormalization:
    """The book's batch normalization over the rows of a batch, ``forward(x, train_flg)``.

    Training normalises by the batch's mean and variance (plus ``eps``) and updates the
    running ones, ``running = momentum * running + (1 - momentum) * batch``; inference uses
    the running ones. ``gamma`` and ``beta`` scale and shift; ``backward`` stores ``dgamma``
    and ``dbeta``. The running statistics start at zero and one.
    """

    def __init__(self, gamma: Array, beta: Array, momentum: float = 0.9,
                 running_mean: Array | None = None, running_var: Array | None = None,
                 eps: float = 1e-7) -> None:
        xp = xp_of(gamma)
        self.gamma, self.beta, self.momentum, self.eps = gamma, beta, momentum, eps
        self.running_mean = xp.zeros_like(gamma) if running_mean is None else running_mean
        self.running_var = xp.ones_like(gamma) if running_var is None else running_var
        self.dgamma: Array | None = None
        self.dbeta: Array | None = None

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        xp = xp_of(x)
        self.input_shape = x.shape
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], -1))
        if train_flg:
            mu = xp.mean(x, axis=0)
            xc = x - mu
            var = xp.mean(xc * xc, axis=0)
            m = self.momentum
            self.running_mean = m * self.running_mean + (1 - m) * mu
            self.running_var = m * self.running_var + (1 - m) * var
        else:
            xc, var = x - self.running_mean, self.running_var
        self.std = xp.sqrt(var + self.eps)
        self.xn = xc / self.std
        out = self.gamma * self.xn + self.beta
        return xp.reshape(out, self.input_shape)

    def backward(self, dout: Array) -> Array:
        """The training pass's gradient: the batch statistics depend on every row, so
        ``dx = (dxn - mean(dxn) - xn * mean(dxn * xn)) / std`` with ``dxn = gamma * dout``."""
        xp = xp_of(dout)
        if dout.ndim != 2:
            dout = xp.reshape(dout, (dout.shape[0], -1))
        self.dbeta = xp.sum(dout, axis=0)
        self.dgamma = xp.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dx = (dxn - xp.mean(dxn, axis=0) - self.xn * xp.mean(dxn * self.xn, axis=0)) / self.std
        return xp.reshape(dx, self.input_shape)
