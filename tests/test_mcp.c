/*
 * test_mcp.c — the MCP server's message handler (strata/app.h st_mcp_handle)
 * and its stdio loop (st_mcp_serve), without pipes.
 *
 * Lifecycle: initialize negotiates the version as the specification says
 * (a version the server speaks is echoed, any other answered with the
 * newest). tools/list describes four tools with object schemas. tools/call
 * generate on llama2.c's stories260K at temperature 0 gives exactly the
 * text llama2.c's run.c printed for the same prompt
 * (tests/data/stories260K/reference_greedy.jsonl). rag_search on an index
 * built here finds the file that holds the query's words, and resources
 * list and read back the indexed files (percent-encoded URIs; file://;
 * nothing outside the index). JSON-RPC errors: parse error, invalid
 * requests of every kind, unknown method, bad params; notifications and
 * responses get no reply; batches get an array; oversized and NUL-holding
 * input is refused; tool failures are isError results. The UTF-8 repair
 * used for model text is checked on invalid sequences.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/mcp_impl.h"
#include "strata/app.h"

#define OK(expr)                                                                                   \
    do {                                                                                           \
        st_status s_ = (expr);                                                                     \
        if (s_ != ST_OK) fail_msg("%s -> %s: %s", #expr, st_status_name(s_), st_last_error());     \
    } while (0)

#define MODEL STRATA_SOURCE_DIR "/tests/data/stories260K/stories260K.bin"
#define TOKENIZER STRATA_SOURCE_DIR "/data/stories260K/tok512.bin"

static st_ctx *g_ctx;
static st_lm *g_lm;
static st_engine *g_eng;
static char g_home[256];

static int setup(void **state) {
    (void)state;
    st_ctx_params cp = st_ctx_default_params();
    if (st_ctx_new(&cp, &g_ctx) != ST_OK) return -1;
    if (st_lm_load(g_ctx, MODEL, TOKENIZER, &g_lm) != ST_OK) return -1;
    st_engine_params ep = st_engine_default_params();
    if (st_engine_new(g_ctx, g_lm, &ep, &g_eng) != ST_OK) return -1;
    snprintf(g_home, sizeof g_home, "/tmp/strata-test-mcp-XXXXXX");
    if (!mkdtemp(g_home)) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    st_engine_free(g_eng);
    st_lm_free(g_lm);
    st_ctx_free(g_ctx);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_home);
    if (system(cmd) != 0) return -1;
    return 0;
}

static st_mcp *new_server(bool with_model, const char *index) {
    st_mcp_params p = st_mcp_default_params();
    p.home = g_home;
    p.index = index;
    if (with_model) {
        p.engine = g_eng;
        p.model_name = "stories260K";
    }
    p.max_message_bytes = 64 << 10;
    st_mcp *m = NULL;
    OK(st_mcp_new(g_ctx, &p, &m));
    return m;
}

/* The reply to msg parsed (NULL when there is none). */
static json_t *call(st_mcp *m, const char *msg) {
    char *reply = NULL;
    size_t n = 0;
    OK(st_mcp_handle(m, msg, strlen(msg), &reply, &n));
    if (!reply) return NULL;
    assert_int_equal(strlen(reply), n);
    assert_null(strchr(reply, '\n')); /* one line on the wire */
    json_error_t e;
    json_t *j = json_loads(reply, 0, &e);
    if (!j) fail_msg("reply is not JSON: %s: %s", e.text, reply);
    st_free(reply);
    return j;
}

/* The error code of a reply (0 when it is a result), checking its id. */
static int error_code(json_t *r, json_int_t want_id) {
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
    json_t *id = json_object_get(r, "id");
    if (want_id < 0) assert_true(json_is_null(id));
    else assert_int_equal(json_integer_value(id), want_id);
    json_t *err = json_object_get(r, "error");
    if (!err) {
        assert_non_null(json_object_get(r, "result"));
        return 0;
    }
    assert_true(json_is_string(json_object_get(err, "message")));
    return (int)json_integer_value(json_object_get(err, "code"));
}

static void expect_code(st_mcp *m, const char *msg, json_int_t id, int code) {
    json_t *r = call(m, msg);
    if (!r) fail_msg("no reply to %s", msg);
    int got = error_code(r, id);
    if (got != code) {
        char *t = json_dumps(r, 0);
        fail_msg("%s: code %d, want %d (%s)", msg, got, code, t);
    }
    json_decref(r);
}

/* tools/call name with args (JSON text); returns the result object (owned). */
static json_t *tool(st_mcp *m, const char *name, const char *args) {
    char msg[4096];
    snprintf(msg, sizeof msg,
             "{\"jsonrpc\":\"2.0\",\"id\":77,\"method\":\"tools/call\",\"params\":{\"name\":\"%s\","
             "\"arguments\":%s}}",
             name, args);
    json_t *r = call(m, msg);
    assert_int_equal(error_code(r, 77), 0);
    json_t *res = json_incref(json_object_get(r, "result"));
    json_decref(r);
    json_t *c0 = json_array_get(json_object_get(res, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "type")), "text");
    return res;
}

static const char *tool_text(json_t *res) {
    return json_string_value(json_object_get(json_array_get(json_object_get(res, "content"), 0), "text"));
}

static bool is_error(json_t *res) { return json_is_true(json_object_get(res, "isError")); }

static void initialize(st_mcp *m, const char *version, const char *want) {
    char msg[512];
    snprintf(msg, sizeof msg,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
             "\"protocolVersion\":\"%s\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\","
             "\"version\":\"1\"}}}",
             version);
    json_t *r = call(m, msg);
    assert_int_equal(error_code(r, 1), 0);
    json_t *res = json_object_get(r, "result");
    assert_string_equal(json_string_value(json_object_get(res, "protocolVersion")), want);
    assert_non_null(json_object_get(json_object_get(res, "capabilities"), "tools"));
    assert_non_null(json_object_get(json_object_get(res, "capabilities"), "resources"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "serverInfo"), "name")),
                        "strata");
    json_decref(r);
    assert_null(call(m, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"));
}

static void test_initialize(void **state) {
    (void)state;
    st_mcp *m = new_server(false, NULL);
    initialize(m, "2025-11-25", "2025-11-25"); /* what the npm SDK 1.32 asks for */
    initialize(m, "2025-06-18", "2025-06-18");
    initialize(m, "2025-03-26", "2025-03-26");
    initialize(m, "2024-11-05", "2024-11-05");
    initialize(m, "2031-01-01", "2025-11-25"); /* unknown: the newest this server speaks */
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\",\"params\":{}}", 2, -32602);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\",\"params\":{\"protocolVersion\":5}}",
                3, -32602);
    json_t *r = call(m, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}");
    assert_string_equal(json_string_value(json_object_get(r, "id")), "p"); /* string ids echo */
    assert_int_equal(json_object_size(json_object_get(r, "result")), 0);
    json_decref(r);
    st_mcp_free(m);
}

static void test_tools_list(void **state) {
    (void)state;
    st_mcp *m = new_server(false, NULL);
    json_t *r = call(m, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/list\"}");
    assert_int_equal(error_code(r, 9), 0);
    json_t *tools = json_object_get(json_object_get(r, "result"), "tools");
    const char *want[] = {"rag_search", "rag_ask", "generate", "list_models"};
    const char *req[] = {"query", "question", "prompt", NULL};
    assert_int_equal(json_array_size(tools), 4);
    for (int i = 0; i < 4; i++) {
        json_t *t = json_array_get(tools, (size_t)i);
        assert_string_equal(json_string_value(json_object_get(t, "name")), want[i]);
        assert_true(json_is_string(json_object_get(t, "description")));
        json_t *s = json_object_get(t, "inputSchema");
        assert_string_equal(json_string_value(json_object_get(s, "type")), "object");
        assert_true(json_is_object(json_object_get(s, "properties")));
        json_t *rq = json_object_get(s, "required");
        assert_int_equal(json_array_size(rq), req[i] ? 1 : 0);
        if (req[i]) {
            assert_string_equal(json_string_value(json_array_get(rq, 0)), req[i]);
            assert_non_null(json_object_get(json_object_get(s, "properties"), req[i]));
        }
    }
    json_decref(r);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/list\",\"params\":{\"cursor\":3}}",
                10, -32602);
    st_mcp_free(m);
}

/* The first generated text of llama2.c's run.c for the prompt (the reference file). */
static char *reference_continuation(const char *prompt) {
    json_t *line = NULL;
    FILE *f = fopen(STRATA_SOURCE_DIR "/tests/data/stories260K/reference_greedy.jsonl", "r");
    assert_non_null(f);
    char buf[1 << 15];
    char *out = NULL;
    while (!out && fgets(buf, sizeof buf, f)) {
        line = json_loads(buf, 0, NULL);
        const char *p = json_string_value(json_object_get(line, "prompt"));
        const char *o = json_string_value(json_object_get(line, "output"));
        if (p && o && strcmp(p, prompt) == 0 && strncmp(o, prompt, strlen(prompt)) == 0)
            out = strdup(o + strlen(prompt));
        json_decref(line);
    }
    fclose(f);
    if (!out) fail_msg("no reference for prompt '%s'", prompt);
    return out;
}

static void test_generate(void **state) {
    (void)state;
    st_mcp *m = new_server(true, NULL);
    initialize(m, "2025-06-18", "2025-06-18");
    json_t *res = tool(m, "generate", "{\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"temperature\":0}");
    assert_false(is_error(res));
    const char *text = tool_text(res);
    char *ref = reference_continuation("Once upon a time");
    if (strlen(text) < 60 || strncmp(ref, text, strlen(text)) != 0)
        fail_msg("generate gave '%s'; llama2.c's run.c: '%.200s'", text, ref);
    free(ref);
    /* 2025-06-18: structuredContent with the counts */
    json_t *sc = json_object_get(res, "structuredContent");
    assert_int_equal(json_integer_value(json_object_get(sc, "generated_tokens")), 40);
    assert_string_equal(json_string_value(json_object_get(sc, "text")), text);
    json_decref(res);

    /* arguments the tool refuses: isError results naming the argument */
    const char *bad[][2] = {
        {"{}", "prompt"},
        {"{\"prompt\":7}", "prompt"},
        {"{\"prompt\":\"a\",\"max_tokens\":0}", "max_tokens"},
        {"{\"prompt\":\"a\",\"max_tokens\":2.5}", "max_tokens"},
        {"{\"prompt\":\"a\",\"max_tokens\":99999999}", "max_tokens"},
        {"{\"prompt\":\"a\",\"temperature\":-1}", "temperature"},
        {"{\"prompt\":\"a\",\"temperature\":\"hot\"}", "temperature"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        res = tool(m, "generate", bad[i][0]);
        if (!is_error(res) || !strstr(tool_text(res), bad[i][1]))
            fail_msg("%s: %s", bad[i][0], tool_text(res));
        json_decref(res);
    }
    st_mcp_free(m);

    /* without a model: generate and rag_ask say what is missing */
    m = new_server(false, NULL);
    res = tool(m, "generate", "{\"prompt\":\"hi\"}");
    assert_true(is_error(res));
    assert_non_null(strstr(tool_text(res), "--model"));
    assert_null(json_object_get(res, "structuredContent"));
    json_decref(res);
    res = tool(m, "rag_ask", "{\"question\":\"hi\"}");
    assert_true(is_error(res));
    json_decref(res);
    res = tool(m, "list_models", "{}");
    assert_false(is_error(res));
    assert_non_null(strstr(tool_text(res), "0 models"));
    json_decref(res);
    st_mcp_free(m);
}

static void test_errors(void **state) {
    (void)state;
    st_mcp *m = new_server(false, NULL);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"", -1, -32700);
    expect_code(m, "not json", -1, -32700);
    expect_code(m, "", -1, -32700);
    expect_code(m, "{} trailing", -1, -32700);
    expect_code(m, "[]", -1, -32600);
    expect_code(m, "42", -1, -32600);
    expect_code(m, "\"ping\"", -1, -32600);
    expect_code(m, "{}", -1, -32600);
    expect_code(m, "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}", 1, -32600);
    expect_code(m, "{\"id\":1,\"method\":\"ping\"}", 1, -32600);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":7}", 2, -32600);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}", -1, -32600);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}", -1, -32600);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\",\"params\":\"x\"}", 3, -32600);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"prompts/list\"}", 4, -32601);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\"}", 5, -32602);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":[1]}", 6, -32602);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"}}", 7, -32602);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"generate\",\"arguments\":[]}}",
                8, -32602);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"resources/read\",\"params\":{}}", 9, -32602);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"resources/read\",\"params\":{\"uri\":\"file:///etc/passwd\"}}",
                10, -32002);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"resources/read\",\"params\":{\"uri\":\"strata-rag://x/%zz\"}}",
                11, -32002);
    expect_code(m, "{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"resources/list\",\"params\":{\"cursor\":\"-1\"}}",
                12, -32602);
    /* a NUL inside the message, and one over the size limit */
    const char nul[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi\0ng\"}";
    char *reply = NULL;
    OK(st_mcp_handle(m, nul, sizeof nul - 1, &reply, NULL));
    assert_non_null(strstr(reply, "-32700"));
    st_free(reply);
    size_t big = (64 << 10) + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    OK(st_mcp_handle(m, huge, big, &reply, NULL));
    assert_non_null(strstr(reply, "-32600"));
    st_free(reply);
    /* deep nesting is a parse error (jansson's depth limit), not a stack overflow */
    for (size_t i = 0; i < 60000; i++) huge[i] = '[';
    OK(st_mcp_handle(m, huge, 60000, &reply, NULL));
    assert_non_null(strstr(reply, "-32700"));
    st_free(reply);
    free(huge);

    /* notifications and responses: no reply, even when unknown or malformed params */
    assert_null(call(m, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":1}}"));
    assert_null(call(m, "{\"jsonrpc\":\"2.0\",\"method\":\"no/such/notification\"}"));
    assert_null(call(m, "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}"));
    assert_null(call(m, "{\"jsonrpc\":\"2.0\",\"id\":5,\"error\":{\"code\":1,\"message\":\"x\"}}"));
    assert_null(call(m, "[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}]"));

    /* a batch: replies in order, notifications skipped, bad members answered */
    json_t *r = call(m, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
                        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},"
                        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nope\"},"
                        "3,"
                        "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-03-26\"}}]");
    assert_true(json_is_array(r));
    assert_int_equal(json_array_size(r), 4);
    assert_int_equal(error_code(json_array_get(r, 0), 1), 0);
    assert_int_equal(error_code(json_array_get(r, 1), 2), -32601);
    assert_int_equal(error_code(json_array_get(r, 2), -1), -32600);
    assert_int_equal(error_code(json_array_get(r, 3), 4), -32600); /* initialize is never batched */
    json_decref(r);
    st_mcp_free(m);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_rag(void **state) {
    (void)state;
    char dir[400], path[512];
    snprintf(dir, sizeof dir, "%s/docs", g_home);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/volcano notes.md", dir);
    write_file(path, "# Volcanoes\n\nMagma rises through the crust and erupts as lava.\n"
                     "Basalt forms when lava cools quickly.\n");
    snprintf(path, sizeof path, "%s/bread.txt", dir);
    write_file(path, "Bread needs flour, water, salt and yeast.\nKnead the dough, let it rise, bake it.\n");
    snprintf(path, sizeof path, "%s/orbits.txt", dir);
    write_file(path, "Planets follow elliptical orbits around the sun, as Kepler found.\n");
    st_rag_params rp = st_rag_default_params();
    rp.home = g_home;
    rp.name = "notes";
    st_rag *rag = NULL;
    OK(st_rag_open(g_ctx, &rp, true, &rag));
    const char *paths[] = {dir};
    st_rag_index_stats stats;
    OK(st_rag_index_paths(rag, paths, 1, &stats));
    assert_int_equal(stats.files_indexed, 3);
    st_rag_free(rag);

    st_mcp *m = new_server(true, NULL); /* no --index: the only index is used */
    initialize(m, "2025-11-25", "2025-11-25");
    json_t *res = tool(m, "rag_search", "{\"query\":\"how does lava cool into basalt\",\"k\":2}");
    if (is_error(res)) fail_msg("rag_search: %s", tool_text(res));
    json_t *hits = json_object_get(json_object_get(res, "structuredContent"), "hits");
    assert_true(json_array_size(hits) >= 1 && json_array_size(hits) <= 2);
    const char *p0 = json_string_value(json_object_get(json_array_get(hits, 0), "path"));
    if (!strstr(p0, "volcano notes.md")) fail_msg("first hit %s", p0);
    assert_non_null(strstr(tool_text(res), "volcano notes.md"));
    const char *uri = json_string_value(json_object_get(json_array_get(hits, 0), "uri"));
    assert_non_null(strstr(uri, "strata-rag://notes/"));
    assert_non_null(strstr(uri, "volcano%20notes.md"));
    json_decref(res);
    for (int i = 0; i < 3; i++) { /* every mode answers; a bad one is refused */
        const char *modes[] = {"bm25", "vector", "hybrid"};
        char a[200];
        snprintf(a, sizeof a, "{\"query\":\"bread flour yeast\",\"mode\":\"%s\"}", modes[i]);
        res = tool(m, "rag_search", a);
        if (is_error(res)) fail_msg("%s: %s", modes[i], tool_text(res));
        assert_non_null(strstr(tool_text(res), "bread.txt"));
        json_decref(res);
    }
    res = tool(m, "rag_search", "{\"query\":\"x\",\"mode\":\"fuzzy\"}");
    assert_true(is_error(res));
    json_decref(res);
    res = tool(m, "rag_search", "{\"query\":\"x\",\"index\":\"missing\"}");
    assert_true(is_error(res));
    assert_non_null(strstr(tool_text(res), "missing"));
    json_decref(res);
    res = tool(m, "rag_search", "{\"query\":\"x\",\"index\":\"../etc\"}");
    assert_true(is_error(res));
    json_decref(res);

    /* rag_ask with the model: an answer and numbered sources */
    res = tool(m, "rag_ask", "{\"question\":\"What is bread made of?\",\"k\":2,\"max_tokens\":16}");
    if (is_error(res)) fail_msg("rag_ask: %s", tool_text(res));
    assert_non_null(strstr(tool_text(res), "Sources:"));
    assert_non_null(strstr(tool_text(res), "[1] "));
    json_decref(res);

    /* resources: the three files; read one back by its URI and by file:// */
    json_t *r = call(m, "{\"jsonrpc\":\"2.0\",\"id\":20,\"method\":\"resources/list\"}");
    assert_int_equal(error_code(r, 20), 0);
    json_t *list = json_object_get(json_object_get(r, "result"), "resources");
    assert_int_equal(json_array_size(list), 3);
    assert_null(json_object_get(json_object_get(r, "result"), "nextCursor"));
    char *vuri = NULL;
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(list, i);
        assert_true(json_is_string(json_object_get(x, "name")));
        if (strstr(json_string_value(json_object_get(x, "uri")), "volcano"))
            vuri = strdup(json_string_value(json_object_get(x, "uri")));
    }
    assert_non_null(vuri);
    json_decref(r);
    char msg[1024];
    snprintf(msg, sizeof msg,
             "{\"jsonrpc\":\"2.0\",\"id\":21,\"method\":\"resources/read\",\"params\":{\"uri\":\"%s\"}}", vuri);
    r = call(m, msg);
    assert_int_equal(error_code(r, 21), 0);
    json_t *c0 = json_array_get(json_object_get(json_object_get(r, "result"), "contents"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "uri")), vuri);
    assert_string_equal(json_string_value(json_object_get(c0, "mimeType")), "text/markdown");
    assert_non_null(strstr(json_string_value(json_object_get(c0, "text")), "Basalt forms"));
    json_decref(r);
    snprintf(msg, sizeof msg,
             "{\"jsonrpc\":\"2.0\",\"id\":22,\"method\":\"resources/read\",\"params\":{\"uri\":\"file://%s/bread.txt\"}}",
             dir);
    r = call(m, msg);
    assert_int_equal(error_code(r, 22), 0);
    json_decref(r);
    /* a real file that is not indexed stays unreadable */
    snprintf(path, sizeof path, "%s/secret.txt", dir);
    write_file(path, "not indexed\n");
    snprintf(msg, sizeof msg,
             "{\"jsonrpc\":\"2.0\",\"id\":23,\"method\":\"resources/read\",\"params\":{\"uri\":\"file://%s\"}}",
             path);
    expect_code(m, msg, 23, -32002);
    snprintf(msg, sizeof msg,
             "{\"jsonrpc\":\"2.0\",\"id\":24,\"method\":\"resources/read\",\"params\":{\"uri\":\"strata-rag://notes%s\"}}",
             path);
    expect_code(m, msg, 24, -32002);
    free(vuri);
    st_mcp_free(m);

    /* --index names a missing index: resources/list is empty, tools say so */
    m = new_server(false, "absent");
    r = call(m, "{\"jsonrpc\":\"2.0\",\"id\":30,\"method\":\"resources/list\"}");
    assert_int_equal(error_code(r, 30), 0);
    assert_int_equal(json_array_size(json_object_get(json_object_get(r, "result"), "resources")), 0);
    json_decref(r);
    res = tool(m, "rag_search", "{\"query\":\"lava\"}");
    assert_true(is_error(res));
    json_decref(res);
    st_mcp_free(m);
}

/* st_mcp_serve over FILE streams: one reply line per request, none for
 * notifications and blank lines, an error for an oversized line. */
static void test_serve_loop(void **state) {
    (void)state;
    st_mcp *m = new_server(false, NULL);
    char big[70000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char *input = NULL;
    size_t n_input = 0;
    FILE *in = open_memstream(&input, &n_input);
    fprintf(in, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n\n   \n");
    fprintf(in, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n%s\n", big);
    fprintf(in, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}"); /* no final newline */
    fclose(in);
    FILE *fin = fmemopen(input, n_input, "r");
    char *output = NULL;
    size_t n_output = 0;
    FILE *out = open_memstream(&output, &n_output);
    OK(st_mcp_serve(m, fin, out));
    fclose(fin);
    fclose(out);
    const char *want = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n"
                       "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":"
                       "\"Invalid Request: a message over 65536 bytes\"}}\n"
                       "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n";
    assert_string_equal(output, want);
    free(input);
    free(output);
    st_mcp_free(m);
}

static void test_utf8(void **state) {
    (void)state;
    const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"plain", 5, "plain"},
        {"caf\xC3\xA9", 5, "caf\xC3\xA9"},
        {"\xF0\x9F\x98\x80!", 5, "\xF0\x9F\x98\x80!"},
        {"a\xC3", 2, "a\xEF\xBF\xBD"},                        /* truncated */
        {"\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},          /* overlong '/' */
        {"\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* a surrogate */
        {"\xF4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* > U+10FFFF */
        {"a\0b", 3, "a\xEF\xBF\xBD" "b"},
        {"\xFF", 1, "\xEF\xBF\xBD"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        char *o = st__utf8_valid_copy(cases[i].in, cases[i].n, &n);
        assert_non_null(o);
        assert_string_equal(o, cases[i].want);
        assert_int_equal(n, strlen(cases[i].want));
        json_t *j = st__json_string_lossy(o);
        assert_non_null(j); /* jansson accepts it as UTF-8 */
        json_decref(j);
        st_free(o);
    }
    json_t *j = st__json_string_lossy("bad \xFF byte");
    assert_string_equal(json_string_value(j), "bad \xEF\xBF\xBD byte");
    json_decref(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_initialize), cmocka_unit_test(test_tools_list),
        cmocka_unit_test(test_generate),   cmocka_unit_test(test_errors),
        cmocka_unit_test(test_rag),        cmocka_unit_test(test_serve_loop),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
