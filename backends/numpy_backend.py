"""NumPy on the host's CPU: the reference library, and the one every machine has.

BLAS threads: a training step's products are small (a batch of 100 rows against a
784x50 matrix). OpenBLAS runs them on every core and its threads wait for each other
spinning, so when another program holds part of a core every product waits for the
thread that lost it, and the run becomes ten times slower; on a quiet machine the second
thread gains little there. The steps therefore run on one BLAS thread
(:meth:`NumPyBackend.small_work`), and everything else -- evaluations of whole sets, the
numerical gradient's batched products -- on all of them. A user's own
``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` always wins.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from backends.base import Backend, BackendError, DeviceSpec

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS")


def user_threads() -> dict[str, str]:
    """The BLAS thread settings the user made in the environment; one that no BLAS can
    honour is a :class:`BackendError`."""
    chosen = {k: os.environ[k].strip() for k in THREAD_VARIABLES if os.environ.get(k, "").strip()}
    for name, value in chosen.items():
        first = value.split(",")[0]  # OMP_NUM_THREADS may list one count per nesting level
        if not first.isdigit() or int(first) < 1:
            raise BackendError(f"{name}={value!r} is not a number of threads NumPy's BLAS can "
                               "use; set it to a positive integer, or unset it to let nnx choose")
    return chosen


@functools.lru_cache(maxsize=1)
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class _SmallWork:
    """One BLAS thread inside the block, all of them again inside ``paused()``."""

    def __init__(self, enabled: bool) -> None:
        self._enabled, self._limiter = enabled, None

    def __enter__(self) -> _SmallWork:
        if self._enabled:
            self._limiter = _controller().limit(limits=1, user_api="blas")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Large work inside the block (an evaluation): every BLAS thread again."""
        if self._limiter is None:
            yield
            return
        self._limiter.restore_original_limits()
        try:
            yield
        finally:
            self._limiter = _controller().limit(limits=1, user_api="blas")


class NumPyBackend(Backend):
    """NumPy arrays through array-api-compat's NumPy namespace."""

    library = "numpy"
    prefixes = ("cpu", "numpy")
    spelling = "cpu (or numpy)"
    numpy_native = True

    @classmethod
    def asked(cls, spec: DeviceSpec) -> str:
        return "the CPU"

    @classmethod
    def create(cls, spec: DeviceSpec, dtype: Any, reason: str) -> Backend:
        import array_api_compat.numpy as xp

        user_threads()  # a setting no BLAS can honour fails here, before any work
        return cls("cpu", xp, xp.float64, reason, array_device="cpu").with_dtype(dtype)

    @classmethod
    def findings(cls) -> dict[str, Any]:
        try:
            chosen = user_threads()
        except BackendError as exc:
            return {"blas_threads": str(exc)}
        blas = [i for i in _controller().info() if i["user_api"] == "blas"]
        name = ", ".join(f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
                         for i in blas) or "none found"
        if chosen:
            choice = "as " + ", ".join(f"{k}={v}" for k, v in chosen.items()) + " says"
        else:
            choice = "1 for a training step's small products, all for everything else"
        return {"blas": name, "blas_threads": choice}

    def small_work(self, enabled: bool = True) -> _SmallWork:
        """A block of small products (training steps): one BLAS thread, unless the user
        chose the threads; ``paused()`` inside it gives large work every thread."""
        return _SmallWork(enabled=enabled and not user_threads())

    @classmethod
    def devices(cls) -> list[str]:
        return ["cpu"]

    @classmethod
    def array_words(cls, x: Any) -> str | None:
        return "a NumPy array on the host" if isinstance(x, np.ndarray) else None

    @classmethod
    def out_of_memory(cls, exc: BaseException) -> bool:
        return isinstance(exc, MemoryError)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        return np.asarray(x, dtype=None if dtype is None else self.resolve_dtype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        self.check(x, "array")
        return np.asarray(x)

    def owns(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))  # reductions return NumPy scalars

    def describe(self) -> str:
        from backends.info import cpu_name

        try:
            blas = f" with {np.show_config(mode='dicts')['Build Dependencies']['blas']['name']}"
        except Exception:  # older NumPy or an unusual build: the BLAS name is a nicety
            blas = ""
        return f"{cpu_name()}; NumPy {np.__version__}{blas}"
