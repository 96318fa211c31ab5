"""NumPy twins of the convolution kernels in ``_conv.pyx``: 2-D convolution forward and backward.

Same names, signatures and return values as the kernels, written as whole-array NumPy: the
windows of the zero-padded input come from ``sliding_window_view`` (a view, no copy), strided
by the stride and the dilation, and one ``einsum`` per formula contracts them with the weight:

    y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] x_pad[n, g c, p sh + i dh, q sw + j dw]

with the channel c running over the group g of out channel o. Geometry arguments are tuples of
Python ints: stride (sh, sw), padding (top, bottom, left, right), dilation (dh, dw). Only the
shared memory-safety checks of ``_checks`` run here.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._checks_spatial import conv2d_backward_args, conv2d_forward_args


# exercise: conv2d_windows
def _windows(x, kh, kw, stride, padding, dilation, groups):
    """The (N, G, C/G, Ho, Wo, kh, kw) windows of the padded x under each output position."""
    top, bottom, left, right = padding
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    win = sliding_window_view(xp, span, axis=(2, 3))
    win = win[:, :, ::stride[0], ::stride[1], ::dilation[0], ::dilation[1]]
    n, c = x.shape[:2]
    return win.reshape((n, groups, c // groups) + win.shape[2:])


def _grouped(weight, groups):
    """weight (O, C/G, kh, kw) as (G, O/G, C/G, kh, kw)."""
    return weight.reshape((groups, weight.shape[0] // groups) + weight.shape[1:])


# exercise: conv2d_forward
def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    """y = conv2d(x, weight) + bias, x (N, C, H, W), weight (O, C/G, kh, kw), bias (O,) or None.

    Returns:
        y (N, O, Ho, Wo) with Ho = (H + top + bottom - dh (kh - 1) - 1) // sh + 1 (likewise Wo).
    """
    Ho, Wo = conv2d_forward_args(x, weight, bias, stride, padding, dilation, groups)
    kh, kw = weight.shape[2:]
    win = _windows(x, kh, kw, stride, padding, dilation, groups)
    y = np.einsum("ngchwij,gocij->ngohw", win, _grouped(weight, groups), optimize=True)
    y = y.reshape(x.shape[0], weight.shape[0], Ho, Wo).astype(x.dtype, copy=False)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(y)


# exercise: conv2d_backward
def conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups, needs):
    """Gradients of conv2d_forward for the upstream grad_out (N, O, Ho, Wo).

    dw[o, c, i, j] = sum_{n, p, q} dy[n, o, p, q] x_pad[n, g c, p sh + i dh, q sw + j dw];
    dx scatters dy back through the same windows: for each tap (i, j), the strided slice
    x_pad[:, :, i dh :: sh, j dw :: sw] receives sum_o w[o, c, i, j] dy[n, o]; db = sum dy.

    Returns:
        (dx, dweight, dbias), each None where ``needs`` (three bools) says False.
    """
    conv2d_backward_args(grad_out, x, weight, stride, padding, dilation, groups, needs)
    N, C, H, W = x.shape
    kh, kw = weight.shape[2:]
    dy = grad_out.reshape((N, groups, weight.shape[0] // groups) + grad_out.shape[2:])
    wg = _grouped(weight, groups)
    dx = dw = db = None
    if needs[0]:
        top, bottom, left, right = padding
        dxp = np.zeros((N, groups, C // groups, H + top + bottom, W + left + right), x.dtype)
        Ho, Wo = grad_out.shape[2:]
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (Ho - 1) + 1,
                             stride[0])
                cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (Wo - 1) + 1,
                             stride[1])
                dxp[..., rows, cols] += np.einsum("ngohw,goc->ngchw", dy, wg[..., i, j])
        dx = np.ascontiguousarray(dxp.reshape(N, C, *dxp.shape[3:])[:, :, top:top + H,
                                                                       left:left + W])
    if needs[1]:
        win = _windows(x, kh, kw, stride, padding, dilation, groups)
        dw = np.einsum("ngohw,ngchwij->gocij", dy, win, optimize=True)
        dw = dw.reshape(weight.shape).astype(x.dtype, copy=False)
    if needs[2]:
        db = grad_out.sum(axis=(0, 2, 3)).astype(x.dtype, copy=False)
    return dx, dw, db
