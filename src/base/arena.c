/*
 * arena.c — step-lifetime memory: bump blocks for small allocations and a
 * pool of reusable chunks for large ones.
 *
 * Small allocations (< ST_ARENA_CHUNK_MIN bytes) bump an offset in the
 * newest block and open a bigger block when they do not fit (blocks never
 * move, so pointers stay valid until reset). Reset frees all blocks but one
 * and grows that one to the total used, so after the first step a training
 * loop allocates its small pieces from a single block.
 *
 * Large allocations (tensor data) are chunks: one st_malloc each, kept after
 * use in free lists by size class (sizes rounded up to 1/8 of a power of
 * two) and handed out again, exact size first. A chunk is live from
 * st_arena_alloc until st_arena_release (early: the caller knows nothing
 * points into it any more; layer 4's backward does this for gradient
 * buffers it has consumed) or the reset (everything). So memory that dies
 * inside a step is reused inside that step, and a steady-state step still
 * calls the system allocator for nothing. Chunks that sat unused through a
 * whole step are given back to the system at the reset. Live chunks are kept
 * in allocation order (a serial number each, for st_arena_release_since) and
 * in an address-sorted array (for st_arena_chunk_of's interior lookups).
 * Under AddressSanitizer a released chunk is poisoned until it is reused, so
 * a use after release is reported.
 *
 * Not thread-safe: one thread drives an arena.
 */
#include "strata/base.h"

#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define ST_ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ST_ARENA_ASAN 1
#endif
#endif
#ifdef ST_ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

typedef struct st_arena_block {
    struct st_arena_block *prev;
    size_t size; /* usable bytes after the header */
    size_t used;
} st_arena_block;

/* A large allocation. Data starts CHUNK_HDR bytes after the header. */
typedef struct st_arena_chunk {
    struct st_arena_chunk *prev, *next; /* live: allocation order; free: class list */
    size_t cap;                         /* usable bytes (the size class) */
    size_t bytes;                       /* bytes asked for (live) */
    uint64_t serial;                    /* allocation number (live) */
    uint64_t gen;                       /* reset generation of the last hand-out */
} st_arena_chunk;

#define N_CLASSES 512

struct st_arena {
    st_arena_block *head; /* newest block */
    size_t first_bytes;
    size_t used_total; /* bump bytes handed out since reset, padding included */
    size_t high_water; /* largest used_total seen (sizes the merged block) */
    /* chunks */
    st_arena_chunk *live_first, *live_last; /* live chunks in allocation order */
    st_arena_chunk **by_addr;               /* live chunks sorted by address */
    size_t n_live, cap_by_addr;
    st_arena_chunk *free_lists[N_CLASSES];
    size_t chunk_live_bytes; /* sum of live chunks' bytes */
    size_t chunk_cap_bytes;  /* sum of all chunks' caps (live and free) */
    uint64_t next_serial, gen;
    uint64_t serial_at_reset; /* next_serial at the last reset */
    size_t peak_bytes;        /* largest used_total + chunk_live_bytes seen */
};

#define BLOCK_HDR ((sizeof(st_arena_block) + 63) & ~(size_t)63)
#define CHUNK_HDR ((sizeof(st_arena_chunk) + 63) & ~(size_t)63)

static inline char *chunk_data(st_arena_chunk *c) {
    return (char *)c + CHUNK_HDR;
}

static st_arena_block *block_new(size_t size) {
    st_arena_block *b = st_malloc(BLOCK_HDR + size);
    if (!b) return NULL;
    b->prev = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

st_status st_arena_new(size_t block_bytes, st_arena **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "st_arena_new: out is NULL");
    *out = NULL;
    st_arena *a = st_calloc(1, sizeof *a);
    if (!a) return st__fail(ST_ERR_NOMEM, "st_arena_new: out of memory");
    a->first_bytes = block_bytes ? block_bytes : (size_t)1 << 20;
    a->head = block_new(a->first_bytes);
    if (!a->head) {
        st_free(a);
        return st__fail(ST_ERR_NOMEM, "st_arena_new: cannot allocate %zu bytes", block_bytes);
    }
    a->next_serial = a->serial_at_reset = 1;
    *out = a;
    return ST_OK;
}

static void free_blocks(st_arena_block *b) {
    while (b) {
        st_arena_block *p = b->prev;
        st_free(b);
        b = p;
    }
}

static void chunk_destroy(st_arena *a, st_arena_chunk *c) {
    a->chunk_cap_bytes -= c->cap;
    UNPOISON(chunk_data(c), c->cap); /* the system allocator may write there */
    st_free(c);
}

void st_arena_free(st_arena *a) {
    if (!a) return;
    free_blocks(a->head);
    for (st_arena_chunk *c = a->live_first, *n; c; c = n) {
        n = c->next;
        chunk_destroy(a, c);
    }
    for (int k = 0; k < N_CLASSES; k++)
        for (st_arena_chunk *c = a->free_lists[k], *n; c; c = n) {
            n = c->next;
            chunk_destroy(a, c);
        }
    st_free(a->by_addr);
    st_free(a);
}

/* ---- chunks ---------------------------------------------------------------------------- */

/* The size class of n bytes: n rounded up to a multiple of 1/8 of its power
 * of two (waste < 12.5%, and pages never written are never touched). */
static int size_class(size_t n, size_t *cap) {
    int k = 63 - __builtin_clzll((unsigned long long)n); /* 2^k <= n */
    size_t step = (size_t)1 << (k - 3);
    size_t c = (n + step - 1) & ~(step - 1);
    if (c >> k >= 2) k++; /* rounded up to the next power of two */
    *cap = c;
    int m = (int)(c >> (k - 3)); /* 8..15 */
    int idx = (k - 16) * 8 + (m - 8);
    return idx < 0 ? 0 : idx >= N_CLASSES ? N_CLASSES - 1 : idx;
}

/* Index of the first live chunk whose address is > p. */
static size_t addr_upper(const st_arena *a, const void *p) {
    size_t lo = 0, hi = a->n_live;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((const void *)a->by_addr[mid] <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool addr_insert(st_arena *a, st_arena_chunk *c) {
    if (a->n_live == a->cap_by_addr) {
        size_t cap = a->cap_by_addr ? a->cap_by_addr * 2 : 64;
        st_arena_chunk **v = st_realloc(a->by_addr, cap * sizeof *v);
        if (!v) return false;
        a->by_addr = v;
        a->cap_by_addr = cap;
    }
    size_t i = addr_upper(a, c);
    memmove(a->by_addr + i + 1, a->by_addr + i, (a->n_live - i) * sizeof *a->by_addr);
    a->by_addr[i] = c;
    a->n_live++;
    return true;
}

static void addr_remove(st_arena *a, st_arena_chunk *c) {
    size_t i = addr_upper(a, c);
    ST_ASSERT(i > 0 && a->by_addr[i - 1] == c);
    i--;
    memmove(a->by_addr + i, a->by_addr + i + 1, (a->n_live - i - 1) * sizeof *a->by_addr);
    a->n_live--;
}

static void note_peak(st_arena *a) {
    size_t live = a->used_total + a->chunk_live_bytes;
    if (live > a->peak_bytes) a->peak_bytes = live;
}

static void *chunk_alloc(st_arena *a, size_t bytes) {
    size_t cap;
    int k = size_class(bytes, &cap);
    /* A free chunk of this class: the most recently freed one of exactly
     * this size if there is one (shapes repeat step after step). */
    st_arena_chunk *c = NULL;
    for (st_arena_chunk *f = a->free_lists[k]; f; f = f->next)
        if (f->bytes == bytes) {
            c = f;
            break;
        }
    if (!c) c = a->free_lists[k];
    if (c) {
        if (c->prev)
            c->prev->next = c->next;
        else
            a->free_lists[k] = c->next;
        if (c->next) c->next->prev = c->prev;
    } else {
        if (cap > SIZE_MAX - CHUNK_HDR) {
            st__fail(ST_ERR_NOMEM, "arena: %zu bytes is too large", bytes);
            return NULL;
        }
        c = st_malloc(CHUNK_HDR + cap);
        if (!c) {
            st__fail(ST_ERR_NOMEM, "arena: cannot allocate a chunk of %zu bytes", cap);
            return NULL;
        }
        c->cap = cap;
        a->chunk_cap_bytes += cap;
    }
    if (!addr_insert(a, c)) {
        c->prev = NULL; /* back to its free list */
        c->next = a->free_lists[k];
        if (c->next) c->next->prev = c;
        a->free_lists[k] = c;
        st__fail(ST_ERR_NOMEM, "arena: out of memory for the chunk index");
        return NULL;
    }
    UNPOISON(chunk_data(c), bytes);
    c->bytes = bytes;
    c->serial = a->next_serial++;
    c->gen = a->gen;
    c->next = NULL;
    c->prev = a->live_last;
    if (a->live_last)
        a->live_last->next = c;
    else
        a->live_first = c;
    a->live_last = c;
    a->chunk_live_bytes += bytes;
    note_peak(a);
    return chunk_data(c);
}

/* Live chunk c back to its free list (not to the system). */
static void chunk_release(st_arena *a, st_arena_chunk *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        a->live_first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        a->live_last = c->prev;
    addr_remove(a, c);
    a->chunk_live_bytes -= c->bytes;
    POISON(chunk_data(c), c->cap);
    size_t cap;
    int k = size_class(c->cap, &cap);
    c->prev = NULL;
    c->next = a->free_lists[k];
    if (c->next) c->next->prev = c;
    a->free_lists[k] = c;
}

static st_arena_chunk *chunk_containing(const st_arena *a, const void *p) {
    size_t i = addr_upper(a, p);
    if (i == 0) return NULL;
    st_arena_chunk *c = a->by_addr[i - 1];
    const char *d = chunk_data(c);
    return (const char *)p >= d && (const char *)p < d + (c->bytes ? c->bytes : 1) ? c : NULL;
}

const void *st_arena_chunk_of(const st_arena *a, const void *p, size_t *bytes, uint64_t *serial) {
    st_arena_chunk *c = a && p ? chunk_containing(a, p) : NULL;
    if (bytes) *bytes = c ? c->bytes : 0;
    if (serial) *serial = c ? c->serial : 0;
    return c ? chunk_data(c) : NULL;
}

bool st_arena_release(st_arena *a, const void *p) {
    st_arena_chunk *c = a && p ? chunk_containing(a, p) : NULL;
    if (!c) return false;
    chunk_release(a, c);
    return true;
}

uint64_t st_arena_mark(const st_arena *a) {
    return a ? a->next_serial : 0;
}

size_t st_arena_release_since(st_arena *a, uint64_t mark, st_arena_keep_fn keep, void *user) {
    if (!a) return 0;
    size_t n = 0;
    for (st_arena_chunk *c = a->live_last, *p; c && c->serial >= mark; c = p) {
        p = c->prev;
        if (keep && keep(user, chunk_data(c), c->bytes)) continue;
        chunk_release(a, c);
        n++;
    }
    return n;
}

/* ---- allocation and reset ------------------------------------------------------------------ */

void *st_arena_alloc(st_arena *a, size_t bytes, size_t align) {
    if (!align) align = 64;
    ST_ASSERT((align & (align - 1)) == 0 && align <= 4096);
    if (bytes >= ST_ARENA_CHUNK_MIN && align <= 64) return chunk_alloc(a, bytes);
    st_arena_block *b = a->head;
    uintptr_t base = (uintptr_t)b + BLOCK_HDR;
    size_t off = (b->used + align - 1) & ~(align - 1);
    if (off > b->size || bytes > b->size - off) {
        size_t want = bytes + align;
        size_t size = b->size * 2;
        if (size < want) size = want;
        st_arena_block *nb = block_new(size);
        if (!nb) {
            st__fail(ST_ERR_NOMEM, "arena: cannot allocate a block of %zu bytes", size);
            return NULL;
        }
        nb->prev = b;
        a->head = nb;
        b = nb;
        base = (uintptr_t)b + BLOCK_HDR;
        off = 0; /* block data is 64-byte aligned */
        if (align > 64) off = ((base + align - 1) & ~(uintptr_t)(align - 1)) - base;
    }
    size_t before = b->used;
    b->used = off + bytes;
    a->used_total += b->used - before;
    if (a->used_total > a->high_water) a->high_water = a->used_total;
    note_peak(a);
    return (void *)(base + off);
}

void st_arena_reset(st_arena *a) {
    if (!a) return;
    if (a->head->prev) {
        /* Several blocks were needed: replace them all by one that holds the
         * high-water mark, so the next step fits in one block. */
        size_t want = a->high_water + a->high_water / 8 + 4096;
        st_arena_block *nb = block_new(want);
        if (nb) {
            free_blocks(a->head);
            a->head = nb;
        } else {
            free_blocks(a->head->prev); /* keep the newest (largest) block */
            a->head->prev = NULL;
        }
    }
    a->head->used = 0;
    a->used_total = 0;
    /* Free chunks not handed out during the step that ends go back to the
     * system (the shapes changed; a step that took no chunk at all, such as
     * two resets in a row, ages nothing); then every live chunk becomes free. */
    bool took = a->next_serial != a->serial_at_reset;
    a->serial_at_reset = a->next_serial;
    for (int k = 0; took && k < N_CLASSES; k++)
        for (st_arena_chunk *c = a->free_lists[k], *n; c; c = n) {
            n = c->next;
            if (c->gen == a->gen) continue;
            if (c->prev)
                c->prev->next = c->next;
            else
                a->free_lists[k] = c->next;
            if (c->next) c->next->prev = c->prev;
            chunk_destroy(a, c);
        }
    a->n_live = 0; /* all at once: no per-chunk index upkeep */
    while (a->live_last) {
        st_arena_chunk *c = a->live_last;
        a->live_last = c->prev;
        size_t cap;
        int k = size_class(c->cap, &cap);
        POISON(chunk_data(c), c->cap);
        c->prev = NULL;
        c->next = a->free_lists[k];
        if (c->next) c->next->prev = c;
        a->free_lists[k] = c;
    }
    a->live_first = NULL;
    a->chunk_live_bytes = 0;
    if (took) a->gen++;
}

size_t st_arena_used_bytes(const st_arena *a) {
    return a->used_total + a->chunk_live_bytes;
}

size_t st_arena_capacity_bytes(const st_arena *a) {
    size_t n = a->chunk_cap_bytes;
    for (const st_arena_block *b = a->head; b; b = b->prev)
        n += b->size;
    return n;
}

size_t st_arena_peak_bytes(const st_arena *a) {
    return a ? a->peak_bytes : 0;
}
