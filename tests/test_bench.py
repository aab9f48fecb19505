"""The gradient benchmarks: their arithmetic, their reference implementations, and tiny
runs of both programs in a subprocess. No timing thresholds: only that figures appear."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import backends
from backends import get_backend
from nnx.bench.cases import (
    DataSource,
    allocate_sample,
    extrapolate,
    make_net,
    on_device,
    param_sizes,
    sample_indices,
)
from nnx.bench.refs import BookStyleNet, fused_step
from nnx.bench.sweep import GiB, check_memory, crossovers, grid
from nnx.bench.timing import Case, ratio, run_interleaved, summarize
from nnx.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = any(d.startswith("cuda") for d in backends.available())
TINY = ["--repeat", "2", "--numerical-repeat", "1", "--loop-sample", "8", "--quiet"]


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def positive_stats(m: dict) -> None:
    assert m["n"] >= 1
    for key in ("median_s", "q1_s", "q3_s", "min_s", "max_s"):
        assert m[key] > 0 and math.isfinite(m[key]), key
    assert m["min_s"] <= m["q1_s"] <= m["median_s"] <= m["q3_s"] <= m["max_s"]


# -- arithmetic ---------------------------------------------------------------------------
def test_extrapolation_is_time_per_coordinate_times_count():
    seconds = {"W1": 0.2, "b1": 0.01}
    counts = {"W1": 100, "b1": 5}
    sizes = {"W1": 1000, "b1": 50}
    assert extrapolate(seconds, counts, sizes) == pytest.approx(0.2 / 100 * 1000 + 0.01 / 5 * 50)


def test_extrapolation_of_a_uniform_cost_is_the_full_count():
    sizes = param_sizes(50)
    assert sum(sizes.values()) == 39_760
    counts = allocate_sample(sizes, 400)
    per_coordinate = 3e-4
    seconds = {k: per_coordinate * c for k, c in counts.items()}
    assert extrapolate(seconds, counts, sizes) == pytest.approx(per_coordinate * 39_760)


def test_sample_is_proportional_covers_every_parameter_and_is_seeded():
    sizes = param_sizes(50)
    counts = allocate_sample(sizes, 400)
    assert sum(counts.values()) == 400
    assert all(c >= 1 for c in counts.values())  # b2 (10 of 39,760) still gets one
    assert abs(counts["W1"] - 400 * sizes["W1"] / 39_760) <= 2
    assert allocate_sample(sizes, 10**6) == sizes
    with pytest.raises(InputError, match="at least 4"):
        allocate_sample(sizes, 3)
    a, b = sample_indices(sizes, 400, seed=1), sample_indices(sizes, 400, seed=1)
    assert a == b != sample_indices(sizes, 400, seed=2)
    for key, idx in a.items():
        assert len(set(idx)) == len(idx) == counts[key]
        assert 0 <= min(idx) and max(idx) < sizes[key]


def test_summary_and_ratios():
    s = summarize([3.0, 1.0, 2.0, 4.0, 5.0])
    assert (s["median_s"], s["min_s"], s["max_s"], s["n"]) == (3.0, 1.0, 5.0, 5)
    assert (s["q1_s"], s["q3_s"]) == (2.0, 4.0)
    r = ratio(summarize([6.0, 6.0]), summarize([2.0, 3.0]))
    assert r["ratio"] == pytest.approx(6 / 2.5) and r["range"] == "quartiles"
    assert r["low"] <= r["ratio"] <= r["high"]


def test_interleaved_rounds_pair_up_for_ratios():
    be = get_backend("cpu")
    slow, fast = Case("slow", lambda: sum(range(2000)), be), Case("fast", lambda: None, be)
    run_interleaved([slow, fast], repeat=6, warmup=1, rounds=3)
    assert [len(r) for r in slow.rounds] == [2, 2, 2] and len(fast.times) == 6
    r = ratio(slow.summary(), fast.summary())
    assert r["range"] == "per-round" and r["low"] <= r["high"]
    other = Case("other", lambda: None, be)
    run_interleaved([other], repeat=6, warmup=0, rounds=3)
    assert ratio(slow.summary(), other.summary())["range"] == "quartiles"  # different runs


def test_grid_spans_one_three_ten_steps():
    assert grid(10, 10000) == [10, 30, 100, 300, 1000, 3000, 10000]
    assert grid(10, 20) == [10, 20]
    assert grid(10, 10) == [10]


def test_memory_check_refuses_with_the_estimate():
    cpu = get_backend("cpu")
    check_memory([cpu], [(100, 50)], [(100, 50)], 0.2, host_free=lambda: 4 * GiB)
    with pytest.raises(InputError, match=r"batch=1000000, hidden=50 needs ~[\d.]+ GiB, more "
                                         r"than the 4 GiB available on the host"):
        check_memory([cpu], [(100, 50), (1000000, 50)], host_free=lambda: 4 * GiB)


def test_crossover_is_where_the_gpu_stays_faster():
    def row(b, cpu, gpu):
        return {"batch": b, "backprop": {"cpu": {"median_s": cpu}, "cuda:0": {"median_s": gpu}},
                "numerical_vectorized": {"cpu": {"median_s": cpu}, "cuda:0": {"skipped": "x"}}}

    rows = [row(10, 1, 5), row(100, 2, 1), row(1000, 3, 4), row(10000, 9, 2)]
    c = crossovers(rows, "batch")
    assert c["backprop"]["cuda:0"]["from"] == 10000
    assert c["numerical_vectorized"]["cuda:0"]["from"] is None
    assert crossovers([row(10, 2, 1)], "batch")["backprop"]["cuda:0"]["text"].startswith(
        "GPU faster at every")


# -- the reference implementations ---------------------------------------------------------
def test_reference_steps_compute_nnx_gradients():
    be = get_backend("cpu", "float64")
    host = DataSource(None, seed=3).batch(100)
    net = make_net(be, 50, seed=3)
    net.params["W1"] = net.params["W1"] * 30  # make the ReLU pattern and the loss non-trivial
    x, t = on_device(be, host)
    want = net.gradient(x, t)
    w = {k: np.array(v) for k, v in net.params.items()}
    loss, fused = fused_step(w["W1"], w["b1"], w["W2"], w["b2"], host.x, host.t)
    book_net = BookStyleNet({k: v.copy() for k, v in w.items()})
    book = book_net.gradient(host.x, host.t)
    book_hot = book_net.gradient(host.x, np.eye(10)[host.t])  # as the book trains
    assert loss == pytest.approx(float(net.loss(x, t)), rel=1e-12)
    for key in want:
        np.testing.assert_allclose(fused[key], want[key], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(book[key], want[key], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(book_hot[key], want[key], rtol=1e-10, atol=1e-14)
    assert book_net.accuracy(host.x, np.eye(10)[host.t]) == pytest.approx(
        float(net.accuracy(x, t)))


def test_synthetic_batch_is_deterministic_and_mnist_sparse():
    a, b = DataSource(None, seed=0).batch(200), DataSource(None, seed=0).batch(200)
    np.testing.assert_array_equal(a.x, b.x)
    assert 0.15 < np.count_nonzero(a.x) / a.x.size < 0.23
    assert a.x.min() == 0 and a.x.max() <= 1 and set(np.unique(a.t)) <= set(range(10))
    assert "synthetic" in a.source


# -- the programs ------------------------------------------------------------------------
def check_gradients_json(path: Path, devices: list[str]) -> dict:
    data = json.loads(path.read_text())
    for key in ("schema", "date", "machine", "config", "data", "devices", "gpu_vs_cpu"):
        assert key in data
    assert data["machine"]["cpu"] and data["config"]["batch"] == 100
    assert list(data["devices"]) == devices
    for d in data["devices"].values():
        m = d["methods"]
        for key in ("backprop", "numerical_vectorized", "numerical_loop"):
            positive_stats(m[key])
        assert m["numerical_loop"]["extrapolated"] and m["numerical_loop"]["sample"] == 8
        assert "extrapolated from 8 of 39,760" in m["numerical_loop"]["label"]
        peer = m["peer_torch"]
        assert "median_s" in peer or peer["status"]
        assert d["ratios"]["numerical_loop/backprop"]["ratio"] > 0
    return data


def test_bench_gradients_script_on_cpu_and_strict_with_a_sweep(tmp_path):
    out = tmp_path / "bench"
    stdout = ok(run("scripts/bench_gradients.py", "--device", "cpu,strict", *TINY, "--sweep",
                    "--max-batch", "20", "--max-hidden", "20", "--out", str(out)))
    assert "vs backprop" in stdout and "extrapolated from 8 of 39,760 coords" in stdout
    assert "synthetic" in stdout and "crossover" in stdout
    data = check_gradients_json(out / "gradients.json", ["cpu", "strict"])
    axes = data["sweep"]["axes"]
    assert [p["batch"] for p in axes["batch"]["points"]] == [10, 20]
    assert [p["hidden"] for p in axes["hidden"]["points"]] == [10, 20]
    for p in axes["batch"]["points"] + axes["hidden"]["points"]:
        for device in ("cpu", "strict"):
            positive_stats(p["backprop"][device])
    assert "| device | method |" in (out / "gradients.md").read_text()
    for name in ("gradients.png", "sweep_batch.png", "sweep_hidden.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*"))  # no temporary file left beside the results


def test_python_m_nnx_bench_full_loop_on_cpu(tmp_path):
    stdout = ok(run("-m", "nnx.bench", "--device", "cpu", *TINY, "--no-peer", "--hidden", "5",
                    "--full-loop", "--out", str(tmp_path)))
    assert "all 3,985 coords, 1 run" in stdout
    data = json.loads((tmp_path / "gradients.json").read_text())
    m = data["devices"]["cpu"]["methods"]
    positive_stats(m["numerical_loop_full"])
    assert m["peer_torch"]["status"] == "skipped (--no-peer)" or "median_s" not in m["peer_torch"]


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device answers on this machine")
def test_bench_on_a_missing_gpu_is_one_line(tmp_path):
    line = one_line_error(run("scripts/bench_gradients.py", "--device", "cuda", *TINY,
                              "--out", str(tmp_path / "x")))
    assert line.startswith("bench_gradients.py: error:") and "CuPy" in line
    assert not (tmp_path / "x").exists()


def test_sweep_too_large_is_refused_up_front(tmp_path):
    line = one_line_error(run("-m", "nnx.bench", "--device", "cpu", *TINY, "--sweep",
                              "--max-batch", "100000000", "--out", str(tmp_path / "x")))
    assert "needs ~" in line and "GiB available" in line and "--max-batch" in line
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("program", ["scripts/bench_gradients.py", "scripts/bench_backprop.py",
                                     "scripts/bench_training.py"])
def test_unwritable_out_is_refused_before_any_timing(tmp_path, program):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = one_line_error(run(program, "--out", str(blocker / "x")))
    assert "cannot write to output directory" in line and str(blocker) in line


def test_bench_backprop_script(tmp_path):
    stdout = ok(run("scripts/bench_backprop.py", "--repeat", "4", "--rounds", "2", "--warmup",
                    "1", "--numerical-repeat", "1", "--loop-sample", "8", "--quiet",
                    "--out", str(tmp_path)))
    for words in ("fused NumPy step (reference", "nnx net.gradient(x, t)",
                  "book-style layers (reference", "speedup of vectorised over the loop",
                  "extrapolated from 8 of 39,760"):
        assert words in stdout
    data = json.loads((tmp_path / "backprop.json").read_text())
    cases = data["backprop"]["cases"]
    for key in ("fused", "nnx", "book"):
        positive_stats(cases[key])
        assert cases[key]["vs_fused"]["ratio"] > 0
    for key in ("nnx", "book"):
        assert cases[key]["max_abs_diff_vs_fused"] < 1e-12
    assert "torch" in cases or data["backprop"]["torch"]
    num = data["numerical"]
    positive_stats(num["vectorized"])
    positive_stats(num["loop"])
    assert num["speedup"]["ratio"] > 0 and num["max_abs_diff_on_sample"] < 1e-6
    assert (tmp_path / "backprop.md").read_text().startswith("# Backprop")


def test_peer_without_torch_says_not_installed(monkeypatch):
    from nnx.bench.cases import torch_status

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    assert torch_status("cpu") == (None, "not installed")
    assert torch_status("strict")[0] is None


def test_bench_module_is_a_cli_subcommand():
    import argparse

    import nnx.bench.gradients as bench

    assert "backprop" in bench.__doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    args = parser.parse_args(["--device", "cpu", "--device", "strict,cpu"])
    assert [be.device for be in bench.resolve_devices(args.device, "float64")] == [
        "cpu", "strict"]
    assert args.loop_sample == 400 and args.out == Path("runs/bench")


def test_nnx_bench_runs_the_same_program(tmp_path):
    stdout = ok(run("-m", "nnx.cli", "bench", "--device", "cpu", *TINY, "--no-peer",
                    "--hidden", "5", "--out", str(tmp_path)))
    assert "numerical, vectorised" in stdout and "extrapolated from" in stdout
    assert json.loads((tmp_path / "gradients.json").read_text())["devices"]["cpu"]
    line = one_line_error(run("-m", "nnx.cli", "bench", "--device", "tpu", *TINY,
                              "--out", str(tmp_path / "x")))
    assert line.startswith("nnx bench: error: unknown device 'tpu'")
    assert not (tmp_path / "x").exists()


def test_gpu_reports_render_without_a_gpu(tmp_path):
    """The GPU columns, ratios, crossover and charts, from a made-up result with cuda:0."""
    from nnx.bench import gradients as bench
    from nnx.bench import report as bench_report

    def stats(median, label):
        return {"label": label, **summarize([median * 0.9, median, median * 1.2])}

    devices = {
        d: {"description": d, "methods": {
            "backprop": stats(b, "backprop (net.gradient)"),
            "numerical_vectorized": stats(n, "numerical, vectorised"),
            "peer_torch": {"label": "peer: PyTorch autograd", "status": "not installed"}}}
        for d, b, n in (("cpu", 3e-4, 0.1), ("cuda:0", 1e-4, 0.01))
    }
    gpu_vs_cpu = bench._gpu_vs_cpu(devices)
    assert gpu_vs_cpu["cuda:0"]["backprop"]["ratio"] == pytest.approx(3.0)
    rows = [{"batch": b, "hidden": 50,
             "backprop": {"cpu": stats(b * 1e-5, "b"), "cuda:0": stats(3e-4 + b * 1e-7, "b")},
             "numerical_vectorized": {"cpu": stats(b * 1e-3, "n"), "cuda:0": {"skipped": "s"}}}
            for b in (10, 100, 1000)]
    result = {
        "config": {"sizes": [784, 50, 10], "activation": "relu", "batch": 100,
                   "dtype": "float64"},
        "data": "synthetic", "date": "today", "command": "nnx bench",
        "load_average": {"start": [0.1], "end": [0.2]}, "other_cpu": {"measurement": 0.0},
        "devices": devices, "gpu_vs_cpu": gpu_vs_cpu,
        "sweep": {"axes": {"batch": {"points": rows, "crossover": crossovers(rows, "batch")}}},
    }
    assert result["sweep"]["axes"]["batch"]["crossover"]["backprop"]["cuda:0"]["from"] == 100
    text = bench_report.render_text(result)
    assert "CPU time / GPU time" in text and "GPU faster from batch=100 on" in text
    assert "3x" in text and "not installed" in text
    bench.save(result, text, tmp_path)
    assert (tmp_path / "sweep_batch.png").stat().st_size > 0
    assert "## GPU vs CPU" in (tmp_path / "gradients.md").read_text()


def test_bench_training_script(tmp_path, mnist_dir):
    stdout = ok(run("scripts/bench_training.py", "--data-dir", str(mnist_dir), "--iters", "700",
                    "--repeat", "1", "--out", str(tmp_path)))
    assert "| nnx (cpu) |" in stdout and "| book-style loop (NumPy) |" in stdout
    data = json.loads((tmp_path / "bench_training.json").read_text())
    rows = data["contenders"]
    assert set(rows) == {"nnx (cpu)", "book-style loop (NumPy)", "fused NumPy loop"}
    for row in rows.values():
        assert row["median"] > 0 and math.isfinite(row["median"])
        # 700 iterations of SGD reach ~90% on MNIST whichever code runs them (a known
        # figure of the book's run after one epoch); a broken contender stays near 10%.
        assert row["test_acc"][0] > 0.85
    line = one_line_error(run("scripts/bench_training.py", "--data-dir", str(mnist_dir),
                              "--iters", "0", "--out", str(tmp_path / "x")))
    assert "--iters" in line and not (tmp_path / "x").exists()


def test_running_out_of_memory_is_one_line_with_the_size(capsys):
    """A real NumPy allocation failure (8 PB) in a program's run: one line, status 2."""
    import argparse

    from nnx.cli.program import run_program

    def run(_args):
        return np.empty((10**9, 10**6))

    assert run_program("prog", argparse.ArgumentParser(), run, []) == 2
    err = capsys.readouterr().err
    assert err.startswith("prog: error: out of memory (unable to allocate ") and "PiB" in err
    assert err.rstrip().endswith("; try smaller sizes") and err.count("\n") == 1
