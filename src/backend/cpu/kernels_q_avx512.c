/*
 * kernels_q_avx512.c — the AVX-512 table of quantized / 16-bit weight-row
 * dots (kernels.h, st_cpu_qkernels; kernels_q.c is the spec).
 *
 * Two 32-element blocks fill one 512-bit register. The byte dot keeps the
 * unsigned x signed operand order of vpmaddubsw / vpdpbusd with the sign
 * trick: |w| as the unsigned operand, x negated where w < 0 as the signed
 * one. With AVX512_VNNI (detected once, as the BF16 table does) vpdpbusd
 * does multiply, pair-add and quad-add in one instruction; without it,
 * vpmaddubsw + vpmaddwd. Each block's 16 int32 lanes (8 per block) are
 * scaled by its d_w * d_x into f32 accumulators. Compiled with the AVX-512
 * F/BW/VL/DQ flags (CMake, by file name); the VNNI functions carry their own
 * target attribute. Stateless apart from the cached CPU check; no
 * allocation, no threads.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_math.h"

static inline float ld_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline __m512i ld2_q8(const uint8_t *b0, const uint8_t *b1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),
                              _mm256_loadu_si256((const __m256i *)(b1 + 2)), 1);
}

static inline __m256i unpack_q4(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_sub_epi8(_mm256_and_si256(v, _mm256_set1_epi8(15)), _mm256_set1_epi8(8));
}

static inline __m512i ld2_q4(const uint8_t *b0, const uint8_t *b1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(unpack_q4(b0 + 2)), unpack_q4(b1 + 2), 1);
}

static inline __m512 scale2(float d0, float d1) {
    return _mm512_insertf32x8(_mm512_set1_ps(d0), _mm256_set1_ps(d1), 1);
}

/* |a| and b with a's signs */
#define SIGN_TRICK(a, b, ax, sb)                                                    \
    const __m512i ax = _mm512_abs_epi8(a);                                          \
    const __m512i sb = _mm512_mask_sub_epi8(b, _mm512_movepi8_mask(a), _mm512_setzero_si512(), b)

static inline __m512i dot_bw(__m512i a, __m512i b) {
    SIGN_TRICK(a, b, ax, sb);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(ax, sb), _mm512_set1_epi16(1));
}

__attribute__((target("avx512vnni"))) static inline __m512i dot_vnni(__m512i a, __m512i b) {
    SIGN_TRICK(a, b, ax, sb);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, sb);
}

/* a block-dot function: WB weight block bytes, LD2 the weight loader, DOT the byte dot */
#define DEFINE_DOT(fname, ATTR, WB, LD2, DOT)                                            \
    ATTR static float fname(int64_t n, const void *w, const void *x) {                   \
        const uint8_t *a = w, *b = x;                                                    \
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();                   \
        const int64_t nb = n / 32;                                                       \
        int64_t i = 0;                                                                   \
        for (; i + 3 < nb; i += 4, a += 4 * (WB), b += 4 * ST_CPU_Q8_0_BYTES) {          \
            const __m512i p0 = DOT(LD2(a, a + (WB)), ld2_q8(b, b + 34));                 \
            const __m512i p1 = DOT(LD2(a + 2 * (WB), a + 3 * (WB)), ld2_q8(b + 68, b + 102)); \
            acc0 = _mm512_fmadd_ps(scale2(ld_f16(a) * ld_f16(b), ld_f16(a + (WB)) * ld_f16(b + 34)), \
                                   _mm512_cvtepi32_ps(p0), acc0);                        \
            acc1 = _mm512_fmadd_ps(scale2(ld_f16(a + 2 * (WB)) * ld_f16(b + 68),         \
                                          ld_f16(a + 3 * (WB)) * ld_f16(b + 102)),       \
                                   _mm512_cvtepi32_ps(p1), acc1);                        \
        }                                                                                \
        for (; i + 1 < nb; i += 2, a += 2 * (WB), b += 2 * ST_CPU_Q8_0_BYTES) {          \
            const __m512i p0 = DOT(LD2(a, a + (WB)), ld2_q8(b, b + 34));                 \
            acc0 = _mm512_fmadd_ps(scale2(ld_f16(a) * ld_f16(b), ld_f16(a + (WB)) * ld_f16(b + 34)), \
                                   _mm512_cvtepi32_ps(p0), acc0);                        \
        }                                                                                \
        if (i < nb) { /* the last block against itself, its upper half scaled by 0 */    \
            const __m512i p0 = DOT(LD2(a, a), ld2_q8(b, b));                             \
            acc0 = _mm512_fmadd_ps(scale2(ld_f16(a) * ld_f16(b), 0.0f), _mm512_cvtepi32_ps(p0), acc0); \
        }                                                                                \
        return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));                          \
    }

DEFINE_DOT(dot_q8_bw, , ST_CPU_Q8_0_BYTES, ld2_q8, dot_bw)
DEFINE_DOT(dot_q4_bw, , ST_CPU_Q4_0_BYTES, ld2_q4, dot_bw)
DEFINE_DOT(dot_q8_vnni, __attribute__((target("avx512vnni"))), ST_CPU_Q8_0_BYTES, ld2_q8, dot_vnni)
DEFINE_DOT(dot_q4_vnni, __attribute__((target("avx512vnni"))), ST_CPU_Q4_0_BYTES, ld2_q4, dot_vnni)

static int g_has_vnni = -1; /* -1 unknown, 0/1 */

static int has_vnni(void) {
    int v = __atomic_load_n(&g_has_vnni, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512vnni") ? 1 : 0;
        __atomic_store_n(&g_has_vnni, v, __ATOMIC_RELAXED);
    }
    return v;
}

void st__cpu_qkernels_avx512_vnni_override(int use) {
    if (use < 0) use = -1;
    else if (use > 0) use = __builtin_cpu_supports("avx512vnni") ? 1 : 0;
    __atomic_store_n(&g_has_vnni, use, __ATOMIC_RELAXED);
}

int st__cpu_qkernels_avx512_vnni(void) { return has_vnni(); }

static float k_dot_q8_0_q8_0(int64_t n, const void *w, const void *x) {
    return has_vnni() ? dot_q8_vnni(n, w, x) : dot_q8_bw(n, w, x);
}

static float k_dot_q4_0_q8_0(int64_t n, const void *w, const void *x) {
    return has_vnni() ? dot_q4_vnni(n, w, x) : dot_q4_bw(n, w, x);
}

static float k_dot_f16_f32(int64_t n, const uint16_t *w, const float *x) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i))),
                             _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + 16))),
                             _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i < n; i += 16) {
        const int64_t rem = n - i < 16 ? n - i : 16;
        const __mmask16 m = (__mmask16)((1u << rem) - 1u);
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + i)),
                             _mm512_maskz_loadu_ps(m, x + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

static inline __m512 bf16x16(__m256i v) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

static float k_dot_bf16_f32(int64_t n, const uint16_t *w, const float *x) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(bf16x16(_mm256_loadu_si256((const __m256i *)(w + i))),
                             _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(bf16x16(_mm256_loadu_si256((const __m256i *)(w + i + 16))),
                             _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i < n; i += 16) {
        const int64_t rem = n - i < 16 ? n - i : 16;
        const __mmask16 m = (__mmask16)((1u << rem) - 1u);
        a0 = _mm512_fmadd_ps(bf16x16(_mm256_maskz_loadu_epi16(m, w + i)),
                             _mm512_maskz_loadu_ps(m, x + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

const st_cpu_qkernels st__cpu_qkernels_avx512 = {
    .level = ST_SIMD_AVX512,
    .name = "avx512",
    .dot_q8_0_q8_0 = k_dot_q8_0_q8_0,
    .dot_q4_0_q8_0 = k_dot_q4_0_q8_0,
    .dot_f16_f32 = k_dot_f16_f32,
    .dot_bf16_f32 = k_dot_bf16_f32,
    .gemm_f32 = st__k_gemm_f32_avx512,
    .gemm_q8_0 = st__k_gemm_q8_0_avx512,
    .gemm_q4_0 = st__k_gemm_q4_0_avx512,
    .gemm_q8_0x16 = st__k_gemm_q8_0x16_avx512,
    .gemm_q4_0x16 = st__k_gemm_q4_0x16_avx512,
    .x16_ready = st__cpu_qkernels_avx512_vnni,
    .quantize_q8 = st__k_quantize_q8_avx512,
};

#endif /* __x86_64__ */
