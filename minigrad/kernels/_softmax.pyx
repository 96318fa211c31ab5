"""Compiled softmax family: softmax, log_softmax, their backward passes, and softmax
cross-entropy forward and backward (_softmax_xent.pxi).

Softmax kernels work on one axis. The input is viewed as a C-contiguous (O, N, I) array
with N the softmax axis: I == 1 is a contiguous row (the last axis), I > 1 sweeps the N rows
with the I features inside, keeping per-feature statistics. exp is the vectorised polynomial
of _simd.h. The NumPy twins, with the same signatures and passes, are in ``_softmax_twin.py``.
"""

include "_parallel.pxi"

import numpy as np

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport log
from libc.stdint cimport int64_t

from minigrad.kernels._simd cimport (
    _col_affine,
    _col_dot,
    _col_expwrite,
    _col_extreme,
    _col_logsoftmax_bwd,
    _col_softmax_bwd,
    _col_sum,
    _col_sumexp,
    _imin,
    _row_affine,
    _row_dot,
    _row_expwrite,
    _row_logsoftmax_bwd,
    _row_max,
    _row_softmax_bwd,
    _row_sum,
    _row_sumexp,
    _scale_shift,
    _scale_shift_rows,
    mg_exp_array_d,
    mg_exp_array_f,
)

from minigrad.kernels._checks import class_target_count as _class_target_count
from minigrad.kernels._checks import (
    cross_entropy_args,
    float_array,
    same_as,
    single_axis,
    stats_array,
)

cnp.import_array()


def _vexp(x):
    """The vectorised exp the kernels use, y = exp(x) elementwise; private, for the tests."""
    x = np.ascontiguousarray(float_array("_vexp", "x", x)).ravel()
    y = np.empty_like(x)
    cdef const float[::1] xf
    cdef float[::1] yf
    cdef const double[::1] xd
    cdef double[::1] yd
    if x.size == 0:
        return y
    if x.dtype == np.float32:
        xf, yf = x, y
        mg_exp_array_f(&xf[0], &yf[0], xf.shape[0])
    else:
        xd, yd = x, y
        mg_exp_array_d(&xd[0], &yd[0], xd.shape[0])
    return y


# ---- layout ----------------------------------------------------------------------------------

def _as3d(x: np.ndarray, int axis) -> np.ndarray:
    """C-contiguous (O, N, I) view of x with N the softmax axis (copies a strided input)."""
    x = np.ascontiguousarray(x)
    outer = int(np.prod(x.shape[:axis]))
    inner = int(np.prod(x.shape[axis + 1:]))
    return x.reshape(outer, x.shape[axis], inner)


# ---- softmax / log_softmax -----------------------------------------------------------------------

cdef inline void _softmax_task(const floating[:, :, ::1] x, floating[:, :, ::1] y, bint logarithm,
                               floating[:, ::1] m, floating[:, ::1] t, floating[:, ::1] zero,
                               floating[:, ::1] one,
                               int64_t[:, ::1] scratch, double[:, ::1] acc, Py_ssize_t chunk,
                               Py_ssize_t task) noexcept nogil:
    # one task: the outputs of one outer index o and one chunk of features
    cdef Py_ssize_t N = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t nc = (I + chunk - 1) // chunk
    cdef Py_ssize_t o, r, k, k0, k1, w
    cdef floating mx
    cdef double s
    o = task // nc
    k0 = (task % nc) * chunk
    k1 = _imin(k0 + chunk, I)
    w = k1 - k0
    if I == 1:
        mx = _row_max(&x[o, 0, 0], N, 1)
        if logarithm:
            s = _row_sumexp(&x[o, 0, 0], N, mx)
            # y = ((x - m) - log(s)) * 1 + 0: the normalization write pass, rounded like the twin
            _scale_shift(&x[o, 0, 0], N, mx, <floating>log(s), 1, 0, &y[o, 0, 0])
        else:
            s = _row_expwrite(&x[o, 0, 0], &y[o, 0, 0], N, mx)
            _row_affine(&y[o, 0, 0], &y[o, 0, 0], N, <floating>(1.0 / s), 0)
    else:
        for k in range(k0, k1):
            m[o, k] = x[o, 0, k]
            acc[o, k] = 0.0
        for r in range(1, N):
            _col_extreme(&x[o, r, k0], &m[o, k0], &scratch[o, k0], 0, 1, w)
        if logarithm:
            for r in range(N):
                _col_sumexp(&x[o, r, k0], &m[o, k0], &acc[o, k0], w)
            for k in range(k0, k1):
                t[o, k] = <floating>log(acc[o, k])
            for r in range(N):
                _scale_shift_rows(&x[o, r, k0], 0, 1, w, &m[o, k0], &t[o, k0], &one[o, k0],
                                  &zero[o, k0], &y[o, r, k0])
        else:
            for r in range(N):
                _col_expwrite(&x[o, r, k0], &y[o, r, k0], &m[o, k0], &acc[o, k0], w)
            for k in range(k0, k1):
                t[o, k] = <floating>(1.0 / acc[o, k])
            for r in range(N):
                _col_affine(&y[o, r, k0], &y[o, r, k0], &t[o, k0], &zero[o, k0], w)


cdef void _softmax_core(const floating[:, :, ::1] x, floating[:, :, ::1] y, bint logarithm,
                        floating[:, ::1] m, floating[:, ::1] t, floating[:, ::1] zero,
                        floating[:, ::1] one,
                        int64_t[:, ::1] scratch, double[:, ::1] acc, Py_ssize_t chunk,
                        int nthreads) noexcept nogil:
    """softmax: y = exp(x - m) / s; log_softmax: y = (x - m) - log(s); s = sum exp(x - m)."""
    cdef Py_ssize_t task
    cdef Py_ssize_t O = x.shape[0], I = x.shape[2]
    cdef Py_ssize_t nc = (I + chunk - 1) // chunk
    if nthreads > 1:
        for task in prange(O * nc, num_threads=nthreads, schedule="static"):
            _softmax_task(x, y, logarithm, m, t, zero, one, scratch, acc, chunk, task)
    else:  # no OpenMP region at all: entering one costs microseconds
        for task in range(O * nc):
            _softmax_task(x, y, logarithm, m, t, zero, one, scratch, acc, chunk, task)


def _softmax(fn, x, axis, bint logarithm):
    x = float_array(fn, "x", x)
    axis = single_axis(x.ndim, axis)
    y = np.empty(x.shape, dtype=x.dtype)
    if x.size == 0:
        return y
    x3 = _as3d(x, axis)
    y3 = y.reshape(x3.shape)
    O, I = x3.shape[0], x3.shape[2]
    cdef int nthreads = threads_for(x3.size)
    # per-feature statistics are only needed when I > 1
    small = (O, I) if I > 1 else (1, 1)
    m, t = np.empty(small, dtype=x.dtype), np.empty(small, dtype=x.dtype)
    zero, one = np.zeros(small, dtype=x.dtype), np.ones(small, dtype=x.dtype)
    scratch = np.empty(small, dtype=np.int64)
    acc = np.empty(small, dtype=np.float64)
    chunk = task_chunk(O, I, nthreads)
    if x.dtype == np.float32:
        _softmax_core[float](x3, y3, logarithm, m, t, zero, one, scratch, acc, chunk, nthreads)
    else:
        _softmax_core[double](x3, y3, logarithm, m, t, zero, one, scratch, acc, chunk,
                              nthreads)
    return y


def softmax(x, axis=-1):
    """y_i = exp(x_i - max x) / sum_j exp(x_j - max x) along one axis (all -inf gives NaN)."""
    return _softmax("softmax", x, axis, False)


def log_softmax(x, axis=-1):
    """y_i = x_i - max x - log(sum_j exp(x_j - max x)) along one axis (all -inf gives NaN)."""
    return _softmax("log_softmax", x, axis, True)


# ---- backward --------------------------------------------------------------------------------

cdef inline void _backward_task(const floating[:, :, ::1] y, const floating[:, :, ::1] g,
                                floating[:, :, ::1] dx, bint logarithm, floating[:, ::1] t,
                                double[:, ::1] acc, Py_ssize_t chunk,
                                Py_ssize_t task) noexcept nogil:
    # one task: the outputs of one outer index o and one chunk of features
    cdef Py_ssize_t N = y.shape[1], I = y.shape[2]
    cdef Py_ssize_t nc = (I + chunk - 1) // chunk
    cdef Py_ssize_t o, r, k, k0, k1, w
    cdef double s
    o = task // nc
    k0 = (task % nc) * chunk
    k1 = _imin(k0 + chunk, I)
    w = k1 - k0
    if I == 1:
        if logarithm:
            s = _row_sum(&g[o, 0, 0], N)
            _row_logsoftmax_bwd(&y[o, 0, 0], &g[o, 0, 0], &dx[o, 0, 0], N, <floating>s)
        else:
            s = _row_dot(&g[o, 0, 0], &y[o, 0, 0], N)
            _row_softmax_bwd(&y[o, 0, 0], &g[o, 0, 0], &dx[o, 0, 0], N, <floating>s)
    else:
        for k in range(k0, k1):
            acc[o, k] = 0.0
        for r in range(N):
            if logarithm:
                _col_sum(&g[o, r, k0], 0, 1, &acc[o, k0], w)
            else:
                _col_dot(&g[o, r, k0], &y[o, r, k0], &acc[o, k0], w)
        for k in range(k0, k1):
            t[o, k] = <floating>acc[o, k]
        for r in range(N):
            if logarithm:
                _col_logsoftmax_bwd(&y[o, r, k0], &g[o, r, k0], &dx[o, r, k0], &t[o, k0], w)
            else:
                _col_softmax_bwd(&y[o, r, k0], &g[o, r, k0], &dx[o, r, k0], &t[o, k0], w)


cdef void _backward_core(const floating[:, :, ::1] y, const floating[:, :, ::1] g,
                         floating[:, :, ::1] dx, bint logarithm, floating[:, ::1] t,
                         double[:, ::1] acc, Py_ssize_t chunk, int nthreads) noexcept nogil:
    """softmax: dx = y * (g - sum g*y); log_softmax: dx = g - exp(y) * sum g."""
    cdef Py_ssize_t task
    cdef Py_ssize_t O = y.shape[0], I = y.shape[2]
    cdef Py_ssize_t nc = (I + chunk - 1) // chunk
    if nthreads > 1:
        for task in prange(O * nc, num_threads=nthreads, schedule="static"):
            _backward_task(y, g, dx, logarithm, t, acc, chunk, task)
    else:  # no OpenMP region at all: entering one costs microseconds
        for task in range(O * nc):
            _backward_task(y, g, dx, logarithm, t, acc, chunk, task)


def _backward(fn, y, grad_out, axis, bint logarithm):
    y = float_array(fn, "y", y)
    same_as(fn, "grad_out", grad_out, y, y.shape, "the shape of y")
    axis = single_axis(y.ndim, axis)
    dx = np.empty(y.shape, dtype=y.dtype)
    if y.size == 0:
        return dx
    y3, g3 = _as3d(y, axis), _as3d(grad_out, axis)
    O, I = y3.shape[0], y3.shape[2]
    cdef int nthreads = threads_for(y3.size)
    small = (O, I) if I > 1 else (1, 1)
    t = np.empty(small, dtype=y.dtype)
    acc = np.empty(small, dtype=np.float64)
    chunk = task_chunk(O, I, nthreads)
    dx3 = dx.reshape(y3.shape)
    if y.dtype == np.float32:
        _backward_core[float](y3, g3, dx3, logarithm, t, acc, chunk, nthreads)
    else:
        _backward_core[double](y3, g3, dx3, logarithm, t, acc, chunk, nthreads)
    return dx


def softmax_backward(y, grad_out, axis=-1):
    """Gradient of softmax from its output y: dx = y * (g - sum_j g_j * y_j)."""
    return _backward("softmax_backward", y, grad_out, axis, False)


def log_softmax_backward(y, grad_out, axis=-1):
    """Gradient of log_softmax from its output y: dx = g - exp(y) * sum_j g_j."""
    return _backward("log_softmax_backward", y, grad_out, axis, True)


# ---- cross-entropy ---------------------------------------------------------------------------

include "_softmax_xent.pxi"
