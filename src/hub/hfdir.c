/*
 * hfdir.c — Hugging Face-style model directories for st_lm (strata/infer.h):
 * config.json + model.safetensors (+ tokenizer.json).
 *
 * Reading: the configuration through st_model_config_parse, the tensors
 * through the safetensors reader (strata/hub.h; every offset checked
 * there), copied into st_lm-owned buffers because the reader is closed at
 * the end. Llama names "model.layers.N.self_attn.q_proj.weight" ...; f16
 * and bf16 matrices keep their type, vectors become f32. GPT-2 names with
 * or without the "transformer." prefix; its Conv1D weights are [in, out]
 * and are transposed to [out, in] (f32), c_attn split into q, k, v;
 * non-parameter buffers (h.N.attn.bias, attn.masked_bias) are ignored.
 * A missing lm_head means tied embeddings. HF llama is ST_ROPE_HALF.
 *
 * Writing: f32 tensors under the same names (quantized matrices are
 * dequantized; an ST_ROPE_INTERLEAVED llama gets its q/k rows put back in
 * HF's order, the inverse of convert_hf_to_gguf.py's permute()), config.json
 * and tokenizer.json, each written to a temporary file, fsynced and renamed.
 * No shared state.
 */
#include "strata/hub.h"
#include "strata/data.h"
#include "strata/infer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES (1u << 20)

typedef struct hf_ctx {
    const st_safetensors *st;
    const char *file;
    const char *prefix; /* gpt2: "" or "transformer." */
    st_lm *lm;
} hf_ctx;

static st_status find(const hf_ctx *h, const char *name, bool optional, st_safetensors_tensor *t) {
    char full[160];
    snprintf(full, sizeof full, "%s%s", h->prefix, name);
    const int i = st_safetensors_find(h->st, full);
    if (i < 0) {
        t->data = NULL;
        if (optional) return ST_OK;
        return st__fail(ST_ERR_FORMAT, "%s: tensor %s is missing", h->file, full);
    }
    ST_TRY(st_safetensors_get(h->st, i, t));
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return st__fail(ST_ERR_FORMAT, "%s: tensor %s: only f32, f16 and bf16 are read", h->file,
                        full);
    return ST_OK;
}

static float elem(const st_safetensors_tensor *t, int64_t i) {
    if (t->dtype == ST_F32) {
        float f;
        memcpy(&f, (const char *)t->data + i * 4, 4);
        return f;
    }
    uint16_t u;
    memcpy(&u, (const char *)t->data + i * 2, 2);
    return t->dtype == ST_F16 ? st_f16_to_f32(u) : st_bf16_to_f32(u);
}

static st_status vec(hf_ctx *h, const char *name, int64_t n, bool optional, const float **out) {
    st_safetensors_tensor t;
    ST_TRY(find(h, name, optional, &t));
    if (!t.data) return ST_OK;
    if (t.numel != n)
        return st__fail(ST_ERR_FORMAT, "%s: tensor %s%s has %lld elements, expected %lld", h->file,
                        h->prefix, name, (long long)t.numel, (long long)n);
    float *f = st_lm_alloc(h->lm, (size_t)n * 4);
    if (!f) return st__fail(ST_ERR_NOMEM, "%s: out of memory", h->file);
    for (int64_t i = 0; i < n; i++) f[i] = elem(&t, i);
    *out = f;
    return ST_OK;
}

/* a [rows, cols] matrix; conv1d: stored [cols_total, rows_total] and the
 * slice [col0, col0 + rows) of its columns is wanted, transposed */
static st_status mat(hf_ctx *h, const char *name, int64_t rows, int64_t cols, bool optional,
                     bool conv1d, int64_t col0, int64_t total_out, st_wmatrix *w) {
    st_safetensors_tensor t;
    ST_TRY(find(h, name, optional, &t));
    if (!t.data) return ST_OK;
    const int64_t want0 = conv1d ? cols : rows, want1 = conv1d ? total_out : cols;
    if (t.ndim != 2 || t.shape[0] != want0 || t.shape[1] != want1)
        return st__fail(ST_ERR_FORMAT, "%s: tensor %s%s is not [%lld, %lld]", h->file, h->prefix,
                        name, (long long)want0, (long long)want1);
    if (!conv1d) {
        const st_wtype wt = t.dtype == ST_F32 ? ST_WT_F32 : t.dtype == ST_F16 ? ST_WT_F16 : ST_WT_BF16;
        void *d = st_lm_alloc(h->lm, t.n_bytes);
        if (!d) return st__fail(ST_ERR_NOMEM, "%s: out of memory", h->file);
        memcpy(d, t.data, t.n_bytes);
        *w = (st_wmatrix){wt, rows, cols, d, st_wtype_row_bytes(wt, cols), NULL};
        return ST_OK;
    }
    float *d = st_lm_alloc(h->lm, (size_t)(rows * cols) * 4);
    if (!d) return st__fail(ST_ERR_NOMEM, "%s: out of memory", h->file);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) d[r * cols + c] = elem(&t, c * total_out + col0 + r);
    *w = (st_wmatrix){ST_WT_F32, rows, cols, d, (size_t)cols * 4, NULL};
    return ST_OK;
}

static st_status load_weights(hf_ctx *h) {
    st_lm *lm = h->lm;
    const st_model_config *c = &lm->cfg;
    const int64_t E = c->n_embd, V = c->vocab_size, F = c->n_ff, hd = E / c->n_head;
    const int64_t Q = c->n_head * hd, KV = c->n_kv_head * hd;
    char n[160];
    if (c->arch == ST_ARCH_LLAMA) {
        lm->rope = ST_ROPE_HALF;
        ST_TRY(mat(h, "model.embed_tokens.weight", V, E, false, false, 0, 0, &lm->tok_embd));
        ST_TRY(mat(h, "lm_head.weight", V, E, true, false, 0, 0, &lm->lm_head));
        if (!lm->lm_head.data) lm->lm_head = lm->tok_embd;
        ST_TRY(vec(h, "model.norm.weight", E, false, &lm->lnf_w));
        for (int l = 0; l < c->n_layer; l++) {
            st_lm_layer *L = &lm->layers[l];
#define NM(s) (snprintf(n, sizeof n, "model.layers.%d." s, l), n)
            ST_TRY(mat(h, NM("self_attn.q_proj.weight"), Q, E, false, false, 0, 0, &L->wq));
            ST_TRY(mat(h, NM("self_attn.k_proj.weight"), KV, E, false, false, 0, 0, &L->wk));
            ST_TRY(mat(h, NM("self_attn.v_proj.weight"), KV, E, false, false, 0, 0, &L->wv));
            ST_TRY(mat(h, NM("self_attn.o_proj.weight"), E, Q, false, false, 0, 0, &L->wo));
            ST_TRY(mat(h, NM("mlp.gate_proj.weight"), F, E, false, false, 0, 0, &L->w_gate));
            ST_TRY(mat(h, NM("mlp.up_proj.weight"), F, E, false, false, 0, 0, &L->w_up));
            ST_TRY(mat(h, NM("mlp.down_proj.weight"), E, F, false, false, 0, 0, &L->w_down));
            ST_TRY(vec(h, NM("input_layernorm.weight"), E, false, &L->ln1_w));
            ST_TRY(vec(h, NM("post_attention_layernorm.weight"), E, false, &L->ln2_w));
#undef NM
        }
        return ST_OK;
    }
    ST_TRY(mat(h, "wte.weight", V, E, false, false, 0, 0, &lm->tok_embd));
    lm->lm_head = lm->tok_embd;
    ST_TRY(vec(h, "wpe.weight", (int64_t)c->n_ctx * E, false, &lm->pos_embd));
    ST_TRY(vec(h, "ln_f.weight", E, false, &lm->lnf_w));
    const bool bias = c->bias; /* nanoGPT-style "bias": false: no bias tensors at all */
    if (bias) ST_TRY(vec(h, "ln_f.bias", E, false, &lm->lnf_b));
    for (int l = 0; l < c->n_layer; l++) {
        st_lm_layer *L = &lm->layers[l];
        const float *bqkv = NULL;
#define NM(s) (snprintf(n, sizeof n, "h.%d." s, l), n)
        ST_TRY(mat(h, NM("attn.c_attn.weight"), Q, E, false, true, 0, Q + 2 * KV, &L->wq));
        ST_TRY(mat(h, NM("attn.c_attn.weight"), KV, E, false, true, Q, Q + 2 * KV, &L->wk));
        ST_TRY(mat(h, NM("attn.c_attn.weight"), KV, E, false, true, Q + KV, Q + 2 * KV, &L->wv));
        if (bias) {
            ST_TRY(vec(h, NM("attn.c_attn.bias"), Q + 2 * KV, false, &bqkv));
            L->bq = bqkv, L->bk = bqkv + Q, L->bv = bqkv + Q + KV;
        }
        ST_TRY(mat(h, NM("attn.c_proj.weight"), E, Q, false, true, 0, E, &L->wo));
        if (bias) ST_TRY(vec(h, NM("attn.c_proj.bias"), E, false, &L->bo));
        ST_TRY(mat(h, NM("mlp.c_fc.weight"), F, E, false, true, 0, F, &L->w_up));
        if (bias) ST_TRY(vec(h, NM("mlp.c_fc.bias"), F, false, &L->b_up));
        ST_TRY(mat(h, NM("mlp.c_proj.weight"), E, F, false, true, 0, E, &L->w_down));
        if (bias) ST_TRY(vec(h, NM("mlp.c_proj.bias"), E, false, &L->b_down));
        ST_TRY(vec(h, NM("ln_1.weight"), E, false, &L->ln1_w));
        if (bias) ST_TRY(vec(h, NM("ln_1.bias"), E, false, &L->ln1_b));
        ST_TRY(vec(h, NM("ln_2.weight"), E, false, &L->ln2_w));
        if (bias) ST_TRY(vec(h, NM("ln_2.bias"), E, false, &L->ln2_b));
#undef NM
    }
    return ST_OK;
}

st_status st_lm_load_hf(const char *dir, st_lm **out) {
    if (!dir || !out) return st__fail(ST_ERR_INVALID_ARG, "st_lm_load_hf: NULL argument");
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *json = NULL;
    size_t jn = 0;
    ST_TRY(st_text_read_file(path, CONFIG_MAX_BYTES, &json, &jn));
    st_model_config cfg;
    st_status s = st_model_config_parse(json, jn, path, &cfg);
    st_free(json);
    if (s != ST_OK) return s;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_safetensors *st = NULL;
    ST_TRY(st_safetensors_open(path, &st));
    st_lm *lm = NULL;
    s = st_lm_new_empty(&cfg, &lm);
    if (s == ST_OK) {
        hf_ctx h = {st, path, "", lm};
        if (cfg.arch == ST_ARCH_GPT2 && st_safetensors_find(st, "wte.weight") < 0 &&
            st_safetensors_find(st, "transformer.wte.weight") >= 0)
            h.prefix = "transformer.";
        s = load_weights(&h);
    }
    st_safetensors_close(st);
    if (s == ST_OK) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (access(path, R_OK) == 0) {
            s = st_tokenizer_load(path, &lm->tok);
            if (s == ST_OK) {
                lm->bos_id = st_tokenizer_bos_id(lm->tok);
                lm->eos_id = st_tokenizer_eos_id(lm->tok);
            }
        }
    }
    if (s == ST_OK) {
        lm->source = st_malloc(strlen(dir) + 1);
        if (lm->source) strcpy(lm->source, dir);
        s = st_lm_validate(lm, dir);
    }
    if (s != ST_OK) {
        st_lm_free(lm);
        return s;
    }
    *out = lm;
    return ST_OK;
}

/* ---- writing ------------------------------------------------------------------- */

typedef struct hf_out {
    st_ctx *ctx;
    st_safetensors_entry *e;
    st_tensor **t;
    char **names;
    float **bufs;
    int n, cap;
} hf_out;

static st_status out_add(hf_out *o, const char *name, float *data, int ndim, int64_t d0,
                         int64_t d1) {
    if (!data) return st__fail(ST_ERR_NOMEM, "st_lm_save_hf: out of memory");
    if (o->n == o->cap) {
        st_free(data);
        return st__fail(ST_ERR_INVALID_ARG, "st_lm_save_hf: too many tensors");
    }
    const int64_t shape[2] = {d0, d1};
    o->bufs[o->n] = data;
    o->names[o->n] = st_malloc(strlen(name) + 1);
    if (!o->names[o->n]) return st__fail(ST_ERR_NOMEM, "st_lm_save_hf: out of memory");
    strcpy(o->names[o->n], name);
    ST_TRY(st_tensor_wrap(o->ctx, ST_F32, ndim, shape, data, &o->t[o->n]));
    o->e[o->n] = (st_safetensors_entry){o->names[o->n], o->t[o->n]};
    o->n++;
    return ST_OK;
}

static float *copy_vec(const float *v, int64_t n) {
    float *d = st_malloc((size_t)n * 4);
    if (d) memcpy(d, v, (size_t)n * 4);
    return d;
}

/* f32 rows of w; perm > 0: HF order from interleaved over perm heads */
static float *dense(const st_wmatrix *w, int perm) {
    float *d = st_malloc((size_t)(w->rows * w->cols) * 4);
    if (!d) return NULL;
    const int64_t hd = perm > 0 ? w->rows / perm : 0;
    for (int64_t r = 0; r < w->rows; r++) {
        int64_t src = r;
        if (perm > 0) { /* HF row h*hd + half*hd/2 + j <- interleaved h*hd + 2j + half */
            const int64_t h = r / hd, i = r % hd, half = i / (hd / 2), j = i % (hd / 2);
            src = h * hd + 2 * j + half;
        }
        if (st_wmatrix_get_row(w, src, d + r * w->cols) != ST_OK) {
            st_free(d);
            return NULL;
        }
    }
    return d;
}

/* Conv1D [in, out] of rows stacked from up to three matrices */
static float *conv1d(const st_wmatrix *const *ms, int nm) {
    int64_t out = 0;
    const int64_t in = ms[0]->cols;
    for (int i = 0; i < nm; i++) out += ms[i]->rows;
    float *d = st_malloc((size_t)(in * out) * 4), *row = st_malloc((size_t)in * 4);
    if (!d || !row) {
        st_free(d);
        st_free(row);
        return NULL;
    }
    int64_t o0 = 0;
    for (int i = 0; i < nm; i++) {
        for (int64_t r = 0; r < ms[i]->rows; r++) {
            st_wmatrix_get_row(ms[i], r, row);
            for (int64_t c = 0; c < in; c++) d[c * out + o0 + r] = row[c];
        }
        o0 += ms[i]->rows;
    }
    st_free(row);
    return d;
}

static st_status write_text(const char *path, const char *text) {
    return st_file_write_atomic(path, text, strlen(text));
}

st_status st_lm_save_hf(const st_lm *lm, const char *dir) {
    if (!lm || !dir) return st__fail(ST_ERR_INVALID_ARG, "st_lm_save_hf: NULL argument");
    ST_TRY(st_lm_validate(lm, lm->source));
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return st__fail(ST_ERR_IO, "%s: cannot create the directory: %s", dir, strerror(errno));
    const st_model_config *c = &lm->cfg;
    const int64_t E = c->n_embd, F = c->n_ff, hd = E / c->n_head, Q = c->n_head * hd,
                  KV = c->n_kv_head * hd;
    hf_out o = {0};
    o.cap = 8 + 16 * c->n_layer;
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = 1;
    st_status s = st_ctx_new(&cp, &o.ctx);
    if (s != ST_OK) return s;
    o.e = st_calloc((size_t)o.cap, sizeof *o.e);
    o.t = st_calloc((size_t)o.cap, sizeof *o.t);
    o.names = st_calloc((size_t)o.cap, sizeof *o.names);
    o.bufs = st_calloc((size_t)o.cap + 1, sizeof *o.bufs);
    if (!o.e || !o.t || !o.names || !o.bufs) s = st__fail(ST_ERR_NOMEM, "st_lm_save_hf: out of memory");
    st_model_config cfg = *c;
    char n[160];
    if (s == ST_OK && c->arch == ST_ARCH_LLAMA) {
        const bool inter = lm->rope == ST_ROPE_INTERLEAVED;
        cfg.tie_embeddings = lm->lm_head.data == lm->tok_embd.data;
        s = out_add(&o, "model.embed_tokens.weight", dense(&lm->tok_embd, 0), 2, c->vocab_size, E);
        if (s == ST_OK && !cfg.tie_embeddings)
            s = out_add(&o, "lm_head.weight", dense(&lm->lm_head, 0), 2, c->vocab_size, E);
        if (s == ST_OK) s = out_add(&o, "model.norm.weight", copy_vec(lm->lnf_w, E), 1, E, 0);
        for (int l = 0; s == ST_OK && l < c->n_layer; l++) {
            const st_lm_layer *L = &lm->layers[l];
#define NM(x) (snprintf(n, sizeof n, "model.layers.%d." x, l), n)
            s = out_add(&o, NM("self_attn.q_proj.weight"), dense(&L->wq, inter ? c->n_head : 0), 2, Q, E);
            if (s == ST_OK) s = out_add(&o, NM("self_attn.k_proj.weight"), dense(&L->wk, inter ? c->n_kv_head : 0), 2, KV, E);
            if (s == ST_OK) s = out_add(&o, NM("self_attn.v_proj.weight"), dense(&L->wv, 0), 2, KV, E);
            if (s == ST_OK) s = out_add(&o, NM("self_attn.o_proj.weight"), dense(&L->wo, 0), 2, E, Q);
            if (s == ST_OK) s = out_add(&o, NM("mlp.gate_proj.weight"), dense(&L->w_gate, 0), 2, F, E);
            if (s == ST_OK) s = out_add(&o, NM("mlp.up_proj.weight"), dense(&L->w_up, 0), 2, F, E);
            if (s == ST_OK) s = out_add(&o, NM("mlp.down_proj.weight"), dense(&L->w_down, 0), 2, E, F);
            if (s == ST_OK) s = out_add(&o, NM("input_layernorm.weight"), copy_vec(L->ln1_w, E), 1, E, 0);
            if (s == ST_OK) s = out_add(&o, NM("post_attention_layernorm.weight"), copy_vec(L->ln2_w, E), 1, E, 0);
#undef NM
        }
    } else if (s == ST_OK) {
        s = out_add(&o, "wte.weight", dense(&lm->tok_embd, 0), 2, c->vocab_size, E);
        if (s == ST_OK) s = out_add(&o, "wpe.weight", copy_vec(lm->pos_embd, (int64_t)c->n_ctx * E), 2, c->n_ctx, E);
        if (s == ST_OK) s = out_add(&o, "ln_f.weight", copy_vec(lm->lnf_w, E), 1, E, 0);
        const bool bias = lm->lnf_b != NULL; /* bias-free gpt2 writes no bias tensors */
        if (s == ST_OK && bias) s = out_add(&o, "ln_f.bias", copy_vec(lm->lnf_b, E), 1, E, 0);
        for (int l = 0; s == ST_OK && l < c->n_layer; l++) {
            const st_lm_layer *L = &lm->layers[l];
            const st_wmatrix *qkv[3] = {&L->wq, &L->wk, &L->wv};
            float *b = bias ? st_malloc((size_t)(Q + 2 * KV) * 4) : NULL;
            if (b) {
                memcpy(b, L->bq, (size_t)Q * 4);
                memcpy(b + Q, L->bk, (size_t)KV * 4);
                memcpy(b + Q + KV, L->bv, (size_t)KV * 4);
            }
#define NM(x) (snprintf(n, sizeof n, "h.%d." x, l), n)
            s = out_add(&o, NM("attn.c_attn.weight"), conv1d(qkv, 3), 2, E, Q + 2 * KV);
            if (s == ST_OK && bias) s = out_add(&o, NM("attn.c_attn.bias"), b, 1, Q + 2 * KV, 0);
            else st_free(b);
            const st_wmatrix *wo = &L->wo, *up = &L->w_up, *dn = &L->w_down;
            if (s == ST_OK) s = out_add(&o, NM("attn.c_proj.weight"), conv1d(&wo, 1), 2, Q, E);
            if (s == ST_OK && bias) s = out_add(&o, NM("attn.c_proj.bias"), copy_vec(L->bo, E), 1, E, 0);
            if (s == ST_OK) s = out_add(&o, NM("mlp.c_fc.weight"), conv1d(&up, 1), 2, E, F);
            if (s == ST_OK && bias) s = out_add(&o, NM("mlp.c_fc.bias"), copy_vec(L->b_up, F), 1, F, 0);
            if (s == ST_OK) s = out_add(&o, NM("mlp.c_proj.weight"), conv1d(&dn, 1), 2, F, E);
            if (s == ST_OK && bias) s = out_add(&o, NM("mlp.c_proj.bias"), copy_vec(L->b_down, E), 1, E, 0);
            if (s == ST_OK) s = out_add(&o, NM("ln_1.weight"), copy_vec(L->ln1_w, E), 1, E, 0);
            if (s == ST_OK && bias) s = out_add(&o, NM("ln_1.bias"), copy_vec(L->ln1_b, E), 1, E, 0);
            if (s == ST_OK) s = out_add(&o, NM("ln_2.weight"), copy_vec(L->ln2_w, E), 1, E, 0);
            if (s == ST_OK && bias) s = out_add(&o, NM("ln_2.bias"), copy_vec(L->ln2_b, E), 1, E, 0);
#undef NM
        }
    }
    char path[4096];
    if (s == ST_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        const char *meta[2] = {"format", "pt"};
        s = st_safetensors_save(path, o.e, o.n, meta, 1);
    }
    if (s == ST_OK) {
        char *json = NULL;
        s = st_model_config_to_json(&cfg, &json);
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (s == ST_OK) s = write_text(path, json);
        st_free(json);
    }
    if (s == ST_OK && lm->tok) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        s = st_tokenizer_save_json(lm->tok, path);
    }
    for (int i = 0; i < o.n; i++) st_tensor_free(o.t[i]);
    for (int i = 0; o.names && i < o.cap; i++) st_free(o.names[i]);
    for (int i = 0; o.bufs && i < o.cap; i++) st_free(o.bufs[i]);
    st_free(o.e);
    st_free(o.t);
    st_free(o.names);
    st_free(o.bufs);
    st_ctx_free(o.ctx);
    return s;
}
