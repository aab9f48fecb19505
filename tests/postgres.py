"""A throwaway PostgreSQL server for the tests: a data folder and a socket folder of its own
under the system's temporary directory, no TCP port, trust authentication, removed at the end.

PostgreSQL refuses to run as root: under root the server runs as the ``postgres`` user where
one exists, else as ``nobody``, owning the folders it is given.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PORT = 5432  # only names the socket file: the server listens on no TCP port
USER = "nnx"


def server_dir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: PATH's, else the newest of Debian's."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    debian = Path("/usr/lib/postgresql")
    versions = [p for p in debian.glob("*/bin") if p.parent.name.isdigit()] \
        if debian.is_dir() else []
    candidates += sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    return None


def problem() -> str:
    """Why a test cannot run a PostgreSQL study here; "" when it can."""
    for module, package in (("optuna", "optuna"), ("psycopg2", "psycopg2-binary")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install {package})"
    if server_dir() is None:
        return ("no PostgreSQL server: initdb and postgres are neither on PATH nor in "
                "/usr/lib/postgresql/*/bin")
    return ""


def _as_server_user() -> dict:
    """Popen's arguments that run a program as the server's user (none unless root)."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(name)
            return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")


@contextlib.contextmanager
def server(timeout: float = 120) -> Iterator[str]:
    """Start a server; yield its SQLAlchemy URL; stop it and remove its folders."""
    bin_dir = server_dir()
    assert bin_dir is not None, problem()
    who = _as_server_user()
    home = Path(tempfile.mkdtemp(prefix="nnx-pg-"))  # short: a socket path has ~100 bytes
    if who:
        os.chown(home, who["user"], who["group"])
    data, log = home / "data", home / "server.log"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    run = {"cwd": home, "env": env, "capture_output": True, "text": True, **who}
    proc = None
    try:
        init = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", USER,
                               "--auth=trust", "--no-sync", "-E", "UTF8"], timeout=timeout,
                              **run)
        assert init.returncode == 0, f"initdb failed: {init.stderr}"
        with open(log, "w") as log_file:
            if who:
                os.chown(log, who["user"], who["group"])
            proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-k", str(home), "-p", str(PORT),
                 "-c", "listen_addresses=", "-c", "fsync=off"], cwd=home, env=env,
                stdout=log_file, stderr=subprocess.STDOUT, **who)
        _wait_ready(proc, home, log, timeout)
        yield f"postgresql://{USER}@/postgres?host={home}&port={PORT}"
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)  # the fast shutdown: clients are cut off
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(home, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen, home: Path, log: Path, timeout: float) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the PostgreSQL server ended: {log.read_text()}"
        try:
            psycopg2.connect(host=str(home), port=PORT, user=USER, dbname="postgres").close()
            return
        except psycopg2.OperationalError:
            assert time.monotonic() < deadline, f"no PostgreSQL server answered: {log.read_text()}"
            time.sleep(0.2)
