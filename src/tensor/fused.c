/*
 * fused.c — layer 3's fused transformer ops: st_attention, st_rope,
 * st_cross_entropy, st_dropout, and the backward helpers autograd calls for
 * them (st__attention_backward, ...).
 *
 * Each op validates its inputs (messages name the op, the operand, shapes
 * and dtypes), allocates contiguous step tensors for its results, brings
 * operands into the layout backend.h states for the op (a head view whose
 * last dim is not contiguous, or whose row stride BLAS cannot take, is
 * copied contiguous first, unrecorded), computes on the context's backend
 * and reports itself to the recorder in terms of the caller's tensors.
 *
 * Saved values. Attention and cross-entropy keep their per-row log-sum-exp
 * (a step tensor: [B,H,T] for attention, [N] for cross-entropy) and record
 * it as an extra source after the real inputs (attention: q, k, v, lse;
 * cross-entropy: logits, targets, lse). It never requires grad, so autograd
 * only carries it to the backward rule. Rope and dropout recompute
 * everything from their params (rope_kind/pos0/theta; alpha = p, seed).
 *
 * Everything allocated here is a step tensor in the arena. One thread drives
 * a context.
 */
#include "tensor/tensor_impl.h"

#include <math.h>
#include <string.h>

static void desc_init(st_op_desc *d, st_op op) {
    memset(d, 0, sizeof *d);
    d->op = op;
}

static st_status f32_tensor(st_ctx *ctx, const char *op, const char *what, const st_tensor *t) {
    ST_TRY(st__check_tensor(op, what, ctx, t));
    return st__check_dtype(op, what, t, ST_F32);
}

static st_status need_4d(const char *op, const char *what, const st_tensor *t, const char *dims) {
    if (t->ndim == 4) return ST_OK;
    char sb[ST_SHAPE_BUF];
    return st__fail(ST_ERR_SHAPE, "%s: %s is %s but must be 4-D %s", op, what,
                    st__shape_fmt(t->ndim, t->ne, sb, sizeof sb), dims);
}

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

/* A [B,H,T,D] operand as the fused kernels take it: last dim contiguous,
 * every stride a whole number of floats, rows at least D floats apart (BLAS
 * leading dimension) unless T == 1. Otherwise an unrecorded contiguous copy. */
static st_status head_operand(st_ctx *ctx, const st_tensor *t, const st_tensor **out) {
    st_view v = st__view(t);
    bool ok = v.nb[3] == 4 || v.ne[3] <= 1;
    for (int d = 0; d < 3; d++)
        ok = ok && v.nb[d] % 4 == 0 && v.nb[d] >= 0;
    ok = ok && (v.ne[2] <= 1 || v.nb[2] >= 4 * v.ne[3]);
    if (ok) {
        *out = t;
        return ST_OK;
    }
    st_tensor *c;
    ST_TRY(st__copy_contig(ctx, t, ST_F32, &c));
    *out = c;
    return ST_OK;
}

/* ---- attention ------------------------------------------------------------------------ */

static st_status attn_check(st_ctx *ctx, const char *op, const st_tensor *q, const st_tensor *k,
                            const st_tensor *v) {
    ST_TRY(f32_tensor(ctx, op, "q", q));
    ST_TRY(f32_tensor(ctx, op, "k", k));
    ST_TRY(f32_tensor(ctx, op, "v", v));
    ST_TRY(need_4d(op, "q", q, "[B,H,T,D]"));
    ST_TRY(need_4d(op, "k", k, "[B,Hkv,S,D]"));
    ST_TRY(need_same(op, "k", k, "v", v));
    char sq[ST_SHAPE_BUF], sk[ST_SHAPE_BUF];
    if (k->ne[0] != q->ne[0] || k->ne[3] != q->ne[3])
        return st__fail(ST_ERR_SHAPE,
                        "%s: q %s and k/v %s must agree in batch (dim 0) and head size (dim 3)",
                        op, st__shape_fmt(q->ndim, q->ne, sq, sizeof sq),
                        st__shape_fmt(k->ndim, k->ne, sk, sizeof sk));
    if (k->ne[1] < 1 || q->ne[1] % k->ne[1] != 0)
        return st__fail(ST_ERR_SHAPE,
                        "%s: q has %lld heads and k/v %lld; the q heads must be a multiple of "
                        "the kv heads (grouped-query attention)",
                        op, (long long)q->ne[1], (long long)k->ne[1]);
    if (q->ne[3] < 1)
        return st__fail(ST_ERR_SHAPE, "%s: head size D is 0 (q %s)", op,
                        st__shape_fmt(q->ndim, q->ne, sq, sizeof sq));
    return ST_OK;
}

st_status st_attention(st_ctx *ctx, const st_tensor *q, const st_tensor *k, const st_tensor *v,
                       bool causal, float scale, st_tensor **out) {
    const char *op = "attention";
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "%s: out is NULL", op);
    *out = NULL;
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    ST_TRY(attn_check(ctx, op, q, k, v));
    if (!isfinite(scale)) return st__fail(ST_ERR_INVALID_ARG, "%s: scale %g is not finite", op, scale);
    st_tensor *o, *lse;
    ST_TRY(st__new_step(ctx, op, ST_F32, 4, q->ne, &o));
    ST_TRY(st__new_step(ctx, op, ST_F32, 3, q->ne, &lse));
    st_op_desc d;
    desc_init(&d, ST_OP_ATTENTION);
    d.p.scale = scale;
    d.p.causal = causal;
    if (st_tensor_numel(o) > 0) {
        if (k->ne[2] == 0) { /* no keys: every row sees nothing */
            st_view ov = st__view(o), lv = st__view(lse);
            ST_TRY(st__fill_view(ctx, &ov, 0.0f));
            ST_TRY(st__fill_view(ctx, &lv, -INFINITY));
        } else {
            const st_tensor *q2, *k2, *v2;
            ST_TRY(head_operand(ctx, q, &q2));
            ST_TRY(head_operand(ctx, k, &k2));
            ST_TRY(head_operand(ctx, v, &v2));
            d.n_src = 3;
            d.n_dst = 2;
            d.src[0] = st__view(q2);
            d.src[1] = st__view(k2);
            d.src[2] = st__view(v2);
            d.dst[0] = st__view(o);
            d.dst[1] = st__view(lse);
            ST_TRY(st__compute(ctx, &d));
        }
    }
    const st_tensor *srcs[4] = {q, k, v, lse};
    ST_TRY(st__record(ctx, ST_OP_ATTENTION, &d.p, srcs, 4, o));
    *out = o;
    return ST_OK;
}

st_status st__attention_backward(st_ctx *ctx, const st_tensor *q, const st_tensor *k,
                                 const st_tensor *v, const st_tensor *o, const st_tensor *lse,
                                 const st_tensor *dout, bool causal, float scale,
                                 st_tensor **dq, st_tensor **dk, st_tensor **dv) {
    const char *op = "attention_backward";
    if (!dq || !dk || !dv) return st__fail(ST_ERR_INVALID_ARG, "%s: an output is NULL", op);
    *dq = *dk = *dv = NULL;
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    ST_TRY(attn_check(ctx, op, q, k, v));
    ST_TRY(f32_tensor(ctx, op, "o", o));
    ST_TRY(f32_tensor(ctx, op, "dout", dout));
    ST_TRY(f32_tensor(ctx, op, "lse", lse));
    ST_TRY(need_same(op, "q", q, "o", o));
    ST_TRY(need_same(op, "o", o, "dout", dout));
    if (lse->ndim != 3 || lse->ne[0] != q->ne[0] || lse->ne[1] != q->ne[1] ||
        lse->ne[2] != q->ne[2] || !st_tensor_is_contiguous(lse)) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE, "%s: lse %s must be the contiguous [B,H,T] of the forward",
                        op, st__shape_fmt(lse->ndim, lse->ne, sb, sizeof sb));
    }
    st_tensor *gq, *gk, *gv;
    ST_TRY(st__new_step(ctx, op, ST_F32, 4, q->ne, &gq));
    ST_TRY(st__new_step(ctx, op, ST_F32, 4, k->ne, &gk));
    ST_TRY(st__new_step(ctx, op, ST_F32, 4, v->ne, &gv));
    if (st_tensor_numel(gq) == 0 || k->ne[2] == 0) { /* nothing flows */
        st_view a = st__view(gq), b = st__view(gk), c = st__view(gv);
        ST_TRY(st__fill_view(ctx, &a, 0.0f));
        ST_TRY(st__fill_view(ctx, &b, 0.0f));
        ST_TRY(st__fill_view(ctx, &c, 0.0f));
    } else {
        const st_tensor *q2, *k2, *v2, *o2, *do2;
        ST_TRY(head_operand(ctx, q, &q2));
        ST_TRY(head_operand(ctx, k, &k2));
        ST_TRY(head_operand(ctx, v, &v2));
        ST_TRY(head_operand(ctx, o, &o2));
        ST_TRY(head_operand(ctx, dout, &do2));
        st_op_desc d;
        desc_init(&d, ST_OP_ATTENTION_BACKWARD);
        d.p.scale = scale;
        d.p.causal = causal;
        d.n_src = 6;
        d.n_dst = 3;
        d.src[0] = st__view(q2);
        d.src[1] = st__view(k2);
        d.src[2] = st__view(v2);
        d.src[3] = st__view(o2);
        d.src[4] = st__view(do2);
        d.src[5] = st__view(lse);
        d.dst[0] = st__view(gq);
        d.dst[1] = st__view(gk);
        d.dst[2] = st__view(gv);
        ST_TRY(st__compute(ctx, &d));
    }
    *dq = gq;
    *dk = gk;
    *dv = gv;
    return ST_OK;
}

/* ---- rope -------------------------------------------------------------------------------- */

static st_status rope_impl(st_ctx *ctx, const char *op, const st_tensor *x, int64_t pos0,
                           float theta, st_rope_kind kind, bool inverse, st_tensor **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "%s: out is NULL", op);
    *out = NULL;
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    ST_TRY(f32_tensor(ctx, op, "x", x));
    ST_TRY(need_4d(op, "x", x, "[B,H,T,D]"));
    if (x->ne[3] % 2 != 0) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE, "%s: x is %s; the head size D must be even", op,
                        st__shape_fmt(x->ndim, x->ne, sb, sizeof sb));
    }
    if (kind != ST_ROPE_HALF && kind != ST_ROPE_INTERLEAVED)
        return st__fail(ST_ERR_INVALID_ARG, "%s: unknown kind %d (0 half, 1 interleaved)", op,
                        (int)kind);
    if (pos0 < 0) return st__fail(ST_ERR_INVALID_ARG, "%s: pos0 %lld is negative", op, (long long)pos0);
    if (!(theta > 0.0f) || !isfinite(theta))
        return st__fail(ST_ERR_INVALID_ARG, "%s: theta %g must be positive and finite", op, theta);
    st_tensor *o;
    ST_TRY(st__new_step(ctx, op, ST_F32, 4, x->ne, &o));
    const st_tensor *x2;
    ST_TRY(st__inner_stride(ctx, x, 4, 4, &x2));
    st_op_desc d;
    desc_init(&d, ST_OP_ROPE);
    d.p.rope_kind = (int)kind;
    d.p.pos0 = pos0;
    d.p.theta = theta;
    d.p.rope_inverse = inverse;
    d.n_src = 1;
    d.n_dst = 1;
    d.src[0] = st__view(x2);
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    if (!inverse) {
        const st_tensor *srcs[1] = {x};
        ST_TRY(st__record(ctx, ST_OP_ROPE, &d.p, srcs, 1, o));
    }
    *out = o;
    return ST_OK;
}

st_status st_rope(st_ctx *ctx, const st_tensor *x, int64_t pos0, float theta, st_rope_kind kind,
                  st_tensor **out) {
    return rope_impl(ctx, "rope", x, pos0, theta, kind, false, out);
}

st_status st__rope_backward(st_ctx *ctx, const st_tensor *dy, int64_t pos0, float theta,
                            st_rope_kind kind, st_tensor **dx) {
    return rope_impl(ctx, "rope_backward", dy, pos0, theta, kind, true, dx);
}

/* ---- cross-entropy ------------------------------------------------------------------------- */

/* logits as an [N, V] view with contiguous rows of V (a copy when the
 * leading dims cannot merge into one strided row index). */
static st_status ce_rows(st_ctx *ctx, const st_tensor *logits, st_view *v, int64_t *n_rows) {
    int nd = logits->ndim;
    int64_t V = logits->ne[nd - 1], N = 1;
    for (int d = 0; d < nd - 1; d++)
        N *= logits->ne[d];
    st_view x = st__view(logits);
    bool ok = x.nb[nd - 1] == 4 || V <= 1;
    for (int d = 0; d + 1 < nd - 1 && ok; d++)
        ok = x.nb[d] == x.nb[d + 1] * x.ne[d + 1];
    const st_tensor *src = logits;
    if (!ok) {
        st_tensor *c;
        ST_TRY(st__copy_contig(ctx, logits, ST_F32, &c));
        src = c;
        x = st__view(c);
    }
    memset(v, 0, sizeof *v);
    v->data = src->data;
    v->dtype = ST_F32;
    v->ndim = 2;
    v->ne[0] = N;
    v->ne[1] = V;
    v->nb[0] = nd >= 2 ? x.nb[nd - 2] : V * 4;
    v->nb[1] = 4;
    v->ne[2] = v->ne[3] = 1;
    v->nb[2] = v->nb[3] = 4;
    if (N <= 1) v->nb[0] = V * 4;
    *n_rows = N;
    return ST_OK;
}

static st_status ce_check(st_ctx *ctx, const char *op, const st_tensor *logits,
                          const st_tensor *targets, const st_tensor **tg, st_view *lv,
                          int64_t *n_rows) {
    ST_TRY(f32_tensor(ctx, op, "logits", logits));
    ST_TRY(st__check_tensor(op, "targets", ctx, targets));
    if (targets->dtype != ST_I32)
        return st__fail(ST_ERR_DTYPE, "%s: targets are %s but must be i32", op,
                        st_dtype_name(targets->dtype));
    int64_t V = logits->ne[logits->ndim - 1];
    ST_TRY(ce_rows(ctx, logits, lv, n_rows));
    if (st_tensor_numel(targets) != *n_rows) {
        char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE,
                        "%s: logits %s have %lld rows of %lld classes but targets %s have %lld "
                        "elements",
                        op, st__shape_fmt(logits->ndim, logits->ne, sa, sizeof sa),
                        (long long)*n_rows, (long long)V,
                        st__shape_fmt(targets->ndim, targets->ne, sb, sizeof sb),
                        (long long)st_tensor_numel(targets));
    }
    if (V == 0 && *n_rows > 0)
        return st__fail(ST_ERR_SHAPE, "%s: logits have no classes (last dim is 0)", op);
    return st__ids_operand(ctx, op, targets, ST_MAX_DIMS, tg);
}

static st_view flat_view(const st_tensor *t, int64_t n) {
    st_view v;
    memset(&v, 0, sizeof v);
    v.data = t->data;
    v.dtype = t->dtype;
    v.ndim = 1;
    v.ne[0] = n;
    v.nb[0] = (int64_t)st_dtype_size(t->dtype);
    for (int d = 1; d < ST_MAX_DIMS; d++) {
        v.ne[d] = 1;
        v.nb[d] = v.nb[0];
    }
    return v;
}

st_status st_cross_entropy(st_ctx *ctx, const st_tensor *logits, const st_tensor *targets,
                           st_tensor **loss) {
    const char *op = "cross_entropy";
    if (!loss) return st__fail(ST_ERR_INVALID_ARG, "%s: loss is NULL", op);
    *loss = NULL;
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    const st_tensor *tg;
    st_view lv;
    int64_t N;
    ST_TRY(ce_check(ctx, op, logits, targets, &tg, &lv, &N));
    int64_t one = 1;
    st_tensor *l, *lse;
    ST_TRY(st__new_step(ctx, op, ST_F32, 1, &one, &l));
    ST_TRY(st__new_step(ctx, op, ST_F32, 1, &N, &lse));
    st_op_desc d;
    desc_init(&d, ST_OP_CROSS_ENTROPY);
    if (N == 0) {
        *(float *)l->data = 0.0f;
    } else {
        d.n_src = 2;
        d.n_dst = 2;
        d.src[0] = lv;
        d.src[1] = flat_view(tg, N);
        d.dst[0] = st__view(l);
        d.dst[1] = st__view(lse);
        ST_TRY(st__compute(ctx, &d));
    }
    const st_tensor *srcs[3] = {logits, targets, lse};
    ST_TRY(st__record(ctx, ST_OP_CROSS_ENTROPY, &d.p, srcs, 3, l));
    *loss = l;
    return ST_OK;
}

st_status st__cross_entropy_backward(st_ctx *ctx, const st_tensor *logits,
                                     const st_tensor *targets, const st_tensor *lse,
                                     const st_tensor *dloss, st_tensor **dlogits) {
    const char *op = "cross_entropy_backward";
    if (!dlogits) return st__fail(ST_ERR_INVALID_ARG, "%s: dlogits is NULL", op);
    *dlogits = NULL;
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    const st_tensor *tg;
    st_view lv;
    int64_t N;
    ST_TRY(ce_check(ctx, op, logits, targets, &tg, &lv, &N));
    ST_TRY(f32_tensor(ctx, op, "lse", lse));
    ST_TRY(f32_tensor(ctx, op, "dloss", dloss));
    if (st_tensor_numel(lse) != N || !st_tensor_is_contiguous(lse) || st_tensor_numel(dloss) != 1)
        return st__fail(ST_ERR_SHAPE,
                        "%s: lse must be the forward's contiguous [%lld] and dloss one element",
                        op, (long long)N);
    st_tensor *g;
    ST_TRY(st__new_step(ctx, op, ST_F32, logits->ndim, logits->ne, &g));
    if (N > 0) {
        st_op_desc d;
        desc_init(&d, ST_OP_CROSS_ENTROPY_BACKWARD);
        d.n_src = 4;
        d.n_dst = 1;
        d.src[0] = lv;
        d.src[1] = flat_view(tg, N);
        d.src[2] = flat_view(lse, N);
        d.src[3] = st__view(dloss);
        d.dst[0] = lv;
        d.dst[0].data = g->data;
        d.dst[0].nb[0] = lv.ne[1] * 4;
        ST_TRY(st__compute(ctx, &d));
    }
    *dlogits = g;
    return ST_OK;
}

/* ---- dropout --------------------------------------------------------------------------------- */

static st_status dropout_impl(st_ctx *ctx, const char *op, const st_tensor *x, float p,
                              uint64_t seed, bool record, st_tensor **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "%s: out is NULL", op);
    *out = NULL;
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    ST_TRY(f32_tensor(ctx, op, "x", x));
    if (!(p >= 0.0f && p < 1.0f))
        return st__fail(ST_ERR_INVALID_ARG, "%s: p %g is outside [0, 1)", op, p);
    if (p == 0.0f) {
        *out = (st_tensor *)x; /* the identity: x itself */
        return ST_OK;
    }
    st_tensor *o;
    ST_TRY(st__new_step(ctx, op, ST_F32, x->ndim, x->ne, &o));
    const st_tensor *x2 = x;
    if (!st_tensor_is_contiguous(x)) {
        st_tensor *c;
        ST_TRY(st__copy_contig(ctx, x, ST_F32, &c));
        x2 = c;
    }
    st_op_desc d;
    desc_init(&d, ST_OP_DROPOUT);
    d.p.alpha = p;
    d.p.seed = seed;
    d.n_src = 1;
    d.n_dst = 1;
    d.src[0] = st__view(x2);
    d.dst[0] = st__view(o);
    ST_TRY(st__compute(ctx, &d));
    if (record) {
        const st_tensor *srcs[1] = {x};
        ST_TRY(st__record(ctx, ST_OP_DROPOUT, &d.p, srcs, 1, o));
    }
    *out = o;
    return ST_OK;
}

st_status st_dropout(st_ctx *ctx, const st_tensor *x, float p, uint64_t seed, st_tensor **out) {
    return dropout_impl(ctx, "dropout", x, p, seed, true, out);
}

st_status st__dropout_backward(st_ctx *ctx, const st_tensor *dy, float p, uint64_t seed,
                               st_tensor **dx) {
    return dropout_impl(ctx, "dropout_backward", dy, p, seed, false, dx);
}
