"""BatchNorm and LayerNorm: each one fused graph node whose forward and backward are one kernel
call each, plus the same math composed from primitive ops (``fused=False``), a teaching aid and
a second oracle. docs/normalization.md derives the backward formulas."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import autograd, kernels
from ..autograd import Function, no_grad
from . import as_tensor, reduce, shape
from . import elementwise as ew


class BatchNorm(Function):
    """y = gamma * (x - mean) * rstd + beta per channel (axis 1) of x (N, C, *).

    Training: batch statistics (and the running buffers are updated in place by the kernel).
    Backward (training): dx = gamma rstd / M (M dy - sum dy - x_hat sum(dy x_hat));
    eval: dx = gamma rstd dy. dgamma = sum(dy x_hat), dbeta = sum(dy).
    """

    @staticmethod
    def forward(ctx, x, gamma=None, beta=None, *, running_mean, running_var, momentum, eps,
                training):
        y, mean, rstd = kernels.impl.batchnorm_forward(
            x, gamma, beta, running_mean, running_var, momentum, eps, training
        )
        ctx.training = training
        ctx.save_for_backward(x, gamma, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, gamma, mean, rstd = ctx.saved
        dx, dgamma, dbeta = kernels.impl.batchnorm_backward(
            np.asarray(grad, order="C"), x, gamma, mean, rstd, ctx.training
        )
        return (dx, dgamma, dbeta)[: len(ctx.inputs)]


class LayerNorm(Function):
    """y = gamma * (x - mean) * rstd + beta over the trailing ``normalized_ndim`` dims.

    Backward, with g = dy * gamma over the D normalized values of a sample:
    dx = rstd / D (D g - sum g - x_hat sum(g x_hat)); dgamma = sum(dy x_hat), dbeta = sum(dy)
    over the samples.
    """

    @staticmethod
    def forward(ctx, x, gamma=None, beta=None, *, eps, normalized_ndim):
        y, mean, rstd = kernels.impl.layernorm_forward(x, gamma, beta, eps, normalized_ndim)
        ctx.save_for_backward(x, gamma, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, gamma, mean, rstd = ctx.saved
        dx, dgamma, dbeta = kernels.impl.layernorm_backward(
            np.asarray(grad, order="C"), x, gamma, mean, rstd
        )
        return (dx, dgamma, dbeta)[: len(ctx.inputs)]


def _buffer(b: Any) -> np.ndarray | None:
    """The ndarray of a running buffer given as Tensor or ndarray (updated in place)."""
    Tensor = autograd.Tensor
    return b.data if isinstance(b, Tensor) else b


def _affine_inputs(x, weight, bias, expected: tuple[int, ...], op: str) -> list:
    """x plus whichever of weight and bias are given, checked against the expected shape."""
    if (weight is None) != (bias is None):
        raise ValueError(f"{op}: pass both weight and bias, or neither")
    if weight is None:
        return [x]
    weight, bias = as_tensor(weight), as_tensor(bias)
    for name, p in (("weight", weight), ("bias", bias)):
        if p.shape != expected:
            raise ValueError(f"{op}: {name} has shape {p.shape}, expected {expected}")
        if p.dtype != x.dtype:
            raise TypeError(
                f"{op}: input dtype {x.dtype} does not match {name} dtype {p.dtype}; "
                "convert one of them"
            )
    return [x, weight, bias]


def batch_norm(x: Any, running_mean: Any = None, running_var: Any = None, weight: Any = None,
               bias: Any = None, training: bool = False, momentum: float = 0.9,
               eps: float = 1e-5, fused: bool = True):
    """Batch normalization over axis 1 of x (N, C), (N, C, L) or (N, C, H, W).

    Args:
        running_mean, running_var: (C,) buffers, updated in place when training:
            running = running * momentum + batch_stat * (1 - momentum), with the unbiased
            batch variance for running_var. momentum=0.9 here equals PyTorch's momentum=0.1.
        weight, bias: gamma and beta, (C,), or both None.
        training: use (and track) batch statistics; otherwise normalise with the running ones.
        fused: one graph node and kernel (default) or the composite of primitive ops.
    """
    x = as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects input (N, C, ...), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"batch_norm needs a floating-point input, got dtype {x.dtype}")
    channels = x.shape[1]
    running_mean, running_var = _buffer(running_mean), _buffer(running_var)
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: pass both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError("batch_norm with training=False needs running_mean and running_var")
    for name, b in (("running_mean", running_mean), ("running_var", running_var)):
        if b is not None and b.shape != (channels,):
            raise ValueError(f"batch_norm: {name} has shape {b.shape}, expected ({channels},)")
    per_channel = x.size // channels if channels else 0
    if training and per_channel <= 1:
        raise ValueError(
            f"expected more than 1 value per channel when training, got input of shape {x.shape}"
        )
    inputs = _affine_inputs(x, weight, bias, (channels,), "batch_norm")
    if fused:
        return BatchNorm.apply(*inputs, running_mean=running_mean, running_var=running_var,
                               momentum=float(momentum), eps=float(eps), training=training)
    return _batch_norm_composite(inputs, running_mean, running_var, training, momentum, eps)


def _batch_norm_composite(inputs, running_mean, running_var, training, momentum, eps):
    """Batch norm from primitive ops; autograd derives the backward."""
    x = inputs[0]
    axes = (0,) + tuple(range(2, x.ndim))
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        mean = reduce.mean(x, axis=axes, keepdims=True)
        var = reduce.var(x, axis=axes, keepdims=True)
        if running_mean is not None:
            with no_grad():
                count = x.size // x.shape[1]
                unbiased = var.data.reshape(-1) * (count / (count - 1))
                running_mean[...] = running_mean * momentum + mean.data.reshape(-1) * (1 - momentum)
                running_var[...] = running_var * momentum + unbiased * (1 - momentum)
    else:
        mean = as_tensor(running_mean.reshape(per_channel).astype(x.dtype))
        var = as_tensor(running_var.reshape(per_channel).astype(x.dtype))
    x_hat = ew.div(ew.sub(x, mean), ew.sqrt(ew.add(var, eps)))
    if len(inputs) == 1:
        return x_hat
    gamma, beta = (shape.reshape(p, per_channel) for p in inputs[1:])
    return ew.add(ew.mul(x_hat, gamma), beta)


def layer_norm(x: Any, normalized_shape: int | tuple[int, ...], weight: Any = None,
               bias: Any = None, eps: float = 1e-5, fused: bool = True):
    """Layer normalization of each sample over its trailing ``normalized_shape`` dims.

    Same computation in training and eval; weight and bias (gamma and beta) have
    ``normalized_shape`` or are both None.
    """
    x = as_tensor(x)
    if isinstance(normalized_shape, int | np.integer):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(int(n) for n in normalized_shape)
    k = len(normalized_shape)
    if k == 0 or x.shape[x.ndim - k:] != normalized_shape or x.ndim < k:
        raise ValueError(
            f"layer_norm: expected input with trailing shape {normalized_shape}, "
            f"got shape {x.shape}"
        )
    if x.dtype.kind != "f":
        raise TypeError(f"layer_norm needs a floating-point input, got dtype {x.dtype}")
    inputs = _affine_inputs(x, weight, bias, normalized_shape, "layer_norm")
    if fused:
        return LayerNorm.apply(*inputs, eps=float(eps), normalized_ndim=k)
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = reduce.mean(x, axis=axes, keepdims=True)
    var = reduce.var(x, axis=axes, keepdims=True)
    x_hat = ew.div(ew.sub(x, mean), ew.sqrt(ew.add(var, eps)))
    if len(inputs) == 1:
        return x_hat
    return ew.add(ew.mul(x_hat, inputs[1]), inputs[2])
