"""Loss functions. Cross-entropy is one fused node (log-softmax + NLL in one kernel call each
way); the others are composed from elementwise ops, or one small Function where stability
needs it (BCE with logits)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import autograd, kernels
from ..autograd import Function
from . import as_tensor, reduce, shape
from . import elementwise as ew

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _reduce(loss, reduction: str):
    """Apply a loss reduction to a per-element loss tensor."""
    if reduction == "mean":
        return reduce.mean(loss)
    if reduction == "sum":
        return reduce.sum(loss)
    return loss


class CrossEntropy(Function):
    """Softmax cross-entropy of logits (N, C) against integer targets (N,), reduced.

    Per row: loss_i = logsumexp(x_i) - (1 - ls) x_i[t_i] - ls/C sum_j x_ij.
    Backward: dx_ij = g_i (softmax(x_i)_j - (1 - ls)[j == t_i] - ls/C), with g_i the upstream
    gradient of row i (g / number of counted rows for the mean).
    """

    @staticmethod
    def forward(ctx, logits, *, target, label_smoothing, ignore_index, reduction):
        loss, lse = kernels.impl.cross_entropy_forward(logits, target, label_smoothing,
                                                       ignore_index)
        ctx.target, ctx.label_smoothing, ctx.ignore_index = target, label_smoothing, ignore_index
        ctx.reduction = reduction
        ctx.save_for_backward(logits, lse)
        if reduction == "none":
            return loss
        total = loss.sum(dtype=np.float64)  # the method skips np.sum's Python wrapper
        if reduction == "mean":
            ctx.count = int(np.count_nonzero(target != ignore_index))
            total = total / ctx.count if ctx.count else np.nan
        return np.asarray(total, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, grad):
        logits, lse = ctx.saved
        if ctx.reduction == "mean":
            grad = grad / grad.dtype.type(max(ctx.count, 1))
        return kernels.impl.cross_entropy_backward(
            np.asarray(grad, order="C"), logits, ctx.target, lse, ctx.label_smoothing,
            ctx.ignore_index
        )


def _class_last(input, target):
    """Bring (N, C, d1, ...) logits and (N, d1, ...) targets to (M, C) and (M,)."""
    if input.ndim == 1:  # one unbatched sample
        return shape.unsqueeze(input, 0), target.reshape(1)
    if input.ndim == 2:
        return input, target
    order = (0,) + tuple(range(2, input.ndim)) + (1,)
    flat = shape.reshape(shape.permute(input, order), (-1, input.shape[1]))
    return flat, target.reshape(-1)


def _targets(input, target) -> np.ndarray:
    """Integer class targets as an ndarray whose shape fits the input, or a clear error."""
    Tensor = autograd.Tensor
    target = np.asarray(target.data if isinstance(target, Tensor) else target)
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"target must hold integer class indices, got dtype {target.dtype} "
            "(probability targets are not supported)"
        )
    expected = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    if target.shape != expected:
        raise ValueError(
            f"target shape {target.shape} does not match input shape {input.shape} "
            f"(expected {expected})"
        )
    return target


def cross_entropy(input: Any, target: Any, reduction: str = "mean",
                  label_smoothing: float = 0.0, ignore_index: int = -100, fused: bool = True):
    """Softmax cross-entropy between logits and integer class targets.

    Args:
        input: logits of shape (N, C), (N, C, d1, ...) or (C,).
        target: class indices of shape (N,), (N, d1, ...) or ().
        reduction: "mean" (over targets not equal to ignore_index), "sum" or "none".
        label_smoothing: mix the one-hot target with the uniform distribution (PyTorch's rule).
        ignore_index: targets with this value contribute neither loss nor gradient.
        fused: one graph node with a compiled kernel (default), or the same math composed
            from log_softmax and indexing (a teaching aid and second oracle).
    """
    _check_reduction(reduction)
    input = as_tensor(input)
    target = _targets(input, target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    logits, flat_target = _class_last(input, target)
    if not fused:
        return _cross_entropy_composite(logits, flat_target, reduction, label_smoothing,
                                        ignore_index, target.shape)
    loss = CrossEntropy.apply(logits, target=flat_target, label_smoothing=float(label_smoothing),
                              ignore_index=int(ignore_index), reduction=reduction)
    return shape.reshape(loss, target.shape) if reduction == "none" else loss


def _cross_entropy_composite(logits, target, reduction, label_smoothing, ignore_index,
                             out_shape):
    """The same loss from primitive ops: (1-ls) NLL(log_softmax) - ls mean_j logp_j."""
    logp = reduce.log_softmax(logits, axis=1)
    nll, counted = _picked_nll(logp, target, ignore_index)
    loss = ew.mul(nll, 1.0 - label_smoothing)
    if label_smoothing:
        uniform = ew.mul(reduce.mean(logp, axis=1), counted * label_smoothing)
        loss = ew.sub(loss, uniform)
    return _reduce_counted(loss, counted, reduction, out_shape)


def nll_loss(input: Any, target: Any, reduction: str = "mean", ignore_index: int = -100):
    """Negative log-likelihood: loss_i = -input[i, target_i] for log-probabilities (N, C)."""
    _check_reduction(reduction)
    input = as_tensor(input)
    target = _targets(input, target)
    logp, flat = _class_last(input, target)
    nll, counted = _picked_nll(logp, flat, ignore_index)
    return _reduce_counted(nll, counted, reduction, target.shape)


def _picked_nll(logp, target: np.ndarray, ignore_index: int):
    """Per row -logp[i, t_i] (0 where t_i == ignore_index) and the float mask of counted rows."""
    n, c = logp.shape
    counted = target != ignore_index
    out_of_range = counted & ((target < 0) | (target >= c))
    if np.any(out_of_range):
        raise ValueError(f"target {target[out_of_range][0]} is out of range for {c} classes")
    picked = shape.getitem(logp, (np.arange(n), np.where(counted, target, 0)))
    mask = counted.astype(logp.dtype)
    return ew.mul(picked, -mask), mask


def _reduce_counted(loss, counted: np.ndarray, reduction: str, out_shape):
    """Reduce per-row losses; "mean" divides by the rows whose target is not ignored."""
    if reduction == "mean":
        return ew.div(reduce.sum(loss), float(np.count_nonzero(counted)))
    return _reduce(shape.reshape(loss, out_shape), reduction)


def _check_same_shape(input, target, name: str) -> None:
    if input.shape != target.shape:
        raise ValueError(f"{name}: input shape {input.shape} and target shape "
                         f"{target.shape} differ")


def mse_loss(input: Any, target: Any, reduction: str = "mean"):
    """Mean squared error: (input - target)**2, reduced."""
    _check_reduction(reduction)
    input = as_tensor(input)
    target = as_tensor(target, like=input)
    _check_same_shape(input, target, "mse_loss")
    diff = ew.sub(input, target)
    return _reduce(ew.mul(diff, diff), reduction)


def l1_loss(input: Any, target: Any, reduction: str = "mean"):
    """Mean absolute error: |input - target|, reduced."""
    _check_reduction(reduction)
    input = as_tensor(input)
    target = as_tensor(target, like=input)
    _check_same_shape(input, target, "l1_loss")
    return _reduce(ew.abs(ew.sub(input, target)), reduction)


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
        dx = grad * (ew._stable_sigmoid(x) - y) if ctx.needs_input_grad[0] else None
        dy = -grad * x if ctx.needs_input_grad[1] else None
        return dx, dy


def binary_cross_entropy_with_logits(input: Any, target: Any, reduction: str = "mean"):
    """Sigmoid + binary cross-entropy in one stable step; targets are probabilities."""
    _check_reduction(reduction)
    input = as_tensor(input)
    target = as_tensor(target, like=input)
    _check_same_shape(input, target, "binary_cross_entropy_with_logits")
    if target.dtype != input.dtype:
        target = shape.cast(target, input.dtype)
    return _reduce(BCEWithLogits.apply(input, target), reduction)
