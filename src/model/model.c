/*
 * model.c — what gpt2 and llama share: the model object and its parameter
 * table, the forward entry point with the lm head, the loss, dropout seeds,
 * zeroing grads and global gradient-norm clipping.
 *
 * Data: st_model (model_impl.h) holds a table of (HF name, persistent
 * tensor) in a fixed order — the order the architecture file adds them,
 * which is Hugging Face's state_dict order — plus per-layer pointers into
 * it. A tied lm head is not a table entry: the head reads the token
 * embedding, so tied weights appear once.
 *
 * Forward: ids [B,T] -> the architecture's blocks -> final hidden h [B*T, C]
 * -> logits = h @ W^T with W [V, C] (wte / embed_tokens when tied, else
 * lm_head.weight) through a transposed view (BLAS's trans flag, no copy)
 * -> [B, T, V]. Every per-step tensor is a step tensor in the context's
 * arena; the forward allocates nothing on the heap.
 *
 * Ownership: st_model_new creates the parameters (persistent tensors) and
 * st_model_free frees them with their grads. The model borrows its context,
 * which must outlive it. Threads: one thread drives a model; the gradient
 * norm is split over the context's pool (deterministic for a given thread
 * count: fixed partition, partial sums added in thread order).
 */
#include "model/model_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

st_status st__model_add_param(st_model *m, st_tensor **out, int ndim, const int64_t *shape,
                              float std, float fill, uint64_t seed, const char *fmt, ...) {
    ST_ASSERT(m->n_tensors < m->n_params_cap);
    st__param *p = &m->params[m->n_tensors];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    ST_TRY(st_tensor_new(m->ctx, ST_F32, ndim, shape, &p->t));
    m->n_tensors++; /* owned from here on: st_model_free frees it on failure below */
    st_tensor_set_name(p->t, p->name);
    if (std > 0.0f)
        ST_TRY(st_randn_(p->t, st__mix64(seed ^ st__mix64((uint64_t)m->n_tensors)), 0.0f, std));
    else if (fill != 0.0f)
        ST_TRY(st_fill_(p->t, fill));
    ST_TRY(st_requires_grad(p->t, true));
    *out = p->t;
    return ST_OK;
}

st_status st_model_new(st_ctx *ctx, const st_model_config *cfg, uint64_t seed, st_model **out) {
    if (!ctx || !cfg || !out)
        return st__fail(ST_ERR_INVALID_ARG, "st_model_new: ctx, cfg or out is NULL");
    *out = NULL;
    ST_TRY(st_model_config_validate(cfg));
    ST_TRY(st_autograd_enable(ctx));
    st_model *m = st_calloc(1, sizeof *m);
    if (!m) return st__fail(ST_ERR_NOMEM, "st_model_new: out of memory");
    m->ctx = ctx;
    m->cfg = *cfg;
    m->n_params_cap = 5 + 12 * cfg->n_layer;
    st_pool *pool = st_backend_cpu_pool(st_ctx_backend(ctx));
    m->n_partial = pool ? st_pool_size(pool) : 1;
    m->params = st_calloc((size_t)m->n_params_cap, sizeof *m->params);
    m->blocks = st_calloc((size_t)cfg->n_layer, sizeof *m->blocks);
    m->partial = st_calloc((size_t)m->n_partial, sizeof *m->partial);
    st_status s = ST_OK;
    if (!m->params || !m->blocks || !m->partial)
        s = st__fail(ST_ERR_NOMEM, "st_model_new: out of memory");
    else if (cfg->arch == ST_ARCH_GPT2)
        s = st__gpt2_build(m, seed);
    else
        s = st__llama_build(m, seed);
    if (s != ST_OK) {
        st_model_free(m);
        return s;
    }
    *out = m;
    return ST_OK;
}

void st_model_free(st_model *m) {
    if (!m) return;
    if (m->params)
        for (int i = 0; i < m->n_tensors; i++)
            st_tensor_free(m->params[i].t);
    st_free(m->params);
    st_free(m->blocks);
    st_free(m->partial);
    st_free(m);
}

const st_model_config *st_model_get_config(const st_model *m) {
    return m ? &m->cfg : NULL;
}

int st_model_n_tensors(const st_model *m) {
    return m ? m->n_tensors : 0;
}

st_tensor *st_model_tensor(const st_model *m, int i, const char **name) {
    if (!m || i < 0 || i >= m->n_tensors) {
        if (name) *name = NULL;
        return NULL;
    }
    if (name) *name = m->params[i].name;
    return m->params[i].t;
}

st_tensor *st_model_find_tensor(const st_model *m, const char *name) {
    if (!m || !name) return NULL;
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->params[i].name, name)) return m->params[i].t;
    return NULL;
}

int64_t st_model_n_params(const st_model *m) {
    int64_t n = 0;
    for (int i = 0; m && i < m->n_tensors; i++)
        n += st_tensor_numel(m->params[i].t);
    return n;
}

void st_model_set_training(st_model *m, bool on, uint64_t dropout_seed) {
    if (!m) return;
    m->training = on;
    m->dropout_seed = dropout_seed;
    m->n_forward = 0;
}

st_status st__model_dropout(st_model *m, const st_tensor *x, int site, st_tensor **out) {
    if (!m->training || m->cfg.dropout <= 0.0f) {
        *out = (st_tensor *)x;
        return ST_OK;
    }
    /* A distinct mask per (seed, forward pass, call site). */
    uint64_t seed = st__mix64(m->dropout_seed ^ st__mix64(m->n_forward * 4096u + (uint64_t)site));
    return st_dropout(m->ctx, x, m->cfg.dropout, seed, out);
}

static st_status check_ids(const st_model *m, const st_tensor *ids, const char *what) {
    if (!ids) return st__fail(ST_ERR_INVALID_ARG, "%s: ids is NULL", what);
    if (ids->dtype != ST_I32)
        return st__fail(ST_ERR_DTYPE, "%s: ids are %s, expected i32", what,
                        st_dtype_name(ids->dtype));
    if (ids->ndim != 2 || ids->ne[0] < 1 || ids->ne[1] < 1)
        return st__fail(ST_ERR_SHAPE, "%s: ids must be [B, T] with B, T >= 1", what);
    if (ids->ne[1] > m->cfg.n_ctx)
        return st__fail(ST_ERR_SHAPE, "%s: T = %lld is longer than the context n_ctx = %d", what,
                        (long long)ids->ne[1], m->cfg.n_ctx);
    return ST_OK;
}

st_status st_model_forward(st_model *m, const st_tensor *ids, st_tensor **logits) {
    if (!m || !logits) return st__fail(ST_ERR_INVALID_ARG, "st_model_forward: m or logits is NULL");
    ST_TRY(check_ids(m, ids, "st_model_forward"));
    const int64_t B = ids->ne[0], T = ids->ne[1], V = m->cfg.vocab_size;
    st_ctx *ctx = m->ctx;
    st_tensor *h = NULL, *wt = NULL, *y = NULL;
    st_status s = m->cfg.arch == ST_ARCH_GPT2 ? st__gpt2_forward(m, ids, &h)
                                              : st__llama_forward(m, ids, &h); /* (B*T, C) */
    if (m->training) m->n_forward++;
    ST_TRY(s);
    st_tensor *head = m->lm_head ? m->lm_head : m->tok_emb; /* (V, C) */
    ST_TRY(st_transpose(ctx, head, 0, 1, &wt));             /* (C, V) view */
    ST_TRY(st_matmul(ctx, h, wt, &y));                      /* (B*T, V) */
    const int64_t shape[3] = {B, T, V};
    return st_reshape(ctx, y, 3, shape, logits); /* (B, T, V) */
}

st_status st_model_loss(st_model *m, const st_tensor *ids, const st_tensor *targets,
                        st_tensor **loss, st_tensor **logits) {
    if (!m || !loss) return st__fail(ST_ERR_INVALID_ARG, "st_model_loss: m or loss is NULL");
    ST_TRY(check_ids(m, ids, "st_model_loss"));
    if (!targets) return st__fail(ST_ERR_INVALID_ARG, "st_model_loss: targets is NULL");
    if (targets->dtype != ST_I32)
        return st__fail(ST_ERR_DTYPE, "st_model_loss: targets are %s, expected i32",
                        st_dtype_name(targets->dtype));
    if (targets->ndim != 2 || targets->ne[0] != ids->ne[0] || targets->ne[1] != ids->ne[1])
        return st__fail(ST_ERR_SHAPE, "st_model_loss: targets must be [B, T] like ids");
    st_ctx *ctx = m->ctx;
    const int64_t N = ids->ne[0] * ids->ne[1];
    st_tensor *lg = NULL, *lg2 = NULL, *tg = NULL;
    ST_TRY(st_model_forward(m, ids, &lg)); /* (B, T, V) */
    const int64_t s2[2] = {N, m->cfg.vocab_size}, s1[1] = {N};
    ST_TRY(st_reshape(ctx, lg, 2, s2, &lg2)); /* (B*T, V) */
    ST_TRY(st_contiguous(ctx, targets, &tg));
    ST_TRY(st_reshape(ctx, tg, 1, s1, &tg));      /* (B*T) */
    ST_TRY(st_cross_entropy(ctx, lg2, tg, loss)); /* (1) */
    if (logits) *logits = lg;
    return ST_OK;
}

void st_model_zero_grad(st_model *m) {
    for (int i = 0; m && i < m->n_tensors; i++)
        st_zero_grad(&m->params[i].t, 1);
}

/* ---- gradient clipping -------------------------------------------------------------------
 * The grads form one flat index space (parameter after parameter); thread
 * ith takes a fixed contiguous range of it and sums squares in double. */
typedef struct clip_job {
    st_model *m;
    int64_t total;
    int phase; /* 0: sum squares into partial[ith]; 1: scale by coef */
    float coef;
} clip_job;

static void clip_worker(void *arg, int ith, int nth) {
    clip_job *j = arg;
    st_model *m = j->m;
    int64_t begin = j->total * ith / nth, end = j->total * (ith + 1) / nth, off = 0;
    double acc = 0.0;
    for (int i = 0; i < m->n_tensors && off < end; i++) {
        st_tensor *g = m->params[i].t->grad;
        int64_t n = st_tensor_numel(m->params[i].t);
        int64_t lo = begin > off ? begin - off : 0, hi = end - off < n ? end - off : n;
        if (g && lo < hi) {
            float *d = g->data;
            if (j->phase == 0)
                for (int64_t k = lo; k < hi; k++)
                    acc += (double)d[k] * (double)d[k];
            else
                for (int64_t k = lo; k < hi; k++)
                    d[k] *= j->coef;
        }
        off += n;
    }
    if (j->phase == 0) m->partial[ith] = acc;
}

st_status st_clip_grad_norm(st_model *m, float max_norm, float *norm) {
    if (!m) return st__fail(ST_ERR_INVALID_ARG, "st_clip_grad_norm: m is NULL");
    for (int i = 0; i < m->n_tensors; i++) {
        st_tensor *g = m->params[i].t->grad;
        if (g && (g->dtype != ST_F32 || !st_tensor_is_contiguous(g)))
            return st__fail(ST_ERR_STATE, "st_clip_grad_norm: the grad of %s is not contiguous f32",
                            m->params[i].name);
    }
    st_pool *pool = st_backend_cpu_pool(st_ctx_backend(m->ctx));
    clip_job j = {m, st_model_n_params(m), 0, 1.0f};
    int nth = pool ? st_pool_size(pool) : 1;
    ST_ASSERT(nth <= m->n_partial); /* the pool's size is fixed at the backend's creation */
    for (int t = 0; t < m->n_partial; t++)
        m->partial[t] = 0.0;
    if (pool && nth > 1 && j.total >= 65536)
        st_pool_run(pool, clip_worker, &j);
    else
        clip_worker(&j, 0, 1);
    double sq = 0.0;
    for (int t = 0; t < m->n_partial; t++)
        sq += m->partial[t];
    double total = sqrt(sq);
    if (norm) *norm = (float)total;
    /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when < 1.
     * A non-finite norm leaves the grads alone (the caller sees it in *norm). */
    if (max_norm > 0.0f && isfinite(total)) {
        double coef = (double)max_norm / (total + 1e-6);
        if (coef < 1.0) {
            j.phase = 1;
            j.coef = (float)coef;
            if (pool && nth > 1 && j.total >= 65536)
                st_pool_run(pool, clip_worker, &j);
            else
                clip_worker(&j, 0, 1);
        }
    }
    return ST_OK;
}
