/*
 * sample.c — `strata sample`: text from a trained model directory.
 *
 * Loads the model directory (strata/hub.h), encodes the prompt and, for each
 * new token, runs the model forward with grad mode off over the last n_ctx
 * tokens (no KV cache yet: the whole window is recomputed), takes the last
 * position's logits, applies temperature and top-k, samples with a seeded
 * splitmix64 stream and writes the token's bytes to stdout at once.
 * Temperature 0 is greedy (argmax). Each step's tensors die at st_ctx_reset.
 * Single-threaded driver; the model's ops use the context's pool.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strata/hub.h"
#include "strata/registry.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata sample --model DIR|REF [options]\n\n"
            "Generates text from a model directory (as written by strata train),\n"
            "streaming it to stdout.\n\n"
            "options:\n"
            "  --model DIR        model directory (config.json, model.safetensors, tokenizer.json)\n"
            "  --prompt TEXT      text to continue (default: a newline)\n"
            "  -n N               tokens to generate (default 200)\n"
            "  --temperature T    softmax temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K          sample among the K most likely tokens; 0 = all (default 200)\n"
            "  --seed S           sampling seed (default 1337)\n"
            "  --threads N        worker threads (default: STRATA_THREADS, else all CPUs)\n"
            "  --json             print {\"prompt\", \"text\", \"n_tokens\", \"tokens_per_s\"}\n"
            "                     instead of streaming\n"
            "  --help             this text\n");
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = (*s += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Picks a token from logits[V] (modified in place). */
static int32_t pick(float *logits, int V, double temperature, int top_k, uint64_t *rng,
                    float *scratch) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0.0) return best;
    if (top_k > 0 && top_k < V) {
        /* k-th largest by partial selection on a copy. */
        memcpy(scratch, logits, sizeof(float) * (size_t)V);
        float kth = 0.0f;
        for (int k = 0; k < top_k; k++) {
            int m = -1;
            for (int i = 0; i < V; i++)
                if (scratch[i] != -INFINITY && (m < 0 || scratch[i] > scratch[m])) m = i;
            kth = scratch[m];
            scratch[m] = -INFINITY;
        }
        for (int i = 0; i < V; i++)
            if (logits[i] < kth) logits[i] = -INFINITY;
    }
    double maxv = logits[best], sum = 0.0;
    for (int i = 0; i < V; i++) {
        double p = logits[i] == -INFINITY ? 0.0 : exp(((double)logits[i] - maxv) / temperature);
        scratch[i] = (float)p;
        sum += p;
    }
    double r = (double)(rng_next(rng) >> 11) * 0x1.0p-53 * sum, acc = 0.0;
    for (int i = 0; i < V; i++) {
        acc += scratch[i];
        if (r < acc && scratch[i] > 0) return i;
    }
    return best;
}

int cmd_sample(int argc, char **argv) {
    const char *model = NULL, *prompt = "\n";
    long n = 200, top_k = 200, seed = 1337, threads = 0;
    double temperature = 0.8;
    bool json = false;
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(k, "--json")) {
            json = true;
            continue;
        }
        if (!v) return cli_usage_error("sample", "%s needs a value", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--prompt")) prompt = v;
        else if (!strcmp(k, "-n")) ok = cli_parse_long(v, &n) && n >= 0;
        else if (!strcmp(k, "--temperature")) ok = cli_parse_double(v, &temperature) && temperature >= 0;
        else if (!strcmp(k, "--top-k")) ok = cli_parse_long(v, &top_k) && top_k >= 0;
        else if (!strcmp(k, "--seed")) ok = cli_parse_long(v, &seed) && seed >= 0;
        else if (!strcmp(k, "--threads")) ok = cli_parse_long(v, &threads) && threads >= 1;
        else return cli_usage_error("sample", "unknown option '%s'", k);
        if (!ok) return cli_usage_error("sample", "bad value '%s' for %s", v, k);
    }
    if (!model) return cli_usage_error("sample", "--model DIR is required");

    st_ctx *ctx = NULL;
    st_model *m = NULL;
    st_tokenizer *tok = NULL;
    int32_t *ids = NULL, *prompt_ids = NULL;
    float *logits = NULL, *scratch = NULL;
    char *out_text = NULL, *model_path = NULL;
    size_t out_n = 0, out_cap = 0;
    int rc = 1;
    st_status s;
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        s = (expr);                                                                                \
        if (s != ST_OK) goto fail;                                                                 \
    } while (0)
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = (int)threads;
    TRY(st_ctx_new(&cp, &ctx));
    TRY(st_registry_resolve(model, &model_path)); /* a path, or NAME[:tag|@rev] */
    TRY(st_modeldir_load(ctx, model_path, &m, &tok));
    const st_model_config *mc = st_model_get_config(m);
    int V = mc->vocab_size, n_ctx = mc->n_ctx;
    size_t n_prompt = 0;
    st_encode_opts eo = {.allow_special = false, .add_bos = true};
    TRY(st_tokenizer_encode(tok, prompt, strlen(prompt), &eo, &prompt_ids, &n_prompt));
    if (n_prompt == 0) {
        s = st__fail(ST_ERR_INVALID_ARG, "the prompt encodes to no tokens");
        goto fail;
    }
    size_t total = n_prompt + (size_t)n;
    ids = st_malloc(sizeof(int32_t) * total);
    logits = st_malloc(sizeof(float) * (size_t)V);
    scratch = st_malloc(sizeof(float) * (size_t)V);
    if (!ids || !logits || !scratch) {
        s = st__fail(ST_ERR_NOMEM, "no memory");
        goto fail;
    }
    memcpy(ids, prompt_ids, sizeof(int32_t) * n_prompt);
    st_ctx_set_grad_enabled(ctx, false);
    st_model_set_training(m, false, 0);
    uint64_t rng = (uint64_t)seed;
    if (!json) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    double t0 = st_time_s();
    size_t len = n_prompt;
    for (long i = 0; i < n; i++) {
        st_ctx_reset(ctx);
        int64_t T = (int64_t)len < n_ctx ? (int64_t)len : n_ctx;
        const int64_t shape[2] = {1, T};
        st_tensor *x, *y, *last;
        TRY(st_from_data(ctx, ST_I32, 2, shape, ids + len - T, &x));
        TRY(st_model_forward(m, x, &y));
        TRY(st_slice(ctx, y, 1, T - 1, T, 1, &last));
        TRY(st_tensor_to_f32(last, logits, V));
        int32_t id = pick(logits, V, temperature, (int)top_k, &rng, scratch);
        ids[len++] = id;
        if (id == st_tokenizer_eos_id(tok)) break;
        size_t pn = 0;
        const char *piece = st_tokenizer_piece(tok, id, &pn);
        if (!piece) continue;
        if (json) {
            if (out_n + pn + 1 > out_cap) {
                out_cap = (out_n + pn + 1) * 2;
                char *q = st_realloc(out_text, out_cap);
                if (!q) {
                    s = st__fail(ST_ERR_NOMEM, "no memory");
                    goto fail;
                }
                out_text = q;
            }
            memcpy(out_text + out_n, piece, pn);
            out_n += pn;
        } else {
            fwrite(piece, 1, pn, stdout);
            fflush(stdout);
        }
    }
    double dt = st_time_s() - t0;
    size_t made = len - n_prompt;
    if (json) {
        json_t *j = json_pack("{s:s, s:s%, s:I, s:f}", "prompt", prompt, "text",
                              out_text ? out_text : "", out_n, "n_tokens", (json_int_t)made,
                              "tokens_per_s", dt > 0 ? (double)made / dt : 0.0);
        char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (txt) printf("%s\n", txt);
        free(txt);
        json_decref(j);
    } else {
        printf("\n");
        fflush(stdout);
        fprintf(stderr, "strata sample: %zu tokens in %.2f s (%.1f tokens/s)\n", made, dt,
                dt > 0 ? (double)made / dt : 0.0);
    }
    rc = 0;
    goto done;
fail:
    rc = cli_fail("sample", s);
done:
    st_model_free(m);
    st_tokenizer_free(tok);
    st_ctx_free(ctx);
    st_free(ids);
    st_free(prompt_ids);
    st_free(logits);
    st_free(scratch);
    st_free(out_text);
    st_free(model_path);
    return rc;
#undef TRY
}
