/*
 * cpu_fused.h — the CPU executor of the fused transformer ops (private to
 * src/backend/cpu): ATTENTION(_BACKWARD), CROSS_ENTROPY(_BACKWARD), ROPE,
 * DROPOUT. cpu_backend.c owns the backend state and hands the executor what
 * it needs through st__cpu_fused_env, so the two files share no struct.
 */
#ifndef STRATA_BACKEND_CPU_FUSED_H
#define STRATA_BACKEND_CPU_FUSED_H

#include "backend/cpu/kernels.h"
#include "strata/backend.h"

typedef struct st__cpu_fused_env {
    st_pool *pool;
    int n_threads;
    const st_cpu_kernels *k;
    /* The backend's reusable scratch, at least bytes long (contents not
     * kept between calls); NULL with ST_ERR_NOMEM recorded on failure. */
    void *(*scratch)(void *owner, size_t bytes, const char *what);
    void *owner;
} st__cpu_fused_env;

/* Whether op is one of the fused ops this file executes. */
bool st__cpu_fused_handles(st_op op);
/* Runs one fused op (st__cpu_fused_handles(d->op) must hold). */
st_status st__cpu_fused_compute(const st__cpu_fused_env *env, const st_op_desc *d);

#endif
