"""The diagnosis of a CUDA setup for ``nnx info``: one finding per line, each problem with
its fix. What CuPy users trip over most is installation -- several CuPy wheels at once, a
driver older than the wheel's CUDA, NVRTC or cuBLAS missing, ``CUDA_PATH`` unset, a kernel
cache that cannot be written -- and each is named here with the command that fixes it.
"""

from __future__ import annotations

from typing import Any

from backends import _cuda  # through the module: the tests replace its seams
from backends._cuda import DRIVER_HINT, NO_DRIVER, OLD_DRIVER_HINT

KERNEL_CACHE = "~/.cupy/kernel_cache"  # CuPy's default for CUPY_CACHE_DIR


def _finding(ok: bool, text: str, fix: str = "") -> dict[str, Any]:
    return {"ok": ok, "finding": text, "fix": fix}


def installed_wheels() -> list[str]:
    """The CuPy distributions installed, as "name version" (the seam the tests replace)."""
    import importlib.metadata

    names = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "cupy" or name.startswith("cupy-"):
            names[name] = f"{name} {dist.version}"
    return sorted(names.values())


def load_library(name: str) -> str:
    """"" when CUDA's library ``name`` ("nvrtc", "cublas") loads, else why not (a seam)."""
    import importlib

    try:
        module = importlib.import_module(f"cupy_backends.cuda.libs.{name}")
        if name == "nvrtc":
            module.getVersion()
    except Exception as exc:  # CuPy raises ImportError or its own loader's errors
        return _cuda._short(exc)
    return ""


def kernel_cache_problem(path: str | None = None) -> str:
    """Why CuPy could not write its compiled kernels to its cache directory, or ""."""
    import os

    where = os.path.expanduser(path or os.environ.get("CUPY_CACHE_DIR") or KERNEL_CACHE)
    probe = where
    while probe and not os.path.exists(probe):  # CuPy makes the missing folders
        parent = os.path.dirname(probe)
        probe = "" if parent == probe else parent
    if probe and os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK):
        return ""
    what = "is not a directory" if probe and not os.path.isdir(probe) else "is not writable"
    return f"the kernel cache directory {where} {what} ({probe or 'no parent exists'})"


def diagnose() -> list[dict[str, Any]]:
    """Each fact of the CUDA setup that decides whether CuPy works, with a fix for each
    problem: the wheels installed, the driver against the wheel's CUDA, NVRTC and cuBLAS,
    CUDA_PATH, the kernel cache, and the time the first kernels took."""
    import os

    wheels, out = installed_wheels(), []
    hint = 'pip install ".[cuda12]" or ".[cuda13]", the one that matches nvidia-smi\'s CUDA'
    if not wheels:
        return [_finding(False, "CuPy is not installed: NumPy runs, no GPU", hint)]
    if len(wheels) > 1:
        out.append(_finding(False, f"several CuPy wheels are installed at once: "
                            f"{', '.join(wheels)}", f"pip uninstall all of them, then {hint}"))
    else:
        out.append(_finding(True, f"CuPy wheel: {wheels[0]}"))
    cupy, problem = _cuda._import()
    if cupy is None:
        out.append(_finding(False, problem.split("; ")[0], problem.partition("; ")[2]))
        return out
    runtime, driver = _cuda._runtime_version(cupy), _cuda._driver_version(cupy)
    needs = f"CUDA {_cuda._cuda_version(runtime)}" if runtime else "an unknown CUDA"
    if not driver:
        out.append(_finding(False, f"this CuPy needs {needs}, and {NO_DRIVER}", DRIVER_HINT))
    elif runtime and driver // 1000 < runtime // 1000:
        out.append(_finding(False, f"this CuPy needs {needs}; the driver supports CUDA "
                            f"{_cuda._cuda_version(driver)}", OLD_DRIVER_HINT))
    else:
        out.append(_finding(True, f"this CuPy needs {needs}; the driver supports CUDA "
                            f"{_cuda._cuda_version(driver)}"))
    missing = []
    for library, title in (("nvrtc", "NVRTC (compiles CuPy's kernels)"),
                           ("cublas", "cuBLAS (matrix products)")):
        why = load_library(library)
        out.append(_finding(not why, f"{title} " + (f"does not load: {why}" if why else "loads"),
                            f"CuPy's [ctk] extra provides it: {hint}" if why else ""))
        missing += [library] if why else []
    cuda_path = os.environ.get("CUDA_PATH", "")
    if "nvrtc" in missing and not cuda_path:
        out.append(_finding(False, "CUDA_PATH is not set, and NVRTC was not found without it",
                            "set CUDA_PATH to the CUDA toolkit's folder (e.g. /usr/local/cuda), "
                            "or install CuPy's [ctk] extra"))
    else:
        out.append(_finding(True, f"CUDA_PATH: {cuda_path or 'not set (not needed)'}"))
    cache = kernel_cache_problem()
    out.append(_finding(not cache, cache or "the kernel cache directory is writable",
                        "set CUPY_CACHE_DIR to a writable folder (in a read-only container, "
                        "one on a tmpfs or a volume)" if cache else ""))
    n, why = _cuda._count()
    for index in range(n):
        trouble = _cuda._device_problem(index)
        seconds = _cuda.SELF_TEST_SECONDS.get(index)
        if trouble:
            out.append(_finding(False, trouble.split("; ")[0], trouble.partition("; ")[2]))
        elif seconds is not None:
            out.append(_finding(True, f"cuda:{index}: the self-test's first kernels compiled "
                                f"and ran in {seconds:.2f} s (later runs read them from the "
                                "kernel cache)"))
    return out
