"""Max, average and adaptive average pooling of (N, C, H, W) arrays, forward and backward, for
float32 and float64 data.

Each kernel is a thin ``def`` wrapper (the memory-safety checks of ``_checks``, shared with the
NumPy twins in ``_pool_twin.py``; a contiguous copy; output allocation) around a
``cdef ... nogil`` core that handles one (H, W) plane at a time. The wrapper first works out,
per output row and per output column, which kernel taps fall inside the input (``_taps``), so
the loops over a window have no bounds test and never touch padding. Planes are independent,
so above a size threshold threads split them; no result depends on the thread count. The most
common windows (2x2 at stride 2, no padding, all inside the plane) take loops of their own that
give the same results, bit for bit; when they tile the planes exactly, one loop covers all
planes at once as a single tall plane (and threads split its rows). That loop and the scatter
of the max backward are C (_pool_max.h).

Average sums accumulate in float64. Max keeps the first maximal tap in row-major window order,
and the first NaN wins over every number.
"""

include "_parallel.pxi"

import numpy as np

from cython cimport floating
from cython.parallel cimport prange
cimport numpy as cnp
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t

from minigrad.kernels._checks_spatial import pool_index_error, pool_indices, pool_input, pool_pairs
from minigrad.kernels._simd cimport _row_sum


# Window rows at least this long are summed by the SIMD lanes of _simd.h (whose fold of the
# lanes costs more than it saves on a few elements).
cdef enum:
    ROW_SUM_MIN = 16


# 2x2 max pooling picks values by integer blends in a loop that vectorises (_max_pairs) on rows
# of at least this many outputs; on shorter rows the vector loop's set-up per row costs more,
# and the scalar loop that loads through the picked positions is faster (_max_pairs_loads).
# Measured (one thread, min of 15 interleaved runs): forward on 64x16x16x16 (rows of 8) 90 us
# with blends against 316 us loading; forward + backward on 64x16x8x8 (rows of 4) 406 us with
# blends against 98 us loading; at 128x16x28x28 both are bound by memory (2 to 7 ms, noisy).
# Planes the windows tile exactly (H = 2 OH, W = 2 OW) skip both at every size: one tall plane,
# picked in chunks of TALL_CHUNK columns (_max_tall_rows, whose two passes stay in L1) is faster
# everywhere it was measured. Forward, float32, against the per-plane loops, interleaved in one
# process, median / min of 41 runs in us (2 shared cores, noisy; before _pool_max.h's loops,
# which take 64x16x8x8 from 30 to about 10):
#   one thread:             64x16x8x8 108/107 -> 31/30; 64x16x16x16 111/106 -> 75/74;
#                           128x32x28x28 3631/3189 -> 1520/1254; 64x32x4x4 73/46 -> 61/43
#   OMP_WAIT_POLICY=PASSIVE: 64x16x8x8 108/91 -> 26/19; 64x16x16x16 119/86 -> 98/70
#   default OMP policy:     64x16x8x8 113/100 -> 33/19; 64x16x16x16 75/66 -> 65/50
# float64, one thread: 64x16x8x8 110/107 -> 49/47, 64x16x16x16 90/82 -> 92/82. Odd sides (9x9)
# keep the loops above, unchanged (113/112 either way).
cdef enum:
    BLEND_MIN_OW = 8
    TALL_CHUNK = 1024  # values and positions of the vertical pass held at a time (8-12 KB);
    # _pool_max.h's MG_TALL_CHUNK, which must be the same


cdef struct Geometry:
    Py_ssize_t H, W, OH, OW  # input and output plane sizes
    Py_ssize_t sh, sw, ph, pw, dh, dw  # stride, padding, dilation
    const Py_ssize_t *rows  # (3, OH): first tap, end tap, divisor factor of each output row
    const Py_ssize_t *cols  # (3, OW): the same per output column
    bint pairs  # 2x2 windows at stride 2, no padding or dilation, every one inside the plane


cdef void _fill_taps(Py_ssize_t[:, ::1] taps, Py_ssize_t size, Py_ssize_t k, Py_ssize_t s,
                     Py_ssize_t p, Py_ssize_t d, bint include_pad) noexcept nogil:
    """Per output position o along one axis, with window start = o*s - p: the taps
    [taps[0, o], taps[1, o]) that land inside [0, size), and the divisor factor of average
    pooling (PyTorch's rule: the window clipped to the padded input, or to the taps inside)."""
    cdef Py_ssize_t o, start, lo, hi
    for o in range(taps.shape[1]):
        start = o * s - p
        lo = 0 if start >= 0 else (d - 1 - start) // d
        hi = 0 if start >= size else (size - start + d - 1) // d
        hi = k if hi > k else hi
        lo = hi if lo > hi else lo
        taps[0, o] = lo
        taps[1, o] = hi
        if include_pad:
            taps[2, o] = (start + k if start + k < size + p else size + p) - start
        else:
            taps[2, o] = hi - lo


def _taps(Py_ssize_t size, Py_ssize_t k, Py_ssize_t s, Py_ssize_t p, Py_ssize_t d,
          Py_ssize_t out, bint include_pad=True):
    """The (3, out) table of ``_fill_taps`` for one axis."""
    taps = np.empty((3, out), np.intp)
    _fill_taps(taps, size, k, s, p, d, include_pad)
    return taps


cdef Geometry _geometry(Py_ssize_t H, Py_ssize_t W, object out, object stride, object padding,
                        object dilation, Py_ssize_t[:, ::1] rows, Py_ssize_t[:, ::1] cols):
    """The pairs and tap tables as one struct for the nogil loops (the tables must outlive
    it: the caller keeps them)."""
    cdef Geometry g
    g.H, g.W, g.OH, g.OW = H, W, out[0], out[1]
    g.sh, g.sw, g.ph, g.pw = stride[0], stride[1], padding[0], padding[1]
    g.dh, g.dw = dilation[0], dilation[1]
    g.rows = &rows[0, 0] if rows.shape[1] else NULL
    g.cols = &cols[0, 0] if cols.shape[1] else NULL
    g.pairs = False
    return g


def _is_pairs(kernel, stride, padding, dilation, Py_ssize_t H, Py_ssize_t W, out):
    """Whether the windows are the common 2x2 ones at stride 2 that all lie inside the plane
    (the last of ceil_mode's windows may not: those take the general loops)."""
    return (kernel == (2, 2) and stride == (2, 2) and padding == (0, 0) and dilation == (1, 1)
            and 2 * out[0] <= H and 2 * out[1] <= W)


_NO_TAPS = np.empty((3, 0), np.intp)


cdef inline bint _good_pair(pair, int low):
    """Whether ``pair`` passes pool_pairs' rule (a tuple of two ints in [low, 2**31 - 1]): its
    common case, checked here without building keyword arguments; the callers hand anything
    else to pool_pairs, which raises its error."""
    if type(pair) is not tuple or len(<tuple>pair) != 2:
        return False
    first, second = (<tuple>pair)[0], (<tuple>pair)[1]
    return (type(first) is int and type(second) is int and low <= first <= 2147483647
            and low <= second <= 2147483647)


cdef inline object _contiguous(a):
    """``a`` itself when it is a C-contiguous ndarray (not a subclass), else
    np.ascontiguousarray's copy."""
    if cnp.PyArray_CheckExact(a) and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a):
        return a
    return np.ascontiguousarray(a)


cdef inline void *_data(a) noexcept:
    """The first value of a C-contiguous ndarray."""
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline object _new4(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, int typenum):
    """An uninitialised C-contiguous (n, c, h, w) array of typenum."""
    cdef cnp.npy_intp dims[4]
    dims[0], dims[1], dims[2], dims[3] = n, c, h, w
    return cnp.PyArray_EMPTY(4, dims, typenum, 0)


# ------------------------------------------------------------------------------ max pooling


cdef inline bint _later_wins(floating first, floating later) noexcept nogil:
    """Whether the later of two taps is the window's pick: strictly greater (ties keep the first),
    or a NaN after a number (the first NaN wins). Two comparisons, no branch."""
    return (first == first) & (not (later <= first))


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* b where take is 1, a where it is 0, chosen on the bits: an integer blend, so that a loop
       of them vectorises (a select between two floats tends to become a branch, mispredicted
       on real data about half the time, or a load from a computed address). */
    static inline float mg_pick_f(float a, float b, int take) {
        uint32_t ua, ub, r;
        memcpy(&ua, &a, 4); memcpy(&ub, &b, 4);
        r = ua ^ ((ua ^ ub) & (0u - (uint32_t)take));
        memcpy(&a, &r, 4);
        return a;
    }
    static inline double mg_pick_d(double a, double b, int take) {
        uint64_t ua, ub, r;
        memcpy(&ua, &a, 8); memcpy(&ub, &b, 8);
        r = ua ^ ((ua ^ ub) & (0ull - (uint64_t)take));
        memcpy(&a, &r, 8);
        return a;
    }
    """
    float mg_pick_f(float a, float b, int take) noexcept nogil
    double mg_pick_d(double a, double b, int take) noexcept nogil


cdef inline floating _pick(floating a, floating b, int take) noexcept nogil:
    if floating is float:
        return mg_pick_f(a, b, take)
    else:
        return mg_pick_d(a, b, take)


cdef void _max_pairs(const floating *x, floating *y, int64_t *index, Py_ssize_t OH,
                     Py_ssize_t OW, Py_ssize_t W) noexcept nogil:
    """One plane of 2x2 windows at stride 2, all inside it: output row oh reads input rows
    2*oh and 2*oh + 1. Each row of a window, then the two rows, are decided pairwise: the same
    pick as the row-major scan (its order is a total one: NaN, then value, then position).
    The picks are 0/1 integers; values are chosen by integer blends of their bits (_pick) and
    positions by arithmetic, with no branch and no load from a computed address."""
    cdef Py_ssize_t oh, ow
    cdef const floating *top
    cdef const floating *bottom
    cdef floating *out
    cdef int64_t *at
    cdef floating upper, lower
    cdef int right, right_low, down
    for oh in range(OH):
        top = x + 2 * oh * W
        bottom = top + W
        out = y + oh * OW
        at = index + oh * OW
        for ow in range(OW):
            right = _later_wins(top[2 * ow], top[2 * ow + 1])
            right_low = _later_wins(bottom[2 * ow], bottom[2 * ow + 1])
            upper = _pick(top[2 * ow], top[2 * ow + 1], right)
            lower = _pick(bottom[2 * ow], bottom[2 * ow + 1], right_low)
            down = _later_wins(upper, lower)
            out[ow] = _pick(upper, lower, down)
            at[ow] = 2 * oh * W + 2 * ow + right + down * (W + right_low - right)


cdef void _max_pairs_loads(const floating *x, floating *y, int64_t *index, Py_ssize_t OH,
                           Py_ssize_t OW, Py_ssize_t W) noexcept nogil:
    """_max_pairs for short rows: the picks turned into positions by arithmetic and the values
    loaded from there (scalar; in cache, for planes this small, those loads are cheap)."""
    cdef Py_ssize_t oh, ow, left, upper, lower, down
    cdef const floating *top
    for oh in range(OH):
        top = x + 2 * oh * W
        for ow in range(OW):
            left = 2 * oh * W + 2 * ow
            upper = left + _later_wins(top[2 * ow], top[2 * ow + 1])
            lower = left + W + _later_wins(top[W + 2 * ow], top[W + 2 * ow + 1])
            down = _later_wins(x[upper], x[lower])
            upper += down * (lower - upper)
            y[oh * OW + ow] = x[upper]
            index[oh * OW + ow] = upper


cdef inline bint _tall(const Geometry *g) noexcept nogil:
    """Whether 2x2 windows tile every plane exactly (see _max_tall_rows), with rows short
    enough for a chunk and planes small enough for int32 positions."""
    return (g.pairs and g.H == 2 * g.OH and g.W == 2 * g.OW and g.W <= TALL_CHUNK
            and g.H * g.W < 2147483647)


cdef extern from "_pool_max.h" nogil:
    void mg_max_tall_f(const float *x, float *y, int64_t *index, Py_ssize_t r0, Py_ssize_t r1,
                       Py_ssize_t OH, Py_ssize_t W)
    void mg_max_tall_d(const double *x, double *y, int64_t *index, Py_ssize_t r0,
                       Py_ssize_t r1, Py_ssize_t OH, Py_ssize_t W)


cdef void _max_tall_rows_any(const floating *x, floating *y, int64_t *index, Py_ssize_t r0,
                             Py_ssize_t r1, Py_ssize_t OH, Py_ssize_t W) noexcept nogil:
    """_max_tall_rows for any width: both passes in chunks of TALL_CHUNK columns, the picks
    by the integer blends of _pick."""
    cdef floating v[TALL_CHUNK]
    cdef int32_t at[TALL_CHUNK]
    cdef Py_ssize_t per = TALL_CHUNK // W, r, j, k, n, oh
    cdef const floating *top
    cdef floating *vr
    cdef int32_t *ar
    cdef floating t, b, left, right
    cdef int32_t pl, pr, base32
    cdef int down, later, earlier, take
    while r0 < r1:
        n = per if r1 - r0 > per else r1 - r0
        oh = r0 % OH
        for r in range(n):
            top = x + 2 * (r0 + r) * W
            vr = v + r * W
            ar = at + r * W
            base32 = <int32_t>(2 * oh * W)
            for j in range(W):
                t, b = top[j], top[W + j]
                down = _later_wins(t, b)
                vr[j] = _pick(t, b, down)
                ar[j] = base32 + <int32_t>j + (<int32_t>W & -down)
            oh = oh + 1 if oh + 1 < OH else 0
        for k in range(n * W // 2):
            left, right = v[2 * k], v[2 * k + 1]
            pl, pr = at[2 * k], at[2 * k + 1]
            # the right column's pick wins when it comes later in the scan order (NaN first,
            # then value, then position) if its position is later, or unless the left one
            # beats it if its position is earlier
            later = _later_wins(left, right)
            earlier = not _later_wins(right, left)
            take = later ^ ((later ^ earlier) & (pr < pl))
            y[r0 * W // 2 + k] = _pick(left, right, take)
            index[r0 * W // 2 + k] = pl + take * (pr - pl)
        r0 += n


cdef inline void _max_tall_rows(const floating *x, floating *y, int64_t *index, Py_ssize_t r0,
                                Py_ssize_t r1, Py_ssize_t OH, Py_ssize_t W) noexcept nogil:
    """Row pairs [r0, r1) of planes tiled exactly by 2x2 windows (H = 2 OH, W = 2 OW), seen as
    one tall (N C H, W) plane: output row r reads input rows 2r and 2r + 1. A vertical pass
    over each row pair keeps, per column, the pick of its two taps and that tap's position in
    its own plane; a horizontal pass over those, flat (OW = W / 2: output k reads columns 2k
    and 2k + 1 of the pass), picks between the two columns (_pool_max.h for the widths it
    inlines, else _max_tall_rows_any). Vertical-first means
    the second pick may compare a bottom tap (row-major position 2 of the window) with a later
    column's top tap (position 1), so that pick breaks ties by position, not by column."""
    if W != 2 and W != 4 and W != 8 and W != 16:
        _max_tall_rows_any(x, y, index, r0, r1, OH, W)
    elif floating is float:
        mg_max_tall_f(x, y, index, r0, r1, OH, W)
    else:
        mg_max_tall_d(x, y, index, r0, r1, OH, W)


cdef void _max_plane(const floating *x, floating *y, int64_t *index,
                     const Geometry *geometry) noexcept nogil:
    """One plane: the maximum of each window and its flat position in the plane."""
    # a local copy: stores through the output pointers cannot change it, so it stays in registers
    cdef Geometry g = geometry[0]
    if g.pairs and g.OW >= BLEND_MIN_OW:
        _max_pairs(x, y, index, g.OH, g.OW, g.W)
        return
    if g.pairs:
        _max_pairs_loads(x, y, index, g.OH, g.OW, g.W)
        return
    cdef Py_ssize_t oh, ow, i, j, h0, w0, at, pos, ilo, ihi, jlo, jhi
    cdef const floating *row
    cdef floating best, v
    cdef bint take
    for oh in range(g.OH):
        h0 = oh * g.sh - g.ph
        ilo, ihi = g.rows[oh], g.rows[g.OH + oh]
        for ow in range(g.OW):
            w0 = ow * g.sw - g.pw
            jlo, jhi = g.cols[ow], g.cols[g.OW + ow]
            best = -INFINITY
            at = (h0 + ilo * g.dh) * g.W + w0 + jlo * g.dw if ilo < ihi and jlo < jhi else -1
            for i in range(ilo, ihi):
                pos = (h0 + i * g.dh) * g.W + w0
                row = x + pos
                for j in range(jlo, jhi):
                    v = row[j * g.dw]
                    # strictly greater: ties keep the first; a NaN beats a number, not a NaN.
                    # Selects, not branches: on real data the comparison is a coin toss.
                    take = (v > best) | ((v != v) & (best == best))
                    best = v if take else best
                    at = pos + j * g.dw if take else at
            y[oh * g.OW + ow] = best
            index[oh * g.OW + ow] = at


cdef void _max_forward(const floating *x, floating *y, int64_t *index, Py_ssize_t planes,
                       const Geometry *g) noexcept nogil:
    """All planes of x (planes x H W values, contiguous) into y and index."""
    cdef Py_ssize_t p
    cdef Py_ssize_t size_in = g.H * g.W, size_out = g.OH * g.OW
    cdef int nt = threads_for(planes * (size_in + size_out))
    cdef Py_ssize_t rows = planes * g.OH, per, c
    if _tall(g):
        per = TALL_CHUNK // g.W
        if nt == 1:
            _max_tall_rows(x, y, index, 0, rows, g.OH, g.W)
            return
        for c in prange((rows + per - 1) // per, num_threads=nt, schedule="static"):
            _max_tall_rows(x, y, index, c * per, min(rows, (c + 1) * per), g.OH, g.W)
        return
    if nt == 1:
        for p in range(planes):
            _max_plane(x + p * size_in, y + p * size_out, index + p * size_out, g)
        return
    for p in prange(planes, num_threads=nt, schedule="static"):
        _max_plane(x + p * size_in, y + p * size_out, index + p * size_out, g)


cdef extern from "_pool_max.h" nogil:
    Py_ssize_t mg_max_scatter_f(const float *grad, const int64_t *index, Py_ssize_t p0,
                                Py_ssize_t p1, Py_ssize_t n, Py_ssize_t plane, float *dx)
    Py_ssize_t mg_max_scatter_d(const double *grad, const int64_t *index, Py_ssize_t p0,
                                Py_ssize_t p1, Py_ssize_t n, Py_ssize_t plane, double *dx)


cdef inline Py_ssize_t _max_scatter(const floating *grad, const int64_t *index, Py_ssize_t p0,
                                    Py_ssize_t p1, Py_ssize_t n, Py_ssize_t plane,
                                    floating *dx) noexcept nogil:
    """Planes p0..p1: dx = 0, then dx[index[o]] += grad[o]; returns how many indices were out
    of range (and not -1)."""
    if floating is float:
        return mg_max_scatter_f(grad, index, p0, p1, n, plane, dx)
    else:
        return mg_max_scatter_d(grad, index, p0, p1, n, plane, dx)


cdef Py_ssize_t _max_backward(const floating *grad, const int64_t *index, floating *dx,
                              Py_ssize_t planes, Py_ssize_t n, Py_ssize_t plane) noexcept nogil:
    """planes of n outputs (grad, index) scattered into planes of ``plane`` inputs (dx)."""
    cdef Py_ssize_t p, bad = 0
    cdef int nt = threads_for(planes * (n + plane))
    if nt == 1:
        return _max_scatter(grad, index, 0, planes, n, plane, dx)
    for p in prange(planes, num_threads=nt, schedule="static"):
        bad += _max_scatter(grad, index, p, p + 1, n, plane, dx)
    return bad


def max_pool2d_forward(x, kernel_size, stride, padding, dilation, out_size):
    """y = max over each window; indices = the flat position (h * W + w) of that maximum in its
    input plane, as int64. Ties go to the first maximal tap in row-major window order; a NaN
    wins over every number (the first NaN, when there are several).

    Args:
        x: (N, C, H, W), float32 or float64, any layout.
        kernel_size, stride, padding, dilation, out_size: (height, width) pairs of ints.

    Returns:
        (y, indices), both of shape (N, C, oh, ow); an empty window gives -inf and -1.
    """
    fn = "max_pool2d_forward"
    pool_input(fn, "x", x)
    if not (_good_pair(kernel_size, 1) and _good_pair(stride, 1) and _good_pair(padding, 0)
            and _good_pair(dilation, 1) and _good_pair(out_size, 0)):
        pool_pairs(fn, kernel_size=kernel_size, stride=stride, padding=padding,
                   dilation=dilation, out_size=out_size)  # raises the error
    k, s, p, d, o = kernel_size, stride, padding, dilation, out_size
    cdef cnp.ndarray a = x
    cdef Py_ssize_t N = a.shape[0], C = a.shape[1], H = a.shape[2], W = a.shape[3]
    if N * C * o[0] * o[1] == 0 or H * W == 0:  # no output, or windows over an empty plane
        return np.full((N, C) + o, -np.inf, x.dtype), np.full((N, C) + o, -1, np.int64)
    y = _new4(N, C, o[0], o[1], cnp.PyArray_TYPE(a))
    indices = _new4(N, C, o[0], o[1], cnp.NPY_INT64)
    x = _contiguous(x)
    rows = cols = _NO_TAPS  # the tall loop reads no tap table (saves a fifth of the call)
    cdef Geometry g = _geometry(H, W, o, s, p, d, rows, cols)
    g.pairs = _is_pairs(k, s, p, d, H, W, o)
    if not _tall(&g):
        rows, cols = _taps(H, k[0], s[0], p[0], d[0], o[0]), _taps(W, k[1], s[1], p[1], d[1], o[1])
        g = _geometry(H, W, o, s, p, d, rows, cols)
        g.pairs = _is_pairs(k, s, p, d, H, W, o)
    cdef void *px = _data(x)
    cdef void *py = _data(y)
    cdef int64_t *pi = <int64_t *>_data(indices)
    with nogil:
        if cnp.PyArray_ITEMSIZE(a) == 4:
            _max_forward[float](<const float *>px, <float *>py, pi, N * C, &g)
        else:
            _max_forward[double](<const double *>px, <double *>py, pi, N * C, &g)
    return y, indices


def max_pool2d_backward(grad_out, indices, in_size):
    """dx: each output's gradient added to the one input element its index names (-1: none).

    Returns:
        dx of shape (N, C, H, W) = in_size, grad_out's dtype.
    """
    fn = "max_pool2d_backward"
    pool_input(fn, "grad_out", grad_out)
    pool_indices(fn, indices, grad_out)
    if not _good_pair(in_size, 0):
        pool_pairs(fn, in_size=in_size)  # raises the error
    cdef Py_ssize_t H = in_size[0], W = in_size[1]
    cdef cnp.ndarray g = grad_out
    cdef Py_ssize_t N = g.shape[0], C = g.shape[1], n = g.shape[2] * g.shape[3]
    if cnp.PyArray_SIZE(g) == 0 or H * W == 0:
        dx = np.zeros((N, C, H, W), grad_out.dtype)
        if cnp.PyArray_SIZE(g) == 0:
            return dx
    else:  # the kernel zeroes each plane right before its scatter
        dx = _new4(N, C, H, W, cnp.PyArray_TYPE(g))
    grad_out = _contiguous(grad_out)
    indices = _contiguous(indices)
    cdef Py_ssize_t bad
    cdef void *pg = _data(grad_out)
    cdef const int64_t *pi = <const int64_t *>_data(indices)
    cdef void *pd = _data(dx)
    if H * W == 0:  # every index must then be -1: no plane to scatter into
        bad = np.count_nonzero(indices != -1)
    elif cnp.PyArray_ITEMSIZE(g) == 4:
        with nogil:
            bad = _max_backward[float](<const float *>pg, pi, <float *>pd, N * C, n, H * W)
    else:
        with nogil:
            bad = _max_backward[double](<const double *>pg, pi, <double *>pd, N * C, n, H * W)
    if bad:
        flat = indices.reshape(-1)
        raise pool_index_error(fn, int(flat[(flat < -1) | (flat >= H * W)][0]), H * W)
    return dx


# Average and adaptive average pooling, on the same geometry: _pool_avg.pxi, _pool_adaptive.pxi
include "_pool_avg.pxi"
include "_pool_adaptive.pxi"
