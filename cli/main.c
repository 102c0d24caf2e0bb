/*
 * main.c — the strata command: dispatches argv[1] to one subcommand.
 * Subcommands live one per file (cli/<name>.c); this table is the only place
 * that lists them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strata/registry.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand k_subcommands[] = {
    {"hw", cmd_hw, "describe this machine; --measure runs roofline probes"},
    {"bench", cmd_bench, "benchmarks against the hardware and peers (bench ops)"},
    {"tokenize", cmd_tokenize, "text <-> token ids with any tokenizer (gpt2, cl100k_base, PATH)"},
    {"tokenizer", cmd_tokenizer, "train a BPE or char tokenizer; writes tokenizer.json"},
    {"train", cmd_train, "train a gpt2 or llama model on a text file (--resume continues)"},
    {"sample", cmd_sample, "generate text from a model directory"},
    {"data", cmd_data, "Parquet inspect/cat (JSON Lines); ingest datasets into token shards"},
    {"generate", cmd_generate, "stream text from a model (KV cache; llama2.c .bin, model dirs)"},
    {"eval", cmd_eval, "loss and perplexity of a model on a text file"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching"},
    {"convert", cmd_convert, "convert models: GGUF <-> model directories <- llama2.c"},
    {"quantize", cmd_quantize, "quantize a model's weights to q8_0 or q4_0 (llama.cpp layouts)"},
    {"runs", cmd_runs, "experiment tracking: list, show, compare, export, delete, import runs"},
    {"ui", cmd_ui, "the tracking dashboard over HTTP (run table, metric charts, compare)"},
    {"vec", cmd_vec, "vector index: build (HNSW or flat), search, info"},
    {"rag", cmd_rag, "retrieval-augmented generation: index documents, search, ask with citations"},
    {"chat", cmd_chat, "chat with a model in the terminal (history, streaming, /save)"},
    {"mcp", cmd_mcp, "Model Context Protocol server on stdio (RAG search/ask, generate)"},
    {"hub", cmd_hub, "model registry: push, pull, list, show, log, diff, tag, rm, verify, gc, serve"},
};
#define N_SUB (sizeof k_subcommands / sizeof k_subcommands[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata <command> [options]\n"
            "       strata --version | --help\n\n"
            "Strata: the AI stack in C, from hardware discovery to applications.\n\n"
            "commands:\n");
    for (size_t i = 0; i < N_SUB; i++)
        fprintf(f, "  %-10s %s\n", k_subcommands[i].name, k_subcommands[i].summary);
    fprintf(f,
            "\nRun 'strata <command> --help' for a command's options.\n"
            "environment: STRATA_THREADS (worker threads, default: all CPUs),\n"
            "             STRATA_SIMD (scalar|avx2|avx512: cap the kernel level),\n"
            "             STRATA_LOG (error|warn|info|debug)\n");
}

bool cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return true;
    return false;
}

int cli_fail(const char *sub, st_status s) {
    const char *msg = st_last_error();
    fprintf(stderr, "strata %s: %s%s%s\n", sub, st_status_message(s), *msg ? ": " : "", msg);
    return 1;
}

int cli_usage_error(const char *sub, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "strata %s: ", sub);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'strata %s --help'.\n", sub);
    va_end(ap);
    return 2;
}

bool cli_parse_long(const char *s, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno) return false;
    *out = v;
    return true;
}

bool cli_parse_double(const char *s, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno) return false;
    *out = v;
    return true;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("strata %s\n", ST_VERSION_STRING);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_SUB; i++)
        if (strcmp(argv[1], k_subcommands[i].name) == 0)
            return k_subcommands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "strata: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

st_status cli_open_lm(long threads, const char *ref, const char *tok_path, bool need_tok,
                      st_ctx **ctx, st_lm **lm, char **path_out) {
    *ctx = NULL;
    *lm = NULL;
    if (path_out) *path_out = NULL;
    char *path = NULL;
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = (int)threads;
    st_status s = st_ctx_new(&cp, ctx);
    if (s == ST_OK) s = st_registry_resolve(ref, &path); /* a path, or NAME[:tag|@rev] */
    if (s == ST_OK) s = st_lm_load(*ctx, path, tok_path, lm);
    if (s == ST_OK && need_tok && !(*lm)->tok)
        s = st__fail(ST_ERR_INVALID_ARG, "%s carries no tokenizer: pass --tokenizer PATH", ref);
    if (s != ST_OK) {
        st_lm_free(*lm);
        st_ctx_free(*ctx);
        st_free(path);
        *lm = NULL;
        *ctx = NULL;
        return s;
    }
    if (path_out)
        *path_out = path;
    else
        st_free(path);
    return ST_OK;
}
