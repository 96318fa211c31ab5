/* The rows of softmax cross-entropy (_softmax_xent.pxi): per row the shift m (the row max, 0
 * when that is not finite) and s = sum_j exp(x_j - m) in float64, the loss formed from them, and
 * the backward's gradient row. The typed loops are written once, in _softmax_xent_typed.h, with
 * MG_T for the element type and MG_FN(name) for the name, and included twice below (float:
 * suffix _f, double: suffix _d); the float32 loops of AVX-512 builds follow them.
 *
 * Rows are handled in blocks of MG_XENT_BLOCK. A row of MG_LANES or more values takes the row
 * loops of _simd.h (its max, then its 32 float64 lanes of exps). A shorter row is summed in
 * order, one float64 add per value, in those loops; here a block of short rows is swept column
 * by column instead, one vector lane per row, so that each row keeps its order of adds (and its
 * bits) while the exps and adds run on vectors: (64, 10) float32 rows, one thread, 3.7 us in the
 * row loops against 0.25 us in columns of 16 rows (the row loops take every exp of a short row
 * one at a time). The bits of the exps are those of the row loops: the scalar mg_exp_f and the
 * vector mg_exp16_f agree on every float input that is not a signalling NaN (checked on all
 * 2^32 of them), and the kernels only take exps of differences, which are never signalling.
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
   lane: the column loop of the portable mg_xent_short_stats_f on 16-float vectors, the columns
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
