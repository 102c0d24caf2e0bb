/*
 * serve_impl.h — internals of the OpenAI-compatible server (src/serve/).
 *
 * The server is three parts joined by two structs:
 *  - openai.c turns a request body (JSON) into an st__srv_req — every
 *    parameter validated, with OpenAI's error shape when one is wrong — and
 *    builds the response and stream-chunk JSON from what the scheduler
 *    produced;
 *  - metrics.c keeps the counters, gauges and histograms behind /metrics
 *    (Prometheus text format 0.0.4);
 * The HTTP glue and the scheduler build on these.
 */
#ifndef STRATA_SERVE_IMPL_H
#define STRATA_SERVE_IMPL_H

#include <jansson.h>
#include <pthread.h>
#include <signal.h>

#include "strata/base.h"
#include "strata/infer.h"

/* ---- requests ------------------------------------------------------------- */

typedef enum st__srv_kind {
    ST_SRV_COMPLETION = 0, /* POST /v1/completions */
    ST_SRV_CHAT = 1,       /* POST /v1/chat/completions */
    ST_SRV_EMBEDDING = 2,  /* POST /v1/embeddings */
} st__srv_kind;

#define ST_SRV_MAX_STOP 4      /* OpenAI's limit on stop sequences */
#define ST_SRV_MAX_TOP_LOGPROBS 20

/* Limits the server enforces on top of OpenAI's own (from st_server_params). */
typedef struct st__srv_limits {
    int max_tokens;        /* upper bound on max_tokens (and its default cap) */
    int max_n;             /* upper bound on n */
    int max_inputs;        /* embeddings: inputs per request */
    size_t max_prompt_bytes;
} st__srv_limits;

typedef struct st__srv_req {
    st__srv_kind kind;
    char *model;            /* as sent (NULL: the served model) */
    /* completion: prompts[0..n_prompts) (a string or an array of strings);
     * embeddings: the inputs. Token-id inputs are kept as ids. */
    char **prompts;
    int n_prompts;
    int32_t **prompt_ids;   /* non-NULL entries: the input was an array of ids */
    int *n_prompt_ids;
    st_chat_message *messages; /* chat */
    int n_messages;
    int max_tokens;         /* -1: until the context is full (chat's default) */
    float temperature;      /* default 1 */
    float top_p;            /* default 1 */
    int top_k;              /* extension; 0 off */
    float min_p;            /* extension; 0 off */
    float presence_penalty, frequency_penalty; /* [-2, 2] */
    float repetition_penalty; /* extension; 1 off */
    int n;                  /* choices per prompt (default 1) */
    bool has_seed;
    uint64_t seed;
    char *stop[ST_SRV_MAX_STOP];
    int n_stop;
    bool stream;
    bool include_usage;     /* stream_options.include_usage */
    bool echo;              /* completions: prompt text prepended */
    bool logprobs;          /* chat: bool; completions: logprobs >= 0 given */
    int top_logprobs;       /* chat: top_logprobs; completions: the logprobs int */
    char *user;
    bool base64;            /* embeddings: encoding_format "base64" */
} st__srv_req;

/* An OpenAI error: HTTP status, message, type, param (may be NULL), code
 * (may be NULL). */
typedef struct st__srv_error {
    int http_status;
    char message[512];
    const char *type;  /* "invalid_request_error", "authentication_error", ... */
    char param[64];
    const char *code;
} st__srv_error;

/* Parses and validates a request body of kind. On failure fills err (400
 * with the offending parameter) and returns false; req is then cleared. */
bool st__srv_req_parse(st__srv_kind kind, const char *body, size_t n, const st__srv_limits *lim,
                       st__srv_req *req, st__srv_error *err);
void st__srv_req_clear(st__srv_req *req);

void st__srv_error_set(st__srv_error *err, int http_status, const char *type, const char *param,
                       const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* {"error": {"message", "type", "param", "code"}} as a st_malloc'd string. */
char *st__srv_error_json(const st__srv_error *err);

/* ---- responses ------------------------------------------------------------ */

typedef struct st__srv_logprob {
    int32_t id;
    float logprob;
} st__srv_logprob;

/* One generated token as the response builders see it. */
typedef struct st__srv_token {
    int32_t id;             /* -1: text flushed at the end, not a token of its own */
    bool counted;           /* a generated token (usage) */
    char *text;             /* the text it made final: valid UTF-8, may be empty */
    size_t n_text;
    float logprob;
    st__srv_logprob top[ST_SRV_MAX_TOP_LOGPROBS];
    int n_top;
} st__srv_token;

typedef enum st__srv_finish {
    ST_SRV_FINISH_NONE = 0,
    ST_SRV_FINISH_STOP,     /* EOS or a stop string */
    ST_SRV_FINISH_LENGTH,   /* max_tokens or the context */
    ST_SRV_FINISH_CANCELLED,
    ST_SRV_FINISH_ERROR,
} st__srv_finish;

const char *st__srv_finish_name(st__srv_finish f); /* "stop", "length", NULL */

/* ---- metrics ------------------------------------------------------------- */

#define ST_SRV_N_BUCKETS 14

typedef struct st__srv_hist {
    uint64_t counts[ST_SRV_N_BUCKETS + 1]; /* last: +Inf */
    double sum;
    uint64_t count;
} st__srv_hist;

#define ST_SRV_N_STATUS 8

typedef struct st__srv_metrics {
    pthread_mutex_t mu;
    int status_codes[ST_SRV_N_STATUS];     /* the codes seen, in order of first use */
    uint64_t status_counts[ST_SRV_N_STATUS];
    uint64_t tokens_in, tokens_out;
    uint64_t preemptions, cancellations, prefix_hit_tokens;
    int64_t queue_depth, running, kv_used, kv_free, kv_live_tokens;
    st__srv_hist ttft, itl, e2e;
} st__srv_metrics;

void st__srv_metrics_init(st__srv_metrics *m);
void st__srv_metrics_destroy(st__srv_metrics *m);
void st__srv_metrics_request(st__srv_metrics *m, int http_status);
void st__srv_metrics_tokens(st__srv_metrics *m, uint64_t in, uint64_t out);
void st__srv_metrics_gauges(st__srv_metrics *m, int64_t queue_depth, int64_t running,
                            int64_t kv_used, int64_t kv_free, int64_t kv_live_tokens);
typedef enum st__srv_hist_id { ST_SRV_TTFT, ST_SRV_ITL, ST_SRV_E2E } st__srv_hist_id;
void st__srv_metrics_observe(st__srv_metrics *m, st__srv_hist_id h, double seconds);
void st__srv_metrics_count(st__srv_metrics *m, uint64_t preemptions, uint64_t cancellations,
                           uint64_t prefix_hit_tokens);
/* Prometheus text exposition format 0.0.4, st_malloc'd. */
char *st__srv_metrics_render(st__srv_metrics *m);

/* ---- requests in flight --------------------------------------------------- */

#include "strata/serve.h"

typedef struct st__srv_request st__srv_request;

/* One sequence to generate (a choice of a completion or chat request) or to
 * embed. Created by the HTTP thread, owned by the scheduler from the moment
 * it is queued until it finishes; its outputs (out, n_out, finish) are
 * written by the scheduler and read by the HTTP thread under r->mu. */
typedef struct st__srv_job {
    st__srv_request *r;
    int choice;               /* index among the response's choices / embeddings */
    bool embed;
    int32_t *ids;             /* prompt, then generated tokens */
    int64_t n_ids, cap_ids, n_prompt;
    st_kv_seq seq;
    st_sampler *sampler;
    char *pending;            /* generated bytes not yet final (UTF-8, stop strings) */
    size_t n_pending, cap_pending;
    int64_t n_generated;
    int64_t n_cached_blocks;  /* prompt blocks already offered to the prefix cache */
    uint64_t admit_order;
    double t_last;
    float *hidden;            /* embeddings: [n_embd] sum of final hidden states */
    struct st__srv_job *next; /* queue link */
    /* outputs, under r->mu */
    st__srv_token *out;
    int n_out, cap_out;
    st__srv_finish finish;    /* NONE while running */
    int64_t prompt_tokens;    /* usage */
} st__srv_job;

struct st__srv_request {
    st__srv_req req;
    st__srv_job **jobs;
    int n_jobs;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* signalled on every new output and finish */
    int refs;                 /* the HTTP side + the scheduler while a job is unfinished */
    int n_done;
    bool cancelled;           /* the client vanished */
    int fail_status;          /* non-zero: answer with this HTTP status (503 on shutdown) */
    char fail_message[160];
    double t_arrival, deadline;
    char id[48];
    long long created;
    const char *stop_extra;   /* the chat template's end-of-turn string, or NULL */
};

/* Frees a request when the last reference goes (HTTP side or scheduler). */
void st__srv_request_unref(st__srv_request *r);
double st__srv_now(void);
/* Replaces invalid UTF-8 in s[n] with U+FFFD; st_malloc'd, NUL-terminated. */
char *st__srv_utf8_clean(const char *s, size_t n, size_t *n_out);

/* ---- the server ------------------------------------------------------------ */

/* A prefix-cache entry: one full KV block of a prompt, keyed by the hash of
 * all tokens up to and including it; the tokens are kept to rule out hash
 * collisions. The cache holds one reference on the block. */
typedef struct st__srv_pc_entry {
    uint64_t hash, parent;    /* 0 = empty slot */
    int32_t block;
    uint64_t last_use;
    int32_t *tokens;          /* block_tokens ids */
} st__srv_pc_entry;

struct MHD_Daemon;

struct st_server {
    st_server_params p;
    char host[64], model_name[128];
    st_ctx *ctx;
    const st_lm *lm;
    const st_tokenizer *tok;
    st_engine *eng;
    st_kv_cache *kv;
    int block_tokens;
    st_chat_template tmpl;
    struct MHD_Daemon *daemon;
    int port;
    volatile sig_atomic_t stop_requested; /* st_server_stop: the scheduler polls it */
    st__srv_metrics metrics;
    /* queue and running set */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    st__srv_job *q_head, *q_tail;
    int q_len;
    bool draining, closed;    /* closed: no new requests accepted */
    st__srv_job **running;
    int n_running;
    uint64_t admit_counter, request_counter;
    /* prefix cache (scheduler thread only) */
    st__srv_pc_entry *pc;
    int64_t pc_cap, pc_len;
    uint64_t pc_clock;
    /* scratch (scheduler thread only) */
    st_engine_seq *batch;
    float *logits;            /* [max_running, vocab] */
    st_token_logprob *top;    /* [max_running * ST_SRV_MAX_TOP_LOGPROBS]: a pass's samples */
    struct st__srv_sample *samples; /* [max_running] */
};

/* scheduler.c */
st_status st__srv_sched_init(st_server *s);
void st__srv_sched_free(st_server *s);
/* Queues the request's jobs; false (with r->fail_status 429 or 503) when
 * the queue is full or the server is closing. */
bool st__srv_submit(st_server *s, st__srv_request *r);
/* Prompt tokens one pass may take besides n_decoding one-token decodes
 * (the policy st_server_params.prefill_while_decoding states; budget is
 * max_batch_tokens minus the decodes). Pure; for tests. */
int st__srv_prefill_budget(const st_server_params *p, int n_decoding, int budget);
/* The scheduler loop; returns once draining has ended. */
void st__srv_sched_run(st_server *s);
/* http.c */
st_status st__srv_http_start(st_server *s);
void st__srv_http_quiesce(st_server *s);
void st__srv_http_stop(st_server *s);

#endif /* STRATA_SERVE_IMPL_H */
