/*
 * vecindex_hnsw.c — the HNSW graph: inserts and approximate search.
 *
 * The algorithm is Malkov & Yashunin's (arXiv:1603.09320), in the shape
 * hnswlib gave it: each node draws a top layer from a seeded exponential
 * (mL = 1/ln M); an insert descends greedily from the entry point to its
 * top layer, then on each layer down to 0 runs a beam search with
 * ef_construction candidates, keeps at most M neighbours chosen by the
 * heuristic (a candidate is dropped when it is closer to an already kept
 * neighbour than to the new node), links both ways, and shrinks any
 * neighbour's list that overflows (M on upper layers, M0 = 2M on layer 0)
 * with the same heuristic.
 *
 * Threads: an add splits its rows over the context's pool (threads take
 * chunks from a shared counter). Each node has a one-byte spin lock held
 * while its link list is read (copied out) or written; a global mutex
 * guards the entry point and is held for the whole insert of a node that
 * raises the top layer. Searches split queries over the pool and read the
 * graph without locks (no writer runs during a search). Each thread has its
 * own scratch (visited tags, heaps), allocated once per call.
 * Tombstoned and filtered-out nodes are expanded (they route) but never
 * enter the result list.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vecindex_impl.h"

typedef struct cand {
    float d;
    int32_t id;
} cand;

typedef struct scratch {
    uint32_t *visit;
    uint32_t epoch;
    int64_t n_visit; /* tags in visit */
    cand *cq, *rs, *tmp;
    int cq_n, cq_cap, rs_n, rs_cap, tmp_cap;
    int32_t *nbuf; /* copy of one link list (1 + m0) */
    st__vec_hit *hits; /* a query's final k (tmp_cap) */
} scratch;

static void scratch_free(scratch *s) {
    st_free(s->visit), st_free(s->cq), st_free(s->rs), st_free(s->tmp), st_free(s->nbuf);
    st_free(s->hits);
    memset(s, 0, sizeof *s);
}

static st_status scratch_init(scratch *s, int64_t n, int ef, int m0) {
    memset(s, 0, sizeof *s);
    s->visit = st_calloc((size_t)n, sizeof(uint32_t));
    s->n_visit = n;
    s->cq_cap = (int)n + 1; /* a node enters the queue at most once per search */
    s->rs_cap = ef + 2;
    s->tmp_cap = (ef > m0 ? ef : m0) + 2;
    s->cq = st_malloc((size_t)s->cq_cap * sizeof(cand));
    s->rs = st_malloc((size_t)s->rs_cap * sizeof(cand));
    s->tmp = st_malloc((size_t)s->tmp_cap * sizeof(cand));
    s->nbuf = st_malloc((size_t)(m0 + 1) * sizeof(int32_t));
    s->hits = st_malloc((size_t)s->tmp_cap * sizeof(st__vec_hit));
    if (!s->visit || !s->cq || !s->rs || !s->tmp || !s->nbuf || !s->hits) {
        scratch_free(s);
        return st__fail(ST_ERR_NOMEM, "vecindex: no memory for search scratch");
    }
    return ST_OK;
}

static inline void new_epoch(scratch *s) {
    if (++s->epoch == 0) {
        memset(s->visit, 0, (size_t)s->n_visit * sizeof(uint32_t));
        s->epoch = 1;
    }
}

/* ---- heaps: candidates (min by d), results (max by d) ---------------------------- */

static inline void cq_push(scratch *s, cand c) {
    ST_ASSERT(s->cq_n < s->cq_cap);
    cand *h = s->cq;
    int i = s->cq_n++;
    while (i > 0) {
        int p = (i - 1) >> 1;
        if (h[p].d <= c.d) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static inline cand cq_pop(scratch *s) {
    cand *h = s->cq, top = h[0], x = h[--s->cq_n];
    int n = s->cq_n, i = 0;
    for (;;) {
        int l = 2 * i + 1;
        if (l >= n) break;
        if (l + 1 < n && h[l + 1].d < h[l].d) l++;
        if (h[l].d >= x.d) break;
        h[i] = h[l];
        i = l;
    }
    if (n) h[i] = x;
    return top;
}

static inline void rs_push(scratch *s, cand c) { /* caller keeps rs_n <= ef+1 */
    cand *h = s->rs;
    int i = s->rs_n++;
    while (i > 0) {
        int p = (i - 1) >> 1;
        if (h[p].d >= c.d) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static inline void rs_pop(scratch *s) {
    cand *h = s->rs, x = h[--s->rs_n];
    int n = s->rs_n, i = 0;
    for (;;) {
        int l = 2 * i + 1;
        if (l >= n) break;
        if (l + 1 < n && h[l + 1].d > h[l].d) l++;
        if (h[l].d <= x.d) break;
        h[i] = h[l];
        i = l;
    }
    if (n) h[i] = x;
}

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* ---- link lists ------------------------------------------------------------------ */

static inline void lock_node(atomic_uchar *locks, int64_t id) {
    if (!locks) return;
    while (atomic_exchange_explicit(&locks[id], 1, memory_order_acquire))
        while (atomic_load_explicit(&locks[id], memory_order_relaxed)) __builtin_ia32_pause();
}
static inline void unlock_node(atomic_uchar *locks, int64_t id) {
    if (locks) atomic_store_explicit(&locks[id], 0, memory_order_release);
}

/* The link list of id on level (count then ids): the list itself when no
 * writer runs, else a copy into buf taken under the node's lock. */
static inline const int32_t *read_links(const st_vecindex *ix, int64_t id, int level,
                                        int32_t *buf) {
    const int32_t *L = st__vec_links(ix, id, level);
    if (!ix->locks) return L;
    lock_node(ix->locks, id);
    memcpy(buf, L, (size_t)(L[0] + 1) * sizeof(int32_t));
    unlock_node(ix->locks, id);
    return buf;
}

typedef struct allow {
    const uint8_t *deleted; /* NULL: everything allowed */
    st_vec_filter_fn filter;
    void *user;
} allow;

static inline bool allowed(const allow *a, int64_t id) {
    if (!a->deleted) return true;
    if (a->deleted[id]) return false;
    return !a->filter || a->filter(id, a->user);
}

/* Greedy descent on one layer from *cur towards q. */
static void greedy(const st_vecindex *ix, scratch *s, const float *q, int level, int32_t *cur,
                   float *curd) {
    bool changed = true;
    while (changed) {
        changed = false;
        const int32_t *L = read_links(ix, *cur, level, s->nbuf);
        int c = L[0];
        for (int j = 1; j <= c; j++) {
            if (j + 1 <= c) __builtin_prefetch(ix->vecs + (int64_t)L[j + 1] * ix->p.dim);
            float d = st__vec_dist(ix, q, L[j]);
            if (d < *curd) *curd = d, *cur = L[j], changed = true;
        }
    }
}

/* Beam search on one layer from ep; leaves up to ef results in s->rs (a
 * max-heap). restricted: a is consulted for the result list. */
static void search_layer(const st_vecindex *ix, scratch *s, const float *q, int32_t ep,
                         float epd, int ef, int level, const allow *a) {
    new_epoch(s);
    s->cq_n = s->rs_n = 0;
    const bool restricted = a && a->deleted;
    float bound = INFINITY;
    if (!a || allowed(a, ep)) {
        rs_push(s, (cand){epd, ep});
        bound = epd;
    }
    cq_push(s, (cand){epd, ep});
    s->visit[ep] = s->epoch;
    const int d = ix->p.dim;
    while (s->cq_n) {
        cand c = s->cq[0];
        if (c.d > bound && (s->rs_n == ef || !restricted)) break;
        cq_pop(s);
        const int32_t *L = read_links(ix, c.id, level, s->nbuf);
        int cnt = L[0];
        for (int j = 1; j <= cnt; j++) __builtin_prefetch(s->visit + L[j]);
        for (int j = 1; j <= cnt; j++) {
            int32_t e = L[j];
            if (j + 1 <= cnt) __builtin_prefetch(ix->vecs + (int64_t)L[j + 1] * d);
            if (s->visit[e] == s->epoch) continue;
            s->visit[e] = s->epoch;
            float de = st__vec_dist(ix, q, e);
            if (s->rs_n < ef || de < bound) {
                cq_push(s, (cand){de, e});
                if (!a || allowed(a, e)) {
                    rs_push(s, (cand){de, e});
                    if (s->rs_n > ef) rs_pop(s);
                }
                if (s->rs_n) bound = s->rs[0].d;
            }
        }
    }
}

/* The heuristic: from cands (n, any order; sorted here), keep at most m,
 * dropping a candidate closer to a kept one than to the base. Returns the
 * count kept, in place at cands[0..]. */
static int select_heuristic(const st_vecindex *ix, cand *cands, int n, int m) {
    if (n <= m) return n;
    qsort(cands, (size_t)n, sizeof(cand), cand_cmp);
    int kept = 0;
    for (int i = 0; i < n && kept < m; i++) {
        const float *ci = ix->vecs + (int64_t)cands[i].id * ix->p.dim;
        bool good = true;
        for (int j = 0; j < kept; j++)
            if (st__vec_dist(ix, ci, cands[j].id) < cands[i].d) {
                good = false;
                break;
            }
        if (good) cands[kept++] = cands[i];
    }
    return kept;
}

/* Links id on level to the results in s->rs; returns the closest of them. */
static int32_t connect(st_vecindex *ix, scratch *s, int32_t id, int level) {
    int n = s->rs_n;
    cand *c = s->tmp; /* tmp_cap >= ef + 2 >= n */
    memcpy(c, s->rs, (size_t)n * sizeof(cand));
    int kept = select_heuristic(ix, c, n, ix->p.m);
    if (kept <= ix->p.m && n <= ix->p.m) qsort(c, (size_t)kept, sizeof(cand), cand_cmp);
    int32_t closest = kept ? c[0].id : id;
    int32_t *L = st__vec_links(ix, id, level);
    lock_node(ix->locks, id);
    int w = 0;
    for (int i = 0; i < kept; i++)
        if (c[i].id != id) L[1 + w++] = c[i].id;
    L[0] = w;
    unlock_node(ix->locks, id);
    int mmax = level == 0 ? ix->m0 : ix->p.m;
    for (int i = 0; i < kept; i++) {
        int32_t e = c[i].id;
        if (e == id) continue;
        int32_t *E = st__vec_links(ix, e, level);
        lock_node(ix->locks, e);
        int ce = E[0];
        bool present = false;
        for (int j = 1; j <= ce; j++) present |= E[j] == id;
        if (!present) {
            if (ce < mmax) {
                E[1 + ce] = id;
                E[0] = ce + 1;
            } else {
                /* shrink e's list plus id to mmax by the heuristic, seen from e */
                cand buf[2 * 256 + 2];
                const float *ve = ix->vecs + (int64_t)e * ix->p.dim;
                buf[0] = (cand){st__vec_dist(ix, ve, id), id};
                for (int j = 1; j <= ce; j++) buf[j] = (cand){st__vec_dist(ix, ve, E[j]), E[j]};
                int k = select_heuristic(ix, buf, ce + 1, mmax);
                for (int j = 0; j < k; j++) E[1 + j] = buf[j].id;
                E[0] = k;
            }
        }
        unlock_node(ix->locks, e);
    }
    return closest;
}

static void insert_one(st_vecindex *ix, scratch *s, int32_t id) {
    int lvl = ix->levels[id];
    pthread_mutex_lock(&ix->glock);
    int maxl = ix->max_level;
    int32_t ep = (int32_t)ix->entry;
    bool hold = lvl > maxl;
    if (!hold) pthread_mutex_unlock(&ix->glock);
    if (ep < 0) {
        ix->entry = id, ix->max_level = lvl;
        pthread_mutex_unlock(&ix->glock);
        return;
    }
    const float *q = ix->vecs + (int64_t)id * ix->p.dim;
    float epd = st__vec_dist(ix, q, ep);
    for (int l = maxl; l > lvl; l--) greedy(ix, s, q, l, &ep, &epd);
    for (int l = lvl < maxl ? lvl : maxl; l >= 0; l--) {
        search_layer(ix, s, q, ep, epd, ix->p.ef_construction, l, NULL);
        ep = connect(ix, s, id, l);
        epd = st__vec_dist(ix, q, ep);
    }
    if (hold) {
        ix->entry = id, ix->max_level = lvl;
        pthread_mutex_unlock(&ix->glock);
    }
}

typedef struct add_job {
    st_vecindex *ix;
    int64_t first, n, chunk;
    _Atomic int64_t next;
    scratch *sc;
} add_job;

static void add_worker(void *arg, int ith, int nth) {
    (void)nth;
    add_job *j = arg;
    for (;;) {
        int64_t b = atomic_fetch_add(&j->next, j->chunk);
        if (b >= j->n) break;
        int64_t e = b + j->chunk < j->n ? b + j->chunk : j->n;
        for (int64_t i = b; i < e; i++)
            insert_one(j->ix, &j->sc[ith], (int32_t)(j->first + i));
    }
}

st_status st__hnsw_add(st_vecindex *ix, st_ctx *ctx, int64_t first, int64_t n) {
    st_pool *pool = ctx ? st_backend_cpu_pool(st_ctx_backend(ctx)) : NULL;
    int nth = pool ? st_pool_size(pool) : 1;
    if (n < 64) nth = 1;
    int64_t total = first + n;
    /* the visited tags must cover every row (tags index by id) */
    scratch *sc = st_calloc((size_t)nth, sizeof(scratch));
    atomic_uchar *locks = nth > 1 ? st_calloc((size_t)total, 1) : NULL;
    st_status st = (!sc || (nth > 1 && !locks))
                       ? st__fail(ST_ERR_NOMEM, "vecindex_add: no memory for the build")
                       : ST_OK;
    for (int t = 0; t < nth && st == ST_OK; t++)
        st = scratch_init(&sc[t], total, ix->p.ef_construction, ix->m0);
    if (st == ST_OK) {
        ix->locks = locks;
        int64_t n_saved = ix->n;
        ix->n = total; /* search_layer sizes the visited tags by n */
        add_job j = {.ix = ix, .first = first, .n = n, .chunk = 8, .sc = sc};
        atomic_init(&j.next, 0);
        if (nth > 1) st_pool_run(pool, add_worker, &j);
        else add_worker(&j, 0, 1);
        ix->n = n_saved;
        ix->locks = NULL;
    }
    for (int t = 0; sc && t < nth; t++) scratch_free(&sc[t]);
    st_free(sc);
    st_free(locks);
    return st;
}

/* ---- search ---------------------------------------------------------------------- */

typedef struct search_job {
    const st_vecindex *ix;
    const float *q;
    const st_vec_search_params *sp;
    int64_t nq, *ids;
    float *dists;
    int ef;
    _Atomic int64_t next;
    scratch *sc;
} search_job;

static void search_worker(void *arg, int ith, int nth) {
    (void)nth;
    search_job *j = arg;
    const st_vecindex *ix = j->ix;
    scratch *s = &j->sc[ith];
    int k = j->sp->k;
    allow a = {NULL, NULL, NULL};
    if (ix->n_deleted || j->sp->filter) a = (allow){ix->deleted, j->sp->filter, j->sp->filter_user};
    for (;;) {
        int64_t b = atomic_fetch_add(&j->next, 4);
        if (b >= j->nq) break;
        int64_t e = b + 4 < j->nq ? b + 4 : j->nq;
        for (int64_t i = b; i < e; i++) {
            const float *q = j->q + i * ix->p.dim;
            int32_t ep = (int32_t)ix->entry;
            float epd = st__vec_dist(ix, q, ep);
            for (int l = ix->max_level; l > 0; l--) greedy(ix, s, q, l, &ep, &epd);
            search_layer(ix, s, q, ep, epd, j->ef, 0, &a);
            while (s->rs_n > k) rs_pop(s);
            int n = s->rs_n;
            st__vec_hit *hits = s->hits;
            for (int t = 0; t < n; t++) hits[t] = (st__vec_hit){s->rs[t].d, s->rs[t].id};
            st__topk_sort(hits, n);
            st__topk_emit(hits, n, k, j->ids + i * k, j->dists ? j->dists + i * k : NULL);
        }
    }
}

st_status st__hnsw_search(const st_vecindex *ix, st_ctx *ctx, int64_t nq, const float *q,
                          const st_vec_search_params *sp, int64_t *ids, float *dists) {
    st_pool *pool = ctx ? st_backend_cpu_pool(st_ctx_backend(ctx)) : NULL;
    int nth = pool ? st_pool_size(pool) : 1;
    if (nq < 8) nth = 1;
    int ef = sp->ef < sp->k ? sp->k : sp->ef;
    scratch *sc = st_calloc((size_t)nth, sizeof(scratch));
    st_status st = sc ? ST_OK : st__fail(ST_ERR_NOMEM, "vecindex_search: no memory");
    for (int t = 0; t < nth && st == ST_OK; t++) st = scratch_init(&sc[t], ix->n, ef, ix->m0);
    if (st == ST_OK) {
        search_job j = {.ix = ix, .q = q, .sp = sp, .nq = nq, .ids = ids, .dists = dists,
                        .ef = ef, .sc = sc};
        atomic_init(&j.next, 0);
        if (nth > 1) st_pool_run(pool, search_worker, &j);
        else search_worker(&j, 0, 1);
    }
    for (int t = 0; sc && t < nth; t++) scratch_free(&sc[t]);
    st_free(sc);
    return st;
}
