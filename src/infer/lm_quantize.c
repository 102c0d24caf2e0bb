/*
 * lm_quantize.c — st_lm_quantize: a copy of an st_lm with every weight
 * matrix converted to one st_wtype (strata/infer.h).
 *
 * Each matrix is dequantized row by row to f32 and quantized again with
 * llama.cpp's reference rounding (strata/quant.h), so q8_0 -> q8_0 keeps
 * bytes only up to that round trip; a matrix whose rows are not whole
 * 32-element blocks stays f32 for quantized targets. Norms, biases and
 * embeddings of positions are copied as f32; the tokenizer is cloned. The
 * copy owns all its storage (src may be freed afterwards). Single-threaded.
 */
#include "strata/infer.h"

#include <string.h>

static st_status conv(st_lm *dst, const st_wmatrix *src, st_wtype t, st_wmatrix *out) {
    if (!src->data) {
        *out = *src;
        return ST_OK;
    }
    if ((t == ST_WT_Q8_0 || t == ST_WT_Q4_0) && src->cols % ST_QK) t = ST_WT_F32;
    const size_t rb = st_wtype_row_bytes(t, src->cols);
    float *row = st_malloc((size_t)src->cols * sizeof(float));
    char *data = st_lm_alloc(dst, rb * (size_t)src->rows);
    if (!row || !data) {
        st_free(row);
        return st__fail(ST_ERR_NOMEM, "st_lm_quantize: out of memory");
    }
    st_status s = ST_OK;
    for (int64_t r = 0; r < src->rows && s == ST_OK; r++) {
        s = st_wmatrix_get_row(src, r, row);
        if (s == ST_OK) s = st_quantize_row(t, row, src->cols, data + (size_t)r * rb);
    }
    st_free(row);
    *out = (st_wmatrix){t, src->rows, src->cols, data, rb, NULL};
    return s;
}

static st_status vec(st_lm *dst, const float *src, int64_t n, const float **out) {
    if (!src) {
        *out = NULL;
        return ST_OK;
    }
    float *p = st_lm_alloc(dst, (size_t)n * sizeof(float));
    if (!p) return st__fail(ST_ERR_NOMEM, "st_lm_quantize: out of memory");
    memcpy(p, src, (size_t)n * sizeof(float));
    *out = p;
    return ST_OK;
}

st_status st_lm_quantize(const st_lm *src, st_wtype t, st_lm **out) {
    if (!src || !out || (unsigned)t >= ST_WT_COUNT_)
        return st__fail(ST_ERR_INVALID_ARG, "st_lm_quantize: bad arguments");
    *out = NULL;
    const st_model_config *c = &src->cfg;
    st_lm *lm = NULL;
    ST_TRY(st_lm_new_empty(c, &lm));
    lm->rope = src->rope;
    lm->bos_id = src->bos_id;
    lm->eos_id = src->eos_id;
    const int64_t E = c->n_embd, F = c->n_ff;
    st_status s = conv(lm, &src->tok_embd, t, &lm->tok_embd);
    if (s == ST_OK) {
        if (src->lm_head.data == src->tok_embd.data) lm->lm_head = lm->tok_embd;
        else s = conv(lm, &src->lm_head, t, &lm->lm_head);
    }
    if (s == ST_OK) s = vec(lm, src->pos_embd, (int64_t)c->n_ctx * E, &lm->pos_embd);
    if (s == ST_OK) s = vec(lm, src->lnf_w, E, &lm->lnf_w);
    if (s == ST_OK) s = vec(lm, src->lnf_b, E, &lm->lnf_b);
    for (int l = 0; l < c->n_layer && s == ST_OK; l++) {
        const st_lm_layer *a = &src->layers[l];
        st_lm_layer *b = &lm->layers[l];
        const int64_t Q = a->wq.rows, KV = a->wk.rows;
        s = conv(lm, &a->wq, t, &b->wq);
        if (s == ST_OK) s = conv(lm, &a->wk, t, &b->wk);
        if (s == ST_OK) s = conv(lm, &a->wv, t, &b->wv);
        if (s == ST_OK) s = conv(lm, &a->wo, t, &b->wo);
        if (s == ST_OK) s = conv(lm, &a->w_gate, t, &b->w_gate);
        if (s == ST_OK) s = conv(lm, &a->w_up, t, &b->w_up);
        if (s == ST_OK) s = conv(lm, &a->w_down, t, &b->w_down);
        if (s == ST_OK) s = vec(lm, a->ln1_w, E, &b->ln1_w);
        if (s == ST_OK) s = vec(lm, a->ln1_b, E, &b->ln1_b);
        if (s == ST_OK) s = vec(lm, a->ln2_w, E, &b->ln2_w);
        if (s == ST_OK) s = vec(lm, a->ln2_b, E, &b->ln2_b);
        if (s == ST_OK) s = vec(lm, a->bq, Q, &b->bq);
        if (s == ST_OK) s = vec(lm, a->bk, KV, &b->bk);
        if (s == ST_OK) s = vec(lm, a->bv, KV, &b->bv);
        if (s == ST_OK) s = vec(lm, a->bo, E, &b->bo);
        if (s == ST_OK) s = vec(lm, a->b_up, F, &b->b_up);
        if (s == ST_OK) s = vec(lm, a->b_down, E, &b->b_down);
    }
    if (s == ST_OK && src->tok) s = st_tokenizer_clone(src->tok, &lm->tok);
    if (s == ST_OK && src->source) {
        lm->source = st_malloc(strlen(src->source) + 1);
        if (lm->source) strcpy(lm->source, src->source);
    }
    if (s == ST_OK) s = st_lm_validate(lm, src->source);
    if (s != ST_OK) {
        st_lm_free(lm);
        return s;
    }
    *out = lm;
    return ST_OK;
}
