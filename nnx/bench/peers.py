"""The frameworks people compare nnx with, PyTorch and JAX, as peers: the book's training job
in each, and PyTorch's autograd step beside ``nnx bench``'s backprop.

Peers, not dependencies: each runs only where its library is installed, and otherwise its
row says why. Each training job does what :func:`nnx.bench.refs.fused_training` does -- the same
initial weights (:func:`~nnx.bench.refs.init_params`), batches of 100 drawn with
replacement from the same seeded Generator, SGD at 0.1, accuracy on both sets every 600
iterations and at the end -- in the framework's own idiom: PyTorch's autograd and in-place
update, JAX's step compiled by ``jax.jit``. On the CPU, in float64 or float32.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from backends import Backend
from nnx.bench.cases import HostBatch
from nnx.bench.refs import init_params
from nnx.network import TwoLayerNet

Job = Callable[[Any, int, int], float]


def status(library: str) -> tuple[Any, str]:
    """(the module, "") when the peer ``library`` ("torch", "jax") imports, else (None, why)."""
    try:
        return importlib.import_module(library), ""
    except ImportError:
        return None, "not installed"
    except Exception as exc:  # a broken install can raise anything at import time
        return None, f"failed to import ({type(exc).__name__})"


def _epochs(x_train: Any, iters: int) -> tuple[int, Callable[[int], bool]]:
    per_epoch = max(x_train.shape[0] // 100, 1)
    return per_epoch, lambda i: (i + 1) % per_epoch == 0 or i + 1 == iters


def torch_training(torch: Any, dtype: str) -> Job:
    """The job in PyTorch on its CPU; returns the last test accuracy."""
    kind = getattr(torch, dtype)

    def job(data: Any, iters: int, seed: int) -> float:
        (x_train, t_train), (x_test, t_test) = data
        xs = [torch.as_tensor(np.asarray(x, dtype=dtype)) for x in (x_train, x_test)]
        ts = [torch.as_tensor(np.asarray(t, dtype=np.int64)) for t in (t_train, t_test)]
        p = {k: torch.as_tensor(v, dtype=kind).requires_grad_() for k, v in
             init_params(seed).items()}
        rng = np.random.default_rng(seed + 1)
        _, evaluate_now = _epochs(x_train, iters)

        def accuracy(x: Any, t: Any) -> float:
            with torch.no_grad():
                y = torch.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
                return float((y.argmax(dim=1) == t).double().mean())

        for i in range(iters):
            mask = torch.as_tensor(rng.integers(0, x_train.shape[0], 100))
            x, t = xs[0].index_select(0, mask), ts[0].index_select(0, mask)
            logits = torch.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
            torch.nn.functional.cross_entropy(logits, t).backward()
            with torch.no_grad():
                for v in p.values():
                    v -= 0.1 * v.grad
                    v.grad = None
            if evaluate_now(i):
                accuracy(xs[0], ts[0])
                test_acc = accuracy(xs[1], ts[1])
        return test_acc

    return job


def jax_training(jax: Any, dtype: str) -> Job:
    """The job in JAX on its CPU, the step compiled by ``jax.jit``; float64 needs JAX's
    ``jax_enable_x64``, which is set for the run and restored after it."""
    jnp = jax.numpy

    def loss(p: dict, x: Any, t: Any) -> Any:
        logits = jnp.maximum(x @ p["W1"] + p["b1"], 0.0) @ p["W2"] + p["b2"]
        logp = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
        return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))

    @jax.jit
    def step(p: dict, x: Any, t: Any) -> dict:
        grads = jax.grad(loss)(p, x, t)
        return {k: p[k] - 0.1 * grads[k] for k in p}

    @jax.jit
    def correct(p: dict, x: Any, t: Any) -> Any:
        logits = jnp.maximum(x @ p["W1"] + p["b1"], 0.0) @ p["W2"] + p["b2"]
        return jnp.sum(jnp.argmax(logits, axis=1) == t)

    def job(data: Any, iters: int, seed: int) -> float:
        before = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", dtype == "float64")
        try:
            (x_train, t_train), (x_test, t_test) = data
            xs = [jnp.asarray(np.asarray(x, dtype=dtype)) for x in (x_train, x_test)]
            ts = [jnp.asarray(np.asarray(t, dtype=np.int32)) for t in (t_train, t_test)]
            p = {k: jnp.asarray(v, dtype=dtype) for k, v in init_params(seed).items()}
            rng = np.random.default_rng(seed + 1)
            _, evaluate_now = _epochs(x_train, iters)
            for i in range(iters):
                mask = jnp.asarray(rng.integers(0, x_train.shape[0], 100))
                p = step(p, xs[0][mask], ts[0][mask])
                if evaluate_now(i):
                    int(correct(p, xs[0], ts[0]))
                    test_acc = int(correct(p, xs[1], ts[1])) / xs[1].shape[0]
            return test_acc
        finally:
            jax.config.update("jax_enable_x64", before)

    return job


# -- the PyTorch peer -------------------------------------------------------------------
def torch_status(be: Backend) -> tuple[Any, str]:
    """(the torch module, "") when a PyTorch peer can run on the hardware of backend ``be``,
    else (None, why)."""
    device = be.hardware
    if device is None:
        return None, f"no PyTorch device stands for {be.device}"
    torch, why = status("torch")
    if torch is None:
        return None, why
    if device.startswith("cuda") and not torch.cuda.is_available():
        return None, f"PyTorch {torch.__version__} sees no CUDA device"
    if device == "mps" and not torch.backends.mps.is_available():
        return None, f"PyTorch {torch.__version__} has no MPS device"
    return torch, ""


class TorchStep:
    """The same net, weights and batch in PyTorch; ``step()`` is loss + autograd backward."""

    def __init__(self, torch: Any, net: TwoLayerNet, batch: HostBatch, device: str) -> None:
        dtype = torch.float64 if net.xp.float64 == net.dtype else torch.float32
        self.torch, self.device, self.version = torch, torch.device(device), torch.__version__
        self.params = {k: torch.tensor(net.backend.to_numpy(v), dtype=dtype, device=self.device,
                                       requires_grad=True) for k, v in net.params.items()}
        self.x = torch.tensor(batch.x, dtype=dtype, device=self.device)
        self.t = torch.tensor(batch.t, dtype=torch.int64, device=self.device)

    def step(self) -> dict[str, Any]:
        torch, p = self.torch, self.params
        for v in p.values():
            v.grad = None
        hidden = torch.relu(self.x @ p["W1"] + p["b1"])
        torch.nn.functional.cross_entropy(hidden @ p["W2"] + p["b2"], self.t).backward()
        return {k: v.grad for k, v in p.items()}

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            self.torch.mps.synchronize()

    def host_grads(self) -> dict[str, np.ndarray]:
        """The gradients of one step, as host arrays."""
        return {k: v.detach().cpu().numpy() for k, v in self.step().items()}


PEERS: dict[str, Callable[[Any, str], Job]] = {"torch": torch_training, "jax": jax_training}
TITLES = {"torch": "PyTorch", "jax": "JAX (jax.jit)"}
