/*
 * strata/tensor.h — layer 3: tensors and the operations on them.
 *
 * A tensor is a typed, shaped, strided window on a storage. The struct is
 * exposed and its fields are the API (ggml's choice): dtype, ndim, ne[]
 * element counts, nb[] byte strides, data. Dimension ndim-1 is innermost.
 *
 * Memory and lifetime — two kinds of tensor:
 *  - persistent tensors (parameters, optimizer state, caches) come from
 *    st_tensor_new() and live until st_tensor_free();
 *  - step tensors (every op result, every view) live in the context's arena
 *    and die together at st_ctx_reset(). They are never freed one by one.
 * A view shares its base's storage; it is valid while the storage is: a view
 * of a persistent tensor must not be used after that tensor is freed.
 *
 * Every op validates shapes, dtypes, axes and view bounds and returns an
 * st_status; nothing that comes from the caller makes it crash. Op results
 * are new contiguous tensors unless the op is a view. Compute goes to the
 * context's backend (layer 2).
 *
 * Autograd (layer 4) attaches through the recorder hook: when it is
 * installed, grad mode is on and an input requires grad, each op reports
 * itself (st_op_desc plus the tensors) after computing. It keeps its
 * per-context state in the context's extension slot, which dies with the
 * context. This header knows nothing else about autograd.
 *
 * Dtypes: elementwise ops, reductions, softmax, norms and embedding weights
 * take f32; matmul takes f32 or bf16 (both operands alike, result f32);
 * st_to_dtype converts among f32, bf16 and f16; embedding ids are i32.
 *
 * A context and its tensors are not thread-safe: one thread drives them.
 */
#ifndef STRATA_TENSOR_H
#define STRATA_TENSOR_H

#include "strata/backend.h"
#include "strata/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_ctx st_ctx;
typedef struct st_storage st_storage;

typedef struct st_tensor {
    st_dtype dtype;
    int ndim;                /* 1..ST_MAX_DIMS */
    int64_t ne[ST_MAX_DIMS]; /* elements per dimension; unused dims are 1 */
    int64_t nb[ST_MAX_DIMS]; /* byte strides; 0 along broadcast dims */
    void *data;              /* first element */
    st_storage *storage;     /* owner of the bytes (shared by views) */
    st_ctx *ctx;
    bool persistent;         /* from st_tensor_new (not the arena) */
    /* autograd (layer 4 reads and writes these; layer 3 only propagates
     * requires_grad through the recorder) */
    bool requires_grad;
    struct st_tensor *grad;  /* same shape, contiguous f32; NULL until backward */
    void *ag_node;           /* the tape node that produced it, or NULL */
    char name[32];           /* for messages ("" when unnamed) */
} st_tensor;

/* ---- context ----------------------------------------------------------------- */
typedef struct st_ctx_params {
    st_backend_cpu_params cpu; /* threads and SIMD level of the CPU backend */
    size_t arena_bytes;        /* first arena block (0: 16 MiB) */
} st_ctx_params;

st_ctx_params st_ctx_default_params(void);
/* Creates a context with a CPU backend. Errors: those of st_backend_cpu_new. */
st_status st_ctx_new(const st_ctx_params *params, st_ctx **out);
/* Frees the context, its backend and its arena, then the extension slot's
 * content through its free_fn (st_ctx_set_ext). NULL is a no-op. Persistent
 * tensors must be freed before (a leak of them is reported at debug log
 * level). Invalidates every step tensor and view of the context. */
void st_ctx_free(st_ctx *ctx);
/* Ends a step: every step tensor, view and tape node dies; reset hooks run. */
void st_ctx_reset(st_ctx *ctx);
st_backend *st_ctx_backend(st_ctx *ctx);
st_arena *st_ctx_arena(st_ctx *ctx);
int st_ctx_n_threads(const st_ctx *ctx);

/* Reset hooks: called at st_ctx_reset before the arena is cleared (layer 4
 * drops its tape here). At most 8; ST_ERR_STATE when full. */
typedef void (*st_ctx_reset_fn)(st_ctx *ctx, void *user);
st_status st_ctx_add_reset_hook(st_ctx *ctx, st_ctx_reset_fn fn, void *user);

/* ---- the recorder hook (for layer 4) ------------------------------------------------
 * Called after an op computed `out` from srcs, when grad mode is on and any
 * src requires grad; `out->requires_grad` is already set. A failing recorder
 * fails the op with its status. */
typedef st_status (*st_record_fn)(st_ctx *ctx, void *user, const st_op_desc *desc,
                                  st_tensor *const *srcs, int n_src, st_tensor *out);
/* Installs fn (NULL: none) with its user pointer, replacing any recorder
 * before it. Borrows user: it must outlive its installation (nothing frees
 * it). ctx NULL is a no-op. */
void st_ctx_set_recorder(st_ctx *ctx, st_record_fn fn, void *user);
/* The installed recorder (NULL when none, or ctx NULL) and, when user is not
 * NULL, its user pointer through *user (NULL when none). Takes and
 * transfers nothing: the user pointer stays its installer's. */
st_record_fn st_ctx_get_recorder(const st_ctx *ctx, void **user);
void st_ctx_set_grad_enabled(st_ctx *ctx, bool on); /* default on */
bool st_ctx_grad_enabled(const st_ctx *ctx);

/* ---- the extension slot (for a higher layer) --------------------------------------
 * One pointer per context for a higher layer's per-context state (layer 4
 * keeps its tape bookkeeping here), so that the state lives and dies with
 * the context instead of in a table keyed by the context's address. Layer 3
 * never reads it. One slot: the layer that fills it owns it. */

/* Stores ext in ctx's slot. With free_fn, the context takes ownership of
 * ext: free_fn(ext) runs exactly once, when ext leaves the slot (a later
 * st_ctx_set_ext with another pointer, or NULL to empty it) or at
 * st_ctx_free, after everything else of the context is gone (no reset hook
 * or recorder runs afterwards; free_fn must not touch the arena). With
 * free_fn NULL, ext is borrowed and must outlive its time in the slot.
 * Storing the pointer already there only replaces its free_fn (nothing is
 * freed). Invalidates the previous content when it is freed: a recorder or
 * reset hook whose user pointer it was must be replaced first.
 * Errors: ST_ERR_INVALID_ARG (ctx NULL; nothing is stored, freed or taken:
 * the caller still owns ext). */
st_status st_ctx_set_ext(st_ctx *ctx, void *ext, void (*free_fn)(void *ext));
/* The slot's content (NULL when empty or ctx NULL), still owned by the slot
 * (or by its lender): valid until it leaves the slot. */
void *st_ctx_get_ext(const st_ctx *ctx);

/* ---- creation ---------------------------------------------------------------------
 * shape: ndim counts (1..4, each >= 0, total bytes must fit in memory). */
/* Persistent, zero-filled, contiguous. Errors: ST_ERR_INVALID_ARG, ST_ERR_SHAPE,
 * ST_ERR_NOMEM. Free with st_tensor_free. */
st_status st_tensor_new(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape,
                        st_tensor **out);
/* A persistent tensor that borrows caller memory (not freed by the library):
 * data must hold the contiguous shape and outlive the tensor. */
st_status st_tensor_wrap(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape,
                         void *data, st_tensor **out);
/* Frees a persistent tensor (its storage when no other persistent tensor
 * shares it) and its grad. NULL is a no-op. Step tensors are ignored. */
void st_tensor_free(st_tensor *t);

/* Step tensors in the arena: */
st_status st_zeros(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape, st_tensor **out);
st_status st_ones(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape, st_tensor **out);
st_status st_full(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape, float value,
                  st_tensor **out);
/* [n]: start, start+step, ... (f32 or i32). */
st_status st_arange(st_ctx *ctx, st_dtype dtype, int64_t n, float start, float step,
                    st_tensor **out);
/* Counter-based RNG: element i of the result depends only on (seed, i), so
 * the numbers are the same for any thread count. */
st_status st_randn(st_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed, float mean,
                   float std, st_tensor **out);
st_status st_rand_uniform(st_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed, float lo,
                          float hi, st_tensor **out);
/* A step tensor holding a copy of caller data (contiguous shape). */
st_status st_from_data(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape,
                       const void *data, st_tensor **out);

/* In-place fills of any tensor (contiguous or not). Not recorded by autograd. */
st_status st_fill_(st_tensor *t, float value);
st_status st_randn_(st_tensor *t, uint64_t seed, float mean, float std);
st_status st_uniform_(st_tensor *t, uint64_t seed, float lo, float hi);
/* dst = src (shapes equal; src broadcast to dst allowed; dtypes converted). */
st_status st_copy_(st_tensor *dst, const st_tensor *src);
/* dst += alpha * src (f32; src broadcast to dst). Not recorded. */
st_status st_axpy_(st_tensor *dst, float alpha, const st_tensor *src);
/* dst *= alpha (f32). Not recorded. */
st_status st_scale_(st_tensor *dst, float alpha);

/* ---- inspection ----------------------------------------------------------------------- */
int64_t st_tensor_numel(const st_tensor *t);
bool st_tensor_is_contiguous(const st_tensor *t);
size_t st_tensor_nbytes(const st_tensor *t); /* numel * dtype size */
st_view st_tensor_view(const st_tensor *t);  /* the layer-2 view of it */
/* Element at a flat row-major index, converted to float (any dtype, any
 * strides). Errors: ST_ERR_BOUNDS. For tests and printing, not hot loops. */
st_status st_tensor_get_f32(const st_tensor *t, int64_t flat_index, float *value);
st_status st_tensor_set_f32(st_tensor *t, int64_t flat_index, float value);
/* Copies all elements, converted to f32, into out[numel] (row-major order). */
st_status st_tensor_to_f32(const st_tensor *t, float *out, int64_t n);
/* "[2,3,4] f32" into buf. */
const char *st_tensor_shape_str(const st_tensor *t, char *buf, size_t n);
void st_tensor_set_name(st_tensor *t, const char *name);

/* ---- views (no copies; results are step tensors sharing storage) ------------------ */
/* New shape with the same numel; one entry may be -1 (inferred). Fails with
 * ST_ERR_SHAPE when the strides cannot express it (call st_contiguous first). */
st_status st_reshape(st_ctx *ctx, const st_tensor *a, int ndim, const int64_t *shape,
                     st_tensor **out);
st_status st_permute(st_ctx *ctx, const st_tensor *a, const int *perm, st_tensor **out);
st_status st_transpose(st_ctx *ctx, const st_tensor *a, int d0, int d1, st_tensor **out);
/* Elements start, start+step, ... < stop along axis (negative start/stop
 * count from the end, clamped like Python; step >= 1). */
st_status st_slice(st_ctx *ctx, const st_tensor *a, int axis, int64_t start, int64_t stop,
                   int64_t step, st_tensor **out);
/* Broadcast to shape: dims of size 1 (and missing leading dims) repeat with
 * stride 0; -1 keeps a dim. */
st_status st_expand(st_ctx *ctx, const st_tensor *a, int ndim, const int64_t *shape,
                    st_tensor **out);
/* A contiguous copy (or a itself, as a view, when already contiguous). */
st_status st_contiguous(st_ctx *ctx, const st_tensor *a, st_tensor **out);
/* A view into an arbitrary window of a's storage (for loaders and caches):
 * fails with ST_ERR_BOUNDS when any element would fall outside the storage. */
st_status st_view_of(st_ctx *ctx, const st_tensor *a, int ndim, const int64_t *shape,
                     const int64_t *strides_bytes, size_t offset_bytes, st_tensor **out);

/* ---- ops (results: new contiguous step tensors) ----------------------------------- */
/* [..., M, K] x [..., K, N] -> [..., M, N]; batch dims broadcast; 1-D operands
 * are promoted like NumPy's matmul. f32 or bf16 inputs (alike), f32 out. */
st_status st_matmul(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor **out);

/* elementwise with NumPy broadcasting */
st_status st_add(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor **out);
st_status st_sub(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor **out);
st_status st_mul(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor **out);
st_status st_div(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor **out);
st_status st_scale(st_ctx *ctx, const st_tensor *a, float s, st_tensor **out);
st_status st_neg(st_ctx *ctx, const st_tensor *a, st_tensor **out);
st_status st_exp(st_ctx *ctx, const st_tensor *a, st_tensor **out);
st_status st_log(st_ctx *ctx, const st_tensor *a, st_tensor **out); /* natural logarithm */
st_status st_sqrt(st_ctx *ctx, const st_tensor *a, st_tensor **out);
st_status st_tanh(st_ctx *ctx, const st_tensor *a, st_tensor **out);
typedef enum st_gelu_kind { ST_GELU_TANH = 0, ST_GELU_ERF = 1 } st_gelu_kind;
st_status st_gelu(st_ctx *ctx, const st_tensor *a, st_gelu_kind kind, st_tensor **out);
st_status st_silu(st_ctx *ctx, const st_tensor *a, st_tensor **out);
st_status st_relu(st_ctx *ctx, const st_tensor *a, st_tensor **out);

/* reductions along axis (negative counts from the end); keepdim keeps it as 1 */
st_status st_sum(st_ctx *ctx, const st_tensor *a, int axis, bool keepdim, st_tensor **out);
st_status st_mean(st_ctx *ctx, const st_tensor *a, int axis, bool keepdim, st_tensor **out);
st_status st_max(st_ctx *ctx, const st_tensor *a, int axis, bool keepdim, st_tensor **out);
/* Sum of every element: a [1] tensor. */
st_status st_sum_all(st_ctx *ctx, const st_tensor *a, st_tensor **out);
/* Sums a over the dims where shape has 1 (or that shape lacks): the
 * reverse of broadcasting a tensor of `shape` up to a's shape. */
st_status st_sum_to(st_ctx *ctx, const st_tensor *a, int ndim, const int64_t *shape,
                    st_tensor **out);

/* along the last axis */
st_status st_softmax(st_ctx *ctx, const st_tensor *a, st_tensor **out);
st_status st_log_softmax(st_ctx *ctx, const st_tensor *a, st_tensor **out);
/* gamma, beta: [n] where n = a's last dim, or NULL. */
st_status st_layernorm(st_ctx *ctx, const st_tensor *a, const st_tensor *gamma,
                       const st_tensor *beta, float eps, st_tensor **out);
st_status st_rmsnorm(st_ctx *ctx, const st_tensor *a, const st_tensor *gamma, float eps,
                     st_tensor **out);

/* weight [V, D] f32, ids i32 of any shape -> [ids..., D]. An id outside
 * [0, V) is ST_ERR_BOUNDS naming the id and its position. */
st_status st_embedding(st_ctx *ctx, const st_tensor *weight, const st_tensor *ids,
                       st_tensor **out);
/* Joins n tensors (same dtype, same shape except along axis). */
st_status st_concat(st_ctx *ctx, const st_tensor *const *ts, int n, int axis,
                    st_tensor **out);
/* A contiguous copy in another dtype (f32, bf16, f16). */
st_status st_to_dtype(st_ctx *ctx, const st_tensor *a, st_dtype dtype, st_tensor **out);

/* ---- backward helpers (not recorded; used by layer 4) ------------------------------------
 * Each computes the input gradient of the matching op from saved values. */
st_status st__unary_backward(st_ctx *ctx, st_op op, const st_tensor *x, const st_tensor *y,
                             const st_tensor *dy, st_tensor **dx);
st_status st__max_backward(st_ctx *ctx, const st_tensor *x, const st_tensor *y_keep,
                           const st_tensor *dy_keep, int axis, st_tensor **dx);
st_status st__softmax_backward(st_ctx *ctx, const st_tensor *y, const st_tensor *dy,
                               bool log, st_tensor **dx);
/* dgamma/dbeta: persistent or step tensors to accumulate into (+=), or NULL. */
st_status st__layernorm_backward(st_ctx *ctx, const st_tensor *x, const st_tensor *gamma,
                                 const st_tensor *dy, float eps, st_tensor **dx,
                                 st_tensor *dgamma, st_tensor *dbeta);
st_status st__rmsnorm_backward(st_ctx *ctx, const st_tensor *x, const st_tensor *gamma,
                               const st_tensor *dy, float eps, st_tensor **dx,
                               st_tensor *dgamma);
/* dweight [V,D] += scatter of dy rows by ids. */
st_status st__embedding_backward(st_ctx *ctx, const st_tensor *dy, const st_tensor *ids,
                                 st_tensor *dweight);
/* a @ b into dst (dst += a@b when accumulate). Shapes as st_matmul. */
st_status st__matmul_into(st_ctx *ctx, const st_tensor *a, const st_tensor *b,
                          st_tensor *dst, bool accumulate);

/* ---- fused transformer ops (appended; src/tensor/fused.c) ----------------------------
 * Results are new contiguous step tensors, recorded for autograd like every
 * op (the attention and cross-entropy records also keep their saved
 * log-sum-exp tensor as an extra, grad-less source). */
typedef enum st_rope_kind {
    ST_ROPE_HALF = 0,        /* HF / GPT-NeoX: rotate_half, pairs (i, i+D/2) */
    ST_ROPE_INTERLEAVED = 1  /* Meta / llama2.c: pairs (2i, 2i+1) */
} st_rope_kind;
/* x [B, H, T, D] f32 (D even), rotary embedding at positions pos0 + t with
 * base theta: freq_i = theta^(-2i/D). x may be a view whose last dim is
 * contiguous. Errors: ST_ERR_SHAPE (not 4-D, odd D), ST_ERR_DTYPE,
 * ST_ERR_INVALID_ARG (unknown kind, pos0 < 0, theta <= 0). */
st_status st_rope(st_ctx *ctx, const st_tensor *x, int64_t pos0, float theta, st_rope_kind kind,
                  st_tensor **out);
/* Scaled dot-product attention. q [B, H, T, D], k and v [B, Hkv, S, D] with
 * H % Hkv == 0 (grouped-query: head h uses kv head h / (H/Hkv)); causal:
 * query t attends keys s <= t + (S - T) (a row that sees no key gives 0).
 * Inputs may be non-contiguous views (e.g. permuted [B,T,H,D] projections)
 * as long as the last dim is contiguous (others are copied first). out
 * [B, H, T, D] contiguous. Fused: never holds more than one head's T x S
 * scores per thread; saves only the per-row log-sum-exp for backward
 * (flash-attention style recomputation).
 * Errors: ST_ERR_SHAPE, ST_ERR_DTYPE (f32 only), ST_ERR_NOMEM. */
st_status st_attention(st_ctx *ctx, const st_tensor *q, const st_tensor *k, const st_tensor *v,
                       bool causal, float scale, st_tensor **out);
/* Fused softmax cross-entropy: logits [N, V] f32 (any leading shape
 * flattened; last dim V contiguous), targets i32 with N elements (-1 =
 * ignore). Returns the mean over non-ignored targets as a [1] tensor (0 when
 * every target is ignored). Backward computes (softmax - onehot)/count in
 * one pass from the logits and the saved log-sum-exp, never materializing
 * probabilities in the forward. A target outside [-1, V) is ST_ERR_BOUNDS. */
st_status st_cross_entropy(st_ctx *ctx, const st_tensor *logits, const st_tensor *targets,
                           st_tensor **loss);
/* Inverted dropout: zeroes each element with probability p (mask from the
 * counter RNG at (seed, i), i the row-major index: the RAND_UNIFORM draw u,
 * dropped when u < p), scales the rest by 1/(1-p); p == 0 returns x itself.
 * p outside [0,1) is ST_ERR_INVALID_ARG. */
st_status st_dropout(st_ctx *ctx, const st_tensor *x, float p, uint64_t seed, st_tensor **out);

/* Backward helpers of the fused ops (not recorded; used by layer 4).
 * attention: o and lse are the forward's results, dout o's gradient; dq,
 * dk, dv are new contiguous step tensors shaped like q, k, v. */
st_status st__attention_backward(st_ctx *ctx, const st_tensor *q, const st_tensor *k,
                                 const st_tensor *v, const st_tensor *o, const st_tensor *lse,
                                 const st_tensor *dout, bool causal, float scale,
                                 st_tensor **dq, st_tensor **dk, st_tensor **dv);
/* dlogits (logits' shape) = (softmax - onehot) * dloss[0] / count. */
st_status st__cross_entropy_backward(st_ctx *ctx, const st_tensor *logits,
                                     const st_tensor *targets, const st_tensor *lse,
                                     const st_tensor *dloss, st_tensor **dlogits);
/* rope with the negated angle (the gradient of st_rope); dy [B,H,T,D]. */
st_status st__rope_backward(st_ctx *ctx, const st_tensor *dy, int64_t pos0, float theta,
                            st_rope_kind kind, st_tensor **dx);
/* The same mask and scale applied to dy (the gradient of st_dropout). */
st_status st__dropout_backward(st_ctx *ctx, const st_tensor *dy, float p, uint64_t seed,
                               st_tensor **dx);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_TENSOR_H */
