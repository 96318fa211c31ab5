"""Losses on Tensors: argument rules checked once, then the fused cross-entropy node or the
same math composed from primitive ops, and the elementwise losses (MSE, L1, BCE with logits)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ops import loss as ops
from . import elementwise as ew
from . import reduce, shape
from ._convert import as_tensor
from ._rules import (
    check_class_targets,
    check_float_input,
    check_ignore_index,
    check_label_smoothing,
    check_reduction,
    check_same_shape,
)


def _reduce(loss, reduction: str):
    """Mean or sum over every element of a per-element loss, or the loss as is for "none"."""
    if reduction == "mean":
        return reduce.mean(loss)
    if reduction == "sum":
        return reduce.sum(loss)
    return loss


def _class_last(input, target: np.ndarray):
    """Bring (N, C, d1, ...) logits and (N, d1, ...) targets to (M, C) and (M,)."""
    ndim = input._data.ndim  # the slot: the property is a Python call
    if ndim == 2:  # the common case first
        return input, target
    if ndim == 1:  # one unbatched sample
        return shape.unsqueeze(input, 0), target.reshape(1)
    order = (0,) + tuple(range(2, input.ndim)) + (1,)
    flat = shape.reshape(shape.permute(input, order), (-1, input.shape[1]))
    return flat, target.reshape(-1)


def cross_entropy(input: Any, target: Any, reduction: str = "mean",
                  label_smoothing: float = 0.0, ignore_index: int = -100, fused: bool = True):
    """Softmax cross-entropy between logits and integer class targets.

    loss_i = -(1 - ls) log softmax(x_i)[t_i] - ls mean_j log softmax(x_i)_j.

    Args:
        input: logits of shape (N, C), (N, C, d1, ...) or (C,).
        target: class indices of shape (N,), (N, d1, ...) or (); copied, so later writes to
            the caller's array do not reach backward.
        reduction: "mean" (over targets not equal to ignore_index; NaN when all are ignored,
            with a zero gradient, as PyTorch), "sum" or "none".
        label_smoothing: mix the one-hot target with the uniform distribution (PyTorch's rule).
        ignore_index: targets with this value contribute neither loss nor gradient.
        fused: one graph node with a compiled kernel (default), or the same math composed
            from log_softmax and indexing (a teaching aid and second oracle).
    """
    check_reduction(reduction)
    label_smoothing = check_label_smoothing(label_smoothing)
    ignore_index = check_ignore_index(ignore_index)
    input = check_float_input(as_tensor(input), "cross_entropy")
    target = check_class_targets(input._data.shape, target, ignore_index)
    logits, flat_target = _class_last(input, target)
    if not fused:
        return _cross_entropy_composite(logits, flat_target, reduction, label_smoothing,
                                        ignore_index, target.shape)
    loss = ops.CrossEntropy.apply(logits, target=flat_target, label_smoothing=label_smoothing,
                                  ignore_index=ignore_index, reduction=reduction)
    return shape.reshape(loss, target.shape) if reduction == "none" else loss


# exercise: cross_entropy_composite
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
    check_reduction(reduction)
    ignore_index = check_ignore_index(ignore_index)
    input = check_float_input(as_tensor(input), "nll_loss")
    target = check_class_targets(input.shape, target, ignore_index)
    logp, flat = _class_last(input, target)
    nll, counted = _picked_nll(logp, flat, ignore_index)
    return _reduce_counted(nll, counted, reduction, target.shape)


def _picked_nll(logp, target: np.ndarray, ignore_index: int):
    """Per row -logp[i, t_i] (0 where t_i == ignore_index) and the float mask of counted rows."""
    counted = target != ignore_index
    picked = shape.getitem(logp, (np.arange(logp.shape[0]), np.where(counted, target, 0)))
    mask = counted.astype(logp.dtype)
    return ew.mul(picked, -mask), mask


def _reduce_counted(loss, counted: np.ndarray, reduction: str, out_shape):
    """Reduce per-row losses; "mean" divides by the rows whose target is not ignored.

    With none counted, the mean is NaN with a zero gradient (PyTorch's answer): the loss is
    multiplied by 0 before NaN is added, so no 0/0 reaches the gradient.
    """
    if reduction == "mean":
        count = np.count_nonzero(counted)
        if count == 0:
            return ew.add(ew.mul(reduce.sum(loss), 0.0), float("nan"))
        return ew.div(reduce.sum(loss), float(count))
    return _reduce(shape.reshape(loss, out_shape), reduction)


def mse_loss(input: Any, target: Any, reduction: str = "mean"):
    """Mean squared error: (input - target)**2, reduced."""
    check_reduction(reduction)
    input = as_tensor(input)
    target = as_tensor(target, like=input)
    check_same_shape(input, target, "mse_loss")
    diff = ew.sub(input, target)
    return _reduce(ew.mul(diff, diff), reduction)


def l1_loss(input: Any, target: Any, reduction: str = "mean"):
    """Mean absolute error: |input - target|, reduced."""
    check_reduction(reduction)
    input = as_tensor(input)
    target = as_tensor(target, like=input)
    check_same_shape(input, target, "l1_loss")
    return _reduce(ew.abs(ew.sub(input, target)), reduction)


def binary_cross_entropy_with_logits(input: Any, target: Any, reduction: str = "mean"):
    """Sigmoid + binary cross-entropy in one stable step; targets are probabilities.

    loss = max(x, 0) - x y + log(1 + e**-|x|) for logits x and targets y.
    """
    check_reduction(reduction)
    input = as_tensor(input)
    target = as_tensor(target, like=input)
    check_same_shape(input, target, "binary_cross_entropy_with_logits")
    if target.dtype != input.dtype:
        target = shape.cast(target, input.dtype)
    return _reduce(ops.BCEWithLogits.apply(input, target), reduction)
