/* Register-blocked small matrix products of the direct convolution path (_conv_direct.pxi), on
 * rows of B that are shifted views of zero-padded input planes, masked ("implicit GEMM": no
 * im2col buffer is written).
 *
 * Row k of B is B[off[k] + n] where mask[mrow[k] + n] is all ones, 0 where it is 0: a kernel
 * tap's view of one channel's plane, with the positions whose tap falls in the left or right
 * padding masked (a row-major plane shifted by a column wraps onto the next row there); the
 * padding above and below is real zeros in the caller's buffer. Two shapes of product, each
 * for float32 (_f) and float64 (_d):
 *
 * - mg_gemm: C (M x N) = A^T B (+ bias per row), A stored (K, lda) so that A[k, m] =
 *   A[k lda + m]. N is a multiple of the vector width (the callers' rows are padded), so every
 *   load is a whole vector. A tile of MR rows x NV vectors of C stays in registers over the
 *   whole K loop: per k, NV loads of B (and of its mask) and MR broadcasts of A feed MR NV fused
 *   multiply-adds (16 / 8 / 4 rows for 1 / 2 / 4 vectors: 16 accumulators, leaving registers
 *   for the loads).
 * - mg_wgrad: rows of C (k x N) += sum over samples s and positions p of X[s, k, p] B[s, p, :],
 *   the weight gradient as patches times dY^T (positions x out channels). The patches are read
 *   as scalars straight from the caller's padded planes (copies masked per tap column, so no
 *   mask here) and broadcast, dY^T as vectors; MG_WG_ROWS x NV vectors of C in registers.
 *
 * Vectors are GCC/Clang vector extensions of 64 bytes (one AVX-512 register, two AVX2 ones,
 * ...), so the same code builds for any target; other compilers take plain loops that compute
 * the same sums in the same order per output element. Every output element is computed by one
 * call, in a fixed order, whichever thread makes it: results do not depend on the threads.
 */
#ifndef MG_CONV_GEMM_H
#define MG_CONV_GEMM_H

#include <stdint.h>
#include <string.h>

#define MG_VEC_BYTES 64
#define MG_VL_F (MG_VEC_BYTES / 4)
#define MG_VL_D (MG_VEC_BYTES / 8)

#if defined(__GNUC__)
typedef float mg_vf __attribute__((vector_size(MG_VEC_BYTES)));
typedef double mg_vd __attribute__((vector_size(MG_VEC_BYTES)));
typedef int32_t mg_mf __attribute__((vector_size(MG_VEC_BYTES)));
typedef int64_t mg_md __attribute__((vector_size(MG_VEC_BYTES)));
#define MG_UNROLL _Pragma("GCC unroll 16")
#define MG_VZERO(V) ((V){0})
#define MG_VSPLAT(V, s) ((V){0} + (s))
#define MG_VFMA(c, a, b) ((c) += (a) * (b))           /* a scalar */
#define MG_VFMA2(c, a, b) ((c) += (a) * (b))          /* a vector */
#define MG_VMASK(V, M, b, m) ((b) = (V)((M)(b) & (m)))
#define MG_HSUM(T, VL, v, out) do { T _h[VL]; memcpy(_h, &(v), sizeof(_h)); \
    out = 0; for (int _l = 0; _l < (VL); _l++) out += _h[_l]; } while (0)
#else
/* plain structs and loops: the same arithmetic, lane by lane */
typedef struct { float v[MG_VL_F]; } mg_vf;
typedef struct { double v[MG_VL_D]; } mg_vd;
typedef struct { int32_t v[MG_VL_F]; } mg_mf;
typedef struct { int64_t v[MG_VL_D]; } mg_md;
#define MG_UNROLL
#define MG_LANES(c) ((int)(sizeof((c).v) / sizeof((c).v[0])))
#define MG_VZERO(V) mg_zero_##V()
#define MG_VSPLAT(V, s) mg_splat_##V(s)
static inline mg_vf mg_zero_mg_vf(void) { mg_vf r; memset(&r, 0, sizeof r); return r; }
static inline mg_vd mg_zero_mg_vd(void) { mg_vd r; memset(&r, 0, sizeof r); return r; }
static inline mg_vf mg_splat_mg_vf(float s)
{ mg_vf r; for (int l = 0; l < MG_VL_F; l++) r.v[l] = s; return r; }
static inline mg_vd mg_splat_mg_vd(double s)
{ mg_vd r; for (int l = 0; l < MG_VL_D; l++) r.v[l] = s; return r; }
#define MG_VFMA(c, a, b) do { for (int _l = 0; _l < MG_LANES(c); _l++) \
    (c).v[_l] += (a) * (b).v[_l]; } while (0)
#define MG_VFMA2(c, a, b) do { for (int _l = 0; _l < MG_LANES(c); _l++) \
    (c).v[_l] += (a).v[_l] * (b).v[_l]; } while (0)
#define MG_VMASK(V, M, b, m) do { for (int _l = 0; _l < MG_LANES(b); _l++) \
    if (!(m).v[_l]) (b).v[_l] = 0; } while (0)
#define MG_HSUM(T, VL, x, out) do { out = 0; for (int _l = 0; _l < (VL); _l++) \
    out += (x).v[_l]; } while (0)
#endif

/* row k of B, vector v, masked */
#define MG_LOAD_ROW(V, M, VL, dst, B, off, mask, mrow, k, v) do { M _m;                         \
    memcpy(&(dst), (B) + (off)[k] + (v) * (VL), sizeof(V));                                    \
    memcpy(&_m, (mask) + (mrow)[k] + (v) * (VL), sizeof(M));                                   \
    MG_VMASK(V, M, dst, _m); } while (0)

/* One tile of mg_gemm: MR rows and NV vectors of columns, its accumulators in registers (constant
   indices only). A points at the tile's first row (A is readable for all MR rows: the callers
   pad it with zeros), B and mask at its first column, C at its first element; only the first
   mr rows are stored. */
#define MG_GEMM_TILE(NAME, T, V, M, VL, MR, NV)                                               \
static inline void NAME(int mr, Py_ssize_t K, const T *A, Py_ssize_t lda, const T *B,         \
                        const Py_ssize_t *off, const M##_t *mask, const Py_ssize_t *mrow,     \
                        T *C, Py_ssize_t ldc, const T *bias)                                  \
{                                                                                             \
    V c[MR][NV], b[NV];                                                                       \
    MG_UNROLL for (int r = 0; r < MR; r++)                                                    \
        MG_UNROLL for (int v = 0; v < NV; v++)                                                \
            c[r][v] = bias != NULL && r < mr ? MG_VSPLAT(V, bias[r]) : MG_VZERO(V);           \
    for (Py_ssize_t k = 0; k < K; k++) {                                                      \
        MG_UNROLL for (int v = 0; v < NV; v++)                                                \
            MG_LOAD_ROW(V, M, VL, b[v], B, off, mask, mrow, k, v);                            \
        MG_UNROLL for (int r = 0; r < MR; r++) {                                              \
            T a = A[k * lda + r];                                                             \
            MG_UNROLL for (int v = 0; v < NV; v++) MG_VFMA(c[r][v], a, b[v]);                 \
        }                                                                                     \
    }                                                                                         \
    MG_UNROLL for (int r = 0; r < MR; r++)                                                    \
        if (r < mr)                                                                           \
            MG_UNROLL for (int v = 0; v < NV; v++)                                            \
                memcpy(C + r * ldc + v * VL, &c[r][v], sizeof(V));                            \
}

#define MG_GEMM(NAME, T, V, M, VL)                                                            \
MG_GEMM_TILE(NAME##_1, T, V, M, VL, 16, 1)                                                    \
MG_GEMM_TILE(NAME##_2, T, V, M, VL, 8, 2)                                                     \
MG_GEMM_TILE(NAME##_4, T, V, M, VL, 4, 4)                                                     \
/* C (M x N) = A^T B (+ bias per row), N a multiple of VL, C's rows ldc apart; A readable up   \
   to M rounded up to MG_GEMM_ROWS. */                                                        \
static void NAME(Py_ssize_t Mr, Py_ssize_t N, Py_ssize_t K, const T *A, Py_ssize_t lda,      \
                 const T *B, const Py_ssize_t *off, const M##_t *mask, const Py_ssize_t *mrow, \
                 T *C, Py_ssize_t ldc, const T *bias)                                         \
{                                                                                             \
    /* the tallest tile the rows fill (fewer loads of B per multiply-add), then the widest */  \
    Py_ssize_t nvec = N / (VL), m, j;                                                         \
    int nv = Mr >= 16 ? 1 : Mr >= 8 && nvec % 2 == 0 ? 2                                       \
           : nvec % 4 == 0 ? 4 : nvec % 2 == 0 ? 2 : 1;                                       \
    int mrows = nv == 4 ? 4 : nv == 2 ? 8 : 16;                                               \
    for (j = 0; j < nvec; j += nv)                                                            \
        for (m = 0; m < Mr; m += mrows) {                                                     \
            int mr = Mr - m < mrows ? (int)(Mr - m) : mrows;                                  \
            const T *bm = bias == NULL ? NULL : bias + m, *a = A + m, *b = B + j * (VL);      \
            const M##_t *mk = mask + j * (VL);                                                \
            T *c = C + m * ldc + j * (VL);                                                    \
            if (nv == 4)                                                                      \
                NAME##_4(mr, K, a, lda, b, off, mk, mrow, c, ldc, bm);                        \
            else if (nv == 2)                                                                 \
                NAME##_2(mr, K, a, lda, b, off, mk, mrow, c, ldc, bm);                        \
            else                                                                              \
                NAME##_1(mr, K, a, lda, b, off, mk, mrow, c, ldc, bm);                        \
        }                                                                                     \
}

#define MG_GEMM_ROWS 16
typedef int32_t mg_mf_t;
typedef int64_t mg_md_t;
MG_GEMM(mg_gemm_f, float, mg_vf, mg_mf, MG_VL_F)
MG_GEMM(mg_gemm_d, double, mg_vd, mg_md, MG_VL_D)

/* The weight gradient's tile: C (MG_WG_ROWS rows x NV vectors, rows ldc apart) +=
   sum_{s < S, p < L} X[s xs + off[r] + p] B[s bs + p ldb + v VL .. + VL), i.e. row r of the
   patches (the padded planes, masked by the caller's copies) times dY^T (positions x out
   channels). Rows r whose off points at zeros add nothing; only the first mr rows are stored. */
#define MG_WG_ROWS 6
#define MG_WG_TILE(NAME, T, V, VL, NV)                                                        \
static inline void NAME(int mr, Py_ssize_t S, Py_ssize_t L, const T *X, Py_ssize_t xs,       \
                        const Py_ssize_t *off, const T *B, Py_ssize_t bs, Py_ssize_t ldb,     \
                        T *C, Py_ssize_t ldc)                                                 \
{                                                                                             \
    V c[MG_WG_ROWS][NV], b[NV];                                                               \
    const T *xr[MG_WG_ROWS];                                                                  \
    MG_UNROLL for (int r = 0; r < MG_WG_ROWS; r++)                                            \
        MG_UNROLL for (int v = 0; v < NV; v++) c[r][v] = MG_VZERO(V);                         \
    for (Py_ssize_t s = 0; s < S; s++) {                                                      \
        const T *bs0 = B + s * bs;                                                            \
        MG_UNROLL for (int r = 0; r < MG_WG_ROWS; r++) xr[r] = X + s * xs + off[r];           \
        for (Py_ssize_t p = 0; p < L; p++, bs0 += ldb) {                                      \
            MG_UNROLL for (int v = 0; v < NV; v++)                                            \
                memcpy(&b[v], bs0 + v * VL, sizeof(V));                                       \
            MG_UNROLL for (int r = 0; r < MG_WG_ROWS; r++) {                                  \
                T a = *xr[r]++;                                                               \
                MG_UNROLL for (int v = 0; v < NV; v++) MG_VFMA(c[r][v], a, b[v]);             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    MG_UNROLL for (int r = 0; r < MG_WG_ROWS; r++)                                            \
        if (r < mr)                                                                           \
            MG_UNROLL for (int v = 0; v < NV; v++) {                                          \
                V old;                                                                        \
                memcpy(&old, C + r * ldc + v * VL, sizeof(V));                                \
                old += c[r][v];                                                               \
                memcpy(C + r * ldc + v * VL, &old, sizeof(V));                                \
            }                                                                                 \
}

#define MG_WG(NAME, T, V, VL)                                                                 \
MG_WG_TILE(NAME##_1, T, V, VL, 1)                                                             \
MG_WG_TILE(NAME##_2, T, V, VL, 2)                                                             \
/* Rows [r0, r0 + MG_WG_ROWS) of C (rows x N, N a multiple of VL) += the sums above, over      \
   column blocks of two vectors (one for an odd last one). */                                 \
static void NAME(int mr, Py_ssize_t N, Py_ssize_t S, Py_ssize_t L, const T *X, Py_ssize_t xs, \
                 const Py_ssize_t *off, const T *B, Py_ssize_t bs, Py_ssize_t ldb, T *C,     \
                 Py_ssize_t ldc)                                                              \
{                                                                                             \
    Py_ssize_t j, nvec = N / (VL);                                                            \
    for (j = 0; j + 2 <= nvec; j += 2)                                                        \
        NAME##_2(mr, S, L, X, xs, off, B + j * (VL), bs, ldb, C + j * (VL), ldc);             \
    if (j < nvec)                                                                             \
        NAME##_1(mr, S, L, X, xs, off, B + j * (VL), bs, ldb, C + j * (VL), ldc);             \
}

MG_WG(mg_wgrad_f, float, mg_vf, MG_VL_F)
MG_WG(mg_wgrad_d, double, mg_vd, MG_VL_D)

/* out[u] = x[u] where keep[u] is all ones, 0 where it is 0: a bitwise and (not x * 0, x may be
   inf or NaN), which vectorises where a select with a branch did not. T is the float type, B the
   unsigned integer of its width, M the mask type. */
#define MG_KEEP(NAME, T, B, M) \
static inline void NAME(const T *restrict x, const M *restrict keep, T *restrict out, \
                        Py_ssize_t n) \
{ \
    for (Py_ssize_t u = 0; u < n; u++) { \
        B b; \
        memcpy(&b, x + u, sizeof(B)); \
        b &= (B)keep[u]; \
        memcpy(out + u, &b, sizeof(B)); \
    } \
}
MG_KEEP(mg_keep_f, float, uint32_t, mg_mf_t)
MG_KEEP(mg_keep_d, double, uint64_t, mg_md_t)

/* 1 when no value of x is inf or NaN (its exponent bits, EXP, not all ones), 0 otherwise:
   tested on the bits, an integer loop that vectorises. */
#define MG_ALL_FINITE(NAME, T, B, EXP) \
static inline int NAME(const T *x, Py_ssize_t n) \
{ \
    B bad = 0; \
    for (Py_ssize_t u = 0; u < n; u++) { \
        B b; \
        memcpy(&b, x + u, sizeof(B)); \
        bad |= (B)((b & (EXP)) == (EXP)); \
    } \
    return !bad; \
}
MG_ALL_FINITE(mg_all_finite_f, float, uint32_t, 0x7f800000u)
MG_ALL_FINITE(mg_all_finite_d, double, uint64_t, 0x7ff0000000000000ull)

#endif
