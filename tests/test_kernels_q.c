/*
 * test_kernels_q.c — the small-n product kernels and the activation
 * quantizer of every SIMD level (st_cpu_qkernels: gemm_f32, gemm_q8_0,
 * gemm_q4_0, quantize_q8; src/backend/cpu/kernels_small*.c).
 *
 * 1. quantize_q8 at every level equals st_quantize_row(ST_WT_Q8_0) exactly
 *    (and its block sums, when asked for, the sums of those values):
 *    the same int8 values (ties away from zero, exact halves included) and
 *    d = the block's f16 scale as f32; all-zero blocks give d = 0, qs = 0.
 * 2. The scalar gemm kernels against a double-precision product of the
 *    same numbers (q8_0/q4_0: each block's integer dot times d_w * d_x);
 *    with unit scales the q8_0/q4_0 results are exact integers.
 * 3. Every level (AVX-512 with VNNI and without, AVX2) against the scalar
 *    kernels: n = 1..70 input rows, odd row counts (tiles of 4 with tails),
 *    odd k for f32 (vector tails), within 1e-5 of the sum of |terms|;
 *    integer-exact with unit scales. y's row stride is wider than the
 *    product and the padding must stay untouched (masked tail stores).
 * 4. Batch invariance: an input row's outputs are the same bits alone
 *    (nx = 1, the decode kernels) as inside a batch of 70 (the tiles), so
 *    the server's batching cannot change a sequence's tokens.
 */
/* cmocka.h needs these first */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "strata/hw.h"
#include "strata/quant.h"

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static float frand(void) { /* [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) / (double)(1u << 23)) - 1.0f;
}

/* scalar first, then every compiled level the CPU runs */
static int levels(const st_cpu_qkernels **out) {
    st_hw_info info;
    int n = 0;
    out[n++] = st__cpu_qkernels(ST_SIMD_SCALAR);
    if (st_hw_query(&info) != ST_OK) return n;
    const st_simd_level cand[] = {ST_SIMD_AVX2, ST_SIMD_AVX512};
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
        const st_cpu_qkernels *k = st__cpu_qkernels(cand[i]);
        if (k && st_hw_simd_supported(&info, cand[i])) out[n++] = k;
    }
    return n;
}

/* runs fn once, and again with AVX-512 VNNI switched off where the CPU has it */
static void with_vnni_variants(void (*fn)(const char *tag)) {
    fn("auto");
#if defined(__x86_64__)
    if (st__cpu_qkernels_avx512_vnni()) {
        st__cpu_qkernels_avx512_vnni_override(0);
        fn("no-vnni");
        st__cpu_qkernels_avx512_vnni_override(-1);
    }
#endif
}

/* ---- 1. quantizer ------------------------------------------------------------------ */

static void test_quantize_q8(void **state) {
    (void)state;
    const st_cpu_qkernels *lv[4];
    const int nl = levels(lv);
    enum { K = 32 * 9 };
    float x[K];
    st_block_q8_0 ref[K / 32];
    int8_t qs[K];
    float d[K / 32];
    for (int rep = 0; rep < 40; rep++) {
        for (int i = 0; i < K; i++)
            x[i] = frand() * (float)(1 + (i * 7 + rep) % 11);
        if (rep % 4 == 1) /* exact halves: amax 127 gives id = 1, ties away from zero */
            for (int i = 0; i < 64; i++)
                x[i] = i == 0 ? 127.0f : (float)((i % 9) - 4) + 0.5f;
        if (rep % 4 == 2) memset(x + 32, 0, 32 * sizeof(float)); /* an all-zero block */
        if (rep % 4 == 3) x[5] = -x[5] * 1000.0f;                /* one outlier */
        assert_int_equal(st_quantize_row(ST_WT_Q8_0, x, K, ref), ST_OK);
        for (int l = 0; l < nl; l++) {
            memset(qs, 0x55, sizeof qs);
            int32_t sums[K / 32];
            /* with and without the block sums: the same values */
            lv[l]->quantize_q8(K, x, qs, d, rep % 2 ? sums : NULL);
            for (int b = 0; b < K / 32; b++) {
                int32_t t = 0;
                for (int j = 0; j < 32; j++) t += ref[b].qs[j];
                if (rep % 2 && sums[b] != t)
                    fail_msg("%s rep %d block %d: sum %d, want %d", lv[l]->name, rep, b,
                             sums[b], t);
                if (d[b] != st_f16_to_f32(ref[b].d))
                    fail_msg("%s rep %d block %d: d %g, want %g", lv[l]->name, rep, b, d[b],
                             st_f16_to_f32(ref[b].d));
                for (int j = 0; j < 32; j++)
                    if (qs[b * 32 + j] != ref[b].qs[j])
                        fail_msg("%s rep %d x[%d] = %.9g: q %d, want %d", lv[l]->name, rep,
                                 b * 32 + j, x[b * 32 + j], qs[b * 32 + j], ref[b].qs[j]);
            }
        }
    }
}

/* ---- 2./3. products ------------------------------------------------------------------ */

enum { MAXN = 70, PAD = 3 };

/* y sentinel: a NaN with a payload nothing computes */
static float sentinel(void) {
    uint32_t u = 0x7fc0dead;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static int is_sentinel(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u == 0x7fc0dead;
}

static void check_y(const char *what, const char *lvl, int64_t nr, int64_t k, int64_t nx,
                    const float *y, const double *ref, const double *sabs, int exact) {
    const int64_t ldy = nr + PAD;
    for (int64_t i = 0; i < nx; i++) {
        for (int64_t r = 0; r < nr; r++) {
            const double got = y[i * ldy + r], want = ref[i * nr + r];
            const double tol = exact ? 0 : 1e-5 * sabs[i * nr + r] + 1e-6;
            if (!(fabs(got - want) <= tol))
                fail_msg("%s %s nr %lld k %lld nx %lld: y[%lld,%lld] = %.9g, want %.9g (tol %g)",
                         what, lvl, (long long)nr, (long long)k, (long long)nx, (long long)i,
                         (long long)r, got, want, tol);
        }
        for (int64_t r = nr; r < ldy; r++)
            if (!is_sentinel(y[i * ldy + r]))
                fail_msg("%s %s nr %lld nx %lld: padding y[%lld,%lld] overwritten", what, lvl,
                         (long long)nr, (long long)nx, (long long)i, (long long)r);
    }
}

static void check_f32(const char *tag) {
    const st_cpu_qkernels *lv[4];
    const int nl = levels(lv);
    const int64_t nrs[] = {1, 3, 4, 5, 13};
    const int64_t ks[] = {1, 15, 16, 17, 33, 100};
    for (size_t a = 0; a < sizeof nrs / sizeof nrs[0]; a++)
        for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
            const int64_t nr = nrs[a], k = ks[b], ldy = nr + PAD;
            float *w = malloc((size_t)(nr * k) * 4), *x = malloc((size_t)(MAXN * k) * 4);
            float *y = malloc((size_t)(MAXN * ldy) * 4);
            double *ref = malloc((size_t)(MAXN * nr) * 8), *sabs = malloc((size_t)(MAXN * nr) * 8);
            for (int64_t i = 0; i < nr * k; i++)
                w[i] = frand();
            for (int64_t i = 0; i < MAXN * k; i++)
                x[i] = frand() * 3;
            for (int64_t i = 0; i < MAXN; i++)
                for (int64_t r = 0; r < nr; r++) {
                    double s = 0, sa = 0;
                    for (int64_t j = 0; j < k; j++) {
                        s += (double)w[r * k + j] * x[i * k + j];
                        sa += fabs((double)w[r * k + j] * x[i * k + j]);
                    }
                    ref[i * nr + r] = s;
                    sabs[i * nr + r] = sa;
                }
            for (int l = 0; l < nl; l++)
                for (int64_t nx = 1; nx <= MAXN; nx++) {
                    for (int64_t i = 0; i < MAXN * ldy; i++)
                        y[i] = sentinel();
                    lv[l]->gemm_f32(k, nr, w, nx, x, y, ldy);
                    char t[64];
                    snprintf(t, sizeof t, "gemm_f32 (%s)", tag);
                    check_y(t, lv[l]->name, nr, k, nx, y, ref, sabs, 0);
                }
            for (int l = 0; l < nl; l++) { /* y holds nx = MAXN: one row alone is the same */
                lv[l]->gemm_f32(k, nr, w, MAXN, x, y, ldy);
                for (int64_t i = 0; i < MAXN; i += 23) {
                    float y1[16];
                    lv[l]->gemm_f32(k, nr, w, 1, x + i * k, y1, nr);
                    for (int64_t r = 0; r < nr; r++)
                        if (memcmp(&y1[r], &y[i * ldy + r], 4))
                            fail_msg("gemm_f32 %s nr %lld k %lld: row %lld alone %.9g, in a batch "
                                     "%.9g",
                                     lv[l]->name, (long long)nr, (long long)k, (long long)i, y1[r],
                                     y[i * ldy + r]);
                }
            }
            free(w);
            free(x);
            free(y);
            free(ref);
            free(sabs);
        }
}

static void check_q(const char *tag) {
    const st_cpu_qkernels *lv[4];
    const int nl = levels(lv);
    const int64_t nrs[] = {1, 2, 4, 7, 13};
    const int64_t ks[] = {32, 64, 96, 288};
    for (int type = 0; type < 2; type++) /* q8_0, q4_0 */
        for (int unit = 0; unit < 2; unit++)
            for (size_t a = 0; a < sizeof nrs / sizeof nrs[0]; a++)
                for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
                    const int64_t nr = nrs[a], k = ks[b], nb = k / 32, ldy = nr + PAD;
                    const st_wtype wt = type ? ST_WT_Q4_0 : ST_WT_Q8_0;
                    const size_t rb = st_wtype_row_bytes(wt, k);
                    float *wf = malloc((size_t)(nr * k) * 4), *x = malloc((size_t)(MAXN * k) * 4);
                    uint8_t *wq = malloc(rb * (size_t)nr);
                    int8_t *xqs = malloc((size_t)(MAXN * k));
                    float *xd = malloc((size_t)(MAXN * nb) * 4);
                    float *y = malloc((size_t)(MAXN * ldy) * 4);
                    double *ref = malloc((size_t)(MAXN * nr) * 8);
                    double *sabs = malloc((size_t)(MAXN * nr) * 8);
                    for (int64_t i = 0; i < nr * k; i++)
                        wf[i] = frand() * (1 + i % 3);
                    for (int64_t i = 0; i < MAXN * k; i++)
                        x[i] = frand() * (1 + i % 5);
                    for (int64_t r = 0; r < nr; r++)
                        st_quantize_row(wt, wf + r * k, k, wq + (size_t)r * rb);
                    for (int64_t i = 0; i < MAXN; i++)
                        lv[0]->quantize_q8(k, x + i * k, xqs + i * k, xd + i * nb, NULL);
                    if (unit) { /* unit scales: every product is an exact integer */
                        for (int64_t r = 0; r < nr; r++)
                            for (int64_t c = 0; c < nb; c++) {
                                const uint16_t one = 0x3c00;
                                memcpy(wq + (size_t)r * rb + (size_t)c * (rb / (size_t)nb), &one,
                                       2);
                            }
                        for (int64_t i = 0; i < MAXN * nb; i++)
                            xd[i] = 1.0f;
                    }
                    for (int64_t i = 0; i < MAXN; i++)
                        for (int64_t r = 0; r < nr; r++) {
                            double s = 0, sa = 0;
                            const uint8_t *row = wq + (size_t)r * rb;
                            for (int64_t c = 0; c < nb; c++) {
                                const uint8_t *blk = row + (size_t)c * (rb / (size_t)nb);
                                uint16_t h;
                                memcpy(&h, blk, 2);
                                const float sc = st_f16_to_f32(h) * xd[i * nb + c];
                                long long acc = 0, aacc = 0;
                                for (int j = 0; j < 32; j++) {
                                    int qw;
                                    if (type) {
                                        const uint8_t v = blk[2 + (j & 15)];
                                        qw = (j < 16 ? (v & 15) : (v >> 4)) - 8;
                                    } else
                                        qw = (int8_t)blk[2 + j];
                                    acc += (long long)qw * xqs[i * k + c * 32 + j];
                                    aacc += llabs((long long)qw * xqs[i * k + c * 32 + j]);
                                }
                                s += (double)acc * sc;
                                sa += (double)aacc * fabs(sc);
                            }
                            ref[i * nr + r] = s;
                            sabs[i * nr + r] = sa;
                        }
                    for (int l = 0; l < nl; l++)
                        for (int64_t nx = 1; nx <= MAXN; nx++) {
                            for (int64_t i = 0; i < MAXN * ldy; i++)
                                y[i] = sentinel();
                            if (type)
                                lv[l]->gemm_q4_0(k, nr, wq, nx, xqs, xd, y, ldy);
                            else
                                lv[l]->gemm_q8_0(k, nr, wq, nx, xqs, xd, y, ldy);
                            char t[64];
                            snprintf(t, sizeof t, "%s%s (%s)", type ? "gemm_q4_0" : "gemm_q8_0",
                                     unit ? " unit" : "", tag);
                            check_y(t, lv[l]->name, nr, k, nx, y, ref, sabs, unit);
                        }
                    for (int l = 0; l < nl; l++) { /* batch invariance, as for f32 */
                        if (type)
                            lv[l]->gemm_q4_0(k, nr, wq, MAXN, xqs, xd, y, ldy);
                        else
                            lv[l]->gemm_q8_0(k, nr, wq, MAXN, xqs, xd, y, ldy);
                        for (int64_t i = 0; i < MAXN; i += 23) {
                            float y1[16];
                            if (type)
                                lv[l]->gemm_q4_0(k, nr, wq, 1, xqs + i * k, xd + i * nb, y1, nr);
                            else
                                lv[l]->gemm_q8_0(k, nr, wq, 1, xqs + i * k, xd + i * nb, y1, nr);
                            for (int64_t r = 0; r < nr; r++)
                                if (memcmp(&y1[r], &y[i * ldy + r], 4))
                                    fail_msg("%s %s: row %lld alone %.9g, in a batch %.9g",
                                             type ? "q4_0" : "q8_0", lv[l]->name, (long long)i,
                                             y1[r], y[i * ldy + r]);
                        }
                    }
                    free(wf);
                    free(x);
                    free(wq);
                    free(xqs);
                    free(xd);
                    free(y);
                    free(ref);
                    free(sabs);
                }
}

static void test_gemm_f32(void **state) {
    (void)state;
    check_f32("all");
}

static void test_gemm_q(void **state) {
    (void)state;
    with_vnni_variants(check_q);
}

/* the scalar q kernels equal the block dots on the same numbers, bit for bit */
static void test_scalar_matches_dots(void **state) {
    (void)state;
    const st_cpu_qkernels *S = st__cpu_qkernels(ST_SIMD_SCALAR);
    enum { K = 160, NR = 5 };
    float wf[NR * K], x[K], y[NR];
    st_block_q8_0 w8[NR * K / 32], x8[K / 32];
    st_block_q4_0 w4[NR * K / 32];
    int8_t xqs[K];
    float xd[K / 32];
    for (int i = 0; i < NR * K; i++)
        wf[i] = frand();
    for (int i = 0; i < K; i++)
        x[i] = frand() * 2;
    for (int r = 0; r < NR; r++) {
        st_quantize_row(ST_WT_Q8_0, wf + r * K, K, w8 + r * K / 32);
        st_quantize_row(ST_WT_Q4_0, wf + r * K, K, w4 + r * K / 32);
    }
    st_quantize_row(ST_WT_Q8_0, x, K, x8);
    S->quantize_q8(K, x, xqs, xd, NULL);
    S->gemm_q8_0(K, NR, w8, 1, xqs, xd, y, NR);
    for (int r = 0; r < NR; r++)
        assert_true(y[r] == S->dot_q8_0_q8_0(K, w8 + r * K / 32, x8));
    S->gemm_q4_0(K, NR, w4, 1, xqs, xd, y, NR);
    for (int r = 0; r < NR; r++)
        assert_true(y[r] == S->dot_q4_0_q8_0(K, w4 + r * K / 32, x8));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_q8),
        cmocka_unit_test(test_scalar_matches_dots),
        cmocka_unit_test(test_gemm_f32),
        cmocka_unit_test(test_gemm_q),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
