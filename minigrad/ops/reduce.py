"""Reduction Functions (sum, mean, var, max, min, logsumexp) and softmax / log-softmax.

Forward and backward call the kernels of the active backend (``kernels.impl``), so the same
op runs on the compiled Cython kernels or on their NumPy twins. Axes arrive validated by
``minigrad.functional.reduce``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..autograd import Function
from ..kernels._checks import reduced_axes

Axis = int | tuple[int, ...] | None


def _kept_shape(shape: tuple[int, ...], axis: Axis) -> tuple[int, ...]:
    """x's shape with the reduced axes set to 1: the keepdims shape of the result."""
    if axis is None:  # the common full reduction needs no axis normalisation
        return (1,) * len(shape)
    axes = reduced_axes(len(shape), axis)
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


# exercise: spread_gradient
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

    # exercise: sum_backward
    @staticmethod
    def backward(ctx, grad):
        return _spread(grad, ctx.kept_shape, ctx.shape)


class Mean(Function):
    """y = sum(x) / M over axes (M reduced elements);  dx = g / M broadcast back."""

    @staticmethod
    def forward(ctx, x, *, axis, keepdims):
        ctx.kept_shape, ctx.shape = _kept_shape(x.shape, axis), x.shape
        return kernels.impl.mean(x, axis, keepdims)

    # exercise: mean_backward
    @staticmethod
    def backward(ctx, grad):
        count = math.prod(ctx.shape) // max(math.prod(ctx.kept_shape), 1)
        return _spread(grad, ctx.kept_shape, ctx.shape, 1.0 / max(count, 1))


class Var(Function):
    """y = sum((x - mean)**2) / (M - correction);  dx = g * 2 (x - mean) / (M - correction).

    The backward centres x on a float64 mean: the kernel's mean is rounded to x's dtype, and
    when |mean| >> std that rounding is a large share of x - mean (0.4 ulp of 1e5 in float32
    is 4e-3, against a spread of 1e-2).
    """

    @staticmethod
    def forward(ctx, x, *, axis, keepdims, correction):
        axes = reduced_axes(x.ndim, axis)
        ctx.kept_shape, ctx.correction, ctx.axes = _kept_shape(x.shape, axes), correction, axes
        ctx.count = math.prod(x.shape[a] for a in axes)
        var, mean = kernels.impl.var(x, axis, keepdims, correction)
        ctx.save_for_backward(x, mean)
        return var

    # exercise: var_backward
    @staticmethod
    def backward(ctx, grad):
        x, mean = ctx.saved
        dof = ctx.count - ctx.correction
        factor = 2 / dof if dof > 0 else np.nan
        if x.dtype == np.float64:
            centred = x - mean.reshape(ctx.kept_shape)
            return (grad.reshape(ctx.kept_shape) * factor) * centred
        with np.errstate(invalid="ignore", divide="ignore"):
            mean64 = np.sum(x, axis=ctx.axes, keepdims=True, dtype=np.float64) / ctx.count
        dx = (grad.reshape(ctx.kept_shape) * factor) * (x - mean64)
        return dx.astype(x.dtype)


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

    # exercise: max_backward
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
    """y = log(sum(exp(x))) over axes;  dx = g * softmax(x) over the same axes.

    The backward forms softmax from the exact shift x - max(x) rather than exp(x - y): y is
    rounded to x's dtype, and at |x| ~ 1e6 in float32 that rounding alone moves exp(x - y) by
    several percent.
    """

    @staticmethod
    def forward(ctx, x, *, axis, keepdims):
        axes = reduced_axes(x.ndim, axis)
        ctx.kept_shape, ctx.axes = _kept_shape(x.shape, axes), axes
        ctx.save_for_backward(x)
        return kernels.impl.logsumexp(x, axis, keepdims)

    # exercise: logsumexp_backward
    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            shift = np.max(x, axis=ctx.axes, keepdims=True) if x.size else 0
            weights = np.asarray(np.exp(x - shift))  # an array also for 0-d x (for out=)
            total = np.sum(weights, axis=ctx.axes, keepdims=True, dtype=np.float64)
            # where the max is +inf, exp(x - inf) is already the answer (0 at finite entries,
            # NaN at the infinite ones, as PyTorch gives): dividing by its NaN total would
            # spread NaN over the finite entries too
            np.divide(weights, total.astype(x.dtype), out=weights, where=np.isfinite(shift))
        return grad.reshape(ctx.kept_shape) * weights


class _SoftmaxFamily(Function):
    """Softmax and log-softmax: one kernel each way, the backward reading only the output y."""

    forward_kernel = backward_kernel = ""  # names in kernels.impl, set by each subclass

    @classmethod
    def forward(cls, ctx, x, *, axis):
        y = getattr(kernels.impl, cls.forward_kernel)(x, axis)
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @classmethod
    def backward(cls, ctx, grad):
        (y,) = ctx.saved
        return getattr(kernels.impl, cls.backward_kernel)(y, np.ascontiguousarray(grad), ctx.axis)


class Softmax(_SoftmaxFamily):
    """y = exp(x) / sum(exp(x)) along axis;  dx = y * (g - sum(g * y))."""

    forward_kernel, backward_kernel = "softmax", "softmax_backward"


class LogSoftmax(_SoftmaxFamily):
    """y = x - logsumexp(x) along axis;  dx = g - exp(y) * sum(g)."""

    forward_kernel, backward_kernel = "log_softmax", "log_softmax_backward"
