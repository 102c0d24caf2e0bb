/*
 * eval.c — `strata eval`: loss and perplexity of a model on a text file,
 * through the inference engine (so f32 and quantized models compare on the
 * same path).
 *
 * The file is tokenized once (BOS first when the tokenizer has one). Windows
 * of n_ctx tokens start every --stride tokens (default n_ctx / 2); each
 * window runs in a fresh KV sequence, in chunks of 64 tokens with logits for
 * every row, and scores only the targets the previous window did not (the
 * Hugging Face perplexity recipe), so every token after the first is scored
 * once with up to n_ctx - stride tokens of context. Loss is the mean
 * negative log-likelihood in nats; perplexity exp(loss). Memory is local
 * and freed on return.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strata/data.h"
#include "strata/infer.h"

#define SUB "eval"
#define CHUNK 64
#define MAX_DATA_BYTES ((size_t)1 << 30)

static void print_help(void) {
    printf(
        "usage: strata eval --model REF --data FILE [--tokenizer PATH] [options]\n"
        "\n"
        "Mean next-token loss (nats) and perplexity of a model on a UTF-8 text file,\n"
        "with sliding windows of the model's context.\n"
        "\n"
        "options:\n"
        "  --model REF        a model directory or a llama2.c checkpoint\n"
        "  --data FILE        the text to score\n"
        "  --tokenizer PATH   tokenizer for models that carry none (llama2.c)\n"
        "  --stride N         tokens between window starts (default: n_ctx / 2)\n"
        "  --limit N          score at most N tokens (default: all)\n"
        "  --threads N        worker threads (default: STRATA_THREADS, else all CPUs)\n"
        "  --json             print {\"loss\", \"perplexity\", \"tokens\", \"seconds\"}\n"
        "  --help             this text\n");
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *tok_path = NULL;
    long stride = 0, limit = 0, threads = 0;
    bool json = false;
    if (cli_wants_help(argc, argv)) {
        print_help();
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(k, "--json")) {
            json = true;
            continue;
        }
        if (!v) return cli_usage_error(SUB, "%s needs a value", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--data")) data = v;
        else if (!strcmp(k, "--tokenizer")) tok_path = v;
        else if (!strcmp(k, "--stride")) ok = cli_parse_long(v, &stride) && stride >= 1;
        else if (!strcmp(k, "--limit")) ok = cli_parse_long(v, &limit) && limit >= 1;
        else if (!strcmp(k, "--threads")) ok = cli_parse_long(v, &threads) && threads >= 1;
        else return cli_usage_error(SUB, "unknown option '%s'", k);
        if (!ok) return cli_usage_error(SUB, "bad value '%s' for %s", v, k);
    }
    if (!model || !data) return cli_usage_error(SUB, "--model and --data are required");

    st_ctx *ctx = NULL;
    st_lm *lm = NULL;
    st_engine *eng = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    char *text = NULL;
    int rc = 1;
    st_status s;
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        s = (expr);                                                                                \
        if (s != ST_OK) goto fail;                                                                 \
    } while (0)
    TRY(cli_open_lm(threads, model, tok_path, true, &ctx, &lm, NULL));
    size_t n_text = 0;
    TRY(st_text_read_file(data, MAX_DATA_BYTES, &text, &n_text));
    size_t n_ids = 0;
    st_encode_opts eo = {.allow_special = false, .add_bos = true};
    TRY(st_tokenizer_encode(lm->tok, text, n_text, &eo, &ids, &n_ids));
    if (n_ids < 2) {
        s = st__fail(ST_ERR_FORMAT, "%s: fewer than 2 tokens to score", data);
        goto fail;
    }
    const int64_t n_ctx = lm->cfg.n_ctx, V = lm->cfg.vocab_size;
    if (stride == 0) stride = n_ctx > 1 ? n_ctx / 2 : 1;
    if (stride > n_ctx - 1) stride = n_ctx > 1 ? n_ctx - 1 : 1;
    int64_t N = (int64_t)n_ids;
    if (limit > 0 && limit + 1 < N) N = limit + 1;
    st_engine_params ep = st_engine_default_params();
    ep.max_batch_tokens = CHUNK;
    TRY(st_engine_new(ctx, lm, &ep, &eng));
    logits = st_malloc((size_t)CHUNK * (size_t)V * sizeof(float));
    if (!logits) {
        s = st__fail(ST_ERR_NOMEM, "no memory for %d rows of logits", CHUNK);
        goto fail;
    }
    double nll = 0.0, t0 = st_time_s();
    int64_t scored_to = 1; /* targets [1, scored_to) are done */
    for (int64_t b = 0; scored_to < N; b += stride) {
        int64_t end = b + n_ctx < N ? b + n_ctx : N;
        st_kv_seq seq = {0};
        for (int64_t c = b; c < end - 1; c += CHUNK) { /* positions c.. predict c+1.. */
            int64_t m = end - 1 - c < CHUNK ? end - 1 - c : CHUNK;
            st_engine_seq es = {.seq = &seq, .tokens = ids + c, .n_tokens = (int)m,
                                .logits_all = logits};
            s = st_engine_forward(eng, &es, 1);
            if (s) {
                st_kv_seq_release(st_engine_kv(eng), &seq);
                goto fail;
            }
            for (int64_t r = 0; r < m; r++) {
                int64_t target = c + r + 1;
                if (target < scored_to) continue;
                const float *lr = logits + r * V;
                float mx = lr[0];
                for (int64_t v = 1; v < V; v++) mx = lr[v] > mx ? lr[v] : mx;
                double sum = 0.0;
                for (int64_t v = 0; v < V; v++) sum += exp((double)(lr[v] - mx));
                nll += (double)mx + log(sum) - (double)lr[ids[target]];
            }
        }
        st_kv_seq_release(st_engine_kv(eng), &seq);
        scored_to = end;
        if (end == N) break;
    }
    const double secs = st_time_s() - t0;
    const int64_t n_scored = N - 1;
    const double loss = nll / (double)n_scored, ppl = exp(loss);
    if (json) {
        json_t *j = json_pack("{s:f, s:f, s:I, s:f}", "loss", loss, "perplexity", ppl, "tokens",
                              (json_int_t)n_scored, "seconds", secs);
        char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (txt) printf("%s\n", txt);
        free(txt);
        json_decref(j);
    } else {
        printf("loss %.6f  perplexity %.4f  tokens %lld  (%.2f s, %.0f tokens/s)\n", loss, ppl,
               (long long)n_scored, secs, secs > 0 ? (double)n_scored / secs : 0.0);
    }
    rc = 0;
    goto done;
fail:
    rc = cli_fail(SUB, s);
done:
    st_engine_free(eng);
    st_lm_free(lm);
    st_ctx_free(ctx);
    st_free(ids);
    st_free(logits);
    st_free(text);
    return rc;
#undef TRY
}
