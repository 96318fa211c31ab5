/* The float32 row loops of LayerNorm and RMSNorm (_norm_layer.pxi) on AVX-512: the write passes
 * of the forward and the backward, and the backward's sums. Each computes, element by element
 * and lane by lane, what its portable loop in _simd_typed.h computes (named below), with the
 * same operations in the same order and the same FMA contractions, so the results are the same
 * bits whichever build ran them. Builds without AVX-512 call the portable loops.
 *
 * Why: gcc vectorises the portable loops with 256-bit vectors on this target, and on Intel
 * (Sapphire Rapids class) a 512-bit float -> double conversion costs what a 256-bit one costs,
 * while the conversions are most of the work of the float64 sums. One thread, (256, 512)
 * float32 rows in L2, the row loops alone in a C loop, min of 200 rounds, portable against
 * these loops: forward (moments of _simd_reduce.h and the write pass) 29.8 -> 19.3 us,
 * backward (sums and the dx pass) 61.7 -> 36.6 us. The tail of a row (n % 16 elements, or
 * n % 32 for the sums' lanes) goes through masked loads and stores; the write passes run
 * unmasked vectors before it (a mask made per vector cost six scalar instructions each:
 * LayerNorm (256, 512) float32, same-process medians, forward 33.3 -> 31.4 us, backward
 * 60.0 -> 56.5 us).
 */
#ifndef MG_SIMD_LAYERNORM_H
#define MG_SIMD_LAYERNORM_H

#include "_simd.h"

#if MG_X86_AVX512

/* the first `left` of 16 lanes (all of them from 16 on) */
static inline __mmask16 mg_mask16(Py_ssize_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

/* One LayerNorm sample, mg_layernorm_row_f: y = ((x - mean_hi) - mean_lo) * rstd * gamma + beta,
   the last product and the sum fused, as gcc contracts the portable loop */
static inline void mg_layernorm_row_fast_f(const float *x, Py_ssize_t n, float mean_hi,
                                           float mean_lo, float rstd, const float *gamma,
                                           const float *beta, float *y)
{
    const __m512 mh = _mm512_set1_ps(mean_hi), ml = _mm512_set1_ps(mean_lo);
    const __m512 rs = _mm512_set1_ps(rstd);
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xc = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mh), ml);
        __m512 v = _mm512_fmadd_ps(_mm512_mul_ps(xc, rs), _mm512_loadu_ps(gamma + i),
                                   _mm512_loadu_ps(beta + i));
        _mm512_storeu_ps(y + i, v);
    }
    if (i < n) {  /* the tail, through masks */
        __mmask16 m = mg_mask16(n - i);
        __m512 xc = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mh), ml);
        __m512 v = _mm512_fmadd_ps(_mm512_mul_ps(xc, rs), _mm512_maskz_loadu_ps(m, gamma + i),
                                   _mm512_maskz_loadu_ps(m, beta + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

/* mg_scale_shift_f: y = ((x - mean_hi) - mean_lo) * scale + shift, fused */
static inline void mg_scale_shift_fast_f(const float *x, Py_ssize_t n, float mean_hi,
                                         float mean_lo, float scale, float shift, float *y)
{
    const __m512 mh = _mm512_set1_ps(mean_hi), ml = _mm512_set1_ps(mean_lo);
    const __m512 sc = _mm512_set1_ps(scale), sh = _mm512_set1_ps(shift);
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xc = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mh), ml);
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(xc, sc, sh));
    }
    if (i < n) {
        __mmask16 m = mg_mask16(n - i);
        __m512 xc = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mh), ml);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(xc, sc, sh));
    }
}

/* One LayerNorm sample in the backward, mg_layernorm_dx_row_f:
   dx = (dy * gamma) * rstd + ((x - mean_hi) - mean_lo) * p + q, where gcc fuses the first
   product into the sum with the second and adds q last */
static inline void mg_layernorm_dx_row_fast_f(const float *dy, const float *x, const float *gamma,
                                              Py_ssize_t n, float mean_hi, float mean_lo,
                                              float rstd, float p, float q, float *dx)
{
    const __m512 mh = _mm512_set1_ps(mean_hi), ml = _mm512_set1_ps(mean_lo);
    const __m512 rs = _mm512_set1_ps(rstd), pv = _mm512_set1_ps(p), qv = _mm512_set1_ps(q);
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_mul_ps(_mm512_loadu_ps(dy + i), _mm512_loadu_ps(gamma + i));
        __m512 xc = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mh), ml);
        _mm512_storeu_ps(dx + i, _mm512_add_ps(_mm512_fmadd_ps(g, rs, _mm512_mul_ps(xc, pv)), qv));
    }
    if (i < n) {
        __mmask16 m = mg_mask16(n - i);
        __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + i),
                                 _mm512_maskz_loadu_ps(m, gamma + i));
        __m512 xc = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mh), ml);
        __m512 v = _mm512_add_ps(_mm512_fmadd_ps(g, rs, _mm512_mul_ps(xc, pv)), qv);
        _mm512_mask_storeu_ps(dx + i, m, v);
    }
}

/* Eight lanes (8q .. 8q + 7 of the 32) of mg_layernorm_grad_sums_f for the elements x[0..7]
   under mask m: d = dy, xhat = (x - mean) * rstd, g = d * gamma in float64; a += g,
   b += g * xhat, dgamma += d * xhat, dbeta += d (the last three fused). gamma64 holds gamma
   converted to float64 once per call (exact), a third fewer conversions per element. */
static inline void mg_ln_grad8(const float *dy, const float *x, const double *gamma64,
                               __mmask8 m, __m512d mean, __m512d rstd, double *dgamma,
                               double *dbeta, __m512d *a, __m512d *b)
{
    __m512d d = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, dy));
    __m512d xhat = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x)),
                                               mean), rstd);
    __m512d g = _mm512_mul_pd(d, _mm512_maskz_loadu_pd(m, gamma64));
    *a = _mm512_mask_add_pd(*a, m, *a, g);
    *b = _mm512_mask3_fmadd_pd(g, xhat, *b, m);
    _mm512_mask_storeu_pd(dgamma, m, _mm512_fmadd_pd(d, xhat, _mm512_maskz_loadu_pd(m, dgamma)));
    _mm512_mask_storeu_pd(dbeta, m, _mm512_add_pd(d, _mm512_maskz_loadu_pd(m, dbeta)));
}

/* mg_layernorm_grad_sums_f: sum(g) and sum(g * x_hat) over the sample (its 32 lanes, the last
   n % 32 elements in lanes 0, 1, ..., folded in mg_fold's order), and dy * x_hat and dy added
   into the per-feature dgamma and dbeta. gamma64[i] = (double)gamma[i] (this loop reads only
   gamma64; the portable one only gamma). */
static inline void mg_layernorm_grad_sums_fast_f(const float *dy, const float *x,
                                                 const float *gamma, const double *gamma64,
                                                 Py_ssize_t n, double mean, double rstd,
                                                 double *dgamma, double *dbeta, double *sum_g,
                                                 double *sum_g_xhat)
{
    (void)gamma;
    const __m512d mv = _mm512_set1_pd(mean), rv = _mm512_set1_pd(rstd);
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0,
            b3 = a0;
    Py_ssize_t i = 0;
#define MG_LN_GRAD8(q, m, aq, bq) \
    mg_ln_grad8(dy + i + 8 * (q), x + i + 8 * (q), gamma64 + i + 8 * (q), (m), mv, rv, \
                dgamma + i + 8 * (q), dbeta + i + 8 * (q), &(aq), &(bq))
    for (; i + MG_LANES <= n; i += MG_LANES) {
        MG_LN_GRAD8(0, 0xFF, a0, b0);
        MG_LN_GRAD8(1, 0xFF, a1, b1);
        MG_LN_GRAD8(2, 0xFF, a2, b2);
        MG_LN_GRAD8(3, 0xFF, a3, b3);
    }
    /* the tail: lanes 0, 1, ... take the last n - i < 32 elements */
    Py_ssize_t left = n - i;
    if (left > 0) MG_LN_GRAD8(0, mg_mask8(left), a0, b0);
    if (left > 8) MG_LN_GRAD8(1, mg_mask8(left - 8), a1, b1);
    if (left > 16) MG_LN_GRAD8(2, mg_mask8(left - 16), a2, b2);
    if (left > 24) MG_LN_GRAD8(3, mg_mask8(left - 24), a3, b3);
#undef MG_LN_GRAD8
    *sum_g = mg_fold4_avx512(a0, a1, a2, a3);
    *sum_g_xhat = mg_fold4_avx512(b0, b1, b2, b3);
}

/* mg_ln_grad8 for the same eight features of two consecutive samples (dy0, x0 and dy1, x1):
   each sample's lanes as in mg_ln_grad8, and dgamma and dbeta loaded once, sample 0's terms
   added before sample 1's: the additions of two mg_ln_grad8 calls in their order. */
static inline void mg_ln_grad8_pair(const float *dy0, const float *x0, const float *dy1,
                                    const float *x1, const double *gamma64, __mmask8 m,
                                    __m512d mean0, __m512d rstd0, __m512d mean1, __m512d rstd1,
                                    double *dgamma, double *dbeta, __m512d *a0, __m512d *b0,
                                    __m512d *a1, __m512d *b1)
{
    __m512d gm = _mm512_maskz_loadu_pd(m, gamma64);
    __m512d d0 = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, dy0));
    __m512d xhat0 = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x0)),
                                                mean0), rstd0);
    __m512d g0 = _mm512_mul_pd(d0, gm);
    *a0 = _mm512_mask_add_pd(*a0, m, *a0, g0);
    *b0 = _mm512_mask3_fmadd_pd(g0, xhat0, *b0, m);
    __m512d d1 = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, dy1));
    __m512d xhat1 = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x1)),
                                                mean1), rstd1);
    __m512d g1 = _mm512_mul_pd(d1, gm);
    *a1 = _mm512_mask_add_pd(*a1, m, *a1, g1);
    *b1 = _mm512_mask3_fmadd_pd(g1, xhat1, *b1, m);
    __m512d dg = _mm512_fmadd_pd(d0, xhat0, _mm512_maskz_loadu_pd(m, dgamma));
    _mm512_mask_storeu_pd(dgamma, m, _mm512_fmadd_pd(d1, xhat1, dg));
    __m512d db = _mm512_add_pd(d0, _mm512_maskz_loadu_pd(m, dbeta));
    _mm512_mask_storeu_pd(dbeta, m, _mm512_add_pd(d1, db));
}

/* mg_layernorm_grad_sums_fast_f for the two consecutive samples at dy and dy + n (x, x + n),
   the bits of two calls, sample 0 first: sums[0..1] = sum(g), sum(g * x_hat) of sample 0,
   sums[2..3] those of sample 1. Half the loads and stores of dgamma and dbeta: the loop alone,
   (256, 512) float32, best of 200: 33.9 -> 31.8 us (D = 500: 39.3 -> 32.7 us). */
static inline void mg_layernorm_grad_sums2_fast_f(const float *dy, const float *x,
                                                  const float *gamma, const double *gamma64,
                                                  Py_ssize_t n, double mean0, double rstd0,
                                                  double mean1, double rstd1, double *dgamma,
                                                  double *dbeta, double *sums)
{
    (void)gamma;
    const __m512d m0 = _mm512_set1_pd(mean0), r0 = _mm512_set1_pd(rstd0);
    const __m512d m1 = _mm512_set1_pd(mean1), r1 = _mm512_set1_pd(rstd1);
    __m512d a00 = _mm512_setzero_pd(), a01 = a00, a02 = a00, a03 = a00;
    __m512d b00 = a00, b01 = a00, b02 = a00, b03 = a00;
    __m512d a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512d b10 = a00, b11 = a00, b12 = a00, b13 = a00;
    const float *dy1 = dy + n, *x1 = x + n;
    Py_ssize_t i = 0;
#define MG_LN_GRAD8_PAIR(q, m, A0, B0, A1, B1) \
    mg_ln_grad8_pair(dy + i + 8 * (q), x + i + 8 * (q), dy1 + i + 8 * (q), x1 + i + 8 * (q), \
                     gamma64 + i + 8 * (q), (m), m0, r0, m1, r1, dgamma + i + 8 * (q), \
                     dbeta + i + 8 * (q), &(A0), &(B0), &(A1), &(B1))
    for (; i + MG_LANES <= n; i += MG_LANES) {
        MG_LN_GRAD8_PAIR(0, 0xFF, a00, b00, a10, b10);
        MG_LN_GRAD8_PAIR(1, 0xFF, a01, b01, a11, b11);
        MG_LN_GRAD8_PAIR(2, 0xFF, a02, b02, a12, b12);
        MG_LN_GRAD8_PAIR(3, 0xFF, a03, b03, a13, b13);
    }
    Py_ssize_t left = n - i;
    if (left > 0) MG_LN_GRAD8_PAIR(0, mg_mask8(left), a00, b00, a10, b10);
    if (left > 8) MG_LN_GRAD8_PAIR(1, mg_mask8(left - 8), a01, b01, a11, b11);
    if (left > 16) MG_LN_GRAD8_PAIR(2, mg_mask8(left - 16), a02, b02, a12, b12);
    if (left > 24) MG_LN_GRAD8_PAIR(3, mg_mask8(left - 24), a03, b03, a13, b13);
#undef MG_LN_GRAD8_PAIR
    sums[0] = mg_fold4_avx512(a00, a01, a02, a03);
    sums[1] = mg_fold4_avx512(b00, b01, b02, b03);
    sums[2] = mg_fold4_avx512(a10, a11, a12, a13);
    sums[3] = mg_fold4_avx512(b10, b11, b12, b13);
}

#else

static inline void mg_layernorm_row_fast_f(const float *x, Py_ssize_t n, float mean_hi,
                                           float mean_lo, float rstd, const float *gamma,
                                           const float *beta, float *y)
{
    mg_layernorm_row_f(x, n, mean_hi, mean_lo, rstd, gamma, beta, y);
}

static inline void mg_scale_shift_fast_f(const float *x, Py_ssize_t n, float mean_hi,
                                         float mean_lo, float scale, float shift, float *y)
{
    mg_scale_shift_f(x, n, mean_hi, mean_lo, scale, shift, y);
}

static inline void mg_layernorm_dx_row_fast_f(const float *dy, const float *x, const float *gamma,
                                              Py_ssize_t n, float mean_hi, float mean_lo,
                                              float rstd, float p, float q, float *dx)
{
    mg_layernorm_dx_row_f(dy, x, gamma, n, mean_hi, mean_lo, rstd, p, q, dx);
}

static inline void mg_layernorm_grad_sums_fast_f(const float *dy, const float *x,
                                                 const float *gamma, const double *gamma64,
                                                 Py_ssize_t n, double mean, double rstd,
                                                 double *dgamma, double *dbeta, double *sum_g,
                                                 double *sum_g_xhat)
{
    (void)gamma64;
    mg_layernorm_grad_sums_f(dy, x, gamma, n, mean, rstd, dgamma, dbeta, sum_g, sum_g_xhat);
}

static inline void mg_layernorm_grad_sums2_fast_f(const float *dy, const float *x,
                                                  const float *gamma, const double *gamma64,
                                                  Py_ssize_t n, double mean0, double rstd0,
                                                  double mean1, double rstd1, double *dgamma,
                                                  double *dbeta, double *sums)
{
    (void)gamma64;
    mg_layernorm_grad_sums_f(dy, x, gamma, n, mean0, rstd0, dgamma, dbeta, sums, sums + 1);
    mg_layernorm_grad_sums_f(dy + n, x + n, gamma, n, mean1, rstd1, dgamma, dbeta, sums + 2,
                             sums + 3);
}

#endif /* MG_X86_AVX512 */

#endif /* MG_SIMD_LAYERNORM_H */
