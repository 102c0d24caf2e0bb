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
 *    (quantize_q8, as llama.cpp does), x taken in chunks of MM_X_CHUNK rows.
 *    f16/bf16 weights use one converting dot per (row, x row).
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
#include <math.h>
#include <string.h>

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

typedef struct mm_job {
    const st_wmatrix *w;
    const float *x;
    int64_t n;
    float *y;
    const st_cpu_kernels *k;
    const st_cpu_qkernels *qk;
    const int8_t *xqs;   /* small-n q8_0/q4_0: x quantized, n rows of cols int8 */
    const float *xd;     /* and n rows of cols/32 scales */
    float *tiles;        /* tile path: nth tiles of QTILE_ROWS * cols floats */
    int64_t row_align;   /* thread boundaries fall on multiples of this */
} mm_job;

static void mm_split(const mm_job *j, int ith, int nth, int64_t *r0, int64_t *r1) {
    const int64_t rows = j->w->rows, a = j->row_align;
    const int64_t units = (rows + a - 1) / a;
    int64_t b = units * ith / nth * a, e = units * (ith + 1) / nth * a;
    *r0 = b < rows ? b : rows;
    *r1 = e < rows ? e : rows;
}

/* y[i, r] for r in [r0, r1) and every i */
static void mm_rows(const mm_job *j, int64_t r0, int64_t r1) {
    const st_wmatrix *w = j->w;
    const int64_t K = w->cols, R = w->rows;
    if (r1 <= r0) return;
    const char *w0 = (const char *)w->data + (size_t)r0 * w->row_bytes;
    if (w->type == ST_WT_F32 || w->type == ST_WT_Q8_0 || w->type == ST_WT_Q4_0) {
        for (int64_t i0 = 0; i0 < j->n; i0 += MM_X_CHUNK) {
            const int64_t nx = j->n - i0 < MM_X_CHUNK ? j->n - i0 : MM_X_CHUNK;
            float *y0 = j->y + i0 * R + r0;
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
            j->y[i * R + r] = w->type == ST_WT_F16 ? j->qk->dot_f16_f32(K, wr, j->x + i * K)
                                                   : j->qk->dot_bf16_f32(K, wr, j->x + i * K);
    }
}

static void mm_rows_fn(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    int64_t r0, r1;
    mm_split(j, ith, nth, &r0, &r1);
    mm_rows(j, r0, r1);
}

/* dequantize W rows [r0, r1) in tiles and sgemm them against all of x */
static void mm_tile_fn(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const st_wmatrix *w = j->w;
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
                    j->x, (int)K, tile, (int)K, 0.0f, j->y + t, (int)R);
    }
}

static int64_t tile_min_n(st_wtype t) {
    switch (t) {
    case ST_WT_F32: return F32_SGEMM_MIN_N;
    case ST_WT_Q8_0:
    case ST_WT_Q4_0: return INT64_MAX;
    default: return QTILE_MIN_N;
    }
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
    st_backend *be = st_ctx_backend(ctx);
    st_pool *pool = st_backend_cpu_pool(be);
    int level = st_backend_cpu_simd_level(be);
    if (level < 0) level = ST_SIMD_SCALAR;
    const st_cpu_kernels *k = st__cpu_kernels((st_simd_level)level);
    const st_cpu_qkernels *qk = st__cpu_qkernels((st_simd_level)level);
    if (!k || !qk) {
        k = st__cpu_kernels(ST_SIMD_SCALAR);
        qk = st__cpu_qkernels(ST_SIMD_SCALAR);
    }
    const int nth = pool ? st_pool_size(pool) : 1;
    const bool blas_ok = n <= INT_MAX && w->rows <= INT_MAX && w->cols <= INT_MAX;
    mm_job j = {.w = w, .x = x, .n = n, .y = y, .k = k, .qk = qk, .row_align = 16};

    if (n >= tile_min_n(w->type) && blas_ok) {
        if (w->type == ST_WT_F32) {
            /* the pool is idle here: BLAS has the cores alone */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)w->rows,
                        (int)w->cols, 1.0f, x, (int)w->cols, (const float *)w->data,
                        (int)w->cols, 0.0f, y, (int)w->rows);
            return ST_OK;
        }
        j.row_align = QTILE_ROWS;
        j.tiles = scratch_get((size_t)nth * QTILE_ROWS * (size_t)w->cols * sizeof(float));
        if (!j.tiles) return st__fail(ST_ERR_NOMEM, "st_wmatrix_matmul: out of memory (tiles)");
        const int blas_threads = st_hw_blas_get_threads();
        st_hw_blas_set_threads(1); /* one BLAS thread inside each pool thread */
        if (pool) st_pool_run(pool, mm_tile_fn, &j);
        else mm_tile_fn(&j, 0, 1);
        st_hw_blas_set_threads(blas_threads);
        return ST_OK;
    }
    if (w->type == ST_WT_Q8_0 || w->type == ST_WT_Q4_0) {
        /* x to q8_0 values: n rows of cols int8, then n rows of cols/32 scales */
        const size_t qs_bytes = ((size_t)n * (size_t)w->cols + 63) / 64 * 64;
        uint8_t *s = scratch_get(qs_bytes + (size_t)n * (size_t)(w->cols / ST_QK) * sizeof(float));
        if (!s) return st__fail(ST_ERR_NOMEM, "st_wmatrix_matmul: out of memory (q8_0 x)");
        int8_t *xqs = (int8_t *)s;
        float *xd = (float *)(s + qs_bytes);
        for (int64_t i = 0; i < n; i++)
            qk->quantize_q8(w->cols, x + i * w->cols, xqs + i * w->cols,
                            xd + i * (w->cols / ST_QK));
        j.xqs = xqs;
        j.xd = xd;
    }
    if (pool && nth > 1 && w->rows >= (int64_t)nth * MM_MIN_ROWS_PER_THREAD)
        st_pool_run(pool, mm_rows_fn, &j);
    else mm_rows(&j, 0, w->rows);
    return ST_OK;
}
