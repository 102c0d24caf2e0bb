/*
 * vecindex.c — the vector index handle: parameters, adding and removing
 * vectors, the top-k heap, search dispatch, and the index file (save with a
 * temporary file + fsync + rename through layer 6's atomic writer; load by
 * mmap with every offset, count and link checked before use).
 *
 * Ownership: an index owns its arrays (st_malloc) or, after a load, borrows
 * them from its mapping (or from one st_malloc'd copy for the memory
 * reader); the first add or remove copies a mapped index into owned arrays
 * (materialize). HNSW inserts and both searches live in vecindex_hnsw.c and
 * vecindex_flat.c. Not thread-safe: one caller at a time; the parallel work
 * happens inside add and search on the context's pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub/hub_impl.h"
#include "strata/hub.h"
#include "vecindex_impl.h"

/* ---- parameters ------------------------------------------------------------ */

st_vecindex_params st_vecindex_default_params(void) {
    st_vecindex_params p = {0};
    p.kind = ST_VEC_HNSW;
    p.metric = ST_VEC_L2;
    p.storage = ST_VEC_STORE_F32;
    p.dim = 0;
    p.m = 16;
    p.ef_construction = 200;
    p.seed = 42;
    return p;
}

st_vec_search_params st_vec_search_default_params(void) {
    st_vec_search_params s = {0};
    s.k = 10;
    s.ef = 64;
    return s;
}

static st_status check_params(const st_vecindex_params *p, const char *who) {
    if ((unsigned)p->kind >= ST_VEC_KIND_COUNT_)
        return st__fail(ST_ERR_INVALID_ARG, "%s: kind %d is not flat (0) or hnsw (1)", who, p->kind);
    if ((unsigned)p->metric >= ST_VEC_METRIC_COUNT_)
        return st__fail(ST_ERR_INVALID_ARG, "%s: metric %d is not l2 (0) or ip (1)", who, p->metric);
    if ((unsigned)p->storage >= ST_VEC_STORAGE_COUNT_)
        return st__fail(ST_ERR_INVALID_ARG, "%s: storage %d is not f32 (0) or int8 (1)", who,
                        p->storage);
    if (p->dim < 1 || p->dim > ST__VEC_MAX_DIM)
        return st__fail(ST_ERR_INVALID_ARG, "%s: dim %d outside 1..%d", who, p->dim, ST__VEC_MAX_DIM);
    if (p->kind == ST_VEC_HNSW) {
        if (p->storage != ST_VEC_STORE_F32)
            return st__fail(ST_ERR_INVALID_ARG, "%s: int8 storage is for flat indexes only", who);
        if (p->m < 2 || p->m > 256)
            return st__fail(ST_ERR_INVALID_ARG, "%s: m %d outside 2..256", who, p->m);
        if (p->ef_construction < 1 || p->ef_construction > 100000)
            return st__fail(ST_ERR_INVALID_ARG, "%s: ef_construction %d outside 1..100000", who,
                            p->ef_construction);
    }
    return ST_OK;
}

static void set_kernels(st_vecindex *ix) {
    ix->k = st__vec_kernels_best();
    ix->dist_raw = ix->p.metric == ST_VEC_IP ? ix->k->ip : ix->k->l2;
}

st_status st_vecindex_new(const st_vecindex_params *p, st_vecindex **out) {
    if (!p || !out) return st__fail(ST_ERR_INVALID_ARG, "vecindex_new: NULL argument");
    *out = NULL;
    ST_TRY(check_params(p, "vecindex_new"));
    st_vecindex *ix = st_calloc(1, sizeof *ix);
    if (!ix) return st__fail(ST_ERR_NOMEM, "vecindex_new: no memory");
    ix->p = *p;
    if (p->kind == ST_VEC_FLAT) ix->p.m = 0, ix->p.ef_construction = 0;
    ix->m0 = 2 * ix->p.m;
    ix->entry = -1;
    ix->max_level = -1;
    ix->rng = p->seed ^ 0x9E3779B97F4A7C15ull;
    pthread_mutex_init(&ix->glock, NULL);
    set_kernels(ix);
    *out = ix;
    return ST_OK;
}

static void free_arrays(st_vecindex *ix) {
    st_free(ix->vecs), st_free(ix->codes), st_free(ix->scales), st_free(ix->norms);
    st_free(ix->levels), st_free(ix->l0), st_free(ix->up_off), st_free(ix->up);
    st_free(ix->deleted);
}

static void release_map(st_vecindex *ix) {
    if (!ix->map) return;
    if (ix->mapped) munmap(ix->map, ix->map_bytes);
    else st_free(ix->map);
    ix->map = NULL;
    ix->mapped = false;
}

void st_vecindex_free(st_vecindex *ix) {
    if (!ix) return;
    if (ix->map) release_map(ix);
    else free_arrays(ix);
    pthread_mutex_destroy(&ix->glock);
    st_free(ix);
}

/* ---- growth and materialization ------------------------------------------------ */

static st_status grow(void **p, size_t elem, int64_t old_n, int64_t new_cap) {
    size_t bytes;
    if (st_mul_overflow_size((size_t)new_cap, elem, &bytes))
        return st__fail(ST_ERR_NOMEM, "vecindex: %lld rows overflow", (long long)new_cap);
    void *q = st_malloc(bytes ? bytes : 1);
    if (!q) return st__fail(ST_ERR_NOMEM, "vecindex: no memory for %zu bytes", bytes);
    if (*p && old_n > 0) memcpy(q, *p, (size_t)old_n * elem);
    *p = q;
    return ST_OK;
}

/* Reallocates every per-row array to new_cap rows (copying n rows) and the
 * upper-link pool to new_up ints (copying n_up). Builds all new arrays
 * first, so a failure leaves the index as it was. */
static st_status reserve(st_vecindex *ix, int64_t new_cap, uint64_t new_up) {
    bool hnsw = ix->p.kind == ST_VEC_HNSW, i8 = ix->p.storage == ST_VEC_STORE_I8;
    size_t d = (size_t)ix->p.dim;
    void *arr[9] = {0};
    void *old[9] = {ix->vecs, ix->codes, ix->scales, ix->norms, ix->levels,
                    ix->l0,   ix->up_off, ix->up,   ix->deleted};
    size_t elem[9] = {d * 4, d, 4, 4, 1, (size_t)(ix->m0 + 1) * 4, 8, 4, 1};
    bool use[9] = {!i8, i8, i8, true, hnsw, hnsw, hnsw, hnsw, true};
    int64_t cnt_old[9], cnt_new[9];
    for (int s = 0; s < 9; s++) cnt_old[s] = ix->n, cnt_new[s] = new_cap;
    cnt_old[7] = (int64_t)ix->n_up, cnt_new[7] = (int64_t)new_up;
    st_status st = ST_OK;
    for (int s = 0; s < 9 && st == ST_OK; s++) {
        if (!use[s]) continue;
        arr[s] = old[s];
        st = grow(&arr[s], elem[s], cnt_old[s], cnt_new[s]);
        if (st != ST_OK) arr[s] = NULL;
    }
    if (st != ST_OK) {
        for (int s = 0; s < 9; s++)
            if (arr[s] && arr[s] != old[s]) st_free(arr[s]);
        return st;
    }
    if (ix->map) release_map(ix);
    else
        for (int s = 0; s < 9; s++) st_free(old[s]);
    ix->vecs = arr[0], ix->codes = arr[1], ix->scales = arr[2], ix->norms = arr[3];
    ix->levels = arr[4], ix->l0 = arr[5], ix->up_off = arr[6], ix->up = arr[7];
    ix->deleted = arr[8];
    ix->cap = new_cap;
    ix->cap_up = new_up;
    return ST_OK;
}

static st_status materialize(st_vecindex *ix) {
    if (!ix->map) return ST_OK;
    return reserve(ix, ix->n > 0 ? ix->n : 1, ix->n_up > 0 ? ix->n_up : 1);
}

/* ---- adding and removing --------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int draw_level(st_vecindex *ix) {
    double u = ((double)(rng_next(&ix->rng) >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
    double ml = 1.0 / log((double)ix->p.m);
    int l = (int)(-log(u) * ml);
    return l >= ST__VEC_MAX_LEVEL ? ST__VEC_MAX_LEVEL - 1 : l;
}

st_status st_vecindex_add(st_vecindex *ix, st_ctx *ctx, int64_t n, const float *x,
                          int64_t *first_id) {
    if (!ix || n < 0 || (n > 0 && !x))
        return st__fail(ST_ERR_INVALID_ARG, "vecindex_add: NULL index or vectors, or n < 0");
    if (first_id) *first_id = ix->n;
    if (n == 0) return ST_OK;
    int d = ix->p.dim;
    for (int64_t i = 0; i < n * d; i++)
        if (!isfinite(x[i]))
            return st__fail(ST_ERR_INVALID_ARG,
                            "vecindex_add: vector %lld has a non-finite value at %lld",
                            (long long)(i / d), (long long)(i % d));
    if (n > INT32_MAX - ix->n)
        return st__fail(ST_ERR_INVALID_ARG, "vecindex_add: more than 2^31-1 vectors");
    bool hnsw = ix->p.kind == ST_VEC_HNSW;
    /* levels of the new rows first (the rng state only advances on success) */
    uint64_t rng0 = ix->rng, up_need = ix->n_up, n_up0 = ix->n_up;
    uint8_t *lv = NULL;
    if (hnsw) {
        lv = st_malloc((size_t)n);
        if (!lv) return st__fail(ST_ERR_NOMEM, "vecindex_add: no memory");
        for (int64_t i = 0; i < n; i++) {
            lv[i] = (uint8_t)draw_level(ix);
            up_need += (uint64_t)lv[i] * (uint64_t)(ix->p.m + 1);
        }
    }
    int64_t need = ix->n + n;
    st_status st = ST_OK;
    if (ix->map || need > ix->cap || up_need > ix->cap_up) {
        int64_t cap = ix->cap + ix->cap / 2;
        if (cap < need) cap = need;
        uint64_t cap_up = ix->cap_up + ix->cap_up / 2;
        if (cap_up < up_need) cap_up = up_need;
        if (cap_up == 0) cap_up = 1;
        st = reserve(ix, cap, cap_up);
    }
    if (st != ST_OK) {
        ix->rng = rng0;
        st_free(lv);
        return st;
    }
    int64_t first = ix->n;
    for (int64_t i = 0; i < n; i++) {
        int64_t id = first + i;
        const float *xi = x + i * d;
        ix->deleted[id] = 0;
        if (ix->p.storage == ST_VEC_STORE_I8) {
            float amax = 0.f;
            for (int j = 0; j < d; j++) amax = fmaxf(amax, fabsf(xi[j]));
            float scale = amax > 0.f ? amax / 127.f : 1.f, inv = 1.f / scale, nn = 0.f;
            int8_t *c = ix->codes + id * d;
            for (int j = 0; j < d; j++) {
                float v = nearbyintf(xi[j] * inv);
                v = v > 127.f ? 127.f : v < -127.f ? -127.f : v;
                c[j] = (int8_t)v;
                nn += (scale * v) * (scale * v);
            }
            ix->scales[id] = scale;
            ix->norms[id] = nn;
        } else {
            memcpy(ix->vecs + id * d, xi, (size_t)d * sizeof(float));
            ix->norms[id] = ix->k->ip(xi, xi, d);
        }
        if (hnsw) {
            ix->levels[id] = lv[i];
            memset(ix->l0 + id * (ix->m0 + 1), 0, (size_t)(ix->m0 + 1) * sizeof(int32_t));
            ix->up_off[id] = ix->n_up;
            memset(ix->up + ix->n_up, 0, (size_t)lv[i] * (size_t)(ix->p.m + 1) * sizeof(int32_t));
            ix->n_up += (uint64_t)lv[i] * (uint64_t)(ix->p.m + 1);
        }
    }
    st_free(lv);
    if (hnsw) {
        st = st__hnsw_add(ix, ctx, first, n);
        if (st != ST_OK) { /* scratch ran out before any link was written */
            ix->n_up = n_up0;
            ix->rng = rng0;
            return st;
        }
    }
    ix->n = need;
    return ST_OK;
}

st_status st_vecindex_remove(st_vecindex *ix, int64_t id) {
    if (!ix) return st__fail(ST_ERR_INVALID_ARG, "vecindex_remove: NULL index");
    if (id < 0 || id >= ix->n)
        return st__fail(ST_ERR_BOUNDS, "vecindex_remove: id %lld outside [0, %lld)",
                        (long long)id, (long long)ix->n);
    if (ix->deleted[id]) return ST_OK;
    ST_TRY(materialize(ix));
    ix->deleted[id] = 1;
    ix->n_deleted++;
    return ST_OK;
}

bool st_vecindex_is_deleted(const st_vecindex *ix, int64_t id) {
    return ix && id >= 0 && id < ix->n && ix->deleted[id];
}

int64_t st_vecindex_size(const st_vecindex *ix) { return ix ? ix->n : 0; }
int st_vecindex_dim(const st_vecindex *ix) { return ix ? ix->p.dim : 0; }

const float *st_vecindex_vector(const st_vecindex *ix, int64_t id) {
    if (!ix || !ix->vecs || id < 0 || id >= ix->n) return NULL;
    return ix->vecs + id * ix->p.dim;
}

void st_vecindex_get_info(const st_vecindex *ix, st_vecindex_info *o) {
    memset(o, 0, sizeof *o);
    if (!ix) return;
    o->kind = ix->p.kind, o->metric = ix->p.metric, o->storage = ix->p.storage;
    o->dim = ix->p.dim, o->m = ix->p.m, o->m0 = ix->m0;
    o->ef_construction = ix->p.ef_construction;
    o->n = ix->n, o->n_deleted = ix->n_deleted, o->max_level = ix->max_level;
    o->mapped = ix->map != NULL;
    int64_t links = 0;
    if (ix->p.kind == ST_VEC_HNSW)
        for (int64_t i = 0; i < ix->n; i++)
            for (int l = 0; l <= ix->levels[i]; l++) links += st__vec_links(ix, i, l)[0];
    o->n_links = links;
    size_t d = (size_t)ix->p.dim, rows = (size_t)(ix->map ? ix->n : ix->cap);
    size_t row = (ix->p.storage == ST_VEC_STORE_I8 ? d + 4 : d * 4) + 4 + 1;
    if (ix->p.kind == ST_VEC_HNSW) row += 1 + 8 + (size_t)(ix->m0 + 1) * 4;
    o->bytes = ix->map ? ix->map_bytes : rows * row + (size_t)ix->cap_up * 4;
}

/* ---- top-k ----------------------------------------------------------------------- */

void st__topk_push(st__vec_hit *h, int *n, int cap, float d, int64_t id) {
    st__vec_hit x = {d, id};
    if (*n < cap) {
        int i = (*n)++;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!st__hit_worse(x, h[p])) break;
            h[i] = h[p];
            i = p;
        }
        h[i] = x;
        return;
    }
    if (!st__hit_worse(h[0], x)) return;
    int i = 0, m = *n;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, b = i;
        st__vec_hit hb = x;
        if (l < m && st__hit_worse(h[l], hb)) b = l, hb = h[l];
        if (r < m && st__hit_worse(h[r], hb)) b = r;
        if (b == i) break;
        h[i] = h[b];
        i = b;
    }
    h[i] = x;
}

static int hit_cmp(const void *a, const void *b) {
    st__vec_hit x = *(const st__vec_hit *)a, y = *(const st__vec_hit *)b;
    return st__hit_worse(x, y) ? 1 : st__hit_worse(y, x) ? -1 : 0;
}

void st__topk_sort(st__vec_hit *h, int n) { qsort(h, (size_t)n, sizeof *h, hit_cmp); }

void st__topk_emit(const st__vec_hit *h, int n, int k, int64_t *ids, float *dists) {
    for (int i = 0; i < k; i++) {
        ids[i] = i < n ? h[i].id : -1;
        if (dists) dists[i] = i < n ? h[i].d : INFINITY;
    }
}

st_status st_vecindex_search(const st_vecindex *ix, st_ctx *ctx, int64_t nq, const float *q,
                             const st_vec_search_params *sp, int64_t *ids, float *dists) {
    if (!ix || !sp || nq < 0 || (nq > 0 && (!q || !ids)))
        return st__fail(ST_ERR_INVALID_ARG, "vecindex_search: NULL argument or nq < 0");
    if (sp->k < 1 || sp->k > 100000)
        return st__fail(ST_ERR_INVALID_ARG, "vecindex_search: k %d outside 1..100000", sp->k);
    if (nq == 0) return ST_OK;
    if (ix->n == 0) {
        for (int64_t i = 0; i < nq; i++) st__topk_emit(NULL, 0, sp->k, ids + i * sp->k,
                                                        dists ? dists + i * sp->k : NULL);
        return ST_OK;
    }
    if (ix->p.kind == ST_VEC_FLAT || sp->exact)
        return st__flat_search(ix, ctx, nq, q, sp, ids, dists);
    return st__hnsw_search(ix, ctx, nq, q, sp, ids, dists);
}

/* ---- the index file ----------------------------------------------------------------
 * Native byte order, checked by a marker. Sections are 64-byte aligned so a
 * mapped file serves aligned rows. Version 1. */

#define VEC_MAGIC "STVECIDX"
#define VEC_VERSION 1u
#define VEC_ENDIAN 0x01020304u

enum { SEC_VECS, SEC_CODES, SEC_SCALES, SEC_NORMS, SEC_LEVELS, SEC_L0, SEC_UPOFF, SEC_UP,
       SEC_DELETED, SEC_COUNT };
static const char *const k_sec_name[SEC_COUNT] = {"vectors", "codes", "scales", "norms",
                                                  "levels",  "links0", "link offsets",
                                                  "upper links", "tombstones"};

typedef struct vec_header {
    char magic[8];
    uint32_t version, header_bytes, endian;
    uint32_t kind, metric, storage, dim, m, m0, ef_construction;
    int32_t max_level;
    uint32_t reserved0;
    int64_t n, n_deleted, entry;
    uint64_t n_up, seed, rng;
    uint64_t off[SEC_COUNT], bytes[SEC_COUNT];
    uint64_t reserved[4];
} vec_header;

/* Byte sizes of the sections for n rows / n_up upper ints (false: overflow). */
static bool section_sizes(const vec_header *h, uint64_t out[SEC_COUNT]) {
    uint64_t n = (uint64_t)h->n, d = h->dim;
    bool hnsw = h->kind == ST_VEC_HNSW, i8 = h->storage == ST_VEC_STORE_I8;
    bool ovf = false;
    uint64_t t;
    memset(out, 0, sizeof(uint64_t) * SEC_COUNT);
    ovf |= __builtin_mul_overflow(n, d * 4, &t), out[SEC_VECS] = i8 ? 0 : t;
    ovf |= __builtin_mul_overflow(n, d, &t), out[SEC_CODES] = i8 ? t : 0;
    out[SEC_SCALES] = i8 ? n * 4 : 0;
    ovf |= __builtin_mul_overflow(n, (uint64_t)4, &out[SEC_NORMS]);
    if (hnsw) {
        out[SEC_LEVELS] = n;
        ovf |= __builtin_mul_overflow(n, (uint64_t)(h->m0 + 1) * 4, &out[SEC_L0]);
        ovf |= __builtin_mul_overflow(n, (uint64_t)8, &out[SEC_UPOFF]);
        ovf |= __builtin_mul_overflow(h->n_up, (uint64_t)4, &out[SEC_UP]);
    }
    out[SEC_DELETED] = n;
    return !ovf;
}

static void fill_header(const st_vecindex *ix, vec_header *h) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, VEC_MAGIC, 8);
    h->version = VEC_VERSION, h->header_bytes = sizeof *h, h->endian = VEC_ENDIAN;
    h->kind = ix->p.kind, h->metric = ix->p.metric, h->storage = ix->p.storage;
    h->dim = (uint32_t)ix->p.dim, h->m = (uint32_t)ix->p.m, h->m0 = (uint32_t)ix->m0;
    h->ef_construction = (uint32_t)ix->p.ef_construction;
    h->max_level = ix->max_level;
    h->n = ix->n, h->n_deleted = ix->n_deleted, h->entry = ix->entry;
    h->n_up = ix->p.kind == ST_VEC_HNSW ? ix->n_up : 0;
    h->seed = ix->p.seed, h->rng = ix->rng;
    uint64_t sz[SEC_COUNT];
    section_sizes(h, sz);
    uint64_t off = (sizeof *h + 63) & ~(uint64_t)63;
    for (int s = 0; s < SEC_COUNT; s++) {
        h->off[s] = off, h->bytes[s] = sz[s];
        off = (off + sz[s] + 63) & ~(uint64_t)63;
    }
}

st_status st_vecindex_save(const st_vecindex *ix, const char *path) {
    if (!ix || !path) return st__fail(ST_ERR_INVALID_ARG, "vecindex_save: NULL argument");
    vec_header h;
    fill_header(ix, &h);
    const void *src[SEC_COUNT] = {ix->vecs, ix->codes, ix->scales, ix->norms, ix->levels,
                                  ix->l0,   ix->up_off, ix->up,   ix->deleted};
    st__atomic_file af;
    ST_TRY(st__atomic_open(&af, path));
    static const char zeros[64];
    uint64_t pos = 0;
    st_status st = st__atomic_write(&af, &h, sizeof h);
    pos = sizeof h;
    for (int s = 0; s < SEC_COUNT && st == ST_OK; s++) {
        if (h.off[s] > pos) st = st__atomic_write(&af, zeros, (size_t)(h.off[s] - pos));
        pos = h.off[s];
        if (st == ST_OK && h.bytes[s]) st = st__atomic_write(&af, src[s], (size_t)h.bytes[s]);
        pos += h.bytes[s];
    }
    if (st != ST_OK) {
        st__atomic_abort(&af);
        return st;
    }
    return st__atomic_commit(&af);
}

#define BAD(...) st__fail(ST_ERR_FORMAT, __VA_ARGS__)

/* Checks the whole file image and points ix's arrays into it. */
static st_status parse_image(st_vecindex *ix, uint8_t *base, size_t size, const char *name) {
    vec_header h;
    if (size < sizeof h)
        return BAD("%s: %zu bytes is shorter than the %zu-byte vector index header", name, size,
                   sizeof h);
    memcpy(&h, base, sizeof h);
    if (memcmp(h.magic, VEC_MAGIC, 8) != 0)
        return BAD("%s: not a strata vector index (magic is not \"STVECIDX\")", name);
    if (h.endian != VEC_ENDIAN)
        return BAD("%s: written on a machine of the other byte order", name);
    if (h.version != VEC_VERSION)
        return BAD("%s: index file version %u; this build reads version %u (%s)", name, h.version,
                   VEC_VERSION,
                   h.version > VEC_VERSION ? "upgrade strata" : "rebuild the index");
    if (h.header_bytes != sizeof h)
        return BAD("%s: header size %u, expected %zu", name, h.header_bytes, sizeof h);
    st_vecindex_params p = st_vecindex_default_params();
    p.kind = (st_vec_kind)h.kind, p.metric = (st_vec_metric)h.metric;
    p.storage = (st_vec_storage)h.storage;
    p.dim = h.dim > ST__VEC_MAX_DIM ? -1 : (int)h.dim;
    p.m = h.m > 256 ? -1 : (int)h.m;
    p.ef_construction = h.ef_construction > 100000 ? -1 : (int)h.ef_construction;
    p.seed = h.seed;
    if (h.kind == ST_VEC_FLAT) p.m = 16, p.ef_construction = 200;
    st_status st = check_params(&p, "header");
    if (st != ST_OK) {
        char why[160];
        snprintf(why, sizeof why, "%s", st_last_error());
        return BAD("%s: bad %s", name, why);
    }
    if (h.kind == ST_VEC_FLAT) {
        p.m = 0, p.ef_construction = 0;
        if (h.m != 0 || h.m0 != 0) return BAD("%s: flat index with m %u, m0 %u", name, h.m, h.m0);
    } else if (h.m0 != 2 * h.m)
        return BAD("%s: m0 %u is not 2*m (m %u)", name, h.m0, h.m);
    if (h.n < 0 || (uint64_t)h.n > size || h.n > INT32_MAX)
        return BAD("%s: vector count %lld impossible for a %zu-byte file", name, (long long)h.n,
                   size);
    if (h.n_deleted < 0 || h.n_deleted > h.n)
        return BAD("%s: %lld deleted of %lld vectors", name, (long long)h.n_deleted,
                   (long long)h.n);
    if (h.n_up > size) return BAD("%s: %llu upper links for a %zu-byte file", name,
                                  (unsigned long long)h.n_up, size);
    uint64_t sz[SEC_COUNT];
    if (!section_sizes(&h, sz)) return BAD("%s: section sizes overflow", name);
    void *ptr[SEC_COUNT];
    for (int s = 0; s < SEC_COUNT; s++) {
        if (h.bytes[s] != sz[s])
            return BAD("%s: section %s holds %llu bytes, expected %llu", name, k_sec_name[s],
                       (unsigned long long)h.bytes[s], (unsigned long long)sz[s]);
        if (h.off[s] % 64 || h.off[s] < sizeof h || h.off[s] > size || sz[s] > size - h.off[s])
            return BAD("%s: section %s at offset %llu (+%llu bytes) is outside the %zu-byte "
                       "file or misaligned",
                       name, k_sec_name[s], (unsigned long long)h.off[s],
                       (unsigned long long)sz[s], size);
        ptr[s] = sz[s] ? base + h.off[s] : NULL;
    }
    int64_t n = h.n;
    const uint8_t *del = ptr[SEC_DELETED];
    int64_t nd = 0;
    for (int64_t i = 0; i < n; i++) {
        if (del[i] > 1) return BAD("%s: tombstone of vector %lld is %u, not 0 or 1", name,
                                   (long long)i, del[i]);
        nd += del[i];
    }
    if (nd != h.n_deleted)
        return BAD("%s: header says %lld deleted, tombstones say %lld", name,
                   (long long)h.n_deleted, (long long)nd);
    if (h.kind == ST_VEC_HNSW) {
        const uint8_t *lv = ptr[SEC_LEVELS];
        const uint64_t *uo = ptr[SEC_UPOFF];
        const int32_t *l0 = ptr[SEC_L0], *up = ptr[SEC_UP];
        if (n == 0) {
            if (h.entry != -1 || h.max_level != -1)
                return BAD("%s: empty graph with entry %lld, top layer %d", name,
                           (long long)h.entry, h.max_level);
        } else {
            if (h.entry < 0 || h.entry >= n)
                return BAD("%s: entry point %lld outside [0, %lld)", name, (long long)h.entry,
                           (long long)n);
            if (h.max_level < 0 || h.max_level >= ST__VEC_MAX_LEVEL || lv[h.entry] != h.max_level)
                return BAD("%s: top layer %d does not match the entry point's level %u", name,
                           h.max_level, lv[h.entry]);
        }
        for (int64_t i = 0; i < n; i++) {
            if (lv[i] > h.max_level)
                return BAD("%s: vector %lld has level %u above the top layer %d", name,
                           (long long)i, lv[i], h.max_level);
            const int32_t *L = l0 + i * (int64_t)(h.m0 + 1);
            if (L[0] < 0 || (uint32_t)L[0] > h.m0)
                return BAD("%s: vector %lld has %d layer-0 links (at most %u)", name,
                           (long long)i, L[0], h.m0);
            for (int j = 1; j <= L[0]; j++)
                if (L[j] < 0 || L[j] >= n)
                    return BAD("%s: vector %lld links to %d, outside [0, %lld)", name,
                               (long long)i, L[j], (long long)n);
            if (lv[i] == 0) continue;
            uint64_t need = (uint64_t)lv[i] * (h.m + 1);
            if (uo[i] > h.n_up || need > h.n_up - uo[i])
                return BAD("%s: upper links of vector %lld at %llu (+%llu) outside the %llu "
                           "stored",
                           name, (long long)i, (unsigned long long)uo[i],
                           (unsigned long long)need, (unsigned long long)h.n_up);
            for (int l = 0; l < lv[i]; l++) {
                const int32_t *U = up + uo[i] + (uint64_t)l * (h.m + 1);
                if (U[0] < 0 || (uint32_t)U[0] > h.m)
                    return BAD("%s: vector %lld has %d links on layer %d (at most %u)", name,
                               (long long)i, U[0], l + 1, h.m);
                for (int j = 1; j <= U[0]; j++)
                    if (U[j] < 0 || U[j] >= n || lv[U[j]] < l + 1)
                        return BAD("%s: vector %lld links on layer %d to %d, not a node of "
                                   "that layer",
                                   name, (long long)i, l + 1, U[j]);
            }
        }
    } else if (h.entry != -1 || h.max_level != -1)
        return BAD("%s: flat index with a graph entry point", name);
    ix->p = p;
    ix->m0 = (int)h.m0;
    ix->n = ix->cap = n;
    ix->n_deleted = h.n_deleted;
    ix->n_up = ix->cap_up = h.n_up;
    ix->entry = h.entry, ix->max_level = h.max_level;
    ix->rng = h.rng;
    ix->vecs = ptr[SEC_VECS], ix->codes = ptr[SEC_CODES], ix->scales = ptr[SEC_SCALES];
    ix->norms = ptr[SEC_NORMS], ix->levels = ptr[SEC_LEVELS], ix->l0 = ptr[SEC_L0];
    ix->up_off = ptr[SEC_UPOFF], ix->up = ptr[SEC_UP], ix->deleted = ptr[SEC_DELETED];
    set_kernels(ix);
    return ST_OK;
}

static st_status new_blank(st_vecindex **out) {
    st_vecindex *ix = st_calloc(1, sizeof *ix);
    if (!ix) return st__fail(ST_ERR_NOMEM, "vecindex_load: no memory");
    pthread_mutex_init(&ix->glock, NULL);
    ix->entry = -1, ix->max_level = -1;
    *out = ix;
    return ST_OK;
}

st_status st_vecindex_load(const char *path, st_vecindex **out) {
    if (!path || !out) return st__fail(ST_ERR_INVALID_ARG, "vecindex_load: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return st__fail(ST_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return st__fail(ST_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < sizeof(vec_header)) {
        close(fd);
        return BAD("%s: %zu bytes is shorter than the %zu-byte vector index header", path, size,
                   sizeof(vec_header));
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return st__fail(ST_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    st_vecindex *ix = NULL;
    st_status st = new_blank(&ix);
    if (st != ST_OK) {
        munmap(map, size);
        return st;
    }
    ix->map = map, ix->map_bytes = size, ix->mapped = true;
    st = parse_image(ix, map, size, path);
    if (st != ST_OK) {
        st_vecindex_free(ix);
        return st;
    }
    *out = ix;
    return ST_OK;
}

st_status st_vecindex_load_memory(const void *data, size_t n, const char *name,
                                  st_vecindex **out) {
    if ((!data && n) || !out) return st__fail(ST_ERR_INVALID_ARG, "vecindex_load_memory: NULL");
    *out = NULL;
    if (!name) name = "<memory>";
    st_vecindex *ix = NULL;
    ST_TRY(new_blank(&ix));
    ix->map = st_malloc(n ? n : 1);
    if (!ix->map) {
        st_vecindex_free(ix);
        return st__fail(ST_ERR_NOMEM, "%s: no memory for %zu bytes", name, n);
    }
    if (n) memcpy(ix->map, data, n);
    ix->map_bytes = n;
    st_status st = parse_image(ix, ix->map, n, name);
    if (st != ST_OK) {
        st_vecindex_free(ix);
        return st;
    }
    *out = ix;
    return ST_OK;
}
