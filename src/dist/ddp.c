/*
 * ddp.c — layer 7: data-parallel training over a st_dist (strata/dist.h):
 * bucketed gradient averaging overlapped with backward, and ZeRO stage 1.
 *
 * Data. One flat f32 buffer holds every parameter's gradient, laid out in
 * backward order (st_dist_plan_buckets: the model's last tensor first), and
 * each parameter's ->grad is a persistent view of its slice
 * (st_tensor_wrap), so autograd accumulates straight into it and a bucket is
 * one contiguous range that MPI reduces in place. The gradient-ready hook
 * (strata/nn.h) counts down each bucket's parameters; when a bucket's last
 * gradient is final the bucket is ready, and ready buckets are submitted
 * strictly in index order (every rank must issue collectives in the same
 * order). st_ddp_finish submits what is left (parameters the graph did not
 * reach), waits and scales the sums into means.
 *
 * ZeRO-1. Rank r owns the flat range [lo, hi) (st_dist_shard_range). A
 * bucket [a, b) is reduce-scattered (MPI_Ireduce_scatter) with counts =
 * its overlap with each rank's range, so each rank receives the sums of its
 * own elements into a shard buffer. The step computes the global gradient
 * norm (sum of squares of the shards, all-reduced), clips, runs AdamW on the
 * shard — the same float arithmetic as src/model/optim.c, element for
 * element — and all-gathers the updated parameters through a flat copy.
 * Checkpoints gather the moments into a temporary full st_optim on rank 0
 * and write st_train_state_save's format; a load extracts the shard of the
 * full state, so any number of ranks resumes any checkpoint.
 *
 * Ownership: the st_ddp owns the flat buffers, the optimizer (or the shard
 * state) and the views it hangs on the parameters; it borrows the model and
 * the communicator. Threads: the training thread; the optimizer step splits
 * its loop over the context's pool (BLAS is idle then).
 */
#include "dist/dist_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bucket {
    int64_t lo, hi;       /* flat range */
    int n_params;         /* parameters in it */
    int pending;          /* not yet final in this backward */
    int *counts, *displs; /* ZeRO: reduce-scatter counts per rank */
    char what[48];
    dist_job job;
} bucket;

struct st_ddp {
    st_dist *d;
    st_model *m;
    st_ctx *ctx;
    st_ddp_params p;
    int n;                /* parameters */
    st_tensor **param;    /* [n] */
    int64_t *numel, *off; /* [n]: elements, flat offset */
    int *bucket_of;       /* [n] */
    struct pidx {
        const st_tensor *t;
        int i;
    } * sorted; /* parameters by address */
    int nb;
    bucket *b;
    int64_t total; /* elements of all parameters */
    float *flat;   /* [total] gradients */
    bool sync, prepared;
    int next_launch;
    bool *ready; /* [nb] */
    /* without ZeRO */
    st_optim *o;
    /* ZeRO-1 */
    int64_t lo, hi;      /* this rank's shard */
    float *sg, *sm, *sv; /* [hi - lo]: reduced grads, exp_avg, exp_avg_sq */
    float *fp;           /* [total]: parameters for the all-gather */
    int *ag_counts, *ag_displs;
    int *order; /* parameters by flat offset */
    int64_t step;
    /* the current step's AdamW scalars (as optim.c) */
    float lr, decay_mul, b1, b2, one_m_b1, one_m_b2, step_size, bc2_sqrt, eps;
    st_ddp_stats stats;
};

st_ddp_params st_ddp_default_params(void) {
    st_ddp_params p;
    memset(&p, 0, sizeof p);
    p.bucket_bytes = (size_t)25 << 20;
    p.zero = 0;
    p.optim = st_optim_default_params(ST_OPTIM_ADAMW);
    return p;
}

static int cmp_pidx(const void *a, const void *b) {
    const struct pidx *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t ? 1 : 0;
}

static int param_index(const st_ddp *dd, const st_tensor *t) {
    int lo = 0, hi = dd->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (dd->sorted[mid].t == t) return dd->sorted[mid].i;
        if (dd->sorted[mid].t < t)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* ---- bucket collectives ----------------------------------------------------------------- */

static int start_allreduce_f32(dist_job *j, MPI_Comm comm, MPI_Request *req) {
    if (comm == MPI_COMM_NULL) return MPI_SUCCESS;
    return MPI_Iallreduce(MPI_IN_PLACE, j->send, j->count, MPI_FLOAT, MPI_SUM, comm, req);
}

static int start_reduce_scatter_f32(dist_job *j, MPI_Comm comm, MPI_Request *req) {
    if (comm == MPI_COMM_NULL) { /* one rank: its shard is everything */
        memcpy(j->recv, j->send, sizeof(float) * (size_t)j->counts[0]);
        return MPI_SUCCESS;
    }
    return MPI_Ireduce_scatter(j->send, j->recv, j->counts, MPI_FLOAT, MPI_SUM, comm, req);
}

static int start_allgatherv_f32(dist_job *j, MPI_Comm comm, MPI_Request *req) {
    if (comm == MPI_COMM_NULL) return MPI_SUCCESS;
    return MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, j->recv, j->counts, j->displs,
                           MPI_FLOAT, comm, req);
}

static int start_gatherv_f32(dist_job *j, MPI_Comm comm, MPI_Request *req) {
    if (comm == MPI_COMM_NULL) {
        memcpy(j->recv, j->send, sizeof(float) * (size_t)j->count);
        return MPI_SUCCESS;
    }
    return MPI_Igatherv(j->send, j->count, MPI_FLOAT, j->recv, j->counts, j->displs, MPI_FLOAT,
                        j->root, comm, req);
}

static st_status launch_ready(st_ddp *dd) {
    while (dd->next_launch < dd->nb && dd->ready[dd->next_launch]) {
        bucket *b = &dd->b[dd->next_launch++];
        ST_TRY(st__dist_submit(dd->d, &b->job));
    }
    return ST_OK;
}

static st_status on_grad_ready(void *user, st_tensor *t) {
    st_ddp *dd = user;
    if (!dd->sync) return ST_OK;
    int i = param_index(dd, t);
    if (i < 0) return ST_OK; /* not one of the model's parameters */
    bucket *b = &dd->b[dd->bucket_of[i]];
    if (b->pending > 0 && --b->pending == 0) {
        dd->ready[dd->bucket_of[i]] = true;
        ST_TRY(launch_ready(dd));
    }
    st__dist_progress(dd->d);
    return ST_OK;
}

/* ---- lifetime --------------------------------------------------------------------------- */

st_status st_ddp_new(st_dist *d, st_model *m, const st_ddp_params *params, st_ddp **out) {
    if (!d || !m || !out) return st__fail(ST_ERR_INVALID_ARG, "st_ddp_new: d, m or out is NULL");
    *out = NULL;
    st_ddp_params p = params ? *params : st_ddp_default_params();
    if (p.zero != 0 && p.zero != 1)
        return st__fail(ST_ERR_INVALID_ARG, "st_ddp_new: ZeRO stage %d (0 or 1)", p.zero);
    if (p.zero && p.optim.kind != ST_OPTIM_ADAMW)
        return st__fail(ST_ERR_INVALID_ARG, "st_ddp_new: ZeRO-1 shards AdamW state only");
    if (p.bucket_bytes < 4) p.bucket_bytes = 4;
    st_ddp *dd = st_calloc(1, sizeof *dd);
    if (!dd) return st__fail(ST_ERR_NOMEM, "st_ddp_new: out of memory");
    dd->d = d;
    dd->m = m;
    dd->p = p;
    dd->n = st_model_n_tensors(m);
    int n = dd->n, size = st_dist_size(d), rank = st_dist_rank(d);
    st_status s = ST_OK;
    dd->param = st_calloc((size_t)n + 1, sizeof *dd->param);
    dd->numel = st_calloc((size_t)n + 1, sizeof *dd->numel);
    dd->off = st_calloc((size_t)n + 1, sizeof *dd->off);
    dd->bucket_of = st_calloc((size_t)n + 1, sizeof *dd->bucket_of);
    dd->sorted = st_calloc((size_t)n + 1, sizeof *dd->sorted);
    int64_t *blo = st_calloc((size_t)n + 2, sizeof *blo);
    if (!dd->param || !dd->numel || !dd->off || !dd->bucket_of || !dd->sorted || !blo) {
        s = st__fail(ST_ERR_NOMEM, "st_ddp_new: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        dd->param[i] = st_model_tensor(m, i, NULL);
        if (dd->param[i]->dtype != ST_F32 || !st_tensor_is_contiguous(dd->param[i])) {
            s = st__fail(ST_ERR_STATE, "st_ddp_new: parameter %d is not a contiguous f32 tensor",
                         i);
            goto out;
        }
        dd->numel[i] = st_tensor_numel(dd->param[i]);
        dd->sorted[i] = (struct pidx){dd->param[i], i};
    }
    qsort(dd->sorted, (size_t)n, sizeof *dd->sorted, cmp_pidx);
    dd->ctx = n > 0 ? dd->param[0]->ctx : NULL;
    dd->nb = st_dist_plan_buckets(dd->numel, n, p.bucket_bytes, dd->off, dd->bucket_of, blo);
    dd->total = blo[dd->nb];
    dd->b = st_calloc((size_t)dd->nb + 1, sizeof *dd->b);
    dd->ready = st_calloc((size_t)dd->nb + 1, sizeof *dd->ready);
    dd->flat = st_calloc((size_t)dd->total + 1, sizeof(float));
    if (!dd->b || !dd->ready || !dd->flat) {
        s = st__fail(ST_ERR_NOMEM, "st_ddp_new: out of memory for %lld gradients",
                     (long long)dd->total);
        goto out;
    }
    /* the grads become views of the flat buffer (values kept) */
    for (int i = 0; i < n; i++) {
        st_tensor *t = dd->param[i], *g = NULL;
        s = st_tensor_wrap(t->ctx, ST_F32, t->ndim, t->ne, dd->flat + dd->off[i], &g);
        if (s != ST_OK) goto out;
        if (t->grad) {
            memcpy(g->data, t->grad->data, sizeof(float) * (size_t)dd->numel[i]);
            st_tensor_free(t->grad);
        }
        t->grad = g;
    }
    if (p.zero) {
        st_dist_shard_range(dd->total, size, rank, &dd->lo, &dd->hi);
        int64_t ns = dd->hi - dd->lo;
        dd->sg = st_calloc((size_t)ns + 1, sizeof(float));
        dd->sm = st_calloc((size_t)ns + 1, sizeof(float));
        dd->sv = st_calloc((size_t)ns + 1, sizeof(float));
        dd->fp = st_calloc((size_t)dd->total + 1, sizeof(float));
        dd->ag_counts = st_calloc((size_t)size, sizeof(int));
        dd->ag_displs = st_calloc((size_t)size, sizeof(int));
        dd->order = st_calloc((size_t)n + 1, sizeof(int));
        if (!dd->sg || !dd->sm || !dd->sv || !dd->fp || !dd->ag_counts || !dd->ag_displs ||
            !dd->order) {
            s = st__fail(ST_ERR_NOMEM, "st_ddp_new: out of memory for the ZeRO shard");
            goto out;
        }
        if (dd->total > 0x7fffffffLL) {
            s = st__fail(ST_ERR_UNSUPPORTED, "st_ddp_new: %lld parameters exceed MPI's int counts",
                         (long long)dd->total);
            goto out;
        }
        for (int r = 0; r < size; r++) {
            int64_t a, c;
            st_dist_shard_range(dd->total, size, r, &a, &c);
            dd->ag_counts[r] = (int)(c - a);
            dd->ag_displs[r] = (int)a;
        }
        for (int i = 0; i < n; i++)
            dd->order[n - 1 - i] = i; /* flat layout is backward order */
    } else {
        s = st_optim_new(m, &p.optim, &dd->o);
        if (s != ST_OK) goto out;
    }
    for (int k = 0; k < dd->nb; k++) {
        bucket *b = &dd->b[k];
        b->lo = blo[k];
        b->hi = blo[k + 1];
        snprintf(b->what, sizeof b->what, "gradient bucket %d of %d", k + 1, dd->nb);
        b->job.what = b->what;
        b->job.send = dd->flat + b->lo;
        b->job.count = (int)(b->hi - b->lo);
        if (b->hi - b->lo > 0x7fffffffLL) {
            s = st__fail(ST_ERR_UNSUPPORTED, "st_ddp_new: a bucket of %lld elements is too large",
                         (long long)(b->hi - b->lo));
            goto out;
        }
        if (p.zero) {
            b->counts = st_calloc((size_t)size, sizeof(int));
            if (!b->counts) {
                s = st__fail(ST_ERR_NOMEM, "st_ddp_new: out of memory");
                goto out;
            }
            for (int r = 0; r < size; r++) {
                int64_t a, c;
                st_dist_shard_range(dd->total, size, r, &a, &c);
                int64_t x = a > b->lo ? a : b->lo, y = c < b->hi ? c : b->hi;
                b->counts[r] = y > x ? (int)(y - x) : 0;
            }
            int64_t x = dd->lo > b->lo ? dd->lo : b->lo;
            b->job.recv = dd->sg + (x < dd->hi ? x - dd->lo : 0);
            b->job.counts = b->counts;
            b->job.start = start_reduce_scatter_f32;
        } else {
            b->job.start = start_allreduce_f32;
        }
    }
    for (int i = 0; i < n; i++)
        dd->b[dd->bucket_of[i]].n_params++;
    dd->stats.n_buckets = dd->nb;
    dd->stats.bytes_per_sync = dd->total * 4;
    if (dd->ctx) s = st_autograd_set_grad_ready_hook(dd->ctx, on_grad_ready, dd);
out:
    st_free(blo);
    if (s != ST_OK) {
        st_ddp_free(dd);
        return s;
    }
    *out = dd;
    return ST_OK;
}

void st_ddp_free(st_ddp *dd) {
    if (!dd) return;
    if (dd->ctx) (void)st_autograd_set_grad_ready_hook(dd->ctx, NULL, NULL);
    /* the model may outlive us: give its parameters grads of their own */
    for (int i = 0; dd->param && i < dd->n; i++) {
        st_tensor *t = dd->param[i];
        if (t && t->grad && dd->flat && t->grad->data == (void *)(dd->flat + dd->off[i])) {
            st_tensor *g = NULL;
            if (st_tensor_new(t->ctx, ST_F32, t->ndim, t->ne, &g) == ST_OK)
                memcpy(g->data, t->grad->data, sizeof(float) * (size_t)dd->numel[i]);
            st_tensor_free(t->grad);
            t->grad = g;
        }
    }
    for (int k = 0; dd->b && k < dd->nb; k++)
        st_free(dd->b[k].counts);
    st_optim_free(dd->o);
    st_free(dd->param);
    st_free(dd->numel);
    st_free(dd->off);
    st_free(dd->bucket_of);
    st_free(dd->sorted);
    st_free(dd->b);
    st_free(dd->ready);
    st_free(dd->flat);
    st_free(dd->sg);
    st_free(dd->sm);
    st_free(dd->sv);
    st_free(dd->fp);
    st_free(dd->ag_counts);
    st_free(dd->ag_displs);
    st_free(dd->order);
    st_free(dd);
}

/* ---- a step ----------------------------------------------------------------------------- */

void st_ddp_prepare(st_ddp *dd, bool sync) {
    if (!dd) return;
    dd->sync = sync;
    dd->prepared = true;
    dd->next_launch = 0;
    for (int k = 0; k < dd->nb; k++) {
        dd->b[k].pending = dd->b[k].n_params;
        dd->ready[k] = false;
    }
}

static void scale_range(float *x, int64_t n, float s) {
    for (int64_t k = 0; k < n; k++)
        x[k] *= s;
}

st_status st_ddp_finish(st_ddp *dd, float scale) {
    if (!dd) return st__fail(ST_ERR_INVALID_ARG, "st_ddp_finish: dd is NULL");
    if (!dd->prepared || !dd->sync)
        return st__fail(ST_ERR_STATE, "st_ddp_finish: no st_ddp_prepare(dd, true) before the "
                                      "last backward");
    dd->prepared = false;
    dd->sync = false;
    for (int k = dd->next_launch; k < dd->nb; k++)
        dd->ready[k] = true; /* backward is over: every gradient is final */
    ST_TRY(launch_ready(dd));
    double waited = 0.0;
    ST_TRY(st__dist_wait_all(dd->d, &waited));
    dd->stats.exposed_s += waited;
    for (int k = 0; k < dd->nb; k++)
        dd->stats.comm_s += dd->b[k].job.t_end - dd->b[k].job.t_start;
    dd->stats.syncs++;
    if (scale != 1.0f) {
        if (dd->p.zero)
            scale_range(dd->sg, dd->hi - dd->lo, scale);
        else
            scale_range(dd->flat, dd->total, scale);
    }
    return ST_OK;
}

void st_ddp_zero_grad(st_ddp *dd) {
    if (dd && dd->flat) memset(dd->flat, 0, sizeof(float) * (size_t)dd->total);
}

/* AdamW over the shard's flat range [begin, end) (offsets relative to lo). */
static void zero_adamw(void *arg, int64_t begin, int64_t end) {
    const st_ddp *dd = arg;
    int64_t a = dd->lo + begin, z = dd->lo + end;
    for (int k = 0; k < dd->n; k++) {
        int i = dd->order[k];
        int64_t pa = dd->off[i], pz = pa + dd->numel[i];
        if (pz <= a) continue;
        if (pa >= z) break;
        int64_t x = pa > a ? pa : a, y = pz < z ? pz : z;
        float *restrict p = (float *)dd->param[i]->data + (x - pa);
        const float *restrict g = dd->sg + (x - dd->lo);
        float *restrict m = dd->sm + (x - dd->lo), *restrict v = dd->sv + (x - dd->lo);
        const float dm = dd->param[i]->ndim >= 2 ? dd->decay_mul : 1.0f;
        for (int64_t e = 0; e < y - x; e++) { /* optim.c's adamw_range, element for element */
            float gk = g[e];
            float mk = dd->b1 * m[e] + dd->one_m_b1 * gk;
            float vk = dd->b2 * v[e] + dd->one_m_b2 * gk * gk;
            m[e] = mk;
            v[e] = vk;
            p[e] = p[e] * dm - dd->step_size * (mk / (sqrtf(vk) / dd->bc2_sqrt + dd->eps));
        }
    }
}

static st_status zero_step(st_ddp *dd, float lr, float max_norm, float *norm) {
    double t0 = st_time_s();
    int64_t ns = dd->hi - dd->lo;
    double sq = 0.0;
    for (int64_t k = 0; k < ns; k++)
        sq += (double)dd->sg[k] * (double)dd->sg[k];
    ST_TRY(st_dist_allreduce_sum_f64(dd->d, &sq, 1));
    double total = sqrt(sq);
    if (norm) *norm = (float)total;
    if (max_norm > 0.0f && isfinite(total)) { /* st_clip_grad_norm's rule */
        double coef = (double)max_norm / (total + 1e-6);
        if (coef < 1.0) scale_range(dd->sg, ns, (float)coef);
    }
    dd->step++;
    const st_optim_params *p = &dd->p.optim;
    double t = (double)dd->step;
    double bc1 = 1.0 - pow((double)p->beta1, t), bc2 = 1.0 - pow((double)p->beta2, t);
    dd->lr = lr;
    dd->decay_mul = (float)(1.0 - (double)lr * (double)p->weight_decay);
    dd->b1 = p->beta1;
    dd->b2 = p->beta2;
    dd->one_m_b1 = (float)(1.0 - (double)p->beta1);
    dd->one_m_b2 = (float)(1.0 - (double)p->beta2);
    dd->step_size = (float)((double)lr / bc1);
    dd->bc2_sqrt = (float)sqrt(bc2);
    dd->eps = p->eps;
    double t1 = st_time_s();
    st_pool *pool = dd->ctx ? st_backend_cpu_pool(st_ctx_backend(dd->ctx)) : NULL;
    if (pool)
        st_pool_parallel_for(pool, ns, (int64_t)1 << 14, zero_adamw, dd);
    else
        zero_adamw(dd, 0, ns);
    double t2 = st_time_s();
    /* all-gather the parameters through the flat copy */
    for (int i = 0; i < dd->n; i++) {
        int64_t pa = dd->off[i], pz = pa + dd->numel[i];
        int64_t x = pa > dd->lo ? pa : dd->lo, y = pz < dd->hi ? pz : dd->hi;
        if (y > x)
            memcpy(dd->fp + x, (float *)dd->param[i]->data + (x - pa),
                   sizeof(float) * (size_t)(y - x));
    }
    dist_job j = {.start = start_allgatherv_f32,
                  .recv = dd->fp,
                  .counts = dd->ag_counts,
                  .displs = dd->ag_displs,
                  .what = "the parameter all-gather (ZeRO-1)"};
    ST_TRY(st__dist_run(dd->d, &j));
    if (st_dist_size(dd->d) > 1)
        for (int i = 0; i < dd->n; i++)
            memcpy(dd->param[i]->data, dd->fp + dd->off[i], sizeof(float) * (size_t)dd->numel[i]);
    dd->stats.step_comm_s += (t1 - t0) + (st_time_s() - t2);
    return ST_OK;
}

st_status st_ddp_step(st_ddp *dd, float lr, float max_norm, float *norm) {
    if (!dd) return st__fail(ST_ERR_INVALID_ARG, "st_ddp_step: dd is NULL");
    if (!(lr >= 0.0f) || !isfinite(lr))
        return st__fail(ST_ERR_INVALID_ARG, "st_ddp_step: lr %g is not a finite value >= 0",
                        (double)lr);
    if (dd->p.zero) return zero_step(dd, lr, max_norm, norm);
    if (max_norm > 0.0f || norm) ST_TRY(st_clip_grad_norm(dd->m, max_norm, norm));
    return st_optim_step(dd->o, lr);
}

size_t st_ddp_optim_bytes(const st_ddp *dd) {
    if (!dd) return 0;
    if (dd->p.zero) return (size_t)(dd->hi - dd->lo) * 2 * sizeof(float);
    size_t b = 0;
    for (int i = 0; i < st_optim_n_state(dd->o); i++)
        b += (size_t)st_tensor_numel(st_optim_state(dd->o, i, NULL)) * sizeof(float);
    return b;
}

int64_t st_ddp_optim_step(const st_ddp *dd) {
    if (!dd) return 0;
    return dd->p.zero ? dd->step : st_optim_get_step(dd->o);
}

/* ---- checkpoints ----------------------------------------------------------------------- */

/* The state tensors of a full AdamW optimizer: exp_avg of parameter i is
 * state 2i, exp_avg_sq 2i+1 (optim.c's order); checked by name. */
static st_status moments_of(st_ddp *dd, st_optim *o, int i, float **m, float **v) {
    const char *pname = NULL, *n1 = NULL, *n2 = NULL;
    (void)st_model_tensor(dd->m, i, &pname);
    st_tensor *a = st_optim_state(o, 2 * i, &n1), *b = st_optim_state(o, 2 * i + 1, &n2);
    size_t pl = strlen(pname);
    if (!a || !b || strncmp(n1, pname, pl) || strcmp(n1 + pl, ".exp_avg") ||
        strncmp(n2, pname, pl) || strcmp(n2 + pl, ".exp_avg_sq") ||
        st_tensor_numel(a) != dd->numel[i])
        return st__fail(ST_ERR_INTERNAL, "ddp: the optimizer's state of %s is not where expected",
                        pname);
    *m = a->data;
    *v = b->data;
    return ST_OK;
}

st_status st_ddp_save(st_ddp *dd, const char *dir, const st_train_state *ts) {
    if (!dd || !dir || !ts) return st__fail(ST_ERR_INVALID_ARG, "st_ddp_save: NULL argument");
    int rank = st_dist_rank(dd->d);
    st_status s = ST_OK;
    char msg[1024] = "";
    if (!dd->p.zero) {
        if (rank == 0) s = st_train_state_save(dir, dd->o, ts);
    } else {
        float *fm = NULL, *fv = NULL;
        st_optim *tmp = NULL;
        if (rank == 0) {
            fm = st_malloc(sizeof(float) * (size_t)dd->total + 1);
            fv = st_malloc(sizeof(float) * (size_t)dd->total + 1);
            if (!fm || !fv)
                s = st__fail(ST_ERR_NOMEM, "%s: no memory to gather the optimizer", dir);
        }
        /* rank 0 says whether it can receive before anyone gathers */
        double ok = s == ST_OK ? 1.0 : 0.0;
        st_status c = st_dist_broadcast(dd->d, &ok, sizeof ok, 0);
        int ns = (int)(dd->hi - dd->lo);
        dist_job jm = {.start = start_gatherv_f32,
                       .send = dd->sm,
                       .recv = fm,
                       .count = ns,
                       .counts = dd->ag_counts,
                       .displs = dd->ag_displs,
                       .root = 0,
                       .what = "the gather of the optimizer state"};
        dist_job jv = jm;
        jv.send = dd->sv;
        jv.recv = fv;
        if (c == ST_OK && ok != 0.0) {
            c = st__dist_run(dd->d, &jm);
            if (c == ST_OK) c = st__dist_run(dd->d, &jv);
        } else if (c == ST_OK && rank != 0) {
            s = st__fail(ST_ERR_NOMEM, "%s: rank 0 has no memory to gather the optimizer", dir);
        }
        if (c != ST_OK) {
            st_free(fm);
            st_free(fv);
            return c; /* communication failed: the caller aborts */
        }
        if (rank == 0 && s == ST_OK) {
            s = st_optim_new(dd->m, &dd->p.optim, &tmp);
            for (int i = 0; s == ST_OK && i < dd->n; i++) {
                float *m = NULL, *v = NULL;
                s = moments_of(dd, tmp, i, &m, &v);
                if (s == ST_OK) {
                    memcpy(m, fm + dd->off[i], sizeof(float) * (size_t)dd->numel[i]);
                    memcpy(v, fv + dd->off[i], sizeof(float) * (size_t)dd->numel[i]);
                }
            }
            if (s == ST_OK) {
                st_optim_set_step(tmp, dd->step);
                s = st_train_state_save(dir, tmp, ts);
            }
            st_optim_free(tmp);
        }
        st_free(fm);
        st_free(fv);
    }
    if (s != ST_OK) snprintf(msg, sizeof msg, "%s", st_last_error());
    /* every rank returns rank 0's verdict */
    double code = (double)s;
    ST_TRY(st_dist_broadcast(dd->d, &code, sizeof code, 0));
    if (code != 0.0) {
        ST_TRY(st_dist_broadcast(dd->d, msg, sizeof msg, 0));
        return st__fail((st_status)code, "%s", msg);
    }
    return ST_OK;
}

st_status st_ddp_load(st_ddp *dd, const char *dir, st_train_state *ts) {
    if (!dd || !dir || !ts) return st__fail(ST_ERR_INVALID_ARG, "st_ddp_load: NULL argument");
    if (!dd->p.zero) return st_train_state_load(dir, dd->o, ts);
    st_optim *tmp = NULL;
    ST_TRY(st_optim_new(dd->m, &dd->p.optim, &tmp));
    st_status s = st_train_state_load(dir, tmp, ts);
    for (int i = 0; s == ST_OK && i < dd->n; i++) {
        float *m = NULL, *v = NULL;
        s = moments_of(dd, tmp, i, &m, &v);
        int64_t pa = dd->off[i], pz = pa + dd->numel[i];
        int64_t x = pa > dd->lo ? pa : dd->lo, y = pz < dd->hi ? pz : dd->hi;
        if (s == ST_OK && y > x) {
            memcpy(dd->sm + (x - dd->lo), m + (x - pa), sizeof(float) * (size_t)(y - x));
            memcpy(dd->sv + (x - dd->lo), v + (x - pa), sizeof(float) * (size_t)(y - x));
        }
    }
    if (s == ST_OK) dd->step = st_optim_get_step(tmp);
    st_optim_free(tmp);
    return s;
}

void st_ddp_get_stats(const st_ddp *dd, st_ddp_stats *s) {
    if (!s) return;
    if (!dd) {
        memset(s, 0, sizeof *s);
        return;
    }
    *s = dd->stats;
}

void st_ddp_reset_stats(st_ddp *dd) {
    if (!dd) return;
    int nb = dd->stats.n_buckets;
    int64_t bytes = dd->stats.bytes_per_sync;
    memset(&dd->stats, 0, sizeof dd->stats);
    dd->stats.n_buckets = nb;
    dd->stats.bytes_per_sync = bytes;
}
