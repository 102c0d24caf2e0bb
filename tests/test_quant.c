/*
 * test_quant.c — weight matrices (strata/quant.h) and the quantized-row
 * kernels (src/backend/cpu/kernels_q*.c).
 *
 * 1. The quantizers against blocks computed by hand from llama.cpp's
 *    quantize_row_q8_0_ref / quantize_row_q4_0_ref (ties away from zero in
 *    q8_0, q4_0's scale from the signed extreme, first-seen on |max| ties,
 *    and its clamp to 15), and all-zero blocks.
 * 2. dequantize(quantize(x)) within the formats' error bounds.
 * 3. Every SIMD level (and AVX-512 with and without VNNI) against the scalar
 *    kernels: block dots with unit scales are integers and must match
 *    exactly; with random scales within 1e-5 relative.
 * 4. st_wmatrix_matmul at every level, every type, n = 1, 2, 7, 64, 70, 130
 *    and odd row counts against a double-precision product of the
 *    dequantized weights, within the bound that x's own q8_0 rounding allows.
 * 5. No allocation in steady state: repeated products reuse the calling
 *    thread's scratch; st_wmatrix_scratch_release gives every byte back.
 * 6. st_wmatrix_matmul_multi gives the bits of st_wmatrix_matmul on each
 *    matrix: one pool run over several matrices (row counts that split
 *    unevenly between threads and matrices), mixed q8_0 / q4_0 / f32, n in
 *    and past the small-n regime, unequal cols (one by one), with and
 *    without a next-product hint (malformed hints are ignored); bad
 *    arguments are refused.
 * 7. Packed q8_0 and q4_0 weights (st_wmatrix_pack): where the kernels read them,
 *    every output equals, bit for bit, a scalar model of the packed sum
 *    (blocks in order, fmaf(integer dot, d_w * d_x, sum), x quantized by
 *    st_quantize_row), for row counts around the 16-row groups, odd and
 *    even block counts, n = 1..70 (one output row at a time too: batch
 *    invariance), weights -128 and zero scales, one and several matrices
 *    per pool run, with next-product hints, at every level that packs
 *    (AVX-512 VNNI and AVX2 with AVX-VNNI: the same bits); with VNNI
 *    switched off the packed form is ignored (the row-major bits); bad
 *    arguments refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "strata/hw.h"
#include "strata/quant.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) / (double)(1u << 23)) - 1.0f;
}

/* ---- 1. hand-computed blocks ---------------------------------------------------- */

static void test_q8_0_hand(void **state) {
    (void)state;
    float x[32] = {0};
    st_block_q8_0 b;
    /* all zeros: d = 0, qs = 0 */
    assert_int_equal(st_quantize_row(ST_WT_Q8_0, x, 32, &b), ST_OK);
    assert_int_equal(b.d, 0);
    for (int j = 0; j < 32; j++) assert_int_equal(b.qs[j], 0);
    /* amax 127 -> d = 1 (f16 0x3c00), id = 1: roundf rounds ties away from zero */
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 0.5f;
    x[4] = -0.49f;
    x[5] = -127.0f;
    x[6] = 3.5f;
    assert_int_equal(st_quantize_row(ST_WT_Q8_0, x, 32, &b), ST_OK);
    assert_int_equal(b.d, 0x3c00);
    const int8_t want[7] = {127, 3, -3, 1, 0, -127, 4};
    for (int j = 0; j < 7; j++) assert_int_equal(b.qs[j], want[j]);
    for (int j = 7; j < 32; j++) assert_int_equal(b.qs[j], 0);
    /* amax 254 -> d = 2: 3 -> 1.5 -> 2, -1 -> -0.5 -> -1 */
    memset(x, 0, sizeof x);
    x[0] = -254.0f;
    x[1] = 3.0f;
    x[2] = -1.0f;
    assert_int_equal(st_quantize_row(ST_WT_Q8_0, x, 32, &b), ST_OK);
    assert_int_equal(b.d, 0x4000);
    assert_int_equal(b.qs[0], -127);
    assert_int_equal(b.qs[1], 2);
    assert_int_equal(b.qs[2], -1);
}

static void test_q4_0_hand(void **state) {
    (void)state;
    float x[32] = {0};
    st_block_q4_0 b;
    assert_int_equal(st_quantize_row(ST_WT_Q4_0, x, 32, &b), ST_OK);
    /* all zeros: d = 0 / -8 = -0 (f16 0x8000, as llama.cpp writes), every q = (int)8.5 = 8 */
    assert_int_equal(b.d, 0x8000);
    for (int j = 0; j < 16; j++) assert_int_equal(b.qs[j], 0x88);
    /* signed extreme -8 first, +8 tied after it: d = -8 / -8 = 1; 8 -> 16 clamps to 15 */
    x[0] = -8.0f;
    x[1] = 8.0f;
    x[2] = 7.0f;
    x[3] = -0.5f;  /* 8.0 -> 8 */
    x[4] = 0.5f;   /* 9.0 -> 9 */
    x[5] = -7.6f;  /* 0.9 -> 0 */
    x[16] = 1.49f; /* 9.99 -> 9, high nibble of qs[0] */
    x[17] = -3.0f; /* 5.5 -> 5 */
    assert_int_equal(st_quantize_row(ST_WT_Q4_0, x, 32, &b), ST_OK);
    assert_int_equal(b.d, 0x3c00);
    assert_int_equal(b.qs[0], 0 | (9 << 4));
    assert_int_equal(b.qs[1], 15 | (5 << 4));
    assert_int_equal(b.qs[2], 15 | (8 << 4));
    assert_int_equal(b.qs[3], 8 | (8 << 4));
    assert_int_equal(b.qs[4], 9 | (8 << 4));
    assert_int_equal(b.qs[5], 0 | (8 << 4));
    /* positive extreme first: d = 8 / -8 = -1 (0xbc00): -8 -> 16 clamps to 15 */
    memset(x, 0, sizeof x);
    x[0] = 8.0f;
    x[1] = -8.0f;
    x[2] = 2.0f; /* -2 + 8.5 = 6.5 -> 6 */
    assert_int_equal(st_quantize_row(ST_WT_Q4_0, x, 32, &b), ST_OK);
    assert_int_equal(b.d, 0xbc00);
    assert_int_equal(b.qs[0] & 15, 0);
    assert_int_equal(b.qs[1] & 15, 15);
    assert_int_equal(b.qs[2] & 15, 6);
}

static void test_types_and_args(void **state) {
    (void)state;
    assert_string_equal(st_wtype_name(ST_WT_Q4_0), "q4_0");
    assert_null(st_wtype_name(ST_WT_COUNT_));
    assert_int_equal(st_wtype_from_name("q8_0"), ST_WT_Q8_0);
    assert_int_equal(st_wtype_from_name("q5_k"), -1);
    assert_int_equal(st_wtype_row_bytes(ST_WT_Q8_0, 64), 68);
    assert_int_equal(st_wtype_row_bytes(ST_WT_Q4_0, 64), 36);
    assert_int_equal(st_wtype_row_bytes(ST_WT_Q4_0, 33), 0);
    assert_int_equal(st_wtype_row_bytes(ST_WT_BF16, 3), 6);
    float x[33] = {0};
    uint8_t buf[64];
    assert_int_equal(st_quantize_row(ST_WT_Q8_0, x, 33, buf), ST_ERR_INVALID_ARG);
    assert_int_equal(st_quantize_row(ST_WT_COUNT_, x, 32, buf), ST_ERR_INVALID_ARG);
    st_wmatrix w = {ST_WT_Q8_0, 2, 32, buf, 33, NULL};
    assert_int_equal(st_wmatrix_get_row(&w, 0, x), ST_ERR_INVALID_ARG);
    w.row_bytes = 34;
    assert_int_equal(st_wmatrix_get_row(&w, 2, x), ST_ERR_BOUNDS);
}

/* ---- 2. round trips ------------------------------------------------------------- */

static void test_round_trip_bounds(void **state) {
    (void)state;
    enum { N = 32 * 40 };
    float x[N], y[N];
    static uint8_t buf[N * 4];
    for (int i = 0; i < N; i++) x[i] = frand() * (i < 32 ? 1e-3f : (float)(1 + i % 7));
    for (int t = 0; t < ST_WT_COUNT_; t++) {
        assert_int_equal(st_quantize_row((st_wtype)t, x, N, buf), ST_OK);
        assert_int_equal(st_dequantize_row((st_wtype)t, buf, N, y), ST_OK);
        for (int blk = 0; blk < N / 32; blk++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[blk * 32 + j]));
            for (int j = 0; j < 32; j++) {
                const int i = blk * 32 + j;
                const float e = fabsf(x[i] - y[i]);
                float bound;
                switch (t) {
                case ST_WT_F32: bound = 0; break;
                case ST_WT_F16: bound = fabsf(x[i]) * 0x1p-11f + 6e-8f; break;
                case ST_WT_BF16: bound = fabsf(x[i]) * 0x1p-8f; break;
                /* the f16 scale rounds too: relative 2^-11, or 2^-25 absolute when subnormal */
                case ST_WT_Q8_0: bound = amax / 127 * 0.5f + amax * 1e-3f + 127 * 0x1p-25f; break;
                default: bound = amax / 8 + amax * 1e-3f + 8 * 0x1p-25f; break; /* clamp: one step */
                }
                if (e > bound)
                    fail_msg("%s: x[%d] = %g -> %g (bound %g)", st_wtype_name((st_wtype)t), i,
                             x[i], y[i], bound);
            }
        }
    }
}

/* ---- 3. kernel levels ----------------------------------------------------------- */

static int q_levels(const st_cpu_qkernels **out) {
    st_hw_info info;
    int n = 0;
    if (st_hw_query(&info) != ST_OK) return 0;
    const st_simd_level cand[] = {ST_SIMD_AVX2, ST_SIMD_AVX512};
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
        const st_cpu_qkernels *k = st__cpu_qkernels(cand[i]);
        if (k && st_hw_simd_supported(&info, cand[i])) out[n++] = k;
    }
    return n;
}

static void check_levels_once(const char *tag) {
    const st_cpu_qkernels *S = st__cpu_qkernels(ST_SIMD_SCALAR), *lv[4];
    const int nl = q_levels(lv);
    enum { MAXB = 13 };
    float x[MAXB * 32], w[MAXB * 32];
    st_block_q8_0 wq8[MAXB], xq8[MAXB];
    st_block_q4_0 wq4[MAXB];
    uint16_t wh[MAXB * 32], wb[MAXB * 32];
    for (int unit = 0; unit < 2; unit++) {
        for (int nb = 1; nb <= MAXB; nb++) {
            const int n = nb * 32;
            for (int i = 0; i < n; i++) {
                x[i] = frand() * (1 + i % 5);
                w[i] = frand() * (1 + i % 3);
            }
            st_quantize_row(ST_WT_Q8_0, x, n, xq8);
            st_quantize_row(ST_WT_Q8_0, w, n, wq8);
            st_quantize_row(ST_WT_Q4_0, w, n, wq4);
            st_quantize_row(ST_WT_F16, w, n, wh);
            st_quantize_row(ST_WT_BF16, w, n, wb);
            if (unit) { /* unit scales: every dot is an exact integer */
                for (int b = 0; b < nb; b++) wq8[b].d = xq8[b].d = wq4[b].d = 0x3c00;
            }
            const float r8 = S->dot_q8_0_q8_0(n, wq8, xq8), r4 = S->dot_q4_0_q8_0(n, wq4, xq8);
            const float rh = S->dot_f16_f32(n, wh, x), rb = S->dot_bf16_f32(n, wb, x);
            if (unit) { /* the scalar spec itself against an independent integer sum */
                long long i8 = 0, i4 = 0;
                for (int i = 0; i < n; i++) {
                    const int b = i / 32, j = i % 32;
                    const int q4 = j < 16 ? (wq4[b].qs[j] & 15) - 8 : (wq4[b].qs[j - 16] >> 4) - 8;
                    i8 += (long long)wq8[b].qs[j] * xq8[b].qs[j];
                    i4 += (long long)q4 * xq8[b].qs[j];
                }
                assert_true(r8 == (float)i8);
                assert_true(r4 == (float)i4);
            }
            double sabs = 0;
            for (int i = 0; i < n; i++) sabs += fabs((double)w[i] * x[i]);
            for (int l = 0; l < nl; l++) {
                const float v8 = lv[l]->dot_q8_0_q8_0(n, wq8, xq8);
                const float v4 = lv[l]->dot_q4_0_q8_0(n, wq4, xq8);
                if (unit) {
                    if (v8 != r8 || v4 != r4)
                        fail_msg("%s %s nb %d: int dots %g %g, scalar %g %g", tag, lv[l]->name,
                                 nb, v8, v4, r8, r4);
                } else {
                    const double tol = 1e-5 * sabs + 1e-6;
                    if (fabs(v8 - r8) > tol || fabs(v4 - r4) > tol)
                        fail_msg("%s %s nb %d: %g %g vs %g %g", tag, lv[l]->name, nb, v8, v4, r8, r4);
                }
                for (int m = n - 31; m <= n; m += 7) { /* 16-bit dots at any length */
                    const float sh = S->dot_f16_f32(m, wh, x), sb = S->dot_bf16_f32(m, wb, x);
                    const float vh = lv[l]->dot_f16_f32(m, wh, x), vb = lv[l]->dot_bf16_f32(m, wb, x);
                    const double tol = 1e-5 * sabs + 1e-6;
                    if (fabs(vh - sh) > tol || fabs(vb - sb) > tol)
                        fail_msg("%s %s m %d: f16/bf16 %g %g vs %g %g", tag, lv[l]->name, m, vh, vb,
                                 sh, sb);
                }
            }
            (void)rh;
            (void)rb;
        }
    }
}

static void test_kernel_levels(void **state) {
    (void)state;
    check_levels_once("auto");
#if defined(__x86_64__)
    if (st__cpu_qkernels_avx512_vnni()) {
        print_message("avx512: checked with VNNI and without\n");
        st__cpu_qkernels_avx512_vnni_override(0);
        check_levels_once("no-vnni");
        st__cpu_qkernels_avx512_vnni_override(-1);
    }
#endif
}

/* ---- 4. products ---------------------------------------------------------------- */

static void check_matmul(st_ctx *ctx, const char *lvl, st_wtype t, int64_t rows, int64_t cols,
                         int64_t n) {
    const size_t rb = st_wtype_row_bytes(t, cols);
    float *wf = malloc((size_t)(rows * cols) * 4), *wd = malloc((size_t)(rows * cols) * 4);
    float *x = malloc((size_t)(n * cols) * 4), *y = malloc((size_t)(n * rows) * 4);
    uint8_t *wq = malloc(rb * (size_t)rows);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand();
    for (int64_t i = 0; i < n * cols; i++) x[i] = frand() * 2;
    for (int64_t r = 0; r < rows; r++) {
        assert_int_equal(st_quantize_row(t, wf + r * cols, cols, wq + r * rb), ST_OK);
        assert_int_equal(st_dequantize_row(t, wq + r * rb, cols, wd + r * cols), ST_OK);
    }
    for (int64_t i = 0; i < n * rows; i++) y[i] = NAN;
    st_wmatrix w = {t, rows, cols, wq, rb, NULL};
    assert_int_equal(st_wmatrix_matmul(ctx, &w, x, n, y), ST_OK);
    const bool qx = t == ST_WT_Q8_0 || t == ST_WT_Q4_0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0, sabs = 0, xerr = 0;
            for (int64_t k = 0; k < cols; k++) {
                const double wk = wd[r * cols + k], xk = x[i * cols + k];
                ref += wk * xk;
                sabs += fabs(wk * xk);
                if (qx) { /* x's q8_0 rounding: half a step of its block */
                    float amax = 0;
                    for (int64_t j = k / 32 * 32; j < k / 32 * 32 + 32; j++)
                        amax = fmaxf(amax, fabsf(x[i * cols + j]));
                    xerr += fabs(wk) * (amax / 127.0 * 0.5 * 1.01);
                }
            }
            const double got = y[i * rows + r], tol = xerr + 2e-5 * sabs + 1e-6;
            if (!(fabs(got - ref) <= tol))
                fail_msg("%s %s rows %lld cols %lld n %lld: y[%lld,%lld] = %g, ref %g (tol %g)", lvl,
                         st_wtype_name(t), (long long)rows, (long long)cols, (long long)n,
                         (long long)i, (long long)r, got, ref, tol);
        }
    free(wf);
    free(wd);
    free(x);
    free(y);
    free(wq);
}

/* a 2-thread context at SIMD level lvl; NULL when this CPU lacks it */
static st_ctx *level_ctx(const st_hw_info *info, int lvl) {
    if (!st_hw_simd_supported(info, (st_simd_level)lvl)) return NULL;
    st_ctx_params p = st_ctx_default_params();
    p.cpu.simd_level = lvl;
    p.cpu.n_threads = 2;
    st_ctx *ctx = NULL;
    assert_int_equal(st_ctx_new(&p, &ctx), ST_OK);
    return ctx;
}

static void test_matmul_levels(void **state) {
    (void)state;
    st_hw_info info;
    assert_int_equal(st_hw_query(&info), ST_OK);
    const int64_t ns[] = {1, 2, 7, 64};
    const int64_t shapes[][2] = {{37, 64}, {129, 96}, {1, 32}, {200, 160}};
    for (int lvl = ST_SIMD_SCALAR; lvl <= ST_SIMD_AVX512; lvl++) {
        st_ctx *ctx = level_ctx(&info, lvl);
        if (!ctx) continue;
        const char *name = st_hw_simd_level_name((st_simd_level)lvl);
        for (int t = 0; t < ST_WT_COUNT_; t++) {
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++)
                    check_matmul(ctx, name, (st_wtype)t, shapes[s][0], shapes[s][1], ns[in]);
            /* past the f32 sgemm crossover and the 64-row x chunks of the integer kernels */
            check_matmul(ctx, name, (st_wtype)t, 37, 64, 70);
            check_matmul(ctx, name, (st_wtype)t, 37, 64, 130);
        }
        st_ctx_free(ctx);
    }
}

/* Steady state: once the calling thread's scratch has grown to a product,
 * repeating it (or a smaller one) allocates nothing; releasing the scratch
 * returns every byte. */
static void test_matmul_no_steady_alloc(void **state) {
    (void)state;
    st_ctx *ctx = NULL;
    st_ctx_params p = st_ctx_default_params();
    p.cpu.n_threads = 2;
    assert_int_equal(st_ctx_new(&p, &ctx), ST_OK);
    enum { ROWS = 96, COLS = 128, N = 16 };
    float *wf = malloc(ROWS * COLS * 4), *x = malloc(N * COLS * 4), *y = malloc(N * ROWS * 4);
    for (int i = 0; i < ROWS * COLS; i++) wf[i] = frand();
    for (int i = 0; i < N * COLS; i++) x[i] = frand();
    const st_wtype types[] = {ST_WT_F32, ST_WT_Q8_0, ST_WT_Q4_0, ST_WT_F16};
    { /* warm up: the pool's workers free their start-up arguments once running */
        const st_wmatrix w = {ST_WT_F32, ROWS, COLS, wf, COLS * 4, NULL};
        assert_int_equal(st_wmatrix_matmul(ctx, &w, x, N, y), ST_OK);
    }
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const size_t rb = st_wtype_row_bytes(types[t], COLS);
        uint8_t *wq = malloc(rb * ROWS);
        for (int r = 0; r < ROWS; r++)
            assert_int_equal(st_quantize_row(types[t], wf + r * COLS, COLS, wq + r * rb), ST_OK);
        const st_wmatrix w = {types[t], ROWS, COLS, wq, rb, NULL};
        st_wmatrix_scratch_release(); /* earlier tests grew it */
        const int64_t live0 = st_alloc_get_stats().live_bytes;
        assert_int_equal(st_wmatrix_matmul(ctx, &w, x, N, y), ST_OK); /* may grow the scratch */
        const uint64_t n0 = st_alloc_get_stats().n_alloc;
        for (int rep = 0; rep < 5; rep++)
            for (int n = 1; n <= N; n += 5)
                assert_int_equal(st_wmatrix_matmul(ctx, &w, x, n, y), ST_OK);
        assert_int_equal(st_alloc_get_stats().n_alloc, n0);
        st_wmatrix_scratch_release();
        assert_int_equal(st_alloc_get_stats().live_bytes, live0);
        free(wq);
    }
    free(wf);
    free(x);
    free(y);
    st_ctx_free(ctx);
}

/* ---- 6. several matrices against one x ---------------------------------------------- */

static void check_multi(st_ctx *ctx, int nm, const st_wtype *types, const int64_t *rows,
                        const int64_t *cols, int64_t n, int n_next) {
    st_wmatrix w[4];
    const st_wmatrix *wp[4];
    float *y[4], *ref[4];
    uint8_t *data[4];
    int64_t maxc = 0;
    for (int i = 0; i < nm; i++) maxc = cols[i] > maxc ? cols[i] : maxc;
    float *x = malloc((size_t)(n * maxc) * 4), *wf = malloc((size_t)maxc * 4);
    for (int64_t i = 0; i < n * maxc; i++) x[i] = frand();
    for (int i = 0; i < nm; i++) {
        const size_t rb = st_wtype_row_bytes(types[i], cols[i]);
        data[i] = malloc(rb * (size_t)rows[i] + 1);
        for (int64_t r = 0; r < rows[i]; r++) {
            for (int64_t c = 0; c < cols[i]; c++) wf[c] = frand();
            assert_int_equal(st_quantize_row(types[i], wf, cols[i], data[i] + r * rb), ST_OK);
        }
        w[i] = (st_wmatrix){types[i], rows[i], cols[i], data[i], rb, NULL};
        wp[i] = &w[i];
        y[i] = malloc((size_t)(n * rows[i]) * 4 + 4);
        ref[i] = malloc((size_t)(n * rows[i]) * 4 + 4);
        for (int64_t k = 0; k < n * rows[i]; k++) y[i][k] = NAN;
        assert_int_equal(st_wmatrix_matmul(ctx, &w[i], x, n, ref[i]), ST_OK);
    }
    /* the hint: the same matrices again (as a decode step's next product) */
    assert_int_equal(st_wmatrix_matmul_multi(ctx, nm, wp, x, n, y, n_next, n_next ? wp : NULL),
                     ST_OK);
    for (int i = 0; i < nm; i++) {
        if (memcmp(y[i], ref[i], (size_t)(n * rows[i]) * 4))
            fail_msg("multi: matrix %d of %d (%s %lld x %lld), n %lld differs from the single "
                     "product", i, nm, st_wtype_name(types[i]), (long long)rows[i],
                     (long long)cols[i], (long long)n);
        free(data[i]);
        free(y[i]);
        free(ref[i]);
    }
    free(x);
    free(wf);
}

static void test_matmul_multi(void **state) {
    (void)state;
    st_ctx *ctx = NULL;
    st_ctx_params p = st_ctx_default_params();
    p.cpu.n_threads = 2;
    assert_int_equal(st_ctx_new(&p, &ctx), ST_OK);
    const st_wtype q3[] = {ST_WT_Q8_0, ST_WT_Q8_0, ST_WT_Q8_0},
                   mix[] = {ST_WT_Q8_0, ST_WT_Q4_0, ST_WT_F32, ST_WT_Q8_0},
                   f3[] = {ST_WT_F32, ST_WT_F32, ST_WT_F32}, h2[] = {ST_WT_F16, ST_WT_BF16};
    const int64_t r3[] = {96, 37, 53}, c3[] = {64, 64, 64}, r4[] = {5, 130, 17, 64},
                  c4[] = {96, 96, 96, 96}, cx[] = {64, 96, 64}, r2[] = {40, 33}, c2[] = {64, 64};
    const int64_t ns[] = {1, 2, 5, 70};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (int hint = 0; hint < 2; hint++) {
            check_multi(ctx, 3, q3, r3, c3, ns[a], hint ? 3 : 0);
            check_multi(ctx, 4, mix, r4, c4, ns[a], hint ? 4 : 0);
            check_multi(ctx, 3, f3, r3, c3, ns[a], hint);
            check_multi(ctx, 3, q3, r3, cx, ns[a], hint);    /* unequal cols: one by one */
            check_multi(ctx, 2, h2, r2, c2, ns[a], hint * 2); /* f16 / bf16 row dots */
            check_multi(ctx, 1, q3, r3, c3, ns[a], hint);
        }
    /* arguments */
    float x[64] = {0}, y0[8], *y[2] = {y0, y0};
    uint8_t buf[8 * 68] = {0};
    const st_wmatrix w = {ST_WT_Q8_0, 8, 64, buf, 68, NULL},
                     bad = {ST_WT_Q8_0, 8, 63, buf, 68, NULL};
    const st_wmatrix *wp[2] = {&w, &w}, *bp[1] = {&bad}, *none[1] = {NULL};
    assert_int_equal(st_wmatrix_matmul_multi(ctx, 1, wp, x, 1, y, 0, NULL), ST_OK);
    assert_int_equal(st_wmatrix_matmul_multi(ctx, 0, wp, x, 1, y, 0, NULL), ST_OK);
    assert_int_equal(st_wmatrix_matmul_multi(ctx, 1, wp, x, 1, y, 1, bp), ST_OK); /* ignored */
    assert_int_equal(st_wmatrix_matmul_multi(ctx, 1, wp, x, 1, y, 1, none), ST_OK);
    assert_int_equal(st_wmatrix_matmul_multi(ctx, 1, bp, x, 1, y, 0, NULL), ST_ERR_INVALID_ARG);
    assert_int_equal(st_wmatrix_matmul_multi(ctx, 1, wp, x, -1, y, 0, NULL), ST_ERR_INVALID_ARG);
    assert_int_equal(st_wmatrix_matmul_multi(ctx, 1, wp, x, 1, y, 1, NULL), ST_ERR_INVALID_ARG);
    assert_int_equal(st_wmatrix_matmul_multi(NULL, 1, wp, x, 1, y, 0, NULL), ST_ERR_INVALID_ARG);
    assert_int_equal(st_wmatrix_matmul_multi(ctx, 1, wp, NULL, 1, y, 0, NULL),
                     ST_ERR_INVALID_ARG);
    st_ctx_free(ctx);
}

static void test_matmul_args(void **state) {
    (void)state;
    st_ctx *ctx = NULL;
    st_ctx_params p = st_ctx_default_params();
    assert_int_equal(st_ctx_new(&p, &ctx), ST_OK);
    float x[32] = {0}, y[2];
    uint8_t buf[68] = {0};
    st_wmatrix w = {ST_WT_Q8_0, 2, 32, buf, 34, NULL};
    assert_int_equal(st_wmatrix_matmul(ctx, &w, x, 1, y), ST_OK);
    assert_true(y[0] == 0 && y[1] == 0);
    assert_int_equal(st_wmatrix_matmul(ctx, &w, x, -1, y), ST_ERR_INVALID_ARG);
    assert_int_equal(st_wmatrix_matmul(NULL, &w, x, 1, y), ST_ERR_INVALID_ARG);
    w.cols = 33;
    assert_int_equal(st_wmatrix_matmul(ctx, &w, x, 1, y), ST_ERR_INVALID_ARG);
    st_ctx_free(ctx);
}

/* ---- packed q8_0 ---------------------------------------------------------- */

static float f16f(uint16_t h) { return st_f16_to_f32(h); }

/* what the packed kernels compute: per block in order, fmaf of the exact
 * integer dot by d_w * d_x (x as st_quantize_row makes it) */
static void packed_model(const st_wmatrix *w, const float *x, int64_t n, float *y) {
    const int64_t nb = w->cols / ST_QK;
    st_block_q8_0 *xb = malloc((size_t)nb * sizeof *xb);
    for (int64_t i = 0; i < n; i++) {
        assert_int_equal(st_quantize_row(ST_WT_Q8_0, x + i * w->cols, w->cols, xb), ST_OK);
        for (int64_t r = 0; r < w->rows; r++) {
            const char *row = (const char *)w->data + (size_t)r * w->row_bytes;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                int32_t dot = 0;
                uint16_t d;
                if (w->type == ST_WT_Q8_0) {
                    const st_block_q8_0 *wb = (const st_block_q8_0 *)row + b;
                    for (int e = 0; e < ST_QK; e++) dot += (int32_t)wb->qs[e] * xb[b].qs[e];
                    d = wb->d;
                } else {
                    const st_block_q4_0 *wb = (const st_block_q4_0 *)row + b;
                    for (int e = 0; e < ST_QK / 2; e++) {
                        dot += ((wb->qs[e] & 15) - 8) * xb[b].qs[e];
                        dot += ((wb->qs[e] >> 4) - 8) * xb[b].qs[e + ST_QK / 2];
                    }
                    d = wb->d;
                }
                acc = fmaf((float)dot, f16f(d) * f16f(xb[b].d), acc);
            }
            y[i * w->rows + r] = acc;
        }
    }
    free(xb);
}

/* a q8_0 or q4_0 matrix with its packed form; some q8_0 weights -128,
 * some scales 0 */
static void make_packed(st_wmatrix *w, st_wtype t, int64_t rows, int64_t cols) {
    const size_t rb = st_wtype_row_bytes(t, cols);
    uint8_t *d = malloc(rb * (size_t)rows);
    float *wf = malloc((size_t)cols * 4);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) wf[c] = frand();
        assert_int_equal(st_quantize_row(t, wf, cols, d + r * rb), ST_OK);
        if (t == ST_WT_Q8_0) {
            st_block_q8_0 *b = (st_block_q8_0 *)(d + r * rb);
            if (r % 5 == 1) b[0].qs[(r * 7) % ST_QK] = -128; /* outside the quantizer's range */
            if (r % 11 == 3) b[(cols / ST_QK) - 1].d = 0;
        } else if (r % 11 == 3) {
            ((st_block_q4_0 *)(d + r * rb))[(cols / ST_QK) - 1].d = 0;
        }
    }
    free(wf);
    *w = (st_wmatrix){t, rows, cols, d, rb, NULL};
    const size_t pb = st_wmatrix_packed_bytes(w);
    assert_true(pb >= rb * (size_t)rows);
    void *p = NULL;
    assert_int_equal(posix_memalign(&p, 64, pb), 0);
    assert_int_equal(st_wmatrix_pack(w, p), ST_OK);
    w->packed = p;
}

static void free_packed(st_wmatrix *w) {
    free((void *)w->data);
    free((void *)w->packed);
}

/* the packed checks on ctx (a level whose kernels read the layout) */
static void packed_exact(st_ctx *ctx) {
    const int64_t rows[] = {1, 15, 16, 17, 40, 100, 257};
    const int64_t cols[] = {32, 64, 96, 288};
    const int64_t ns[] = {1, 2, 3, 4, 5, 9, 70};
    for (int q = 0; q < 2; q++)
        for (size_t a = 0; a < sizeof rows / sizeof rows[0]; a++)
            for (size_t b = 0; b < sizeof cols / sizeof cols[0]; b++) {
                const st_wtype t = q ? ST_WT_Q4_0 : ST_WT_Q8_0;
                st_wmatrix w;
                make_packed(&w, t, rows[a], cols[b]);
                for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
                    const int64_t n = ns[c], R = rows[a], K = cols[b];
                    float *x = malloc((size_t)(n * K) * 4), *y = malloc((size_t)(n * R) * 4),
                          *ref = malloc((size_t)(n * R) * 4), *y1 = malloc((size_t)R * 4);
                    for (int64_t i = 0; i < n * K; i++)
                        x[i] = frand() * (i % 13 ? 1.0f : 40.0f);
                    packed_model(&w, x, n, ref);
                    assert_int_equal(st_wmatrix_matmul(ctx, &w, x, n, y), ST_OK);
                    for (int64_t i = 0; i < n * R; i++)
                        if (memcmp(&y[i], &ref[i], 4))
                            fail_msg(
                                "packed %s %lld x %lld, n %lld: y[%lld][%lld] = %.9g, model %.9g",
                                st_wtype_name(t), (long long)R, (long long)K, (long long)n,
                                (long long)(i / R), (long long)(i % R), y[i], ref[i]);
                    for (int64_t i = 0; i < n; i++) { /* one row at a time: the same bits */
                        assert_int_equal(st_wmatrix_matmul(ctx, &w, x + i * K, 1, y1), ST_OK);
                        assert_memory_equal(y1, ref + i * R, (size_t)R * 4);
                    }
                    free(x);
                    free(y);
                    free(ref);
                    free(y1);
                }
                free_packed(&w);
            }
    /* several packed matrices (both types) in one pool run, with a packed next hint */
    st_wmatrix m[3];
    make_packed(&m[0], ST_WT_Q8_0, 96, 288);
    make_packed(&m[1], ST_WT_Q4_0, 37, 288);
    make_packed(&m[2], ST_WT_Q8_0, 768, 288);
    const st_wmatrix *mp[3] = {&m[0], &m[1], &m[2]}, *next[1] = {&m[2]};
    for (int64_t n = 1; n <= 5; n += 4) {
        float *x = malloc((size_t)(n * 288) * 4), *y[3], *ref;
        for (int64_t i = 0; i < n * 288; i++)
            x[i] = frand();
        for (int i = 0; i < 3; i++)
            y[i] = malloc((size_t)(n * m[i].rows) * 4);
        assert_int_equal(st_wmatrix_matmul_multi(ctx, 3, mp, x, n, y, 1, next), ST_OK);
        for (int i = 0; i < 3; i++) {
            ref = malloc((size_t)(n * m[i].rows) * 4);
            packed_model(&m[i], x, n, ref);
            assert_memory_equal(y[i], ref, (size_t)(n * m[i].rows) * 4);
            free(ref);
            free(y[i]);
        }
        free(x);
    }
    for (int i = 0; i < 3; i++)
        free_packed(&m[i]);
}

/* every level whose kernels read the layout (AVX-512 with VNNI, AVX2 with
 * AVX-VNNI): the same bits, those of the scalar model */
static void test_packed_exact(void **state) {
    (void)state;
    st_hw_info info;
    assert_int_equal(st_hw_query(&info), ST_OK);
    int ran = 0;
    for (int lvl = ST_SIMD_SCALAR; lvl <= ST_SIMD_AVX512; lvl++) {
        st_ctx *ctx = level_ctx(&info, lvl);
        if (!ctx) continue;
        if (st_wmatrix_packs(ctx)) {
            packed_exact(ctx);
            ran++;
        }
        st_ctx_free(ctx);
    }
    if (!ran) skip(); /* no kernel reads the layout here: test_packed_ignored covers it */
}

/* Without the packed kernels (VNNI / AVX-VNNI switched off, or a level
 * without them) the packed form is not read: the row-major product's bits. */
static void test_packed_ignored(void **state) {
    (void)state;
    st_hw_info info;
    assert_int_equal(st_hw_query(&info), ST_OK);
    for (int q = 0; q < 2; q++) {
        st_wmatrix w;
        make_packed(&w, q ? ST_WT_Q4_0 : ST_WT_Q8_0, 40, 96);
        st_wmatrix plain = w;
        plain.packed = NULL;
        float x[3 * 96], y[3 * 40], ref[3 * 40];
        for (int i = 0; i < 3 * 96; i++)
            x[i] = frand();
        for (int lvl = ST_SIMD_SCALAR; lvl <= ST_SIMD_AVX512; lvl++) {
            st_ctx *ctx = level_ctx(&info, lvl);
            if (!ctx) continue;
#if defined(__x86_64__)
            if (lvl == ST_SIMD_AVX512) st__cpu_qkernels_avx512_vnni_override(0);
            if (lvl == ST_SIMD_AVX2) st__cpu_qkernels_avx2_vnni_override(0);
#endif
            assert_false(st_wmatrix_packs(ctx));
            for (int64_t n = 1; n <= 3; n += 2) {
                assert_int_equal(st_wmatrix_matmul(ctx, &plain, x, n, ref), ST_OK);
                assert_int_equal(st_wmatrix_matmul(ctx, &w, x, n, y), ST_OK);
                assert_memory_equal(y, ref, (size_t)(n * 40) * 4);
            }
#if defined(__x86_64__)
            if (lvl == ST_SIMD_AVX512) st__cpu_qkernels_avx512_vnni_override(-1);
            if (lvl == ST_SIMD_AVX2) st__cpu_qkernels_avx2_vnni_override(-1);
#endif
            st_ctx_free(ctx);
        }
        free_packed(&w);
    }
}

static void test_packed_args(void **state) {
    (void)state;
    uint8_t buf[2 * 34] = {0};
    const st_wmatrix q = {ST_WT_Q8_0, 2, 32, buf, 34, NULL}, f = {ST_WT_F32, 2, 8, buf, 32, NULL},
                     q4 = {ST_WT_Q4_0, 2, 32, buf, 18, NULL},
                     badrb = {ST_WT_Q8_0, 2, 32, buf, 33, NULL};
    /* one group of 16 rows, one lone block: 576 bytes */
    assert_int_equal(st_wmatrix_packed_bytes(&q), 576);
    assert_int_equal(st_wmatrix_packed_bytes(&f), 0);
    assert_int_equal(st_wmatrix_packed_bytes(&q4), 320); /* 64 of scales, 256 of nibbles */
    assert_int_equal(st_wmatrix_packed_bytes(&badrb), 0);
    assert_int_equal(st_wmatrix_packed_bytes(NULL), 0);
    void *p = NULL;
    assert_int_equal(posix_memalign(&p, 64, 640), 0);
    assert_int_equal(st_wmatrix_pack(&q, NULL), ST_ERR_INVALID_ARG);
    assert_int_equal(st_wmatrix_pack(&q, (char *)p + 8), ST_ERR_INVALID_ARG);
    assert_int_equal(st_wmatrix_pack(&f, p), ST_ERR_INVALID_ARG);
    assert_int_equal(st_wmatrix_pack(NULL, p), ST_ERR_INVALID_ARG);
    assert_int_equal(st_wmatrix_pack(&q, p), ST_OK);
    /* the layout by hand: zero weights are stored 128, padding rows too */
    for (int i = 64; i < 576; i++) assert_int_equal(((uint8_t *)p)[i], 128);
    /* q4_0: byte t of row r's qs at 64 * (t / 4) + 4 r + t % 4; padding 0x88 */
    uint8_t b4[2 * 18] = {0};
    for (int t = 0; t < 16; t++) b4[2 + t] = (uint8_t)(t + 1);
    const st_wmatrix q4b = {ST_WT_Q4_0, 1, 32, b4, 18, NULL};
    assert_int_equal(st_wmatrix_pack(&q4b, p), ST_OK);
    for (int t = 0; t < 16; t++) assert_int_equal(((uint8_t *)p)[64 + 64 * (t / 4) + t % 4], t + 1);
    assert_int_equal(((uint8_t *)p)[64 + 4], 0x88);
    free(p);
    assert_false(st_wmatrix_packs(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0_hand),        cmocka_unit_test(test_q4_0_hand),
        cmocka_unit_test(test_types_and_args),   cmocka_unit_test(test_round_trip_bounds),
        cmocka_unit_test(test_kernel_levels),    cmocka_unit_test(test_matmul_levels),
        cmocka_unit_test(test_matmul_args),      cmocka_unit_test(test_matmul_no_steady_alloc),
        cmocka_unit_test(test_matmul_multi),     cmocka_unit_test(test_packed_exact),
        cmocka_unit_test(test_packed_ignored),   cmocka_unit_test(test_packed_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
