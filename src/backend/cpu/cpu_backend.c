/*
 * cpu_backend.c — the CPU backend: creation, the table, and the executor
 * that runs every compute op of strata/backend.h on strided views.
 *
 * Structure. st_cpu_backend holds the thread pool (pool.c), the kernel table
 * of the chosen SIMD level (kernels.h) and one growable scratch buffer. The
 * executor turns each op into work over "plans": a plan is the iteration
 * shape of an op plus the byte strides of each operand in that shape, with
 * size-1 dimensions dropped and neighbouring dimensions merged wherever every
 * operand allows it (a fully contiguous op becomes one flat range). The plan's
 * [0, numel) is split across the pool with a grain, so small ops run inline
 * on the calling thread without waking workers; each thread walks its range
 * as segments of the innermost dimension and calls the kernel table on them
 * (stride-0 broadcast operands go straight to the kernels' sa/sb/sx = 0;
 * other strides are gathered into small stack blocks first).
 *
 *  - elementwise (unary, binary, axpy, unary backward): plans over dst.
 *  - reductions: a plan over dst (the reduced axis has size 1); along a
 *    contiguous axis each output is one sum/max kernel call, otherwise whole
 *    blocks of outputs accumulate row after row with the axpy kernel.
 *  - row ops (softmax, norms and their backwards): plans over rows.
 *    LAYERNORM/RMSNORM_BACKWARD compute dgamma/dbeta in a second pass split
 *    by columns (each thread owns columns and adds rows in order) and
 *    EMBEDDING_BACKWARD splits dweight by columns or vocabulary rows, so
 *    those results are identical for any thread count and free of races.
 *  - MATMUL: OpenBLAS cblas_sgemm. Following ARCHITECTURE.md, BLAS either
 *    runs alone with the pool's thread count while the pool sleeps (one
 *    large product at a time, from the calling thread), or single-threaded
 *    inside the pool's partition of many small products — never both.
 *    "Large" is a single product or M*N*K >= 2^21; before such a call the
 *    pool's idle workers are told to stop spinning (st__pool_sleep_hint).
 *    (OpenBLAS's own threads busy-yield for a while after each call; that
 *    is OPENBLAS_THREAD_TIMEOUT's business, read when the library loads.)
 *    bf16 operands are converted to f32 in the scratch buffer first; bf16
 *    matrix-vector shapes use the kernels' dot_bf16 directly.
 *
 * Streaming stores. An op whose destination is at least STREAM_MIN_BYTES
 * (16 MiB), does not alias a source and does little arithmetic per element
 * (binary ops, the cheap unary ops, layer norm, RMS norm) writes it with
 * the kernels' streaming forms (unary_nt, binary_nt, layernorm_nt,
 * rmsnorm_nt): non-temporal stores skip the read-for-ownership of each
 * destination line, so the op moves its inputs once and its output once
 * instead of also reading the output's old contents (1/3 of the traffic of
 * a unary op, 1/4 of a binary one). The output leaves the caches, which
 * costs nothing at that size: 16 MiB is four times the per-core share of L3
 * on current server parts (32 MiB per 8-core CCX), so the next op would
 * find little of it in cache anyway. The threshold is fixed rather than
 * derived from layer 1's l3_bytes because virtual machines report the
 * host's whole socket there (508 MiB on the 2-core development VM).
 * Transcendental ops (op_is_costly) and softmax / log_softmax keep ordinary
 * stores: with streaming stores a loop that spends long on arithmetic per
 * line ran slower on the 2-core Zen 5 VM (64 MiB, 2 threads: gelu -11%,
 * softmax with its exponentials kept in an L1 block and streamed out -20%,
 * a chain of 8 dependent FMAs per vector -30%), while add gained ~25% and
 * layer norm ~20%; softmax instead prefetches its rows (kernels.h). Each
 * thread fences its streaming stores (stream_fence) at the end of its
 * part, before the pool's barrier publishes them. Ops that read their
 * destination (axpy, in place) and the backward kernels keep ordinary
 * stores.
 *
 * RNG (RAND_NORMAL / RAND_UNIFORM) — counter-based, so any thread split
 * gives the same numbers (written here: no library Strata links offers a
 * counter-based generator, and a later Python reference must reproduce it
 * exactly). With 64-bit wrapping arithmetic:
 *     fmix(z)   = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
 *                 z ^= z >> 27; z *= 0x94D049BB133111EB; z ^ (z >> 31)
 *     G         = 0x9E3779B97F4A7C15
 *     key       = fmix(seed + G)
 *     bits(c)   = fmix(key + (c + 1) * G)   (output c of splitmix64 seeded with key)
 * Element i of dst has counter j = offset + i.
 *     uniform:  u = (bits(j) >> 40) * 2^-24 (f32, in [0,1));
 *               dst = alpha + (beta - alpha) * u, in f32 (which can round
 *               up to beta itself when |alpha| >> |beta - alpha|).
 *     normal:   Box-Muller on the pair k = j / 2, in double:
 *               u1 = ((bits(2k) >> 11) + 1) * 2^-53   (in (0,1])
 *               u2 = (bits(2k+1) >> 11) * 2^-53       (in [0,1))
 *               r = sqrt(-2 log u1), t = 2 pi u2
 *               z = r cos t for even j, r sin t for odd j;
 *               dst = alpha + beta * (float)z, in f32.
 *
 * Ownership: the backend owns its pool, its scratch and itself; views are
 * borrowed for one compute call. Threading: one thread submits ops; inside an
 * op, threads write disjoint parts of the destinations.
 */
#include "backend/backend_impl.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/cpu_fused.h"
#include "strata/hw.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

typedef struct st_cpu_backend {
    st_pool *pool;
    int n_threads;
    st_simd_level level;
    const st_cpu_kernels *k;
    void *scratch; /* reused by every op that needs temporary memory */
    size_t scratch_bytes;
} st_cpu_backend;

static const st_backend_iface g_cpu_iface;

/* Work sizes (elements) below which an op, or a thread's share, is not worth
 * waking another thread for. */
#define GRAIN_CHEAP 32768 /* memory-bound elementwise ops, copies, fills */
#define GRAIN_COSTLY 4096 /* transcendental elementwise ops, RNG */
#define GRAIN_ROWS 8192   /* row ops: elements per thread share */
#define BLK 256           /* stack block for gathered (strided) operands */
#define MM_BIG (1 << 21)  /* M*N*K at which one sgemm gets all BLAS threads */
#define STREAM_MIN_BYTES ((int64_t)16 << 20) /* dst size from which stores stream */

static st_cpu_backend *cpu_of(st_backend *be) {
    return (st_cpu_backend *)be->impl;
}
static const st_cpu_backend *cpu_of_c(const st_backend *be) {
    return (const st_cpu_backend *)be->impl;
}

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}
static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

/* ---- scratch ----------------------------------------------------------------- */

/* The backend's scratch, at least `bytes` long; contents are not kept.
 * NULL with ST_ERR_NOMEM recorded on failure. */
static void *scratch_get(st_cpu_backend *cb, size_t bytes, const char *what) {
    if (bytes <= cb->scratch_bytes) return cb->scratch;
    size_t want = bytes;
    if (want < cb->scratch_bytes + cb->scratch_bytes / 2)
        want = cb->scratch_bytes + cb->scratch_bytes / 2;
    want = (want + 63) & ~(size_t)63;
    void *p = st_malloc(want);
    if (!p) {
        st__fail(ST_ERR_NOMEM, "cpu backend: %s: out of memory for %zu bytes of scratch", what,
                 want);
        return NULL;
    }
    st_free(cb->scratch);
    cb->scratch = p;
    cb->scratch_bytes = want;
    return p;
}

/* Floats per thread slice, rounded to a cache line so threads never share one. */
static size_t slice_floats(int64_t n) {
    return ((size_t)max64(n, 1) + 15) & ~(size_t)15;
}

/* ---- parallel ranges with the thread index --------------------------------------- */

typedef st__pool_indexed_fn par_fn;

/* [0,n) over the pool in chunks of >= grain items (st__pool_for). */
static void par_for(st_cpu_backend *cb, int64_t n, int64_t grain, par_fn fn, void *arg) {
    st__pool_for(cb->pool, n, grain, fn, arg);
}

/* ---- plans ---------------------------------------------------------------------- */

#define PL_MAX_OPS 5

typedef struct plan {
    int nd, nops;
    int64_t ne[ST_MAX_DIMS];
    int64_t nb[PL_MAX_OPS][ST_MAX_DIMS];
    char *base[PL_MAX_OPS];
    int64_t n; /* elements (product of ne) */
} plan;

static void plan_init(plan *p, int nd, const int64_t *ne) {
    memset(p, 0, sizeof *p);
    ST_ASSERT(nd >= 0 && nd <= ST_MAX_DIMS);
    if (nd == 0) {
        p->nd = 1;
        p->ne[0] = 1;
    } else {
        p->nd = nd;
        for (int d = 0; d < nd; d++)
            p->ne[d] = ne[d];
    }
    p->n = 1;
    for (int d = 0; d < p->nd; d++)
        p->n *= p->ne[d];
}

/* Adds an operand whose m dims align with the plan's last m dims; missing
 * leading dims repeat (stride 0). Returns the operand's index. */
static int plan_add(plan *p, const void *data, int m, const int64_t *nb) {
    ST_ASSERT(p->nops < PL_MAX_OPS && m <= p->nd && m >= 0);
    int o = p->nops++;
    p->base[o] = (char *)data;
    for (int d = 0; d < p->nd; d++) {
        int od = d - (p->nd - m);
        p->nb[o][d] = od >= 0 ? nb[od] : 0;
    }
    return o;
}

/* Drops size-1 dims and merges neighbours that every operand can walk as
 * one (nb[d] == nb[d+1] * ne[d+1]); the element order is unchanged. */
static void plan_coalesce(plan *p) {
    int k = 0;
    for (int d = 0; d < p->nd; d++) {
        if (p->ne[d] == 1) continue;
        p->ne[k] = p->ne[d];
        for (int o = 0; o < p->nops; o++)
            p->nb[o][k] = p->nb[o][d];
        k++;
    }
    if (k == 0) {
        p->nd = 1;
        p->ne[0] = 1;
        for (int o = 0; o < p->nops; o++)
            p->nb[o][0] = 0;
        return;
    }
    p->nd = k;
    for (int d = p->nd - 2; d >= 0; d--) {
        bool ok = true;
        for (int o = 0; o < p->nops && ok; o++)
            ok = p->nb[o][d] == p->nb[o][d + 1] * p->ne[d + 1];
        if (!ok) continue;
        p->ne[d + 1] *= p->ne[d];
        for (int e = d; e < p->nd - 1; e++) {
            p->ne[e] = p->ne[e + 1];
            for (int o = 0; o < p->nops; o++)
                p->nb[o][e] = p->nb[o][e + 1];
        }
        p->nd--;
    }
}

/* A segment: len elements along the plan's innermost dim; ptr[o] is operand
 * o's first element, st[o] its byte stride, flat the row-major index of the
 * first element, ith the thread. */
typedef void (*seg_fn)(void *ctx, char *const *ptr, const int64_t *st, int64_t len, int64_t flat,
                       int ith);

typedef struct plan_job {
    const plan *p;
    seg_fn fn;
    void *ctx;
    void (*fence)(void); /* run by each thread after its part, or NULL */
} plan_job;

static void plan_chunk(void *arg, int64_t b, int64_t e, int ith) {
    const plan_job *j = arg;
    const plan *p = j->p;
    int nd = p->nd;
    int64_t inner = p->ne[nd - 1];
    int64_t st[PL_MAX_OPS];
    char *ptr[PL_MAX_OPS];
    for (int o = 0; o < p->nops; o++)
        st[o] = p->nb[o][nd - 1];
    int64_t idx = b;
    while (idx < e) {
        int64_t row = idx / inner, col = idx - row * inner;
        int64_t len = min64(inner - col, e - idx);
        for (int o = 0; o < p->nops; o++)
            ptr[o] = p->base[o] + col * st[o];
        int64_t r = row;
        for (int d = nd - 2; d >= 0 && r > 0; d--) {
            int64_t i = r % p->ne[d];
            r /= p->ne[d];
            for (int o = 0; o < p->nops; o++)
                ptr[o] += i * p->nb[o][d];
        }
        j->fn(j->ctx, ptr, st, len, idx, ith);
        idx += len;
    }
    if (j->fence) j->fence();
}

/* stream: the segments may use the kernels' streaming stores, so every
 * thread fences them before the barrier. */
static void plan_run_ex(st_cpu_backend *cb, const plan *p, int64_t grain, seg_fn fn, void *ctx,
                        bool stream) {
    plan_job j = {p, fn, ctx, stream ? cb->k->stream_fence : NULL};
    par_for(cb, p->n, grain, plan_chunk, &j);
}

static void plan_run(st_cpu_backend *cb, const plan *p, int64_t grain, seg_fn fn, void *ctx) {
    plan_run_ex(cb, p, grain, fn, ctx, false);
}

/* Whether an op writing dst, reading the n_src views of src, should stream
 * its stores: dst is large and no source is dst itself (an op in place
 * reads the lines it writes, so it has no read-for-ownership to save). */
static bool want_stream(const st_view *dst, const st_view *src, int n_src) {
    if (st_view_numel(dst) * (int64_t)st_dtype_size(dst->dtype) < STREAM_MIN_BYTES) return false;
    for (int i = 0; i < n_src; i++)
        if (src[i].data == dst->data) return false;
    return true;
}

/* A plan over the rows of a row op: the view's dims without the last one. */
static void plan_rows(plan *p, const st_view *shape) {
    plan_init(p, shape->ndim - 1, shape->ne);
}
static int plan_add_rows(plan *p, const st_view *v) {
    return plan_add(p, v->data, v->ndim - 1, v->nb);
}

/* Byte offset of row r (row-major over all dims but the last) of a view. */
static int64_t row_offset(const st_view *v, int64_t r) {
    int64_t off = 0;
    for (int d = v->ndim - 2; d >= 0 && r > 0; d--) {
        off += (r % v->ne[d]) * v->nb[d];
        r /= v->ne[d];
    }
    return off;
}

static int64_t rows_of(const st_view *v) {
    int64_t r = 1;
    for (int d = 0; d < v->ndim - 1; d++)
        r *= v->ne[d];
    return r;
}

/* Contiguous where it matters: row-major with no gaps, size-1 dims ignored. */
static bool view_dense(const st_view *v) {
    int64_t want = (int64_t)st_dtype_size(v->dtype);
    for (int d = v->ndim - 1; d >= 0; d--) {
        if (v->ne[d] == 1) continue;
        if (v->nb[d] != want) return false;
        want *= v->ne[d];
    }
    return true;
}

/* ---- strided f32 helpers ---------------------------------------------------------- */

/* A run of n floats with byte stride st as something a kernel takes: the run
 * itself (*s = 1 or 0, stride 4 or 0), else gathered into tmp (*s = 1). */
static const float *src_run(const char *p, int64_t st, int64_t n, float *tmp, int64_t *s) {
    if (st == 4 || st == 0) {
        *s = st / 4;
        return (const float *)p;
    }
    for (int64_t i = 0; i < n; i++)
        tmp[i] = *(const float *)(p + i * st);
    *s = 1;
    return tmp;
}

/* A unit-stride run: p itself when st == 4, else gathered into tmp. */
static const float *unit_run(const char *p, int64_t st, int64_t n, float *tmp) {
    if (st == 4) return (const float *)p;
    for (int64_t i = 0; i < n; i++)
        tmp[i] = *(const float *)(p + i * st);
    return tmp;
}

static void scatter(char *p, int64_t st, int64_t n, const float *x) {
    for (int64_t i = 0; i < n; i++)
        *(float *)(p + i * st) = x[i];
}

/* ---- elementwise ------------------------------------------------------------------ */

typedef struct ew_ctx {
    const st_cpu_kernels *k;
    st_op op;
    float alpha;
    bool has_y;  /* UNARY_BACKWARD: y given */
    bool stream; /* unary/binary: contiguous dst runs use the streaming forms */
} ew_ctx;

static bool op_is_costly(st_op op) {
    switch (op) {
    case ST_OP_EXP:
    case ST_OP_LOG:
    case ST_OP_TANH:
    case ST_OP_GELU_TANH:
    case ST_OP_GELU_ERF:
    case ST_OP_SILU:
    case ST_OP_SQRT:
        return true;
    default:
        return false;
    }
}

static void seg_unary(void *vctx, char *const *ptr, const int64_t *st, int64_t len, int64_t flat,
                      int ith) {
    (void)flat, (void)ith;
    const ew_ctx *c = vctx;
    if (st[0] == 4 && st[1] == 4) {
        (c->stream ? c->k->unary_nt : c->k->unary)(c->op, len, (const float *)ptr[1],
                                                   (float *)ptr[0], c->alpha);
        return;
    }
    float tx[BLK], ty[BLK];
    for (int64_t b = 0; b < len; b += BLK) {
        int64_t n = min64(BLK, len - b);
        const float *x = unit_run(ptr[1] + b * st[1], st[1], n, tx);
        float *y = st[0] == 4 ? (float *)(ptr[0] + b * st[0]) : ty;
        c->k->unary(c->op, n, x, y, c->alpha);
        if (y == ty) scatter(ptr[0] + b * st[0], st[0], n, ty);
    }
}

static void seg_binary(void *vctx, char *const *ptr, const int64_t *st, int64_t len, int64_t flat,
                       int ith) {
    (void)flat, (void)ith;
    const ew_ctx *c = vctx;
    if (st[0] == 4 && (st[1] == 4 || st[1] == 0) && (st[2] == 4 || st[2] == 0)) {
        (c->stream ? c->k->binary_nt : c->k->binary)(c->op, len, (const float *)ptr[1], st[1] / 4,
                                                     (const float *)ptr[2], st[2] / 4,
                                                     (float *)ptr[0]);
        return;
    }
    float ta[BLK], tb[BLK], ty[BLK];
    for (int64_t b = 0; b < len; b += BLK) {
        int64_t n = min64(BLK, len - b), sa, sb;
        const float *a = src_run(ptr[1] + b * st[1], st[1], n, ta, &sa);
        const float *bb = src_run(ptr[2] + b * st[2], st[2], n, tb, &sb);
        float *y = st[0] == 4 ? (float *)(ptr[0] + b * st[0]) : ty;
        c->k->binary(c->op, n, a, sa, bb, sb, y);
        if (y == ty) scatter(ptr[0] + b * st[0], st[0], n, ty);
    }
}

static void seg_axpy(void *vctx, char *const *ptr, const int64_t *st, int64_t len, int64_t flat,
                     int ith) {
    (void)flat, (void)ith;
    const ew_ctx *c = vctx;
    if (st[0] == 4 && (st[1] == 4 || st[1] == 0)) {
        c->k->axpy(len, c->alpha, (const float *)ptr[1], st[1] / 4, (float *)ptr[0]);
        return;
    }
    float tx[BLK], ty[BLK];
    for (int64_t b = 0; b < len; b += BLK) {
        int64_t n = min64(BLK, len - b), sx;
        const float *x = src_run(ptr[1] + b * st[1], st[1], n, tx, &sx);
        float *y = (float *)unit_run(ptr[0] + b * st[0], st[0], n, ty);
        c->k->axpy(n, c->alpha, x, sx, y);
        if (y == ty) scatter(ptr[0] + b * st[0], st[0], n, ty);
    }
}

/* operands: dx, x, dy[, y] */
static void seg_unary_backward(void *vctx, char *const *ptr, const int64_t *st, int64_t len,
                               int64_t flat, int ith) {
    (void)flat, (void)ith;
    const ew_ctx *c = vctx;
    bool unit = st[0] == 4 && st[1] == 4 && st[2] == 4 && (!c->has_y || st[3] == 4);
    if (unit) {
        c->k->unary_backward(c->op, len, (const float *)ptr[1],
                             c->has_y ? (const float *)ptr[3] : NULL, (const float *)ptr[2],
                             (float *)ptr[0], c->alpha);
        return;
    }
    float tx[BLK], tdy[BLK], tyy[BLK], tdx[BLK];
    for (int64_t b = 0; b < len; b += BLK) {
        int64_t n = min64(BLK, len - b);
        const float *x = unit_run(ptr[1] + b * st[1], st[1], n, tx);
        const float *dy = unit_run(ptr[2] + b * st[2], st[2], n, tdy);
        const float *y = c->has_y ? unit_run(ptr[3] + b * st[3], st[3], n, tyy) : NULL;
        float *dx = st[0] == 4 ? (float *)(ptr[0] + b * st[0]) : tdx;
        c->k->unary_backward(c->op, n, x, y, dy, dx, c->alpha);
        if (dx == tdx) scatter(ptr[0] + b * st[0], st[0], n, tdx);
    }
}

static st_status run_elementwise(st_cpu_backend *cb, const st_op_desc *d) {
    const st_view *dst = &d->dst[0];
    plan p;
    plan_init(&p, dst->ndim, dst->ne);
    plan_add(&p, dst->data, dst->ndim, dst->nb);
    ew_ctx c = {cb->k, d->op, d->p.alpha, false, false};
    seg_fn fn;
    st_op kind = d->op;
    if (kind >= ST_OP_NEG && kind <= ST_OP_SCALE) {
        plan_add(&p, d->src[0].data, d->src[0].ndim, d->src[0].nb);
        fn = seg_unary;
        c.stream = !op_is_costly(kind) && want_stream(dst, d->src, 1);
    } else if (kind >= ST_OP_ADD && kind <= ST_OP_DIV) {
        plan_add(&p, d->src[0].data, d->src[0].ndim, d->src[0].nb);
        plan_add(&p, d->src[1].data, d->src[1].ndim, d->src[1].nb);
        fn = seg_binary;
        c.stream = want_stream(dst, d->src, 2);
    } else if (kind == ST_OP_AXPY) {
        plan_add(&p, d->src[0].data, d->src[0].ndim, d->src[0].nb);
        fn = seg_axpy;
    } else {
        ST_ASSERT(kind == ST_OP_UNARY_BACKWARD);
        c.op = d->p.sub_op;
        if (c.op < ST_OP_NEG || c.op > ST_OP_SCALE)
            return st__fail(ST_ERR_INVALID_ARG,
                            "cpu backend: unary_backward: sub_op %s is not a "
                            "unary op",
                            st_op_name(c.op));
        plan_add(&p, d->src[0].data, d->src[0].ndim, d->src[0].nb); /* x */
        plan_add(&p, d->src[1].data, d->src[1].ndim, d->src[1].nb); /* dy */
        c.has_y = d->n_src > 2 && d->src[2].data != NULL;
        if (c.has_y) plan_add(&p, d->src[2].data, d->src[2].ndim, d->src[2].nb);
        fn = seg_unary_backward;
        kind = c.op;
    }
    for (int i = 0; i < d->n_src && i < 3; i++)
        ST_ASSERT(d->src[i].data == NULL || d->src[i].dtype == ST_F32);
    ST_ASSERT(dst->dtype == ST_F32);
    plan_coalesce(&p);
    plan_run_ex(cb, &p,
                op_is_costly(kind) || d->op == ST_OP_UNARY_BACKWARD ? GRAIN_COSTLY : GRAIN_CHEAP,
                fn, &c, c.stream);
    return ST_OK;
}

/* ---- reductions ------------------------------------------------------------------- */

typedef struct red_ctx {
    const st_cpu_kernels *k;
    st_op op;
    int64_t L, S; /* length and byte stride of the reduced axis */
} red_ctx;

static float reduce_row(const red_ctx *c, const float *x) {
    if (c->L == 0) return c->op == ST_OP_MAX ? -INFINITY : (c->op == ST_OP_SUM ? 0.0f : NAN);
    if (c->op == ST_OP_MAX) return c->k->max(c->L, x);
    float s = c->k->sum(c->L, x);
    return c->op == ST_OP_MEAN ? s / (float)c->L : s;
}

/* operands: dst, src (at index 0 of the reduced axis) */
static void seg_reduce(void *vctx, char *const *ptr, const int64_t *st, int64_t len, int64_t flat,
                       int ith) {
    (void)flat, (void)ith;
    const red_ctx *c = vctx;
    if (c->S == 4 || c->L <= 1) { /* each output reduces one contiguous run */
        for (int64_t j = 0; j < len; j++)
            *(float *)(ptr[0] + j * st[0]) = reduce_row(c, (const float *)(ptr[1] + j * st[1]));
        return;
    }
    /* the axis is strided: accumulate blocks of outputs row after row, in
     * dst itself when it is contiguous (blocks of up to 16 KiB stay in L1) */
    float acc_blk[BLK], tx[BLK];
    bool direct = st[0] == 4 && (st[1] == 4 || st[1] == 0);
    int64_t blk = direct ? 4096 : BLK;
    for (int64_t b = 0; b < len; b += blk) {
        int64_t n = min64(blk, len - b);
        float *acc = direct ? (float *)ptr[0] + b : acc_blk;
        const char *src = ptr[1] + b * st[1];
        for (int64_t i = 0; i < n; i++)
            acc[i] = *(const float *)(src + i * st[1]);
        for (int64_t kk = 1; kk < c->L; kk++) {
            const char *row = src + kk * c->S;
            if (c->op == ST_OP_MAX) {
                for (int64_t i = 0; i < n; i++) {
                    float v = *(const float *)(row + i * st[1]);
                    if (v > acc[i] || v != v) acc[i] = v;
                }
            } else {
                int64_t sx;
                const float *x = src_run(row, st[1], n, tx, &sx);
                c->k->axpy(n, 1.0f, x, sx, acc);
            }
        }
        if (c->op == ST_OP_MEAN) c->k->unary(ST_OP_SCALE, n, acc, acc, 1.0f / (float)c->L);
        if (!direct) scatter(ptr[0] + b * st[0], st[0], n, acc);
    }
}

static st_status run_reduce(st_cpu_backend *cb, const st_op_desc *d) {
    const st_view *src = &d->src[0], *dst = &d->dst[0];
    int axis = d->p.axis;
    if (axis < 0) axis += src->ndim;
    ST_ASSERT(axis >= 0 && axis < src->ndim && dst->ndim == src->ndim && dst->ne[axis] == 1);
    ST_ASSERT(src->dtype == ST_F32 && dst->dtype == ST_F32);
    red_ctx c = {cb->k, d->op, src->ne[axis], src->nb[axis]};
    if (c.L == 1) c.S = 4;
    int64_t ne[ST_MAX_DIMS];
    for (int i = 0; i < src->ndim; i++)
        ne[i] = i == axis ? 1 : src->ne[i];
    plan p;
    plan_init(&p, src->ndim, ne);
    plan_add(&p, dst->data, dst->ndim, dst->nb);
    plan_add(&p, src->data, src->ndim, src->nb);
    plan_coalesce(&p);
    int64_t per = max64(c.L, 1);
    plan_run(cb, &p, max64(1, GRAIN_CHEAP / per), seg_reduce, &c);
    return ST_OK;
}

/* operands: dx, x, dy (slice index 0 along the axis) and y (keepdim). For
 * each slice, dx = dy at the first element equal to the max y (NaN matches
 * NaN), 0 elsewhere. */
typedef struct maxb_ctx {
    int64_t L, Sx, Sdx; /* axis length and byte strides of x and dx along it */
} maxb_ctx;

static void seg_max_backward(void *vctx, char *const *ptr, const int64_t *st, int64_t len,
                             int64_t flat, int ith) {
    (void)flat, (void)ith;
    const maxb_ctx *c = vctx;
    for (int64_t j = 0; j < len; j++) {
        char *dx = ptr[0] + j * st[0];
        const char *x = ptr[1] + j * st[1];
        float dy = *(const float *)(ptr[2] + j * st[2]);
        float y = *(const float *)(ptr[3] + j * st[3]);
        bool found = false;
        for (int64_t kk = 0; kk < c->L; kk++) {
            float v = *(const float *)(x + kk * c->Sx);
            bool hit = !found && (v == y || (v != v && y != y));
            *(float *)(dx + kk * c->Sdx) = hit ? dy : 0.0f;
            found = found || hit;
        }
    }
}

static st_status run_max_backward(st_cpu_backend *cb, const st_op_desc *d) {
    const st_view *x = &d->src[0], *y = &d->src[1], *dy = &d->src[2], *dx = &d->dst[0];
    int axis = d->p.axis;
    if (axis < 0) axis += x->ndim;
    ST_ASSERT(axis >= 0 && axis < x->ndim && dx->ndim == x->ndim);
    maxb_ctx c = {x->ne[axis], x->nb[axis], dx->nb[axis]};
    int64_t ne[ST_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        ne[i] = i == axis ? 1 : x->ne[i];
    plan p;
    plan_init(&p, x->ndim, ne);
    plan_add(&p, dx->data, dx->ndim, dx->nb);
    plan_add(&p, x->data, x->ndim, x->nb);
    /* y and dy keep the axis with size 1; its stride never matters */
    plan_add(&p, dy->data, dy->ndim, dy->nb);
    plan_add(&p, y->data, y->ndim, y->nb);
    plan_coalesce(&p);
    plan_run(cb, &p, max64(1, GRAIN_CHEAP / max64(c.L, 1)), seg_max_backward, &c);
    return ST_OK;
}

/* ---- row ops ---------------------------------------------------------------------- */

typedef struct row_ctx {
    const st_cpu_kernels *k;
    st_op op;
    int64_t n; /* row length */
    float eps;
    const float *g, *b; /* gamma, beta or NULL */
    float *mean, *rstd; /* norm backward: per-row statistics (indexed by row) */
    float *tmp;         /* norm backward: one slice of slice_floats(n) per thread */
    size_t tmp_stride;
    bool stream;        /* layer/RMS norm: the kernels' streaming forms */
} row_ctx;

static void seg_rows(void *vctx, char *const *ptr, const int64_t *st, int64_t len, int64_t flat,
                     int ith) {
    const row_ctx *c = vctx;
    const st_cpu_kernels *k = c->k;
    int64_t n = c->n;
    for (int64_t j = 0; j < len; j++) {
        float *o = (float *)(ptr[0] + j * st[0]);
        const float *x = (const float *)(ptr[1] + j * st[1]);
        switch (c->op) {
        case ST_OP_SOFTMAX:
            k->softmax(n, x, o);
            break;
        case ST_OP_LOG_SOFTMAX:
            k->log_softmax(n, x, o);
            break;
        case ST_OP_LAYERNORM:
            (c->stream ? k->layernorm_nt : k->layernorm)(n, x, c->g, c->b, c->eps, o);
            break;
        case ST_OP_RMSNORM:
            (c->stream ? k->rmsnorm_nt : k->rmsnorm)(n, x, c->g, c->eps, o);
            break;
        case ST_OP_SOFTMAX_BACKWARD:
            k->softmax_backward(n, x, (const float *)(ptr[2] + j * st[2]), o);
            break;
        case ST_OP_LOG_SOFTMAX_BACKWARD:
            k->log_softmax_backward(n, x, (const float *)(ptr[2] + j * st[2]), o);
            break;
        case ST_OP_LAYERNORM_BACKWARD:
        case ST_OP_RMSNORM_BACKWARD: {
            const float *dy = (const float *)(ptr[2] + j * st[2]);
            if (c->op == ST_OP_LAYERNORM_BACKWARD)
                k->layernorm_backward(n, x, c->g, dy, c->eps, o, NULL, NULL);
            else
                k->rmsnorm_backward(n, x, c->g, dy, c->eps, o, NULL);
            if (c->rstd) { /* statistics for the dgamma/dbeta pass */
                int64_t r = flat + j;
                if (c->op == ST_OP_LAYERNORM_BACKWARD) {
                    float *t = c->tmp + (size_t)ith * c->tmp_stride;
                    float mu = n > 0 ? k->sum(n, x) / (float)n : 0.0f;
                    k->binary(ST_OP_SUB, n, x, 1, &mu, 0, t);
                    float var = n > 0 ? k->dot(n, t, t) / (float)n : 0.0f;
                    c->mean[r] = mu;
                    c->rstd[r] = 1.0f / sqrtf(var + c->eps);
                } else {
                    float ms = n > 0 ? k->dot(n, x, x) / (float)n : 0.0f;
                    c->rstd[r] = 1.0f / sqrtf(ms + c->eps);
                }
            }
            break;
        }
        default:
            ST_ASSERT(!"not a row op");
        }
    }
}

/* The dgamma/dbeta pass of the norm backwards: thread-owned columns, rows
 * added in order, so results do not depend on the thread count. */
typedef struct norm_cols_ctx {
    const row_ctx *rc;
    const st_view *x, *dy;
    float *dg, *db; /* the destinations ([n], contiguous) or NULL */
    float *acc_g, *acc_b;
    int64_t rows;
} norm_cols_ctx;

static void norm_cols(void *varg, int64_t c0, int64_t c1, int ith) {
    const norm_cols_ctx *c = varg;
    const row_ctx *rc = c->rc;
    const st_cpu_kernels *k = rc->k;
    int64_t w = c1 - c0;
    float *t = rc->tmp + (size_t)ith * rc->tmp_stride; /* w <= n floats */
    float *ag = c->acc_g + c0, *ab = c->acc_b + c0;
    memset(ag, 0, (size_t)w * sizeof(float));
    memset(ab, 0, (size_t)w * sizeof(float));
    for (int64_t r = 0; r < c->rows; r++) {
        const float *x = (const float *)((const char *)c->x->data + row_offset(c->x, r)) + c0;
        const float *dy = (const float *)((const char *)c->dy->data + row_offset(c->dy, r)) + c0;
        if (c->db) k->axpy(w, 1.0f, dy, 1, ab);
        if (c->dg) {
            if (rc->op == ST_OP_LAYERNORM_BACKWARD) {
                k->binary(ST_OP_SUB, w, x, 1, &rc->mean[r], 0, t);
                k->binary(ST_OP_MUL, w, t, 1, dy, 1, t);
            } else {
                k->binary(ST_OP_MUL, w, x, 1, dy, 1, t);
            }
            k->axpy(w, rc->rstd[r], t, 1, ag);
        }
    }
    if (c->dg) k->axpy(w, 1.0f, ag, 1, c->dg + c0);
    if (c->db) k->axpy(w, 1.0f, ab, 1, c->db + c0);
}

static const float *optional_vec(const st_op_desc *d, int i, int64_t n) {
    if (d->n_src <= i || d->src[i].data == NULL) return NULL;
    const st_view *v = &d->src[i];
    ST_ASSERT(v->dtype == ST_F32 && st_view_numel(v) == n && (n <= 1 || v->nb[v->ndim - 1] == 4));
    return (const float *)v->data;
}

static float *optional_dst(const st_op_desc *d, int i, int64_t n) {
    if (d->n_dst <= i || d->dst[i].data == NULL) return NULL;
    const st_view *v = &d->dst[i];
    ST_ASSERT(v->dtype == ST_F32 && st_view_numel(v) == n && (n <= 1 || v->nb[v->ndim - 1] == 4));
    return (float *)v->data;
}

static st_status run_rows(st_cpu_backend *cb, const st_op_desc *d) {
    const st_view *x = &d->src[0], *out = &d->dst[0];
    int64_t n = x->ne[x->ndim - 1];
    ST_ASSERT(x->dtype == ST_F32 && out->dtype == ST_F32 && out->ndim == x->ndim);
    ST_ASSERT(n <= 1 || (x->nb[x->ndim - 1] == 4 && out->nb[out->ndim - 1] == 4));
    row_ctx c = {.k = cb->k, .op = d->op, .n = n, .eps = d->p.eps};
    plan p;
    plan_rows(&p, x);
    plan_add_rows(&p, out);
    plan_add_rows(&p, x);
    const st_view *dy = NULL;
    float *dg = NULL, *db = NULL;
    switch (d->op) {
    case ST_OP_LAYERNORM:
        c.g = optional_vec(d, 1, n);
        c.b = optional_vec(d, 2, n);
        c.stream = want_stream(out, x, 1);
        break;
    case ST_OP_RMSNORM:
        c.g = optional_vec(d, 1, n);
        c.stream = want_stream(out, x, 1);
        break;
    case ST_OP_SOFTMAX_BACKWARD:
    case ST_OP_LOG_SOFTMAX_BACKWARD:
        dy = &d->src[1];
        break;
    case ST_OP_LAYERNORM_BACKWARD:
    case ST_OP_RMSNORM_BACKWARD:
        c.g = optional_vec(d, 1, n);
        dy = &d->src[2];
        dg = optional_dst(d, 1, n);
        if (d->op == ST_OP_LAYERNORM_BACKWARD) db = optional_dst(d, 2, n);
        break;
    default:
        break;
    }
    if (dy) {
        ST_ASSERT(dy->dtype == ST_F32 && dy->ndim == x->ndim &&
                  (n <= 1 || dy->nb[dy->ndim - 1] == 4));
        plan_add_rows(&p, dy);
    }
    int64_t rows = p.n;
    if (dg || db) { /* scratch: mean, rstd per row; one row slice per thread; dg, db sums */
        c.tmp_stride = slice_floats(n);
        size_t rows_f = slice_floats(rows);
        size_t total = 2 * rows_f + (size_t)cb->n_threads * c.tmp_stride + 2 * slice_floats(n);
        float *s = scratch_get(cb, total * sizeof(float), st_op_name(d->op));
        if (!s) return ST_ERR_NOMEM;
        c.mean = s;
        c.rstd = s + rows_f;
        c.tmp = s + 2 * rows_f;
    }
    plan_coalesce(&p);
    plan_run_ex(cb, &p, max64(1, GRAIN_ROWS / max64(n, 1)), seg_rows, &c, c.stream);
    if (dg || db) {
        float *acc = c.tmp + (size_t)cb->n_threads * c.tmp_stride;
        norm_cols_ctx nc = {&c, x, dy, dg, db, acc, acc + slice_floats(n), rows};
        /* each thread's columns must carry enough rows of work */
        int64_t grain = max64(16, GRAIN_ROWS / max64(rows, 1));
        par_for(cb, n, grain, norm_cols, &nc);
    }
    return ST_OK;
}

/* ---- embedding -------------------------------------------------------------------- */

static st_status check_ids(const st_view *ids, int64_t V, const char *opn) {
    ST_ASSERT(ids->dtype == ST_I32 && view_dense(ids));
    const int32_t *id = ids->data;
    int64_t n = st_view_numel(ids);
    for (int64_t i = 0; i < n; i++)
        if (id[i] < 0 || (int64_t)id[i] >= V)
            return st__fail(ST_ERR_BOUNDS,
                            "%s: id %d at flat position %lld of ids is outside [0, %lld) "
                            "(the weight has V = %lld rows)",
                            opn, (int)id[i], (long long)i, (long long)V, (long long)V);
    return ST_OK;
}

typedef struct emb_ctx {
    const st_cpu_kernels *k;
    const st_view *w, *out; /* forward: weight, dst; backward: dweight, dy */
    const int32_t *ids;
    int64_t D, n_ids;
} emb_ctx;

static void emb_rows(void *varg, int64_t b, int64_t e, int ith) {
    (void)ith;
    const emb_ctx *c = varg;
    for (int64_t i = b; i < e; i++) {
        const char *src = (const char *)c->w->data + (int64_t)c->ids[i] * c->w->nb[0];
        char *dst = (char *)c->out->data + row_offset(c->out, i);
        memcpy(dst, src, (size_t)c->D * sizeof(float));
    }
}

/* backward split by columns [b, e) of D: every thread sees all ids in order */
static void emb_back_cols(void *varg, int64_t b, int64_t e, int ith) {
    (void)ith;
    const emb_ctx *c = varg;
    for (int64_t i = 0; i < c->n_ids; i++) {
        const float *dy = (const float *)((const char *)c->out->data + row_offset(c->out, i)) + b;
        float *dw = (float *)((char *)c->w->data + (int64_t)c->ids[i] * c->w->nb[0]) + b;
        c->k->axpy(e - b, 1.0f, dy, 1, dw);
    }
}

/* backward split by vocabulary rows [b, e): a thread adds only the ids it owns */
static void emb_back_vocab(void *varg, int64_t b, int64_t e, int ith) {
    (void)ith;
    const emb_ctx *c = varg;
    for (int64_t i = 0; i < c->n_ids; i++) {
        int64_t id = c->ids[i];
        if (id < b || id >= e) continue;
        const float *dy = (const float *)((const char *)c->out->data + row_offset(c->out, i));
        float *dw = (float *)((char *)c->w->data + id * c->w->nb[0]);
        c->k->axpy(c->D, 1.0f, dy, 1, dw);
    }
}

static st_status run_embedding(st_cpu_backend *cb, const st_op_desc *d) {
    bool back = d->op == ST_OP_EMBEDDING_BACKWARD;
    const st_view *w = back ? &d->dst[0] : &d->src[0];
    const st_view *rows = back ? &d->src[0] : &d->dst[0];
    const st_view *ids = &d->src[1];
    ST_ASSERT(w->ndim == 2 && w->dtype == ST_F32 && rows->dtype == ST_F32);
    int64_t V = w->ne[0], D = w->ne[1];
    ST_ASSERT(D <= 1 || (w->nb[1] == 4 && rows->nb[rows->ndim - 1] == 4));
    ST_ASSERT(rows->ne[rows->ndim - 1] == D && rows_of(rows) == st_view_numel(ids));
    ST_TRY(check_ids(ids, V, st_op_name(d->op)));
    emb_ctx c = {cb->k, w, rows, ids->data, D, st_view_numel(ids)};
    if (c.n_ids == 0 || D == 0) return ST_OK;
    if (!back) {
        par_for(cb, c.n_ids, max64(1, GRAIN_CHEAP / D), emb_rows, &c);
    } else if (c.n_ids * D < GRAIN_CHEAP || cb->n_threads == 1) {
        emb_back_cols(&c, 0, D, 0);
    } else if (D >= 64 * (int64_t)cb->n_threads) {
        par_for(cb, D, 64, emb_back_cols, &c);
    } else {
        par_for(cb, V, 1, emb_back_vocab, &c);
    }
    return ST_OK;
}

/* ---- matmul ----------------------------------------------------------------------- */

enum { MM_ROWS = 0, MM_COLS = 1, MM_GATHER = 2 };

/* One operand of a batched product, an R x C matrix per batch. */
typedef struct mm_side {
    const char *data;
    int64_t bs[2]; /* byte strides over the two (right-aligned) batch dims */
    int64_t R, C;
    int64_t rs, cs; /* byte strides of rows and columns */
    st_dtype dt;
    int64_t es;
    int mode;   /* MM_ROWS: row-major (NoTrans); MM_COLS: transposed; else gather */
    int64_t ld; /* leading dimension in elements (ROWS/COLS) */
} mm_side;

static void mm_side_init(mm_side *s, const st_view *v, const int64_t *bne) {
    int nd = v->ndim;
    ST_ASSERT(nd >= 2 && nd <= 4);
    s->data = v->data;
    s->dt = v->dtype;
    s->es = (int64_t)st_dtype_size(v->dtype);
    s->R = v->ne[nd - 2];
    s->C = v->ne[nd - 1];
    s->rs = v->nb[nd - 2];
    s->cs = v->nb[nd - 1];
    s->bs[0] = s->bs[1] = 0;
    for (int i = 0; i < nd - 2; i++) {
        int slot = 2 - (nd - 2) + i;
        s->bs[slot] = (v->ne[i] == 1 || bne[slot] == 1) ? 0 : v->nb[i];
    }
    int64_t es = s->es;
    if ((s->cs == es || s->C == 1) &&
        (s->R == 1 || (s->rs > 0 && s->rs % es == 0 && s->rs / es >= s->C))) {
        s->mode = MM_ROWS;
        s->ld = s->R == 1 ? max64(s->C, 1) : s->rs / es;
    } else if ((s->rs == es || s->R == 1) &&
               (s->C == 1 || (s->cs > 0 && s->cs % es == 0 && s->cs / es >= s->R))) {
        s->mode = MM_COLS;
        s->ld = s->C == 1 ? max64(s->R, 1) : s->cs / es;
    } else {
        s->mode = MM_GATHER;
        s->ld = max64(s->C, 1);
    }
}

static bool mm_direct(const mm_side *s) {
    return s->dt == ST_F32 && s->mode != MM_GATHER;
}

/* Converts runs [r0, r1) of one batch matrix into the f32 buffer: rows
 * (MM_ROWS, MM_GATHER) or columns (MM_COLS) of the packed result. */
static void mm_convert_runs(const st_cpu_kernels *k, const mm_side *s, const char *m, float *buf,
                            int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        if (s->mode == MM_GATHER) {
            float *o = buf + r * s->C;
            const char *row = m + r * s->rs;
            for (int64_t c = 0; c < s->C; c++) {
                const char *e = row + c * s->cs;
                o[c] = s->dt == ST_F32 ? *(const float *)e : st_bf16_to_f32(*(const uint16_t *)e);
            }
            continue;
        }
        int64_t len = s->mode == MM_ROWS ? s->C : s->R;
        float *o = buf + r * len;
        const char *run = m + r * s->ld * s->es;
        if (s->dt == ST_F32)
            memcpy(o, run, (size_t)len * sizeof(float));
        else
            k->bf16_to_f32(len, (const uint16_t *)run, o);
    }
}

static int64_t mm_runs(const mm_side *s) {
    return s->mode == MM_COLS ? s->C : s->R;
}

typedef struct mm_ctx {
    st_cpu_backend *cb;
    mm_side a, b;
    char *c;
    int64_t cbs[2], ldc; /* dst batch byte strides, leading dim (elements) */
    int64_t bne1;        /* size of the inner batch dim */
    int64_t M, N, K;
    float beta;
    float *buf;   /* conversion buffers: one slice per thread */
    size_t slice; /* floats per slice */
    /* for the parallel conversion of one operand */
    const mm_side *cv_side;
    const char *cv_mat;
    float *cv_buf;
} mm_ctx;

static void mm_cv_worker(void *varg, int64_t b, int64_t e, int ith) {
    (void)ith;
    const mm_ctx *c = varg;
    mm_convert_runs(c->cb->k, c->cv_side, c->cv_mat, c->cv_buf, b, e);
}

/* The f32 operand for sgemm: direct, or converted into buf (in parallel
 * over the pool when `parallel`). */
static const float *mm_operand(mm_ctx *c, const mm_side *s, const char *m, float *buf,
                               bool parallel, bool *trans, int64_t *ld) {
    if (mm_direct(s)) {
        *trans = s->mode == MM_COLS;
        *ld = s->ld;
        return (const float *)m;
    }
    int64_t runs = mm_runs(s);
    if (parallel) {
        c->cv_side = s;
        c->cv_mat = m;
        c->cv_buf = buf;
        int64_t len = s->mode == MM_COLS ? s->R : s->C;
        par_for(c->cb, runs, max64(1, GRAIN_CHEAP / max64(len, 1)), mm_cv_worker, c);
    } else {
        mm_convert_runs(c->cb->k, s, m, buf, 0, runs);
    }
    *trans = s->mode == MM_COLS;
    *ld = s->mode == MM_COLS ? max64(s->R, 1) : max64(s->C, 1);
    return buf;
}

static void mm_one(mm_ctx *c, int64_t bi, float *buf, bool parallel) {
    int64_t i0 = bi / c->bne1, i1 = bi % c->bne1;
    const char *am = c->a.data + i0 * c->a.bs[0] + i1 * c->a.bs[1];
    const char *bm = c->b.data + i0 * c->b.bs[0] + i1 * c->b.bs[1];
    float *cm = (float *)(c->c + i0 * c->cbs[0] + i1 * c->cbs[1]);
    bool ta, tb;
    int64_t lda, ldb;
    const float *A = mm_operand(c, &c->a, am, buf, parallel, &ta, &lda);
    const float *B = mm_operand(c, &c->b, bm, buf ? buf + c->M * c->K : NULL, parallel, &tb, &ldb);
    if (parallel) st__pool_sleep_hint(c->cb->pool); /* BLAS takes the cores now */
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)c->M, (int)c->N, (int)c->K, 1.0f, A, (int)lda, B, (int)ldb, c->beta, cm,
                (int)c->ldc);
}

static void mm_batches(void *varg, int64_t b, int64_t e, int ith) {
    mm_ctx *c = varg;
    float *buf = c->buf ? c->buf + (size_t)ith * c->slice : NULL;
    for (int64_t bi = b; bi < e; bi++)
        mm_one(c, bi, buf, false);
}

/* bf16 matrix-vector shapes: one dot_bf16 per output */
static void mm_dots(void *varg, int64_t b, int64_t e, int ith) {
    (void)ith;
    const mm_ctx *c = varg;
    int64_t mn = c->M * c->N;
    for (int64_t o = b; o < e; o++) {
        int64_t bi = o / mn, r = o % mn, m = r / c->N, n = r % c->N;
        int64_t i0 = bi / c->bne1, i1 = bi % c->bne1;
        const uint16_t *x =
            (const uint16_t *)(c->a.data + i0 * c->a.bs[0] + i1 * c->a.bs[1] + m * c->a.rs);
        const uint16_t *y =
            (const uint16_t *)(c->b.data + i0 * c->b.bs[0] + i1 * c->b.bs[1] + n * c->b.cs);
        float v = c->cb->k->dot_bf16(c->K, x, y);
        float *dst = (float *)(c->c + i0 * c->cbs[0] + i1 * c->cbs[1]) + m * c->ldc + n;
        *dst = c->beta != 0.0f ? *dst + v : v;
    }
}

static st_status run_matmul(st_cpu_backend *cb, const st_op_desc *d) {
    const st_view *av = &d->src[0], *bv = &d->src[1], *cv = &d->dst[0];
    int nd = cv->ndim;
    ST_ASSERT(nd >= 2 && cv->dtype == ST_F32 && av->dtype == bv->dtype);
    ST_ASSERT(av->ndim <= nd && bv->ndim <= nd);
    mm_ctx c = {.cb = cb};
    c.M = cv->ne[nd - 2];
    c.N = cv->ne[nd - 1];
    c.K = av->ne[av->ndim - 1];
    ST_ASSERT(av->ne[av->ndim - 2] == c.M && bv->ne[bv->ndim - 2] == c.K &&
              bv->ne[bv->ndim - 1] == c.N);
    int64_t bne[2] = {1, 1};
    for (int i = 0; i < nd - 2; i++) {
        int slot = 2 - (nd - 2) + i;
        bne[slot] = cv->ne[i];
        c.cbs[slot] = cv->nb[i];
    }
    c.bne1 = bne[1];
    int64_t nbatch = bne[0] * bne[1];
    if (nbatch == 0 || c.M == 0 || c.N == 0) return ST_OK;
    ST_ASSERT(c.N == 1 || cv->nb[nd - 1] == 4);
    c.ldc = c.M == 1 ? c.N : cv->nb[nd - 2] / 4;
    ST_ASSERT(c.ldc >= c.N);
    c.c = cv->data;
    c.beta = d->p.accumulate ? 1.0f : 0.0f;
    if (c.K == 0) { /* an empty sum: dst = 0 (or unchanged) */
        if (!d->p.accumulate)
            for (int64_t bi = 0; bi < nbatch; bi++)
                for (int64_t m = 0; m < c.M; m++)
                    memset(c.c + (bi / c.bne1) * c.cbs[0] + (bi % c.bne1) * c.cbs[1] +
                               m * c.ldc * 4,
                           0, (size_t)c.N * sizeof(float));
        return ST_OK;
    }
    if (c.M > INT_MAX || c.N > INT_MAX || c.K > INT_MAX || c.ldc > INT_MAX)
        return st__fail(ST_ERR_UNSUPPORTED,
                        "cpu backend: matmul: [%lld x %lld] x [%lld x %lld] "
                        "exceeds the BLAS's 32-bit sizes",
                        (long long)c.M, (long long)c.K, (long long)c.K, (long long)c.N);
    mm_side_init(&c.a, av, bne);
    mm_side_init(&c.b, bv, bne);
    if (c.a.ld > INT_MAX || c.b.ld > INT_MAX)
        return st__fail(ST_ERR_UNSUPPORTED, "cpu backend: matmul: an operand's row stride "
                                            "exceeds the BLAS's 32-bit sizes");

    /* bf16 matrix-vector shapes whose rows of a and columns of b are
     * contiguous K-runs: one dot per output, no conversion */
    if (c.a.dt == ST_BF16 && (c.M == 1 || c.N == 1) && (c.a.cs == 2 || c.K == 1) &&
        (c.b.rs == 2 || c.K == 1)) {
        par_for(cb, nbatch * c.M * c.N, max64(1, GRAIN_CHEAP / c.K), mm_dots, &c);
        return ST_OK;
    }

    bool need_buf = !mm_direct(&c.a) || !mm_direct(&c.b);
    c.slice = need_buf ? slice_floats(c.M * c.K + c.K * c.N) : 0;
    bool big = nbatch == 1 || cb->n_threads == 1 || c.M * c.N * c.K >= MM_BIG;
    if (big) {
        /* BLAS alone with the pool's thread count, one product at a time */
        if (need_buf) {
            c.buf = scratch_get(cb, c.slice * sizeof(float), "matmul");
            if (!c.buf) return ST_ERR_NOMEM;
        }
        if (st_hw_blas_get_threads() != cb->n_threads) st_hw_blas_set_threads(cb->n_threads);
        for (int64_t bi = 0; bi < nbatch; bi++)
            mm_one(&c, bi, c.buf, true);
        return ST_OK;
    }
    /* many small products: single-threaded BLAS inside the pool's partition */
    if (need_buf) {
        c.buf = scratch_get(cb, c.slice * sizeof(float) * (size_t)cb->n_threads, "matmul");
        if (!c.buf) return ST_ERR_NOMEM;
    }
    st_hw_blas_set_threads(1);
    par_for(cb, nbatch, 1, mm_batches, &c);
    st_hw_blas_set_threads(cb->n_threads);
    return ST_OK;
}

/* ---- copy, fill, arange, rng -------------------------------------------------------- */

typedef struct copy_ctx {
    const st_cpu_kernels *k;
    st_dtype dt, st; /* dst and src dtypes */
} copy_ctx;

static float load_f(st_dtype t, const char *p) {
    switch (t) {
    case ST_F32:
        return *(const float *)p;
    case ST_BF16:
        return st_bf16_to_f32(*(const uint16_t *)p);
    default:
        return st_f16_to_f32(*(const uint16_t *)p);
    }
}

static void store_f(st_dtype t, char *p, float v) {
    switch (t) {
    case ST_F32:
        *(float *)p = v;
        break;
    case ST_BF16:
        *(uint16_t *)p = st_f32_to_bf16(v);
        break;
    default:
        *(uint16_t *)p = st_f32_to_f16(v);
        break;
    }
}

/* contiguous runs between the float dtypes through the kernel table */
static void convert_run(const st_cpu_kernels *k, st_dtype dt, st_dtype st, char *d, const char *s,
                        int64_t n) {
    if (st == ST_F32) {
        if (dt == ST_BF16)
            k->f32_to_bf16(n, (const float *)s, (uint16_t *)d);
        else
            k->f32_to_f16(n, (const float *)s, (uint16_t *)d);
        return;
    }
    if (dt == ST_F32) {
        if (st == ST_BF16)
            k->bf16_to_f32(n, (const uint16_t *)s, (float *)d);
        else
            k->f16_to_f32(n, (const uint16_t *)s, (float *)d);
        return;
    }
    float t[BLK]; /* bf16 <-> f16 through f32 */
    for (int64_t b = 0; b < n; b += BLK) {
        int64_t m = min64(BLK, n - b);
        if (st == ST_BF16)
            k->bf16_to_f32(m, (const uint16_t *)s + b, t);
        else
            k->f16_to_f32(m, (const uint16_t *)s + b, t);
        if (dt == ST_BF16)
            k->f32_to_bf16(m, t, (uint16_t *)d + b);
        else
            k->f32_to_f16(m, t, (uint16_t *)d + b);
    }
}

static void seg_copy(void *vctx, char *const *ptr, const int64_t *st, int64_t len, int64_t flat,
                     int ith) {
    (void)flat, (void)ith;
    const copy_ctx *c = vctx;
    char *d = ptr[0];
    const char *s = ptr[1];
    int64_t de = (int64_t)st_dtype_size(c->dt), se = (int64_t)st_dtype_size(c->st);
    if (c->dt == c->st) {
        if (st[0] == de && st[1] == de) {
            memcpy(d, s, (size_t)(len * de));
            return;
        }
        switch (de) {
        case 1:
            for (int64_t i = 0; i < len; i++)
                d[i * st[0]] = s[i * st[1]];
            break;
        case 2:
            for (int64_t i = 0; i < len; i++)
                *(uint16_t *)(d + i * st[0]) = *(const uint16_t *)(s + i * st[1]);
            break;
        default:
            for (int64_t i = 0; i < len; i++)
                *(uint32_t *)(d + i * st[0]) = *(const uint32_t *)(s + i * st[1]);
            break;
        }
        return;
    }
    if (st[0] == de && st[1] == se) {
        convert_run(c->k, c->dt, c->st, d, s, len);
        return;
    }
    for (int64_t i = 0; i < len; i++)
        store_f(c->dt, d + i * st[0], load_f(c->st, s + i * st[1]));
}

static bool is_float_dtype(st_dtype t) {
    return t == ST_F32 || t == ST_BF16 || t == ST_F16;
}

static st_status run_copy(st_cpu_backend *cb, const st_op_desc *d) {
    const st_view *src = &d->src[0], *dst = &d->dst[0];
    if (src->dtype != dst->dtype && !(is_float_dtype(src->dtype) && is_float_dtype(dst->dtype)))
        return st__fail(ST_ERR_UNSUPPORTED,
                        "cpu backend: copy from %s to %s is not supported "
                        "(only f32/bf16/f16 convert; other dtypes copy to themselves)",
                        st_dtype_name(src->dtype), st_dtype_name(dst->dtype));
    plan p;
    plan_init(&p, dst->ndim, dst->ne);
    plan_add(&p, dst->data, dst->ndim, dst->nb);
    plan_add(&p, src->data, src->ndim, src->nb);
    plan_coalesce(&p);
    copy_ctx c = {cb->k, dst->dtype, src->dtype};
    plan_run(cb, &p, GRAIN_CHEAP, seg_copy, &c);
    return ST_OK;
}

typedef struct fill_ctx {
    uint32_t bits; /* the value's bit pattern in the dst dtype */
    int64_t es;
    st_dtype dt;
    float alpha, beta; /* ARANGE */
    bool arange;
} fill_ctx;

static int32_t f_to_i32(double v) {
    if (v != v) return 0;
    if (v >= 2147483647.0) return INT32_MAX;
    if (v <= -2147483648.0) return INT32_MIN;
    return (int32_t)v; /* toward zero, as a C cast */
}

static void seg_fill(void *vctx, char *const *ptr, const int64_t *st, int64_t len, int64_t flat,
                     int ith) {
    (void)ith;
    const fill_ctx *c = vctx;
    char *d = ptr[0];
    if (c->arange) {
        for (int64_t i = 0; i < len; i++) {
            double v = (double)c->alpha + (double)(flat + i) * (double)c->beta;
            if (c->dt == ST_I32)
                *(int32_t *)(d + i * st[0]) = f_to_i32(v);
            else
                *(float *)(d + i * st[0]) = (float)v;
        }
        return;
    }
    switch (c->es) {
    case 1:
        if (st[0] == 1)
            memset(d, (int)(c->bits & 0xFF), (size_t)len);
        else
            for (int64_t i = 0; i < len; i++)
                d[i * st[0]] = (char)(c->bits & 0xFF);
        break;
    case 2:
        for (int64_t i = 0; i < len; i++)
            *(uint16_t *)(d + i * st[0]) = (uint16_t)c->bits;
        break;
    default:
        for (int64_t i = 0; i < len; i++)
            *(uint32_t *)(d + i * st[0]) = c->bits;
        break;
    }
}

static st_status run_fill(st_cpu_backend *cb, const st_op_desc *d) {
    const st_view *dst = &d->dst[0];
    fill_ctx c = {.es = (int64_t)st_dtype_size(dst->dtype),
                  .dt = dst->dtype,
                  .alpha = d->p.alpha,
                  .beta = d->p.beta,
                  .arange = d->op == ST_OP_ARANGE};
    float a = d->p.alpha;
    switch (dst->dtype) {
    case ST_F32:
        memcpy(&c.bits, &a, 4);
        break;
    case ST_BF16:
        c.bits = st_f32_to_bf16(a);
        break;
    case ST_F16:
        c.bits = st_f32_to_f16(a);
        break;
    case ST_I32: {
        int32_t v = f_to_i32(a);
        memcpy(&c.bits, &v, 4);
        break;
    }
    default: {
        int32_t v = f_to_i32(a);
        v = v < -128 ? -128 : (v > 127 ? 127 : v);
        c.bits = (uint32_t)(uint8_t)(int8_t)v;
        break;
    }
    }
    plan p;
    plan_init(&p, dst->ndim, dst->ne);
    plan_add(&p, dst->data, dst->ndim, dst->nb);
    plan_coalesce(&p);
    plan_run(cb, &p, GRAIN_CHEAP, seg_fill, &c);
    return ST_OK;
}

#define RNG_GOLDEN 0x9E3779B97F4A7C15ull

static inline uint64_t rng_fmix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rng_bits(uint64_t key, uint64_t ctr) {
    return rng_fmix(key + (ctr + 1) * RNG_GOLDEN);
}

typedef struct rng_ctx {
    uint64_t key, offset;
    float alpha, beta;
    bool normal;
} rng_ctx;

static void seg_rng(void *vctx, char *const *ptr, const int64_t *st, int64_t len, int64_t flat,
                    int ith) {
    (void)ith;
    const rng_ctx *c = vctx;
    char *d = ptr[0];
    int64_t s = st[0];
    uint64_t j0 = c->offset + (uint64_t)flat;
    if (!c->normal) {
        float span = c->beta - c->alpha;
        for (int64_t i = 0; i < len; i++) {
            float u = (float)(rng_bits(c->key, j0 + (uint64_t)i) >> 40) * 0x1p-24f;
            *(float *)(d + i * s) = c->alpha + span * u;
        }
        return;
    }
    for (int64_t i = 0; i < len;) {
        uint64_t j = j0 + (uint64_t)i, k2 = j & ~(uint64_t)1;
        double u1 = (double)((rng_bits(c->key, k2) >> 11) + 1) * 0x1p-53;
        double u2 = (double)(rng_bits(c->key, k2 + 1) >> 11) * 0x1p-53;
        double r = sqrt(-2.0 * log(u1)), t = 6.283185307179586 * u2;
        if (!(j & 1)) {
            *(float *)(d + i * s) = c->alpha + c->beta * (float)(r * cos(t));
            if (i + 1 < len) *(float *)(d + (i + 1) * s) = c->alpha + c->beta * (float)(r * sin(t));
            i += 2;
        } else {
            *(float *)(d + i * s) = c->alpha + c->beta * (float)(r * sin(t));
            i += 1;
        }
    }
}

static st_status run_rng(st_cpu_backend *cb, const st_op_desc *d) {
    const st_view *dst = &d->dst[0];
    ST_ASSERT(dst->dtype == ST_F32);
    rng_ctx c = {rng_fmix(d->p.seed + RNG_GOLDEN), d->p.offset, d->p.alpha, d->p.beta,
                 d->op == ST_OP_RAND_NORMAL};
    plan p;
    plan_init(&p, dst->ndim, dst->ne);
    plan_add(&p, dst->data, dst->ndim, dst->nb);
    plan_coalesce(&p);
    plan_run(cb, &p, GRAIN_COSTLY, seg_rng, &c);
    return ST_OK;
}

/* ---- the table -------------------------------------------------------------------- */

/* The fused transformer ops run in cpu_fused.c on this backend's pool,
 * kernels and scratch. */
static void *fused_scratch(void *owner, size_t bytes, const char *what) {
    return scratch_get(owner, bytes, what);
}
static st_status run_fused(st_cpu_backend *cb, const st_op_desc *d) {
    st__cpu_fused_env env = {cb->pool, cb->n_threads, cb->k, fused_scratch, cb};
    return st__cpu_fused_compute(&env, d);
}

static bool cpu_supports_op(const st_backend *be, st_op op, st_dtype dt) {
    (void)be;
    switch (op) {
    case ST_OP_MATMUL:
        return dt == ST_F32 || dt == ST_BF16;
    case ST_OP_COPY:
    case ST_OP_FILL:
        return (unsigned)dt < (unsigned)ST_DTYPE_COUNT_;
    case ST_OP_ARANGE:
        return dt == ST_F32 || dt == ST_I32;
    default:
        if (st__cpu_fused_handles(op)) return dt == ST_F32; /* cpu_fused.c */
        if (op > ST_OP_NONE && op < ST_OP_RESHAPE) return dt == ST_F32;
        return false; /* view ops and unknown numbers never reach a backend */
    }
}

static st_status cpu_compute(st_backend *be, const st_op_desc *d) {
    st_cpu_backend *cb = cpu_of(be);
    /* nothing to write: done (the embeddings still check their ids) */
    if (st_view_numel(&d->dst[0]) == 0 && d->op != ST_OP_EMBEDDING &&
        d->op != ST_OP_EMBEDDING_BACKWARD)
        return ST_OK;
    switch (d->op) {
    case ST_OP_NEG:
    case ST_OP_EXP:
    case ST_OP_LOG:
    case ST_OP_SQRT:
    case ST_OP_TANH:
    case ST_OP_GELU_TANH:
    case ST_OP_GELU_ERF:
    case ST_OP_SILU:
    case ST_OP_RELU:
    case ST_OP_SCALE:
    case ST_OP_ADD:
    case ST_OP_SUB:
    case ST_OP_MUL:
    case ST_OP_DIV:
    case ST_OP_AXPY:
    case ST_OP_UNARY_BACKWARD:
        return run_elementwise(cb, d);
    case ST_OP_SUM:
    case ST_OP_MEAN:
    case ST_OP_MAX:
        return run_reduce(cb, d);
    case ST_OP_MAX_BACKWARD:
        return run_max_backward(cb, d);
    case ST_OP_SOFTMAX:
    case ST_OP_LOG_SOFTMAX:
    case ST_OP_LAYERNORM:
    case ST_OP_RMSNORM:
    case ST_OP_SOFTMAX_BACKWARD:
    case ST_OP_LOG_SOFTMAX_BACKWARD:
    case ST_OP_LAYERNORM_BACKWARD:
    case ST_OP_RMSNORM_BACKWARD:
        if (st_view_numel(&d->src[0]) == 0) return ST_OK;
        return run_rows(cb, d);
    case ST_OP_EMBEDDING:
    case ST_OP_EMBEDDING_BACKWARD:
        return run_embedding(cb, d);
    case ST_OP_MATMUL:
        return run_matmul(cb, d);
    case ST_OP_COPY:
        return run_copy(cb, d);
    case ST_OP_FILL:
    case ST_OP_ARANGE:
        return run_fill(cb, d);
    case ST_OP_RAND_NORMAL:
    case ST_OP_RAND_UNIFORM:
        return run_rng(cb, d);
    case ST_OP_ATTENTION:
    case ST_OP_ATTENTION_BACKWARD:
    case ST_OP_CROSS_ENTROPY:
    case ST_OP_CROSS_ENTROPY_BACKWARD:
    case ST_OP_ROPE:
    case ST_OP_DROPOUT:
        return run_fused(cb, d);
    default:
        return st__fail(ST_ERR_UNSUPPORTED, "cpu backend: op %s is not a compute op",
                        st_op_name(d->op));
    }
}

static void *cpu_alloc(st_backend *be, size_t bytes) {
    (void)be;
    void *p = st_malloc(bytes);
    if (!p) st__fail(ST_ERR_NOMEM, "cpu backend: out of memory allocating %zu bytes", bytes);
    return p;
}

static void cpu_dealloc(st_backend *be, void *ptr) {
    (void)be;
    st_free(ptr);
}

static void cpu_free(st_backend *be) {
    st_cpu_backend *cb = cpu_of(be);
    st_pool_free(cb->pool);
    st_free(cb->scratch);
    st_free(cb);
    st_free(be);
}

static const st_backend_iface g_cpu_iface = {
    .abi_version = ST_BACKEND_ABI_VERSION,
    .name = "cpu",
    .free = cpu_free,
    .supports_op = cpu_supports_op,
    .compute = cpu_compute,
    .alloc = cpu_alloc,
    .dealloc = cpu_dealloc,
};

/* ---- creation and queries ---------------------------------------------------------- */

st_backend_cpu_params st_backend_cpu_default_params(void) {
    st_backend_cpu_params p = {.n_threads = 0, .simd_level = -1};
    return p;
}

st_status st_backend_cpu_new(const st_backend_cpu_params *params, st_backend **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "cpu backend: NULL output pointer");
    *out = NULL;
    st_backend_cpu_params p = params ? *params : st_backend_cpu_default_params();
    st_hw_info info;
    ST_TRY(st_hw_query(&info));
    st_simd_level level;
    if (p.simd_level >= 0) {
        if (p.simd_level >= ST_SIMD_COUNT_)
            return st__fail(ST_ERR_INVALID_ARG,
                            "cpu backend: simd_level %d is not a level "
                            "(0..%d, or -1 to detect)",
                            p.simd_level, ST_SIMD_COUNT_ - 1);
        level = (st_simd_level)p.simd_level;
        if (!st_hw_simd_supported(&info, level))
            return st__fail(ST_ERR_UNSUPPORTED,
                            "cpu backend: simd_level %s: this CPU (%s) "
                            "cannot run it",
                            st_hw_simd_level_name(level), info.cpu_model);
    } else {
        ST_TRY(st_hw_simd_from_env(&info, &level));
    }
    const st_cpu_kernels *k = st__cpu_kernels(level);
    if (!k)
        return st__fail(ST_ERR_UNSUPPORTED,
                        "cpu backend: simd_level %s is not compiled into "
                        "this build",
                        st_hw_simd_level_name(level));

    st_backend *be = st_calloc(1, sizeof *be);
    st_cpu_backend *cb = st_calloc(1, sizeof *cb);
    if (!be || !cb) {
        st_free(be);
        st_free(cb);
        return st__fail(ST_ERR_NOMEM, "cpu backend: out of memory");
    }
    st_status s = st_pool_new(p.n_threads, &cb->pool);
    if (s != ST_OK) {
        st_free(be);
        st_free(cb);
        return s;
    }
    cb->n_threads = st_pool_size(cb->pool);
    cb->level = level;
    cb->k = k;
    be->iface = &g_cpu_iface;
    be->impl = cb;
    st_hw_blas_set_threads(cb->n_threads);
    st_log_msg(ST_LOG_DEBUG, "cpu backend: %d threads, %s kernels", cb->n_threads, k->name);
    *out = be;
    return ST_OK;
}

st_pool *st_backend_cpu_pool(st_backend *be) {
    return be && be->iface == &g_cpu_iface ? cpu_of(be)->pool : NULL;
}

int st_backend_cpu_simd_level(const st_backend *be) {
    return be && be->iface == &g_cpu_iface ? (int)cpu_of_c(be)->level : -1;
}

int st_backend_n_threads(const st_backend *be) {
    return be && be->iface == &g_cpu_iface ? cpu_of_c(be)->n_threads : -1;
}
