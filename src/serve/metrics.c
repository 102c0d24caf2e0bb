/*
 * metrics.c — the numbers behind GET /metrics, in Prometheus' text
 * exposition format (version 0.0.4): requests by HTTP status, tokens in and
 * out, queue depth, running sequences, KV blocks used and free, and
 * histograms of time to first token, inter-token latency and end-to-end
 * latency.
 *
 * One mutex guards the struct: HTTP threads count requests, the scheduler
 * thread sets gauges and observes latencies, /metrics reads a snapshot.
 * Every update is a few additions, so the lock is never held for long.
 */
#include "serve/serve_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Seconds; chosen to resolve both a fast decode step (ms) and a long request. */
static const double bucket_le[ST_SRV_N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                   0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};

void st__srv_metrics_init(st__srv_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void st__srv_metrics_destroy(st__srv_metrics *m) { pthread_mutex_destroy(&m->mu); }

void st__srv_metrics_request(st__srv_metrics *m, int http_status) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < ST_SRV_N_STATUS && m->status_counts[i] && m->status_codes[i] != http_status) i++;
    if (i == ST_SRV_N_STATUS) i = ST_SRV_N_STATUS - 1; /* table full: lumped into the last */
    m->status_codes[i] = m->status_counts[i] ? m->status_codes[i] : http_status;
    m->status_counts[i]++;
    pthread_mutex_unlock(&m->mu);
}

void st__srv_metrics_tokens(st__srv_metrics *m, uint64_t in, uint64_t out) {
    pthread_mutex_lock(&m->mu);
    m->tokens_in += in;
    m->tokens_out += out;
    pthread_mutex_unlock(&m->mu);
}

void st__srv_metrics_gauges(st__srv_metrics *m, int64_t queue_depth, int64_t running,
                            int64_t kv_used, int64_t kv_free, int64_t kv_live_tokens) {
    pthread_mutex_lock(&m->mu);
    m->queue_depth = queue_depth;
    m->running = running;
    m->kv_used = kv_used;
    m->kv_free = kv_free;
    m->kv_live_tokens = kv_live_tokens;
    pthread_mutex_unlock(&m->mu);
}

void st__srv_metrics_count(st__srv_metrics *m, uint64_t preemptions, uint64_t cancellations,
                           uint64_t prefix_hit_tokens) {
    pthread_mutex_lock(&m->mu);
    m->preemptions += preemptions;
    m->cancellations += cancellations;
    m->prefix_hit_tokens += prefix_hit_tokens;
    pthread_mutex_unlock(&m->mu);
}

void st__srv_metrics_observe(st__srv_metrics *m, st__srv_hist_id id, double seconds) {
    pthread_mutex_lock(&m->mu);
    st__srv_hist *h = id == ST_SRV_TTFT ? &m->ttft : id == ST_SRV_ITL ? &m->itl : &m->e2e;
    int b = 0;
    while (b < ST_SRV_N_BUCKETS && seconds > bucket_le[b]) b++;
    h->counts[b]++; /* per bucket; cumulated when rendered */
    h->sum += seconds;
    h->count++;
    pthread_mutex_unlock(&m->mu);
}

/* The exposition is built in an st_strbuf; its sticky failure is checked once. */
#define put (void)st_strbuf_printf

static void put_hist(st_strbuf *b, const char *name, const char *help, const st__srv_hist *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < ST_SRV_N_BUCKETS; i++) {
        cum += h->counts[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[i], (unsigned long long)cum);
    }
    cum += h->counts[ST_SRV_N_BUCKETS];
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    put(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
}

static void put_scalar(st_strbuf *b, const char *name, const char *type, const char *help, double v) {
    put(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

char *st__srv_metrics_render(st__srv_metrics *m) {
    st__srv_metrics s;
    pthread_mutex_lock(&m->mu);
    s = *m; /* a snapshot (the copied mutex is never used) */
    pthread_mutex_unlock(&m->mu);
    st_strbuf b = {0};
    put(&b, "# HELP strata_requests_total HTTP requests answered, by status code.\n"
            "# TYPE strata_requests_total counter\n");
    for (int i = 0; i < ST_SRV_N_STATUS && s.status_counts[i]; i++)
        put(&b, "strata_requests_total{status=\"%d\"} %llu\n", s.status_codes[i],
            (unsigned long long)s.status_counts[i]);
    put_scalar(&b, "strata_prompt_tokens_total", "counter", "Prompt tokens processed.",
               (double)s.tokens_in);
    put_scalar(&b, "strata_generated_tokens_total", "counter", "Tokens generated.",
               (double)s.tokens_out);
    put_scalar(&b, "strata_prefix_cache_hit_tokens_total", "counter",
               "Prompt tokens whose KV came from the prefix cache.",
               (double)s.prefix_hit_tokens);
    put_scalar(&b, "strata_preemptions_total", "counter",
               "Sequences preempted (KV blocks freed, recomputed later).", (double)s.preemptions);
    put_scalar(&b, "strata_cancellations_total", "counter",
               "Sequences cancelled by a client disconnect or a timeout.",
               (double)s.cancellations);
    put_scalar(&b, "strata_queue_depth", "gauge", "Requests waiting to be scheduled.",
               (double)s.queue_depth);
    put_scalar(&b, "strata_running_sequences", "gauge", "Sequences in the running batch.",
               (double)s.running);
    put_scalar(&b, "strata_kv_blocks_used", "gauge", "KV cache blocks in use.",
               (double)s.kv_used);
    put_scalar(&b, "strata_kv_blocks_free", "gauge", "KV cache blocks free.", (double)s.kv_free);
    put_scalar(&b, "strata_kv_live_tokens", "gauge",
               "Tokens whose K and V the running sequences hold.", (double)s.kv_live_tokens);
    put_hist(&b, "strata_time_to_first_token_seconds",
             "Time from a request's arrival to its first generated token.", &s.ttft);
    put_hist(&b, "strata_inter_token_latency_seconds",
             "Time between consecutive tokens of a sequence.", &s.itl);
    put_hist(&b, "strata_request_duration_seconds",
             "Time from a request's arrival to its last token.", &s.e2e);
    if (b.failed) {
        st_strbuf_free(&b);
        return NULL;
    }
    return b.p;
}
