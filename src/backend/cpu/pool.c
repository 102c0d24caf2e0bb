/*
 * pool.c — the persistent thread pool that owns the cores (st_pool_*).
 *
 * n threads: the caller of st_pool_run is thread 0, threads 1..n-1 are
 * pthreads created once in st_pool_new and joined in st_pool_free.
 *
 * Dispatch: the caller stores the job (fn, arg), sets `pending` = n-1 and
 * bumps the generation counter `gen` (release). A worker that sees a new
 * generation (acquire) runs fn(arg, ith, n), then decrements `pending`
 * (acq_rel); the caller runs its own share as thread 0 and waits for
 * `pending` to reach 0 (acquire), so every write of every thread happens
 * before st_pool_run returns.
 *
 * Sleeping: an idle worker spins ST_POOL_SPIN pause iterations (~100 us, so
 * back-to-back ops do not pay a wake-up; every 64th iteration is a
 * sched_yield so an oversubscribed machine still lets the thread we wait for
 * run), then blocks in futex(FUTEX_WAIT) on `gen`. An idle pool therefore
 * uses no CPU, which matters because OpenBLAS threads share the same cores;
 * before a multi-threaded BLAS call the executor calls st__pool_sleep_hint,
 * which ends the spin at once, so BLAS gets the cores to itself. Lost wake-ups are
 * excluded by a Dekker-style handshake with sequentially consistent
 * atomics: the worker increments `n_sleeping` and then re-reads `gen`; the
 * caller bumps `gen` and then reads `n_sleeping`, so at least one of them
 * sees the other and FUTEX_WAIT itself rechecks `gen` in the kernel. The
 * caller's wait for completion uses the same scheme on `pending` with the
 * flag `caller_sleeping`.
 *
 * Written by hand: OpenMP is not among Strata's dependencies, and the pool
 * must both sleep when idle and hand the cores to OpenBLAS on request.
 *
 * Ownership: the pool owns its threads and its thread array. Threading: one
 * thread at a time may call st_pool_run / st_pool_parallel_for (the pool
 * asserts that calls do not overlap or nest).
 */
#include "backend/backend_impl.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ST_POOL_SPIN 4000        /* pause iterations before sleeping */
#define ST_POOL_MAX_THREADS 1024 /* STRATA_THREADS / n_threads upper bound */

struct st_pool {
    int n;
    pthread_t *threads; /* n-1 workers */
    /* the current job (written by the caller before gen is bumped) */
    st_pool_fn fn;
    void *arg;
    _Atomic uint32_t gen;        /* job generation; futex word of the workers */
    _Atomic uint32_t pending;    /* workers still running the job; caller's futex word */
    _Atomic int n_sleeping;      /* workers in (or about to enter) FUTEX_WAIT */
    _Atomic int caller_sleeping; /* caller in (or about to enter) FUTEX_WAIT */
    _Atomic int stop;            /* set by st_pool_free */
    _Atomic int in_run;          /* misuse check: overlapping/nested runs */
    _Atomic int hurry;           /* st__pool_sleep_hint: idle workers skip their spin */
};

typedef struct worker_arg {
    st_pool *pool;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t expected) {
    /* Returns on a wake-up, a changed value (EAGAIN) or a signal (EINTR);
     * callers loop on their condition. */
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Waits until *gen != seen; returns the new value. */
static uint32_t wait_new_gen(st_pool *p, uint32_t seen) {
    for (int i = 0; i < ST_POOL_SPIN; i++) {
        uint32_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        if (atomic_load_explicit(&p->hurry, memory_order_relaxed)) break;
        if ((i & 63) == 63)
            sched_yield();
        else
            cpu_relax();
    }
    for (;;) {
        atomic_fetch_add(&p->n_sleeping, 1); /* seq_cst: the handshake */
        uint32_t g = atomic_load(&p->gen);
        if (g == seen) {
            futex_wait(&p->gen, seen);
            g = atomic_load(&p->gen);
        }
        atomic_fetch_sub(&p->n_sleeping, 1);
        if (g != seen) return g;
    }
}

static void *worker_main(void *varg) {
    worker_arg *wa = varg;
    st_pool *p = wa->pool;
    int ith = wa->ith;
    st_free(wa);
    uint32_t seen = 0;
    for (;;) {
        seen = wait_new_gen(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(p->arg, ith, p->n);
        /* seq_cst: pairs with the caller's store of caller_sleeping */
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping))
            futex_wake_all(&p->pending);
    }
    return NULL;
}

/* Parses STRATA_THREADS: a positive decimal integer up to the cap. */
static st_status threads_from_env(int *n) {
    const char *s = getenv("STRATA_THREADS");
    if (!s) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        *n = c < 1 ? 1 : (c > ST_POOL_MAX_THREADS ? ST_POOL_MAX_THREADS : (int)c);
        return ST_OK;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < 1 || v > ST_POOL_MAX_THREADS)
        return st__fail(ST_ERR_INVALID_ARG,
                        "pool: STRATA_THREADS=\"%s\" is not a thread count (a whole number "
                        "from 1 to %d)",
                        s, ST_POOL_MAX_THREADS);
    *n = (int)v;
    return ST_OK;
}

st_status st_pool_new(int n_threads, st_pool **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "pool: NULL output pointer");
    *out = NULL;
    if (n_threads < 0 || n_threads > ST_POOL_MAX_THREADS)
        return st__fail(ST_ERR_INVALID_ARG, "pool: n_threads %d is outside 0..%d", n_threads,
                        ST_POOL_MAX_THREADS);
    int n = n_threads;
    if (n == 0) ST_TRY(threads_from_env(&n));

    st_pool *p = st_calloc(1, sizeof *p);
    if (!p) return st__fail(ST_ERR_NOMEM, "pool: out of memory for a pool of %d threads", n);
    p->n = n;
    if (n > 1) {
        p->threads = st_calloc((size_t)n - 1, sizeof *p->threads);
        if (!p->threads) {
            st_free(p);
            return st__fail(ST_ERR_NOMEM, "pool: out of memory for %d thread handles", n - 1);
        }
    }
    for (int i = 1; i < n; i++) {
        worker_arg *wa = st_malloc(sizeof *wa);
        int rc = wa ? 0 : ENOMEM;
        if (wa) {
            wa->pool = p;
            wa->ith = i;
            rc = pthread_create(&p->threads[i - 1], NULL, worker_main, wa);
            if (rc != 0) st_free(wa);
        }
        if (rc != 0) {
            p->n = i; /* st_pool_free joins the i-1 threads that started */
            st_pool_free(p);
            return st__fail(rc == ENOMEM || rc == EAGAIN ? ST_ERR_NOMEM : ST_ERR_INTERNAL,
                            "pool: starting thread %d of %d failed: %s", i, n, strerror(rc));
        }
    }
    *out = p;
    return ST_OK;
}

void st_pool_free(st_pool *pool) {
    if (!pool) return;
    if (pool->n > 1) {
        atomic_store(&pool->stop, 1);
        atomic_fetch_add(&pool->gen, 1); /* seq_cst, then read n_sleeping */
        if (atomic_load(&pool->n_sleeping) > 0) futex_wake_all(&pool->gen);
        for (int i = 1; i < pool->n; i++)
            pthread_join(pool->threads[i - 1], NULL);
    }
    st_free(pool->threads);
    st_free(pool);
}

int st_pool_size(const st_pool *pool) {
    return pool ? pool->n : 1;
}

void st_pool_run(st_pool *pool, st_pool_fn fn, void *arg) {
    ST_ASSERT(pool && fn);
    if (pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    ST_ASSERT(atomic_exchange(&pool->in_run, 1) == 0); /* no nested or concurrent runs */
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->pending, (uint32_t)(pool->n - 1), memory_order_relaxed);
    atomic_store_explicit(&pool->caller_sleeping, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->hurry, 0, memory_order_relaxed);
    atomic_fetch_add(&pool->gen, 1); /* seq_cst: publishes fn/arg/pending (release) */
    if (atomic_load(&pool->n_sleeping) > 0) futex_wake_all(&pool->gen);

    fn(arg, 0, pool->n);

    int spins = 0;
    for (;;) {
        uint32_t left = atomic_load_explicit(&pool->pending, memory_order_acquire);
        if (left == 0) break;
        if (spins < ST_POOL_SPIN) {
            spins++;
            if ((spins & 63) == 0)
                sched_yield();
            else
                cpu_relax();
            continue;
        }
        atomic_store(&pool->caller_sleeping, 1); /* seq_cst, then re-read pending */
        left = atomic_load(&pool->pending);
        if (left == 0) break;
        futex_wait(&pool->pending, left);
    }
    atomic_store_explicit(&pool->in_run, 0, memory_order_relaxed);
}

void st__pool_sleep_hint(st_pool *pool) {
    if (pool && pool->n > 1) atomic_store_explicit(&pool->hurry, 1, memory_order_relaxed);
}

typedef struct range_job {
    st_pool_range_fn fn;         /* the public form ... */
    st__pool_indexed_fn ifn;     /* ... or the executor's, with the thread index */
    void *arg;
    int64_t n;
    int nchunks;
} range_job;

static void range_worker(void *varg, int ith, int nth) {
    (void)nth;
    const range_job *j = varg;
    if (ith >= j->nchunks) return;
    int64_t q = j->n / j->nchunks, r = j->n % j->nchunks;
    int64_t begin = ith * q + (ith < r ? ith : r);
    int64_t end = begin + q + (ith < r ? 1 : 0);
    if (begin >= end) return;
    if (j->ifn)
        j->ifn(j->arg, begin, end, ith);
    else
        j->fn(j->arg, begin, end);
}

/* Splits [0,n) into at most pool-size contiguous chunks of >= grain items;
 * a single chunk runs inline on the caller (thread 0) without waking the pool. */
static void range_run(st_pool *pool, int64_t n, int64_t grain, range_job *j) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int nth = st_pool_size(pool);
    int64_t nchunks = n / grain;
    if (nchunks > nth) nchunks = nth;
    if (nchunks <= 1) {
        if (j->ifn)
            j->ifn(j->arg, 0, n, 0);
        else
            j->fn(j->arg, 0, n);
        return;
    }
    j->n = n;
    j->nchunks = (int)nchunks;
    st_pool_run(pool, range_worker, j);
}

void st_pool_parallel_for(st_pool *pool, int64_t n, int64_t grain, st_pool_range_fn fn, void *arg) {
    ST_ASSERT(fn);
    range_job j = {.fn = fn, .arg = arg};
    range_run(pool, n, grain, &j);
}

void st__pool_for(st_pool *pool, int64_t n, int64_t grain, st__pool_indexed_fn fn, void *arg) {
    ST_ASSERT(fn);
    range_job j = {.ifn = fn, .arg = arg};
    range_run(pool, n, grain, &j);
}
