/*
 * view.c — view operations: reshape, permute/transpose, slice, expand,
 * contiguous and view_of. A view is a new step tensor (arena struct) with
 * its own ne/nb/data over the base's storage; no bytes move (except
 * st_contiguous on a non-contiguous input, which copies).
 *
 * Views are recorded like ops (ST_OP_RESHAPE, PERMUTE, SLICE, EXPAND,
 * CONTIGUOUS with their params) so autograd can route gradients through
 * them; st_view_of is a raw window for loaders and caches and is not
 * recorded. Views of persistent tensors hold no reference: they are valid
 * while the base lives and until st_ctx_reset.
 */
#include "tensor/tensor_impl.h"

#include <string.h>

#define VIEW_PROLOGUE(opname, a)                                                    \
    do {                                                                            \
        if (!out) return st__fail(ST_ERR_INVALID_ARG, "%s: out is NULL", opname);   \
        *out = NULL;                                                                \
        if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "%s: ctx is NULL", opname);   \
        ST_TRY(st__check_tensor(opname, "a", ctx, a));                              \
    } while (0)

static st_status finish(st_ctx *ctx, st_op op, const st_op_params *p, const st_tensor *a,
                        st_tensor *v, st_tensor **out) {
    st__norm_strides(v->ndim, v->ne, v->nb, st_dtype_size(v->dtype));
    for (int d = v->ndim; d < ST_MAX_DIMS; d++) {
        v->ne[d] = 1;
        v->nb[d] = 0;
    }
    const st_tensor *srcs[1] = {a};
    ST_TRY(st__record(ctx, op, p, srcs, 1, v));
    *out = v;
    return ST_OK;
}

/* ---- reshape ----------------------------------------------------------------------- */

/* Strides (bytes) for viewing (ond, one, onb) as (nnd, nne) without a copy,
 * or false when the layout cannot express it. Dims are split into chunks of
 * memory-contiguous runs; each new dim must fall inside one chunk (the
 * algorithm PyTorch's view() uses). */
static bool reshape_strides(int ond, const int64_t *one, const int64_t *onb, int nnd,
                            const int64_t *nne, int64_t *nnb, size_t es) {
    int64_t numel = 1;
    for (int d = 0; d < ond; d++) numel *= one[d];
    if (numel == 0) {
        int64_t s = (int64_t)es;
        for (int d = nnd - 1; d >= 0; d--) {
            nnb[d] = s;
            s *= nne[d] ? nne[d] : 1;
        }
        return true;
    }
    int vd = nnd - 1;
    int64_t chunk = onb[ond - 1];
    int64_t tnum = 1, vnum = 1;
    for (int td = ond - 1; td >= 0; td--) {
        tnum *= one[td];
        if (td == 0 || (one[td - 1] != 1 && onb[td - 1] != tnum * chunk)) {
            while (vd >= 0 && (vnum < tnum || nne[vd] == 1)) {
                nnb[vd] = vnum * chunk;
                vnum *= nne[vd];
                vd--;
            }
            if (vnum != tnum) return false;
            if (td > 0) {
                chunk = onb[td - 1];
                tnum = 1;
                vnum = 1;
            }
        }
    }
    return vd == -1;
}

/* Resolves a -1 entry and checks the element count; shape into res. */
static st_status resolve_shape(const char *op, const st_tensor *a, int ndim,
                               const int64_t *shape, int64_t *res) {
    if (!shape) return st__fail(ST_ERR_INVALID_ARG, "%s: shape is NULL", op);
    if (ndim < 1 || ndim > ST_MAX_DIMS)
        return st__fail(ST_ERR_SHAPE, "%s: ndim %d is outside 1..%d", op, ndim, ST_MAX_DIMS);
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < ndim; d++) {
        res[d] = shape[d];
        if (shape[d] == -1) {
            if (infer >= 0)
                return st__fail(ST_ERR_SHAPE, "%s: more than one -1 in the new shape", op);
            infer = d;
        } else if (shape[d] < 0) {
            return st__fail(ST_ERR_SHAPE, "%s: dim %d of the new shape is %lld", op, d,
                            (long long)shape[d]);
        } else if (__builtin_mul_overflow(known, shape[d], &known)) {
            return st__fail(ST_ERR_SHAPE, "%s: the new shape overflows", op);
        }
    }
    int64_t numel = st_tensor_numel(a);
    char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            return st__fail(ST_ERR_SHAPE, "%s: cannot infer the -1 in %s from %s (%lld elements)",
                            op, st__shape_fmt(ndim, shape, sb, sizeof sb),
                            st__shape_fmt(a->ndim, a->ne, sa, sizeof sa), (long long)numel);
        res[infer] = numel / known;
        known = numel;
    }
    if (known != numel)
        return st__fail(ST_ERR_SHAPE, "%s: %s (%lld elements) cannot become %s (%lld elements)",
                        op, st__shape_fmt(a->ndim, a->ne, sa, sizeof sa), (long long)numel,
                        st__shape_fmt(ndim, res, sb, sizeof sb), (long long)known);
    return ST_OK;
}

st_status st_reshape(st_ctx *ctx, const st_tensor *a, int ndim, const int64_t *shape,
                     st_tensor **out) {
    VIEW_PROLOGUE("reshape", a);
    int64_t res[ST_MAX_DIMS] = {1, 1, 1, 1}, nb[ST_MAX_DIMS] = {0, 0, 0, 0};
    ST_TRY(resolve_shape("reshape", a, ndim, shape, res));
    if (!reshape_strides(a->ndim, a->ne, a->nb, ndim, res, nb, st_dtype_size(a->dtype))) {
        char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_SHAPE,
                        "reshape: the strides of %s (a non-contiguous view) cannot express %s "
                        "without a copy; call st_contiguous first",
                        st__shape_fmt(a->ndim, a->ne, sa, sizeof sa),
                        st__shape_fmt(ndim, res, sb, sizeof sb));
    }
    st_tensor *v;
    ST_TRY(st__view_step(ctx, "reshape", a, &v));
    v->ndim = ndim;
    memcpy(v->ne, res, sizeof v->ne);
    memcpy(v->nb, nb, sizeof v->nb);
    return finish(ctx, ST_OP_RESHAPE, NULL, a, v, out);
}

/* ---- permute / transpose --------------------------------------------------------------- */

st_status st_permute(st_ctx *ctx, const st_tensor *a, const int *perm, st_tensor **out) {
    VIEW_PROLOGUE("permute", a);
    if (!perm) return st__fail(ST_ERR_INVALID_ARG, "permute: perm is NULL");
    st_op_params p;
    memset(&p, 0, sizeof p);
    bool seen[ST_MAX_DIMS] = {false, false, false, false};
    for (int i = 0; i < a->ndim; i++) {
        int ax;
        ST_TRY(st__check_axis("permute", perm[i], a->ndim, a, &ax));
        if (seen[ax])
            return st__fail(ST_ERR_INVALID_ARG,
                            "permute: axis %d appears twice in perm (must be a permutation of "
                            "0..%d)", ax, a->ndim - 1);
        seen[ax] = true;
        p.perm[i] = ax;
    }
    for (int i = a->ndim; i < ST_MAX_DIMS; i++) p.perm[i] = i;
    st_tensor *v;
    ST_TRY(st__view_step(ctx, "permute", a, &v));
    for (int i = 0; i < a->ndim; i++) {
        v->ne[i] = a->ne[p.perm[i]];
        v->nb[i] = a->nb[p.perm[i]];
    }
    return finish(ctx, ST_OP_PERMUTE, &p, a, v, out);
}

st_status st_transpose(st_ctx *ctx, const st_tensor *a, int d0, int d1, st_tensor **out) {
    VIEW_PROLOGUE("transpose", a);
    int x, y;
    ST_TRY(st__check_axis("transpose", d0, a->ndim, a, &x));
    ST_TRY(st__check_axis("transpose", d1, a->ndim, a, &y));
    int perm[ST_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) perm[i] = i;
    perm[x] = y;
    perm[y] = x;
    return st_permute(ctx, a, perm, out);
}

/* ---- slice --------------------------------------------------------------------------------- */

st_status st_slice(st_ctx *ctx, const st_tensor *a, int axis, int64_t start, int64_t stop,
                   int64_t step, st_tensor **out) {
    VIEW_PROLOGUE("slice", a);
    int ax;
    ST_TRY(st__check_axis("slice", axis, a->ndim, a, &ax));
    if (step < 1)
        return st__fail(ST_ERR_INVALID_ARG, "slice: step %lld must be >= 1", (long long)step);
    int64_t n = a->ne[ax];
    if (start < 0) start += n;
    if (start < 0) start = 0;
    if (start > n) start = n;
    if (stop < 0) stop += n;
    if (stop < 0) stop = 0;
    if (stop > n) stop = n;
    int64_t len = stop > start ? (stop - start - 1) / step + 1 : 0;
    st_tensor *v;
    ST_TRY(st__view_step(ctx, "slice", a, &v));
    if (len > 0) v->data = (char *)a->data + start * a->nb[ax];
    v->ne[ax] = len;
    if (len > 1) v->nb[ax] = a->nb[ax] * step; /* step < n here: no overflow */
    st_op_params p;
    memset(&p, 0, sizeof p);
    p.axis = ax;
    p.start = start;
    p.stop = stop > start ? stop : start;
    p.step = step;
    return finish(ctx, ST_OP_SLICE, &p, a, v, out);
}

/* ---- expand ---------------------------------------------------------------------------------- */

st_status st_expand(st_ctx *ctx, const st_tensor *a, int ndim, const int64_t *shape,
                    st_tensor **out) {
    VIEW_PROLOGUE("expand", a);
    if (!shape) return st__fail(ST_ERR_INVALID_ARG, "expand: shape is NULL");
    char sa[ST_SHAPE_BUF], sb[ST_SHAPE_BUF];
    if (ndim < a->ndim || ndim > ST_MAX_DIMS)
        return st__fail(ST_ERR_SHAPE, "expand: cannot expand %s to %d dims (needs %d..%d)",
                        st__shape_fmt(a->ndim, a->ne, sa, sizeof sa), ndim, a->ndim,
                        ST_MAX_DIMS);
    st_tensor *v;
    ST_TRY(st__view_step(ctx, "expand", a, &v));
    int lead = ndim - a->ndim;
    int64_t ne[ST_MAX_DIMS] = {1, 1, 1, 1}, nb[ST_MAX_DIMS] = {0, 0, 0, 0};
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        int64_t want = shape[i];
        bool ok;
        if (j < 0) {
            ok = want >= 0;
            ne[i] = want;
            nb[i] = 0;
        } else if (want == -1 || want == a->ne[j]) {
            ok = true;
            ne[i] = a->ne[j];
            nb[i] = a->nb[j];
        } else {
            ok = a->ne[j] == 1 && want >= 0;
            ne[i] = want;
            nb[i] = 0;
        }
        if (!ok)
            return st__fail(ST_ERR_SHAPE,
                            "expand: %s cannot broadcast to %s (dim %d: only size-1 dims expand)",
                            st__shape_fmt(a->ndim, a->ne, sa, sizeof sa),
                            st__shape_fmt(ndim, shape, sb, sizeof sb), i);
    }
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(numel, ne[i], &numel))
            return st__fail(ST_ERR_SHAPE, "expand: %s has too many elements",
                            st__shape_fmt(ndim, ne, sb, sizeof sb));
    v->ndim = ndim;
    memcpy(v->ne, ne, sizeof ne);
    memcpy(v->nb, nb, sizeof nb);
    return finish(ctx, ST_OP_EXPAND, NULL, a, v, out);
}

/* ---- contiguous -------------------------------------------------------------------------------- */

st_status st_contiguous(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    VIEW_PROLOGUE("contiguous", a);
    st_tensor *v;
    if (st_tensor_is_contiguous(a)) {
        ST_TRY(st__view_step(ctx, "contiguous", a, &v));
    } else {
        ST_TRY(st__copy_contig(ctx, a, a->dtype, &v));
    }
    return finish(ctx, ST_OP_CONTIGUOUS, NULL, a, v, out);
}

/* ---- view_of ------------------------------------------------------------------------------------ */

st_status st_view_of(st_ctx *ctx, const st_tensor *a, int ndim, const int64_t *shape,
                     const int64_t *strides_bytes, size_t offset_bytes, st_tensor **out) {
    VIEW_PROLOGUE("view_of", a);
    if (!a->storage || !a->storage->data)
        return st__fail(ST_ERR_INVALID_ARG, "view_of: a has no storage to view");
    if (!strides_bytes) return st__fail(ST_ERR_INVALID_ARG, "view_of: strides_bytes is NULL");
    ST_TRY(st__check_shape("view_of", a->dtype, ndim, shape, NULL));
    size_t es = st_dtype_size(a->dtype);
    const st_storage *s = a->storage;
    if ((char *)a->data < (char *)s->data || (size_t)((char *)a->data - (char *)s->data) > s->size)
        return st__fail(ST_ERR_BOUNDS, "view_of: a's data lies outside its storage");
    size_t base = (size_t)((char *)a->data - (char *)s->data);
    if (offset_bytes % es != 0)
        return st__fail(ST_ERR_INVALID_ARG,
                        "view_of: offset %zu is not a multiple of the %s element size %zu",
                        offset_bytes, st_dtype_name(a->dtype), es);
    int64_t numel = 1, span = 0;
    bool overflow = false;
    for (int d = 0; d < ndim; d++) {
        if (strides_bytes[d] < 0 || strides_bytes[d] % (int64_t)es != 0)
            return st__fail(ST_ERR_INVALID_ARG,
                            "view_of: stride %lld of dim %d must be >= 0 and a multiple of %zu",
                            (long long)strides_bytes[d], d, es);
        numel *= shape[d];
        int64_t reach;
        if (shape[d] > 0 && (__builtin_mul_overflow(shape[d] - 1, strides_bytes[d], &reach) ||
                             __builtin_add_overflow(span, reach, &span)))
            overflow = true;
    }
    size_t start, end = 0;
    bool bad = __builtin_add_overflow(base, offset_bytes, &start) || overflow;
    if (!bad) {
        if (numel == 0) bad = start > s->size;
        else bad = __builtin_add_overflow(start, (size_t)span + es, &end) || end > s->size;
    }
    if (bad) {
        char sb[ST_SHAPE_BUF];
        return st__fail(ST_ERR_BOUNDS,
                        "view_of: a %s %s view at offset %zu (byte %zu of the storage) reaches "
                        "past the storage of %zu bytes",
                        st__shape_fmt(ndim, shape, sb, sizeof sb), st_dtype_name(a->dtype),
                        offset_bytes, base + offset_bytes, s->size);
    }
    st_tensor *v;
    ST_TRY(st__view_step(ctx, "view_of", a, &v));
    v->ndim = ndim;
    for (int d = 0; d < ST_MAX_DIMS; d++) {
        v->ne[d] = d < ndim ? shape[d] : 1;
        v->nb[d] = d < ndim ? strides_bytes[d] : 0;
    }
    st__norm_strides(ndim, v->ne, v->nb, es);
    v->data = (char *)a->data + offset_bytes;
    *out = v;
    return ST_OK;
}
