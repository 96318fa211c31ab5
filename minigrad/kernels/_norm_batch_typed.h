/* The typed loops of _norm_batch.h, included there twice: MG_T is the element type (float or
 * double), MG_BITS the unsigned integer of its width and MG_FN(name) appends its suffix (_f or
 * _d). No include guard on purpose.
 *
 * `mask`, where a loop takes one, is the output of a ReLU applied to the BatchNorm's output
 * (NULL: none): the gradient is then ReLU's backward, g = dy where mask > 0 or mask is NaN and
 * +0.0 where mask <= 0 (a select, so an inf or NaN dy stops there: relu_select's rule).
 */

/* dy[i], or ReLU's select with a mask: +0.0 where mask[i] <= 0 (masked is a constant where this
   is inlined). The select is a bitwise and with all ones or zeros, which vectorises where a
   conditional expression left the masked loops scalar (about 8x slower). */
MG_BN_INLINE MG_T MG_FN(mg_bn_grad)(const MG_T *restrict dy, const MG_T *restrict mask,
                                    Py_ssize_t i, const int masked)
{
    MG_T g = dy[i];
    if (masked) {
        MG_BITS bits;
        memcpy(&bits, &g, sizeof bits);
        bits &= (MG_BITS)0 - (MG_BITS)!(mask[i] <= 0);
        memcpy(&g, &bits, sizeof bits);
    }
    return g;
}

/* max(v, 0) as NumPy's np.maximum(v, 0) gives it: NaN stays NaN, -0.0 becomes +0.0 */
MG_BN_INLINE MG_T MG_FN(mg_bn_relu)(MG_T v)
{
    return (v > 0 || v != v) ? v : (MG_T)0;
}

/* w <= MG_BN_STRIP columns, `stride` apart row to row, rows r0..r1 added in order into
 * s1[j] += x[r, j] - k[j] and s2[j] += (x[r, j] - k[j])^2 (first: from 0 instead; k NULL:
 * each column's first value x[0, j]). Inlined
 * with w = MG_BN_STRIP (a constant), the accumulators live in registers. */
MG_BN_WIDE MG_BN_INLINE void MG_FN(mg_bn_strip_moments)(const MG_T *restrict x, Py_ssize_t r0,
                                                        Py_ssize_t r1, Py_ssize_t stride,
                                                        Py_ssize_t w, const double *restrict k,
                                                        double *restrict s1,
                                                        double *restrict s2, int first)
{
    double kk[MG_BN_STRIP], a[MG_BN_STRIP], b[MG_BN_STRIP];
    #pragma omp simd
    for (Py_ssize_t j = 0; j < w; j++) {
        kk[j] = k ? k[j] : (double)x[j];
        a[j] = first ? 0.0 : s1[j];
        b[j] = first ? 0.0 : s2[j];
    }
    for (Py_ssize_t r = r0; r < r1; r++) {
        const MG_T *p = x + r * stride;
        #pragma omp simd
        for (Py_ssize_t j = 0; j < w; j++) {
            double v = (double)p[j] - kk[j];
            a[j] += v;
            b[j] += v * v;
        }
    }
    for (Py_ssize_t j = 0; j < w; j++) {
        s1[j] = a[j];
        s2[j] = b[j];
    }
}

/* Columns c0..c1 of a C-contiguous (rows, cols) x, each shifted by its k[c] (k NULL: by
 * x[0, c]):
 * sum1[c] = sum_r (x[r, c] - k[c]) and sum2[c] = sum_r (x[r, c] - k[c])^2, rows in order, in
 * blocks of rows (mg_bn_row_block), each block strip by strip. */
MG_BN_OUTER void MG_FN(mg_bn_column_moments)(const MG_T *restrict x, Py_ssize_t rows,
                                            Py_ssize_t cols, Py_ssize_t c0, Py_ssize_t c1,
                                            const double *restrict k, double *restrict sum1,
                                            double *restrict sum2)
{
    Py_ssize_t block = mg_bn_row_block(rows, cols, sizeof(MG_T));
    for (Py_ssize_t r0 = 0; r0 < rows; r0 += block) {
        Py_ssize_t r1 = rows - r0 < block ? rows : r0 + block, c = c0;
        for (; c + MG_BN_STRIP <= c1; c += MG_BN_STRIP)
            MG_FN(mg_bn_strip_moments)(x + c, r0, r1, cols, MG_BN_STRIP, k ? k + c : NULL,
                                       sum1 + c, sum2 + c, r0 == 0);
        if (c < c1)
            MG_FN(mg_bn_strip_moments)(x + c, r0, r1, cols, c1 - c, k ? k + c : NULL,
                                       sum1 + c, sum2 + c, r0 == 0);
    }
}

/* w <= MG_BN_STRIP columns, rows r0..r1 added in order into s1[j] += g[r, j] and
 * s2[j] += g[r, j] * (x[r, j] - m[j]), g the (masked) gradient (first: from 0 instead). */
MG_BN_WIDE MG_BN_INLINE void MG_FN(mg_bn_strip_grad_sums)(
    const MG_T *restrict dy, const MG_T *restrict mask, const MG_T *restrict x, Py_ssize_t r0,
    Py_ssize_t r1, Py_ssize_t stride, Py_ssize_t w, const double *restrict m,
    double *restrict s1, double *restrict s2, int first, const int masked)
{
    double mm[MG_BN_STRIP], a[MG_BN_STRIP], b[MG_BN_STRIP];
    #pragma omp simd
    for (Py_ssize_t j = 0; j < w; j++) {
        mm[j] = m[j];
        a[j] = first ? 0.0 : s1[j];
        b[j] = first ? 0.0 : s2[j];
    }
    for (Py_ssize_t r = r0; r < r1; r++) {
        const MG_T *p = x + r * stride;
        #pragma omp simd
        for (Py_ssize_t j = 0; j < w; j++) {
            double g = (double)MG_FN(mg_bn_grad)(dy, mask, r * stride + j, masked);
            a[j] += g;
            b[j] += g * ((double)p[j] - mm[j]);
        }
    }
    for (Py_ssize_t j = 0; j < w; j++) {
        s1[j] = a[j];
        s2[j] = b[j];
    }
}

/* Rows r0..r1 of columns c0..c1 (see below), strip by strip. */
MG_BN_WIDE MG_BN_INLINE void MG_FN(mg_bn_block_grad_sums)(
    const MG_T *restrict dy, const MG_T *restrict mask, const MG_T *restrict x, Py_ssize_t r0,
    Py_ssize_t r1, Py_ssize_t cols, Py_ssize_t c0, Py_ssize_t c1, const double *restrict mean,
    double *restrict sum_dy, double *restrict sum_dy_xc, const int masked)
{
    Py_ssize_t c = c0;
    for (; c + MG_BN_STRIP <= c1; c += MG_BN_STRIP)
        MG_FN(mg_bn_strip_grad_sums)(dy + c, masked ? mask + c : NULL, x + c, r0, r1, cols,
                                     MG_BN_STRIP, mean + c, sum_dy + c, sum_dy_xc + c,
                                     r0 == 0, masked);
    if (c < c1)
        MG_FN(mg_bn_strip_grad_sums)(dy + c, masked ? mask + c : NULL, x + c, r0, r1, cols,
                                     c1 - c, mean + c, sum_dy + c, sum_dy_xc + c, r0 == 0,
                                     masked);
}

/* Columns c0..c1 of C-contiguous (rows, cols) dy and x (and mask, or NULL):
 * sum_dy[c] = sum_r g[r, c] and sum_dy_xc[c] = sum_r g[r, c] * (x[r, c] - mean[c]), rows in
 * order, in blocks of rows (mg_bn_row_block). */
MG_BN_OUTER void MG_FN(mg_bn_column_grad_sums)(
    const MG_T *restrict dy, const MG_T *restrict mask, const MG_T *restrict x,
    Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t c0, Py_ssize_t c1,
    const double *restrict mean, double *restrict sum_dy, double *restrict sum_dy_xc)
{
    Py_ssize_t block = mg_bn_row_block(rows, cols, 2 * sizeof(MG_T));
    for (Py_ssize_t r0 = 0; r0 < rows; r0 += block) {
        Py_ssize_t r1 = rows - r0 < block ? rows : r0 + block;
        if (mask)
            MG_FN(mg_bn_block_grad_sums)(dy, mask, x, r0, r1, cols, c0, c1, mean, sum_dy,
                                         sum_dy_xc, 1);
        else
            MG_FN(mg_bn_block_grad_sums)(dy, NULL, x, r0, r1, cols, c0, c1, mean, sum_dy,
                                         sum_dy_xc, 0);
    }
}

/* The write passes. The centred value is (x - mean_hi) - mean_lo, see _norm.pyx. */

/* y[r, c] = ((x[r, c] - hi[c]) - lo[c]) * scale[c] + shift[c] (then max(y, 0) with relu) for
 * rows r0..r1 of C-contiguous (rows, cols) data: per-column coefficients. */
MG_BN_WIDE MG_BN_INLINE void MG_FN(mg_bn_write_rows_body)(
    const MG_T *restrict x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols,
    const MG_T *restrict hi, const MG_T *restrict lo, const MG_T *restrict scale,
    const MG_T *restrict shift, MG_T *restrict y, const int relu)
{
    for (Py_ssize_t r = r0; r < r1; r++) {
        const MG_T *xr = x + r * cols;
        MG_T *yr = y + r * cols;
        #pragma omp simd
        for (Py_ssize_t c = 0; c < cols; c++) {
            MG_T v = ((xr[c] - hi[c]) - lo[c]) * scale[c] + shift[c];
            yr[c] = relu ? MG_FN(mg_bn_relu)(v) : v;
        }
    }
}

MG_BN_OUTER void MG_FN(mg_bn_write_rows)(
    const MG_T *restrict x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols,
    const MG_T *restrict hi, const MG_T *restrict lo, const MG_T *restrict scale,
    const MG_T *restrict shift, MG_T *restrict y, int relu)
{
    if (relu)
        MG_FN(mg_bn_write_rows_body)(x, r0, r1, cols, hi, lo, scale, shift, y, 1);
    else
        MG_FN(mg_bn_write_rows_body)(x, r0, r1, cols, hi, lo, scale, shift, y, 0);
}

/* The same for samples n0..n1 of (N, C, S) data with per-channel coefficients: each (n, c)
 * plane of S values takes its channel's four as constants. */
MG_BN_WIDE MG_BN_INLINE void MG_FN(mg_bn_write_planes_body)(
    const MG_T *restrict x, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t C, Py_ssize_t S,
    const MG_T *restrict hi, const MG_T *restrict lo, const MG_T *restrict scale,
    const MG_T *restrict shift, MG_T *restrict y, const int relu)
{
    for (Py_ssize_t n = n0; n < n1; n++) {
        for (Py_ssize_t c = 0; c < C; c++) {
            const MG_T *xp = x + (n * C + c) * S;
            MG_T *yp = y + (n * C + c) * S;
            MG_T h = hi[c], l = lo[c], a = scale[c], b = shift[c];
            #pragma omp simd
            for (Py_ssize_t s = 0; s < S; s++) {
                MG_T v = ((xp[s] - h) - l) * a + b;
                yp[s] = relu ? MG_FN(mg_bn_relu)(v) : v;
            }
        }
    }
}

MG_BN_OUTER void MG_FN(mg_bn_write_planes)(
    const MG_T *restrict x, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t C, Py_ssize_t S,
    const MG_T *restrict hi, const MG_T *restrict lo, const MG_T *restrict scale,
    const MG_T *restrict shift, MG_T *restrict y, int relu)
{
    if (relu)
        MG_FN(mg_bn_write_planes_body)(x, n0, n1, C, S, hi, lo, scale, shift, y, 1);
    else
        MG_FN(mg_bn_write_planes_body)(x, n0, n1, C, S, hi, lo, scale, shift, y, 0);
}

/* dx[r, c] = g[r, c] * a[c] + ((x[r, c] - hi[c]) - lo[c]) * b[c] + d[c] for rows r0..r1 of
 * (rows, cols) data, g the (masked) gradient: per-column coefficients. */
MG_BN_WIDE MG_BN_INLINE void MG_FN(mg_bn_dx_rows_body)(
    const MG_T *restrict dy, const MG_T *restrict mask, const MG_T *restrict x,
    Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols, const MG_T *restrict hi,
    const MG_T *restrict lo, const MG_T *restrict a, const MG_T *restrict b,
    const MG_T *restrict d, MG_T *restrict dx, const int masked)
{
    for (Py_ssize_t r = r0; r < r1; r++) {
        const MG_T *xr = x + r * cols;
        MG_T *dxr = dx + r * cols;
        #pragma omp simd
        for (Py_ssize_t c = 0; c < cols; c++) {
            MG_T g = MG_FN(mg_bn_grad)(dy, mask, r * cols + c, masked);
            dxr[c] = g * a[c] + ((xr[c] - hi[c]) - lo[c]) * b[c] + d[c];
        }
    }
}

MG_BN_OUTER void MG_FN(mg_bn_dx_rows)(
    const MG_T *restrict dy, const MG_T *restrict mask, const MG_T *restrict x,
    Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols, const MG_T *restrict hi,
    const MG_T *restrict lo, const MG_T *restrict a, const MG_T *restrict b,
    const MG_T *restrict d, MG_T *restrict dx)
{
    if (mask)
        MG_FN(mg_bn_dx_rows_body)(dy, mask, x, r0, r1, cols, hi, lo, a, b, d, dx, 1);
    else
        MG_FN(mg_bn_dx_rows_body)(dy, NULL, x, r0, r1, cols, hi, lo, a, b, d, dx, 0);
}

/* The same for samples n0..n1 of (N, C, S) data with per-channel coefficients. */
MG_BN_WIDE MG_BN_INLINE void MG_FN(mg_bn_dx_planes_body)(
    const MG_T *restrict dy, const MG_T *restrict mask, const MG_T *restrict x,
    Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t C, Py_ssize_t S, const MG_T *restrict hi,
    const MG_T *restrict lo, const MG_T *restrict a, const MG_T *restrict b,
    const MG_T *restrict d, MG_T *restrict dx, const int masked)
{
    for (Py_ssize_t n = n0; n < n1; n++) {
        for (Py_ssize_t c = 0; c < C; c++) {
            Py_ssize_t o = (n * C + c) * S;
            MG_T h = hi[c], l = lo[c], ac = a[c], bc = b[c], dc = d[c];
            #pragma omp simd
            for (Py_ssize_t s = 0; s < S; s++) {
                MG_T g = MG_FN(mg_bn_grad)(dy, mask, o + s, masked);
                dx[o + s] = g * ac + ((x[o + s] - h) - l) * bc + dc;
            }
        }
    }
}

MG_BN_OUTER void MG_FN(mg_bn_dx_planes)(
    const MG_T *restrict dy, const MG_T *restrict mask, const MG_T *restrict x,
    Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t C, Py_ssize_t S, const MG_T *restrict hi,
    const MG_T *restrict lo, const MG_T *restrict a, const MG_T *restrict b,
    const MG_T *restrict d, MG_T *restrict dx)
{
    if (mask)
        MG_FN(mg_bn_dx_planes_body)(dy, mask, x, n0, n1, C, S, hi, lo, a, b, d, dx, 1);
    else
        MG_FN(mg_bn_dx_planes_body)(dy, NULL, x, n0, n1, C, S, hi, lo, a, b, d, dx, 0);
}
