/*
 * quant.c — weight matrices (strata/quant.h): type table, llama.cpp's
 * q8_0/q4_0 block quantizers, and y = x . W^T over the context's pool.
 *
 * This is the portable reference path: rows are dequantized (or dotted as
 * they are, for f32) one output at a time, split over the pool by output
 * rows. SIMD integer kernels replace the inner loops where the backend has
 * them; the results of every path are checked against this one.
 */
#include "strata/quant.h"

#include <math.h>
#include <string.h>

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
    case ST_WT_F16:
        for (int64_t i = 0; i < n; i++) y[i] = st_f16_to_f32(((const uint16_t *)src)[i]);
        break;
    case ST_WT_BF16:
        for (int64_t i = 0; i < n; i++) y[i] = st_bf16_to_f32(((const uint16_t *)src)[i]);
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

/* ---- reference product: outputs split over the pool ------------------------ */
typedef struct mm_job {
    const st_wmatrix *w;
    const float *x;
    int64_t n;
    float *y;
} mm_job;

static void mm_range(void *arg, int64_t begin, int64_t end) {
    const mm_job *j = arg;
    const st_wmatrix *w = j->w;
    const int64_t K = w->cols;
    float *row = w->type == ST_WT_F32 ? NULL : st_malloc((size_t)K * sizeof(float));
    if (w->type != ST_WT_F32 && !row) {
        for (int64_t i = 0; i < j->n; i++)
            for (int64_t r = begin; r < end; r++) j->y[i * w->rows + r] = NAN;
        return;
    }
    for (int64_t r = begin; r < end; r++) {
        const char *src = (const char *)w->data + (size_t)r * w->row_bytes;
        const float *wr;
        if (w->type == ST_WT_F32) {
            wr = (const float *)src;
        } else {
            st_dequantize_row(w->type, src, K, row);
            wr = row;
        }
        for (int64_t i = 0; i < j->n; i++) {
            const float *xi = j->x + i * K;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++) acc += wr[k] * xi[k];
            j->y[i * w->rows + r] = acc;
        }
    }
    st_free(row);
}

st_status st_wmatrix_matmul(st_ctx *ctx, const st_wmatrix *w, const float *x, int64_t n,
                            float *y) {
    ST_TRY(check_wmatrix(w, "st_wmatrix_matmul"));
    if (!ctx || !x || !y || n < 0)
        return st__fail(ST_ERR_INVALID_ARG, "st_wmatrix_matmul: bad arguments");
    if (n == 0 || w->rows == 0) return ST_OK;
    st_pool *pool = st_backend_cpu_pool(st_ctx_backend(ctx));
    const int nth = pool ? st_pool_size(pool) : 1;
    int64_t grain = (w->rows + nth - 1) / nth;
    if (grain < 1) grain = 1;
    mm_job j = {w, x, n, y};
    if (pool) st_pool_parallel_for(pool, w->rows, grain, mm_range, &j);
    else mm_range(&j, 0, w->rows);
    return ST_OK;
}
