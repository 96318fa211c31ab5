# im2col and col2im, shared (included textually) by _conv.pyx's two paths: the BLAS one and the
# direct one (_conv_direct.pxi). A buffer row (c, i, j) holds, for every output position, the
# input pixel under tap (i, j) of channel c, zero in the padding; rows are ``s_row`` apart, so a
# caller may pad them (the direct path pads each row to whole vectors).

cdef struct Geometry:
    int kh, kw, sh, sw, top, left, dh, dw
    Py_ssize_t Ho, Wo
    Py_ssize_t cg           # input channels per group
    Py_ssize_t group_rows   # rows per group in the buffer: C/G kh kw, + 1 with a ones row


cdef inline void _valid_span(Py_ssize_t off, int s, Py_ssize_t W, Py_ssize_t Wo,
                             Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """The output columns [lo, hi) whose input column ox * s + off lies in [0, W)."""
    lo[0] = 0 if off >= 0 else (-off + s - 1) // s
    hi[0] = 0 if W - 1 - off < 0 else (W - 1 - off) // s + 1
    if lo[0] > Wo:
        lo[0] = Wo
    if hi[0] > Wo:
        hi[0] = Wo
    if hi[0] < lo[0]:
        hi[0] = lo[0]


cdef inline (Py_ssize_t, Py_ssize_t) _next_channel_row(Py_ssize_t row, Py_ssize_t k,
                                                       Geometry g) noexcept nogil:
    """The buffer row of the same tap for the next input channel, and that channel's index in
    its group: kh kw rows on, or at the next group's start (no division in the loop)."""
    if k + 1 < g.cg:
        return row + g.kh * g.kw, k + 1
    return row + g.group_rows - (g.cg - 1) * g.kh * g.kw, 0


cdef inline bint _flat(Geometry g, Py_ssize_t W) noexcept nogil:
    """Whether a tap's Ho x Wo block is one shifted run of the input plane: stride 1 and rows
    as long as the input's ("same"-style padding, the common CNN case). Then the block is one
    masked copy, not Ho copies of Wo values (4 to 28 here, where the per-row cost dominated)."""
    return g.sh == 1 and g.sw == 1 and g.Wo == W


cdef struct Tap:
    Py_ssize_t ylo, yhi, lo, hi  # output rows and columns whose input lies inside the plane
    Py_ssize_t shift             # input offset of output (0, 0): (i dh - top) W + j dw - left


cdef inline Tap _tap(Py_ssize_t i, Py_ssize_t j, Py_ssize_t H, Py_ssize_t W,
                     Geometry g) noexcept nogil:
    """Where tap (i, j) reads: the same for every channel and sample, so computed once per
    tap (its divisions cost more than a 4x4 block's copy)."""
    cdef Tap t
    _valid_span(i * g.dh - g.top, g.sh, H, g.Ho, &t.ylo, &t.yhi)
    _valid_span(j * g.dw - g.left, g.sw, W, g.Wo, &t.lo, &t.hi)
    if t.lo >= t.hi:
        t.ylo = t.yhi
    t.shift = (i * g.dh - g.top) * W + j * g.dw - g.left
    return t


cdef inline void _run(Tap t, Py_ssize_t W, Py_ssize_t H, Py_ssize_t *p0,
                      Py_ssize_t *p1) noexcept nogil:
    """The flat path's run [p0, p1) of a tap: its valid rows, trimmed to the positions whose
    input index p + shift lies inside the plane (the ones trimmed are padding columns)."""
    p0[0] = t.ylo * W if t.ylo * W > -t.shift else -t.shift
    p1[0] = t.yhi * W if t.yhi * W < H * W - t.shift else H * W - t.shift
    if p1[0] < p0[0]:
        p1[0] = p0[0]


cdef void _im2col_flat(const floating *plane, floating *dst, Tap t, Py_ssize_t H,
                       Py_ssize_t W, Py_ssize_t L, const floating *mask) noexcept nogil:
    """One buffer row when the tap's block is one shifted run of the plane (_flat):
    dst[p] = plane[p + shift] where the column mask is 1, else 0. The load is unconditional
    (p + shift stays inside the plane over the run), so the loop vectorises as a load and a
    blend, with no per-row work (measured: conv2d forward 64x16x4x4 -> 32 253 against 280 us,
    128x1x28x28 -> 32 1.7 against 3.7 ms, against copying each row's valid span)."""
    cdef Py_ssize_t p, p0, p1
    cdef const floating *src = plane + t.shift
    cdef floating v
    _run(t, W, H, &p0, &p1)
    # a padding wider than the output (left or top) puts the run's start past the row's end:
    # the whole row is zeros, and nothing may be written past L
    p0, p1 = min(p0, L), min(p1, L)
    for p in range(p0):
        dst[p] = 0
    for p in range(p0, p1):
        v = src[p]
        dst[p] = v if mask[p] != 0 else 0
    for p in range(p1, L):
        dst[p] = 0


cdef void _im2col_tap(const floating *plane, floating *dst, Tap t, Py_ssize_t W,
                      Geometry g) noexcept nogil:
    """One buffer row: dst[(oy, ox)] = plane[oy sh W + ox sw + shift], 0 in the padding."""
    cdef Py_ssize_t oy, ox, p
    cdef const floating *src
    for p in range(t.ylo * g.Wo):
        dst[p] = 0
    for p in range(t.yhi * g.Wo, g.Ho * g.Wo):
        dst[p] = 0
    for oy in range(t.ylo, t.yhi):
        src = plane + oy * g.sh * W + t.shift
        for ox in range(t.lo):
            dst[oy * g.Wo + ox] = 0
        if g.sw == 1:
            for ox in range(t.lo, t.hi):
                dst[oy * g.Wo + ox] = src[ox]
        else:
            for ox in range(t.lo, t.hi):
                dst[oy * g.Wo + ox] = src[ox * g.sw]
        for ox in range(t.hi, g.Wo):
            dst[oy * g.Wo + ox] = 0


cdef void _im2col_sample(const floating[:, :, :, ::1] x, floating *cols, Py_ssize_t s_row,
                         Py_ssize_t n, Py_ssize_t groups, const floating *mask,
                         Geometry g) noexcept nogil:
    """cols[row(c, i, j) * s_row + (oy, ox)] = x[n, c, oy sh - top + i dh, ox sw - left + j dw],
    0 in the padding, and 1 in each group's ones row when the geometry has one: ``cols`` points
    at sample n's first row, rows are s_row apart. ``mask`` is _column_mask's (kw, Ho Wo) table
    when the geometry is _flat, else NULL."""
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3], L = g.Ho * g.Wo
    cdef Py_ssize_t c, i, j, p, row, k
    cdef floating *dst
    cdef Tap t
    for i in range(g.kh):
        for j in range(g.kw):
            t = _tap(i, j, H, W, g)
            row, k = i * g.kw + j, 0  # the row of channel c, the k-th of its group
            for c in range(C):
                if mask != NULL:
                    _im2col_flat(&x[n, c, 0, 0], cols + row * s_row, t, H, W, L, mask + j * L)
                else:
                    _im2col_tap(&x[n, c, 0, 0], cols + row * s_row, t, W, g)
                row, k = _next_channel_row(row, k, g)
    if g.group_rows > g.cg * g.kh * g.kw:  # the ones rows that carry the bias
        for c in range(groups):
            dst = cols + ((c + 1) * g.group_rows - 1) * s_row
            for p in range(g.Ho * g.Wo):
                dst[p] = 1


cdef void _col2im_sample(const floating *cols, Py_ssize_t s_row, floating[:, :, :, ::1] dx,
                         Py_ssize_t n, const floating *mask, Geometry g) noexcept nogil:
    """The adjoint of _im2col_sample: dx[n] += every row (c, i, j) of sample n's buffer
    ``cols`` (rows s_row apart) at its input pixels (the flat path adds 0 where the column mask
    is 0: one vectorised pass over the tap's run)."""
    cdef Py_ssize_t C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t c, i, j, oy, ox, p, p0, p1, row, k
    cdef floating *dst
    cdef const floating *src
    cdef const floating *m
    cdef floating v
    cdef Tap t
    for i in range(g.kh):
        for j in range(g.kw):
            t = _tap(i, j, H, W, g)
            row, k = i * g.kw + j, 0
            for c in range(C):
                src = cols + row * s_row
                row, k = _next_channel_row(row, k, g)
                if mask != NULL:
                    _run(t, W, H, &p0, &p1)
                    dst = &dx[n, c, 0, 0] + t.shift
                    m = mask + j * g.Ho * g.Wo
                    for p in range(p0, p1):
                        v = src[p]
                        dst[p] += v if m[p] != 0 else 0
                    continue
                for oy in range(t.ylo, t.yhi):
                    dst = &dx[n, c, 0, 0] + oy * g.sh * W + t.shift
                    if g.sw == 1:  # a unit stride the compiler can vectorise
                        for ox in range(t.lo, t.hi):
                            dst[ox] += src[oy * g.Wo + ox]
                    else:
                        for ox in range(t.lo, t.hi):
                            dst[ox * g.sw] += src[oy * g.Wo + ox]


cdef void _im2col(const floating[:, :, :, ::1] x, floating[::1] cols, Geometry g,
                  bint by_sample, Py_ssize_t groups, const floating *mask) noexcept nogil:
    """Fill ``cols`` as (N, groups, rows, Ho Wo) (by_sample) or (groups, rows, N, Ho Wo), with
    rows = group_rows; the caller sized it (N groups rows Ho Wo values)."""
    cdef Py_ssize_t n, N = x.shape[0], L = g.Ho * g.Wo, rows = groups * g.group_rows
    cdef Py_ssize_t s_n = rows * L if by_sample else L
    cdef Py_ssize_t s_row = L if by_sample else N * L
    cdef int nt = threads_for(cols.shape[0])
    if cols.shape[0] == 0:
        return
    for n in prange(N, num_threads=nt, schedule="static"):
        _im2col_sample(x, &cols[0] + n * s_n, s_row, n, groups, mask, g)


cdef void _col2im(const floating[:, :, ::1] cols, floating[:, :, :, ::1] dx, Geometry g,
                  const floating *mask) noexcept nogil:
    cdef Py_ssize_t n
    cdef int nt = threads_for(cols.shape[0] * cols.shape[1] * cols.shape[2])
    if cols.shape[1] == 0 or cols.shape[2] == 0:  # nothing to scatter
        return
    for n in prange(dx.shape[0], num_threads=nt, schedule="static"):
        _col2im_sample(&cols[n, 0, 0], cols.shape[2], dx, n, mask, g)


cdef _column_mask(Geometry g, Py_ssize_t W, dtype):
    """(kw, Ho Wo) of dtype: 1 where output column ox reads an input column inside the plane
    under tap column j (0 <= ox sw - left + j dw < W), else 0; None unless the geometry is
    _flat, whose loops use it."""
    if not _flat(g, W):
        return None
    cdef Py_ssize_t j, p, ix, L = g.Ho * g.Wo
    mask = np.empty((g.kw, L), np.float64)
    cdef double[:, ::1] m = mask
    for j in range(g.kw):
        for p in range(L):
            ix = p % g.Wo * g.sw - g.left + j * g.dw
            m[j, p] = 1.0 if 0 <= ix < W else 0.0
    return mask.astype(dtype, copy=False)


cdef Geometry _geometry(tuple wshape, tuple stride, tuple padding, tuple dilation, Ho, Wo,
                        bint ones_row):
    cdef Geometry g
    g.cg, g.kh, g.kw = wshape[1:]
    g.sh, g.sw = stride
    g.top, g.left = padding[0], padding[2]
    g.dh, g.dw = dilation
    g.Ho, g.Wo = Ho, Wo
    g.group_rows = g.cg * g.kh * g.kw + ones_row
    return g
