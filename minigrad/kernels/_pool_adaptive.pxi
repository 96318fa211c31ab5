# Included by _pool.pyx: adaptive average pooling (windows from the output size), with its own
# loops for the global (1x1) case.

# ----------------------------------------------------------------- adaptive average pooling
#
# Output row i averages input rows [floor(i*H/OH), ceil((i+1)*H/OH)) (columns alike). With
# stride 0 and no padding every window "starts" at 0, so these bounds are its taps, their length
# its divisor factor, and the average loops above serve unchanged.


# Global average pooling (a 1x1 output, the usual head of a CNN) has loops of its own: the
# general ones pay a window setup per plane and, on the small planes it sees (4x4 to 7x7), the
# fold of _row_sum's SIMD lanes; together those cost more than the sum itself (measured on
# 64x32x4x4: 60 us forward and 48 us backward, against 8 and 5 us here).
cdef enum:
    GLOBAL_ROW_SUM_MIN = 64  # planes at least this large are summed by _row_sum's lanes


cdef extern from "_pool_global.h" nogil:
    void mg_global_means_f(const float *x, float *y, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t S)
    void mg_global_means_d(const double *x, double *y, Py_ssize_t p0, Py_ssize_t p1,
                           Py_ssize_t S)


cdef inline void _global_means(const floating *x, floating *y, Py_ssize_t p0, Py_ssize_t p1,
                               Py_ssize_t S) noexcept nogil:
    """y[p] = the float64 mean of plane p (S values) for planes [p0, p1)."""
    cdef Py_ssize_t p
    if S >= GLOBAL_ROW_SUM_MIN:
        for p in range(p0, p1):
            y[p] = <floating>(_row_sum(x + p * S, S) / <double>S)
    elif floating is float:
        mg_global_means_f(x, y, p0, p1, S)
    else:
        mg_global_means_d(x, y, p0, p1, S)


cdef void _global_forward(const floating *x, floating *y, Py_ssize_t planes,
                          Py_ssize_t S) noexcept nogil:
    """y[n, c] = the float64 mean of plane x[n, c] (planes of S values)."""
    cdef Py_ssize_t c, chunk
    cdef int nt = threads_for(planes * S)
    if nt == 1:  # (a prange of one thread still enters and leaves an OpenMP region)
        _global_means(x, y, 0, planes, S)
        return
    chunk = (planes + nt - 1) // nt
    for c in prange(nt, num_threads=nt, schedule="static"):
        _global_means(x, y, min(planes, c * chunk), min(planes, c * chunk + chunk), S)


cdef void _global_backward(const floating *grad, floating *dx, Py_ssize_t planes,
                           Py_ssize_t S) noexcept nogil:
    """dx[n, c] = grad[n, c] / (H W) at every pixel of the plane (+ 0.0: the value the
    general scatter gives, which adds to zeros and so turns a -0.0 share into +0.0)."""
    cdef Py_ssize_t p, k
    cdef floating share
    cdef int nt = threads_for(planes * S)
    if nt == 1:
        for p in range(planes):
            share = <floating>(grad[p] / <double>S) + <floating>0.0
            for k in range(S):
                dx[p * S + k] = share
        return
    for p in prange(planes, num_threads=nt, schedule="static"):
        share = <floating>(grad[p] / <double>S) + <floating>0.0
        for k in range(S):
            dx[p * S + k] = share


def _adaptive_taps(Py_ssize_t size, Py_ssize_t out):
    """(3, out): first and end input index of each output's window, and its length."""
    taps = np.empty((3, out), np.intp)
    cdef Py_ssize_t[:, ::1] t = taps
    cdef Py_ssize_t i
    for i in range(out):
        t[0, i] = i * size // out
        t[1, i] = ((i + 1) * size + out - 1) // out
        t[2, i] = t[1, i] - t[0, i]
    return taps


def adaptive_avg_pool2d_forward(x, out_size):
    """y[i, j] = mean of x over rows [floor(i*H/OH), ceil((i+1)*H/OH)) and the columns alike
    (windows overlap when the sizes do not divide); an empty window gives 0.

    Returns:
        y of shape (N, C) + out_size, x's dtype.
    """
    fn = "adaptive_avg_pool2d_forward"
    pool_input(fn, "x", x)
    if not _good_pair(out_size, 0):
        pool_pairs(fn, out_size=out_size)  # raises the error
    OH, OW = out_size
    cdef cnp.ndarray a = x
    cdef Py_ssize_t N = a.shape[0], C = a.shape[1], H = a.shape[2], W = a.shape[3]
    cdef void *px
    cdef void *py
    if OH == 1 and OW == 1 and N * C * H * W:  # global: every output is written
        y = _new4(N, C, 1, 1, cnp.PyArray_TYPE(a))
        x = _contiguous(x)
        px, py = _data(x), _data(y)
        with nogil:
            if cnp.PyArray_ITEMSIZE(a) == 4:
                _global_forward[float](<const float *>px, <float *>py, N * C, H * W)
            else:
                _global_forward[double](<const double *>px, <double *>py, N * C, H * W)
        return y
    y = np.zeros((N, C, OH, OW), x.dtype)
    if y.size == 0 or x.size == 0:
        return y
    x = np.ascontiguousarray(x)
    rows, cols = _adaptive_taps(H, OH), _adaptive_taps(W, OW)
    # start 0 and stride 1: the taps [start, end) of each window are input indices themselves
    cdef Geometry g = _geometry(H, W, (OH, OW), (0, 0), (0, 0), (1, 1), rows, cols)
    if x.dtype.itemsize == 4:
        _avg_forward[float](x, y, &g)
    else:
        _avg_forward[double](x, y, &g)
    return y


def adaptive_avg_pool2d_backward(grad_out, in_size):
    """dx[h, w] = sum over the windows holding (h, w) of grad_out / window size.

    Returns:
        dx of shape (N, C) + in_size, grad_out's dtype.
    """
    fn = "adaptive_avg_pool2d_backward"
    pool_input(fn, "grad_out", grad_out)
    if not _good_pair(in_size, 0):
        pool_pairs(fn, in_size=in_size)  # raises the error
    cdef Py_ssize_t H = in_size[0], W = in_size[1]
    cdef cnp.ndarray go = grad_out
    cdef Py_ssize_t N = go.shape[0], C = go.shape[1], OH = go.shape[2], OW = go.shape[3]
    cdef void *pg
    cdef void *pd
    if OH == 1 and OW == 1 and N * C * H * W:
        dx = _new4(N, C, H, W, cnp.PyArray_TYPE(go))  # every value is written
        grad_out = _contiguous(grad_out)
        pg, pd = _data(grad_out), _data(dx)
        with nogil:
            if cnp.PyArray_ITEMSIZE(go) == 4:
                _global_backward[float](<const float *>pg, <float *>pd, N * C, H * W)
            else:
                _global_backward[double](<const double *>pg, <double *>pd, N * C, H * W)
        return dx
    dx = np.zeros((N, C, H, W), grad_out.dtype)
    if grad_out.size == 0 or dx.size == 0:
        return dx
    grad_out = np.ascontiguousarray(grad_out)
    rows, cols = _adaptive_taps(H, OH), _adaptive_taps(W, OW)
    cdef Geometry g = _geometry(H, W, (OH, OW), (0, 0), (0, 0), (1, 1), rows, cols)
    if dx.dtype.itemsize == 4:
        _avg_backward[float](grad_out, dx, &g)
    else:
        _avg_backward[double](grad_out, dx, &g)
    return dx
