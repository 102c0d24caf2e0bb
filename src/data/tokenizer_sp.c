/*
 * tokenizer_sp.c — layer 5: llama2.c's tokenizer.bin (SentencePiece-style
 * scores with byte fallback), encoded exactly as llama2.c's run.c encode():
 * a dummy-prefix space token, one token per UTF-8 character (run.c's own
 * grouping: a lead byte plus up to three continuation bytes) or its bytes as
 * <0xXX> fallback tokens (id = byte + 3), then greedy merging of the adjacent
 * pair whose concatenation has the highest score, leftmost on ties.
 *
 * The greedy merge is the shared BPE engine: every split of every vocabulary
 * string into two vocabulary strings is a pair entry whose rank is the dense
 * rank of the merged token's score (higher score, lower rank; equal scores,
 * equal rank, so ties go leftmost like run.c's strict '>'). run.c rescans
 * all pairs after every merge (quadratic); the heap keeps long texts fast.
 *
 * File format (little-endian): int32 max_token_length, then per token:
 * float32 score, int32 length, length bytes. The token count is not stored:
 * the file must end exactly after the last record. Raw strings ("<0x0A>",
 * "\n<s>\n") are kept for lookups like run.c's str_lookup; decoded pieces
 * (a byte for <0xXX>) serve decoding.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_impl.h"

#define SP_MAX_TOKEN_BYTES (1 << 16)

static int cmp_score_desc(const void *a, const void *b, void *ctx) {
    const float *sc = ctx;
    float x = sc[*(const int32_t *)a], y = sc[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

static bool parse_hex_byte(const char *p, size_t n, uint8_t *b) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return false;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        v = v * 16 + d;
    }
    *b = (uint8_t)v;
    return true;
}

/* Builds the SentencePiece handle from raw strings and scores (shared with
 * the tokenizer.json loader). Takes nothing; copies what it needs. */
st_status st__sp_build(int n_vocab, const char *const *raw, const size_t *raw_len,
                       const float *scores, int max_token_length, const char *name,
                       st_tokenizer **out) {
    if (n_vocab < 259)
        return st__fail(ST_ERR_FORMAT,
                        "%s: %d tokens; a llama2.c tokenizer needs at least 259 (<unk>, <s>, "
                        "</s> and 256 byte tokens)",
                        name, n_vocab);
    st_tokenizer *t;
    ST_TRY(st__tok_alloc(ST_TOK_SENTENCEPIECE, n_vocab, &t));
    st_status s = ST_OK;
    size_t total = 0;
    for (int i = 0; i < n_vocab; i++) total += raw_len[i];
    t->raw_data = st_malloc(total + 1);
    t->raw_off = st_malloc(((size_t)n_vocab + 1) * sizeof *t->raw_off);
    t->scores = st_malloc((size_t)n_vocab * sizeof *t->scores);
    const char **ptrs = st_malloc((size_t)n_vocab * sizeof *ptrs);
    size_t *lens = st_malloc((size_t)n_vocab * sizeof *lens);
    char *bytebuf = st_malloc((size_t)n_vocab);
    int32_t *order = st_malloc((size_t)n_vocab * sizeof *order);
    int32_t *rank = st_malloc((size_t)n_vocab * sizeof *rank);
    if (!t->raw_data || !t->raw_off || !t->scores || !ptrs || !lens || !bytebuf || !order || !rank)
        s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    if (s == ST_OK) {
        size_t off = 0;
        for (int i = 0; i < n_vocab; i++) {
            t->raw_off[i] = off;
            memcpy(t->raw_data + off, raw[i], raw_len[i]);
            uint8_t b;
            if (parse_hex_byte(raw[i], raw_len[i], &b)) {
                bytebuf[i] = (char)b;
                ptrs[i] = bytebuf + i;
                lens[i] = 1;
            } else {
                ptrs[i] = t->raw_data + off;
                lens[i] = raw_len[i];
            }
            off += raw_len[i];
            t->scores[i] = scores[i];
            t->flags[i] = TOKF_NORMAL;
            order[i] = i;
        }
        t->raw_off[n_vocab] = off;
        t->max_token_length = max_token_length;
        s = st__tok_set_pieces(t, ptrs, lens);
    }
    if (s == ST_OK) {
        qsort_r(order, (size_t)n_vocab, sizeof *order, cmp_score_desc, t->scores);
        int32_t r = 0;
        for (int i = 0; i < n_vocab; i++) {
            if (i > 0 && t->scores[order[i]] != t->scores[order[i - 1]]) r++;
            rank[order[i]] = r;
        }
        s = st__vmap_build(&t->vmap, t, true);
    }
    if (s == ST_OK) s = st__pairs_from_splits(t, true, rank);
    st_free(ptrs);
    st_free(lens);
    st_free(bytebuf);
    st_free(order);
    st_free(rank);
    if (s != ST_OK) {
        st_tokenizer_free(t);
        return s;
    }
    t->bos_id = 1;
    t->eos_id = 2;
    *out = t;
    return ST_OK;
}

st_status st__load_llama2c_mem(const char *buf, size_t n, const char *name, st_tokenizer **out) {
    if (n < 4) return st__fail(ST_ERR_FORMAT, "%s: %zu bytes, too short for a llama2.c tokenizer", name, n);
    int32_t max_len;
    memcpy(&max_len, buf, 4);
    if (max_len <= 0 || max_len > SP_MAX_TOKEN_BYTES)
        return st__fail(ST_ERR_FORMAT, "%s: max_token_length %d is not in [1, %d]", name, max_len,
                        SP_MAX_TOKEN_BYTES);
    /* pass 1: count and check records */
    size_t off = 4;
    int count = 0;
    while (off < n) {
        if (n - off < 8)
            return st__fail(ST_ERR_FORMAT, "%s: truncated record for token %d at byte %zu", name,
                            count, off);
        float sc;
        int32_t len;
        memcpy(&sc, buf + off, 4);
        memcpy(&len, buf + off + 4, 4);
        if (!isfinite(sc))
            return st__fail(ST_ERR_FORMAT, "%s: token %d has a non-finite score", name, count);
        if (len < 0 || len > max_len)
            return st__fail(ST_ERR_FORMAT, "%s: token %d has length %d outside [0, %d]", name,
                            count, len, max_len);
        if (n - off - 8 < (size_t)len)
            return st__fail(ST_ERR_FORMAT, "%s: truncated bytes of token %d at byte %zu", name,
                            count, off + 8);
        off += 8 + (size_t)len;
        if (++count > (1 << 24)) return st__fail(ST_ERR_FORMAT, "%s: too many tokens", name);
    }
    const char **raw = st_malloc((size_t)count * sizeof *raw + 1);
    size_t *lens = st_malloc((size_t)count * sizeof *lens + 1);
    float *scores = st_malloc((size_t)count * sizeof *scores + 1);
    st_status s = ST_OK;
    if (!raw || !lens || !scores) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    off = 4;
    for (int i = 0; s == ST_OK && i < count; i++) {
        int32_t len;
        memcpy(&scores[i], buf + off, 4);
        memcpy(&len, buf + off + 4, 4);
        raw[i] = buf + off + 8;
        lens[i] = (size_t)len;
        off += 8 + (size_t)len;
    }
    if (s == ST_OK) s = st__sp_build(count, raw, lens, scores, max_len, name, out);
    st_free(raw);
    st_free(lens);
    st_free(scores);
    return s;
}

st_status st__sp_encode(const st_tokenizer *t, const char *text, size_t n, st__ids *out) {
    if (n == 0) return ST_OK;
    int32_t *ids = st_malloc((n + 1) * sizeof *ids);
    if (!ids) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory for %zu bytes", n);
    size_t k = 0;
    int32_t dummy = st__vmap_find(&t->vmap, t, true, " ", 1);
    if (dummy >= 0) ids[k++] = dummy;
    const uint8_t *p = (const uint8_t *)text;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) start = i;
        size_t len = i - start + 1;
        if (i + 1 < n && (p[i + 1] & 0xC0) == 0x80 && len < 4) continue;
        int32_t id = st__vmap_find(&t->vmap, t, true, text + start, len);
        if (id >= 0) ids[k++] = id;
        else
            for (size_t j = start; j <= i; j++) ids[k++] = (int32_t)p[j] + 3;
        start = i + 1;
    }
    st__merge_scratch sc = {0};
    st_status s = st__bpe_merge(&t->pairs, ids, &k, &sc, false);
    for (size_t i = 0; s == ST_OK && i < k; i++) s = st__ids_push(out, ids[i]);
    st_free(sc.buf);
    st_free(ids);
    return s;
}
