/*
 * test_backend.c — the backend interface and the CPU executor.
 *
 * Every compute op runs on small hand-built views (contiguous, transposed,
 * padded, stepped and stride-0 broadcast layouts) against a naive double
 * reference written here, on every backend the machine supports: each SIMD
 * level x 1, 2 and 3 threads (3 oversubscribes a 2-core machine on purpose).
 * A few larger cases make the executor split work across threads. Then:
 * the SIMD levels against the scalar level, determinism of RNG and
 * gradient accumulations across thread counts, the documented RNG algorithm
 * reproduced independently, and the errors (bounds, unsupported, bad params).
 *
 * Tolerances (|got - ref| <= atol + rtol |ref|) are stated where used; they
 * cover f32 rounding against the double reference plus the vector kernels'
 * polynomial approximations (a few ulp).
 */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
// clang-format on

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/backend.h"
#include "strata/hw.h"

/* ---- backends under test ----------------------------------------------------------- */

#define MAX_BE 16
static st_backend *g_be[MAX_BE];
static int g_nbe;
static st_backend *g_scalar; /* scalar level, 1 thread: the reference of the level test */

static int setup_backends(void **state) {
    (void)state;
    st_hw_info info;
    if (st_hw_query(&info) != ST_OK) return -1;
    static const int threads[] = {1, 2, 3};
    for (int level = 0; level < ST_SIMD_COUNT_; level++) {
        if (!st_hw_simd_supported(&info, (st_simd_level)level)) continue;
        for (int t = 0; t < 3; t++) {
            st_backend_cpu_params p = st_backend_cpu_default_params();
            p.n_threads = threads[t];
            p.simd_level = level;
            st_backend *be = NULL;
            if (st_backend_cpu_new(&p, &be) != ST_OK) {
                fprintf(stderr, "backend level %d threads %d: %s\n", level, threads[t],
                        st_last_error());
                return -1;
            }
            g_be[g_nbe++] = be;
            if (level == ST_SIMD_SCALAR && t == 0) g_scalar = be;
        }
    }
    return g_scalar ? 0 : -1;
}

static int teardown_backends(void **state) {
    (void)state;
    for (int i = 0; i < g_nbe; i++)
        st_backend_free(g_be[i]);
    g_nbe = 0;
    return 0;
}

static const char *be_label(st_backend *be) {
    static char buf[64];
    snprintf(buf, sizeof buf, "%s/%d threads",
             st_hw_simd_level_name((st_simd_level)st_backend_cpu_simd_level(be)),
             st_backend_n_threads(be));
    return buf;
}

/* ---- random numbers for inputs -------------------------------------------------------- */

static uint64_t g_seed = 0x1234567ull;
static double frand(double lo, double hi) {
    g_seed = g_seed * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (double)(g_seed >> 11) * 0x1p-53;
}

/* ---- test views: a view plus the memory it lives in --------------------------------------- */

typedef struct tv {
    st_view v;
    void *mem;
} tv;

/* A view of logical shape ne stored with its dims in `order` (outermost
 * first; NULL = identity), `pad` extra elements after each storage row of
 * every outer dim, and innermost storage stride `step` elements. */
static tv tv_new(st_dtype dt, int nd, const int64_t *ne, const int *order, int pad, int step) {
    tv t;
    memset(&t, 0, sizeof t);
    t.v.dtype = dt;
    t.v.ndim = nd;
    int64_t es = (int64_t)st_dtype_size(dt), stride = step;
    for (int k = nd - 1; k >= 0; k--) {
        int d = order ? order[k] : k;
        t.v.ne[d] = ne[d];
        t.v.nb[d] = stride * es;
        stride = stride * ne[d] + pad;
    }
    t.mem = calloc((size_t)stride + 16, (size_t)es);
    t.v.data = t.mem;
    return t;
}

static tv tv_c(st_dtype dt, int nd, const int64_t *ne) {
    return tv_new(dt, nd, ne, NULL, 0, 1);
}
static void tv_free(tv *t) {
    free(t->mem);
}

/* Makes dim d (of size 1) a broadcast of n elements (stride 0). */
static void tv_bcast(tv *t, int d, int64_t n) {
    assert_int_equal(t->v.ne[d], 1);
    t->v.ne[d] = n;
    t->v.nb[d] = 0;
}

static char *tv_at(const tv *t, int64_t i) {
    int64_t off = 0;
    for (int d = t->v.ndim - 1; d >= 0; d--) {
        off += (i % t->v.ne[d]) * t->v.nb[d];
        i /= t->v.ne[d];
    }
    return (char *)t->v.data + off;
}

static double tv_get(const tv *t, int64_t i) {
    const char *p = tv_at(t, i);
    switch (t->v.dtype) {
    case ST_F32:
        return *(const float *)p;
    case ST_BF16:
        return st_bf16_to_f32(*(const uint16_t *)p);
    case ST_F16:
        return st_f16_to_f32(*(const uint16_t *)p);
    case ST_I32:
        return *(const int32_t *)p;
    default:
        return *(const int8_t *)p;
    }
}

static void tv_set(tv *t, int64_t i, double v) {
    char *p = tv_at(t, i);
    switch (t->v.dtype) {
    case ST_F32:
        *(float *)p = (float)v;
        break;
    case ST_BF16:
        *(uint16_t *)p = st_f32_to_bf16((float)v);
        break;
    case ST_F16:
        *(uint16_t *)p = st_f32_to_f16((float)v);
        break;
    case ST_I32:
        *(int32_t *)p = (int32_t)v;
        break;
    default:
        *(int8_t *)p = (int8_t)v;
        break;
    }
}

static int64_t tv_n(const tv *t) {
    return st_view_numel(&t->v);
}

static void tv_rand(tv *t, double lo, double hi) {
    for (int64_t i = 0; i < tv_n(t); i++)
        tv_set(t, i, frand(lo, hi));
}

static void tv_fill(tv *t, double v) {
    for (int64_t i = 0; i < tv_n(t); i++)
        tv_set(t, i, v);
}

/* |got - ref| <= atol + rtol |ref| for every element (infinities must match). */
static void check_close(const char *what, st_backend *be, const tv *got, const double *ref,
                        double atol, double rtol) {
    for (int64_t i = 0; i < tv_n(got); i++) {
        double g = tv_get(got, i), r = ref[i];
        bool ok = isinf(r) ? g == r : fabs(g - r) <= atol + rtol * fabs(r);
        if (!ok)
            fail_msg("%s on %s: element %lld: got %.9g, want %.9g", what, be_label(be),
                     (long long)i, g, r);
    }
}

static void expect_ok(st_backend *be, const st_op_desc *d) {
    st_status s = st_backend_compute(be, d);
    if (s != ST_OK)
        fail_msg("%s on %s: %s: %s", st_op_name(d->op), be_label(be), st_status_name(s),
                 st_last_error());
}

static st_op_desc desc1(st_op op, int n_src, int n_dst) {
    st_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = op;
    d.n_src = n_src;
    d.n_dst = n_dst;
    return d;
}

/* ---- dtype helpers and names --------------------------------------------------------- */

static void test_dtypes_and_names(void **state) {
    (void)state;
    static const struct {
        st_dtype t;
        size_t size;
        const char *name;
    } dts[] = {{ST_F32, 4, "f32"}, {ST_BF16, 2, "bf16"}, {ST_F16, 2, "f16"},
               {ST_I32, 4, "i32"}, {ST_I8, 1, "i8"},     {ST_DTYPE_COUNT_, 0, "?"}};
    for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) {
        assert_int_equal(st_dtype_size(dts[i].t), dts[i].size);
        assert_string_equal(st_dtype_name(dts[i].t), dts[i].name);
    }
    /* every op has a name, all distinct */
    for (int a = 0; a < ST_OP_COUNT_; a++) {
        if (strcmp(st_op_name((st_op)a), "?") == 0) fail_msg("op %d has no name", a);
        for (int b = 0; b < a; b++)
            assert_string_not_equal(st_op_name((st_op)a), st_op_name((st_op)b));
    }
    assert_string_equal(st_op_name(ST_OP_MATMUL), "matmul");
    assert_string_equal(st_op_name(ST_OP_COUNT_), "?");

    /* conversions: exact known encodings, round to nearest even, NaN stays NaN */
    static const struct {
        float f;
        uint16_t bf16, f16;
    } cv[] = {
        {1.0f, 0x3F80, 0x3C00},        {-2.0f, 0xC000, 0xC000},
        {0.0f, 0x0000, 0x0000},        {65504.0f, 0x4780, 0x7BFF}, /* bf16 rounds up */
        {65520.0f, 0x4780, 0x7C00},                                /* f16 ties to even: inf */
        {0x1p-24f, 0x3380, 0x0001},                                /* smallest f16 subnormal */
        {0x1p-25f, 0x3300, 0x0000},                                /* a tie: rounds to 0 */
        {0x1.8p-25f, 0x3340, 0x0001},                              /* above the tie */
        {1.00390625f, 0x3F80, 0x3C04},                             /* 1 + 2^-8: bf16 tie to even */
        {1.01171875f, 0x3F82, 0x3C0C},                             /* 1 + 3*2^-8: bf16 tie up */
    };
    for (size_t i = 0; i < sizeof cv / sizeof *cv; i++) {
        if (st_f32_to_bf16(cv[i].f) != cv[i].bf16)
            fail_msg("bf16(%a) = 0x%04x, want 0x%04x", (double)cv[i].f, st_f32_to_bf16(cv[i].f),
                     cv[i].bf16);
        if (st_f32_to_f16(cv[i].f) != cv[i].f16)
            fail_msg("f16(%a) = 0x%04x, want 0x%04x", (double)cv[i].f, st_f32_to_f16(cv[i].f),
                     cv[i].f16);
    }
    assert_true(st_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(st_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(st_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))));
    assert_true(isnan(st_f16_to_f32(st_f32_to_f16(NAN))));
    assert_true(isinf(st_f16_to_f32(st_f32_to_f16(1e6f))));

    /* views */
    int64_t ne[3] = {2, 3, 4};
    tv a = tv_c(ST_F32, 3, ne);
    assert_int_equal(st_view_numel(&a.v), 24);
    assert_true(st_view_is_contiguous(&a.v));
    static const int perm[3] = {0, 2, 1};
    tv b = tv_new(ST_F32, 3, ne, perm, 0, 1);
    assert_false(st_view_is_contiguous(&b.v));
    tv c = tv_new(ST_F32, 3, ne, NULL, 1, 1);
    assert_false(st_view_is_contiguous(&c.v));
    tv_free(&a), tv_free(&b), tv_free(&c);
}

/* ---- the interface ----------------------------------------------------------------- */

static void test_interface(void **state) {
    (void)state;
    st_backend *be = g_be[0];
    assert_string_equal(st_backend_name(be), "cpu");
    assert_non_null(st_backend_cpu_pool(be));
    assert_int_equal(st_pool_size(st_backend_cpu_pool(be)), st_backend_n_threads(be));
    for (int op = ST_OP_NEG; op < ST_OP_RESHAPE; op++) { /* every compute op takes f32 first */
        if (!st_backend_supports_op(be, (st_op)op, ST_F32))
            fail_msg("supports_op(%s, f32) is false", st_op_name((st_op)op));
    }
    for (int op = ST_OP_RESHAPE; op <= ST_OP_TO_DTYPE; op++) /* view ops never reach one */
        assert_false(st_backend_supports_op(be, (st_op)op, ST_F32));
    for (int op = ST_OP_ATTENTION; op < ST_OP_COUNT_; op++) /* the fused ops (appended) */
        assert_true(st_backend_supports_op(be, (st_op)op, ST_F32));
    assert_false(st_backend_supports_op(be, ST_OP_NONE, ST_F32));
    assert_false(st_backend_supports_op(be, ST_OP_ADD, ST_I32));
    assert_false(st_backend_supports_op(be, ST_OP_EXP, ST_BF16));
    assert_true(st_backend_supports_op(be, ST_OP_MATMUL, ST_BF16));
    assert_false(st_backend_supports_op(be, ST_OP_MATMUL, ST_F16));
    assert_true(st_backend_supports_op(be, ST_OP_COPY, ST_I8));
    assert_true(st_backend_supports_op(be, ST_OP_FILL, ST_I32));
    assert_true(st_backend_supports_op(be, ST_OP_ARANGE, ST_I32));
    assert_false(st_backend_supports_op(be, ST_OP_ARANGE, ST_BF16));
    assert_false(st_backend_supports_op(be, ST_OP_RAND_NORMAL, ST_I32));

    /* unsupported op/dtype and malformed descriptions fail cleanly */
    int64_t ne[1] = {4};
    tv x = tv_c(ST_I32, 1, ne), y = tv_c(ST_I32, 1, ne);
    st_op_desc d = desc1(ST_OP_ADD, 2, 1);
    d.src[0] = x.v, d.src[1] = x.v, d.dst[0] = y.v;
    assert_int_equal(st_backend_compute(be, &d), ST_ERR_UNSUPPORTED);
    assert_non_null(strstr(st_last_error(), "add"));
    assert_non_null(strstr(st_last_error(), "i32"));
    d.op = ST_OP_RESHAPE;
    assert_int_equal(st_backend_compute(be, &d), ST_ERR_UNSUPPORTED);
    d.op = ST_OP_ADD;
    d.n_src = 1;
    assert_int_equal(st_backend_compute(be, &d), ST_ERR_INVALID_ARG);
    d.op = (st_op)999;
    assert_int_equal(st_backend_compute(be, &d), ST_ERR_INVALID_ARG);
    assert_int_equal(st_backend_compute(be, NULL), ST_ERR_INVALID_ARG);
    /* copy i32 -> f32 is not a conversion the backend does */
    tv f = tv_c(ST_F32, 1, ne);
    d = desc1(ST_OP_COPY, 1, 1);
    d.src[0] = x.v, d.dst[0] = f.v;
    assert_int_equal(st_backend_compute(be, &d), ST_ERR_UNSUPPORTED);
    tv_free(&x), tv_free(&y), tv_free(&f);

    void *m = st_backend_alloc(be, 1000);
    assert_non_null(m);
    assert_int_equal((uintptr_t)m % 64, 0);
    memset(m, 1, 1000);
    st_backend_dealloc(be, m);
    st_backend_dealloc(be, NULL);
    st_backend_free(NULL);
}

static void test_creation_errors(void **state) {
    (void)state;
    st_backend_cpu_params p = st_backend_cpu_default_params();
    assert_int_equal(p.n_threads, 0);
    assert_int_equal(p.simd_level, -1);
    st_backend *be = NULL;
    st_hw_info info;
    assert_int_equal(st_hw_query(&info), ST_OK);
    for (int level = 0; level < ST_SIMD_COUNT_; level++) {
        if (st_hw_simd_supported(&info, (st_simd_level)level)) continue;
        p.simd_level = level; /* e.g. NEON on x86 */
        assert_int_equal(st_backend_cpu_new(&p, &be), ST_ERR_UNSUPPORTED);
        assert_null(be);
    }
    p.simd_level = 99;
    assert_int_equal(st_backend_cpu_new(&p, &be), ST_ERR_INVALID_ARG);
    p = st_backend_cpu_default_params();
    p.n_threads = -3;
    assert_int_equal(st_backend_cpu_new(&p, &be), ST_ERR_INVALID_ARG);
    assert_int_equal(st_backend_cpu_new(&p, NULL), ST_ERR_INVALID_ARG);

    /* the environment: a bad STRATA_SIMD or STRATA_THREADS is the caller's error */
    char *saved_simd = getenv("STRATA_SIMD") ? strdup(getenv("STRATA_SIMD")) : NULL;
    char *saved_thr = getenv("STRATA_THREADS") ? strdup(getenv("STRATA_THREADS")) : NULL;
    p = st_backend_cpu_default_params();
    setenv("STRATA_SIMD", "bogus", 1);
    assert_int_equal(st_backend_cpu_new(&p, &be), ST_ERR_INVALID_ARG);
    unsetenv("STRATA_SIMD");
    setenv("STRATA_THREADS", "two", 1);
    assert_int_equal(st_backend_cpu_new(&p, &be), ST_ERR_INVALID_ARG);
    assert_non_null(strstr(st_last_error(), "two"));
    setenv("STRATA_THREADS", "2", 1);
    setenv("STRATA_SIMD", "scalar", 1);
    assert_int_equal(st_backend_cpu_new(&p, &be), ST_OK);
    assert_int_equal(st_backend_n_threads(be), 2);
    assert_int_equal(st_backend_cpu_simd_level(be), ST_SIMD_SCALAR);
    assert_int_equal(st_hw_blas_get_threads(), 2);
    st_backend_free(be);
    if (saved_simd)
        setenv("STRATA_SIMD", saved_simd, 1);
    else
        unsetenv("STRATA_SIMD");
    if (saved_thr)
        setenv("STRATA_THREADS", saved_thr, 1);
    else
        unsetenv("STRATA_THREADS");
    free(saved_simd);
    free(saved_thr);
}

/* ---- unary ------------------------------------------------------------------------------ */

static double ref_unary(st_op op, double x, double alpha) {
    switch (op) {
    case ST_OP_NEG:
        return -x;
    case ST_OP_EXP:
        return exp(x);
    case ST_OP_LOG:
        return log(x);
    case ST_OP_SQRT:
        return sqrt(x);
    case ST_OP_TANH:
        return tanh(x);
    case ST_OP_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case ST_OP_GELU_ERF:
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case ST_OP_SILU:
        return x / (1.0 + exp(-x));
    case ST_OP_RELU:
        return x > 0 ? x : 0;
    case ST_OP_SCALE:
        return alpha * x;
    default:
        return NAN;
    }
}

static double ref_dunary(st_op op, double x, double alpha) {
    switch (op) {
    case ST_OP_NEG:
        return -1;
    case ST_OP_EXP:
        return exp(x);
    case ST_OP_LOG:
        return 1 / x;
    case ST_OP_SQRT:
        return 0.5 / sqrt(x);
    case ST_OP_TANH:
        return 1 - tanh(x) * tanh(x);
    case ST_OP_GELU_TANH: {
        double c = sqrt(2.0 / M_PI), u = c * (x + 0.044715 * x * x * x), t = tanh(u);
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
    }
    case ST_OP_GELU_ERF:
        return 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI);
    case ST_OP_SILU: {
        double s = 1 / (1 + exp(-x));
        return s * (1 + x * (1 - s));
    }
    case ST_OP_RELU:
        return x > 0 ? 1 : 0;
    case ST_OP_SCALE:
        return alpha;
    default:
        return NAN;
    }
}

static bool positive_domain(st_op op) {
    return op == ST_OP_LOG || op == ST_OP_SQRT;
}

/* layouts of a 3-d source: contiguous, transposed (last two dims), padded
 * rows, inner step 2 (gathered), and broadcast of the middle dim */
enum { L_CONTIG, L_TRANS, L_PAD, L_STEP, L_BCAST, L_COUNT };

static tv make_src3(const int64_t *ne, int layout) {
    static const int trans[3] = {0, 2, 1};
    switch (layout) {
    case L_TRANS:
        return tv_new(ST_F32, 3, ne, trans, 0, 1);
    case L_PAD:
        return tv_new(ST_F32, 3, ne, NULL, 3, 1);
    case L_STEP:
        return tv_new(ST_F32, 3, ne, NULL, 0, 2);
    case L_BCAST: {
        int64_t one[3] = {ne[0], 1, ne[2]};
        tv t = tv_c(ST_F32, 3, one);
        tv_bcast(&t, 1, ne[1]);
        return t;
    }
    default:
        return tv_c(ST_F32, 3, ne);
    }
}

static void test_unary(void **state) {
    (void)state;
    int64_t ne[3] = {3, 5, 7};
    for (int op = ST_OP_NEG; op <= ST_OP_SCALE; op++) {
        for (int layout = 0; layout < L_COUNT; layout++) {
            tv x = make_src3(ne, layout), y = tv_c(ST_F32, 3, ne);
            bool pos = positive_domain((st_op)op);
            tv_rand(&x, pos ? 0.05 : -4, pos ? 5 : 4);
            double ref[105];
            for (int64_t i = 0; i < 105; i++)
                ref[i] = ref_unary((st_op)op, tv_get(&x, i), 0.75);
            st_op_desc d = desc1((st_op)op, 1, 1);
            d.p.alpha = 0.75f;
            d.src[0] = x.v, d.dst[0] = y.v;
            for (int b = 0; b < g_nbe; b++) {
                tv_fill(&y, NAN);
                expect_ok(g_be[b], &d);
                /* f32 rounding plus a few ulp of the vector approximations */
                check_close(st_op_name((st_op)op), g_be[b], &y, ref, 2e-6, 2e-5);
            }
            tv_free(&x), tv_free(&y);
        }
    }
    /* in place, large enough to be split across threads */
    int64_t big[1] = {100003};
    tv x = tv_c(ST_F32, 1, big);
    double *ref = malloc(sizeof(double) * (size_t)big[0]);
    for (int b = 0; b < g_nbe; b++) {
        g_seed = 77;
        tv_rand(&x, -3, 3);
        for (int64_t i = 0; i < big[0]; i++)
            ref[i] = tanh(tv_get(&x, i));
        st_op_desc d = desc1(ST_OP_TANH, 1, 1);
        d.src[0] = x.v, d.dst[0] = x.v;
        expect_ok(g_be[b], &d);
        check_close("tanh in place", g_be[b], &x, ref, 2e-6, 2e-5);
    }
    free(ref);
    tv_free(&x);
}

static void test_unary_backward(void **state) {
    (void)state;
    int64_t ne[3] = {2, 3, 9};
    for (int op = ST_OP_NEG; op <= ST_OP_SCALE; op++) {
        for (int with_y = 0; with_y < 2; with_y++) {
            for (int layout = 0; layout < 2; layout++) {
                bool pos = positive_domain((st_op)op);
                tv x = make_src3(ne, layout == 0 ? L_CONTIG : L_PAD);
                tv dy = make_src3(ne, layout == 0 ? L_CONTIG : L_TRANS);
                tv y = tv_c(ST_F32, 3, ne), dx = tv_c(ST_F32, 3, ne);
                tv_rand(&x, pos ? 0.1 : -3, 3);
                tv_rand(&dy, -1, 1);
                double ref[54];
                for (int64_t i = 0; i < 54; i++) {
                    double xv = tv_get(&x, i);
                    if (op == ST_OP_RELU && fabs(xv) < 1e-3) tv_set(&x, i, xv = 0.5);
                    tv_set(&y, i, ref_unary((st_op)op, xv, 1.5));
                    ref[i] = ref_dunary((st_op)op, xv, 1.5) * tv_get(&dy, i);
                }
                st_op_desc d = desc1(ST_OP_UNARY_BACKWARD, with_y ? 3 : 2, 1);
                d.p.sub_op = (st_op)op;
                d.p.alpha = 1.5f;
                d.src[0] = x.v, d.src[1] = dy.v, d.dst[0] = dx.v;
                if (with_y) d.src[2] = y.v;
                for (int b = 0; b < g_nbe; b++) {
                    tv_fill(&dx, NAN);
                    expect_ok(g_be[b], &d);
                    /* y is stored in f32, so derivatives computed from it carry its rounding */
                    check_close("unary_backward", g_be[b], &dx, ref, 1e-5, 5e-5);
                }
                tv_free(&x), tv_free(&dy), tv_free(&y), tv_free(&dx);
            }
        }
    }
}

/* ---- binary and axpy ---------------------------------------------------------------- */

static double ref_binary(st_op op, double a, double b) {
    switch (op) {
    case ST_OP_ADD:
        return a + b;
    case ST_OP_SUB:
        return a - b;
    case ST_OP_MUL:
        return a * b;
    default:
        return a / b;
    }
}

/* A [2,3,4,5] operand: layout 0 contiguous, 1 padded, 2 inner step 2, 3
 * transposed last two dims, 4 broadcast inner dim ([2,3,4,1]), 5 bias
 * ([1,1,1,5]), 6 scalar, 7 broadcast dims 0 and 2. */
static tv make_src4(int layout) {
    int64_t ne[4] = {2, 3, 4, 5};
    static const int trans[4] = {0, 1, 3, 2};
    switch (layout) {
    case 1:
        return tv_new(ST_F32, 4, ne, NULL, 2, 1);
    case 2:
        return tv_new(ST_F32, 4, ne, NULL, 0, 2);
    case 3:
        return tv_new(ST_F32, 4, ne, trans, 0, 1);
    case 4:
    case 5:
    case 6:
    case 7: {
        static const int64_t shp[4][4] = {{2, 3, 4, 1}, {1, 1, 1, 5}, {1, 1, 1, 1}, {1, 3, 1, 5}};
        tv t = tv_c(ST_F32, 4, shp[layout - 4]);
        tv_rand(&t, 0.5, 2);
        for (int d = 0; d < 4; d++)
            if (shp[layout - 4][d] == 1 && ne[d] != 1) tv_bcast(&t, d, ne[d]);
        return t;
    }
    default:
        return tv_c(ST_F32, 4, ne);
    }
}

static void test_binary_broadcast(void **state) {
    (void)state;
    static const int pairs[][2] = {{0, 0}, {0, 5}, {5, 0}, {1, 4}, {2, 6}, {3, 7}, {6, 1}, {4, 3}};
    int64_t ne[4] = {2, 3, 4, 5};
    for (int op = ST_OP_ADD; op <= ST_OP_DIV; op++) {
        for (size_t pi = 0; pi < sizeof pairs / sizeof *pairs; pi++) {
            tv a = make_src4(pairs[pi][0]), bb = make_src4(pairs[pi][1]);
            if (pairs[pi][0] < 4) tv_rand(&a, -2, 2);
            if (pairs[pi][1] < 4) tv_rand(&bb, 0.5, 2); /* away from 0 for DIV */
            tv y = tv_c(ST_F32, 4, ne);
            double ref[120];
            for (int64_t i = 0; i < 120; i++)
                ref[i] = ref_binary((st_op)op, tv_get(&a, i), tv_get(&bb, i));
            st_op_desc d = desc1((st_op)op, 2, 1);
            d.src[0] = a.v, d.src[1] = bb.v, d.dst[0] = y.v;
            for (int b = 0; b < g_nbe; b++) {
                tv_fill(&y, NAN);
                expect_ok(g_be[b], &d);
                check_close(st_op_name((st_op)op), g_be[b], &y, ref, 1e-6, 1e-6);
            }
            tv_free(&a), tv_free(&bb), tv_free(&y);
        }
    }
    /* in place (dst == src0), large: a row bias over [300, 400] split across threads */
    int64_t big[2] = {300, 400}, bias_ne[2] = {1, 400};
    tv x = tv_c(ST_F32, 2, big), bias = tv_c(ST_F32, 2, bias_ne);
    tv_bcast(&bias, 0, 300);
    double *ref = malloc(sizeof(double) * 120000);
    for (int b = 0; b < g_nbe; b++) {
        tv_rand(&x, -1, 1);
        tv_rand(&bias, -1, 1);
        for (int64_t i = 0; i < 120000; i++)
            ref[i] = tv_get(&x, i) * tv_get(&bias, i);
        st_op_desc d = desc1(ST_OP_MUL, 2, 1);
        d.src[0] = x.v, d.src[1] = bias.v, d.dst[0] = x.v;
        expect_ok(g_be[b], &d);
        check_close("mul in place", g_be[b], &x, ref, 1e-7, 1e-6);
    }
    free(ref);
    tv_free(&x), tv_free(&bias);
}

static void test_axpy(void **state) {
    (void)state;
    int64_t ne[4] = {2, 3, 4, 5};
    static const int src_layouts[] = {0, 3, 4, 5, 6, 2};
    for (size_t li = 0; li < sizeof src_layouts / sizeof *src_layouts; li++) {
        for (int dlay = 0; dlay < 2; dlay++) {
            tv x = make_src4(src_layouts[li]);
            if (src_layouts[li] < 4) tv_rand(&x, -1, 1);
            /* dst: contiguous, or padded rows (any layout with inner stride 4) */
            tv y = dlay ? tv_new(ST_F32, 4, ne, NULL, 3, 1) : tv_c(ST_F32, 4, ne);
            double init[120], ref[120];
            for (int b = 0; b < g_nbe; b++) {
                tv_rand(&y, -1, 1);
                for (int64_t i = 0; i < 120; i++) {
                    init[i] = tv_get(&y, i);
                    ref[i] = init[i] - 0.5 * tv_get(&x, i);
                }
                st_op_desc d = desc1(ST_OP_AXPY, 1, 1);
                d.p.alpha = -0.5f;
                d.src[0] = x.v, d.dst[0] = y.v;
                expect_ok(g_be[b], &d);
                check_close("axpy", g_be[b], &y, ref, 1e-6, 1e-6);
            }
            tv_free(&x), tv_free(&y);
        }
    }
}

/* ---- reductions --------------------------------------------------------------------------- */

static void ref_reduce(st_op op, const tv *x, int axis, double *out) {
    const st_view *v = &x->v;
    int64_t L = v->ne[axis], inner = 1, outer = 1;
    for (int d = axis + 1; d < v->ndim; d++)
        inner *= v->ne[d];
    for (int d = 0; d < axis; d++)
        outer *= v->ne[d];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double acc = op == ST_OP_MAX ? -INFINITY : 0;
            for (int64_t k = 0; k < L; k++) {
                double e = tv_get(x, (o * L + k) * inner + i);
                acc = op == ST_OP_MAX ? fmax(acc, e) : acc + e;
            }
            out[o * inner + i] = op == ST_OP_MEAN ? acc / (double)L : acc;
        }
}

static void run_reduce_case(st_op op, tv *x, int axis, double atol) {
    int nd = x->v.ndim;
    int64_t ne[4];
    for (int d = 0; d < nd; d++)
        ne[d] = d == axis ? 1 : x->v.ne[d];
    tv y = tv_c(ST_F32, nd, ne);
    double *ref = malloc(sizeof(double) * (size_t)tv_n(&y));
    ref_reduce(op, x, axis, ref);
    st_op_desc d = desc1(op, 1, 1);
    d.p.axis = axis;
    d.src[0] = x->v, d.dst[0] = y.v;
    for (int b = 0; b < g_nbe; b++) {
        tv_fill(&y, NAN);
        expect_ok(g_be[b], &d);
        check_close(st_op_name(op), g_be[b], &y, ref, atol, 1e-5);
    }
    /* a negative axis counts from the end */
    d.p.axis = axis - nd;
    tv_fill(&y, NAN);
    expect_ok(g_be[0], &d);
    check_close("reduce, negative axis", g_be[0], &y, ref, atol, 1e-5);
    free(ref);
    tv_free(&y);
}

static void test_reductions(void **state) {
    (void)state;
    int64_t ne[4] = {3, 4, 5, 6};
    static const int perm[4] = {1, 0, 2, 3}; /* outer dims swapped, inner stays contiguous */
    for (int op = ST_OP_SUM; op <= ST_OP_MAX; op++)
        for (int layout = 0; layout < 3; layout++)
            for (int axis = 0; axis < 4; axis++) {
                tv x = layout == 0   ? tv_c(ST_F32, 4, ne)
                       : layout == 1 ? tv_new(ST_F32, 4, ne, NULL, 3, 1)
                                     : tv_new(ST_F32, 4, ne, perm, 0, 1);
                tv_rand(&x, -1, 1);
                /* sums of <= 6 values in [-1,1]: f32 rounding only */
                run_reduce_case((st_op)op, &x, axis, 1e-6);
                tv_free(&x);
            }
    /* larger: rows and columns of [64, 2000], split across threads */
    int64_t big[2] = {64, 2000};
    for (int op = ST_OP_SUM; op <= ST_OP_MAX; op++)
        for (int axis = 0; axis < 2; axis++) {
            tv x = tv_c(ST_F32, 2, big);
            tv_rand(&x, -1, 1);
            /* f32 sums of up to 2000 values of |v| <= 1: within 2e-4 absolute */
            run_reduce_case((st_op)op, &x, axis, 2e-4);
            tv_free(&x);
        }
    /* broadcast along the reduced axis (stride 0): sum = L x */
    int64_t one[2] = {1, 7};
    tv x = tv_c(ST_F32, 2, one);
    tv_rand(&x, -1, 1);
    tv_bcast(&x, 0, 9);
    run_reduce_case(ST_OP_SUM, &x, 0, 1e-6);
    tv_free(&x);
}

static void test_max_backward(void **state) {
    (void)state;
    int64_t ne[3] = {4, 5, 6};
    for (int axis = 0; axis < 3; axis++) {
        for (int layout = 0; layout < 2; layout++) {
            tv x = layout ? make_src3(ne, L_TRANS) : tv_c(ST_F32, 3, ne);
            for (int64_t i = 0; i < 120; i++)
                tv_set(&x, i, floor(frand(0, 3))); /* many ties */
            int64_t kne[3] = {ne[0], ne[1], ne[2]};
            kne[axis] = 1;
            tv y = tv_c(ST_F32, 3, kne), dy = tv_c(ST_F32, 3, kne), dx = tv_c(ST_F32, 3, ne);
            double ymax[30];
            ref_reduce(ST_OP_MAX, &x, axis, ymax);
            for (int64_t i = 0; i < tv_n(&y); i++)
                tv_set(&y, i, ymax[i]);
            tv_rand(&dy, 1, 2);
            /* reference: dy at the first maximum of each slice */
            double ref[120];
            int64_t L = ne[axis], inner = 1, outer = 1;
            for (int d = axis + 1; d < 3; d++)
                inner *= ne[d];
            for (int d = 0; d < axis; d++)
                outer *= ne[d];
            for (int64_t o = 0; o < outer; o++)
                for (int64_t i = 0; i < inner; i++) {
                    bool found = false;
                    for (int64_t k = 0; k < L; k++) {
                        int64_t f = (o * L + k) * inner + i;
                        bool hit = !found && tv_get(&x, f) == ymax[o * inner + i];
                        ref[f] = hit ? tv_get(&dy, o * inner + i) : 0;
                        found = found || hit;
                    }
                }
            st_op_desc d = desc1(ST_OP_MAX_BACKWARD, 3, 1);
            d.p.axis = axis;
            d.src[0] = x.v, d.src[1] = y.v, d.src[2] = dy.v, d.dst[0] = dx.v;
            for (int b = 0; b < g_nbe; b++) {
                tv_fill(&dx, NAN);
                expect_ok(g_be[b], &d);
                check_close("max_backward", g_be[b], &dx, ref, 0, 0);
            }
            tv_free(&x), tv_free(&y), tv_free(&dy), tv_free(&dx);
        }
    }
}

/* ---- row ops ------------------------------------------------------------------------------- */

typedef struct row_case {
    st_op op;
    bool gamma, beta, dgamma, dbeta;
} row_case;

/* reference of one row (n elements); x/dy/y in, out/dg/db out (dg, db +=) */
static void ref_row(const row_case *rc, int64_t n, const double *x, const double *a2,
                    const double *g, const double *bt, double eps, double *out, double *dg,
                    double *db) {
    double mx = -INFINITY, s = 0, mean = 0, var = 0, ms = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, x[i]);
    for (int64_t i = 0; i < n; i++)
        mean += x[i] / (double)n;
    for (int64_t i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean) / (double)n;
    for (int64_t i = 0; i < n; i++)
        ms += x[i] * x[i] / (double)n;
    switch (rc->op) {
    case ST_OP_SOFTMAX:
    case ST_OP_LOG_SOFTMAX:
        for (int64_t i = 0; i < n; i++)
            s += exp(x[i] - mx);
        for (int64_t i = 0; i < n; i++)
            out[i] = rc->op == ST_OP_SOFTMAX ? exp(x[i] - mx) / s : x[i] - mx - log(s);
        break;
    case ST_OP_LAYERNORM:
        for (int64_t i = 0; i < n; i++)
            out[i] = (x[i] - mean) / sqrt(var + eps) * (g ? g[i] : 1) + (bt ? bt[i] : 0);
        break;
    case ST_OP_RMSNORM:
        for (int64_t i = 0; i < n; i++)
            out[i] = x[i] / sqrt(ms + eps) * (g ? g[i] : 1);
        break;
    case ST_OP_SOFTMAX_BACKWARD: /* x = y, a2 = dy */
        for (int64_t i = 0; i < n; i++)
            s += a2[i] * x[i];
        for (int64_t i = 0; i < n; i++)
            out[i] = x[i] * (a2[i] - s);
        break;
    case ST_OP_LOG_SOFTMAX_BACKWARD:
        for (int64_t i = 0; i < n; i++)
            s += a2[i];
        for (int64_t i = 0; i < n; i++)
            out[i] = a2[i] - exp(x[i]) * s;
        break;
    case ST_OP_LAYERNORM_BACKWARD:
    case ST_OP_RMSNORM_BACKWARD: {
        bool ln = rc->op == ST_OP_LAYERNORM_BACKWARD;
        double rstd = 1 / sqrt((ln ? var : ms) + eps), m1 = 0, m2 = 0;
        for (int64_t i = 0; i < n; i++) {
            double xh = (x[i] - (ln ? mean : 0)) * rstd, dxh = a2[i] * (g ? g[i] : 1);
            m1 += dxh / (double)n;
            m2 += dxh * xh / (double)n;
            if (dg) dg[i] += a2[i] * xh;
            if (db) db[i] += a2[i];
        }
        for (int64_t i = 0; i < n; i++) {
            double xh = (x[i] - (ln ? mean : 0)) * rstd, dxh = a2[i] * (g ? g[i] : 1);
            out[i] = rstd * (dxh - (ln ? m1 : 0) - xh * m2);
        }
        break;
    }
    default:
        break;
    }
}

static bool row_backward(st_op op) {
    return op == ST_OP_SOFTMAX_BACKWARD || op == ST_OP_LOG_SOFTMAX_BACKWARD ||
           op == ST_OP_LAYERNORM_BACKWARD || op == ST_OP_RMSNORM_BACKWARD;
}

/* Runs one row op on x of shape [R1, R2, n] with rows padded (outer strides
 * not dense); a2 is dy (or, for the softmax backwards, x holds y). */
static void run_row_case(const row_case *rc, int64_t r1, int64_t r2, int64_t n, double atol,
                         bool check_determinism) {
    int64_t ne[3] = {r1, r2, n}, vne[1] = {n};
    int64_t rows = r1 * r2, N = rows * n;
    tv x = tv_new(ST_F32, 3, ne, NULL, 3, 1), a2 = tv_new(ST_F32, 3, ne, NULL, 1, 1);
    tv out = tv_c(ST_F32, 3, ne);
    tv g = tv_c(ST_F32, 1, vne), bt = tv_c(ST_F32, 1, vne);
    tv dg = tv_c(ST_F32, 1, vne), db = tv_c(ST_F32, 1, vne);
    bool lsm = rc->op == ST_OP_LOG_SOFTMAX_BACKWARD;
    tv_rand(&x, lsm ? -4 : -2, lsm ? -0.1 : 2);
    tv_rand(&a2, -1, 1);
    tv_rand(&g, 0.5, 1.5);
    tv_rand(&bt, -0.5, 0.5);
    double *xd = malloc(sizeof(double) * (size_t)(3 * N + 6 * n));
    double *ad = xd + N, *ref = ad + N, *gd = ref + N, *bd = gd + n, *dgi = bd + n, *dbi = dgi + n,
           *dgr = dbi + n, *dbr = dgr + n;
    for (int64_t i = 0; i < N; i++)
        xd[i] = tv_get(&x, i), ad[i] = tv_get(&a2, i);
    for (int64_t i = 0; i < n; i++) {
        gd[i] = tv_get(&g, i), bd[i] = tv_get(&bt, i);
        dgi[i] = frand(-1, 1), dbi[i] = frand(-1, 1);
        dgr[i] = dgi[i], dbr[i] = dbi[i];
    }
    for (int64_t r = 0; r < rows; r++)
        ref_row(rc, n, xd + r * n, ad + r * n, rc->gamma ? gd : NULL, rc->beta ? bd : NULL, 1e-5,
                ref + r * n, rc->dgamma ? dgr : NULL, rc->dbeta ? dbr : NULL);
    st_op_desc d = desc1(rc->op, 1, 1);
    d.p.eps = 1e-5f;
    d.src[0] = x.v;
    d.dst[0] = out.v;
    switch (rc->op) {
    case ST_OP_LAYERNORM:
        d.n_src = 3;
        if (rc->gamma) d.src[1] = g.v;
        if (rc->beta) d.src[2] = bt.v;
        break;
    case ST_OP_RMSNORM:
        d.n_src = 2;
        if (rc->gamma) d.src[1] = g.v;
        break;
    case ST_OP_SOFTMAX_BACKWARD:
    case ST_OP_LOG_SOFTMAX_BACKWARD:
        d.n_src = 2;
        d.src[1] = a2.v;
        break;
    case ST_OP_LAYERNORM_BACKWARD:
    case ST_OP_RMSNORM_BACKWARD:
        d.n_src = 3;
        if (rc->gamma) d.src[1] = g.v;
        d.src[2] = a2.v;
        d.n_dst = rc->op == ST_OP_LAYERNORM_BACKWARD ? 3 : 2;
        if (rc->dgamma) d.dst[1] = dg.v;
        if (rc->dbeta) d.dst[2] = db.v;
        break;
    default:
        break;
    }
    float *first_dg = NULL;
    for (int b = 0; b < g_nbe; b++) {
        tv_fill(&out, NAN);
        for (int64_t i = 0; i < n; i++)
            tv_set(&dg, i, dgi[i]), tv_set(&db, i, dbi[i]);
        expect_ok(g_be[b], &d);
        check_close(st_op_name(rc->op), g_be[b], &out, ref, atol, 1e-4);
        if (rc->dgamma) check_close("dgamma", g_be[b], &dg, dgr, atol * (double)rows, 1e-4);
        if (rc->dbeta) check_close("dbeta", g_be[b], &db, dbr, atol * (double)rows, 1e-4);
        /* dgamma is identical for any thread count at one SIMD level */
        if (check_determinism && rc->dgamma) {
            bool new_level = b == 0 || st_backend_cpu_simd_level(g_be[b]) !=
                                           st_backend_cpu_simd_level(g_be[b - 1]);
            if (new_level) {
                free(first_dg);
                first_dg = malloc(sizeof(float) * (size_t)n);
                memcpy(first_dg, dg.v.data, sizeof(float) * (size_t)n);
            } else if (memcmp(first_dg, dg.v.data, sizeof(float) * (size_t)n) != 0) {
                fail_msg("%s: dgamma differs between thread counts on %s", st_op_name(rc->op),
                         be_label(g_be[b]));
            }
        }
    }
    free(first_dg);
    free(xd);
    tv_free(&x), tv_free(&a2), tv_free(&out), tv_free(&g), tv_free(&bt), tv_free(&dg), tv_free(&db);
}

static void test_row_ops(void **state) {
    (void)state;
    static const row_case cases[] = {
        {ST_OP_SOFTMAX, 0, 0, 0, 0},
        {ST_OP_LOG_SOFTMAX, 0, 0, 0, 0},
        {ST_OP_LAYERNORM, 0, 0, 0, 0},
        {ST_OP_LAYERNORM, 1, 1, 0, 0},
        {ST_OP_LAYERNORM, 1, 0, 0, 0},
        {ST_OP_RMSNORM, 0, 0, 0, 0},
        {ST_OP_RMSNORM, 1, 0, 0, 0},
        {ST_OP_SOFTMAX_BACKWARD, 0, 0, 0, 0},
        {ST_OP_LOG_SOFTMAX_BACKWARD, 0, 0, 0, 0},
        {ST_OP_LAYERNORM_BACKWARD, 1, 0, 1, 1},
        {ST_OP_LAYERNORM_BACKWARD, 0, 0, 1, 0},
        {ST_OP_LAYERNORM_BACKWARD, 1, 0, 0, 1},
        {ST_OP_LAYERNORM_BACKWARD, 0, 0, 0, 0},
        {ST_OP_RMSNORM_BACKWARD, 1, 0, 1, 0},
        {ST_OP_RMSNORM_BACKWARD, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (int draw = 0; draw < 4; draw++) {
            /* small rows of 17 (odd, not a vector multiple): f32 rounding only */
            run_row_case(&cases[i], 2, 3, 17, 1e-5, false);
            /* rows of one element: var = 0, so the norm backwards scale rounding
             * of O(1) terms by rstd = 1/sqrt(eps) ~ 316; 1e-4 is ~1e-6 of those */
            run_row_case(&cases[i], 1, 3, 1, 1e-4, false);
        }
        /* 256 rows of 300: split across threads; the backward's dgamma must
         * not depend on the split */
        run_row_case(&cases[i], 16, 16, 300, 2e-5, row_backward(cases[i].op));
    }
}

/* ---- embedding ----------------------------------------------------------------------------- */

static void test_embedding(void **state) {
    (void)state;
    int64_t wne[2] = {11, 6}, ine[2] = {2, 3}, one[3] = {2, 3, 6};
    tv w = tv_new(ST_F32, 2, wne, NULL, 2, 1); /* padded rows */
    tv ids = tv_c(ST_I32, 2, ine), y = tv_c(ST_F32, 3, one);
    tv_rand(&w, -1, 1);
    static const int32_t idv[6] = {3, 0, 10, 3, 7, 1};
    for (int i = 0; i < 6; i++)
        tv_set(&ids, i, idv[i]);
    double ref[36];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++)
            ref[i * 6 + j] = tv_get(&w, idv[i] * 6 + j);
    st_op_desc d = desc1(ST_OP_EMBEDDING, 2, 1);
    d.src[0] = w.v, d.src[1] = ids.v, d.dst[0] = y.v;
    for (int b = 0; b < g_nbe; b++) {
        tv_fill(&y, NAN);
        expect_ok(g_be[b], &d);
        check_close("embedding", g_be[b], &y, ref, 0, 0);
    }
    /* out-of-range ids: ST_ERR_BOUNDS naming the id, its position and V */
    static const int32_t bad[2] = {11, -1};
    for (int k = 0; k < 2; k++) {
        tv_set(&ids, 4, bad[k]);
        assert_int_equal(st_backend_compute(g_be[0], &d), ST_ERR_BOUNDS);
        char want[32];
        snprintf(want, sizeof want, "id %d", bad[k]);
        const char *msg = st_last_error();
        if (!strstr(msg, want) || !strstr(msg, "position 4") || !strstr(msg, "11"))
            fail_msg("embedding bounds message: %s", msg);
        /* the backward checks too, and writes nothing */
        tv dw = tv_c(ST_F32, 2, wne);
        st_op_desc bd = desc1(ST_OP_EMBEDDING_BACKWARD, 2, 1);
        bd.src[0] = y.v, bd.src[1] = ids.v, bd.dst[0] = dw.v;
        assert_int_equal(st_backend_compute(g_be[0], &bd), ST_ERR_BOUNDS);
        for (int64_t i = 0; i < tv_n(&dw); i++)
            assert_true(tv_get(&dw, i) == 0);
        tv_free(&dw);
    }
    tv_free(&w), tv_free(&ids), tv_free(&y);
}

/* dweight += scatter of dy rows; identical for any thread count */
static void run_embedding_backward(int64_t V, int64_t D, int64_t N) {
    int64_t wne[2] = {V, D}, ine[1] = {N}, dne[2] = {N, D};
    tv dw = tv_c(ST_F32, 2, wne), ids = tv_c(ST_I32, 1, ine), dy = tv_c(ST_F32, 2, dne);
    tv_rand(&dy, -1, 1);
    for (int64_t i = 0; i < N; i++)
        tv_set(&ids, i, (double)((i * 7 + i / 3) % V)); /* repeats */
    double *init = malloc(sizeof(double) * (size_t)(2 * V * D)), *ref = init + V * D;
    for (int64_t i = 0; i < V * D; i++)
        init[i] = frand(-1, 1), ref[i] = init[i];
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < D; j++)
            ref[(int64_t)tv_get(&ids, i) * D + j] += tv_get(&dy, i * D + j);
    st_op_desc d = desc1(ST_OP_EMBEDDING_BACKWARD, 2, 1);
    d.src[0] = dy.v, d.src[1] = ids.v, d.dst[0] = dw.v;
    float *first = malloc(sizeof(float) * (size_t)(V * D));
    for (int b = 0; b < g_nbe; b++) {
        for (int64_t i = 0; i < V * D; i++)
            tv_set(&dw, i, init[i]);
        expect_ok(g_be[b], &d);
        /* f32 sums of up to N/V + 1 values of |v| <= 1 */
        check_close("embedding_backward", g_be[b], &dw, ref, 1e-6 * (double)N, 1e-5);
        if (b == 0)
            memcpy(first, dw.v.data, sizeof(float) * (size_t)(V * D));
        else if (memcmp(first, dw.v.data, sizeof(float) * (size_t)(V * D)) != 0)
            fail_msg("embedding_backward V=%lld D=%lld differs on %s", (long long)V, (long long)D,
                     be_label(g_be[b]));
    }
    free(first);
    free(init);
    tv_free(&dw), tv_free(&ids), tv_free(&dy);
}

static void test_embedding_backward(void **state) {
    (void)state;
    run_embedding_backward(11, 6, 6);     /* tiny: one thread */
    run_embedding_backward(40, 300, 200); /* wide rows: split by columns */
    run_embedding_backward(50, 16, 4000); /* narrow rows: split by vocabulary */
}

/* ---- matmul -------------------------------------------------------------------------------- */

/* A [.., R, C] operand: transposed storage swaps the last two dims. */
static tv make_mat(st_dtype dt, int nd, const int64_t *ne, bool trans) {
    static const int t2[2] = {1, 0}, t3[3] = {0, 2, 1}, t4[4] = {0, 1, 3, 2};
    const int *order = !trans ? NULL : nd == 2 ? t2 : nd == 3 ? t3 : t4;
    return tv_new(dt, nd, ne, order, trans ? 0 : 1, 1); /* row-major ones get padded rows */
}

/* reference: dst[b, m, n] (+)= sum_k a[b, m, k] b[b, k, n], batch dims by broadcasting */
static void ref_matmul(const tv *a, const tv *b, const tv *c, bool acc, double *ref) {
    int nd = c->v.ndim;
    int64_t M = c->v.ne[nd - 2], N = c->v.ne[nd - 1], K = a->v.ne[a->v.ndim - 1];
    int64_t nb = tv_n(c) / (M * N);
    for (int64_t bi = 0; bi < nb; bi++) {
        /* batch index into a and b by right-aligned broadcasting */
        int64_t idx[2] = {0, 0}, r = bi;
        for (int s = nd - 3; s >= 0; s--) {
            idx[s - (nd - 2) + 2] = r % c->v.ne[s];
            r /= c->v.ne[s];
        }
        int64_t ab = 0, bb = 0;
        for (int s = 0; s < 2; s++) {
            int ad = a->v.ndim - 2 - (2 - s), bd = b->v.ndim - 2 - (2 - s);
            if (ad >= 0) ab = ab * a->v.ne[ad] + (a->v.ne[ad] == 1 ? 0 : idx[s]);
            if (bd >= 0) bb = bb * b->v.ne[bd] + (b->v.ne[bd] == 1 ? 0 : idx[s]);
        }
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += tv_get(a, (ab * M + m) * K + k) * tv_get(b, (bb * K + k) * N + n);
                int64_t o = (bi * M + m) * N + n;
                ref[o] = (acc ? tv_get(c, o) : 0) + s;
            }
    }
}

typedef struct mm_case {
    st_dtype dt;
    int nd_a, nd_b, nd_c;
    int64_t a_ne[4], b_ne[4], c_ne[4];
    bool ta, tb, acc;
} mm_case;

static void run_mm(const mm_case *mc) {
    tv a = make_mat(mc->dt, mc->nd_a, mc->a_ne, mc->ta);
    tv bm = make_mat(mc->dt, mc->nd_b, mc->b_ne, mc->tb);
    tv c = tv_c(ST_F32, mc->nd_c, mc->c_ne);
    tv_rand(&a, -1, 1);
    tv_rand(&bm, -1, 1);
    int64_t n = tv_n(&c), K = mc->a_ne[mc->nd_a - 1];
    double *ref = malloc(sizeof(double) * (size_t)(n + 1)),
           *init = malloc(sizeof(double) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++)
        init[i] = frand(-1, 1);
    st_op_desc d = desc1(ST_OP_MATMUL, 2, 1);
    d.p.accumulate = mc->acc;
    d.src[0] = a.v, d.src[1] = bm.v, d.dst[0] = c.v;
    for (int64_t i = 0; i < n; i++)
        tv_set(&c, i, init[i]);
    ref_matmul(&a, &bm, &c, mc->acc, ref);
    for (int b = 0; b < g_nbe; b++) {
        for (int64_t i = 0; i < n; i++)
            tv_set(&c, i, mc->acc ? init[i] : NAN);
        expect_ok(g_be[b], &d);
        /* f32 accumulation of K products of |v| <= 1 */
        char what[96];
        snprintf(what, sizeof what, "matmul %s M%lld K%lld ta%d tb%d acc%d", st_dtype_name(mc->dt),
                 (long long)mc->c_ne[mc->nd_c - 2], (long long)K, mc->ta, mc->tb, mc->acc);
        check_close(what, g_be[b], &c, ref, 2e-6 * (double)(K + 1), 1e-5);
    }
    free(ref);
    free(init);
    tv_free(&a), tv_free(&bm), tv_free(&c);
}

static void test_matmul(void **state) {
    (void)state;
    for (int dt = 0; dt < 2; dt++) {
        st_dtype t = dt ? ST_BF16 : ST_F32;
        for (int combo = 0; combo < 8; combo++) {
            bool ta = combo & 1, tb = (combo >> 1) & 1, acc = (combo >> 2) & 1;
            /* 2-d, all four transpose combinations, plain and accumulating */
            mm_case m2 = {t, 2, 2, 2, {5, 7}, {7, 3}, {5, 3}, ta, tb, acc};
            run_mm(&m2);
            /* batched with broadcasting: b's first batch dim has size 1 (stride 0) */
            mm_case m4 = {t, 4, 4, 4, {2, 3, 4, 6}, {1, 3, 6, 5}, {2, 3, 4, 5}, ta, tb, acc};
            run_mm(&m4);
            /* batched, a broadcast over the first batch dim instead */
            mm_case m4b = {t, 4, 4, 4, {1, 3, 4, 6}, {2, 3, 6, 5}, {2, 3, 4, 5}, ta, tb, acc};
            run_mm(&m4b);
            /* b without batch dims */
            mm_case m3 = {t, 3, 2, 3, {4, 3, 9}, {9, 2}, {4, 3, 2}, ta, tb, acc};
            run_mm(&m3);
            /* matrix-vector shapes (the bf16 dot path when the K-runs are contiguous) */
            mm_case mv = {t, 3, 3, 3, {2, 1, 33}, {2, 33, 7}, {2, 1, 7}, ta, tb, acc};
            run_mm(&mv);
            mm_case vm = {t, 2, 2, 2, {6, 33}, {33, 1}, {6, 1}, ta, tb, acc};
            run_mm(&vm);
        }
        /* many small products: the batches split across the pool, BLAS single-threaded */
        mm_case many = {t, 3, 3, 3, {16, 8, 12}, {16, 12, 8}, {16, 8, 8}, false, true, false};
        run_mm(&many);
        /* one large product: BLAS with all the pool's threads */
        mm_case big = {t, 2, 2, 2, {130, 130}, {130, 131}, {130, 131}, true, false, false};
        run_mm(&big);
    }
    /* an operand that is neither row-major nor transposed (inner step 2): packed */
    {
        int64_t ane[2] = {4, 5}, bne[2] = {5, 3}, cne[2] = {4, 3};
        tv a = tv_new(ST_F32, 2, ane, NULL, 0, 2), bm = tv_c(ST_F32, 2, bne),
           c = tv_c(ST_F32, 2, cne);
        tv_rand(&a, -1, 1);
        tv_rand(&bm, -1, 1);
        double ref[12];
        ref_matmul(&a, &bm, &c, false, ref);
        st_op_desc d = desc1(ST_OP_MATMUL, 2, 1);
        d.src[0] = a.v, d.src[1] = bm.v, d.dst[0] = c.v;
        for (int b = 0; b < g_nbe; b++) {
            tv_fill(&c, NAN);
            expect_ok(g_be[b], &d);
            check_close("matmul strided", g_be[b], &c, ref, 1e-5, 1e-5);
        }
        tv_free(&a), tv_free(&bm), tv_free(&c);
    }
    /* K == 0: an empty sum */
    {
        int64_t ane[2] = {3, 0}, bne[2] = {0, 4}, cne[2] = {3, 4};
        tv a = tv_c(ST_F32, 2, ane), bm = tv_c(ST_F32, 2, bne), c = tv_c(ST_F32, 2, cne);
        double ref[12] = {0};
        st_op_desc d = desc1(ST_OP_MATMUL, 2, 1);
        d.src[0] = a.v, d.src[1] = bm.v, d.dst[0] = c.v;
        tv_fill(&c, NAN);
        expect_ok(g_be[0], &d);
        check_close("matmul K=0", g_be[0], &c, ref, 0, 0);
        tv_free(&a), tv_free(&bm), tv_free(&c);
    }
}

/* ---- copy, fill, arange ------------------------------------------------------------------ */

static double convert_ref(st_dtype to, double v) {
    switch (to) {
    case ST_BF16:
        return st_bf16_to_f32(st_f32_to_bf16((float)v));
    case ST_F16:
        return st_f16_to_f32(st_f32_to_f16((float)v));
    default:
        return (float)v;
    }
}

static void test_copy(void **state) {
    (void)state;
    static const st_dtype fl[3] = {ST_F32, ST_BF16, ST_F16};
    int64_t ne[3] = {3, 5, 7};
    static const int trans[3] = {0, 2, 1};
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < 3; t++)
            for (int layout = 0; layout < 4; layout++) {
                /* 0: contiguous both; 1: transposed src; 2: stepped dst; 3: broadcast src */
                tv src, dst;
                if (layout == 3) {
                    int64_t one[3] = {3, 1, 7};
                    src = tv_c(fl[s], 3, one);
                    tv_rand(&src, -70000, 70000); /* overflows f16 now and then */
                    tv_bcast(&src, 1, 5);
                } else {
                    src = tv_new(fl[s], 3, ne, layout == 1 ? trans : NULL, 0, 1);
                    for (int64_t i = 0; i < 105; i++)
                        tv_set(&src, i, frand(-3, 3) * pow(10, frand(-8, 4)));
                }
                dst = tv_new(fl[t], 3, ne, NULL, 0, layout == 2 ? 2 : 1);
                double ref[105];
                for (int64_t i = 0; i < 105; i++)
                    ref[i] = convert_ref(fl[t], tv_get(&src, i));
                st_op_desc d = desc1(ST_OP_COPY, 1, 1);
                d.src[0] = src.v, d.dst[0] = dst.v;
                for (int b = 0; b < g_nbe; b++) {
                    tv_fill(&dst, 0);
                    expect_ok(g_be[b], &d);
                    check_close("copy", g_be[b], &dst, ref, 0, 0); /* bit-exact conversions */
                }
                tv_free(&src), tv_free(&dst);
            }
    /* same-dtype copies of the integer types, transposed and stepped */
    static const st_dtype ints[2] = {ST_I32, ST_I8};
    for (int k = 0; k < 2; k++) {
        tv src = tv_new(ints[k], 3, ne, trans, 0, 1), dst = tv_new(ints[k], 3, ne, NULL, 1, 2);
        double ref[105];
        for (int64_t i = 0; i < 105; i++)
            tv_set(&src, i, ref[i] = floor(frand(-100, 100)));
        st_op_desc d = desc1(ST_OP_COPY, 1, 1);
        d.src[0] = src.v, d.dst[0] = dst.v;
        for (int b = 0; b < g_nbe; b++) {
            tv_fill(&dst, 0);
            expect_ok(g_be[b], &d);
            check_close("copy int", g_be[b], &dst, ref, 0, 0);
        }
        tv_free(&src), tv_free(&dst);
    }
    /* large contiguous conversion, split across threads */
    int64_t big[1] = {70001};
    tv src = tv_c(ST_F32, 1, big), dst = tv_c(ST_BF16, 1, big);
    tv_rand(&src, -5, 5);
    double *ref = malloc(sizeof(double) * 70001);
    for (int64_t i = 0; i < 70001; i++)
        ref[i] = convert_ref(ST_BF16, tv_get(&src, i));
    st_op_desc d = desc1(ST_OP_COPY, 1, 1);
    d.src[0] = src.v, d.dst[0] = dst.v;
    for (int b = 0; b < g_nbe; b++) {
        tv_fill(&dst, 0);
        expect_ok(g_be[b], &d);
        check_close("copy large", g_be[b], &dst, ref, 0, 0);
    }
    free(ref);
    tv_free(&src), tv_free(&dst);
}

static void test_fill_arange(void **state) {
    (void)state;
    static const struct {
        st_dtype t;
        float v;
        double want;
    } fills[] = {
        {ST_F32, 2.5f, 2.5},    {ST_BF16, 2.5f, 2.5}, {ST_F16, -0.1f, -0.0999755859375},
        {ST_I32, 7.9f, 7},      {ST_I32, -3.5f, -3},  {ST_I8, 5.0f, 5},
        {ST_I8, -300.0f, -128},
    };
    int64_t ne[2] = {4, 9};
    for (size_t i = 0; i < sizeof fills / sizeof *fills; i++)
        for (int layout = 0; layout < 2; layout++) {
            tv x = tv_new(fills[i].t, 2, ne, NULL, layout ? 2 : 0, 1);
            double ref[36];
            for (int k = 0; k < 36; k++)
                ref[k] = fills[i].want;
            st_op_desc d = desc1(ST_OP_FILL, 0, 1);
            d.p.alpha = fills[i].v;
            d.dst[0] = x.v;
            for (int b = 0; b < g_nbe; b++) {
                tv_fill(&x, 1);
                expect_ok(g_be[b], &d);
                check_close("fill", g_be[b], &x, ref, 0, 0);
            }
            tv_free(&x);
        }
    /* arange: f32 (large, split) and i32 */
    int64_t n[1] = {100001};
    tv x = tv_c(ST_F32, 1, n), xi = tv_c(ST_I32, 1, n);
    double *ref = malloc(sizeof(double) * 100001), *refi = malloc(sizeof(double) * 100001);
    for (int64_t i = 0; i < n[0]; i++) {
        ref[i] = (float)(1.5 + 0.25 * (double)i);
        refi[i] = 3 - 2 * (double)i;
    }
    for (int b = 0; b < g_nbe; b++) {
        st_op_desc d = desc1(ST_OP_ARANGE, 0, 1);
        d.p.alpha = 1.5f, d.p.beta = 0.25f, d.dst[0] = x.v;
        expect_ok(g_be[b], &d);
        check_close("arange f32", g_be[b], &x, ref, 0, 0);
        d.p.alpha = 3, d.p.beta = -2, d.dst[0] = xi.v;
        expect_ok(g_be[b], &d);
        check_close("arange i32", g_be[b], &xi, refi, 0, 0);
    }
    free(ref), free(refi);
    tv_free(&x), tv_free(&xi);
}

/* ---- RNG ------------------------------------------------------------------------------------- */

/* The algorithm documented in cpu_backend.c, written again here. */
static uint64_t fmix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t doc_bits(uint64_t seed, uint64_t c) {
    uint64_t key = fmix(seed + 0x9E3779B97F4A7C15ull);
    return fmix(key + (c + 1) * 0x9E3779B97F4A7C15ull);
}
static float doc_uniform(uint64_t seed, uint64_t j, float lo, float hi) {
    float u = (float)(doc_bits(seed, j) >> 40) * 0x1p-24f;
    return lo + (hi - lo) * u;
}
static double doc_normal(uint64_t seed, uint64_t j) {
    uint64_t k = j & ~1ull;
    double u1 = (double)((doc_bits(seed, k) >> 11) + 1) * 0x1p-53;
    double u2 = (double)(doc_bits(seed, k + 1) >> 11) * 0x1p-53;
    double r = sqrt(-2 * log(u1)), t = 2 * M_PI * u2;
    return (float)((j & 1) ? r * sin(t) : r * cos(t));
}

static void rng_fill(st_backend *be, st_op op, float *out, int64_t n, uint64_t seed, uint64_t off,
                     float a, float b) {
    st_op_desc d = desc1(op, 0, 1);
    d.p.seed = seed, d.p.offset = off, d.p.alpha = a, d.p.beta = b;
    d.dst[0] = (st_view){.data = out, .dtype = ST_F32, .ndim = 1, .ne = {n}, .nb = {4}};
    expect_ok(be, &d);
}

static void test_rng(void **state) {
    (void)state;
    enum { N = 100000 };
    float *ref = malloc(sizeof(float) * N), *got = malloc(sizeof(float) * N);
    for (int kind = 0; kind < 2; kind++) {
        st_op op = kind ? ST_OP_RAND_UNIFORM : ST_OP_RAND_NORMAL;
        float a = kind ? -2.0f : 0.5f, b = kind ? 3.0f : 2.0f;
        rng_fill(g_scalar, op, ref, N, 42, 0, a, b);
        /* the documented algorithm, reproduced */
        for (int i = 0; i < 1000; i++) {
            double want =
                kind ? doc_uniform(42, (uint64_t)i, a, b) : a + b * doc_normal(42, (uint64_t)i);
            if (fabs(ref[i] - want) > 1e-6 * (1 + fabs(want)))
                fail_msg("%s element %d: %.9g, the documented algorithm gives %.9g", st_op_name(op),
                         i, ref[i], want);
        }
        /* identical for every backend (levels, 1 vs 2 vs 3 threads) */
        for (int bi = 0; bi < g_nbe; bi++) {
            rng_fill(g_be[bi], op, got, N, 42, 0, a, b);
            if (memcmp(got, ref, sizeof(float) * N) != 0)
                fail_msg("%s differs on %s", st_op_name(op), be_label(g_be[bi]));
        }
        /* offset: [0,N) at once == [0,k) then [k,N) with offset k (k odd splits a pair) */
        static const int64_t ks[] = {1, 4097, 50000};
        for (size_t ki = 0; ki < 3; ki++) {
            int64_t k = ks[ki];
            rng_fill(g_be[g_nbe - 1], op, got, k, 42, 0, a, b);
            rng_fill(g_be[g_nbe - 1], op, got + k, N - k, 42, (uint64_t)k, a, b);
            if (memcmp(got, ref, sizeof(float) * N) != 0)
                fail_msg("%s: two fills split at %lld differ from one", st_op_name(op),
                         (long long)k);
        }
        /* statistics */
        double s = 0, s2 = 0, lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < N; i++) {
            s += ref[i], s2 += (double)ref[i] * ref[i];
            lo = fmin(lo, ref[i]), hi = fmax(hi, ref[i]);
        }
        double mean = s / N, sd = sqrt(s2 / N - mean * mean);
        if (kind == 0) {
            /* N(0.5, 2^2): the mean's standard error is 2/sqrt(1e5) = 0.0063 and the
             * std's about 2/sqrt(2e5) = 0.0045: allow ~6 sigma */
            if (fabs(mean - 0.5) > 0.04 || fabs(sd - 2.0) > 0.03)
                fail_msg("normal: mean %.4f (want 0.5), std %.4f (want 2)", mean, sd);
        } else {
            /* U[-2,3): mean 0.5 (se 1.44/316 = 0.0046), std 5/sqrt(12) = 1.443 */
            if (fabs(mean - 0.5) > 0.03 || fabs(sd - 1.4434) > 0.02 || lo < -2 || hi >= 3)
                fail_msg("uniform: mean %.4f std %.4f range [%g, %g]", mean, sd, lo, hi);
        }
        /* another seed gives other numbers */
        rng_fill(g_scalar, op, got, 100, 43, 0, a, b);
        assert_true(memcmp(got, ref, sizeof(float) * 100) != 0);
    }
    free(ref), free(got);
}

/* ---- every SIMD level against the scalar level ------------------------------------------ */

static void test_levels_match_scalar(void **state) {
    (void)state;
    int64_t ne[2] = {37, 129}, vne[1] = {129}, wne[2] = {129, 65}, cne[2] = {37, 65};
    tv x = tv_c(ST_F32, 2, ne), x2 = tv_c(ST_F32, 2, ne), g = tv_c(ST_F32, 1, vne);
    tv w = tv_c(ST_BF16, 2, wne), xb = tv_c(ST_BF16, 2, ne);
    tv_rand(&x, -3, 3), tv_rand(&x2, 0.2, 3), tv_rand(&g, 0.5, 1.5);
    tv_rand(&w, -1, 1), tv_rand(&xb, -1, 1);
    int64_t n = 37 * 129;
    struct {
        st_op op;
        int nsrc;
        tv *s0, *s1, *s2;
        int64_t *one;
        st_dtype odt;
        double atol, rtol;
    } ops[] = {
        {ST_OP_EXP, 1, &x, NULL, NULL, ne, ST_F32, 1e-6, 1e-5},
        {ST_OP_LOG, 1, &x2, NULL, NULL, ne, ST_F32, 1e-6, 1e-5},
        {ST_OP_TANH, 1, &x, NULL, NULL, ne, ST_F32, 1e-6, 1e-5},
        {ST_OP_GELU_TANH, 1, &x, NULL, NULL, ne, ST_F32, 1e-6, 1e-5},
        {ST_OP_GELU_ERF, 1, &x, NULL, NULL, ne, ST_F32, 1e-6, 1e-5},
        {ST_OP_SILU, 1, &x, NULL, NULL, ne, ST_F32, 1e-6, 1e-5},
        {ST_OP_DIV, 2, &x, &x2, NULL, ne, ST_F32, 0, 1e-6},
        {ST_OP_SOFTMAX, 1, &x, NULL, NULL, ne, ST_F32, 1e-7, 1e-5},
        {ST_OP_LOG_SOFTMAX, 1, &x, NULL, NULL, ne, ST_F32, 1e-5, 1e-5},
        {ST_OP_LAYERNORM, 3, &x, &g, &g, ne, ST_F32, 1e-5, 1e-5},
        {ST_OP_RMSNORM, 2, &x, &g, NULL, ne, ST_F32, 1e-5, 1e-5},
        {ST_OP_MATMUL, 2, &xb, &w, NULL, cne, ST_F32, 1e-4, 1e-5},
        {ST_OP_COPY, 1, &x, NULL, NULL, ne, ST_F16, 0, 0},
        {ST_OP_COPY, 1, &xb, NULL, NULL, ne, ST_F32, 0, 0},
    };
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        tv ref = tv_c(ops[i].odt, 2, ops[i].one), out = tv_c(ops[i].odt, 2, ops[i].one);
        st_op_desc d = desc1(ops[i].op, ops[i].nsrc, 1);
        d.p.eps = 1e-5f;
        d.src[0] = ops[i].s0->v;
        if (ops[i].s1) d.src[1] = ops[i].s1->v;
        if (ops[i].s2) d.src[2] = ops[i].s2->v;
        d.dst[0] = ref.v;
        expect_ok(g_scalar, &d);
        double *r = malloc(sizeof(double) * (size_t)tv_n(&ref));
        for (int64_t k = 0; k < tv_n(&ref); k++)
            r[k] = tv_get(&ref, k);
        d.dst[0] = out.v;
        for (int b = 0; b < g_nbe; b++) {
            tv_fill(&out, NAN);
            expect_ok(g_be[b], &d);
            check_close(st_op_name(ops[i].op), g_be[b], &out, r, ops[i].atol, ops[i].rtol);
        }
        free(r);
        tv_free(&ref), tv_free(&out);
    }
    (void)n;
    tv_free(&x), tv_free(&x2), tv_free(&g), tv_free(&w), tv_free(&xb);
}

/* ---- streaming stores ------------------------------------------------------------------
 * Destinations of 16 MiB and more of the binary ops, the cheap unary ops and
 * the norms are written with the kernels' streaming forms (cpu_backend.c);
 * the transcendental ops and softmax keep ordinary stores and are checked
 * the same way here. The result must be bit for bit what the same
 * backend writes through its ordinary path, here obtained by running the
 * same op on row blocks small enough to stay below the threshold. The shape
 * has an odd row length so that rows, thread splits and the destination
 * (also shifted by one float off its 64-byte alignment) start at every
 * alignment; one binary case broadcasts a row. The scalar level is left
 * out: its streaming forms are its ordinary kernels (test_kernels). */
static void test_streaming_ops(void **state) {
    (void)state;
    const int64_t R = 4100, C = 1027, BLOCK = 500; /* 16.8 MB; blocks of 2 MB */
    int64_t ne[2] = {R, C}, vne[1] = {C};
    tv x = tv_c(ST_F32, 2, ne), x2 = tv_c(ST_F32, 2, ne), g = tv_c(ST_F32, 1, vne);
    tv bv = tv_c(ST_F32, 1, vne), ref = tv_c(ST_F32, 2, ne), out = tv_c(ST_F32, 2, ne);
    tv_rand(&x, -3, 3), tv_rand(&x2, 0.2, 3), tv_rand(&g, 0.5, 1.5), tv_rand(&bv, -0.5, 0.5);
    st_view row = x2.v; /* a row of x2 broadcast over every row */
    row.nb[0] = 0;
    struct {
        st_op op;
        int nsrc;
        bool bcast, shifted;
    } ops[] = {
        {ST_OP_ADD, 2, false, false},      {ST_OP_MUL, 2, true, true},
        {ST_OP_DIV, 2, false, true},       {ST_OP_RELU, 1, false, true},
        {ST_OP_SCALE, 1, false, false},    {ST_OP_GELU_TANH, 1, false, true},
        {ST_OP_SOFTMAX, 1, false, true},   {ST_OP_LAYERNORM, 3, false, true},
        {ST_OP_LAYERNORM, 1, false, false}, {ST_OP_RMSNORM, 2, false, true},
    };
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        st_op_desc d = desc1(ops[i].op, ops[i].nsrc, 1);
        d.p.eps = 1e-5f;
        d.src[0] = x.v;
        d.p.alpha = 0.37f;
        if (ops[i].nsrc == 2 && ops[i].op != ST_OP_RMSNORM) d.src[1] = ops[i].bcast ? row : x2.v;
        if (ops[i].op == ST_OP_RMSNORM || (ops[i].op == ST_OP_LAYERNORM && ops[i].nsrc == 3))
            d.src[1] = g.v;
        if (ops[i].op == ST_OP_LAYERNORM && ops[i].nsrc == 3) d.src[2] = bv.v;
        st_view o = out.v, rf = ref.v;
        if (ops[i].shifted) { /* one float past the 64-byte boundary */
            o.data = (float *)out.mem + 1;
            rf.data = (float *)ref.mem + 1;
        }
        for (int b = 0; b < g_nbe; b++) {
            if (st_backend_cpu_simd_level(g_be[b]) == ST_SIMD_SCALAR) continue;
            /* the ordinary path, block by block */
            for (int64_t r0 = 0; r0 < R; r0 += BLOCK) {
                st_op_desc db = d;
                int64_t nr = R - r0 < BLOCK ? R - r0 : BLOCK;
                for (int k = 0; k < d.n_src; k++) {
                    if (d.src[k].ndim != 2) continue; /* gamma, beta */
                    db.src[k].ne[0] = nr;
                    db.src[k].data = (char *)d.src[k].data + r0 * d.src[k].nb[0];
                }
                db.dst[0] = rf;
                db.dst[0].ne[0] = nr;
                db.dst[0].data = (char *)rf.data + r0 * rf.nb[0];
                expect_ok(g_be[b], &db);
            }
            /* the whole op: streams */
            memset(out.mem, 0xff, (size_t)(R * C + 16) * sizeof(float));
            d.dst[0] = o;
            expect_ok(g_be[b], &d);
            const float *got = o.data, *want = rf.data;
            if (memcmp(got, want, (size_t)(R * C) * sizeof(float)) != 0) {
                for (int64_t k = 0; k < R * C; k++)
                    if (memcmp(&got[k], &want[k], sizeof(float)) != 0)
                        fail_msg("%s on %s: element %lld: streamed %.9g, ordinary %.9g",
                                 st_op_name(ops[i].op), be_label(g_be[b]), (long long)k, got[k],
                                 want[k]);
            }
            /* nothing written around the destination */
            const uint32_t *mem = out.mem;
            int64_t lo = ops[i].shifted ? 1 : 0;
            for (int64_t k = 0; k < R * C + 16; k++)
                if ((k < lo || k >= lo + R * C) && mem[k] != 0xffffffffu)
                    fail_msg("%s on %s: wrote outside dst at %lld", st_op_name(ops[i].op),
                             be_label(g_be[b]), (long long)(k - lo));
        }
    }
    tv_free(&x), tv_free(&x2), tv_free(&g), tv_free(&bv), tv_free(&ref), tv_free(&out);
}

/* ---- out of memory ------------------------------------------------------------------ */

static void test_out_of_memory(void **state) {
    (void)state;
    /* creation: every allocation failing in turn gives a clean error, no leak */
    st_backend_cpu_params p = st_backend_cpu_default_params();
    p.n_threads = 2;
    p.simd_level = ST_SIMD_SCALAR;
    int64_t live0 = st_alloc_get_stats().live_bytes;
    bool created = false;
    for (int64_t n = 0; n < 50 && !created; n++) {
        st_backend *be = NULL;
        st_alloc_fail_after(n);
        st_status s = st_backend_cpu_new(&p, &be);
        st_alloc_fail_after(-1);
        if (s == ST_OK) {
            created = true;
            st_backend_free(be);
        } else {
            assert_null(be);
        }
        assert_int_equal(st_alloc_get_stats().live_bytes, live0);
    }
    assert_true(created);

    /* an op that needs scratch on a fresh backend: ST_ERR_NOMEM, then fine */
    st_backend *be = NULL;
    assert_int_equal(st_backend_cpu_new(&p, &be), ST_OK);
    int64_t ne[2] = {8, 16}, vne[1] = {16};
    tv x = tv_c(ST_F32, 2, ne), dy = tv_c(ST_F32, 2, ne), dx = tv_c(ST_F32, 2, ne);
    tv dg = tv_c(ST_F32, 1, vne);
    tv_rand(&x, -1, 1), tv_rand(&dy, -1, 1);
    st_op_desc d = desc1(ST_OP_RMSNORM_BACKWARD, 3, 2);
    d.p.eps = 1e-5f;
    d.src[0] = x.v, d.src[2] = dy.v, d.dst[0] = dx.v, d.dst[1] = dg.v;
    st_alloc_fail_after(0);
    st_status s = st_backend_compute(be, &d);
    st_alloc_fail_after(-1);
    assert_int_equal(s, ST_ERR_NOMEM);
    assert_non_null(strstr(st_last_error(), "scratch"));
    expect_ok(be, &d);
    st_backend_free(be);
    tv_free(&x), tv_free(&dy), tv_free(&dx), tv_free(&dg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes_and_names),
        cmocka_unit_test(test_interface),
        cmocka_unit_test(test_creation_errors),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_unary_backward),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_axpy),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_max_backward),
        cmocka_unit_test(test_row_ops),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_embedding_backward),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_fill_arange),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_levels_match_scalar),
        cmocka_unit_test(test_streaming_ops),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, setup_backends, teardown_backends);
}
