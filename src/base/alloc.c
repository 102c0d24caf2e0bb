/*
 * alloc.c — the one allocation wrapper of the library.
 *
 * Every block carries a 64-byte header holding its size, so the wrapper can
 * count live bytes, keep 64-byte alignment through realloc, and fail on
 * demand (st_alloc_fail_after) for out-of-memory tests. Counters are atomic:
 * the wrapper is thread-safe.
 */
#include "strata/base.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ST_ALLOC_ALIGN 64
#define ST_ALLOC_HDR 64

static _Atomic uint64_t g_n_alloc;
static _Atomic uint64_t g_n_free;
static _Atomic int64_t g_live;
static _Atomic int64_t g_peak;
static _Atomic int64_t g_fail_after = -1;

static bool inject_failure(void) {
    int64_t n = atomic_load(&g_fail_after);
    while (n >= 0) {
        if (atomic_compare_exchange_weak(&g_fail_after, &n, n - 1))
            return n == 0;
    }
    return false;
}

static void account(int64_t delta) {
    int64_t live = atomic_fetch_add(&g_live, delta) + delta;
    int64_t peak = atomic_load(&g_peak);
    while (live > peak && !atomic_compare_exchange_weak(&g_peak, &peak, live)) {
    }
}

void *st_malloc(size_t bytes) {
    if (bytes > SIZE_MAX - ST_ALLOC_HDR) return NULL;
    if (inject_failure()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, ST_ALLOC_ALIGN, bytes + ST_ALLOC_HDR) != 0) return NULL;
    *(size_t *)p = bytes;
    atomic_fetch_add(&g_n_alloc, 1);
    account((int64_t)bytes);
    return (char *)p + ST_ALLOC_HDR;
}

void *st_calloc(size_t n, size_t size) {
    size_t bytes;
    if (st_mul_overflow_size(n, size, &bytes)) return NULL;
    void *p = st_malloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void st_free(void *p) {
    if (!p) return;
    char *base = (char *)p - ST_ALLOC_HDR;
    account(-(int64_t)*(size_t *)base);
    atomic_fetch_add(&g_n_free, 1);
    free(base);
}

void *st_realloc(void *p, size_t bytes) {
    if (!p) return st_malloc(bytes);
    size_t old = *(size_t *)((char *)p - ST_ALLOC_HDR);
    void *q = st_malloc(bytes);
    if (!q) return NULL;
    memcpy(q, p, old < bytes ? old : bytes);
    st_free(p);
    return q;
}

char *st_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = st_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

st_alloc_stats st_alloc_get_stats(void) {
    st_alloc_stats s = {
        .n_alloc = atomic_load(&g_n_alloc),
        .n_free = atomic_load(&g_n_free),
        .live_bytes = atomic_load(&g_live),
        .peak_bytes = atomic_load(&g_peak),
    };
    return s;
}

void st_alloc_fail_after(int64_t n) { atomic_store(&g_fail_after, n < 0 ? -1 : n); }
