# The direct path of _conv.pyx (included there textually): convolution as small register-blocked
# products (_conv_gemm.h) whose rows are shifted views of zero-padded planes, with no im2col
# buffer, no col2im and no BLAS call; threads split the samples.
#
# It covers stride 1 with output rows as long as the input's (_flat: "same" padding across, any
# padding down, any dilation and groups), where a kernel tap (i, j) reads, for every output
# position p of a plane, the input at p + s(i, j), s = (i dh - top) W + j dw - left: one
# shifted run of the plane, its positions whose column falls in the left or right padding
# masked (they wrap onto the next row), the rows above and below read from zeros padded around
# each plane. Per sample, rows padded to whole vectors (ld, ldx):
# * forward: y[n, group] = W_group X + b, with row (c, i, j) of X the tap's view of plane c
#   (mg_gemm, A = W^T);
# * dx: the adjoint, x's gradient at q gathers dY at q - s(i, j) for every tap: dx[n, group] =
#   W'_group D with row (o, i, j) of D dY's plane o shifted back, masked where column q - s
#   wraps (mg_gemm, A = W as (O/G kh kw, C/G));
# * dW: the sums over samples and positions of the rows of X times dY^T (mg_wgrad), read from
#   copies of the padded planes with the wrapped columns of each tap column zeroed, so that a
#   row is a plain shifted run. The copies and dY^T of a block of samples are built first
#   (threads split the samples), then threads split the rows of dW^T, so that every sum runs
#   over the samples in order whatever the thread count. db is dY's float64 channel sums.
# Forward and dx need no sums across samples: each sample's rows are computed by one thread.
#
# Size rule (_use_direct), measured one thread, float32, min of 30 interleaved runs (5 at MNIST
# sizes) against the im2col path (us; forward / dW / dx):
#   64x1x8x8 -> 16      im2col 45 / 79 / 60            direct 26 / 112 / 96
#   64x16x4x4 -> 32     im2col 212 / 261 / 193         direct 100 / 161 / 111
#   64x16x8x8 -> 32     im2col 514 / 701 / 544         direct 358 / 465 / 377
#   128x1x28x28 -> 32   im2col 1915 / 1960 / 2169      direct 1773 / 4789 / 9525
#   128x32x14x14 -> 64  im2col 12407 / 13592 / 12316   direct 10502 / 11420 / 10484
# The direct path wins once a product has many rows (C/G kh kw >= DIRECT_MIN_ROWS: enough
# multiply-adds per load) and, forward, on small maps whatever the rows (Ho Wo <=
# DIRECT_SMALL_MAP, where the im2col path's per-call and per-row costs dominate; at 28x28 with
# one input channel the forward is a tie, medians 2123 against 2135). With one input channel
# and 3x3 taps its backward loses: nine rows give too few multiply-adds per load.

from cython.parallel cimport parallel, threadid

cdef extern from "_conv_gemm.h":
    enum:
        MG_VL_F
        MG_VL_D
        MG_GEMM_ROWS
        MG_WG_ROWS
    ctypedef int mg_mf_t
    ctypedef long long mg_md_t
    void mg_gemm_f(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A, Py_ssize_t lda,
                   const float *B, const Py_ssize_t *off, const mg_mf_t *mask,
                   const Py_ssize_t *mrow, float *C, Py_ssize_t ldc,
                   const float *bias) noexcept nogil
    void mg_gemm_d(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double *A, Py_ssize_t lda,
                   const double *B, const Py_ssize_t *off, const mg_md_t *mask,
                   const Py_ssize_t *mrow, double *C, Py_ssize_t ldc,
                   const double *bias) noexcept nogil
    void mg_keep_f(const float *x, const mg_mf_t *keep, float *out, Py_ssize_t n) noexcept nogil
    void mg_keep_d(const double *x, const mg_md_t *keep, double *out,
                   Py_ssize_t n) noexcept nogil
    void mg_wgrad_f(int mr, Py_ssize_t N, Py_ssize_t S, Py_ssize_t L, const float *X,
                    Py_ssize_t xs, const Py_ssize_t *off, const float *B, Py_ssize_t bs,
                    Py_ssize_t ldb, float *C, Py_ssize_t ldc) noexcept nogil
    void mg_wgrad_d(int mr, Py_ssize_t N, Py_ssize_t S, Py_ssize_t L, const double *X,
                    Py_ssize_t xs, const Py_ssize_t *off, const double *B, Py_ssize_t bs,
                    Py_ssize_t ldb, double *C, Py_ssize_t ldc) noexcept nogil
    int mg_all_finite_f(const float *x, Py_ssize_t n) noexcept nogil
    int mg_all_finite_d(const double *x, Py_ssize_t n) noexcept nogil


cdef struct Direct:
    Py_ssize_t L, ld            # output positions Ho W, and rounded up to whole vectors
    Py_ssize_t Lx, ldx          # input positions H W, likewise
    Py_ssize_t N, C, O, cg, og, taps, groups
    Py_ssize_t xfront, xplane   # a padded x plane: xfront zeros, H W values, zeros to xplane
    Py_ssize_t yfront, yplane   # a padded dY plane, likewise
    Py_ssize_t kw, ogp, kgp     # O/G and C/G kh kw rounded up to a vector and to MG_WG_ROWS
    Py_ssize_t oga, cga         # O/G and C/G rounded up to MG_GEMM_ROWS (mg_gemm's A columns)
    Py_ssize_t xm               # a sample's kw masked copies of its padded x planes + L zeros
    int nt                      # threads


cdef struct Taps:
    # for each row k of the products: where the row starts in its padded planes (off) and
    # which row of the masks applies (mrow, j ld); forward and dW rows (c, i, j), dx rows (o, i, j)
    const Py_ssize_t *off
    const Py_ssize_t *mrow
    const void *mask            # (kw, ld) int32 / int64: all ones where the position is read
    const Py_ssize_t *off_x
    const Py_ssize_t *mrow_x
    const void *mask_x          # (kw, ldx)
    const Py_ssize_t *off_w     # dW's rows (G, kgp): in a sample's masked copies, or zeros
    const void *keep            # (kw, H W) int32 / int64: all ones where tap column j may read


cdef inline void _gemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const floating *A,
                       Py_ssize_t lda, const floating *B, const Py_ssize_t *off,
                       const void *mask, const Py_ssize_t *mrow, floating *C, Py_ssize_t ldc,
                       const floating *bias) noexcept nogil:
    if floating is float:
        mg_gemm_f(M, N, K, A, lda, B, off, <const mg_mf_t *>mask, mrow, C, ldc, bias)
    else:
        mg_gemm_d(M, N, K, A, lda, B, off, <const mg_md_t *>mask, mrow, C, ldc, bias)


cdef inline void _pad_planes(const floating *src, Py_ssize_t count, Py_ssize_t size,
                             floating *dst, Py_ssize_t front, Py_ssize_t plane) noexcept nogil:
    """dst[k] = front zeros, src's plane k (size values), zeros up to plane values."""
    cdef Py_ssize_t k, p
    for k in range(count):
        for p in range(front):
            dst[k * plane + p] = 0
        for p in range(size):
            dst[k * plane + front + p] = src[k * size + p]
        for p in range(front + size, plane):
            dst[k * plane + p] = 0


cdef void _direct_forward(const floating *x, const floating *wt, const floating *bias,
                          floating *y, floating *work, Taps t, Direct d) noexcept nogil:
    """y (N, O, ld) = conv2d(x) + bias, x (N, C, H W); wt is W^T per group (G, C/G kh kw, oga);
    work holds one sample's padded planes (C x xplane) per thread."""
    cdef Py_ssize_t n, grp, kg = d.cg * d.taps, per = d.C * d.xplane
    cdef floating *xp
    cdef const floating *b
    for n in prange(d.N, num_threads=d.nt, schedule="static"):
        xp = work + threadid() * per
        _pad_planes(x + n * d.C * d.Lx, d.C, d.Lx, xp, d.xfront, d.xplane)
        for grp in range(d.groups):
            b = NULL
            if bias != NULL:
                b = bias + grp * d.og
            _gemm(d.og, d.ld, kg, wt + grp * kg * d.oga, d.oga, xp + grp * d.cg * d.xplane,
                  t.off, t.mask, t.mrow, y + (n * d.O + grp * d.og) * d.ld, d.ld, b)


cdef void _masked_copies(const floating *x, floating *dst, const void *keep,
                         Direct d) noexcept nogil:
    """dst: for each tap column j, the padded x planes of one sample with the columns that
    tap column j may not read (those its rows wrap onto) zeroed; then L zeros."""
    cdef Py_ssize_t j, c, u
    cdef floating *out
    for j in range(d.kw):
        for c in range(d.C):
            out = dst + (j * d.C + c) * d.xplane
            for u in range(d.xfront):
                out[u] = 0
            out = out + d.xfront
            if floating is float:
                mg_keep_f(x + c * d.Lx, <const mg_mf_t *>keep + j * d.Lx, out, d.Lx)
            else:
                mg_keep_d(x + c * d.Lx, <const mg_md_t *>keep + j * d.Lx, out, d.Lx)
            for u in range(d.Lx, d.xplane - d.xfront):
                out[u] = 0
    for u in range(d.kw * d.C * d.xplane, d.xm):
        dst[u] = 0


cdef void _transpose_dy(const floating *dy, floating *dst, Direct d) noexcept nogil:
    """dst (L, G, ogp) = one sample's dY (O, L) transposed, zeros in each group's padding."""
    cdef Py_ssize_t p, grp, o
    for p in range(d.L):
        for grp in range(d.groups):
            for o in range(d.og):
                dst[(p * d.groups + grp) * d.ogp + o] = dy[(grp * d.og + o) * d.L + p]
            for o in range(d.og, d.ogp):
                dst[(p * d.groups + grp) * d.ogp + o] = 0


cdef inline void _wgrad_tile(Py_ssize_t tile, Py_ssize_t S, const floating *dyt,
                             const floating *xm, floating *dwt, Taps t, Direct d) noexcept nogil:
    """Rows [r0, r0 + MG_WG_ROWS) of dW^T (G, kgp, ogp) += the sums over S samples."""
    cdef Py_ssize_t per_grp = d.kgp // MG_WG_ROWS, grp = tile // per_grp
    cdef Py_ssize_t r0 = tile % per_grp * MG_WG_ROWS, kg = d.cg * d.taps
    cdef int mr = <int>min(<Py_ssize_t>MG_WG_ROWS, kg - r0)
    cdef Py_ssize_t ldb = d.groups * d.ogp
    if floating is float:
        mg_wgrad_f(mr, d.ogp, S, d.L, xm, d.xm, t.off_w + grp * d.kgp + r0, dyt + grp * d.ogp,
                   d.L * ldb, ldb, dwt + (grp * d.kgp + r0) * d.ogp, d.ogp)
    else:
        mg_wgrad_d(mr, d.ogp, S, d.L, xm, d.xm, t.off_w + grp * d.kgp + r0, dyt + grp * d.ogp,
                   d.L * ldb, ldb, dwt + (grp * d.kgp + r0) * d.ogp, d.ogp)


cdef void _direct_backward(const floating *x, const floating *dy, const floating *wx,
                           floating *dx, floating *dwt, floating *work, Py_ssize_t n0,
                           Py_ssize_t n1, Taps t, Direct d) noexcept nogil:
    """Samples [n0, n1): dx (N, C, ldx) rows = W' D per sample (when dx is not NULL) and dwt
    (G, kgp, ogp) += the block's sums (when dwt is not NULL). x (N, C, H W), dy (N, O, L); wx is
    W as (G, O/G kh kw, C/G rounded up to MG_GEMM_ROWS). work per sample: padded dY planes
    (O x yplane) for dx; dY^T (L x G ogp) and the masked copies (xm) for dW."""
    cdef Py_ssize_t S = n1 - n0, s, n, grp, tile, kx = d.og * d.taps
    cdef Py_ssize_t per_y = d.O * d.yplane if dx != NULL else 0
    cdef Py_ssize_t per_t = d.L * d.groups * d.ogp if dwt != NULL else 0
    cdef floating *yp = work
    cdef floating *yt = work + S * per_y
    cdef floating *xm = yt + S * per_t
    cdef Py_ssize_t tiles = d.groups * (d.kgp // MG_WG_ROWS)
    with parallel(num_threads=d.nt):
        for s in prange(S, schedule="static"):
            n = n0 + s
            if dwt != NULL:
                _transpose_dy(dy + n * d.O * d.L, yt + s * per_t, d)
                _masked_copies(x + n * d.C * d.Lx, xm + s * d.xm, t.keep, d)
            if dx != NULL:
                _pad_planes(dy + n * d.O * d.L, d.O, d.L, yp + s * per_y, d.yfront, d.yplane)
                for grp in range(d.groups):
                    _gemm(d.cg, d.ldx, kx, wx + grp * kx * d.cga, d.cga,
                          yp + s * per_y + grp * d.og * d.yplane, t.off_x, t.mask_x, t.mrow_x,
                          dx + (n * d.C + grp * d.cg) * d.ldx, d.ldx, NULL)
        if dwt != NULL:
            for tile in prange(tiles, schedule="static"):
                _wgrad_tile(tile, S, yt, xm, dwt, t, d)


cdef void _pack_forward(const floating *w, floating *wt, Direct d) noexcept nogil:
    """wt (G, C/G kh kw, oga) = W^T per group, zeros in columns og..oga (mg_gemm's A)."""
    cdef Py_ssize_t grp, k, o, kg = d.cg * d.taps
    for grp in range(d.groups):
        for k in range(kg):
            for o in range(d.og):
                wt[(grp * kg + k) * d.oga + o] = w[(grp * d.og + o) * kg + k]
            for o in range(d.og, d.oga):
                wt[(grp * kg + k) * d.oga + o] = 0


cdef void _pack_dx(const floating *w, floating *wx, Direct d) noexcept nogil:
    """wx (G, O/G, kh kw, cga) = W with each tap's input channels last, zeros in cg..cga."""
    cdef Py_ssize_t o, t, c
    for o in range(d.O):
        for t in range(d.taps):
            for c in range(d.cg):
                wx[(o * d.taps + t) * d.cga + c] = w[(o * d.cg + c) * d.taps + t]
            for c in range(d.cg, d.cga):
                wx[(o * d.taps + t) * d.cga + c] = 0


cdef void _unpack_dw(const floating *dwt, floating *dw, Direct d) noexcept nogil:
    """dw (G, O/G, C/G kh kw) = dW^T (G, kgp, ogp) transposed back, without its padding."""
    cdef Py_ssize_t grp, o, k, kg = d.cg * d.taps
    for grp in range(d.groups):
        for o in range(d.og):
            for k in range(kg):
                dw[(grp * d.og + o) * kg + k] = dwt[(grp * d.kgp + k) * d.ogp + o]
