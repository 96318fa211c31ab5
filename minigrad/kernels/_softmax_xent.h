/* The rows of softmax cross-entropy (_softmax_xent.pxi): per row the shift m (the row max, 0
 * when that is not finite) and s = sum_j exp(x_j - m) in float64, the loss formed from them, and
 * the backward's gradient row. The typed loops are written once, in _softmax_xent_typed.h, with
 * MG_T for the element type and MG_FN(name) for the name, and included twice below (float:
 * suffix _f, double: suffix _d), after the float32 loops of AVX-512 builds that replace some.
 *
 * Every result has the bits of the row loops of _simd.h, a row's max (mg_row_max) and then the
 * sum of its exps (mg_row_sumexp: 32 float64 lanes, folded, then the last n % 32 values added in
 * order), which these kernels called row by row before; the loops here only run them faster.
 * A row shorter than 32 values is summed in order, one float64 add per value; a block of
 * MG_XENT_BLOCK such rows is swept column by column, one vector lane per row, so that each row
 * keeps its order of adds while the exps and adds run on vectors: (64, 10) float32 rows, one
 * thread, 3.7 us in the row loops against 0.25 us in columns of 16 rows (the row loops take
 * every exp of a short row one at a time). Longer rows go one after the other, each row's exps
 * beside the next row's max (mg_xent_sumexp_max_f). The exps have the row loops' bits too: the
 * scalar mg_exp_f and the vector mg_exp16_f agree on every float input that is not a signalling
 * NaN (checked on all 2^32 of them), and the kernels only take exps of differences, which are
 * never signalling.
 */
#ifndef MG_SOFTMAX_XENT_H
#define MG_SOFTMAX_XENT_H

#include "_simd.h"

#define MG_XENT_BLOCK 16

/* How many of the n targets are not `ignore`, or -1 when one of those is outside [0, C): the
   kernels read x[i, target[i]] */
static inline Py_ssize_t mg_xent_count(const int64_t *target, Py_ssize_t n, Py_ssize_t C,
                                       int64_t ignore)
{
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t t = target[i];
        if (t == ignore)
            continue;
        if (t < 0 || t >= C)
            return -1;
        kept++;
    }
    return kept;
}

#if MG_X86_AVX512

/* The shifts and sums of nb <= 16 rows of C < MG_LANES values (row r at x + r * C), one row a
   lane: the column loop of the portable mg_xent_short_stats on 16-float vectors, the columns
   gathered once and kept for the exps. */
static inline void mg_xent_short_stats_f(const float *x, Py_ssize_t C, Py_ssize_t nb,
                                         float *shift, double *sum)
{
    __m512 col[MG_LANES];
    __mmask16 k = (__mmask16)((1u << nb) - 1);
    __m512i at = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32((int)C));
    __m512 m = col[0] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, at, x, 4);
    for (Py_ssize_t j = 1; j < C; j++) {
        __m512 v = col[j] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, at, x + j, 4);
        /* m = v > m ? v : m, the compare of mg_row_max_f (a NaN never replaces m) */
        m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, m, _CMP_GT_OQ), m, v);
    }
    __mmask16 finite = _mm512_cmp_ps_mask(_mm512_abs_ps(m), _mm512_set1_ps(INFINITY),
                                          _CMP_LT_OQ);
    m = _mm512_maskz_mov_ps(finite, m);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (Py_ssize_t j = 0; j < C; j++) {
        __m512 e = mg_exp16_f(_mm512_sub_ps(col[j], m));
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(
            _mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    _mm512_mask_storeu_ps(shift, k, m);
    _mm512_mask_storeu_pd(sum, (__mmask8)k, lo);
    _mm512_mask_storeu_pd(sum + 8, (__mmask8)(k >> 8), hi);
}

/* y_k = exp(x_k - shift) of n < 32 values, all x_k - shift <= 0 (no upper clamp), as vectors */
static inline void mg_xent_exp_tail_f(const float *x, Py_ssize_t n, __m512 shift, float *y)
{
    for (Py_ssize_t k = 0; k < n; k += 16) {
        __mmask16 m = n - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - k)) - 1);
        __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + k), shift);
        _mm512_mask_storeu_ps(y + k, m, mg_exp16_upto_f(v));
    }
}

/* the high eight floats of z */
static inline __m256 mg_xent_high8_f(__m512 z)
{
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z), 1));
}

/* mg_row_max_f's result (sign 1, n >= 32) from its 32 lanes held as two 16-float vectors
   (z0 = its vectors a[0], a[1], z1 = a[2], a[3]) after the values below i: the same folds in
   the same order, then the values from i on */
static inline float mg_xent_max_finish_f(__m512 z0, __m512 z1, const float *y, Py_ssize_t i,
                                         Py_ssize_t n)
{
    __m256 a = _mm256_max_ps(mg_xent_high8_f(z0), _mm512_castps512_ps256(z0));
    a = _mm256_max_ps(_mm512_castps512_ps256(z1), a);
    a = _mm256_max_ps(mg_xent_high8_f(z1), a);
    float t[8];
    _mm256_storeu_ps(t, a);
    float m = t[0];
    for (int j = 1; j < 8; j++) m = t[j] > m ? t[j] : m;
    for (; i < n; i++) m = y[i] > m ? y[i] : m;
    return m;
}

/* Two rows of n >= MG_LANES values in one loop: returns sum_j exp(x_j - shift) of row x, whose
 * shift is its max, a finite one, and sets *ymax to the max of row y (the next one) as
 * mg_row_max_f gives it, while prefetching the row after that (`next`). Each result has the bits
 * of the row loops (mg_row_sumexp_f: its float64 lanes, their fold, then the tail added in
 * order; mg_row_max_f: its lanes, max(v, lane) in order, its folds), faster:
 * - the next row's max, which the exps of that row wait for, is taken while this row's exps
 *   run; a row's max and then its exps one after the other left the vector units idle at every
 *   row (300 us of work on (1024, 1000) float32 rows in L1 took 371 us, one thread);
 * - no upper clamp in the exps: every x - shift is <= 0 here, where mg_exp16_upto_f alone
 *   gives mg_exp16_f's bits (checked on all 2^32 inputs);
 * - the tail's exps as vectors (a row of 1000 values has 8: one exp at a time made a
 *   (1024, 1000) forward 278 -> 322 us, one thread);
 * - with the rows in L3, the prefetches took 90 us off the 476 of a forward.
 * A row holding NaN may have a max that skipped values (see mg_row_max_f): its sum is NaN, and
 * then recomputed by mg_row_sumexp_f for that function's bits. */
static inline double mg_xent_sumexp_max_f(const float *x, Py_ssize_t n, float shift,
                                          const float *y, float *ymax, const float *next)
{
    __m512d a[4];
    for (int q = 0; q < 4; q++) a[q] = _mm512_setzero_pd();
    __m512 s = _mm512_set1_ps(shift);
    __m512 z0 = _mm512_loadu_ps(y), z1 = _mm512_loadu_ps(y + 16);
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        _mm_prefetch((const char *)(next + i), _MM_HINT_T0);
        _mm_prefetch((const char *)(next + i + 16), _MM_HINT_T0);
        if (i) {  /* the first 32 values of y are its lanes' start */
            z0 = _mm512_max_ps(_mm512_loadu_ps(y + i), z0);
            z1 = _mm512_max_ps(_mm512_loadu_ps(y + i + 16), z1);
        }
        mg_acc16_avx512(a, mg_exp16_upto_f(_mm512_sub_ps(_mm512_loadu_ps(x + i), s)));
        mg_acc16_avx512(a + 2, mg_exp16_upto_f(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), s)));
    }
    *ymax = mg_xent_max_finish_f(z0, z1, y, i, n);
    double total = mg_fold_avx512(a);
    float e[MG_LANES];
    mg_xent_exp_tail_f(x + i, n - i, s, e);
    for (Py_ssize_t k = 0; k < n - i; k++) total += (double)e[k];
    return total == total ? total : mg_row_sumexp_f(x, n, shift);
}

/* sum_j exp(x_j - shift) of row x (n >= MG_LANES), and *ymax the max of row y, as the row
   loops give them; `finite`: shift is x's max, a finite one; `next`: a row to prefetch */
static inline double mg_xent_long_stats_f(const float *x, Py_ssize_t n, float shift, int finite,
                                          const float *y, float *ymax, const float *next)
{
    if (finite)
        return mg_xent_sumexp_max_f(x, n, shift, y, ymax, next);
    *ymax = mg_row_max_f(y, n, 1);
    return mg_row_sumexp_f(x, n, shift);
}

/* One row of the backward: dx_j = g exp((x_j - hi) - lo) - c, prefetching the next row. The
   last n % 16 values are one masked vector (one exp at a time was 2.8x slower on (64, 10)
   rows), the bits of the portable loop, whose g * e - c is an FMA too. */
static inline void mg_xent_bwd_row_f(const float *x, float *dx, Py_ssize_t n, float hi,
                                     float lo, float g, float c, const float *next)
{
    __m512 vh = _mm512_set1_ps(hi), vl = _mm512_set1_ps(lo);
    __m512 vg = _mm512_set1_ps(g), vc = _mm512_set1_ps(c);
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm_prefetch((const char *)(next + i), _MM_HINT_T0);
        __m512 e = mg_exp16_f(_mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vh), vl));
        _mm512_storeu_ps(dx + i, _mm512_fmsub_ps(vg, e, vc));
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = mg_exp16_f(_mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vh),
                                            vl));
        _mm512_mask_storeu_ps(dx + i, k, _mm512_fmsub_ps(vg, e, vc));
    }
}

#endif /* MG_X86_AVX512 */

#define MG_T float
#define MG_FN(name) name##_f
#define MG_XENT_SKIP MG_X86_AVX512
#include "_softmax_xent_typed.h"
#undef MG_T
#undef MG_FN
#undef MG_XENT_SKIP

#define MG_T double
#define MG_FN(name) name##_d
#define MG_XENT_SKIP 0
#include "_softmax_xent_typed.h"
#undef MG_T
#undef MG_FN
#undef MG_XENT_SKIP

#endif /* MG_SOFTMAX_XENT_H */
