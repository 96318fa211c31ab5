"""Max, average and adaptive average pooling Functions over (N, C, H, W) or (C, H, W) arrays:
each one graph node whose forward and backward are one kernel call each. The arguments arrive
checked and as (height, width) pairs from ``minigrad.functional.pool``."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function


def _batched(x: np.ndarray) -> np.ndarray:
    """x as (N, C, H, W): an unbatched (C, H, W) input becomes a batch of one (a view)."""
    return x if x.ndim == 4 else x[None]


def _like_input(y: np.ndarray, ndim: int) -> np.ndarray:
    """The kernel's 4-D result, unbatched again when the input was (C, H, W)."""
    return y if ndim == 4 else y[0]


class MaxPool2d(Function):
    """y = the maximum of each window of x (taps ``dilation`` apart, -inf padding).

    Backward: each output's gradient goes to the ONE input element that was its maximum,
    the first maximal tap in row-major window order when several tie (the first NaN when the
    window holds NaN); the flat indices saved by forward say which.
    """

    @staticmethod
    def forward(ctx, x, *, kernel_size, stride, padding, dilation, out_size):
        y, indices = kernels.impl.max_pool2d_forward(
            _batched(x), kernel_size, stride, padding, dilation, out_size
        )
        ctx.save_for_backward(indices)
        ctx.in_shape = x.shape
        return _like_input(y, x.ndim)

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved
        shape = ctx.in_shape
        dx = kernels.impl.max_pool2d_backward(_batched(grad), indices, shape[-2:])
        return dx.reshape(shape)


class AvgPool2d(Function):
    """y = sum of each window / its divisor: the window's size clipped to the padded input
    (count_include_pad) or the number of input elements in it (not), as PyTorch counts.

    Backward: dx[h, w] = sum over the windows holding (h, w) of dy / divisor.
    """

    @staticmethod
    def forward(ctx, x, *, kernel_size, stride, padding, out_size, count_include_pad):
        ctx.geometry = (kernel_size, stride, padding, count_include_pad)
        ctx.in_shape = x.shape
        y = kernels.impl.avg_pool2d_forward(
            _batched(x), kernel_size, stride, padding, out_size, count_include_pad
        )
        return _like_input(y, x.ndim)

    @staticmethod
    def backward(ctx, grad):
        shape = ctx.in_shape
        dx = kernels.impl.avg_pool2d_backward(_batched(grad), shape[-2:], *ctx.geometry)
        return dx.reshape(shape)


class AdaptiveAvgPool2d(Function):
    """y[i, j] = mean of x over rows [floor(i H / oh), ceil((i+1) H / oh)) and the columns
    alike. Backward: each output's gradient, divided by its window's size, to every element of
    that window (windows overlap when the sizes do not divide)."""

    @staticmethod
    def forward(ctx, x, *, out_size):
        ctx.in_shape = x.shape
        return _like_input(kernels.impl.adaptive_avg_pool2d_forward(_batched(x), out_size), x.ndim)

    @staticmethod
    def backward(ctx, grad):
        shape = ctx.in_shape
        dx = kernels.impl.adaptive_avg_pool2d_backward(_batched(grad), shape[-2:])
        return dx.reshape(shape)
