/*
 * lm.c — the st_lm container: allocation, ownership and validation of an
 * inference model's weights.
 *
 * An st_lm is a transparent struct (strata/infer.h) that loaders fill: the
 * matrices and arrays point into buffers the st_lm owns (bufs: weight slabs,
 * see st_lm_alloc, 64-byte aligned) or into a read-only mapping of the source
 * file (map). st_lm_free releases all of it. st_lm_validate is the one
 * place that checks a filled model against its configuration, so every
 * loader ends with it and the engine can trust shapes afterwards.
 */
#include "strata/infer.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

st_status st_lm_new_empty(const st_model_config *cfg, st_lm **out) {
    if (!cfg || !out) return st__fail(ST_ERR_INVALID_ARG, "st_lm_new_empty: NULL argument");
    *out = NULL;
    if (cfg->n_layer <= 0 || cfg->n_layer > 4096)
        return st__fail(ST_ERR_INVALID_ARG, "st_lm_new_empty: n_layer %d out of range",
                        cfg->n_layer);
    st_lm *lm = st_calloc(1, sizeof *lm);
    if (!lm) return ST_ERR_NOMEM;
    lm->layers = st_calloc((size_t)cfg->n_layer, sizeof *lm->layers);
    if (!lm->layers) {
        st_free(lm);
        return ST_ERR_NOMEM;
    }
    lm->cfg = *cfg;
    lm->rope = ST_ROPE_HALF;
    lm->bos_id = -1;
    lm->eos_id = -1;
    *out = lm;
    return ST_OK;
}

/* Weight slabs. Decode reads every weight once per token, so it runs at the
 * speed memory streams them. Separate malloc'd matrices sit in 4 KiB pages:
 * every page costs a TLB walk and the hardware prefetchers stop at its end.
 * So allocations bump through slabs whose 2 MiB-aligned interior is advised
 * MADV_HUGEPAGE before first touch, in allocation (= engine) order. Measured
 * on the 2-core Zen VM (all matrices of a stories110M-shaped model, n = 1
 * products, ratio to the copy bandwidth of the same round, median of 31
 * rounds): q8_0 0.718 -> 0.756, f32 0.780 -> 0.872. Slabs grow 4 MiB, 8 MiB,
 * ... up to 256 MiB (a larger allocation gets a slab of its own size), so
 * a small model commits little; the untouched tail of a slab costs address
 * space only. Under AddressSanitizer every allocation is its own buffer,
 * so an overrun past a matrix is still reported. */
#define SLAB_ALIGN ((size_t)2 << 20)
#define SLAB_FIRST ((size_t)4 << 20)
#define SLAB_MAX ((size_t)256 << 20)

#if defined(__SANITIZE_ADDRESS__)
#define LM_SLABS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LM_SLABS 0
#endif
#endif
#ifndef LM_SLABS
#define LM_SLABS 1
#endif

static bool keep_buf(st_lm *lm, void *p) {
    if (lm->n_bufs == lm->cap_bufs) {
        int cap = lm->cap_bufs ? 2 * lm->cap_bufs : 64;
        void **b = st_realloc(lm->bufs, (size_t)cap * sizeof *b);
        if (!b) return false;
        lm->bufs = b;
        lm->cap_bufs = cap;
    }
    lm->bufs[lm->n_bufs++] = p;
    return true;
}

/* at the start of every slab: the list st_lm_free unmaps */
typedef struct slab_hdr {
    struct slab_hdr *next;
    size_t bytes;
    char pad[64 - sizeof(void *) - sizeof(size_t)]; /* allocations stay 64-byte aligned */
} slab_hdr;

/* size bytes (a multiple of SLAB_ALIGN) of fresh anonymous memory at a
 * 2 MiB boundary, advised for huge pages before anything touches it. Its
 * own mapping, not malloc's: malloc may hand back pages an earlier model
 * already faulted in as 4 KiB pages, which the advice does not change
 * (seen in strata bench decode, where the 15M models come and go first). */
static slab_hdr *slab_map(size_t size) {
    const size_t span = size + SLAB_ALIGN;
    char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    char *base = (char *)(((uintptr_t)m + SLAB_ALIGN - 1) & ~(uintptr_t)(SLAB_ALIGN - 1));
    if (base > m) munmap(m, (size_t)(base - m));
    const size_t tail = (size_t)(m + span - (base + size));
    if (tail) munmap(base + size, tail);
#ifdef MADV_HUGEPAGE
    (void)madvise(base, size, MADV_HUGEPAGE); /* advice only: a refusal is harmless */
#endif
    slab_hdr *h = (slab_hdr *)base;
    h->bytes = size;
    return h;
}

void *st_lm_alloc(st_lm *lm, size_t bytes) {
    if (!lm) return NULL;
    if (!bytes) bytes = 1;
    if (bytes > SIZE_MAX / 4) return NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    if (!LM_SLABS) {
        void *p = st_malloc(bytes);
        if (p && !keep_buf(lm, p)) {
            st_free(p);
            p = NULL;
        }
        return p;
    }
    if (bytes > lm->slab_left) {
        size_t size = lm->slab_next ? lm->slab_next : SLAB_FIRST;
        if (size < bytes + sizeof(slab_hdr))
            size = (bytes + sizeof(slab_hdr) + SLAB_ALIGN - 1) & ~(SLAB_ALIGN - 1);
        slab_hdr *h = slab_map(size);
        if (!h) return NULL;
        h->next = lm->slabs;
        lm->slabs = h;
        lm->slab = (char *)(h + 1);
        lm->slab_left = size - sizeof *h;
        if (lm->slab_next < SLAB_MAX)
            lm->slab_next = lm->slab_next ? 2 * lm->slab_next : 2 * SLAB_FIRST;
    }
    void *p = lm->slab;
    lm->slab += bytes;
    lm->slab_left -= bytes;
    return p;
}

/* Matrix i of the 7 * n_layer + 1 a decode step reads, in its order */
static st_wmatrix *step_matrix(st_lm *lm, int64_t i) {
    if (i == 7 * (int64_t)lm->cfg.n_layer) return &lm->lm_head;
    st_lm_layer *L = &lm->layers[i / 7];
    st_wmatrix *w[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return w[i % 7];
}

bool st_lm_needs_pack(const st_lm *lm) {
    if (!lm || lm->cfg.n_layer < 0 || (lm->cfg.n_layer > 0 && !lm->layers)) return false;
    for (int64_t i = 0; i <= 7 * (int64_t)lm->cfg.n_layer; i++) {
        const st_wmatrix *m = step_matrix((st_lm *)lm, i);
        if (!m->packed && st_wmatrix_packed_bytes(m) > 0) return true;
    }
    return false;
}

st_status st_lm_pack(st_lm *lm) {
    if (!lm || lm->cfg.n_layer < 0 || (lm->cfg.n_layer > 0 && !lm->layers))
        return st__fail(ST_ERR_INVALID_ARG, "st_lm_pack: bad model");
    for (int64_t i = 0; i <= 7 * (int64_t)lm->cfg.n_layer; i++) {
        st_wmatrix *m = step_matrix(lm, i);
        const size_t bytes = m->packed ? 0 : st_wmatrix_packed_bytes(m);
        if (!bytes) continue;
        void *dst = st_lm_alloc(lm, bytes);
        if (!dst)
            return st__fail(ST_ERR_NOMEM,
                            "st_lm_pack: no memory for %zu bytes of packed weights", bytes);
        ST_TRY(st_wmatrix_pack(m, dst));
        m->packed = dst;
    }
    return ST_OK;
}

void st_lm_free(st_lm *lm) {
    if (!lm) return;
    for (int i = 0; i < lm->n_bufs; i++) st_free(lm->bufs[i]);
    st_free(lm->bufs);
    for (slab_hdr *h = lm->slabs, *next; h; h = next) {
        next = h->next;
        munmap(h, h->bytes);
    }
    if (lm->map) munmap(lm->map, lm->map_bytes);
    st_tokenizer_free(lm->tok);
    st_free(lm->source);
    st_free(lm->layers);
    st_free(lm);
}

static st_status check_matrix(const st_wmatrix *w, int64_t rows, int64_t cols, const char *what,
                              int layer, const char *source) {
    char where[64];
    if (layer >= 0) snprintf(where, sizeof where, "layer %d %s", layer, what);
    else snprintf(where, sizeof where, "%s", what);
    if (!w->data)
        return st__fail(ST_ERR_FORMAT, "%s: %s is missing", source, where);
    if ((unsigned)w->type >= ST_WT_COUNT_)
        return st__fail(ST_ERR_FORMAT, "%s: %s has unknown type %d", source, where, (int)w->type);
    if (w->rows != rows || w->cols != cols)
        return st__fail(ST_ERR_FORMAT, "%s: %s is [%lld, %lld], expected [%lld, %lld]", source,
                        where, (long long)w->rows, (long long)w->cols, (long long)rows,
                        (long long)cols);
    size_t rb = st_wtype_row_bytes(w->type, cols);
    if (rb == 0 || w->row_bytes != rb)
        return st__fail(ST_ERR_FORMAT, "%s: %s: %s rows of %lld elements are not representable",
                        source, where, st_wtype_name(w->type), (long long)cols);
    return ST_OK;
}

static st_status check_array(const float *p, bool want, const char *what, int layer,
                             const char *source) {
    if (want && !p) {
        if (layer >= 0)
            return st__fail(ST_ERR_FORMAT, "%s: layer %d %s is missing", source, layer, what);
        return st__fail(ST_ERR_FORMAT, "%s: %s is missing", source, what);
    }
    return ST_OK;
}

st_status st_lm_validate(const st_lm *lm, const char *source) {
    if (!lm) return st__fail(ST_ERR_INVALID_ARG, "st_lm_validate: NULL model");
    if (!source) source = lm->source ? lm->source : "<model>";
    const st_model_config *c = &lm->cfg;
    st_status s = st_model_config_validate(c);
    if (s) return s;
    const bool gpt2 = c->arch == ST_ARCH_GPT2;
    const int64_t hd = c->n_embd / c->n_head;
    const int64_t E = c->n_embd, V = c->vocab_size, F = c->n_ff;
    ST_TRY(check_matrix(&lm->tok_embd, V, E, "token embedding", -1, source));
    ST_TRY(check_matrix(&lm->lm_head, V, E, "lm head", -1, source));
    if (gpt2) ST_TRY(check_array(lm->pos_embd, true, "position embedding", -1, source));
    ST_TRY(check_array(lm->lnf_w, true, "final norm weight", -1, source));
    ST_TRY(check_array(lm->lnf_b, gpt2 && c->bias, "final norm bias", -1, source));
    for (int l = 0; l < c->n_layer; l++) {
        const st_lm_layer *L = &lm->layers[l];
        ST_TRY(check_array(L->ln1_w, true, "attention norm weight", l, source));
        ST_TRY(check_array(L->ln2_w, true, "MLP norm weight", l, source));
        ST_TRY(check_matrix(&L->wq, c->n_head * hd, E, "q projection", l, source));
        ST_TRY(check_matrix(&L->wk, c->n_kv_head * hd, E, "k projection", l, source));
        ST_TRY(check_matrix(&L->wv, c->n_kv_head * hd, E, "v projection", l, source));
        ST_TRY(check_matrix(&L->wo, E, c->n_head * hd, "output projection", l, source));
        ST_TRY(check_matrix(&L->w_up, F, E, gpt2 ? "c_fc" : "up projection", l, source));
        ST_TRY(check_matrix(&L->w_down, E, F, gpt2 ? "mlp c_proj" : "down projection", l,
                            source));
        if (!gpt2) ST_TRY(check_matrix(&L->w_gate, F, E, "gate projection", l, source));
        if (gpt2 && c->bias) {
            ST_TRY(check_array(L->ln1_b, true, "attention norm bias", l, source));
            ST_TRY(check_array(L->ln2_b, true, "MLP norm bias", l, source));
            ST_TRY(check_array(L->bq, true, "q bias", l, source));
            ST_TRY(check_array(L->bk, true, "k bias", l, source));
            ST_TRY(check_array(L->bv, true, "v bias", l, source));
            ST_TRY(check_array(L->bo, true, "output projection bias", l, source));
            ST_TRY(check_array(L->b_up, true, "c_fc bias", l, source));
            ST_TRY(check_array(L->b_down, true, "mlp c_proj bias", l, source));
        }
    }
    return ST_OK;
}

static size_t matrix_bytes(const st_wmatrix *w) {
    return w->data ? (size_t)w->rows * w->row_bytes : 0;
}

size_t st_lm_weight_bytes(const st_lm *lm) {
    if (!lm) return 0;
    const st_model_config *c = &lm->cfg;
    size_t E = (size_t)c->n_embd, n = 0;
    n += matrix_bytes(&lm->tok_embd);
    if (lm->lm_head.data != lm->tok_embd.data) n += matrix_bytes(&lm->lm_head);
    if (lm->pos_embd) n += (size_t)c->n_ctx * E * sizeof(float);
    n += 2 * E * sizeof(float);
    for (int l = 0; l < c->n_layer; l++) {
        const st_lm_layer *L = &lm->layers[l];
        n += matrix_bytes(&L->wq) + matrix_bytes(&L->wk) + matrix_bytes(&L->wv) +
             matrix_bytes(&L->wo) + matrix_bytes(&L->w_gate) + matrix_bytes(&L->w_up) +
             matrix_bytes(&L->w_down);
        n += 4 * E * sizeof(float);
    }
    return n;
}
