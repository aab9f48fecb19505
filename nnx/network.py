"""The networks of chapters 4-6: ``TwoLayerNet`` and its deeper sibling ``MultiLayerNet``.

Parameters live in a dict ``{"W1", "b1", "W2", "b2", ...}`` as in the book. Weights are
drawn on the host from a NumPy Generator seeded by ``seed`` and then moved to the
device, so the same seed gives identical initial parameters on every device.

There is one forward pass, through the layers (:meth:`MultiLayerNet.predict`):
:meth:`~MultiLayerNet.predict_labels`, :meth:`~MultiLayerNet.trace` (which the numerical
gradient and the gradient check read) and the loss all run it. Each call checks what
costs nothing -- which device its arrays are on, their shapes and dtypes -- and reads no
value back from the device; the values of a data set (label range, finite pixels) are
checked where the data enter (the loader, :func:`nnx.training.train`, the CLI).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from backends import Backend, get_backend
from nnx.errors import InputError, check_dropout, check_weight_decay, one_of
from nnx.initialization import generator, init_std
from nnx.layers import ACTIVATIONS, Affine, BatchNormalization, Dropout, SoftmaxWithLoss
from nnx.netchecks import NetChecks
from nnx.netchecks import on_device as _on_device

Array = Any
F = TypeVar("F", bound=Callable[..., Any])
METHODS = ("vectorized", "loop")
PREDICT_CHUNK = 10_000  # rows per pass of predict_labels: the hidden activations stay small


class MultiLayerNet(NetChecks):
    """Affine -> activation -> ... -> Affine -> SoftmaxWithLoss, with any hidden sizes.

    ``weight_init_std`` is a standard deviation, or "he" (sqrt(2/fan_in), for ReLU) or
    "xavier" (sqrt(1/fan_in), for sigmoid). ``device`` is anything
    :func:`backends.get_backend` accepts, or a backend; ``dtype`` is "float32" or
    "float64" (the default).

    Chapter 6, as the book's ``MultiLayerNetExtend`` (the defaults leave the net as above):
    ``weight_decay_lambda`` adds ``lambda/2 * sum(W**2)`` over every weight matrix to the loss
    (and ``lambda * W`` to its gradient); ``use_batchnorm`` puts a
    :class:`~nnx.layers.BatchNormalization` (parameters ``gamma{k}``, ``beta{k}``) after each
    hidden Affine; ``use_dropout`` a :class:`~nnx.layers.Dropout` of ``dropout_ratio`` after
    each hidden activation, its masks drawn from the seed's Generator after the weights.
    ``predict``, ``loss``, ``accuracy`` run in inference mode unless ``train_flg``; ``gradient``
    in training mode.
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        output_size: int,
        activation: str = "relu",
        weight_init_std: float | str = 0.01,
        device: str | Backend | None = None,
        seed: Any = None,
        dtype: Any = None,
        *,
        weight_decay_lambda: float = 0.0,
        use_dropout: bool = False,
        dropout_ratio: float = 0.5,
        use_batchnorm: bool = False,
    ) -> None:
        one_of("activation", activation, ACTIVATIONS)
        self.weight_decay_lambda = check_weight_decay(weight_decay_lambda)
        self.dropout_ratio = check_dropout(dropout_ratio)
        self.use_dropout, self.use_batchnorm = bool(use_dropout), bool(use_batchnorm)
        sizes = [input_size, *hidden_sizes, output_size]
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
               for s in sizes):
            raise InputError(f"layer sizes must be positive integers, got {sizes}")
        self.backend = get_backend(device, dtype)
        self.activation = activation
        self.sizes = [int(s) for s in sizes]
        rng = generator(seed)
        self.params: dict[str, Array] = {}
        for k in range(1, len(sizes)):
            fan_in, fan_out = sizes[k - 1], sizes[k]
            std = init_std(weight_init_std, fan_in)
            w = rng.standard_normal((fan_in, fan_out)) * std  # float64 on the host
            self.params[f"W{k}"] = self.backend.asarray(w, dtype=self.dtype)
            self.params[f"b{k}"] = self.backend.asarray(np.zeros(fan_out), dtype=self.dtype)
            if self.use_batchnorm and k < len(sizes) - 1:
                self.params[f"gamma{k}"] = self.backend.asarray(np.ones(fan_out), dtype=self.dtype)
                self.params[f"beta{k}"] = self.backend.asarray(np.zeros(fan_out), dtype=self.dtype)
        self.mask_rng = rng  # dropout's masks continue the weights' stream
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

    def describe(self) -> str:
        """E.g. "784-50-10 relu net"."""
        return f"{'-'.join(map(str, self.sizes))} {self.activation} net"

    @property
    def extended(self) -> bool:
        """Whether the net has layers beyond Affine and activation (batch norm, dropout)."""
        return bool(self.batchnorms or self.dropouts)

    def _build_layers(self) -> None:
        self.layers: list[Any] = []
        self.affines: list[Affine] = []
        self.batchnorms: dict[int, BatchNormalization] = {}
        self.dropouts: list[Dropout] = []
        act = ACTIVATIONS[self.activation].layer
        for k in range(1, self.n_affine + 1):
            self.affines.append(Affine(self.params[f"W{k}"], self.params[f"b{k}"],
                                       input_grad=k > 1))
            self.layers.append(self.affines[-1])
            if k < self.n_affine:
                if self.use_batchnorm:
                    self.batchnorms[k] = BatchNormalization(self.params[f"gamma{k}"],
                                                            self.params[f"beta{k}"])
                    self.layers.append(self.batchnorms[k])
                self.layers.append(act())
                if self.use_dropout:
                    self.dropouts.append(Dropout(self.dropout_ratio, self.mask_rng,
                                                 self._mask_to_device))
                    self.layers.append(self.dropouts[-1])
        self.last_layer = SoftmaxWithLoss()

    def _mask_to_device(self, mask: np.ndarray) -> Array:
        return self.backend.asarray(mask, dtype=self.dtype)

    def hold_masks(self, hold: bool = True) -> None:
        """Keep each dropout mask once drawn (``hold``), or draw anew at every training pass."""
        for layer in self.dropouts:
            layer.hold = hold
            if not hold:
                layer.mask = None

    def buffers(self) -> dict[str, Array]:
        """The batch norms' running statistics, ``running_mean{k}`` and ``running_var{k}``."""
        out = {}
        for k, layer in self.batchnorms.items():
            out[f"running_mean{k}"], out[f"running_var{k}"] = layer.running_mean, layer.running_var
        return out

    def load_buffers(self, values: dict[str, Array]) -> None:
        """Set the running statistics from ``values`` (keyed as :meth:`buffers`)."""
        for k, layer in self.batchnorms.items():
            layer.running_mean = values[f"running_mean{k}"]
            layer.running_var = values[f"running_var{k}"]

    # -- the book's interface -----------------------------------------------------
    @_on_device
    def predict(self, x: Array, train_flg: bool = False) -> Array:
        """The logits (scores before softmax) for a batch ``x`` of shape (N, input_size)."""
        self._check_x(x)
        return self._forward(x, train_flg)

    def _forward(self, x: Array, train_flg: bool = False) -> Array:  # checked, on the device
        # Re-read the dict: a user may have replaced an array instead of updating it in place.
        for k, layer in enumerate(self.affines, start=1):
            layer.W, layer.b = self.params[f"W{k}"], self.params[f"b{k}"]
        for k, layer in self.batchnorms.items():
            layer.gamma, layer.beta = self.params[f"gamma{k}"], self.params[f"beta{k}"]
        if x.dtype != self.dtype:
            x = self.xp.astype(x, self.dtype)
        if not self.extended:
            for layer in self.layers:
                x = layer.forward(x)
            return x
        for layer in self.layers:
            if isinstance(layer, (Dropout, BatchNormalization)):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    @_on_device
    def loss(self, x: Array, t: Array, train_flg: bool = False) -> Array:
        """Mean cross-entropy of the batch (plus the weight decay), a 0-d array on the device."""
        self._check_t(x, t)
        loss = self.last_layer.forward(self._forward(x, train_flg), t)
        if self.weight_decay_lambda:
            xp = self.xp
            decay = sum(xp.sum(layer.W * layer.W) for layer in self.affines)
            loss = loss + 0.5 * self.weight_decay_lambda * decay
        return loss

    @_on_device
    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Gradients of :meth:`loss` (in training mode) by backpropagation, keyed like
        ``params``; ``last_layer.loss`` is the batch's cross-entropy, without the decay."""
        self._check_t(x, t)
        self.last_layer.forward(self._forward(x, True), t)
        dout = self.last_layer.backward(1.0)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        grads = {}
        lam = self.weight_decay_lambda
        for k, layer in enumerate(self.affines, start=1):
            grads[f"W{k}"] = layer.dW + lam * layer.W if lam else layer.dW
            grads[f"b{k}"] = layer.db
            if k in self.batchnorms:
                grads[f"gamma{k}"] = self.batchnorms[k].dgamma
                grads[f"beta{k}"] = self.batchnorms[k].dbeta
        return grads

    @_on_device
    def accuracy(self, x: Array, t: Array) -> float:
        """Fraction of the rows whose largest logit is the label (one read from the device)."""
        self._check_t(x, t)
        xp = self.xp
        if t.ndim != 1:
            t = xp.argmax(t, axis=1)
        return int(xp.count_nonzero(self.predict_labels(x) == t)) / max(x.shape[0], 1)

    @_on_device
    def predict_labels(self, x: Array, chunk: int = PREDICT_CHUNK) -> Array:
        """The class of each row of ``x`` (the index of its largest logit), ``chunk`` rows
        at a time, so sets of any size fit: the forward pass of :meth:`predict`."""
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise InputError(f"chunk must be a positive integer, got {chunk!r}")
        self._check_x(x)
        labels = []
        for s in range(0, max(x.shape[0], 1), chunk):  # an empty x gives an empty result
            e = min(s + chunk, x.shape[0])  # the standard leaves out-of-bounds stops undefined
            labels.append(self.xp.argmax(self._forward(x[s:e, ...]), axis=1))
        return labels[0] if len(labels) == 1 else self.xp.concat(labels)

    @_on_device
    def trace(self, x: Array) -> list[tuple[Array, Array]]:
        """One forward pass; the (input, output) of every Affine layer, in order.

        The input is flattened to (N, fan_in); the last output is the logits. What the
        vectorised numerical gradient and the gradient check's kink report build on: the
        trace contract of :meth:`check_layers`.
        """
        self.check_layers()
        self._check_x(x)
        self._forward(x)
        return [(layer.x, layer.out) for layer in self.affines]

    @_on_device
    def numerical_gradient(
        self, x: Array, t: Array, method: str = "vectorized", h: float = 1e-4,
        *, stop: Callable[[], bool] | None = None,
    ) -> dict[str, Array]:
        """Gradients of :meth:`loss` by central differences, keyed like ``params``.

        ``method="loop"`` is the book's routine, one coordinate at a time; "vectorized"
        computes the same differences for many coordinates at once. The work is done in
        float64 whatever the net's dtype (a float32 difference with h=1e-4 is noise);
        results come back in the net's dtype. The batch's values are checked first (one
        read from the device): this is seconds of work, not a training step. ``stop`` is
        polled as it goes; when it returns true, ``KeyboardInterrupt`` ends the computation
        (this net is left unchanged: the work is done on a copy).
        """
        from nnx import numerical

        one_of("method", method, METHODS)
        self.check_layers()  # the float64 copy below is built from the net's own layers
        if method == "vectorized" and self.extended:
            warnings.warn(VECTORIZED_FALLBACK, NumericalFallback, stacklevel=3)
            method = "loop"
        if not self.backend.float64:
            raise InputError(f"the numerical gradient computes in float64, which {self.backend} "
                             "does not have; compute it on another device (--device cpu)")
        self.check_values(x, t)
        net = self.astype("float64")
        x64 = self.xp.astype(x, self.xp.float64)
        t64 = self.xp.astype(t, self.xp.float64) if t.ndim == 2 else t
        if method == "loop":
            if net.dropouts and not net.dropouts[0].hold:
                net.hold_masks()  # one mask for every step: the loss must be one function
                net.loss(x64, t64, train_flg=True)
            grads = {key: numerical.numerical_gradient(
                lambda _w: net.loss(x64, t64, train_flg=True), param, h, stop=stop)
                     for key, param in net.params.items()}
        else:
            grads = numerical.layered_numerical_gradient(net, x64, t64, h, stop=stop)
            for k, layer in enumerate(net.affines, start=1):  # d/dW of lambda/2 W**2
                if self.weight_decay_lambda:
                    grads[f"W{k}"] = grads[f"W{k}"] + self.weight_decay_lambda * layer.W
        if self.dtype != self.xp.float64:
            grads = {k: self.xp.astype(g, self.dtype) for k, g in grads.items()}
        return grads

    # -- utilities ----------------------------------------------------------------
    @_on_device
    def astype(self, dtype: Any) -> MultiLayerNet:
        """A copy of this net with parameters in ``dtype`` on the same device."""
        be = get_backend(self.backend, dtype)
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.backend = be
        clone.params = {k: be.xp.astype(v, be.dtype, copy=True) for k, v in self.params.items()}
        clone._build_layers()
        clone.load_buffers({k: be.xp.astype(v, be.dtype, copy=True)
                            for k, v in self.buffers().items()})
        for mine, theirs in zip(self.dropouts, clone.dropouts, strict=True):
            theirs.hold = mine.hold
            if mine.mask is not None:
                theirs.mask = be.xp.astype(mine.mask, be.dtype, copy=True)
        return clone



VECTORIZED_FALLBACK = ("the vectorised numerical gradient covers nets of Affine and "
                       "activation layers only, so this net's batch normalization or dropout "
                       "is differentiated by the book's one-coordinate loop")


class NumericalFallback(UserWarning):
    """The numerical gradient used the loop method instead of the vectorised one."""


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
        seed: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            input_size, [hidden_size], output_size, activation, weight_init_std, device, seed, dtype
        )


