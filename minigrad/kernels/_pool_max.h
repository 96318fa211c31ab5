/* 2x2 max pooling at stride 2 over planes the windows tile exactly (H = 2 OH, W = 2 OW), seen
 * as one tall (N C H, W) plane (_pool.pyx). The typed loops are written once, in
 * _pool_max_typed.h, with MG_T for the element type and MG_FN(name) for the name, and included
 * twice below (float: suffix _f, double: suffix _d).
 *
 * Forward, as _pool.pyx describes it: a vertical pass picks, per column of each row pair, the
 * later of its two taps or the first, and keeps that tap's position in its plane; a horizontal
 * pass over those picks between the two columns of each window, by value, then position. The
 * loop over one row of the vertical pass is set up once per row: with narrow planes that
 * set-up was most of the time, so the common widths (2, 4, 8) are inlined as constants (one
 * vector per row, no set-up). Measured, forward of 64x16x8x8 float32, one thread, in L2, min
 * of 300 runs: 7.2 us with W = 8 inlined, against 14 us for the same two passes with the
 * width a variable (other widths: see mg_max_tall).
 */
#ifndef MG_POOL_MAX_H
#define MG_POOL_MAX_H

#include <stdint.h>
#include <Python.h>

/* values and positions of the vertical pass held at a time (8-12 KB, in L1) */
#define MG_TALL_CHUNK 1024

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#define MG_PM_WIDE __attribute__((target("prefer-vector-width=512")))
#else
#define MG_PM_WIDE
#endif
#if defined(__GNUC__)
#define MG_PM_INLINE static inline __attribute__((always_inline))
#define MG_PM_OUTER MG_PM_WIDE static __attribute__((noinline))
#else
#define MG_PM_INLINE static inline
#define MG_PM_OUTER static
#endif

#define MG_T float
#define MG_FN(name) name##_f
#include "_pool_max_typed.h"
#undef MG_T
#undef MG_FN

#define MG_T double
#define MG_FN(name) name##_d
#include "_pool_max_typed.h"
#undef MG_T
#undef MG_FN

#endif
