"""The GPU code paths, proved without a GPU.

A stand-in CuPy (``tests/standin_cupy.py``) with two devices and CuPy's device semantics
checks that every backend allocates, waits and times on its own device whatever device
is current, that the library keeps a cuda:1 run on cuda:1, and every branch of "why no
GPU". The last tests run against real CuPy installed on a machine without a driver.
"""

from __future__ import annotations

import importlib.abc
import subprocess
import sys

import numpy as np
import pytest

import backends
import nnx
from backends import BackendError, _cuda, cuda_setup, get_backend
from nnx.training import TrainConfig, train
from tests.standin_cupy import STRICT_DEVICES, StandInCupy, activate

CUDA0, CUDA1 = STRICT_DEVICES


@pytest.fixture
def machine(monkeypatch):
    """``machine(**options)``: install a stand-in CuPy for this machine (see StandInCupy)."""

    def make(**options) -> StandInCupy:
        return activate(monkeypatch, StandInCupy(**options))

    yield make
    _cuda._count.cache_clear()
    _cuda._device_problem.cache_clear()


@pytest.fixture
def gpus(machine) -> StandInCupy:
    """Two working GPUs, cuda:0 current."""
    return machine(devices=2)


def _not_torch(devices: list[str]) -> list[str]:
    """The devices that are not PyTorch's (listed too where PyTorch is installed)."""
    return [d for d in devices if not d.startswith("torch:")]


def _cuda1(cupy: StandInCupy) -> backends.Backend:
    """A cuda:1 backend, with cuda:0 made current again after it (whatever it did)."""
    be = get_backend("cuda:1")
    cupy.cuda.Device(0).use()
    return be


# -- device discipline -------------------------------------------------------------


def test_making_a_cuda1_backend_leaves_the_current_device_alone(gpus):
    be = get_backend("cuda:1")
    assert be.device == "cuda:1" and gpus.current == 0


def test_auto_and_cuda_mean_cuda0_whatever_device_is_current(gpus):
    gpus.cuda.Device(1).use()
    assert get_backend("auto").device == "cuda:0"
    assert get_backend("cuda").device == "cuda:0"
    assert "cuda:0" in get_backend("auto").reason
    assert gpus.current == 1


def test_asarray_on_cuda1_lands_on_cuda1_while_cuda0_is_current(gpus):
    be = _cuda1(gpus)
    x = be.asarray(np.ones(3), dtype="float32")
    assert x.device == CUDA1 and be.owns(x) and x.dtype == be.xp.float32
    assert gpus.current == 0
    np.testing.assert_array_equal(be.to_numpy(x), np.ones(3))


def test_the_standin_has_cupys_device_semantics(gpus):
    """What the tests below rely on: creation on the current device, kernels refused."""
    be = _cuda1(gpus)
    x = be.asarray([1.0, 2.0])
    assert be.xp.zeros_like(x).device == CUDA0  # CuPy allocates *_like on the current device
    assert be.xp.zeros(2, device=be.array_device).device == CUDA0  # device= is dropped
    with pytest.raises(ValueError, match="Array device must be same as the current device"):
        x * 2.0
    with be.scope():
        assert gpus.current == 1 and (x * 2.0).device == CUDA1
    assert gpus.current == 0


def test_synchronize_waits_for_the_backends_own_device(gpus):
    be = _cuda1(gpus)
    be.synchronize()
    assert gpus.synced == [1]


def test_event_timer_records_on_the_backends_device_and_pairs_its_events(gpus):
    be = _cuda1(gpus)
    timer = be.interval_timer()
    for work_ms, idle_ms in ((5.0, 100.0), (2.0, 40.0), (0.5, 0.0)):
        timer.start()
        gpus.advance(1, work_ms)  # only cuda:1's stream moves
        timer.stop()
        gpus.advance(1, idle_ms)  # between intervals: never counted
    assert gpus.current == 0
    assert {e.device for e in gpus.recorded} == {1}
    np.testing.assert_allclose(timer.drain(), [0.005, 0.002, 0.0005])  # ms -> s
    assert timer.drain() == []


def test_memory_free_counts_the_pool_of_its_own_device_and_honours_its_limit(gpus):
    be = _cuda1(gpus)
    gib = 1 << 30
    gpus.mem[0], gpus.mem[1] = (15 * gib, 16 * gib), (3 * gib, 16 * gib)
    gpus.pools[1].free, gpus.pools[1].used = gib, 2 * gib
    assert be.memory_free() == 4 * gib  # device free + what the pool holds free
    gpus.pools[1].limit = 5 * gib  # CUPY_GPU_MEMORY_LIMIT: the pool may hold 5 GiB in all
    assert be.memory_free() == 3 * gib
    gpus.pools[1].limit = gib  # already past it
    assert be.memory_free() == 0
    gpus.pools[1].limit = 0  # 0: no limit
    assert be.memory_free() == 4 * gib


def test_check_names_a_cupy_array_and_its_device(gpus):
    be0 = get_backend("cuda:0")
    with gpus.cuda.Device(1):
        x = be0.xp.asarray([1.0])
    with pytest.raises(BackendError, match="weights is a CuPy array on cuda:1, but this "
                                           "computation runs on cuda:0"):
        be0.check(x, "weights")


def test_device_scope_makes_the_arrays_device_current(gpus):
    x = _cuda1(gpus).asarray([1.0])
    with backends.device_scope(x):
        assert gpus.current == 1
    assert gpus.current == 0
    with backends.device_scope(np.ones(1)):
        assert gpus.current == 0


# -- the library on cuda:1 while cuda:0 is current -------------------------------------


@pytest.mark.parametrize("optimizer", [nnx.SGD(lr=0.1), nnx.Adam(lr=0.01)], ids=["sgd", "adam"])
def test_net_gradient_and_optimizer_keep_every_array_on_cuda1(gpus, optimizer):
    be = _cuda1(gpus)
    net = nnx.TwoLayerNet(6, 5, 3, device=be, seed=0)
    gpus.cuda.Device(0).use()
    rng = np.random.default_rng(0)
    x, t = be.asarray(rng.standard_normal((4, 6))), be.asarray(np.array([0, 1, 2, 1]))
    for _ in range(2):  # the second step uses the optimizer's state
        grads = net.gradient(x, t)
        optimizer.update(net.params, grads)
    arrays = [*grads.values(), *net.params.values()]
    arrays += [a for state in vars(optimizer).values() if isinstance(state, dict)
               for a in state.values()]
    assert arrays and all(be.owns(a) for a in arrays)
    assert 0.0 <= net.accuracy(x, t) <= 1.0
    assert gpus.current == 0


def test_numerical_gradient_on_cuda1_runs_on_cuda1(gpus):
    be = _cuda1(gpus)
    net = nnx.TwoLayerNet(6, 5, 3, device=be, seed=0)
    x, t = be.asarray(np.ones((2, 6))), be.asarray(np.array([0, 2]))
    grads = net.numerical_gradient(x, t)
    assert all(be.owns(g) for g in grads.values()) and gpus.current == 0


def test_training_on_cuda1_stays_on_cuda1(gpus):
    rng = np.random.default_rng(0)
    data = tuple((rng.random((20, 8)).astype(np.float32), rng.integers(0, 10, 20))
                 for _ in range(2))
    config = TrainConfig(device="cuda:1", iters=5, batch_size=4, hidden=(5,), lr=0.1)
    result = train(config, data, log=lambda line: None, progress=False)
    be = result.net.backend
    assert result.status == "completed" and len(result.history["loss"]) == 5
    assert be.device == "cuda:1" and all(be.owns(p) for p in result.net.params.values())
    assert gpus.current == 0


def test_one_hots_class_row_is_made_on_the_labels_device(gpus):
    """The cached row 0..C-1 is made on the labels' device even outside its scope, so a call
    that fails there (cuda:0 current) leaves nothing behind that breaks later calls."""
    from nnx.functions import _CLASSES, one_hot

    be = _cuda1(gpus)
    t = be.asarray(np.array([2, 0, 1]))
    _CLASSES.clear()
    with pytest.raises(ValueError, match="current device"):
        one_hot(t, 7)  # outside a scope: CuPy refuses the comparison on cuda:1
    with be.scope():
        hot = one_hot(t, 7, be.dtype)
    assert be.owns(hot) and be.to_numpy(hot).argmax(axis=1).tolist() == [2, 0, 1]
    assert all(be.owns(row) for row in _CLASSES.values())


def test_the_loop_sample_benchmark_runs_on_cuda1(gpus):
    from nnx.bench import cases

    be = _cuda1(gpus)
    net = cases.make_net(be, 5, seed=0)
    x, t = be.asarray(np.ones((2, 784))), be.asarray(np.array([0, 2]))
    indices = {k: [0, 1] for k in net.params}
    row = cases.LoopSample(net, x, t, indices).time(be, 1)
    assert row.device == "cuda:1" and row.stats.n == 1 and gpus.current == 0


def test_a_cuda_backend_is_a_hashable_value(gpus):
    be = _cuda1(gpus)
    assert hash(be) == hash(get_backend("cuda:1")) and be == get_backend("cuda:1")
    assert {be: 1}[get_backend("cuda:1")] == 1 and be != get_backend("cuda:0")
    assert be.is_gpu and be.has_events and be.float64 and be.hardware == "cuda:1"


def test_the_event_timer_reuses_its_events(gpus):
    be = _cuda1(gpus)
    timer = be.interval_timer()
    for _ in range(3):  # three drains of four intervals each
        for _ in range(4):
            timer.start()
            gpus.advance(1, 1.0)
            timer.stop()
        assert timer.drain() == pytest.approx([0.001] * 4)
    assert len(gpus.recorded) == 24 and len({id(e) for e in gpus.recorded}) == 8


def test_the_first_kernels_cost_is_paid_before_the_first_timed_iteration(machine, monkeypatch):
    """A first kernel that takes a second (its compilation, cuBLAS's handle) lands in no
    gradient time, and the run's numbers are those of a run without the warm-up."""
    rng = np.random.default_rng(0)
    data = tuple((rng.random((20, 8)).astype(np.float32), rng.integers(0, 10, 20))
                 for _ in range(2))
    config = TrainConfig(device="cuda:0", iters=5, batch_size=4, hidden=(5,), lr=0.1)
    quiet = {"log": lambda line: None, "progress": False}
    gpus = machine(devices=1, first_kernel_ms=1000.0)
    warmed = train(config, data, **quiet)
    assert max(warmed.history["grad_time"]) < 0.5 and (0, "matmul") in gpus.started

    gpus = machine(devices=1, first_kernel_ms=1000.0)
    monkeypatch.setattr(type(get_backend("cuda:0")), "warm_up", lambda self, fn: None)
    cold = train(config, data, **quiet)
    assert cold.history["grad_time"][0] >= 1.0  # what the warm-up keeps out of the figures
    assert cold.history["loss"] == warmed.history["loss"]
    for key, value in warmed.net.params.items():
        assert np.array_equal(cold.net.backend.to_numpy(cold.net.params[key]),
                              warmed.net.backend.to_numpy(value)), key


# -- why there is no GPU ---------------------------------------------------------------


def test_cupy_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    cupy, why = _cuda._import.__wrapped__()
    assert cupy is None
    assert why.startswith("CuPy is not installed") and 'pip install ".[cuda12]"' in why


def test_cupy_failing_to_import_names_the_error_and_the_driver(monkeypatch):
    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "cupy":
                raise OSError("libcuda.so.1: cannot open shared object file")

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    cupy, why = _cuda._import.__wrapped__()
    assert cupy is None
    assert "CuPy failed to import (OSError: libcuda.so.1" in why and "nvidia-smi" in why


def test_no_driver_is_named_for_cuda_and_auto(machine):
    machine(driver=0)
    why = _cuda.problem(None)
    assert "no NVIDIA driver is visible" in why and "nvidia-smi" in why
    with pytest.raises(BackendError, match="no NVIDIA driver is visible"):
        get_backend("cuda")
    be = get_backend("auto")
    assert be.device == "cpu" and "auto chose the CPU" in be.reason and "driver" in be.reason
    # The fact on every command's first line; the fix once, in nnx info.
    assert "nvidia-smi" not in be.reason and be.reason.endswith("(nnx info says how to fix it)")
    assert _not_torch(backends.available()) == ["cpu"]


def test_a_driver_too_old_for_the_runtime_says_both_versions_and_the_fix(machine):
    machine(driver=12080, runtime=13000)  # a CUDA 13 wheel on a CUDA 12.8 driver
    why = _cuda.problem(0)
    assert "driver supports CUDA 12.8" in why and "needs CUDA 13.0" in why
    assert "update the NVIDIA driver" in why and ".[cuda12]" in why


def test_no_device_names_cudas_error(machine):
    machine(devices=0)  # CUDA answers cudaErrorNoDevice
    assert "no CUDA device answers (CUDARuntimeError: cudaErrorNoDevice" in _cuda.problem(None)


def test_a_device_count_of_zero_is_no_device(machine, monkeypatch):
    cupy = machine(devices=1)
    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", lambda: 0)
    assert "sees no CUDA device" in _cuda.problem(None)


def test_an_index_beyond_the_devices_names_those_present(machine):
    machine(devices=1)
    with pytest.raises(BackendError) as info:
        get_backend("cuda:1")
    assert "cuda:1 does not exist: this machine has 1 CUDA device(s) (cuda:0)" in str(info.value)


def test_a_failing_self_test_takes_only_that_device_out(machine):
    machine(devices=2, broken=(1,))
    why = _cuda.problem(1)
    assert why.startswith("CuPy cannot load CUDA's NVRTC library on cuda:1") and "libnvrtc" in why
    assert "[ctk]" in why and 'pip install ".[cuda12]"' in why
    assert _cuda.problem(0) == "" and _not_torch(backends.available()) == ["cpu", "cuda:0"]


def test_cupy_without_its_libraries_is_found_by_the_self_tests_product(machine):
    """CuPy installed without its [ctk] libraries compiles kernels but cannot load cuBLAS:
    the self-test's matrix product finds it, so auto stays on the CPU and says why."""
    machine(devices=1, no_cublas=True)
    why = _cuda.problem(0)
    assert why.startswith("CuPy cannot load CUDA's cuBLAS library on cuda:0 (ImportError: ")
    assert "libcublasLt.so.13" in why and "[ctk]" in why and 'pip install ".[cuda12]"' in why
    with pytest.raises(BackendError, match="cuBLAS"):
        get_backend("cuda")
    be = get_backend("auto")
    assert be.device == "cpu" and "cuBLAS" in be.reason


class CUBLASError(RuntimeError):
    """Like ``cupy_backends.cuda.libs.cublas.CUBLASError``: the status's name is the text."""


@pytest.mark.parametrize("error", [
    CUBLASError("CUBLAS_STATUS_ALLOC_FAILED"),
    pytest.param(None, id="CUDARuntimeError-cudaErrorMemoryAllocation"),
], ids=["CUBLASError-ALLOC_FAILED", "CUDARuntimeError"])
def test_a_gpu_library_out_of_memory_gets_the_memory_advice(machine, monkeypatch, tmp_path,
                                                            capsys, mnist_dir, error):
    from tests.standin_cupy import CUDARuntimeError

    error = error or CUDARuntimeError(2)
    assert backends.is_out_of_memory(error)
    assert not backends.is_out_of_memory(CUBLASError("CUBLAS_STATUS_INVALID_VALUE"))
    machine(devices=1)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(nnx.network.MultiLayerNet, "gradient", fail)
    from nnx.cli import main as nnx_main

    code = nnx_main(["train", "--device", "cuda", "--iters", "5", "--no-plots", "--data-dir",
                     str(mnist_dir), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("nnx train: error: out of memory") and "training on cuda:0" in err[0]
    assert "; try " in err[0]
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_wrong_self_test_result_is_refused(machine):
    machine(devices=1, wrong=(0,))
    assert "cuda:0 computed a wrong result" in _cuda.problem(0)


def test_versions_and_machine_info_without_a_driver(machine, monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    machine(driver=0)
    versions = _cuda.versions()
    assert versions["cupy"] == "14.2.0" and versions["cuda_runtime"] == "13.0"
    assert versions["cuda_driver"] is None and "no NVIDIA driver" in versions["cuda_driver_problem"]
    info = backends.machine_info()
    assert info["cuda_driver"] is None and info["gpus"] == []
    assert info["resolves_to"] == "cpu" and "no NVIDIA driver" in info["reason"]


def test_machine_info_lists_every_gpu(gpus):
    info = backends.machine_info()
    assert [g["device"] for g in info["gpus"]] == ["cuda:0", "cuda:1"]
    assert info["cuda_driver"] == "13.0" and "cuda_driver_problem" not in info


def test_the_record_of_a_cpu_run_leaves_cupy_unasked(gpus, monkeypatch):
    monkeypatch.setattr(_cuda, "_import", lambda: pytest.fail("CuPy was imported"))
    info = backends.machine_info(gpus=False)
    assert info["cpu"] and info["numpy"] and "cupy" not in info and "gpus" not in info


# -- the test lanes ----------------------------------------------------------------------


def _pytest(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--no-cov", "-p", "no:cacheprovider", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
    )


needs_no_gpu = pytest.mark.skipif(
    any(d.startswith("cuda") for d in backends.available()), reason="a CUDA device answers here"
)


@needs_no_gpu
def test_cuda_lanes_are_skipped_with_the_real_reason_in_both_widths():
    out = _pytest("-vv", "-rs", "tests/test_backends.py::test_round_trip_lives_on_the_device",
                  env={"NNX_REQUIRE_CUDA": "0"}).stdout
    assert "[cuda-float64] SKIPPED" in out and "[cuda-float32] SKIPPED" in out
    assert f"no CUDA lane: {_cuda.problem(None)}" in out


@needs_no_gpu
def test_require_cuda_turns_the_skip_into_a_failed_run_naming_the_reason():
    proc = _pytest("tests/test_backends.py::test_parse_device_accepts_the_documented_spellings",
                   env={"NNX_REQUIRE_CUDA": "1"})
    assert proc.returncode == 1
    assert _cuda.problem(None) in proc.stdout + proc.stderr


# -- real CuPy, installed on a machine without a driver ---------------------------------------


@pytest.fixture
def real_cupy_without_driver():
    cupy, why = _cuda._import()
    if cupy is None:
        pytest.skip(f"real CuPy does not import here: {why}")
    if _cuda._driver_version(cupy) != 0:
        pytest.skip("an NVIDIA driver is present: the no-driver messages cannot be reached")
    return cupy


def test_real_cupy_auto_names_the_missing_driver(real_cupy_without_driver):
    be = get_backend("auto")
    assert be.device == "cpu" and "auto chose the CPU" in be.reason
    assert "no NVIDIA driver is visible" in be.reason


def test_real_cupy_cuda_fails_naming_the_missing_driver(real_cupy_without_driver):
    for text in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(BackendError, match="no NVIDIA driver is visible"):
            get_backend(text)


def test_real_cupy_nnx_info_works_and_says_why(real_cupy_without_driver):
    import json

    proc = subprocess.run([sys.executable, "-m", "nnx.cli", "info", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["cupy"] == real_cupy_without_driver.__version__
    assert info["cuda_driver"] is None and info["gpus"] == []
    assert info["resolves_to"] == "cpu" and "no NVIDIA driver" in info["reason"]
    problems = [f["finding"] for f in info["gpu_setup"] if not f["ok"]]
    assert any("no NVIDIA driver is visible" in p for p in problems)
    assert f"CuPy wheel: cupy-cuda13x {real_cupy_without_driver.__version__}" in [
        f["finding"] for f in info["gpu_setup"]]


# CuPy's own warning when several CuPy wheels are installed (cupy/_environment.py, CuPy 14).
DUPLICATE_WARNING = """
--------------------------------------------------------------------------------

  CuPy may not function correctly because multiple CuPy packages are installed
  in your environment:

    cupy-cuda12x, cupy-cuda13x

  Follow these steps to resolve this issue:

    1. For all packages listed above, run the following command to remove all
       existing CuPy installations:
"""


def test_two_cupy_wheels_installed_at_once_are_one_sentence(tmp_path, monkeypatch):
    fake = tmp_path / "cupy"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        f"import warnings\nwarnings.warn({DUPLICATE_WARNING!r})\n__version__ = '14.2.0'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    _cuda._import.cache_clear()
    _cuda._count.cache_clear()
    try:
        cupy, why = _cuda._import()
        assert cupy is None and "\n" not in why
        assert why.startswith("several CuPy packages are installed at once "
                              "(cupy-cuda12x, cupy-cuda13x); pip uninstall all of them")
        assert _cuda.problem(None) == why
    finally:
        # Not monkeypatch.delitem: it would note the fake module and put it back at teardown,
        # where every later test would find it (the delitem above restores the real one).
        sys.modules.pop("cupy", None)
        _cuda._import.cache_clear()
        _cuda._count.cache_clear()


# -- nnx info's diagnosis of the CUDA setup ---------------------------------------------------


def _problems(found: list[dict]) -> list[str]:
    return [f["finding"] for f in found if not f["ok"]]


def test_two_cupy_wheels_are_named_by_the_diagnosis(tmp_path, monkeypatch):
    """Two distributions really installed (their metadata on sys.path), as pip leaves them."""
    for name in ("cupy_cuda12x", "cupy_cuda13x"):
        info = tmp_path / f"{name}-14.2.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 14.2.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    wheels = cuda_setup.installed_wheels()
    assert "cupy-cuda12x 14.2.0" in wheels and "cupy-cuda13x 14.2.0" in wheels
    found = cuda_setup.diagnose()
    assert found[0]["finding"].startswith("several CuPy wheels are installed at once: ")
    assert "cupy-cuda12x 14.2.0" in found[0]["finding"] and "pip uninstall" in found[0]["fix"]


def test_no_cupy_is_one_finding_with_the_install_command(monkeypatch):
    monkeypatch.setattr(cuda_setup, "installed_wheels", lambda: [])
    (found,) = cuda_setup.diagnose()
    assert not found["ok"] and found["finding"].startswith("CuPy is not installed")
    assert 'pip install ".[cuda12]"' in found["fix"]


def test_a_kernel_cache_that_cannot_be_written_is_found(machine, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cuda_setup.kernel_cache_problem(str(tmp_path / "cache" / "kernels")) == ""
    why = cuda_setup.kernel_cache_problem(str(blocker / "kernels"))
    assert why == f"the kernel cache directory {blocker / 'kernels'} is not a directory ({blocker})"
    monkeypatch.setattr("os.access", lambda path, mode: False)  # a read-only mount
    why = cuda_setup.kernel_cache_problem(str(tmp_path))
    assert why == f"the kernel cache directory {tmp_path} is not writable ({tmp_path})"
    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path))
    machine(devices=1)  # CuPy imports (without it the diagnosis stops at its absence)
    monkeypatch.setattr(cuda_setup, "installed_wheels", lambda: ["cupy-cuda13x 14.2.0"])
    monkeypatch.setattr(cuda_setup, "load_library", lambda name: "")
    found = cuda_setup.diagnose()
    cache = next(f for f in found if "kernel cache" in f["finding"])
    assert not cache["ok"] and "CUPY_CACHE_DIR" in cache["fix"]


def test_the_diagnosis_of_a_working_gpu_times_its_first_kernels(machine, monkeypatch):
    machine(devices=1)
    monkeypatch.setattr(cuda_setup, "installed_wheels", lambda: ["cupy-cuda13x 14.2.0"])
    monkeypatch.setattr(cuda_setup, "load_library", lambda name: "")
    found = cuda_setup.diagnose()
    assert _problems(found) == []
    assert any(f["finding"].startswith("cuda:0: the self-test's first kernels compiled and ran "
                                       "in ") for f in found)
    assert "this CuPy needs CUDA 13.0; the driver supports CUDA 13.0" in [
        f["finding"] for f in found]


def test_the_diagnosis_names_an_old_driver_and_missing_libraries(machine, monkeypatch):
    machine(devices=1, driver=12080, runtime=13000)
    monkeypatch.setattr(cuda_setup, "installed_wheels", lambda: ["cupy-cuda13x 14.2.0"])
    monkeypatch.setattr(cuda_setup, "load_library", lambda name: f"ImportError: lib{name}.so.13")
    monkeypatch.delenv("CUDA_PATH", raising=False)
    problems = _problems(cuda_setup.diagnose())
    assert "this CuPy needs CUDA 13.0; the driver supports CUDA 12.8" in problems
    assert "NVRTC (compiles CuPy's kernels) does not load: ImportError: libnvrtc.so.13" in problems
    assert "cuBLAS (matrix products) does not load: ImportError: libcublas.so.13" in problems
    assert "CUDA_PATH is not set, and NVRTC was not found without it" in problems


def test_nnx_info_prints_the_diagnosis_one_line_per_finding():
    proc = subprocess.run([sys.executable, "-m", "nnx.cli", "info"], capture_output=True,
                          text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("gpu setup")]
    assert proc.returncode == 0 and lines
    assert all(": " in line for line in lines)
    proc = subprocess.run([sys.executable, "-m", "nnx.cli", "info", "--json"],
                          capture_output=True, text=True, timeout=120)
    import json

    found = json.loads(proc.stdout)["gpu_setup"]
    assert len(found) == len(lines) and all(set(f) == {"ok", "finding", "fix"} for f in found)
