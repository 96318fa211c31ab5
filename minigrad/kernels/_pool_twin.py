"""NumPy twins of the pooling kernels in ``_pool.pyx``: max, average and adaptive average pooling
of (N, C, H, W) arrays, forward and backward.

Same names, signatures and return values as the kernels. The window geometry comes in as pairs
(height, width): ``kernel_size``, ``stride``, ``padding``, ``dilation`` and the output size
``out_size``, all trusted (the public functions apply PyTorch's rules); the input is padded
(with -inf for max, 0 for average) far enough that every window fits, and the windows are read
with ``sliding_window_view``. A window with no input element in it (impossible through the
public functions) gives -inf and index -1 (max) or 0 (average), as the kernels do.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._checks_spatial import pool_index_error, pool_indices, pool_input, pool_pairs


def _padded(x: np.ndarray, fill: float, padding, extent) -> np.ndarray:
    """x with ``padding`` rows/columns of ``fill`` before it and as many after as the windows
    need to reach ``extent`` (ceil_mode's last window may hang over the bottom/right)."""
    (ph, pw), (eh, ew) = padding, extent
    H, W = x.shape[2:]
    out = np.full(x.shape[:2] + (max(eh, ph + H), max(ew, pw + W)), fill, x.dtype)
    out[:, :, ph:ph + H, pw:pw + W] = x
    return out


def _windows(xp: np.ndarray, kernel_size, stride, dilation, out_size) -> np.ndarray:
    """(N, C, oh, ow, kh, kw): the taps of every window of the padded input."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel_size, stride, dilation, out_size
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    taps = sliding_window_view(xp, span, axis=(2, 3))
    return taps[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :oh, :ow]


def _extent(kernel_size, stride, dilation, out_size) -> tuple[int, int]:
    """Padded height and width that the windows of the output reach."""
    return tuple(max(0, (o - 1) * s + d * (k - 1) + 1)
                 for k, s, d, o in zip(kernel_size, stride, dilation, out_size, strict=True))


def max_pool2d_forward(x, kernel_size, stride, padding, dilation, out_size):
    """y = max over each window; indices = the flat position (h * W + w) of that maximum in its
    input plane, as int64. Ties go to the first maximal tap in row-major window order; a NaN
    wins over every number (the first NaN, when there are several).

    Returns:
        (y, indices), both of shape (N, C, oh, ow).
    """
    fn = "max_pool2d_forward"
    pool_input(fn, "x", x)
    k, s, p, d, o = pool_pairs(fn, kernel_size=kernel_size, stride=stride, padding=padding,
                               dilation=dilation, out_size=out_size)
    N, C, H, W = x.shape
    y = np.full((N, C) + o, -np.inf, x.dtype)
    indices = np.full(y.shape, -1, np.int64)
    if y.size == 0 or x.size == 0:
        return y, indices
    extent = _extent(k, s, d, o)
    taps = _windows(_padded(x, -np.inf, p, extent), k, s, d, o).reshape(N, C, *o, -1)
    inside = _windows(_padded(np.ones((1, 1, H, W), bool), False, p, extent), k, s, d, o)
    inside = inside.reshape(*o, -1)
    best = np.argmax(taps, axis=-1)  # first maximum; np.argmax puts NaN above everything
    # A padding tap can tie only at -inf: take the window's first real tap instead.
    first_inside = np.argmax(inside, axis=-1)
    best = np.where(inside[np.arange(o[0])[:, None], np.arange(o[1]), best], best, first_inside)
    y[...] = np.take_along_axis(taps, best[..., None], axis=-1)[..., 0]
    ki, kj = np.divmod(best, k[1])
    rows = np.arange(o[0])[:, None] * s[0] - p[0] + ki * d[0]
    cols = np.arange(o[1]) * s[1] - p[1] + kj * d[1]
    indices[...] = np.where(inside.any(axis=-1), rows * W + cols, -1)
    return y, indices


def max_pool2d_backward(grad_out, indices, in_size):
    """dx: each output's gradient added to the one input element its index names (-1: none).

    Returns:
        dx of shape (N, C, H, W) and grad_out's dtype.
    """
    fn = "max_pool2d_backward"
    pool_input(fn, "grad_out", grad_out)
    pool_indices(fn, indices, grad_out)
    (H, W), = pool_pairs(fn, in_size=in_size)
    N, C = grad_out.shape[:2]
    planes, plane = N * C, H * W
    flat = indices.reshape(planes, indices[0, 0].size if planes else 0)
    bad = (flat < -1) | (flat >= plane)
    if bad.any():
        raise pool_index_error(fn, int(flat[bad][0]), plane)
    keep = flat >= 0
    target = (flat + np.arange(planes)[:, None] * plane)[keep]
    dx = np.bincount(target, weights=grad_out.reshape(flat.shape)[keep], minlength=planes * plane)
    return dx.astype(grad_out.dtype).reshape(N, C, H, W)


def _divisors(in_size, kernel_size, stride, padding, out_size, count_include_pad) -> np.ndarray:
    """(oh, ow) divisors of average pooling, PyTorch's rule: the window clipped to the padded
    input (count_include_pad) or to the input itself (not), and 0 for an empty window."""
    factors = []
    for L, k, s, p, o in zip(in_size, kernel_size, stride, padding, out_size, strict=True):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, L + p)
        real = np.minimum(end, L) - np.maximum(start, 0)
        factors.append(end - start if count_include_pad else np.maximum(real, 0))
    return np.outer(*factors).astype(np.float64)


def _safe_inverse(divisor: np.ndarray) -> np.ndarray:
    """1 / divisor, and 0 where the divisor is 0 (an empty window averages to 0)."""
    return np.divide(1.0, divisor, out=np.zeros_like(divisor), where=divisor > 0)


def avg_pool2d_forward(x, kernel_size, stride, padding, out_size, count_include_pad):
    """y = sum over each window / its divisor (see ``_divisors``), summed in float64."""
    fn = "avg_pool2d_forward"
    pool_input(fn, "x", x)
    k, s, p, o = pool_pairs(fn, kernel_size=kernel_size, stride=stride, padding=padding,
                            out_size=out_size)
    N, C, H, W = x.shape
    if N * C * o[0] * o[1] == 0 or x.size == 0:
        return np.zeros((N, C) + o, x.dtype)
    extent = _extent(k, s, (1, 1), o)
    taps = _windows(_padded(x, 0.0, p, extent), k, s, (1, 1), o)
    sums = taps.sum(axis=(-2, -1), dtype=np.float64)
    scale = _safe_inverse(_divisors((H, W), k, s, p, o, count_include_pad))
    return (sums * scale).astype(x.dtype)


def avg_pool2d_backward(grad_out, in_size, kernel_size, stride, padding, count_include_pad):
    """dx[h, w] = sum over the windows holding (h, w) of grad_out / divisor."""
    fn = "avg_pool2d_backward"
    pool_input(fn, "grad_out", grad_out)
    (H, W), k, s, p = pool_pairs(fn, in_size=in_size, kernel_size=kernel_size, stride=stride,
                                 padding=padding)
    N, C, oh, ow = grad_out.shape
    share = grad_out * _safe_inverse(_divisors((H, W), k, s, p, (oh, ow), count_include_pad))
    eh, ew = _extent(k, s, (1, 1), (oh, ow))
    dxp = np.zeros((N, C, max(eh, p[0] + H), max(ew, p[1] + W)))
    for i in range(k[0] if oh else 0):  # one strided slice per kernel tap
        for j in range(k[1] if ow else 0):
            dxp[:, :, i:i + s[0] * (oh - 1) + 1:s[0], j:j + s[1] * (ow - 1) + 1:s[1]] += share
    return dxp[:, :, p[0]:p[0] + H, p[1]:p[1] + W].astype(grad_out.dtype)


def _adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """[start, end) of each of ``out`` windows over ``size``: floor(i*size/out) to
    ceil((i+1)*size/out)."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _mean_along(x: np.ndarray, axis: int, bounds) -> np.ndarray:
    """The float64 mean of each window of ``bounds`` along ``axis`` (0 for an empty window)."""
    taken = [np.take(x, range(a, b), axis=axis).sum(axis=axis, dtype=np.float64) / max(b - a, 1)
             for a, b in bounds]
    shape = list(x.shape)
    shape[axis] = 0
    return np.stack(taken, axis=axis) if taken else np.zeros(shape)


def _spread_along(g: np.ndarray, axis: int, bounds, size: int) -> np.ndarray:
    """The adjoint of ``_mean_along``: each window's value / its length, added over it."""
    shape = list(g.shape)
    shape[axis] = size
    out = np.zeros(shape)
    for i, (a, b) in enumerate(bounds):
        index = [slice(None)] * g.ndim
        index[axis] = slice(a, b)
        out[tuple(index)] += np.take(g, [i], axis=axis) / max(b - a, 1)
    return out


def adaptive_avg_pool2d_forward(x, out_size):
    """y[i, j] = mean of x over rows [floor(i*H/OH), ceil((i+1)*H/OH)) and the columns alike:
    rows averaged first, then columns (separable, in float64)."""
    fn = "adaptive_avg_pool2d_forward"
    pool_input(fn, "x", x)
    (oh, ow), = pool_pairs(fn, out_size=out_size)
    rows = _mean_along(x, 2, _adaptive_bounds(x.shape[2], oh))
    return _mean_along(rows, 3, _adaptive_bounds(x.shape[3], ow)).astype(x.dtype)


def adaptive_avg_pool2d_backward(grad_out, in_size):
    """dx[h, w] = sum over the windows holding (h, w) of grad_out / window size."""
    fn = "adaptive_avg_pool2d_backward"
    pool_input(fn, "grad_out", grad_out)
    (H, W), = pool_pairs(fn, in_size=in_size)
    oh, ow = grad_out.shape[2:]
    cols = _spread_along(grad_out, 3, _adaptive_bounds(W, ow), W)
    return _spread_along(cols, 2, _adaptive_bounds(H, oh), H).astype(grad_out.dtype)
