"""Compiled reductions: sum, mean, var (with mean), max/min (with index) and logsumexp.

Every reduction is first brought to one canonical problem, a C-contiguous 4-D array
(O, A, K, R) reduced over A and R into an (O, K) output: O gathers the kept axes in front of
the first reduced one, A and R the reduced runs, K the kept run between them. That covers a
row reduction (A = K = 1), axis 0 of a matrix (R = 1: rows outside, features inside) and NCHW
over (0, 2, 3) (O = 1) with one loop nest. Layouts that do not fit (a transposed input whose
memory order is not a permutation we can use, or reduced axes interleaved twice) are copied
once into a fitting order. The common call, one int axis of a C-contiguous array small enough
for one thread, skips that form (_reduce_axis.pxi) and gives the same bits. Inner loops live in
_simd.h (the float32 sums and max/min in _simd_reduce.h); here is the orchestration.

The NumPy twins, with the same signatures and passes, are in ``_reduce_twin.py``.
"""

include "_parallel.pxi"

import numpy as np

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite, log
from libc.stdint cimport int64_t

from minigrad.kernels._simd cimport (
    _col_extreme,
    _col_moments,
    _col_sum,
    _col_sumexp,
    _imin,
    _row_extreme,
    _row_max,
    _row_moments,
    _row_sum,
    _row_sumexp,
    mg_row_extreme_fast_f,
    mg_row_sum_fast_f,
    mg_rows_sum_fast_f,
)

from minigrad.kernels._checks import float_array, keepdims_flag, reduced_axes

cdef extern from "_simd.h" nogil:
    # _simd_reduce.h: the bits of mg_row_moments_f, faster on AVX-512 builds; two sweeps of
    # mg_col_sum_fast_f (four rows each) in one
    void mg_row_moments_fast_f(const float *x, Py_ssize_t n, double c, double *s1, double *s2)
    void mg_col_sum8_fast_f(const float *x, Py_ssize_t stride, int rows, double *acc,
                            Py_ssize_t n)

cnp.import_array()

cdef enum:
    COLUMN_BLOCK = 512  # features per block of float64 accumulators on the stack (4 KiB)
    ROW_BLOCK = 64  # rows per task when threads share a row reduction

# Below these many elements each reduction stays on one thread (threads_over, _parallel.pxi).
# Measured with the one-thread kernels of this file on the 2-core Zen 4 machine while other
# jobs ran (load 2.5-5): float32, one process timing 1 and 2 threads interleaved, 25 rounds,
# two runs; time with 2 threads / time with 1, median (minimum), OMP_WAIT_POLICY=PASSIVE:
# - sum of contiguous rows (n, 1024): 1M 1.29-7.7 (1.35-3.1), 2M 0.98-4.8 (1.0-2.5),
#   4M 0.57-2.1 (0.46-0.59), 8M 0.35-0.57, 16M 0.42-0.58: 8M. With the default (spinning) wait
#   policy two threads stalled for milliseconds at most sizes (medians 5-800x), their best
#   rounds paying from 1M (0.55): the threshold stays with the policy a shared machine needs.
# - sum along axis 0 of (n, 1024) and over (0, 2, 3) of (n, 64, 16, 16): slower at every size
#   up to 16M (1.4-2.3x); max/min along either axis: slower up to 8M (1.1-8x), 16M 0.60-1.03
#   for rows: 32M, twice the largest size measured.
# - var and logsumexp (rows, axis 0, NCHW): slower at every size up to 4M (by the minimum
#   1.5x at 128K, 1.02-1.3x from 1M on), where on an idle machine a second thread paid from
#   256K (_parallel.pxi): 1M, the size from which the cost of a busy machine stays small.
cdef Py_ssize_t _min_work_sum_rows = 8388608  # sum/mean of contiguous rows
cdef Py_ssize_t _min_work_sum = 33554432  # sum/mean of every other layout
cdef Py_ssize_t _min_work_extreme = 33554432  # max/min
cdef Py_ssize_t _min_work_var = 1048576
cdef Py_ssize_t _min_work_logsumexp = 1048576


def parallel_min_work(**changes) -> dict:
    """The element counts from which each reduction (``sum_rows``, ``sum``, ``extreme``,
    ``var``, ``logsumexp``) splits its work over OpenMP threads, before ``changes`` (keyword
    arguments of those names, ints >= 0) replace them. For tests and measurements: the results
    are the same bits either way."""
    global _min_work_sum_rows, _min_work_sum, _min_work_extreme, _min_work_var
    global _min_work_logsumexp
    before = {"sum_rows": _min_work_sum_rows, "sum": _min_work_sum,
              "extreme": _min_work_extreme, "var": _min_work_var,
              "logsumexp": _min_work_logsumexp}
    _check_min_work(changes, before)
    _min_work_sum_rows = changes.get("sum_rows", _min_work_sum_rows)
    _min_work_sum = changes.get("sum", _min_work_sum)
    _min_work_extreme = changes.get("extreme", _min_work_extreme)
    _min_work_var = changes.get("var", _min_work_var)
    _min_work_logsumexp = changes.get("logsumexp", _min_work_logsumexp)
    return before


# ---- canonical (O, A, K, R) form ---------------------------------------------------------------

def _memory_order(x: np.ndarray) -> list | None:
    """Axis order in which ``x`` is a C-contiguous array (a transposed view), or None."""
    if x.flags.c_contiguous:
        return list(range(x.ndim))
    order = sorted(range(x.ndim), key=lambda a: -abs(x.strides[a]))
    return order if np.transpose(x, order).flags.c_contiguous else None


def _canonical(x: np.ndarray, axes: tuple, keep_reduced_order: bool):
    """View (or copy) ``x`` as a C-contiguous (O, A, K, R) array reduced over A and R.

    Returns ``(x4, kept)``: ``kept`` lists the kept axes in the order the (O, K) output holds
    them. With ``keep_reduced_order`` (max/min indices count in C order over the reduced axes)
    the reduced axes may not be reordered.
    """
    order = _memory_order(x)
    if order is not None and keep_reduced_order:
        seen = [a for a in order if a in axes and x.shape[a] > 1]
        if seen != sorted(seen):
            order = None
    if order is None:
        order = list(range(x.ndim))
        x = np.ascontiguousarray(x)
    else:
        x = np.transpose(x, order)
    # runs of equal kind (reduced or kept) in memory order; size-1 axes do not matter
    runs = []  # [is_reduced, size]
    for pos, a in enumerate(order):
        if x.shape[pos] == 1:
            continue
        red = a in axes
        if runs and runs[len(runs) - 1][0] == red:
            runs[len(runs) - 1][1] *= x.shape[pos]
        else:
            runs.append([red, x.shape[pos]])
    kept = [a for a in order if a not in axes]
    size_o = 1
    if runs and not runs[0][0]:
        size_o = runs.pop(0)[1]
    if len(runs) > 3:  # reduced axes interleaved twice: one copy makes them trailing
        moved = kept + [a for a in order if a in axes]
        x = np.ascontiguousarray(np.transpose(x, [order.index(a) for a in moved]))
        n_red = int(np.prod([x.shape[i] for i in range(len(kept), x.ndim)]))
        return x.reshape(-1, 1, 1, n_red), kept
    sizes = [r[1] for r in runs]
    if len(sizes) == 1:  # one reduced run: contiguous rows
        sizes = [1, 1, sizes[0]]
    else:  # reduced, kept[, reduced]
        sizes += [1] * (3 - len(sizes))
    return x.reshape(size_o, sizes[0], sizes[1], sizes[2]), kept


def _prepare(fn, x, axis, keep_reduced_order=False):
    """Validate and canonicalise; returns ``(x, axes, x4, kept)``."""
    cdef int a, ndim, i
    cdef Py_ssize_t outer = 1, inner = 1
    if (type(x) is np.ndarray and type(axis) is int and x.flags.c_contiguous
            and (x.dtype == np.float32 or x.dtype == np.float64)):
        # fast path for the common call (one axis of a C-contiguous array): the generic
        # canonicalisation below costs a few microseconds, as much as a small reduction
        ndim = x.ndim
        a = axis
        if a < 0:
            a += ndim
        if 0 <= a < ndim:
            shape = x.shape
            for i in range(a):
                outer *= shape[i]
            for i in range(a + 1, ndim):
                inner *= shape[i]
            kept = list(range(a)) + list(range(a + 1, ndim))
            if inner == 1:
                return x, (a,), x.reshape(outer, 1, 1, shape[a]), kept
            return x, (a,), x.reshape(outer, shape[a], inner, 1), kept
    if (axis is None and type(x) is np.ndarray and x.flags.c_contiguous
            and (x.dtype == np.float32 or x.dtype == np.float64)):
        # a full reduction of a C-contiguous array is one contiguous row
        return x, tuple(range(x.ndim)), x.reshape(1, 1, 1, x.size), []
    x = float_array(fn, "x", x)
    axes = reduced_axes(x.ndim, axis)
    if x.size == 0:  # nothing to read: an empty (kept, reduced, 1, 1) problem of the right sizes
        kept = [a for a in range(x.ndim) if a not in axes]
        sizes = (int(np.prod([x.shape[a] for a in kept])), int(np.prod([x.shape[a] for a in axes])))
        return x, axes, np.empty((sizes[0], sizes[1], 1, 1), x.dtype), kept
    x4, kept = _canonical(x, axes, keep_reduced_order)
    return x, axes, x4, kept


def _finish(fn, out: np.ndarray, x: np.ndarray, axes: tuple, kept: list, keepdims):
    """Turn an (O, K) output back into the reduced shape, in the original axis order."""
    keepdims = keepdims_flag(fn, keepdims)
    if keepdims and len(axes) == 1 and kept == sorted(kept):
        shape = list(x.shape)
        shape[axes[0]] = 1
        return out.reshape(shape)
    y = out.reshape([x.shape[a] for a in kept])
    originally = sorted(kept)
    if kept != originally:
        y = np.transpose(y, [kept.index(a) for a in originally])
    if keepdims:
        y = np.expand_dims(y, axes)
    return y


# ---- sum / mean ----------------------------------------------------------------------------------

cdef inline double _row_sum_fast(const floating *x, Py_ssize_t n) noexcept nogil:
    # the bits of _row_sum (see _simd_reduce.h)
    if floating is float:
        return mg_row_sum_fast_f(x, n)
    else:
        return _row_sum(x, n)


cdef inline void _col_sum_fast(const floating *x, Py_ssize_t stride, int rows, double *acc,
                               Py_ssize_t n) noexcept nogil:
    # acc[k] += rows (<= 8) of x: the bits of _col_sum over rows 0-3, then over rows 4..
    # (see _simd_reduce.h)
    if floating is float:
        mg_col_sum8_fast_f(x, stride, rows, acc, n)
    else:
        _col_sum(x, stride, rows if rows < 4 else 4, acc, n)
        if rows > 4:
            _col_sum(x + 4 * stride, stride, rows - 4, acc, n)


cdef inline void _row_moments_fast(const floating *x, Py_ssize_t n, double c, double *s1,
                                   double *s2) noexcept nogil:
    # the bits of _row_moments (see _simd_reduce.h)
    if floating is float:
        mg_row_moments_fast_f(x, n, c, s1, s2)
    else:
        _row_moments(x, n, c, s1, s2)


cdef inline floating _row_extreme_fast(const floating *x, Py_ssize_t n, int sign,
                                       Py_ssize_t *index) noexcept nogil:
    # the results of _row_extreme (see _simd_reduce.h)
    if floating is float:
        return mg_row_extreme_fast_f(x, n, sign, index)
    else:
        return _row_extreme(x, n, sign, index)


cdef inline void _sum_task(const floating[:, :, :, ::1] x, double[:, ::1] acc, Py_ssize_t kchunk,
                           Py_ssize_t t) noexcept nogil:
    # one task: the outputs of one outer index o and one chunk of features
    cdef Py_ssize_t A = x.shape[1], K = x.shape[2], R = x.shape[3]
    cdef Py_ssize_t nk = (K + kchunk - 1) // kchunk
    cdef Py_ssize_t o, a, k, k0, k1
    cdef int rows
    o = t // nk
    k0 = (t % nk) * kchunk
    k1 = _imin(k0 + kchunk, K)
    for k in range(k0, k1):
        acc[o, k] = 0.0
    if R == 1:
        # rows outside, features inside; eight rows per sweep to cut accumulator traffic
        a = 0
        while a < A:
            rows = <int>_imin(8, A - a)
            _col_sum_fast(&x[o, a, k0, 0], K, rows, &acc[o, k0], k1 - k0)
            a = a + 8
    elif R > 0:  # (R == 0: an empty reduction, nothing to add and no element to address)
        for a in range(A):
            for k in range(k0, k1):
                acc[o, k] += _row_sum_fast(&x[o, a, k, 0], R)


cdef void _sum_core(const floating[:, :, :, ::1] x, double[:, ::1] acc, Py_ssize_t kchunk,
                    int nthreads) noexcept nogil:
    """acc[o, k] = sum over a, r of x[o, a, k, r]."""
    cdef Py_ssize_t t, o, r0
    cdef Py_ssize_t O = x.shape[0], K = x.shape[2]
    cdef Py_ssize_t nk = (K + kchunk - 1) // kchunk
    if nthreads > 1 and K == 1 and x.shape[1] == 1 and x.shape[3] > 0:
        # contiguous rows: a task per block of rows, with no call per row (a task call passes
        # its memoryviews by value, tens of ns that add up over a thousand short rows)
        for t in prange((O + ROW_BLOCK - 1) // ROW_BLOCK, num_threads=nthreads,
                        schedule="static"):
            r0 = t * ROW_BLOCK
            for o in range(r0, _imin(r0 + ROW_BLOCK, O)):
                acc[o, 0] = _row_sum_fast(&x[o, 0, 0, 0], x.shape[3])
    elif nthreads > 1:
        for t in prange(O * nk, num_threads=nthreads, schedule="static"):
            _sum_task(x, acc, kchunk, t)
    else:  # no OpenMP region at all: entering one costs microseconds
        for t in range(O * nk):
            _sum_task(x, acc, kchunk, t)


def _sum_acc(x4: np.ndarray) -> np.ndarray:
    """float64 sums of the canonical array over A and R, shape (O, K)."""
    cdef Py_ssize_t O = x4.shape[0], K = x4.shape[2]
    cdef int nthreads = threads_over(
        x4.size, _min_work_sum_rows if K == 1 and x4.shape[1] == 1 else _min_work_sum)
    acc = np.empty((O, K), dtype=np.float64)
    if x4.dtype == np.float32:
        _sum_core[float](x4, acc, task_chunk(O, K, nthreads), nthreads)
    else:
        _sum_core[double](x4, acc, task_chunk(O, K, nthreads), nthreads)
    return acc


include "_reduce_axis.pxi"


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis``: y = sum_i x_i (float64 accumulation, result in x's dtype)."""
    out = _sum_one_axis(x, axis, keepdims, False)
    if out is not None:
        return out
    x, axes, x4, kept = _prepare("sum", x, axis)
    out = _sum_acc(x4).astype(x.dtype, copy=False)
    return _finish("sum", out, x, axes, kept, keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis``: y = sum_i x_i / n (nan for an empty reduction, without a warning)."""
    out = _sum_one_axis(x, axis, keepdims, True)
    if out is not None:
        return out
    x, axes, x4, kept = _prepare("mean", x, axis)
    acc = _sum_acc(x4)
    cdef Py_ssize_t n = x4.shape[1] * x4.shape[3]
    if n > 0:
        acc /= n
    else:  # 0/0, as NumPy's mean of nothing, without entering np.errstate (microseconds)
        acc.fill(np.nan)
    return _finish("mean", acc.astype(x.dtype, copy=False), x, axes, kept, keepdims)


# ---- max / min -----------------------------------------------------------------------------------

cdef inline void _extreme_task(const floating[:, :, :, ::1] x, int sign, floating[:, ::1] m,
                               int64_t[:, ::1] index, Py_ssize_t kchunk,
                               Py_ssize_t t) noexcept nogil:
    # one task: the outputs of one outer index o and one chunk of features
    cdef Py_ssize_t A = x.shape[1], K = x.shape[2], R = x.shape[3]
    cdef Py_ssize_t nk = (K + kchunk - 1) // kchunk
    cdef Py_ssize_t o, a, k, k0, k1, i
    cdef floating v, cur
    o = t // nk
    k0 = (t % nk) * kchunk
    k1 = _imin(k0 + kchunk, K)
    if R == 1:
        for k in range(k0, k1):
            m[o, k] = x[o, 0, k, 0]
            index[o, k] = 0
        for a in range(1, A):
            _col_extreme(&x[o, a, k0, 0], &m[o, k0], &index[o, k0], a, sign, k1 - k0)
    else:
        for a in range(A):
            for k in range(k0, k1):
                i = 0
                v = _row_extreme_fast(&x[o, a, k, 0], R, sign, &i)
                cur = m[o, k]
                # strictly better, or the first NaN: earlier rows win ties
                if a == 0 or (v != v and cur == cur) or (
                    v > cur if sign > 0 else v < cur
                ):
                    m[o, k] = v
                    index[o, k] = a * R + i


cdef void _extreme_core(const floating[:, :, :, ::1] x, int sign, floating[:, ::1] m,
                        int64_t[:, ::1] index, Py_ssize_t kchunk, int nthreads) noexcept nogil:
    """m[o, k] = max (sign 1) or min (sign -1) over a, r of x[o, a, k, r]; index[o, k] its first
    position a * R + r. NaN wins, first NaN first. Needs A * R >= 1."""
    cdef Py_ssize_t t, o, r0, i
    cdef Py_ssize_t O = x.shape[0], K = x.shape[2]
    cdef Py_ssize_t nk = (K + kchunk - 1) // kchunk
    if nthreads > 1 and K == 1 and x.shape[1] == 1:
        # contiguous rows: a task per block of rows (see _sum_core)
        for t in prange((O + ROW_BLOCK - 1) // ROW_BLOCK, num_threads=nthreads,
                        schedule="static"):
            r0 = t * ROW_BLOCK
            for o in range(r0, _imin(r0 + ROW_BLOCK, O)):
                i = 0
                m[o, 0] = _row_extreme_fast(&x[o, 0, 0, 0], x.shape[3], sign, &i)
                index[o, 0] = i
    elif nthreads > 1:
        for t in prange(O * nk, num_threads=nthreads, schedule="static"):
            _extreme_task(x, sign, m, index, kchunk, t)
    else:  # no OpenMP region at all: entering one costs microseconds
        for t in range(O * nk):
            _extreme_task(x, sign, m, index, kchunk, t)


def _extreme(fn, x, axis, keepdims, int sign):
    x, axes, x4, kept = _prepare(fn, x, axis, keep_reduced_order=True)
    if x4.shape[1] * x4.shape[3] == 0:
        raise ValueError(
            f"zero-size reduction over axes {axes} of an array of shape {x.shape}: "
            "max/min have no identity"
        )
    cdef Py_ssize_t O = x4.shape[0], K = x4.shape[2]
    cdef int nthreads = threads_over(x4.size, _min_work_extreme)
    m = np.empty((O, K), dtype=x.dtype)
    index = np.empty((O, K), dtype=np.int64)
    kchunk = task_chunk(O, K, nthreads)
    if x.dtype == np.float32:
        _extreme_core[float](x4, sign, m, index, kchunk, nthreads)
    else:
        _extreme_core[double](x4, sign, m, index, kchunk, nthreads)
    return _finish(fn, m, x, axes, kept, keepdims), _finish(fn, index, x, axes, kept, keepdims)


def max(x, axis=None, keepdims=False):
    """Maximum over ``axis`` and the C-order position of its first occurrence.

    y = max_i x_i; NaN wins (y is NaN and index the first NaN, like np.max / np.argmax).
    Returns ``(y, index)`` with ``index`` an int64 array of y's shape. Empty: ValueError.
    """
    out = _extreme_one_axis(x, axis, keepdims, 1)
    if out is not None:
        return out
    return _extreme("max", x, axis, keepdims, 1)


def min(x, axis=None, keepdims=False):
    """Minimum over ``axis`` and the C-order position of its first occurrence (see ``max``)."""
    out = _extreme_one_axis(x, axis, keepdims, -1)
    if out is not None:
        return out
    return _extreme("min", x, axis, keepdims, -1)


# var and logsumexp, on the same canonical form: _reduce_stats.pxi
include "_reduce_stats.pxi"
