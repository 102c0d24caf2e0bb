/*
 * tokenizer_vocab.c — tokenizers built from, and read back as, plain token
 * lists: the form GGUF stores in its metadata (tokenizer.ggml.tokens,
 * .scores, .merges). Layer 6's GGUF reader and writer use these.
 *
 *  - SentencePiece ("llama"): pieces with U+2581 for spaces and "<0xNN>"
 *    byte tokens, plus scores. They become llama2.c's raw form (spaces as
 *    ' ') and go through the same builder as tokenizer.bin (tokenizer_sp.c),
 *    so encoding is identical.
 *  - byte-level BPE ("gpt2"): GPT-2's printable byte strings and "a b"
 *    merges in rank order. They are handed to the encoder.json + vocab.bpe
 *    loader (tokenizer_bpe.c) as the texts it reads, so GPT-2's rules
 *    (the <|endoftext|> special, the pre-tokenizer regex) stay in one place.
 * Results are st_malloc'd and owned by the caller. No shared state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/tokenizer_impl.h"

static const char k_sp_space[] = "\xe2\x96\x81"; /* U+2581 */

st_status st_tokenizer_from_sp_pieces(int n, const char *const *pieces, const size_t *lens,
                                      const float *scores, int bos_id, int eos_id,
                                      const char *name, st_tokenizer **out) {
    if (!pieces || !lens || !out || n <= 0)
        return st__fail(ST_ERR_INVALID_ARG, "%s: bad SentencePiece vocabulary arguments",
                        name ? name : "tokenizer");
    if (!name) name = "tokenizer";
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!pieces[i] && lens[i])
            return st__fail(ST_ERR_INVALID_ARG, "%s: token %d has no bytes", name, i);
        total += lens[i];
    }
    char *buf = st_malloc(total + 1);
    const char **raw = st_malloc((size_t)n * sizeof *raw);
    size_t *rl = st_malloc((size_t)n * sizeof *rl);
    float *sc = st_calloc((size_t)n, sizeof *sc);
    st_status s = ST_OK;
    if (!buf || !raw || !rl || !sc) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    int max_len = 0;
    size_t off = 0;
    for (int i = 0; s == ST_OK && i < n; i++) {
        raw[i] = buf + off;
        const char *p = pieces[i];
        size_t k = 0, o = off;
        while (k < lens[i]) { /* U+2581 -> ' ' (llama2.c's export does the same) */
            if (lens[i] - k >= 3 && memcmp(p + k, k_sp_space, 3) == 0) {
                buf[o++] = ' ';
                k += 3;
            } else {
                buf[o++] = p[k++];
            }
        }
        rl[i] = o - off;
        off = o;
        if ((int)rl[i] > max_len) max_len = (int)rl[i];
        if (scores) sc[i] = scores[i];
    }
    if (s == ST_OK) s = st__sp_build(n, raw, rl, sc, max_len, name, out);
    if (s == ST_OK) {
        if (bos_id >= 0 && bos_id < n) (*out)->bos_id = bos_id;
        if (eos_id >= 0 && eos_id < n) (*out)->eos_id = eos_id;
    }
    st_free(buf);
    st_free(raw);
    st_free(rl);
    st_free(sc);
    return s;
}

st_status st_tokenizer_from_bpe_lists(int n, const char *const *tokens, const size_t *lens,
                                      int n_merges, const char *const *merges,
                                      const size_t *merge_lens, const char *name,
                                      st_tokenizer **out) {
    if (!name) name = "tokenizer";
    if (!tokens || !lens || !out || n <= 0 || n_merges < 0 || (n_merges && (!merges || !merge_lens)))
        return st__fail(ST_ERR_INVALID_ARG, "%s: bad BPE vocabulary arguments", name);
    json_t *obj = json_object();
    if (!obj) return st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    st_status s = ST_OK;
    for (int i = 0; s == ST_OK && i < n; i++) {
        if (!tokens[i]) continue;
        if (json_object_getn(obj, tokens[i], lens[i]))
            s = st__fail(ST_ERR_FORMAT, "%s: token %d (\"%.*s\") appears twice", name, i,
                         (int)(lens[i] > 40 ? 40 : lens[i]), tokens[i]);
        else if (json_object_setn_new(obj, tokens[i], lens[i], json_integer(i)) != 0)
            s = st__fail(ST_ERR_FORMAT, "%s: token %d is not valid UTF-8", name, i);
    }
    char *enc = NULL, *mt = NULL;
    size_t mt_n = 0;
    if (s == ST_OK) {
        enc = json_dumps(obj, JSON_COMPACT);
        size_t cap = 16;
        for (int i = 0; i < n_merges; i++) cap += merge_lens[i] + 1;
        mt = st_malloc(cap);
        if (!enc || !mt) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    }
    if (s == ST_OK) {
        memcpy(mt, "#version: 0.2\n", 14);
        mt_n = 14;
        for (int i = 0; s == ST_OK && i < n_merges; i++) {
            if (memchr(merges[i], '\n', merge_lens[i]) || !memchr(merges[i], ' ', merge_lens[i]))
                s = st__fail(ST_ERR_FORMAT, "%s: merge %d is not \"a b\"", name, i);
            memcpy(mt + mt_n, merges[i], merge_lens[i]);
            mt_n += merge_lens[i];
            mt[mt_n++] = '\n';
        }
    }
    if (s == ST_OK) s = st__load_gpt2_mem(enc, strlen(enc), name, mt, mt_n, name, out);
    free(enc);
    st_free(mt);
    json_decref(obj);
    return s;
}

st_status st_tokenizer_sp_piece(const st_tokenizer *tok, int32_t id, char **out, size_t *n,
                                float *score, int *gguf_type) {
    if (!tok || tok->kind != ST_TOK_SENTENCEPIECE || !out || !n || id < 0 || id >= tok->n_vocab)
        return st__fail(ST_ERR_INVALID_ARG, "st_tokenizer_sp_piece: not a SentencePiece token");
    const char *p = tok->raw_data + tok->raw_off[id];
    const size_t len = (size_t)(tok->raw_off[id + 1] - tok->raw_off[id]);
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += p[i] == ' ';
    char *b = st_malloc(len + 2 * spaces + 1);
    if (!b) return st__fail(ST_ERR_NOMEM, "st_tokenizer_sp_piece: out of memory");
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == ' ') {
            memcpy(b + o, k_sp_space, 3);
            o += 3;
        } else {
            b[o++] = p[i];
        }
    }
    b[o] = 0;
    *out = b;
    *n = o;
    if (score) *score = tok->scores ? tok->scores[id] : 0.0f;
    if (gguf_type) { /* llama.cpp's token types: 1 normal, 2 unknown, 3 control, 6 byte */
        int t = 1;
        if (id == 0 && len == 5 && memcmp(p, "<unk>", 5) == 0) t = 2;
        else if (id == tok->bos_id || id == tok->eos_id) t = 3;
        else if (len == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>') t = 6;
        *gguf_type = t;
    }
    return ST_OK;
}

st_status st_tokenizer_bpe_token(const st_tokenizer *tok, int32_t id, char **out) {
    if (!tok || tok->kind != ST_TOK_BPE || !out || id < 0 || id >= tok->n_vocab)
        return st__fail(ST_ERR_INVALID_ARG, "st_tokenizer_bpe_token: not a BPE token");
    size_t n;
    const char *p = st__piece(tok, id, &n);
    if (tok->flags[id] == TOKF_ABSENT) {
        *out = NULL;
        return ST_OK;
    }
    if (tok->flags[id] == TOKF_SPECIAL) {
        *out = st_malloc(n + 1);
        if (*out) memcpy(*out, p, n), (*out)[n] = 0;
    } else {
        *out = st__bytelevel_string(p, n);
    }
    return *out ? ST_OK : st__fail(ST_ERR_NOMEM, "st_tokenizer_bpe_token: out of memory");
}

typedef struct merge_ref {
    int32_t rank, left, right;
} merge_ref;

static int cmp_merge(const void *a, const void *b) {
    const merge_ref *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    if (x->left != y->left) return x->left < y->left ? -1 : 1;
    return (x->right > y->right) - (x->right < y->right);
}

st_status st_tokenizer_bpe_merges(const st_tokenizer *tok, char ***out, int *n_out) {
    if (!tok || tok->kind != ST_TOK_BPE || !out || !n_out)
        return st__fail(ST_ERR_INVALID_ARG, "st_tokenizer_bpe_merges: not a BPE tokenizer");
    const st__pair_map *m = &tok->pairs;
    const size_t cap = m->slots ? (size_t)m->mask + 1 : 0;
    merge_ref *refs = st_malloc((m->count + 1) * sizeof *refs);
    if (!refs) return st__fail(ST_ERR_NOMEM, "st_tokenizer_bpe_merges: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < cap && k < m->count; i++)
        if (m->slots[i].key != UINT64_MAX)
            refs[k++] = (merge_ref){m->slots[i].rank, (int32_t)(m->slots[i].key >> 32),
                                    (int32_t)(uint32_t)m->slots[i].key};
    qsort(refs, k, sizeof *refs, cmp_merge);
    char **v = st_calloc(k + 1, sizeof *v);
    st_status s = v ? ST_OK : st__fail(ST_ERR_NOMEM, "st_tokenizer_bpe_merges: out of memory");
    for (size_t i = 0; s == ST_OK && i < k; i++) {
        char *a = NULL, *b = NULL;
        s = st_tokenizer_bpe_token(tok, refs[i].left, &a);
        if (s == ST_OK) s = st_tokenizer_bpe_token(tok, refs[i].right, &b);
        if (s == ST_OK && a && b) {
            const size_t an = strlen(a), bn = strlen(b);
            v[i] = st_malloc(an + bn + 2);
            if (!v[i]) s = st__fail(ST_ERR_NOMEM, "st_tokenizer_bpe_merges: out of memory");
            else memcpy(v[i], a, an), v[i][an] = ' ', memcpy(v[i] + an + 1, b, bn + 1);
        }
        st_free(a);
        st_free(b);
    }
    st_free(refs);
    if (s != ST_OK) {
        for (size_t i = 0; v && i < k; i++) st_free(v[i]);
        st_free(v);
        return s;
    }
    *out = v;
    *n_out = (int)k;
    return ST_OK;
}

st_status st_tokenizer_clone(const st_tokenizer *tok, st_tokenizer **out) {
    if (!tok || !out) return st__fail(ST_ERR_INVALID_ARG, "st_tokenizer_clone: NULL argument");
    const int n = tok->n_vocab;
    char **p = st_calloc((size_t)n + 1, sizeof *p);
    size_t *len = st_calloc((size_t)n + 1, sizeof *len);
    float *sc = st_calloc((size_t)n + 1, sizeof *sc);
    char **m = NULL;
    size_t *ml = NULL;
    int nm = 0;
    st_status s = p && len && sc ? ST_OK : st__fail(ST_ERR_NOMEM, "st_tokenizer_clone: out of memory");
    if (s == ST_OK && tok->kind == ST_TOK_SENTENCEPIECE) {
        for (int i = 0; s == ST_OK && i < n; i++) s = st_tokenizer_sp_piece(tok, i, &p[i], &len[i], &sc[i], NULL);
        if (s == ST_OK)
            s = st_tokenizer_from_sp_pieces(n, (const char *const *)p, len, sc, tok->bos_id,
                                            tok->eos_id, "tokenizer copy", out);
    } else if (s == ST_OK && tok->kind == ST_TOK_BPE && tok->pretok == ST_PRETOK_REGEX &&
               tok->regex_src && strcmp(tok->regex_src, st__re_gpt2) == 0) {
        for (int i = 0; s == ST_OK && i < n; i++) {
            s = st_tokenizer_bpe_token(tok, i, &p[i]);
            if (s == ST_OK && p[i]) len[i] = strlen(p[i]);
        }
        if (s == ST_OK) s = st_tokenizer_bpe_merges(tok, &m, &nm);
        if (s == ST_OK && !(ml = st_calloc((size_t)nm + 1, sizeof *ml)))
            s = st__fail(ST_ERR_NOMEM, "st_tokenizer_clone: out of memory");
        for (int i = 0; s == ST_OK && i < nm; i++) ml[i] = strlen(m[i]);
        if (s == ST_OK)
            s = st_tokenizer_from_bpe_lists(n, (const char *const *)p, len, nm,
                                            (const char *const *)m, ml, "tokenizer copy", out);
    } else if (s == ST_OK) { /* other kinds: through a tokenizer.json in a private temp dir */
        char dir[] = "/tmp/strata_tokclone_XXXXXX", path[64];
        if (!mkdtemp(dir)) {
            s = st__fail(ST_ERR_IO, "st_tokenizer_clone: cannot create a temporary directory");
        } else {
            snprintf(path, sizeof path, "%s/tokenizer.json", dir);
            s = st_tokenizer_save_json(tok, path);
            if (s == ST_OK) s = st_tokenizer_load(path, out);
            unlink(path);
            rmdir(dir);
        }
    }
    for (int i = 0; p && i < n; i++) st_free(p[i]);
    for (int i = 0; m && i < nm; i++) st_free(m[i]);
    st_free(p);
    st_free(len);
    st_free(sc);
    st_free(m);
    st_free(ml);
    return s;
}
