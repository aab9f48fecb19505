"""The optimizers of chapter 6, with the book's interface: ``update(params, grads)``.

``params`` and ``grads`` are dicts of arrays with the same keys (``{"W1": ..., "b1": ...}``).
``update`` changes every ``params[key]`` in place, so layers holding a reference to the
array see the new values. State (velocities, squared-gradient sums, moments) is created
lazily with ``xp.zeros_like(param)``, so it lives on the parameter's device and in its
dtype. Only Array API standard functions are used: the same code runs on NumPy, CuPy and
array-api-strict. Typical use::

    opt = make_optimizer("adam", lr=0.01)
    for x, t in batches:
        opt.update(net.params, net.gradient(x, t))
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, MutableMapping
from typing import Any, ClassVar

from backends import device_scope, xp_of
from nnx.errors import InputError, positive_number, unit_interval

Array = Any
Params = MutableMapping[str, Array]
Grads = Mapping[str, Array]

EPS = 1e-7  # the book's epsilon, added to the root of the squared-gradient estimate


class Optimizer:
    """Base class: ``update(params, grads)`` moves each ``params[key]`` in place.

    A subclass's hyper-parameters are its constructor's arguments, with their defaults
    (:func:`hyperparameters_of`): the one list of them, which :func:`make_optimizer` and
    the programs' flags read.
    """

    name: ClassVar[str] = ""
    def __init__(self, lr: float) -> None:
        self.lr = positive_number("lr", lr)

    def update(self, params: Params, grads: Grads, *, scratch: bool = False) -> None:
        """Apply one step to every array in ``params``, in place, using ``grads``.

        Runs on the parameters' device (CuPy makes state and runs kernels on the current
        device, which need not be theirs). ``scratch=True`` lets the step use the gradient
        arrays' memory (a training loop's own gradients, never read again): the same
        numbers with fewer temporaries.
        """
        for key in params:
            if key not in grads:
                raise InputError(f"grads has no entry for parameter {key!r}")
            g, p = grads[key], params[key]
            if type(g) is not type(p) or getattr(g, "device", None) != getattr(p, "device", None):
                raise InputError(f"grads[{key!r}] is not on the device of params[{key!r}]: "
                                 "move it there with backend.asarray()")
        with device_scope(next(iter(params.values()), None)):
            self._step(params, grads, scratch)

    def state_dict(self) -> dict[str, Any]:
        """The state as ``{"SLOT/KEY": array, "iter": n}`` (slots: v, h, m), for a checkpoint."""
        out: dict[str, Any] = {}
        for slot, value in vars(self).items():
            if isinstance(value, dict):
                out.update({f"{slot}/{k}": a for k, a in value.items()})
        if hasattr(self, "iter"):
            out["iter"] = self.iter
        return out

    def load_state_dict(self, state: Mapping[str, Any], asarray: Any) -> None:
        """Restore :meth:`state_dict`'s output; ``asarray`` moves host arrays to the device."""
        for name, value in state.items():
            if name == "iter":
                self.iter = int(value)
                continue
            slot, _, key = name.partition("/")
            if not isinstance(getattr(self, slot, None), dict):
                raise InputError(f"{type(self).__name__} has no state {slot!r} to restore")
            getattr(self, slot)[key] = asarray(value)

    def _step(self, params: Params, grads: Grads, scratch: bool = False) -> None:
        raise NotImplementedError

    @property
    def hyperparameters(self) -> dict[str, float]:
        """The hyper-parameters as given (validated), by name."""
        return {k: getattr(self, k) for k in hyperparameters_of(type(self))}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent: ``W -= lr * dW``."""

    name = "sgd"

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)

    def _step(self, params: Params, grads: Grads, scratch: bool = False) -> None:
        """``params[key] -= lr * grads[key]`` for every key, in place."""
        for key in params:
            g = grads[key]
            if scratch:  # lr * g into g's own memory: no temporary
                g *= self.lr
                params[key] -= g
            else:
                params[key] -= self.lr * g


class Momentum(Optimizer):
    """Momentum: ``v = momentum * v - lr * dW; W += v`` (``v`` starts at zero)."""

    name = "momentum"

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = unit_interval("momentum", momentum)
        self.v: dict[str, Array] = {}

    def _step(self, params: Params, grads: Grads, scratch: bool = False) -> None:
        """One momentum step for every key; the velocity ``v[key]`` lives beside the param."""
        for key in params:
            v = _state(self.v, key, params[key])
            v *= self.momentum
            v -= self.lr * grads[key]
            params[key] += v


class Nesterov(Optimizer):
    """Nesterov's accelerated gradient, in the form that needs only the gradient at W.

    With ``v`` the velocity before the step: ``W += momentum**2 * v - (1 + momentum) * lr
    * dW``, then ``v = momentum * v - lr * dW``. This is the classic look-ahead method
    (gradient taken at ``theta + momentum * v``) written for ``W = theta + momentum * v``
    (Bengio et al. 2012, arXiv:1212.0901). The book's code applies ``momentum**2`` to the
    velocity *after* updating it, which takes a slightly longer step than this.
    """

    name = "nesterov"

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = unit_interval("momentum", momentum)
        self.v: dict[str, Array] = {}

    def _step(self, params: Params, grads: Grads, scratch: bool = False) -> None:
        """One Nesterov step for every key, in place."""
        mu = self.momentum
        for key in params:
            v = _state(self.v, key, params[key])
            step = self.lr * grads[key]
            # W += mu * v_new - lr * dW, with v_new = mu * v - lr * dW
            v *= mu
            v -= step
            params[key] += mu * v - step


class AdaGrad(Optimizer):
    """AdaGrad: ``h += dW * dW; W -= lr * dW / (sqrt(h) + 1e-7)``."""

    name = "adagrad"

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)
        self.h: dict[str, Array] = {}

    def _step(self, params: Params, grads: Grads, scratch: bool = False) -> None:
        """One AdaGrad step for every key; ``h[key]`` sums the squared gradients."""
        for key in params:
            g = grads[key]
            h = _state(self.h, key, params[key])
            h += g * g
            params[key] -= self.lr * g / (xp_of(h).sqrt(h) + EPS)


class RMSprop(Optimizer):
    """RMSprop: AdaGrad with a running mean of dW**2 instead of a sum.

    ``h = decay_rate * h + (1 - decay_rate) * dW * dW; W -= lr * dW / (sqrt(h) + 1e-7)``.
    """

    name = "rmsprop"

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        super().__init__(lr)
        self.decay_rate = unit_interval("decay_rate", decay_rate)
        self.h: dict[str, Array] = {}

    def _step(self, params: Params, grads: Grads, scratch: bool = False) -> None:
        """One RMSprop step for every key; ``h[key]`` is the running mean of dW**2."""
        for key in params:
            g = grads[key]
            h = _state(self.h, key, params[key])
            h *= self.decay_rate
            h += (1.0 - self.decay_rate) * (g * g)
            params[key] -= self.lr * g / (xp_of(h).sqrt(h) + EPS)


class Adam(Optimizer):
    """Adam (Kingma & Ba, arXiv:1412.6980), in the book's form.

    ``m`` and ``v`` are running means of dW and dW**2; the bias correction is folded into
    the step size, ``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)``, and
    ``W -= lr_t * m / (sqrt(v) + 1e-7)``. The first step moves each coordinate by about
    ``lr`` in the direction of ``-sign(dW)``.
    """

    name = "adam"

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        super().__init__(lr)
        self.beta1 = unit_interval("beta1", beta1)
        self.beta2 = unit_interval("beta2", beta2)
        self.iter = 0
        self.m: dict[str, Array] = {}
        self.v: dict[str, Array] = {}

    def _step(self, params: Params, grads: Grads, scratch: bool = False) -> None:
        """One Adam step for every key, in place; ``iter`` counts the calls."""
        self.iter += 1
        b1, b2 = self.beta1, self.beta2
        lr_t = self.lr * math.sqrt(1.0 - b2**self.iter) / (1.0 - b1**self.iter)
        for key in params:
            g = grads[key]
            m = _state(self.m, key, params[key])
            v = _state(self.v, key, params[key])
            m += (1.0 - b1) * (g - m)
            v += (1.0 - b2) * (g * g - v)
            params[key] -= lr_t * m / (xp_of(v).sqrt(v) + EPS)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)
}


def hyperparameters_of(cls: type[Optimizer]) -> dict[str, Any]:
    """The hyper-parameters of an optimizer class and their defaults, from its constructor."""
    return {p.name: p.default for p in inspect.signature(cls).parameters.values()}


def make_optimizer(name: str, **hyper: float | None) -> Optimizer:
    """The optimizer called ``name`` (case-insensitive, a key of :data:`OPTIMIZERS`).

    Hyper-parameters given as ``None`` take the optimizer's default, so a caller can pass
    ``lr=config.lr`` whether or not the user set it. Raises :class:`InputError` for an
    unknown name, a hyper-parameter that optimizer does not take, or an invalid value.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    cls = OPTIMIZERS.get(key) if isinstance(key, str) else None
    if cls is None:
        raise InputError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")
    takes = hyperparameters_of(cls)
    unknown = [k for k in hyper if k not in takes]
    if unknown:
        raise InputError(
            f"optimizer {key!r} has no hyper-parameter {unknown[0]!r}: "
            f"it takes {', '.join(takes)}"
        )
    return cls(**{k: v for k, v in hyper.items() if v is not None})


# -- helpers -----------------------------------------------------------------------------
def _state(store: dict[str, Array], key: str, like: Array) -> Array:
    """``store[key]``, created as zeros like the parameter (same device and dtype)."""
    s = store.get(key)
    if s is None:
        s = store[key] = xp_of(like).zeros_like(like)
    return s
