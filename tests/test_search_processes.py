"""nnx search as a user runs it, in its own process: a SIGTERM, then the same command again,
continues the study; --jobs 2 runs the requested trials in two processes of one BLAS thread.

What ran is read from the study itself, through Optuna, not from nnx's own summary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT

optuna = pytest.importorskip("optuna")

STUDY = "nnx-search"


def search_command(out, mnist_dir, *flags: str) -> list[str]:
    return [sys.executable, "-m", "nnx.cli", "search", "--out", str(out), "--data-dir",
            str(mnist_dir), "--no-download", *flags]


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def ran(study) -> list:
    """The trials that ran to their end: not cut short by a stop, not started past the
    requested number."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state.is_finished() and not t.user_attrs.get("stopped")
            and not t.user_attrs.get("surplus")]


def load(storage: str, name: str = STUDY):
    # The driver the tests install (a bare postgresql:// is psycopg 3 to SQLAlchemy 2.1).
    storage = storage.replace("postgresql://", "postgresql+psycopg2://", 1)
    return optuna.load_study(study_name=name, storage=storage)


def test_a_sigterm_stops_the_search_and_the_same_command_continues_it(tmp_path, mnist_dir):
    out = tmp_path / "s"
    argv = search_command(out, mnist_dir, "--trials", "10", "--epochs", "50")
    proc = start(argv)
    deadline, line = time.monotonic() + 180, ""
    while not line.startswith("trial ") and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
    assert line.startswith("trial "), proc.stderr.read()  # one trial finished
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "nnx search: interrupted"
    assert "run the same command again to continue the search" in stdout

    storage = f"sqlite:///{out / 'study.db'}"
    kept = {t.number: (t.params, t.value) for t in ran(load(storage))}
    assert 1 <= len(kept) < 10, kept

    again = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert f"{len(kept)} of 10 trials done" in again.stdout.splitlines()[0]
    final = ran(load(storage))
    assert len(final) == 10
    assert {t.number: (t.params, t.value) for t in final if t.number in kept} == kept
    assert len({(t.params["lr"], t.params["weight_decay"]) for t in final}) == 10  # none twice


@pytest.mark.skipif(hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < 2,
                    reason="--jobs 2 needs two cores")
def test_two_jobs_run_the_requested_trials_with_one_blas_thread_each(tmp_path, mnist_dir):
    out = tmp_path / "s"
    proc = subprocess.run(search_command(out, mnist_dir, "--trials", "6", "--epochs", "5",
                                         "--jobs", "2"),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    study = load(f"sqlite:///{out / 'study.db'}")
    trials = ran(study)
    assert len(trials) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # Each job's BLAS, as threadpoolctl saw it inside the trial: one thread, where the
    # library's default is one per core.
    assert [t.user_attrs["blas_threads"] for t in trials] == [1] * 6
    printed = [line.split(":")[0] for line in proc.stdout.splitlines()
               if line.startswith("trial ")]
    assert sorted(printed) == sorted(f"trial {t.number}" for t in trials)  # each once


def test_two_processes_on_one_postgresql_study_run_the_requested_trials_once(tmp_path,
                                                                            mnist_dir,
                                                                            postgres_url):
    flags = ("--trials", "8", "--epochs", "10", "--storage", postgres_url, "--study", "shared")
    first = start(search_command(tmp_path / "a", mnist_dir, *flags))
    # The second starts once the first has made the study: two processes creating the
    # tables at the same instant is a race of the storage's own, not of the search.
    line = first.stdout.readline()
    assert line.startswith("study 'shared' in postgresql://"), line + first.stderr.read()
    second = start(search_command(tmp_path / "b", mnist_dir, *flags))
    outputs = []
    for proc, head in ((first, line), (second, "")):
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0 and "Traceback" not in stderr, stderr
        outputs.append(head + stdout)

    trials = ran(load(postgres_url, "shared"))
    assert len(trials) == 8
    assert len({t.number for t in trials}) == 8
    assert len({(t.params["lr"], t.params["weight_decay"]) for t in trials}) == 8
    printed = [{int(row.split(":")[0].split()[1]) for row in out.splitlines()
                if row.startswith("trial ")} for out in outputs]
    assert not printed[0] & printed[1]  # no trial ran in both
    assert printed[0] | printed[1] == {t.number for t in trials}
    for out in outputs:
        assert "8 of 8 trials done" in out
