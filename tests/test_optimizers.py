"""Optimizers of chapter 6 on every backend, against closed forms computed in Python floats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backends import get_backend
from nnx.errors import InputError
from nnx.layers import Affine
from nnx.optimizers import (
    EPS,
    OPTIMIZERS,
    SGD,
    AdaGrad,
    Adam,
    Momentum,
    Nesterov,
    RMSprop,
    make_optimizer,
)
from tests.conftest import assert_on

X0 = [-7.0, 2.0, 0.5, -0.25]
# Three steps' gradients per coordinate, fixed in advance: the update rule alone is tested.
GRADS = [[1.5, -0.5, 3.0, -2.0], [0.25, -1.0, 2.0, 0.75], [-0.5, 0.125, 1.0, 4.0]]


def rtol(backend) -> float:
    return 1e-12 if backend.dtype == backend.xp.float64 else 2e-6


def run_steps(backend, optimizer, grads=GRADS):
    """Apply the fixed gradients one step at a time; host copies of x after each step."""
    params = {"x": backend.asarray(X0, dtype=backend.dtype)}
    path = []
    for g in grads:
        optimizer.update(params, {"x": backend.asarray(g, dtype=backend.dtype)})
        assert_on(backend, params["x"])
        assert params["x"].dtype == backend.dtype
        path.append(np.array(backend.to_numpy(params["x"])))  # a copy: numpy shares memory
    return path


def reference(step):
    """x after each step, coordinate by coordinate in Python floats; ``step(i, x, g, t)``."""
    out, x, state = [], list(X0), [{} for _ in X0]
    for t, g in enumerate(GRADS, start=1):
        x = [step(state[i], x[i], g[i], t) for i in range(len(x))]
        out.append(x)
    return out


def assert_path(backend, got, want):
    # atol: a coordinate that cancels to ~0 carries the rounding error of the scale, |x| ~ 7
    atol = 10 * rtol(backend)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(a, b, rtol=rtol(backend), atol=atol, err_msg=f"step {k + 1}")


# -- the update rules against closed forms ------------------------------------------------
def test_sgd_steps_by_minus_lr_g(backend):
    lr = 0.1
    got = run_steps(backend, SGD(lr=lr))
    # x_k = x0 - lr * (g_0 + ... + g_{k-1})
    want = [
        [X0[i] - lr * sum(GRADS[j][i] for j in range(k + 1)) for i in range(4)] for k in range(3)
    ]
    assert_path(backend, got, want)


def test_momentum_accumulates_a_velocity(backend):
    lr, mu = 0.1, 0.9
    got = run_steps(backend, Momentum(lr=lr, momentum=mu))
    g = np.array(GRADS)
    # v1 = -lr g0, so x1 = x0 - lr g0; x3 = x0 - lr [(1 + mu + mu^2) g0 + (1 + mu) g1 + g2]
    want = [
        [X0[i] - lr * g[0, i] for i in range(4)],
        [X0[i] - lr * ((1 + mu) * g[0, i] + g[1, i]) for i in range(4)],
        [
            X0[i] - lr * ((1 + mu + mu**2) * g[0, i] + (1 + mu) * g[1, i] + g[2, i])
            for i in range(4)
        ],
    ]
    assert_path(backend, got, want)


def test_nesterov_is_the_look_ahead_method_in_shifted_variables(backend):
    lr, mu = 0.1, 0.9

    def classic(s, x, g, t):
        # Classic NAG keeps theta and v; g is the gradient at the look-ahead point
        # theta + mu v, which is what the optimizer's parameter x stands for.
        theta, v = s.get("theta", x), s.get("v", 0.0)
        v = mu * v - lr * g
        theta = theta + v
        s["theta"], s["v"] = theta, v
        return theta + mu * v

    got = run_steps(backend, Nesterov(lr=lr, momentum=mu))
    assert_path(backend, got, reference(classic))
    # and the first step is -(1 + mu) lr g
    assert_path(backend, got[:1], [[X0[i] - (1 + mu) * lr * GRADS[0][i] for i in range(4)]])


def test_adagrad_divides_by_the_root_of_the_summed_squares(backend):
    lr = 0.5

    def adagrad(s, x, g, t):
        s["h"] = s.get("h", 0.0) + g * g
        return x - lr * g / (math.sqrt(s["h"]) + EPS)

    got = run_steps(backend, AdaGrad(lr=lr))
    assert_path(backend, got, reference(adagrad))
    first = [X0[i] - lr * GRADS[0][i] / (abs(GRADS[0][i]) + 1e-7) for i in range(4)]
    assert_path(backend, got[:1], [first])


def test_rmsprop_uses_a_running_mean_of_squares(backend):
    lr, rho = 0.01, 0.99

    def rmsprop(s, x, g, t):
        s["h"] = rho * s.get("h", 0.0) + (1 - rho) * g * g
        return x - lr * g / (math.sqrt(s["h"]) + EPS)

    got = run_steps(backend, RMSprop(lr=lr, decay_rate=rho))
    assert_path(backend, got, reference(rmsprop))
    # first step: lr g / (sqrt(1 - rho) |g|) = lr sign(g) / sqrt(1 - rho) = 10 lr sign(g)
    step = np.asarray(X0) - got[0]
    np.testing.assert_allclose(step, 10 * lr * np.sign(GRADS[0]), rtol=1e-5)


def test_adam_bias_corrected_steps(backend):
    lr, b1, b2 = 0.01, 0.9, 0.999

    def adam(s, x, g, t):
        # Kingma & Ba, section 2: alpha_t = alpha sqrt(1 - b2^t) / (1 - b1^t),
        # x -= alpha_t m / (sqrt(v) + eps)
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        return x - alpha * s["m"] / (math.sqrt(s["v"]) + EPS)

    opt = Adam(lr=lr, beta1=b1, beta2=b2)
    got = run_steps(backend, opt)
    assert opt.iter == 3
    assert_path(backend, got, reference(adam))
    # The first step moves every coordinate by ~lr against the sign of its gradient.
    step = np.asarray(X0) - got[0]
    np.testing.assert_allclose(step, lr * np.sign(GRADS[0]), rtol=1e-4)


def test_a_zero_gradient_leaves_adaptive_methods_finite(backend):
    # sqrt(h) = 0 there: the epsilon keeps 0/0 away.
    for opt in (AdaGrad(), RMSprop(), Adam()):
        params = {"x": backend.asarray([1.0, 2.0], dtype=backend.dtype)}
        for _ in range(2):
            opt.update(params, {"x": backend.xp.zeros_like(params["x"])})
        np.testing.assert_array_equal(backend.to_numpy(params["x"]), [1.0, 2.0])


# -- in place, on the device ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_update_is_in_place_and_state_lives_on_the_device(backend, name):
    xp = backend.xp
    W = backend.asarray(np.arange(6.0).reshape(2, 3) / 10, dtype=backend.dtype)
    b = backend.asarray([0.0, 0.1, 0.2], dtype=backend.dtype)
    params = {"W": W, "b": b}
    layer = Affine(params["W"], params["b"])  # holds references, as the networks' layers do
    x = backend.asarray([[1.0, -1.0]], dtype=backend.dtype)
    before = backend.to_numpy(layer.forward(x))
    grads = {"W": xp.ones_like(W), "b": xp.ones_like(b)}
    opt = make_optimizer(name, lr=0.1)
    opt.update(params, grads)
    assert params["W"] is W and params["b"] is b
    assert layer.W is W and layer.b is b
    after = backend.to_numpy(layer.forward(x))
    assert not np.allclose(before, after), "the layer does not see the update"
    assert_on(backend, W, b, *grads.values())
    np.testing.assert_array_equal(backend.to_numpy(grads["W"]), np.ones((2, 3)))  # untouched
    for attr in ("v", "h", "m"):
        for state in getattr(opt, attr, {}).values():
            assert_on(backend, state)
            assert state.dtype == backend.dtype


# -- convergence --------------------------------------------------------------------------------
# The book's figure 6-8 rates (Nesterov and RMSprop: rates that suit this function).
RATES = {"sgd": 0.95, "momentum": 0.1, "nesterov": 0.1, "adagrad": 1.5, "rmsprop": 0.1, "adam": 0.3}


@pytest.mark.parametrize("name", sorted(RATES))
def test_each_optimizer_minimises_the_books_function(backend, name):
    # f(x, y) = x^2/20 + y^2 from (-7, 2); its gradient is (x/10, 2y). After 200 steps all
    # six are within 1e-3 of the minimum (the slowest, Adam, ends near 2e-4).
    params = {
        "x": backend.asarray([-7.0], dtype=backend.dtype),
        "y": backend.asarray([2.0], dtype=backend.dtype),
    }
    opt = make_optimizer(name, lr=RATES[name])
    for _ in range(200):
        opt.update(params, {"x": params["x"] / 10, "y": 2 * params["y"]})
    assert_on(backend, *params.values())
    x, y = (float(backend.to_numpy(params[k])[0]) for k in ("x", "y"))
    assert abs(x) < 1e-3 and abs(y) < 1e-3, (x, y)
    assert x**2 / 20 + y**2 < 1e-6


# -- hyper-parameters ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "hyper", "word"),
    [
        (SGD, {"lr": 0.0}, "lr"),
        (SGD, {"lr": -0.1}, "lr"),
        (SGD, {"lr": float("nan")}, "lr"),
        (SGD, {"lr": float("inf")}, "lr"),
        (SGD, {"lr": "0.1"}, "lr"),
        (SGD, {"lr": True}, "lr"),
        (AdaGrad, {"lr": -1}, "lr"),
        (Momentum, {"momentum": 1.0}, "momentum"),
        (Momentum, {"momentum": 1.5}, "momentum"),
        (Momentum, {"momentum": -0.1}, "momentum"),
        (Nesterov, {"momentum": float("nan")}, "momentum"),
        (RMSprop, {"decay_rate": 1.0}, "decay_rate"),
        (RMSprop, {"decay_rate": -0.5}, "decay_rate"),
        (Adam, {"beta1": 1.0}, "beta1"),
        (Adam, {"beta2": -0.1}, "beta2"),
        (Adam, {"beta2": 2}, "beta2"),
        (Adam, {"lr": 0}, "lr"),
    ],
)
def test_invalid_hyperparameters_are_one_sentence(cls, hyper, word):
    for make in (lambda: cls(**hyper), lambda: make_optimizer(cls.name, **hyper)):
        with pytest.raises(InputError) as info:
            make()
        message = str(info.value)
        assert message.startswith(word) and "\n" not in message
        assert repr(next(iter(hyper.values()))) in message


def test_boundary_values_are_accepted():
    assert Momentum(momentum=0.0).momentum == 0.0
    assert Adam(beta1=0, beta2=0.0).beta2 == 0.0
    assert SGD(lr=np.float32(0.5)).lr == 0.5


def test_unknown_optimizer_lists_the_accepted_names():
    with pytest.raises(InputError) as info:
        make_optimizer("adamw")
    message = str(info.value)
    assert "'adamw'" in message and "\n" not in message
    for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"):
        assert name in message


def test_unknown_hyperparameter_names_what_the_optimizer_takes():
    with pytest.raises(InputError, match=r"'sgd' has no hyper-parameter 'momentum'.*takes lr$"):
        make_optimizer("sgd", lr=0.1, momentum=0.9)
    with pytest.raises(InputError, match="'beta1'"):
        make_optimizer("rmsprop", beta1=0.9)


def test_make_optimizer_names_defaults_and_none():
    assert set(OPTIMIZERS) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    opt = make_optimizer(" Adam ", lr=None, beta1=0.8)
    assert isinstance(opt, Adam)
    assert opt.hyperparameters == {"lr": 0.001, "beta1": 0.8, "beta2": 0.999}
    assert repr(make_optimizer("momentum")) == "Momentum(lr=0.01, momentum=0.9)"
    assert make_optimizer("RMSprop").decay_rate == 0.99


def test_missing_gradient_is_a_clear_error(backend):
    params = {"W": backend.asarray([1.0]), "b": backend.asarray([0.0])}
    with pytest.raises(InputError, match="grads has no entry for parameter 'b'"):
        SGD().update(params, {"W": backend.asarray([1.0])})


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_gradients_from_another_device_are_one_sentence_and_change_nothing(backend, name):
    other = get_backend("strict" if backend.numpy_native else "cpu")
    params = {"W": backend.asarray([1.0, 2.0]), "b": backend.asarray([0.5])}
    grads = {"W": other.asarray([0.1, 0.1]), "b": backend.asarray([0.1])}
    with pytest.raises(InputError, match=r"^grads\['W'\] is not on the device of params\['W'\]"):
        make_optimizer(name).update(params, grads)
    np.testing.assert_array_equal(backend.to_numpy(params["W"]), [1.0, 2.0])
    np.testing.assert_array_equal(backend.to_numpy(params["b"]), [0.5])


def test_sgd_on_scratch_gradients_takes_the_same_step(backend):
    rng = np.random.default_rng(3)
    w, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    plain = {"W": backend.asarray(w, dtype=backend.dtype)}
    scratch = {"W": backend.asarray(w, dtype=backend.dtype)}
    SGD(lr=0.3).update(plain, {"W": backend.asarray(g, dtype=backend.dtype)})
    SGD(lr=0.3).update(scratch, {"W": backend.asarray(g, dtype=backend.dtype)}, scratch=True)
    assert np.array_equal(backend.to_numpy(plain["W"]), backend.to_numpy(scratch["W"]))
