/*
 * test_dist.c — layer 7 data parallelism (strata/dist.h) without mpirun: the
 * arithmetic of shards and buckets, autograd's gradient-ready hook, and a
 * st_ddp over the local (size-1) communicator against plain training.
 *
 *  - st_dist_shard_range: the shards of n over N ranks tile [0, n) in rank
 *    order, sizes differ by at most one, the larger ones first (table).
 *  - st_dist_plan_buckets: the flat layout is backward order, buckets are
 *    contiguous, none exceeds the cap unless it holds a single tensor, a
 *    tensor larger than the cap sits alone (hand-worked examples).
 *  - The hook: on a tiny gpt2 (tied embedding, used first and last in the
 *    forward), every parameter is reported exactly once, and the grad it
 *    holds when reported equals its final grad (so the bucket that starts
 *    then sends final values); without a hook the grads are bit-identical.
 *  - st_ddp on the local communicator, with and without ZeRO-1 and with 2
 *    accumulated micro-batches, follows st_optim + st_clip_grad_norm on the
 *    same batches for 5 steps (ZeRO's AdamW is optim.c's arithmetic: equal
 *    bit for bit; accumulation: within 1e-6), and a ZeRO checkpoint
 *    written by st_ddp_save loads into a plain st_optim (the full format).
 *  - ST_DIST_OVERLAP_* names round-trip; a size-1 communicator's
 *    collectives are identities.
 * Leak-free under ASan (the local communicator never initializes MPI).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata/dist.h"

#define OK(expr)                                                                                   \
    do {                                                                                           \
        st_status s_ = (expr);                                                                     \
        if (s_ != ST_OK) fail_msg("%s -> %s: %s", #expr, st_status_name(s_), st_last_error());     \
    } while (0)

static void test_shard_range(void **state) {
    (void)state;
    const int64_t ns[] = {0, 1, 7, 10, 1000003, 64};
    const int sizes[] = {1, 2, 3, 4, 7, 16};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof sizes / sizeof sizes[0]; b++) {
            int64_t n = ns[a], prev = 0, big = -1, small = INT64_MAX;
            int N = sizes[b];
            for (int r = 0; r < N; r++) {
                int64_t lo, hi;
                st_dist_shard_range(n, N, r, &lo, &hi);
                assert_int_equal(lo, prev);
                assert_true(hi >= lo);
                int64_t len = hi - lo;
                if (r > 0) assert_true(len <= (hi - lo) + 1);
                if (len > big) big = len;
                if (len < small) small = len;
                if (r > 0 && len > 0) { /* larger shards come first */
                    int64_t plo, phi;
                    st_dist_shard_range(n, N, r - 1, &plo, &phi);
                    assert_true(phi - plo >= len);
                }
                prev = hi;
            }
            assert_int_equal(prev, n);
            assert_true(big - small <= 1);
        }
    int64_t lo, hi;
    st_dist_shard_range(10, 4, 0, &lo, &hi); /* 3 3 2 2 */
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 3);
    st_dist_shard_range(10, 4, 3, &lo, &hi);
    assert_int_equal(lo, 8);
    assert_int_equal(hi, 10);
}

static void test_plan_buckets(void **state) {
    (void)state;
    /* 4 tensors of 10, 300, 20, 30 floats; cap 200 bytes (50 floats) */
    const int64_t numel[] = {10, 300, 20, 30};
    int64_t off[4], lo[6];
    int bucket[4];
    int nb = st_dist_plan_buckets(numel, 4, 200, off, bucket, lo);
    /* backward order: t3 (30) t2 (20) -> bucket 0 (200 bytes: fits exactly);
     * t1 (300) alone -> bucket 1; t0 (10) -> bucket 2 */
    assert_int_equal(nb, 3);
    assert_int_equal(off[3], 0);
    assert_int_equal(off[2], 30);
    assert_int_equal(off[1], 50);
    assert_int_equal(off[0], 350);
    assert_int_equal(bucket[3], 0);
    assert_int_equal(bucket[2], 0);
    assert_int_equal(bucket[1], 1);
    assert_int_equal(bucket[0], 2);
    assert_int_equal(lo[0], 0);
    assert_int_equal(lo[1], 50);
    assert_int_equal(lo[2], 350);
    assert_int_equal(lo[3], 360);
    /* a huge cap: one bucket; a tiny cap: one per tensor */
    assert_int_equal(st_dist_plan_buckets(numel, 4, (size_t)1 << 30, off, bucket, lo), 1);
    assert_int_equal(lo[1], 360);
    assert_int_equal(st_dist_plan_buckets(numel, 4, 4, off, bucket, lo), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(bucket[i], 3 - i);
    assert_int_equal(st_dist_plan_buckets(numel, 0, 4, off, bucket, lo), 0);
}

static void test_overlap_names(void **state) {
    (void)state;
    for (int o = 0; o <= 2; o++) {
        st_dist_overlap x;
        assert_true(st_dist_overlap_parse(st_dist_overlap_name((st_dist_overlap)o), &x));
        assert_int_equal((int)x, o);
    }
    st_dist_overlap x;
    assert_false(st_dist_overlap_parse("sometimes", &x));
}

/* ---- a tiny model ------------------------------------------------------------------------- */

static st_model_config tiny_cfg(void) {
    st_model_config c = st_model_config_default(ST_ARCH_GPT2);
    c.n_layer = 2, c.n_embd = 16, c.n_head = 2, c.n_kv_head = 2, c.n_ff = 64;
    c.vocab_size = 23, c.n_ctx = 16, c.tie_embeddings = true, c.bias = false;
    return c;
}

static void batch_of(int step, int slice, int32_t *ids, int32_t *tg, int B, int T) {
    for (int k = 0; k < B * T; k++) {
        ids[k] = (int32_t)((k * 7 + step * 3 + slice * 11) % 23);
        tg[k] = (int32_t)((k * 5 + step + slice * 13 + 1) % 23);
    }
}

static st_status loss_of(st_ctx *ctx, st_model *m, int step, int slice, st_tensor **loss) {
    enum { B = 2, T = 8 };
    int32_t ids[B * T], tg[B * T];
    batch_of(step, slice, ids, tg, B, T);
    const int64_t sh[2] = {B, T};
    st_tensor *x, *y;
    ST_TRY(st_from_data(ctx, ST_I32, 2, sh, ids, &x));
    ST_TRY(st_from_data(ctx, ST_I32, 2, sh, tg, &y));
    return st_model_loss(m, x, y, loss, NULL);
}

typedef struct hook_log {
    st_model *m;
    int n, calls[64];
    float *seen[64]; /* copy of the grad when reported */
} hook_log;

static st_status record(void *user, st_tensor *t) {
    hook_log *h = user;
    for (int i = 0; i < h->n; i++)
        if (st_model_tensor(h->m, i, NULL) == t) {
            h->calls[i]++;
            int64_t n = st_tensor_numel(t);
            h->seen[i] = malloc(sizeof(float) * (size_t)n);
            memcpy(h->seen[i], t->grad->data, sizeof(float) * (size_t)n);
            return ST_OK;
        }
    fail_msg("hook reported a tensor that is not a parameter");
    return ST_OK;
}

static void test_grad_ready_hook(void **state) {
    (void)state;
    st_ctx *ctx = NULL;
    OK(st_ctx_new(NULL, &ctx));
    st_model_config c = tiny_cfg();
    st_model *m = NULL, *m2 = NULL;
    OK(st_model_new(ctx, &c, 5, &m));
    OK(st_model_new(ctx, &c, 5, &m2));
    hook_log h = {.m = m, .n = st_model_n_tensors(m)};
    assert_true(h.n <= 64);
    OK(st_autograd_set_grad_ready_hook(ctx, record, &h));
    st_tensor *loss = NULL;
    OK(loss_of(ctx, m, 0, 0, &loss));
    OK(st_backward(ctx, loss));
    OK(st_autograd_set_grad_ready_hook(ctx, NULL, NULL));
    st_ctx_reset(ctx);
    OK(loss_of(ctx, m2, 0, 0, &loss)); /* the same model, no hook */
    OK(st_backward(ctx, loss));
    for (int i = 0; i < h.n; i++) {
        const char *name = NULL;
        st_tensor *p = st_model_tensor(m, i, &name), *p2 = st_model_tensor(m2, i, NULL);
        assert_int_equal(h.calls[i], 1);
        int64_t n = st_tensor_numel(p);
        assert_memory_equal(h.seen[i], p->grad->data, sizeof(float) * (size_t)n);
        assert_memory_equal(p2->grad->data, p->grad->data, sizeof(float) * (size_t)n);
        free(h.seen[i]);
    }
    st_ctx_reset(ctx);
    st_model_free(m);
    st_model_free(m2);
    st_ctx_free(ctx);
}

/* Trains 5 steps of `accum` micro-batches with a st_ddp (local communicator)
 * and with st_optim directly; returns the largest relative parameter gap. */
static double ddp_vs_plain(int zero, int accum, const char *ckpt_dir) {
    st_ctx *ctx = NULL;
    OK(st_ctx_new(NULL, &ctx));
    st_model_config c = tiny_cfg();
    st_model *a = NULL, *b = NULL;
    OK(st_model_new(ctx, &c, 9, &a));
    OK(st_model_new(ctx, &c, 9, &b));
    st_dist *d = NULL;
    st_dist_params dp = st_dist_default_params();
    OK(st_dist_new(&dp, &d));
    assert_int_equal(st_dist_size(d), 1);
    assert_int_equal(st_dist_rank(d), 0);
    assert_false(st_dist_is_mpi(d));
    st_ddp_params pp = st_ddp_default_params();
    pp.zero = zero;
    pp.bucket_bytes = 4096; /* several buckets */
    st_ddp *dd = NULL;
    OK(st_ddp_new(d, a, &pp, &dd));
    st_optim *o = NULL;
    OK(st_optim_new(b, &pp.optim, &o));
    assert_int_equal(st_ddp_optim_bytes(dd), (size_t)st_model_n_params(a) * 8);
    for (int step = 0; step < 5; step++) {
        float lr = 1e-2f * (float)(step + 1);
        for (int k = 0; k < accum; k++) {
            st_ctx_reset(ctx);
            st_tensor *loss = NULL;
            OK(loss_of(ctx, a, step, k, &loss));
            st_ddp_prepare(dd, k == accum - 1);
            OK(st_backward(ctx, loss));
        }
        OK(st_ddp_finish(dd, 1.0f / (float)accum));
        OK(st_ddp_step(dd, lr, 0.5f, NULL));
        st_ddp_zero_grad(dd);
        for (int k = 0; k < accum; k++) {
            st_ctx_reset(ctx);
            st_tensor *loss = NULL, *scaled = NULL;
            OK(loss_of(ctx, b, step, k, &loss));
            if (accum > 1) {
                OK(st_scale(ctx, loss, 1.0f / (float)accum, &scaled));
                loss = scaled;
            }
            OK(st_backward(ctx, loss));
        }
        OK(st_clip_grad_norm(b, 0.5f, NULL));
        OK(st_optim_step(o, lr));
        st_model_zero_grad(b);
    }
    st_ctx_reset(ctx);
    double worst = 0.0;
    for (int i = 0; i < st_model_n_tensors(a); i++) {
        st_tensor *pa = st_model_tensor(a, i, NULL), *pb = st_model_tensor(b, i, NULL);
        const float *x = pa->data, *y = pb->data;
        for (int64_t k = 0; k < st_tensor_numel(pa); k++) {
            double r = fabs((double)x[k] - (double)y[k]) / (fabs((double)y[k]) + 1e-3);
            if (r > worst) worst = r;
        }
    }
    assert_int_equal(st_ddp_optim_step(dd), 5);
    if (ckpt_dir) { /* the full format: a plain optimizer reads it and matches o */
        st_train_state ts = {.step = 5, .seed = 9, .data_bytes = -1};
        st_model_card card = st_model_card_default();
        card.step = 5;
        OK(st_modeldir_save(ckpt_dir, a, NULL, &card));
        OK(st_ddp_save(dd, ckpt_dir, &ts));
        st_optim *o2 = NULL;
        OK(st_optim_new(b, &pp.optim, &o2));
        st_train_state got;
        memset(&got, 0, sizeof got);
        OK(st_train_state_load(ckpt_dir, o2, &got));
        assert_int_equal(got.step, 5);
        assert_int_equal(st_optim_get_step(o2), 5);
        assert_int_equal(st_optim_n_state(o2), st_optim_n_state(o));
        for (int i = 0; i < st_optim_n_state(o); i++) {
            st_tensor *s1 = st_optim_state(o, i, NULL), *s2 = st_optim_state(o2, i, NULL);
            const float *x = s1->data, *y = s2->data;
            for (int64_t k = 0; k < st_tensor_numel(s1); k++)
                assert_true(fabs((double)x[k] - (double)y[k]) <=
                            1e-6 * (fabs((double)x[k]) + 1e-6));
        }
        st_train_state_clear(&got);
        /* and a ZeRO st_ddp loads it back */
        st_train_state got2;
        memset(&got2, 0, sizeof got2);
        OK(st_ddp_load(dd, ckpt_dir, &got2));
        assert_int_equal(st_ddp_optim_step(dd), 5);
        st_train_state_clear(&got2);
        st_optim_free(o2);
    }
    st_ddp_free(dd);
    st_optim_free(o);
    st_model_free(a);
    st_model_free(b);
    st_dist_free(d);
    st_ctx_free(ctx);
    return worst;
}

static void test_ddp_local(void **state) {
    (void)state;
    assert_true(ddp_vs_plain(0, 1, NULL) == 0.0); /* same arithmetic: bit for bit */
    assert_true(ddp_vs_plain(1, 1, NULL) == 0.0); /* ZeRO's AdamW is optim.c's */
    double g = ddp_vs_plain(0, 2, NULL);          /* sum then scale vs scaled losses */
    assert_true(g <= 1e-5);
    char dir[] = "/tmp/strata_test_dist_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_true(ddp_vs_plain(1, 2, dir) <= 1e-5);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_local_collectives(void **state) {
    (void)state;
    st_dist *d = NULL;
    OK(st_dist_new(NULL, &d));
    double v[3] = {1.5, -2.0, 3.25};
    OK(st_dist_allreduce_sum_f64(d, v, 3));
    assert_true(v[0] == 1.5 && v[1] == -2.0 && v[2] == 3.25);
    char buf[8] = "abcdefg";
    OK(st_dist_broadcast(d, buf, sizeof buf, 0));
    assert_string_equal(buf, "abcdefg");
    OK(st_dist_barrier(d));
    assert_int_equal(st_dist_broadcast(d, buf, sizeof buf, 1), ST_ERR_INVALID_ARG);
    st_dist_free(d);
    st_dist_params p = st_dist_default_params();
    p.timeout_s = 0;
    assert_int_equal(st_dist_new(&p, &d), ST_ERR_INVALID_ARG);
}

int main(void) {
    unsetenv("OMPI_COMM_WORLD_SIZE"); /* the local communicator, even under mpirun */
    unsetenv("PMIX_RANK");
    unsetenv("PMI_RANK");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_range),   cmocka_unit_test(test_plan_buckets),
        cmocka_unit_test(test_overlap_names), cmocka_unit_test(test_grad_ready_hook),
        cmocka_unit_test(test_ddp_local),     cmocka_unit_test(test_local_collectives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
