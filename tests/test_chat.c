/*
 * test_chat.c — conversations (strata/app.h st_chat) on llama2.c's
 * stories260K (llama: the Llama-2 template; context 512).
 *
 * The reference for every answer is st_generate run from scratch on the
 * same rendered prompt (st_chat_template_render, then the tokenizer): the
 * chat must give the same greedy text although it reuses the previous
 * turn's KV cache and runs only the new tokens (and the stats must say it
 * reused them). When the context fills, the oldest turns leave the prompt
 * (and the reference is then the prompt without them). Also: a callback
 * that cancels keeps the partial answer; a message too long for the
 * context fails with ST_ERR_BOUNDS and leaves the transcript as it was;
 * /reset and /system; the JSON transcript written by st_chat_save parses
 * back to the same messages.
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
#include <unistd.h>

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
static st_engine *g_eng, *g_ref; /* the chat's, and the references' (own KV pool) */

static int setup(void **state) {
    (void)state;
    st_ctx_params cp = st_ctx_default_params();
    if (st_ctx_new(&cp, &g_ctx) != ST_OK) return -1;
    if (st_lm_load(g_ctx, MODEL, TOKENIZER, &g_lm) != ST_OK) return -1;
    st_engine_params ep = st_engine_default_params();
    if (st_engine_new(g_ctx, g_lm, &ep, &g_eng) != ST_OK) return -1;
    if (st_engine_new(g_ctx, g_lm, &ep, &g_ref) != ST_OK) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    st_engine_free(g_eng);
    st_engine_free(g_ref);
    st_lm_free(g_lm);
    st_ctx_free(g_ctx);
    return 0;
}

typedef struct collect {
    char buf[8192];
    size_t n;
    int calls, cancel_after;
} collect;

static int on_token(void *user, int32_t id, const char *text, size_t n, const st_token_logprob *c,
                    const st_token_logprob *top, int n_top) {
    (void)id;
    (void)c;
    (void)top;
    (void)n_top;
    collect *o = user;
    assert_true(o->n + n < sizeof o->buf);
    memcpy(o->buf + o->n, text, n);
    o->n += n;
    o->buf[o->n] = 0;
    o->calls++;
    return o->cancel_after > 0 && o->calls >= o->cancel_after;
}

static st_chat_params greedy(int64_t max_tokens) {
    st_chat_params p = st_chat_default_params();
    p.gen.sampler.temperature = 0;
    p.gen.max_tokens = max_tokens;
    return p;
}

/* The answer st_generate gives from scratch to messages msgs[0..n). */
static void reference(const st_chat_message *msgs, int n, int64_t max_tokens, collect *out) {
    char *text = NULL;
    OK(st_chat_template_render(ST_CHAT_LLAMA2, msgs, n, &text));
    int32_t *ids = NULL;
    size_t n_ids = 0;
    st_encode_opts o = {.allow_special = true, .add_bos = true};
    OK(st_tokenizer_encode(g_lm->tok, text, strlen(text), &o, &ids, &n_ids));
    st_generate_params gp = st_generate_default_params();
    gp.sampler.temperature = 0;
    gp.max_tokens = max_tokens;
    memset(out, 0, sizeof *out);
    OK(st_generate(g_ref, g_lm->tok, ids, (int64_t)n_ids, &gp, on_token, out, NULL));
    st_free(ids);
    st_free(text);
}

static void test_turns_match_fresh_generation(void **state) {
    (void)state;
    st_chat_params p = greedy(48);
    p.system = "You tell short stories.";
    st_chat *c = NULL;
    OK(st_chat_new(g_eng, NULL, &p, &c));
    assert_int_equal(st_chat_get_template(c), ST_CHAT_LLAMA2);
    const char *user[] = {"Tell me about a cat.", "What did the cat eat?", "And then?"};
    for (int t = 0; t < 3; t++) {
        collect got = {0}, want;
        st_chat_turn_stats ts;
        OK(st_chat_send(c, user[t], on_token, &got, &ts));
        int n = 0;
        const st_chat_message *m = st_chat_messages(c, &n);
        assert_int_equal(n, 1 + 2 * (t + 1));
        assert_string_equal(m[n - 2].content, user[t]);
        assert_string_equal(m[n - 1].role, "assistant");
        assert_string_equal(m[n - 1].content, got.buf); /* streamed == kept */
        reference(m, n - 1, 48, &want);
        if (strcmp(got.buf, want.buf) != 0)
            fail_msg("turn %d: chat '%s', fresh st_generate '%s'", t, got.buf, want.buf);
        assert_int_equal(ts.dropped_messages, 0);
        assert_true(ts.gen.n_generated > 0);
        if (t == 0) {
            assert_int_equal(ts.reused_tokens, 0);
        } else { /* at least the previous prompt came from the KV cache */
            if (ts.reused_tokens < 20) fail_msg("turn %d reused %lld tokens", t, (long long)ts.reused_tokens);
            assert_int_equal(ts.gen.n_prompt, ts.prompt_tokens - ts.reused_tokens);
        }
    }
    st_chat_free(c);
}

static void test_context_full_drops_oldest(void **state) {
    (void)state;
    const int64_t max_tokens = 200; /* context 512: a prompt keeps <= 312 tokens */
    st_chat_params p = greedy(max_tokens);
    p.system = "Stories.";
    st_chat *c = NULL;
    OK(st_chat_new(g_eng, NULL, &p, &c));
    int dropped = 0;
    for (int t = 0; t < 8 && !dropped; t++) {
        char msg[200];
        snprintf(msg, sizeof msg, "Tell me story number %d about a big red ball and a dog.", t);
        collect got = {0}, want;
        st_chat_turn_stats ts;
        OK(st_chat_send(c, msg, on_token, &got, &ts));
        assert_true(ts.prompt_tokens + max_tokens <= 512 || ts.dropped_messages == 0);
        if (ts.dropped_messages == 0) continue;
        dropped = ts.dropped_messages;
        assert_int_equal(dropped % 2, 0); /* whole turns: a user message and its answer */
        assert_true(ts.prompt_tokens + max_tokens <= 512);
        /* the reference: the system message and the turns still in the prompt */
        int n = 0;
        const st_chat_message *m = st_chat_messages(c, &n);
        st_chat_message kept[32];
        int k = 0;
        kept[k++] = m[0];
        for (int i = 1 + dropped; i < n - 1; i++) kept[k++] = m[i];
        reference(kept, k, max_tokens, &want);
        assert_string_equal(got.buf, want.buf);
    }
    assert_true(dropped > 0);
    st_chat_free(c);
}

static void test_cancel_bounds_reset(void **state) {
    (void)state;
    st_chat_params p = greedy(64);
    st_chat *c = NULL;
    OK(st_chat_new(g_eng, NULL, &p, &c));
    collect got = {.cancel_after = 5};
    st_chat_turn_stats ts;
    OK(st_chat_send(c, "Hello", on_token, &got, &ts));
    assert_int_equal(ts.gen.finish, ST_FINISH_CANCEL);
    assert_int_equal(ts.gen.n_generated, 5);
    int n = 0;
    const st_chat_message *m = st_chat_messages(c, &n);
    assert_int_equal(n, 2);
    assert_string_equal(m[1].content, got.buf); /* the partial answer is kept */

    /* a message longer than the whole context */
    char *huge = malloc(8000);
    huge[0] = 0;
    for (int i = 0; i < 700; i++) strcat(huge, "cat dog ");
    assert_int_equal(st_chat_send(c, huge, NULL, NULL, &ts), ST_ERR_BOUNDS);
    assert_non_null(strstr(st_last_error(), "context"));
    free(huge);
    m = st_chat_messages(c, &n);
    assert_int_equal(n, 2); /* unchanged */

    /* still usable: the next answer is the fresh-generation one */
    collect a = {0}, want;
    OK(st_chat_send(c, "Bye", on_token, &a, &ts));
    m = st_chat_messages(c, &n);
    reference(m, n - 1, 64, &want);
    assert_string_equal(a.buf, want.buf);

    OK(st_chat_set_system(c, "Be brief."));
    st_chat_reset(c);
    m = st_chat_messages(c, &n);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].role, "system");
    assert_string_equal(m[0].content, "Be brief.");
    OK(st_chat_set_system(c, ""));
    m = st_chat_messages(c, &n);
    assert_int_equal(n, 0);
    st_chat_free(c);
}

static void test_save_json(void **state) {
    (void)state;
    st_chat_params p = greedy(16);
    p.system = "Say \"hi\"\n\ttabs, caf\xC3\xA9";
    p.model_name = "stories260K";
    st_chat *c = NULL;
    OK(st_chat_new(g_eng, NULL, &p, &c));
    OK(st_chat_send(c, "line one\nline two \xFF (a stray byte)", NULL, NULL, NULL));
    char path[] = "/tmp/strata-test-chat-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    OK(st_chat_save(c, path));
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) fail_msg("%s: %s", path, e.text);
    assert_string_equal(json_string_value(json_object_get(j, "format")), "strata-chat");
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "stories260K");
    assert_string_equal(json_string_value(json_object_get(j, "template")), "llama-2");
    json_t *msgs = json_object_get(j, "messages");
    int n = 0;
    const st_chat_message *m = st_chat_messages(c, &n);
    assert_int_equal(json_array_size(msgs), (size_t)n);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++) {
        json_t *x = json_array_get(msgs, (size_t)i);
        assert_string_equal(json_string_value(json_object_get(x, "role")), m[i].role);
        assert_string_equal(json_string_value(json_object_get(x, "content")), m[i].content);
    }
    /* the stray byte became U+FFFD in the transcript */
    assert_non_null(strstr(m[1].content, "two \xEF\xBF\xBD (a"));
    json_decref(j);
    assert_int_equal(st_chat_save(c, "/nonexistent-dir/x.json"), ST_ERR_IO);
    unlink(path);
    st_chat_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_turns_match_fresh_generation),
        cmocka_unit_test(test_context_full_drops_oldest),
        cmocka_unit_test(test_cancel_bounds_reset),
        cmocka_unit_test(test_save_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
