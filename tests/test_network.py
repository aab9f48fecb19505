"""The networks: backprop against an independent autodiff engine, the book's gradient check on
real MNIST, the vectorised numerical gradient against the book's loop, initialisation, and
the errors a user can cause."""

from __future__ import annotations

import functools

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from backends import BackendError, get_backend
from nnx.errors import InputError
from nnx.gradcheck import gradient_check
from nnx.mnist import load_mnist
from nnx.network import MultiLayerNet, TwoLayerNet
from nnx.numerical import numerical_gradient
from tests.conftest import assert_on

# The book's init (std 0.01) with this seed puts a few pre-activations of the first three
# training images within h of a ReLU kink: the exclusion of kinks is exercised on real data.
SEED = 13
SMALL = {"2-layer": (12, [6], 4), "3-layer": (12, [6, 5], 4)}


def _lane_dtype(backend) -> str:
    return "float32" if backend.dtype == backend.xp.float32 else "float64"


def _randomise(net, seed: int, scale: float = 0.5) -> dict[str, np.ndarray]:
    """Random weights *and* biases (init leaves biases 0), set on the net; returns host copies."""
    rng = np.random.default_rng(seed)
    host = {k: rng.standard_normal(tuple(p.shape)) * scale for k, p in net.params.items()}
    for k, v in host.items():
        net.params[k] = net.backend.asarray(v, dtype=net.dtype)
    return host


def _batch(backend, n_in: int, n_out: int, n: int, labels: str, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in))
    idx = rng.integers(0, n_out, n)
    t = backend.asarray(idx) if labels == "index" else backend.asarray(
        np.eye(n_out)[idx], dtype=backend.dtype
    )
    return backend.asarray(x, dtype=backend.dtype), t, x, np.eye(n_out)[idx]


# -- (a) backprop against autograd ------------------------------------------------------


def _reference_loss(params, x, t, activation, n_affine):
    """The book's net written from its definitions in autograd.numpy, independently of nnx."""
    z = x
    for k in range(1, n_affine + 1):
        a = anp.dot(z, params[f"W{k}"]) + params[f"b{k}"]
        if k < n_affine:
            z = anp.maximum(a, 0.0) if activation == "relu" else 1.0 / (1.0 + anp.exp(-a))
    log_p = a - anp.log(anp.sum(anp.exp(a), axis=1, keepdims=True))
    return -anp.sum(t * log_p) / x.shape[0]


@pytest.mark.parametrize("labels", ["index", "one-hot"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("shape", [(12, [7], 5), (10, [8, 6, 7], 4)], ids=["1-hidden", "3-hidden"])
def test_backprop_equals_autograd(backend64, shape, activation, labels):
    n_in, hidden, n_out = shape
    net = MultiLayerNet(n_in, hidden, n_out, activation, device=backend64, seed=0)
    host = _randomise(net, seed=2)
    x, t, x_host, t_host = _batch(backend64, n_in, n_out, 6, labels)
    grads = net.gradient(x, t)
    assert_on(backend64, *grads.values())
    expected = grad(_reference_loss)(host, x_host, t_host, activation, len(hidden) + 1)
    assert set(grads) == set(expected)
    for key, want in expected.items():
        got = backend64.to_numpy(grads[key])
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) <= 1e-11 * np.max(np.abs(want)), key
    loss = float(net.loss(x, t))
    assert abs(loss - _reference_loss(host, x_host, t_host, activation, len(hidden) + 1)) <= 1e-13


# -- (b) the book's check on real MNIST -------------------------------------------------


@functools.lru_cache(maxsize=1)
def _mnist3(directory: str) -> tuple[np.ndarray, np.ndarray]:
    (x, t), _ = load_mnist(data_dir=directory, download=False)
    return x[:3].copy(), t[:3].copy()


def _three(backend, mnist_dir):
    x, t = _mnist3(str(mnist_dir))
    return backend.asarray(x, dtype=backend.dtype), backend.asarray(t)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_the_books_gradient_check_on_three_mnist_images(backend64, mnist_dir, activation):
    be = backend64
    x, t = _three(be, mnist_dir)
    net = TwoLayerNet(784, 50, 10, activation, weight_init_std=0.01, seed=SEED, device=be)
    numerical = net.numerical_gradient(x, t)  # vectorised
    backprop = net.gradient(x, t)
    assert_on(be, *numerical.values(), *backprop.values())
    report = gradient_check(net, x, t, mode="full")
    total = 0
    for key in net.params:
        diff = np.abs(be.to_numpy(backprop[key]) - be.to_numpy(numerical[key])).reshape(-1)
        keep = np.ones(diff.size, dtype=bool)
        keep[list(report.params[key].kink_indices)] = False
        assert diff[keep].mean() <= 1e-8, key
        total += diff.size
    assert report.ok, str(report)
    if activation == "sigmoid":
        assert report.kinks == 0
    else:  # a few coordinates cross a kink; their errors are real, so leaving them out matters
        assert 0 < report.kinks <= total // 100, str(report)
        assert max(p.kink_max_rel for p in report.params.values()) > 100 * report.tol


def test_vectorised_equals_the_books_loop_on_a_sample_of_the_real_net(backend64, mnist_dir):
    be = backend64
    x, t = _three(be, mnist_dir)
    net = TwoLayerNet(784, 50, 10, "relu", weight_init_std=0.01, seed=SEED, device=be)
    vectorised = net.numerical_gradient(x, t)
    kinks = gradient_check(net, x, t, mode="full").params
    rng = np.random.default_rng(0)
    for key, param in net.params.items():
        size = int(np.prod(param.shape))
        # A random sample, plus coordinates at kinks: both methods take the same difference.
        chosen = set(rng.choice(size, min(size, 100), replace=False).tolist())
        chosen |= set(kinks[key].kink_indices[:20])
        positions = sorted(chosen)
        loop = numerical_gradient(lambda _w: net.loss(x, t), param, indices=positions)
        assert_on(be, loop)
        want = be.to_numpy(vectorised[key]).reshape(-1)[positions]
        assert np.max(np.abs(be.to_numpy(loop) - want)) <= 1e-9, key


# -- (c) vectorised against the loop ----------------------------------------------------


@pytest.mark.parametrize("labels", ["index", "one-hot"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("name", list(SMALL))
def test_vectorised_equals_the_loop_on_small_nets(backend64, name, activation, labels):
    n_in, hidden, n_out = SMALL[name]
    net = MultiLayerNet(n_in, hidden, n_out, activation, weight_init_std="he", device=backend64,
                        seed=4)
    _randomise(net, seed=5)
    x, t, _, _ = _batch(backend64, n_in, n_out, 5, labels)
    loop = net.numerical_gradient(x, t, method="loop")
    vectorised = net.numerical_gradient(x, t, method="vectorized")
    for key, param in net.params.items():
        assert_on(backend64, loop[key], vectorised[key])
        assert vectorised[key].dtype == param.dtype and vectorised[key].shape == param.shape
        diff = backend64.to_numpy(vectorised[key]) - backend64.to_numpy(loop[key])
        assert np.max(np.abs(diff)) <= 1e-9, key


@pytest.mark.parametrize("method", ["vectorized", "loop"])
def test_float32_nets_get_float32_gradients_computed_in_float64(backend64, method):
    be32 = get_backend(backend64, "float32")
    net32 = TwoLayerNet(12, 6, 4, "sigmoid", weight_init_std="xavier", device=be32, seed=6)
    net64 = net32.astype("float64")  # the very same parameter values
    x32, t, _, _ = _batch(be32, 12, 4, 5, "index")
    x64 = be32.xp.astype(x32, be32.xp.float64)
    g32 = net32.numerical_gradient(x32, t, method=method)
    g64 = net64.numerical_gradient(x64, t, method=method)
    for key in net32.params:
        assert_on(be32, g32[key])
        assert g32[key].dtype == be32.xp.float32
        want = be32.to_numpy(g64[key]).astype(np.float32)
        assert np.array_equal(be32.to_numpy(g32[key]), want), key


# -- (d) initialisation and the book's interface ------------------------------------------


def test_same_seed_gives_identical_parameters_on_every_device(backend):
    dtype = _lane_dtype(backend)
    for make in (lambda d: TwoLayerNet(784, 50, 10, seed=7, device=d, dtype=dtype),
                 lambda d: MultiLayerNet(20, [9, 8], 3, weight_init_std="he", seed=7, device=d,
                                         dtype=dtype)):
        net, ref = make(backend), make("cpu")
        for key, param in net.params.items():
            assert_on(backend, param)
            assert param.dtype == backend.dtype
            host = backend.to_numpy(param)
            assert host.dtype == ref.params[key].dtype
            assert np.array_equal(host, ref.params[key]), key


def test_book_init_and_different_seeds(backend):
    a = TwoLayerNet(784, 50, 10, seed=1, device=backend)
    b = TwoLayerNet(784, 50, 10, seed=2, device=backend)
    w1 = backend.to_numpy(a.params["W1"])
    assert not np.array_equal(w1, backend.to_numpy(b.params["W1"]))
    assert 0.009 < float(w1.std()) < 0.011 and abs(float(w1.mean())) < 1e-3
    assert not np.any(backend.to_numpy(a.params["b1"]))
    assert set(a.params) == {"W1", "b1", "W2", "b2"}
    assert [tuple(a.params[k].shape) for k in ("W1", "b1", "W2", "b2")] == [
        (784, 50), (50,), (50, 10), (10,)]


def test_predict_loss_gradient_live_on_the_device_in_its_dtype(backend):
    net = TwoLayerNet(784, 20, 10, seed=3, device=backend)
    host = np.random.default_rng(0).random((4, 1, 28, 28))
    images = backend.asarray(host, dtype=backend.dtype)
    flat = backend.asarray(host.reshape(4, 784), dtype=backend.dtype)
    t = backend.asarray(np.array([3, 1, 4, 1]))
    y = net.predict(images)
    assert_on(backend, y)
    assert tuple(y.shape) == (4, 10) and y.dtype == backend.dtype
    assert np.array_equal(backend.to_numpy(y), backend.to_numpy(net.predict(flat)))
    assert 0.0 <= net.accuracy(images, t) <= 1.0
    grads = net.gradient(images, t)
    assert_on(backend, *grads.values())
    assert all(g.dtype == backend.dtype for g in grads.values())
    assert float(net.loss(images, t)) == pytest.approx(float(net.loss(flat, t)), rel=1e-6)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("shape", list(SMALL))
def test_predict_labels_is_the_argmax_of_the_forward_pass_in_any_chunking(backend, shape,
                                                                          activation):
    n_in, hidden, n_out = SMALL[shape]
    net = MultiLayerNet(n_in, hidden, n_out, activation, device=backend, seed=SEED)
    host = _randomise(net, seed=5, scale=1.0)
    x_host = np.random.default_rng(6).standard_normal((23, n_in))
    z = x_host
    for k in range(1, net.n_affine + 1):  # the forward pass from its definition, on the host
        z = z @ host[f"W{k}"] + host[f"b{k}"]
        if k < net.n_affine:
            z = np.maximum(z, 0.0) if activation == "relu" else 1.0 / (1.0 + np.exp(-z))
    expected = np.argmax(z, axis=1)
    x = backend.asarray(x_host, dtype=backend.dtype)
    for chunk in (5, 23, 1000):
        labels = net.predict_labels(x, chunk=chunk)
        assert_on(backend, labels)
        assert np.array_equal(backend.to_numpy(labels), expected), chunk
    images = backend.asarray(x_host.reshape(23, 1, n_in), dtype=backend.dtype)
    assert np.array_equal(backend.to_numpy(net.predict_labels(images)), expected)
    assert tuple(net.predict_labels(x[:0, ...]).shape) == (0,)
    t = backend.asarray(expected)
    assert net.accuracy(x, t) == 1.0


# -- (e) errors a user can cause -------------------------------------------------------

BAD_BATCHES = {
    "x wrong width": ((5, 11), [0, 1, 2, 3, 0], r"^x has shape \(5, 11\); expected \(N, 12\)"),
    "x 1-D": ((12,), [0], r"^x has shape \(12,\)"),
    "labels wrong length": ((5, 12), [0, 1, 2, 3], r"^t has 4 labels for 5 rows of x"),
    "label too large": ((5, 12), [0, 1, 2, 3, 4], r"^t has labels outside 0\.\.3"),
    "negative label": ((5, 12), [0, 1, -1, 3, 2], r"^t has labels outside 0\.\.3"),
    "float labels": ((5, 12), [0.0, 1.0, 2.0, 3.0, 0.0], r"^t has dtype .*must be integers"),
    "t wrong 2-D": ((5, 12), np.zeros((5, 3)), r"^t has shape \(5, 3\); expected \(5,\) or \(5, 4"),
    "t 3-D": ((5, 12), np.zeros((5, 4, 1)), r"^t has shape \(5, 4, 1\)"),
    "NaN in x": ((5, 12), [0, 1, 2, 3, 0], r"^x contains NaN"),
}


# Faults in the values, not the shapes: reading them would cost a device read per call.
VALUE_FAULTS = ("label too large", "negative label", "NaN in x")


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_bad_batches_are_one_sentence_input_errors(backend, case):
    x_shape, labels, message = BAD_BATCHES[case]
    net = TwoLayerNet(12, 6, 4, seed=0, device=backend)
    host_x = np.ones(x_shape)
    if case == "NaN in x":
        host_x[2, 5] = np.nan
    x = backend.asarray(host_x, dtype=backend.dtype)
    labels = np.asarray(labels)
    t = backend.asarray(labels, dtype=backend.dtype if labels.dtype.kind == "f" else None)
    calls = [net.numerical_gradient, functools.partial(gradient_check, net)]
    if case not in VALUE_FAULTS:  # values are checked where data enter, not per step
        calls += [net.loss, net.gradient, net.accuracy]
    for call in calls:
        with pytest.raises(InputError, match=message) as info:
            call(x, t)
        assert "\n" not in str(info.value)


def test_arrays_from_another_device_are_backend_errors_naming_the_argument(backend):
    other = get_backend("strict" if backend.numpy_native else "cpu")
    net = TwoLayerNet(12, 6, 4, seed=0, device=backend)
    host_x, host_t = np.ones((3, 12)), np.array([0, 1, 2])
    x, t = backend.asarray(host_x, dtype=backend.dtype), backend.asarray(host_t)
    with pytest.raises(BackendError, match=r"^x is .*runs on"):
        net.loss(other.asarray(host_x), t)
    with pytest.raises(BackendError, match=r"^t is .*runs on"):
        net.gradient(x, other.asarray(host_t))
    with pytest.raises(BackendError, match=r"^x is "):
        net.numerical_gradient(other.asarray(host_x), t)
    if not backend.numpy_native:  # a plain NumPy array handed to a device net
        with pytest.raises(BackendError, match=r"^x is a NumPy array on the host"):
            net.loss(host_x, t)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"activation": "tanh"}, InputError, r"unknown activation 'tanh'.*relu, sigmoid"),
        ({"weight_init_std": 0.0}, InputError, r"weight_init_std must be a positive number"),
        ({"weight_init_std": -0.01}, InputError, r"weight_init_std must be a positive number"),
        ({"weight_init_std": float("nan")}, InputError, r"weight_init_std must be a positive"),
        ({"weight_init_std": None}, InputError, r"weight_init_std must be a positive number"),
        ({"weight_init_std": "gauss"}, InputError, r"unknown weight_init_std 'gauss'"),
        ({"dtype": "float16"}, BackendError, r"unsupported dtype 'float16'"),
        ({"dtype": "int32"}, BackendError, r"unsupported dtype 'int32'"),
        ({"hidden_size": 0}, InputError, r"layer sizes must be positive integers"),
        ({"seed": -1}, InputError, r"seed must be a non-negative integer or None, got -1"),
        ({"seed": 1.5}, InputError, r"seed must be a non-negative integer or None, got 1.5"),
        ({"seed": "abc"}, InputError, r"seed must be a non-negative integer or None"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    args = {"input_size": 12, "hidden_size": 6, "output_size": 4, "device": "cpu", **kwargs}
    with pytest.raises(error, match=message):
        TwoLayerNet(**args)


def test_bad_chunks_and_empty_batches_are_one_sentence(backend):
    net = TwoLayerNet(12, 6, 4, seed=0, device=backend)
    x, t, _, _ = _batch(backend, 12, 4, 3, "index")
    for chunk in (0, -3, 2.5, True):
        with pytest.raises(InputError, match=r"^chunk must be a positive integer"):
            net.predict_labels(x, chunk=chunk)
    empty_x = backend.asarray(np.zeros((0, 12)), dtype=backend.dtype)
    empty_t = backend.asarray(np.zeros(0, dtype=np.int64))
    for call in (net.loss, net.gradient, net.accuracy):
        with pytest.raises(InputError, match=r"^the batch is empty"):
            call(empty_x, empty_t)


def test_unknown_numerical_method(backend):
    net = TwoLayerNet(12, 6, 4, seed=0, device=backend)
    x, t, _, _ = _batch(backend, 12, 4, 3, "index")
    with pytest.raises(InputError, match=r"unknown method 'central': expected one of vectorized"):
        net.numerical_gradient(x, t, method="central")
