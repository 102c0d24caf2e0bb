/*
 * track.c — `strata bench track`: what experiment tracking costs a training
 * run. Side by side in one run:
 *   - the logging rate: metric points per second through st_track_log_metric
 *     + st_track_flush into a fresh SQLite store (and PostgreSQL when
 *     --tracking postgresql://... is given), flushing every --batch points,
 *     as `strata train` would (a few keys, increasing steps); median of --reps;
 *   - the training step rate: the median wall time of a real
 *     shakespeare-char-baby step (forward + backward + clip + AdamW on random
 *     tokens, the context's pool) measured in the same process;
 *   - the overhead share: the time to log --per-step points per step (train
 *     logs train_loss, lr and tokens_per_s each step) over the step time.
 * Goals printed, not judged: >= 100,000 points/s and < 1% of a step.
 * Single-threaded logging; the training step uses the pool as train does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "strata/model.h"
#include "strata/track.h"
#include "train_config.h"

#define GOAL_PPS 100000.0
#define GOAL_SHARE 0.01

typedef struct bopts {
    long points, batch, reps, per_step, steps;
    const char *pg;
    bool json, no_train;
} bopts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata bench track [--points N] [--batch N] [--reps N] [--per-step N]\n"
            "                          [--steps N] [--tracking postgresql://...] [--no-train] [--json]\n\n"
            "Metric points/s logged in batches into the tracking store (SQLite in a temporary\n"
            "folder; PostgreSQL too with --tracking), beside the step time of a real\n"
            "shakespeare-char-baby training step measured in the same run, and the share of a\n"
            "step that logging --per-step points costs. Goals: >= 100,000 points/s, < 1%%.\n\n"
            "options:\n"
            "  --points N     points per repetition (default 200000)\n"
            "  --batch N      points per flush (one transaction; default 1000)\n"
            "  --reps N       repetitions, median reported (default 5)\n"
            "  --per-step N   points a training step logs (default 3: loss, lr, tokens/s)\n"
            "  --steps N      timed training steps, median reported (default 5, after 2 warm-up)\n"
            "  --tracking U   also measure PostgreSQL at U (a postgresql:// URI)\n"
            "  --no-train     skip the training step (overhead not computed)\n"
            "  --json         JSON Lines instead of the table\n");
}

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Median seconds of one shakespeare-char-baby training step. */
static st_status train_step_s(int steps, double *out) {
    train_config c;
    if (!train_config_named("shakespeare-char-baby", &c))
        return st__fail(ST_ERR_INTERNAL, "bench track: no shakespeare-char-baby configuration");
    st_ctx *ctx = NULL;
    st_model *m = NULL;
    st_optim *o = NULL;
    int B = c.batch_size, T = c.block_size, V = 65, warm = 2;
    int32_t *x = st_malloc(sizeof(int32_t) * (size_t)B * T), *y = st_malloc(sizeof(int32_t) * (size_t)B * T);
    double *times = st_malloc(sizeof(double) * (size_t)steps);
    st_status s = (!x || !y || !times) ? st__fail(ST_ERR_NOMEM, "bench track: no memory") : ST_OK;
    st_ctx_params cp = st_ctx_default_params();
    if (!s) s = st_ctx_new(&cp, &ctx);
    st_model_config mc = train_config_model(&c, V);
    if (!s) s = st_model_new(ctx, &mc, 1337, &m);
    st_optim_params op = st_optim_default_params(ST_OPTIM_ADAMW);
    op.lr = (float)c.learning_rate;
    if (!s) s = st_optim_new(m, &op, &o);
    const int64_t shape[2] = {B, T};
    for (int i = 0; !s && i < warm + steps; i++) {
        for (int k = 0; k < B * T; k++) {
            x[k] = (int32_t)(mix((uint64_t)i * 1000003u + (uint64_t)k) % (uint64_t)V);
            y[k] = (int32_t)(mix((uint64_t)i * 1000003u + (uint64_t)k + 7777777u) % (uint64_t)V);
        }
        double t0 = st_time_s();
        st_ctx_reset(ctx);
        st_tensor *tx, *ty, *loss;
        st_model_set_training(m, true, (uint64_t)i);
        if (!s) s = st_from_data(ctx, ST_I32, 2, shape, x, &tx);
        if (!s) s = st_from_data(ctx, ST_I32, 2, shape, y, &ty);
        if (!s) s = st_model_loss(m, tx, ty, &loss, NULL);
        if (!s) s = st_backward(ctx, loss);
        if (!s) s = st_clip_grad_norm(m, (float)c.grad_clip, NULL);
        if (!s) s = st_optim_step(o, (float)c.learning_rate);
        st_model_zero_grad(m);
        if (i >= warm) times[i - warm] = st_time_s() - t0;
    }
    if (!s) *out = bench_median(times, steps);
    st_optim_free(o);
    st_model_free(m);
    st_ctx_free(ctx);
    st_free(x);
    st_free(y);
    st_free(times);
    return s;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Median points/s of logging o->points points into the store at uri, by
 * wall clock and by this process's CPU time (steadier on a busy machine). */
static st_status log_rate(const char *uri, const bopts *o, double *pps, double *pps_cpu) {
    st_track_params p = st_track_default_params();
    p.uri = uri;
    st_track *t;
    ST_TRY(st_track_open(&p, &t));
    static const char *const keys[] = {"train_loss", "lr", "tokens_per_s", "val_loss"};
    double *r = st_malloc(sizeof(double) * (size_t)o->reps), *rc = st_malloc(sizeof(double) * (size_t)o->reps);
    st_status s = r && rc ? ST_OK : st__fail(ST_ERR_NOMEM, "bench track: no memory");
    for (long rep = 0; !s && rep < o->reps; rep++) {
        st_run_start rs = st_run_start_default();
        rs.experiment = "bench-track";
        st_track_run *run;
        s = st_track_run_start(t, &rs, &run);
        if (s) break;
        double t0 = st_time_s(), c0 = cpu_s();
        for (long i = 0; !s && i < o->points; i++) {
            s = st_track_log_metric(run, keys[i % 3], 1.0 / (double)(i + 1), i / 3);
            if (!s && (i + 1) % o->batch == 0) s = st_track_flush(run);
        }
        if (!s) s = st_track_flush(run);
        r[rep] = (double)o->points / (st_time_s() - t0);
        rc[rep] = (double)o->points / (cpu_s() - c0);
        if (!s) s = st_track_run_end(run, ST_RUN_FINISHED);
        st_track_run_free(run);
    }
    if (!s) *pps = bench_median(r, (int)o->reps), *pps_cpu = bench_median(rc, (int)o->reps);
    st_free(r);
    st_free(rc);
    st_track_close(t);
    return s;
}

static void report(const bopts *o, const char *backend, double pps, double pps_cpu, double step_s) {
    double per_step_s = (double)o->per_step / pps;
    double share = step_s > 0 ? per_step_s / step_s : -1;
    if (o->json) {
        printf("{\"bench\": \"track\", \"backend\": \"%s\", \"batch\": %ld, \"points_per_s\": %.0f, "
               "\"cpu_points_per_s\": %.0f, \"us_per_point\": %.3f, \"train_step_ms\": %.3f, \"points_per_step\": %ld, "
               "\"overhead_share\": %.6f, \"goal_points_per_s\": %.0f, \"goal_overhead_share\": %.2f}\n",
               backend, o->batch, pps, pps_cpu, 1e6 / pps, step_s * 1e3, o->per_step, share, GOAL_PPS, GOAL_SHARE);
        return;
    }
    printf("%-11s %6ld %12.0f %12.0f %9.2f %13.2f %14.2f\n", backend, o->batch, pps, pps_cpu, 1e6 / pps,
           step_s > 0 ? step_s * 1e3 : 0.0, per_step_s * 1e6);
    if (share >= 0) printf("%-11s overhead share: %.4f%% of a training step (goal < %.0f%%; %s >= %.0f pts/s)\n", "",
                           share * 100, GOAL_SHARE * 100, backend, GOAL_PPS);
}

int bench_track_main(int argc, char **argv) {
    bopts o = {200000, 1000, 5, 3, 5, NULL, false, false};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long *dst = !strcmp(a, "--points") ? &o.points : !strcmp(a, "--batch") ? &o.batch
                  : !strcmp(a, "--reps") ? &o.reps : !strcmp(a, "--per-step") ? &o.per_step
                  : !strcmp(a, "--steps") ? &o.steps : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (!strcmp(a, "--no-train")) {
            o.no_train = true;
        } else if (!strcmp(a, "--tracking") && i + 1 < argc) {
            o.pg = argv[++i];
        } else if (dst && i + 1 < argc) {
            if (!cli_parse_long(argv[++i], dst) || *dst < 1)
                return cli_usage_error("bench track", "%s wants a positive integer", a);
        } else {
            return cli_usage_error("bench track", "unknown or incomplete option '%s'", a);
        }
    }
    char dir[] = "/tmp/strata-bench-track-XXXXXX", uri[128];
    if (!mkdtemp(dir)) return cli_fail("bench track", st__fail(ST_ERR_IO, "cannot create a temporary folder"));
    snprintf(uri, sizeof uri, "sqlite://%s/tracking.db", dir);
    double step_s = -1, pps_lite = 0, pps_pg = 0, cpu_lite = 0, cpu_pg = 0;
    st_status s = ST_OK;
    if (!o.no_train) s = train_step_s((int)o.steps, &step_s);
    if (!s) s = log_rate(uri, &o, &pps_lite, &cpu_lite);
    if (!s && o.pg) s = log_rate(o.pg, &o, &pps_pg, &cpu_pg);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench track: could not remove %s\n", dir);
    if (s) return cli_fail("bench track", s);
    if (!o.json)
        printf("%-11s %6s %12s %12s %9s %13s %14s\n", "backend", "batch", "points/s", "cpu pts/s", "us/point",
               "train step ms", "log us/step");
    report(&o, "sqlite", pps_lite, cpu_lite, step_s);
    if (o.pg) report(&o, "postgresql", pps_pg, cpu_pg, step_s);
    return 0;
}
