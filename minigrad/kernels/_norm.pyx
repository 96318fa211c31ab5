# Longer than the ~400 lines we aim for: one compiled module per kernel family, and BatchNorm,
# LayerNorm and RMSNorm share the centring, the shifted sums and the write passes; split, the
# parts would no longer sit beside their one twin, _norm_twin.py.
"""Fused BatchNorm, LayerNorm and RMSNorm kernels, forward and backward, float32 and float64.

RMSNorm runs on the LayerNorm cores with centring switched off (mean 0, no sum(dy) term).

Each kernel is a thin ``def`` wrapper (the memory-safety checks of ``_checks``, shared with the
NumPy twins in ``_norm_twin.py``; contiguous copies; output allocation) around a
``cdef ... nogil`` core. The
cores follow one plan (docs/normalization.md, "How the kernels compute it"):

* forward: one statistics pass, then one write pass ``y = x * scale + shift`` with gamma, beta,
  mean and rstd folded into a per-channel (BatchNorm) or per-sample (LayerNorm) scale and shift;
* backward: one reduction pass for the two sums of the closed form, then one write pass
  ``dx = dy * a + x * b + d`` with per-channel or per-sample a, b and d.

Statistics and gradient sums accumulate in float64 (shifted one-pass sums, so that data whose mean
is far larger than its spread keeps its variance); the write passes run in the data's dtype.
Contiguous reductions use the float64 lanes of ``_simd.h``. Work is split across threads
only by independent outputs (channels, samples or fixed blocks of samples), so no result depends
on the thread count.
"""

include "_parallel.pxi"

import math

import numpy as np

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite, sqrt

from minigrad.kernels._activation import relu_backward
from minigrad.kernels._checks import (
    batchnorm_backward_args,
    batchnorm_forward_args,
    layernorm_backward_args,
    layernorm_forward_args,
    rmsnorm_backward_args,
    rmsnorm_forward_args,
    same_as,
)
from minigrad.kernels._simd cimport (
    _grad_sums,
    _layernorm_dx_row,
    _layernorm_grad_sums,
    _layernorm_row,
    _row_moments,
    _scale_shift,
)

# LayerNorm's backward sums dgamma and dbeta over samples in blocks of about this many elements,
# each block into its own float64 partial sums, added in block order at the end: the blocks
# depend on the shape only, so the result does not depend on how many threads ran them.
cdef enum:
    LAYERNORM_BLOCK_WORK = 65536
    LAYERNORM_MAX_BLOCKS = 16


# ------------------------------------------------------------------ elementwise write passes
#
# The write passes centre x as (x - mean_hi) - mean_lo, where mean_hi is the float64 mean rounded
# to the data's dtype and mean_lo the rounding error. x - mean_hi is exact for x near the mean, so
# the centred value keeps its precision even in float32 when |mean| >> std (the folded form
# x * scale - mean * scale would lose |mean| / std times eps). It costs one extra subtraction.


cdef inline void _split(double value, floating *hi, floating *lo) noexcept nogil:
    """value ~= hi + lo with hi = value rounded to the data's dtype."""
    hi[0] = <floating>value
    lo[0] = <floating>(value - <double>hi[0])


# BatchNorm's sum and write passes (per plane, or by columns for short planes)
include "_norm_batch.pxi"


cdef void _batchnorm_forward_core(
    const floating[:, :, ::1] x, const floating[::1] gamma, const floating[::1] beta,
    floating[:] running_mean, floating[:] running_var, bint has_gamma, bint has_beta,
    bint has_running, double momentum, double eps, bint training,
    floating[:, :, ::1] y, double[:, ::1] stats, floating[:, ::1] coef, double[:, ::1] cols,
    bint relu,
) noexcept nogil:
    """Statistics pass (training) or running statistics (eval), then the write pass (and,
    with ``relu``, max(y, 0) over y while it is still in cache).

    stats receives mean (row 0) and rstd (row 1); coef (4, C, or C * S when wide) is scratch
    for the write pass and cols (3, C * S) for the column sums of a statistics pass by columns.
    """
    cdef Py_ssize_t C = x.shape[1], count = x.shape[0] * x.shape[2], c
    cdef Py_ssize_t wide = _write_columns(C, x.shape[2])
    cdef int nt = threads_for(x.shape[0] * C * x.shape[2])
    cdef double *mean
    cdef double *rstd
    cdef double m, var, scale, shift
    if C == 0:  # nothing to compute (and no stats[0, 0] or x[0, 0, 0] to take the address of)
        return
    mean = &stats[0, 0]
    rstd = &stats[1, 0]
    if training:
        # mean[] and rstd[] first hold the sums of x - x[0, c, 0] and of its squares
        _batchnorm_sums(x, mean, rstd, cols, nt)
        for c in range(C):
            # (no values, which the public function refuses: 0/0 gives NaN statistics)
            shift = x[0, c, 0] if count > 0 else 0.0
            if not isfinite(shift):
                # Every shifted term would be NaN; NumPy's mean of data holding inf is inf, so
                # sum this channel unshifted (inf/NaN data only: never on the fast path).
                shift = 0.0
                _plane_unshifted_sums(x, c, &mean[c], &rstd[c])
            m = mean[c] / count
            var = _nonnegative(rstd[c] / count - m * m)
            mean[c] = shift + m
            rstd[c] = 1.0 / sqrt(var + eps)
            if has_running:
                running_mean[c] = running_mean[c] * momentum + mean[c] * (1.0 - momentum)
                running_var[c] = (running_var[c] * momentum
                                  + var * count / (count - 1) * (1.0 - momentum))
    else:
        for c in range(C):
            mean[c] = running_mean[c]
            rstd[c] = 1.0 / sqrt(<double>running_var[c] + eps)
    if count == 0:  # eval on an empty batch: statistics only, nothing to write
        return
    for c in range(C):
        scale = rstd[c] * gamma[c] if has_gamma else rstd[c]
        _split(mean[c], &coef[0, c], &coef[1, c])
        coef[2, c] = <floating>scale
        coef[3, c] = beta[c] if has_beta else 0.0
    if wide > 1:
        _spread_columns(coef, C, wide)
    _batchnorm_write(x, coef, y, nt, relu)


cdef void _batchnorm_backward_core(
    const floating[:, :, ::1] dy, const floating[:, :, ::1] mask, bint has_mask,
    const floating[:, :, ::1] x, const floating[::1] gamma,
    bint has_gamma, const double[::1] mean, const double[::1] rstd, bint training,
    floating[:, :, ::1] dx, floating[:, ::1] out, double[:, ::1] sums,
) noexcept nogil:
    """Reduction pass for sum(dy) and sum(dy * (x - mean)), then the write pass.

    With has_mask (training, sums by columns only), dy is the gradient of a ReLU applied to
    this BatchNorm's output, and mask that ReLU's output: both passes read ReLU's backward of
    dy (relu_select's rule: +0.0 where mask <= 0).

    out (7, W) receives dgamma (row 0) and dbeta (row 1) in its first C columns; rows 2-6 are
    scratch for the write, W = C * S columns when the write runs wide, else C. sums float64:
    the two sums per channel (rows 0-1), then, when the sums run wide with S > 1, three rows of
    column scratch (``_column_scratch``).
    """
    cdef Py_ssize_t C = x.shape[1], count = x.shape[0] * x.shape[2], c
    cdef Py_ssize_t wide = _write_columns(C, x.shape[2])
    cdef int nt = threads_for(x.shape[0] * C * x.shape[2])
    cdef double a, r
    cdef const floating *m = NULL
    if count == 0 or C == 0:  # no values: the sums are 0 and dx is empty
        for c in range(C):
            out[0, c] = 0.0
            out[1, c] = 0.0
        return
    if not training:
        # Eval: mean and rstd were constants, so dx = dy * gamma * rstd does not involve x at
        # all (a NaN in x must not leak into dx; the closed form below would give NaN * 0).
        # The forward's write pass y = (x - 0 - 0) * a + 0 computes exactly that.
        for c in range(C):
            out[2, c] = 0.0
            out[3, c] = 0.0
            out[4, c] = <floating>(rstd[c] * gamma[c] if has_gamma else rstd[c])
            out[5, c] = 0.0
        if wide > 1:
            _spread_columns(out[2:6], C, wide)
        _batchnorm_write(dy, out[2:6], dx, nt, False)
    if has_mask:
        m = &mask[0, 0, 0]
    _batchnorm_grad_sums(dy, m, x, &mean[0], &sums[0, 0], &sums[1, 0], sums[2:5], nt)
    for c in range(C):
        r = rstd[c]
        out[0, c] = <floating>(sums[1, c] * r)  # dgamma = sum(dy * x_hat)
        out[1, c] = <floating>sums[0, c]  # dbeta = sum(dy)
    if not training:
        return
    for c in range(C):
        r = rstd[c]
        a = r * gamma[c] if has_gamma else r
        _split(mean[c], &out[2, c], &out[3, c])
        out[4, c] = <floating>a
        # dx = a * (dy - dbeta / M - x_hat * dgamma / M), x_hat = (x - mean) * r
        out[5, c] = <floating>(-a * r * r * sums[1, c] / count)
        out[6, c] = <floating>(-a * sums[0, c] / count)
    if wide > 1:
        _spread_columns(out[2:7], C, wide)
    _batchnorm_dx_write(dy, m, x, out[2:7], dx, nt)


def _relu_in_place(y):
    """y = max(y, 0) in place over a C-contiguous float array (``_relu_rows``)."""
    flat = y.reshape(1, -1, 1)
    if flat.shape[1] == 0:
        return
    if y.dtype.itemsize == 4:
        _relu_flat[float](flat)
    else:
        _relu_flat[double](flat)


cdef void _relu_flat(floating[:, :, ::1] y) noexcept nogil:
    _relu_rows(&y[0, 0, 0], y.shape[1])


def _relu_masked(fn, dy, x, relu_out):
    """ReLU's backward of dy given its output relu_out, as a new C-contiguous array shaped like
    dy, after checking that relu_out matches x: the ReLU kernel's own backward (relu_select's
    rule), so the fused path is the unfused one's second step, not a copy of it."""
    same_as(fn, "relu_out", relu_out, x, x.shape, "the shape of x")
    return relu_backward(dy, np.reshape(relu_out, dy.shape))


# LayerNorm's and RMSNorm's cores and wrappers
include "_norm_layer.pxi"


# ------------------------------------------------------------------ Python wrappers


def _contiguous(a):
    """a itself when C-contiguous, else a C-contiguous copy (None stays None)."""
    return None if a is None else np.ascontiguousarray(a)


def _batchnorm_shape3(shape):
    """(N, C, S) with S the product of the spatial sizes (1 for (N, C) input)."""
    return (shape[0], shape[1], math.prod(shape[2:]))


cdef inline Py_ssize_t _coef_width(Py_ssize_t C, Py_ssize_t S):
    """Columns of the write pass's coefficients for (N, C, S) data: C * S when the write runs
    wide (``_write_columns``; plus COLUMN_PAD, see ``_column_scratch``), else C (also when S
    is 0: no plane to write)."""
    return C * S + COLUMN_PAD if _write_columns(C, S) and S > 1 else C


cdef inline bint _sums_by_columns(Py_ssize_t N, Py_ssize_t C, Py_ssize_t S):
    """Whether the sums of (N, C, S) data with S > 1 run wide (``_columns_per_channel``), which
    needs float64 scratch for C * S column sums."""
    return S > 1 and _columns_per_channel(N, C, S) != 0


def _column_scratch(rows, C, S):
    """float64 (rows, C * S + COLUMN_PAD) scratch for column sums. The extra columns keep the rows
    from lying a multiple of 4 KiB apart (C * S is often a power of two): a load from one row
    after a store to another at the same address modulo 4 KiB waits for the store (measured
    25% slower backward at (64, 16, 8, 8) float32)."""
    return np.empty((rows, C * S + COLUMN_PAD), np.float64)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training,
                      relu=False):
    """BatchNorm forward: y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel (axis 1).

    Training uses the batch mean and biased variance over every axis but 1 and, when running
    buffers are given, updates them in place: running = running * momentum + batch * (1 - momentum)
    (with the unbiased variance for running_var). Eval (training=False) uses the running buffers.

    Args:
        x: (N, C), (N, C, L) or (N, C, H, W), float32 or float64.
        gamma, beta: (C,) arrays of x's dtype, or None (meaning 1 and 0).
        running_mean, running_var: (C,) arrays of x's dtype updated in place, or both None.
        momentum, eps: floats; training: bool.
        relu: return max(y, 0) instead of y, bit for bit what ``np.maximum(y, 0)`` gives
            (``mg.compile`` replays a BatchNorm followed by a ReLU as this one call).

    Returns:
        (y, mean, rstd): y like x; mean and rstd = 1 / sqrt(var + eps) as float64 (C,) arrays.
    """
    batchnorm_forward_args(x, gamma, beta, running_mean, running_var, training)
    x3 = np.ascontiguousarray(x).reshape(_batchnorm_shape3(x.shape))
    C = x3.shape[1]
    y = np.empty_like(x3)
    stats = np.empty((2, C), np.float64)  # mean, rstd
    S = x3.shape[2]
    # write-pass scratch: mean_hi, mean_lo, scale, shift
    coef = np.empty((4, _coef_width(C, S)), x.dtype)
    # scratch for the statistics pass by columns (S > 1): the shifts and two sums of each column
    cols = _column_scratch(3, C, S) if training and _sums_by_columns(x3.shape[0], C, S) else None
    has_running = running_mean is not None
    if has_running and not training:
        # Eval only reads the buffers, so read-only ones are fine (the twin accepts them); a
        # writeable memoryview cannot take them, a small copy can.
        if not running_mean.flags.writeable:
            running_mean = running_mean.copy()
        if not running_var.flags.writeable:
            running_var = running_var.copy()
    if x.dtype.itemsize == 4:  # float32 (the checks allow only float32 and float64)
        _batchnorm_forward_core[float](
            x3, _contiguous(gamma), _contiguous(beta), running_mean, running_var,
            gamma is not None, beta is not None, has_running, momentum, eps, training,
            y, stats, coef, cols, relu)
    else:
        _batchnorm_forward_core[double](
            x3, _contiguous(gamma), _contiguous(beta), running_mean, running_var,
            gamma is not None, beta is not None, has_running, momentum, eps, training,
            y, stats, coef, cols, relu)
    return y.reshape(x.shape), stats[0], stats[1]


def batchnorm_backward(grad_out, x, gamma, mean, rstd, training=True, relu_out=None):
    """BatchNorm backward, closed form, with sums over the M values of each channel.

    dbeta = sum(dy), dgamma = sum(dy * x_hat) with x_hat = (x - mean) * rstd, and
    dx = gamma * rstd / M * (M * dy - dbeta - x_hat * dgamma) in training;
    dx = gamma * rstd * dy in eval, where mean and rstd were constants.

    With ``relu_out`` (the output of a ReLU applied to this BatchNorm's output, shaped like x),
    ``grad_out`` is the ReLU's output gradient and dy = relu_select(grad_out, relu_out), ReLU's
    own backward.

    Returns:
        (dx, dgamma, dbeta): dx like x; dgamma and dbeta (C,) arrays of x's dtype.
    """
    batchnorm_backward_args(grad_out, x, gamma, mean, rstd)
    shape3 = _batchnorm_shape3(x.shape)
    C = shape3[1]
    x3 = np.ascontiguousarray(x).reshape(shape3)
    dy3 = np.ascontiguousarray(grad_out).reshape(shape3)
    mask3 = dy3  # (not read unless relu_out is given)
    fuse = relu_out is not None and training and _columns_per_channel(shape3[0], C, shape3[2]) != 0
    if fuse:  # the column loops apply the ReLU's mask as they read dy
        same_as("batchnorm_backward", "relu_out", relu_out, x, x.shape, "the shape of x")
        mask3 = np.ascontiguousarray(relu_out).reshape(shape3)
    elif relu_out is not None:
        dy3 = _relu_masked("batchnorm_backward", dy3, x, relu_out)
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    rstd = np.ascontiguousarray(rstd, dtype=np.float64)
    dx = np.empty_like(x3)
    # one allocation for dgamma, dbeta (returned) and the write pass's coefficients (scratch)
    width = _coef_width(C, shape3[2])
    out = np.empty((7, width), x.dtype)
    # the two sums per channel, then (wide) each column's mean and its two sums
    S = shape3[2]
    sums = _column_scratch(5, C, S) if _sums_by_columns(shape3[0], C, S) else np.empty(
        (2, C), np.float64)
    if x.dtype.itemsize == 4:  # float32 (the checks allow only float32 and float64)
        _batchnorm_backward_core[float](dy3, mask3, fuse, x3, _contiguous(gamma),
                                        gamma is not None, mean, rstd, training, dx, out, sums)
    else:
        _batchnorm_backward_core[double](dy3, mask3, fuse, x3, _contiguous(gamma),
                                         gamma is not None, mean, rstd, training, dx, out, sums)
    if width > C:
        return dx.reshape(x.shape), out[0, :C], out[1, :C]
    return dx.reshape(x.shape), out[0], out[1]
