/* Register-blocked small matrix products of the direct convolution path (_conv_direct.pxi).
 * The forward and dx read rows of B that are shifted views of zero-padded input planes, masked
 * ("implicit GEMM": no im2col buffer is written); the weight gradient reads an aligned im2col
 * buffer of a block of samples (its rows are summed over, so a plain contiguous row per tap
 * keeps every load whole and aligned).
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
 * - mg_wgrad: C[o, k] += sum over samples s and positions p of D[s, o, p] X[s, k, p], the
 *   weight gradient as rows of dY dotted with rows of an im2col buffer, vectorised over the
 *   positions: a tile of 4 out channels x 4 (or 3) rows keeps one vector accumulator per
 *   output element, 4 + 4 loads feeding 16 fused multiply-adds per vector of positions, and
 *   folds them into horizontal sums at the end (MG_FOLD_*: a fixed tree over the lanes).
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
#define MG_UNROLL_K _Pragma("GCC unroll 4")
#define MG_NOINLINE __attribute__((noinline))
#define MG_VZERO(V) ((V){0})
#define MG_VSPLAT(V, s) ((V){0} + (s))
#define MG_VFMA(c, a, b) ((c) += (a) * (b))           /* a scalar */
#define MG_VFMA2(c, a, b) ((c) += (a) * (b))          /* a vector */
#define MG_VADD(c, a) ((c) += (a))
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
#define MG_UNROLL_K
#define MG_NOINLINE
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
#define MG_VADD(c, a) do { for (int _l = 0; _l < MG_LANES(c); _l++) \
    (c).v[_l] += (a).v[_l]; } while (0)
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
   indices only). The loop over k is unrolled four times (each accumulator still takes its terms
   in k order): measured one thread, float32, min of 5 in alternating processes, forward / dx,
   us: 64x16x4x4 -> 32 72-74 / 81-83 against 76-80 / 78-83, 64x16x8x8 -> 32 272-282 / 273-284
   against 285-309 / 267-290, 16x32x14x14 -> 64 921-958 / 916-968 against 1126-1166 /
   1015-1083 (unrolled twice or eight times: no better). A points at the tile's first row (A is readable for all MR rows: the callers
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
    MG_UNROLL_K for (Py_ssize_t k = 0; k < K; k++) {                                          \
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

/* Horizontal sums of LANES vectors at once (LANES = VL as a literal, 16 or 8 at 64-byte
   vectors, for the shuffle indices): x[0..LANES) folds into x[0], whose
   lane l is the sum of the lanes of x[rev(l)], rev reversing the log2(LANES) bits of l. Each
   level halves the vectors, x[i] = lo + hi with lo[l] = (l & w ? x[2i+1][l - w] : x[2i][l]) and
   hi[l] = (l & w ? x[2i+1][l] : x[2i][l + w]): every sum is the same tree over the lanes. */
#define MG_LO(l, w, VL) (((l) & (w)) ? (VL) + (l) - (w) : (l))
#define MG_HI(l, w, VL) (((l) & (w)) ? (VL) + (l) : (l) + (w))
#define MG_IDX8(F, w, VL) F(0, w, VL), F(1, w, VL), F(2, w, VL), F(3, w, VL), F(4, w, VL),      \
    F(5, w, VL), F(6, w, VL), F(7, w, VL)
#define MG_IDX16(F, w, VL) MG_IDX8(F, w, VL), F(8, w, VL), F(9, w, VL), F(10, w, VL),          \
    F(11, w, VL), F(12, w, VL), F(13, w, VL), F(14, w, VL), F(15, w, VL)
#if defined(__clang__)
#define MG_FOLD(V, M, LANES, u, v, w)                                                         \
    (__builtin_shufflevector(u, v, MG_IDX##LANES(MG_LO, w, LANES))                            \
     + __builtin_shufflevector(u, v, MG_IDX##LANES(MG_HI, w, LANES)))
#elif defined(__GNUC__)
#define MG_FOLD(V, M, LANES, u, v, w)                                                         \
    (__builtin_shuffle(u, v, (M){MG_IDX##LANES(MG_LO, w, LANES)})                             \
     + __builtin_shuffle(u, v, (M){MG_IDX##LANES(MG_HI, w, LANES)}))
#else
#define MG_FOLD(V, M, LANES, u, v, w) mg_fold_##V(u, v, w)
#define MG_FOLD_LANES(V, VL)                                                                  \
static inline V mg_fold_##V(V u, V v, int w)                                                  \
{                                                                                             \
    V r;                                                                                      \
    for (int l = 0; l < (VL); l++)                                                            \
        r.v[l] = (l & w ? v.v[l - w] : u.v[l]) + (l & w ? v.v[l] : u.v[l + w]);              \
    return r;                                                                                 \
}
MG_FOLD_LANES(mg_vf, MG_VL_F)
MG_FOLD_LANES(mg_vd, MG_VL_D)
#endif
#define MG_FOLD_LEVEL(V, M, LANES, x, n, w)                                                   \
    MG_UNROLL for (int _i = 0; _i < (n); _i++)                                                \
        x[_i] = MG_FOLD(V, M, LANES, x[2 * _i], x[2 * _i + 1], w)
#define MG_FOLD_16(V, M, x) do { MG_FOLD_LEVEL(V, M, 16, x, 8, 8);                             \
    MG_FOLD_LEVEL(V, M, 16, x, 4, 4); MG_FOLD_LEVEL(V, M, 16, x, 2, 2);                       \
    MG_FOLD_LEVEL(V, M, 16, x, 1, 1); } while (0)
#define MG_FOLD_8(V, M, x) do { MG_FOLD_LEVEL(V, M, 8, x, 4, 4);                               \
    MG_FOLD_LEVEL(V, M, 8, x, 2, 2); MG_FOLD_LEVEL(V, M, 8, x, 1, 1); } while (0)

/* The weight gradient's tile: C[o ldc + k] += sum_{s < S, p < nv VL} D[s ds + o ldd + p]
   X[s xs + k ldx + p] for o < mo, k < mk, i.e. rows of dY (one out channel, sample after sample)
   dotted with rows of the im2col buffer (one tap of one channel, the same positions). MO x MK
   (<= 16) vector accumulators, each summing its lanes' positions in order (samples, then
   vectors), then one fold (MG_FOLD_*) for all of them: per vector of positions, MO + MK loads
   feed MO MK fused multiply-adds. Rows are whole vectors (the callers pad them with zeros); a
   tile with mo < MO or mk < MK reads its last row again for the missing ones and drops those
   sums. */
#define MG_WG_STEP(V, VL, MO, MK, d, x, v)                                                    \
    MG_UNROLL for (int o = 0; o < MO; o++) memcpy(&a[o], d + dr[o] + (v) * (VL), sizeof(V));  \
    MG_UNROLL for (int k = 0; k < MK; k++) memcpy(&b[k], x + xr[k] + (v) * (VL), sizeof(V));  \
    MG_UNROLL for (int o = 0; o < MO; o++)                                                    \
        MG_UNROLL for (int k = 0; k < MK; k++) MG_VFMA2(c[o * MK + k], a[o], b[k]);

#define MG_WG_TILE(NAME, T, V, M, VL, LANES, MO, MK)                                          \
static MG_NOINLINE void NAME(int mo, int mk, Py_ssize_t S, Py_ssize_t nv, const T *D,          \
                             Py_ssize_t ldd, Py_ssize_t ds, const T *X, Py_ssize_t ldx,       \
                             Py_ssize_t xs, T *C, Py_ssize_t ldc)                             \
{                                                                                             \
    V c[16], a[MO], b[MK];                                                                    \
    T sums[16];                                                                               \
    Py_ssize_t dr[MO], xr[MK], s, v;                                                          \
    const T *d = D, *x = X;                                                                   \
    MG_UNROLL for (int o = 0; o < MO; o++) dr[o] = (o < mo ? o : mo - 1) * ldd;               \
    MG_UNROLL for (int k = 0; k < MK; k++) xr[k] = (k < mk ? k : mk - 1) * ldx;               \
    MG_UNROLL for (int i = 0; i < 16; i++) c[i] = MG_VZERO(V);                                \
    if (nv == 1)  /* one vector per sample: a single loop */                                  \
        MG_UNROLL_K for (s = 0; s < S; s++, d += ds, x += xs) {                               \
            MG_WG_STEP(V, VL, MO, MK, d, x, 0)                                                \
        }                                                                                     \
    else                                                                                      \
        for (s = 0; s < S; s++, d += ds, x += xs)                                             \
            MG_UNROLL_K for (v = 0; v < nv; v++) {                                            \
                MG_WG_STEP(V, VL, MO, MK, d, x, v)                                            \
            }                                                                                 \
    MG_UNROLL for (int g = 0; g < 16; g += (LANES)) {                                         \
        MG_FOLD_##LANES(V, M, (c + g));                                                       \
        memcpy(sums + g, &c[g], sizeof(V));                                                   \
    }                                                                                         \
    for (int o = 0; o < mo; o++)                                                              \
        for (int k = 0; k < mk; k++) {                                                        \
            int i = o * MK + k, l = 0;                                                        \
            for (int bit = 1; bit < (LANES); bit *= 2) l = 2 * l + ((i & bit) != 0);          \
            C[o * ldc + k] += sums[i - i % (LANES) + l];  /* lane rev(i) of its group */      \
        }                                                                                     \
}

#define MG_WG(NAME, T, V, M, VL, LANES)                                                       \
MG_WG_TILE(NAME##_44, T, V, M, VL, LANES, 4, 4)                                               \
MG_WG_TILE(NAME##_43, T, V, M, VL, LANES, 4, 3)                                               \
/* One tile of MG_WG_OUT out channels and tall (3 or 4) rows, mo and mk of them real. */       \
static inline void NAME(int tall, int mo, int mk, Py_ssize_t S, Py_ssize_t nv, const T *D,    \
                        Py_ssize_t ldd, Py_ssize_t ds, const T *X, Py_ssize_t ldx,            \
                        Py_ssize_t xs, T *C, Py_ssize_t ldc)                                  \
{                                                                                             \
    if (tall == 3)                                                                            \
        NAME##_43(mo, mk, S, nv, D, ldd, ds, X, ldx, xs, C, ldc);                             \
    else                                                                                      \
        NAME##_44(mo, mk, S, nv, D, ldd, ds, X, ldx, xs, C, ldc);                             \
}

#define MG_WG_OUT 4
MG_WG(mg_wgrad_f, float, mg_vf, mg_mf, MG_VL_F, 16)
MG_WG(mg_wgrad_d, double, mg_vd, mg_md, MG_VL_D, 8)

/* The weight gradient by broadcasts (mg_wgrad_bc, the direct path's dW for layers with many
   rows, where it measured faster than mg_wgrad): C (MG_BC_ROWS rows x NV vectors, rows ldc
   apart) +=
   sum_{s < S, p < L} X[s xs + off[r] + p] B[s bs + p ldb + v VL .. + VL), i.e. row r of the
   patches (the padded planes, masked by the caller's copies) times dY^T (positions x out
   channels). Rows r whose off points at zeros add nothing; only the first mr rows are stored.
   Tiles of 8 rows (16 accumulators at two vectors of out channels): measured dW alone, one
   thread, float32, min of 5 in three alternating processes, against 6 rows (12 accumulators,
   each dY^T vector loaded for fewer multiply-adds): 64x16x4x4 -> 32 98-106 against 110-117 us,
   16x32x14x14 -> 64 945-968 against 1089-1162, float64 64x16x4x4 -> 32 210-212 against 215-231;
   64x3x8x8 -> 16 (27 rows), 64x8x8x8 -> 16, 32x3x32x32 -> 32 the same within noise (9 and 10
   rows measured slower than 8, 12 no faster). The loop over positions is unrolled four times
   (as mg_gemm's over k, and mg_wgrad's over samples and vectors): 64x16x4x4 -> 32 99 against
   105 us, 64x16x8x8 -> 32 337-339 against 359-364, 16x32x14x14 -> 64 872-883 against 970-1005;
   first layers (mg_wgrad) the same within noise. */
#define MG_BC_ROWS 8
#define MG_BC_TILE(NAME, T, V, VL, NV)                                                        \
static inline void NAME(int mr, Py_ssize_t S, Py_ssize_t L, const T *X, Py_ssize_t xs,       \
                        const Py_ssize_t *off, const T *B, Py_ssize_t bs, Py_ssize_t ldb,     \
                        T *C, Py_ssize_t ldc)                                                 \
{                                                                                             \
    V c[MG_BC_ROWS][NV], b[NV];                                                               \
    const T *xr[MG_BC_ROWS];                                                                  \
    MG_UNROLL for (int r = 0; r < MG_BC_ROWS; r++)                                            \
        MG_UNROLL for (int v = 0; v < NV; v++) c[r][v] = MG_VZERO(V);                         \
    for (Py_ssize_t s = 0; s < S; s++) {                                                      \
        const T *bs0 = B + s * bs;                                                            \
        MG_UNROLL for (int r = 0; r < MG_BC_ROWS; r++) xr[r] = X + s * xs + off[r];           \
        MG_UNROLL_K for (Py_ssize_t p = 0; p < L; p++, bs0 += ldb) {                          \
            MG_UNROLL for (int v = 0; v < NV; v++)                                            \
                memcpy(&b[v], bs0 + v * VL, sizeof(V));                                       \
            MG_UNROLL for (int r = 0; r < MG_BC_ROWS; r++) {                                  \
                T a = *xr[r]++;                                                               \
                MG_UNROLL for (int v = 0; v < NV; v++) MG_VFMA(c[r][v], a, b[v]);             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    MG_UNROLL for (int r = 0; r < MG_BC_ROWS; r++)                                            \
        if (r < mr)                                                                           \
            MG_UNROLL for (int v = 0; v < NV; v++) {                                          \
                V old;                                                                        \
                memcpy(&old, C + r * ldc + v * VL, sizeof(V));                                \
                MG_VADD(old, c[r][v]);                                                             \
                memcpy(C + r * ldc + v * VL, &old, sizeof(V));                                \
            }                                                                                 \
}

#define MG_BC(NAME, T, V, VL)                                                                 \
MG_BC_TILE(NAME##_1, T, V, VL, 1)                                                             \
MG_BC_TILE(NAME##_2, T, V, VL, 2)                                                             \
/* Rows [r0, r0 + MG_BC_ROWS) of C (rows x N, N a multiple of VL) += the sums above, over      \
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

MG_BC(mg_wgrad_bc_f, float, mg_vf, MG_VL_F)
MG_BC(mg_wgrad_bc_d, double, mg_vd, MG_VL_D)

/* db's channel sums, channels [o0, o1) of dy (N, O, L): out[o] = (T) sum_k (sum_n dy[n, o, k])
   in float64, each inner sum over the samples in order from 0.0, then the outer one over the
   positions in order. acc holds (o1 - o0) L doubles: the position-by-position sums, added a
   run of whole rows at a time (contiguous in dy), four samples per pass over acc (the same
   additions in the same order; a quarter of the loads and stores of acc). GCC is asked for its
   widest vectors here: the float-to-double conversions, two operations per vector whatever its
   width, bound the loop (64x16x64 float32: 8.1 us at 256 bits, against 10.8 before). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#define MG_SUMS_WIDE __attribute__((target("prefer-vector-width=512")))
#else
#define MG_SUMS_WIDE
#endif
#define MG_CHANNEL_SUMS(NAME, T)                                                              \
MG_SUMS_WIDE static void NAME(const T *restrict dy, Py_ssize_t N, Py_ssize_t O, Py_ssize_t L,             \
                 Py_ssize_t o0, Py_ssize_t o1, double *restrict acc, T *restrict out)        \
{                                                                                             \
    Py_ssize_t m = (o1 - o0) * L, n = 0, i, o, k;                                             \
    const T *src = dy + o0 * L;                                                               \
    for (i = 0; i < m; i++)                                                                   \
        acc[i] = 0.0;                                                                         \
    for (; n + 4 <= N; n += 4) {                                                              \
        const T *restrict a = src + n * O * L, *restrict b = a + O * L;                       \
        const T *restrict c = b + O * L, *restrict d = c + O * L;                             \
        for (i = 0; i < m; i++)                                                               \
            acc[i] = (((acc[i] + a[i]) + b[i]) + c[i]) + d[i];                                \
    }                                                                                         \
    for (; n < N; n++) {                                                                      \
        const T *restrict a = src + n * O * L;                                                \
        for (i = 0; i < m; i++)                                                               \
            acc[i] = acc[i] + a[i];                                                           \
    }                                                                                         \
    for (o = o0; o < o1; o++) {                                                               \
        double s = 0.0;                                                                       \
        for (k = 0; k < L; k++)                                                               \
            s += acc[(o - o0) * L + k];                                                       \
        out[o] = (T)s;                                                                        \
    }                                                                                         \
}
MG_CHANNEL_SUMS(mg_channel_sums_f, float)
MG_CHANNEL_SUMS(mg_channel_sums_d, double)

/* out[u] = x[u] where keep[u] is all ones, 0 where it is 0: a bitwise and (not x * 0, x may be
   inf or NaN), a vector at a time, then the last values one by one. T is the float type, B the
   unsigned integer of its width, V and M the vector types, MT the mask's element type. */
#define MG_KEEP(NAME, T, B, V, M, MT, VL) \
static inline void NAME(const T *restrict x, const MT *restrict keep, T *restrict out, \
                        Py_ssize_t n) \
{ \
    Py_ssize_t u = 0; \
    for (; u + (VL) <= n; u += (VL)) { \
        V v; \
        M m; \
        memcpy(&v, x + u, sizeof(V)); \
        memcpy(&m, keep + u, sizeof(M)); \
        MG_VMASK(V, M, v, m); \
        memcpy(out + u, &v, sizeof(V)); \
    } \
    for (; u < n; u++) { \
        B b; \
        memcpy(&b, x + u, sizeof(B)); \
        b &= (B)keep[u]; \
        memcpy(out + u, &b, sizeof(B)); \
    } \
}
MG_KEEP(mg_keep_f, float, uint32_t, mg_vf, mg_mf, mg_mf_t, MG_VL_F)
MG_KEEP(mg_keep_d, double, uint64_t, mg_vd, mg_md, mg_md_t, MG_VL_D)

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
