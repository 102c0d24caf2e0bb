/*
 * rag.c — `strata rag index|ask|search|list|docs`: retrieval-augmented
 * generation over a folder of documents (layer 8, strata/app.h).
 *
 * index walks the paths and updates the named index incrementally (one
 * line per file on stderr: indexed, skipped with the reason, removed; a
 * summary at the end); search prints the best chunks with their file and
 * line range; ask retrieves, streams the model's answer and lists the
 * sources it was given as "[n] path:Lstart-Lend"; list and docs describe
 * indexes. --json prints one JSON object (jansson) on stdout for scripts.
 * All memory is local to the call.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strata/app.h"

#define SUB "rag"

static void help_main(FILE *f) {
    fprintf(f,
            "usage: strata rag index PATH... --index NAME [options]\n"
            "       strata rag search \"QUERY\" --index NAME [-k K] [--mode M] [--json]\n"
            "       strata rag ask \"QUESTION\" --index NAME --model REF [options]\n"
            "       strata rag list [--json]\n"
            "       strata rag docs --index NAME [--json]\n\n"
            "Retrieval-augmented generation over your documents (.txt, .md, .html, .jsonl,\n"
            ".parquet, .pdf; other files are read as text when they are UTF-8). An index\n"
            "lives in STRATA_HOME/rag/NAME: chunks in SQLite with an FTS5 BM25 index, their\n"
            "embeddings in an HNSW vector index. Retrieval fuses BM25 and vector rankings\n"
            "by reciprocal rank fusion (k = 60). Run 'strata rag <sub> --help' for the\n"
            "options of each; docs/L8-rag.md has the design.\n");
}

static void help_index(void) {
    printf("usage: strata rag index PATH... --index NAME [options]\n\n"
           "Indexes files and folders (recursively; names starting with '.' skipped).\n"
           "Incremental: a file whose SHA-256 is unchanged is skipped, a changed one is\n"
           "re-chunked, a file gone from an indexed folder is dropped. Binary, empty,\n"
           "non-UTF-8 and oversized files are skipped with a warning. One line per file\n"
           "goes to stderr, then a summary.\n\n"
           "options (defaults; the chunking and embedder options apply when the index\n"
           "is created, an existing index keeps what it was built with):\n"
           "  --index NAME          index name, [A-Za-z0-9._-]+ (required)\n"
           "  --embed-model REF     embed chunks with a model's mean-pooled final hidden\n"
           "                        states (a model directory, a llama2.c .bin, GGUF or a\n"
           "                        registry reference); default: hashed bag of words\n"
           "  --embed-tokenizer P   tokenizer for an embedding model that carries none\n"
           "  --hash-dim N          dimension of the hashed embedding (1024)\n"
           "  --chunk-tokens N      chunk size in tokens: word tokens, or the embedding\n"
           "                        model's tokens with --embed-model (200)\n"
           "  --overlap N           tokens shared by consecutive chunks (chunk / 5: 40)\n"
           "  --max-file-mb N       skip larger files (64)\n"
           "  --quiet               no per-file lines (the summary stays)\n"
           "  --threads N           worker threads (STRATA_THREADS, else all CPUs)\n"
           "  --json                print {files_seen, files_indexed, files_unchanged,\n"
           "                        files_skipped, files_removed, chunks_added,\n"
           "                        chunks_total, skipped: [{path, reason}]} on stdout\n");
}

static void help_search(void) {
    printf("usage: strata rag search \"QUERY\" --index NAME [-k K] [--mode M] [--json]\n\n"
           "Prints the K best chunks: \"[n] path:Lstart-Lend  score\" and the chunk's\n"
           "first line.\n\n"
           "options (defaults):\n"
           "  --index NAME          the index (required)\n"
           "  -k K                  chunks to return (5)\n"
           "  --mode M              hybrid (BM25 + vectors, reciprocal rank fusion),\n"
           "                        bm25 or vector (hybrid)\n"
           "  --threads N           worker threads\n"
           "  --json                print {query, mode, hits: [{n, chunk_id, path,\n"
           "                        line_start, line_end, score, bm25_rank, vec_rank,\n"
           "                        text}]}\n");
}

static void help_ask(void) {
    printf("usage: strata rag ask \"QUESTION\" --index NAME --model REF [options]\n\n"
           "Retrieves the K best chunks, puts them in the prompt as numbered sources\n"
           "(rendered with the model's chat template), streams the answer, then prints\n"
           "the sources as \"[n] path:Lstart-Lend\". Sources are dropped from the end\n"
           "when the prompt would not leave room for the answer in the context.\n\n"
           "options (defaults):\n"
           "  --index NAME          the index (required)\n"
           "  --model REF           the generator: a model directory, llama2.c .bin,\n"
           "                        GGUF or registry reference (required)\n"
           "  --tokenizer PATH      tokenizer for a model that carries none\n"
           "  -k K                  sources in the prompt (4)\n"
           "  --mode M              hybrid, bm25 or vector (hybrid)\n"
           "  --system TEXT         system message (default: answer from the sources\n"
           "                        only and cite them as [n])\n"
           "  -n N                  new tokens at most (256)\n"
           "  --temperature T       0 = greedy (0.7)\n"
           "  --top-p P             nucleus sampling (0.9)\n"
           "  --seed S              sampling seed (0: from the clock)\n"
           "  --threads N           worker threads\n"
           "  --json                print {answer, sources: [{n, path, line_start,\n"
           "                        line_end, score}], cited: [n...], prompt_tokens,\n"
           "                        generated_tokens} instead of streaming\n");
}

static void help_list(void) {
    printf("usage: strata rag list [--json]\n\n"
           "Lists the indexes under STRATA_HOME/rag ({\"indexes\": [...]} with --json).\n");
}

static void help_docs(void) {
    printf("usage: strata rag docs --index NAME [--json]\n\n"
           "Lists the files of an index: chunks, bytes, SHA-256 and path (with --json:\n"
           "{\"docs\": [{path, sha256, bytes, chunks}]}).\n");
}

static bool parse_mode(const char *s, st_rag_mode *m) {
    if (!strcmp(s, "hybrid")) *m = ST_RAG_HYBRID;
    else if (!strcmp(s, "bm25")) *m = ST_RAG_BM25;
    else if (!strcmp(s, "vector")) *m = ST_RAG_VECTOR;
    else return false;
    return true;
}

static const char *mode_name(st_rag_mode m) {
    return m == ST_RAG_BM25 ? "bm25" : m == ST_RAG_VECTOR ? "vector" : "hybrid";
}

static void print_json(json_t *j) {
    char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (txt) printf("%s\n", txt);
    free(txt);
    json_decref(j);
}

static st_status make_ctx(long threads, st_ctx **ctx) {
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = (int)threads;
    return st_ctx_new(&cp, ctx);
}

/* ---- index ------------------------------------------------------------------------ */

typedef struct index_state {
    bool quiet;
    json_t *skipped;
} index_state;

static void on_file(void *user, const char *event, const char *path, const char *detail,
                    int64_t n_chunks) {
    index_state *s = user;
    if (!strcmp(event, "skipped") && s->skipped)
        json_array_append_new(s->skipped, json_pack("{s:s, s:s}", "path", path, "reason",
                                                    detail ? detail : ""));
    if (!strcmp(event, "skipped"))
        fprintf(stderr, "strata rag: warning: skipped %s: %s\n", path, detail ? detail : "");
    else if (!strcmp(event, "indexed") && detail)
        fprintf(stderr, "strata rag: warning: %s: %s\n", path, detail);
    if (s->quiet || !strcmp(event, "unchanged") || !strcmp(event, "skipped")) return;
    if (!strcmp(event, "indexed"))
        fprintf(stderr, "strata rag: indexed %s (%lld chunks)\n", path, (long long)n_chunks);
    else fprintf(stderr, "strata rag: %s %s\n", event, path);
}

static int cmd_index(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        help_index();
        return 0;
    }
    st_rag_params p = st_rag_default_params();
    const char **paths = calloc((size_t)argc, sizeof *paths);
    if (!paths) return cli_fail(SUB, st__fail(ST_ERR_NOMEM, "no memory"));
    int n_paths = 0;
    bool json = false;
    long threads = 0, v = 0;
    bool overlap_set = false;
    index_state is = {0};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(k, "--json")) { json = true; continue; }
        if (!strcmp(k, "--quiet")) { is.quiet = true; continue; }
        if (k[0] != '-' || !strcmp(k, "-")) { paths[n_paths++] = k; continue; }
        if (!val) { free(paths); return cli_usage_error(SUB, "%s needs a value", k); }
        i++;
        if (!strcmp(k, "--index")) p.name = val;
        else if (!strcmp(k, "--embed-model")) p.embed_model = val;
        else if (!strcmp(k, "--embed-tokenizer")) p.embed_tokenizer = val;
        else if (!strcmp(k, "--hash-dim")) ok = cli_parse_long(val, &v) && v >= 8 && v <= 65536, p.hash_dim = (int)v;
        else if (!strcmp(k, "--chunk-tokens")) ok = cli_parse_long(val, &v) && v >= 1 && v <= 1000000, p.chunk_tokens = (int)v;
        else if (!strcmp(k, "--overlap")) ok = cli_parse_long(val, &v) && v >= 0 && v <= 1000000, p.overlap_tokens = (int)v, overlap_set = true;
        else if (!strcmp(k, "--max-file-mb")) ok = cli_parse_long(val, &v) && v >= 1 && v <= (1L << 20), p.max_file_bytes = (size_t)v << 20;
        else if (!strcmp(k, "--threads")) ok = cli_parse_long(val, &threads) && threads >= 1;
        else { free(paths); return cli_usage_error(SUB, "unknown option '%s'", k); }
        if (!ok) { free(paths); return cli_usage_error(SUB, "bad value '%s' for %s", val, k); }
    }
    if (!p.name) { free(paths); return cli_usage_error(SUB, "--index NAME is required"); }
    if (n_paths == 0) { free(paths); return cli_usage_error(SUB, "no PATH to index"); }
    if (!overlap_set) p.overlap_tokens = p.chunk_tokens / 5;
    if (p.overlap_tokens >= p.chunk_tokens) {
        free(paths);
        return cli_usage_error(SUB, "--overlap %d must be below --chunk-tokens %d",
                               p.overlap_tokens, p.chunk_tokens);
    }
    if (json) is.skipped = json_array();
    p.progress = on_file;
    p.progress_user = &is;
    st_ctx *ctx = NULL;
    st_rag *r = NULL;
    st_rag_index_stats stt = {0};
    double t0 = st_time_s();
    st_status s = make_ctx(threads, &ctx);
    if (s == ST_OK) s = st_rag_open(ctx, &p, true, &r);
    if (s == ST_OK) s = st_rag_index_paths(r, paths, n_paths, &stt);
    double dt = st_time_s() - t0;
    int rc = 0;
    if (s != ST_OK) {
        rc = cli_fail(SUB, s);
    } else if (json) {
        print_json(json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:O}", "index", p.name,
                             "files_seen", (json_int_t)stt.files_seen, "files_indexed",
                             (json_int_t)stt.files_indexed, "files_unchanged",
                             (json_int_t)stt.files_unchanged, "files_skipped",
                             (json_int_t)stt.files_skipped, "files_removed",
                             (json_int_t)stt.files_removed, "chunks_added",
                             (json_int_t)stt.chunks_added, "chunks_total",
                             (json_int_t)stt.chunks_total, "seconds", dt, "skipped", is.skipped));
    } else {
        fprintf(stderr,
                "strata rag: index %s: %lld files seen, %lld indexed, %lld unchanged, %lld "
                "skipped, %lld removed; %lld chunks added, %lld in all (%.2f s)\n",
                p.name, (long long)stt.files_seen, (long long)stt.files_indexed,
                (long long)stt.files_unchanged, (long long)stt.files_skipped,
                (long long)stt.files_removed, (long long)stt.chunks_added,
                (long long)stt.chunks_total, dt);
    }
    json_decref(is.skipped);
    st_rag_free(r);
    st_ctx_free(ctx);
    free(paths);
    return rc;
}

/* ---- search ------------------------------------------------------------------------ */

static void first_line(const char *t, char *out, size_t n) {
    size_t i = 0;
    while (*t == ' ' || *t == '\n') t++;
    while (t[i] && t[i] != '\n' && i + 1 < n) i++;
    /* do not cut a UTF-8 character */
    while (i > 0 && t[i] && ((unsigned char)t[i] & 0xC0) == 0x80) i--;
    memcpy(out, t, i);
    out[i] = 0;
}

static int cmd_search(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        help_search();
        return 0;
    }
    st_rag_params p = st_rag_default_params();
    const char *query = NULL;
    long k = 5, threads = 0;
    st_rag_mode mode = ST_RAG_HYBRID;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--json")) { json = true; continue; }
        if (a[0] != '-') {
            if (query) return cli_usage_error(SUB, "one QUERY only (quote it)");
            query = a;
            continue;
        }
        if (!val) return cli_usage_error(SUB, "%s needs a value", a);
        i++;
        if (!strcmp(a, "--index")) p.name = val;
        else if (!strcmp(a, "-k")) ok = cli_parse_long(val, &k) && k >= 1 && k <= 10000;
        else if (!strcmp(a, "--mode")) ok = parse_mode(val, &mode);
        else if (!strcmp(a, "--threads")) ok = cli_parse_long(val, &threads) && threads >= 1;
        else return cli_usage_error(SUB, "unknown option '%s'", a);
        if (!ok) return cli_usage_error(SUB, "bad value '%s' for %s", val, a);
    }
    if (!p.name) return cli_usage_error(SUB, "--index NAME is required");
    if (!query) return cli_usage_error(SUB, "no QUERY");
    st_ctx *ctx = NULL;
    st_rag *r = NULL;
    st_rag_hit *h = NULL;
    int n = 0;
    st_status s = make_ctx(threads, &ctx);
    if (s == ST_OK) s = st_rag_open(ctx, &p, false, &r);
    if (s == ST_OK) s = st_rag_search(r, query, (int)k, mode, &h, &n);
    int rc = 0;
    if (s != ST_OK) {
        rc = cli_fail(SUB, s);
    } else if (json) {
        json_t *hits = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(hits, json_pack("{s:i, s:I, s:s, s:i, s:i, s:f, s:i, s:i, s:s}",
                                                  "n", i + 1, "chunk_id", (json_int_t)h[i].chunk_id,
                                                  "path", h[i].path, "line_start", h[i].line_start,
                                                  "line_end", h[i].line_end, "score", h[i].score,
                                                  "bm25_rank", h[i].bm25_rank, "vec_rank",
                                                  h[i].vec_rank, "text", h[i].text));
        print_json(json_pack("{s:s, s:s, s:o}", "query", query, "mode", mode_name(mode), "hits", hits));
    } else {
        for (int i = 0; i < n; i++) {
            char line[120];
            first_line(h[i].text, line, sizeof line);
            printf("[%d] %s:L%d-L%d  %.4f\n    %s\n", i + 1, h[i].path, h[i].line_start,
                   h[i].line_end, h[i].score, line);
        }
        if (n == 0) fprintf(stderr, "strata rag: no match\n");
    }
    st_rag_hits_free(h, n);
    st_rag_free(r);
    st_ctx_free(ctx);
    return rc;
}

/* ---- ask --------------------------------------------------------------------------- */

static int stream_token(void *user, int32_t id, const char *text, size_t n,
                        const st_token_logprob *c, const st_token_logprob *top, int n_top) {
    (void)user, (void)id, (void)c, (void)top, (void)n_top;
    if (n) fwrite(text, 1, n, stdout);
    fflush(stdout);
    return 0;
}

static int cmd_ask(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        help_ask();
        return 0;
    }
    st_rag_params p = st_rag_default_params();
    st_rag_ask_params ap = st_rag_default_ask_params();
    ap.gen.sampler.temperature = 0.7f;
    ap.gen.sampler.top_p = 0.9f;
    const char *question = NULL, *model = NULL, *tok_path = NULL;
    long k = 4, threads = 0, max_tokens = 256, seed = 0;
    double temp = 0.7, top_p = 0.9;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--json")) { json = true; continue; }
        if (a[0] != '-') {
            if (question) return cli_usage_error(SUB, "one QUESTION only (quote it)");
            question = a;
            continue;
        }
        if (!val) return cli_usage_error(SUB, "%s needs a value", a);
        i++;
        if (!strcmp(a, "--index")) p.name = val;
        else if (!strcmp(a, "--model")) model = val;
        else if (!strcmp(a, "--tokenizer")) tok_path = val;
        else if (!strcmp(a, "--system")) ap.system = val;
        else if (!strcmp(a, "-k")) ok = cli_parse_long(val, &k) && k >= 1 && k <= 100;
        else if (!strcmp(a, "--mode")) ok = parse_mode(val, &ap.mode);
        else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) ok = cli_parse_long(val, &max_tokens) && max_tokens >= 1;
        else if (!strcmp(a, "--temperature")) ok = cli_parse_double(val, &temp) && temp >= 0;
        else if (!strcmp(a, "--top-p")) ok = cli_parse_double(val, &top_p) && top_p > 0 && top_p <= 1;
        else if (!strcmp(a, "--seed")) ok = cli_parse_long(val, &seed) && seed >= 0;
        else if (!strcmp(a, "--threads")) ok = cli_parse_long(val, &threads) && threads >= 1;
        else return cli_usage_error(SUB, "unknown option '%s'", a);
        if (!ok) return cli_usage_error(SUB, "bad value '%s' for %s", val, a);
    }
    if (!p.name) return cli_usage_error(SUB, "--index NAME is required");
    if (!model) return cli_usage_error(SUB, "--model REF is required");
    if (!question) return cli_usage_error(SUB, "no QUESTION");
    ap.k = (int)k;
    ap.gen.max_tokens = max_tokens;
    ap.gen.sampler.temperature = (float)temp;
    ap.gen.sampler.top_p = (float)top_p;
    ap.gen.sampler.seed = seed ? (uint64_t)seed : (uint64_t)(st_time_s() * 1e9);
    st_ctx *ctx = NULL;
    st_rag *r = NULL;
    st_lm *lm = NULL;
    st_engine *eng = NULL;
    st_rag_answer ans = {0};
    st_status s = make_ctx(threads, &ctx);
    if (s == ST_OK) s = st_rag_open(ctx, &p, false, &r);
    if (s == ST_OK) s = st_lm_load(ctx, model, tok_path, &lm);
    if (s == ST_OK && !lm->tok)
        s = st__fail(ST_ERR_INVALID_ARG, "%s carries no tokenizer: pass --tokenizer PATH", model);
    st_engine_params ep = st_engine_default_params();
    if (s == ST_OK) s = st_engine_new(ctx, lm, &ep, &eng);
    if (s == ST_OK)
        s = st_rag_ask(r, eng, NULL, question, &ap, json ? NULL : stream_token, NULL, &ans);
    int rc = 0;
    if (s != ST_OK) {
        rc = cli_fail(SUB, s);
    } else if (json) {
        json_t *src = json_array(), *cited = json_array();
        for (int i = 0; i < ans.n_sources; i++)
            json_array_append_new(src, json_pack("{s:i, s:s, s:i, s:i, s:f}", "n", i + 1, "path",
                                                 ans.sources[i].path, "line_start",
                                                 ans.sources[i].line_start, "line_end",
                                                 ans.sources[i].line_end, "score",
                                                 ans.sources[i].score));
        for (int i = 0; i < ans.n_cited; i++) json_array_append_new(cited, json_integer(ans.cited[i]));
        print_json(json_pack("{s:s, s:o, s:o, s:I, s:I}", "answer", ans.text, "sources", src,
                             "cited", cited, "prompt_tokens", (json_int_t)ans.stats.n_prompt,
                             "generated_tokens", (json_int_t)ans.stats.n_generated));
    } else {
        printf("\n\nsources:\n");
        for (int i = 0; i < ans.n_sources; i++)
            printf("[%d] %s:L%d-L%d\n", i + 1, ans.sources[i].path, ans.sources[i].line_start,
                   ans.sources[i].line_end);
        if (ans.n_sources == 0) printf("(none: the index returned no match)\n");
    }
    st_rag_answer_free(&ans);
    st_engine_free(eng);
    st_lm_free(lm);
    st_rag_free(r);
    st_ctx_free(ctx);
    return rc;
}

/* ---- list, docs ---------------------------------------------------------------------- */

static int cmd_list(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        help_list();
        return 0;
    }
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else return cli_usage_error(SUB, "unknown option '%s'", argv[i]);
    }
    char **names = NULL;
    int n = 0;
    st_status s = st_rag_list_indexes(NULL, &names, &n);
    if (s != ST_OK) return cli_fail(SUB, s);
    if (json) {
        json_t *a = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(a, json_string(names[i]));
        print_json(json_pack("{s:o}", "indexes", a));
    } else {
        for (int i = 0; i < n; i++) printf("%s\n", names[i]);
    }
    for (int i = 0; i < n; i++) st_free(names[i]);
    st_free(names);
    return 0;
}

static int cmd_docs(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        help_docs();
        return 0;
    }
    st_rag_params p = st_rag_default_params();
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--index") && i + 1 < argc) p.name = argv[++i];
        else return cli_usage_error(SUB, "unknown option '%s'", argv[i]);
    }
    if (!p.name) return cli_usage_error(SUB, "--index NAME is required");
    st_rag *r = NULL;
    st_rag_doc *d = NULL;
    int n = 0;
    /* listing embeds nothing, but an index built with a model loads it on
     * open, which needs a context */
    st_ctx *ctx = NULL;
    st_status s = make_ctx(0, &ctx);
    if (s == ST_OK) s = st_rag_open(ctx, &p, false, &r);
    if (s == ST_OK) s = st_rag_list_docs(r, &d, &n);
    int rc = 0;
    if (s != ST_OK) {
        rc = cli_fail(SUB, s);
    } else if (json) {
        json_t *a = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:I}", "path", d[i].path, "sha256",
                                               d[i].sha256, "bytes", (json_int_t)d[i].bytes,
                                               "chunks", (json_int_t)d[i].n_chunks));
        print_json(json_pack("{s:s, s:o}", "index", p.name, "docs", a));
    } else {
        printf("%8s %10s  %-12s  %s\n", "chunks", "bytes", "sha256", "path");
        for (int i = 0; i < n; i++)
            printf("%8lld %10lld  %.12s  %s\n", (long long)d[i].n_chunks, (long long)d[i].bytes,
                   d[i].sha256, d[i].path);
    }
    st_rag_docs_free(d, n);
    st_rag_free(r);
    st_ctx_free(ctx);
    return rc;
}

int cmd_rag(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        help_main(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "index")) return cmd_index(argc - 1, argv + 1);
    if (!strcmp(sub, "search")) return cmd_search(argc - 1, argv + 1);
    if (!strcmp(sub, "ask")) return cmd_ask(argc - 1, argv + 1);
    if (!strcmp(sub, "list")) return cmd_list(argc - 1, argv + 1);
    if (!strcmp(sub, "docs")) return cmd_docs(argc - 1, argv + 1);
    return cli_usage_error(SUB, "unknown subcommand '%s' (index, search, ask, list, docs)", sub);
}
