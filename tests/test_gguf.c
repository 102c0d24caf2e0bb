/*
 * test_gguf.c — GGUF reading and writing (src/hub/gguf.c), st_lm_quantize
 * and the token-list tokenizer constructors (src/data/tokenizer_vocab.c).
 *
 * 1. Round trips: random llama (grouped-query) and gpt2 st_lm with their
 *    tokenizers, in f32, f16, q8_0 and q4_0, are written, read back and
 *    compared: configuration, every matrix's type, shape and bytes, every
 *    f32 array, the tokenizer's encoding; writing the loaded model again
 *    gives the same file byte for byte.
 * 2. HF RoPE convention: a ST_ROPE_HALF llama is written with its q/k rows
 *    permuted as convert_hf_to_gguf.py's permute() (checked row by row
 *    against the formula written out independently here).
 * 3. Hostile files: a small valid file truncated at every offset, every
 *    header/metadata byte flipped, and counts, lengths and dimensions
 *    patched to huge values: each load fails cleanly or succeeds, never
 *    crashes (ASan build), and the patched ones fail with ST_ERR_FORMAT.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "strata/infer.h"

static char g_dir[64];
static uint64_t g_rng = 88172645463325252ull;
static float frand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) / (double)(1u << 23)) - 1.0f;
}

static char *path_in(const char *name) {
    static char p[4][128];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

/* ---- random models ----------------------------------------------------------------- */

static st_tokenizer *sp_tokenizer(int *n_out) {
    static const char *words[] = {"\xe2\x96\x81the", "\xe2\x96\x81" "a", "he", "ll", "\xe2\x96\x81h", "o",
                                  "\xe2\x96\x81hello"};
    const int nw = (int)(sizeof words / sizeof words[0]), n = 259 + nw;
    char bytes[256][8];
    const char *p[300];
    size_t len[300];
    float sc[300];
    p[0] = "<unk>", p[1] = "<s>", p[2] = "</s>";
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        p[3 + b] = bytes[b];
    }
    for (int i = 0; i < nw; i++) p[259 + i] = words[i];
    for (int i = 0; i < n; i++) len[i] = strlen(p[i]), sc[i] = i < 259 ? 0.0f : -(float)i;
    st_tokenizer *t = NULL;
    assert_int_equal(st_tokenizer_from_sp_pieces(n, p, len, sc, 1, 2, "test sp", &t), ST_OK);
    *n_out = n;
    return t;
}

/* GPT-2's bytes_to_unicode as UTF-8 */
static void byte_str(int b, char *out) {
    int cp;
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
        cp = b;
    } else {
        int k = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) k++;
        cp = 256 + k;
    }
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 63)), out[2] = 0;
}

static st_tokenizer *bpe_tokenizer(int *n_out) {
    char bs[256][4];
    const char *p[270];
    size_t len[270];
    for (int b = 0; b < 256; b++) byte_str(b, bs[b]), p[b] = bs[b];
    p[256] = "\xc4\xa0t", p[257] = "he", p[258] = "\xc4\xa0the", p[259] = "<|endoftext|>";
    const int n = 260;
    for (int i = 0; i < n; i++) len[i] = strlen(p[i]);
    const char *m[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he"};
    const size_t ml[] = {strlen(m[0]), strlen(m[1]), strlen(m[2])};
    st_tokenizer *t = NULL;
    assert_int_equal(st_tokenizer_from_bpe_lists(n, p, len, 3, m, ml, "test bpe", &t), ST_OK);
    *n_out = n;
    return t;
}

static void rand_matrix(st_lm *lm, st_wmatrix *w, int64_t rows, int64_t cols) {
    float *d = st_lm_alloc(lm, (size_t)(rows * cols) * 4);
    assert_non_null(d);
    for (int64_t i = 0; i < rows * cols; i++) d[i] = frand() * 0.5f;
    *w = (st_wmatrix){ST_WT_F32, rows, cols, d, (size_t)cols * 4, NULL};
}

static const float *rand_vec(st_lm *lm, int64_t n) {
    float *d = st_lm_alloc(lm, (size_t)n * 4);
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++) d[i] = 1.0f + frand() * 0.1f;
    return d;
}

static bool g_gpt2_nobias; /* random_lm builds nanoGPT-style bias-free gpt2 models */

static st_lm *random_lm(st_arch arch, bool with_tok, int n_layer, int n_embd, int vocab) {
    st_model_config c = st_model_config_default(arch);
    st_tokenizer *tok = NULL;
    if (with_tok) tok = arch == ST_ARCH_LLAMA ? sp_tokenizer(&vocab) : bpe_tokenizer(&vocab);
    c.n_layer = n_layer;
    c.n_embd = n_embd;
    c.n_head = 4;
    c.n_kv_head = arch == ST_ARCH_LLAMA ? 2 : 4;
    c.n_ff = arch == ST_ARCH_LLAMA ? 96 : 4 * n_embd;
    c.vocab_size = vocab;
    c.n_ctx = 16;
    c.dropout = 0;
    c.tie_embeddings = arch == ST_ARCH_GPT2;
    c.bias = arch == ST_ARCH_GPT2 && !g_gpt2_nobias;
    c.rope_theta = 10000.0f;
    c.norm_eps = 1e-5f;
    st_lm *lm = NULL;
    assert_int_equal(st_lm_new_empty(&c, &lm), ST_OK);
    lm->rope = ST_ROPE_INTERLEAVED;
    lm->tok = tok;
    const int64_t E = n_embd, hd = E / c.n_head, Q = c.n_head * hd, KV = c.n_kv_head * hd;
    rand_matrix(lm, &lm->tok_embd, vocab, E);
    if (c.tie_embeddings) lm->lm_head = lm->tok_embd;
    else rand_matrix(lm, &lm->lm_head, vocab, E);
    lm->lnf_w = rand_vec(lm, E);
    if (arch == ST_ARCH_GPT2) lm->pos_embd = rand_vec(lm, (int64_t)c.n_ctx * E);
    if (c.bias) lm->lnf_b = rand_vec(lm, E);
    for (int l = 0; l < n_layer; l++) {
        st_lm_layer *L = &lm->layers[l];
        rand_matrix(lm, &L->wq, Q, E);
        rand_matrix(lm, &L->wk, KV, E);
        rand_matrix(lm, &L->wv, KV, E);
        rand_matrix(lm, &L->wo, E, Q);
        rand_matrix(lm, &L->w_up, c.n_ff, E);
        rand_matrix(lm, &L->w_down, E, c.n_ff);
        if (arch == ST_ARCH_LLAMA) rand_matrix(lm, &L->w_gate, c.n_ff, E);
        L->ln1_w = rand_vec(lm, E);
        L->ln2_w = rand_vec(lm, E);
        if (c.bias) {
            L->ln1_b = rand_vec(lm, E), L->ln2_b = rand_vec(lm, E);
            L->bq = rand_vec(lm, Q), L->bk = rand_vec(lm, KV), L->bv = rand_vec(lm, KV);
            L->bo = rand_vec(lm, E), L->b_up = rand_vec(lm, c.n_ff), L->b_down = rand_vec(lm, E);
        }
    }
    assert_int_equal(st_lm_validate(lm, "random"), ST_OK);
    return lm;
}

/* ---- comparisons ------------------------------------------------------------------- */

static void same_matrix(const st_wmatrix *a, const st_wmatrix *b, const char *what) {
    if (a->type != b->type || a->rows != b->rows || a->cols != b->cols || a->row_bytes != b->row_bytes)
        fail_msg("%s: %s [%lld,%lld] vs %s [%lld,%lld]", what, st_wtype_name(a->type),
                 (long long)a->rows, (long long)a->cols, st_wtype_name(b->type), (long long)b->rows,
                 (long long)b->cols);
    if (memcmp(a->data, b->data, (size_t)a->rows * a->row_bytes) != 0) fail_msg("%s: bytes differ", what);
}

static void same_vec(const float *a, const float *b, int64_t n, const char *what) {
    if (!a && !b) return;
    if (!a || !b) fail_msg("%s: present in one model only", what);
    if (memcmp(a, b, (size_t)n * 4) != 0) fail_msg("%s: values differ", what);
}

static void same_tok(const st_tokenizer *a, const st_tokenizer *b) {
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(st_tokenizer_vocab_size(a), st_tokenizer_vocab_size(b));
    assert_int_equal(st_tokenizer_bos_id(a), st_tokenizer_bos_id(b));
    assert_int_equal(st_tokenizer_eos_id(a), st_tokenizer_eos_id(b));
    const char *text = "hello the theatre\nhe's <|endoftext|> ok \xc3\xa9";
    int32_t *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    st_encode_opts o = {.allow_special = true, .add_bos = true};
    assert_int_equal(st_tokenizer_encode(a, text, strlen(text), &o, &ia, &na), ST_OK);
    assert_int_equal(st_tokenizer_encode(b, text, strlen(text), &o, &ib, &nb), ST_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(ia, ib, na * sizeof *ia);
    st_free(ia);
    st_free(ib);
}

static void same_lm(const st_lm *a, const st_lm *b) {
    const st_model_config *x = &a->cfg, *y = &b->cfg;
    assert_int_equal(x->arch, y->arch);
    assert_int_equal(x->n_layer, y->n_layer);
    assert_int_equal(x->n_head, y->n_head);
    assert_int_equal(x->n_kv_head, y->n_kv_head);
    assert_int_equal(x->n_embd, y->n_embd);
    assert_int_equal(x->n_ff, y->n_ff);
    assert_int_equal(x->vocab_size, y->vocab_size);
    assert_int_equal(x->n_ctx, y->n_ctx);
    assert_true(x->norm_eps == y->norm_eps);
    assert_int_equal(x->tie_embeddings, y->tie_embeddings);
    if (x->arch == ST_ARCH_LLAMA) assert_true(x->rope_theta == y->rope_theta);
    const int64_t E = x->n_embd, hd = E / x->n_head, Q = x->n_head * hd, KV = x->n_kv_head * hd;
    same_matrix(&a->tok_embd, &b->tok_embd, "tok_embd");
    same_matrix(&a->lm_head, &b->lm_head, "lm_head");
    same_vec(a->lnf_w, b->lnf_w, E, "lnf_w");
    same_vec(a->lnf_b, b->lnf_b, E, "lnf_b");
    same_vec(a->pos_embd, b->pos_embd, (int64_t)x->n_ctx * E, "pos_embd");
    for (int l = 0; l < x->n_layer; l++) {
        const st_lm_layer *p = &a->layers[l], *q = &b->layers[l];
        same_matrix(&p->wq, &q->wq, "wq");
        same_matrix(&p->wk, &q->wk, "wk");
        same_matrix(&p->wv, &q->wv, "wv");
        same_matrix(&p->wo, &q->wo, "wo");
        same_matrix(&p->w_up, &q->w_up, "w_up");
        same_matrix(&p->w_down, &q->w_down, "w_down");
        if (x->arch == ST_ARCH_LLAMA) same_matrix(&p->w_gate, &q->w_gate, "w_gate");
        same_vec(p->ln1_w, q->ln1_w, E, "ln1_w");
        same_vec(p->ln2_w, q->ln2_w, E, "ln2_w");
        same_vec(p->ln1_b, q->ln1_b, E, "ln1_b");
        same_vec(p->ln2_b, q->ln2_b, E, "ln2_b");
        same_vec(p->bq, q->bq, Q, "bq");
        same_vec(p->bk, q->bk, KV, "bk");
        same_vec(p->bv, q->bv, KV, "bv");
        same_vec(p->bo, q->bo, E, "bo");
        same_vec(p->b_up, q->b_up, x->n_ff, "b_up");
        same_vec(p->b_down, q->b_down, E, "b_down");
    }
    if (a->tok || b->tok) same_tok(a->tok, b->tok);
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void write_all(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* ---- 1. round trips ----------------------------------------------------------------- */

static void round_trip(st_arch arch) {
    st_lm *src = random_lm(arch, true, 2, 64, 0);
    const st_wtype types[] = {ST_WT_F32, ST_WT_F16, ST_WT_Q8_0, ST_WT_Q4_0};
    for (size_t i = 0; i < 4; i++) {
        st_lm *q = NULL, *back = NULL;
        assert_int_equal(st_lm_quantize(src, types[i], &q), ST_OK);
        assert_int_equal(q->layers[0].wq.type, types[i]);
        char *p1 = path_in("a.gguf"), *p2 = path_in("b.gguf");
        assert_int_equal(st_lm_save_gguf(q, p1), ST_OK);
        char tmp[160];
        snprintf(tmp, sizeof tmp, "%s.tmp", p1);
        assert_int_equal(access(tmp, F_OK), -1); /* renamed into place */
        if (st_lm_load_gguf(p1, &back) != ST_OK) fail_msg("load: %s", st_last_error());
        assert_int_equal(back->rope, ST_ROPE_INTERLEAVED);
        same_lm(q, back);
        assert_int_equal(st_lm_save_gguf(back, p2), ST_OK);
        size_t n1, n2;
        unsigned char *b1 = read_all(p1, &n1), *b2 = read_all(p2, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(b1, b2, n1);
        assert_memory_equal(b1, "GGUF\x03\0\0\0", 8);
        free(b1);
        free(b2);
        st_lm_free(back);
        st_lm_free(q);
    }
    st_lm_free(src);
}

static void test_round_trip_llama(void **state) {
    (void)state;
    round_trip(ST_ARCH_LLAMA);
}

static void test_round_trip_gpt2(void **state) {
    (void)state;
    round_trip(ST_ARCH_GPT2);
}

/* ---- 2. RoPE permutation ------------------------------------------------------------- */

static void test_rope_permute(void **state) {
    (void)state;
    st_lm *src = random_lm(ST_ARCH_LLAMA, false, 1, 64, 40);
    src->rope = ST_ROPE_HALF;
    st_lm *back = NULL;
    assert_int_equal(st_lm_save_gguf(src, path_in("h.gguf")), ST_OK);
    assert_int_equal(st_lm_load_gguf(path_in("h.gguf"), &back), ST_OK);
    /* permute(w, n_head): w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2) */
    const st_wmatrix *mats[2][2] = {{&src->layers[0].wq, &back->layers[0].wq},
                                    {&src->layers[0].wk, &back->layers[0].wk}};
    const int heads[2] = {src->cfg.n_head, src->cfg.n_kv_head};
    for (int m = 0; m < 2; m++) {
        const st_wmatrix *a = mats[m][0], *b = mats[m][1];
        const int64_t hd = a->rows / heads[m];
        for (int h = 0; h < heads[m]; h++)
            for (int64_t j = 0; j < hd / 2; j++)
                for (int two = 0; two < 2; two++) {
                    const int64_t dst = h * hd + j * 2 + two, srow = h * hd + two * (hd / 2) + j;
                    assert_memory_equal((const char *)b->data + dst * b->row_bytes,
                                        (const char *)a->data + srow * a->row_bytes, a->row_bytes);
                }
    }
    same_matrix(&src->layers[0].wv, &back->layers[0].wv, "wv");
    st_lm_free(back);
    st_lm_free(src);
}

/* ---- HF directories ------------------------------------------------------------------ */

/* model -> GGUF, and model -> HF dir -> st_lm (HF RoPE order, Conv1D
 * transposed back) -> GGUF: both GGUF files must load to the same weights */
static void hf_round_trip(st_arch arch) {
    st_lm *src = random_lm(arch, true, 2, 64, 0), *a = NULL, *h = NULL, *b = NULL;
    assert_int_equal(st_lm_save_gguf(src, path_in("direct.gguf")), ST_OK);
    assert_int_equal(st_lm_save_hf(src, path_in("hf")), ST_OK);
    if (st_lm_load_hf(path_in("hf"), &h) != ST_OK) fail_msg("load_hf: %s", st_last_error());
    assert_int_equal(h->rope, arch == ST_ARCH_LLAMA ? ST_ROPE_HALF : ST_ROPE_HALF);
    assert_int_equal(st_lm_save_gguf(h, path_in("via_hf.gguf")), ST_OK);
    assert_int_equal(st_lm_load_gguf(path_in("direct.gguf"), &a), ST_OK);
    assert_int_equal(st_lm_load_gguf(path_in("via_hf.gguf"), &b), ST_OK);
    same_lm(a, b);
    st_lm_free(a);
    st_lm_free(b);
    st_lm_free(h);
    st_lm_free(src);
}

static void test_hf_llama(void **state) {
    (void)state;
    hf_round_trip(ST_ARCH_LLAMA);
}

static void test_hf_gpt2(void **state) {
    (void)state;
    hf_round_trip(ST_ARCH_GPT2);
}

/* a bias-free gpt2 (nanoGPT's "bias": false, Strata's shakespeare-char configs):
 * HF dir -> st_lm keeps every weight and invents no bias */
static void test_hf_gpt2_nobias(void **state) {
    (void)state;
    g_gpt2_nobias = true;
    st_lm *src = random_lm(ST_ARCH_GPT2, false, 2, 64, 50), *h = NULL;
    g_gpt2_nobias = false;
    assert_int_equal(st_lm_save_hf(src, path_in("hf_nobias")), ST_OK);
    if (st_lm_load_hf(path_in("hf_nobias"), &h) != ST_OK) fail_msg("load_hf: %s", st_last_error());
    assert_false(h->cfg.bias);
    assert_null(h->lnf_b);
    assert_null(h->layers[0].bq);
    same_lm(src, h);
    st_lm_free(h);
    st_lm_free(src);
}

/* ---- 3. hostile files ----------------------------------------------------------------- */

static void expect_fail_or_ok(const char *path) {
    st_lm *lm = NULL;
    st_status s = st_lm_load_gguf(path, &lm);
    if (s == ST_OK) {
        assert_non_null(lm);
        st_lm_free(lm);
    } else {
        assert_null(lm);
        assert_true(s == ST_ERR_FORMAT || s == ST_ERR_UNSUPPORTED || s == ST_ERR_NOMEM);
        if (!strstr(st_last_error(), path)) fail_msg("message without the path: %s", st_last_error());
    }
}

static void test_hostile(void **state) {
    (void)state;
    st_lm *src = random_lm(ST_ARCH_LLAMA, false, 1, 32, 8), *q = NULL;
    assert_int_equal(st_lm_quantize(src, ST_WT_Q4_0, &q), ST_OK);
    const char *good = path_in("good.gguf"), *bad = path_in("bad.gguf");
    assert_int_equal(st_lm_save_gguf(q, good), ST_OK);
    size_t n;
    unsigned char *b = read_all(good, &n);
    unsigned char *c = malloc(n);
    /* truncated at every offset of the header, metadata and tensor infos, and
     * every 61st byte of the tensor data (where each cut fails the same check) */
    const unsigned char *last = memmem(b, n, "blk.0.ffn_down.weight", 21);
    assert_non_null(last);
    const size_t infos_end = (size_t)(last - b) + 21 + 4 + 16 + 4 + 8;
    for (size_t cut = 0; cut < n; cut += cut < infos_end + 64 ? 1 : 61) {
        write_all(bad, b, cut);
        st_lm *lm = NULL;
        st_status s = st_lm_load_gguf(bad, &lm);
        if (s == ST_OK) fail_msg("truncated at %zu of %zu: loaded", cut, n);
        assert_true(s == ST_ERR_FORMAT);
    }
    /* the header and metadata region, every byte flipped (two patterns) */
    for (size_t i = 0; i < infos_end; i++)
        for (int pat = 0; pat < (i < 64 ? 2 : 1); pat++) {
            memcpy(c, b, n);
            c[i] ^= pat ? 0xFF : 0x40;
            write_all(bad, c, n);
            expect_fail_or_ok(bad);
        }
    /* huge counts: tensors, metadata, the first key's length, a dimension */
    const size_t at[] = {8, 16, 24};
    for (size_t k = 0; k < 3; k++) {
        memcpy(c, b, n);
        uint64_t huge = UINT64_C(1) << 62;
        memcpy(c + at[k], &huge, 8);
        write_all(bad, c, n);
        st_lm *lm = NULL;
        assert_int_equal(st_lm_load_gguf(bad, &lm), ST_ERR_FORMAT);
    }
    /* a dimension of token_embd.weight patched to 2^40 + 1 */
    const unsigned char *hit = memmem(b, n, "token_embd.weight", 17);
    assert_non_null(hit);
    memcpy(c, b, n);
    uint64_t big = (UINT64_C(1) << 40) + 1;
    memcpy(c + (hit - b) + 17 + 4 + 8, &big, 8);
    write_all(bad, c, n);
    st_lm *lm = NULL;
    assert_int_equal(st_lm_load_gguf(bad, &lm), ST_ERR_FORMAT);
    /* unknown tensor type */
    memcpy(c, b, n);
    uint32_t ty = 99;
    memcpy(c + (hit - b) + 17 + 4 + 16, &ty, 4);
    write_all(bad, c, n);
    assert_int_equal(st_lm_load_gguf(bad, &lm), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "type 99"));
    /* not GGUF, version 1 */
    memcpy(c, b, n);
    c[4] = 1;
    write_all(bad, c, n);
    assert_int_equal(st_lm_load_gguf(bad, &lm), ST_ERR_FORMAT);
    assert_int_equal(st_lm_load_gguf(path_in("missing.gguf"), &lm), ST_ERR_IO);
    free(b);
    free(c);
    st_lm_free(q);
    st_lm_free(src);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/strata_test_gguf_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_llama),
        cmocka_unit_test(test_round_trip_gpt2),
        cmocka_unit_test(test_rope_permute),
        cmocka_unit_test(test_hf_llama),
        cmocka_unit_test(test_hf_gpt2),
        cmocka_unit_test(test_hf_gpt2_nobias),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
