/*
 * test_tensor.c — layer 3 (strata/tensor.h): contexts, creation, views,
 * every op against a naive double-precision reference computed here,
 * in-place helpers, backward helpers, the recorder hook, the extension slot
 * (its content freed exactly once: when replaced or with the context), and
 * a table of bad inputs (exact status code and a non-empty message for each).
 *
 * Inputs are small (a few hundred elements) so the whole program runs in
 * well under a second, ASan included. Tolerances are stated where used:
 * "exact" ops (copies, views, fills) compare bit-for-bit; arithmetic
 * compares with |got - want| <= atol + rtol * |want|.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "strata/tensor.h"

/* ---- helpers ------------------------------------------------------------------------ */

#define OK(expr)                                                                          \
    do {                                                                                  \
        st_status s_ = (expr);                                                            \
        if (s_ != ST_OK)                                                                  \
            fail_msg("%s -> %s: %s", #expr, st_status_name(s_), st_last_error());         \
    } while (0)

static void near(double got, double want, double atol, double rtol, const char *what,
                 int64_t i) {
    if (!(fabs(got - want) <= atol + rtol * fabs(want)) && !(isnan(got) && isnan(want)))
        fail_msg("%s: element %lld is %.9g, want %.9g (atol %g, rtol %g)", what, (long long)i,
                 got, want, atol, rtol);
}

static st_ctx *new_ctx(int n_threads) {
    st_ctx_params p = st_ctx_default_params();
    p.cpu.n_threads = n_threads;
    p.arena_bytes = 1 << 20;
    st_ctx *ctx = NULL;
    OK(st_ctx_new(&p, &ctx));
    return ctx;
}

static int setup(void **state) {
    *state = new_ctx(2);
    return *state ? 0 : -1;
}

static int teardown(void **state) {
    st_ctx_free(*state);
    return 0;
}

/* Deterministic values in [-1, 1) (a small LCG; independent of the library). */
static void lcg_fill(float *x, int64_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 12345u;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((double)(s >> 8) / 8388608.0 - 1.0);
    }
}

static int64_t prod(int nd, const int64_t *ne) {
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= ne[d];
    return n;
}

/* A contiguous f32 step tensor of random values. */
static st_tensor *rnd(st_ctx *ctx, int nd, const int64_t *shape, uint32_t seed) {
    int64_t n = prod(nd, shape);
    float buf[4096];
    assert_true(n <= 4096);
    lcg_fill(buf, n, seed);
    st_tensor *t = NULL;
    OK(st_from_data(ctx, ST_F32, nd, shape, buf, &t));
    return t;
}

/* A NON-contiguous f32 tensor of `shape` (2..4 dims): made as the shape with
 * its last two dims swapped, then transposed back. */
static st_tensor *rnd_t(st_ctx *ctx, int nd, const int64_t *shape, uint32_t seed) {
    int64_t sw[4];
    memcpy(sw, shape, sizeof(int64_t) * (size_t)nd);
    sw[nd - 1] = shape[nd - 2];
    sw[nd - 2] = shape[nd - 1];
    st_tensor *t = rnd(ctx, nd, sw, seed), *v = NULL;
    OK(st_transpose(ctx, t, -1, -2, &v));
    return v;
}

/* All elements as doubles (row-major), via st_tensor_get_f32. */
static double *host(const st_tensor *t) {
    int64_t n = st_tensor_numel(t);
    double *h = test_malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        float v;
        OK(st_tensor_get_f32(t, i, &v));
        h[i] = v;
    }
    return h;
}

static void assert_shape(const st_tensor *t, int nd, const int64_t *shape) {
    char b1[64], b2[64];
    st_tensor_shape_str(t, b1, sizeof b1);
    assert_int_equal(t->ndim, nd);
    for (int d = 0; d < nd; d++)
        if (t->ne[d] != shape[d]) fail_msg("shape %s: dim %d is not %lld", b1, d, (long long)shape[d]);
    (void)b2;
}

/* Flat index into a tensor of (and, ane) for the output multi-index idx of
 * (ond, ...) under NumPy broadcasting (right-aligned, size-1 repeats). */
static int64_t bidx(int ond, const int64_t *idx, int and_, const int64_t *ane) {
    int64_t f = 0;
    for (int d = 0; d < and_; d++) {
        int od = d + ond - and_;
        int64_t i = ane[d] == 1 ? 0 : idx[od];
        f = f * ane[d] + i;
    }
    return f;
}

static void unravel(int64_t flat, int nd, const int64_t *ne, int64_t *idx) {
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = flat % ne[d];
        flat /= ne[d];
    }
}

/* ---- context ----------------------------------------------------------------------------- */

static int g_hook_calls[8];
static int g_hook_order[16], g_hook_n;
static void hook(st_ctx *ctx, void *user) {
    (void)ctx;
    int i = (int)(intptr_t)user;
    g_hook_calls[i]++;
    if (g_hook_n < 16) g_hook_order[g_hook_n++] = i;
}

static void test_ctx(void **state) {
    st_ctx *ctx = *state;
    assert_non_null(st_ctx_backend(ctx));
    assert_non_null(st_ctx_arena(ctx));
    assert_int_equal(st_ctx_n_threads(ctx), 2);
    assert_true(st_ctx_grad_enabled(ctx));
    st_ctx_set_grad_enabled(ctx, false);
    assert_false(st_ctx_grad_enabled(ctx));
    st_ctx_set_grad_enabled(ctx, true);
    memset(g_hook_calls, 0, sizeof g_hook_calls);
    g_hook_n = 0;
    for (int i = 0; i < 8; i++) OK(st_ctx_add_reset_hook(ctx, hook, (void *)(intptr_t)i));
    assert_int_equal(st_ctx_add_reset_hook(ctx, hook, NULL), ST_ERR_STATE);
    assert_true(st_last_error()[0] != '\0');
    int64_t shape[2] = {16, 16};
    st_tensor *t;
    OK(st_zeros(ctx, ST_F32, 2, shape, &t));
    assert_true(st_arena_used_bytes(st_ctx_arena(ctx)) >= 16 * 16 * 4);
    st_ctx_reset(ctx);
    assert_int_equal(st_arena_used_bytes(st_ctx_arena(ctx)), 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(g_hook_calls[i], 1);
        assert_int_equal(g_hook_order[i], i); /* registration order */
    }
    /* defaults: NULL params work */
    st_ctx *c2 = NULL;
    OK(st_ctx_new(NULL, &c2));
    assert_true(st_ctx_n_threads(c2) >= 1);
    st_ctx_free(c2);
    st_ctx_free(NULL);
}

/* ---- creation ------------------------------------------------------------------------------- */

static void test_creation(void **state) {
    st_ctx *ctx = *state;
    st_alloc_stats before = st_alloc_get_stats();
    static const struct { int nd; int64_t shape[4]; st_dtype dt; } cases[] = {
        {1, {7}, ST_F32}, {2, {3, 5}, ST_BF16}, {3, {2, 3, 4}, ST_I32},
        {4, {2, 1, 3, 2}, ST_F16}, {2, {0, 4}, ST_F32}, {1, {1}, ST_I8},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        st_tensor *t = NULL;
        OK(st_tensor_new(ctx, cases[c].dt, cases[c].nd, cases[c].shape, &t));
        assert_shape(t, cases[c].nd, cases[c].shape);
        assert_true(t->persistent);
        assert_true(st_tensor_is_contiguous(t));
        int64_t n = prod(cases[c].nd, cases[c].shape);
        assert_int_equal(st_tensor_numel(t), n);
        assert_int_equal(st_tensor_nbytes(t), (size_t)n * st_dtype_size(cases[c].dt));
        assert_int_equal(t->nb[t->ndim - 1], (int64_t)st_dtype_size(cases[c].dt));
        for (int64_t i = 0; i < n; i++) {
            float v = 1;
            OK(st_tensor_get_f32(t, i, &v));
            assert_true(v == 0.0f); /* zero-filled */
        }
        if (n > 0) {
            OK(st_tensor_set_f32(t, n - 1, 3.0f));
            float v;
            OK(st_tensor_get_f32(t, n - 1, &v));
            assert_true(v == 3.0f);
        }
        /* a persistent grad is freed with its tensor */
        OK(st_tensor_new(ctx, ST_F32, cases[c].nd, cases[c].shape, &t->grad));
        st_tensor_free(t);
    }
    st_tensor_free(NULL);
    /* wrap borrows caller memory */
    float mem[6] = {1, 2, 3, 4, 5, 6};
    int64_t s23[2] = {2, 3};
    st_tensor *w;
    OK(st_tensor_wrap(ctx, ST_F32, 2, s23, mem, &w));
    float v;
    OK(st_tensor_get_f32(w, 4, &v));
    assert_true(v == 5.0f);
    OK(st_tensor_set_f32(w, 0, -1.0f));
    assert_true(mem[0] == -1.0f);
    st_tensor_set_name(w, "weights");
    assert_string_equal(w->name, "weights");
    char buf[64];
    assert_string_equal(st_tensor_shape_str(w, buf, sizeof buf), "[2,3] f32");
    st_tensor_free(w);
    st_alloc_stats after = st_alloc_get_stats();
    /* nothing leaked: live bytes must not grow (they may shrink: the pool's
     * worker threads free their start arguments asynchronously) */
    assert_true(after.live_bytes <= before.live_bytes);

    /* step constructors */
    st_tensor *t;
    OK(st_full(ctx, ST_BF16, 2, s23, 1.5f, &t));
    for (int64_t i = 0; i < 6; i++) {
        OK(st_tensor_get_f32(t, i, &v));
        assert_true(v == 1.5f);
    }
    assert_false(t->persistent);
    assert_int_equal((uintptr_t)t->data % 64, 0);
    OK(st_ones(ctx, ST_I32, 2, s23, &t));
    OK(st_tensor_get_f32(t, 5, &v));
    assert_true(v == 1.0f);
    OK(st_zeros(ctx, ST_F32, 2, s23, &t));
    OK(st_tensor_get_f32(t, 3, &v));
    assert_true(v == 0.0f);
    OK(st_arange(ctx, ST_F32, 5, 2.0f, 0.5f, &t));
    for (int64_t i = 0; i < 5; i++) {
        OK(st_tensor_get_f32(t, i, &v));
        assert_true(v == 2.0f + 0.5f * (float)i);
    }
    OK(st_arange(ctx, ST_I32, 4, -2.0f, 3.0f, &t));
    assert_int_equal(t->dtype, ST_I32);
    for (int64_t i = 0; i < 4; i++) assert_int_equal(((int32_t *)t->data)[i], -2 + 3 * i);
    int32_t ids[3] = {4, -1, 7};
    int64_t three = 3;
    OK(st_from_data(ctx, ST_I32, 1, &three, ids, &t));
    assert_int_equal(((int32_t *)t->data)[1], -1);
    float out[3];
    OK(st_tensor_to_f32(t, out, 3));
    assert_true(out[2] == 7.0f);
    int64_t e0[2] = {0, 3};
    OK(st_zeros(ctx, ST_F32, 2, e0, &t)); /* empty tensors are fine */
    assert_int_equal(st_tensor_numel(t), 0);
}

/* ---- RNG ------------------------------------------------------------------------------------ */

static void test_rng(void **state) {
    st_ctx *ctx = *state;
    st_ctx *c1 = new_ctx(1), *c2 = new_ctx(2);
    /* 20000 elements: more than one grain, so 2 threads really split it */
    int64_t shape[2] = {100, 200};
    st_tensor *a, *b, *u1, *u2, *d;
    OK(st_randn(c1, 2, shape, 42, 0.5f, 2.0f, &a));
    OK(st_randn(c2, 2, shape, 42, 0.5f, 2.0f, &b));
    OK(st_rand_uniform(c1, 2, shape, 7, -3.0f, 1.0f, &u1));
    OK(st_rand_uniform(c2, 2, shape, 7, -3.0f, 1.0f, &u2));
    OK(st_randn(c1, 2, shape, 43, 0.5f, 2.0f, &d));
    int64_t n = 20000, same_d = 0;
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        float x = ((float *)a->data)[i], y = ((float *)b->data)[i];
        assert_memory_equal(&x, &y, sizeof x); /* identical for 1 and 2 threads */
        float p = ((float *)u1->data)[i], q = ((float *)u2->data)[i];
        assert_memory_equal(&p, &q, sizeof p);
        assert_true(p >= -3.0f && p < 1.0f);
        if (((float *)d->data)[i] == x) same_d++;
        sum += x;
        sq += (double)x * x;
    }
    assert_true(same_d < 10); /* another seed gives other numbers */
    double mean = sum / (double)n, sd = sqrt(sq / (double)n - mean * mean);
    /* sampling error of the mean: 2/sqrt(20000) = 0.014; 0.1 is ~7 sigma */
    assert_true(fabs(mean - 0.5) < 0.1);
    assert_true(fabs(sd - 2.0) < 0.1);
    /* In-place fills: element i of t (row-major) equals element i of a fresh
     * tensor of the same shape, even for a transposed view and a bf16 t. */
    int64_t s34[2] = {3, 4}, s43[2] = {4, 3};
    st_tensor *ref, *p, *tv, *hb;
    OK(st_randn(ctx, 2, s34, 9, 0.0f, 1.0f, &ref));
    OK(st_tensor_new(ctx, ST_F32, 2, s43, &p));
    OK(st_transpose(ctx, p, 0, 1, &tv));
    OK(st_randn_(tv, 9, 0.0f, 1.0f));
    OK(st_tensor_new(ctx, ST_BF16, 2, s34, &hb));
    OK(st_randn_(hb, 9, 0.0f, 1.0f));
    for (int64_t i = 0; i < 12; i++) {
        float x, y, z;
        OK(st_tensor_get_f32(ref, i, &x));
        OK(st_tensor_get_f32(tv, i, &y));
        OK(st_tensor_get_f32(hb, i, &z));
        assert_true(x == y);
        assert_true(z == st_bf16_to_f32(st_f32_to_bf16(x)));
    }
    OK(st_uniform_(p, 3, 2.0f, 2.5f));
    for (int64_t i = 0; i < 12; i++) {
        float x;
        OK(st_tensor_get_f32(p, i, &x));
        assert_true(x >= 2.0f && x < 2.5f);
    }
    st_tensor_free(p);
    st_tensor_free(hb);
    st_ctx_free(c1);
    st_ctx_free(c2);
}

/* ---- views ---------------------------------------------------------------------------------- */

/* arange(n) as f32 with the given shape */
static st_tensor *iota(st_ctx *ctx, int nd, const int64_t *shape) {
    st_tensor *a, *r;
    OK(st_arange(ctx, ST_F32, prod(nd, shape), 0.0f, 1.0f, &a));
    OK(st_reshape(ctx, a, nd, shape, &r));
    return r;
}

static void expect_values(const st_tensor *t, const double *want, int64_t n, const char *what) {
    assert_int_equal(st_tensor_numel(t), n);
    double *h = host(t);
    for (int64_t i = 0; i < n; i++) near(h[i], want[i], 0, 0, what, i);
    test_free(h);
}

static void test_views(void **state) {
    st_ctx *ctx = *state;
    int64_t s234[3] = {2, 3, 4};
    st_tensor *x = iota(ctx, 3, s234), *v;
    double want[64];
    int64_t idx[4];

    /* reshape of a contiguous tensor: any compatible shape, -1 inferred */
    int64_t s46[2] = {4, -1};
    OK(st_reshape(ctx, x, 2, s46, &v));
    int64_t e46[2] = {4, 6};
    assert_shape(v, 2, e46);
    assert_ptr_equal(v->data, x->data);
    for (int i = 0; i < 24; i++) want[i] = i;
    expect_values(v, want, 24, "reshape");

    /* permute (2,0,1): out[i][j][k] = x[j][k][i] */
    int perm[3] = {2, 0, 1};
    OK(st_permute(ctx, x, perm, &v));
    int64_t e423[3] = {4, 2, 3};
    assert_shape(v, 3, e423);
    assert_false(st_tensor_is_contiguous(v));
    for (int64_t f = 0; f < 24; f++) {
        unravel(f, 3, e423, idx);
        want[f] = (double)(idx[1] * 12 + idx[2] * 4 + idx[0]);
    }
    expect_values(v, want, 24, "permute");

    /* transpose(-1, 0) on [2,3,4] -> [4,3,2]: out[i][j][k] = x[k][j][i] */
    OK(st_transpose(ctx, x, -1, 0, &v));
    int64_t e432[3] = {4, 3, 2};
    assert_shape(v, 3, e432);
    for (int64_t f = 0; f < 24; f++) {
        unravel(f, 3, e432, idx);
        want[f] = (double)(idx[2] * 12 + idx[1] * 4 + idx[0]);
    }
    expect_values(v, want, 24, "transpose");

    /* reshape of a transposed view: splitting a dim works without a copy,
     * flattening across the transposed dims does not */
    int64_t s4x6[2] = {4, 6};
    st_tensor *m = iota(ctx, 2, s4x6), *mt;
    OK(st_transpose(ctx, m, 0, 1, &mt)); /* [6,4]: mt[r][c] = c*6 + r */
    int64_t s2_3_4[3] = {2, 3, 4};
    OK(st_reshape(ctx, mt, 3, s2_3_4, &v));
    assert_ptr_equal(v->data, m->data);
    for (int64_t f = 0; f < 24; f++) {
        unravel(f, 3, s2_3_4, idx);
        want[f] = (double)(idx[2] * 6 + idx[0] * 3 + idx[1]);
    }
    expect_values(v, want, 24, "reshape of transposed");
    int64_t s614[3] = {6, 1, 4};
    OK(st_reshape(ctx, mt, 3, s614, &v));
    int64_t flat = 24;
    assert_int_equal(st_reshape(ctx, mt, 1, &flat, &v), ST_ERR_SHAPE);
    assert_non_null(strstr(st_last_error(), "st_contiguous"));

    /* slices with steps, negative and clamped bounds */
    st_tensor *r;
    OK(st_arange(ctx, ST_F32, 10, 0.0f, 1.0f, &r));
    static const struct { int64_t start, stop, step; int n; double v[10]; } sl[] = {
        {2, 9, 3, 3, {2, 5, 8}},      {-3, 100, 1, 3, {7, 8, 9}},
        {5, 2, 1, 0, {0}},            {-100, 3, 2, 2, {0, 2}},
        {0, 10, 4, 3, {0, 4, 8}},     {9, -1, 1, 0, {0}},
        {-1, 10, 5, 1, {9}},          {0, -7, 1, 3, {0, 1, 2}},
    };
    for (size_t c = 0; c < sizeof sl / sizeof sl[0]; c++) {
        OK(st_slice(ctx, r, 0, sl[c].start, sl[c].stop, sl[c].step, &v));
        expect_values(v, sl[c].v, sl[c].n, "slice 1-D");
    }
    /* 2-D: columns 1, 3, 5 of [4,6] (start 1, stop clamped, step 2), then rows 1, 3 */
    OK(st_slice(ctx, m, -1, 1, 100, 2, &v));
    int64_t e42[2] = {4, 3};
    assert_shape(v, 2, e42);
    for (int64_t f = 0; f < 12; f++) {
        unravel(f, 2, e42, idx);
        want[f] = (double)(idx[0] * 6 + 1 + 2 * idx[1]);
    }
    expect_values(v, want, 12, "slice axis 1");
    st_tensor *v2;
    OK(st_slice(ctx, v, 0, 1, 4, 2, &v2));
    double w2[6] = {7, 9, 11, 19, 21, 23};
    expect_values(v2, w2, 6, "slice of slice");

    /* expand: [3,1] -> [2,3,4]; -1 keeps a dim */
    int64_t s31[2] = {3, 1};
    st_tensor *c31 = iota(ctx, 2, s31);
    int64_t e234[3] = {2, -1, 4};
    OK(st_expand(ctx, c31, 3, e234, &v));
    assert_shape(v, 3, s234);
    assert_int_equal(v->nb[0], 0);
    assert_int_equal(v->nb[2], 0);
    for (int64_t f = 0; f < 24; f++) {
        unravel(f, 3, s234, idx);
        want[f] = (double)idx[1];
    }
    expect_values(v, want, 24, "expand");

    /* contiguous: a view of itself when contiguous, a copy when not */
    OK(st_contiguous(ctx, x, &v));
    assert_ptr_equal(v->data, x->data);
    OK(st_contiguous(ctx, mt, &v));
    assert_true(v->data != mt->data);
    assert_true(st_tensor_is_contiguous(v));
    double *hm = host(mt);
    expect_values(v, hm, 24, "contiguous copy");
    test_free(hm);

    /* view_of: a window of a persistent tensor's storage */
    st_tensor *p;
    int64_t s8[1] = {8};
    OK(st_tensor_new(ctx, ST_F32, 1, s8, &p));
    for (int i = 0; i < 8; i++) OK(st_tensor_set_f32(p, i, (float)i));
    int64_t s22[2] = {2, 2}, nb22[2] = {12, 4};
    OK(st_view_of(ctx, p, 2, s22, nb22, 8, &v)); /* rows {2,3}, {5,6} */
    double w3[4] = {2, 3, 5, 6};
    expect_values(v, w3, 4, "view_of");
    int64_t nb16[2] = {16, 4};
    OK(st_view_of(ctx, p, 2, s22, nb16, 8, &v)); /* last element at bytes 28..31: inside */
    double w4[4] = {2, 3, 6, 7};
    expect_values(v, w4, 4, "view_of edge");
    assert_int_equal(st_view_of(ctx, p, 2, s22, nb16, 12, &v), ST_ERR_BOUNDS); /* 32..35 */
    assert_true(st_last_error()[0] != '\0');
    st_tensor_free(p);
}

/* ---- elementwise ----------------------------------------------------------------------------- */

typedef st_status (*binop_fn)(st_ctx *, const st_tensor *, const st_tensor *, st_tensor **);

static double ref_bin(int op, double a, double b) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    default: return a / b;
    }
}

static void check_binary(st_ctx *ctx, const st_tensor *a, const st_tensor *b) {
    static const binop_fn fns[4] = {st_add, st_sub, st_mul, st_div};
    static const char *names[4] = {"add", "sub", "mul", "div"};
    double *ha = host(a), *hb = host(b);
    int ond = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t one[4], idx[4];
    for (int d = 0; d < ond; d++) {
        int ai = d - (ond - a->ndim), bi = d - (ond - b->ndim);
        int64_t da = ai >= 0 ? a->ne[ai] : 1, db = bi >= 0 ? b->ne[bi] : 1;
        one[d] = da > db ? da : db;
    }
    for (int op = 0; op < 4; op++) {
        st_tensor *o;
        OK(fns[op](ctx, a, b, &o));
        assert_shape(o, ond, one);
        assert_true(st_tensor_is_contiguous(o));
        double *ho = host(o);
        for (int64_t f = 0; f < st_tensor_numel(o); f++) {
            unravel(f, ond, one, idx);
            double want = ref_bin(op, ha[bidx(ond, idx, a->ndim, a->ne)],
                                  hb[bidx(ond, idx, b->ndim, b->ne)]);
            /* one f32 rounding of the exact result: rtol 1e-6 */
            near(ho[f], want, 1e-6, 1e-6, names[op], f);
        }
        test_free(ho);
    }
    test_free(ha);
    test_free(hb);
}

static void test_binary(void **state) {
    st_ctx *ctx = *state;
    static const struct { int na; int64_t a[4]; int nb; int64_t b[4]; } cases[] = {
        {2, {2, 3}, 2, {2, 3}},       {2, {2, 3}, 1, {3}},
        {3, {4, 1, 3}, 2, {2, 1}},    {1, {1}, 4, {2, 2, 2, 2}},
        {4, {2, 3, 1, 5}, 3, {3, 4, 1}}, {2, {5, 1}, 2, {1, 7}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        st_tensor *a = rnd(ctx, cases[c].na, cases[c].a, 1 + (uint32_t)c);
        st_tensor *b = rnd(ctx, cases[c].nb, cases[c].b, 100 + (uint32_t)c);
        /* keep divisors away from zero */
        for (int64_t i = 0; i < st_tensor_numel(b); i++) ((float *)b->data)[i] += 2.0f;
        check_binary(ctx, a, b);
    }
    /* non-contiguous: a transposed [3,4], b a step-2 slice [4] */
    int64_t s34[2] = {3, 4}, s8[1] = {8};
    st_tensor *at = rnd_t(ctx, 2, s34, 5), *b8 = rnd(ctx, 1, s8, 6), *bs;
    for (int i = 0; i < 8; i++) ((float *)b8->data)[i] += 2.0f;
    OK(st_slice(ctx, b8, 0, 0, 8, 2, &bs));
    check_binary(ctx, at, bs);
    check_binary(ctx, bs, at);
    /* broadcast views (stride 0) as inputs */
    int64_t s1_4[2] = {1, 4}, s34b[2] = {3, 4};
    st_tensor *row = rnd(ctx, 2, s1_4, 8), *ex;
    OK(st_expand(ctx, row, 2, s34b, &ex));
    check_binary(ctx, ex, at);
}

static double ref_unary(st_op op, double x, double alpha) {
    switch (op) {
    case ST_OP_NEG: return -x;
    case ST_OP_EXP: return exp(x);
    case ST_OP_LOG: return log(x);
    case ST_OP_SQRT: return sqrt(x);
    case ST_OP_TANH: return tanh(x);
    case ST_OP_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case ST_OP_GELU_ERF: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case ST_OP_SILU: return x / (1.0 + exp(-x));
    case ST_OP_RELU: return x > 0 ? x : 0;
    case ST_OP_SCALE: return alpha * x;
    default: return NAN;
    }
}

static st_status run_unary(st_ctx *ctx, st_op op, const st_tensor *a, st_tensor **o) {
    switch (op) {
    case ST_OP_NEG: return st_neg(ctx, a, o);
    case ST_OP_EXP: return st_exp(ctx, a, o);
    case ST_OP_LOG: return st_log(ctx, a, o);
    case ST_OP_SQRT: return st_sqrt(ctx, a, o);
    case ST_OP_TANH: return st_tanh(ctx, a, o);
    case ST_OP_GELU_TANH: return st_gelu(ctx, a, ST_GELU_TANH, o);
    case ST_OP_GELU_ERF: return st_gelu(ctx, a, ST_GELU_ERF, o);
    case ST_OP_SILU: return st_silu(ctx, a, o);
    case ST_OP_RELU: return st_relu(ctx, a, o);
    case ST_OP_SCALE: return st_scale(ctx, a, -2.5f, o);
    default: return ST_ERR_INTERNAL;
    }
}

static void test_unary(void **state) {
    st_ctx *ctx = *state;
    int64_t s[3] = {2, 5, 7};
    st_tensor *inputs[2] = {rnd(ctx, 3, s, 11), rnd_t(ctx, 3, s, 12)};
    for (int k = 0; k < 2; k++) {
        /* values in [-3, 3); positive copies for log and sqrt */
        st_tensor *a, *pos;
        OK(st_scale(ctx, inputs[k], 3.0f, &a));
        OK(st_relu(ctx, a, &pos));
        st_tensor *eps;
        int64_t one = 1;
        OK(st_full(ctx, ST_F32, 1, &one, 0.1f, &eps));
        OK(st_add(ctx, pos, eps, &pos));
        for (st_op op = ST_OP_NEG; op <= ST_OP_SCALE; op++) {
            const st_tensor *in = (op == ST_OP_LOG || op == ST_OP_SQRT) ? pos : a;
            st_tensor *o;
            OK(run_unary(ctx, op, in, &o));
            assert_shape(o, 3, s);
            double *hi = host(in), *ho = host(o);
            /* SIMD exp/tanh/erf approximations: within ~1e-6 relative of
             * libm; 1e-5 relative + 1e-6 absolute leaves margin */
            for (int64_t i = 0; i < 70; i++)
                near(ho[i], ref_unary(op, hi[i], -2.5), 1e-6, 1e-5, st_op_name(op), i);
            test_free(hi);
            test_free(ho);
        }
    }
}

/* ---- reductions ---------------------------------------------------------------------------- */

static void check_reduce(st_ctx *ctx, const st_tensor *a) {
    double *ha = host(a);
    for (int ax = -1; ax < a->ndim; ax++) {
        for (int keep = 0; keep < 2; keep++) {
            for (int kind = 0; kind < 3; kind++) {
                st_tensor *o;
                if (kind == 0) OK(st_sum(ctx, a, ax, keep, &o));
                else if (kind == 1) OK(st_mean(ctx, a, ax, keep, &o));
                else OK(st_max(ctx, a, ax, keep, &o));
                int axn = ax < 0 ? ax + a->ndim : ax;
                /* expected shape */
                int64_t es[4], ks[4];
                int en = 0;
                for (int d = 0; d < a->ndim; d++) {
                    ks[d] = d == axn ? 1 : a->ne[d];
                    if (d != axn || keep) es[en++] = ks[d];
                }
                if (en == 0) es[en++] = 1;
                assert_shape(o, en, es);
                double *ho = host(o);
                int64_t idx[4];
                for (int64_t f = 0; f < prod(a->ndim, ks); f++) {
                    unravel(f, a->ndim, ks, idx);
                    double s = 0, mx = -INFINITY;
                    for (int64_t i = 0; i < a->ne[axn]; i++) {
                        idx[axn] = i;
                        int64_t fi = 0;
                        for (int d = 0; d < a->ndim; d++) fi = fi * a->ne[d] + idx[d];
                        s += ha[fi];
                        if (ha[fi] > mx) mx = ha[fi];
                    }
                    double want = kind == 0 ? s : kind == 1 ? s / (double)a->ne[axn] : mx;
                    /* f32 accumulation of <= 6 terms in [-1,1): 1e-6 abs */
                    near(ho[f], want, 1e-6, 1e-6, kind == 0 ? "sum" : kind == 1 ? "mean" : "max", f);
                }
                test_free(ho);
            }
        }
    }
    test_free(ha);
}

static void test_reduce(void **state) {
    st_ctx *ctx = *state;
    int64_t s[3] = {3, 4, 5}, s1[1] = {6}, s4[4] = {2, 1, 3, 2};
    check_reduce(ctx, rnd(ctx, 3, s, 21));
    check_reduce(ctx, rnd_t(ctx, 3, s, 22)); /* innermost stride != 4: copied */
    check_reduce(ctx, rnd(ctx, 1, s1, 23));
    check_reduce(ctx, rnd(ctx, 4, s4, 24));
    /* sum_all of contiguous, non-contiguous and expanded inputs */
    st_tensor *inputs[3];
    inputs[0] = rnd(ctx, 3, s, 25);
    inputs[1] = rnd_t(ctx, 3, s, 26);
    int64_t s1x5[2] = {1, 5}, s45[2] = {4, 5};
    OK(st_expand(ctx, rnd(ctx, 2, s1x5, 27), 2, s45, &inputs[2]));
    for (int k = 0; k < 3; k++) {
        st_tensor *o;
        OK(st_sum_all(ctx, inputs[k], &o));
        int64_t one = 1;
        assert_shape(o, 1, &one);
        double *h = host(inputs[k]), want = 0;
        for (int64_t i = 0; i < st_tensor_numel(inputs[k]); i++) want += h[i];
        float got;
        OK(st_tensor_get_f32(o, 0, &got));
        near(got, want, 1e-5, 1e-5, "sum_all", k); /* 60 terms in f32 */
        test_free(h);
    }
    /* sum_to: [2,3,4] -> [3,1] (sum over dim 0 and dim 2) and -> [4] */
    int64_t s234[3] = {2, 3, 4}, s31[2] = {3, 1}, s4b[1] = {4};
    st_tensor *x = rnd(ctx, 3, s234, 28), *o;
    double *hx = host(x);
    OK(st_sum_to(ctx, x, 2, s31, &o));
    assert_shape(o, 2, s31);
    for (int j = 0; j < 3; j++) {
        double want = 0;
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 4; k++) want += hx[i * 12 + j * 4 + k];
        float got;
        OK(st_tensor_get_f32(o, j, &got));
        near(got, want, 1e-6, 1e-6, "sum_to [3,1]", j);
    }
    OK(st_sum_to(ctx, x, 1, s4b, &o));
    assert_shape(o, 1, s4b);
    for (int k = 0; k < 4; k++) {
        double want = 0;
        for (int i = 0; i < 6; i++) want += hx[i * 4 + k];
        float got;
        OK(st_tensor_get_f32(o, k, &got));
        near(got, want, 1e-6, 1e-6, "sum_to [4]", k);
    }
    OK(st_sum_to(ctx, x, 3, s234, &o)); /* same shape: values unchanged */
    expect_values(o, hx, 24, "sum_to identity");
    test_free(hx);
}

/* ---- row ops ------------------------------------------------------------------------------- */

static void test_softmax(void **state) {
    st_ctx *ctx = *state;
    int64_t s[3] = {2, 3, 6};
    st_tensor *inputs[2] = {rnd(ctx, 3, s, 31), rnd_t(ctx, 3, s, 32)};
    for (int k = 0; k < 2; k++) {
        st_tensor *a, *sm, *lsm;
        OK(st_scale(ctx, inputs[k], 4.0f, &a));
        OK(st_softmax(ctx, a, &sm));
        OK(st_log_softmax(ctx, a, &lsm));
        double *ha = host(a), *hs = host(sm), *hl = host(lsm);
        for (int r = 0; r < 6; r++) {
            double mx = -INFINITY, z = 0;
            for (int i = 0; i < 6; i++) mx = fmax(mx, ha[r * 6 + i]);
            for (int i = 0; i < 6; i++) z += exp(ha[r * 6 + i] - mx);
            for (int i = 0; i < 6; i++) {
                double x = ha[r * 6 + i] - mx;
                /* exp approximation + f32 sums: 1e-5 relative */
                near(hs[r * 6 + i], exp(x) / z, 1e-6, 1e-5, "softmax", r * 6 + i);
                near(hl[r * 6 + i], x - log(z), 1e-5, 1e-5, "log_softmax", r * 6 + i);
            }
        }
        test_free(ha);
        test_free(hs);
        test_free(hl);
    }
}

static void ref_norm(bool layer, const double *x, const double *g, const double *b, int64_t n,
                     double eps, double *y) {
    double mean = 0, var = 0;
    if (layer) {
        for (int64_t i = 0; i < n; i++) mean += x[i];
        mean /= (double)n;
    }
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    double r = 1.0 / sqrt(var + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] - mean) * r * (g ? g[i] : 1.0) + (b ? b[i] : 0.0);
}

static void test_norms(void **state) {
    st_ctx *ctx = *state;
    int64_t s[3] = {2, 3, 8}, s8[1] = {8};
    const float eps = 1e-5f;
    st_tensor *xs[2] = {rnd(ctx, 3, s, 41), rnd_t(ctx, 3, s, 42)};
    st_tensor *g = rnd(ctx, 1, s8, 43), *b = rnd(ctx, 1, s8, 44);
    double *hg = host(g), *hb = host(b);
    for (int k = 0; k < 2; k++) {
        double *hx = host(xs[k]);
        for (int variant = 0; variant < 4; variant++) {
            bool layer = variant < 3;
            const st_tensor *gg = (variant == 1 || variant == 2 || variant == 3) ? g : NULL;
            const st_tensor *bb = variant == 2 ? b : NULL;
            st_tensor *o;
            if (layer) OK(st_layernorm(ctx, xs[k], gg, bb, eps, &o));
            else OK(st_rmsnorm(ctx, xs[k], gg, eps, &o));
            assert_shape(o, 3, s);
            double *ho = host(o), y[8];
            for (int r = 0; r < 6; r++) {
                ref_norm(layer, hx + r * 8, gg ? hg : NULL, bb ? hb : NULL, 8, eps, y);
                /* one-pass f32 statistics over 8 values: 1e-5 */
                for (int i = 0; i < 8; i++)
                    near(ho[r * 8 + i], y[i], 1e-5, 1e-5, layer ? "layernorm" : "rmsnorm",
                         r * 8 + i);
            }
            test_free(ho);
        }
        /* rmsnorm without gamma */
        st_tensor *o;
        OK(st_rmsnorm(ctx, xs[k], NULL, eps, &o));
        double *ho = host(o), y[8];
        for (int r = 0; r < 6; r++) {
            ref_norm(false, hx + r * 8, NULL, NULL, 8, eps, y);
            for (int i = 0; i < 8; i++) near(ho[r * 8 + i], y[i], 1e-5, 1e-5, "rmsnorm", r * 8 + i);
        }
        test_free(ho);
        test_free(hx);
    }
    test_free(hg);
    test_free(hb);
}

/* ---- embedding, concat, to_dtype ------------------------------------------------------------ */

static void test_embedding(void **state) {
    st_ctx *ctx = *state;
    int64_t sw[2] = {5, 3};
    st_tensor *w = rnd(ctx, 2, sw, 51), *ids, *o;
    double *hw = host(w);
    int32_t idv[6] = {4, 0, 2, 2, 1, 3};
    int64_t s23[2] = {2, 3};
    OK(st_from_data(ctx, ST_I32, 2, s23, idv, &ids));
    st_tensor *ids_t; /* a transposed (non-contiguous) ids view: [3,2] */
    OK(st_transpose(ctx, ids, 0, 1, &ids_t));
    const st_tensor *cases[2] = {ids, ids_t};
    for (int k = 0; k < 2; k++) {
        OK(st_embedding(ctx, w, cases[k], &o));
        int64_t es[3] = {cases[k]->ne[0], cases[k]->ne[1], 3};
        assert_shape(o, 3, es);
        double *ho = host(o), *hi = host(cases[k]);
        for (int p = 0; p < 6; p++)
            for (int d = 0; d < 3; d++)
                near(ho[p * 3 + d], hw[(int)hi[p] * 3 + d], 0, 0, "embedding", p * 3 + d);
        test_free(ho);
        test_free(hi);
    }
    /* 1-D ids and a non-contiguous weight (a transposed [3,5]) */
    st_tensor *wt = rnd_t(ctx, 2, sw, 52), *ids1;
    int64_t four = 4;
    int32_t id4[4] = {1, 1, 4, 0};
    OK(st_from_data(ctx, ST_I32, 1, &four, id4, &ids1));
    OK(st_embedding(ctx, wt, ids1, &o));
    double *ho = host(o), *hwt = host(wt);
    for (int p = 0; p < 4; p++)
        for (int d = 0; d < 3; d++) near(ho[p * 3 + d], hwt[id4[p] * 3 + d], 0, 0, "emb wt", p);
    test_free(ho);
    test_free(hwt);
    test_free(hw);
}

static void test_concat(void **state) {
    st_ctx *ctx = *state;
    for (int ax = 0; ax < 3; ax++) {
        int64_t sa[3] = {2, 3, 4}, sb[3] = {2, 3, 4}, sc[3] = {2, 3, 4};
        sb[ax] = 1;
        sc[ax] = 3;
        const st_tensor *ts[3] = {rnd(ctx, 3, sa, 61), rnd_t(ctx, 3, sb, 62), rnd(ctx, 3, sc, 63)};
        st_tensor *o;
        OK(st_concat(ctx, ts, 3, ax - 3 * (ax == 2), &o)); /* axis 2 given as -1 */
        int64_t so[3] = {2, 3, 4};
        so[ax] = sa[ax] + sb[ax] + sc[ax];
        assert_shape(o, 3, so);
        double *ho = host(o), *h[3] = {host(ts[0]), host(ts[1]), host(ts[2])};
        int64_t idx[3];
        for (int64_t f = 0; f < prod(3, so); f++) {
            unravel(f, 3, so, idx);
            int which = 0;
            while (idx[ax] >= ts[which]->ne[ax]) idx[ax] -= ts[which++]->ne[ax];
            int64_t fi = (idx[0] * ts[which]->ne[1] + idx[1]) * ts[which]->ne[2] + idx[2];
            near(ho[f], h[which][fi], 0, 0, "concat", f);
        }
        test_free(ho);
        for (int k = 0; k < 3; k++) test_free(h[k]);
    }
    /* bf16 inputs concat as bf16 */
    int64_t s2[1] = {2};
    st_tensor *a, *b, *o;
    OK(st_full(ctx, ST_BF16, 1, s2, 1.0f, &a));
    OK(st_full(ctx, ST_BF16, 1, s2, 2.0f, &b));
    const st_tensor *ts2[2] = {a, b};
    OK(st_concat(ctx, ts2, 2, 0, &o));
    assert_int_equal(o->dtype, ST_BF16);
    double w[4] = {1, 1, 2, 2};
    expect_values(o, w, 4, "concat bf16");
}

static void test_to_dtype(void **state) {
    st_ctx *ctx = *state;
    int64_t s[2] = {3, 5};
    st_tensor *x = rnd_t(ctx, 2, s, 71);
    double *hx = host(x);
    static const st_dtype dts[2] = {ST_BF16, ST_F16};
    for (int k = 0; k < 2; k++) {
        st_tensor *h, *back;
        OK(st_to_dtype(ctx, x, dts[k], &h));
        assert_int_equal(h->dtype, dts[k]);
        assert_true(st_tensor_is_contiguous(h));
        OK(st_to_dtype(ctx, h, ST_F32, &back));
        for (int64_t i = 0; i < 15; i++) {
            float v, f = (float)hx[i];
            OK(st_tensor_get_f32(back, i, &v));
            /* exactly the scalar round-to-nearest-even conversion */
            float want = dts[k] == ST_BF16 ? st_bf16_to_f32(st_f32_to_bf16(f))
                                           : st_f16_to_f32(st_f32_to_f16(f));
            assert_true(v == want);
            near(v, f, 0, 1.0 / 128, "round trip", i); /* bf16: 8 bits of mantissa */
        }
    }
    /* same dtype: a contiguous copy, any dtype */
    int32_t iv[3] = {1, -5, 9};
    int64_t three = 3;
    st_tensor *i32, *c;
    OK(st_from_data(ctx, ST_I32, 1, &three, iv, &i32));
    OK(st_to_dtype(ctx, i32, ST_I32, &c));
    assert_memory_equal(c->data, iv, sizeof iv);
    assert_true(c->data != i32->data);
    test_free(hx);
}

/* ---- matmul -------------------------------------------------------------------------------- */

static void ref_matmul(const st_tensor *a, const st_tensor *b, const st_tensor *o, double atol,
                       const char *what) {
    double *ha = host(a), *hb = host(b), *ho = host(o);
    /* promoted shapes */
    int64_t ash[4], bsh[4];
    int an = a->ndim, bn = b->ndim;
    if (an == 1) { ash[0] = 1; ash[1] = a->ne[0]; an = 2; } else memcpy(ash, a->ne, sizeof ash);
    if (bn == 1) { bsh[0] = b->ne[0]; bsh[1] = 1; bn = 2; } else memcpy(bsh, b->ne, sizeof bsh);
    int64_t M = ash[an - 2], K = ash[an - 1], N = bsh[bn - 1];
    int nbat = (an > bn ? an : bn) - 2;
    int64_t bat[2] = {1, 1};
    for (int i = 0; i < nbat; i++) {
        int ai = i - (nbat - (an - 2)), bi = i - (nbat - (bn - 2));
        int64_t da = ai >= 0 ? ash[ai] : 1, db = bi >= 0 ? bsh[bi] : 1;
        bat[i] = da > db ? da : db;
    }
    int64_t nb = bat[0] * bat[1];
    assert_int_equal(st_tensor_numel(o), nb * M * N);
    for (int64_t bb = 0; bb < nb; bb++) {
        int64_t bidx_[2];
        if (nbat == 2) { bidx_[0] = bb / bat[1]; bidx_[1] = bb % bat[1]; }
        else bidx_[0] = bb;
        int64_t aoff = bidx(nbat, bidx_, an - 2, ash) * M * K;
        int64_t boff = bidx(nbat, bidx_, bn - 2, bsh) * K * N;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += ha[aoff + m * K + k] * hb[boff + k * N + n];
                near(ho[(bb * M + m) * N + n], s, atol, 1e-5, what, (bb * M + m) * N + n);
            }
    }
    test_free(ha);
    test_free(hb);
    test_free(ho);
}

static void test_matmul(void **state) {
    st_ctx *ctx = *state;
    static const struct { int na; int64_t a[4]; int nb; int64_t b[4]; int no; int64_t o[4]; } cases[] = {
        {2, {3, 4}, 2, {4, 5}, 2, {3, 5}},
        {3, {2, 3, 4}, 3, {2, 4, 5}, 3, {2, 3, 5}},
        {3, {2, 3, 4}, 2, {4, 5}, 3, {2, 3, 5}},
        {2, {3, 4}, 3, {2, 4, 5}, 3, {2, 3, 5}},
        {4, {2, 1, 3, 4}, 3, {3, 4, 2}, 4, {2, 3, 3, 2}},
        {1, {4}, 2, {4, 5}, 1, {5}},
        {2, {3, 4}, 1, {4}, 1, {3}},
        {1, {4}, 1, {4}, 1, {1}},
        {1, {4}, 3, {2, 4, 5}, 2, {2, 5}},
        {2, {1, 7}, 2, {7, 1}, 2, {1, 1}},
        {2, {3, 0}, 2, {0, 2}, 2, {3, 2}}, /* K = 0: zeros */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int layout = 0; layout < 2; layout++) {
            /* layout 1: both operands transposed views (where 2-D or more) */
            st_tensor *a = layout && cases[c].na >= 2 ? rnd_t(ctx, cases[c].na, cases[c].a, 81)
                                                      : rnd(ctx, cases[c].na, cases[c].a, 81);
            st_tensor *b = layout && cases[c].nb >= 2 ? rnd_t(ctx, cases[c].nb, cases[c].b, 82)
                                                      : rnd(ctx, cases[c].nb, cases[c].b, 82);
            st_tensor *o;
            OK(st_matmul(ctx, a, b, &o));
            assert_shape(o, cases[c].no, cases[c].o);
            /* f32 sums of <= 7 products in [-1,1): 1e-5 */
            ref_matmul(a, b, o, 1e-5, "matmul f32");
            /* bf16: reference from the bf16-rounded inputs; f32 accumulation */
            st_tensor *ah, *bh;
            OK(st_to_dtype(ctx, a, ST_BF16, &ah));
            OK(st_to_dtype(ctx, b, ST_BF16, &bh));
            OK(st_matmul(ctx, ah, bh, &o));
            ref_matmul(ah, bh, o, 1e-4, "matmul bf16");
        }
    }
    /* operands with a row stride (a column slice) and with a gap (a step-2
     * slice along the last dim, copied before BLAS) */
    int64_t s48[2] = {4, 8}, s83[2] = {8, 3};
    st_tensor *big = rnd(ctx, 2, s48, 83), *a1, *a2, *b = rnd(ctx, 2, s83, 84), *b2, *o;
    OK(st_slice(ctx, big, 1, 2, 6, 1, &a1)); /* [4,4], row stride 32 bytes */
    OK(st_slice(ctx, b, 0, 0, 8, 2, &b2));   /* [4,3] */
    OK(st_matmul(ctx, a1, b2, &o));
    ref_matmul(a1, b2, o, 1e-5, "matmul strided");
    OK(st_slice(ctx, big, 1, 0, 8, 2, &a2)); /* [4,4], column stride 8 bytes */
    OK(st_matmul(ctx, a2, b2, &o));
    ref_matmul(a2, b2, o, 1e-5, "matmul gapped");

    /* st__matmul_into: exact shape, accumulate, and a batch reduction */
    int64_t s234[3] = {2, 3, 4}, s45[2] = {4, 5}, s35[2] = {3, 5};
    st_tensor *x = rnd(ctx, 3, s234, 85), *w = rnd(ctx, 2, s45, 86), *full, *dst;
    OK(st_matmul(ctx, x, w, &full));
    OK(st_tensor_new(ctx, ST_F32, 2, s35, &dst));
    OK(st_fill_(dst, 1.0f));
    OK(st__matmul_into(ctx, x, w, dst, true)); /* dst = 1 + sum over batch */
    double *hf = host(full), *hd = host(dst);
    for (int i = 0; i < 15; i++) near(hd[i], 1.0 + hf[i] + hf[15 + i], 1e-5, 1e-5, "into", i);
    test_free(hd);
    OK(st__matmul_into(ctx, x, w, dst, false));
    hd = host(dst);
    for (int i = 0; i < 15; i++) near(hd[i], hf[i] + hf[15 + i], 1e-5, 1e-5, "into", i);
    test_free(hd);
    test_free(hf);
    st_tensor_free(dst);
    int64_t s53[2] = {5, 3};
    st_tensor *pt, *ptv; /* non-contiguous dst: a transposed persistent [5,3] */
    OK(st_tensor_new(ctx, ST_F32, 2, s53, &pt));
    OK(st_transpose(ctx, pt, 0, 1, &ptv));
    st_tensor *x2 = rnd(ctx, 2, (int64_t[]){3, 4}, 87);
    OK(st__matmul_into(ctx, x2, w, ptv, false));
    OK(st_matmul(ctx, x2, w, &o));
    double *ho = host(o), *hp = host(ptv);
    for (int i = 0; i < 15; i++) near(hp[i], ho[i], 0, 0, "into transposed dst", i);
    test_free(ho);
    test_free(hp);
    st_tensor_free(pt);
}

/* ---- in-place helpers ---------------------------------------------------------------------- */

static void test_inplace(void **state) {
    st_ctx *ctx = *state;
    int64_t s34[2] = {3, 4}, s4[1] = {4};
    st_tensor *p, *pt;
    OK(st_tensor_new(ctx, ST_F32, 2, s34, &p));
    OK(st_transpose(ctx, p, 0, 1, &pt)); /* [4,3] non-contiguous */
    OK(st_fill_(pt, 2.0f));
    for (int i = 0; i < 12; i++) assert_true(((float *)p->data)[i] == 2.0f);
    /* copy_: broadcast [4] row into [3,4], then into bf16 with conversion */
    st_tensor *row = rnd(ctx, 1, s4, 91);
    OK(st_copy_(p, row));
    double *hr = host(row), *hp = host(p);
    for (int i = 0; i < 12; i++) near(hp[i], hr[i % 4], 0, 0, "copy_ broadcast", i);
    test_free(hp);
    st_tensor *hb;
    OK(st_zeros(ctx, ST_BF16, 2, s34, &hb));
    OK(st_copy_(hb, p));
    for (int i = 0; i < 12; i++) {
        float v;
        OK(st_tensor_get_f32(hb, i, &v));
        assert_true(v == st_bf16_to_f32(st_f32_to_bf16((float)hr[i % 4])));
    }
    /* axpy_: p += 0.5 * row (broadcast), into the transposed view too */
    OK(st_axpy_(p, 0.5f, row));
    hp = host(p);
    for (int i = 0; i < 12; i++) near(hp[i], 1.5 * hr[i % 4], 1e-6, 1e-6, "axpy_", i);
    test_free(hp);
    int64_t s3[1] = {3};
    st_tensor *col = rnd(ctx, 1, s3, 92);
    double *hc = host(col);
    OK(st_axpy_(pt, -1.0f, col)); /* pt[i][j] -= col[j], i.e. p[j][i] -= col[j] */
    hp = host(p);
    for (int i = 0; i < 12; i++)
        near(hp[i], 1.5 * hr[i % 4] - hc[i / 4], 1e-6, 1e-6, "axpy_ transposed", i);
    test_free(hp);
    /* scale_ on the non-contiguous view */
    OK(st_scale_(pt, -2.0f));
    hp = host(p);
    for (int i = 0; i < 12; i++)
        near(hp[i], -2.0 * (1.5 * hr[i % 4] - hc[i / 4]), 1e-6, 1e-6, "scale_", i);
    test_free(hp);
    test_free(hc);
    test_free(hr);
    st_tensor_free(p);
}

/* ---- backward helpers ----------------------------------------------------------------------- */

static void test_backward_helpers(void **state) {
    st_ctx *ctx = *state;
    int64_t s[2] = {3, 6}, s6[1] = {6};
    st_tensor *x = rnd(ctx, 2, s, 101), *dy = rnd_t(ctx, 2, s, 102), *dx, *y;
    double *hx = host(x), *hdy = host(dy);
    /* unary: tanh (with and without y), relu, exp */
    static const st_op ops[3] = {ST_OP_TANH, ST_OP_RELU, ST_OP_EXP};
    for (int k = 0; k < 3; k++) {
        OK(run_unary(ctx, ops[k], x, &y));
        for (int with_y = 0; with_y < 2; with_y++) {
            OK(st__unary_backward(ctx, ops[k], x, with_y ? y : NULL, dy, &dx));
            double *h = host(dx);
            for (int i = 0; i < 18; i++) {
                double d = ops[k] == ST_OP_TANH ? 1 - tanh(hx[i]) * tanh(hx[i])
                           : ops[k] == ST_OP_RELU ? (hx[i] > 0)
                                                  : exp(hx[i]);
                near(h[i], d * hdy[i], 1e-5, 1e-5, st_op_name(ops[k]), i);
            }
            test_free(h);
        }
    }
    /* softmax / log_softmax backward */
    for (int lg = 0; lg < 2; lg++) {
        if (lg) OK(st_log_softmax(ctx, x, &y));
        else OK(st_softmax(ctx, x, &y));
        OK(st__softmax_backward(ctx, y, dy, lg, &dx));
        double *hy = host(y), *h = host(dx);
        for (int r = 0; r < 3; r++) {
            double dot = 0, sdy = 0;
            for (int i = 0; i < 6; i++) {
                dot += hdy[r * 6 + i] * hy[r * 6 + i];
                sdy += hdy[r * 6 + i];
            }
            for (int i = 0; i < 6; i++) {
                int j = r * 6 + i;
                double want = lg ? hdy[j] - exp(hy[j]) * sdy : hy[j] * (hdy[j] - dot);
                near(h[j], want, 1e-5, 1e-5, lg ? "log_softmax_bw" : "softmax_bw", j);
            }
        }
        test_free(hy);
        test_free(h);
    }
    /* max backward: dy goes to the first maximum of each row (keepdim and not) */
    for (int keep = 0; keep < 2; keep++) {
        st_tensor *m, *dm;
        OK(st_max(ctx, x, 1, keep, &m));
        int64_t s3[2] = {3, 1};
        dm = rnd(ctx, keep ? 2 : 1, s3, 103);
        OK(st__max_backward(ctx, x, m, dm, -1, &dx));
        double *h = host(dx), *hdm = host(dm);
        for (int r = 0; r < 3; r++) {
            int arg = 0;
            for (int i = 1; i < 6; i++)
                if (hx[r * 6 + i] > hx[r * 6 + arg]) arg = i;
            for (int i = 0; i < 6; i++)
                near(h[r * 6 + i], i == arg ? hdm[r] : 0.0, 0, 0, "max_bw", r * 6 + i);
        }
        test_free(h);
        test_free(hdm);
    }
    /* layernorm / rmsnorm backward against central differences of the
     * double reference: L = sum(dy * norm(x)), h = 1e-5 in double */
    st_tensor *g = rnd(ctx, 1, s6, 104);
    double *hg = host(g);
    for (int layer = 0; layer < 2; layer++) {
        st_tensor *dg, *db = NULL;
        OK(st_tensor_new(ctx, ST_F32, 1, s6, &dg));
        OK(st_fill_(dg, 0.25f)); /* accumulated into: starts at 0.25 */
        if (layer) OK(st_tensor_new(ctx, ST_F32, 1, s6, &db));
        if (layer) OK(st__layernorm_backward(ctx, x, g, dy, 1e-5f, &dx, dg, db));
        else OK(st__rmsnorm_backward(ctx, x, g, dy, 1e-5f, &dx, dg));
        double *h = host(dx), *hdg = host(dg), *hdb = layer ? host(db) : NULL;
        double wdg[6] = {0}, wdb[6] = {0};
        for (int r = 0; r < 3; r++) {
            double xr[6], yp[6], ym[6], y0[6];
            memcpy(xr, hx + r * 6, sizeof xr);
            ref_norm(layer, xr, NULL, NULL, 6, 1e-5, y0);
            for (int i = 0; i < 6; i++) {
                wdg[i] += hdy[r * 6 + i] * y0[i];
                wdb[i] += hdy[r * 6 + i];
            }
            for (int i = 0; i < 6; i++) {
                double keepv = xr[i];
                xr[i] = keepv + 1e-5;
                ref_norm(layer, xr, hg, NULL, 6, 1e-5, yp);
                xr[i] = keepv - 1e-5;
                ref_norm(layer, xr, hg, NULL, 6, 1e-5, ym);
                xr[i] = keepv;
                double num = 0;
                for (int j = 0; j < 6; j++) num += hdy[r * 6 + j] * (yp[j] - ym[j]) / 2e-5;
                /* f32 analytic vs double numeric: 1e-4 */
                near(h[r * 6 + i], num, 1e-4, 1e-4, layer ? "layernorm_bw dx" : "rmsnorm_bw dx",
                     r * 6 + i);
            }
        }
        for (int i = 0; i < 6; i++) {
            near(hdg[i], 0.25 + wdg[i], 1e-5, 1e-5, "dgamma", i);
            if (layer) near(hdb[i], wdb[i], 1e-5, 1e-5, "dbeta", i);
        }
        test_free(h);
        test_free(hdg);
        if (hdb) test_free(hdb);
        st_tensor_free(dg);
        st_tensor_free(db);
    }
    test_free(hg);
    /* embedding backward: scatter-add of dy rows into dweight */
    int64_t sw[2] = {4, 6};
    int32_t idv[3] = {2, 0, 2};
    int64_t three = 3;
    st_tensor *ids, *dw;
    OK(st_from_data(ctx, ST_I32, 1, &three, idv, &ids));
    OK(st_tensor_new(ctx, ST_F32, 2, sw, &dw));
    OK(st__embedding_backward(ctx, dy, ids, dw));
    double *hw = host(dw);
    for (int v = 0; v < 4; v++)
        for (int d = 0; d < 6; d++) {
            double want = 0;
            for (int p = 0; p < 3; p++)
                if (idv[p] == v) want += hdy[p * 6 + d];
            near(hw[v * 6 + d], want, 1e-6, 1e-6, "embedding_bw", v * 6 + d);
        }
    test_free(hw);
    st_tensor_free(dw);
    test_free(hx);
    test_free(hdy);
}

/* ---- the recorder ---------------------------------------------------------------------------- */

typedef struct rec_log {
    int n;
    st_op ops[32];
    int n_src[32];
    st_op_params p[32];
    st_status fail_with;
} rec_log;

static st_status recorder(st_ctx *ctx, void *user, const st_op_desc *desc,
                          st_tensor *const *srcs, int n_src, st_tensor *out) {
    (void)ctx;
    rec_log *l = user;
    assert_true(out->requires_grad);
    assert_true(desc->n_dst == 1 && desc->dst[0].data == out->data);
    for (int i = 0; i < desc->n_src; i++)
        if (srcs[i]) assert_ptr_equal(desc->src[i].data, srcs[i]->data);
    if (l->n < 32) {
        l->ops[l->n] = desc->op;
        l->n_src[l->n] = n_src;
        l->p[l->n] = desc->p;
    }
    l->n++;
    if (l->fail_with != ST_OK) return st__fail(l->fail_with, "recorder: told to fail");
    return ST_OK;
}

static void test_recorder(void **state) {
    st_ctx *ctx = *state;
    rec_log log;
    memset(&log, 0, sizeof log);
    st_ctx_set_recorder(ctx, recorder, &log);
    int64_t s[2] = {3, 4}, s4[1] = {4};
    st_tensor *w, *c = rnd(ctx, 2, s, 111), *t, *u;
    OK(st_tensor_new(ctx, ST_F32, 2, s, &w));
    /* nothing requires grad: nothing recorded */
    OK(st_add(ctx, w, c, &t));
    assert_int_equal(log.n, 0);
    assert_false(t->requires_grad);
    w->requires_grad = true;
    OK(st_add(ctx, c, w, &t));                        /* 0 ADD */
    assert_true(t->requires_grad);
    OK(st_sum(ctx, t, 1, true, &u));                  /* 1 SUM keepdim */
    OK(st_mean(ctx, t, 0, false, &u));                /* 2 MEAN */
    OK(st_transpose(ctx, t, 0, 1, &u));               /* 3 PERMUTE */
    OK(st_slice(ctx, t, 1, -3, 4, 2, &u));            /* 4 SLICE */
    int64_t sh[1] = {12};
    OK(st_reshape(ctx, t, 1, sh, &u));                /* 5 RESHAPE */
    OK(st_contiguous(ctx, t, &u));                    /* 6 CONTIGUOUS (a view) */
    int64_t se[3] = {2, 3, 4};
    OK(st_expand(ctx, t, 3, se, &u));                 /* 7 EXPAND */
    const st_tensor *ts[2] = {c, t};
    OK(st_concat(ctx, ts, 2, 0, &u));                 /* 8 CONCAT */
    OK(st_to_dtype(ctx, t, ST_BF16, &u));             /* 9 TO_DTYPE */
    st_tensor *g = rnd(ctx, 1, s4, 112);
    OK(st_layernorm(ctx, t, NULL, g, 1e-5f, &u));     /* 10 LAYERNORM (gamma absent) */
    OK(st_scale(ctx, t, 3.0f, &u));                   /* 11 SCALE */
    st_tensor *wt;
    OK(st_transpose(ctx, w, 0, 1, &wt));              /* 12 PERMUTE */
    OK(st_matmul(ctx, c, wt, &u));                    /* 13 MATMUL */
    static const st_op want[14] = {
        ST_OP_ADD, ST_OP_SUM, ST_OP_MEAN, ST_OP_PERMUTE, ST_OP_SLICE, ST_OP_RESHAPE,
        ST_OP_CONTIGUOUS, ST_OP_EXPAND, ST_OP_CONCAT, ST_OP_TO_DTYPE, ST_OP_LAYERNORM,
        ST_OP_SCALE, ST_OP_PERMUTE, ST_OP_MATMUL};
    assert_int_equal(log.n, 14);
    for (int i = 0; i < 14; i++) assert_int_equal(log.ops[i], want[i]);
    assert_int_equal(log.p[1].axis, 1);
    assert_true(log.p[1].keepdim);
    assert_false(log.p[2].keepdim);
    assert_int_equal(log.p[3].perm[0], 1);
    assert_int_equal(log.p[4].start, 1);
    assert_int_equal(log.p[4].stop, 4);
    assert_int_equal(log.p[4].step, 2);
    assert_int_equal(log.n_src[8], 2);
    assert_int_equal(log.n_src[10], 3);
    assert_true(log.p[11].alpha == 3.0f);
    /* grad mode off: nothing recorded, nothing marked */
    st_ctx_set_grad_enabled(ctx, false);
    OK(st_mul(ctx, w, w, &u));
    assert_false(u->requires_grad);
    assert_int_equal(log.n, 14);
    st_ctx_set_grad_enabled(ctx, true);
    /* a failing recorder fails the op with its status */
    log.fail_with = ST_ERR_NOMEM;
    assert_int_equal(st_exp(ctx, w, &u), ST_ERR_NOMEM);
    assert_null(u);
    st_ctx_set_recorder(ctx, NULL, NULL);
    st_tensor_free(w);
}

/* ---- the extension slot and reading the recorder back ------------------------------------------ */

/* Counts frees per ext object; the objects are caller-owned ints, so a
 * double free shows as a count of 2 and a missed one as 0. */
static int g_ext_freed[4];
static void ext_free(void *ext) { g_ext_freed[(int *)ext - g_ext_freed]++; }

static void test_ctx_ext(void **state) {
    st_ctx *ctx = *state;
    memset(g_ext_freed, 0, sizeof g_ext_freed);
    /* empty slot, no recorder */
    assert_null(st_ctx_get_ext(ctx));
    void *user = (void *)&user;
    assert_null(st_ctx_get_recorder(ctx, &user));
    assert_null(user);
    assert_null(st_ctx_get_recorder(ctx, NULL));
    assert_null(st_ctx_get_recorder(NULL, &user));
    assert_null(st_ctx_get_ext(NULL));

    /* get_recorder round trip, replacement and removal */
    rec_log log;
    memset(&log, 0, sizeof log);
    st_ctx_set_recorder(ctx, recorder, &log);
    assert_ptr_equal(st_ctx_get_recorder(ctx, &user), recorder);
    assert_ptr_equal(user, &log);
    st_ctx_set_recorder(ctx, NULL, NULL);
    assert_null(st_ctx_get_recorder(ctx, &user));
    assert_null(user);

    /* set, read back, replace: the old one is freed once, the new one not */
    OK(st_ctx_set_ext(ctx, &g_ext_freed[0], ext_free));
    assert_ptr_equal(st_ctx_get_ext(ctx), &g_ext_freed[0]);
    OK(st_ctx_set_ext(ctx, &g_ext_freed[0], ext_free)); /* the same pointer: not freed */
    assert_int_equal(g_ext_freed[0], 0);
    OK(st_ctx_set_ext(ctx, &g_ext_freed[1], ext_free));
    assert_int_equal(g_ext_freed[0], 1);
    assert_int_equal(g_ext_freed[1], 0);
    assert_ptr_equal(st_ctx_get_ext(ctx), &g_ext_freed[1]);
    /* a reset leaves the slot alone */
    st_ctx_reset(ctx);
    assert_ptr_equal(st_ctx_get_ext(ctx), &g_ext_freed[1]);
    assert_int_equal(g_ext_freed[1], 0);
    /* emptying the slot frees its content */
    OK(st_ctx_set_ext(ctx, NULL, NULL));
    assert_int_equal(g_ext_freed[1], 1);
    assert_null(st_ctx_get_ext(ctx));
    /* a borrowed ext (free_fn NULL) is never freed */
    OK(st_ctx_set_ext(ctx, &g_ext_freed[2], NULL));
    OK(st_ctx_set_ext(ctx, NULL, NULL));
    assert_int_equal(g_ext_freed[2], 0);
    /* ctx NULL: refused, nothing freed or taken */
    assert_int_equal(st_ctx_set_ext(NULL, &g_ext_freed[2], ext_free), ST_ERR_INVALID_ARG);
    assert_true(st_last_error()[0] != '\0');
    assert_int_equal(g_ext_freed[2], 0);

    /* st_ctx_free frees the slot's content exactly once (with a step tensor
     * and a recorder still in place) */
    st_ctx *c2 = NULL;
    OK(st_ctx_new(NULL, &c2));
    OK(st_ctx_set_ext(c2, &g_ext_freed[3], ext_free));
    st_ctx_set_recorder(c2, recorder, &log);
    int64_t s[1] = {4};
    st_tensor *t = NULL;
    OK(st_zeros(c2, ST_F32, 1, s, &t));
    st_ctx_free(c2);
    assert_int_equal(g_ext_freed[3], 1);
    assert_int_equal(g_ext_freed[0], 1);
    assert_int_equal(g_ext_freed[1], 1);
    assert_int_equal(g_ext_freed[2], 0);
}

/* ---- bad inputs ------------------------------------------------------------------------------- */

typedef struct bad_fix {
    st_ctx *ctx, *other;
    st_tensor *a23, *b43, *h23, *i23, *p8, *t, *o;
} bad_fix;

typedef st_status (*bad_fn)(bad_fix *f);

static st_status bad_shape_mismatch(bad_fix *f) { return st_add(f->ctx, f->a23, f->b43, &f->o); }
static st_status bad_dtype_mismatch(bad_fix *f) { return st_mul(f->ctx, f->a23, f->h23, &f->o); }
static st_status bad_axis(bad_fix *f) { return st_sum(f->ctx, f->a23, 2, false, &f->o); }
static st_status bad_axis_neg(bad_fix *f) { return st_max(f->ctx, f->a23, -3, true, &f->o); }
static st_status bad_view_past(bad_fix *f) {
    int64_t sh[2] = {3, 3}, nb[2] = {12, 4};
    return st_view_of(f->ctx, f->p8, 2, sh, nb, 0, &f->o);
}
static st_status bad_view_offset(bad_fix *f) {
    int64_t sh[1] = {2}, nb[1] = {4};
    return st_view_of(f->ctx, f->p8, 1, sh, nb, 28, &f->o);
}
static st_status bad_null_a(bad_fix *f) { return st_exp(f->ctx, NULL, &f->o); }
static st_status bad_null_out(bad_fix *f) { return st_add(f->ctx, f->a23, f->a23, NULL); }
static st_status bad_null_ctx(bad_fix *f) { return st_neg(NULL, f->a23, &f->o); }
static st_status bad_null_shape(bad_fix *f) { return st_zeros(f->ctx, ST_F32, 2, NULL, &f->o); }
static st_status bad_emb_range(bad_fix *f) { return st_embedding(f->ctx, f->b43, f->i23, &f->o); }
static st_status bad_emb_neg(bad_fix *f) {
    int32_t v[2] = {0, -1};
    int64_t two = 2;
    st_tensor *ids;
    st_status s = st_from_data(f->ctx, ST_I32, 1, &two, v, &ids);
    return s ? s : st_embedding(f->ctx, f->b43, ids, &f->o);
}
static st_status bad_emb_dtype(bad_fix *f) { return st_embedding(f->ctx, f->b43, f->a23, &f->o); }
static st_status bad_reshape_strides(bad_fix *f) {
    int64_t six = 6;
    st_tensor *tt;
    st_status s = st_transpose(f->ctx, f->a23, 0, 1, &tt);
    return s ? s : st_reshape(f->ctx, tt, 1, &six, &f->o);
}
static st_status bad_reshape_numel(bad_fix *f) {
    int64_t sh[2] = {4, 2};
    return st_reshape(f->ctx, f->a23, 2, sh, &f->o);
}
static st_status bad_reshape_two_infer(bad_fix *f) {
    int64_t sh[2] = {-1, -1};
    return st_reshape(f->ctx, f->a23, 2, sh, &f->o);
}
static st_status bad_ndim0(bad_fix *f) {
    int64_t sh[1] = {1};
    return st_tensor_new(f->ctx, ST_F32, 0, sh, &f->t);
}
static st_status bad_ndim5(bad_fix *f) {
    int64_t sh[5] = {1, 1, 1, 1, 1};
    return st_tensor_new(f->ctx, ST_F32, 5, sh, &f->t);
}
static st_status bad_negative_dim(bad_fix *f) {
    int64_t sh[2] = {3, -2};
    return st_zeros(f->ctx, ST_F32, 2, sh, &f->o);
}
static st_status bad_overflow(bad_fix *f) {
    int64_t sh[3] = {(int64_t)1 << 40, (int64_t)1 << 40, (int64_t)1 << 40};
    return st_tensor_new(f->ctx, ST_F32, 3, sh, &f->t);
}
static st_status bad_overflow_bytes(bad_fix *f) {
    int64_t sh[2] = {(int64_t)1 << 31, (int64_t)1 << 31}; /* 2^62 elems * 4 bytes */
    return st_zeros(f->ctx, ST_F32, 2, sh, &f->o);
}
static st_status bad_matmul_k(bad_fix *f) { return st_matmul(f->ctx, f->a23, f->a23, &f->o); }
static st_status bad_matmul_dtype(bad_fix *f) { return st_matmul(f->ctx, f->a23, f->h23, &f->o); }
static st_status bad_matmul_f16(bad_fix *f) {
    int64_t sh[2] = {3, 3};
    st_tensor *h;
    st_status s = st_zeros(f->ctx, ST_F16, 2, sh, &h);
    return s ? s : st_matmul(f->ctx, h, h, &f->o);
}
static st_status bad_matmul_batch(bad_fix *f) {
    int64_t sa[3] = {2, 3, 4}, sb[3] = {3, 4, 5};
    st_tensor *a, *b;
    st_status s = st_zeros(f->ctx, ST_F32, 3, sa, &a);
    if (!s) s = st_zeros(f->ctx, ST_F32, 3, sb, &b);
    return s ? s : st_matmul(f->ctx, a, b, &f->o);
}
static st_status bad_other_ctx(bad_fix *f) {
    int64_t sh[2] = {2, 3};
    st_tensor *x;
    st_status s = st_zeros(f->other, ST_F32, 2, sh, &x);
    return s ? s : st_add(f->ctx, f->a23, x, &f->o);
}
static st_status bad_slice_step(bad_fix *f) { return st_slice(f->ctx, f->a23, 0, 0, 2, 0, &f->o); }
static st_status bad_slice_axis(bad_fix *f) { return st_slice(f->ctx, f->a23, 2, 0, 2, 1, &f->o); }
static st_status bad_perm_dup(bad_fix *f) {
    int perm[2] = {0, 0};
    return st_permute(f->ctx, f->a23, perm, &f->o);
}
static st_status bad_perm_range(bad_fix *f) {
    int perm[2] = {0, 2};
    return st_permute(f->ctx, f->a23, perm, &f->o);
}
static st_status bad_expand(bad_fix *f) {
    int64_t sh[2] = {2, 4};
    return st_expand(f->ctx, f->a23, 2, sh, &f->o);
}
static st_status bad_expand_fewer(bad_fix *f) {
    int64_t sh[1] = {3};
    return st_expand(f->ctx, f->a23, 1, sh, &f->o);
}
static st_status bad_get(bad_fix *f) {
    float v;
    return st_tensor_get_f32(f->a23, 6, &v);
}
static st_status bad_set_neg(bad_fix *f) { return st_tensor_set_f32(f->a23, -1, 0.0f); }
static st_status bad_concat_shape(bad_fix *f) {
    const st_tensor *ts[2] = {f->a23, f->b43};
    return st_concat(f->ctx, ts, 2, 1, &f->o);
}
static st_status bad_concat_dtype(bad_fix *f) {
    const st_tensor *ts[2] = {f->a23, f->h23};
    return st_concat(f->ctx, ts, 2, 1, &f->o);
}
static st_status bad_concat_n(bad_fix *f) {
    const st_tensor *ts[1] = {f->a23};
    return st_concat(f->ctx, ts, 0, 0, &f->o);
}
static st_status bad_concat_axis(bad_fix *f) {
    const st_tensor *ts[1] = {f->a23};
    return st_concat(f->ctx, ts, 1, -3, &f->o);
}
static st_status bad_ln_gamma(bad_fix *f) { return st_layernorm(f->ctx, f->a23, f->a23, NULL, 1e-5f, &f->o); }
static st_status bad_rms_eps(bad_fix *f) { return st_rmsnorm(f->ctx, f->a23, NULL, -1.0f, &f->o); }
static st_status bad_to_dtype(bad_fix *f) { return st_to_dtype(f->ctx, f->i23, ST_F32, &f->o); }
static st_status bad_exp_dtype(bad_fix *f) { return st_exp(f->ctx, f->h23, &f->o); }
static st_status bad_max_empty(bad_fix *f) {
    int64_t sh[2] = {2, 0};
    st_tensor *e;
    st_status s = st_zeros(f->ctx, ST_F32, 2, sh, &e);
    return s ? s : st_max(f->ctx, e, 1, false, &f->o);
}
static st_status bad_copy_bcast_dst(bad_fix *f) {
    int64_t sh[2] = {4, 3};
    st_tensor *row, *ex;
    int64_t three = 3;
    st_status s = st_zeros(f->ctx, ST_F32, 1, &three, &row);
    if (!s) s = st_expand(f->ctx, row, 2, sh, &ex);
    return s ? s : st_copy_(ex, f->b43);
}
static st_status bad_copy_shape(bad_fix *f) { return st_copy_(f->a23, f->b43); }
static st_status bad_axpy_dtype(bad_fix *f) { return st_axpy_(f->h23, 1.0f, f->a23); }
static st_status bad_randn_std(bad_fix *f) {
    int64_t sh[1] = {4};
    return st_randn(f->ctx, 1, sh, 1, 0.0f, -1.0f, &f->o);
}
static st_status bad_uniform_i32(bad_fix *f) { return st_uniform_(f->i23, 1, 0.0f, 1.0f); }
static st_status bad_arange_dtype(bad_fix *f) { return st_arange(f->ctx, ST_BF16, 3, 0, 1, &f->o); }
static st_status bad_wrap_null(bad_fix *f) {
    int64_t sh[1] = {4};
    return st_tensor_wrap(f->ctx, ST_F32, 1, sh, NULL, &f->t);
}
static st_status bad_to_f32_n(bad_fix *f) {
    float buf[8];
    return st_tensor_to_f32(f->a23, buf, 8);
}
static st_status bad_sum_to(bad_fix *f) {
    int64_t sh[1] = {2};
    return st_sum_to(f->ctx, f->a23, 1, sh, &f->o);
}
static st_status bad_unary_bw_op(bad_fix *f) {
    return st__unary_backward(f->ctx, ST_OP_ADD, f->a23, NULL, f->a23, &f->o);
}
static st_status bad_max_bw_shape(bad_fix *f) {
    return st__max_backward(f->ctx, f->a23, f->a23, f->a23, 1, &f->o);
}
static st_status bad_matmul_into_shape(bad_fix *f) {
    int64_t sh[2] = {4, 4};
    st_tensor *d, *bt;
    st_status s = st_zeros(f->ctx, ST_F32, 2, sh, &d);
    if (!s) s = st_transpose(f->ctx, f->a23, 0, 1, &bt);
    return s ? s : st__matmul_into(f->ctx, f->a23, bt, d, false);
}
static st_status bad_emb_bw_shape(bad_fix *f) {
    int64_t sh[2] = {5, 4};
    st_tensor *dw;
    st_status s = st_zeros(f->ctx, ST_F32, 2, sh, &dw);
    return s ? s : st__embedding_backward(f->ctx, f->a23, f->i23, dw);
}

static void test_bad_inputs(void **state) {
    bad_fix f;
    memset(&f, 0, sizeof f);
    f.ctx = *state;
    f.other = new_ctx(1);
    int64_t s23[2] = {2, 3}, s43[2] = {4, 3}, s8[1] = {8};
    f.a23 = rnd(f.ctx, 2, s23, 1);
    f.b43 = rnd(f.ctx, 2, s43, 2);
    OK(st_zeros(f.ctx, ST_BF16, 2, s23, &f.h23));
    int32_t ids[6] = {0, 1, 2, 3, 4, 1}; /* 4 is outside [0,4) of b43 */
    OK(st_from_data(f.ctx, ST_I32, 2, s23, ids, &f.i23));
    OK(st_tensor_new(f.ctx, ST_F32, 1, s8, &f.p8));
    static const struct { const char *name; bad_fn fn; st_status want; const char *needle; } cases[] = {
        {"shape mismatch", bad_shape_mismatch, ST_ERR_SHAPE, "[2,3] and [4,3]"},
        {"dtype mismatch", bad_dtype_mismatch, ST_ERR_DTYPE, "bf16"},
        {"axis out of range", bad_axis, ST_ERR_AXIS, "axis 2"},
        {"negative axis out of range", bad_axis_neg, ST_ERR_AXIS, "axis -3"},
        {"view past storage", bad_view_past, ST_ERR_BOUNDS, "storage"},
        {"view offset past storage", bad_view_offset, ST_ERR_BOUNDS, "storage"},
        {"NULL input", bad_null_a, ST_ERR_INVALID_ARG, "NULL"},
        {"NULL out", bad_null_out, ST_ERR_INVALID_ARG, "NULL"},
        {"NULL ctx", bad_null_ctx, ST_ERR_INVALID_ARG, "NULL"},
        {"NULL shape", bad_null_shape, ST_ERR_INVALID_ARG, "NULL"},
        {"embedding id out of range", bad_emb_range, ST_ERR_BOUNDS, NULL},
        {"embedding negative id", bad_emb_neg, ST_ERR_BOUNDS, NULL},
        {"embedding ids dtype", bad_emb_dtype, ST_ERR_DTYPE, "i32"},
        {"reshape impossible", bad_reshape_strides, ST_ERR_SHAPE, "st_contiguous"},
        {"reshape numel", bad_reshape_numel, ST_ERR_SHAPE, "[2,3]"},
        {"reshape two -1", bad_reshape_two_infer, ST_ERR_SHAPE, "-1"},
        {"ndim 0", bad_ndim0, ST_ERR_SHAPE, "ndim"},
        {"ndim 5", bad_ndim5, ST_ERR_SHAPE, "ndim"},
        {"negative dim", bad_negative_dim, ST_ERR_SHAPE, "negative"},
        {"numel overflow", bad_overflow, ST_ERR_SHAPE, "overflow"},
        {"byte overflow", bad_overflow_bytes, ST_ERR_SHAPE, "overflow"},
        {"matmul inner dims", bad_matmul_k, ST_ERR_SHAPE, "inner"},
        {"matmul dtypes", bad_matmul_dtype, ST_ERR_DTYPE, "bf16"},
        {"matmul f16", bad_matmul_f16, ST_ERR_DTYPE, "f16"},
        {"matmul batch", bad_matmul_batch, ST_ERR_SHAPE, "batch"},
        {"other context", bad_other_ctx, ST_ERR_INVALID_ARG, "context"},
        {"slice step 0", bad_slice_step, ST_ERR_INVALID_ARG, "step"},
        {"slice axis", bad_slice_axis, ST_ERR_AXIS, "axis"},
        {"permute duplicate", bad_perm_dup, ST_ERR_INVALID_ARG, "twice"},
        {"permute range", bad_perm_range, ST_ERR_AXIS, "axis"},
        {"expand non-1 dim", bad_expand, ST_ERR_SHAPE, "[2,3]"},
        {"expand fewer dims", bad_expand_fewer, ST_ERR_SHAPE, "dims"},
        {"get past end", bad_get, ST_ERR_BOUNDS, "6"},
        {"set negative", bad_set_neg, ST_ERR_BOUNDS, "-1"},
        {"concat shapes", bad_concat_shape, ST_ERR_SHAPE, "[4,3]"},
        {"concat dtypes", bad_concat_dtype, ST_ERR_DTYPE, "bf16"},
        {"concat n 0", bad_concat_n, ST_ERR_INVALID_ARG, "n"},
        {"concat axis", bad_concat_axis, ST_ERR_AXIS, "axis"},
        {"layernorm gamma shape", bad_ln_gamma, ST_ERR_SHAPE, "gamma"},
        {"rmsnorm eps", bad_rms_eps, ST_ERR_INVALID_ARG, "eps"},
        {"to_dtype i32", bad_to_dtype, ST_ERR_DTYPE, "i32"},
        {"exp of bf16", bad_exp_dtype, ST_ERR_DTYPE, "bf16"},
        {"max of empty axis", bad_max_empty, ST_ERR_SHAPE, "empty"},
        {"copy into broadcast view", bad_copy_bcast_dst, ST_ERR_INVALID_ARG, "stride 0"},
        {"copy shapes", bad_copy_shape, ST_ERR_SHAPE, "broadcast"},
        {"axpy dtype", bad_axpy_dtype, ST_ERR_DTYPE, "bf16"},
        {"randn std", bad_randn_std, ST_ERR_INVALID_ARG, "std"},
        {"uniform_ i32", bad_uniform_i32, ST_ERR_DTYPE, "i32"},
        {"arange dtype", bad_arange_dtype, ST_ERR_DTYPE, "bf16"},
        {"wrap NULL data", bad_wrap_null, ST_ERR_INVALID_ARG, "NULL"},
        {"to_f32 count", bad_to_f32_n, ST_ERR_INVALID_ARG, "8"},
        {"sum_to shape", bad_sum_to, ST_ERR_SHAPE, "broadcast"},
        {"unary_backward op", bad_unary_bw_op, ST_ERR_INVALID_ARG, "unary"},
        {"max_backward shape", bad_max_bw_shape, ST_ERR_SHAPE, "axis"},
        {"matmul_into dst", bad_matmul_into_shape, ST_ERR_SHAPE, "dst"},
        {"embedding_backward shape", bad_emb_bw_shape, ST_ERR_SHAPE, "dweight"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        st_clear_error();
        f.o = NULL;
        f.t = NULL;
        st_status s = cases[c].fn(&f);
        if (s != cases[c].want)
            fail_msg("%s: got %s, want %s (%s)", cases[c].name, st_status_name(s),
                     st_status_name(cases[c].want), st_last_error());
        if (st_last_error()[0] == '\0') fail_msg("%s: empty message", cases[c].name);
        if (cases[c].needle && !strstr(st_last_error(), cases[c].needle))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[c].name, st_last_error(),
                     cases[c].needle);
        if (f.t) fail_msg("%s: out tensor set on failure", cases[c].name);
    }
    st_tensor_free(f.p8);
    st_ctx_free(f.other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ctx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_creation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rng, setup, teardown),
        cmocka_unit_test_setup_teardown(test_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reduce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_softmax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_norms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_embedding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_to_dtype, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matmul, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inplace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backward_helpers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recorder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctx_ext, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_inputs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
