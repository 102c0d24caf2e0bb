/*
 * vecindex_dist.c — the vector index's distance kernels: the scalar
 * reference and the run-time choice among scalar, AVX2 and AVX-512
 * (vecindex_avx2.c, vecindex_avx512.c) from layer 1's feature detection,
 * capped by STRATA_SIMD. Stateless; safe from any thread.
 *
 * The scalar kernels sum in 8 interleaved partial sums, as the SIMD ones do
 * with their lanes, so that all levels round alike up to the order of the
 * final horizontal add.
 */
#include "vecindex_impl.h"

static float l2_scalar(const float *a, const float *b, int d) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= d; i += 8)
        for (int j = 0; j < 8; j++) {
            float t = a[i + j] - b[i + j];
            s[j] += t * t;
        }
    float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; i < d; i++) {
        float t = a[i] - b[i];
        r += t * t;
    }
    return r;
}

static float ip_scalar(const float *a, const float *b, int d) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= d; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; i < d; i++) r += a[i] * b[i];
    return r;
}

const st__vec_kernels st__vec_kernels_scalar = {"scalar", l2_scalar, ip_scalar};

const st__vec_kernels *st__vec_kernels_for(st_simd_level level) {
#if defined(__x86_64__)
    if (level == ST_SIMD_AVX512) return &st__vec_kernels_avx512;
    if (level == ST_SIMD_AVX2) return &st__vec_kernels_avx2;
#endif
    (void)level;
    return &st__vec_kernels_scalar;
}

const st__vec_kernels *st__vec_kernels_best(void) {
    static const st__vec_kernels *_Atomic cached;
    const st__vec_kernels *k = atomic_load(&cached);
    if (k) return k;
    st_hw_info info;
    st_simd_level level = ST_SIMD_SCALAR;
    if (st_hw_query(&info) == ST_OK && st_hw_simd_from_env(&info, &level) != ST_OK) {
        st_clear_error();
        level = st_hw_simd_best(&info);
    }
    k = st__vec_kernels_for(level);
    atomic_store(&cached, k);
    return k;
}
