/*
 * kernels_scalar.c — the scalar CPU kernel table: the reference and the spec.
 *
 * Plain C over contiguous runs, written for clarity and numerical care rather
 * than speed: transcendental functions come from libm (expf, logf, tanhf,
 * erff), row reductions accumulate in double, softmax subtracts the row max,
 * layer norm takes mean and variance in two passes. Every SIMD table must
 * match this one within the tolerances tests/test_kernels.c states, and the
 * conversions bit for bit (they share kernels_math.h).
 *
 * No state, no allocation, no threads: the executor calls these on each
 * thread's slice of the work.
 */
#include <math.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_math.h"

/* ---- elementwise -------------------------------------------------------------- */

static float gelu_tanh1(float x) {
    float u = ST_K_SQRT_2_OVER_PI * (x + ST_K_GELU_C * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

static float gelu_erf1(float x) { return 0.5f * x * (1.0f + erff(x * ST_K_INV_SQRT2)); }

static float silu1(float x) { return x / (1.0f + expf(-x)); }

static void k_unary(st_op op, int64_t n, const float *x, float *y, float alpha) {
    int64_t i;
    switch (op) {
    case ST_OP_NEG: for (i = 0; i < n; i++) y[i] = -x[i]; break;
    case ST_OP_EXP: for (i = 0; i < n; i++) y[i] = expf(x[i]); break;
    case ST_OP_LOG: for (i = 0; i < n; i++) y[i] = logf(x[i]); break;
    case ST_OP_SQRT: for (i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
    case ST_OP_TANH: for (i = 0; i < n; i++) y[i] = tanhf(x[i]); break;
    case ST_OP_GELU_TANH: for (i = 0; i < n; i++) y[i] = gelu_tanh1(x[i]); break;
    case ST_OP_GELU_ERF: for (i = 0; i < n; i++) y[i] = gelu_erf1(x[i]); break;
    case ST_OP_SILU: for (i = 0; i < n; i++) y[i] = silu1(x[i]); break;
    case ST_OP_RELU: for (i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f; break;
    case ST_OP_SCALE: for (i = 0; i < n; i++) y[i] = alpha * x[i]; break;
    default: break; /* not a unary op: the executor never sends one */
    }
}

/* f'(x) of the GELU forms and SiLU for one element (recomputed from x). */
static float dgelu_tanh1(float x) {
    float x2 = x * x;
    float u = ST_K_SQRT_2_OVER_PI * (x + ST_K_GELU_C * x2 * x);
    float t = tanhf(u);
    float du = ST_K_SQRT_2_OVER_PI * (1.0f + 3.0f * ST_K_GELU_C * x2);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

static float dgelu_erf1(float x) {
    /* Phi(x) + x phi(x) */
    return 0.5f * (1.0f + erff(x * ST_K_INV_SQRT2)) + x * ST_K_INV_SQRT_2PI * expf(-0.5f * x * x);
}

static float dsilu1(float x) {
    float s = 1.0f / (1.0f + expf(-x));
    return s * (1.0f + x * (1.0f - s));
}

static void k_unary_backward(st_op op, int64_t n, const float *x, const float *y,
                             const float *dy, float *dx, float alpha) {
    int64_t i;
    switch (op) {
    case ST_OP_NEG: for (i = 0; i < n; i++) dx[i] = -dy[i]; break;
    case ST_OP_EXP:
        for (i = 0; i < n; i++) dx[i] = (y ? y[i] : expf(x[i])) * dy[i];
        break;
    case ST_OP_LOG: for (i = 0; i < n; i++) dx[i] = dy[i] / x[i]; break;
    case ST_OP_SQRT:
        for (i = 0; i < n; i++) dx[i] = 0.5f * dy[i] / (y ? y[i] : sqrtf(x[i]));
        break;
    case ST_OP_TANH:
        for (i = 0; i < n; i++) {
            float t = y ? y[i] : tanhf(x[i]);
            dx[i] = (1.0f - t * t) * dy[i];
        }
        break;
    case ST_OP_GELU_TANH: for (i = 0; i < n; i++) dx[i] = dgelu_tanh1(x[i]) * dy[i]; break;
    case ST_OP_GELU_ERF: for (i = 0; i < n; i++) dx[i] = dgelu_erf1(x[i]) * dy[i]; break;
    case ST_OP_SILU: for (i = 0; i < n; i++) dx[i] = dsilu1(x[i]) * dy[i]; break;
    case ST_OP_RELU: for (i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f; break;
    case ST_OP_SCALE: for (i = 0; i < n; i++) dx[i] = alpha * dy[i]; break;
    default: break;
    }
}

static void k_binary(st_op op, int64_t n, const float *a, int64_t sa, const float *b,
                     int64_t sb, float *y) {
    int64_t i;
    switch (op) {
    case ST_OP_ADD: for (i = 0; i < n; i++) y[i] = a[i * sa] + b[i * sb]; break;
    case ST_OP_SUB: for (i = 0; i < n; i++) y[i] = a[i * sa] - b[i * sb]; break;
    case ST_OP_MUL: for (i = 0; i < n; i++) y[i] = a[i * sa] * b[i * sb]; break;
    case ST_OP_DIV: for (i = 0; i < n; i++) y[i] = a[i * sa] / b[i * sb]; break;
    default: break;
    }
}

static void k_axpy(int64_t n, float alpha, const float *x, int64_t sx, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i * sx];
}

/* ---- reductions ------------------------------------------------------------------ */

static float k_sum(int64_t n, const float *x) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return (float)s;
}

/* NaN anywhere in the row gives NaN (as torch.max does); -inf for n == 0 */
static float k_max(int64_t n, const float *x) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] != x[i]) return x[i];
        m = x[i] > m ? x[i] : m;
    }
    return m;
}

static float k_dot(int64_t n, const float *x, const float *y) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * y[i];
    return (float)s;
}

/* ---- rows ---------------------------------------------------------------------------- */

static void k_softmax(int64_t n, const float *x, float *y) {
    if (n <= 0) return;
    float m = k_max(n, x);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float e = expf(x[i] - m);
        y[i] = e;
        s += e;
    }
    float inv = (float)(1.0 / s);
    for (int64_t i = 0; i < n; i++) y[i] *= inv;
}

static void k_log_softmax(int64_t n, const float *x, float *y) {
    if (n <= 0) return;
    float m = k_max(n, x);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += expf(x[i] - m);
    float lse = m + (float)log(s);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] - lse;
}

static void k_softmax_backward(int64_t n, const float *y, const float *dy, float *dx) {
    float d = k_dot(n, dy, y);
    for (int64_t i = 0; i < n; i++) dx[i] = y[i] * (dy[i] - d);
}

static void k_log_softmax_backward(int64_t n, const float *y, const float *dy, float *dx) {
    float s = k_sum(n, dy);
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] - expf(y[i]) * s;
}

/* mean and 1/sqrt(var + eps) of a row, two passes in double */
static void row_moments(int64_t n, const float *x, float eps, float *mean, float *rstd) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    double mu = s / (double)n;
    double v = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - mu;
        v += d * d;
    }
    v /= (double)n;
    *mean = (float)mu;
    *rstd = (float)(1.0 / sqrt(v + eps));
}

static void k_layernorm(int64_t n, const float *x, const float *g, const float *b, float eps,
                        float *y) {
    if (n <= 0) return;
    float mu, rstd;
    row_moments(n, x, eps, &mu, &rstd);
    for (int64_t i = 0; i < n; i++) {
        float v = (x[i] - mu) * rstd;
        if (g) v *= g[i];
        if (b) v += b[i];
        y[i] = v;
    }
}

static void k_layernorm_backward(int64_t n, const float *x, const float *g, const float *dy,
                                 float eps, float *dx, float *dg_acc, float *db_acc) {
    if (n <= 0) return;
    float mu, rstd;
    row_moments(n, x, eps, &mu, &rstd);
    /* mean(g*dy) and mean(g*dy*xhat) */
    double s1 = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float xhat = (x[i] - mu) * rstd;
        float gdy = g ? g[i] * dy[i] : dy[i];
        s1 += gdy;
        s2 += (double)gdy * xhat;
        if (dg_acc) dg_acc[i] += dy[i] * xhat;
        if (db_acc) db_acc[i] += dy[i];
    }
    float m1 = (float)(s1 / (double)n), m2 = (float)(s2 / (double)n);
    for (int64_t i = 0; i < n; i++) {
        float xhat = (x[i] - mu) * rstd;
        float gdy = g ? g[i] * dy[i] : dy[i];
        dx[i] = rstd * (gdy - m1 - xhat * m2);
    }
}

static float row_rrms(int64_t n, const float *x, float eps) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return (float)(1.0 / sqrt(s / (double)n + eps));
}

static void k_rmsnorm(int64_t n, const float *x, const float *g, float eps, float *y) {
    if (n <= 0) return;
    float r = row_rrms(n, x, eps);
    for (int64_t i = 0; i < n; i++) y[i] = g ? x[i] * r * g[i] : x[i] * r;
}

/* y_i = x_i r g_i with r = (mean(x^2) + eps)^-1/2:
 * dx_i = r g_i dy_i - x_i r^3 mean(g dy x); dg_i += dy_i x_i r. */
static void k_rmsnorm_backward(int64_t n, const float *x, const float *g, const float *dy,
                               float eps, float *dx, float *dg_acc) {
    if (n <= 0) return;
    float r = row_rrms(n, x, eps);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float gdy = g ? g[i] * dy[i] : dy[i];
        s += (double)gdy * x[i];
        if (dg_acc) dg_acc[i] += dy[i] * x[i] * r;
    }
    float c = (float)(s / (double)n) * r * r * r;
    for (int64_t i = 0; i < n; i++) {
        float gdy = g ? g[i] * dy[i] : dy[i];
        dx[i] = r * gdy - x[i] * c;
    }
}

/* ---- conversions ---------------------------------------------------------------------- */

static void k_bf16_to_f32(int64_t n, const uint16_t *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = st__k_bf16_to_f32(x[i]);
}
static void k_f32_to_bf16(int64_t n, const float *x, uint16_t *y) {
    for (int64_t i = 0; i < n; i++) y[i] = st__k_f32_to_bf16(x[i]);
}
static void k_f16_to_f32(int64_t n, const uint16_t *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = st__k_f16_to_f32(x[i]);
}
static void k_f32_to_f16(int64_t n, const float *x, uint16_t *y) {
    for (int64_t i = 0; i < n; i++) y[i] = st__k_f32_to_f16(x[i]);
}
static float k_dot_bf16(int64_t n, const uint16_t *x, const uint16_t *y) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)st__k_bf16_to_f32(x[i]) * st__k_bf16_to_f32(y[i]);
    return (float)s;
}

/* The reference has no streaming stores: its streaming forms are the plain
 * kernels, and there is nothing to fence. */
static void k_stream_fence(void) {}

const st_cpu_kernels st__cpu_kernels_scalar = {
    .level = ST_SIMD_SCALAR,
    .name = "scalar",
    .unary = k_unary,
    .unary_backward = k_unary_backward,
    .binary = k_binary,
    .axpy = k_axpy,
    .sum = k_sum,
    .max = k_max,
    .dot = k_dot,
    .softmax = k_softmax,
    .log_softmax = k_log_softmax,
    .softmax_backward = k_softmax_backward,
    .log_softmax_backward = k_log_softmax_backward,
    .layernorm = k_layernorm,
    .layernorm_backward = k_layernorm_backward,
    .rmsnorm = k_rmsnorm,
    .rmsnorm_backward = k_rmsnorm_backward,
    .unary_nt = k_unary,
    .binary_nt = k_binary,
    .layernorm_nt = k_layernorm,
    .rmsnorm_nt = k_rmsnorm,
    .stream_fence = k_stream_fence,
    .bf16_to_f32 = k_bf16_to_f32,
    .f32_to_bf16 = k_f32_to_bf16,
    .f16_to_f32 = k_f16_to_f32,
    .f32_to_f16 = k_f32_to_f16,
    .dot_bf16 = k_dot_bf16,
};
