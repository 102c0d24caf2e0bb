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

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Software prefetch distance along each of a tile's 4 weight rows while the
 * first input tile streams them from memory. Four rows side by side, rows
 * apart, stream far slower than one sequential run without it; measured on
 * the Zen VM (W 16384 x 2048 q8_0 from DRAM, one thread, n = 2 / 4): 2.4-3.0
 * / 2.5-3.2 ms at 1 KiB ahead, 1.4-2.2 / 1.6-2.3 ms at 8 KiB, no better at
 * 16 KiB. Past a row's end it fetches the rows that come next. */
#define PF_BYTES 8192

/* [sum a, sum b, sum c, sum d] */
ALWAYS_INLINE __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 ab =
        _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
    const __m512 cd =
        _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
    /* t = [a', b', c', d'] as four 128-bit quarters, each 4 partial sums */
    const __m512 t =
        _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
    const __m256 lo = _mm512_castps512_ps256(t), hi = _mm512_extractf32x8_ps(t, 1);
    __m256 h = _mm256_hadd_ps(lo, hi); /* [a01 a23 c01 c23 | b01 b23 d01 d23] */
    h = _mm256_hadd_ps(h, h);          /* [a c a c | b d b d] */
    return _mm_unpacklo_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

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

void st__k_gemm_f32_avx512(int64_t k, int64_t nr, const float *w, int64_t nx, const float *x,
                           float *y, int64_t ldy) {
    for (int64_t r = 0; r < nr; r += 4) {
        const int nrow = nr - r < 4 ? (int)(nr - r) : 4;
        const float *wr[4];
        for (int i = 0; i < 4; i++)
            wr[i] = w + (r + (i < nrow ? i : nrow - 1)) * k;
        if (nx == 1) {
            __m512 a[4];
            for (int i = 0; i < 4; i++)
                a[i] = row1_f32(k, wr[i], x);
            store_rows(y + r, reduce4(a[0], a[1], a[2], a[3]), nrow);
            continue;
        }
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
            _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) {                                  \
                const int8_t *xp = xqs + c * k + b * 32;                                           \
                const float *dp = xd + c * (k / 32) + b;                                           \
                if (two) {                                                                         \
                    xv[c] = _mm512_loadu_si512(xp);                                                \
                    dx[c] = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(ld2_f32(dp)));       \
                } else {                                                                           \
                    xv[c] = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)xp));       \
                    dx[c] = _mm512_maskz_mov_ps(0x00ff, _mm512_set1_ps(dp[0]));                    \
                }                                                                                  \
            }                                                                                      \
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
                const int8_t *xp = xqs + c * k + b * 32;                                           \
                const float *dp = xd + c * (k / 32) + b;                                           \
                if (two) {                                                                         \
                    xv[c] = _mm512_xor_si512(_mm512_loadu_si512(xp), k80);                         \
                    dx[c] = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(ld2_f32(dp)));       \
                } else {                                                                           \
                    xv[c] = _mm512_xor_si512(                                                      \
                        _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)xp)), k80);     \
                    dx[c] = _mm512_maskz_mov_ps(0x00ff, _mm512_set1_ps(dp[0]));                    \
                }                                                                                  \
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
            const int8_t *xp = xq + b * 32;                                                        \
            __m512i xv, wv;                                                                        \
            __m512 dx, dw;                                                                         \
            if (b + 1 < nb) {                                                                      \
                xv = _mm512_loadu_si512(xp);                                                       \
                dx = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(ld2_f32(xd + b)));          \
                wv = LDP(a0);                                                                      \
                dw = LDPD(a0);                                                                     \
            } else {                                                                               \
                xv = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)xp));              \
                dx = _mm512_maskz_mov_ps(0x00ff, _mm512_set1_ps(xd[b]));                           \
                wv = LD2(a0, a0);                                                                  \
                dw = ld2_d(a0, a0, idx);                                                           \
            }                                                                                      \
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

void st__k_gemm_q8_0_avx512(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                            const float *xd, float *y, int64_t ldy) {
    if (st__cpu_qkernels_avx512_vnni())
        gemm_q8_vnni(k, nr, w, nx, xqs, xd, y, ldy);
    else
        gemm_q8_bw(k, nr, w, nx, xqs, xd, y, ldy);
}

void st__k_gemm_q4_0_avx512(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                            const float *xd, float *y, int64_t ldy) {
    if (st__cpu_qkernels_avx512_vnni())
        gemm_q4_vnni(k, nr, w, nx, xqs, xd, y, ldy);
    else
        gemm_q4_bw(k, nr, w, nx, xqs, xd, y, ldy);
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

void st__k_quantize_q8_avx512(int64_t k, const float *x, int8_t *qs, float *d) {
    for (int64_t b = 0; b < k / 32; b++) {
        const __m512 v0 = _mm512_loadu_ps(x + b * 32), v1 = _mm512_loadu_ps(x + b * 32 + 16);
        const float amax =
            _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float db = amax / 127.0f, id = db ? 1.0f / db : 0.0f;
        d[b] = _cvtsh_ss(_cvtss_sh(db, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m512 s = _mm512_set1_ps(id);
        _mm_storeu_si128((__m128i *)(qs + b * 32),
                         _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(v0, s))));
        _mm_storeu_si128((__m128i *)(qs + b * 32 + 16),
                         _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(v1, s))));
    }
}

#endif /* __x86_64__ */
