/*
 * optim.c — optimizers (SGD with momentum, AdamW) over a model's
 * parameters, and the learning-rate schedule.
 *
 * AdamW follows torch.optim.AdamW (foreach=False) step for step, with the
 * step count t starting at 1:
 *   p  *= 1 - lr * wd                      (decoupled decay, tensors with >= 2 dims only)
 *   m   = beta1 m + (1 - beta1) g
 *   v   = beta2 v + (1 - beta2) g^2
 *   p  -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * SGD: p *= 1 - lr * wd (decoupled like AdamW: unlike torch.optim.SGD,
 * whose weight_decay is an L2 term added to g), buf = momentum buf + g
 * (torch's first-step clone of g equals this with buf = 0), p -= lr buf;
 * with momentum 0 there is no buffer and p -= lr g.
 * Decay applies to parameters with two or more dims (matmul weights and
 * embeddings); 1-D ones (norm weights, biases) never decay.
 *
 * Data: per parameter its state tensors (persistent, zero at creation),
 * named "<param>.exp_avg", "<param>.exp_avg_sq" or "<param>.momentum_buffer",
 * and its offset in one flat index space over all parameters. A step is
 * one fused loop over that space (parameter, grad and state read and
 * written once per element) split into contiguous ranges over the
 * context's pool (st_pool_parallel_for); each element's update depends only
 * on itself, so results do not depend on the thread count.
 *
 * Ownership: the optimizer owns its state tensors and tables and borrows
 * the model, which must outlive it. One thread drives an optimizer.
 */
#include "model/model_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define OPT_NAME_MAX (ST__MODEL_NAME_MAX + 20)
#define OPT_GRAIN ((int64_t)1 << 14)

typedef struct opt_state {
    char name[OPT_NAME_MAX];
    st_tensor *t;
} opt_state;

/* One parameter's pointers for the current step (grad NULL: skipped). */
typedef struct opt_slot {
    float *p, *g, *s1, *s2; /* param, grad, exp_avg | momentum_buffer, exp_avg_sq */
    bool decay;
} opt_slot;

struct st_optim {
    st_model *m;
    st_optim_params p;
    int64_t step;
    int n;                /* parameters */
    int64_t *off;         /* [n + 1] flat offsets */
    st_tensor **s1, **s2; /* [n] state per parameter (NULL when none) */
    opt_slot *slot;       /* [n] filled at each step */
    opt_state *state;     /* [n_state] */
    int n_state;
    /* the current step's scalars */
    float lr, decay_mul, b1, b2, one_m_b1, one_m_b2, step_size, bc2_sqrt, eps, mu;
};

st_optim_params st_optim_default_params(st_optim_kind kind) {
    st_optim_params p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    if (kind == ST_OPTIM_ADAMW) { /* nanoGPT's GPT settings */
        p.lr = 1e-3f;
        p.beta1 = 0.9f;
        p.beta2 = 0.95f;
        p.eps = 1e-8f;
        p.weight_decay = 0.1f;
    } else {
        p.kind = ST_OPTIM_SGD;
        p.lr = 1e-2f;
        p.momentum = 0.9f;
    }
    return p;
}

static st_status add_state(st_optim *o, int i, const char *suffix, st_tensor **out) {
    const char *pname = NULL;
    st_tensor *p = st_model_tensor(o->m, i, &pname);
    opt_state *s = &o->state[o->n_state];
    snprintf(s->name, sizeof s->name, "%s.%s", pname, suffix);
    ST_TRY(st_tensor_new(p->ctx, ST_F32, p->ndim, p->ne, &s->t));
    o->n_state++;
    *out = s->t;
    return ST_OK;
}

st_status st_optim_new(st_model *m, const st_optim_params *p, st_optim **out) {
    if (!m || !p || !out) return st__fail(ST_ERR_INVALID_ARG, "st_optim_new: m, p or out is NULL");
    *out = NULL;
    if (p->kind != ST_OPTIM_SGD && p->kind != ST_OPTIM_ADAMW)
        return st__fail(ST_ERR_INVALID_ARG, "st_optim_new: unknown optimizer kind %d",
                        (int)p->kind);
    if (!(p->lr >= 0.0f) || !(p->weight_decay >= 0.0f) || !isfinite(p->weight_decay))
        return st__fail(ST_ERR_INVALID_ARG, "st_optim_new: lr %g and weight_decay %g must be >= 0",
                        (double)p->lr, (double)p->weight_decay);
    if (p->kind == ST_OPTIM_SGD && !(p->momentum >= 0.0f && p->momentum < 1.0f))
        return st__fail(ST_ERR_INVALID_ARG, "st_optim_new: momentum %g is not in [0, 1)",
                        (double)p->momentum);
    if (p->kind == ST_OPTIM_ADAMW && (!(p->beta1 >= 0.0f && p->beta1 < 1.0f) ||
                                      !(p->beta2 >= 0.0f && p->beta2 < 1.0f) || !(p->eps > 0.0f)))
        return st__fail(ST_ERR_INVALID_ARG,
                        "st_optim_new: betas (%g, %g) must be in [0, 1) and eps %g > 0",
                        (double)p->beta1, (double)p->beta2, (double)p->eps);
    st_optim *o = st_calloc(1, sizeof *o);
    if (!o) return st__fail(ST_ERR_NOMEM, "st_optim_new: out of memory");
    o->m = m;
    o->p = *p;
    o->n = st_model_n_tensors(m);
    size_t n = (size_t)o->n;
    o->off = st_calloc(n + 1, sizeof *o->off);
    o->s1 = st_calloc(n + 1, sizeof *o->s1);
    o->s2 = st_calloc(n + 1, sizeof *o->s2);
    o->slot = st_calloc(n + 1, sizeof *o->slot);
    o->state = st_calloc(2 * n + 1, sizeof *o->state);
    st_status s = ST_OK;
    if (!o->off || !o->s1 || !o->s2 || !o->slot || !o->state)
        s = st__fail(ST_ERR_NOMEM, "st_optim_new: out of memory");
    for (int i = 0; s == ST_OK && i < o->n; i++) {
        o->off[i + 1] = o->off[i] + st_tensor_numel(st_model_tensor(m, i, NULL));
        if (p->kind == ST_OPTIM_ADAMW) {
            s = add_state(o, i, "exp_avg", &o->s1[i]);
            if (s == ST_OK) s = add_state(o, i, "exp_avg_sq", &o->s2[i]);
        } else if (p->momentum > 0.0f) {
            s = add_state(o, i, "momentum_buffer", &o->s1[i]);
        }
    }
    if (s != ST_OK) {
        st_optim_free(o);
        return s;
    }
    *out = o;
    return ST_OK;
}

void st_optim_free(st_optim *o) {
    if (!o) return;
    if (o->state)
        for (int i = 0; i < o->n_state; i++)
            st_tensor_free(o->state[i].t);
    st_free(o->off);
    st_free(o->s1);
    st_free(o->s2);
    st_free(o->slot);
    st_free(o->state);
    st_free(o);
}

int64_t st_optim_get_step(const st_optim *o) {
    return o ? o->step : 0;
}
void st_optim_set_step(st_optim *o, int64_t step) {
    if (o) o->step = step < 0 ? 0 : step;
}
int st_optim_n_state(const st_optim *o) {
    return o ? o->n_state : 0;
}
st_tensor *st_optim_state(const st_optim *o, int i, const char **name) {
    if (!o || i < 0 || i >= o->n_state) {
        if (name) *name = NULL;
        return NULL;
    }
    if (name) *name = o->state[i].name;
    return o->state[i].t;
}

/* ---- the fused update --------------------------------------------------------------------- */

static void adamw_range(const st_optim *o, const opt_slot *s, int64_t lo, int64_t hi) {
    float *restrict p = s->p, *restrict m = s->s1, *restrict v = s->s2;
    const float *restrict g = s->g;
    const float dm = s->decay ? o->decay_mul : 1.0f;
    for (int64_t k = lo; k < hi; k++) {
        float gk = g[k];
        float mk = o->b1 * m[k] + o->one_m_b1 * gk;
        float vk = o->b2 * v[k] + o->one_m_b2 * gk * gk;
        m[k] = mk;
        v[k] = vk;
        p[k] = p[k] * dm - o->step_size * (mk / (sqrtf(vk) / o->bc2_sqrt + o->eps));
    }
}

static void sgd_range(const st_optim *o, const opt_slot *s, int64_t lo, int64_t hi) {
    float *restrict p = s->p, *restrict b = s->s1;
    const float *restrict g = s->g;
    const float dm = s->decay ? o->decay_mul : 1.0f;
    if (b) {
        for (int64_t k = lo; k < hi; k++) {
            float bk = o->mu * b[k] + g[k];
            b[k] = bk;
            p[k] = p[k] * dm - o->lr * bk;
        }
    } else {
        for (int64_t k = lo; k < hi; k++)
            p[k] = p[k] * dm - o->lr * g[k];
    }
}

static void step_range(void *arg, int64_t begin, int64_t end) {
    const st_optim *o = arg;
    /* the parameter holding flat index begin: the last i with off[i] <= begin */
    int lo = 0, hi = o->n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (o->off[mid] <= begin)
            lo = mid;
        else
            hi = mid - 1;
    }
    for (int i = lo; i < o->n && o->off[i] < end; i++) {
        const opt_slot *s = &o->slot[i];
        if (!s->g) continue;
        int64_t a = begin > o->off[i] ? begin - o->off[i] : 0;
        int64_t b = (end < o->off[i + 1] ? end : o->off[i + 1]) - o->off[i];
        if (o->p.kind == ST_OPTIM_ADAMW)
            adamw_range(o, s, a, b);
        else
            sgd_range(o, s, a, b);
    }
}

st_status st_optim_step(st_optim *o, float lr) {
    if (!o) return st__fail(ST_ERR_INVALID_ARG, "st_optim_step: o is NULL");
    if (!(lr >= 0.0f) || !isfinite(lr))
        return st__fail(ST_ERR_INVALID_ARG, "st_optim_step: lr %g is not a finite value >= 0",
                        (double)lr);
    for (int i = 0; i < o->n; i++) {
        const char *name = NULL;
        st_tensor *p = st_model_tensor(o->m, i, &name);
        st_tensor *g = p->grad;
        if (p->dtype != ST_F32 || !st_tensor_is_contiguous(p) ||
            (g && (g->dtype != ST_F32 || !st_tensor_is_contiguous(g) ||
                   st_tensor_numel(g) != st_tensor_numel(p))))
            return st__fail(ST_ERR_STATE,
                            "st_optim_step: %s or its grad is not a contiguous f32 tensor of "
                            "its shape",
                            name);
        o->slot[i] = (opt_slot){p->data, g ? g->data : NULL, o->s1[i] ? o->s1[i]->data : NULL,
                                o->s2[i] ? o->s2[i]->data : NULL, p->ndim >= 2};
    }
    o->step++;
    const st_optim_params *p = &o->p;
    o->lr = lr;
    o->decay_mul = (float)(1.0 - (double)lr * (double)p->weight_decay);
    o->mu = p->momentum;
    if (p->kind == ST_OPTIM_ADAMW) {
        double t = (double)o->step;
        double bc1 = 1.0 - pow((double)p->beta1, t), bc2 = 1.0 - pow((double)p->beta2, t);
        o->b1 = p->beta1;
        o->b2 = p->beta2;
        o->one_m_b1 = (float)(1.0 - (double)p->beta1);
        o->one_m_b2 = (float)(1.0 - (double)p->beta2);
        o->step_size = (float)((double)lr / bc1);
        o->bc2_sqrt = (float)sqrt(bc2);
        o->eps = p->eps;
    }
    st_ctx *ctx = o->m->ctx;
    bool grad_on = st_ctx_grad_enabled(ctx);
    st_ctx_set_grad_enabled(ctx, false);
    st_pool *pool = st_backend_cpu_pool(st_ctx_backend(ctx));
    if (pool)
        st_pool_parallel_for(pool, o->off[o->n], OPT_GRAIN, step_range, o);
    else
        step_range(o, 0, o->off[o->n]);
    st_ctx_set_grad_enabled(ctx, grad_on);
    return ST_OK;
}

/* ---- schedules --------------------------------------------------------------------------- */

float st_lr_at(const st_lr_schedule *s, int64_t step) {
    if (!s) return 0.0f;
    if (step < 0) step = 0;
    if (step < s->warmup_steps)
        return (float)((double)s->lr_max * (double)(step + 1) / (double)s->warmup_steps);
    if (!s->cosine) return s->lr_max;
    if (step >= s->decay_steps) return s->lr_min;
    double ratio = (double)(step - s->warmup_steps) / (double)(s->decay_steps - s->warmup_steps);
    double coeff = 0.5 * (1.0 + cos(M_PI * ratio)); /* 1 -> 0 */
    return (float)((double)s->lr_min + coeff * ((double)s->lr_max - (double)s->lr_min));
}
