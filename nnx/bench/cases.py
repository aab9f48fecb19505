"""What the benchmarks time: the book's batch and net, the sampled loop, the PyTorch peer.

The batch is real MNIST when a directory is given (training images drawn by a seeded
host Generator), else a deterministic synthetic batch with MNIST's sparsity. All random
choices come from host-side NumPy Generators, so a seed gives the same batch, the same
weights and the same loop sample on every device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends import Backend
from nnx.bench.timing import summarize
from nnx.errors import InputError
from nnx.network import TwoLayerNet
from nnx.numerical import numerical_gradient

INPUT, OUTPUT = 784, 10
# Fraction of MNIST training pixels that are not zero (about 19%).
MNIST_NONZERO = 0.19


@dataclass
class HostBatch:
    """A batch on the host: float64 images (N, 784), int64 labels (N,), and where it came from."""

    x: np.ndarray
    t: np.ndarray
    source: str


class DataSource:
    """Makes host batches of any size: real MNIST training images, or synthetic ones."""

    def __init__(self, data_dir: str | None, seed: int) -> None:
        self.data_dir = data_dir
        self.seed = seed
        self._train: tuple[np.ndarray, np.ndarray] | None = None
        if data_dir is not None:
            from nnx.mnist import load_mnist

            (x, t), _ = load_mnist(
                normalize=True, flatten=True, one_hot_label=False,
                data_dir=data_dir, download=False,
            )
            self._train = (np.asarray(x), np.asarray(t))

    @property
    def real(self) -> bool:
        return self._train is not None

    def describe(self, batch: int) -> str:
        if self.real:
            return (f"real MNIST: {batch} training images drawn with seed {self.seed} "
                    f"from {self.data_dir}")
        return (f"synthetic: {batch} images with {MNIST_NONZERO:.0%} non-zero pixels like MNIST, "
                f"random labels, seed {self.seed} (give --data-dir for real MNIST)")

    def batch(self, n: int) -> HostBatch:
        rng = np.random.default_rng([self.seed, 1, n])
        if self._train is not None:
            x_train, t_train = self._train
            rows = rng.choice(x_train.shape[0], size=n, replace=n > x_train.shape[0])
            x = x_train[rows].reshape(n, INPUT).astype(np.float64)
            return HostBatch(x, t_train[rows].astype(np.int64), self.describe(n))
        on = rng.random((n, INPUT)) < MNIST_NONZERO
        # MNIST strokes: about half the inked pixels saturate, the rest are anti-aliasing.
        ink = np.where(rng.random((n, INPUT)) < 0.5, 1.0, rng.uniform(0.02, 1.0, (n, INPUT)))
        x = np.where(on, np.round(ink * 255) / 255, 0.0)
        t = rng.integers(0, OUTPUT, size=n, dtype=np.int64)
        return HostBatch(x, t, self.describe(n))


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
    """Split a sample of ``n`` coordinates across parameters in proportion to their sizes.

    Largest remainders, at least one coordinate per parameter (so every parameter is
    timed), never more than a parameter has. ``n`` at or above the total means all.
    """
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    if n < len(sizes):
        raise InputError(
            f"--loop-sample must be at least {len(sizes)} (one per parameter), got {n}"
        )
    exact = {k: n * s / total for k, s in sizes.items()}
    counts = {k: max(1, math.floor(v)) for k, v in exact.items()}
    by_remainder = sorted(sizes, key=lambda k: exact[k] - math.floor(exact[k]), reverse=True)
    while sum(counts.values()) < n:
        for k in by_remainder:
            if sum(counts.values()) < n and counts[k] < sizes[k]:
                counts[k] += 1
    while sum(counts.values()) > n:  # the minimum of one overshot: take from the largest
        k = max(counts, key=counts.get)
        counts[k] -= 1
    return counts


def sample_indices(sizes: dict[str, int], n: int, seed: int) -> dict[str, list[int]]:
    """Flat C-order coordinates to time for each parameter, drawn without replacement."""
    rng = np.random.default_rng([seed, 2])
    counts = allocate_sample(sizes, n)
    return {
        k: sorted(int(i) for i in rng.choice(sizes[k], size=counts[k], replace=False))
        for k in sizes
    }


def extrapolate(seconds: dict[str, float], counts: dict[str, int], sizes: dict[str, int]) -> float:
    """Full-loop seconds from a sample: each parameter's time per coordinate times its size."""
    return sum(seconds[k] / counts[k] * sizes[k] for k in sizes)


class LoopSample:
    """The book's one-coordinate numerical gradient, timed on a sample of coordinates.

    It runs exactly what ``net.numerical_gradient(x, t, method="loop")`` runs -- the loss
    of a float64 copy of the net, perturbed one coordinate at a time -- on ``indices``.
    """

    def __init__(self, net: TwoLayerNet, x: Any, t: Any, indices: dict[str, list[int]]) -> None:
        self.net = net.astype("float64")
        self.x = net.xp.astype(x, net.xp.float64)
        self.t = t
        self.indices = indices

    def call(self, key: str, indices: list[int] | None = None) -> Any:
        """The sampled partial derivatives of one parameter (``indices``: a sub-sample)."""
        loss = lambda _w: self.net.loss(self.x, self.t)  # noqa: E731
        idx = self.indices[key] if indices is None else indices
        return numerical_gradient(loss, self.net.params[key], indices=idx)

    def time(self, backend: Backend, repeat: int) -> list[dict[str, float]]:
        """``repeat`` runs over the sample: seconds per parameter for each run."""
        for key in self.indices:  # warm-up: one coordinate of each parameter
            self.call(key, self.indices[key][:1])
        return [
            {k: float(backend.time(lambda k=k: self.call(k), repeat=1, warmup=0)[0])
             for k in self.indices}
            for _ in range(repeat)
        ]


def time_sampled_loop(
    backend: Backend, sample: LoopSample, sizes: dict[str, int], repeat: int
) -> dict[str, Any]:
    """The loop timed ``repeat`` times on ``sample`` and extrapolated to all coordinates:
    a :func:`~nnx.bench.timing.summarize` of the extrapolations, the raw sample
    timings, and ``how`` (words for a label)."""
    runs = sample.time(backend, repeat)
    counts = {k: len(v) for k, v in sample.indices.items()}
    n, total = sum(counts.values()), sum(sizes.values())
    how = (f"extrapolated from {n:,} of {total:,} coords" if n < total
           else f"all {total:,} coords, each parameter timed apart")
    return {"how": how, "extrapolated": n < total, "sample": n, "coordinates": total,
            "sample_seconds": runs, **summarize([extrapolate(r, counts, sizes) for r in runs])}


def time_full_loop(backend: Backend, net: TwoLayerNet, x: Any, t: Any) -> dict[str, Any]:
    """One run of the book's loop over every coordinate, summarised."""
    total = sum(math.prod(p.shape) for p in net.params.values())
    seconds = backend.time(lambda: net.numerical_gradient(x, t, method="loop"), repeat=1,
                           warmup=0)
    return {"extrapolated": False, "coordinates": total, **summarize(seconds)}


# -- the PyTorch peer -------------------------------------------------------------------
def torch_status(device: str) -> tuple[Any, str]:
    """(the torch module, "") when a PyTorch peer can run on ``device``, else (None, why)."""
    if device == "strict":
        return None, "no PyTorch device stands for array-api-strict"
    try:
        import torch
    except ImportError:
        return None, "not installed"
    except Exception as exc:  # a broken install can raise anything at import time
        return None, f"failed to import ({type(exc).__name__})"
    if device.startswith("cuda") and not torch.cuda.is_available():
        return None, f"PyTorch {torch.__version__} sees no CUDA device"
    return torch, ""


class TorchStep:
    """The same net, weights and batch in PyTorch; ``step()`` is loss + autograd backward."""

    def __init__(self, torch: Any, net: TwoLayerNet, batch: HostBatch, device: str) -> None:
        self.torch = torch
        dtype = torch.float64 if net.xp.float64 == net.dtype else torch.float32
        self.device = torch.device(device)
        be = net.backend
        self.params = {
            k: torch.tensor(be.to_numpy(v), dtype=dtype, device=self.device, requires_grad=True)
            for k, v in net.params.items()
        }
        self.x = torch.tensor(batch.x, dtype=dtype, device=self.device)
        self.t = torch.tensor(batch.t, dtype=torch.int64, device=self.device)
        self.version = torch.__version__

    def step(self) -> dict[str, Any]:
        torch, p = self.torch, self.params
        for v in p.values():
            v.grad = None
        hidden = torch.relu(self.x @ p["W1"] + p["b1"])
        loss = torch.nn.functional.cross_entropy(hidden @ p["W2"] + p["b2"], self.t)
        loss.backward()
        return {k: v.grad for k, v in p.items()}

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def max_abs_diff(self, grads: dict[str, Any], backend: Backend) -> float:
        """Largest difference between PyTorch's gradients and ``grads`` (nnx's)."""
        mine = self.step()
        return max(
            float(np.max(np.abs(mine[k].detach().cpu().numpy() - backend.to_numpy(grads[k]))))
            for k in grads
        )
