/*
 * strata/backend.h — layer 2: devices that execute operations on memory.
 *
 * A backend executes one operation (st_op_desc) on strided views of memory
 * (st_view). It knows dtypes, byte strides, kernels and threads; it does not
 * know tensors, shapes rules, autograd or ownership (layer 3 does). Layer 3
 * validates every operation before it reaches a backend and guarantees the
 * layout rules stated per op below; a backend checks only what depends on
 * data (an embedding id out of range).
 *
 * The CPU backend owns a persistent thread pool (created once; no thread per
 * op) and picks AVX-512, AVX2+FMA or scalar kernels from what layer 1
 * detects (STRATA_SIMD forces a lower level). BLAS calls run either alone
 * with all cores while the pool sleeps, or single-threaded inside the pool's
 * partition of the work, never both at once.
 *
 * A backend object is not thread-safe: one thread submits operations.
 */
#ifndef STRATA_BACKEND_H
#define STRATA_BACKEND_H

#include "strata/base.h"
#include "strata/hw.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dtypes ---------------------------------------------------------------- */
typedef enum st_dtype {
    ST_F32 = 0,
    ST_BF16 = 1, /* bfloat16 stored as uint16_t */
    ST_F16 = 2,  /* IEEE half stored as uint16_t */
    ST_I32 = 3,
    ST_I8 = 4,   /* storage only (quantized blocks, later layers) */
    ST_DTYPE_COUNT_
} st_dtype;

size_t st_dtype_size(st_dtype t);      /* bytes per element; 0 for unknown */
const char *st_dtype_name(st_dtype t); /* "f32", "bf16", ...; "?" for unknown */

/* Scalar conversions (round to nearest even; NaN stays NaN). */
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);

/* ---- strided views ------------------------------------------------------------
 * A window on memory: ndim dimensions (1..ST_MAX_DIMS), ne[d] elements along
 * dimension d and nb[d] bytes between neighbours along it. Dimension ndim-1
 * is the innermost (row-major, as in NumPy and PyTorch). A stride of 0
 * repeats one element (broadcast). data == NULL marks an absent optional
 * operand. A 0-dim scalar is a view with ndim = 1 and ne[0] = 1. */
#define ST_MAX_DIMS 4

typedef struct st_view {
    void *data;
    st_dtype dtype;
    int ndim;
    int64_t ne[ST_MAX_DIMS];
    int64_t nb[ST_MAX_DIMS];
} st_view;

int64_t st_view_numel(const st_view *v);
/* Row-major with no gaps: nb[ndim-1] == elem size, nb[d] == nb[d+1]*ne[d+1]. */
bool st_view_is_contiguous(const st_view *v);

/* ---- operations ----------------------------------------------------------------
 * The one list of operations (layer 3 and layer 4 share it; view operations
 * never reach a backend). Values only grow.
 *
 * Layout rules layer 3 guarantees before compute (dst views are always
 * freshly allocated and contiguous unless stated):
 *  - unary / binary / axpy: f32; every src has dst's ndim and shape, with
 *    stride 0 along broadcast dimensions; the innermost stride of a src is 4
 *    or 0. dst may alias src[0] exactly (in place).
 *  - reductions SUM/MEAN/MAX along p.axis: src f32 any strides with the
 *    innermost stride 4; dst has src's ndim with ne[axis] == 1.
 *  - row ops (softmax, norms and their backwards): along the last axis;
 *    every src contiguous in the last axis (nb == 4) with the same rows.
 */
typedef enum st_op {
    ST_OP_NONE = 0,
    /* unary elementwise: dst = f(src0) */
    ST_OP_NEG, ST_OP_EXP, ST_OP_LOG, ST_OP_SQRT, ST_OP_TANH,
    ST_OP_GELU_TANH, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    ST_OP_GELU_ERF,  /* 0.5 x (1 + erf(x / sqrt(2))) */
    ST_OP_SILU, ST_OP_RELU,
    ST_OP_SCALE,     /* dst = p.alpha * src0 */
    /* binary elementwise with broadcasting: dst = src0 (op) src1 */
    ST_OP_ADD, ST_OP_SUB, ST_OP_MUL, ST_OP_DIV,
    /* reductions along p.axis (dst keeps the axis with size 1) */
    ST_OP_SUM, ST_OP_MEAN, ST_OP_MAX,
    /* along the last axis */
    ST_OP_SOFTMAX, ST_OP_LOG_SOFTMAX,
    ST_OP_LAYERNORM, /* src: x, gamma?, beta? ([n] each, data NULL if absent); p.eps */
    ST_OP_RMSNORM,   /* src: x, gamma?; p.eps */
    /* gathers */
    ST_OP_EMBEDDING, /* src: weight [V,D] f32 rows contiguous, ids i32 contiguous (any
                        shape); dst [ids..., D]. An id outside [0,V) is ST_ERR_BOUNDS. */
    /* matrix product: src a [..., M, K], b [..., K, N]; dst [..., M, N] f32.
     * a and b are f32, or both bf16. The last two dims of a and of b are each
     * either row-major (nb[-1] == elem) or transposed (nb[-2] == elem); batch
     * dims (up to 2) may have stride 0. p.accumulate: dst += a b. */
    ST_OP_MATMUL,
    /* dst = src0 converted to dst's dtype (f32/bf16/f16 among themselves, or
     * the same dtype for any); any strides on both sides. */
    ST_OP_COPY,
    ST_OP_FILL,      /* dst (any dtype, contiguous) = p.alpha */
    ST_OP_ARANGE,    /* dst[i] = p.alpha + i * p.beta (f32 or i32, contiguous) */
    ST_OP_RAND_NORMAL,  /* dst[i] = p.alpha + p.beta * N(0,1) from (p.seed, p.offset + i) */
    ST_OP_RAND_UNIFORM, /* dst[i] = p.alpha + (p.beta - p.alpha) * U[0,1) from (p.seed, p.offset + i) */
    ST_OP_AXPY,      /* dst += p.alpha * src0 (src0 broadcast to dst; dst any layout
                        with innermost stride 4) */
    /* backward helpers (not differentiable themselves) */
    ST_OP_UNARY_BACKWARD,   /* src: x, dy, y? ; p.sub_op = the unary op; dst: dx */
    ST_OP_MAX_BACKWARD,     /* src: x, y (max, keepdim), dy (keepdim); p.axis;
                               dst dx = dy at the first maximum of each slice, else 0 */
    ST_OP_SOFTMAX_BACKWARD, /* src: y, dy; dst: dx = y * (dy - sum(dy * y)) */
    ST_OP_LOG_SOFTMAX_BACKWARD, /* src: y, dy; dst: dx = dy - exp(y) * sum(dy) */
    ST_OP_LAYERNORM_BACKWARD, /* src: x, gamma?, dy; p.eps; dst: dx, dgamma?, dbeta?
                                 (dgamma/dbeta accumulated: +=) */
    ST_OP_RMSNORM_BACKWARD,   /* src: x, gamma?, dy; p.eps; dst: dx, dgamma? (+=) */
    ST_OP_EMBEDDING_BACKWARD, /* src: dy [ids..., D], ids; dst: dweight [V,D] (+=) */
    /* view operations: metadata only, handled by layer 3, recorded by layer 4 */
    ST_OP_RESHAPE, ST_OP_PERMUTE, ST_OP_SLICE, ST_OP_EXPAND,
    ST_OP_CONTIGUOUS, ST_OP_CONCAT, ST_OP_TO_DTYPE,
    /* appended: fused ops for transformer training (f32; src[0] decides
     * supports_op). Heads are [B, H, T, D] views whose last dim is
     * contiguous (nb[3] == 4) and whose row stride nb[2] is a multiple of 4
     * and >= 4*D (or T == 1); any b/h strides. */
    ST_OP_ATTENTION,          /* src: q [B,H,T,D], k, v [B,Hkv,S,D] (H % Hkv == 0);
                                 p.scale, p.causal (query t sees keys s <= t + S - T);
                                 dst: out [B,H,T,D] contiguous, lse [B,H,T] contiguous
                                 (log-sum-exp of each scaled score row; -inf for a row
                                 that sees no key, whose out row is 0) */
    ST_OP_ATTENTION_BACKWARD, /* src: q, k, v, out, dout (as out's shape), lse;
                                 p.scale, p.causal; dst: dq [B,H,T,D], dk, dv
                                 [B,Hkv,S,D], all contiguous and overwritten */
    ST_OP_CROSS_ENTROPY,      /* src: logits [N,V] (nb[1] == 4), targets i32 [N]
                                 contiguous (-1 = ignore; others in [0,V) else
                                 ST_ERR_BOUNDS); dst: loss [1] (mean over the
                                 non-ignored rows; 0 when there are none), lse [N]
                                 contiguous (0 for ignored rows) */
    ST_OP_CROSS_ENTROPY_BACKWARD, /* src: logits, targets, lse, dloss [1]; dst: dlogits
                                     [N,V] contiguous = (softmax - onehot) * dloss / count
                                     (0 rows for ignored targets) */
    ST_OP_ROPE,               /* src: x [B,H,T,D] (D even); p.rope_kind (0 half, 1
                                 interleaved), p.pos0, p.theta, p.rope_inverse
                                 (rotate by -angle: the backward); dst contiguous */
    ST_OP_DROPOUT,            /* src: x contiguous; p.alpha = drop probability in [0,1),
                                 p.seed, p.offset; dst[i] = u(i) >= p ? x[i]/(1-p) : 0
                                 with u the RAND_UNIFORM draw at counter offset + i
                                 (the backward is the same op on the gradient) */
    ST_OP_COUNT_
} st_op;

const char *st_op_name(st_op op); /* "add", "matmul", ... */

/* 6 since the fused ops (ATTENTION_BACKWARD reads six operands); was 4. */
#define ST_OP_MAX_SRC 6
#define ST_OP_MAX_DST 3

typedef struct st_op_params {
    int axis;          /* reductions, MAX_BACKWARD, CONCAT */
    float alpha, beta; /* SCALE, FILL, ARANGE, RAND_*, AXPY */
    float eps;         /* norms */
    st_op sub_op;      /* UNARY_BACKWARD */
    uint64_t seed;     /* RAND_* */
    uint64_t offset;   /* RAND_*: counter of dst's first element */
    bool accumulate;   /* MATMUL */
    /* view ops (layer 3/4 only) */
    int perm[ST_MAX_DIMS];
    int64_t start, stop, step; /* SLICE along axis */
    /* appended by layer 3: SUM/MEAN/MAX as recorded for autograd — whether
     * the reduced axis was kept (size 1) in the result. Backends ignore it
     * (their dst always keeps the axis). */
    bool keepdim;
    /* appended for the fused ops */
    float scale;        /* ATTENTION*: multiplies q.k */
    bool causal;        /* ATTENTION*: mask keys s > t + S - T */
    int rope_kind;      /* ROPE: st_rope_kind of strata/tensor.h (0 half, 1 interleaved) */
    int64_t pos0;       /* ROPE: position of the first row t = 0 */
    float theta;        /* ROPE: base; freq_i = theta^(-2i/D) */
    bool rope_inverse;  /* ROPE: rotate by the negated angle (the gradient) */
} st_op_params;

typedef struct st_op_desc {
    st_op op;
    st_op_params p;
    int n_src, n_dst;
    st_view src[ST_OP_MAX_SRC];
    st_view dst[ST_OP_MAX_DST];
} st_op_desc;

/* ---- thread pool -----------------------------------------------------------------
 * A persistent pool of n threads; the caller is thread 0, so n = 1 runs
 * inline. Workers sleep between jobs (short spin, then a futex/condvar wait),
 * so an idle pool costs nothing and never competes with BLAS threads. */
typedef struct st_pool st_pool;

/* n_threads 0: STRATA_THREADS if set, else all logical CPUs. */
st_status st_pool_new(int n_threads, st_pool **out);
void st_pool_free(st_pool *pool);
int st_pool_size(const st_pool *pool);
/* Runs fn(arg, ith, nth) on every thread (ith in [0,nth)) and returns when all
 * are done (a barrier). Not reentrant: fn must not call st_pool_run. */
typedef void (*st_pool_fn)(void *arg, int ith, int nth);
void st_pool_run(st_pool *pool, st_pool_fn fn, void *arg);
/* Splits [0, n) into contiguous chunks of at least grain items, one per
 * thread (fewer threads when n is small), and calls fn(arg, begin, end). */
typedef void (*st_pool_range_fn)(void *arg, int64_t begin, int64_t end);
void st_pool_parallel_for(st_pool *pool, int64_t n, int64_t grain,
                          st_pool_range_fn fn, void *arg);

/* ---- backends ------------------------------------------------------------------ */
typedef struct st_backend st_backend;

#define ST_BACKEND_ABI_VERSION 1

typedef struct st_backend_cpu_params {
    int n_threads;            /* 0: STRATA_THREADS, else all logical CPUs */
    /* Kernel level: -1 picks from L1 detection and STRATA_SIMD; otherwise a
     * forced st_simd_level (ST_ERR_UNSUPPORTED if the CPU lacks it). */
    int simd_level;
} st_backend_cpu_params;

st_backend_cpu_params st_backend_cpu_default_params(void);

/* Creates the CPU backend, its pool and the BLAS thread setting.
 * Errors: ST_ERR_NOMEM, ST_ERR_UNSUPPORTED (a SIMD level the CPU lacks),
 * ST_ERR_INVALID_ARG (a bad STRATA_SIMD or STRATA_THREADS). */
st_status st_backend_cpu_new(const st_backend_cpu_params *params, st_backend **out);
void st_backend_free(st_backend *be);

const char *st_backend_name(const st_backend *be); /* "cpu" */
/* Whether compute() handles the op with that dtype of its first operand. */
bool st_backend_supports_op(const st_backend *be, st_op op, st_dtype dtype);
/* Executes one operation. Errors: ST_ERR_UNSUPPORTED (op/dtype not
 * supported), ST_ERR_BOUNDS (data-dependent indices), ST_ERR_NOMEM. */
st_status st_backend_compute(st_backend *be, const st_op_desc *desc);
/* Memory the backend's ops can read and write (host memory for the CPU).
 * 64-byte aligned; NULL (ST_ERR_NOMEM recorded) on failure. */
void *st_backend_alloc(st_backend *be, size_t bytes);
void st_backend_dealloc(st_backend *be, void *ptr);

/* CPU backend details (NULL / -1 for other backends). */
st_pool *st_backend_cpu_pool(st_backend *be);
int st_backend_cpu_simd_level(const st_backend *be);
int st_backend_n_threads(const st_backend *be);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_BACKEND_H */
