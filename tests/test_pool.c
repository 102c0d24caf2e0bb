/*
 * test_pool.c — the persistent thread pool (st_pool_*).
 *
 * Every index of parallel_for is visited exactly once, for many sizes,
 * grains and pool sizes 1, 2 and 3 (3 oversubscribes the 2-core test
 * machine on purpose); chunks respect the grain and their count never
 * exceeds the pool; st_pool_run calls each thread index once and its plain
 * writes are visible to the caller afterwards; 10k tiny jobs in a row finish
 * (no lost wake-up, no deadlock), also when each is followed by the
 * executor's sleep hint; an idle pool sleeps; STRATA_THREADS is
 * parsed strictly.
 */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
// clang-format on

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend_impl.h" /* st__pool_sleep_hint */
#include "strata/backend.h"

static const int k_sizes[] = {1, 2, 3};

/* ---- parallel_for coverage -------------------------------------------------------- */

typedef struct cover {
    _Atomic int *hits;
    _Atomic int chunks;
    _Atomic int64_t min_len;
    _Atomic int bad_range; /* cmocka asserts are not thread-safe: count, check later */
    int64_t n;
} cover;

static void cover_fn(void *arg, int64_t b, int64_t e) {
    cover *c = arg;
    if (!(b >= 0 && b < e && e <= c->n)) {
        atomic_fetch_add(&c->bad_range, 1);
        return;
    }
    for (int64_t i = b; i < e; i++)
        atomic_fetch_add(&c->hits[i], 1);
    atomic_fetch_add(&c->chunks, 1);
    int64_t len = e - b, m = atomic_load(&c->min_len);
    while (len < m && !atomic_compare_exchange_weak(&c->min_len, &m, len)) {
    }
}

static void test_parallel_for_covers_once(void **state) {
    (void)state;
    static const int64_t ns[] = {0, 1, 2, 3, 5, 7, 16, 63, 64, 65, 1000, 4097, 100003};
    static const int64_t grains[] = {0, 1, 2, 3, 64, 1000, 1 << 20};
    for (size_t s = 0; s < sizeof k_sizes / sizeof *k_sizes; s++) {
        st_pool *pool = NULL;
        assert_int_equal(st_pool_new(k_sizes[s], &pool), ST_OK);
        assert_int_equal(st_pool_size(pool), k_sizes[s]);
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++) {
            for (size_t g = 0; g < sizeof grains / sizeof *grains; g++) {
                int64_t n = ns[a], grain = grains[g];
                cover c = {.n = n};
                c.hits = calloc((size_t)n + 1, sizeof *c.hits);
                atomic_store(&c.min_len, INT64_MAX);
                st_pool_parallel_for(pool, n, grain, cover_fn, &c);
                for (int64_t i = 0; i < n; i++) {
                    if (atomic_load(&c.hits[i]) != 1)
                        fail_msg("pool %d, n %lld, grain %lld: index %lld visited %d times",
                                 k_sizes[s], (long long)n, (long long)grain, (long long)i,
                                 atomic_load(&c.hits[i]));
                }
                assert_int_equal(atomic_load(&c.bad_range), 0);
                int chunks = atomic_load(&c.chunks);
                assert_true(chunks <= k_sizes[s]);
                assert_true(n == 0 ? chunks == 0 : chunks >= 1);
                /* every chunk has at least grain items unless the whole range is one chunk */
                if (chunks > 1) assert_true(atomic_load(&c.min_len) >= (grain < 1 ? 1 : grain));
                free(c.hits);
            }
        }
        st_pool_free(pool);
    }
}

/* ---- st_pool_run -------------------------------------------------------------------- */

typedef struct run_rec {
    _Atomic int calls[8];
    int plain[8]; /* plain writes: must be visible after the barrier */
    _Atomic int bad_nth;
    int want_nth;
} run_rec;

static void run_fn(void *arg, int ith, int nth) {
    run_rec *r = arg;
    if (nth != r->want_nth || ith < 0 || ith >= nth) atomic_fetch_add(&r->bad_nth, 1);
    atomic_fetch_add(&r->calls[ith], 1);
    r->plain[ith] = 1000 + ith * 7;
}

static void test_run_each_thread_once(void **state) {
    (void)state;
    for (size_t s = 0; s < sizeof k_sizes / sizeof *k_sizes; s++) {
        st_pool *pool = NULL;
        assert_int_equal(st_pool_new(k_sizes[s], &pool), ST_OK);
        for (int rep = 0; rep < 50; rep++) {
            run_rec r = {.want_nth = k_sizes[s]};
            st_pool_run(pool, run_fn, &r);
            assert_int_equal(atomic_load(&r.bad_nth), 0);
            for (int i = 0; i < 8; i++) {
                assert_int_equal(atomic_load(&r.calls[i]), i < k_sizes[s] ? 1 : 0);
                if (i < k_sizes[s]) assert_int_equal(r.plain[i], 1000 + i * 7);
            }
        }
        st_pool_free(pool);
    }
}

/* ---- many tiny jobs ------------------------------------------------------------------- */

static void tiny_fn(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    atomic_fetch_add((_Atomic int64_t *)arg, 1);
}

static void tiny_range(void *arg, int64_t b, int64_t e) {
    atomic_fetch_add((_Atomic int64_t *)arg, e - b);
}

static void test_many_tiny_jobs(void **state) {
    (void)state;
    for (size_t s = 0; s < sizeof k_sizes / sizeof *k_sizes; s++) {
        st_pool *pool = NULL;
        assert_int_equal(st_pool_new(k_sizes[s], &pool), ST_OK);
        _Atomic int64_t count = 0;
        for (int j = 0; j < 10000; j++)
            st_pool_run(pool, tiny_fn, &count);
        assert_int_equal(atomic_load(&count), 10000 * (int64_t)k_sizes[s]);
        /* let the workers fall asleep, then make sure they still wake up */
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
        atomic_store(&count, 0);
        for (int j = 0; j < 10000; j++)
            st_pool_parallel_for(pool, 10, 1, tiny_range, &count);
        assert_int_equal(atomic_load(&count), 100000);
        /* the executor's hint before multi-threaded BLAS: workers stop
         * spinning and sleep; the next jobs still reach them */
        atomic_store(&count, 0);
        for (int j = 0; j < 1000; j++) {
            st_pool_run(pool, tiny_fn, &count);
            st__pool_sleep_hint(pool);
        }
        assert_int_equal(atomic_load(&count), 1000 * (int64_t)k_sizes[s]);
        st_pool_free(pool);
    }
    st__pool_sleep_hint(NULL); /* a no-op */
}

/* A pool created and freed many times (threads joined each time). */
static void test_create_free_cycles(void **state) {
    (void)state;
    for (int i = 0; i < 30; i++) {
        st_pool *pool = NULL;
        assert_int_equal(st_pool_new(1 + i % 3, &pool), ST_OK);
        _Atomic int64_t count = 0;
        if (i % 2) st_pool_run(pool, tiny_fn, &count);
        st_pool_free(pool);
    }
    st_pool_free(NULL); /* a no-op */
}

/* ---- an idle pool sleeps ------------------------------------------------------------------ */

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_idle_pool_sleeps(void **state) {
    (void)state;
    st_pool *pool = NULL;
    assert_int_equal(st_pool_new(3, &pool), ST_OK);
    _Atomic int64_t count = 0;
    st_pool_run(pool, tiny_fn, &count);
    struct timespec settle = {0, 50 * 1000 * 1000}, idle = {0, 200 * 1000 * 1000};
    nanosleep(&settle, NULL); /* the workers' short spin ends */
    double c0 = cpu_s();
    nanosleep(&idle, NULL);
    double used = cpu_s() - c0;
    /* Two spinning workers would burn up to 0.4 s of CPU in these 0.2 s;
     * sleeping ones burn ~0. The bound only catches a pool that never sleeps. */
    if (used > 0.1) fail_msg("idle pool used %.3f s of CPU in 0.2 s", used);
    st_pool_free(pool);
}

/* ---- STRATA_THREADS --------------------------------------------------------------------- */

static void test_threads_env(void **state) {
    (void)state;
    static const char *bad[] = {"abc", "0", "-2", "3x", "", " 2", "99999999999"};
    char *saved = getenv("STRATA_THREADS") ? strdup(getenv("STRATA_THREADS")) : NULL;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv("STRATA_THREADS", bad[i], 1);
        st_pool *pool = (st_pool *)1;
        assert_int_equal(st_pool_new(0, &pool), ST_ERR_INVALID_ARG);
        assert_null(pool);
        char want[64];
        snprintf(want, sizeof want, "\"%s\"", bad[i]);
        if (!strstr(st_last_error(), "STRATA_THREADS") || !strstr(st_last_error(), want))
            fail_msg("STRATA_THREADS=%s: message does not name it: %s", bad[i], st_last_error());
    }
    setenv("STRATA_THREADS", "3", 1);
    st_pool *pool = NULL;
    assert_int_equal(st_pool_new(0, &pool), ST_OK);
    assert_int_equal(st_pool_size(pool), 3);
    st_pool_free(pool);
    /* an explicit count wins over the variable */
    assert_int_equal(st_pool_new(2, &pool), ST_OK);
    assert_int_equal(st_pool_size(pool), 2);
    st_pool_free(pool);
    unsetenv("STRATA_THREADS");
    assert_int_equal(st_pool_new(0, &pool), ST_OK);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(st_pool_size(pool), online < 1 ? 1 : online);
    st_pool_free(pool);
    assert_int_equal(st_pool_new(-1, &pool), ST_ERR_INVALID_ARG);
    assert_int_equal(st_pool_new(1, NULL), ST_ERR_INVALID_ARG);
    if (saved) {
        setenv("STRATA_THREADS", saved, 1);
        free(saved);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_for_covers_once),
        cmocka_unit_test(test_run_each_thread_once),
        cmocka_unit_test(test_many_tiny_jobs),
        cmocka_unit_test(test_create_free_cycles),
        cmocka_unit_test(test_idle_pool_sleeps),
        cmocka_unit_test(test_threads_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
