/*
 * generate.c — the generation loop (strata/infer.h st_generate): prefill
 * the prompt, then sample, decode and stream text until a stop condition.
 *
 * Text: each sampled token's piece (st_tokenizer_piece) is appended to a
 * text buffer; the part that is final is handed to the callback. Text is
 * held back while it ends inside a UTF-8 character (a character split
 * across byte-fallback tokens) or while its tail could still grow into a
 * stop string; when a stop string appears, the text before it is the last
 * emitted and the run ends. SentencePiece rules follow llama2.c's run.c:
 * BOS/EOS have no text, and the first piece after BOS loses its leading
 * space.
 *
 * st_generate runs st_generate_seq on a fresh sequence and releases it;
 * a caller that keeps a conversation (strata chat) passes its own sequence,
 * whose cached prefix of the prompt is not run again.
 *
 * Memory: the token history and the text buffer grow by doubling (a few
 * times per run); the engine and sampler allocate nothing per token.
 * Single-threaded driver (the engine uses the pool).
 */
#include "strata/infer.h"

#include <math.h>
#include <string.h>

st_generate_params st_generate_default_params(void) {
    st_generate_params p;
    memset(&p, 0, sizeof p);
    p.sampler = st_sampler_default_params();
    p.max_tokens = 256;
    p.stop_at_eos = true;
    return p;
}

typedef struct gen_text {
    char *buf;
    size_t n, cap, emitted;
} gen_text;

static st_status text_append(gen_text *t, const char *p, size_t n) {
    if (t->n + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->n + n + 1) cap *= 2;
        char *b = st_realloc(t->buf, cap);
        if (!b) return st__fail(ST_ERR_NOMEM, "st_generate: no memory for the text");
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->n, p, n);
    t->n += n;
    t->buf[t->n] = 0;
    return ST_OK;
}

/* bytes at the end of s[0..n) that form an incomplete UTF-8 character */
static size_t utf8_incomplete_tail(const char *s, size_t n) {
    for (size_t k = 1; k <= 4 && k <= n; k++) {
        unsigned char c = (unsigned char)s[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte */
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4 : 1;
        return len > k ? k : 0;
    }
    return 0;
}

/* finds a stop string in t->buf[from..n); returns its offset or -1 */
static int64_t find_stop(const gen_text *t, size_t from, const st_generate_params *p) {
    int64_t best = -1;
    for (int i = 0; i < p->n_stop; i++) {
        const char *s = p->stop[i];
        size_t m = s ? strlen(s) : 0;
        if (m == 0 || t->n < m) continue;
        for (size_t o = from; o + m <= t->n; o++)
            if (memcmp(t->buf + o, s, m) == 0) {
                if (best < 0 || (int64_t)o < best) best = (int64_t)o;
                break;
            }
    }
    return best;
}

/* length of the longest tail of buf[from..n) that is a proper prefix of a stop string */
static size_t stop_prefix_tail(const gen_text *t, size_t from, const st_generate_params *p) {
    size_t best = 0;
    for (int i = 0; i < p->n_stop; i++) {
        const char *s = p->stop[i];
        size_t m = s ? strlen(s) : 0;
        for (size_t k = m > 0 ? m - 1 : 0; k > best; k--) {
            if (k > t->n - from) continue;
            if (memcmp(t->buf + t->n - k, s, k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

st_status st_generate(st_engine *e, const st_tokenizer *tok, const int32_t *prompt,
                      int64_t n_prompt, const st_generate_params *p, st_token_fn fn, void *user,
                      st_generate_stats *stats) {
    if (!e) return st__fail(ST_ERR_INVALID_ARG, "st_generate: NULL engine");
    st_kv_seq seq = {0};
    st_status s = st_generate_seq(e, &seq, tok, prompt, n_prompt, p, fn, user, stats);
    st_kv_seq_release(st_engine_kv(e), &seq);
    return s;
}

st_status st_generate_seq(st_engine *e, st_kv_seq *seq, const st_tokenizer *tok,
                          const int32_t *prompt, int64_t n_prompt, const st_generate_params *p,
                          st_token_fn fn, void *user, st_generate_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!e || !seq || !prompt || n_prompt <= 0 || !p)
        return st__fail(ST_ERR_INVALID_ARG, "st_generate: NULL argument or empty prompt");
    if (seq->n_tokens >= n_prompt)
        return st__fail(ST_ERR_INVALID_ARG,
                        "st_generate: the sequence holds %lld tokens, the prompt %lld: at least "
                        "one prompt token must be new",
                        (long long)seq->n_tokens, (long long)n_prompt);
    const st_lm *lm = st_engine_lm(e);
    if (!tok) tok = lm->tok;
    if (!tok && (fn || p->n_stop > 0))
        return st__fail(ST_ERR_INVALID_ARG, "st_generate: the model has no tokenizer for the text");
    if (p->n_top_logprobs < 0 || p->n_top_logprobs > 20)
        return st__fail(ST_ERR_INVALID_ARG, "st_generate: n_top_logprobs %d outside [0, 20]",
                        p->n_top_logprobs);
    const int64_t n_ctx = lm->cfg.n_ctx, V = lm->cfg.vocab_size;
    if (n_prompt > n_ctx)
        return st__fail(ST_ERR_BOUNDS, "st_generate: the prompt has %lld tokens, the context %lld",
                        (long long)n_prompt, (long long)n_ctx);
    st_generate_stats st = {0};
    st_sampler *smp = NULL;
    ST_TRY(st_sampler_new(&p->sampler, (int)V, &smp));
    int64_t cap = n_prompt + (p->max_tokens > 0 ? p->max_tokens : 0) + 1;
    if (cap > n_ctx + 1) cap = n_ctx + 1;
    int32_t *hist = st_malloc((size_t)cap * sizeof *hist);
    float *logits = st_malloc((size_t)V * sizeof(float));
    gen_text text = {0};
    st_token_logprob chosen, top[20];
    const bool sp = tok && st_tokenizer_get_kind(tok) == ST_TOK_SENTENCEPIECE;
    const int32_t eos = lm->eos_id >= 0 ? lm->eos_id : (tok ? st_tokenizer_eos_id(tok) : -1);
    const int32_t bos = lm->bos_id >= 0 ? lm->bos_id : (tok ? st_tokenizer_bos_id(tok) : -1);
    st_status s = ST_OK;
    if (!hist || !logits) {
        s = st__fail(ST_ERR_NOMEM, "st_generate: no memory");
        goto done;
    }
    memcpy(hist, prompt, (size_t)n_prompt * sizeof *hist);
    int64_t n = n_prompt;
    double t0 = st_time_s();
    const int64_t n_cached = seq->n_tokens;
    st_engine_seq es = {.seq = seq,
                        .tokens = prompt + n_cached,
                        .n_tokens = (int)(n_prompt - n_cached),
                        .logits = logits};
    s = st_engine_forward(e, &es, 1);
    if (s) goto done;
    st.n_prompt = n_prompt - n_cached;
    double t1 = st_time_s();
    st.prefill_s = t1 - t0;
    st.finish = ST_FINISH_LENGTH;
    for (;;) {
        if (p->max_tokens > 0 && st.n_generated >= p->max_tokens) break;
        int32_t id;
        s = st_sampler_sample(smp, logits, hist, n, &id, &chosen, top, p->n_top_logprobs);
        if (s) goto done;
        st.n_generated++;
        const bool end = p->stop_at_eos && (id == eos || id == bos);
        /* text of this token */
        size_t pn = 0;
        const char *piece = NULL;
        if (!end && tok && id != eos && id != bos) piece = st_tokenizer_piece(tok, id, &pn);
        if (piece && sp && n > 0 && hist[n - 1] == bos && pn > 0 && piece[0] == ' ') {
            piece++;
            pn--;
        }
        if (piece) {
            s = text_append(&text, piece, pn);
            if (s) goto done;
        }
        if (n < cap) hist[n] = id;
        n++;
        size_t from = text.emitted, upto = text.n;
        int64_t stop_at = p->n_stop > 0 ? find_stop(&text, from, p) : -1;
        if (stop_at >= 0) {
            upto = (size_t)stop_at;
            st.finish = ST_FINISH_STOP;
        } else if (!end) {
            upto -= stop_prefix_tail(&text, from, p);
            upto -= utf8_incomplete_tail(text.buf ? text.buf : "", upto);
            if (upto < from) upto = from;
        }
        if (end) st.finish = ST_FINISH_EOS;
        if (fn && fn(user, id, text.buf ? text.buf + from : "", upto - from, &chosen, top,
                     p->n_top_logprobs) != 0 &&
            st.finish == ST_FINISH_LENGTH)
            st.finish = ST_FINISH_CANCEL;
        text.emitted = upto;
        if (st.finish != ST_FINISH_LENGTH) break;
        if (p->max_tokens > 0 && st.n_generated >= p->max_tokens) break;
        if (seq->n_tokens + 1 > n_ctx) break; /* the context is full */
        st_engine_seq d = {.seq = seq, .tokens = &id, .n_tokens = 1, .logits = logits};
        s = st_engine_forward(e, &d, 1);
        if (s) goto done;
    }
    st.decode_s = st_time_s() - t1;
    /* flush what was held back (an unfinished character or stop prefix) */
    if (fn && st.finish != ST_FINISH_STOP && text.emitted < text.n)
        fn(user, -1, text.buf + text.emitted, text.n - text.emitted, NULL, NULL, 0);
done:
    if (stats) *stats = st;
    st_sampler_free(smp);
    st_free(hist);
    st_free(logits);
    st_free(text.buf);
    return s;
}
