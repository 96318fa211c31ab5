"""Train a small classifier on the two-moons toy set and draw its decision boundary.

    python examples/train_moons.py
    python examples/train_moons.py --help
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common
import numpy as np

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import DataLoader, TensorDataset, make_moons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("examples/out"))
    args = parser.parse_args()

    mg.manual_seed(args.seed)
    X, y = make_moons(args.samples, noise=args.noise, seed=args.seed)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 2))
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True, seed=args.seed)
    for epoch in range(1, args.epochs + 1):
        loss = common.train_epoch(model, loader, optimizer, desc=f"epoch {epoch}")
        if epoch % 10 == 0 or epoch == args.epochs:
            print(f"epoch {epoch:3d}  loss {loss:.4f}  accuracy "
                  f"{common.accuracy(model, X, y):.2%}")
    plot(model, X, y, args.out / "moons_boundary.png")


@mg.no_grad()
def plot(model: nn.Module, X: np.ndarray, y: np.ndarray, path: Path) -> None:
    """Shade the predicted class over a grid and scatter the data on top."""
    plt = common.pyplot()
    if plt is None:
        print("matplotlib is not installed: no plot was made "
              "(pip install 'minigrad-cython[examples]')")
        return
    model.eval()
    xs = np.linspace(X[:, 0].min() - 0.5, X[:, 0].max() + 0.5, 200)
    ys = np.linspace(X[:, 1].min() - 0.5, X[:, 1].max() + 0.5, 200)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    probability = model(mg.tensor(grid)).softmax(axis=1).numpy()[:, 1].reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contourf(gx, gy, probability, levels=20, cmap="RdBu", alpha=0.6)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu", edgecolors="k", s=15)
    ax.set(title="minigrad MLP on two moons", xlabel="x1", ylabel="x2")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"plot saved to {path}")


if __name__ == "__main__":
    main()
