/*
 * model_impl.h — internals shared by the files of src/model/ (layer 4):
 * the st_model struct, its parameter table and per-layer pointers, and the
 * per-architecture builders and forward passes.
 *
 * Ownership: the model owns every parameter tensor (persistent, freed by
 * st_model_free together with its grad) and the names in its table. The
 * per-layer pointers borrow from the table. One thread drives a model.
 */
#ifndef STRATA_MODEL_IMPL_H
#define STRATA_MODEL_IMPL_H

#include "strata/model.h"

#define ST__MODEL_NAME_MAX 64

typedef struct st__param {
    char name[ST__MODEL_NAME_MAX]; /* Hugging Face tensor name */
    st_tensor *t;                  /* persistent f32, requires grad */
} st__param;

/* One transformer block's parameters (borrowed from the table). Unused
 * fields of the other architecture stay NULL. */
typedef struct st__block {
    /* gpt2 (HF Conv1D layout [in, out]) */
    st_tensor *ln1_w, *ln1_b, *attn_w, *attn_b, *attn_proj_w, *attn_proj_b;
    st_tensor *ln2_w, *ln2_b, *fc_w, *fc_b, *mlp_proj_w, *mlp_proj_b;
    /* llama (nn.Linear layout [out, in]) */
    st_tensor *in_norm, *wq, *wk, *wv, *wo, *post_norm, *w_gate, *w_up, *w_down;
} st__block;

struct st_model {
    st_ctx *ctx;
    st_model_config cfg;
    st__param *params; /* [n_params_cap] */
    int n_tensors, n_params_cap;
    st__block *blocks; /* [n_layer] */
    /* gpt2: tok_emb = wte, pos_emb = wpe, final_w/b = ln_f; llama: tok_emb =
     * embed_tokens, final_w = model.norm, lm_head (NULL when tied). */
    st_tensor *tok_emb, *pos_emb, *final_w, *final_b, *lm_head;
    bool training;
    uint64_t dropout_seed;
    uint64_t n_forward; /* forward passes in training mode (dropout seeds) */
    double *partial;    /* [n_partial] per-thread sums of st_clip_grad_norm */
    int n_partial;
};

/* Adds a persistent parameter [ndim shape] named name (snprintf format),
 * initialized N(0, std) from seed (std 0: filled with fill). */
st_status st__model_add_param(st_model *m, st_tensor **out, int ndim, const int64_t *shape,
                              float std, float fill, uint64_t seed, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* Per-architecture parameter builders and forward passes. The forward
 * returns the final normalized hidden state h [B*T, C]; model.c applies the
 * head. */
st_status st__gpt2_build(st_model *m, uint64_t seed);
st_status st__gpt2_forward(st_model *m, const st_tensor *ids, st_tensor **h);
st_status st__llama_build(st_model *m, uint64_t seed);
st_status st__llama_forward(st_model *m, const st_tensor *ids, st_tensor **h);

/* Dropout at call site `site` of the current forward pass (x itself when
 * not training or dropout is 0). */
st_status st__model_dropout(st_model *m, const st_tensor *x, int site, st_tensor **out);

/* A 64-bit mix (splitmix64's finalizer) for deriving seeds. */
static inline uint64_t st__mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif /* STRATA_MODEL_IMPL_H */
