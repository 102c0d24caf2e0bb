/*
 * vecindex_flat.c — exact search: every stored vector scored against every
 * query, the scores in tiles from cblas_sgemm (OpenBLAS), the best k kept in
 * a bounded max-heap per query.
 *
 * Queries go in batches of QB; within a batch the stored rows are split into
 * one contiguous range per pool thread, and each thread multiplies the batch
 * by tiles of TB of its rows with a single-threaded sgemm (BLAS never runs
 * multithreaded beside the pool: the BLAS thread count is set to 1 for the
 * call and restored after). L2 distances come from the norms:
 * |q|^2 + |x|^2 - 2 q.x (clamped at 0); inner product is -q.x. int8 rows are
 * widened to f32 one tile at a time (x = scale * code) before the sgemm.
 * Each thread keeps its own heaps; they are merged per query at the end of a
 * batch, ties going to the smaller id, so the answer does not depend on the
 * thread count. Scratch (tiles, heaps) is allocated once per call.
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "vecindex_impl.h"

enum { QB = 256, TB = 1024 };

typedef struct flat_job {
    const st_vecindex *ix;
    const st_vec_search_params *sp;
    const float *q;  /* this batch: qb rows */
    const float *qn; /* their squared norms */
    int qb, k, nth;
    int64_t n;
    float **tile, **deq; /* per thread: [QB][TB], [TB][dim] (int8) */
    st__vec_hit **heap;  /* per thread: [QB][k] */
    int **hn;            /* per thread: [QB] sizes */
} flat_job;

static void flat_worker(void *arg, int ith, int nth) {
    flat_job *j = arg;
    const st_vecindex *ix = j->ix;
    int64_t per = (j->n + nth - 1) / nth, lo = per * ith, hi = lo + per < j->n ? lo + per : j->n;
    int d = ix->p.dim, k = j->k, qb = j->qb;
    float *C = j->tile[ith];
    st__vec_hit *H = j->heap[ith];
    int *hn = j->hn[ith];
    for (int i = 0; i < qb; i++) hn[i] = 0;
    bool l2 = ix->p.metric == ST_VEC_L2, i8 = ix->p.storage == ST_VEC_STORE_I8;
    bool check = ix->n_deleted > 0 || j->sp->filter;
    for (int64_t t0 = lo; t0 < hi; t0 += TB) {
        int tb = (int)(hi - t0 < TB ? hi - t0 : TB);
        const float *X;
        if (i8) {
            float *D = j->deq[ith];
            for (int r = 0; r < tb; r++) {
                const int8_t *c = ix->codes + (t0 + r) * d;
                float s = ix->scales[t0 + r];
                for (int c2 = 0; c2 < d; c2++) D[(int64_t)r * d + c2] = s * (float)c[c2];
            }
            X = D;
        } else
            X = ix->vecs + t0 * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, qb, tb, d, 1.f, j->q, d, X, d, 0.f,
                    C, tb);
        const float *xn = ix->norms + t0;
        for (int i = 0; i < qb; i++) {
            const float *c = C + (int64_t)i * tb;
            st__vec_hit *h = H + (int64_t)i * k;
            int *n = &hn[i];
            float qn = j->qn[i];
            for (int r = 0; r < tb; r++) {
                float dist = l2 ? fmaxf(qn + xn[r] - 2.f * c[r], 0.f) : -c[r];
                if (*n == k && !(dist < h[0].d)) continue; /* ids rise: a tie loses */
                int64_t id = t0 + r;
                if (check && (ix->deleted[id] ||
                              (j->sp->filter && !j->sp->filter(id, j->sp->filter_user))))
                    continue;
                st__topk_push(h, n, k, dist, id);
            }
        }
    }
}

st_status st__flat_search(const st_vecindex *ix, st_ctx *ctx, int64_t nq, const float *q,
                          const st_vec_search_params *sp, int64_t *ids, float *dists) {
    st_pool *pool = ctx ? st_backend_cpu_pool(st_ctx_backend(ctx)) : NULL;
    int nth = pool ? st_pool_size(pool) : 1;
    if (ix->n < (int64_t)nth * 256) nth = 1;
    int k = sp->k, d = ix->p.dim;
    flat_job j = {.ix = ix, .sp = sp, .k = k, .nth = nth, .n = ix->n};
    j.tile = st_calloc((size_t)nth, sizeof(float *));
    j.deq = st_calloc((size_t)nth, sizeof(float *));
    j.heap = st_calloc((size_t)nth, sizeof(st__vec_hit *));
    j.hn = st_calloc((size_t)nth, sizeof(int *));
    float *qn = st_malloc(QB * sizeof(float));
    st__vec_hit *merged = st_malloc((size_t)k * sizeof(st__vec_hit));
    bool ok = j.tile && j.deq && j.heap && j.hn && qn && merged;
    for (int t = 0; ok && t < nth; t++) {
        j.tile[t] = st_malloc((size_t)QB * TB * sizeof(float));
        j.heap[t] = st_malloc((size_t)QB * k * sizeof(st__vec_hit));
        j.hn[t] = st_malloc(QB * sizeof(int));
        if (ix->p.storage == ST_VEC_STORE_I8) j.deq[t] = st_malloc((size_t)TB * d * sizeof(float));
        ok = j.tile[t] && j.heap[t] && j.hn[t] &&
             (ix->p.storage != ST_VEC_STORE_I8 || j.deq[t]);
    }
    st_status st = ok ? ST_OK : st__fail(ST_ERR_NOMEM, "vecindex_search: no memory for flat tiles");
    int blas0 = st_hw_blas_get_threads();
    if (ok && nth > 1) st_hw_blas_set_threads(1);
    for (int64_t b = 0; ok && b < nq; b += QB) {
        j.qb = (int)(nq - b < QB ? nq - b : QB);
        j.q = q + b * d;
        for (int i = 0; i < j.qb; i++) qn[i] = ix->k->ip(j.q + (int64_t)i * d, j.q + (int64_t)i * d, d);
        j.qn = qn;
        if (nth > 1) st_pool_run(pool, flat_worker, &j);
        else flat_worker(&j, 0, 1);
        for (int i = 0; i < j.qb; i++) {
            int m = 0;
            for (int t = 0; t < nth; t++)
                for (int r = 0; r < j.hn[t][i]; r++) {
                    st__vec_hit h = j.heap[t][(int64_t)i * k + r];
                    st__topk_push(merged, &m, k, h.d, h.id);
                }
            st__topk_sort(merged, m);
            st__topk_emit(merged, m, k, ids + (b + i) * k, dists ? dists + (b + i) * k : NULL);
        }
    }
    if (ok && nth > 1) st_hw_blas_set_threads(blas0);
    for (int t = 0; t < nth; t++) {
        if (j.tile) st_free(j.tile[t]);
        if (j.deq) st_free(j.deq[t]);
        if (j.heap) st_free(j.heap[t]);
        if (j.hn) st_free(j.hn[t]);
    }
    st_free(j.tile), st_free(j.deq), st_free(j.heap), st_free(j.hn), st_free(qn), st_free(merged);
    return st;
}
