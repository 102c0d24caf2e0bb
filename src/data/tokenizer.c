/*
 * tokenizer.c — layer 5: the tokenizer handle shared by every kind: loading
 * by name or path (dispatch to the per-format loaders), encoding with
 * special-token splitting and BOS, decoding, accessors, and the helpers the
 * kind files share (file reading with a size cap, atomic writes, UTF-8
 * validation, the two hash tables, GPT-2's byte<->unicode table).
 *
 * Data structures: see tokenizer_impl.h. The handle owns every buffer it
 * points to (st_malloc'd) and frees them in st_tokenizer_free. After load it
 * is read-only, so encode/decode may run on several threads at once; each
 * call allocates its own scratch (ids list, regex match data, merge heap).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/tokenizer_impl.h"
#include "strata/data.h"

#define TOK_MAX_FILE_BYTES ((size_t)1 << 30)

/* ---- allocation and pieces ------------------------------------------------- */
st_status st__tok_alloc(st_tokenizer_kind kind, int n_vocab, st_tokenizer **out) {
    if (n_vocab < 0 || n_vocab > (1 << 26))
        return st__fail(ST_ERR_FORMAT, "tokenizer: vocabulary size %d out of range", n_vocab);
    st_tokenizer *t = st_calloc(1, sizeof *t);
    if (!t) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory");
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->bos_id = t->eos_id = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    t->flags = st_calloc((size_t)n_vocab + 1, 1);
    t->piece_off = st_calloc((size_t)n_vocab + 1, sizeof *t->piece_off);
    if (!t->flags || !t->piece_off) {
        st_tokenizer_free(t);
        return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory for %d tokens", n_vocab);
    }
    *out = t;
    return ST_OK;
}

st_status st__tok_set_pieces(st_tokenizer *t, const char *const *ptrs, const size_t *lens) {
    size_t total = 0;
    for (int i = 0; i < t->n_vocab; i++) total += ptrs[i] ? lens[i] : 0;
    st_free(t->piece_data);
    t->piece_data = st_malloc(total + 1);
    if (!t->piece_data) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory (pieces)");
    size_t off = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        t->piece_off[i] = off;
        if (ptrs[i]) {
            memcpy(t->piece_data + off, ptrs[i], lens[i]);
            off += lens[i];
            if (t->flags[i] == TOKF_ABSENT) t->flags[i] = TOKF_NORMAL;
        }
    }
    t->piece_off[t->n_vocab] = off;
    return ST_OK;
}

static int cmp_special_len(const void *a, const void *b, void *ctx) {
    const st_tokenizer *t = ctx;
    size_t na, nb;
    st__piece(t, *(const int32_t *)a, &na);
    st__piece(t, *(const int32_t *)b, &nb);
    if (na != nb) return na > nb ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

void st__tok_sort_specials(st_tokenizer *t) {
    if (t->n_special > 1)
        qsort_r(t->special_ids, (size_t)t->n_special, sizeof(int32_t), cmp_special_len, t);
}

void st_tokenizer_free(st_tokenizer *t) {
    if (!t) return;
    st_free(t->piece_data);
    st_free(t->piece_off);
    st_free(t->flags);
    st_free(t->special_ids);
    st_free(t->regex_src);
    if (t->re) pcre2_code_free(t->re);
    st__vmap_free(&t->vmap);
    st__pairs_free(&t->pairs);
    st_free(t->raw_data);
    st_free(t->raw_off);
    st_free(t->scores);
    st_free(t->cps);
    st_free(t);
}

/* ---- accessors ---------------------------------------------------------------- */
st_tokenizer_kind st_tokenizer_get_kind(const st_tokenizer *t) { return t->kind; }
int st_tokenizer_vocab_size(const st_tokenizer *t) { return t->n_vocab; }
int st_tokenizer_bos_id(const st_tokenizer *t) { return t->bos_id; }
int st_tokenizer_eos_id(const st_tokenizer *t) { return t->eos_id; }

int st_tokenizer_special_id(const st_tokenizer *t, const char *text) {
    if (!t || !text) return -1;
    size_t n = strlen(text);
    for (int i = 0; i < t->n_special; i++) {
        size_t pn;
        const char *p = st__piece(t, t->special_ids[i], &pn);
        if (pn == n && memcmp(p, text, n) == 0) return t->special_ids[i];
    }
    return -1;
}

const char *st_tokenizer_piece(const st_tokenizer *t, int32_t id, size_t *n_bytes) {
    if (!t || id < 0 || id >= t->n_vocab || t->flags[id] == TOKF_ABSENT) return NULL;
    size_t n;
    const char *p = st__piece(t, id, &n);
    if (n_bytes) *n_bytes = n;
    return p;
}

/* ---- files ------------------------------------------------------------------------- */

st_status st__write_file_atomic(const char *path, const char *buf, size_t n) {
    size_t plen = strlen(path);
    char *tmp = st_malloc(plen + 32);
    if (!tmp) return st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st_status s = st__fail(ST_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        st_free(tmp);
        return s;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, buf + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    int ok = done == n && fsync(fd) == 0;
    int e = errno;
    ok = (close(fd) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) e = errno;
        unlink(tmp);
        st_status s = st__fail(ST_ERR_IO, "%s: write failed: %s", path, strerror(e));
        st_free(tmp);
        return s;
    }
    st_free(tmp);
    return ST_OK;
}

size_t st__utf8_valid_prefix(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return i;
        if (i + len > n) return i;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

/* ---- hash tables ------------------------------------------------------------------ */
uint64_t st__hash_bytes(const void *vp, size_t n) {
    const uint8_t *p = vp;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xC2B2AE3D27D4EB4Full;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0xC2B2AE3D27D4EB4Full;
        h ^= h >> 29;
    }
    h *= 0x165667B19E3779F9ull;
    return h ^ (h >> 32);
}

static const char *vm_bytes(const st_tokenizer *t, bool raw, int32_t id, size_t *n) {
    if (!raw) return st__piece(t, id, n);
    *n = (size_t)(t->raw_off[id + 1] - t->raw_off[id]);
    return t->raw_data + t->raw_off[id];
}

/* Mergeable tokens only (specials are found by the special splitter); on
 * duplicate bytes the lowest id wins. */
st_status st__vmap_build(st__vocab_map *m, const st_tokenizer *t, bool raw) {
    uint32_t cap = 16;
    while (cap < (uint32_t)t->n_vocab * 2u + 2u) cap <<= 1;
    m->slots = st_malloc((size_t)cap * sizeof(int32_t));
    if (!m->slots) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory (vocabulary map)");
    memset(m->slots, 0xFF, (size_t)cap * sizeof(int32_t));
    m->mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->flags[id] != TOKF_NORMAL) continue;
        size_t n;
        const char *p = vm_bytes(t, raw, id, &n);
        uint32_t i = (uint32_t)st__hash_bytes(p, n) & m->mask;
        for (;;) {
            int32_t o = m->slots[i];
            if (o < 0) {
                m->slots[i] = id;
                break;
            }
            size_t on;
            const char *op = vm_bytes(t, raw, o, &on);
            if (on == n && memcmp(op, p, n) == 0) break; /* duplicate: keep lower id */
            i = (i + 1) & m->mask;
        }
    }
    return ST_OK;
}

int32_t st__vmap_find(const st__vocab_map *m, const st_tokenizer *t, bool raw, const char *p,
                      size_t n) {
    if (!m->slots) return -1;
    uint32_t i = (uint32_t)st__hash_bytes(p, n) & m->mask;
    for (;;) {
        int32_t o = m->slots[i];
        if (o < 0) return -1;
        size_t on;
        const char *op = vm_bytes(t, raw, o, &on);
        if (on == n && memcmp(op, p, n) == 0) return o;
        i = (i + 1) & m->mask;
    }
}

void st__vmap_free(st__vocab_map *m) {
    st_free(m->slots);
    m->slots = NULL;
}

st_status st__pairs_init(st__pair_map *m, size_t expected) {
    uint32_t cap = 16;
    while ((size_t)cap < expected * 2 + 2) {
        if (cap >= (1u << 30)) return st__fail(ST_ERR_FORMAT, "tokenizer: too many merges");
        cap <<= 1;
    }
    m->slots = st_malloc((size_t)cap * sizeof *m->slots);
    if (!m->slots) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory (merge table)");
    for (uint32_t i = 0; i < cap; i++) m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->count = 0;
    return ST_OK;
}

static st_status pairs_grow(st__pair_map *m) {
    st__pair_map bigger;
    ST_TRY(st__pairs_init(&bigger, (size_t)(m->mask + 1)));
    for (uint32_t i = 0; i <= m->mask; i++) {
        const st__pair_slot *s = &m->slots[i];
        if (s->key == UINT64_MAX) continue;
        st__pairs_put(&bigger, (int32_t)(s->key >> 32), (int32_t)(uint32_t)s->key, s->rank,
                      s->merged);
    }
    st_free(m->slots);
    *m = bigger;
    return ST_OK;
}

st_status st__pairs_put(st__pair_map *m, int32_t l, int32_t r, int32_t rank, int32_t merged) {
    if (!m->slots) ST_TRY(st__pairs_init(m, 64));
    if ((m->count + 1) * 2 > m->mask + 1) ST_TRY(pairs_grow(m));
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->mask;
    for (;;) {
        st__pair_slot *s = &m->slots[i];
        if (s->key == UINT64_MAX) {
            s->key = key;
            s->rank = rank;
            s->merged = merged;
            m->count++;
            return ST_OK;
        }
        if (s->key == key) {
            if (rank < s->rank) {
                s->rank = rank;
                s->merged = merged;
            }
            return ST_OK;
        }
        i = (i + 1) & m->mask;
    }
}

void st__pairs_free(st__pair_map *m) {
    st_free(m->slots);
    m->slots = NULL;
    m->count = 0;
}

st_status st__ids_push(st__ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        int32_t *v = st_realloc(ids->v, cap * sizeof *v);
        if (!v) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory for %zu ids", cap);
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return ST_OK;
}

/* ---- GPT-2 bytes_to_unicode ----------------------------------------------------------- */
static bool printable_byte(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t st__byte_to_unicode(uint8_t b) {
    if (printable_byte(b)) return b;
    uint32_t n = 0;
    for (int i = 0; i < b; i++)
        if (!printable_byte(i)) n++;
    return 256 + n;
}

int st__unicode_to_byte(uint32_t cp) {
    if (cp < 256) return printable_byte((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1; /* 68 bytes are not printable */
    uint32_t n = cp - 256;
    for (int i = 0; i < 256; i++)
        if (!printable_byte(i) && n-- == 0) return i;
    return -1;
}

/* ---- loading ------------------------------------------------------------------------------- */
static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}
static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}
static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static st_status load_gpt2_dir(const char *dir, st_tokenizer **out) {
    char enc_path[PATH_MAX], bpe_path[PATH_MAX];
    snprintf(enc_path, sizeof enc_path, "%s/encoder.json", dir);
    snprintf(bpe_path, sizeof bpe_path, "%s/vocab.bpe", dir);
    char *enc = NULL, *bpe = NULL;
    size_t enc_n = 0, bpe_n = 0;
    st_status s = st_text_read_file(enc_path, TOK_MAX_FILE_BYTES, &enc, &enc_n);
    if (s == ST_OK) s = st_text_read_file(bpe_path, TOK_MAX_FILE_BYTES, &bpe, &bpe_n);
    if (s == ST_OK) s = st__load_gpt2_mem(enc, enc_n, enc_path, bpe, bpe_n, bpe_path, out);
    st_free(enc);
    st_free(bpe);
    return s;
}

typedef st_status (*mem_loader)(const char *, size_t, const char *, st_tokenizer **);

static st_status load_file_with(const char *path, mem_loader fn, st_tokenizer **out) {
    char *buf = NULL;
    size_t n = 0;
    ST_TRY(st_text_read_file(path, TOK_MAX_FILE_BYTES, &buf, &n));
    st_status s = fn(buf, n, path, out);
    st_free(buf);
    return s;
}

static st_status load_path(const char *p, st_tokenizer **out) {
    char sub[PATH_MAX];
    if (is_dir(p)) {
        snprintf(sub, sizeof sub, "%s/tokenizer.json", p);
        if (is_file(sub)) return load_file_with(sub, st__load_hf_json_mem, out);
        snprintf(sub, sizeof sub, "%s/encoder.json", p);
        if (is_file(sub)) return load_gpt2_dir(p, out);
        snprintf(sub, sizeof sub, "%s/tokenizer.bin", p);
        if (is_file(sub)) return load_file_with(sub, st__load_llama2c_mem, out);
        return st__fail(ST_ERR_IO,
                        "%s: folder holds no tokenizer.json, encoder.json + vocab.bpe "
                        "or tokenizer.bin",
                        p);
    }
    if (ends_with(p, ".json")) return load_file_with(p, st__load_hf_json_mem, out);
    if (ends_with(p, ".tiktoken")) return load_file_with(p, st__load_tiktoken_mem, out);
    if (ends_with(p, ".bin")) return load_file_with(p, st__load_llama2c_mem, out);
    /* Unknown extension: sniff the first bytes. */
    char *buf = NULL;
    size_t n = 0;
    ST_TRY(st_text_read_file(p, TOK_MAX_FILE_BYTES, &buf, &n));
    size_t i = 0;
    while (i < n && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t')) i++;
    st_status s;
    if (i < n && buf[i] == '{') s = st__load_hf_json_mem(buf, n, p, out);
    else if (n >= 4 && memchr(buf, ' ', n < 256 ? n : 256) && memchr(buf, '\n', n < 512 ? n : 512))
        s = st__load_tiktoken_mem(buf, n, p, out);
    else s = st__load_llama2c_mem(buf, n, p, out);
    st_free(buf);
    return s;
}

st_status st_tokenizer_load(const char *path_or_name, st_tokenizer **out) {
    if (!path_or_name || !*path_or_name || !out)
        return st__fail(ST_ERR_INVALID_ARG, "st_tokenizer_load: NULL or empty argument");
    *out = NULL;
    const char *rel = NULL;
    if (strcmp(path_or_name, "gpt2") == 0) rel = "gpt2-bpe";
    else if (strcmp(path_or_name, "cl100k_base") == 0 || strcmp(path_or_name, "cl100k") == 0)
        rel = "cl100k/cl100k_base.tiktoken";
    else if (strcmp(path_or_name, "tok512") == 0 || strcmp(path_or_name, "stories260K") == 0)
        rel = "stories260K/tok512.bin";
    if (rel && !is_dir(path_or_name) && !is_file(path_or_name)) {
        const char *dir = getenv("STRATA_DATA_DIR");
        if (!dir || !*dir) dir = "data";
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, rel);
        if (!is_dir(p) && !is_file(p))
            return st__fail(ST_ERR_IO,
                            "tokenizer '%s': %s not found (set STRATA_DATA_DIR to the folder "
                            "holding gpt2-bpe/, cl100k/ and stories260K/)",
                            path_or_name, p);
        return load_path(p, out);
    }
    if (!is_dir(path_or_name) && !is_file(path_or_name))
        return st__fail(ST_ERR_IO,
                        "%s: no such tokenizer file or folder (names: gpt2, cl100k_base, tok512)",
                        path_or_name);
    return load_path(path_or_name, out);
}

/* ---- encoding --------------------------------------------------------------------------------- */
static st_status encode_ordinary(const st_tokenizer *t, const char *text, size_t n,
                                 size_t base_off, st__ids *out) {
    switch (t->kind) {
    case ST_TOK_BPE: return st__bpe_encode_ordinary(t, text, n, out);
    case ST_TOK_CHAR: return st__char_encode(t, text, n, base_off, out);
    case ST_TOK_SENTENCEPIECE: return st__sp_encode(t, text, n, out);
    }
    return st__fail(ST_ERR_INTERNAL, "tokenizer: unknown kind");
}

st_status st_tokenizer_encode(const st_tokenizer *t, const char *text, size_t n_bytes,
                              const st_encode_opts *opts, int32_t **ids, size_t *n_ids) {
    if (!t || (!text && n_bytes) || !ids || !n_ids)
        return st__fail(ST_ERR_INVALID_ARG, "st_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    st__ids out = {0};
    st_status s = ST_OK;
    if (opts && opts->add_bos && t->bos_id >= 0) s = st__ids_push(&out, t->bos_id);
    if (s == ST_OK && (!opts || !opts->allow_special || t->n_special == 0)) {
        s = encode_ordinary(t, text, n_bytes, 0, &out);
    } else if (s == ST_OK) {
        /* Split at special-token text; the earliest match wins, the longest
         * on ties (special_ids are sorted longest first). next[k] caches
         * where special k occurs next, so the scan is linear. */
        int ns = t->n_special;
        size_t *next = st_malloc((size_t)ns * sizeof *next);
        if (!next) s = st__fail(ST_ERR_NOMEM, "tokenizer: out of memory");
        for (int k = 0; next && k < ns; k++) next[k] = SIZE_MAX; /* not searched yet */
        bool *gone = next ? st_calloc((size_t)ns, sizeof *gone) : NULL;
        if (next && !gone) s = st__fail(ST_ERR_NOMEM, "tokenizer: out of memory");
        size_t pos = 0;
        while (s == ST_OK && pos <= n_bytes) {
            size_t best = SIZE_MAX;
            int best_k = -1;
            for (int k = 0; k < ns; k++) {
                if (gone[k]) continue;
                size_t pn;
                const char *p = st__piece(t, t->special_ids[k], &pn);
                if (pn == 0) {
                    gone[k] = true;
                    continue;
                }
                if (next[k] == SIZE_MAX || next[k] < pos) {
                    const char *f = memmem(text + pos, n_bytes - pos, p, pn);
                    if (!f) {
                        gone[k] = true;
                        continue;
                    }
                    next[k] = (size_t)(f - text);
                }
                if (next[k] < best) best = next[k], best_k = k;
            }
            size_t end = best_k >= 0 ? best : n_bytes;
            if (end > pos) s = encode_ordinary(t, text + pos, end - pos, pos, &out);
            if (s != ST_OK || best_k < 0) break;
            s = st__ids_push(&out, t->special_ids[best_k]);
            size_t pn;
            st__piece(t, t->special_ids[best_k], &pn);
            pos = end + pn;
            if (pos == n_bytes) break;
        }
        st_free(next);
        st_free(gone);
    }
    if (s != ST_OK) {
        st_free(out.v);
        return s;
    }
    if (!out.v) {
        out.v = st_malloc(0);
        if (!out.v) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory");
    }
    *ids = out.v;
    *n_ids = out.n;
    return ST_OK;
}

/* ---- decoding ------------------------------------------------------------------------------------ */
st_status st_tokenizer_decode(const st_tokenizer *t, const int32_t *ids, size_t n_ids,
                              char **text, size_t *n_bytes) {
    if (!t || (!ids && n_ids) || !text)
        return st__fail(ST_ERR_INVALID_ARG, "st_tokenizer_decode: NULL argument");
    *text = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab || t->flags[id] == TOKF_ABSENT)
            return st__fail(ST_ERR_BOUNDS, "tokenizer: id %d at position %zu is outside the "
                                           "vocabulary of %d",
                            id, i, t->n_vocab);
        size_t pn;
        st__piece(t, id, &pn);
        total += pn;
    }
    char *buf = st_malloc(total + 1);
    if (!buf) return st__fail(ST_ERR_NOMEM, "tokenizer: out of memory for %zu bytes", total);
    size_t off = 0;
    bool sp = t->kind == ST_TOK_SENTENCEPIECE;
    bool at_start = true; /* SentencePiece: drop the dummy-prefix space */
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (sp && (id == t->bos_id || id == t->eos_id)) {
            at_start = id == t->bos_id;
            continue;
        }
        size_t pn;
        const char *p = st__piece(t, id, &pn);
        if (sp && at_start && pn > 0 && p[0] == ' ') p++, pn--;
        at_start = false;
        memcpy(buf + off, p, pn);
        off += pn;
    }
    buf[off] = '\0';
    *text = buf;
    if (n_bytes) *n_bytes = off;
    return ST_OK;
}
