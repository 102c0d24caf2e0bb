/*
 * arena.c — bump allocation for memory that lives one step.
 *
 * An arena is a list of blocks; allocation bumps an offset in the newest
 * block and opens a bigger block when it does not fit (blocks never move,
 * so pointers stay valid until reset). Reset frees all blocks but one and
 * grows that one to the total used, so after the first step a training loop
 * allocates from a single block and never calls the system allocator.
 */
#include "strata/base.h"

#include <string.h>

typedef struct st_arena_block {
    struct st_arena_block *prev;
    size_t size; /* usable bytes after the header */
    size_t used;
} st_arena_block;

struct st_arena {
    st_arena_block *head; /* newest block */
    size_t first_bytes;
    size_t used_total;     /* bytes handed out since reset, padding included */
    size_t high_water;     /* largest used_total seen */
};

#define BLOCK_HDR ((sizeof(st_arena_block) + 63) & ~(size_t)63)

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

void st_arena_free(st_arena *a) {
    if (!a) return;
    free_blocks(a->head);
    st_free(a);
}

void *st_arena_alloc(st_arena *a, size_t bytes, size_t align) {
    if (!align) align = 64;
    ST_ASSERT((align & (align - 1)) == 0 && align <= 4096);
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
}

size_t st_arena_used_bytes(const st_arena *a) { return a->used_total; }

size_t st_arena_capacity_bytes(const st_arena *a) {
    size_t n = 0;
    for (const st_arena_block *b = a->head; b; b = b->prev) n += b->size;
    return n;
}
