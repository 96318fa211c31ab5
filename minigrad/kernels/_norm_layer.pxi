# Included by _norm.pyx: LayerNorm's row cores (RMSNorm's too), which take data pointers; the
# wrappers are in _norm_layer_api.pxi.

# float32 rows go through the AVX-512 loops of _simd_layernorm.h (the bits of the portable loops
# of _simd.h, which float64 rows and builds without AVX-512 use)
cdef extern from "_simd_layernorm.h" nogil:
    void mg_row_moments_fast_f(const float *x, Py_ssize_t n, double c, double *s1, double *s2)
    void mg_layernorm_row_fast_f(const float *x, Py_ssize_t n, float mean_hi, float mean_lo,
                                 float rstd, const float *gamma, const float *beta, float *y)
    void mg_scale_shift_fast_f(const float *x, Py_ssize_t n, float mean_hi, float mean_lo,
                               float scale, float shift, float *y)
    void mg_layernorm_dx_row_fast_f(const float *dy, const float *x, const float *gamma,
                                    Py_ssize_t n, float mean_hi, float mean_lo, float rstd,
                                    float p, float q, float *dx)
    void mg_layernorm_grad_sums_fast_f(const float *dy, const float *x, const float *gamma,
                                       const double *gamma64, Py_ssize_t n, double mean,
                                       double rstd, double *dgamma, double *dbeta, double *sum_g,
                                       double *sum_g_xhat)
    void mg_layernorm_grad_sums2_fast_f(const float *dy, const float *x, const float *gamma,
                                        const double *gamma64, Py_ssize_t n, double mean0,
                                        double rstd0, double mean1, double rstd1,
                                        double *dgamma, double *dbeta, double *sums)


cdef inline void _ln_moments(const floating *x, Py_ssize_t n, double c, double *s1,
                             double *s2) noexcept nogil:
    if floating is float:
        mg_row_moments_fast_f(x, n, c, s1, s2)
    else:
        _row_moments(x, n, c, s1, s2)


cdef inline void _ln_row(const floating *x, Py_ssize_t n, floating mean_hi, floating mean_lo,
                         floating rstd, const floating *gamma, const floating *beta,
                         floating *y) noexcept nogil:
    if floating is float:
        mg_layernorm_row_fast_f(x, n, mean_hi, mean_lo, rstd, gamma, beta, y)
    else:
        _layernorm_row(x, n, mean_hi, mean_lo, rstd, gamma, beta, y)


cdef inline void _ln_scale(const floating *x, Py_ssize_t n, floating mean_hi, floating mean_lo,
                           floating rstd, floating *y) noexcept nogil:
    if floating is float:
        mg_scale_shift_fast_f(x, n, mean_hi, mean_lo, rstd, 0.0, y)
    else:
        _scale_shift(x, n, mean_hi, mean_lo, rstd, 0.0, y)


cdef inline void _ln_dx_row(const floating *dy, const floating *x, const floating *gamma,
                            Py_ssize_t n, floating mean_hi, floating mean_lo, floating rstd,
                            floating p, floating q, floating *dx) noexcept nogil:
    if floating is float:
        mg_layernorm_dx_row_fast_f(dy, x, gamma, n, mean_hi, mean_lo, rstd, p, q, dx)
    else:
        _layernorm_dx_row(dy, x, gamma, n, mean_hi, mean_lo, rstd, p, q, dx)


cdef inline void _ln_grad_sums(const floating *dy, const floating *x, const floating *gamma,
                               const double *gamma64, Py_ssize_t n, double mean, double rstd,
                               double *dgamma, double *dbeta, double *sum_g,
                               double *sum_g_xhat) noexcept nogil:
    # gamma64: gamma in float64, read by the float32 loop instead of gamma
    if floating is float:
        mg_layernorm_grad_sums_fast_f(dy, x, gamma, gamma64, n, mean, rstd, dgamma, dbeta, sum_g,
                                      sum_g_xhat)
    else:
        _layernorm_grad_sums(dy, x, gamma, n, mean, rstd, dgamma, dbeta, sum_g, sum_g_xhat)


cdef inline void _ln_grad_sums2(const floating *dy, const floating *x, const floating *gamma,
                                const double *gamma64, Py_ssize_t n, double mean0, double rstd0,
                                double mean1, double rstd1, double *dgamma, double *dbeta,
                                double *sums) noexcept nogil:
    # two consecutive samples (dy, x and dy + n, x + n): two _ln_grad_sums calls' results
    if floating is float:
        mg_layernorm_grad_sums2_fast_f(dy, x, gamma, gamma64, n, mean0, rstd0, mean1, rstd1,
                                       dgamma, dbeta, sums)
    else:
        _layernorm_grad_sums(dy, x, gamma, n, mean0, rstd0, dgamma, dbeta, sums, sums + 1)
        _layernorm_grad_sums(dy + n, x + n, gamma, n, mean1, rstd1, dgamma, dbeta, sums + 2,
                             sums + 3)

# ------------------------------------------------------------------ LayerNorm cores


cdef inline double _ln_row_sums(const floating *xr, Py_ssize_t D, bint centred, double *s1,
                                double *s2) noexcept nogil:
    """The shifted sums of one sample: s1 = sum(x - shift), s2 = sum((x - shift)^2); returns
    the shift, the first value (exact variance when |mean| >> std) unless it is inf or NaN
    (then every shifted term would be NaN, where NumPy's mean of data holding inf is inf) or
    the row is not centred (RMSNorm): then 0."""
    cdef double shift = xr[0] if centred and isfinite(xr[0]) else 0.0
    s1[0] = 0.0
    s2[0] = 0.0
    _ln_moments(xr, D, shift, s1, s2)
    return shift


cdef void _layernorm_forward_rows(const floating *x, const floating *gamma, const floating *beta,
                                  bint centred, double eps, Py_ssize_t D, Py_ssize_t r0,
                                  Py_ssize_t r1, floating *y, double *mean,
                                  double *rstd) noexcept nogil:
    """Samples r0..r1 of the (R, D) x: statistics of the row, then
    y = (x - mean) * rstd * gamma + beta (without gamma and beta when gamma is NULL).

    Not centred (RMSNorm): mean = 0 and rstd = 1 / sqrt(mean(x^2) + eps).

    The sums of row r + 1 are taken before row r is written, so that the processor overlaps
    the latency of row r's statistics (a fold of the lanes, a square root and a division that
    the write pass must wait for) with that loop; the same operations in the same order per
    row. Measured, (256, 512) float32, one thread, same-process medians of 60: forward 31.4
    -> 28.9 us. (The backward taking row r + 1's sums before row r's dx measured 56.6 -> 60.5
    us: it keeps the plain order.)
    """
    cdef Py_ssize_t r
    cdef double s1, s2, m, rs, shift
    cdef floating mean_hi, mean_lo, rsf
    if r0 >= r1:
        return
    shift = _ln_row_sums(x + r0 * D, D, centred, &s1, &s2)
    for r in range(r0, r1):
        if centred:
            m = s1 / D
            rs = 1.0 / sqrt(_nonnegative(s2 / D - m * m) + eps)
            m = shift + m
        else:
            m = 0.0
            rs = 1.0 / sqrt(s2 / D + eps)
        mean[r] = m
        rstd[r] = rs
        _split(m, &mean_hi, &mean_lo)
        rsf = <floating>rs
        if r + 1 < r1:
            shift = _ln_row_sums(x + (r + 1) * D, D, centred, &s1, &s2)
        if gamma != NULL:
            _ln_row(x + r * D, D, mean_hi, mean_lo, rsf, gamma, beta, y + r * D)
        else:
            _ln_scale(x + r * D, D, mean_hi, mean_lo, rsf, y + r * D)


cdef void _layernorm_forward_core(const floating *x, const floating *gamma, const floating *beta,
                                  bint centred, double eps, Py_ssize_t R, Py_ssize_t D,
                                  floating *y, double *mean, double *rstd) noexcept nogil:
    """Each sample (row) is independent: threads split the rows."""
    cdef Py_ssize_t chunk, t
    cdef int nt = threads_over(R * D, _min_work_layernorm)
    if nt == 1:
        _layernorm_forward_rows(x, gamma, beta, centred, eps, D, 0, R, y, mean, rstd)
        return
    chunk = (R + nt - 1) // nt
    for t in prange(nt, num_threads=nt, schedule="static"):
        _layernorm_forward_rows(x, gamma, beta, centred, eps, D, min(t * chunk, R),
                                min(t * chunk + chunk, R), y, mean, rstd)


cdef void _layernorm_backward_block(
    const floating *dy, const floating *x, const floating *gamma, const double *gamma64,
    const double *mean, const double *rstd, Py_ssize_t D, Py_ssize_t r0, Py_ssize_t r1,
    floating *dx, double *dgamma, double *dbeta,
) noexcept nogil:
    """Samples r0..r1: the two row sums, then dx = dy * gamma * rstd + (x - mean) * p + q.

    dgamma and dbeta (float64, D each) receive this block's sums of dy * x_hat and dy. Not
    centred (RMSNorm, mean NULL: 0): q = 0, since the mean did not depend on x.
    """
    cdef Py_ssize_t r, i, j
    cdef double sums[4]
    cdef double sum_g, sum_g_xhat, rs, m
    cdef floating p, q, rsf, mean_hi, mean_lo
    for i in range(D):
        dgamma[i] = 0.0
        dbeta[i] = 0.0
    for r in range(r0, r1):
        rs = rstd[r]
        m = _mean_of(mean, r)
        # float32 takes the sums of two samples at a time (dgamma and dbeta read and written
        # once for both): sums[0..1] of the first, sums[2..3] of the second
        j = 2 * ((r - r0) % 2) if floating is float else 0
        if j == 2:
            pass  # taken with the previous sample
        elif floating is float and r + 1 < r1:
            _ln_grad_sums2(dy + r * D, x + r * D, gamma, gamma64, D, m, rs,
                           _mean_of(mean, r + 1), rstd[r + 1], dgamma, dbeta, sums)
        else:
            _ln_grad_sums(dy + r * D, x + r * D, gamma, gamma64, D, m, rs, dgamma, dbeta,
                          &sums[0], &sums[1])
        sum_g = sums[j]
        sum_g_xhat = sums[j + 1]
        # dx = rstd * g - rstd * sum_g / D - x_hat * rstd * sum_g_xhat / D, x_hat = (x - mean) rstd
        rsf = <floating>rs
        p = <floating>(-rs * rs * sum_g_xhat / D)
        q = <floating>(-rs * sum_g / D) if mean != NULL else 0
        _split(m, &mean_hi, &mean_lo)
        _ln_dx_row(dy + r * D, x + r * D, gamma, D, mean_hi, mean_lo, rsf, p, q, dx + r * D)


cdef inline double _mean_of(const double *mean, Py_ssize_t r) noexcept nogil:
    """mean[r], 0 for RMSNorm (mean NULL)."""
    return mean[r] if mean != NULL else 0.0


cdef void _layernorm_backward_core(
    const floating *dy, const floating *x, const floating *gamma, const double *mean,
    const double *rstd, Py_ssize_t R, Py_ssize_t D, floating *dx, floating *dgamma,
    floating *dbeta, double *scratch, Py_ssize_t blocks, Py_ssize_t width,
) noexcept nogil:
    """Fixed blocks of samples, each with its own partial dgamma/dbeta; blocks added in order.

    scratch (float64, 2 * blocks + 1 rows of ``width`` >= D): rows 2b and 2b + 1 take block b's
    partial dgamma and dbeta, the last row gamma in float64. dbeta may be NULL (RMSNorm).
    """
    cdef Py_ssize_t per_block = (R + blocks - 1) // blocks, b, i
    cdef int nt = threads_over(R * D, _min_work_layernorm)
    cdef double sg, sb
    cdef double *gamma64 = scratch + 2 * blocks * width
    for i in range(D):
        gamma64[i] = gamma[i]
    if R == 0:
        for b in range(blocks):
            for i in range(D):
                scratch[2 * b * width + i] = 0.0
                scratch[(2 * b + 1) * width + i] = 0.0
    elif nt == 1 or blocks == 1:
        for b in range(blocks):
            _layernorm_backward_block(dy, x, gamma, gamma64, mean, rstd, D, min(b * per_block, R),
                                      min(b * per_block + per_block, R), dx,
                                      scratch + 2 * b * width, scratch + (2 * b + 1) * width)
    else:
        for b in prange(blocks, num_threads=nt, schedule="static"):
            _layernorm_backward_block(dy, x, gamma, gamma64, mean, rstd, D, min(b * per_block, R),
                                      min(b * per_block + per_block, R), dx,
                                      scratch + 2 * b * width, scratch + (2 * b + 1) * width)
    for i in range(D):
        sg = 0.0
        sb = 0.0
        for b in range(blocks):
            sg += scratch[2 * b * width + i]
            sb += scratch[(2 * b + 1) * width + i]
        dgamma[i] = <floating>sg
        if dbeta != NULL:
            dbeta[i] = <floating>sb
