"""One test body, every backend: numpy and strict always, PyTorch's CPU when PyTorch is
installed, CuPy when a GPU answers.

The CUDA and torch lanes are skipped with the real reason when they cannot run;
``NNX_REQUIRE_CUDA=1`` (on a GPU machine) and ``NNX_REQUIRE_TORCH=1`` (where the torch extra
is installed) turn that skip into a failed run, so a broken install cannot pass; so does
``NNX_REQUIRE_POSTGRES=1`` for the search on a PostgreSQL server (the server's binaries,
psycopg2 and Optuna).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

import backends
from backends import _cuda, torch_backend
from tests import postgres
from tests.helpers import ROOT

SHARED_MNIST = ROOT.parent / "shared" / "mnist"  # beside the checkout
DATA_DIR = "NNX_DATA_DIR"  # nnx.mnist's variable, read here before the tests unset it
# The real MNIST files: $NNX_DATA_DIR where set (a copy of the tree on another machine is
# given its own folder), else the shared folder beside the checkout.
MNIST_DIR = Path(os.environ.get(DATA_DIR, "").strip() or SHARED_MNIST).expanduser().absolute()

REQUIRE_CUDA = "NNX_REQUIRE_CUDA"  # "1": a CUDA lane that cannot run fails the run
REQUIRE_TORCH = "NNX_REQUIRE_TORCH"  # "1": a torch lane that cannot run fails the run
REQUIRE_POSTGRES = "NNX_REQUIRE_POSTGRES"  # "1": no PostgreSQL study fails the run

_CUDA = [d for d in backends.available() if d.startswith("cuda")]
# Why the CUDA lanes cannot run, in the words a user would get: CuPy missing, no driver, ...
NO_CUDA = "" if _CUDA else _cuda.problem(None) or "no CUDA device passes its self-test"
NO_TORCH = torch_backend._import()[1]  # "" when PyTorch imports
NO_POSTGRES = postgres.problem()  # "" when a test can start a server and reach it

# (device, dtype): every lane in both float widths; strict stands in for a GPU on CPU.
_LANES = [("cpu", "float64"), ("strict", "float64"), ("strict", "float32"),
          ("torch:cpu", "float64"), ("torch:cpu", "float32")]
_LANES += [(d, t) for d in _CUDA or ["cuda"] for t in ("float64", "float32")]


def pytest_configure(config) -> None:
    if os.environ.get(REQUIRE_CUDA, "").strip() == "1" and NO_CUDA:
        pytest.exit(f"{REQUIRE_CUDA}=1 but the CUDA lanes cannot run: {NO_CUDA}", returncode=1)
    if os.environ.get(REQUIRE_TORCH, "").strip() == "1" and NO_TORCH:
        pytest.exit(f"{REQUIRE_TORCH}=1 but the torch lanes cannot run: {NO_TORCH}", returncode=1)
    if os.environ.get(REQUIRE_POSTGRES, "").strip() == "1" and NO_POSTGRES:
        pytest.exit(f"{REQUIRE_POSTGRES}=1 but no PostgreSQL study can run: {NO_POSTGRES}",
                    returncode=1)
    # The user cache (MNIST's decoded copies, downloads) of this run, subprocesses included:
    # the tests never write into the real one.
    config._nnx_cache = tempfile.TemporaryDirectory(prefix="nnx-test-cache-")
    os.environ["XDG_CACHE_HOME"] = config._nnx_cache.name
    # MNIST_DIR has read it: the code under test never sees the user's data folder.
    os.environ.pop(DATA_DIR, None)


def pytest_unconfigure(config) -> None:
    cache = getattr(config, "_nnx_cache", None)
    if cache is not None:
        cache.cleanup()


def _lane(device: str, dtype: str):
    marks = []
    if device.startswith("cuda") and not _CUDA:
        marks.append(pytest.mark.skip(reason=f"no CUDA lane: {NO_CUDA}"))
    if device.startswith("torch") and NO_TORCH:
        marks.append(pytest.mark.skip(reason=f"no torch lane: {NO_TORCH}"))
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
def postgres_url():
    """A fresh PostgreSQL server's URL for the test, skipped with the reason where none can
    run (a failure under NNX_REQUIRE_POSTGRES=1, at the start of the run)."""
    if NO_POSTGRES:
        pytest.skip(f"no PostgreSQL study: {NO_POSTGRES}")
    with postgres.server() as url:
        yield url


@pytest.fixture
def mnist_dir() -> Path:
    """The real MNIST files (never needed at run time): $NNX_DATA_DIR, else ../shared/mnist."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"the real MNIST files (the four .gz) are expected in {MNIST_DIR}; "
                    f"set {DATA_DIR} to a folder holding them")
    return MNIST_DIR
