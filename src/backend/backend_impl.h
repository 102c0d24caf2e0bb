/*
 * backend_impl.h — the private side of a backend (layer 2 only).
 *
 * A backend is a versioned table of function pointers (st_backend_iface)
 * plus an opaque implementation pointer, as in ggml's ggml-backend-impl.h.
 * The public st_backend_* functions (backend.c) check what every backend
 * shares (the op list, operand counts, supports_op) and dispatch through the
 * table; each device file (cpu/cpu_backend.c, later cuda/) fills one static
 * table and allocates the st_backend that points at it.
 *
 * Ownership: the st_backend struct and its impl belong to the backend; the
 * table's free() releases both. Tables are static and never freed.
 * Threading: as the public header says, one thread submits operations.
 */
#ifndef STRATA_BACKEND_IMPL_H
#define STRATA_BACKEND_IMPL_H

#include "strata/backend.h"

typedef struct st_backend_iface {
    int abi_version;  /* ST_BACKEND_ABI_VERSION the table was written for */
    const char *name; /* "cpu", "cuda" */
    /* Releases the backend (be itself included). be is never NULL. */
    void (*free)(st_backend *be);
    /* Whether compute() handles op when its first operand (src[0], or dst[0]
     * for ops without sources) has that dtype. */
    bool (*supports_op)(const st_backend *be, st_op op, st_dtype dtype);
    /* Executes one operation; backend.c has already checked the op number,
     * the operand counts and supports_op. */
    st_status (*compute)(st_backend *be, const st_op_desc *desc);
    /* Memory the backend's ops can read and write; NULL with ST_ERR_NOMEM
     * recorded on failure. dealloc(NULL) is a no-op. */
    void *(*alloc)(st_backend *be, size_t bytes);
    void (*dealloc)(st_backend *be, void *ptr);
} st_backend_iface;

struct st_backend {
    const st_backend_iface *iface;
    void *impl; /* the device's own state (cpu: struct st_cpu_backend) */
};

/* CPU pool internals (cpu/pool.c) for the executor (cpu/cpu_backend.c):
 * tells idle workers to stop spinning and sleep now, because the caller is
 * about to run multi-threaded BLAS on the same cores. The next st_pool_run
 * clears it. No-op for a pool of one thread or NULL. */
void st__pool_sleep_hint(st_pool *pool);

/* st_pool_parallel_for with the index of the thread running each chunk
 * (for per-thread scratch): fn(arg, begin, end, ith), ith in [0, pool size). */
typedef void (*st__pool_indexed_fn)(void *arg, int64_t begin, int64_t end, int ith);
void st__pool_for(st_pool *pool, int64_t n, int64_t grain, st__pool_indexed_fn fn, void *arg);

#endif /* STRATA_BACKEND_IMPL_H */
