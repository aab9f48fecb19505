"""The networks of chapters 4-6: ``TwoLayerNet`` and its deeper sibling ``MultiLayerNet``.

Parameters live in a dict ``{"W1", "b1", "W2", "b2", ...}`` as in the book. Weights are
drawn on the host from a NumPy Generator seeded by ``seed`` and then moved to the
device, so the same seed gives identical initial parameters on every device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from backends import Backend, get_backend
from nnx.errors import InputError
from nnx.functions import relu, sigmoid
from nnx.gradients import numerical_gradient as _loop_gradient
from nnx.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss

Array = Any
ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}
_ACTIVATION_FUNCTIONS = {"relu": relu, "sigmoid": sigmoid}
METHODS = ("vectorized", "loop")
PREDICT_CHUNK = 10_000  # rows per pass of predict_labels: the hidden activations stay small


class MultiLayerNet:
    """Affine -> activation -> ... -> Affine -> SoftmaxWithLoss, with any hidden sizes.

    ``weight_init_std`` is a standard deviation, or "he" (sqrt(2/fan_in), for ReLU) or
    "xavier" (sqrt(1/fan_in), for sigmoid). ``device`` is anything
    :func:`backends.get_backend` accepts, or a backend; ``dtype`` is "float32" or
    "float64" (the default).
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        output_size: int,
        activation: str = "relu",
        weight_init_std: float | str = 0.01,
        device: str | Backend | None = None,
        seed: int | None = None,
        dtype: Any = None,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise InputError(
                f"unknown activation {activation!r}: expected one of {', '.join(ACTIVATIONS)}"
            )
        sizes = [input_size, *hidden_sizes, output_size]
        if any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
            raise InputError(f"layer sizes must be positive integers, got {sizes}")
        self.backend = get_backend(device, dtype)
        self.activation = activation
        self.sizes = sizes
        rng = np.random.default_rng(seed)
        self.params: dict[str, Array] = {}
        for k in range(1, len(sizes)):
            fan_in, fan_out = sizes[k - 1], sizes[k]
            std = _init_std(weight_init_std, fan_in)
            w = rng.standard_normal((fan_in, fan_out)) * std  # float64 on the host
            self.params[f"W{k}"] = self.backend.asarray(w, dtype=self.dtype)
            self.params[f"b{k}"] = self.backend.asarray(np.zeros(fan_out), dtype=self.dtype)
        self._build_layers()

    # -- structure --------------------------------------------------------------
    @property
    def dtype(self) -> Any:
        return self.backend.dtype

    @property
    def xp(self) -> Any:
        return self.backend.xp

    @property
    def n_affine(self) -> int:
        return len(self.sizes) - 1

    def _build_layers(self) -> None:
        self.layers: list[Any] = []
        act = ACTIVATIONS[self.activation]
        for k in range(1, self.n_affine + 1):
            p = self.params
            self.layers.append(Affine(p[f"W{k}"], p[f"b{k}"], input_grad=k > 1))
            if k < self.n_affine:
                self.layers.append(act())
        self.last_layer = SoftmaxWithLoss()

    def _affines(self) -> list[Affine]:
        affines = [layer for layer in self.layers if isinstance(layer, Affine)]
        # Re-read the dict: a user may have replaced an array instead of updating it in place.
        for k, layer in enumerate(affines, start=1):
            layer.W, layer.b = self.params[f"W{k}"], self.params[f"b{k}"]
        return affines

    # -- the book's interface -----------------------------------------------------
    def predict(self, x: Array) -> Array:
        """The logits (scores before softmax) for a batch ``x`` of shape (N, input_size)."""
        self._affines()
        if x.dtype != self.dtype:
            x = self.xp.astype(x, self.dtype)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x: Array, t: Array, *, check: bool = True) -> Array:
        """Mean cross-entropy of the batch, a 0-d array on the device."""
        if check:
            self.check_batch(x, t)
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x: Array, t: Array, *, check: bool = True) -> float:
        """Fraction of the batch whose largest logit is the label."""
        if check:
            self.check_batch(x, t)
        xp = self.xp
        y = self.predict_labels(x)
        if t.ndim != 1:
            t = xp.argmax(t, axis=1)
        return float(xp.sum(xp.astype(y == t, xp.float64))) / x.shape[0]

    def predict_labels(self, x: Array, chunk: int = PREDICT_CHUNK) -> Array:
        """The class of each row of ``x`` (the index of its largest logit), for sets of any size.

        The same arithmetic as :meth:`predict`, without the layers (nothing is cached for a
        backward pass) and ``chunk`` rows at a time. Each product is taken feature-major,
        ``W.T @ x.T``, which the BLAS runs a quarter faster on a CPU than ``x @ W`` when
        thousands of rows meet a narrow ``W``; only the summation order differs.
        """
        xp = self.xp
        x = xp.reshape(x, (x.shape[0], -1)) if x.ndim != 2 else x
        act = _ACTIVATION_FUNCTIONS[self.activation]
        labels = []
        for s in range(0, max(x.shape[0], 1), chunk):  # an empty x gives an empty result
            e = min(s + chunk, x.shape[0])  # the standard leaves out-of-bounds stops undefined
            z = x[s:e, ...].T
            if z.dtype != self.dtype:
                z = xp.astype(z, self.dtype)
            for k in range(1, self.n_affine + 1):
                w, b = self.params[f"W{k}"], self.params[f"b{k}"]
                z = xp.matmul(w.T, z) + b[:, None]
                if k < self.n_affine:
                    z = act(z)
            labels.append(xp.argmax(z, axis=0))
        return labels[0] if len(labels) == 1 else xp.concat(labels)

    def gradient(self, x: Array, t: Array, *, check: bool = True) -> dict[str, Array]:
        """Gradients of :meth:`loss` by backpropagation, keyed like ``params``.

        ``check=False`` skips the argument checks (a training loop checks its data once).
        """
        self.loss(x, t, check=check)
        dout = self.last_layer.backward(1.0)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        grads = {}
        for k, layer in enumerate(self._affines(), start=1):
            grads[f"W{k}"], grads[f"b{k}"] = layer.dW, layer.db
        return grads

    def numerical_gradient(
        self, x: Array, t: Array, method: str = "vectorized", h: float = 1e-4
    ) -> dict[str, Array]:
        """Gradients of :meth:`loss` by central differences, keyed like ``params``.

        ``method="loop"`` is the book's routine, one coordinate at a time; "vectorized"
        computes the same differences for many coordinates at once. The work is done in
        float64 whatever the net's dtype (a float32 difference with h=1e-4 is noise);
        results come back in the net's dtype.
        """
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
        self.check_batch(x, t)
        net = self.astype("float64")
        x64 = self.xp.astype(x, self.xp.float64)
        t64 = self.xp.astype(t, self.xp.float64) if t.ndim == 2 else t
        if method == "loop":
            grads = {
                key: _loop_gradient(lambda _w: net.loss(x64, t64, check=False), param, h)
                for key, param in net.params.items()
            }
        else:
            from nnx.numgrad import layered_numerical_gradient

            grads = layered_numerical_gradient(net, x64, t64, h)
        if self.dtype != self.xp.float64:
            grads = {k: self.xp.astype(g, self.dtype) for k, g in grads.items()}
        return grads

    # -- utilities ----------------------------------------------------------------
    def astype(self, dtype: Any) -> MultiLayerNet:
        """A copy of this net with parameters in ``dtype`` on the same device."""
        be = get_backend(self.backend, dtype)
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.backend = be
        clone.params = {k: be.xp.astype(v, be.dtype, copy=True) for k, v in self.params.items()}
        clone._build_layers()
        return clone

    def check_batch(self, x: Array, t: Array) -> None:
        """Raise :class:`InputError` unless ``x``, ``t`` are a valid batch on this device."""
        be, xp = self.backend, self.xp
        be.check(x, "x")
        be.check(t, "t")
        n_in, n_out = self.sizes[0], self.sizes[-1]
        if x.ndim < 2 or math.prod(x.shape[1:]) != n_in:
            raise InputError(f"x has shape {tuple(x.shape)}; expected (N, {n_in})")
        n = x.shape[0]
        if t.ndim == 1:
            if t.shape[0] != n:
                raise InputError(f"t has {t.shape[0]} labels for {n} rows of x")
            if xp.isdtype(t.dtype, "real floating") or not xp.isdtype(t.dtype, "integral"):
                raise InputError(f"t has dtype {t.dtype}; class indices must be integers")
            if n and (int(xp.min(t)) < 0 or int(xp.max(t)) >= n_out):
                raise InputError(f"t has labels outside 0..{n_out - 1}")
        elif t.ndim == 2:
            if tuple(t.shape) != (n, n_out):
                raise InputError(f"t has shape {tuple(t.shape)}; expected ({n},) or ({n}, {n_out})")
        else:
            raise InputError(f"t has shape {tuple(t.shape)}; expected ({n},) or ({n}, {n_out})")
        if xp.isdtype(x.dtype, "real floating") and not bool(xp.all(xp.isfinite(x))):
            raise InputError("x contains NaN or infinite values")


class TwoLayerNet(MultiLayerNet):
    """The book's network: Affine -> ReLU (or sigmoid) -> Affine -> SoftmaxWithLoss."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        activation: str = "relu",
        weight_init_std: float | str = 0.01,
        device: str | Backend | None = None,
        seed: int | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            input_size, [hidden_size], output_size, activation, weight_init_std, device, seed, dtype
        )


def _init_std(spec: float | str, fan_in: int) -> float:
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
