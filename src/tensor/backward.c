/*
 * backward.c — the input-gradient helpers layer 4's autograd calls:
 * validated wrappers over the backend's *_BACKWARD ops (unary, max,
 * softmax/log-softmax, layernorm, rmsnorm, embedding). None of them is
 * recorded.
 *
 * Results (dx) are new contiguous step tensors. Accumulators passed in
 * (dgamma, dbeta, dweight) may be persistent or step tensors; when one is
 * not contiguous the kernel accumulates into a zeroed arena temporary that
 * is then added with AXPY. Inputs in a layout a kernel does not take are
 * copied contiguous first (arena, unrecorded).
 */
#include "tensor/tensor_impl.h"

#include <math.h>
#include <string.h>

#define BW_PROLOGUE(opname)                                                          \
    do {                                                                             \
        if (!dx) return st__fail(ST_ERR_INVALID_ARG, "%s: dx is NULL", opname);      \
        *dx = NULL;                                                                  \
        if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", opname);    \
    } while (0)

static bool same_shape(const st_tensor *a, const st_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->ne[d] != b->ne[d]) return false;
    return true;
}

static st_status need_same(const char *op, const char *wa, const st_tensor *a, const char *wb,
                           const st_tensor *b) {
    if (same_shape(a, b)) return ST_OK;
    char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
    return st__fail(ST_ERR_SHAPE, "%s: %s %s and %s %s must have the same shape", op, wa,
                    st__shape_fmt(a->ndim, a->ne, sa, sizeof sa), wb,
                    st__shape_fmt(b->ndim, b->ne, sb, sizeof sb));
}

static st_status f32_operand(st_ctx *ctx, const char *op, const char *what, const st_tensor *t) {
    ST_TRY(st__check_tensor(op, what, ctx, t));
    return st__check_dtype(op, what, t, ST_F32);
}

static st_status contig(st_ctx *ctx, const st_tensor *t, const st_tensor **out) {
    if (st_tensor_is_contiguous(t)) {
        *out = t;
        return ST_OK;
    }
    st_tensor *c;
    ST_TRY(st__copy_contig(ctx, t, t->dtype, &c));
    *out = c;
    return ST_OK;
}

/* ---- unary ---------------------------------------------------------------------- */

st_status st__unary_backward(st_ctx *ctx, st_op op, const st_tensor *x, const st_tensor *y,
                             const st_tensor *dy, st_tensor **dx) {
    const char *name = "unary_backward";
    BW_PROLOGUE(name);
    if (op < ST_OP_NEG || op > ST_OP_RELU)
        return st__fail(ST_ERR_INVALID_ARG,
                        "%s: op %d is not a unary op with a derivative kernel (neg..relu; "
                        "scale's gradient is st_scale of dy)",
                        name, (int)op);
    ST_TRY(f32_operand(ctx, name, "x", x));
    ST_TRY(f32_operand(ctx, name, "dy", dy));
    ST_TRY(need_same(name, "x", x, "dy", dy));
    if (y) {
        ST_TRY(f32_operand(ctx, name, "y", y));
        ST_TRY(need_same(name, "x", x, "y", y));
    }
    st_tensor *o;
    ST_TRY(st__new_step(ctx, name, ST_F32, x->ndim, x->ne, &o));
    const st_tensor *x2, *dy2, *y2 = NULL;
    ST_TRY(st__inner_stride(ctx, x, 4, 0, &x2));
    ST_TRY(st__inner_stride(ctx, dy, 4, 0, &dy2));
    if (y) ST_TRY(st__inner_stride(ctx, y, 4, 0, &y2));
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = ST_OP_UNARY_BACKWARD;
    d.p.sub_op = op;
    d.n_src = 3;
    d.n_dst = 1;
    d.src[0] = st__view_bcast(x2, x->ndim, x->ne);
    d.src[1] = st__view_bcast(dy2, x->ndim, x->ne);
    if (y2) d.src[2] = st__view_bcast(y2, x->ndim, x->ne);
    else {
        d.src[2] = d.src[0];
        d.src[2].data = NULL; /* absent */
    }
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    *dx = o;
    return ST_OK;
}

/* ---- max --------------------------------------------------------------------------- */

/* t (the keepdim or squeezed reduction of x along ax) as a contiguous view
 * with x's ndim and ne[ax] == 1. */
static st_status keepdim_view(st_ctx *ctx, const char *op, const char *what,
                              const st_tensor *x, int ax, const st_tensor *t, st_view *v) {
    ST_TRY(f32_operand(ctx, op, what, t));
    int64_t keep[ST_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) keep[d] = d == ax ? 1 : x->ne[d];
    bool ok = false;
    if (t->ndim == x->ndim) {
        ok = true;
        for (int d = 0; d < x->ndim; d++) ok = ok && t->ne[d] == keep[d];
    } else if (t->ndim == x->ndim - 1 || (x->ndim == 1 && t->ndim == 1)) {
        ok = true;
        int k = 0;
        for (int d = 0; d < x->ndim; d++)
            if (d != ax) ok = ok && t->ne[k++] == x->ne[d];
        if (x->ndim == 1) ok = t->ne[0] == 1;
    }
    if (!ok) {
        char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE, "%s: %s is %s but must be %s reduced along axis %d", op,
                        what, st__shape_fmt(t->ndim, t->ne, sa, sizeof sa),
                        st__shape_fmt(x->ndim, x->ne, sb, sizeof sb), ax);
    }
    const st_tensor *c;
    ST_TRY(contig(ctx, t, &c));
    memset(v, 0, sizeof *v);
    v->data = c->data;
    v->dtype = ST_F32;
    v->ndim = x->ndim;
    int64_t s = 4;
    for (int d = ST_MAX_DIMS - 1; d >= 0; d--) {
        v->ne[d] = d < x->ndim ? keep[d] : 1;
        v->nb[d] = d < x->ndim ? s : 0;
        if (d < x->ndim) s *= keep[d] ? keep[d] : 1;
    }
    return ST_OK;
}

st_status st__max_backward(st_ctx *ctx, const st_tensor *x, const st_tensor *y_keep,
                           const st_tensor *dy_keep, int axis, st_tensor **dx) {
    const char *name = "max_backward";
    BW_PROLOGUE(name);
    ST_TRY(f32_operand(ctx, name, "x", x));
    int ax;
    ST_TRY(st__check_axis(name, axis, x->ndim, x, &ax));
    st_op_desc d;
    memset(&d, 0, sizeof d);
    ST_TRY(keepdim_view(ctx, name, "y", x, ax, y_keep, &d.src[1]));
    ST_TRY(keepdim_view(ctx, name, "dy", x, ax, dy_keep, &d.src[2]));
    st_tensor *o;
    ST_TRY(st__new_step(ctx, name, ST_F32, x->ndim, x->ne, &o));
    const st_tensor *x2;
    ST_TRY(contig(ctx, x, &x2));
    d.op = ST_OP_MAX_BACKWARD;
    d.p.axis = ax;
    d.n_src = 3;
    d.n_dst = 1;
    d.src[0] = st__view(x2);
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    *dx = o;
    return ST_OK;
}

/* ---- softmax ------------------------------------------------------------------------ */

st_status st__softmax_backward(st_ctx *ctx, const st_tensor *y, const st_tensor *dy, bool log,
                               st_tensor **dx) {
    const char *name = log ? "log_softmax_backward" : "softmax_backward";
    BW_PROLOGUE(name);
    ST_TRY(f32_operand(ctx, name, "y", y));
    ST_TRY(f32_operand(ctx, name, "dy", dy));
    ST_TRY(need_same(name, "y", y, "dy", dy));
    st_tensor *o;
    ST_TRY(st__new_step(ctx, name, ST_F32, y->ndim, y->ne, &o));
    const st_tensor *y2, *dy2;
    ST_TRY(st__inner_stride(ctx, y, 4, 4, &y2));
    ST_TRY(st__inner_stride(ctx, dy, 4, 4, &dy2));
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = log ? ST_OP_LOG_SOFTMAX_BACKWARD : ST_OP_SOFTMAX_BACKWARD;
    d.n_src = 2;
    d.n_dst = 1;
    d.src[0] = st__view(y2);
    d.src[1] = st__view(dy2);
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    *dx = o;
    return ST_OK;
}

/* ---- norms --------------------------------------------------------------------------- */

/* An accumulator [n] f32 for dgamma/dbeta: the tensor itself when
 * contiguous, else a zeroed temporary (*tmp) to add in afterwards. */
static st_status acc_param(st_ctx *ctx, const char *op, const char *what, st_tensor *acc,
                           int64_t n, st_view *v, st_tensor **tmp) {
    *tmp = NULL;
    memset(v, 0, sizeof *v);
    v->dtype = ST_F32;
    v->ndim = 1;
    v->ne[0] = n;
    v->nb[0] = 4;
    if (!acc) return ST_OK;
    ST_TRY(f32_operand(ctx, op, what, acc));
    if (acc->ndim != 1 || acc->ne[0] != n) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE, "%s: %s is %s but must be [%lld] (x's last dim)", op, what,
                        st__shape_fmt(acc->ndim, acc->ne, sb, sizeof sb), (long long)n);
    }
    if (st_tensor_is_contiguous(acc)) {
        *v = st__view(acc);
        return ST_OK;
    }
    ST_TRY(st_zeros(ctx, ST_F32, 1, &n, tmp));
    *v = st__view(*tmp);
    return ST_OK;
}

static st_status norm_backward(st_ctx *ctx, bool layer, const st_tensor *x,
                               const st_tensor *gamma, const st_tensor *dy, float eps,
                               st_tensor **dx, st_tensor *dgamma, st_tensor *dbeta) {
    const char *name = layer ? "layernorm_backward" : "rmsnorm_backward";
    BW_PROLOGUE(name);
    ST_TRY(f32_operand(ctx, name, "x", x));
    ST_TRY(f32_operand(ctx, name, "dy", dy));
    ST_TRY(need_same(name, "x", x, "dy", dy));
    if (!(eps >= 0.0f) || !isfinite(eps))
        return st__fail(ST_ERR_INVALID_ARG, "%s: eps %g must be finite and >= 0", name,
                        (double)eps);
    int64_t n = x->ne[x->ndim - 1];
    st_op_desc d;
    memset(&d, 0, sizeof d);
    st_tensor *tg, *tb = NULL;
    ST_TRY(st__norm_param(ctx, name, "gamma", gamma, n, &d.src[1]));
    ST_TRY(acc_param(ctx, name, "dgamma", dgamma, n, &d.dst[1], &tg));
    if (layer) ST_TRY(acc_param(ctx, name, "dbeta", dbeta, n, &d.dst[2], &tb));
    st_tensor *o;
    ST_TRY(st__new_step(ctx, name, ST_F32, x->ndim, x->ne, &o));
    const st_tensor *x2, *dy2;
    ST_TRY(st__inner_stride(ctx, x, 4, 4, &x2));
    ST_TRY(st__inner_stride(ctx, dy, 4, 4, &dy2));
    d.op = layer ? ST_OP_LAYERNORM_BACKWARD : ST_OP_RMSNORM_BACKWARD;
    d.p.eps = eps;
    d.n_src = 3;
    d.n_dst = layer ? 3 : 2;
    d.src[0] = st__view(x2);
    d.src[2] = st__view(dy2);
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    if (tg) ST_TRY(st_axpy_(dgamma, 1.0f, tg));
    if (tb) ST_TRY(st_axpy_(dbeta, 1.0f, tb));
    *dx = o;
    return ST_OK;
}

st_status st__layernorm_backward(st_ctx *ctx, const st_tensor *x, const st_tensor *gamma,
                                 const st_tensor *dy, float eps, st_tensor **dx,
                                 st_tensor *dgamma, st_tensor *dbeta) {
    return norm_backward(ctx, true, x, gamma, dy, eps, dx, dgamma, dbeta);
}

st_status st__rmsnorm_backward(st_ctx *ctx, const st_tensor *x, const st_tensor *gamma,
                               const st_tensor *dy, float eps, st_tensor **dx,
                               st_tensor *dgamma) {
    return norm_backward(ctx, false, x, gamma, dy, eps, dx, dgamma, NULL);
}

/* ---- embedding ------------------------------------------------------------------------ */

st_status st__embedding_backward(st_ctx *ctx, const st_tensor *dy, const st_tensor *ids,
                                 st_tensor *dweight) {
    const char *name = "embedding_backward";
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", name);
    ST_TRY(f32_operand(ctx, name, "dy", dy));
    ST_TRY(f32_operand(ctx, name, "dweight", dweight));
    const st_tensor *ids2;
    ST_TRY(st__ids_operand(ctx, name, ids, ST_MAX_DIMS - 1, &ids2));
    char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF], sc[ST_SHAPE_BUF];
    if (dweight->ndim != 2)
        return st__fail(ST_ERR_SHAPE, "%s: dweight is %s but must be [V,D]", name,
                        st__shape_fmt(dweight->ndim, dweight->ne, sa, sizeof sa));
    bool ok = dy->ndim == ids->ndim + 1 && dy->ne[dy->ndim - 1] == dweight->ne[1];
    for (int d = 0; ok && d < ids->ndim; d++) ok = dy->ne[d] == ids->ne[d];
    if (!ok)
        return st__fail(ST_ERR_SHAPE, "%s: dy %s does not match ids %s and dweight %s", name,
                        st__shape_fmt(dy->ndim, dy->ne, sa, sizeof sa),
                        st__shape_fmt(ids->ndim, ids->ne, sb, sizeof sb),
                        st__shape_fmt(dweight->ndim, dweight->ne, sc, sizeof sc));
    const st_tensor *dy2;
    ST_TRY(contig(ctx, dy, &dy2));
    st_tensor *acc = dweight, *tmp = NULL;
    if (!st_tensor_is_contiguous(dweight)) {
        ST_TRY(st_zeros(ctx, ST_F32, 2, dweight->ne, &tmp));
        acc = tmp;
    }
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = ST_OP_EMBEDDING_BACKWARD;
    d.n_src = 2;
    d.n_dst = 1;
    d.src[0] = st__view(dy2);
    d.src[1] = st__view(ids2);
    d.dst[0] = st__view(acc);
    ST_TRY(st__compute(ctx, &d));
    if (tmp) ST_TRY(st_axpy_(dweight, 1.0f, tmp));
    return ST_OK;
}
