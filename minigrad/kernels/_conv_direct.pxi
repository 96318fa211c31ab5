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
# * dW: dW[o, k] = sum over samples and positions p of dY[n, o, p] X[n, k, p], vectorised over
#   the positions (mg_wgrad): a block of samples' rows of X are copied, masked, into an im2col
#   buffer (each row contiguous over the block's positions, 64-byte aligned), dY's rows are read
#   where they are (or copied alongside), and tiles of 4 out channels x 4 (or 3) rows keep one
#   vector accumulator per output element, folded into horizontal sums at the end. No dY
#   transpose. Layers with more than WG_FEW_ROWS rows take the broadcast kernel instead
#   (mg_wgrad_bc: rows of X, from copies of the padded planes with each tap column's wrapped
#   columns zeroed, broadcast against dY^T), which measured faster there. Threads build the
#   buffers by samples, then split the out channels (or rows of dW^T); every sum runs over the
#   samples in order whatever the thread count. db is dY's float64 channel sums.
# Forward and dx need no sums across samples: each sample's rows are computed by one thread.
#
# Size rule (_use_direct), measured one thread, float32, against the im2col path (us; forward /
# dW / dx). On an AMD EPYC (Zen 4, AVX-512) with the earlier dW (rows of X broadcast against
# dY^T), min of 30 interleaved runs (5 at MNIST sizes):
#   64x1x8x8 -> 16      im2col 45 / 79 / 60            direct 26 / 112 / 96
#   64x16x4x4 -> 32     im2col 212 / 261 / 193         direct 100 / 161 / 111
#   64x16x8x8 -> 32     im2col 514 / 701 / 544         direct 358 / 465 / 377
#   128x1x28x28 -> 32   im2col 1915 / 1960 / 2169      direct 1773 / 4789 / 9525
#   128x32x14x14 -> 64  im2col 12407 / 13592 / 12316   direct 10502 / 11420 / 10484
# On an Intel Xeon (Sapphire Rapids class, AVX-512, 2 cores) with this dW, min of 15
# interleaved runs, other processes busy on both cores (OMP_WAIT_POLICY=PASSIVE,
# OPENBLAS_NUM_THREADS=1):
#   64x1x8x8 -> 16      im2col 40 / 48 / 36            direct 22 / 26 / 61
#   64x16x4x4 -> 32     im2col 175 / 190 / 152         direct 77 / 130 / 80
#   64x16x8x8 -> 32     im2col 434 / 581 / 370         direct 271 / 407 / 280
#   128x1x28x28 -> 32   im2col 1632 / 1346 / 1085      direct 1393 / 1069 / 6313
#   128x32x14x14 -> 64  im2col 9463 / 9731 / 8586      direct 9375 / 9604 / 8685
# So the forward and dW take the direct path on every geometry it covers (on the AMD machine
# its forward won or tied everywhere too: at 28x28 with one input channel, medians 2123
# against 2135), and dx once its products have many rows (C/G kh kw >= DIRECT_MIN_ROWS: with
# one input channel and 3x3 taps, nine rows give too few multiply-adds per load, on both
# machines). conv2d_backward decides dx and dW separately, so a first layer's backward runs dW
# on the direct path and dx (when asked for) on the im2col one.

from cython.parallel cimport parallel
from libc.stdint cimport uintptr_t

# dW runs a block of samples at a time whose rows hold this many bytes (at least one sample):
# each strip's dY rows (MG_WG_OUT of them) stay in the L1 cache while the tiles of the buffer
# rows read them, and the block's buffer stays in L2. Measured dW, one thread, us, with 4 / 8 /
# 16 KiB: 64x16x8x8 -> 32 406 / 521 / 746, 128x32x14x14 -> 64 10229 / 13014 / 20189,
# 64x16x4x4 -> 32 123 / 123 / 122 (64 samples of 16 positions: one block either way).
WG_CHUNK_BYTES = 4096  # a module attribute, so that tests can force many blocks


# the threads of the OpenMP team running the caller (1 outside a parallel region)
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int mg_team_size(void) { return omp_get_num_threads(); }
    #else
    static int mg_team_size(void) { return 1; }
    #endif
    """
    int mg_team_size() noexcept nogil


cdef inline Py_ssize_t _round_up(Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    return (n + m - 1) // m * m


cdef inline Py_ssize_t _row_stride(Py_ssize_t n, Py_ssize_t vl) noexcept nogil:
    """Values between dW's buffer rows for n positions: whole vectors, plus one when the rows
    would be a multiple of 1 KiB apart (4 KiB apart, every row of a tile and of a sample's
    writes fell in the same L1 cache set: 64x16x4x4 -> 32 dW 143 against 80 us)."""
    cdef Py_ssize_t ld = _round_up(n, vl)
    return ld + vl if ld * (64 // vl) % 1024 == 0 else ld  # vl values: 64 bytes

cdef extern from "_conv_gemm.h":
    enum:
        MG_VL_F
        MG_VL_D
        MG_GEMM_ROWS
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
    enum:
        MG_WG_OUT
    void mg_wgrad_f(int tall, int mo, int mk, Py_ssize_t S, Py_ssize_t nv, const float *D,
                    Py_ssize_t ldd, Py_ssize_t ds, const float *X, Py_ssize_t ldx,
                    Py_ssize_t xs, float *C, Py_ssize_t ldc) noexcept nogil
    void mg_wgrad_d(int tall, int mo, int mk, Py_ssize_t S, Py_ssize_t nv, const double *D,
                    Py_ssize_t ldd, Py_ssize_t ds, const double *X, Py_ssize_t ldx,
                    Py_ssize_t xs, double *C, Py_ssize_t ldc) noexcept nogil
    enum:
        MG_BC_ROWS
    void mg_wgrad_bc_f(int mr, Py_ssize_t N, Py_ssize_t S, Py_ssize_t L, const float *X,
                       Py_ssize_t xs, const Py_ssize_t *off, const float *B, Py_ssize_t bs,
                       Py_ssize_t ldb, float *C, Py_ssize_t ldc) noexcept nogil
    void mg_wgrad_bc_d(int mr, Py_ssize_t N, Py_ssize_t S, Py_ssize_t L, const double *X,
                       Py_ssize_t xs, const Py_ssize_t *off, const double *B, Py_ssize_t bs,
                       Py_ssize_t ldb, double *C, Py_ssize_t ldc) noexcept nogil
    void mg_keep_f(const float *x, const mg_mf_t *keep, float *out, Py_ssize_t n) noexcept nogil
    void mg_keep_d(const double *x, const mg_md_t *keep, double *out,
                   Py_ssize_t n) noexcept nogil
    int mg_all_finite_f(const float *x, Py_ssize_t n) noexcept nogil
    int mg_all_finite_d(const double *x, Py_ssize_t n) noexcept nogil


cdef struct Direct:
    Py_ssize_t L, ld            # output positions Ho W, and rounded up to whole vectors
    Py_ssize_t Lx, ldx          # input positions H W, likewise
    Py_ssize_t N, C, O, cg, og, taps, groups
    Py_ssize_t xfront, xplane   # a padded x plane: xfront zeros, H W values, zeros to xplane
    Py_ssize_t yfront, yplane   # a padded dY plane, likewise
    Py_ssize_t oga, cga         # O/G and C/G rounded up to MG_GEMM_ROWS (mg_gemm's A columns)
    Py_ssize_t vl               # values per vector
    int nt                      # threads
    int tall                    # dW tiles: rows of the buffer per tile (3 or 4)
    Py_ssize_t chunk            # dW: positions per block of samples (WG_CHUNK_BYTES of a row)
    Py_ssize_t lp               # dW: a sample's positions in its rows, L rounded up to vectors
    bint copy_dy                # dW: dY's rows copied (else read in place)
    bint bc                     # dW by broadcasts (mg_wgrad_bc), with these:
    Py_ssize_t kw, ogp, kgp     # O/G and C/G kh kw rounded up to a vector and to MG_BC_ROWS
    Py_ssize_t xm               # a sample's kw masked copies of its padded x planes + L zeros


cdef struct Taps:
    # for each row k of the products: where the row starts in its padded planes (off) and
    # which row of the masks applies (mrow, j ld); forward and dW rows (c, i, j), dx rows (o, i, j)
    const Py_ssize_t *off
    const Py_ssize_t *mrow
    const void *mask            # (kw, ld) int32 / int64: all ones where the position is read
    const Py_ssize_t *off_x
    const Py_ssize_t *mrow_x
    const void *mask_x          # (kw, ldx)
    const Py_ssize_t *off_w     # mg_wgrad_bc's rows (G, kgp): in a sample's masked copies
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


cdef inline void _forward_sample(Py_ssize_t n, const floating *x, const floating *wt,
                                 const floating *bias, floating *y, floating *xp, Taps t,
                                 Direct d) noexcept nogil:
    """Sample n of _direct_forward, its padded planes built in xp."""
    cdef Py_ssize_t grp, kg = d.cg * d.taps
    cdef const floating *b
    _pad_planes(x + n * d.C * d.Lx, d.C, d.Lx, xp, d.xfront, d.xplane)
    for grp in range(d.groups):
        b = NULL
        if bias != NULL:
            b = bias + grp * d.og
        _gemm(d.og, d.ld, kg, wt + grp * kg * d.oga, d.oga, xp + grp * d.cg * d.xplane,
              t.off, t.mask, t.mrow, y + (n * d.O + grp * d.og) * d.ld, d.ld, b)


cdef void _direct_forward(const floating *x, const floating *wt, const floating *bias,
                          floating *y, floating *work, Taps t, Direct d) noexcept nogil:
    """y (N, O, ld) = conv2d(x) + bias, x (N, C, H W); wt is W^T per group (G, C/G kh kw, oga);
    work holds one sample's padded planes (C x xplane) per thread. On one thread, a plain loop
    (no OpenMP region to enter and leave)."""
    cdef Py_ssize_t n, per = d.C * d.xplane
    if d.nt == 1:
        for n in range(d.N):
            _forward_sample(n, x, wt, bias, y, work, t, d)
        return
    for n in prange(d.N, num_threads=d.nt, schedule="static"):
        _forward_sample(n, x, wt, bias, y, work + threadid() * per, t, d)


cdef inline void _wgrad_strip(Py_ssize_t strip, Py_ssize_t S, const floating *D,
                              Py_ssize_t ldd, Py_ssize_t ds, const floating *cols,
                              Py_ssize_t ldx, floating *dw, Direct d) noexcept nogil:
    """The tiles of one strip of dw (MG_WG_OUT out channels of one group, all C/G kh kw
    columns, d.tall at a time) += their sums over a block of S samples: dY's rows of sample s
    at D + s ds (ldd apart), the buffer's at cols + s lp (ldx apart), lp positions each. The
    strip's dY rows stay in the L1 cache meanwhile."""
    cdef Py_ssize_t kg = d.cg * d.taps, ot = (d.og + MG_WG_OUT - 1) // MG_WG_OUT, k
    cdef Py_ssize_t grp = strip // ot, o = grp * d.og + strip % ot * MG_WG_OUT
    cdef int mo = <int>min(<Py_ssize_t>MG_WG_OUT, (grp + 1) * d.og - o), mk
    cdef const floating *X = cols + grp * kg * ldx
    D = D + o * ldd
    k = 0
    while k < kg:
        mk = <int>min(<Py_ssize_t>d.tall, kg - k)
        if floating is float:
            mg_wgrad_f(d.tall, mo, mk, S, d.lp // d.vl, D, ldd, ds, X + k * ldx, ldx, d.lp,
                       dw + o * kg + k, kg)
        else:
            mg_wgrad_d(d.tall, mo, mk, S, d.lp // d.vl, D, ldd, ds, X + k * ldx, ldx, d.lp,
                       dw + o * kg + k, kg)
        k = k + d.tall


cdef inline void _wgrad_rows(const floating *x, floating *cols, Py_ssize_t ldx, floating *xp,
                             Taps t, Direct d) noexcept nogil:
    """One sample's rows of dW's im2col buffer (G C/G kh kw rows, ldx apart, lp positions):
    row (c, i, j) is the tap's shifted run of the padded plane c (built in xp), masked where
    the tap's column falls in the left or right padding (a bitwise and: x may hold inf), then
    zeros from L to lp."""
    cdef Py_ssize_t grp, k, p, kg = d.cg * d.taps
    cdef floating *row
    _pad_planes(x, d.C, d.Lx, xp, d.xfront, d.xplane)
    for grp in range(d.groups):
        for k in range(kg):
            row = cols + (grp * kg + k) * ldx
            if floating is float:
                mg_keep_f(xp + grp * d.cg * d.xplane + t.off[k],
                          <const mg_mf_t *>t.mask + t.mrow[k], row, d.L)
            else:
                mg_keep_d(xp + grp * d.cg * d.xplane + t.off[k],
                          <const mg_md_t *>t.mask + t.mrow[k], row, d.L)
            for p in range(d.L, d.lp):
                row[p] = 0


cdef inline void _wgrad_sample(Py_ssize_t s, const floating *x, const floating *dy,
                               floating *cols, floating *dyp, floating *xp, Py_ssize_t n0,
                               Py_ssize_t ldx, Taps t, Direct d) noexcept nogil:
    """Sample n0 + s's part of _direct_wgrad's buffer (and of dY's copies, with copy_dy)."""
    cdef Py_ssize_t o, p
    cdef const floating *src
    cdef floating *dst
    _wgrad_rows(x + (n0 + s) * d.C * d.Lx, cols + s * d.lp, ldx, xp, t, d)
    if d.copy_dy:
        src = dy + (n0 + s) * d.O * d.L
        for o in range(d.O):
            dst = dyp + o * ldx + s * d.lp
            for p in range(d.L):
                dst[p] = src[o * d.L + p]
            for p in range(d.L, d.lp):
                dst[p] = 0


cdef inline void _wgrad_block_strip(Py_ssize_t strip, Py_ssize_t S, const floating *dy,
                                    const floating *cols, const floating *dyp, floating *dw,
                                    Py_ssize_t n0, Py_ssize_t ldx, Direct d) noexcept nogil:
    if d.copy_dy:
        _wgrad_strip(strip, S, dyp, ldx, d.lp, cols, ldx, dw, d)
    else:
        _wgrad_strip(strip, S, dy + n0 * d.O * d.L, d.L, d.O * d.L, cols, ldx, dw, d)


cdef void _masked_copies(const floating *x, floating *dst, const void *keep,
                         Direct d) noexcept nogil:
    """mg_wgrad_bc's rows: for each tap column j, the padded x planes of one sample with the
    columns that tap column j may not read (those its rows wrap onto) zeroed; then L zeros."""
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


cdef inline void _bc_sample(Py_ssize_t s, const floating *x, const floating *dy,
                            floating *yt, floating *xm, Py_ssize_t n0, Taps t,
                            Direct d) noexcept nogil:
    """Sample n0 + s's dY^T (L x G ogp, zeros in each group's padding) and masked copies."""
    cdef Py_ssize_t n = n0 + s, p, grp, o
    cdef floating *dst = yt + s * d.L * d.groups * d.ogp
    for p in range(d.L):
        for grp in range(d.groups):
            for o in range(d.og):
                dst[(p * d.groups + grp) * d.ogp + o] = dy[(n * d.O + grp * d.og + o) * d.L + p]
            for o in range(d.og, d.ogp):
                dst[(p * d.groups + grp) * d.ogp + o] = 0
    _masked_copies(x + n * d.C * d.Lx, xm + s * d.xm, t.keep, d)


cdef inline void _bc_tile(Py_ssize_t tile, Py_ssize_t S, const floating *yt,
                          const floating *xm, floating *dwt, Taps t, Direct d) noexcept nogil:
    """Rows [r0, r0 + MG_BC_ROWS) of one group's dW^T += their sums over the block."""
    cdef Py_ssize_t per_grp = d.kgp // MG_BC_ROWS, ldb = d.groups * d.ogp
    cdef Py_ssize_t grp = tile // per_grp, r0 = tile % per_grp * MG_BC_ROWS
    cdef int mr = <int>min(<Py_ssize_t>MG_BC_ROWS, d.cg * d.taps - r0)
    if floating is float:
        mg_wgrad_bc_f(mr, d.ogp, S, d.L, xm, d.xm, t.off_w + grp * d.kgp + r0,
                      yt + grp * d.ogp, d.L * ldb, ldb, dwt + (grp * d.kgp + r0) * d.ogp,
                      d.ogp)
    else:
        mg_wgrad_bc_d(mr, d.ogp, S, d.L, xm, d.xm, t.off_w + grp * d.kgp + r0,
                      yt + grp * d.ogp, d.L * ldb, ldb, dwt + (grp * d.kgp + r0) * d.ogp,
                      d.ogp)


cdef void _direct_wgrad_bc(const floating *x, const floating *dy, floating *dwt,
                           floating *work, Py_ssize_t n0, Py_ssize_t n1, Taps t,
                           Direct d) noexcept nogil:
    """dwt (G, kgp, ogp) += the sums over samples [n0, n1) of the rows of X times dY^T
    (mg_wgrad_bc). work per sample: dY^T (L x G ogp, zeros in each group's padding) and the
    masked copies (xm); threads split the samples, then the rows of dW^T. On one thread, plain
    loops (no OpenMP region)."""
    cdef Py_ssize_t S = n1 - n0, s, tile, tiles = d.groups * (d.kgp // MG_BC_ROWS)
    cdef floating *yt = work
    cdef floating *xm = work + S * d.L * d.groups * d.ogp
    if d.nt == 1:
        for s in range(S):
            _bc_sample(s, x, dy, yt, xm, n0, t, d)
        for tile in range(tiles):
            _bc_tile(tile, S, yt, xm, dwt, t, d)
        return
    with parallel(num_threads=d.nt):
        for s in prange(S, schedule="static"):
            _bc_sample(s, x, dy, yt, xm, n0, t, d)
        for tile in prange(tiles, schedule="static"):
            _bc_tile(tile, S, yt, xm, dwt, t, d)


cdef void _unpack_dw(const floating *dwt, floating *dw, Direct d) noexcept nogil:
    """dw (G, O/G, C/G kh kw) = dW^T (G, kgp, ogp) transposed back, without its padding."""
    cdef Py_ssize_t grp, o, k, kg = d.cg * d.taps
    for grp in range(d.groups):
        for o in range(d.og):
            for k in range(kg):
                dw[(grp * d.og + o) * kg + k] = dwt[(grp * d.kgp + k) * d.ogp + o]


cdef inline void _dx_sample(Py_ssize_t n, const floating *dy, const floating *wx,
                            floating *dx, floating *yp, Taps t, Direct d) noexcept nogil:
    """Sample n of _direct_dx, its padded dY planes built in yp."""
    cdef Py_ssize_t grp, kx = d.og * d.taps
    _pad_planes(dy + n * d.O * d.L, d.O, d.L, yp, d.yfront, d.yplane)
    for grp in range(d.groups):
        _gemm(d.cg, d.ldx, kx, wx + grp * kx * d.cga, d.cga, yp + grp * d.og * d.yplane,
              t.off_x, t.mask_x, t.mrow_x, dx + (n * d.C + grp * d.cg) * d.ldx, d.ldx, NULL)


cdef void _direct_dx(const floating *dy, const floating *wx, floating *dx, floating *work,
                     Taps t, Direct d) noexcept nogil:
    """dx (N, C, ldx) rows = W' D per sample and group, D the padded dY planes (O x yplane,
    built in work, one sample per thread) shifted back per tap; wx is W as (G, O/G kh kw, C/G
    rounded up to MG_GEMM_ROWS). On one thread, a plain loop (no OpenMP region)."""
    cdef Py_ssize_t n, per = d.O * d.yplane
    if d.nt == 1:
        for n in range(d.N):
            _dx_sample(n, dy, wx, dx, work, t, d)
        return
    for n in prange(d.N, num_threads=d.nt, schedule="static"):
        _dx_sample(n, dy, wx, dx, work + threadid() * per, t, d)


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
