"""BatchNorm and LayerNorm Functions: each one fused graph node whose forward and backward are
one kernel call each. docs/normalization.md derives the backward formulas; the composites
(``fused=False``) are in ``minigrad.functional.norm``."""

from __future__ import annotations

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
