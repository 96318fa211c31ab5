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


def train_epoch(model, loader, optimizer, desc: str = "train", *,
                label_smoothing: float = 0.0) -> float:
    """One pass over ``loader``; returns the mean training loss."""
    model.train()
    total, count = 0.0, 0
    for xb, yb in progress(loader, len(loader), desc):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(yb)
        count += len(yb)
    return total / count


@mg.no_grad()
def accuracy(model, X: np.ndarray, y: np.ndarray, *, batch_size: int = 500) -> float:
    """Fraction of correct argmax predictions, in eval mode; ``batch_size`` samples at a time
    (the activations of a CNN on all of MNIST's test set at once would take gigabytes)."""
    model.eval()
    correct = 0
    for start in range(0, len(X), batch_size):
        logits = model(mg.tensor(X[start : start + batch_size])).numpy()
        correct += int(np.sum(logits.argmax(axis=1) == y[start : start + batch_size]))
    return correct / len(X)


def fit(model, loader, optimizer, test: tuple[np.ndarray, np.ndarray], epochs: int, *,
        scheduler=None, label_smoothing: float = 0.0) -> dict[str, list[float]]:
    """Train for ``epochs``, printing the mean training loss and the test accuracy after each
    epoch (and stepping ``scheduler`` once per epoch); returns both curves."""
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    for epoch in range(1, epochs + 1):
        loss = train_epoch(model, loader, optimizer, desc=f"epoch {epoch}",
                           label_smoothing=label_smoothing)
        if scheduler is not None:
            scheduler.step()
        acc = accuracy(model, *test)
        history["loss"].append(loss)
        history["accuracy"].append(acc)
        print(f"epoch {epoch:3d}  loss {loss:.4f}  test accuracy {acc:.2%}")
    return history


def plot_history(history: dict[str, list[float]], path, title: str) -> None:
    """Training loss and test accuracy per epoch, side by side, saved to ``path``."""
    plt = pyplot()
    if plt is None:
        print("matplotlib is not installed: no plot was made "
              "(pip install 'minigrad-cython[examples]')")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(history["loss"]) + 1)
    left.plot(epochs, history["loss"])
    left.set(xlabel="epoch", ylabel="training loss", title=f"{title}: loss", yscale="log")
    right.plot(epochs, [100 * a for a in history["accuracy"]])
    right.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"{title}: accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot saved to {path}")
