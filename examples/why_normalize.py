"""What does normalization do to a network? The claims of docs/normalization.md ("Why normalise
at all") run as experiments on the digits data, each with no normalization, BatchNorm and
LayerNorm: the same initial weights, the same mini-batches in the same order.

    python examples/why_normalize.py                 # every figure into docs/images/
    python examples/why_normalize.py --steps 40 --out /tmp/wn   # a quick look
    python examples/why_normalize.py --help

Four figures (docs/why_normalize.md reads them):

- why_normalize_shift.png: internal covariate shift, how far the distribution of each
  layer's input moves from one step to the next (measured on a fixed probe batch);
- why_normalize_saturation.png: with sigmoid units, the share of pre-activations beyond
  |z| > 4 and the training loss;
- why_normalize_smoothness.png: along the gradient direction, how much the loss and the
  gradient change over step sizes 0.05 to 0.4 (Santurkar et al., 2018);
- why_normalize_speed.png: test accuracy against steps at growing learning rates.

It also prints two exact facts: BatchNorm with gamma = sqrt(var + eps), beta = mean is the
identity, and BatchNorm refuses training statistics of a batch of one while eval mode gives
one sample the same answer alone or in a batch.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import common
import numpy as np
from why_normalize_plots import (
    checkpoints,
    plot_saturation,
    plot_shift,
    plot_smoothness,
    plot_speed,
)

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from minigrad.data import load_digits

NORMS = {"none": None, "batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "images"
SATURATED = 4.0  # |z| beyond which sigmoid'(z) < 0.018, under 1/14 of its peak 0.25


# ----------------------------------------------------------------------------- set-up
class MovingNoise(nn.Module):
    """y = x * scale + shift with a fresh random per-feature scale and shift at every
    training step (``resample``): after a BatchNorm it makes the next layer's input move
    from step to step on purpose, the test of Santurkar et al. (2018, section 2)."""

    def __init__(self, width: int, seed: int):
        super().__init__()
        self.rng = np.random.default_rng(seed)
        self.width = width
        self.resample()

    def resample(self) -> None:
        self.scale = mg.tensor(self.rng.uniform(0.5, 2.0, self.width))
        self.shift = mg.tensor(self.rng.uniform(-1.0, 1.0, self.width))

    def forward(self, x: mg.Tensor) -> mg.Tensor:
        return x * self.scale + self.shift if self.training else x


def build(norm: str, activation: type[nn.Module], *, width: int, depth: int,
          seed: int) -> nn.Sequential:
    """``depth`` hidden layers Linear -> [norm] -> activation, then Linear to 10 classes;
    ``norm`` is a key of NORMS or "batchnorm+noise" (BatchNorm, then MovingNoise).

    The seed is set first and the norm layers draw no random numbers from it, so every
    variant starts from the very same Linear weights."""
    mg.manual_seed(seed)
    layers, size = [], 64
    for k in range(depth):
        layers.append(nn.Linear(size, width))
        if norm == "batchnorm+noise":
            layers += [nn.BatchNorm1d(width), MovingNoise(width, seed + k)]
        elif NORMS[norm] is not None:
            layers.append(NORMS[norm](width))
        layers.append(activation())
        size = width
    layers.append(nn.Linear(size, 10))
    return nn.Sequential(*layers)


def batches(n: int, steps: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """The index arrays of ``steps`` mini-batches, reshuffled each epoch: one list shared by
    every variant, so they all see the same examples in the same order."""
    rng = np.random.default_rng(seed)
    order: list[np.ndarray] = []
    while len(order) < steps:
        perm = rng.permutation(n)
        order += [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    return order[:steps]


ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh)


def forward(model: nn.Sequential, x: mg.Tensor, seen: dict | None = None) -> mg.Tensor:
    """The model's forward, layer by layer. With ``seen``, keep copies of the input of every
    Linear after the first (key ("in", k): the k-th hidden layer's output as the next layer
    reads it) and of every activation (key ("z", k): its pre-activation)."""
    h, k = x, 0
    for layer in model:
        if seen is not None and isinstance(layer, nn.Linear) and k > 0:
            seen["in", k] = h.numpy().copy()
        if seen is not None and isinstance(layer, ACTIVATIONS):
            k += 1
            seen["z", k] = h.numpy().copy()
        h = layer(h)
    return h


@contextlib.contextmanager
def frozen_buffers(model: nn.Module):
    """Run a probe forward in training mode without moving BatchNorm's running statistics."""
    saved = [b.numpy().copy() for b in model.buffers()]
    try:
        yield
    finally:
        with mg.no_grad():
            for b, value in zip(model.buffers(), saved, strict=True):
                b.copy_(value)


def step(model, optimizer, x, y, seen=None) -> float:
    """One SGD step on (x, y); returns the loss before the step."""
    optimizer.zero_grad()
    loss = F.cross_entropy(forward(model, x, seen), y)
    loss.backward()
    optimizer.step()
    return loss.item()


@mg.no_grad()
def accuracy(model, X, y) -> float:
    model.eval()
    correct = float(np.mean(model(mg.tensor(X)).numpy().argmax(axis=1) == y))
    model.train()
    return correct


def sgd(model, lr):
    return optim.SGD(model.parameters(), lr=lr, momentum=0.9)


# ----------------------------------------------------------------------------- experiments
def _shift(before: np.ndarray, after: np.ndarray) -> float:
    """How far a layer's input distribution moved: the mean over its features of
    (|change of the feature's mean| + |change of its std|) / its std before. Features
    that are constant on the probe (dead ReLUs) have no distribution to move and are left out."""
    m0, s0 = before.mean(axis=0), before.std(axis=0)
    m1, s1 = after.mean(axis=0), after.std(axis=0)
    live = s0 > 1e-6
    if not live.any():
        return float("nan")
    return float(np.mean((np.abs(m1 - m0)[live] + np.abs(s1 - s0)[live]) / s0[live]))


def covariate_shift(data, args) -> dict[str, dict[str, np.ndarray]]:
    """Per variant (and BatchNorm followed by MovingNoise): a (steps, hidden layers) array
    "shift" of the step-to-step move of each hidden layer's output as the next Linear reads
    it, on a fixed probe batch of training data in training mode (BatchNorm uses the probe's
    statistics; its running buffers stay put), and the test accuracy every ``args.every``
    steps."""
    X, y, X_test, y_test = data
    probe = mg.tensor(X[: args.probe])
    marks, result = set(checkpoints(args)), {}
    for norm in [*NORMS, "batchnorm+noise"]:
        model = build(norm, nn.ReLU, width=args.width, depth=args.depth, seed=args.seed)
        noise = [m for m in model if isinstance(m, MovingNoise)]
        optimizer, rows, curve, previous = sgd(model, args.lr), [], [], None
        for t, idx in enumerate([None, *args.batches]):
            if idx is not None:
                for m in noise:
                    m.resample()
                step(model, optimizer, mg.tensor(X[idx]), mg.tensor(y[idx]))
            if t in marks:
                curve.append(accuracy(model, X_test, y_test))
            seen: dict = {}
            with frozen_buffers(model), mg.no_grad():
                forward(model, probe, seen)
            inputs = [seen["in", k] for k in range(1, args.depth + 1)]
            if previous is not None:
                rows.append([_shift(a, b) for a, b in zip(previous, inputs, strict=True)])
            previous = inputs
        result[norm] = {"shift": np.array(rows), "accuracy": np.array(curve)}
    return result


def saturation(data, args) -> dict[str, dict[str, np.ndarray]]:
    """Per variant, sigmoid units: the share of pre-activations with |z| > 4 in each training
    batch (mean over the hidden layers), the training loss, and the final test accuracy."""
    X, y, X_test, y_test = data
    result = {}
    for norm in NORMS:
        model = build(norm, nn.Sigmoid, width=args.width, depth=args.depth, seed=args.seed)
        optimizer = sgd(model, args.sigmoid_lr)
        shares, losses = [], []
        for idx in args.batches:
            seen: dict = {}
            losses.append(step(model, optimizer, mg.tensor(X[idx]), mg.tensor(y[idx]), seen))
            z = [v for key, v in seen.items() if key[0] == "z"]
            shares.append([float(np.mean(np.abs(v) > SATURATED)) for v in z])
        result[norm] = {"share": np.array(shares), "loss": np.array(losses),
                        "accuracy": accuracy(model, X_test, y_test)}
    return result


def _loss_and_grad(model, x, y) -> tuple[float, list[np.ndarray]]:
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), [p.grad.numpy().copy() for p in model.parameters()]


def _along_gradient(model, x, y, etas: np.ndarray) -> tuple[float, float, float]:
    """Santurkar et al.'s three measurements at the current weights w, gradient g: over the
    step sizes eta, the spread max - min of L(w - eta g), the largest ||g(w - eta g) - g||
    and the largest ||g(w - eta g) - g|| / ||eta g|| (an effective beta-smoothness)."""
    params = list(model.parameters())
    weights = [p.numpy().copy() for p in params]
    with frozen_buffers(model):
        loss0, g0 = _loss_and_grad(model, x, y)
        norm0 = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in g0))
        losses, changes = [loss0], []
        for eta in etas:
            with mg.no_grad():
                for p, w, g in zip(params, weights, g0, strict=True):
                    p.copy_(w - eta * g)
            loss, grads = _loss_and_grad(model, x, y)
            losses.append(loss)
            changes.append(np.sqrt(sum(float(np.sum((a.astype(np.float64) - b) ** 2))
                                       for a, b in zip(grads, g0, strict=True))))
        with mg.no_grad():
            for p, w in zip(params, weights, strict=True):
                p.copy_(w)
    model.zero_grad()
    changes_arr = np.array(changes)
    return (max(losses) - min(losses), float(changes_arr.max()),
            float(np.max(changes_arr / (etas * norm0))))


def smoothness(data, args) -> dict[str, np.ndarray]:
    """Per variant: (measurements, 3) array of the ``_along_gradient`` triple, taken on the
    current training batch every ``args.every`` steps of ReLU training at ``args.smooth_lr``."""
    X, y, _, _ = data
    etas = np.linspace(0.05, 0.4, 8)
    result = {}
    for norm in NORMS:
        model = build(norm, nn.ReLU, width=args.width, depth=args.depth, seed=args.seed)
        optimizer, rows = sgd(model, args.smooth_lr), []
        for t, idx in enumerate(args.batches):
            x, target = mg.tensor(X[idx]), mg.tensor(y[idx])
            if t % args.every == 0:
                rows.append(_along_gradient(model, x, target, etas))
            step(model, optimizer, x, target)
        result[norm] = np.array(rows)
    return result


def speed(data, args) -> dict[float, dict[str, dict]]:
    """Per learning rate and variant: test accuracy every ``args.every`` steps (ReLU nets)
    and the step at which the loss stopped being finite (None if it never did). A diverged
    run's accuracy counts as chance (0.1) from then on."""
    X, y, X_test, y_test = data
    marks = set(checkpoints(args)) - {len(args.batches)}
    result: dict[float, dict[str, dict]] = {}
    for lr in args.lrs:
        result[lr] = {}
        for norm in NORMS:
            model = build(norm, nn.ReLU, width=args.width, depth=args.depth, seed=args.seed)
            optimizer, curve, diverged = sgd(model, lr), [], None
            for t, idx in enumerate(args.batches):
                if t in marks:
                    curve.append(0.1 if diverged else accuracy(model, X_test, y_test))
                if diverged is None:
                    with np.errstate(all="ignore"):
                        loss = step(model, optimizer, mg.tensor(X[idx]), mg.tensor(y[idx]))
                    diverged = None if np.isfinite(loss) else t
            curve.append(0.1 if diverged else accuracy(model, X_test, y_test))
            result[lr][norm] = {"accuracy": np.array(curve), "diverged": diverged}
    return result


# ----------------------------------------------------------------------------- two exact facts
def identity_fact(seed: int) -> float:
    """Largest |BN(x) - x| in training mode once gamma = sqrt(var + eps) and beta = mean (the
    batch's own statistics, biased variance), in float64."""
    x = np.random.default_rng(seed).normal(3.0, 2.0, size=(32, 8))
    bn = nn.BatchNorm1d(8).double()
    with mg.no_grad():  # from_numpy keeps float64 (a plain float64 array would be float32)
        bn.weight.copy_(mg.from_numpy(np.sqrt(x.var(axis=0) + bn.eps)))
        bn.bias.copy_(mg.from_numpy(x.mean(axis=0)))
    return float(np.max(np.abs(bn(mg.tensor(x, dtype=mg.float64)).numpy() - x)))


def one_sample_fact(data, args) -> tuple[str, float]:
    """After a few training steps of a BatchNorm net: the error a batch of one raises in
    training mode, and the largest difference in eval mode between predicting each test
    sample alone and inside the whole test batch."""
    X, y, X_test, _ = data
    model = build("batchnorm", nn.ReLU, width=args.width, depth=args.depth, seed=args.seed)
    optimizer = sgd(model, args.lr)
    for idx in args.batches[:20]:
        step(model, optimizer, mg.tensor(X[idx]), mg.tensor(y[idx]))
    try:
        model(mg.tensor(X_test[:1]))
        message = "no error"
    except ValueError as e:
        message = str(e)
    model.eval()
    with mg.no_grad():
        together = model(mg.tensor(X_test)).numpy()
        alone = np.concatenate([model(mg.tensor(X_test[i : i + 1])).numpy()
                                for i in range(len(X_test))])
    return message, float(np.max(np.abs(alone - together)))


# ----------------------------------------------------------------------------- summary
def _tail(values: np.ndarray) -> float:
    """Mean over the last quarter of training (early steps move everything)."""
    return float(np.nanmean(values[-max(1, len(values) // 4):]))


def report(shift, saturations, smooth, fast) -> None:
    print("internal covariate shift: move per step of each hidden layer's output, in stds")
    for norm, r in shift.items():
        first = np.nanmean(r["shift"][: max(1, len(r["shift"]) // 10)], axis=0)
        late = [_tail(r["shift"][:, k]) for k in range(r["shift"].shape[1])]
        print(f"  {norm:16s} first tenth {np.round(first, 4)}  last quarter "
              f"{np.round(late, 4)}  final accuracy {r['accuracy'][-1]:.1%}")
    for lr, result in saturations.items():
        print(f"sigmoid, lr {lr}: peak share |z| > 4 (most saturated layer), final loss, accuracy")
        for norm, r in result.items():
            print(f"  {norm:16s} {r['share'].max():.3f}  {_tail(r['loss']):.3f}  "
                  f"{r['accuracy']:.1%}")
    print("along the gradient (median over training): loss spread, gradient change, beta")
    for norm, rows in smooth.items():
        print(f"  {norm:16s} " + "  ".join(f"{v:.4g}" for v in np.median(rows, axis=0)))
    print("test accuracy at the end, by learning rate")
    for lr, curves in fast.items():
        print(f"  lr {lr:<5} " + "  ".join(
            f"{n} {r['accuracy'][-1]:.1%}" + (f" (diverged at step {r['diverged']})"
                                              if r["diverged"] is not None else "")
            for n, r in curves.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="SGD steps per run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3, help="hidden layers")
    parser.add_argument("--lr", type=float, default=0.05, help="for the shift")
    parser.add_argument("--smooth-lr", type=float, default=0.2, help="for the smoothness")
    parser.add_argument("--sigmoid-lrs", type=float, nargs="+", default=[0.1, 0.5])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.05, 0.2, 0.5, 1.0])
    parser.add_argument("--every", type=int, default=10, help="steps between measurements")
    parser.add_argument("--probe", type=int, default=256, help="probe batch for the shift")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the figures")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    X, y = load_digits()
    data = common.train_test_split(X, y, 0.2, args.seed)
    args.batches = batches(len(data[0]), args.steps, args.batch_size, args.seed)
    print(f"identity: max |BN(x) - x| with gamma = sqrt(var + eps), beta = mean: "
          f"{identity_fact(args.seed):.2e}")
    message, gap = one_sample_fact(data, args)
    print(f"one sample, training mode: {message}")
    print(f"one sample, eval mode: max |alone - in a batch| = {gap:.2e}")
    shift = covariate_shift(data, args)
    saturations = {}
    for lr in args.sigmoid_lrs:
        args.sigmoid_lr = lr
        saturations[lr] = saturation(data, args)
    smooth = smoothness(data, args)
    fast = speed(data, args)
    report(shift, saturations, smooth, fast)
    plt = common.pyplot()
    if plt is None:
        print("matplotlib is not installed: no figures (pip install 'minigrad-cython[viz]')")
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        plot_shift(plt, shift, args, args.out)
        plot_saturation(plt, saturations, args.out)
        plot_smoothness(plt, smooth, args, args.out)
        plot_speed(plt, fast, args, args.out)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
