/*
 * kernels_small.c — the scalar small-n products and activation quantizer
 * (kernels.h: gemm_f32, gemm_q8_0, gemm_q4_0, quantize_q8 of st_cpu_qkernels).
 *
 * These are the spec the register-blocked AVX2 and AVX-512 versions
 * (kernels_small_avx2.c, kernels_small_avx512.c) are tested against: one
 * plain dot per (weight row, input row), blocks summed in order as the block
 * dots of kernels_q.c do, so a q8_0/q4_0 result equals dot_q*_q8_0 on the
 * same numbers bit for bit. The quantizer is llama.cpp's
 * quantize_row_q8_0_ref with the block scale kept as the f32 value of its f16.
 * Stateless: no allocation, no threads.
 */
#include <math.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_math.h"

static inline float ld_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return st__k_f16_to_f32(h);
}

void st__k_gemm_f32_scalar(int64_t k, int64_t nr, const float *w, int64_t nx, const float *x,
                           float *y, int64_t ldy) {
    for (int64_t i = 0; i < nx; i++)
        for (int64_t r = 0; r < nr; r++) {
            const float *wr = w + r * k, *xi = x + i * k;
            float s = 0.0f;
            for (int64_t j = 0; j < k; j++)
                s += wr[j] * xi[j];
            y[i * ldy + r] = s;
        }
}

void st__k_gemm_q8_0_scalar(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                            const float *xd, float *y, int64_t ldy) {
    const int64_t nb = k / 32;
    for (int64_t i = 0; i < nx; i++)
        for (int64_t r = 0; r < nr; r++) {
            const uint8_t *a = (const uint8_t *)w + (size_t)(r * nb) * ST_CPU_Q8_0_BYTES;
            const int8_t *xq = xqs + i * k;
            float s = 0.0f;
            for (int64_t b = 0; b < nb; b++, a += ST_CPU_Q8_0_BYTES) {
                const int8_t *qa = (const int8_t *)(a + 2), *qb = xq + b * 32;
                int32_t acc = 0;
                for (int j = 0; j < 32; j++)
                    acc += (int32_t)qa[j] * qb[j];
                s += (float)acc * (ld_f16(a) * xd[i * nb + b]);
            }
            y[i * ldy + r] = s;
        }
}

void st__k_gemm_q4_0_scalar(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                            const float *xd, float *y, int64_t ldy) {
    const int64_t nb = k / 32;
    for (int64_t i = 0; i < nx; i++)
        for (int64_t r = 0; r < nr; r++) {
            const uint8_t *a = (const uint8_t *)w + (size_t)(r * nb) * ST_CPU_Q4_0_BYTES;
            const int8_t *xq = xqs + i * k;
            float s = 0.0f;
            for (int64_t b = 0; b < nb; b++, a += ST_CPU_Q4_0_BYTES) {
                const uint8_t *qa = a + 2;
                const int8_t *qb = xq + b * 32;
                int32_t acc = 0;
                for (int j = 0; j < 16; j++)
                    acc += ((qa[j] & 15) - 8) * qb[j] + ((qa[j] >> 4) - 8) * qb[j + 16];
                s += (float)acc * (ld_f16(a) * xd[i * nb + b]);
            }
            y[i * ldy + r] = s;
        }
}

void st__k_quantize_q8_scalar(int64_t k, const float *x, int8_t *qs, float *d, int32_t *sums) {
    for (int64_t b = 0; b < k / 32; b++) {
        const float *v = x + b * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(v[j]));
        const float db = amax / 127.0f, id = db ? 1.0f / db : 0.0f;
        d[b] = st__k_f16_to_f32(st__k_f32_to_f16(db));
        int32_t t = 0;
        for (int j = 0; j < 32; j++) {
            qs[b * 32 + j] = (int8_t)roundf(v[j] * id);
            t += qs[b * 32 + j];
        }
        if (sums) sums[b] = t;
    }
}
