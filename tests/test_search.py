"""nnx search at a tiny scale: the study stored and continued, bad storage and a foreign
study refused in one sentence, a diverging trial recorded as failed."""

from __future__ import annotations

import importlib.util
import json

import pytest

pytest.importorskip("optuna")

from nnx.cli import main as nnx_main  # noqa: E402


def _search(tmp_path, mnist_dir, *flags):
    return nnx_main(["search", "--trials", "3", "--epochs", "2", "--out", str(tmp_path / "s"),
                     "--data-dir", str(mnist_dir), "--no-download", *flags])


def test_a_search_writes_its_results_and_a_second_run_continues_it(tmp_path, mnist_dir,
                                                                   capsys):
    assert _search(tmp_path, mnist_dir) == 0
    out = tmp_path / "s"
    for name in ("search.json", "best.txt", "best_curves.png", "history.png", "study.db"):
        assert (out / name).exists(), name
    assert json.loads((out / "search.json").read_text())["counted"] == 3
    assert _search(tmp_path, mnist_dir, "--trials", "5") == 0
    trials = json.loads((out / "search.json").read_text())["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3, 4]  # the first three kept, none twice


def test_a_study_of_another_setting_is_refused(tmp_path, mnist_dir, capsys):
    assert _search(tmp_path, mnist_dir) == 0
    capsys.readouterr()
    assert _search(tmp_path, mnist_dir, "--epochs", "3") == 2
    assert "belongs to another search space" in capsys.readouterr().err


def test_an_unreachable_storage_is_one_sentence_with_the_password_masked(tmp_path, mnist_dir,
                                                                         capsys):
    code = _search(tmp_path, mnist_dir, "--storage",
                   "postgresql://me:secret@127.0.0.1:9/none")
    err = capsys.readouterr().err
    # Without a PostgreSQL driver the sentence says what to install instead.
    why = ("cannot reach the study storage" if importlib.util.find_spec("psycopg2")
           else "needs a database driver")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert why in err and "postgresql://me:***@127.0.0.1:9/none" in err, err
    assert "secret" not in err


def test_a_diverging_trial_is_recorded_as_failed(tmp_path, mnist_dir, monkeypatch, capsys):
    from nnx import search

    monkeypatch.setitem(search.SPACE, "lr", (1e3, 1e4))  # far past any stable rate
    assert _search(tmp_path, mnist_dir, "--trials", "2") == 0
    trials = json.loads((tmp_path / "s" / "search.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["FAIL", "FAIL"] and "diverged" in trials[0]


def test_a_study_file_that_is_a_link_is_refused_and_its_target_untouched(tmp_path, mnist_dir,
                                                                         capsys):
    target = tmp_path / "elsewhere.db"
    target.write_bytes(b"")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.db").symlink_to(target)
    assert _search(tmp_path, mnist_dir) == 2
    err = capsys.readouterr().err
    assert "study.db is a symbolic link" in err and len(err.strip().splitlines()) == 1, err
    assert target.read_bytes() == b""


@pytest.mark.parametrize("jobs", ["1000", "99999999999999999999"])
def test_more_jobs_than_cores_are_refused_before_any_process_starts(tmp_path, mnist_dir, capsys,
                                                                    jobs):
    assert _search(tmp_path, mnist_dir, "--jobs", jobs) == 2
    err = capsys.readouterr().err
    assert f"--jobs {jobs} is more than the" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()  # refused before --out is made


@pytest.mark.parametrize("name", ["", "   ", "x" * 513, "a\nb"])
def test_a_study_name_that_is_no_name_is_one_sentence_before_anything_is_made(
        tmp_path, mnist_dir, capsys, name):
    assert _search(tmp_path, mnist_dir, "--study", name) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a study name" in err, err
    assert not (tmp_path / "s").exists()
