"""One test body, every backend: numpy and strict always, CuPy when a GPU answers."""

from __future__ import annotations

from pathlib import Path

import pytest

import backends
from tests.helpers import ROOT

SHARED_MNIST = ROOT.parent / "shared" / "mnist"

_CUDA = [d for d in backends.available() if d.startswith("cuda")]

# (device, dtype): strict runs in both float widths; it stands in for a GPU on CPU.
_LANES = [("cpu", "float64"), ("strict", "float64"), ("strict", "float32")]
_LANES += [(d, "float64") for d in _CUDA] or [("cuda", "float64")]


def _lane(device: str, dtype: str):
    marks = []
    if device.startswith("cuda") and not _CUDA:
        marks.append(pytest.mark.skip(reason="no CUDA device answers on this machine"))
    name = {"cpu": "numpy"}.get(device, device.replace(":", ""))
    return pytest.param((device, dtype), id=f"{name}-{dtype}", marks=marks)


@pytest.fixture(params=[_lane(d, t) for d, t in _LANES])
def backend(request) -> backends.Backend:
    """Every backend lane, float32 included: for code that must work in any dtype."""
    device, dtype = request.param
    return backends.get_backend(device, dtype=dtype)


@pytest.fixture(params=[_lane(d, t) for d, t in _LANES if t == "float64"])
def backend64(request) -> backends.Backend:
    """Every backend in float64: for comparisons to 1e-9 and tighter."""
    device, dtype = request.param
    return backends.get_backend(device, dtype=dtype)


def assert_on(backend: backends.Backend, *arrays) -> None:
    """Fail unless every array lives in the backend's namespace and on its device."""
    for x in arrays:
        assert backend.owns(x), f"{type(x).__name__} is not on {backend}"


@pytest.fixture
def mnist_dir() -> Path:
    """The real MNIST files beside the checkout (never needed at run time)."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"the real MNIST files are expected in {SHARED_MNIST}")
    return SHARED_MNIST
