"""Train a convolutional network with BatchNorm on MNIST (or Fashion-MNIST) and report its test
accuracy.

    python examples/train_mnist_cnn.py --root data/mnist            # 3 epochs
    python examples/train_mnist_cnn.py --kind fashion --root data/fashion
    python examples/train_mnist_cnn.py --limit 6000 --epochs 1       # a quick look
    python examples/train_mnist_cnn.py --help

Reads the four IDX files (raw or .gz) from ``--root``, downloading them first when they are
missing and the network allows; otherwise it prints which files to get from where and exits
with status 2. Saves the trained model (``mg.save``) and a loss/accuracy plot (needs
matplotlib).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import common

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import DataLoader, TensorDataset, load_mnist


def build_model() -> nn.Module:
    """(N, 1, 28, 28) -> 32 maps of 28x28 -> 14x14 -> 64 maps of 14x14 -> 7x7 -> 10 logits."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 10),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["mnist", "fashion"], default="mnist")
    parser.add_argument("--root", type=Path, default=None,
                        help="folder of the IDX files (default: data/<kind>)")
    parser.add_argument("--no-download", action="store_true",
                        help="do not try to download missing files")
    parser.add_argument("--limit", type=int, default=None,
                        help="train on the first LIMIT training images only")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="Adam's initial learning rate, annealed to 0 on a cosine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("examples/out"),
                        help="folder for the saved model and the plot")
    args = parser.parse_args(argv)
    if args.root is None:
        args.root = Path("data") / args.kind
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    return args


def load(args: argparse.Namespace) -> list | None:
    """[(X_train, y_train), (X_test, y_test)], or None after printing which files are missing
    (of both sets at once) and where to get them."""
    data, missing = [], []
    for train in (True, False):
        try:
            data.append(load_mnist(args.root, args.kind, train=train,
                                   download=not args.no_download))
        except FileNotFoundError as exc:
            missing.append(str(exc))
    if missing:
        print("\n".join(missing), file=sys.stderr)
        print(f"Then run again with --root {args.root} (or the folder you chose).",
              file=sys.stderr)
        return None
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = load(args)
    if data is None:
        return 2
    (X_train, y_train), (X_test, y_test) = data
    X_train, y_train = X_train[: args.limit], y_train[: args.limit]

    mg.manual_seed(args.seed)
    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=args.batch_size,
                        shuffle=True, seed=args.seed)
    model = build_model()
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    print(f"{args.kind}: {len(X_train)} train / {len(X_test)} test images, "
          f"{sum(p.data.size for p in model.parameters())} parameters, backend "
          f"{mg.get_backend()}")

    start = time.perf_counter()
    history = common.fit(model, loader, optimizer, (X_test, y_test), args.epochs,
                         scheduler=scheduler)
    elapsed = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.kind}_cnn.npz"
    mg.save(model.state_dict(), path)
    print(f"final test accuracy: {history['accuracy'][-1]:.2%} "
          f"({elapsed:.1f} s of training); model saved to {path}")
    common.plot_history(history, args.out / f"{args.kind}_cnn_training.png", f"{args.kind} CNN")
    return 0


if __name__ == "__main__":
    sys.exit(main())
