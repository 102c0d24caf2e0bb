/*
 * matmul.c — st_matmul and st__matmul_into: NumPy matmul semantics on top
 * of the backend's MATMUL op.
 *
 * A plan (mm_plan) resolves the semantics once: 1-D operands are promoted
 * (a [K] -> [1,K], b [K] -> [K,1]) and the promoted dims squeezed from the
 * result; batch dims (at most 2, since tensors have at most 4 dims)
 * broadcast. The descriptor then carries a, b and dst with the same ndim
 * (nbatch + 2): batch dims of an operand that broadcast get stride 0, and an
 * operand whose last two dims are neither row-major nor transposed (with a
 * leading dimension BLAS accepts) is first copied contiguous (unrecorded).
 * Results are step tensors in the arena.
 */
#include "tensor/tensor_impl.h"

#include <string.h>

typedef struct mm_plan {
    int nbatch;        /* 0..2 */
    int64_t batch[2];
    int64_t M, K, N;
    bool a_vec, b_vec; /* promoted 1-D operands */
    int out_ndim;
    int64_t out_shape[ST_MAX_DIMS];
} mm_plan;

static st_status mm_plan_make(const char *op, const st_tensor *a, const st_tensor *b,
                              mm_plan *pl) {
    memset(pl, 0, sizeof *pl);
    if (!((a->dtype == ST_F32 && b->dtype == ST_F32) ||
          (a->dtype == ST_BF16 && b->dtype == ST_BF16)))
        return st__fail(ST_ERR_DTYPE,
                        "%s: a is %s and b is %s; matmul takes f32 or bf16 for both", op,
                        st_dtype_name(a->dtype), st_dtype_name(b->dtype));
    char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
    pl->a_vec = a->ndim == 1;
    pl->b_vec = b->ndim == 1;
    int abd = pl->a_vec ? 0 : a->ndim - 2, bbd = pl->b_vec ? 0 : b->ndim - 2;
    pl->M = pl->a_vec ? 1 : a->ne[a->ndim - 2];
    pl->K = a->ne[a->ndim - 1];
    int64_t kb = pl->b_vec ? b->ne[0] : b->ne[b->ndim - 2];
    pl->N = pl->b_vec ? 1 : b->ne[b->ndim - 1];
    if (kb != pl->K)
        return st__fail(ST_ERR_SHAPE, "%s: a %s and b %s: inner dims %lld and %lld differ", op,
                        st__shape_fmt(a->ndim, a->ne, sa, sizeof sa),
                        st__shape_fmt(b->ndim, b->ne, sb, sizeof sb), (long long)pl->K,
                        (long long)kb);
    pl->nbatch = abd > bbd ? abd : bbd;
    for (int i = 0; i < pl->nbatch; i++) {
        int ai = i - (pl->nbatch - abd), bi = i - (pl->nbatch - bbd);
        int64_t da = ai >= 0 ? a->ne[ai] : 1, db = bi >= 0 ? b->ne[bi] : 1;
        if (da == db || db == 1) pl->batch[i] = da;
        else if (da == 1) pl->batch[i] = db;
        else
            return st__fail(ST_ERR_SHAPE,
                            "%s: batch dims of a %s and b %s do not broadcast (%lld vs %lld)", op,
                            st__shape_fmt(a->ndim, a->ne, sa, sizeof sa),
                            st__shape_fmt(b->ndim, b->ne, sb, sizeof sb), (long long)da,
                            (long long)db);
    }
    int k = 0;
    for (int i = 0; i < pl->nbatch; i++) pl->out_shape[k++] = pl->batch[i];
    if (!pl->a_vec) pl->out_shape[k++] = pl->M;
    if (!pl->b_vec) pl->out_shape[k++] = pl->N;
    if (k == 0) pl->out_shape[k++] = 1;
    pl->out_ndim = k;
    for (int i = k; i < ST_MAX_DIMS; i++) pl->out_shape[i] = 1;
    return ST_OK;
}

/* x seen as [batch..., R, C] (promoted, batch broadcast). */
static st_view mm_operand(const st_tensor *x, bool vec, bool is_a, const mm_plan *pl) {
    st_view xv = st__view(x);
    size_t es = st_dtype_size(x->dtype);
    st_view v;
    memset(&v, 0, sizeof v);
    v.data = xv.data;
    v.dtype = xv.dtype;
    int nd = pl->nbatch + 2;
    v.ndim = nd;
    int64_t R, C, nbr, nbc;
    if (vec && is_a) {
        R = 1, C = pl->K, nbr = pl->K * (int64_t)es, nbc = xv.nb[0];
    } else if (vec) {
        R = pl->K, C = 1, nbr = xv.nb[0], nbc = (int64_t)es;
    } else {
        R = xv.ne[xv.ndim - 2], C = xv.ne[xv.ndim - 1];
        nbr = xv.nb[xv.ndim - 2], nbc = xv.nb[xv.ndim - 1];
    }
    /* Size-1 dims: pick the stride that gives a valid interpretation. */
    if (R == 1 && C == 1) {
        nbr = nbc = (int64_t)es;
    } else if (C == 1) {
        nbc = nbr == (int64_t)es ? R * (int64_t)es : (int64_t)es;
    } else if (R == 1) {
        nbr = nbc == (int64_t)es ? C * (int64_t)es : (int64_t)es;
    }
    v.ne[nd - 2] = R;
    v.ne[nd - 1] = C;
    v.nb[nd - 2] = nbr;
    v.nb[nd - 1] = nbc;
    int xb = vec ? 0 : xv.ndim - 2;
    for (int i = 0; i < pl->nbatch; i++) {
        int j = i - (pl->nbatch - xb);
        v.ne[i] = pl->batch[i];
        v.nb[i] = (j >= 0 && xv.ne[j] == pl->batch[i] && pl->batch[i] != 1) ? xv.nb[j] : 0;
    }
    for (int i = nd; i < ST_MAX_DIMS; i++) {
        v.ne[i] = 1;
        v.nb[i] = 0;
    }
    return v;
}

/* Row-major (unit column stride, row stride >= C) or transposed (unit row
 * stride, column stride >= R): what BLAS takes with a leading dimension. */
static bool mm_layout_ok(const st_view *v) {
    int nd = v->ndim;
    int64_t es = (int64_t)st_dtype_size(v->dtype);
    int64_t R = v->ne[nd - 2], C = v->ne[nd - 1], nbr = v->nb[nd - 2], nbc = v->nb[nd - 1];
    if (nbc == es && nbr >= C * es && nbr % es == 0) return true;
    if (nbr == es && nbc >= R * es && nbc % es == 0) return true;
    return false;
}

/* dst_data: contiguous f32 [batch..., M, N]. */
static st_status mm_compute(st_ctx *ctx, const st_tensor *a, const st_tensor *b,
                            const mm_plan *pl, void *dst_data, bool accumulate) {
    int nd = pl->nbatch + 2;
    st_view dv;
    memset(&dv, 0, sizeof dv);
    dv.data = dst_data;
    dv.dtype = ST_F32;
    dv.ndim = nd;
    for (int i = 0; i < pl->nbatch; i++) dv.ne[i] = pl->batch[i];
    dv.ne[nd - 2] = pl->M;
    dv.ne[nd - 1] = pl->N;
    int64_t s = 4;
    for (int i = ST_MAX_DIMS - 1; i >= 0; i--) {
        if (i >= nd) {
            dv.ne[i] = 1;
            dv.nb[i] = 0;
            continue;
        }
        dv.nb[i] = s;
        s *= dv.ne[i] ? dv.ne[i] : 1;
    }
    if (pl->K == 0) return accumulate ? ST_OK : st__fill_view(ctx, &dv, 0.0f);
    st_view av = mm_operand(a, pl->a_vec, true, pl);
    if (!mm_layout_ok(&av)) {
        st_tensor *c;
        ST_TRY(st__copy_contig(ctx, a, a->dtype, &c));
        av = mm_operand(c, pl->a_vec, true, pl);
    }
    st_view bv = mm_operand(b, pl->b_vec, false, pl);
    if (!mm_layout_ok(&bv)) {
        st_tensor *c;
        ST_TRY(st__copy_contig(ctx, b, b->dtype, &c));
        bv = mm_operand(c, pl->b_vec, false, pl);
    }
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = ST_OP_MATMUL;
    d.p.accumulate = accumulate;
    d.n_src = 2;
    d.n_dst = 1;
    d.src[0] = av;
    d.src[1] = bv;
    d.dst[0] = dv;
    return st__compute(ctx, &d);
}

st_status st_matmul(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "matmul: out is NULL");
    *out = NULL;
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "matmul: ctx is NULL");
    ST_TRY(st__check_tensor("matmul", "a", ctx, a));
    ST_TRY(st__check_tensor("matmul", "b", ctx, b));
    mm_plan pl;
    ST_TRY(mm_plan_make("matmul", a, b, &pl));
    st_tensor *o;
    ST_TRY(st__new_step(ctx, "matmul", ST_F32, pl.out_ndim, pl.out_shape, &o));
    ST_TRY(mm_compute(ctx, a, b, &pl, o->data, false));
    const st_tensor *srcs[2] = {a, b};
    ST_TRY(st__record(ctx, ST_OP_MATMUL, NULL, srcs, 2, o));
    *out = o;
    return ST_OK;
}

st_status st__matmul_into(st_ctx *ctx, const st_tensor *a, const st_tensor *b, st_tensor *dst,
                          bool accumulate) {
    const char *op = "matmul_into";
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    ST_TRY(st__check_tensor(op, "a", ctx, a));
    ST_TRY(st__check_tensor(op, "b", ctx, b));
    ST_TRY(st__check_tensor(op, "dst", ctx, dst));
    ST_TRY(st__check_dtype(op, "dst", dst, ST_F32));
    mm_plan pl;
    ST_TRY(mm_plan_make(op, a, b, &pl));
    bool same = dst->ndim == pl.out_ndim;
    for (int d = 0; same && d < dst->ndim; d++) same = dst->ne[d] == pl.out_shape[d];
    if (same && st_tensor_is_contiguous(dst))
        return mm_compute(ctx, a, b, &pl, dst->data, accumulate);
    /* dst may also drop or keep-as-1 the batch dims: the product is then
     * summed over them (a weight gradient from a batched product). */
    int mat = pl.out_ndim - pl.nbatch; /* result dims that are not batch */
    bool reducible = !same && dst->ndim >= mat && dst->ndim <= pl.out_ndim;
    for (int j = 0; reducible && j < dst->ndim; j++) {
        int i = j + pl.out_ndim - dst->ndim;
        int64_t want = pl.out_shape[i];
        if (j >= dst->ndim - mat) reducible = dst->ne[j] == want;
        else reducible = dst->ne[j] == want || dst->ne[j] == 1;
    }
    if (!same && !reducible) {
        char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE, "%s: dst is %s but a @ b is %s", op,
                        st__shape_fmt(dst->ndim, dst->ne, sa, sizeof sa),
                        st__shape_fmt(pl.out_ndim, pl.out_shape, sb, sizeof sb));
    }
    st_tensor *tmp;
    ST_TRY(st__new_step(ctx, op, ST_F32, pl.out_ndim, pl.out_shape, &tmp));
    ST_TRY(mm_compute(ctx, a, b, &pl, tmp->data, false));
    const st_tensor *res = tmp;
    if (!same) {
        st_tensor *r;
        ST_TRY(st_sum_to(ctx, tmp, dst->ndim, dst->ne, &r));
        res = r;
    }
    return accumulate ? st_axpy_(dst, 1.0f, res) : st_copy_(dst, res);
}
