/*
 * tensor.c — creating, freeing and inspecting tensors, and the in-place
 * helpers (fill, RNG fill, copy, axpy, scale).
 *
 * Persistent tensors: the st_tensor and its st_storage are heap structs
 * (st_calloc); the bytes come from st_backend_alloc (owned) or the caller
 * (st_tensor_wrap, borrowed). The storage is refcounted by the persistent
 * tensors sharing it; step views of a persistent tensor point at its
 * storage without a reference (they must not outlive it). st_tensor_free
 * also frees a persistent grad. Step tensors are made by core.c in the
 * arena. In-place helpers that meet a layout the backend does not take
 * work through a contiguous arena temporary. One thread drives a context.
 */
#include "tensor/tensor_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- persistent tensors ------------------------------------------------------------ */

static st_status new_persistent(st_ctx *ctx, const char *op, st_dtype dtype, int ndim,
                                const int64_t *shape, void *borrowed, bool borrow,
                                st_tensor **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "%s: out is NULL", op);
    *out = NULL;
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    size_t bytes;
    ST_TRY(st__check_shape(op, dtype, ndim, shape, &bytes));
    if (borrow && !borrowed && bytes > 0)
        return st__fail(ST_ERR_INVALID_ARG, "%s: data is NULL for %zu bytes", op, bytes);
    st_tensor *t = st_calloc(1, sizeof *t);
    st_storage *s = st_calloc(1, sizeof *s);
    void *data = borrowed;
    if (t && s && !borrow) data = st_backend_alloc(ctx->be, bytes ? bytes : 1);
    if (!t || !s || (!borrow && !data)) {
        st_free(t);
        st_free(s);
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_NOMEM, "%s: cannot allocate %zu bytes for %s %s", op, bytes,
                        st__shape_fmt(ndim, shape, sb, sizeof sb), st_dtype_name(dtype));
    }
    s->data = data;
    s->size = bytes;
    s->refcount = 1;
    s->owned = !borrow;
    s->persistent = true;
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t stride = (int64_t)st_dtype_size(dtype);
    for (int d = ST_MAX_DIMS - 1; d >= 0; d--) {
        if (d >= ndim) {
            t->ne[d] = 1;
            t->nb[d] = 0;
            continue;
        }
        t->ne[d] = shape[d];
        t->nb[d] = stride;
        stride *= shape[d] ? shape[d] : 1;
    }
    t->data = data;
    t->storage = s;
    t->ctx = ctx;
    t->persistent = true;
    ctx->n_persistent++;
    if (!borrow) {
        st_view v = st_tensor_view(t);
        st_status st = st__fill_view(ctx, &v, 0.0f);
        if (st != ST_OK) {
            st_tensor_free(t);
            return st;
        }
    }
    *out = t;
    return ST_OK;
}

st_status st_tensor_new(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape,
                        st_tensor **out) {
    return new_persistent(ctx, "st_tensor_new", dtype, ndim, shape, NULL, false, out);
}

st_status st_tensor_wrap(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape,
                         void *data, st_tensor **out) {
    return new_persistent(ctx, "st_tensor_wrap", dtype, ndim, shape, data, true, out);
}

void st_tensor_free(st_tensor *t) {
    if (!t || !t->persistent) return;
    if (t->grad && t->grad->persistent && t->grad != t) st_tensor_free(t->grad);
    st_storage *s = t->storage;
    if (s && s->persistent && --s->refcount <= 0) {
        if (s->owned && t->ctx) st_backend_dealloc(t->ctx->be, s->data);
        st_free(s);
    }
    if (t->ctx) t->ctx->n_persistent--;
    st_free(t);
}

/* ---- step tensors ---------------------------------------------------------------- */

#define OUT_CHECK(op)                                                                   \
    do {                                                                                \
        if (!out) return st__fail(ST_ERR_INVALID_ARG, "%s: out is NULL", op);           \
        *out = NULL;                                                                    \
        if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", op);           \
    } while (0)

st_status st_full(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape, float value,
                  st_tensor **out) {
    OUT_CHECK("st_full");
    st_tensor *t;
    ST_TRY(st__new_step(ctx, "st_full", dtype, ndim, shape, &t));
    st_view v = st_tensor_view(t);
    ST_TRY(st__fill_view(ctx, &v, value));
    *out = t;
    return ST_OK;
}

st_status st_zeros(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape, st_tensor **out) {
    return st_full(ctx, dtype, ndim, shape, 0.0f, out);
}

st_status st_ones(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape, st_tensor **out) {
    return st_full(ctx, dtype, ndim, shape, 1.0f, out);
}

st_status st_arange(st_ctx *ctx, st_dtype dtype, int64_t n, float start, float step,
                    st_tensor **out) {
    OUT_CHECK("st_arange");
    if (dtype != ST_F32 && dtype != ST_I32)
        return st__fail(ST_ERR_DTYPE, "st_arange: dtype %s (takes f32 or i32)",
                        st_dtype_name(dtype));
    if (!isfinite(start) || !isfinite(step))
        return st__fail(ST_ERR_INVALID_ARG, "st_arange: start %g and step %g must be finite",
                        (double)start, (double)step);
    st_tensor *t;
    ST_TRY(st__new_step(ctx, "st_arange", dtype, 1, &n, &t));
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = ST_OP_ARANGE;
    d.p.alpha = start;
    d.p.beta = step;
    d.n_dst = 1;
    d.dst[0] = st_tensor_view(t);
    ST_TRY(st__compute(ctx, &d));
    *out = t;
    return ST_OK;
}

static st_status rand_view(st_ctx *ctx, const st_view *v, st_op op, uint64_t seed, float a,
                           float b) {
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = op;
    d.p.alpha = a;
    d.p.beta = b;
    d.p.seed = seed;
    d.p.offset = 0;
    d.n_dst = 1;
    d.dst[0] = *v;
    return st__compute(ctx, &d);
}

static st_status check_rand_args(const char *op, st_op kind, float a, float b) {
    if (kind == ST_OP_RAND_NORMAL) {
        if (!isfinite(a) || !isfinite(b) || b < 0)
            return st__fail(ST_ERR_INVALID_ARG,
                            "%s: mean %g and std %g must be finite with std >= 0", op,
                            (double)a, (double)b);
    } else if (!isfinite(a) || !isfinite(b) || a > b) {
        return st__fail(ST_ERR_INVALID_ARG, "%s: lo %g and hi %g must be finite with lo <= hi",
                        op, (double)a, (double)b);
    }
    return ST_OK;
}

static st_status rand_new(st_ctx *ctx, const char *op, st_op kind, int ndim,
                          const int64_t *shape, uint64_t seed, float a, float b,
                          st_tensor **out) {
    OUT_CHECK(op);
    ST_TRY(check_rand_args(op, kind, a, b));
    st_tensor *t;
    ST_TRY(st__new_step(ctx, op, ST_F32, ndim, shape, &t));
    st_view v = st_tensor_view(t);
    ST_TRY(rand_view(ctx, &v, kind, seed, a, b));
    *out = t;
    return ST_OK;
}

st_status st_randn(st_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed, float mean,
                   float std, st_tensor **out) {
    return rand_new(ctx, "st_randn", ST_OP_RAND_NORMAL, ndim, shape, seed, mean, std, out);
}

st_status st_rand_uniform(st_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed, float lo,
                          float hi, st_tensor **out) {
    return rand_new(ctx, "st_rand_uniform", ST_OP_RAND_UNIFORM, ndim, shape, seed, lo, hi, out);
}

st_status st_from_data(st_ctx *ctx, st_dtype dtype, int ndim, const int64_t *shape,
                       const void *data, st_tensor **out) {
    OUT_CHECK("st_from_data");
    size_t bytes;
    ST_TRY(st__check_shape("st_from_data", dtype, ndim, shape, &bytes));
    if (!data && bytes > 0)
        return st__fail(ST_ERR_INVALID_ARG, "st_from_data: data is NULL for %zu bytes", bytes);
    st_tensor *t;
    ST_TRY(st__new_step(ctx, "st_from_data", dtype, ndim, shape, &t));
    if (bytes) memcpy(t->data, data, bytes);
    *out = t;
    return ST_OK;
}

/* ---- in-place helpers ------------------------------------------------------------------ */

/* A destination written in place must not repeat elements (stride 0 along
 * a dim of more than one element). */
static st_status check_writable(const char *op, const st_tensor *t) {
    for (int d = 0; d < t->ndim; d++)
        if (t->nb[d] == 0 && t->ne[d] > 1) {
            char sb[ST_SHAPE_BUF];
            return st__fail(ST_ERR_INVALID_ARG,
                            "%s: the destination %s repeats elements along dim %d (stride 0, "
                            "a broadcast view); write into a contiguous tensor",
                            op, st__shape_fmt(t->ndim, t->ne, sb, sizeof sb), d);
        }
    return ST_OK;
}

static bool is_float_dtype(st_dtype t) { return t == ST_F32 || t == ST_BF16 || t == ST_F16; }

/* dst (any layout) = src broadcast to dst's shape (COPY). */
static st_status copy_into(st_ctx *ctx, const st_tensor *dst, const st_tensor *src) {
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = ST_OP_COPY;
    d.n_src = 1;
    d.n_dst = 1;
    d.src[0] = st__view_bcast(src, dst->ndim, dst->ne);
    d.dst[0] = st__view(dst);
    return st__compute(ctx, &d);
}

st_status st_fill_(st_tensor *t, float value) {
    ST_TRY(st__check_tensor("st_fill_", "t", NULL, t));
    ST_TRY(check_writable("st_fill_", t));
    st_ctx *ctx = t->ctx;
    if (st_tensor_is_contiguous(t)) {
        st_view v = st__view(t);
        return st__fill_view(ctx, &v, value);
    }
    /* One element filled, then repeated into t's layout with stride 0. */
    int64_t one = 1;
    st_tensor *tmp;
    ST_TRY(st_full(ctx, t->dtype, 1, &one, value, &tmp));
    return copy_into(ctx, t, tmp);
}

static st_status rand_inplace(const char *op, st_op kind, st_tensor *t, uint64_t seed, float a,
                              float b) {
    ST_TRY(st__check_tensor(op, "t", NULL, t));
    ST_TRY(check_writable(op, t));
    if (!is_float_dtype(t->dtype))
        return st__fail(ST_ERR_DTYPE, "%s: t is %s (takes f32, bf16 or f16)", op,
                        st_dtype_name(t->dtype));
    ST_TRY(check_rand_args(op, kind, a, b));
    st_ctx *ctx = t->ctx;
    if (t->dtype == ST_F32 && st_tensor_is_contiguous(t)) {
        st_view v = st__view(t);
        return rand_view(ctx, &v, kind, seed, a, b);
    }
    /* Numbers in row-major order into a contiguous f32 temporary, then a
     * converting copy: element i still depends only on (seed, i). */
    st_tensor *tmp;
    ST_TRY(st__new_step(ctx, op, ST_F32, t->ndim, t->ne, &tmp));
    st_view v = st_tensor_view(tmp);
    ST_TRY(rand_view(ctx, &v, kind, seed, a, b));
    return copy_into(ctx, t, tmp);
}

st_status st_randn_(st_tensor *t, uint64_t seed, float mean, float std) {
    return rand_inplace("st_randn_", ST_OP_RAND_NORMAL, t, seed, mean, std);
}

st_status st_uniform_(st_tensor *t, uint64_t seed, float lo, float hi) {
    return rand_inplace("st_uniform_", ST_OP_RAND_UNIFORM, t, seed, lo, hi);
}

/* src's shape broadcasts to dst's (src may have fewer dims). */
static st_status check_bcast_to(const char *op, const st_tensor *dst, const st_tensor *src) {
    bool ok = src->ndim <= dst->ndim;
    for (int i = 0; ok && i < src->ndim; i++) {
        int64_t s = src->ne[src->ndim - 1 - i], d = dst->ne[dst->ndim - 1 - i];
        if (s != d && s != 1) ok = false;
    }
    if (!ok) {
        char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE, "%s: src %s does not broadcast to dst %s", op,
                        st__shape_fmt(src->ndim, src->ne, sa, sizeof sa),
                        st__shape_fmt(dst->ndim, dst->ne, sb, sizeof sb));
    }
    return ST_OK;
}

st_status st_copy_(st_tensor *dst, const st_tensor *src) {
    ST_TRY(st__check_tensor("st_copy_", "dst", NULL, dst));
    ST_TRY(st__check_tensor("st_copy_", "src", dst->ctx, src));
    ST_TRY(check_writable("st_copy_", dst));
    if (dst->dtype != src->dtype && !(is_float_dtype(dst->dtype) && is_float_dtype(src->dtype)))
        return st__fail(ST_ERR_DTYPE,
                        "st_copy_: cannot convert src %s to dst %s (f32, bf16 and f16 convert "
                        "among themselves; other dtypes copy only to the same dtype)",
                        st_dtype_name(src->dtype), st_dtype_name(dst->dtype));
    ST_TRY(check_bcast_to("st_copy_", dst, src));
    return copy_into(dst->ctx, dst, src);
}

st_status st_axpy_(st_tensor *dst, float alpha, const st_tensor *src) {
    ST_TRY(st__check_tensor("st_axpy_", "dst", NULL, dst));
    ST_TRY(st__check_tensor("st_axpy_", "src", dst->ctx, src));
    ST_TRY(st__check_dtype("st_axpy_", "dst", dst, ST_F32));
    ST_TRY(st__check_dtype("st_axpy_", "src", src, ST_F32));
    ST_TRY(check_writable("st_axpy_", dst));
    ST_TRY(check_bcast_to("st_axpy_", dst, src));
    st_ctx *ctx = dst->ctx;
    const st_tensor *s;
    ST_TRY(st__inner_stride(ctx, src, 4, 0, &s));
    st_view dv = st__view(dst);
    st_tensor *work = dst;
    if (dv.nb[dv.ndim - 1] != 4) ST_TRY(st__copy_contig(ctx, dst, ST_F32, &work));
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = ST_OP_AXPY;
    d.p.alpha = alpha;
    d.n_src = 1;
    d.n_dst = 1;
    d.src[0] = st__view_bcast(s, dst->ndim, dst->ne);
    d.dst[0] = st__view(work);
    ST_TRY(st__compute(ctx, &d));
    if (work != dst) ST_TRY(copy_into(ctx, dst, work));
    return ST_OK;
}

st_status st_scale_(st_tensor *dst, float alpha) {
    ST_TRY(st__check_tensor("st_scale_", "dst", NULL, dst));
    ST_TRY(st__check_dtype("st_scale_", "dst", dst, ST_F32));
    ST_TRY(check_writable("st_scale_", dst));
    st_ctx *ctx = dst->ctx;
    st_tensor *work = dst;
    if (!st_tensor_is_contiguous(dst)) ST_TRY(st__copy_contig(ctx, dst, ST_F32, &work));
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = ST_OP_SCALE;
    d.p.alpha = alpha;
    d.n_src = 1;
    d.n_dst = 1;
    d.src[0] = st__view(work);
    d.dst[0] = d.src[0];
    ST_TRY(st__compute(ctx, &d));
    if (work != dst) ST_TRY(copy_into(ctx, dst, work));
    return ST_OK;
}

/* ---- inspection ------------------------------------------------------------------------- */

int64_t st_tensor_numel(const st_tensor *t) {
    if (!t || t->ndim < 1 || t->ndim > ST_MAX_DIMS) return 0;
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->ne[d];
    return n;
}

bool st_tensor_is_contiguous(const st_tensor *t) {
    if (!t || t->ndim < 1 || t->ndim > ST_MAX_DIMS) return false;
    return st__is_contiguous(t->ndim, t->ne, t->nb, st_dtype_size(t->dtype));
}

size_t st_tensor_nbytes(const st_tensor *t) {
    return t ? (size_t)st_tensor_numel(t) * st_dtype_size(t->dtype) : 0;
}

st_view st_tensor_view(const st_tensor *t) {
    st_view v;
    memset(&v, 0, sizeof v);
    if (!t) return v;
    v.data = t->data;
    v.dtype = t->dtype;
    v.ndim = t->ndim;
    for (int d = 0; d < ST_MAX_DIMS; d++) {
        v.ne[d] = d < t->ndim ? t->ne[d] : 1;
        v.nb[d] = d < t->ndim ? t->nb[d] : 0;
    }
    return v;
}

static st_status elem_ptr(const char *op, const st_tensor *t, int64_t flat, char **p) {
    ST_TRY(st__check_tensor(op, "t", NULL, t));
    int64_t n = st_tensor_numel(t);
    if (flat < 0 || flat >= n) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_BOUNDS, "%s: flat index %lld is outside [0,%lld) of %s", op,
                        (long long)flat, (long long)n,
                        st__shape_fmt(t->ndim, t->ne, sb, sizeof sb));
    }
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (flat % t->ne[d]) * t->nb[d];
        flat /= t->ne[d];
    }
    *p = (char *)t->data + off;
    return ST_OK;
}

static float load_f32(const char *p, st_dtype dt) {
    switch (dt) {
    case ST_F32: { float f; memcpy(&f, p, 4); return f; }
    case ST_BF16: { uint16_t h; memcpy(&h, p, 2); return st_bf16_to_f32(h); }
    case ST_F16: { uint16_t h; memcpy(&h, p, 2); return st_f16_to_f32(h); }
    case ST_I32: { int32_t i; memcpy(&i, p, 4); return (float)i; }
    case ST_I8: return (float)*(const int8_t *)p;
    default: return NAN;
    }
}

static void store_f32(char *p, st_dtype dt, float v) {
    switch (dt) {
    case ST_F32: memcpy(p, &v, 4); break;
    case ST_BF16: { uint16_t h = st_f32_to_bf16(v); memcpy(p, &h, 2); break; }
    case ST_F16: { uint16_t h = st_f32_to_f16(v); memcpy(p, &h, 2); break; }
    case ST_I32: {
        double r = isnan(v) ? 0.0 : nearbyint((double)v);
        if (r > 2147483647.0) r = 2147483647.0;
        if (r < -2147483648.0) r = -2147483648.0;
        int32_t i = (int32_t)r;
        memcpy(p, &i, 4);
        break;
    }
    case ST_I8: {
        double r = isnan(v) ? 0.0 : nearbyint((double)v);
        if (r > 127.0) r = 127.0;
        if (r < -128.0) r = -128.0;
        *(int8_t *)p = (int8_t)r;
        break;
    }
    default: break;
    }
}

st_status st_tensor_get_f32(const st_tensor *t, int64_t flat_index, float *value) {
    if (!value) return st__fail(ST_ERR_INVALID_ARG, "st_tensor_get_f32: value is NULL");
    char *p;
    ST_TRY(elem_ptr("st_tensor_get_f32", t, flat_index, &p));
    *value = load_f32(p, t->dtype);
    return ST_OK;
}

st_status st_tensor_set_f32(st_tensor *t, int64_t flat_index, float value) {
    char *p;
    ST_TRY(elem_ptr("st_tensor_set_f32", t, flat_index, &p));
    store_f32(p, t->dtype, value);
    return ST_OK;
}

st_status st_tensor_to_f32(const st_tensor *t, float *out, int64_t n) {
    ST_TRY(st__check_tensor("st_tensor_to_f32", "t", NULL, t));
    int64_t numel = st_tensor_numel(t);
    if (!out && numel > 0) return st__fail(ST_ERR_INVALID_ARG, "st_tensor_to_f32: out is NULL");
    if (n != numel) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_INVALID_ARG,
                        "st_tensor_to_f32: n is %lld but t %s has %lld elements",
                        (long long)n, st__shape_fmt(t->ndim, t->ne, sb, sizeof sb),
                        (long long)numel);
    }
    if (numel == 0) return ST_OK;
    /* Walk a 4-D index (leading dims of size 1 pad lower ndims). */
    int64_t ne[4] = {1, 1, 1, 1}, nb[4] = {0, 0, 0, 0};
    int lead = 4 - t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        ne[lead + d] = t->ne[d];
        nb[lead + d] = t->nb[d];
    }
    int64_t k = 0;
    const char *base = t->data;
    for (int64_t i0 = 0; i0 < ne[0]; i0++)
        for (int64_t i1 = 0; i1 < ne[1]; i1++)
            for (int64_t i2 = 0; i2 < ne[2]; i2++) {
                const char *row = base + i0 * nb[0] + i1 * nb[1] + i2 * nb[2];
                for (int64_t i3 = 0; i3 < ne[3]; i3++)
                    out[k++] = load_f32(row + i3 * nb[3], t->dtype);
            }
    return ST_OK;
}

const char *st_tensor_shape_str(const st_tensor *t, char *buf, size_t n) {
    if (!buf || n == 0) return "";
    if (!t || t->ndim < 1 || t->ndim > ST_MAX_DIMS) {
        snprintf(buf, n, "(invalid tensor)");
        return buf;
    }
    char sb[ST_SHAPE_BUF];
    snprintf(buf, n, "%s %s", st__shape_fmt(t->ndim, t->ne, sb, sizeof sb),
             st_dtype_name(t->dtype));
    return buf;
}

void st_tensor_set_name(st_tensor *t, const char *name) {
    if (!t) return;
    if (!name) name = "";
    snprintf(t->name, sizeof t->name, "%s", name);
}
