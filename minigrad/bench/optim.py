"""Benchmark group "optim": one optimizer step over all parameters of an MLP with BatchNorm.

Rows: the fused Adam kernel (compiled) against its per-tensor NumPy twin; the whole
``minigrad.optim.Adam.step()`` on each kernel module; and ``torch.optim.Adam.step()`` (its
default implementation) on the same shapes. Also one SGD-with-momentum row.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

import minigrad as mg
from minigrad import nn
from minigrad import optim as mg_optim
from minigrad.bench.harness import COMPILED, Case, torch_or_none
from minigrad.kernels import reference
from minigrad.tensor import Tensor


def _mlp_shapes(sizes: list[int]) -> list[tuple[int, ...]]:
    """Parameter shapes of Linear layers with BatchNorm (gamma, beta) after each hidden one."""
    shapes: list[tuple[int, ...]] = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        shapes += [(n_out, n_in), (n_out,)]
        if k < len(sizes) - 2:
            shapes += [(n_out,), (n_out,)]
    return shapes


def _arrays(shapes, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s, dtype=np.float32) for s in shapes]


def _kernel_step(module, name: str, shapes) -> Callable[[], None]:
    """One kernel call over every tensor, one state array per tensor (steps grow each call)."""
    params, grads = _arrays(shapes, 0), _arrays(shapes, 1)
    steps = [0] * len(params)
    moments = [[np.zeros_like(p) for p in params] for _ in range(2)]

    def adam():
        steps[:] = [t + 1 for t in steps]
        module.adam_step(params, grads, moments[0], moments[1], None, steps, lr=1e-3)

    first = [True] * len(params)

    def sgd():
        module.sgd_step(params, grads, moments[0], first, lr=1e-3, momentum=0.9)
        first[:] = [False] * len(params)

    return adam if name == "adam" else sgd


def _minigrad_step(module, shapes) -> Callable[[], None]:
    """minigrad.optim.Adam.step() with its kernels taken from ``module``."""
    params = [nn.Parameter(a) for a in _arrays(shapes, 0)]
    for p, g in zip(params, _arrays(shapes, 1), strict=True):
        p.grad = Tensor(g)
    opt = mg_optim.Adam(params, lr=1e-3)

    backend = "numpy" if module is reference else "cython"

    def step():
        previous = mg.get_backend()
        mg.set_backend(backend)
        try:
            opt.step()
        finally:
            mg.set_backend(previous)

    return step


def _torch_step(torch, name: str, shapes) -> Callable[[], None]:
    params = [torch.from_numpy(a).requires_grad_(True) for a in _arrays(shapes, 0)]
    for p, g in zip(params, _arrays(shapes, 1), strict=True):
        p.grad = torch.from_numpy(g)
    if name == "adam":
        opt = torch.optim.Adam(params, lr=1e-3)
    else:
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    return opt.step


def cases(quick: bool) -> list[Case]:
    torch = torch_or_none()
    nets = {"64-128-128-10": [64, 128, 128, 10]}
    if not quick:
        nets["784-256-256-10"] = [784, 256, 256, 10]
    out = []
    for label, sizes in nets.items():
        shapes = _mlp_shapes(sizes)
        shape = f"{sum(int(np.prod(s)) for s in shapes)} in {len(shapes)}"
        rows = {  # row name -> how to build it on one kernel module
            "adam kernel": partial(_kernel_step, name="adam", shapes=shapes),
            "Adam.step()": partial(_minigrad_step, shapes=shapes),
        }
        if label == "64-128-128-10":
            rows["sgd momentum kernel"] = partial(_kernel_step, name="sgd", shapes=shapes)
        for name, build in rows.items():
            impls = {"numpy": build(reference)}
            if COMPILED is not None:
                impls["cython"] = build(COMPILED)
            if torch is not None:
                impls["torch"] = _torch_step(torch, "sgd" if "sgd" in name else "adam", shapes)
            # float32 arrays of the parameters' size read and written per step: Adam reads p, g,
            # m, v and writes p, m, v; SGD with momentum reads p, g, buf and writes p, buf
            arrays = 5 if "sgd" in name else 7
            n = sum(int(np.prod(s)) for s in shapes)
            out.append(Case("optim", f"{name} {label}", shape, impls, bytes=arrays * 4 * n))
    return out
