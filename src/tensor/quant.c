/*
 * quant.c — weight matrices (strata/quant.h): type table, llama.cpp's
 * q8_0/q4_0 block quantizers, and y = x . W^T over the context's pool.
 *
 * The product picks one of three paths (measured on the 2-core Zen VM; see
 * docs/L3-tensors.md):
 *  - small-n: each thread of the pool takes a contiguous run of output rows
 *    (multiples of 16) and runs the CPU backend's register-blocked kernels of
 *    the context's SIMD level on it (kernels.h: gemm_f32, gemm_q8_0,
 *    gemm_q4_0; tiles of 4 weight rows x up to 4 x rows), so W is read from
 *    memory once per call whatever n is: decode (n = 1) streams the weights at
 *    memory bandwidth and a decode batch of n sequences pays the arithmetic,
 *    not n weight reads. Quantized weights meet x quantized to q8_0 first
 *    (quantize_q8, as llama.cpp does), x taken in chunks of MM_X_CHUNK rows;
 *    q8_0 / q4_0 matrices with a packed form (st_wmatrix_pack: 16 rows
 *    interleaved) go to gemm_q8_0x16 / gemm_q4_0x16 where the level has them
 *    (packed_ready), the row-major kernels otherwise. f16/bf16 weights use
 *    one converting dot per (row, x row).
 *  - f32 weights, n >= F32_SGEMM_MIN_N: one cblas_sgemm, BLAS alone with the
 *    cores while the pool waits.
 *  - f16/bf16 weights, n >= QTILE_MIN_N (prefill): each pool thread
 *    dequantizes tiles of QTILE_ROWS rows to f32 and runs single-threaded
 *    sgemm on them (BLAS set to one thread for the call: never both
 *    multithreaded). q8_0/q4_0 stay on their integer kernels at every n.
 * Scratch (quantized x, tiles) is one buffer per calling thread, grown to the
 * largest product and kept (thread-local; a pthread key frees it at thread
 * exit, st_wmatrix_scratch_release sooner), so steady decode does not
 * allocate. st_wmatrix is read-only; products may run concurrently from
 * different threads with different contexts.
 */
#include "strata/quant.h"

#include <cblas.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <math.h>
#include <string.h>

#include "backend/backend_impl.h"
#include "backend/cpu/kernels.h"
#include "strata/hw.h"

static const char *const wt_names[ST_WT_COUNT_] = {"f32", "f16", "bf16", "q8_0", "q4_0"};

const char *st_wtype_name(st_wtype t) {
    return (unsigned)t < ST_WT_COUNT_ ? wt_names[t] : NULL;
}

int st_wtype_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < ST_WT_COUNT_; i++)
        if (strcmp(name, wt_names[i]) == 0) return i;
    return -1;
}

size_t st_wtype_row_bytes(st_wtype t, int64_t cols) {
    if (cols < 0 || cols > (INT64_C(1) << 40)) return 0;
    switch (t) {
    case ST_WT_F32: return (size_t)cols * 4;
    case ST_WT_F16:
    case ST_WT_BF16: return (size_t)cols * 2;
    case ST_WT_Q8_0: return cols % ST_QK ? 0 : (size_t)(cols / ST_QK) * sizeof(st_block_q8_0);
    case ST_WT_Q4_0: return cols % ST_QK ? 0 : (size_t)(cols / ST_QK) * sizeof(st_block_q4_0);
    default: return 0;
    }
}

_Static_assert(sizeof(st_block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(st_block_q4_0) == 18, "q4_0 block is 18 bytes");

st_status st_quantize_row(st_wtype t, const float *x, int64_t n, void *dst) {
    if (!x || !dst || n < 0 || (st_wtype_row_bytes(t, n) == 0 && n != 0))
        return st__fail(ST_ERR_INVALID_ARG, "st_quantize_row: bad arguments (type %d, n %lld)",
                        (int)t, (long long)n);
    switch (t) {
    case ST_WT_F32: memcpy(dst, x, (size_t)n * 4); break;
    case ST_WT_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = st_f32_to_f16(x[i]);
        break;
    case ST_WT_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = st_f32_to_bf16(x[i]);
        break;
    case ST_WT_Q8_0: { /* llama.cpp quantize_row_q8_0_ref */
        st_block_q8_0 *b = dst;
        for (int64_t i = 0; i < n / ST_QK; i++) {
            const float *v = x + i * ST_QK;
            float amax = 0.0f;
            for (int j = 0; j < ST_QK; j++) amax = fmaxf(amax, fabsf(v[j]));
            const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
            b[i].d = st_f32_to_f16(d);
            for (int j = 0; j < ST_QK; j++) b[i].qs[j] = (int8_t)roundf(v[j] * id);
        }
        break;
    }
    case ST_WT_Q4_0: { /* llama.cpp quantize_row_q4_0_ref */
        st_block_q4_0 *b = dst;
        for (int64_t i = 0; i < n / ST_QK; i++) {
            const float *v = x + i * ST_QK;
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < ST_QK; j++)
                if (amax < fabsf(v[j])) {
                    amax = fabsf(v[j]);
                    max = v[j];
                }
            const float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
            b[i].d = st_f32_to_f16(d);
            for (int j = 0; j < ST_QK / 2; j++) {
                const float x0 = v[j] * id, x1 = v[ST_QK / 2 + j] * id;
                int q0 = (int)(x0 + 8.5f), q1 = (int)(x1 + 8.5f);
                if (q0 > 15) q0 = 15;
                if (q1 > 15) q1 = 15;
                b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
        break;
    }
    default: return st__fail(ST_ERR_INVALID_ARG, "st_quantize_row: unknown type %d", (int)t);
    }
    return ST_OK;
}

st_status st_dequantize_row(st_wtype t, const void *src, int64_t n, float *y) {
    if (!src || !y || n < 0 || (st_wtype_row_bytes(t, n) == 0 && n != 0))
        return st__fail(ST_ERR_INVALID_ARG,
                        "st_dequantize_row: bad arguments (type %d, n %lld)", (int)t,
                        (long long)n);
    switch (t) {
    case ST_WT_F32: memcpy(y, src, (size_t)n * 4); break;
    case ST_WT_F16: /* rows of a mapped file may sit at any byte offset: memcpy loads */
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, (const unsigned char *)src + 2 * i, 2);
            y[i] = st_f16_to_f32(h);
        }
        break;
    case ST_WT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, (const unsigned char *)src + 2 * i, 2);
            y[i] = st_bf16_to_f32(h);
        }
        break;
    case ST_WT_Q8_0: {
        const st_block_q8_0 *b = src;
        for (int64_t i = 0; i < n / ST_QK; i++) {
            const float d = st_f16_to_f32(b[i].d);
            for (int j = 0; j < ST_QK; j++) y[i * ST_QK + j] = d * (float)b[i].qs[j];
        }
        break;
    }
    case ST_WT_Q4_0: {
        const st_block_q4_0 *b = src;
        for (int64_t i = 0; i < n / ST_QK; i++) {
            const float d = st_f16_to_f32(b[i].d);
            for (int j = 0; j < ST_QK / 2; j++) {
                y[i * ST_QK + j] = d * (float)((b[i].qs[j] & 15) - 8);
                y[i * ST_QK + ST_QK / 2 + j] = d * (float)((b[i].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    default: return st__fail(ST_ERR_INVALID_ARG, "st_dequantize_row: unknown type %d", (int)t);
    }
    return ST_OK;
}

static st_status check_wmatrix(const st_wmatrix *w, const char *fn) {
    if (!w || !w->data || w->rows < 0 || w->cols < 0 ||
        w->row_bytes != st_wtype_row_bytes(w->type, w->cols) || w->row_bytes == 0)
        return st__fail(ST_ERR_INVALID_ARG, "%s: malformed weight matrix", fn);
    return ST_OK;
}

st_status st_wmatrix_get_row(const st_wmatrix *w, int64_t row, float *out) {
    ST_TRY(check_wmatrix(w, "st_wmatrix_get_row"));
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "st_wmatrix_get_row: NULL output");
    if (row < 0 || row >= w->rows)
        return st__fail(ST_ERR_BOUNDS, "st_wmatrix_get_row: row %lld outside [0, %lld)",
                        (long long)row, (long long)w->rows);
    return st_dequantize_row(w->type, (const char *)w->data + (size_t)row * w->row_bytes,
                             w->cols, out);
}

/* ---- packed q8_0 / q4_0 (the layouts: strata/quant.h) ------------------------------ */

size_t st_wmatrix_packed_bytes(const st_wmatrix *w) {
    if (!w || !w->data || (w->type != ST_WT_Q8_0 && w->type != ST_WT_Q4_0) || w->rows <= 0 ||
        w->cols <= 0 || w->row_bytes == 0 ||
        w->row_bytes != st_wtype_row_bytes(w->type, w->cols))
        return 0;
    const size_t groups = (size_t)(w->rows + ST_CPU_X16_ROWS - 1) / ST_CPU_X16_ROWS;
    const size_t gb = st__x16_group_bytes(w->type == ST_WT_Q4_0, w->cols / ST_QK);
    size_t n;
    return st_mul_overflow_size(groups, gb, &n) ? 0 : n;
}

st_status st_wmatrix_pack(const st_wmatrix *w, void *dst) {
    const size_t bytes = st_wmatrix_packed_bytes(w);
    if (!bytes || !dst || ((uintptr_t)dst & 63))
        return st__fail(ST_ERR_INVALID_ARG, "st_wmatrix_pack: %s",
                        !bytes ? "not a well-formed q8_0 or q4_0 matrix"
                               : "destination NULL or not 64-byte aligned");
    const int q4 = w->type == ST_WT_Q4_0;
    const int64_t nb = w->cols / ST_QK, R = ST_CPU_X16_ROWS;
    const size_t bb = q4 ? sizeof(st_block_q4_0) : sizeof(st_block_q8_0);
    const size_t wb = st__x16_block_bytes(q4);
    uint8_t *out = dst;
    memset(out, 0, bytes);
    for (int64_t g = 0; g * R < w->rows; g++) {
        uint8_t *gp = out + (size_t)g * st__x16_group_bytes(q4, nb);
        for (int64_t r = 0; r < R; r++) {
            const int64_t row = g * R + r;
            const uint8_t *src =
                row < w->rows ? (const uint8_t *)w->data + (size_t)row * w->row_bytes : NULL;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *chunk = gp + (size_t)(b / 2) * st__x16_chunk_bytes(q4, 2);
                const int second = (int)(b & 1);
                const uint8_t *blk = src ? src + (size_t)b * bb : NULL; /* {f16 d; qs} */
                if (blk) memcpy(chunk + second * 32 + r * 2, blk, 2);
                uint8_t *qs = chunk + 64 + second * wb;
                /* 4-byte groups of the row's qs, row after row (q8_0 + 128; a
                 * padding row holds weight 0: 128, or 8 | 8 << 4 for q4_0) */
                for (size_t j = 0; j < bb - 2; j++)
                    qs[(j / 4) * 64 + (size_t)r * 4 + j % 4] =
                        q4 ? (blk ? blk[2 + j] : 0x88)
                           : (uint8_t)((blk ? (int)(int8_t)blk[2 + j] : 0) + 128);
            }
        }
    }
    return ST_OK;
}

/* the kernels of ctx's level read packed weights now */
static bool packed_ready(const st_cpu_qkernels *qk) {
    return qk->gemm_q8_0x16 && qk->gemm_q4_0x16 && (!qk->x16_ready || qk->x16_ready());
}

/* ---- per-thread scratch ----------------------------------------------------------- */

/* The calling thread's scratch, at least `bytes` long, contents not kept;
 * grown (by half again at least) and never shrunk, so a steady decode loop
 * allocates nothing. The pthread key frees it when the thread exits. */
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static int g_scratch_key_ok;
static _Thread_local void *t_scratch;
static _Thread_local size_t t_scratch_bytes;

static void scratch_destroy(void *p) { st_free(p); }

static void scratch_key_init(void) {
    g_scratch_key_ok = pthread_key_create(&g_scratch_key, scratch_destroy) == 0;
}

static void *scratch_get(size_t bytes) {
    if (bytes <= t_scratch_bytes) return t_scratch;
    pthread_once(&g_scratch_once, scratch_key_init);
    size_t want = bytes;
    if (want < t_scratch_bytes + t_scratch_bytes / 2) want = t_scratch_bytes + t_scratch_bytes / 2;
    void *p = st_malloc(want);
    if (!p) return NULL;
    st_free(t_scratch);
    t_scratch = p;
    t_scratch_bytes = want;
    if (g_scratch_key_ok) pthread_setspecific(g_scratch_key, p);
    return p;
}

void st_wmatrix_scratch_release(void) {
    st_free(t_scratch);
    t_scratch = NULL;
    t_scratch_bytes = 0;
    if (g_scratch_key_ok) pthread_setspecific(g_scratch_key, NULL);
}

/* ---- products ---------------------------------------------------------------- */

#define QTILE_ROWS 64  /* rows of W dequantized per sgemm tile */
/* n from which non-f32 products dequantize tiles + sgemm instead of using
 * the small-n kernels (q8_0, q4_0) or the row dots (f16, bf16). Measured on
 * the 2-core Zen VM (strata bench decode's batch rows and a micro-bench;
 * docs/L3-tensors.md): see the numbers there. */
#define QTILE_MIN_N 32
/* q8_0 / q4_0 never take the tile path: the small-n integer kernels beat
 * dequantize + single-threaded sgemm at every n measured (1..512), e.g. one
 * thread, W 2048 x 768, n = 64: 1.7 ms against 2.8 ms for the sgemm alone */
/* input rows per small-n kernel call: x's q8_0 rows of a chunk stay in L2
 * while the thread's weight rows stream past them once per chunk */
#define MM_X_CHUNK 64
/* n from which f32 products go to cblas_sgemm; below it the small-n kernels
 * read each weight row once for all n inputs, where sgemm would first pack
 * the whole weight matrix */
#define F32_SGEMM_MIN_N 64
/* rows per pool thread below which a product runs on the calling thread */
#define MM_MIN_ROWS_PER_THREAD 16

#define MM_MAX_MATS 4 /* matrices one st_wmatrix_matmul_multi job takes */

typedef struct mm_job {
    const float *x;
    int64_t n;
    /* matrices ws[i] -> ys[i] (the tile path: one), all of ws[0]->cols;
     * small-n threads split the units of all of them as one row range */
    int n_w;
    const st_wmatrix *ws[MM_MAX_MATS];
    float *ys[MM_MAX_MATS];
    int n_next; /* the product that comes next (a hint): its first reads are prefetched */
    const st_wmatrix *next[MM_MAX_MATS];
    _Atomic int64_t next_unit; /* multi job: the first unit no thread has taken */
    const st_cpu_kernels *k;
    const st_cpu_qkernels *qk;
    const int8_t *xqs;   /* small-n q8_0/q4_0: x quantized, n rows of cols int8 */
    const float *xd;     /* and n rows of cols/32 scales */
    const int32_t *xs;   /* packed q8_0 weights: n rows of cols/32 block sums of xqs */
    bool pk;             /* the kernels read packed weights (packed_ready) */
    float *tiles;        /* tile path: nth tiles of QTILE_ROWS * cols floats */
    int64_t row_align;   /* thread boundaries fall on multiples of this */
} mm_job;

static void mm_split(const mm_job *j, int ith, int nth, int64_t *r0, int64_t *r1) {
    const int64_t rows = j->ws[0]->rows, a = j->row_align;
    const int64_t units = (rows + a - 1) / a;
    int64_t b = units * ith / nth * a, e = units * (ith + 1) / nth * a;
    *r0 = b < rows ? b : rows;
    *r1 = e < rows ? e : rows;
}

/* job j reads w's packed form */
static bool packed_in(const mm_job *j, const st_wmatrix *w) {
    return j->pk && w->packed && (w->type == ST_WT_Q8_0 || w->type == ST_WT_Q4_0);
}

/* y[i, r] for r in [r0, r1) and every i */
static void mm_rows(const mm_job *j, const st_wmatrix *w, float *y, int64_t r0, int64_t r1) {
    const int64_t K = w->cols, R = w->rows;
    if (r1 <= r0) return;
    if (packed_in(j, w)) {
        const int64_t nb = K / ST_QK;
        const int q4 = w->type == ST_WT_Q4_0;
        const char *g0 = (const char *)w->packed +
                         (size_t)(r0 / ST_CPU_X16_ROWS) * st__x16_group_bytes(q4, nb);
        for (int64_t i0 = 0; i0 < j->n; i0 += MM_X_CHUNK) {
            const int64_t nx = j->n - i0 < MM_X_CHUNK ? j->n - i0 : MM_X_CHUNK;
            (q4 ? j->qk->gemm_q4_0x16 : j->qk->gemm_q8_0x16)(
                K, r1 - r0, g0, nx, j->xqs + i0 * K, j->xd + i0 * nb, j->xs + i0 * nb,
                y + i0 * R + r0, R);
        }
        return;
    }
    const char *w0 = (const char *)w->data + (size_t)r0 * w->row_bytes;
    if (w->type == ST_WT_F32 || w->type == ST_WT_Q8_0 || w->type == ST_WT_Q4_0) {
        for (int64_t i0 = 0; i0 < j->n; i0 += MM_X_CHUNK) {
            const int64_t nx = j->n - i0 < MM_X_CHUNK ? j->n - i0 : MM_X_CHUNK;
            float *y0 = y + i0 * R + r0;
            if (w->type == ST_WT_F32)
                j->qk->gemm_f32(K, r1 - r0, (const float *)w0, nx, j->x + i0 * K, y0, R);
            else if (w->type == ST_WT_Q8_0)
                j->qk->gemm_q8_0(K, r1 - r0, w0, nx, j->xqs + i0 * K, j->xd + i0 * (K / ST_QK),
                                 y0, R);
            else
                j->qk->gemm_q4_0(K, r1 - r0, w0, nx, j->xqs + i0 * K, j->xd + i0 * (K / ST_QK),
                                 y0, R);
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) { /* f16, bf16: one converting dot per pair */
        const uint16_t *wr = (const uint16_t *)((const char *)w->data + (size_t)r * w->row_bytes);
        for (int64_t i = 0; i < j->n; i++)
            y[i * R + r] = w->type == ST_WT_F16 ? j->qk->dot_f16_f32(K, wr, j->x + i * K)
                                                   : j->qk->dot_bf16_f32(K, wr, j->x + i * K);
    }
}


/* A multi job's units (row_align rows, a matrix's last unit possibly
 * shorter) are numbered through all of its matrices in order. fn(j, matrix
 * index, first row, end row, ctx) for each matrix piece of units [u0, u1). */
typedef void (*share_fn)(const mm_job *j, int i, int64_t r0, int64_t r1, void *ctx);

static int64_t units_of(const mm_job *j, const st_wmatrix *w) {
    return (w->rows + j->row_align - 1) / j->row_align;
}

static void for_units(const mm_job *j, int n_w, const st_wmatrix *const *ws, int64_t u0,
                      int64_t u1, share_fn fn, void *ctx) {
    int64_t base = 0;
    for (int i = 0; i < n_w && base < u1; i++) {
        const int64_t u = units_of(j, ws[i]), lo = u0 > base ? u0 - base : 0,
                      hi = u1 - base < u ? u1 - base : u;
        if (lo < hi) {
            const int64_t R = ws[i]->rows, r1 = hi * j->row_align;
            fn(j, i, lo * j->row_align, r1 < R ? r1 : R, ctx);
        }
        base += u;
    }
}

/* Guided self-scheduling: a thread takes max(remaining / (2 nth), MM_GRAB_MIN)
 * units at a time from a shared counter, so the first pieces are large
 * (long streams) and the last small, and a thread that started late or ran
 * slower is helped by the other instead of being waited for. With an even
 * static split the caller of a stories15M q8_0 decode step spent 14% of
 * the samples waiting for the worker (perf): a share of a few microseconds
 * and a worker that starts a fraction of one later. A row's output does
 * not depend on who computes it. */
#define MM_GRAB_MIN 4

static int64_t grab_size(int64_t remaining, int nth) {
    const int64_t g = remaining / (2 * (int64_t)nth);
    return g > MM_GRAB_MIN ? g : MM_GRAB_MIN;
}

static void share_rows(const mm_job *j, int i, int64_t r0, int64_t r1, void *ctx) {
    (void)ctx;
    mm_rows(j, j->ws[i], j->ys[i], r0, r1);
}

/* Bytes of each of the next share's first streams prefetched by a thread
 * that is done with its share. A product's threads meet at the end of the
 * pool run; the memory pipeline drains there and the next product starts
 * cold (DRAM latency, prefetchers ramping up): on the 2-core VM the n = 1
 * products of a stories110M q8_0 step took 0.92 of the copy bandwidth one
 * call per matrix and 1.14 with all of them in one pool run. A thread
 * that finishes first, and the serial work between products (norms,
 * attention), now overlap with the start of the next one's reads. The
 * one-input kernels read a share as two streams (its two halves, see
 * kernels_small_avx512.c); both starts are fetched. */
#define NEXT_PF_BYTES 4096

static void prefetch_span(const char *p, size_t n) {
    for (size_t o = 0; o < n; o += 64) __builtin_prefetch(p + o, 0, 3);
}

static void share_prefetch(const mm_job *j, int i, int64_t r0, int64_t r1, void *ctx) {
    bool *first = ctx;
    if (!*first) return; /* the piece's first matrix only: the kernels start there */
    *first = false;
    const st_wmatrix *w = j->next[i];
    const char *base;
    size_t end, a, b;
    int64_t rb;
    if (packed_in(j, w)) { /* halves of 16-row groups */
        const size_t gb = st__x16_group_bytes(w->type == ST_WT_Q4_0, w->cols / ST_QK);
        const int64_t R = ST_CPU_X16_ROWS, g0 = r0 / R, ng = (r1 - r0 + R - 1) / R;
        rb = r0 + (ng + 1) / 2 * R;
        base = w->packed;
        end = (size_t)((w->rows + R - 1) / R) * gb;
        a = (size_t)g0 * gb;
        b = (size_t)(g0 + (ng + 1) / 2) * gb;
    } else { /* halves of 4-row groups */
        const int64_t ng = (r1 - r0 + 3) / 4;
        rb = r0 + (ng + 1) / 2 * 4;
        base = w->data;
        end = (size_t)w->rows * w->row_bytes;
        a = (size_t)r0 * w->row_bytes;
        b = (size_t)rb * w->row_bytes;
    }
    prefetch_span(base + a, end - a < NEXT_PF_BYTES ? end - a : NEXT_PF_BYTES);
    if (rb < r1) prefetch_span(base + b, end - b < NEXT_PF_BYTES ? end - b : NEXT_PF_BYTES);
}

static void mm_multi_fn(void *arg, int ith, int nth) {
    mm_job *j = arg;
    int64_t all = 0;
    for (int i = 0; i < j->n_w; i++) all += units_of(j, j->ws[i]);
    for (;;) {
        int64_t u0 = atomic_load_explicit(&j->next_unit, memory_order_relaxed);
        if (u0 >= all) break;
        int64_t u1 = u0 + grab_size(all - u0, nth);
        if (u1 > all) u1 = all;
        if (!atomic_compare_exchange_weak_explicit(&j->next_unit, &u0, u1,
                                                   memory_order_relaxed, memory_order_relaxed))
            continue;
        for_units(j, j->n_w, j->ws, u0, u1, share_rows, NULL);
    }
    if (j->n_next) { /* the piece thread ith is likely to take first: the ith grab */
        int64_t nall = 0, u0 = 0, g = 0;
        for (int i = 0; i < j->n_next; i++) nall += units_of(j, j->next[i]);
        for (int t = 0; t <= ith && u0 < nall; t++) {
            g = grab_size(nall - u0, nth);
            if (t < ith) u0 += g;
        }
        bool first = true;
        if (u0 < nall)
            for_units(j, j->n_next, j->next, u0, u0 + g < nall ? u0 + g : nall, share_prefetch,
                      &first);
    }
}

/* dequantize W rows [r0, r1) in tiles and sgemm them against all of x */
static void mm_tile_fn(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const st_wmatrix *w = j->ws[0];
    const int64_t K = w->cols, R = w->rows;
    float *tile = j->tiles + (size_t)ith * QTILE_ROWS * (size_t)K;
    int64_t r0, r1;
    mm_split(j, ith, nth, &r0, &r1);
    for (int64_t t = r0; t < r1; t += QTILE_ROWS) {
        const int64_t nr = r1 - t < QTILE_ROWS ? r1 - t : QTILE_ROWS;
        for (int64_t r = 0; r < nr; r++) {
            const char *src = (const char *)w->data + (size_t)(t + r) * w->row_bytes;
            float *dst = tile + r * K;
            if (w->type == ST_WT_F16) j->k->f16_to_f32(K, (const uint16_t *)src, dst);
            else if (w->type == ST_WT_BF16) j->k->bf16_to_f32(K, (const uint16_t *)src, dst);
            else st_dequantize_row(w->type, src, K, dst);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->n, (int)nr, (int)K, 1.0f,
                    j->x, (int)K, tile, (int)K, 0.0f, j->ys[0] + t, (int)R);
    }
}

/* x to q8_0 values for the integer kernels, in the calling thread's
 * scratch: n rows of cols int8, n rows of cols/32 scales, and with sums
 * (packed weights) n rows of cols/32 block sums of the int8 */
static st_status quantize_x(mm_job *j, int64_t cols, bool sums, const char *fn) {
    const int64_t n = j->n, nb = cols / ST_QK;
    const size_t qs_bytes = ((size_t)n * (size_t)cols + 63) / 64 * 64;
    const size_t per = (size_t)n * (size_t)nb;
    uint8_t *s = scratch_get(qs_bytes + per * (sizeof(float) + (sums ? sizeof(int32_t) : 0)));
    if (!s) return st__fail(ST_ERR_NOMEM, "%s: out of memory (q8_0 x)", fn);
    int8_t *xqs = (int8_t *)s;
    float *xd = (float *)(s + qs_bytes);
    int32_t *xs = sums ? (int32_t *)(xd + per) : NULL;
    for (int64_t i = 0; i < n; i++)
        j->qk->quantize_q8(cols, j->x + i * cols, xqs + i * cols, xd + i * nb,
                           xs ? xs + i * nb : NULL);
    j->xs = xs;
    j->xqs = xqs;
    j->xd = xd;
    return ST_OK;
}

/* the context's pool and the kernel tables of its backend's SIMD level */
static st_pool *mm_setup(st_ctx *ctx, const st_cpu_kernels **k, const st_cpu_qkernels **qk) {
    st_backend *be = st_ctx_backend(ctx);
    int level = st_backend_cpu_simd_level(be);
    if (level < 0) level = ST_SIMD_SCALAR;
    *k = st__cpu_kernels((st_simd_level)level);
    *qk = st__cpu_qkernels((st_simd_level)level);
    if (!*k || !*qk) {
        *k = st__cpu_kernels(ST_SIMD_SCALAR);
        *qk = st__cpu_qkernels(ST_SIMD_SCALAR);
    }
    return st_backend_cpu_pool(be);
}

static int64_t tile_min_n(st_wtype t) {
    switch (t) {
    case ST_WT_F32: return F32_SGEMM_MIN_N;
    case ST_WT_Q8_0:
    case ST_WT_Q4_0: return INT64_MAX;
    default: return QTILE_MIN_N;
    }
}

/* The small-n regime for n_mats (1..MM_MAX_MATS) checked matrices of equal
 * cols > 0 against x (n >= 1 rows): x quantized once if any matrix wants
 * it, then one pool run over the rows of all of them (on the calling
 * thread when they are too few to split). next: the hint of
 * st_wmatrix_matmul_multi (malformed or too many: ignored). */
static st_status mm_small(st_pool *pool, const st_cpu_kernels *k, const st_cpu_qkernels *qk,
                          int n_mats, const st_wmatrix *const *w, const float *x, int64_t n,
                          float *const *y, int n_next, const st_wmatrix *const *next,
                          const char *fn) {
    /* 16-row units: the packed layout's groups */
    mm_job j = {.x = x, .n = n, .k = k, .qk = qk, .row_align = ST_CPU_X16_ROWS, .n_w = n_mats,
                .pk = packed_ready(qk)};
    int64_t rows = 0;
    bool quant = false, sums = false;
    for (int i = 0; i < n_mats; i++) {
        j.ws[i] = w[i];
        j.ys[i] = y[i];
        rows += w[i]->rows;
        quant = quant || w[i]->type == ST_WT_Q8_0 || w[i]->type == ST_WT_Q4_0;
        sums = sums || packed_in(&j, w[i]);
    }
    if (n_next <= MM_MAX_MATS)
        for (int i = 0; i < n_next; i++) {
            const st_wmatrix *q = next[i];
            if (!q || !q->data || q->rows < 0 || q->row_bytes == 0) {
                j.n_next = 0;
                break;
            }
            j.next[j.n_next++] = q;
        }
    if (quant) ST_TRY(quantize_x(&j, w[0]->cols, sums, fn));
    atomic_init(&j.next_unit, 0);
    const int nth = pool ? st_pool_size(pool) : 1;
    if (pool && nth > 1 && rows >= (int64_t)nth * MM_MIN_ROWS_PER_THREAD)
        st_pool_run(pool, mm_multi_fn, &j);
    else mm_multi_fn(&j, 0, 1);
    return ST_OK;
}

bool st_wmatrix_packs(st_ctx *ctx) {
    if (!ctx) return false;
    const st_cpu_kernels *k;
    const st_cpu_qkernels *qk;
    (void)mm_setup(ctx, &k, &qk);
    return packed_ready(qk);
}

st_status st_wmatrix_matmul(st_ctx *ctx, const st_wmatrix *w, const float *x, int64_t n,
                            float *y) {
    ST_TRY(check_wmatrix(w, "st_wmatrix_matmul"));
    if (!ctx || !x || !y || n < 0)
        return st__fail(ST_ERR_INVALID_ARG, "st_wmatrix_matmul: bad arguments");
    if (n == 0 || w->rows == 0) return ST_OK;
    if (w->cols == 0) {
        memset(y, 0, (size_t)n * (size_t)w->rows * sizeof(float));
        return ST_OK;
    }
    const st_cpu_kernels *k;
    const st_cpu_qkernels *qk;
    st_pool *pool = mm_setup(ctx, &k, &qk);
    const int nth = pool ? st_pool_size(pool) : 1;
    const bool blas_ok = n <= INT_MAX && w->rows <= INT_MAX && w->cols <= INT_MAX;
    if (n >= tile_min_n(w->type) && blas_ok) {
        if (w->type == ST_WT_F32) {
            /* the pool is idle here: BLAS has the cores alone (idle workers
             * stop spinning at once instead of competing with its threads) */
            if (pool) st__pool_sleep_hint(pool);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)w->rows,
                        (int)w->cols, 1.0f, x, (int)w->cols, (const float *)w->data,
                        (int)w->cols, 0.0f, y, (int)w->rows);
            return ST_OK;
        }
        mm_job j = {.x = x, .n = n, .n_w = 1, .ws = {w}, .ys = {y}, .k = k, .qk = qk,
                    .row_align = QTILE_ROWS};
        j.tiles = scratch_get((size_t)nth * QTILE_ROWS * (size_t)w->cols * sizeof(float));
        if (!j.tiles) return st__fail(ST_ERR_NOMEM, "st_wmatrix_matmul: out of memory (tiles)");
        const int blas_threads = st_hw_blas_get_threads();
        st_hw_blas_set_threads(1); /* one BLAS thread inside each pool thread */
        if (pool) st_pool_run(pool, mm_tile_fn, &j);
        else mm_tile_fn(&j, 0, 1);
        st_hw_blas_set_threads(blas_threads);
        return ST_OK;
    }
    return mm_small(pool, k, qk, 1, &w, x, n, &y, 0, NULL, "st_wmatrix_matmul");
}

st_status st_wmatrix_matmul_multi(st_ctx *ctx, int n_mats, const st_wmatrix *const *w,
                                  const float *x, int64_t n, float *const *y, int n_next,
                                  const st_wmatrix *const *next) {
    if (!ctx || !w || !y || !x || n < 0 || n_mats < 0 || n_next < 0 ||
        (n_next > 0 && !next))
        return st__fail(ST_ERR_INVALID_ARG, "st_wmatrix_matmul_multi: bad arguments");
    bool small = n_mats <= MM_MAX_MATS && n > 0;
    for (int i = 0; i < n_mats; i++) {
        ST_TRY(check_wmatrix(w[i], "st_wmatrix_matmul_multi"));
        if (!y[i]) return st__fail(ST_ERR_INVALID_ARG, "st_wmatrix_matmul_multi: NULL output");
        small = small && w[i]->cols == w[0]->cols && w[i]->cols > 0 &&
                n < tile_min_n(w[i]->type);
    }
    if (!small) { /* different shapes, or the sgemm / tile regime: one by one */
        for (int i = 0; i < n_mats; i++) ST_TRY(st_wmatrix_matmul(ctx, w[i], x, n, y[i]));
        return ST_OK;
    }
    const st_cpu_kernels *k;
    const st_cpu_qkernels *qk;
    st_pool *pool = mm_setup(ctx, &k, &qk);
    return mm_small(pool, k, qk, n_mats, w, x, n, y, n_next, next, "st_wmatrix_matmul_multi");
}
