# Included by _norm.pyx: BatchNorm's passes over (N, C, S) data: the per-channel sums (per
# plane, or by columns when planes are short) and the elementwise writes of y and dx. The loops
# over short planes are C (_norm_batch.h): strips of columns and 512-bit vectors.

# ------------------------------------------------------------------ BatchNorm passes


cdef inline Py_ssize_t _chunk(Py_ssize_t total, int parts) noexcept nogil:
    """Size of each of ``parts`` near-equal pieces of ``total``, rounded up to 16 (cache lines)."""
    cdef Py_ssize_t size = (total + parts - 1) // parts
    return (size + 15) // 16 * 16


# BatchNorm of (N, C, S) data whose planes are short runs "wide" when the C * S values of one
# sample are at most this many: each sample is then one row of C * S columns, so the inner loops
# run over C * S values instead of S, with per-column coefficients (each channel's repeated S
# times) and per-column float64 sums added per channel at the end. Short planes otherwise cost
# a call, a loop set-up and a fold of the float64 lanes per S values (measured: (64, 32, 4, 4)
# float32 took longer than (64, 16, 8, 8), twice its data). The column sums stay in L2.
cdef enum:
    BATCHNORM_WIDE_MAX = 16384
    BATCHNORM_WIDE_SUMS_S = 256
    BATCHNORM_WIDE_WRITE_S = 16
    COLUMN_PAD = 16


cdef inline Py_ssize_t _columns_per_channel(Py_ssize_t N, Py_ssize_t C,
                                            Py_ssize_t S) noexcept nogil:
    """S when BatchNorm's sums run wide (one column per value of a sample, see above), else 0.

    Wide, each column costs a few float64 passes besides its N values (the shift or mean, the
    fold into its channel); a plane costs a call and a fold of lanes besides its S values.
    Measured (float32 forward + backward, one thread, min of 15 runs, us, planes -> columns):
    (64, 16, 8, 8) 71 -> 47, (64, 32, 4, 4) 83 -> 27, (8, 128, 8, 8) 73 -> 64; ties at
    (128, 32, 14, 14) 1047 -> 1062; slower at (4, 256, 8, 8) 71 -> 83, (16, 64, 16, 16) (S = 256)
    284 -> 310 and (256, 64, 16, 16) 5925 -> 6176: the columns pay from about N >= S / 4 and
    for planes shorter than 256.
    """
    return S if S == 1 or (C * S <= BATCHNORM_WIDE_MAX and S <= 4 * N
                           and S < BATCHNORM_WIDE_SUMS_S) else 0


cdef inline Py_ssize_t _write_columns(Py_ssize_t C, Py_ssize_t S) noexcept nogil:
    """S when BatchNorm's write passes run wide, else 0. Wide, every value loads its own
    coefficients (4 or 5 more loads each); a plane at a time takes its channel's as constants
    but pays a loop set-up and a partial vector per plane. Measured (float32 forward + backward
    with the sums by columns, one thread, us, planes -> wide): S = 2 48 -> 18, 3 82 -> 35,
    8 15 -> 12, 12 19 -> 15, 16 (64, 32, 4, 4) 28 -> 30 and (64, 64, 16) 49 -> 48, 24 76 -> 87,
    64 47 -> 49: wide below BATCHNORM_WIDE_WRITE_S."""
    return S if S == 1 or (S < BATCHNORM_WIDE_WRITE_S and C * S <= BATCHNORM_WIDE_MAX) else 0


cdef void _plane_shifted_sums(const floating *x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
                              Py_ssize_t c0, Py_ssize_t c1, double *sum1,
                              double *sum2) noexcept nogil:
    """Per channel c0..c1 of C-contiguous (N, C, S) x: sums of x - x[0, c, 0] and its squares.

    Walks n outside and channels inside, so the planes are read in memory order.
    """
    cdef Py_ssize_t n, c
    for c in range(c0, c1):
        sum1[c] = 0.0
        sum2[c] = 0.0
    for n in range(N):
        for c in range(c0, c1):
            _row_moments(x + (n * C + c) * S, S, x[c * S], &sum1[c], &sum2[c])


cdef void _plane_grad_sums(const floating *dy, const floating *x, Py_ssize_t N, Py_ssize_t C,
                           Py_ssize_t S, Py_ssize_t c0, Py_ssize_t c1, const double *mean,
                           double *sum_dy, double *sum_dy_xc) noexcept nogil:
    """Per channel c0..c1 of C-contiguous (N, C, S) data: sum of dy and of dy * (x - mean[c])."""
    cdef Py_ssize_t n, c, o
    cdef double s1, s2
    for c in range(c0, c1):
        sum_dy[c] = 0.0
        sum_dy_xc[c] = 0.0
    for n in range(N):
        for c in range(c0, c1):
            o = (n * C + c) * S
            _grad_sums(dy + o, x + o, S, mean[c], &s1, &s2)
            sum_dy[c] += s1
            sum_dy_xc[c] += s2


cdef void _plane_unshifted_sums(const floating *x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
                                Py_ssize_t c, double *sum1, double *sum2) noexcept nogil:
    """Sums of x and x^2 over channel c of (N, C, S) x (used when x[0, c, 0] is inf or NaN)."""
    cdef Py_ssize_t n
    sum1[0] = 0.0
    sum2[0] = 0.0
    for n in range(N):
        _row_moments(x + (n * C + c) * S, S, 0.0, sum1, sum2)


cdef inline double _nonnegative(double var) noexcept nogil:
    """Clamp the rounding error of a one-pass variance at 0, but let NaN through (NumPy's
    variance of data holding NaN or inf is NaN; max(NaN, 0.0) would silently give 0)."""
    return 0.0 if var < 0.0 else var


cdef extern from "_norm_batch.h" nogil:
    void mg_bn_fold_columns(const double *s1, const double *s2, Py_ssize_t c0, Py_ssize_t c1,
                            Py_ssize_t S, double *out1, double *out2)
    void mg_bn_column_moments_f(const float *x, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t c0,
                                Py_ssize_t c1, const double *k, double *sum1, double *sum2)
    void mg_bn_column_moments_d(const double *x, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t c0,
                                Py_ssize_t c1, const double *k, double *sum1, double *sum2)
    void mg_bn_column_grad_sums_f(const float *dy, const float *mask, const float *x,
                                  Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t c0, Py_ssize_t c1,
                                  const double *mean, double *sum_dy, double *sum_dy_xc)
    void mg_bn_column_grad_sums_d(const double *dy, const double *mask, const double *x,
                                  Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t c0, Py_ssize_t c1,
                                  const double *mean, double *sum_dy, double *sum_dy_xc)
    void mg_bn_write_rows_f(const float *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols,
                            const float *hi, const float *lo, const float *scale,
                            const float *shift, float *y, int relu)
    void mg_bn_write_rows_d(const double *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols,
                            const double *hi, const double *lo, const double *scale,
                            const double *shift, double *y, int relu)
    void mg_bn_write_planes_f(const float *x, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t C,
                              Py_ssize_t S, const float *hi, const float *lo, const float *scale,
                              const float *shift, float *y, int relu)
    void mg_bn_write_planes_d(const double *x, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t C,
                              Py_ssize_t S, const double *hi, const double *lo,
                              const double *scale, const double *shift, double *y, int relu)
    void mg_bn_dx_rows_f(const float *dy, const float *mask, const float *x, Py_ssize_t r0,
                         Py_ssize_t r1, Py_ssize_t cols, const float *hi, const float *lo,
                         const float *a, const float *b, const float *d, float *dx)
    void mg_bn_dx_rows_d(const double *dy, const double *mask, const double *x, Py_ssize_t r0,
                         Py_ssize_t r1, Py_ssize_t cols, const double *hi, const double *lo,
                         const double *a, const double *b, const double *d, double *dx)
    void mg_bn_dx_planes_f(const float *dy, const float *mask, const float *x, Py_ssize_t n0,
                           Py_ssize_t n1, Py_ssize_t C, Py_ssize_t S, const float *hi,
                           const float *lo, const float *a, const float *b, const float *d,
                           float *dx)
    void mg_bn_dx_planes_d(const double *dy, const double *mask, const double *x, Py_ssize_t n0,
                           Py_ssize_t n1, Py_ssize_t C, Py_ssize_t S, const double *hi,
                           const double *lo, const double *a, const double *b, const double *d,
                           double *dx)


# fused-type dispatchers of the loops above (float data: _f, double: _d)
cdef inline void _column_moments(const floating *x, Py_ssize_t rows, Py_ssize_t cols,
                                 Py_ssize_t c0, Py_ssize_t c1, const double *k, double *sum1,
                                 double *sum2) noexcept nogil:
    if floating is float:
        mg_bn_column_moments_f(x, rows, cols, c0, c1, k, sum1, sum2)
    else:
        mg_bn_column_moments_d(x, rows, cols, c0, c1, k, sum1, sum2)


cdef inline void _column_grad(const floating *dy, const floating *mask, const floating *x,
                              Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t c0, Py_ssize_t c1,
                              const double *mean, double *sum_dy,
                              double *sum_dy_xc) noexcept nogil:
    if floating is float:
        mg_bn_column_grad_sums_f(dy, mask, x, rows, cols, c0, c1, mean, sum_dy, sum_dy_xc)
    else:
        mg_bn_column_grad_sums_d(dy, mask, x, rows, cols, c0, c1, mean, sum_dy, sum_dy_xc)


cdef inline void _write_rows(const floating *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols,
                             const floating *hi, const floating *lo, const floating *scale,
                             const floating *shift, floating *y, bint relu) noexcept nogil:
    if floating is float:
        mg_bn_write_rows_f(x, r0, r1, cols, hi, lo, scale, shift, y, relu)
    else:
        mg_bn_write_rows_d(x, r0, r1, cols, hi, lo, scale, shift, y, relu)


cdef inline void _write_planes(const floating *x, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t C,
                               Py_ssize_t S, const floating *hi, const floating *lo,
                               const floating *scale, const floating *shift, floating *y,
                               bint relu) noexcept nogil:
    if floating is float:
        mg_bn_write_planes_f(x, n0, n1, C, S, hi, lo, scale, shift, y, relu)
    else:
        mg_bn_write_planes_d(x, n0, n1, C, S, hi, lo, scale, shift, y, relu)


cdef inline void _dx_rows(const floating *dy, const floating *mask, const floating *x,
                          Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols, const floating *hi,
                          const floating *lo, const floating *a, const floating *b,
                          const floating *d, floating *dx) noexcept nogil:
    if floating is float:
        mg_bn_dx_rows_f(dy, mask, x, r0, r1, cols, hi, lo, a, b, d, dx)
    else:
        mg_bn_dx_rows_d(dy, mask, x, r0, r1, cols, hi, lo, a, b, d, dx)


cdef inline void _dx_planes(const floating *dy, const floating *mask, const floating *x,
                            Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t C, Py_ssize_t S,
                            const floating *hi, const floating *lo, const floating *a,
                            const floating *b, const floating *d, floating *dx) noexcept nogil:
    if floating is float:
        mg_bn_dx_planes_f(dy, mask, x, n0, n1, C, S, hi, lo, a, b, d, dx)
    else:
        mg_bn_dx_planes_d(dy, mask, x, n0, n1, C, S, hi, lo, a, b, d, dx)


cdef void _channel_sums(const floating *x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
                        Py_ssize_t c0, Py_ssize_t c1, double *sum1, double *sum2,
                        double *cols, Py_ssize_t cw) noexcept nogil:
    """Sums of x - x[0, c, 0] and of its squares per channel c0..c1 of (N, C, S) x, by columns
    when S == 1 or wide: every column (c, s) shifted by its channel's first value (cols row 0),
    its sums (rows 1-2) then added per channel (``mg_bn_fold_columns``; S == 1: straight into
    sum1, sum2, no scratch). cols: three float64 rows ``cw`` apart. A channel whose first value
    is inf or NaN gets NaN here; the caller sums it unshifted (``_plane_unshifted_sums``)."""
    cdef Py_ssize_t c, j
    cdef double v
    if not _columns_per_channel(N, C, S):
        _plane_shifted_sums(x, N, C, S, c0, c1, sum1, sum2)
        return
    if S == 1:  # each column a channel, shifted by its first value
        _column_moments(x, N, C, c0, c1, NULL, sum1, sum2)
        return
    for c in range(c0, c1):
        v = x[c * S]
        for j in range(c * S, c * S + S):
            cols[j] = v
    _column_moments(x, N, C * S, c0 * S, c1 * S, cols, cols + cw, cols + 2 * cw)
    mg_bn_fold_columns(cols + cw, cols + 2 * cw, c0, c1, S, sum1, sum2)


cdef void _batchnorm_sums(const floating *x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
                          double *sum1, double *sum2, double *cols, Py_ssize_t cw,
                          int nt) noexcept nogil:
    """Shifted sums per channel of (N, C, S) x, threads splitting the channels.

    cols (3 rows ``cw`` >= C * S apart) is scratch for the column sums when the channels run by
    columns.
    """
    cdef Py_ssize_t chunk, t
    if N * S == 0:  # no values: nothing to read, the sums are 0
        for t in range(C):
            sum1[t] = 0.0
            sum2[t] = 0.0
        return
    if nt == 1:
        _channel_sums(x, N, C, S, 0, C, sum1, sum2, cols, cw)
        return
    chunk = _chunk(C, nt)
    for t in prange(nt, num_threads=nt, schedule="static"):
        _channel_sums(x, N, C, S, min(t * chunk, C), min(t * chunk + chunk, C), sum1, sum2, cols,
                      cw)


cdef void _channel_grad_sums(const floating *dy, const floating *mask, const floating *x,
                             Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, Py_ssize_t c0,
                             Py_ssize_t c1, const double *mean, double *sum_dy,
                             double *sum_dy_xc, double *cols, Py_ssize_t cw) noexcept nogil:
    """sum(g) and sum(g * (x - mean)) of channels c0..c1, g = dy (times mask > 0 with a mask,
    which only the column path takes), by columns when S == 1 or wide.

    By columns with S > 1, cols (3 rows ``cw`` apart) holds each column's mean (row 0) and its
    two sums, which are then added per channel (``mg_bn_fold_columns``).
    """
    cdef Py_ssize_t c, j
    if not _columns_per_channel(N, C, S):
        _plane_grad_sums(dy, x, N, C, S, c0, c1, mean, sum_dy, sum_dy_xc)
        return
    if S == 1:
        _column_grad(dy, mask, x, N, C, c0, c1, mean, sum_dy, sum_dy_xc)
        return
    for c in range(c0, c1):
        for j in range(c * S, c * S + S):
            cols[j] = mean[c]
    _column_grad(dy, mask, x, N, C * S, c0 * S, c1 * S, cols, cols + cw, cols + 2 * cw)
    mg_bn_fold_columns(cols + cw, cols + 2 * cw, c0, c1, S, sum_dy, sum_dy_xc)


cdef void _batchnorm_grad_sums(const floating *dy, const floating *mask, const floating *x,
                               Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, const double *mean,
                               double *sum_dy, double *sum_dy_xc, double *cols, Py_ssize_t cw,
                               int nt) noexcept nogil:
    """sum(g) and sum(g * (x - mean)) per channel, threads splitting the channels."""
    cdef Py_ssize_t chunk, t
    if nt == 1:
        _channel_grad_sums(dy, mask, x, N, C, S, 0, C, mean, sum_dy, sum_dy_xc, cols, cw)
        return
    chunk = _chunk(C, nt)
    for t in prange(nt, num_threads=nt, schedule="static"):
        _channel_grad_sums(dy, mask, x, N, C, S, min(t * chunk, C), min(t * chunk + chunk, C),
                           mean, sum_dy, sum_dy_xc, cols, cw)


cdef void _write_samples(const floating *x, Py_ssize_t C, Py_ssize_t S, const floating *coef,
                         Py_ssize_t W, floating *y, Py_ssize_t n0, Py_ssize_t n1,
                         bint relu) noexcept nogil:
    """The write pass y = (x - mean) * scale + shift (then max(y, 0) with relu) over samples
    n0..n1; coef rows (``W`` apart): mean_hi, mean_lo, scale, shift, per column of a sample
    (C * S of them) when the write runs wide (``_write_columns``), else per channel."""
    if _write_columns(C, S):
        _write_rows(x, n0, n1, C * S, coef, coef + W, coef + 2 * W, coef + 3 * W, y, relu)
    else:
        _write_planes(x, n0, n1, C, S, coef, coef + W, coef + 2 * W, coef + 3 * W, y, relu)


cdef void _batchnorm_write(const floating *x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
                           const floating *coef, Py_ssize_t W, floating *y, int nt,
                           bint relu) noexcept nogil:
    """``_write_samples`` over all samples, threads splitting them."""
    cdef Py_ssize_t chunk, t
    if nt == 1:
        _write_samples(x, C, S, coef, W, y, 0, N, relu)
        return
    chunk = (N + nt - 1) // nt
    for t in prange(nt, num_threads=nt, schedule="static"):
        _write_samples(x, C, S, coef, W, y, min(t * chunk, N), min(t * chunk + chunk, N), relu)


cdef void _dx_samples(const floating *dy, const floating *mask, const floating *x, Py_ssize_t C,
                      Py_ssize_t S, const floating *coef, Py_ssize_t W, floating *dx,
                      Py_ssize_t n0, Py_ssize_t n1) noexcept nogil:
    """dx = g * a + (x - mean) * b + d over samples n0..n1, g = dy (times mask > 0 with a
    mask); coef rows (``W`` apart): mean_hi, mean_lo, a, b, d, per column of a sample when
    wide, else per channel."""
    if _write_columns(C, S):
        _dx_rows(dy, mask, x, n0, n1, C * S, coef, coef + W, coef + 2 * W, coef + 3 * W,
                 coef + 4 * W, dx)
    else:
        _dx_planes(dy, mask, x, n0, n1, C, S, coef, coef + W, coef + 2 * W, coef + 3 * W,
                   coef + 4 * W, dx)


cdef void _batchnorm_dx_write(const floating *dy, const floating *mask, const floating *x,
                              Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, const floating *coef,
                              Py_ssize_t W, floating *dx, int nt) noexcept nogil:
    """``_dx_samples`` over all samples, threads splitting them."""
    cdef Py_ssize_t chunk, t
    if nt == 1:
        _dx_samples(dy, mask, x, C, S, coef, W, dx, 0, N)
        return
    chunk = (N + nt - 1) // nt
    for t in prange(nt, num_threads=nt, schedule="static"):
        _dx_samples(dy, mask, x, C, S, coef, W, dx, min(t * chunk, N), min(t * chunk + chunk, N))


cdef void _spread_columns(floating *coef, Py_ssize_t rows, Py_ssize_t W, Py_ssize_t C,
                          Py_ssize_t S) noexcept nogil:
    """Per-channel coefficients coef[k * W + c] (c < C) of each of ``rows`` rows to per-column
    ones coef[k * W + c * S + s], in place: channels last to first, so no value is overwritten
    before it is read (c * S >= c)."""
    cdef Py_ssize_t k, c, s
    cdef floating v
    cdef floating *row
    for k in range(rows):
        row = coef + k * W
        for c in range(C - 1, -1, -1):
            v = row[c]
            for s in range(S):
                row[c * S + s] = v


cdef void _relu_rows(floating *y, Py_ssize_t n) noexcept nogil:
    """y = max(y, 0) in place, as NumPy's ``np.maximum(y, 0)`` computes it: NaN stays NaN and
    -0.0 becomes +0.0 (NumPy returns its second operand when the two compare equal)."""
    cdef Py_ssize_t i
    cdef floating v
    for i in range(n):
        v = y[i]
        y[i] = v if (v > 0 or v != v) else 0
