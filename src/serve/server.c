/*
 * server.c — st_server's life cycle (strata/serve.h): parameters, the
 * engine and KV pool sized for the running batch, the HTTP daemon, the
 * scheduler loop on the caller's thread, and the drain on stop.
 */
#include "serve/serve_impl.h"

#include <stdio.h>
#include <string.h>

st_server_params st_server_default_params(void) {
    st_server_params p = {
        .host = "127.0.0.1",
        .port = 8000,
        .max_body_bytes = 1u << 20,
        .max_queue = 256,
        .max_running = 64,
        .max_batch_tokens = 512,
        .prefill_chunk = 256,
        .prefill_while_decoding = 8,
        .max_tokens = 4096,
        .max_n = 16,
        .max_connections = 512,
        .idle_timeout_s = 30,
        .request_timeout_s = 600,
        .shutdown_grace_s = 30,
        .block_tokens = 8,
        .kv_blocks = 0,
        .prefix_cache = true,
    };
    return p;
}

static const char *base_name(const char *path) {
    if (!path) return "strata";
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *b = path;
    for (size_t i = 0; i + 1 < n; i++)
        if (path[i] == '/') b = path + i + 1;
    return b;
}

st_status st_server_new(st_ctx *ctx, const st_lm *lm, const st_tokenizer *tok,
                        const st_server_params *params, st_server **out) {
    if (!ctx || !lm || !out) return st__fail(ST_ERR_INVALID_ARG, "st_server_new: NULL argument");
    *out = NULL;
    if (!tok) tok = lm->tok;
    if (!tok)
        return st__fail(ST_ERR_INVALID_ARG,
                        "serve: the model has no tokenizer; pass one with --tokenizer");
    st_server_params p = params ? *params : st_server_default_params();
    if (p.port < 0 || p.port > 65535 || p.max_running < 1 || p.max_queue < 1 ||
        p.max_batch_tokens < p.max_running || p.prefill_chunk < 1 || p.prefill_while_decoding < 1 ||
        p.max_tokens < 1 || p.max_n < 1 || p.max_connections < 1 || p.block_tokens < 1 ||
        p.max_body_bytes < 64)
        return st__fail(ST_ERR_INVALID_ARG,
                        "serve: invalid parameters (max_batch_tokens must be >= max_running, "
                        "sizes positive, port in [0, 65535])");
    st_server *s = st_calloc(1, sizeof *s);
    if (!s) return ST_ERR_NOMEM;
    s->p = p;
    snprintf(s->host, sizeof s->host, "%s", p.host ? p.host : "127.0.0.1");
    s->p.host = s->host;
    snprintf(s->model_name, sizeof s->model_name, "%s",
             p.model_name ? p.model_name : base_name(lm->source));
    s->p.model_name = s->model_name;
    s->p.api_key = NULL;
    if (p.api_key && p.api_key[0]) {
        s->p.api_key = st_strdup(p.api_key);
        if (!s->p.api_key) {
            st_free(s);
            return ST_ERR_NOMEM;
        }
    }
    s->p.chat_template = NULL;
    s->ctx = ctx;
    s->lm = lm;
    s->tok = tok;
    s->tmpl = st_chat_template_for(lm, tok, p.chat_template);
    st__srv_metrics_init(&s->metrics);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->block_tokens = p.block_tokens;
    st_engine_params ep = st_engine_default_params();
    ep.kv.block_tokens = p.block_tokens;
    int64_t ctx_blocks = (lm->cfg.n_ctx + p.block_tokens - 1) / p.block_tokens;
    int64_t nb = p.kv_blocks;
    if (nb <= 0) {
        nb = (int64_t)p.max_running * ((ctx_blocks + 3) / 4);
        if (nb < 2 * ctx_blocks) nb = 2 * ctx_blocks;
    }
    ep.kv.n_blocks = nb;
    ep.max_batch_tokens = p.max_batch_tokens;
    st_status st = st_engine_new(ctx, lm, &ep, &s->eng);
    if (st == ST_OK) {
        s->kv = st_engine_kv(s->eng);
        st = st__srv_sched_init(s);
    }
    if (st == ST_OK) st = st__srv_http_start(s);
    if (st != ST_OK) {
        st_server_free(s);
        return st;
    }
    *out = s;
    return ST_OK;
}

int st_server_port(const st_server *s) { return s ? s->port : -1; }

void st_server_stop(st_server *s) {
    if (s) s->stop_requested = 1;
}

st_status st_server_run(st_server *s) {
    if (!s) return st__fail(ST_ERR_INVALID_ARG, "st_server_run: NULL server");
    st__srv_sched_run(s);
    st__srv_http_quiesce(s);
    return ST_OK;
}

void st_server_free(st_server *s) {
    if (!s) return;
    if (s->daemon) {
        /* anything still waiting must finish before the daemon's threads can end */
        s->stop_requested = 1;
        s->p.shutdown_grace_s = 0;
        if (s->kv && s->running) st__srv_sched_run(s);
        st__srv_http_stop(s);
    }
    st__srv_sched_free(s);
    st_engine_free(s->eng);
    st__srv_metrics_destroy(&s->metrics);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    st_free((void *)s->p.api_key);
    st_free(s);
}
