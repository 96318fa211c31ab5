"""Smoke test of the benchmark harness: it runs, and writes rows with positive times.

Speed is never asserted here; the benchmark itself reports it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "minigrad.bench", "reductions", "xent", "--quick", "--no-torch",
           "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "numpy/cython" in done.stdout
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
