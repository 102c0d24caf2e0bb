/*
 * strata/model.h — layer 4: the gpt2 and llama model definitions, and the
 * optimizers and schedules that train them.
 *
 * A model owns its parameters (persistent tensors named with Hugging Face's
 * tensor names, so a model directory's model.safetensors maps 1:1). The
 * forward pass builds step tensors in the context's arena and records on
 * the autograd tape when grad mode is on; inference runs the same code with
 * grad mode off.
 *
 * Configuration uses Hugging Face's config.json names:
 *  gpt2:  n_layer, n_head, n_embd, vocab_size, n_positions, layer_norm_epsilon
 *  llama: hidden_size, num_hidden_layers, num_attention_heads,
 *         num_key_value_heads, intermediate_size, rms_norm_eps, rope_theta,
 *         vocab_size, max_position_embeddings, tie_word_embeddings
 *
 * Tensor names (docs/L4-models.md has the tables): gpt2 uses HF GPT2Model's
 * state_dict names, i.e. GPT2LMHeadModel's WITHOUT the "transformer."
 * prefix ("wte.weight", "h.0.attn.c_attn.weight", "ln_f.weight"; Conv1D
 * layout [in, out]); a loader strips or adds the prefix. llama uses
 * LlamaForCausalLM's names as they are ("model.embed_tokens.weight",
 * "model.layers.0.self_attn.q_proj.weight", "lm_head.weight"; nn.Linear
 * layout [out, in]). A tied lm head has no entry of its own.
 *
 * Threads: a model and an optimizer are driven by one thread; the optimizer
 * step and the gradient norm split their loops over the context's pool.
 */
#ifndef STRATA_MODEL_H
#define STRATA_MODEL_H

#include "strata/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum st_arch { ST_ARCH_GPT2 = 0, ST_ARCH_LLAMA = 1 } st_arch;

typedef struct st_model_config {
    st_arch arch;
    int n_layer;
    int n_head;
    int n_kv_head;      /* == n_head for gpt2; grouped-query when smaller */
    int n_embd;         /* hidden size */
    int n_ff;           /* MLP inner size: 4*n_embd for gpt2, intermediate_size for llama */
    int vocab_size;
    int n_ctx;          /* n_positions / max_position_embeddings */
    float norm_eps;     /* layer_norm_epsilon / rms_norm_eps */
    float rope_theta;   /* llama */
    float dropout;      /* training only (resid, attn and embedding dropout) */
    bool tie_embeddings;/* lm head shares the token embedding (gpt2: always) */
    bool bias;          /* Linear and LayerNorm biases (gpt2: config.json's nanoGPT
                           key "bias", default true; false: no bias tensors at all;
                           llama: always false) */
} st_model_config;

/* Fills defaults for an architecture (GPT-2 small / a tiny llama). */
st_model_config st_model_config_default(st_arch arch);
/* Parses config.json text (model_type "gpt2" or "llama"). source names the
 * file in messages. Errors: ST_ERR_FORMAT (bad JSON, missing or invalid
 * field, e.g. n_embd not divisible by n_head), ST_ERR_UNSUPPORTED (another
 * model_type). */
st_status st_model_config_parse(const char *json, size_t n_bytes, const char *source,
                                st_model_config *out);
/* Writes config.json text (st_malloc'd, NUL-terminated) with HF names. */
st_status st_model_config_to_json(const st_model_config *cfg, char **json);
/* Checks a configuration (positive sizes, divisibility, limits; gpt2:
 * n_kv_head == n_head, tied, biases or none; llama: even head size,
 * rope_theta > 0, no biases). Errors: ST_ERR_FORMAT with a message naming the HF field
 * (a configuration is outside data), ST_ERR_INVALID_ARG (cfg NULL). */
st_status st_model_config_validate(const st_model_config *cfg);

typedef struct st_model st_model;

/* Creates a model with initialized parameters (GPT-2's scheme: normal(0,
 * 0.02), residual projections scaled by 1/sqrt(2*n_layer), zero biases,
 * unit norms) from seed. Parameters require grad. Enables autograd on ctx
 * (st_autograd_enable, idempotent), so st_backward works on the loss. The
 * model borrows ctx, which must outlive it; st_model_free frees the
 * parameters and their grads (NULL: no-op).
 * Errors: ST_ERR_FORMAT (st_model_config_validate), ST_ERR_NOMEM, those of
 * st_autograd_enable. */
st_status st_model_new(st_ctx *ctx, const st_model_config *cfg, uint64_t seed, st_model **out);
void st_model_free(st_model *m);
const st_model_config *st_model_get_config(const st_model *m);

/* Parameters in a fixed order with their HF names (tied weights appear
 * once). Borrowed: valid while the model lives. */
int st_model_n_tensors(const st_model *m);
st_tensor *st_model_tensor(const st_model *m, int i, const char **name);
st_tensor *st_model_find_tensor(const st_model *m, const char *name);
int64_t st_model_n_params(const st_model *m);

/* Training mode turns dropout on. Default: off (eval). Each forward pass in
 * training mode draws fresh masks from (dropout_seed, pass count, site);
 * calling this resets the pass count, so a seed replays the same masks. */
void st_model_set_training(st_model *m, bool on, uint64_t dropout_seed);

/* ids [B, T] i32 (T <= n_ctx) -> logits [B, T, V] (step tensor).
 * Errors: ST_ERR_INVALID_ARG, ST_ERR_DTYPE (ids not i32), ST_ERR_SHAPE (not
 * 2-D, T > n_ctx), ST_ERR_BOUNDS (an id outside [0, vocab_size)), op errors. */
st_status st_model_forward(st_model *m, const st_tensor *ids, st_tensor **logits);
/* Mean cross-entropy of the next-token targets [B, T] i32 (-1 = ignore)
 * through the fused softmax cross-entropy; *logits optional (may be NULL). */
st_status st_model_loss(st_model *m, const st_tensor *ids, const st_tensor *targets,
                        st_tensor **loss, st_tensor **logits);

/* ---- optimizers ---------------------------------------------------------------------- */
typedef enum st_optim_kind { ST_OPTIM_SGD = 0, ST_OPTIM_ADAMW = 1 } st_optim_kind;

typedef struct st_optim_params {
    st_optim_kind kind;
    float lr;            /* overridden per step by st_optim_step's lr */
    float momentum;      /* SGD */
    float beta1, beta2, eps; /* AdamW */
    float weight_decay;  /* decoupled; not applied to 1-D tensors (norms, biases) */
} st_optim_params;

st_optim_params st_optim_default_params(st_optim_kind kind);

typedef struct st_optim st_optim;
/* Optimizer over the model's parameters (state allocated here, persistent,
 * zero). Borrows m, which must outlive it. Defaults: AdamW lr 1e-3, betas
 * (0.9, 0.95), eps 1e-8, weight_decay 0.1; SGD lr 1e-2, momentum 0.9, no
 * decay. SGD with momentum 0 keeps no state. Errors: ST_ERR_INVALID_ARG
 * (unknown kind, lr or weight_decay < 0, momentum or a beta outside [0, 1),
 * eps <= 0), ST_ERR_NOMEM. */
st_status st_optim_new(st_model *m, const st_optim_params *p, st_optim **out);
void st_optim_free(st_optim *o);
/* One update with learning rate lr from the parameters' grads (grad mode
 * off inside). Increments the step count (AdamW bias correction).
 * AdamW is torch.optim.AdamW's: p *= 1 - lr*wd (decay tensors only), then
 * m, v moments, p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps).
 * SGD: p *= 1 - lr*wd (decoupled, unlike torch's SGD), buf = momentum*buf
 * + g, p -= lr*buf. Decay applies to parameters with >= 2 dims (matmul
 * weights, embeddings), never to 1-D ones (norm weights, biases).
 * Parameters whose grad is NULL are skipped. Errors: ST_ERR_INVALID_ARG (lr
 * negative or not finite), ST_ERR_STATE (a parameter or grad that is not
 * contiguous f32). */
st_status st_optim_step(st_optim *o, float lr);
int64_t st_optim_get_step(const st_optim *o);
/* State tensors for checkpoints: moment tensors named "<param>.exp_avg",
 * "<param>.exp_avg_sq" (AdamW) or "<param>.momentum_buffer" (SGD).
 * Borrowed. st_optim_set_step restores the step count on resume. */
int st_optim_n_state(const st_optim *o);
st_tensor *st_optim_state(const st_optim *o, int i, const char **name);
void st_optim_set_step(st_optim *o, int64_t step);

/* Scales all grads so their global L2 norm is at most max_norm; returns the
 * norm before clipping in *norm (may be NULL). max_norm <= 0: only measures.
 * As torch.nn.utils.clip_grad_norm_: the norm is summed in double, grads
 * are scaled by max_norm / (norm + 1e-6) when that is below 1; a
 * non-finite norm leaves the grads unchanged. */
st_status st_clip_grad_norm(st_model *m, float max_norm, float *norm);
/* Zeroes every parameter's grad. */
void st_model_zero_grad(st_model *m);

/* Learning-rate schedules (nanoGPT's get_lr):
 *   step < warmup_steps:  lr_max * (step + 1) / warmup_steps
 *   !cosine:              lr_max
 *   step >= decay_steps:  lr_min
 *   otherwise:            lr_min + (lr_max - lr_min) * (1 + cos(pi * r)) / 2,
 *                         r = (step - warmup_steps) / (decay_steps - warmup_steps) */
typedef struct st_lr_schedule {
    float lr_max;
    float lr_min;        /* cosine floor */
    int64_t warmup_steps;
    int64_t decay_steps; /* cosine reaches lr_min here; constant afterwards */
    bool cosine;         /* false: constant lr_max (after warm-up) */
} st_lr_schedule;
float st_lr_at(const st_lr_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_MODEL_H */
