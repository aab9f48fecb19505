"""What the benchmarks time: the book's batch and net, the sampled loop.

The batch is real MNIST training images when a directory is given, else a synthetic batch
with MNIST's sparsity. Every random choice comes from a seeded host NumPy Generator, so a
seed gives the same batch, weights and loop sample on every device.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from backends import Backend
from nnx.bench.timing import Row, Stats
from nnx.errors import InputError
from nnx.network import TwoLayerNet
from nnx.numerical import numerical_gradient

INPUT, OUTPUT = 784, 10
MNIST_NONZERO = 0.19  # the fraction of MNIST training pixels that are not zero


class HostBatch(NamedTuple):
    """A batch on the host: float64 images (N, 784), int64 labels (N,), where it came from."""

    x: np.ndarray
    t: np.ndarray
    source: str


class DataSource:
    """Host batches of any size: real MNIST training images, or synthetic ones."""

    def __init__(self, data_dir: str | None, seed: int) -> None:
        self.data_dir, self.seed, self.train = data_dir, seed, None
        if data_dir is not None:
            from nnx.mnist import load_mnist

            x, t = load_mnist(normalize=True, flatten=True, one_hot_label=False,
                              data_dir=data_dir, download=False)[0]
            self.train = (np.asarray(x), np.asarray(t))

    def describe(self, batch: int) -> str:
        if self.train is not None:
            return (f"real MNIST: {batch} training images drawn with seed {self.seed} "
                    f"from {self.data_dir}")
        return (f"synthetic: {batch} images with {MNIST_NONZERO:.0%} non-zero pixels like MNIST, "
                f"random labels, seed {self.seed} (give --data-dir for real MNIST)")

    def batch(self, n: int) -> HostBatch:
        rng = np.random.default_rng([self.seed, 1, n])
        if self.train is not None:
            x, t = self.train
            rows = rng.choice(x.shape[0], size=n, replace=n > x.shape[0])
            return HostBatch(x[rows].reshape(n, INPUT).astype(np.float64),
                             t[rows].astype(np.int64), self.describe(n))
        on = rng.random((n, INPUT)) < MNIST_NONZERO
        # MNIST strokes: about half the inked pixels saturate, the rest are anti-aliasing.
        ink = np.where(rng.random((n, INPUT)) < 0.5, 1.0, rng.uniform(0.02, 1.0, (n, INPUT)))
        x = np.where(on, np.round(ink * 255) / 255, 0.0)
        return HostBatch(x, rng.integers(0, OUTPUT, size=n, dtype=np.int64), self.describe(n))


def make_net(backend: Backend, hidden: int, seed: int) -> TwoLayerNet:
    """The book's net on ``backend``: 784-hidden-10, ReLU, weights N(0, 0.01^2)."""
    return TwoLayerNet(INPUT, hidden, OUTPUT, activation="relu", weight_init_std=0.01,
                       device=backend, seed=seed)


def on_device(backend: Backend, batch: HostBatch) -> tuple[Any, Any]:
    """The batch moved to ``backend``: images in its dtype, labels as integers."""
    return backend.asarray(batch.x, dtype=backend.dtype), backend.asarray(batch.t)


def param_sizes(hidden: int) -> dict[str, int]:
    """Element count of each parameter of the 784-hidden-10 net, in the book's order."""
    return {"W1": INPUT * hidden, "b1": hidden, "W2": hidden * OUTPUT, "b2": OUTPUT}


def allocate_sample(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Split a sample of ``n`` coordinates across parameters in proportion to their sizes:
    largest remainders, at least one per parameter, never more than it has (all at or
    above the total)."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    if n < len(sizes):
        raise InputError(f"--loop-sample must be at least {len(sizes)} (one per parameter), "
                         f"got {n}")
    exact = {k: n * s / total for k, s in sizes.items()}
    counts = {k: max(1, math.floor(v)) for k, v in exact.items()}
    by_remainder = sorted(sizes, key=lambda k: exact[k] - math.floor(exact[k]), reverse=True)
    while sum(counts.values()) < n:
        for k in by_remainder:
            if sum(counts.values()) < n and counts[k] < sizes[k]:
                counts[k] += 1
    while sum(counts.values()) > n:  # the minimum of one overshot: take from the largest
        counts[max(counts, key=counts.get)] -= 1
    return counts


def sample_indices(sizes: dict[str, int], n: int, seed: int) -> dict[str, list[int]]:
    """Flat C-order coordinates to time for each parameter, drawn without replacement."""
    rng = np.random.default_rng([seed, 2])
    counts = allocate_sample(sizes, n)
    return {k: sorted(int(i) for i in rng.choice(sizes[k], size=counts[k], replace=False))
            for k in sizes}


def extrapolate(seconds: dict[str, float], counts: dict[str, int], sizes: dict[str, int]) -> float:
    """Full-loop seconds from a sample: each parameter's time per coordinate times its size."""
    return sum(seconds[k] / counts[k] * sizes[k] for k in sizes)


class LoopSample:
    """The book's one-coordinate numerical gradient on a sample of coordinates: what
    ``net.numerical_gradient(x, t, method="loop")`` runs (the loss of a float64 copy of
    the net, perturbed one coordinate at a time), on ``indices`` only."""

    def __init__(self, net: TwoLayerNet, x: Any, t: Any, indices: dict[str, list[int]]) -> None:
        with net.backend.scope():  # CuPy computes on the current device: make it the net's
            self.net, self.x = net.astype("float64"), net.xp.astype(x, net.xp.float64)
        self.t = t
        self.indices = indices

    def call(self, key: str, indices: list[int] | None = None) -> Any:
        """The sampled partial derivatives of one parameter (``indices``: a sub-sample)."""
        return numerical_gradient(lambda _w: self.net.loss(self.x, self.t), self.net.params[key],
                                  indices=self.indices[key] if indices is None else indices)

    def time(self, backend: Backend, repeat: int) -> Row:
        """``repeat`` runs over the sample, each extrapolated to every coordinate."""
        with backend.scope():  # CuPy computes on the current device: make it the net's
            for key in self.indices:  # warm-up: one coordinate of each parameter
                self.call(key, self.indices[key][:1])
            runs = [{k: float(backend.time(lambda k=k: self.call(k), 1, warmup=0)[0])
                     for k in self.indices} for _ in range(repeat)]
        sizes = {k: math.prod(v.shape) for k, v in self.net.params.items()}
        counts = {k: len(v) for k, v in self.indices.items()}
        n, total = sum(counts.values()), sum(sizes.values())
        how = (f"extrapolated from {n:,} of {total:,} coords" if n < total
               else f"all {total:,} coords, each parameter timed apart")
        return Row(backend.device, "numerical_loop", f"numerical, book's loop ({how})",
                   Stats.of([extrapolate(r, counts, sizes) for r in runs]),
                   extra={"extrapolated": n < total, "sample": n, "coordinates": total,
                          "sample_seconds": runs})


def time_full_loop(backend: Backend, net: TwoLayerNet, x: Any, t: Any) -> Row:
    """One run of the book's loop over every coordinate."""
    total = sum(math.prod(p.shape) for p in net.params.values())
    seconds = backend.time(lambda: net.numerical_gradient(x, t, method="loop"), 1, warmup=0)
    return Row(backend.device, "numerical_loop_full",
               f"numerical, book's loop (all {total:,} coords, 1 run)", Stats.of(seconds),
               extra={"extrapolated": False, "coordinates": total})


def max_abs_diff(a: dict[str, Any], b: dict[str, np.ndarray]) -> float:
    """The largest ``|a[k] - b[k]|`` over the host arrays of ``b``'s parameters."""
    return max(float(np.max(np.abs(np.asarray(a[k]) - b[k]))) for k in b)
