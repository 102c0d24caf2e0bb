/*
 * tokenizer_json.c — layer 5: Hugging Face tokenizer.json, read and written
 * (jansson does the JSON; nothing here parses text by hand).
 *
 * Read: model "BPE" in three shapes, told apart by the other sections:
 *  - byte-level BPE: a ByteLevel pre-tokenizer or decoder. The regex is
 *    GPT-2's when ByteLevel has use_regex (the default), else the pattern of
 *    a Split pre-tokenizer ({"Regex": ...}). Vocabulary strings are in GPT-2's
 *    byte alphabet; added_tokens are the special tokens.
 *  - SentencePiece (llama2.c semantics): "byte_fallback": true; "▁" in the
 *    vocabulary stands for a space. Merge order gives the priorities.
 *  - character-level: neither, and no merges; every token is one character.
 * Merges may be "a b" strings or ["a", "b"] arrays. A token produced by
 * several merges (tiktoken vocabularies written out have one merge per split)
 * gets the rank of its first merge, so ties go leftmost as in tiktoken.
 *
 * Write: the same three shapes, so loading a written file gives the same
 * encoding. For byte-level BPE every entry of the pair table is written,
 * ordered by rank. Written through a temp file, fsync and rename.
 *
 * Ownership: the jansson tree is local to each call and freed before return.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_impl.h"

#define SPM_SPACE "\xE2\x96\x81" /* U+2581 '▁' */

/* ---- reading ------------------------------------------------------------------ */
static bool has_type(json_t *node, const char *type) {
    if (!json_is_object(node)) return false;
    const char *ty = json_string_value(json_object_get(node, "type"));
    if (ty && strcmp(ty, type) == 0) return true;
    json_t *list = json_object_get(node, "pretokenizers");
    if (!list) list = json_object_get(node, "decoders");
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) if (has_type(v, type)) return true;
    return false;
}

/* The regex of the pre-tokenizer: GPT-2's for ByteLevel(use_regex), a
 * Split's pattern, or NULL (no splitting). *bad set when a Split has a
 * pattern form we do not take. */
static const char *find_regex(json_t *node, bool *bad) {
    if (!json_is_object(node)) return NULL;
    const char *ty = json_string_value(json_object_get(node, "type"));
    if (ty && strcmp(ty, "Split") == 0) {
        json_t *pat = json_object_get(node, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        if (!re) *bad = true;
        return re;
    }
    if (ty && strcmp(ty, "ByteLevel") == 0) {
        json_t *ur = json_object_get(node, "use_regex");
        return (!ur || json_is_true(ur)) ? st__re_gpt2 : NULL;
    }
    json_t *list = json_object_get(node, "pretokenizers");
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        const char *re = find_regex(v, bad);
        if (re || *bad) return re;
    }
    return NULL;
}

/* Splits merge i into (a, an, b, bn). */
static bool merge_parts(json_t *m, const char **a, size_t *an, const char **b, size_t *bn) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t n = json_string_length(m);
        const char *sp = memchr(s, ' ', n);
        if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
            return false;
        *a = s, *an = (size_t)(sp - s), *b = sp + 1, *bn = n - *an - 1;
        return true;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *an = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *bn = json_string_length(json_array_get(m, 1));
        return *an && *bn;
    }
    return false;
}

static st_status load_bytelevel(json_t *root, json_t *model, const char *name, st_tokenizer **out) {
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab))
        return st__fail(ST_ERR_FORMAT, "%s: model.vocab is not an object", name);
    if (merges && !json_is_array(merges))
        return st__fail(ST_ERR_FORMAT, "%s: model.merges is not an array", name);
    if (added && !json_is_array(added) && !json_is_null(added))
        return st__fail(ST_ERR_FORMAT, "%s: added_tokens is not an array", name);
    /* Added tokens missing from the vocabulary join a copy of it. */
    json_t *v2 = json_copy(vocab);
    if (!v2) return st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    size_t i;
    json_t *a;
    int n_added = 0;
    json_array_foreach(added, i, a) {
        json_t *id = json_object_get(a, "id");
        json_t *content = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (1 << 24) || !json_is_string(content) ||
            json_string_length(content) == 0) {
            json_decref(v2);
            return st__fail(ST_ERR_FORMAT, "%s: added_tokens[%zu] needs an id in [0, 2^24) and "
                                           "a non-empty content",
                            name, i);
        }
        char *bl = st__bytelevel_string(json_string_value(content), json_string_length(content));
        if (!bl) {
            json_decref(v2);
            return st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
        }
        json_t *have = json_object_get(v2, bl);
        if (have && json_integer_value(have) != json_integer_value(id)) {
            st_status s = st__fail(ST_ERR_FORMAT, "%s: added token \"%.40s\" has id %lld but the "
                                                  "vocabulary says %lld",
                                   name, json_string_value(content),
                                   (long long)json_integer_value(id),
                                   (long long)json_integer_value(have));
            st_free(bl);
            json_decref(v2);
            return s;
        }
        if (!have) json_object_set_new(v2, bl, json_integer(json_integer_value(id)));
        st_free(bl);
        n_added++;
    }
    st_tokenizer *t = NULL;
    st_status s = st__bpe_from_vocab_object(v2, name, -1, &t);
    json_decref(v2);
    if (s != ST_OK) return s;
    if (n_added) {
        t->special_ids = st_malloc((size_t)n_added * sizeof(int32_t));
        if (!t->special_ids) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    }
    json_array_foreach(added, i, a) {
        if (s != ST_OK) break;
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        if (t->flags[id] != TOKF_SPECIAL) {
            t->flags[id] = TOKF_SPECIAL;
            t->special_ids[t->n_special++] = id;
        }
    }
    if (s == ST_OK) {
        st__tok_sort_specials(t);
        int eot = st_tokenizer_special_id(t, "<|endoftext|>");
        t->eos_id = eot;
        if (t->n_special == 1) t->bos_id = eot;
        s = st__vmap_build(&t->vmap, t, false);
    }
    int32_t *first = NULL;
    if (s == ST_OK) {
        first = st_malloc((size_t)t->n_vocab * sizeof *first);
        if (!first) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
        else memset(first, 0xFF, (size_t)t->n_vocab * sizeof *first);
    }
    if (s == ST_OK) s = st__pairs_init(&t->pairs, json_array_size(merges) + 16);
    json_t *m;
    json_array_foreach(merges, i, m) {
        if (s != ST_OK) break;
        const char *pa, *pb;
        size_t an, bn;
        if (!merge_parts(m, &pa, &an, &pb, &bn)) {
            s = st__fail(ST_ERR_FORMAT, "%s: model.merges[%zu] is not \"a b\" or [\"a\", \"b\"]",
                         name, i);
            break;
        }
        if (i >= (size_t)INT32_MAX) break;
        s = st__bpe_add_merge(t, pa, an, pb, bn, (int32_t)i, first, name, i);
    }
    st_free(first);
    if (s == ST_OK) s = st__bpe_finish(t, name);
    bool bad = false;
    const char *re = s == ST_OK ? find_regex(json_object_get(root, "pre_tokenizer"), &bad) : NULL;
    if (s == ST_OK && bad)
        s = st__fail(ST_ERR_UNSUPPORTED, "%s: a Split pre-tokenizer without a \"Regex\" pattern",
                     name);
    if (s == ST_OK && re) s = st__bpe_compile_regex(t, re, name);
    if (s != ST_OK) {
        st_tokenizer_free(t);
        return s;
    }
    *out = t;
    return ST_OK;
}

/* Replaces every "▁" by ' ' (in place; returns the new length). */
static size_t unspm(char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(s + i, SPM_SPACE, 3) == 0) s[k++] = ' ', i += 3;
        else s[k++] = s[i++];
    }
    return k;
}

/* Checks that vocab maps n distinct ids 0..n-1; fills keys[id]. */
static st_status dense_vocab(json_t *vocab, const char *name, const char ***keys, size_t **lens,
                             int *n_out) {
    if (!json_is_object(vocab))
        return st__fail(ST_ERR_FORMAT, "%s: model.vocab is not an object", name);
    size_t n = json_object_size(vocab);
    if (n == 0 || n > (1 << 24)) return st__fail(ST_ERR_FORMAT, "%s: vocabulary of %zu tokens", name, n);
    const char **k = st_calloc(n, sizeof *k);
    size_t *l = st_calloc(n, sizeof *l);
    if (!k || !l) {
        st_free(k), st_free(l);
        return st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    }
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || (size_t)id >= n || k[id]) {
            st_free(k), st_free(l);
            return st__fail(ST_ERR_FORMAT, "%s: token \"%.40s\": ids must be 0..%zu, each once",
                            name, key, n - 1);
        }
        k[id] = key;
        l[id] = json_object_iter_key_len(json_object_key_to_iter(key));
    }
    *keys = k, *lens = l, *n_out = (int)n;
    return ST_OK;
}

static st_status load_sentencepiece(json_t *model, const char *name, st_tokenizer **out) {
    const char **keys;
    size_t *lens;
    int n;
    ST_TRY(dense_vocab(json_object_get(model, "vocab"), name, &keys, &lens, &n));
    json_t *merges = json_object_get(model, "merges");
    size_t total = 0;
    for (int i = 0; i < n; i++) total += lens[i];
    char *raw = st_malloc(total + 1);
    const char **ptrs = st_malloc((size_t)n * sizeof *ptrs);
    float *scores = st_malloc((size_t)n * sizeof *scores);
    st_status s = ST_OK;
    if (!raw || !ptrs || !scores) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    size_t off = 0;
    for (int i = 0; s == ST_OK && i < n; i++) {
        memcpy(raw + off, keys[i], lens[i]);
        lens[i] = unspm(raw + off, lens[i]);
        ptrs[i] = raw + off;
        off += lens[i];
        scores[i] = -1e30f; /* never a merge result unless a merge says so */
    }
    /* Priority of a merged token = minus the index of its first merge. */
    if (s == ST_OK && merges && !json_is_array(merges))
        s = st__fail(ST_ERR_FORMAT, "%s: model.merges is not an array", name);
    json_t *vocab = json_object_get(model, "vocab");
    size_t i;
    json_t *m;
    char buf[1024];
    json_array_foreach(merges, i, m) {
        if (s != ST_OK) break;
        const char *pa, *pb;
        size_t an, bn;
        if (!merge_parts(m, &pa, &an, &pb, &bn) || an + bn >= sizeof buf) {
            s = st__fail(ST_ERR_FORMAT, "%s: model.merges[%zu] is not a valid merge", name, i);
            break;
        }
        memcpy(buf, pa, an);
        memcpy(buf + an, pb, bn);
        buf[an + bn] = '\0';
        json_t *idv = json_object_get(vocab, buf);
        if (!idv) {
            s = st__fail(ST_ERR_FORMAT, "%s: model.merges[%zu] gives \"%.40s\", not in the "
                                        "vocabulary",
                         name, i, buf);
            break;
        }
        json_int_t id = json_integer_value(idv);
        if (scores[id] < -1e29f) scores[id] = -(float)i;
    }
    if (s == ST_OK) s = st__sp_build(n, ptrs, lens, scores, 0, name, out);
    st_free(raw);
    st_free(ptrs);
    st_free(scores);
    st_free(keys);
    st_free(lens);
    return s;
}

static st_status load_char(json_t *model, const char *name, st_tokenizer **out) {
    const char **keys;
    size_t *lens;
    int n;
    ST_TRY(dense_vocab(json_object_get(model, "vocab"), name, &keys, &lens, &n));
    uint32_t *cps = st_malloc((size_t)n * sizeof *cps);
    st_status s = cps ? ST_OK : st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    for (int i = 0; s == ST_OK && i < n; i++) {
        const uint8_t *p = (const uint8_t *)keys[i];
        size_t v = st__utf8_valid_prefix(p, lens[i]);
        size_t cl = p[0] < 0x80 ? 1 : p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
        if (v != lens[i] || lens[i] != cl) {
            s = st__fail(ST_ERR_UNSUPPORTED, "%s: token %d \"%.40s\" is not one character, and "
                                             "the model has no merges and no byte-level alphabet",
                         name, i, keys[i]);
            break;
        }
        uint32_t cp = cl == 1 ? p[0] : cl == 2 ? (p[0] & 0x1Fu) : cl == 3 ? (p[0] & 0x0Fu) : (p[0] & 0x07u);
        for (size_t j = 1; j < cl; j++) cp = (cp << 6) | (p[j] & 0x3Fu);
        cps[i] = cp;
    }
    if (s == ST_OK) s = st__char_build(cps, n, name, out);
    st_free(cps);
    st_free(keys);
    st_free(lens);
    return s;
}

st_status st__load_hf_json_mem(const char *buf, size_t n, const char *name, st_tokenizer **out) {
    json_error_t je;
    json_t *root = json_loadb(buf, n, 0, &je);
    if (!root)
        return st__fail(ST_ERR_FORMAT, "%s: bad JSON at line %d column %d: %s", name, je.line,
                        je.column, je.text);
    st_status s;
    json_t *model = json_object_get(root, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(root) || !json_is_object(model)) {
        s = st__fail(ST_ERR_FORMAT, "%s: no \"model\" object (not a tokenizer.json)", name);
    } else if (type && strcmp(type, "BPE") != 0) {
        s = st__fail(ST_ERR_UNSUPPORTED, "%s: model type \"%s\" (only BPE is read)", name, type);
    } else if (has_type(json_object_get(root, "pre_tokenizer"), "ByteLevel") ||
               has_type(json_object_get(root, "decoder"), "ByteLevel")) {
        s = load_bytelevel(root, model, name, out);
    } else if (json_is_true(json_object_get(model, "byte_fallback"))) {
        s = load_sentencepiece(model, name, out);
    } else if (json_array_size(json_object_get(model, "merges")) == 0) {
        s = load_char(model, name, out);
    } else {
        s = st__fail(ST_ERR_UNSUPPORTED, "%s: BPE with merges but neither a ByteLevel "
                                         "pre-tokenizer nor byte_fallback",
                     name);
    }
    json_decref(root);
    return s;
}

/* ---- writing ------------------------------------------------------------------------- */
static int cmp_slot(const void *a, const void *b) {
    const st__pair_slot *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    if (x->merged != y->merged) return x->merged < y->merged ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

/* The pair table, sorted by (rank, merged token, pair). Caller frees. */
static st__pair_slot *sorted_pairs(const st_tokenizer *t, size_t *n) {
    size_t cnt = 0;
    if (t->pairs.slots)
        for (uint32_t i = 0; i <= t->pairs.mask; i++) cnt += t->pairs.slots[i].key != UINT64_MAX;
    st__pair_slot *v = st_malloc(cnt * sizeof *v + 1);
    if (!v) return NULL;
    size_t k = 0;
    if (t->pairs.slots)
        for (uint32_t i = 0; i <= t->pairs.mask; i++)
            if (t->pairs.slots[i].key != UINT64_MAX) v[k++] = t->pairs.slots[i];
    qsort(v, cnt, sizeof *v, cmp_slot);
    *n = cnt;
    return v;
}

static json_t *jstrn(const char *p, size_t n) { return json_stringn_nocheck(p, n); }

/* The string a token has in the written vocabulary. st_malloc'd. */
static char *vocab_string(const st_tokenizer *t, int32_t id, size_t *len) {
    size_t n;
    const char *p;
    if (t->kind == ST_TOK_BPE) {
        p = st__piece(t, id, &n);
        char *s = st__bytelevel_string(p, n);
        if (s) *len = strlen(s);
        return s;
    }
    if (t->kind == ST_TOK_SENTENCEPIECE) {
        n = (size_t)(t->raw_off[id + 1] - t->raw_off[id]);
        p = t->raw_data + t->raw_off[id];
        char *s = st_malloc(n * 3 + 1);
        if (!s) return NULL;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] == ' ') memcpy(s + k, SPM_SPACE, 3), k += 3;
            else s[k++] = p[i];
        }
        s[k] = '\0';
        *len = k;
        return s;
    }
    p = st__piece(t, id, &n);
    char *s = st_malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    *len = n;
    return s;
}

static json_t *added_token(int32_t id, const char *p, size_t n) {
    return json_pack("{s:I, s:o, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)id, "content",
                     jstrn(p, n), "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                     "special", 1);
}

static json_t *bytelevel_node(bool use_regex, bool prefix, bool trim) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", prefix,
                     "trim_offsets", trim, "use_regex", use_regex);
}

st_status st_tokenizer_save_json(const st_tokenizer *t, const char *path) {
    if (!t || !path) return st__fail(ST_ERR_INVALID_ARG, "st_tokenizer_save_json: NULL argument");
    st_status s = ST_OK;
    json_t *root = json_object(), *vocab = json_object(), *merges = json_array(),
           *added = json_array();
    json_t *model = NULL;
    if (!root || !vocab || !merges || !added) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
    /* vocabulary and added tokens */
    for (int32_t id = 0; s == ST_OK && id < t->n_vocab; id++) {
        if (t->flags[id] == TOKF_ABSENT) continue;
        size_t n;
        const char *p = st__piece(t, id, &n);
        if (t->flags[id] == TOKF_SPECIAL) {
            if (json_array_append_new(added, added_token(id, p, n)))
                s = st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
            continue;
        }
        size_t len;
        char *key = vocab_string(t, id, &len);
        if (!key) {
            s = st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        if (!json_object_get(vocab, key)) /* duplicate strings keep the lower id */
            json_object_setn_new_nocheck(vocab, key, len, json_integer(id));
        st_free(key);
    }
    if (s == ST_OK && t->kind == ST_TOK_SENTENCEPIECE)
        for (int32_t id = 0; id < 3; id++) {
            size_t n;
            const char *p = st__piece(t, id, &n);
            json_array_append_new(added, added_token(id, p, n));
        }
    /* merges, by rank */
    size_t np = 0;
    st__pair_slot *pairs = s == ST_OK ? sorted_pairs(t, &np) : NULL;
    if (s == ST_OK && !pairs) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; s == ST_OK && i < np; i++) {
        size_t ln, rn;
        char *l = vocab_string(t, (int32_t)(pairs[i].key >> 32), &ln);
        char *r = vocab_string(t, (int32_t)(uint32_t)pairs[i].key, &rn);
        if (!l || !r) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
        else if (t->kind == ST_TOK_BPE) {
            size_t n = ln + rn + 1;
            char *m = st_malloc(n + 1);
            if (!m) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
            else {
                memcpy(m, l, ln), m[ln] = ' ', memcpy(m + ln + 1, r, rn);
                json_array_append_new(merges, jstrn(m, n));
                st_free(m);
            }
        } else {
            json_array_append_new(merges, json_pack("[o,o]", jstrn(l, ln), jstrn(r, rn)));
        }
        st_free(l);
        st_free(r);
    }
    st_free(pairs);
    if (s == ST_OK) {
        bool sp = t->kind == ST_TOK_SENTENCEPIECE;
        model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:O, s:O}", "type", "BPE",
                          "dropout", "unk_token", "continuing_subword_prefix",
                          "end_of_word_suffix", "fuse_unk", sp, "byte_fallback", sp, "vocab",
                          vocab, "merges", merges);
        if (sp) json_object_set_new(model, "unk_token", json_string("<unk>"));
        json_t *norm = json_null(), *pre = json_null(), *dec = json_null(), *post = json_null();
        if (t->kind == ST_TOK_BPE) {
            if (t->regex_src && strcmp(t->regex_src, st__re_gpt2) == 0) {
                pre = bytelevel_node(true, false, true);
            } else if (t->regex_src) {
                pre = json_pack("{s:s, s:[o, o]}", "type", "Sequence", "pretokenizers",
                                json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern",
                                          "Regex", t->regex_src, "behavior", "Isolated", "invert",
                                          0),
                                bytelevel_node(false, false, true));
            } else {
                pre = bytelevel_node(false, false, true);
            }
            dec = bytelevel_node(true, true, true);
            post = bytelevel_node(true, true, false);
        } else if (sp) {
            norm = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence",
                             "normalizers", "type", "Prepend", "prepend", SPM_SPACE, "type",
                             "Replace", "pattern", "String", " ", "content", SPM_SPACE);
            dec = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}",
                            "type", "Sequence", "decoders", "type", "Replace", "pattern", "String",
                            SPM_SPACE, "content", " ", "type", "ByteFallback", "type", "Fuse",
                            "type", "Strip", "content", " ", "start", 1, "stop", 0);
        } else {
            dec = json_pack("{s:s}", "type", "Fuse");
        }
        json_object_set_new(root, "version", json_string("1.0"));
        json_object_set_new(root, "truncation", json_null());
        json_object_set_new(root, "padding", json_null());
        json_object_set(root, "added_tokens", added);
        json_object_set_new(root, "normalizer", norm ? norm : json_null());
        json_object_set_new(root, "pre_tokenizer", pre ? pre : json_null());
        json_object_set_new(root, "post_processor", post ? post : json_null());
        json_object_set_new(root, "decoder", dec ? dec : json_null());
        if (!model || !norm || !pre || !dec || !post)
            s = st__fail(ST_ERR_NOMEM, "%s: out of memory building the JSON", path);
        else json_object_set_new(root, "model", model), model = NULL;
    }
    char *text = s == ST_OK ? json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER)
                            : NULL;
    if (s == ST_OK && !text) s = st__fail(ST_ERR_NOMEM, "%s: out of memory serializing", path);
    if (s == ST_OK) s = st__write_file_atomic(path, text, strlen(text));
    free(text);
    json_decref(model);
    json_decref(root);
    json_decref(vocab);
    json_decref(merges);
    json_decref(added);
    return s;
}
