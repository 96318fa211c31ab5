"""group_norm, instance_norm and rms_norm: every argument rule checked once, then either the fused
Function (``minigrad.ops.norm``) or the same math composed from primitive ops (``fused=False``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..grad_mode import no_grad
from ..ops import norm as ops
from . import elementwise as ew
from . import reduce, shape
from ._convert import as_tensor
from ._rules import (
    check_bool,
    check_eps,
    check_float_input,
    check_groups,
    check_momentum,
    check_param_dtype,
    check_spatial,
    check_trailing,
    normalized_shape_of,
    rms_eps,
)
from .norm import _affine_inputs, _batch_norm_composite, _running_buffers


def group_norm(input: Any, num_groups: int, weight: Any = None, bias: Any = None,
               eps: float = 1e-5, *, fused: bool = True):
    """Group normalization of x (N, C, *): per sample, over each group of C / num_groups
    channels and all spatial positions; y = gamma_c (x - mean) / sqrt(var + eps) + beta_c.

    The statistics never mix samples: the same in training and eval, and at batch size 1.
    weight and bias (gamma and beta) are per channel, (C,), or both None.
    """
    x = check_float_input(as_tensor(input), "group_norm")
    if x.ndim < 2:
        raise ValueError(f"group_norm expects input (N, C, *), got shape {x.shape}")
    channels = x.shape[1]
    num_groups = check_groups(num_groups, channels, "group_norm")
    if math.prod(x.shape[2:]) == 0:
        raise ValueError(f"group_norm: the groups of input of shape {x.shape} are empty")
    eps = check_eps(eps, "group_norm")
    inputs = _affine_inputs(x, weight, bias, (channels,), "group_norm")
    check_param_dtype(x, *inputs[1:])
    if fused:
        return ops.GroupNorm.apply(*inputs, groups=num_groups, eps=eps, channel_axis=1)
    return _group_norm_composite(inputs, num_groups, eps)


def instance_norm(input: Any, running_mean: Any = None, running_var: Any = None,
                  weight: Any = None, bias: Any = None, use_input_stats: bool = True,
                  momentum: float = 0.9, eps: float = 1e-5, *, fused: bool = True):
    """Instance normalization of x (N, C, *spatial): per sample and channel, over the spatial
    positions; y = gamma_c (x - mean) / sqrt(var + eps) + beta_c. GroupNorm with C groups.

    Args:
        running_mean, running_var: (C,) buffers or both None. With use_input_stats they are
            updated in place: running = running * momentum + s * (1 - momentum), s the batch
            average of the per-(sample, channel) mean and unbiased variance; momentum=0.9
            here equals PyTorch's momentum=0.1.
        use_input_stats: normalize with each input's own statistics (default); False
            normalizes every channel with the running statistics instead (as batch_norm in
            eval) and needs them.
        weight, bias: gamma and beta, (C,), or both None.
    """
    x = check_float_input(as_tensor(input), "instance_norm")
    use_input_stats = check_bool(use_input_stats, "instance_norm: use_input_stats")
    momentum = check_momentum(momentum, "instance_norm")
    eps = check_eps(eps, "instance_norm")
    check_spatial(x.shape, "instance_norm", use_input_stats)
    channels = x.shape[1]
    running_mean, running_var = _running_buffers(running_mean, running_var, channels,
                                                 use_input_stats, "instance_norm",
                                                 "use_input_stats")
    inputs = _affine_inputs(x, weight, bias, (channels,), "instance_norm")
    check_param_dtype(x, *inputs[1:], running_mean, running_var)
    if not use_input_stats:
        if fused:
            return ops.BatchNorm.apply(*inputs, running_mean=running_mean,
                                       running_var=running_var, momentum=momentum, eps=eps,
                                       training=False)
        return _batch_norm_composite(inputs, running_mean, running_var, False, momentum, eps)
    if fused:
        return ops.GroupNorm.apply(*inputs, groups=channels, eps=eps, channel_axis=1,
                                   running_mean=running_mean, running_var=running_var,
                                   momentum=momentum)
    if running_mean is not None and x.shape[0]:
        with no_grad():
            values = x.data.reshape(x.shape[0], channels, -1)
            mean = values.mean(axis=2, dtype=np.float64).mean(axis=0)
            var = values.var(axis=2, ddof=1, dtype=np.float64).mean(axis=0)
            running_mean[...] = running_mean * momentum + mean * (1 - momentum)
            running_var[...] = running_var * momentum + var * (1 - momentum)
    return _group_norm_composite(inputs, channels, eps)


def _group_norm_composite(inputs: list, groups: int, eps: float):
    """Group norm from primitive ops (a reshape to (N, G, D), LayerNorm's math, the per-channel
    affine); autograd derives the backward."""
    x = inputs[0]
    per_group = x.shape[1] // groups * math.prod(x.shape[2:])
    xg = shape.reshape(x, (x.shape[0], groups, per_group))
    mean = reduce.mean(xg, axis=2, keepdims=True)
    var = reduce.var(xg, axis=2, keepdims=True)
    x_hat = shape.reshape(ew.div(ew.sub(xg, mean), ew.sqrt(ew.add(var, eps))), x.shape)
    if len(inputs) == 1:
        return x_hat
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    gamma, beta = (shape.reshape(p, per_channel) for p in inputs[1:])
    return ew.add(ew.mul(x_hat, gamma), beta)


def rms_norm(input: Any, normalized_shape: int | tuple[int, ...], weight: Any = None,
             eps: float | None = None, *, fused: bool = True):
    """RMS normalization over the trailing ``normalized_shape`` dims of each sample:
    y = x / sqrt(mean(x^2) + eps) * weight, no centring and no bias.

    eps=None means the machine epsilon of x's dtype (as PyTorch); weight has
    ``normalized_shape`` or is None.
    """
    x = check_float_input(as_tensor(input), "rms_norm")
    normalized_shape = normalized_shape_of(normalized_shape, "rms_norm")
    check_trailing(x.shape, normalized_shape, "rms_norm")
    eps = rms_eps(eps, x.data.dtype, "rms_norm")
    inputs = [x]
    if weight is not None:
        weight = as_tensor(weight)
        if weight.shape != normalized_shape:
            raise ValueError(f"rms_norm: weight has shape {weight.shape}, expected "
                             f"{normalized_shape}")
        inputs.append(weight)
    check_param_dtype(x, *inputs[1:])
    k = len(normalized_shape)
    if fused:
        return ops.RMSNorm.apply(*inputs, eps=eps, normalized_ndim=k)
    axes = tuple(range(x.ndim - k, x.ndim))
    mean_square = reduce.mean(ew.mul(x, x), axis=axes, keepdims=True)
    y = ew.div(x, ew.sqrt(ew.add(mean_square, eps)))
    return y if weight is None else ew.mul(y, weight)
