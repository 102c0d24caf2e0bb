/*
 * train.c — `strata train`: trains a gpt2 or llama model on a text file.
 *
 * The loop (one step): draw batch `step` of the train split (st_textdata,
 * a pure function of (seed, step)), forward + fused cross-entropy with
 * dropout seeded by (seed, step), backward over the tape, clip the global
 * grad norm, AdamW at the schedule's lr for this step, zero grads, reset the
 * context's arena. Every eval_interval steps (and at step 0 of a fresh run
 * and at the end) it estimates train and val loss over eval_iters batches
 * each (nanoGPT's estimate_loss; eval batches are a function of (seed,
 * step) too), appends a line to OUT/metrics.jsonl and writes a checkpoint:
 * the model directory (strata/hub.h) plus the training state. Because
 * nothing in a step depends on anything but (weights, optimizer state,
 * seed, step), `--resume` continues bit for bit.
 *
 * Memory: parameters, grads and AdamW moments are persistent tensors; each
 * step's activations and tape live in the context's arena (backward gives
 * gradient buffers and scratch back to it as it goes; strata/nn.h). The
 * printed budget is parameters + grads + AdamW moments + the activations the
 * tape keeps (st_autograd_saved_bytes, measured between the first step's
 * forward and backward); at the end the measured peaks (RSS high-water from
 * getrusage, the allocator's peak from st_alloc_get_stats) are printed
 * beside it with their ratio.
 * Distributed (`mpirun -np N strata train`, strata/dist.h): every rank runs
 * this loop on its own rows. An optimizer step consumes global batch
 * `step` of global_batch G rows (a pure function of (seed, step)), cut into
 * G / B slices of B rows (--batch is per rank); slice j = r*A + k is rank
 * r's micro-batch k, A = G / (B x N) micro-batches per rank (gradient
 * accumulation), so the data of a step — and the loss curve — is the same
 * for any N. Gradients go through a st_ddp: buckets are averaged across
 * ranks during the last micro-batch's backward, then every rank takes the
 * same step (or its ZeRO-1 shard of it). Losses and evaluations are
 * averaged over ranks (each rank evaluates every N-th eval batch). Rank 0
 * alone writes metrics.jsonl, checkpoints, tracking and the registry; the
 * other ranks print to stderr with a "[rank r]" prefix and no progress bar.
 * Checkpoints hold the full optimizer state and the step (the data
 * position), so any number of ranks resumes them. With one process and no
 * global_batch the loop is what it always was, bit for bit.
 *
 * Ownership: everything is created and freed in cmd_train. Threads: the
 * context's pool (--threads / STRATA_THREADS) and the communicator's thread
 * (strata/dist.h); this file runs on one thread.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"
#include "strata/data.h"
#include "strata/dist.h"
#include "strata/hub.h"
#include "strata/registry.h"
#include "strata/track.h"
#include "train_config.h"

#define EVAL_SALT 0x4556414c5345454dULL /* "EVALSEEM" */

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata train --config NAME|FILE --data PATH [options]\n"
            "       strata train --resume DIR [--steps N] [options]\n\n"
            "Trains a gpt2 or llama language model on a text file (90%% train, last 10%%\n"
            "validation). Every evaluation appends {step, train_loss, val_loss, lr,\n"
            "tokens_per_s, elapsed_s} to OUT/metrics.jsonl and writes a checkpoint: the\n"
            "model directory (config.json, model.safetensors, tokenizer.json, ...) and\n"
            "the training state (train_state.json, train_state.safetensors) into OUT.\n\n"
            "options:\n"
            "  --config NAME|FILE  a built-in configuration or a JSON file of the same keys\n"
            "                      (docs/training.md):\n"
            "                        shakespeare-char-baby   gpt2 without biases (nanoGPT's\n"
            "                          bias=False), 4 layers, 4 heads, 128 wide,\n"
            "                          block 64, batch 12, dropout 0, 2000 iters, AdamW lr 1e-3\n"
            "                          cosine to 1e-4 (warmup 100), beta2 0.99, wd 0.1, clip 1,\n"
            "                          eval every 250 over 20 batches (nanoGPT's CPU config)\n"
            "                        shakespeare-char        gpt2 without biases, 6 layers,\n"
            "                          6 heads, 384 wide,\n"
            "                          block 256, batch 64, dropout 0.2, 5000 iters, eval over\n"
            "                          200 batches (nanoGPT's train_shakespeare_char)\n"
            "                        shakespeare-char-llama-baby  the baby config as a llama\n"
            "                          (RMSNorm, RoPE, SwiGLU 344, untied head)\n"
            "  --data PATH         training text (UTF-8); a char tokenizer is built from it\n"
            "                      unless the configuration names another tokenizer; or a\n"
            "                      token-shard directory from `strata data ingest` (its\n"
            "                      tokenizer.json is used; batches come from the loader)\n"
            "  --steps N           train until N steps in all (default: the config's max_iters)\n"
            "  --out DIR           output directory (default: out-<config>; --resume: DIR)\n"
            "  --seed S            seed of weights, batches and dropout (default 1337)\n"
            "  --tracking URI      log the run into this tracking store (default:\n"
            "                      $STRATA_TRACKING_URI, else $STRATA_HOME/tracking.db;\n"
            "                      STRATA_TRACKING=off turns logging off; strata runs list)\n"
            "  --experiment E      the run's experiment in the store (default \"default\")\n"
            "  --resume DIR|REF    continue the run checkpointed in DIR, bit for bit; a registry\n"
            "                      reference NAME[:tag|@rev] needs --out (snapshots are read-only)\n"
            "  --register NAME     push the final model to the registry (strata hub) as NAME,\n"
            "                      with a generated model card; --tag T also tags it\n"

            "  --eval-every N      evaluate and checkpoint every N steps (config: eval_interval)\n"
            "  --eval-iters N      batches per loss estimate (config: eval_iters)\n"
            "  --batch B           batch size (config: batch_size)\n"
            "  --lr LR             peak learning rate (config: learning_rate; min_lr scales along)\n"
            "  --global-batch G    rows per optimizer step over all ranks (config: global_batch;\n"
            "                      default batch x ranks): gradient accumulation makes up\n"
            "                      G / (batch x ranks) micro-batches, so G fixes the curve\n"
            "  --threads N         worker threads (default: STRATA_THREADS, else all CPUs;\n"
            "                      under mpirun give each rank its share of the cores)\n"
            "  --json              JSON lines on stdout (each evaluation, then a summary)\n"
            "  --help              this text\n\n"
            "distributed data-parallel training (docs/L7-distributed.md):\n"
            "  mpirun -np N strata train ...   N ranks; --batch is per rank; rank 0 writes\n"
            "                      the outputs, other ranks log to stderr as [rank r]\n"
            "  --dist auto|mpi     auto (default): MPI when started by mpirun, else one\n"
            "                      process; mpi: initialize MPI in any case\n"
            "  --bucket-mb MB      gradient bucket size in MiB (default 25, PyTorch DDP's);\n"
            "                      a bucket's all-reduce starts when its grads are final\n"
            "  --zero 0|1          1: ZeRO stage 1, AdamW state sharded over the ranks\n"
            "                      (default 0)\n"
            "  --dist-overlap M    auto (default): thread when the node has a core to spare\n"
            "                      (ranks x STRATA_THREADS < cores), else poll; thread: a\n"
            "                      communication thread drives MPI during backward; poll:\n"
            "                      MPI_Test between backward nodes; none: after backward\n"
            "  --dist-timeout S    a collective that takes longer than S seconds (default 30)\n"
            "                      ends the job, naming the ranks that do not answer\n\n"
            "The memory budget printed after the first step is parameters + grads + AdamW\n"
            "moments + the activations the tape keeps (bytes of the step tensors recorded\n"
            "nodes hold, measured after the first forward); at the end the peak RSS and\n"
            "the allocator's peak are printed beside it, with the ratio peak RSS / budget.\n");
}

typedef struct train_args {
    const char *config, *data, *out, *resume, *tracking, *experiment, *reg, *reg_tag;
    long steps, seed, eval_every, eval_iters, batch, threads, global_batch, zero;
    double lr, bucket_mb, dist_timeout;
    bool json, force_mpi;
    st_dist_overlap overlap;
} train_args;

/* Lines written to this FILE go to stderr as "[rank r] line" (ranks > 0). */
typedef struct rank_out {
    int rank;
    bool bol;
} rank_out;

static ssize_t rank_write(void *cookie, const char *buf, size_t n) {
    rank_out *r = cookie;
    size_t i = 0;
    while (i < n) {
        if (r->bol) fprintf(stderr, "[rank %d] ", r->rank);
        const char *nl = memchr(buf + i, '\n', n - i);
        size_t k = nl ? (size_t)(nl - (buf + i)) + 1 : n - i;
        fwrite(buf + i, 1, k, stderr);
        r->bol = nl != NULL;
        i += k;
    }
    fflush(stderr);
    return (ssize_t)n;
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Splits a [B, T+1] batch into inputs and targets [B, T] (step tensors). */
static st_status make_xy(st_ctx *ctx, const int32_t *batch, int B, int T, int32_t *xbuf,
                         int32_t *ybuf, st_tensor **x, st_tensor **y) {
    for (int b = 0; b < B; b++) {
        memcpy(xbuf + (size_t)b * T, batch + (size_t)b * (T + 1), sizeof(int32_t) * (size_t)T);
        memcpy(ybuf + (size_t)b * T, batch + (size_t)b * (T + 1) + 1, sizeof(int32_t) * (size_t)T);
    }
    const int64_t shape[2] = {B, T};
    ST_TRY(st_from_data(ctx, ST_I32, 2, shape, xbuf, x));
    return st_from_data(ctx, ST_I32, 2, shape, ybuf, y);
}

typedef struct trainer {
    train_config cfg;
    st_ctx *ctx;
    st_model *m;
    st_tokenizer *tok;
    st_textdata *data;      /* --data FILE.txt */
    st_loader *ld;          /* --data DIR (token shards): train batches, prefetched */
    st_loader *ld_eval[2];  /* eval batches of each split (seed ^ EVAL_SALT, no prefetch) */
    double data_wait_s;     /* time train_step waited on the loader since the last eval */
    st_lr_schedule sched;
    uint64_t seed;
    int32_t *batch, *xbuf, *ybuf;
    /* data parallelism: rank r of n_ranks, accum micro-batches per step */
    st_dist *dist;
    st_ddp *ddp;
    int rank, n_ranks, accum, global_batch;
    st_loader **ld_micro;   /* [accum]: shard loaders, slice r*accum + k (ld_micro[0] == ld) */
    int32_t *gbatch;        /* text data: the step's global batch [G, T+1] */
    size_t saved_bytes; /* activations the tape keeps (first step; 0 until then) */
    int tape_nodes;
} trainer;

static st_status eval_split(trainer *t, st_split split, int64_t step, double *mean) {
    int B = t->cfg.batch_size, T = t->cfg.block_size;
    double sum = 0.0;
    st_ctx_set_grad_enabled(t->ctx, false);
    st_model_set_training(t->m, false, 0);
    st_status s = ST_OK;
    for (int64_t k = t->rank; k < t->cfg.eval_iters && s == ST_OK; k += t->n_ranks) {
        st_ctx_reset(t->ctx);
        st_tensor *x, *y, *loss;
        float v = 0.0f;
        uint64_t index = (uint64_t)step * (uint64_t)t->cfg.eval_iters + (uint64_t)k;
        s = t->ld ? st_loader_batch(t->ld_eval[split], index, t->batch)
                  : st_textdata_batch(t->data, split, t->seed ^ EVAL_SALT, index, B, T, t->batch);
        if (s == ST_OK) s = make_xy(t->ctx, t->batch, B, T, t->xbuf, t->ybuf, &x, &y);
        if (s == ST_OK) s = st_model_loss(t->m, x, y, &loss, NULL);
        if (s == ST_OK) s = st_tensor_get_f32(loss, 0, &v);
        sum += v;
    }
    st_ctx_reset(t->ctx);
    st_ctx_set_grad_enabled(t->ctx, true);
    if (s == ST_OK && t->n_ranks > 1) s = st_dist_allreduce_sum_f64(t->dist, &sum, 1);
    *mean = (double)(float)(sum / (double)t->cfg.eval_iters);
    return s;
}

/* One optimizer step: accum micro-batches of B rows (this rank's slices of
 * global batch `step`), the last one's backward averaging the gradients
 * across ranks; then clip by the global norm and step. *loss_out: the mean
 * loss over ranks and micro-batches; *stop: a rank caught a signal. */
static st_status train_step(trainer *t, int64_t step, float *loss_out, int *stop) {
    int B = t->cfg.batch_size, T = t->cfg.block_size, A = t->accum;
    double loss_sum = 0.0;
    if (!t->ld && t->gbatch) /* the whole global batch; this rank's rows below */
        ST_TRY(st_textdata_batch(t->data, ST_SPLIT_TRAIN, t->seed, (uint64_t)step,
                                 t->global_batch, T, t->gbatch));
    for (int k = 0; k < A; k++) {
        int slice = t->rank * A + k; /* B-row slice of the global batch */
        st_ctx_reset(t->ctx);
        st_tensor *x, *y, *loss;
        const int32_t *rows = t->batch;
        if (t->ld) { /* batch `step` of the loader: the same pure function of (seed, step) */
            double w = 0.0;
            ST_TRY(st_loader_next(t->ld_micro[k], t->batch, &w));
            t->data_wait_s += w;
        } else if (t->gbatch) {
            rows = t->gbatch + (size_t)slice * (size_t)B * (size_t)(T + 1);
        } else {
            ST_TRY(st_textdata_batch(t->data, ST_SPLIT_TRAIN, t->seed, (uint64_t)step, B, T,
                                     t->batch));
        }
        ST_TRY(make_xy(t->ctx, rows, B, T, t->xbuf, t->ybuf, &x, &y));
        uint64_t ds = mix64(t->seed ^ mix64((uint64_t)step + 1));
        if (slice > 0) ds = mix64(ds ^ ((uint64_t)slice * 0x9e3779b97f4a7c15ULL));
        st_model_set_training(t->m, true, ds);
        ST_TRY(st_model_loss(t->m, x, y, &loss, NULL));
        float v = 0.0f;
        ST_TRY(st_tensor_get_f32(loss, 0, &v));
        loss_sum += (double)v;
        if (t->saved_bytes == 0) {
            t->saved_bytes = st_autograd_saved_bytes(t->ctx);
            t->tape_nodes = st_autograd_tape_size(t->ctx);
        }
        st_ddp_prepare(t->ddp, k == A - 1); /* the last backward averages across ranks */
        ST_TRY(st_backward(t->ctx, loss));
    }
    ST_TRY(st_ddp_finish(t->ddp, 1.0f / (float)(A * t->n_ranks)));
    int sig = st_train_log_signal(NULL);
    if (t->n_ranks > 1) { /* mean loss, and whether any rank must stop */
        double v[2] = {loss_sum, sig ? 1.0 : 0.0};
        ST_TRY(st_dist_allreduce_sum_f64(t->dist, v, 2));
        loss_sum = v[0];
        if (!sig && v[1] > 0) sig = SIGTERM;
    }
    *stop = sig;
    *loss_out = (float)(loss_sum / (double)(A * t->n_ranks));
    ST_TRY(st_ddp_step(t->ddp, st_lr_at(&t->sched, step), (float)t->cfg.grad_clip, NULL));
    st_ddp_zero_grad(t->ddp);
    return ST_OK;
}

/* Keeps the lines of OUT/metrics.jsonl whose step is <= max_step (a run
 * that died after an evaluation but before its checkpoint). */
static st_status trim_metrics(const char *path, int64_t max_step) {
    char *txt = NULL;
    size_t n = 0;
    if (st_text_read_file(path, 0, &txt, &n) != ST_OK) return ST_OK; /* none yet */
    char *out = st_malloc(n + 1);
    if (!out) {
        st_free(txt);
        return st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    }
    size_t k = 0;
    for (char *line = txt; line < txt + n;) {
        char *nl = memchr(line, '\n', (size_t)(txt + n - line));
        size_t len = nl ? (size_t)(nl - line) + 1 : (size_t)(txt + n - line);
        json_t *j = json_loadb(line, len, 0, NULL);
        json_t *st = j ? json_object_get(j, "step") : NULL;
        if (json_is_integer(st) && json_integer_value(st) <= max_step) {
            memcpy(out + k, line, len);
            k += len;
        }
        json_decref(j);
        line += len;
    }
    st_status s = st_file_write_atomic(path, out, k);
    st_free(out);
    st_free(txt);
    return s;
}

static st_status append_line(const char *path, const char *line) {
    FILE *f = fopen(path, "a");
    if (!f) return st__fail(ST_ERR_IO, "%s: cannot open for appending: %s", path, strerror(errno));
    fprintf(f, "%s\n", line);
    if (fflush(f) != 0 || fclose(f) != 0)
        return st__fail(ST_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return ST_OK;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static double mb(double bytes) { return bytes / (1024.0 * 1024.0); }

int cmd_train(int argc, char **argv) {
    train_args a = {.steps = -1, .seed = 1337, .eval_every = -1, .eval_iters = -1, .batch = -1,
                    .threads = 0, .lr = -1.0, .global_batch = -1, .zero = 0, .bucket_mb = 25.0,
                    .dist_timeout = 30.0, .overlap = ST_DIST_OVERLAP_AUTO};
    if (cli_wants_help(argc, argv)) {
        /* one write(2): a reader that stops early (grep -q) must not cut the text */
        char *help = NULL;
        size_t n_help = 0;
        FILE *mf = open_memstream(&help, &n_help);
        if (mf) {
            usage(mf);
            fclose(mf);
            fflush(stdout);
            for (size_t off = 0; help && off < n_help;) {
                ssize_t w = write(STDOUT_FILENO, help + off, n_help - off);
                if (w <= 0) break;
                off += (size_t)w;
            }
            free(help);
        } else {
            usage(stdout);
        }
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(k, "--json")) {
            a.json = true;
            continue;
        }
        if (!v) return cli_usage_error("train", "%s needs a value", k);
        i++;
        if (!strcmp(k, "--config")) a.config = v;
        else if (!strcmp(k, "--data")) a.data = v;
        else if (!strcmp(k, "--out")) a.out = v;
        else if (!strcmp(k, "--resume")) a.resume = v;
        else if (!strcmp(k, "--tracking")) a.tracking = v;
        else if (!strcmp(k, "--experiment")) a.experiment = v;
        else if (!strcmp(k, "--register")) a.reg = v;
        else if (!strcmp(k, "--tag")) a.reg_tag = v;
        else if (!strcmp(k, "--steps")) ok = cli_parse_long(v, &a.steps) && a.steps >= 0;
        else if (!strcmp(k, "--seed")) ok = cli_parse_long(v, &a.seed) && a.seed >= 0;
        else if (!strcmp(k, "--eval-every")) ok = cli_parse_long(v, &a.eval_every) && a.eval_every >= 1;
        else if (!strcmp(k, "--eval-iters")) ok = cli_parse_long(v, &a.eval_iters) && a.eval_iters >= 1;
        else if (!strcmp(k, "--batch")) ok = cli_parse_long(v, &a.batch) && a.batch >= 1;
        else if (!strcmp(k, "--threads")) ok = cli_parse_long(v, &a.threads) && a.threads >= 1;
        else if (!strcmp(k, "--lr")) ok = cli_parse_double(v, &a.lr) && a.lr > 0;
        else if (!strcmp(k, "--global-batch")) ok = cli_parse_long(v, &a.global_batch) && a.global_batch >= 1;
        else if (!strcmp(k, "--zero")) ok = cli_parse_long(v, &a.zero) && (a.zero == 0 || a.zero == 1);
        else if (!strcmp(k, "--bucket-mb")) ok = cli_parse_double(v, &a.bucket_mb) && a.bucket_mb > 0;
        else if (!strcmp(k, "--dist-timeout")) ok = cli_parse_double(v, &a.dist_timeout) && a.dist_timeout > 0;
        else if (!strcmp(k, "--dist-overlap")) ok = st_dist_overlap_parse(v, &a.overlap);
        else if (!strcmp(k, "--dist")) {
            ok = !strcmp(v, "auto") || !strcmp(v, "mpi");
            a.force_mpi = !strcmp(v, "mpi");
        }
        else return cli_usage_error("train", "unknown option '%s'", k);
        if (!ok) return cli_usage_error("train", "bad value '%s' for %s", v, k);
    }
    if (!a.resume && (!a.config || !a.data))
        return cli_usage_error("train", "--config and --data are required (or --resume DIR)");
    if (a.resume && (a.config || a.batch > 0 || a.lr > 0 || a.eval_every > 0 || a.eval_iters > 0 ||
                     a.global_batch > 0))
        return cli_usage_error("train", "--resume continues the run's own configuration: "
                                        "--config, --batch, --lr, --eval-every, --eval-iters and "
                                        "--global-batch cannot change it");
    if (a.reg_tag && !a.reg) return cli_usage_error("train", "--tag needs --register NAME");
    char *resume_path = NULL; /* a registry reference resolved to its snapshot */
    if (a.resume) {
        struct stat rst;
        if (stat(a.resume, &rst) != 0) {
            if (!a.out)
                return cli_usage_error("train", "resuming from the registry reference '%s' needs "
                                                "--out DIR (registry snapshots are read-only)",
                                       a.resume);
            st_status rs = st_registry_resolve(a.resume, &resume_path);
            if (rs != ST_OK) return cli_fail("train", rs);
            a.resume = resume_path;
        }
    }
    FILE *info = a.json ? stderr : stdout;

    trainer t;
    memset(&t, 0, sizeof t);
    /* 0. The communicator: MPI under mpirun (or --dist mpi), else one process. */
    st_dist_params dp = st_dist_default_params();
    dp.force_mpi = a.force_mpi;
    dp.timeout_s = a.dist_timeout;
    dp.overlap = a.overlap;
    st_status ds = st_dist_new(&dp, &t.dist);
    if (ds != ST_OK) {
        st_free(resume_path);
        return cli_fail("train", ds);
    }
    t.rank = st_dist_rank(t.dist);
    t.n_ranks = st_dist_size(t.dist);
    rank_out rout = {.rank = t.rank, .bol = true};
    FILE *rank_file = NULL;
    if (t.rank > 0) { /* ranks > 0: prefixed lines on stderr, nothing on stdout */
        rank_file = fopencookie(&rout, "w", (cookie_io_functions_t){.write = rank_write});
        if (rank_file) setvbuf(rank_file, NULL, _IOLBF, 0);
        info = rank_file ? rank_file : stderr;
        st_track_catch_signals(); /* rank 0's tracking log installs them there */
    }
    bool lead = t.rank == 0;
    cli_progress prog;
    memset(&prog, 0, sizeof prog);
    char data_path[4096];
    st_train_state ts;
    memset(&ts, 0, sizeof ts);
    char *text = NULL, *cfg_json = NULL, *out_dir = NULL, *metrics_path = NULL;
    size_t n_text = 0;
    int rc = 1, sig = 0;
    st_status s = ST_OK;
    st_train_log *tl = NULL; /* the run in the tracking store (NULL: not logging) */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        s = (expr);                                                                                \
        if (s != ST_OK) goto fail;                                                                 \
    } while (0)

    /* 1. Configuration: the resumed run's own, or NAME|FILE plus overrides. */
    if (a.resume) {
        TRY(st_train_state_load(a.resume, NULL, &ts));
        if (!ts.config_json) {
            s = st__fail(ST_ERR_FORMAT, "%s/train_state.json: no config", a.resume);
            goto fail;
        }
        TRY(train_config_parse_json(ts.config_json, strlen(ts.config_json), a.resume, &t.cfg));
        json_t *j = json_loads(ts.config_json, 0, NULL);
        json_t *nm = j ? json_object_get(j, "name") : NULL;
        if (json_is_string(nm)) snprintf(t.cfg.name, sizeof t.cfg.name, "%s", json_string_value(nm));
        json_decref(j);
        t.seed = ts.seed;
        if (!a.data && ts.data_path) {
            snprintf(data_path, sizeof data_path, "%s", ts.data_path);
            a.data = data_path;
        }
        if (!a.data) {
            s = st__fail(ST_ERR_FORMAT, "%s: the state names no data; pass --data", a.resume);
            goto fail;
        }
    } else {
        s = train_config_resolve(a.config, &t.cfg);
        if (s == ST_ERR_INVALID_ARG) {
            fprintf(stderr, "strata train: %s\nTry 'strata train --help'.\n", st_last_error());
            rc = 2;
            goto fail_quiet;
        }
        if (s != ST_OK) goto fail;
        if (a.batch > 0) t.cfg.batch_size = (int)a.batch;
        if (a.eval_every > 0) t.cfg.eval_interval = a.eval_every;
        if (a.eval_iters > 0) t.cfg.eval_iters = a.eval_iters;
        if (a.lr > 0) {
            t.cfg.min_lr *= a.lr / t.cfg.learning_rate;
            t.cfg.learning_rate = a.lr;
        }
        if (a.global_batch > 0) t.cfg.global_batch = (int)a.global_batch;
        TRY(train_config_validate(&t.cfg));
        t.seed = (uint64_t)a.seed;
    }
    /* The global batch: fixed by the configuration (or this first run's
     * batch x ranks, recorded so a resume on other ranks keeps it). */
    if (t.cfg.global_batch == 0) t.cfg.global_batch = t.cfg.batch_size * t.n_ranks;
    if (t.cfg.global_batch % (t.cfg.batch_size * t.n_ranks) != 0) {
        s = st__fail(ST_ERR_INVALID_ARG,
                     "global_batch %d is not a multiple of batch %d x %d ranks; choose a batch "
                     "or a number of ranks that divides it",
                     t.cfg.global_batch, t.cfg.batch_size, t.n_ranks);
        goto fail;
    }
    t.global_batch = t.cfg.global_batch;
    t.accum = t.global_batch / (t.cfg.batch_size * t.n_ranks);
    int64_t max_steps = a.steps >= 0 ? a.steps : t.cfg.max_iters;
    size_t on = strlen(t.cfg.name) + 8;
    out_dir = st_malloc(on + (a.out ? strlen(a.out) : 0) + (a.resume ? strlen(a.resume) : 0));
    if (!out_dir) {
        s = st__fail(ST_ERR_NOMEM, "no memory");
        goto fail;
    }
    if (a.out) strcpy(out_dir, a.out);
    else if (a.resume) strcpy(out_dir, a.resume);
    else {
        const char *bn = base_name(t.cfg.name);
        size_t k = strcspn(bn, ".");
        sprintf(out_dir, "out-%.*s", (int)k, bn);
    }

    /* 2. Data and tokenizer (the state records the data's absolute path). A
     * directory with a manifest.json is a token-shard dataset (strata data
     * ingest): its tokenizer.json is the tokenizer, the loader gives batches. */
    char man_path[4200];
    struct stat man_sb;
    snprintf(man_path, sizeof man_path, "%s/manifest.json", a.data);
    bool shards = stat(man_path, &man_sb) == 0;
    if (!shards) TRY(st_text_read_file(a.data, 0, &text, &n_text));
    char *abs_data = realpath(a.data, NULL);
    if (abs_data) {
        snprintf(data_path, sizeof data_path, "%s", abs_data);
        free(abs_data);
        a.data = data_path;
    }
    if (a.resume && !shards && ts.data_bytes >= 0 && (int64_t)n_text != ts.data_bytes) {
        s = st__fail(ST_ERR_FORMAT, "%s: %zu bytes, but the run was trained on %lld bytes", a.data,
                     n_text, (long long)ts.data_bytes);
        goto fail;
    }
    if (a.resume || shards) {
        char p[4200];
        snprintf(p, sizeof p, "%s/tokenizer.json", a.resume ? a.resume : a.data);
        TRY(st_tokenizer_load(p, &t.tok));
    } else if (strcmp(t.cfg.tokenizer, "char") == 0) {
        TRY(st_tokenizer_char_from_corpus(text, n_text, &t.tok));
    } else {
        TRY(st_tokenizer_load(t.cfg.tokenizer, &t.tok));
    }
    int B = t.cfg.batch_size, T = t.cfg.block_size;
    int64_t n_tok[2];
    if (shards) {
        st_loader_params lp = st_loader_default_params();
        lp.batch_size = B;
        lp.block_size = T;
        lp.seed = t.seed;
        /* slice r*accum + k of a global batch of (ranks x accum) slices */
        lp.world_size = t.n_ranks * t.accum;
        t.ld_micro = st_calloc((size_t)t.accum, sizeof *t.ld_micro);
        if (!t.ld_micro) {
            s = st__fail(ST_ERR_NOMEM, "no memory");
            goto fail;
        }
        for (int k = 0; k < t.accum; k++) {
            lp.rank = t.rank * t.accum + k;
            lp.check_tokens = k == 0;
            TRY(st_loader_new(a.data, &lp, &t.ld_micro[k]));
        }
        t.ld = t.ld_micro[0];
        lp.rank = 0;
        lp.world_size = 1;
        lp.check_tokens = true;
        lp.prefetch = 0;
        lp.seed = t.seed ^ EVAL_SALT;
        lp.check_tokens = false; /* the train loader checked the same shards */
        TRY(st_loader_new(a.data, &lp, &t.ld_eval[ST_SPLIT_TRAIN]));
        lp.split = ST_SPLIT_VAL;
        lp.check_tokens = true;
        TRY(st_loader_new(a.data, &lp, &t.ld_eval[ST_SPLIT_VAL]));
        n_tok[0] = (int64_t)st_loader_n_tokens(t.ld);
        n_tok[1] = (int64_t)st_loader_n_tokens(t.ld_eval[ST_SPLIT_VAL]);
        n_text = (size_t)(n_tok[0] + n_tok[1]); /* recorded as data_bytes: tokens for shards */
    } else {
        TRY(st_textdata_new(t.tok, text, n_text, t.cfg.train_frac, a.data, &t.data));
        n_tok[0] = st_textdata_n_tokens(t.data, ST_SPLIT_TRAIN);
        n_tok[1] = st_textdata_n_tokens(t.data, ST_SPLIT_VAL);
    }
    if (!shards && (t.accum > 1 || t.n_ranks > 1)) {
        t.gbatch = st_malloc(sizeof(int32_t) * (size_t)t.global_batch * (size_t)(T + 1));
        if (!t.gbatch) {
            s = st__fail(ST_ERR_NOMEM, "no memory for a global batch of %d rows", t.global_batch);
            goto fail;
        }
    }
    t.batch = st_malloc(sizeof(int32_t) * (size_t)B * (size_t)(T + 1));
    t.xbuf = st_malloc(sizeof(int32_t) * (size_t)B * (size_t)T);
    t.ybuf = st_malloc(sizeof(int32_t) * (size_t)B * (size_t)T);
    if (!t.batch || !t.xbuf || !t.ybuf) {
        s = st__fail(ST_ERR_NOMEM, "no memory for batches");
        goto fail;
    }

    /* 3. Context, model, optimizer, schedule. */
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = (int)a.threads;
    TRY(st_ctx_new(&cp, &t.ctx));
    TRY(st_autograd_enable(t.ctx));
    if (a.resume) {
        TRY(st_modeldir_load(t.ctx, a.resume, &t.m, NULL));
    } else {
        st_model_config mc = train_config_model(&t.cfg, st_tokenizer_vocab_size(t.tok));
        TRY(st_model_config_validate(&mc));
        TRY(st_model_new(t.ctx, &mc, t.seed, &t.m));
    }
    st_optim_params op = st_optim_default_params(ST_OPTIM_ADAMW);
    op.lr = (float)t.cfg.learning_rate;
    op.beta1 = (float)t.cfg.beta1;
    op.beta2 = (float)t.cfg.beta2;
    op.weight_decay = (float)t.cfg.weight_decay;
    st_ddp_params ddp = st_ddp_default_params();
    ddp.optim = op;
    ddp.zero = (int)a.zero;
    ddp.bucket_bytes = (size_t)(a.bucket_mb * 1024.0 * 1024.0);
    TRY(st_ddp_new(t.dist, t.m, &ddp, &t.ddp));
    t.sched = (st_lr_schedule){.lr_max = (float)t.cfg.learning_rate,
                               .lr_min = (float)t.cfg.min_lr,
                               .warmup_steps = t.cfg.warmup_iters,
                               .decay_steps = t.cfg.lr_decay_iters,
                               .cosine = t.cfg.decay_lr};
    int64_t start = 0;
    double elapsed0 = 0.0;
    int64_t tokens_seen = 0;
    if (a.resume) {
        st_train_state_clear(&ts);
        TRY(st_ddp_load(t.ddp, a.resume, &ts));
        start = ts.step;
        elapsed0 = ts.elapsed_s;
        tokens_seen = ts.tokens_seen;
    }
    TRY(train_config_to_json(&t.cfg, &cfg_json));

    /* 4. Output directory and metrics file (rank 0's). */
    if (lead && mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        s = st__fail(ST_ERR_IO, "%s: cannot create: %s", out_dir, strerror(errno));
        goto fail;
    }
    metrics_path = st_malloc(strlen(out_dir) + 32);
    if (!metrics_path) {
        s = st__fail(ST_ERR_NOMEM, "no memory");
        goto fail;
    }
    sprintf(metrics_path, "%s/metrics.jsonl", out_dir);
    if (lead && a.resume) TRY(trim_metrics(metrics_path, start));
    else if (lead) remove(metrics_path);
    /* Every run is logged (a resumed one as a new run with the same seed);
     * tracking failures are warnings, never a reason to stop training. */
    if (lead) st_train_log_begin(a.tracking, a.experiment, argc, argv, cfg_json, (int64_t)t.seed, &tl);

    const st_model_config *mc = st_model_get_config(t.m);
    int64_t n_params = st_model_n_params(t.m);
    fprintf(info,
            "strata train: config %s: %s, %d layers, %d heads, %d wide, block %d, batch %d, "
            "dropout %g\n",
            t.cfg.name, mc->arch == ST_ARCH_LLAMA ? "llama" : "gpt2", mc->n_layer, mc->n_head,
            mc->n_embd, T, B, (double)mc->dropout);
    if (shards)
        fprintf(info, "data %s: token shards, %lld tokens (vocab %d): %lld train, %lld val\n",
                a.data, (long long)(n_tok[0] + n_tok[1]), st_tokenizer_vocab_size(t.tok),
                (long long)n_tok[0], (long long)n_tok[1]);
    else
        fprintf(info, "data %s: %zu bytes -> %lld tokens (vocab %d): %lld train, %lld val\n",
                a.data, n_text, (long long)(n_tok[0] + n_tok[1]), st_tokenizer_vocab_size(t.tok),
                (long long)n_tok[0], (long long)n_tok[1]);
    fprintf(info, "model: %lld parameters (%.2f M); %d threads; steps %lld -> %lld; out %s\n",
            (long long)n_params, (double)n_params / 1e6, st_ctx_n_threads(t.ctx),
            (long long)start, (long long)max_steps, out_dir);
    if (t.n_ranks > 1 || t.accum > 1 || a.zero) {
        st_ddp_stats dst;
        st_ddp_get_stats(t.ddp, &dst);
        fprintf(info,
                "data parallel: rank %d of %d (%s), global batch %d = batch %d x %d ranks x %d "
                "accumulation; %d gradient buckets (%.1f MB in all, --bucket-mb %g), overlap "
                "%s%s\n",
                t.rank, t.n_ranks, st_dist_is_mpi(t.dist) ? "MPI" : "one process",
                t.global_batch, B, t.n_ranks, t.accum, dst.n_buckets,
                mb((double)dst.bytes_per_sync), a.bucket_mb, st_dist_overlap_name(st_dist_get_overlap(t.dist)),
                a.zero ? ", ZeRO-1" : "");
    }
    fprintf(info, "optimizer memory per rank: %.2f MB (AdamW moments%s)\n",
            mb((double)st_ddp_optim_bytes(t.ddp)),
            a.zero ? (t.n_ranks > 1 ? ", ZeRO-1 shard: 1/ranks of them" : ", ZeRO-1, one rank")
                   : ", all of them");
    fflush(info);

    for (int k = 0; t.ld && start > 0 && k < t.accum; k++) {
        /* batch i of the loader is batch i of the run (any number of ranks): resume is exact */
        st_loader_state lst;
        st_loader_get_state(t.ld_micro[k], &lst);
        lst.next_batch = (uint64_t)start;
        TRY(st_loader_set_state(t.ld_micro[k], &lst));
    }

    /* 5. The loop. */
    double budget = 0.0, t_run = st_time_s(), train_time = 0.0, run_train_time = 0.0,
           first_step_s = 0.0;
    int64_t tokens_since = 0;
    double last_train = NAN, last_val = NAN;
    cli_progress_init(&prog, start, max_steps, t.cfg.eval_interval > 5 ? t.cfg.eval_interval / 5 : 1,
                      lead);
    int stop_sig = 0;
    char size_desc[512];
    if (shards)
        snprintf(size_desc, sizeof size_desc, "%s (token shards, %lld train + %lld val tokens)",
                 base_name(a.data), (long long)n_tok[0], (long long)n_tok[1]);
    else
        snprintf(size_desc, sizeof size_desc, "%s (%zu bytes, %lld tokens, %s tokenizer, 90/10 split)",
                 base_name(a.data), n_text, (long long)(n_tok[0] + n_tok[1]),
                 st_tokenizer_get_kind(t.tok) == ST_TOK_CHAR ? "char-level" : "BPE");
    char desc[512];
    snprintf(desc, sizeof desc, "Trained with `strata train --config %s` (seed %llu).",
             t.cfg.name, (unsigned long long)t.seed);

    for (int64_t step = start;; step++) {
        /* Evaluate + checkpoint after `step` steps. */
        bool eval = (step % t.cfg.eval_interval == 0 || step == max_steps) &&
                    !(a.resume && step == start);
        if (eval) {
            cli_progress_clear(&prog);
            TRY(eval_split(&t, ST_SPLIT_TRAIN, step, &last_train));
            TRY(eval_split(&t, ST_SPLIT_VAL, step, &last_val));
            double elapsed = elapsed0 + (st_time_s() - t_run);
            double tps = train_time > 0 ? (double)tokens_since / train_time : 0.0;
            float lr = st_lr_at(&t.sched, step > 0 ? step - 1 : 0);
            char line[512];
            snprintf(line, sizeof line,
                     "{\"step\": %lld, \"train_loss\": %.9g, \"val_loss\": %.9g, \"lr\": %.9g, "
                     "\"tokens_per_s\": %.1f, \"elapsed_s\": %.3f, \"data_wait_s\": %.6f, "
                     "\"data_wait_share\": %.6f}",
                     (long long)step, last_train, last_val, (double)lr, tps, elapsed,
                     t.data_wait_s, train_time > 0 ? t.data_wait_s / train_time : 0.0);
            t.data_wait_s = 0.0;
            if (lead) {
                TRY(append_line(metrics_path, line));
                st_train_log_eval(tl, step, last_train, last_val, (double)lr, tps, elapsed);
                if (a.json) printf("%s\n", line);
                else
                    printf("step %lld: train loss %.4f, val loss %.4f, lr %.2e, %.0f tok/s, "
                           "%.1f s\n",
                           (long long)step, last_train, last_val, (double)lr, tps, elapsed);
                fflush(stdout);
            }
            tokens_since = 0;
            train_time = 0.0;
            st_model_card card = st_model_card_default();
            card.training_data = size_desc;
            card.description = desc;
            card.step = step;
            card.tokens_seen = tokens_seen;
            card.train_loss = last_train;
            card.val_loss = last_val;
            if (lead) TRY(st_modeldir_save(out_dir, t.m, t.tok, &card));
            st_train_state st2 = {.step = step, .seed = t.seed, .tokens_seen = tokens_seen,
                                  .elapsed_s = elapsed, .config_json = cfg_json,
                                  .data_path = (char *)a.data, .data_bytes = (int64_t)n_text,
                                  .schedule = t.sched};
            TRY(st_ddp_save(t.ddp, out_dir, &st2)); /* collective; rank 0 writes */
        }
        if (step >= max_steps) break;
        if (stop_sig || (t.n_ranks == 1 && (stop_sig = st_train_log_signal(tl)) != 0)) {
            sig = stop_sig; /* Ctrl-C / SIGTERM (on any rank): stop cleanly */
            break;
        }
        double t0 = st_time_s();
        float loss = 0.0f;
        TRY(train_step(&t, step, &loss, &stop_sig));
        st_train_log_step(tl, step, loss);
        if (budget == 0.0) {
            double act = (double)t.saved_bytes;
            double p4 = 4.0 * (double)n_params; /* f32 */
            double opt = (double)st_ddp_optim_bytes(t.ddp);
            budget = p4 * 2.0 + opt + act;
            cli_progress_clear(&prog);
            fprintf(info,
                    "memory budget: params %.1f MB + grads %.1f MB + AdamW moments %.1f MB + "
                    "activations the tape keeps %.1f MB (%d nodes) = %.1f MB\n",
                    mb(p4), mb(p4), mb(opt), mb(act), t.tape_nodes, mb(budget));
            fflush(info);
        }
        double dt = st_time_s() - t0;
        train_time += dt;
        if (run_train_time == 0.0) { /* warm-up (allocations, page faults): left out of the */
            first_step_s = dt;       /* communication figures */
            st_ddp_reset_stats(t.ddp);
        }
        run_train_time += dt;
        tokens_since += (int64_t)t.global_batch * T;
        tokens_seen += (int64_t)t.global_batch * T;
        cli_progress_update(&prog, step + 1, loss, (double)tokens_since / train_time);
    }
    cli_progress_clear(&prog);
    if (sig) {
        st_train_log_end(tl, ST_RUN_KILLED, NULL);
        tl = NULL;
        fprintf(lead ? stderr : info, "strata train: stopped by signal %d; the last checkpoint is in %s\n", sig, out_dir);
        rc = 128 + sig;
        goto done;
    }

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss * 1024.0, wall = st_time_s() - t_run;
    double heap = (double)st_alloc_get_stats().peak_bytes;
    double step_peak = (double)st_arena_peak_bytes(st_ctx_arena(t.ctx));
    double ratio = budget > 0 ? rss / budget : 0.0;
    st_ddp_stats dst;
    st_ddp_get_stats(t.ddp, &dst);
    double steps_run = (double)(max_steps - start);
    if (a.json && lead) {
        printf("{\"done\": true, \"steps\": %lld, \"train_loss\": %.9g, \"val_loss\": %.9g, "
               "\"wall_s\": %.3f, \"params\": %lld, \"budget_bytes\": %.0f, "
               "\"activation_bytes\": %zu, \"peak_rss_bytes\": %.0f, \"alloc_peak_bytes\": %.0f, "
               "\"arena_peak_bytes\": %.0f, \"rss_over_budget\": %.4f, \"ranks\": %d, "
               "\"global_batch\": %d, \"grad_accum\": %d, \"zero\": %ld, "
               "\"optim_bytes_per_rank\": %zu, \"train_time_s\": %.6f, \"first_step_s\": %.6f, "
               "\"tokens_per_s\": %.1f, "
               "\"allreduce_s\": %.6f, \"allreduce_exposed_s\": %.6f, \"step_comm_s\": %.6f, "
               "\"out\": \"%s\"}\n",
               (long long)max_steps, last_train, last_val, wall, (long long)n_params, budget,
               t.saved_bytes, rss, heap, step_peak, ratio, t.n_ranks, t.global_batch, t.accum,
               a.zero, st_ddp_optim_bytes(t.ddp), run_train_time, first_step_s,
               run_train_time > 0 ? steps_run * t.global_batch * T / run_train_time : 0.0,
               dst.comm_s, dst.exposed_s, dst.step_comm_s, out_dir);
    }
    if (t.n_ranks > 1 && run_train_time - first_step_s > 0)
        fprintf(info,
                "all-reduce (steps after the first): %.3f s in buckets, %.3f s of it not hidden "
                "behind backward (%.1f%% of the step time), %.3f s in the step's collectives\n",
                dst.comm_s, dst.exposed_s, 100.0 * dst.exposed_s / (run_train_time - first_step_s),
                dst.step_comm_s);
    fprintf(info,
            "done: %lld steps, val loss %.4f, %.1f s this run; model in %s\n",
            (long long)max_steps, last_val, wall, out_dir);
    if (budget > 0)
        fprintf(info,
                "memory: peak RSS %.1f MB, allocator peak %.1f MB (step arena %.1f MB) against the "
                "budget of %.1f MB: %.2fx (RSS / budget)\n",
                mb(rss), mb(heap), mb(step_peak), mb(budget), ratio);
    if (a.reg && lead) { /* the final checkpoint becomes a revision in the model registry */
        st_model_card card = st_model_card_default();
        card.training_data = size_desc;
        card.description = desc;
        card.step = max_steps;
        card.tokens_seen = tokens_seen;
        card.train_loss = last_train;
        card.val_loss = last_val;
        char rev[65], msg[256];
        snprintf(msg, sizeof msg, "strata train: %lld steps, val loss %.4f", (long long)max_steps,
                 last_val);
        TRY(st_registry_push_dir(out_dir, a.reg, a.reg_tag, msg, &card, rev));
        fprintf(info, "registered: %s@%.12s%s%s\n", a.reg, rev, a.reg_tag ? " tag " : "",
                a.reg_tag ? a.reg_tag : "");
    }
    {
        char model_file[4200];
        snprintf(model_file, sizeof model_file, "%s/model.safetensors", out_dir);
        st_train_log_end(tl, ST_RUN_FINISHED, model_file);
        tl = NULL;
    }
    rc = 0;
    goto done;
fail:
    cli_progress_clear(&prog);
    if (t.n_ranks > 1) { /* a rank that fails ends the job: the others would wait for it */
        char msg[1200];
        snprintf(msg, sizeof msg, "strata train: %s (%s); ending the job", st_last_error(),
                 st_status_name(s));
        st_train_log_end(tl, ST_RUN_FAILED, NULL);
        st_dist_abort(t.dist, 1, msg);
    }
    rc = cli_fail("train", s);
fail_quiet:
done:
    st_train_log_end(tl, ST_RUN_FAILED, NULL); /* NULL after a finished or killed end */
    st_free(resume_path);
    st_ddp_free(t.ddp);
    st_model_free(t.m);
    st_ctx_free(t.ctx);
    st_textdata_free(t.data);
    for (int k = 0; t.ld_micro && k < t.accum; k++)
        st_loader_free(t.ld_micro[k]);
    st_free(t.ld_micro);
    st_free(t.gbatch);
    st_loader_free(t.ld_eval[0]);
    st_loader_free(t.ld_eval[1]);
    st_tokenizer_free(t.tok);
    st_free(t.batch);
    st_free(t.xbuf);
    st_free(t.ybuf);
    st_free(text);
    st_free(cfg_json);
    st_free(out_dir);
    st_free(metrics_path);
    st_train_state_clear(&ts);
    if (rank_file) fclose(rank_file);
    st_dist_free(t.dist);
    return rc;
#undef TRY
}
