# The direct path's wrappers (included by _conv.pyx after _conv_direct.pxi): the size rule that
# chooses it, its geometry plan and row tables, and the calls into the nogil loops.

# Which algorithm conv2d_forward and conv2d_backward run: "auto" (the size rule of _use_direct),
# or "direct" / "im2col" (a module attribute, so that tests can force either; "direct" still
# needs a geometry the direct path covers).
PATH = "auto"

# Direct products on this many multiply-adds or more split the work across threads. Measured
# on the Intel Xeon (AVX-512, 2 cores) with the machine otherwise quiet, one thread against
# two, median of 15 interleaved runs of 50 calls, us (forward / dW / dx):
#   64x1x8x8 -> 16 (0.6M)      16.2 / 37.3 / 34.9  against  17.5 / 60.4 / 34.4
#   64x8x4x4 -> 16 (1.2M)      23.0 / 49.1 / 42.5  against  20.4 / 52.4 / 36.1
#   32x16x4x4 -> 32 (2.4M)     40.7 / 60.2 / 42.3  against  30.7 / 53.3 / 36.0
#   64x16x4x4 -> 32 (4.7M)     72.0 / 109 / 76.8   against  50.2 / 83.4 / 56.3
# and the digits CNN step (its second convolution, 4.7M, on two threads) 1002 -> 929 us. A
# second thread pays from about 2M multiply-adds, as long as the other core is free: with
# other processes busy on both cores it paid at none of these sizes (64x16x4x4 -> 32: 73 / 135
# / 81 against 86 / 138 / 87; 128x32x14x14 -> 64, 462M, min of 5: 9418 / 9860 / 8696 against
# 9496 / 10180 / 8837), and on a busy machine mg.set_num_threads(1) is the better setting. An
# AMD EPYC, with another process on one core, gave 101 / 192 / 110 against 113 / 214 / 122 at
# 4.7M and still a shorter forward at 462M (13.3 -> 12.4 ms).
DIRECT_PARALLEL_MIN_MACS = 1 << 21  # a module attribute, so that tests can force threads

cdef enum:
    WG_FEW_ROWS = 16
    DIRECT_MIN_ROWS = 32
    DIRECT_FORWARD = 0          # what _use_direct decides for: conv2d_forward,
    DIRECT_DX = 1               # conv2d_backward's dx,
    DIRECT_DW = 2               # and its dW


cdef bint _use_direct(x, weight, stride, Py_ssize_t Ho, Py_ssize_t Wo, int kind):
    """Whether the direct path runs this convolution's forward, dx or dW (kind): PATH, then the
    measured rule (the tables at the top of _conv_direct.pxi): forward and dW on every geometry
    the path covers, dx with at least DIRECT_MIN_ROWS rows (C/G kh kw)."""
    cdef cnp.ndarray a = x, w = weight
    if cnp.PyArray_SIZE(a) == 0 or cnp.PyArray_SIZE(w) == 0 or Ho * Wo == 0:
        return False
    if stride != (1, 1) or Wo != a.shape[3]:  # not a geometry the direct path covers
        return False
    path = PATH
    if path == "im2col":
        return False
    if path == "direct" or kind != DIRECT_DX:
        return True
    return w.shape[1] * w.shape[2] * w.shape[3] >= DIRECT_MIN_ROWS


_KINDS = {"forward": DIRECT_FORWARD, "dx": DIRECT_DX, "dw": DIRECT_DW}


def _algorithm(x, weight, stride, Py_ssize_t Ho, Py_ssize_t Wo, kind="forward"):
    """"direct" or "im2col": the path of conv2d_forward ("forward") or of conv2d_backward's
    "dx" or "dw"."""
    return "direct" if _use_direct(x, weight, stride, Ho, Wo, _KINDS[kind]) else "im2col"


cdef Direct _direct_plan(cnp.ndarray x, cnp.ndarray weight, Py_ssize_t groups, tuple padding,
                         tuple dilation, Py_ssize_t Ho):
    """The sizes of one call (x, weight: the checked arrays; their shapes read in C)."""
    cdef Direct d
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x)
    cdef Py_ssize_t vl = MG_VL_F if itemsize == 4 else MG_VL_D
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t macs
    d.N, d.C, d.O, d.groups = x.shape[0], x.shape[1], weight.shape[0], groups
    d.cg, d.og, d.taps = weight.shape[1], weight.shape[0] // groups, kh * kw
    d.L, d.Lx = Ho * W, H * W
    d.ld, d.ldx = (d.L + vl - 1) // vl * vl, (d.Lx + vl - 1) // vl * vl
    # tap shifts s = (i dh - top) W + j dw - left run from s_min (tap (0, 0)) to s_max
    cdef Py_ssize_t s_min = -padding[0] * W - padding[2]
    cdef Py_ssize_t s_max = ((kh - 1) * dilation[0] - padding[0]) * W + (kw - 1) * dilation[1] \
        - padding[2]
    d.xfront = max(0, -s_min)  # x planes are read at xfront + s + p, p < ld
    d.xplane = d.xfront + max(d.Lx, s_max + d.ld)
    d.yfront = max(0, s_max)  # dY planes at yfront - s + q, q < ldx, and yfront + p, p < ld
    d.yplane = d.yfront + max(d.ld, d.ldx - s_min)
    d.vl = vl
    # dW tiles of 4 out channels x 4 buffer rows, or x 3 when that divides the rows and 4 does
    # not (nine rows: 3 + 3 + 3, not 4 + 4 + 1)
    d.tall = 3 if d.cg * d.taps % 4 != 0 and d.cg * d.taps % 3 == 0 else 4
    d.chunk = max(vl, WG_CHUNK_BYTES // itemsize // vl * vl)
    d.lp = _round_up(d.L, vl)
    # dW: by broadcasts (mg_wgrad_bc) for layers with more than WG_FEW_ROWS rows (C/G kh kw),
    # else vectorised over positions (mg_wgrad). Measured dW alone, one thread, min of 25,
    # alternating processes, us: 64x1x8x8 -> 16 (9 rows) 26 against 62 (and 47 on the im2col
    # path); 64x16x4x4 -> 32 (144 rows) 118 against 109, 64x16x8x8 -> 32 386 against 360.
    d.bc = d.cg * d.taps > WG_FEW_ROWS
    # mg_wgrad reads dY's rows in place when they are whole vectors, else copies padded with
    # zeros (in place against copied, dW alone, min of 15 interleaved: 64x1x8x8 -> 16 25
    # against 35 us, 128x1x28x28 -> 32 955 against 1196)
    d.copy_dy = d.lp != d.L
    d.kw = kw
    d.ogp = (d.og + vl - 1) // vl * vl
    d.kgp = (d.cg * d.taps + MG_BC_ROWS - 1) // MG_BC_ROWS * MG_BC_ROWS
    d.xm = kw * d.C * d.xplane + d.L
    d.oga = (d.og + MG_GEMM_ROWS - 1) // MG_GEMM_ROWS * MG_GEMM_ROWS
    d.cga = (d.cg + MG_GEMM_ROWS - 1) // MG_GEMM_ROWS * MG_GEMM_ROWS
    macs = d.N * d.O * d.cg * d.taps * d.L
    d.nt = _num_threads if macs >= DIRECT_PARALLEL_MIN_MACS else 1
    return d


cdef inline void *_data(a):
    """The first value of a C-contiguous ndarray the checks accepted, or NULL for None (the
    loops take pointers: a typed memoryview per argument cost about a microsecond each)."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


# What a geometry's tables depend on: C, H, W, O, C/G, kh, kw, groups, padding (4), dilation
# (2) and the itemsize
cdef enum:
    GEOMETRY_SIZE = 15


cdef class _Tables:
    """The row tables of one geometry (see Taps) and the pointers into them: built once, kept
    in _tables, so that a call of a known geometry looks them up instead of rebuilding."""
    cdef object arrays  # keeps the memory Taps points into
    cdef Taps taps
    cdef Py_ssize_t geometry[GEOMETRY_SIZE]


_tables = []  # the _Tables of the geometries seen, at most 64 (a network has a few)


cdef _Tables _direct_tables(cnp.ndarray x, cnp.ndarray weight, Direct d, tuple padding,
                            tuple dilation):
    """The tables of this geometry (off, mrow, mask, off_x, mrow_x, mask_x, off_w, keep):
    found by comparing the geometry's sizes (a few C integers; a dict keyed by a tuple of
    tuples cost more to hash than this whole lookup), else built."""
    cdef Py_ssize_t geometry[GEOMETRY_SIZE]
    cdef Py_ssize_t k
    cdef _Tables tables
    for k in range(3):
        geometry[k] = x.shape[k + 1]
    for k in range(4):
        geometry[3 + k] = weight.shape[k]
    geometry[7] = d.groups
    for k in range(4):
        geometry[8 + k] = padding[k]
    geometry[12], geometry[13] = dilation[0], dilation[1]
    geometry[14] = cnp.PyArray_ITEMSIZE(x)
    for found in _tables:
        tables = <_Tables>found
        if memcmp(tables.geometry, geometry, sizeof(geometry)) == 0:
            return tables
    tables = _build_tables(geometry[2], geometry[6], d, padding, dilation, geometry[14])
    memcpy(tables.geometry, geometry, sizeof(geometry))
    if len(_tables) >= 64:
        _tables.clear()
    _tables.append(tables)
    return tables


cdef _Tables _build_tables(Py_ssize_t W, Py_ssize_t kw, Direct d, padding, dilation,
                           Py_ssize_t itemsize):
    """The tables of one geometry, as arrays, and the pointers into them."""
    i, j = np.divmod(np.arange(d.taps), kw)
    shift = (i * dilation[0] - padding[0]) * W + j * dilation[1] - padding[2]
    reach = np.arange(kw)[:, None] * dilation[1] - padding[2]  # a tap column's offset
    p, q = np.arange(d.ld), np.arange(d.ldx)
    ones = np.int32(-1) if itemsize == 4 else np.int64(-1)
    mask = ((p < d.L) & (p % W + reach >= 0) & (p % W + reach < W)) * ones
    mask_x = ((q < d.Lx) & (q % W - reach >= 0) & (q % W - reach < W)) * ones
    u = np.arange(d.Lx)
    keep = ((u % W - reach >= 0) & (u % W - reach < W)) * ones
    off_w = np.full((d.groups, d.kgp), kw * d.C * d.xplane, np.intp)  # padding rows: zeros
    c = np.arange(d.groups)[:, None] * d.cg + np.arange(d.cg)  # (G, C/G) channels
    off_w[:, :d.cg * d.taps] = (j * d.C * d.xplane + c[..., None] * d.xplane + d.xfront
                                + shift).reshape(d.groups, -1)
    arrays = tuple(np.ascontiguousarray(a) for a in (
        (np.arange(d.cg)[:, None] * d.xplane + d.xfront + shift).ravel().astype(np.intp),
        np.tile(j * d.ld, d.cg).astype(np.intp), mask.astype(ones.dtype),
        (np.arange(d.og)[:, None] * d.yplane + d.yfront - shift).ravel().astype(np.intp),
        np.tile(j * d.ldx, d.og).astype(np.intp), mask_x.astype(ones.dtype), off_w,
        keep.astype(ones.dtype),
    ))
    cdef _Tables tables = _Tables()
    tables.arrays = arrays
    tables.taps.off, tables.taps.mrow = <Py_ssize_t *>_data(arrays[0]), \
        <Py_ssize_t *>_data(arrays[1])
    tables.taps.mask = _data(arrays[2])
    tables.taps.off_x, tables.taps.mrow_x = <Py_ssize_t *>_data(arrays[3]), \
        <Py_ssize_t *>_data(arrays[4])
    tables.taps.mask_x = _data(arrays[5])
    tables.taps.off_w, tables.taps.keep = <Py_ssize_t *>_data(arrays[6]), _data(arrays[7])
    return tables


cdef cnp.ndarray _planes(Direct d, Py_ssize_t rows, Py_ssize_t L, Py_ssize_t ld,
                         Py_ssize_t H, Py_ssize_t W, int typenum):
    """An uninitialised (N, rows, ld) array for the loops to fill, made (N, rows, H, W) with
    ld = L = H W (no padding to cut off afterwards, no reshape)."""
    cdef cnp.npy_intp dims[4]
    dims[0], dims[1] = d.N, rows
    if ld == L:
        dims[2], dims[3] = H, W
        return <cnp.ndarray>cnp.PyArray_EMPTY(4, dims, typenum, 0)
    dims[2] = ld
    return <cnp.ndarray>cnp.PyArray_EMPTY(3, dims, typenum, 0)


cdef object _cut(cnp.ndarray a, Direct d, Py_ssize_t L, Py_ssize_t ld, Py_ssize_t H,
                 Py_ssize_t W):
    """_planes' array as (N, rows, H, W): its rows cut from ld to L values when padded."""
    if ld == L:
        return a
    return np.ascontiguousarray(a[..., :L]).reshape(d.N, a.shape[1], H, W)


cdef object _forward_direct(cnp.ndarray x, weight, bias, Py_ssize_t groups, tuple padding,
                            tuple dilation, Py_ssize_t Ho):
    """conv2d_forward on the direct path: x contiguous, arguments checked."""
    w = _contiguous(weight)
    cdef Direct d = _direct_plan(x, w, groups, padding, dilation, Ho)
    cdef _Tables tables = _direct_tables(x, w, d, padding, dilation)
    b = None if bias is None else _contiguous(bias)
    y = _planes(d, d.O, d.L, d.ld, Ho, x.shape[3], cnp.PyArray_TYPE(x))
    cdef Py_ssize_t wt_size = groups * d.cg * d.taps * d.oga
    work = _scratch((wt_size + d.nt * d.C * d.xplane) * cnp.PyArray_ITEMSIZE(x))
    cdef void *px = _data(x)
    cdef void *pw = _data(w)
    cdef void *pb = _data(b)
    cdef void *py = _data(y)
    cdef void *pk = _data(work)
    with nogil:
        if d.vl == MG_VL_F:
            _forward_run[float](<const float *>px, <const float *>pw, <const float *>pb,
                                <float *>py, <float *>pk, wt_size, tables.taps, d)
        else:
            _forward_run[double](<const double *>px, <const double *>pw, <const double *>pb,
                                 <double *>py, <double *>pk, wt_size, tables.taps, d)
    return _cut(y, d, d.L, d.ld, Ho, x.shape[3])


cdef void _forward_run(const floating *x, const floating *w, const floating *b, floating *y,
                       floating *work, Py_ssize_t wt_size, Taps t, Direct d) noexcept nogil:
    """work: W^T packed (wt_size values), then the threads' padded planes."""
    _pack_forward(w, work, d)
    _direct_forward(x, work, b, y, work + wt_size, t, d)


cdef object _backward_direct(dy, cnp.ndarray x, weight, Py_ssize_t groups, tuple needs,
                             tuple padding, tuple dilation, Py_ssize_t Ho):
    """conv2d_backward on the direct path: dy (N, O, Ho, Wo) and x contiguous, arguments
    checked. None when dx is asked for and a weight is inf or NaN: dx's products multiply every
    weight by the zeros of the padded dY planes and of the masked positions, and 0 * inf is NaN
    where the im2col path and the twin add no term (a tap that reaches no output from a
    pixel)."""
    w = _contiguous(weight)
    if needs[0] and not _all_finite(w):
        return None
    cdef Direct d = _direct_plan(x, w, groups, padding, dilation, Ho)
    cdef _Tables tables = _direct_tables(x, w, d, padding, dilation)
    if needs[0] and needs[1] and d.bc and d.nt == 2 and _together_fits(d, x):
        return _backward_together(dy, x, w, needs[2], tables.taps, d)
    # dx's work: W packed for dx (wx_size values), then the threads' padded dY planes
    cdef Py_ssize_t wx_size = d.O * d.taps * d.cga
    dx = dw = db = None
    if needs[2]:
        db = _channel_sums(dy, d.N, d.O, d.L)
    if needs[0]:
        dx = _planes(d, d.C, d.Lx, d.ldx, x.shape[2], x.shape[3], cnp.PyArray_TYPE(x))
        work = _scratch((wx_size + d.nt * d.O * d.yplane) * cnp.PyArray_ITEMSIZE(x))
        _dx_run(_data(dy), _data(w), _data(dx), _data(work), wx_size, tables.taps, d)
        dx = _cut(dx, d, d.Lx, d.ldx, x.shape[2], x.shape[3])
    if needs[1]:
        dw = _direct_dw(dy, x, w, tables.taps, d)
    return dx, dw, db


cdef void _dx_run(const void *dy, const void *w, void *dx, void *work, Py_ssize_t wx_size,
                  Taps t, Direct d) noexcept nogil:
    """W packed for dx into work (wx_size values), then dx from the padded dY planes after."""
    if d.vl == MG_VL_F:
        _pack_dx[float](<const float *>w, <float *>work, d)
        _direct_dx[float](<const float *>dy, <float *>work, <float *>dx,
                          <float *>work + wx_size, t, d)
    else:
        _pack_dx[double](<const double *>w, <double *>work, d)
        _direct_dx[double](<const double *>dy, <double *>work, <double *>dx,
                           <double *>work + wx_size, t, d)


cdef _direct_dw(dy, cnp.ndarray x, cnp.ndarray weight, Taps t, Direct d):
    """dW on the direct path, by broadcasts or over positions (d.bc)."""
    cdef Py_ssize_t nb, size, size_y, per, itemsize = cnp.PyArray_ITEMSIZE(x)
    cdef int typenum = cnp.PyArray_TYPE(x)
    cdef cnp.npy_intp dims[3]
    if d.bc:
        dims[0], dims[1], dims[2] = d.groups, d.kgp, d.ogp
        dwt = cnp.PyArray_ZEROS(3, dims, typenum, 0)
        dw = cnp.PyArray_EMPTY(4, weight.shape, typenum, 0)
        per = d.L * d.groups * d.ogp + d.xm  # dY^T and the masked copies, per sample
        nb = _block(d.N, per, itemsize)
        work = _scratch(nb * per * itemsize)
        _wgrad_bc_run(_data(dy), _data(x), _data(dwt), _data(dw), _data(work), nb, t, d)
    else:
        dw = cnp.PyArray_ZEROS(4, weight.shape, typenum, 0)
        # the buffer: its rows for a block of samples, 64 bytes aligned (one vector more for
        # the start), dY's padded copies when needed, the threads' padded planes
        nb = max(1, min(d.N, d.chunk // d.lp))
        size = d.groups * d.cg * d.taps * _row_stride(nb * d.lp, d.vl) + d.vl
        size_y = d.O * _row_stride(nb * d.lp, d.vl) if d.copy_dy else 0
        # one thread: its padded planes after the buffer; more: each its own of all three
        work = _scratch((size + size_y + d.C * d.xplane) * d.nt * itemsize)
        _wgrad_run(_data(dy), _data(x), _data(dw), _data(work), size, size_y, nb, t, d)
    return dw


cdef bint _all_finite(w):
    """No weight is inf or NaN (w C-contiguous, float32 or float64)."""
    cdef void *p = _data(w)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>w)
    cdef bint finite
    if cnp.PyArray_ITEMSIZE(<cnp.ndarray>w) == 4:
        with nogil:
            finite = mg_all_finite_f(<const float *>p, n)
    else:
        with nogil:
            finite = mg_all_finite_d(<const double *>p, n)
    return finite


cdef void _wgrad_run(const void *dy, const void *x, void *dw, void *work, Py_ssize_t size,
                     Py_ssize_t size_y, Py_ssize_t nb, Taps t, Direct d) noexcept nogil:
    if d.vl == MG_VL_F:
        _wgrad_blocks[float](<const float *>dy, <const float *>x, <float *>dw, <float *>work,
                             size, size_y, nb, t, d)
    else:
        _wgrad_blocks[double](<const double *>dy, <const double *>x, <double *>dw,
                              <double *>work, size, size_y, nb, t, d)


# dW over positions on several threads: each thread takes a fixed range of strips (out
# channels) over every block of samples, building the blocks' buffers in its own work, instead of
# the threads splitting each block's buffer and then its strips (two barriers and, before, an
# OpenMP region per block: with a block of one sample of 784 positions, 128x1x28x28 -> 32 dW
# took 1441 us on two threads against 1044 on one). Building the buffers on every thread
# repeats a copy of the input, about 1/32 of the multiply-adds there. Each strip's sums are
# those of one thread either way: the same bits on any number of threads. Measured, same
# shape, min of 7x5 in alternating processes with the other core free: 498-566 us on two threads
# (one: 869-921).
cdef void _wgrad_blocks(const floating *dy, const floating *x, floating *dw, floating *work,
                        Py_ssize_t size, Py_ssize_t size_y, Py_ssize_t nb, Taps t,
                        Direct d) noexcept nogil:
    """dW over the samples, nb at a time. work, per thread: the block's buffer (size values,
    its start rounded up to 64 bytes), size_y values for dY's padded copies, the padded
    planes."""
    cdef int tid, team
    if d.nt == 1:
        _wgrad_thread(0, 1, dy, x, dw, work, size, size_y, nb, t, d)
        return
    with parallel(num_threads=d.nt):
        tid = threadid()
        team = mg_team_size()
        _wgrad_thread(tid, team, dy, x, dw, work + tid * (size + size_y + d.C * d.xplane), size,
                      size_y, nb, t, d)


cdef void _wgrad_thread(int tid, int team, const floating *dy, const floating *x, floating *dw,
                        floating *mine, Py_ssize_t size, Py_ssize_t size_y, Py_ssize_t nb,
                        Taps t, Direct d) noexcept nogil:
    """Thread tid of team's share of _wgrad_blocks: dw's strips [s0, s1) (a static schedule's)
    += the sums over the samples and their positions of dY times the im2col rows, a block of
    samples at a time, in order. The block's buffer (G C/G kh kw rows of its samples' lp
    positions each, rows ldx apart) is built in the thread's own work (mine: the buffer, then
    dY's copies, then one sample's padded planes), and dY is read where it is, or (copy_dy)
    from copies laid out like the buffer's rows (O rows, ldx apart, each sample's L positions
    padded to lp with zeros); then each strip sums every position of the block in order."""
    cdef Direct one = d
    cdef Py_ssize_t strips = d.groups * ((d.og + MG_WG_OUT - 1) // MG_WG_OUT)
    cdef Py_ssize_t share = (strips + team - 1) // team, s0 = min(strips, tid * share)
    cdef Py_ssize_t s1 = min(strips, s0 + share), n0 = 0, n1, s, strip, ldx
    cdef Py_ssize_t skip = (64 - <Py_ssize_t>(<uintptr_t>mine % 64)) % 64 // sizeof(floating)
    cdef floating *cols = mine + skip
    cdef floating *dyp = mine + size
    cdef floating *xp = mine + size + size_y
    one.nt = 1
    if s0 >= s1:
        return
    while n0 < d.N:
        n1 = min(d.N, n0 + nb)
        ldx = _row_stride((n1 - n0) * d.lp, d.vl)
        for s in range(n1 - n0):
            _wgrad_sample(s, x, dy, cols, dyp, xp, n0, ldx, t, one)
        for strip in range(s0, s1):
            _wgrad_block_strip(strip, n1 - n0, dy, cols, dyp, dw, n0, ldx, one)
        n0 = n1


cdef void _wgrad_bc_run(const void *dy, const void *x, void *dwt, void *dw, void *work,
                        Py_ssize_t nb, Taps t, Direct d) noexcept nogil:
    if d.vl == MG_VL_F:
        _wgrad_bc_blocks[float](<const float *>dy, <const float *>x, <float *>dwt,
                                <float *>dw, <float *>work, nb, t, d)
    else:
        _wgrad_bc_blocks[double](<const double *>dy, <const double *>x, <double *>dwt,
                                 <double *>dw, <double *>work, nb, t, d)


cdef void _wgrad_bc_blocks(const floating *dy, const floating *x, floating *dwt, floating *dw,
                           floating *work, Py_ssize_t nb, Taps t, Direct d) noexcept nogil:
    """dW by broadcasts over the samples, nb at a time, then unpacked from dW^T into dw."""
    cdef Py_ssize_t n0 = 0
    while n0 < d.N:
        _direct_wgrad_bc(x, dy, dwt, work, n0, min(d.N, n0 + nb), t, d)
        n0 = n0 + nb
    _unpack_dw(dwt, dw, d)
