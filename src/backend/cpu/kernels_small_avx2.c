/*
 * kernels_small_avx2.c — AVX2 + FMA + F16C small-n products y = x . W^T and
 * the activation quantizer (kernels.h; kernels_small.c is the spec).
 *
 * The blocking of kernels_small_avx512.c in 16 ymm registers: a tile is 4
 * weight rows x C input rows (C = 1, 2), 4*C accumulators over the whole
 * row; W is streamed from memory once per call and re-read from L1 for each
 * further pair of inputs. q8_0 / q4_0: one 32-element block per ymm, the
 * byte dot by llama.cpp's sign trick (vpsignb, vpmaddubsw, vpmaddwd), one
 * multiply-add by d_w * d_x per block and pair. Compiled with -mavx2 -mfma
 * -mf16c (CMake, by file name). Stateless; no allocation, no threads.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_gemv.h"
#include "backend/cpu/kernels_reduce.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Software prefetch distance along each of a tile's 4 weight rows while the
 * first input tile streams them from memory. Four rows side by side, rows
 * apart, stream far slower than one sequential run without it; measured on
 * the Zen VM (W 16384 x 2048 q8_0 from DRAM, one thread, n = 2 / 4): 2.4-3.0
 * / 2.5-3.2 ms at 1 KiB ahead, 1.4-2.2 / 1.6-2.3 ms at 8 KiB, no better at
 * 16 KiB. Past a row's end it fetches the rows that come next. */
#define PF_BYTES 8192

#define reduce4 st__reduce4_avx2

ALWAYS_INLINE void store_rows(float *y, __m128 v, int nrow) {
    if (nrow >= 4) {
        _mm_storeu_ps(y, v);
        return;
    }
    float t[4];
    _mm_storeu_ps(t, v);
    for (int i = 0; i < nrow; i++)
        y[i] = t[i];
}

/* ---- f32 --------------------------------------------------------------------------- */

ALWAYS_INLINE void tile_f32(const int C, int64_t k, const float *const wr[4], const float *x,
                            float *y, int64_t ldy, int nrow, int pf) {
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 2
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) {
        if (pf) { /* first input tile: the rows come from memory */
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
                _mm_prefetch((const char *)(wr[r] + j) + PF_BYTES, _MM_HINT_T0);
        }
        __m256 xv[2];
#pragma GCC unroll 2
        for (int c = 0; c < C; c++)
            xv[c] = _mm256_loadu_ps(x + c * k + j);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const __m256 wv = _mm256_loadu_ps(wr[r] + j);
#pragma GCC unroll 2
            for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 2
    for (int c = 0; c < C; c++) {
        __m128 s = reduce4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]);
        if (j < k) { /* tail under 8 elements, in scalar */
            float t[4];
            _mm_storeu_ps(t, s);
            for (int r = 0; r < 4; r++)
                for (int64_t i = j; i < k; i++)
                    t[r] += wr[r][i] * x[c * k + i];
            s = _mm_loadu_ps(t);
        }
        store_rows(y + c * ldy, s, nrow);
    }
}

/* Decode (one input row): as in kernels_small_avx512.c, a call's rows are
 * read as two DRAM streams, its two halves, row i of each side by side with
 * a software prefetch DECODE_PF_* bytes ahead (one sequential stream per core
 * leaves DRAM bandwidth unused). Each row's sum is the tile's for C = 1,
 * operation for operation (the same chain, reduce4 and scalar tail), so a
 * row's output is the same bits alone or in a batch. Measured with this
 * level forced on the AVX-512 VM (STRATA_SIMD=avx2 strata bench decode). */
#define DECODE_PF_F32 2048
#define DECODE_PF_Q 8192

/* tile_f32's chain for one row (its C = 1 accumulator) */
ALWAYS_INLINE __m256 row1_f32(int64_t k, const float *w, const float *x) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j + 8 <= k; j += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x + j), acc);
    return acc;
}

ALWAYS_INLINE void row2_f32(int64_t k, const float *wa, const float *wb, const float *x, __m256 *sa,
                            __m256 *sb) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    for (int64_t j = 0; j + 8 <= k; j += 8) {
        _mm_prefetch((const char *)(wa + j) + DECODE_PF_F32, _MM_HINT_T0);
        _mm_prefetch((const char *)(wb + j) + DECODE_PF_F32, _MM_HINT_T0);
        const __m256 xv = _mm256_loadu_ps(x + j);
        a = _mm256_fmadd_ps(_mm256_loadu_ps(wa + j), xv, a);
        b = _mm256_fmadd_ps(_mm256_loadu_ps(wb + j), xv, b);
    }
    *sa = a;
    *sb = b;
}

/* tile_f32's ending for C = 1: reduce4, the scalar tail, the store */
ALWAYS_INLINE void finish_f32(const __m256 acc[4], const float *const wr[4], int nrow, float *y,
                              int64_t k, const float *x) {
    __m128 s = reduce4(acc[0], acc[1], acc[2], acc[3]);
    const int64_t j = k / 8 * 8;
    if (j < k) {
        float t[4];
        _mm_storeu_ps(t, s);
        for (int r = 0; r < 4; r++)
            for (int64_t i = j; i < k; i++)
                t[r] += wr[r][i] * x[i];
        s = _mm_loadu_ps(t);
    }
    store_rows(y, s, nrow);
}

void st__k_gemm_f32_avx2(int64_t k, int64_t nr, const float *w, int64_t nx, const float *x,
                         float *y, int64_t ldy) {
    if (nx == 1) {
#define F32_DOT1(pa) row1_f32(k, pa, x)
#define F32_DOT2(pa, pb, sa, sb) row2_f32(k, pa, pb, x, sa, sb)
#define F32_FINISH(acc, rows, nrow, r0) finish_f32(acc, rows, nrow, y + (r0), k, x)
        ST_GEMV_GROUPS(__m256, float, w, k, nr, F32_DOT1, F32_DOT2, F32_FINISH);
#undef F32_DOT1
#undef F32_DOT2
#undef F32_FINISH
        return;
    }
    for (int64_t r = 0; r < nr; r += 4) {
        const int nrow = nr - r < 4 ? (int)(nr - r) : 4;
        const float *wr[4];
        for (int i = 0; i < 4; i++)
            wr[i] = w + (r + (i < nrow ? i : nrow - 1)) * k;
        int64_t c = 0;
        for (; c + 2 <= nx; c += 2)
            tile_f32(2, k, wr, x + c * k, y + c * ldy + r, ldy, nrow, c == 0);
        if (c < nx) tile_f32(1, k, wr, x + c * k, y + c * ldy + r, ldy, nrow, c == 0);
    }
}

/* ---- q8_0 / q4_0 ------------------------------------------------------------------- */

ALWAYS_INLINE __m256i ld_q8(const uint8_t *a) {
    return _mm256_loadu_si256((const __m256i *)(a + 2));
}

ALWAYS_INLINE __m256i ld_q4(const uint8_t *a) {
    const __m128i t = _mm_loadu_si128((const __m128i *)(a + 2));
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_sub_epi8(_mm256_and_si256(v, _mm256_set1_epi8(15)), _mm256_set1_epi8(8));
}

ALWAYS_INLINE float ld_d(const uint8_t *a) {
    uint16_t h;
    memcpy(&h, a, 2);
    return _cvtsh_ss(h);
}

#define DEFINE_QTILE(fname, WB, LD)                                                                \
    ALWAYS_INLINE void fname(const int C, int64_t nb, const uint8_t *const wr[4],                  \
                             const int8_t *xqs, const float *xd, int64_t k, float *y, int64_t ldy, \
                             int nrow, int pf) {                                                   \
        const __m256i ones = _mm256_set1_epi16(1);                                                 \
        __m256 acc[4][2];                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                                        \
            _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();   \
        for (int64_t b = 0; b < nb; b++) {                                                         \
            __m256i xv[2];                                                                         \
            __m256 dx[2];                                                                          \
            _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) {                                  \
                xv[c] = _mm256_loadu_si256((const __m256i *)(xqs + c * k + b * 32));               \
                dx[c] = _mm256_broadcast_ss(xd + c * nb + b);                                      \
            }                                                                                      \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {                                  \
                const uint8_t *a = wr[r] + b * (WB);                                               \
                if (pf) _mm_prefetch((const char *)a + PF_BYTES, _MM_HINT_T0);                     \
                const __m256i wv = LD(a);                                                          \
                const __m256 dw = _mm256_set1_ps(ld_d(a));                                         \
                const __m256i ax = _mm256_sign_epi8(wv, wv);                                       \
                _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) {                              \
                    const __m256i p = _mm256_madd_epi16(                                           \
                        _mm256_maddubs_epi16(ax, _mm256_sign_epi8(xv[c], wv)), ones);              \
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, dx[c]),   \
                                                acc[r][c]);                                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 2") for (int c = 0; c < C; c++)                                        \
            store_rows(y + c * ldy, reduce4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]), nrow);    \
    }

DEFINE_QTILE(qtile_q8, ST_CPU_Q8_0_BYTES, ld_q8)
DEFINE_QTILE(qtile_q4, ST_CPU_Q4_0_BYTES, ld_q4)

#define DEFINE_QGEMM(fname, WB, TILE)                                                              \
    static void fname(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,         \
                      const float *xd, float *y, int64_t ldy) {                                    \
        const int64_t nb = k / 32;                                                                 \
        const size_t rb = (size_t)nb * (WB);                                                       \
        for (int64_t r = 0; r < nr; r += 4) {                                                      \
            const int nrow = nr - r < 4 ? (int)(nr - r) : 4;                                       \
            const uint8_t *wr[4];                                                                  \
            for (int i = 0; i < 4; i++)                                                            \
                wr[i] = (const uint8_t *)w + (size_t)(r + (i < nrow ? i : nrow - 1)) * rb;         \
            int64_t c = 0;                                                                         \
            for (; c + 2 <= nx; c += 2)                                                            \
                TILE(2, nb, wr, xqs + c * k, xd + c * nb, k, y + c * ldy + r, ldy, nrow, c == 0);  \
            if (c < nx)                                                                            \
                TILE(1, nb, wr, xqs + c * k, xd + c * nb, k, y + c * ldy + r, ldy, nrow, c == 0);  \
        }                                                                                          \
    }

DEFINE_QGEMM(gemm_q8_tiles, ST_CPU_Q8_0_BYTES, qtile_q8)
DEFINE_QGEMM(gemm_q4_tiles, ST_CPU_Q4_0_BYTES, qtile_q4)

/* qtile's chain for one row against one input (C = 1), and two rows side
 * by side (the decode streams, see kernels_gemv.h) */
#define DEFINE_QROWS(fname1, fname2, WB, LD)                                                       \
    ALWAYS_INLINE __m256 fname1(int64_t nb, const uint8_t *w, const int8_t *xq, const float *xd) { \
        const __m256i ones = _mm256_set1_epi16(1);                                                 \
        __m256 acc = _mm256_setzero_ps();                                                          \
        for (int64_t b = 0; b < nb; b++) {                                                         \
            const uint8_t *a = w + b * (WB);                                                       \
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * 32)), wv = LD(a);     \
            const __m256i p = _mm256_madd_epi16(                                                   \
                _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), ones);   \
            acc = _mm256_fmadd_ps(                                                                 \
                _mm256_cvtepi32_ps(p),                                                             \
                _mm256_mul_ps(_mm256_set1_ps(ld_d(a)), _mm256_broadcast_ss(xd + b)), acc);         \
        }                                                                                          \
        return acc;                                                                                \
    }                                                                                              \
    ALWAYS_INLINE void fname2(int64_t nb, const uint8_t *wa, const uint8_t *wb, const int8_t *xq,  \
                              const float *xd, __m256 *sa, __m256 *sb) {                           \
        const __m256i ones = _mm256_set1_epi16(1);                                                 \
        __m256 acc_a = _mm256_setzero_ps(), acc_b = _mm256_setzero_ps();                           \
        for (int64_t b = 0; b < nb; b++) {                                                         \
            const uint8_t *a = wa + b * (WB), *c = wb + b * (WB);                                  \
            _mm_prefetch((const char *)a + DECODE_PF_Q, _MM_HINT_T0);                              \
            _mm_prefetch((const char *)c + DECODE_PF_Q, _MM_HINT_T0);                              \
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * 32));                 \
            const __m256 dx = _mm256_broadcast_ss(xd + b);                                         \
            const __m256i va = LD(a), vb = LD(c);                                                  \
            const __m256i pa = _mm256_madd_epi16(                                                  \
                _mm256_maddubs_epi16(_mm256_sign_epi8(va, va), _mm256_sign_epi8(xv, va)), ones);   \
            const __m256i pb = _mm256_madd_epi16(                                                  \
                _mm256_maddubs_epi16(_mm256_sign_epi8(vb, vb), _mm256_sign_epi8(xv, vb)), ones);   \
            acc_a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pa),                                        \
                                    _mm256_mul_ps(_mm256_set1_ps(ld_d(a)), dx), acc_a);            \
            acc_b = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pb),                                        \
                                    _mm256_mul_ps(_mm256_set1_ps(ld_d(c)), dx), acc_b);            \
        }                                                                                          \
        *sa = acc_a;                                                                               \
        *sb = acc_b;                                                                               \
    }

DEFINE_QROWS(qrow_q8, qrow2_q8, ST_CPU_Q8_0_BYTES, ld_q8)
DEFINE_QROWS(qrow_q4, qrow2_q4, ST_CPU_Q4_0_BYTES, ld_q4)

#define Q_FINISH(acc, rows, nrow, r0)                                                              \
    store_rows(y + (r0), reduce4((acc)[0], (acc)[1], (acc)[2], (acc)[3]), nrow)

void st__k_gemm_q8_0_avx2(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                          const float *xd, float *y, int64_t ldy) {
    if (nx == 1) {
        const int64_t nb = k / 32;
        const uint8_t *w8 = w;
#define Q8_DOT1(pa) qrow_q8(nb, pa, xqs, xd)
#define Q8_DOT2(pa, pb, sa, sb) qrow2_q8(nb, pa, pb, xqs, xd, sa, sb)
        ST_GEMV_GROUPS(__m256, uint8_t, w8, (size_t)nb * ST_CPU_Q8_0_BYTES, nr, Q8_DOT1, Q8_DOT2,
                       Q_FINISH);
#undef Q8_DOT1
#undef Q8_DOT2
        return;
    }
    gemm_q8_tiles(k, nr, w, nx, xqs, xd, y, ldy);
}

void st__k_gemm_q4_0_avx2(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                          const float *xd, float *y, int64_t ldy) {
    if (nx == 1) {
        const int64_t nb = k / 32;
        const uint8_t *w8 = w;
#define Q4_DOT1(pa) qrow_q4(nb, pa, xqs, xd)
#define Q4_DOT2(pa, pb, sa, sb) qrow2_q4(nb, pa, pb, xqs, xd, sa, sb)
        ST_GEMV_GROUPS(__m256, uint8_t, w8, (size_t)nb * ST_CPU_Q4_0_BYTES, nr, Q4_DOT1, Q4_DOT2,
                       Q_FINISH);
#undef Q4_DOT1
#undef Q4_DOT2
        return;
    }
    gemm_q4_tiles(k, nr, w, nx, xqs, xd, y, ldy);
}

/* ---- activation quantizer ------------------------------------------------------------ */

/* roundf: ties away from zero, exactly (trunc, then +-1 where |frac| >= 0.5) */
ALWAYS_INLINE __m256i round_away(__m256 v) {
    const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
    const __m256 up = _mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_and_ps(up, _mm256_or_ps(_mm256_set1_ps(1.0f), sign));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, one));
}

void st__k_quantize_q8_avx2(int64_t k, const float *x, int8_t *qs, float *d) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < k / 32; b++) {
        const float *v = x + b * 32;
        __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), v2 = _mm256_loadu_ps(v + 16),
               v3 = _mm256_loadu_ps(v + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absm), _mm256_and_ps(v1, absm)),
                                 _mm256_max_ps(_mm256_and_ps(v2, absm), _mm256_and_ps(v3, absm)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float db = amax / 127.0f, id = db ? 1.0f / db : 0.0f;
        d[b] = _cvtsh_ss(_cvtss_sh(db, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m256 s = _mm256_set1_ps(id);
        /* int32 -> int16 -> int8 with saturation; packs interleave 128-bit lanes, so
         * reorder the dwords afterwards */
        const __m256i i0 = round_away(_mm256_mul_ps(v0, s)), i1 = round_away(_mm256_mul_ps(v1, s));
        const __m256i i2 = round_away(_mm256_mul_ps(v2, s)), i3 = round_away(_mm256_mul_ps(v3, s));
        const __m256i p =
            _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        const __m256i o = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(qs + b * 32), o);
    }
}

#endif /* __x86_64__ */
