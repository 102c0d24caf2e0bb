/*
 * cpu_fused.c — the CPU executor of the fused transformer ops:
 * ATTENTION and its backward, CROSS_ENTROPY and its backward, ROPE, DROPOUT
 * (layout rules in strata/backend.h). cpu_backend.c dispatches here through
 * st__cpu_fused_compute with an env carrying its pool, kernel table and
 * reusable scratch.
 *
 * ATTENTION (flash-attention style, one head at a time). The (b, h) pairs are
 * split over the pool; each thread owns one T x S score block in the
 * backend's scratch (nothing else of size T*S exists). Causal attention
 * runs in blocks of 64 query rows that only touch the keys the block's last
 * row sees (the fully masked part is skipped). S = scale Q K^T by
 * cblas_sgemm, each row's visible prefix (causal: keys s <= t + S - T) turned
 * into probabilities with the kernel table (max, subtract, exp, sum, scale),
 * the masked tail zeroed, O = P V by sgemm, and the row's log-sum-exp stored.
 * The backward recomputes P = exp(scale Q K^T - lse) and applies
 *     dV += P^T dO,  dP = dO V^T,  dS = P (dP - rowsum(dO O)),
 *     dQ = scale dS K,  dK += scale dS^T Q
 * with two T x S blocks per thread. Work is split by (b, kv head): the q
 * heads that share a kv head (grouped-query) run in order on one thread and
 * accumulate into its dK/dV (zeroed first) through sgemm's beta, so there are no races and
 * the sums do not depend on the thread count.
 *
 * BLAS threading (ARCHITECTURE.md): with more than one head pair and more
 * than one thread, BLAS is set to one thread and runs inside the pool's
 * partition; with one pair (or one thread) the caller runs it with all BLAS
 * threads while the pool sleeps. Never both at once.
 *
 * CROSS_ENTROPY: rows split over the pool; per row lse = max + log(sum
 * exp(x - max)) through the kernel table in a per-thread row of scratch
 * (probabilities are never stored), loss_row = lse - x[target]; the row losses
 * are summed in row order in double, so the mean is identical for any thread
 * count. The backward writes dx = exp(x - lse) * g - g onehot, g = dloss /
 * count, one pass per row. Targets are checked (data-dependent, so here)
 * before anything is written.
 *
 * ROPE: a cos/sin table for (T, D/2) is built in scratch per call (angles in
 * double), then rows are rotated; the inverse flag negates the angle (the
 * gradient). DROPOUT: the RAND_UNIFORM counter RNG of cpu_backend.c (same
 * spec, restated below) decides each element: kept when u >= p.
 *
 * Ownership: views are borrowed for one call; scratch belongs to the backend.
 * Threading: one thread submits; inside an op threads write disjoint parts.
 */
#include "backend/cpu/cpu_fused.h"

#include "backend/backend_impl.h"
#include "strata/hw.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* ---- helpers ----------------------------------------------------------------- */

static int64_t fz_min(int64_t a, int64_t b) {
    return a < b ? a : b;
}

/* Floats per thread slice, rounded to a cache line so threads never share one. */
static size_t fz_slice(int64_t n) {
    return ((size_t)(n > 1 ? n : 1) + 15) & ~(size_t)15;
}

typedef st__pool_indexed_fn fz_fn;

/* [0,n) over the pool in chunks of >= grain items (st__pool_for). */
static void fz_for(const st__cpu_fused_env *env, int64_t n, int64_t grain, fz_fn fn, void *arg) {
    st__pool_for(env->pool, n, grain, fn, arg);
}

/* Runs n independent BLAS-using tasks under the threading rule above. */
static void fz_blas_tasks(const st__cpu_fused_env *env, int64_t n, fz_fn fn, void *arg) {
    if (n <= 1 || env->n_threads <= 1) {
        if (st_hw_blas_get_threads() != env->n_threads) st_hw_blas_set_threads(env->n_threads);
        if (env->n_threads > 1) st__pool_sleep_hint(env->pool);
        fn(arg, 0, n, 0);
        return;
    }
    st_hw_blas_set_threads(1);
    fz_for(env, n, 1, fn, arg);
    st_hw_blas_set_threads(env->n_threads);
}

/* ---- attention ----------------------------------------------------------------- */

/* Floats between rows t of a [B,H,T,D] view (BLAS leading dimension). */
static int64_t head_ld(const st_view *v) {
    return v->ne[2] <= 1 ? v->ne[3] : v->nb[2] / 4;
}

static float *head_at(const st_view *v, int64_t b, int64_t h) {
    return (float *)((char *)v->data + b * v->nb[0] + h * v->nb[1]);
}

typedef struct attn_ctx {
    const st_cpu_kernels *k;
    const st_view *q, *kk, *v, *o, *dout, *lse; /* lse as [B,H,T] */
    const st_view *dq, *dk, *dv;
    float *scratch;
    size_t slice; /* floats per thread */
    int64_t H, Hkv, T, S, D;
    float scale;
    bool causal;
} attn_ctx;

/* Keys row t sees. */
static int64_t attn_visible(const attn_ctx *c, int64_t t) {
    if (!c->causal) return c->S;
    int64_t n = t + (c->S - c->T) + 1;
    return n < 0 ? 0 : n > c->S ? c->S : n;
}

static float *lse_row(const st_view *l, int64_t b, int64_t h) {
    return (float *)((char *)l->data + b * l->nb[0] + h * l->nb[1]);
}

/* Causal attention works in blocks of ATTN_QB query rows: block [t0, t1)
 * sees keys [0, attn_visible(t1 - 1)), so the fully masked part of the
 * score matrix (about half of it for T == S) is never computed, in the
 * forward and in the backward. Every score, probability and product element
 * is the same computation whatever the block split; the split does not
 * depend on the thread count. */
#define ATTN_QB 64

/* sc[0:tb, 0:n] (row stride S) = scale Q[t0:t0+tb] K[0:n]^T for query head h
 * of batch b (kv head g). */
static void attn_scores(const attn_ctx *c, int64_t b, int64_t h, int64_t g, int64_t t0,
                        int64_t tb, int64_t n, float *sc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tb, (int)n, (int)c->D, c->scale,
                head_at(c->q, b, h) + t0 * head_ld(c->q), (int)head_ld(c->q),
                head_at(c->kk, b, g), (int)head_ld(c->kk), 0.0f, sc, (int)c->S);
}

/* Keys the query block [t0, t1) sees (the last row sees the most). */
static int64_t attn_block_keys(const attn_ctx *c, int64_t t1) {
    return attn_visible(c, t1 - 1);
}

static void attn_fwd(void *varg, int64_t b0, int64_t e0, int ith) {
    const attn_ctx *c = varg;
    const st_cpu_kernels *k = c->k;
    float *sc = c->scratch + (size_t)ith * c->slice;
    int64_t grp = c->H / c->Hkv, T = c->T, S = c->S, D = c->D;
    int64_t qb = c->causal ? ATTN_QB : T;
    for (int64_t pair = b0; pair < e0; pair++) {
        int64_t b = pair / c->H, h = pair % c->H, g = h / grp;
        float *lse = lse_row(c->lse, b, h);
        float *O = head_at(c->o, b, h);
        int64_t ldo = head_ld(c->o);
        for (int64_t t0 = 0; t0 < T; t0 += qb) {
            int64_t t1 = fz_min(t0 + qb, T), tb = t1 - t0, nk = attn_block_keys(c, t1);
            if (nk > 0) attn_scores(c, b, h, g, t0, tb, nk, sc);
            for (int64_t t = t0; t < t1; t++) {
                float *row = sc + (t - t0) * S;
                int64_t n = attn_visible(c, t);
                if (n <= 0) {
                    memset(row, 0, (size_t)nk * sizeof(float));
                    lse[t] = -INFINITY;
                    continue;
                }
                float m = k->max(n, row);
                k->binary(ST_OP_SUB, n, row, 1, &m, 0, row);
                k->unary(ST_OP_EXP, n, row, row, 0.0f);
                float s = k->sum(n, row);
                k->unary(ST_OP_SCALE, n, row, row, 1.0f / s);
                if (n < nk) memset(row + n, 0, (size_t)(nk - n) * sizeof(float));
                lse[t] = m + logf(s);
            }
            if (nk > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tb, (int)D, (int)nk,
                            1.0f, sc, (int)S, head_at(c->v, b, g), (int)head_ld(c->v), 0.0f,
                            O + t0 * ldo, (int)ldo);
            else
                for (int64_t t = t0; t < t1; t++)
                    memset(O + t * ldo, 0, (size_t)D * sizeof(float));
        }
    }
}

/* Zeroes S rows of D floats (row stride ld). */
static void attn_zero_rows(float *x, int64_t S, int64_t D, int64_t ld) {
    for (int64_t s = 0; s < S; s++)
        memset(x + s * ld, 0, (size_t)D * sizeof(float));
}

static void attn_bwd(void *varg, int64_t b0, int64_t e0, int ith) {
    const attn_ctx *c = varg;
    const st_cpu_kernels *k = c->k;
    int64_t grp = c->H / c->Hkv, T = c->T, S = c->S, D = c->D;
    int64_t qb = c->causal ? ATTN_QB : T;
    float *P = c->scratch + (size_t)ith * c->slice;
    float *dP = P + T * S;
    for (int64_t task = b0; task < e0; task++) {
        int64_t b = task / c->Hkv, g = task % c->Hkv;
        const float *K = head_at(c->kk, b, g), *V = head_at(c->v, b, g);
        int ldk = (int)head_ld(c->kk), ldv = (int)head_ld(c->v);
        float *dK = head_at(c->dk, b, g), *dV = head_at(c->dv, b, g);
        int lddk = (int)head_ld(c->dk), lddv = (int)head_ld(c->dv);
        /* dK, dV accumulate over the q heads of the group and the query blocks */
        attn_zero_rows(dK, S, D, lddk);
        attn_zero_rows(dV, S, D, lddv);
        for (int64_t j = 0; j < grp; j++) {
            int64_t h = g * grp + j;
            const float *Q = head_at(c->q, b, h), *O = head_at(c->o, b, h);
            const float *dO = head_at(c->dout, b, h);
            int ldq = (int)head_ld(c->q), ldo = (int)head_ld(c->o), lddo = (int)head_ld(c->dout);
            float *dQ = head_at(c->dq, b, h);
            int lddq = (int)head_ld(c->dq);
            const float *lse = lse_row(c->lse, b, h);
            for (int64_t t0 = 0; t0 < T; t0 += qb) {
                int64_t t1 = fz_min(t0 + qb, T), tb = t1 - t0, nk = attn_block_keys(c, t1);
                if (nk <= 0) {
                    for (int64_t t = t0; t < t1; t++)
                        memset(dQ + t * lddq, 0, (size_t)D * sizeof(float));
                    continue;
                }
                /* P = exp(scale Q K^T - lse) on the visible keys, 0 elsewhere */
                attn_scores(c, b, h, g, t0, tb, nk, P);
                for (int64_t t = t0; t < t1; t++) {
                    float *row = P + (t - t0) * S;
                    int64_t n = attn_visible(c, t);
                    if (n <= 0 || isinf(lse[t])) n = 0;
                    if (n > 0) {
                        k->binary(ST_OP_SUB, n, row, 1, &lse[t], 0, row);
                        k->unary(ST_OP_EXP, n, row, row, 0.0f);
                    }
                    if (n < nk) memset(row + n, 0, (size_t)(nk - n) * sizeof(float));
                }
                /* dV += P^T dO */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)D, (int)tb,
                            1.0f, P, (int)S, dO + t0 * lddo, lddo, 1.0f, dV, lddv);
                /* dP = dO V^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tb, (int)nk, (int)D,
                            1.0f, dO + t0 * lddo, lddo, V, ldv, 0.0f, dP, (int)S);
                /* dS = P (dP - rowsum(dO O)) */
                for (int64_t t = t0; t < t1; t++) {
                    float *prow = P + (t - t0) * S, *drow = dP + (t - t0) * S;
                    float delta = k->dot(D, dO + t * lddo, O + t * ldo);
                    int64_t n = attn_visible(c, t);
                    if (n <= 0 || isinf(lse[t])) n = 0;
                    if (n > 0) {
                        k->binary(ST_OP_SUB, n, drow, 1, &delta, 0, drow);
                        k->binary(ST_OP_MUL, n, prow, 1, drow, 1, drow);
                    }
                    if (n < nk) memset(drow + n, 0, (size_t)(nk - n) * sizeof(float));
                }
                /* dQ = scale dS K;  dK += scale dS^T Q */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tb, (int)D, (int)nk,
                            c->scale, dP, (int)S, K, ldk, 0.0f, dQ + t0 * lddq, lddq);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)D, (int)tb,
                            c->scale, dP, (int)S, Q + t0 * ldq, ldq, 1.0f, dK, lddk);
            }
        }
    }
}

static st_status run_attention(const st__cpu_fused_env *env, const st_op_desc *d) {
    bool bwd = d->op == ST_OP_ATTENTION_BACKWARD;
    const char *opn = st_op_name(d->op);
    if (d->n_src < (bwd ? 6 : 3) || d->n_dst < (bwd ? 3 : 2))
        return st__fail(ST_ERR_INVALID_ARG, "cpu backend: %s got %d sources and %d destinations",
                        opn, d->n_src, d->n_dst);
    attn_ctx c = {.k = env->k, .q = &d->src[0], .kk = &d->src[1], .v = &d->src[2]};
    c.H = c.q->ne[1];
    c.Hkv = c.kk->ne[1];
    c.T = c.q->ne[2];
    c.S = c.kk->ne[2];
    c.D = c.q->ne[3];
    c.scale = d->p.scale;
    c.causal = d->p.causal;
    int64_t B = c.q->ne[0];
    ST_ASSERT(c.q->ndim == 4 && c.kk->ndim == 4 && c.v->ndim == 4);
    ST_ASSERT(c.Hkv > 0 && c.H % c.Hkv == 0 && c.S > 0 && c.D > 0);
    if (c.T > INT_MAX || c.S > INT_MAX || c.D > INT_MAX || c.T * c.S > INT_MAX)
        return st__fail(ST_ERR_UNSUPPORTED,
                        "cpu backend: %s: T %lld x S %lld x D %lld exceeds the BLAS's 32-bit "
                        "sizes",
                        opn, (long long)c.T, (long long)c.S, (long long)c.D);
    int64_t ntask = bwd ? B * c.Hkv : B * c.H;
    int nslots = ntask > 1 ? env->n_threads : 1;
    c.slice = fz_slice((bwd ? 2 : 1) * c.T * c.S);
    c.scratch = env->scratch(env->owner, c.slice * (size_t)nslots * sizeof(float), opn);
    if (!c.scratch) return ST_ERR_NOMEM;
    if (!bwd) {
        c.o = &d->dst[0];
        c.lse = &d->dst[1];
        fz_blas_tasks(env, ntask, attn_fwd, &c);
    } else {
        c.o = &d->src[3];
        c.dout = &d->src[4];
        c.lse = &d->src[5];
        c.dq = &d->dst[0];
        c.dk = &d->dst[1];
        c.dv = &d->dst[2];
        fz_blas_tasks(env, ntask, attn_bwd, &c);
    }
    return ST_OK;
}

/* ---- cross-entropy ----------------------------------------------------------------- */

typedef struct ce_ctx {
    const st_cpu_kernels *k;
    const st_view *x; /* [N, V] */
    const int32_t *tgt;
    float *lse;       /* [N] */
    float *dx;        /* backward: [N, V] contiguous */
    float *row_loss;  /* forward: [N] */
    float *tmp;       /* forward: a V-row per thread */
    size_t slice;
    int64_t V;
    float g; /* backward: dloss / count */
} ce_ctx;

static const float *ce_row(const ce_ctx *c, int64_t r) {
    return (const float *)((const char *)c->x->data + r * c->x->nb[0]);
}

static void ce_fwd(void *varg, int64_t b, int64_t e, int ith) {
    const ce_ctx *c = varg;
    const st_cpu_kernels *k = c->k;
    float *tmp = c->tmp + (size_t)ith * c->slice;
    for (int64_t r = b; r < e; r++) {
        int32_t t = c->tgt[r];
        if (t < 0) {
            c->lse[r] = 0.0f;
            c->row_loss[r] = 0.0f;
            continue;
        }
        const float *x = ce_row(c, r);
        float m = k->max(c->V, x);
        k->binary(ST_OP_SUB, c->V, x, 1, &m, 0, tmp);
        k->unary(ST_OP_EXP, c->V, tmp, tmp, 0.0f);
        float lse = m + logf(k->sum(c->V, tmp));
        c->lse[r] = lse;
        c->row_loss[r] = lse - x[t];
    }
}

static void ce_bwd(void *varg, int64_t b, int64_t e, int ith) {
    (void)ith;
    const ce_ctx *c = varg;
    const st_cpu_kernels *k = c->k;
    for (int64_t r = b; r < e; r++) {
        float *dx = c->dx + r * c->V;
        int32_t t = c->tgt[r];
        if (t < 0 || c->g == 0.0f) {
            memset(dx, 0, (size_t)c->V * sizeof(float));
            continue;
        }
        k->binary(ST_OP_SUB, c->V, ce_row(c, r), 1, &c->lse[r], 0, dx);
        k->unary(ST_OP_EXP, c->V, dx, dx, 0.0f);
        k->unary(ST_OP_SCALE, c->V, dx, dx, c->g);
        dx[t] -= c->g;
    }
}

static st_status run_cross_entropy(const st__cpu_fused_env *env, const st_op_desc *d) {
    bool bwd = d->op == ST_OP_CROSS_ENTROPY_BACKWARD;
    const char *opn = st_op_name(d->op);
    if (d->n_src < (bwd ? 4 : 2) || d->n_dst < (bwd ? 1 : 2))
        return st__fail(ST_ERR_INVALID_ARG, "cpu backend: %s got %d sources and %d destinations",
                        opn, d->n_src, d->n_dst);
    const st_view *x = &d->src[0], *tv = &d->src[1];
    ST_ASSERT(x->ndim == 2 && (x->ne[1] <= 1 || x->nb[1] == 4) && tv->dtype == ST_I32);
    int64_t N = x->ne[0], V = x->ne[1];
    ST_ASSERT(st_view_numel(tv) == N);
    ce_ctx c = {.k = env->k, .x = x, .tgt = tv->data, .V = V};
    int64_t count = 0;
    for (int64_t r = 0; r < N; r++) {
        int32_t t = c.tgt[r];
        if (t < -1 || t >= V)
            return st__fail(ST_ERR_BOUNDS,
                            "%s: target %d at position %lld is outside [-1, %lld) (the vocabulary "
                            "has %lld entries; -1 marks an ignored position)",
                            opn, (int)t, (long long)r, (long long)V, (long long)V);
        count += t >= 0;
    }
    int64_t grain = V > 0 ? fz_min(N, 1 + 16384 / V) : N;
    if (!bwd) {
        int nslots = env->n_threads;
        c.slice = fz_slice(V);
        size_t total = c.slice * (size_t)nslots + fz_slice(N);
        float *s = env->scratch(env->owner, total * sizeof(float), opn);
        if (!s) return ST_ERR_NOMEM;
        c.tmp = s;
        c.row_loss = s + c.slice * (size_t)nslots;
        c.lse = d->dst[1].data;
        if (count > 0 && V > 0) fz_for(env, N, grain, ce_fwd, &c);
        else if (N > 0) memset(c.lse, 0, (size_t)N * sizeof(float));
        double sum = 0.0;
        if (count > 0 && V > 0)
            for (int64_t r = 0; r < N; r++)
                sum += c.row_loss[r];
        *(float *)d->dst[0].data = count > 0 ? (float)(sum / (double)count) : 0.0f;
        return ST_OK;
    }
    c.lse = d->src[2].data;
    c.dx = d->dst[0].data;
    float dloss = *(const float *)d->src[3].data;
    c.g = count > 0 ? (float)((double)dloss / (double)count) : 0.0f;
    ST_ASSERT(st_view_is_contiguous(&d->dst[0]) || V <= 1);
    fz_for(env, N, grain, ce_bwd, &c);
    return ST_OK;
}

/* ---- rope -------------------------------------------------------------------------- */

typedef struct rope_ctx {
    const st_view *x;
    float *y;        /* contiguous [B,H,T,D] */
    float *cs, *sn;  /* [T, D/2] */
    int64_t H, T, D, pos0;
    double theta;
    int kind;
    bool inverse;
} rope_ctx;

static void rope_table(void *varg, int64_t b, int64_t e, int ith) {
    (void)ith;
    const rope_ctx *c = varg;
    int64_t half = c->D / 2;
    for (int64_t t = b; t < e; t++) {
        double pos = (double)(c->pos0 + t);
        for (int64_t i = 0; i < half; i++) {
            double ang = pos * pow(c->theta, -2.0 * (double)i / (double)c->D);
            c->cs[t * half + i] = (float)cos(ang);
            c->sn[t * half + i] = (float)(c->inverse ? -sin(ang) : sin(ang));
        }
    }
}

static void rope_rows(void *varg, int64_t b, int64_t e, int ith) {
    (void)ith;
    const rope_ctx *c = varg;
    int64_t half = c->D / 2, D = c->D;
    for (int64_t r = b; r < e; r++) {
        int64_t t = r % c->T, bh = r / c->T, h = bh % c->H, bb = bh / c->H;
        const float *x = (const float *)((const char *)c->x->data + bb * c->x->nb[0] +
                                         h * c->x->nb[1] + t * c->x->nb[2]);
        float *y = c->y + r * D;
        const float *cs = c->cs + t * half, *sn = c->sn + t * half;
        if (c->kind == 0) {
            for (int64_t i = 0; i < half; i++) {
                float a = x[i], bv = x[i + half];
                y[i] = a * cs[i] - bv * sn[i];
                y[i + half] = bv * cs[i] + a * sn[i];
            }
        } else {
            for (int64_t i = 0; i < half; i++) {
                float a = x[2 * i], bv = x[2 * i + 1];
                y[2 * i] = a * cs[i] - bv * sn[i];
                y[2 * i + 1] = bv * cs[i] + a * sn[i];
            }
        }
    }
}

static st_status run_rope(const st__cpu_fused_env *env, const st_op_desc *d) {
    const st_view *x = &d->src[0];
    ST_ASSERT(x->ndim == 4 && x->ne[3] % 2 == 0 && (x->ne[3] <= 1 || x->nb[3] == 4));
    ST_ASSERT(st_view_is_contiguous(&d->dst[0]));
    rope_ctx c = {.x = x, .y = d->dst[0].data, .H = x->ne[1], .T = x->ne[2], .D = x->ne[3],
                  .pos0 = d->p.pos0, .theta = d->p.theta, .kind = d->p.rope_kind,
                  .inverse = d->p.rope_inverse};
    int64_t half = c.D / 2;
    if (half == 0 || c.T == 0) return ST_OK;
    float *s = env->scratch(env->owner, 2 * fz_slice(c.T * half) * sizeof(float), "rope");
    if (!s) return ST_ERR_NOMEM;
    c.cs = s;
    c.sn = s + fz_slice(c.T * half);
    fz_for(env, c.T, fz_min(c.T, 1 + 4096 / half), rope_table, &c);
    int64_t rows = x->ne[0] * c.H * c.T;
    fz_for(env, rows, 1 + 32768 / c.D, rope_rows, &c);
    return ST_OK;
}

/* ---- dropout -------------------------------------------------------------------------
 * The RAND_UNIFORM spec of cpu_backend.c: key = fmix(seed + G), bits(c) =
 * fmix(key + (c + 1) G), u = (bits(j) >> 40) 2^-24 at counter j = offset + i. */

#define FZ_GOLDEN 0x9E3779B97F4A7C15ull

static inline uint64_t fz_fmix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct drop_ctx {
    const float *x;
    float *y;
    uint64_t key, offset;
    float p, keep_scale;
} drop_ctx;

static void drop_run(void *varg, int64_t b, int64_t e, int ith) {
    (void)ith;
    const drop_ctx *c = varg;
    for (int64_t i = b; i < e; i++) {
        uint64_t j = c->offset + (uint64_t)i;
        float u = (float)(fz_fmix(c->key + (j + 1) * FZ_GOLDEN) >> 40) * 0x1p-24f;
        c->y[i] = u >= c->p ? c->x[i] * c->keep_scale : 0.0f;
    }
}

static st_status run_dropout(const st__cpu_fused_env *env, const st_op_desc *d) {
    ST_ASSERT(st_view_is_contiguous(&d->src[0]) && st_view_is_contiguous(&d->dst[0]));
    float p = d->p.alpha;
    ST_ASSERT(p >= 0.0f && p < 1.0f);
    drop_ctx c = {d->src[0].data, d->dst[0].data, fz_fmix(d->p.seed + FZ_GOLDEN), d->p.offset, p,
                  1.0f / (1.0f - p)};
    fz_for(env, st_view_numel(&d->dst[0]), 16384, drop_run, &c);
    return ST_OK;
}

/* ---- dispatch ------------------------------------------------------------------------ */

bool st__cpu_fused_handles(st_op op) {
    switch (op) {
    case ST_OP_ATTENTION:
    case ST_OP_ATTENTION_BACKWARD:
    case ST_OP_CROSS_ENTROPY:
    case ST_OP_CROSS_ENTROPY_BACKWARD:
    case ST_OP_ROPE:
    case ST_OP_DROPOUT:
        return true;
    default:
        return false;
    }
}

st_status st__cpu_fused_compute(const st__cpu_fused_env *env, const st_op_desc *d) {
    switch (d->op) {
    case ST_OP_ATTENTION:
    case ST_OP_ATTENTION_BACKWARD:
        return run_attention(env, d);
    case ST_OP_CROSS_ENTROPY:
    case ST_OP_CROSS_ENTROPY_BACKWARD:
        return run_cross_entropy(env, d);
    case ST_OP_ROPE:
        return run_rope(env, d);
    case ST_OP_DROPOUT:
        return run_dropout(env, d);
    default:
        return st__fail(ST_ERR_UNSUPPORTED, "cpu backend: %s is not a fused op",
                        st_op_name(d->op));
    }
}
