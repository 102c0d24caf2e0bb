/*
 * loader.c — `strata bench loader`: how much faster the shard loader delivers
 * batches than shakespeare-char training consumes them, and the share of
 * training time spent waiting on data.
 *
 * Setup: tinyshakespeare is ingested (char-level tokenizer built from the
 * text) into a temporary dataset directory. Side by side in one run:
 *  1. the loader alone: --batches batches of [64, 257] ids (shakespeare-char:
 *     batch 64, block 256) in random mode, with the prefetch thread (ring of
 *     4) and without it (batches made in st_loader_next), median of --reps;
 *  2. training: the shakespeare-char gpt2 model (6 layers, 6 heads, 384
 *     wide, block 256, vocab 65) built with the st_model API, fed by a
 *     prefetching loader: --warmup untimed and --steps timed steps of
 *     forward + backward + clip + AdamW; steps/s from the median step, and
 *     the loader's wait time over the timed steps.
 * Ratio = loader batches/s / training steps/s (goal >= 50); wait share =
 * wait / step time (goal < 1%). The loader and the model share the cores
 * the way `strata train` would: the pool computes, one prefetch thread
 * copies.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "strata/data.h"
#include "strata/model.h"
#include "train_config.h"

int bench_loader_main(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f, "usage: strata bench loader [--file PATH] [--batches N] [--reps N] [--steps N]\n"
               "                           [--warmup N] [--threads N] [--no-train] [--json]\n\n"
               "Batches/s of the token-shard loader (batch 64, block 256: shakespeare-char's\n"
               "shapes) against the steps/s of shakespeare-char training fed by it, and the\n"
               "share of training time spent waiting on data. Goals: ratio >= 50, wait < 1%%.\n\n"
               "options:\n"
               "  --file PATH   text to ingest (default: data/tinyshakespeare.txt, also\n"
               "                looked up under $STRATA_SOURCE_DIR)\n"
               "  --batches N   batches per loader repetition (default 2000)\n"
               "  --reps N      loader repetitions, median reported (default 5)\n"
               "  --steps N     timed training steps (default 3)\n"
               "  --warmup N    untimed training steps first (default 1)\n"
               "  --threads N   compute threads (default: STRATA_THREADS, else all CPUs)\n"
               "  --no-train    measure the loader only\n"
               "  --json        one JSON object\n");
}

static int rm_tree(const char *dir) {
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

/* Batches/s of a loader over n batches. */
static st_status loader_rate(const char *dir, int prefetch, int n, double *rate) {
    st_loader_params p = st_loader_default_params();
    p.batch_size = 64;
    p.block_size = 256;
    p.prefetch = prefetch;
    st_loader *l = NULL;
    ST_TRY(st_loader_new(dir, &p, &l));
    int32_t *buf = st_malloc(sizeof(int32_t) * 64 * 257);
    st_status s = buf ? ST_OK : st__fail(ST_ERR_NOMEM, "bench loader: no memory");
    double t0 = st_time_s();
    for (int i = 0; s == ST_OK && i < n; i++)
        s = st_loader_next(l, buf, NULL);
    double dt = st_time_s() - t0;
    *rate = dt > 0 ? n / dt : 0;
    st_free(buf);
    st_loader_free(l);
    return s;
}

/* Median step seconds and total loader wait of shakespeare-char training. */
static st_status train_side(const char *dir, int threads, int warmup, int steps, double *step_s,
                            double *wait_s, double *total_s) {
    train_config c;
    if (!train_config_named("shakespeare-char", &c))
        return st__fail(ST_ERR_INTERNAL, "bench loader: no shakespeare-char configuration");
    int B = c.batch_size, T = c.block_size;
    st_ctx *ctx = NULL;
    st_model *m = NULL;
    st_optim *o = NULL;
    st_loader *l = NULL;
    int32_t *xy = st_malloc(sizeof(int32_t) * (size_t)B * (T + 1)),
            *x = st_malloc(sizeof(int32_t) * (size_t)B * T),
            *y = st_malloc(sizeof(int32_t) * (size_t)B * T);
    double *times = st_malloc(sizeof(double) * (size_t)steps);
    st_status s = ST_OK;
    *wait_s = *total_s = 0;
    if (!xy || !x || !y || !times) {
        s = st__fail(ST_ERR_NOMEM, "bench loader: no memory");
        goto done;
    }
    st_loader_params lp = st_loader_default_params();
    lp.batch_size = B;
    lp.block_size = T;
    if ((s = st_loader_new(dir, &lp, &l)) != ST_OK) goto done;
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = threads;
    if ((s = st_ctx_new(&cp, &ctx)) != ST_OK) goto done;
    st_model_config mc = train_config_model(&c, (int)st_loader_vocab_size(l));
    if ((s = st_model_new(ctx, &mc, 1337, &m)) != ST_OK) goto done;
    st_optim_params op = st_optim_default_params(ST_OPTIM_ADAMW);
    op.lr = (float)c.learning_rate;
    op.beta1 = (float)c.beta1;
    op.beta2 = (float)c.beta2;
    op.weight_decay = (float)c.weight_decay;
    if ((s = st_optim_new(m, &op, &o)) != ST_OK) goto done;
    const int64_t shape[2] = {B, T};
    for (int i = 0; i < warmup + steps; i++) {
        double t0 = st_time_s(), w = 0;
        if ((s = st_loader_next(l, xy, &w)) != ST_OK) goto done;
        for (int b = 0; b < B; b++) {
            memcpy(x + (size_t)b * T, xy + (size_t)b * (T + 1), sizeof(int32_t) * (size_t)T);
            memcpy(y + (size_t)b * T, xy + (size_t)b * (T + 1) + 1, sizeof(int32_t) * (size_t)T);
        }
        st_ctx_reset(ctx);
        st_tensor *tx, *ty, *loss;
        st_model_set_training(m, true, (uint64_t)i);
        if ((s = st_from_data(ctx, ST_I32, 2, shape, x, &tx)) != ST_OK) goto done;
        if ((s = st_from_data(ctx, ST_I32, 2, shape, y, &ty)) != ST_OK) goto done;
        if ((s = st_model_loss(m, tx, ty, &loss, NULL)) != ST_OK) goto done;
        if ((s = st_backward(ctx, loss)) != ST_OK) goto done;
        if ((s = st_clip_grad_norm(m, (float)c.grad_clip, NULL)) != ST_OK) goto done;
        if ((s = st_optim_step(o, (float)c.learning_rate)) != ST_OK) goto done;
        st_model_zero_grad(m);
        double dt = st_time_s() - t0;
        if (i >= warmup) {
            times[i - warmup] = dt;
            *wait_s += w;
            *total_s += dt;
        }
    }
    *step_s = bench_median(times, steps);
done:
    st_optim_free(o);
    st_model_free(m);
    st_ctx_free(ctx);
    st_loader_free(l);
    st_free(xy);
    st_free(x);
    st_free(y);
    st_free(times);
    return s;
}

int bench_loader_main(int argc, char **argv) {
    const char *file = NULL;
    int batches = 2000, reps = 5, steps = 3, warmup = 1, threads = 0;
    bool json = false, no_train = false;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x = 0;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(k, "--json")) {
            json = true;
        } else if (!strcmp(k, "--no-train")) {
            no_train = true;
        } else if (!strcmp(k, "--file") && v) {
            file = v;
            i++;
        } else if ((!strcmp(k, "--batches") || !strcmp(k, "--reps") || !strcmp(k, "--steps") ||
                    !strcmp(k, "--warmup") || !strcmp(k, "--threads")) &&
                   v && cli_parse_long(v, &x) && x >= (strcmp(k, "--warmup") ? 1 : 0) &&
                   x < 10000000) {
            if (!strcmp(k, "--batches"))
                batches = (int)x;
            else if (!strcmp(k, "--reps"))
                reps = (int)x;
            else if (!strcmp(k, "--steps"))
                steps = (int)x;
            else if (!strcmp(k, "--warmup"))
                warmup = (int)x;
            else
                threads = (int)x;
            i++;
        } else {
            return cli_usage_error("bench loader", "bad option '%s'", k);
        }
    }
    char found[PATH_MAX];
    if (!file) {
        const char *env = getenv("STRATA_SOURCE_DIR");
        snprintf(found, sizeof found, "%s/data/tinyshakespeare.txt", env ? env : ".");
        if (access(found, R_OK) != 0) snprintf(found, sizeof found, "data/tinyshakespeare.txt");
        file = found;
    }
    if (threads <= 0) {
        const char *e = getenv("STRATA_THREADS");
        threads = e && atoi(e) > 0 ? atoi(e) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    }
    /* the dataset */
    char dir[] = "/tmp/strata_bench_loader_XXXXXX";
    if (!mkdtemp(dir))
        return cli_usage_error("bench loader", "cannot create a temporary directory");
    char *text = NULL;
    size_t n = 0;
    st_tokenizer *tok = NULL;
    st_status s = st_text_read_file(file, 0, &text, &n);
    if (s == ST_OK) s = st_tokenizer_char_from_corpus(text, n, &tok);
    st_free(text);
    st_ingest_params ip = st_ingest_default_params();
    ip.tokenizer = tok;
    ip.tokenizer_name = "char";
    ip.val_fraction = 0;
    ip.n_threads = 1;
    if (s == ST_OK) s = st_ingest(&file, 1, dir, &ip, NULL);
    st_tokenizer_free(tok);
    double *r_pf = st_malloc(sizeof(double) * (size_t)reps),
           *r_in = st_malloc(sizeof(double) * (size_t)reps);
    if (s == ST_OK && (!r_pf || !r_in)) s = st__fail(ST_ERR_NOMEM, "bench loader: no memory");
    for (int r = 0; s == ST_OK && r < reps; r++) {
        s = loader_rate(dir, 4, batches, &r_pf[r]);
        if (s == ST_OK) s = loader_rate(dir, 0, batches, &r_in[r]);
    }
    double pf = 0, in = 0, step_s = 0, wait_s = 0, total_s = 0;
    if (s == ST_OK) {
        pf = bench_median(r_pf, reps);
        in = bench_median(r_in, reps);
    }
    if (s == ST_OK && !no_train)
        s = train_side(dir, threads, warmup, steps, &step_s, &wait_s, &total_s);
    st_free(r_pf);
    st_free(r_in);
    rm_tree(dir);
    if (s != ST_OK) return cli_fail("bench loader", s);
    double train_rate = step_s > 0 ? 1.0 / step_s : 0;
    double ratio = train_rate > 0 ? pf / train_rate : 0;
    double share = total_s > 0 ? wait_s / total_s : 0;
    if (json) {
        printf("{\"bench\": \"loader\", \"threads\": %d, \"batch\": 64, \"block\": 256, "
               "\"loader_batches_per_s\": %.1f, \"loader_noprefetch_batches_per_s\": %.1f, ",
               threads, pf, in);
        if (no_train)
            printf("\"train_steps_per_s\": null, \"ratio\": null, \"wait_share\": null, ");
        else
            printf("\"train_steps_per_s\": %.4f, \"train_step_s\": %.3f, \"ratio\": %.1f, "
                   "\"wait_s\": %.6f, \"wait_share\": %.6f, ",
                   train_rate, step_s, ratio, wait_s, share);
        printf("\"goal_ratio\": 50, \"goal_wait_share\": 0.01}\n");
        return 0;
    }
    printf("strata bench loader: batch 64 x block 256 (shakespeare-char), %d threads, "
           "median of %d x %d batches\n\n",
           threads, reps, batches);
    printf("%-40s %14s\n", "", "batches/s");
    printf("%-40s %14.0f\n", "loader, prefetch thread (ring of 4)", pf);
    printf("%-40s %14.0f\n", "loader, no prefetch", in);
    if (!no_train) {
        printf("%-40s %14.4f   (%.2f s/step, median of %d)\n", "shakespeare-char training",
               train_rate, step_s, steps);
        printf("\n%-40s %13.0fx   goal >= 50x\n", "ratio loader / training", ratio);
        printf("%-40s %13.4f%%   goal < 1%%  (%.2f ms of %.1f s)\n",
               "training time waiting on data", 100 * share, 1e3 * wait_s, total_s);
    }
    return 0;
}
