/* The typed loops of _pool_max.h, included there twice: MG_T is the element type (float or
 * double) and MG_FN(name) appends its suffix (_f or _d). No include guard on purpose. */

/* Whether the later of two taps is the window's pick: strictly greater (ties keep the first),
 * or a NaN after a number (the first NaN wins). */
MG_PM_INLINE int MG_FN(mg_later_wins)(MG_T first, MG_T later)
{
    return (first == first) & !(later <= first);
}

/* The vertical pass over row pairs r0..r0 + n of the tall plane (OH row pairs to a plane):
 * v[r, j] the pick of x[2 r, j] and x[2 r + 1, j], at[r, j] its position in its plane. */
MG_PM_WIDE MG_PM_INLINE void MG_FN(mg_tall_vertical)(const MG_T *restrict x, MG_T *restrict v,
                                                     int32_t *restrict at, Py_ssize_t r0,
                                                     Py_ssize_t n, Py_ssize_t OH, Py_ssize_t W)
{
    Py_ssize_t oh = r0 % OH;
    for (Py_ssize_t r = 0; r < n; r++) {
        const MG_T *top = x + 2 * (r0 + r) * W;
        MG_T *vr = v + r * W;
        int32_t *ar = at + r * W;
        int32_t base = (int32_t)(2 * oh * W);
        #pragma omp simd
        for (Py_ssize_t j = 0; j < W; j++) {
            MG_T t = top[j], b = top[W + j];
            int down = MG_FN(mg_later_wins)(t, b);
            vr[j] = down ? b : t;
            ar[j] = base + (int32_t)j + (down ? (int32_t)W : 0);
        }
        oh = oh + 1 < OH ? oh + 1 : 0;
    }
}

/* The horizontal pass over m windows: output k picks between columns 2k and 2k + 1 of the
 * vertical pass. The right column's pick comes later in the scan order (NaN first, then value,
 * then position) if it wins by value and its position is later, or unless the left one wins
 * by value if its position is earlier (vertical-first, a bottom tap of the left column,
 * position 2 of the window, may meet a top tap of the right one, position 1). */
MG_PM_WIDE MG_PM_INLINE void MG_FN(mg_tall_horizontal)(const MG_T *restrict v,
                                                       const int32_t *restrict at, Py_ssize_t m,
                                                       MG_T *restrict y, int64_t *restrict index)
{
    #pragma omp simd
    for (Py_ssize_t k = 0; k < m; k++) {
        MG_T left = v[2 * k], right = v[2 * k + 1];
        int32_t pl = at[2 * k], pr = at[2 * k + 1];
        int later = MG_FN(mg_later_wins)(left, right);
        int earlier = !MG_FN(mg_later_wins)(right, left);
        int take = later ^ ((later ^ earlier) & (pr < pl));
        y[k] = take ? right : left;
        index[k] = take ? pr : pl;
    }
}

MG_PM_WIDE MG_PM_INLINE void MG_FN(mg_max_tall_body)(const MG_T *restrict x, MG_T *restrict y,
                                                     int64_t *restrict index, Py_ssize_t r0,
                                                     Py_ssize_t r1, Py_ssize_t OH, Py_ssize_t W)
{
    MG_T v[MG_TALL_CHUNK];
    int32_t at[MG_TALL_CHUNK];
    Py_ssize_t per = MG_TALL_CHUNK / W, n;
    for (; r0 < r1; r0 += n) {
        n = r1 - r0 > per ? per : r1 - r0;
        MG_FN(mg_tall_vertical)(x, v, at, r0, n, OH, W);
        MG_FN(mg_tall_horizontal)(v, at, n * W / 2, y + r0 * W / 2, index + r0 * W / 2);
    }
}

/* Row pairs r0..r1 of the tall plane of 2x2 windows: y and index (positions in each plane)
 * of output rows r0..r1, for the widths inlined as constants, W = 2, 4, 8 or 16 (a row of the
 * vertical pass is then one or two vectors). Other widths take _pool.pyx's loop: with a
 * variable width each row ends in a masked partial vector, and these loops were no faster
 * there (measured, forward of 64x16xWxW float32, one thread, us, these loops with 512-bit /
 * 256-bit vectors against _pool.pyx's: W = 12 92 / 37 / 39, 14 169 / 61 / 68, 28 330 / 205 /
 * 246, and in the module 5-25% slower at 12 and 14). */
MG_PM_OUTER void MG_FN(mg_max_tall)(const MG_T *restrict x, MG_T *restrict y,
                                    int64_t *restrict index, Py_ssize_t r0, Py_ssize_t r1,
                                    Py_ssize_t OH, Py_ssize_t W)
{
    switch (W) {
    case 2:
        MG_FN(mg_max_tall_body)(x, y, index, r0, r1, OH, 2);
        break;
    case 4:
        MG_FN(mg_max_tall_body)(x, y, index, r0, r1, OH, 4);
        break;
    case 8:
        MG_FN(mg_max_tall_body)(x, y, index, r0, r1, OH, 8);
        break;
    default:
        MG_FN(mg_max_tall_body)(x, y, index, r0, r1, OH, 16);
    }
}

/* Backward of any max pooling, planes p0..p1 of n outputs and `plane` inputs each: dx = 0,
 * then dx[index[o]] += grad[o] for each index in range; returns how many were neither in
 * range nor -1 (no tap). The zeroing right before the scatter leaves dx in cache for it (a
 * separate np.zeros of the whole array costs a pass of its own). */
MG_PM_OUTER Py_ssize_t MG_FN(mg_max_scatter)(const MG_T *restrict grad,
                                            const int64_t *restrict index, Py_ssize_t p0,
                                            Py_ssize_t p1, Py_ssize_t n, Py_ssize_t plane,
                                            MG_T *restrict dx)
{
    Py_ssize_t bad = 0;
    for (Py_ssize_t p = p0; p < p1; p++) {
        const MG_T *g = grad + p * n;
        const int64_t *at = index + p * n;
        MG_T *d = dx + p * plane;
        #pragma omp simd
        for (Py_ssize_t i = 0; i < plane; i++)
            d[i] = 0;
        for (Py_ssize_t o = 0; o < n; o++) {
            int64_t k = at[o];
            if (0 <= k && k < plane)
                d[k] += g[o];
            else
                bad += k != -1;
        }
    }
    return bad;
}
