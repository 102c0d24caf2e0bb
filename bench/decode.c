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
 *            i.e. the fraction of the memory-bandwidth bound reached.
 * Each figure is the median of --reps runs (default 3). The llama.cpp
 * column (node-llama-cpp on the same GGUF) is the formats work's to add.
 * Memory is local and freed on return.
 */
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
    double prefill_tps, decode_tps;
} result;

st_status bench_engine_speed(st_ctx *ctx, const st_lm *lm, const int32_t *ids,
                             const int32_t *next, int reps, double *prefill_tps,
                             double *decode_tps) {
    enum { PREFILL = BENCH_PREFILL_TOKENS, PROMPT = BENCH_PROMPT_TOKENS, DECODE = BENCH_DECODE_TOKENS };
    if (reps < 1 || reps > 16)
        return st__fail(ST_ERR_INVALID_ARG, "bench: reps %d outside [1, 16]", reps);
    st_engine *e = NULL;
    st_engine_params ep = st_engine_default_params();
    ST_TRY(st_engine_new(ctx, lm, &ep, &e));
    float *logits = st_malloc((size_t)lm->cfg.vocab_size * sizeof(float));
    double pre[16], dec[16];
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
    }
    if (!s) {
        *prefill_tps = bench_median(pre, reps);
        *decode_tps = bench_median(dec, reps);
    }
    st_free(logits);
    st_engine_free(e);
    return s;
}

static st_status run_one(st_ctx *ctx, const st_lm *lm, int reps, result *res) {
    const int V = lm->cfg.vocab_size;
    int32_t ids[BENCH_PREFILL_TOKENS], next[BENCH_DECODE_TOKENS];
    for (int i = 0; i < BENCH_PREFILL_TOKENS; i++) ids[i] = (i * 7919) % V;
    for (int t = 0; t < BENCH_DECODE_TOKENS; t++) next[t] = (t * 31) % V;
    return bench_engine_speed(ctx, lm, ids, next, reps, &res->prefill_tps, &res->decode_tps);
}

int bench_decode_main(int argc, char **argv) {
    long reps = 3, threads = 0;
    bool json = false, no_q8 = false;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            printf("usage: strata bench decode [--reps N] [--threads N] [--no-q8] [--json]\n\n"
                   "Prefill and batch-1 decode tokens/s of random llama models shaped like\n"
                   "stories15M and stories110M (f32 and q8_0), against the sgemm peak and\n"
                   "the memory-bandwidth bound (weight bytes per token / copy GB/s), both\n"
                   "measured in the same run. Medians of --reps runs (default 3, at most 16).\n");
            return 0;
        }
        if (!strcmp(k, "--json")) json = true;
        else if (!strcmp(k, "--no-q8")) no_q8 = true;
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
    if (!json)
        printf("machine: sgemm %.1f GFLOP/s, copy %.1f GB/s, %d threads\n\n"
               "%-12s %-5s %9s %9s %8s %10s %10s %8s\n",
               hw.sgemm_gflops, hw.copy_gbs, hw.n_threads, "model", "type", "MB/token",
               "prefill", "vs sgemm", "decode", "bound", "vs bound");
    int rc = 0;
    for (size_t m = 0; m < sizeof k_shapes / sizeof k_shapes[0] && !rc; m++) {
        st_lm *f32 = NULL;
        s = make_model(&k_shapes[m], &f32);
        if (s) {
            rc = cli_fail("bench decode", s);
            break;
        }
        for (int q = 0; q < (no_q8 ? 1 : 2) && !rc; q++) {
            st_lm *lm = f32, *q8 = NULL;
            if (q) {
                s = st_lm_quantize(f32, ST_WT_Q8_0, &q8);
                if (s) {
                    rc = cli_fail("bench decode", s);
                    break;
                }
                lm = q8;
            }
            result r;
            s = run_one(ctx, lm, (int)reps, &r);
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
            double bound = hw.copy_gbs * 1e9 / bytes;
            const char *tn = q ? "q8_0" : "f32";
            if (json) {
                json_t *j = json_pack("{s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "model",
                                      k_shapes[m].name, "type", tn, "weight_mb", bytes / 1e6,
                                      "prefill_tokens_per_s", r.prefill_tps, "prefill_gflops",
                                      gflops, "sgemm_gflops", hw.sgemm_gflops,
                                      "decode_tokens_per_s", r.decode_tps,
                                      "bound_tokens_per_s", bound, "copy_gbs", hw.copy_gbs);
                char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
                if (txt) printf("%s\n", txt);
                free(txt);
                json_decref(j);
            } else {
                printf("%-12s %-5s %9.1f %9.0f %8.2f %10.1f %10.1f %8.2f\n", k_shapes[m].name, tn,
                       bytes / 1e6, r.prefill_tps, gflops / hw.sgemm_gflops, r.decode_tps, bound,
                       r.decode_tps / bound);
            }
            st_lm_free(q8);
        }
        st_lm_free(f32);
    }
    if (!json && !rc)
        printf("\nprefill: tokens/s of a 128-token prompt; vs sgemm = its GFLOP/s / the sgemm "
               "peak (goal >= 0.7)\ndecode: batch 1 after 16 tokens; bound = copy GB/s / weight "
               "bytes per token; vs bound goal >= 0.8\n");
    st_ctx_free(ctx);
    return rc;
}
