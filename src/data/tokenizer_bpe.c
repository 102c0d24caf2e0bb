/*
 * tokenizer_bpe.c — layer 5: byte-level BPE (GPT-2 encoder.json + vocab.bpe,
 * tiktoken .tiktoken rank files) and the merge engine every kind shares.
 *
 * Encoding is cache-free and allocation-light: the text is validated as
 * UTF-8 once, cut into pieces by the pre-tokenizer regex (PCRE2 with UTF and
 * UCP, JIT-compiled: \p{L}, \p{N} and the (?!\S) lookahead need a real
 * engine, so none is written by hand), and each piece is looked up whole in
 * the vocabulary map (tiktoken's shortcut: most English words are one token)
 * or else merged from its bytes by the pair table (left id, right id) ->
 * (rank, merged id): lowest rank first, leftmost on ties, exactly as tiktoken
 * does. Pieces up to MERGE_LINEAR_MAX parts use a linear scan; longer ones
 * (hostile input: a megabyte of digits is one GPT-2 piece) a binary heap
 * with lazy deletion, O(n log n).
 *
 * Invalid UTF-8 never reaches the regex: each invalid byte becomes its own
 * piece (its byte token), valid runs around it are pre-tokenized normally.
 *
 * Ownership: loaders build a new handle and free everything on failure.
 * Encoding allocates its match data and scratch per call (thread-safe).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_impl.h"

#include <jansson.h>

const char st__re_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char st__re_cl100k[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define MERGE_LINEAR_MAX 48

/* ---- merge engine -------------------------------------------------------------- */
typedef struct mnode {
    int32_t id; /* -1: merged away */
    int32_t prev, next;
} mnode;

typedef struct hent {
    int32_t rank;
    uint32_t pos; /* index of the left node: leftmost first on equal ranks */
    int32_t lid, rid;
} hent;

static inline bool hless(const hent *a, const hent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void hpush(hent *h, size_t *n, hent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static hent hpop(hent *h, size_t *n) {
    hent top = h[0];
    hent last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && hless(&h[c + 1], &h[c])) c++;
        if (!hless(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

static st_status merge_heap(const st__pair_map *pm, int32_t *ids, size_t *pn,
                            st__merge_scratch *sc) {
    size_t n = *pn;
    if (n > (size_t)INT32_MAX / 2)
        return st__fail(ST_ERR_INVALID_ARG, "tokenizer: piece of %zu parts is too long", n);
    /* nodes [n] + heap entries: at most n-1 initial plus 2 per merge (< 3n) */
    size_t need = n * sizeof(mnode) + 3 * n * sizeof(hent) + 64;
    if (sc->cap < need) {
        void *b = st_realloc(sc->buf, need);
        if (!b) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory merging %zu parts", n);
        sc->buf = b;
        sc->cap = need;
    }
    mnode *nd = sc->buf;
    hent *heap = (hent *)(void *)((char *)sc->buf + ((n * sizeof(mnode) + 63) & ~(size_t)63));
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        nd[i].id = ids[i];
        nd[i].prev = (int32_t)i - 1;
        nd[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const st__pair_slot *s = st__pairs_get(pm, ids[i], ids[i + 1]);
        if (s) hpush(heap, &hn, (hent){s->rank, (uint32_t)i, ids[i], ids[i + 1]});
    }
    while (hn) {
        hent e = hpop(heap, &hn);
        mnode *l = &nd[e.pos];
        if (l->id != e.lid || l->next < 0 || nd[l->next].id != e.rid) continue; /* stale */
        const st__pair_slot *s = st__pairs_get(pm, e.lid, e.rid);
        int32_t r = l->next;
        l->id = s->merged;
        nd[r].id = -1;
        l->next = nd[r].next;
        if (l->next >= 0) nd[l->next].prev = (int32_t)e.pos;
        if (l->prev >= 0) {
            const st__pair_slot *q = st__pairs_get(pm, nd[l->prev].id, l->id);
            if (q) hpush(heap, &hn, (hent){q->rank, (uint32_t)l->prev, nd[l->prev].id, l->id});
        }
        if (l->next >= 0) {
            const st__pair_slot *q = st__pairs_get(pm, l->id, nd[l->next].id);
            if (q) hpush(heap, &hn, (hent){q->rank, e.pos, l->id, nd[l->next].id});
        }
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = nd[i].next) ids[k++] = nd[i].id;
    *pn = k;
    return ST_OK;
}

static size_t merge_linear(const st__pair_map *pm, int32_t *ids, size_t n) {
    int32_t rank[MERGE_LINEAR_MAX], merged[MERGE_LINEAR_MAX];
    for (size_t i = 0; i + 1 < n; i++) {
        const st__pair_slot *s = st__pairs_get(pm, ids[i], ids[i + 1]);
        rank[i] = s ? s->rank : INT32_MAX;
        merged[i] = s ? s->merged : -1;
    }
    while (n > 1) {
        size_t best = 0;
        int32_t br = INT32_MAX;
        for (size_t i = 0; i + 1 < n; i++)
            if (rank[i] < br) br = rank[i], best = i;
        if (br == INT32_MAX) break;
        ids[best] = merged[best];
        for (size_t i = best + 1; i + 1 < n; i++) {
            ids[i] = ids[i + 1];
            rank[i] = rank[i + 1];
            merged[i] = merged[i + 1];
        }
        n--;
        if (best > 0) {
            const st__pair_slot *s = st__pairs_get(pm, ids[best - 1], ids[best]);
            rank[best - 1] = s ? s->rank : INT32_MAX;
            merged[best - 1] = s ? s->merged : -1;
        }
        if (best + 1 < n) {
            const st__pair_slot *s = st__pairs_get(pm, ids[best], ids[best + 1]);
            rank[best] = s ? s->rank : INT32_MAX;
            merged[best] = s ? s->merged : -1;
        }
    }
    return n;
}

st_status st__bpe_merge(const st__pair_map *pm, int32_t *ids, size_t *n, st__merge_scratch *sc,
                        bool force_heap) {
    if (*n < 2 || !pm->slots) return ST_OK;
    if (!force_heap && *n <= MERGE_LINEAR_MAX) {
        *n = merge_linear(pm, ids, *n);
        return ST_OK;
    }
    return merge_heap(pm, ids, n, sc);
}

/* ---- encoding ---------------------------------------------------------------------- */
typedef struct bpe_work {
    st__merge_scratch sc;
    int32_t *buf;
    size_t cap;
} bpe_work;

static st_status encode_piece(const st_tokenizer *t, const uint8_t *p, size_t n, bpe_work *w,
                              st__ids *out) {
    if (n == 1) return st__ids_push(out, t->byte_id[p[0]]);
    int32_t id = st__vmap_find(&t->vmap, t, false, (const char *)p, n);
    if (id >= 0) return st__ids_push(out, id);
    if (w->cap < n) {
        int32_t *b = st_realloc(w->buf, n * sizeof *b);
        if (!b) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory for a %zu-byte piece", n);
        w->buf = b;
        w->cap = n;
    }
    for (size_t i = 0; i < n; i++) w->buf[i] = t->byte_id[p[i]];
    size_t k = n;
    ST_TRY(st__bpe_merge(&t->pairs, w->buf, &k, &w->sc, false));
    if (out->n + k > out->cap) {
        size_t cap = out->cap ? out->cap : 256;
        while (cap < out->n + k) cap *= 2;
        int32_t *v = st_realloc(out->v, cap * sizeof *v);
        if (!v) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory for %zu ids", cap);
        out->v = v;
        out->cap = cap;
    }
    memcpy(out->v + out->n, w->buf, k * sizeof *w->buf);
    out->n += k;
    return ST_OK;
}

/* Pre-tokenizes one valid UTF-8 run. Text the regex does not match becomes
 * a piece of its own (Hugging Face's Split "Isolated" behaviour). */
static st_status encode_valid_run(const st_tokenizer *t, const uint8_t *s, size_t n,
                                  pcre2_match_data *md, bpe_work *w, st__ids *out) {
    if (t->pretok == ST_PRETOK_NONE || !t->re) return encode_piece(t, s, n, w, out);
    size_t off = 0, gap = 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    while (off < n) {
        int rc = t->re_jit ? pcre2_jit_match(t->re, s, n, off, PCRE2_NO_UTF_CHECK, md, NULL)
                           : pcre2_match(t->re, s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return st__fail(ST_ERR_INTERNAL, "tokenizer: regex match failed at byte %zu: %s",
                            off, (const char *)msg);
        }
        size_t a = ov[0], b = ov[1];
        if (b == a) { /* empty match: step one character */
            off = a + 1;
            while (off < n && (s[off] & 0xC0) == 0x80) off++;
            continue;
        }
        if (a > gap) ST_TRY(encode_piece(t, s + gap, a - gap, w, out));
        ST_TRY(encode_piece(t, s + a, b - a, w, out));
        off = gap = b;
    }
    if (gap < n) ST_TRY(encode_piece(t, s + gap, n - gap, w, out));
    return ST_OK;
}

st_status st__bpe_encode_ordinary(const st_tokenizer *t, const char *text, size_t n,
                                  st__ids *out) {
    if (n == 0) return ST_OK;
    pcre2_match_data *md = NULL;
    if (t->re) {
        md = pcre2_match_data_create(1, NULL);
        if (!md) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory (match data)");
    }
    bpe_work w = {0};
    st_status s = ST_OK;
    const uint8_t *p = (const uint8_t *)text;
    size_t i = 0;
    while (s == ST_OK && i < n) {
        size_t v = st__utf8_valid_prefix(p + i, n - i);
        if (v) s = encode_valid_run(t, p + i, v, md, &w, out);
        i += v;
        if (s == ST_OK && i < n) s = st__ids_push(out, t->byte_id[p[i++]]); /* invalid byte */
    }
    if (md) pcre2_match_data_free(md);
    st_free(w.sc.buf);
    st_free(w.buf);
    return s;
}

/* ---- shared load steps --------------------------------------------------------------- */
st_status st__bpe_compile_regex(st_tokenizer *t, const char *src, const char *name) {
    int err;
    PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                   &err, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return st__fail(ST_ERR_FORMAT, "%s: pre-tokenizer regex does not compile at offset %zu: %s",
                        name, (size_t)eoff, (const char *)msg);
    }
    t->re_jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    t->re = re;
    t->regex_src = st_strdup(src);
    if (!t->regex_src) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory");
    t->pretok = ST_PRETOK_REGEX;
    return ST_OK;
}

st_status st__bpe_finish(st_tokenizer *t, const char *name) {
    if (!t->vmap.slots) ST_TRY(st__vmap_build(&t->vmap, t, false));
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = st__vmap_find(&t->vmap, t, false, &c, 1);
        if (t->byte_id[b] < 0)
            return st__fail(ST_ERR_FORMAT, "%s: the vocabulary has no token for byte 0x%02X", name,
                            b);
    }
    return ST_OK;
}

/* ---- GPT-2: encoder.json + vocab.bpe ------------------------------------------------------- */
/* Decodes one token string of GPT-2's byte alphabet into raw bytes (dst has
 * room for n bytes: every code point gives one byte). Returns the length, or
 * -1 with *bad set to the offending code point. */
static long unmap_bytelevel(const char *s, size_t n, char *dst, uint32_t *bad) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = st__utf8_valid_prefix(p + i, n - i) ? 1 : 0;
        if (!len) {
            *bad = p[i];
            return -1;
        }
        uint8_t c = p[i];
        if (c < 0x80) cp = c, len = 1;
        else if ((c & 0xE0) == 0xC0) cp = c & 0x1F, len = 2;
        else if ((c & 0xF0) == 0xE0) cp = c & 0x0F, len = 3;
        else cp = c & 0x07, len = 4;
        for (size_t j = 1; j < len; j++) cp = (cp << 6) | (p[i + j] & 0x3F);
        int b = st__unicode_to_byte(cp);
        if (b < 0) {
            *bad = cp;
            return -1;
        }
        dst[k++] = (char)b;
        i += len;
    }
    return (long)k;
}

char *st__bytelevel_string(const char *p, size_t n) {
    char *s = st_malloc(n * 2 + 1);
    if (!s) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = st__byte_to_unicode((uint8_t)p[i]);
        if (cp < 0x80) s[k++] = (char)cp;
        else s[k++] = (char)(0xC0 | cp >> 6), s[k++] = (char)(0x80 | (cp & 0x3F));
    }
    s[k] = '\0';
    return s;
}

/* Fills a new BPE handle from (byte-level string -> id) pairs. Shared with the
 * Hugging Face loader: vocab is a JSON object. */
st_status st__bpe_from_vocab_object(json_t *vocab, const char *name, int extra_max_id,
                                    st_tokenizer **out) {
    if (!json_is_object(vocab))
        return st__fail(ST_ERR_FORMAT, "%s: the vocabulary is not a JSON object", name);
    int max_id = extra_max_id;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= (1 << 24))
            return st__fail(ST_ERR_FORMAT, "%s: token \"%.40s\" has no id in [0, 2^24)", name,
                            key);
        if (json_integer_value(val) > max_id) max_id = (int)json_integer_value(val);
    }
    st_tokenizer *t;
    ST_TRY(st__tok_alloc(ST_TOK_BPE, max_id + 1, &t));
    size_t nv = (size_t)max_id + 1;
    const char **ptrs = st_calloc(nv, sizeof *ptrs);
    size_t *lens = st_calloc(nv, sizeof *lens);
    size_t total = 0;
    json_object_foreach(vocab, key, val) total += strlen(key);
    char *bytes = st_malloc(total + 1);
    st_status s = ST_OK;
    if (!ptrs || !lens || !bytes) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    size_t off = 0;
    if (s == ST_OK) {
        json_object_foreach(vocab, key, val) {
            int id = (int)json_integer_value(val);
            if (ptrs[id]) {
                s = st__fail(ST_ERR_FORMAT, "%s: id %d is given to two tokens (\"%.40s\")", name,
                             id, key);
                break;
            }
            uint32_t bad = 0;
            size_t kn = json_object_iter_key_len(json_object_key_to_iter(key));
            long k = unmap_bytelevel(key, kn, bytes + off, &bad);
            if (k < 0) {
                s = st__fail(ST_ERR_FORMAT,
                             "%s: token \"%.40s\" (id %d) has character U+%04X outside GPT-2's "
                             "byte alphabet",
                             name, key, id, bad);
                break;
            }
            ptrs[id] = bytes + off;
            lens[id] = (size_t)k;
            off += (size_t)k;
        }
    }
    if (s == ST_OK) s = st__tok_set_pieces(t, ptrs, lens);
    st_free(ptrs);
    st_free(lens);
    st_free(bytes);
    if (s != ST_OK) {
        st_tokenizer_free(t);
        return s;
    }
    *out = t;
    return ST_OK;
}

/* Adds merge "a b" (byte-level strings) with the given rank. */
st_status st__bpe_add_merge(st_tokenizer *t, const char *a, size_t an, const char *b, size_t bn,
                            int32_t rank, int32_t *first_rank, const char *name, size_t line) {
    char buf[512];
    if (an + bn > sizeof buf)
        return st__fail(ST_ERR_FORMAT, "%s: merge %zu is longer than %zu bytes", name, line,
                        sizeof buf);
    uint32_t bad = 0;
    long ka = unmap_bytelevel(a, an, buf, &bad);
    long kb = ka < 0 ? -1 : unmap_bytelevel(b, bn, buf + ka, &bad);
    if (ka < 0 || kb < 0)
        return st__fail(ST_ERR_FORMAT, "%s: merge %zu has character U+%04X outside GPT-2's byte "
                                       "alphabet",
                        name, line, bad);
    int32_t l = st__vmap_find(&t->vmap, t, false, buf, (size_t)ka);
    int32_t r = st__vmap_find(&t->vmap, t, false, buf + ka, (size_t)kb);
    int32_t m = st__vmap_find(&t->vmap, t, false, buf, (size_t)(ka + kb));
    if (l < 0 || r < 0 || m < 0)
        return st__fail(ST_ERR_FORMAT, "%s: merge %zu \"%.*s %.*s\" uses a token that is not in "
                                       "the vocabulary (\"%.*s\")",
                        name, line, (int)an, a, (int)bn, b,
                        l < 0 ? (int)an : r < 0 ? (int)bn : (int)(an + bn),
                        l < 0 ? a : r < 0 ? b : "(merged)");
    if (first_rank) {
        if (first_rank[m] >= 0) rank = first_rank[m];
        else first_rank[m] = rank;
    }
    return st__pairs_put(&t->pairs, l, r, rank, m);
}

st_status st__load_gpt2_mem(const char *enc_json, size_t enc_n, const char *enc_name,
                            const char *merges, size_t merges_n, const char *merges_name,
                            st_tokenizer **out) {
    json_error_t je;
    json_t *root = json_loadb(enc_json, enc_n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return st__fail(ST_ERR_FORMAT, "%s: bad JSON at line %d column %d: %s", enc_name, je.line,
                        je.column, je.text);
    st_tokenizer *t = NULL;
    st_status s = st__bpe_from_vocab_object(root, enc_name, -1, &t);
    json_decref(root);
    if (s != ST_OK) return s;
    int eot = -1;
    for (int id = 0; id < t->n_vocab; id++) {
        size_t n;
        const char *p = st__piece(t, id, &n);
        if (t->flags[id] == TOKF_NORMAL && n == 13 && memcmp(p, "<|endoftext|>", 13) == 0) eot = id;
    }
    if (eot >= 0) {
        t->flags[eot] = TOKF_SPECIAL;
        t->special_ids = st_malloc(sizeof(int32_t));
        if (!t->special_ids) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", enc_name);
        else t->special_ids[0] = eot, t->n_special = 1, t->bos_id = t->eos_id = eot;
    }
    if (s == ST_OK) s = st__vmap_build(&t->vmap, t, false);
    /* vocab.bpe: "#version: 0.2" then one "a b" merge per line, in rank order */
    size_t line = 0, i = 0;
    int32_t rank = 0;
    if (s == ST_OK) s = st__pairs_init(&t->pairs, (size_t)t->n_vocab);
    while (s == ST_OK && i < merges_n) {
        const char *ln = merges + i;
        const char *nl = memchr(ln, '\n', merges_n - i);
        size_t len = nl ? (size_t)(nl - ln) : merges_n - i;
        i += len + (nl ? 1 : 0);
        line++;
        if (len && ln[len - 1] == '\r') len--;
        if (len == 0 || (line == 1 && ln[0] == '#')) continue;
        const char *sp = memchr(ln, ' ', len);
        if (!sp || sp == ln || sp == ln + len - 1 || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - ln))) {
            s = st__fail(ST_ERR_FORMAT, "%s: line %zu is not \"left right\"", merges_name, line);
            break;
        }
        size_t an = (size_t)(sp - ln);
        s = st__bpe_add_merge(t, ln, an, sp + 1, len - an - 1, rank++, NULL, merges_name, line);
    }
    if (s == ST_OK) s = st__bpe_finish(t, enc_name);
    if (s == ST_OK) s = st__bpe_compile_regex(t, st__re_gpt2, enc_name);
    if (s != ST_OK) {
        st_tokenizer_free(t);
        return s;
    }
    *out = t;
    return ST_OK;
}

/* ---- tiktoken ----------------------------------------------------------------------------------- */
static int b64val(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Standard base64 with padding; returns decoded length or -1. */
static long b64decode(const char *s, size_t n, uint8_t *dst) {
    if (n == 0 || n % 4) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            uint8_t c = (uint8_t)s[i + j];
            if (c == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad) return -1;
            v[j] = b64val(c);
            if (v[j] < 0) return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        dst[k++] = (uint8_t)(w >> 16);
        if (pad < 2) dst[k++] = (uint8_t)(w >> 8);
        if (pad < 1) dst[k++] = (uint8_t)w;
    }
    return (long)k;
}

/* A decimal rank in [q, e) (a trailing '\r' allowed); -1 when malformed
 * or >= 2^24. Bounded by e: the buffer need not be NUL-terminated. */
static long parse_rank(const char *q, const char *e) {
    if (e > q && e[-1] == '\r') e--;
    if (q == e) return -1;
    long r = 0;
    for (; q < e; q++) {
        if (*q < '0' || *q > '9') return -1;
        r = r * 10 + (*q - '0');
        if (r >= (1 << 24)) return -1;
    }
    return r;
}

typedef struct tt_special {
    const char *text;
    int id;
} tt_special;

static const tt_special k_cl100k_specials[] = {
    {"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259},
    {"<|fim_suffix|>", 100260}, {"<|endofprompt|>", 100276},
};
static const tt_special k_r50k_specials[] = {{"<|endoftext|>", 50256}};

/* Every split of every token into two tokens becomes a pair entry whose rank
 * is the token's rank: exactly tiktoken's "merge the adjacent pair whose
 * concatenation has the lowest rank". */
st_status st__pairs_from_splits(st_tokenizer *t, bool raw, const int32_t *rank_of) {
    size_t est = 0;
    for (int id = 0; id < t->n_vocab; id++)
        if (t->flags[id] == TOKF_NORMAL)
            est += (size_t)(raw ? t->raw_off[id + 1] - t->raw_off[id]
                                : t->piece_off[id + 1] - t->piece_off[id]);
    ST_TRY(st__pairs_init(&t->pairs, est / 3 + 16));
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->flags[id] != TOKF_NORMAL) continue;
        size_t n;
        const char *p;
        if (raw) n = (size_t)(t->raw_off[id + 1] - t->raw_off[id]), p = t->raw_data + t->raw_off[id];
        else p = st__piece(t, id, &n);
        if (st__vmap_find(&t->vmap, t, raw, p, n) != id) continue; /* duplicate bytes */
        for (size_t k = 1; k < n; k++) {
            int32_t l = st__vmap_find(&t->vmap, t, raw, p, k);
            if (l < 0) continue;
            int32_t r = st__vmap_find(&t->vmap, t, raw, p + k, n - k);
            if (r < 0) continue;
            ST_TRY(st__pairs_put(&t->pairs, l, r, rank_of ? rank_of[id] : id, id));
        }
    }
    return ST_OK;
}

st_status st__load_tiktoken_mem(const char *buf, size_t n, const char *name, st_tokenizer **out) {
    /* pass 1: count lines and the largest rank */
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const tt_special *sp = NULL;
    size_t n_sp = 0;
    const char *re = st__re_cl100k;
    if (strstr(base, "cl100k")) sp = k_cl100k_specials, n_sp = 5;
    else if (strstr(base, "r50k") || strstr(base, "gpt2"))
        sp = k_r50k_specials, n_sp = 1, re = st__re_gpt2;
    long max_rank = -1;
    size_t line = 0;
    for (size_t i = 0; i < n;) {
        const char *ln = buf + i;
        const char *nl = memchr(ln, '\n', n - i);
        size_t len = nl ? (size_t)(nl - ln) : n - i;
        i += len + (nl ? 1 : 0);
        line++;
        if (len == 0) continue;
        const char *spc = memchr(ln, ' ', len);
        if (!spc) return st__fail(ST_ERR_FORMAT, "%s: line %zu is not \"<base64> <rank>\"", name, line);
        long r = parse_rank(spc + 1, ln + len);
        if (r < 0)
            return st__fail(ST_ERR_FORMAT, "%s: line %zu: rank is not an integer below 2^24",
                            name, line);
        if (r > max_rank) max_rank = r;
    }
    if (max_rank < 0) return st__fail(ST_ERR_FORMAT, "%s: no tokens", name);
    int n_vocab = (int)max_rank + 1;
    for (size_t k = 0; k < n_sp; k++)
        if (sp[k].id + 1 > n_vocab) n_vocab = sp[k].id + 1;
    st_tokenizer *t;
    ST_TRY(st__tok_alloc(ST_TOK_BPE, n_vocab, &t));
    const char **ptrs = st_calloc((size_t)n_vocab, sizeof *ptrs);
    size_t *lens = st_calloc((size_t)n_vocab, sizeof *lens);
    uint8_t *bytes = st_malloc(n + 64);
    st_status s = ST_OK;
    if (!ptrs || !lens || !bytes) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
    size_t off = 0;
    line = 0;
    for (size_t i = 0; s == ST_OK && i < n;) {
        const char *ln = buf + i;
        const char *nl = memchr(ln, '\n', n - i);
        size_t len = nl ? (size_t)(nl - ln) : n - i;
        i += len + (nl ? 1 : 0);
        line++;
        if (len == 0) continue;
        const char *spc = memchr(ln, ' ', len);
        long r = parse_rank(spc + 1, ln + len);
        long k = b64decode(ln, (size_t)(spc - ln), bytes + off);
        if (k <= 0) {
            s = st__fail(ST_ERR_FORMAT, "%s: line %zu: bad base64 \"%.*s\"", name, line,
                         (int)((spc - ln) < 40 ? (spc - ln) : 40), ln);
            break;
        }
        if (ptrs[r]) {
            s = st__fail(ST_ERR_FORMAT, "%s: line %zu: rank %ld appears twice", name, line, r);
            break;
        }
        ptrs[r] = (const char *)bytes + off;
        lens[r] = (size_t)k;
        off += (size_t)k;
    }
    for (size_t k = 0; s == ST_OK && k < n_sp; k++) {
        if (ptrs[sp[k].id]) {
            s = st__fail(ST_ERR_FORMAT, "%s: rank %d is also the special token %s", name, sp[k].id,
                         sp[k].text);
            break;
        }
        ptrs[sp[k].id] = sp[k].text;
        lens[sp[k].id] = strlen(sp[k].text);
        t->flags[sp[k].id] = TOKF_SPECIAL;
    }
    if (s == ST_OK) s = st__tok_set_pieces(t, ptrs, lens);
    st_free(ptrs);
    st_free(lens);
    st_free(bytes);
    if (s == ST_OK && n_sp) {
        t->special_ids = st_malloc(n_sp * sizeof(int32_t));
        if (!t->special_ids) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", name);
        for (size_t k = 0; s == ST_OK && k < n_sp; k++) t->special_ids[k] = sp[k].id;
        t->n_special = (int)n_sp;
        t->eos_id = sp[0].id;
        if (n_sp == 1) t->bos_id = sp[0].id; /* GPT-2: <|endoftext|> is both */
        if (s == ST_OK) st__tok_sort_specials(t);
    }
    if (s == ST_OK) s = st__bpe_finish(t, name);
    if (s == ST_OK) s = st__pairs_from_splits(t, false, NULL);
    if (s == ST_OK) s = st__bpe_compile_regex(t, re, name);
    if (s != ST_OK) {
        st_tokenizer_free(t);
        return s;
    }
    *out = t;
    return ST_OK;
}
