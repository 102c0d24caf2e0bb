/*
 * test_vecindex.c — the vector index (src/app/vecindex*.c) and the vector
 * file readers.
 *
 * References: a double-precision brute force for flat search (every
 * returned id's true distance must equal the reference distance of its
 * rank, so ties cannot fail the test), recall@10 against that brute force
 * for HNSW (>= 0.95 on 5000 clustered vectors) and for the int8 flat index,
 * the scalar distance kernels for the SIMD levels. Deletes and filters are
 * checked against filtered brute force; save/load must give the same
 * answers bit for bit; a table of hostile index files and vector files must
 * fail with ST_ERR_FORMAT and a message naming the file. Leaks fail the
 * test (the library's allocation counter must come back).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>

#include <cmocka.h>

#include "app/vecindex_impl.h"
#include "strata/vecindex.h"

static char g_dir[256];
static st_ctx *g_ctx;

static void noop(void *arg, int ith, int nth) { (void)arg, (void)ith, (void)nth; }

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/strata_test_vec_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = 2;
    if (st_ctx_new(&cp, &g_ctx) != ST_OK) return -1;
    /* one job, so every worker has started (and freed its start argument)
     * before the tests compare allocation counters */
    st_pool_run(st_backend_cpu_pool(st_ctx_backend(g_ctx)), noop, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    st_ctx_free(g_ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- data ------------------------------------------------------------------------ */

static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float gauss(uint64_t *s) {
    double u = ((double)(rnd(s) >> 11) + 1.0) * 0x1.0p-53, v = (double)(rnd(s) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}
/* n points around nc centres (centres N(0,1) drawn from the seed's high
 * bits, so data and queries with seeds 2j and 2j+1 share them; spread
 * sigma), malloc'd */
static float *clustered(int64_t n, int d, int nc, float sigma, uint64_t seed) {
    uint64_t s = seed / 2 * 1000003u;
    float *c = malloc((size_t)nc * d * 4), *x = malloc((size_t)n * d * 4);
    for (int64_t i = 0; i < (int64_t)nc * d; i++) c[i] = gauss(&s);
    s = seed;
    for (int64_t i = 0; i < n; i++) {
        int k = (int)(rnd(&s) % (uint64_t)nc);
        for (int j = 0; j < d; j++) x[i * d + j] = c[k * d + j] + sigma * gauss(&s);
    }
    free(c);
    return x;
}

static double true_dist(const float *q, const float *x, int d, st_vec_metric m) {
    double s = 0;
    for (int j = 0; j < d; j++) s += m == ST_VEC_L2 ? ((double)q[j] - x[j]) * ((double)q[j] - x[j])
                                                    : -(double)q[j] * x[j];
    return s;
}

typedef struct ref_hit {
    double d;
    int64_t id;
} ref_hit;
static int ref_cmp(const void *a, const void *b) {
    const ref_hit *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

typedef bool (*keep_fn)(int64_t id, void *u);

/* Brute force: k best ids per query (allowed ones only), -1 padded. */
static void brute(const float *x, int64_t n, const float *q, int64_t nq, int d, int k,
                  st_vec_metric m, keep_fn keep, void *u, int64_t *ids, double *dd) {
    ref_hit *h = malloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < nq; i++) {
        int64_t c = 0;
        for (int64_t r = 0; r < n; r++)
            if (!keep || keep(r, u)) h[c].d = true_dist(q + i * d, x + r * d, d, m), h[c++].id = r;
        qsort(h, (size_t)c, sizeof *h, ref_cmp);
        for (int j = 0; j < k; j++) {
            ids[i * k + j] = j < c ? h[j].id : -1;
            if (dd) dd[i * k + j] = j < c ? h[j].d : INFINITY;
        }
    }
    free(h);
}

static double recall(const int64_t *got, const int64_t *ref, int64_t nq, int k) {
    int64_t hit = 0, tot = 0;
    for (int64_t i = 0; i < nq; i++)
        for (int a = 0; a < k; a++) {
            if (ref[i * k + a] < 0) continue;
            tot++;
            for (int b = 0; b < k; b++)
                if (got[i * k + b] == ref[i * k + a]) {
                    hit++;
                    break;
                }
        }
    return tot ? (double)hit / (double)tot : 1.0;
}

static st_vecindex *make(st_vec_kind kind, st_vec_metric m, st_vec_storage s, int d, int efc) {
    st_vecindex_params p = st_vecindex_default_params();
    p.kind = kind, p.metric = m, p.storage = s, p.dim = d, p.ef_construction = efc;
    st_vecindex *ix = NULL;
    assert_int_equal(st_vecindex_new(&p, &ix), ST_OK);
    return ix;
}

/* ---- kernels ----------------------------------------------------------------------- */

static void test_kernels_agree(void **state) {
    (void)state;
    st_hw_info info;
    assert_int_equal(st_hw_query(&info), ST_OK);
    uint64_t s = 7;
    float a[301], b[301];
    for (int i = 0; i < 301; i++) a[i] = gauss(&s), b[i] = gauss(&s);
    const st__vec_kernels *ref = &st__vec_kernels_scalar;
    int levels_run = 0;
    for (int lv = ST_SIMD_AVX2; lv <= ST_SIMD_AVX512; lv++) {
        if (!st_hw_simd_supported(&info, (st_simd_level)lv)) continue;
        const st__vec_kernels *k = st__vec_kernels_for((st_simd_level)lv);
        assert_true(k != ref);
        levels_run++;
        for (int d = 1; d <= 301; d += (d < 40 ? 1 : 13)) {
            double l2 = 0, ip = 0, al = 0;
            for (int j = 0; j < d; j++)
                l2 += ((double)a[j] - b[j]) * ((double)a[j] - b[j]), ip += (double)a[j] * b[j],
                    al += fabs((double)a[j] * b[j]);
            assert_float_equal(ref->l2(a, b, d), l2, 1e-5 * (l2 + 1));
            assert_float_equal(ref->ip(a, b, d), ip, 1e-5 * (al + 1));
            assert_float_equal(k->l2(a, b, d), ref->l2(a, b, d), 1e-5 * (l2 + 1));
            assert_float_equal(k->ip(a, b, d), ref->ip(a, b, d), 1e-5 * (al + 1));
        }
    }
    printf("# kernels: scalar vs %d SIMD level(s); best is %s\n", levels_run,
           st__vec_kernels_best()->name);
}

/* ---- flat ----------------------------------------------------------------------------- */

static void check_exact(const float *x, int64_t n, const float *q, int64_t nq, int d, int k,
                        st_vec_metric m, const int64_t *ids, const float *dists, keep_fn keep,
                        void *u) {
    int64_t *rid = malloc((size_t)nq * k * 8);
    double *rd = malloc((size_t)nq * k * 8);
    brute(x, n, q, nq, d, k, m, keep, u, rid, rd);
    for (int64_t i = 0; i < nq * k; i++) {
        if (rid[i] < 0) {
            assert_int_equal(ids[i], -1);
            assert_true(isinf(dists[i]));
            continue;
        }
        assert_true(ids[i] >= 0 && ids[i] < n);
        if (keep) assert_true(keep(ids[i], u));
        double td = true_dist(q + (i / k) * d, x + ids[i] * d, d, m);
        double tol = 1e-4 * (fabs(rd[i]) + 1);
        assert_float_equal(td, rd[i], tol);       /* the right rank's distance */
        assert_float_equal(dists[i], td, 4 * tol); /* and reported correctly */
    }
    free(rid), free(rd);
}

static void test_flat_exact(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    const int64_t n = 3000, nq = 300;
    const int d = 37, k = 10;
    float *x = clustered(n, d, 20, 0.5f, 2), *q = clustered(nq, d, 20, 0.5f, 3);
    int64_t *ids = malloc((size_t)nq * k * 8);
    float *dd = malloc((size_t)nq * k * 4);
    for (int m = 0; m < 2; m++)
        for (int threads = 0; threads < 2; threads++) {
            st_vecindex *ix = make(ST_VEC_FLAT, (st_vec_metric)m, ST_VEC_STORE_F32, d, 0);
            int64_t first = -1;
            assert_int_equal(st_vecindex_add(ix, NULL, n / 2, x, &first), ST_OK);
            assert_int_equal(first, 0);
            assert_int_equal(st_vecindex_add(ix, NULL, n - n / 2, x + (n / 2) * d, &first), ST_OK);
            assert_int_equal(first, n / 2);
            st_vec_search_params sp = st_vec_search_default_params();
            sp.k = k;
            assert_int_equal(st_vecindex_search(ix, threads ? g_ctx : NULL, nq, q, &sp, ids, dd),
                             ST_OK);
            check_exact(x, n, q, nq, d, k, (st_vec_metric)m, ids, dd, NULL, NULL);
            /* k beyond n pads with -1 */
            sp.k = 5;
            assert_int_equal(st_vecindex_search(ix, g_ctx, 1, q, &sp, ids, dd), ST_OK);
            st_vecindex_free(ix);
        }
    /* tiny index: k > n pads */
    st_vecindex *ix = make(ST_VEC_FLAT, ST_VEC_L2, ST_VEC_STORE_F32, d, 0);
    assert_int_equal(st_vecindex_add(ix, g_ctx, 3, x, NULL), ST_OK);
    st_vec_search_params sp = st_vec_search_default_params();
    sp.k = 5;
    assert_int_equal(st_vecindex_search(ix, g_ctx, 1, x + d, &sp, ids, dd), ST_OK);
    assert_int_equal(ids[0], 1);
    assert_float_equal(dd[0], 0.f, 1e-4);
    assert_int_equal(ids[3], -1);
    assert_int_equal(ids[4], -1);
    assert_true(isinf(dd[4]));
    /* bad arguments */
    sp.k = 0;
    assert_int_equal(st_vecindex_search(ix, g_ctx, 1, x, &sp, ids, dd), ST_ERR_INVALID_ARG);
    float bad[37] = {0};
    bad[3] = NAN;
    assert_int_equal(st_vecindex_add(ix, g_ctx, 1, bad, NULL), ST_ERR_INVALID_ARG);
    assert_int_equal(st_vecindex_size(ix), 3);
    st_vecindex_free(ix);
    st_vecindex_params p = st_vecindex_default_params();
    assert_int_equal(st_vecindex_new(&p, &ix), ST_ERR_INVALID_ARG); /* dim 0 */
    p.dim = 8, p.storage = ST_VEC_STORE_I8;
    assert_int_equal(st_vecindex_new(&p, &ix), ST_ERR_INVALID_ARG); /* int8 hnsw */
    free(x), free(q), free(ids), free(dd);
    assert_int_equal(st_alloc_get_stats().live_bytes, a0.live_bytes);
}

static void test_flat_int8(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    const int64_t n = 4000, nq = 200;
    const int d = 64, k = 10;
    float *x = clustered(n, d, 30, 0.6f, 4), *q = clustered(nq, d, 30, 0.6f, 5);
    int64_t *ids = malloc((size_t)nq * k * 8), *ref = malloc((size_t)nq * k * 8);
    float *dd = malloc((size_t)nq * k * 4);
    for (int m = 0; m < 2; m++) {
        st_vecindex *ix = make(ST_VEC_FLAT, (st_vec_metric)m, ST_VEC_STORE_I8, d, 0);
        assert_int_equal(st_vecindex_add(ix, g_ctx, n, x, NULL), ST_OK);
        assert_null(st_vecindex_vector(ix, 0));
        st_vec_search_params sp = st_vec_search_default_params();
        assert_int_equal(st_vecindex_search(ix, g_ctx, nq, q, &sp, ids, dd), ST_OK);
        brute(x, n, q, nq, d, k, (st_vec_metric)m, NULL, NULL, ref, NULL);
        double r = recall(ids, ref, nq, k);
        printf("# int8 flat %s recall@10 %.3f\n", m ? "ip" : "l2", r);
        assert_true(r >= 0.90);
        /* distances within the quantization error of the true ones */
        for (int64_t i = 0; i < nq * k; i++) {
            double td = true_dist(q + (i / k) * d, x + ids[i] * d, d, (st_vec_metric)m);
            assert_float_equal(dd[i], td, 0.02 * fabs(td) + 0.5);
        }
        st_vecindex_info info;
        st_vecindex_get_info(ix, &info);
        assert_int_equal(info.storage, ST_VEC_STORE_I8);
        assert_true(info.bytes < (size_t)n * d * 4 / 2);
        st_vecindex_free(ix);
    }
    free(x), free(q), free(ids), free(ref), free(dd);
    assert_int_equal(st_alloc_get_stats().live_bytes, a0.live_bytes);
}

/* ---- HNSW ----------------------------------------------------------------------------- */

static void test_hnsw_recall(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    const int64_t n = 5000, nq = 200;
    const int d = 32, k = 10;
    float *x = clustered(n, d, 50, 0.4f, 6), *q = clustered(nq, d, 50, 0.4f, 7);
    int64_t *ids = malloc((size_t)nq * k * 8), *ref = malloc((size_t)nq * k * 8);
    float *dd = malloc((size_t)nq * k * 4);
    for (int m = 0; m < 2; m++) {
        if (m == ST_VEC_IP) /* inner product on unit vectors (cosine), its usual use */
            for (int pass = 0; pass < 2; pass++)
                for (int64_t i = 0; i < (pass ? nq : n); i++) {
                    float *v = (pass ? q : x) + i * d, s = 0;
                    for (int j = 0; j < d; j++) s += v[j] * v[j];
                    for (int j = 0; j < d; j++) v[j] /= sqrtf(s);
                }
        st_vecindex *ix = make(ST_VEC_HNSW, (st_vec_metric)m, ST_VEC_STORE_F32, d, 100);
        /* two batches: incremental inserts into a live graph */
        assert_int_equal(st_vecindex_add(ix, g_ctx, 3000, x, NULL), ST_OK);
        assert_int_equal(st_vecindex_add(ix, g_ctx, n - 3000, x + 3000 * d, NULL), ST_OK);
        st_vec_search_params sp = st_vec_search_default_params();
        sp.k = k, sp.ef = 64;
        assert_int_equal(st_vecindex_search(ix, g_ctx, nq, q, &sp, ids, dd), ST_OK);
        brute(x, n, q, nq, d, k, (st_vec_metric)m, NULL, NULL, ref, NULL);
        double r = recall(ids, ref, nq, k);
        st_vecindex_info info;
        st_vecindex_get_info(ix, &info);
        printf("# hnsw %s: recall@10 %.4f (ef 64), top layer %d, %lld links\n", m ? "ip" : "l2", r,
               info.max_level, (long long)info.n_links);
        assert_true(r >= 0.95);
        assert_true(info.max_level >= 1);
        assert_true(info.n_links > n * 8);
        /* the reported distances are the true ones, best first */
        for (int64_t i = 0; i < nq * k; i++) {
            double td = true_dist(q + (i / k) * d, x + ids[i] * d, d, (st_vec_metric)m);
            assert_float_equal(dd[i], td, 1e-4 * (fabs(td) + 1));
            if (i % k) assert_true(dd[i - 1] <= dd[i]);
        }
        /* single-threaded search agrees exactly with the pool's */
        int64_t *ids1 = malloc((size_t)nq * k * 8);
        assert_int_equal(st_vecindex_search(ix, NULL, nq, q, &sp, ids1, NULL), ST_OK);
        assert_memory_equal(ids, ids1, (size_t)nq * k * 8);
        /* exact = true on an HNSW index is the flat answer */
        sp.exact = true;
        assert_int_equal(st_vecindex_search(ix, g_ctx, nq, q, &sp, ids1, dd), ST_OK);
        check_exact(x, n, q, nq, d, k, (st_vec_metric)m, ids1, dd, NULL, NULL);
        free(ids1);
        st_vecindex_free(ix);
    }
    free(x), free(q), free(ids), free(ref), free(dd);
    assert_int_equal(st_alloc_get_stats().live_bytes, a0.live_bytes);
}

static void test_hnsw_deterministic(void **state) {
    (void)state;
    const int64_t n = 1500;
    const int d = 16;
    float *x = clustered(n, d, 10, 0.5f, 9);
    char p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/a.stvec", g_dir);
    snprintf(p2, sizeof p2, "%s/b.stvec", g_dir);
    for (int t = 0; t < 2; t++) {
        st_vecindex *ix = make(ST_VEC_HNSW, ST_VEC_L2, ST_VEC_STORE_F32, d, 50);
        assert_int_equal(st_vecindex_add(ix, NULL, n, x, NULL), ST_OK);
        assert_int_equal(st_vecindex_save(ix, t ? p2 : p1), ST_OK);
        st_vecindex_free(ix);
    }
    FILE *a = fopen(p1, "rb"), *b = fopen(p2, "rb");
    int ca, cb;
    do {
        ca = fgetc(a), cb = fgetc(b);
        assert_int_equal(ca, cb);
    } while (ca != EOF);
    fclose(a), fclose(b);
    free(x);
}

static bool keep_even(int64_t id, void *u) {
    (void)u;
    return id % 2 == 0;
}
static bool keep_none(int64_t id, void *u) {
    (void)id, (void)u;
    return false;
}
static bool keep_live(int64_t id, void *u) { return !st_vecindex_is_deleted(u, id); }
typedef struct live_even {
    st_vecindex *ix;
} live_even;
static bool keep_live_even(int64_t id, void *u) {
    return id % 2 == 0 && !st_vecindex_is_deleted(((live_even *)u)->ix, id);
}

static void test_deletes_filters(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    const int64_t n = 3000, nq = 100;
    const int d = 24, k = 10;
    float *x = clustered(n, d, 20, 0.5f, 12), *q = clustered(nq, d, 20, 0.5f, 13);
    int64_t *ids = malloc((size_t)nq * k * 8), *ref = malloc((size_t)nq * k * 8);
    float *dd = malloc((size_t)nq * k * 4);
    for (int kind = 0; kind < 2; kind++) {
        st_vecindex *ix = make((st_vec_kind)kind, ST_VEC_L2, ST_VEC_STORE_F32, d, 100);
        assert_int_equal(st_vecindex_add(ix, g_ctx, n, x, NULL), ST_OK);
        st_vec_search_params sp = st_vec_search_default_params();
        sp.k = k;
        assert_int_equal(st_vecindex_search(ix, g_ctx, nq, q, &sp, ids, dd), ST_OK);
        /* delete every query's best three answers, and every third vector */
        for (int64_t i = 0; i < nq; i++)
            for (int j = 0; j < 3; j++) assert_int_equal(st_vecindex_remove(ix, ids[i * k + j]), ST_OK);
        for (int64_t i = 0; i < n; i += 3) assert_int_equal(st_vecindex_remove(ix, i), ST_OK);
        assert_int_equal(st_vecindex_remove(ix, 0), ST_OK); /* again: no-op */
        assert_int_equal(st_vecindex_remove(ix, n), ST_ERR_BOUNDS);
        assert_int_equal(st_vecindex_remove(ix, -1), ST_ERR_BOUNDS);
        st_vecindex_info info;
        st_vecindex_get_info(ix, &info);
        assert_true(info.n_deleted > n / 3);
        assert_int_equal(st_vecindex_search(ix, g_ctx, nq, q, &sp, ids, dd), ST_OK);
        for (int64_t i = 0; i < nq * k; i++) assert_false(st_vecindex_is_deleted(ix, ids[i]));
        brute(x, n, q, nq, d, k, ST_VEC_L2, keep_live, ix, ref, NULL);
        double r1 = recall(ids, ref, nq, k);
        if (kind == ST_VEC_FLAT) check_exact(x, n, q, nq, d, k, ST_VEC_L2, ids, dd, keep_live, ix);
        /* a filter on top of the tombstones */
        live_even le = {ix};
        sp.filter = keep_even;
        assert_int_equal(st_vecindex_search(ix, g_ctx, nq, q, &sp, ids, dd), ST_OK);
        for (int64_t i = 0; i < nq * k; i++) {
            assert_true(ids[i] % 2 == 0);
            assert_false(st_vecindex_is_deleted(ix, ids[i]));
        }
        brute(x, n, q, nq, d, k, ST_VEC_L2, keep_live_even, &le, ref, NULL);
        double r2 = recall(ids, ref, nq, k);
        if (kind == ST_VEC_FLAT)
            check_exact(x, n, q, nq, d, k, ST_VEC_L2, ids, dd, keep_live_even, &le);
        printf("# %s after deletes: recall@10 %.3f, with filter %.3f\n", kind ? "hnsw" : "flat", r1,
               r2);
        assert_true(r1 >= 0.95);
        assert_true(r2 >= 0.95);
        /* a filter that allows nothing pads everything */
        sp.filter = keep_none;
        assert_int_equal(st_vecindex_search(ix, g_ctx, 3, q, &sp, ids, dd), ST_OK);
        for (int64_t i = 0; i < 3 * k; i++) assert_int_equal(ids[i], -1);
        st_vecindex_free(ix);
    }
    free(x), free(q), free(ids), free(ref), free(dd);
    assert_int_equal(st_alloc_get_stats().live_bytes, a0.live_bytes);
}

/* ---- files ------------------------------------------------------------------------------ */

static void test_save_load(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    const int64_t n = 2000, nq = 50;
    const int d = 20, k = 10;
    float *x = clustered(n, d, 10, 0.5f, 22), *q = clustered(nq, d, 10, 0.5f, 23);
    int64_t *a = malloc((size_t)nq * k * 8), *b = malloc((size_t)nq * k * 8);
    float *da = malloc((size_t)nq * k * 4), *db = malloc((size_t)nq * k * 4);
    char path[300];
    snprintf(path, sizeof path, "%s/rt.stvec", g_dir);
    static const struct {
        st_vec_kind kind;
        st_vec_metric m;
        st_vec_storage s;
    } cases[] = {{ST_VEC_HNSW, ST_VEC_L2, ST_VEC_STORE_F32},
                 {ST_VEC_HNSW, ST_VEC_IP, ST_VEC_STORE_F32},
                 {ST_VEC_FLAT, ST_VEC_L2, ST_VEC_STORE_F32},
                 {ST_VEC_FLAT, ST_VEC_IP, ST_VEC_STORE_I8}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        st_vecindex *ix = make(cases[c].kind, cases[c].m, cases[c].s, d, 60);
        assert_int_equal(st_vecindex_add(ix, g_ctx, n, x, NULL), ST_OK);
        assert_int_equal(st_vecindex_remove(ix, 17), ST_OK);
        assert_int_equal(st_vecindex_save(ix, path), ST_OK);
        st_vec_search_params sp = st_vec_search_default_params();
        assert_int_equal(st_vecindex_search(ix, g_ctx, nq, q, &sp, a, da), ST_OK);
        st_vecindex *back = NULL;
        assert_int_equal(st_vecindex_load(path, &back), ST_OK);
        st_vecindex_info i1, i2;
        st_vecindex_get_info(ix, &i1);
        st_vecindex_get_info(back, &i2);
        assert_true(i2.mapped);
        assert_int_equal(i1.n, i2.n);
        assert_int_equal(i1.n_deleted, 1);
        assert_int_equal(i2.n_deleted, 1);
        assert_int_equal(i1.max_level, i2.max_level);
        assert_int_equal(i1.n_links, i2.n_links);
        assert_int_equal(i1.kind, i2.kind);
        assert_int_equal(i1.metric, i2.metric);
        assert_int_equal(i1.storage, i2.storage);
        assert_int_equal(st_vecindex_search(back, g_ctx, nq, q, &sp, b, db), ST_OK);
        assert_memory_equal(a, b, (size_t)nq * k * 8);
        assert_memory_equal(da, db, (size_t)nq * k * 4);
        /* a loaded index takes inserts and removals (copied out of the map) */
        assert_int_equal(st_vecindex_add(back, g_ctx, nq, q, NULL), ST_OK);
        assert_int_equal(st_vecindex_remove(back, 18), ST_OK);
        st_vecindex_get_info(back, &i2);
        assert_false(i2.mapped);
        assert_int_equal(i2.n, n + nq);
        sp.k = 1;
        assert_int_equal(st_vecindex_search(back, g_ctx, nq, q, &sp, b, db), ST_OK);
        if (cases[c].m == ST_VEC_L2)
            for (int64_t i = 0; i < nq; i++) assert_int_equal(b[i], n + i); /* finds itself */
        /* and the same through the memory reader */
        FILE *f = fopen(path, "rb");
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        void *buf = malloc((size_t)sz);
        assert_int_equal(fread(buf, 1, (size_t)sz, f), (size_t)sz);
        fclose(f);
        st_vecindex *mem = NULL;
        assert_int_equal(st_vecindex_load_memory(buf, (size_t)sz, "mem", &mem), ST_OK);
        free(buf);
        sp.k = k;
        assert_int_equal(st_vecindex_search(mem, NULL, nq, q, &sp, b, db), ST_OK);
        assert_memory_equal(a, b, (size_t)nq * k * 8);
        st_vecindex_free(mem);
        st_vecindex_free(back);
        st_vecindex_free(ix);
    }
    /* empty indexes round trip */
    st_vecindex *e = make(ST_VEC_HNSW, ST_VEC_L2, ST_VEC_STORE_F32, d, 60), *eb = NULL;
    assert_int_equal(st_vecindex_save(e, path), ST_OK);
    assert_int_equal(st_vecindex_load(path, &eb), ST_OK);
    st_vec_search_params sp = st_vec_search_default_params();
    assert_int_equal(st_vecindex_search(eb, g_ctx, 1, q, &sp, a, da), ST_OK);
    assert_int_equal(a[0], -1);
    assert_int_equal(st_vecindex_add(eb, g_ctx, 10, x, NULL), ST_OK);
    assert_int_equal(st_vecindex_search(eb, g_ctx, 1, x + 3 * d, &sp, a, da), ST_OK);
    assert_int_equal(a[0], 3);
    st_vecindex_free(eb);
    st_vecindex_free(e);
    assert_int_equal(st_vecindex_load("/nonexistent/x.stvec", &eb), ST_ERR_IO);
    assert_non_null(strstr(st_last_error(), "/nonexistent/x.stvec"));
    free(x), free(q), free(a), free(b), free(da), free(db);
    assert_int_equal(st_alloc_get_stats().live_bytes, a0.live_bytes);
}

/* Offsets in the version-1 header (see vec_header in vecindex.c). */
enum { H_VERSION = 8, H_KIND = 20, H_DIM = 32, H_M = 36, H_M0 = 40, H_MAXL = 48, H_N = 56,
       H_NDEL = 64, H_ENTRY = 72, H_NUP = 80, H_OFF = 104, H_BYTES = 176 };
enum { S_VECS, S_CODES, S_SCALES, S_NORMS, S_LEVELS, S_L0, S_UPOFF, S_UP, S_DELETED };

static void put32(uint8_t *b, size_t at, uint32_t v) { memcpy(b + at, &v, 4); }
static void put64(uint8_t *b, size_t at, uint64_t v) { memcpy(b + at, &v, 8); }
static uint64_t get64(const uint8_t *b, size_t at) {
    uint64_t v;
    memcpy(&v, b + at, 8);
    return v;
}

static void test_hostile_index(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    const int d = 8;
    float *x = clustered(300, d, 5, 0.5f, 31);
    st_vecindex *ix = make(ST_VEC_HNSW, ST_VEC_L2, ST_VEC_STORE_F32, d, 40);
    assert_int_equal(st_vecindex_add(ix, NULL, 300, x, NULL), ST_OK);
    char path[300];
    snprintf(path, sizeof path, "%s/good.stvec", g_dir);
    assert_int_equal(st_vecindex_save(ix, path), ST_OK);
    st_vecindex_info info;
    st_vecindex_get_info(ix, &info);
    st_vecindex_free(ix);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *good = malloc(size), *b = malloc(size);
    assert_int_equal(fread(good, 1, size, f), size);
    fclose(f);
    uint64_t l0 = get64(good, H_OFF + 8 * S_L0), lv = get64(good, H_OFF + 8 * S_LEVELS);
    uint64_t up = get64(good, H_OFF + 8 * S_UP), uo = get64(good, H_OFF + 8 * S_UPOFF);
    int64_t entry = (int64_t)get64(good, H_ENTRY);
    /* a node with upper links, for the upper-layer cases */
    int64_t hi = -1;
    for (int64_t i = 0; i < 300 && hi < 0; i++)
        if (good[lv + i] > 0 && i != entry) hi = i;
    assert_true(hi >= 0);
    uint64_t hi_up = up + 4 * get64(good, uo + 8 * (uint64_t)hi);
    enum { TRUNC_HDR, TRUNC_DATA, MAGIC, VERSION, KIND, DIM, M0, NBIG, NDEL, ENTRY, MAXL, OFF,
           OFFALIGN, BYTES, LINKCOUNT, LINKID, UPCOUNT, UPID, UPOFFB, LEVEL, TOMB, NUP, NCASES };
    static const char *const want[NCASES] = {
        "shorter than", "outside the", "magic", "version", "kind", "dim", "m0",
        "impossible", "deleted", "entry point", "top layer", "outside the", "misaligned",
        "holds", "layer-0 links", "links to", "on layer", "not a node", "upper links",
        "above the top layer", "tombstone", "upper links"};
    for (int c = 0; c < NCASES; c++) {
        memcpy(b, good, size);
        size_t len = size;
        switch (c) {
        case TRUNC_HDR: len = 100; break;
        case TRUNC_DATA: len = size - 1; break;
        case MAGIC: b[0] = 'X'; break;
        case VERSION: put32(b, H_VERSION, 2); break;
        case KIND: put32(b, H_KIND, 7); break;
        case DIM: put32(b, H_DIM, 0); break;
        case M0: put32(b, H_M0, 31); break;
        case NBIG: put64(b, H_N, (uint64_t)1 << 40); break;
        case NDEL: put64(b, H_NDEL, 5); break;
        case ENTRY: put64(b, H_ENTRY, 300); break;
        case MAXL: put32(b, H_MAXL, (uint32_t)good[lv + entry] + 1); break;
        case OFF: put64(b, H_OFF + 8 * S_VECS, (uint64_t)size); break;
        case OFFALIGN: put64(b, H_OFF + 8 * S_NORMS, get64(good, H_OFF + 8 * S_NORMS) + 4); break;
        case BYTES: put64(b, H_BYTES + 8 * S_L0, get64(good, H_BYTES + 8 * S_L0) - 4); break;
        case LINKCOUNT: put32(b, l0 + 4 * 33 * 5, 33); break;
        case LINKID: put32(b, l0 + 4 * 33 * 5 + 4, 300); break;
        case UPCOUNT: put32(b, hi_up, 17); break;
        case UPID: {
            /* point the first upper link at a level-0 node */
            int64_t z = 0;
            while (good[lv + z] > 0) z++;
            put32(b, hi_up, 1);
            put32(b, hi_up + 4, (uint32_t)z);
            break;
        }
        case UPOFFB: put64(b, uo + 8 * (uint64_t)hi, get64(good, H_NUP)); break;
        case LEVEL: {
            int64_t z = 0;
            while (z == entry) z++;
            b[lv + z] = (uint8_t)(good[lv + entry] + 1);
            break;
        }
        case TOMB: b[get64(good, H_OFF + 8 * S_DELETED) + 7] = 2; break;
        case NUP: put64(b, H_NUP, get64(good, H_NUP) - 1); break;
        }
        char bp[300];
        snprintf(bp, sizeof bp, "%s/bad%02d.stvec", g_dir, c);
        FILE *w = fopen(bp, "wb");
        assert_int_equal(fwrite(b, 1, len, w), len);
        fclose(w);
        st_vecindex *r = NULL;
        st_status s = st_vecindex_load(bp, &r);
        if (s != ST_ERR_FORMAT || !strstr(st_last_error(), bp) || !strstr(st_last_error(), want[c]))
            printf("# case %d: status %d, message: %s\n", c, s, st_last_error());
        assert_int_equal(s, ST_ERR_FORMAT);
        assert_null(r);
        assert_non_null(strstr(st_last_error(), bp));
        assert_non_null(strstr(st_last_error(), want[c]));
        assert_int_equal(st_vecindex_load_memory(b, len, "memcase", &r), ST_ERR_FORMAT);
        assert_non_null(strstr(st_last_error(), "memcase"));
    }
    free(good), free(b), free(x);
    assert_int_equal(st_alloc_get_stats().live_bytes, a0.live_bytes);
}

static void test_vec_files(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    float *x = clustered(7, 5, 2, 1.f, 41);
    char p[300];
    const char *exts[] = {"fvecs", "npy"};
    for (int e = 0; e < 2; e++) {
        snprintf(p, sizeof p, "%s/v.%s", g_dir, exts[e]);
        assert_int_equal(st_vec_write(p, x, 7, 5), ST_OK);
        float *y = NULL;
        int64_t n = 0;
        int d = 0;
        assert_int_equal(st_vec_read(p, &y, &n, &d), ST_OK);
        assert_int_equal(n, 7);
        assert_int_equal(d, 5);
        assert_memory_equal(x, y, 7 * 5 * 4);
        st_free(y);
    }
    int64_t ids[6] = {1, 2, 3, -4, 5, 2000000000};
    const char *iexts[] = {"ivecs", "npy"};
    for (int e = 0; e < 2; e++) {
        snprintf(p, sizeof p, "%s/ids.%s", g_dir, iexts[e]);
        assert_int_equal(st_vec_write_ids(p, ids, 2, 3), ST_OK);
        int64_t *y = NULL, n = 0;
        int d = 0;
        assert_int_equal(st_vec_read_ids(p, &y, &n, &d), ST_OK);
        assert_int_equal(n, 2);
        assert_int_equal(d, 3);
        assert_memory_equal(ids, y, sizeof ids);
        st_free(y);
    }
    int64_t big = (int64_t)1 << 40;
    snprintf(p, sizeof p, "%s/big.ivecs", g_dir);
    assert_int_equal(st_vec_write_ids(p, &big, 1, 1), ST_ERR_INVALID_ARG);

    /* hostile vector files through the memory parser and the file reader */
    static const struct {
        int kind;
        const char *bytes;
        size_t len;
        const char *want;
    } bad[] = {
        {'f', "\x02\x00\x00\x00\x00\x00\x80\x3f", 8, "whole number"},              /* truncated row */
        {'f', "\x00\x00\x00\x00", 4, "outside 1.."},                                 /* dim 0 */
        {'f', "\xff\xff\xff\x7f", 4, "outside 1.."},                                 /* dim huge */
        {'f', "\x01\x00\x00\x00\x00\x00\x80\x3f\x02\x00\x00\x00\x00\x00\x80\x3f", 16,
         "row 1 has dimension 2"},                                                     /* ragged */
        {'f', "\x01\x00", 2, "too short"},
        {'n', "\x93NUMPZ\x01\x00", 8, "magic"},
        {'n', "\x93NUMPY\x01\x00\xff\x00{'descr'", 18, "runs past"},
        {'n', "\x93NUMPY\x09\x00\x00\x00", 10, "version"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        float *y = NULL;
        int64_t n;
        int d;
        st_status s = st_vec_parse(bad[i].bytes, bad[i].len, "badvec", bad[i].kind, &y, &n, &d);
        if (s != ST_ERR_FORMAT || !strstr(st_last_error(), bad[i].want))
            printf("# bad vec %zu: %s\n", i, st_last_error());
        assert_int_equal(s, ST_ERR_FORMAT);
        assert_non_null(strstr(st_last_error(), "badvec"));
        assert_non_null(strstr(st_last_error(), bad[i].want));
        assert_null(y);
    }
    /* .npy headers: dtype, order, rank, size */
    static const struct {
        const char *dict;
        size_t data;
        const char *want;
    } npy[] = {
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48, "float32"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, "Fortran"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }", 96, "more than 2"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", 24, "2-D"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, "the file holds"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999, 3), }", 24, "need"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0), }", 0, "dimension 0"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", 24, "unterminated"},
        {"{'fortran_order': False, 'shape': (2, 3), }", 24, "no 'descr'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 3), }", 24,
         "overflows"},
    };
    for (size_t i = 0; i < sizeof npy / sizeof npy[0]; i++) {
        uint8_t buf[512] = {0};
        size_t hl = strlen(npy[i].dict);
        memcpy(buf, "\x93NUMPY\x01\x00", 8);
        buf[8] = (uint8_t)hl, buf[9] = 0;
        memcpy(buf + 10, npy[i].dict, hl);
        size_t len = 10 + hl + npy[i].data;
        snprintf(p, sizeof p, "%s/bad%zu.npy", g_dir, i);
        FILE *w = fopen(p, "wb");
        assert_int_equal(fwrite(buf, 1, len, w), len);
        fclose(w);
        float *y = NULL;
        int64_t n;
        int d;
        st_status s = st_vec_read(p, &y, &n, &d);
        if (s != ST_ERR_FORMAT || !strstr(st_last_error(), npy[i].want))
            printf("# bad npy %zu: %s\n", i, st_last_error());
        assert_int_equal(s, ST_ERR_FORMAT);
        assert_non_null(strstr(st_last_error(), p));
        assert_non_null(strstr(st_last_error(), npy[i].want));
    }
    float *y = NULL;
    int64_t n;
    int d;
    assert_int_equal(st_vec_read("/nonexistent/q.fvecs", &y, &n, &d), ST_ERR_IO);
    free(x);
    assert_int_equal(st_alloc_get_stats().live_bytes, a0.live_bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_agree),  cmocka_unit_test(test_flat_exact),
        cmocka_unit_test(test_flat_int8),      cmocka_unit_test(test_hnsw_recall),
        cmocka_unit_test(test_hnsw_deterministic), cmocka_unit_test(test_deletes_filters),
        cmocka_unit_test(test_save_load),      cmocka_unit_test(test_hostile_index),
        cmocka_unit_test(test_vec_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
