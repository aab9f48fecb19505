"""Reference implementations written for the backprop comparison (NumPy, CPU only).

Neither is part of nnx; both exist so that nnx's ``net.gradient`` can be timed against
something outside it:

- :func:`fused_step` -- forward and backward of the two-layer ReLU net in a dozen
  NumPy lines, nothing cached that is not needed, in-place where safe: about as fast
  as plain NumPy gets, the floor to compare with;
- :class:`BookStyleNet` -- the book's chapter 5 net re-written here with ``np``
  directly, doing the same operations as the book's code so that it costs what the
  book's code costs: layers in an ``OrderedDict``, a ReLU that masks in place, an
  Affine that reshapes and computes ``dx`` in every layer (the first included), the
  book's softmax over the transpose, and the cross-entropy of the probabilities with
  ``log(y + 1e-7)`` after turning one-hot labels back into indices.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


def fused_step(
    W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray, x: np.ndarray, t: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients of Affine-ReLU-Affine-softmax-cross-entropy, labels ``t`` (N,)."""
    n = x.shape[0]
    rows = np.arange(n)
    a1 = x @ W1
    a1 += b1
    z1 = np.maximum(a1, 0.0)
    y = z1 @ W2
    y += b2
    y -= y.max(axis=1, keepdims=True)
    picked = y[rows, t]  # a copy: the shifted logit of each label
    np.exp(y, out=y)
    total = y.sum(axis=1, keepdims=True)
    y /= total  # softmax
    loss = float(np.mean(np.log(total[:, 0]) - picked))  # log-sum-exp: no log(0)
    y[rows, t] -= 1.0  # y is now dL/dlogits * n
    y /= n
    dz1 = y @ W2.T
    dz1[a1 <= 0] = 0.0
    return loss, {"W1": x.T @ dz1, "b1": dz1.sum(axis=0), "W2": z1.T @ y, "b2": y.sum(axis=0)}


class _Relu:
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout[self.mask] = 0  # in place, as the book does
        return dout


class _Affine:
    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W, self.b = W, b

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.original_x_shape = x.shape  # the book accepts image tensors and flattens them
        self.x = x.reshape(x.shape[0], -1)
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = np.dot(dout, self.W.T)  # even for the first layer, whose dx nobody uses
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


def _book_softmax(x: np.ndarray) -> np.ndarray:
    # The book works on the transpose so that the shift broadcasts, and takes exp twice.
    x = x.T
    x = x - np.max(x, axis=0)
    return (np.exp(x) / np.sum(np.exp(x), axis=0)).T


def _book_cross_entropy(y: np.ndarray, t: np.ndarray) -> float:
    if t.size == y.size:  # one-hot rows: back to class indices
        t = t.argmax(axis=1)
    n = y.shape[0]
    return -np.sum(np.log(y[np.arange(n), t] + 1e-7)) / n


class _SoftmaxWithLoss:
    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        self.t = t
        self.y = _book_softmax(x)
        self.loss = _book_cross_entropy(self.y, t)
        return self.loss

    def backward(self, dout: float = 1.0) -> np.ndarray:
        n = self.t.shape[0]
        if self.t.size == self.y.size:
            return (self.y - self.t) / n
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1
        return dx / n


class BookStyleNet:
    """The book's layered two-layer ReLU net on NumPy, operation for operation, sharing
    the given weight arrays. Labels are one-hot rows (as the book trains) or indices."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.params = params
        self.layers = OrderedDict()
        self.layers["Affine1"] = _Affine(params["W1"], params["b1"])
        self.layers["Relu1"] = _Relu()
        self.layers["Affine2"] = _Affine(params["W2"], params["b2"])
        self.last_layer = _SoftmaxWithLoss()

    def predict(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x: np.ndarray, t: np.ndarray) -> float:
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x: np.ndarray, t: np.ndarray) -> float:
        y = np.argmax(self.predict(x), axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        return np.sum(y == t) / float(x.shape[0])

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        self.loss(x, t)
        dout = self.last_layer.backward(1.0)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        a1, a2 = self.layers["Affine1"], self.layers["Affine2"]
        return {"W1": a1.dW, "b1": a1.db, "W2": a2.dW, "b2": a2.db}
