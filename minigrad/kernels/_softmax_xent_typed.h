/* The typed loops of _softmax_xent.h, included there twice: MG_T is the element type (float or
 * double), MG_FN(name) appends its suffix (_f or _d), MG_XENT_SKIP is 1 where an AVX-512 loop of
 * _softmax_xent.h replaces the portable short-row loop. No include guard on purpose.
 */

#if !MG_XENT_SKIP
/* The shifts and float64 sums of nb <= MG_XENT_BLOCK rows of C < MG_LANES values (row r at
   x + r * C): shift_r = max_j x_rj (0 when that is not finite), sum_r = sum_j exp(x_rj -
   shift_r) added in order of j, as mg_row_sumexp adds a row shorter than its lanes. One
   column of the block at a time, a row per lane. (A NaN after x_r0 never becomes the max here,
   as in mg_row_max_f: mg_xent_shift then makes the shift of a row holding NaN 0.) */
static inline void MG_FN(mg_xent_short_stats)(const MG_T *x, Py_ssize_t C, Py_ssize_t nb,
                                              MG_T *shift, double *sum)
{
    MG_T m[MG_XENT_BLOCK];
    for (Py_ssize_t r = 0; r < nb; r++) {
        m[r] = x[r * C];
        sum[r] = 0.0;
    }
    for (Py_ssize_t j = 1; j < C; j++) {
        #pragma omp simd
        for (Py_ssize_t r = 0; r < nb; r++) {
            MG_T v = x[r * C + j];
            m[r] = v > m[r] ? v : m[r];
        }
    }
    for (Py_ssize_t r = 0; r < nb; r++) shift[r] = isfinite(m[r]) ? m[r] : 0;
    for (Py_ssize_t j = 0; j < C; j++) {
        #pragma omp simd
        for (Py_ssize_t r = 0; r < nb; r++)
            sum[r] += (double)MG_FN(mg_exp)(x[r * C + j] - shift[r]);
    }
}

/* sum_j exp(x_j - shift) of row x (n >= MG_LANES) and *ymax the max of row y, as the row loops
   give them (`finite`, `next`: hints the AVX-512 loop uses, see mg_xent_long_stats_f) */
static inline double MG_FN(mg_xent_long_stats)(const MG_T *x, Py_ssize_t n, MG_T shift,
                                               int finite, const MG_T *y, MG_T *ymax,
                                               const MG_T *next)
{
    (void)finite;
    (void)next;
    *ymax = MG_FN(mg_row_max)(y, n, 1);
    return MG_FN(mg_row_sumexp)(x, n, shift);
}

/* One row of the backward: dx_j = g exp((x_j - hi) - lo) - c */
static inline void MG_FN(mg_xent_bwd_row)(const MG_T *x, MG_T *dx, Py_ssize_t n, MG_T hi,
                                          MG_T lo, MG_T g, MG_T c, const MG_T *next)
{
    (void)next;
    for (Py_ssize_t i = 0; i < n; i++) dx[i] = g * MG_FN(mg_exp)((x[i] - hi) - lo) - c;
}
#endif

/* The shift of a row holding NaN is 0, as np.max makes it in the twin: the max loops may skip a
   NaN (mg_row_max_f), but its exp makes the sum NaN, and only a NaN does (with a finite shift an
   exp is NaN only for a NaN logit; with 0, inf gives inf); the sum does not depend on the shift
   then. */
static inline MG_T MG_FN(mg_xent_shift)(MG_T shift, double sum)
{
    return sum == sum ? shift : 0;
}

/* mean_j (m - x_j) summed term by term in float64: each term is >= 0 and small next to m when
   the logits share a large offset, where m - sum_j x_j / C would cancel */
static inline double MG_FN(mg_xent_gap_mean)(const MG_T *x, Py_ssize_t C, double m)
{
    double total = 0;
    for (Py_ssize_t j = 0; j < C; j++) total += m - (double)x[j];
    return total / C;
}

/* Row i of the forward from its shift m and s = sum_j exp(x[i, j] - m): parts_i = (m, log s),
   lse = m + log s, and loss_i = log(s) + (1 - ls) (m - x[i, t_i]) + ls mean_j (m - x[i, j]), 0
   where t_i == ignore. The loss is formed in float64 from the shifted parts: a large common
   offset of the logits cancels exactly in m - x_t instead of through a rounded lse; and
   m + log s is kept as its two parts, since for logits of 1e17 m + 1.1 is m again even in
   float64, and the backward's exp(x - lse) needs the 1.1. */
static inline void MG_FN(mg_xent_row_loss)(const MG_T *x, Py_ssize_t i, Py_ssize_t C,
                                           const int64_t *target, int64_t ignore, double ls,
                                           MG_T m, double s, MG_T *loss, double *parts)
{
    double log_s = log(s);
    parts[2 * i] = m;
    parts[2 * i + 1] = log_s;
    if (target[i] == ignore) {
        loss[i] = 0;
        return;
    }
    double val = log_s + (1.0 - ls) * ((double)m - (double)x[i * C + target[i]]);
    if (ls != 0)  /* skipped at 0 so that an inf logit does not make 0 * inf = NaN */
        val = val + ls * MG_FN(mg_xent_gap_mean)(x + i * C, C, m);
    loss[i] = (MG_T)val;
}

/* Rows r0..r1 of the forward (see mg_xent_row_loss): short rows a block at a time; long ones
   one after the other, each row's sum taken with the next row's max (mg_xent_long_stats). */
static inline void MG_FN(mg_xent_forward)(const MG_T *x, Py_ssize_t r0, Py_ssize_t r1,
                                          Py_ssize_t C, const int64_t *target, int64_t ignore,
                                          double ls, MG_T *loss, double *parts)
{
    if (r0 >= r1)
        return;
    if (C < MG_LANES) {
        MG_T shift[MG_XENT_BLOCK];
        double sum[MG_XENT_BLOCK];
        for (Py_ssize_t b = r0; b < r1; b += MG_XENT_BLOCK) {
            Py_ssize_t nb = r1 - b < MG_XENT_BLOCK ? r1 - b : MG_XENT_BLOCK;
            MG_FN(mg_xent_short_stats)(x + b * C, C, nb, shift, sum);
            for (Py_ssize_t r = 0; r < nb; r++)
                MG_FN(mg_xent_row_loss)(x, b + r, C, target, ignore, ls,
                                        MG_FN(mg_xent_shift)(shift[r], sum[r]), sum[r], loss,
                                        parts);
        }
        return;
    }
    MG_T m = MG_FN(mg_row_max)(x + r0 * C, C, 1);
    for (Py_ssize_t i = r0; i < r1; i++) {
        const MG_T *row = x + i * C;
        const MG_T *y = i + 1 < r1 ? row + C : row;  /* the next row (the last: itself) */
        const MG_T *next = i + 2 < r1 ? row + 2 * C : y;
        int finite = isfinite(m);
        MG_T shift = finite ? m : 0;  /* a row of infs: its sum of exps says so */
        double s = MG_FN(mg_xent_long_stats)(row, C, shift, finite, y, &m, next);
        MG_FN(mg_xent_row_loss)(x, i, C, target, ignore, ls, MG_FN(mg_xent_shift)(shift, s), s,
                                loss, parts);
    }
}

/* Rows r0..r1 of the backward: dx[i, j] = g_i (exp((x[i, j] - m_i) - log s_i) - (1 - ls)
   [j == t_i] - ls / C), g_i = grad[i * grad_step], zero rows where t_i == ignore.
   exp((x - hi) - lo) with hi + lo = m + log s: hi the lse in x's dtype, lo the rest,
   (m - hi) + log s formed in float64 (m - hi is exact there). x - hi is then exact near the
   log-sum-exp; for logits of 1e17, where m + log s rounds to m, hi is m and lo log s itself.
   The rows are taken last to first: the forward reads them first to last, and its last rows
   are the ones still in cache ((1024, 1000) float32 after the forward, one thread: 273 ->
   255 us). */
static inline void MG_FN(mg_xent_backward)(const MG_T *x, Py_ssize_t r0, Py_ssize_t r1,
                                           Py_ssize_t C, const int64_t *target, int64_t ignore,
                                           const double *parts, const MG_T *grad,
                                           Py_ssize_t grad_step, double ls, MG_T *dx)
{
    for (Py_ssize_t i = r1 - 1; i >= r0; i--) {
        MG_T *d = dx + i * C;
        if (target[i] == ignore) {
            memset(d, 0, (size_t)C * sizeof(MG_T));
            continue;
        }
        MG_T g = grad[i * grad_step];
        MG_T hi = (MG_T)(parts[2 * i] + parts[2 * i + 1]);
        double lo = (parts[2 * i] - (double)hi) + parts[2 * i + 1];
        MG_FN(mg_xent_bwd_row)(x + i * C, d, C, hi, (MG_T)lo, g, (MG_T)(g * (ls / C)),
                               x + (i > r0 ? i - 1 : i) * C);
        d[target[i]] -= (MG_T)(g * (1.0 - ls));
    }
}

/* The forward of rows r0..r1, then their backward with the gradient g for every row, a block
   of rows at a time (each block's logits are still in cache for the backward) */
static inline void MG_FN(mg_xent_fused)(const MG_T *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C,
                                        const int64_t *target, int64_t ignore, double ls,
                                        MG_T *loss, double *parts, MG_T g, MG_T *dx)
{
    for (Py_ssize_t b = r0; b < r1; b += MG_XENT_BLOCK) {
        Py_ssize_t b1 = r1 - b < MG_XENT_BLOCK ? r1 : b + MG_XENT_BLOCK;
        MG_FN(mg_xent_forward)(x, b, b1, C, target, ignore, ls, loss, parts);
        MG_FN(mg_xent_backward)(x, b, b1, C, target, ignore, parts, &g, 0, ls, dx);
    }
}
