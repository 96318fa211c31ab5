"""See inside the digits MLP: a picture of its graph, and a monitor watching it train.

    python examples/see_inside.py              # graph_digits.png and monitor_digits.png
    python examples/see_inside.py --overhead   # the monitor's cost per training step
    python examples/see_inside.py --help

The model and step are those of train_digits.py (64 -> 128 -> 128 -> 10 with BatchNorm and
ReLU, Adam, batches of 64). The pictures go to docs/images/ unless ``--out`` says otherwise;
they need matplotlib (``pip install 'minigrad-cython[viz]'``).

``--overhead`` times the same step on two copies of the model, one with a ``Monitor`` and
one without, in interleaved blocks (so that both see the same machine load), for the
default sampling, one step in 10 and every step, and prints medians and minimums of the CPU time per
step (process time: other programs' load does not count).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import common
import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from minigrad.data import DataLoader, TensorDataset, load_digits
from minigrad.viz import Monitor, draw
from minigrad.viz.monitor import DEFAULT_EVERY

DOCS = Path(__file__).resolve().parent.parent / "docs" / "images"


def build_model(hidden: int = 128) -> nn.Module:
    """64 -> hidden -> hidden -> 10 with BatchNorm and ReLU after each hidden Linear."""
    return nn.Sequential(
        nn.Linear(64, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def step(model, optimizer, x, y) -> float:
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def pictures(args) -> None:
    """The graph of one training loss, then a monitored training run and its plot."""
    mg.manual_seed(args.seed)
    X, y = load_digits()
    X_train, y_train, X_test, y_test = common.train_test_split(X, y, 0.2, args.seed)
    model = build_model()
    x = mg.tensor(X_train[:64])
    loss = F.cross_entropy(model(x), mg.tensor(y_train[:64]))
    args.out.mkdir(parents=True, exist_ok=True)
    draw(loss, args.out / "graph_digits.png", {"x": x, **dict(model.named_parameters())})
    print(f"graph: {args.out / 'graph_digits.png'}")

    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=64, shuffle=True,
                        seed=args.seed)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    with Monitor(model, every=args.every) as monitor:
        for _ in range(args.epochs):
            for xb, yb in loader:
                step(model, optimizer, xb, yb)
        model(x)  # one more call: the last sampled step's update ratio
        monitor.plot(args.out / "monitor_digits.png", dpi=72)
    print(f"monitor: {args.out / 'monitor_digits.png'} ({monitor.step} steps, one in "
          f"{args.every} sampled); test accuracy {common.accuracy(model, X_test, y_test):.1%}")


def _block(model, optimizer, batches, n: int) -> float:
    """CPU seconds per step over ``n`` steps."""
    start = time.process_time()
    for k in range(n):
        step(model, optimizer, *batches[k % len(batches)])
    return (time.process_time() - start) / n


def _end_step(model, x) -> None:
    """An eval-mode call, untimed: it ends a monitored step, so that the gradient hooks the
    monitor keeps until the model's next call do not stay on while the other variants run
    (any tensor hook makes every backward in the process take the engine's observed walk)."""
    model.eval()
    with mg.no_grad():
        model(x)
    model.train()


def overhead(args) -> dict[str, np.ndarray]:
    """Seconds per step, per variant: no monitor, the default sampling, every step."""
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # one BLAS thread: the other core's load does not leak in
    X, y = load_digits()
    rng = np.random.default_rng(args.seed)
    batches = [(mg.tensor(X[i]), mg.tensor(y[i]))
               for i in (rng.integers(0, len(X), 64) for _ in range(32))]
    variants = {}
    for label, every in [("no monitor", None), (f"every={DEFAULT_EVERY}", DEFAULT_EVERY),
                         ("every=10", 10), ("every=1", 1)]:
        mg.manual_seed(args.seed)
        model = build_model()
        if every is not None:
            Monitor(model, every=every)
        variants[label] = (model, optim.Adam(model.parameters(), lr=1e-3))
    for model, optimizer in variants.values():  # warm up
        _block(model, optimizer, batches, 20)
    times: dict[str, list[float]] = {label: [] for label in variants}
    for r in range(args.repeats):
        order = list(variants.items())
        for label, (model, optimizer) in order if r % 2 else order[::-1]:
            times[label].append(_block(model, optimizer, batches, args.block))
            _end_step(model, batches[0][0])
    result = {label: np.array(t) for label, t in times.items()}
    base = result["no monitor"]
    print(f"CPU time per training step, {args.repeats} interleaved blocks of {args.block}")
    for label, t in result.items():
        median, least = np.median(t), t.min()
        print(f"  {label:12s} median {median * 1e6:7.0f} us ({median / np.median(base):.2f}x)"
              f"   min {least * 1e6:7.0f} us ({least / base.min():.2f}x)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--every", type=int, default=5, help="the monitor samples one step "
                        "in this many (denser than its default, for the picture)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the pictures")
    parser.add_argument("--overhead", action="store_true", help="time the monitor instead")
    parser.add_argument("--repeats", type=int, default=61, help="with --overhead")
    parser.add_argument("--block", type=int, default=20, help="steps per timed block")
    args = parser.parse_args(argv)
    if args.overhead:
        overhead(args)
    else:
        pictures(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
