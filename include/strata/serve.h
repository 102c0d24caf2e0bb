/*
 * strata/serve.h — layer 6: an OpenAI-compatible HTTP server over the
 * inference engine (docs/L6-serve.md).
 *
 * Endpoints: POST /v1/completions, /v1/chat/completions, /v1/embeddings;
 * GET /v1/models, /health (alive), /ready (model loaded, not draining),
 * /metrics (Prometheus text). Responses, usage counts, errors and
 * server-sent-event streams follow OpenAI's shapes, so OpenAI's clients work
 * unchanged with base URL http://HOST:PORT/v1.
 *
 * Inside: libmicrohttpd threads parse and validate requests and stream
 * answers; one scheduler thread owns the engine and runs iteration-level
 * continuous batching: between two forward passes it admits queued
 * sequences while KV blocks last, gives every running sequence one decode
 * token and fills the rest of the token budget with prompt chunks, shares
 * full prompt blocks through a prefix cache (reference counts, LRU
 * eviction), and preempts the youngest sequence (freeing its blocks, to be
 * recomputed) when blocks run out. A bounded queue answers 429 with
 * Retry-After when full; a client that disconnects cancels its sequences.
 *
 * Threads: st_server_run blocks the calling thread until st_server_stop
 * (async-signal-safe: it only sets a flag the scheduler polls every 100 ms
 * when idle and every iteration when busy) has been called and the drain
 * has ended.
 */
#ifndef STRATA_SERVE_H
#define STRATA_SERVE_H

#include "strata/infer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_server_params {
    const char *host;          /* bind address (default "127.0.0.1") */
    int port;                  /* default 8000; 0 picks a free port (st_server_port) */
    const char *api_key;       /* NULL: no authentication; else "Authorization: Bearer KEY" */
    const char *model_name;    /* the id /v1/models lists (default: the model's directory name) */
    size_t max_body_bytes;     /* request bodies larger than this get 413 (default 1 MiB) */
    int max_queue;             /* waiting sequences before 429 (default 256) */
    int max_running;           /* sequences in the running batch (default 64) */
    int max_batch_tokens;      /* tokens per forward pass (default 512) */
    int prefill_chunk;         /* prompt tokens one sequence adds per pass (default 256) */
    int prefill_while_decoding; /* while sequences decode, prompt tokens per pass: at most this
                                  or half the decoding sequences, whichever is more (default 8),
                                  so a joining prompt slows the running streams by a bounded
                                  step time; with no one decoding, prompts take the whole
                                  max_batch_tokens */
    int max_tokens;            /* upper bound on a request's max_tokens (default 4096) */
    int max_n;                 /* upper bound on n x prompts (default 16) */
    int max_connections;       /* concurrent HTTP connections (default 512) */
    int idle_timeout_s;        /* idle connection timeout (default 30) */
    double request_timeout_s;  /* a request running longer is cancelled (default 600) */
    double shutdown_grace_s;   /* SIGTERM: running sequences get this long (default 30) */
    int block_tokens;          /* KV block size (default 8: at most 7 tokens per sequence held
                                  but unused, so held KV stays near what live tokens need) */
    int64_t kv_blocks;         /* KV pool size in blocks (0: max_running sequences of n_ctx/4, at
                                  least two full contexts) */
    bool prefix_cache;         /* share full prompt blocks between requests (default true) */
    const char *chat_template; /* tokenizer_config.json "chat_template" text, or NULL */
    int verbose;               /* 1: one log line per request */
} st_server_params;

st_server_params st_server_default_params(void);

typedef struct st_server st_server;

/* Creates the engine and KV pool for lm and starts listening. Borrows ctx,
 * lm and tok (tok: lm->tok when NULL; a tokenizer is required), which must
 * outlive the server. Errors: ST_ERR_INVALID_ARG, ST_ERR_IO (cannot bind:
 * names the address), ST_ERR_NOMEM, errors of st_engine_new. */
st_status st_server_new(st_ctx *ctx, const st_lm *lm, const st_tokenizer *tok,
                        const st_server_params *p, st_server **out);
/* The port the server listens on. */
int st_server_port(const st_server *s);
/* Runs the scheduler until st_server_stop, then drains (see above). */
st_status st_server_run(st_server *s);
/* Asks the server to stop: stop accepting, finish running sequences up to
 * shutdown_grace_s, answer queued ones 503. Async-signal-safe. */
void st_server_stop(st_server *s);
/* Stops everything still running and frees the server. NULL: no-op. */
void st_server_free(st_server *s);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_SERVE_H */
