/*
 * mcp.c — a Model Context Protocol server (strata/app.h st_mcp; the library
 * half of `strata mcp`).
 *
 * MCP is JSON-RPC 2.0; over stdio each message is one line of JSON. This
 * file is a function from one message to its reply (st_mcp_handle), so the
 * protocol is tested and fuzzed without pipes, plus the line loop around it
 * (st_mcp_serve). Version negotiation follows the lifecycle page of the
 * specification: the client's initialize names the version it wants; a
 * version this server speaks is echoed, any other is answered with the
 * newest one and the client decides whether to go on. The versions differ
 * in what is added (titles, structuredContent), not in the calls used here:
 * structuredContent is sent from 2025-06-18 on.
 *
 * Tools: rag_search and rag_ask (strata/app.h st_rag_*), generate (the
 * engine, st_generate) and list_models (strata/registry.h). Resources: the
 * documents of the RAG indexes, as strata-rag://NAME/PATH with PATH
 * percent-encoded. Only indexed documents are ever read (st_rag_doc_text):
 * resources/read is no path to arbitrary files.
 *
 * Errors: the JSON-RPC codes for the message (-32700 parse, -32600 invalid
 * request, -32601 unknown method, -32602 bad parameters: an unknown tool,
 * params of the wrong shape), -32002 for an unknown resource; what goes
 * wrong inside a tool, including arguments the tool refuses, is a tool
 * result with isError true (the model reads it and can retry: SEP-1303 in
 * the 2025-11-25 specification).
 *
 * Ownership: the server owns copies of its strings and the RAG handles it
 * opened (by name, on first use); it borrows the context and the engine.
 * One thread drives it.
 */
#include "strata/app.h"
#include "strata/registry.h"

#include "mcp_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* newest first; initialize answers the first one for an unknown request */
static const char *const k_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26",
                                         "2024-11-05"};
#define N_VERSIONS (sizeof k_versions / sizeof k_versions[0])

#define RPC_PARSE_ERROR -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS -32602
#define RPC_INTERNAL_ERROR -32603
#define MCP_RESOURCE_NOT_FOUND -32002

#define RESOURCES_PAGE 200 /* resources per resources/list page */
#define MAX_K 50           /* rag_search's largest k */

typedef struct mcp_index {
    char *name;
    st_rag *rag;
} mcp_index;

struct st_mcp {
    st_ctx *ctx;
    st_mcp_params p;  /* strings point at the copies below */
    char *home, *index, *model_name;
    char version[16]; /* negotiated ("" before initialize) */
    mcp_index *idx;
    int n_idx;
};

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/* length of the well-formed UTF-8 character at s[0..n), or 0 (RFC 3629) */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c >= 0x01 && c < 0x80) return 1;
    size_t len;
    unsigned min, cp;
    if ((c & 0xE0) == 0xC0) len = 2, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000, cp = c & 0x07;
    else return 0; /* NUL, a continuation byte, 0xF8.. */
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

char *st__utf8_valid_copy(const char *s, size_t n, size_t *n_out) {
    size_t cap;
    if (__builtin_mul_overflow(n, (size_t)3, &cap) || cap + 1 < cap) return NULL;
    char *o = st_malloc(cap + 1);
    if (!o) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char_len(u + i, n - i);
        if (len) {
            memcpy(o + k, u + i, len);
            k += len;
            i += len;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    o[k] = 0;
    if (n_out) *n_out = k;
    return o;
}

json_t *st__json_string_lossy(const char *s) {
    if (!s) return json_null();
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = 0;
    char *v = st__utf8_valid_copy(s, strlen(s), &n);
    if (!v) return NULL;
    j = json_stringn(v, n);
    st_free(v);
    return j;
}

/* ---- setup ---------------------------------------------------------------------------------- */

st_mcp_params st_mcp_default_params(void) {
    st_mcp_params p;
    memset(&p, 0, sizeof p);
    p.max_message_bytes = (size_t)4 << 20;
    p.max_tokens_limit = 4096;
    return p;
}

static bool valid_index_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static char *dup_or_null(const char *s, bool *oom) {
    if (!s) return NULL;
    char *d = st_strdup(s);
    if (!d) *oom = true;
    return d;
}

st_status st_mcp_new(st_ctx *ctx, const st_mcp_params *p, st_mcp **out) {
    if (!p || !out) return st__fail(ST_ERR_INVALID_ARG, "st_mcp_new: NULL argument");
    *out = NULL;
    if (p->index && !valid_index_name(p->index))
        return st__fail(ST_ERR_INVALID_ARG,
                        "st_mcp_new: index name '%s' is not 1..128 of [A-Za-z0-9._-]", p->index);
    st_mcp *m = st_calloc(1, sizeof *m);
    if (!m) return st__fail(ST_ERR_NOMEM, "st_mcp_new: no memory");
    bool oom = false;
    m->ctx = ctx;
    m->p = *p;
    m->home = dup_or_null(p->home, &oom);
    m->index = dup_or_null(p->index, &oom);
    m->model_name = dup_or_null(p->model_name, &oom);
    m->p.home = m->home;
    m->p.index = m->index;
    m->p.model_name = m->model_name;
    if (m->p.max_message_bytes == 0) m->p.max_message_bytes = (size_t)4 << 20;
    if (m->p.max_tokens_limit <= 0) m->p.max_tokens_limit = 4096;
    if (oom) {
        st_mcp_free(m);
        return st__fail(ST_ERR_NOMEM, "st_mcp_new: no memory");
    }
    *out = m;
    return ST_OK;
}

void st_mcp_free(st_mcp *m) {
    if (!m) return;
    for (int i = 0; i < m->n_idx; i++) {
        st_rag_free(m->idx[i].rag);
        st_free(m->idx[i].name);
    }
    st_free(m->idx);
    st_free(m->home);
    st_free(m->index);
    st_free(m->model_name);
    st_free(m);
}

/* The open index name (opened now when it is not yet). NULL with the
 * error recorded when it does not exist or cannot be opened. */
static st_rag *index_get(st_mcp *m, const char *name) {
    for (int i = 0; i < m->n_idx; i++)
        if (strcmp(m->idx[i].name, name) == 0) return m->idx[i].rag;
    if (!valid_index_name(name)) {
        st__fail(ST_ERR_INVALID_ARG, "index name '%.200s' is not 1..128 of [A-Za-z0-9._-]", name);
        return NULL;
    }
    mcp_index *a = st_realloc(m->idx, (size_t)(m->n_idx + 1) * sizeof *a);
    if (!a) {
        st__fail(ST_ERR_NOMEM, "no memory");
        return NULL;
    }
    m->idx = a;
    st_rag_params rp = st_rag_default_params();
    rp.home = m->home;
    rp.name = name;
    st_rag *r = NULL;
    if (st_rag_open(m->ctx, &rp, false, &r) != ST_OK) return NULL;
    char *nm = st_strdup(name);
    if (!nm) {
        st_rag_free(r);
        st__fail(ST_ERR_NOMEM, "no memory");
        return NULL;
    }
    m->idx[m->n_idx++] = (mcp_index){.name = nm, .rag = r};
    return r;
}

/* ---- replies ------------------------------------------------------------------------------ */

/* The reply to a request: {"jsonrpc", "id", "result"}; steals result. */
static json_t *reply_result(json_t *id, json_t *result) {
    if (!result) return NULL;
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "result",
                     result);
}

/* {"jsonrpc", "id", "error": {code, message[, data]}}; steals data. */
static json_t *reply_error(json_t *id, int code, json_t *data, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static json_t *reply_error(json_t *id, int code, json_t *data, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *err = json_pack("{s:i, s:o}", "code", code, "message", st__json_string_lossy(msg));
    if (err && data) json_object_set(err, "data", data);
    json_decref(data);
    if (!err) return NULL;
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error",
                     err);
}

/* A tool result: content of one text block, isError, and (2025-06-18 on)
 * structuredContent. Steals structured. */
static json_t *tool_result(st_mcp *m, const char *text, bool is_error, json_t *structured) {
    json_t *r = json_pack("{s:[{s:s, s:o}]}", "content", "type", "text", "text",
                          st__json_string_lossy(text));
    if (r && is_error) json_object_set_new(r, "isError", json_true());
    if (r && structured && strcmp(m->version, "2025-06-18") >= 0)
        json_object_set(r, "structuredContent", structured);
    json_decref(structured);
    return r;
}

static json_t *tool_error(st_mcp *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *tool_error(st_mcp *m, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tool_result(m, msg, true, NULL);
}

/* ---- tool arguments ---------------------------------------------------------------------- */

/* A required string argument; NULL (and *err set) when absent or not a string. */
static const char *arg_string(json_t *args, const char *key, bool required, char *err,
                              size_t n_err) {
    json_t *v = json_object_get(args, key);
    if (!v) {
        if (required) snprintf(err, n_err, "the argument '%s' (a string) is required", key);
        return NULL;
    }
    if (!json_is_string(v)) {
        snprintf(err, n_err, "the argument '%s' must be a string", key);
        return NULL;
    }
    return json_string_value(v);
}

/* An optional integer argument in [lo, hi] (a JSON number with no fraction). */
static bool arg_int(json_t *args, const char *key, long long lo, long long hi, long long *out,
                    char *err, size_t n_err) {
    json_t *v = json_object_get(args, key);
    if (!v) return true;
    double d = json_is_integer(v) ? (double)json_integer_value(v)
               : json_is_real(v)  ? json_real_value(v)
                                  : -1e300;
    if (d == -1e300 || d != (double)(long long)d || d < (double)lo || d > (double)hi) {
        snprintf(err, n_err, "the argument '%s' must be an integer in [%lld, %lld]", key, lo, hi);
        return false;
    }
    *out = (long long)d;
    return true;
}

static bool arg_number(json_t *args, const char *key, double lo, double hi, double *out,
                       char *err, size_t n_err) {
    json_t *v = json_object_get(args, key);
    if (!v) return true;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        snprintf(err, n_err, "the argument '%s' must be a number in [%g, %g]", key, lo, hi);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

/* The index a RAG tool works on: the argument, else --index, else the only
 * index under home. NULL with a message in err otherwise. */
static st_rag *tool_index(st_mcp *m, json_t *args, const char **name_out, char *err,
                          size_t n_err) {
    const char *name = arg_string(args, "index", false, err, n_err);
    if (!name && err[0]) return NULL;
    char **names = NULL;
    int n_names = 0;
    char only[160] = "";
    if (!name) name = m->index;
    if (!name) {
        if (st_rag_list_indexes(m->home, &names, &n_names) != ST_OK) {
            snprintf(err, n_err, "cannot list the RAG indexes: %s", st_last_error());
            return NULL;
        }
        if (n_names == 1) snprintf(only, sizeof only, "%s", names[0]);
        for (int i = 0; i < n_names; i++) st_free(names[i]);
        st_free(names);
        if (n_names != 1) {
            snprintf(err, n_err,
                     n_names == 0 ? "there is no RAG index: build one with 'strata rag index "
                                    "PATH... --index NAME'"
                                  : "%d RAG indexes exist: name one with the 'index' argument "
                                    "(or start strata mcp with --index NAME)",
                     n_names);
            return NULL;
        }
        name = only;
    }
    st_rag *r = index_get(m, name);
    if (!r) {
        snprintf(err, n_err, "RAG index '%.128s': %s", name, st_last_error());
        return NULL;
    }
    for (int i = 0; i < m->n_idx; i++) /* the name as stored (name may point into only[]) */
        if (m->idx[i].rag == r) *name_out = m->idx[i].name;
    return r;
}

/* ---- resource URIs ------------------------------------------------------------------------ */

static bool uri_unreserved(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
}

/* "strata-rag://NAME" + PATH percent-encoded (st_malloc'd). */
static char *uri_of(const char *index, const char *path) {
    st_strbuf b = {0};
    st_strbuf_printf(&b, "strata-rag://%s", index);
    if (path[0] != '/') st_strbuf_puts(&b, "/");
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if (uri_unreserved(*c)) st_strbuf_put(&b, c, 1);
        else st_strbuf_printf(&b, "%%%02X", *c);
    }
    if (b.failed) {
        st_strbuf_free(&b);
        return NULL;
    }
    return b.p;
}

/* Decodes %XX escapes of s into a new string; NULL on a bad escape or a %00. */
static char *pct_decode(const char *s) {
    size_t n = strlen(s);
    char *o = st_malloc(n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            o[k++] = s[i];
            continue;
        }
        unsigned v = 0;
        for (int j = 1; j <= 2; j++) {
            char h = i + (size_t)j < n ? s[i + (size_t)j] : 0;
            int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                  : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (d < 0) {
                st_free(o);
                return NULL;
            }
            v = v * 16 + (unsigned)d;
        }
        if (v == 0) {
            st_free(o);
            return NULL;
        }
        o[k++] = (char)v;
        i += 2;
    }
    o[k] = 0;
    return o;
}

static const char *mime_of(const char *path) {
    const char *dot = strrchr(path, '.');
    if (dot && (strcmp(dot, ".md") == 0 || strcmp(dot, ".markdown") == 0)) return "text/markdown";
    return "text/plain"; /* HTML, PDF, Parquet, JSON Lines: their text as extracted */
}

static const char *base_name(const char *path) {
    const char *b = strrchr(path, '/');
    return b && b[1] ? b + 1 : path;
}

/* ---- methods ------------------------------------------------------------------------------ */

static json_t *m_initialize(st_mcp *m, json_t *id, json_t *params) {
    json_t *v = json_object_get(params, "protocolVersion");
    if (!json_is_string(v))
        return reply_error(id, RPC_INVALID_PARAMS, NULL,
                           "initialize: params.protocolVersion (a string) is required");
    const char *want = json_string_value(v), *use = k_versions[0];
    for (size_t i = 0; i < N_VERSIONS; i++)
        if (strcmp(want, k_versions[i]) == 0) use = k_versions[i];
    snprintf(m->version, sizeof m->version, "%s", use);
    char instructions[512];
    snprintf(instructions, sizeof instructions,
             "Strata: search and ask the local RAG index%s%s (rag_search, rag_ask), generate "
             "text with %s (generate), list the models of the registry (list_models). The "
             "indexed documents are resources.",
             m->index ? " " : "es", m->index ? m->index : "",
             m->model_name ? m->model_name : "a model (none loaded: start with --model)");
    json_t *r = json_pack("{s:s, s:{s:{s:b}, s:{s:b, s:b}}, s:{s:s, s:s, s:s}, s:o}",
                          "protocolVersion", use, "capabilities", "tools", "listChanged", 0,
                          "resources", "subscribe", 0, "listChanged", 0, "serverInfo", "name",
                          "strata", "title", "Strata", "version", ST_VERSION_STRING,
                          "instructions", st__json_string_lossy(instructions));
    return reply_result(id, r);
}

/* One tool's description: name, title, description, inputSchema. */
static json_t *tool_desc(const char *name, const char *title, const char *desc, json_t *props,
                         const char *required, bool read_only) {
    json_t *req = json_array();
    if (required) json_array_append_new(req, json_string(required));
    json_t *t = json_pack("{s:s, s:s, s:s, s:{s:s, s:o, s:o}, s:{s:b, s:b}}", "name", name,
                          "title", title, "description", desc, "inputSchema", "type", "object",
                          "properties", props, "required", req, "annotations", "readOnlyHint",
                          read_only, "openWorldHint", 0);
    return t;
}

static json_t *m_tools_list(st_mcp *m, json_t *id, json_t *params) {
    (void)m;
    json_t *cur = json_object_get(params, "cursor");
    if (cur && !json_is_string(cur))
        return reply_error(id, RPC_INVALID_PARAMS, NULL, "tools/list: cursor must be a string");
    json_t *tools = json_array();
    json_array_append_new(
        tools,
        tool_desc("rag_search", "Search the documents",
                  "Finds the passages of the indexed documents most relevant to a query "
                  "(BM25 and vector search fused by reciprocal rank fusion). Returns each "
                  "passage with its file, line range and score.",
                  json_pack("{s:{s:s, s:s}, s:{s:s, s:i, s:i, s:i, s:s}, s:{s:s, s:[sss], "
                            "s:s, s:s}, s:{s:s, s:s}}",
                            "query", "type", "string", "description", "what to look for",
                            "k", "type", "integer", "minimum", 1, "maximum", MAX_K, "default", 5,
                            "description", "passages to return", "mode", "type", "string",
                            "enum", "hybrid", "bm25", "vector", "default", "hybrid",
                            "description", "ranking: hybrid, bm25 (keywords) or vector",
                            "index", "type", "string", "description",
                            "RAG index name (default: the server's)"),
                  "query", true));
    json_array_append_new(
        tools,
        tool_desc("rag_ask", "Ask the documents",
                  "Answers a question from the indexed documents: retrieves the best "
                  "passages, has the model answer from them and cites them as [n]. Needs "
                  "the server to run with a model.",
                  json_pack("{s:{s:s}, s:{s:s, s:i, s:i, s:i}, s:{s:s, s:i, s:I}, s:{s:s, "
                            "s:s}}",
                            "question", "type", "string", "k", "type", "integer", "minimum", 1,
                            "maximum", 16, "default", 4, "max_tokens", "type", "integer",
                            "minimum", 1, "maximum", (json_int_t)m->p.max_tokens_limit, "index",
                            "type", "string", "description",
                            "RAG index name (default: the server's)"),
                  "question", true));
    json_array_append_new(
        tools,
        tool_desc("generate", "Generate text",
                  "Continues a prompt with the server's language model (plain completion, "
                  "no chat template).",
                  json_pack("{s:{s:s}, s:{s:s, s:i, s:I, s:i}, s:{s:s, s:f, s:f, s:f}}",
                            "prompt", "type", "string", "max_tokens", "type", "integer",
                            "minimum", 1, "maximum", (json_int_t)m->p.max_tokens_limit,
                            "default", 256, "temperature", "type", "number", "minimum", 0.0,
                            "maximum", 2.0, "default", 0.7),
                  "prompt", true));
    json_array_append_new(tools, tool_desc("list_models", "List models",
                                           "Lists the models of the local Strata registry "
                                           "(names, tags, latest revision) and the model this "
                                           "server runs.",
                                           json_object(), NULL, true));
    for (size_t i = 0; i < json_array_size(tools); i++)
        if (!json_is_object(json_array_get(tools, i))) {
            json_decref(tools);
            return NULL;
        }
    return reply_result(id, json_pack("{s:o}", "tools", tools));
}

static json_t *hit_json(const char *index, const st_rag_hit *h, int rank) {
    char *uri = uri_of(index, h->path);
    json_t *j = json_pack("{s:i, s:o, s:o, s:i, s:i, s:f, s:i, s:i, s:o}", "rank", rank, "path",
                          st__json_string_lossy(h->path), "uri", st__json_string_lossy(uri),
                          "line_start", h->line_start, "line_end", h->line_end, "score",
                          h->score, "bm25_rank", h->bm25_rank, "vector_rank", h->vec_rank,
                          "text", st__json_string_lossy(h->text));
    st_free(uri);
    return j;
}

static json_t *t_rag_search(st_mcp *m, json_t *args) {
    char err[512] = "";
    const char *q = arg_string(args, "query", true, err, sizeof err);
    long long k = 5;
    if (!q || !arg_int(args, "k", 1, MAX_K, &k, err, sizeof err)) return tool_error(m, "%s", err);
    const char *ms = arg_string(args, "mode", false, err, sizeof err);
    if (err[0]) return tool_error(m, "%s", err);
    st_rag_mode mode = ST_RAG_HYBRID;
    if (ms && strcmp(ms, "bm25") == 0) mode = ST_RAG_BM25;
    else if (ms && strcmp(ms, "vector") == 0) mode = ST_RAG_VECTOR;
    else if (ms && strcmp(ms, "hybrid") != 0)
        return tool_error(m, "the argument 'mode' must be hybrid, bm25 or vector, not '%.64s'", ms);
    const char *name = NULL;
    st_rag *r = tool_index(m, args, &name, err, sizeof err);
    if (!r) return tool_error(m, "%s", err);
    st_rag_hit *hits = NULL;
    int n = 0;
    if (st_rag_search(r, q, (int)k, mode, &hits, &n) != ST_OK)
        return tool_error(m, "rag_search: %s", st_last_error());
    st_strbuf b = {0};
    json_t *arr = json_array();
    if (n == 0) st_strbuf_printf(&b, "No passage of index %s matches the query.", name);
    for (int i = 0; i < n; i++) {
        st_strbuf_printf(&b, "%s[%d] %s:%d-%d (score %.4f)\n%s\n", i ? "\n" : "", i + 1,
                         hits[i].path, hits[i].line_start, hits[i].line_end, hits[i].score,
                         hits[i].text);
        json_array_append_new(arr, hit_json(name, &hits[i], i + 1));
    }
    st_rag_hits_free(hits, n);
    json_t *res = NULL;
    if (!b.failed && arr) res = tool_result(m, b.p, false, json_pack("{s:o}", "hits", arr));
    else json_decref(arr);
    st_strbuf_free(&b);
    return res;
}

/* The engine's tokenizer for a tool that generates; NULL (err set) without one. */
static const st_tokenizer *tool_tok(st_mcp *m, const char *tool, char *err, size_t n_err) {
    if (!m->p.engine) {
        snprintf(err, n_err,
                 "%s needs a model: start strata mcp with --model REF [--tokenizer PATH]", tool);
        return NULL;
    }
    const st_tokenizer *tok = m->p.tok ? m->p.tok : st_engine_lm(m->p.engine)->tok;
    if (!tok) snprintf(err, n_err, "%s: the model has no tokenizer (pass --tokenizer)", tool);
    return tok;
}

static json_t *t_rag_ask(st_mcp *m, json_t *args) {
    char err[512] = "";
    const char *q = arg_string(args, "question", true, err, sizeof err);
    long long k = 4, max_tokens = 256;
    if (!q || !arg_int(args, "k", 1, 16, &k, err, sizeof err) ||
        !arg_int(args, "max_tokens", 1, m->p.max_tokens_limit, &max_tokens, err, sizeof err))
        return tool_error(m, "%s", err);
    const st_tokenizer *tok = tool_tok(m, "rag_ask", err, sizeof err);
    if (!tok) return tool_error(m, "%s", err);
    const char *name = NULL;
    st_rag *r = tool_index(m, args, &name, err, sizeof err);
    if (!r) return tool_error(m, "%s", err);
    st_rag_ask_params ap = st_rag_default_ask_params();
    ap.k = (int)k;
    ap.gen.max_tokens = max_tokens;
    st_rag_answer a;
    memset(&a, 0, sizeof a);
    if (st_rag_ask(r, m->p.engine, tok, q, &ap, NULL, NULL, &a) != ST_OK)
        return tool_error(m, "rag_ask: %s", st_last_error());
    st_strbuf b = {0};
    st_strbuf_printf(&b, "%s\n\nSources:\n", a.text ? a.text : "");
    json_t *src = json_array();
    for (int i = 0; i < a.n_sources; i++) {
        st_strbuf_printf(&b, "[%d] %s:%d-%d\n", i + 1, a.sources[i].path,
                         a.sources[i].line_start, a.sources[i].line_end);
        json_array_append_new(src, hit_json(name, &a.sources[i], i + 1));
    }
    json_t *cited = json_array();
    for (int i = 0; i < a.n_cited; i++) json_array_append_new(cited, json_integer(a.cited[i]));
    json_t *st = json_pack("{s:o, s:o, s:o}", "answer", st__json_string_lossy(a.text), "sources",
                           src, "cited", cited);
    st_rag_answer_free(&a);
    json_t *res = b.failed ? NULL : tool_result(m, b.p, false, st);
    if (b.failed) json_decref(st);
    st_strbuf_free(&b);
    return res;
}

typedef struct gen_buf {
    st_strbuf text;
} gen_buf;

static int on_gen_token(void *user, int32_t id, const char *text, size_t n,
                        const st_token_logprob *c, const st_token_logprob *top, int n_top) {
    (void)id;
    (void)c;
    (void)top;
    (void)n_top;
    gen_buf *g = user;
    if (n) st_strbuf_put(&g->text, text, n);
    return g->text.failed ? 1 : 0;
}

static const char *finish_name(st_finish_reason f) {
    return f == ST_FINISH_EOS ? "eos" : f == ST_FINISH_STOP ? "stop"
         : f == ST_FINISH_CANCEL ? "cancel" : "length";
}

static json_t *t_generate(st_mcp *m, json_t *args) {
    char err[512] = "";
    const char *prompt = arg_string(args, "prompt", true, err, sizeof err);
    long long max_tokens = 256;
    double temperature = 0.7;
    if (!prompt ||
        !arg_int(args, "max_tokens", 1, m->p.max_tokens_limit, &max_tokens, err, sizeof err) ||
        !arg_number(args, "temperature", 0.0, 2.0, &temperature, err, sizeof err))
        return tool_error(m, "%s", err);
    const st_tokenizer *tok = tool_tok(m, "generate", err, sizeof err);
    if (!tok) return tool_error(m, "%s", err);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    st_encode_opts eo = {.allow_special = false, .add_bos = true};
    if (st_tokenizer_encode(tok, prompt, strlen(prompt), &eo, &ids, &n_ids) != ST_OK)
        return tool_error(m, "generate: the prompt cannot be tokenized: %s", st_last_error());
    if (n_ids == 0) {
        st_free(ids);
        return tool_error(m, "generate: the prompt encodes to no tokens");
    }
    st_generate_params gp = st_generate_default_params();
    gp.max_tokens = max_tokens;
    gp.sampler.temperature = (float)temperature;
    gp.sampler.seed = (uint64_t)(st_time_s() * 1e9);
    gen_buf g = {{0}};
    st_generate_stats gs = {0};
    st_status s = st_generate(m->p.engine, tok, ids, (int64_t)n_ids, &gp, on_gen_token, &g, &gs);
    st_free(ids);
    if (s != ST_OK) {
        st_strbuf_free(&g.text);
        return tool_error(m, "generate: %s", st_last_error());
    }
    if (g.text.failed) {
        st_strbuf_free(&g.text);
        return NULL;
    }
    const char *text = g.text.p ? g.text.p : "";
    json_t *res = tool_result(m, text, false,
                              json_pack("{s:o, s:I, s:I, s:s}", "text",
                                        st__json_string_lossy(text), "prompt_tokens",
                                        (json_int_t)gs.n_prompt, "generated_tokens",
                                        (json_int_t)gs.n_generated, "finish_reason",
                                        finish_name(gs.finish)));
    st_strbuf_free(&g.text);
    return res;
}

static json_t *t_list_models(st_mcp *m, json_t *args) {
    (void)args;
    st_registry *reg = NULL;
    st_registry_model_info *info = NULL;
    int n = 0;
    if (st_registry_open(m->home, &reg) != ST_OK || st_registry_list(reg, &info, &n) != ST_OK) {
        st_registry_close(reg);
        return tool_error(m, "list_models: %s", st_last_error());
    }
    st_strbuf b = {0};
    json_t *arr = json_array();
    if (m->model_name) st_strbuf_printf(&b, "loaded: %s\n", m->model_name);
    st_strbuf_printf(&b, "registry (%s): %d model%s\n", st_registry_root(reg), n,
                     n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        json_t *tags = json_array();
        st_strbuf_printf(&b, "- %s: %d revision%s, latest %.12s", info[i].name,
                         info[i].n_revisions, info[i].n_revisions == 1 ? "" : "s",
                         info[i].latest[0] ? info[i].latest : "(none)");
        for (int t = 0; t < info[i].n_tags; t++) {
            st_strbuf_printf(&b, "%s%s", t ? ", " : "; tags: ", info[i].tags[t].name);
            json_array_append_new(tags, st__json_string_lossy(info[i].tags[t].name));
        }
        st_strbuf_puts(&b, "\n");
        json_array_append_new(arr, json_pack("{s:o, s:i, s:s, s:o}", "name",
                                             st__json_string_lossy(info[i].name), "revisions",
                                             info[i].n_revisions, "latest", info[i].latest,
                                             "tags", tags));
    }
    st_registry_models_free(info, n);
    st_registry_close(reg);
    json_t *res = NULL;
    if (!b.failed)
        res = tool_result(m, b.p, false,
                          json_pack("{s:o, s:o}", "loaded", st__json_string_lossy(m->model_name),
                                    "models", arr));
    else json_decref(arr);
    st_strbuf_free(&b);
    return res;
}

static json_t *m_tools_call(st_mcp *m, json_t *id, json_t *params) {
    json_t *name = json_object_get(params, "name");
    json_t *args = json_object_get(params, "arguments");
    if (!json_is_string(name))
        return reply_error(id, RPC_INVALID_PARAMS, NULL, "tools/call: params.name (a string) is required");
    if (args && !json_is_object(args) && !json_is_null(args))
        return reply_error(id, RPC_INVALID_PARAMS, NULL, "tools/call: params.arguments must be an object");
    json_t *empty = NULL;
    if (!json_is_object(args)) args = empty = json_object();
    const char *n = json_string_value(name);
    json_t *res;
    if (strcmp(n, "rag_search") == 0) res = t_rag_search(m, args);
    else if (strcmp(n, "rag_ask") == 0) res = t_rag_ask(m, args);
    else if (strcmp(n, "generate") == 0) res = t_generate(m, args);
    else if (strcmp(n, "list_models") == 0) res = t_list_models(m, args);
    else {
        json_decref(empty);
        return reply_error(id, RPC_INVALID_PARAMS, NULL, "Unknown tool: %.200s", n);
    }
    json_decref(empty);
    if (!res) return reply_error(id, RPC_INTERNAL_ERROR, NULL, "out of memory");
    return reply_result(id, res);
}

/* The index names resources come from: --index, else all of them. */
static st_status resource_indexes(st_mcp *m, char ***names, int *n) {
    if (m->index) {
        char **a = st_malloc(sizeof *a);
        if (!a || !(a[0] = st_strdup(m->index))) {
            st_free(a);
            return st__fail(ST_ERR_NOMEM, "no memory");
        }
        *names = a;
        *n = 1;
        return ST_OK;
    }
    return st_rag_list_indexes(m->home, names, n);
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) st_free(names[i]);
    st_free(names);
}

static json_t *m_resources_list(st_mcp *m, json_t *id, json_t *params) {
    json_t *cur = json_object_get(params, "cursor");
    long long start = 0;
    if (cur) {
        const char *c = json_is_string(cur) ? json_string_value(cur) : "";
        char *end = NULL;
        errno = 0;
        start = strtoll(c, &end, 10);
        if (!*c || *end || errno || start < 0)
            return reply_error(id, RPC_INVALID_PARAMS, NULL, "resources/list: invalid cursor");
    }
    char **names = NULL;
    int n_names = 0;
    if (resource_indexes(m, &names, &n_names) != ST_OK)
        return reply_error(id, RPC_INTERNAL_ERROR, NULL, "resources/list: %s", st_last_error());
    json_t *list = json_array();
    long long pos = 0;
    bool more = false;
    for (int i = 0; i < n_names && !more; i++) {
        st_rag *r = index_get(m, names[i]);
        if (!r) { /* a damaged or vanished index: the others are still listed */
            st_log_msg(ST_LOG_WARN, "strata mcp: index %s: %s", names[i], st_last_error());
            continue;
        }
        st_rag_doc *docs = NULL;
        int n_docs = 0;
        if (st_rag_list_docs(r, &docs, &n_docs) != ST_OK) {
            st_log_msg(ST_LOG_WARN, "strata mcp: index %s: %s", names[i], st_last_error());
            continue;
        }
        for (int d = 0; d < n_docs; d++, pos++) {
            if (pos < start) continue;
            if (pos >= start + RESOURCES_PAGE) {
                more = true;
                break;
            }
            char *uri = uri_of(names[i], docs[d].path);
            char desc[256];
            snprintf(desc, sizeof desc, "%lld chunks in RAG index %s, SHA-256 %.16s",
                     (long long)docs[d].n_chunks, names[i], docs[d].sha256);
            json_array_append_new(
                list, json_pack("{s:o, s:o, s:o, s:o, s:s, s:I}", "uri",
                                st__json_string_lossy(uri), "name",
                                st__json_string_lossy(base_name(docs[d].path)), "title",
                                st__json_string_lossy(docs[d].path), "description",
                                st__json_string_lossy(desc), "mimeType", mime_of(docs[d].path),
                                "size", (json_int_t)docs[d].bytes));
            st_free(uri);
        }
        st_rag_docs_free(docs, n_docs);
    }
    free_names(names, n_names);
    json_t *r = json_pack("{s:o}", "resources", list);
    if (r && more) {
        char next[32];
        snprintf(next, sizeof next, "%lld", start + RESOURCES_PAGE);
        json_object_set_new(r, "nextCursor", json_string(next));
    }
    return reply_result(id, r);
}

static json_t *m_resources_read(st_mcp *m, json_t *id, json_t *params) {
    json_t *u = json_object_get(params, "uri");
    if (!json_is_string(u))
        return reply_error(id, RPC_INVALID_PARAMS, NULL, "resources/read: params.uri (a string) is required");
    const char *uri = json_string_value(u);
    const char *pre = "strata-rag://", *file = "file://";
    char index[160] = "", *path = NULL;
    if (strncmp(uri, pre, strlen(pre)) == 0) {
        const char *s = uri + strlen(pre), *slash = strchr(s, '/');
        if (slash && (size_t)(slash - s) < sizeof index) {
            memcpy(index, s, (size_t)(slash - s));
            index[slash - s] = 0;
            path = pct_decode(slash);
        }
    } else if (strncmp(uri, file, strlen(file)) == 0 && uri[strlen(file)] == '/') {
        path = pct_decode(uri + strlen(file));
    }
    json_t *data = json_pack("{s:o}", "uri", st__json_string_lossy(uri));
    if (!path) return reply_error(id, MCP_RESOURCE_NOT_FOUND, data, "Resource not found: %.300s", uri);
    char **names = NULL;
    int n_names = 0;
    if (index[0]) {
        if (valid_index_name(index) && (!m->index || strcmp(index, m->index) == 0)) {
            names = st_malloc(sizeof *names);
            if (names && (names[0] = st_strdup(index))) n_names = 1;
        }
    } else if (resource_indexes(m, &names, &n_names) != ST_OK) {
        n_names = 0;
    }
    char *text = NULL;
    size_t n_text = 0;
    for (int i = 0; i < n_names && !text; i++) {
        st_rag *r = index_get(m, names[i]);
        if (r && st_rag_doc_text(r, path, &text, &n_text) != ST_OK) text = NULL;
    }
    free_names(names, n_names);
    json_t *res = NULL;
    if (text) {
        json_t *t = json_stringn(text, n_text);
        if (!t) { /* not UTF-8 after all: sent with U+FFFD in place of the bad bytes */
            size_t k = 0;
            char *v = st__utf8_valid_copy(text, n_text, &k);
            t = v ? json_stringn(v, k) : NULL;
            st_free(v);
        }
        res = t ? json_pack("{s:[{s:O, s:s, s:o}]}", "contents", "uri", u, "mimeType",
                            mime_of(path), "text", t)
                : NULL;
        st_free(text);
        st_free(path);
        json_decref(data);
        return res ? reply_result(id, res) : reply_error(id, RPC_INTERNAL_ERROR, NULL, "out of memory");
    }
    st_free(path);
    return reply_error(id, MCP_RESOURCE_NOT_FOUND, data, "Resource not found: %.300s", uri);
}

/* ---- JSON-RPC framing -------------------------------------------------------------------- */

/* The reply to one message object (NULL: none), or NULL for a notification. */
static json_t *handle_one(st_mcp *m, json_t *req, bool in_batch) {
    if (!json_is_object(req))
        return reply_error(NULL, RPC_INVALID_REQUEST, NULL, "Invalid Request: not a JSON object");
    json_t *id = json_object_get(req, "id");
    json_t *method = json_object_get(req, "method");
    json_t *params = json_object_get(req, "params");
    json_t *ver = json_object_get(req, "jsonrpc");
    bool valid_id = !id || json_is_string(id) || json_is_integer(id) || json_is_real(id);
    if (!method && id && (json_object_get(req, "result") || json_object_get(req, "error")))
        return NULL; /* a response (this server sends no requests): nothing to say */
    if (!valid_id || !json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0 ||
        !json_is_string(method) || (params && !json_is_object(params) && !json_is_array(params)))
        return reply_error(valid_id ? id : NULL, RPC_INVALID_REQUEST, NULL,
                           "Invalid Request: %s",
                           !valid_id                     ? "id must be a string or a number"
                           : !json_is_string(ver) ||
                                   strcmp(json_string_value(ver), "2.0") != 0
                               ? "jsonrpc must be \"2.0\""
                           : !json_is_string(method) ? "method must be a string"
                                                     : "params must be an object or an array");
    const char *meth = json_string_value(method);
    if (!id) { /* a notification: acted on (none needs action here), never answered */
        if (strcmp(meth, "notifications/initialized") == 0)
            st_log_msg(ST_LOG_INFO, "strata mcp: client initialized (protocol %s)", m->version);
        return NULL;
    }
    if (params && !json_is_object(params))
        return reply_error(id, RPC_INVALID_PARAMS, NULL, "%.100s: params must be an object", meth);
    json_t *empty = NULL;
    if (!params) params = empty = json_object();
    json_t *r;
    if (strcmp(meth, "initialize") == 0)
        r = in_batch ? reply_error(id, RPC_INVALID_REQUEST, NULL,
                                   "Invalid Request: initialize must not be part of a batch")
                     : m_initialize(m, id, params);
    else if (strcmp(meth, "ping") == 0) r = reply_result(id, json_object());
    else if (strcmp(meth, "tools/list") == 0) r = m_tools_list(m, id, params);
    else if (strcmp(meth, "tools/call") == 0) r = m_tools_call(m, id, params);
    else if (strcmp(meth, "resources/list") == 0) r = m_resources_list(m, id, params);
    else if (strcmp(meth, "resources/templates/list") == 0)
        r = reply_result(id, json_pack("{s:[]}", "resourceTemplates"));
    else if (strcmp(meth, "resources/read") == 0) r = m_resources_read(m, id, params);
    else
        r = reply_error(id, RPC_METHOD_NOT_FOUND,
                        json_pack("{s:o}", "method", st__json_string_lossy(meth)),
                        "Method not found: %.200s", meth);
    json_decref(empty);
    if (!r) r = reply_error(id, RPC_INTERNAL_ERROR, NULL, "out of memory");
    return r;
}

st_status st_mcp_handle(st_mcp *m, const char *msg, size_t n, char **reply, size_t *n_reply) {
    if (!m || (!msg && n) || !reply)
        return st__fail(ST_ERR_INVALID_ARG, "st_mcp_handle: NULL argument");
    *reply = NULL;
    if (n_reply) *n_reply = 0;
    json_t *out = NULL;
    json_error_t je;
    json_t *in = n > m->p.max_message_bytes ? NULL : json_loadb(msg ? msg : "", n, JSON_DECODE_ANY, &je);
    if (n > m->p.max_message_bytes) {
        out = reply_error(NULL, RPC_INVALID_REQUEST, NULL,
                          "Invalid Request: the message has %zu bytes, over the limit of %zu", n,
                          m->p.max_message_bytes);
    } else if (!in) {
        out = reply_error(NULL, RPC_PARSE_ERROR, NULL, "Parse error: %s (line %d, column %d)",
                          je.text, je.line, je.column);
    } else if (json_is_array(in)) {
        if (json_array_size(in) == 0) {
            out = reply_error(NULL, RPC_INVALID_REQUEST, NULL, "Invalid Request: an empty batch");
        } else {
            out = json_array();
            for (size_t i = 0; out && i < json_array_size(in); i++) {
                json_t *r = handle_one(m, json_array_get(in, i), true);
                if (r && json_array_append_new(out, r) != 0) {
                    json_decref(out);
                    out = NULL;
                }
            }
            if (out && json_array_size(out) == 0) { /* only notifications: no reply at all */
                json_decref(out);
                json_decref(in);
                return ST_OK;
            }
            if (!out) out = reply_error(NULL, RPC_INTERNAL_ERROR, NULL, "out of memory");
        }
    } else {
        out = handle_one(m, in, false);
        if (!out) { /* a notification or a response */
            json_decref(in);
            return ST_OK;
        }
    }
    json_decref(in);
    /* compact, one line: JSON strings escape every newline */
    char *txt = out ? json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(out);
    if (!txt) return st__fail(ST_ERR_NOMEM, "st_mcp_handle: no memory for the reply");
    size_t len = strlen(txt);
    *reply = st_malloc(len + 1);
    if (!*reply) {
        free(txt);
        return st__fail(ST_ERR_NOMEM, "st_mcp_handle: no memory for the reply");
    }
    memcpy(*reply, txt, len + 1);
    free(txt);
    if (n_reply) *n_reply = len;
    return ST_OK;
}

/* ---- the stdio loop ----------------------------------------------------------------------- */

static st_status write_line(FILE *out, const char *s, size_t n) {
    if (fwrite(s, 1, n, out) != n || fputc('\n', out) == EOF || fflush(out) != 0)
        return st__fail(ST_ERR_IO, "strata mcp: writing a reply to the client: %s",
                        strerror(errno));
    return ST_OK;
}

st_status st_mcp_serve(st_mcp *m, FILE *in, FILE *out) {
    if (!m || !in || !out) return st__fail(ST_ERR_INVALID_ARG, "st_mcp_serve: NULL argument");
    const size_t max = m->p.max_message_bytes;
    char *line = st_malloc(max + 1);
    if (!line) return st__fail(ST_ERR_NOMEM, "st_mcp_serve: no memory for a %zu-byte line", max);
    st_status s = ST_OK;
    for (;;) {
        size_t n = 0;
        bool over = false;
        int c;
        while ((c = getc(in)) != EOF && c != '\n') {
            if (n < max) line[n++] = (char)c;
            else over = true; /* the rest of the line is read and dropped */
        }
        if (c == EOF && ferror(in)) {
            s = st__fail(ST_ERR_IO, "strata mcp: reading the client's messages: %s",
                         strerror(errno));
            break;
        }
        if (c == EOF && n == 0 && !over) break;
        if (n > 0 && line[n - 1] == '\r') n--;
        size_t i = 0;
        while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
        char *reply = NULL;
        size_t n_reply = 0;
        if (over) {
            char buf[160];
            int k = snprintf(buf, sizeof buf,
                             "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":%d,\"message\":"
                             "\"Invalid Request: a message over %zu bytes\"}}",
                             RPC_INVALID_REQUEST, max);
            st_log_msg(ST_LOG_WARN, "strata mcp: dropped a message over %zu bytes", max);
            if ((s = write_line(out, buf, (size_t)k)) != ST_OK) break;
        } else if (i < n) {
            if ((s = st_mcp_handle(m, line, n, &reply, &n_reply)) != ST_OK) break;
            if (reply) s = write_line(out, reply, n_reply);
            st_free(reply);
            if (s) break;
        }
        if (c == EOF) break;
    }
    st_free(line);
    return s;
}
