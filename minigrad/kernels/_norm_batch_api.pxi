# Included by _norm.pyx: the BatchNorm kernels' Python wrappers.
#
# The common call (exact float32/float64 ndarrays in native byte order, aligned and
# C-contiguous, parameters of x's dtype with shape (C,), writeable running buffers that own
# their memory) is recognised through NumPy's C API and goes straight to the cores with data
# pointers; its outputs are made with PyArray_EMPTY and its scratch is one malloc. Any other
# call first runs the checks of ``_checks`` (which raise the same errors as the twin's), then
# makes the arrays C-contiguous and aligned and joins the same path, so both give the same
# bits. Before, a typed memoryview per argument (nine for the backward), np.empty scratch, the
# checks and the reshapes cost about 5 us per call, forward or backward: a (2, 16, 2, 2) call
# took 5.2 us forward, 5.0 us backward.

from cpython.ref cimport PyObject
from libc.stdlib cimport free


cdef extern from *:
    """
    #include <stdlib.h>
    /* 64-byte aligned scratch (NULL when out of memory), released with free() */
    static void *mg_bn_scratch(size_t bytes)
    {
        void *p = NULL;
        return posix_memalign(&p, 64, bytes ? bytes : 64) == 0 ? p : NULL;
    }
    """
    void *mg_bn_scratch(size_t bytes) nogil


cdef inline Py_ssize_t _coef_width(Py_ssize_t C, Py_ssize_t S) noexcept nogil:
    """Columns of the write pass's coefficients for (N, C, S) data: C * S when the write runs
    wide (``_write_columns``; plus COLUMN_PAD, see ``_column_width``), else C (also when S is
    0: no plane to write)."""
    return C * S + COLUMN_PAD if _write_columns(C, S) and S > 1 else C


cdef inline Py_ssize_t _column_width(Py_ssize_t N, Py_ssize_t C, Py_ssize_t S) noexcept nogil:
    """Row width of the float64 column scratch (3 rows) of (N, C, S) sums when they run wide
    with S > 1 (``_columns_per_channel``), else 0 (no scratch). The extra COLUMN_PAD columns
    keep the rows from lying a multiple of 4 KiB apart (C * S is often a power of two): a load
    from one row after a store to another at the same address modulo 4 KiB waits for the store
    (measured 25% slower backward at (64, 16, 8, 8) float32)."""
    return C * S + COLUMN_PAD if S > 1 and _columns_per_channel(N, C, S) != 0 else 0


cdef inline Py_ssize_t _round8(Py_ssize_t n) noexcept nogil:
    """n rounded up to a multiple of 8 (8 doubles: 64 bytes)."""
    return (n + 7) // 8 * 8


cdef struct BnScratch:
    # one allocation: float64 sums (2 * C), float64 column scratch (3 rows cw apart), then the
    # write pass's coefficients (rows of W values of the data's dtype)
    void *block
    double *sums
    double *cols
    void *coef
    Py_ssize_t cw, W


cdef int _bn_scratch(BnScratch *s, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, int coef_rows,
                     size_t itemsize, bint sums, bint columns) except -1:
    """Allocate the scratch of one call: 2 * C sums when ``sums``, the column scratch when
    ``columns`` and the sums run wide, ``coef_rows`` rows of coefficients."""
    cdef Py_ssize_t n_sums = _round8(2 * C) if sums else 0
    s.cw = _column_width(N, C, S) if columns else 0
    s.W = _coef_width(C, S)
    cdef Py_ssize_t n_cols = _round8(3 * s.cw)
    s.block = mg_bn_scratch(<size_t>(n_sums + n_cols) * 8 + <size_t>(coef_rows * s.W) * itemsize)
    if s.block == NULL:
        raise MemoryError()
    s.sums = <double *>s.block
    s.cols = s.sums + n_sums
    s.coef = <void *>(s.cols + n_cols)
    return 0


cdef inline bint _is_plain(object a, int typenum):
    """a is an exact ndarray of dtype typenum (float or double) in native byte order, aligned
    and C-contiguous: its data pointer can be read as a C array."""
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    return (cnp.PyArray_TYPE(arr) == typenum and cnp.PyArray_ISNOTSWAPPED(arr)
            and cnp.PyArray_ISALIGNED(arr) and cnp.PyArray_IS_C_CONTIGUOUS(arr))


cdef inline bint _is_vector(object a, int typenum, cnp.npy_intp n):
    """a is a plain (``_is_plain``) 1-D array of n values."""
    return (_is_plain(a, typenum) and cnp.PyArray_NDIM(<cnp.ndarray>a) == 1
            and cnp.PyArray_DIMS(<cnp.ndarray>a)[0] == n)


cdef inline object _owner(object a):
    """The array that owns a's memory when that is a (view of a) plain ndarray, else None."""
    cdef PyObject *base = cnp.PyArray_BASE(<cnp.ndarray>a)
    if base == NULL:
        return a
    if type(<object>base) is cnp.ndarray and cnp.PyArray_BASE(<cnp.ndarray>base) == NULL:
        return <object>base
    return None


cdef bint _running_ok(object x, object rm, object rv):
    """The running buffers may be updated in place without the exact overlap test: both
    writeable and owned by three different arrays (the cheap test of ``_checks``'
    ``_separate_owners``)."""
    if not (cnp.PyArray_ISWRITEABLE(<cnp.ndarray>rm) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>rv)):
        return False
    ox, om, ov = _owner(x), _owner(rm), _owner(rv)
    return (ox is not None and om is not None and ov is not None and ox is not om
            and ox is not ov and om is not ov)


cdef inline bint _same_dims(object a, object b):
    """ndarrays a and b have one shape."""
    cdef int nd = cnp.PyArray_NDIM(<cnp.ndarray>a), i
    if cnp.PyArray_NDIM(<cnp.ndarray>b) != nd:
        return False
    for i in range(nd):
        if cnp.PyArray_DIMS(<cnp.ndarray>a)[i] != cnp.PyArray_DIMS(<cnp.ndarray>b)[i]:
            return False
    return True


cdef int _bn_geometry(object x, Py_ssize_t *shape) except -1:
    """shape = (N, C, S) of a plain x of 2 to 4 dims, S the product of the spatial sizes."""
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(<cnp.ndarray>x)
    cdef int i
    shape[0] = dims[0]
    shape[1] = dims[1]
    shape[2] = 1
    for i in range(2, cnp.PyArray_NDIM(<cnp.ndarray>x)):
        shape[2] *= dims[i]
    return 0


cdef int _typenum_of(object x):
    """NPY_FLOAT or NPY_DOUBLE for a native float ndarray, else -1."""
    if type(x) is not cnp.ndarray:
        return -1
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    return t if (t == cnp.NPY_FLOAT or t == cnp.NPY_DOUBLE) else -1


cdef bint _forward_is_plain(x, gamma, beta, running_mean, running_var, bint training):
    """Whether a ``batchnorm_forward`` call is the common one, which the checks of ``_checks``
    would pass as is and the cores can read through data pointers (see the top of this file)."""
    cdef int t = _typenum_of(x)
    if t < 0 or not _is_plain(x, t) or not 2 <= cnp.PyArray_NDIM(<cnp.ndarray>x) <= 4:
        return False
    cdef cnp.npy_intp C = cnp.PyArray_DIMS(<cnp.ndarray>x)[1]
    if (gamma is not None and not _is_vector(gamma, t, C)) or (
            beta is not None and not _is_vector(beta, t, C)):
        return False
    if running_mean is None and running_var is None:
        return training
    if not (_is_vector(running_mean, t, C) and _is_vector(running_var, t, C)):
        return False
    return not training or _running_ok(x, running_mean, running_var)


cdef object _plain(object a):
    """a as a C-contiguous, aligned ndarray: itself when it is one (None stays None)."""
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    return a if cnp.PyArray_ISALIGNED(<cnp.ndarray>a) else a.copy()


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
    cdef bint train = training
    if _forward_is_plain(x, gamma, beta, running_mean, running_var, train):
        return _forward_plain(x, gamma, beta, running_mean, running_var, momentum, eps, train,
                              relu)
    batchnorm_forward_args(x, gamma, beta, running_mean, running_var, train)
    # strided or unaligned buffers: updated through C-contiguous copies, then copied back
    rm, rv = _plain(running_mean), _plain(running_var)
    out = _forward_plain(_plain(x), _plain(gamma), _plain(beta), rm, rv, momentum, eps, train,
                         relu)
    if train and rm is not running_mean:
        running_mean[...] = rm
    if train and rv is not running_var:
        running_var[...] = rv
    return out


cdef tuple _forward_plain(x, gamma, beta, running_mean, running_var, double momentum,
                          double eps, bint training, bint relu):
    """batchnorm_forward on plain arrays (``_is_plain``); the running buffers, when training,
    writeable ones that x does not overlap."""
    cdef Py_ssize_t shape[3]
    cdef BnScratch s
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    _bn_geometry(x, shape)
    cdef cnp.npy_intp C = shape[1]
    y = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(<cnp.ndarray>x), cnp.PyArray_DIMS(<cnp.ndarray>x),
                          t, 0)
    mean = cnp.PyArray_EMPTY(1, &C, cnp.NPY_DOUBLE, 0)
    rstd = cnp.PyArray_EMPTY(1, &C, cnp.NPY_DOUBLE, 0)
    _bn_scratch(&s, shape[0], shape[1], shape[2], 4, cnp.PyArray_ITEMSIZE(<cnp.ndarray>x),
                False, training)
    if t == cnp.NPY_FLOAT:
        _batchnorm_forward_core[float](
            <float *>_data(x), shape[0], shape[1], shape[2], <float *>_data(gamma),
            <float *>_data(beta), <float *>_data(running_mean), <float *>_data(running_var),
            momentum, eps, training, <float *>_data(y), <double *>_data(mean),
            <double *>_data(rstd), <float *>s.coef, s.W, s.cols, s.cw, relu)
    else:
        _batchnorm_forward_core[double](
            <double *>_data(x), shape[0], shape[1], shape[2], <double *>_data(gamma),
            <double *>_data(beta), <double *>_data(running_mean), <double *>_data(running_var),
            momentum, eps, training, <double *>_data(y), <double *>_data(mean),
            <double *>_data(rstd), <double *>s.coef, s.W, s.cols, s.cw, relu)
    free(s.block)
    return y, mean, rstd


cdef bint _backward_is_plain(grad_out, x, gamma, mean, rstd, relu_out):
    """Whether a ``batchnorm_backward`` call is the common one (see ``_forward_is_plain``):
    plain grad_out, x (and relu_out) of one dtype and shape, gamma None or plain (C,), and
    mean and rstd plain float64 (C,)."""
    cdef int t = _typenum_of(x)
    if t < 0 or not _is_plain(x, t) or not 2 <= cnp.PyArray_NDIM(<cnp.ndarray>x) <= 4:
        return False
    if not (_is_plain(grad_out, t) and _same_dims(grad_out, x)):
        return False
    if relu_out is not None and not (_is_plain(relu_out, t) and _same_dims(relu_out, x)):
        return False
    cdef cnp.npy_intp C = cnp.PyArray_DIMS(<cnp.ndarray>x)[1]
    return ((gamma is None or _is_vector(gamma, t, C)) and _is_vector(mean, cnp.NPY_DOUBLE, C)
            and _is_vector(rstd, cnp.NPY_DOUBLE, C))


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
    cdef bint train = training
    if not _backward_is_plain(grad_out, x, gamma, mean, rstd, relu_out):
        batchnorm_backward_args(grad_out, x, gamma, mean, rstd)
        if relu_out is not None:
            same_as("batchnorm_backward", "relu_out", relu_out, x, x.shape, "the shape of x")
        return _backward_plain(_plain(grad_out), _plain(x), _plain(gamma), _float64(mean),
                               _float64(rstd), train, _plain(relu_out))
    return _backward_plain(grad_out, x, gamma, mean, rstd, train, relu_out)


cdef tuple _backward_plain(dy, x, gamma, mean, rstd, bint training, relu_out):
    """batchnorm_backward on plain arrays (``_backward_is_plain``). The column loops apply a
    ReLU's mask as they read dy; other paths take ReLU's backward of dy first."""
    cdef Py_ssize_t shape[3]
    cdef BnScratch s
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    _bn_geometry(x, shape)
    cdef cnp.npy_intp C = shape[1]
    cdef bint fuse = relu_out is not None and training and _columns_per_channel(
        shape[0], shape[1], shape[2]) != 0
    if relu_out is not None and not fuse:
        dy = relu_backward(dy, relu_out)
    mask = relu_out if fuse else None
    dx = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(<cnp.ndarray>x), cnp.PyArray_DIMS(<cnp.ndarray>x),
                           t, 0)
    dgamma = cnp.PyArray_EMPTY(1, &C, t, 0)
    dbeta = cnp.PyArray_EMPTY(1, &C, t, 0)
    _bn_scratch(&s, shape[0], shape[1], shape[2], 5, cnp.PyArray_ITEMSIZE(<cnp.ndarray>x),
                True, True)
    if t == cnp.NPY_FLOAT:
        _batchnorm_backward_core[float](
            <float *>_data(dy), <float *>_data(mask), <float *>_data(x), shape[0], shape[1],
            shape[2], <float *>_data(gamma), <double *>_data(mean), <double *>_data(rstd),
            training, <float *>_data(dx), <float *>_data(dgamma), <float *>_data(dbeta),
            <float *>s.coef, s.W, s.sums, s.cols, s.cw)
    else:
        _batchnorm_backward_core[double](
            <double *>_data(dy), <double *>_data(mask), <double *>_data(x), shape[0], shape[1],
            shape[2], <double *>_data(gamma), <double *>_data(mean), <double *>_data(rstd),
            training, <double *>_data(dx), <double *>_data(dgamma), <double *>_data(dbeta),
            <double *>s.coef, s.W, s.sums, s.cols, s.cw)
    free(s.block)
    return dx, dgamma, dbeta
