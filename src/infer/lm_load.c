/*
 * lm_load.c — st_lm_load: one entry point for every model reference the
 * engine runs (strata/infer.h).
 *
 * A reference that is not an existing path goes through the hub's registry
 * (st_registry_resolve: NAME[:tag|@rev] -> a verified snapshot). Then
 * dispatch on what the path is:
 *   directory with config.json + model.safetensors  -> st_lm_load_hf: Strata's
 *       native directories and Hugging Face ones (GPT-2 / Llama names, f32,
 *       f16 or bf16) alike, without building a training model;
 *   file starting with "GGUF"                         -> st_lm_load_gguf (mapped);
 *   any other file                                    -> a llama2.c checkpoint.
 * Then the tokenizer: tokenizer_path when given (replaces the source's),
 * and BOS/EOS ids from the tokenizer when the source did not name them.
 * Single-threaded; the context is used only for the transient training model.
 */
#include "strata/hub.h"
#include "strata/infer.h"
#include "strata/registry.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static bool is_file(const char *dir, const char *name) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p) return false;
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static st_status load_dir(const char *path, st_lm **out) {
    if (!is_file(path, "config.json") || !is_file(path, "model.safetensors"))
        return st__fail(ST_ERR_IO, "%s: a model directory needs config.json and "
                        "model.safetensors", path);
    return st_lm_load_hf(path, out);
}

static st_status load_path(const char *path, const char *tokenizer_path, st_lm **out);

st_status st_lm_load(st_ctx *ctx, const char *ref, const char *tokenizer_path, st_lm **out) {
    if (!ctx || !ref || !out) return st__fail(ST_ERR_INVALID_ARG, "st_lm_load: NULL argument");
    *out = NULL;
    /* A path as it is; anything else is a registry reference NAME[:tag|@rev]
     * whose snapshot is verified and materialized by the hub. */
    char *path = NULL;
    ST_TRY(st_registry_resolve(ref, &path));
    st_status s = load_path(path, tokenizer_path, out);
    st_free(path);
    return s;
}

static st_status load_path(const char *path, const char *tokenizer_path, st_lm **out) {
    struct stat st;
    if (stat(path, &st) != 0)
        return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    st_lm *lm = NULL;
    if (S_ISDIR(st.st_mode)) {
        ST_TRY(load_dir(path, &lm));
    } else {
        char magic[4] = {0};
        FILE *f = fopen(path, "rb");
        if (!f) return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        size_t got = fread(magic, 1, 4, f);
        fclose(f);
        if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
            ST_TRY(st_lm_load_gguf(path, &lm));
        } else {
            ST_TRY(st_lm_load_llama2c(path, &lm));
        }
    }
    if (!lm->source) lm->source = st_strdup(path);
    if (tokenizer_path) {
        st_tokenizer *tok = NULL;
        st_status s = st_tokenizer_load(tokenizer_path, &tok);
        if (s) {
            st_lm_free(lm);
            return s;
        }
        st_tokenizer_free(lm->tok);
        lm->tok = tok;
    }
    if (lm->tok) {
        int tv = st_tokenizer_vocab_size(lm->tok);
        if (tv > lm->cfg.vocab_size)
            st_log_msg(ST_LOG_WARN, "%s: the tokenizer has %d tokens, the model %d", path, tv,
                       lm->cfg.vocab_size);
        if (lm->bos_id < 0) lm->bos_id = st_tokenizer_bos_id(lm->tok);
        if (lm->eos_id < 0) lm->eos_id = st_tokenizer_eos_id(lm->tok);
    }
    *out = lm;
    return ST_OK;
}
