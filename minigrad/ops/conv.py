"""Convolution and padding Functions: ``Conv2d`` (1-D convolutions too, through a unit height)
and ``Pad`` (constant padding, negative widths crop)."""

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
        dx, dw, db = kernels.impl.conv2d_backward(
            np.ascontiguousarray(grad), x, weight, *ctx.geometry,
            (needs[0], needs[1], len(needs) > 2 and needs[2]),
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
