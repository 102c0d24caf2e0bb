/*
 * infer_kernels.h — private to src/infer: the inner loops of the engine's
 * attention and of the sampler's passes over the vocabulary, one version
 * per SIMD level: infer_kernels.c (scalar, the reference and the spec),
 * infer_kernels_avx2.c, infer_kernels_avx512.c (CMake gives *_avx2.c and
 * *_avx512.c their instruction-set flags). The engine takes the level of
 * its CPU backend (STRATA_SIMD or st_backend_cpu_params.simd_level); the
 * sampler, which has no context, the level layer 1 reports for this CPU
 * under STRATA_SIMD, looked up once per process.
 *
 * The levels differ only in the order of float sums and in exp (the SIMD
 * levels use Cephes' expf polynomial, within 2 ulp of expf):
 * tests/test_infer.c holds every level to the scalar one.
 *
 * Kernels are stateless and never allocate: any thread may run any number
 * of them at once on disjoint outputs.
 */
#ifndef STRATA_INFER_KERNELS_H
#define STRATA_INFER_KERNELS_H

#include <stdint.h>

/* ---- attention: one query row, a run of heads, over the paged KV cache ----------
 * For each head j in [0, n_heads):
 *   out_j = softmax(scale * q_j . K_j[0..n_keys)) V_j
 * q_j = q + j * D, out_j = out + j * D (heads are consecutive in a row).
 * Head j reads the KV head (first + j) / group, first = the run's first
 * query head's index within its group (grouped-query attention; group = 1
 * and first = 0 without it), at floats ((first + j) / group) * D past k and
 * v. Key s's row is at k + blocks[s / bt] * bt * row + (s % bt) * row (the
 * same for v): the cache holds [block][token][n_kv_head * D] per layer, and
 * k, v point at block 0's first row already offset to the run's first KV
 * head. A run of heads reads each cached row once, front to back, which
 * lets the hardware prefetchers stream it. */
typedef struct st__att_args {
    int64_t D;             /* head size */
    int64_t n_heads;       /* query heads in the run, 1..ST_ATT_MAX_HEADS */
    int64_t group;         /* query heads per KV head */
    int64_t first;         /* the first query head's index within its group */
    int64_t n_keys;        /* keys 0..n_keys-1 (>= 1) */
    const float *q;        /* [n_heads * D] */
    const float *k, *v;    /* block 0, token 0, the run's first KV head */
    const int32_t *blocks; /* the sequence's block table */
    int64_t bt;            /* tokens per block */
    int64_t row;           /* floats between consecutive tokens' rows (n_kv_head * D) */
    float scale;           /* 1 / sqrt(D) */
    float *scores;         /* [n_heads * n_keys] scratch */
    float *out;            /* [n_heads * D], written (not accumulated) */
} st__att_args;

/* the most heads one call takes (the engine splits longer runs) */
#define ST_ATT_MAX_HEADS 64

typedef void (*st__att_fn)(const st__att_args *a);

/* ---- the sampler's passes over n logits (n >= 1) ----------------------------------- */
typedef struct st__vocab_kernels {
    /* the first index of the largest x[i] (NaNs are never the largest) */
    int32_t (*argmax)(int64_t n, const float *x);
    /* sum of exp((x[i] - mx) * scale), each term also stored in y[i] when y
     * is not NULL; x[i] <= mx is expected (terms then lie in [0, 1]) */
    double (*exp_sum)(int64_t n, const float *x, float mx, float scale, float *y);
} st__vocab_kernels;

void st__att_scalar(const st__att_args *a);
extern const st__vocab_kernels st__vocab_scalar;
#if defined(__x86_64__)
void st__att_avx2(const st__att_args *a);
void st__att_avx512(const st__att_args *a);
extern const st__vocab_kernels st__vocab_avx2;
extern const st__vocab_kernels st__vocab_avx512;
#endif

/* The kernels of an st_simd_level; the scalar ones for a level this file
 * has none for, or a negative level (a backend without SIMD levels). */
st__att_fn st__att_kernel(int level);
const st__vocab_kernels *st__vocab_kernels_for(int level);
/* The level the sampler uses: layer 1's best for this CPU, or STRATA_SIMD's
 * (scalar when that names a level the CPU lacks). Detected once; any thread. */
int st__vocab_level(void);

#endif
