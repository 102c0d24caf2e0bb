/*
 * config.c — model configurations: defaults, config.json parsing (jansson),
 * validation and writing back, with Hugging Face's field names.
 *
 * Data: st_model_config (a plain struct, strata/model.h). The parser reads
 * the HF names of each architecture (table in docs/L4-models.md) and fills
 * the architecture-neutral struct; the writer does the reverse, so a
 * written config parses back to the same struct. Every fault of the input
 * is ST_ERR_FORMAT with a message "<source>: <field>: <what>", naming the
 * HF field; a valid configuration this code does not implement (another
 * model_type, another activation, rope scaling, llama biases) is
 * ST_ERR_UNSUPPORTED. st_model_config_validate checks the struct itself and
 * also returns ST_ERR_FORMAT (a configuration is outside data), naming the
 * HF field of the architecture.
 *
 * Ownership: the parser owns its jansson tree and frees it before
 * returning; st_model_config_to_json returns an st_malloc'd string. No
 * state; thread-safe.
 */
#include "model/model_impl.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Size limits: generous for real models, small enough that every product
 * of two sizes (vocab x n_embd, n_ff x n_embd) fits an int64. */
#define CFG_MAX_LAYER 1024
#define CFG_MAX_EMBD 65536
#define CFG_MAX_FF (1 << 20)
#define CFG_MAX_VOCAB (1 << 24)
#define CFG_MAX_CTX (1 << 24)

st_model_config st_model_config_default(st_arch arch) {
    st_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = arch;
    c.rope_theta = 10000.0f;
    c.dropout = 0.0f;
    if (arch == ST_ARCH_LLAMA) { /* llama2.c's stories15M shape */
        c.n_layer = 6;
        c.n_head = 6;
        c.n_kv_head = 6;
        c.n_embd = 288;
        c.n_ff = 768;
        c.vocab_size = 32000;
        c.n_ctx = 256;
        c.norm_eps = 1e-5f;
        c.tie_embeddings = true;
        c.bias = false;
    } else { /* GPT-2 small */
        c.arch = ST_ARCH_GPT2;
        c.n_layer = 12;
        c.n_head = 12;
        c.n_kv_head = 12;
        c.n_embd = 768;
        c.n_ff = 3072;
        c.vocab_size = 50257;
        c.n_ctx = 1024;
        c.norm_eps = 1e-5f;
        c.tie_embeddings = true;
        c.bias = true;
    }
    return c;
}

/* ---- validation ------------------------------------------------------------------------ */

/* The HF field name of each struct member, per architecture. */
enum { F_LAYER, F_HEAD, F_KV, F_EMBD, F_FF, F_VOCAB, F_CTX, F_EPS, F_THETA, F_DROP, F_TIE, F_BIAS };
static const char *field(st_arch arch, int f) {
    static const char *gpt2[] = {"n_layer",
                                 "n_head",
                                 "n_head",
                                 "n_embd",
                                 "n_inner",
                                 "vocab_size",
                                 "n_positions",
                                 "layer_norm_epsilon",
                                 "rope_theta",
                                 "resid_pdrop",
                                 "tie_word_embeddings",
                                 "bias"};
    static const char *llama[] = {
        "num_hidden_layers", "num_attention_heads", "num_key_value_heads",     "hidden_size",
        "intermediate_size", "vocab_size",          "max_position_embeddings", "rms_norm_eps",
        "rope_theta",        "attention_dropout",   "tie_word_embeddings",     "attention_bias"};
    return arch == ST_ARCH_LLAMA ? llama[f] : gpt2[f];
}

static st_status check_range(const st_model_config *c, int f, int v, int lo, int hi) {
    if (v < lo || v > hi)
        return st__fail(ST_ERR_FORMAT, "model config: %s: %d is outside [%d, %d]",
                        field(c->arch, f), v, lo, hi);
    return ST_OK;
}

st_status st_model_config_validate(const st_model_config *c) {
    if (!c) return st__fail(ST_ERR_INVALID_ARG, "st_model_config_validate: cfg is NULL");
    if (c->arch != ST_ARCH_GPT2 && c->arch != ST_ARCH_LLAMA)
        return st__fail(ST_ERR_FORMAT, "model config: model_type: unknown architecture %d",
                        (int)c->arch);
    ST_TRY(check_range(c, F_LAYER, c->n_layer, 1, CFG_MAX_LAYER));
    ST_TRY(check_range(c, F_EMBD, c->n_embd, 1, CFG_MAX_EMBD));
    ST_TRY(check_range(c, F_HEAD, c->n_head, 1, c->n_embd));
    ST_TRY(check_range(c, F_KV, c->n_kv_head, 1, c->n_head));
    ST_TRY(check_range(c, F_FF, c->n_ff, 1, CFG_MAX_FF));
    ST_TRY(check_range(c, F_VOCAB, c->vocab_size, 1, CFG_MAX_VOCAB));
    ST_TRY(check_range(c, F_CTX, c->n_ctx, 1, CFG_MAX_CTX));
    const char *a = field(c->arch, F_EMBD);
    if (c->n_embd % c->n_head != 0)
        return st__fail(ST_ERR_FORMAT, "model config: %s: %d is not divisible by %s %d", a,
                        c->n_embd, field(c->arch, F_HEAD), c->n_head);
    if (c->n_head % c->n_kv_head != 0)
        return st__fail(ST_ERR_FORMAT, "model config: %s: %s %d is not a multiple of it (%d)",
                        field(c->arch, F_KV), field(c->arch, F_HEAD), c->n_head, c->n_kv_head);
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps) || c->norm_eps > 1.0f)
        return st__fail(ST_ERR_FORMAT, "model config: %s: %g is not in (0, 1]",
                        field(c->arch, F_EPS), (double)c->norm_eps);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return st__fail(ST_ERR_FORMAT, "model config: %s: %g is not in [0, 1)",
                        field(c->arch, F_DROP), (double)c->dropout);
    if (c->arch == ST_ARCH_GPT2) {
        if (c->n_kv_head != c->n_head)
            return st__fail(ST_ERR_FORMAT,
                            "model config: n_head: gpt2 has no grouped-query attention "
                            "(n_kv_head %d != n_head %d)",
                            c->n_kv_head, c->n_head);
        if (!c->tie_embeddings)
            return st__fail(ST_ERR_FORMAT,
                            "model config: tie_word_embeddings: gpt2's lm head is always tied");
    } else {
        if ((c->n_embd / c->n_head) % 2 != 0)
            return st__fail(ST_ERR_FORMAT,
                            "model config: hidden_size: the head size %d (hidden_size / "
                            "num_attention_heads) must be even for rotary embeddings",
                            c->n_embd / c->n_head);
        if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
            return st__fail(ST_ERR_FORMAT, "model config: rope_theta: %g is not positive",
                            (double)c->rope_theta);
        if (c->bias)
            return st__fail(ST_ERR_FORMAT,
                            "model config: attention_bias: llama is implemented without biases");
    }
    return ST_OK;
}

/* ---- parsing ---------------------------------------------------------------------------- */

typedef struct parser {
    json_t *root;
    const char *src;
} parser;

/* The value of key, or NULL when absent or null. */
static json_t *get(const parser *p, const char *key) {
    json_t *v = json_object_get(p->root, key);
    return v && !json_is_null(v) ? v : NULL;
}

static st_status get_int(const parser *p, const char *key, bool required, int def, int *out) {
    json_t *v = get(p, key);
    if (!v) {
        if (required)
            return st__fail(ST_ERR_FORMAT, "%s: %s: missing (a positive integer is required)",
                            p->src, key);
        *out = def;
        return ST_OK;
    }
    if (!json_is_integer(v)) return st__fail(ST_ERR_FORMAT, "%s: %s: not an integer", p->src, key);
    json_int_t i = json_integer_value(v);
    if (i < 1 || i > (json_int_t)1 << 30)
        return st__fail(ST_ERR_FORMAT, "%s: %s: %lld is not a positive integer below 2^30", p->src,
                        key, (long long)i);
    *out = (int)i;
    return ST_OK;
}

static st_status get_float(const parser *p, const char *key, float def, float *out) {
    json_t *v = get(p, key);
    if (!v) {
        *out = def;
        return ST_OK;
    }
    if (!json_is_number(v)) return st__fail(ST_ERR_FORMAT, "%s: %s: not a number", p->src, key);
    double d = json_number_value(v);
    if (!isfinite(d) || fabs(d) > 3.0e38)
        return st__fail(ST_ERR_FORMAT, "%s: %s: %g does not fit a float", p->src, key, d);
    *out = (float)d;
    return ST_OK;
}

static st_status get_bool(const parser *p, const char *key, bool def, bool *out) {
    json_t *v = get(p, key);
    if (!v) {
        *out = def;
        return ST_OK;
    }
    if (!json_is_boolean(v))
        return st__fail(ST_ERR_FORMAT, "%s: %s: not true or false", p->src, key);
    *out = json_is_true(v);
    return ST_OK;
}

/* A string field that, when present, must be one of the accepted values
 * (ST_ERR_UNSUPPORTED otherwise). */
static st_status expect_string(const parser *p, const char *key, const char *const *ok, int n) {
    json_t *v = get(p, key);
    if (!v) return ST_OK;
    if (!json_is_string(v)) return st__fail(ST_ERR_FORMAT, "%s: %s: not a string", p->src, key);
    for (int i = 0; i < n; i++)
        if (!strcmp(json_string_value(v), ok[i])) return ST_OK;
    return st__fail(ST_ERR_UNSUPPORTED, "%s: %s: \"%s\" is not implemented (expected \"%s\")",
                    p->src, key, json_string_value(v), ok[0]);
}

/* A dropout probability: a number in [0, 1). */
static st_status get_prob(const parser *p, const char *key, float def, float *out) {
    ST_TRY(get_float(p, key, def, out));
    if (!(*out >= 0.0f && *out < 1.0f))
        return st__fail(ST_ERR_FORMAT, "%s: %s: %g is not in [0, 1)", p->src, key, (double)*out);
    return ST_OK;
}

static st_status parse_gpt2(const parser *p, st_model_config *c) {
    static const char *const acts[] = {"gelu_new", "gelu_pytorch_tanh"};
    *c = st_model_config_default(ST_ARCH_GPT2);
    ST_TRY(get_int(p, "n_layer", true, 0, &c->n_layer));
    ST_TRY(get_int(p, "n_head", true, 0, &c->n_head));
    ST_TRY(get_int(p, "n_embd", true, 0, &c->n_embd));
    ST_TRY(get_int(p, "vocab_size", true, 0, &c->vocab_size));
    if (get(p, "n_positions") || !get(p, "n_ctx"))
        ST_TRY(get_int(p, "n_positions", true, 0, &c->n_ctx));
    else
        ST_TRY(get_int(p, "n_ctx", true, 0, &c->n_ctx));
    c->n_kv_head = c->n_head;
    ST_TRY(get_int(p, "n_inner", false, 4 * c->n_embd, &c->n_ff));
    ST_TRY(get_float(p, "layer_norm_epsilon", 1e-5f, &c->norm_eps));
    float embd = 0.0f, attn = 0.0f;
    ST_TRY(get_prob(p, "resid_pdrop", 0.0f, &c->dropout));
    ST_TRY(get_prob(p, "embd_pdrop", c->dropout, &embd));
    ST_TRY(get_prob(p, "attn_pdrop", c->dropout, &attn));
    ST_TRY(get_prob(p, "dropout", c->dropout, &c->dropout)); /* Strata's own key wins */
    ST_TRY(expect_string(p, "activation_function", acts, 2));
    ST_TRY(get_bool(p, "tie_word_embeddings", true, &c->tie_embeddings));
    if (!c->tie_embeddings)
        return st__fail(ST_ERR_UNSUPPORTED,
                        "%s: tie_word_embeddings: false is not implemented for gpt2", p->src);
    /* nanoGPT's GPTConfig.bias (false: Linear and LayerNorm without biases);
     * Hugging Face's GPT-2 has no such key and always has biases. */
    ST_TRY(get_bool(p, "bias", true, &c->bias));
    return ST_OK;
}

static st_status parse_llama(const parser *p, st_model_config *c) {
    static const char *const acts[] = {"silu"};
    *c = st_model_config_default(ST_ARCH_LLAMA);
    ST_TRY(get_int(p, "hidden_size", true, 0, &c->n_embd));
    ST_TRY(get_int(p, "num_hidden_layers", true, 0, &c->n_layer));
    ST_TRY(get_int(p, "num_attention_heads", true, 0, &c->n_head));
    ST_TRY(get_int(p, "num_key_value_heads", false, c->n_head, &c->n_kv_head));
    ST_TRY(get_int(p, "intermediate_size", true, 0, &c->n_ff));
    ST_TRY(get_int(p, "vocab_size", true, 0, &c->vocab_size));
    ST_TRY(get_int(p, "max_position_embeddings", true, 0, &c->n_ctx));
    ST_TRY(get_float(p, "rms_norm_eps", 1e-6f, &c->norm_eps));
    ST_TRY(get_float(p, "rope_theta", 10000.0f, &c->rope_theta));
    ST_TRY(get_bool(p, "tie_word_embeddings", false, &c->tie_embeddings));
    ST_TRY(get_prob(p, "attention_dropout", 0.0f, &c->dropout));
    ST_TRY(get_prob(p, "dropout", c->dropout, &c->dropout));
    ST_TRY(expect_string(p, "hidden_act", acts, 1));
    bool ab = false, mb = false;
    ST_TRY(get_bool(p, "attention_bias", false, &ab));
    ST_TRY(get_bool(p, "mlp_bias", false, &mb));
    if (ab || mb)
        return st__fail(ST_ERR_UNSUPPORTED, "%s: %s: llama biases are not implemented", p->src,
                        ab ? "attention_bias" : "mlp_bias");
    c->bias = false;
    if (get(p, "rope_scaling"))
        return st__fail(ST_ERR_UNSUPPORTED, "%s: rope_scaling: not implemented (must be null)",
                        p->src);
    json_t *hd = get(p, "head_dim");
    if (hd && (!json_is_integer(hd) || c->n_embd % c->n_head != 0 ||
               json_integer_value(hd) != c->n_embd / c->n_head))
        return st__fail(ST_ERR_UNSUPPORTED,
                        "%s: head_dim: only hidden_size / num_attention_heads is implemented",
                        p->src);
    return ST_OK;
}

st_status st_model_config_parse(const char *json, size_t n_bytes, const char *source,
                                st_model_config *out) {
    if (!source) source = "config.json";
    if (!json || !out)
        return st__fail(ST_ERR_INVALID_ARG, "st_model_config_parse: json or out is NULL");
    json_error_t err;
    json_t *root = json_loadb(json, n_bytes, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return st__fail(ST_ERR_FORMAT, "%s: line %d, column %d: %s", source, err.line, err.column,
                        err.text);
    parser p = {root, source};
    st_model_config c;
    st_status s = ST_OK;
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_object(root)) {
        s = st__fail(ST_ERR_FORMAT, "%s: not a JSON object", source);
    } else if (!mt) {
        s = st__fail(ST_ERR_FORMAT, "%s: model_type: missing (\"gpt2\" or \"llama\")", source);
    } else if (!json_is_string(mt)) {
        s = st__fail(ST_ERR_FORMAT, "%s: model_type: not a string", source);
    } else if (!strcmp(json_string_value(mt), "gpt2")) {
        s = parse_gpt2(&p, &c);
    } else if (!strcmp(json_string_value(mt), "llama")) {
        s = parse_llama(&p, &c);
    } else {
        s = st__fail(ST_ERR_UNSUPPORTED, "%s: model_type: \"%s\" is not implemented (gpt2, llama)",
                     source, json_string_value(mt));
    }
    json_decref(root);
    if (s != ST_OK) return s;
    s = st_model_config_validate(&c);
    if (s != ST_OK) { /* put the source in place of validate's "model config" */
        char msg[512];
        const char *m = st_last_error();
        if (!strncmp(m, "model config: ", 14)) m += 14;
        snprintf(msg, sizeof msg, "%s", m);
        return st__fail(s, "%s: %s", source, msg);
    }
    *out = c;
    return ST_OK;
}

/* ---- writing ----------------------------------------------------------------------------- */

/* The shortest decimal that reads back as f (so 1e-5f is written 1e-05). */
static json_t *real_of(float f) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}

static int set_new(json_t *o, const char *k, json_t *v) {
    return json_object_set_new(o, k, v);
}

st_status st_model_config_to_json(const st_model_config *cfg, char **json) {
    if (!cfg || !json)
        return st__fail(ST_ERR_INVALID_ARG, "st_model_config_to_json: cfg or json is NULL");
    *json = NULL;
    ST_TRY(st_model_config_validate(cfg));
    json_t *o = json_object();
    if (!o) return st__fail(ST_ERR_NOMEM, "st_model_config_to_json: out of memory");
    int e = 0;
    if (cfg->arch == ST_ARCH_GPT2) {
        json_t *arch = json_array();
        e |= json_array_append_new(arch, json_string("GPT2LMHeadModel"));
        e |= set_new(o, "architectures", arch);
        e |= set_new(o, "model_type", json_string("gpt2"));
        e |= set_new(o, "n_layer", json_integer(cfg->n_layer));
        e |= set_new(o, "n_head", json_integer(cfg->n_head));
        e |= set_new(o, "n_embd", json_integer(cfg->n_embd));
        e |= set_new(o, "n_inner", json_integer(cfg->n_ff));
        e |= set_new(o, "vocab_size", json_integer(cfg->vocab_size));
        e |= set_new(o, "n_positions", json_integer(cfg->n_ctx));
        e |= set_new(o, "n_ctx", json_integer(cfg->n_ctx));
        e |= set_new(o, "layer_norm_epsilon", real_of(cfg->norm_eps));
        e |= set_new(o, "activation_function", json_string("gelu_new"));
        e |= set_new(o, "resid_pdrop", real_of(cfg->dropout));
        e |= set_new(o, "embd_pdrop", real_of(cfg->dropout));
        e |= set_new(o, "attn_pdrop", real_of(cfg->dropout));
        e |= set_new(o, "tie_word_embeddings", json_true());
        if (!cfg->bias) e |= set_new(o, "bias", json_false()); /* nanoGPT's key */
    } else {
        json_t *arch = json_array();
        e |= json_array_append_new(arch, json_string("LlamaForCausalLM"));
        e |= set_new(o, "architectures", arch);
        e |= set_new(o, "model_type", json_string("llama"));
        e |= set_new(o, "hidden_size", json_integer(cfg->n_embd));
        e |= set_new(o, "num_hidden_layers", json_integer(cfg->n_layer));
        e |= set_new(o, "num_attention_heads", json_integer(cfg->n_head));
        e |= set_new(o, "num_key_value_heads", json_integer(cfg->n_kv_head));
        e |= set_new(o, "intermediate_size", json_integer(cfg->n_ff));
        e |= set_new(o, "vocab_size", json_integer(cfg->vocab_size));
        e |= set_new(o, "max_position_embeddings", json_integer(cfg->n_ctx));
        e |= set_new(o, "rms_norm_eps", real_of(cfg->norm_eps));
        e |= set_new(o, "rope_theta", real_of(cfg->rope_theta));
        e |= set_new(o, "hidden_act", json_string("silu"));
        e |= set_new(o, "attention_bias", json_false());
        e |= set_new(o, "attention_dropout", real_of(cfg->dropout));
        e |= set_new(o, "tie_word_embeddings", json_boolean(cfg->tie_embeddings));
    }
    e |= set_new(o, "torch_dtype", json_string("float32"));
    char *text =
        e ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!text) return st__fail(ST_ERR_NOMEM, "st_model_config_to_json: out of memory");
    size_t n = strlen(text);
    *json = st_malloc(n + 2);
    if (!*json) {
        free(text);
        return st__fail(ST_ERR_NOMEM, "st_model_config_to_json: out of memory");
    }
    memcpy(*json, text, n);
    (*json)[n] = '\n';
    (*json)[n + 1] = '\0';
    free(text); /* jansson's malloc */
    return ST_OK;
}
