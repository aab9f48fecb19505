"""Budgets of the hot paths, counted on the strict lane (a stand-in for a GPU): host reads
of device values (each a synchronisation on a GPU) and arrays made (a proxy for kernel
launches). The counts are exact for a given code; the budgets stop them creeping back."""

from __future__ import annotations

import numpy as np
import pytest

from backends import get_backend
from nnx.functions import one_hot
from nnx.network import TwoLayerNet
from nnx.training import CHECK_EVERY, TrainConfig, train
from tests.counting import counting

GRADIENT_ARRAYS = 24  # net.gradient(x, t) with integer labels
GRADIENT_LAUNCHES = 26  # the same call: 20 arrays computed (4 more are views), 6 updates
ITERATION_ARRAYS = 24  # one training iteration: gathers, gradient, SGD update
ITERATION_LAUNCHES = 34  # the same: 20 computed, 14 in place (8 of them the SGD update)


@pytest.fixture
def strict():
    return get_backend("strict")


def _batch(be, n=100, seed=0):
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((n, 784)) < 0.19, rng.random((n, 784)), 0.0)
    return be.asarray(x, dtype=be.dtype), be.asarray(rng.integers(0, 10, n))


def test_the_counter_tells_computed_arrays_views_updates_and_reads_apart(strict):
    xp = strict.xp
    with counting() as c:
        m = xp.ones_like(strict.asarray(np.ones((2, 2))))  # asarray: a transfer, then computed
        n = m + 1.0  # computed (the scalar's promotion is strict's, not a kernel)
        n += m  # an update
        v = n.T  # a view
        n[0, 0] = 5.0  # an update
        float(xp.sum(v))  # computed, then read
    assert (c.arrays, c.views, c.updates, c.reads, c.launches) == (5, 1, 2, 1, 6)


def test_the_book_interface_reads_nothing_from_the_device(strict):
    net = TwoLayerNet(784, 50, 10, device=strict, seed=0)
    x, t = _batch(strict)
    net.gradient(x, t)  # warm-up: namespaces are looked up once
    for call in (net.gradient, net.loss, lambda x, t: net.gradient(x, one_hot(t, 10))):
        with counting() as c:
            call(x, t)
        assert c.reads == 0, call


def test_arrays_made_by_one_gradient_stay_within_budget(strict):
    net = TwoLayerNet(784, 50, 10, device=strict, seed=0)
    x, t = _batch(strict)
    net.gradient(x, t)
    with counting() as c:
        net.gradient(x, t)
    assert 0 < c.arrays <= GRADIENT_ARRAYS
    assert c.views == 4  # x.T and z.T for the weight gradients, W2.T for dx, t[:, None]
    assert 0 < c.launches <= GRADIENT_LAUNCHES


def test_a_numerical_gradient_reads_once(strict):
    """One transfer: the batch's values are checked (labels in range, finite pixels)."""
    net = TwoLayerNet(784, 8, 10, device=strict, seed=0)
    x, t = _batch(strict, n=6)
    net.numerical_gradient(x, t)
    with counting() as c:
        net.numerical_gradient(x, t)
    assert c.reads == 2  # to_device and __array__ of the one small transfer


def _train_counts(iters: int):
    rng = np.random.default_rng(0)
    x = rng.random((600, 784)).astype(np.float32)
    t = rng.integers(0, 10, 600)
    config = TrainConfig(device="strict", iters=iters, eval_every=10_000)
    with counting() as c:
        train(config, ((x, t), (x[:50], t[:50])), log=lambda _: None, progress=False)
    return c


def test_a_training_iteration_reads_only_at_the_read_back_points_and_makes_few_arrays():
    short, long = _train_counts(CHECK_EVERY), _train_counts(3 * CHECK_EVERY)
    iterations = 2 * CHECK_EVERY
    # Every CHECK_EVERY iterations the losses are read back in one transfer (two reads).
    assert long.reads - short.reads == 2 * (iterations // CHECK_EVERY)
    read_backs = iterations // CHECK_EVERY  # each stacks the losses and copies them: 2 arrays
    per_iteration = (long.arrays - short.arrays - 2 * read_backs) / iterations
    assert 0 < per_iteration <= ITERATION_ARRAYS
    launches = (long.launches - short.launches - 2 * read_backs) / iterations
    assert 0 < launches <= ITERATION_LAUNCHES
