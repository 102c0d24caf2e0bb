/*
 * autograd.c — layer 4: the define-by-run tape and reverse-mode backward.
 *
 * Recording. st_autograd_enable() installs ag_record() as the context's
 * recorder. Layer 3 calls it after every op that ran with grad mode on and
 * an input that requires grad; it appends one ag_node to the tape: the op and
 * its params (a copy of the desc's), pointers to the source tensors and the
 * output, and the node's place on the tape (seq). out->ag_node points back
 * at the node, so the graph is reachable from any result. Nodes live in the
 * context's arena and die with the step's tensors at st_ctx_reset(); saved
 * values are the source and output tensors themselves (step tensors live
 * until the reset, persistent ones until freed), never copies.
 *
 * Backward. st_backward_with() collects the nodes reachable from the seed
 * through ->ag_node links, sorts them by tape order (seq, descending) and
 * visits each one whose output received a gradient: it computes the input
 * gradients with layer-3 ops (grad mode off, so nothing is recorded) and adds
 * them into src->grad of every source that requires grad. Only the reachable
 * part of the tape runs, so a second forward/backward in the same step does
 * not revisit the first graph. Visited nodes are marked consumed: reaching a
 * consumed node again is ST_ERR_STATE (the graph was already backpropagated).
 *
 * Gradient buffers. A persistent tensor's grad is a persistent zero-filled
 * tensor made on first use (st_tensor_new; st_tensor_free frees it with its
 * owner), so it accumulates across steps until st_zero_grad(). A step
 * tensor's grad is a step tensor, and its first contribution becomes the
 * grad without a zero-filled buffer: a fresh buffer nobody else holds is
 * adopted; a contribution that is another tensor's grad (the dy a reshape,
 * add or contiguous passes through unchanged) is borrowed — the grad shares
 * that memory and the tensor goes on the context's borrowed list; anything
 * else (scaled, broadcast, strided) is computed into a fresh buffer in one
 * pass. A later contribution to a borrowed grad replaces it by a fresh sum
 * (copy on write), so a lender's grad is never changed through a borrower.
 * A lender is always a node already backpropagated (its grad is final).
 *
 * Memory during backward. Step tensors' data above ST_ARENA_CHUNK_MIN are
 * arena chunks that can be released early (strata/base.h), and backward
 * releases what it no longer needs, so its peak is the forward's saved
 * activations plus a bounded working set rather than every gradient and
 * temporary of the step: (1) after each node's backward, every chunk
 * allocated during it that is not now a source's grad (scratch: products
 * before a reduction, transposed copies, copy-on-write leftovers) goes back
 * to the pool; (2) a consumed node's output gradient is dead (its only
 * readers were this node's rule and the borrowers of its memory), so the
 * output's ->grad is set to NULL and its chunk released once no unconsumed
 * tensor's grad points into it (a count per chunk, `holders`, kept for the
 * duration of one backward). Only chunks allocated during this backward
 * are ever released: a seed, forward activations and leaf grads stay until
 * the reset. So after st_backward, leaves (tensors without a node) and
 * persistent tensors hold their grads; intermediates hold none, as in
 * PyTorch, unless st_autograd_set_retain_grads(ctx, true) keeps them until
 * the reset (tests of the sharing rules do).
 *
 * Gradient-ready hook. With st_autograd_set_grad_ready_hook set, backward
 * first finds, for every persistent leaf that requires grad, the last node
 * (in backward order) that has it as a source, and calls the hook after
 * that node has run: its grad is final from then on. Data-parallel training
 * (src/dist/) starts a bucket's all-reduce there, overlapping communication
 * with the rest of backward. Without a hook nothing of this runs.
 *
 * Per-context state. Backward needs none (the graph hangs off the tensors).
 * What outlives a backward is the list of nodes recorded this step
 * (st_autograd_tape_size, st_autograd_saved_bytes), the retain flag and
 * backward's reusable scratch. It sits in a small ag_state that
 * st_autograd_enable() allocates and hands to the context's extension slot
 * (st_ctx_set_ext with ag_state_free: the context frees it at st_ctx_free,
 * after its last reset hook or record could run). The recorder and the reset hook
 * get the state as user pointer; st_autograd_tape_size and the idempotence
 * check of st_autograd_enable read it back with st_ctx_get_recorder. So the
 * state lives and dies with its context: no global table, nothing keyed by
 * a context's address. Layer 4 owns the extension slot.
 *
 * Threading: a context is driven by one thread (layer 3's rule), and so is
 * its ag_state. The only globals are two atomic counters (tape order and
 * backward ids) that need no per-context identity.
 */
#include "strata/nn.h"
#include "nn/autograd_fused.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tape ------------------------------------------------------------------------ */

typedef struct ag_node {
    st_op op;
    st_op_params p;
    uint64_t seq;  /* place on the tape: later nodes have larger seq */
    uint64_t mark; /* id of the last backward that collected this node */
    bool consumed; /* already backpropagated */
    st_tensor *out;
    int n_src;
    st_tensor *src[]; /* n_src entries; NULL for an absent optional operand */
} ag_node;

/* Tape order across all contexts; only the order within one graph matters. */
static _Atomic uint64_t g_seq;
static _Atomic uint64_t g_backward_id;

/* ---- per-context state (see the opening comment) --------------------------------------- */

static st_status ag_record(st_ctx *ctx, void *user, const st_op_desc *desc, st_tensor *const *srcs,
                           int n_src, st_tensor *out);

/* Open addressing, linear probing, no deletion (a count that drops to 0
 * stays); keys are chunk or storage addresses. Heap memory (st_malloc) so
 * that it never lands in the arena whose chunks it counts. */
typedef struct ptr_map {
    const void **keys;
    int64_t *vals;
    size_t cap, n;
} ptr_map;

typedef struct ag_state {
    int64_t n_nodes; /* nodes recorded since the last reset */
    /* Backward's scratch, kept between backwards so that a steady-state step
     * allocates nothing: the holder map (emptied at each backward's start)
     * and room for a node's sources' old grads. Heap; freed with the state. */
    ptr_map holders;
    struct st_tensor **old;
    int cap_old;
    /* The nodes recorded since the last reset, in tape order (an arena
     * array; a grown array leaves its old copy behind until the reset). */
    struct ag_node **nodes;
    int64_t cap_nodes;
    bool retain_grads; /* keep intermediates' grads until the reset */
    /* Step tensors whose grad shares another tensor's grad memory (see the
     * opening comment). A heap array (emptied at the reset, freed with the
     * state): it grows during backward, when arena chunks come and go. */
    st_tensor **borrowed;
    int64_t n_borrowed, cap_borrowed;
    /* The gradient-ready hook (st_autograd_set_grad_ready_hook) and its
     * reusable heap scratch: each reached parameter's last node index and
     * the (index, first-seen, tensor) list sorted into firing order. */
    st_grad_ready_fn ready_fn;
    void *ready_user;
    ptr_map ready_last;
    struct ready_ev *ready;
    int64_t cap_ready;
} ag_state;

typedef struct ready_ev {
    int64_t at;    /* index in backward order of the last node feeding the leaf */
    int64_t first; /* order in which the scan met it (ties) */
    st_tensor *t;
} ready_ev;

static void ag_on_reset(st_ctx *ctx, void *user) {
    (void)ctx;
    ag_state *st = user;
    st->n_nodes = 0;
    st->nodes = NULL;
    st->cap_nodes = 0;
    st->n_borrowed = 0; /* the heap array stays for the next step */
}

static ag_state *state_of(st_ctx *ctx) {
    void *user = NULL;
    if (st_ctx_get_recorder(ctx, &user) != ag_record) return NULL;
    return user;
}

static st_status ag_record(st_ctx *ctx, void *user, const st_op_desc *desc, st_tensor *const *srcs,
                           int n_src, st_tensor *out) {
    ag_state *st = user;
    ST_ASSERT(st != NULL);
    if (!desc || !out || n_src < 0)
        return st__fail(ST_ERR_INVALID_ARG, "autograd: recorder called without an op or output");
    /* A view op that hands back its input unchanged adds no edge (and a
     * self-edge would make the graph cyclic). */
    for (int i = 0; i < n_src; i++)
        if (srcs[i] == out) return ST_OK;

    if (st->n_nodes == st->cap_nodes) {
        int64_t cap = st->cap_nodes ? st->cap_nodes * 2 : 256;
        ag_node **v = st_arena_alloc(st_ctx_arena(ctx), (size_t)cap * sizeof *v, 0);
        if (!v)
            return st__fail(ST_ERR_NOMEM, "autograd: cannot record %s: arena out of memory",
                            st_op_name(desc->op));
        if (st->n_nodes) memcpy(v, st->nodes, (size_t)st->n_nodes * sizeof *v);
        st->nodes = v;
        st->cap_nodes = cap;
    }
    size_t bytes = sizeof(ag_node) + (size_t)n_src * sizeof(st_tensor *);
    ag_node *n = st_arena_alloc(st_ctx_arena(ctx), bytes, _Alignof(ag_node));
    if (!n)
        return st__fail(ST_ERR_NOMEM, "autograd: cannot record %s: arena out of memory",
                        st_op_name(desc->op));
    n->op = desc->op;
    n->p = desc->p;
    n->seq = atomic_fetch_add(&g_seq, 1) + 1;
    n->mark = 0;
    n->consumed = false;
    n->out = out;
    n->n_src = n_src;
    for (int i = 0; i < n_src; i++)
        n->src[i] = srcs[i];
    out->ag_node = n;
    st->nodes[st->n_nodes++] = n;
    return ST_OK;
}

static void map_free(ptr_map *m);

static void ag_state_free(void *p) {
    ag_state *st = p;
    if (!st) return;
    map_free(&st->holders);
    map_free(&st->ready_last);
    st_free(st->ready);
    st_free(st->old);
    st_free(st->borrowed);
    st_free(st);
}

st_status st_autograd_enable(st_ctx *ctx) {
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "st_autograd_enable: ctx is NULL");
    if (st_ctx_get_recorder(ctx, NULL) == ag_record) return ST_OK; /* enabled before */
    if (st_ctx_get_ext(ctx))
        return st__fail(ST_ERR_STATE,
                        "st_autograd_enable: the context's extension slot is taken (autograd "
                        "state whose recorder was replaced, or another layer's state)");
    ag_state *st = st_calloc(1, sizeof *st);
    if (!st) return st__fail(ST_ERR_NOMEM, "st_autograd_enable: out of memory");
    st->n_nodes = 0;
    st->nodes = NULL;
    st->cap_nodes = 0;
    st->retain_grads = false;
    st->borrowed = NULL;
    st->n_borrowed = st->cap_borrowed = 0;
    st_status s = st_ctx_set_ext(ctx, st, ag_state_free); /* the context owns st from here */
    if (s != ST_OK) {
        ag_state_free(st);
        return s;
    }
    s = st_ctx_add_reset_hook(ctx, ag_on_reset, st);
    if (s != ST_OK) {
        (void)st_ctx_set_ext(ctx, NULL, NULL); /* frees st */
        return s;
    }
    st_ctx_set_recorder(ctx, ag_record, st);
    return ST_OK;
}

/* ---- pointer map (holders per chunk, saved-bytes dedup) -------------------------------- */

static size_t ptr_hash(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static void map_free(ptr_map *m) {
    st_free(m->keys);
    st_free(m->vals);
    memset(m, 0, sizeof *m);
}

/* Empties m, keeping its capacity. */
static void map_clear(ptr_map *m) {
    if (m->cap) memset(m->keys, 0, m->cap * sizeof *m->keys);
    m->n = 0;
}

/* The value slot of k, inserted as 0 when absent; NULL when out of memory. */
static int64_t *map_at(ptr_map *m, const void *k) {
    if (2 * (m->n + 1) > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        ptr_map g = {.keys = st_calloc(cap, sizeof(void *)),
                     .vals = st_calloc(cap, sizeof(int64_t)),
                     .cap = cap};
        if (!g.keys || !g.vals) {
            map_free(&g);
            return NULL;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = ptr_hash(m->keys[i]) & (cap - 1);
                while (g.keys[j])
                    j = (j + 1) & (cap - 1);
                g.keys[j] = m->keys[i];
                g.vals[j] = m->vals[i];
                g.n++;
            }
        map_free(m);
        *m = g;
    }
    size_t j = ptr_hash(k) & (m->cap - 1);
    while (m->keys[j] && m->keys[j] != k)
        j = (j + 1) & (m->cap - 1);
    if (!m->keys[j]) {
        m->keys[j] = k;
        m->vals[j] = 0;
        m->n++;
    }
    return &m->vals[j];
}

size_t st_autograd_saved_bytes(st_ctx *ctx) {
    ag_state *st = ctx ? state_of(ctx) : NULL;
    if (!st) return 0;
    st_arena *ar = st_ctx_arena(ctx);
    ptr_map seen = {0};
    size_t total = 0;
    for (int64_t i = 0; i < st->n_nodes; i++) {
        const ag_node *n = st->nodes[i];
        for (int j = -1; j < n->n_src; j++) {
            const st_tensor *t = j < 0 ? n->out : n->src[j];
            if (!t || t->persistent) continue;
            size_t bytes = 0;
            const void *key = st_arena_chunk_of(ar, t->data, &bytes, NULL);
            if (!key) { /* a small step tensor: count its window once per storage */
                key = t->storage ? (const void *)t->storage : (const void *)t;
                bytes = st_tensor_nbytes(t);
            }
            int64_t *v = map_at(&seen, key);
            if (!v) { /* out of memory for the map: count without dedup */
                total += bytes;
                continue;
            }
            if (*v == 0) {
                *v = 1;
                total += bytes;
            }
        }
    }
    map_free(&seen);
    return total;
}

st_status st_autograd_set_retain_grads(st_ctx *ctx, bool on) {
    ag_state *st = ctx ? state_of(ctx) : NULL;
    if (!st)
        return st__fail(ST_ERR_STATE, "st_autograd_set_retain_grads: autograd is not enabled on "
                                      "the context (st_autograd_enable)");
    st->retain_grads = on;
    return ST_OK;
}

st_status st_autograd_set_grad_ready_hook(st_ctx *ctx, st_grad_ready_fn fn, void *user) {
    ag_state *st = ctx ? state_of(ctx) : NULL;
    if (!st)
        return st__fail(ST_ERR_STATE, "st_autograd_set_grad_ready_hook: autograd is not enabled "
                                      "on the context");
    st->ready_fn = fn;
    st->ready_user = fn ? user : NULL;
    return ST_OK;
}

int st_autograd_tape_size(const st_ctx *ctx) {
    void *user = NULL;
    if (st_ctx_get_recorder(ctx, &user) != ag_record) return 0;
    const ag_state *st = user;
    return st->n_nodes > INT32_MAX ? INT32_MAX : (int)st->n_nodes;
}

st_status st_requires_grad(st_tensor *t, bool on) {
    if (!t) return st__fail(ST_ERR_INVALID_ARG, "st_requires_grad: tensor is NULL");
    if (on && t->dtype != ST_F32)
        return st__fail(ST_ERR_DTYPE,
                        "st_requires_grad: %s%s%s is %s; only f32 tensors take "
                        "gradients",
                        t->name[0] ? "'" : "", t->name, t->name[0] ? "' " : "",
                        st_dtype_name(t->dtype));
    t->requires_grad = on;
    return ST_OK;
}

void st_zero_grad(st_tensor *const *params, int n) {
    if (!params) return;
    for (int i = 0; i < n; i++)
        if (params[i] && params[i]->grad) (void)st_fill_(params[i]->grad, 0.0f);
}

/* ---- shape helpers --------------------------------------------------------------------- */

static int64_t numel_of(int ndim, const int64_t *ne) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= ne[d];
    return n;
}

static bool shape_eq(int nda, const int64_t *a, int ndb, const int64_t *b) {
    if (nda != ndb) return false;
    for (int d = 0; d < nda; d++)
        if (a[d] != b[d]) return false;
    return true;
}

static bool same_shape(const st_tensor *a, const st_tensor *b) {
    return shape_eq(a->ndim, a->ne, b->ndim, b->ne);
}

static bool wants(const st_tensor *t) {
    return t && t->requires_grad;
}

static const char *tname(const st_tensor *t) {
    return t->name[0] ? t->name : "tensor";
}

/* ---- gradient buffers -------------------------------------------------------------------- */

/* Whether t's grad is borrowed (shares a lender's memory); removes t from
 * the list when `take` is set. */
static bool borrowed(st_ctx *ctx, const st_tensor *t, bool take) {
    ag_state *st = state_of(ctx);
    if (!st) return false;
    for (int64_t i = st->n_borrowed - 1; i >= 0; i--)
        if (st->borrowed[i] == t) {
            if (take) st->borrowed[i] = st->borrowed[--st->n_borrowed];
            return true;
        }
    return false;
}

static st_status mark_borrowed(st_ctx *ctx, st_tensor *t) {
    ag_state *st = state_of(ctx);
    if (!st) return st__fail(ST_ERR_INTERNAL, "autograd: no state on the context");
    if (st->n_borrowed == st->cap_borrowed) {
        /* Heap, not arena: it grows during backward, whose scratch chunks
         * are released after each node. */
        int64_t cap = st->cap_borrowed ? st->cap_borrowed * 2 : 64;
        st_tensor **v = st_realloc(st->borrowed, (size_t)cap * sizeof *v);
        if (!v) return st__fail(ST_ERR_NOMEM, "autograd: out of memory for the borrowed list");
        st->borrowed = v;
        st->cap_borrowed = cap;
    }
    st->borrowed[st->n_borrowed++] = t;
    return ST_OK;
}

/* t->grad as a buffer t owns alone, ready to be added into: made
 * zero-filled on first use (persistent for a persistent t); a borrowed grad
 * is copied first (copy on write). */
static st_status grad_buffer(st_ctx *ctx, st_tensor *t, st_tensor **g) {
    if (!t->grad) {
        st_tensor *n = NULL;
        if (t->persistent)
            ST_TRY(st_tensor_new(ctx, ST_F32, t->ndim, t->ne, &n));
        else
            ST_TRY(st_zeros(ctx, ST_F32, t->ndim, t->ne, &n));
        t->grad = n;
    } else if (!t->persistent && borrowed(ctx, t, true)) {
        st_tensor *n = NULL;
        ST_TRY(st_scale(ctx, t->grad, 1.0f, &n)); /* a fresh contiguous copy */
        t->grad = n;
    }
    *g = t->grad;
    return ST_OK;
}

/* t->grad += alpha * dx. dx has t's shape, t's element count (reshaped), or
 * a shape that broadcasts to t's. `owned`: dx is a fresh contiguous buffer
 * nobody else references, so a step tensor may adopt it as its grad; a dx
 * that is not owned but contiguous is borrowed (see the opening comment). */
static st_status grad_add(st_ctx *ctx, st_tensor *t, const st_tensor *dx, bool owned, float alpha) {
    if (!wants(t)) return ST_OK;
    if (dx->dtype != ST_F32)
        return st__fail(ST_ERR_INTERNAL, "autograd: gradient for %s is %s, not f32", tname(t),
                        st_dtype_name(dx->dtype));
    if (!same_shape(dx, t) && st_tensor_numel(dx) == st_tensor_numel(t)) {
        st_tensor *r = NULL;
        if (!st_tensor_is_contiguous(dx)) {
            ST_TRY(st_contiguous(ctx, dx, &r));
            owned = true;
            dx = r;
        }
        ST_TRY(st_reshape(ctx, dx, t->ndim, t->ne, &r));
        dx = r;
    }
    if (!t->persistent && (!t->grad || borrowed(ctx, t, false))) {
        st_tensor *f = NULL;
        if (!t->grad) {
            if (alpha == 1.0f && same_shape(dx, t) && st_tensor_is_contiguous(dx)) {
                t->grad = (st_tensor *)dx; /* adopted, or borrowed */
                return owned ? ST_OK : mark_borrowed(ctx, t);
            }
            /* scaled, broadcast or strided: one pass into a fresh buffer */
            const st_tensor *src = dx;
            if (!same_shape(dx, t)) {
                st_tensor *e = NULL;
                ST_TRY(st_expand(ctx, dx, t->ndim, t->ne, &e));
                src = e;
            }
            ST_TRY(st_scale(ctx, src, alpha, &f));
        } else { /* copy on write: a fresh sum replaces the borrowed grad */
            (void)borrowed(ctx, t, true);
            if (alpha == 1.0f) {
                ST_TRY(st_add(ctx, t->grad, dx, &f));
            } else {
                ST_TRY(st_scale(ctx, t->grad, 1.0f, &f));
                ST_TRY(st_axpy_(f, alpha, dx));
            }
        }
        t->grad = f;
        return ST_OK;
    }
    st_tensor *g = NULL;
    ST_TRY(grad_buffer(ctx, t, &g));
    return st_axpy_(g, alpha, dx);
}

st_status st__ag_grad_add(st_ctx *ctx, st_tensor *t, const st_tensor *dx, bool owned) {
    return grad_add(ctx, t, dx, owned, 1.0f);
}

/* g reduced to t's shape by summing broadcast dims (the reverse of NumPy
 * broadcasting). *owned as for grad_add. */
static st_status reduce_to(st_ctx *ctx, const st_tensor *g, bool g_owned, int ndim,
                           const int64_t *ne, st_tensor **dx, bool *owned) {
    if (shape_eq(g->ndim, g->ne, ndim, ne)) {
        *dx = (st_tensor *)g;
        *owned = g_owned;
        return ST_OK;
    }
    ST_TRY(st_sum_to(ctx, g, ndim, ne, dx));
    *owned = g_owned || (*dx)->data != g->data;
    return ST_OK;
}

/* The shape a reduction's output had with the reduced axis kept as 1. */
static void keep_shape(const ag_node *n, const st_tensor *x, int64_t *keep) {
    const st_tensor *y = n->out;
    int nd = x->ndim;
    if (st_tensor_numel(y) == 1) {
        for (int d = 0; d < nd; d++)
            keep[d] = 1;
        return;
    }
    if (y->ndim == nd) {
        for (int d = 0; d < nd; d++)
            keep[d] = y->ne[d];
        return;
    }
    int axis = n->p.axis < 0 ? n->p.axis + nd : n->p.axis;
    for (int d = 0; d < nd; d++)
        keep[d] = x->ne[d];
    if (axis >= 0 && axis < nd) keep[axis] = 1;
}

/* ---- per-op backward ----------------------------------------------------------------------- */

static st_status bw_binary(st_ctx *ctx, const ag_node *n, const st_tensor *dy) {
    st_tensor *a = n->src[0], *b = n->src[1];
    st_tensor *g = NULL, *dx = NULL;
    bool own = false;
    switch (n->op) {
    case ST_OP_ADD:
    case ST_OP_SUB:
        if (wants(a)) {
            ST_TRY(reduce_to(ctx, dy, false, a->ndim, a->ne, &dx, &own));
            ST_TRY(grad_add(ctx, a, dx, own, 1.0f));
        }
        if (wants(b)) {
            ST_TRY(reduce_to(ctx, dy, false, b->ndim, b->ne, &dx, &own));
            ST_TRY(grad_add(ctx, b, dx, own, n->op == ST_OP_SUB ? -1.0f : 1.0f));
        }
        return ST_OK;
    case ST_OP_MUL:
        if (wants(a)) {
            ST_TRY(st_mul(ctx, dy, b, &g));
            ST_TRY(reduce_to(ctx, g, true, a->ndim, a->ne, &dx, &own));
            ST_TRY(grad_add(ctx, a, dx, own, 1.0f));
        }
        if (wants(b)) {
            ST_TRY(st_mul(ctx, dy, a, &g));
            ST_TRY(reduce_to(ctx, g, true, b->ndim, b->ne, &dx, &own));
            ST_TRY(grad_add(ctx, b, dx, own, 1.0f));
        }
        return ST_OK;
    case ST_OP_DIV: /* y = a / b: da = dy / b, db = -dy * y / b */
        if (wants(a)) {
            ST_TRY(st_div(ctx, dy, b, &g));
            ST_TRY(reduce_to(ctx, g, true, a->ndim, a->ne, &dx, &own));
            ST_TRY(grad_add(ctx, a, dx, own, 1.0f));
        }
        if (wants(b)) {
            st_tensor *t = NULL;
            ST_TRY(st_mul(ctx, dy, n->out, &t));
            ST_TRY(st_div(ctx, t, b, &g));
            ST_TRY(reduce_to(ctx, g, true, b->ndim, b->ne, &dx, &own));
            ST_TRY(grad_add(ctx, b, dx, own, -1.0f));
        }
        return ST_OK;
    default:
        return st__fail(ST_ERR_INTERNAL, "autograd: %s is not binary", st_op_name(n->op));
    }
}

/* [..., M, K] x [..., K, N] with NumPy's 1-D promotion and batch broadcast:
 * dA = dY B^T and dB = A^T dY, each summed over the batch dims its operand
 * was broadcast along. When no sum is needed the product goes straight into
 * the grad buffer (st__matmul_into with accumulate). */
static st_status bw_matmul(st_ctx *ctx, const ag_node *n, st_tensor *dy) {
    st_tensor *a = n->src[0], *b = n->src[1];
    if (!wants(a) && !wants(b)) return ST_OK;
    st_tensor *A = a, *B = b;
    if (A->dtype != ST_F32) ST_TRY(st_to_dtype(ctx, a, ST_F32, &A));
    if (B->dtype != ST_F32) ST_TRY(st_to_dtype(ctx, b, ST_F32, &B));
    if (a->ndim == 1) {
        int64_t s[2] = {1, a->ne[0]};
        ST_TRY(st_reshape(ctx, A, 2, s, &A));
    }
    if (b->ndim == 1) {
        int64_t s[2] = {b->ne[0], 1};
        ST_TRY(st_reshape(ctx, B, 2, s, &B));
    }
    /* dY with the M and N dims the 1-D promotion removed put back. */
    int64_t ys[ST_MAX_DIMS + 2];
    int nd = 0;
    if (a->ndim == 1 && b->ndim == 1) {
        ys[nd++] = 1;
        ys[nd++] = 1;
    } else {
        for (int d = 0; d < dy->ndim; d++)
            ys[nd++] = dy->ne[d];
        if (a->ndim == 1) { /* [..., N] -> [..., 1, N] */
            ys[nd] = ys[nd - 1];
            ys[nd - 1] = 1;
            nd++;
        } else if (b->ndim == 1) { /* [..., M] -> [..., M, 1] */
            ys[nd++] = 1;
        }
    }
    if (nd > ST_MAX_DIMS)
        return st__fail(ST_ERR_SHAPE, "autograd: matmul gradient needs %d dims", nd);
    st_tensor *dY = dy;
    if (!shape_eq(nd, ys, dy->ndim, dy->ne)) ST_TRY(st_reshape(ctx, dy, nd, ys, &dY));

    for (int which = 0; which < 2; which++) {
        st_tensor *t = which == 0 ? a : b; /* the operand we differentiate for */
        st_tensor *T = which == 0 ? A : B; /* it, promoted to 2-D f32 */
        if (!wants(t)) continue;
        st_tensor *other = which == 0 ? B : A, *otherT = NULL;
        ST_TRY(st_transpose(ctx, other, other->ndim - 2, other->ndim - 1, &otherT));
        const st_tensor *l = which == 0 ? dY : otherT; /* dA = dY B^T, dB = A^T dY */
        const st_tensor *r = which == 0 ? otherT : dY;
        /* The product's shape: dY's batch dims, then T's last two. */
        int64_t ps[ST_MAX_DIMS];
        for (int d = 0; d < nd - 2; d++)
            ps[d] = ys[d];
        ps[nd - 2] = T->ne[T->ndim - 2];
        ps[nd - 1] = T->ne[T->ndim - 1];
        if (!t->grad && !t->persistent) {
            /* The first contribution: the product itself becomes the grad
             * (no zero-filled buffer to accumulate into). */
            st_tensor *p = NULL, *dx = NULL;
            bool own = false;
            ST_TRY(st_matmul(ctx, l, r, &p));
            ST_TRY(reduce_to(ctx, p, true, T->ndim, T->ne, &dx, &own));
            ST_TRY(grad_add(ctx, t, dx, own, 1.0f));
        } else if (shape_eq(nd, ps, T->ndim, T->ne)) {
            st_tensor *g = NULL, *gv = NULL;
            ST_TRY(grad_buffer(ctx, t, &g));
            ST_TRY(st_reshape(ctx, g, T->ndim, T->ne, &gv));
            ST_TRY(st__matmul_into(ctx, l, r, gv, true));
        } else {
            st_tensor *p = NULL, *dx = NULL;
            bool own = false;
            ST_TRY(st_matmul(ctx, l, r, &p));
            ST_TRY(reduce_to(ctx, p, true, T->ndim, T->ne, &dx, &own));
            ST_TRY(grad_add(ctx, t, dx, own, 1.0f));
        }
    }
    return ST_OK;
}

static st_status bw_norm(st_ctx *ctx, const ag_node *n, const st_tensor *dy) {
    st_tensor *x = n->src[0];
    st_tensor *gamma = n->n_src > 1 ? n->src[1] : NULL;
    st_tensor *beta = n->n_src > 2 ? n->src[2] : NULL;
    st_tensor *dgamma = NULL, *dbeta = NULL, *dx = NULL;
    if (!wants(x) && !wants(gamma) && !wants(beta)) return ST_OK;
    if (wants(gamma)) ST_TRY(grad_buffer(ctx, gamma, &dgamma));
    if (n->op == ST_OP_LAYERNORM) {
        if (wants(beta)) ST_TRY(grad_buffer(ctx, beta, &dbeta));
        ST_TRY(st__layernorm_backward(ctx, x, gamma, dy, n->p.eps, &dx, dgamma, dbeta));
    } else {
        ST_TRY(st__rmsnorm_backward(ctx, x, gamma, dy, n->p.eps, &dx, dgamma));
    }
    return grad_add(ctx, x, dx, true, 1.0f);
}

static st_status bw_concat(st_ctx *ctx, const ag_node *n, const st_tensor *dy) {
    int axis = n->p.axis < 0 ? n->p.axis + dy->ndim : n->p.axis;
    if (axis < 0 || axis >= dy->ndim)
        return st__fail(ST_ERR_INTERNAL, "autograd: concat recorded axis %d for %d dims", n->p.axis,
                        dy->ndim);
    int64_t off = 0;
    for (int i = 0; i < n->n_src; i++) {
        st_tensor *s = n->src[i];
        if (!s) continue;
        int64_t len = s->ndim == dy->ndim ? s->ne[axis] : 0;
        if (wants(s)) {
            st_tensor *part = NULL;
            ST_TRY(st_slice(ctx, dy, axis, off, off + len, 1, &part));
            ST_TRY(grad_add(ctx, s, part, false, 1.0f));
        }
        off += len;
    }
    return ST_OK;
}

static st_status node_backward(st_ctx *ctx, const ag_node *n) {
    st_tensor *dy = n->out->grad;
    st_tensor *x = n->n_src > 0 ? n->src[0] : NULL;
    st_tensor *dx = NULL;
    bool own = false;
    switch (n->op) {
    case ST_OP_NEG:
    case ST_OP_EXP:
    case ST_OP_LOG:
    case ST_OP_SQRT:
    case ST_OP_TANH:
    case ST_OP_GELU_TANH:
    case ST_OP_GELU_ERF:
    case ST_OP_SILU:
    case ST_OP_RELU:
        if (!wants(x)) return ST_OK;
        ST_TRY(st__unary_backward(ctx, n->op, x, n->out, dy, &dx));
        return grad_add(ctx, x, dx, true, 1.0f);
    case ST_OP_SCALE:
        return grad_add(ctx, x, dy, false, n->p.alpha);
    case ST_OP_ADD:
    case ST_OP_SUB:
    case ST_OP_MUL:
    case ST_OP_DIV:
        return bw_binary(ctx, n, dy);
    case ST_OP_SUM:
    case ST_OP_MEAN: {
        if (!wants(x)) return ST_OK;
        int64_t keep[ST_MAX_DIMS];
        keep_shape(n, x, keep);
        float alpha = 1.0f;
        if (n->op == ST_OP_MEAN)
            alpha = (float)((double)st_tensor_numel(n->out) / (double)st_tensor_numel(x));
        st_tensor *k = dy;
        if (!shape_eq(x->ndim, keep, dy->ndim, dy->ne) &&
            numel_of(x->ndim, keep) == st_tensor_numel(dy))
            ST_TRY(st_reshape(ctx, dy, x->ndim, keep, &k));
        return grad_add(ctx, x, k, false, alpha); /* broadcast back over the axis */
    }
    case ST_OP_MAX: {
        if (!wants(x)) return ST_OK;
        int64_t keep[ST_MAX_DIMS];
        keep_shape(n, x, keep);
        int axis = n->p.axis < 0 ? n->p.axis + x->ndim : n->p.axis;
        st_tensor *yk = NULL, *dyk = NULL;
        ST_TRY(st_reshape(ctx, n->out, x->ndim, keep, &yk));
        ST_TRY(st_reshape(ctx, dy, x->ndim, keep, &dyk));
        ST_TRY(st__max_backward(ctx, x, yk, dyk, axis, &dx));
        return grad_add(ctx, x, dx, true, 1.0f);
    }
    case ST_OP_SOFTMAX:
    case ST_OP_LOG_SOFTMAX:
        if (!wants(x)) return ST_OK;
        ST_TRY(st__softmax_backward(ctx, n->out, dy, n->op == ST_OP_LOG_SOFTMAX, &dx));
        return grad_add(ctx, x, dx, true, 1.0f);
    case ST_OP_LAYERNORM:
    case ST_OP_RMSNORM:
        return bw_norm(ctx, n, dy);
    case ST_OP_EMBEDDING: {
        if (!wants(x)) return ST_OK;
        st_tensor *g = NULL;
        ST_TRY(grad_buffer(ctx, x, &g));
        return st__embedding_backward(ctx, dy, n->src[1], g);
    }
    case ST_OP_MATMUL:
        return bw_matmul(ctx, n, dy);
    case ST_OP_RESHAPE:
    case ST_OP_CONTIGUOUS:
    case ST_OP_TO_DTYPE:
        return grad_add(ctx, x, dy, false, 1.0f); /* same elements, same order */
    case ST_OP_PERMUTE: {
        if (!wants(x)) return ST_OK;
        int inv[ST_MAX_DIMS];
        for (int d = 0; d < x->ndim; d++)
            inv[n->p.perm[d]] = d;
        ST_TRY(st_permute(ctx, dy, inv, &dx));
        return grad_add(ctx, x, dx, false, 1.0f);
    }
    case ST_OP_EXPAND:
        if (!wants(x)) return ST_OK;
        ST_TRY(reduce_to(ctx, dy, false, x->ndim, x->ne, &dx, &own));
        return grad_add(ctx, x, dx, own, 1.0f);
    case ST_OP_SLICE: {
        if (!wants(x)) return ST_OK;
        st_tensor *g = NULL, *v = NULL;
        ST_TRY(grad_buffer(ctx, x, &g));
        ST_TRY(st_slice(ctx, g, n->p.axis, n->p.start, n->p.stop, n->p.step, &v));
        return st_axpy_(v, 1.0f, dy); /* st_axpy_ takes any layout */
    }
    case ST_OP_CONCAT:
        return bw_concat(ctx, n, dy);
    default:
        if (st__ag_fused_handles(n->op)) /* attention, cross-entropy, rope, dropout */
            return st__ag_fused_backward(ctx, n->op, &n->p, n->src, n->n_src, n->out, dy);
        return st__fail(ST_ERR_UNSUPPORTED, "st_backward: no gradient for op '%s'",
                        st_op_name(n->op));
    }
}

/* ---- backward -------------------------------------------------------------------------- */

/* What one backward tracks to release memory early (see the opening
 * comment). */
typedef struct bw_mem {
    st_ctx *ctx;
    st_arena *arena;
    uint64_t mark;       /* chunks with serial >= mark were allocated by this backward */
    uint64_t node_mark;  /* ... >= node_mark by the node being run */
    bool retain;         /* st_autograd_set_retain_grads */
    ptr_map *holders;    /* chunk -> number of unconsumed tensors whose grad is in it */
    ptr_map own_holders; /* the map when the context has no autograd state */
    st_tensor ***old;    /* the sources' grads before the node ran */
    int *cap_old;
    st_tensor **own_old;
    int own_cap_old;
} bw_mem;

/* Adds delta to the holders of the chunk g's data is in (nothing when g is
 * NULL or not in a chunk of this backward); releases the chunk when the
 * count reaches 0. */
static st_status mem_hold(bw_mem *m, const st_tensor *g, int delta) {
    if (!g) return ST_OK;
    uint64_t serial = 0;
    const void *c = st_arena_chunk_of(m->arena, g->data, NULL, &serial);
    if (!c || serial < m->mark) return ST_OK;
    int64_t *v = map_at(m->holders, c);
    if (!v) return st__fail(ST_ERR_NOMEM, "st_backward: out of memory for the holder map");
    *v += delta;
    if (*v <= 0 && !m->retain) {
        *v = 0;
        (void)st_arena_release(m->arena, c);
    }
    return ST_OK;
}

static st_status mem_before(bw_mem *m, const ag_node *n) {
    if (n->n_src > *m->cap_old) {
        int cap = n->n_src > 8 ? n->n_src : 8;
        st_tensor **v = st_realloc(*m->old, (size_t)cap * sizeof *v);
        if (!v) return st__fail(ST_ERR_NOMEM, "st_backward: out of memory");
        *m->old = v;
        *m->cap_old = cap;
    }
    for (int i = 0; i < n->n_src; i++)
        (*m->old)[i] = n->src[i] ? n->src[i]->grad : NULL;
    m->node_mark = st_arena_mark(m->arena);
    return ST_OK;
}

/* keep fn of st_arena_release_since: whether chunk holds a source's grad. */
static bool keep_src_grad(void *user, const void *chunk, size_t bytes) {
    const ag_node *n = ((void **)user)[0];
    const st_arena *ar = ((void **)user)[1];
    (void)bytes;
    for (int i = 0; i < n->n_src; i++) {
        const st_tensor *t = n->src[i];
        if (t && t->grad && st_arena_chunk_of(ar, t->grad->data, NULL, NULL) == chunk) return true;
    }
    return false;
}

static st_status mem_after(bw_mem *m, ag_node *n) {
    /* (1) scratch of this node's rule */
    void *ku[2] = {n, m->arena};
    (void)st_arena_release_since(m->arena, m->node_mark, keep_src_grad, ku);
    /* Sources whose grad changed hold the new chunk instead of the old one
     * (each tensor once, however often it appears among the sources). */
    st_tensor **old = *m->old;
    for (int i = 0; i < n->n_src; i++) {
        st_tensor *t = n->src[i];
        if (!t || t->grad == old[i]) continue;
        bool dup = false;
        for (int j = 0; j < i && !dup; j++)
            dup = n->src[j] == t;
        if (dup) continue;
        ST_TRY(mem_hold(m, t->grad, +1));
        ST_TRY(mem_hold(m, old[i], -1));
    }
    /* (2) the output's grad is consumed */
    if (m->retain) return ST_OK;
    st_tensor *g = n->out->grad;
    n->out->grad = NULL;
    return mem_hold(m, g, -1);
}

/* A growable array of nodes in the arena (dies at the reset, like the
 * tape; a grown array leaves its old copy behind until then). */
typedef struct node_list {
    st_arena *arena;
    ag_node **v;
    int64_t n, cap;
} node_list;

static st_status list_push(node_list *l, ag_node *x) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 256;
        ag_node **v = st_arena_alloc(l->arena, (size_t)cap * sizeof *v, 0);
        if (!v)
            return st__fail(ST_ERR_NOMEM,
                            "st_backward: arena out of memory for %lld "
                            "nodes",
                            (long long)cap);
        if (l->n) memcpy(v, l->v, (size_t)l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return ST_OK;
}

static int by_seq_desc(const void *pa, const void *pb) {
    const ag_node *a = *(ag_node *const *)pa, *b = *(ag_node *const *)pb;
    return a->seq < b->seq ? 1 : a->seq > b->seq ? -1 : 0;
}

/* Every node reachable from root (depth-first, iterative), into *out. */
static st_status collect(ag_node *root, node_list *out) {
    uint64_t id = atomic_fetch_add(&g_backward_id, 1) + 1;
    node_list stack = {.arena = out->arena};
    root->mark = id;
    ST_TRY(list_push(&stack, root));
    while (stack.n > 0) {
        ag_node *n = stack.v[--stack.n];
        if (n->consumed)
            return st__fail(ST_ERR_STATE,
                            "st_backward: the graph through %s (%s) was already "
                            "backpropagated; recompute the forward pass",
                            tname(n->out), st_op_name(n->op));
        ST_TRY(list_push(out, n));
        for (int i = 0; i < n->n_src; i++) {
            st_tensor *t = n->src[i];
            ag_node *m = t && t->requires_grad ? t->ag_node : NULL;
            if (!m || m->mark == id) continue;
            m->mark = id;
            ST_TRY(list_push(&stack, m));
        }
    }
    return ST_OK;
}

static int by_ready(const void *pa, const void *pb) {
    const ready_ev *a = pa, *b = pb;
    if (a->at != b->at) return a->at < b->at ? -1 : 1;
    return a->first < b->first ? -1 : a->first > b->first ? 1 : 0;
}

/* For the gradient-ready hook: every persistent leaf that requires grad
 * among the sources of nodes (in backward order), with the index of the
 * last node that feeds it, sorted by that index into st->ready[0..*n). */
static st_status plan_ready(ag_state *st, const node_list *nodes, int64_t *n) {
    *n = 0;
    map_clear(&st->ready_last);
    for (int64_t i = 0; i < nodes->n; i++) {
        const ag_node *nd = nodes->v[i];
        for (int k = 0; k < nd->n_src; k++) {
            st_tensor *t = nd->src[k];
            if (!t || !t->requires_grad || t->ag_node || !t->persistent) continue;
            int64_t *slot = map_at(&st->ready_last, t);
            if (!slot) return st__fail(ST_ERR_NOMEM, "st_backward: out of memory (ready hook)");
            if (*slot == 0) { /* first meeting: a new event */
                if (*n == st->cap_ready) {
                    int64_t cap = st->cap_ready ? 2 * st->cap_ready : 64;
                    ready_ev *v = st_realloc(st->ready, (size_t)cap * sizeof *v);
                    if (!v) return st__fail(ST_ERR_NOMEM, "st_backward: out of memory (ready hook)");
                    st->ready = v;
                    st->cap_ready = cap;
                }
                st->ready[*n] = (ready_ev){.at = i, .first = *n, .t = t};
                *slot = ++*n; /* 1-based event number */
            } else {
                st->ready[*slot - 1].at = i;
            }
        }
    }
    qsort(st->ready, (size_t)*n, sizeof *st->ready, by_ready);
    return ST_OK;
}

st_status st_backward_with(st_ctx *ctx, st_tensor *out, const st_tensor *grad_out) {
    if (!ctx || !out || !grad_out)
        return st__fail(ST_ERR_INVALID_ARG, "st_backward: ctx, output or seed is NULL");
    char b1[64], b2[64];
    if (!same_shape(out, grad_out))
        return st__fail(ST_ERR_SHAPE, "st_backward: seed is %s but the output is %s",
                        st_tensor_shape_str(grad_out, b1, sizeof b1),
                        st_tensor_shape_str(out, b2, sizeof b2));
    if (grad_out->dtype != ST_F32)
        return st__fail(ST_ERR_DTYPE, "st_backward: seed is %s, not f32",
                        st_dtype_name(grad_out->dtype));
    if (!out->requires_grad)
        return st__fail(ST_ERR_STATE,
                        "st_backward: %s does not require grad (no input of it "
                        "requires grad, autograd is not enabled, or grad mode was off)",
                        tname(out));
    ag_node *root = out->ag_node;
    node_list nodes = {.arena = st_ctx_arena(ctx)};
    if (root) {
        if (root->consumed)
            return st__fail(ST_ERR_STATE,
                            "st_backward: %s was already backpropagated; "
                            "recompute the forward pass",
                            tname(out));
        ST_TRY(collect(root, &nodes));
        qsort(nodes.v, (size_t)nodes.n, sizeof *nodes.v, by_seq_desc);
    }

    bool grad_was_on = st_ctx_grad_enabled(ctx);
    st_ctx_set_grad_enabled(ctx, false);
    /* The seed is borrowed as out's grad; a persistent seed (which the
     * caller may change later) is copied instead. */
    st_status s = ST_OK;
    if (grad_out->persistent) {
        st_tensor *c = NULL;
        s = st_scale(ctx, grad_out, 1.0f, &c);
        if (s == ST_OK) s = grad_add(ctx, out, c, true, 1.0f);
    } else {
        s = grad_add(ctx, out, grad_out, false, 1.0f);
    }
    bw_mem mem = {.ctx = ctx, .arena = st_ctx_arena(ctx), .mark = st_arena_mark(st_ctx_arena(ctx))};
    ag_state *st = state_of(ctx);
    mem.retain = st && st->retain_grads;
    mem.holders = st ? &st->holders : &mem.own_holders;
    mem.old = st ? &st->old : &mem.own_old;
    mem.cap_old = st ? &st->cap_old : &mem.own_cap_old;
    map_clear(mem.holders);
    if (s == ST_OK) s = mem_hold(&mem, out->grad, +1);
    int64_t n_ready = 0, next_ready = 0;
    if (s == ST_OK && st && st->ready_fn) s = plan_ready(st, &nodes, &n_ready);
    for (int64_t i = 0; i < nodes.n && s == ST_OK; i++) {
        ag_node *n = nodes.v[i];
        n->consumed = true;
        if (n->out->grad) {
            s = mem_before(&mem, n);
            if (s == ST_OK) s = node_backward(ctx, n);
            if (s == ST_OK) s = mem_after(&mem, n);
        }
        /* leaves whose last contribution was this node: their grads are final */
        while (s == ST_OK && next_ready < n_ready && st->ready[next_ready].at == i)
            s = st->ready_fn(st->ready_user, st->ready[next_ready++].t);
    }
    map_free(&mem.own_holders);
    st_free(mem.own_old);
    st_ctx_set_grad_enabled(ctx, grad_was_on);
    return s;
}

st_status st_backward(st_ctx *ctx, st_tensor *loss) {
    if (!ctx || !loss) return st__fail(ST_ERR_INVALID_ARG, "st_backward: ctx or loss is NULL");
    char b[64];
    if (st_tensor_numel(loss) != 1)
        return st__fail(ST_ERR_SHAPE,
                        "st_backward: the loss is %s; it must have one element "
                        "(use st_backward_with for other outputs)",
                        st_tensor_shape_str(loss, b, sizeof b));
    st_tensor *seed = NULL;
    ST_TRY(st_ones(ctx, ST_F32, loss->ndim, loss->ne, &seed));
    return st_backward_with(ctx, loss, seed);
}
