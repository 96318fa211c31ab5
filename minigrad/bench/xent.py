"""Benchmark group "xent": softmax cross-entropy forward + backward."""

from __future__ import annotations

import numpy as np

from minigrad.bench.harness import COMPILED, Case, torch_or_none
from minigrad.kernels import reference


def _fwd_bwd(kernels, logits: np.ndarray, target: np.ndarray, grad: np.ndarray):
    def step():
        loss, parts = kernels.cross_entropy_forward(logits, target)
        return kernels.cross_entropy_backward(grad, logits, target, parts)

    return step


def _torch_step(torch, logits: np.ndarray, target: np.ndarray):
    t = torch.from_numpy(logits.copy()).requires_grad_(True)
    y = torch.from_numpy(target)

    def step():
        t.grad = None
        torch.nn.functional.cross_entropy(t, y, reduction="sum").backward()
        return t.grad

    return step


def cases(quick: bool) -> list[Case]:
    torch = torch_or_none()
    rng = np.random.default_rng(0)
    out = []
    for n, c in [(256, 10)] if quick else [(256, 10), (1024, 1000)]:
        logits = rng.standard_normal((n, c), dtype=np.float32)
        target = rng.integers(0, c, n)
        grad = np.ones(n, dtype=np.float32)
        impls = {"numpy": _fwd_bwd(reference, logits, target, grad)}
        if COMPILED is not None:
            impls["cython"] = _fwd_bwd(COMPILED, logits, target, grad)
        if torch is not None:
            impls["torch"] = _torch_step(torch, logits, target)
        # forward reads the logits; backward reads them again and writes the gradient
        out.append(Case("xent", "cross_entropy fwd+bwd", f"{n}x{c}", impls,
                        bytes=3 * logits.nbytes))
    return out
