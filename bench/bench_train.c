/*
 * bench_train.c — `strata bench train`: training throughput (tokens/s of
 * forward + backward + grad clip + AdamW) against PyTorch, same model, same
 * shapes, same thread count, in one run.
 *
 * For each configuration (shakespeare-char-baby and shakespeare-char by
 * default; cli/train_config.c) it builds the gpt2 model with a 65-token
 * vocabulary (tinyshakespeare's characters), draws random token batches,
 * runs --warmup steps untimed and then --steps timed ones, and reports
 * B*T / median step time. The PyTorch side is bench/torch_train.py (the
 * same GPT in plain torch) run with /usr/bin/python3 when it can import
 * torch; the ratio strata/torch is printed beside the goal (>= 1.5).
 * The two sides run one after the other (torch is another process), each
 * with the cores to itself.
 *
 * Memory: the model, grads and AdamW state are persistent; each step's
 * activations live in the context's arena, reset per step. Single-threaded
 * driver over the context's pool.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "strata/model.h"
#include "train_config.h"

#define VOCAB 65

typedef struct {
    int warmup, steps; /* -1: per-config defaults */
    int threads;
    bool json, no_torch;
} opts;

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Median step seconds of Strata on config c. */
static st_status strata_side(const train_config *c, int threads, int warmup, int steps,
                             double *step_s, double *loss_out, int64_t *n_params) {
    st_ctx *ctx = NULL;
    st_model *m = NULL;
    st_optim *o = NULL;
    int B = c->batch_size, T = c->block_size;
    int32_t *x = st_malloc(sizeof(int32_t) * (size_t)B * T),
            *y = st_malloc(sizeof(int32_t) * (size_t)B * T);
    double *times = st_malloc(sizeof(double) * (size_t)(steps > 0 ? steps : 1));
    st_status s = ST_OK;
    if (!x || !y || !times) {
        s = st__fail(ST_ERR_NOMEM, "bench train: no memory");
        goto done;
    }
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = threads;
    if ((s = st_ctx_new(&cp, &ctx)) != ST_OK) goto done;
    st_model_config mc = train_config_model(c, VOCAB);
    if ((s = st_model_new(ctx, &mc, 1337, &m)) != ST_OK) goto done;
    *n_params = st_model_n_params(m);
    st_optim_params op = st_optim_default_params(ST_OPTIM_ADAMW);
    op.lr = (float)c->learning_rate;
    op.beta1 = (float)c->beta1;
    op.beta2 = (float)c->beta2;
    op.weight_decay = (float)c->weight_decay;
    if ((s = st_optim_new(m, &op, &o)) != ST_OK) goto done;
    const int64_t shape[2] = {B, T};
    for (int i = 0; i < warmup + steps; i++) {
        for (int k = 0; k < B * T; k++) {
            x[k] = (int32_t)(mix((uint64_t)i * 1000003u + (uint64_t)k) % VOCAB);
            y[k] = (int32_t)(mix((uint64_t)i * 1000003u + (uint64_t)k + 7777777u) % VOCAB);
        }
        double t0 = st_time_s();
        st_ctx_reset(ctx);
        st_tensor *tx, *ty, *loss;
        st_model_set_training(m, true, (uint64_t)i);
        if ((s = st_from_data(ctx, ST_I32, 2, shape, x, &tx)) != ST_OK) goto done;
        if ((s = st_from_data(ctx, ST_I32, 2, shape, y, &ty)) != ST_OK) goto done;
        if ((s = st_model_loss(m, tx, ty, &loss, NULL)) != ST_OK) goto done;
        if ((s = st_backward(ctx, loss)) != ST_OK) goto done;
        if ((s = st_clip_grad_norm(m, (float)c->grad_clip, NULL)) != ST_OK) goto done;
        if ((s = st_optim_step(o, (float)c->learning_rate)) != ST_OK) goto done;
        st_model_zero_grad(m);
        double dt = st_time_s() - t0;
        if (i >= warmup) times[i - warmup] = dt;
        float lv = 0.0f;
        st_tensor_get_f32(loss, 0, &lv);
        *loss_out = lv;
    }
    *step_s = bench_median(times, steps);
done:
    st_optim_free(o);
    st_model_free(m);
    st_ctx_free(ctx);
    st_free(x);
    st_free(y);
    st_free(times);
    return s;
}

/* Finds bench/torch_train.py: $STRATA_SOURCE_DIR, ./bench, then next to
 * the binary's parent directory (build dirs live in the source tree). */
static bool find_script(char *out, size_t n) {
    const char *env = getenv("STRATA_SOURCE_DIR");
    if (env) {
        snprintf(out, n, "%s/bench/torch_train.py", env);
        if (access(out, R_OK) == 0) return true;
    }
    snprintf(out, n, "bench/torch_train.py");
    if (access(out, R_OK) == 0) return true;
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        for (int up = 0; up < 2; up++) {
            char *sl = strrchr(exe, '/');
            if (!sl) break;
            *sl = '\0';
        }
        snprintf(out, n, "%s/bench/torch_train.py", exe);
        if (access(out, R_OK) == 0) return true;
    }
    return false;
}

/* Tokens/s of PyTorch on c, or -1 when it cannot run (reason in why). */
static double torch_side(const train_config *c, int threads, int warmup, int steps,
                         char *why, size_t nwhy) {
    char script[PATH_MAX + 64], cmd[PATH_MAX + 512];
    if (!find_script(script, sizeof script)) {
        snprintf(why, nwhy, "bench/torch_train.py not found (set STRATA_SOURCE_DIR)");
        return -1;
    }
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s' --n-layer %d --n-head %d --n-embd %d --block %d --batch %d "
             "--vocab %d --dropout %g --lr %g --beta1 %g --beta2 %g --weight-decay %g "
             "--grad-clip %g --threads %d --warmup %d --steps %d --bias %d 2>/dev/null",
             script, c->n_layer, c->n_head, c->n_embd, c->block_size, c->batch_size, VOCAB,
             (double)c->dropout, c->learning_rate, c->beta1, c->beta2, c->weight_decay,
             c->grad_clip, threads, warmup, steps, c->bias ? 1 : 0);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, nwhy, "cannot run /usr/bin/python3");
        return -1;
    }
    char line[1024] = "";
    double tps = -1;
    while (fgets(line, sizeof line, p)) {
        const char *k = strstr(line, "\"tokens_per_s\":");
        if (k) tps = strtod(k + 15, NULL);
    }
    int rc = pclose(p);
    if (tps <= 0) {
        snprintf(why, nwhy, "%s", rc == 3 << 8 ? "PyTorch not importable by /usr/bin/python3"
                                                 : "torch_train.py failed");
        return -1;
    }
    return tps;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata bench train [--config NAME]... [--steps N] [--warmup N]\n"
            "                          [--threads N] [--no-torch] [--json]\n\n"
            "Training throughput (forward + backward + clip + AdamW, tokens/s) of the\n"
            "gpt2 model of each configuration on random tokens, beside PyTorch running\n"
            "the same model (bench/torch_train.py under /usr/bin/python3) with the same\n"
            "threads. Goal: strata/torch >= 1.5.\n\n"
            "options:\n"
            "  --config NAME  a configuration (default: shakespeare-char-baby and\n"
            "                 shakespeare-char); repeatable\n"
            "  --steps N      timed steps, median reported (default 5 baby, 3 others)\n"
            "  --warmup N     untimed steps first (default 2 baby, 1 others)\n"
            "  --threads N    threads for both sides (default: STRATA_THREADS, else all CPUs)\n"
            "  --no-torch     skip PyTorch\n"
            "  --json         one JSON object per configuration\n");
}

int bench_train_main(int argc, char **argv) {
    opts o = {.warmup = -1, .steps = -1, .threads = 0};
    const char *names[8];
    int n_names = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x = 0;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(k, "--json")) {
            o.json = true;
        } else if (!strcmp(k, "--no-torch")) {
            o.no_torch = true;
        } else if (!strcmp(k, "--config") && v && n_names < 8) {
            names[n_names++] = v;
            i++;
        } else if ((!strcmp(k, "--steps") || !strcmp(k, "--warmup") || !strcmp(k, "--threads")) &&
                   v && cli_parse_long(v, &x) && x >= (strcmp(k, "--warmup") ? 1 : 0) && x < 100000) {
            if (!strcmp(k, "--steps")) o.steps = (int)x;
            else if (!strcmp(k, "--warmup")) o.warmup = (int)x;
            else o.threads = (int)x;
            i++;
        } else {
            return cli_usage_error("bench train", "bad option '%s'", k);
        }
    }
    if (n_names == 0) {
        names[n_names++] = "shakespeare-char-baby";
        names[n_names++] = "shakespeare-char";
    }
    int threads = o.threads;
    if (threads <= 0) {
        const char *e = getenv("STRATA_THREADS");
        threads = e && atoi(e) > 0 ? atoi(e) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    }
    if (!o.json)
        printf("strata bench train: %d threads; tokens/s = batch*block / median step "
               "(fwd+bwd+clip+AdamW)\n\n%-24s %10s %8s %12s %12s %8s %6s\n",
               threads, "config", "params", "tokens", "strata tok/s", "torch tok/s", "ratio",
               "goal");
    int rc = 0;
    for (int i = 0; i < n_names; i++) {
        train_config c;
        if (!train_config_named(names[i], &c))
            return cli_usage_error("bench train", "unknown configuration '%s'", names[i]);
        bool baby = c.n_embd <= 128;
        int warmup = o.warmup >= 0 ? o.warmup : (baby ? 2 : 1);
        int steps = o.steps > 0 ? o.steps : (baby ? 5 : 3);
        double step_s = 0, loss = 0;
        int64_t params = 0;
        st_status s = strata_side(&c, threads, warmup, steps, &step_s, &loss, &params);
        if (s != ST_OK) {
            rc = cli_fail("bench train", s);
            continue;
        }
        double tps = (double)c.batch_size * c.block_size / step_s;
        char why[128] = "skipped (--no-torch)";
        double ttps = o.no_torch ? -1 : torch_side(&c, threads, warmup, steps, why, sizeof why);
        if (o.json) {
            char tj[32] = "null", rj[32] = "null";
            if (ttps > 0) {
                snprintf(tj, sizeof tj, "%.1f", ttps);
                snprintf(rj, sizeof rj, "%.3f", tps / ttps);
            }
            printf("{\"bench\": \"train\", \"config\": \"%s\", \"threads\": %d, \"batch\": %d, "
                   "\"block\": %d, \"steps\": %d, \"strata_tokens_per_s\": %.1f, "
                   "\"strata_step_s\": %.6f, \"torch_tokens_per_s\": %s, \"ratio\": %s, "
                   "\"goal\": 1.5}\n",
                   c.name, threads, c.batch_size, c.block_size, steps, tps, step_s, tj, rj);
        } else {
            char tcol[32], rcol[32];
            snprintf(tcol, sizeof tcol, ttps > 0 ? "%.0f" : "-", ttps);
            snprintf(rcol, sizeof rcol, ttps > 0 ? "%.2fx" : "-", ttps > 0 ? tps / ttps : 0.0);
            printf("%-24s %9.2fM %8d %12.0f %12s %8s %6s\n", c.name, (double)params / 1e6,
                   c.batch_size * c.block_size, tps, tcol, rcol, ">=1.5");
            if (ttps <= 0) printf("  (torch: %s)\n", why);
        }
        fflush(stdout);
    }
    return rc;
}
