/*
 * kvcache.c — the paged KV cache (strata/infer.h).
 *
 * Storage: per layer, one pool for K and one for V, each n_blocks blocks of
 * block_tokens rows of n_kv_head * hd floats ([block][token][kv row], so a
 * block is contiguous and one token's row of all kv heads is contiguous).
 * Block b of layer l lives at k[l] + b * block_tokens * row. The pools are
 * one allocation made at creation, asked for transparent huge pages
 * (madvise; a decode step reads blocks scattered over all of it, and with
 * 4 KiB pages nearly every block was a TLB miss) and touched once so that
 * no page fault lands in a decode step; nothing is allocated per token
 * except a sequence's block table when it grows (doubling).
 *
 * Ownership: blocks are reference-counted (refs[b]; 0 = on the free stack).
 * A sequence (st_kv_seq, the caller's struct) holds one reference per entry
 * of its block table; st_kv_seq_fork shares whole blocks by taking more
 * references; a write into a shared, partly filled last block first copies
 * it (copy-on-write) in st_kv_seq_reserve. Caches above the engine (a
 * prefix cache) hold references with st_kv_block_ref/unref.
 *
 * Threads: not thread-safe; the engine's driver thread calls it. The engine
 * writes and reads block contents from pool workers between reserve calls.
 */
#include "infer/infer_impl.h"

#include <string.h>
#include <sys/mman.h>

struct st_kv_cache {
    int n_layer;
    int block_tokens;
    int64_t row;        /* floats per token row (n_kv_head * hd) */
    int64_t n_blocks;
    float **k, **v;     /* [n_layer] pools of n_blocks * block_tokens * row */
    float *store;       /* all pools: k[l] = store + 2l pools, v[l] right after */
    int32_t *refs;      /* [n_blocks] */
    int32_t *free_ids;  /* stack of free block ids */
    int64_t n_free;
};

st_kv_params st_kv_default_params(void) {
    st_kv_params p = {.block_tokens = 16, .n_blocks = 0};
    return p;
}

st_status st_kv_cache_new(const st_lm *lm, const st_kv_params *p, st_kv_cache **out) {
    if (!lm || !out) return st__fail(ST_ERR_INVALID_ARG, "st_kv_cache_new: NULL argument");
    *out = NULL;
    st_kv_params d = p ? *p : st_kv_default_params();
    const st_model_config *c = &lm->cfg;
    if (d.block_tokens <= 0 || d.block_tokens > 65536 || d.n_blocks < 0 ||
        d.n_blocks > INT32_MAX)
        return st__fail(ST_ERR_INVALID_ARG,
                        "st_kv_cache_new: block_tokens %d or n_blocks %lld out of range",
                        d.block_tokens, (long long)d.n_blocks);
    if (d.n_blocks == 0) d.n_blocks = (c->n_ctx + d.block_tokens - 1) / d.block_tokens;
    st_kv_cache *kv = st_calloc(1, sizeof *kv);
    if (!kv) return ST_ERR_NOMEM;
    kv->n_layer = c->n_layer;
    kv->block_tokens = d.block_tokens;
    kv->row = (int64_t)c->n_kv_head * (c->n_embd / c->n_head);
    kv->n_blocks = d.n_blocks;
    size_t per_block = 0, pool = 0;
    if (st_mul_overflow_size((size_t)d.block_tokens, (size_t)kv->row, &per_block) ||
        st_mul_overflow_size(per_block, (size_t)d.n_blocks, &pool) ||
        st_mul_overflow_size(pool, sizeof(float), &pool)) {
        st_free(kv);
        return st__fail(ST_ERR_INVALID_ARG, "st_kv_cache_new: pool size overflows");
    }
    kv->k = st_calloc((size_t)kv->n_layer, sizeof *kv->k);
    kv->v = st_calloc((size_t)kv->n_layer, sizeof *kv->v);
    kv->refs = st_calloc((size_t)d.n_blocks + 1, sizeof *kv->refs);
    kv->free_ids = st_malloc(((size_t)d.n_blocks + 1) * sizeof *kv->free_ids);
    size_t all = 0;
    bool ok = kv->k && kv->v && kv->refs && kv->free_ids &&
              !st_mul_overflow_size(pool, 2 * (size_t)kv->n_layer, &all);
    if (ok) kv->store = st_malloc(all);
    ok = ok && kv->store;
    if (ok) {
        const size_t n_pool = pool / sizeof(float);
        for (int l = 0; l < kv->n_layer; l++) {
            kv->k[l] = kv->store + 2 * (size_t)l * n_pool;
            kv->v[l] = kv->k[l] + n_pool;
        }
#ifdef MADV_HUGEPAGE
        /* the 2 MiB-aligned interior; advice only, so a failure is ignored */
        const uintptr_t huge = (uintptr_t)2 << 20,
                        lo = ((uintptr_t)kv->store + huge - 1) & ~(huge - 1),
                        hi = ((uintptr_t)kv->store + all) & ~(huge - 1);
        if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#endif
        memset(kv->store, 0, all);
    }
    if (!ok) {
        st_kv_cache_free(kv);
        return st__fail(ST_ERR_NOMEM, "st_kv_cache_new: %lld blocks of %d tokens (%zu bytes a "
                        "layer) do not fit in memory", (long long)d.n_blocks, d.block_tokens,
                        2 * pool);
    }
    /* pop order 0, 1, 2, ...: the stack holds the highest ids at the bottom */
    for (int64_t i = 0; i < d.n_blocks; i++) kv->free_ids[i] = (int32_t)(d.n_blocks - 1 - i);
    kv->n_free = d.n_blocks;
    *out = kv;
    return ST_OK;
}

void st_kv_cache_free(st_kv_cache *kv) {
    if (!kv) return;
    st_free(kv->store);
    st_free(kv->k);
    st_free(kv->v);
    st_free(kv->refs);
    st_free(kv->free_ids);
    st_free(kv);
}

int st_kv_block_tokens(const st_kv_cache *kv) { return kv ? kv->block_tokens : 0; }
int64_t st_kv_n_blocks(const st_kv_cache *kv) { return kv ? kv->n_blocks : 0; }
int64_t st_kv_n_free(const st_kv_cache *kv) { return kv ? kv->n_free : 0; }
size_t st_kv_block_bytes(const st_kv_cache *kv) {
    return kv ? 2 * (size_t)kv->n_layer * (size_t)kv->block_tokens * (size_t)kv->row *
                    sizeof(float)
              : 0;
}
int64_t st__kv_row(const st_kv_cache *kv) { return kv->row; }

float *st__kv_k(st_kv_cache *kv, int layer, int32_t block) {
    return kv->k[layer] + (size_t)block * (size_t)kv->block_tokens * (size_t)kv->row;
}
float *st__kv_v(st_kv_cache *kv, int layer, int32_t block) {
    return kv->v[layer] + (size_t)block * (size_t)kv->block_tokens * (size_t)kv->row;
}

int32_t st_kv_block_refcount(const st_kv_cache *kv, int32_t block) {
    if (!kv || block < 0 || block >= kv->n_blocks) return -1;
    return kv->refs[block];
}

void st_kv_block_ref(st_kv_cache *kv, int32_t block) {
    ST_ASSERT(kv && block >= 0 && block < kv->n_blocks && kv->refs[block] > 0);
    kv->refs[block]++;
}

void st_kv_block_unref(st_kv_cache *kv, int32_t block) {
    ST_ASSERT(kv && block >= 0 && block < kv->n_blocks && kv->refs[block] > 0);
    if (--kv->refs[block] == 0) kv->free_ids[kv->n_free++] = block;
}

static int32_t take_block(st_kv_cache *kv) {
    ST_ASSERT(kv->n_free > 0);
    int32_t b = kv->free_ids[--kv->n_free];
    kv->refs[b] = 1;
    return b;
}

static st_status grow_table(st_kv_seq *seq, int n) {
    if (n <= seq->cap_blocks) return ST_OK;
    int cap = seq->cap_blocks ? seq->cap_blocks : 8;
    while (cap < n) cap *= 2;
    int32_t *b = st_realloc(seq->blocks, (size_t)cap * sizeof *b);
    if (!b) return st__fail(ST_ERR_NOMEM, "kv cache: no memory for a block table of %d", cap);
    seq->blocks = b;
    seq->cap_blocks = cap;
    return ST_OK;
}

static bool cow_needed(const st_kv_cache *kv, const st_kv_seq *seq) {
    int64_t bt = kv->block_tokens;
    if (seq->n_tokens % bt == 0) return false; /* the next write starts a new block */
    int64_t last = seq->n_tokens / bt;         /* the partly filled block */
    return last < seq->n_blocks && kv->refs[seq->blocks[last]] > 1;
}

int64_t st_kv_seq_blocks_needed(const st_kv_cache *kv, const st_kv_seq *seq, int64_t n_tokens) {
    if (!kv || !seq || n_tokens <= 0) return 0;
    int64_t bt = kv->block_tokens;
    int64_t want = (seq->n_tokens + n_tokens + bt - 1) / bt;
    int64_t more = want > seq->n_blocks ? want - seq->n_blocks : 0;
    return more + (cow_needed(kv, seq) ? 1 : 0);
}

st_status st_kv_seq_reserve(st_kv_cache *kv, st_kv_seq *seq, int64_t n_tokens) {
    if (!kv || !seq || n_tokens < 0)
        return st__fail(ST_ERR_INVALID_ARG, "st_kv_seq_reserve: bad arguments");
    if (n_tokens == 0) return ST_OK;
    int64_t need = st_kv_seq_blocks_needed(kv, seq, n_tokens);
    if (need > kv->n_free)
        return st__fail(ST_ERR_NOMEM,
                        "kv cache: %lld more tokens need %lld blocks, %lld of %lld are free",
                        (long long)n_tokens, (long long)need, (long long)kv->n_free,
                        (long long)kv->n_blocks);
    int64_t bt = kv->block_tokens;
    int64_t want = (seq->n_tokens + n_tokens + bt - 1) / bt;
    if (want > INT32_MAX) return st__fail(ST_ERR_INVALID_ARG, "kv cache: sequence too long");
    ST_TRY(grow_table(seq, (int)want));
    if (cow_needed(kv, seq)) {
        int64_t last = seq->n_tokens / bt;
        int32_t old = seq->blocks[last], nb = take_block(kv);
        size_t bytes = (size_t)bt * (size_t)kv->row * sizeof(float);
        for (int l = 0; l < kv->n_layer; l++) {
            memcpy(st__kv_k(kv, l, nb), st__kv_k(kv, l, old), bytes);
            memcpy(st__kv_v(kv, l, nb), st__kv_v(kv, l, old), bytes);
        }
        st_kv_block_unref(kv, old);
        seq->blocks[last] = nb;
    }
    while (seq->n_blocks < want) seq->blocks[seq->n_blocks++] = take_block(kv);
    return ST_OK;
}

st_status st_kv_seq_fork(st_kv_cache *kv, const st_kv_seq *src, int64_t n_tokens, st_kv_seq *dst) {
    if (!kv || !src || !dst || n_tokens < 0 || n_tokens > src->n_tokens)
        return st__fail(ST_ERR_INVALID_ARG, "st_kv_seq_fork: bad arguments (n_tokens %lld of %lld)",
                        (long long)n_tokens, src ? (long long)src->n_tokens : 0LL);
    if (dst->n_blocks != 0 || dst->n_tokens != 0)
        return st__fail(ST_ERR_INVALID_ARG, "st_kv_seq_fork: the destination is not empty");
    int64_t nb = (n_tokens + kv->block_tokens - 1) / kv->block_tokens;
    ST_TRY(grow_table(dst, (int)nb));
    for (int64_t i = 0; i < nb; i++) {
        st_kv_block_ref(kv, src->blocks[i]);
        dst->blocks[i] = src->blocks[i];
    }
    dst->n_blocks = (int)nb;
    dst->n_tokens = n_tokens;
    return ST_OK;
}

st_status st_kv_seq_truncate(st_kv_cache *kv, st_kv_seq *seq, int64_t n_tokens) {
    if (!kv || !seq || n_tokens < 0 || n_tokens > seq->n_tokens)
        return st__fail(ST_ERR_INVALID_ARG, "st_kv_seq_truncate: bad arguments");
    int64_t keep = (n_tokens + kv->block_tokens - 1) / kv->block_tokens;
    while (seq->n_blocks > keep) st_kv_block_unref(kv, seq->blocks[--seq->n_blocks]);
    seq->n_tokens = n_tokens;
    return ST_OK;
}

void st_kv_seq_release(st_kv_cache *kv, st_kv_seq *seq) {
    if (!seq) return;
    if (kv)
        for (int i = 0; i < seq->n_blocks; i++) st_kv_block_unref(kv, seq->blocks[i]);
    st_free(seq->blocks);
    memset(seq, 0, sizeof *seq);
}
