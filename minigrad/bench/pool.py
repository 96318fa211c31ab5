"""Benchmark group "pool": max, average and adaptive average pooling forward + backward, float32.

Each step runs the forward kernel and the backward kernel with a fixed upstream gradient:
max_pool2d(2) and avg_pool2d(2) (stride 2), and adaptive_avg_pool2d(1) (global average
pooling), at the shapes of small CNNs. PyTorch, when installed, runs the same step through
autograd, as ``torch`` (2 threads) and ``torch-1T`` (1 thread).
"""

from __future__ import annotations

import numpy as np

from minigrad.bench.harness import COMPILED, Case, torch_or_none
from minigrad.kernels import reference

SHAPES = [(64, 16, 8, 8), (128, 32, 28, 28), (128, 64, 14, 14)]
QUICK_SHAPES = [(8, 4, 8, 8)]


def _max_step(kernels, x: np.ndarray, grad: np.ndarray):
    size = x.shape[2:]

    def step():
        y, indices = kernels.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1), grad.shape[2:])
        return kernels.max_pool2d_backward(grad, indices, size)

    return step


def _avg_step(kernels, x: np.ndarray, grad: np.ndarray):
    size = x.shape[2:]

    def step():
        kernels.avg_pool2d_forward(x, (2, 2), (2, 2), (0, 0), grad.shape[2:], True)
        return kernels.avg_pool2d_backward(grad, size, (2, 2), (2, 2), (0, 0), True)

    return step


def _adaptive_step(kernels, x: np.ndarray, grad: np.ndarray):
    size = x.shape[2:]

    def step():
        kernels.adaptive_avg_pool2d_forward(x, (1, 1))
        return kernels.adaptive_avg_pool2d_backward(grad, size)

    return step


def _torch_step(torch, name: str, x: np.ndarray, grad: np.ndarray, threads: int):
    functional = torch.nn.functional
    pool = {
        "max_pool2d(2)": lambda t: functional.max_pool2d(t, 2),
        "avg_pool2d(2)": lambda t: functional.avg_pool2d(t, 2),
        "adaptive_avg_pool2d(1)": lambda t: functional.adaptive_avg_pool2d(t, 1),
    }[name]
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    g = torch.from_numpy(grad)

    def step():
        # The thread count is process-wide: set it only when another row changed it.
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        t.grad = None
        pool(t).backward(g)
        return t.grad

    return step


def cases(quick: bool) -> list[Case]:
    torch = torch_or_none()
    rng = np.random.default_rng(0)
    steps = [("max_pool2d(2)", _max_step, 2), ("avg_pool2d(2)", _avg_step, 2),
             ("adaptive_avg_pool2d(1)", _adaptive_step, None)]
    out = []
    for name, step, k in steps:
        for shape in QUICK_SHAPES if quick else SHAPES:
            x = rng.standard_normal(shape, dtype=np.float32)
            out_size = (shape[2] // k, shape[3] // k) if k else (1, 1)
            grad = rng.standard_normal(shape[:2] + out_size, dtype=np.float32)
            impls = {"numpy": step(reference, x, grad)}
            if COMPILED is not None:
                impls["cython"] = step(COMPILED, x, grad)
            if torch is not None:
                impls["torch"] = _torch_step(torch, name, x, grad, 2)
                impls["torch-1T"] = _torch_step(torch, name, x, grad, 1)
            out.append(Case("pool", f"{name} fwd+bwd", "x".join(map(str, shape)), impls))
    return out
