"""The xp layer: device strings, auto's choice, moving arrays, and catching NumPy leaks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import backends
from backends import BackendError, get_backend, parse_device
from tests.conftest import assert_on


@pytest.mark.parametrize(
    ("text", "library", "kind", "index"),
    [
        ("cpu", "numpy", "", None),
        ("NumPy", "numpy", "", None),
        (" auto ", "auto", "", None),
        ("cuda", "cupy", "cuda", None),
        ("gpu", "cupy", "cuda", None),
        ("cuda:1", "cupy", "cuda", 1),
        ("GPU:0", "cupy", "cuda", 0),
        ("strict", "strict", "", None),
        ("torch", "torch", "cpu", None),
        ("torch:cpu", "torch", "cpu", None),
        ("Torch:CUDA", "torch", "cuda", None),
        ("torch:cuda:2", "torch", "cuda", 2),
        ("torch:mps", "torch", "mps", None),
    ],
)
def test_parse_device_accepts_the_documented_spellings(text, library, kind, index):
    spec = parse_device(text)
    assert (spec.library, spec.kind, spec.index) == (library, kind, index)


@pytest.mark.parametrize("text", ["tpu", "cuda:x", "cuda:-1", "cpu:0", "cuda:", "metal", "jax:0",
                                  "torch:", "torch:cuda:x", "torch:tpu", "torch:mps:1"])
def test_unknown_device_is_one_sentence_listing_what_is_accepted(text):
    with pytest.raises(BackendError) as info:
        parse_device(text)
    message = str(info.value)
    assert repr(text) in message and "cpu" in message and "cuda:N" in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_blank_env_var_means_unset(monkeypatch, value):
    monkeypatch.setenv(backends.ENV_VAR, value)
    assert parse_device(None).library == "auto"


def test_env_var_chooses_the_default(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "strict")
    assert get_backend().device == "strict"
    monkeypatch.setenv(backends.ENV_VAR, "tpu")
    with pytest.raises(BackendError, match="tpu"):
        get_backend()


def test_auto_says_what_it_chose_and_why():
    be = get_backend("auto")
    assert be.device in backends.available()
    assert be.reason.startswith("auto chose")


def test_cuda_where_none_answers_is_a_clear_error_never_a_cpu_run():
    if any(d.startswith("cuda") for d in backends.available()):
        pytest.skip("a CUDA device answers here: the error path cannot be reached")
    for text in ("cuda", "gpu", "cuda:0"):
        with pytest.raises(BackendError) as info:
            get_backend(text)
        message = str(info.value)
        assert "CuPy" in message
        assert ".[cuda12]" in message or "driver" in message


def test_cuda_index_beyond_the_devices_present_is_refused():
    with pytest.raises(BackendError, match="cuda:99|CuPy"):
        get_backend("cuda:99")


def test_available_always_has_cpu_and_only_working_devices():
    devices = backends.available()
    assert devices[0] == "cpu"
    assert "strict" not in devices and "strict" in backends.available(include_strict=True)


def test_round_trip_lives_on_the_device(backend):
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    x = backend.asarray(host, dtype=backend.dtype)
    assert_on(backend, x)
    assert x.dtype == backend.dtype
    y = backend.xp.sum(x * 2.0, axis=0)
    assert_on(backend, y)
    np.testing.assert_allclose(backend.to_numpy(y), host.sum(axis=0) * 2.0)
    backend.synchronize()


def test_dtype_spellings_resolve_to_the_backend_dtype(backend):
    for spelling in ("float32", np.float32, np.dtype("float32"), backend.xp.float32):
        assert backend.resolve_dtype(spelling) == backend.xp.float32
    assert backend.resolve_dtype(None) == backend.dtype
    with pytest.raises(BackendError, match="float16"):
        backend.resolve_dtype("float16")


def test_foreign_arrays_are_refused_by_check(backend):
    if backend.numpy_native:
        foreign, what = get_backend("strict").asarray(np.zeros(3)), "an array on"
    else:
        foreign, what = np.zeros(3), "a NumPy array on the host"
    with pytest.raises(BackendError, match=f"weights is {what}"):
        backend.check(foreign, "weights")


def test_strict_device_catches_an_accidental_numpy_call():
    be = get_backend("strict")
    x = be.asarray(np.ones(3))
    with pytest.raises(RuntimeError):
        np.sum(x)
    with pytest.raises(RuntimeError):
        np.asarray(x)


def test_timing_returns_one_positive_figure_per_repeat(backend):
    x = backend.asarray(np.ones((50, 50)), dtype=backend.dtype)
    times = backend.time(lambda: backend.xp.matmul(x, x), repeat=4, warmup=1)
    assert times.shape == (4,) and np.all(times > 0)


def test_memory_free_is_a_positive_byte_count_within_the_device(backend):
    free = backend.memory_free()
    assert isinstance(free, int) and free > 0
    if backend.is_gpu:
        total = 2**40  # no GPU has a TiB
    else:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert free <= total


def test_event_times_are_one_figure_per_call(backend):
    from nnx.bench.timing import cuda_event_times

    x = backend.asarray(np.ones((50, 50)), dtype=backend.dtype)
    times = cuda_event_times(backend, lambda: backend.xp.matmul(x, x), repeat=3, warmup=1)
    if not backend.has_events:
        assert times is None
    else:
        assert times.shape == (3,) and np.all(times > 0)


def test_nnx_info_reports_versions_and_the_auto_choice():
    out = subprocess.run(
        [sys.executable, "-m", "nnx.cli", "info"], capture_output=True, text=True, check=True
    ).stdout
    assert "numpy" in out and "resolves_to" in out and "reason" in out


def test_nnx_info_json_is_valid():
    import json

    out = subprocess.run(
        [sys.executable, "-m", "nnx.cli", "info", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout
    info = json.loads(out)
    assert info["numpy"] == np.__version__
    assert info["resolves_to"] in backends.available()


@pytest.mark.parametrize(("policy", "changed"), [
    ("always defer defer+madvise [madvise] never\n", True),
    ("always defer [defer+madvise] madvise never\n", True),
    ("always [defer] defer+madvise madvise never\n", False),
    ("[always] defer defer+madvise madvise never\n", False),
])
def test_huge_page_advice_pauses_only_where_faults_would_compact(tmp_path, monkeypatch,
                                                                  policy, changed):
    multiarray = np._core.multiarray
    before = multiarray._get_madvise_hugepage()
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    (tmp_path / "defrag").write_text(policy)
    multiarray._set_madvise_hugepage(True)
    try:
        with backends.small_pages(str(tmp_path / "defrag")) as paused:
            assert paused is changed
            assert multiarray._get_madvise_hugepage() is not changed
        assert multiarray._get_madvise_hugepage() is True  # restored after the block
    finally:
        multiarray._set_madvise_hugepage(before)


def test_a_users_huge_page_choice_or_an_unknown_kernel_is_left_alone(tmp_path, monkeypatch):
    (tmp_path / "defrag").write_text("always defer defer+madvise [madvise] never\n")
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    with backends.small_pages(str(tmp_path / "defrag")) as paused:
        assert paused is False
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE")
    with backends.small_pages(str(tmp_path / "missing")) as paused:
        assert paused is False


# -- BLAS threads: one for a training step's small products, all for the rest ---------------


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_small_work_runs_on_one_blas_thread_and_large_work_on_all(monkeypatch):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                 "BLIS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = _blas_threads()
    assert before, "NumPy's BLAS is found"
    with get_backend("cpu").small_work() as small:
        assert _blas_threads() == [1] * len(before)
        with small.paused():
            assert _blas_threads() == before
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before
    with get_backend("cpu").small_work(enabled=False):
        assert _blas_threads() == before


def test_a_users_thread_setting_wins_and_one_no_blas_can_use_is_refused(monkeypatch):
    before = _blas_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with get_backend("cpu").small_work():
        assert _blas_threads() == before  # the user chose: nnx changes nothing
    assert backends.machine_info()["blas_threads"] == "as OMP_NUM_THREADS=2 says"
    for bad in ("abc", "0", "-1"):
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", bad)
        with pytest.raises(BackendError, match=rf"^OPENBLAS_NUM_THREADS={bad!r} is not a number "
                                               "of threads NumPy's BLAS can use; set it"):
            get_backend("cpu")
        with pytest.raises(BackendError, match="OPENBLAS_NUM_THREADS"):
            get_backend("auto")  # the CPU fallback's own error, not a list of every device's


def test_training_steps_run_on_one_thread_and_evaluations_on_all(monkeypatch):
    import nnx.training
    from nnx.network import MultiLayerNet

    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                 "BLIS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    seen: dict[str, set] = {"step": set(), "evaluation": set()}
    gradient, evaluate = MultiLayerNet.gradient, nnx.training._evaluate

    def spy_gradient(self, x, t):
        seen["step"].add(tuple(_blas_threads()))
        return gradient(self, x, t)

    def spy_evaluate(*args, **kwargs):
        seen["evaluation"].add(tuple(_blas_threads()))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(MultiLayerNet, "gradient", spy_gradient)
    monkeypatch.setattr(nnx.training, "_evaluate", spy_evaluate)
    rng = np.random.default_rng(0)
    data = tuple((rng.random((200, 12)), rng.integers(0, 10, 200)) for _ in range(2))
    config = nnx.training.TrainConfig(device="cpu", iters=20, batch_size=10, hidden=(4,),
                                      eval_every=10)
    nnx.training.train(config, data, log=lambda _: None, progress=False)
    assert seen["step"] == {tuple([1] * len(_blas_threads()))}
    assert seen["evaluation"] == {tuple(_blas_threads())}
