/*
 * kernels_q.c — the scalar table of quantized / 16-bit weight-row dots
 * (kernels.h, st_cpu_qkernels) and the lookup of a level's table.
 *
 * The scalar kernels are the spec the AVX2 and AVX-512 tables
 * (kernels_q_avx2.c, kernels_q_avx512.c) are tested against: one integer
 * dot per 32-element block, scaled by the two f16 scales and summed in f32.
 * Stateless: no allocation, no threads.
 */
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_math.h"

static inline float ld_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return st__k_f16_to_f32(h);
}

static float k_dot_q8_0_q8_0(int64_t n, const void *w, const void *x) {
    const uint8_t *a = w, *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++, a += ST_CPU_Q8_0_BYTES, b += ST_CPU_Q8_0_BYTES) {
        const int8_t *qa = (const int8_t *)(a + 2), *qb = (const int8_t *)(b + 2);
        int32_t acc = 0;
        for (int j = 0; j < 32; j++) acc += (int32_t)qa[j] * qb[j];
        s += (float)acc * (ld_f16(a) * ld_f16(b));
    }
    return s;
}

static float k_dot_q4_0_q8_0(int64_t n, const void *w, const void *x) {
    const uint8_t *a = w, *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++, a += ST_CPU_Q4_0_BYTES, b += ST_CPU_Q8_0_BYTES) {
        const uint8_t *qa = a + 2;
        const int8_t *qb = (const int8_t *)(b + 2);
        int32_t acc = 0;
        for (int j = 0; j < 16; j++)
            acc += ((qa[j] & 15) - 8) * qb[j] + ((qa[j] >> 4) - 8) * qb[j + 16];
        s += (float)acc * (ld_f16(a) * ld_f16(b));
    }
    return s;
}

static float k_dot_f16_f32(int64_t n, const uint16_t *w, const float *x) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += st__k_f16_to_f32(w[i]) * x[i];
    return s;
}

static float k_dot_bf16_f32(int64_t n, const uint16_t *w, const float *x) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += st__k_bf16_to_f32(w[i]) * x[i];
    return s;
}

const st_cpu_qkernels st__cpu_qkernels_scalar = {
    .level = ST_SIMD_SCALAR,
    .name = "scalar",
    .dot_q8_0_q8_0 = k_dot_q8_0_q8_0,
    .dot_q4_0_q8_0 = k_dot_q4_0_q8_0,
    .dot_f16_f32 = k_dot_f16_f32,
    .dot_bf16_f32 = k_dot_bf16_f32,
    .gemm_f32 = st__k_gemm_f32_scalar,
    .gemm_q8_0 = st__k_gemm_q8_0_scalar,
    .gemm_q4_0 = st__k_gemm_q4_0_scalar,
    .quantize_q8 = st__k_quantize_q8_scalar,
};

const st_cpu_qkernels *st__cpu_qkernels(st_simd_level level) {
    switch (level) {
    case ST_SIMD_SCALAR: return &st__cpu_qkernels_scalar;
#if defined(__x86_64__)
    case ST_SIMD_AVX2: return &st__cpu_qkernels_avx2;
    case ST_SIMD_AVX512: return &st__cpu_qkernels_avx512;
#endif
    default: return NULL;
    }
}
