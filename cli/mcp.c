/*
 * mcp.c — `strata mcp`: the Model Context Protocol server on stdio
 * (strata/app.h st_mcp; protocol, tools and resources in src/app/mcp.c and
 * docs/L8-chat-mcp.md).
 *
 * An MCP host (Claude Desktop, an editor, the npm SDK's StdioClientTransport)
 * starts this command and talks JSON-RPC over its stdin and stdout, one
 * message per line. stdout carries nothing but the protocol: the banner,
 * warnings and logs go to stderr. The model (--model) is loaded once at
 * start; the RAG indexes are opened on first use. Exits 0 when the client
 * closes stdin.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strata/app.h"

#define SUB "mcp"

static void print_help(void) {
    st_mcp_params d = st_mcp_default_params();
    printf(
        "usage: strata mcp [--index NAME] [--model REF [--tokenizer PATH]] [options]\n"
        "\n"
        "A Model Context Protocol server over stdio (JSON-RPC 2.0, one message per\n"
        "line; protocol versions 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05).\n"
        "MCP hosts start it as a subprocess; stdout is the protocol, logs go to stderr.\n"
        "\n"
        "tools:\n"
        "  rag_search {query, k?, mode?, index?}   passages of the indexed documents\n"
        "  rag_ask {question, k?, max_tokens?, index?}   an answer citing them (--model)\n"
        "  generate {prompt, max_tokens?, temperature?}  text from the model (--model)\n"
        "  list_models {}                          the models of the registry\n"
        "resources: the indexed documents, strata-rag://INDEX/PATH\n"
        "\n"
        "options:\n"
        "  --index NAME         the RAG index of the rag tools and resources (built with\n"
        "                       'strata rag index PATH... --index NAME'; default: the\n"
        "                       tools' 'index' argument, or the only index there is;\n"
        "                       resources: every index)\n"
        "  --model REF          model for generate and rag_ask: a model directory, .gguf,\n"
        "                       llama2.c checkpoint or registry reference (default: none;\n"
        "                       those tools then return an error)\n"
        "  --tokenizer PATH     tokenizer for models that carry none\n"
        "  --home DIR           STRATA_HOME holding the indexes and the registry\n"
        "                       (default: $STRATA_HOME, else ~/.local/share/strata)\n"
        "  --max-message BYTES  longest message line accepted (default %zu)\n"
        "  --max-tokens N       largest max_tokens a tool call may ask (default %lld)\n"
        "  --threads N          worker threads (default: STRATA_THREADS, else all CPUs)\n"
        "  --help               this text\n"
        "\n"
        "an MCP host's configuration (e.g. Claude Desktop's claude_desktop_config.json):\n"
        "  {\"mcpServers\": {\"strata\": {\"command\": \"/path/to/strata\",\n"
        "     \"args\": [\"mcp\", \"--index\", \"docs\", \"--model\", \"my-model\"]}}}\n",
        d.max_message_bytes, (long long)d.max_tokens_limit);
}

int cmd_mcp(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        print_help();
        return 0;
    }
    st_mcp_params p = st_mcp_default_params();
    const char *model = NULL, *tok_path = NULL;
    long threads = 0, v = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) return cli_usage_error(SUB, "%s needs a value", k);
        const char *val = argv[++i];
        bool ok = true;
        if (!strcmp(k, "--index")) p.index = val;
        else if (!strcmp(k, "--model")) model = val;
        else if (!strcmp(k, "--tokenizer")) tok_path = val;
        else if (!strcmp(k, "--home")) p.home = val;
        else if (!strcmp(k, "--max-message")) ok = cli_parse_long(val, &v) && v >= 1024 && v <= (1L << 30), p.max_message_bytes = (size_t)v;
        else if (!strcmp(k, "--max-tokens")) ok = cli_parse_long(val, &v) && v >= 1 && v <= (1L << 24), p.max_tokens_limit = v;
        else if (!strcmp(k, "--threads")) ok = cli_parse_long(val, &threads) && threads >= 1;
        else return cli_usage_error(SUB, "unknown option '%s'", k);
        if (!ok) return cli_usage_error(SUB, "bad value '%s' for %s", val, k);
    }
    st_ctx *ctx = NULL;
    st_lm *lm = NULL;
    st_engine *eng = NULL;
    st_mcp *m = NULL;
    st_status s;
    int rc = 1;
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        s = (expr);                                                                                \
        if (s != ST_OK) goto fail;                                                                 \
    } while (0)
    if (model) {
        TRY(cli_open_lm(threads, model, tok_path, true, &ctx, &lm, NULL));
        st_engine_params ep = st_engine_default_params();
        TRY(st_engine_new(ctx, lm, &ep, &eng));
        p.engine = eng;
        p.tok = lm->tok;
        p.model_name = model;
    } else {
        st_ctx_params cp = st_ctx_default_params();
        cp.cpu.n_threads = (int)threads;
        TRY(st_ctx_new(&cp, &ctx));
    }
    TRY(st_mcp_new(ctx, &p, &m));
    signal(SIGPIPE, SIG_IGN); /* a client that goes away is a write error, not a signal */
    fprintf(stderr, "strata mcp: serving on stdio (index %s, model %s)\n",
            p.index ? p.index : "any", model ? model : "none");
    s = st_mcp_serve(m, stdin, stdout);
    if (s != ST_OK) goto fail;
    rc = 0;
    goto done;
fail:
    rc = cli_fail(SUB, s);
done:
    st_mcp_free(m);
    st_engine_free(eng);
    st_lm_free(lm);
    st_ctx_free(ctx);
    return rc;
#undef TRY
}
