/*
 * tensor_impl.h — layer 3's private structures and cross-file helpers
 * (src/tensor only; no other layer includes this).
 *
 * The context owns the backend, the step arena, the reset hooks, the
 * recorder and the extension slot (a higher layer's state, freed last). A
 * storage is the block of bytes a tensor windows into: persistent
 * storages are heap structs (refcounted by the persistent tensors sharing
 * them; the bytes come from the backend or are borrowed), step storages live
 * in the arena next to their bytes. Every storage remembers its base and
 * size so views can be bounds-checked.
 *
 * Helpers here validate inputs (setting the st_last_error message with the
 * op's name), allocate step tensors, build layer-2 views that satisfy the
 * layout rules of backend.h, run a descriptor and report ops to the
 * recorder. Nothing here is thread-safe (one thread drives a context).
 */
#ifndef STRATA_TENSOR_IMPL_H
#define STRATA_TENSOR_IMPL_H

#include "strata/tensor.h"

#define ST_CTX_MAX_HOOKS 8

struct st_storage {
    void *data;      /* first byte */
    size_t size;     /* bytes reachable from data */
    int refcount;    /* persistent tensors sharing it (0 for step storages) */
    bool owned;      /* bytes from st_backend_alloc (freed with the storage) */
    bool persistent; /* heap struct (else arena) */
};

struct st_ctx {
    st_backend *be;
    st_arena *arena;
    st_ctx_reset_fn hooks[ST_CTX_MAX_HOOKS];
    void *hook_user[ST_CTX_MAX_HOOKS];
    int n_hooks;
    st_record_fn rec;
    void *rec_user;
    void *ext;                   /* a higher layer's per-context state, or NULL */
    void (*ext_free)(void *ext); /* frees ext at replacement or st_ctx_free; NULL: borrowed */
    bool grad_enabled;
    int64_t n_persistent; /* live persistent tensors (leak report at free) */
};

/* ---- validation (each sets the message and returns the status) ---- */

/* t non-NULL, of ctx, with a sane ndim, dtype and element counts. */
st_status st__check_tensor(const char *op, const char *what, const st_ctx *ctx,
                           const st_tensor *t);
/* ndim in 1..4, shape non-NULL with entries >= 0, numel * elem fits in
 * PTRDIFF_MAX; returns the byte count through bytes (may be NULL). */
st_status st__check_shape(const char *op, st_dtype dtype, int ndim, const int64_t *shape,
                          size_t *bytes);
/* axis in [-ndim, ndim) normalised into *out. */
st_status st__check_axis(const char *op, int axis, int ndim, const st_tensor *t, int *out);
/* t's dtype is want (message names op, operand and both dtypes). */
st_status st__check_dtype(const char *op, const char *what, const st_tensor *t, st_dtype want);

/* "[2,3]" into buf (n >= 8), returns buf. */
const char *st__shape_fmt(int ndim, const int64_t *ne, char *buf, size_t n);
#define ST_SHAPE_BUF 96

/* ---- allocation ---- */

/* A new contiguous step tensor (arena struct, arena storage, 64-byte aligned
 * data). Contents are undefined. */
st_status st__new_step(st_ctx *ctx, const char *op, st_dtype dtype, int ndim,
                       const int64_t *shape, st_tensor **out);
/* A step tensor struct that views the same bytes as base (same storage, no
 * autograd state, no name): the start of every view op. */
st_status st__view_step(st_ctx *ctx, const char *op, const st_tensor *base, st_tensor **out);
/* Rewrites the strides of size-1 dims of (ndim, ne, nb) to the values a
 * contiguous layout would give them; size-1 dims are reached only at index
 * 0, so the window is unchanged. */
void st__norm_strides(int ndim, const int64_t *ne, int64_t *nb, size_t esize);
bool st__is_contiguous(int ndim, const int64_t *ne, const int64_t *nb, size_t esize);

/* ---- compute ---- */

/* The layer-2 view of t with size-1 strides normalised. */
st_view st__view(const st_tensor *t);
/* a viewed at (ndim, shape), which must be a broadcast of a's shape:
 * missing leading dims and expanded size-1 dims get stride 0. */
st_view st__view_bcast(const st_tensor *a, int ndim, const int64_t *shape);
/* An unrecorded contiguous copy of a in dtype (COPY). */
st_status st__copy_contig(st_ctx *ctx, const st_tensor *a, st_dtype dtype, st_tensor **out);
/* Runs one descriptor on ctx's backend (no-op when every dst is empty). */
st_status st__compute(st_ctx *ctx, const st_op_desc *desc);
/* Fills a contiguous view with value (FILL). */
st_status st__fill_view(st_ctx *ctx, const st_view *v, float value);
/* Whether recording applies: recorder set, grad on, any non-NULL src
 * requires grad. */
bool st__recording(const st_ctx *ctx, const st_tensor *const *srcs, int n_src);
/* When recording applies: sets out->requires_grad and calls the recorder
 * with a descriptor of op/params over the original srcs and out. srcs[i]
 * may be NULL for an absent optional operand (its view has data NULL). */
st_status st__record(st_ctx *ctx, st_op op, const st_op_params *p,
                     const st_tensor *const *srcs, int n_src, st_tensor *out);

/* ---- operands shared by ops and their backwards (ops.c) ---- */

/* An optional [n] f32 norm parameter (gamma/beta) as a contiguous view;
 * g NULL gives a view with data NULL (absent). */
st_status st__norm_param(st_ctx *ctx, const char *op, const char *what, const st_tensor *g,
                         int64_t n, st_view *v);
/* ids: i32, ndim <= max_ndim; contiguous (an unrecorded copy when not). */
st_status st__ids_operand(st_ctx *ctx, const char *op, const st_tensor *ids, int max_ndim,
                          const st_tensor **out);
/* a itself when its normalised innermost stride is want0 or want1, else an
 * unrecorded contiguous copy. */
st_status st__inner_stride(st_ctx *ctx, const st_tensor *a, int64_t want0, int64_t want1,
                           const st_tensor **out);

#endif
