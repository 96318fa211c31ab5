# Included by _norm.pyx: BatchNorm's passes over (N, C, S) data: the per-channel sums (per
# plane, or by columns when planes are short) and the elementwise writes of y and dx.

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
    BATCHNORM_WIDE_WRITE_S = 32
    COLUMN_PAD = 16


cdef inline Py_ssize_t _columns_per_channel(Py_ssize_t N, Py_ssize_t C,
                                            Py_ssize_t S) noexcept nogil:
    """S when BatchNorm's sums run wide (one column per value of a sample, see above), else 0.

    Wide, each column costs a few float64 passes besides its N values (zeroing, the shift or
    mean, the fold into its channel); a plane costs a call and a fold of lanes besides its S
    values. Measured (float32, one thread), the columns pay from about N >= S / 4 and for
    planes shorter than 256: (64, 16, 8, 8) 1.4x and (128, 32, 14, 14) 1.3x faster wide,
    (64, 8, 16, 16) a tie, (8, 128, 8, 8) and (256, 64, 16, 16) about 10% slower.
    """
    return S if S == 1 or (C * S <= BATCHNORM_WIDE_MAX and S <= 4 * N
                           and S < BATCHNORM_WIDE_SUMS_S) else 0


cdef inline Py_ssize_t _write_columns(Py_ssize_t C, Py_ssize_t S) noexcept nogil:
    """S when BatchNorm's write passes run wide, else 0. Wide, every value loads its own
    coefficients (4 or 5 more loads each): that pays only where planes are shorter than
    BATCHNORM_WIDE_WRITE_S, otherwise a plane at a time with per-channel constants is faster."""
    return S if S == 1 or (S < BATCHNORM_WIDE_WRITE_S and C * S <= BATCHNORM_WIDE_MAX) else 0


cdef void _channels_from_columns(const floating[:, :, ::1] x, Py_ssize_t c0, Py_ssize_t c1,
                                 const double *col1, const double *col2, double *sum1,
                                 double *sum2) noexcept nogil:
    """Per channel c0..c1: the sums of x - x[0, c, 0] and of its squares, from the sums col1 and
    col2 of each column (c, s) shifted by its own first value x[0, c, s].

    With k = x[0, c, 0], d = x[0, c, s] - k and N rows, shifting a column's sums from its first
    value to k gives sum (x - k) = col1 + N d and sum (x - k)^2 = col2 + d (2 col1 + N d), all
    terms of the size of the column's spread (no cancellation). A channel whose first row holds
    inf or NaN is summed row by row with the shift k instead, as in the per-plane path.
    """
    cdef Py_ssize_t N = x.shape[0], S = x.shape[2], c, s, j
    cdef double k, d, a, b
    for c in range(c0, c1):
        k = x[0, c, 0]
        a = 0.0
        b = 0.0
        for s in range(S):
            j = c * S + s
            d = <double>x[0, c, s] - k
            if not isfinite(d):
                break
            a += col1[j] + N * d
            b += col2[j] + d * (2.0 * col1[j] + N * d)
        else:
            sum1[c] = a
            sum2[c] = b
            continue
        _plane_shifted_sums(x, c, c + 1, sum1, sum2)


cdef void _plane_shifted_sums(const floating[:, :, ::1] x, Py_ssize_t c0, Py_ssize_t c1,
                              double *sum1, double *sum2) noexcept nogil:
    """Per channel c0..c1 of (N, C, S) x: sums of x - x[0, c, 0] and its squares.

    Walks n outside and channels inside, so the planes are read in memory order.
    """
    cdef Py_ssize_t n, c, S = x.shape[2]
    for c in range(c0, c1):
        sum1[c] = 0.0
        sum2[c] = 0.0
    for n in range(x.shape[0]):
        for c in range(c0, c1):
            _row_moments(&x[n, c, 0], S, x[0, c, 0], &sum1[c], &sum2[c])


cdef void _plane_grad_sums(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                           Py_ssize_t c0, Py_ssize_t c1, const double *mean, double *sum_dy,
                           double *sum_dy_xc) noexcept nogil:
    """Per channel c0..c1 of (N, C, S) data: sum of dy and of dy * (x - mean[c])."""
    cdef Py_ssize_t n, c, S = x.shape[2]
    cdef double s1, s2
    for c in range(c0, c1):
        sum_dy[c] = 0.0
        sum_dy_xc[c] = 0.0
    for n in range(x.shape[0]):
        for c in range(c0, c1):
            _grad_sums(&dy[n, c, 0], &x[n, c, 0], S, mean[c], &s1, &s2)
            sum_dy[c] += s1
            sum_dy_xc[c] += s2


cdef void _plane_unshifted_sums(const floating[:, :, ::1] x, Py_ssize_t c, double *sum1,
                                double *sum2) noexcept nogil:
    """Sums of x and x^2 over channel c of (N, C, S) x (used when x[0, c, 0] is inf or NaN)."""
    cdef Py_ssize_t n
    sum1[0] = 0.0
    sum2[0] = 0.0
    for n in range(x.shape[0]):
        _row_moments(&x[n, c, 0], x.shape[2], 0.0, sum1, sum2)


cdef inline double _nonnegative(double var) noexcept nogil:
    """Clamp the rounding error of a one-pass variance at 0, but let NaN through (NumPy's
    variance of data holding NaN or inf is NaN; max(NaN, 0.0) would silently give 0)."""
    return 0.0 if var < 0.0 else var


cdef void _channel_sums(const floating[:, :, ::1] x, Py_ssize_t c0, Py_ssize_t c1,
                        double *sum1, double *sum2, double[:, ::1] cols) noexcept nogil:
    """Shifted sums of channels c0..c1 of (N, C, S) x, by columns when S == 1 or wide."""
    cdef Py_ssize_t C = x.shape[1], S = x.shape[2]
    if S == 1:
        _column_shifted_sums(&x[0, 0, 0], x.shape[0], C, c0, c1, sum1, sum2)
    elif _columns_per_channel(x.shape[0], C, S):
        _column_shifted_sums(&x[0, 0, 0], x.shape[0], C * S, c0 * S, c1 * S, &cols[0, 0],
                             &cols[1, 0])
        _channels_from_columns(x, c0, c1, &cols[0, 0], &cols[1, 0], sum1, sum2)
    else:
        _plane_shifted_sums(x, c0, c1, sum1, sum2)


cdef void _batchnorm_sums(const floating[:, :, ::1] x, double *sum1, double *sum2,
                          double[:, ::1] cols, int nt) noexcept nogil:
    """Shifted sums per channel of (N, C, S) x, threads splitting the channels.

    cols (2, C * S) is scratch for the column sums when the channels run wide with S > 1.
    """
    cdef Py_ssize_t C = x.shape[1], chunk, t
    if x.shape[0] * x.shape[2] == 0:  # no values: nothing to read, the sums are 0
        for t in range(C):
            sum1[t] = 0.0
            sum2[t] = 0.0
        return
    if nt == 1:
        _channel_sums(x, 0, C, sum1, sum2, cols)
        return
    chunk = _chunk(C, nt)
    for t in prange(nt, num_threads=nt, schedule="static"):
        _channel_sums(x, min(t * chunk, C), min(t * chunk + chunk, C), sum1, sum2, cols)


cdef void _channel_grad_sums(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                             Py_ssize_t c0, Py_ssize_t c1, const double *mean, double *sum_dy,
                             double *sum_dy_xc, double[:, ::1] cols) noexcept nogil:
    """sum(dy) and sum(dy * (x - mean)) of channels c0..c1, by columns when S == 1 or wide.

    Wide with S > 1, cols (3, C * S) holds each column's mean (row 0) and its two sums, which
    are then added per channel in column order.
    """
    cdef Py_ssize_t C = x.shape[1], S = x.shape[2], c, j
    cdef double a, b
    if S == 1:
        _column_grad_sums(&dy[0, 0, 0], &x[0, 0, 0], x.shape[0], C, c0, c1, mean, sum_dy,
                          sum_dy_xc)
    elif _columns_per_channel(x.shape[0], C, S):
        for j in range(c0 * S, c1 * S):
            cols[0, j] = mean[j // S]
        _column_grad_sums(&dy[0, 0, 0], &x[0, 0, 0], x.shape[0], C * S, c0 * S, c1 * S,
                          &cols[0, 0], &cols[1, 0], &cols[2, 0])
        for c in range(c0, c1):
            a = 0.0
            b = 0.0
            for j in range(c * S, c * S + S):
                a += cols[1, j]
                b += cols[2, j]
            sum_dy[c] = a
            sum_dy_xc[c] = b
    else:
        _plane_grad_sums(dy, x, c0, c1, mean, sum_dy, sum_dy_xc)


cdef void _batchnorm_grad_sums(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                               const double *mean, double *sum_dy, double *sum_dy_xc,
                               double[:, ::1] cols, int nt) noexcept nogil:
    """sum(dy) and sum(dy * (x - mean)) per channel, threads splitting the channels."""
    cdef Py_ssize_t C = x.shape[1], chunk, t
    if nt == 1:
        _channel_grad_sums(dy, x, 0, C, mean, sum_dy, sum_dy_xc, cols)
        return
    chunk = _chunk(C, nt)
    for t in prange(nt, num_threads=nt, schedule="static"):
        _channel_grad_sums(dy, x, min(t * chunk, C), min(t * chunk + chunk, C), mean, sum_dy,
                           sum_dy_xc, cols)


cdef void _batchnorm_write(const floating[:, :, ::1] x, const floating[:, ::1] coef,
                           floating[:, :, ::1] y, int nt) noexcept nogil:
    """y = (x - mean[c]) * scale[c] + shift[c] per channel c; coef rows: mean_hi, mean_lo,
    scale, shift, per column of a sample (C * S of them) when wide, else per channel."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], chunk, t, p, c
    if _write_columns(C, S):
        if nt == 1:
            _scale_shift_rows(&x[0, 0, 0], 0, N, C * S, &coef[0, 0], &coef[1, 0], &coef[2, 0],
                              &coef[3, 0], &y[0, 0, 0])
            return
        chunk = (N + nt - 1) // nt
        for t in prange(nt, num_threads=nt, schedule="static"):
            _scale_shift_rows(&x[0, 0, 0], min(t * chunk, N), min(t * chunk + chunk, N), C * S,
                              &coef[0, 0], &coef[1, 0], &coef[2, 0], &coef[3, 0], &y[0, 0, 0])
        return
    # one contiguous plane (n, c) at a time; plane p = n * C + c
    if nt == 1:  # no division per plane (p % C costs as much as a short plane's writes)
        for p in range(N):
            for c in range(C):
                _scale_shift(&x[p, c, 0], S, coef[0, c], coef[1, c], coef[2, c], coef[3, c],
                             &y[p, c, 0])
        return
    for p in prange(N * C, num_threads=nt, schedule="static"):
        c = p % C
        _scale_shift(&x[0, 0, 0] + p * S, S, coef[0, c], coef[1, c], coef[2, c], coef[3, c],
                     &y[0, 0, 0] + p * S)


cdef void _batchnorm_dx_write(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                              const floating[:, ::1] coef, floating[:, :, ::1] dx,
                              int nt) noexcept nogil:
    """dx = dy * a[c] + (x - mean[c]) * b[c] + d[c] per channel c; coef rows: mean_hi, mean_lo,
    a, b, d, per column of a sample when wide, else per channel."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], chunk, t, p, c
    if _write_columns(C, S):
        if nt == 1:
            _dx_write_rows(&dy[0, 0, 0], &x[0, 0, 0], 0, N, C * S, &coef[0, 0], &coef[1, 0],
                           &coef[2, 0], &coef[3, 0], &coef[4, 0], &dx[0, 0, 0])
            return
        chunk = (N + nt - 1) // nt
        for t in prange(nt, num_threads=nt, schedule="static"):
            _dx_write_rows(&dy[0, 0, 0], &x[0, 0, 0], min(t * chunk, N),
                           min(t * chunk + chunk, N), C * S, &coef[0, 0], &coef[1, 0],
                           &coef[2, 0], &coef[3, 0], &coef[4, 0], &dx[0, 0, 0])
        return
    if nt == 1:
        for p in range(N):
            for c in range(C):
                _dx_write(&dy[p, c, 0], &x[p, c, 0], S, coef[0, c], coef[1, c], coef[2, c],
                          coef[3, c], coef[4, c], &dx[p, c, 0])
        return
    for p in prange(N * C, num_threads=nt, schedule="static"):
        c = p % C
        _dx_write(&dy[0, 0, 0] + p * S, &x[0, 0, 0] + p * S, S, coef[0, c], coef[1, c],
                  coef[2, c], coef[3, c], coef[4, c], &dx[0, 0, 0] + p * S)


cdef void _spread_columns(floating[:, ::1] coef, Py_ssize_t C, Py_ssize_t S) noexcept nogil:
    """Per-channel coefficients coef[k, c] (c < C) to per-column ones coef[k, c * S + s], in
    place: channels last to first, so no value is overwritten before it is read (c * S >= c)."""
    cdef Py_ssize_t k, c, s
    cdef floating v
    for k in range(coef.shape[0]):
        for c in range(C - 1, -1, -1):
            v = coef[k, c]
            for s in range(S):
                coef[k, c * S + s] = v


cdef void _relu_rows(floating *y, Py_ssize_t n) noexcept nogil:
    """y = max(y, 0) in place, as NumPy's ``np.maximum(y, 0)`` computes it: NaN stays NaN and
    -0.0 becomes +0.0 (NumPy returns its second operand when the two compare equal)."""
    cdef Py_ssize_t i
    cdef floating v
    for i in range(n):
        v = y[i]
        y[i] = v if (v > 0 or v != v) else 0


cdef void _relu_grad(const floating[:, :, ::1] dy, const floating[:, :, ::1] y,
                     floating[:, :, ::1] out) noexcept nogil:
    """out = dy * (y > 0): the very product of ReLU's backward ``grad * (y > 0)`` (the bool
    becomes 1.0 or 0.0 and multiplies, so NaN * 0 stays NaN and -dy * 0 gives -0.0)."""
    cdef Py_ssize_t i, n = dy.shape[0] * dy.shape[1] * dy.shape[2]
    cdef const floating *d
    cdef const floating *m
    cdef floating *o
    if n == 0:
        return
    d = &dy[0, 0, 0]
    m = &y[0, 0, 0]
    o = &out[0, 0, 0]
    for i in range(n):
        o[i] = d[i] * (<floating>1 if m[i] > 0 else <floating>0)
