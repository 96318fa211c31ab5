# The direct path's wrappers (included by _conv.pyx after _conv_direct.pxi): the size rule that
# chooses it, its geometry plan and row tables, and the calls into the nogil loops.

# Which algorithm conv2d_forward and conv2d_backward run: "auto" (the size rule of _use_direct),
# or "direct" / "im2col" (a module attribute, so that tests can force either; "direct" still
# needs a geometry the direct path covers).
PATH = "auto"

# Direct products on this many multiply-adds or more split the work across threads. Below, on
# this shared 2-core machine, the second thread did not pay: 64x16x4x4 -> 32 (4.7M) one thread
# against two, forward 101 / 113 us, dW 192 / 214, dx 110 / 122 (min of 30, another process
# busy on one core; waking a sleeping thread costs about 15 us, and a region waits for its
# slowest thread). At 128x32x14x14 -> 64 (462M) two threads still shortened the forward in the
# same conditions, 13.3 -> 12.4 ms (dW and dx: a tie). Those were on an AMD EPYC; on the Intel
# Xeon of the tables in _conv_direct.pxi, with other processes busy on both cores, a second
# thread paid at none of the sizes (forward / dW / dx, one thread against two, min of 11, us):
# 64x16x4x4 -> 32 (4.7M) 73 / 135 / 81 against 86 / 138 / 87, 64x16x8x8 -> 32 (18.9M) 263 / 407
# / 256 against 273 / 431 / 269, 128x32x14x14 -> 64 (462M, min of 5) 9418 / 9860 / 8696
# against 9496 / 10180 / 8837; the threshold stays where it paid on the quieter machine.
DIRECT_PARALLEL_MIN_MACS = 1 << 24  # a module attribute, so that tests can force threads

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
    if PATH == "im2col" or x.size == 0 or weight.size == 0 or Ho * Wo == 0:
        return False
    if stride != (1, 1) or Wo != x.shape[3]:  # not a geometry the direct path covers
        return False
    if PATH == "direct" or kind != DIRECT_DX:
        return True
    return weight.shape[1] * weight.shape[2] * weight.shape[3] >= DIRECT_MIN_ROWS


_KINDS = {"forward": DIRECT_FORWARD, "dx": DIRECT_DX, "dw": DIRECT_DW}


def _algorithm(x, weight, stride, Py_ssize_t Ho, Py_ssize_t Wo, kind="forward"):
    """"direct" or "im2col": the path of conv2d_forward ("forward") or of conv2d_backward's
    "dx" or "dw"."""
    return "direct" if _use_direct(x, weight, stride, Ho, Wo, _KINDS[kind]) else "im2col"


cdef Direct _direct_plan(x, weight, Py_ssize_t groups, padding, dilation,
                         Py_ssize_t Ho):
    cdef Direct d
    cdef Py_ssize_t vl = MG_VL_F if x.dtype.itemsize == 4 else MG_VL_D
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3], kh = weight.shape[2], kw = weight.shape[3]
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
    d.chunk = max(vl, WG_CHUNK_BYTES // x.dtype.itemsize // vl * vl)
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


_tables = {}  # the row tables of _direct_tables, by geometry


def _direct_tables(Py_ssize_t W, Py_ssize_t kw, key, Direct d, padding,
                   dilation, dtype):
    """(off, mrow, mask, off_x, mrow_x, mask_x) of the Taps struct for this geometry."""
    found = _tables.get(key)
    if found is not None:
        return found
    i, j = np.divmod(np.arange(d.taps), kw)
    shift = (i * dilation[0] - padding[0]) * W + j * dilation[1] - padding[2]
    reach = np.arange(kw)[:, None] * dilation[1] - padding[2]  # a tap column's offset
    p, q = np.arange(d.ld), np.arange(d.ldx)
    ones = np.int32(-1) if dtype.itemsize == 4 else np.int64(-1)
    mask = ((p < d.L) & (p % W + reach >= 0) & (p % W + reach < W)) * ones
    mask_x = ((q < d.Lx) & (q % W - reach >= 0) & (q % W - reach < W)) * ones
    u = np.arange(d.Lx)
    keep = ((u % W - reach >= 0) & (u % W - reach < W)) * ones
    off_w = np.full((d.groups, d.kgp), kw * d.C * d.xplane, np.intp)  # padding rows: zeros
    c = np.arange(d.groups)[:, None] * d.cg + np.arange(d.cg)  # (G, C/G) channels
    off_w[:, :d.cg * d.taps] = (j * d.C * d.xplane + c[..., None] * d.xplane + d.xfront
                                + shift).reshape(d.groups, -1)
    found = (
        (np.arange(d.cg)[:, None] * d.xplane + d.xfront + shift).ravel().astype(np.intp),
        np.tile(j * d.ld, d.cg).astype(np.intp), mask.astype(ones.dtype),
        (np.arange(d.og)[:, None] * d.yplane + d.yfront - shift).ravel().astype(np.intp),
        np.tile(j * d.ldx, d.og).astype(np.intp), mask_x.astype(ones.dtype), off_w,
        keep.astype(ones.dtype),
    )
    if len(_tables) >= 64:
        _tables.clear()
    _tables[key] = found
    return found


cdef Taps _taps_of(tables):
    cdef Taps t
    cdef const Py_ssize_t[::1] off = tables[0], mrow = tables[1], off_x = tables[3]
    cdef const Py_ssize_t[::1] mrow_x = tables[4]
    cdef const unsigned char[:, ::1] mask = tables[2].view(np.uint8)
    cdef const unsigned char[:, ::1] mask_x = tables[5].view(np.uint8)
    t.off, t.mrow, t.mask = &off[0], &mrow[0], &mask[0, 0]
    t.off_x, t.mrow_x, t.mask_x = &off_x[0], &mrow_x[0], &mask_x[0, 0]
    cdef const Py_ssize_t[:, ::1] off_w = tables[6]
    cdef const unsigned char[:, ::1] keep = tables[7].view(np.uint8)
    t.off_w, t.keep = &off_w[0, 0], &keep[0, 0]
    return t


def _forward_direct(x, weight, bias, Py_ssize_t groups, padding, dilation, Ho):
    """conv2d_forward on the direct path: x contiguous, arguments checked."""
    cdef Direct d = _direct_plan(x, weight, groups, padding, dilation, Ho)
    key = (x.shape[1:], weight.shape, groups, padding, dilation, x.dtype.char)
    tables = _direct_tables(x.shape[3], weight.shape[3], key, d, padding, dilation, x.dtype)
    w = np.ascontiguousarray(weight)
    b = None if bias is None else np.ascontiguousarray(bias)
    y = np.empty((d.N, d.O, d.ld), x.dtype)
    wt_size = groups * d.cg * d.taps * d.oga
    work = _work(wt_size + d.nt * d.C * d.xplane, x.dtype)
    if x.dtype.itemsize == 4:
        _forward_typed[float](x, w, b, y, work, wt_size, _taps_of(tables), d)
    else:
        _forward_typed[double](x, w, b, y, work, wt_size, _taps_of(tables), d)
    if d.ld != d.L:
        y = np.ascontiguousarray(y[..., :d.L])
    return y.reshape(d.N, d.O, Ho, x.shape[3])


cdef _forward_typed(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, b,
                    floating[:, :, ::1] y, floating[::1] work, Py_ssize_t wt_size, Taps t,
                    Direct d):
    """work: W^T packed (wt_size values), then the threads' padded planes."""
    cdef const floating[::1] bv
    cdef const floating *pb = NULL
    if b is not None:
        bv = b
        pb = &bv[0]
    with nogil:
        _pack_forward(&w[0, 0, 0, 0], &work[0], d)
        _direct_forward(&x[0, 0, 0, 0], &work[0], pb, &y[0, 0, 0], &work[0] + wt_size, t, d)


def _backward_direct(dy, x, weight, Py_ssize_t groups, needs, padding, dilation,
                     Ho):
    """conv2d_backward on the direct path: dy (N, O, L) and x contiguous, arguments checked.
    None when dx is asked for and a weight is inf or NaN: dx's products multiply every weight
    by the zeros of the padded dY planes and of the masked positions, and 0 * inf is NaN where
    the im2col path and the twin add no term (a tap that reaches no output from a pixel)."""
    w = np.ascontiguousarray(weight)
    if needs[0] and not (_all_finite[float](w) if x.dtype.itemsize == 4
                         else _all_finite[double](w)):
        return None
    cdef Direct d = _direct_plan(x, weight, groups, padding, dilation, Ho)
    key = (x.shape[1:], weight.shape, groups, padding, dilation, x.dtype.char)
    tables = _direct_tables(x.shape[3], weight.shape[3], key, d, padding, dilation, x.dtype)
    cdef Taps t = _taps_of(tables)  # pointers into tables, alive until the return
    dx = dw = db = None
    if needs[2]:
        db = _channel_sums(dy).astype(x.dtype)
    if needs[0]:
        dx = np.empty((d.N, d.C, d.ldx), x.dtype)
        wx_size = d.O * d.taps * d.cga  # W packed for dx, then the threads' padded dY planes
        work = _work(wx_size + d.nt * d.O * d.yplane, x.dtype)
        if x.dtype.itemsize == 4:
            _dx_typed[float](dy, w, dx, work, wx_size, t, d)
        else:
            _dx_typed[double](dy, w, dx, work, wx_size, t, d)
        if d.ldx != d.Lx:
            dx = np.ascontiguousarray(dx[..., :d.Lx])
        dx = dx.reshape(x.shape)
    if needs[1]:
        dw = _direct_dw(dy, x, weight, t, d)
    return dx, dw, db


cdef _direct_dw(dy, x, weight, Taps t, Direct d):
    """dW on the direct path, by broadcasts or over positions (d.bc)."""
    if d.bc:
        dwt = np.zeros((d.groups, d.kgp, d.ogp), x.dtype)
        dw = np.empty(weight.shape, x.dtype)
        per = d.L * d.groups * d.ogp + d.xm  # dY^T and the masked copies, per sample
        nb = _block(d.N, per, x.dtype.itemsize)
        work = _work(nb * per, x.dtype)
        if x.dtype.itemsize == 4:
            _wgrad_bc_typed[float](dy, x, dwt, dw, work, nb, t, d)
        else:
            _wgrad_bc_typed[double](dy, x, dwt, dw, work, nb, t, d)
    else:
        dw = np.zeros(weight.shape, x.dtype)
        # the buffer: its rows for a block of samples, 64 bytes aligned (one vector more for
        # the start), dY's padded copies when needed, the threads' padded planes
        nb = max(1, min(d.N, d.chunk // d.lp))
        size = d.groups * d.cg * d.taps * _row_stride(nb * d.lp, d.vl) + d.vl
        size_y = d.O * _row_stride(nb * d.lp, d.vl) if d.copy_dy else 0
        work = _work(size + size_y + d.nt * d.C * d.xplane, x.dtype)
        if x.dtype.itemsize == 4:
            _wgrad_typed[float](dy, x, dw, work, size, size_y, nb, t, d)
        else:
            _wgrad_typed[double](dy, x, dw, work, size, size_y, nb, t, d)
    return dw


cdef bint _all_finite(const floating[:, :, :, ::1] w):
    cdef bint finite
    with nogil:
        if floating is float:
            finite = mg_all_finite_f(&w[0, 0, 0, 0], w.shape[0] * w.shape[1] * w.shape[2]
                                     * w.shape[3])
        else:
            finite = mg_all_finite_d(&w[0, 0, 0, 0], w.shape[0] * w.shape[1] * w.shape[2]
                                     * w.shape[3])
    return finite


cdef _dx_typed(const floating[:, :, ::1] dy, const floating[:, :, :, ::1] w,
               floating[:, :, ::1] dx, floating[::1] work, Py_ssize_t wx_size, Taps t,
               Direct d):
    with nogil:
        _pack_dx(&w[0, 0, 0, 0], &work[0], d)
        _direct_dx(&dy[0, 0, 0], &work[0], &dx[0, 0, 0], &work[0] + wx_size, t, d)


cdef _wgrad_typed(const floating[:, :, ::1] dy, const floating[:, :, :, ::1] x,
                  floating[:, :, :, ::1] dw, floating[::1] work, Py_ssize_t size,
                  Py_ssize_t size_y, Py_ssize_t nb, Taps t, Direct d):
    """dW over the samples, nb at a time. work: the block's buffer (size values, its start
    rounded up to 64 bytes), size_y values for dY's padded copies, the threads' padded
    planes."""
    cdef floating *cols = &work[0]
    cdef Py_ssize_t skip = (64 - <Py_ssize_t>(<uintptr_t>cols % 64)) % 64 // sizeof(floating)
    cdef Py_ssize_t n0 = 0
    with nogil:
        while n0 < d.N:
            _direct_wgrad(&x[0, 0, 0, 0], &dy[0, 0, 0], &dw[0, 0, 0, 0], cols + skip,
                          cols + size, cols + size + size_y, n0, min(d.N, n0 + nb), t, d)
            n0 = n0 + nb


cdef _wgrad_bc_typed(const floating[:, :, ::1] dy, const floating[:, :, :, ::1] x,
                     floating[:, :, ::1] dwt, floating[:, :, :, ::1] dw, floating[::1] work,
                     Py_ssize_t nb, Taps t, Direct d):
    """dW by broadcasts over the samples, nb at a time, then unpacked from dW^T into dw."""
    cdef Py_ssize_t n0 = 0
    with nogil:
        while n0 < d.N:
            _direct_wgrad_bc(&x[0, 0, 0, 0], &dy[0, 0, 0], &dwt[0, 0, 0], &work[0], n0,
                             min(d.N, n0 + nb), t, d)
            n0 = n0 + nb
        _unpack_dw(&dwt[0, 0, 0], &dw[0, 0, 0, 0], d)
