"""Smoke test of the benchmark harness: it runs, and writes rows with positive times.

Speed is never asserted here; the benchmark itself reports it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "minigrad.bench", "reductions", "xent", "--quick", "--no-torch",
           "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "numpy / minigrad" in done.stdout
    data = json.loads(out.read_text())
    assert data["environment"]["numpy"]
    rows = data["rows"]
    assert {r["group"] for r in rows} == {"reductions", "xent"}
    assert len(rows) > 10
    for row in rows:
        assert row["times"]["numpy"] > 0 and row["times"]["cython"] > 0
        assert row["numpy/cython"] > 0


def test_bench_rejects_unknown_group():
    done = subprocess.run([sys.executable, "-m", "minigrad.bench", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "unknown group" in done.stderr


def _source_tree_without_build(tmp_path: Path) -> Path:
    """A copy of the package as a fresh clone has it: sources only, no compiled modules."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "minigrad", clone / "minigrad",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "*.c"))
    return clone


def _run_bench(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("MINIGRAD_BACKEND", "PYTHONPATH")}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "minigrad.bench", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=600)


def test_bench_in_an_unbuilt_source_tree_runs_the_twins_and_says_how_to_build(tmp_path):
    clone = _source_tree_without_build(tmp_path)
    out = tmp_path / "bench.json"
    done = _run_bench(clone, "all", "--quick", "--no-torch", "--repeats", "1",
                      "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert str(clone / "minigrad") in done.stderr  # the warning names the tree it imported
    for advice in ("pip install -e .", "python setup.py build_ext --inplace"):
        assert advice in done.stderr and advice in done.stdout
    assert "circular import" not in done.stderr + done.stdout
    assert "NOTE: the cython columns are empty" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {r["group"] for r in rows} == {"reductions", "xent", "norm", "optim", "step",
                                          "overhead", "pool", "conv"}
    for row in rows:
        assert "cython" not in row["times"] and row["times"]["numpy"] > 0, row
    step = next(r for r in rows if r["group"] == "step")
    assert step["times"]["minigrad-numpy"] > 0


def test_the_warning_points_at_an_installed_copy_hidden_by_the_source_tree(tmp_path):
    clone = _source_tree_without_build(tmp_path)
    site = tmp_path / "site-packages"
    kernels_dir = site / "minigrad" / "kernels"
    kernels_dir.mkdir(parents=True)
    (kernels_dir / "_reduce.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")  # only listed
    done = _run_bench(clone, "nope", PYTHONPATH=str(site))
    assert f"installed copy with built kernels is at {site / 'minigrad'}" in done.stderr
    assert "run from another directory" in done.stderr


def test_cnn_step_agrees_with_torch_and_the_check_can_fail(backend, monkeypatch):
    """The untimed check of the CNN training-step rows passes on the real net, and raises
    naming the array when minigrad computes something else (here: BatchNorm with another eps)."""
    torch = pytest.importorskip("torch")
    from minigrad.bench import cnn_step

    shape = cnn_step.QUICK_INPUTS["digits"]
    weights = [p.data.copy() for p in cnn_step.minigrad_model(shape[1]).parameters()]
    x, y = cnn_step.batch(shape)
    assert cnn_step.check_against_torch(torch, "digits", weights, x, y) < cnn_step.TOLERANCE
    monkeypatch.setattr(cnn_step, "EPS", 0.5)  # minigrad's net changes, torch's model too...
    real_torch_model = cnn_step.torch_model

    def torch_model_with_default_eps(torch, channels, weights):
        with monkeypatch.context() as m:  # ...unless torch's is built with the original eps
            m.setattr(cnn_step, "EPS", 1e-5)
            return real_torch_model(torch, channels, weights)

    monkeypatch.setattr(cnn_step, "torch_model", torch_model_with_default_eps)
    with pytest.raises(AssertionError, match="cnn step digits: minigrad and torch"):
        cnn_step.check_against_torch(torch, "digits", weights, x, y)


def test_conv_group_has_the_cnn_step_rows(tmp_path):
    out = tmp_path / "bench.json"
    done = _run_bench(ROOT, "conv", "--quick", "--repeats", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = [r for r in json.loads(out.read_text())["rows"] if "train step" in r["case"]]
    assert [r["shape"] for r in rows] == ["8x1x8x8"]
    times = rows[0]["times"]
    assert times["numpy"] > 0 and times["cython"] > 0
    if importlib.util.find_spec("torch") is not None:
        assert times["torch"] > 0 and times["torch-1T"] > 0


def test_every_row_is_printed_once_and_the_page_renders_from_the_json(tmp_path):
    out, page, again = tmp_path / "bench.json", tmp_path / "page.md", tmp_path / "again.md"
    done = _run_bench(ROOT, "reductions", "xent", "--quick", "--no-torch", "--repeats", "1",
                      "--json", str(out), "--markdown", str(page))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    lines = done.stdout.splitlines()
    for row in rows:
        printed = [ln for ln in lines if ln.startswith(row["case"] + " ")
                   and f"| {row['shape']} " in ln]
        assert len(printed) == 1, (row["case"], row["shape"], printed)
        assert row["bytes"] > 0 and row["gbps"] > 0
    again_run = _run_bench(ROOT, "--from-json", str(out), "--markdown", str(again))
    assert again_run.returncode == 0, again_run.stderr
    text = page.read_text()
    assert text == again.read_text()  # the page is a function of the result alone
    for row in rows:  # every row's times, as the tables print them, are in the page
        cells = f"| `{row['case']}` | {row['shape']} | "
        assert sum(ln.startswith(cells) for ln in text.splitlines()) == 1
    assert "bandwidth" in text and "| target |" in text


def test_blas_pinning_without_threadpoolctl_says_so(monkeypatch, capsys):
    from minigrad.bench import harness

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "threadpoolctl" else real(name, *a))
    assert harness.pin_blas_threads(1) is None
    assert "threadpoolctl is not installed" in capsys.readouterr().out


def test_blas_pinning_with_threadpoolctl_limits_blas():
    pytest.importorskip("threadpoolctl")
    from threadpoolctl import threadpool_info

    from minigrad.bench import harness

    limiter = harness.pin_blas_threads(1)
    try:
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    finally:
        limiter.restore_original_limits()


def test_a_comparator_is_a_column(monkeypatch):
    from minigrad.bench import harness

    monkeypatch.setattr(harness, "COLUMNS", list(harness.COLUMNS))
    harness.register_column(harness.Column("jax", "jax.jit", "JAX, jit"), before="torch-1T")
    case = harness.Case("g", "op", "2x2", {"numpy": lambda: 0, "cython": lambda: 0,
                                           "jax": lambda: 0, "other": lambda: 0})
    row = harness.make_row(case, {"numpy": 4.0, "cython": 2.0, "jax": 1.0, "other": 8.0})
    header, body = harness.table_cells([row])
    assert header[2:6] == ["numpy", "minigrad", "jax.jit", "other"]
    assert header[6:] == ["numpy / minigrad", "jax.jit / minigrad", "other / minigrad"]
    assert body[0][6:] == ["2.00x", "0.50x", "4.00x"]


def test_the_chart_is_compact_and_draws_only_comparators_with_data(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    from minigrad.bench import harness, plot

    rows = []
    for g in range(6):
        for k in range(12):
            case = harness.Case(f"group{g}", f"case{k}", "4x4", {})
            rows.append(harness.make_row(case, {"numpy": 3.0, "cython": 1.0 + k, "torch": 2.0}))
    path = tmp_path / "chart.png"
    plot.plot_rows(rows, str(path))
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width <= 1600 and height <= 1600  # 72 rows in two columns of panels
    assert harness.ratio_labels(rows) == ["numpy", "torch"]
    assert plot._ticks(rows, ["numpy", "torch"]) == [0.125, 0.25, 0.5, 1.0, 2.0, 4.0]
