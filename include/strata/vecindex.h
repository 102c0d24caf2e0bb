/*
 * strata/vecindex.h — layer 8: vector indexes for nearest-neighbour search.
 *
 * One handle (st_vecindex) holds a set of vectors of one dimension and
 * answers k-nearest-neighbour queries, either exactly (flat: every vector is
 * scored; many queries are scored at once with cblas_sgemm) or approximately
 * through an HNSW graph (Malkov & Yashunin, 2016: hierarchical navigable
 * small worlds, with the neighbour-selection heuristic, M links per node on
 * the upper layers and M0 = 2M on layer 0).
 *
 * Ids: the i-th vector ever added has id i (0, 1, 2, ... in insertion
 * order). Removing a vector marks it deleted (a tombstone): its id is never
 * returned again and never reused, and an HNSW graph still routes through
 * it. Callers that need their own keys keep a table from id to key.
 *
 * Metrics: ST_VEC_L2 ranks by squared Euclidean distance (smallest first),
 * ST_VEC_IP by inner product (largest first). Search results report a
 * distance, smaller is better: the squared L2 distance, or the negated
 * inner product for ST_VEC_IP.
 *
 * Storage: f32, or (flat indexes only) int8 with one symmetric scale per
 * vector (x ~ scale * code, code in [-127, 127], scale = max|x| / 127):
 * 4x less memory, distances within the quantization error.
 *
 * Files: st_vecindex_save writes one file (magic "STVECIDX", a version, a
 * header, then 64-byte-aligned sections: vectors, norms, codes, levels,
 * links, tombstones) through a temporary file, fsync and rename.
 * st_vecindex_load maps it (mmap, read-only) after checking every offset,
 * count and link, so that a hostile file fails with ST_ERR_FORMAT naming the
 * file and the fault instead of crashing a later search. A mapped index is
 * searched in place; the first add or remove copies it into memory.
 *
 * Threads: add and search take a context (st_ctx) whose CPU pool runs the
 * work: HNSW inserts in parallel with a lock per node, searches split over
 * queries (HNSW) or over the vectors (flat, single-threaded BLAS in each
 * part). ctx may be NULL: then the calling thread does all the work. An
 * index is not thread-safe: one thread calls its functions at a time (the
 * parallelism is inside the calls). With more than one thread an HNSW graph
 * depends on the threads' timing; with one it is a function of the seed.
 */
#ifndef STRATA_VECINDEX_H
#define STRATA_VECINDEX_H

#include "strata/base.h"
#include "strata/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum st_vec_metric {
    ST_VEC_L2 = 0, /* squared Euclidean distance */
    ST_VEC_IP = 1, /* inner product (distance = -<q, x>) */
    ST_VEC_METRIC_COUNT_
} st_vec_metric;

typedef enum st_vec_kind {
    ST_VEC_FLAT = 0, /* exact: every vector scored */
    ST_VEC_HNSW = 1, /* approximate: HNSW graph */
    ST_VEC_KIND_COUNT_
} st_vec_kind;

typedef enum st_vec_storage {
    ST_VEC_STORE_F32 = 0,
    ST_VEC_STORE_I8 = 1, /* per-vector symmetric scale; flat only */
    ST_VEC_STORAGE_COUNT_
} st_vec_storage;

typedef struct st_vecindex_params {
    st_vec_kind kind;       /* default ST_VEC_HNSW */
    st_vec_metric metric;   /* default ST_VEC_L2 */
    st_vec_storage storage; /* default ST_VEC_STORE_F32 */
    int dim;                /* vector length, 1..65536 (no default: must be set) */
    int m;                  /* HNSW links per node on upper layers, 2..256 (default 16);
                               layer 0 keeps up to 2*m */
    int ef_construction;    /* HNSW candidate list while inserting (default 200) */
    uint64_t seed;          /* HNSW level draws (default 42) */
} st_vecindex_params;

st_vecindex_params st_vecindex_default_params(void);

typedef struct st_vecindex st_vecindex;

/* Creates an empty index. Errors: ST_ERR_INVALID_ARG (dim, m,
 * ef_construction or an enum out of range; int8 storage with HNSW),
 * ST_ERR_NOMEM. Free with st_vecindex_free. */
st_status st_vecindex_new(const st_vecindex_params *p, st_vecindex **out);
/* Frees the index (and unmaps its file). NULL is a no-op. */
void st_vecindex_free(st_vecindex *ix);

/* Adds n vectors (x: n rows of dim floats, row-major; borrowed for the call,
 * copied) with ids size() .. size()+n-1; *first_id (may be NULL) gets the
 * first. ctx (may be NULL) lends its pool for the HNSW inserts. A mapped
 * index is copied into memory first. Invalidates st_vecindex_vector
 * pointers. Errors: ST_ERR_INVALID_ARG (NULL x with n > 0, n < 0, a
 * non-finite value, more than 2^31-1 vectors in all: nothing is added),
 * ST_ERR_NOMEM (nothing is added). */
st_status st_vecindex_add(st_vecindex *ix, st_ctx *ctx, int64_t n, const float *x,
                          int64_t *first_id);

/* Marks id deleted. Removing a deleted id again is a no-op.
 * Errors: ST_ERR_BOUNDS (id outside [0, size)), ST_ERR_NOMEM (copying a
 * mapped index). */
st_status st_vecindex_remove(st_vecindex *ix, int64_t id);
bool st_vecindex_is_deleted(const st_vecindex *ix, int64_t id); /* false when out of range */

/* Filter for searches: return true to allow id in the results. Called from
 * the pool's threads at once: it must be thread-safe (read-only is). A
 * filtered-out vector still routes an HNSW search. */
typedef bool (*st_vec_filter_fn)(int64_t id, void *user);

typedef struct st_vec_search_params {
    int k;                   /* results per query (default 10) */
    int ef;                  /* HNSW candidate list, raised to k when smaller (default 64) */
    bool exact;              /* score every vector even in an HNSW index (default false) */
    st_vec_filter_fn filter; /* NULL: every live vector */
    void *filter_user;       /* passed to filter */
} st_vec_search_params;

st_vec_search_params st_vec_search_default_params(void);

/* Searches nq queries (q: nq rows of dim floats; borrowed). Writes, for each
 * query i, its k best ids best-first to ids[i*k ...] and (when dists is not
 * NULL) their distances to dists[i*k ...]; slots beyond the number of
 * allowed live vectors get id -1 and distance +inf. Flat indexes (and
 * exact = true) return the exact answer; ties keep the smaller id first.
 * ctx (may be NULL) lends its pool. Errors: ST_ERR_INVALID_ARG (NULL
 * pointers, k < 1, nq < 0), ST_ERR_NOMEM. */
st_status st_vecindex_search(const st_vecindex *ix, st_ctx *ctx, int64_t nq, const float *q,
                             const st_vec_search_params *sp, int64_t *ids, float *dists);

typedef struct st_vecindex_info {
    st_vec_kind kind;
    st_vec_metric metric;
    st_vec_storage storage;
    int dim, m, m0, ef_construction;
    int64_t n;          /* vectors ever added (ids 0..n-1) */
    int64_t n_deleted;  /* of those, deleted */
    int max_level;      /* HNSW top layer (-1 when empty or flat) */
    int64_t n_links;    /* HNSW links over all layers */
    size_t bytes;       /* memory held (or mapped) */
    bool mapped;        /* searched in place from a mapped file */
} st_vecindex_info;

void st_vecindex_get_info(const st_vecindex *ix, st_vecindex_info *out);
int64_t st_vecindex_size(const st_vecindex *ix); /* = info.n */
int st_vecindex_dim(const st_vecindex *ix);
/* Row id of the stored vector (f32 storage) or NULL (int8 storage, out of
 * range). Valid until the next add, remove or free. */
const float *st_vecindex_vector(const st_vecindex *ix, int64_t id);

/* Writes the index to path (temporary file beside it, fsync, rename, fsync
 * of the directory). Errors: ST_ERR_IO naming the path and the call,
 * ST_ERR_INVALID_ARG. */
st_status st_vecindex_save(const st_vecindex *ix, const char *path);
/* Maps the index file at path read-only and checks it whole (sizes, offsets,
 * enums, every link id and count, levels). Errors: ST_ERR_IO (open, stat,
 * mmap), ST_ERR_FORMAT (naming the file and the fault; a newer version says
 * so), ST_ERR_NOMEM. */
st_status st_vecindex_load(const char *path, st_vecindex **out);
/* The same reader over bytes in memory (copied: data may be freed after the
 * call); name labels messages. For tests and fuzzing. */
st_status st_vecindex_load_memory(const void *data, size_t n, const char *name,
                                  st_vecindex **out);

/* ---- vector files --------------------------------------------------------------
 * .fvecs / .ivecs (the SIFT/TEXMEX formats: each row is an int32 dimension d
 * followed by d float32 / int32 values; every row of a file has the same d)
 * and .npy (NumPy: a 2-D C-order array of '<f4' for vectors, '<i4' or '<i8'
 * for ids). The format is chosen by the extension (.fvecs, .ivecs, .npy,
 * else by the first bytes). */

/* Reads a float matrix: *out (n rows of *dim floats; free with st_free).
 * Errors: ST_ERR_IO (open/read), ST_ERR_FORMAT (a bad header, a ragged or
 * truncated row, a dimension outside 1..65536, a dtype other than
 * float32, Fortran order, non-2-D), ST_ERR_NOMEM. */
st_status st_vec_read(const char *path, float **out, int64_t *n, int *dim);
/* The same parser over memory; kind: 'f' fvecs, 'n' npy, 0 guess. */
st_status st_vec_parse(const void *data, size_t size, const char *name, int kind, float **out,
                       int64_t *n, int *dim);
/* Reads an int matrix (.ivecs or .npy of int32/int64; values must fit in
 * int64): *out n rows of *dim. Errors as st_vec_read. */
st_status st_vec_read_ids(const char *path, int64_t **out, int64_t *n, int *dim);
/* Writes n rows of dim floats as .fvecs or .npy (by the extension of path;
 * .npy when neither), crash-safe. Errors: ST_ERR_IO, ST_ERR_INVALID_ARG. */
st_status st_vec_write(const char *path, const float *x, int64_t n, int dim);
/* Writes n rows of dim ids as .ivecs (int32; an id outside int32 is
 * ST_ERR_INVALID_ARG) or, for a .npy path, '<i8'. Crash-safe. */
st_status st_vec_write_ids(const char *path, const int64_t *ids, int64_t n, int dim);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_VECINDEX_H */
