"""Compiled activation kernels: GELU with the exact normal CDF (NumPy has no vectorised erfc:
the C library's erfc for float64 and, for float32, the twin's Chebyshev fit of erfc with the
polynomial exp of _simd.h), and ReLU, whose NumPy form takes several times a memory pass
(np.maximum(x, 0) 30 us and a masked product g * (y > 0) 25 us at 64x16x8x8 float32, against
5 us for a copy).
The NumPy twins are in ``_activation_twin.py``.

The wrappers reach the arrays through NumPy's C API and hand the loops data pointers (four typed
memoryviews per call cost about 1.2 us: relu_forward of a (2, 16, 2, 2) array took 1.37 us,
now 0.15 us).
"""

include "_parallel.pxi"

import numpy as np

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

from minigrad.kernels._simd cimport (
    _imin,
    mg_gelu_bwd_d,
    mg_gelu_bwd_f,
    mg_gelu_fwd_d,
    mg_gelu_fwd_f,
)

from minigrad.kernels._activation_twin import relu_select
from minigrad.kernels._checks import float_array, same_as, same_shape

cnp.import_array()

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


cdef extern from *:
    """
    /* ReLU as np.maximum(x, 0) computes it: a NaN passes through, -0.0 and negatives give +0.0.
       The backward passes g where y > 0 or y is NaN and gives +0.0 where y <= 0, a select and
       not a product g * (y > 0): an inf or NaN gradient reaching an inactive unit gives 0 there,
       not NaN (PyTorch's rule; the derivative there is exactly 0). Plain loops the compiler
       vectorises (compare and blend); g's bits are copied, as np.where copies them. The
       backward reads g[i] whatever y[i] is: read only where y[i] > 0, gcc loaded it under a
       mask that merged into the previous vector (a dependency from one vector to the next);
       loaded always, it is a compare and an and-not (the loop alone on 64K float32 in L2, best
       of 300: 7.1 -> 6.4 us; relu_backward's call, where the fresh output's stores dominate:
       medians the same, best rounds 0.91x). */
    #define MG_RELU_LOOPS(T, SUFFIX) \
    static void mg_relu_fwd_##SUFFIX(const T *x, T *y, Py_ssize_t n) { \
        for (Py_ssize_t i = 0; i < n; i++) { T v = x[i]; y[i] = (v > 0 || v != v) ? v : (T)0; } \
    } \
    static void mg_relu_bwd_##SUFFIX(const T *g, const T *y, T *dx, Py_ssize_t n) { \
        for (Py_ssize_t i = 0; i < n; i++) { T gi = g[i]; dx[i] = y[i] <= 0 ? (T)0 : gi; } \
    }
    MG_RELU_LOOPS(float, f)
    MG_RELU_LOOPS(double, d)
    """
    void mg_relu_fwd_f(const float *x, float *y, Py_ssize_t n) noexcept nogil
    void mg_relu_fwd_d(const double *x, double *y, Py_ssize_t n) noexcept nogil
    void mg_relu_bwd_f(const float *g, const float *y, float *dx, Py_ssize_t n) noexcept nogil
    void mg_relu_bwd_d(const double *g, const double *y, double *dx, Py_ssize_t n) noexcept nogil


cdef enum Op:
    GELU_FORWARD, GELU_BACKWARD, RELU_FORWARD, RELU_BACKWARD


cdef inline void _span(Op op, const floating *a, const floating *b, floating *c, floating *d,
                       Py_ssize_t n) noexcept nogil:
    """One span of n elements: GELU forward (x=a -> y=c, cdf=d), GELU backward (g=a, x=b,
    cdf=c -> dx=d), ReLU forward (x=a -> y=c), ReLU backward (g=a, y=b -> dx=c)."""
    if op == GELU_FORWARD:
        _gelu_fwd_span(a, c, d, n)
    elif op == GELU_BACKWARD:
        _gelu_bwd_span(a, b, c, d, n)
    elif op == RELU_FORWARD:
        if floating is float:
            mg_relu_fwd_f(a, c, n)
        else:
            mg_relu_fwd_d(a, c, n)
    elif floating is float:
        mg_relu_bwd_f(a, b, c, n)
    else:
        mg_relu_bwd_d(a, b, c, n)


cdef void _elementwise(Op op, const floating *a, const floating *b, floating *c, floating *d,
                       Py_ssize_t n, int nthreads) noexcept nogil:
    """Run ``op`` over spans of SPAN elements, one task each; the result never depends on the
    split (elementwise). Arrays an op does not use may be NULL."""
    cdef Py_ssize_t t, i0
    cdef Py_ssize_t tasks = (n + SPAN - 1) // SPAN
    if nthreads > 1:
        for t in prange(tasks, num_threads=nthreads, schedule="static"):
            i0 = t * SPAN
            _span(op, _at(a, i0), _at(b, i0), _at(c, i0), _at(d, i0), _imin(SPAN, n - i0))
    else:  # no OpenMP region at all: entering one costs microseconds
        _span(op, a, b, c, d, n)


cdef inline floating *_at(const floating *p, Py_ssize_t i) noexcept nogil:
    """p + i, NULL for NULL (an array the op does not use)."""
    return NULL if p == NULL else <floating *>(p + i)


cdef inline void *_data(object a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef void _run(Op op, a, b, c, d, Py_ssize_t n, int nthreads):
    """_elementwise on plain arrays (``_plain``) of one float dtype; b, c or d None when the op
    does not use them."""
    if cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_FLOAT:
        _elementwise[float](op, <float *>_data(a), <float *>_ptr(b), <float *>_ptr(c),
                            <float *>_ptr(d), n, nthreads)
    else:
        _elementwise[double](op, <double *>_data(a), <double *>_ptr(b), <double *>_ptr(c),
                             <double *>_ptr(d), n, nthreads)


cdef inline void *_ptr(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef object _plain(object a):
    """a as an aligned, C-contiguous ndarray: itself when it is one, else a copy."""
    if cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>a):
        return a
    a = np.ascontiguousarray(a)
    return a if cnp.PyArray_ISALIGNED(<cnp.ndarray>a) else a.copy()


cdef inline object _like(object a):
    """A new C-contiguous array of a's shape and dtype (a: a native float ndarray)."""
    return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(<cnp.ndarray>a), cnp.PyArray_DIMS(<cnp.ndarray>a),
                             cnp.PyArray_TYPE(<cnp.ndarray>a), 0)


def gelu_forward(x):
    """y = x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2, the standard normal CDF.

    Returns ``(y, cdf)``, both of x's shape and dtype; the backward needs ``cdf``.
    """
    x = float_array("gelu_forward", "x", x)
    y = np.empty(x.shape, dtype=x.dtype)
    cdf = np.empty(x.shape, dtype=x.dtype)
    if x.size == 0:
        return y, cdf
    xc = _plain(x)
    _run(GELU_FORWARD, xc, None, y, cdf, x.size, _gelu_threads(x.size))
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
    _run(GELU_BACKWARD, _plain(grad_out), _plain(x), _plain(cdf), dx, x.size,
         _gelu_threads(x.size))
    return dx


cdef inline bint _plain_float(a):
    """A native float32/float64 ndarray: the compiled ReLU loops apply (others go to NumPy)."""
    if type(a) is not cnp.ndarray:
        return False
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    return (t == cnp.NPY_FLOAT or t == cnp.NPY_DOUBLE) and cnp.PyArray_ISNOTSWAPPED(
        <cnp.ndarray>a)


def relu_forward(x):
    """y = max(x, 0) as np.maximum(x, 0) gives it: NaN passes through, -0.0 gives +0.0.

    Float32/float64 arrays run the compiled loop; any other real array (an int tensor's data)
    goes to np.maximum itself, so the kernel takes what the op always took.
    """
    if not _plain_float(x):
        return np.maximum(x, 0)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>x)
    if n == 0:
        return np.maximum(x, 0)
    y = _like(x)
    _run(RELU_FORWARD, _plain(x), None, y, None, n, threads_for(2 * n))
    return y


def relu_backward(grad_out, y):
    """dx = grad_out where y > 0 (or y is NaN), +0.0 where y <= 0, with y the forward's output:
    ``np.where(y <= 0, 0, grad_out)`` bit for bit, so an inf or NaN gradient does not leak
    through an inactive unit (PyTorch's rule)."""
    if not (_plain_float(grad_out) and _plain_float(y) and _same_shape(grad_out, y)):
        same_shape("relu_backward", "grad_out", grad_out, "y", y)
        return relu_select(grad_out, y)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>y)
    if cnp.PyArray_TYPE(<cnp.ndarray>grad_out) != cnp.PyArray_TYPE(<cnp.ndarray>y) or n == 0:
        return relu_select(grad_out, y)
    dx = _like(y)
    _run(RELU_BACKWARD, _plain(grad_out), _plain(y), dx, None, n, threads_for(3 * n))
    return dx


cdef bint _same_shape(object a, object b):
    """ndarrays a and b have one shape."""
    cdef int nd = cnp.PyArray_NDIM(<cnp.ndarray>a), i
    if cnp.PyArray_NDIM(<cnp.ndarray>b) != nd:
        return False
    for i in range(nd):
        if cnp.PyArray_DIMS(<cnp.ndarray>a)[i] != cnp.PyArray_DIMS(<cnp.ndarray>b)[i]:
            return False
    return True
