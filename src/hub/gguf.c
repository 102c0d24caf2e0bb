/*
 * gguf.c — GGUF v2/v3 reading and v3 writing for st_lm (strata/infer.h).
 *
 * Reading maps the file read-only and walks it with a bounded cursor: every
 * length, count and offset is checked against the bytes left before it is
 * used, element counts against the file size (so no allocation is larger
 * than the file allows), products of dimensions for overflow. Metadata
 * values stay in the mapping (gguf_kv points at them); tensor data is used
 * in place (st_wmatrix.data points into the mapping, which the st_lm owns
 * and unmaps). Norm weights and biases that are not f32 are converted into
 * st_lm-owned buffers. Names follow llama.cpp: token_embd, blk.N.attn_q ...
 * for llama (interleaved RoPE, as llama.cpp's converter permutes HF's q/k),
 * blk.N.attn_qkv (split into q, k, v) for gpt2.
 *
 * Writing streams a v3 file (alignment 32) to PATH.tmp, fsyncs and renames
 * it over PATH. An st_lm in HF's RoPE convention (ST_ROPE_HALF) gets its q/k
 * rows permuted exactly as convert_hf_to_gguf.py's permute() does.
 * No shared state; each call is independent.
 */
#include "strata/infer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    GT_U8 = 0, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STRING, GT_ARRAY,
    GT_U64, GT_I64, GT_F64, GT_COUNT
};
/* ggml tensor types used here */
enum { GG_F32 = 0, GG_F16 = 1, GG_Q4_0 = 2, GG_Q8_0 = 8, GG_BF16 = 30 };

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 256
#define GGUF_MAX_DIM (INT64_C(1) << 40)

static const size_t k_scalar_size[GT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct gguf_kv {
    const char *key;
    size_t key_len;
    uint32_t type;       /* GT_* */
    uint32_t elem_type;  /* arrays */
    uint64_t count;      /* arrays */
    const uint8_t *val;  /* the value's bytes (for arrays: the first element) */
} gguf_kv;

typedef struct gguf_tensor {
    const char *name;
    size_t name_len;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t offset;
    const uint8_t *data;
    size_t bytes;
    bool used;
} gguf_tensor;

typedef struct gguf_file {
    const char *path;
    const uint8_t *base;
    size_t size;
    uint32_t version;
    gguf_kv *kv;
    uint64_t n_kv;
    gguf_tensor *t;
    uint64_t n_t;
    size_t alignment;
} gguf_file;

typedef struct cur {
    const uint8_t *p, *end, *base;
    const char *path;
} cur;

static st_status need(cur *c, uint64_t n, const char *what) {
    if (n > (uint64_t)(c->end - c->p))
        return st__fail(ST_ERR_FORMAT, "%s: %s runs past the end of the file (offset %zu)", c->path,
                        what, (size_t)(c->p - c->base));
    return ST_OK;
}

static st_status rd(cur *c, void *dst, size_t n, const char *what) {
    ST_TRY(need(c, n, what));
    memcpy(dst, c->p, n);
    c->p += n;
    return ST_OK;
}

static st_status rd_str(cur *c, const char **s, size_t *n, const char *what) {
    uint64_t len;
    ST_TRY(rd(c, &len, 8, what));
    ST_TRY(need(c, len, what));
    *s = (const char *)c->p;
    *n = (size_t)len;
    c->p += len;
    return ST_OK;
}

/* skips one value of type t (arrays: depth-limited) */
static st_status skip_val(cur *c, uint32_t t, int depth, const char *key) {
    if (t >= GT_COUNT)
        return st__fail(ST_ERR_FORMAT, "%s: metadata \"%.64s\" has unknown type %u", c->path, key,
                        t);
    if (t == GT_STRING) {
        const char *s;
        size_t n;
        return rd_str(c, &s, &n, "a metadata string");
    }
    if (t != GT_ARRAY) {
        ST_TRY(need(c, k_scalar_size[t], "a metadata value"));
        c->p += k_scalar_size[t];
        return ST_OK;
    }
    if (depth > 2)
        return st__fail(ST_ERR_FORMAT, "%s: metadata \"%.64s\": arrays nested too deeply", c->path,
                        key);
    uint32_t et;
    uint64_t cnt;
    ST_TRY(rd(c, &et, 4, "an array type"));
    ST_TRY(rd(c, &cnt, 8, "an array count"));
    if (et >= GT_COUNT)
        return st__fail(ST_ERR_FORMAT, "%s: metadata \"%.64s\": unknown array element type %u",
                        c->path, key, et);
    if (et != GT_STRING && et != GT_ARRAY) {
        if (cnt > (uint64_t)(c->end - c->p) / k_scalar_size[et])
            return st__fail(ST_ERR_FORMAT,
                            "%s: metadata \"%.64s\": array of %llu elements runs past the end",
                            c->path, key, (unsigned long long)cnt);
        c->p += cnt * k_scalar_size[et];
        return ST_OK;
    }
    if (cnt > (uint64_t)(c->end - c->p) / 8) /* every element takes at least 8 bytes */
        return st__fail(ST_ERR_FORMAT,
                        "%s: metadata \"%.64s\": array of %llu elements runs past the end", c->path,
                        key, (unsigned long long)cnt);
    for (uint64_t i = 0; i < cnt; i++) ST_TRY(skip_val(c, et, depth + 1, key));
    return ST_OK;
}

static int ggml_to_wt(uint32_t t) {
    switch (t) {
    case GG_F32: return ST_WT_F32;
    case GG_F16: return ST_WT_F16;
    case GG_BF16: return ST_WT_BF16;
    case GG_Q8_0: return ST_WT_Q8_0;
    case GG_Q4_0: return ST_WT_Q4_0;
    default: return -1;
    }
}

static uint32_t wt_to_ggml(st_wtype t) {
    static const uint32_t m[ST_WT_COUNT_] = {GG_F32, GG_F16, GG_BF16, GG_Q8_0, GG_Q4_0};
    return m[t];
}

static void gguf_close(gguf_file *g) {
    st_free(g->kv);
    st_free(g->t);
}

static st_status gguf_parse(gguf_file *g) {
    cur c = {g->base, g->base + g->size, g->base, g->path};
    uint32_t magic;
    ST_TRY(rd(&c, &magic, 4, "the magic"));
    if (memcmp(&magic, "GGUF", 4) != 0)
        return st__fail(ST_ERR_FORMAT, "%s: not a GGUF file (no \"GGUF\" magic)", g->path);
    ST_TRY(rd(&c, &g->version, 4, "the version"));
    if (g->version != 2 && g->version != 3)
        return st__fail(ST_ERR_FORMAT,
                        "%s: GGUF version %u; versions 2 and 3 are read (convert older files with "
                        "a current llama.cpp)",
                        g->path, g->version);
    ST_TRY(rd(&c, &g->n_t, 8, "the tensor count"));
    ST_TRY(rd(&c, &g->n_kv, 8, "the metadata count"));
    const uint64_t left = (uint64_t)(c.end - c.p);
    if (g->n_kv > left / 13) /* key length 8 + 1 byte + type 4 at least */
        return st__fail(ST_ERR_FORMAT, "%s: metadata count %llu exceeds what the file can hold",
                        g->path, (unsigned long long)g->n_kv);
    if (g->n_t > left / 24) /* name length 8 + n_dims 4 + type 4 + offset 8 at least */
        return st__fail(ST_ERR_FORMAT, "%s: tensor count %llu exceeds what the file can hold",
                        g->path, (unsigned long long)g->n_t);
    g->kv = st_calloc((size_t)g->n_kv + 1, sizeof *g->kv);
    g->t = st_calloc((size_t)g->n_t + 1, sizeof *g->t);
    if (!g->kv || !g->t) return st__fail(ST_ERR_NOMEM, "%s: out of memory", g->path);
    g->alignment = 32;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        ST_TRY(rd_str(&c, &kv->key, &kv->key_len, "a metadata key"));
        char key[80];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key_len < 64 ? kv->key_len : 64), kv->key);
        ST_TRY(rd(&c, &kv->type, 4, "a metadata type"));
        if (kv->type == GT_ARRAY) {
            const uint8_t *at = c.p;
            ST_TRY(skip_val(&c, GT_ARRAY, 0, key));
            memcpy(&kv->elem_type, at, 4);
            memcpy(&kv->count, at + 4, 8);
            kv->val = at + 12;
        } else {
            kv->val = c.p;
            ST_TRY(skip_val(&c, kv->type, 0, key));
        }
        if (kv->key_len == 17 && memcmp(kv->key, "general.alignment", 17) == 0) {
            uint32_t a;
            if (kv->type != GT_U32)
                return st__fail(ST_ERR_FORMAT, "%s: general.alignment is not a uint32", g->path);
            memcpy(&a, kv->val, 4);
            if (a == 0 || (a & (a - 1)) || a > 65536)
                return st__fail(ST_ERR_FORMAT,
                                "%s: general.alignment %u is not a power of two up to 65536",
                                g->path, a);
            g->alignment = a;
        }
    }
    for (uint64_t i = 0; i < g->n_t; i++) {
        gguf_tensor *t = &g->t[i];
        ST_TRY(rd_str(&c, &t->name, &t->name_len, "a tensor name"));
        if (t->name_len == 0 || t->name_len > GGUF_MAX_NAME)
            return st__fail(ST_ERR_FORMAT, "%s: tensor %llu: name of %zu bytes", g->path,
                            (unsigned long long)i, t->name_len);
        const int nl = (int)t->name_len;
        ST_TRY(rd(&c, &t->n_dims, 4, "a tensor's dimension count"));
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return st__fail(ST_ERR_FORMAT, "%s: tensor \"%.*s\": %u dimensions (1 to 4 allowed)",
                            g->path, nl, t->name, t->n_dims);
        int64_t nel = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t v;
            ST_TRY(rd(&c, &v, 8, "a tensor dimension"));
            if (v == 0 || v > (uint64_t)GGUF_MAX_DIM || (uint64_t)nel > (uint64_t)GGUF_MAX_DIM / v)
                return st__fail(ST_ERR_FORMAT, "%s: tensor \"%.*s\": dimension %u is %llu (absurd)",
                                g->path, nl, t->name, d, (unsigned long long)v);
            t->ne[d] = (int64_t)v;
            nel *= (int64_t)v;
        }
        ST_TRY(rd(&c, &t->type, 4, "a tensor type"));
        ST_TRY(rd(&c, &t->offset, 8, "a tensor offset"));
        const int wt = ggml_to_wt(t->type);
        if (wt < 0)
            return st__fail(ST_ERR_FORMAT,
                            "%s: tensor \"%.*s\": ggml type %u is not supported (f32, f16, bf16, "
                            "q8_0, q4_0 are)",
                            g->path, nl, t->name, t->type);
        const size_t rb = st_wtype_row_bytes((st_wtype)wt, t->ne[0]);
        if (rb == 0)
            return st__fail(ST_ERR_FORMAT, "%s: tensor \"%.*s\": %lld columns do not fit type %s",
                            g->path, nl, t->name, (long long)t->ne[0],
                            st_wtype_name((st_wtype)wt));
        t->bytes = rb * (size_t)(nel / t->ne[0]);
        for (uint64_t j = 0; j < i; j++)
            if (g->t[j].name_len == t->name_len && memcmp(g->t[j].name, t->name, t->name_len) == 0)
                return st__fail(ST_ERR_FORMAT, "%s: tensor \"%.*s\" appears twice", g->path, nl,
                                t->name);
    }
    const size_t pos = (size_t)(c.p - g->base);
    const size_t data_start = (pos + g->alignment - 1) / g->alignment * g->alignment;
    if (data_start > g->size && g->n_t > 0)
        return st__fail(ST_ERR_FORMAT, "%s: the tensor data section starts past the end", g->path);
    for (uint64_t i = 0; i < g->n_t; i++) {
        gguf_tensor *t = &g->t[i];
        const size_t avail = g->size - data_start;
        if (t->offset % g->alignment || t->offset > avail || t->bytes > avail - t->offset)
            return st__fail(ST_ERR_FORMAT,
                            "%s: tensor \"%.*s\": data at offset %llu (%zu bytes) is misaligned or "
                            "past the end",
                            g->path, (int)t->name_len, t->name, (unsigned long long)t->offset,
                            t->bytes);
        t->data = g->base + data_start + t->offset;
    }
    return ST_OK;
}

/* ---- metadata lookups ---------------------------------------------------------- */

static const gguf_kv *kv_find(const gguf_file *g, const char *key) {
    const size_t n = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key_len == n && memcmp(g->kv[i].key, key, n) == 0) return &g->kv[i];
    return NULL;
}

static bool kv_int_at(uint32_t type, const uint8_t *p, int64_t *v) {
    switch (type) {
    case GT_U8: *v = p[0]; return true;
    case GT_I8: *v = (int8_t)p[0]; return true;
    case GT_U16: { uint16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case GT_I16: { int16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case GT_U32: { uint32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case GT_I32: { int32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case GT_U64: { uint64_t x; memcpy(&x, p, 8); *v = x > INT64_MAX ? INT64_MAX : (int64_t)x; return true; }
    case GT_I64: { int64_t x; memcpy(&x, p, 8); *v = x; return true; }
    default: return false;
    }
}

/* An integer in [lo, hi]; missing: *v = dflt (or an error when dflt < lo). */
static st_status kv_int(const gguf_file *g, const char *key, int64_t lo, int64_t hi, int64_t dflt,
                        int64_t *v) {
    const gguf_kv *kv = kv_find(g, key);
    if (!kv) {
        if (dflt < lo) return st__fail(ST_ERR_FORMAT, "%s: metadata %s is missing", g->path, key);
        *v = dflt;
        return ST_OK;
    }
    if (!kv_int_at(kv->type, kv->val, v))
        return st__fail(ST_ERR_FORMAT, "%s: metadata %s is not an integer", g->path, key);
    if (*v < lo || *v > hi)
        return st__fail(ST_ERR_FORMAT, "%s: metadata %s = %lld is outside [%lld, %lld]", g->path,
                        key, (long long)*v, (long long)lo, (long long)hi);
    return ST_OK;
}

static st_status kv_f32(const gguf_file *g, const char *key, float dflt, float *v) {
    const gguf_kv *kv = kv_find(g, key);
    if (!kv) {
        *v = dflt;
        return ST_OK;
    }
    if (kv->type == GT_F32) memcpy(v, kv->val, 4);
    else if (kv->type == GT_F64) {
        double d;
        memcpy(&d, kv->val, 8);
        *v = (float)d;
    } else return st__fail(ST_ERR_FORMAT, "%s: metadata %s is not a float", g->path, key);
    if (!(*v == *v)) return st__fail(ST_ERR_FORMAT, "%s: metadata %s is NaN", g->path, key);
    return ST_OK;
}

/* string value (not NUL-terminated) or NULL */
static const char *kv_str(const gguf_file *g, const char *key, size_t *n) {
    const gguf_kv *kv = kv_find(g, key);
    if (!kv || kv->type != GT_STRING) return NULL;
    uint64_t len;
    memcpy(&len, kv->val, 8);
    *n = (size_t)len;
    return (const char *)kv->val + 8;
}

/* ---- tensors into the st_lm ---------------------------------------------------- */

static gguf_tensor *tensor_find(gguf_file *g, const char *name) {
    const size_t n = strlen(name);
    for (uint64_t i = 0; i < g->n_t; i++)
        if (g->t[i].name_len == n && memcmp(g->t[i].name, name, n) == 0) return &g->t[i];
    return NULL;
}

/* a matrix [rows, cols] (rows = ne[1]); required unless optional */
static st_status get_matrix(gguf_file *g, const char *name, int64_t rows, int64_t cols,
                            bool optional, st_wmatrix *w) {
    gguf_tensor *t = tensor_find(g, name);
    if (!t) {
        if (optional) return ST_OK;
        return st__fail(ST_ERR_FORMAT, "%s: tensor %s is missing", g->path, name);
    }
    if (t->n_dims > 2 || t->ne[0] != cols || t->ne[1] != rows)
        return st__fail(ST_ERR_FORMAT, "%s: tensor %s is [%lld, %lld], expected ne [%lld, %lld]",
                        g->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)cols,
                        (long long)rows);
    t->used = true;
    w->type = (st_wtype)ggml_to_wt(t->type);
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = st_wtype_row_bytes(w->type, cols);
    w->data = t->data;
    return ST_OK;
}

/* a row slice [r0, r0 + n) of a matrix */
static st_wmatrix slice_rows(const st_wmatrix *w, int64_t r0, int64_t n) {
    st_wmatrix s = *w;
    s.rows = n;
    s.data = (const char *)w->data + (size_t)r0 * w->row_bytes;
    return s;
}

/* an f32 vector of n elements (converted when stored otherwise) */
static st_status get_vec(gguf_file *g, st_lm *lm, const char *name, int64_t n, bool optional,
                         const float **out) {
    gguf_tensor *t = tensor_find(g, name);
    if (!t) {
        if (optional) return ST_OK;
        return st__fail(ST_ERR_FORMAT, "%s: tensor %s is missing", g->path, name);
    }
    int64_t nel = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) nel *= t->ne[d];
    if (nel != n)
        return st__fail(ST_ERR_FORMAT, "%s: tensor %s has %lld elements, expected %lld", g->path,
                        name, (long long)nel, (long long)n);
    t->used = true;
    if (t->type == GG_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = (const float *)t->data;
        return ST_OK;
    }
    float *f = st_lm_alloc(lm, (size_t)n * sizeof(float));
    if (!f) return st__fail(ST_ERR_NOMEM, "%s: out of memory", g->path);
    const size_t rb = st_wtype_row_bytes((st_wtype)ggml_to_wt(t->type), t->ne[0]);
    for (int64_t r = 0; r < n / t->ne[0]; r++)
        ST_TRY(st_dequantize_row((st_wtype)ggml_to_wt(t->type), t->data + (size_t)r * rb, t->ne[0],
                                 f + r * t->ne[0]));
    *out = f;
    return ST_OK;
}

/* a string array's element i (after validation by the parser) */
typedef struct str_iter {
    const uint8_t *p;
} str_iter;
static const char *str_next(str_iter *it, size_t *n) {
    uint64_t len;
    memcpy(&len, it->p, 8);
    const char *s = (const char *)it->p + 8;
    it->p += 8 + len;
    *n = (size_t)len;
    return s;
}

static st_status load_tokenizer(gguf_file *g, st_lm *lm) {
    size_t mn;
    const char *model = kv_str(g, "tokenizer.ggml.model", &mn);
    if (!model) return ST_OK; /* no tokenizer: the caller may load one */
    const gguf_kv *tk = kv_find(g, "tokenizer.ggml.tokens");
    if (!tk || tk->type != GT_ARRAY || tk->elem_type != GT_STRING || tk->count == 0 ||
        tk->count > (1u << 24))
        return st__fail(ST_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing or not a string array",
                        g->path);
    const int n = (int)tk->count;
    int64_t bos = -1, eos = -1;
    ST_TRY(kv_int(g, "tokenizer.ggml.bos_token_id", -1, n - 1, -1, &bos));
    ST_TRY(kv_int(g, "tokenizer.ggml.eos_token_id", -1, n - 1, -1, &eos));
    const char **tok = st_malloc((size_t)n * sizeof *tok);
    size_t *len = st_malloc((size_t)n * sizeof *len);
    float *scores = NULL;
    const char **merges = NULL;
    size_t *mlen = NULL;
    st_status s = tok && len ? ST_OK : st__fail(ST_ERR_NOMEM, "%s: out of memory", g->path);
    str_iter it = {tk->val};
    for (int i = 0; s == ST_OK && i < n; i++) tok[i] = str_next(&it, &len[i]);
    char name[300];
    snprintf(name, sizeof name, "%s (tokenizer)", g->path);
    if (s == ST_OK && mn == 5 && memcmp(model, "llama", 5) == 0) {
        const gguf_kv *sc = kv_find(g, "tokenizer.ggml.scores");
        if (sc && (sc->type != GT_ARRAY || sc->elem_type != GT_F32 || sc->count != tk->count))
            s = st__fail(ST_ERR_FORMAT, "%s: tokenizer.ggml.scores is not %d floats", g->path, n);
        if (s == ST_OK && sc) {
            scores = st_malloc((size_t)n * sizeof *scores);
            if (!scores) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", g->path);
            else memcpy(scores, sc->val, (size_t)n * 4);
        }
        if (s == ST_OK)
            s = st_tokenizer_from_sp_pieces(n, tok, len, scores, (int)bos, (int)eos, name, &lm->tok);
    } else if (s == ST_OK && mn == 4 && memcmp(model, "gpt2", 4) == 0) {
        const gguf_kv *mg = kv_find(g, "tokenizer.ggml.merges");
        if (!mg || mg->type != GT_ARRAY || mg->elem_type != GT_STRING || mg->count > (1u << 24))
            s = st__fail(ST_ERR_FORMAT, "%s: tokenizer.ggml.merges is missing or not strings",
                         g->path);
        const int nm = s == ST_OK ? (int)mg->count : 0;
        if (s == ST_OK) {
            merges = st_malloc(((size_t)nm + 1) * sizeof *merges);
            mlen = st_malloc(((size_t)nm + 1) * sizeof *mlen);
            if (!merges || !mlen) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", g->path);
        }
        str_iter mi = {s == ST_OK ? mg->val : NULL};
        for (int i = 0; s == ST_OK && i < nm; i++) merges[i] = str_next(&mi, &mlen[i]);
        if (s == ST_OK) s = st_tokenizer_from_bpe_lists(n, tok, len, nm, merges, mlen, name, &lm->tok);
    } else if (s == ST_OK) {
        st_log_msg(ST_LOG_WARN, "%s: tokenizer model \"%.*s\" is not supported; no tokenizer",
                   g->path, (int)(mn > 40 ? 40 : mn), model);
    }
    if (s == ST_OK) {
        lm->bos_id = lm->tok ? st_tokenizer_bos_id(lm->tok) : (int32_t)bos;
        lm->eos_id = lm->tok ? st_tokenizer_eos_id(lm->tok) : (int32_t)eos;
        if (bos >= 0) lm->bos_id = (int32_t)bos;
        if (eos >= 0) lm->eos_id = (int32_t)eos;
    }
    st_free(tok);
    st_free(len);
    st_free(scores);
    st_free(merges);
    st_free(mlen);
    return s;
}

static st_status load_config(gguf_file *g, st_model_config *cfg) {
    size_t an;
    const char *arch = kv_str(g, "general.architecture", &an);
    if (!arch) return st__fail(ST_ERR_FORMAT, "%s: general.architecture is missing", g->path);
    const char *a;
    if (an == 5 && memcmp(arch, "llama", 5) == 0) a = "llama";
    else if (an == 4 && memcmp(arch, "gpt2", 4) == 0) a = "gpt2";
    else
        return st__fail(ST_ERR_UNSUPPORTED,
                        "%s: architecture \"%.*s\" is not supported (llama and gpt2 are)", g->path,
                        (int)(an > 40 ? 40 : an), arch);
    const bool llama = a[0] == 'l';
    *cfg = st_model_config_default(llama ? ST_ARCH_LLAMA : ST_ARCH_GPT2);
    char k[96];
    int64_t v;
#define KI(name, lo, hi, dflt, field)                         \
    snprintf(k, sizeof k, "%s." name, a);                     \
    ST_TRY(kv_int(g, k, lo, hi, dflt, &v));                   \
    cfg->field = (int)v
    KI("context_length", 1, 1 << 24, -1, n_ctx);
    KI("embedding_length", 1, 1 << 20, -1, n_embd);
    KI("block_count", 1, 4096, -1, n_layer);
    KI("feed_forward_length", 1, 1 << 22, -1, n_ff);
    KI("attention.head_count", 1, 1 << 14, -1, n_head);
    KI("attention.head_count_kv", 1, 1 << 14, cfg->n_head, n_kv_head);
#undef KI
    if (llama) {
        ST_TRY(kv_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &cfg->norm_eps));
        ST_TRY(kv_f32(g, "llama.rope.freq_base", 10000.0f, &cfg->rope_theta));
        cfg->bias = false;
    } else {
        ST_TRY(kv_f32(g, "gpt2.attention.layer_norm_epsilon", 1e-5f, &cfg->norm_eps));
        cfg->bias = true;
        cfg->tie_embeddings = true;
    }
    gguf_tensor *te = tensor_find(g, "token_embd.weight");
    if (!te || te->n_dims != 2)
        return st__fail(ST_ERR_FORMAT, "%s: tensor token_embd.weight is missing or not 2-D",
                        g->path);
    if (te->ne[1] > (1 << 24))
        return st__fail(ST_ERR_FORMAT, "%s: vocabulary of %lld tokens", g->path,
                        (long long)te->ne[1]);
    cfg->vocab_size = (int)te->ne[1];
    if (llama) cfg->tie_embeddings = tensor_find(g, "output.weight") == NULL;
    cfg->dropout = 0;
    if (st_model_config_validate(cfg) != ST_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", st_last_error());
        return st__fail(ST_ERR_FORMAT, "%s: the hyperparameters are inconsistent: %s", g->path,
                        why);
    }
    return ST_OK;
}

static st_status load_tensors(gguf_file *g, st_lm *lm) {
    const st_model_config *c = &lm->cfg;
    const bool gpt2 = c->arch == ST_ARCH_GPT2;
    const int64_t E = c->n_embd, V = c->vocab_size, F = c->n_ff, hd = E / c->n_head;
    const int64_t Q = c->n_head * hd, KV = c->n_kv_head * hd;
    ST_TRY(get_matrix(g, "token_embd.weight", V, E, false, &lm->tok_embd));
    ST_TRY(get_matrix(g, "output.weight", V, E, true, &lm->lm_head));
    if (!lm->lm_head.data) lm->lm_head = lm->tok_embd;
    ST_TRY(get_vec(g, lm, "output_norm.weight", E, false, &lm->lnf_w));
    ST_TRY(get_vec(g, lm, "output_norm.bias", E, !gpt2, &lm->lnf_b));
    if (gpt2) ST_TRY(get_vec(g, lm, "position_embd.weight", (int64_t)c->n_ctx * E, false, &lm->pos_embd));
    char n[64];
    for (int l = 0; l < c->n_layer; l++) {
        st_lm_layer *L = &lm->layers[l];
#define NM(s) (snprintf(n, sizeof n, "blk.%d." s, l), n)
        ST_TRY(get_vec(g, lm, NM("attn_norm.weight"), E, false, &L->ln1_w));
        ST_TRY(get_vec(g, lm, NM("ffn_norm.weight"), E, false, &L->ln2_w));
        ST_TRY(get_matrix(g, NM("attn_output.weight"), E, Q, false, &L->wo));
        ST_TRY(get_matrix(g, NM("ffn_up.weight"), F, E, false, &L->w_up));
        ST_TRY(get_matrix(g, NM("ffn_down.weight"), E, F, false, &L->w_down));
        if (!gpt2) {
            ST_TRY(get_matrix(g, NM("attn_q.weight"), Q, E, false, &L->wq));
            ST_TRY(get_matrix(g, NM("attn_k.weight"), KV, E, false, &L->wk));
            ST_TRY(get_matrix(g, NM("attn_v.weight"), KV, E, false, &L->wv));
            ST_TRY(get_matrix(g, NM("ffn_gate.weight"), F, E, false, &L->w_gate));
            continue;
        }
        st_wmatrix qkv = {0};
        ST_TRY(get_matrix(g, NM("attn_qkv.weight"), Q + 2 * KV, E, false, &qkv));
        L->wq = slice_rows(&qkv, 0, Q);
        L->wk = slice_rows(&qkv, Q, KV);
        L->wv = slice_rows(&qkv, Q + KV, KV);
        const float *bqkv = NULL;
        ST_TRY(get_vec(g, lm, NM("attn_qkv.bias"), Q + 2 * KV, false, &bqkv));
        L->bq = bqkv;
        L->bk = bqkv + Q;
        L->bv = bqkv + Q + KV;
        ST_TRY(get_vec(g, lm, NM("attn_norm.bias"), E, false, &L->ln1_b));
        ST_TRY(get_vec(g, lm, NM("ffn_norm.bias"), E, false, &L->ln2_b));
        ST_TRY(get_vec(g, lm, NM("attn_output.bias"), E, false, &L->bo));
        ST_TRY(get_vec(g, lm, NM("ffn_up.bias"), F, false, &L->b_up));
        ST_TRY(get_vec(g, lm, NM("ffn_down.bias"), E, false, &L->b_down));
#undef NM
    }
    for (uint64_t i = 0; i < g->n_t; i++)
        if (!g->t[i].used)
            st_log_msg(ST_LOG_DEBUG, "%s: tensor \"%.*s\" is not used", g->path,
                       (int)g->t[i].name_len, g->t[i].name);
    return ST_OK;
}

st_status st_lm_load_gguf(const char *path, st_lm **out) {
    if (!path || !out) return st__fail(ST_ERR_INVALID_ARG, "st_lm_load_gguf: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 24) {
        close(fd);
        return st__fail(ST_ERR_FORMAT, "%s: not a GGUF file (too short or not a regular file)",
                        path);
    }
    const size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return st__fail(ST_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    gguf_file g = {.path = path, .base = map, .size = size};
    st_lm *lm = NULL;
    st_model_config cfg;
    st_status s = gguf_parse(&g);
    if (s == ST_OK) s = load_config(&g, &cfg);
    if (s == ST_OK) s = st_lm_new_empty(&cfg, &lm);
    if (s == ST_OK) {
        lm->map = map;
        lm->map_bytes = size;
        lm->rope = ST_ROPE_INTERLEAVED;
        s = load_tensors(&g, lm);
    }
    if (s == ST_OK) s = load_tokenizer(&g, lm);
    if (s == ST_OK) {
        lm->source = st_malloc(strlen(path) + 1);
        if (lm->source) strcpy(lm->source, path);
        s = st_lm_validate(lm, path);
    }
    gguf_close(&g);
    if (s != ST_OK) {
        if (lm) st_lm_free(lm);
        else munmap(map, size);
        return s;
    }
    *out = lm;
    return ST_OK;
}

/* ---- writing ------------------------------------------------------------------- */

typedef struct wr {
    FILE *f;
    uint64_t pos;
    bool err;
} wr;

static void w_bytes(wr *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) w->err = true;
    w->pos += n;
}
static void w_u32(wr *w, uint32_t v) { w_bytes(w, &v, 4); }
static void w_u64(wr *w, uint64_t v) { w_bytes(w, &v, 8); }
static void w_str(wr *w, const char *s, size_t n) {
    w_u64(w, n);
    w_bytes(w, s, n);
}
static void w_key(wr *w, const char *k, uint32_t type) {
    w_str(w, k, strlen(k));
    w_u32(w, type);
}
static void kv_u32(wr *w, const char *k, uint32_t v) { w_key(w, k, GT_U32), w_u32(w, v); }
static void kv_f32w(wr *w, const char *k, float v) { w_key(w, k, GT_F32), w_bytes(w, &v, 4); }
static void kv_strw(wr *w, const char *k, const char *v) {
    w_key(w, k, GT_STRING);
    w_str(w, v, strlen(v));
}
static void w_pad(wr *w, size_t align) {
    static const uint8_t z[64];
    while (w->pos % align) w_bytes(w, z, (size_t)(align - w->pos % align) > 64 ? 64 : (size_t)(align - w->pos % align));
}

/* one tensor to write: a matrix (optionally a q/k row permutation), or an f32 vector */
typedef struct out_t {
    char name[64];
    st_wmatrix m;       /* matrices */
    const float *v;     /* vectors */
    int64_t v_n;
    int perm_heads;     /* > 0: permute rows HF -> interleaved over this many heads */
    uint64_t offset;
} out_t;

static size_t out_bytes(const out_t *t) {
    return t->v ? (size_t)t->v_n * 4 : (size_t)t->m.rows * t->m.row_bytes;
}

/* source row of output row r: convert_hf_to_gguf.py permute(w, n_head) */
static int64_t perm_src(int64_t r, int64_t rows, int heads) {
    const int64_t hd = rows / heads, h = r / hd, i = r % hd;
    return h * hd + (i % 2) * (hd / 2) + i / 2;
}

static void add_m(out_t *o, int *n, const char *name, const st_wmatrix *m, int perm) {
    out_t *t = &o[(*n)++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->m = *m;
    t->perm_heads = perm;
}
static void add_v(out_t *o, int *n, const char *name, const float *v, int64_t len) {
    if (!v) return;
    out_t *t = &o[(*n)++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->v = v;
    t->v_n = len;
}

static void write_tokenizer(wr *w, const st_lm *lm, int *n_kv_written, bool count_only) {
    const st_tokenizer *tk = lm->tok;
    if (!tk) return;
    const st_tokenizer_kind kind = st_tokenizer_get_kind(tk);
    if (kind != ST_TOK_SENTENCEPIECE && kind != ST_TOK_BPE) return;
    const int n = st_tokenizer_vocab_size(tk);
    if (count_only) {
        *n_kv_written += kind == ST_TOK_SENTENCEPIECE ? 6 : 5;
        return;
    }
    kv_strw(w, "tokenizer.ggml.model", kind == ST_TOK_SENTENCEPIECE ? "llama" : "gpt2");
    w_key(w, "tokenizer.ggml.tokens", GT_ARRAY);
    w_u32(w, GT_STRING);
    w_u64(w, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        char *p = NULL;
        size_t len = 0;
        if (kind == ST_TOK_SENTENCEPIECE) {
            if (st_tokenizer_sp_piece(tk, i, &p, &len, NULL, NULL) != ST_OK) w->err = true;
        } else {
            if (st_tokenizer_bpe_token(tk, i, &p) != ST_OK) w->err = true;
            if (!p) { /* an absent id: a placeholder llama.cpp will never produce */
                char ph[32];
                snprintf(ph, sizeof ph, "[PAD%d]", i);
                w_str(w, ph, strlen(ph));
                continue;
            }
            len = strlen(p);
        }
        w_str(w, p ? p : "", p ? len : 0);
        st_free(p);
    }
    if (kind == ST_TOK_SENTENCEPIECE) {
        w_key(w, "tokenizer.ggml.scores", GT_ARRAY);
        w_u32(w, GT_F32);
        w_u64(w, (uint64_t)n);
        for (int i = 0; i < n; i++) {
            char *p = NULL;
            size_t len;
            float sc = 0;
            st_tokenizer_sp_piece(tk, i, &p, &len, &sc, NULL);
            st_free(p);
            w_bytes(w, &sc, 4);
        }
        w_key(w, "tokenizer.ggml.token_type", GT_ARRAY);
        w_u32(w, GT_I32);
        w_u64(w, (uint64_t)n);
        for (int i = 0; i < n; i++) {
            char *p = NULL;
            size_t len;
            int ty = 1;
            st_tokenizer_sp_piece(tk, i, &p, &len, NULL, &ty);
            st_free(p);
            int32_t t32 = ty;
            w_bytes(w, &t32, 4);
        }
    } else {
        char **m = NULL;
        int nm = 0;
        if (st_tokenizer_bpe_merges(tk, &m, &nm) != ST_OK) w->err = true;
        w_key(w, "tokenizer.ggml.merges", GT_ARRAY);
        w_u32(w, GT_STRING);
        w_u64(w, (uint64_t)nm);
        for (int i = 0; i < nm; i++) {
            w_str(w, m[i] ? m[i] : "", m[i] ? strlen(m[i]) : 0);
            st_free(m[i]);
        }
        st_free(m);
    }
    const int bos = lm->bos_id >= 0 ? lm->bos_id : st_tokenizer_bos_id(tk);
    const int eos = lm->eos_id >= 0 ? lm->eos_id : st_tokenizer_eos_id(tk);
    kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)(bos < 0 ? 0 : bos));
    kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(eos < 0 ? 0 : eos));
}

static uint32_t file_type(const st_lm *lm) {
    switch (lm->layers[0].wq.type) { /* llama.cpp's LLAMA_FTYPE of the bulk of the weights */
    case ST_WT_F16: return 1;
    case ST_WT_Q4_0: return 2;
    case ST_WT_Q8_0: return 7;
    case ST_WT_BF16: return 32;
    default: return 0;
    }
}

st_status st_lm_save_gguf(const st_lm *lm, const char *path) {
    if (!lm || !path) return st__fail(ST_ERR_INVALID_ARG, "st_lm_save_gguf: NULL argument");
    ST_TRY(st_lm_validate(lm, lm->source));
    const st_model_config *c = &lm->cfg;
    const bool gpt2 = c->arch == ST_ARCH_GPT2;
    const int64_t E = c->n_embd, V = c->vocab_size, F = c->n_ff, hd = E / c->n_head;
    const int64_t Q = c->n_head * hd, KV = c->n_kv_head * hd;
    const int cap = 8 + c->n_layer * 16;
    out_t *o = st_calloc((size_t)cap, sizeof *o);
    float **qkv_bias = gpt2 ? st_calloc((size_t)c->n_layer, sizeof *qkv_bias) : NULL;
    if (!o || (gpt2 && !qkv_bias)) {
        st_free(o);
        st_free(qkv_bias);
        return st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
    }
    int n = 0;
    const bool half = !gpt2 && lm->rope == ST_ROPE_HALF;
    add_m(o, &n, "token_embd.weight", &lm->tok_embd, 0);
    if (gpt2) add_v(o, &n, "position_embd.weight", lm->pos_embd, (int64_t)c->n_ctx * E);
    add_v(o, &n, "output_norm.weight", lm->lnf_w, E);
    add_v(o, &n, "output_norm.bias", lm->lnf_b, E);
    if (lm->lm_head.data != lm->tok_embd.data || lm->lm_head.type != lm->tok_embd.type)
        add_m(o, &n, "output.weight", &lm->lm_head, 0);
    st_status s = ST_OK;
    for (int l = 0; l < c->n_layer && s == ST_OK; l++) {
        const st_lm_layer *L = &lm->layers[l];
        char nm[64];
#define NM(x) (snprintf(nm, sizeof nm, "blk.%d." x, l), nm)
        add_v(o, &n, NM("attn_norm.weight"), L->ln1_w, E);
        add_v(o, &n, NM("attn_norm.bias"), L->ln1_b, E);
        if (gpt2) {
            /* q, k, v rows are contiguous in one fused tensor only when they share a type */
            if (L->wq.type != L->wk.type || L->wq.type != L->wv.type) {
                s = st__fail(ST_ERR_UNSUPPORTED, "%s: gpt2 layer %d: q, k, v of different types",
                             path, l);
                break;
            }
            st_wmatrix f = L->wq;
            f.rows = Q + 2 * KV;
            f.data = NULL; /* assembled while writing */
            add_m(o, &n, NM("attn_qkv.weight"), &f, 0);
            if (L->bq) {
                qkv_bias[l] = st_malloc((size_t)(Q + 2 * KV) * sizeof(float));
                if (!qkv_bias[l]) {
                    s = st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
                    break;
                }
                memcpy(qkv_bias[l], L->bq, (size_t)Q * 4);
                memcpy(qkv_bias[l] + Q, L->bk, (size_t)KV * 4);
                memcpy(qkv_bias[l] + Q + KV, L->bv, (size_t)KV * 4);
                add_v(o, &n, NM("attn_qkv.bias"), qkv_bias[l], Q + 2 * KV);
            }
        } else {
            add_m(o, &n, NM("attn_q.weight"), &L->wq, half ? c->n_head : 0);
            add_m(o, &n, NM("attn_k.weight"), &L->wk, half ? c->n_kv_head : 0);
            add_m(o, &n, NM("attn_v.weight"), &L->wv, 0);
        }
        add_m(o, &n, NM("attn_output.weight"), &L->wo, 0);
        add_v(o, &n, NM("attn_output.bias"), L->bo, E);
        add_v(o, &n, NM("ffn_norm.weight"), L->ln2_w, E);
        add_v(o, &n, NM("ffn_norm.bias"), L->ln2_b, E);
        if (!gpt2) add_m(o, &n, NM("ffn_gate.weight"), &L->w_gate, 0);
        add_m(o, &n, NM("ffn_up.weight"), &L->w_up, 0);
        add_v(o, &n, NM("ffn_up.bias"), L->b_up, F);
        add_m(o, &n, NM("ffn_down.weight"), &L->w_down, 0);
        add_v(o, &n, NM("ffn_down.bias"), L->b_down, E);
#undef NM
    }
    (void)V;
    char *tmp = NULL;
    FILE *f = NULL;
    if (s == ST_OK) {
        tmp = st_malloc(strlen(path) + 5);
        if (!tmp) s = st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
        else sprintf(tmp, "%s.tmp", path);
    }
    if (s == ST_OK && !(f = fopen(tmp, "wb")))
        s = st__fail(ST_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    if (s == ST_OK) {
        wr w = {f, 0, false};
        const char *arch = gpt2 ? "gpt2" : "llama";
        int n_kv = 0;
        write_tokenizer(&w, lm, &n_kv, true);
        n_kv += gpt2 ? 10 : 13;
        w_bytes(&w, "GGUF", 4);
        w_u32(&w, 3);
        w_u64(&w, (uint64_t)n);
        w_u64(&w, (uint64_t)n_kv);
        kv_strw(&w, "general.architecture", arch);
        char name[128];
        snprintf(name, sizeof name, "strata-%s", arch);
        kv_strw(&w, "general.name", name);
        kv_u32(&w, "general.alignment", 32);
        kv_u32(&w, "general.file_type", file_type(lm));
        char k[96];
#define KU(x, v) (snprintf(k, sizeof k, "%s." x, arch), kv_u32(&w, k, (uint32_t)(v)))
        KU("context_length", c->n_ctx);
        KU("embedding_length", c->n_embd);
        KU("block_count", c->n_layer);
        KU("feed_forward_length", c->n_ff);
        KU("attention.head_count", c->n_head);
        if (gpt2) {
            kv_f32w(&w, "gpt2.attention.layer_norm_epsilon", c->norm_eps);
        } else {
            KU("attention.head_count_kv", c->n_kv_head);
            KU("rope.dimension_count", hd);
            kv_f32w(&w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
            kv_f32w(&w, "llama.rope.freq_base", c->rope_theta);
        }
#undef KU
        write_tokenizer(&w, lm, &n_kv, false);
        uint64_t off = 0;
        for (int i = 0; i < n; i++) {
            out_t *t = &o[i];
            t->offset = off;
            off = (off + out_bytes(t) + 31) / 32 * 32;
            w_str(&w, t->name, strlen(t->name));
            if (t->v) {
                w_u32(&w, 1);
                w_u64(&w, (uint64_t)t->v_n);
                w_u32(&w, GG_F32);
            } else {
                w_u32(&w, 2);
                w_u64(&w, (uint64_t)t->m.cols);
                w_u64(&w, (uint64_t)t->m.rows);
                w_u32(&w, wt_to_ggml(t->m.type));
            }
            w_u64(&w, t->offset);
        }
        w_pad(&w, 32);
        const uint64_t base = w.pos;
        for (int i = 0; i < n && !w.err; i++) {
            out_t *t = &o[i];
            while (w.pos - base < t->offset) w_pad(&w, 32);
            if (t->v) {
                w_bytes(&w, t->v, out_bytes(t));
            } else if (!t->m.data) { /* gpt2 fused qkv */
                const int layer = atoi(t->name + 4);
                const st_lm_layer *L = &lm->layers[layer];
                w_bytes(&w, L->wq.data, (size_t)Q * L->wq.row_bytes);
                w_bytes(&w, L->wk.data, (size_t)KV * L->wk.row_bytes);
                w_bytes(&w, L->wv.data, (size_t)KV * L->wv.row_bytes);
            } else if (t->perm_heads > 0) {
                for (int64_t r = 0; r < t->m.rows; r++)
                    w_bytes(&w,
                            (const char *)t->m.data +
                                (size_t)perm_src(r, t->m.rows, t->perm_heads) * t->m.row_bytes,
                            t->m.row_bytes);
            } else {
                w_bytes(&w, t->m.data, out_bytes(t));
            }
        }
        w_pad(&w, 32);
        if (fflush(f) != 0 || fsync(fileno(f)) != 0) w.err = true;
        if (fclose(f) != 0) w.err = true;
        f = NULL;
        if (w.err) s = st__fail(ST_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        else if (rename(tmp, path) != 0)
            s = st__fail(ST_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
        if (s != ST_OK) unlink(tmp);
    }
    st_free(tmp);
    for (int l = 0; gpt2 && l < c->n_layer; l++) st_free(qkv_bias[l]);
    st_free(qkv_bias);
    st_free(o);
    return s;
}
