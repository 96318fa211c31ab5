"""CNN training-step rows of the "conv" benchmark group: minigrad against PyTorch, float32.

The net is Conv(C,16,3,p1)-BN2d-ReLU-MaxPool(2)-Conv(16,32,3,p1)-BN2d-ReLU-AdaptiveAvgPool(1)-
Flatten-Linear(32,10); a step is zero_grad, forward, cross-entropy, backward and an Adam update,
on digits-size input (64, 1, 8, 8) and MNIST-size input (128, 1, 28, 28). Implementations, all
starting from the same weights and batch: ``cython`` (minigrad on its compiled kernels),
``compiled`` (the same step under ``mg.compile``), ``minigrad-numpy`` (the same code on the
NumPy twins), ``torch`` (2 threads) and ``torch-1T`` (1 thread) when PyTorch is installed.

``cases`` checks once, untimed, that minigrad's and PyTorch's loss and gradients agree to
float32 tolerance after copying the weights, and raises when they do not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from minigrad.bench.harness import Case
from minigrad.bench.step import step_closure, step_columns, torch_step_closure

EPS = 1e-5  # BatchNorm eps
MOMENTUM = 0.9  # minigrad's BatchNorm convention (PyTorch's momentum=0.1)
LR, BETAS, ADAM_EPS = 1e-3, (0.9, 0.999), 1e-8
TOLERANCE = 1e-9  # worst float64 difference relative to each array's largest value

#: label -> (N, C, H, W) of the input batch
INPUTS = {"digits": (64, 1, 8, 8), "mnist": (128, 1, 28, 28)}
QUICK_INPUTS = {"digits": (8, 1, 8, 8)}


def minigrad_model(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16, eps=EPS, momentum=MOMENTUM),
        nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32, eps=EPS, momentum=MOMENTUM),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def torch_model(torch, channels: int, weights: list[np.ndarray]):
    """The same net in PyTorch, its parameters set to ``weights`` (module order)."""
    tnn = torch.nn
    model = tnn.Sequential(
        tnn.Conv2d(channels, 16, 3, padding=1), tnn.BatchNorm2d(16, eps=EPS, momentum=1 - MOMENTUM),
        tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(16, 32, 3, padding=1), tnn.BatchNorm2d(32, eps=EPS, momentum=1 - MOMENTUM),
        tnn.ReLU(), tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(32, 10),
    )
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights, strict=True):
            if tuple(p.shape) != w.shape:
                raise AssertionError(f"cnn step: torch parameter {tuple(p.shape)} vs {w.shape}")
            p.copy_(torch.from_numpy(w))
    return model


def batch(shape: tuple[int, ...], seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A float32 image batch and integer class targets."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape, dtype=np.float32), rng.integers(0, 10, shape[0])


def minigrad_step(channels: int, weights, x, y, backend: str | None = None) -> Callable:
    """A closure running one minigrad training step (on ``backend`` when given)."""
    model = minigrad_model(channels)
    for p, w in zip(model.parameters(), weights, strict=True):
        p.data[...] = w
    opt = optim.Adam(model.parameters(), lr=LR, betas=BETAS, eps=ADAM_EPS)
    return step_closure(model, opt, mg.tensor(x), y, backend)


def torch_step(torch, channels: int, weights, x, y, threads: int) -> Callable:
    """One PyTorch training step of the same net on ``threads`` threads."""
    model = torch_model(torch, channels, weights)
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=BETAS, eps=ADAM_EPS)
    return torch_step_closure(torch, model, opt, torch.from_numpy(x), torch.from_numpy(y), threads)


def check_against_torch(torch, label: str, weights, x, y) -> float:
    """Untimed: one forward and backward of minigrad (current backend) and of PyTorch, both in
    float64 from the same weights; the loss and every gradient agree within TOLERANCE relative
    to the array's largest value (or 1e-2 of the largest gradient for nearly-zero arrays: a
    conv bias followed by BatchNorm has a zero gradient in exact arithmetic, so only rounding
    noise is left). float64 because the gradient of this net is not a continuous function of
    its inputs: a ReLU input or a max-pool tie that float32 rounding moves across zero sends
    part of a gradient elsewhere, and PyTorch's own float32 gradients then differ from its
    float64 ones by up to 1e-2 for some random weights. The float32 kernels are checked against
    their float64 twins by the test suite. Returns the worst difference; raises
    AssertionError naming the array otherwise."""
    model = minigrad_model(x.shape[1]).double()
    for p, w in zip(model.parameters(), weights, strict=True):
        p.data[...] = w
    loss = F.cross_entropy(model(mg.tensor(x, dtype=np.float64)), y)
    loss.backward()
    reference = torch_model(torch, x.shape[1], weights).double()
    expected = torch.nn.functional.cross_entropy(reference(torch.from_numpy(x).double()),
                                                 torch.from_numpy(y))
    expected.backward()
    pairs = [("loss", np.array(loss.item()), np.array(expected.item()))]
    grads = [p.grad.numpy() for p in reference.parameters()]
    pairs += [(f"gradient {k} {g.shape}", p.grad.data, g)
              for k, (p, g) in enumerate(zip(model.parameters(), grads, strict=True))]
    floor = 1e-2 * max(float(np.max(np.abs(g))) for g in grads)
    worst = 0.0
    for name, got, want in pairs:
        scale = max(float(np.max(np.abs(want))), floor if name != "loss" else 0.0, 1e-30)
        error = float(np.max(np.abs(got - want))) / scale
        worst = max(worst, error)
        if error > TOLERANCE:  # not an assert: the check must also run under python -O
            raise AssertionError(f"cnn step {label}: minigrad and torch {name} differ by "
                                 f"{error:.2e} (tolerance {TOLERANCE:.0e})")
    return worst


def cases(quick: bool, torch) -> list[Case]:
    """One training-step row per input size; ``torch`` is the module or None."""
    out = []
    for label, shape in (QUICK_INPUTS if quick else INPUTS).items():
        model = minigrad_model(shape[1])
        weights = [p.data.copy() for p in model.parameters()]
        x, y = batch(shape)
        if torch is not None:
            check_against_torch(torch, label, weights, x, y)
        # the harness computes numpy/cython ratios from the "numpy" key: here, the twins
        impls = step_columns(
            "conv", "numpy", torch,
            lambda backend=None, c=shape[1], w=weights, x=x, y=y: minigrad_step(c, w, x, y,
                                                                                backend),
            lambda threads, c=shape[1], w=weights, x=x, y=y: torch_step(torch, c, w, x, y,
                                                                        threads))
        out.append(Case("conv", f"cnn {label} train step", "x".join(map(str, shape)), impls))
    return out
