/*
 * llama.c — the Llama architecture: parameters with Hugging Face's
 * LlamaForCausalLM names and the forward pass up to the final RMSNorm
 * (model.c applies the head: lm_head.weight, or embed_tokens when tied).
 *
 * Weights use nn.Linear's layout [out, in], so y = x W^T: the forward
 * multiplies by a transposed view of the persistent weight (OpenBLAS takes
 * the trans flag; nothing is copied). No biases.
 *
 *   x = dropout(embed_tokens[ids])                            (B*T, C)
 *   per block (pre-norm):
 *     a = rmsnorm(x) * input_layernorm.weight
 *     q = a q_proj^T (B*T, H*D), k, v = a k_proj^T, a v_proj^T (B*T, Hkv*D)
 *     q, k -> (B, H|Hkv, T, D) with RoPE (HF rotate_half, rope_theta, pos 0..T-1)
 *     y = causal attention, grouped-query (head h reads kv head h / (H/Hkv))
 *     x = x + dropout(y (B*T, C) o_proj^T)
 *     a = rmsnorm(x) * post_attention_layernorm.weight
 *     x = x + dropout((silu(a gate_proj^T) * (a up_proj^T)) down_proj^T)
 *   h = rmsnorm(x) * model.norm.weight                        (B*T, C)
 * Dropout (training with cfg.dropout > 0) sits where gpt2 has it: the
 * embeddings, the attention output and the MLP output; none on the
 * attention probabilities.
 *
 * Init: weights N(0, 0.02), residual projections (o_proj, down_proj)
 * N(0, 0.02 / sqrt(2 n_layer)), norm weights 1. Ownership and threading:
 * model.c's.
 */
#include "model/model_impl.h"

#include <math.h>

st_status st__llama_build(st_model *m, uint64_t seed) {
    const st_model_config *c = &m->cfg;
    const int64_t C = c->n_embd, F = c->n_ff, KV = (int64_t)c->n_kv_head * (C / c->n_head);
    const float std = 0.02f, std_res = 0.02f / sqrtf(2.0f * (float)c->n_layer);
    const int64_t s_vc[2] = {c->vocab_size, C}, s_c[1] = {C}, s_cc[2] = {C, C};
    const int64_t s_kc[2] = {KV, C}, s_fc[2] = {F, C}, s_cf[2] = {C, F};
    const char *L = "model.layers";
    ST_TRY(st__model_add_param(m, &m->tok_emb, 2, s_vc, std, 0, seed, "model.embed_tokens.weight"));
    for (int i = 0; i < c->n_layer; i++) {
        st__block *b = &m->blocks[i];
        ST_TRY(st__model_add_param(m, &b->in_norm, 1, s_c, 0, 1, seed,
                                   "%s.%d.input_layernorm.weight", L, i));
        ST_TRY(st__model_add_param(m, &b->wq, 2, s_cc, std, 0, seed,
                                   "%s.%d.self_attn.q_proj.weight", L, i));
        ST_TRY(st__model_add_param(m, &b->wk, 2, s_kc, std, 0, seed,
                                   "%s.%d.self_attn.k_proj.weight", L, i));
        ST_TRY(st__model_add_param(m, &b->wv, 2, s_kc, std, 0, seed,
                                   "%s.%d.self_attn.v_proj.weight", L, i));
        ST_TRY(st__model_add_param(m, &b->wo, 2, s_cc, std_res, 0, seed,
                                   "%s.%d.self_attn.o_proj.weight", L, i));
        ST_TRY(st__model_add_param(m, &b->post_norm, 1, s_c, 0, 1, seed,
                                   "%s.%d.post_attention_layernorm.weight", L, i));
        ST_TRY(st__model_add_param(m, &b->w_gate, 2, s_fc, std, 0, seed,
                                   "%s.%d.mlp.gate_proj.weight", L, i));
        ST_TRY(st__model_add_param(m, &b->w_up, 2, s_fc, std, 0, seed, "%s.%d.mlp.up_proj.weight",
                                   L, i));
        ST_TRY(st__model_add_param(m, &b->w_down, 2, s_cf, std_res, 0, seed,
                                   "%s.%d.mlp.down_proj.weight", L, i));
    }
    ST_TRY(st__model_add_param(m, &m->final_w, 1, s_c, 0, 1, seed, "model.norm.weight"));
    if (!c->tie_embeddings)
        ST_TRY(st__model_add_param(m, &m->lm_head, 2, s_vc, std, 0, seed, "lm_head.weight"));
    return ST_OK;
}

/* x (N, in) @ w^T with w (out, in) -> (N, out) */
static st_status linear_t(st_ctx *ctx, const st_tensor *x, const st_tensor *w, st_tensor **out) {
    st_tensor *wt = NULL;
    ST_TRY(st_transpose(ctx, w, 0, 1, &wt)); /* (in, out) view */
    return st_matmul(ctx, x, wt, out);
}

/* (B*T, n*D) -> (B, n, T, D) view */
static st_status to_heads(st_ctx *ctx, const st_tensor *x, int64_t B, int64_t T, int64_t n,
                          int64_t D, st_tensor **out) {
    static const int perm[4] = {0, 2, 1, 3};
    const int64_t shape[4] = {B, T, n, D};
    st_tensor *t = NULL;
    ST_TRY(st_reshape(ctx, x, 4, shape, &t));
    return st_permute(ctx, t, perm, out);
}

st_status st__llama_forward(st_model *m, const st_tensor *ids, st_tensor **h_out) {
    static const int perm[4] = {0, 2, 1, 3};
    const st_model_config *c = &m->cfg;
    st_ctx *ctx = m->ctx;
    const int64_t B = ids->ne[0], T = ids->ne[1], C = c->n_embd, H = c->n_head;
    const int64_t Hkv = c->n_kv_head, D = C / H;
    const int64_t s_btc[2] = {B * T, C};
    const float scale = 1.0f / sqrtf((float)D);
    int site = 0;
    st_tensor *x = NULL, *a = NULL, *q = NULL, *k = NULL, *v = NULL, *y = NULL, *g = NULL;

    ST_TRY(st_embedding(ctx, m->tok_emb, ids, &x)); /* (B, T, C) */
    ST_TRY(st_reshape(ctx, x, 2, s_btc, &x));       /* (B*T, C) */
    ST_TRY(st__model_dropout(m, x, site++, &x));

    for (int l = 0; l < c->n_layer; l++) {
        const st__block *b = &m->blocks[l];
        /* attention */
        ST_TRY(st_rmsnorm(ctx, x, b->in_norm, c->norm_eps, &a)); /* (B*T, C) */
        ST_TRY(linear_t(ctx, a, b->wq, &q));                     /* (B*T, H*D) */
        ST_TRY(linear_t(ctx, a, b->wk, &k));                     /* (B*T, Hkv*D) */
        ST_TRY(linear_t(ctx, a, b->wv, &v));                     /* (B*T, Hkv*D) */
        ST_TRY(to_heads(ctx, q, B, T, H, D, &q));                /* (B, H, T, D) view */
        ST_TRY(to_heads(ctx, k, B, T, Hkv, D, &k));              /* (B, Hkv, T, D) view */
        ST_TRY(to_heads(ctx, v, B, T, Hkv, D, &v));
        ST_TRY(st_rope(ctx, q, 0, c->rope_theta, ST_ROPE_HALF, &q)); /* contiguous */
        ST_TRY(st_rope(ctx, k, 0, c->rope_theta, ST_ROPE_HALF, &k));
        ST_TRY(st_attention(ctx, q, k, v, true, scale, &y)); /* (B, H, T, D) */
        ST_TRY(st_permute(ctx, y, perm, &y));                /* (B, T, H, D) */
        ST_TRY(st_contiguous(ctx, y, &y));
        ST_TRY(st_reshape(ctx, y, 2, s_btc, &y)); /* (B*T, C) */
        ST_TRY(linear_t(ctx, y, b->wo, &y));      /* (B*T, C) */
        ST_TRY(st__model_dropout(m, y, site++, &y));
        ST_TRY(st_add(ctx, x, y, &x));
        /* SwiGLU MLP */
        ST_TRY(st_rmsnorm(ctx, x, b->post_norm, c->norm_eps, &a)); /* (B*T, C) */
        ST_TRY(linear_t(ctx, a, b->w_gate, &g));                   /* (B*T, F) */
        ST_TRY(linear_t(ctx, a, b->w_up, &a));                     /* (B*T, F) */
        ST_TRY(st_silu(ctx, g, &g));
        ST_TRY(st_mul(ctx, g, a, &g));
        ST_TRY(linear_t(ctx, g, b->w_down, &y)); /* (B*T, C) */
        ST_TRY(st__model_dropout(m, y, site++, &y));
        ST_TRY(st_add(ctx, x, y, &x));
    }
    return st_rmsnorm(ctx, x, m->final_w, c->norm_eps, h_out); /* (B*T, C) */
}
