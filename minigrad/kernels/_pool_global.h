/* Global average pooling of small planes (_pool_adaptive.pxi): the mean of each plane of S
 * values, S below GLOBAL_ROW_SUM_MIN (larger planes take _simd.h's row sums).
 *
 * The sum is the one the scalar loop defined: four float64 partial sums a_j over the values at
 * positions k = j mod 4 (whole runs of four, in order from 0.0), the last S mod 4 values added
 * to a_0, then (a_0 + a_1) + (a_2 + a_3). The four partial sums are the lanes of one vector of
 * four doubles here (the same additions, lane by lane), so a plane costs a few vector additions
 * instead of S scalar ones. Then the mean: s / S, or s * (1 / S) when S is a power of two, the
 * same value (1 / S is then exact and both round the same quotient) without a division per
 * plane. Measured, the whole forward call on 64x32x4x4 float32 (one thread, min of 9x500):
 * 7.7 us with the scalar loop and its divisions, 5.0 us with these (8.8 with gcc's vector
 * extensions, whose float-to-double conversions of four values took two half conversions and
 * a lane insert, hence the intrinsics on x86).
 */
#ifndef MG_POOL_GLOBAL_H
#define MG_POOL_GLOBAL_H

#include <string.h>
#include <Python.h>

#if defined(__AVX__)
#include <immintrin.h>

/* float32: four values loaded as 128 bits and converted straight to four doubles (gcc's
   vector extensions went through two half conversions and a lane insert, or the stack) */
static inline double mg_global_sum_f(const float *x, Py_ssize_t n)
{
    __m256d acc = _mm256_setzero_pd();
    Py_ssize_t k = 0;
    for (; k + 4 <= n; k += 4)
        acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm_loadu_ps(x + k)));
    __m128d lo = _mm256_castpd256_pd128(acc), hi = _mm256_extractf128_pd(acc, 1);
    double a0 = _mm_cvtsd_f64(lo);
    for (; k < n; k++)
        a0 += x[k];
    return (a0 + _mm_cvtsd_f64(_mm_unpackhi_pd(lo, lo)))
           + (_mm_cvtsd_f64(hi) + _mm_cvtsd_f64(_mm_unpackhi_pd(hi, hi)));
}

static inline double mg_global_sum_d(const double *x, Py_ssize_t n)
{
    __m256d acc = _mm256_setzero_pd();
    Py_ssize_t k = 0;
    for (; k + 4 <= n; k += 4)
        acc = _mm256_add_pd(acc, _mm256_loadu_pd(x + k));
    __m128d lo = _mm256_castpd256_pd128(acc), hi = _mm256_extractf128_pd(acc, 1);
    double a0 = _mm_cvtsd_f64(lo);
    for (; k < n; k++)
        a0 += x[k];
    return (a0 + _mm_cvtsd_f64(_mm_unpackhi_pd(lo, lo)))
           + (_mm_cvtsd_f64(hi) + _mm_cvtsd_f64(_mm_unpackhi_pd(hi, hi)));
}
#else
/* plain C: the four partial sums as four variables */
#define MG_GLOBAL_SUM(NAME, T)                                                                \
static inline double NAME(const T *x, Py_ssize_t n)                                          \
{                                                                                             \
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;                                            \
    Py_ssize_t k = 0;                                                                         \
    for (; k + 4 <= n; k += 4) {                                                              \
        a0 += x[k];                                                                           \
        a1 += x[k + 1];                                                                       \
        a2 += x[k + 2];                                                                       \
        a3 += x[k + 3];                                                                       \
    }                                                                                         \
    for (; k < n; k++)                                                                        \
        a0 += x[k];                                                                           \
    return (a0 + a1) + (a2 + a3);                                                             \
}
MG_GLOBAL_SUM(mg_global_sum_f, float)
MG_GLOBAL_SUM(mg_global_sum_d, double)
#endif

/* y[p] = the mean of plane p (S values at x + p S) for planes [p0, p1). */
#define MG_GLOBAL_MEANS(NAME, SUM, T)                                                         \
static void NAME(const T *x, T *y, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t S)               \
{                                                                                             \
    double inv = 1.0 / (double)S;                                                             \
    if ((S & (S - 1)) == 0) {  /* a power of two: 1 / S exact */                              \
        for (Py_ssize_t p = p0; p < p1; p++)                                                  \
            y[p] = (T)(SUM(x + p * S, S) * inv);                                              \
    } else {                                                                                  \
        for (Py_ssize_t p = p0; p < p1; p++)                                                  \
            y[p] = (T)(SUM(x + p * S, S) / (double)S);                                        \
    }                                                                                         \
}
MG_GLOBAL_MEANS(mg_global_means_f, mg_global_sum_f, float)
MG_GLOBAL_MEANS(mg_global_means_d, mg_global_sum_d, double)

#endif
