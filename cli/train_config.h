/*
 * train_config.h — the training configurations of `strata train` and
 * `strata bench train`: the named ones built in (nanoGPT's Shakespeare
 * configurations) and the JSON file form with the same keys
 * (docs/training.md lists them).
 */
#ifndef STRATA_CLI_TRAIN_CONFIG_H
#define STRATA_CLI_TRAIN_CONFIG_H

#include "strata/model.h"

typedef struct train_config {
    char name[64];
    st_arch arch;
    int n_layer, n_head, n_kv_head; /* n_kv_head 0: = n_head */
    int n_embd, n_ff;               /* n_ff 0: 4*n_embd (gpt2), ~8/3*n_embd rounded to 8 (llama) */
    int block_size, batch_size;
    float dropout;
    bool bias, tie_embeddings;
    float rope_theta;
    double learning_rate, min_lr;
    int64_t warmup_iters, lr_decay_iters, max_iters;
    bool decay_lr;
    double beta1, beta2, weight_decay, grad_clip;
    int64_t eval_interval, eval_iters;
    double train_frac;
    char tokenizer[256]; /* "char" (built from the data) or a tokenizer name/path */
    int global_batch;    /* rows per optimizer step over all ranks and micro-batches
                            (0: batch_size x ranks, no accumulation); batch_size is per
                            rank and gradient accumulation makes up the rest */
} train_config;

/* The names of the built-in configurations, NULL-terminated. */
extern const char *const train_config_names[];

/* Fills *out with a built-in configuration; false for an unknown name. */
bool train_config_named(const char *name, train_config *out);

/* Parses a JSON object of configuration keys. The key "base" names a
 * built-in configuration to start from (default: shakespeare-char-baby);
 * the other keys override it. Unknown keys and wrong types are
 * ST_ERR_FORMAT naming source and the key. */
st_status train_config_parse_json(const char *json, size_t n, const char *source,
                                  train_config *out);

/* NAME or a path to a JSON file. Errors: ST_ERR_INVALID_ARG (neither a
 * name nor a readable file; the message lists the names), parse errors. */
st_status train_config_resolve(const char *name_or_path, train_config *out);

/* The configuration as one JSON object (st_malloc'd text). */
st_status train_config_to_json(const train_config *c, char **json);

/* Checks ranges (positive sizes, divisibility, rates). */
st_status train_config_validate(const train_config *c);

/* The model configuration for a vocabulary of vocab_size tokens. */
st_model_config train_config_model(const train_config *c, int vocab_size);

#endif
