"""Benchmark group "norm": the normalization layers' forward + backward (training), float32.

BatchNorm and LayerNorm steps run the forward kernel (batch statistics, running buffers updated
in place) and the backward kernel with a fixed upstream gradient, the work of one training step
of the layer. GroupNorm and RMSNorm steps run the public function and ``backward`` through the
graph, fused and (a second row) ``fused=False``, so the two rows compare one node with its
composite of primitive ops. PyTorch, when installed, runs the same step through autograd on 2
threads: what a PyTorch user pays for the layer.
"""

from __future__ import annotations

import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad.bench.harness import COMPILED, Case, torch_or_none
from minigrad.kernels import reference

MOMENTUM = 0.9  # minigrad's convention; PyTorch's equivalent is 1 - 0.9 = 0.1
EPS = 1e-5
# x-sized arrays a normalization's forward + backward must move: forward reads x and writes y,
# backward reads the gradient and x and writes dx
FWD_BWD_PASSES = 5

BATCHNORM_SHAPES = [(64, 128), (256, 512), (1024, 1024), (128, 64, 16, 16)]
LAYERNORM_SHAPES = [(256, 512), (32, 128, 256)]
QUICK_BATCHNORM_SHAPES = [(64, 128), (8, 16, 8, 8)]
QUICK_LAYERNORM_SHAPES = [(64, 128)]
GROUPS = 8
GROUPNORM_SHAPES = [(128, 64, 16, 16)]
RMSNORM_SHAPES = [(256, 512)]
QUICK_GROUPNORM_SHAPES = [(8, 16, 8, 8)]
QUICK_RMSNORM_SHAPES = [(64, 128)]


def _batchnorm_step(kernels, x: np.ndarray, grad: np.ndarray):
    channels = x.shape[1]
    gamma = np.ones(channels, x.dtype)
    beta = np.zeros(channels, x.dtype)
    running_mean = np.zeros(channels, x.dtype)
    running_var = np.ones(channels, x.dtype)

    def step():
        y, mean, rstd = kernels.batchnorm_forward(
            x, gamma, beta, running_mean, running_var, MOMENTUM, EPS, True
        )
        return kernels.batchnorm_backward(grad, x, gamma, mean, rstd, True)

    return step


def _layernorm_step(kernels, x: np.ndarray, grad: np.ndarray):
    features = x.shape[-1]
    gamma = np.ones(features, x.dtype)
    beta = np.zeros(features, x.dtype)

    def step():
        y, mean, rstd = kernels.layernorm_forward(x, gamma, beta, EPS, 1)
        return kernels.layernorm_backward(grad, x, gamma, mean, rstd)

    return step


def _torch_batchnorm_step(torch, x: np.ndarray, grad: np.ndarray):
    channels = x.shape[1]
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    gamma = torch.ones(channels, requires_grad=True)
    beta = torch.zeros(channels, requires_grad=True)
    running_mean, running_var = torch.zeros(channels), torch.ones(channels)
    g = torch.from_numpy(grad)

    def step():
        t.grad = gamma.grad = beta.grad = None
        y = torch.nn.functional.batch_norm(
            t, running_mean, running_var, gamma, beta, True, 1.0 - MOMENTUM, EPS
        )
        y.backward(g)
        return t.grad

    return step


def _torch_layernorm_step(torch, x: np.ndarray, grad: np.ndarray):
    features = x.shape[-1]
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    gamma = torch.ones(features, requires_grad=True)
    beta = torch.zeros(features, requires_grad=True)
    g = torch.from_numpy(grad)

    def step():
        t.grad = gamma.grad = beta.grad = None
        y = torch.nn.functional.layer_norm(t, (features,), gamma, beta, EPS)
        y.backward(g)
        return t.grad

    return step


def _graph_step(backend: str, call, x: np.ndarray, params: list[np.ndarray], grad: np.ndarray):
    """One forward + backward of ``call(x, *params)`` through the graph on ``backend``."""
    xt = mg.tensor(x, requires_grad=True)
    ps = [mg.tensor(p, requires_grad=True) for p in params]
    g = grad

    def step():
        previous = mg.get_backend()
        mg.set_backend(backend)
        try:
            xt.grad = None
            for p in ps:
                p.grad = None
            call(xt, *ps).backward(g)
            return xt.grad
        finally:
            mg.set_backend(previous)

    return step


def _torch_graph_step(torch, call, x: np.ndarray, params: list[np.ndarray], grad: np.ndarray):
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    ps = [torch.from_numpy(p.copy()).requires_grad_(True) for p in params]
    g = torch.from_numpy(grad)

    def step():
        t.grad = None
        for p in ps:
            p.grad = None
        call(t, *ps).backward(g)
        return t.grad

    return step


def _family_cases(torch, rng, quick: bool) -> list[Case]:
    """GroupNorm and RMSNorm, each fused and composite, on both backends (and PyTorch)."""
    groups = [
        ("groupnorm", QUICK_GROUPNORM_SHAPES if quick else GROUPNORM_SHAPES,
         lambda fused: lambda x, w, b: F.group_norm(x, GROUPS, w, b, fused=fused),
         lambda t, w, b: torch.nn.functional.group_norm(t, GROUPS, w, b, EPS),
         lambda shape: [np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)]),
        ("rmsnorm", QUICK_RMSNORM_SHAPES if quick else RMSNORM_SHAPES,
         lambda fused: lambda x, w: F.rms_norm(x, x.shape[-1], w, eps=EPS, fused=fused),
         lambda t, w: torch.nn.functional.rms_norm(t, (t.shape[-1],), w, EPS),
         lambda shape: [np.ones(shape[-1], np.float32)]),
    ]
    out = []
    for name, shapes, ours, theirs, make_params in groups:
        for shape in shapes:
            x = rng.standard_normal(shape, dtype=np.float32)
            grad = rng.standard_normal(shape, dtype=np.float32)
            params = make_params(shape)
            for fused in (True, False):
                impls = {"numpy": _graph_step("numpy", ours(fused), x, params, grad)}
                if COMPILED is not None:
                    impls["cython"] = _graph_step("cython", ours(fused), x, params, grad)
                if torch is not None:
                    impls["torch"] = _torch_graph_step(torch, theirs, x, params, grad)
                label = f"{name} fwd+bwd" if fused else f"{name} composite fwd+bwd"
                out.append(Case("norm", label, "x".join(map(str, shape)), impls,
                                bytes=FWD_BWD_PASSES * x.nbytes))
    return out


def cases(quick: bool) -> list[Case]:
    torch = torch_or_none()
    rng = np.random.default_rng(0)
    out = []
    groups = [
        (
            "batchnorm",
            QUICK_BATCHNORM_SHAPES if quick else BATCHNORM_SHAPES,
            _batchnorm_step,
            _torch_batchnorm_step,
        ),
        (
            "layernorm",
            QUICK_LAYERNORM_SHAPES if quick else LAYERNORM_SHAPES,
            _layernorm_step,
            _torch_layernorm_step,
        ),
    ]
    for name, shapes, step, torch_step in groups:
        for shape in shapes:
            x = rng.standard_normal(shape, dtype=np.float32)
            grad = rng.standard_normal(shape, dtype=np.float32)
            impls = {"numpy": step(reference, x, grad)}
            if COMPILED is not None:
                impls["cython"] = step(COMPILED, x, grad)
            if torch is not None:
                impls["torch"] = torch_step(torch, x, grad)
            if name == "batchnorm":
                name_nd = "batchnorm2d" if len(shape) == 4 else "batchnorm1d"
            else:
                name_nd = name
            out.append(Case("norm", f"{name_nd} fwd+bwd", "x".join(map(str, shape)), impls,
                            bytes=FWD_BWD_PASSES * x.nbytes))
    return out + _family_cases(torch, rng, quick)
