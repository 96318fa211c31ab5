"""Compiled 2-D convolution, forward and backward, for float32 and float64 data (NCHW).

The algorithm is im2col + BLAS matrix products through NumPy, chosen by measurement
(docs/convolution.md has the tables):

* forward: a ``cdef ... nogil`` loop copies, for every input channel c and kernel tap (i, j),
  the input pixels under that tap at every output position into row (c, i, j) of a column
  buffer (N, G, C/G kh kw + 1, Ho Wo), zeros where the tap falls in the padding (stride,
  padding and dilation are all in the index arithmetic); the last row of each group is ones,
  so that ``np.matmul`` of [W | b] (G, O/G, C/G kh kw + 1) with the buffer gives y with its
  bias, one BLAS product per sample and group, straight into (N, O, Ho Wo).
* backward: [dW | db] = sum over samples and positions of dY times the buffer rows (rebuilt,
  not kept from forward, so that a network holds no im2col buffer between its forward and
  backward); dcols = W^T dY per sample, then col2im scatter-adds every row of dcols back
  onto the input pixels it came from. Only the gradients asked for are computed (no col2im
  for an input that needs no gradient).

Measured alternatives: a direct loop nest (each output row as K multiply-adds of input rows)
was slower than BLAS at every inner dimension tried (K = 10: 8.6 against 6.7 ms; K = 32: 6.7
against 6.0 ms; K = 145: 6.9 against 0.34 ms), so there is one algorithm for every shape; dW
is one product per sample summed (few rows) or one product over all samples after one
transpose of dY (many rows, PER_SAMPLE_DW_ROWS). Work is split across threads by sample
(im2col, col2im) or channel (sums, transposes), so each output element is written by one
thread in a fixed order and results do not depend on the thread count.

The NumPy twins, with the same signatures, are in ``_conv_twin.py``.
"""

include "_parallel.pxi"

import numpy as np

from cython cimport floating
from cython.parallel cimport prange

from minigrad.kernels._checks_spatial import conv2d_backward_args, conv2d_forward_args
from minigrad.kernels._simd cimport _row_sum


cdef struct Geometry:
    int kh, kw, sh, sw, top, left, dh, dw
    Py_ssize_t Ho, Wo
    Py_ssize_t cg           # input channels per group
    Py_ssize_t group_rows   # rows per group in the buffer: C/G kh kw, + 1 with a ones row


# Below this many rows per group (C/G kh kw), dW is one BLAS product per sample, summed over
# the samples; above, the upstream gradient is transposed once and dW is one product over all
# samples (measured: 9 rows 4.4 against 5.6 ms, 144 rows a tie, 288 rows 37 against 30 ms).
cdef enum:
    PER_SAMPLE_DW_ROWS = 64


cdef inline void _valid_span(Py_ssize_t off, int s, Py_ssize_t W, Py_ssize_t Wo,
                             Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """The output columns [lo, hi) whose input column ox * s + off lies in [0, W)."""
    lo[0] = 0 if off >= 0 else (-off + s - 1) // s
    hi[0] = 0 if W - 1 - off < 0 else (W - 1 - off) // s + 1
    if lo[0] > Wo:
        lo[0] = Wo
    if hi[0] > Wo:
        hi[0] = Wo
    if hi[0] < lo[0]:
        hi[0] = lo[0]


cdef inline (Py_ssize_t, Py_ssize_t) _next_channel_row(Py_ssize_t row, Py_ssize_t k,
                                                       Geometry g) noexcept nogil:
    """The buffer row of the same tap for the next input channel, and that channel's index in
    its group: kh kw rows on, or at the next group's start (no division in the loop)."""
    if k + 1 < g.cg:
        return row + g.kh * g.kw, k + 1
    return row + g.group_rows - (g.cg - 1) * g.kh * g.kw, 0


cdef inline bint _flat(Geometry g, Py_ssize_t W) noexcept nogil:
    """Whether a tap's Ho x Wo block is one shifted run of the input plane: stride 1 and rows
    as long as the input's ("same"-style padding, the common CNN case). Then the block is one
    long copy, not Ho copies of Wo values (4 to 28 here, where the per-row cost dominated)."""
    return g.sh == 1 and g.sw == 1 and g.Wo == W


cdef struct Tap:
    Py_ssize_t ylo, yhi, lo, hi  # output rows and columns whose input lies inside the plane
    Py_ssize_t shift             # input offset of output (0, 0): (i dh - top) W + j dw - left


cdef inline Tap _tap(Py_ssize_t i, Py_ssize_t j, Py_ssize_t H, Py_ssize_t W,
                     Geometry g) noexcept nogil:
    """Where tap (i, j) reads: the same for every channel and sample, so computed once per
    tap (its divisions cost more than a 4x4 block's copy)."""
    cdef Tap t
    _valid_span(i * g.dh - g.top, g.sh, H, g.Ho, &t.ylo, &t.yhi)
    _valid_span(j * g.dw - g.left, g.sw, W, g.Wo, &t.lo, &t.hi)
    if t.lo >= t.hi:
        t.ylo = t.yhi
    t.shift = (i * g.dh - g.top) * W + j * g.dw - g.left
    return t


cdef void _im2col_tap(const floating *plane, floating *dst, Tap t, Py_ssize_t W, bint flat,
                      Geometry g) noexcept nogil:
    """One buffer row: dst[(oy, ox)] = plane[oy sh W + ox sw + shift], 0 in the padding."""
    cdef Py_ssize_t oy, ox, p
    cdef const floating *src
    for p in range(t.ylo * g.Wo):
        dst[p] = 0
    for p in range(t.yhi * g.Wo, g.Ho * g.Wo):
        dst[p] = 0
    if flat and t.ylo < t.yhi:
        # one long copy over the valid run, then zero the columns that wrapped round to a
        # neighbouring row (at most |j dw - left| per row)
        src = plane + t.shift
        for p in range(t.ylo * W + t.lo, (t.yhi - 1) * W + t.hi):
            dst[p] = src[p]
        for oy in range(t.ylo, t.yhi):
            for ox in range(t.lo):
                dst[oy * W + ox] = 0
            for ox in range(t.hi, W):
                dst[oy * W + ox] = 0
        return
    for oy in range(t.ylo, t.yhi):
        src = plane + oy * g.sh * W + t.shift
        for ox in range(t.lo):
            dst[oy * g.Wo + ox] = 0
        if g.sw == 1:
            for ox in range(t.lo, t.hi):
                dst[oy * g.Wo + ox] = src[ox]
        else:
            for ox in range(t.lo, t.hi):
                dst[oy * g.Wo + ox] = src[ox * g.sw]
        for ox in range(t.hi, g.Wo):
            dst[oy * g.Wo + ox] = 0


cdef void _im2col_sample(const floating[:, :, :, ::1] x, floating *cols, Py_ssize_t s_row,
                         Py_ssize_t n, Py_ssize_t groups, Geometry g) noexcept nogil:
    """cols[row(c, i, j) * s_row + (oy, ox)] = x[n, c, oy sh - top + i dh, ox sw - left + j dw],
    0 in the padding, and 1 in each group's ones row when the geometry has one: ``cols`` points
    at sample n's first row, rows are s_row apart."""
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t c, i, j, p, row, k
    cdef floating *dst
    cdef bint flat = _flat(g, W)
    cdef Tap t
    for i in range(g.kh):
        for j in range(g.kw):
            t = _tap(i, j, H, W, g)
            row, k = i * g.kw + j, 0  # the row of channel c, the k-th of its group
            for c in range(C):
                _im2col_tap(&x[n, c, 0, 0], cols + row * s_row, t, W, flat, g)
                row, k = _next_channel_row(row, k, g)
    if g.group_rows > g.cg * g.kh * g.kw:  # the ones rows that carry the bias
        for c in range(groups):
            dst = cols + ((c + 1) * g.group_rows - 1) * s_row
            for p in range(g.Ho * g.Wo):
                dst[p] = 1


cdef void _col2im_sample(floating[:, :, ::1] cols, floating[:, :, :, ::1] dx,
                         Py_ssize_t n, Geometry g) noexcept nogil:
    """The adjoint of _im2col_sample: dx[n] += every row (c, i, j) at its input pixels.
    ``cols`` is scratch: the flat path zeroes the values that wrapped round a row edge, so
    that one long add per tap moves only the values that belong."""
    cdef Py_ssize_t C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t c, i, j, oy, ox, p, row, k
    cdef floating *dst
    cdef floating *src
    cdef bint flat = _flat(g, W)
    cdef Tap t
    for i in range(g.kh):
        for j in range(g.kw):
            t = _tap(i, j, H, W, g)
            row, k = i * g.kw + j, 0
            for c in range(C):
                src = &cols[n, row, 0]
                row, k = _next_channel_row(row, k, g)
                if flat and t.ylo < t.yhi:
                    for oy in range(t.ylo, t.yhi):
                        for ox in range(t.lo):
                            src[oy * W + ox] = 0
                        for ox in range(t.hi, W):
                            src[oy * W + ox] = 0
                    dst = &dx[n, c, 0, 0] + t.shift
                    for p in range(t.ylo * W + t.lo, (t.yhi - 1) * W + t.hi):
                        dst[p] += src[p]
                    continue
                for oy in range(t.ylo, t.yhi):
                    dst = &dx[n, c, 0, 0] + oy * g.sh * W + t.shift
                    if g.sw == 1:  # a unit stride the compiler can vectorise
                        for ox in range(t.lo, t.hi):
                            dst[ox] += src[oy * g.Wo + ox]
                    else:
                        for ox in range(t.lo, t.hi):
                            dst[ox * g.sw] += src[oy * g.Wo + ox]


def _im2col(const floating[:, :, :, ::1] x, floating[::1] cols, Geometry g, bint by_sample,
            Py_ssize_t rows):
    """Fill the flat buffer ``cols`` as (N, rows, Ho Wo) (by_sample) or (rows, N, Ho Wo).

    rows = groups * group_rows (not from C / cg: cg may be 0, with no channel to copy).
    """
    cdef Py_ssize_t n, N = x.shape[0], L = g.Ho * g.Wo
    cdef Py_ssize_t s_n = rows * L if by_sample else L
    cdef Py_ssize_t s_row = L if by_sample else N * L
    cdef int nt = threads_for(cols.shape[0])
    if cols.shape[0] != N * rows * L:
        raise ValueError(f"_im2col: cols has {cols.shape[0]} values, needs {N * rows * L}")
    if cols.shape[0] == 0:
        return
    cdef Py_ssize_t groups = rows // g.group_rows  # > 0: cols is not empty
    with nogil:
        for n in prange(N, num_threads=nt, schedule="static"):
            _im2col_sample(x, &cols[0] + n * s_n, s_row, n, groups, g)


def _col2im(floating[:, :, ::1] cols, floating[:, :, :, ::1] dx, Geometry g):
    cdef Py_ssize_t n
    cdef int nt = threads_for(cols.shape[0] * cols.shape[1] * cols.shape[2])
    with nogil:
        for n in prange(dx.shape[0], num_threads=nt, schedule="static"):
            _col2im_sample(cols, dx, n, g)


def _transpose(const floating[:, :, ::1] src, floating[:, :, ::1] dst):
    """dst[o, n, :] = src[n, o, :]."""
    cdef Py_ssize_t o, n, k
    cdef int nt = threads_for(src.shape[0] * src.shape[1] * src.shape[2])
    with nogil:
        for o in prange(src.shape[1], num_threads=nt, schedule="static"):
            for n in range(src.shape[0]):
                for k in range(src.shape[2]):
                    dst[o, n, k] = src[n, o, k]


def _channel_sums(const floating[:, :, ::1] dy):
    """The float64 sums over n and k of dy[n, o, k], one per o."""
    cdef Py_ssize_t n, o, L = dy.shape[2]
    cdef double s
    out = np.empty(dy.shape[1], np.float64)
    cdef double[::1] sums = out
    cdef int nt = threads_for(dy.shape[0] * dy.shape[1] * L)
    with nogil:
        for o in prange(dy.shape[1], num_threads=nt, schedule="static"):
            s = 0
            for n in range(dy.shape[0]):
                s = s + _row_sum(&dy[n, o, 0], L)
            sums[o] = s
    return out


cdef Geometry _geometry(tuple wshape, tuple stride, tuple padding, tuple dilation, Ho, Wo,
                        bint ones_row):
    cdef Geometry g
    g.cg, g.kh, g.kw = wshape[1:]
    g.sh, g.sw = stride
    g.top, g.left = padding[0], padding[2]
    g.dh, g.dw = dilation
    g.Ho, g.Wo = Ho, Wo
    g.group_rows = g.cg * g.kh * g.kw + ones_row
    return g


def _columns(x, groups, Geometry g, bint by_sample):
    """The im2col buffer of contiguous x: (N, G, rows, Ho Wo) by sample, else
    (G, rows, N Ho Wo), rows = C/G kh kw, plus a last row of ones per group when the geometry
    has one (it carries the bias through the same matrix products)."""
    N, L, rows = x.shape[0], g.Ho * g.Wo, g.group_rows
    shape = (N, groups, rows, L) if by_sample else (groups, rows, N * L)
    cols = np.empty(shape, x.dtype)
    _im2col(x, cols.reshape(-1), g, by_sample, groups * rows)
    return cols


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    """y = conv2d(x, weight) + bias, x (N, C, H, W), weight (O, C/G, kh, kw), bias (O,) or None.

    stride (sh, sw), padding (top, bottom, left, right), dilation (dh, dw): tuples of ints.
    y[n, group] = [W_group | b_group] @ [cols[n, group]; ones]: the bias rides along as an
    extra column of the weight against a row of ones in the buffer.

    Returns:
        y (N, O, Ho, Wo) with Ho = (H + top + bottom - dh (kh - 1) - 1) // sh + 1 (likewise Wo).
    """
    Ho, Wo = conv2d_forward_args(x, weight, bias, stride, padding, dilation, groups)
    x = np.ascontiguousarray(x)
    N, O = x.shape[0], weight.shape[0]
    g = _geometry(weight.shape, stride, padding, dilation, Ho, Wo, bias is not None)
    cols = _columns(x, groups, g, True)
    w = weight.reshape(groups, O // groups, -1)
    if bias is not None:
        w = np.concatenate([w, bias.reshape(groups, O // groups, 1)], axis=2)
    # one BLAS product per sample and group, straight into NCHW; (out= measured slower here:
    # 6.6 against 4.3 ms at 128x1x28x28 -> 32)
    return np.matmul(w, cols).reshape(N, O, Ho, Wo)


def conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups, needs):
    """Gradients of conv2d_forward for the upstream grad_out (N, O, Ho, Wo).

    [dW | db] = sum_n dY[n] [cols[n]; ones]^T per group, dcols[n] = W^T dY[n] scattered back
    onto dx by col2im; db alone (without dW) is summed in float64.

    Returns:
        (dx, dweight, dbias), each None where ``needs`` (three bools) says False.
    """
    Ho, Wo = conv2d_backward_args(grad_out, x, weight, stride, padding, dilation, groups, needs)
    x = np.ascontiguousarray(x)
    N, C, O = x.shape[0], x.shape[1], weight.shape[0]
    K = C // groups * weight.shape[2] * weight.shape[3]
    dy = np.ascontiguousarray(grad_out).reshape(N, groups, O // groups, Ho * Wo)
    dx = dw = db = None
    if needs[1]:
        g = _geometry(weight.shape, stride, padding, dilation, Ho, Wo, needs[2])
        dwb = _weight_grad(dy, x, groups, g)
        dw = np.ascontiguousarray(dwb[..., :K]).reshape(weight.shape)
        if needs[2]:
            db = dwb[..., K].reshape(O)
    elif needs[2]:
        db = _channel_sums(dy.reshape(N, O, Ho * Wo)).astype(x.dtype)
    if needs[0]:
        g = _geometry(weight.shape, stride, padding, dilation, Ho, Wo, False)
        w = np.ascontiguousarray(weight).reshape(groups, O // groups, K)
        dcols = np.matmul(w.transpose(0, 2, 1), dy)  # (N, G, K, Ho Wo)
        dx = np.zeros(x.shape, x.dtype)
        _col2im(dcols.reshape(N, groups * K, Ho * Wo), dx, g)
    return dx, dw, db


def _weight_grad(dy, x, groups, Geometry g):
    """(G, O/G, rows): sum over samples and positions of dY times the buffer rows."""
    N, O_g, L = dy.shape[0], dy.shape[2], dy.shape[3]
    if g.cg * g.kh * g.kw <= PER_SAMPLE_DW_ROWS:
        cols = _columns(x, groups, g, True)
        return np.matmul(dy, cols.transpose(0, 1, 3, 2)).sum(axis=0)
    cols = _columns(x, groups, g, False)
    dy_t = np.empty((groups * O_g, N, L), x.dtype)
    _transpose(dy.reshape(N, groups * O_g, L), dy_t)
    return np.matmul(dy_t.reshape(groups, O_g, N * L), cols.transpose(0, 2, 1))
