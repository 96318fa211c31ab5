"""Benchmark group "conv": conv2d forward + backward (dx, dW, db), float32, 3x3 kernels with
padding 1, at the shapes of small CNNs on 8x8 digits and 28x28 MNIST, then a whole CNN training
step at both sizes (``minigrad.bench.cnn_step``). Pooling has its own group, "pool".

Each step runs the forward kernel and the backward kernel with a fixed upstream gradient, the
work of one training step of the layer. PyTorch, when installed, runs the same step through
autograd (``F.conv2d`` then ``backward``).
"""

from __future__ import annotations

import numpy as np

from minigrad.bench import cnn_step
from minigrad.bench.harness import COMPILED, Case, torch_or_none
from minigrad.kernels import reference

# (N, C_in, H, W) -> C_out, 3x3 kernel, stride 1, padding 1
CONV_SHAPES = [((64, 1, 8, 8), 16), ((64, 16, 8, 8), 32), ((128, 1, 28, 28), 32),
               ((128, 32, 14, 14), 64)]
QUICK_CONV_SHAPES = [((8, 1, 8, 8), 4), ((8, 4, 8, 8), 8)]
GEOMETRY = ((1, 1), (1, 1, 1, 1), (1, 1), 1)  # stride, padding (t, b, l, r), dilation, groups
ALL_GRADS = (True, True, True)


def _conv_step(kernels, x, weight, bias, grad):
    def step():
        kernels.conv2d_forward(x, weight, bias, *GEOMETRY)
        return kernels.conv2d_backward(grad, x, weight, *GEOMETRY, ALL_GRADS)

    return step


def _torch_conv_step(torch, x, weight, bias, grad):
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    w = torch.from_numpy(weight.copy()).requires_grad_(True)
    b = torch.from_numpy(bias.copy()).requires_grad_(True)
    g = torch.from_numpy(grad)

    def step():
        t.grad = w.grad = b.grad = None
        torch.nn.functional.conv2d(t, w, b, 1, 1).backward(g)
        return t.grad

    return step


def cases(quick: bool) -> list[Case]:
    torch = torch_or_none()
    rng = np.random.default_rng(0)
    out = []
    for (n, c, h, w), o in QUICK_CONV_SHAPES if quick else CONV_SHAPES:
        x = rng.standard_normal((n, c, h, w), dtype=np.float32)
        weight = rng.standard_normal((o, c, 3, 3), dtype=np.float32) / np.float32(3 * c**0.5)
        bias = rng.standard_normal(o, dtype=np.float32)
        grad = rng.standard_normal((n, o, h, w), dtype=np.float32)
        impls = {"numpy": _conv_step(reference, x, weight, bias, grad)}
        if COMPILED is not None:
            impls["cython"] = _conv_step(COMPILED, x, weight, bias, grad)
        if torch is not None:
            impls["torch"] = _torch_conv_step(torch, x, weight, bias, grad)
        out.append(Case("conv", "conv2d k3 p1 fwd+bwd", f"{n}x{c}x{h}x{w}->{o}", impls))
    return out + cnn_step.cases(quick, torch)
