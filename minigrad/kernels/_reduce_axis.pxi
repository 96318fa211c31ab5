# Included by _reduce.pyx: the one-thread path of the common call, one int axis of a
# C-contiguous float array. It reads the array through its data pointer, with no canonical form,
# memoryview or NumPy shape helper (each costs a microsecond or more per call, as much as the
# whole reduction of a (64, 128) array), and calls the loops the general path calls, in the
# same order, so that both give the same bits.


cdef int _lean_problem(object x, object axis, object keepdims, cnp.npy_intp *dims,
                       Py_ssize_t *sizes) except -2:
    """The common call, one int axis (or None, every axis) of a non-empty, aligned, C-contiguous
    float32/float64 array in native byte order and a bool keepdims: fills ``sizes`` with
    (outer, reduced, inner), x viewed as (outer, reduced, inner), and ``dims`` with the output's
    shape; returns its ndim.
    -1 when the call is not of that kind: the general path then checks and handles it. Skipping
    the canonical form, memoryviews and NumPy's shape helpers saves microseconds per call, as
    much as the whole reduction of a (64, 128) array."""
    cdef cnp.ndarray arr
    cdef cnp.npy_intp *shape
    cdef int t, ndim, a, i, j = 0
    cdef Py_ssize_t outer = 1, inner = 1
    if type(x) is not cnp.ndarray or (axis is not None and type(axis) is not int) or (
            keepdims is not True and keepdims is not False):
        return -1
    arr = <cnp.ndarray>x
    t = cnp.PyArray_TYPE(arr)
    if ((t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE) or not cnp.PyArray_ISNOTSWAPPED(arr)
            or not cnp.PyArray_ISALIGNED(arr) or not cnp.PyArray_IS_C_CONTIGUOUS(arr)
            or cnp.PyArray_SIZE(arr) == 0):
        return -1
    ndim = cnp.PyArray_NDIM(arr)
    if axis is None:  # a full reduction: one contiguous row, as the general path sees it
        sizes[0] = 1
        sizes[1] = cnp.PyArray_SIZE(arr)
        sizes[2] = 1
        if keepdims is False:
            return 0
        for i in range(ndim):
            dims[i] = 1
        return ndim
    if not -ndim <= axis < ndim:
        return -1
    a = axis
    if a < 0:
        a += ndim
    shape = cnp.PyArray_DIMS(arr)
    for i in range(ndim):
        if i < a:
            outer *= shape[i]
        elif i > a:
            inner *= shape[i]
        if i != a:
            dims[j] = shape[i]
            j += 1
        elif keepdims is True:
            dims[j] = 1
            j += 1
    sizes[0] = outer
    sizes[1] = shape[a]
    sizes[2] = inner
    return j


cdef void _sum_lean(const floating *x, Py_ssize_t O, Py_ssize_t A, Py_ssize_t K, double n,
                    floating *out) noexcept nogil:
    """out[o, k] = sum over a of x[o, a, k], divided by n: one thread, straight into x's dtype,
    the additions of _sum_task in its order. A row reduction (K == 1) sums contiguous rows;
    otherwise rows outside and features inside, with float64 accumulators for a block of
    features on the stack."""
    cdef Py_ssize_t o, a, k, k0, w
    cdef const floating *xo
    cdef double acc[COLUMN_BLOCK]
    if K == 1:
        if floating is float:
            mg_rows_sum_fast_f(x, O, A, n, out)
        else:
            for o in range(O):
                out[o] = <floating>(_row_sum_fast(x + o * A, A) / n)
        return
    for o in range(O):
        xo = x + o * A * K
        k0 = 0
        while k0 < K:
            w = _imin(COLUMN_BLOCK, K - k0)
            for k in range(w):
                acc[k] = 0.0
            a = 0
            while a < A:  # eight rows per sweep, as _sum_task
                _col_sum_fast(xo + a * K + k0, K, <int>_imin(8, A - a), acc, w)
                a = a + 8
            for k in range(w):
                out[o * K + k0 + k] = <floating>(acc[k] / n)
            k0 = k0 + COLUMN_BLOCK


cdef object _sum_one_axis(object x, object axis, object keepdims, bint average):
    """sum or mean of the common call (see _lean_problem) on one thread; None otherwise."""
    cdef cnp.npy_intp dims[cnp.NPY_MAXDIMS]
    cdef Py_ssize_t sizes[3]
    cdef int nd = _lean_problem(x, axis, keepdims, dims, sizes)
    if nd < 0 or threads_over(cnp.PyArray_SIZE(<cnp.ndarray>x),
                              _min_work_sum_rows if sizes[2] == 1 else _min_work_sum) > 1:
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    out = cnp.PyArray_EMPTY(nd, dims, t, 0)
    cdef double n = <double>sizes[1] if average else 1.0
    if t == cnp.NPY_FLOAT:
        _sum_lean[float](<const float *>cnp.PyArray_DATA(<cnp.ndarray>x), sizes[0], sizes[1],
                         sizes[2], n, <float *>cnp.PyArray_DATA(<cnp.ndarray>out))
    else:
        _sum_lean[double](<const double *>cnp.PyArray_DATA(<cnp.ndarray>x), sizes[0], sizes[1],
                          sizes[2], n, <double *>cnp.PyArray_DATA(<cnp.ndarray>out))
    return out


cdef void _extreme_lean(const floating *x, Py_ssize_t O, Py_ssize_t A, Py_ssize_t K, int sign,
                        floating *m, int64_t *index) noexcept nogil:
    """m[o, k] = max (sign 1) or min (sign -1) over a of x[o, a, k], index[o, k] its first
    position, on one thread; the loops of _extreme_task without a call per row. Needs A >= 1."""
    cdef Py_ssize_t o, a, k, i
    cdef const floating *xo
    if K == 1:
        for o in range(O):
            i = 0
            m[o] = _row_extreme_fast(x + o * A, A, sign, &i)
            index[o] = i
        return
    for o in range(O):
        xo = x + o * A * K
        for k in range(K):
            m[o * K + k] = xo[k]
            index[o * K + k] = 0
        for a in range(1, A):
            _col_extreme(xo + a * K, m + o * K, index + o * K, a, sign, K)


cdef object _extreme_one_axis(object x, object axis, object keepdims, int sign):
    """(max or min, index) of the common call (see _lean_problem) on one thread; else None."""
    cdef cnp.npy_intp dims[cnp.NPY_MAXDIMS]
    cdef Py_ssize_t sizes[3]
    cdef int nd = _lean_problem(x, axis, keepdims, dims, sizes)
    if nd < 0 or threads_over(cnp.PyArray_SIZE(<cnp.ndarray>x), _min_work_extreme) > 1:
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    m = cnp.PyArray_EMPTY(nd, dims, t, 0)
    index = cnp.PyArray_EMPTY(nd, dims, cnp.NPY_INT64, 0)
    cdef int64_t *ip = <int64_t *>cnp.PyArray_DATA(<cnp.ndarray>index)
    if t == cnp.NPY_FLOAT:
        _extreme_lean[float](<const float *>cnp.PyArray_DATA(<cnp.ndarray>x), sizes[0],
                             sizes[1], sizes[2], sign,
                             <float *>cnp.PyArray_DATA(<cnp.ndarray>m), ip)
    else:
        _extreme_lean[double](<const double *>cnp.PyArray_DATA(<cnp.ndarray>x), sizes[0],
                              sizes[1], sizes[2], sign,
                              <double *>cnp.PyArray_DATA(<cnp.ndarray>m), ip)
    return m, index
