/*
 * infer_kernels.c — the scalar kernels of infer_kernels.h (the reference the
 * SIMD levels are checked against) and the choice of kernels per SIMD
 * level. Stateless but for the sampler's level, detected once under
 * pthread_once; any thread.
 */
#include "infer/infer_kernels.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "strata/hw.h"

void st__att_scalar(const st__att_args *a) {
    const int64_t D = a->D, n = a->n_keys, bt = a->bt, row = a->row, bstride = bt * row;
    for (int64_t j = 0; j < a->n_heads; j++) {
        const int64_t kvo = ((a->first + j) / a->group - a->first / a->group) * D;
        float *sc = a->scores + j * n;
        const float *q = a->q + j * D;
        float mx = -INFINITY;
        for (int64_t s0 = 0; s0 < n; s0 += bt) {
            const float *kb = a->k + (int64_t)a->blocks[s0 / bt] * bstride + kvo;
            const int64_t m = n - s0 < bt ? n - s0 : bt;
            for (int64_t s = 0; s < m; s++) {
                const float *kr = kb + s * row;
                float acc = 0.0f;
                for (int64_t i = 0; i < D; i++)
                    acc += q[i] * kr[i];
                acc *= a->scale;
                sc[s0 + s] = acc;
                if (acc > mx) mx = acc;
            }
        }
        float sum = 0.0f;
        for (int64_t s = 0; s < n; s++) {
            sc[s] = expf(sc[s] - mx);
            sum += sc[s];
        }
        const float inv = 1.0f / sum;
        float *o = a->out + j * D;
        memset(o, 0, (size_t)D * sizeof(float));
        for (int64_t s0 = 0; s0 < n; s0 += bt) {
            const float *vb = a->v + (int64_t)a->blocks[s0 / bt] * bstride + kvo;
            const int64_t m = n - s0 < bt ? n - s0 : bt;
            for (int64_t s = 0; s < m; s++) {
                const float p = sc[s0 + s] * inv, *vr = vb + s * row;
                for (int64_t i = 0; i < D; i++)
                    o[i] += p * vr[i];
            }
        }
    }
}

static int32_t argmax_scalar(int64_t n, const float *x) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best] || x[best] != x[best]) best = i;
    return (int32_t)best;
}

/* in double, as the sampler computed it before the SIMD levels existed */
static double exp_sum_scalar(int64_t n, const float *x, float mx, float scale, float *y) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float e = (float)exp(((double)x[i] - (double)mx) * (double)scale);
        if (y) y[i] = e;
        sum += e;
    }
    return sum;
}

const st__vocab_kernels st__vocab_scalar = {argmax_scalar, exp_sum_scalar};

st__att_fn st__att_kernel(int level) {
#if defined(__x86_64__)
    if (level == ST_SIMD_AVX512) return st__att_avx512;
    if (level == ST_SIMD_AVX2) return st__att_avx2;
#endif
    (void)level;
    return st__att_scalar;
}

const st__vocab_kernels *st__vocab_kernels_for(int level) {
#if defined(__x86_64__)
    if (level == ST_SIMD_AVX512) return &st__vocab_avx512;
    if (level == ST_SIMD_AVX2) return &st__vocab_avx2;
#endif
    (void)level;
    return &st__vocab_scalar;
}

static pthread_once_t g_level_once = PTHREAD_ONCE_INIT;
static int g_level = ST_SIMD_SCALAR;

static void detect_level(void) {
    st_hw_info info;
    st_simd_level level;
    if (st_hw_query(&info) == ST_OK && st_hw_simd_from_env(&info, &level) == ST_OK)
        g_level = (int)level;
}

int st__vocab_level(void) {
    pthread_once(&g_level_once, detect_level);
    return g_level;
}
