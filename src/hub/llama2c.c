/*
 * llama2c.c — llama2.c checkpoints (karpathy/llama2.c) read into an st_lm.
 *
 * Two layouts, both little-endian float32 weights in [out, in] order:
 *  - legacy (run.c's, "version 0"): 7 int32 header { dim, hidden_dim,
 *    n_layers, n_heads, n_kv_heads, vocab_size, seq_len } (vocab_size < 0:
 *    the classifier is not shared), then token_embedding [V, dim],
 *    rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim], wv, wo
 *    [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim], w2 [L, dim,
 *    hidden], w3 [L, hidden, dim], rms_final [dim], the old RoPE tables
 *    freq_cis_real/imag [seq_len, head_size/2] each (skipped), then wcls
 *    [V, dim] when not shared;
 *  - version 1 (export.py's version1_export): uint32 magic 0x616b3432
 *    ("ak42"), int32 version 1, the same 7 int32, uint8 shared_classifier,
 *    zero padding to 256 bytes, then rms_att [L, dim], rms_ffn [L, dim],
 *    rms_final [dim], token_embedding, wq, wk, wv, wo, w1, w2, w3, and wcls
 *    when not shared. Version 2 (export.py's int8 "Q8_0" groups) is
 *    refused with a message.
 * w1 is the gate, w3 the up projection, w2 the down projection. RoPE pairs
 * are interleaved (Meta's layout: ST_ROPE_INTERLEAVED), theta 10000, RMSNorm
 * eps 1e-5 (run.c's constants).
 *
 * Every size is checked before a byte is read: header fields against
 * limits, products with overflow checks, the total against the file's
 * length. The file is mapped read-only and the weights point into the
 * mapping (st_lm.map), so loading copies nothing. Single-threaded.
 */
#include "infer/infer_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define L2C_MAGIC 0x616b3432u
#define L2C_V1_HEADER 256

static int32_t rd_i32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    int32_t r;
    memcpy(&r, &v, 4);
    return r;
}

/* a running byte offset with overflow and end-of-file checks */
typedef struct cursor {
    const unsigned char *base;
    size_t n, off;
    const char *source;
    st_lm *lm;
} cursor;

/* count floats at the cursor; *out points at them (the buffer is 4-byte aligned there) */
static st_status take(cursor *c, uint64_t count, const char *what, const float **out) {
    uint64_t bytes;
    if (__builtin_mul_overflow(count, (uint64_t)4, &bytes) || bytes > c->n ||
        c->off > c->n - bytes)
        return st__fail(ST_ERR_FORMAT,
                        "%s: %s (%llu floats at byte %zu) runs past the end of the file (%zu "
                        "bytes): truncated or not a llama2.c checkpoint",
                        c->source, what, (unsigned long long)count, c->off, c->n);
    *out = (const float *)(const void *)(c->base + c->off);
    c->off += (size_t)bytes;
    return ST_OK;
}

static st_status take_mat(cursor *c, int64_t rows, int64_t cols, const char *what,
                          st_wmatrix *w) {
    const float *p = NULL;
    ST_TRY(take(c, (uint64_t)rows * (uint64_t)cols, what, &p));
    w->type = ST_WT_F32;
    w->rows = rows;
    w->cols = cols;
    w->data = p;
    w->row_bytes = (size_t)cols * sizeof(float);
    return ST_OK;
}

/* per-layer matrices: L stacked [rows, cols] blocks */
typedef enum { M_WQ, M_WK, M_WV, M_WO, M_W1, M_W2, M_W3 } mat_kind;

static st_status take_layers(cursor *c, mat_kind k, int64_t rows, int64_t cols,
                             const char *what) {
    st_lm *lm = c->lm;
    for (int l = 0; l < lm->cfg.n_layer; l++) {
        st_lm_layer *L = &lm->layers[l];
        st_wmatrix *w = k == M_WQ ? &L->wq : k == M_WK ? &L->wk : k == M_WV ? &L->wv
                      : k == M_WO ? &L->wo : k == M_W1 ? &L->w_gate : k == M_W2 ? &L->w_down
                                                                              : &L->w_up;
        ST_TRY(take_mat(c, rows, cols, what, w));
    }
    return ST_OK;
}

static st_status take_norms(cursor *c, bool attn, int64_t dim, const char *what) {
    st_lm *lm = c->lm;
    for (int l = 0; l < lm->cfg.n_layer; l++) {
        const float **dst = attn ? &lm->layers[l].ln1_w : &lm->layers[l].ln2_w;
        ST_TRY(take(c, (uint64_t)dim, what, dst));
    }
    return ST_OK;
}

static st_status check_header(const int32_t h[7], const char *source) {
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    static const int32_t limits[7] = {1 << 16, 1 << 20, 4096, 1024, 1024, 1 << 22, 1 << 22};
    for (int i = 0; i < 7; i++) {
        int64_t v = i == 5 ? (h[i] < 0 ? -(int64_t)h[i] : h[i]) : h[i];
        if (v <= 0 || v > limits[i])
            return st__fail(ST_ERR_FORMAT,
                            "%s: llama2.c header field %s = %d is outside [1, %d]: not a "
                            "llama2.c checkpoint, or a corrupt one",
                            source, names[i], h[i], limits[i]);
    }
    if (h[0] % h[3] != 0)
        return st__fail(ST_ERR_FORMAT, "%s: dim %d is not a multiple of n_heads %d", source,
                        h[0], h[3]);
    if ((h[0] / h[3]) % 2 != 0)
        return st__fail(ST_ERR_FORMAT, "%s: head size %d is odd (RoPE needs pairs)", source,
                        h[0] / h[3]);
    if (h[4] > h[3] || h[3] % h[4] != 0)
        return st__fail(ST_ERR_FORMAT, "%s: n_heads %d is not a multiple of n_kv_heads %d",
                        source, h[3], h[4]);
    return ST_OK;
}

st_status st__lm_llama2c_from_memory(const void *buf, size_t n, const char *source,
                                     st_lm **out) {
    if (!buf || !out) return st__fail(ST_ERR_INVALID_ARG, "llama2.c reader: NULL argument");
    *out = NULL;
    if (!source) source = "<llama2.c checkpoint>";
    const unsigned char *b = buf;
    if (n < 28)
        return st__fail(ST_ERR_FORMAT, "%s: %zu bytes is too short for a llama2.c header",
                        source, n);
    int version = 0;
    size_t hdr_off = 0;
    if ((uint32_t)rd_i32(b) == L2C_MAGIC) {
        if (n < 8 + 28 + 1)
            return st__fail(ST_ERR_FORMAT, "%s: truncated llama2.c version header", source);
        version = rd_i32(b + 4);
        if (version != 1)
            return st__fail(ST_ERR_UNSUPPORTED,
                            "%s: llama2.c checkpoint version %d is not supported (legacy and "
                            "version 1 fp32 are; export with llama2.c's --version 1, or convert "
                            "quantized models through GGUF)",
                            source, version);
        hdr_off = 8;
    }
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = rd_i32(b + hdr_off + 4 * (size_t)i);
    ST_TRY(check_header(h, source));
    bool shared = h[5] > 0;
    if (version == 1) {
        uint8_t flag = b[hdr_off + 28];
        if (flag > 1)
            return st__fail(ST_ERR_FORMAT, "%s: shared_classifier flag is %u, not 0 or 1",
                            source, flag);
        shared = flag == 1;
        if (h[5] < 0)
            return st__fail(ST_ERR_FORMAT, "%s: negative vocab_size in a version 1 header",
                            source);
        if (n < L2C_V1_HEADER)
            return st__fail(ST_ERR_FORMAT, "%s: truncated llama2.c version 1 header (%zu of %d "
                            "bytes)", source, n, L2C_V1_HEADER);
    }
    const int64_t dim = h[0], hidden = h[1], V = h[5] < 0 ? -(int64_t)h[5] : h[5];
    const int64_t hs = dim / h[3], kv_dim = hs * h[4];

    /* the whole size first, in 64-bit arithmetic (every factor is bounded above) */
    const uint64_t L = (uint64_t)h[2];
    uint64_t floats = (uint64_t)V * (uint64_t)dim                       /* embedding */
                      + L * (uint64_t)dim * 2                           /* norms */
                      + (uint64_t)dim                                   /* final norm */
                      + L * (uint64_t)dim * (uint64_t)(2 * dim + 2 * kv_dim) /* attention */
                      + L * (uint64_t)hidden * (uint64_t)dim * 3;       /* MLP */
    if (version == 0) floats += (uint64_t)h[6] * (uint64_t)hs;         /* freq_cis tables */
    if (!shared) floats += (uint64_t)V * (uint64_t)dim;
    const uint64_t need = (version ? L2C_V1_HEADER : 28) + floats * 4;
    if (need > n)
        return st__fail(ST_ERR_FORMAT,
                        "%s: the header (dim %d, hidden %d, %d layers, %d heads, %d kv heads, "
                        "vocab %lld, seq_len %d) needs %llu bytes, the file has %zu: truncated "
                        "or not a llama2.c checkpoint",
                        source, h[0], h[1], h[2], h[3], h[4], (long long)V, h[6],
                        (unsigned long long)need, n);

    st_model_config cfg = st_model_config_default(ST_ARCH_LLAMA);
    cfg.n_layer = h[2];
    cfg.n_head = h[3];
    cfg.n_kv_head = h[4];
    cfg.n_embd = h[0];
    cfg.n_ff = h[1];
    cfg.vocab_size = (int)V;
    cfg.n_ctx = h[6];
    cfg.norm_eps = 1e-5f;
    cfg.rope_theta = 10000.0f;
    cfg.tie_embeddings = shared;
    cfg.bias = false;
    st_status s = st_model_config_validate(&cfg);
    if (s) return st__fail(s, "%s: %s", source, st_last_error());
    st_lm *lm = NULL;
    ST_TRY(st_lm_new_empty(&cfg, &lm));
    lm->rope = ST_ROPE_INTERLEAVED;
    cursor c = {.base = b, .n = n, .off = version ? L2C_V1_HEADER : 28, .source = source,
                .lm = lm};
    const float *skip;
#define T(expr)                                                                                    \
    do {                                                                                           \
        s = (expr);                                                                                \
        if (s) goto fail;                                                                          \
    } while (0)
    if (version == 1) {
        T(take_norms(&c, true, dim, "rms_att_weight"));
        T(take_norms(&c, false, dim, "rms_ffn_weight"));
        T(take(&c, (uint64_t)dim, "rms_final_weight", &lm->lnf_w));
        T(take_mat(&c, V, dim, "token_embedding_table", &lm->tok_embd));
    } else {
        T(take_mat(&c, V, dim, "token_embedding_table", &lm->tok_embd));
        T(take_norms(&c, true, dim, "rms_att_weight"));
    }
    T(take_layers(&c, M_WQ, dim, dim, "wq"));
    T(take_layers(&c, M_WK, kv_dim, dim, "wk"));
    T(take_layers(&c, M_WV, kv_dim, dim, "wv"));
    T(take_layers(&c, M_WO, dim, dim, "wo"));
    if (version == 0) T(take_norms(&c, false, dim, "rms_ffn_weight"));
    T(take_layers(&c, M_W1, hidden, dim, "w1"));
    T(take_layers(&c, M_W2, dim, hidden, "w2"));
    T(take_layers(&c, M_W3, hidden, dim, "w3"));
    if (version == 0) {
        T(take(&c, (uint64_t)dim, "rms_final_weight", &lm->lnf_w));
        T(take(&c, (uint64_t)h[6] * (uint64_t)hs, "freq_cis tables", &skip));
    }
    if (shared) lm->lm_head = lm->tok_embd;
    else T(take_mat(&c, V, dim, "wcls", &lm->lm_head));
#undef T
    s = st_lm_validate(lm, source);
    if (s) goto fail;
    *out = lm;
    return ST_OK;
fail:
    st_lm_free(lm);
    return s;
}

st_status st_lm_load_llama2c(const char *path, st_lm **out) {
    if (!path || !out) return st__fail(ST_ERR_INVALID_ARG, "st_lm_load_llama2c: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat stt;
    if (fstat(fd, &stt) != 0 || !S_ISREG(stt.st_mode)) {
        close(fd);
        return st__fail(ST_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)stt.st_size;
    if (n < 28) {
        close(fd);
        return st__fail(ST_ERR_FORMAT, "%s: %zu bytes is too short for a llama2.c header", path,
                        n);
    }
    void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return st__fail(ST_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    st_lm *lm = NULL;
    st_status s = st__lm_llama2c_from_memory(map, n, path, &lm);
    if (s) {
        munmap(map, n);
        return s;
    }
    lm->map = map;
    lm->map_bytes = n;
    lm->source = st_strdup(path);
    *out = lm;
    return ST_OK;
}
