"""Train an MLP with BatchNorm on the 8x8 digits data set and report its test accuracy.

    python examples/train_digits.py            # 30 epochs, about 97-98% test accuracy
    python examples/train_digits.py --help

Saves the trained model (``mg.save``) and a loss/accuracy plot (needs matplotlib).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import DataLoader, TensorDataset, load_digits


def build_model(hidden: int = 128) -> nn.Module:
    """64 -> hidden -> hidden -> 10 with BatchNorm and ReLU after each hidden Linear."""
    return nn.Sequential(
        nn.Linear(64, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("examples/out"),
                        help="folder for the saved model and the plot")
    args = parser.parse_args()

    mg.manual_seed(args.seed)
    X, y = load_digits()
    X_train, y_train, X_test, y_test = common.train_test_split(X, y, 0.2, args.seed)
    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=args.batch_size,
                        shuffle=True, seed=args.seed)
    model = build_model(args.hidden)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    print(f"digits: {len(X_train)} train / {len(X_test)} test samples, backend "
          f"{mg.get_backend()}")

    history = {"loss": [], "accuracy": []}
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        loss = common.train_epoch(model, loader, optimizer, desc=f"epoch {epoch}")
        acc = common.accuracy(model, X_test, y_test)
        history["loss"].append(loss)
        history["accuracy"].append(acc)
        print(f"epoch {epoch:3d}  loss {loss:.4f}  test accuracy {acc:.2%}")
    elapsed = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    mg.save(model.state_dict(), args.out / "digits_mlp.npz")
    print(f"final test accuracy: {history['accuracy'][-1]:.2%} "
          f"({elapsed:.1f} s of training); model saved to {args.out / 'digits_mlp.npz'}")
    common.plot_history(history, args.out / "digits_training.png", "Digits MLP")


if __name__ == "__main__":
    main()
