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


cdef inline double _small_sum(const floating *x, Py_ssize_t n) noexcept nogil:
    """The float64 sum of a few values, over four independent partial sums."""
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef Py_ssize_t k = 0
    while k + 4 <= n:
        a0 += x[k]
        a1 += x[k + 1]
        a2 += x[k + 2]
        a3 += x[k + 3]
        k += 4
    while k < n:
        a0 += x[k]
        k += 1
    return (a0 + a1) + (a2 + a3)


cdef void _global_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y) noexcept nogil:
    """y[n, c] = the float64 mean of plane x[n, c]."""
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1], S = x.shape[2] * x.shape[3], p
    cdef const floating *src = &x[0, 0, 0, 0]
    cdef floating *dst = &y[0, 0, 0, 0]
    cdef int nt = threads_for(planes * S)
    if nt == 1:  # (a prange of one thread still enters and leaves an OpenMP region)
        for p in range(planes):
            if S >= GLOBAL_ROW_SUM_MIN:
                dst[p] = <floating>(_row_sum(src + p * S, S) / <double>S)
            else:
                dst[p] = <floating>(_small_sum(src + p * S, S) / <double>S)
        return
    for p in prange(planes, num_threads=nt, schedule="static"):
        if S >= GLOBAL_ROW_SUM_MIN:
            dst[p] = <floating>(_row_sum(src + p * S, S) / <double>S)
        else:
            dst[p] = <floating>(_small_sum(src + p * S, S) / <double>S)


cdef void _global_backward(const floating[:, :, :, ::1] grad,
                           floating[:, :, :, ::1] dx) noexcept nogil:
    """dx[n, c] = grad[n, c] / (H W) at every pixel of the plane (+ 0.0: the value the
    general scatter gives, which adds to zeros and so turns a -0.0 share into +0.0)."""
    cdef Py_ssize_t planes = dx.shape[0] * dx.shape[1], S = dx.shape[2] * dx.shape[3], p, k
    cdef const floating *src = &grad[0, 0, 0, 0]
    cdef floating *dst = &dx[0, 0, 0, 0]
    cdef floating share
    cdef int nt = threads_for(planes * S)
    if nt == 1:
        for p in range(planes):
            share = <floating>(src[p] / <double>S) + <floating>0.0
            for k in range(S):
                dst[p * S + k] = share
        return
    for p in prange(planes, num_threads=nt, schedule="static"):
        share = <floating>(src[p] / <double>S) + <floating>0.0
        for k in range(S):
            dst[p * S + k] = share


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
    (OH, OW), = pool_pairs(fn, out_size=out_size)
    N, C, H, W = x.shape
    y = np.zeros((N, C, OH, OW), x.dtype)
    if y.size == 0 or x.size == 0:
        return y
    x = np.ascontiguousarray(x)
    if OH == 1 and OW == 1:
        if x.dtype.itemsize == 4:
            _global_forward[float](x, y)
        else:
            _global_forward[double](x, y)
        return y
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
    (H, W), = pool_pairs(fn, in_size=in_size)
    N, C, OH, OW = grad_out.shape
    if OH == 1 and OW == 1 and grad_out.size and N * C * H * W:
        dx = np.empty((N, C, H, W), grad_out.dtype)  # every value is written
        grad_out = np.ascontiguousarray(grad_out)
        if dx.dtype.itemsize == 4:
            _global_backward[float](grad_out, dx)
        else:
            _global_backward[double](grad_out, dx)
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
