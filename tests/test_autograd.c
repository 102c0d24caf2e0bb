/*
 * test_autograd.c — layer 4: reverse-mode autograd (strata/nn.h).
 *
 * The core is one table of gradient checks (st_gradcheck: central
 * differences against st_backward) with a row for every differentiable op,
 * over seeded random shapes, including NumPy broadcasting ([3,1,4] with
 * [2,1]), 1-D matmul promotion, batch broadcast, and non-contiguous inputs
 * (transposed, strided-slice and expanded views made inside the function).
 * Tolerances: h = 1e-2, atol = rtol = 1e-2 unless a row says otherwise; f32
 * rounding in L = sum(out * w) costs about 1e-7 * |L| / h ~ 1e-4 and the
 * truncation error of central differences h^2 * f''' / 6 is ~1e-5 for the
 * smooth ops here. Inputs that meet a kink (relu at 0, max ties, log and
 * sqrt near 0) are initialised away from it by more than h.
 *
 * Around the table: gradient accumulation (two backwards double a grad),
 * st_zero_grad, no system allocation in a steady-state step, no-grad mode
 * (nothing recorded), a second backward (ST_ERR_STATE), a non-scalar loss
 * (ST_ERR_SHAPE), dtype rules, a check that gradcheck itself catches a wrong
 * gradient, contexts created and freed in a loop (each starts with an
 * empty tape and counts only its own nodes), and the rules for the
 * context's recorder and extension slot that autograd owns.
 *
 * One context for the whole program (group setup); every test frees its
 * persistent tensors, so the run is leak-free under ASan/LSan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "strata/nn.h"

static st_ctx *g_ctx;

#define OK(expr)                                                                                   \
    do {                                                                                           \
        st_status s_ = (expr);                                                                     \
        if (s_ != ST_OK) fail_msg("%s -> %s: %s", #expr, st_status_name(s_), st_last_error());     \
    } while (0)

/* ---- inputs ------------------------------------------------------------------------------- */

typedef enum init_kind {
    INIT_NORMAL = 0, /* N(0, 1) */
    INIT_POS,        /* U[0.5, 2): for log, sqrt and divisors */
    INIT_AWAY,       /* N(0,1) pushed to |x| >= 0.2: relu's kink stays > h away */
    INIT_DISTINCT,   /* a shuffle of 0.1 * k: max has no ties closer than 0.1 */
} init_kind;

static void init_values(st_tensor *t, init_kind kind, uint64_t seed) {
    int64_t n = st_tensor_numel(t);
    float v[1024];
    assert_true(n <= 1024);
    OK(st_randn_(t, seed, 0.0f, 1.0f));
    OK(st_tensor_to_f32(t, v, n));
    uint64_t r = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case INIT_NORMAL:
            break;
        case INIT_POS:
            v[i] = 0.5f + 1.5f * (0.5f + 0.5f * tanhf(v[i]));
            break;
        case INIT_AWAY:
            v[i] = v[i] < 0 ? v[i] - 0.2f : v[i] + 0.2f;
            break;
        case INIT_DISTINCT:
            v[i] = 0.1f * (float)(i - n / 2);
            break;
        }
    }
    if (kind == INIT_DISTINCT) /* Fisher-Yates with a fixed LCG */
        for (int64_t i = n - 1; i > 0; i--) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            int64_t j = (int64_t)((r >> 33) % (uint64_t)(i + 1));
            float tmp = v[i];
            v[i] = v[j];
            v[j] = tmp;
        }
    for (int64_t i = 0; i < n; i++)
        OK(st_tensor_set_f32(t, i, v[i]));
}

static st_tensor *param(int ndim, const int64_t *shape, init_kind kind, uint64_t seed) {
    st_tensor *t = NULL;
    OK(st_tensor_new(g_ctx, ST_F32, ndim, shape, &t));
    init_values(t, kind, seed);
    OK(st_requires_grad(t, true));
    return t;
}

/* ---- the functions under check ------------------------------------------------------------- */

#define MAX_IN 5

/* What a row asks of its function. */
typedef struct gc_case {
    const char *name;
    st_gradcheck_fn fn;
    int op; /* st_op, or a variant number */
    int axis;
    bool keep; /* keepdim; or "make the input non-contiguous first" */
    int n_in;
    int ndim[MAX_IN];
    int64_t shape[MAX_IN][ST_MAX_DIMS];
    init_kind init[MAX_IN];
    float h; /* 0: default */
} gc_case;

#define C(u) ((const gc_case *)(u))

/* The transpose of a 2-D (or the last two dims of a) tensor, as a view. */
static st_status tview(st_ctx *ctx, const st_tensor *a, st_tensor **out) {
    return st_transpose(ctx, a, a->ndim - 2, a->ndim - 1, out);
}

static st_status unary(st_ctx *ctx, st_op op, const st_tensor *x, st_tensor **y) {
    switch (op) {
    case ST_OP_NEG:
        return st_neg(ctx, x, y);
    case ST_OP_EXP:
        return st_exp(ctx, x, y);
    case ST_OP_LOG:
        return st_log(ctx, x, y);
    case ST_OP_SQRT:
        return st_sqrt(ctx, x, y);
    case ST_OP_TANH:
        return st_tanh(ctx, x, y);
    case ST_OP_GELU_TANH:
        return st_gelu(ctx, x, ST_GELU_TANH, y);
    case ST_OP_GELU_ERF:
        return st_gelu(ctx, x, ST_GELU_ERF, y);
    case ST_OP_SILU:
        return st_silu(ctx, x, y);
    case ST_OP_RELU:
        return st_relu(ctx, x, y);
    case ST_OP_SCALE:
        return st_scale(ctx, x, -1.75f, y);
    default:
        return st__fail(ST_ERR_INVALID_ARG, "test: op %d is not unary", (int)op);
    }
}

/* keep: apply to the transpose (a strided view) instead of x. */
static st_status f_unary(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    st_tensor *x = in[0];
    if (C(u)->keep) ST_TRY(tview(ctx, in[0], &x));
    return unary(ctx, (st_op)C(u)->op, x, out);
}

static st_status binary(st_ctx *ctx, st_op op, const st_tensor *a, const st_tensor *b,
                        st_tensor **y) {
    switch (op) {
    case ST_OP_ADD:
        return st_add(ctx, a, b, y);
    case ST_OP_SUB:
        return st_sub(ctx, a, b, y);
    case ST_OP_MUL:
        return st_mul(ctx, a, b, y);
    case ST_OP_DIV:
        return st_div(ctx, a, b, y);
    default:
        return st__fail(ST_ERR_INVALID_ARG, "test: op %d is not binary", (int)op);
    }
}

static st_status f_binary(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    return binary(ctx, (st_op)C(u)->op, in[0], in[1], out);
}

/* a [4,3] transposed to [3,4] (op) b [6,4] rows 0,2,4 -> [3,4]; then the
 * result (op) c [4] expanded to [3,4] with st_expand. */
static st_status f_binary_views(st_ctx *ctx, st_tensor *const *in, int n, void *u,
                                st_tensor **out) {
    st_tensor *a = NULL, *b = NULL, *c = NULL, *t = NULL;
    const int64_t shp[2] = {3, 4};
    ST_TRY(tview(ctx, in[0], &a));
    ST_TRY(st_slice(ctx, in[1], 0, 0, 6, 2, &b));
    ST_TRY(st_expand(ctx, in[2], 2, shp, &c));
    ST_TRY(binary(ctx, (st_op)C(u)->op, a, b, &t));
    return binary(ctx, (st_op)C(u)->op, t, c, out);
}

/* x * x and x / x: one tensor on both sides of an op. */
static st_status f_self(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    st_tensor *t = NULL;
    ST_TRY(binary(ctx, (st_op)C(u)->op, in[0], in[0], &t));
    return st_add(ctx, t, in[0], out); /* keep x/x (== 1) differentiable */
}

static st_status f_reduce(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    const gc_case *c = u;
    switch ((st_op)c->op) {
    case ST_OP_SUM:
        return st_sum(ctx, in[0], c->axis, c->keep, out);
    case ST_OP_MEAN:
        return st_mean(ctx, in[0], c->axis, c->keep, out);
    case ST_OP_MAX:
        return st_max(ctx, in[0], c->axis, c->keep, out);
    default:
        return st_sum_all(ctx, in[0], out);
    }
}

/* reductions of a permuted view ([2,3,4] -> [4,2,3]) */
static st_status f_reduce_perm(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    const gc_case *c = u;
    const int perm[3] = {2, 0, 1};
    st_tensor *x = NULL;
    ST_TRY(st_permute(ctx, in[0], perm, &x));
    switch ((st_op)c->op) {
    case ST_OP_SUM:
        return st_sum(ctx, x, c->axis, c->keep, out);
    case ST_OP_MEAN:
        return st_mean(ctx, x, c->axis, c->keep, out);
    default:
        return st_max(ctx, x, c->axis, c->keep, out);
    }
}

static st_status f_softmax(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    st_tensor *x = in[0];
    if (C(u)->keep) ST_TRY(tview(ctx, in[0], &x));
    return C(u)->op == ST_OP_LOG_SOFTMAX ? st_log_softmax(ctx, x, out) : st_softmax(ctx, x, out);
}

/* op: LAYERNORM or RMSNORM; n inputs: x, then gamma, then beta. */
static st_status f_norm(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    st_tensor *x = in[0];
    if (C(u)->keep) ST_TRY(tview(ctx, in[0], &x));
    const st_tensor *g = n > 1 ? in[1] : NULL, *b = n > 2 ? in[2] : NULL;
    if (C(u)->op == ST_OP_LAYERNORM) return st_layernorm(ctx, x, g, b, 1e-5f, out);
    return st_rmsnorm(ctx, x, g, 1e-5f, out);
}

/* weight [5,3] gathered by ids [2,3] with repeats (the backward must add). */
static st_status f_embedding(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    static const int32_t ids_data[6] = {1, 3, 1, 0, 4, 3};
    const int64_t shp[2] = {2, 3};
    st_tensor *ids = NULL;
    ST_TRY(st_from_data(ctx, ST_I32, 2, shp, ids_data, &ids));
    return st_embedding(ctx, in[0], ids, out);
}

/* op bit 1: a is stored transposed; bit 2: b is stored transposed. */
static st_status f_matmul(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    st_tensor *a = in[0], *b = in[1];
    if (C(u)->op & 1) ST_TRY(tview(ctx, in[0], &a));
    if (C(u)->op & 2) ST_TRY(tview(ctx, in[1], &b));
    return st_matmul(ctx, a, b, out);
}

/* The view ops; op selects which. */
enum {
    V_RESHAPE,
    V_PERMUTE,
    V_SLICE,
    V_SLICE_NEG,
    V_EXPAND,
    V_CONTIGUOUS,
    V_TO_DTYPE,
    V_TRANSPOSE_RESHAPE
};

static st_status f_view(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    st_tensor *x = in[0], *t = NULL;
    switch (C(u)->op) {
    case V_RESHAPE: { /* [2,3,4] -> [4,-1] */
        const int64_t s[2] = {4, -1};
        return st_reshape(ctx, x, 2, s, out);
    }
    case V_PERMUTE: { /* [2,3,4] -> [4,2,3] */
        const int perm[3] = {2, 0, 1};
        ST_TRY(st_permute(ctx, x, perm, &t));
        return st_mul(ctx, t, t, out); /* an op on the strided view */
    }
    case V_SLICE: /* [5,6] -> [5,3]: columns 1,3,5 (a stride-2 inner dim) */
        ST_TRY(st_slice(ctx, x, 1, 1, 6, 2, &t));
        return st_tanh(ctx, t, out);
    case V_SLICE_NEG: /* rows -3.. of [5,6], then a slice of that */
        ST_TRY(st_slice(ctx, x, 0, -3, 5, 1, &t));
        ST_TRY(st_slice(ctx, t, 1, 0, 4, 3, &t));
        return st_exp(ctx, t, out);
    case V_EXPAND: { /* [3,1] -> [2,3,4] */
        const int64_t s[3] = {2, 3, 4};
        ST_TRY(st_expand(ctx, x, 3, s, &t));
        return st_mul(ctx, t, t, out);
    }
    case V_CONTIGUOUS:
        ST_TRY(tview(ctx, x, &t));
        return st_contiguous(ctx, t, out);
    case V_TO_DTYPE: /* f32 -> f32 copy: the gradient passes through */
        ST_TRY(tview(ctx, x, &t));
        return st_to_dtype(ctx, t, ST_F32, out);
    case V_TRANSPOSE_RESHAPE: { /* reshape needs a contiguous copy of a transpose */
        const int64_t s[1] = {-1};
        ST_TRY(tview(ctx, x, &t));
        ST_TRY(st_contiguous(ctx, t, &t));
        return st_reshape(ctx, t, 1, s, out);
    }
    default:
        return st__fail(ST_ERR_INVALID_ARG, "test: bad view variant");
    }
}

/* op 0: [2,3] ++ [2,1] ++ [2,2] along axis 1; op 1: [2,3] ++ ([3,1] transposed)
 * along axis 0 (axis given as -2). */
static st_status f_concat(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    if (C(u)->op == 0) {
        const st_tensor *ts[3] = {in[0], in[1], in[2]};
        return st_concat(ctx, ts, 3, 1, out);
    }
    st_tensor *t = NULL;
    ST_TRY(tview(ctx, in[1], &t));
    const st_tensor *ts[2] = {in[0], t};
    ST_TRY(st_concat(ctx, ts, 2, -2, &t));
    return st_silu(ctx, t, out);
}

/* A 2-layer MLP with cross-entropy, end to end: x = E[ids] (embedding),
 * h = gelu(x W1 + b1), logits = h W2 + b2, loss = -mean(sum(onehot *
 * log_softmax(logits), -1)). Inputs: E [6,3], W1 [3,5], b1 [5], W2 [5,4], b2 [4]. */
static st_status f_mlp(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    static const int32_t ids_data[4] = {2, 0, 5, 2};
    static const float onehot_data[16] = {0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0};
    const int64_t s_ids[1] = {4}, s_oh[2] = {4, 4};
    st_tensor *ids = NULL, *oh = NULL, *x = NULL, *h = NULL, *t = NULL;
    ST_TRY(st_from_data(ctx, ST_I32, 1, s_ids, ids_data, &ids));
    ST_TRY(st_from_data(ctx, ST_F32, 2, s_oh, onehot_data, &oh));
    ST_TRY(st_embedding(ctx, in[0], ids, &x));
    ST_TRY(st_matmul(ctx, x, in[1], &t));
    ST_TRY(st_add(ctx, t, in[2], &t));
    ST_TRY(st_gelu(ctx, t, ST_GELU_TANH, &h));
    ST_TRY(st_matmul(ctx, h, in[3], &t));
    ST_TRY(st_add(ctx, t, in[4], &t));
    ST_TRY(st_log_softmax(ctx, t, &t));
    ST_TRY(st_mul(ctx, t, oh, &t));
    ST_TRY(st_sum(ctx, t, -1, false, &t));
    ST_TRY(st_mean(ctx, t, 0, false, &t));
    return st_neg(ctx, t, out);
}

/* ---- the table ------------------------------------------------------------------------------ */

/* One row per check: the table is laid out by hand. */
/* clang-format off */
#define S1(a) {a}
#define S2(a, b) {a, b}
#define S3(a, b, c) {a, b, c}
#define S4(a, b, c, d) {a, b, c, d}

#define UN(nm, o, ini, nc) \
    {nm, f_unary, o, 0, nc, 1, {2}, {S2(3, 4)}, {ini}, 0}
#define BIN(nm, o, ini)                                                                    \
    {nm, f_binary, o, 0, false, 2, {3, 2}, {S3(3, 1, 4), S2(2, 1)}, {INIT_NORMAL, ini}, 0}
#define BINV(nm, o, ini)                                                                   \
    {nm, f_binary_views, o, 0, false, 3, {2, 2, 1}, {S2(4, 3), S2(6, 4), S1(4)},            \
     {INIT_NORMAL, ini, ini}, 0}
#define RED(nm, o, ax, kp, ini) \
    {nm, f_reduce, o, ax, kp, 1, {3}, {S3(2, 3, 4)}, {ini}, 0}
#define REDP(nm, o, ax, kp, ini) \
    {nm, f_reduce_perm, o, ax, kp, 1, {3}, {S3(2, 3, 4)}, {ini}, 0}
#define MM(nm, v, na, sa, nb, sb) \
    {nm, f_matmul, v, 0, false, 2, {na, nb}, {sa, sb}, {INIT_NORMAL, INIT_NORMAL}, 0}
#define VIEW(nm, v, nd, s) {nm, f_view, v, 0, false, 1, {nd}, {s}, {INIT_NORMAL}, 0}

static const gc_case k_cases[] = {
    UN("neg", ST_OP_NEG, INIT_NORMAL, false),
    UN("exp", ST_OP_EXP, INIT_NORMAL, false),
    UN("log", ST_OP_LOG, INIT_POS, false),
    UN("sqrt", ST_OP_SQRT, INIT_POS, false),
    UN("tanh", ST_OP_TANH, INIT_NORMAL, false),
    UN("gelu_tanh", ST_OP_GELU_TANH, INIT_NORMAL, false),
    UN("gelu_erf", ST_OP_GELU_ERF, INIT_NORMAL, false),
    UN("silu", ST_OP_SILU, INIT_NORMAL, false),
    UN("relu", ST_OP_RELU, INIT_AWAY, false),
    UN("scale", ST_OP_SCALE, INIT_NORMAL, false),
    UN("exp of a transpose", ST_OP_EXP, INIT_NORMAL, true),
    UN("gelu_erf of a transpose", ST_OP_GELU_ERF, INIT_NORMAL, true),
    UN("relu of a transpose", ST_OP_RELU, INIT_AWAY, true),

    BIN("add [3,1,4]+[2,1]", ST_OP_ADD, INIT_NORMAL),
    BIN("sub [3,1,4]-[2,1]", ST_OP_SUB, INIT_NORMAL),
    BIN("mul [3,1,4]*[2,1]", ST_OP_MUL, INIT_NORMAL),
    BIN("div [3,1,4]/[2,1]", ST_OP_DIV, INIT_POS),
    BINV("add of views", ST_OP_ADD, INIT_NORMAL),
    BINV("sub of views", ST_OP_SUB, INIT_NORMAL),
    BINV("mul of views", ST_OP_MUL, INIT_NORMAL),
    BINV("div of views", ST_OP_DIV, INIT_POS),
    {"x*x + x", f_self, ST_OP_MUL, 0, false, 1, {2}, {S2(2, 3)}, {INIT_NORMAL}, 0},
    {"x/x + x", f_self, ST_OP_DIV, 0, false, 1, {2}, {S2(2, 3)}, {INIT_POS}, 0},
    {"add [4]+[2,3,4]", f_binary, ST_OP_ADD, 0, false, 2, {1, 3}, {S1(4), S3(2, 3, 4)},
     {INIT_NORMAL, INIT_NORMAL}, 0},

    RED("sum axis 0", ST_OP_SUM, 0, false, INIT_NORMAL),
    RED("sum axis 1 keepdim", ST_OP_SUM, 1, true, INIT_NORMAL),
    RED("sum axis -1", ST_OP_SUM, -1, false, INIT_NORMAL),
    RED("mean axis 1", ST_OP_MEAN, 1, false, INIT_NORMAL),
    RED("mean axis -1 keepdim", ST_OP_MEAN, -1, true, INIT_NORMAL),
    RED("max axis 0", ST_OP_MAX, 0, false, INIT_DISTINCT),
    RED("max axis 2 keepdim", ST_OP_MAX, 2, true, INIT_DISTINCT),
    RED("max axis -2", ST_OP_MAX, -2, false, INIT_DISTINCT),
    RED("sum_all", ST_OP_NONE, 0, false, INIT_NORMAL),
    REDP("sum of a permute, axis 1", ST_OP_SUM, 1, false, INIT_NORMAL),
    REDP("mean of a permute, axis -1 keepdim", ST_OP_MEAN, -1, true, INIT_NORMAL),
    REDP("max of a permute, axis 0", ST_OP_MAX, 0, false, INIT_DISTINCT),

    {"softmax", f_softmax, ST_OP_SOFTMAX, 0, false, 1, {2}, {S2(3, 5)}, {INIT_NORMAL}, 0},
    {"log_softmax", f_softmax, ST_OP_LOG_SOFTMAX, 0, false, 1, {3}, {S3(2, 2, 5)},
     {INIT_NORMAL}, 0},
    {"softmax of a transpose", f_softmax, ST_OP_SOFTMAX, 0, true, 1, {2}, {S2(5, 3)},
     {INIT_NORMAL}, 0},
    {"log_softmax of a transpose", f_softmax, ST_OP_LOG_SOFTMAX, 0, true, 1, {2}, {S2(5, 3)},
     {INIT_NORMAL}, 0},

    {"layernorm x,gamma,beta", f_norm, ST_OP_LAYERNORM, 0, false, 3, {2, 1, 1},
     {S2(4, 6), S1(6), S1(6)}, {INIT_NORMAL, INIT_NORMAL, INIT_NORMAL}, 0},
    {"layernorm x only", f_norm, ST_OP_LAYERNORM, 0, false, 1, {3}, {S3(2, 2, 5)},
     {INIT_NORMAL}, 0},
    {"layernorm of a transpose", f_norm, ST_OP_LAYERNORM, 0, true, 2, {2, 1}, {S2(6, 4), S1(6)},
     {INIT_NORMAL, INIT_POS}, 0},
    {"rmsnorm x,gamma", f_norm, ST_OP_RMSNORM, 0, false, 2, {2, 1}, {S2(4, 6), S1(6)},
     {INIT_NORMAL, INIT_NORMAL}, 0},
    {"rmsnorm x only", f_norm, ST_OP_RMSNORM, 0, false, 1, {2}, {S2(3, 5)}, {INIT_NORMAL}, 0},
    {"rmsnorm of a transpose", f_norm, ST_OP_RMSNORM, 0, true, 2, {2, 1}, {S2(6, 4), S1(6)},
     {INIT_NORMAL, INIT_NORMAL}, 0},

    {"embedding (repeated ids)", f_embedding, 0, 0, false, 1, {2}, {S2(5, 3)}, {INIT_NORMAL}, 0},

    MM("matmul [3,4]@[4,5]", 0, 2, S2(3, 4), 2, S2(4, 5)),
    MM("matmul A^T@B^T", 3, 2, S2(4, 3), 2, S2(5, 4)),
    MM("matmul [2,3,4]@[2,4,2]", 0, 3, S3(2, 3, 4), 3, S3(2, 4, 2)),
    MM("matmul [2,3,4]@[4,5] (b broadcast)", 0, 3, S3(2, 3, 4), 2, S2(4, 5)),
    MM("matmul [3,4]@[2,4,5] (a broadcast)", 0, 2, S2(3, 4), 3, S3(2, 4, 5)),
    MM("matmul [2,1,3,4]@[3,4,2] (both)", 0, 4, S4(2, 1, 3, 4), 3, S3(3, 4, 2)),
    MM("matmul [4]@[4,5]", 0, 1, S1(4), 2, S2(4, 5)),
    MM("matmul [3,4]@[4]", 0, 2, S2(3, 4), 1, S1(4)),
    MM("matmul [4]@[4]", 0, 1, S1(4), 1, S1(4)),
    MM("matmul [4]@[2,4,3]", 0, 1, S1(4), 3, S3(2, 4, 3)),
    MM("matmul [2,3,4]@[4]", 0, 3, S3(2, 3, 4), 1, S1(4)),

    VIEW("reshape", V_RESHAPE, 3, S3(2, 3, 4)),
    VIEW("permute", V_PERMUTE, 3, S3(2, 3, 4)),
    VIEW("slice step 2 (inner dim)", V_SLICE, 2, S2(5, 6)),
    VIEW("slice negative start, step 3", V_SLICE_NEG, 2, S2(5, 6)),
    VIEW("expand [3,1]->[2,3,4]", V_EXPAND, 2, S2(3, 1)),
    VIEW("contiguous of a transpose", V_CONTIGUOUS, 2, S2(3, 4)),
    VIEW("to_dtype f32 of a transpose", V_TO_DTYPE, 2, S2(3, 4)),
    VIEW("reshape of contiguous(transpose)", V_TRANSPOSE_RESHAPE, 2, S2(3, 4)),
    {"concat axis 1", f_concat, 0, 0, false, 3, {2, 2, 2}, {S2(2, 3), S2(2, 1), S2(2, 2)},
     {INIT_NORMAL, INIT_NORMAL, INIT_NORMAL}, 0},
    {"concat axis -2 with a transpose", f_concat, 1, 0, false, 2, {2, 2}, {S2(2, 3), S2(3, 1)},
     {INIT_NORMAL, INIT_NORMAL}, 0},

    {"mlp + cross-entropy", f_mlp, 0, 0, false, 5, {2, 2, 1, 2, 1},
     {S2(6, 3), S2(3, 5), S1(5), S2(5, 4), S1(4)},
     {INIT_NORMAL, INIT_NORMAL, INIT_NORMAL, INIT_NORMAL, INIT_NORMAL}, 0},
};
/* clang-format on */

static int run_case(const gc_case *c, uint64_t seed) {
    st_tensor *all[MAX_IN] = {0};
    int n_in = c->n_in;
    for (int i = 0; i < n_in; i++)
        all[i] = param(c->ndim[i], c->shape[i], c->init[i], seed + (uint64_t)i);
    st_gradcheck_params p = st_gradcheck_default_params();
    if (c->h > 0) p.h = c->h;
    p.seed = seed * 31 + 7;
    st_gradcheck_result r;
    st_status s = st_gradcheck(g_ctx, c->fn, (void *)c, all, n_in, &p, &r);
    int bad = 0;
    if (s != ST_OK) {
        printf("  FAIL %-40s %s: %s\n", c->name, st_status_name(s), st_last_error());
        bad = 1;
    } else if (r.n_failed > 0 || r.n_checked == 0) {
        printf("  FAIL %-40s %lld/%lld elements; worst input %d [%lld]: analytic %.6g "
               "numeric %.6g\n",
               c->name, (long long)r.n_failed, (long long)r.n_checked, r.worst_input,
               (long long)r.worst_index, r.worst_analytic, r.worst_numeric);
        bad = 1;
    } else {
        printf("  ok   %-40s %4lld elements, max abs err %.2e (analytic %.5g, numeric %.5g)\n",
               c->name, (long long)r.n_checked, r.max_abs_err, r.worst_analytic, r.worst_numeric);
    }
    for (int i = 0; i < n_in; i++) {
        if (all[i]) assert_null(all[i]->ag_node);
        st_tensor_free(all[i]);
    }
    return bad;
}

static void test_gradcheck_every_op(void **state) {
    (void)state;
    int bad = 0;
    size_t n = sizeof k_cases / sizeof k_cases[0];
    for (size_t i = 0; i < n; i++)
        bad += run_case(&k_cases[i], 1000 + 17 * (uint64_t)i);
    assert_int_equal(bad, 0);
}

/* ---- the rest of the contract ------------------------------------------------------------------
 */

/* loss = sum(tanh(x @ W)) with x a step tensor; returns the loss */
static st_tensor *small_loss(st_tensor *W) {
    const int64_t sx[2] = {2, 3};
    st_tensor *x = NULL, *t = NULL;
    OK(st_randn(g_ctx, 2, sx, 99, 0.0f, 1.0f, &x));
    OK(st_matmul(g_ctx, x, W, &t));
    OK(st_tanh(g_ctx, t, &t));
    OK(st_sum_all(g_ctx, t, &t));
    return t;
}

/* The first contribution becomes a step tensor's grad without a zero-filled
 * buffer: passed-through gradients are shared (an add hands dy to both
 * operands, a reshape to its input) and copied on the next write, so a
 * lender's grad never changes through a borrower. */
static void test_grad_sharing_copy_on_write(void **state) {
    (void)state;
    const int64_t s23[2] = {2, 3}, s6[1] = {6};
    st_tensor *X = param(2, s23, INIT_NORMAL, 41);
    float x[6], g[6];
    OK(st_tensor_to_f32(X, x, 6));
    st_ctx_reset(g_ctx);
    st_tensor *a, *b, *y, *r, *sq, *l1, *l2, *loss;
    OK(st_autograd_set_retain_grads(g_ctx, true)); /* inspect the intermediates' grads */
    OK(st_scale(g_ctx, X, 1.0f, &a));   /* a = x */
    OK(st_scale(g_ctx, X, 2.0f, &b));   /* b = 2x */
    OK(st_add(g_ctx, a, b, &y));        /* y = a + b: dy goes to a and b */
    OK(st_reshape(g_ctx, y, 1, s6, &r));
    OK(st_sum_all(g_ctx, r, &l1));
    OK(st_mul(g_ctx, a, a, &sq));       /* a gets a second contribution 2a */
    OK(st_sum_all(g_ctx, sq, &l2));
    OK(st_add(g_ctx, l1, l2, &loss));
    OK(st_backward(g_ctx, loss));
    OK(st_tensor_to_f32(y->grad, g, 6));
    for (int i = 0; i < 6; i++) assert_float_equal(g[i], 1.0f, 0.0f); /* the lender */
    OK(st_tensor_to_f32(b->grad, g, 6));
    for (int i = 0; i < 6; i++) assert_float_equal(g[i], 1.0f, 0.0f);
    OK(st_tensor_to_f32(a->grad, g, 6));
    for (int i = 0; i < 6; i++) assert_float_equal(g[i], 1.0f + 2.0f * x[i], 1e-6f);
    OK(st_tensor_to_f32(X->grad, g, 6)); /* da + 2 db */
    for (int i = 0; i < 6; i++) assert_float_equal(g[i], 3.0f + 2.0f * x[i], 1e-5f);
    assert_true(st_tensor_is_contiguous(a->grad) && st_tensor_is_contiguous(r->grad));
    OK(st_autograd_set_retain_grads(g_ctx, false));
    st_ctx_reset(g_ctx);
    st_tensor_free(X);
}

static void test_accumulation_and_zero_grad(void **state) {
    (void)state;
    const int64_t sw[2] = {3, 4};
    st_tensor *W = param(2, sw, INIT_NORMAL, 5);
    st_tensor *unused = param(2, sw, INIT_NORMAL, 6);
    float g1[12], g2[12], g3[12];

    st_ctx_reset(g_ctx);
    OK(st_backward(g_ctx, small_loss(W)));
    assert_non_null(W->grad);
    assert_true(W->grad->persistent);
    OK(st_tensor_to_f32(W->grad, g1, 12));

    /* a second step (after a reset) adds the same gradient again */
    st_ctx_reset(g_ctx);
    OK(st_backward(g_ctx, small_loss(W)));
    OK(st_tensor_to_f32(W->grad, g2, 12));
    /* a third forward/backward in the same step must not revisit the second graph */
    OK(st_backward(g_ctx, small_loss(W)));
    OK(st_tensor_to_f32(W->grad, g3, 12));
    for (int i = 0; i < 12; i++) { /* sums of identical f32 values: tolerance 1e-6 relative */
        assert_float_equal(g2[i], 2.0f * g1[i], 1e-6f * (1.0f + fabsf(g1[i])));
        assert_float_equal(g3[i], 3.0f * g1[i], 1e-6f * (1.0f + fabsf(g1[i])));
    }
    assert_null(unused->grad);

    st_tensor *params[3] = {W, unused, NULL};
    st_zero_grad(params, 3); /* NULL grads and NULL entries are skipped */
    assert_null(unused->grad);
    OK(st_tensor_to_f32(W->grad, g3, 12));
    for (int i = 0; i < 12; i++)
        assert_true(g3[i] == 0.0f);

    st_ctx_reset(g_ctx);
    st_tensor_free(W);
    st_tensor_free(unused);
}

/* After a warm-up step, a training step (forward, backward, update,
 * zero_grad, reset) takes nothing from the system allocator: the tape, the
 * step grads and the backward's work lists all live in the arena. */
static void test_steady_state_allocates_nothing(void **state) {
    (void)state;
    const int64_t sw[2] = {3, 4};
    st_tensor *W = param(2, sw, INIT_NORMAL, 9);
    uint64_t n_alloc[3] = {0};
    for (int step = 0; step < 3; step++) {
        st_ctx_reset(g_ctx);
        OK(st_backward(g_ctx, small_loss(W)));
        st_ctx_set_grad_enabled(g_ctx, false);
        OK(st_axpy_(W, -0.1f, W->grad));
        st_ctx_set_grad_enabled(g_ctx, true);
        st_zero_grad(&W, 1);
        st_ctx_reset(g_ctx);
        n_alloc[step] = st_alloc_get_stats().n_alloc;
    }
    assert_int_equal(n_alloc[2], n_alloc[1]);
    st_tensor_free(W);
}

static void test_no_grad_records_nothing(void **state) {
    (void)state;
    const int64_t sw[2] = {3, 4};
    st_tensor *W = param(2, sw, INIT_NORMAL, 7);
    st_ctx_reset(g_ctx);
    assert_int_equal(st_autograd_tape_size(g_ctx), 0);

    st_ctx_set_grad_enabled(g_ctx, false);
    st_tensor *loss = small_loss(W);
    assert_int_equal(st_autograd_tape_size(g_ctx), 0);
    assert_false(loss->requires_grad);
    assert_null(loss->ag_node);
    assert_int_equal(st_backward(g_ctx, loss), ST_ERR_STATE);
    st_ctx_set_grad_enabled(g_ctx, true);
    assert_null(W->grad);

    /* grad mode on: matmul, tanh and sum_all each add at least one node */
    loss = small_loss(W);
    int n = st_autograd_tape_size(g_ctx);
    assert_true(n >= 3);
    assert_true(loss->requires_grad);
    /* enabling again is idempotent: nothing changes, nothing is recorded twice */
    OK(st_autograd_enable(g_ctx));
    st_tensor *t = NULL;
    OK(st_neg(g_ctx, loss, &t));
    assert_int_equal(st_autograd_tape_size(g_ctx), n + 1);
    st_ctx_reset(g_ctx);
    assert_int_equal(st_autograd_tape_size(g_ctx), 0);
    st_tensor_free(W);
}

static void test_backward_errors(void **state) {
    (void)state;
    const int64_t sw[2] = {3, 4}, s1[1] = {1};
    st_tensor *W = param(2, sw, INIT_NORMAL, 8);
    st_ctx_reset(g_ctx);

    st_tensor *loss = small_loss(W);
    OK(st_backward(g_ctx, loss));
    assert_int_equal(st_backward(g_ctx, loss), ST_ERR_STATE); /* consumed */

    /* a new loss sharing the consumed graph reaches a consumed node */
    st_tensor *l2 = NULL;
    OK(st_scale(g_ctx, loss, 2.0f, &l2));
    assert_int_equal(st_backward(g_ctx, l2), ST_ERR_STATE);

    /* a non-scalar output */
    st_tensor *y = NULL, *seed = NULL;
    OK(st_tanh(g_ctx, W, &y));
    assert_int_equal(st_backward(g_ctx, y), ST_ERR_SHAPE);
    OK(st_ones(g_ctx, ST_F32, 1, s1, &seed));
    assert_int_equal(st_backward_with(g_ctx, y, seed), ST_ERR_SHAPE);
    assert_int_equal(st_backward(g_ctx, NULL), ST_ERR_INVALID_ARG);

    /* st_backward_with from a [3,4] output with a seed of its shape */
    st_zero_grad(&W, 1);
    OK(st_full(g_ctx, ST_F32, 2, sw, 0.5f, &seed));
    OK(st_backward_with(g_ctx, y, seed));
    float w[12], g[12];
    OK(st_tensor_to_f32(W, w, 12));
    OK(st_tensor_to_f32(W->grad, g, 12));
    for (int i = 0; i < 12; i++) { /* d tanh = 1 - tanh^2; tolerance 1e-5 */
        float th = tanhf(w[i]);
        assert_float_equal(g[i], 0.5f * (1.0f - th * th), 1e-5f);
    }

    /* only f32 takes gradients */
    st_tensor *ids = NULL;
    OK(st_tensor_new(g_ctx, ST_I32, 1, s1, &ids));
    assert_int_equal(st_requires_grad(ids, true), ST_ERR_DTYPE);
    OK(st_requires_grad(ids, false));
    assert_int_equal(st_requires_grad(NULL, true), ST_ERR_INVALID_ARG);
    assert_int_equal(st_autograd_enable(NULL), ST_ERR_INVALID_ARG);
    assert_int_equal(st_autograd_tape_size(NULL), 0);

    st_ctx_reset(g_ctx);
    st_tensor_free(ids);
    st_tensor_free(W);
}

/* Step-tensor grads: intermediates and step leaves get arena grads; a bf16
 * round trip passes the gradient through as f32; a bf16 matmul gets f32
 * gradients for its f32 sources. */
static void test_step_grads_and_dtype(void **state) {
    (void)state;
    const int64_t s[1] = {4};
    static const float c_data[4] = {1.0f, -2.0f, 0.5f, 3.0f};
    st_ctx_reset(g_ctx);
    st_tensor *x = NULL, *c = NULL, *b = NULL, *y = NULL, *t = NULL, *loss = NULL;
    OK(st_autograd_set_retain_grads(g_ctx, true));
    OK(st_randn(g_ctx, 1, s, 3, 0.0f, 1.0f, &x));
    OK(st_requires_grad(x, true));
    OK(st_from_data(g_ctx, ST_F32, 1, s, c_data, &c));
    OK(st_to_dtype(g_ctx, x, ST_BF16, &b));
    OK(st_to_dtype(g_ctx, b, ST_F32, &y));
    OK(st_mul(g_ctx, y, c, &t));
    OK(st_sum_all(g_ctx, t, &loss));
    OK(st_backward(g_ctx, loss));
    assert_non_null(x->grad);
    assert_false(x->grad->persistent);
    assert_non_null(t->grad); /* retained: an intermediate keeps its grad until the reset */
    float g[4];
    OK(st_tensor_to_f32(x->grad, g, 4));
    for (int i = 0; i < 4; i++)
        assert_float_equal(g[i], c_data[i], 0.0f); /* exact */
    OK(st_autograd_set_retain_grads(g_ctx, false));
    st_ctx_reset(g_ctx);

    /* a bf16 matmul: loss = sum(bf16(A) @ bf16(B)), so dA[i,k] = sum_j B[k,j]
     * and dB[k,j] = sum_i A[i,k] (of the bf16-rounded values: relative
     * tolerance 1e-2, about two bf16 ulps) */
    const int64_t sa[2] = {2, 3}, sb[2] = {3, 4};
    st_tensor *A = param(2, sa, INIT_NORMAL, 21), *B = param(2, sb, INIT_NORMAL, 22);
    st_tensor *ab = NULL, *bb = NULL;
    OK(st_to_dtype(g_ctx, A, ST_BF16, &ab));
    OK(st_to_dtype(g_ctx, B, ST_BF16, &bb));
    OK(st_matmul(g_ctx, ab, bb, &t));
    OK(st_sum_all(g_ctx, t, &loss));
    OK(st_backward(g_ctx, loss));
    float av[6], bv[12], ga[6], gb[12];
    OK(st_tensor_to_f32(A, av, 6));
    OK(st_tensor_to_f32(B, bv, 12));
    OK(st_tensor_to_f32(A->grad, ga, 6));
    OK(st_tensor_to_f32(B->grad, gb, 12));
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++) {
            float want = 0.0f, mag = 0.0f;
            for (int j = 0; j < 4; j++)
                want += bv[4 * k + j], mag += fabsf(bv[4 * k + j]);
            assert_float_equal(ga[3 * i + k], want, 1e-2f * mag);
        }
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 4; j++) {
            float want = av[k] + av[3 + k], mag = fabsf(av[k]) + fabsf(av[3 + k]);
            assert_float_equal(gb[4 * k + j], want, 1e-2f * mag);
        }
    st_ctx_reset(g_ctx);
    st_tensor_free(A);
    st_tensor_free(B);
}

/* The checker must catch a wrong gradient: out = x * stop_grad(x) has
 * d/dx = 2x, but the tape sees only x * const. */
static st_status f_detached(st_ctx *ctx, st_tensor *const *in, int n, void *u, st_tensor **out) {
    float v[6];
    st_tensor *c = NULL;
    ST_TRY(st_tensor_to_f32(in[0], v, 6));
    ST_TRY(st_from_data(ctx, ST_F32, in[0]->ndim, in[0]->ne, v, &c));
    return st_mul(ctx, in[0], c, out);
}

static void test_gradcheck_catches_errors(void **state) {
    (void)state;
    const int64_t s[2] = {2, 3};
    st_tensor *x = param(2, s, INIT_POS, 11);
    st_gradcheck_result r;
    OK(st_gradcheck(g_ctx, f_detached, NULL, &x, 1, NULL, &r));
    /* analytic x*w, numeric 2x*w (x >= 0.5): every element whose projection
     * weight |w| is above ~0.02 fails; the worst is off by a factor of 2 */
    assert_int_equal(r.n_checked, 6);
    assert_true(r.n_failed >= 1);
    assert_int_equal(r.worst_input, 0);
    assert_float_equal(r.worst_numeric, 2.0 * r.worst_analytic, 1e-2 * fabs(r.worst_numeric));
    assert_null(x->grad); /* gradcheck leaves no grad behind */
    assert_int_equal(st_gradcheck(g_ctx, NULL, NULL, &x, 1, NULL, &r), ST_ERR_INVALID_ARG);
    st_tensor_free(x);
}

/* Backward gives consumed gradients and its scratch back to the arena as
 * it goes: a chain of ops on 256 KiB tensors (tanh, add with a leaf, reshape
 * round trips: adopted, borrowed and copy-on-write grads) peaks at the saved
 * activations plus a few buffers, while retaining every grad costs about one
 * more buffer per node. The leaf's gradient is the same either way, bit for
 * bit, and st_autograd_saved_bytes counts exactly the chain's tensors. */
#define CHAIN_N 12
static void run_chain(bool retain, size_t *extra, size_t *saved, float *gx) {
    st_ctx *ctx = NULL;
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = 1;
    OK(st_ctx_new(&cp, &ctx));
    OK(st_autograd_enable(ctx));
    OK(st_autograd_set_retain_grads(ctx, retain));
    const int64_t s2[2] = {256, 256}, s1[1] = {65536};
    st_tensor *x = NULL, *h = NULL, *loss = NULL, *mid[CHAIN_N];
    OK(st_randn(ctx, 2, s2, 5, 0.0f, 1.0f, &x));
    OK(st_requires_grad(x, true));
    h = x;
    for (int i = 0; i < CHAIN_N; i++) {
        OK(st_tanh(ctx, h, &h));
        OK(st_add(ctx, h, x, &h)); /* dy to both: borrowed, then copy on write for x */
        mid[i] = h;
        OK(st_reshape(ctx, h, 1, s1, &h));
        OK(st_reshape(ctx, h, 2, s2, &h));
    }
    OK(st_sum_all(ctx, h, &loss));
    *saved = st_autograd_saved_bytes(ctx);
    size_t before = st_arena_used_bytes(st_ctx_arena(ctx));
    assert_true(st_arena_peak_bytes(st_ctx_arena(ctx)) <= before + 4096);
    OK(st_backward(ctx, loss));
    *extra = st_arena_peak_bytes(st_ctx_arena(ctx)) - before;
    assert_non_null(x->grad);
    OK(st_tensor_to_f32(x->grad, gx, 65536));
    for (int i = 0; i < CHAIN_N; i++)
        assert_true(retain ? mid[i]->grad != NULL : mid[i]->grad == NULL);
    st_ctx_reset(ctx);
    st_ctx_free(ctx);
}

static void test_backward_releases_memory(void **state) {
    (void)state;
    const size_t buf = 65536 * sizeof(float);
    float *g1 = malloc(65536 * sizeof *g1), *g2 = malloc(65536 * sizeof *g2);
    assert_true(g1 && g2);
    size_t extra_rel = 0, extra_ret = 0, saved1 = 0, saved2 = 0;
    run_chain(false, &extra_rel, &saved1, g1);
    run_chain(true, &extra_ret, &saved2, g2);
    if (getenv("STRATA_TEST_VERBOSE"))
        printf("    backward peak over the forward: %.2f buffers released, %.2f retained\n",
               (double)extra_rel / (double)buf, (double)extra_ret / (double)buf);
    assert_memory_equal(g1, g2, 65536 * sizeof *g1);
    /* x, and per link the tanh and the add outputs (reshapes are views); the
     * loss is one float in the bump blocks */
    size_t want = (1 + 2 * CHAIN_N) * buf;
    assert_true(saved1 == saved2 && saved1 >= want && saved1 <= want + 64);
    assert_true(extra_rel <= 4 * buf);
    assert_true(extra_ret >= CHAIN_N * buf);
    free(g1);
    free(g2);
}

/* Contexts come and go (a new one often gets a freed one's addresses): each
 * must start with an empty tape that resets with it and counts only its own
 * nodes (a second live context records beside it), enable must stay
 * idempotent, and nothing may leak (the state is freed with the context,
 * also when it dies with nodes on its tape). */
static void test_context_lifecycle(void **state) {
    (void)state;
    for (int round = 0; round < 12; round++) {
        st_ctx *ctx = NULL, *other = NULL;
        st_ctx_params p = st_ctx_default_params();
        p.arena_bytes = (size_t)1 << 16;
        OK(st_ctx_new(&p, &ctx));
        assert_int_equal(st_autograd_tape_size(ctx), 0);
        OK(st_autograd_enable(ctx));
        OK(st_autograd_enable(ctx));
        assert_int_equal(st_autograd_tape_size(ctx), 0);
        const int64_t s[1] = {3};
        st_tensor *w = NULL, *y = NULL, *v = NULL, *z = NULL;
        OK(st_tensor_new(ctx, ST_F32, 1, s, &w));
        OK(st_requires_grad(w, true));
        OK(st_tanh(ctx, w, &y));
        OK(st_tanh(ctx, y, &y));
        assert_int_equal(st_autograd_tape_size(ctx), 2);
        if (round % 3 == 0) { /* a second context alive at the same time */
            OK(st_ctx_new(&p, &other));
            OK(st_autograd_enable(other));
            OK(st_tensor_new(other, ST_F32, 1, s, &v));
            OK(st_requires_grad(v, true));
            OK(st_exp(other, v, &z));
            assert_int_equal(st_autograd_tape_size(other), 1);
            assert_int_equal(st_autograd_tape_size(ctx), 2);
            st_tensor_free(v);
            st_ctx_free(other); /* with a node on its tape */
        }
        st_ctx_reset(ctx);
        assert_int_equal(st_autograd_tape_size(ctx), 0);
        OK(st_tanh(ctx, w, &y)); /* on the tape when the context dies */
        if (round % 2) {         /* half the rounds also backpropagate */
            OK(st_sum_all(ctx, y, &y));
            OK(st_backward(ctx, y));
            assert_non_null(w->grad);
        }
        st_tensor_free(w);
        st_ctx_free(ctx);
    }
}

/* Autograd owns the context's recorder and extension slot: a context
 * without it counts no tape whatever recorder it has, enabling replaces a
 * foreign recorder, and a slot that holds something while autograd's
 * recorder is gone is refused (ST_ERR_STATE) rather than guessed at. */
static st_status rec_noop(st_ctx *ctx, void *user, const st_op_desc *desc,
                          st_tensor *const *srcs, int n_src, st_tensor *out) {
    (void)ctx, (void)desc, (void)srcs, (void)n_src, (void)out;
    ++*(int *)user;
    return ST_OK;
}

static void test_enable_slot_rules(void **state) {
    (void)state;
    st_ctx *ctx = NULL;
    OK(st_ctx_new(NULL, &ctx));
    const int64_t s[1] = {3};
    st_tensor *w = NULL, *y = NULL;
    OK(st_tensor_new(ctx, ST_F32, 1, s, &w));
    OK(st_requires_grad(w, true));
    int calls = 0;
    st_ctx_set_recorder(ctx, rec_noop, &calls);
    OK(st_tanh(ctx, w, &y));
    assert_int_equal(calls, 1);
    assert_int_equal(st_autograd_tape_size(ctx), 0); /* not autograd's recorder */
    OK(st_autograd_enable(ctx));                     /* replaces it */
    assert_non_null(st_ctx_get_ext(ctx));
    OK(st_tanh(ctx, w, &y));
    assert_int_equal(calls, 1);
    assert_int_equal(st_autograd_tape_size(ctx), 1);
    st_ctx_set_recorder(ctx, rec_noop, &calls); /* a caller bug, refused below */
    assert_int_equal(st_autograd_tape_size(ctx), 0);
    assert_int_equal(st_autograd_enable(ctx), ST_ERR_STATE);
    assert_non_null(strstr(st_last_error(), "extension slot"));
    st_tensor_free(w);
    st_ctx_free(ctx); /* frees autograd's state all the same */
}

static int group_setup(void **state) {
    (void)state;
    st_ctx_params p = st_ctx_default_params();
    if (st_ctx_new(&p, &g_ctx) != ST_OK) return -1;
    return st_autograd_enable(g_ctx) == ST_OK ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    st_ctx_free(g_ctx);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_every_op),
        cmocka_unit_test(test_accumulation_and_zero_grad),
        cmocka_unit_test(test_grad_sharing_copy_on_write),
        cmocka_unit_test(test_steady_state_allocates_nothing),
        cmocka_unit_test(test_no_grad_records_nothing),
        cmocka_unit_test(test_backward_errors),
        cmocka_unit_test(test_step_grads_and_dtype),
        cmocka_unit_test(test_gradcheck_catches_errors),
        cmocka_unit_test(test_backward_releases_memory),
        cmocka_unit_test(test_context_lifecycle),
        cmocka_unit_test(test_enable_slot_rules),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
