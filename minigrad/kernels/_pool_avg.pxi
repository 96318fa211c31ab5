# Included by _pool.pyx: average pooling, forward and backward, on _pool.pyx's Geometry and
# tap tables.

# -------------------------------------------------------------------------- average pooling


cdef void _avg_pairs(const floating *x, floating *y, Py_ssize_t OH, Py_ssize_t OW,
                     Py_ssize_t W) noexcept nogil:
    """One plane of 2x2 windows at stride 2, all inside it: the taps summed in float64 in the
    order of the general loop (from 0.0, which turns a sum of -0.0 into +0.0), over 4."""
    cdef Py_ssize_t oh, ow
    cdef const floating *top
    cdef const floating *bottom
    for oh in range(OH):
        top = x + 2 * oh * W
        bottom = top + W
        for ow in range(OW):
            y[oh * OW + ow] = <floating>((0.0 + top[2 * ow] + top[2 * ow + 1]
                                          + bottom[2 * ow] + bottom[2 * ow + 1]) / 4)


cdef void _avg_plane(const floating *x, floating *y, const Geometry *geometry) noexcept nogil:
    """One plane: the float64 sum of each window over its divisor (0 for an empty window)."""
    # a local copy: stores through the output pointers cannot change it, so it stays in registers
    cdef Geometry g = geometry[0]
    if g.pairs and g.W != 2:  # a plane 2 wide is summed as one block of 4 below
        _avg_pairs(x, y, g.OH, g.OW, g.W)
        return
    cdef Py_ssize_t oh, ow, i, j, h0, w0, ilo, ihi, jlo, jhi, div
    cdef const floating *row
    cdef double acc
    for oh in range(g.OH):
        h0 = oh * g.sh - g.ph
        ilo, ihi = g.rows[oh], g.rows[g.OH + oh]
        for ow in range(g.OW):
            w0 = ow * g.sw - g.pw
            jlo, jhi = g.cols[ow], g.cols[g.OW + ow]
            acc = 0.0
            if w0 + jlo == 0 and w0 + jhi == g.W:  # whole rows: one contiguous block
                acc = _row_sum(x + (h0 + ilo) * g.W, (ihi - ilo) * g.W)
            elif jhi - jlo >= ROW_SUM_MIN:
                for i in range(ilo, ihi):
                    acc += _row_sum(x + (h0 + i) * g.W + w0 + jlo, jhi - jlo)
            else:
                for i in range(ilo, ihi):
                    row = x + (h0 + i) * g.W + w0
                    for j in range(jlo, jhi):
                        acc += row[j]
            div = g.rows[2 * g.OH + oh] * g.cols[2 * g.OW + ow]
            y[oh * g.OW + ow] = <floating>(acc / div) if div > 0 else 0


cdef void _avg_scatter(const floating *grad, floating *dx, const Geometry *geometry) noexcept nogil:
    """One plane: each output's gradient over its divisor, added to every tap of its window."""
    # a local copy: stores through the output pointers cannot change it, so it stays in registers
    cdef Geometry g = geometry[0]
    cdef Py_ssize_t oh, ow, i, j, h0, w0, ilo, ihi, jlo, jhi, div
    cdef floating *row
    cdef floating share
    for oh in range(g.OH):
        h0 = oh * g.sh - g.ph
        ilo, ihi = g.rows[oh], g.rows[g.OH + oh]
        for ow in range(g.OW):
            w0 = ow * g.sw - g.pw
            jlo, jhi = g.cols[ow], g.cols[g.OW + ow]
            div = g.rows[2 * g.OH + oh] * g.cols[2 * g.OW + ow]
            if div == 0:
                continue
            share = <floating>(grad[oh * g.OW + ow] / <double>div)
            for i in range(ilo, ihi):
                row = dx + (h0 + i) * g.W + w0
                for j in range(jlo, jhi):
                    row[j] += share


cdef void _avg_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                       const Geometry *g) noexcept nogil:
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1], p
    cdef Py_ssize_t size_in = g.H * g.W, size_out = g.OH * g.OW
    cdef int nt = threads_for(planes * (size_in + size_out))
    if nt == 1:
        for p in range(planes):
            _avg_plane(&x[0, 0, 0, 0] + p * size_in, &y[0, 0, 0, 0] + p * size_out, g)
        return
    for p in prange(planes, num_threads=nt, schedule="static"):
        _avg_plane(&x[0, 0, 0, 0] + p * size_in, &y[0, 0, 0, 0] + p * size_out, g)


cdef void _avg_backward(const floating[:, :, :, ::1] grad, floating[:, :, :, ::1] dx,
                        const Geometry *g) noexcept nogil:
    cdef Py_ssize_t planes = grad.shape[0] * grad.shape[1], p
    cdef Py_ssize_t size_in = g.H * g.W, size_out = g.OH * g.OW
    cdef int nt = threads_for(planes * (size_in + size_out))
    if nt == 1:
        for p in range(planes):
            _avg_scatter(&grad[0, 0, 0, 0] + p * size_out, &dx[0, 0, 0, 0] + p * size_in, g)
        return
    for p in prange(planes, num_threads=nt, schedule="static"):
        _avg_scatter(&grad[0, 0, 0, 0] + p * size_out, &dx[0, 0, 0, 0] + p * size_in, g)


def avg_pool2d_forward(x, kernel_size, stride, padding, out_size, count_include_pad):
    """y = sum over each window / its divisor: PyTorch's rule, the window clipped to the padded
    input (count_include_pad) or to the input itself (not); an empty window gives 0.

    Returns:
        y of shape (N, C, oh, ow), x's dtype.
    """
    fn = "avg_pool2d_forward"
    pool_input(fn, "x", x)
    k, s, p, o = pool_pairs(fn, kernel_size=kernel_size, stride=stride, padding=padding,
                            out_size=out_size)
    N, C, H, W = x.shape
    y = np.zeros((N, C) + o, x.dtype)
    if y.size == 0 or x.size == 0:
        return y
    x = np.ascontiguousarray(x)
    pad = bool(count_include_pad)
    rows, cols = _taps(H, k[0], s[0], p[0], 1, o[0], pad), _taps(W, k[1], s[1], p[1], 1, o[1], pad)
    cdef Geometry g = _geometry(H, W, o, s, p, (1, 1), rows, cols)
    g.pairs = _is_pairs(k, s, p, (1, 1), H, W, o)
    if x.dtype.itemsize == 4:
        _avg_forward[float](x, y, &g)
    else:
        _avg_forward[double](x, y, &g)
    return y


def avg_pool2d_backward(grad_out, in_size, kernel_size, stride, padding, count_include_pad):
    """dx[h, w] = sum over the windows holding (h, w) of grad_out / divisor.

    Returns:
        dx of shape (N, C, H, W) = in_size, grad_out's dtype.
    """
    fn = "avg_pool2d_backward"
    pool_input(fn, "grad_out", grad_out)
    (H, W), k, s, p = pool_pairs(fn, in_size=in_size, kernel_size=kernel_size, stride=stride,
                                 padding=padding)
    N, C, OH, OW = grad_out.shape
    dx = np.zeros((N, C, H, W), grad_out.dtype)
    if grad_out.size == 0 or dx.size == 0:
        return dx
    grad_out = np.ascontiguousarray(grad_out)
    pad = bool(count_include_pad)
    rows, cols = _taps(H, k[0], s[0], p[0], 1, OH, pad), _taps(W, k[1], s[1], p[1], 1, OW, pad)
    cdef Geometry g = _geometry(H, W, (OH, OW), s, p, (1, 1), rows, cols)
    if dx.dtype.itemsize == 4:
        _avg_backward[float](grad_out, dx, &g)
    else:
        _avg_backward[double](grad_out, dx, &g)
    return dx
