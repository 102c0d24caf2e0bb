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

/* ---- packed q8_0 / q4_0 with AVX-VNNI (st_wmatrix_pack's layouts) ---------------------- */

/* The AVX-512 kernel's method (kernels_small_avx512.c, "packed") on 256-bit
 * vectors, for CPUs with AVX2 and AVX-VNNI but no AVX-512 (Intel client
 * cores since Alder Lake): a 64-byte weight vector of the layout is two
 * halves, rows 0-7 and 8-15, each advanced by one VEX vpdpbusd against the
 * input's 4 bytes broadcast. The integer sums are exact and the float ones
 * are the same operations per lane (convert, d_w * d_x, multiply-add per
 * block in order), so the outputs are the AVX-512 kernel's bits. Sixteen
 * registers: one input at a time against two groups side by side (two DRAM
 * streams; 8 dot chains with each sum split in two), or two inputs against
 * one group. */
__attribute__((target("avxvnni"))) ALWAYS_INLINE void
pk_tile(const int Q4, const int NG, const int C, int64_t nb, const uint8_t *const g[2],
        const int8_t *xq, const float *xd, const int32_t *xs, int64_t k, float *const yg[2],
        int64_t ldy, const int nrow[2], int pf) {
    const int SPLIT = C == 1 ? (NG == 2 ? 2 : 4) : 1;
    const int WB = Q4 ? ST_CPU_Q4X16_BLOCK : ST_CPU_Q8X16_BLOCK, OFF = Q4 ? 8 : 128;
    const __m256i lo4 = _mm256_set1_epi8(15);
    __m256 acc[2][2][2]; /* [group][half][input] */
#pragma GCC unroll 2
    for (int i = 0; i < NG; i++)
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++)
#pragma GCC unroll 2
            for (int c = 0; c < C; c++)
                acc[i][h][c] = _mm256_setzero_ps();
    const uint8_t *p[2] = {g[0], g[1]};
    for (int64_t b = 0; b < nb; b++) {
        const int second = (int)(b & 1);
        if (pf && !second) {
            const int lines = (int)st__x16_chunk_bytes(Q4, b + 1 < nb ? 2 : 1) / 64;
#pragma GCC unroll 2
            for (int i = 0; i < NG; i++)
                for (int l = 0; l < lines; l++)
                    _mm_prefetch((const char *)p[i] + ST_CPU_X16_PF + 64 * l, _MM_HINT_T0);
        }
        __m256i ia[2][2][2][4]; /* [group][half][input][split] */
#pragma GCC unroll 2
        for (int i = 0; i < NG; i++)
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++)
#pragma GCC unroll 2
                for (int c = 0; c < C; c++) {
                    ia[i][h][c][0] = _mm256_set1_epi32(-OFF * xs[c * nb + b]);
#pragma GCC unroll 4
                    for (int t = 1; t < SPLIT; t++)
                        ia[i][h][c][t] = _mm256_setzero_si256();
                }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m256i xb[2];
#pragma GCC unroll 2
            for (int c = 0; c < C; c++) {
                int32_t v;
                memcpy(&v, xq + c * k + b * 32 + 4 * j, 4);
                xb[c] = _mm256_set1_epi32(v);
            }
#pragma GCC unroll 2
            for (int i = 0; i < NG; i++)
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    const uint8_t *w0 = p[i] + 64 + second * WB + 64 * (Q4 ? j % 4 : j) + 32 * h;
                    __m256i wv = _mm256_load_si256((const __m256i *)w0);
                    if (Q4)
                        wv = j < 4 ? _mm256_and_si256(wv, lo4)
                                   : _mm256_and_si256(_mm256_srli_epi16(wv, 4), lo4);
#pragma GCC unroll 2
                    for (int c = 0; c < C; c++)
                        ia[i][h][c][j % SPLIT] =
                            _mm256_dpbusd_avx_epi32(ia[i][h][c][j % SPLIT], wv, xb[c]);
                }
        }
#pragma GCC unroll 2
        for (int i = 0; i < NG; i++) {
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256 dw = _mm256_cvtph_ps(
                    _mm_load_si128((const __m128i *)(p[i] + second * 32 + 16 * h)));
#pragma GCC unroll 2
                for (int c = 0; c < C; c++) {
                    __m256i t = ia[i][h][c][0];
#pragma GCC unroll 4
                    for (int u = 1; u < SPLIT; u++)
                        t = _mm256_add_epi32(t, ia[i][h][c][u]);
                    acc[i][h][c] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(t), _mm256_mul_ps(dw, _mm256_set1_ps(xd[c * nb + b])),
                        acc[i][h][c]);
                }
            }
            if (second) p[i] += st__x16_chunk_bytes(Q4, 2);
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < NG; i++)
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const int cnt = nrow[i] - 8 * h;
            if (cnt <= 0) continue;
            const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt),
                                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#pragma GCC unroll 2
            for (int c = 0; c < C; c++) {
                float *o = yg[i] + c * ldy + 8 * h;
                if (cnt >= 8) _mm256_storeu_ps(o, acc[i][h][c]);
                else _mm256_maskstore_ps(o, m, acc[i][h][c]);
            }
        }
}

/* one input: the run's groups as halves A and B side by side (the AVX-512
 * kernel's walk); more: each group alone against inputs two at a time */
__attribute__((target("avxvnni"))) ALWAYS_INLINE void
pk_gemm(const int Q4, int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
        const float *xd, const int32_t *xs, float *y, int64_t ldy) {
    const int64_t nb = k / 32, ng = (nr + 15) / 16, na = (ng + 1) / 2;
    const size_t gb = st__x16_group_bytes(Q4, nb);
#define PK_ROWS(gi) (nr - (gi) * 16 < 16 ? (int)(nr - (gi) * 16) : 16)
    if (nx == 1) {
        for (int64_t a = 0; a < na; a++) {
            const int64_t bi = na + a;
            const int two = bi < ng;
            const uint8_t *g[2] = {(const uint8_t *)w + (size_t)a * gb,
                                   (const uint8_t *)w + (size_t)(two ? bi : a) * gb};
            const int nrow[2] = {PK_ROWS(a), two ? PK_ROWS(bi) : 0};
            float *const yg[2] = {y + a * 16, y + (two ? bi : a) * 16};
            if (two) pk_tile(Q4, 2, 1, nb, g, xqs, xd, xs, k, yg, ldy, nrow, 1);
            else pk_tile(Q4, 1, 1, nb, g, xqs, xd, xs, k, yg, ldy, nrow, 1);
        }
        return;
    }
    for (int64_t gi = 0; gi < ng; gi++) {
        const uint8_t *g[2] = {(const uint8_t *)w + (size_t)gi * gb, NULL};
        const int nrow[2] = {PK_ROWS(gi), 0};
        for (int64_t c = 0; c < nx; c += 2) {
            float *const yg[2] = {y + c * ldy + gi * 16, NULL};
            if (nx - c >= 2)
                pk_tile(Q4, 1, 2, nb, g, xqs + c * k, xd + c * nb, xs + c * nb, k, yg, ldy, nrow,
                        c == 0);
            else
                pk_tile(Q4, 1, 1, nb, g, xqs + c * k, xd + c * nb, xs + c * nb, k, yg, ldy, nrow,
                        c == 0);
        }
    }
#undef PK_ROWS
}

__attribute__((target("avxvnni"))) void
st__k_gemm_q8_0x16_avx2(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                        const float *xd, const int32_t *xs, float *y, int64_t ldy) {
    pk_gemm(0, k, nr, w, nx, xqs, xd, xs, y, ldy);
}

__attribute__((target("avxvnni"))) void
st__k_gemm_q4_0x16_avx2(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                        const float *xd, const int32_t *xs, float *y, int64_t ldy) {
    pk_gemm(1, k, nr, w, nx, xqs, xd, xs, y, ldy);
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

void st__k_quantize_q8_avx2(int64_t k, const float *x, int8_t *qs, float *d, int32_t *sums) {
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
        if (sums) { /* the values are within [-127, 127]: the packs did not saturate */
            const __m256i t = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
            __m128i h = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
            sums[b] = _mm_cvtsi128_si32(h);
        }
    }
}

#endif /* __x86_64__ */
