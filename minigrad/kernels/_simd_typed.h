/* The typed inner loops of _simd.h, included there twice: MG_T is the element type (float or
 * double) and MG_FN(name) appends its suffix (_f or _d). No include guard on purpose. Row
 * helpers reduce or rewrite one contiguous row; column helpers update one accumulator per
 * column from one row, so that a reduction over rows walks memory in order.
 */

#if !MG_SKIP_AVX512
/* y[i] = exp(x[i]) (y may alias x) */
static inline void MG_FN(mg_exp_array)(const MG_T *x, MG_T *y, Py_ssize_t n)
{
    #pragma omp simd
    for (Py_ssize_t i = 0; i < n; i++) y[i] = MG_FN(mg_exp)(x[i]);
}
#endif

#if !MG_SKIP_AVX2
/* sum_i x[i] over a contiguous row */
static inline double MG_FN(mg_row_sum)(const MG_T *x, Py_ssize_t n)
{
    double lane[MG_LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        #pragma omp simd
        for (int j = 0; j < MG_LANES; j++) lane[j] += (double)x[i + j];
    }
    double s = mg_fold(lane);
    for (; i < n; i++) s += (double)x[i];
    return s;
}
#endif

/* Shifted moments of a row: s1 += sum (x - c), s2 += sum (x - c)^2. Shifting by a value near
   the mean keeps the one-pass variance s2/n - (s1/n)^2 free of cancellation. */
static inline void MG_FN(mg_row_moments)(const MG_T *restrict x, Py_ssize_t n, double c,
                                         double *s1, double *s2)
{
    double l1[MG_LANES] = {0}, l2[MG_LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        #pragma omp simd
        for (int j = 0; j < MG_LANES; j++) {
            double d = (double)x[i + j] - c;
            l1[j] += d;
            l2[j] += d * d;
        }
    }
    for (int j = 0; i < n; i++, j++) {
        double d = (double)x[i] - c;
        l1[j] += d;
        l2[j] += d * d;
    }
    *s1 += mg_fold(l1);
    *s2 += mg_fold(l2);
}

/* max (sign = 1) or min (sign = -1) of a row and the index of its first occurrence; NaN
   wins and its first position is reported, as np.max/np.argmax do. n >= 1.
   Two passes: the extreme value over independent lanes (one vector compare-select per
   element), then the first element equal to it, found block by block with a vector compare;
   the search stops early (half a row on average). `chk` turns NaN when a NaN or inf was seen
   (x * 0); such rows, and short ones, take the exact scalar loop. */
static inline MG_T MG_FN(mg_row_extreme_exact)(const MG_T *x, Py_ssize_t n, int sign,
                                         Py_ssize_t *index)
{
    MG_T m = x[0];
    Py_ssize_t best = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        MG_T v = x[i];
        if (v != v) { m = v; best = i; break; }
        if (sign > 0 ? v > m : v < m) { m = v; best = i; }
    }
    *index = best;
    return m;
}

#if !MG_SKIP_AVX2
static inline MG_T MG_FN(mg_row_extreme)(const MG_T *x, Py_ssize_t n, int sign, Py_ssize_t *index)
{
    if (n < 2 * MG_LANES)
        return MG_FN(mg_row_extreme_exact)(x, n, sign, index);
    MG_T lane[MG_LANES], chk[MG_LANES];
    Py_ssize_t i;
    for (int j = 0; j < MG_LANES; j++) { lane[j] = x[j]; chk[j] = x[j] * 0; }
    if (sign > 0) {  /* the sign test is hoisted out of the loops */
        for (i = MG_LANES; i + MG_LANES <= n; i += MG_LANES)
            for (int j = 0; j < MG_LANES; j++) {
                MG_T v = x[i + j];
                lane[j] = v > lane[j] ? v : lane[j];
                chk[j] += v * 0;
            }
    } else {
        for (i = MG_LANES; i + MG_LANES <= n; i += MG_LANES)
            for (int j = 0; j < MG_LANES; j++) {
                MG_T v = x[i + j];
                lane[j] = v < lane[j] ? v : lane[j];
                chk[j] += v * 0;
            }
    }
    MG_T m = lane[0], c = 0;
    for (int j = 0; j < MG_LANES; j++) {
        m = (sign > 0 ? lane[j] > m : lane[j] < m) ? lane[j] : m;
        c += chk[j];
    }
    for (; i < n; i++) {
        MG_T v = x[i];
        m = (sign > 0 ? v > m : v < m) ? v : m;
        c += v * 0;
    }
    if (c != c)  /* a NaN or an inf was seen: redo exactly, NaN first */
        return MG_FN(mg_row_extreme_exact)(x, n, sign, index);
    Py_ssize_t best = 0;
    for (; best + MG_LANES <= n; best += MG_LANES) {
        int hit = 0;
        for (int j = 0; j < MG_LANES; j++) hit |= x[best + j] == m;
        if (hit) break;
    }
    while (x[best] != m) best++;
    *index = best;
    return x[best];  /* of -0.0 and 0.0, the one found first, as argmax picks it */
}

/* The largest (sign = 1) or smallest (sign = -1) element of a row, as a shift for exp-sums: a
   row holding NaN may return NaN or not (its exp-sum is NaN either way). n >= 1. */
static inline MG_T MG_FN(mg_row_max)(const MG_T *x, Py_ssize_t n, int sign)
{
    Py_ssize_t index;
    return MG_FN(mg_row_extreme)(x, n, sign, &index);
}
#endif

#if !MG_SKIP_AVX512
/* sum_i exp(x[i] - shift), accumulated in double */
static inline double MG_FN(mg_row_sumexp)(const MG_T *x, Py_ssize_t n, MG_T shift)
{
    double lane[MG_LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        #pragma omp simd
        for (int j = 0; j < MG_LANES; j++) lane[j] += (double)MG_FN(mg_exp)(x[i + j] - shift);
    }
    double s = mg_fold(lane);
    for (; i < n; i++) s += (double)MG_FN(mg_exp)(x[i] - shift);
    return s;
}
#endif

#if !MG_SKIP_AVX512
/* y[i] = exp(x[i] - shift); returns sum_i y[i] in double */
static inline double MG_FN(mg_row_expwrite)(const MG_T *x, MG_T *y, Py_ssize_t n, MG_T shift)
{
    double lane[MG_LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        #pragma omp simd
        for (int j = 0; j < MG_LANES; j++) {
            MG_T e = MG_FN(mg_exp)(x[i + j] - shift);
            y[i + j] = e;
            lane[j] += (double)e;
        }
    }
    double s = mg_fold(lane);
    for (; i < n; i++) { MG_T e = MG_FN(mg_exp)(x[i] - shift); y[i] = e; s += (double)e; }
    return s;
}
#endif

/* sum_i x[i] * y[i] in double */
static inline double MG_FN(mg_row_dot)(const MG_T *x, const MG_T *y, Py_ssize_t n)
{
    double lane[MG_LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        #pragma omp simd
        for (int j = 0; j < MG_LANES; j++) lane[j] += (double)x[i + j] * (double)y[i + j];
    }
    double s = mg_fold(lane);
    for (; i < n; i++) s += (double)x[i] * (double)y[i];
    return s;
}

/* y[i] = a * x[i] + b (y may alias x) */
static inline void MG_FN(mg_row_affine)(const MG_T *x, MG_T *y, Py_ssize_t n, MG_T a, MG_T b)
{
    for (Py_ssize_t i = 0; i < n; i++) y[i] = a * x[i] + b;
}

/* softmax backward row: dx[i] = y[i] * (g[i] - dot) */
static inline void MG_FN(mg_row_softmax_bwd)(const MG_T *y, const MG_T *g, MG_T *dx, Py_ssize_t n,
                                             MG_T dot)
{
    for (Py_ssize_t i = 0; i < n; i++) dx[i] = y[i] * (g[i] - dot);
}

#if !MG_SKIP_AVX512
/* log-softmax backward row: dx[i] = g[i] - exp(y[i]) * total */
static inline void MG_FN(mg_row_logsoftmax_bwd)(const MG_T *y, const MG_T *g, MG_T *dx,
                                                Py_ssize_t n, MG_T total)
{
    for (Py_ssize_t i = 0; i < n; i++) dx[i] = g[i] - MG_FN(mg_exp)(y[i]) * total;
}
#endif

/* GELU backward: dx = g * (cdf + x * exp(-x^2 / 2) / sqrt(2 pi)) */
static inline void MG_FN(mg_gelu_bwd)(const MG_T *restrict g, const MG_T *restrict x,
                                      const MG_T *restrict cdf, MG_T *restrict dx, Py_ssize_t n)
{
    const MG_T inv_sqrt_2pi = (MG_T)0.39894228040143267794;
    #pragma omp simd
    for (Py_ssize_t i = 0; i < n; i++) {
        MG_T pdf = MG_FN(mg_exp)((MG_T)-0.5 * x[i] * x[i]) * inv_sqrt_2pi;
        dx[i] = g[i] * (cdf[i] + x[i] * pdf);
    }
}

/* ---- column helpers: one row x[0..n) updates n per-column accumulators ---- */

/* acc[k] += x0[k] + x1[k] + ... over `rows` rows (1..4) spaced `stride` elements apart */
static inline void MG_FN(mg_col_sum)(const MG_T *x, Py_ssize_t stride, int rows, double *acc,
                                     Py_ssize_t n)
{
    const MG_T *x0 = x, *x1 = x + stride, *x2 = x + 2 * stride, *x3 = x + 3 * stride;
    if (rows == 4) {
        for (Py_ssize_t k = 0; k < n; k++)
            acc[k] += ((double)x0[k] + (double)x1[k]) + ((double)x2[k] + (double)x3[k]);
    } else {
        for (int r = 0; r < rows; r++) {
            const MG_T *xr = x + r * stride;
            for (Py_ssize_t k = 0; k < n; k++) acc[k] += (double)xr[k];
        }
    }
}

/* s1[k] += x[k] - c[k], s2[k] += (x[k] - c[k])^2 */
static inline void MG_FN(mg_col_moments)(const MG_T *x, const double *c, double *s1, double *s2,
                               Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        double d = (double)x[k] - c[k];
        s1[k] += d;
        s2[k] += d * d;
    }
}

/* running max/min per column with the row position `a` of its first occurrence; NaN sticks */
static inline void MG_FN(mg_col_extreme)(const MG_T *x, MG_T *m, int64_t *index, int64_t a,
                                         int sign,
                               Py_ssize_t n)
{
    if (sign > 0) {
        for (Py_ssize_t k = 0; k < n; k++) {
            MG_T v = x[k], cur = m[k];
            int take = (v > cur) | ((v != v) & (cur == cur));
            m[k] = take ? v : cur;
            index[k] = take ? a : index[k];
        }
    } else {
        for (Py_ssize_t k = 0; k < n; k++) {
            MG_T v = x[k], cur = m[k];
            int take = (v < cur) | ((v != v) & (cur == cur));
            m[k] = take ? v : cur;
            index[k] = take ? a : index[k];
        }
    }
}

/* acc[k] += exp(x[k] - shift[k]) */
static inline void MG_FN(mg_col_sumexp)(const MG_T *x, const MG_T *shift, double *acc, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) acc[k] += (double)MG_FN(mg_exp)(x[k] - shift[k]);
}

/* y[k] = exp(x[k] - shift[k]); acc[k] += y[k] */
static inline void MG_FN(mg_col_expwrite)(const MG_T *x, MG_T *y, const MG_T *shift, double *acc,
                                          Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        MG_T e = MG_FN(mg_exp)(x[k] - shift[k]);
        y[k] = e;
        acc[k] += (double)e;
    }
}

/* acc[k] += x[k] * y[k] */
static inline void MG_FN(mg_col_dot)(const MG_T *x, const MG_T *y, double *acc, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) acc[k] += (double)x[k] * (double)y[k];
}

/* y[k] = a[k] * x[k] + b[k] (y may alias x) */
static inline void MG_FN(mg_col_affine)(const MG_T *x, MG_T *y, const MG_T *a, const MG_T *b,
                                        Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) y[k] = a[k] * x[k] + b[k];
}

/* dx[k] = y[k] * (g[k] - dot[k]) */
static inline void MG_FN(mg_col_softmax_bwd)(const MG_T *y, const MG_T *g, MG_T *dx,
                                             const MG_T *dot, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) dx[k] = y[k] * (g[k] - dot[k]);
}

/* dx[k] = g[k] - exp(y[k]) * total[k] */
static inline void MG_FN(mg_col_logsoftmax_bwd)(const MG_T *y, const MG_T *g, MG_T *dx,
                                                const MG_T *total,
                                      Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) dx[k] = g[k] - MG_FN(mg_exp)(y[k]) * total[k];
}


/* ---- normalization: gradient sums and the write passes of _norm.pyx ---- */

/* sum(dy) and sum(dy * (x - mean)) over n values: the two sums of the BatchNorm backward. */
static void MG_FN(mg_grad_sums)(const MG_T *restrict dy, const MG_T *restrict x, Py_ssize_t n,
                                double mean, double *sum_dy, double *sum_dy_xc)
{
    double a[MG_LANES] = {0.0}, b[MG_LANES] = {0.0};
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        #pragma omp simd
        for (int j = 0; j < MG_LANES; j++) {
            double g = (double)dy[i + j];
            a[j] += g;
            b[j] += g * ((double)x[i + j] - mean);
        }
    }
    for (int j = 0; i < n; i++, j++) {
        double g = (double)dy[i];
        a[j] += g;
        b[j] += g * ((double)x[i] - mean);
    }
    *sum_dy = mg_fold(a);
    *sum_dy_xc = mg_fold(b);
}

/* One LayerNorm sample in the backward: with x_hat = (x - mean) * rstd and g = dy * gamma,
 * return sum(g) and sum(g * x_hat) over the sample, and add dy * x_hat and dy into the
 * per-feature accumulators dgamma and dbeta. */
static void MG_FN(mg_layernorm_grad_sums)(const MG_T *restrict dy, const MG_T *restrict x,
                                          const MG_T *restrict gamma, Py_ssize_t n,
                                          double mean, double rstd,
                                          double *restrict dgamma, double *restrict dbeta,
                                          double *sum_g, double *sum_g_xhat)
{
    double a[MG_LANES] = {0.0}, b[MG_LANES] = {0.0};
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        #pragma omp simd
        for (int j = 0; j < MG_LANES; j++) {
            double d = (double)dy[i + j];
            double xhat = ((double)x[i + j] - mean) * rstd;
            double g = d * (double)gamma[i + j];
            a[j] += g;
            b[j] += g * xhat;
            dgamma[i + j] += d * xhat;
            dbeta[i + j] += d;
        }
    }
    for (int j = 0; i < n; i++, j++) {
        double d = (double)dy[i];
        double xhat = ((double)x[i] - mean) * rstd;
        double g = d * (double)gamma[i];
        a[j] += g;
        b[j] += g * xhat;
        dgamma[i] += d * xhat;
        dbeta[i] += d;
    }
    *sum_g = mg_fold(a);
    *sum_g_xhat = mg_fold(b);
}

/* Columns c0..c1 of a C-contiguous (rows, cols) x: sum1[c] = sum_r (x[r, c] - x[0, c]) and
 * sum2[c] the sum of squares. Rows outside and columns inside (unit stride); four rows per
 * sweep so each accumulator is loaded and stored once per four rows. */
static void MG_FN(mg_column_shifted_sums)(const MG_T *restrict x, Py_ssize_t rows,
                                          Py_ssize_t cols, Py_ssize_t c0, Py_ssize_t c1,
                                          double *restrict sum1, double *restrict sum2)
{
    Py_ssize_t r = 0;
    for (Py_ssize_t c = c0; c < c1; c++) {
        sum1[c] = 0.0;
        sum2[c] = 0.0;
    }
    for (; r + 4 <= rows; r += 4) {
        const MG_T *p = x + r * cols;
        #pragma omp simd
        for (Py_ssize_t c = c0; c < c1; c++) {
            double shift = (double)x[c];
            double v0 = (double)p[c] - shift, v1 = (double)p[c + cols] - shift;
            double v2 = (double)p[c + 2 * cols] - shift, v3 = (double)p[c + 3 * cols] - shift;
            sum1[c] += (v0 + v1) + (v2 + v3);
            sum2[c] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3);
        }
    }
    for (; r < rows; r++) {
        const MG_T *p = x + r * cols;
        #pragma omp simd
        for (Py_ssize_t c = c0; c < c1; c++) {
            double v = (double)p[c] - (double)x[c];
            sum1[c] += v;
            sum2[c] += v * v;
        }
    }
}

/* Columns c0..c1 of (rows, cols) dy and x: sum_dy[c] = sum_r dy[r, c] and
 * sum_dy_xc[c] = sum_r dy[r, c] * (x[r, c] - mean[c]), four rows per sweep. */
static void MG_FN(mg_column_grad_sums)(const MG_T *restrict dy, const MG_T *restrict x,
                                       Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t c0,
                                       Py_ssize_t c1, const double *restrict mean,
                                       double *restrict sum_dy, double *restrict sum_dy_xc)
{
    Py_ssize_t r = 0;
    for (Py_ssize_t c = c0; c < c1; c++) {
        sum_dy[c] = 0.0;
        sum_dy_xc[c] = 0.0;
    }
    for (; r + 4 <= rows; r += 4) {
        const MG_T *g = dy + r * cols, *p = x + r * cols;
        #pragma omp simd
        for (Py_ssize_t c = c0; c < c1; c++) {
            double m = mean[c];
            double g0 = g[c], g1 = g[c + cols], g2 = g[c + 2 * cols], g3 = g[c + 3 * cols];
            sum_dy[c] += (g0 + g1) + (g2 + g3);
            sum_dy_xc[c] += (g0 * ((double)p[c] - m) + g1 * ((double)p[c + cols] - m))
                            + (g2 * ((double)p[c + 2 * cols] - m)
                               + g3 * ((double)p[c + 3 * cols] - m));
        }
    }
    for (; r < rows; r++) {
        const MG_T *g = dy + r * cols, *p = x + r * cols;
        #pragma omp simd
        for (Py_ssize_t c = c0; c < c1; c++) {
            sum_dy[c] += (double)g[c];
            sum_dy_xc[c] += (double)g[c] * ((double)p[c] - mean[c]);
        }
    }
}


/* The write passes. `restrict` tells gcc that outputs and inputs do not overlap: with six
 * pointers it would otherwise give up on run-time overlap checks and leave the loops scalar
 * (measured 5-6x slower). The centred value is (x - mean_hi) - mean_lo, see _norm.pyx. */

/* y = (x - mean) * scale + shift over n values. */
static inline void MG_FN(mg_scale_shift)(const MG_T *restrict x, Py_ssize_t n, MG_T mean_hi,
                                         MG_T mean_lo, MG_T scale, MG_T shift,
                                         MG_T *restrict y)
{
    #pragma omp simd
    for (Py_ssize_t i = 0; i < n; i++) {
        y[i] = ((x[i] - mean_hi) - mean_lo) * scale + shift;
    }
}

/* y[r, c] = (x[r, c] - mean[c]) * scale[c] + shift[c] for rows r0..r1 of (rows, cols). */
static inline void MG_FN(mg_scale_shift_rows)(const MG_T *restrict x, Py_ssize_t r0,
                                              Py_ssize_t r1, Py_ssize_t cols,
                                              const MG_T *restrict mean_hi,
                                              const MG_T *restrict mean_lo,
                                              const MG_T *restrict scale,
                                              const MG_T *restrict shift, MG_T *restrict y)
{
    for (Py_ssize_t r = r0; r < r1; r++) {
        const MG_T *xr = x + r * cols;
        MG_T *yr = y + r * cols;
        #pragma omp simd
        for (Py_ssize_t c = 0; c < cols; c++) {
            yr[c] = ((xr[c] - mean_hi[c]) - mean_lo[c]) * scale[c] + shift[c];
        }
    }
}

/* dx = dy * a + (x - mean) * b + d over n values. */
static inline void MG_FN(mg_dx_write)(const MG_T *restrict dy, const MG_T *restrict x,
                                      Py_ssize_t n, MG_T mean_hi, MG_T mean_lo, MG_T a, MG_T b,
                                      MG_T d, MG_T *restrict dx)
{
    #pragma omp simd
    for (Py_ssize_t i = 0; i < n; i++) {
        dx[i] = dy[i] * a + ((x[i] - mean_hi) - mean_lo) * b + d;
    }
}

/* dx[r, c] = dy[r, c] * a[c] + (x[r, c] - mean[c]) * b[c] + d[c] for rows r0..r1. */
static inline void MG_FN(mg_dx_write_rows)(const MG_T *restrict dy, const MG_T *restrict x,
                                           Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols,
                                           const MG_T *restrict mean_hi,
                                           const MG_T *restrict mean_lo,
                                           const MG_T *restrict a, const MG_T *restrict b,
                                           const MG_T *restrict d, MG_T *restrict dx)
{
    for (Py_ssize_t r = r0; r < r1; r++) {
        const MG_T *dyr = dy + r * cols, *xr = x + r * cols;
        MG_T *dxr = dx + r * cols;
        #pragma omp simd
        for (Py_ssize_t c = 0; c < cols; c++) {
            dxr[c] = dyr[c] * a[c] + ((xr[c] - mean_hi[c]) - mean_lo[c]) * b[c] + d[c];
        }
    }
}

/* One LayerNorm sample: y = ((x - mean) * rstd) * gamma + beta. */
static inline void MG_FN(mg_layernorm_row)(const MG_T *restrict x, Py_ssize_t n, MG_T mean_hi,
                                           MG_T mean_lo, MG_T rstd,
                                           const MG_T *restrict gamma,
                                           const MG_T *restrict beta, MG_T *restrict y)
{
    #pragma omp simd
    for (Py_ssize_t i = 0; i < n; i++) {
        y[i] = (((x[i] - mean_hi) - mean_lo) * rstd) * gamma[i] + beta[i];
    }
}

/* One LayerNorm sample's dx = (dy * gamma) * rstd + (x - mean) * p + q. */
static inline void MG_FN(mg_layernorm_dx_row)(const MG_T *restrict dy, const MG_T *restrict x,
                                              const MG_T *restrict gamma, Py_ssize_t n,
                                              MG_T mean_hi, MG_T mean_lo, MG_T rstd, MG_T p,
                                              MG_T q, MG_T *restrict dx)
{
    #pragma omp simd
    for (Py_ssize_t i = 0; i < n; i++) {
        dx[i] = (dy[i] * gamma[i]) * rstd + ((x[i] - mean_hi) - mean_lo) * p + q;
    }
}

