/*
 * loader.c — batches from a dataset directory of token shards (strata/data.h).
 *
 * Data structures: the split's shards mmap'd (st_shard) with their
 * cumulative token offsets, so the split is one virtual stream and a row
 * is copied segment by segment even when it spans shards. Batch i is a pure
 * function of (seed, split, i, rank): random mode draws row starts with the
 * same splitmix64 scheme as st_textdata_batch; sequential mode maps batch i
 * to epoch i / batches_per_epoch and visits chunks in the order of a
 * 4-round Feistel permutation over the next power of four >= n_chunks,
 * cycle-walked into [0, n_chunks): a bijection with no table in memory.
 *
 * Threading: with prefetch > 0 one producer thread (pthread) fills a ring
 * of `prefetch` batches under a mutex and two condition variables; it
 * computes outside the lock into the first free slot (only it writes
 * there) and publishes under the lock. A generation counter lets
 * st_loader_set_state drop the ring while the producer is mid-batch. The
 * consumer copies out under the lock (one batch: ~66 KB at 64x257). The
 * producer only copies from the maps, so it never competes with the
 * compute pool for long; it sleeps while the ring is full.
 *
 * Ownership: the loader owns the manifest, the maps, the ring and the
 * thread; st_loader_free joins the thread before unmapping.
 */
#include "strata/data.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct st_loader {
    st_loader_params p;
    st_manifest *man;
    int n_shards;
    st_shard **shards;
    uint64_t *start; /* [n_shards + 1] cumulative token offsets */
    uint64_t n;      /* tokens in the split */
    uint64_t n_chunks, bpe;
    int half_bits; /* Feistel half width */
    size_t elems;  /* B * (T + 1) */

    /* ring (prefetch > 0) */
    pthread_t th;
    bool th_started;
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    int32_t *ring;
    uint64_t *ring_idx;
    int cap, head, count;
    uint64_t produce_next, gen;
    bool stop;

    uint64_t next_batch, n_batches;
    double wait_s;
};

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

st_loader_params st_loader_default_params(void) {
    st_loader_params p = {.split = ST_SPLIT_TRAIN,
                          .mode = ST_LOADER_RANDOM,
                          .batch_size = 12,
                          .block_size = 1024,
                          .seed = 1337,
                          .rank = 0,
                          .world_size = 1,
                          .prefetch = 4,
                          .check_tokens = true};
    return p;
}

/* Copies len tokens of the split stream starting at pos. */
static void copy_window(const st_loader *l, uint64_t pos, size_t len, int32_t *out) {
    int lo = 0, hi = l->n_shards - 1; /* last shard with start <= pos */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (l->start[mid] <= pos)
            lo = mid;
        else
            hi = mid - 1;
    }
    int s = lo;
    while (len > 0) {
        ST_ASSERT(s < l->n_shards);
        uint64_t off = pos - l->start[s], in = l->start[s + 1] - pos;
        size_t take = in < len ? (size_t)in : len;
        if (take) {
            st_status st = st_shard_read(l->shards[s], off, take, out);
            ST_ASSERT(st == ST_OK);
        }
        out += take;
        pos += take;
        len -= take;
        s++;
    }
}

/* Feistel bijection on [0, 4^half_bits), cycle-walked into [0, n_chunks). */
static uint64_t permute(const st_loader *l, uint64_t epoch, uint64_t x) {
    int h = l->half_bits;
    uint64_t mask = (h >= 32) ? 0xffffffffULL : ((1ULL << h) - 1);
    uint64_t key = splitmix64(l->p.seed ^ 0x5345515545504f43ULL /* "SEQUEPOC" */);
    key = splitmix64(key ^ ((uint64_t)l->p.split + 1));
    key = splitmix64(key ^ epoch);
    do {
        uint64_t L = x >> h, R = x & mask;
        for (int r = 0; r < 4; r++) {
            uint64_t f = splitmix64(key + (uint64_t)r * 0x9e3779b97f4a7c15ULL + R) & mask;
            uint64_t t = L ^ f;
            L = R;
            R = t;
        }
        x = (L << h) | R;
    } while (x >= l->n_chunks);
    return x;
}

static void make_batch(const st_loader *l, uint64_t index, int32_t *out) {
    int B = l->p.batch_size, T = l->p.block_size;
    uint64_t row0 = (uint64_t)l->p.rank * (uint64_t)B;
    if (l->p.mode == ST_LOADER_RANDOM) {
        uint64_t range = l->n - (uint64_t)T; /* starts in [0, n - T - 1] */
        uint64_t k = splitmix64(l->p.seed ^ 0x5354524154414441ULL /* "STRATADA" */);
        k = splitmix64(k ^ ((uint64_t)l->p.split + 1));
        k = splitmix64(k ^ index);
        for (int b = 0; b < B; b++) {
            uint64_t r = splitmix64(k + (row0 + (uint64_t)b) * 0x9e3779b97f4a7c15ULL);
            uint64_t start = (uint64_t)(((unsigned __int128)r * range) >> 64);
            copy_window(l, start, (size_t)T + 1, out + (size_t)b * (size_t)(T + 1));
        }
    } else {
        uint64_t epoch = index / l->bpe, w = index % l->bpe;
        uint64_t per = (uint64_t)l->p.world_size * (uint64_t)B;
        for (int b = 0; b < B; b++) {
            uint64_t c = permute(l, epoch, w * per + row0 + (uint64_t)b);
            copy_window(l, c * (uint64_t)T, (size_t)T + 1, out + (size_t)b * (size_t)(T + 1));
        }
    }
}

static void *producer(void *arg) {
    st_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && l->count == l->cap)
            pthread_cond_wait(&l->not_full, &l->mu);
        if (l->stop) break;
        uint64_t idx = l->produce_next++, gen = l->gen;
        int slot = (l->head + l->count) % l->cap;
        pthread_mutex_unlock(&l->mu);
        make_batch(l, idx, l->ring + (size_t)slot * l->elems);
        pthread_mutex_lock(&l->mu);
        if (gen == l->gen && !l->stop) {
            ST_ASSERT(slot == (l->head + l->count) % l->cap);
            l->ring_idx[slot] = idx;
            l->count++;
            pthread_cond_signal(&l->not_empty);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

void st_loader_free(st_loader *l) {
    if (!l) return;
    if (l->th_started) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->not_full);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->th, NULL);
    }
    if (l->cap > 0) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->not_empty);
        pthread_cond_destroy(&l->not_full);
    }
    for (int i = 0; i < l->n_shards; i++)
        st_shard_free(l->shards[i]);
    st_free(l->shards);
    st_free(l->start);
    st_free(l->ring);
    st_free(l->ring_idx);
    st_manifest_free(l->man);
    st_free(l);
}

static st_status open_shards(st_loader *l, const char *dir) {
    st_manifest *m = l->man;
    int n = 0;
    for (int i = 0; i < m->n_shards; i++)
        n += m->shards[i].split == l->p.split;
    l->shards = st_calloc((size_t)(n ? n : 1), sizeof *l->shards);
    l->start = st_calloc((size_t)n + 1, sizeof *l->start);
    if (!l->shards || !l->start) return st__fail(ST_ERR_NOMEM, "%s: no memory", dir);
    size_t dl = strlen(dir);
    for (int i = 0; i < m->n_shards; i++) {
        const st_manifest_shard *e = &m->shards[i];
        if (e->split != l->p.split) continue;
        size_t fl = dl + strlen(e->file) + 2;
        char *path = st_malloc(fl);
        if (!path) return st__fail(ST_ERR_NOMEM, "%s: no memory", dir);
        snprintf(path, fl, "%s/%s", dir, e->file);
        st_shard *sh = NULL;
        st_status s = st_shard_open(path, l->p.check_tokens, &sh);
        if (s == ST_OK) {
            const st_shard_info *in = st_shard_get_info(sh);
            char hex[65];
            for (int k = 0; k < 32; k++)
                snprintf(hex + 2 * k, 3, "%02x", in->tokenizer_sha256[k]);
            if (in->n_tokens != e->n_tokens)
                s = st__fail(ST_ERR_FORMAT, "%s: %" PRIu64 " tokens, the manifest says %" PRIu64,
                             path, in->n_tokens, e->n_tokens);
            else if (in->vocab_size != m->vocab_size || in->token_bytes != m->token_bytes)
                s = st__fail(ST_ERR_FORMAT,
                             "%s: vocab_size %" PRIu32 " / %" PRIu32 "-byte tokens, the manifest "
                             "says %" PRIu32 " / %" PRIu32,
                             path, in->vocab_size, in->token_bytes, m->vocab_size, m->token_bytes);
            else if (strcmp(hex, m->tokenizer_sha256) != 0)
                s = st__fail(ST_ERR_FORMAT, "%s: tokenizer hash %s differs from the manifest's %s",
                             path, hex, m->tokenizer_sha256);
        }
        st_free(path);
        if (s != ST_OK) {
            st_shard_free(sh);
            return s;
        }
        l->shards[l->n_shards] = sh;
        l->start[l->n_shards + 1] = l->start[l->n_shards] + e->n_tokens;
        l->n_shards++;
    }
    l->n = l->start[l->n_shards];
    return ST_OK;
}

st_status st_loader_new(const char *dir, const st_loader_params *params, st_loader **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "st_loader_new: out is NULL");
    *out = NULL;
    if (!dir) return st__fail(ST_ERR_INVALID_ARG, "st_loader_new: dir is NULL");
    st_loader_params p = params ? *params : st_loader_default_params();
    if (p.batch_size < 1 || p.block_size < 1 || p.world_size < 1 || p.rank < 0 ||
        p.rank >= p.world_size || p.prefetch < 0 || p.prefetch > 1024 ||
        (p.split != ST_SPLIT_TRAIN && p.split != ST_SPLIT_VAL) ||
        (p.mode != ST_LOADER_RANDOM && p.mode != ST_LOADER_SEQUENTIAL))
        return st__fail(ST_ERR_INVALID_ARG,
                        "st_loader_new: %s: bad parameters (B=%d T=%d rank %d of %d, prefetch %d)",
                        dir, p.batch_size, p.block_size, p.rank, p.world_size, p.prefetch);
    st_loader *l = st_calloc(1, sizeof *l);
    if (!l) return st__fail(ST_ERR_NOMEM, "%s: no memory", dir);
    l->p = p;
    st_status s = st_manifest_read(dir, &l->man);
    if (s == ST_OK) s = open_shards(l, dir);
    const char *sname = p.split == ST_SPLIT_TRAIN ? "train" : "val";
    if (s == ST_OK && l->n < (uint64_t)p.block_size + 1)
        s = st__fail(ST_ERR_SHAPE, "%s: the %s split has %" PRIu64 " tokens, a row needs T+1 = %d",
                     dir, sname, l->n, p.block_size + 1);
    if (s == ST_OK && p.mode == ST_LOADER_SEQUENTIAL) {
        l->n_chunks = (l->n - 1) / (uint64_t)p.block_size;
        uint64_t per = (uint64_t)p.world_size * (uint64_t)p.batch_size;
        l->bpe = l->n_chunks / per;
        if (l->bpe == 0)
            s = st__fail(ST_ERR_SHAPE,
                         "%s: the %s split has %" PRIu64 " chunks of T=%d, fewer than one global "
                         "batch of %" PRIu64 " rows",
                         dir, sname, l->n_chunks, p.block_size, per);
        int bits = 0;
        while (bits < 64 && (1ULL << bits) < l->n_chunks)
            bits++;
        l->half_bits = bits < 2 ? 1 : (bits + 1) / 2;
    }
    l->elems = (size_t)p.batch_size * ((size_t)p.block_size + 1);
    if (s == ST_OK && p.prefetch > 0) {
        l->cap = p.prefetch;
        size_t bytes;
        if (st_mul_overflow_size(l->elems * sizeof(int32_t), (size_t)l->cap, &bytes))
            bytes = SIZE_MAX;
        l->ring = bytes == SIZE_MAX ? NULL : st_malloc(bytes);
        l->ring_idx = st_calloc((size_t)l->cap, sizeof *l->ring_idx);
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->not_empty, NULL);
        pthread_cond_init(&l->not_full, NULL);
        if (!l->ring || !l->ring_idx)
            s = st__fail(ST_ERR_NOMEM, "%s: no memory for the prefetch ring", dir);
        else if (pthread_create(&l->th, NULL, producer, l) != 0)
            s = st__fail(ST_ERR_INTERNAL, "%s: cannot start the prefetch thread", dir);
        else
            l->th_started = true;
    }
    if (s != ST_OK) {
        st_loader_free(l);
        return s;
    }
    *out = l;
    return ST_OK;
}

st_status st_loader_batch(const st_loader *l, uint64_t index, int32_t *out) {
    if (!l || !out) return st__fail(ST_ERR_INVALID_ARG, "st_loader_batch: NULL argument");
    make_batch(l, index, out);
    return ST_OK;
}

st_status st_loader_next(st_loader *l, int32_t *out, double *wait_s) {
    if (!l || !out) return st__fail(ST_ERR_INVALID_ARG, "st_loader_next: NULL argument");
    double t0 = st_time_s(), waited;
    if (l->cap == 0) {
        make_batch(l, l->next_batch, out);
        waited = st_time_s() - t0;
    } else {
        pthread_mutex_lock(&l->mu);
        while (l->count == 0)
            pthread_cond_wait(&l->not_empty, &l->mu);
        waited = st_time_s() - t0;
        ST_ASSERT(l->ring_idx[l->head] == l->next_batch);
        memcpy(out, l->ring + (size_t)l->head * l->elems, l->elems * sizeof(int32_t));
        l->head = (l->head + 1) % l->cap;
        l->count--;
        pthread_cond_signal(&l->not_full);
        pthread_mutex_unlock(&l->mu);
    }
    l->next_batch++;
    l->n_batches++;
    l->wait_s += waited;
    if (wait_s) *wait_s = waited;
    return ST_OK;
}

double st_loader_wait_s(const st_loader *l) {
    return l ? l->wait_s : 0.0;
}
uint64_t st_loader_n_batches(const st_loader *l) {
    return l ? l->n_batches : 0;
}
uint64_t st_loader_n_tokens(const st_loader *l) {
    return l ? l->n : 0;
}
uint32_t st_loader_vocab_size(const st_loader *l) {
    return l ? l->man->vocab_size : 0;
}
uint64_t st_loader_batches_per_epoch(const st_loader *l) {
    return l ? l->bpe : 0;
}

void st_loader_get_state(const st_loader *l, st_loader_state *st) {
    if (!l || !st) return;
    st->mode = l->p.mode;
    st->seed = l->p.seed;
    st->next_batch = l->next_batch;
    st->epoch = l->bpe ? l->next_batch / l->bpe : 0;
}

st_status st_loader_set_state(st_loader *l, const st_loader_state *st) {
    if (!l || !st) return st__fail(ST_ERR_INVALID_ARG, "st_loader_set_state: NULL argument");
    if (st->mode != l->p.mode || st->seed != l->p.seed)
        return st__fail(ST_ERR_INVALID_ARG,
                        "st_loader_set_state: the state is for mode %s seed %" PRIu64
                        ", the loader runs mode %s seed %" PRIu64,
                        st->mode == ST_LOADER_SEQUENTIAL ? "sequential" : "random", st->seed,
                        l->p.mode == ST_LOADER_SEQUENTIAL ? "sequential" : "random", l->p.seed);
    if (l->cap > 0) {
        pthread_mutex_lock(&l->mu);
        l->gen++;
        l->head = l->count = 0;
        l->produce_next = st->next_batch;
        l->next_batch = st->next_batch;
        pthread_cond_signal(&l->not_full);
        pthread_mutex_unlock(&l->mu);
    } else {
        l->next_batch = st->next_batch;
    }
    return ST_OK;
}

st_status st_loader_state_to_json(const st_loader_state *st, char **json) {
    if (!st || !json) return st__fail(ST_ERR_INVALID_ARG, "st_loader_state_to_json: NULL argument");
    char buf[256];
    int k = snprintf(buf, sizeof buf,
                     "{\"mode\": \"%s\", \"seed\": \"%" PRIu64 "\", \"epoch\": %" PRIu64
                     ", \"next_batch\": %" PRIu64 "}",
                     st->mode == ST_LOADER_SEQUENTIAL ? "sequential" : "random", st->seed,
                     st->epoch, st->next_batch);
    *json = st_malloc((size_t)k + 1);
    if (!*json) return st__fail(ST_ERR_NOMEM, "st_loader_state_to_json: no memory");
    memcpy(*json, buf, (size_t)k + 1);
    return ST_OK;
}

st_status st_loader_state_from_json(const char *json, size_t n, const char *source,
                                    st_loader_state *st) {
    if (!source) source = "<loader state>";
    if (!json || !st) return st__fail(ST_ERR_INVALID_ARG, "%s: NULL argument", source);
    json_error_t je;
    json_t *o = json_loadb(json, n, 0, &je);
    if (!o) return st__fail(ST_ERR_FORMAT, "%s: invalid JSON: %s", source, je.text);
    st_status s = ST_OK;
    json_t *m = json_object_get(o, "mode"), *sd = json_object_get(o, "seed"),
           *ep = json_object_get(o, "epoch"), *nb = json_object_get(o, "next_batch");
    st_loader_state r = {0};
    if (!json_is_string(m) ||
        (strcmp(json_string_value(m), "random") && strcmp(json_string_value(m), "sequential")))
        s = st__fail(ST_ERR_FORMAT, "%s: \"mode\" must be \"random\" or \"sequential\"", source);
    else if (!json_is_string(sd))
        s = st__fail(ST_ERR_FORMAT, "%s: \"seed\" must be a decimal string", source);
    else if (!json_is_integer(ep) || json_integer_value(ep) < 0 || !json_is_integer(nb) ||
             json_integer_value(nb) < 0)
        s = st__fail(ST_ERR_FORMAT, "%s: \"epoch\"/\"next_batch\" must be non-negative integers",
                     source);
    if (s == ST_OK) {
        const char *t = json_string_value(sd);
        char *end = NULL;
        r.seed = strtoull(t, &end, 10);
        if (!*t || *end || *t == '-')
            s = st__fail(ST_ERR_FORMAT, "%s: \"seed\" is not a uint64", source);
        r.mode =
            strcmp(json_string_value(m), "sequential") ? ST_LOADER_RANDOM : ST_LOADER_SEQUENTIAL;
        r.epoch = (uint64_t)json_integer_value(ep);
        r.next_batch = (uint64_t)json_integer_value(nb);
    }
    json_decref(o);
    if (s == ST_OK) *st = r;
    return s;
}
