"""NumPy twins of the fused BatchNorm, LayerNorm and RMSNorm kernels in ``_norm.pyx``.

Same names, signatures and return values as the kernels, written as plain NumPy, line by line
the formulas of docs/normalization.md, and read beside the kernels with the same plan:

* forward: the statistics (the mean, then the biased variance of the centred values, where the
  kernel gets both from one pass of shifted sums), then one write pass
  ``y = (x - mean) * scale + shift`` per channel (BatchNorm) or sample (LayerNorm);
* backward: one reduction pass for the two sums of the closed form, sum(dy) and
  sum(dy * x_hat), then one write pass for dx.

``mean`` and ``rstd`` (``1 / sqrt(var + eps)``) are returned as float64 arrays whatever the data
dtype: the statistics are accumulated in float64 and the backward reuses them at full
precision. ``y``, ``dx``, ``dgamma`` and ``dbeta`` have the data's dtype; ``gamma=None`` means 1
and ``beta=None`` means 0. Only the shared memory-safety checks of ``_checks`` run here.
"""

from __future__ import annotations

import math

import numpy as np

from ._activation_twin import relu_select
from ._checks import (
    batchnorm_backward_args,
    batchnorm_forward_args,
    layernorm_backward_args,
    layernorm_forward_args,
    rmsnorm_backward_args,
    rmsnorm_forward_args,
    same_as,
)


def _per_channel(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A (C,) vector as x's dtype, shaped (1, C, 1, ...) to broadcast against x."""
    return np.asarray(v, dtype=x.dtype).reshape((1, -1) + (1,) * (x.ndim - 2))


def _centre(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """x - mean in x's dtype, for a float64 mean shaped to broadcast against x.

    Computed as (x - hi) - lo with hi the mean rounded to x's dtype and lo the rounding error:
    x - hi is exact for x near the mean, so the float32 centred values keep their precision
    even when |mean| >> std (plain x - float32(mean) loses |mean| / std units in the last
    place). The compiled kernels centre the same way.
    """
    hi = mean.astype(x.dtype)
    lo = (mean - hi).astype(x.dtype)
    return (x - hi) - lo


def _channel_shape(x: np.ndarray) -> tuple[int, ...]:
    """(1, C, 1, ...): the shape that broadcasts a per-channel vector against x."""
    return (1, -1) + (1,) * (x.ndim - 2)


# exercise: batchnorm_forward
def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training,
                      relu=False):
    """BatchNorm forward: y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel (axis 1).

    Training uses the batch mean and biased variance over every axis but 1 and, when running
    buffers are given, updates them in place: running = running * momentum + batch * (1 - momentum)
    (with the unbiased variance for running_var). Eval (training=False) uses the running buffers.
    With ``relu``, y is then replaced by ``np.maximum(y, 0)`` (a BatchNorm followed by a ReLU).

    Returns:
        (y, mean, rstd): y like x; mean and rstd = 1 / sqrt(var + eps) as float64 (C,) arrays.
    """
    batchnorm_forward_args(x, gamma, beta, running_mean, running_var, training)
    momentum, eps = float(momentum), float(eps)
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.shape[0] * math.prod(x.shape[2:])  # values per channel (not x.size // C: C may be 0)
    # The public function refuses count <= 1 in training; here 0/0 gives NaN statistics and
    # count - 1 == 0 an inf or NaN running variance, silently, as in the kernel.
    with np.errstate(divide="ignore", invalid="ignore"):
        if training:
            mean = np.sum(x, axis=axes, dtype=np.float64) / count
            xc = _centre(x, mean.reshape(_channel_shape(x)))
            var = np.sum(xc * xc, axis=axes, dtype=np.float64) / count
            rstd = 1.0 / np.sqrt(var + eps)
            if running_mean is not None:
                running_mean[...] = running_mean * momentum + mean * (1 - momentum)
                running_var[...] = (running_var * momentum
                                    + var * count / (count - 1) * (1 - momentum))
        else:
            mean = running_mean.astype(np.float64)
            rstd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
            xc = _centre(x, mean.reshape(_channel_shape(x)))
    y = xc * _per_channel(rstd, x)
    if gamma is not None:
        y *= _per_channel(gamma, x)
    if beta is not None:
        y += _per_channel(beta, x)
    if relu:
        y = np.maximum(y, 0)
    return y, mean, rstd


# exercise: batchnorm_backward
def batchnorm_backward(grad_out, x, gamma, mean, rstd, training=True, relu_out=None):
    """BatchNorm backward, closed form, with sums over the M values of each channel.

    dbeta = sum(dy), dgamma = sum(dy * x_hat) with x_hat = (x - mean) * rstd, and
    dx = gamma * rstd / M * (M * dy - dbeta - x_hat * dgamma) in training;
    dx = gamma * rstd * dy in eval, where mean and rstd were constants.
    With ``relu_out`` (a ReLU's output over this BatchNorm's output), ``grad_out`` is the ReLU's
    output gradient and dy = relu_select(grad_out, relu_out), ReLU's backward.

    Returns:
        (dx, dgamma, dbeta): dx like x; dgamma and dbeta (C,) arrays of x's dtype.
    """
    batchnorm_backward_args(grad_out, x, gamma, mean, rstd)
    if relu_out is not None:
        same_as("batchnorm_backward", "relu_out", relu_out, x, x.shape, "the shape of x")
        grad_out = relu_select(grad_out, relu_out)
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // x.shape[1] if x.shape[1] else 0
    x_hat = _centre(x, np.asarray(mean).reshape(_channel_shape(x))) * _per_channel(rstd, x)
    dbeta = np.sum(grad_out, axis=axes, dtype=np.float64)
    dgamma = np.sum(grad_out * x_hat, axis=axes, dtype=np.float64)
    scale = rstd if gamma is None else gamma * rstd
    if training:
        with np.errstate(divide="ignore", invalid="ignore"):
            dx = _per_channel(scale / count, x) * (
                count * grad_out - _per_channel(dbeta, x) - x_hat * _per_channel(dgamma, x)
            )
    else:
        dx = _per_channel(scale, x) * grad_out
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# ----------------------------------------------------------------------------- LayerNorm twins


# exercise: layernorm_forward
def layernorm_forward(x, gamma, beta, eps, normalized_ndim, relu=False):
    """LayerNorm forward: y = gamma * (x - mean) / sqrt(var + eps) + beta, per sample.

    mean and the biased var are taken over the trailing ``normalized_ndim`` axes of x; gamma and
    beta have the shape of those axes. With ``relu``, y is then replaced by ``np.maximum(y, 0)``.

    Returns:
        (y, mean, rstd): y like x; mean and rstd float64 with shape x.shape[:-normalized_ndim].
    """
    layernorm_forward_args(x, gamma, beta, normalized_ndim)
    eps = float(eps)
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64, keepdims=True)
    xc = _centre(x, mean)
    var = np.mean(xc * xc, axis=axes, dtype=np.float64, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = xc * rstd.astype(x.dtype)
    if gamma is not None:
        y *= gamma
    if beta is not None:
        y += beta
    if relu:
        y = np.maximum(y, 0)
    lead_shape = x.shape[: x.ndim - normalized_ndim]
    return y, mean.reshape(lead_shape), rstd.reshape(lead_shape)


# exercise: layernorm_backward
def layernorm_backward(grad_out, x, gamma, mean, rstd, relu_out=None):
    """LayerNorm backward, closed form, with sums over the D normalized values of each sample.

    With g = dy * gamma and x_hat = (x - mean) * rstd:
    dx = rstd / D * (D * g - sum(g) - x_hat * sum(g * x_hat)),
    dgamma = sum over samples of dy * x_hat, dbeta = sum over samples of dy.
    The normalized axes are the trailing x.ndim - mean.ndim ones. With ``relu_out`` (a ReLU's
    output over this LayerNorm's output), dy = relu_select(grad_out, relu_out), ReLU's backward.

    Returns:
        (dx, dgamma, dbeta): dx like x; dgamma and dbeta with the normalized shape, x's dtype.
    """
    layernorm_backward_args(grad_out, x, gamma, mean, rstd)
    if relu_out is not None:
        same_as("layernorm_backward", "relu_out", relu_out, x, x.shape, "the shape of x")
        grad_out = relu_select(grad_out, relu_out)
    normalized_ndim = x.ndim - mean.ndim
    axes = tuple(range(mean.ndim, x.ndim))
    sample_axes = tuple(range(mean.ndim))
    count = math.prod(x.shape[mean.ndim :])
    keep = mean.shape + (1,) * normalized_ndim  # broadcasts a per-sample value against x
    rstd_k = rstd.reshape(keep).astype(x.dtype)
    x_hat = _centre(x, mean.reshape(keep)) * rstd_k
    g = grad_out if gamma is None else grad_out * gamma
    sum_g = np.sum(g, axis=axes, dtype=np.float64, keepdims=True).astype(x.dtype)
    sum_g_xhat = np.sum(g * x_hat, axis=axes, dtype=np.float64, keepdims=True).astype(x.dtype)
    dx = rstd_k / count * (count * g - sum_g - x_hat * sum_g_xhat)
    dgamma = np.sum(grad_out * x_hat, axis=sample_axes, dtype=np.float64)
    dbeta = np.sum(grad_out, axis=sample_axes, dtype=np.float64)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# ----------------------------------------------------------------------------- RMSNorm twins


def rmsnorm_forward(x, weight, eps, normalized_ndim):
    """RMSNorm forward: y = x * rstd * weight per sample, rstd = 1 / sqrt(mean(x^2) + eps) over
    the trailing ``normalized_ndim`` axes (LayerNorm without centring and without beta).

    Returns:
        (y, rstd): y like x; rstd float64 with shape x.shape[:-normalized_ndim].
    """
    rmsnorm_forward_args(x, weight, normalized_ndim)
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    rstd = 1.0 / np.sqrt(np.mean(x * x, axis=axes, dtype=np.float64, keepdims=True) + float(eps))
    y = x * rstd.astype(x.dtype)
    if weight is not None:
        y *= weight
    return y, rstd.reshape(x.shape[: x.ndim - normalized_ndim])


def rmsnorm_backward(grad_out, x, weight, rstd):
    """RMSNorm backward, with g = dy * weight and x_hat = x * rstd over the D values of a sample:
    dx = rstd * (g - x_hat * sum(g * x_hat) / D), dweight = sum over samples of dy * x_hat.
    The normalized axes are the trailing x.ndim - rstd.ndim ones.

    Returns:
        (dx, dweight): dx like x; dweight with the normalized shape, x's dtype.
    """
    rmsnorm_backward_args(grad_out, x, weight, rstd)
    lead = rstd.ndim
    axes = tuple(range(lead, x.ndim))
    count = math.prod(x.shape[lead:])
    rstd = rstd.reshape(rstd.shape + (1,) * len(axes))  # broadcasts a per-sample value
    rstd_k = rstd.astype(x.dtype)
    x_hat = x * rstd_k
    g = grad_out if weight is None else grad_out * weight
    sum_g_xhat = np.sum(g * x_hat, axis=axes, dtype=np.float64, keepdims=True)
    dx = g * rstd_k - x_hat * (rstd * sum_g_xhat / count).astype(x.dtype)
    dweight = np.sum(grad_out * x_hat, axis=tuple(range(lead)), dtype=np.float64)
    return dx, dweight.astype(x.dtype)
