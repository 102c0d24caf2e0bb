/*
 * train_config.c — built-in training configurations and their JSON form.
 *
 * One table (k_keys) describes every key: its JSON name, its type and where
 * it lives in train_config, so parsing, writing and the documentation
 * (docs/training.md) agree. The built-in configurations copy nanoGPT's
 * config/train_shakespeare_char.py and the CPU command of its README
 * ("baby": 4 layers, 4 heads, 128 wide, block 64, batch 12, 2000 iters,
 * eval_iters 20). global_batch (rows per optimizer step over all ranks and
 * micro-batches; 0: batch_size x ranks) is Strata's own key for data-
 * parallel training (docs/L7-distributed.md). Not thread-safe (pure functions over caller structs).
 */
#include "train_config.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/data.h"

typedef enum { K_INT, K_I64, K_FLOAT, K_DOUBLE, K_BOOL, K_STR, K_ARCH } key_type;

static const struct {
    const char *name;
    key_type type;
    size_t off;
} k_keys[] = {
#define K(n, t) {#n, t, offsetof(train_config, n)}
    K(arch, K_ARCH),           K(n_layer, K_INT),          K(n_head, K_INT),
    K(n_kv_head, K_INT),       K(n_embd, K_INT),           K(n_ff, K_INT),
    K(block_size, K_INT),      K(batch_size, K_INT),       K(dropout, K_FLOAT),
    K(bias, K_BOOL),           K(tie_embeddings, K_BOOL),  K(rope_theta, K_FLOAT),
    K(learning_rate, K_DOUBLE), K(min_lr, K_DOUBLE),       K(warmup_iters, K_I64),
    K(lr_decay_iters, K_I64),  K(max_iters, K_I64),        K(decay_lr, K_BOOL),
    K(beta1, K_DOUBLE),        K(beta2, K_DOUBLE),         K(weight_decay, K_DOUBLE),
    K(grad_clip, K_DOUBLE),    K(eval_interval, K_I64),    K(eval_iters, K_I64),
    K(train_frac, K_DOUBLE),   K(tokenizer, K_STR),        K(global_batch, K_INT),
#undef K
};
#define N_KEYS (sizeof k_keys / sizeof k_keys[0])

const char *const train_config_names[] = {"shakespeare-char-baby", "shakespeare-char",
                                          "shakespeare-char-llama-baby", NULL};

/* nanoGPT's train_shakespeare_char.py with the README's CPU overrides. */
static train_config baby(void) {
    train_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "shakespeare-char-baby");
    c.arch = ST_ARCH_GPT2;
    c.n_layer = 4;
    c.n_head = 4;
    c.n_embd = 128;
    c.block_size = 64;
    c.batch_size = 12;
    c.dropout = 0.0f;
    c.bias = false; /* nanoGPT's shakespeare_char: Linear and LayerNorm without biases */
    c.tie_embeddings = true;
    c.rope_theta = 10000.0f;
    c.learning_rate = 1e-3;
    c.min_lr = 1e-4;
    c.warmup_iters = 100;
    c.lr_decay_iters = 2000;
    c.max_iters = 2000;
    c.decay_lr = true;
    c.beta1 = 0.9;
    c.beta2 = 0.99;
    c.weight_decay = 0.1;
    c.grad_clip = 1.0;
    c.eval_interval = 250;
    c.eval_iters = 20;
    c.train_frac = 0.9;
    snprintf(c.tokenizer, sizeof c.tokenizer, "char");
    return c;
}

bool train_config_named(const char *name, train_config *out) {
    if (!name) return false;
    train_config c = baby();
    if (strcmp(name, "shakespeare-char-baby") == 0) {
        /* as is */
    } else if (strcmp(name, "shakespeare-char") == 0) {
        c.n_layer = 6;
        c.n_head = 6;
        c.n_embd = 384;
        c.block_size = 256;
        c.batch_size = 64;
        c.dropout = 0.2f;
        c.max_iters = 5000;
        c.lr_decay_iters = 5000;
        c.eval_iters = 200;
    } else if (strcmp(name, "shakespeare-char-llama-baby") == 0) {
        c.arch = ST_ARCH_LLAMA;
        c.n_kv_head = 4;
        c.n_ff = 344; /* 8/3 * 128 rounded up to a multiple of 8 */
        c.bias = false;
        c.tie_embeddings = false;
    } else {
        return false;
    }
    snprintf(c.name, sizeof c.name, "%s", name);
    *out = c;
    return true;
}

st_status train_config_validate(const train_config *c) {
#define NEED(cond, ...)                                                                    \
    do {                                                                                   \
        if (!(cond)) return st__fail(ST_ERR_INVALID_ARG, __VA_ARGS__);                     \
    } while (0)
    NEED(c->n_layer >= 1 && c->n_head >= 1 && c->n_embd >= 1, "config %s: n_layer, n_head and "
         "n_embd must be >= 1", c->name);
    NEED(c->n_embd % c->n_head == 0, "config %s: n_embd %d is not divisible by n_head %d",
         c->name, c->n_embd, c->n_head);
    NEED(c->n_kv_head >= 0 && (c->n_kv_head == 0 || c->n_head % c->n_kv_head == 0),
         "config %s: n_head %d is not a multiple of n_kv_head %d", c->name, c->n_head,
         c->n_kv_head);
    NEED(c->n_ff >= 0, "config %s: n_ff %d < 0", c->name, c->n_ff);
    NEED(c->block_size >= 1 && c->batch_size >= 1, "config %s: block_size and batch_size must "
         "be >= 1", c->name);
    NEED(c->dropout >= 0.0f && c->dropout < 1.0f, "config %s: dropout %g outside [0, 1)",
         c->name, (double)c->dropout);
    NEED(c->learning_rate > 0 && c->min_lr >= 0, "config %s: learning_rate must be > 0 and "
         "min_lr >= 0", c->name);
    NEED(c->warmup_iters >= 0 && c->max_iters >= 0 && c->lr_decay_iters >= 0,
         "config %s: iteration counts must be >= 0", c->name);
    NEED(!c->decay_lr || c->lr_decay_iters > c->warmup_iters,
         "config %s: lr_decay_iters %lld must exceed warmup_iters %lld", c->name,
         (long long)c->lr_decay_iters, (long long)c->warmup_iters);
    NEED(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1,
         "config %s: beta1 and beta2 must be in [0, 1)", c->name);
    NEED(c->weight_decay >= 0 && c->grad_clip >= 0, "config %s: weight_decay and grad_clip "
         "must be >= 0", c->name);
    NEED(c->eval_interval >= 1 && c->eval_iters >= 1, "config %s: eval_interval and eval_iters "
         "must be >= 1", c->name);
    NEED(c->train_frac > 0 && c->train_frac < 1, "config %s: train_frac %g outside (0, 1)",
         c->name, c->train_frac);
    NEED(c->global_batch >= 0 && c->global_batch % c->batch_size == 0,
         "config %s: global_batch %d is not a multiple of batch_size %d (0: batch_size x ranks)",
         c->name, c->global_batch, c->batch_size);
#undef NEED
    return ST_OK;
}

st_status train_config_parse_json(const char *json, size_t n, const char *source,
                                  train_config *out) {
    json_error_t jerr;
    json_t *root = json_loadb(json, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return st__fail(ST_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", source, jerr.text,
                        jerr.line);
    st_status s = ST_OK;
    train_config c;
    if (!json_is_object(root)) {
        s = st__fail(ST_ERR_FORMAT, "%s: not a JSON object", source);
        goto done;
    }
    json_t *base = json_object_get(root, "base");
    const char *bname = json_is_string(base) ? json_string_value(base) : "shakespeare-char-baby";
    if (base && !json_is_string(base)) {
        s = st__fail(ST_ERR_FORMAT, "%s: \"base\" must be a configuration name", source);
        goto done;
    }
    if (!train_config_named(bname, &c)) {
        s = st__fail(ST_ERR_FORMAT, "%s: unknown base configuration \"%s\"", source, bname);
        goto done;
    }
    json_t *nm = json_object_get(root, "name");
    if (json_is_string(nm)) snprintf(c.name, sizeof c.name, "%s", json_string_value(nm));
    else snprintf(c.name, sizeof c.name, "%s", source);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "base") == 0 || strcmp(key, "name") == 0) continue;
        size_t k = 0;
        while (k < N_KEYS && strcmp(k_keys[k].name, key) != 0) k++;
        if (k == N_KEYS) {
            s = st__fail(ST_ERR_FORMAT, "%s: unknown key \"%s\" (docs/training.md lists them)",
                         source, key);
            goto done;
        }
        char *p = (char *)&c + k_keys[k].off;
        bool ok = true;
        switch (k_keys[k].type) {
        case K_INT:
            ok = json_is_integer(v) && json_integer_value(v) >= -1000000000 &&
                 json_integer_value(v) <= 1000000000;
            if (ok) *(int *)p = (int)json_integer_value(v);
            break;
        case K_I64:
            ok = json_is_integer(v);
            if (ok) *(int64_t *)p = (int64_t)json_integer_value(v);
            break;
        case K_FLOAT:
            ok = json_is_number(v);
            if (ok) *(float *)p = (float)json_number_value(v);
            break;
        case K_DOUBLE:
            ok = json_is_number(v);
            if (ok) *(double *)p = json_number_value(v);
            break;
        case K_BOOL:
            ok = json_is_boolean(v);
            if (ok) *(bool *)p = json_is_true(v);
            break;
        case K_STR:
            ok = json_is_string(v) && strlen(json_string_value(v)) < sizeof c.tokenizer;
            if (ok) snprintf(p, sizeof c.tokenizer, "%s", json_string_value(v));
            break;
        case K_ARCH:
            ok = json_is_string(v) && (strcmp(json_string_value(v), "gpt2") == 0 ||
                                       strcmp(json_string_value(v), "llama") == 0);
            if (ok) *(st_arch *)p = strcmp(json_string_value(v), "llama") == 0 ? ST_ARCH_LLAMA
                                                                              : ST_ARCH_GPT2;
            break;
        }
        if (!ok) {
            s = st__fail(ST_ERR_FORMAT, "%s: key \"%s\" has the wrong type or range", source, key);
            goto done;
        }
    }
    if (c.arch == ST_ARCH_GPT2) c.tie_embeddings = true;
    if (c.arch == ST_ARCH_LLAMA && !json_object_get(root, "bias")) c.bias = false;
    s = train_config_validate(&c);
    if (s == ST_OK) *out = c;
done:
    json_decref(root);
    return s;
}

st_status train_config_resolve(const char *name_or_path, train_config *out) {
    if (train_config_named(name_or_path, out)) return ST_OK;
    char *txt = NULL;
    size_t n = 0;
    if (st_text_read_file(name_or_path, 1 << 20, &txt, &n) != ST_OK) {
        char names[256] = "";
        for (int i = 0; train_config_names[i]; i++) {
            strcat(names, i ? ", " : "");
            strcat(names, train_config_names[i]);
        }
        return st__fail(ST_ERR_INVALID_ARG,
                        "unknown configuration \"%s\": not a built-in name (%s) nor a readable "
                        "JSON file",
                        name_or_path, names);
    }
    st_status s = train_config_parse_json(txt, n, name_or_path, out);
    st_free(txt);
    return s;
}

st_status train_config_to_json(const train_config *c, char **json) {
    json_t *root = json_object();
    json_object_set_new(root, "name", json_string(c->name));
    for (size_t k = 0; k < N_KEYS; k++) {
        const char *p = (const char *)c + k_keys[k].off;
        json_t *v = NULL;
        switch (k_keys[k].type) {
        case K_INT: v = json_integer(*(const int *)p); break;
        case K_I64: v = json_integer((json_int_t) * (const int64_t *)p); break;
        case K_FLOAT: v = json_real((double)*(const float *)p); break;
        case K_DOUBLE: v = json_real(*(const double *)p); break;
        case K_BOOL: v = json_boolean(*(const bool *)p); break;
        case K_STR: v = json_string(p); break;
        case K_ARCH: v = json_string(*(const st_arch *)p == ST_ARCH_LLAMA ? "llama" : "gpt2"); break;
        }
        json_object_set_new(root, k_keys[k].name, v);
    }
    char *txt = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    *json = txt ? st_strdup(txt) : NULL;
    free(txt);
    if (!*json) return st__fail(ST_ERR_NOMEM, "train config: no memory");
    return ST_OK;
}

st_model_config train_config_model(const train_config *c, int vocab_size) {
    st_model_config m = st_model_config_default(c->arch);
    m.n_layer = c->n_layer;
    m.n_head = c->n_head;
    m.n_kv_head = c->n_kv_head > 0 ? c->n_kv_head : c->n_head;
    m.n_embd = c->n_embd;
    if (c->n_ff > 0) m.n_ff = c->n_ff;
    else if (c->arch == ST_ARCH_GPT2) m.n_ff = 4 * c->n_embd;
    else m.n_ff = (8 * c->n_embd / 3 + 7) / 8 * 8;
    m.vocab_size = vocab_size;
    m.n_ctx = c->block_size;
    m.dropout = c->dropout;
    m.bias = c->bias;
    m.tie_embeddings = c->arch == ST_ARCH_GPT2 ? true : c->tie_embeddings;
    if (c->arch == ST_ARCH_LLAMA) m.rope_theta = c->rope_theta;
    return m;
}
