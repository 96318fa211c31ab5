"""Convolution and padding Functions: ``Conv2d`` (1-D convolutions too, through a unit height)
``Pad`` (constant padding, negative widths crop) and ``BorderPad`` (reflect, replicate and
circular padding)."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function


class Conv2d(Function):
    """y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] x_pad[n, c, p sh + i dh, q sw + j dw]
    with c over the input channels of o's group.

    x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,); or x (N, C, L) with weight
    (O, C/groups, k) for a 1-D convolution, run as a 2-D one of unit height. stride (sh, sw),
    padding (top, bottom, left, right) and dilation (dh, dw) are tuples of ints, already checked.
    Backward: dw = sum over n, p, q of dy times the input windows; dx scatters w^T dy back
    through the same windows; db = sum of dy over n, p, q.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, *, stride, padding, dilation, groups):
        one_d = x.ndim == 3
        if one_d:  # a view of unit height, no copy
            x, weight = x[:, :, None, :], weight[:, :, None, :]
        y = kernels.impl.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
        ctx.geometry = (stride, padding, dilation, groups)
        ctx.one_d = one_d
        ctx.save_for_backward(x, weight)
        return y[:, :, 0, :] if one_d else y

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved
        needs = ctx.needs_input_grad
        if ctx.one_d:
            grad = grad[:, :, None, :]
        # the kernels take any layout (and copy only what is not C-contiguous)
        dx, dw, db = kernels.impl.conv2d_backward(
            grad, x, weight, *ctx.geometry, (needs[0], needs[1], len(needs) > 2 and needs[2]),
        )
        if ctx.one_d:
            dx = None if dx is None else dx[:, :, 0, :]
            dw = None if dw is None else dw[:, :, 0, :]
        return (dx, dw, db)[: len(needs)]


class Pad(Function):
    """y = x with ``widths[k] = (before, after)`` values of ``value`` added on each side of
    axis k; a negative width removes that many values instead. dx = the slice of g that x
    became, with zeros where x was cropped."""

    @staticmethod
    def forward(ctx, x, *, widths, value):
        crop = tuple(slice(max(-b, 0), n - max(-a, 0)) for (b, a), n in zip(widths, x.shape,
                                                                              strict=True))
        grow = tuple((max(b, 0), max(a, 0)) for b, a in widths)
        ctx.grow = grow
        ctx.cropped = tuple((max(-b, 0), max(-a, 0)) for b, a in widths)
        return np.pad(x[crop], grow, constant_values=value)

    @staticmethod
    def backward(ctx, grad):
        inner = tuple(slice(b, n - a) for (b, a), n in zip(ctx.grow, grad.shape, strict=True))
        return np.pad(grad[inner], ctx.cropped)


def border_source(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each output position along a dim of size n padded by (before, after), the input
    index it copies: output j holds input j - before, mapped back into [0, n) by the mode --
    reflect mirrors about the edge element (period 2n - 2), replicate clamps to the edge. A
    negative width crops, as the range starts inside. Circular (PyTorch's order) crops first
    and then wraps around what is left (period n minus the cropped values)."""
    if mode == "circular":
        low, high = max(-before, 0), n - max(-after, 0)
        j = np.arange(-max(before, 0), high - low + max(after, 0))
        return low + j % max(high - low, 1)  # an empty crop admits only zero padding
    j = np.arange(-before, n + after)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    period = max(2 * n - 2, 1)  # n == 1 admits only zero widths, so j is 0 there
    m = j % period
    return np.where(m < n, m, period - m)


class BorderPad(Function):
    """y = x with borders copied from x itself (reflect, replicate or circular), one dim at a
    time: along each padded dim y = take(x, source, axis) with ``border_source``'s indices.
    dx: each output gradient added back to the input element it copied (a scatter-add per
    dim, in reverse order)."""

    @staticmethod
    def forward(ctx, x, *, widths, mode):
        sources = {axis: border_source(n, b, a, mode)
                   for axis, (n, (b, a)) in enumerate(zip(x.shape, widths, strict=True))
                   if (b, a) != (0, 0)}
        ctx.sources, ctx.in_shape = sources, x.shape
        for axis, source in sources.items():
            x = np.take(x, source, axis=axis)
        return x

    @staticmethod
    def backward(ctx, grad):
        for axis, source in reversed(ctx.sources.items()):
            grad = np.moveaxis(grad, axis, 0)
            summed = np.zeros((ctx.in_shape[axis],) + grad.shape[1:], grad.dtype)
            np.add.at(summed, source, grad)
            grad = np.moveaxis(summed, 0, axis)
        return np.ascontiguousarray(grad)
