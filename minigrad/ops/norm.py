"""BatchNorm, LayerNorm, GroupNorm (InstanceNorm is a GroupNorm) and RMSNorm Functions: each one
fused graph node. docs/normalization.md derives the backward formulas; the composites
(``fused=False``) are in ``minigrad.functional``."""

from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..autograd import Function


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

    # ``mg.compile`` replays a BatchNorm whose only consumer is a ReLU as these two calls:
    # one kernel call each way instead of two ops, the same bits (the kernels apply ReLU's
    # np.maximum(y, 0) and its backward themselves).
    @staticmethod
    def forward_relu(ctx, x, gamma=None, beta=None, *, running_mean, running_var, momentum,
                     eps, training):
        """max(BatchNorm(x), 0); saves what ``backward_relu`` needs."""
        y, mean, rstd = kernels.impl.batchnorm_forward(
            x, gamma, beta, running_mean, running_var, momentum, eps, training, relu=True
        )
        ctx.training = training
        ctx.save_for_backward(x, gamma, mean, rstd, y)
        return y

    @staticmethod
    def backward_relu(ctx, grad):
        """The gradients of the inputs of ``forward_relu`` from that of its output."""
        x, gamma, mean, rstd, y = ctx.saved
        dx, dgamma, dbeta = kernels.impl.batchnorm_backward(
            np.asarray(grad, order="C"), x, gamma, mean, rstd, ctx.training, relu_out=y
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

    # mg.compile's LayerNorm-then-ReLU, as BatchNorm.forward_relu / backward_relu
    @staticmethod
    def forward_relu(ctx, x, gamma=None, beta=None, *, eps, normalized_ndim):
        """max(LayerNorm(x), 0); saves what ``backward_relu`` needs."""
        y, mean, rstd = kernels.impl.layernorm_forward(x, gamma, beta, eps, normalized_ndim,
                                                       relu=True)
        ctx.save_for_backward(x, gamma, mean, rstd, y)
        return y

    @staticmethod
    def backward_relu(ctx, grad):
        """The gradients of the inputs of ``forward_relu`` from that of its output."""
        x, gamma, mean, rstd, y = ctx.saved
        dx, dgamma, dbeta = kernels.impl.layernorm_backward(
            np.asarray(grad, order="C"), x, gamma, mean, rstd, relu_out=y
        )
        return (dx, dgamma, dbeta)[: len(ctx.inputs)]


def _grouped(x: np.ndarray, channel_axis: int, groups: int) -> np.ndarray:
    """x (*lead, C, *spatial) as a C-contiguous (prod(lead), groups, C/groups * prod(spatial))."""
    lead = math.prod(x.shape[:channel_axis])
    per_group = x.shape[channel_axis] // groups * math.prod(x.shape[channel_axis + 1:])
    return np.ascontiguousarray(x).reshape(lead, groups, per_group)


def _by_channel(xg: np.ndarray, gamma: np.ndarray) -> tuple[int, int, int]:
    """(lead, C, spatial): the shape in which a per-channel vector broadcasts as gamma[:, None]."""
    channels = gamma.shape[0]
    return xg.shape[0], channels, xg.shape[1] * xg.shape[2] // channels


def _update_running(running_mean, running_var, mean, rstd, eps, momentum, count) -> None:
    """InstanceNorm's running statistics, in place: running = running * momentum + s *
    (1 - momentum), s the batch average of each (sample, channel)'s mean and unbiased variance
    (var recovered from rstd = 1 / sqrt(var + eps) in float64)."""
    var = (1.0 / (rstd * rstd) - eps) * (count / (count - 1))
    running_mean[...] = running_mean * momentum + mean.mean(axis=0) * (1 - momentum)
    running_var[...] = running_var * momentum + var.mean(axis=0) * (1 - momentum)


class GroupNorm(Function):
    """Group normalization (InstanceNorm is groups = C): statistics per sample over each group
    of C/groups channels and every spatial position, then a per-channel gamma and beta.
    InstanceNorm may pass running buffers (groups = C), updated in place by ``_update_running``.

    x (*lead, C, *spatial) is viewed as (lead, groups, D) and normalized by the LayerNorm
    kernels without affine (x_hat); y = gamma_c x_hat + beta_c. Backward:
    dgamma_c = sum over lead and spatial of dy x_hat, dbeta_c = sum of dy, and dx is the
    LayerNorm backward of g = dy gamma_c: rstd / D (D g - sum g - x_hat sum(g x_hat)) per group.

    The per-channel affine and its backward are the BatchNorm eval kernels applied to x_hat
    with mean 0 and rstd 1 (eps 0): y = x_hat gamma + beta forward; g = dy gamma, dgamma and
    dbeta backward, the sums in float64, each one compiled pass.
    """

    @staticmethod
    def forward(ctx, x, gamma=None, beta=None, *, groups, eps, channel_axis, running_mean=None,
                running_var=None, momentum=0.9):
        xg = _grouped(x, channel_axis, groups)
        x_hat, mean, rstd = kernels.impl.layernorm_forward(xg, None, None, eps, 1)
        if running_mean is not None and mean.shape[0]:
            _update_running(running_mean, running_var, mean, rstd, eps, momentum, xg.shape[2])
        ctx.shape = x.shape
        ctx.save_for_backward(xg, x_hat if gamma is not None else None, gamma, mean, rstd)
        if gamma is None:
            return x_hat.reshape(x.shape)
        channels = gamma.shape[0]
        y = kernels.impl.batchnorm_forward(
            x_hat.reshape(_by_channel(xg, gamma)), gamma, beta,
            np.zeros(channels, x.dtype), np.ones(channels, x.dtype), 0.0, 0.0, False)[0]
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        xg, x_hat, gamma, mean, rstd = ctx.saved
        g = np.ascontiguousarray(grad)
        if gamma is not None:
            channels = gamma.shape[0]
            g, dgamma, dbeta = kernels.impl.batchnorm_backward(
                g.reshape(_by_channel(xg, gamma)), x_hat.reshape(_by_channel(xg, gamma)), gamma,
                np.zeros(channels), np.ones(channels), False)
        dx = kernels.impl.layernorm_backward(g.reshape(xg.shape), xg, None, mean, rstd)[0]
        if gamma is None:
            return (dx.reshape(ctx.shape),)
        return dx.reshape(ctx.shape), dgamma, dbeta


class RMSNorm(Function):
    """y = x r * weight over the trailing ``normalized_ndim`` dims, r = 1 / sqrt(mean(x^2) + eps)
    per sample (the LayerNorm kernels without centring).

    Backward, with g = dy * weight over the D normalized values of a sample:
    dx = r (g - x r^2 mean(g x)); dweight = sum over samples of dy x r.
    """

    @staticmethod
    def forward(ctx, x, weight=None, *, eps, normalized_ndim):
        y, rstd = kernels.impl.rmsnorm_forward(x, weight, eps, normalized_ndim)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, rstd = ctx.saved
        dx, dweight = kernels.impl.rmsnorm_backward(np.asarray(grad, order="C"), x, weight, rstd)
        return (dx, dweight)[: len(ctx.inputs)]
