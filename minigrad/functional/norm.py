"""batch_norm and layer_norm: every argument rule checked once, then either the fused Function
(``minigrad.ops.norm``) or the same math composed from primitive ops (``fused=False``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..grad_mode import no_grad
from ..ops import norm as ops
from . import elementwise as ew
from . import reduce, shape
from ._convert import as_tensor, data_of
from ._rules import (
    check_eps,
    check_float_input,
    check_momentum,
    check_param_dtype,
    check_per_channel,
    check_training,
    normalized_shape_of,
)


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
    return [x, weight, bias]


def _running_buffers(running_mean, running_var, channels: int, training: bool,
                     op: str = "batch_norm", flag: str = "training"):
    """The running statistics as ndarrays (updated in place when ``training``), checked.

    ``flag`` names the argument that chose batch statistics, in the message when it is False
    and the buffers are missing.
    """
    running_mean, running_var = data_of(running_mean), data_of(running_var)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: pass both running_mean and running_var, or neither")
    if running_mean is None:
        if not training:
            raise ValueError(f"{op} with {flag}=False needs running_mean and running_var")
        return None, None
    for name, b in (("running_mean", running_mean), ("running_var", running_var)):
        if not isinstance(b, np.ndarray):
            raise TypeError(f"{op}: {name} must be a Tensor or ndarray, got "
                            f"{type(b).__name__}")
        if b.shape != (channels,):
            raise ValueError(f"{op}: {name} has shape {b.shape}, expected ({channels},)")
        if training and not b.flags.writeable:
            raise ValueError(f"{op}: {name} is updated in place but is read-only")
    return running_mean, running_var


def batch_norm(x: Any, running_mean: Any = None, running_var: Any = None, weight: Any = None,
               bias: Any = None, training: bool = False, momentum: float = 0.9,
               eps: float = 1e-5, fused: bool = True):
    """Batch normalization over axis 1 of x (N, C), (N, C, L) or (N, C, H, W).

    y = gamma (x - mean) / sqrt(var + eps) + beta per channel.

    Args:
        running_mean, running_var: (C,) buffers, updated in place when training:
            running = running * momentum + batch_stat * (1 - momentum), with the unbiased
            batch variance for running_var. momentum=0.9 here equals PyTorch's momentum=0.1.
        weight, bias: gamma and beta, (C,), or both None.
        training: use (and track) batch statistics; otherwise normalise with the running ones.
        fused: one graph node and kernel (default) or the composite of primitive ops.
    """
    x = check_float_input(as_tensor(x), "batch_norm")
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects input (N, C, ...), got shape {x.shape}")
    check_training(training, "batch_norm")
    momentum = check_momentum(momentum, "batch_norm")
    eps = check_eps(eps, "batch_norm")
    channels = x.shape[1]
    running_mean, running_var = _running_buffers(running_mean, running_var, channels, training)
    if training:
        check_per_channel(x.shape)
    inputs = _affine_inputs(x, weight, bias, (channels,), "batch_norm")
    check_param_dtype(x, *inputs[1:], running_mean, running_var)
    if fused:
        return ops.BatchNorm.apply(*inputs, running_mean=running_mean, running_var=running_var,
                                   momentum=momentum, eps=eps, training=training)
    return _batch_norm_composite(inputs, running_mean, running_var, training, momentum, eps)


# exercise: batchnorm_composite
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
        # like=x: the buffers have x's dtype (checked); plain as_tensor would round float64
        # buffers to the default float32
        mean = as_tensor(running_mean.reshape(per_channel), like=x)
        var = as_tensor(running_var.reshape(per_channel), like=x)
    x_hat = ew.div(ew.sub(x, mean), ew.sqrt(ew.add(var, eps)))
    if len(inputs) == 1:
        return x_hat
    gamma, beta = (shape.reshape(p, per_channel) for p in inputs[1:])
    return ew.add(ew.mul(x_hat, gamma), beta)


def layer_norm(x: Any, normalized_shape: int | tuple[int, ...], weight: Any = None,
               bias: Any = None, eps: float = 1e-5, fused: bool = True):
    """Layer normalization of each sample over its trailing ``normalized_shape`` dims.

    y = gamma (x - mean) / sqrt(var + eps) + beta, the statistics per sample; the same
    computation in training and eval. weight and bias (gamma and beta) have
    ``normalized_shape`` or are both None.
    """
    x = check_float_input(as_tensor(x), "layer_norm")
    normalized_shape = normalized_shape_of(normalized_shape, "layer_norm")
    k, x_shape = len(normalized_shape), x._data.shape  # the slot: properties cost calls
    if len(x_shape) < k or x_shape[len(x_shape) - k:] != normalized_shape:
        raise ValueError(
            f"layer_norm: expected input with trailing shape {normalized_shape}, "
            f"got shape {x_shape}"
        )
    eps = check_eps(eps, "layer_norm")
    inputs = _affine_inputs(x, weight, bias, normalized_shape, "layer_norm")
    check_param_dtype(x, *inputs[1:])
    if fused:
        return ops.LayerNorm.apply(*inputs, eps=eps, normalized_ndim=k)
    return _layer_norm_composite(inputs, k, eps)


# exercise: layernorm_composite
def _layer_norm_composite(inputs, normalized_ndim, eps):
    """Layer norm from primitive ops over the trailing ``normalized_ndim`` axes; autograd
    derives the backward."""
    x = inputs[0]
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    mean = reduce.mean(x, axis=axes, keepdims=True)
    var = reduce.var(x, axis=axes, keepdims=True)
    x_hat = ew.div(ew.sub(x, mean), ew.sqrt(ew.add(var, eps)))
    if len(inputs) == 1:
        return x_hat
    return ew.add(ew.mul(x_hat, inputs[1]), inputs[2])
