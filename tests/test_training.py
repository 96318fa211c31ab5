"""End to end: small networks train, and the example scripts run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from minigrad.data import DataLoader, TensorDataset, make_moons

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("norm", [None, nn.BatchNorm1d, nn.LayerNorm])
def test_small_mlp_learns_moons(backend, norm):
    mg.manual_seed(0)
    X, y = make_moons(400, noise=0.1, seed=0)
    layers = [nn.Linear(2, 32)] + ([norm(32)] if norm else []) + [nn.ReLU(), nn.Linear(32, 2)]
    model = nn.Sequential(*layers)
    optimizer = optim.Adam(model.parameters(), lr=0.02)
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True, seed=0)
    for _ in range(40):
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    model.eval()
    with mg.no_grad():
        accuracy = np.mean(model(mg.tensor(X)).numpy().argmax(1) == y)
    assert accuracy >= 0.95


def test_save_load_round_trip_of_a_trained_model(tmp_path):
    mg.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model(mg.randn(16, 4))  # move the running statistics away from their initial values
    mg.save(model.state_dict(), tmp_path / "model.npz")
    clone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    clone.load_state_dict(mg.load(tmp_path / "model.npz"))
    model.eval(), clone.eval()
    x = mg.randn(5, 4)
    np.testing.assert_array_equal(model(x).numpy(), clone(x).numpy())


@pytest.mark.parametrize("script", ["train_digits.py", "normalization_study.py",
                                    "train_moons.py"])
def test_example_scripts_have_help(script):
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent))
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout and "--seed" in result.stdout


def test_moons_example_trains_and_reports_accuracy(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent))
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_moons.py"), "--epochs", "30", "--out",
         str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    last = [line for line in result.stdout.splitlines() if "accuracy" in line][-1]
    assert float(last.rsplit(" ", 1)[1].rstrip("%")) >= 95.0
