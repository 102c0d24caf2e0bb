/*
 * vecindex_impl.h — the vector index's insides, shared by src/app/vecindex*.c
 * and the tests (private to layer 8).
 *
 * Memory layout = file layout (so a mapped file is searched in place):
 *   vecs    f32 [cap][dim]       (f32 storage)
 *   codes   i8  [cap][dim]       (int8 storage), scales f32 [cap]
 *   norms   f32 [cap]            squared norms (L2 through sgemm)
 *   levels  u8  [cap]            HNSW top layer of each node
 *   l0      i32 [cap][1 + m0]    layer-0 links: count, then ids
 *   up_off  u64 [cap]            first int of the node's upper links in up
 *   up      i32 [n_up]           per node, levels[i] blocks of (1 + m) ints:
 *                                layer 1, 2, ... each a count then ids
 *   deleted u8  [cap]            tombstones
 * Owned arrays come from st_malloc; a mapped index points into the map and
 * is copied out (materialized) before its first change.
 */
#ifndef STRATA_APP_VECINDEX_IMPL_H
#define STRATA_APP_VECINDEX_IMPL_H

#include <stdatomic.h>
#include <pthread.h>

#include "strata/hw.h"
#include "strata/vecindex.h"

#define ST__VEC_MAX_DIM 65536
#define ST__VEC_MAX_LEVEL 32

/* Distance kernels of one SIMD level over two f32 rows of length d. */
typedef float (*st__vec_dist_fn)(const float *a, const float *b, int d);
typedef struct st__vec_kernels {
    const char *name;
    st__vec_dist_fn l2; /* sum (a-b)^2 */
    st__vec_dist_fn ip; /* sum a*b */
} st__vec_kernels;

extern const st__vec_kernels st__vec_kernels_scalar;
#if defined(__x86_64__)
extern const st__vec_kernels st__vec_kernels_avx2;
extern const st__vec_kernels st__vec_kernels_avx512;
#endif
/* The kernels for a level (scalar when the level is not built). */
const st__vec_kernels *st__vec_kernels_for(st_simd_level level);
/* The best level this CPU runs, capped by STRATA_SIMD (scalar on error). */
const st__vec_kernels *st__vec_kernels_best(void);

struct st_vecindex {
    st_vecindex_params p;
    int m0;
    const st__vec_kernels *k;
    st__vec_dist_fn dist_raw; /* l2 or ip kernel */
    int64_t n, cap, n_deleted;
    float *vecs;
    int8_t *codes;
    float *scales;
    float *norms;
    uint8_t *levels;
    int32_t *l0;
    uint64_t *up_off;
    int32_t *up;
    uint64_t n_up, cap_up;
    uint8_t *deleted;
    int64_t entry;  /* -1 when empty */
    int max_level;  /* -1 when empty */
    uint64_t rng;   /* level draws */
    /* mapping */
    void *map;
    size_t map_bytes;
    bool mapped;
    /* build-time locks (NULL outside an add) */
    atomic_uchar *locks;
    pthread_mutex_t glock;
};

/* Distance between a query and stored row id (smaller is better). */
static inline float st__vec_dist(const st_vecindex *ix, const float *q, int64_t id) {
    float r = ix->dist_raw(q, ix->vecs + id * (int64_t)ix->p.dim, ix->p.dim);
    return ix->p.metric == ST_VEC_IP ? -r : r;
}

static inline int32_t *st__vec_links(const st_vecindex *ix, int64_t id, int level) {
    if (level == 0) return ix->l0 + id * (int64_t)(ix->m0 + 1);
    return ix->up + ix->up_off[id] + (uint64_t)(level - 1) * (uint64_t)(ix->p.m + 1);
}

/* HNSW (vecindex_hnsw.c) */
st_status st__hnsw_add(st_vecindex *ix, st_ctx *ctx, int64_t first, int64_t n);
st_status st__hnsw_search(const st_vecindex *ix, st_ctx *ctx, int64_t nq, const float *q,
                          const st_vec_search_params *sp, int64_t *ids, float *dists);
/* Flat (vecindex_flat.c): exact search over every stored vector. */
st_status st__flat_search(const st_vecindex *ix, st_ctx *ctx, int64_t nq, const float *q,
                          const st_vec_search_params *sp, int64_t *ids, float *dists);

/* Bounded top-k: a max-heap of (dist, id) of at most cap entries; the worst
 * kept is at [0]. */
typedef struct st__vec_hit {
    float d;
    int64_t id;
} st__vec_hit;

static inline bool st__hit_worse(st__vec_hit a, st__vec_hit b) {
    return a.d > b.d || (a.d == b.d && a.id > b.id);
}
void st__topk_push(st__vec_hit *h, int *n, int cap, float d, int64_t id);
/* Sorts the heap best-first in place (destroys the heap property). */
void st__topk_sort(st__vec_hit *h, int n);
/* Writes n sorted hits to ids/dists and pads to k with -1/+inf. */
void st__topk_emit(const st__vec_hit *h, int n, int k, int64_t *ids, float *dists);

#endif /* STRATA_APP_VECINDEX_IMPL_H */
