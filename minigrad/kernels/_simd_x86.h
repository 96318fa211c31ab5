/* float32 loops written with x86 vector intrinsics, included by _simd.h on builds whose target
 * has them (-march=native on such a CPU); every other build keeps the portable loops of
 * _simd_typed.h, which compute the same values.
 *
 * Why intrinsics here: gcc's auto-vectorised versions of these loops were measured 1.4-1.8x
 * slower (float32, one thread, Zen 4, gcc 12):
 * - exp: the portable mg_exp_f needs two exponent factors and NaN/clamp selects to round
 *   denormal results once; AVX-512's scalef does the scaling (with that single rounding) in one
 *   instruction: 0.21 against 0.38 ns per element. The polynomial, the Cody-Waite split and the
 *   clamps are those of mg_exp_f: the results are the bits of the auto-vectorised portable
 *   loop (checked on a million values over the whole float range, NaN, inf and denormal
 *   results included); a scalar call of mg_exp_f, contracted differently, may differ by an ulp.
 * - row sums: gcc converts 8 floats to double through a 256-bit load and a lane shuffle; a
 *   128-bit load converted straight to 4 doubles is 42 -> 55 GB/s. The 32 lanes and their fold
 *   are those of mg_row_sum_f, so the sums are the same bits.
 * - max/min of a row: vmaxps is one instruction where the portable compare-select is two, and
 *   NaN is tracked with one unordered compare instead of x * 0 sums: 31 -> 49 GB/s.
 */
#ifndef MG_SIMD_X86_H
#define MG_SIMD_X86_H

#include <immintrin.h>

#if MG_X86_AVX2

/* The 32 float64 lanes of mg_fold held as eight vectors of four (a[q] holds lanes 4q..4q+3),
   folded in mg_fold's order: lane j += lane j + w for w = 16, 8, 4, 2, 1. */
static inline double mg_fold_avx2(__m256d *a)
{
    for (int w = 4; w > 0; w /= 2)
        for (int q = 0; q < w; q++) a[q] = _mm256_add_pd(a[q], a[q + w]);
    __m128d v = _mm_add_pd(_mm256_castpd256_pd128(a[0]), _mm256_extractf128_pd(a[0], 1));
    return _mm_cvtsd_f64(v) + _mm_cvtsd_f64(_mm_unpackhi_pd(v, v));
}

/* sum_i x[i] over a contiguous row (same lanes and fold as the portable loop) */
static inline double mg_row_sum_f(const float *x, Py_ssize_t n)
{
    __m256d a[8];
    for (int q = 0; q < 8; q++) a[q] = _mm256_setzero_pd();
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES)
        for (int q = 0; q < 8; q++)
            a[q] = _mm256_add_pd(a[q], _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * q)));
    double s = mg_fold_avx2(a);
    for (; i < n; i++) s += (double)x[i];
    return s;
}

/* The largest (sign = 1) or smallest (sign = -1) element of a row, as a shift for exp-sums: a
   row holding NaN may return NaN or not (its exp-sum is NaN either way). n >= 1. */
static inline float mg_row_max_f(const float *x, Py_ssize_t n, int sign)
{
    if (n < 32) {
        float m = x[0];
        for (Py_ssize_t i = 1; i < n; i++) m = (sign > 0 ? x[i] > m : x[i] < m) ? x[i] : m;
        return m;
    }
    __m256 a[4];
    for (int q = 0; q < 4; q++) a[q] = _mm256_loadu_ps(x + 8 * q);
    Py_ssize_t i = 32;
    if (sign > 0) {
        for (; i + 32 <= n; i += 32)
            for (int q = 0; q < 4; q++) a[q] = _mm256_max_ps(_mm256_loadu_ps(x + i + 8 * q), a[q]);
        for (int q = 1; q < 4; q++) a[0] = _mm256_max_ps(a[q], a[0]);
    } else {
        for (; i + 32 <= n; i += 32)
            for (int q = 0; q < 4; q++) a[q] = _mm256_min_ps(_mm256_loadu_ps(x + i + 8 * q), a[q]);
        for (int q = 1; q < 4; q++) a[0] = _mm256_min_ps(a[q], a[0]);
    }
    float t[8];
    _mm256_storeu_ps(t, a[0]);
    float m = t[0];
    for (int j = 1; j < 8; j++) m = (sign > 0 ? t[j] > m : t[j] < m) ? t[j] : m;
    for (; i < n; i++) m = (sign > 0 ? x[i] > m : x[i] < m) ? x[i] : m;
    return m;
}

/* The scalar tail of the vector max/min passes below and in _simd_reduce.h: folds x[i..n) into
   *m (max for sign = 1, min for -1) and returns whether one of those values was NaN. */
static inline int mg_extreme_tail_f(const float *x, Py_ssize_t i, Py_ssize_t n, int sign,
                                    float *m)
{
    int bad = 0;
    float best = *m;
    for (; i < n; i++) {
        float v = x[i];
        bad |= v != v;
        best = (sign > 0 ? v > best : v < best) ? v : best;
    }
    *m = best;
    return bad;
}

/* max (sign = 1) or min (sign = -1) of a row and the index of its first occurrence, NaN first
   (see the portable mg_row_extreme_f). One pass for the value and for NaN, a second one for the
   first position equal to it, which stops at the first hit. */
static inline float mg_row_extreme_f(const float *x, Py_ssize_t n, int sign, Py_ssize_t *index)
{
    if (n < 2 * MG_LANES)
        return mg_row_extreme_exact_f(x, n, sign, index);
    __m256 a[4], nan = _mm256_setzero_ps();
    for (int q = 0; q < 4; q++) {
        a[q] = _mm256_loadu_ps(x + 8 * q);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a[q], a[q], _CMP_UNORD_Q));
    }
    Py_ssize_t i = 32;
    for (; i + 32 <= n; i += 32) {
        __m256 v[4];
        for (int q = 0; q < 4; q++) v[q] = _mm256_loadu_ps(x + i + 8 * q);
        /* vmaxps/vminps return their second operand when either is NaN: the lanes skip NaN,
           the unordered compares record it */
        if (sign > 0)
            for (int q = 0; q < 4; q++) a[q] = _mm256_max_ps(v[q], a[q]);
        else
            for (int q = 0; q < 4; q++) a[q] = _mm256_min_ps(v[q], a[q]);
        nan = _mm256_or_ps(nan, _mm256_or_ps(_mm256_cmp_ps(v[0], v[1], _CMP_UNORD_Q),
                                             _mm256_cmp_ps(v[2], v[3], _CMP_UNORD_Q)));
    }
    float t[32];
    for (int q = 0; q < 4; q++) _mm256_storeu_ps(t + 8 * q, a[q]);
    float m = t[0];
    for (int j = 1; j < 32; j++) m = (sign > 0 ? t[j] > m : t[j] < m) ? t[j] : m;
    int bad = _mm256_movemask_ps(nan) | mg_extreme_tail_f(x, i, n, sign, &m);
    if (bad)  /* NaN somewhere: the exact loop finds the first one */
        return mg_row_extreme_exact_f(x, n, sign, index);
    __m256 mv = _mm256_set1_ps(m);
    Py_ssize_t b = 0;
    for (; b + 32 <= n; b += 32) {
        /* one bit per element of the block: the lowest set bit is the first hit (a scalar
           walk to it cost as much as the whole max pass) */
        unsigned int hits = 0;
        for (int q = 0; q < 4; q++)
            hits |= (unsigned int)_mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_loadu_ps(x + b + 8 * q), mv, _CMP_EQ_OQ)) << (8 * q);
        if (hits) {
            b += __builtin_ctz(hits);
            break;
        }
    }
    while (x[b] != m) b++;
    *index = b;
    return x[b];  /* of -0.0 and 0.0, the one found first, as argmax picks it */
}

#endif /* MG_X86_AVX2 */

#if MG_X86_AVX512

/* exp of 16 floats x <= 88.8 or NaN (mg_exp16_f clamps from above; callers whose x - max <= 0
   need not): mg_exp_f's Cody-Waite split and degree-7 polynomial, then p * 2^k by scalef (one
   rounding, also for denormal results). Measured against the previous formulation (on all 2^32
   inputs the same bits, NaN included), Sapphire Rapids class, where 512-bit floating-point
   operations share one port:
   - k = rint(x log2 e) is formed by adding and subtracting 1.5 * 2^23, which rounds to the
     nearest integer, ties to even, as rint does, for |x log2 e| < 2^22 (the adds carry
     explicit rounding, so that gcc cannot contract the multiply into the first one): two adds
     in place of roundscale's two-uop instruction, a cross-entropy's exp-sums 6% faster;
   - x < -104 (whose exp rounds to 0, and -inf, for which the polynomial would give NaN) is
     zeroed by the final scalef's mask, from a compare that issues on another port, in place of
     a clamp to -104 (which gave 0 there too): 4% faster.
   A NaN input goes through every step (min returns its second operand when either is NaN) and
   comes out NaN. */
static inline __m512 mg_exp16_upto_f(__m512 x)
{
    const __m512 shifter = _mm512_set1_ps(12582912.0f);
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-104.0f), _CMP_NLT_UQ);
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    __m512 kf = _mm512_sub_round_ps(
        _mm512_add_round_ps(t, shifter, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
        shifter, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, kf);
}

/* exp of 16 floats: mg_exp_f's clamp from above, then mg_exp16_upto_f */
static inline __m512 mg_exp16_f(__m512 x)
{
    return mg_exp16_upto_f(_mm512_min_ps(_mm512_set1_ps(88.8f), x));
}

/* The 32 float64 lanes of mg_fold as four vectors of eight (a[q] holds lanes 8q..8q+7),
   folded in mg_fold's order. */
static inline double mg_fold_avx512(__m512d *a)
{
    a[0] = _mm512_add_pd(a[0], a[2]);
    a[1] = _mm512_add_pd(a[1], a[3]);
    a[0] = _mm512_add_pd(a[0], a[1]);
    double t[8];
    _mm512_storeu_pd(t, a[0]);
    for (int w = 4; w > 0; w /= 2)
        for (int j = 0; j < w; j++) t[j] += t[j + w];
    return t[0];
}

/* a[2q] += the low eight floats of e as doubles, a[2q + 1] += the high eight */
static inline void mg_acc16_avx512(__m512d *a, __m512 e)
{
    a[0] = _mm512_add_pd(a[0], _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    a[1] = _mm512_add_pd(a[1], _mm512_cvtps_pd(_mm256_castpd_ps(
        _mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
}

/* y[i] = exp(x[i]) (y may alias x) */
static inline void mg_exp_array_f(const float *x, float *y, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, mg_exp16_f(_mm512_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = mg_exp_f(x[i]);
}

/* sum_i exp(x[i] - shift) in double (the lanes and fold of the portable loop) */
static inline double mg_row_sumexp_f(const float *x, Py_ssize_t n, float shift)
{
    __m512d a[4];
    for (int q = 0; q < 4; q++) a[q] = _mm512_setzero_pd();
    __m512 s = _mm512_set1_ps(shift);
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        mg_acc16_avx512(a, mg_exp16_f(_mm512_sub_ps(_mm512_loadu_ps(x + i), s)));
        mg_acc16_avx512(a + 2, mg_exp16_f(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), s)));
    }
    double total = mg_fold_avx512(a);
    for (; i < n; i++) total += (double)mg_exp_f(x[i] - shift);
    return total;
}

/* y[i] = exp(x[i] - shift); returns sum_i y[i] in double */
static inline double mg_row_expwrite_f(const float *x, float *y, Py_ssize_t n, float shift)
{
    __m512d a[4];
    for (int q = 0; q < 4; q++) a[q] = _mm512_setzero_pd();
    __m512 s = _mm512_set1_ps(shift);
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        __m512 e0 = mg_exp16_f(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
        __m512 e1 = mg_exp16_f(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), s));
        _mm512_storeu_ps(y + i, e0);
        _mm512_storeu_ps(y + i + 16, e1);
        mg_acc16_avx512(a, e0);
        mg_acc16_avx512(a + 2, e1);
    }
    double total = mg_fold_avx512(a);
    for (; i < n; i++) {
        float e = mg_exp_f(x[i] - shift);
        y[i] = e;
        total += (double)e;
    }
    return total;
}

/* log-softmax backward row: dx[i] = g[i] - exp(y[i]) * total */
static inline void mg_row_logsoftmax_bwd_f(const float *y, const float *g, float *dx,
                                           Py_ssize_t n, float total)
{
    __m512 t = _mm512_set1_ps(total);
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dx + i, _mm512_fnmadd_ps(mg_exp16_f(_mm512_loadu_ps(y + i)), t,
                                                  _mm512_loadu_ps(g + i)));
    for (; i < n; i++) dx[i] = g[i] - mg_exp_f(y[i]) * total;
}

#endif /* MG_X86_AVX512 */

#endif /* MG_SIMD_X86_H */
