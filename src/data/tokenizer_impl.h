/*
 * tokenizer_impl.h — internals shared by the tokenizer files of layer 5
 * (tokenizer.c, tokenizer_bpe.c, tokenizer_sp.c, tokenizer_char.c,
 * tokenizer_train.c, tokenizer_json.c). Not a public header: tests and the
 * fuzz target include it for the memory loaders and the merge engine.
 *
 * One struct serves every kind. Every token has its bytes in one arena
 * (piece_data + piece_off); ids may have gaps (cl100k has no 100256), marked
 * by flags[id] == TOKF_ABSENT. Two open-addressing hash tables do the work:
 *  - st__vocab_map: token bytes -> id (mergeable tokens only; specials are
 *    matched separately), used for the whole-piece shortcut, loading and
 *    SentencePiece code-point lookup;
 *  - st__pair_map: (left id, right id) -> (rank, merged id). Lower rank
 *    merges first; equal ranks merge leftmost first. Byte-level BPE, tiktoken
 *    ranks and SentencePiece scores all reduce to this one table, so one merge
 *    engine (st__bpe_merge) serves them all.
 * Everything is built at load time; afterwards the struct is read-only, so
 * one tokenizer may be used from several threads.
 */
#ifndef STRATA_DATA_TOKENIZER_IMPL_H
#define STRATA_DATA_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <jansson.h>

#include "strata/tokenizer.h"

enum { TOKF_ABSENT = 0, TOKF_NORMAL = 1, TOKF_SPECIAL = 2 };

/* Pre-tokenizer kinds (byte-level BPE). */
typedef enum st__pretok {
    ST_PRETOK_NONE = 0,  /* the whole text is one piece */
    ST_PRETOK_REGEX = 1, /* regex_src, compiled to re */
} st__pretok;

extern const char st__re_gpt2[];
extern const char st__re_cl100k[];

typedef struct st__vocab_map {
    int32_t *slots; /* id or -1 */
    uint32_t mask;  /* capacity - 1 (power of two) */
} st__vocab_map;

typedef struct st__pair_slot {
    uint64_t key; /* (left << 32) | right; UINT64_MAX: empty */
    int32_t rank;
    int32_t merged;
} st__pair_slot;

typedef struct st__pair_map {
    st__pair_slot *slots;
    uint32_t mask;
    uint32_t count;
} st__pair_map;

struct st_tokenizer {
    st_tokenizer_kind kind;
    int n_vocab;          /* max id + 1, specials included */
    char *piece_data;     /* bytes of every token (decoded form) */
    uint64_t *piece_off;  /* [n_vocab + 1] */
    uint8_t *flags;       /* [n_vocab] TOKF_* */
    int bos_id, eos_id;

    int n_special;
    int32_t *special_ids; /* [n_special], longest text first */

    /* byte-level BPE */
    st__pretok pretok;
    char *regex_src;      /* st_malloc'd; NULL for NONE */
    pcre2_code *re;
    bool re_jit;          /* re was JIT-compiled: use pcre2_jit_match */
    int32_t byte_id[256]; /* token of each single byte (-1: none) */
    st__vocab_map vmap;   /* mergeable token bytes -> id */
    st__pair_map pairs;

    /* SentencePiece (llama2.c): raw vocab strings ("<0x0A>" literally) */
    char *raw_data;
    uint64_t *raw_off;    /* [n_vocab + 1] */
    float *scores;        /* [n_vocab] */
    int max_token_length;

    /* char-level: sorted code points, id = index */
    uint32_t *cps;
};

/* ---- tokenizer.c: shared helpers ---------------------------------------- */
st_status st__tok_alloc(st_tokenizer_kind kind, int n_vocab, st_tokenizer **out);
/* Sets the bytes of every token at once from n (ptr,len) pairs (NULL ptr:
 * absent); computes piece_off. */
st_status st__tok_set_pieces(st_tokenizer *t, const char *const *ptrs, const size_t *lens);
static inline const char *st__piece(const st_tokenizer *t, int32_t id, size_t *n) {
    *n = (size_t)(t->piece_off[id + 1] - t->piece_off[id]);
    return t->piece_data + t->piece_off[id];
}
/* Sorts special_ids (longest first) after they were filled. */
void st__tok_sort_specials(st_tokenizer *t);
/* Reads a whole file (at most max_bytes) into an st_malloc'd, NUL-terminated
 * buffer. ST_ERR_IO naming the path, ST_ERR_FORMAT when too large. */
/* Writes bytes to path through path.tmp, fsync, rename. */
st_status st__write_file_atomic(const char *path, const char *buf, size_t n);
/* Length of the longest valid UTF-8 prefix of p[0..n). */
size_t st__utf8_valid_prefix(const uint8_t *p, size_t n);

/* ---- hash tables ----------------------------------------------------------- */
uint64_t st__hash_bytes(const void *p, size_t n);
st_status st__vmap_build(st__vocab_map *m, const st_tokenizer *t, bool raw);
int32_t st__vmap_find(const st__vocab_map *m, const st_tokenizer *t, bool raw, const char *p,
                      size_t n);
void st__vmap_free(st__vocab_map *m);
st_status st__pairs_init(st__pair_map *m, size_t expected);
/* Inserts; when the key exists keeps the lower rank. */
st_status st__pairs_put(st__pair_map *m, int32_t left, int32_t right, int32_t rank,
                        int32_t merged);
static inline const st__pair_slot *st__pairs_get(const st__pair_map *m, int32_t l, int32_t r) {
    if (!m->slots) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->mask;
    for (;;) {
        const st__pair_slot *s = &m->slots[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
        i = (i + 1) & m->mask;
    }
}
void st__pairs_free(st__pair_map *m);

/* ---- the merge engine (tokenizer_bpe.c) --------------------------------------
 * Merges ids[0..n) in place by the pair table and returns the new count.
 * Lowest rank first, leftmost on ties. Short inputs use a linear scan, long
 * ones a binary heap (force_heap: always the heap, for tests). scratch is
 * grown with st_realloc and owned by the caller. */
typedef struct st__merge_scratch {
    void *buf;
    size_t cap;
} st__merge_scratch;
st_status st__bpe_merge(const st__pair_map *pm, int32_t *ids, size_t *n, st__merge_scratch *sc,
                        bool force_heap);

/* ---- loaders (memory forms; name is used in messages) ----------------------- */
st_status st__load_gpt2_mem(const char *enc_json, size_t enc_n, const char *enc_name,
                            const char *merges, size_t merges_n, const char *merges_name,
                            st_tokenizer **out);
st_status st__load_tiktoken_mem(const char *buf, size_t n, const char *name, st_tokenizer **out);
st_status st__load_llama2c_mem(const char *buf, size_t n, const char *name, st_tokenizer **out);
st_status st__load_hf_json_mem(const char *buf, size_t n, const char *name, st_tokenizer **out);

/* Compiles regex_src (UTF + UCP, JIT when available) into t->re. */
st_status st__bpe_compile_regex(st_tokenizer *t, const char *src, const char *name);
/* Builds vmap and checks byte_id after pieces and flags are set. */
st_status st__bpe_finish(st_tokenizer *t, const char *name);

/* Cross-file builders. */
/* Every split of every token into two tokens becomes a pair whose rank is
 * rank_of[token] (NULL: the token id). raw: split the raw strings. */
st_status st__pairs_from_splits(st_tokenizer *t, bool raw, const int32_t *rank_of);
/* New BPE handle from a {byte-level string: id} object; ids up to
 * extra_max_id are allocated even when the object has fewer. */
st_status st__bpe_from_vocab_object(json_t *vocab, const char *name, int extra_max_id,
                                    st_tokenizer **out);
/* Adds merge "a b" (byte-level strings). first_rank (optional, [n_vocab],
 * -1 filled): every merge giving the same token gets the rank of the first. */
st_status st__bpe_add_merge(st_tokenizer *t, const char *a, size_t an, const char *b, size_t bn,
                            int32_t rank, int32_t *first_rank, const char *name, size_t line);
/* Byte-level string of raw bytes: st_malloc'd, NUL-terminated. */
char *st__bytelevel_string(const char *p, size_t n);
st_status st__sp_build(int n_vocab, const char *const *raw, const size_t *raw_len,
                       const float *scores, int max_token_length, const char *name,
                       st_tokenizer **out);
st_status st__char_build(const uint32_t *cps_by_id, int n, const char *name, st_tokenizer **out);

/* Per-kind encoders: append to a growable id list. */
typedef struct st__ids {
    int32_t *v;
    size_t n, cap;
} st__ids;
st_status st__ids_push(st__ids *ids, int32_t id);
st_status st__bpe_encode_ordinary(const st_tokenizer *t, const char *text, size_t n,
                                  st__ids *out);
st_status st__sp_encode(const st_tokenizer *t, const char *text, size_t n, st__ids *out);
st_status st__char_encode(const st_tokenizer *t, const char *text, size_t n, size_t base_off,
                          st__ids *out);

/* GPT-2's byte <-> printable-unicode table (bytes_to_unicode). */
uint32_t st__byte_to_unicode(uint8_t b);
int st__unicode_to_byte(uint32_t cp); /* -1 when not in the table */

#endif
