# One compiled module per kernel family: BatchNorm, LayerNorm and RMSNorm share the centring,
# the shifted sums and the write passes, beside their one twin, _norm_twin.py. The module is
# this file and the .pxi files it includes (BatchNorm's passes and wrappers, LayerNorm's cores
# and wrappers).
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

import numpy as np

cimport numpy as cnp
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

cnp.import_array()

# LayerNorm's backward sums dgamma and dbeta over samples in blocks of about this many elements,
# each block into its own float64 partial sums, added in block order at the end: the blocks
# depend on the shape only, so the result does not depend on how many threads ran them.
cdef enum:
    LAYERNORM_BLOCK_WORK = 65536
    LAYERNORM_MAX_BLOCKS = 16

# Below these many elements a kernel stays on one thread (threads_over, _parallel.pxi): the
# shared threshold, measured again for the sizes of the benchmarks. One process timing 1 and 2
# threads interleaved, 25-30 rounds of 20 calls, float32 forward + backward, 2-core Intel
# machine with other jobs running (load 1.3-3); time with 2 threads / time with 1, median
# (best round), default (spinning) waits, then OMP_WAIT_POLICY=PASSIVE:
# - LayerNorm (256, 512), 128K elements: 10.8 and 8.8 (0.72, 0.76); PASSIVE 2.4-3.0 (1.2-2.8).
#   (64, 512) and (128, 512): 1.15-370 (1.0-190); PASSIVE 1.2-5.3 (1.1-4.3).
# - BatchNorm (64, 16, 8, 8), 64K: 5.5 and 0.96 (0.92-0.95); PASSIVE 1.6-11 (1.5-8.8).
#   (64, 32, 4, 4): 0.82-0.85 (0.81-0.88); PASSIVE 2.0-17 (1.9-16).
# With the machine idle (load 0.9): LayerNorm (256, 512) 0.68 (0.67), (128, 512) 1.05, (64, 512)
# 1.38; BatchNorm (64, 16, 8, 8) 0.97, (64, 32, 4, 4) 0.84; PASSIVE 3.1-19 for all of them
# (waking a sleeping thread costs tens to hundreds of microseconds here).
# A second thread saves a third at best, on an idle machine with spinning waits, and costs
# several times as much whenever the other core is busy or the threads sleep, so both stay
# on one thread up to the common threshold.
cdef Py_ssize_t _min_work_batchnorm = PARALLEL_MIN_WORK
cdef Py_ssize_t _min_work_layernorm = PARALLEL_MIN_WORK


def parallel_min_work(**changes) -> dict:
    """The element counts from which ``batchnorm`` and ``layernorm`` (LayerNorm and RMSNorm)
    split their work over OpenMP threads, before ``changes`` (keyword arguments of those names,
    ints >= 0) replace them. For tests and measurements: the results are the same bits
    either way."""
    global _min_work_batchnorm, _min_work_layernorm
    before = {"batchnorm": _min_work_batchnorm, "layernorm": _min_work_layernorm}
    _check_min_work(changes, before)
    _min_work_batchnorm = changes.get("batchnorm", _min_work_batchnorm)
    _min_work_layernorm = changes.get("layernorm", _min_work_layernorm)
    return before


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
    const floating *x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, const floating *gamma,
    const floating *beta, floating *running_mean, floating *running_var, double momentum,
    double eps, bint training, floating *y, double *mean, double *rstd, floating *coef,
    Py_ssize_t W, double *cols, Py_ssize_t cw, bint relu,
) noexcept nogil:
    """Statistics pass (training) or running statistics (eval), then the write pass (and,
    with ``relu``, max(y, 0) over y while it is still in cache), over C-contiguous (N, C, S) x.

    gamma, beta, running_mean and running_var may be NULL (none). mean and rstd (C each)
    receive the statistics; coef (4 rows ``W`` apart, W = C, or C * S and more when wide) is
    scratch for the write pass and cols (3 rows ``cw`` apart) for the column sums of a
    statistics pass by columns.
    """
    cdef Py_ssize_t count = N * S, c
    cdef int nt = threads_over(N * C * S, _min_work_batchnorm)
    cdef double m, var, scale, shift
    if C == 0:  # nothing to compute
        return
    if training:
        # mean[] and rstd[] first hold the sums of x - x[0, c, 0] and of its squares
        _batchnorm_sums(x, N, C, S, mean, rstd, cols, cw, nt)
        for c in range(C):
            # (no values, which the public function refuses: 0/0 gives NaN statistics)
            shift = x[c * S] if count > 0 else 0.0
            if not isfinite(shift):
                # Every shifted term would be NaN; NumPy's mean of data holding inf is inf, so
                # sum this channel unshifted (inf/NaN data only: never on the fast path).
                shift = 0.0
                _plane_unshifted_sums(x, N, C, S, c, &mean[c], &rstd[c])
            m = mean[c] / count
            var = _nonnegative(rstd[c] / count - m * m)
            mean[c] = shift + m
            rstd[c] = 1.0 / sqrt(var + eps)
            if running_mean != NULL:
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
        scale = rstd[c] * gamma[c] if gamma != NULL else rstd[c]
        _split(mean[c], &coef[c], &coef[W + c])
        coef[2 * W + c] = <floating>scale
        coef[3 * W + c] = beta[c] if beta != NULL else 0.0
    if W > C:
        _spread_columns(coef, 4, W, C, S)
    _batchnorm_write(x, N, C, S, coef, W, y, nt, relu)


cdef void _batchnorm_backward_core(
    const floating *dy, const floating *mask, const floating *x, Py_ssize_t N, Py_ssize_t C,
    Py_ssize_t S, const floating *gamma, const double *mean, const double *rstd, bint training,
    floating *dx, floating *dgamma, floating *dbeta, floating *coef, Py_ssize_t W, double *sums,
    double *cols, Py_ssize_t cw,
) noexcept nogil:
    """Reduction pass for sum(dy) and sum(dy * (x - mean)), then the write pass, over
    C-contiguous (N, C, S) data.

    With a mask (not NULL: training, sums by columns only), dy is the gradient of a ReLU
    applied to this BatchNorm's output, and mask that ReLU's output: both passes read ReLU's
    backward of dy (relu_select's rule: +0.0 where mask <= 0).

    dgamma and dbeta (C each) receive the parameter gradients; coef (5 rows ``W`` apart, W = C
    or more when the write runs wide) is scratch for the write; sums (2 * C float64) the two
    sums per channel; cols (3 rows ``cw`` apart) the column scratch of sums by columns.
    """
    cdef Py_ssize_t count = N * S, c
    cdef int nt = threads_over(N * C * S, _min_work_batchnorm)
    cdef double a, r
    cdef double *sum_dy = sums
    cdef double *sum_dy_xc = sums + C
    if count == 0 or C == 0:  # no values: the sums are 0 and dx is empty
        for c in range(C):
            dgamma[c] = 0.0
            dbeta[c] = 0.0
        return
    if not training:
        # Eval: mean and rstd were constants, so dx = dy * gamma * rstd does not involve x at
        # all (a NaN in x must not leak into dx; the closed form below would give NaN * 0).
        # The forward's write pass y = (x - 0 - 0) * a + 0 computes exactly that.
        for c in range(C):
            coef[c] = 0.0
            coef[W + c] = 0.0
            coef[2 * W + c] = <floating>(rstd[c] * gamma[c] if gamma != NULL else rstd[c])
            coef[3 * W + c] = 0.0
        if W > C:
            _spread_columns(coef, 4, W, C, S)
        _batchnorm_write(dy, N, C, S, coef, W, dx, nt, False)
    _batchnorm_grad_sums(dy, mask, x, N, C, S, mean, sum_dy, sum_dy_xc, cols, cw, nt)
    for c in range(C):
        r = rstd[c]
        dgamma[c] = <floating>(sum_dy_xc[c] * r)  # dgamma = sum(dy * x_hat)
        dbeta[c] = <floating>sum_dy[c]  # dbeta = sum(dy)
    if not training:
        return
    for c in range(C):
        r = rstd[c]
        a = r * gamma[c] if gamma != NULL else r
        _split(mean[c], &coef[c], &coef[W + c])
        coef[2 * W + c] = <floating>a
        # dx = a * (dy - dbeta / M - x_hat * dgamma / M), x_hat = (x - mean) * r
        coef[3 * W + c] = <floating>(-a * r * r * sum_dy_xc[c] / count)
        coef[4 * W + c] = <floating>(-a * sum_dy[c] / count)
    if W > C:
        _spread_columns(coef, 5, W, C, S)
    _batchnorm_dx_write(dy, mask, x, N, C, S, coef, W, dx, nt)


cdef void _relu_in_place(object y):
    """y = max(y, 0) in place over a C-contiguous float ndarray (``_relu_rows``)."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>y)
    if cnp.PyArray_TYPE(<cnp.ndarray>y) == cnp.NPY_FLOAT:
        _relu_rows(<float *>_data(y), n)
    else:
        _relu_rows(<double *>_data(y), n)


def _relu_masked(fn, dy, x, relu_out):
    """ReLU's backward of dy given its output relu_out, as a new C-contiguous array shaped like
    dy, after checking that relu_out matches x: the ReLU kernel's own backward (relu_select's
    rule), so the fused path is the unfused one's second step, not a copy of it."""
    same_as(fn, "relu_out", relu_out, x, x.shape, "the shape of x")
    return relu_backward(dy, np.reshape(relu_out, dy.shape))


# LayerNorm's and RMSNorm's cores and wrappers
include "_norm_layer.pxi"
include "_norm_layer_api.pxi"

# BatchNorm's wrappers
include "_norm_batch_api.pxi"
