/*
 * test_serve.c — the OpenAI-compatible server (strata/serve.h), driven over
 * real HTTP with libcurl.
 *
 * Units: request validation (every error names its parameter), the chat
 * templates' exact text, the Prometheus exposition, the prompt share of a
 * pass while streams decode. End to end, on a tiny random llama with a
 * char tokenizer: health/ready/models; completions,
 * chat (plain and streamed as server-sent events), embeddings (unit norm);
 * 32 concurrent greedy requests give exactly the texts the same requests
 * give one at a time (continuous batching must not change results); a
 * repeated prompt is served from the prefix cache with the same text;
 * errors in OpenAI's shape: bad JSON 400, missing key 401, huge body 413,
 * unknown route 404, wrong method 405, a full queue 429 with Retry-After;
 * a client that disconnects mid-stream frees its KV blocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "serve/serve_impl.h"
#include "strata/serve.h"

#define OK(expr)                                                                                   \
    do {                                                                                           \
        st_status s_ = (expr);                                                                     \
        if (s_ != ST_OK) fail_msg("%s -> %s: %s", #expr, st_status_name(s_), st_last_error());     \
    } while (0)

/* ---- units -------------------------------------------------------------------------------- */

static const st__srv_limits LIM = {.max_tokens = 100, .max_n = 4, .max_inputs = 8,
                                   .max_prompt_bytes = 4096};

static void expect_error(st__srv_kind kind, const char *body, const char *param) {
    st__srv_req r;
    st__srv_error e;
    if (st__srv_req_parse(kind, body, strlen(body), &LIM, &r, &e))
        fail_msg("accepted: %s", body);
    assert_int_equal(e.http_status, 400);
    if (strcmp(e.param, param) != 0) fail_msg("%s: param '%s', expected '%s' (%s)", body, e.param, param, e.message);
    char *j = st__srv_error_json(&e);
    json_t *root = json_loads(j, 0, NULL);
    assert_non_null(json_object_get(json_object_get(root, "error"), "message"));
    json_decref(root);
    st_free(j);
}

static void test_parse(void **state) {
    (void)state;
    st__srv_req r;
    st__srv_error e;
    const char *ok = "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"],\"max_tokens\":5,\"temperature\":0,"
                     "\"stop\":[\"x\",\"yy\"],\"n\":2,\"seed\":7,\"logprobs\":2,\"unknown\":1}";
    assert_true(st__srv_req_parse(ST_SRV_COMPLETION, ok, strlen(ok), &LIM, &r, &e));
    assert_int_equal(r.n_prompts, 2);
    assert_string_equal(r.prompts[1], "b");
    assert_int_equal(r.max_tokens, 5);
    assert_int_equal(r.n_stop, 2);
    assert_true(r.has_seed && r.seed == 7);
    assert_true(r.logprobs && r.top_logprobs == 2);
    st__srv_req_clear(&r);
    const char *chat = "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\","
                       "\"content\":[{\"type\":\"text\",\"text\":\"he\"},{\"type\":\"text\","
                       "\"text\":\"llo\"}]}],\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    assert_true(st__srv_req_parse(ST_SRV_CHAT, chat, strlen(chat), &LIM, &r, &e));
    assert_int_equal(r.n_messages, 2);
    assert_string_equal(r.messages[1].content, "hello");
    assert_true(r.stream && r.include_usage);
    assert_int_equal(r.max_tokens, -1);
    st__srv_req_clear(&r);
    const char *ids = "{\"input\":[[1,2,3],[4]]}";
    assert_true(st__srv_req_parse(ST_SRV_EMBEDDING, ids, strlen(ids), &LIM, &r, &e));
    assert_int_equal(r.n_prompts, 2);
    assert_int_equal(r.n_prompt_ids[0], 3);
    st__srv_req_clear(&r);

    st__srv_req_parse(ST_SRV_COMPLETION, "{\"prompt\":", 10, &LIM, &r, &e);
    assert_int_equal(e.http_status, 400);
    assert_string_equal(e.code, "invalid_json");
    expect_error(ST_SRV_COMPLETION, "{\"prompt\":\"a\",\"temperature\":\"hot\"}", "temperature");
    expect_error(ST_SRV_COMPLETION, "{\"prompt\":\"a\",\"temperature\":3}", "temperature");
    expect_error(ST_SRV_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":101}", "max_tokens");
    expect_error(ST_SRV_COMPLETION, "{\"prompt\":\"a\",\"n\":5}", "n");
    expect_error(ST_SRV_COMPLETION, "{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":2}", "n");
    expect_error(ST_SRV_COMPLETION, "{\"prompt\":\"a\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}", "stop");
    expect_error(ST_SRV_COMPLETION, "{\"prompt\":7}", "prompt");
    expect_error(ST_SRV_COMPLETION, "{\"prompt\":[1,-2]}", "prompt");
    expect_error(ST_SRV_COMPLETION, "{}", "prompt");
    expect_error(ST_SRV_COMPLETION, "{\"prompt\":\"a\",\"seed\":1.5}", "seed");
    expect_error(ST_SRV_CHAT, "{\"messages\":[]}", "messages");
    expect_error(ST_SRV_CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages[0].role");
    expect_error(ST_SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content");
    expect_error(ST_SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":3}", "top_logprobs");
    expect_error(ST_SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":{}}", "stream_options");
    expect_error(ST_SRV_EMBEDDING, "{\"input\":\"x\",\"encoding_format\":\"hex\"}", "encoding_format");
    char big[5000];
    memset(big, 'a', sizeof big);
    char body[5100];
    snprintf(body, sizeof body, "{\"prompt\":\"%.*s\"}", (int)sizeof big, big);
    expect_error(ST_SRV_COMPLETION, body, "prompt");
}

static void test_templates(void **state) {
    (void)state;
    st_chat_message m[3] = {{"system", " Be brief. "}, {"user", "Hi"}, {"assistant", "Hello"}};
    char *t = NULL;
    OK(st_chat_template_render(ST_CHAT_CHATML, m, 2, &t));
    assert_string_equal(t, "<|im_start|>system\n Be brief. <|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                           "<|im_start|>assistant\n");
    st_free(t);
    st_chat_message m2[4] = {{"system", " Be brief. "}, {"user", "Hi"}, {"assistant", "Hello"}, {"user", "More"}};
    OK(st_chat_template_render(ST_CHAT_LLAMA2, m2, 4, &t));
    assert_string_equal(t, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] More [/INST]");
    st_free(t);
    OK(st_chat_template_render(ST_CHAT_PLAIN, m, 3, &t));
    assert_string_equal(t, "SYSTEM:\nBe brief.\n\nUSER:\nHi\n\nASSISTANT:\nHello\n\nASSISTANT:\n");
    st_free(t);
    assert_int_equal(st_chat_template_detect("{% ... '<|im_start|>' %}", true), ST_CHAT_CHATML);
    assert_int_equal(st_chat_template_detect("{{ '[INST] ' }}", false), ST_CHAT_LLAMA2);
    assert_int_equal(st_chat_template_detect(NULL, true), ST_CHAT_LLAMA2);
    assert_int_equal(st_chat_template_detect(NULL, false), ST_CHAT_CHATML);
}

static void test_metrics(void **state) {
    (void)state;
    st__srv_metrics m;
    st__srv_metrics_init(&m);
    st__srv_metrics_request(&m, 200);
    st__srv_metrics_request(&m, 200);
    st__srv_metrics_request(&m, 429);
    st__srv_metrics_observe(&m, ST_SRV_TTFT, 0.003);
    st__srv_metrics_observe(&m, ST_SRV_TTFT, 0.2);
    st__srv_metrics_gauges(&m, 3, 2, 10, 90, 150);
    char *t = st__srv_metrics_render(&m);
    assert_non_null(strstr(t, "strata_requests_total{status=\"200\"} 2\n"));
    assert_non_null(strstr(t, "strata_requests_total{status=\"429\"} 1\n"));
    assert_non_null(strstr(t, "strata_time_to_first_token_seconds_bucket{le=\"0.001\"} 0\n"));
    assert_non_null(strstr(t, "strata_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(strstr(t, "strata_time_to_first_token_seconds_bucket{le=\"0.25\"} 2\n"));
    assert_non_null(strstr(t, "strata_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(t, "strata_time_to_first_token_seconds_count 2\n"));
    assert_non_null(strstr(t, "strata_kv_blocks_free 90\n"));
    assert_non_null(strstr(t, "# TYPE strata_inter_token_latency_seconds histogram\n"));
    st_free(t);
    st__srv_metrics_destroy(&m);
}

/* ---- end to end --------------------------------------------------------------------------- */

static const char CORPUS[] = "abcdefghijklmnopqrstuvwxyz .,!?\nABCDEFGHIJKLMNOPQRSTUVWXYZ<|>_[]/:";

typedef struct fixture {
    st_ctx *ctx;
    st_tokenizer *tok;
    st_model *model;
    st_lm *lm;
    st_server *srv;
    pthread_t thread;
    char base[64];
    const char *key;
} fixture;

static void *run_server(void *arg) {
    fixture *f = arg;
    st_server_run(f->srv);
    return NULL;
}

static void start(fixture *f, st_server_params p, int n_ctx, int n_embd) {
    memset(f, 0, sizeof *f);
    OK(st_ctx_new(NULL, &f->ctx));
    OK(st_tokenizer_char_from_corpus(CORPUS, sizeof CORPUS - 1, &f->tok));
    st_model_config c = st_model_config_default(ST_ARCH_LLAMA);
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = 2;
    c.n_embd = n_embd;
    c.n_ff = 2 * n_embd;
    c.n_ctx = n_ctx;
    c.vocab_size = st_tokenizer_vocab_size(f->tok);
    OK(st_model_new(f->ctx, &c, 11, &f->model));
    OK(st_lm_from_model(f->model, &f->lm));
    p.port = 0;
    p.model_name = "tiny";
    f->key = p.api_key;
    OK(st_server_new(f->ctx, f->lm, f->tok, &p, &f->srv));
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", st_server_port(f->srv));
    assert_int_equal(pthread_create(&f->thread, NULL, run_server, f), 0);
}

static void stop(fixture *f) {
    st_server_stop(f->srv);
    pthread_join(f->thread, NULL);
    st_server_free(f->srv);
    st_lm_free(f->lm);
    st_model_free(f->model);
    st_tokenizer_free(f->tok);
    st_ctx_free(f->ctx);
}

typedef struct reply {
    long status;
    char *body;
    size_t n;
    size_t abort_after; /* >0: the client hangs up after this many bytes */
    char retry_after[16];
} reply;

static size_t on_data(char *p, size_t sz, size_t nm, void *u) {
    reply *r = u;
    size_t n = sz * nm;
    char *b = realloc(r->body, r->n + n + 1);
    if (!b) return 0;
    r->body = b;
    memcpy(r->body + r->n, p, n);
    r->n += n;
    r->body[r->n] = 0;
    if (r->abort_after && r->n >= r->abort_after) return 0;
    return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *u) {
    reply *r = u;
    size_t n = sz * nm;
    if (n > 13 && strncasecmp(p, "Retry-After: ", 13) == 0)
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)(n - 13 - 2), p + 13);
    return n;
}

static reply http(const fixture *f, const char *method, const char *path, const char *body,
                  const char *key, size_t abort_after) {
    reply r = {0};
    r.abort_after = abort_after;
    CURL *c = curl_easy_init();
    char url[256], auth[128];
    snprintf(url, sizeof url, "%s%s", f->base, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK && !(abort_after && rc == CURLE_WRITE_ERROR))
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (!r.body) r.body = calloc(1, 1);
    return r;
}

static json_t *json_of(const reply *r) {
    json_error_t e;
    json_t *j = json_loads(r->body, 0, &e);
    if (!j) fail_msg("not JSON (%s): %.300s", e.text, r->body);
    return j;
}

static const char *error_code(json_t *j) {
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

/* The text of a greedy completion of prompt. */
static char *complete(const fixture *f, const char *prompt, int max_tokens) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"tiny\",\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0}", prompt,
             max_tokens);
    reply r = http(f, "POST", "/v1/completions", body, f->key, 0);
    if (r.status != 200) fail_msg("completion: %ld %s", r.status, r.body);
    json_t *j = json_of(&r);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    char *text = strdup(json_string_value(json_object_get(c0, "text")));
    json_decref(j);
    free(r.body);
    return text;
}

typedef struct par_arg {
    const fixture *f;
    const char *prompt;
    char *text;
} par_arg;

static void *par_complete(void *a) {
    par_arg *p = a;
    p->text = complete(p->f, p->prompt, 24);
    return NULL;
}

static double metric(const fixture *f, const char *name) {
    reply r = http(f, "GET", "/metrics", NULL, NULL, 0);
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *at = strstr(r.body, key);
    double v = at ? atof(at + strlen(key)) : -1;
    free(r.body);
    return v;
}

static void test_end_to_end(void **state) {
    (void)state;
    fixture f;
    st_server_params p = st_server_default_params();
    p.api_key = "sekret";
    p.max_body_bytes = 8192;
    p.max_running = 16;
    p.max_batch_tokens = 64;
    p.prefill_chunk = 16;
    start(&f, p, 128, 32);

    reply r = http(&f, "GET", "/health", NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    free(r.body);
    r = http(&f, "GET", "/ready", NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    free(r.body);
    r = http(&f, "GET", "/v1/models", NULL, "sekret", 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_of(&r);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id")), "tiny");
    json_decref(j);
    free(r.body);

    /* completions: shape and usage */
    r = http(&f, "POST", "/v1/completions",
             "{\"model\":\"tiny\",\"prompt\":\"hello\",\"max_tokens\":6,\"temperature\":0,\"logprobs\":2}",
             "sekret", 0);
    assert_int_equal(r.status, 200);
    j = json_of(&r);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 5);
    assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 6);
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 11);
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "length");
    json_t *lp = json_object_get(c0, "logprobs");
    assert_int_equal(json_array_size(json_object_get(lp, "tokens")), 6);
    assert_int_equal(json_object_size(json_array_get(json_object_get(lp, "top_logprobs"), 0)) >= 1, 1);
    for (size_t i = 0; i < 6; i++)
        assert_true(json_real_value(json_array_get(json_object_get(lp, "token_logprobs"), i)) <= 0.0);
    json_decref(j);
    free(r.body);

    /* 32 prompts one at a time, then all at once: identical texts */
    enum { NP = 32 };
    char prompts[NP][32];
    char *seq_text[NP];
    for (int i = 0; i < NP; i++) {
        snprintf(prompts[i], sizeof prompts[i], "%.*s", 3 + i % 17, "the quick brown fox jumps over it");
        prompts[i][0] = (char)('a' + i % 26);
        seq_text[i] = complete(&f, prompts[i], 24);
    }
    pthread_t th[NP];
    par_arg pa[NP];
    for (int i = 0; i < NP; i++) {
        pa[i] = (par_arg){&f, prompts[i], NULL};
        assert_int_equal(pthread_create(&th[i], NULL, par_complete, &pa[i]), 0);
    }
    for (int i = 0; i < NP; i++) {
        pthread_join(th[i], NULL);
        if (strcmp(pa[i].text, seq_text[i]) != 0)
            fail_msg("prompt %d: batched '%s' != alone '%s'", i, pa[i].text, seq_text[i]);
        free(pa[i].text);
        free(seq_text[i]);
    }

    /* a long prompt twice: the second reuses cached blocks, same text */
    const char *longp = "the quick brown fox jumps over the lazy dog, and then the dog sleeps.";
    double hits0 = metric(&f, "strata_prefix_cache_hit_tokens_total");
    char *t1 = complete(&f, longp, 10);
    char *t2 = complete(&f, longp, 10);
    assert_string_equal(t1, t2);
    assert_true(metric(&f, "strata_prefix_cache_hit_tokens_total") >= hits0 + 48);
    free(t1);
    free(t2);

    /* chat, plain and streamed: the same text */
    const char *chat = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}],"
                       "\"max_tokens\":12,\"temperature\":0%s}";
    char body[512];
    snprintf(body, sizeof body, chat, "");
    r = http(&f, "POST", "/v1/chat/completions", body, "sekret", 0);
    if (r.status != 200) fail_msg("chat: %ld %s", r.status, r.body);
    j = json_of(&r);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
    char *plain = strdup(json_string_value(json_object_get(msg, "content")));
    json_decref(j);
    free(r.body);
    snprintf(body, sizeof body, chat, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    r = http(&f, "POST", "/v1/chat/completions", body, "sekret", 0);
    assert_int_equal(r.status, 200);
    char streamed[4096] = "";
    int events = 0;
    bool done = false, usage = false, finish = false;
    for (char *line = strtok(r.body, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "data: ", 6) != 0) fail_msg("not an SSE data line: %s", line);
        if (!strcmp(line + 6, "[DONE]")) {
            done = true;
            continue;
        }
        assert_false(done);
        json_t *ch = json_loads(line + 6, 0, NULL);
        assert_non_null(ch);
        assert_string_equal(json_string_value(json_object_get(ch, "object")), "chat.completion.chunk");
        json_t *choices = json_object_get(ch, "choices");
        if (json_array_size(choices) == 0) usage = json_object_get(ch, "usage") != NULL;
        else {
            json_t *d = json_object_get(json_array_get(choices, 0), "delta");
            const char *piece = json_string_value(json_object_get(d, "content"));
            if (piece) strncat(streamed, piece, sizeof streamed - strlen(streamed) - 1);
            finish |= json_is_string(json_object_get(json_array_get(choices, 0), "finish_reason"));
        }
        events++;
        json_decref(ch);
    }
    assert_true(done && usage && finish && events >= 3);
    assert_string_equal(streamed, plain);
    free(plain);
    free(r.body);

    /* embeddings: unit vectors, one per input */
    r = http(&f, "POST", "/v1/embeddings", "{\"model\":\"tiny\",\"input\":[\"abc\",\"hello world\"]}", "sekret", 0);
    assert_int_equal(r.status, 200);
    j = json_of(&r);
    json_t *data = json_object_get(j, "data");
    assert_int_equal(json_array_size(data), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *e = json_object_get(json_array_get(data, i), "embedding");
        assert_int_equal(json_array_size(e), 32);
        double n2 = 0;
        for (size_t k = 0; k < 32; k++) n2 += pow(json_real_value(json_array_get(e, k)), 2);
        assert_true(fabs(n2 - 1.0) < 1e-4);
    }
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")), 14);
    json_decref(j);
    free(r.body);

    /* errors, in OpenAI's shape */
    r = http(&f, "POST", "/v1/completions", "{\"prompt\":", "sekret", 0);
    assert_int_equal(r.status, 400);
    j = json_of(&r);
    assert_string_equal(error_code(j), "invalid_json");
    json_decref(j);
    free(r.body);
    r = http(&f, "POST", "/v1/completions", "{\"prompt\":\"a\"}", NULL, 0);
    assert_int_equal(r.status, 401);
    free(r.body);
    r = http(&f, "POST", "/v1/completions", "{\"prompt\":\"a\"}", "wrong", 0);
    assert_int_equal(r.status, 401);
    free(r.body);
    char *huge = malloc(20000);
    memset(huge, ' ', 19999);
    huge[19999] = 0;
    memcpy(huge, "{\"prompt\":\"a\"", 13);
    huge[19998] = '}';
    r = http(&f, "POST", "/v1/completions", huge, "sekret", 0);
    assert_int_equal(r.status, 413);
    free(huge);
    free(r.body);
    r = http(&f, "POST", "/v1/nothing", "{}", "sekret", 0);
    assert_int_equal(r.status, 404);
    free(r.body);
    r = http(&f, "GET", "/v1/completions", NULL, "sekret", 0);
    assert_int_equal(r.status, 405);
    free(r.body);
    r = http(&f, "POST", "/v1/completions", "{\"model\":\"other\",\"prompt\":\"a\"}", "sekret", 0);
    assert_int_equal(r.status, 404);
    j = json_of(&r);
    assert_string_equal(error_code(j), "model_not_found");
    json_decref(j);
    free(r.body);
    r = http(&f, "POST", "/v1/completions", "{\"prompt\":\"\\u00e9\"}", "sekret", 0);
    assert_int_equal(r.status, 400); /* a character the char tokenizer lacks */
    free(r.body);

    /* metrics saw it all */
    assert_true(metric(&f, "strata_generated_tokens_total") > 32 * 24);
    assert_int_equal((int)metric(&f, "strata_running_sequences"), 0);
    stop(&f);
}

/* Queue limits and disconnects, on a server with one running slot and no
 * prefix cache (so freed blocks are exactly the pool). The model's context
 * is long so that the hung-up stream would run for seconds (2000 tokens)
 * had it not been cancelled. */
static void test_limits(void **state) {
    (void)state;
    fixture f;
    st_server_params p = st_server_default_params();
    p.max_queue = 1;
    p.max_running = 1;
    p.max_batch_tokens = 16;
    p.prefix_cache = false;
    start(&f, p, 2048, 128);
    reply r = http(&f, "POST", "/v1/completions", "{\"prompt\":\"ab\",\"n\":2,\"max_tokens\":2}", NULL, 0);
    assert_int_equal(r.status, 429);
    assert_string_equal(r.retry_after, "1");
    json_t *j = json_of(&r);
    assert_string_equal(error_code(j), "rate_limit_exceeded");
    json_decref(j);
    free(r.body);
    /* a streaming client that hangs up: its sequence ends, its blocks come back */
    r = http(&f, "POST", "/v1/completions",
             "{\"prompt\":\"abc\",\"max_tokens\":2000,\"temperature\":0,\"stream\":true}", NULL, 200);
    free(r.body);
    struct st_server *s = f.srv;
    for (int i = 0; i < 200 && (metric(&f, "strata_running_sequences") != 0 ||
                                metric(&f, "strata_cancellations_total") < 1);
         i++)
        usleep(20000);
    assert_int_equal((int)metric(&f, "strata_cancellations_total"), 1);
    for (int i = 0; i < 100 && st_kv_n_free(s->kv) != st_kv_n_blocks(s->kv); i++) usleep(20000);
    assert_int_equal(st_kv_n_free(s->kv), st_kv_n_blocks(s->kv));
    /* slowloris: idle connections with half-sent requests do not block others */
    int socks[40];
    for (int i = 0; i < 40; i++) {
        socks[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)st_server_port(f.srv))};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        assert_int_equal(connect(socks[i], (struct sockaddr *)&a, sizeof a), 0);
        const char *partial = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro";
        assert_true(write(socks[i], partial, strlen(partial)) > 0);
    }
    /* the server still answers */
    char *t = complete(&f, "abc", 3);
    assert_int_equal(strlen(t) > 0, 1);
    free(t);
    for (int i = 0; i < 40; i++) close(socks[i]);
    stop(&f);
}

/* The scheduler's policy: the whole budget with no one decoding, else
 * max(prefill_while_decoding, decoders / 2), never past what is left. */
static void test_prefill_budget(void **state) {
    (void)state;
    st_server_params p = st_server_default_params();
    assert_int_equal(p.prefill_while_decoding, 8);
    assert_int_equal(st__srv_prefill_budget(&p, 0, 512), 512);
    assert_int_equal(st__srv_prefill_budget(&p, 1, 511), 8);
    assert_int_equal(st__srv_prefill_budget(&p, 16, 496), 8);
    assert_int_equal(st__srv_prefill_budget(&p, 17, 495), 8);
    assert_int_equal(st__srv_prefill_budget(&p, 64, 448), 32);
    assert_int_equal(st__srv_prefill_budget(&p, 500, 12), 12);
    p.prefill_while_decoding = 100;
    assert_int_equal(st__srv_prefill_budget(&p, 4, 508), 100);
    assert_int_equal(st__srv_prefill_budget(&p, 4, 50), 50);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_prefill_budget),
        cmocka_unit_test(test_end_to_end),
        cmocka_unit_test(test_limits),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
