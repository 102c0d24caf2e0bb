/*
 * autograd_fused.c — layer 4: the backward rules of the fused transformer
 * ops (attention, cross-entropy, rope, dropout). autograd.c's node_backward
 * hands a tape node's op, params, recorded sources, output and output
 * gradient here; each rule calls layer 3's backward helper (fused.c) and adds
 * the results into the sources' ->grad.
 *
 * Recorded sources (see src/tensor/fused.c): attention q, k, v, lse; cross-
 * entropy logits, targets, lse; rope x; dropout x. lse (the saved per-row
 * log-sum-exp) never requires grad and is only read here.
 *
 * Gradient buffers follow autograd.c's rule: a persistent tensor's grad is a
 * persistent zero-filled tensor made on first use and accumulated into; a
 * step tensor without a grad adopts the fresh contiguous result. Results of
 * the helpers are fresh step tensors nobody else holds, so adoption is safe.
 * Threading: one thread drives a context (layer 3's rule).
 */
#include "nn/autograd_fused.h"

#include <string.h>

static bool wants(const st_tensor *t) {
    return t && t->requires_grad;
}

static bool same_shape(const st_tensor *a, const st_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->ne[d] != b->ne[d]) return false;
    return true;
}

/* t->grad += dx (dx a fresh contiguous step tensor of t's shape, so a step
 * tensor without a grad adopts it; autograd.c's rules). */
static st_status accumulate(st_ctx *ctx, st_tensor *t, st_tensor *dx) {
    if (!wants(t)) return ST_OK;
    if (!same_shape(t, dx))
        return st__fail(ST_ERR_INTERNAL, "autograd: fused gradient shape differs from its input");
    return st__ag_grad_add(ctx, t, dx, true);
}

bool st__ag_fused_handles(st_op op) {
    switch (op) {
    case ST_OP_ATTENTION:
    case ST_OP_CROSS_ENTROPY:
    case ST_OP_ROPE:
    case ST_OP_DROPOUT:
        return true;
    default:
        return false;
    }
}

st_status st__ag_fused_backward(st_ctx *ctx, st_op op, const st_op_params *p,
                                st_tensor *const *src, int n_src, st_tensor *out,
                                st_tensor *dy) {
    st_tensor *dx = NULL;
    switch (op) {
    case ST_OP_ATTENTION: {
        if (n_src < 4)
            return st__fail(ST_ERR_INTERNAL, "autograd: attention recorded %d sources, not 4",
                            n_src);
        st_tensor *q = src[0], *k = src[1], *v = src[2], *lse = src[3];
        if (!wants(q) && !wants(k) && !wants(v)) return ST_OK;
        st_tensor *dq = NULL, *dk = NULL, *dv = NULL;
        ST_TRY(st__attention_backward(ctx, q, k, v, out, lse, dy, p->causal, p->scale, &dq, &dk,
                                      &dv));
        ST_TRY(accumulate(ctx, q, dq));
        ST_TRY(accumulate(ctx, k, dk));
        return accumulate(ctx, v, dv);
    }
    case ST_OP_CROSS_ENTROPY:
        if (n_src < 3)
            return st__fail(ST_ERR_INTERNAL,
                            "autograd: cross_entropy recorded %d sources, not 3", n_src);
        if (!wants(src[0])) return ST_OK;
        ST_TRY(st__cross_entropy_backward(ctx, src[0], src[1], src[2], dy, &dx));
        return accumulate(ctx, src[0], dx);
    case ST_OP_ROPE:
        if (n_src < 1 || !wants(src[0])) return ST_OK;
        ST_TRY(st__rope_backward(ctx, dy, p->pos0, p->theta, (st_rope_kind)p->rope_kind, &dx));
        return accumulate(ctx, src[0], dx);
    case ST_OP_DROPOUT:
        if (n_src < 1 || !wants(src[0])) return ST_OK;
        ST_TRY(st__dropout_backward(ctx, dy, p->alpha, p->seed, &dx));
        return accumulate(ctx, src[0], dx);
    default:
        return st__fail(ST_ERR_UNSUPPORTED, "st_backward: no fused gradient for op '%s'",
                        st_op_name(op));
    }
}
