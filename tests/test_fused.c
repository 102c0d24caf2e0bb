/*
 * test_fused.c — the fused transformer ops through every layer: the CPU
 * executor (L2), st_attention / st_rope / st_cross_entropy / st_dropout (L3)
 * and their backward rules (L4).
 *
 *  1. Forward against naive double references written here: attention as
 *     softmax(scale Q K^T + mask) V over a table of shapes (B=2, H=4, Hkv in
 *     {4,2,1}, T in {1,5,17}, S = T and S = T+3 (a cached prefix), causal or
 *     not, D in {8,16}, contiguous or permuted [B,T,H,D] views); rope of both
 *     kinds at pos0 > 0; cross-entropy against a log-softmax reference with
 *     ignored targets, a non-contiguous logits view and bad targets
 *     (ST_ERR_BOUNDS); dropout's kept fraction, its mask against
 *     st_rand_uniform, determinism and p = 0. Tolerance 1e-4 absolute
 *     (values are O(1); f32 rounding is ~1e-6 here).
 *  2. Gradient checks (st_gradcheck, h = 1e-2, atol = rtol = 1e-2) of
 *     attention (q, k, v; grouped-query; causal; permuted views; B = 2), rope,
 *     cross-entropy and dropout (linear for a fixed seed).
 *  3. 1 and 2 threads give bit-identical results and gradients.
 *  4. Every SIMD level the CPU has agrees with the scalar one within 1e-5
 *     (1e-4 for attention gradients).
 *  5. Attention at T = 256 keeps at most one T x S block per thread in
 *     scratch (memory growth well under the B*H*T*S score tensor).
 *
 * Contexts are made and freed per test; every persistent tensor is freed,
 * so the run is leak-free under ASan/LSan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/nn.h"

#define OK(expr)                                                                                   \
    do {                                                                                           \
        st_status s_ = (expr);                                                                     \
        if (s_ != ST_OK) fail_msg("%s -> %s: %s", #expr, st_status_name(s_), st_last_error());     \
    } while (0)

static st_ctx *new_ctx(int n_threads, int simd) {
    st_ctx_params p = st_ctx_default_params();
    p.cpu.n_threads = n_threads;
    p.cpu.simd_level = simd;
    st_ctx *ctx = NULL;
    if (st_ctx_new(&p, &ctx) != ST_OK) return NULL;
    return ctx;
}

static st_tensor *rand_tensor(st_ctx *ctx, int nd, const int64_t *shape, uint64_t seed) {
    st_tensor *t = NULL;
    OK(st_tensor_new(ctx, ST_F32, nd, shape, &t));
    OK(st_randn_(t, seed, 0.0f, 1.0f));
    return t;
}

static float *to_host(const st_tensor *t) {
    int64_t n = st_tensor_numel(t);
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(v);
    OK(st_tensor_to_f32(t, v, n));
    return v;
}

static void assert_close(const float *a, const double *ref, int64_t n, double tol,
                         const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - ref[i]) <= tol))
            fail_msg("%s: element %lld is %.7g, reference %.7g (tol %g)", what, (long long)i,
                     (double)a[i], ref[i], tol);
}

/* ---- references (double) ------------------------------------------------------------------ */

/* q [B,H,T,D], k/v [B,Hkv,S,D] row-major host arrays -> o [B,H,T,D]. */
static void ref_attention(const float *q, const float *k, const float *v, int64_t B, int64_t H,
                          int64_t Hkv, int64_t T, int64_t S, int64_t D, bool causal, double scale,
                          double *o) {
    double *p = malloc((size_t)S * sizeof(double));
    assert_non_null(p);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / (H / Hkv);
            for (int64_t t = 0; t < T; t++) {
                const float *qr = q + ((b * H + h) * T + t) * D;
                double m = -INFINITY;
                for (int64_t s = 0; s < S; s++) {
                    const float *kr = k + ((b * Hkv + g) * S + s) * D;
                    double acc = 0;
                    for (int64_t d = 0; d < D; d++)
                        acc += (double)qr[d] * kr[d];
                    p[s] = (causal && s > t + (S - T)) ? -INFINITY : acc * scale;
                    if (p[s] > m) m = p[s];
                }
                double sum = 0;
                for (int64_t s = 0; s < S; s++) {
                    p[s] = isinf(p[s]) ? 0.0 : exp(p[s] - m);
                    sum += p[s];
                }
                double *orow = o + ((b * H + h) * T + t) * D;
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int64_t s = 0; s < S; s++)
                        acc += p[s] * v[((b * Hkv + g) * S + s) * D + d];
                    orow[d] = sum > 0 ? acc / sum : 0.0;
                }
            }
        }
    free(p);
}

/* [B,H,T,D] operand: a fresh contiguous tensor, or a [B,T,H,D] tensor seen
 * through a permute (the layout of projections split into heads). *owner
 * is the persistent tensor to free. */
static st_tensor *heads(st_ctx *ctx, int64_t B, int64_t H, int64_t T, int64_t D, bool permuted,
                        uint64_t seed, st_tensor **owner) {
    if (!permuted) {
        int64_t s[4] = {B, H, T, D};
        *owner = rand_tensor(ctx, 4, s, seed);
        return *owner;
    }
    int64_t s[4] = {B, T, H, D};
    *owner = rand_tensor(ctx, 4, s, seed);
    st_tensor *v = NULL;
    const int perm[4] = {0, 2, 1, 3};
    OK(st_permute(ctx, *owner, perm, &v));
    return v;
}

/* ---- 1. forward ------------------------------------------------------------------------------- */

static void test_attention_forward(void **state) {
    (void)state;
    st_ctx *ctx = new_ctx(0, -1);
    assert_non_null(ctx);
    const int64_t B = 2, H = 4, hkvs[3] = {4, 2, 1}, Ts[4] = {1, 5, 17, 130}, Ds[2] = {8, 16};
    /* T = 130: causal attention runs in 64-row query blocks (3 blocks, a short last one) */
    int n_cases = 0;
    for (int ih = 0; ih < 3; ih++)
        for (int it = 0; it < 4; it++)
            for (int extra = 0; extra <= 3; extra += 3)
                for (int causal = 0; causal < 2; causal++)
                    for (int id = 0; id < 2; id++)
                        for (int perm = 0; perm < 2; perm++) {
                            int64_t Hkv = hkvs[ih], T = Ts[it], S = T + extra, D = Ds[id];
                            uint64_t seed = 100 + (uint64_t)n_cases * 3;
                            st_tensor *oq, *ok, *ov, *o = NULL;
                            st_tensor *q = heads(ctx, B, H, T, D, perm, seed, &oq);
                            st_tensor *k = heads(ctx, B, Hkv, S, D, perm, seed + 1, &ok);
                            st_tensor *v = heads(ctx, B, Hkv, S, D, perm, seed + 2, &ov);
                            float scale = 1.0f / sqrtf((float)D);
                            OK(st_attention(ctx, q, k, v, causal, scale, &o));
                            assert_int_equal(o->ndim, 4);
                            assert_true(st_tensor_is_contiguous(o));
                            assert_int_equal(o->ne[2], T);
                            float *hq = to_host(q), *hk = to_host(k), *hv = to_host(v);
                            float *ho = to_host(o);
                            int64_t n = st_tensor_numel(o);
                            double *ref = malloc((size_t)n * sizeof(double));
                            ref_attention(hq, hk, hv, B, H, Hkv, T, S, D, causal, scale, ref);
                            char what[128];
                            snprintf(what, sizeof what,
                                     "attention Hkv=%lld T=%lld S=%lld D=%lld causal=%d perm=%d",
                                     (long long)Hkv, (long long)T, (long long)S, (long long)D,
                                     causal, perm);
                            assert_close(ho, ref, n, 1e-4, what);
                            free(hq), free(hk), free(hv), free(ho), free(ref);
                            st_tensor_free(oq), st_tensor_free(ok), st_tensor_free(ov);
                            st_ctx_reset(ctx);
                            n_cases++;
                        }
    assert_int_equal(n_cases, 192);

    /* shape errors */
    int64_t sq[4] = {1, 3, 2, 4}, sk[4] = {1, 2, 2, 4}, s3[3] = {1, 2, 4};
    st_tensor *q = rand_tensor(ctx, 4, sq, 1), *k = rand_tensor(ctx, 4, sk, 2);
    st_tensor *x3 = rand_tensor(ctx, 3, s3, 3), *o = NULL;
    assert_int_equal(st_attention(ctx, q, k, k, true, 1.0f, &o), ST_ERR_SHAPE); /* 3 % 2 */
    assert_null(o);
    assert_int_equal(st_attention(ctx, x3, k, k, true, 1.0f, &o), ST_ERR_SHAPE);
    st_tensor_free(q), st_tensor_free(k), st_tensor_free(x3);
    st_ctx_free(ctx);
}

static void test_rope_forward(void **state) {
    (void)state;
    st_ctx *ctx = new_ctx(0, -1);
    assert_non_null(ctx);
    const int64_t B = 2, H = 3, T = 5, D = 8, pos0 = 7;
    const float thetas[2] = {10000.0f, 500.0f};
    for (int kind = 0; kind < 2; kind++)
        for (int perm = 0; perm < 2; perm++)
            for (int ith = 0; ith < 2; ith++) {
                st_tensor *own, *y = NULL;
                st_tensor *x = heads(ctx, B, H, T, D, perm, 7 + (uint64_t)kind, &own);
                OK(st_rope(ctx, x, pos0, thetas[ith], (st_rope_kind)kind, &y));
                float *hx = to_host(x), *hy = to_host(y);
                int64_t n = st_tensor_numel(x);
                double *ref = malloc((size_t)n * sizeof(double));
                for (int64_t r = 0; r < B * H * T; r++) {
                    int64_t t = r % T;
                    const float *xr = hx + r * D;
                    double *yr = ref + r * D;
                    for (int64_t i = 0; i < D / 2; i++) {
                        double ang = (double)(pos0 + t) * pow(thetas[ith], -2.0 * i / D);
                        int64_t a = kind == ST_ROPE_HALF ? i : 2 * i;
                        int64_t b = kind == ST_ROPE_HALF ? i + D / 2 : 2 * i + 1;
                        yr[a] = xr[a] * cos(ang) - xr[b] * sin(ang);
                        yr[b] = xr[b] * cos(ang) + xr[a] * sin(ang);
                    }
                }
                assert_close(hy, ref, n, 1e-5, kind ? "rope interleaved" : "rope half");
                free(hx), free(hy), free(ref);
                st_tensor_free(own);
                st_ctx_reset(ctx);
            }
    int64_t odd[4] = {1, 1, 2, 5};
    st_tensor *x = rand_tensor(ctx, 4, odd, 1), *y = NULL;
    assert_int_equal(st_rope(ctx, x, 0, 10000.0f, ST_ROPE_HALF, &y), ST_ERR_SHAPE);
    st_tensor_free(x);
    int64_t ev[4] = {1, 1, 2, 4};
    x = rand_tensor(ctx, 4, ev, 1);
    assert_int_equal(st_rope(ctx, x, 0, 10000.0f, (st_rope_kind)5, &y), ST_ERR_INVALID_ARG);
    assert_int_equal(st_rope(ctx, x, 0, -1.0f, ST_ROPE_HALF, &y), ST_ERR_INVALID_ARG);
    st_tensor_free(x);
    st_ctx_free(ctx);
}

static double ref_ce(const float *x, const int32_t *tg, int64_t N, int64_t V) {
    double sum = 0;
    int64_t count = 0;
    for (int64_t r = 0; r < N; r++) {
        if (tg[r] < 0) continue;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < V; j++)
            m = fmax(m, x[r * V + j]);
        for (int64_t j = 0; j < V; j++)
            s += exp(x[r * V + j] - m);
        sum += m + log(s) - x[r * V + tg[r]];
        count++;
    }
    return count ? sum / (double)count : 0.0;
}

static void test_cross_entropy_forward(void **state) {
    (void)state;
    st_ctx *ctx = new_ctx(0, -1);
    assert_non_null(ctx);
    /* [2,3,V] logits, [2,3] targets with one ignored; V small and large */
    const int64_t Vs[2] = {7, 1000};
    for (int iv = 0; iv < 2; iv++) {
        int64_t V = Vs[iv], sx[3] = {2, 3, V}, st[2] = {2, 3};
        st_tensor *x = rand_tensor(ctx, 3, sx, 5 + (uint64_t)iv), *tg = NULL, *loss = NULL;
        OK(st_scale_(x, 3.0f));
        int32_t t[6] = {0, (int32_t)V - 1, -1, 3, 2, 1};
        OK(st_from_data(ctx, ST_I32, 2, st, t, &tg));
        OK(st_cross_entropy(ctx, x, tg, &loss));
        assert_int_equal(loss->ndim, 1);
        assert_int_equal(loss->ne[0], 1);
        float *hx = to_host(x), l;
        OK(st_tensor_get_f32(loss, 0, &l));
        double ref = ref_ce(hx, t, 6, V);
        assert_float_equal(l, ref, 1e-5 * (1 + fabs(ref)));
        /* all ignored: 0 */
        int32_t none[6] = {-1, -1, -1, -1, -1, -1};
        st_tensor *tn = NULL;
        OK(st_from_data(ctx, ST_I32, 2, st, none, &tn));
        OK(st_cross_entropy(ctx, x, tn, &loss));
        OK(st_tensor_get_f32(loss, 0, &l));
        assert_float_equal(l, 0.0f, 0.0f);
        /* a target outside [-1, V) */
        int32_t bad[2][6] = {{0, 1, 2, (int32_t)V, 0, 0}, {0, -2, 0, 0, 0, 0}};
        for (int b = 0; b < 2; b++) {
            st_tensor *tb = NULL;
            OK(st_from_data(ctx, ST_I32, 2, st, bad[b], &tb));
            assert_int_equal(st_cross_entropy(ctx, x, tb, &loss), ST_ERR_BOUNDS);
            assert_null(loss);
            assert_non_null(strstr(st_last_error(), "target"));
        }
        free(hx);
        st_tensor_free(x);
        st_ctx_reset(ctx);
    }
    /* a non-contiguous logits view: [V, N] transposed to [N, V] */
    int64_t sx[2] = {9, 4}, st1[1] = {4};
    st_tensor *xt = rand_tensor(ctx, 2, sx, 9), *x = NULL, *tg = NULL, *loss = NULL;
    OK(st_transpose(ctx, xt, 0, 1, &x));
    int32_t t[4] = {8, 0, -1, 4};
    OK(st_from_data(ctx, ST_I32, 1, st1, t, &tg));
    OK(st_cross_entropy(ctx, x, tg, &loss));
    float *hx = to_host(x), l;
    OK(st_tensor_get_f32(loss, 0, &l));
    double ref = ref_ce(hx, t, 4, 9);
    assert_float_equal(l, ref, 1e-5 * (1 + fabs(ref)));
    /* shape and dtype errors */
    int64_t s3[1] = {3};
    st_tensor *t3 = NULL;
    OK(st_zeros(ctx, ST_I32, 1, s3, &t3));
    assert_int_equal(st_cross_entropy(ctx, x, t3, &loss), ST_ERR_SHAPE);
    assert_int_equal(st_cross_entropy(ctx, x, x, &loss), ST_ERR_DTYPE);
    free(hx);
    st_tensor_free(xt);
    st_ctx_free(ctx);
}

static void test_dropout_forward(void **state) {
    (void)state;
    st_ctx *ctx = new_ctx(0, -1);
    assert_non_null(ctx);
    const int64_t n = 100000;
    const float p = 0.3f;
    st_tensor *x = NULL, *y = NULL, *y2 = NULL, *y3 = NULL, *u = NULL;
    OK(st_full(ctx, ST_F32, 1, &n, 2.0f, &x));
    OK(st_dropout(ctx, x, p, 42, &y));
    OK(st_dropout(ctx, x, p, 42, &y2));
    OK(st_dropout(ctx, x, p, 43, &y3));
    OK(st_rand_uniform(ctx, 1, &n, 42, 0.0f, 1.0f, &u));
    float *hy = to_host(y), *hy2 = to_host(y2), *hy3 = to_host(y3), *hu = to_host(u);
    int64_t kept = 0, differ = 0;
    float keep_val = 2.0f * (1.0f / (1.0f - p));
    for (int64_t i = 0; i < n; i++) {
        bool k = hy[i] != 0.0f;
        kept += k;
        if (k) assert_float_equal(hy[i], keep_val, 1e-6);
        if (k != (hu[i] >= p)) fail_msg("dropout mask differs from rand_uniform at %lld", (long long)i);
        differ += (hy[i] != 0.0f) != (hy3[i] != 0.0f);
    }
    assert_memory_equal(hy, hy2, (size_t)n * sizeof(float)); /* same seed, same mask */
    /* kept fraction: 1-p within 0.01 (the standard deviation is 0.0015) */
    double frac = (double)kept / (double)n;
    if (fabs(frac - (1.0 - p)) > 0.01) fail_msg("kept fraction %.4f, want %.2f", frac, 1.0 - p);
    assert_true(differ > n / 10); /* another seed, another mask */
    /* p = 0 is the identity; p outside [0,1) is refused */
    OK(st_dropout(ctx, x, 0.0f, 1, &y));
    assert_ptr_equal(y, x);
    assert_int_equal(st_dropout(ctx, x, 1.0f, 1, &y), ST_ERR_INVALID_ARG);
    assert_int_equal(st_dropout(ctx, x, -0.1f, 1, &y), ST_ERR_INVALID_ARG);
    assert_int_equal(st_dropout(ctx, x, NAN, 1, &y), ST_ERR_INVALID_ARG);
    free(hy), free(hy2), free(hy3), free(hu);
    st_ctx_free(ctx);
}

/* ---- 2. gradient checks ------------------------------------------------------------------------ */

typedef struct attn_case {
    int64_t B, H, Hkv, T, S, D;
    bool causal, permuted;
} attn_case;

/* inputs are [B,H,T,D] (or [B,T,H,D] when permuted, viewed as heads here) */
static st_status f_attention(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    (void)n;
    const attn_case *c = u;
    st_tensor *q = in[0], *k = in[1], *v = in[2];
    if (c->permuted) {
        const int perm[4] = {0, 2, 1, 3};
        ST_TRY(st_permute(ctx, in[0], perm, &q));
        ST_TRY(st_permute(ctx, in[1], perm, &k));
        ST_TRY(st_permute(ctx, in[2], perm, &v));
    }
    return st_attention(ctx, q, k, v, c->causal, 1.0f / sqrtf((float)c->D), out);
}

static void gradcheck_ok(st_ctx *ctx, st_gradcheck_fn fn, void *u, st_tensor *const *in, int n,
                         const char *what) {
    st_gradcheck_result r;
    st_gradcheck_params p = st_gradcheck_default_params();
    p.seed = 1234;
    OK(st_gradcheck(ctx, fn, u, in, n, &p, &r));
    if (r.n_failed > 0 || r.n_checked == 0)
        fail_msg("%s: %lld of %lld elements failed; worst input %d [%lld]: analytic %.6g numeric "
                 "%.6g",
                 what, (long long)r.n_failed, (long long)r.n_checked, r.worst_input,
                 (long long)r.worst_index, r.worst_analytic, r.worst_numeric);
}

static void test_attention_gradcheck(void **state) {
    (void)state;
    st_ctx *ctx = new_ctx(0, -1);
    assert_non_null(ctx);
    const attn_case cases[] = {
        {1, 4, 2, 5, 7, 8, true, false},  /* GQA, causal, cached prefix */
        {1, 2, 2, 4, 4, 8, false, false}, /* plain MHA */
        {2, 2, 1, 3, 4, 4, true, true},   /* MQA, permuted views, B = 2 */
        {1, 3, 3, 6, 6, 4, true, true},   /* causal self-attention, permuted */
        {1, 2, 1, 130, 133, 2, true, false}, /* causal over 3 query blocks, cached prefix */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const attn_case *c = &cases[i];
        int64_t sq[4] = {c->B, c->H, c->T, c->D}, sk[4] = {c->B, c->Hkv, c->S, c->D};
        if (c->permuted) {
            sq[1] = c->T, sq[2] = c->H;
            sk[1] = c->S, sk[2] = c->Hkv;
        }
        st_tensor *in[3] = {rand_tensor(ctx, 4, sq, 10 + i), rand_tensor(ctx, 4, sk, 20 + i),
                            rand_tensor(ctx, 4, sk, 30 + i)};
        for (int j = 0; j < 3; j++)
            OK(st_requires_grad(in[j], true));
        char what[64];
        snprintf(what, sizeof what, "attention case %zu", i);
        gradcheck_ok(ctx, f_attention, (void *)c, in, 3, what);
        for (int j = 0; j < 3; j++)
            st_tensor_free(in[j]);
    }
    st_ctx_free(ctx);
}

static st_status f_rope(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    (void)n;
    return st_rope(ctx, in[0], 3, 100.0f, (st_rope_kind)(intptr_t)u, out);
}

static const int32_t g_ce_targets[5] = {2, -1, 0, 4, 1};

static st_status f_ce(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    (void)n, (void)u;
    const int64_t s = 5;
    st_tensor *t = NULL;
    ST_TRY(st_from_data(ctx, ST_I32, 1, &s, g_ce_targets, &t));
    return st_cross_entropy(ctx, in[0], t, out);
}

static st_status f_dropout(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    (void)n, (void)u;
    return st_dropout(ctx, in[0], 0.4f, 9, out);
}

static void test_other_gradchecks(void **state) {
    (void)state;
    st_ctx *ctx = new_ctx(0, -1);
    assert_non_null(ctx);
    int64_t sr[4] = {1, 2, 4, 6}, sc[2] = {5, 6}, sd[2] = {3, 7};
    for (intptr_t kind = 0; kind < 2; kind++) {
        st_tensor *x = rand_tensor(ctx, 4, sr, 50 + (uint64_t)kind);
        OK(st_requires_grad(x, true));
        gradcheck_ok(ctx, f_rope, (void *)kind, &x, 1, kind ? "rope interleaved" : "rope half");
        st_tensor_free(x);
    }
    st_tensor *x = rand_tensor(ctx, 2, sc, 60);
    OK(st_requires_grad(x, true));
    gradcheck_ok(ctx, f_ce, NULL, &x, 1, "cross-entropy");
    st_tensor_free(x);
    x = rand_tensor(ctx, 2, sd, 70);
    OK(st_requires_grad(x, true));
    gradcheck_ok(ctx, f_dropout, NULL, &x, 1, "dropout");
    st_tensor_free(x);
    st_ctx_free(ctx);
}

/* ---- 3 and 4. threads and SIMD levels ------------------------------------------------------- */

typedef struct run_out {
    float *o, *dq, *dk, *dv; /* attention */
    float loss, *dlogits;    /* cross-entropy */
    float *rope, *drop;      /* rope of q; dropout of q */
    int64_t nq, nk, nl;
} run_out;

/* One forward + backward of each op on ctx with fixed seeded inputs. */
static void run_all(st_ctx *ctx, run_out *r) {
    OK(st_autograd_enable(ctx));
    const int64_t B = 2, H = 4, Hkv = 2, T = 33, S = 40, D = 16, N = 24, V = 300;
    int64_t sq[4] = {B, H, T, D}, sk[4] = {B, Hkv, S, D}, sl[2] = {N, V};
    st_tensor *q = rand_tensor(ctx, 4, sq, 1), *k = rand_tensor(ctx, 4, sk, 2);
    st_tensor *v = rand_tensor(ctx, 4, sk, 3), *x = rand_tensor(ctx, 2, sl, 4);
    OK(st_scale_(x, 4.0f));
    st_tensor *all[4] = {q, k, v, x};
    for (int i = 0; i < 4; i++)
        OK(st_requires_grad(all[i], true));
    st_tensor *o = NULL, *g = NULL, *tg = NULL, *loss = NULL, *ro = NULL, *dr = NULL;
    OK(st_attention(ctx, q, k, v, true, 0.25f, &o));
    OK(st_randn(ctx, 4, sq, 5, 0.0f, 1.0f, &g));
    OK(st_backward_with(ctx, o, g));
    int32_t t[24];
    for (int i = 0; i < 24; i++)
        t[i] = i % 5 == 4 ? -1 : (int32_t)((i * 37) % V);
    OK(st_from_data(ctx, ST_I32, 1, &N, t, &tg));
    OK(st_cross_entropy(ctx, x, tg, &loss));
    OK(st_backward(ctx, loss));
    st_ctx_set_grad_enabled(ctx, false);
    OK(st_rope(ctx, q, 11, 10000.0f, ST_ROPE_INTERLEAVED, &ro));
    OK(st_dropout(ctx, q, 0.25f, 77, &dr));
    st_ctx_set_grad_enabled(ctx, true);
    r->o = to_host(o);
    r->dq = to_host(q->grad);
    r->dk = to_host(k->grad);
    r->dv = to_host(v->grad);
    OK(st_tensor_get_f32(loss, 0, &r->loss));
    r->dlogits = to_host(x->grad);
    r->rope = to_host(ro);
    r->drop = to_host(dr);
    r->nq = st_tensor_numel(q);
    r->nk = st_tensor_numel(k);
    r->nl = st_tensor_numel(x);
    st_ctx_reset(ctx);
    for (int i = 0; i < 4; i++)
        st_tensor_free(all[i]);
}

static void run_free(run_out *r) {
    free(r->o), free(r->dq), free(r->dk), free(r->dv), free(r->dlogits), free(r->rope),
        free(r->drop);
}

static void test_threads_identical(void **state) {
    (void)state;
    run_out r[2];
    for (int i = 0; i < 2; i++) {
        st_ctx *ctx = new_ctx(i + 1, -1);
        assert_non_null(ctx);
        assert_int_equal(st_ctx_n_threads(ctx), i + 1);
        run_all(ctx, &r[i]);
        st_ctx_free(ctx);
    }
    assert_memory_equal(r[0].o, r[1].o, (size_t)r[0].nq * 4);
    assert_memory_equal(r[0].dq, r[1].dq, (size_t)r[0].nq * 4);
    assert_memory_equal(r[0].dk, r[1].dk, (size_t)r[0].nk * 4);
    assert_memory_equal(r[0].dv, r[1].dv, (size_t)r[0].nk * 4);
    assert_memory_equal(&r[0].loss, &r[1].loss, 4);
    assert_memory_equal(r[0].dlogits, r[1].dlogits, (size_t)r[0].nl * 4);
    assert_memory_equal(r[0].rope, r[1].rope, (size_t)r[0].nq * 4);
    assert_memory_equal(r[0].drop, r[1].drop, (size_t)r[0].nq * 4);
    run_free(&r[0]);
    run_free(&r[1]);
}

static void assert_near(const float *a, const float *b, int64_t n, double tol, const char *what,
                        int level) {
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - b[i]) <= tol * (1.0 + fabs((double)b[i]))))
            fail_msg("simd level %d: %s[%lld] = %.7g vs scalar %.7g", level, what, (long long)i,
                     (double)a[i], (double)b[i]);
}

static void test_simd_levels_agree(void **state) {
    (void)state;
    run_out ref;
    st_ctx *ctx = new_ctx(2, ST_SIMD_SCALAR);
    assert_non_null(ctx);
    run_all(ctx, &ref);
    st_ctx_free(ctx);
    int tested = 0;
    for (int level = ST_SIMD_AVX2; level <= ST_SIMD_AVX512; level++) {
        ctx = new_ctx(2, level);
        if (!ctx) continue; /* the CPU lacks it */
        run_out r;
        run_all(ctx, &r);
        st_ctx_free(ctx);
        assert_near(r.o, ref.o, r.nq, 1e-5, "attention out", level);
        assert_near(r.dq, ref.dq, r.nq, 1e-4, "dq", level);
        assert_near(r.dk, ref.dk, r.nk, 1e-4, "dk", level);
        assert_near(r.dv, ref.dv, r.nk, 1e-4, "dv", level);
        assert_near(&r.loss, &ref.loss, 1, 1e-5, "cross-entropy loss", level);
        assert_near(r.dlogits, ref.dlogits, r.nl, 1e-5, "dlogits", level);
        assert_near(r.rope, ref.rope, r.nq, 1e-6, "rope", level);
        assert_memory_equal(r.drop, ref.drop, (size_t)r.nq * 4);
        run_free(&r);
        tested++;
    }
    print_message("simd levels compared with scalar: %d\n", tested);
    run_free(&ref);
}

/* ---- 5. memory of a longer sequence -------------------------------------------------------- */

static void test_attention_memory(void **state) {
    (void)state;
    st_ctx *ctx = new_ctx(0, -1);
    assert_non_null(ctx);
    const int64_t B = 2, H = 4, T = 256, D = 32;
    int64_t s[4] = {B, H, T, D};
    st_tensor *q = rand_tensor(ctx, 4, s, 1), *k = rand_tensor(ctx, 4, s, 2);
    st_tensor *v = rand_tensor(ctx, 4, s, 3), *o = NULL;
    int64_t before = st_alloc_get_stats().live_bytes;
    OK(st_attention(ctx, q, k, v, true, 1.0f / sqrtf((float)D), &o));
    int64_t grew = st_alloc_get_stats().live_bytes - before; /* scratch kept by the backend */
    int64_t scores = B * H * T * T * (int64_t)sizeof(float);
    if (grew > scores / 2)
        fail_msg("attention kept %lld bytes; the full score tensor is %lld", (long long)grew,
                 (long long)scores);
    float *ho = to_host(o);
    for (int64_t i = 0; i < st_tensor_numel(o); i++)
        assert_true(isfinite(ho[i]));
    free(ho);
    st_tensor_free(q), st_tensor_free(k), st_tensor_free(v);
    st_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_memory),
        cmocka_unit_test(test_attention_forward),
        cmocka_unit_test(test_rope_forward),
        cmocka_unit_test(test_cross_entropy_forward),
        cmocka_unit_test(test_dropout_forward),
        cmocka_unit_test(test_attention_gradcheck),
        cmocka_unit_test(test_other_gradchecks),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_simd_levels_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
