/*
 * train_mlp.c — the worked example of layer 4: train a small MLP with the
 * public API only (strata/tensor.h for ops, strata/nn.h for autograd).
 *
 * Task: two interleaved spirals in the plane (512 points, 2 classes),
 * generated from a seeded counter-based RNG (st_rand_uniform, st_randn).
 * Model: 2 -> 64 -> 64 -> 2 with tanh, cross-entropy through log_softmax
 * and a one-hot mask. Optimizer: SGD with momentum, full batch.
 *
 * One training step is the whole life cycle of the library's memory:
 *   forward   ops allocate step tensors in the context's arena and, because
 *             the parameters require grad, record themselves on the tape;
 *   backward  st_backward walks the tape and adds into W->grad (persistent,
 *             allocated at the first backward, reused after);
 *   update    with grad mode off, st_axpy_/st_scale_ change the parameters in
 *             place (not recorded); st_zero_grad clears the grads;
 *   reset     st_ctx_reset frees every step tensor and the tape at once.
 * After the first step the loop allocates nothing from the system.
 *
 * Ownership: the parameters and momentum buffers are persistent tensors
 * freed at the end; the data lives in two host arrays wrapped as persistent
 * tensors (st_tensor_wrap borrows them). Threads: the context's pool
 * (STRATA_THREADS); this file is single-threaded.
 *
 * Exit status: 0 when the final loss is below half the initial one (the demo
 * is an honest check of the stack), 1 otherwise, 2 on a usage or library error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/nn.h"
#include "strata/tensor.h"

#define N_POINTS 512 /* per batch; half per class */
#define N_CLASSES 2
#define HIDDEN 64
#define PI_F 3.14159265f

/* Report a failing library call with its message and leave main's loop. */
#define CHECK(expr)                                                                                \
    do {                                                                                           \
        st_status s_ = (expr);                                                                     \
        if (s_ != ST_OK) {                                                                         \
            fprintf(stderr, "train_mlp: %s failed: %s: %s\n", #expr, st_status_name(s_),           \
                    st_last_error());                                                              \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

typedef struct mlp {
    st_tensor *w[3], *b[3];   /* layer l: w [in, out], b [out] */
    st_tensor *vw[3], *vb[3]; /* momentum buffers */
} mlp;

static void usage(FILE *f) {
    fprintf(f, "usage: train_mlp [--steps N] [--seed S] [--lr LR] [--every K]\n"
               "\n"
               "Trains a 2-64-64-2 tanh MLP on two interleaved spirals with SGD and\n"
               "momentum, printing step, loss and accuracy as the loss falls.\n"
               "\n"
               "options:\n"
               "  --steps N   training steps (default 1500)\n"
               "  --seed S    seed of the data and the initial weights (default 1)\n"
               "  --lr LR     learning rate (default 0.1; momentum 0.9)\n"
               "  --every K   print every K steps (default 100)\n"
               "  --help      this text\n"
               "\n"
               "Exits 0 when the final loss is below half the initial loss.\n");
}

/* The spirals: class k, point i at radius r = t and angle 4*pi*t + k*pi (two turns), with
 * t ~ U[0.05, 1) and Gaussian noise 0.02 on each coordinate. */
static st_status make_data(st_ctx *ctx, uint64_t seed, float *x, float *onehot) {
    const int64_t n1[1] = {N_POINTS}, n2[2] = {N_POINTS, 2};
    st_tensor *t = NULL, *noise = NULL;
    float tv[N_POINTS], nv[N_POINTS * 2];
    ST_TRY(st_rand_uniform(ctx, 1, n1, seed, 0.05f, 1.0f, &t));
    ST_TRY(st_randn(ctx, 2, n2, seed + 1, 0.0f, 0.02f, &noise));
    ST_TRY(st_tensor_to_f32(t, tv, N_POINTS));
    ST_TRY(st_tensor_to_f32(noise, nv, N_POINTS * 2));
    for (int i = 0; i < N_POINTS; i++) {
        int k = i % N_CLASSES;
        float a = 4.0f * PI_F * tv[i] + (float)k * PI_F;
        x[2 * i + 0] = tv[i] * cosf(a) + nv[2 * i + 0];
        x[2 * i + 1] = tv[i] * sinf(a) + nv[2 * i + 1];
        for (int c = 0; c < N_CLASSES; c++)
            onehot[N_CLASSES * i + c] = c == k ? 1.0f : 0.0f;
    }
    st_ctx_reset(ctx);
    return ST_OK;
}

/* Weights ~ N(0, gain / sqrt(fan_in)), biases 0, momentum 0. The first layer
 * gets a larger gain: the spirals turn fast relative to the input scale. */
static st_status mlp_init(st_ctx *ctx, mlp *m, uint64_t seed) {
    const int64_t dims[4] = {2, HIDDEN, HIDDEN, N_CLASSES};
    const float gain[3] = {4.0f, 1.0f, 1.0f};
    for (int l = 0; l < 3; l++) {
        const int64_t sw[2] = {dims[l], dims[l + 1]}, sb[1] = {dims[l + 1]};
        ST_TRY(st_tensor_new(ctx, ST_F32, 2, sw, &m->w[l]));
        ST_TRY(st_tensor_new(ctx, ST_F32, 1, sb, &m->b[l]));
        ST_TRY(st_tensor_new(ctx, ST_F32, 2, sw, &m->vw[l]));
        ST_TRY(st_tensor_new(ctx, ST_F32, 1, sb, &m->vb[l]));
        ST_TRY(st_randn_(m->w[l], seed + 10 + (uint64_t)l, 0.0f, gain[l] / sqrtf((float)dims[l])));
        ST_TRY(st_requires_grad(m->w[l], true));
        ST_TRY(st_requires_grad(m->b[l], true));
    }
    return ST_OK;
}

static void mlp_free(mlp *m) {
    for (int l = 0; l < 3; l++) {
        st_tensor_free(m->w[l]);
        st_tensor_free(m->b[l]);
        st_tensor_free(m->vw[l]);
        st_tensor_free(m->vb[l]);
    }
}

/* logits [N, 2] = tanh(tanh(x W0 + b0) W1 + b1) W2 + b2 */
static st_status mlp_forward(st_ctx *ctx, const mlp *m, const st_tensor *x, st_tensor **logits) {
    st_tensor *h = (st_tensor *)x;
    for (int l = 0; l < 3; l++) {
        ST_TRY(st_matmul(ctx, h, m->w[l], &h)); /* [N, in] @ [in, out] */
        ST_TRY(st_add(ctx, h, m->b[l], &h));    /* + [out], broadcast over rows */
        if (l < 2) ST_TRY(st_tanh(ctx, h, &h));
    }
    *logits = h;
    return ST_OK;
}

/* loss = -(1/N) sum_i log softmax(logits_i)[y_i], as a [1] tensor */
static st_status cross_entropy(st_ctx *ctx, const st_tensor *logits, const st_tensor *onehot,
                               st_tensor **loss) {
    st_tensor *t = NULL;
    ST_TRY(st_log_softmax(ctx, logits, &t));
    ST_TRY(st_mul(ctx, t, onehot, &t)); /* keeps log p of the true class */
    ST_TRY(st_sum_all(ctx, t, &t));
    return st_scale(ctx, t, -1.0f / (float)logits->ne[0], loss);
}

/* SGD with momentum, in place, in no-grad mode: v = mu v + g; p -= lr v. */
static st_status sgd_step(st_ctx *ctx, mlp *m, float lr, float mu) {
    st_ctx_set_grad_enabled(ctx, false);
    for (int l = 0; l < 3; l++) {
        st_tensor *p[2] = {m->w[l], m->b[l]}, *v[2] = {m->vw[l], m->vb[l]};
        for (int i = 0; i < 2; i++) {
            if (!p[i]->grad) continue;
            ST_TRY(st_scale_(v[i], mu));
            ST_TRY(st_axpy_(v[i], 1.0f, p[i]->grad));
            ST_TRY(st_axpy_(p[i], -lr, v[i]));
        }
    }
    st_ctx_set_grad_enabled(ctx, true);
    st_tensor *params[6] = {m->w[0], m->b[0], m->w[1], m->b[1], m->w[2], m->b[2]};
    st_zero_grad(params, 6);
    return ST_OK;
}

static float accuracy(const st_tensor *logits, const float *onehot) {
    static float lv[N_POINTS * N_CLASSES];
    if (st_tensor_to_f32(logits, lv, N_POINTS * N_CLASSES) != ST_OK) return 0.0f;
    int right = 0;
    for (int i = 0; i < N_POINTS; i++) {
        int pred = lv[2 * i + 1] > lv[2 * i] ? 1 : 0;
        right += onehot[2 * i + pred] == 1.0f;
    }
    return (float)right / N_POINTS;
}

static bool parse_long(const char *s, long lo, long *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!s[0] || *end || v < lo) return false;
    *out = v;
    return true;
}

int main(int argc, char **argv) {
    long steps = 1500, seed = 1, every = 100;
    float lr = 0.1f, mu = 0.9f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--steps") && v) {
            ok = parse_long(v, 1, &steps), i++;
        } else if (!strcmp(a, "--seed") && v) {
            ok = parse_long(v, 0, &seed), i++;
        } else if (!strcmp(a, "--every") && v) {
            ok = parse_long(v, 1, &every), i++;
        } else if (!strcmp(a, "--lr") && v) {
            char *end = NULL;
            lr = strtof(v, &end);
            ok = *end == '\0' && lr > 0.0f, i++;
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "train_mlp: bad argument '%s'%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return 2;
        }
    }

    static float xs[N_POINTS * 2], ys[N_POINTS * N_CLASSES];
    st_ctx *ctx = NULL;
    st_tensor *X = NULL, *Y = NULL;
    mlp m = {0};
    int rc = 2;
    st_ctx_params cp = st_ctx_default_params();
    CHECK(st_ctx_new(&cp, &ctx));
    CHECK(st_autograd_enable(ctx));
    CHECK(make_data(ctx, (uint64_t)seed, xs, ys));
    const int64_t sx[2] = {N_POINTS, 2}, sy[2] = {N_POINTS, N_CLASSES};
    CHECK(st_tensor_wrap(ctx, ST_F32, 2, sx, xs, &X));
    CHECK(st_tensor_wrap(ctx, ST_F32, 2, sy, ys, &Y));
    CHECK(mlp_init(ctx, &m, (uint64_t)seed));

    int simd = st_backend_cpu_simd_level(st_ctx_backend(ctx));
    printf("train_mlp: 2-%d-%d-2 tanh MLP, two spirals (%d points), SGD lr %g momentum %g\n",
           HIDDEN, HIDDEN, N_POINTS, (double)lr, (double)mu);
    printf("threads %d, SIMD %s, %ld steps, seed %ld\n", st_ctx_n_threads(ctx),
           simd >= 0 ? st_hw_simd_level_name((st_simd_level)simd) : "n/a", steps, seed);
    printf("%7s  %9s  %8s\n", "step", "loss", "accuracy");

    float first_loss = 0.0f, last_loss = 0.0f;
    double t0 = st_time_s();
    for (long step = 1; step <= steps; step++) {
        st_tensor *logits = NULL, *loss = NULL;
        CHECK(mlp_forward(ctx, &m, X, &logits));
        CHECK(cross_entropy(ctx, logits, Y, &loss));
        CHECK(st_tensor_get_f32(loss, 0, &last_loss));
        if (step == 1) first_loss = last_loss;
        CHECK(st_backward(ctx, loss));
        if (step == 1 || step % every == 0 || step == steps)
            printf("%7ld  %9.5f  %7.1f%%\n", step, (double)last_loss,
                   100.0 * (double)accuracy(logits, ys));
        CHECK(sgd_step(ctx, &m, lr, mu));
        st_ctx_reset(ctx); /* every step tensor and the tape die here */
    }
    double dt = st_time_s() - t0;
    printf("trained %ld steps in %.2f s (%.0f steps/s); loss %.4f -> %.4f\n", steps, dt,
           (double)steps / dt, (double)first_loss, (double)last_loss);
    rc = last_loss < 0.5f * first_loss ? 0 : 1;
    if (rc) printf("train_mlp: the loss did not fall below half its initial value\n");

fail:
    mlp_free(&m);
    st_tensor_free(X);
    st_tensor_free(Y);
    st_ctx_free(ctx);
    return rc;
}
