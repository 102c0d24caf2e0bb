/*
 * generate.c — `strata generate`: text from any model the inference engine
 * loads (strata/infer.h: a model directory, a llama2.c checkpoint, GGUF
 * once supported), streamed to stdout as it is sampled.
 *
 * Output follows llama2.c's run.c so that its golden outputs compare byte
 * for byte: the prompt's tokens decoded (no BOS, no leading space), then
 * each token's text, then one newline. -n is run.c's -n: the number of
 * positions, prompt included (BOS counts); --max-tokens counts new tokens
 * instead. Prompt and decode rates go to stderr at the end; --json prints
 * one object instead of streaming. All memory is local and freed on return.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strata/infer.h"

#define SUB "generate"
#define MAX_STOP 8

static void print_help(void) {
    printf(
        "usage: strata generate --model REF [--tokenizer PATH] [--prompt TEXT] [options]\n"
        "\n"
        "Generates text with the inference engine (KV cache, batched prefill) and\n"
        "streams it to stdout; prompt and decode tokens/s go to stderr at the end.\n"
        "\n"
        "options:\n"
        "  --model REF            a model directory (config.json + model.safetensors\n"
        "                         [+ tokenizer.json]) or a llama2.c checkpoint (.bin)\n"
        "  --tokenizer PATH       tokenizer for models that carry none (llama2.c's\n"
        "                         tokenizer.bin), or a name such as tok512\n"
        "  --prompt TEXT          text to continue (default: empty, BOS only)\n"
        "  -n N                   positions to run, prompt included, as llama2.c's -n\n"
        "                         (default 256; capped by the model's context)\n"
        "  --max-tokens N         new tokens to generate instead of -n\n"
        "  --temperature T        0 = greedy (default 1.0)\n"
        "  --top-k K              keep the K most likely tokens; 0 = off (default 0)\n"
        "  --top-p P              nucleus sampling mass in (0, 1]; 1 = off (default 0.9)\n"
        "  --min-p P              drop tokens below P x the best one's probability;\n"
        "                         0 = off (default 0)\n"
        "  --repeat-penalty R     CTRL repetition penalty; 1 = off (default 1)\n"
        "  --frequency-penalty F  OpenAI frequency penalty (default 0)\n"
        "  --presence-penalty F   OpenAI presence penalty (default 0)\n"
        "  --stop TEXT            stop before this text (repeatable, up to 8)\n"
        "  --seed S               sampling seed (default 0: taken from the clock)\n"
        "  --no-bos               do not put BOS before the prompt\n"
        "  --threads N            worker threads (default: STRATA_THREADS, else all CPUs)\n"
        "  --json                 print {\"prompt\", \"text\", \"prompt_tokens\",\n"
        "                         \"generated_tokens\", \"finish_reason\", \"prefill_s\",\n"
        "                         \"decode_s\", \"prompt_tokens_per_s\",\n"
        "                         \"decode_tokens_per_s\"} instead of streaming\n"
        "  --help                 this text\n"
        "\n"
        "example (llama2.c's stories260K, greedy):\n"
        "  strata generate --model stories260K.bin --tokenizer tok512.bin \\\n"
        "      --temperature 0 -n 200 --prompt \"Once upon a time\"\n");
}

typedef struct out_state {
    bool json;
    char *buf;
    size_t n, cap;
    bool oom;
} out_state;

static int on_token(void *user, int32_t id, const char *text, size_t n, const st_token_logprob *c,
                    const st_token_logprob *top, int n_top) {
    (void)id;
    (void)c;
    (void)top;
    (void)n_top;
    out_state *o = user;
    if (!o->json) {
        if (n) fwrite(text, 1, n, stdout);
        fflush(stdout);
        return 0;
    }
    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < o->n + n + 1) cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->oom = true;
            return 1;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->n, text, n);
    o->n += n;
    o->buf[o->n] = 0;
    return 0;
}

static const char *finish_name(st_finish_reason f) {
    switch (f) {
    case ST_FINISH_EOS: return "eos";
    case ST_FINISH_STOP: return "stop";
    case ST_FINISH_CANCEL: return "cancel";
    default: return "length";
    }
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL, *prompt = "";
    const char *stops[MAX_STOP];
    int n_stop = 0;
    long steps = 256, max_tokens = -1, top_k = 0, seed = 0, threads = 0;
    double temperature = 1.0, top_p = 0.9, min_p = 0.0, rep = 1.0, freq = 0.0, pres = 0.0;
    bool json = false, bos = true;
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
        if (!strcmp(k, "--no-bos")) {
            bos = false;
            continue;
        }
        if (!v) return cli_usage_error(SUB, "%s needs a value", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--tokenizer")) tok_path = v;
        else if (!strcmp(k, "--prompt")) prompt = v;
        else if (!strcmp(k, "-n") || !strcmp(k, "--steps")) ok = cli_parse_long(v, &steps) && steps >= 0;
        else if (!strcmp(k, "--max-tokens")) ok = cli_parse_long(v, &max_tokens) && max_tokens >= 0;
        else if (!strcmp(k, "--temperature")) ok = cli_parse_double(v, &temperature) && temperature >= 0;
        else if (!strcmp(k, "--top-k")) ok = cli_parse_long(v, &top_k) && top_k >= 0 && top_k < (1L << 30);
        else if (!strcmp(k, "--top-p")) ok = cli_parse_double(v, &top_p) && top_p > 0 && top_p <= 1;
        else if (!strcmp(k, "--min-p")) ok = cli_parse_double(v, &min_p) && min_p >= 0 && min_p <= 1;
        else if (!strcmp(k, "--repeat-penalty")) ok = cli_parse_double(v, &rep) && rep > 0;
        else if (!strcmp(k, "--frequency-penalty")) ok = cli_parse_double(v, &freq);
        else if (!strcmp(k, "--presence-penalty")) ok = cli_parse_double(v, &pres);
        else if (!strcmp(k, "--seed")) ok = cli_parse_long(v, &seed) && seed >= 0;
        else if (!strcmp(k, "--threads")) ok = cli_parse_long(v, &threads) && threads >= 1;
        else if (!strcmp(k, "--stop")) {
            if (n_stop == MAX_STOP) return cli_usage_error(SUB, "at most %d --stop strings", MAX_STOP);
            stops[n_stop++] = v;
        } else return cli_usage_error(SUB, "unknown option '%s'", k);
        if (!ok) return cli_usage_error(SUB, "bad value '%s' for %s", v, k);
    }
    if (!model) return cli_usage_error(SUB, "--model REF is required");

    st_ctx *ctx = NULL;
    st_lm *lm = NULL;
    st_engine *eng = NULL;
    int32_t *ids = NULL;
    char *ptext = NULL;
    out_state o = {.json = json};
    int rc = 1;
    st_status s;
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        s = (expr);                                                                                \
        if (s != ST_OK) goto fail;                                                                 \
    } while (0)
    TRY(cli_open_lm(threads, model, tok_path, true, &ctx, &lm, NULL));
    size_t n_ids = 0;
    st_encode_opts eo = {.allow_special = false, .add_bos = bos};
    TRY(st_tokenizer_encode(lm->tok, prompt, strlen(prompt), &eo, &ids, &n_ids));
    if (n_ids == 0) {
        s = st__fail(ST_ERR_INVALID_ARG, "the prompt encodes to no tokens (try without --no-bos)");
        goto fail;
    }
    const int64_t n_ctx = lm->cfg.n_ctx;
    if ((int64_t)n_ids > n_ctx) {
        s = st__fail(ST_ERR_BOUNDS, "the prompt has %zu tokens, the model's context is %lld",
                     n_ids, (long long)n_ctx);
        goto fail;
    }
    st_engine_params ep = st_engine_default_params();
    TRY(st_engine_new(ctx, lm, &ep, &eng));
    st_generate_params gp = st_generate_default_params();
    gp.sampler.temperature = (float)temperature;
    gp.sampler.top_k = (int)top_k;
    gp.sampler.top_p = (float)top_p;
    gp.sampler.min_p = (float)min_p;
    gp.sampler.repetition_penalty = (float)rep;
    gp.sampler.frequency_penalty = (float)freq;
    gp.sampler.presence_penalty = (float)pres;
    gp.sampler.seed = seed ? (uint64_t)seed : (uint64_t)(st_time_s() * 1e9);
    gp.stop = stops;
    gp.n_stop = n_stop;
    if (max_tokens >= 0) {
        gp.max_tokens = max_tokens;
    } else { /* run.c: positions 0 .. steps-1, the prompt's included */
        int64_t st_ = steps < n_ctx ? steps : n_ctx;
        gp.max_tokens = st_ - (int64_t)n_ids + 1;
    }
    /* the prompt as run.c prints it: its tokens decoded, BOS and leading space dropped */
    size_t pn = 0;
    TRY(st_tokenizer_decode(lm->tok, ids, n_ids, &ptext, &pn));
    if (!json) {
        fwrite(ptext, 1, pn, stdout);
        fflush(stdout);
    }
    st_generate_stats gs = {0};
    if (gp.max_tokens > 0)
        TRY(st_generate(eng, lm->tok, ids, (int64_t)n_ids, &gp, on_token, &o, &gs));
    if (o.oom) {
        s = st__fail(ST_ERR_NOMEM, "no memory for the output text");
        goto fail;
    }
    const double ptps = gs.prefill_s > 0 ? (double)gs.n_prompt / gs.prefill_s : 0.0;
    const double dtps = gs.decode_s > 0 ? (double)gs.n_generated / gs.decode_s : 0.0;
    if (json) {
        json_t *j = json_pack("{s:s, s:s%, s:I, s:I, s:s, s:f, s:f, s:f, s:f}", "prompt", ptext,
                              "text", o.buf ? o.buf : "", o.n, "prompt_tokens",
                              (json_int_t)n_ids, "generated_tokens", (json_int_t)gs.n_generated,
                              "finish_reason", finish_name(gs.finish), "prefill_s", gs.prefill_s,
                              "decode_s", gs.decode_s, "prompt_tokens_per_s", ptps,
                              "decode_tokens_per_s", dtps);
        char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (txt) printf("%s\n", txt);
        free(txt);
        json_decref(j);
    } else {
        printf("\n");
        fflush(stdout);
        fprintf(stderr,
                "strata generate: prompt %lld tokens in %.3f s (%.1f tokens/s), decode %lld "
                "tokens in %.3f s (%.1f tokens/s), %s\n",
                (long long)gs.n_prompt, gs.prefill_s, ptps, (long long)gs.n_generated,
                gs.decode_s, dtps, finish_name(gs.finish));
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
    st_free(ptext);
    free(o.buf);
    return rc;
#undef TRY
}
