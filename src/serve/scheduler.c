/*
 * scheduler.c — iteration-level continuous batching over the engine.
 *
 * One thread (st__srv_sched_run) owns the engine, the KV cache, the running
 * set and the prefix cache; HTTP threads only push jobs onto the queue
 * (under s->mu) and read a job's outputs (under its request's mu). Each
 * iteration:
 *   1. drop cancelled or timed-out jobs; admit queued jobs first come,
 *      first served while KV blocks last (a job's prompt may start from
 *      blocks found in the prefix cache);
 *   2. build one batch: every running job that has its prompt cached gets
 *      one decode token; prompt chunks of at most prefill_chunk tokens,
 *      oldest job first, get the rest of max_batch_tokens when no one
 *      decodes, and while some do at most max(prefill_while_decoding,
 *      decoders / 2) tokens: a pass's time grows with its rows, so this
 *      bounds how much a joining prompt delays every stream's next token
 *      (p99 inter-token latency) at the price of that prompt's time to
 *      first token;
 *   3. make sure the batch's KV blocks exist: evict prefix-cache blocks no
 *      sequence uses (least recently used first), then preempt the youngest
 *      job (its blocks freed; it goes back to the queue's head and is
 *      recomputed from its prompt and the tokens it already produced);
 *   4. one st_engine_forward; sample for the jobs whose last known token was
 *      in the batch (the draws in parallel on the context's pool: each job
 *      has its own sampler and logits row); then, in batch order, stream
 *      their text; finish on EOS, a stop string, max_tokens or a full
 *      context.
 * The engine's outputs for a sequence do not depend on what else is in the
 * batch (tests/test_infer.c checks it), so batching does not change results.
 */
#include "serve/serve_impl.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double st__srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left): 1..4, 0 when the
 * bytes are a valid but incomplete prefix, -1 when invalid. */
static int utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
    else return -1;
    unsigned cp = c & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        if ((s[i] & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    return len;
}

char *st__srv_utf8_clean(const char *s, size_t n, size_t *n_out) {
    char *o = st_malloc(3 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int l = utf8_len((const unsigned char *)s + i, n - i);
        if (l > 0) {
            memcpy(o + k, s + i, (size_t)l);
            k += (size_t)l;
            i += (size_t)l;
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

/* ---- requests --------------------------------------------------------------- */

static void job_free(st__srv_job *j) {
    if (!j) return;
    st_free(j->ids);
    st_sampler_free(j->sampler);
    st_free(j->pending);
    st_free(j->hidden);
    for (int i = 0; i < j->n_out; i++) st_free(j->out[i].text);
    st_free(j->out);
    st_free(j);
}

void st__srv_request_unref(st__srv_request *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left > 0) return;
    for (int i = 0; i < r->n_jobs; i++) job_free(r->jobs[i]);
    st_free(r->jobs);
    st__srv_req_clear(&r->req);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    st_free(r);
}

/* Appends one output token to a job (under r->mu) and wakes the reader. */
static void emit(st__srv_job *j, const char *text, size_t n, const st_token_logprob *chosen,
                 const st_token_logprob *top, int n_top, bool count_token) {
    st__srv_request *r = j->r;
    pthread_mutex_lock(&r->mu);
    if (j->n_out == j->cap_out) {
        int cap = j->cap_out ? 2 * j->cap_out : 32;
        st__srv_token *o = st_realloc(j->out, (size_t)cap * sizeof *o);
        if (!o) {
            pthread_mutex_unlock(&r->mu);
            return; /* the token's text is lost; the finish still arrives */
        }
        j->out = o;
        j->cap_out = cap;
    }
    st__srv_token *t = &j->out[j->n_out];
    memset(t, 0, sizeof *t);
    t->text = st__srv_utf8_clean(text, n, &t->n_text);
    if (!t->text) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    t->logprob = chosen ? chosen->logprob : 0.0f;
    t->id = chosen ? chosen->id : -1;
    t->counted = count_token;
    for (int i = 0; i < n_top && i < ST_SRV_MAX_TOP_LOGPROBS; i++) {
        t->top[i].id = top[i].id;
        t->top[i].logprob = top[i].logprob;
        t->n_top = i + 1;
    }
    j->n_out++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---- queue -------------------------------------------------------------------- */

static void queue_push_back(st_server *s, st__srv_job *j) {
    j->next = NULL;
    if (s->q_tail) s->q_tail->next = j;
    else s->q_head = j;
    s->q_tail = j;
    s->q_len++;
}

static void queue_push_front(st_server *s, st__srv_job *j) {
    j->next = s->q_head;
    s->q_head = j;
    if (!s->q_tail) s->q_tail = j;
    s->q_len++;
}

static st__srv_job *queue_pop(st_server *s) {
    st__srv_job *j = s->q_head;
    if (!j) return NULL;
    s->q_head = j->next;
    if (!s->q_head) s->q_tail = NULL;
    s->q_len--;
    j->next = NULL;
    return j;
}

bool st__srv_submit(st_server *s, st__srv_request *r) {
    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
        r->fail_status = 503;
        snprintf(r->fail_message, sizeof r->fail_message, "the server is shutting down");
        return false;
    }
    if (s->q_len + r->n_jobs > s->p.max_queue) {
        pthread_mutex_unlock(&s->mu);
        r->fail_status = 429;
        snprintf(r->fail_message, sizeof r->fail_message,
                 "the server is busy: %d sequences are waiting; retry later", s->q_len);
        return false;
    }
    pthread_mutex_lock(&r->mu);
    r->refs++; /* the scheduler's reference, dropped when the last job finishes */
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->n_jobs; i++) queue_push_back(s, r->jobs[i]);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return true;
}

/* ---- prefix cache --------------------------------------------------------------
 * Open addressing on the chained hash of a prompt's full blocks; deletion
 * by backward shift keeps probe chains intact. */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t block_hash(uint64_t parent, const int32_t *ids, int n) {
    uint64_t h = mix64(parent + 0x9e3779b97f4a7c15ULL);
    for (int i = 0; i < n; i++) h = mix64(h ^ (uint64_t)(uint32_t)ids[i]);
    return h ? h : 1;
}

static int64_t pc_find(const st_server *s, uint64_t h, uint64_t parent, const int32_t *ids) {
    if (!s->pc_cap) return -1;
    for (int64_t i = (int64_t)(h & (uint64_t)(s->pc_cap - 1));; i = (i + 1) & (s->pc_cap - 1)) {
        const st__srv_pc_entry *e = &s->pc[i];
        if (!e->hash) return -1;
        if (e->hash == h && e->parent == parent &&
            memcmp(e->tokens, ids, (size_t)s->block_tokens * sizeof(int32_t)) == 0)
            return i;
    }
}

static void pc_remove_at(st_server *s, int64_t i) {
    st__srv_pc_entry *e = &s->pc[i];
    st_kv_block_unref(s->kv, e->block);
    st_free(e->tokens);
    memset(e, 0, sizeof *e);
    s->pc_len--;
    const int64_t mask = s->pc_cap - 1;
    for (int64_t j = (i + 1) & mask; s->pc[j].hash; j = (j + 1) & mask) {
        int64_t home = (int64_t)(s->pc[j].hash & (uint64_t)mask);
        /* move j back to the hole at i when its home is not in (i, j] */
        bool in = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in) {
            s->pc[i] = s->pc[j];
            memset(&s->pc[j], 0, sizeof s->pc[j]);
            i = j;
        }
    }
}

static void pc_insert(st_server *s, uint64_t h, uint64_t parent, const int32_t *ids,
                      int32_t block) {
    if (!s->pc_cap || s->pc_len * 2 >= s->pc_cap) return; /* full enough: skip */
    if (pc_find(s, h, parent, ids) >= 0) return;
    int32_t *copy = st_malloc((size_t)s->block_tokens * sizeof(int32_t));
    if (!copy) return;
    memcpy(copy, ids, (size_t)s->block_tokens * sizeof(int32_t));
    int64_t i = (int64_t)(h & (uint64_t)(s->pc_cap - 1));
    while (s->pc[i].hash) i = (i + 1) & (s->pc_cap - 1);
    s->pc[i] = (st__srv_pc_entry){h, parent, block, ++s->pc_clock, copy};
    s->pc_len++;
    st_kv_block_ref(s->kv, block);
}

/* Frees up to `want` blocks by dropping cache entries that only the cache
 * holds, least recently used first. Returns the blocks freed. */
static int64_t pc_evict(st_server *s, int64_t want) {
    int64_t freed = 0;
    while (freed < want) {
        int64_t best = -1;
        for (int64_t i = 0; i < s->pc_cap; i++)
            if (s->pc[i].hash && st_kv_block_refcount(s->kv, s->pc[i].block) == 1 &&
                (best < 0 || s->pc[i].last_use < s->pc[best].last_use))
                best = i;
        if (best < 0) break;
        pc_remove_at(s, best);
        freed++;
    }
    return freed;
}

/* Starts j's sequence from the longest run of its prompt's full blocks in
 * the cache (never the whole known text: the last token must be computed
 * for its logits). Returns the tokens matched. */
static int64_t pc_match(st_server *s, st__srv_job *j) {
    if (!s->p.prefix_cache || j->embed) return 0;
    const int B = s->block_tokens;
    int64_t n_full = (j->n_ids - 1) / B, hit = 0;
    uint64_t parent = 0;
    for (int64_t b = 0; b < n_full; b++) {
        const int32_t *ids = j->ids + b * B;
        uint64_t h = block_hash(parent, ids, B);
        int64_t at = pc_find(s, h, parent, ids);
        if (at < 0) break;
        st__srv_pc_entry *e = &s->pc[at];
        if (j->seq.n_blocks == j->seq.cap_blocks) {
            int cap = j->seq.cap_blocks ? 2 * j->seq.cap_blocks : 16;
            int32_t *t = st_realloc(j->seq.blocks, (size_t)cap * sizeof *t);
            if (!t) break;
            j->seq.blocks = t;
            j->seq.cap_blocks = cap;
        }
        st_kv_block_ref(s->kv, e->block);
        e->last_use = ++s->pc_clock;
        j->seq.blocks[j->seq.n_blocks++] = e->block;
        j->seq.n_tokens += B;
        hit += B;
        parent = h;
    }
    return hit;
}

/* Offers j's newly completed full prompt blocks to the cache. */
static void pc_offer(st_server *s, st__srv_job *j) {
    if (!s->p.prefix_cache || j->embed) return;
    const int B = s->block_tokens;
    int64_t n_full = (j->n_prompt < j->seq.n_tokens ? j->n_prompt : j->seq.n_tokens) / B;
    if (n_full <= j->n_cached_blocks) return;
    uint64_t parent = 0;
    for (int64_t b = 0; b < n_full; b++) {
        uint64_t h = block_hash(parent, j->ids + b * B, B);
        if (b >= j->n_cached_blocks) pc_insert(s, h, parent, j->ids + b * B, j->seq.blocks[b]);
        parent = h;
    }
    j->n_cached_blocks = n_full;
}

/* ---- finishing -------------------------------------------------------------------- */

static void job_finish(st_server *s, st__srv_job *j, st__srv_finish why) {
    st_kv_seq_release(s->kv, &j->seq);
    st__srv_request *r = j->r;
    double now = st__srv_now();
    if (why == ST_SRV_FINISH_CANCELLED)
        st__srv_metrics_count(&s->metrics, 0, 1, 0);
    else if (!j->embed && why != ST_SRV_FINISH_ERROR)
        st__srv_metrics_observe(&s->metrics, ST_SRV_E2E, now - r->t_arrival);
    pthread_mutex_lock(&r->mu);
    j->finish = why;
    r->n_done++;
    bool last = r->n_done == r->n_jobs;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (last) st__srv_request_unref(r); /* the scheduler's reference */
}

static void running_remove(st_server *s, int i) {
    memmove(s->running + i, s->running + i + 1,
            (size_t)(s->n_running - i - 1) * sizeof *s->running);
    s->n_running--;
}

/* ---- text: UTF-8 completion and stop strings ----------------------------------- */

static bool pending_add(st__srv_job *j, const char *p, size_t n) {
    if (j->n_pending + n + 1 > j->cap_pending) {
        size_t cap = j->cap_pending ? j->cap_pending : 64;
        while (cap < j->n_pending + n + 1) cap *= 2;
        char *q = st_realloc(j->pending, cap);
        if (!q) return false;
        j->pending = q;
        j->cap_pending = cap;
    }
    memcpy(j->pending + j->n_pending, p, n);
    j->n_pending += n;
    return true;
}

/* Bytes of j->pending that are final: not an incomplete UTF-8 character,
 * not a possible start of a stop string. *stop_at >= 0 when a stop string
 * occurs whole (the text ends before it). */
static size_t pending_final(const st__srv_job *j, const char *const *stops, int n_stops,
                            int64_t *stop_at) {
    const char *p = j->pending;
    size_t n = j->n_pending;
    *stop_at = -1;
    size_t earliest = n;
    for (int k = 0; k < n_stops; k++) {
        const char *st = stops[k];
        size_t ls = strlen(st);
        if (!ls) continue;
        const char *hit = memmem(p, n, st, ls);
        if (hit && (*stop_at < 0 || hit - p < *stop_at)) *stop_at = hit - p;
        /* a suffix of p that is a proper prefix of st */
        for (size_t start = n > ls ? n - ls + 1 : 0; start < n; start++)
            if (memcmp(p + start, st, n - start) == 0) {
                if (start < earliest) earliest = start;
                break;
            }
    }
    if (*stop_at >= 0) return (size_t)*stop_at;
    /* hold back an incomplete UTF-8 character at the end */
    size_t lim = earliest, i = 0;
    while (i < lim) {
        int l = utf8_len((const unsigned char *)p + i, n - i);
        if (l == 0) break;        /* incomplete: wait for more bytes */
        i += l < 0 ? 1 : (size_t)l;
    }
    return i < lim ? i : lim;
}

static void pending_consume(st__srv_job *j, size_t k) {
    memmove(j->pending, j->pending + k, j->n_pending - k);
    j->n_pending -= k;
}

/* Appends token id to j and streams the text it makes final. Returns the
 * finish reason it causes (NONE to go on). */
static st__srv_finish job_accept(st_server *s, st__srv_job *j, int32_t id,
                                 const st_token_logprob *chosen, const st_token_logprob *top,
                                 int n_top) {
    st__srv_request *r = j->r;
    double now = st__srv_now();
    if (j->n_generated == 0) st__srv_metrics_observe(&s->metrics, ST_SRV_TTFT, now - r->t_arrival);
    else st__srv_metrics_observe(&s->metrics, ST_SRV_ITL, now - j->t_last);
    j->t_last = now;
    j->n_generated++;
    st__srv_metrics_tokens(&s->metrics, 0, 1);
    const st_lm *lm = s->lm;
    bool eos = (lm->eos_id >= 0 && id == lm->eos_id) ||
               (st_tokenizer_eos_id(s->tok) >= 0 && id == st_tokenizer_eos_id(s->tok)) ||
               (st_tokenizer_get_kind(s->tok) == ST_TOK_SENTENCEPIECE && lm->bos_id >= 0 &&
                id == lm->bos_id);
    if (eos) { /* EOS produces no text; flush what is held back */
        emit(j, j->pending, j->n_pending, chosen, top, n_top, true);
        j->n_pending = 0;
        return ST_SRV_FINISH_STOP;
    }
    if (j->n_ids == j->cap_ids) {
        int64_t cap = 2 * j->cap_ids;
        int32_t *ids = st_realloc(j->ids, (size_t)cap * sizeof *ids);
        if (!ids) return ST_SRV_FINISH_ERROR;
        j->ids = ids;
        j->cap_ids = cap;
    }
    j->ids[j->n_ids++] = id;
    size_t np = 0;
    const char *piece = st_tokenizer_piece(s->tok, id, &np);
    if (piece && !pending_add(j, piece, np)) return ST_SRV_FINISH_ERROR;
    const char *stops[ST_SRV_MAX_STOP + 1];
    int n_stops = 0;
    for (int k = 0; k < r->req.n_stop; k++) stops[n_stops++] = r->req.stop[k];
    if (r->stop_extra) stops[n_stops++] = r->stop_extra;
    int64_t stop_at;
    size_t fin = pending_final(j, stops, n_stops, &stop_at);
    emit(j, j->pending, fin, chosen, top, n_top, true);
    if (stop_at >= 0) {
        j->n_pending = 0;
        return ST_SRV_FINISH_STOP;
    }
    pending_consume(j, fin);
    const int64_t max_new = r->req.max_tokens >= 0 ? r->req.max_tokens : INT64_MAX;
    if (j->n_generated >= max_new || j->n_ids >= lm->cfg.n_ctx) {
        /* flush what was held back for a stop string that never came */
        if (j->n_pending) emit(j, j->pending, j->n_pending, NULL, NULL, 0, false);
        j->n_pending = 0;
        return ST_SRV_FINISH_LENGTH;
    }
    return ST_SRV_FINISH_NONE;
}

/* ---- the loop ---------------------------------------------------------------------- */

static bool job_dead(const st__srv_job *j, double now) {
    return j->r->cancelled || now > j->r->deadline;
}

/* Admits queued jobs while blocks last. Called with s->mu held. */
static void admit(st_server *s) {
    double now = st__srv_now();
    while (s->q_head && s->n_running < s->p.max_running) {
        st__srv_job *j = s->q_head;
        if (job_dead(j, now)) {
            queue_pop(s);
            job_finish(s, j, ST_SRV_FINISH_CANCELLED);
            continue;
        }
        if (j->seq.n_tokens == 0) {
            int64_t hit = pc_match(s, j);
            if (hit) st__srv_metrics_count(&s->metrics, 0, 0, (uint64_t)hit);
        }
        /* the whole known text must fit now, plus one block of headroom per
         * running sequence for their next decode steps */
        int64_t need = st_kv_seq_blocks_needed(s->kv, &j->seq, j->n_ids - j->seq.n_tokens) +
                       s->n_running;
        if (need > st_kv_n_free(s->kv)) pc_evict(s, need - st_kv_n_free(s->kv));
        if (need > st_kv_n_free(s->kv) && s->n_running > 0) {
            st_kv_seq_release(s->kv, &j->seq); /* give back the prefix blocks meanwhile */
            break;
        }
        if (need - s->n_running > st_kv_n_free(s->kv)) {
            /* not even alone: the KV pool cannot hold this prompt */
            queue_pop(s);
            st_kv_seq_release(s->kv, &j->seq);
            pthread_mutex_lock(&j->r->mu);
            j->r->fail_status = 400;
            snprintf(j->r->fail_message, sizeof j->r->fail_message,
                     "the prompt (%lld tokens) does not fit in the KV cache",
                     (long long)j->n_ids);
            pthread_mutex_unlock(&j->r->mu);
            job_finish(s, j, ST_SRV_FINISH_ERROR);
            continue;
        }
        queue_pop(s);
        j->admit_order = ++s->admit_counter;
        if (j->prompt_tokens == 0) {
            j->prompt_tokens = j->n_prompt;
            st__srv_metrics_tokens(&s->metrics, (uint64_t)j->n_prompt, 0);
        }
        s->running[s->n_running++] = j;
    }
}

/* Preempts the youngest running job: frees its blocks and queues it again
 * at the head (it will recompute its prompt and generated tokens). */
static bool preempt_youngest(st_server *s) {
    if (s->n_running <= 1) return false;
    int y = 0;
    for (int i = 1; i < s->n_running; i++)
        if (s->running[i]->admit_order > s->running[y]->admit_order) y = i;
    st__srv_job *j = s->running[y];
    running_remove(s, y);
    st_kv_seq_release(s->kv, &j->seq);
    j->n_cached_blocks = 0;
    if (j->hidden) memset(j->hidden, 0, (size_t)s->lm->cfg.n_embd * sizeof(float));
    pthread_mutex_lock(&s->mu);
    queue_push_front(s, j);
    pthread_mutex_unlock(&s->mu);
    st__srv_metrics_count(&s->metrics, 1, 0, 0);
    return true;
}

/* One sequence's draw in a pass; the draws run in parallel on the pool
 * (samplers are per job, the logits rows disjoint), then the jobs take
 * their tokens in batch order on the scheduler thread. */
typedef struct st__srv_sample {
    st__srv_job *job; /* NULL: no draw for this batch entry */
    float *logits;
    int32_t id;
    int n_top;
    st_token_logprob chosen;
    st_status status;
} st__srv_sample;

typedef struct sample_job {
    st__srv_sample *smp;
    st_token_logprob *top; /* [n, ST_SRV_MAX_TOP_LOGPROBS] */
} sample_job;

static void sample_range(void *arg, int64_t begin, int64_t end) {
    sample_job *sj = arg;
    for (int64_t b = begin; b < end; b++) {
        st__srv_sample *x = &sj->smp[b];
        if (!x->job) continue;
        st__srv_job *j = x->job;
        /* log-probabilities cost a pass over the vocabulary: only when asked */
        x->chosen = (st_token_logprob){-1, 0.0f};
        x->status =
            st_sampler_sample(j->sampler, x->logits, j->ids + j->n_prompt, j->n_ids - j->n_prompt,
                              &x->id, j->r->req.logprobs ? &x->chosen : NULL,
                              sj->top + b * ST_SRV_MAX_TOP_LOGPROBS, x->n_top);
        x->chosen.id = x->id;
    }
}

int st__srv_prefill_budget(const st_server_params *p, int n_decoding, int budget) {
    if (n_decoding == 0) return budget;
    int cap =
        p->prefill_while_decoding > n_decoding / 2 ? p->prefill_while_decoding : n_decoding / 2;
    return cap < budget ? cap : budget;
}

/* One forward pass over the running set. Returns false when nothing ran. */
static bool step(st_server *s) {
    const int64_t V = s->lm->cfg.vocab_size;
    for (;;) {
        int n = 0, budget = s->p.max_batch_tokens;
        int64_t blocks = 0;
        /* decoders first: one token each */
        for (int i = 0; i < s->n_running && budget > 0; i++) {
            st__srv_job *j = s->running[i];
            if (j->n_ids - j->seq.n_tokens != 1) continue;
            s->batch[n] = (st_engine_seq){.seq = &j->seq, .tokens = j->ids + j->seq.n_tokens,
                                          .n_tokens = 1};
            blocks += st_kv_seq_blocks_needed(s->kv, &j->seq, 1);
            n++;
            budget--;
        }
        /* a pass's time grows with its rows: while streams decode, prompts
         * get a bounded share, so a joining prompt delays their next token
         * by a bounded amount (the p99 inter-token latency) */
        budget = st__srv_prefill_budget(&s->p, n, budget);
        /* then prompt chunks, oldest first (running is in admission order) */
        for (int i = 0; i < s->n_running && budget > 0; i++) {
            st__srv_job *j = s->running[i];
            int64_t left = j->n_ids - j->seq.n_tokens;
            if (left <= 1) continue; /* decoders were taken above */
            int64_t take = left;
            if (take > s->p.prefill_chunk) take = s->p.prefill_chunk;
            if (take > budget) take = budget;
            s->batch[n] = (st_engine_seq){.seq = &j->seq, .tokens = j->ids + j->seq.n_tokens,
                                          .n_tokens = (int)take};
            blocks += st_kv_seq_blocks_needed(s->kv, &j->seq, take);
            n++;
            budget -= (int)take;
        }
        if (n == 0) return false;
        if (blocks > st_kv_n_free(s->kv)) {
            pc_evict(s, blocks - st_kv_n_free(s->kv));
            if (blocks > st_kv_n_free(s->kv)) {
                if (preempt_youngest(s)) continue;
                /* one sequence alone has outgrown the pool: end it */
                st__srv_job *j = s->running[0];
                running_remove(s, 0);
                if (j->n_pending) emit(j, j->pending, j->n_pending, NULL, NULL, 0, false);
                j->n_pending = 0;
                job_finish(s, j, ST_SRV_FINISH_LENGTH);
                continue;
            }
        }
        /* outputs: logits for rows whose text is then complete; hidden sums */
        st__srv_job *who[n];
        int row = 0;
        for (int b = 0; b < n; b++) {
            st_kv_seq *seq = s->batch[b].seq;
            st__srv_job *j = NULL;
            for (int i = 0; i < s->n_running; i++)
                if (&s->running[i]->seq == seq) j = s->running[i];
            who[b] = j;
            bool completes = seq->n_tokens + s->batch[b].n_tokens == j->n_ids;
            if (j->embed) s->batch[b].hidden_sum = j->hidden;
            else if (completes) s->batch[b].logits = s->logits + (size_t)(row++) * (size_t)V;
        }
        st_status st = st_engine_forward(s->eng, s->batch, n);
        if (st != ST_OK) {
            st_log_msg(ST_LOG_ERROR, "serve: forward pass failed: %s", st_last_error());
            for (int b = 0; b < n; b++) {
                st__srv_job *j = who[b];
                for (int i = 0; i < s->n_running; i++)
                    if (s->running[i] == j) {
                        running_remove(s, i);
                        break;
                    }
                pthread_mutex_lock(&j->r->mu);
                j->r->fail_status = 500;
                snprintf(j->r->fail_message, sizeof j->r->fail_message,
                         "the forward pass failed: %.120s", st_last_error());
                pthread_mutex_unlock(&j->r->mu);
                job_finish(s, j, ST_SRV_FINISH_ERROR);
            }
            return true;
        }
        /* the draws, in parallel when there are several */
        int n_draws = 0;
        for (int b = 0; b < n; b++) {
            st__srv_job *j = who[b];
            bool draw = !j->embed && j->seq.n_tokens == j->n_ids;
            s->samples[b] =
                (st__srv_sample){.job = draw ? j : NULL,
                                 .logits = s->batch[b].logits,
                                 .n_top = j->r->req.logprobs ? j->r->req.top_logprobs : 0};
            n_draws += draw;
        }
        sample_job sj = {.smp = s->samples, .top = s->top};
        st_pool *pool = st_backend_cpu_pool(st_ctx_backend(s->ctx));
        if (pool && n_draws > 1)
            st_pool_parallel_for(pool, n, 1, sample_range, &sj);
        else
            sample_range(&sj, 0, n);
        for (int b = 0; b < n; b++) {
            st__srv_job *j = who[b];
            if (j->seq.n_tokens >= j->n_prompt) pc_offer(s, j);
            if (j->seq.n_tokens != j->n_ids) continue;
            st__srv_finish fin = ST_SRV_FINISH_NONE;
            if (j->embed) {
                fin = ST_SRV_FINISH_STOP;
            } else {
                const st__srv_sample *x = &s->samples[b];
                const st_token_logprob *top = s->top + (size_t)b * ST_SRV_MAX_TOP_LOGPROBS;
                fin = x->status ? ST_SRV_FINISH_ERROR
                                : job_accept(s, j, x->id, &x->chosen, top, x->n_top);
            }
            if (fin != ST_SRV_FINISH_NONE) {
                for (int i = 0; i < s->n_running; i++)
                    if (s->running[i] == j) {
                        running_remove(s, i);
                        break;
                    }
                job_finish(s, j, fin);
            }
        }
        return true;
    }
}

static void publish_gauges(st_server *s) {
    int64_t nb = st_kv_n_blocks(s->kv), nf = st_kv_n_free(s->kv), live = 0;
    for (int i = 0; i < s->n_running; i++) live += s->running[i]->seq.n_tokens;
    st__srv_metrics_gauges(&s->metrics, s->q_len, s->n_running, nb - nf, nf, live);
}

void st__srv_sched_run(st_server *s) {
    double drain_deadline = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        if (s->stop_requested && !s->draining) {
            s->draining = true;
            s->closed = true;
            drain_deadline = st__srv_now() + s->p.shutdown_grace_s;
            /* queued jobs will not run: answer them 503 */
            st__srv_job *j;
            while ((j = queue_pop(s))) {
                st_kv_seq_release(s->kv, &j->seq);
                pthread_mutex_lock(&j->r->mu);
                j->r->fail_status = 503;
                snprintf(j->r->fail_message, sizeof j->r->fail_message,
                         "the server is shutting down");
                pthread_mutex_unlock(&j->r->mu);
                job_finish(s, j, ST_SRV_FINISH_ERROR);
            }
        }
        if (s->draining && (s->n_running == 0 || st__srv_now() > drain_deadline)) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if (!s->draining) admit(s);
        publish_gauges(s);
        bool idle = s->n_running == 0;
        if (idle && !s->draining) {
            /* wait for work or a stop request (polled: st_server_stop only sets a flag) */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            if (!s->q_head) pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        /* cancelled or timed-out running jobs end here */
        double now = st__srv_now();
        for (int i = 0; i < s->n_running;) {
            st__srv_job *j = s->running[i];
            if (job_dead(j, now)) {
                running_remove(s, i);
                job_finish(s, j, ST_SRV_FINISH_CANCELLED);
            } else {
                i++;
            }
        }
        step(s);
    }
    /* past the grace period: whatever still runs is cut off */
    while (s->n_running > 0) {
        st__srv_job *j = s->running[0];
        running_remove(s, 0);
        job_finish(s, j, ST_SRV_FINISH_CANCELLED);
    }
    publish_gauges(s);
}

st_status st__srv_sched_init(st_server *s) {
    const st_model_config *c = &s->lm->cfg;
    s->running = st_calloc((size_t)s->p.max_running, sizeof *s->running);
    s->batch = st_calloc((size_t)s->p.max_running, sizeof *s->batch);
    s->logits = st_malloc((size_t)s->p.max_running * (size_t)c->vocab_size * sizeof(float));
    s->top = st_calloc((size_t)s->p.max_running * ST_SRV_MAX_TOP_LOGPROBS, sizeof *s->top);
    s->samples = st_calloc((size_t)s->p.max_running, sizeof *s->samples);
    int64_t cap = 1;
    while (cap < 2 * st_kv_n_blocks(s->kv) + 16) cap *= 2;
    s->pc = st_calloc((size_t)cap, sizeof *s->pc);
    s->pc_cap = cap;
    if (!s->running || !s->batch || !s->logits || !s->top || !s->samples || !s->pc)
        return ST_ERR_NOMEM;
    return ST_OK;
}

void st__srv_sched_free(st_server *s) {
    for (int64_t i = 0; i < s->pc_cap; i++)
        if (s->pc && s->pc[i].hash) {
            st_kv_block_unref(s->kv, s->pc[i].block);
            st_free(s->pc[i].tokens);
        }
    st_free(s->pc);
    st_free(s->running);
    st_free(s->batch);
    st_free(s->logits);
    st_free(s->top);
    st_free(s->samples);
}
