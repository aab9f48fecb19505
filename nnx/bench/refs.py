"""Reference implementations to time nnx against (NumPy, CPU only; not part of nnx).

- :func:`fused_step`: forward and backward of the two-layer ReLU net in a dozen NumPy
  lines, nothing cached that is not needed, in place where safe: the floor to compare with;
- :class:`BookStyleNet`: the book's chapter 5 net doing the book's operations, so that it
  costs what the book's code costs: layers in an ``OrderedDict``, a ReLU that masks in
  place, an Affine that reshapes and computes ``dx`` in every layer, the book's softmax
  over the transpose, the cross-entropy with ``log(y + 1e-7)`` of one-hot labels;
- :func:`book_training`, :func:`fused_training`: the book's ``train_neuralnet.py`` (SGD,
  lr 0.1, batches of 100, accuracy on both sets once per epoch) with each.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np


def fused_step(
    W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray, x: np.ndarray, t: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients of Affine-ReLU-Affine-softmax-cross-entropy, labels ``t`` (N,)."""
    n, rows = x.shape[0], np.arange(x.shape[0])
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


class _SoftmaxWithLoss:
    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        self.t = t
        x = x.T  # the book's softmax: on the transpose so that the shift broadcasts
        x = x - np.max(x, axis=0)
        self.y = (np.exp(x) / np.sum(np.exp(x), axis=0)).T
        if t.size == self.y.size:  # one-hot rows: back to class indices
            t = t.argmax(axis=1)
        n = self.y.shape[0]
        self.loss = -np.sum(np.log(self.y[np.arange(n), t] + 1e-7)) / n
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


def init_params(seed: int, hidden: int = 50) -> dict[str, np.ndarray]:
    """The book's initial weights, N(0, 0.01^2), and zero biases (784-hidden-10)."""
    rng = np.random.default_rng(seed)
    return {"W1": 0.01 * rng.standard_normal((784, hidden)), "b1": np.zeros(hidden),
            "W2": 0.01 * rng.standard_normal((hidden, 10)), "b2": np.zeros(10)}


def book_training(data: Any, iters: int, seed: int) -> float:
    """The book's ``train_neuralnet.py``, its data as its loader returns them (float32
    images, one-hot float64 labels); returns the last test accuracy."""
    (x_train, t_train), (x_test, t_test) = data
    t_train, t_test = np.eye(10)[t_train], np.eye(10)[t_test]
    net = BookStyleNet(init_params(seed))
    rng = np.random.default_rng(seed + 1)
    train_size = x_train.shape[0]
    iter_per_epoch = max(train_size / 100, 1)
    for i in range(iters):
        mask = rng.choice(train_size, 100)
        x_batch, t_batch = x_train[mask], t_train[mask]
        grad = net.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= 0.1 * grad[key]
        net.loss(x_batch, t_batch)  # the book records the loss after every update
        if i % iter_per_epoch == 0:
            net.accuracy(x_train, t_train)
            test_acc = net.accuracy(x_test, t_test)
    return float(test_acc)


def fused_training(data: Any, iters: int, seed: int) -> float:
    """The same job written for speed: images made float64 once, integer labels, the
    fused step, feature-major accuracy once per epoch and at the end."""
    (x_train, t_train), (x_test, t_test) = data
    x_train, x_test = x_train.astype(np.float64), x_test.astype(np.float64)
    p = init_params(seed)
    rng = np.random.default_rng(seed + 1)
    per_epoch = max(x_train.shape[0] // 100, 1)

    def accuracy(x: np.ndarray, t: np.ndarray) -> float:
        # Feature-major: on some CPUs the BLAS runs W.T @ x.T faster than x @ W.
        y = p["W2"].T @ np.maximum(p["W1"].T @ x.T + p["b1"][:, None], 0.0) + p["b2"][:, None]
        return float(np.mean(np.argmax(y, axis=0) == t))

    for i in range(iters):
        mask = rng.integers(0, x_train.shape[0], 100)
        grads = fused_step(**p, x=x_train[mask], t=t_train[mask])[1]
        for key in ("W1", "b1", "W2", "b2"):
            p[key] -= 0.1 * grads[key]
        if (i + 1) % per_epoch == 0 or i + 1 == iters:
            accuracy(x_train, t_train)
            test_acc = accuracy(x_test, t_test)
    return test_acc
