/*
 * lm_model.c — st_lm_from_model: an inference copy of a training model.
 *
 * Every weight is copied (f32) into buffers the st_lm owns, looked up by
 * the model's Hugging Face names (strata/model.h). llama weights are
 * nn.Linear [out, in] already; gpt2's Conv1D weights are [in, out] and are
 * transposed, and c_attn [E, 3E] is split into q, k, v. A gpt2 built
 * without biases (cfg.bias false) simply has no bias tensors: a missing
 * bias is NULL. The rope convention is Strata's training one (ST_ROPE_HALF).
 * Single-threaded; borrows the model for the call.
 */
#include "strata/infer.h"

#include <stdio.h>
#include <string.h>

static st_status get(const st_model *m, const char *name, int64_t numel, bool required,
                     const float **out) {
    *out = NULL;
    st_tensor *t = st_model_find_tensor(m, name);
    if (!t) {
        if (!required) return ST_OK;
        return st__fail(ST_ERR_STATE, "st_lm_from_model: the model has no tensor %s", name);
    }
    if (t->dtype != ST_F32 || !st_tensor_is_contiguous(t) || st_tensor_numel(t) != numel)
        return st__fail(ST_ERR_STATE,
                        "st_lm_from_model: %s is not a contiguous f32 tensor of %lld elements",
                        name, (long long)numel);
    *out = t->data;
    return ST_OK;
}

/* copy of n floats owned by lm */
static st_status copy(st_lm *lm, const float *src, int64_t n, const float **dst) {
    *dst = NULL;
    if (!src) return ST_OK;
    float *p = st_lm_alloc(lm, (size_t)n * sizeof(float));
    if (!p) return st__fail(ST_ERR_NOMEM, "st_lm_from_model: no memory");
    memcpy(p, src, (size_t)n * sizeof(float));
    *dst = p;
    return ST_OK;
}

static void set_f32(st_wmatrix *w, const float *data, int64_t rows, int64_t cols) {
    w->type = ST_WT_F32;
    w->rows = rows;
    w->cols = cols;
    w->data = data;
    w->row_bytes = (size_t)cols * sizeof(float);
}

/* an [out, in] matrix from an [out, in] tensor */
static st_status linear(st_lm *lm, const st_model *m, const char *name, int64_t rows,
                        int64_t cols, st_wmatrix *w) {
    const float *src, *dst;
    ST_TRY(get(m, name, rows * cols, true, &src));
    ST_TRY(copy(lm, src, rows * cols, &dst));
    set_f32(w, dst, rows, cols);
    return ST_OK;
}

/* columns [c0, c0 + rows) of a Conv1D weight [in = cols, ld] as [rows, cols] */
static st_status conv1d(st_lm *lm, const float *src, int64_t ld, int64_t c0, int64_t rows,
                        int64_t cols, st_wmatrix *w) {
    float *p = st_lm_alloc(lm, (size_t)(rows * cols) * sizeof(float));
    if (!p) return st__fail(ST_ERR_NOMEM, "st_lm_from_model: no memory");
    for (int64_t i = 0; i < cols; i++)
        for (int64_t o = 0; o < rows; o++) p[o * cols + i] = src[i * ld + c0 + o];
    set_f32(w, p, rows, cols);
    return ST_OK;
}

static st_status fill_llama(st_lm *lm, const st_model *m) {
    const st_model_config *c = &lm->cfg;
    const int64_t E = c->n_embd, F = c->n_ff, V = c->vocab_size;
    const int64_t KV = (int64_t)c->n_kv_head * (E / c->n_head);
    char n[160];
    ST_TRY(linear(lm, m, "model.embed_tokens.weight", V, E, &lm->tok_embd));
    if (c->tie_embeddings) lm->lm_head = lm->tok_embd;
    else ST_TRY(linear(lm, m, "lm_head.weight", V, E, &lm->lm_head));
    const float *src;
    ST_TRY(get(m, "model.norm.weight", E, true, &src));
    ST_TRY(copy(lm, src, E, &lm->lnf_w));
    for (int l = 0; l < c->n_layer; l++) {
        st_lm_layer *L = &lm->layers[l];
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
        ST_TRY(get(m, NAME("input_layernorm.weight"), E, true, &src));
        ST_TRY(copy(lm, src, E, &L->ln1_w));
        ST_TRY(get(m, NAME("post_attention_layernorm.weight"), E, true, &src));
        ST_TRY(copy(lm, src, E, &L->ln2_w));
        ST_TRY(linear(lm, m, NAME("self_attn.q_proj.weight"), E, E, &L->wq));
        ST_TRY(linear(lm, m, NAME("self_attn.k_proj.weight"), KV, E, &L->wk));
        ST_TRY(linear(lm, m, NAME("self_attn.v_proj.weight"), KV, E, &L->wv));
        ST_TRY(linear(lm, m, NAME("self_attn.o_proj.weight"), E, E, &L->wo));
        ST_TRY(linear(lm, m, NAME("mlp.gate_proj.weight"), F, E, &L->w_gate));
        ST_TRY(linear(lm, m, NAME("mlp.up_proj.weight"), F, E, &L->w_up));
        ST_TRY(linear(lm, m, NAME("mlp.down_proj.weight"), E, F, &L->w_down));
#undef NAME
    }
    return ST_OK;
}

static st_status fill_gpt2(st_lm *lm, const st_model *m) {
    const st_model_config *c = &lm->cfg;
    const int64_t E = c->n_embd, F = c->n_ff, V = c->vocab_size;
    char n[160];
    const float *src;
    ST_TRY(linear(lm, m, "wte.weight", V, E, &lm->tok_embd));
    lm->lm_head = lm->tok_embd; /* gpt2's head is always tied */
    ST_TRY(get(m, "wpe.weight", (int64_t)c->n_ctx * E, true, &src));
    ST_TRY(copy(lm, src, (int64_t)c->n_ctx * E, &lm->pos_embd));
    ST_TRY(get(m, "ln_f.weight", E, true, &src));
    ST_TRY(copy(lm, src, E, &lm->lnf_w));
    ST_TRY(get(m, "ln_f.bias", E, false, &src));
    ST_TRY(copy(lm, src, E, &lm->lnf_b));
    for (int l = 0; l < c->n_layer; l++) {
        st_lm_layer *L = &lm->layers[l];
#define NAME(fmt) (snprintf(n, sizeof n, "h.%d." fmt, l), n)
        ST_TRY(get(m, NAME("ln_1.weight"), E, true, &src));
        ST_TRY(copy(lm, src, E, &L->ln1_w));
        ST_TRY(get(m, NAME("ln_1.bias"), E, false, &src));
        ST_TRY(copy(lm, src, E, &L->ln1_b));
        ST_TRY(get(m, NAME("ln_2.weight"), E, true, &src));
        ST_TRY(copy(lm, src, E, &L->ln2_w));
        ST_TRY(get(m, NAME("ln_2.bias"), E, false, &src));
        ST_TRY(copy(lm, src, E, &L->ln2_b));
        ST_TRY(get(m, NAME("attn.c_attn.weight"), E * 3 * E, true, &src));
        ST_TRY(conv1d(lm, src, 3 * E, 0, E, E, &L->wq));
        ST_TRY(conv1d(lm, src, 3 * E, E, E, E, &L->wk));
        ST_TRY(conv1d(lm, src, 3 * E, 2 * E, E, E, &L->wv));
        ST_TRY(get(m, NAME("attn.c_attn.bias"), 3 * E, false, &src));
        if (src) {
            ST_TRY(copy(lm, src, 3 * E, &L->bq));
            L->bk = L->bq + E;
            L->bv = L->bq + 2 * E;
        }
        ST_TRY(get(m, NAME("attn.c_proj.weight"), E * E, true, &src));
        ST_TRY(conv1d(lm, src, E, 0, E, E, &L->wo));
        ST_TRY(get(m, NAME("attn.c_proj.bias"), E, false, &src));
        ST_TRY(copy(lm, src, E, &L->bo));
        ST_TRY(get(m, NAME("mlp.c_fc.weight"), E * F, true, &src));
        ST_TRY(conv1d(lm, src, F, 0, F, E, &L->w_up));
        ST_TRY(get(m, NAME("mlp.c_fc.bias"), F, false, &src));
        ST_TRY(copy(lm, src, F, &L->b_up));
        ST_TRY(get(m, NAME("mlp.c_proj.weight"), F * E, true, &src));
        ST_TRY(conv1d(lm, src, E, 0, E, F, &L->w_down));
        ST_TRY(get(m, NAME("mlp.c_proj.bias"), E, false, &src));
        ST_TRY(copy(lm, src, E, &L->b_down));
#undef NAME
    }
    return ST_OK;
}

st_status st_lm_from_model(const st_model *m, st_lm **out) {
    if (!m || !out) return st__fail(ST_ERR_INVALID_ARG, "st_lm_from_model: NULL argument");
    *out = NULL;
    st_lm *lm = NULL;
    ST_TRY(st_lm_new_empty(st_model_get_config(m), &lm));
    lm->rope = ST_ROPE_HALF;
    st_status s = lm->cfg.arch == ST_ARCH_GPT2 ? fill_gpt2(lm, m) : fill_llama(lm, m);
    if (!s) s = st_lm_validate(lm, "st_lm_from_model");
    if (s) {
        st_lm_free(lm);
        return s;
    }
    *out = lm;
    return ST_OK;
}
