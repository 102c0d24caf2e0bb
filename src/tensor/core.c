/*
 * core.c — layer 3's shared machinery: input validation with messages,
 * step-tensor allocation in the context's arena, layer-2 view building
 * (stride normalisation, broadcasting with stride 0), running a descriptor
 * on the backend and reporting ops to the autograd recorder.
 *
 * Step tensors: the st_tensor struct, its st_storage struct and its bytes
 * all come from the arena (bytes 64-byte aligned) and die at st_ctx_reset.
 * Views made here share the base's storage pointer and own nothing. One
 * thread drives a context; nothing here locks.
 */
#include "tensor/tensor_impl.h"

#include <stdio.h>
#include <string.h>

/* ---- validation ------------------------------------------------------------------ */

const char *st__shape_fmt(int ndim, const int64_t *ne, char *buf, size_t n) {
    size_t k = 0;
    if (n == 0) return buf;
    buf[0] = '\0';
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int d = 0; d < ndim && d < ST_MAX_DIMS && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)ne[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

st_status st__check_shape(const char *op, st_dtype dtype, int ndim, const int64_t *shape,
                          size_t *bytes) {
    if (bytes) *bytes = 0;
    size_t es = st_dtype_size(dtype);
    if (es == 0) return st__fail(ST_ERR_DTYPE, "%s: unknown dtype %d", op, (int)dtype);
    if (ndim < 1 || ndim > ST_MAX_DIMS)
        return st__fail(ST_ERR_SHAPE, "%s: ndim %d is outside 1..%d", op, ndim, ST_MAX_DIMS);
    if (!shape) return st__fail(ST_ERR_INVALID_ARG, "%s: shape is NULL", op);
    int64_t numel = 1;
    bool overflow = false;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return st__fail(ST_ERR_SHAPE, "%s: dim %d of the shape is negative (%lld)", op, d,
                            (long long)shape[d]);
        if (__builtin_mul_overflow(numel, shape[d], &numel)) overflow = true;
    }
    char sb[ST_SHAPE_BUF];
    size_t b = 0;
    if (overflow || st_mul_overflow_size((size_t)numel, es, &b) || b > (size_t)PTRDIFF_MAX)
        return st__fail(ST_ERR_SHAPE, "%s: shape %s of %s overflows the byte size", op,
                        st__shape_fmt(ndim, shape, sb, sizeof sb), st_dtype_name(dtype));
    if (bytes) *bytes = b;
    return ST_OK;
}

st_status st__check_tensor(const char *op, const char *what, const st_ctx *ctx,
                           const st_tensor *t) {
    if (!t) return st__fail(ST_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
    if (ctx && t->ctx != ctx)
        return st__fail(ST_ERR_INVALID_ARG, "%s: %s belongs to another context", op, what);
    if (!t->ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: %s has no context", op, what);
    if (t->ndim < 1 || t->ndim > ST_MAX_DIMS)
        return st__fail(ST_ERR_SHAPE, "%s: %s has ndim %d (outside 1..%d)", op, what, t->ndim,
                        ST_MAX_DIMS);
    if ((unsigned)t->dtype >= ST_DTYPE_COUNT_)
        return st__fail(ST_ERR_DTYPE, "%s: %s has an unknown dtype %d", op, what, (int)t->dtype);
    for (int d = 0; d < t->ndim; d++)
        if (t->ne[d] < 0)
            return st__fail(ST_ERR_SHAPE, "%s: %s has a negative dim %d (%lld)", op, what, d,
                            (long long)t->ne[d]);
    return ST_OK;
}

st_status st__check_axis(const char *op, int axis, int ndim, const st_tensor *t, int *out) {
    if (axis < -ndim || axis >= ndim) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_AXIS, "%s: axis %d is outside [%d,%d) for a tensor of shape %s",
                        op, axis, -ndim, ndim,
                        t ? st__shape_fmt(t->ndim, t->ne, sb, sizeof sb) : "?");
    }
    *out = axis < 0 ? axis + ndim : axis;
    return ST_OK;
}

st_status st__check_dtype(const char *op, const char *what, const st_tensor *t, st_dtype want) {
    if (t->dtype != want)
        return st__fail(ST_ERR_DTYPE, "%s: %s is %s but the op takes %s", op, what,
                        st_dtype_name(t->dtype), st_dtype_name(want));
    return ST_OK;
}

/* ---- layouts ------------------------------------------------------------------------ */

void st__norm_strides(int ndim, const int64_t *ne, int64_t *nb, size_t esize) {
    for (int d = ndim - 1; d >= 0; d--) {
        if (ne[d] != 1) continue;
        nb[d] = d == ndim - 1 ? (int64_t)esize : nb[d + 1] * ne[d + 1];
    }
}

bool st__is_contiguous(int ndim, const int64_t *ne, const int64_t *nb, size_t esize) {
    int64_t want = (int64_t)esize;
    for (int d = ndim - 1; d >= 0; d--) {
        if (ne[d] == 0) return true; /* no elements: any layout is contiguous */
        if (ne[d] != 1 && nb[d] != want) return false;
        want *= ne[d];
    }
    return true;
}

static void fill_unused(int ndim, int64_t *ne, int64_t *nb) {
    for (int d = ndim; d < ST_MAX_DIMS; d++) {
        ne[d] = 1;
        nb[d] = 0;
    }
}

/* ---- allocation ----------------------------------------------------------------------- */

st_status st__new_step(st_ctx *ctx, const char *op, st_dtype dtype, int ndim,
                       const int64_t *shape, st_tensor **out) {
    *out = NULL;
    size_t bytes;
    ST_TRY(st__check_shape(op, dtype, ndim, shape, &bytes));
    st_tensor *t = st_arena_alloc(ctx->arena, sizeof *t, 16);
    st_storage *s = t ? st_arena_alloc(ctx->arena, sizeof *s, 16) : NULL;
    void *data = s ? st_arena_alloc(ctx->arena, bytes ? bytes : 1, 64) : NULL;
    if (!data) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_NOMEM, "%s: cannot allocate %zu bytes for a %s %s result", op,
                        bytes, st__shape_fmt(ndim, shape, sb, sizeof sb), st_dtype_name(dtype));
    }
    memset(s, 0, sizeof *s);
    s->data = data;
    s->size = bytes;
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    size_t es = st_dtype_size(dtype);
    int64_t stride = (int64_t)es;
    for (int d = ndim - 1; d >= 0; d--) {
        t->ne[d] = shape[d];
        t->nb[d] = stride;
        stride *= shape[d] ? shape[d] : 1;
    }
    fill_unused(ndim, t->ne, t->nb);
    t->data = data;
    t->storage = s;
    t->ctx = ctx;
    *out = t;
    return ST_OK;
}

st_status st__view_step(st_ctx *ctx, const char *op, const st_tensor *base, st_tensor **out) {
    *out = NULL;
    st_tensor *t = st_arena_alloc(ctx->arena, sizeof *t, 16);
    if (!t) return st__fail(ST_ERR_NOMEM, "%s: cannot allocate a view", op);
    memset(t, 0, sizeof *t);
    t->dtype = base->dtype;
    t->ndim = base->ndim;
    memcpy(t->ne, base->ne, sizeof t->ne);
    memcpy(t->nb, base->nb, sizeof t->nb);
    t->data = base->data;
    t->storage = base->storage;
    t->ctx = ctx;
    *out = t;
    return ST_OK;
}

/* ---- views for the backend --------------------------------------------------------------- */

st_view st__view(const st_tensor *t) {
    st_view v = st_tensor_view(t);
    st__norm_strides(v.ndim, v.ne, v.nb, st_dtype_size(v.dtype));
    return v;
}

st_view st__view_bcast(const st_tensor *a, int ndim, const int64_t *shape) {
    st_view src = st__view(a);
    st_view v;
    memset(&v, 0, sizeof v);
    v.data = src.data;
    v.dtype = src.dtype;
    v.ndim = ndim;
    int lead = ndim - src.ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        v.ne[i] = shape[i];
        if (j < 0) v.nb[i] = 0;
        else if (src.ne[j] == shape[i]) v.nb[i] = src.nb[j];
        else v.nb[i] = 0; /* src.ne[j] == 1: repeat */
    }
    fill_unused(ndim, v.ne, v.nb);
    st__norm_strides(ndim, v.ne, v.nb, st_dtype_size(v.dtype));
    return v;
}

st_status st__compute(st_ctx *ctx, const st_op_desc *desc) {
    if (desc->n_dst > 0 && desc->dst[0].data && st_view_numel(&desc->dst[0]) == 0) return ST_OK;
    for (int i = 0; i < desc->n_src; i++)
        if (desc->src[i].data && st_view_numel(&desc->src[i]) == 0) return ST_OK;
    return st_backend_compute(ctx->be, desc);
}

st_status st__fill_view(st_ctx *ctx, const st_view *v, float value) {
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = ST_OP_FILL;
    d.p.alpha = value;
    d.n_dst = 1;
    d.dst[0] = *v;
    return st__compute(ctx, &d);
}

st_status st__copy_contig(st_ctx *ctx, const st_tensor *a, st_dtype dtype, st_tensor **out) {
    ST_TRY(st__new_step(ctx, "copy", dtype, a->ndim, a->ne, out));
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = ST_OP_COPY;
    d.n_src = 1;
    d.n_dst = 1;
    d.src[0] = st__view(a);
    d.dst[0] = st__view(*out);
    st_status s = st__compute(ctx, &d);
    if (s != ST_OK) *out = NULL;
    return s;
}

/* ---- recording ------------------------------------------------------------------------- */

bool st__recording(const st_ctx *ctx, const st_tensor *const *srcs, int n_src) {
    if (!ctx->rec || !ctx->grad_enabled) return false;
    for (int i = 0; i < n_src; i++)
        if (srcs[i] && srcs[i]->requires_grad) return true;
    return false;
}

st_status st__record(st_ctx *ctx, st_op op, const st_op_params *p,
                     const st_tensor *const *srcs, int n_src, st_tensor *out) {
    if (!st__recording(ctx, srcs, n_src)) return ST_OK;
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = op;
    if (p) d.p = *p;
    d.n_src = n_src < ST_OP_MAX_SRC ? n_src : ST_OP_MAX_SRC;
    for (int i = 0; i < d.n_src; i++)
        if (srcs[i]) d.src[i] = st_tensor_view(srcs[i]);
    d.n_dst = 1;
    d.dst[0] = st_tensor_view(out);
    out->requires_grad = true;
    /* The recorder may keep the inputs and write their ->grad: they are
     * const only to the op, not to autograd. */
    return ctx->rec(ctx, ctx->rec_user, &d, (st_tensor *const *)srcs, n_src, out);
}
