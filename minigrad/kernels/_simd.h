/* The SIMD layer shared by every compiled kernel module: inner loops over contiguous memory.
 *
 * Why C: a reduction over a contiguous row written as one Cython loop is a single serial
 * dependency chain (gcc may not reorder floating-point sums), 8-13x slower. Here every row sum
 * is split over MG_LANES independent float64 partial sums (lane j takes the elements i with
 * i % MG_LANES == j), folded in a fixed pairwise order, so a result depends on the data only.
 * `omp simd` on each lane loop is what makes gcc map the lanes onto vector registers (without
 * it gcc 12 half-vectorised the normalization sums, 4.7x slower on 4096 floats); a build without
 * OpenMP ignores the pragma and stays correct. exp is a branch-free polynomial so that loops
 * calling it vectorise too (libm's would not).
 *
 * The typed loops are written once, in _simd_typed.h, with MG_T for the element type and
 * MG_FN(name) for the name, and included twice below: for float (suffix _f) and for double
 * (suffix _d). float data always accumulates in double. No helper allocates or can fail.
 */
#ifndef MG_SIMD_H
#define MG_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <Python.h>

/* One lane width for every loop: 32 float64 lanes (eight AVX2 registers per accumulator).
   Measured against 16 lanes (float32, one thread, interleaved runs): with 16, max along the
   last axis of (1024, 1024) was 4-5x slower, logsumexp 2x and softmax 1.4-1.6x, while the
   normalization kernels did not change beyond noise; so 32 for all. */
#define MG_LANES 32

/* Sum of the MG_LANES accumulators as a tree (halving), which vectorises; a plain loop would
   be a chain of MG_LANES dependent adds, as slow as the whole row for short rows. Overwrites
   `lane`. */
static inline double mg_fold(double *lane)
{
    for (int w = MG_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) lane[j] += lane[j + w];
    return lane[0];
}

/* ---------------------------------------------------------------------------------------- */
/* exp: x = k ln2 + r with |r| <= ln2/2, exp(x) = 2^k * p(r). 2^k is applied as two factors   */
/* 2^(k/2) * 2^(k - k/2) so that results in the denormal range round once, like libm.         */
/* Out-of-range inputs are fixed up with selects (compiled to blends), never branches.       */

static inline float mg_exp_f(float x)
{
    /* Clamping to [-104, 88.8] is enough for the edges: the scaled polynomial then rounds to 0
       below exp's underflow and overflows to +inf above, so only NaN needs a final select. */
    float xc = (x < -104.0f) ? -104.0f : x;
    xc = (xc > 88.8f) ? 88.8f : xc;
    float kf = rintf(xc * 1.44269504088896341f);
    float r = xc - kf * 0.693359375f;         /* Cody-Waite: ln2 split in two parts */
    r = r - kf * -2.12194440e-4f;
    /* Taylor to degree 7 is within 5e-9 on |r| <= 0.347, below float32's half ulp */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t k = (int32_t)kf;
    int32_t k1 = k >> 1;
    int32_t k2 = k - k1;
    int32_t b1 = (k1 + 127) << 23, b2 = (k2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float y = p * s1 * s2;
    return (x == x) ? y : x;
}

static inline double mg_exp_d(double x)
{
    /* same scheme as mg_exp_f; the clamps sit just beyond underflow (-745.13) and overflow */
    double xc = (x < -746.0) ? -746.0 : x;
    xc = (xc > 709.8) ? 709.8 : xc;
    double kf = rint(xc * 1.44269504088896338700);
    double r = xc - kf * 6.93147180369123816490e-01;  /* fdlibm's ln2_hi / ln2_lo */
    r = r - kf * 1.90821492927058770002e-10;
    /* Taylor to degree 13 is within 4e-18 on |r| <= 0.347 */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t k = (int64_t)kf;
    int64_t k1 = k >> 1;
    int64_t k2 = k - k1;
    int64_t b1 = (k1 + 1023) << 52, b2 = (k2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    double y = p * s1 * s2;
    return (x == x) ? y : x;
}


/* erfc(z) by Numerical Recipes' Chebyshev fit (fractional error below 1.2e-7, float32's
   resolution), the float32 erfc of GELU: in float arithmetic with the polynomial exp, so that a
   loop over it vectorises, where libm's erfcf is one call per element. */
static inline float mg_erfc_fit_f(float z)
{
    float t = 1.0f / (1.0f + 0.5f * fabsf(z));
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float e = t * mg_exp_f(-z * z + p);
    return z >= 0.0f ? e : 2.0f - e;
}

/* GELU forward, float32: cdf = erfc(-x / sqrt 2) / 2, y = x * cdf */
static inline void mg_gelu_fwd_f(const float *restrict x, float *restrict y,
                                 float *restrict cdf, Py_ssize_t n)
{
    #pragma omp simd
    for (Py_ssize_t i = 0; i < n; i++) {
        float c = 0.5f * mg_erfc_fit_f(-x[i] * 0.70710678f);
        cdf[i] = c;
        y[i] = x[i] * c;
    }
}

/* GELU forward, float64, through libm's erfc (not vectorisable: one call per element) */
static inline void mg_gelu_fwd_d(const double *restrict x, double *restrict y,
                                 double *restrict cdf, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        double c = 0.5 * erfc(-x[i] * 0.70710678118654752440);
        cdf[i] = c;
        y[i] = x[i] * c;
    }
}

/* Builds for a CPU with AVX2+FMA (and AVX-512) replace some float loops by the intrinsics of
   _simd_x86.h (same values, faster); MINIGRAD_PORTABLE builds keep the loops below. */
#if defined(__AVX2__) && defined(__FMA__)
#define MG_X86_AVX2 1
#else
#define MG_X86_AVX2 0
#endif
#if MG_X86_AVX2 && defined(__AVX512F__)
#define MG_X86_AVX512 1
#else
#define MG_X86_AVX512 0
#endif

#define MG_T float
#define MG_FN(name) name##_f
#define MG_SKIP_AVX2 MG_X86_AVX2
#define MG_SKIP_AVX512 MG_X86_AVX512
#include "_simd_typed.h"
#undef MG_T
#undef MG_FN
#undef MG_SKIP_AVX2
#undef MG_SKIP_AVX512

#define MG_T double
#define MG_FN(name) name##_d
#define MG_SKIP_AVX2 0
#define MG_SKIP_AVX512 0
#include "_simd_typed.h"
#undef MG_T
#undef MG_FN
#undef MG_SKIP_AVX2
#undef MG_SKIP_AVX512

#include "_simd_x86.h"
#include "_simd_reduce.h"

#endif /* MG_SIMD_H */
