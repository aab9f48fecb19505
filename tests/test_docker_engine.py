"""The CPU image on a real Docker engine, used as the README's Docker section uses it.

One image is built per session, for the user running the tests (``NNX_UID``/``NNX_GID``,
as the README builds it), and every test starts containers from it: ``info``; a short
``train`` with MNIST mounted read-only, its run kept on the host through a bind mount,
then ``evaluate`` of that run in a new container; ``docker stop`` of a longer run and
``--resume`` in a new container; a stop during the book's one-coordinate loop; a
read-only root; the default image (UID 1000) on a fresh checkout's missing ``runs``
folder; other UIDs and GIDs; a rebuild after a source edit, which must reuse the
dependency layer. Containers run with ``--network none``: nothing is downloaded.

Without an engine every test here is skipped with the reason; ``NNX_REQUIRE_DOCKER=1``
(CI sets it once it has started one) turns that skip into a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.test_docker import CPU, engine_problem, explain

REQUIRE = "NNX_REQUIRE_DOCKER"
IMAGE = "nnx-test:cpu"  # built for the user running the tests
DEFAULT = "nnx-test:cpu-default"  # built without build arguments: UID 1000
# Generous: a busy 2-core machine builds and starts containers slowly.
BUILD_TIMEOUT, RUN_TIMEOUT = 1200, 300


PROBLEM = engine_problem()
if PROBLEM and os.environ.get(REQUIRE, "").strip() == "1":
    pytest.fail(f"{REQUIRE}=1 but {PROBLEM}", pytrace=False)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(PROBLEM), reason=PROBLEM)]


def docker(*args: str, timeout: float = RUN_TIMEOUT, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "BUILDKIT_PROGRESS": "plain"}  # BuildKit's log names cached steps
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, **kwargs)


def build(tag: str, *build_args: str, context: Path = ROOT) -> subprocess.CompletedProcess:
    args = [a for kv in build_args for a in ("--build-arg", kv)]
    proc = docker("build", "-f", str(context / CPU.relative_to(ROOT)), *args, "-t", tag,
                  str(context), timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, explain(proc)
    return proc


def nnx(image: str, *argv: str, mounts: list[str] = (), flags: list[str] = ()):
    """``docker run --rm`` of the image's entrypoint, offline."""
    return docker("run", "--rm", "--network", "none", *flags, *mounts, image, *argv)


def bind(runs: Path) -> list[str]:
    return ["-v", f"{runs}:/work/runs"]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, explain(proc)
    assert "Traceback" not in proc.stderr, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, explain(proc)
    return lines[0]


def only_run(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


def history(run: Path) -> dict:
    return json.loads((run / "history.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def image() -> str:
    """The CPU image, built as the README says: for the user who runs it."""
    build(IMAGE, f"NNX_UID={os.getuid()}", f"NNX_GID={os.getgid()}")
    return IMAGE


@pytest.fixture(scope="session")
def default_image(image: str) -> str:
    """The image without build arguments (only the user's layers differ from ``image``)."""
    build(DEFAULT)
    return DEFAULT


@pytest.fixture
def mnist(mnist_dir: Path) -> list[str]:
    """The real MNIST files mounted read-only and named by NNX_DATA_DIR, as offline."""
    return ["-v", f"{mnist_dir}:/mnist:ro", "-e", "NNX_DATA_DIR=/mnist"]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """The README's ``mkdir -p runs``, made by the user running the tests."""
    path = tmp_path / "runs"
    path.mkdir()
    return path


class Detached:
    """A container started with ``docker run -d``, removed whatever happens."""

    def __init__(self, image: str, argv: list[str], mounts: list[str]) -> None:
        self.name = f"nnx-test-{uuid.uuid4().hex[:12]}"
        proc = docker("run", "-d", "--network", "none", "--name", self.name, *mounts, image,
                      *argv)
        assert proc.returncode == 0, explain(proc)

    def logs(self) -> str:
        proc = docker("logs", self.name)
        return proc.stdout + proc.stderr

    def wait_for(self, text: str, timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.logs():
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.logs()}"
            assert self.running(), f"the container ended before {text!r}:\n{self.logs()}"
            time.sleep(0.2)

    def running(self) -> bool:
        proc = docker("inspect", "-f", "{{.State.Running}}", self.name)
        return proc.stdout.strip() == "true"

    def stop(self) -> tuple[float, int]:
        """``docker stop`` with time to spare; its duration and the container's exit code."""
        start = time.monotonic()
        proc = docker("stop", "-t", "60", self.name)
        took = time.monotonic() - start
        assert proc.returncode == 0, explain(proc)
        code = docker("inspect", "-f", "{{.State.ExitCode}}", self.name).stdout.strip()
        return took, int(code)

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name)


@pytest.fixture
def detached():
    started: list[Detached] = []

    def start(image: str, argv: list[str], mounts: list[str]) -> Detached:
        started.append(Detached(image, argv, mounts))
        return started[-1]

    yield start
    for container in started:
        container.remove()


# -- the image as a user meets it -------------------------------------------------------------
def test_info_sees_the_cpu_only(image: str):
    proc = nnx(image, "info", "--json")
    assert proc.returncode == 0, explain(proc)
    info = json.loads(proc.stdout)
    assert info["cupy"] is None and info["resolves_to"] == "cpu"


def test_the_default_user_is_not_root_and_no_build_tree_is_left(default_image: str):
    proc = docker("run", "--rm", "--entrypoint", "sh", default_image, "-c",
                  "id -u; id -g; pwd; ls -A / /tmp")
    assert proc.returncode == 0, explain(proc)
    uid, gid, workdir, *listing = proc.stdout.strip().splitlines()
    assert (uid, gid, workdir) == ("1000", "1000", "/work")
    assert "src" not in listing and listing[-1] == "/tmp:", f"a build tree is left: {listing}"


def test_train_keeps_its_run_on_the_host_and_evaluate_reads_it(image: str, runs: Path,
                                                               mnist: list[str]):
    proc = nnx(image, "train", "--no-download", "--iters", "30", "--eval-every", "15",
               mounts=[*mnist, *bind(runs)])
    assert proc.returncode == 0, explain(proc)
    run = only_run(runs)
    assert f"saved completed run to runs/{run.name}" in proc.stdout
    assert history(run)["status"] == "completed"
    assert (run / "params.npz").is_file() and (run / "accuracy.png").is_file()
    proc = nnx(image, "evaluate", f"runs/{run.name}", mounts=[*mnist, *bind(runs)])
    assert proc.returncode == 0, explain(proc)
    evaluation = json.loads((run / "evaluation.json").read_text(encoding="utf-8"))
    assert evaluation["accuracy"] == evaluation["final_test_acc"] is not None
    assert (run / "confusion.png").is_file()


def test_a_read_only_root_trains_with_the_volumes_and_a_tmpfs(image: str, runs: Path,
                                                              mnist: list[str]):
    """The README's ``--read-only --tmpfs /tmp``: the cache volume is anonymous here."""
    proc = nnx(image, "train", "--no-download", "--iters", "10", mounts=[*mnist, *bind(runs)],
               flags=["--read-only", "--tmpfs", "/tmp"])
    assert proc.returncode == 0, explain(proc)
    run = only_run(runs)
    assert history(run)["status"] == "completed" and (run / "loss.png").is_file()


def test_docker_stop_saves_and_a_new_container_resumes(image: str, runs: Path, detached,
                                                       mnist: list[str]):
    mounts = [*mnist, *bind(runs)]
    container = detached(image, ["train", "--no-download", "--iters", "2000", "--no-plots",
                                 "--eval-every", "250", "--out", "runs/long"], mounts)
    container.wait_for("iter    250")
    took, code = container.stop()
    assert code == 143, container.logs()
    assert took < 10, f"docker stop took {took:.1f} s: its default 10 s would have killed it"
    assert container.logs().strip().splitlines()[-1] == "nnx train: interrupted"
    done = len(history(runs / "long")["loss"])
    assert history(runs / "long")["status"] == "interrupted" and 250 <= done < 2000
    proc = nnx(image, "train", "--resume", "runs/long", "--no-download", mounts=mounts)
    assert proc.returncode == 0, explain(proc)
    assert f"resumed at iteration {done}" in proc.stdout
    after = history(runs / "long")
    assert after["status"] == "completed" and len(after["loss"]) == 2000


def test_a_stop_during_the_books_loop_takes_effect_at_once(image: str, runs: Path, detached,
                                                          mnist: list[str]):
    """One iteration of the loop takes 14 s or more here: the stop must not wait for it."""
    container = detached(image, ["train", "--no-download", "--grad", "numerical",
                                 "--numerical-method", "loop", "--iters", "2", "--no-plots",
                                 "--out", "runs/loop"], [*mnist, *bind(runs)])
    container.wait_for("numerical gradient, 2 iterations")
    time.sleep(2)  # well inside the first iteration's gradient
    took, code = container.stop()
    assert code == 143, container.logs()
    assert took < 10, f"docker stop took {took:.1f} s: its default 10 s would have killed it"
    assert history(runs / "loop")["status"] == "interrupted"
    assert (runs / "loop" / "checkpoint.npz").is_file()


# -- what goes wrong, in one sentence ----------------------------------------------------------
def test_a_fresh_checkouts_missing_runs_folder_is_one_sentence(default_image: str,
                                                               tmp_path: Path, mnist: list[str]):
    """Docker makes a missing bind-mount source owned by root, which UID 1000 cannot write."""
    runs = tmp_path / "runs"
    line = one_line_error(nnx(default_image, "train", "--no-download", "--iters", "5",
                              mounts=[*mnist, *bind(runs)]))
    assert "permission denied" in line and "UID 1000" in line and "chown" in line, line
    assert runs.is_dir() and not any(runs.iterdir())


def test_offline_without_mnist_is_one_sentence(image: str):
    line = one_line_error(nnx(image, "train", "--iters", "5"))
    assert "NNX_DATA_DIR" in line, line


# -- building -------------------------------------------------------------------------------
@pytest.mark.parametrize(("uid", "gid"), [("0", "0"), ("33", "33"), ("4242", "100")],
                         ids=["root", "existing-user", "existing-group"])
def test_any_uid_and_gid_build_and_train(image: str, uid: str, gid: str, mnist: list[str]):
    tag = f"nnx-test:uid{uid}"
    build(tag, f"NNX_UID={uid}", f"NNX_GID={gid}")
    try:
        proc = docker("run", "--rm", "--entrypoint", "id", tag)
        assert re.match(rf"uid={uid}\(\w[\w-]*\) gid={gid}\(", proc.stdout), explain(proc)
        proc = nnx(tag, "train", "--no-download", "--iters", "5", "--no-plots", mounts=mnist)
        assert proc.returncode == 0, explain(proc)
    finally:
        docker("rmi", tag)


def test_a_source_edit_reuses_the_dependency_layer(image: str, tmp_path: Path):
    context = tmp_path / "context"
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        context.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, context / name)
    for name in ("docker", "backends", "nnx"):
        shutil.copytree(ROOT / name, context / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    with (context / "nnx" / "errors.py").open("a", encoding="utf-8") as f:
        f.write("# a one-line edit\n")
    tag = "nnx-test:edited"
    try:
        log = build(tag, context=context).stdout
    finally:
        docker("rmi", tag)
    steps = _steps(log)
    (deps,) = [s for s in steps if "-r requirements.txt" in s]
    (package,) = [s for s in steps if "--no-deps" in s]
    assert _cached(deps), f"the dependency step ran again:\n{deps}"
    assert not _cached(package), f"the package step was not rebuilt:\n{package}"
    assert "Downloading" not in log


def _steps(log: str) -> list[str]:
    """The build log cut into steps: the legacy builder's "Step N/M" or BuildKit's "#N"."""
    marker = r"^Step \d+/\d+ :" if re.search(r"^Step \d+/\d+ :", log, re.M) else r"^#\d+ \["
    parts = re.split(f"(?={marker})", log, flags=re.M)
    return [p for p in parts if re.match(marker, p)]


def _cached(step: str) -> bool:
    return "---> Using cache" in step or re.search(r"^#\d+ CACHED", step, re.M) is not None
