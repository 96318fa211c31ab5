/* BatchNorm's loops over short planes (_norm_batch.pxi): the float64 sums of each column of a
 * (rows, cols) array, and the write passes that apply per-column or per-channel coefficients.
 * The typed loops are written once, in _norm_batch_typed.h, with MG_T for the element type and
 * MG_FN(name) for the name, and included twice below (float: suffix _f, double: suffix _d).
 *
 * Column sums by strips. The sums of one column add its rows in order, one float64 add (and
 * one multiply-add) per value, so a column's result depends only on its own values, whatever
 * columns are summed beside it (or by which thread). A strip of MG_BN_STRIP columns keeps its
 * accumulators in registers while it walks MG_BN_ROWS rows (a sweep of all the columns per
 * row would load and store them every few rows). With float32 data the conversions to float64
 * bound the loop: each 8 values cost one two-uop vcvtps2pd, so 512-bit vectors (MG_BN_WIDE) do
 * twice the work per conversion of the 256-bit ones gcc picks by default. Measured, sums of
 * (64, 1024) float32, one thread, min of 20-30 runs: the sweep of four rows at a time with
 * 256-bit vectors 10.0 us in L2 (17.1 us from memory), the same with 512-bit ones 7.4 us,
 * strips of 32 columns over all 64 rows 6.9 us (27.6 us from memory: 64 rows 4 KiB apart are
 * more streams than the prefetchers follow), over blocks of 16 rows 7.6 us (13.0 from memory;
 * (128, 6272) from memory: sweep 162 us, blocks of 16 rows 157, of 32 249). Strips of 16 or 64
 * columns: the same.
 */
#ifndef MG_NORM_BATCH_H
#define MG_NORM_BATCH_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MG_BN_STRIP 32
#define MG_BN_ROWS 16
#define MG_BN_CACHED (1024 * 1024)

/* Rows per block of the column sums over (rows, cols) data of `bytes` bytes a value (all the
 * arrays read): MG_BN_ROWS while the data fit in half of L2 (2 MiB here); beyond, 4, so that
 * the rows read at a time are as few memory streams as a sweep of four rows (measured above;
 * 64x16x8x8 float64's backward, 1 MiB, was 1.06x slower in blocks of 4). A column's sums do
 * not depend on the blocks: its rows are added in order either way. */
static inline Py_ssize_t mg_bn_row_block(Py_ssize_t rows, Py_ssize_t cols, size_t bytes)
{
    return (size_t)rows * (size_t)cols * bytes <= MG_BN_CACHED ? MG_BN_ROWS : 4;
}

/* 512-bit vectors for the loops below where the CPU has them (gcc's option; other compilers
   keep their default width, same results) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#define MG_BN_WIDE __attribute__((target("prefer-vector-width=512")))
#else
#define MG_BN_WIDE
#endif
/* The loops' bodies are inlined into the entry points the kernels call (with constant strip
   widths and switches), and those are never inlined into their callers, whose code has the
   default vector width. */
#if defined(__GNUC__)
#define MG_BN_INLINE static inline __attribute__((always_inline))
#define MG_BN_OUTER MG_BN_WIDE static __attribute__((noinline))
#else
#define MG_BN_INLINE static inline
#define MG_BN_OUTER static
#endif

/* Per channel c0..c1 of columns grouped S to a channel (column j belongs to channel j / S):
 * out1[c] and out2[c], the sums of s1 and s2 over the channel's columns, each over 8 lanes
 * (column s to lane s % 8) folded pairwise, then the last S % 8 columns in order; a chain of
 * S dependent adds would cost 4 cycles a column. */
static void mg_bn_fold_columns(const double *restrict s1, const double *restrict s2,
                               Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t S,
                               double *restrict out1, double *restrict out2)
{
    for (Py_ssize_t c = c0; c < c1; c++) {
        const double *p = s1 + c * S, *q = s2 + c * S;
        double a[8] = {0.0}, b[8] = {0.0};
        Py_ssize_t s = 0;
        for (; s + 8 <= S; s += 8) {
            #pragma omp simd
            for (int l = 0; l < 8; l++) {
                a[l] += p[s + l];
                b[l] += q[s + l];
            }
        }
        double ta = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
        double tb = ((b[0] + b[4]) + (b[2] + b[6])) + ((b[1] + b[5]) + (b[3] + b[7]));
        for (; s < S; s++) {
            ta += p[s];
            tb += q[s];
        }
        out1[c] = ta;
        out2[c] = tb;
    }
}

#define MG_T float
#define MG_BITS uint32_t
#define MG_FN(name) name##_f
#include "_norm_batch_typed.h"
#undef MG_T
#undef MG_BITS
#undef MG_FN

#define MG_T double
#define MG_BITS uint64_t
#define MG_FN(name) name##_d
#include "_norm_batch_typed.h"
#undef MG_T
#undef MG_BITS
#undef MG_FN

#endif
