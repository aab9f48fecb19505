"""What a net checks at every call, at no cost: which device its arrays are on, their shapes
and dtypes, and that its layers are its own (the trace contract); and, once per numerical
gradient or gradient check, the values of a batch (one read from the device)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

from nnx.errors import InputError
from nnx.layers import ACTIVATIONS, Affine, BatchNormalization, Dropout, SoftmaxWithLoss

Array = Any
F = TypeVar("F", bound=Callable[..., Any])


def on_device(method: F) -> F:
    """Run ``method`` with the net's device current (CuPy computes on the current device)."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.backend.scope():
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class NetChecks:
    """The checks of :class:`~nnx.network.MultiLayerNet`, which provides ``backend``,
    ``xp``, ``sizes``, ``activation``, ``layers``, ``affines``, ``last_layer``, ``n_affine``
    and the chapter-6 switches ``use_batchnorm`` and ``use_dropout``."""

    def check_layers(self) -> None:
        """The trace contract, stated once: the layers are this net's own, Affine (then batch
        norm where the net has it), its activation (then dropout) in turn, then
        SoftmaxWithLoss: the numerical gradient and the gradient check rebuild and trace
        exactly those (the vectorised numerical gradient and the kink report only a net of
        Affine and activation alone: one with batch norm or dropout takes the loop). A net
        whose layers were changed is refused with a sentence, never differentiated as if it
        had not been."""
        act = ACTIVATIONS[self.activation].layer
        hidden = [Affine, *[BatchNormalization] * self.use_batchnorm, act,
                  *[Dropout] * self.use_dropout]
        want = hidden * (self.n_affine - 1) + [Affine]
        own = [layer for layer in self.layers if isinstance(layer, Affine)]
        if [type(layer) for layer in self.layers] != want or own != self.affines \
                or type(self.last_layer) is not SoftmaxWithLoss:
            found = "-".join(type(layer).__name__ for layer in [*self.layers, self.last_layer])
            raise InputError(f"this net's layers ({found}) are not its own Affine and "
                             f"{act.__name__} in turn, which its numerical gradient and the "
                             "gradient check assume; differentiate its loss with the book's "
                             "loop, nnx.numerical_gradient(lambda _: net.loss(x, t), param)")

    @on_device
    def check_values(self, x: Array, t: Array) -> None:
        """The batch checks plus its values: labels in range, no NaN or infinite pixels.

        One read from the device; :class:`InputError` naming the fault.
        """
        self._check_t(x, t)
        xp, n_out = self.xp, self.sizes[-1]
        checks = [xp.all(xp.isfinite(x))]
        if t.ndim == 1 and t.shape[0]:
            checks.insert(0, xp.all((t >= 0) & (t < n_out)))
        ok = self.backend.to_numpy(xp.stack(checks))
        if not ok[0] and len(checks) == 2:
            raise InputError(f"t has labels outside 0..{n_out - 1}")
        if not ok[-1]:
            raise InputError("x contains NaN or infinite values")

    def _check_x(self, x: Array) -> None:
        self.backend.check(x, "x")
        n_in = self.sizes[0]
        if x.ndim < 2 or math.prod(x.shape[1:]) != n_in:
            raise InputError(f"x has shape {tuple(x.shape)}; expected (N, {n_in})")

    def _check_t(self, x: Array, t: Array) -> None:
        self._check_x(x)
        self.backend.check(t, "t")
        n, n_out = x.shape[0], self.sizes[-1]
        if n == 0:
            raise InputError("the batch is empty: x has no rows")
        if t.ndim == 1:
            if t.shape[0] != n:
                raise InputError(f"t has {t.shape[0]} labels for {n} rows of x")
            if not integral(self.xp, t.dtype):
                raise InputError(f"t has dtype {t.dtype}; class indices must be integers")
        elif t.ndim != 2 or tuple(t.shape) != (n, n_out):
            raise InputError(f"t has shape {tuple(t.shape)}; expected ({n},) or ({n}, {n_out})")


_INTEGRAL: dict[tuple, bool] = {}  # (type, dtype) -> is it an integer dtype


def integral(xp: Any, dtype: Any) -> bool:
    key = (type(dtype), dtype)  # the type first: strict dtypes warn when compared to NumPy's
    known = _INTEGRAL.get(key)
    if known is None:
        known = _INTEGRAL[key] = bool(xp.isdtype(dtype, "integral"))
    return known
