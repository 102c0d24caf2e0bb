/*
 * test_kernels.c — the CPU kernel tables (src/backend/cpu/kernels*.c).
 *
 * Two kinds of check:
 *  1. The scalar table (the spec) against independent double-precision
 *     references: libm in double, finite differences for every backward
 *     kernel, nearest-value searches for the conversions.
 *  2. Every SIMD table this CPU can run (layer 1 decides: st_hw_query +
 *     st_hw_simd_supported) against the scalar table, on random inputs whose
 *     lengths cover every tail (0, 1, 7, 15, 16, 17, 31, 33, 100, 1000,
 *     4099), with aliasing and broadcast strides, dense sweeps and special
 *     values for the vectorized transcendentals, and bit-for-bit equality for
 *     the conversions (exhaustive over all 65536 f16/bf16 patterns).
 * Buffers are allocated with guard elements past the end that must stay
 * untouched. Tolerances are stated next to each table entry.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_math.h"
#include "strata/hw.h"

static const int64_t k_lengths[] = {0, 1, 7, 15, 16, 17, 31, 33, 100, 1000, 4099};
#define N_LENGTHS (sizeof k_lengths / sizeof k_lengths[0])
#define MAX_LEN 4099
#define GUARD 19 /* floats past the end that no kernel may write */
#define GUARD_VAL 12345.678f

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((rng_next() >> 40) * (1.0 / 16777216.0));
}
static void fill(float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = rng_uniform(lo, hi);
}

/* a float buffer of n + GUARD, guard filled */
static float *fbuf(int64_t n) {
    float *p = malloc((size_t)(n + GUARD) * sizeof(float));
    assert_non_null(p);
    for (int64_t i = 0; i < n + GUARD; i++) p[i] = GUARD_VAL;
    return p;
}
/* (re)arm the guard of a reused buffer before a kernel writes n elements */
static void guard(float *p, int64_t n) {
    for (int64_t i = n; i < n + GUARD; i++) p[i] = GUARD_VAL;
}
static void check_guard(const float *p, int64_t n, const char *what) {
    for (int64_t i = n; i < n + GUARD; i++) {
        if (p[i] != GUARD_VAL) fail_msg("%s: wrote past the end (n=%lld, at %lld)", what, (long long)n, (long long)i);
    }
}

static bool same_or_both_nan(float a, float b) { return (isnan(a) && isnan(b)) || a == b; }

/* |got - want| <= rel |want| + abs_ (NaN must match NaN, inf must match inf) */
static bool close_to(float got, float want, double rel, double abs_) {
    if (got == want) return true;
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got);
    if (isinf(want) || isinf(got)) return got == want;
    return fabs((double)got - want) <= rel * fabs((double)want) + abs_;
}

/* The SIMD levels this machine runs (besides scalar), as layer 1 says. */
static int simd_levels(const st_cpu_kernels **out) {
    st_hw_info info;
    int n = 0;
    if (st_hw_query(&info) != ST_OK) return 0;
    const st_simd_level cand[] = {ST_SIMD_AVX2, ST_SIMD_AVX512};
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
        const st_cpu_kernels *k = st__cpu_kernels(cand[i]);
        if (k && st_hw_simd_supported(&info, cand[i])) out[n++] = k;
    }
    return n;
}

static const st_cpu_kernels *S; /* the scalar table */

static int simd_levels(const st_cpu_kernels **out);

static int group_setup(void **state) {
    (void)state;
    S = st__cpu_kernels(ST_SIMD_SCALAR);
    const st_cpu_kernels *lv[4];
    int nl = simd_levels(lv);
    print_message("kernel levels tested here: scalar");
    for (int l = 0; l < nl; l++) print_message(" %s", lv[l]->name);
    print_message("\n");
    return S ? 0 : -1;
}

static const char *opname(st_op op) {
    static const char *names[] = {"neg", "exp", "log", "sqrt", "tanh", "gelu_tanh",
                                  "gelu_erf", "silu", "relu", "scale", "add", "sub", "mul", "div"};
    return op >= ST_OP_NEG && op <= ST_OP_DIV ? names[op - ST_OP_NEG] : "?";
}

/* ---- the table itself ------------------------------------------------------------------ */

static void test_tables(void **state) {
    (void)state;
    assert_non_null(S);
    assert_int_equal(S->level, ST_SIMD_SCALAR);
    assert_string_equal(S->name, "scalar");
    assert_null(st__cpu_kernels(ST_SIMD_NEON));
    assert_null(st__cpu_kernels(ST_SIMD_COUNT_));
#if defined(__x86_64__)
    const st_cpu_kernels *a2 = st__cpu_kernels(ST_SIMD_AVX2);
    const st_cpu_kernels *a5 = st__cpu_kernels(ST_SIMD_AVX512);
    assert_non_null(a2);
    assert_non_null(a5);
    assert_int_equal(a2->level, ST_SIMD_AVX2);
    assert_string_equal(a2->name, "avx2");
    assert_int_equal(a5->level, ST_SIMD_AVX512);
    assert_string_equal(a5->name, "avx512");
#endif
    const st_cpu_kernels *lv[4];
    int nl = simd_levels(lv);
    for (int l = 0; l < nl; l++) {
        const st_cpu_kernels *k = lv[l];
        /* every slot filled */
        const void *slots[] = {
            (const void *)k->unary, (const void *)k->unary_backward, (const void *)k->binary,
            (const void *)k->axpy, (const void *)k->sum, (const void *)k->max, (const void *)k->dot,
            (const void *)k->softmax, (const void *)k->log_softmax, (const void *)k->softmax_backward,
            (const void *)k->log_softmax_backward, (const void *)k->layernorm,
            (const void *)k->layernorm_backward, (const void *)k->rmsnorm,
            (const void *)k->rmsnorm_backward, (const void *)k->bf16_to_f32,
            (const void *)k->f32_to_bf16, (const void *)k->f16_to_f32, (const void *)k->f32_to_f16,
            (const void *)k->dot_bf16, (const void *)k->unary_nt, (const void *)k->binary_nt,
            (const void *)k->layernorm_nt, (const void *)k->rmsnorm_nt,
            (const void *)k->stream_fence};
        for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) assert_non_null(slots[i]);
    }
    /* the reference's streaming forms are its plain kernels */
    assert_true(S->unary_nt == S->unary && S->binary_nt == S->binary);
    assert_true(S->layernorm_nt == S->layernorm && S->rmsnorm_nt == S->rmsnorm);
    assert_non_null(S->stream_fence);
}

/* ---- scalar against double references -------------------------------------------------- */

static double d_gelu_tanh(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double d_unary(st_op op, double x, double alpha) {
    switch (op) {
    case ST_OP_NEG: return -x;
    case ST_OP_EXP: return exp(x);
    case ST_OP_LOG: return log(x);
    case ST_OP_SQRT: return sqrt(x);
    case ST_OP_TANH: return tanh(x);
    case ST_OP_GELU_TANH: return d_gelu_tanh(x);
    case ST_OP_GELU_ERF: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case ST_OP_SILU: return x / (1.0 + exp(-x));
    case ST_OP_RELU: return x > 0 ? x : 0;
    case ST_OP_SCALE: return alpha * x;
    default: return NAN;
    }
}

/* Scalar forward vs libm in double: rel 4e-7 (a few f32 ulp: the scalar
 * table rounds f32 arguments), plus abs 1e-7 (1 + |x|) for gelu/silu whose
 * 1 + erf / 1 + tanh cancel for negative x; derivatives vs central
 * differences of the double function (h = 1e-3 (1 + |x|)): rel/abs 2e-5. */
static void test_scalar_unary_vs_double(void **state) {
    (void)state;
    float x[64], y[64], dy[64], dx[64];
    for (st_op op = ST_OP_NEG; op <= ST_OP_SCALE; op++) {
        bool pos = op == ST_OP_LOG || op == ST_OP_SQRT;
        fill(x, 64, pos ? 0.05f : -6.0f, 6.0f);
        for (int i = 0; i < 64; i++) dy[i] = 1.0f;
        if (op == ST_OP_RELU) /* keep away from the kink for finite differences */
            for (int i = 0; i < 64; i++) x[i] = fabsf(x[i]) < 0.1f ? 0.5f : x[i];
        S->unary(op, 64, x, y, 1.75f);
        S->unary_backward(op, 64, x, NULL, dy, dx, 1.75f);
        for (int i = 0; i < 64; i++) {
            double want = d_unary(op, x[i], 1.75);
            double tol = 4e-7 * fabs(want) + 1e-7 * (1.0 + fabs(x[i]));
            if (fabs(y[i] - want) > tol)
                fail_msg("scalar %s(%g) = %.9g, double says %.9g", opname(op), x[i], y[i], want);
            double h = 1e-3 * (1.0 + fabs(x[i]));
            double fd = (d_unary(op, x[i] + h, 1.75) - d_unary(op, x[i] - h, 1.75)) / (2 * h);
            if (fabs(dx[i] - fd) > 2e-5 * (1.0 + fabs(fd)))
                fail_msg("scalar d%s(%g) = %.9g, finite difference %.9g", opname(op), x[i], dx[i], fd);
        }
    }
}

/* Row kernels of the scalar table vs double: softmax sums to 1 (5e-7) and
 * matches exp(x-max)/sum (abs 1e-7); layer/RMS norm forward vs a double
 * computation (abs 2e-6 on O(1) outputs); every backward vs central
 * differences of L = sum(w * f(x)) computed in double (abs 2e-5). */
static void d_softmax(int n, const double *x, double *y) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int i = 0; i < n; i++) s += exp(x[i] - m);
    for (int i = 0; i < n; i++) y[i] = exp(x[i] - m) / s;
}
static void d_layernorm(int n, const double *x, const double *g, const double *b, double eps, double *y) {
    double mu = 0, v = 0;
    for (int i = 0; i < n; i++) mu += x[i];
    mu /= n;
    for (int i = 0; i < n; i++) v += (x[i] - mu) * (x[i] - mu);
    v /= n;
    for (int i = 0; i < n; i++) y[i] = (x[i] - mu) / sqrt(v + eps) * g[i] + b[i];
}
static void d_rmsnorm(int n, const double *x, const double *g, double eps, double *y) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    for (int i = 0; i < n; i++) y[i] = x[i] / sqrt(s / n + eps) * g[i];
}

enum { ROW_SOFTMAX, ROW_LOG_SOFTMAX, ROW_LAYERNORM, ROW_RMSNORM };
/* L = sum w * f(x, g, b) in double */
static double d_row_loss(int kind, int n, const double *x, const double *g, const double *b,
                         const double *w, double eps) {
    double y[16], L = 0;
    switch (kind) {
    case ROW_SOFTMAX: d_softmax(n, x, y); break;
    case ROW_LOG_SOFTMAX:
        d_softmax(n, x, y);
        for (int i = 0; i < n; i++) y[i] = log(y[i]);
        break;
    case ROW_LAYERNORM: d_layernorm(n, x, g, b, eps, y); break;
    default: d_rmsnorm(n, x, g, eps, y); break;
    }
    for (int i = 0; i < n; i++) L += w[i] * y[i];
    return L;
}

static void test_scalar_rows_vs_double(void **state) {
    (void)state;
    enum { N = 13 };
    const float eps = 1e-5f;
    float x[N], g[N], b[N], w[N], y[N], dx[N], dg[N], db[N];
    double xd[N], gd[N], bd[N], wd[N], yd[N];
    for (int rep = 0; rep < 3; rep++) {
        fill(x, N, -3.0f, 3.0f);
        fill(g, N, 0.5f, 1.5f);
        fill(b, N, -1.0f, 1.0f);
        fill(w, N, -1.0f, 1.0f);
        for (int i = 0; i < N; i++) xd[i] = x[i], gd[i] = g[i], bd[i] = b[i], wd[i] = w[i];

        /* softmax: sums to one, matches double */
        S->softmax(N, x, y);
        d_softmax(N, xd, yd);
        double s = 0;
        for (int i = 0; i < N; i++) {
            s += y[i];
            assert_true(fabs(y[i] - yd[i]) <= 1e-7);
        }
        assert_true(fabs(s - 1.0) <= 5e-7);
        S->log_softmax(N, x, y);
        for (int i = 0; i < N; i++) assert_true(fabs(y[i] - log(yd[i])) <= 1e-6);
        S->layernorm(N, x, g, b, eps, y);
        d_layernorm(N, xd, gd, bd, eps, yd);
        for (int i = 0; i < N; i++) assert_true(fabs(y[i] - yd[i]) <= 2e-6);
        S->rmsnorm(N, x, g, eps, y);
        d_rmsnorm(N, xd, gd, eps, yd);
        for (int i = 0; i < N; i++) assert_true(fabs(y[i] - yd[i]) <= 2e-6);

        /* backwards against finite differences in double (h = 1e-4) */
        for (int kind = ROW_SOFTMAX; kind <= ROW_RMSNORM; kind++) {
            for (int i = 0; i < N; i++) dg[i] = 0.25f, db[i] = -0.5f; /* accumulated into */
            switch (kind) {
            case ROW_SOFTMAX:
                S->softmax(N, x, y);
                S->softmax_backward(N, y, w, dx);
                break;
            case ROW_LOG_SOFTMAX:
                S->log_softmax(N, x, y);
                S->log_softmax_backward(N, y, w, dx);
                break;
            case ROW_LAYERNORM: S->layernorm_backward(N, x, g, w, eps, dx, dg, db); break;
            default: S->rmsnorm_backward(N, x, g, w, eps, dx, dg); break;
            }
            const double h = 1e-4;
            for (int i = 0; i < N; i++) {
                double keep = xd[i];
                xd[i] = keep + h;
                double lp = d_row_loss(kind, N, xd, gd, bd, wd, eps);
                xd[i] = keep - h;
                double lm = d_row_loss(kind, N, xd, gd, bd, wd, eps);
                xd[i] = keep;
                double fd = (lp - lm) / (2 * h);
                if (fabs(dx[i] - fd) > 2e-5 * (1.0 + fabs(fd)))
                    fail_msg("row kind %d: dx[%d] = %.8g, finite difference %.8g", kind, i, dx[i], fd);
                if (kind == ROW_LAYERNORM || kind == ROW_RMSNORM) {
                    keep = gd[i];
                    gd[i] = keep + h;
                    lp = d_row_loss(kind, N, xd, gd, bd, wd, eps);
                    gd[i] = keep - h;
                    lm = d_row_loss(kind, N, xd, gd, bd, wd, eps);
                    gd[i] = keep;
                    fd = (lp - lm) / (2 * h);
                    assert_true(fabs((dg[i] - 0.25f) - fd) <= 2e-5 * (1.0 + fabs(fd)));
                }
                if (kind == ROW_LAYERNORM) assert_true(fabs((db[i] + 0.5f) - w[i]) <= 1e-6);
                else assert_true(db[i] == -0.5f);
            }
        }
    }
}

/* The bit-level conversions against the definition: f32 -> f16/bf16 picks
 * the nearest representable value (ties to the even pattern) and
 * f16/bf16 -> f32 is exact (checked through ldexp). */
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static void test_scalar_conversions_vs_definition(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st__k_f16_to_f32((uint16_t)h);
        int e = (h >> 10) & 0x1f;
        if (e == 0x1f) {
            if (h & 0x3ff) assert_true(isnan(f));
            else assert_true(isinf(f) && (f < 0) == ((h & 0x8000) != 0));
        } else {
            assert_true((double)f == f16_value((uint16_t)h));
            assert_true((signbit(f) != 0) == ((h & 0x8000) != 0));
            assert_int_equal(st__k_f32_to_f16(f), h); /* round trip */
        }
        float bf = st__k_bf16_to_f32((uint16_t)h);
        if (!isnan(bf)) assert_int_equal(st__k_f32_to_bf16(bf), h);
    }
    /* nearest-value property on random finite f32 in the f16 range */
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)rng_next();
        u = (u & 0x80000000u) | (u % 0x47800000u); /* |x| < 65536 */
        float x = st__bits_f32(u);
        uint16_t h = st__k_f32_to_f16(x);
        double err = fabs(f16_value(h) - x);
        if ((h & 0x7fff) == 0x7c00) { /* inf: only when |x| >= 65520 */
            assert_true(fabs(x) >= 65520.0);
            continue;
        }
        uint16_t nb[2] = {(uint16_t)(h + 1), (uint16_t)(h - 1)};
        for (int k = 0; k < 2; k++) {
            if ((nb[k] & 0x7fff) >= 0x7c00 || (h & 0x7fff) == 0 ) continue; /* stay finite, same sign */
            double e2 = fabs(f16_value(nb[k]) - x);
            if (e2 < err || (e2 == err && (h & 1)))
                fail_msg("f32_to_f16(%.9g) = 0x%04x, 0x%04x is nearer or even", x, h, nb[k]);
        }
        uint16_t b = st__k_f32_to_bf16(x);
        double eb = fabs((double)st__k_bf16_to_f32(b) - x);
        for (int k = -1; k <= 1; k += 2) {
            uint16_t b2 = (uint16_t)(b + k);
            if ((b & 0x7fff) == 0 || (b2 & 0x7f80) == 0x7f80) continue;
            double e2 = fabs((double)st__k_bf16_to_f32(b2) - x);
            assert_true(e2 > eb || (e2 == eb && !(b & 1)));
        }
    }
    /* hand-picked: ties, subnormals, limits, specials */
    struct { float x; uint16_t f16, bf16; } cases[] = {
        {0.0f, 0x0000, 0x0000},
        {-0.0f, 0x8000, 0x8000},
        {1.0f, 0x3c00, 0x3f80},
        {-2.0f, 0xc000, 0xc000},
        {65504.0f, 0x7bff, 0x4780},
        {65519.996f, 0x7bff, 0x4780},
        {65520.0f, 0x7c00, 0x4780},
        {1e10f, 0x7c00, 0x5015},
        {5.9604644775390625e-08f, 0x0001, 0x3380},   /* 2^-24: smallest f16 subnormal */
        {2.98023223876953125e-08f, 0x0000, 0x3300},  /* 2^-25: tie -> 0 (even) */
        {8.940696716308594e-08f, 0x0002, 0x33c0},    /* 1.5 * 2^-24: tie -> 2 */
        {6.097555160522461e-05f, 0x03ff, 0x3880},    /* largest f16 subnormal */
        {6.103515625e-05f, 0x0400, 0x3880},          /* 2^-14 */
        {1.00048828125f, 0x3c00, 0x3f80},            /* 1 + 2^-11: f16 tie -> even */
        {1.00146484375f, 0x3c02, 0x3f80},            /* 1 + 3*2^-11: f16 tie -> even (up) */
        {1.00390625f, 0x3c04, 0x3f80},               /* 1 + 2^-8: bf16 tie -> even */
        {1.01171875f, 0x3c0c, 0x3f82},               /* 1 + 3*2^-8: bf16 tie -> up */
        {1e-40f, 0x0000, 0x0001},                    /* f32 subnormal */
        {-1.4e-45f, 0x8000, 0x8000},
        {INFINITY, 0x7c00, 0x7f80},
        {-INFINITY, 0xfc00, 0xff80},
        {3.3895314e38f, 0x7c00, 0x7f7f},             /* rounds to the largest bf16 */
        {FLT_MAX, 0x7c00, 0x7f80},                   /* bf16 overflow to inf */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (st__k_f32_to_f16(cases[i].x) != cases[i].f16 || st__k_f32_to_bf16(cases[i].x) != cases[i].bf16)
            fail_msg("case %zu (%.9g): f16 0x%04x (want 0x%04x), bf16 0x%04x (want 0x%04x)", i,
                     cases[i].x, st__k_f32_to_f16(cases[i].x), cases[i].f16,
                     st__k_f32_to_bf16(cases[i].x), cases[i].bf16);
    }
    /* NaN stays NaN and becomes quiet, sign kept */
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fa00000u, 0xff812345u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        float f = st__bits_f32(nans[i]);
        uint16_t h = st__k_f32_to_f16(f), b = st__k_f32_to_bf16(f);
        assert_true((h & 0x7c00) == 0x7c00 && (h & 0x200));
        assert_true((h & 0x8000) == ((nans[i] >> 16) & 0x8000));
        assert_true(isnan(st__k_bf16_to_f32(b)) && (b & 0x40));
        assert_true((b & 0x8000) == ((nans[i] >> 16) & 0x8000));
    }
}

/* ---- SIMD levels against scalar ---------------------------------------------------------- */

/* Per unary op: input range and tolerance vs scalar,
 * |simd - scalar| <= rel |scalar| + abs (1 + |x|).
 * exp/log/tanh/silu: rel 2e-6 (the vector polynomials are ~1-2 ulp);
 * gelu: the scalar 1 + tanh/erf cancels for negative x, the vector forms
 * (x sigmoid(2u); x Phi(x) from a fitted log erfc) do not, so they differ
 * there by a few f32 ulp of 1 times |x|;
 * neg/sqrt/relu/scale: exact (IEEE-correct operations on both sides). */
typedef struct unary_case {
    st_op op;
    float lo, hi;
    double rel, abs_;
    double brel, babs; /* backward */
} unary_case;

static const unary_case k_unary_cases[] = {
    {ST_OP_NEG, -100, 100, 0, 0, 0, 0},
    {ST_OP_EXP, -87, 88, 2e-6, 1e-44, 2e-6, 1e-44}, /* normal results; subnormals: sweeps */
    {ST_OP_LOG, 1e-3f, 1e4f, 2e-6, 1e-7, 1e-6, 0},
    {ST_OP_SQRT, 0, 1e4f, 0, 0, 1e-6, 0},
    {ST_OP_TANH, -12, 12, 2e-6, 1e-7, 2e-6, 1e-7},
    {ST_OP_GELU_TANH, -12, 12, 2e-6, 2e-7, 2e-6, 2e-6},
    {ST_OP_GELU_ERF, -12, 12, 2e-6, 3e-7, 2e-6, 2e-6},
    {ST_OP_SILU, -30, 30, 2e-6, 1e-7, 2e-6, 2e-6},
    {ST_OP_RELU, -10, 10, 0, 0, 0, 0},
    {ST_OP_SCALE, -100, 100, 0, 0, 0, 0},
};

static void test_unary_levels(void **state) {
    (void)state;
    const st_cpu_kernels *lv[4];
    int nl = simd_levels(lv);
    float *x = fbuf(MAX_LEN), *ys = fbuf(MAX_LEN), *yv = fbuf(MAX_LEN), *dy = fbuf(MAX_LEN);
    float *dxs = fbuf(MAX_LEN), *dxv = fbuf(MAX_LEN), *al = fbuf(MAX_LEN);
    const float alpha = -0.37f;
    for (int l = 0; l < nl; l++) {
        const st_cpu_kernels *K = lv[l];
        for (size_t c = 0; c < sizeof k_unary_cases / sizeof k_unary_cases[0]; c++) {
            const unary_case *uc = &k_unary_cases[c];
            for (size_t li = 0; li < N_LENGTHS; li++) {
                int64_t n = k_lengths[li];
                fill(x, n, uc->lo, uc->hi);
                fill(dy, n, -2.0f, 2.0f);
                S->unary(uc->op, n, x, ys, alpha);
                guard(yv, n);
                K->unary(uc->op, n, x, yv, alpha);
                check_guard(yv, n, K->name);
                memcpy(al, x, (size_t)n * sizeof(float));
                guard(al, n);
                K->unary(uc->op, n, al, al, alpha); /* in place */
                check_guard(al, n, K->name);
                for (int64_t i = 0; i < n; i++) {
                    if (!close_to(yv[i], ys[i], uc->rel, uc->abs_ * (1.0 + fabsf(x[i]))))
                        fail_msg("%s %s n=%lld: f(%.9g) = %.9g, scalar %.9g", K->name,
                                 opname(uc->op), (long long)n, x[i], yv[i], ys[i]);
                    if (!same_or_both_nan(al[i], yv[i]))
                        fail_msg("%s %s in place differs at %lld", K->name, opname(uc->op), (long long)i);
                }
                /* backward, without and (where it is used) with y */
                for (int with_y = 0; with_y < 2; with_y++) {
                    const float *yy = with_y ? ys : NULL;
                    S->unary_backward(uc->op, n, x, yy, dy, dxs, alpha);
                    guard(dxv, n);
                    K->unary_backward(uc->op, n, x, yy, dy, dxv, alpha);
                    check_guard(dxv, n, K->name);
                    for (int64_t i = 0; i < n; i++) {
                        if (!close_to(dxv[i], dxs[i], uc->brel, uc->babs * (1.0 + fabsf(x[i]))))
                            fail_msg("%s d%s n=%lld y=%d: x=%.9g dx=%.9g, scalar %.9g", K->name,
                                     opname(uc->op), (long long)n, with_y, x[i], dxv[i], dxs[i]);
                    }
                }
            }
        }
    }
    free(x), free(ys), free(yv), free(dy), free(dxs), free(dxv), free(al);
}

/* Dense sweeps and special values of the vectorized transcendentals against
 * the scalar table (libm): same tolerances as above; results in the f32
 * subnormal range within one subnormal step (2^-149). */
static void sweep(const st_cpu_kernels *K, st_op op, int64_t n, const float *x, double rel, double abs_) {
    float *ys = malloc((size_t)n * sizeof(float)), *yv = malloc((size_t)n * sizeof(float));
    assert_non_null(ys);
    assert_non_null(yv);
    S->unary(op, n, x, ys, 1.0f);
    K->unary(op, n, x, yv, 1.0f);
    for (int64_t i = 0; i < n; i++) {
        if (!close_to(yv[i], ys[i], rel, abs_ * (1.0 + fabsf(x[i])) + 1.5e-45))
            fail_msg("%s %s(%.9g [0x%08x]) = %.9g, scalar %.9g", K->name, opname(op), x[i],
                     st__f32_bits(x[i]), yv[i], ys[i]);
    }
    free(ys);
    free(yv);
}

static void test_transcendental_sweeps(void **state) {
    (void)state;
    const st_cpu_kernels *lv[4];
    int nl = simd_levels(lv);
    enum { N = 1 << 17 };
    float *x = malloc(N * sizeof(float));
    assert_non_null(x);
    for (int l = 0; l < nl; l++) {
        const st_cpu_kernels *K = lv[l];
        for (int i = 0; i < N; i++) x[i] = -105.0f + 195.0f * (float)i / N; /* across under/overflow */
        sweep(K, ST_OP_EXP, N, x, 2e-6, 0);
        for (int i = 0; i < N; i++) x[i] = st__bits_f32((uint32_t)(((uint64_t)0x7f800000u * i) / N)); /* all binades, subnormals too */
        sweep(K, ST_OP_LOG, N, x, 2e-6, 1e-7);
        for (int i = 0; i < N; i++) x[i] = -2.0f + 4.0f * (float)i / N; /* around 1, where log -> 0 */
        for (int i = 0; i < N; i++) x[i] = 1.0f + (x[i] - 1.0f) * 1e-3f;
        sweep(K, ST_OP_LOG, N, x, 2e-6, 1e-7);
        for (int i = 0; i < N; i++) x[i] = -10.0f + 20.0f * (float)i / N;
        sweep(K, ST_OP_TANH, N, x, 2e-6, 1e-7);
        sweep(K, ST_OP_SILU, N, x, 2e-6, 1e-7);
        sweep(K, ST_OP_GELU_TANH, N, x, 2e-6, 2e-7);
        sweep(K, ST_OP_GELU_ERF, N, x, 2e-6, 3e-7);
        for (int i = 0; i < N; i++) x[i] = -1e-3f + 2e-3f * (float)i / N; /* near 0: relative */
        sweep(K, ST_OP_TANH, N, x, 2e-6, 0);
        sweep(K, ST_OP_GELU_ERF, N, x, 2e-6, 0);

        const float sp[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-40f, 100.0f, -100.0f, 88.72f, 88.73f,
                            -87.3f, -100.0f, -103.9f, -104.5f, -110.0f, 1e30f, -1e30f,
                            FLT_MAX, -FLT_MAX, FLT_MIN, INFINITY, -INFINITY, NAN, -NAN,
                            20.0f, -20.0f, 9.0f, -9.0f, 0.625f, -0.625f, 1.0f, -1.0f, 4.0f, -4.0f};
        const int ns = sizeof sp / sizeof sp[0];
        float ys[64], yv[64];
        for (size_t c = 0; c < sizeof k_unary_cases / sizeof k_unary_cases[0]; c++) {
            const unary_case *uc = &k_unary_cases[c];
            S->unary(uc->op, ns, sp, ys, 1.0f);
            K->unary(uc->op, ns, sp, yv, 1.0f);
            for (int i = 0; i < ns; i++) {
                /* gelu/silu(-inf) is -inf * 0: NaN for scalar, NaN or 0 accepted */
                if (isinf(sp[i]) && sp[i] < 0 &&
                    (uc->op == ST_OP_GELU_TANH || uc->op == ST_OP_GELU_ERF || uc->op == ST_OP_SILU))
                    continue;
                if (!close_to(yv[i], ys[i], uc->rel, uc->abs_ * (1.0 + fabsf(sp[i])) + 1.5e-45))
                    fail_msg("%s %s(%g) = %.9g, scalar %.9g", K->name, opname(uc->op), sp[i], yv[i], ys[i]);
            }
        }
        /* the headline special values, stated outright */
        const float in[] = {100.0f, -100.0f, INFINITY, -INFINITY, NAN, 0.0f, 20.0f, -20.0f};
        float out[8];
        K->unary(ST_OP_EXP, 5, in, out, 1.0f);
        assert_true(isinf(out[0]) && out[0] > 0);
        assert_true(out[1] >= 0.0f && out[1] < 1e-43f);
        assert_true(isinf(out[2]) && out[2] > 0);
        assert_true(out[3] == 0.0f);
        assert_true(isnan(out[4]));
        K->unary(ST_OP_LOG, 6, in, out, 1.0f);
        assert_true(isnan(out[1]) && isinf(out[2]) && isnan(out[3]) && isnan(out[4]));
        assert_true(isinf(out[5]) && out[5] < 0);
        K->unary(ST_OP_TANH, 8, in, out, 1.0f);
        assert_true(out[0] == 1.0f && out[1] == -1.0f && out[2] == 1.0f && out[3] == -1.0f);
        assert_true(isnan(out[4]) && out[5] == 0.0f && out[6] == 1.0f && out[7] == -1.0f);
    }
    free(x);
}

/* binary: exact (IEEE add/sub/mul/div on both sides), every stride pair,
 * in place (y == a) too. axpy: |d| <= 2^-23 (|alpha x| + |y|) (FMA vs
 * multiply-then-add). */
static void test_binary_axpy_levels(void **state) {
    (void)state;
    const st_cpu_kernels *lv[4];
    int nl = simd_levels(lv);
    float *a = fbuf(MAX_LEN), *b = fbuf(MAX_LEN), *ys = fbuf(MAX_LEN), *yv = fbuf(MAX_LEN);
    const st_op ops[] = {ST_OP_ADD, ST_OP_SUB, ST_OP_MUL, ST_OP_DIV};
    for (int l = 0; l < nl; l++) {
        const st_cpu_kernels *K = lv[l];
        for (size_t li = 0; li < N_LENGTHS; li++) {
            int64_t n = k_lengths[li];
            for (size_t o = 0; o < 4; o++) {
                for (int sa = 0; sa < 2; sa++) {
                    for (int sb = 0; sb < 2; sb++) {
                        fill(a, n > 0 ? n : 1, -10.0f, 10.0f);
                        fill(b, n > 0 ? n : 1, 0.5f, 10.0f);
                        S->binary(ops[o], n, a, sa, b, sb, ys);
                        guard(yv, n);
                        K->binary(ops[o], n, a, sa, b, sb, yv);
                        check_guard(yv, n, K->name);
                        for (int64_t i = 0; i < n; i++)
                            if (yv[i] != ys[i])
                                fail_msg("%s %s sa=%d sb=%d n=%lld: [%lld] %.9g vs %.9g", K->name,
                                         opname(ops[o]), sa, sb, (long long)n, (long long)i, yv[i], ys[i]);
                        if (sa) { /* in place: y == a */
                            guard(a, n);
                            K->binary(ops[o], n, a, sa, b, sb, a);
                            check_guard(a, n, K->name);
                            for (int64_t i = 0; i < n; i++) assert_true(a[i] == ys[i]);
                        }
                    }
                }
            }
            for (int sx = 0; sx < 2; sx++) {
                fill(a, n > 0 ? n : 1, -10.0f, 10.0f);
                fill(ys, n, -10.0f, 10.0f);
                memcpy(yv, ys, (size_t)n * sizeof(float));
                guard(yv, n);
                const float alpha = 0.731f;
                S->axpy(n, alpha, a, sx, ys);
                K->axpy(n, alpha, a, sx, yv);
                check_guard(yv, n, K->name);
                for (int64_t i = 0; i < n; i++) {
                    double bound = 1.2e-7 * (fabs(alpha * a[i * sx]) + fabs(ys[i]));
                    if (fabs(yv[i] - ys[i]) > bound)
                        fail_msg("%s axpy sx=%d n=%lld: [%lld] %.9g vs %.9g", K->name, sx, (long long)n,
                                 (long long)i, yv[i], ys[i]);
                }
            }
        }
    }
    free(a), free(b), free(ys), free(yv);
}

/* sum/dot: |d| <= 1e-6 * sum|terms| + 1e-30 (f32 accumulators vs the
 * scalar's double); max: exact, NaN propagates, -inf for n == 0. */
static void test_reductions_levels(void **state) {
    (void)state;
    const st_cpu_kernels *lv[4];
    int nl = simd_levels(lv);
    float *x = fbuf(MAX_LEN), *y = fbuf(MAX_LEN);
    for (int l = 0; l < nl; l++) {
        const st_cpu_kernels *K = lv[l];
        for (size_t li = 0; li < N_LENGTHS; li++) {
            int64_t n = k_lengths[li];
            fill(x, n, -5.0f, 3.0f);
            fill(y, n, -1.0f, 2.0f);
            double sabs = 0, dabs = 0;
            for (int64_t i = 0; i < n; i++) sabs += fabsf(x[i]), dabs += fabsf(x[i] * y[i]);
            float ss = S->sum(n, x), sv = K->sum(n, x);
            if (fabs(ss - sv) > 1e-6 * sabs + 1e-30) fail_msg("%s sum n=%lld: %.9g vs %.9g", K->name, (long long)n, sv, ss);
            float ds = S->dot(n, x, y), dv = K->dot(n, x, y);
            if (fabs(ds - dv) > 1e-6 * dabs + 1e-30) fail_msg("%s dot n=%lld: %.9g vs %.9g", K->name, (long long)n, dv, ds);
            assert_true(K->max(n, x) == S->max(n, x));
            if (n > 0) { /* the max at every position, incl. the tail */
                int64_t at = (int64_t)(rng_next() % (uint64_t)n);
                float keep = x[at];
                x[at] = 7.5f;
                assert_true(K->max(n, x) == 7.5f);
                x[at] = NAN;
                assert_true(isnan(K->max(n, x)) && isnan(S->max(n, x)));
                x[at] = keep;
                x[n - 1] = 9.0f;
                assert_true(K->max(n, x) == 9.0f);
            } else {
                assert_true(isinf(K->max(0, x)) && K->max(0, x) < 0);
            }
        }
        float neg[3] = {-INFINITY, -INFINITY, -3e38f};
        assert_true(K->max(2, neg) == -INFINITY);
        assert_true(K->max(3, neg) == -3e38f);
    }
    free(x), free(y);
}

/* Row kernels vs scalar. Errors are judged against the row's scale:
 * |d| <= tol * max(1, max|scalar|). softmax 1e-6 (the brief allows 1e-5);
 * log_softmax 2e-6 (lse ~ O(10)); backward softmax 1e-5; norms 2e-6
 * forward, 2e-5 backward (f32 accumulators vs the scalar's double). */
static bool rows_close(const float *v, const float *s, int64_t n, double tol) {
    double m = 1.0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(s[i]));
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(v[i] - s[i]) <= tol * m)) {
            print_error("  at %lld: %.9g vs scalar %.9g (scale %g)\n", (long long)i, v[i], s[i], m);
            return false;
        }
    return true;
}

static void test_rows_levels(void **state) {
    (void)state;
    const st_cpu_kernels *lv[4];
    int nl = simd_levels(lv);
    float *x = fbuf(MAX_LEN), *g = fbuf(MAX_LEN), *b = fbuf(MAX_LEN), *dy = fbuf(MAX_LEN);
    float *ys = fbuf(MAX_LEN), *yv = fbuf(MAX_LEN), *dxs = fbuf(MAX_LEN), *dxv = fbuf(MAX_LEN);
    float *dgs = fbuf(MAX_LEN), *dgv = fbuf(MAX_LEN), *dbs = fbuf(MAX_LEN), *dbv = fbuf(MAX_LEN);
    const float eps = 1e-5f;
    for (int l = 0; l < nl; l++) {
        const st_cpu_kernels *K = lv[l];
        for (size_t li = 0; li < N_LENGTHS; li++) {
            int64_t n = k_lengths[li];
            fill(x, n, -8.0f, 12.0f);
            fill(g, n, 0.5f, 2.0f);
            fill(b, n, -1.0f, 1.0f);
            fill(dy, n, -1.0f, 1.0f);
#define CHECK_ROW(what, tol)                                                   \
    do {                                                                       \
        check_guard(yv, n, K->name);                                           \
        if (!rows_close(yv, ys, n, tol)) fail_msg("%s %s n=%lld", K->name, what, (long long)n); \
    } while (0)
            S->softmax(n, x, ys);
            guard(yv, n);
            K->softmax(n, x, yv);
            CHECK_ROW("softmax", 1e-6);
            S->log_softmax(n, x, ys);
            guard(yv, n);
            K->log_softmax(n, x, yv);
            CHECK_ROW("log_softmax", 2e-6);
            S->softmax(n, x, ys);
            S->softmax_backward(n, ys, dy, dxs);
            guard(yv, n);
            K->softmax_backward(n, ys, dy, yv);
            memcpy(ys, dxs, (size_t)n * sizeof(float));
            CHECK_ROW("softmax_backward", 1e-5);
            S->log_softmax(n, x, ys);
            S->log_softmax_backward(n, ys, dy, dxs);
            guard(yv, n);
            K->log_softmax_backward(n, ys, dy, yv);
            memcpy(ys, dxs, (size_t)n * sizeof(float));
            CHECK_ROW("log_softmax_backward", 1e-5);
            for (int variant = 0; variant < 4; variant++) {
                const float *gg = (variant & 1) ? g : NULL, *bb = (variant & 2) ? b : NULL;
                S->layernorm(n, x, gg, bb, eps, ys);
                guard(yv, n);
                K->layernorm(n, x, gg, bb, eps, yv);
                CHECK_ROW("layernorm", 2e-6);
                S->rmsnorm(n, x, gg, eps, ys);
                guard(yv, n);
                K->rmsnorm(n, x, gg, eps, yv);
                CHECK_ROW("rmsnorm", 2e-6);
                /* backward: dg/db accumulate into nonzero buffers; NULL acc allowed */
                for (int64_t i = 0; i < n; i++) dgs[i] = dgv[i] = 0.5f, dbs[i] = dbv[i] = -0.25f;
                float *dga = (variant & 2) ? NULL : dgs, *dba = (variant & 1) ? dbs : NULL;
                float *dgb = (variant & 2) ? NULL : dgv, *dbb = (variant & 1) ? dbv : NULL;
                S->layernorm_backward(n, x, gg, dy, eps, dxs, dga, dba);
                guard(dxv, n), guard(dgv, n), guard(dbv, n);
                K->layernorm_backward(n, x, gg, dy, eps, dxv, dgb, dbb);
                check_guard(dxv, n, K->name);
                check_guard(dgv, n, K->name);
                check_guard(dbv, n, K->name);
                if (!rows_close(dxv, dxs, n, 2e-5)) fail_msg("%s layernorm_backward dx n=%lld v=%d", K->name, (long long)n, variant);
                if (!rows_close(dgv, dgs, n, 2e-6)) fail_msg("%s layernorm_backward dg n=%lld", K->name, (long long)n);
                if (!rows_close(dbv, dbs, n, 0)) fail_msg("%s layernorm_backward db n=%lld", K->name, (long long)n);
                for (int64_t i = 0; i < n; i++) dgs[i] = dgv[i] = 0.5f;
                S->rmsnorm_backward(n, x, gg, dy, eps, dxs, dga);
                guard(dxv, n), guard(dgv, n);
                K->rmsnorm_backward(n, x, gg, dy, eps, dxv, dgb);
                check_guard(dxv, n, K->name);
                check_guard(dgv, n, K->name);
                if (!rows_close(dxv, dxs, n, 2e-5)) fail_msg("%s rmsnorm_backward dx n=%lld v=%d", K->name, (long long)n, variant);
                if (!rows_close(dgv, dgs, n, 2e-6)) fail_msg("%s rmsnorm_backward dg n=%lld", K->name, (long long)n);
            }
#undef CHECK_ROW
        }
        /* a row with a large offset: max subtraction and two-pass variance matter */
        int64_t n = 1000;
        fill(x, n, 1000.0f, 1001.0f);
        S->softmax(n, x, ys);
        guard(yv, n);
        K->softmax(n, x, yv);
        assert_true(rows_close(yv, ys, n, 1e-6));
        S->layernorm(n, x, NULL, NULL, eps, ys);
        guard(yv, n);
        K->layernorm(n, x, NULL, NULL, eps, yv);
        assert_true(rows_close(yv, ys, n, 5e-4)); /* x - mean has ~1e-4 relative f32 error at 1e3 */
    }
    free(x), free(g), free(b), free(dy), free(ys), free(yv), free(dxs), free(dxv);
    free(dgs), free(dgv), free(dbs), free(dbv);
}

/* ---- streaming forms ------------------------------------------------------------------
 * Every level's *_nt kernel must write exactly (bit for bit, NaN payloads
 * included) what its plain kernel writes, for every tail length, for
 * destinations at every offset from a 64-byte boundary that matters (the
 * head before the first aligned vector, AVX2's 32-byte boundary, none), in
 * place, with broadcast operands, and with NaN and infinity among the
 * inputs. Nothing before or after the destination may change. (The row
 * kernels prefetch past the end of these buffers; a prefetch never faults.) */
#define NT_PRE 16 /* guard floats before the destination */
static const int64_t k_nt_offsets[] = {0, 1, 3, 7, 8, 13, 15};
static const int64_t k_nt_lengths[] = {0, 1, 7, 15, 16, 17, 31, 33, 100, 1000, 4097};
#define NT_MAX 4097

typedef struct nt_buf {
    float *base; /* 64-byte aligned, NT_PRE + 15 + NT_MAX + GUARD floats */
    float *y;    /* base + NT_PRE + offset */
    int64_t off;
} nt_buf;

static void nt_arm(nt_buf *b, int64_t off) {
    int64_t total = NT_PRE + 15 + NT_MAX + GUARD;
    for (int64_t i = 0; i < total; i++) b->base[i] = GUARD_VAL;
    b->off = off;
    b->y = b->base + NT_PRE + off;
}

/* dst must hold exactly want[0..n) and the guards around it */
static void nt_check(const nt_buf *b, const float *want, int64_t n, const char *lvl, const char *what) {
    int64_t total = NT_PRE + 15 + NT_MAX + GUARD, lo = NT_PRE + b->off, hi = lo + n;
    for (int64_t i = 0; i < total; i++) {
        if (i >= lo && i < hi) {
            if (memcmp(&b->base[i], &want[i - lo], sizeof(float)) != 0)
                fail_msg("%s %s n=%lld offset %lld: [%lld] %.9g, plain %.9g", lvl, what, (long long)n,
                         (long long)b->off, (long long)(i - lo), b->base[i], want[i - lo]);
        } else if (b->base[i] != GUARD_VAL) {
            fail_msg("%s %s n=%lld offset %lld: wrote outside the destination (at %lld)", lvl, what,
                     (long long)n, (long long)b->off, (long long)(i - lo));
        }
    }
}

static void test_streaming_levels(void **state) {
    (void)state;
    const st_cpu_kernels *lv[4];
    int nl = simd_levels(lv);
    lv[nl++] = S;
    nt_buf nb;
    nb.base = aligned_alloc(64, (size_t)(((NT_PRE + 15 + NT_MAX + GUARD) * 4 + 63) / 64 * 64));
    float *x = fbuf(NT_MAX + 1), *a = fbuf(NT_MAX), *b = fbuf(NT_MAX), *g = fbuf(NT_MAX);
    float *bb = fbuf(NT_MAX), *want = fbuf(NT_MAX), *inpl = fbuf(NT_MAX);
    assert_non_null(nb.base);
    const float eps = 1e-5f, alpha = -0.37f;
    for (int l = 0; l < nl; l++) {
        const st_cpu_kernels *K = lv[l];
        for (size_t li = 0; li < sizeof k_nt_lengths / sizeof k_nt_lengths[0]; li++) {
            int64_t n = k_nt_lengths[li];
            fill(x, n + 1, -8.0f, 12.0f);
            x[n / 3] = NAN; /* NaNs and infinities travel the same path */
            if (n > 5) x[n - 2] = INFINITY;
            fill(a, n, -10.0f, 10.0f);
            fill(b, n, 0.5f, 10.0f);
            fill(g, n, 0.5f, 2.0f);
            fill(bb, n, -1.0f, 1.0f);
            for (size_t oi = 0; oi < sizeof k_nt_offsets / sizeof k_nt_offsets[0]; oi++) {
                int64_t off = k_nt_offsets[oi];
#define NT_CASE(what, PLAIN, STREAM)                                           \
    do {                                                                       \
        PLAIN;                                                                 \
        nt_arm(&nb, off);                                                      \
        STREAM;                                                                \
        K->stream_fence();                                                     \
        nt_check(&nb, want, n, K->name, what);                                 \
    } while (0)
                for (st_op op = ST_OP_NEG; op <= ST_OP_SCALE; op++) {
                    NT_CASE(opname(op), K->unary(op, n, x, want, alpha),
                            K->unary_nt(op, n, x, nb.y, alpha));
                    /* in place: x copied into the destination first */
                    nt_arm(&nb, off);
                    memcpy(nb.y, x, (size_t)n * sizeof(float));
                    K->unary_nt(op, n, nb.y, nb.y, alpha);
                    K->stream_fence();
                    nt_check(&nb, want, n, K->name, "unary in place");
                }
                for (st_op op = ST_OP_ADD; op <= ST_OP_DIV; op++) {
                    for (int sa = 0; sa < 2; sa++) {
                        for (int sb = 0; sb < 2; sb++) {
                            NT_CASE(opname(op), K->binary(op, n, a, sa, b, sb, want),
                                    K->binary_nt(op, n, a, sa, b, sb, nb.y));
                        }
                    }
                    nt_arm(&nb, off); /* in place: y == a */
                    memcpy(nb.y, a, (size_t)n * sizeof(float));
                    memcpy(inpl, a, (size_t)n * sizeof(float));
                    K->binary(op, n, inpl, 1, b, 1, want);
                    K->binary_nt(op, n, nb.y, 1, b, 1, nb.y);
                    K->stream_fence();
                    nt_check(&nb, want, n, K->name, "binary in place");
                }
                /* the norms on finite rows (a NaN makes the whole row NaN) */
                fill(inpl, n, -8.0f, 12.0f);
                for (int variant = 0; variant < 4; variant++) {
                    const float *gg = (variant & 1) ? g : NULL, *bv = (variant & 2) ? bb : NULL;
                    NT_CASE("layernorm", K->layernorm(n, inpl, gg, bv, eps, want),
                            K->layernorm_nt(n, inpl, gg, bv, eps, nb.y));
                    NT_CASE("rmsnorm", K->rmsnorm(n, inpl, gg, eps, want),
                            K->rmsnorm_nt(n, inpl, gg, eps, nb.y));
                }
#undef NT_CASE
            }
        }
    }
    free(nb.base);
    free(x), free(a), free(b), free(g), free(bb), free(want), free(inpl);
}

/* Conversions: bit-for-bit equal to scalar. f16/bf16 -> f32 over all
 * 65536 patterns; f32 -> f16/bf16 over hand-picked values (ties,
 * subnormals, limits, inf, quiet and signaling NaNs) and 2^18 random bit
 * patterns; dot_bf16 within 1e-6 * sum|x y| of the scalar's double sum. */
static void test_conversions_levels(void **state) {
    (void)state;
    const st_cpu_kernels *lv[4];
    int nl = simd_levels(lv);
    enum { NR = 1 << 18 };
    uint16_t *h = malloc(65536 * sizeof(uint16_t) + GUARD * 2);
    float *fs = fbuf(NR), *fv = fbuf(NR), *src = fbuf(NR);
    uint16_t *hs = malloc(NR * sizeof(uint16_t)), *hv = malloc((NR + GUARD) * sizeof(uint16_t));
    assert_non_null(h);
    assert_non_null(hs);
    assert_non_null(hv);
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    const float picks[] = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.996f, 65520.0f, 1e10f, -1e10f,
                           5.9604644775390625e-08f, 2.98023223876953125e-08f, 8.940696716308594e-08f,
                           6.097555160522461e-05f, 6.103515625e-05f, 1.00048828125f, 1.00146484375f,
                           1.00390625f, 1.01171875f, 1e-40f, -1.4e-45f, 3.3895314e38f, FLT_MAX,
                           INFINITY, -INFINITY};
    const uint32_t nan_bits[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fa00000u, 0xff812345u, 0x7fffffffu};
    int np = 0;
    for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++) src[np++] = picks[i];
    for (size_t i = 0; i < sizeof nan_bits / sizeof nan_bits[0]; i++) src[np++] = st__bits_f32(nan_bits[i]);
    for (int i = np; i < NR; i++) src[i] = st__bits_f32((uint32_t)rng_next());
    for (int i = NR / 2; i < NR; i++) src[i] = rng_uniform(-70000.0f, 70000.0f) * (i & 1 ? 1.0f : 1e-6f);

    for (int l = 0; l < nl; l++) {
        const st_cpu_kernels *K = lv[l];
        S->f16_to_f32(65536, h, fs);
        K->f16_to_f32(65536, h, fv);
        check_guard(fv, 65536, K->name);
        for (int i = 0; i < 65536; i++)
            if (st__f32_bits(fs[i]) != st__f32_bits(fv[i]))
                fail_msg("%s f16_to_f32(0x%04x) = 0x%08x, scalar 0x%08x", K->name, i,
                         st__f32_bits(fv[i]), st__f32_bits(fs[i]));
        S->bf16_to_f32(65536, h, fs);
        K->bf16_to_f32(65536, h, fv);
        for (int i = 0; i < 65536; i++) assert_true(st__f32_bits(fs[i]) == st__f32_bits(fv[i]));
        /* f32 -> f16 / bf16 over every tail length too */
        for (size_t li = 0; li < N_LENGTHS + 1; li++) {
            int64_t n = li < N_LENGTHS ? k_lengths[li] : NR;
            for (int which = 0; which < 2; which++) {
                for (int64_t i = 0; i < n + GUARD; i++) hv[i] = 0xbeef;
                if (which) {
                    S->f32_to_f16(n, src, hs);
                    K->f32_to_f16(n, src, hv);
                } else {
                    S->f32_to_bf16(n, src, hs);
                    K->f32_to_bf16(n, src, hv);
                }
                for (int64_t i = 0; i < n; i++)
                    if (hs[i] != hv[i])
                        fail_msg("%s %s(%.9g [0x%08x]) = 0x%04x, scalar 0x%04x", K->name,
                                 which ? "f32_to_f16" : "f32_to_bf16", src[i], st__f32_bits(src[i]), hv[i], hs[i]);
                for (int64_t i = n; i < n + GUARD; i++) assert_int_equal(hv[i], 0xbeef);
            }
            /* dot_bf16 */
            if (n <= MAX_LEN) {
                fill(fs, n, -3.0f, 3.0f);
                fill(fv, n, -3.0f, 3.0f);
                S->f32_to_bf16(n, fs, hs);
                S->f32_to_bf16(n, fv, hv);
                double tabs = 0;
                for (int64_t i = 0; i < n; i++) tabs += fabsf(st__k_bf16_to_f32(hs[i]) * st__k_bf16_to_f32(hv[i]));
                float ds = S->dot_bf16(n, hs, hv);
                /* AVX-512: both the vdpbf16ps path (when the CPU has it) and the fallback */
                for (int mode = 0; mode < (K->level == ST_SIMD_AVX512 ? 2 : 1); mode++) {
#if defined(__x86_64__)
                    if (K->level == ST_SIMD_AVX512) st__cpu_kernels_avx512_bf16_override(mode);
#endif
                    float dv = K->dot_bf16(n, hs, hv);
                    if (fabs(ds - dv) > 1e-6 * tabs + 1e-30)
                        fail_msg("%s dot_bf16 (mode %d) n=%lld: %.9g vs %.9g", K->name, mode, (long long)n, dv, ds);
                }
#if defined(__x86_64__)
                st__cpu_kernels_avx512_bf16_override(-1);
#endif
            }
        }
    }
    free(h), free(fs), free(fv), free(src), free(hs), free(hv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_scalar_unary_vs_double),
        cmocka_unit_test(test_scalar_rows_vs_double),
        cmocka_unit_test(test_scalar_conversions_vs_definition),
        cmocka_unit_test(test_unary_levels),
        cmocka_unit_test(test_transcendental_sweeps),
        cmocka_unit_test(test_binary_axpy_levels),
        cmocka_unit_test(test_reductions_levels),
        cmocka_unit_test(test_rows_levels),
        cmocka_unit_test(test_conversions_levels),
        cmocka_unit_test(test_streaming_levels),
    };
    return cmocka_run_group_tests_name("kernels", tests, group_setup, NULL);
}
