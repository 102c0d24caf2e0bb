/*
 * http.c — the HTTP face of `strata serve`, on libmicrohttpd.
 *
 * MHD runs one thread per connection (bounded by max_connections, idle ones
 * closed after idle_timeout_s), so a handler may block: a non-streaming
 * request waits on its request's condition variable until the scheduler has
 * finished every choice; a streaming one returns a callback response whose
 * reader blocks until the scheduler has produced more tokens and writes them
 * as server-sent events ("data: {chunk}\n\n", then "data: [DONE]\n\n").
 * The reader holds the request's lock only to copy what is new (token
 * structs, the finish, a failure); it builds the JSON after dropping it, so
 * the scheduler's per-token emit never waits on an encoding, nor on a
 * connection thread the OS preempted while it held the lock (2 cores, 16+
 * connection threads).
 * When a client vanishes mid-stream MHD frees the response: the free
 * callback marks the request cancelled and the scheduler drops its
 * sequences and their KV blocks at the next iteration.
 *
 * Ownership: a request (st__srv_request) is reference-counted: the HTTP side
 * holds one reference until its response is written or abandoned, the
 * scheduler one until the last job finishes. Bodies are collected per
 * connection up to max_body_bytes (413 beyond), then parsed and validated by
 * openai.c.
 */
#include "serve/serve_impl.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <math.h>

/* ---- small helpers ---------------------------------------------------------------- */

static enum MHD_Result send_text(st_server *s, struct MHD_Connection *c, int status,
                                 const char *type, char *text, const char *retry_after) {
    size_t n = text ? strlen(text) : 0;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, text ? text : (char *)"", MHD_RESPMEM_MUST_COPY);
    st_free(text);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    st__srv_metrics_request(&s->metrics, status);
    return ret;
}

static enum MHD_Result send_error(st_server *s, struct MHD_Connection *c,
                                  const st__srv_error *e) {
    const char *retry = e->http_status == 429 || e->http_status == 503 ? "1" : NULL;
    return send_text(s, c, e->http_status, "application/json", st__srv_error_json(e), retry);
}

static enum MHD_Result send_json(st_server *s, struct MHD_Connection *c, int status, json_t *j) {
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    char *copy = t ? st_strdup(t) : NULL;
    free(t);
    if (!copy) {
        st__srv_error e;
        st__srv_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        return send_error(s, c, &e);
    }
    return send_text(s, c, status, "application/json", copy, NULL);
}

/* A token's text as a JSON string (invalid UTF-8 replaced). */
static json_t *jstr(const char *p, size_t n) {
    size_t k;
    char *clean = st__srv_utf8_clean(p, n, &k);
    json_t *j = clean ? json_stringn(clean, k) : json_string("");
    st_free(clean);
    return j;
}

static json_t *piece_json(const st_server *s, int32_t id) {
    size_t n = 0;
    const char *p = st_tokenizer_piece(s->tok, id, &n);
    return p ? jstr(p, n) : json_string("");
}

static json_t *piece_bytes(const st_server *s, int32_t id) {
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)st_tokenizer_piece(s->tok, id, &n);
    json_t *a = json_array();
    for (size_t i = 0; p && i < n; i++) json_array_append_new(a, json_integer(p[i]));
    return a;
}

/* ---- request setup ---------------------------------------------------------------- */

static st__srv_limits limits_of(const st_server *s) {
    st__srv_limits l = {.max_tokens = s->p.max_tokens,
                        .max_n = s->p.max_n,
                        .max_inputs = 256,
                        .max_prompt_bytes = s->p.max_body_bytes};
    return l;
}

/* Tokenizes one prompt into ids (st_malloc'd). */
static bool encode_prompt(st_server *s, const char *text, bool special, int32_t **ids,
                          size_t *n, st__srv_error *err) {
    st_encode_opts o = {.allow_special = special, .add_bos = true};
    if (st_tokenizer_encode(s->tok, text, strlen(text), &o, ids, n) != ST_OK) {
        st__srv_error_set(err, 400, "invalid_request_error", "prompt", "invalid_value",
                          "the prompt cannot be tokenized: %.200s", st_last_error());
        return false;
    }
    return true;
}

static st__srv_request *request_new(st_server *s, st__srv_req *req) {
    st__srv_request *r = st_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->req = *req;
    memset(req, 0, sizeof *req);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    r->t_arrival = st__srv_now();
    r->deadline = r->t_arrival + s->p.request_timeout_s;
    r->created = (long long)time(NULL);
    pthread_mutex_lock(&s->mu);
    uint64_t k = ++s->request_counter;
    pthread_mutex_unlock(&s->mu);
    const char *pre = r->req.kind == ST_SRV_CHAT ? "chatcmpl" : r->req.kind == ST_SRV_COMPLETION
                                                                    ? "cmpl"
                                                                    : "emb";
    snprintf(r->id, sizeof r->id, "%s-%llx%06llx", pre, (unsigned long long)r->created,
             (unsigned long long)k);
    return r;
}

static bool add_job(st_server *s, st__srv_request *r, int choice, int32_t *ids, size_t n,
                    st__srv_error *err) {
    st__srv_job *j = st_calloc(1, sizeof *j);
    st__srv_job **jobs = st_realloc(r->jobs, (size_t)(r->n_jobs + 1) * sizeof *jobs);
    if (!j || !jobs) {
        st_free(j);
        st_free(ids);
        if (jobs) r->jobs = jobs;
        st__srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    r->jobs = jobs;
    r->jobs[r->n_jobs++] = j;
    j->r = r;
    j->choice = choice;
    j->ids = ids;
    j->n_ids = j->n_prompt = (int64_t)n;
    j->cap_ids = (int64_t)n;
    j->embed = r->req.kind == ST_SRV_EMBEDDING;
    const int64_t n_ctx = s->lm->cfg.n_ctx;
    if (n == 0) {
        st__srv_error_set(err, 400, "invalid_request_error",
                          j->embed ? "input" : r->req.kind == ST_SRV_CHAT ? "messages" : "prompt",
                          "invalid_value", "the input is empty after tokenization");
        return false;
    }
    if ((int64_t)n + (j->embed ? 0 : 1) > n_ctx) {
        st__srv_error_set(err, 400, "invalid_request_error",
                          j->embed ? "input" : r->req.kind == ST_SRV_CHAT ? "messages" : "prompt",
                          "context_length_exceeded",
                          "the input is %zu tokens; this model's context is %lld tokens", n,
                          (long long)n_ctx);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->lm->cfg.vocab_size) {
            st__srv_error_set(err, 400, "invalid_request_error", j->embed ? "input" : "prompt",
                              "invalid_value", "token id %d is outside the vocabulary (%d)",
                              ids[i], s->lm->cfg.vocab_size);
            return false;
        }
    if (j->embed) {
        j->hidden = st_calloc((size_t)s->lm->cfg.n_embd, sizeof(float));
        if (!j->hidden) goto nomem;
        return true;
    }
    /* room for the generated tokens, grown on demand */
    int32_t *grown = st_realloc(j->ids, (n + 64) * sizeof(int32_t));
    if (!grown) goto nomem;
    j->ids = grown;
    j->cap_ids = (int64_t)n + 64;
    st_sampler_params sp = st_sampler_default_params();
    const st__srv_req *q = &r->req;
    sp.temperature = q->temperature;
    sp.top_p = q->top_p;
    sp.top_k = q->top_k;
    sp.min_p = q->min_p;
    sp.repetition_penalty = q->repetition_penalty;
    sp.frequency_penalty = q->frequency_penalty;
    sp.presence_penalty = q->presence_penalty;
    sp.seed = q->has_seed ? q->seed + (uint64_t)choice * 0x9e3779b97f4a7c15ULL
                          : (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)j << 7) ^
                                (uint64_t)(r->t_arrival * 1e9);
    if (st_sampler_new(&sp, s->lm->cfg.vocab_size, &j->sampler) != ST_OK) {
        st__srv_error_set(err, 400, "invalid_request_error", NULL, "invalid_value",
                          "sampling parameters: %.200s", st_last_error());
        return false;
    }
    return true;
nomem:
    st__srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return false;
}

/* Builds the jobs of a validated request. */
static bool make_jobs(st_server *s, st__srv_request *r, st__srv_error *err) {
    st__srv_req *q = &r->req;
    if (q->kind == ST_SRV_CHAT) {
        char *text = NULL;
        if (st_chat_template_render(s->tmpl, q->messages, q->n_messages, &text) != ST_OK) {
            st__srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
            return false;
        }
        r->stop_extra = st_chat_template_stop(s->tmpl);
        int32_t *ids = NULL;
        size_t n = 0;
        bool ok = encode_prompt(s, text, true, &ids, &n, err);
        st_free(text);
        if (!ok) return false;
        for (int k = 0; k < q->n; k++) {
            int32_t *copy = st_malloc((n ? n : 1) * sizeof *copy);
            if (!copy) {
                st_free(ids);
                st__srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
                return false;
            }
            memcpy(copy, ids, n * sizeof *copy);
            if (!add_job(s, r, k, copy, n, err)) {
                st_free(ids);
                return false;
            }
        }
        st_free(ids);
        return true;
    }
    int per = q->kind == ST_SRV_EMBEDDING ? 1 : q->n;
    for (int p = 0; p < q->n_prompts; p++) {
        for (int k = 0; k < per; k++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (q->prompt_ids[p]) {
                n = (size_t)q->n_prompt_ids[p];
                ids = st_malloc((n ? n : 1) * sizeof *ids);
                if (!ids) {
                    st__srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
                    return false;
                }
                memcpy(ids, q->prompt_ids[p], n * sizeof *ids);
            } else if (!encode_prompt(s, q->prompts[p], false, &ids, &n, err)) {
                return false;
            }
            if (n == 0 && q->kind == ST_SRV_COMPLETION) {
                /* an empty prompt starts from end-of-text, as OpenAI's models do */
                int eos = st_tokenizer_eos_id(s->tok);
                if (eos < 0) eos = s->lm->bos_id;
                if (eos >= 0) {
                    st_free(ids);
                    ids = st_malloc(sizeof *ids);
                    if (!ids) return false;
                    ids[0] = eos;
                    n = 1;
                }
            }
            if (!add_job(s, r, p * per + k, ids, n, err)) return false;
        }
    }
    return true;
}

/* ---- responses -------------------------------------------------------------------- */

static json_t *usage_json(const st__srv_request *r) {
    long long prompt = 0, gen = 0;
    int per = r->req.kind == ST_SRV_EMBEDDING ? 1 : r->req.n;
    for (int i = 0; i < r->n_jobs; i++) {
        const st__srv_job *j = r->jobs[i];
        if (r->req.kind == ST_SRV_CHAT ? i == 0 : i % per == 0) prompt += j->n_prompt;
        for (int t = 0; t < j->n_out; t++) gen += j->out[t].counted;
    }
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(prompt));
    if (r->req.kind != ST_SRV_EMBEDDING) json_object_set_new(u, "completion_tokens", json_integer(gen));
    json_object_set_new(u, "total_tokens", json_integer(prompt + gen));
    return u;
}

/* Chat logprobs entries for tokens toks[0, n). */
static json_t *chat_logprobs(const st_server *s, const st__srv_token *toks, int n) {
    json_t *content = json_array();
    for (int t = 0; t < n; t++) {
        const st__srv_token *k = &toks[t];
        if (k->id < 0) continue;
        json_t *e = json_object();
        json_object_set_new(e, "token", piece_json(s, k->id));
        json_object_set_new(e, "logprob", json_real(k->logprob));
        json_object_set_new(e, "bytes", piece_bytes(s, k->id));
        json_t *tops = json_array();
        for (int i = 0; i < k->n_top; i++) {
            json_t *o = json_object();
            json_object_set_new(o, "token", piece_json(s, k->top[i].id));
            json_object_set_new(o, "logprob", json_real(k->top[i].logprob));
            json_object_set_new(o, "bytes", piece_bytes(s, k->top[i].id));
            json_array_append_new(tops, o);
        }
        json_object_set_new(e, "top_logprobs", tops);
        json_array_append_new(content, e);
    }
    json_t *lp = json_object();
    json_object_set_new(lp, "content", content);
    return lp;
}

/* Completions' legacy logprobs object for tokens toks[0, n), text offsets
 * counted from base. */
static json_t *completion_logprobs(const st_server *s, const st__srv_token *toks, int n,
                                   size_t base) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(),
           *offs = json_array();
    size_t off = base;
    for (int t = 0; t < n; t++) {
        const st__srv_token *k = &toks[t];
        if (k->id < 0) continue;
        json_array_append_new(tokens, piece_json(s, k->id));
        json_array_append_new(lps, json_real(k->logprob));
        json_t *o = json_object();
        for (int i = 0; i < k->n_top; i++) {
            json_t *key = piece_json(s, k->top[i].id);
            json_object_set_new(o, json_string_value(key), json_real(k->top[i].logprob));
            json_decref(key);
        }
        json_array_append_new(tops, o);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += k->n_text;
    }
    json_t *lp = json_object();
    json_object_set_new(lp, "tokens", tokens);
    json_object_set_new(lp, "token_logprobs", lps);
    json_object_set_new(lp, "top_logprobs", tops);
    json_object_set_new(lp, "text_offset", offs);
    return lp;
}

/* The prompt's text for echo (decoded from its ids). */
static char *prompt_text(const st_server *s, const st__srv_job *j, size_t *n) {
    char *t = NULL;
    if (st_tokenizer_decode(s->tok, j->ids, (size_t)j->n_prompt, &t, n) != ST_OK) return NULL;
    return t;
}

static json_t *job_text(const st__srv_job *j, const char *prefix, size_t n_prefix) {
    size_t n = n_prefix;
    for (int t = 0; t < j->n_out; t++) n += j->out[t].n_text;
    char *buf = st_malloc(n + 1);
    if (!buf) return json_string("");
    memcpy(buf, prefix ? prefix : "", n_prefix);
    size_t at = n_prefix;
    for (int t = 0; t < j->n_out; t++) {
        memcpy(buf + at, j->out[t].text, j->out[t].n_text);
        at += j->out[t].n_text;
    }
    json_t *r = jstr(buf, n);
    st_free(buf);
    return r;
}

static json_t *final_response(st_server *s, st__srv_request *r) {
    const st__srv_req *q = &r->req;
    json_t *root = json_object();
    if (q->kind == ST_SRV_EMBEDDING) {
        json_object_set_new(root, "object", json_string("list"));
        json_t *data = json_array();
        const int E = s->lm->cfg.n_embd;
        float *v = st_malloc((size_t)E * sizeof *v);
        for (int i = 0; v && i < r->n_jobs; i++) {
            const st__srv_job *j = r->jobs[i];
            double norm = 0;
            for (int e = 0; e < E; e++) {
                v[e] = j->hidden[e] / (float)j->n_prompt; /* mean pool */
                norm += (double)v[e] * v[e];
            }
            float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
            for (int e = 0; e < E; e++) v[e] *= inv;
            json_t *o = json_object();
            json_object_set_new(o, "object", json_string("embedding"));
            json_object_set_new(o, "index", json_integer(i));
            if (q->base64) {
                unsigned char *b64 = st_malloc(4 * (((size_t)E * 4 + 2) / 3) + 1);
                if (b64) {
                    EVP_EncodeBlock(b64, (const unsigned char *)v, E * 4);
                    json_object_set_new(o, "embedding", json_string((char *)b64));
                    st_free(b64);
                }
            } else {
                json_t *a = json_array();
                for (int e = 0; e < E; e++) json_array_append_new(a, json_real(v[e]));
                json_object_set_new(o, "embedding", a);
            }
            json_array_append_new(data, o);
        }
        st_free(v);
        json_object_set_new(root, "data", data);
        json_object_set_new(root, "model", json_string(s->model_name));
        json_object_set_new(root, "usage", usage_json(r));
        return root;
    }
    bool chat = q->kind == ST_SRV_CHAT;
    json_object_set_new(root, "id", json_string(r->id));
    json_object_set_new(root, "object", json_string(chat ? "chat.completion" : "text_completion"));
    json_object_set_new(root, "created", json_integer(r->created));
    json_object_set_new(root, "model", json_string(s->model_name));
    json_t *choices = json_array();
    for (int i = 0; i < r->n_jobs; i++) {
        const st__srv_job *j = r->jobs[i];
        json_t *c = json_object();
        json_object_set_new(c, "index", json_integer(j->choice));
        if (chat) {
            json_t *m = json_object();
            json_object_set_new(m, "role", json_string("assistant"));
            json_object_set_new(m, "content", job_text(j, NULL, 0));
            json_object_set_new(c, "message", m);
            json_object_set_new(c, "logprobs",
                                q->logprobs ? chat_logprobs(s, j->out, j->n_out) : json_null());
        } else {
            size_t np = 0;
            char *pt = q->echo ? prompt_text(s, j, &np) : NULL;
            json_object_set_new(c, "text", job_text(j, pt, pt ? np : 0));
            json_object_set_new(c, "logprobs",
                                q->logprobs ? completion_logprobs(s, j->out, j->n_out, np)
                                            : json_null());
            st_free(pt);
        }
        const char *fin = st__srv_finish_name(j->finish);
        json_object_set_new(c, "finish_reason", fin ? json_string(fin) : json_null());
        json_array_append_new(choices, c);
    }
    json_object_set_new(root, "choices", choices);
    json_object_set_new(root, "usage", usage_json(r));
    return root;
}

/* ---- streaming -------------------------------------------------------------------- */

/* What one look at the request found (copied under r->mu, so the events
 * are built after the lock is dropped: the scheduler's emit never waits
 * on a connection thread's JSON encoding, nor on one the OS preempted
 * while it held the lock). Token structs are copied shallowly: their text
 * belongs to the job, which the stream's reference keeps alive, and is
 * never changed once emitted. */
typedef struct snap_job {
    int from, n; /* new tokens: snap->toks[from, from + n) */
    st__srv_finish finish;
} snap_job;

typedef struct stream {
    st_server *s;
    st__srv_request *r;
    int *sent;        /* per job: outputs already taken */
    bool *began;      /* per job: the first chunk (role, echo) went out */
    bool *ended;      /* per job: the finish chunk went out */
    char *out;        /* bytes built but not yet handed to MHD */
    size_t n_out, at_out, cap_out;
    bool done;        /* [DONE] is in out */
    /* the last look (see snap_job) */
    snap_job *jobs; /* [n_jobs] */
    st__srv_token *toks;
    int n_toks, cap_toks;
    int fail_status;
    char fail_message[sizeof((st__srv_request *)0)->fail_message];
    json_t *usage; /* taken when every job has ended and include_usage is set */
} stream;

static void out_add(stream *st, const char *p, size_t n) {
    if (st->n_out + n > st->cap_out) {
        size_t cap = st->cap_out ? st->cap_out : 4096;
        while (cap < st->n_out + n) cap *= 2;
        char *q = st_realloc(st->out, cap);
        if (!q) return;
        st->out = q;
        st->cap_out = cap;
    }
    memcpy(st->out + st->n_out, p, n);
    st->n_out += n;
}

static void out_event(stream *st, json_t *chunk) {
    char *t = json_dumps(chunk, JSON_COMPACT);
    json_decref(chunk);
    if (!t) return;
    out_add(st, "data: ", 6);
    out_add(st, t, strlen(t));
    out_add(st, "\n\n", 2);
    free(t);
}

static json_t *chunk_base(const stream *st) {
    const st__srv_request *r = st->r;
    bool chat = r->req.kind == ST_SRV_CHAT;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "object",
                        json_string(chat ? "chat.completion.chunk" : "text_completion"));
    json_object_set_new(o, "created", json_integer(r->created));
    json_object_set_new(o, "model", json_string(st->s->model_name));
    return o;
}

static void chunk_choice(stream *st, const st__srv_job *j, json_t *text, json_t *logprobs,
                         const char *finish, bool role) {
    bool chat = st->r->req.kind == ST_SRV_CHAT;
    json_t *c = json_object();
    json_object_set_new(c, "index", json_integer(j->choice));
    if (chat) {
        json_t *d = json_object();
        if (role) json_object_set_new(d, "role", json_string("assistant"));
        if (text) json_object_set_new(d, "content", text);
        json_object_set_new(c, "delta", d);
    } else {
        json_object_set_new(c, "text", text ? text : json_string(""));
    }
    json_object_set_new(c, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(c, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *o = chunk_base(st);
    json_t *a = json_array();
    json_array_append_new(a, c);
    json_object_set_new(o, "choices", a);
    out_event(st, o);
}

/* Copies what is new in the request since the last look (called under
 * r->mu). Returns true when there is anything to send. */
static bool stream_take(stream *st) {
    st__srv_request *r = st->r;
    if (st->done) return true;
    st->n_toks = 0;
    st->fail_status = r->fail_status;
    if (r->fail_status) {
        snprintf(st->fail_message, sizeof st->fail_message, "%s", r->fail_message);
        return true;
    }
    bool any = false, all_ended = true;
    for (int i = 0; i < r->n_jobs; i++) {
        const st__srv_job *j = r->jobs[i];
        int n = j->n_out - st->sent[i];
        if (st->n_toks + n > st->cap_toks) {
            int cap = st->cap_toks ? st->cap_toks : 16;
            while (cap < st->n_toks + n)
                cap *= 2;
            st__srv_token *t = st_realloc(st->toks, (size_t)cap * sizeof *t);
            if (!t) {
                n = st->cap_toks - st->n_toks; /* the rest on the next look */
            } else {
                st->toks = t;
                st->cap_toks = cap;
            }
        }
        if (n > 0)
            memcpy(st->toks + st->n_toks, j->out + st->sent[i], (size_t)n * sizeof *st->toks);
        st->jobs[i] =
            (snap_job){.from = st->n_toks,
                       .n = n,
                       .finish = st->sent[i] + n == j->n_out ? j->finish : ST_SRV_FINISH_NONE};
        st->n_toks += n;
        st->sent[i] += n;
        any = any || n > 0 || !st->began[i] ||
              (st->jobs[i].finish != ST_SRV_FINISH_NONE && !st->ended[i]);
        if (st->jobs[i].finish == ST_SRV_FINISH_NONE && !st->ended[i]) all_ended = false;
    }
    if (all_ended && r->req.include_usage && !st->usage) st->usage = usage_json(r);
    return any || all_ended;
}

/* Turns the last look into events (r->mu not held). Returns true when
 * something was added. */
static bool stream_collect(stream *st) {
    st__srv_request *r = st->r;
    const st__srv_req *q = &r->req;
    size_t before = st->n_out;
    if (st->done) return false;
    if (st->fail_status) {
        st__srv_error e;
        st__srv_error_set(&e, st->fail_status, "server_error", NULL, NULL, "%s", st->fail_message);
        char *t = st__srv_error_json(&e);
        if (t) {
            out_add(st, "data: ", 6);
            out_add(st, t, strlen(t));
            out_add(st, "\n\n", 2);
            st_free(t);
        }
        out_add(st, "data: [DONE]\n\n", 14);
        st->done = true;
        return true;
    }
    bool all_ended = true;
    for (int i = 0; i < r->n_jobs; i++) {
        const st__srv_job *j = r->jobs[i];
        if (!st->began[i]) {
            st->began[i] = true;
            if (q->kind == ST_SRV_CHAT) {
                chunk_choice(st, j, json_string(""), NULL, NULL, true);
            } else if (q->echo) {
                size_t np = 0;
                char *pt = prompt_text(st->s, j, &np);
                if (pt) chunk_choice(st, j, jstr(pt, np), NULL, NULL, false);
                st_free(pt);
            }
        }
        const snap_job *sj = &st->jobs[i];
        for (int t = 0; t < sj->n; t++) {
            const st__srv_token *k = &st->toks[sj->from + t];
            if (k->n_text == 0 && !q->logprobs) continue;
            json_t *lp = NULL;
            if (q->logprobs)
                lp = q->kind == ST_SRV_CHAT ? chat_logprobs(st->s, k, 1)
                                            : completion_logprobs(st->s, k, 1, 0);
            chunk_choice(st, j, jstr(k->text, k->n_text), lp, NULL, false);
        }
        if (sj->finish != ST_SRV_FINISH_NONE && !st->ended[i]) {
            st->ended[i] = true;
            const char *fin = st__srv_finish_name(sj->finish);
            chunk_choice(st, j, q->kind == ST_SRV_CHAT ? NULL : json_string(""), NULL,
                         fin ? fin : "stop", false);
        }
        if (!st->ended[i]) all_ended = false;
    }
    if (all_ended) {
        if (st->usage) {
            json_t *o = chunk_base(st);
            json_object_set_new(o, "choices", json_array());
            json_object_set_new(o, "usage", st->usage);
            st->usage = NULL;
            out_event(st, o);
        }
        out_add(st, "data: [DONE]\n\n", 14);
        st->done = true;
    }
    return st->n_out > before;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    (void)pos;
    while (st->at_out == st->n_out) {
        st->at_out = st->n_out = 0;
        if (st->done) return MHD_CONTENT_READER_END_OF_STREAM;
        st__srv_request *r = st->r;
        pthread_mutex_lock(&r->mu);
        while (!stream_take(st)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        pthread_mutex_unlock(&r->mu);
        /* nothing to send after all (tokens without text, no logprobs): look again */
        if (!stream_collect(st) && !st->done) continue;
        if (st->n_out == 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->n_out - st->at_out;
    if (n > max) n = max;
    memcpy(buf, st->out + st->at_out, n);
    st->at_out += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    st__srv_request *r = st->r;
    pthread_mutex_lock(&r->mu);
    if (r->n_done < r->n_jobs) r->cancelled = true; /* the client went away mid-stream */
    pthread_mutex_unlock(&r->mu);
    st__srv_request_unref(r);
    st_free(st->sent);
    st_free(st->began);
    st_free(st->ended);
    st_free(st->out);
    st_free(st->jobs);
    st_free(st->toks);
    json_decref(st->usage);
    st_free(st);
}

/* ---- routes ----------------------------------------------------------------------- */

typedef struct conn {
    char *body;
    size_t n, cap;
    bool too_big;
} conn;

static bool authorized(st_server *s, struct MHD_Connection *c) {
    if (!s->p.api_key || !s->p.api_key[0]) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    size_t a = strlen(h), b = strlen(s->p.api_key);
    return a == b && CRYPTO_memcmp(h, s->p.api_key, a) == 0;
}

static enum MHD_Result handle_generate(st_server *s, struct MHD_Connection *c, st__srv_kind kind,
                                       conn *cn) {
    st__srv_error err;
    st__srv_limits lim = limits_of(s);
    st__srv_req req;
    if (!st__srv_req_parse(kind, cn->body ? cn->body : "", cn->n, &lim, &req, &err))
        return send_error(s, c, &err);
    if (req.model && strcmp(req.model, s->model_name) != 0) {
        st__srv_error_set(&err, 404, "invalid_request_error", "model", "model_not_found",
                          "The model '%.100s' does not exist; this server serves '%.100s'",
                          req.model, s->model_name);
        st__srv_req_clear(&req);
        return send_error(s, c, &err);
    }
    st__srv_request *r = request_new(s, &req);
    if (!r) {
        st__srv_req_clear(&req);
        st__srv_error_set(&err, 500, "server_error", NULL, NULL, "out of memory");
        return send_error(s, c, &err);
    }
    if (!make_jobs(s, r, &err)) {
        st__srv_request_unref(r);
        return send_error(s, c, &err);
    }
    if (!st__srv_submit(s, r)) {
        st__srv_error_set(&err, r->fail_status, r->fail_status == 429 ? "rate_limit_error"
                                                                       : "server_error",
                          NULL, r->fail_status == 429 ? "rate_limit_exceeded" : "unavailable",
                          "%s", r->fail_message);
        st__srv_request_unref(r);
        return send_error(s, c, &err);
    }
    if (r->req.stream) {
        stream *st = st_calloc(1, sizeof *st);
        if (st) {
            st->s = s;
            st->r = r;
            st->sent = st_calloc((size_t)r->n_jobs, sizeof *st->sent);
            st->began = st_calloc((size_t)r->n_jobs, sizeof *st->began);
            st->ended = st_calloc((size_t)r->n_jobs, sizeof *st->ended);
            st->jobs = st_calloc((size_t)r->n_jobs, sizeof *st->jobs);
        }
        struct MHD_Response *resp =
            st && st->sent && st->began && st->ended && st->jobs
                ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st,
                                                    stream_free)
                : NULL;
        if (!resp) {
            if (st) stream_free(st); /* cancels the request */
            else st__srv_request_unref(r);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        st__srv_metrics_request(&s->metrics, 200);
        return ret;
    }
    pthread_mutex_lock(&r->mu);
    while (r->n_done < r->n_jobs) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    enum MHD_Result ret;
    if (r->fail_status) {
        st__srv_error_set(&err, r->fail_status, r->fail_status >= 500 ? "server_error"
                                                                      : "invalid_request_error",
                          NULL, NULL, "%s", r->fail_message);
        ret = send_error(s, c, &err);
    } else {
        bool timed_out = false;
        for (int i = 0; i < r->n_jobs; i++)
            timed_out |= r->jobs[i]->finish == ST_SRV_FINISH_CANCELLED;
        if (timed_out) {
            st__srv_error_set(&err, 504, "server_error", NULL, "timeout",
                              "the request took longer than %g s and was cancelled",
                              s->p.request_timeout_s);
            ret = send_error(s, c, &err);
        } else {
            ret = send_json(s, c, 200, final_response(s, r));
        }
    }
    st__srv_request_unref(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    st_server *s = cls;
    (void)version;
    conn *cn = *con_cls;
    if (!cn) {
        cn = st_calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        *con_cls = cn;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (cn->too_big || cn->n + n > s->p.max_body_bytes) {
            cn->too_big = true;
            st_free(cn->body);
            cn->body = NULL;
            cn->n = cn->cap = 0;
            return MHD_YES;
        }
        if (cn->n + n + 1 > cn->cap) {
            size_t cap = cn->cap ? cn->cap : 4096;
            while (cap < cn->n + n + 1) cap *= 2;
            char *b = st_realloc(cn->body, cap);
            if (!b) return MHD_NO;
            cn->body = b;
            cn->cap = cap;
        }
        memcpy(cn->body + cn->n, upload, n);
        cn->n += n;
        cn->body[cn->n] = 0;
        return MHD_YES;
    }
    st__srv_error err;
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (strcmp(url, "/health") == 0 && get)
        return send_text(s, c, 200, "application/json", st_strdup("{\"status\":\"ok\"}"), NULL);
    if (strcmp(url, "/ready") == 0 && get) {
        bool ready = !s->closed;
        return send_text(s, c, ready ? 200 : 503, "application/json",
                         st_strdup(ready ? "{\"status\":\"ready\"}"
                                         : "{\"status\":\"shutting down\"}"),
                         NULL);
    }
    if (strcmp(url, "/metrics") == 0 && get)
        return send_text(s, c, 200, "text/plain; version=0.0.4",
                         st__srv_metrics_render(&s->metrics), NULL);
    if (strncmp(url, "/v1/", 4) == 0 && !authorized(s, c)) {
        st__srv_error_set(&err, 401, "invalid_request_error", NULL, "invalid_api_key",
                          "Incorrect or missing API key: send 'Authorization: Bearer KEY'");
        return send_error(s, c, &err);
    }
    if (cn->too_big) {
        st__srv_error_set(&err, 413, "invalid_request_error", NULL, "request_too_large",
                          "the request body is larger than %zu bytes", s->p.max_body_bytes);
        return send_error(s, c, &err);
    }
    if (strcmp(url, "/v1/models") == 0 && get) {
        json_t *m = json_object();
        json_object_set_new(m, "id", json_string(s->model_name));
        json_object_set_new(m, "object", json_string("model"));
        json_object_set_new(m, "created", json_integer(0));
        json_object_set_new(m, "owned_by", json_string("strata"));
        json_t *data = json_array();
        json_array_append_new(data, m);
        json_t *root = json_object();
        json_object_set_new(root, "object", json_string("list"));
        json_object_set_new(root, "data", data);
        return send_json(s, c, 200, root);
    }
    st__srv_kind kind;
    if (strcmp(url, "/v1/completions") == 0) kind = ST_SRV_COMPLETION;
    else if (strcmp(url, "/v1/chat/completions") == 0) kind = ST_SRV_CHAT;
    else if (strcmp(url, "/v1/embeddings") == 0) kind = ST_SRV_EMBEDDING;
    else {
        st__srv_error_set(&err, 404, "invalid_request_error", NULL, "not_found",
                          "no route for %.8s %.100s", method, url);
        return send_error(s, c, &err);
    }
    if (!post) {
        st__srv_error_set(&err, 405, "invalid_request_error", NULL, "method_not_allowed",
                          "%.100s takes POST", url);
        return send_error(s, c, &err);
    }
    return handle_generate(s, c, kind, cn);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    conn *cn = *con_cls;
    if (cn) {
        st_free(cn->body);
        st_free(cn);
        *con_cls = NULL;
    }
}

/* MHD's own messages (a client gone mid-response, ...) are routine for a
 * server: they go to the log at debug level, not to stderr. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    st_log_msg(ST_LOG_DEBUG, "serve: http: %s", msg);
}

st_status st__srv_http_start(st_server *s) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)s->p.port);
    const char *host = strcmp(s->host, "localhost") == 0 ? "127.0.0.1" : s->host;
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return st__fail(ST_ERR_INVALID_ARG, "serve: --host %s is not an IPv4 address", s->host);
    s->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
            MHD_USE_ITC,
        (uint16_t)s->p.port, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->p.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->p.idle_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)(512 * 1024), MHD_OPTION_END);
    if (!s->daemon)
        return st__fail(ST_ERR_IO, "serve: cannot listen on %s:%d (in use, or not permitted)",
                        s->host, s->p.port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->p.port;
    return ST_OK;
}

void st__srv_http_quiesce(st_server *s) {
    if (!s->daemon) return;
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void st__srv_http_stop(st_server *s) {
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
