"""Benchmark group "overhead": what the engine itself costs per op, float32.

Rows:

- ``tiny-op``: ``(a*b + c).sum().backward()`` on 4-element tensors, per call. ``numpy`` is
  the same forward and backward written as bare NumPy calls, so ``cython - numpy`` is what
  minigrad's bookkeeping costs for 3 graph nodes; ``torch`` is PyTorch's autograd.
- ``engine``: the digits-sized BatchNorm MLP training step of the "step" group (8 graph
  nodes: 3 Linear, 2 BatchNorm, 2 ReLU, 1 cross-entropy, plus zero_grad and the Adam step).
  ``numpy`` here makes exactly the kernel calls minigrad makes (the same matmuls and the
  same compiled BatchNorm, cross-entropy and Adam kernels) with no engine at all, so
  ``(cython - numpy) / 8`` is the Python cost of one graph node, forward plus backward.

Both rows also time ``compiled`` (minigrad's step under ``mg.compile``: the same kernel calls
replayed without the engine) and, when JAX is installed, ``jax`` (``jax.jit``).

Without the compiled kernels, tiny-op times minigrad on the NumPy twins (``minigrad-numpy``)
and the engine row, whose baseline is the compiled kernels, is left out.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import minigrad as mg
from minigrad.bench import jax_steps
from minigrad.bench import step as step_group
from minigrad.bench.harness import COMPILED, Case, torch_or_none
from minigrad.kernels import compiled

TINY = 4
ENGINE_NODES = 8  # graph nodes of the digits step: 3 Linear, 2 BatchNorm, 2 ReLU, 1 loss


def _tiny_inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(TINY, dtype=np.float32) for _ in range(3)]


def _minigrad_tiny() -> Callable[[], object]:
    a, b, c = (mg.tensor(v, requires_grad=True) for v in _tiny_inputs())

    def step():
        a.grad = b.grad = c.grad = None
        (a * b + c).sum().backward()
        return a.grad

    return step


def _numpy_tiny() -> Callable[[], object]:
    a, b, c = _tiny_inputs()

    def step():
        loss = (a * b + c).sum()
        grad = np.ones_like(c)  # d loss / d (a*b + c)
        return loss, grad * b, grad * a, grad

    return step


def _torch_tiny(torch) -> Callable[[], object]:
    a, b, c = (torch.from_numpy(v.copy()).requires_grad_(True) for v in _tiny_inputs())

    def step():
        a.grad = b.grad = c.grad = None
        (a * b + c).sum().backward()
        return a.grad

    return step


def _kernels_only_step(net: step_group.Net) -> Callable[[], object]:
    """The digits step as the bare kernel calls minigrad makes for it, without the engine."""
    weights = [w.copy() for w in step_group.initial_weights(net)]
    x, y = step_group.batch(net)
    hidden = len(net.sizes) - 2
    running = [(np.zeros(n, np.float32), np.ones(n, np.float32)) for n in net.sizes[1:-1]]
    exp_avg = [np.zeros_like(w) for w in weights]
    exp_avg_sq = [np.zeros_like(w) for w in weights]
    steps = [0] * len(weights)
    k = compiled

    def step():
        tape = []
        h = x
        for i in range(hidden + 1):
            w, b = weights[4 * i], weights[4 * i + 1]
            a_in = h
            h = h @ w.T
            np.add(h, b, out=h)
            if i == hidden:
                tape.append((a_in, None, None, None))
                break
            gamma, beta = weights[4 * i + 2], weights[4 * i + 3]
            z, mean, rstd = k.batchnorm_forward(h, gamma, beta, *running[i], 0.9, 1e-5, True)
            tape.append((a_in, h, (mean, rstd), z))
            h = np.maximum(z, 0)
        loss, parts = k.cross_entropy_forward(h, y, 0.0, -100)
        total = np.sum(loss, dtype=np.float64) / len(y)
        grad = k.cross_entropy_backward(np.asarray(1.0 / len(y), np.float32), h, y, parts,
                                        0.0, -100)
        grads = [None] * len(weights)
        for i in range(hidden, -1, -1):
            a_in, h_pre, stats, z = tape[i]
            w = weights[4 * i]
            if stats is not None:
                grad = grad * (z > 0)
                grad, grads[4 * i + 2], grads[4 * i + 3] = k.batchnorm_backward(
                    grad, h_pre, weights[4 * i + 2], *stats, True)
            grads[4 * i] = grad.T @ a_in
            grads[4 * i + 1] = grad.sum(axis=0)
            if i > 0:
                grad = grad @ w
        steps[:] = [t + 1 for t in steps]
        k.adam_step(weights, grads, exp_avg, exp_avg_sq, None, steps, lr=1e-3)
        return total

    return step


#: minigrad's own label: "cython" when the compiled kernels run it, else the twins' label.
MINIGRAD_LABEL = "cython" if COMPILED is not None else "minigrad-numpy"


def cases(quick: bool) -> list[Case]:
    torch = torch_or_none()
    jax = jax_steps.jax_or_none()
    tiny = {"numpy": _numpy_tiny(), MINIGRAD_LABEL: _minigrad_tiny(),
            "compiled": mg.compile(_minigrad_tiny())}
    if torch is not None:
        tiny["torch"] = _torch_tiny(torch)
    if jax is not None:
        tiny["jax"] = jax_steps.tiny(jax, *_tiny_inputs())
    rows = [Case("overhead", "tiny-op (a*b+c).sum().backward()", f"{TINY}", tiny)]
    if COMPILED is None:
        return rows
    net = step_group.NETS[0]
    weights = step_group.initial_weights(net)
    x, y = step_group.batch(net)
    engine = {
        "numpy": _kernels_only_step(net),
        "cython": step_group.minigrad_step(net, weights, x, y),
        "compiled": mg.compile(step_group.minigrad_step(net, weights, x, y)),
    }
    return rows + [Case("overhead", "engine: step vs its kernels", net.shape, engine)]


def per_node_overhead(rows: list[dict]) -> float | None:
    """Seconds of engine Python per graph node (forward + backward), from the engine row."""
    for row in rows:
        if row["group"] == "overhead" and row["case"].startswith("engine"):
            times = row["times"]
            return (times["cython"] - times["numpy"]) / ENGINE_NODES
    return None
