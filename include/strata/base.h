/*
 * strata/base.h — what every layer needs and no layer owns.
 *
 * Status codes and the thread-local error message, the allocation wrapper
 * (counting, with failure injection for tests), arenas, logging and the
 * assertion macro. Nothing here knows about tensors, devices or models.
 *
 * Error convention (every layer keeps it): a function that can fail returns
 * st_status (ST_OK == 0). On failure it has stored a message naming the input
 * and the fault, readable with st_last_error() on the same thread until the
 * next failing call. The library never exits; only main() picks exit codes.
 */
#ifndef STRATA_BASE_H
#define STRATA_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ST_VERSION_MAJOR 0
#define ST_VERSION_MINOR 1
#define ST_VERSION_PATCH 0
#define ST_VERSION_STRING "0.1.0"

/* ---- status codes ------------------------------------------------------
 * One table (src/base/status.c) gives each code its name and message.
 * Values only grow; none is ever reused. */
typedef enum st_status {
    ST_OK = 0,
    ST_ERR_INVALID_ARG = 1, /* a NULL or out-of-range argument */
    ST_ERR_SHAPE = 2,       /* shapes that do not fit the operation */
    ST_ERR_DTYPE = 3,       /* a dtype the operation does not take */
    ST_ERR_AXIS = 4,        /* an axis outside [-ndim, ndim) */
    ST_ERR_BOUNDS = 5,      /* an index or a view outside its storage */
    ST_ERR_NOMEM = 6,       /* an allocation failed */
    ST_ERR_IO = 7,          /* a read, write, open or rename failed */
    ST_ERR_FORMAT = 8,      /* outside data that is malformed */
    ST_ERR_UNSUPPORTED = 9, /* valid, but not built or not implemented here */
    ST_ERR_STATE = 10,      /* called in the wrong state (e.g. backward twice) */
    ST_ERR_INTERNAL = 11,   /* an unexpected failure of a library below us */
    ST_STATUS_COUNT_
} st_status;

/* "ST_ERR_SHAPE" etc.; "ST_UNKNOWN" for values outside the table. */
const char *st_status_name(st_status s);
/* A one-line description of the code (not of the last failure). */
const char *st_status_message(st_status s);

/* The message of the last failure on this thread ("" when none).
 * The pointer stays valid until the next failure on this thread. */
const char *st_last_error(void);
/* Clears the message of the last failure on this thread. */
void st_clear_error(void);

/* Internal: record a failure and return its status. Used as
 *   return st__fail(ST_ERR_SHAPE, "matmul: a is [%lld,%lld] ...", ...); */
st_status st__fail(st_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
st_status st__failv(st_status s, const char *fmt, va_list ap);

/* Propagate a failing status unchanged (the callee already set the message). */
#define ST_TRY(expr)                                                           \
    do {                                                                       \
        st_status st_try_s_ = (expr);                                          \
        if (st_try_s_ != ST_OK) return st_try_s_;                              \
    } while (0)

/* Programming errors (broken invariants), never outside input: abort with
 * file, line and expression. Active in every build type. */
#define ST_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) st__assert_fail(#cond, __FILE__, __LINE__);               \
    } while (0)
_Noreturn void st__assert_fail(const char *expr, const char *file, int line);

/* ---- allocation wrapper ------------------------------------------------
 * Every allocation of the library goes through these, so tests can count
 * live allocations and make the N-th allocation fail (st_alloc_fail_after).
 * st_free(NULL) is a no-op. st_malloc(0) returns a unique non-NULL pointer.
 * Returned memory is aligned to 64 bytes (a cache line, an AVX-512 vector). */
void *st_malloc(size_t bytes);
void *st_calloc(size_t n, size_t size); /* zeroed; NULL on overflow */
void *st_realloc(void *p, size_t bytes); /* keeps 64-byte alignment */
void st_free(void *p);
char *st_strdup(const char *s);

typedef struct st_alloc_stats {
    uint64_t n_alloc;     /* successful allocations since start */
    uint64_t n_free;      /* frees of non-NULL pointers */
    int64_t live_bytes;   /* bytes currently allocated */
    int64_t peak_bytes;   /* high-water mark of live_bytes */
} st_alloc_stats;
st_alloc_stats st_alloc_get_stats(void);
/* Make the allocation after the next n succeed-calls fail (n = 0: the very
 * next one). A negative n disables injection (the default). Process-wide. */
void st_alloc_fail_after(int64_t n);

/* ---- growable strings -------------------------------------------------------
 * A NUL-terminated string built by appends (pages, JSON-free text formats,
 * Prometheus exposition, prompts). Zero-initialize to start; after a failed
 * allocation every later append fails too, so one check at the end
 * suffices. max_bytes (0: none) bounds the length: an append past it fails
 * with ST_ERR_BOUNDS. p is st_malloc'd (st_free it, or st_strbuf_free). */
typedef struct st_strbuf {
    char *p;          /* NULL until the first append */
    size_t len, cap;
    size_t max_bytes;
    bool failed;
} st_strbuf;

/* Errors: ST_ERR_NOMEM, ST_ERR_BOUNDS (past max_bytes). */
st_status st_strbuf_put(st_strbuf *b, const void *s, size_t n);
st_status st_strbuf_puts(st_strbuf *b, const char *s);
st_status st_strbuf_printf(st_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees p and zeroes the struct (keeps nothing). */
void st_strbuf_free(st_strbuf *b);

/* ---- arena ---------------------------------------------------------------
 * An allocator for memory whose lifetime is one step (activations, views,
 * the autograd tape). Small allocations are a pointer bump; large ones
 * (>= ST_ARENA_CHUNK_MIN bytes, alignment <= 64) are chunks kept in a pool
 * by size class. st_arena_reset releases everything at once and keeps the
 * capacity (small blocks merged into one, chunks back in the pool), so a
 * steady-state training step allocates nothing from the system. Pointers
 * stay valid until the next reset, or until their chunk is released early
 * with st_arena_release / st_arena_release_since (its memory is then reused
 * by later allocations of the same step). Not thread-safe. */
typedef struct st_arena st_arena;

/* block_bytes: size of the first block (0: 1 MiB). */
st_status st_arena_new(size_t block_bytes, st_arena **out);
void st_arena_free(st_arena *a);
/* Returns NULL (with ST_ERR_NOMEM recorded) when memory runs out.
 * align must be a power of two (0: 64). Memory is not zeroed. */
void *st_arena_alloc(st_arena *a, size_t bytes, size_t align);
void st_arena_reset(st_arena *a);
/* Live bytes: small ones since the last reset plus live chunks. */
size_t st_arena_used_bytes(const st_arena *a);
size_t st_arena_capacity_bytes(const st_arena *a); /* all blocks and chunks */
/* Largest st_arena_used_bytes seen over the arena's life (the allocator's
 * peak for step memory). */
size_t st_arena_peak_bytes(const st_arena *a);

/* Chunks: early release of large allocations. */
#define ST_ARENA_CHUNK_MIN ((size_t)64 << 10)
/* The live chunk holding p (any byte inside it): its first byte, with its
 * size and allocation serial through bytes/serial (may be NULL); NULL (and
 * 0s) when p is not inside a live chunk (a small allocation, other memory). */
const void *st_arena_chunk_of(const st_arena *a, const void *p, size_t *bytes,
                              uint64_t *serial);
/* Returns the live chunk holding p to the pool now; every pointer into it
 * becomes invalid. False (nothing done) when p is not in a live chunk. */
bool st_arena_release(st_arena *a, const void *p);
/* The serial the next chunk will get: chunks allocated after this call
 * have serial >= the returned mark. */
uint64_t st_arena_mark(const st_arena *a);
/* Releases every live chunk allocated since mark for which keep (may be
 * NULL) returns false; returns how many were released. keep must not
 * allocate from or release into a. */
typedef bool (*st_arena_keep_fn)(void *user, const void *chunk, size_t bytes);
size_t st_arena_release_since(st_arena *a, uint64_t mark, st_arena_keep_fn keep, void *user);

/* ---- logging -------------------------------------------------------------
 * Messages go to stderr as "strata: LEVEL: message". The level comes from
 * STRATA_LOG (error|warn|info|debug; default warn) at first use. */
typedef enum st_log_level {
    ST_LOG_ERROR = 0,
    ST_LOG_WARN = 1,
    ST_LOG_INFO = 2,
    ST_LOG_DEBUG = 3
} st_log_level;
void st_log_msg(st_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void st_log_set_level(st_log_level level);
st_log_level st_log_get_level(void);

/* ---- small helpers -------------------------------------------------------- */
/* Monotonic time in seconds (CLOCK_MONOTONIC). */
double st_time_s(void);
/* a*b into *out; false on overflow. */
static inline bool st_mul_overflow_size(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}

#ifdef __cplusplus
}
#endif
#endif /* STRATA_BASE_H */
