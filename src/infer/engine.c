/*
 * engine.c — the inference engine (strata/infer.h): one forward pass over a
 * batch of sequences of different lengths, prefill and decode mixed, with
 * K and V kept in the paged cache (kvcache.c).
 *
 * A call gathers every sequence's new tokens into one block of N rows
 * (N <= max_batch_tokens; longer batches run in chunks, a sequence's later
 * chunk seeing the K/V its earlier chunk stored). Per layer:
 *   a = norm(x)                                   (N, E)   backend row op
 *   q, k, v = a Wq^T, a Wk^T, a Wv^T (+ biases)   (N, H*D), (N, Hkv*D)
 *                    one st_wmatrix_matmul_multi over all N rows at once
 *                    (the three matrices share one pool run; so do the
 *                    MLP's gate and up; every product names the one after
 *                    it, whose first reads the threads then prefetch while
 *                    they wait): a prefill is
 *                    a matrix-matrix product, a decode batch of n sequences a
 *                    product with n rows, one token a matrix-vector product
 *   RoPE (llama) on q, k at each row's absolute position (table from
 *   engine creation), then k, v rows stored in the row's sequence's block
 *   att[r, h] = softmax(q[r,h] . K[seq(r), 0..pos(r)] / sqrt(D)) V   causal,
 *                    grouped-query; tasks of (row, run of heads) handed out
 *                    from an atomic counter over the pool's threads, rows
 *                    with the most keys first, runs as long as still give
 *                    every thread four tasks (a run reads each cached row
 *                    once); each task runs the kernel of the backend's SIMD
 *                    level (infer_kernels.h: scalar, AVX2, AVX-512)
 *   x += att Wo^T (+ bo); a = norm(x); x += mlp(a)   SwiGLU or GELU(tanh)
 * then the final norm and the lm head only for the rows whose outputs are
 * asked for (the last row of a sequence, or all its rows for logits_all).
 *
 * Weights: where the context's kernels read packed weights
 * (st_wmatrix_packs), the engine reads its own copies of the layers' and the
 * head's matrix structs (e->w, in e->pk) whose q8_0 / q4_0 matrices carry a
 * packed form in e->pk's slabs; everything else (norms, embeddings, config)
 * comes from lm.
 *
 * Memory: every scratch buffer is sized at creation for max_batch_tokens
 * rows; the lm-head gather buffers grow with the largest batch seen. A
 * steady-state decode loop allocates nothing here.
 *
 * Threads: the engine is driven by one thread; products and row ops use
 * the context's pool (st_wmatrix_matmul, st_backend_compute), attention
 * runs on the pool with st_pool_run. The pool is never entered twice.
 */
#include "infer/infer_impl.h"
#include "infer/infer_kernels.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* multiply-adds below which attention runs on the calling thread */
#define ATT_INLINE_FLOPS 32768

struct st_engine {
    st_ctx *ctx;
    st_backend *be;
    st_pool *pool;
    int nth;
    const st_lm *lm;
    /* the matrices read: lm's, or with packed q8_0 copies in pk's slabs
     * (pk: a model holding only its layers' and head's matrix structs) */
    const st_lm *w;
    st_lm *pk;
    st_kv_cache *kv;
    int max_T;
    int64_t E, H, Hkv, D, qd, kvd, F, V, n_ctx;
    /* scratch, max_T rows each */
    float *x, *a, *q, *k, *v, *att, *f1, *f2;
    float *rope_cos, *rope_sin; /* [n_ctx, D/2] (llama) */
    float *scores;              /* [nth, att_heads * n_ctx] */
    int64_t att_heads;          /* the most heads one attention task takes */
    st__att_fn att_fn;          /* attention kernel of the backend's SIMD level */
    st_kv_seq **row_seq;        /* [max_T] */
    int64_t *row_pos;           /* [max_T] */
    int32_t *row_order;         /* [max_T]: rows by keys attended, most first */
    int32_t *row_tok;           /* [max_T] */
    /* lm-head gather for last-token logits: [cap_out, E] and [cap_out, V] */
    float *h_out, *l_out;
    int64_t cap_out;
    /* chunk bookkeeping: [cap_seg] */
    int64_t *done;
    int cap_seg;
};

st_engine_params st_engine_default_params(void) {
    st_engine_params p = {.kv = st_kv_default_params(), .max_batch_tokens = 512};
    const char *pack = getenv("STRATA_PACK"); /* "0": no packed copies (A/B, memory) */
    p.no_pack = pack && strcmp(pack, "0") == 0;
    return p;
}

st_kv_cache *st_engine_kv(st_engine *e) { return e ? e->kv : NULL; }
const st_lm *st_engine_lm(const st_engine *e) { return e ? e->lm : NULL; }

void st_engine_free(st_engine *e) {
    if (!e) return;
    st_kv_cache_free(e->kv);
    st_lm_free(e->pk);
    float *bufs[] = {e->x, e->a, e->q, e->k, e->v, e->att, e->f1, e->f2,
                     e->rope_cos, e->rope_sin, e->scores, e->h_out, e->l_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) st_free(bufs[i]);
    st_free(e->row_seq);
    st_free(e->row_pos);
    st_free(e->row_order);
    st_free(e->row_tok);
    st_free(e->done);
    st_free(e);
}

static float *alloc_f(int64_t rows, int64_t cols, bool *ok) {
    size_t n;
    if (st_mul_overflow_size((size_t)rows, (size_t)cols, &n) ||
        st_mul_overflow_size(n, sizeof(float), &n)) {
        *ok = false;
        return NULL;
    }
    float *p = st_malloc(n);
    if (!p) *ok = false;
    return p;
}

/* Packed copies of lm's q8_0 / q4_0 matrices that have none (strata/quant.h), in
 * the slabs of a model of e's own that holds only matrix structs. */
static st_status pack_weights(st_engine *e) {
    const st_lm *lm = e->lm;
    if (!st_lm_needs_pack(lm)) return ST_OK;
    ST_TRY(st_lm_new_empty(&lm->cfg, &e->pk));
    memcpy(e->pk->layers, lm->layers, (size_t)lm->cfg.n_layer * sizeof *lm->layers);
    e->pk->lm_head = lm->lm_head;
    ST_TRY(st_lm_pack(e->pk));
    e->w = e->pk;
    return ST_OK;
}

st_status st_engine_new(st_ctx *ctx, const st_lm *lm, const st_engine_params *p,
                        st_engine **out) {
    if (!ctx || !lm || !out) return st__fail(ST_ERR_INVALID_ARG, "st_engine_new: NULL argument");
    *out = NULL;
    st_engine_params d = p ? *p : st_engine_default_params();
    if (d.max_batch_tokens <= 0 || d.max_batch_tokens > (1 << 20))
        return st__fail(ST_ERR_INVALID_ARG, "st_engine_new: max_batch_tokens %d out of range",
                        d.max_batch_tokens);
    ST_TRY(st_lm_validate(lm, NULL));
    const st_model_config *c = &lm->cfg;
    st_engine *e = st_calloc(1, sizeof *e);
    if (!e) return ST_ERR_NOMEM;
    e->ctx = ctx;
    e->be = st_ctx_backend(ctx);
    e->pool = st_backend_cpu_pool(e->be);
    e->nth = e->pool ? st_pool_size(e->pool) : 1;
    e->lm = lm;
    e->w = lm;
    e->max_T = d.max_batch_tokens;
    e->E = c->n_embd;
    e->H = c->n_head;
    e->Hkv = c->n_kv_head;
    e->D = c->n_embd / c->n_head;
    e->qd = e->H * e->D;
    e->kvd = e->Hkv * e->D;
    e->F = c->n_ff;
    e->V = c->vocab_size;
    e->n_ctx = c->n_ctx;
    st_status s = st_kv_cache_new(lm, &d.kv, &e->kv);
    if (!s && !d.no_pack && st_wmatrix_packs(ctx)) s = pack_weights(e);
    if (s) {
        st_engine_free(e);
        return s;
    }
    bool ok = true;
    const int64_t T = e->max_T;
    e->x = alloc_f(T, e->E, &ok);
    e->a = alloc_f(T, e->E, &ok);
    e->q = alloc_f(T, e->qd, &ok);
    e->k = alloc_f(T, e->kvd, &ok);
    e->v = alloc_f(T, e->kvd, &ok);
    e->att = alloc_f(T, e->qd, &ok);
    e->f1 = alloc_f(T, e->F, &ok);
    e->f2 = alloc_f(T, e->F, &ok);
    e->att_heads = e->H < ST_ATT_MAX_HEADS ? e->H : ST_ATT_MAX_HEADS;
    e->scores = alloc_f((int64_t)e->nth * e->att_heads, e->n_ctx, &ok);
    e->row_seq = st_malloc((size_t)T * sizeof *e->row_seq);
    e->row_pos = st_malloc((size_t)T * sizeof *e->row_pos);
    e->row_tok = st_malloc((size_t)T * sizeof *e->row_tok);
    e->row_order = st_malloc((size_t)T * sizeof *e->row_order);
    ok = ok && e->row_seq && e->row_pos && e->row_tok && e->row_order;
    e->att_fn = st__att_kernel(e->be ? st_backend_cpu_simd_level(e->be) : -1);
    if (ok && c->arch == ST_ARCH_LLAMA) {
        const int64_t half = e->D / 2;
        e->rope_cos = alloc_f(e->n_ctx, half, &ok);
        e->rope_sin = alloc_f(e->n_ctx, half, &ok);
        /* angles in double, as the training model's RoPE (cpu_fused.c) */
        for (int64_t t = 0; ok && t < e->n_ctx; t++)
            for (int64_t i = 0; i < half; i++) {
                double ang = (double)t * pow((double)c->rope_theta,
                                             -2.0 * (double)i / (double)e->D);
                e->rope_cos[t * half + i] = (float)cos(ang);
                e->rope_sin[t * half + i] = (float)sin(ang);
            }
    }
    if (!ok) {
        st_engine_free(e);
        return st__fail(ST_ERR_NOMEM, "st_engine_new: no memory for %d-token scratch buffers",
                        e->max_T);
    }
    *out = e;
    return ST_OK;
}

/* ---- row ops through the backend's kernels ------------------------------------------ */

static st_view view2(const float *p, int64_t rows, int64_t cols) {
    st_view v;
    memset(&v, 0, sizeof v);
    v.data = (void *)p;
    v.dtype = ST_F32;
    v.ndim = 2;
    v.ne[0] = rows;
    v.ne[1] = cols;
    v.nb[1] = 4;
    v.nb[0] = 4 * cols;
    return v;
}

static st_view view1(const float *p, int64_t n) {
    st_view v;
    memset(&v, 0, sizeof v);
    v.data = (void *)p;
    v.dtype = ST_F32;
    v.ndim = 1;
    v.ne[0] = n;
    v.nb[0] = 4;
    return v;
}

/* y[N, n] = norm(x) with the model's norm kind (LayerNorm for gpt2, RMSNorm for llama) */
static st_status norm_rows(st_engine *e, const float *x, int64_t N, const float *g,
                           const float *b, float *y) {
    st_op_desc d;
    memset(&d, 0, sizeof d);
    const bool ln = e->lm->cfg.arch == ST_ARCH_GPT2;
    d.op = ln ? ST_OP_LAYERNORM : ST_OP_RMSNORM;
    d.p.eps = e->lm->cfg.norm_eps;
    d.n_src = ln ? 3 : 2;
    d.n_dst = 1;
    d.src[0] = view2(x, N, e->E);
    d.src[1] = view1(g, e->E);
    if (ln) d.src[2] = view1(b, e->E);
    d.dst[0] = view2(y, N, e->E);
    return st_backend_compute(e->be, &d);
}

/* y = op(x) (unary) or y = x op b (binary) over n floats */
static st_status elementwise(st_engine *e, st_op op, const float *x, const float *b, int64_t n,
                             float *y) {
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = op;
    d.n_src = b ? 2 : 1;
    d.n_dst = 1;
    d.src[0] = view1(x, n);
    if (b) d.src[1] = view1(b, n);
    d.dst[0] = view1(y, n);
    return st_backend_compute(e->be, &d);
}

static void add_bias(float *y, const float *b, int64_t N, int64_t n) {
    if (!b) return;
    for (int64_t r = 0; r < N; r++) {
        float *yr = y + r * n;
        for (int64_t i = 0; i < n; i++) yr[i] += b[i];
    }
}

static void rope_rows(const st_engine *e, float *x, int64_t N, int64_t n_heads) {
    const int64_t D = e->D, half = D / 2;
    const bool inter = e->lm->rope == ST_ROPE_INTERLEAVED;
    for (int64_t r = 0; r < N; r++) {
        const float *cs = e->rope_cos + e->row_pos[r] * half;
        const float *sn = e->rope_sin + e->row_pos[r] * half;
        for (int64_t h = 0; h < n_heads; h++) {
            float *p = x + r * n_heads * D + h * D;
            if (inter) {
                for (int64_t i = 0; i < half; i++) {
                    float a = p[2 * i], b = p[2 * i + 1];
                    p[2 * i] = a * cs[i] - b * sn[i];
                    p[2 * i + 1] = b * cs[i] + a * sn[i];
                }
            } else {
                for (int64_t i = 0; i < half; i++) {
                    float a = p[i], b = p[i + half];
                    p[i] = a * cs[i] - b * sn[i];
                    p[i + half] = b * cs[i] + a * sn[i];
                }
            }
        }
    }
}

/* ---- attention over the paged cache ---------------------------------------------------- */

typedef struct att_job {
    st_engine *e;
    int layer;
    int64_t hpt;     /* heads per task */
    int64_t runs;    /* tasks per row: ceil(H / hpt) */
    int64_t n_tasks; /* N * runs */
    atomic_llong next;
} att_job;

/* A task's cached K and V rows come from memory: a decode step streams the
 * weights (far more bytes than the cache holds) between one layer's
 * attention and the next. The kernels walk them key by key, one miss after
 * another; asking for all of them first (up to ATT_PF_KEYS keys) lets the
 * misses overlap. On the 2-core VM, stories110M-shaped q8_0 decode around
 * position 32: attention 196 -> 164 us a token (medians of 5 runs). */
#define ATT_PF_KEYS 256

static void prefetch_kv(const st__att_args *a, int64_t span) {
    const int64_t n = a->n_keys < ATT_PF_KEYS ? a->n_keys : ATT_PF_KEYS;
    for (int64_t s = 0; s < n; s++) {
        const int64_t off = (int64_t)a->blocks[s / a->bt] * a->bt * a->row + (s % a->bt) * a->row;
        for (int64_t i = 0; i < span; i += 16) {
            __builtin_prefetch(a->k + off + i, 0, 3);
            __builtin_prefetch(a->v + off + i, 0, 3);
        }
    }
}

static void att_worker(void *arg, int ith, int nth) {
    (void)nth;
    att_job *j = arg;
    st_engine *e = j->e;
    const int64_t D = e->D, H = e->H, group = e->H / e->Hkv;
    st__att_args a = {.D = D,
                      .group = group,
                      .bt = st_kv_block_tokens(e->kv),
                      .row = e->kvd,
                      .scale = 1.0f / sqrtf((float)D),
                      .scores = e->scores + (size_t)ith * (size_t)e->att_heads * (size_t)e->n_ctx};
    const float *k0 = st__kv_k(e->kv, j->layer, 0), *v0 = st__kv_v(e->kv, j->layer, 0);
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (t >= j->n_tasks) break;
        /* rows with the most keys first, so the last tasks handed out are short */
        const int64_t r = e->row_order[t / j->runs], h0 = (t % j->runs) * j->hpt;
        a.n_heads = H - h0 < j->hpt ? H - h0 : j->hpt;
        a.first = h0 % group;
        a.n_keys = e->row_pos[r] + 1; /* causal: keys 0..pos */
        a.q = e->q + r * e->qd + h0 * D;
        a.k = k0 + (h0 / group) * D;
        a.v = v0 + (h0 / group) * D;
        a.blocks = e->row_seq[r]->blocks;
        a.out = e->att + r * e->qd + h0 * D;
        /* floats of each row the task's heads read */
        prefetch_kv(&a, ((h0 + a.n_heads - 1) / group - h0 / group) * D + D);
        e->att_fn(&a);
    }
}

static void store_kv(st_engine *e, int layer, int64_t N) {
    const int bt = st_kv_block_tokens(e->kv);
    const size_t bytes = (size_t)e->kvd * sizeof(float);
    for (int64_t r = 0; r < N; r++) {
        const st_kv_seq *seq = e->row_seq[r];
        const int64_t pos = e->row_pos[r];
        const int32_t b = seq->blocks[pos / bt];
        const int64_t off = (pos % bt) * e->kvd;
        memcpy(st__kv_k(e->kv, layer, b) + off, e->k + r * e->kvd, bytes);
        memcpy(st__kv_v(e->kv, layer, b) + off, e->v + r * e->kvd, bytes);
    }
}

/* The order attention hands out rows: most keys (largest position) first,
 * so that with mixed lengths the tasks left at the end are the short ones
 * and the pool's threads finish together. Once per chunk, not per layer. */
static int cmp_row_pos_desc(const void *x, const void *y, void *ctx) {
    const int64_t *pos = ctx;
    int64_t a = pos[*(const int32_t *)x], b = pos[*(const int32_t *)y];
    return a > b ? -1 : a < b;
}

static void order_rows(st_engine *e, int64_t N) {
    for (int64_t r = 0; r < N; r++)
        e->row_order[r] = (int32_t)r;
    if (N > 1) qsort_r(e->row_order, (size_t)N, sizeof *e->row_order, cmp_row_pos_desc, e->row_pos);
}

/* ---- one chunk of rows -------------------------------------------------------------- */

static st_status mm(st_engine *e, const st_wmatrix *w, const float *x, int64_t N, float *y) {
    return st_wmatrix_matmul(e->ctx, w, x, N, y);
}

static st_status run_layers(st_engine *e, int64_t N) {
    const st_lm *lm = e->lm;
    const bool gpt2 = lm->cfg.arch == ST_ARCH_GPT2;
    const int64_t E = e->E, F = e->F;
    /* embeddings */
    for (int64_t r = 0; r < N; r++) {
        float *xr = e->x + r * E;
        ST_TRY(st_wmatrix_get_row(&lm->tok_embd, e->row_tok[r], xr));
        if (gpt2) {
            const float *pe = lm->pos_embd + e->row_pos[r] * E;
            for (int64_t i = 0; i < E; i++) xr[i] += pe[i];
        }
    }
    int64_t n_keys = 0; /* keys all rows attend to: the attention's work */
    for (int64_t r = 0; r < N; r++) n_keys += e->row_pos[r] + 1;
    order_rows(e, N);
    /* attention tasks: a row's heads in as few runs as keep every thread
     * busy (four tasks per thread at least), so a batch reads each cached
     * row once per task and one long sequence still spreads its heads */
    int64_t runs = (4 * (int64_t)e->nth + N - 1) / N;
    if (runs > e->H) runs = e->H;
    if (runs < (e->H + e->att_heads - 1) / e->att_heads)
        runs = (e->H + e->att_heads - 1) / e->att_heads;
    const int64_t hpt = (e->H + runs - 1) / runs;
    runs = (e->H + hpt - 1) / hpt;
    for (int l = 0; l < lm->cfg.n_layer; l++) {
        const st_lm_layer *L = &e->w->layers[l];
        /* attention */
        ST_TRY(norm_rows(e, e->x, N, L->ln1_w, L->ln1_b, e->a));
        {
            const st_wmatrix *w[3] = {&L->wq, &L->wk, &L->wv}, *next[1] = {&L->wo};
            float *y[3] = {e->q, e->k, e->v};
            ST_TRY(st_wmatrix_matmul_multi(e->ctx, 3, w, e->a, N, y, 1, next));
        }
        add_bias(e->q, L->bq, N, e->qd);
        add_bias(e->k, L->bk, N, e->kvd);
        add_bias(e->v, L->bv, N, e->kvd);
        if (!gpt2) {
            rope_rows(e, e->q, N, e->H);
            rope_rows(e, e->k, N, e->Hkv);
        }
        store_kv(e, l, N);
        att_job j = {.e = e, .layer = l, .hpt = hpt, .runs = runs, .n_tasks = N * runs};
        atomic_init(&j.next, 0);
        /* waking the pool costs more than a few thousand multiply-adds */
        if (e->pool && n_keys * e->H * e->D >= ATT_INLINE_FLOPS) st_pool_run(e->pool, att_worker, &j);
        else att_worker(&j, 0, 1);
        {
            const st_wmatrix *w[1] = {&L->wo}, *next[2] = {gpt2 ? &L->w_up : &L->w_gate, &L->w_up};
            float *y[1] = {e->a};
            ST_TRY(st_wmatrix_matmul_multi(e->ctx, 1, w, e->att, N, y, gpt2 ? 1 : 2, next));
        }
        add_bias(e->a, L->bo, N, E);
        ST_TRY(elementwise(e, ST_OP_ADD, e->x, e->a, N * E, e->x));
        /* MLP */
        ST_TRY(norm_rows(e, e->x, N, L->ln2_w, L->ln2_b, e->a));
        if (gpt2) {
            const st_wmatrix *w[1] = {&L->w_up}, *next[1] = {&L->w_down};
            float *y[1] = {e->f1};
            ST_TRY(st_wmatrix_matmul_multi(e->ctx, 1, w, e->a, N, y, 1, next));
            add_bias(e->f1, L->b_up, N, F);
            ST_TRY(elementwise(e, ST_OP_GELU_TANH, e->f1, NULL, N * F, e->f1));
        } else {
            const st_wmatrix *w[2] = {&L->w_gate, &L->w_up}, *next[1] = {&L->w_down};
            float *y[2] = {e->f1, e->f2};
            ST_TRY(st_wmatrix_matmul_multi(e->ctx, 2, w, e->a, N, y, 1, next));
            ST_TRY(elementwise(e, ST_OP_SILU, e->f1, NULL, N * F, e->f1));
            ST_TRY(elementwise(e, ST_OP_MUL, e->f1, e->f2, N * F, e->f1));
        }
        {
            /* next: the following layer's Q, K, V, or after the last the head */
            const st_lm_layer *Ln = l + 1 < lm->cfg.n_layer ? &e->w->layers[l + 1] : NULL;
            const st_wmatrix *w[1] = {&L->w_down},
                             *next[3] = {Ln ? &Ln->wq : &e->w->lm_head, Ln ? &Ln->wk : NULL,
                                         Ln ? &Ln->wv : NULL};
            float *y[1] = {e->a};
            ST_TRY(st_wmatrix_matmul_multi(e->ctx, 1, w, e->f1, N, y, Ln ? 3 : 1, next));
        }
        add_bias(e->a, L->b_down, N, E);
        ST_TRY(elementwise(e, ST_OP_ADD, e->x, e->a, N * E, e->x));
    }
    /* final norm of every row into a (cheap next to the head) */
    return norm_rows(e, e->x, N, lm->lnf_w, lm->lnf_b, e->a);
}

typedef struct seg {
    int seq;        /* index into the caller's seqs */
    int64_t start;  /* first token of the sequence's new tokens in this chunk */
    int64_t count;
    int64_t row0;   /* first row in the chunk */
} seg;

static st_status grow_out(st_engine *e, int64_t n) {
    if (n <= e->cap_out) return ST_OK;
    int64_t cap = e->cap_out ? e->cap_out : 4;
    while (cap < n) cap *= 2;
    bool ok = true;
    float *h = alloc_f(cap, e->E, &ok), *lg = alloc_f(cap, e->V, &ok);
    if (!ok) {
        st_free(h);
        st_free(lg);
        return st__fail(ST_ERR_NOMEM, "engine: no memory for %lld rows of logits",
                        (long long)cap);
    }
    st_free(e->h_out);
    st_free(e->l_out);
    e->h_out = h;
    e->l_out = lg;
    e->cap_out = cap;
    return ST_OK;
}

static st_status run_chunk(st_engine *e, st_engine_seq *seqs, const seg *segs, int n_segs,
                           int64_t N) {
    const int64_t E = e->E, V = e->V;
    for (int i = 0; i < n_segs; i++) {
        const st_engine_seq *q = &seqs[segs[i].seq];
        for (int64_t t = 0; t < segs[i].count; t++) {
            int64_t r = segs[i].row0 + t;
            e->row_seq[r] = q->seq;
            e->row_pos[r] = q->seq->n_tokens + t;
            e->row_tok[r] = q->tokens[segs[i].start + t];
        }
    }
    ST_TRY(run_layers(e, N));
    /* outputs */
    int64_t n_last = 0;
    for (int i = 0; i < n_segs; i++) {
        st_engine_seq *q = &seqs[segs[i].seq];
        const float *h = e->a + segs[i].row0 * E;
        if (q->logits_all)
            ST_TRY(mm(e, &e->w->lm_head, h, segs[i].count, q->logits_all + segs[i].start * V));
        if (q->hidden_sum)
            for (int64_t t = 0; t < segs[i].count; t++)
                for (int64_t c = 0; c < E; c++) q->hidden_sum[c] += h[t * E + c];
        if (q->logits && segs[i].start + segs[i].count == q->n_tokens) n_last++;
    }
    if (n_last == 1) {
        for (int i = 0; i < n_segs; i++) {
            st_engine_seq *q = &seqs[segs[i].seq];
            if (q->logits && segs[i].start + segs[i].count == q->n_tokens)
                ST_TRY(mm(e, &e->w->lm_head, e->a + (segs[i].row0 + segs[i].count - 1) * E, 1,
                          q->logits));
        }
    } else if (n_last > 1) {
        ST_TRY(grow_out(e, n_last));
        int64_t m = 0;
        for (int i = 0; i < n_segs; i++) {
            st_engine_seq *q = &seqs[segs[i].seq];
            if (q->logits && segs[i].start + segs[i].count == q->n_tokens)
                memcpy(e->h_out + m++ * E, e->a + (segs[i].row0 + segs[i].count - 1) * E,
                       (size_t)E * sizeof(float));
        }
        /* callers that give consecutive rows of one array (the server
         * does) get the head's output in place: no copy of n_last * V */
        float *first = NULL;
        bool direct = true;
        m = 0;
        for (int i = 0; i < n_segs && direct; i++) {
            st_engine_seq *q = &seqs[segs[i].seq];
            if (!(q->logits && segs[i].start + segs[i].count == q->n_tokens)) continue;
            if (!first) first = q->logits;
            direct = q->logits == first + m++ * V;
        }
        ST_TRY(mm(e, &e->w->lm_head, e->h_out, n_last, direct ? first : e->l_out));
        m = 0;
        for (int i = 0; i < n_segs && !direct; i++) {
            st_engine_seq *q = &seqs[segs[i].seq];
            if (q->logits && segs[i].start + segs[i].count == q->n_tokens)
                memcpy(q->logits, e->l_out + m++ * V, (size_t)V * sizeof(float));
        }
    }
    for (int i = 0; i < n_segs; i++) seqs[segs[i].seq].seq->n_tokens += segs[i].count;
    return ST_OK;
}

st_status st_engine_forward(st_engine *e, st_engine_seq *seqs, int n_seqs) {
    if (!e || n_seqs < 0 || (n_seqs > 0 && !seqs))
        return st__fail(ST_ERR_INVALID_ARG, "st_engine_forward: bad arguments");
    int64_t need = 0;
    for (int i = 0; i < n_seqs; i++) {
        const st_engine_seq *q = &seqs[i];
        if (!q->seq || q->n_tokens < 0 || (q->n_tokens > 0 && !q->tokens))
            return st__fail(ST_ERR_INVALID_ARG, "st_engine_forward: sequence %d is malformed", i);
        for (int j = 0; j < i; j++)
            if (seqs[j].seq == q->seq)
                return st__fail(ST_ERR_INVALID_ARG,
                                "st_engine_forward: sequences %d and %d share one st_kv_seq", j,
                                i);
        if (q->seq->n_tokens + q->n_tokens > e->n_ctx)
            return st__fail(ST_ERR_BOUNDS,
                            "st_engine_forward: sequence %d would reach %lld tokens, past the "
                            "model's context of %lld", i,
                            (long long)(q->seq->n_tokens + q->n_tokens), (long long)e->n_ctx);
        for (int t = 0; t < q->n_tokens; t++)
            if (q->tokens[t] < 0 || q->tokens[t] >= e->V)
                return st__fail(ST_ERR_BOUNDS,
                                "st_engine_forward: sequence %d token %d is id %d, outside the "
                                "vocabulary [0, %lld)", i, t, q->tokens[t], (long long)e->V);
        need += st_kv_seq_blocks_needed(e->kv, q->seq, q->n_tokens);
    }
    if (need > st_kv_n_free(e->kv))
        return st__fail(ST_ERR_NOMEM,
                        "st_engine_forward: the batch needs %lld KV blocks, %lld of %lld are free",
                        (long long)need, (long long)st_kv_n_free(e->kv),
                        (long long)st_kv_n_blocks(e->kv));
    if (n_seqs > e->cap_seg) {
        int64_t *d = st_realloc(e->done, (size_t)n_seqs * sizeof *d);
        if (!d) return st__fail(ST_ERR_NOMEM, "st_engine_forward: no memory");
        e->done = d;
        e->cap_seg = n_seqs;
    }
    for (int i = 0; i < n_seqs; i++) {
        ST_TRY(st_kv_seq_reserve(e->kv, seqs[i].seq, seqs[i].n_tokens));
        e->done[i] = 0;
        if (seqs[i].hidden_sum) memset(seqs[i].hidden_sum, 0, (size_t)e->E * sizeof(float));
    }
    /* chunks of at most max_T rows; segs live on the stack in groups */
    enum { SEG_MAX = 256 };
    seg segs[SEG_MAX];
    int i = 0;
    while (i < n_seqs) {
        int n_segs = 0;
        int64_t N = 0;
        int j = i;
        while (j < n_seqs && N < e->max_T && n_segs < SEG_MAX) {
            int64_t left = seqs[j].n_tokens - e->done[j];
            if (left == 0) {
                j++;
                continue;
            }
            int64_t take = left < e->max_T - N ? left : e->max_T - N;
            segs[n_segs++] = (seg){.seq = j, .start = e->done[j], .count = take, .row0 = N};
            N += take;
            e->done[j] += take;
            if (e->done[j] == seqs[j].n_tokens) j++;
        }
        if (N > 0) ST_TRY(run_chunk(e, seqs, segs, n_segs, N));
        while (i < n_seqs && e->done[i] == seqs[i].n_tokens) i++;
    }
    return ST_OK;
}
