/*
 * kernels.h — the CPU backend's kernel table (private to src/backend/cpu).
 *
 * One table per SIMD level (scalar, AVX2+FMA, AVX-512), all with the same
 * functions over contiguous runs of memory. The scalar table is the
 * reference and the spec: every other level must match it within the
 * tolerances its test states. Kernels never allocate and never create
 * threads; the executor (cpu_backend.c) splits work across the pool and calls
 * them on each thread's part.
 *
 * Strides sa/sb/sx are 1 (a contiguous run) or 0 (one broadcast element).
 */
#ifndef STRATA_BACKEND_CPU_KERNELS_H
#define STRATA_BACKEND_CPU_KERNELS_H

#include "strata/backend.h"

typedef struct st_cpu_kernels {
    st_simd_level level;
    const char *name; /* "scalar", "avx2", "avx512" */

    /* y[i] = f(x[i]) for the unary ops ST_OP_NEG..ST_OP_SCALE (alpha: SCALE).
     * y may equal x. */
    void (*unary)(st_op op, int64_t n, const float *x, float *y, float alpha);
    /* dx[i] = f'(x[i]) * dy[i] for op in NEG..SCALE; y = f(x) may be NULL
     * (kernels that can use it, e.g. exp/tanh/sqrt, may). */
    void (*unary_backward)(st_op op, int64_t n, const float *x, const float *y,
                           const float *dy, float *dx, float alpha);
    /* y[i] = a[i*sa] (op) b[i*sb] for ADD, SUB, MUL, DIV. y may equal a or b. */
    void (*binary)(st_op op, int64_t n, const float *a, int64_t sa, const float *b,
                   int64_t sb, float *y);
    /* y[i] += alpha * x[i*sx] */
    void (*axpy)(int64_t n, float alpha, const float *x, int64_t sx, float *y);
    float (*sum)(int64_t n, const float *x);
    float (*max)(int64_t n, const float *x); /* -inf for n == 0 */
    float (*dot)(int64_t n, const float *x, const float *y);

    /* rows of n along the last axis. The SIMD forward row kernels
     * (softmax, log_softmax, layernorm, rmsnorm and the _nt forms) prefetch,
     * during a pass over the row that runs in L1, n floats starting
     * ST_CPU_ROW_PREFETCH floats or one row, whichever is more, past the
     * row's start: the rows still to come of a contiguous tensor. softmax
     * and log_softmax also prefetch the same stretch past y's row for
     * writing. Their passes over a row are short and each starts on a new
     * 4 KiB page (a 1024-float row fills one), where a hardware prefetcher
     * stops. A prefetch never faults, so those floats need not exist. */
    void (*softmax)(int64_t n, const float *x, float *y);
    void (*log_softmax)(int64_t n, const float *x, float *y);
    /* dx = y * (dy - sum(dy*y)) */
    void (*softmax_backward)(int64_t n, const float *y, const float *dy, float *dx);
    /* dx = dy - exp(y) * sum(dy) */
    void (*log_softmax_backward)(int64_t n, const float *y, const float *dy, float *dx);
    /* y = (x - mean) * rstd * g + b; g and b may be NULL (1 and 0) */
    void (*layernorm)(int64_t n, const float *x, const float *g, const float *b, float eps,
                      float *y);
    /* dx for one row; dg_acc[i] += dy*xhat, db_acc[i] += dy (either may be NULL) */
    void (*layernorm_backward)(int64_t n, const float *x, const float *g, const float *dy,
                               float eps, float *dx, float *dg_acc, float *db_acc);
    /* y = x * rsqrt(mean(x^2) + eps) * g; g may be NULL */
    void (*rmsnorm)(int64_t n, const float *x, const float *g, float eps, float *y);
    void (*rmsnorm_backward)(int64_t n, const float *x, const float *g, const float *dy,
                             float eps, float *dx, float *dg_acc);

    /* Streaming forms, for outputs too large to stay in cache (the executor
     * picks them; see cpu_backend.c). Same arguments, contract and results
     * bit for bit as unary, binary, layernorm and rmsnorm, but y is written
     * with non-temporal stores, which skip the read-for-ownership of y's
     * lines and do not keep them in cache: from y's first vector-aligned
     * address on, whole vectors are streamed; the head before it and the
     * tail use ordinary (masked) stores, so y may have any alignment, and y
     * may equal x. Streaming stores are weakly ordered: the thread that made
     * them calls stream_fence() before any other thread may read y (the
     * executor does at the end of each thread's part of an op). The scalar
     * table's forms are its ordinary kernels and its fence does nothing. */
    void (*unary_nt)(st_op op, int64_t n, const float *x, float *y, float alpha);
    void (*binary_nt)(st_op op, int64_t n, const float *a, int64_t sa, const float *b,
                      int64_t sb, float *y);
    void (*layernorm_nt)(int64_t n, const float *x, const float *g, const float *b, float eps,
                         float *y);
    void (*rmsnorm_nt)(int64_t n, const float *x, const float *g, float eps, float *y);
    void (*stream_fence)(void);

    /* conversions (round to nearest even) */
    void (*bf16_to_f32)(int64_t n, const uint16_t *x, float *y);
    void (*f32_to_bf16)(int64_t n, const float *x, uint16_t *y);
    void (*f16_to_f32)(int64_t n, const uint16_t *x, float *y);
    void (*f32_to_f16)(int64_t n, const float *x, uint16_t *y);
    /* sum of x[i]*y[i] in f32 accumulation (AVX-512 BF16 dot where present) */
    float (*dot_bf16)(int64_t n, const uint16_t *x, const uint16_t *y);
} st_cpu_kernels;

/* Prefetch distance (floats) of the row kernels: 8 KiB, two 1024-float
 * rows; one row was too short on the Zen 5 VM, three no better. */
#define ST_CPU_ROW_PREFETCH 2048

/* The table of a level, or NULL when the level is not compiled in (e.g.
 * AVX-512 on Arm). Whether the CPU can run it is layer 1's question. */
const st_cpu_kernels *st__cpu_kernels(st_simd_level level);

/* Per-level tables, defined in kernels_scalar.c, kernels_avx2.c,
 * kernels_avx512.c. */
extern const st_cpu_kernels st__cpu_kernels_scalar;
#if defined(__x86_64__)
extern const st_cpu_kernels st__cpu_kernels_avx2;
extern const st_cpu_kernels st__cpu_kernels_avx512;

/* Appended (layer 2, for tests): the AVX-512 table's dot_bf16 uses vdpbf16ps
 * when the CPU has AVX512_BF16 (detected once). use = 0 forces the integer
 * fallback, 1 the BF16 instruction (only if the CPU has it), -1 detects
 * again. Not for production paths; not synchronized with running kernels. */
void st__cpu_kernels_avx512_bf16_override(int use);
#endif


/* ---- quantized and 16-bit weight rows (appended for strata/quant.h) ------------------
 * A second, smaller table per level, kept apart from st_cpu_kernels so the
 * tables above stay as they are. Blocks hold 32 elements in llama.cpp's byte
 * layout: q8_0 = {f16 d; int8 qs[32]} (34 bytes), q4_0 = {f16 d; uint8
 * qs[16]} (18 bytes; element j is the low nibble of qs[j], element j+16 the
 * high nibble, both minus 8). n is a multiple of 32 for the block kernels;
 * nothing needs alignment. The block dots return sum over blocks of
 * d_w * d_x * (integer dot of the block's qs): the integer dots are exact at
 * every level for qs in [-127, 127] (what the quantizers produce; -128 may
 * saturate in the sign trick, as in llama.cpp), so levels differ only in the
 * order of the f32 sum over blocks. dot_f16_f32 / dot_bf16_f32 convert the
 * weights on the fly (F16C / a 16-bit shift) and dot with f32 x. */
typedef struct st_cpu_qkernels {
    st_simd_level level;
    const char *name;
    float (*dot_q8_0_q8_0)(int64_t n, const void *w, const void *x);
    float (*dot_q4_0_q8_0)(int64_t n, const void *w, const void *x);
    float (*dot_f16_f32)(int64_t n, const uint16_t *w, const float *x);
    float (*dot_bf16_f32)(int64_t n, const uint16_t *w, const float *x);

    /* ---- small-n products (kernels_small*.c) ----
     * Register-blocked y = x . W^T for a run of nr weight rows and nx input
     * rows: y[i * ldy + r] = dot(W row r, x row i), r < nr, i < nx. Each
     * tile of 4 weight rows is streamed from memory once and dotted against
     * up to 4 (AVX-512) or 2 (AVX2, scalar: 1) input rows held in registers;
     * the next input tile re-reads those 4 rows from L1. So an nx-row
     * product reads W from memory once, and decode (nx = 1) uses the same
     * kernels. Weight rows are contiguous (f32: k floats apart; q8_0/q4_0:
     * k/32 blocks apart), input rows k elements apart, y rows ldy floats. */
    /* f32 weights, f32 inputs; any k >= 0. */
    void (*gemm_f32)(int64_t k, int64_t nr, const float *w, int64_t nx, const float *x,
                     float *y, int64_t ldy);
    /* q8_0 / q4_0 weights against inputs quantized by quantize_q8 (xqs:
     * nx rows of k int8, xd: nx rows of k/32 f32 scales); k a multiple of
     * 32. Per block: (integer dot) * (d_w * d_x), summed in f32, as the
     * block dots above. */
    void (*gemm_q8_0)(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                      const float *xd, float *y, int64_t ldy);
    void (*gemm_q4_0)(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                      const float *xd, float *y, int64_t ldy);
    /* q8_0 / q4_0 weights packed by st_wmatrix_pack (strata/quant.h: groups
     * of 16 interleaved rows; w at the group of the run's first row, nr
     * rows, the last group possibly partial), inputs as gemm_q8_0's plus xs:
     * nx rows of k/32 sums of each block's xqs. y[i * ldy + r] = sum over
     * blocks b in order of fmaf((float)(integer dot), d_w * d_x, sum), the
     * same bits for every nx. NULL where the level has none; callable only
     * while x16_ready() (a CPU feature, see the override below). */
    void (*gemm_q8_0x16)(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                         const float *xd, const int32_t *xs, float *y, int64_t ldy);
    void (*gemm_q4_0x16)(int64_t k, int64_t nr, const void *w, int64_t nx, const int8_t *xqs,
                         const float *xd, const int32_t *xs, float *y, int64_t ldy);
    int (*x16_ready)(void);
    /* One input row of k floats (a multiple of 32) to q8_0 values split
     * into qs[k] and d[k/32]: exactly st_quantize_row(ST_WT_Q8_0)'s
     * numbers (d = f16(amax / 127) as f32, qs = roundf(x / unrounded d),
     * ties away from zero) at every level. sums (may be NULL) gets each
     * block's sum of its qs (what the packed kernels start their lanes
     * from), taken from the values the quantizer already holds. */
    void (*quantize_q8)(int64_t k, const float *x, int8_t *qs, float *d, int32_t *sums);
} st_cpu_qkernels;

#define ST_CPU_Q8_0_BYTES 34
#define ST_CPU_Q4_0_BYTES 18

/* st_wmatrix_pack's layouts: a chunk of two blocks of a 16-row group is 64
 * bytes of scales and two blocks of weights (q8_0: 512 bytes each, q4_0:
 * 256), a lone last block the scales and one block */
#define ST_CPU_X16_ROWS 16
#define ST_CPU_Q8X16_BLOCK 512
#define ST_CPU_Q4X16_BLOCK 256
static inline size_t st__x16_block_bytes(int q4) {
    return q4 ? ST_CPU_Q4X16_BLOCK : ST_CPU_Q8X16_BLOCK;
}
/* a chunk: the scales, then n_blocks (2, or 1 for a lone last block) blocks */
static inline size_t st__x16_chunk_bytes(int q4, int n_blocks) {
    return 64 + (size_t)n_blocks * st__x16_block_bytes(q4);
}
static inline size_t st__x16_group_bytes(int q4, int64_t nb) {
    return (size_t)(nb / 2) * st__x16_chunk_bytes(q4, 2) +
           (size_t)(nb & 1) * st__x16_chunk_bytes(q4, 1);
}
/* How far ahead of a packed kernel's first input tile the software prefetch
 * runs on each stream, in bytes (both levels): 1, 2 and 8 KiB were no
 * better than 4 within the noise (stories-shaped decode on the Zen VM). */
#define ST_CPU_X16_PF 4096

/* The table of a level, or NULL when not compiled in (kernels_q.c). */
const st_cpu_qkernels *st__cpu_qkernels(st_simd_level level);
/* the small-n functions of each level (kernels_small*.c), for the tables */
void st__k_gemm_f32_scalar(int64_t k, int64_t nr, const float *w, int64_t nx, const float *x,
                           float *y, int64_t ldy);
void st__k_gemm_q8_0_scalar(int64_t k, int64_t nr, const void *w, int64_t nx,
                            const int8_t *xqs, const float *xd, float *y, int64_t ldy);
void st__k_gemm_q4_0_scalar(int64_t k, int64_t nr, const void *w, int64_t nx,
                            const int8_t *xqs, const float *xd, float *y, int64_t ldy);
void st__k_quantize_q8_scalar(int64_t k, const float *x, int8_t *qs, float *d,
                              int32_t *sums);
#if defined(__x86_64__)
void st__k_gemm_f32_avx2(int64_t k, int64_t nr, const float *w, int64_t nx, const float *x,
                         float *y, int64_t ldy);
void st__k_gemm_q8_0_avx2(int64_t k, int64_t nr, const void *w, int64_t nx,
                          const int8_t *xqs, const float *xd, float *y, int64_t ldy);
void st__k_gemm_q4_0_avx2(int64_t k, int64_t nr, const void *w, int64_t nx,
                          const int8_t *xqs, const float *xd, float *y, int64_t ldy);
void st__k_quantize_q8_avx2(int64_t k, const float *x, int8_t *qs, float *d,
                            int32_t *sums);
/* packed kernels on AVX-VNNI (VEX vpdpbusd; Intel client cores since Alder Lake) */
void st__k_gemm_q8_0x16_avx2(int64_t k, int64_t nr, const void *w, int64_t nx,
                             const int8_t *xqs, const float *xd, const int32_t *xs, float *y,
                             int64_t ldy);
void st__k_gemm_q4_0x16_avx2(int64_t k, int64_t nr, const void *w, int64_t nx,
                             const int8_t *xqs, const float *xd, const int32_t *xs, float *y,
                             int64_t ldy);
void st__k_gemm_f32_avx512(int64_t k, int64_t nr, const float *w, int64_t nx, const float *x,
                           float *y, int64_t ldy);
/* these two pick VNNI or AVX-512BW as the block dots do (the override below) */
void st__k_gemm_q8_0_avx512(int64_t k, int64_t nr, const void *w, int64_t nx,
                            const int8_t *xqs, const float *xd, float *y, int64_t ldy);
void st__k_gemm_q4_0_avx512(int64_t k, int64_t nr, const void *w, int64_t nx,
                            const int8_t *xqs, const float *xd, float *y, int64_t ldy);
void st__k_quantize_q8_avx512(int64_t k, const float *x, int8_t *qs, float *d,
                              int32_t *sums);
void st__k_gemm_q8_0x16_avx512(int64_t k, int64_t nr, const void *w, int64_t nx,
                               const int8_t *xqs, const float *xd, const int32_t *xs, float *y,
                               int64_t ldy);
void st__k_gemm_q4_0x16_avx512(int64_t k, int64_t nr, const void *w, int64_t nx,
                               const int8_t *xqs, const float *xd, const int32_t *xs, float *y,
                               int64_t ldy);
#endif
extern const st_cpu_qkernels st__cpu_qkernels_scalar;
#if defined(__x86_64__)
extern const st_cpu_qkernels st__cpu_qkernels_avx2;
extern const st_cpu_qkernels st__cpu_qkernels_avx512;
/* For tests: the AVX-512 block dots use vpdpbusd when the CPU has
 * AVX512_VNNI (detected once). use = 0 forces the AVX-512BW path, 1 VNNI
 * (only if present), -1 detects again. Not synchronized with running kernels. */
void st__cpu_qkernels_avx512_vnni_override(int use);
/* 1 when the AVX-512 table currently uses VNNI. */
int st__cpu_qkernels_avx512_vnni(void);
/* The same for the AVX2 table's packed kernels and AVX-VNNI (the VEX
 * vpdpbusd): 0 turns them off (the row-major kernels run), 1 on if the CPU
 * has it, -1 detects again. 1 when in use. */
void st__cpu_qkernels_avx2_vnni_override(int use);
int st__cpu_qkernels_avx2_vnni(void);
#endif

#endif
