/*
 * openai.c — request parsing and validation for the OpenAI-compatible API.
 *
 * Bodies are outside data: jansson parses them (with a depth limit of its
 * own), then every field is checked for type and range before anything
 * reads it, and a failure names the parameter the way OpenAI's API does
 * ({"error": {"message", "type": "invalid_request_error", "param", "code"}}),
 * so a client's exception carries a message a person can act on.
 *
 * Unknown fields are ignored (OpenAI's clients send fields a server may not
 * know); known fields of the wrong type are errors. Strings are copied with
 * st_strdup, so the st__srv_req owns everything it points to and outlives
 * the JSON document.
 */
#include "serve/serve_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void st__srv_error_set(st__srv_error *err, int http_status, const char *type, const char *param,
                       const char *code, const char *fmt, ...) {
    if (!err) return;
    err->http_status = http_status;
    err->type = type ? type : "invalid_request_error";
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

char *st__srv_error_json(const st__srv_error *err) {
    json_t *e = json_object();
    json_object_set_new(e, "message", json_string(err->message));
    json_object_set_new(e, "type", json_string(err->type ? err->type : "invalid_request_error"));
    json_object_set_new(e, "param", err->param[0] ? json_string(err->param) : json_null());
    json_object_set_new(e, "code", err->code ? json_string(err->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", e);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    char *out = s ? st_strdup(s) : NULL;
    free(s);
    return out;
}

const char *st__srv_finish_name(st__srv_finish f) {
    switch (f) {
    case ST_SRV_FINISH_STOP: return "stop";
    case ST_SRV_FINISH_LENGTH: return "length";
    default: return NULL;
    }
}

void st__srv_req_clear(st__srv_req *req) {
    if (!req) return;
    for (int i = 0; i < req->n_prompts; i++) {
        st_free(req->prompts ? req->prompts[i] : NULL);
        st_free(req->prompt_ids ? req->prompt_ids[i] : NULL);
    }
    st_free(req->prompts);
    st_free(req->prompt_ids);
    st_free(req->n_prompt_ids);
    for (int i = 0; i < req->n_messages; i++) {
        st_free(req->messages[i].role);
        st_free(req->messages[i].content);
    }
    st_free(req->messages);
    for (int i = 0; i < req->n_stop; i++) st_free(req->stop[i]);
    st_free(req->model);
    st_free(req->user);
    memset(req, 0, sizeof *req);
}

/* ---- field readers: each returns false with err filled ------------------------ */

static bool bad(st__srv_error *err, const char *param, const char *fmt, const char *what) {
    st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_value", fmt, param,
                      what);
    return false;
}

static bool get_number(json_t *o, const char *key, double lo, double hi, float *out,
                       st__srv_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return bad(err, key, "'%s' must be a number%s", "");
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi) {
        st__srv_error_set(err, 400, "invalid_request_error", key, "invalid_value",
                          "'%s' must be between %g and %g (got %g)", key, lo, hi, d);
        return false;
    }
    *out = (float)d;
    return true;
}

static bool get_int(json_t *o, const char *key, long long lo, long long hi, int *out,
                    st__srv_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) return bad(err, key, "'%s' must be an integer%s", "");
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        st__srv_error_set(err, 400, "invalid_request_error", key, "invalid_value",
                          "'%s' must be between %lld and %lld (got %lld)", key, lo, hi, x);
        return false;
    }
    *out = (int)x;
    return true;
}

static bool get_bool(json_t *o, const char *key, bool *out, st__srv_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return bad(err, key, "'%s' must be a boolean%s", "");
    *out = json_is_true(v);
    return true;
}

static bool get_string(json_t *o, const char *key, char **out, st__srv_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_string(v)) return bad(err, key, "'%s' must be a string%s", "");
    *out = st_strdup(json_string_value(v));
    if (!*out) {
        st__srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    return true;
}

static bool oom(st__srv_error *err) {
    st__srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return false;
}

/* An array of token ids (each in [0, 2^31)). */
static bool read_ids(json_t *a, const char *param, int32_t **ids, int *n, st__srv_error *err) {
    size_t len = json_array_size(a);
    *ids = st_malloc((len ? len : 1) * sizeof(int32_t));
    if (!*ids) return oom(err);
    for (size_t i = 0; i < len; i++) {
        json_t *x = json_array_get(a, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 ||
            json_integer_value(x) > INT32_MAX) {
            st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_value",
                              "'%s' item %zu must be a non-negative token id", param, i);
            return false;
        }
        (*ids)[i] = (int32_t)json_integer_value(x);
    }
    *n = (int)len;
    return true;
}

/* prompt / input: a string, an array of strings, an array of ids or an
 * array of arrays of ids. */
static bool read_inputs(json_t *v, const char *param, const st__srv_limits *lim,
                        st__srv_req *req, st__srv_error *err) {
    if (!v || json_is_null(v)) {
        st__srv_error_set(err, 400, "invalid_request_error", param, "missing_required_parameter",
                          "'%s' is required", param);
        return false;
    }
    int count;
    bool ids_flat = false;
    if (json_is_string(v)) {
        count = 1;
    } else if (json_is_array(v)) {
        size_t len = json_array_size(v);
        if (len == 0) {
            st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_value",
                              "'%s' must not be empty", param);
            return false;
        }
        ids_flat = json_is_integer(json_array_get(v, 0));
        count = ids_flat ? 1 : (len > (size_t)lim->max_inputs ? lim->max_inputs + 1 : (int)len);
        if (count > lim->max_inputs) {
            st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_value",
                              "'%s' has more than %d items", param, lim->max_inputs);
            return false;
        }
    } else {
        st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_type",
                          "'%s' must be a string, an array of strings or of token ids", param);
        return false;
    }
    req->prompts = st_calloc((size_t)count, sizeof *req->prompts);
    req->prompt_ids = st_calloc((size_t)count, sizeof *req->prompt_ids);
    req->n_prompt_ids = st_calloc((size_t)count, sizeof *req->n_prompt_ids);
    if (!req->prompts || !req->prompt_ids || !req->n_prompt_ids) return oom(err);
    req->n_prompts = count;
    if (json_is_string(v)) {
        if (json_string_length(v) > lim->max_prompt_bytes) goto too_long;
        if (!(req->prompts[0] = st_strdup(json_string_value(v)))) return oom(err);
        return true;
    }
    if (ids_flat) return read_ids(v, param, &req->prompt_ids[0], &req->n_prompt_ids[0], err);
    for (int i = 0; i < count; i++) {
        json_t *x = json_array_get(v, (size_t)i);
        if (json_is_string(x)) {
            if (json_string_length(x) > lim->max_prompt_bytes) goto too_long;
            if (!(req->prompts[i] = st_strdup(json_string_value(x)))) return oom(err);
        } else if (json_is_array(x)) {
            if (!read_ids(x, param, &req->prompt_ids[i], &req->n_prompt_ids[i], err))
                return false;
        } else {
            st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_type",
                              "'%s' item %d must be a string or an array of token ids", param, i);
            return false;
        }
    }
    return true;
too_long:
    st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_value",
                      "'%s' is longer than %zu bytes", param, lim->max_prompt_bytes);
    return false;
}

/* content: a string, or an array of parts {"type": "text", "text": ...}. */
static bool read_content(json_t *c, int i, char **out, st__srv_error *err) {
    char param[48];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (!c || json_is_null(c)) {
        *out = st_strdup("");
        return *out ? true : oom(err);
    }
    if (json_is_string(c)) {
        *out = st_strdup(json_string_value(c));
        return *out ? true : oom(err);
    }
    if (!json_is_array(c)) {
        st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_type",
                          "'%s' must be a string or an array of content parts", param);
        return false;
    }
    size_t total = 0;
    for (size_t k = 0; k < json_array_size(c); k++) {
        json_t *p = json_array_get(c, k);
        json_t *t = json_object_get(p, "type"), *tx = json_object_get(p, "text");
        if (!json_is_string(t) || strcmp(json_string_value(t), "text") != 0 ||
            !json_is_string(tx)) {
            st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_value",
                              "'%s' part %zu: only {\"type\": \"text\", \"text\": ...} parts "
                              "are supported",
                              param, k);
            return false;
        }
        total += json_string_length(tx);
    }
    char *s = st_malloc(total + 1);
    if (!s) return oom(err);
    size_t at = 0;
    for (size_t k = 0; k < json_array_size(c); k++) {
        json_t *tx = json_object_get(json_array_get(c, k), "text");
        memcpy(s + at, json_string_value(tx), json_string_length(tx));
        at += json_string_length(tx);
    }
    s[at] = 0;
    *out = s;
    return true;
}

static bool read_messages(json_t *v, const st__srv_limits *lim, st__srv_req *req,
                          st__srv_error *err) {
    if (!json_is_array(v) || json_array_size(v) == 0) {
        st__srv_error_set(err, 400, "invalid_request_error", "messages",
                          v ? "invalid_value" : "missing_required_parameter",
                          "'messages' must be a non-empty array");
        return false;
    }
    size_t n = json_array_size(v);
    if (n > 4096) {
        st__srv_error_set(err, 400, "invalid_request_error", "messages", "invalid_value",
                          "'messages' has more than 4096 items");
        return false;
    }
    req->messages = st_calloc(n, sizeof *req->messages);
    if (!req->messages) return oom(err);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        char param[48];
        snprintf(param, sizeof param, "messages[%zu].role", i);
        json_t *role = json_is_object(m) ? json_object_get(m, "role") : NULL;
        if (!json_is_string(role)) {
            st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_value",
                              "'%s' must be a string", param);
            return false;
        }
        const char *r = json_string_value(role);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") &&
            strcmp(r, "developer") && strcmp(r, "tool")) {
            st__srv_error_set(err, 400, "invalid_request_error", param, "invalid_value",
                              "'%s' must be one of system, developer, user, assistant, tool "
                              "(got '%.40s')",
                              param, r);
            return false;
        }
        req->n_messages = (int)i + 1;
        if (!(req->messages[i].role = st_strdup(r))) return oom(err);
        if (!read_content(json_object_get(m, "content"), (int)i, &req->messages[i].content, err))
            return false;
        total += strlen(req->messages[i].content);
        if (total > lim->max_prompt_bytes) {
            st__srv_error_set(err, 400, "invalid_request_error", "messages", "invalid_value",
                              "'messages' hold more than %zu bytes of text",
                              lim->max_prompt_bytes);
            return false;
        }
    }
    return true;
}

static bool read_stop(json_t *v, st__srv_req *req, st__srv_error *err) {
    if (!v || json_is_null(v)) return true;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return true;
        req->stop[0] = st_strdup(json_string_value(v));
        if (!req->stop[0]) return oom(err);
        req->n_stop = 1;
        return true;
    }
    if (!json_is_array(v) || json_array_size(v) > ST_SRV_MAX_STOP) {
        st__srv_error_set(err, 400, "invalid_request_error", "stop", "invalid_value",
                          "'stop' must be a string or an array of at most %d strings",
                          ST_SRV_MAX_STOP);
        return false;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) {
            st__srv_error_set(err, 400, "invalid_request_error", "stop", "invalid_type",
                              "'stop' item %zu must be a string", i);
            return false;
        }
        if (json_string_length(s) == 0) continue;
        if (!(req->stop[req->n_stop] = st_strdup(json_string_value(s)))) return oom(err);
        req->n_stop++;
    }
    return true;
}

bool st__srv_req_parse(st__srv_kind kind, const char *body, size_t n, const st__srv_limits *lim,
                       st__srv_req *req, st__srv_error *err) {
    memset(req, 0, sizeof *req);
    req->kind = kind;
    req->max_tokens = kind == ST_SRV_COMPLETION ? 16 : -1; /* OpenAI's defaults */
    req->temperature = 1.0f;
    req->top_p = 1.0f;
    req->repetition_penalty = 1.0f;
    req->n = 1;
    json_error_t jerr;
    json_t *root = json_loadb(body, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        st__srv_error_set(err, 400, "invalid_request_error", NULL, "invalid_json",
                          "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
                          jerr.line, jerr.column);
        return false;
    }
    bool ok = false;
    if (!json_is_object(root)) {
        st__srv_error_set(err, 400, "invalid_request_error", NULL, "invalid_json",
                          "the body must be a JSON object");
        goto done;
    }
    if (!get_string(root, "model", &req->model, err) ||
        !get_string(root, "user", &req->user, err))
        goto done;
    if (kind == ST_SRV_EMBEDDING) {
        if (!read_inputs(json_object_get(root, "input"), "input", lim, req, err)) goto done;
        json_t *fmt = json_object_get(root, "encoding_format");
        if (fmt && !json_is_null(fmt)) {
            if (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") &&
                                         strcmp(json_string_value(fmt), "base64"))) {
                st__srv_error_set(err, 400, "invalid_request_error", "encoding_format",
                                  "invalid_value",
                                  "'encoding_format' must be \"float\" or \"base64\"");
                goto done;
            }
            req->base64 = strcmp(json_string_value(fmt), "base64") == 0;
        }
        ok = true;
        goto done;
    }
    if (kind == ST_SRV_COMPLETION) {
        if (!read_inputs(json_object_get(root, "prompt"), "prompt", lim, req, err)) goto done;
        if (!get_bool(root, "echo", &req->echo, err)) goto done;
        int lp = -1;
        if (!get_int(root, "logprobs", 0, 5, &lp, err)) goto done;
        if (lp >= 0) {
            req->logprobs = true;
            req->top_logprobs = lp;
        }
    } else {
        if (!read_messages(json_object_get(root, "messages"), lim, req, err)) goto done;
        if (!get_bool(root, "logprobs", &req->logprobs, err) ||
            !get_int(root, "top_logprobs", 0, ST_SRV_MAX_TOP_LOGPROBS, &req->top_logprobs, err))
            goto done;
        if (req->top_logprobs > 0 && !req->logprobs) {
            st__srv_error_set(err, 400, "invalid_request_error", "top_logprobs",
                              "invalid_value", "'top_logprobs' requires 'logprobs' to be true");
            goto done;
        }
        /* max_completion_tokens is the newer name of max_tokens. */
        if (!get_int(root, "max_completion_tokens", 1, lim->max_tokens, &req->max_tokens, err))
            goto done;
    }
    if (!get_int(root, "max_tokens", kind == ST_SRV_COMPLETION ? 0 : 1, lim->max_tokens,
                 &req->max_tokens, err) ||
        !get_number(root, "temperature", 0.0, 2.0, &req->temperature, err) ||
        !get_number(root, "top_p", 0.0, 1.0, &req->top_p, err) ||
        !get_int(root, "top_k", 0, 1 << 20, &req->top_k, err) ||
        !get_number(root, "min_p", 0.0, 1.0, &req->min_p, err) ||
        !get_number(root, "presence_penalty", -2.0, 2.0, &req->presence_penalty, err) ||
        !get_number(root, "frequency_penalty", -2.0, 2.0, &req->frequency_penalty, err) ||
        !get_number(root, "repetition_penalty", 0.01, 10.0, &req->repetition_penalty, err) ||
        !get_int(root, "n", 1, lim->max_n, &req->n, err) ||
        !get_bool(root, "stream", &req->stream, err) ||
        !read_stop(json_object_get(root, "stop"), req, err))
        goto done;
    if (req->top_p == 0.0f) req->top_p = 1e-6f; /* OpenAI accepts 0: nucleus of one token */
    json_t *seed = json_object_get(root, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) {
            bad(err, "seed", "'%s' must be an integer%s", "");
            goto done;
        }
        req->has_seed = true;
        req->seed = (uint64_t)json_integer_value(seed);
    }
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so) || !req->stream) {
            st__srv_error_set(err, 400, "invalid_request_error", "stream_options",
                              "invalid_value",
                              "'stream_options' must be an object and needs 'stream': true");
            goto done;
        }
        if (!get_bool(so, "include_usage", &req->include_usage, err)) goto done;
    }
    if ((long long)req->n * req->n_prompts > lim->max_n) {
        st__srv_error_set(err, 400, "invalid_request_error", "n", "invalid_value",
                          "'n' times the number of prompts must be at most %d", lim->max_n);
        goto done;
    }
    ok = true;
done:
    json_decref(root);
    if (!ok) st__srv_req_clear(req);
    return ok;
}
