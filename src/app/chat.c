/*
 * chat.c — a conversation with a model (strata/app.h st_chat; the library
 * half of `strata chat`).
 *
 * Each turn re-renders the whole history with the model's chat template
 * (st_chat_template_render) and tokenizes it. The chat owns one KV-cache
 * sequence whose tokens it remembers (cached[]): the longest common prefix
 * of those tokens and the new prompt stays in the cache (st_kv_seq_truncate
 * drops the rest), and only the tokens after it are run through the model.
 * In a normal conversation that prefix is the whole previous prompt, so a
 * turn costs its new messages, not the history. When the prompt plus the
 * answer's budget would overflow the context, the oldest user/assistant
 * turns are left out of the prompt (the system message is kept) — the
 * transcript keeps them.
 *
 * Generation is st_generate_seq (src/infer/generate.c) on the sequence the
 * chat keeps, so the text rules are st_generate's: a token's text reaches
 * the callback once it cannot be the start of a stop string or the inside
 * of a UTF-8 character; the answer is the text handed out.
 *
 * Memory: messages, the token arrays and the text buffer are st_malloc'd and
 * grow by doubling; nothing is allocated per token. One thread drives a chat.
 */
#include "strata/app.h"
#include "strata/hub.h"

#include "mcp_impl.h"

#include <jansson.h>
#include <string.h>

#define MAX_STOPS 16

struct st_chat {
    st_engine *e;
    const st_tokenizer *tok;
    const st_lm *lm;
    st_chat_template tmpl;
    st_generate_params gen;
    const char *stops[MAX_STOPS]; /* the caller's stop strings and the template's */
    int n_stops;
    char *model_name;
    char *system;                 /* NULL: none */
    st_chat_message *msgs;        /* user/assistant, in order */
    int n_msgs, cap_msgs;
    int first;                    /* first message rendered into the prompt */
    int turn;                     /* answers generated (the seed offset) */
    st_chat_message *view;        /* st_chat_messages' array (system + msgs) */
    int cap_view;
    st_kv_seq seq;
    int32_t *cached;              /* the tokens whose K and V seq holds */
    int64_t cap_cached;
};

st_chat_params st_chat_default_params(void) {
    st_chat_params p;
    memset(&p, 0, sizeof p);
    p.gen = st_generate_default_params();
    return p;
}

st_status st_chat_new(st_engine *e, const st_tokenizer *tok, const st_chat_params *p,
                      st_chat **out) {
    if (!e || !p || !out) return st__fail(ST_ERR_INVALID_ARG, "st_chat_new: NULL argument");
    *out = NULL;
    const st_lm *lm = st_engine_lm(e);
    if (!tok) tok = lm->tok;
    if (!tok) return st__fail(ST_ERR_INVALID_ARG, "st_chat_new: the model has no tokenizer");
    if (p->gen.n_stop < 0 || p->gen.n_stop > MAX_STOPS - 1 || (p->gen.n_stop && !p->gen.stop))
        return st__fail(ST_ERR_INVALID_ARG, "st_chat_new: %d stop strings (at most %d)",
                        p->gen.n_stop, MAX_STOPS - 1);
    /* the sampling parameters are checked once here rather than on the first turn */
    st_sampler *probe = NULL;
    ST_TRY(st_sampler_new(&p->gen.sampler, (int)lm->cfg.vocab_size, &probe));
    st_sampler_free(probe);
    st_chat *c = st_calloc(1, sizeof *c);
    if (!c) return st__fail(ST_ERR_NOMEM, "st_chat_new: no memory");
    c->e = e;
    c->tok = tok;
    c->lm = lm;
    c->tmpl = st_chat_template_for(lm, tok, p->chat_template_text);
    c->gen = p->gen;
    for (int i = 0; i < p->gen.n_stop; i++)
        if (p->gen.stop[i] && p->gen.stop[i][0]) c->stops[c->n_stops++] = p->gen.stop[i];
    const char *ts = st_chat_template_stop(c->tmpl);
    if (ts) c->stops[c->n_stops++] = ts;
    c->gen.stop = c->stops;
    c->gen.n_stop = c->n_stops;
    c->model_name = p->model_name ? st_strdup(p->model_name) : NULL;
    if ((p->model_name && !c->model_name) ||
        st_chat_set_system(c, p->system) != ST_OK) {
        st_chat_free(c);
        return st__fail(ST_ERR_NOMEM, "st_chat_new: no memory");
    }
    *out = c;
    return ST_OK;
}

static void free_msgs(st_chat *c) {
    for (int i = 0; i < c->n_msgs; i++) {
        st_free(c->msgs[i].role);
        st_free(c->msgs[i].content);
    }
    c->n_msgs = 0;
    c->first = 0;
}

void st_chat_free(st_chat *c) {
    if (!c) return;
    st_kv_seq_release(st_engine_kv(c->e), &c->seq);
    free_msgs(c);
    st_free(c->msgs);
    st_free(c->view);
    st_free(c->system);
    st_free(c->model_name);
    st_free(c->cached);
    st_free(c);
}

void st_chat_reset(st_chat *c) {
    free_msgs(c); /* the KV cache stays: the next prompt still shares the system part */
}

st_status st_chat_set_system(st_chat *c, const char *text) {
    char *s = NULL;
    if (text && text[0] && !(s = st_strdup(text)))
        return st__fail(ST_ERR_NOMEM, "st_chat_set_system: no memory");
    st_free(c->system);
    c->system = s;
    return ST_OK;
}

st_chat_template st_chat_get_template(const st_chat *c) { return c->tmpl; }

/* The messages from index `from` of the transcript, the system message first,
 * in c->view (which borrows their strings). */
static st_status make_view(st_chat *c, int from, int *n) {
    int need = c->n_msgs - from + 1;
    if (need > c->cap_view) {
        int cap = c->cap_view ? c->cap_view : 16;
        while (cap < need) cap *= 2;
        st_chat_message *v = st_realloc(c->view, (size_t)cap * sizeof *v);
        if (!v) return st__fail(ST_ERR_NOMEM, "st_chat: no memory for the messages");
        c->view = v;
        c->cap_view = cap;
    }
    int k = 0;
    if (c->system) c->view[k++] = (st_chat_message){.role = "system", .content = c->system};
    for (int i = from; i < c->n_msgs; i++) c->view[k++] = c->msgs[i];
    *n = k;
    return ST_OK;
}

const st_chat_message *st_chat_messages(const st_chat *c, int *n) {
    int k = 0;
    if (make_view((st_chat *)c, 0, &k) != ST_OK) k = 0;
    *n = k;
    return c->view;
}

static st_status push_msg(st_chat *c, const char *role, const char *text, size_t n) {
    if (c->n_msgs == c->cap_msgs) {
        int cap = c->cap_msgs ? 2 * c->cap_msgs : 16;
        st_chat_message *m = st_realloc(c->msgs, (size_t)cap * sizeof *m);
        if (!m) return st__fail(ST_ERR_NOMEM, "st_chat: no memory for the messages");
        c->msgs = m;
        c->cap_msgs = cap;
    }
    /* valid UTF-8 in the transcript (JSON needs it): a model may emit stray bytes */
    char *r = st_strdup(role), *t = st__utf8_valid_copy(text, n, NULL);
    if (!r || !t) {
        st_free(r);
        st_free(t);
        return st__fail(ST_ERR_NOMEM, "st_chat: no memory for a message");
    }
    c->msgs[c->n_msgs++] = (st_chat_message){.role = r, .content = t};
    return ST_OK;
}

static void pop_msg(st_chat *c) {
    c->n_msgs--;
    st_free(c->msgs[c->n_msgs].role);
    st_free(c->msgs[c->n_msgs].content);
    if (c->first > c->n_msgs) c->first = c->n_msgs;
}

/* Renders and tokenizes messages first.. (with the system message). */
static st_status encode_from(st_chat *c, int first, int32_t **ids, size_t *n_ids) {
    int n = 0;
    ST_TRY(make_view(c, first, &n));
    char *text = NULL;
    if (st_chat_template_render(c->tmpl, c->view, n, &text) != ST_OK)
        return st__fail(ST_ERR_NOMEM, "st_chat: no memory to render the prompt");
    /* the template's markers are special tokens; the user's text is part of the
     * same string, as in the server (src/serve/http.c) */
    st_encode_opts o = {.allow_special = true, .add_bos = true};
    st_status s = st_tokenizer_encode(c->tok, text, strlen(text), &o, ids, n_ids);
    st_free(text);
    return s;
}

/* ---- one turn ------------------------------------------------------------------------- */

/* Makes room for n tokens in cached[]. */
static st_status cached_reserve(st_chat *c, int64_t n) {
    if (n <= c->cap_cached) return ST_OK;
    int64_t cap = c->cap_cached ? c->cap_cached : 256;
    while (cap < n) cap *= 2;
    int32_t *p = st_realloc(c->cached, (size_t)cap * sizeof *p);
    if (!p) return st__fail(ST_ERR_NOMEM, "st_chat: no memory for the token history");
    c->cached = p;
    c->cap_cached = cap;
    return ST_OK;
}

/* What one answer collects while st_generate_seq streams it: its text (the
 * parts handed to the callback, so a stop string is never part of it) and
 * its token ids, which become the cache's record of seq. */
typedef struct chat_answer {
    st_strbuf text;
    int32_t *ids;
    int64_t n_ids, cap_ids;
    st_status err;
    st_token_fn fn;
    void *user;
} chat_answer;

static int collect(void *user, int32_t id, const char *text, size_t n_bytes,
                   const st_token_logprob *chosen, const st_token_logprob *top, int n_top) {
    chat_answer *a = user;
    if (!a->err && n_bytes > 0) a->err = st_strbuf_put(&a->text, text, n_bytes);
    if (!a->err && id >= 0) {
        if (a->n_ids == a->cap_ids) {
            int64_t cap = a->cap_ids ? 2 * a->cap_ids : 256;
            int32_t *p = st_realloc(a->ids, (size_t)cap * sizeof *p);
            if (!p)
                a->err = st__fail(ST_ERR_NOMEM, "st_chat: no memory for the answer's tokens");
            else {
                a->ids = p;
                a->cap_ids = cap;
            }
        }
        if (!a->err) a->ids[a->n_ids++] = id;
    }
    if (a->err) return 1;
    return a->fn ? a->fn(a->user, id, text, n_bytes, chosen, top, n_top) : 0;
}

st_status st_chat_send(st_chat *c, const char *msg, st_token_fn fn, void *user,
                       st_chat_turn_stats *stats) {
    if (!c || !msg) return st__fail(ST_ERR_INVALID_ARG, "st_chat_send: NULL argument");
    st_chat_turn_stats ts;
    memset(&ts, 0, sizeof ts);
    if (stats) *stats = ts;
    const int64_t n_ctx = c->lm->cfg.n_ctx;
    ST_TRY(push_msg(c, "user", msg, strlen(msg)));
    const int first_before = c->first; /* a failed turn leaves the prompt's start alone */
    /* room kept for the answer: max_tokens, but at most half the context */
    int64_t reserve = c->gen.max_tokens > 0 ? c->gen.max_tokens : n_ctx / 2;
    if (reserve > n_ctx / 2) reserve = n_ctx / 2;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    st_status s;
    for (;;) {
        s = encode_from(c, c->first, &ids, &n_ids);
        if (s) goto fail;
        if ((int64_t)n_ids + reserve <= n_ctx || c->first >= c->n_msgs - 1) break;
        /* leave out the oldest turn: its user message and the answers after it */
        int f = c->first + 1;
        while (f < c->n_msgs - 1 && strcmp(c->msgs[f].role, "user") != 0) f++;
        ts.dropped_messages += f - c->first;
        c->first = f;
        st_free(ids);
        ids = NULL;
    }
    if (n_ids == 0 || (int64_t)n_ids >= n_ctx) {
        s = st__fail(ST_ERR_BOUNDS,
                     "st_chat_send: the message makes a prompt of %zu tokens; the context "
                     "holds %lld",
                     n_ids, (long long)n_ctx);
        goto fail;
    }
    /* the cached prefix shared with the new prompt (at least one token is run,
     * for its logits) */
    int64_t keep = 0, held = c->seq.n_tokens;
    while (keep < held && keep < (int64_t)n_ids - 1 && c->cached[keep] == ids[keep]) keep++;
    if ((s = st_kv_seq_truncate(st_engine_kv(c->e), &c->seq, keep)) != ST_OK) goto fail;
    ts.prompt_tokens = (int64_t)n_ids;
    ts.reused_tokens = keep;
    st_generate_params gp = c->gen;
    gp.sampler.seed = c->gen.sampler.seed + (uint64_t)c->turn;
    chat_answer ans = {.fn = fn, .user = user};
    s = st_generate_seq(c->e, &c->seq, c->tok, ids, (int64_t)n_ids, &gp, collect, &ans, &ts.gen);
    if (s == ST_OK && ans.err) s = ans.err;
    /* seq now holds the prompt and the answer's tokens but the last */
    int64_t held_now = c->seq.n_tokens;
    if (s == ST_OK && (held_now < (int64_t)n_ids || held_now - (int64_t)n_ids > ans.n_ids))
        s = st__fail(ST_ERR_INTERNAL, "st_chat: the sequence holds %lld tokens after a turn",
                     (long long)held_now);
    if (s == ST_OK) s = cached_reserve(c, held_now);
    if (s == ST_OK) {
        memcpy(c->cached, ids, n_ids * sizeof *ids);
        memcpy(c->cached + n_ids, ans.ids, (size_t)(held_now - (int64_t)n_ids) * sizeof *ids);
        s = push_msg(c, "assistant", ans.text.p ? ans.text.p : "", ans.text.len);
    }
    st_strbuf_free(&ans.text);
    st_free(ans.ids);
    if (s) {
        st_kv_seq_release(st_engine_kv(c->e), &c->seq); /* state unknown: start afresh */
        goto fail;
    }
    c->turn++;
    st_free(ids);
    if (stats) *stats = ts;
    return ST_OK;
fail:
    st_free(ids);
    pop_msg(c); /* the user message goes: the transcript holds only answered turns */
    c->first = first_before;
    ts.dropped_messages = 0;
    if (stats) *stats = ts;
    return s;
}

/* ---- the transcript --------------------------------------------------------------------- */

st_status st_chat_to_json(const st_chat *c, char **out) {
    int n = 0;
    const st_chat_message *m = st_chat_messages(c, &n);
    json_t *arr = json_array();
    json_t *root = json_pack("{s:s, s:i, s:o, s:s, s:o}", "format", "strata-chat", "version", 1,
                             "model", st__json_string_lossy(c->model_name), "template",
                             st_chat_template_name(c->tmpl), "messages", arr);
    bool ok = root && arr;
    for (int i = 0; ok && i < n; i++) {
        json_t *o = json_pack("{s:o, s:o}", "role", st__json_string_lossy(m[i].role), "content",
                              st__json_string_lossy(m[i].content));
        ok = o && json_array_append_new(arr, o) == 0;
    }
    char *txt = ok ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!txt) return st__fail(ST_ERR_NOMEM, "st_chat_to_json: no memory");
    *out = st_strdup(txt);
    free(txt);
    if (!*out) return st__fail(ST_ERR_NOMEM, "st_chat_to_json: no memory");
    return ST_OK;
}

st_status st_chat_save(const st_chat *c, const char *path) {
    if (!c || !path || !path[0]) return st__fail(ST_ERR_INVALID_ARG, "st_chat_save: no file name");
    char *js = NULL;
    ST_TRY(st_chat_to_json(c, &js));
    size_t n = strlen(js);
    char *buf = st_realloc(js, n + 2);
    if (!buf) {
        st_free(js);
        return st__fail(ST_ERR_NOMEM, "st_chat_save: no memory");
    }
    buf[n] = '\n';
    buf[n + 1] = 0;
    st_status s = st_file_write_atomic(path, buf, n + 1);
    st_free(buf);
    return s;
}
