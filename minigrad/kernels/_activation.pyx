"""Compiled activation kernels whose math NumPy has no vectorised function for: GELU with the
exact normal CDF, through the C library's erfc for float64 and, for float32, the twin's
Chebyshev fit of erfc with the polynomial exp of _simd.h. The NumPy twins are in
``_activation_twin.py``.
"""

include "_parallel.pxi"

import numpy as np

from cython cimport floating
from cython.parallel cimport prange

from minigrad.kernels._simd cimport (
    _imin,
    mg_gelu_bwd_d,
    mg_gelu_bwd_f,
    mg_gelu_fwd_d,
    mg_gelu_fwd_f,
)

from minigrad.kernels._checks import float_array, same_as

# GELU costs about 1.6 ns per element (float32, fwd+bwd), ten times a memory-bound pass, so a
# second thread could pay from fewer elements than PARALLEL_MIN_WORK. Measured on 2 cores with
# other processes busy on both (wall time, best of 40): two threads were still slower at every
# size tried (0.4x-0.65x at 4K-16K, 0.78x at 64K, 0.86x at 128K), so GELU keeps the threshold
# of the other kernels until an idle machine shows a smaller one pays.
cdef enum:
    GELU_MIN_WORK = PARALLEL_MIN_WORK
    SPAN = 4096  # elements per task


cdef inline int _gelu_threads(Py_ssize_t n) noexcept nogil:
    if n < GELU_MIN_WORK or _num_threads < 2:
        return 1
    return _num_threads


cdef inline void _gelu_fwd_span(const floating *x, floating *y, floating *cdf,
                                Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_gelu_fwd_f(x, y, cdf, n)
    else:
        mg_gelu_fwd_d(x, y, cdf, n)


cdef inline void _gelu_bwd_span(const floating *g, const floating *x, const floating *cdf,
                                floating *dx, Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_gelu_bwd_f(g, x, cdf, dx, n)
    else:
        mg_gelu_bwd_d(g, x, cdf, dx, n)


cdef void _gelu_core(const floating[::1] g, const floating[::1] x, floating[::1] a,
                     floating[::1] b, bint forward, int nthreads) noexcept nogil:
    """Forward (y = a, cdf = b) or backward (cdf = a, dx = b) over spans of SPAN elements, one
    task each; the result never depends on the split (elementwise)."""
    cdef Py_ssize_t t, i0, n = x.shape[0]
    cdef Py_ssize_t tasks = (n + SPAN - 1) // SPAN
    if nthreads > 1:
        for t in prange(tasks, num_threads=nthreads, schedule="static"):
            i0 = t * SPAN
            if forward:
                _gelu_fwd_span(&x[i0], &a[i0], &b[i0], _imin(SPAN, n - i0))
            else:
                _gelu_bwd_span(&g[i0], &x[i0], &a[i0], &b[i0], _imin(SPAN, n - i0))
    elif forward:  # no OpenMP region at all: entering one costs microseconds
        _gelu_fwd_span(&x[0], &a[0], &b[0], n)
    else:
        _gelu_bwd_span(&g[0], &x[0], &a[0], &b[0], n)


def gelu_forward(x):
    """y = x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2, the standard normal CDF.

    Returns ``(y, cdf)``, both of x's shape and dtype; the backward needs ``cdf``.
    """
    x = float_array("gelu_forward", "x", x)
    y = np.empty(x.shape, dtype=x.dtype)
    cdf = np.empty(x.shape, dtype=x.dtype)
    if x.size == 0:
        return y, cdf
    xc = np.ascontiguousarray(x).reshape(-1)
    cdef int nthreads = _gelu_threads(xc.shape[0])
    if x.dtype == np.float32:
        _gelu_core[float](xc, xc, y.reshape(-1), cdf.reshape(-1), True, nthreads)
    else:
        _gelu_core[double](xc, xc, y.reshape(-1), cdf.reshape(-1), True, nthreads)
    return y, cdf


def gelu_backward(grad_out, x, cdf):
    """dx = g * (Phi(x) + x * phi(x)) with phi(x) = exp(-x^2 / 2) / sqrt(2 pi)."""
    fn = "gelu_backward"
    x = float_array(fn, "x", x)
    same_as(fn, "grad_out", grad_out, x, x.shape, "the shape of x")
    same_as(fn, "cdf", cdf, x, x.shape, "the shape of x")
    dx = np.empty(x.shape, dtype=x.dtype)
    if x.size == 0:
        return dx
    xc = np.ascontiguousarray(x).reshape(-1)
    gc = np.ascontiguousarray(grad_out).reshape(-1)
    cc = np.ascontiguousarray(cdf).reshape(-1)
    cdef int nthreads = _gelu_threads(xc.shape[0])
    if x.dtype == np.float32:
        _gelu_core[float](gc, xc, cc, dx.reshape(-1), False, nthreads)
    else:
        _gelu_core[double](gc, xc, cc, dx.reshape(-1), False, nthreads)
    return dx
