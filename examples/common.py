"""Small helpers shared by the example scripts: progress display, plotting, data split,
one training epoch and accuracy. Examples import it as a sibling module."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

import numpy as np

import minigrad as mg
import minigrad.functional as F


def progress(iterable: Iterable, total: int, desc: str) -> Iterable:
    """Wrap an iterable in a tqdm progress bar when tqdm is installed; else return it."""
    if importlib.util.find_spec("tqdm") is None:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, disable=None)  # off without a tty


def pyplot():
    """matplotlib.pyplot with a file-only backend, or None when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def train_test_split(X: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    """Shuffle once with ``seed`` and split into (X_train, y_train, X_test, y_test)."""
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = int(round(len(X) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


def train_epoch(model, loader, optimizer, desc: str = "train") -> float:
    """One pass over ``loader``; returns the mean training loss."""
    model.train()
    total, count = 0.0, 0
    for xb, yb in progress(loader, len(loader), desc):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(yb)
        count += len(yb)
    return total / count


@mg.no_grad()
def accuracy(model, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction of correct argmax predictions, in eval mode."""
    model.eval()
    logits = model(mg.tensor(X)).numpy()
    return float(np.mean(logits.argmax(axis=1) == y))
