"""Does normalization help training? The same MLP on the digits set trained with no
normalization, with BatchNorm and with LayerNorm, at several learning rates and two depths.

    python examples/normalization_study.py            # about a minute
    python examples/normalization_study.py --help

Prints a table of epochs needed to reach the target test accuracy and the final accuracy, and
plots the training-loss curves side by side (needs matplotlib).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import DataLoader, TensorDataset, load_digits

NORMS = {"none": None, "batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm}


def build_mlp(depth: int, width: int, norm: str) -> nn.Module:
    """``depth`` hidden layers of ``width`` units: Linear -> [norm] -> ReLU, then Linear."""
    layers, size = [], 64
    for _ in range(depth):
        layers.append(nn.Linear(size, width))
        if NORMS[norm] is not None:
            layers.append(NORMS[norm](width))
        layers.append(nn.ReLU())
        size = width
    layers.append(nn.Linear(size, 10))
    return nn.Sequential(*layers)


def run(data, depth: int, width: int, norm: str, lr: float, epochs: int, seed: int) -> dict:
    """Train one configuration with SGD + momentum; return its loss and accuracy curves."""
    X_train, y_train, X_test, y_test = data
    mg.manual_seed(seed)  # same initial weights (per shape) and batches for every config
    model = build_mlp(depth, width, norm)
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=64, shuffle=True, seed=seed)
    losses, accuracies = [], []
    for _ in range(epochs):
        losses.append(common.train_epoch(model, loader, optimizer, desc=f"{norm} lr={lr}"))
        accuracies.append(common.accuracy(model, X_test, y_test))
    return {"loss": losses, "accuracy": accuracies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.03, 0.3])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--target", type=float, default=0.95, help="target test accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("examples/out"))
    args = parser.parse_args()

    X, y = load_digits()
    data = common.train_test_split(X, y, 0.2, args.seed)
    results = {}
    print(f"{'depth':>5} {'lr':>7} {'norm':>10} {'epochs to ' + format(args.target, '.0%'):>16}"
          f" {'final acc':>10} {'final loss':>11}")
    for depth in args.depths:
        for lr in args.lrs:
            for norm in NORMS:
                r = run(data, depth, args.width, norm, lr, args.epochs, args.seed)
                results[depth, lr, norm] = r
                reached = next((i + 1 for i, a in enumerate(r["accuracy"]) if a >= args.target),
                               None)
                print(f"{depth:>5} {lr:>7g} {norm:>10} "
                      f"{(str(reached) if reached else 'never'):>16} "
                      f"{r['accuracy'][-1]:>10.2%} {r['loss'][-1]:>11.4f}")
    plot(results, args, args.out / "normalization_study.png")


def plot(results: dict, args, path: Path) -> None:
    """One panel per (depth, learning rate), one training-loss curve per normalization."""
    plt = common.pyplot()
    if plt is None:
        print("matplotlib is not installed: no plot was made "
              "(pip install 'minigrad-cython[examples]')")
        return
    rows, cols = len(args.depths), len(args.lrs)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False,
                             sharey=True)
    for i, depth in enumerate(args.depths):
        for j, lr in enumerate(args.lrs):
            ax = axes[i][j]
            for norm in NORMS:
                ax.plot(range(1, args.epochs + 1), results[depth, lr, norm]["loss"], label=norm)
            ax.set(title=f"{depth} hidden layers, lr={lr:g}", xlabel="epoch", yscale="log")
            if j == 0:
                ax.set_ylabel("training loss")
    axes[0][0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"plot saved to {path}")


if __name__ == "__main__":
    main()
