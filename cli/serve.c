/*
 * serve.c — `strata serve`: the OpenAI-compatible HTTP server
 * (strata/serve.h) over a model loaded with st_lm_load.
 *
 * SIGTERM and SIGINT ask the server to drain (stop accepting, finish the
 * running sequences within --grace seconds) and exit 0. --port 0 picks a
 * free port; --port-file writes the port chosen (for scripts and tests).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strata/hub.h"
#include "strata/serve.h"

static void usage(FILE *f) {
    st_server_params d = st_server_default_params();
    fprintf(f,
            "usage: strata serve --model REF [options]\n\n"
            "Serves a model over HTTP with OpenAI's API: POST /v1/completions,\n"
            "/v1/chat/completions, /v1/embeddings; GET /v1/models, /health, /ready,\n"
            "/metrics (Prometheus). Point any OpenAI client at http://HOST:PORT/v1.\n"
            "Requests are batched continuously over a paged KV cache.\n\n"
            "options:\n"
            "  --model REF             model directory, .gguf file or llama2.c checkpoint\n"
            "  --tokenizer PATH        tokenizer for models without one (llama2.c tokenizer.bin)\n"
            "  --name ID               model id in /v1/models (default: the file or folder name)\n"
            "  --host H                bind address (default %s)\n"
            "  --port P                port; 0 picks a free one (default %d)\n"
            "  --port-file FILE        write the port listened on to FILE\n"
            "  --api-key KEY           require 'Authorization: Bearer KEY' on /v1/ routes\n"
            "                          (default: $STRATA_API_KEY; none when unset)\n"
            "  --max-running N         sequences in the running batch (default %d)\n"
            "  --max-queue N           waiting sequences before 429 (default %d)\n"
            "  --max-batch-tokens N    tokens per forward pass (default %d)\n"
            "  --prefill-chunk N       prompt tokens per sequence per pass (default %d)\n"
            "  --prefill-while-decoding N\n"
            "                          while sequences decode, prompt tokens per pass: at most N\n"
            "                          or half the decoding sequences, whichever is more; bounds\n"
            "                          how much a joining prompt delays the running streams\n"
            "                          (default %d)\n"
            "  --kv-blocks N           KV cache size in blocks (default: %d-token contexts / 4 per\n"
            "                          running sequence, at least two full contexts)\n"
            "  --block-tokens N        tokens per KV block (default %d)\n"
            "  --no-prefix-cache       do not share prompt blocks between requests\n"
            "  --max-tokens N          largest max_tokens a request may ask (default %d)\n"
            "  --max-body BYTES        largest request body (default %zu)\n"
            "  --timeout S             cancel requests running longer (default %g)\n"
            "  --grace S               on SIGTERM, let running sequences finish this long "
            "(default %g)\n"
            "  --threads N             worker threads (default: STRATA_THREADS, else all CPUs)\n"
            "  -v, --verbose           log requests\n"
            "  --help                  this text\n",
            d.host, d.port, d.max_running, d.max_queue, d.max_batch_tokens, d.prefill_chunk,
            d.prefill_while_decoding, 0, d.block_tokens, d.max_tokens, d.max_body_bytes,
            d.request_timeout_s, d.shutdown_grace_s);
}

static st_server *g_server;

static void on_signal(int sig) {
    (void)sig;
    st_server_stop(g_server);
}

/* The chat template of a model directory's tokenizer_config.json, if any. */
int cmd_serve(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    st_server_params p = st_server_default_params();
    const char *model = NULL, *tokenizer = NULL, *port_file = NULL;
    long threads = 0, v;
    p.api_key = getenv("STRATA_API_KEY");
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--no-prefix-cache")) {
            p.prefix_cache = false;
            continue;
        }
        if (!strcmp(k, "-v") || !strcmp(k, "--verbose")) {
            p.verbose = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("serve", "%s needs a value", k);
        const char *val = argv[++i];
        bool ok = true;
        double d;
        if (!strcmp(k, "--model")) model = val;
        else if (!strcmp(k, "--tokenizer")) tokenizer = val;
        else if (!strcmp(k, "--name")) p.model_name = val;
        else if (!strcmp(k, "--host")) p.host = val;
        else if (!strcmp(k, "--port")) ok = cli_parse_long(val, &v) && v >= 0 && v <= 65535, p.port = (int)v;
        else if (!strcmp(k, "--port-file")) port_file = val;
        else if (!strcmp(k, "--api-key")) p.api_key = val;
        else if (!strcmp(k, "--max-running")) ok = cli_parse_long(val, &v) && v >= 1 && v <= 4096, p.max_running = (int)v;
        else if (!strcmp(k, "--max-queue")) ok = cli_parse_long(val, &v) && v >= 1 && v <= 1 << 20, p.max_queue = (int)v;
        else if (!strcmp(k, "--max-batch-tokens")) ok = cli_parse_long(val, &v) && v >= 1 && v <= 1 << 20, p.max_batch_tokens = (int)v;
        else if (!strcmp(k, "--prefill-chunk")) ok = cli_parse_long(val, &v) && v >= 1 && v <= 1 << 20, p.prefill_chunk = (int)v;
        else if (!strcmp(k, "--prefill-while-decoding")) ok = cli_parse_long(val, &v) && v >= 1 && v <= 1 << 20, p.prefill_while_decoding = (int)v;
        else if (!strcmp(k, "--kv-blocks")) ok = cli_parse_long(val, &v) && v >= 1, p.kv_blocks = v;
        else if (!strcmp(k, "--block-tokens")) ok = cli_parse_long(val, &v) && v >= 1 && v <= 4096, p.block_tokens = (int)v;
        else if (!strcmp(k, "--max-tokens")) ok = cli_parse_long(val, &v) && v >= 1 && v <= 1 << 24, p.max_tokens = (int)v;
        else if (!strcmp(k, "--max-body")) ok = cli_parse_long(val, &v) && v >= 64, p.max_body_bytes = (size_t)v;
        else if (!strcmp(k, "--timeout")) ok = cli_parse_double(val, &d) && d > 0, p.request_timeout_s = d;
        else if (!strcmp(k, "--grace")) ok = cli_parse_double(val, &d) && d >= 0, p.shutdown_grace_s = d;
        else if (!strcmp(k, "--threads")) ok = cli_parse_long(val, &threads) && threads >= 1;
        else return cli_usage_error("serve", "unknown option %s", k);
        if (!ok) return cli_usage_error("serve", "bad value for %s: %s", k, val);
    }
    if (!model) return cli_usage_error("serve", "--model is required");
    if (p.max_batch_tokens < p.max_running) p.max_batch_tokens = p.max_running;

    st_ctx *ctx = NULL;
    st_lm *lm = NULL;
    char *model_path = NULL;
    st_status s = cli_open_lm(threads, model, tokenizer, false, &ctx, &lm, &model_path);
    if (s != ST_OK) return cli_fail("serve", s);
    char *tmpl = st_chat_template_read(model_path); /* the resolved directory: refs too */
    st_free(model_path);
    p.chat_template = tmpl;
    char name[256];
    if (!p.model_name) { /* the reference as given, without its folders */
        snprintf(name, sizeof name, "%s", model);
        size_t n = strlen(name);
        while (n > 1 && name[n - 1] == '/') name[--n] = 0;
        const char *b = strrchr(name, '/');
        p.model_name = b && b[1] ? b + 1 : name;
    }
    st_server *srv = NULL;
    s = st_server_new(ctx, lm, NULL, &p, &srv);
    if (s == ST_OK) {
        g_server = srv;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (port_file) {
            char buf[16];
            int n = snprintf(buf, sizeof buf, "%d\n", st_server_port(srv));
            s = st_file_write_atomic(port_file, buf, (size_t)n);
        }
    }
    if (s == ST_OK) {
        fprintf(stderr,
                "strata serve: %s (%s, %d layers, context %d) on http://%s:%d/v1%s\n",
                p.model_name ? p.model_name : model,
                lm->cfg.arch == ST_ARCH_LLAMA ? "llama" : "gpt2", lm->cfg.n_layer,
                lm->cfg.n_ctx, p.host, st_server_port(srv),
                p.api_key && p.api_key[0] ? " (API key required)" : "");
        s = st_server_run(srv);
        fprintf(stderr, "strata serve: stopped\n");
    }
    int rc = s == ST_OK ? 0 : cli_fail("serve", s);
    g_server = NULL;
    st_server_free(srv);
    st_free(tmpl);
    st_lm_free(lm);
    st_ctx_free(ctx);
    return rc;
}
