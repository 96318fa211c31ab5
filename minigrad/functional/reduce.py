"""Reductions and softmax on Tensors: axis and keepdims rules, aliases, then one Function each
(``minigrad.ops.reduce``). Integer and boolean tensors reduce outside the graph."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ops import reduce as ops
from ._convert import as_tensor, constant
from ._rules import (
    check_axis,
    check_correction,
    check_extreme_reduction,
    check_float_input,
    check_keepdims,
    single_axis,
)
from .elementwise import sqrt

Axis = int | tuple[int, ...] | None


def axis_args(axis: Axis, keepdims: bool, dim: Axis, keepdim: bool | None) -> dict[str, Any]:
    """Merge NumPy's ``axis``/``keepdims`` with PyTorch's ``dim``/``keepdim`` aliases."""
    if dim is not None:
        if axis is not None:
            raise TypeError("pass either axis= or dim=, not both")
        axis = dim
    if keepdim is not None:
        keepdims = keepdim
    return {"axis": axis, "keepdims": keepdims}


def _plain(x, fn, axis: Axis, keepdims: bool, dtype=None):
    """Non-float tensors (counts, masks) reduce with NumPy directly, outside the graph."""
    return constant(np.asarray(fn(x.data, axis=axis, keepdims=keepdims, dtype=dtype)))


def sum(x: Any, axis: Axis = None, keepdims: bool = False):
    """Sum over ``axis`` (None: all). Booleans and ints sum as int64, outside the graph."""
    x = as_tensor(x)
    if axis is not None or keepdims is not False:  # the defaults need no checking
        axis = _checked_axis(axis, keepdims, x.data.ndim)
    if x.data.dtype.kind != "f":
        return _plain(x, np.sum, axis, keepdims, dtype=np.int64)
    return ops.Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x: Any, axis: Axis = None, keepdims: bool = False):
    """Mean over ``axis``. Booleans and ints give a float32 mean, outside the graph."""
    x = as_tensor(x)
    if axis is not None or keepdims is not False:
        axis = _checked_axis(axis, keepdims, x.data.ndim)
    if x.data.dtype.kind != "f":
        return _plain(x, np.mean, axis, keepdims, dtype=np.float32)
    return ops.Mean.apply(x, axis=axis, keepdims=keepdims)


def _float_reduction(x: Any, axis: Axis, keepdims: bool, op: str):
    """The input and axis of a reduction that needs floats, checked."""
    x = check_float_input(as_tensor(x), op)
    if axis is not None or keepdims is not False:
        axis = _checked_axis(axis, keepdims, x.data.ndim)
    return x, axis


def _checked_axis(axis: Axis, keepdims: bool, ndim: int) -> Axis:
    """The axis after the axis and keepdims rules (a list becomes a tuple)."""
    check_keepdims(keepdims)
    return check_axis(axis, ndim)


def var(x: Any, axis: Axis = None, keepdims: bool = False, correction: int = 0):
    """Variance over ``axis``: sum((x - mean)**2) / (M - correction) (0: biased, 1: unbiased)."""
    x, axis = _float_reduction(x, axis, keepdims, "var")
    correction = check_correction(correction)
    return ops.Var.apply(x, axis=axis, keepdims=keepdims, correction=correction)


def std(x: Any, axis: Axis = None, keepdims: bool = False, correction: int = 0):
    """Standard deviation: sqrt(var(x, axis, keepdims, correction))."""
    return sqrt(var(x, axis, keepdims, correction))


def max(x: Any, axis: Axis = None, keepdims: bool = False):
    """Maximum over ``axis``; gradient to the first maximal element."""
    x, axis = _float_reduction(x, axis, keepdims, "max")
    if x.data.size == 0:
        check_extreme_reduction(x.shape, axis, "max")
    return ops.Max.apply(x, axis=axis, keepdims=keepdims)


def min(x: Any, axis: Axis = None, keepdims: bool = False):
    """Minimum over ``axis``; gradient to the first minimal element."""
    x, axis = _float_reduction(x, axis, keepdims, "min")
    if x.data.size == 0:
        check_extreme_reduction(x.shape, axis, "min")
    return ops.Min.apply(x, axis=axis, keepdims=keepdims)


def logsumexp(x: Any, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None,
              keepdim: bool | None = None):
    """log(sum(exp(x))) over ``axis`` (alias ``dim``), stable for large inputs."""
    args = axis_args(axis, keepdims, dim, keepdim)
    x, axis = _float_reduction(x, args["axis"], args["keepdims"], "logsumexp")
    return ops.LogSumExp.apply(x, axis=axis, keepdims=args["keepdims"])


def softmax(x: Any, axis: int = -1, *, dim: int | None = None):
    """Softmax along one axis (``axis``, or PyTorch's ``dim``): exp(x) / sum(exp(x))."""
    x = check_float_input(as_tensor(x), "softmax")
    return ops.Softmax.apply(x, axis=single_axis(axis if dim is None else dim, x.ndim))


def log_softmax(x: Any, axis: int = -1, *, dim: int | None = None):
    """Log-softmax along one axis (``axis``, or PyTorch's ``dim``): x - logsumexp(x)."""
    x = check_float_input(as_tensor(x), "log_softmax")
    return ops.LogSoftmax.apply(x, axis=single_axis(axis if dim is None else dim, x.ndim))

