/*
 * decode.c — `strata bench decode`: the inference engine's prefill and
 * decode speed against the machine's limits, measured in the same run.
 *
 * Models: random-weight llama models shaped like llama2.c's stories15M
 * (dim 288, 6 layers, 6 heads, hidden 768, vocab 32000) and stories110M
 * (dim 768, 12 layers, 12 heads, hidden 2048), in f32 and q8_0
 * (st_lm_quantize). Per model:
 *   prefill: one 128-token prompt through st_engine_forward; tokens/s and
 *            GFLOP/s (2 x weight elements per token) against the sgemm peak
 *            of st_hw_measure_run;
 *   decode:  batch 1, 64 tokens after a 16-token prompt; tokens/s and the
 *            bound weight bytes per token / copy bandwidth (the L1 probe),
 *            i.e. the fraction of the memory-bandwidth bound reached. The
 *            copy probe runs again after each rep's decode and that rep's
 *            ratio uses it: on the shared VM the bandwidth drifts between
 *            ~37 and ~70 GB/s over minutes, so one probe at the start
 *            made the ratio a measure of the drift. The machine line's
 *            copy figure is the start-of-run probe.
 *   batch rows: the weight products of one decode step over n = 1, 4, 16,
 *            64 sequences (st_wmatrix_matmul with n rows on every matrix of
 *            the model), ms per step, the step's cost over n = 1's, weight
 *            GB/s and GFLOP/s, next to cblas_sgemm on the same shapes with
 *            the f32 weights (BLAS alone with the cores) as the peer: what
 *            the server's batching costs in the products.
 * Each figure is the median of --reps runs (default 3). The llama.cpp
 * column (node-llama-cpp on the same GGUF) is `strata bench llamacpp`.
 * Memory is local and freed on return.
 */
#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "strata/hw.h"
#include "strata/infer.h"

typedef struct shape {
    const char *name;
    int dim, n_layer, n_head, hidden, n_ctx;
} shape;

static const shape k_shapes[] = {
    {"stories15M", 288, 6, 6, 768, 256},
    {"stories110M", 768, 12, 12, 2048, 1024},
};

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

static st_status rand_matrix(st_lm *lm, st_wmatrix *w, int64_t rows, int64_t cols, uint64_t *s) {
    float *p = st_lm_alloc(lm, (size_t)(rows * cols) * sizeof(float));
    if (!p) return st__fail(ST_ERR_NOMEM, "bench decode: no memory");
    for (int64_t i = 0; i < rows * cols; i++)
        p[i] = ((float)(lcg(s) & 0xffff) / 65536.0f - 0.5f) * 0.1f;
    w->type = ST_WT_F32;
    w->rows = rows;
    w->cols = cols;
    w->data = p;
    w->row_bytes = (size_t)cols * sizeof(float);
    return ST_OK;
}

static st_status ones(st_lm *lm, int64_t n, const float **out) {
    float *p = st_lm_alloc(lm, (size_t)n * sizeof(float));
    if (!p) return st__fail(ST_ERR_NOMEM, "bench decode: no memory");
    for (int64_t i = 0; i < n; i++) p[i] = 1.0f;
    *out = p;
    return ST_OK;
}

static st_status make_model(const shape *sh, st_lm **out) {
    st_model_config c = st_model_config_default(ST_ARCH_LLAMA);
    c.n_embd = sh->dim;
    c.n_layer = sh->n_layer;
    c.n_head = c.n_kv_head = sh->n_head;
    c.n_ff = sh->hidden;
    c.vocab_size = 32000;
    c.n_ctx = sh->n_ctx;
    c.tie_embeddings = true;
    st_lm *lm = NULL;
    ST_TRY(st_lm_new_empty(&c, &lm));
    uint64_t s = 42;
    st_status r = rand_matrix(lm, &lm->tok_embd, c.vocab_size, c.n_embd, &s);
    lm->lm_head = lm->tok_embd;
    if (!r) r = ones(lm, c.n_embd, &lm->lnf_w);
    for (int l = 0; !r && l < c.n_layer; l++) {
        st_lm_layer *L = &lm->layers[l];
        const int64_t E = c.n_embd, F = c.n_ff;
        if (!r) r = ones(lm, E, &L->ln1_w);
        if (!r) r = ones(lm, E, &L->ln2_w);
        if (!r) r = rand_matrix(lm, &L->wq, E, E, &s);
        if (!r) r = rand_matrix(lm, &L->wk, E, E, &s);
        if (!r) r = rand_matrix(lm, &L->wv, E, E, &s);
        if (!r) r = rand_matrix(lm, &L->wo, E, E, &s);
        if (!r) r = rand_matrix(lm, &L->w_gate, F, E, &s);
        if (!r) r = rand_matrix(lm, &L->w_up, F, E, &s);
        if (!r) r = rand_matrix(lm, &L->w_down, E, F, &s);
    }
    if (!r) r = st_lm_validate(lm, sh->name);
    if (r) {
        st_lm_free(lm);
        return r;
    }
    *out = lm;
    return ST_OK;
}

typedef struct result {
    double prefill_tps, decode_tps, copy_gbs, vs_bound;
} result;

st_status bench_engine_speed(st_ctx *ctx, const st_lm *lm, const int32_t *ids,
                             const int32_t *next, int reps, const st_hw_measure_params *bw,
                             double *prefill_tps, double *decode_tps, double *copy_gbs,
                             double *vs_bound) {
    enum { PREFILL = BENCH_PREFILL_TOKENS, PROMPT = BENCH_PROMPT_TOKENS, DECODE = BENCH_DECODE_TOKENS };
    if (reps < 1 || reps > 16)
        return st__fail(ST_ERR_INVALID_ARG, "bench: reps %d outside [1, 16]", reps);
    st_engine *e = NULL;
    st_engine_params ep = st_engine_default_params();
    ST_TRY(st_engine_new(ctx, lm, &ep, &e));
    float *logits = st_malloc((size_t)lm->cfg.vocab_size * sizeof(float));
    double pre[16], dec[16], copy[16], ratio[16];
    const double bytes = (double)st_lm_weight_bytes(lm);
    st_status s = logits ? ST_OK : st__fail(ST_ERR_NOMEM, "bench: no memory for logits");
    for (int r = 0; !s && r < reps; r++) {
        st_kv_seq q = {0};
        st_engine_seq es = {.seq = &q, .tokens = ids, .n_tokens = PREFILL, .logits = logits};
        double t0 = st_time_s();
        s = st_engine_forward(e, &es, 1);
        pre[r] = PREFILL / (st_time_s() - t0);
        st_kv_seq_release(st_engine_kv(e), &q);
        if (s) break;
        es.n_tokens = PROMPT;
        s = st_engine_forward(e, &es, 1);
        t0 = st_time_s();
        for (int t = 0; !s && t < DECODE; t++) {
            st_engine_seq d = {.seq = &q, .tokens = &next[t], .n_tokens = 1, .logits = logits};
            s = st_engine_forward(e, &d, 1);
        }
        dec[r] = DECODE / (st_time_s() - t0);
        st_kv_seq_release(st_engine_kv(e), &q);
        if (!s && bw) { /* the bound of this moment: the host's bandwidth drifts */
            st_hw_measure m;
            s = st_hw_measure_bandwidth(bw, &m);
            copy[r] = m.copy_gbs;
            ratio[r] = m.copy_gbs > 0 ? dec[r] * bytes / (m.copy_gbs * 1e9) : 0;
        }
    }
    if (!s) {
        *prefill_tps = bench_median(pre, reps);
        *decode_tps = bench_median(dec, reps);
        if (bw) {
            *copy_gbs = bench_median(copy, reps);
            *vs_bound = bench_median(ratio, reps);
        }
    }
    st_free(logits);
    st_engine_free(e);
    return s;
}

static st_status run_one(st_ctx *ctx, const st_lm *lm, int reps, const st_hw_measure_params *bw,
                         result *res) {
    const int V = lm->cfg.vocab_size;
    int32_t ids[BENCH_PREFILL_TOKENS], next[BENCH_DECODE_TOKENS];
    for (int i = 0; i < BENCH_PREFILL_TOKENS; i++) ids[i] = (i * 7919) % V;
    for (int t = 0; t < BENCH_DECODE_TOKENS; t++) next[t] = (t * 31) % V;
    return bench_engine_speed(ctx, lm, ids, next, reps, bw, &res->prefill_tps, &res->decode_tps,
                              &res->copy_gbs, &res->vs_bound);
}

/* ---- batch rows: the products of one decode step over n sequences -------------------- */

static const int k_batch_n[] = {1, 4, 16, 64};
#define N_BATCH (int)(sizeof k_batch_n / sizeof k_batch_n[0])

/* every weight matrix of a step, in engine order (the tied head last) */
static int step_mats(const st_lm *lm, const st_wmatrix **m) {
    int n = 0;
    for (int l = 0; l < lm->cfg.n_layer; l++) {
        const st_lm_layer *L = &lm->layers[l];
        m[n++] = &L->wq;
        m[n++] = &L->wk;
        m[n++] = &L->wv;
        m[n++] = &L->wo;
        m[n++] = &L->w_gate;
        m[n++] = &L->w_up;
        m[n++] = &L->w_down;
    }
    m[n++] = &lm->lm_head;
    return n;
}

/* seconds per step: st_wmatrix_matmul (peer = 0) or cblas_sgemm on the same
 * shapes (peer = 1, f32 weights only; BLAS alone with the cores), median of
 * reps runs of enough steps to fill ~60 ms */
static st_status time_step(st_ctx *ctx, const st_lm *lm, int n, int peer, int reps,
                           const float *x, float *y, double *sec) {
    const st_wmatrix *m[8 * 64 + 1];
    if (lm->cfg.n_layer > 64) return st__fail(ST_ERR_INVALID_ARG, "bench decode: too many layers");
    const int nm = step_mats(lm, m);
    double t[16];
    int iters = 1;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up, sizes iters */
        const double t0 = st_time_s();
        for (int it = 0; it < iters; it++)
            for (int i = 0; i < nm; i++) {
                if (peer)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)m[i]->rows,
                                (int)m[i]->cols, 1.0f, x, (int)m[i]->cols,
                                (const float *)m[i]->data, (int)m[i]->cols, 0.0f, y,
                                (int)m[i]->rows);
                else ST_TRY(st_wmatrix_matmul(ctx, m[i], x, n, y));
            }
        const double dt = (st_time_s() - t0) / iters;
        if (r < 0) {
            iters = (int)(0.06 / (dt > 1e-6 ? dt : 1e-6));
            if (iters < 1) iters = 1;
            if (iters > 1000) iters = 1000;
        } else t[r] = dt;
    }
    *sec = bench_median(t, reps);
    return ST_OK;
}

static st_status run_batch(st_ctx *ctx, const char *name, const st_lm *lm, const st_lm *f32,
                           int reps, bool json) {
    const st_model_config *c = &lm->cfg;
    const int64_t wide = c->vocab_size > c->n_ff ? c->vocab_size : c->n_ff;
    const int nmax = k_batch_n[N_BATCH - 1];
    float *x = st_malloc((size_t)nmax * (size_t)wide * sizeof(float));
    float *y = st_malloc((size_t)nmax * (size_t)wide * sizeof(float));
    st_status s = x && y ? ST_OK : st__fail(ST_ERR_NOMEM, "bench decode: no memory for batch rows");
    uint64_t seed = 7;
    for (int64_t i = 0; !s && i < (int64_t)nmax * wide; i++)
        x[i] = ((float)(lcg(&seed) & 0xffff) / 65536.0f - 0.5f);
    const double elems = (double)c->n_layer * (4.0 * c->n_embd * c->n_embd +
                                               3.0 * c->n_embd * c->n_ff) +
                         (double)c->vocab_size * c->n_embd;
    const double bytes = (double)st_lm_weight_bytes(lm);
    const char *tn = st_wtype_name(lm->layers[0].wq.type);
    double t1 = 0;
    for (int b = 0; !s && b < N_BATCH; b++) {
        const int n = k_batch_n[b];
        double t = 0, tp = 0;
        s = time_step(ctx, lm, n, 0, reps, x, y, &t);
        if (!s) s = time_step(ctx, f32, n, 1, reps, x, y, &tp);
        if (s) break;
        if (b == 0) t1 = t;
        const double gbs = bytes / t / 1e9, gflops = 2.0 * elems * n / t / 1e9;
        if (json) {
            json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:f, s:f, s:f, s:f, s:f}", "bench",
                                  "batch_rows", "model", name, "type", tn, "n", n, "step_ms",
                                  t * 1e3, "vs_n1", t / t1, "weight_gbs", gbs, "gflops", gflops,
                                  "sgemm_step_ms", tp * 1e3);
            char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            if (txt) printf("%s\n", txt);
            free(txt);
            json_decref(j);
        } else {
            printf("%-12s %-5s %4d %9.3f %7.2f %8.1f %8.1f %9.3f %8.2f\n", name, tn, n, t * 1e3,
                   t / t1, gbs, gflops, tp * 1e3, tp / t);
        }
    }
    st_free(x);
    st_free(y);
    return s;
}

int bench_decode_main(int argc, char **argv) {
    long reps = 3, threads = 0;
    bool json = false, no_q8 = false, batch_only = false, no_batch = false, with_q4 = false;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            printf("usage: strata bench decode [--reps N] [--threads N] [--no-q8] [--q4]\n"
                   "                           [--batch-only] [--no-batch] [--json]\n\n"
                   "Prefill and batch-1 decode tokens/s of random llama models shaped like\n"
                   "stories15M and stories110M (f32 and q8_0), against the sgemm peak and\n"
                   "the memory-bandwidth bound (weight bytes per token / copy GB/s), both\n"
                   "measured in the same run (the copy probe again after each rep's decode).\n"
                   "Medians of --reps runs (default 3, at most 16).\n\n"
                   "Then batch rows: the weight products of one decode step over n = 1, 4,\n"
                   "16, 64 sequences (st_wmatrix_matmul with n rows, every matrix of the\n"
                   "model once): ms per step, the step's cost relative to n = 1, weight GB/s\n"
                   "and GFLOP/s, next to cblas_sgemm on the same shapes with f32 weights\n"
                   "(BLAS alone with the cores) as the peer.\n\n"
                   "  --reps N       repetitions per figure (default 3)\n"
                   "  --threads N    pool threads (default: STRATA_THREADS, else all cores)\n"
                   "  --no-q8        f32 models only\n"
                   "  --q4           q4_0 models too (decode table)\n"
                   "  --batch-only   only the batch-rows table\n"
                   "  --no-batch     skip the batch-rows table\n"
                   "  --json         JSON Lines (batch rows carry \"bench\": \"batch_rows\")\n\n"
                   "q8_0 / q4_0 models run packed where the CPU has AVX-512 VNNI or AVX-VNNI\n"
                   "(the engine's default); STRATA_PACK=0 measures the row-major kernels.\n");
            return 0;
        }
        if (!strcmp(k, "--json")) json = true;
        else if (!strcmp(k, "--no-q8")) no_q8 = true;
        else if (!strcmp(k, "--q4")) with_q4 = true;
        else if (!strcmp(k, "--batch-only")) batch_only = true;
        else if (!strcmp(k, "--no-batch")) no_batch = true;
        else if (!strcmp(k, "--reps") && v && cli_parse_long(v, &reps) && reps >= 1 && reps <= 16) i++;
        else if (!strcmp(k, "--threads") && v && cli_parse_long(v, &threads) && threads >= 1) i++;
        else return cli_usage_error("bench decode", "bad option '%s'", k);
    }
    st_ctx *ctx = NULL;
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = (int)threads;
    st_status s = st_ctx_new(&cp, &ctx);
    if (s) return cli_fail("bench decode", s);
    st_hw_measure_params mp = st_hw_measure_default_params();
    mp.n_threads = st_ctx_n_threads(ctx);
    mp.min_time_s = 0.2;
    st_hw_measure hw;
    s = st_hw_measure_run(&mp, &hw);
    if (s) {
        st_ctx_free(ctx);
        return cli_fail("bench decode", s);
    }
    /* the per-rep bandwidth probe: the start probe's arrays (64 MiB ones
     * measured 10-15% more: part of them stays in the caches), shorter */
    st_hw_measure_params bwp = mp;
    bwp.min_time_s = 0.1;
    if (!json)
        printf("machine: sgemm %.1f GFLOP/s, copy %.1f GB/s, %d threads\n\n",
               hw.sgemm_gflops, hw.copy_gbs, hw.n_threads);
    if (!json && !batch_only)
        printf("%-12s %-5s %9s %9s %8s %10s %10s %8s\n", "model", "type", "MB/token",
               "prefill", "vs sgemm", "decode", "bound", "vs bound");
    int rc = 0;
    for (size_t m = 0; m < sizeof k_shapes / sizeof k_shapes[0] && !rc && !batch_only; m++) {
        st_lm *f32 = NULL;
        s = make_model(&k_shapes[m], &f32);
        if (s) {
            rc = cli_fail("bench decode", s);
            break;
        }
        /* q: 0 f32, 1 q8_0, 2 q4_0 (--q4) */
        for (int q = 0; q < (no_q8 ? 1 : with_q4 ? 3 : 2) && !rc; q++) {
            st_lm *lm = f32, *q8 = NULL;
            if (q) {
                s = st_lm_quantize(f32, q == 2 ? ST_WT_Q4_0 : ST_WT_Q8_0, &q8);
                if (s) {
                    rc = cli_fail("bench decode", s);
                    break;
                }
                lm = q8;
            }
            result r;
            s = run_one(ctx, lm, (int)reps, &bwp, &r);
            if (s) {
                rc = cli_fail("bench decode", s);
                st_lm_free(q8);
                break;
            }
            /* elements per token: every matrix once (the tied head included) */
            const st_model_config *c = &lm->cfg;
            double elems = (double)c->n_layer * (4.0 * c->n_embd * c->n_embd +
                                                 3.0 * c->n_embd * c->n_ff) +
                           (double)c->vocab_size * c->n_embd;
            double bytes = (double)st_lm_weight_bytes(lm);
            double gflops = r.prefill_tps * 2.0 * elems / 1e9;
            double bound = r.copy_gbs * 1e9 / bytes;
            const char *tn = q == 2 ? "q4_0" : q ? "q8_0" : "f32";
            if (json) {
                json_t *j = json_pack("{s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "model",
                                      k_shapes[m].name, "type", tn, "weight_mb", bytes / 1e6,
                                      "prefill_tokens_per_s", r.prefill_tps, "prefill_gflops",
                                      gflops, "sgemm_gflops", hw.sgemm_gflops,
                                      "decode_tokens_per_s", r.decode_tps,
                                      "bound_tokens_per_s", bound, "copy_gbs", r.copy_gbs,
                                      "vs_bound", r.vs_bound);
                char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
                if (txt) printf("%s\n", txt);
                free(txt);
                json_decref(j);
            } else {
                printf("%-12s %-5s %9.1f %9.0f %8.2f %10.1f %10.1f %8.2f\n", k_shapes[m].name, tn,
                       bytes / 1e6, r.prefill_tps, gflops / hw.sgemm_gflops, r.decode_tps, bound,
                       r.vs_bound);
            }
            st_lm_free(q8);
        }
        st_lm_free(f32);
    }
    if (!json && !rc && !batch_only)
        printf("\nprefill: tokens/s of a 128-token prompt; vs sgemm = its GFLOP/s / the sgemm "
               "peak (goal >= 0.7)\ndecode: batch 1 after 16 tokens; bound = copy GB/s / weight "
               "bytes per token, the copy probe run again after\neach rep's decode (median "
               "shown); vs bound = median over reps of decode / that rep's bound (goal >= "
               "0.8)\n");
    if (!json && !rc && !no_batch)
        printf("\nbatch rows (weight products of one decode step over n sequences)\n"
               "%-12s %-5s %4s %9s %7s %8s %8s %9s %8s\n", "model", "type", "n", "ms/step",
               "x n=1", "GB/s", "GFLOP/s", "sgemm ms", "vs sgemm");
    for (size_t m = 0; m < sizeof k_shapes / sizeof k_shapes[0] && !rc && !no_batch; m++) {
        st_lm *f32 = NULL, *q8 = NULL;
        s = make_model(&k_shapes[m], &f32);
        if (!s) s = run_batch(ctx, k_shapes[m].name, f32, f32, (int)reps, json);
        if (!s && !no_q8) s = st_lm_quantize(f32, ST_WT_Q8_0, &q8);
        /* the products as an engine runs them: packed where it packs */
        if (!s && q8 && !st_engine_default_params().no_pack && st_wmatrix_packs(ctx))
            s = st_lm_pack(q8);
        if (!s && q8) s = run_batch(ctx, k_shapes[m].name, q8, f32, (int)reps, json);
        if (s) rc = cli_fail("bench decode", s);
        st_lm_free(q8);
        st_lm_free(f32);
    }
    if (!json && !rc && !no_batch)
        printf("\nx n=1: the step's time over the n = 1 step's (n sequences for the cost of this "
               "many single steps);\nGB/s: weight bytes / time; vs sgemm: sgemm's time / ours "
               "(> 1: faster than sgemm)\n");
    st_ctx_free(ctx);
    return rc;
}
