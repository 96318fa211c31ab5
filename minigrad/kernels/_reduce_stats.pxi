# Included by _reduce.pyx: var (with its mean) and logsumexp, each one more loop nest on the
# canonical (O, A, K, R) form and the thread rule (_prepare, _finish, threads_over) there.


# ---- var -----------------------------------------------------------------------------------------

cdef inline void _var_task(const floating[:, :, :, ::1] x, double correction, floating[:, ::1] var,
                           floating[:, ::1] mean, double[:, ::1] c, double[:, ::1] s1,
                           double[:, ::1] s2, Py_ssize_t kchunk, Py_ssize_t t) noexcept nogil:
    # one task: the outputs of one outer index o and one chunk of features
    cdef Py_ssize_t A = x.shape[1], K = x.shape[2], R = x.shape[3]
    cdef Py_ssize_t nk = (K + kchunk - 1) // kchunk
    cdef Py_ssize_t o, a, k, k0, k1
    cdef double n = <double>(A * R)
    cdef double dof = n - correction
    if dof < 0:
        dof = 0.0
    o = t // nk
    k0 = (t % nk) * kchunk
    k1 = _imin(k0 + kchunk, K)
    for k in range(k0, k1):
        c[o, k] = x[o, 0, k, 0] if A * R > 0 else 0.0
        if c[o, k] - c[o, k] != 0.0:  # an inf or NaN shift would turn an inf mean into NaN
            c[o, k] = 0.0
        s1[o, k] = 0.0
        s2[o, k] = 0.0
    if R == 1:
        for a in range(A):
            _col_moments(&x[o, a, k0, 0], &c[o, k0], &s1[o, k0], &s2[o, k0], k1 - k0)
    elif R > 0:
        for a in range(A):
            for k in range(k0, k1):
                _row_moments_fast(&x[o, a, k, 0], R, c[o, k], &s1[o, k], &s2[o, k])
    for k in range(k0, k1):
        mean[o, k] = <floating>(c[o, k] + s1[o, k] / n)
        var[o, k] = <floating>((s2[o, k] - s1[o, k] * s1[o, k] / n) / dof)


cdef void _var_core(const floating[:, :, :, ::1] x, double correction, floating[:, ::1] var,
                    floating[:, ::1] mean, double[:, ::1] c, double[:, ::1] s1, double[:, ::1] s2,
                    Py_ssize_t kchunk, int nthreads) noexcept nogil:
    """One pass of shifted sums per output: with c = the first element, s1 = sum(x - c),
    s2 = sum((x - c)^2); mean = c + s1/n, var = (s2 - s1^2/n) / (n - correction).
    The shift keeps float64 accurate when |mean| >> std."""
    cdef Py_ssize_t t
    cdef Py_ssize_t O = x.shape[0], K = x.shape[2]
    cdef Py_ssize_t nk = (K + kchunk - 1) // kchunk
    if nthreads > 1:
        for t in prange(O * nk, num_threads=nthreads, schedule="static"):
            _var_task(x, correction, var, mean, c, s1, s2, kchunk, t)
    else:  # no OpenMP region at all: entering one costs microseconds
        for t in range(O * nk):
            _var_task(x, correction, var, mean, c, s1, s2, kchunk, t)


def var(x, axis=None, keepdims=False, correction=0):
    """Variance and mean over ``axis``: var = sum_i (x_i - mean)^2 / (n - correction).

    ``correction=0`` is the biased estimate, 1 the unbiased one. When ``n - correction <= 0`` the
    divisor is clamped at 0 as NumPy does, giving inf (or nan for 0/0), silently.
    Returns ``(var, mean)``, both reduced the same way and in x's dtype.
    """
    x, axes, x4, kept = _prepare("var", x, axis)
    cdef Py_ssize_t O = x4.shape[0], K = x4.shape[2]
    cdef int nthreads = threads_over(x4.size, _min_work_var)
    v = np.empty((O, K), dtype=x.dtype)
    m = np.empty((O, K), dtype=x.dtype)
    c, s1, s2 = np.empty((3, O, K), dtype=np.float64)
    kchunk = task_chunk(O, K, nthreads)
    if x.dtype == np.float32:
        _var_core[float](x4, float(correction), v, m, c, s1, s2, kchunk, nthreads)
    else:
        _var_core[double](x4, float(correction), v, m, c, s1, s2, kchunk, nthreads)
    return _finish("var", v, x, axes, kept, keepdims), _finish("var", m, x, axes, kept, keepdims)


# ---- logsumexp -----------------------------------------------------------------------------------

cdef inline void _lse_task(const floating[:, :, :, ::1] x, floating[:, ::1] shift,
                           int64_t[:, ::1] scratch, double[:, ::1] acc, floating[:, ::1] out,
                           Py_ssize_t kchunk, Py_ssize_t t) noexcept nogil:
    # one task: the outputs of one outer index o and one chunk of features
    cdef Py_ssize_t A = x.shape[1], K = x.shape[2], R = x.shape[3]
    cdef Py_ssize_t nk = (K + kchunk - 1) // kchunk
    cdef Py_ssize_t o, a, k, k0, k1
    cdef floating v
    o = t // nk
    k0 = (t % nk) * kchunk
    k1 = _imin(k0 + kchunk, K)
    if R == 1:
        for k in range(k0, k1):
            shift[o, k] = x[o, 0, k, 0]
            acc[o, k] = 0.0
        for a in range(1, A):
            _col_extreme(&x[o, a, k0, 0], &shift[o, k0], &scratch[o, k0], a, 1, k1 - k0)
    else:
        for k in range(k0, k1):
            acc[o, k] = 0.0
        for a in range(A):
            for k in range(k0, k1):
                v = _row_max(&x[o, a, k, 0], R, 1)
                if a == 0 or v > shift[o, k] or v != v:
                    shift[o, k] = v
    for k in range(k0, k1):
        if not isfinite(shift[o, k]):
            shift[o, k] = 0
    if R == 1:
        for a in range(A):
            _col_sumexp(&x[o, a, k0, 0], &shift[o, k0], &acc[o, k0], k1 - k0)
    else:
        for a in range(A):
            for k in range(k0, k1):
                acc[o, k] += _row_sumexp(&x[o, a, k, 0], R, shift[o, k])
    for k in range(k0, k1):
        out[o, k] = <floating>(log(acc[o, k]) + shift[o, k])


cdef void _lse_core(const floating[:, :, :, ::1] x, floating[:, ::1] shift,
                    int64_t[:, ::1] scratch, double[:, ::1] acc, floating[:, ::1] out,
                    Py_ssize_t kchunk, int nthreads) noexcept nogil:
    """out = m + log(sum exp(x - m)) with m the max, or 0 when the max is not finite (then
    the sum itself gives -inf, inf or NaN). Two passes: max, then the sum of exps."""
    cdef Py_ssize_t t
    cdef Py_ssize_t O = x.shape[0], K = x.shape[2]
    cdef Py_ssize_t nk = (K + kchunk - 1) // kchunk
    if nthreads > 1:
        for t in prange(O * nk, num_threads=nthreads, schedule="static"):
            _lse_task(x, shift, scratch, acc, out, kchunk, t)
    else:  # no OpenMP region at all: entering one costs microseconds
        for t in range(O * nk):
            _lse_task(x, shift, scratch, acc, out, kchunk, t)


def logsumexp(x, axis=None, keepdims=False):
    """Stable y = m + log(sum_i exp(x_i - m)) with m = max_i x_i.

    All -inf gives -inf, any +inf gives inf, any NaN gives NaN, an empty reduction gives -inf.
    """
    x, axes, x4, kept = _prepare("logsumexp", x, axis)
    cdef Py_ssize_t O = x4.shape[0], K = x4.shape[2]
    out = np.empty((O, K), dtype=x.dtype)
    if x4.shape[1] * x4.shape[3] == 0:
        out.fill(-np.inf)
        return _finish("logsumexp", out, x, axes, kept, keepdims)
    cdef int nthreads = threads_over(x4.size, _min_work_logsumexp)
    shift = np.empty((O, K), dtype=x.dtype)
    scratch = np.empty((O, K), dtype=np.int64)
    acc = np.empty((O, K), dtype=np.float64)
    kchunk = task_chunk(O, K, nthreads)
    if x.dtype == np.float32:
        _lse_core[float](x4, shift, scratch, acc, out, kchunk, nthreads)
    else:
        _lse_core[double](x4, shift, scratch, acc, out, kchunk, nthreads)
    return _finish("logsumexp", out, x, axes, kept, keepdims)
