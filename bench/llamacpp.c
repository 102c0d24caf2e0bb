/*
 * llamacpp.c — `strata bench llamacpp`: Strata's engine against llama.cpp
 * (node-llama-cpp's prebuilt binaries, bench/js/llamacpp_run.mjs) on the
 * same GGUF files, side by side in one run.
 *
 * Models: random-weight llama models shaped like llama2.c's stories15M
 * (dim 288, 6 layers, 6 heads, hidden 768, vocab 32000) and stories110M
 * (dim 768, 12 layers, 12 heads, hidden 2048), with a 32000-piece
 * SentencePiece vocabulary so llama.cpp accepts them, written by
 * st_lm_save_gguf in f32 and q8_0 to a temporary folder. Strata loads each
 * file back with st_lm_load_gguf (so both read the same bytes), then per
 * model: prefill of a 128-token prompt and batch-1 decode of 64 tokens after
 * a 16-token prompt, tokens/s, median of --reps runs. llama.cpp runs the
 * same shapes through node (greedy sampling included; its timing starts
 * after the model is loaded). Needs `npm ci` in bench/js; without node or
 * the package the llama.cpp column says why. Memory is local.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "strata/hw.h"
#include "strata/infer.h"

typedef struct shape {
    const char *name;
    int dim, n_layer, n_head, hidden;
} shape;

static const shape k_shapes[] = {
    {"stories15M", 288, 6, 6, 768},
    {"stories110M", 768, 12, 12, 2048},
};

enum { PREFILL = BENCH_PREFILL_TOKENS, PROMPT = BENCH_PROMPT_TOKENS, DECODE = BENCH_DECODE_TOKENS,
       VOCAB = 32000 };

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

static st_status rmat(st_lm *lm, st_wmatrix *w, int64_t rows, int64_t cols, uint64_t *s) {
    float *p = st_lm_alloc(lm, (size_t)(rows * cols) * sizeof(float));
    if (!p) return st__fail(ST_ERR_NOMEM, "bench llamacpp: no memory");
    for (int64_t i = 0; i < rows * cols; i++)
        p[i] = ((float)(lcg(s) & 0xffff) / 65536.0f - 0.5f) * 0.1f;
    *w = (st_wmatrix){ST_WT_F32, rows, cols, p, (size_t)cols * sizeof(float), NULL};
    return ST_OK;
}

static st_status ones(st_lm *lm, int64_t n, const float **out) {
    float *p = st_lm_alloc(lm, (size_t)n * sizeof(float));
    if (!p) return st__fail(ST_ERR_NOMEM, "bench llamacpp: no memory");
    for (int64_t i = 0; i < n; i++) p[i] = 1.0f;
    *out = p;
    return ST_OK;
}

static st_status sp_vocab(st_tokenizer **out) {
    char **p = st_calloc(VOCAB, sizeof *p);
    size_t *len = st_calloc(VOCAB, sizeof *len);
    float *sc = st_calloc(VOCAB, sizeof *sc);
    st_status s = p && len && sc ? ST_OK : st__fail(ST_ERR_NOMEM, "bench llamacpp: no memory");
    for (int i = 0; !s && i < VOCAB; i++) {
        p[i] = st_malloc(16);
        if (!p[i]) {
            s = st__fail(ST_ERR_NOMEM, "bench llamacpp: no memory");
            break;
        }
        if (i == 0) strcpy(p[i], "<unk>");
        else if (i == 1) strcpy(p[i], "<s>");
        else if (i == 2) strcpy(p[i], "</s>");
        else if (i < 259) snprintf(p[i], 16, "<0x%02X>", i - 3);
        else snprintf(p[i], 16, "\xe2\x96\x81w%d", i);
        len[i] = strlen(p[i]);
        sc[i] = -(float)i;
    }
    if (!s) s = st_tokenizer_from_sp_pieces(VOCAB, (const char *const *)p, len, sc, 1, 2,
                                            "bench vocabulary", out);
    for (int i = 0; p && i < VOCAB; i++) st_free(p[i]);
    st_free(p);
    st_free(len);
    st_free(sc);
    return s;
}

static st_status make_model(const shape *sh, st_lm **out) {
    st_model_config c = st_model_config_default(ST_ARCH_LLAMA);
    c.n_embd = sh->dim;
    c.n_layer = sh->n_layer;
    c.n_head = c.n_kv_head = sh->n_head;
    c.n_ff = sh->hidden;
    c.vocab_size = VOCAB;
    c.n_ctx = 256;
    c.tie_embeddings = true;
    st_lm *lm = NULL;
    ST_TRY(st_lm_new_empty(&c, &lm));
    lm->rope = ST_ROPE_INTERLEAVED;
    uint64_t s = 42;
    const int64_t E = c.n_embd, F = c.n_ff;
    st_status r = rmat(lm, &lm->tok_embd, c.vocab_size, E, &s);
    lm->lm_head = lm->tok_embd;
    if (!r) r = ones(lm, E, &lm->lnf_w);
    for (int l = 0; !r && l < c.n_layer; l++) {
        st_lm_layer *L = &lm->layers[l];
        if (!r) r = ones(lm, E, &L->ln1_w);
        if (!r) r = ones(lm, E, &L->ln2_w);
        if (!r) r = rmat(lm, &L->wq, E, E, &s);
        if (!r) r = rmat(lm, &L->wk, E, E, &s);
        if (!r) r = rmat(lm, &L->wv, E, E, &s);
        if (!r) r = rmat(lm, &L->wo, E, E, &s);
        if (!r) r = rmat(lm, &L->w_gate, F, E, &s);
        if (!r) r = rmat(lm, &L->w_up, F, E, &s);
        if (!r) r = rmat(lm, &L->w_down, E, F, &s);
    }
    if (!r) r = sp_vocab(&lm->tok);
    if (!r) r = st_lm_validate(lm, sh->name);
    if (r) {
        st_lm_free(lm);
        return r;
    }
    *out = lm;
    return ST_OK;
}

static st_status run_strata(st_ctx *ctx, const st_lm *lm, int reps, double *pre_tps,
                            double *dec_tps) {
    /* ids the tok512-style vocabulary of the GGUF files spells: BOS, then words */
    int32_t ids[PREFILL], next[DECODE];
    for (int i = 0; i < PREFILL; i++) ids[i] = i == 0 ? 1 : 3 + (i * 7919) % 200;
    for (int t = 0; t < DECODE; t++) next[t] = 3 + (t * 31) % 200;
    return bench_engine_speed(ctx, lm, ids, next, reps, NULL, pre_tps, dec_tps, NULL, NULL);
}

/* one node run; returns tokens/s of the phase, or 0 with why filled */
static double node_run(const char *js, const char *gguf, int n_new, int prefill, int threads,
                       bool want_prefill, char *why, size_t why_n) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "node '%s' '%s' '' %d %d %d 2>&1", js, gguf, n_new, threads, prefill);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, why_n, "cannot start node");
        return 0;
    }
    char line[65536] = {0}, last[65536] = {0};
    while (fgets(line, sizeof line, p))
        if (line[0] == '{') snprintf(last, sizeof last, "%s", line);
        else if (!why[0]) snprintf(why, why_n, "%.*s", (int)strcspn(line, "\n"), line);
    const int rc = pclose(p);
    double pt = 0, ps = 0, dt = 0, ds = 0;
    const char *a = strstr(last, "\"prefill_tokens\":"), *b = strstr(last, "\"prefill_s\":"),
               *c = strstr(last, "\"decode_tokens\":"), *d = strstr(last, "\"decode_s\":");
    if (rc != 0 || !a || !b || !c || !d) {
        if (!why[0]) snprintf(why, why_n, "node exited %d", rc);
        return 0;
    }
    pt = atof(a + 17), ps = atof(b + 12), dt = atof(c + 16), ds = atof(d + 11);
    if (want_prefill) return ps > 0 ? pt / ps : 0;
    return ds > 0 ? dt / ds : 0;
}

int bench_llamacpp_main(int argc, char **argv) {
    long reps = 3, threads = 2;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            printf("usage: strata bench llamacpp [--reps N] [--threads N] [--json]\n"
                   "\n"
                   "Prefill (%d-token prompt) and batch-1 decode (%d tokens after %d) tokens/s of\n"
                   "random llama models shaped like stories15M and stories110M, f32 and q8_0,\n"
                   "written as GGUF by Strata and run by Strata and by llama.cpp (node-llama-cpp,\n"
                   "bench/js/llamacpp_run.mjs; run `npm ci` in bench/js first) on the same file.\n"
                   "\n"
                   "  --reps N      runs per figure, median reported (default 3, at most 15)\n"
                   "  --threads N   threads for both (default 2)\n"
                   "  --json        JSON Lines instead of the table\n",
                   PREFILL, DECODE, PROMPT);
            return 0;
        } else if (!strcmp(k, "--reps") && v) {
            if (!cli_parse_long(v, &reps) || reps < 1 || reps > 15)
                return cli_usage_error("bench llamacpp", "--reps must be 1..15");
            i++;
        } else if (!strcmp(k, "--threads") && v) {
            if (!cli_parse_long(v, &threads) || threads < 1 || threads > 256)
                return cli_usage_error("bench llamacpp", "--threads must be 1..256");
            i++;
        } else if (!strcmp(k, "--json")) {
            json = true;
        } else {
            return cli_usage_error("bench llamacpp", "unknown argument '%s'", k);
        }
    }
    char js[1024], dir[] = "/tmp/strata_bench_llamacpp_XXXXXX";
    const char *src = getenv("STRATA_SOURCE_DIR");
    snprintf(js, sizeof js, "%s/bench/js/llamacpp_run.mjs", src ? src : ".");
    if (!mkdtemp(dir)) return cli_fail("bench llamacpp", st__fail(ST_ERR_IO, "mkdtemp failed"));
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = (int)threads;
    st_ctx *ctx = NULL;
    st_status s = st_ctx_new(&cp, &ctx);
    if (s) return cli_fail("bench llamacpp", s);
    if (!json)
        printf("%-12s %-5s %-8s %12s %12s %8s\n", "model", "type", "phase", "strata tok/s",
               "llama.cpp", "ratio");
    for (size_t m = 0; !s && m < sizeof k_shapes / sizeof k_shapes[0]; m++) {
        st_lm *f32 = NULL;
        s = make_model(&k_shapes[m], &f32);
        for (int q = 0; !s && q < 2; q++) {
            st_lm *w = NULL, *loaded = NULL;
            char path[256];
            snprintf(path, sizeof path, "%s/%s-%s.gguf", dir, k_shapes[m].name, q ? "q8_0" : "f32");
            s = q ? st_lm_quantize(f32, ST_WT_Q8_0, &w) : ST_OK;
            if (!s) s = st_lm_save_gguf(q ? w : f32, path);
            st_lm_free(w);
            if (!s) s = st_lm_load_gguf(path, &loaded);
            double spre = 0, sdec = 0;
            if (!s) s = run_strata(ctx, loaded, (int)reps, &spre, &sdec);
            st_lm_free(loaded);
            if (s) break;
            double lpre[16], ldec[16];
            char why[256] = {0};
            for (int r = 0; r < reps; r++) {
                lpre[r] = node_run(js, path, 2, PREFILL, (int)threads, true, why, sizeof why);
                ldec[r] = node_run(js, path, DECODE + 1, 0, (int)threads, false, why, sizeof why);
            }
            const double lp = bench_median(lpre, (int)reps), ld = bench_median(ldec, (int)reps);
            const char *tn = q ? "q8_0" : "f32";
            const double st_v[2] = {spre, sdec}, ll_v[2] = {lp, ld};
            const char *ph[2] = {"prefill", "decode"};
            for (int k = 0; k < 2; k++) {
                if (json)
                    printf("{\"bench\": \"llamacpp\", \"model\": \"%s\", \"type\": \"%s\", \"phase\": "
                           "\"%s\", \"strata_tps\": %.2f, \"llamacpp_tps\": %.2f, \"threads\": %ld}\n",
                           k_shapes[m].name, tn, ph[k], st_v[k], ll_v[k], threads);
                else if (ll_v[k] > 0)
                    printf("%-12s %-5s %-8s %12.1f %12.1f %7.2fx\n", k_shapes[m].name, tn, ph[k],
                           st_v[k], ll_v[k], st_v[k] / ll_v[k]);
                else
                    printf("%-12s %-5s %-8s %12.1f %12s   (llama.cpp: %s)\n", k_shapes[m].name, tn,
                           ph[k], st_v[k], "-", why[0] ? why : "no result");
            }
            fflush(stdout);
            unlink(path);
        }
        st_lm_free(f32);
    }
    st_ctx_free(ctx);
    rmdir(dir);
    if (s) return cli_fail("bench llamacpp", s);
    if (!json) printf("goal: ratio >= 1.0 (issue 5); median of %ld runs, %ld threads each\n", reps, threads);
    return 0;
}
