/*
 * test_tokenizer.c — layer 5 tokenizers against reference outputs of real
 * third-party programs (tests/data/: js-tiktoken for gpt2 and cl100k_base,
 * llama2.c's run.c for tok512.bin), round trips for every kind through
 * tokenizer.json, BPE training, the two merge paths (linear and heap), and
 * hostile files (each must give ST_ERR_FORMAT naming the file, never a crash).
 *
 * Tokenizer files come from the source tree's data/ (STRATA_SOURCE_DIR).
 * Temporary files go to a mkdtemp folder removed at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/tokenizer_impl.h"
#include "strata/tokenizer.h"

#define SRC STRATA_SOURCE_DIR
static char g_tmp[256];

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    b[sz] = 0;
    if (n) *n = (size_t)sz;
    return b;
}

static void spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static st_tokenizer *load_ok(const char *path) {
    st_tokenizer *t = NULL;
    st_status s = st_tokenizer_load(path, &t);
    if (s != ST_OK) fail_msg("load %s: %s", path, st_last_error());
    return t;
}

static void check_ids(const st_tokenizer *t, const char *text, size_t n, bool special,
                      bool bos, json_t *want, const char *what) {
    st_encode_opts o = {.allow_special = special, .add_bos = bos};
    int32_t *ids;
    size_t k;
    st_status s = st_tokenizer_encode(t, text, n, &o, &ids, &k);
    if (s != ST_OK) fail_msg("%s: encode: %s", what, st_last_error());
    bool same = k == json_array_size(want);
    for (size_t i = 0; same && i < k; i++)
        same = ids[i] == json_integer_value(json_array_get(want, i));
    if (!same) {
        fprintf(stderr, "%s: text %s\n got:", what, text);
        for (size_t i = 0; i < k; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
        st_free(ids);
        fail_msg("%s: ids differ", what);
    }
    char *back;
    size_t bn;
    assert_int_equal(st_tokenizer_decode(t, ids, k, &back, &bn), ST_OK);
    if (bn != n || memcmp(back, text, n) != 0) fail_msg("%s: decode differs: %s", what, back);
    st_free(back);
    st_free(ids);
}

/* Every line of a reference_tokens.jsonl: ordinary ids, special ids, decode. */
static void check_refs(const st_tokenizer *t, const char *jsonl, const char *what) {
    size_t n;
    char *buf = slurp(jsonl, &n);
    int lines = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        assert_non_null(o);
        json_t *text = json_object_get(o, "text");
        check_ids(t, json_string_value(text), json_string_length(text), false, false,
                  json_object_get(o, "ids"), what);
        json_t *sp = json_object_get(o, "ids_allowed_special");
        if (sp) check_ids(t, json_string_value(text), json_string_length(text), true, false, sp, what);
        json_decref(o);
        lines++;
    }
    assert_int_equal(lines, 15);
    free(buf);
}

static void test_gpt2_refs(void **st) {
    (void)st;
    st_tokenizer *t = load_ok(SRC "/data/gpt2-bpe");
    assert_int_equal(st_tokenizer_get_kind(t), ST_TOK_BPE);
    assert_int_equal(st_tokenizer_vocab_size(t), 50257);
    assert_int_equal(st_tokenizer_special_id(t, "<|endoftext|>"), 50256);
    assert_int_equal(st_tokenizer_eos_id(t), 50256);
    check_refs(t, SRC "/tests/data/gpt2-bpe/reference_tokens.jsonl", "gpt2");
    st_tokenizer_free(t);
}

static void test_cl100k_refs(void **st) {
    (void)st;
    st_tokenizer *t = load_ok(SRC "/data/cl100k/cl100k_base.tiktoken");
    assert_int_equal(st_tokenizer_vocab_size(t), 100277);
    assert_int_equal(st_tokenizer_special_id(t, "<|endofprompt|>"), 100276);
    assert_null(st_tokenizer_piece(t, 100256, NULL)); /* the gap */
    int32_t gap = 100256;
    char *txt;
    size_t tn;
    assert_int_equal(st_tokenizer_decode(t, &gap, 1, &txt, &tn), ST_ERR_BOUNDS);
    check_refs(t, SRC "/tests/data/cl100k/reference_tokens.jsonl", "cl100k");
    st_tokenizer_free(t);
}

/* tok512.bin: run.c's prompt encodings (BOS + dummy prefix). */
static void check_sp_refs(const st_tokenizer *t, const char *what) {
    size_t n;
    char *buf = slurp(SRC "/tests/data/stories260K/reference_greedy.jsonl", &n);
    int lines = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        assert_non_null(o);
        json_t *p = json_object_get(o, "prompt");
        check_ids(t, json_string_value(p), json_string_length(p), false, true,
                  json_object_get(o, "prompt_ids"), what);
        json_decref(o);
        lines++;
    }
    assert_int_equal(lines, 3);
    free(buf);
}

static void test_tok512_refs(void **st) {
    (void)st;
    st_tokenizer *t = load_ok(SRC "/data/stories260K/tok512.bin");
    assert_int_equal(st_tokenizer_get_kind(t), ST_TOK_SENTENCEPIECE);
    assert_int_equal(st_tokenizer_vocab_size(t), 512);
    assert_int_equal(st_tokenizer_bos_id(t), 1);
    assert_int_equal(st_tokenizer_eos_id(t), 2);
    size_t pn;
    const char *p = st_tokenizer_piece(t, 3 + 'A', &pn); /* <0x41> decodes to 'A' */
    assert_int_equal(pn, 1);
    assert_int_equal(p[0], 'A');
    check_sp_refs(t, "tok512");
    /* Byte fallback and long text (heap path) round trip. */
    const char *odd = "Zebra \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80 ~~~";
    int32_t *ids;
    size_t k;
    assert_int_equal(st_tokenizer_encode(t, odd, strlen(odd), NULL, &ids, &k), ST_OK);
    char *back;
    assert_int_equal(st_tokenizer_decode(t, ids, k, &back, &pn), ST_OK);
    assert_string_equal(back, odd);
    st_free(back);
    st_free(ids);
    st_tokenizer_free(t);
}

/* Any tokenizer: save_json, load, same ids on text; decode round trip. */
static void check_json_roundtrip(const st_tokenizer *t, const char *text, size_t n,
                                 const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.json", g_tmp, name);
    st_status s = st_tokenizer_save_json(t, path);
    if (s != ST_OK) fail_msg("save %s: %s", name, st_last_error());
    st_tokenizer *u = load_ok(path);
    assert_int_equal(st_tokenizer_get_kind(u), st_tokenizer_get_kind(t));
    int32_t *a, *b;
    size_t na, nb;
    assert_int_equal(st_tokenizer_encode(t, text, n, NULL, &a, &na), ST_OK);
    assert_int_equal(st_tokenizer_encode(u, text, n, NULL, &b, &nb), ST_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    char *back;
    size_t bn;
    assert_int_equal(st_tokenizer_decode(u, b, nb, &back, &bn), ST_OK);
    assert_int_equal(bn, n);
    assert_memory_equal(back, text, n);
    st_free(back);
    st_free(a);
    st_free(b);
    st_tokenizer_free(u);
}

static void test_char_roundtrip(void **st) {
    (void)st;
    size_t n;
    char *all = slurp(SRC "/data/tinyshakespeare.txt", &n);
    size_t m = 10240;
    st_tokenizer *t;
    assert_int_equal(st_tokenizer_char_from_corpus(all, m, &t), ST_OK);
    assert_int_equal(st_tokenizer_get_kind(t), ST_TOK_CHAR);
    int32_t *ids;
    size_t k;
    assert_int_equal(st_tokenizer_encode(t, all, m, NULL, &ids, &k), ST_OK);
    assert_int_equal(k, m); /* ASCII: one id per byte */
    for (size_t i = 1; i < (size_t)st_tokenizer_vocab_size(t); i++) {
        size_t a, b;
        const char *pa = st_tokenizer_piece(t, (int32_t)i - 1, &a);
        const char *pb = st_tokenizer_piece(t, (int32_t)i, &b);
        assert_true((unsigned char)pa[0] < (unsigned char)pb[0]); /* code point order */
    }
    char *back;
    size_t bn;
    assert_int_equal(st_tokenizer_decode(t, ids, k, &back, &bn), ST_OK);
    assert_int_equal(bn, m);
    assert_memory_equal(back, all, m);
    st_free(back);
    st_free(ids);
    check_json_roundtrip(t, all, m, "char");
    /* A character outside the vocabulary names itself and its offset. */
    assert_int_equal(st_tokenizer_encode(t, "ab\xC3\xA9", 4, NULL, &ids, &k), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "U+00E9"));
    assert_non_null(strstr(st_last_error(), "offset 2"));
    st_tokenizer_free(t);
    /* Invalid UTF-8 corpus. */
    assert_int_equal(st_tokenizer_char_from_corpus("ok\xFF", 3, &t), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "offset 2"));
    free(all);
}

static void test_train_bpe(void **st) {
    (void)st;
    size_t n;
    char *all = slurp(SRC "/data/tinyshakespeare.txt", &n);
    size_t m = 32768;
    st_tokenizer *t;
    assert_int_equal(st_tokenizer_train_bpe(all, m, 400, &t), ST_OK);
    assert_int_equal(st_tokenizer_vocab_size(t), 400);
    int32_t *ids;
    size_t k;
    assert_int_equal(st_tokenizer_encode(t, all, m, NULL, &ids, &k), ST_OK);
    assert_true(k < m * 2 / 3); /* merges compress the text it was trained on */
    st_free(ids);
    check_json_roundtrip(t, all, m, "trained");
    const char *other = "Zounds! \xC3\xA9t\xC3\xA9 \xFF 12345 we'll";
    check_json_roundtrip(t, other, strlen(other), "trained2");
    st_tokenizer_free(t);
    assert_int_equal(st_tokenizer_train_bpe(all, m, 100, &t), ST_ERR_INVALID_ARG);
    free(all);
}

/* GPT-2 and cl100k written as tokenizer.json must encode every reference
 * identically; tok512 the run.c prompts. */
static void test_hf_json_gpt2(void **st) {
    (void)st;
    st_tokenizer *t = load_ok(SRC "/data/gpt2-bpe");
    char path[512];
    snprintf(path, sizeof path, "%s/gpt2.json", g_tmp);
    assert_int_equal(st_tokenizer_save_json(t, path), ST_OK);
    st_tokenizer_free(t);
    t = load_ok(path);
    assert_int_equal(st_tokenizer_vocab_size(t), 50257);
    assert_int_equal(st_tokenizer_special_id(t, "<|endoftext|>"), 50256);
    check_refs(t, SRC "/tests/data/gpt2-bpe/reference_tokens.jsonl", "gpt2 json");
    st_tokenizer_free(t);
}

static void test_hf_json_cl100k_sp(void **st) {
    (void)st;
    st_tokenizer *t = load_ok(SRC "/data/cl100k/cl100k_base.tiktoken");
    char path[512];
    snprintf(path, sizeof path, "%s/cl100k.json", g_tmp);
    assert_int_equal(st_tokenizer_save_json(t, path), ST_OK);
    st_tokenizer_free(t);
    t = load_ok(path);
    check_refs(t, SRC "/tests/data/cl100k/reference_tokens.jsonl", "cl100k json");
    st_tokenizer_free(t);

    t = load_ok(SRC "/data/stories260K/tok512.bin");
    snprintf(path, sizeof path, "%s/tok512.json", g_tmp);
    assert_int_equal(st_tokenizer_save_json(t, path), ST_OK);
    st_tokenizer_free(t);
    t = load_ok(path);
    assert_int_equal(st_tokenizer_get_kind(t), ST_TOK_SENTENCEPIECE);
    check_sp_refs(t, "tok512 json");
    st_tokenizer_free(t);
}

/* The heap merge must agree with the linear one; long pieces and invalid
 * UTF-8 must round trip. */
static void test_merge_paths_and_long_input(void **st) {
    (void)st;
    st_tokenizer *t = load_ok(SRC "/data/gpt2-bpe");
    size_t n;
    char *all = slurp(SRC "/data/tinyshakespeare.txt", &n);
    st__merge_scratch sc = {0};
    int32_t a[48], b[48];
    for (size_t off = 0; off + 48 < 200000; off += 997) {
        size_t len = 2 + off % 47;
        for (size_t i = 0; i < len; i++) a[i] = b[i] = t->byte_id[(uint8_t)all[off + i]];
        size_t na = len, nb = len;
        assert_int_equal(st__bpe_merge(&t->pairs, a, &na, &sc, false), ST_OK);
        assert_int_equal(st__bpe_merge(&t->pairs, b, &nb, &sc, true), ST_OK);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
    }
    st_free(sc.buf);
    free(all);
    /* 200 KB of digits, spaces and a long word: one huge piece each. */
    size_t big = 200000;
    char *txt = malloc(big + 8);
    for (size_t i = 0; i < big; i++)
        txt[i] = i < big / 3 ? (char)('0' + i % 10) : i < 2 * big / 3 ? ' ' : (char)('a' + i % 3);
    memcpy(txt + big, "\xFF\xC3(\xE2\x82", 6); /* invalid UTF-8 tail */
    st_tokenizer *cl = load_ok(SRC "/data/cl100k/cl100k_base.tiktoken");
    st_tokenizer *tk[2] = {t, cl};
    for (int j = 0; j < 2; j++) {
        int32_t *ids;
        size_t k;
        assert_int_equal(st_tokenizer_encode(tk[j], txt, big + 6, NULL, &ids, &k), ST_OK);
        char *back;
        size_t bn;
        assert_int_equal(st_tokenizer_decode(tk[j], ids, k, &back, &bn), ST_OK);
        assert_int_equal(bn, big + 6);
        assert_memory_equal(back, txt, big + 6);
        st_free(back);
        st_free(ids);
    }
    /* Out-of-range ids. */
    int32_t bad[2] = {5, 1 << 30};
    char *back;
    size_t bn;
    assert_int_equal(st_tokenizer_decode(t, bad, 2, &back, &bn), ST_ERR_BOUNDS);
    assert_null(st_tokenizer_piece(t, -1, NULL));
    free(txt);
    st_tokenizer_free(cl);
    st_tokenizer_free(t);
}

/* ---- hostile files ------------------------------------------------------------ */
typedef struct hostile {
    const char *file;      /* written under g_tmp */
    const char *content;   /* NULL: special (see below) */
    size_t n;
    const char *load;      /* what to load, relative to g_tmp */
} hostile;

static void expect_format(const char *path, const char *must_name) {
    st_tokenizer *t = NULL;
    st_status s = st_tokenizer_load(path, &t);
    if (s != ST_ERR_FORMAT) fail_msg("%s: got %s (%s), want ST_ERR_FORMAT", path, st_status_name(s), st_last_error());
    assert_null(t);
    if (!strstr(st_last_error(), must_name))
        fail_msg("%s: message '%s' does not name %s", path, st_last_error(), must_name);
}

static void test_hostile(void **st) {
    (void)st;
    char path[512], dir[512];
    /* truncated tok512.bin: cut inside the last record, and inside a header */
    size_t n;
    char *tok = slurp(SRC "/data/stories260K/tok512.bin", &n);
    size_t cuts[] = {n - 3, n - 9, 2, 7};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        snprintf(path, sizeof path, "%s/trunc%zu.bin", g_tmp, i);
        spit(path, tok, cuts[i]);
        expect_format(path, path);
    }
    /* bad lengths and scores */
    memcpy(path, tok, 0);
    char *bad = malloc(n);
    memcpy(bad, tok, n);
    int32_t huge = 1 << 30;
    memcpy(bad + 8, &huge, 4); /* length of token 0 */
    snprintf(path, sizeof path, "%s/badlen.bin", g_tmp);
    spit(path, bad, n);
    expect_format(path, path);
    free(bad);
    free(tok);
    /* bad JSON */
    const char *jsons[] = {
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}",       /* truncated */
        "[1, 2, 3]",                                                  /* not an object */
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []},"
        " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",              /* id not an integer */
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]},"
        " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",              /* merge of unknown token */
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [7]},"
        " \"decoder\": {\"type\": \"ByteLevel\"}}",                    /* merge not a string */
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}",
        "\xFF\xFE garbage",
        "",
    };
    for (size_t i = 0; i < sizeof jsons / sizeof *jsons; i++) {
        snprintf(path, sizeof path, "%s/bad%zu.json", g_tmp, i);
        spit(path, jsons[i], strlen(jsons[i]));
        expect_format(path, path);
    }
    /* encoder.json with a non-integer value (a key that is no token id),
     * and vocab.bpe naming an unknown token */
    snprintf(dir, sizeof dir, "%s/gpt2bad", g_tmp);
    mkdir(dir, 0755);
    char enc[600], bpe[600];
    snprintf(enc, sizeof enc, "%s/encoder.json", dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", dir);
    const char *e1 = "{\"a\": 0, \"b\": {\"nested\": 1}}";
    spit(enc, e1, strlen(e1));
    spit(bpe, "#version: 0.2\n", 14);
    expect_format(dir, "encoder.json");
    size_t en;
    char *encj = slurp(SRC "/data/gpt2-bpe/encoder.json", &en);
    spit(enc, encj, en);
    free(encj);
    const char *b1 = "#version: 0.2\n\xC4\xA0 t\nzzzzqqqq xyzzy\n";
    spit(bpe, b1, strlen(b1));
    expect_format(dir, "vocab.bpe");
    const char *b2 = "#version: 0.2\nnospace\n";
    spit(bpe, b2, strlen(b2));
    expect_format(dir, "vocab.bpe");
    /* .tiktoken with bad base64, a bad rank, a duplicate rank */
    const char *tks[] = {"IQ== 0\nIg== 1\n!!!! 2\n", "IQ== 0\nIg== x\n", "IQ== 0\nIg== 0\n",
                         "IQ= 0\n", "IQ==\n"};
    for (size_t i = 0; i < sizeof tks / sizeof *tks; i++) {
        snprintf(path, sizeof path, "%s/bad%zu.tiktoken", g_tmp, i);
        spit(path, tks[i], strlen(tks[i]));
        expect_format(path, path);
    }
    /* a well-formed .tiktoken lacking byte tokens */
    snprintf(path, sizeof path, "%s/nobytes.tiktoken", g_tmp);
    spit(path, "IQ== 0\n", 7);
    expect_format(path, "byte");
    /* missing files are ST_ERR_IO naming the path */
    st_tokenizer *t = NULL;
    assert_int_equal(st_tokenizer_load("/nonexistent/tok.json", &t), ST_ERR_IO);
    assert_non_null(strstr(st_last_error(), "/nonexistent/tok.json"));
}

/* Names resolve through STRATA_DATA_DIR. */
static void test_names(void **st) {
    (void)st;
    setenv("STRATA_DATA_DIR", SRC "/data", 1);
    st_tokenizer *t = load_ok("gpt2");
    st_tokenizer_free(t);
    t = load_ok("cl100k_base");
    assert_int_equal(st_tokenizer_eos_id(t), 100257);
    st_tokenizer_free(t);
    setenv("STRATA_DATA_DIR", "/nonexistent", 1);
    assert_int_equal(st_tokenizer_load("gpt2", &t), ST_ERR_IO);
    assert_non_null(strstr(st_last_error(), "STRATA_DATA_DIR"));
    unsetenv("STRATA_DATA_DIR");
}

static int setup(void **st) {
    (void)st;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/strata_tok_XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **st) {
    (void)st;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static int64_t g_live0;
static int mark_live(void **st) {
    (void)st;
    g_live0 = st_alloc_get_stats().live_bytes;
    return 0;
}

static int check_leaks(void **st) {
    (void)st;
    st_alloc_stats a = st_alloc_get_stats();
    if (a.live_bytes != g_live0) {
        fprintf(stderr, "leak: %lld bytes live\n", (long long)(a.live_bytes - g_live0));
        return -1;
    }
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gpt2_refs, mark_live, check_leaks),
        cmocka_unit_test_setup_teardown(test_cl100k_refs, mark_live, check_leaks),
        cmocka_unit_test_setup_teardown(test_tok512_refs, mark_live, check_leaks),
        cmocka_unit_test_setup_teardown(test_char_roundtrip, mark_live, check_leaks),
        cmocka_unit_test_setup_teardown(test_train_bpe, mark_live, check_leaks),
        cmocka_unit_test_setup_teardown(test_hf_json_gpt2, mark_live, check_leaks),
        cmocka_unit_test_setup_teardown(test_hf_json_cl100k_sp, mark_live, check_leaks),
        cmocka_unit_test_setup_teardown(test_merge_paths_and_long_input, mark_live, check_leaks),
        cmocka_unit_test_setup_teardown(test_hostile, mark_live, check_leaks),
        cmocka_unit_test_setup_teardown(test_names, mark_live, check_leaks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
