"""Benchmark group "step": one full training step of a small MLP, float32.

A step is zero_grad, forward, cross-entropy, backward and an Adam update. Implementations,
all starting from the same weights and batch:

- ``cython``: minigrad on its compiled kernels (the backend ``python -m minigrad.bench``
  selects; the row is left out when the kernels are not built);
- ``minigrad-numpy``: the same minigrad code with ``mg.set_backend("numpy")`` around the step;
- ``numpy``: the step written out by hand in plain NumPy below (forward, backward and Adam,
  no framework): the floor a Python framework over NumPy can hope to reach;
- ``compiled``: the ``cython`` step under ``mg.compile`` (recorded on the first call,
  replayed after);
- ``torch`` (2 threads) and ``torch-1T`` (1 thread), when PyTorch is installed;
- ``jax``: the same step under ``jax.jit``, when JAX is installed (``jax_steps.py``).

``cases`` checks once, untimed, that minigrad's loss, gradients and updated weights agree with
the hand-written step, that the compiled step is bit for bit the eager one, and that JAX's
first loss agrees, so the rows compare the same work.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from minigrad.bench import jax_steps
from minigrad.bench.harness import COMPILED, Case, torch_or_none

EPS = 1e-5  # normalization eps
MOMENTUM = 0.9  # minigrad's BatchNorm convention (PyTorch's momentum=0.1)
LR, BETA1, BETA2, ADAM_EPS = 1e-3, 0.9, 0.999, 1e-8


@dataclass(frozen=True)
class Net:
    """An MLP: Linear layers of ``sizes``, each hidden one followed by ``norm`` and ReLU."""

    label: str
    sizes: tuple[int, ...]
    norm: str  # "batchnorm" or "layernorm"
    batch: int

    @property
    def shape(self) -> str:
        return "-".join(map(str, self.sizes)) + f" b{self.batch}"


NETS = [
    Net("mlp-batchnorm", (64, 128, 128, 10), "batchnorm", 64),
    Net("mlp-layernorm", (64, 128, 128, 10), "layernorm", 64),
    Net("mlp-batchnorm", (784, 256, 256, 10), "batchnorm", 128),
]


def initial_weights(net: Net, seed: int = 0) -> list[np.ndarray]:
    """Parameters in module order: per layer W (out, in) and b (out,), then gamma and beta
    after each hidden layer. W and b ~ U(-1/sqrt(in), 1/sqrt(in)), PyTorch's Linear init."""
    rng = np.random.default_rng(seed)
    weights = []
    hidden = len(net.sizes) - 2
    for k, (n_in, n_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:], strict=True)):
        bound = 1 / math.sqrt(n_in)
        weights.append(rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32))
        weights.append(rng.uniform(-bound, bound, n_out).astype(np.float32))
        if k < hidden:
            weights += [np.ones(n_out, np.float32), np.zeros(n_out, np.float32)]
    return weights


def batch(net: Net, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A float32 input batch and integer class targets."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((net.batch, net.sizes[0]), dtype=np.float32)
    return x, rng.integers(0, net.sizes[-1], net.batch)


# ----------------------------------------------------------------------------- minigrad
def minigrad_model(net: Net, weights: list[np.ndarray]) -> nn.Module:
    """The net as an ``nn.Sequential``, its parameters set to ``weights``."""
    layers: list[nn.Module] = []
    hidden = len(net.sizes) - 2
    for k, (n_in, n_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if k < hidden:
            norm = nn.BatchNorm1d(n_out) if net.norm == "batchnorm" else nn.LayerNorm(n_out)
            layers += [norm, nn.ReLU()]
    model = nn.Sequential(*layers)
    for p, w in zip(model.parameters(), weights, strict=True):
        p.data[...] = w
    return model


def minigrad_step(net: Net, weights, x, y, backend: str | None = None) -> Callable[[], float]:
    """A closure running one minigrad training step (on ``backend`` when given)."""
    model = minigrad_model(net, weights)
    opt = optim.Adam(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS)
    inputs = mg.tensor(x)

    return step_closure(model, opt, inputs, y, backend)


def step_closure(model, opt, inputs, y, backend: str | None = None) -> Callable[[], object]:
    """One training step (forward, cross-entropy, backward, optimizer step) as a closure,
    switched to ``backend`` for its duration when one is given."""

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(inputs), y)
        loss.backward()
        opt.step()
        return loss

    if backend is None:
        return step

    def step_on_backend():
        previous = mg.get_backend()
        mg.set_backend(backend)
        try:
            return step()
        finally:
            mg.set_backend(previous)

    return step_on_backend


# ----------------------------------------------------------------------------- plain NumPy
class NumpyMLP:
    """The same net and Adam written out by hand in NumPy: what the framework must not exceed.

    Forward keeps what the backward needs; backward uses the closed forms derived in
    docs/normalization.md and the softmax cross-entropy gradient (softmax - onehot) / N.
    """

    def __init__(self, net: Net, weights: list[np.ndarray]):
        self.net = net
        self.params = [w.copy() for w in weights]
        self.exp_avg = [np.zeros_like(w) for w in weights]
        self.exp_avg_sq = [np.zeros_like(w) for w in weights]
        self.t = 0
        hidden = net.sizes[1:-1]
        self.running_mean = [np.zeros(n, np.float32) for n in hidden]
        self.running_var = [np.ones(n, np.float32) for n in hidden]

    def _layers(self):
        """(W, b, gamma, beta) per layer; gamma and beta are None for the output layer."""
        p, k, layers = self.params, 0, []
        for _ in range(len(self.net.sizes) - 2):
            layers.append(tuple(p[k : k + 4]))
            k += 4
        layers.append((p[k], p[k + 1], None, None))
        return layers

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Forward and backward by hand; gradients in the order of ``params``."""
        layers = self._layers()
        tape, h = self._forward(layers, x)
        loss, grad = self._cross_entropy(h, y)
        return loss, self._backward(layers, tape, grad)

    def _forward(self, layers: list, x: np.ndarray) -> tuple[list, np.ndarray]:
        """Linear, norm, ReLU per hidden layer; returns what the backward needs and the logits."""
        axis = 0 if self.net.norm == "batchnorm" else 1
        tape = []
        h = x
        for i, (w, b, gamma, beta) in enumerate(layers):
            a_in = h
            h = h @ w.T + b
            if gamma is None:
                tape.append((a_in, None, None, None))
                break
            mean = h.mean(axis=axis, keepdims=True)
            centered = h - mean
            var = (centered * centered).mean(axis=axis, keepdims=True)
            rstd = 1 / np.sqrt(var + EPS)
            x_hat = centered * rstd
            z = gamma * x_hat + beta
            if axis == 0:  # BatchNorm tracks running statistics (unbiased variance)
                n = h.shape[0]
                self.running_mean[i] = MOMENTUM * self.running_mean[i] + (1 - MOMENTUM) * mean[0]
                self.running_var[i] = (MOMENTUM * self.running_var[i]
                                       + (1 - MOMENTUM) * var[0] * (n / (n - 1)))
            h = np.maximum(z, 0)
            tape.append((a_in, x_hat, rstd, z))
        return tape, h

    @staticmethod
    def _cross_entropy(h: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean softmax cross-entropy of logits h and its gradient."""
        rows = np.arange(len(y))
        shifted = h - h.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
        grad = exp / total
        grad[rows, y] -= 1
        grad /= len(y)
        return loss, grad

    def _backward(self, layers: list, tape: list, grad: np.ndarray) -> list[np.ndarray]:
        """Gradients of every parameter from the loss gradient, in the order of ``params``."""
        axis = 0 if self.net.norm == "batchnorm" else 1
        grads: list[np.ndarray] = []
        for (w, _, gamma, _), (a_in, x_hat, rstd, z) in zip(
            reversed(layers), reversed(tape), strict=True
        ):
            if gamma is not None:
                grad = grad * (z > 0)  # ReLU
                d_gamma = (grad * x_hat).sum(axis=0)
                d_beta = grad.sum(axis=0)
                g = grad * gamma
                m = g.shape[axis]
                grad = (rstd / m) * (m * g - g.sum(axis=axis, keepdims=True)
                                     - x_hat * (g * x_hat).sum(axis=axis, keepdims=True))
                grads += [d_beta, d_gamma]
            grads += [grad.sum(axis=0), grad.T @ a_in]
            grad = grad @ w
        return grads[::-1]

    def adam(self, grads: list[np.ndarray]) -> None:
        """PyTorch's Adam rule, one tensor at a time, in place."""
        self.t += 1
        step_size = LR / (1 - BETA1**self.t)
        bias2 = 1 - BETA2**self.t
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            m *= BETA1
            m += (1 - BETA1) * g
            v *= BETA2
            v += (1 - BETA2) * (g * g)
            p -= step_size * m / (np.sqrt(v / bias2) + ADAM_EPS)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss, grads = self.loss_and_grads(x, y)
        self.adam(grads)
        return loss


# ----------------------------------------------------------------------------- PyTorch
def torch_step(torch, net: Net, weights, x, y, threads: int) -> Callable[[], object]:
    """One PyTorch training step of the same net on ``threads`` threads."""
    layers = []
    hidden = len(net.sizes) - 2
    for k, (n_in, n_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:], strict=True)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if k < hidden:
            norm = (torch.nn.BatchNorm1d(n_out, eps=EPS, momentum=1 - MOMENTUM)
                    if net.norm == "batchnorm" else torch.nn.LayerNorm(n_out, eps=EPS))
            layers += [norm, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights, strict=True):
            p.copy_(torch.from_numpy(w))
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS)
    return torch_step_closure(torch, model, opt, torch.from_numpy(x), torch.from_numpy(y), threads)


def torch_step_closure(torch, model, opt, inputs, targets, threads: int) -> Callable[[], object]:
    """One PyTorch training step as a closure, run on ``threads`` threads."""
    cross_entropy = torch.nn.functional.cross_entropy

    def step():
        # The thread count is process-wide: set it only when another row changed it.
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        opt.zero_grad()
        loss = cross_entropy(model(inputs), targets)
        loss.backward()
        opt.step()
        return loss

    return step


# ----------------------------------------------------------------------------- check + cases
def check_against_numpy(net: Net, steps: int = 3) -> float:
    """Untimed: minigrad (compiled backend) and the hand-written step agree to float32
    tolerance on the loss and every gradient, and on the weights after each of ``steps``
    Adam steps.

    Returns the worst relative difference of loss and gradients (relative to each array's
    largest value, or to 1e-2 of the largest gradient for arrays that are nearly zero: the
    bias of a Linear layer followed by BatchNorm has a zero gradient in exact arithmetic, so
    both sides hold only rounding noise); raises AssertionError when it exceeds 1e-4.
    """
    weights = initial_weights(net)
    x, y = batch(net)
    model = minigrad_model(net, weights)
    opt = optim.Adam(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS)
    reference = NumpyMLP(net, weights)
    worst = 0.0

    def compare(name: str, got: np.ndarray, expected: np.ndarray, floor: float = 0.0) -> None:
        nonlocal worst
        scale = max(float(np.max(np.abs(expected))), floor, 1e-30)
        error = float(np.max(np.abs(got - expected))) / scale
        worst = max(worst, error)
        if error > 1e-4:  # not an assert: the check must also run under python -O
            raise AssertionError(f"step benchmark {net.shape}: {name} differs by {error:.2e}")

    for t in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(mg.tensor(x)), y)
        loss.backward()
        expected_loss, expected_grads = reference.loss_and_grads(x, y)
        compare(f"loss at step {t}", np.array(loss.item()), np.array(expected_loss))
        floor = 1e-2 * max(float(np.max(np.abs(g))) for g in expected_grads)
        for k, (p, g) in enumerate(zip(model.parameters(), expected_grads, strict=True)):
            compare(f"gradient {k} at step {t}", p.grad.data, g, floor)
        opt.step()
        reference.adam(expected_grads)
        _compare_updates(net, t, model.parameters(), reference.params, expected_grads, floor)
    return worst


def _compare_updates(net: Net, t: int, params: list, expected: list[np.ndarray],
                     grads: list[np.ndarray], floor: float) -> None:
    """Adam moves an element by about lr whatever its gradient's size, so where the gradient
    is tiny the step's direction is rounding noise: compare only elements whose gradient is at
    least 1e-3 of the largest one of that parameter, and ask their updates to agree to 1% of
    the learning rate."""
    for k, (p, w) in enumerate(zip(params, expected, strict=True)):
        g = np.abs(grads[k])
        signal = g >= 1e-3 * g.max()
        if g.max() >= floor:
            error = float(np.max(np.abs(p.data[signal] - w[signal]), initial=0.0)) / LR
            if error > 1e-2:
                raise AssertionError(
                    f"step benchmark {net.shape}: parameter {k} after step {t} differs by "
                    f"{error:.2e} lr"
                )


def step_columns(group: str, twins_key: str, torch, make_minigrad: Callable,
                 make_torch: Callable) -> dict[str, Callable]:
    """The columns every training-step row has: minigrad on the compiled kernels and under
    ``mg.compile`` (when built), minigrad on its NumPy twins (under ``twins_key``) and PyTorch
    on 1 and 2 threads (when installed). ``make_minigrad(backend=None)`` and
    ``make_torch(threads)`` build one step closure each."""
    impls = {}
    if COMPILED is not None:
        impls["cython"] = make_minigrad()  # the backend main() set
        impls["compiled"] = mg.compile(make_minigrad())
    on_twins = make_minigrad(backend="numpy")
    try:
        on_twins()
    except AttributeError as exc:  # a twin missing from kernels.reference
        print(f"{group}: no {twins_key} row, the NumPy backend is incomplete: {exc}",
              file=sys.stderr)
    else:
        impls[twins_key] = on_twins
    if torch is not None:
        # 1 thread first, so that the last row timed leaves torch on 2 threads.
        impls["torch-1T"] = make_torch(1)
        impls["torch"] = make_torch(2)
    return impls


def check_compiled(net: Net, steps: int = 3) -> None:
    """Untimed: the step under ``mg.compile`` leaves the same weights as the eager step,
    bit for bit, after ``steps`` steps (the first records, the others replay)."""
    weights = initial_weights(net)
    x, y = batch(net)
    runs = []
    for compiled in (False, True):
        model = minigrad_model(net, weights)
        opt = optim.Adam(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS)
        step = step_closure(model, opt, mg.tensor(x), y)
        step = mg.compile(step) if compiled else step
        for _ in range(steps):
            step()
        runs.append([p.data.copy() for p in model.parameters()])
    for k, (eager, replayed) in enumerate(zip(*runs, strict=True)):
        if not np.array_equal(eager, replayed):
            raise AssertionError(f"step benchmark {net.shape}: the compiled step's parameter "
                                 f"{k} differs from the eager step's")


def check_jax(jax, net: Net, step: Callable[[], object]) -> None:
    """Untimed: JAX's first loss agrees with the hand-written step's to 1e-4."""
    x, y = batch(net)
    expected, _ = NumpyMLP(net, initial_weights(net)).loss_and_grads(x, y)
    got = float(step())
    if abs(got - expected) > 1e-4 * max(1.0, abs(expected)):
        raise AssertionError(f"step benchmark {net.shape}: jax loss {got} vs {expected}")


def _jax_step(jax, net: Net) -> Callable[[], object]:
    hyper = dict(eps=EPS, momentum=MOMENTUM, lr=LR, beta1=BETA1, beta2=BETA2,
                 adam_eps=ADAM_EPS)
    step = jax_steps.mlp_step(jax, net, initial_weights(net), *batch(net), hyper)
    check_jax(jax, net, step)
    return step


def cases(quick: bool) -> list[Case]:
    torch = torch_or_none()
    jax = jax_steps.jax_or_none()
    out = []
    for net in NETS[:1] if quick else NETS:
        check_against_numpy(net)
        weights = initial_weights(net)
        x, y = batch(net)
        reference = NumpyMLP(net, weights)
        if COMPILED is not None:
            check_compiled(net)
        impls = {"numpy": lambda reference=reference, x=x, y=y: reference.step(x, y)}
        impls.update(step_columns(
            "step", "minigrad-numpy", torch,
            lambda backend=None, net=net, w=weights, x=x, y=y: minigrad_step(net, w, x, y,
                                                                             backend),
            lambda threads, net=net, w=weights, x=x, y=y: torch_step(torch, net, w, x, y,
                                                                     threads)))
        if jax is not None:
            impls["jax"] = _jax_step(jax, net)
        out.append(Case("step", f"{net.label} train step", net.shape, impls))
    return out
