/*
 * gpt2.c — the GPT-2 architecture: parameters with Hugging Face's names and
 * the forward pass up to the final LayerNorm (model.c applies the tied head).
 *
 * Names are those of HF GPT2Model's state_dict, i.e. GPT2LMHeadModel's
 * without the "transformer." prefix (a loader strips or adds it); the lm
 * head is tied to wte.weight and has no entry. Weights use HF's Conv1D
 * layout [in, out], so y = x W + b with no transpose.
 *
 *   x = dropout(wte[ids] + wpe[0:T])                         (B*T, C)
 *   per block (pre-LN):
 *     qkv = ln_1(x) @ c_attn.weight + c_attn.bias            (B*T, 3C)
 *     q, k, v = column slices, viewed (B, T, H, D) -> (B, H, T, D)
 *     y = causal softmax(q k^T / sqrt(D)) v                  (B, H, T, D) fused
 *     x = x + dropout(y (B*T, C) @ attn.c_proj.weight + bias)
 *     x = x + dropout(gelu_tanh(ln_2(x) @ c_fc + b) @ mlp.c_proj + b)
 *   h = ln_f(x)                                              (B*T, C)
 * Dropout (training with cfg.dropout > 0) sits on the embeddings, the
 * attention output projection and the MLP output, like HF's embd_pdrop and
 * resid_pdrop; attention-probability dropout (attn_pdrop) is not applied.
 *
 * Without biases (cfg.bias false, nanoGPT's bias=False): the Linear and
 * LayerNorm bias tensors do not exist (no parameter, no tensor name in
 * model.safetensors; their pointers stay NULL), Linear is a matmul alone and
 * LayerNorm runs without beta.
 *
 * Init (GPT-2 / nanoGPT): weights N(0, 0.02), residual projections
 * (attn.c_proj, mlp.c_proj) N(0, 0.02 / sqrt(2 n_layer)), biases 0, norm
 * weights 1. Ownership and threading: model.c's.
 */
#include "model/model_impl.h"

#include <math.h>

st_status st__gpt2_build(st_model *m, uint64_t seed) {
    const st_model_config *c = &m->cfg;
    const int64_t C = c->n_embd, F = c->n_ff;
    const float std = 0.02f, std_res = 0.02f / sqrtf(2.0f * (float)c->n_layer);
    const int64_t s_vc[2] = {c->vocab_size, C}, s_pc[2] = {c->n_ctx, C}, s_c[1] = {C};
    const int64_t s_c3c[2] = {C, 3 * C}, s_3c[1] = {3 * C}, s_cc[2] = {C, C};
    const int64_t s_cf[2] = {C, F}, s_f[1] = {F}, s_fc[2] = {F, C};
    ST_TRY(st__model_add_param(m, &m->tok_emb, 2, s_vc, std, 0, seed, "wte.weight"));
    ST_TRY(st__model_add_param(m, &m->pos_emb, 2, s_pc, std, 0, seed, "wpe.weight"));
    for (int i = 0; i < c->n_layer; i++) {
        st__block *b = &m->blocks[i];
        ST_TRY(st__model_add_param(m, &b->ln1_w, 1, s_c, 0, 1, seed, "h.%d.ln_1.weight", i));
        if (c->bias)
            ST_TRY(st__model_add_param(m, &b->ln1_b, 1, s_c, 0, 0, seed, "h.%d.ln_1.bias", i));
        ST_TRY(st__model_add_param(m, &b->attn_w, 2, s_c3c, std, 0, seed, "h.%d.attn.c_attn.weight",
                                   i));
        if (c->bias)
            ST_TRY(st__model_add_param(m, &b->attn_b, 1, s_3c, 0, 0, seed, "h.%d.attn.c_attn.bias",
                                       i));
        ST_TRY(st__model_add_param(m, &b->attn_proj_w, 2, s_cc, std_res, 0, seed,
                                   "h.%d.attn.c_proj.weight", i));
        if (c->bias)
            ST_TRY(st__model_add_param(m, &b->attn_proj_b, 1, s_c, 0, 0, seed,
                                       "h.%d.attn.c_proj.bias", i));
        ST_TRY(st__model_add_param(m, &b->ln2_w, 1, s_c, 0, 1, seed, "h.%d.ln_2.weight", i));
        if (c->bias)
            ST_TRY(st__model_add_param(m, &b->ln2_b, 1, s_c, 0, 0, seed, "h.%d.ln_2.bias", i));
        ST_TRY(st__model_add_param(m, &b->fc_w, 2, s_cf, std, 0, seed, "h.%d.mlp.c_fc.weight", i));
        if (c->bias)
            ST_TRY(st__model_add_param(m, &b->fc_b, 1, s_f, 0, 0, seed, "h.%d.mlp.c_fc.bias", i));
        ST_TRY(st__model_add_param(m, &b->mlp_proj_w, 2, s_fc, std_res, 0, seed,
                                   "h.%d.mlp.c_proj.weight", i));
        if (c->bias)
            ST_TRY(st__model_add_param(m, &b->mlp_proj_b, 1, s_c, 0, 0, seed,
                                       "h.%d.mlp.c_proj.bias", i));
    }
    ST_TRY(st__model_add_param(m, &m->final_w, 1, s_c, 0, 1, seed, "ln_f.weight"));
    if (c->bias) ST_TRY(st__model_add_param(m, &m->final_b, 1, s_c, 0, 0, seed, "ln_f.bias"));
    return ST_OK;
}

/* (B*T, C) x (C, N) + (N); b NULL: no bias */
static st_status linear(st_ctx *ctx, const st_tensor *x, const st_tensor *w, const st_tensor *b,
                        st_tensor **out) {
    st_tensor *y = NULL;
    if (!b) return st_matmul(ctx, x, w, out);
    ST_TRY(st_matmul(ctx, x, w, &y));
    return st_add(ctx, y, b, out);
}

/* One head-split projection: columns [c0, c0 + C) of qkv (B*T, 3C) as (B, H, T, D). */
static st_status heads(st_ctx *ctx, const st_tensor *qkv, int64_t c0, int64_t B, int64_t T,
                       int64_t H, int64_t D, st_tensor **out) {
    static const int perm[4] = {0, 2, 1, 3};
    const int64_t shape[4] = {B, T, H, D};
    st_tensor *t = NULL;
    ST_TRY(st_slice(ctx, qkv, 1, c0, c0 + H * D, 1, &t)); /* (B*T, C), row stride 3C */
    ST_TRY(st_reshape(ctx, t, 4, shape, &t));             /* (B, T, H, D) */
    return st_permute(ctx, t, perm, out);                 /* (B, H, T, D) view */
}

st_status st__gpt2_forward(st_model *m, const st_tensor *ids, st_tensor **h_out) {
    static const int perm[4] = {0, 2, 1, 3};
    const st_model_config *c = &m->cfg;
    st_ctx *ctx = m->ctx;
    const int64_t B = ids->ne[0], T = ids->ne[1], C = c->n_embd, H = c->n_head, D = C / H;
    const int64_t s_btc[2] = {B * T, C}, s_tc[3] = {1, T, C};
    const float scale = 1.0f / sqrtf((float)D);
    int site = 0;
    st_tensor *x = NULL, *pos = NULL, *a = NULL, *q = NULL, *k = NULL, *v = NULL, *y = NULL;

    ST_TRY(st_embedding(ctx, m->tok_emb, ids, &x));      /* (B, T, C) */
    ST_TRY(st_slice(ctx, m->pos_emb, 0, 0, T, 1, &pos)); /* (T, C) view of wpe */
    ST_TRY(st_reshape(ctx, pos, 3, s_tc, &pos));         /* (1, T, C) */
    ST_TRY(st_add(ctx, x, pos, &x));                     /* (B, T, C) */
    ST_TRY(st_reshape(ctx, x, 2, s_btc, &x));            /* (B*T, C) */
    ST_TRY(st__model_dropout(m, x, site++, &x));

    for (int l = 0; l < c->n_layer; l++) {
        const st__block *b = &m->blocks[l];
        /* attention */
        ST_TRY(st_layernorm(ctx, x, b->ln1_w, b->ln1_b, c->norm_eps, &a)); /* (B*T, C) */
        ST_TRY(linear(ctx, a, b->attn_w, b->attn_b, &a));                  /* (B*T, 3C) */
        ST_TRY(heads(ctx, a, 0, B, T, H, D, &q));                          /* (B, H, T, D) */
        ST_TRY(heads(ctx, a, C, B, T, H, D, &k));
        ST_TRY(heads(ctx, a, 2 * C, B, T, H, D, &v));
        ST_TRY(st_attention(ctx, q, k, v, true, scale, &y)); /* (B, H, T, D) */
        ST_TRY(st_permute(ctx, y, perm, &y));                /* (B, T, H, D) */
        ST_TRY(st_contiguous(ctx, y, &y));
        ST_TRY(st_reshape(ctx, y, 2, s_btc, &y));                   /* (B*T, C) */
        ST_TRY(linear(ctx, y, b->attn_proj_w, b->attn_proj_b, &y)); /* (B*T, C) */
        ST_TRY(st__model_dropout(m, y, site++, &y));
        ST_TRY(st_add(ctx, x, y, &x));
        /* MLP */
        ST_TRY(st_layernorm(ctx, x, b->ln2_w, b->ln2_b, c->norm_eps, &a)); /* (B*T, C) */
        ST_TRY(linear(ctx, a, b->fc_w, b->fc_b, &a));                      /* (B*T, F) */
        ST_TRY(st_gelu(ctx, a, ST_GELU_TANH, &a));
        ST_TRY(linear(ctx, a, b->mlp_proj_w, b->mlp_proj_b, &y)); /* (B*T, C) */
        ST_TRY(st__model_dropout(m, y, site++, &y));
        ST_TRY(st_add(ctx, x, y, &x));
    }
    return st_layernorm(ctx, x, m->final_w, m->final_b, c->norm_eps, h_out); /* (B*T, C) */
}
