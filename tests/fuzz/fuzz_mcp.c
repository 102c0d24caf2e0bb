/*
 * fuzz_mcp.c — libFuzzer target for the MCP server's message handler
 * (st_mcp_handle, src/app/mcp.c): every input is one JSON-RPC message as a
 * client could send it. The server has no model (generate and rag_ask must
 * return isError results) and one small RAG index, "docs", built once at
 * start in a temporary STRATA_HOME, so rag_search queries, resource URIs
 * and cursors from the fuzzer reach the index. Every reply must be one line
 * of valid JSON with "jsonrpc": "2.0" (or an array of such objects).
 * Built only with clang (`make fuzz`); seeds in tests/fuzz/corpus/fuzz_mcp/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "strata/app.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static st_ctx *g_ctx;
static st_mcp *g_mcp;
static char g_home[64];

static void cleanup(void) {
    st_mcp_free(g_mcp);
    st_ctx_free(g_ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_home);
    if (system(cmd) != 0) fprintf(stderr, "fuzz_mcp: could not remove %s\n", g_home);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static void init(void) {
    snprintf(g_home, sizeof g_home, "/tmp/strata-fuzz-mcp-XXXXXX");
    if (!mkdtemp(g_home)) abort();
    st_log_set_level(ST_LOG_ERROR);
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = 1;
    if (st_ctx_new(&cp, &g_ctx) != ST_OK) abort();
    char dir[128], path[192];
    snprintf(dir, sizeof dir, "%s/docs", g_home);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/a b.md", dir);
    write_file(path, "# Lava\n\nMagma erupts as lava and cools into basalt.\n");
    snprintf(path, sizeof path, "%s/bread.txt", dir);
    write_file(path, "Bread: flour, water, salt, yeast. \"Quoted\" AND (odd) * tokens: NEAR -x\n");
    st_rag_params rp = st_rag_default_params();
    rp.home = g_home;
    rp.name = "docs";
    st_rag *r = NULL;
    const char *paths[] = {dir};
    st_rag_index_stats stats;
    if (st_rag_open(g_ctx, &rp, true, &r) != ST_OK ||
        st_rag_index_paths(r, paths, 1, &stats) != ST_OK)
        abort();
    st_rag_free(r);
    st_mcp_params p = st_mcp_default_params();
    p.home = g_home;
    p.max_message_bytes = 1 << 16;
    if (st_mcp_new(g_ctx, &p, &g_mcp) != ST_OK) abort();
    atexit(cleanup);
}

static void check_reply(json_t *r) {
    if (!json_is_object(r)) __builtin_trap();
    json_t *v = json_object_get(r, "jsonrpc");
    if (!json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0) __builtin_trap();
    if (!json_object_get(r, "id")) __builtin_trap();
    if (!json_object_get(r, "result") == !json_object_get(r, "error")) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_mcp) init();
    char *reply = NULL;
    size_t n = 0;
    if (st_mcp_handle(g_mcp, (const char *)data, size, &reply, &n) != ST_OK) __builtin_trap();
    if (!reply) return 0;
    if (strlen(reply) != n || memchr(reply, '\n', n)) __builtin_trap();
    json_error_t e;
    json_t *j = json_loadb(reply, n, 0, &e);
    if (!j) __builtin_trap();
    if (json_is_array(j)) {
        if (json_array_size(j) == 0) __builtin_trap();
        for (size_t i = 0; i < json_array_size(j); i++) check_reply(json_array_get(j, i));
    } else {
        check_reply(j);
    }
    json_decref(j);
    st_free(reply);
    return 0;
}
