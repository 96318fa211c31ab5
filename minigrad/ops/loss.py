"""Loss Functions: fused softmax cross-entropy (log-softmax + NLL in one kernel call each way)
and binary cross-entropy with logits (one node, for stability). The other losses and the
composites are built from elementwise ops in ``minigrad.functional.loss``."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function
from .elementwise import _stable_sigmoid


class CrossEntropy(Function):
    """Softmax cross-entropy of logits (N, C) against integer targets (N,), reduced.

    Per row: loss_i = logsumexp(x_i) - (1 - ls) x_i[t_i] - ls/C sum_j x_ij.
    Backward: dx_ij = g_i (softmax(x_i)_j - (1 - ls)[j == t_i] - ls/C), with g_i the upstream
    gradient of row i (g / number of counted rows for the mean). With every target ignored the
    mean is NaN and the gradient zero, as in PyTorch. ``target`` is an int64 array the graph
    owns, already checked against the number of classes.
    """

    @staticmethod
    def forward(ctx, logits, *, target, label_smoothing, ignore_index, reduction):
        loss, lse_parts = kernels.impl.cross_entropy_forward(logits, target, label_smoothing,
                                                             ignore_index)
        ctx.target, ctx.label_smoothing, ctx.ignore_index = target, label_smoothing, ignore_index
        ctx.reduction = reduction
        ctx.save_for_backward(logits, lse_parts)
        if reduction == "none":
            return loss
        total = loss.sum(dtype=np.float64)  # the method skips np.sum's Python wrapper
        if reduction == "mean":
            ctx.count = kernels.impl.class_target_count(target, logits.shape[1], ignore_index)
            total = total / ctx.count if ctx.count else np.nan
        return np.asarray(total, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, grad):
        logits, lse_parts = ctx.saved
        if ctx.reduction == "mean":
            grad = grad / grad.dtype.type(max(ctx.count, 1))
        return kernels.impl.cross_entropy_backward(
            np.asarray(grad, order="C"), logits, ctx.target, lse_parts, ctx.label_smoothing,
            ctx.ignore_index
        )


class BCEWithLogits(Function):
    """Elementwise binary cross-entropy of logits x against targets y in [0, 1]:
    loss = max(x, 0) - x y + log(1 + e**-|x|)  (stable for any |x|);
    dx = sigmoid(x) - y,  dy = -x."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved
        dx = grad * (_stable_sigmoid(x) - y) if ctx.needs_input_grad[0] else None
        dy = -grad * x if ctx.needs_input_grad[1] else None
        return dx, dy
