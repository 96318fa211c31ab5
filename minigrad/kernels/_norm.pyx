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
    _column_grad_sums,
    _column_shifted_sums,
    _dx_write,
    _dx_write_rows,
    _grad_sums,
    _layernorm_dx_row,
    _layernorm_grad_sums,
    _layernorm_row,
    _row_moments,
    _scale_shift,
    _scale_shift_rows,
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


# ------------------------------------------------------------------ BatchNorm passes


cdef inline Py_ssize_t _chunk(Py_ssize_t total, int parts) noexcept nogil:
    """Size of each of ``parts`` near-equal pieces of ``total``, rounded up to 16 (cache lines)."""
    cdef Py_ssize_t size = (total + parts - 1) // parts
    return (size + 15) // 16 * 16


# BatchNorm of (N, C, S) data whose planes are short runs "wide" when the C * S values of one
# sample are at most this many: each sample is then one row of C * S columns, so the inner loops
# run over C * S values instead of S, with per-column coefficients (each channel's repeated S
# times) and per-column float64 sums added per channel at the end. Short planes otherwise cost
# a call, a loop set-up and a fold of the float64 lanes per S values (measured: (64, 32, 4, 4)
# float32 took longer than (64, 16, 8, 8), twice its data). The column sums stay in L2.
cdef enum:
    BATCHNORM_WIDE_MAX = 16384
    BATCHNORM_WIDE_SUMS_S = 256
    BATCHNORM_WIDE_WRITE_S = 32
    COLUMN_PAD = 16


cdef inline Py_ssize_t _columns_per_channel(Py_ssize_t N, Py_ssize_t C,
                                            Py_ssize_t S) noexcept nogil:
    """S when BatchNorm's sums run wide (one column per value of a sample, see above), else 0.

    Wide, each column costs a few float64 passes besides its N values (zeroing, the shift or
    mean, the fold into its channel); a plane costs a call and a fold of lanes besides its S
    values. Measured (float32, one thread), the columns pay from about N >= S / 4 and for
    planes shorter than 256: (64, 16, 8, 8) 1.4x and (128, 32, 14, 14) 1.3x faster wide,
    (64, 8, 16, 16) a tie, (8, 128, 8, 8) and (256, 64, 16, 16) about 10% slower.
    """
    return S if S == 1 or (C * S <= BATCHNORM_WIDE_MAX and S <= 4 * N
                           and S < BATCHNORM_WIDE_SUMS_S) else 0


cdef inline Py_ssize_t _write_columns(Py_ssize_t C, Py_ssize_t S) noexcept nogil:
    """S when BatchNorm's write passes run wide, else 0. Wide, every value loads its own
    coefficients (4 or 5 more loads each): that pays only where planes are shorter than
    BATCHNORM_WIDE_WRITE_S, otherwise a plane at a time with per-channel constants is faster."""
    return S if S == 1 or (S < BATCHNORM_WIDE_WRITE_S and C * S <= BATCHNORM_WIDE_MAX) else 0


cdef void _channels_from_columns(const floating[:, :, ::1] x, Py_ssize_t c0, Py_ssize_t c1,
                                 const double *col1, const double *col2, double *sum1,
                                 double *sum2) noexcept nogil:
    """Per channel c0..c1: the sums of x - x[0, c, 0] and of its squares, from the sums col1 and
    col2 of each column (c, s) shifted by its own first value x[0, c, s].

    With k = x[0, c, 0], d = x[0, c, s] - k and N rows, shifting a column's sums from its first
    value to k gives sum (x - k) = col1 + N d and sum (x - k)^2 = col2 + d (2 col1 + N d), all
    terms of the size of the column's spread (no cancellation). A channel whose first row holds
    inf or NaN is summed row by row with the shift k instead, as in the per-plane path.
    """
    cdef Py_ssize_t N = x.shape[0], S = x.shape[2], c, s, j
    cdef double k, d, a, b
    for c in range(c0, c1):
        k = x[0, c, 0]
        a = 0.0
        b = 0.0
        for s in range(S):
            j = c * S + s
            d = <double>x[0, c, s] - k
            if not isfinite(d):
                break
            a += col1[j] + N * d
            b += col2[j] + d * (2.0 * col1[j] + N * d)
        else:
            sum1[c] = a
            sum2[c] = b
            continue
        _plane_shifted_sums(x, c, c + 1, sum1, sum2)


cdef void _plane_shifted_sums(const floating[:, :, ::1] x, Py_ssize_t c0, Py_ssize_t c1,
                              double *sum1, double *sum2) noexcept nogil:
    """Per channel c0..c1 of (N, C, S) x: sums of x - x[0, c, 0] and its squares.

    Walks n outside and channels inside, so the planes are read in memory order.
    """
    cdef Py_ssize_t n, c, S = x.shape[2]
    for c in range(c0, c1):
        sum1[c] = 0.0
        sum2[c] = 0.0
    for n in range(x.shape[0]):
        for c in range(c0, c1):
            _row_moments(&x[n, c, 0], S, x[0, c, 0], &sum1[c], &sum2[c])


cdef void _plane_grad_sums(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                           Py_ssize_t c0, Py_ssize_t c1, const double *mean, double *sum_dy,
                           double *sum_dy_xc) noexcept nogil:
    """Per channel c0..c1 of (N, C, S) data: sum of dy and of dy * (x - mean[c])."""
    cdef Py_ssize_t n, c, S = x.shape[2]
    cdef double s1, s2
    for c in range(c0, c1):
        sum_dy[c] = 0.0
        sum_dy_xc[c] = 0.0
    for n in range(x.shape[0]):
        for c in range(c0, c1):
            _grad_sums(&dy[n, c, 0], &x[n, c, 0], S, mean[c], &s1, &s2)
            sum_dy[c] += s1
            sum_dy_xc[c] += s2


cdef void _plane_unshifted_sums(const floating[:, :, ::1] x, Py_ssize_t c, double *sum1,
                                double *sum2) noexcept nogil:
    """Sums of x and x^2 over channel c of (N, C, S) x (used when x[0, c, 0] is inf or NaN)."""
    cdef Py_ssize_t n
    sum1[0] = 0.0
    sum2[0] = 0.0
    for n in range(x.shape[0]):
        _row_moments(&x[n, c, 0], x.shape[2], 0.0, sum1, sum2)


cdef inline double _nonnegative(double var) noexcept nogil:
    """Clamp the rounding error of a one-pass variance at 0, but let NaN through (NumPy's
    variance of data holding NaN or inf is NaN; max(NaN, 0.0) would silently give 0)."""
    return 0.0 if var < 0.0 else var


cdef void _channel_sums(const floating[:, :, ::1] x, Py_ssize_t c0, Py_ssize_t c1,
                        double *sum1, double *sum2, double[:, ::1] cols) noexcept nogil:
    """Shifted sums of channels c0..c1 of (N, C, S) x, by columns when S == 1 or wide."""
    cdef Py_ssize_t C = x.shape[1], S = x.shape[2]
    if S == 1:
        _column_shifted_sums(&x[0, 0, 0], x.shape[0], C, c0, c1, sum1, sum2)
    elif _columns_per_channel(x.shape[0], C, S):
        _column_shifted_sums(&x[0, 0, 0], x.shape[0], C * S, c0 * S, c1 * S, &cols[0, 0],
                             &cols[1, 0])
        _channels_from_columns(x, c0, c1, &cols[0, 0], &cols[1, 0], sum1, sum2)
    else:
        _plane_shifted_sums(x, c0, c1, sum1, sum2)


cdef void _batchnorm_sums(const floating[:, :, ::1] x, double *sum1, double *sum2,
                          double[:, ::1] cols, int nt) noexcept nogil:
    """Shifted sums per channel of (N, C, S) x, threads splitting the channels.

    cols (2, C * S) is scratch for the column sums when the channels run wide with S > 1.
    """
    cdef Py_ssize_t C = x.shape[1], chunk, t
    if x.shape[0] * x.shape[2] == 0:  # no values: nothing to read, the sums are 0
        for t in range(C):
            sum1[t] = 0.0
            sum2[t] = 0.0
        return
    if nt == 1:
        _channel_sums(x, 0, C, sum1, sum2, cols)
        return
    chunk = _chunk(C, nt)
    for t in prange(nt, num_threads=nt, schedule="static"):
        _channel_sums(x, min(t * chunk, C), min(t * chunk + chunk, C), sum1, sum2, cols)


cdef void _channel_grad_sums(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                             Py_ssize_t c0, Py_ssize_t c1, const double *mean, double *sum_dy,
                             double *sum_dy_xc, double[:, ::1] cols) noexcept nogil:
    """sum(dy) and sum(dy * (x - mean)) of channels c0..c1, by columns when S == 1 or wide.

    Wide with S > 1, cols (3, C * S) holds each column's mean (row 0) and its two sums, which
    are then added per channel in column order.
    """
    cdef Py_ssize_t C = x.shape[1], S = x.shape[2], c, j
    cdef double a, b
    if S == 1:
        _column_grad_sums(&dy[0, 0, 0], &x[0, 0, 0], x.shape[0], C, c0, c1, mean, sum_dy,
                          sum_dy_xc)
    elif _columns_per_channel(x.shape[0], C, S):
        for j in range(c0 * S, c1 * S):
            cols[0, j] = mean[j // S]
        _column_grad_sums(&dy[0, 0, 0], &x[0, 0, 0], x.shape[0], C * S, c0 * S, c1 * S,
                          &cols[0, 0], &cols[1, 0], &cols[2, 0])
        for c in range(c0, c1):
            a = 0.0
            b = 0.0
            for j in range(c * S, c * S + S):
                a += cols[1, j]
                b += cols[2, j]
            sum_dy[c] = a
            sum_dy_xc[c] = b
    else:
        _plane_grad_sums(dy, x, c0, c1, mean, sum_dy, sum_dy_xc)


cdef void _batchnorm_grad_sums(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                               const double *mean, double *sum_dy, double *sum_dy_xc,
                               double[:, ::1] cols, int nt) noexcept nogil:
    """sum(dy) and sum(dy * (x - mean)) per channel, threads splitting the channels."""
    cdef Py_ssize_t C = x.shape[1], chunk, t
    if nt == 1:
        _channel_grad_sums(dy, x, 0, C, mean, sum_dy, sum_dy_xc, cols)
        return
    chunk = _chunk(C, nt)
    for t in prange(nt, num_threads=nt, schedule="static"):
        _channel_grad_sums(dy, x, min(t * chunk, C), min(t * chunk + chunk, C), mean, sum_dy,
                           sum_dy_xc, cols)


cdef void _batchnorm_write(const floating[:, :, ::1] x, const floating[:, ::1] coef,
                           floating[:, :, ::1] y, int nt) noexcept nogil:
    """y = (x - mean[c]) * scale[c] + shift[c] per channel c; coef rows: mean_hi, mean_lo,
    scale, shift, per column of a sample (C * S of them) when wide, else per channel."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], chunk, t, p, c
    if _write_columns(C, S):
        if nt == 1:
            _scale_shift_rows(&x[0, 0, 0], 0, N, C * S, &coef[0, 0], &coef[1, 0], &coef[2, 0],
                              &coef[3, 0], &y[0, 0, 0])
            return
        chunk = (N + nt - 1) // nt
        for t in prange(nt, num_threads=nt, schedule="static"):
            _scale_shift_rows(&x[0, 0, 0], min(t * chunk, N), min(t * chunk + chunk, N), C * S,
                              &coef[0, 0], &coef[1, 0], &coef[2, 0], &coef[3, 0], &y[0, 0, 0])
        return
    # one contiguous plane (n, c) at a time; plane p = n * C + c
    if nt == 1:  # no division per plane (p % C costs as much as a short plane's writes)
        for p in range(N):
            for c in range(C):
                _scale_shift(&x[p, c, 0], S, coef[0, c], coef[1, c], coef[2, c], coef[3, c],
                             &y[p, c, 0])
        return
    for p in prange(N * C, num_threads=nt, schedule="static"):
        c = p % C
        _scale_shift(&x[0, 0, 0] + p * S, S, coef[0, c], coef[1, c], coef[2, c], coef[3, c],
                     &y[0, 0, 0] + p * S)


cdef void _batchnorm_dx_write(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                              const floating[:, ::1] coef, floating[:, :, ::1] dx,
                              int nt) noexcept nogil:
    """dx = dy * a[c] + (x - mean[c]) * b[c] + d[c] per channel c; coef rows: mean_hi, mean_lo,
    a, b, d, per column of a sample when wide, else per channel."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], chunk, t, p, c
    if _write_columns(C, S):
        if nt == 1:
            _dx_write_rows(&dy[0, 0, 0], &x[0, 0, 0], 0, N, C * S, &coef[0, 0], &coef[1, 0],
                           &coef[2, 0], &coef[3, 0], &coef[4, 0], &dx[0, 0, 0])
            return
        chunk = (N + nt - 1) // nt
        for t in prange(nt, num_threads=nt, schedule="static"):
            _dx_write_rows(&dy[0, 0, 0], &x[0, 0, 0], min(t * chunk, N),
                           min(t * chunk + chunk, N), C * S, &coef[0, 0], &coef[1, 0],
                           &coef[2, 0], &coef[3, 0], &coef[4, 0], &dx[0, 0, 0])
        return
    if nt == 1:
        for p in range(N):
            for c in range(C):
                _dx_write(&dy[p, c, 0], &x[p, c, 0], S, coef[0, c], coef[1, c], coef[2, c],
                          coef[3, c], coef[4, c], &dx[p, c, 0])
        return
    for p in prange(N * C, num_threads=nt, schedule="static"):
        c = p % C
        _dx_write(&dy[0, 0, 0] + p * S, &x[0, 0, 0] + p * S, S, coef[0, c], coef[1, c],
                  coef[2, c], coef[3, c], coef[4, c], &dx[0, 0, 0] + p * S)


cdef void _spread_columns(floating[:, ::1] coef, Py_ssize_t C, Py_ssize_t S) noexcept nogil:
    """Per-channel coefficients coef[k, c] (c < C) to per-column ones coef[k, c * S + s], in
    place: channels last to first, so no value is overwritten before it is read (c * S >= c)."""
    cdef Py_ssize_t k, c, s
    cdef floating v
    for k in range(coef.shape[0]):
        for c in range(C - 1, -1, -1):
            v = coef[k, c]
            for s in range(S):
                coef[k, c * S + s] = v


cdef void _relu_rows(floating *y, Py_ssize_t n) noexcept nogil:
    """y = max(y, 0) in place, as NumPy's ``np.maximum(y, 0)`` computes it: NaN stays NaN and
    -0.0 becomes +0.0 (NumPy returns its second operand when the two compare equal)."""
    cdef Py_ssize_t i
    cdef floating v
    for i in range(n):
        v = y[i]
        y[i] = v if (v > 0 or v != v) else 0


cdef void _relu_grad(const floating[:, :, ::1] dy, const floating[:, :, ::1] y,
                     floating[:, :, ::1] out) noexcept nogil:
    """out = dy * (y > 0): the very product of ReLU's backward ``grad * (y > 0)`` (the bool
    becomes 1.0 or 0.0 and multiplies, so NaN * 0 stays NaN and -dy * 0 gives -0.0)."""
    cdef Py_ssize_t i, n = dy.shape[0] * dy.shape[1] * dy.shape[2]
    cdef const floating *d
    cdef const floating *m
    cdef floating *o
    if n == 0:
        return
    d = &dy[0, 0, 0]
    m = &y[0, 0, 0]
    o = &out[0, 0, 0]
    for i in range(n):
        o[i] = d[i] * (<floating>1 if m[i] > 0 else <floating>0)


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
    for the write pass and cols (2, C * S) for the column sums of a wide statistics pass.
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
    _batchnorm_write(x, coef, y, nt)
    if relu:
        _relu_rows(&y[0, 0, 0], x.shape[0] * C * x.shape[2])


cdef void _batchnorm_backward_core(
    const floating[:, :, ::1] dy, const floating[:, :, ::1] x, const floating[::1] gamma,
    bint has_gamma, const double[::1] mean, const double[::1] rstd, bint training,
    floating[:, :, ::1] dx, floating[:, ::1] out, double[:, ::1] sums,
) noexcept nogil:
    """Reduction pass for sum(dy) and sum(dy * (x - mean)), then the write pass.

    out (7, W) receives dgamma (row 0) and dbeta (row 1) in its first C columns; rows 2-6 are
    scratch for the write, W = C * S columns when the write runs wide, else C. sums float64:
    the two sums per channel (rows 0-1), then, when the sums run wide with S > 1, three rows of
    column scratch (``_column_scratch``).
    """
    cdef Py_ssize_t C = x.shape[1], count = x.shape[0] * x.shape[2], c
    cdef Py_ssize_t wide = _write_columns(C, x.shape[2])
    cdef int nt = threads_for(x.shape[0] * C * x.shape[2])
    cdef double a, r
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
        _batchnorm_write(dy, out[2:6], dx, nt)
    _batchnorm_grad_sums(dy, x, &mean[0], &sums[0, 0], &sums[1, 0], sums[2:5], nt)
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
    _batchnorm_dx_write(dy, x, out[2:7], dx, nt)


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
    """dy * (relu_out > 0) as a new C-contiguous array shaped like dy (``_relu_grad``), after
    checking that relu_out matches x."""
    same_as(fn, "relu_out", relu_out, x, x.shape, "the shape of x")
    masked = np.empty(dy.shape, dy.dtype)
    flat = (1, masked.size, 1)
    if x.dtype.itemsize == 4:
        _relu_grad[float](np.ascontiguousarray(dy).reshape(flat),
                          np.ascontiguousarray(relu_out).reshape(flat), masked.reshape(flat))
    else:
        _relu_grad[double](np.ascontiguousarray(dy).reshape(flat),
                           np.ascontiguousarray(relu_out).reshape(flat), masked.reshape(flat))
    return masked


# ------------------------------------------------------------------ LayerNorm cores


cdef void _layernorm_forward_rows(const floating[:, ::1] x, const floating[::1] gamma,
                                  const floating[::1] beta, bint affine, bint centred,
                                  double eps, Py_ssize_t r0, Py_ssize_t r1, floating[:, ::1] y,
                                  double[::1] mean, double[::1] rstd) noexcept nogil:
    """Samples r0..r1: statistics of the row, then y = (x - mean) * rstd * gamma + beta.

    Not centred (RMSNorm): mean = 0 and rstd = 1 / sqrt(mean(x^2) + eps).
    """
    cdef Py_ssize_t D = x.shape[1], r
    cdef double s1, s2, m, rs, shift
    cdef floating mean_hi, mean_lo, rsf
    cdef const floating *xr
    cdef floating *yr
    for r in range(r0, r1):
        xr = &x[r, 0]
        yr = &y[r, 0]
        # shift by the first value (exact variance when |mean| >> std), unless it is inf or
        # NaN: then every shifted term is NaN, where NumPy's mean of data holding inf is inf
        shift = xr[0] if centred and isfinite(xr[0]) else 0.0
        s1 = 0.0
        s2 = 0.0
        _row_moments(xr, D, shift, &s1, &s2)
        if centred:
            m = s1 / D
            rs = 1.0 / sqrt(_nonnegative(s2 / D - m * m) + eps)
            m = shift + m
        else:
            m = 0.0
            rs = 1.0 / sqrt(s2 / D + eps)
        mean[r] = m
        rstd[r] = rs
        _split(m, &mean_hi, &mean_lo)
        rsf = <floating>rs
        if affine:
            _layernorm_row(xr, D, mean_hi, mean_lo, rsf, &gamma[0], &beta[0], yr)
        else:
            _scale_shift(xr, D, mean_hi, mean_lo, rsf, 0.0, yr)


cdef void _layernorm_forward_core(const floating[:, ::1] x, const floating[::1] gamma,
                                  const floating[::1] beta, bint affine, bint centred,
                                  double eps, floating[:, ::1] y, double[::1] mean,
                                  double[::1] rstd) noexcept nogil:
    """Each sample (row) is independent: threads split the rows."""
    cdef Py_ssize_t R = x.shape[0], chunk, t
    cdef int nt = threads_for(R * x.shape[1])
    if nt == 1:
        _layernorm_forward_rows(x, gamma, beta, affine, centred, eps, 0, R, y, mean, rstd)
        return
    chunk = (R + nt - 1) // nt
    for t in prange(nt, num_threads=nt, schedule="static"):
        _layernorm_forward_rows(x, gamma, beta, affine, centred, eps, min(t * chunk, R),
                                min(t * chunk + chunk, R), y, mean, rstd)


cdef void _layernorm_backward_block(
    const floating[:, ::1] dy, const floating[:, ::1] x, const floating[::1] gamma,
    const double[::1] mean, const double[::1] rstd, bint centred, Py_ssize_t r0, Py_ssize_t r1,
    floating[:, ::1] dx, double *dgamma, double *dbeta,
) noexcept nogil:
    """Samples r0..r1: the two row sums, then dx = dy * gamma * rstd + (x - mean) * p + q.

    dgamma and dbeta (float64, D each) receive this block's sums of dy * x_hat and dy. Not
    centred (RMSNorm, mean 0): q = 0, since the mean did not depend on x.
    """
    cdef Py_ssize_t D = x.shape[1], r, i
    cdef double sum_g, sum_g_xhat, rs
    cdef floating p, q, rsf, mean_hi, mean_lo
    cdef const floating *dyr
    cdef const floating *xr
    cdef floating *dxr
    for i in range(D):
        dgamma[i] = 0.0
        dbeta[i] = 0.0
    for r in range(r0, r1):
        dyr = &dy[r, 0]
        xr = &x[r, 0]
        dxr = &dx[r, 0]
        rs = rstd[r]
        _layernorm_grad_sums(dyr, xr, &gamma[0], D, mean[r], rs, dgamma, dbeta, &sum_g,
                             &sum_g_xhat)
        # dx = rstd * g - rstd * sum_g / D - x_hat * rstd * sum_g_xhat / D, x_hat = (x - mean) rstd
        rsf = <floating>rs
        p = <floating>(-rs * rs * sum_g_xhat / D)
        q = <floating>(-rs * sum_g / D) if centred else 0
        _split(mean[r], &mean_hi, &mean_lo)
        _layernorm_dx_row(dyr, xr, &gamma[0], D, mean_hi, mean_lo, rsf, p, q, dxr)


cdef void _layernorm_backward_core(
    const floating[:, ::1] dy, const floating[:, ::1] x, const floating[::1] gamma,
    const double[::1] mean, const double[::1] rstd, bint centred, floating[:, ::1] dx,
    floating[:, ::1] out, double[:, :, ::1] partial,
) noexcept nogil:
    """Fixed blocks of samples, each with its own partial dgamma/dbeta; blocks added in order.

    out receives dgamma (row 0) and dbeta (row 1).
    """
    cdef Py_ssize_t R = x.shape[0], D = x.shape[1], blocks = partial.shape[0]
    cdef Py_ssize_t per_block = (R + blocks - 1) // blocks, b, i
    cdef int nt = threads_for(R * D)
    cdef double sg, sb
    if R == 0:
        for i in range(D):
            out[0, i] = 0.0
            out[1, i] = 0.0
        return
    if nt == 1 or blocks == 1:
        for b in range(blocks):
            _layernorm_backward_block(dy, x, gamma, mean, rstd, centred, min(b * per_block, R),
                                      min(b * per_block + per_block, R), dx,
                                      &partial[b, 0, 0], &partial[b, 1, 0])
    else:
        for b in prange(blocks, num_threads=nt, schedule="static"):
            _layernorm_backward_block(dy, x, gamma, mean, rstd, centred, min(b * per_block, R),
                                      min(b * per_block + per_block, R), dx,
                                      &partial[b, 0, 0], &partial[b, 1, 0])
    for i in range(D):
        sg = 0.0
        sb = 0.0
        for b in range(blocks):
            sg += partial[b, 0, i]
            sb += partial[b, 1, i]
        out[0, i] = <floating>sg
        out[1, i] = <floating>sb


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
    # scratch for the column sums of a wide statistics pass (not read otherwise)
    cols = _column_scratch(2, C, S) if training and _sums_by_columns(x3.shape[0], C, S) else None
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
    ``grad_out`` is the ReLU's output gradient and dy = grad_out * (relu_out > 0), the very
    product of ReLU's backward.

    Returns:
        (dx, dgamma, dbeta): dx like x; dgamma and dbeta (C,) arrays of x's dtype.
    """
    batchnorm_backward_args(grad_out, x, gamma, mean, rstd)
    shape3 = _batchnorm_shape3(x.shape)
    C = shape3[1]
    x3 = np.ascontiguousarray(x).reshape(shape3)
    dy3 = np.ascontiguousarray(grad_out).reshape(shape3)
    if relu_out is not None:
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
        _batchnorm_backward_core[float](dy3, x3, _contiguous(gamma), gamma is not None, mean,
                                        rstd, training, dx, out, sums)
    else:
        _batchnorm_backward_core[double](dy3, x3, _contiguous(gamma), gamma is not None, mean,
                                         rstd, training, dx, out, sums)
    if width > C:
        return dx.reshape(x.shape), out[0, :C], out[1, :C]
    return dx.reshape(x.shape), out[0], out[1]


def layernorm_forward(x, gamma, beta, eps, normalized_ndim, relu=False):
    """LayerNorm forward: y = gamma * (x - mean) / sqrt(var + eps) + beta, per sample.

    mean and the biased var are taken over the trailing ``normalized_ndim`` axes of x; gamma and
    beta have the shape of those axes (or are None, meaning 1 and 0). With ``relu``, y is then
    replaced by max(y, 0), bit for bit ``np.maximum(y, 0)`` (a LayerNorm followed by a ReLU).

    Returns:
        (y, mean, rstd): y like x; mean and rstd float64 with shape x.shape[:-normalized_ndim].
    """
    layernorm_forward_args(x, gamma, beta, normalized_ndim)
    lead_shape = x.shape[: x.ndim - normalized_ndim]
    D = math.prod(x.shape[x.ndim - normalized_ndim:])
    x2 = np.ascontiguousarray(x).reshape(-1, D)
    y = np.empty_like(x2)
    mean = np.empty(x2.shape[0], np.float64)
    rstd = np.empty(x2.shape[0], np.float64)
    affine = gamma is not None or beta is not None
    if affine:
        gamma = np.ones(D, x.dtype) if gamma is None else np.ascontiguousarray(gamma).reshape(D)
        beta = np.zeros(D, x.dtype) if beta is None else np.ascontiguousarray(beta).reshape(D)
    if x.dtype.itemsize == 4:  # float32 (the checks allow only float32 and float64)
        _layernorm_forward_core[float](x2, gamma, beta, affine, True, eps, y, mean, rstd)
    else:
        _layernorm_forward_core[double](x2, gamma, beta, affine, True, eps, y, mean, rstd)
    if relu:
        _relu_in_place(y)
    return y.reshape(x.shape), mean.reshape(lead_shape), rstd.reshape(lead_shape)


def layernorm_backward(grad_out, x, gamma, mean, rstd, relu_out=None):
    """LayerNorm backward, closed form, with sums over the D normalized values of each sample.

    With g = dy * gamma and x_hat = (x - mean) * rstd:
    dx = rstd / D * (D * g - sum(g) - x_hat * sum(g * x_hat)),
    dgamma = sum over samples of dy * x_hat, dbeta = sum over samples of dy.
    The normalized axes are the trailing x.ndim - mean.ndim ones. With ``relu_out`` (a ReLU's
    output over this LayerNorm's output), dy = grad_out * (relu_out > 0), ReLU's backward.

    Returns:
        (dx, dgamma, dbeta): dx like x; dgamma and dbeta with the normalized shape, x's dtype.
    """
    layernorm_backward_args(grad_out, x, gamma, mean, rstd)
    normalized_shape = x.shape[mean.ndim:]
    D = math.prod(normalized_shape)
    x2 = np.ascontiguousarray(x).reshape(-1, D)
    if relu_out is not None:
        grad_out = _relu_masked("layernorm_backward", grad_out, x, relu_out)
    dy2 = np.ascontiguousarray(grad_out).reshape(-1, D)
    R = x2.shape[0]
    mean = np.ascontiguousarray(mean, dtype=np.float64).reshape(R)
    rstd = np.ascontiguousarray(rstd, dtype=np.float64).reshape(R)
    gamma = np.ones(D, x.dtype) if gamma is None else np.ascontiguousarray(gamma).reshape(D)
    blocks = max(1, min(R, LAYERNORM_MAX_BLOCKS, R * D // LAYERNORM_BLOCK_WORK))
    partial = np.empty((blocks, 2, D), np.float64)
    dx = np.empty_like(x2)
    out = np.empty((2, D), x.dtype)  # dgamma, dbeta
    if x.dtype.itemsize == 4:  # float32 (the checks allow only float32 and float64)
        _layernorm_backward_core[float](dy2, x2, gamma, mean, rstd, True, dx, out, partial)
    else:
        _layernorm_backward_core[double](dy2, x2, gamma, mean, rstd, True, dx, out, partial)
    return (dx.reshape(x.shape), out[0].reshape(normalized_shape),
            out[1].reshape(normalized_shape))


def rmsnorm_forward(x, weight, eps, normalized_ndim):
    """RMSNorm forward: y = x * rstd * weight per sample, rstd = 1 / sqrt(mean(x^2) + eps) over
    the trailing ``normalized_ndim`` axes (LayerNorm without centring and without beta).

    Returns:
        (y, rstd): y like x; rstd float64 with shape x.shape[:-normalized_ndim].
    """
    rmsnorm_forward_args(x, weight, normalized_ndim)
    lead_shape = x.shape[: x.ndim - normalized_ndim]
    D = math.prod(x.shape[x.ndim - normalized_ndim:])
    x2 = np.ascontiguousarray(x).reshape(-1, D)
    y = np.empty_like(x2)
    mean = np.empty(x2.shape[0], np.float64)  # written as zeros by the uncentred core
    rstd = np.empty(x2.shape[0], np.float64)
    affine = weight is not None
    beta = None
    if affine:
        weight = np.ascontiguousarray(weight).reshape(D)
        beta = np.zeros(D, x.dtype)
    if x.dtype.itemsize == 4:  # float32 (the checks allow only float32 and float64)
        _layernorm_forward_core[float](x2, weight, beta, affine, False, eps, y, mean, rstd)
    else:
        _layernorm_forward_core[double](x2, weight, beta, affine, False, eps, y, mean, rstd)
    return y.reshape(x.shape), rstd.reshape(lead_shape)


def rmsnorm_backward(grad_out, x, weight, rstd):
    """RMSNorm backward, with g = dy * weight and x_hat = x * rstd over the D values of a sample:
    dx = rstd * (g - x_hat * sum(g * x_hat) / D), dweight = sum over samples of dy * x_hat.
    The normalized axes are the trailing x.ndim - rstd.ndim ones.

    Returns:
        (dx, dweight): dx like x; dweight with the normalized shape, x's dtype.
    """
    rmsnorm_backward_args(grad_out, x, weight, rstd)
    normalized_shape = x.shape[rstd.ndim:]
    D = math.prod(normalized_shape)
    x2 = np.ascontiguousarray(x).reshape(-1, D)
    dy2 = np.ascontiguousarray(grad_out).reshape(-1, D)
    R = x2.shape[0]
    rstd = np.ascontiguousarray(rstd, dtype=np.float64).reshape(R)
    mean = np.zeros(R, np.float64)
    weight = np.ones(D, x.dtype) if weight is None else np.ascontiguousarray(weight).reshape(D)
    blocks = max(1, min(R, LAYERNORM_MAX_BLOCKS, R * D // LAYERNORM_BLOCK_WORK))
    partial = np.empty((blocks, 2, D), np.float64)
    dx = np.empty_like(x2)
    out = np.empty((2, D), x.dtype)  # dweight, and sum(dy) which RMSNorm does not use
    if x.dtype.itemsize == 4:  # float32 (the checks allow only float32 and float64)
        _layernorm_backward_core[float](dy2, x2, weight, mean, rstd, False, dx, out, partial)
    else:
        _layernorm_backward_core[double](dy2, x2, weight, mean, rstd, False, dx, out, partial)
    return dx.reshape(x.shape), out[0].reshape(normalized_shape)
