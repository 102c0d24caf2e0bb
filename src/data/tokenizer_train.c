/*
 * tokenizer_train.c — layer 5: training a byte-level BPE tokenizer on a
 * corpus (GPT-2 pre-tokenization, 256 byte tokens with id = byte value, then
 * one token per merge).
 *
 * The corpus is cut into pieces by GPT-2's regex (invalid UTF-8 bytes are
 * pieces of their own, as in encoding); equal pieces are counted once with a
 * weight. Each round counts every adjacent pair over the distinct pieces
 * (weighted), merges the most frequent pair everywhere (ties: the smallest
 * (left, right) ids, so training is deterministic), and stops at vocab_size
 * or when no pair occurs twice. Cost: rounds x symbols; a 1 MB corpus with a
 * 1000-token vocabulary trains in a second or two.
 *
 * Memory: all buffers are local to st_tokenizer_train_bpe; the result is a
 * normal BPE handle (merge ranks = merge order).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_impl.h"

typedef struct word {
    uint32_t off;   /* first symbol in syms */
    uint32_t n;     /* symbols */
    uint64_t count; /* occurrences in the corpus */
} word;

typedef struct wtab { /* distinct pieces: open addressing on the piece bytes */
    int32_t *slots;
    uint32_t mask;
} wtab;

typedef struct train {
    const uint8_t *text;
    uint32_t *piece_off, *piece_len; /* per distinct word: bytes in text */
    word *w;
    size_t nw, capw;
    int32_t *syms;
    size_t nsym, capsym;
    wtab tab;
} train;

static st_status add_piece(train *tr, const uint8_t *p, size_t n, size_t at) {
    if (n > UINT32_MAX / 2 || at > UINT32_MAX)
        return st__fail(ST_ERR_INVALID_ARG, "train: corpus larger than 4 GB");
    uint32_t h = (uint32_t)st__hash_bytes(p, n) & tr->tab.mask;
    for (;;) {
        int32_t k = tr->tab.slots[h];
        if (k < 0) break;
        if (tr->piece_len[k] == n && memcmp(tr->text + tr->piece_off[k], p, n) == 0) {
            tr->w[k].count++;
            return ST_OK;
        }
        h = (h + 1) & tr->tab.mask;
    }
    if (tr->nw == tr->capw) {
        size_t cap = tr->capw ? tr->capw * 2 : 1024;
        word *w = st_realloc(tr->w, cap * sizeof *w);
        uint32_t *po = w ? st_realloc(tr->piece_off, cap * sizeof *po) : NULL;
        if (po) tr->piece_off = po;
        uint32_t *pl = po ? st_realloc(tr->piece_len, cap * sizeof *pl) : NULL;
        if (w) tr->w = w;
        if (!w || !po || !pl) return st__fail(ST_ERR_NOMEM, "train: out of memory");
        tr->piece_len = pl;
        tr->capw = cap;
        /* grow the table to stay under half full */
        uint32_t tcap = tr->tab.mask + 1;
        while ((size_t)tcap < cap * 2) tcap <<= 1;
        if (tcap != tr->tab.mask + 1) {
            int32_t *slots = st_malloc((size_t)tcap * sizeof *slots);
            if (!slots) return st__fail(ST_ERR_NOMEM, "train: out of memory");
            memset(slots, 0xFF, (size_t)tcap * sizeof *slots);
            for (size_t k = 0; k < tr->nw; k++) {
                uint32_t j = (uint32_t)st__hash_bytes(tr->text + tr->piece_off[k],
                                                      tr->piece_len[k]) & (tcap - 1);
                while (slots[j] >= 0) j = (j + 1) & (tcap - 1);
                slots[j] = (int32_t)k;
            }
            st_free(tr->tab.slots);
            tr->tab.slots = slots;
            tr->tab.mask = tcap - 1;
            h = (uint32_t)st__hash_bytes(p, n) & tr->tab.mask;
            while (tr->tab.slots[h] >= 0) h = (h + 1) & tr->tab.mask;
        }
    }
    if (tr->nsym + n > tr->capsym) {
        size_t cap = tr->capsym ? tr->capsym : 4096;
        while (cap < tr->nsym + n) cap *= 2;
        int32_t *s = st_realloc(tr->syms, cap * sizeof *s);
        if (!s) return st__fail(ST_ERR_NOMEM, "train: out of memory");
        tr->syms = s;
        tr->capsym = cap;
    }
    size_t k = tr->nw++;
    tr->tab.slots[h] = (int32_t)k;
    tr->piece_off[k] = (uint32_t)at;
    tr->piece_len[k] = (uint32_t)n;
    tr->w[k] = (word){(uint32_t)tr->nsym, (uint32_t)n, 1};
    for (size_t i = 0; i < n; i++) tr->syms[tr->nsym++] = p[i];
    return ST_OK;
}

typedef struct pcount {
    uint64_t key; /* UINT64_MAX: empty */
    uint64_t count;
} pcount;

st_status st_tokenizer_train_bpe(const char *text, size_t n_bytes, int vocab_size,
                                 st_tokenizer **out) {
    if ((!text && n_bytes) || !out)
        return st__fail(ST_ERR_INVALID_ARG, "st_tokenizer_train_bpe: NULL argument");
    if (vocab_size < 256 || vocab_size > (1 << 20))
        return st__fail(ST_ERR_INVALID_ARG, "train: vocab_size %d is not in [256, 2^20]",
                        vocab_size);
    *out = NULL;
    /* A tokenizer with only the byte tokens gives us the regex and the pieces. */
    st_tokenizer *t;
    ST_TRY(st__tok_alloc(ST_TOK_BPE, 256, &t));
    train tr = {.text = (const uint8_t *)text};
    pcount *pc = NULL;
    int32_t *merged_l = NULL, *merged_r = NULL;
    char **tok_bytes = NULL;
    size_t *tok_len = NULL;
    pcre2_match_data *md = NULL;
    st_status s = ST_OK;
    {
        char bytes[256];
        const char *ptrs[256];
        size_t lens[256];
        for (int b = 0; b < 256; b++) bytes[b] = (char)b, ptrs[b] = bytes + b, lens[b] = 1;
        s = st__tok_set_pieces(t, ptrs, lens);
    }
    if (s == ST_OK) s = st__bpe_compile_regex(t, st__re_gpt2, "train");
    tr.tab.slots = st_malloc(1024 * sizeof *tr.tab.slots);
    md = pcre2_match_data_create(1, NULL);
    if (s == ST_OK && (!tr.tab.slots || !md)) s = st__fail(ST_ERR_NOMEM, "train: out of memory");
    if (tr.tab.slots) memset(tr.tab.slots, 0xFF, 1024 * sizeof *tr.tab.slots), tr.tab.mask = 1023;
    /* 1. distinct pieces */
    const uint8_t *p = (const uint8_t *)text;
    for (size_t i = 0; s == ST_OK && i < n_bytes;) {
        size_t v = st__utf8_valid_prefix(p + i, n_bytes - i);
        size_t off = 0, gap = 0;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        while (s == ST_OK && off < v) {
            int rc = t->re_jit ? pcre2_jit_match(t->re, p + i, v, off, PCRE2_NO_UTF_CHECK, md, NULL)
                               : pcre2_match(t->re, p + i, v, off, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc < 0 || ov[1] == ov[0]) break;
            if (ov[0] > gap) s = add_piece(&tr, p + i + gap, ov[0] - gap, i + gap);
            if (s == ST_OK) s = add_piece(&tr, p + i + ov[0], ov[1] - ov[0], i + ov[0]);
            off = gap = ov[1];
        }
        if (s == ST_OK && gap < v) s = add_piece(&tr, p + i + gap, v - gap, i + gap);
        i += v;
        if (s == ST_OK && i < n_bytes) s = add_piece(&tr, p + i, 1, i), i++;
    }
    /* 2. merges */
    int n_merges_max = vocab_size - 256, n_merges = 0;
    size_t pcap = 1024;
    merged_l = st_malloc((size_t)n_merges_max * sizeof *merged_l + 1);
    merged_r = st_malloc((size_t)n_merges_max * sizeof *merged_r + 1);
    pc = st_malloc(pcap * sizeof *pc);
    if (s == ST_OK && (!merged_l || !merged_r || !pc)) s = st__fail(ST_ERR_NOMEM, "train: out of memory");
    while (s == ST_OK && n_merges < n_merges_max) {
        size_t need = 1024;
        while (need < tr.nsym * 2 + 2) need <<= 1;
        if (need > pcap) {
            pcount *q = st_realloc(pc, need * sizeof *q);
            if (!q) {
                s = st__fail(ST_ERR_NOMEM, "train: out of memory");
                break;
            }
            pc = q, pcap = need;
        }
        for (size_t i = 0; i < pcap; i++) pc[i].key = UINT64_MAX;
        uint64_t best_count = 0, best_key = UINT64_MAX;
        for (size_t k = 0; k < tr.nw; k++) {
            const int32_t *sy = tr.syms + tr.w[k].off;
            for (uint32_t j = 0; j + 1 < tr.w[k].n; j++) {
                uint64_t key = (uint64_t)(uint32_t)sy[j] << 32 | (uint32_t)sy[j + 1];
                size_t h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (pcap - 1);
                while (pc[h].key != UINT64_MAX && pc[h].key != key) h = (h + 1) & (pcap - 1);
                if (pc[h].key == UINT64_MAX) pc[h].key = key, pc[h].count = 0;
                pc[h].count += tr.w[k].count;
                uint64_t c = pc[h].count;
                if (c > best_count || (c == best_count && key < best_key)) best_count = c, best_key = key;
            }
        }
        if (best_count < 2) break;
        int32_t l = (int32_t)(best_key >> 32), r = (int32_t)(uint32_t)best_key;
        int32_t m = 256 + n_merges;
        merged_l[n_merges] = l;
        merged_r[n_merges] = r;
        n_merges++;
        for (size_t k = 0; k < tr.nw; k++) {
            int32_t *sy = tr.syms + tr.w[k].off;
            uint32_t n = tr.w[k].n, o = 0;
            for (uint32_t j = 0; j < n; j++) {
                if (j + 1 < n && sy[j] == l && sy[j + 1] == r) sy[o++] = m, j++;
                else sy[o++] = sy[j];
            }
            tr.w[k].n = o;
        }
    }
    /* 3. the tokenizer: 256 bytes, then the merged tokens */
    st_tokenizer *res = NULL;
    if (s == ST_OK) s = st__tok_alloc(ST_TOK_BPE, 256 + n_merges, &res);
    if (s == ST_OK) {
        tok_bytes = st_calloc((size_t)res->n_vocab, sizeof *tok_bytes);
        tok_len = st_calloc((size_t)res->n_vocab, sizeof *tok_len);
        if (!tok_bytes || !tok_len) s = st__fail(ST_ERR_NOMEM, "train: out of memory");
    }
    for (int id = 0; s == ST_OK && id < res->n_vocab; id++) {
        size_t ln = id < 256 ? 1 : tok_len[merged_l[id - 256]] + tok_len[merged_r[id - 256]];
        tok_bytes[id] = st_malloc(ln + 1);
        if (!tok_bytes[id]) {
            s = st__fail(ST_ERR_NOMEM, "train: out of memory");
            break;
        }
        if (id < 256) tok_bytes[id][0] = (char)id;
        else {
            int32_t a = merged_l[id - 256], b = merged_r[id - 256];
            memcpy(tok_bytes[id], tok_bytes[a], tok_len[a]);
            memcpy(tok_bytes[id] + tok_len[a], tok_bytes[b], tok_len[b]);
        }
        tok_len[id] = ln;
    }
    if (s == ST_OK) s = st__tok_set_pieces(res, (const char *const *)tok_bytes, tok_len);
    if (s == ST_OK) s = st__pairs_init(&res->pairs, (size_t)n_merges + 16);
    for (int i = 0; s == ST_OK && i < n_merges; i++)
        s = st__pairs_put(&res->pairs, merged_l[i], merged_r[i], i, 256 + i);
    if (s == ST_OK) s = st__bpe_finish(res, "train");
    if (s == ST_OK) s = st__bpe_compile_regex(res, st__re_gpt2, "train");
    if (s == ST_OK) *out = res;
    else st_tokenizer_free(res);
    if (tok_bytes)
        for (int id = 0; id < 256 + n_merges; id++) st_free(tok_bytes[id]);
    st_free(tok_bytes);
    st_free(tok_len);
    st_free(merged_l);
    st_free(merged_r);
    st_free(pc);
    if (md) pcre2_match_data_free(md);
    st_free(tr.piece_off);
    st_free(tr.piece_len);
    st_free(tr.w);
    st_free(tr.syms);
    st_free(tr.tab.slots);
    st_tokenizer_free(t);
    return s;
}
