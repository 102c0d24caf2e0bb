/*
 * kernels_q_avx2.c — the AVX2 + FMA + F16C table of quantized / 16-bit
 * weight-row dots (kernels.h, st_cpu_qkernels; kernels_q.c is the spec).
 *
 * Block dots use llama.cpp's sign trick: vpmaddubsw multiplies unsigned by
 * signed bytes, so |w| (unsigned) meets sign(w) * x (signed); pairs of
 * products fit int16 for qs in [-127, 127], vpmaddwd sums them to int32,
 * and each block's 8 int32 lanes are scaled by d_w * d_x into an f32
 * accumulator. Compiled with -mavx2 -mfma -mf16c (CMake, by file name).
 * Stateless: no allocation, no threads.
 */
#if defined(__x86_64__)

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_math.h"

static inline float ld_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* int32 lanes of the signed byte dot of a and b (8 lanes, 4 products each) */
static inline __m256i dot_i8(__m256i a, __m256i b) {
    const __m256i ax = _mm256_sign_epi8(a, a), sb = _mm256_sign_epi8(b, a);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sb), _mm256_set1_epi16(1));
}

static float k_dot_q8_0_q8_0(int64_t n, const void *w, const void *x) {
    const uint8_t *a = w, *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int64_t nb = n / 32;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2, a += 2 * ST_CPU_Q8_0_BYTES, b += 2 * ST_CPU_Q8_0_BYTES) {
        const __m256i p0 = dot_i8(_mm256_loadu_si256((const __m256i *)(a + 2)),
                                  _mm256_loadu_si256((const __m256i *)(b + 2)));
        const __m256i p1 = dot_i8(_mm256_loadu_si256((const __m256i *)(a + 36)),
                                  _mm256_loadu_si256((const __m256i *)(b + 36)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a) * ld_f16(b)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a + 34) * ld_f16(b + 34)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    if (i < nb) {
        const __m256i p0 = dot_i8(_mm256_loadu_si256((const __m256i *)(a + 2)),
                                  _mm256_loadu_si256((const __m256i *)(b + 2)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a) * ld_f16(b)), _mm256_cvtepi32_ps(p0), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

/* the 32 nibbles of a q4_0 block as signed bytes in [-8, 7], element order */
static inline __m256i unpack_q4(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_sub_epi8(_mm256_and_si256(v, _mm256_set1_epi8(15)), _mm256_set1_epi8(8));
}

static float k_dot_q4_0_q8_0(int64_t n, const void *w, const void *x) {
    const uint8_t *a = w, *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int64_t nb = n / 32;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2, a += 2 * ST_CPU_Q4_0_BYTES, b += 2 * ST_CPU_Q8_0_BYTES) {
        const __m256i p0 = dot_i8(unpack_q4(a + 2), _mm256_loadu_si256((const __m256i *)(b + 2)));
        const __m256i p1 = dot_i8(unpack_q4(a + 20), _mm256_loadu_si256((const __m256i *)(b + 36)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a) * ld_f16(b)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a + 18) * ld_f16(b + 34)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    if (i < nb) {
        const __m256i p0 = dot_i8(unpack_q4(a + 2), _mm256_loadu_si256((const __m256i *)(b + 2)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a) * ld_f16(b)), _mm256_cvtepi32_ps(p0), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

static float k_dot_f16_f32(int64_t n, const uint16_t *w, const float *x) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))),
                             _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8))),
                             _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += _cvtsh_ss(w[i]) * x[i];
    return s;
}

static inline __m256 bf16x8(const uint16_t *p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static float k_dot_bf16_f32(int64_t n, const uint16_t *w, const float *x) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += st__k_bf16_to_f32(w[i]) * x[i];
    return s;
}

static int g_has_avx_vnni = -1; /* -1 unknown, 0/1 */

/* AVX-VNNI: CPUID leaf 7 subleaf 1, EAX bit 4 (read directly: not every
 * compiler's __builtin_cpu_supports knows the name). The AVX2 level is
 * only chosen where the OS saves the YMM state, which VEX vpdpbusd needs. */
static int cpu_avx_vnni(void) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 4) & 1u;
}

int st__cpu_qkernels_avx2_vnni(void) {
    int v = __atomic_load_n(&g_has_avx_vnni, __ATOMIC_RELAXED);
    if (v < 0) {
        v = cpu_avx_vnni();
        __atomic_store_n(&g_has_avx_vnni, v, __ATOMIC_RELAXED);
    }
    return v;
}

void st__cpu_qkernels_avx2_vnni_override(int use) {
    if (use < 0) use = -1;
    else if (use > 0) use = cpu_avx_vnni();
    __atomic_store_n(&g_has_avx_vnni, use, __ATOMIC_RELAXED);
}

const st_cpu_qkernels st__cpu_qkernels_avx2 = {
    .level = ST_SIMD_AVX2,
    .name = "avx2",
    .dot_q8_0_q8_0 = k_dot_q8_0_q8_0,
    .dot_q4_0_q8_0 = k_dot_q4_0_q8_0,
    .dot_f16_f32 = k_dot_f16_f32,
    .dot_bf16_f32 = k_dot_bf16_f32,
    .gemm_f32 = st__k_gemm_f32_avx2,
    .gemm_q8_0 = st__k_gemm_q8_0_avx2,
    .gemm_q4_0 = st__k_gemm_q4_0_avx2,
    .gemm_q8_0x16 = st__k_gemm_q8_0x16_avx2,
    .gemm_q4_0x16 = st__k_gemm_q4_0x16_avx2,
    .x16_ready = st__cpu_qkernels_avx2_vnni,
    .quantize_q8 = st__k_quantize_q8_avx2,
};

#endif /* __x86_64__ */
