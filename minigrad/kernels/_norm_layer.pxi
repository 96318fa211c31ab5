# Included by _norm.pyx: LayerNorm's row cores, and the LayerNorm and RMSNorm kernels.

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

# ------------------------------------------------------------------ LayerNorm cores


cdef void _layernorm_forward_rows(const floating[:, ::1] x, const floating[::1] gamma,
                                  const floating[::1] beta, bint affine, bint centred,
                                  double eps, Py_ssize_t r0, Py_ssize_t r1, floating[:, ::1] y,
                                  double[::1] mean, double[::1] rstd) noexcept nogil:
    """Samples r0..r1: statistics of the row, then y = (x - mean) * rstd * gamma + beta.

    Not centred (RMSNorm): mean = 0 and rstd = 1 / sqrt(mean(x^2) + eps).
    """
    cdef Py_ssize_t D = x.shape[1], r
    cdef double s1, s2, m, rs, shift
    cdef floating mean_hi, mean_lo, rsf
    cdef const floating *xr
    cdef floating *yr
    for r in range(r0, r1):
        xr = &x[r, 0]
        yr = &y[r, 0]
        # shift by the first value (exact variance when |mean| >> std), unless it is inf or
        # NaN: then every shifted term is NaN, where NumPy's mean of data holding inf is inf
        shift = xr[0] if centred and isfinite(xr[0]) else 0.0
        s1 = 0.0
        s2 = 0.0
        _ln_moments(xr, D, shift, &s1, &s2)
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
        if affine:
            _ln_row(xr, D, mean_hi, mean_lo, rsf, &gamma[0], &beta[0], yr)
        else:
            _ln_scale(xr, D, mean_hi, mean_lo, rsf, yr)


cdef void _layernorm_forward_core(const floating[:, ::1] x, const floating[::1] gamma,
                                  const floating[::1] beta, bint affine, bint centred,
                                  double eps, floating[:, ::1] y, double[::1] mean,
                                  double[::1] rstd) noexcept nogil:
    """Each sample (row) is independent: threads split the rows."""
    cdef Py_ssize_t R = x.shape[0], chunk, t
    cdef int nt = threads_for(R * x.shape[1])
    if nt == 1:
        _layernorm_forward_rows(x, gamma, beta, affine, centred, eps, 0, R, y, mean, rstd)
        return
    chunk = (R + nt - 1) // nt
    for t in prange(nt, num_threads=nt, schedule="static"):
        _layernorm_forward_rows(x, gamma, beta, affine, centred, eps, min(t * chunk, R),
                                min(t * chunk + chunk, R), y, mean, rstd)


cdef void _layernorm_backward_block(
    const floating[:, ::1] dy, const floating[:, ::1] x, const floating[::1] gamma,
    const double *gamma64, const double[::1] mean, const double[::1] rstd, bint centred,
    Py_ssize_t r0, Py_ssize_t r1, floating[:, ::1] dx, double *dgamma, double *dbeta,
) noexcept nogil:
    """Samples r0..r1: the two row sums, then dx = dy * gamma * rstd + (x - mean) * p + q.

    dgamma and dbeta (float64, D each) receive this block's sums of dy * x_hat and dy. Not
    centred (RMSNorm, mean 0): q = 0, since the mean did not depend on x.
    """
    cdef Py_ssize_t D = x.shape[1], r, i
    cdef double sum_g, sum_g_xhat, rs
    cdef floating p, q, rsf, mean_hi, mean_lo
    cdef const floating *dyr
    cdef const floating *xr
    cdef floating *dxr
    for i in range(D):
        dgamma[i] = 0.0
        dbeta[i] = 0.0
    for r in range(r0, r1):
        dyr = &dy[r, 0]
        xr = &x[r, 0]
        dxr = &dx[r, 0]
        rs = rstd[r]
        _ln_grad_sums(dyr, xr, &gamma[0], gamma64, D, mean[r], rs, dgamma, dbeta, &sum_g,
                      &sum_g_xhat)
        # dx = rstd * g - rstd * sum_g / D - x_hat * rstd * sum_g_xhat / D, x_hat = (x - mean) rstd
        rsf = <floating>rs
        p = <floating>(-rs * rs * sum_g_xhat / D)
        q = <floating>(-rs * sum_g / D) if centred else 0
        _split(mean[r], &mean_hi, &mean_lo)
        _ln_dx_row(dyr, xr, &gamma[0], D, mean_hi, mean_lo, rsf, p, q, dxr)


cdef void _layernorm_backward_core(
    const floating[:, ::1] dy, const floating[:, ::1] x, const floating[::1] gamma,
    const double[::1] mean, const double[::1] rstd, bint centred, floating[:, ::1] dx,
    floating[:, ::1] out, double[:, ::1] scratch,
) noexcept nogil:
    """Fixed blocks of samples, each with its own partial dgamma/dbeta; blocks added in order.

    scratch (float64, 2 * blocks + 1 rows of at least D): rows 2b and 2b + 1 take block b's
    partial dgamma and dbeta, the last row gamma in float64. out receives dgamma (row 0) and
    dbeta (row 1).
    """
    cdef Py_ssize_t R = x.shape[0], D = x.shape[1], blocks = (scratch.shape[0] - 1) // 2
    cdef Py_ssize_t per_block = (R + blocks - 1) // blocks, b, i
    cdef int nt = threads_for(R * D)
    cdef double sg, sb
    cdef double *gamma64 = &scratch[2 * blocks, 0]
    if R == 0:
        for i in range(D):
            out[0, i] = 0.0
            out[1, i] = 0.0
        return
    for i in range(D):
        gamma64[i] = gamma[i]
    if nt == 1 or blocks == 1:
        for b in range(blocks):
            _layernorm_backward_block(dy, x, gamma, gamma64, mean, rstd, centred,
                                      min(b * per_block, R), min(b * per_block + per_block, R),
                                      dx, &scratch[2 * b, 0], &scratch[2 * b + 1, 0])
    else:
        for b in prange(blocks, num_threads=nt, schedule="static"):
            _layernorm_backward_block(dy, x, gamma, gamma64, mean, rstd, centred,
                                      min(b * per_block, R), min(b * per_block + per_block, R),
                                      dx, &scratch[2 * b, 0], &scratch[2 * b + 1, 0])
    for i in range(D):
        sg = 0.0
        sb = 0.0
        for b in range(blocks):
            sg += scratch[2 * b, i]
            sb += scratch[2 * b + 1, i]
        out[0, i] = <floating>sg
        out[1, i] = <floating>sb


def _layernorm_scratch(R, D):
    """The float64 scratch of _layernorm_backward_core for R samples of D values: the blocks
    depend on the shape only. Its rows are D + 8 apart: at D = 512 rows of exactly 4 KiB put a
    block's dgamma and dbeta at addresses equal modulo 4096, and each store to one stalled the
    next load of the other (4K aliasing; LayerNorm backward (256, 512) 74 -> 70 us)."""
    blocks = max(1, min(R, LAYERNORM_MAX_BLOCKS, R * D // LAYERNORM_BLOCK_WORK))
    return np.empty((2 * blocks + 1, D + 8), np.float64)


def layernorm_forward(x, gamma, beta, eps, normalized_ndim, relu=False):
    """LayerNorm forward: y = gamma * (x - mean) / sqrt(var + eps) + beta, per sample.

    mean and the biased var are taken over the trailing ``normalized_ndim`` axes of x; gamma and
    beta have the shape of those axes (or are None, meaning 1 and 0). With ``relu``, y is then
    replaced by max(y, 0), bit for bit ``np.maximum(y, 0)`` (a LayerNorm followed by a ReLU).

    Returns:
        (y, mean, rstd): y like x; mean and rstd float64 with shape x.shape[:-normalized_ndim].
    """
    layernorm_forward_args(x, gamma, beta, normalized_ndim)
    lead_shape = x.shape[: x.ndim - normalized_ndim]
    D = math.prod(x.shape[x.ndim - normalized_ndim:])
    x2 = np.ascontiguousarray(x).reshape(-1, D)
    y = np.empty_like(x2)
    mean = np.empty(x2.shape[0], np.float64)
    rstd = np.empty(x2.shape[0], np.float64)
    affine = gamma is not None or beta is not None
    if affine:
        gamma = np.ones(D, x.dtype) if gamma is None else np.ascontiguousarray(gamma).reshape(D)
        beta = np.zeros(D, x.dtype) if beta is None else np.ascontiguousarray(beta).reshape(D)
    if x.dtype.itemsize == 4:  # float32 (the checks allow only float32 and float64)
        _layernorm_forward_core[float](x2, gamma, beta, affine, True, eps, y, mean, rstd)
    else:
        _layernorm_forward_core[double](x2, gamma, beta, affine, True, eps, y, mean, rstd)
    if relu:
        _relu_in_place(y)
    return y.reshape(x.shape), mean.reshape(lead_shape), rstd.reshape(lead_shape)


def layernorm_backward(grad_out, x, gamma, mean, rstd, relu_out=None):
    """LayerNorm backward, closed form, with sums over the D normalized values of each sample.

    With g = dy * gamma and x_hat = (x - mean) * rstd:
    dx = rstd / D * (D * g - sum(g) - x_hat * sum(g * x_hat)),
    dgamma = sum over samples of dy * x_hat, dbeta = sum over samples of dy.
    The normalized axes are the trailing x.ndim - mean.ndim ones. With ``relu_out`` (a ReLU's
    output over this LayerNorm's output), dy = grad_out * (relu_out > 0), ReLU's backward.

    Returns:
        (dx, dgamma, dbeta): dx like x; dgamma and dbeta with the normalized shape, x's dtype.
    """
    layernorm_backward_args(grad_out, x, gamma, mean, rstd)
    normalized_shape = x.shape[mean.ndim:]
    D = math.prod(normalized_shape)
    x2 = np.ascontiguousarray(x).reshape(-1, D)
    if relu_out is not None:
        grad_out = _relu_masked("layernorm_backward", grad_out, x, relu_out)
    dy2 = np.ascontiguousarray(grad_out).reshape(-1, D)
    R = x2.shape[0]
    mean = np.ascontiguousarray(mean, dtype=np.float64).reshape(R)
    rstd = np.ascontiguousarray(rstd, dtype=np.float64).reshape(R)
    gamma = np.ones(D, x.dtype) if gamma is None else np.ascontiguousarray(gamma).reshape(D)
    scratch = _layernorm_scratch(R, D)
    dx = np.empty_like(x2)
    out = np.empty((2, D), x.dtype)  # dgamma, dbeta
    if x.dtype.itemsize == 4:  # float32 (the checks allow only float32 and float64)
        _layernorm_backward_core[float](dy2, x2, gamma, mean, rstd, True, dx, out, scratch)
    else:
        _layernorm_backward_core[double](dy2, x2, gamma, mean, rstd, True, dx, out, scratch)
    return (dx.reshape(x.shape), out[0].reshape(normalized_shape),
            out[1].reshape(normalized_shape))


def rmsnorm_forward(x, weight, eps, normalized_ndim):
    """RMSNorm forward: y = x * rstd * weight per sample, rstd = 1 / sqrt(mean(x^2) + eps) over
    the trailing ``normalized_ndim`` axes (LayerNorm without centring and without beta).

    Returns:
        (y, rstd): y like x; rstd float64 with shape x.shape[:-normalized_ndim].
    """
    rmsnorm_forward_args(x, weight, normalized_ndim)
    lead_shape = x.shape[: x.ndim - normalized_ndim]
    D = math.prod(x.shape[x.ndim - normalized_ndim:])
    x2 = np.ascontiguousarray(x).reshape(-1, D)
    y = np.empty_like(x2)
    mean = np.empty(x2.shape[0], np.float64)  # written as zeros by the uncentred core
    rstd = np.empty(x2.shape[0], np.float64)
    affine = weight is not None
    beta = None
    if affine:
        weight = np.ascontiguousarray(weight).reshape(D)
        beta = np.zeros(D, x.dtype)
    if x.dtype.itemsize == 4:  # float32 (the checks allow only float32 and float64)
        _layernorm_forward_core[float](x2, weight, beta, affine, False, eps, y, mean, rstd)
    else:
        _layernorm_forward_core[double](x2, weight, beta, affine, False, eps, y, mean, rstd)
    return y.reshape(x.shape), rstd.reshape(lead_shape)


def rmsnorm_backward(grad_out, x, weight, rstd):
    """RMSNorm backward, with g = dy * weight and x_hat = x * rstd over the D values of a sample:
    dx = rstd * (g - x_hat * sum(g * x_hat) / D), dweight = sum over samples of dy * x_hat.
    The normalized axes are the trailing x.ndim - rstd.ndim ones.

    Returns:
        (dx, dweight): dx like x; dweight with the normalized shape, x's dtype.
    """
    rmsnorm_backward_args(grad_out, x, weight, rstd)
    normalized_shape = x.shape[rstd.ndim:]
    D = math.prod(normalized_shape)
    x2 = np.ascontiguousarray(x).reshape(-1, D)
    dy2 = np.ascontiguousarray(grad_out).reshape(-1, D)
    R = x2.shape[0]
    rstd = np.ascontiguousarray(rstd, dtype=np.float64).reshape(R)
    mean = np.zeros(R, np.float64)
    weight = np.ones(D, x.dtype) if weight is None else np.ascontiguousarray(weight).reshape(D)
    scratch = _layernorm_scratch(R, D)
    dx = np.empty_like(x2)
    out = np.empty((2, D), x.dtype)  # dweight, and sum(dy) which RMSNorm does not use
    if x.dtype.itemsize == 4:  # float32 (the checks allow only float32 and float64)
        _layernorm_backward_core[float](dy2, x2, weight, mean, rstd, False, dx, out, scratch)
    else:
        _layernorm_backward_core[double](dy2, x2, weight, mean, rstd, False, dx, out, scratch)
    return dx.reshape(x.shape), out[0].reshape(normalized_shape)
