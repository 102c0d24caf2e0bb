/*
 * tokenizer_char.c — layer 5: the character-level tokenizer. Every distinct
 * UTF-8 character (code point) of a corpus is a token; ids follow the code
 * point order, so the same corpus always gives the same vocabulary.
 *
 * Data: cps holds n_vocab (code point, id) pairs sorted by code point (a
 * tokenizer.json may number them in any order); encoding is a binary search
 * per character. Text with a character outside the vocabulary, or invalid
 * UTF-8, is ST_ERR_FORMAT naming the character and its byte offset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_impl.h"

/* Decodes one valid UTF-8 character at p (valid: checked by the caller). */
static uint32_t decode_cp(const uint8_t *p, size_t *len) {
    uint8_t c = p[0];
    if (c < 0x80) return *len = 1, c;
    uint32_t cp;
    size_t n;
    if ((c & 0xE0) == 0xC0) cp = c & 0x1F, n = 2;
    else if ((c & 0xF0) == 0xE0) cp = c & 0x0F, n = 3;
    else cp = c & 0x07, n = 4;
    for (size_t i = 1; i < n; i++) cp = (cp << 6) | (p[i] & 0x3F);
    *len = n;
    return cp;
}

static size_t encode_cp(uint32_t cp, char *o) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int cmp_pair(const void *a, const void *b) {
    uint32_t x = ((const uint32_t *)a)[0], y = ((const uint32_t *)b)[0];
    return x < y ? -1 : x > y;
}

/* Builds a char tokenizer whose token id i is code point cps_by_id[i]. */
st_status st__char_build(const uint32_t *cps_by_id, int n, const char *name, st_tokenizer **out) {
    st_tokenizer *t;
    ST_TRY(st__tok_alloc(ST_TOK_CHAR, n, &t));
    char *bytes = st_malloc((size_t)n * 4 + 1);
    const char **ptrs = st_malloc((size_t)n * sizeof *ptrs + 1);
    size_t *lens = st_malloc((size_t)n * sizeof *lens + 1);
    t->cps = st_malloc((size_t)n * 2 * sizeof *t->cps + 1);
    st_status s = ST_OK;
    if (!bytes || !ptrs || !lens || !t->cps) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    for (int i = 0; s == ST_OK && i < n; i++) {
        ptrs[i] = bytes + (size_t)i * 4;
        lens[i] = encode_cp(cps_by_id[i], bytes + (size_t)i * 4);
        t->cps[2 * i] = cps_by_id[i];
        t->cps[2 * i + 1] = (uint32_t)i;
    }
    if (s == ST_OK) {
        qsort(t->cps, (size_t)n, 2 * sizeof *t->cps, cmp_pair);
        for (int i = 1; i < n; i++)
            if (t->cps[2 * i] == t->cps[2 * i - 2]) {
                s = st__fail(ST_ERR_FORMAT, "%s: character U+%04X appears twice", name,
                             t->cps[2 * i]);
                break;
            }
    }
    if (s == ST_OK) s = st__tok_set_pieces(t, ptrs, lens);
    st_free(bytes);
    st_free(ptrs);
    st_free(lens);
    if (s != ST_OK) {
        st_tokenizer_free(t);
        return s;
    }
    *out = t;
    return ST_OK;
}

st_status st_tokenizer_char_from_corpus(const char *text, size_t n_bytes, st_tokenizer **out) {
    if ((!text && n_bytes) || !out)
        return st__fail(ST_ERR_INVALID_ARG, "st_tokenizer_char_from_corpus: NULL argument");
    *out = NULL;
    size_t v = st__utf8_valid_prefix((const uint8_t *)text, n_bytes);
    if (v < n_bytes)
        return st__fail(ST_ERR_FORMAT, "corpus: invalid UTF-8 at byte offset %zu (0x%02X)", v,
                        (uint8_t)text[v]);
    uint8_t *seen = st_calloc(0x110000 / 8, 1);
    if (!seen) return st__fail(ST_ERR_NOMEM, "corpus: out of memory");
    int n = 0;
    for (size_t i = 0; i < n_bytes;) {
        size_t len;
        uint32_t cp = decode_cp((const uint8_t *)text + i, &len);
        if (!(seen[cp >> 3] & (1u << (cp & 7)))) seen[cp >> 3] |= (uint8_t)(1u << (cp & 7)), n++;
        i += len;
    }
    uint32_t *cps = st_malloc((size_t)n * sizeof *cps + 1);
    if (!cps) {
        st_free(seen);
        return st__fail(ST_ERR_NOMEM, "corpus: out of memory");
    }
    int k = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++)
        if (seen[cp >> 3] & (1u << (cp & 7))) cps[k++] = cp;
    st_free(seen);
    st_status s = st__char_build(cps, n, "corpus", out);
    st_free(cps);
    return s;
}

st_status st__char_encode(const st_tokenizer *t, const char *text, size_t n, size_t base_off,
                          st__ids *out) {
    const uint8_t *p = (const uint8_t *)text;
    size_t v = st__utf8_valid_prefix(p, n);
    if (v < n)
        return st__fail(ST_ERR_FORMAT, "tokenizer: invalid UTF-8 at byte offset %zu (0x%02X)",
                        base_off + v, p[v]);
    for (size_t i = 0; i < n;) {
        size_t len;
        uint32_t cp = decode_cp(p + i, &len);
        size_t lo = 0, hi = (size_t)t->n_vocab;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (t->cps[2 * mid] < cp) lo = mid + 1;
            else hi = mid;
        }
        if (lo == (size_t)t->n_vocab || t->cps[2 * lo] != cp)
            return st__fail(ST_ERR_FORMAT,
                            "tokenizer: character U+%04X ('%.*s') at byte offset %zu is not in the "
                            "vocabulary",
                            cp, (int)len, text + i, base_off + i);
        ST_TRY(st__ids_push(out, (int32_t)t->cps[2 * lo + 1]));
        i += len;
    }
    return ST_OK;
}
