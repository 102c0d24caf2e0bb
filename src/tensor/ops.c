/*
 * ops.c — the computing ops of layer 3: elementwise (with NumPy
 * broadcasting), reductions, row ops (softmax, norms), embedding, concat,
 * dtype conversion.
 *
 * Each op: validate inputs (message names the op, operand, shapes and
 * dtypes), allocate a contiguous step tensor for the result, build the
 * layer-2 descriptor so that it meets backend.h's layout rules (inputs
 * broadcast to the output shape with stride 0; an input whose innermost
 * stride a kernel cannot take is first copied contiguous, unrecorded),
 * compute on the context's backend, then report the op to the recorder in
 * terms of the original inputs. Composite ops (sum_all, sum_to) are built
 * from recorded primitives and so record themselves.
 * Everything allocated here is a step tensor in the arena.
 */
#include "tensor/tensor_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define OP_PROLOGUE(opname)                                                         \
    do {                                                                            \
        if (!out) return st__fail(ST_ERR_INVALID_ARG, "%s: out is NULL", opname);   \
        *out = NULL;                                                                \
        if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", opname);   \
    } while (0)

static void desc_init(st_op_desc *d, st_op op) {
    memset(d, 0, sizeof *d);
    d->op = op;
}

st_status st__inner_stride(st_ctx *ctx, const st_tensor *a, int64_t want0, int64_t want1,
                           const st_tensor **out) {
    st_view v = st__view(a);
    int64_t in = v.nb[v.ndim - 1];
    if (in == want0 || in == want1) {
        *out = a;
        return ST_OK;
    }
    st_tensor *c;
    ST_TRY(st__copy_contig(ctx, a, a->dtype, &c));
    *out = c;
    return ST_OK;
}

static st_status need_f32(const char *op, const char *what, const st_tensor *t) {
    return st__check_dtype(op, what, t, ST_F32);
}

/* ---- elementwise ------------------------------------------------------------------- */

static st_status bcast_shape(const char *op, const st_tensor *a, const st_tensor *b, int *ndim,
                             int64_t *shape) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ai = i - (nd - a->ndim), bi = i - (nd - b->ndim);
        int64_t da = ai >= 0 ? a->ne[ai] : 1, db = bi >= 0 ? b->ne[bi] : 1;
        if (da == db || db == 1) shape[i] = da;
        else if (da == 1) shape[i] = db;
        else {
            char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
            return st__fail(ST_ERR_SHAPE, "%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)",
                            op, st__shape_fmt(a->ndim, a->ne, sa, sizeof sa),
                            st__shape_fmt(b->ndim, b->ne, sb, sizeof sb), i, (long long)da,
                            (long long)db);
        }
    }
    *ndim = nd;
    return ST_OK;
}

static st_status binary(st_ctx *ctx, st_op op, const st_tensor *a, const st_tensor *b,
                        st_tensor **out) {
    const char *name = st_op_name(op);
    OP_PROLOGUE(name);
    ST_TRY(st__check_tensor(name, "a", ctx, a));
    ST_TRY(st__check_tensor(name, "b", ctx, b));
    if (a->dtype != ST_F32 || b->dtype != ST_F32)
        return st__fail(ST_ERR_DTYPE, "%s: a is %s and b is %s; the op takes f32 for both",
                        name, st_dtype_name(a->dtype), st_dtype_name(b->dtype));
    int nd = 1;
    int64_t shape[ST_MAX_DIMS];
    ST_TRY(bcast_shape(name, a, b, &nd, shape));
    st_tensor *o;
    ST_TRY(st__new_step(ctx, name, ST_F32, nd, shape, &o));
    const st_tensor *a2, *b2;
    ST_TRY(st__inner_stride(ctx, a, 4, 0, &a2));
    ST_TRY(st__inner_stride(ctx, b, 4, 0, &b2));
    st_op_desc d;
    desc_init(&d, op);
    d.n_src = 2;
    d.n_dst = 1;
    d.src[0] = st__view_bcast(a2, nd, shape);
    d.src[1] = st__view_bcast(b2, nd, shape);
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    const st_tensor *srcs[2] = {a, b};
    ST_TRY(st__record(ctx, op, NULL, srcs, 2, o));
    *out = o;
    return ST_OK;
}

st_status st_add(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor **out) {
    return binary(ctx, ST_OP_ADD, a, b, out);
}
st_status st_sub(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor **out) {
    return binary(ctx, ST_OP_SUB, a, b, out);
}
st_status st_mul(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor **out) {
    return binary(ctx, ST_OP_MUL, a, b, out);
}
st_status st_div(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor **out) {
    return binary(ctx, ST_OP_DIV, a, b, out);
}

static st_status unary(st_ctx *ctx, st_op op, const st_tensor *a, float alpha, st_tensor **out) {
    const char *name = st_op_name(op);
    OP_PROLOGUE(name);
    ST_TRY(st__check_tensor(name, "a", ctx, a));
    ST_TRY(need_f32(name, "a", a));
    st_tensor *o;
    ST_TRY(st__new_step(ctx, name, ST_F32, a->ndim, a->ne, &o));
    const st_tensor *a2;
    ST_TRY(st__inner_stride(ctx, a, 4, 0, &a2));
    st_op_desc d;
    desc_init(&d, op);
    d.p.alpha = alpha;
    d.n_src = 1;
    d.n_dst = 1;
    d.src[0] = st__view_bcast(a2, a->ndim, a->ne);
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    const st_tensor *srcs[1] = {a};
    ST_TRY(st__record(ctx, op, &d.p, srcs, 1, o));
    *out = o;
    return ST_OK;
}

st_status st_scale(st_ctx *ctx, const st_tensor *a, float s, st_tensor **out) {
    return unary(ctx, ST_OP_SCALE, a, s, out);
}
st_status st_neg(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    return unary(ctx, ST_OP_NEG, a, 0, out);
}
st_status st_exp(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    return unary(ctx, ST_OP_EXP, a, 0, out);
}
st_status st_log(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    return unary(ctx, ST_OP_LOG, a, 0, out);
}
st_status st_sqrt(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    return unary(ctx, ST_OP_SQRT, a, 0, out);
}
st_status st_tanh(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    return unary(ctx, ST_OP_TANH, a, 0, out);
}
st_status st_gelu(st_ctx *ctx, const st_tensor *a, st_gelu_kind kind, st_tensor **out) {
    if (kind != ST_GELU_TANH && kind != ST_GELU_ERF) {
        if (out) *out = NULL;
        return st__fail(ST_ERR_INVALID_ARG, "gelu: unknown kind %d", (int)kind);
    }
    return unary(ctx, kind == ST_GELU_TANH ? ST_OP_GELU_TANH : ST_OP_GELU_ERF, a, 0, out);
}
st_status st_silu(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    return unary(ctx, ST_OP_SILU, a, 0, out);
}
st_status st_relu(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    return unary(ctx, ST_OP_RELU, a, 0, out);
}

/* ---- reductions ------------------------------------------------------------------------ */

static st_status reduce(st_ctx *ctx, st_op op, const st_tensor *a, int axis, bool keepdim,
                        st_tensor **out) {
    const char *name = st_op_name(op);
    OP_PROLOGUE(name);
    ST_TRY(st__check_tensor(name, "a", ctx, a));
    ST_TRY(need_f32(name, "a", a));
    int ax;
    ST_TRY(st__check_axis(name, axis, a->ndim, a, &ax));
    int64_t keep[ST_MAX_DIMS], res[ST_MAX_DIMS];
    int nres = 0;
    for (int d = 0; d < a->ndim; d++) {
        keep[d] = d == ax ? 1 : a->ne[d];
        if (d != ax || keepdim) res[nres++] = keep[d];
    }
    if (nres == 0) res[nres++] = 1; /* a scalar is [1] */
    st_tensor *o;
    ST_TRY(st__new_step(ctx, name, ST_F32, nres, res, &o));
    /* The backend's dst keeps the axis: the same bytes seen with it. */
    st_view dv = st__view(o);
    dv.ndim = a->ndim;
    int64_t s = 4;
    for (int d = ST_MAX_DIMS - 1; d >= 0; d--) {
        dv.ne[d] = d < a->ndim ? keep[d] : 1;
        dv.nb[d] = d < a->ndim ? s : 0;
        if (d < a->ndim) s *= keep[d] ? keep[d] : 1;
    }
    if (a->ne[ax] == 0) {
        if (op == ST_OP_MAX) {
            char sb[ST_SHAPE_BUF];
            return st__fail(ST_ERR_SHAPE, "max: axis %d of %s is empty (no maximum)", ax,
                            st__shape_fmt(a->ndim, a->ne, sb, sizeof sb));
        }
        ST_TRY(st__fill_view(ctx, &dv, op == ST_OP_SUM ? 0.0f : NAN));
    } else {
        const st_tensor *a2;
        ST_TRY(st__inner_stride(ctx, a, 4, 4, &a2));
        st_op_desc d;
        desc_init(&d, op);
        d.p.axis = ax;
        d.n_src = 1;
        d.n_dst = 1;
        d.src[0] = st__view(a2);
        d.dst[0] = dv;
        ST_TRY(st__compute(ctx, &d));
    }
    st_op_params p;
    memset(&p, 0, sizeof p);
    p.axis = ax;
    p.keepdim = keepdim;
    const st_tensor *srcs[1] = {a};
    ST_TRY(st__record(ctx, op, &p, srcs, 1, o));
    *out = o;
    return ST_OK;
}

st_status st_sum(st_ctx *ctx, const st_tensor *a, int axis, bool keepdim, st_tensor **out) {
    return reduce(ctx, ST_OP_SUM, a, axis, keepdim, out);
}
st_status st_mean(st_ctx *ctx, const st_tensor *a, int axis, bool keepdim, st_tensor **out) {
    return reduce(ctx, ST_OP_MEAN, a, axis, keepdim, out);
}
st_status st_max(st_ctx *ctx, const st_tensor *a, int axis, bool keepdim, st_tensor **out) {
    return reduce(ctx, ST_OP_MAX, a, axis, keepdim, out);
}

st_status st_sum_all(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    OP_PROLOGUE("sum_all");
    ST_TRY(st__check_tensor("sum_all", "a", ctx, a));
    ST_TRY(need_f32("sum_all", "a", a));
    const st_tensor *t = a;
    if (a->ndim > 1 && st_tensor_is_contiguous(a)) {
        int64_t flat = -1;
        st_tensor *r;
        ST_TRY(st_reshape(ctx, a, 1, &flat, &r));
        t = r;
    }
    /* Reduce the innermost dim until one is left, then keep it as [1]. */
    while (t->ndim > 1) {
        st_tensor *r;
        ST_TRY(st_sum(ctx, t, t->ndim - 1, false, &r));
        t = r;
    }
    st_tensor *r;
    ST_TRY(st_sum(ctx, t, 0, true, &r));
    *out = r;
    return ST_OK;
}

st_status st_sum_to(st_ctx *ctx, const st_tensor *a, int ndim, const int64_t *shape,
                    st_tensor **out) {
    OP_PROLOGUE("sum_to");
    ST_TRY(st__check_tensor("sum_to", "a", ctx, a));
    ST_TRY(need_f32("sum_to", "a", a));
    ST_TRY(st__check_shape("sum_to", ST_F32, ndim, shape, NULL));
    int lead = a->ndim - ndim;
    bool ok = lead >= 0;
    for (int j = 0; ok && j < ndim; j++)
        if (shape[j] != a->ne[lead + j] && shape[j] != 1) ok = false;
    if (!ok) {
        char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE, "sum_to: %s is not a broadcast of %s",
                        st__shape_fmt(a->ndim, a->ne, sa, sizeof sa),
                        st__shape_fmt(ndim, shape, sb, sizeof sb));
    }
    const st_tensor *t = a;
    for (int j = 0; j < ndim; j++) {
        if (shape[j] == 1 && a->ne[lead + j] != 1) {
            st_tensor *r;
            ST_TRY(st_sum(ctx, t, lead + j, true, &r));
            t = r;
        }
    }
    for (int i = 0; i < lead; i++) {
        st_tensor *r;
        ST_TRY(st_sum(ctx, t, 0, false, &r));
        t = r;
    }
    if (t == a) return st_contiguous(ctx, a, out);
    *out = (st_tensor *)t;
    return ST_OK;
}

/* ---- row ops ------------------------------------------------------------------------------ */

static st_status softmax_like(st_ctx *ctx, st_op op, const st_tensor *a, st_tensor **out) {
    const char *name = st_op_name(op);
    OP_PROLOGUE(name);
    ST_TRY(st__check_tensor(name, "a", ctx, a));
    ST_TRY(need_f32(name, "a", a));
    st_tensor *o;
    ST_TRY(st__new_step(ctx, name, ST_F32, a->ndim, a->ne, &o));
    const st_tensor *a2;
    ST_TRY(st__inner_stride(ctx, a, 4, 4, &a2));
    st_op_desc d;
    desc_init(&d, op);
    d.n_src = 1;
    d.n_dst = 1;
    d.src[0] = st__view(a2);
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    const st_tensor *srcs[1] = {a};
    ST_TRY(st__record(ctx, op, NULL, srcs, 1, o));
    *out = o;
    return ST_OK;
}

st_status st_softmax(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    return softmax_like(ctx, ST_OP_SOFTMAX, a, out);
}
st_status st_log_softmax(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    return softmax_like(ctx, ST_OP_LOG_SOFTMAX, a, out);
}

st_status st__norm_param(st_ctx *ctx, const char *op, const char *what, const st_tensor *g,
                         int64_t n, st_view *v) {
    memset(v, 0, sizeof *v);
    v->ndim = 1;
    v->dtype = ST_F32;
    v->ne[0] = n;
    v->nb[0] = 4;
    if (!g) return ST_OK; /* absent: data NULL */
    ST_TRY(st__check_tensor(op, what, ctx, g));
    ST_TRY(need_f32(op, what, g));
    if (g->ndim != 1 || g->ne[0] != n) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE, "%s: %s is %s but must be [%lld] (x's last dim)", op, what,
                        st__shape_fmt(g->ndim, g->ne, sb, sizeof sb), (long long)n);
    }
    const st_tensor *g2;
    ST_TRY(st__inner_stride(ctx, g, 4, 4, &g2));
    *v = st__view(g2);
    return ST_OK;
}

static st_status check_eps(const char *op, float eps) {
    if (!(eps >= 0.0f) || !isfinite(eps))
        return st__fail(ST_ERR_INVALID_ARG, "%s: eps %g must be finite and >= 0", op, (double)eps);
    return ST_OK;
}

st_status st_layernorm(st_ctx *ctx, const st_tensor *a, const st_tensor *gamma,
                       const st_tensor *beta, float eps, st_tensor **out) {
    OP_PROLOGUE("layernorm");
    ST_TRY(st__check_tensor("layernorm", "x", ctx, a));
    ST_TRY(need_f32("layernorm", "x", a));
    ST_TRY(check_eps("layernorm", eps));
    int64_t n = a->ne[a->ndim - 1];
    st_op_desc d;
    desc_init(&d, ST_OP_LAYERNORM);
    ST_TRY(st__norm_param(ctx, "layernorm", "gamma", gamma, n, &d.src[1]));
    ST_TRY(st__norm_param(ctx, "layernorm", "beta", beta, n, &d.src[2]));
    st_tensor *o;
    ST_TRY(st__new_step(ctx, "layernorm", ST_F32, a->ndim, a->ne, &o));
    const st_tensor *a2;
    ST_TRY(st__inner_stride(ctx, a, 4, 4, &a2));
    d.p.eps = eps;
    d.n_src = 3;
    d.n_dst = 1;
    d.src[0] = st__view(a2);
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    const st_tensor *srcs[3] = {a, gamma, beta};
    ST_TRY(st__record(ctx, ST_OP_LAYERNORM, &d.p, srcs, 3, o));
    *out = o;
    return ST_OK;
}

st_status st_rmsnorm(st_ctx *ctx, const st_tensor *a, const st_tensor *gamma, float eps,
                     st_tensor **out) {
    OP_PROLOGUE("rmsnorm");
    ST_TRY(st__check_tensor("rmsnorm", "x", ctx, a));
    ST_TRY(need_f32("rmsnorm", "x", a));
    ST_TRY(check_eps("rmsnorm", eps));
    int64_t n = a->ne[a->ndim - 1];
    st_op_desc d;
    desc_init(&d, ST_OP_RMSNORM);
    ST_TRY(st__norm_param(ctx, "rmsnorm", "gamma", gamma, n, &d.src[1]));
    st_tensor *o;
    ST_TRY(st__new_step(ctx, "rmsnorm", ST_F32, a->ndim, a->ne, &o));
    const st_tensor *a2;
    ST_TRY(st__inner_stride(ctx, a, 4, 4, &a2));
    d.p.eps = eps;
    d.n_src = 2;
    d.n_dst = 1;
    d.src[0] = st__view(a2);
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    const st_tensor *srcs[2] = {a, gamma};
    ST_TRY(st__record(ctx, ST_OP_RMSNORM, &d.p, srcs, 2, o));
    *out = o;
    return ST_OK;
}

/* ---- embedding ------------------------------------------------------------------------------ */

st_status st__ids_operand(st_ctx *ctx, const char *op, const st_tensor *ids, int max_ndim,
                          const st_tensor **out) {
    ST_TRY(st__check_tensor(op, "ids", ctx, ids));
    if (ids->dtype != ST_I32)
        return st__fail(ST_ERR_DTYPE, "%s: ids are %s but must be i32", op,
                        st_dtype_name(ids->dtype));
    if (ids->ndim > max_ndim) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE, "%s: ids %s have %d dims (at most %d)", op,
                        st__shape_fmt(ids->ndim, ids->ne, sb, sizeof sb), ids->ndim, max_ndim);
    }
    if (st_tensor_is_contiguous(ids)) {
        *out = ids;
        return ST_OK;
    }
    st_tensor *c;
    ST_TRY(st__copy_contig(ctx, ids, ST_I32, &c));
    *out = c;
    return ST_OK;
}

st_status st_embedding(st_ctx *ctx, const st_tensor *weight, const st_tensor *ids,
                       st_tensor **out) {
    OP_PROLOGUE("embedding");
    ST_TRY(st__check_tensor("embedding", "weight", ctx, weight));
    ST_TRY(need_f32("embedding", "weight", weight));
    if (weight->ndim != 2) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE, "embedding: weight is %s but must be [V,D]",
                        st__shape_fmt(weight->ndim, weight->ne, sb, sizeof sb));
    }
    const st_tensor *ids2;
    ST_TRY(st__ids_operand(ctx, "embedding", ids, ST_MAX_DIMS - 1, &ids2));
    int64_t shape[ST_MAX_DIMS];
    for (int d = 0; d < ids->ndim; d++) shape[d] = ids->ne[d];
    shape[ids->ndim] = weight->ne[1];
    st_tensor *o;
    ST_TRY(st__new_step(ctx, "embedding", ST_F32, ids->ndim + 1, shape, &o));
    const st_tensor *w2;
    ST_TRY(st__inner_stride(ctx, weight, 4, 4, &w2));
    st_op_desc d;
    desc_init(&d, ST_OP_EMBEDDING);
    d.n_src = 2;
    d.n_dst = 1;
    d.src[0] = st__view(w2);
    d.src[1] = st__view(ids2);
    d.dst[0] = st__view(o);
    if (st_view_numel(&d.dst[0]) > 0 && weight->ne[0] == 0)
        return st__fail(ST_ERR_BOUNDS, "embedding: weight has no rows (V = 0) for %lld ids",
                        (long long)st_tensor_numel(ids));
    ST_TRY(st__compute(ctx, &d));
    const st_tensor *srcs[2] = {weight, ids};
    ST_TRY(st__record(ctx, ST_OP_EMBEDDING, NULL, srcs, 2, o));
    *out = o;
    return ST_OK;
}

/* ---- concat ------------------------------------------------------------------------------ */

st_status st_concat(st_ctx *ctx, const st_tensor *const *ts, int n, int axis, st_tensor **out) {
    OP_PROLOGUE("concat");
    if (!ts) return st__fail(ST_ERR_INVALID_ARG, "concat: ts is NULL");
    if (n < 1) return st__fail(ST_ERR_INVALID_ARG, "concat: n is %d (needs >= 1)", n);
    char what[32];
    for (int i = 0; i < n; i++) {
        snprintf(what, sizeof what, "ts[%d]", i);
        ST_TRY(st__check_tensor("concat", what, ctx, ts[i]));
    }
    const st_tensor *t0 = ts[0];
    int ax;
    ST_TRY(st__check_axis("concat", axis, t0->ndim, t0, &ax));
    int64_t shape[ST_MAX_DIMS];
    memcpy(shape, t0->ne, sizeof shape);
    shape[ax] = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = ts[i];
        if (t->dtype != t0->dtype)
            return st__fail(ST_ERR_DTYPE, "concat: ts[0] is %s but ts[%d] is %s",
                            st_dtype_name(t0->dtype), i, st_dtype_name(t->dtype));
        bool ok = t->ndim == t0->ndim;
        for (int d = 0; ok && d < t0->ndim; d++)
            if (d != ax && t->ne[d] != t0->ne[d]) ok = false;
        if (!ok) {
            char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
            return st__fail(ST_ERR_SHAPE,
                            "concat: ts[0] %s and ts[%d] %s differ outside axis %d", 
                            st__shape_fmt(t0->ndim, t0->ne, sa, sizeof sa), i,
                            st__shape_fmt(t->ndim, t->ne, sb, sizeof sb), ax);
        }
        if (__builtin_add_overflow(shape[ax], t->ne[ax], &shape[ax]))
            return st__fail(ST_ERR_SHAPE, "concat: the joined axis overflows");
    }
    st_tensor *o;
    ST_TRY(st__new_step(ctx, "concat", t0->dtype, t0->ndim, shape, &o));
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = ts[i];
        st_op_desc d;
        desc_init(&d, ST_OP_COPY);
        d.n_src = 1;
        d.n_dst = 1;
        d.src[0] = st__view(t);
        st_view dv = st_tensor_view(o);
        dv.data = (char *)o->data + off * o->nb[ax];
        dv.ne[ax] = t->ne[ax];
        st__norm_strides(dv.ndim, dv.ne, dv.nb, st_dtype_size(dv.dtype));
        d.dst[0] = dv;
        ST_TRY(st__compute(ctx, &d));
        off += t->ne[ax];
    }
    st_op_params p;
    memset(&p, 0, sizeof p);
    p.axis = ax;
    ST_TRY(st__record(ctx, ST_OP_CONCAT, &p, ts, n, o));
    *out = o;
    return ST_OK;
}

/* ---- dtype conversion ------------------------------------------------------------------------ */

static bool float_dtype(st_dtype t) { return t == ST_F32 || t == ST_BF16 || t == ST_F16; }

st_status st_to_dtype(st_ctx *ctx, const st_tensor *a, st_dtype dtype, st_tensor **out) {
    OP_PROLOGUE("to_dtype");
    ST_TRY(st__check_tensor("to_dtype", "a", ctx, a));
    if ((unsigned)dtype >= ST_DTYPE_COUNT_)
        return st__fail(ST_ERR_DTYPE, "to_dtype: unknown target dtype %d", (int)dtype);
    if (a->dtype != dtype && !(float_dtype(a->dtype) && float_dtype(dtype)))
        return st__fail(ST_ERR_DTYPE,
                        "to_dtype: cannot convert %s to %s (converts among f32, bf16 and f16)",
                        st_dtype_name(a->dtype), st_dtype_name(dtype));
    st_tensor *o;
    ST_TRY(st__copy_contig(ctx, a, dtype, &o));
    const st_tensor *srcs[1] = {a};
    ST_TRY(st__record(ctx, ST_OP_TO_DTYPE, NULL, srcs, 1, o));
    *out = o;
    return ST_OK;
}
