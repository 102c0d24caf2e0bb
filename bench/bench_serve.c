/*
 * bench_serve.c — `strata bench serve`: load on the OpenAI-compatible server.
 *
 * A stories15M-shaped llama (dim 288, 6 layers, 6 heads, hidden 768, vocab
 * 32000, context 256; random weights, f32) is served in this process on a
 * loopback port; for each client count (1, 4, 16, 64 by default) that many
 * threads each send --requests streaming completions (a --prompt-token
 * prompt given as ids, --max-tokens new tokens, greedy, logprobs on so that
 * every token is an event even when its text is empty) through libcurl,
 * and the bench records when every token event arrives. It prints aggregate
 * tokens/s, p50/p99 time to first token and inter-token latency, and the
 * KV memory held against what the live tokens need (sampled from /metrics
 * every 20 ms while the clients run; the prefix cache is off so that every
 * held block belongs to a live sequence; both are printed, in MB, with
 * their ratio). Goals, printed after the table with the measured ratios:
 * 16 clients >= 4x the tokens/s of 1; p99 inter-token latency at 16 <= 3x
 * that at 1; KV held <= 1.1x live.
 *
 * Before the load, the engine alone: the median time of one decode step
 * over n sequences for each client count n (no HTTP, no sampling), which
 * separates what batching buys in the engine from the server's overheads
 * and is far less noisy on a shared machine than the load's figures.
 */
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "strata/serve.h"

typedef struct opts {
    int clients[8], n_clients;
    int requests, prompt_tokens, max_tokens, threads, block_tokens, prefill_while_decoding;
    bool json;
} opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata bench serve [options]\n\n"
            "Load on `strata serve`'s engine: aggregate tokens/s, p50/p99 time to first\n"
            "token and inter-token latency at several client counts, and KV memory held\n"
            "and needed (MB, and their ratio), on a random stories15M-shaped llama served\n"
            "in-process; then the goal ratios (16 clients >= 4x 1 client's tokens/s, p99\n"
            "ITL at 16 <= 3x at 1, KV held <= 1.1x live) and whether each is met. First,\n"
            "the engine alone: the median decode step over n sequences per client count.\n\n"
            "options:\n"
            "  --clients LIST      client counts (default 1,4,16,64)\n"
            "  --requests N        streaming requests per client (default 3)\n"
            "  --prompt-tokens N   prompt length in tokens (default 32)\n"
            "  --max-tokens N      tokens generated per request (default 64)\n"
            "  --block-tokens N    KV block size (default 8, the server's)\n"
            "  --prefill-while-decoding N\n"
            "                      the server's prompt share while streams decode (default:\n"
            "                      the server's, %d)\n"
            "  --threads N         worker threads (default: STRATA_THREADS, else all CPUs)\n"
            "  --json              JSON Lines instead of the table\n",
            st_server_default_params().prefill_while_decoding);
}

/* ---- one client ------------------------------------------------------------------- */

typedef struct client {
    const char *url;
    const opts *o;
    int id;
    int req;        /* the request running now */
    double *ttft;   /* [requests] */
    double *gaps;   /* [requests * max_tokens] */
    int n_gaps;
    long tokens;
    /* per request */
    double t_send, t_last;
    int seen;
    char carry[64];
    int failed;
} client;

static size_t on_data(char *p, size_t sz, size_t nm, void *u) {
    client *c = u;
    size_t n = sz * nm;
    double t = now_s();
    /* count token events: every chunk with a logprobs object (split across
     * callbacks: keep the tail of the previous one) */
    const char *key = "\"token_logprobs\"";
    size_t kl = strlen(key);
    char buf[128];
    size_t cl = strlen(c->carry);
    size_t head = n < sizeof buf - cl - 1 ? n : sizeof buf - cl - 1;
    memcpy(buf, c->carry, cl);
    memcpy(buf + cl, p, head);
    buf[cl + head] = 0;
    int events = 0;
    for (const char *q = buf; (q = strstr(q, key)) && q < buf + cl; q += kl) events++;
    for (const char *q = p; (q = memmem(q, n - (size_t)(q - p), key, kl)); q += kl) events++;
    size_t keep = n < sizeof c->carry - 1 ? n : sizeof c->carry - 1;
    memcpy(c->carry, p + n - keep, keep);
    c->carry[keep] = 0;
    for (int e = 0; e < events; e++) {
        if (c->seen == 0) c->ttft[c->req] = t - c->t_send;
        else if (c->n_gaps < c->o->requests * c->o->max_tokens) c->gaps[c->n_gaps++] = t - c->t_last;
        c->t_last = t;
        c->seen++;
        c->tokens++;
    }
    return n;
}

static void *client_main(void *arg) {
    client *c = arg;
    const opts *o = c->o;
    char *body = malloc((size_t)o->prompt_tokens * 8 + 256);
    CURL *h = curl_easy_init();
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    for (int r = 0; r < o->requests; r++) {
        int at = sprintf(body, "{\"model\":\"bench\",\"prompt\":[");
        for (int i = 0; i < o->prompt_tokens; i++)
            at += sprintf(body + at, "%s%d", i ? "," : "", 1 + (c->id * 131 + r * 17 + i * 7) % 500);
        sprintf(body + at,
                "],\"max_tokens\":%d,\"temperature\":0,\"stream\":true,\"logprobs\":0}",
                o->max_tokens);
        c->req = r;
        c->seen = 0;
        c->carry[0] = 0;
        curl_easy_setopt(h, CURLOPT_URL, c->url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L);
        c->t_send = now_s();
        /* a random model may sample EOS early: fewer tokens, not a failure */
        if (curl_easy_perform(h) != CURLE_OK || c->seen == 0) c->failed++;
    }
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    free(body);
    return NULL;
}

/* ---- KV sampling from /metrics -------------------------------------------------------- */

typedef struct sampler {
    const char *metrics_url;
    int block_tokens;
    volatile int stop;
    double held, live; /* token sums over the samples */
    int n;             /* samples taken with live tokens */
} sampler;

typedef struct mbuf {
    char *p;
    size_t n;
} mbuf;

static size_t on_metrics(char *p, size_t sz, size_t nm, void *u) {
    mbuf *b = u;
    size_t n = sz * nm;
    char *q = realloc(b->p, b->n + n + 1);
    if (!q) return 0;
    b->p = q;
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

static double metric_value(const char *text, const char *name) {
    char key[96];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *at = strstr(text, key);
    return at ? atof(at + strlen(key)) : 0;
}

static void *sampler_main(void *arg) {
    sampler *s = arg;
    CURL *h = curl_easy_init();
    while (!s->stop) {
        mbuf b = {0};
        curl_easy_setopt(h, CURLOPT_URL, s->metrics_url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_metrics);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        if (curl_easy_perform(h) == CURLE_OK && b.p) {
            double live = metric_value(b.p, "strata_kv_live_tokens");
            double used = metric_value(b.p, "strata_kv_blocks_used");
            if (live > 0) {
                s->live += live;
                s->held += used * s->block_tokens;
                s->n++;
            }
        }
        free(b.p);
        usleep(20000);
    }
    curl_easy_cleanup(h);
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double q) {
    if (n == 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* ---- the engine alone: one decode step over n sequences --------------------------
 * n sequences hold a prompt of prompt_tokens (prefilled in one call), then
 * max_tokens decode steps give each one token with its logits, as the
 * server's steps do; the median step time over those steps. Sequences are
 * as long as the load's (prompt, then up to max_tokens generated), with no
 * HTTP or sampling around them: what batching alone buys. */
static double engine_step_ms(st_ctx *ctx, const st_lm *lm, const opts *o, int n) {
    const st_model_config *c = &lm->cfg;
    st_engine_params ep = st_engine_default_params();
    ep.kv.block_tokens = o->block_tokens;
    ep.kv.n_blocks = (int64_t)n * ((o->prompt_tokens + o->max_tokens) / o->block_tokens + 2);
    st_engine *e = NULL;
    if (st_engine_new(ctx, lm, &ep, &e) != ST_OK) return NAN;
    st_kv_seq *seqs = calloc((size_t)n, sizeof *seqs);
    st_engine_seq *b = calloc((size_t)n, sizeof *b);
    int32_t *toks = malloc((size_t)n * (size_t)o->prompt_tokens * sizeof *toks);
    float *logits = malloc((size_t)n * (size_t)c->vocab_size * sizeof *logits);
    double *t = malloc((size_t)o->max_tokens * sizeof *t);
    double ms = NAN;
    if (seqs && b && toks && logits && t) {
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < o->prompt_tokens; k++)
                toks[i * o->prompt_tokens + k] = 1 + (i * 131 + k * 7) % 500;
            b[i] = (st_engine_seq){.seq = &seqs[i], .tokens = toks + i * o->prompt_tokens,
                                   .n_tokens = o->prompt_tokens,
                                   .logits = logits + (size_t)i * (size_t)c->vocab_size};
        }
        st_status s = st_engine_forward(e, b, n);
        int steps = 0;
        for (; s == ST_OK && steps < o->max_tokens; steps++) {
            for (int i = 0; i < n; i++) {
                b[i].tokens = toks + i * o->prompt_tokens + steps % o->prompt_tokens;
                b[i].n_tokens = 1;
            }
            double t0 = now_s();
            s = st_engine_forward(e, b, n);
            t[steps] = now_s() - t0;
        }
        if (s == ST_OK && steps > 0) {
            qsort(t, (size_t)steps, sizeof *t, cmp_d);
            ms = 1e3 * t[steps / 2];
        }
    }
    if (seqs)
        for (int i = 0; i < n; i++) st_kv_seq_release(st_engine_kv(e), &seqs[i]);
    free(seqs);
    free(b);
    free(toks);
    free(logits);
    free(t);
    st_engine_free(e);
    return ms;
}

static void *serve_main(void *arg) {
    st_server_run(arg);
    return NULL;
}

int bench_serve_main(int argc, char **argv) {
    opts o = {.clients = {1, 4, 16, 64}, .n_clients = 4, .requests = 3, .prompt_tokens = 32,
              .max_tokens = 64, .block_tokens = 8};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        long v;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(k, "--json")) {
            o.json = true;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("bench serve", "%s needs a value", k);
        const char *val = argv[++i];
        if (!strcmp(k, "--clients")) {
            o.n_clients = 0;
            char tmp[128];
            snprintf(tmp, sizeof tmp, "%s", val);
            for (char *t = strtok(tmp, ","); t && o.n_clients < 8; t = strtok(NULL, ",")) {
                if (!cli_parse_long(t, &v) || v < 1 || v > 512)
                    return cli_usage_error("bench serve", "bad client count %s", t);
                o.clients[o.n_clients++] = (int)v;
            }
        } else if (!strcmp(k, "--requests") && cli_parse_long(val, &v) && v >= 1) o.requests = (int)v;
        else if (!strcmp(k, "--prompt-tokens") && cli_parse_long(val, &v) && v >= 1 && v <= 128) o.prompt_tokens = (int)v;
        else if (!strcmp(k, "--max-tokens") && cli_parse_long(val, &v) && v >= 1 && v <= 120) o.max_tokens = (int)v;
        else if (!strcmp(k, "--threads") && cli_parse_long(val, &v) && v >= 1) o.threads = (int)v;
        else if (!strcmp(k, "--block-tokens") && cli_parse_long(val, &v) && v >= 1 && v <= 256) o.block_tokens = (int)v;
        else if (!strcmp(k, "--prefill-while-decoding") && cli_parse_long(val, &v) && v >= 1 && v <= 4096) o.prefill_while_decoding = (int)v;
        else return cli_usage_error("bench serve", "bad option %s %s", k, val);
    }
    int max_clients = 1;
    for (int i = 0; i < o.n_clients; i++)
        if (o.clients[i] > max_clients) max_clients = o.clients[i];

    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = o.threads;
    st_ctx *ctx = NULL;
    st_model *m = NULL;
    st_lm *lm = NULL;
    st_tokenizer *tok = NULL;
    st_server *srv = NULL;
    st_status s = st_ctx_new(&cp, &ctx);
    st_model_config c = st_model_config_default(ST_ARCH_LLAMA);
    c.n_embd = 288, c.n_layer = 6, c.n_head = 6, c.n_kv_head = 6, c.n_ff = 768;
    c.vocab_size = 32000, c.n_ctx = 256;
    if (s == ST_OK) s = st_model_new(ctx, &c, 1, &m);
    if (s == ST_OK) s = st_lm_from_model(m, &lm);
    st_model_free(m);
    if (s == ST_OK) s = st_tokenizer_load("tok512", &tok);
    st_server_params p = st_server_default_params();
    p.port = 0;
    p.model_name = "bench";
    p.prefix_cache = false;
    p.max_running = max_clients;
    p.max_batch_tokens = max_clients > 512 ? max_clients : 512;
    p.block_tokens = o.block_tokens;
    if (o.prefill_while_decoding) p.prefill_while_decoding = o.prefill_while_decoding;
    p.kv_blocks = (int64_t)max_clients *
                  ((o.prompt_tokens + o.max_tokens + o.block_tokens - 1) / o.block_tokens + 1);
    /* the engine alone first, before the server's threads exist */
    double step1 = NAN;
    if (s == ST_OK && !o.json)
        printf("strata bench serve: stories15M-shaped llama (f32, %.1f MB of weights), %d-token "
               "prompts, %d new tokens, %d requests per client, %d threads, KV blocks of %d\n\n"
               "engine alone, one decode step over n sequences (median of %d steps; no HTTP, no "
               "sampling):\n%8s %10s %10s %8s\n",
               st_lm_weight_bytes(lm) / 1e6, o.prompt_tokens, o.max_tokens, o.requests,
               st_ctx_n_threads(ctx), o.block_tokens, o.max_tokens, "seqs", "step", "tok/s", "x 1");
    for (int ci = 0; s == ST_OK && ci < o.n_clients; ci++) {
        int n = o.clients[ci];
        double ms = engine_step_ms(ctx, lm, &o, n);
        if (ci == 0) step1 = ms;
        double tps = n * 1e3 / ms, x = (n * 1e3 / ms) / (o.clients[0] * 1e3 / step1);
        if (o.json)
            printf("{\"bench\":\"serve_engine\",\"seqs\":%d,\"step_ms\":%.3f,"
                   "\"tokens_per_s\":%.1f,\"speedup_vs_first\":%.2f}\n", n, ms, tps, x);
        else
            printf("%8d %8.2fms %10.1f %8.2f\n", n, ms, tps, x);
        fflush(stdout);
    }
    if (s == ST_OK) s = st_server_new(ctx, lm, tok, &p, &srv);
    if (s != ST_OK) {
        st_tokenizer_free(tok);
        st_lm_free(lm);
        st_ctx_free(ctx);
        return cli_fail("bench serve", s);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_t server_thread;
    pthread_create(&server_thread, NULL, serve_main, srv);
    char url[96], murl[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/completions", st_server_port(srv));
    snprintf(murl, sizeof murl, "http://127.0.0.1:%d/metrics", st_server_port(srv));
    /* KV bytes per token: K and V rows of every layer */
    const double kv_token_bytes =
        2.0 * lm->cfg.n_layer * (lm->cfg.n_embd / lm->cfg.n_head) * lm->cfg.n_kv_head * sizeof(float);
    if (!o.json)
        printf("\nthe server under load (streaming clients over HTTP; KV held and live are means "
               "of /metrics samples, in MB):\n"
               "%8s %10s %8s %10s %10s %10s %10s %10s %9s %9s %9s\n",
               "clients", "tok/s", "x 1", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "p99 x 1",
               "KV held", "KV live", "held/live");
    double tps1 = 0, itl1 = 0;
    /* the goals' figures: x 1 and p99 x 1 at 16 clients, KV held/live of the last row */
    double g_tps = NAN, g_itl = NAN, g_kv = NAN;
    int failures = 0;
    for (int ci = 0; ci < o.n_clients; ci++) {
        int n = o.clients[ci];
        client *cl = calloc((size_t)n, sizeof *cl);
        pthread_t *th = calloc((size_t)n, sizeof *th);
        sampler smp = {.metrics_url = murl, .block_tokens = o.block_tokens};
        pthread_t st;
        pthread_create(&st, NULL, sampler_main, &smp);
        double t0 = now_s();
        for (int i = 0; i < n; i++) {
            cl[i] = (client){.url = url, .o = &o, .id = i};
            cl[i].ttft = calloc((size_t)o.requests, sizeof(double));
            cl[i].gaps = calloc((size_t)o.requests * (size_t)o.max_tokens, sizeof(double));
            pthread_create(&th[i], NULL, client_main, &cl[i]);
        }
        long tokens = 0;
        for (int i = 0; i < n; i++) {
            pthread_join(th[i], NULL);
            tokens += cl[i].tokens;
            failures += cl[i].failed;
        }
        double wall = now_s() - t0;
        smp.stop = 1;
        pthread_join(st, NULL);
        double *ttft = calloc((size_t)n * (size_t)o.requests, sizeof(double));
        double *gaps = calloc((size_t)n * (size_t)o.requests * (size_t)o.max_tokens, sizeof(double));
        int nt = 0, ng = 0;
        for (int i = 0; i < n; i++) {
            for (int r = 0; r < o.requests; r++) ttft[nt++] = cl[i].ttft[r];
            for (int g = 0; g < cl[i].n_gaps; g++) gaps[ng++] = cl[i].gaps[g];
            free(cl[i].ttft);
            free(cl[i].gaps);
        }
        double tps = tokens / wall;
        double t50 = pct(ttft, nt, 0.5), t99 = pct(ttft, nt, 0.99);
        double i50 = pct(gaps, ng, 0.5), i99 = pct(gaps, ng, 0.99);
        if (n == 1 || ci == 0) tps1 = tps, itl1 = i99;
        double kv = smp.live > 0 ? smp.held / smp.live : NAN;
        double held_mb = smp.n ? smp.held / smp.n * kv_token_bytes / 1e6 : NAN;
        double live_mb = smp.n ? smp.live / smp.n * kv_token_bytes / 1e6 : NAN;
        if (n == 16) g_tps = tps / tps1, g_itl = i99 / itl1;
        if (!isnan(kv)) g_kv = kv;
        if (o.json)
            printf("{\"bench\":\"serve\",\"clients\":%d,\"tokens\":%ld,\"wall_s\":%.3f,"
                   "\"tokens_per_s\":%.1f,\"speedup_vs_1\":%.2f,\"ttft_p50_ms\":%.2f,"
                   "\"ttft_p99_ms\":%.2f,\"itl_p50_ms\":%.2f,\"itl_p99_ms\":%.2f,"
                   "\"itl_p99_vs_1\":%.2f,\"kv_held_mb\":%.3f,\"kv_live_mb\":%.3f,"
                   "\"kv_held_over_live\":%.3f}\n",
                   n, tokens, wall, tps, tps / tps1, t50 * 1e3, t99 * 1e3, i50 * 1e3, i99 * 1e3,
                   i99 / itl1, held_mb, live_mb, kv);
        else
            printf("%8d %10.1f %8.2f %8.1fms %8.1fms %8.2fms %8.2fms %10.2f %9.2f %9.2f %9.3f\n", n,
                   tps, tps / tps1, t50 * 1e3, t99 * 1e3, i50 * 1e3, i99 * 1e3, i99 / itl1, held_mb,
                   live_mb, kv);
        fflush(stdout);
        free(ttft);
        free(gaps);
        free(cl);
        free(th);
    }
    if (o.json) {
        printf("{\"bench\":\"serve_goals\",\"tokens_per_s_16_over_1\":%.2f,"
               "\"itl_p99_16_over_1\":%.2f,\"kv_held_over_live\":%.3f,\"failures\":%d}\n",
               g_tps, g_itl, g_kv, failures);
    } else {
        /* NaN (no 16-client row, or the first row is not 1 client) prints as such */
        const bool one = o.clients[0] == 1;
        printf("\ngoals (first row as the 1-client reference%s):\n"
               "  tokens/s at 16 clients / at 1   %6.2f  (goal >= 4: %s)\n"
               "  p99 ITL at 16 clients / at 1    %6.2f  (goal <= 3: %s)\n"
               "  KV held / live (last row)       %6.3f  (goal <= 1.1: %s)\n%s",
               one ? "" : "; it is not 1 client here", g_tps,
               isnan(g_tps) ? "not measured" : g_tps >= 4 ? "met" : "NOT met", g_itl,
               isnan(g_itl) ? "not measured" : g_itl <= 3 ? "met" : "NOT met", g_kv,
               isnan(g_kv) ? "not measured" : g_kv <= 1.1 ? "met" : "NOT met",
               failures ? "some requests failed: see above\n" : "");
    }
    st_server_stop(srv);
    pthread_join(server_thread, NULL);
    st_server_free(srv);
    curl_global_cleanup();
    st_tokenizer_free(tok);
    st_lm_free(lm);
    st_ctx_free(ctx);
    return failures ? 1 : 0;
}
