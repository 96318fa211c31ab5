/* Faster float32 loops for the reductions of _reduce.pyx: row and column sums with float64
 * accumulators, the shifted moments of a row (var, and LayerNorm's statistics), and max/min of a
 * row with its index. Each returns the bits of the portable loop it replaces (named below), so
 * results depend neither on the code path (one thread or several) nor on the build, among builds
 * for CPUs with FMA (gcc contracts the portable loops' a * b + c into FMAs there; a build without
 * FMA rounds those products separately, and its results differ in the last bits).
 *
 * Sums. On Zen 4 a float64-accumulating sum of float32 data with vector adds (the loop of
 * _simd_x86.h) runs at about four floats per cycle, 50-55 GB/s, half of what L2 delivers, while
 * the conversions alone (vcvtps2pd, results or-ed together) reach 92 GB/s: the adds and the
 * conversions evidently compete for the same execution ports. x + a and fma(x, 1.0, a) round
 * the same exact value once, so they are the same bits, and the FMA issues on the multiply
 * ports instead. Measured (one thread, (256, 512) float32 rows in L2, min of 41 rounds): 9.8 us
 * with adds against 6.2 us with FMAs, 85 GB/s.
 * The lanes and their fold are those of mg_row_sum_f, the order of the column sums that of
 * mg_col_sum_f. Builds without AVX2+FMA use those loops.
 *
 * Max/min of a row (AVX-512 builds; others use mg_row_extreme_f): the two passes of
 * mg_row_extreme_f (the extreme value and NaN, then the first position holding it) on 16-float
 * vectors, with the compare masks of AVX-512 in place of movemask: (1024, 1024) rows 89 -> 56 us,
 * (256, 512) 12.7 -> 6.4 us, one thread, min of 41 rounds.
 */
#ifndef MG_SIMD_REDUCE_H
#define MG_SIMD_REDUCE_H

#if MG_X86_AVX2

/* How the float64 sums below add a converted vector into an accumulator: x + a, or fma(x, 1.0, a),
   which rounds the same exact value once (the same bits). Which is faster depends on the CPU's
   ports. AMD Zen (gcc's tuning for it): FMAs, see above. Others, Intel measured (Sapphire Rapids
   class, one thread, min of 200 rounds, float32 (256, 512) in L2): adds, rows 6.6 us against 8.1
   with FMAs, columns (axis 0) 6.4 against 7.2. (The conversions and adds on 512-bit vectors
   were slower there than on 256-bit ones: rows 7.3, columns 7.0.) */
#if defined(__tune_znver1__) || defined(__tune_znver2__) || defined(__tune_znver3__) \
    || defined(__tune_znver4__) || defined(__tune_znver5__)
#define MG_SUM_BY_FMA 1
#else
#define MG_SUM_BY_FMA 0
#endif

/* a + v as the sums here add (MG_SUM_BY_FMA) */
static inline __m256d mg_acc4(__m256d a, __m256d v)
{
#if MG_SUM_BY_FMA
    return _mm256_fmadd_pd(v, _mm256_set1_pd(1.0), a);
#else
    return _mm256_add_pd(v, a);
#endif
}

/* the fold of mg_fold_avx2 on eight named accumulators (lane j += lane j + w, w = 16 ... 1) */
static inline double mg_fold8_avx2(__m256d a0, __m256d a1, __m256d a2, __m256d a3, __m256d a4,
                                   __m256d a5, __m256d a6, __m256d a7)
{
    a0 = _mm256_add_pd(a0, a4);
    a1 = _mm256_add_pd(a1, a5);
    a2 = _mm256_add_pd(a2, a6);
    a3 = _mm256_add_pd(a3, a7);
    a0 = _mm256_add_pd(a0, a2);
    a1 = _mm256_add_pd(a1, a3);
    a0 = _mm256_add_pd(a0, a1);
    __m128d v = _mm_add_pd(_mm256_castpd256_pd128(a0), _mm256_extractf128_pd(a0, 1));
    return _mm_cvtsd_f64(v) + _mm_cvtsd_f64(_mm_unpackhi_pd(v, v));
}

/* a_q += x[4q .. 4q + 3] as doubles, q = 0 .. 7 (32 floats) */
#define MG_SUM32(x, a0, a1, a2, a3, a4, a5, a6, a7) do { \
        a0 = mg_acc4(a0, _mm256_cvtps_pd(_mm_loadu_ps((x)))); \
        a1 = mg_acc4(a1, _mm256_cvtps_pd(_mm_loadu_ps((x) + 4))); \
        a2 = mg_acc4(a2, _mm256_cvtps_pd(_mm_loadu_ps((x) + 8))); \
        a3 = mg_acc4(a3, _mm256_cvtps_pd(_mm_loadu_ps((x) + 12))); \
        a4 = mg_acc4(a4, _mm256_cvtps_pd(_mm_loadu_ps((x) + 16))); \
        a5 = mg_acc4(a5, _mm256_cvtps_pd(_mm_loadu_ps((x) + 20))); \
        a6 = mg_acc4(a6, _mm256_cvtps_pd(_mm_loadu_ps((x) + 24))); \
        a7 = mg_acc4(a7, _mm256_cvtps_pd(_mm_loadu_ps((x) + 28))); \
    } while (0)

/* sum_i x[i] over a contiguous row: mg_row_sum_f's 32 lanes (a_q holds lanes 4q..4q+3) and
   mg_fold_avx2's order, with the accumulators in named registers: held in an array, gcc stored
   them to the stack for the fold, which cost a fifth of the time on rows of 512 (7.5 against
   6.2 us for (256, 512), 0.61 against 0.42 us for (64, 128)). */
static inline double mg_row_sum_fast_f(const float *x, Py_ssize_t n)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
            a7 = a0;
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES)
        MG_SUM32(x + i, a0, a1, a2, a3, a4, a5, a6, a7);
    double s = mg_fold8_avx2(a0, a1, a2, a3, a4, a5, a6, a7);
    for (; i < n; i++) s += (double)x[i];
    return s;
}

/* Rows pair up in mg_rows_sum_fast_f only while all of them take at most this many bytes:
   two rows at once helped data in L2 and hurt data streamed from L3 (below). */
#define MG_PAIRED_ROWS_MAX_BYTES (512 * 1024)

/* out[r] = (float)(sum of row r / d) for `rows` contiguous rows of n floats, each row summed
   as mg_row_sum_fast_f sums it. With AVX-512's 32 vector registers two rows can go through
   the loop together, sixteen accumulators, so that one row's fold overlaps the other's loads.
   One thread, min of 41 rounds, pairs against single rows: (256, 512) 5.8 vs 6.2 us,
   (128, 1024) 5.3 vs 5.6, (64, 128) and (512, 256) the same; but from L3 (4 MiB and more)
   (1024, 1024) 55 vs 47, (512, 2048) 54 vs 45, (4096, 256) 76 vs 54. */
static inline void mg_rows_sum_fast_f(const float *x, Py_ssize_t rows, Py_ssize_t n, double d,
                                      float *out)
{
    Py_ssize_t r = 0;
#if MG_X86_AVX512
    Py_ssize_t bytes = rows * n * (Py_ssize_t)sizeof(float);
    Py_ssize_t paired = bytes <= MG_PAIRED_ROWS_MAX_BYTES ? rows : 0;
    for (; r + 2 <= paired; r += 2) {
        const float *x0 = x + r * n, *x1 = x0 + n;
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0,
                a6 = a0, a7 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0,
                b6 = a0, b7 = a0;
        Py_ssize_t i = 0;
        for (; i + MG_LANES <= n; i += MG_LANES) {
            MG_SUM32(x0 + i, a0, a1, a2, a3, a4, a5, a6, a7);
            MG_SUM32(x1 + i, b0, b1, b2, b3, b4, b5, b6, b7);
        }
        double s0 = mg_fold8_avx2(a0, a1, a2, a3, a4, a5, a6, a7);
        double s1 = mg_fold8_avx2(b0, b1, b2, b3, b4, b5, b6, b7);
        for (; i < n; i++) {
            s0 += (double)x0[i];
            s1 += (double)x1[i];
        }
        out[r] = (float)(s0 / d);
        out[r + 1] = (float)(s1 / d);
    }
#endif
    for (; r < rows; r++) out[r] = (float)(mg_row_sum_fast_f(x + r * n, n) / d);
}

/* acc[k] += ((x0[k] + x1[k]) + (x2[k] + x3[k])) for the four rows x, x + stride, ... (rows == 4),
   or row by row (rows < 4): mg_col_sum_f's order, adding as MG_SUM_BY_FMA says */
static inline void mg_col_sum_fast_f(const float *x, Py_ssize_t stride, int rows, double *acc,
                                    Py_ssize_t n)
{
    if (rows != 4) {
        mg_col_sum_f(x, stride, rows, acc, n);
        return;
    }
    const float *x0 = x, *x1 = x + stride, *x2 = x + 2 * stride, *x3 = x + 3 * stride;
    Py_ssize_t k = 0;
    for (; k + 4 <= n; k += 4) {
        __m256d d0 = _mm256_cvtps_pd(_mm_loadu_ps(x0 + k));
        __m256d d1 = _mm256_cvtps_pd(_mm_loadu_ps(x1 + k));
        __m256d d2 = _mm256_cvtps_pd(_mm_loadu_ps(x2 + k));
        __m256d d3 = _mm256_cvtps_pd(_mm_loadu_ps(x3 + k));
        __m256d t = mg_acc4(mg_acc4(d1, d0), mg_acc4(d3, d2));
        _mm256_storeu_pd(acc + k, mg_acc4(_mm256_loadu_pd(acc + k), t));
    }
    for (; k < n; k++)
        acc[k] += ((double)x0[k] + (double)x1[k]) + ((double)x2[k] + (double)x3[k]);
}

/* acc[k] += rows x, x + stride, ... (rows <= 8) as two sweeps of mg_col_sum_fast_f, rows 0-3
   then rows 4.., in one pass when rows == 8: acc = (acc + t0) + t1 with t0 and t1 the two groups'
   sums (the same roundings in the same order), each accumulator loaded and stored once per
   eight rows. Intel (Sapphire Rapids class), one thread, (256, 512) along axis 0, min of 200
   rounds: 6.4 us against 8.4 for sweeps of four rows. */
static inline void mg_col_sum8_fast_f(const float *x, Py_ssize_t stride, int rows, double *acc,
                                     Py_ssize_t n)
{
    if (rows != 8) {
        mg_col_sum_fast_f(x, stride, rows < 4 ? rows : 4, acc, n);
        if (rows > 4)
            mg_col_sum_fast_f(x + 4 * stride, stride, rows - 4, acc, n);
        return;
    }
    const float *p[8];
    for (int r = 0; r < 8; r++) p[r] = x + r * stride;
    Py_ssize_t k = 0;
    for (; k + 4 <= n; k += 4) {
        __m256d d[8];
        for (int r = 0; r < 8; r++) d[r] = _mm256_cvtps_pd(_mm_loadu_ps(p[r] + k));
        __m256d t0 = mg_acc4(mg_acc4(d[1], d[0]), mg_acc4(d[3], d[2]));
        __m256d t1 = mg_acc4(mg_acc4(d[5], d[4]), mg_acc4(d[7], d[6]));
        _mm256_storeu_pd(acc + k, mg_acc4(mg_acc4(_mm256_loadu_pd(acc + k), t0), t1));
    }
    for (; k < n; k++) {
        acc[k] += ((double)p[0][k] + (double)p[1][k]) + ((double)p[2][k] + (double)p[3][k]);
        acc[k] += ((double)p[4][k] + (double)p[5][k]) + ((double)p[6][k] + (double)p[7][k]);
    }
}

#else

static inline double mg_row_sum_fast_f(const float *x, Py_ssize_t n)
{
    return mg_row_sum_f(x, n);
}

static inline void mg_col_sum_fast_f(const float *x, Py_ssize_t stride, int rows, double *acc,
                                    Py_ssize_t n)
{
    mg_col_sum_f(x, stride, rows, acc, n);
}

static inline void mg_rows_sum_fast_f(const float *x, Py_ssize_t rows, Py_ssize_t n, double d,
                                      float *out)
{
    for (Py_ssize_t r = 0; r < rows; r++) out[r] = (float)(mg_row_sum_f(x + r * n, n) / d);
}

static inline void mg_col_sum8_fast_f(const float *x, Py_ssize_t stride, int rows, double *acc,
                                     Py_ssize_t n)
{
    mg_col_sum_f(x, stride, rows < 4 ? rows : 4, acc, n);
    if (rows > 4)
        mg_col_sum_f(x + 4 * stride, stride, rows - 4, acc, n);
}

#endif /* MG_X86_AVX2 */

#if MG_X86_AVX512

/* mg_fold's order on the 32 lanes held as four vectors of eight (a_q holds lanes 8q..8q+7):
   lane j += lane j + w for w = 16 (a0 += a2, a1 += a3), 8 (a0 += a1), then 4, 2, 1 inside a0 */
static inline double mg_fold4_avx512(__m512d a0, __m512d a1, __m512d a2, __m512d a3)
{
    a0 = _mm512_add_pd(_mm512_add_pd(a0, a2), _mm512_add_pd(a1, a3));
    __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(a0), _mm512_extractf64x4_pd(a0, 1));
    __m128d v = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(v) + _mm_cvtsd_f64(_mm_unpackhi_pd(v, v));
}

/* the first `left` of 8 lanes (all of them from 8 on) */
static inline __mmask8 mg_mask8(Py_ssize_t left)
{
    return left >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << left) - 1);
}

/* d = x[0..7] - c under mask m, added into lanes a and, squared, into b */
static inline void mg_moments8(const float *x, __mmask8 m, __m512d c, __m512d *a, __m512d *b)
{
    __m512d d = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x)), c);
    *a = _mm512_mask_add_pd(*a, m, *a, d);
    *b = _mm512_mask3_fmadd_pd(d, d, *b, m);
}

/* Shifted moments of a row, the bits of mg_row_moments_f: s1 += sum (x - c), s2 += sum (x - c)^2
   over its 32 lanes (four vectors of eight doubles; the last n % 32 elements go to lanes 0, 1,
   ... as in the portable loop, here by masks) and mg_fold's order. One thread, (256, 512)
   rows in L2, min of 200 rounds: 11.9 us against 19.0 for the auto-vectorised loop (256-bit,
   whose conversions cost as much as these 512-bit ones). Used by var and by LayerNorm. */
static inline void mg_row_moments_fast_f(const float *x, Py_ssize_t n, double c, double *s1,
                                         double *s2)
{
    const __m512d cv = _mm512_set1_pd(c);
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0,
            b3 = a0;
    Py_ssize_t i = 0;
    for (; i + MG_LANES <= n; i += MG_LANES) {
        mg_moments8(x + i, 0xFF, cv, &a0, &b0);
        mg_moments8(x + i + 8, 0xFF, cv, &a1, &b1);
        mg_moments8(x + i + 16, 0xFF, cv, &a2, &b2);
        mg_moments8(x + i + 24, 0xFF, cv, &a3, &b3);
    }
    /* the tail: lanes 0, 1, ... take the last n - i < 32 elements */
    Py_ssize_t left = n - i;
    if (left > 0) mg_moments8(x + i, mg_mask8(left), cv, &a0, &b0);
    if (left > 8) mg_moments8(x + i + 8, mg_mask8(left - 8), cv, &a1, &b1);
    if (left > 16) mg_moments8(x + i + 16, mg_mask8(left - 16), cv, &a2, &b2);
    if (left > 24) mg_moments8(x + i + 24, mg_mask8(left - 24), cv, &a3, &b3);
    *s1 += mg_fold4_avx512(a0, a1, a2, a3);
    *s2 += mg_fold4_avx512(b0, b1, b2, b3);
}

#else

static inline void mg_row_moments_fast_f(const float *x, Py_ssize_t n, double c, double *s1,
                                         double *s2)
{
    mg_row_moments_f(x, n, c, s1, s2);
}

#endif /* MG_X86_AVX512 */

#if MG_X86_AVX512

/* max (sign = 1) or min (sign = -1) of a row and the index of its first occurrence, NaN first:
   the results of mg_row_extreme_f. n >= 1. */
static inline float mg_row_extreme_fast_f(const float *x, Py_ssize_t n, int sign,
                                          Py_ssize_t *index)
{
    if (n < 64)
        return mg_row_extreme_exact_f(x, n, sign, index);
    __m512 a0 = _mm512_loadu_ps(x), a1 = _mm512_loadu_ps(x + 16);
    __m512 a2 = _mm512_loadu_ps(x + 32), a3 = _mm512_loadu_ps(x + 48);
    __mmask16 nan = _mm512_cmp_ps_mask(a0, a1, _CMP_UNORD_Q)
                    | _mm512_cmp_ps_mask(a2, a3, _CMP_UNORD_Q);
    Py_ssize_t i = 64;
    for (; i + 64 <= n; i += 64) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        __m512 v2 = _mm512_loadu_ps(x + i + 32), v3 = _mm512_loadu_ps(x + i + 48);
        /* vmaxps/vminps return their second operand when either is NaN: the lanes skip NaN,
           the unordered compares record it */
        if (sign > 0) {
            a0 = _mm512_max_ps(v0, a0);
            a1 = _mm512_max_ps(v1, a1);
            a2 = _mm512_max_ps(v2, a2);
            a3 = _mm512_max_ps(v3, a3);
        } else {
            a0 = _mm512_min_ps(v0, a0);
            a1 = _mm512_min_ps(v1, a1);
            a2 = _mm512_min_ps(v2, a2);
            a3 = _mm512_min_ps(v3, a3);
        }
        nan |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v2, v3, _CMP_UNORD_Q);
    }
    float m;
    if (sign > 0)
        m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3)));
    else
        m = _mm512_reduce_min_ps(_mm512_min_ps(_mm512_min_ps(a0, a1), _mm512_min_ps(a2, a3)));
    int bad = (nan != 0) | mg_extreme_tail_f(x, i, n, sign, &m);
    if (bad)  /* NaN somewhere: the exact loop finds the first one */
        return mg_row_extreme_exact_f(x, n, sign, index);
    /* the first position equal to m, 64 elements (one bit each) per test */
    __m512 mv = _mm512_set1_ps(m);
    Py_ssize_t b = 0;
    for (; b + 64 <= n; b += 64) {
        uint64_t hits = (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + b), mv, _CMP_EQ_OQ)
            | (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + b + 16), mv, _CMP_EQ_OQ) << 16
            | (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + b + 32), mv, _CMP_EQ_OQ) << 32
            | (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + b + 48), mv, _CMP_EQ_OQ) << 48;
        if (hits) {
            b += __builtin_ctzll(hits);
            break;
        }
    }
    while (x[b] != m) b++;
    *index = b;
    return x[b];  /* of -0.0 and 0.0, the one found first, as argmax picks it */
}

#else

static inline float mg_row_extreme_fast_f(const float *x, Py_ssize_t n, int sign,
                                          Py_ssize_t *index)
{
    return mg_row_extreme_f(x, n, sign, index);
}

#endif /* MG_X86_AVX512 */

#endif /* MG_SIMD_REDUCE_H */
