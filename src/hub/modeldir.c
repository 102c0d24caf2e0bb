/*
 * modeldir.c — the native model directory and the training state beside it.
 *
 * A model directory holds config.json (Hugging Face names, written by
 * st_model_config_to_json), model.safetensors (every parameter under its HF
 * name, f32), tokenizer.json, generation_config.json and README.md (a model
 * card with YAML front matter). A new directory is assembled under
 * "<dir>.tmp.<pid>" and renamed into place, so it appears complete or not
 * at all; over an existing directory (a training checkpoint replacing the
 * previous one; the directory also holds metrics.jsonl and the train state)
 * each file is replaced atomically on its own (fileio.c).
 *
 * Training state: train_state.safetensors (the optimizer's moments under
 * their st_optim_state names) and train_state.json (step, seed, tokens seen,
 * time, schedule, the training configuration), written after the model and
 * in that order; train_state.json is the commit record. Every file carries
 * the step (safetensors metadata "strata.step"), so a load can tell a torn
 * checkpoint (a crash between the files) from a whole one.
 *
 * Ownership: save borrows everything; load returns a new model and tokenizer
 * the caller frees. Loading validates every file (sizes, JSON, tensor names
 * and shapes) and names the file and the tensor on failure. Single-threaded.
 */
#include "hub_impl.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/data.h"

#define MAX_JSON_BYTES ((size_t)16 << 20)

st_model_card st_model_card_default(void) {
    st_model_card c;
    memset(&c, 0, sizeof c);
    c.step = -1;
    c.tokens_seen = -1;
    c.train_loss = NAN;
    c.val_loss = NAN;
    return c;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = st_malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- model card text (an st_strbuf; its sticky failure is checked at the end) ---- */
#define sb_printf (void)st_strbuf_printf

/* A YAML double-quoted scalar. */
static void sb_yaml_str(st_strbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sb_printf(b, "\\%c", *s);
        else if (*s == '\n') sb_printf(b, "\\n");
        else if ((unsigned char)*s < 0x20) sb_printf(b, "\\x%02x", (unsigned char)*s);
        else sb_printf(b, "%c", *s);
    }
    sb_printf(b, "\"");
}

/* The last path component of dir ("a/b/" -> "b"), into buf. */
static const char *base_name(const char *path, char *buf, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t b = len;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(buf, n, "%.*s", (int)(len - b), path + b);
    return buf;
}

static st_status write_card(const char *path, const char *dir, const st_model *m,
                            const st_model_card *card) {
    const st_model_config *c = st_model_get_config(m);
    const char *arch = c->arch == ST_ARCH_LLAMA ? "llama" : "gpt2";
    char nbuf[256];
    const char *name = card->name ? card->name : base_name(dir, nbuf, sizeof nbuf);
    st_strbuf b = {0};
    sb_printf(&b, "---\nlibrary_name: strata\npipeline_tag: text-generation\n");
    sb_printf(&b, "tags: [strata, %s, text-generation]\nmodel_type: %s\n", arch, arch);
    sb_printf(&b,
              "architecture:\n  n_layer: %d\n  n_head: %d\n  n_kv_head: %d\n  n_embd: %d\n"
              "  n_ff: %d\n  n_ctx: %d\n  vocab_size: %d\n  dropout: %g\n  bias: %s\n",
              c->n_layer, c->n_head, c->n_kv_head, c->n_embd, c->n_ff, c->n_ctx, c->vocab_size,
              (double)c->dropout, c->bias ? "true" : "false");
    sb_printf(&b, "parameters: %lld\n", (long long)st_model_n_params(m));
    if (card->training_data) {
        sb_printf(&b, "training_data: ");
        sb_yaml_str(&b, card->training_data);
        sb_printf(&b, "\n");
    }
    sb_printf(&b, "metrics:\n");
    if (card->step >= 0) sb_printf(&b, "  step: %lld\n", (long long)card->step);
    if (card->tokens_seen >= 0) sb_printf(&b, "  tokens_seen: %lld\n", (long long)card->tokens_seen);
    if (!isnan(card->train_loss)) sb_printf(&b, "  train_loss: %.4f\n", card->train_loss);
    if (!isnan(card->val_loss)) sb_printf(&b, "  val_loss: %.4f\n", card->val_loss);
    sb_printf(&b, "---\n\n# %s\n\n", name);
    sb_printf(&b, "A %s language model with %lld parameters (%d layers, %d heads, width %d, "
                  "context %d, vocabulary %d), trained with Strata.\n\n",
              arch, (long long)st_model_n_params(m), c->n_layer, c->n_head, c->n_embd, c->n_ctx,
              c->vocab_size);
    if (card->description) sb_printf(&b, "%s\n\n", card->description);
    if (card->training_data) sb_printf(&b, "Training data: %s.\n\n", card->training_data);
    if (card->step >= 0 || !isnan(card->val_loss)) {
        sb_printf(&b, "| step | train loss | val loss |\n|---|---|---|\n| %lld | %.4f | %.4f |\n\n",
                  (long long)card->step, card->train_loss, card->val_loss);
    }
    sb_printf(&b, "Files: `config.json` (architecture), `model.safetensors` (weights, Hugging "
                  "Face tensor names), `tokenizer.json`, `generation_config.json`.\n\n"
                  "```\nstrata sample --model %s --prompt \"ROMEO:\" -n 200\n```\n",
              dir);
    if (b.failed) {
        st_strbuf_free(&b);
        return st__fail(ST_ERR_NOMEM, "%s: no memory for the model card", path);
    }
    st_status s = st_file_write_atomic(path, b.p, b.len);
    st_strbuf_free(&b);
    return s;
}

static st_status write_gen_config(const char *path, const st_model *m, const st_tokenizer *tok) {
    const st_model_config *c = st_model_get_config(m);
    int bos = tok ? st_tokenizer_bos_id(tok) : -1, eos = tok ? st_tokenizer_eos_id(tok) : -1;
    json_t *j = json_pack("{s:b, s:i, s:b, s:f, s:i}", "_from_model_config", 1, "max_length",
                          c->n_ctx, "do_sample", 1, "temperature", 0.8, "top_k", 200);
    if (!j) return st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    if (bos >= 0) json_object_set_new(j, "bos_token_id", json_integer(bos));
    if (eos >= 0) json_object_set_new(j, "eos_token_id", json_integer(eos));
    char *txt = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!txt) return st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    size_t n = strlen(txt);
    st_status s = st_file_write_atomic(path, txt, n);
    free(txt);
    return s;
}

static st_status write_weights(const char *path, const st_model *m, int64_t step) {
    int n = st_model_n_tensors(m);
    st_safetensors_entry *e = st_calloc((size_t)(n ? n : 1), sizeof *e);
    if (!e) return st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    for (int i = 0; i < n; i++) e[i].tensor = st_model_tensor(m, i, &e[i].name);
    char stepbuf[32];
    snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)step);
    const char *meta[] = {"format", "pt", "strata.step", stepbuf};
    st_status s = st_safetensors_save(path, e, n, meta, 2);
    st_free(e);
    return s;
}

/* Writes every file of a model directory into dir (which exists). */
static st_status write_files(const char *dir, const char *card_dir, const st_model *m,
                             const st_tokenizer *tok, const st_model_card *card) {
    st_status s = ST_OK;
    char *cfg_json = NULL, *p = NULL;
#define STEP(file, expr)                                                                           \
    do {                                                                                           \
        p = path_join(dir, file);                                                                  \
        if (!p) { s = st__fail(ST_ERR_NOMEM, "%s: no memory", dir); goto done; }                  \
        s = (expr);                                                                                \
        st_free(p);                                                                                \
        p = NULL;                                                                                  \
        if (s != ST_OK) goto done;                                                                 \
    } while (0)
    s = st_model_config_to_json(st_model_get_config(m), &cfg_json);
    if (s != ST_OK) goto done;
    STEP("config.json", st_file_write_atomic(p, cfg_json, strlen(cfg_json)));
    if (tok) STEP("tokenizer.json", st_tokenizer_save_json(tok, p));
    STEP("generation_config.json", write_gen_config(p, m, tok));
    STEP("model.safetensors", write_weights(p, m, card->step));
    STEP("README.md", write_card(p, card_dir, m, card));
#undef STEP
done:
    st_free(cfg_json);
    return s;
}

static void remove_tree_files(const char *dir) {
    static const char *const files[] = {"config.json", "tokenizer.json", "generation_config.json",
                                        "model.safetensors", "README.md"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = path_join(dir, files[i]);
        if (p) unlink(p);
        st_free(p);
    }
    rmdir(dir);
}

st_status st_modeldir_save(const char *dir, const st_model *m, const st_tokenizer *tok,
                           const st_model_card *card) {
    if (!dir || !*dir || !m) return st__fail(ST_ERR_INVALID_ARG, "st_modeldir_save: NULL argument");
    st_model_card def = st_model_card_default();
    if (!card) card = &def;
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return st__fail(ST_ERR_IO, "%s: exists and is not a directory", dir);
        return write_files(dir, dir, m, tok, card);
    }
    size_t n = strlen(dir) + 32, len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--; /* "out/" -> "out.tmp.PID" */
    char *tmp = st_malloc(n);
    if (!tmp) return st__fail(ST_ERR_NOMEM, "%s: no memory", dir);
    snprintf(tmp, n, "%.*s.tmp.%ld", (int)len, dir, (long)getpid());
    remove_tree_files(tmp); /* a leftover of an earlier crash of this pid */
    if (mkdir(tmp, 0755) != 0) {
        st_status s = st__fail(ST_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
        st_free(tmp);
        return s;
    }
    st_status s = write_files(tmp, dir, m, tok, card);
    if (s == ST_OK && rename(tmp, dir) != 0)
        s = st__fail(ST_ERR_IO, "%s: rename to %s failed: %s", tmp, dir, strerror(errno));
    if (s == ST_OK) s = st__fsync_parent_dir(dir);
    else remove_tree_files(tmp);
    st_free(tmp);
    return s;
}

/* ---- load ------------------------------------------------------------------------------ */

/* Tensors of Hugging Face GPT-2 files that are not parameters: the causal
 * mask buffers, and the lm head when it is tied to wte. */
static bool ignorable(const st_model_config *cfg, const char *name) {
    size_t n = strlen(name);
    if (cfg->arch != ST_ARCH_GPT2) return false;
    if (n >= 10 && strcmp(name + n - 10, ".attn.bias") == 0) return true;
    if (n >= 17 && strcmp(name + n - 17, ".attn.masked_bias") == 0) return true;
    return cfg->tie_embeddings && strcmp(name, "lm_head.weight") == 0;
}

st_status st_modeldir_load(st_ctx *ctx, const char *dir, st_model **model, st_tokenizer **tok) {
    if (model) *model = NULL;
    if (tok) *tok = NULL;
    if (!ctx || !dir || !model)
        return st__fail(ST_ERR_INVALID_ARG, "st_modeldir_load: NULL argument");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return st__fail(ST_ERR_IO, "%s: not a model directory (missing or not a directory)", dir);
    st_status s = ST_OK;
    char *cfg_path = path_join(dir, "config.json"), *w_path = path_join(dir, "model.safetensors"),
         *t_path = path_join(dir, "tokenizer.json"), *cfg_txt = NULL;
    st_safetensors *f = NULL;
    st_model *m = NULL;
    st_tokenizer *tk = NULL;
    if (!cfg_path || !w_path || !t_path) {
        s = st__fail(ST_ERR_NOMEM, "%s: no memory", dir);
        goto done;
    }
    size_t n = 0;
    s = st_text_read_file(cfg_path, MAX_JSON_BYTES, &cfg_txt, &n);
    if (s != ST_OK) goto done;
    st_model_config cfg;
    s = st_model_config_parse(cfg_txt, n, cfg_path, &cfg);
    if (s != ST_OK) goto done;
    s = st_safetensors_open(w_path, &f);
    if (s != ST_OK) goto done;
    s = st_model_new(ctx, &cfg, 0, &m);
    if (s != ST_OK) goto done;
    for (int i = 0; i < st_model_n_tensors(m); i++) {
        const char *name = NULL;
        st_tensor *t = st_model_tensor(m, i, &name);
        char alt[256];
        snprintf(alt, sizeof alt, "transformer.%s", name); /* GPT2LMHeadModel's prefix */
        s = st_safetensors_read_into(f, st_safetensors_find(f, name) < 0 &&
                                                 st_safetensors_find(f, alt) >= 0
                                             ? alt
                                             : name,
                                     t);
        if (s != ST_OK) goto done;
    }
    for (int i = 0; i < st_safetensors_n_tensors(f); i++) {
        st_safetensors_tensor t;
        s = st_safetensors_get(f, i, &t);
        if (s != ST_OK) goto done;
        const char *nm = strncmp(t.name, "transformer.", 12) == 0 ? t.name + 12 : t.name;
        if (!st_model_find_tensor(m, nm) && !ignorable(&cfg, nm)) {
            s = st__fail(ST_ERR_FORMAT,
                         "%s: tensor \"%s\" is not a parameter of the model config.json describes",
                         w_path, t.name);
            goto done;
        }
    }
    if (tok) {
        s = st_tokenizer_load(t_path, &tk);
        if (s != ST_OK) goto done;
        if (st_tokenizer_vocab_size(tk) > st_model_get_config(m)->vocab_size) {
            s = st__fail(ST_ERR_FORMAT, "%s: %d tokens, more than the model's vocab_size %d",
                         t_path, st_tokenizer_vocab_size(tk), st_model_get_config(m)->vocab_size);
            goto done;
        }
    }
done:
    if (s != ST_OK) {
        st_model_free(m);
        st_tokenizer_free(tk);
    } else {
        *model = m;
        if (tok) *tok = tk;
    }
    st_safetensors_close(f);
    st_free(cfg_txt);
    st_free(cfg_path);
    st_free(w_path);
    st_free(t_path);
    return s;
}

static int64_t step_of(const st_safetensors *f) {
    const char *v = st_safetensors_metadata(f, "strata.step");
    if (!v || !*v) return -1;
    char *end;
    long long x = strtoll(v, &end, 10);
    return *end ? -1 : (int64_t)x;
}

int64_t st_modeldir_step(const char *dir) {
    char *p = dir ? path_join(dir, "model.safetensors") : NULL;
    if (!p) return -1;
    st_safetensors *f = NULL;
    int64_t step = -1;
    if (st_safetensors_open(p, &f) == ST_OK) step = step_of(f);
    st_safetensors_close(f);
    st_free(p);
    return step;
}

/* ---- training state ------------------------------------------------------------------------ */

void st_train_state_clear(st_train_state *s) {
    if (!s) return;
    st_free(s->config_json);
    st_free(s->data_path);
    memset(s, 0, sizeof *s);
    s->data_bytes = -1;
}

st_status st_train_state_save(const char *dir, const st_optim *o, const st_train_state *s) {
    if (!dir || !o || !s) return st__fail(ST_ERR_INVALID_ARG, "st_train_state_save: NULL argument");
    char *sp = path_join(dir, "train_state.safetensors"), *jp = path_join(dir, "train_state.json");
    int n = st_optim_n_state(o);
    st_safetensors_entry *e = st_calloc((size_t)(n ? n : 1), sizeof *e);
    json_t *root = NULL;
    char *txt = NULL;
    st_status st = ST_OK;
    if (!sp || !jp || !e) {
        st = st__fail(ST_ERR_NOMEM, "%s: no memory", dir);
        goto done;
    }
    for (int i = 0; i < n; i++) e[i].tensor = st_optim_state(o, i, &e[i].name);
    char stepbuf[32];
    snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)s->step);
    const char *meta[] = {"format", "pt", "strata.step", stepbuf};
    st = st_safetensors_save(sp, e, n, meta, 2);
    if (st != ST_OK) goto done;

    char seedbuf[32];
    snprintf(seedbuf, sizeof seedbuf, "%llu", (unsigned long long)s->seed);
    root = json_pack("{s:s, s:i, s:I, s:I, s:s, s:I, s:f, s:I}", "format", "strata-train-state",
                     "version", 1, "step", (json_int_t)s->step, "optim_step",
                     (json_int_t)st_optim_get_step(o), "seed", seedbuf, "tokens_seen",
                     (json_int_t)s->tokens_seen, "elapsed_s", s->elapsed_s, "data_bytes",
                     (json_int_t)s->data_bytes);
    if (!root) {
        st = st__fail(ST_ERR_NOMEM, "%s: no memory", jp);
        goto done;
    }
    json_object_set_new(root, "data_path", s->data_path ? json_string(s->data_path) : json_null());
    json_object_set_new(root, "schedule",
                        json_pack("{s:f, s:f, s:I, s:I, s:b}", "lr_max", (double)s->schedule.lr_max,
                                  "lr_min", (double)s->schedule.lr_min, "warmup_steps",
                                  (json_int_t)s->schedule.warmup_steps, "decay_steps",
                                  (json_int_t)s->schedule.decay_steps, "cosine",
                                  (int)s->schedule.cosine));
    if (s->config_json) {
        json_error_t jerr;
        json_t *cfg = json_loads(s->config_json, 0, &jerr);
        if (!json_is_object(cfg)) {
            json_decref(cfg);
            st = st__fail(ST_ERR_INVALID_ARG, "%s: config_json is not a JSON object", jp);
            goto done;
        }
        json_object_set_new(root, "config", cfg);
    }
    txt = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!txt) {
        st = st__fail(ST_ERR_NOMEM, "%s: no memory", jp);
        goto done;
    }
    st = st_file_write_atomic(jp, txt, strlen(txt));
done:
    free(txt);
    json_decref(root);
    st_free(e);
    st_free(sp);
    st_free(jp);
    return st;
}

static bool get_i64(json_t *root, const char *key, int64_t *out) {
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v)) return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

static st_status parse_state(const char *jp, const char *txt, size_t n, st_train_state *s) {
    json_error_t jerr;
    json_t *root = json_loadb(txt, n, 0, &jerr);
    if (!root)
        return st__fail(ST_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", jp, jerr.text,
                        jerr.line);
    st_status st = ST_OK;
    json_t *fmt = json_object_get(root, "format"), *seed = json_object_get(root, "seed"),
           *sch = json_object_get(root, "schedule"), *el = json_object_get(root, "elapsed_s");
    int64_t version = 0;
    if (!json_is_object(root) || !json_is_string(fmt) ||
        strcmp(json_string_value(fmt), "strata-train-state") != 0) {
        st = st__fail(ST_ERR_FORMAT, "%s: not a Strata training state (format field)", jp);
        goto done;
    }
    if (!get_i64(root, "version", &version) || version != 1) {
        st = st__fail(ST_ERR_FORMAT,
                      "%s: training state version %lld, this Strata reads version 1: retrain or "
                      "use the Strata that wrote it",
                      jp, (long long)version);
        goto done;
    }
    char *end = NULL;
    if (!get_i64(root, "step", &s->step) || s->step < 0 ||
        !get_i64(root, "tokens_seen", &s->tokens_seen) ||
        !get_i64(root, "data_bytes", &s->data_bytes) || !json_is_string(seed) ||
        !json_is_number(el) || !json_is_object(sch)) {
        st = st__fail(ST_ERR_FORMAT, "%s: a field (step, seed, tokens_seen, data_bytes, "
                      "elapsed_s, schedule) is missing or of the wrong type", jp);
        goto done;
    }
    errno = 0;
    s->seed = strtoull(json_string_value(seed), &end, 10);
    if (*end || errno) {
        st = st__fail(ST_ERR_FORMAT, "%s: seed is not an unsigned integer", jp);
        goto done;
    }
    s->elapsed_s = json_number_value(el);
    json_t *lmax = json_object_get(sch, "lr_max"), *lmin = json_object_get(sch, "lr_min"),
           *cos = json_object_get(sch, "cosine");
    if (!json_is_number(lmax) || !json_is_number(lmin) || !json_is_boolean(cos) ||
        !get_i64(sch, "warmup_steps", &s->schedule.warmup_steps) ||
        !get_i64(sch, "decay_steps", &s->schedule.decay_steps)) {
        st = st__fail(ST_ERR_FORMAT, "%s: schedule is incomplete", jp);
        goto done;
    }
    s->schedule.lr_max = (float)json_number_value(lmax);
    s->schedule.lr_min = (float)json_number_value(lmin);
    s->schedule.cosine = json_is_true(cos);
    json_t *dp = json_object_get(root, "data_path"), *cfg = json_object_get(root, "config");
    if (json_is_string(dp)) {
        s->data_path = st_strdup(json_string_value(dp));
        if (!s->data_path) { st = st__fail(ST_ERR_NOMEM, "%s: no memory", jp); goto done; }
    }
    if (json_is_object(cfg)) {
        char *c = json_dumps(cfg, JSON_COMPACT | JSON_PRESERVE_ORDER);
        s->config_json = c ? st_strdup(c) : NULL;
        free(c);
        if (!s->config_json) { st = st__fail(ST_ERR_NOMEM, "%s: no memory", jp); goto done; }
    }
done:
    json_decref(root);
    return st;
}

st_status st_train_state_load(const char *dir, st_optim *o, st_train_state *s) {
    if (!dir || !s) return st__fail(ST_ERR_INVALID_ARG, "st_train_state_load: NULL argument");
    memset(s, 0, sizeof *s);
    s->data_bytes = -1;
    char *sp = path_join(dir, "train_state.safetensors"), *jp = path_join(dir, "train_state.json");
    char *txt = NULL;
    st_safetensors *f = NULL;
    st_status st = ST_OK;
    if (!sp || !jp) {
        st = st__fail(ST_ERR_NOMEM, "%s: no memory", dir);
        goto done;
    }
    size_t n = 0;
    st = st_text_read_file(jp, MAX_JSON_BYTES, &txt, &n);
    if (st != ST_OK) goto done;
    st = parse_state(jp, txt, n, s);
    if (st != ST_OK) goto done;
    int64_t ms = st_modeldir_step(dir);
    if (ms != s->step) {
        st = st__fail(ST_ERR_FORMAT,
                      "%s: torn checkpoint: model.safetensors is at step %lld, train_state.json "
                      "at step %lld (a crash between the files?)",
                      dir, (long long)ms, (long long)s->step);
        goto done;
    }
    if (o) {
        st = st_safetensors_open(sp, &f);
        if (st != ST_OK) goto done;
        if (step_of(f) != s->step) {
            st = st__fail(ST_ERR_FORMAT,
                          "%s: torn checkpoint: at step %lld, train_state.json at step %lld", sp,
                          (long long)step_of(f), (long long)s->step);
            goto done;
        }
        if (st_safetensors_n_tensors(f) != st_optim_n_state(o)) {
            st = st__fail(ST_ERR_FORMAT, "%s: %d optimizer tensors, the optimizer has %d", sp,
                          st_safetensors_n_tensors(f), st_optim_n_state(o));
            goto done;
        }
        for (int i = 0; i < st_optim_n_state(o); i++) {
            const char *name = NULL;
            st_tensor *t = st_optim_state(o, i, &name);
            st = st_safetensors_read_into(f, name, t);
            if (st != ST_OK) goto done;
        }
        int64_t os = 0;
        json_error_t jerr;
        json_t *root = json_loadb(txt, n, 0, &jerr);
        bool ok = root && get_i64(root, "optim_step", &os) && os >= 0;
        json_decref(root);
        if (!ok) {
            st = st__fail(ST_ERR_FORMAT, "%s: optim_step missing", jp);
            goto done;
        }
        st_optim_set_step(o, os);
    }
done:
    if (st != ST_OK) st_train_state_clear(s);
    st_safetensors_close(f);
    st_free(txt);
    st_free(sp);
    st_free(jp);
    return st;
}
