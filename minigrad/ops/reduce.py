"""Reductions (sum, mean, var, max, min, logsumexp) and softmax / log-softmax.

Forward and backward call the kernels of the active backend (``kernels.impl``), so the same
op runs on the compiled Cython kernels or on their NumPy twins.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from .. import autograd, kernels
from ..autograd import Function
from ..kernels._checks import reduced_axes
from . import as_tensor
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
    if isinstance(axis, list):
        axis = tuple(axis)
    return {"axis": axis, "keepdims": bool(keepdims)}


def _kept_shape(shape: tuple[int, ...], axis: Axis) -> tuple[int, ...]:
    """x's shape with the reduced axes set to 1: the keepdims shape of the result."""
    if axis is None:  # the common full reduction needs no axis normalisation
        return (1,) * len(shape)
    axes = reduced_axes(len(shape), axis)
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _spread(grad: np.ndarray, kept_shape: tuple[int, ...], shape: tuple[int, ...],
            scale: float | None = None) -> np.ndarray:
    """Copy a reduced gradient back over every reduced position: the adjoint of a sum.

    Writing a fresh array is cheaper than np.broadcast_to on small inputs and gives the
    consumer an array it owns.
    """
    out = np.empty(shape, dtype=grad.dtype)
    grad = grad.reshape(kept_shape)
    if scale is None:
        out[...] = grad
    else:
        np.multiply(grad, grad.dtype.type(scale), out=out)
    return out


class Sum(Function):
    """y = sum over axes of x;  dx = g broadcast back over the reduced axes."""

    @staticmethod
    def forward(ctx, x, *, axis, keepdims):
        ctx.kept_shape, ctx.shape = _kept_shape(x.shape, axis), x.shape
        return kernels.impl.sum(x, axis, keepdims)

    @staticmethod
    def backward(ctx, grad):
        return _spread(grad, ctx.kept_shape, ctx.shape)


class Mean(Function):
    """y = sum(x) / M over axes (M reduced elements);  dx = g / M broadcast back."""

    @staticmethod
    def forward(ctx, x, *, axis, keepdims):
        ctx.kept_shape, ctx.shape = _kept_shape(x.shape, axis), x.shape
        return kernels.impl.mean(x, axis, keepdims)

    @staticmethod
    def backward(ctx, grad):
        count = math.prod(ctx.shape) // builtins.max(math.prod(ctx.kept_shape), 1)
        return _spread(grad, ctx.kept_shape, ctx.shape, 1.0 / builtins.max(count, 1))


class Var(Function):
    """y = sum((x - mean)**2) / (M - correction);  dx = g * 2 (x - mean) / (M - correction)."""

    @staticmethod
    def forward(ctx, x, *, axis, keepdims, correction):
        axes = reduced_axes(x.ndim, axis)
        ctx.kept_shape, ctx.correction = _kept_shape(x.shape, axes), correction
        ctx.count = math.prod(x.shape[a] for a in axes)
        var, mean = kernels.impl.var(x, axis, keepdims, correction)
        ctx.save_for_backward(x, mean)
        return var

    @staticmethod
    def backward(ctx, grad):
        x, mean = ctx.saved
        dof = ctx.count - ctx.correction
        factor = grad.dtype.type(2 / dof if dof > 0 else np.nan)
        return (grad.reshape(ctx.kept_shape) * factor) * (x - mean.reshape(ctx.kept_shape))


class _Extreme(Function):
    """Shared max/min: y = extreme over axes; the whole gradient goes to the first extreme
    element (in C order over the reduced axes), as ``argmax``/``argmin`` pick it."""

    kernel_name = ""

    @classmethod
    def forward(cls, ctx, x, *, axis, keepdims):
        axes = reduced_axes(x.ndim, axis)
        y, index = getattr(kernels.impl, cls.kernel_name)(x, axis, keepdims)
        ctx.axes, ctx.keepdims, ctx.shape = axes, keepdims, x.shape
        ctx.save_for_backward(index)
        return y

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved
        axes, shape = ctx.axes, ctx.shape
        kept = [a for a in range(len(shape)) if a not in axes]
        if ctx.keepdims:  # work with the kept axes only
            grad, index = np.squeeze(grad, axes), np.squeeze(index, axes)
        count = math.prod(shape[a] for a in axes)
        dx = np.zeros(grad.shape + (count,), dtype=grad.dtype)
        np.put_along_axis(dx, index[..., None], grad[..., None], axis=-1)
        # dx is laid out as (kept axes..., reduced axes flattened): unflatten and undo the move
        dx = dx.reshape([shape[a] for a in kept] + [shape[a] for a in axes])
        return np.transpose(dx, np.argsort(kept + list(axes)))


class Max(_Extreme):
    """y = max over axes (see _Extreme for the gradient rule)."""

    kernel_name = "max"


class Min(_Extreme):
    """y = min over axes (see _Extreme for the gradient rule)."""

    kernel_name = "min"


class LogSumExp(Function):
    """y = log(sum(exp(x))) over axes;  dx = g * exp(x - y)."""

    @staticmethod
    def forward(ctx, x, *, axis, keepdims):
        ctx.kept_shape = _kept_shape(x.shape, reduced_axes(x.ndim, axis))
        y = kernels.impl.logsumexp(x, axis, keepdims)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved
        with np.errstate(invalid="ignore"):
            weights = np.exp(x - y.reshape(ctx.kept_shape))
        return grad.reshape(ctx.kept_shape) * weights


class Softmax(Function):
    """y = exp(x) / sum(exp(x)) along axis;  dx = y * (g - sum(g * y))."""

    @staticmethod
    def forward(ctx, x, *, axis):
        y = kernels.impl.softmax(x, axis)
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved
        return kernels.impl.softmax_backward(y, np.ascontiguousarray(grad), ctx.axis)


class LogSoftmax(Function):
    """y = x - logsumexp(x) along axis;  dx = g - exp(y) * sum(g)."""

    @staticmethod
    def forward(ctx, x, *, axis):
        y = kernels.impl.log_softmax(x, axis)
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved
        return kernels.impl.log_softmax_backward(y, np.ascontiguousarray(grad), ctx.axis)


# ----------------------------------------------------------------------------- Tensor level


def _float_input(x: Any, op: str):
    """The input as a Tensor; reductions that need floats reject other dtypes by name."""
    x = as_tensor(x)
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op} needs a floating-point tensor, got dtype {x.data.dtype}")
    return x


def _plain(x, fn, axis: Axis, keepdims: bool, dtype=None):
    """Non-float tensors (counts, masks) reduce with NumPy directly, outside the graph."""
    Tensor = autograd.Tensor
    axis = reduced_axes(x.ndim, axis)  # validates like the float path
    return Tensor(np.asarray(fn(x.data, axis=axis, keepdims=keepdims, dtype=dtype)))


def sum(x: Any, axis: Axis = None, keepdims: bool = False):
    """Sum over ``axis`` (None: all). Booleans and ints sum as int64, outside the graph."""
    x = as_tensor(x)
    if x.data.dtype.kind != "f":
        return _plain(x, np.sum, axis, keepdims, dtype=np.int64)
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x: Any, axis: Axis = None, keepdims: bool = False):
    """Mean over ``axis``. Booleans and ints give a float32 mean, outside the graph."""
    x = as_tensor(x)
    if x.data.dtype.kind != "f":
        return _plain(x, np.mean, axis, keepdims, dtype=np.float32)
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def var(x: Any, axis: Axis = None, keepdims: bool = False, correction: int = 0):
    """Variance over ``axis`` with ``correction`` (0: biased, 1: unbiased)."""
    return Var.apply(_float_input(x, "var"), axis=axis, keepdims=keepdims, correction=correction)


def std(x: Any, axis: Axis = None, keepdims: bool = False, correction: int = 0):
    """Standard deviation: sqrt(var(x, axis, keepdims, correction))."""
    return sqrt(var(x, axis, keepdims, correction))


def max(x: Any, axis: Axis = None, keepdims: bool = False):
    """Maximum over ``axis``; gradient to the first maximal element."""
    return Max.apply(_float_input(x, "max"), axis=axis, keepdims=keepdims)


def min(x: Any, axis: Axis = None, keepdims: bool = False):
    """Minimum over ``axis``; gradient to the first minimal element."""
    return Min.apply(_float_input(x, "min"), axis=axis, keepdims=keepdims)


def logsumexp(x: Any, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None,
              keepdim: bool | None = None):
    """log(sum(exp(x))) over ``axis`` (alias ``dim``), stable for large inputs."""
    args = axis_args(axis, keepdims, dim, keepdim)
    return LogSumExp.apply(_float_input(x, "logsumexp"), **args)


def softmax(x: Any, axis: int = -1, *, dim: int | None = None):
    """Softmax along one axis (``axis``, or PyTorch's ``dim``)."""
    x = _float_input(x, "softmax")
    return Softmax.apply(x, axis=_single_axis(axis if dim is None else dim, x.ndim))


def log_softmax(x: Any, axis: int = -1, *, dim: int | None = None):
    """Log-softmax along one axis (``axis``, or PyTorch's ``dim``)."""
    x = _float_input(x, "log_softmax")
    return LogSoftmax.apply(x, axis=_single_axis(axis if dim is None else dim, x.ndim))


def _single_axis(axis: Any, ndim: int) -> int:
    if not isinstance(axis, int | np.integer) or isinstance(axis, bool):
        raise TypeError(f"softmax takes one int axis, got {axis!r}")
    return normalize_axis_tuple(int(axis), ndim)[0]
