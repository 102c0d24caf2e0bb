/*
 * kernels_small_avx512.c — AVX-512 small-n products y = x . W^T and the
 * activation quantizer (kernels.h; kernels_small.c is the spec).
 *
 * Register blocking: a tile is 4 weight rows x C input rows (C = 1..4), 4*C
 * zmm accumulators live over the whole row length k; every weight vector
 * loaded meets all C input vectors, so W is streamed from memory once per
 * call and each further group of 4 inputs re-reads the tile's 4 rows from
 * L1. At the end, reduce4 folds the 4 rows' accumulators of an input into
 * one 128-bit vector of 4 sums: 4 consecutive outputs, one store. A tail of
 * fewer than 4 weight rows repeats its last row and stores only the valid
 * lanes, so every tile has 4 rows.
 *
 * q8_0 / q4_0 weights: two 32-element blocks fill a zmm. With AVX512_VNNI
 * (the same run-time switch as the block dots) the byte dot is one vpdpbusd
 * of x + 128 (unsigned) against w, its lanes started at -128 * sum(w) (see
 * DEFINE_QTILE_VNNI); without it, the sign trick of kernels_q_avx512.c (|w|
 * unsigned against x negated where w < 0) with vpmaddubsw + vpmaddwd. Inputs come pre-quantized as
 * contiguous int8 and f32 scales (quantize_q8), so an input vector is one
 * 64-byte load and its scales one 8-byte load. Each (row, input) pair then
 * costs the byte dot, a convert and one multiply-add by d_w * d_x per two
 * blocks. Compiled with the AVX-512 F/BW/VL/DQ flags (CMake, by file name);
 * the VNNI functions carry their own target attribute. Stateless; no
 * allocation, no threads.
 */
#if defined(__x86_64__)

#include <immintrin.h>
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

#define reduce4 st__reduce4_avx512

ALWAYS_INLINE void store_rows(float *y, __m128 v, int nrow) {
    if (nrow >= 4)
        _mm_storeu_ps(y, v);
    else
        _mm_mask_storeu_ps(y, (__mmask8)((1u << nrow) - 1u), v);
}

/* ---- f32 --------------------------------------------------------------------------- */

ALWAYS_INLINE void tile_f32(const int C, int64_t k, const float *const wr[4], const float *x,
                            float *y, int64_t ldy, int nrow, int pf) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= k; j += 16) {
        if (pf) { /* first input tile: the rows come from memory */
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
                _mm_prefetch((const char *)(wr[r] + j) + PF_BYTES, _MM_HINT_T0);
        }
        __m512 xv[4];
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            xv[c] = _mm512_loadu_ps(x + c * k + j);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const __m512 wv = _mm512_loadu_ps(wr[r] + j);
#pragma GCC unroll 4
            for (int c = 0; c < C; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (j < k) {
        const __mmask16 m = (__mmask16)((1u << (k - j)) - 1u);
        __m512 xv[4];
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            xv[c] = _mm512_maskz_loadu_ps(m, x + c * k + j);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const __m512 wv = _mm512_maskz_loadu_ps(m, wr[r] + j);
#pragma GCC unroll 4
            for (int c = 0; c < C; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
        store_rows(y + c * ldy, reduce4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]), nrow);
}

/* One input row (decode): the tile's accumulation for C = 1, one row after
 * another, so each row streams from memory as one sequential run (4 rows
 * side by side streamed slower from DRAM: stories110M f32 decode). Bit for
 * bit the tile's sums. */
ALWAYS_INLINE __m512 row1_f32(int64_t k, const float *w, const float *x) {
    __m512 acc = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= k; j += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + j), _mm512_loadu_ps(x + j), acc);
    if (j < k) {
        const __mmask16 m = (__mmask16)((1u << (k - j)) - 1u);
        acc =
            _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + j), _mm512_maskz_loadu_ps(m, x + j), acc);
    }
    return acc;
}

/* Decode streams: one DRAM stream per thread reads far below the memory's
 * bandwidth on the Zen VM (the core cannot keep enough misses in flight;
 * a 2-thread read-sum of 256 MiB reaches 0.65-0.71 of the copy bandwidth
 * with one stream each, 0.85-0.89 with two streams and a software prefetch
 * 2-4 KiB ahead). So the one-input kernels split a call's rows into two
 * halves, A and B, and dot row i of A side by side with row i of B, each
 * row still summed in the order of the tiles (two chains, the same bits).
 * The prefetch runs DECODE_PF_F32 / DECODE_PF_Q bytes ahead on both
 * streams; past a row's end it fetches the rows that come next. Distances
 * measured by stories110M-shaped decode on the Zen VM (ratio to the copy
 * bandwidth of the same moment, medians of 7-11 rounds, two runs each):
 * f32 1.08 / 0.94 at 2 KiB, 0.96 / 0.83 at 4 KiB, 0.92 / 0.76 at 8 KiB;
 * q8_0 0.74 at 1 KiB, 0.85 / 0.70 at 2 KiB, 0.96 / 0.83 at 4 KiB, 1.03 /
 * 0.96 at 6 KiB, 1.04 / 0.97 at 8 KiB (its loop spends more time per byte
 * on arithmetic, so a line must be asked for further ahead). q4_0 takes
 * q8_0's distance (not measured separately). */
#define DECODE_PF_F32 2048
#define DECODE_PF_Q 8192

/* a group's 4 sums into y (kernels_gemv.h's FINISH) */
#define GROUP_STORE(acc, rows, nrow, r0)                                                           \
    store_rows(y + (r0), reduce4((acc)[0], (acc)[1], (acc)[2], (acc)[3]), nrow)

/* two rows side by side: row1_f32's sums of each */
ALWAYS_INLINE void row2_f32(int64_t k, const float *wa, const float *wb, const float *x, __m512 *sa,
                            __m512 *sb) {
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= k; j += 16) {
        _mm_prefetch((const char *)(wa + j) + DECODE_PF_F32, _MM_HINT_T0);
        _mm_prefetch((const char *)(wb + j) + DECODE_PF_F32, _MM_HINT_T0);
        const __m512 xv = _mm512_loadu_ps(x + j);
        a = _mm512_fmadd_ps(_mm512_loadu_ps(wa + j), xv, a);
        b = _mm512_fmadd_ps(_mm512_loadu_ps(wb + j), xv, b);
    }
    if (j < k) {
        const __mmask16 m = (__mmask16)((1u << (k - j)) - 1u);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + j);
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, wa + j), xv, a);
        b = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, wb + j), xv, b);
    }
    *sa = a;
    *sb = b;
}

void st__k_gemm_f32_avx512(int64_t k, int64_t nr, const float *w, int64_t nx, const float *x,
                           float *y, int64_t ldy) {
    if (nx == 1) {
#define F32_DOT1(pa) row1_f32(k, pa, x)
#define F32_DOT2(pa, pb, sa, sb) row2_f32(k, pa, pb, x, sa, sb)
        ST_GEMV_GROUPS(__m512, float, w, k, nr, F32_DOT1, F32_DOT2, GROUP_STORE);
#undef F32_DOT1
#undef F32_DOT2
        return;
    }
    for (int64_t r = 0; r < nr; r += 4) {
        const int nrow = nr - r < 4 ? (int)(nr - r) : 4;
        const float *wr[4];
        for (int i = 0; i < 4; i++)
            wr[i] = w + (r + (i < nrow ? i : nrow - 1)) * k;
        int64_t c = 0;
        for (; c + 4 <= nx; c += 4)
            tile_f32(4, k, wr, x + c * k, y + c * ldy + r, ldy, nrow, c == 0);
        switch (nx - c) {
        case 3:
            tile_f32(3, k, wr, x + c * k, y + c * ldy + r, ldy, nrow, c == 0);
            break;
        case 2:
            tile_f32(2, k, wr, x + c * k, y + c * ldy + r, ldy, nrow, c == 0);
            break;
        case 1:
            tile_f32(1, k, wr, x + c * k, y + c * ldy + r, ldy, nrow, c == 0);
            break;
        default:
            break;
        }
    }
}

/* ---- q8_0 / q4_0 ------------------------------------------------------------------- */

ALWAYS_INLINE __m256i unpack_q4(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_sub_epi8(_mm256_and_si256(v, _mm256_set1_epi8(15)), _mm256_set1_epi8(8));
}

/* the qs of blocks a and b (b may be a for a single block) */
ALWAYS_INLINE __m512i ld2_q8(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 2))),
                              _mm256_loadu_si256((const __m256i *)(b + 2)), 1);
}
ALWAYS_INLINE __m512i ld2_q4(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(unpack_q4(a + 2)), unpack_q4(b + 2), 1);
}

/* [f16 at a x 8, f16 at b x 8] as f32 */
ALWAYS_INLINE __m512 ld2_d(const uint8_t *a, const uint8_t *b, __m512i idx) {
    uint16_t h0, h1;
    memcpy(&h0, a, 2);
    memcpy(&h1, b, 2);
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* two floats (any alignment) in the low lanes */
ALWAYS_INLINE __m128 ld2_f32(const float *p) {
    uint64_t u;
    memcpy(&u, p, 8);
    return _mm_castsi128_ps(_mm_cvtsi64_si128((long long)u));
}

/* Input row x's pair of blocks b, b + 1 (of nb): the int8 values, and the
 * scales as [d(b) x 8, d(b + 1) x 8]; a lone last block (b + 1 == nb) fills
 * the low halves and leaves the high halves 0. */
ALWAYS_INLINE void ld_xpair(const int8_t *xq, const float *xd, int64_t b, int64_t nb, __m512i *xv,
                            __m512 *dx) {
    if (b + 1 < nb) {
        *xv = _mm512_loadu_si512(xq + b * 32);
        *dx =
            _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                  _mm512_castps128_ps512(ld2_f32(xd + b)));
    } else {
        *xv = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(xq + b * 32)));
        *dx = _mm512_maskz_mov_ps(0x00ff, _mm512_set1_ps(xd[b]));
    }
}

/* A pair of consecutive blocks at a: qs through two 32-byte loads, scales
 * through two 2-byte loads. (One 64-byte load for both scales plus a masked
 * load for the qs needs fewer instructions but was about 1.5x slower
 * streaming from memory on the Zen VM: loads split across cache lines.) */
ALWAYS_INLINE __m512i ldp_q4(const uint8_t *a) {
    return ld2_q4(a, a + ST_CPU_Q4_0_BYTES);
}
ALWAYS_INLINE __m512i ldp32_q8(const uint8_t *a) {
    return ld2_q8(a, a + ST_CPU_Q8_0_BYTES);
}
ALWAYS_INLINE __m512 ldp32_d_q8(const uint8_t *a) {
    return ld2_d(a, a + ST_CPU_Q8_0_BYTES,
                 _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
}
ALWAYS_INLINE __m512 ldp32_d_q4(const uint8_t *a) {
    return ld2_d(a, a + ST_CPU_Q4_0_BYTES,
                 _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
}

ALWAYS_INLINE __m512i dot_bw(__m512i ax, __m512i sb) {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(ax, sb), _mm512_set1_epi16(1));
}

/* One tile: WB weight block bytes, LDP / LDPD the qs / scale loaders of a
 * whole pair, LD2 (with ld2_d) those of a lone last block, DOT the byte dot.
 * nb blocks; pairs of blocks per step, an odd last block in the low half
 * with the high half's scale 0. */
#define DEFINE_QTILE(fname, ATTR, WB, LD2, LDP, LDPD, DOT)                                         \
    ATTR ALWAYS_INLINE void fname(const int C, int64_t nb, const uint8_t *const wr[4],             \
                                  const int8_t *xqs, const float *xd, int64_t k, float *y,         \
                                  int64_t ldy, int nrow, int pf) {                                 \
        const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);      \
        __m512 acc[4][4];                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                                        \
            _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();   \
        int64_t b = 0;                                                                             \
        for (; b < nb; b += 2) {                                                                   \
            const int two = b + 1 < nb;                                                            \
            __m512i xv[4];                                                                         \
            __m512 dx[4];                                                                          \
            _Pragma("GCC unroll 4") for (int c = 0; c < C; c++)                                    \
                ld_xpair(xqs + c * k, xd + c * nb, b, nb, &xv[c], &dx[c]);                         \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {                                  \
                const uint8_t *a0 = wr[r] + b * (WB);                                              \
                if (pf) _mm_prefetch((const char *)a0 + PF_BYTES, _MM_HINT_T0);                    \
                const __m512i wv = two ? LDP(a0) : LD2(a0, a0);                                    \
                const __m512 dw = two ? LDPD(a0) : ld2_d(a0, a0, idx);                             \
                const __m512i ax = _mm512_abs_epi8(wv);                                            \
                const __mmask64 neg = _mm512_movepi8_mask(wv);                                     \
                _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) {                              \
                    const __m512i sb =                                                             \
                        _mm512_mask_sub_epi8(xv[c], neg, _mm512_setzero_si512(), xv[c]);           \
                    acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DOT(ax, sb)),                   \
                                                _mm512_mul_ps(dw, dx[c]), acc[r][c]);              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int c = 0; c < C; c++)                                        \
            store_rows(y + c * ldy, reduce4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]), nrow);    \
    }

DEFINE_QTILE(qtile_q8_bw, , ST_CPU_Q8_0_BYTES, ld2_q8, ldp32_q8, ldp32_d_q8, dot_bw)
DEFINE_QTILE(qtile_q4_bw, , ST_CPU_Q4_0_BYTES, ld2_q4, ldp_q4, ldp32_d_q4, dot_bw)

/* The VNNI tile drops the sign trick for an offset: x + 128 (x ^ 0x80) is
 * unsigned, so vpdpbusd takes it against w as it is, and starting each
 * lane's sum at -128 * (its 4 w bytes' sum), made once per weight vector,
 * leaves exactly sum(x * w): one instruction per (row, input) pair. */
#define DEFINE_QTILE_VNNI(fname, WB, LD2, LDP, LDPD)                                               \
    __attribute__((target("avx512vnni"))) ALWAYS_INLINE void fname(                                \
        const int C, int64_t nb, const uint8_t *const wr[4], const int8_t *xqs, const float *xd,   \
        int64_t k, float *y, int64_t ldy, int nrow, int pf) {                                      \
        const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);      \
        const __m512i k80 = _mm512_set1_epi8((char)0x80);                                          \
        __m512 acc[4][4];                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                                        \
            _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();   \
        for (int64_t b = 0; b < nb; b += 2) {                                                      \
            const int two = b + 1 < nb;                                                            \
            __m512i xv[4];                                                                         \
            __m512 dx[4];                                                                          \
            _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) {                                  \
                ld_xpair(xqs + c * k, xd + c * nb, b, nb, &xv[c], &dx[c]);                         \
                xv[c] = _mm512_xor_si512(xv[c], k80);                                              \
            }                                                                                      \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {                                  \
                const uint8_t *a0 = wr[r] + b * (WB);                                              \
                if (pf) _mm_prefetch((const char *)a0 + PF_BYTES, _MM_HINT_T0);                    \
                const __m512i wv = two ? LDP(a0) : LD2(a0, a0);                                    \
                const __m512 dw = two ? LDPD(a0) : ld2_d(a0, a0, idx);                             \
                const __m512i corr = _mm512_sub_epi32(                                             \
                    _mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, wv)); \
                _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) acc[r][c] =                    \
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(corr, xv[c], wv)),      \
                                    _mm512_mul_ps(dw, dx[c]), acc[r][c]);                          \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int c = 0; c < C; c++)                                        \
            store_rows(y + c * ldy, reduce4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]), nrow);    \
    }

DEFINE_QTILE_VNNI(qtile_q8_vnni, ST_CPU_Q8_0_BYTES, ld2_q8, ldp32_q8, ldp32_d_q8)
DEFINE_QTILE_VNNI(qtile_q4_vnni, ST_CPU_Q4_0_BYTES, ld2_q4, ldp_q4, ldp32_d_q4)

/* One input row (decode): the tile's 4 rows are dotted one after another,
 * each row's bytes in one sequential run, which streams from memory faster
 * than 4 rows side by side (from DRAM on the Zen VM, W 16384 x 2048 q8_0,
 * one thread, CPU time: about 1.3 ms against 1.7-2.1 ms side by side, and
 * 1.4-1.6 ms for the block-dot kernel); the input row is re-read from L1
 * for each. The same sums as the tile, bit for bit. */
#define DEFINE_QROW1(fname, ATTR, WB, LD2, LDP, LDPD, DOTP)                                        \
    ATTR ALWAYS_INLINE __m512 fname(int64_t nb, const uint8_t *w, const int8_t *xq,                \
                                    const float *xd) {                                             \
        const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);      \
        __m512 acc = _mm512_setzero_ps();                                                          \
        for (int64_t b = 0; b < nb; b += 2) {                                                      \
            const uint8_t *a0 = w + b * (WB);                                                      \
            __m512i xv;                                                                            \
            __m512 dx;                                                                             \
            ld_xpair(xq, xd, b, nb, &xv, &dx);                                                     \
            const __m512i wv = b + 1 < nb ? LDP(a0) : LD2(a0, a0);                                 \
            const __m512 dw = b + 1 < nb ? LDPD(a0) : ld2_d(a0, a0, idx);                          \
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DOTP(wv, xv)), _mm512_mul_ps(dw, dx), acc);   \
        }                                                                                          \
        return acc;                                                                                \
    }

/* integer dot lanes of weights w and inputs x (signed bytes) */
ALWAYS_INLINE __m512i dotp_bw(__m512i w, __m512i x) {
    const __m512i ax = _mm512_abs_epi8(w);
    const __m512i sb = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return dot_bw(ax, sb);
}
__attribute__((target("avx512vnni"))) ALWAYS_INLINE __m512i dotp_vnni(__m512i w, __m512i x) {
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    const __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, w));
    return _mm512_dpbusd_epi32(corr, _mm512_xor_si512(x, k80), w);
}

DEFINE_QROW1(qrow1_q8_bw, , ST_CPU_Q8_0_BYTES, ld2_q8, ldp32_q8, ldp32_d_q8, dotp_bw)
DEFINE_QROW1(qrow1_q4_bw, , ST_CPU_Q4_0_BYTES, ld2_q4, ldp_q4, ldp32_d_q4, dotp_bw)
DEFINE_QROW1(qrow1_q8_vnni, __attribute__((target("avx512vnni"))), ST_CPU_Q8_0_BYTES, ld2_q8,
             ldp32_q8, ldp32_d_q8, dotp_vnni)
DEFINE_QROW1(qrow1_q4_vnni, __attribute__((target("avx512vnni"))), ST_CPU_Q4_0_BYTES, ld2_q4,
             ldp_q4, ldp32_d_q4, dotp_vnni)

#define DEFINE_QGEMM(fname, ATTR, WB, TILE, ROW1)                                                  \
    ATTR static void fname(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,    \
                           const float *xd, float *y, int64_t ldy) {                               \
        const int64_t nb = k / 32;                                                                 \
        const size_t rb = (size_t)nb * (WB);                                                       \
        for (int64_t r = 0; r < nr; r += 4) {                                                      \
            const int nrow = nr - r < 4 ? (int)(nr - r) : 4;                                       \
            const uint8_t *wr[4];                                                                  \
            for (int i = 0; i < 4; i++)                                                            \
                wr[i] = (const uint8_t *)w + (size_t)(r + (i < nrow ? i : nrow - 1)) * rb;         \
            if (nx == 1) {                                                                         \
                __m512 a[4];                                                                       \
                for (int i = 0; i < 4; i++)                                                        \
                    a[i] = ROW1(nb, wr[i], xqs, xd);                                               \
                store_rows(y + r, reduce4(a[0], a[1], a[2], a[3]), nrow);                          \
                continue;                                                                          \
            }                                                                                      \
            int64_t c = 0;                                                                         \
            for (; c + 4 <= nx; c += 4)                                                            \
                TILE(4, nb, wr, xqs + c * k, xd + c * nb, k, y + c * ldy + r, ldy, nrow, c == 0);  \
            switch (nx - c) {                                                                      \
            case 3:                                                                                \
                TILE(3, nb, wr, xqs + c * k, xd + c * nb, k, y + c * ldy + r, ldy, nrow, c == 0);  \
                break;                                                                             \
            case 2:                                                                                \
                TILE(2, nb, wr, xqs + c * k, xd + c * nb, k, y + c * ldy + r, ldy, nrow, c == 0);  \
                break;                                                                             \
            case 1:                                                                                \
                TILE(1, nb, wr, xqs + c * k, xd + c * nb, k, y + c * ldy + r, ldy, nrow, c == 0);  \
                break;                                                                             \
            default:                                                                               \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_QGEMM(gemm_q8_bw, , ST_CPU_Q8_0_BYTES, qtile_q8_bw, qrow1_q8_bw)
DEFINE_QGEMM(gemm_q4_bw, , ST_CPU_Q4_0_BYTES, qtile_q4_bw, qrow1_q4_bw)
DEFINE_QGEMM(gemm_q8_vnni, __attribute__((target("avx512vnni"))), ST_CPU_Q8_0_BYTES, qtile_q8_vnni,
             qrow1_q8_vnni)
DEFINE_QGEMM(gemm_q4_vnni, __attribute__((target("avx512vnni"))), ST_CPU_Q4_0_BYTES, qtile_q4_vnni,
             qrow1_q4_vnni)

/* ---- decode with VNNI: one input row, x-side work hoisted --------------------------- */

/* One input row against many weight rows (a decode step's thread share:
 * hundreds of rows) repeats, per row and block pair, work that depends on x
 * alone: the offset of x, the broadcast of its two scales and the sum
 * correction. Here it is done once per call: x stays signed and the
 * weights are made unsigned instead (q8_0: w ^ 0x80 = w + 128; q4_0: the
 * nibble as stored, 0..15 = w + 8), so vpdpbusd gives sum((w + off) x) and
 * starting each lane at -off * (its 4 x bytes' sum), made once per call,
 * leaves exactly sum(w x). Per row and pair that is one weight load (plus
 * the xor for q8_0), one vpdpbusd and the scale multiply-add, against the
 * extra vpdpbusd, subtract, xor and scale shuffle of qrow1_*_vnni. The
 * integer sums are exact either way and the float operations are the
 * tile's, so the outputs are the same bits (test_kernels_q's batch
 * invariance). Rows up to ROW1_MAX_PAIRS pairs (k <= 8192) take this path;
 * longer ones the generic row kernel. */
#define ROW1_MAX_PAIRS 128

typedef struct row1_x {
    __m512i x[ROW1_MAX_PAIRS];    /* a pair's 64 int8 (a lone last block: upper half 0) */
    __m512i init[ROW1_MAX_PAIRS]; /* each lane's -off * sum of its 4 x bytes */
    __m512 d[ROW1_MAX_PAIRS];     /* [d_x(b) x 8, d_x(b + 1) x 8] (lone block: upper 0) */
} row1_x;

__attribute__((target("avx512vnni"))) static void row1_prep(int64_t nb, const int8_t *xq,
                                                            const float *xd, char off, row1_x *p) {
    const __m512i o = _mm512_set1_epi8(off);
    for (int64_t b = 0; b < nb; b += 2) {
        __m512i xv;
        __m512 dx;
        ld_xpair(xq, xd, b, nb, &xv, &dx);
        p->x[b / 2] = xv;
        p->d[b / 2] = dx;
        p->init[b / 2] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), o, xv));
    }
}

/* unsigned weights of a pair at a (b: a lone block, loaded twice) */
ALWAYS_INLINE __m512i ldu_q8(const uint8_t *a, const uint8_t *b) {
    return _mm512_xor_si512(ld2_q8(a, b), _mm512_set1_epi8((char)0x80));
}
ALWAYS_INLINE __m256i unpack_q4u(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(15));
}
ALWAYS_INLINE __m512i ldu_q4(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(unpack_q4u(a + 2)), unpack_q4u(b + 2), 1);
}

/* one row's sum (DOT1) or two rows' side by side (DOT2) against prepared x */
#define DEFINE_QROWS_VNNI(fname1, fname2, WB, LDU)                                                 \
    __attribute__((target("avx512vnni"))) ALWAYS_INLINE __m512 fname1(                             \
        int64_t nb, const uint8_t *w, const row1_x *p) {                                           \
        const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);      \
        __m512 acc = _mm512_setzero_ps();                                                          \
        for (int64_t b = 0; b < nb; b += 2) {                                                      \
            const uint8_t *a0 = w + b * (WB), *a1 = b + 1 < nb ? a0 + (WB) : a0;                   \
            acc = _mm512_fmadd_ps(                                                                 \
                _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(p->init[b / 2], LDU(a0, a1), p->x[b / 2])), \
                _mm512_mul_ps(ld2_d(a0, a1, idx), p->d[b / 2]), acc);                              \
        }                                                                                          \
        return acc;                                                                                \
    }                                                                                              \
    __attribute__((target("avx512vnni"))) ALWAYS_INLINE void fname2(                               \
        int64_t nb, const uint8_t *wa, const uint8_t *wb, const row1_x *p, __m512 *sa,             \
        __m512 *sb) {                                                                              \
        const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);      \
        __m512 acc_a = _mm512_setzero_ps(), acc_b = _mm512_setzero_ps();                           \
        for (int64_t b = 0; b < nb; b += 2) {                                                      \
            const size_t o0 = (size_t)b * (WB), o1 = b + 1 < nb ? o0 + (WB) : o0;                  \
            _mm_prefetch((const char *)wa + o0 + DECODE_PF_Q, _MM_HINT_T0);                        \
            _mm_prefetch((const char *)wb + o0 + DECODE_PF_Q, _MM_HINT_T0);                        \
            const __m512 dx = p->d[b / 2];                                                         \
            acc_a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(                        \
                                        p->init[b / 2], LDU(wa + o0, wa + o1), p->x[b / 2])),      \
                                    _mm512_mul_ps(ld2_d(wa + o0, wa + o1, idx), dx), acc_a);       \
            acc_b = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(                        \
                                        p->init[b / 2], LDU(wb + o0, wb + o1), p->x[b / 2])),      \
                                    _mm512_mul_ps(ld2_d(wb + o0, wb + o1, idx), dx), acc_b);       \
        }                                                                                          \
        *sa = acc_a;                                                                               \
        *sb = acc_b;                                                                               \
    }

DEFINE_QROWS_VNNI(qrow_q8_u, qrow2_q8_u, ST_CPU_Q8_0_BYTES, ldu_q8)
DEFINE_QROWS_VNNI(qrow_q4_u, qrow2_q4_u, ST_CPU_Q4_0_BYTES, ldu_q4)

#define DEFINE_GEMV_VNNI(fname, WB, OFF, ROW1, ROW2)                                               \
    __attribute__((target("avx512vnni"))) static void fname(                                       \
        int64_t k, int64_t nr, const void *w, const int8_t *xq, const float *xd, float *y) {       \
        const int64_t nb = k / 32;                                                                 \
        row1_x p;                                                                                  \
        row1_prep(nb, xq, xd, (char)(OFF), &p);                                                    \
        const uint8_t *w8 = w;                                                                     \
        ST_GEMV_GROUPS(__m512, uint8_t, w8, (size_t)nb *(WB), nr, QD1_##ROW1, QD2_##ROW2,          \
                       GROUP_STORE);                                                               \
    }

#define QD1_qrow_q8_u(pa) qrow_q8_u(nb, pa, &p)
#define QD2_qrow2_q8_u(pa, pb, sa, sb) qrow2_q8_u(nb, pa, pb, &p, sa, sb)
#define QD1_qrow_q4_u(pa) qrow_q4_u(nb, pa, &p)
#define QD2_qrow2_q4_u(pa, pb, sa, sb) qrow2_q4_u(nb, pa, pb, &p, sa, sb)

DEFINE_GEMV_VNNI(gemv_q8_vnni, ST_CPU_Q8_0_BYTES, 0x80, qrow_q8_u, qrow2_q8_u)
DEFINE_GEMV_VNNI(gemv_q4_vnni, ST_CPU_Q4_0_BYTES, 8, qrow_q4_u, qrow2_q4_u)

void st__k_gemm_q8_0_avx512(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                            const float *xd, float *y, int64_t ldy) {
    if (st__cpu_qkernels_avx512_vnni() && nx == 1 && k / 32 <= 2 * ROW1_MAX_PAIRS)
        gemv_q8_vnni(k, nr, w, xqs, xd, y);
    else if (st__cpu_qkernels_avx512_vnni())
        gemm_q8_vnni(k, nr, w, nx, xqs, xd, y, ldy);
    else
        gemm_q8_bw(k, nr, w, nx, xqs, xd, y, ldy);
}

void st__k_gemm_q4_0_avx512(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                            const float *xd, float *y, int64_t ldy) {
    if (st__cpu_qkernels_avx512_vnni() && nx == 1 && k / 32 <= 2 * ROW1_MAX_PAIRS)
        gemv_q4_vnni(k, nr, w, xqs, xd, y);
    else if (st__cpu_qkernels_avx512_vnni())
        gemm_q4_vnni(k, nr, w, nx, xqs, xd, y, ldy);
    else
        gemm_q4_bw(k, nr, w, nx, xqs, xd, y, ldy);
}

/* ---- packed q8_0 / q4_0 (st_wmatrix_pack's layouts, strata/quant.h) ------------------ */

/* With 16 rows interleaved, one 64-byte load holds 4 consecutive weights
 * of 16 rows, unsigned (q8_0: stored + 128; q4_0: the nibbles as stored,
 * weight + 8, the low nibble of byte t weight t and the high one weight
 * t + 16, as in the block), and vpdpbusd against the input's 4 bytes
 * broadcast (signed) advances all 16 rows' sums: 8 of them per block, each
 * lane started at -offset * (the block's input sum) so it ends at the exact
 * integer dot. Then per block one convert of the 16 f16 scales, a multiply
 * by d_x and one multiply-add, and no reduction at the end: the lanes are
 * the outputs. About 13 vector operations per 512 q8_0 weight bytes (q4_0:
 * 4 more per 256 bytes, splitting the nibbles), against 7 per 64 for the
 * row-major kernel above (qrow_q8_u), which on the Zen VM is vector-bound
 * below the memory's speed.
 *
 * pk_tile: NG groups (1, or 2 side by side: two DRAM streams, as the
 * decode kernels above) x C inputs (1..4). Each integer sum is split over
 * SPLIT accumulators (j mod SPLIT, added at the block's end: exact) so at
 * least 8 dot chains are in flight whatever C is. The float sum of a
 * (row, input) is one multiply-add per block in block order, so outputs do
 * not depend on NG, C or the thread split. pf: the first input tile, whose
 * loads come from memory, prefetches ST_CPU_X16_PF bytes ahead on each
 * stream. */
__attribute__((target("avx512vnni"))) ALWAYS_INLINE void
pk_tile(const int Q4, const int NG, const int C, int64_t nb, const uint8_t *const g[2],
        const int8_t *xq, const float *xd, const int32_t *xs, int64_t k, float *const yg[2],
        int64_t ldy, const int nrow[2], int pf) {
    const int SPLIT = C == 1 ? 4 : C == 2 ? 2 : 1;
    const int WB = Q4 ? ST_CPU_Q4X16_BLOCK : ST_CPU_Q8X16_BLOCK, OFF = Q4 ? 8 : 128;
    const __m512i lo4 = _mm512_set1_epi8(15);
    __m512 acc[2][4];
#pragma GCC unroll 2
    for (int i = 0; i < NG; i++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            acc[i][c] = _mm512_setzero_ps();
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
        __m512i ia[2][4][4];
#pragma GCC unroll 2
        for (int i = 0; i < NG; i++)
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) {
                ia[i][c][0] = _mm512_set1_epi32(-OFF * xs[c * nb + b]);
#pragma GCC unroll 4
                for (int t = 1; t < SPLIT; t++)
                    ia[i][c][t] = _mm512_setzero_si512();
            }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            /* q8_0: vector j holds weights 4j..4j+3; q4_0: vector j % 4 holds
             * 4j..4j+3 in its low nibbles (j < 4) and in its high ones */
            __m512i xb[4];
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) {
                int32_t v;
                memcpy(&v, xq + c * k + b * 32 + 4 * j, 4);
                xb[c] = _mm512_set1_epi32(v);
            }
#pragma GCC unroll 2
            for (int i = 0; i < NG; i++) {
                const uint8_t *wv0 = p[i] + 64 + second * WB + 64 * (Q4 ? j % 4 : j);
                __m512i wv = _mm512_load_si512((const void *)wv0);
                if (Q4)
                    wv = j < 4 ? _mm512_and_si512(wv, lo4)
                               : _mm512_and_si512(_mm512_srli_epi16(wv, 4), lo4);
#pragma GCC unroll 4
                for (int c = 0; c < C; c++)
                    ia[i][c][j % SPLIT] = _mm512_dpbusd_epi32(ia[i][c][j % SPLIT], wv, xb[c]);
            }
        }
#pragma GCC unroll 2
        for (int i = 0; i < NG; i++) {
            const __m512 dw =
                _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(p[i] + second * 32)));
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) {
                __m512i t = ia[i][c][0];
#pragma GCC unroll 4
                for (int u = 1; u < SPLIT; u++)
                    t = _mm512_add_epi32(t, ia[i][c][u]);
                acc[i][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t),
                                            _mm512_mul_ps(dw, _mm512_set1_ps(xd[c * nb + b])),
                                            acc[i][c]);
            }
            if (second) p[i] += st__x16_chunk_bytes(Q4, 2);
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < NG; i++) {
        const __mmask16 m = (__mmask16)((1u << nrow[i]) - 1u);
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            _mm512_mask_storeu_ps(yg[i] + c * ldy, m, acc[i][c]);
    }
}

/* The run's groups split into halves A and B; group i of A goes side by
 * side with group i of B (an odd last A group alone), all inputs in tiles
 * of 4 against the pair while it is in cache. */
__attribute__((target("avx512vnni"))) ALWAYS_INLINE void
pk_gemm(const int Q4, int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
        const float *xd, const int32_t *xs, float *y, int64_t ldy) {
    const int64_t nb = k / 32, ng = (nr + 15) / 16, na = (ng + 1) / 2;
    const size_t gb = st__x16_group_bytes(Q4, nb);
    for (int64_t a = 0; a < na; a++) {
        const int64_t bi = na + a;
        const int two = bi < ng;
        const uint8_t *g[2] = {(const uint8_t *)w + (size_t)a * gb,
                               (const uint8_t *)w + (size_t)(two ? bi : a) * gb};
        const int nrow[2] = {nr - a * 16 < 16 ? (int)(nr - a * 16) : 16,
                             two ? (nr - bi * 16 < 16 ? (int)(nr - bi * 16) : 16) : 0};
        for (int64_t c = 0; c < nx; c += 4) {
            const int C = nx - c < 4 ? (int)(nx - c) : 4;
            float *const yg[2] = {y + c * ldy + a * 16, y + c * ldy + (two ? bi : a) * 16};
            const int8_t *q = xqs + c * k;
            const float *d = xd + c * nb;
            const int32_t *s = xs + c * nb;
            const int pf = c == 0;
#define PK_CASE(NGV, CV) pk_tile(Q4, NGV, CV, nb, g, q, d, s, k, yg, ldy, nrow, pf)
            if (two) {
                switch (C) {
                case 1: PK_CASE(2, 1); break;
                case 2: PK_CASE(2, 2); break;
                case 3: PK_CASE(2, 3); break;
                default: PK_CASE(2, 4); break;
                }
            } else {
                switch (C) {
                case 1: PK_CASE(1, 1); break;
                case 2: PK_CASE(1, 2); break;
                case 3: PK_CASE(1, 3); break;
                default: PK_CASE(1, 4); break;
                }
            }
#undef PK_CASE
        }
    }
}

__attribute__((target("avx512vnni"))) void
st__k_gemm_q8_0x16_avx512(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                          const float *xd, const int32_t *xs, float *y, int64_t ldy) {
    pk_gemm(0, k, nr, w, nx, xqs, xd, xs, y, ldy);
}

__attribute__((target("avx512vnni"))) void
st__k_gemm_q4_0x16_avx512(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                          const float *xd, const int32_t *xs, float *y, int64_t ldy) {
    pk_gemm(1, k, nr, w, nx, xqs, xd, xs, y, ldy);
}

/* ---- activation quantizer ------------------------------------------------------------ */

/* roundf: ties away from zero, exactly (trunc, then +-1 where |frac| >= 0.5) */
ALWAYS_INLINE __m512i round_away(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_abs_ps(_mm512_sub_ps(v, t));
    const __mmask16 up = _mm512_cmp_ps_mask(f, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, one));
}

void st__k_quantize_q8_avx512(int64_t k, const float *x, int8_t *qs, float *d, int32_t *sums) {
    for (int64_t b = 0; b < k / 32; b++) {
        const __m512 v0 = _mm512_loadu_ps(x + b * 32), v1 = _mm512_loadu_ps(x + b * 32 + 16);
        const float amax =
            _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float db = amax / 127.0f, id = db ? 1.0f / db : 0.0f;
        d[b] = _cvtsh_ss(_cvtss_sh(db, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m512 s = _mm512_set1_ps(id);
        const __m512i i0 = round_away(_mm512_mul_ps(v0, s)), i1 = round_away(_mm512_mul_ps(v1, s));
        _mm_storeu_si128((__m128i *)(qs + b * 32), _mm512_cvtepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(qs + b * 32 + 16), _mm512_cvtepi32_epi8(i1));
        if (sums) sums[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    }
}

#endif /* __x86_64__ */
