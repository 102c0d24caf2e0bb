/*
 * test_shards.c — token shard files and the dataset manifest (layer 5):
 * write/read round trips in both token widths, hostile shard headers (each
 * must be ST_ERR_FORMAT naming the file, never a crash or an overflow),
 * the manifest round trip and its validation, and SHA-256 against the
 * FIPS 180-2 example ("abc").
 *
 * Files go to a mkdtemp folder removed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/data.h"

static char g_tmp[256];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/strata_test_shards_XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void roundtrip(uint32_t vocab, uint32_t want_bytes) {
    enum { N = 5000 };
    int32_t *ids = malloc(sizeof(int32_t) * N), *back = malloc(sizeof(int32_t) * N);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % vocab);
    }
    ids[0] = (int32_t)vocab - 1; /* the largest id */
    ids[1] = 0;
    uint8_t sha[32];
    for (int i = 0; i < 32; i++)
        sha[i] = (uint8_t)(i * 7 + 1);
    const char *p = tpath("rt.bin");
    assert_int_equal(st_shard_write(p, ids, N, vocab, sha), ST_OK);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal((size_t)sb.st_size, ST_SHARD_HEADER_BYTES + (size_t)N * want_bytes);
    st_shard *sh = NULL;
    assert_int_equal(st_shard_open(p, true, &sh), ST_OK);
    const st_shard_info *in = st_shard_get_info(sh);
    assert_int_equal(in->token_bytes, want_bytes);
    assert_int_equal(in->n_tokens, N);
    assert_int_equal(in->vocab_size, vocab);
    assert_int_equal(in->version, ST_SHARD_VERSION);
    assert_memory_equal(in->tokenizer_sha256, sha, 32);
    assert_int_equal(st_shard_read(sh, 0, N, back), ST_OK);
    assert_memory_equal(ids, back, sizeof(int32_t) * N);
    /* a window in the middle */
    assert_int_equal(st_shard_read(sh, 1234, 100, back), ST_OK);
    assert_memory_equal(ids + 1234, back, sizeof(int32_t) * 100);
    assert_int_equal(st_shard_read(sh, N - 10, 11, back), ST_ERR_BOUNDS);
    assert_int_equal(st_shard_read(sh, UINT64_MAX - 2, 5, back), ST_ERR_BOUNDS);
    st_shard_free(sh);
    free(ids);
    free(back);
}

static void test_roundtrip_u16(void **state) {
    (void)state;
    roundtrip(65, 2);
    roundtrip(65536, 2);
}

static void test_roundtrip_u32(void **state) {
    (void)state;
    roundtrip(65537, 4);
    roundtrip(100277, 4);
}

static void test_write_rejects(void **state) {
    (void)state;
    int32_t ids[3] = {1, 70, 2};
    assert_int_equal(st_shard_write(tpath("bad.bin"), ids, 3, 65, NULL), ST_ERR_INVALID_ARG);
    assert_non_null(strstr(st_last_error(), "token 1 is 70"));
    ids[1] = -1;
    assert_int_equal(st_shard_write(tpath("bad.bin"), ids, 3, 65, NULL), ST_ERR_INVALID_ARG);
    assert_int_equal(st_shard_write(tpath("bad.bin"), ids, 3, 0, NULL), ST_ERR_INVALID_ARG);
    /* nothing was left behind */
    assert_int_not_equal(access(tpath("bad.bin"), F_OK), 0);
    /* an empty shard is valid */
    assert_int_equal(st_shard_write(tpath("empty.bin"), NULL, 0, 65, NULL), ST_OK);
    st_shard *sh = NULL;
    assert_int_equal(st_shard_open(tpath("empty.bin"), true, &sh), ST_OK);
    assert_int_equal(st_shard_get_info(sh)->n_tokens, 0);
    st_shard_free(sh);
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* Writes a mutated copy of a good shard and expects ST_ERR_FORMAT with
 * `needle` and the path in the message, from the file and memory readers. */
static void expect_bad(const uint8_t *good, size_t n, void (*mut)(uint8_t *, size_t *), bool check,
                       const char *needle) {
    uint8_t *b = malloc(n + 64);
    memcpy(b, good, n);
    size_t m = n;
    mut(b, &m);
    const char *p = tpath("hostile.bin");
    spit(p, b, m);
    st_shard *sh = NULL;
    st_status s = st_shard_open(p, check, &sh);
    if (s != ST_ERR_FORMAT) fail_msg("%s: got %s (%s)", needle, st_status_name(s), st_last_error());
    assert_null(sh);
    if (!strstr(st_last_error(), needle) || !strstr(st_last_error(), "hostile.bin"))
        fail_msg("message '%s' lacks '%s' or the file name", st_last_error(), needle);
    assert_int_equal(st_shard_open_mem(b, m, "mem.bin", check, &sh), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "mem.bin"));
    free(b);
}

static void m_truncate(uint8_t *b, size_t *n) {
    (void)b;
    *n -= 3;
}
static void m_short(uint8_t *b, size_t *n) {
    (void)b;
    *n = 40;
}
static void m_magic(uint8_t *b, size_t *n) {
    (void)n;
    b[2] ^= 0x20;
}
static void m_version(uint8_t *b, size_t *n) {
    (void)n;
    put32(b + 8, 2);
}
static void m_width(uint8_t *b, size_t *n) {
    (void)n;
    put32(b + 12, 3);
}
static void m_huge(uint8_t *b, size_t *n) {
    (void)n;
    put64(b + 16, UINT64_MAX / 2 + 5);
}
static void m_trailing(uint8_t *b, size_t *n) {
    b[*n] = 0;
    b[*n + 1] = 0;
    *n += 2;
}
static void m_vocab0(uint8_t *b, size_t *n) {
    (void)n;
    put32(b + 24, 0);
}
static void m_vocab_wide(uint8_t *b, size_t *n) {
    (void)n;
    put32(b + 24, 70000);
}
static void m_token(uint8_t *b, size_t *n) {
    (void)n;
    b[64 + 2 * 7] = 200;
} /* id 200 >= 65 */

static void test_hostile(void **state) {
    (void)state;
    int32_t ids[100];
    for (int i = 0; i < 100; i++)
        ids[i] = i % 65;
    assert_int_equal(st_shard_write(tpath("good.bin"), ids, 100, 65, NULL), ST_OK);
    size_t n;
    uint8_t *good = slurp(tpath("good.bin"), &n);
    expect_bad(good, n, m_truncate, true, "truncated");
    expect_bad(good, n, m_short, true, "shorter than");
    expect_bad(good, n, m_magic, true, "bad magic");
    expect_bad(good, n, m_version, true, "version 2");
    expect_bad(good, n, m_width, true, "3 bytes per token");
    expect_bad(good, n, m_huge, true, "truncated");
    expect_bad(good, n, m_trailing, true, "trailing");
    expect_bad(good, n, m_vocab0, true, "vocab_size 0");
    expect_bad(good, n, m_vocab_wide, true, "vocab_size 70000");
    expect_bad(good, n, m_token, true, "token 7 is 200");
    /* without the token scan the same file opens (sizes are still checked) */
    uint8_t *b = malloc(n);
    memcpy(b, good, n);
    size_t m = n;
    m_token(b, &m);
    st_shard *sh = NULL;
    assert_int_equal(st_shard_open_mem(b, m, "x", false, &sh), ST_OK);
    st_shard_free(sh);
    free(b);
    free(good);
    /* missing file and directory */
    assert_int_equal(st_shard_open(tpath("nope.bin"), true, &sh), ST_ERR_IO);
    assert_non_null(strstr(st_last_error(), "nope.bin"));
    assert_int_equal(st_shard_open(g_tmp, true, &sh), ST_ERR_IO);
}

static st_manifest *sample_manifest(void) {
    st_manifest *m = st_calloc(1, sizeof *m);
    m->version = 1;
    m->tokenizer_name = st_strdup("data/gpt2-bpe");
    m->tokenizer_file = st_strdup("tokenizer.json");
    memset(m->tokenizer_sha256, 'a', 64);
    m->tokenizer_sha256[3] = '7';
    m->vocab_size = 50257;
    m->token_bytes = 2;
    m->separator_id = 50256;
    m->column = st_strdup("text");
    m->val_fraction = 0.125;
    m->shard_tokens = 1000;
    m->seed = UINT64_MAX - 3; /* survives JSON as a string */
    m->n_docs = 42;
    m->n_shards = 3;
    m->shards = st_calloc(3, sizeof *m->shards);
    const char *files[3] = {"train-000000.bin", "train-000001.bin", "val-000000.bin"};
    uint64_t toks[3] = {1000, 17, 99};
    for (int i = 0; i < 3; i++) {
        m->shards[i].file = st_strdup(files[i]);
        m->shards[i].split = i == 2 ? ST_SPLIT_VAL : ST_SPLIT_TRAIN;
        m->shards[i].n_tokens = toks[i];
    }
    m->n_tokens[0] = 1017;
    m->n_tokens[1] = 99;
    m->n_sources = 2;
    m->sources = st_calloc(2, sizeof *m->sources);
    for (int i = 0; i < 2; i++) {
        m->sources[i].path = st_strdup(i ? "b/c.jsonl" : "a \"quoted\" \xC3\xA9.txt");
        m->sources[i].n_bytes = 1234567890123ull + (uint64_t)i;
        memset(m->sources[i].sha256, i ? 'f' : '0', 64);
        m->sources[i].n_docs = 21;
        m->sources[i].n_tokens = 558;
    }
    return m;
}

static void test_manifest_roundtrip(void **state) {
    (void)state;
    st_manifest *m = sample_manifest();
    const char *p = tpath("manifest.json");
    assert_int_equal(st_manifest_write(p, m), ST_OK);
    st_manifest *r = NULL;
    assert_int_equal(st_manifest_read(g_tmp, &r), ST_OK); /* by directory */
    assert_string_equal(r->tokenizer_name, m->tokenizer_name);
    assert_string_equal(r->tokenizer_file, "tokenizer.json");
    assert_string_equal(r->tokenizer_sha256, m->tokenizer_sha256);
    assert_int_equal(r->vocab_size, 50257);
    assert_int_equal(r->token_bytes, 2);
    assert_int_equal(r->separator_id, 50256);
    assert_string_equal(r->column, "text");
    assert_true(r->val_fraction == 0.125);
    assert_int_equal(r->shard_tokens, 1000);
    assert_true(r->seed == UINT64_MAX - 3);
    assert_int_equal(r->n_docs, 42);
    assert_int_equal(r->n_tokens[0], 1017);
    assert_int_equal(r->n_tokens[1], 99);
    assert_int_equal(r->n_shards, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(r->shards[i].file, m->shards[i].file);
        assert_int_equal(r->shards[i].split, m->shards[i].split);
        assert_int_equal(r->shards[i].n_tokens, m->shards[i].n_tokens);
    }
    assert_int_equal(r->n_sources, 2);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(r->sources[i].path, m->sources[i].path);
        assert_string_equal(r->sources[i].sha256, m->sources[i].sha256);
        assert_int_equal(r->sources[i].n_bytes, m->sources[i].n_bytes);
        assert_int_equal(r->sources[i].n_docs, 21);
        assert_int_equal(r->sources[i].n_tokens, 558);
    }
    /* written again, the bytes are the same */
    size_t n1, n2;
    uint8_t *a = slurp(p, &n1);
    assert_int_equal(st_manifest_write(tpath("m2.json"), r), ST_OK);
    uint8_t *b = slurp(tpath("m2.json"), &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(a);
    free(b);
    st_manifest_free(r);
    st_manifest_free(m);
}

static void expect_manifest_bad(const char *text, const char *needle) {
    st_manifest *m = NULL;
    st_status s = st_manifest_read_mem(text, strlen(text), "bad/manifest.json", &m);
    if (s != ST_ERR_FORMAT) fail_msg("%s: got %s", needle, st_status_name(s));
    assert_null(m);
    if (!strstr(st_last_error(), needle) || !strstr(st_last_error(), "bad/manifest.json"))
        fail_msg("message '%s' lacks '%s'", st_last_error(), needle);
}

static char *replace(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    assert_non_null(at);
    size_t n = strlen(s) - strlen(from) + strlen(to);
    char *r = malloc(n + 1);
    size_t k = (size_t)(at - s);
    memcpy(r, s, k);
    strcpy(r + k, to);
    strcat(r, at + strlen(from));
    return r;
}

static void test_manifest_hostile(void **state) {
    (void)state;
    st_manifest *m = sample_manifest();
    assert_int_equal(st_manifest_write(tpath("manifest.json"), m), ST_OK);
    st_manifest_free(m);
    size_t n;
    char *good = (char *)slurp(tpath("manifest.json"), &n);
    good[n] = 0;
    struct {
        const char *from, *to, *needle;
    } cases[] = {
        {"\"train-000001.bin\"", "\"../etc/passwd\"", "not a plain file name"},
        {"\"tokens\": 17", "\"tokens\": 18", "disagree"},
        {"\"tokens\": 17", "\"tokens\": -17", "non-negative"},
        {"\"version\": 1", "\"version\": 9", "manifest version 9"},
        {"\"dtype\": \"uint16\"", "\"dtype\": \"int8\"", "dtype"},
        {"\"vocab_size\": 50257", "\"vocab_size\": 70000", "uint16 with vocab_size"},
        {"\"split\": \"val\"", "\"split\": \"test\"", "split"},
        {"\"format\": \"strata-token-shards\"", "\"format\": \"x\"", "format"},
        {"\"separator_id\": 50256", "\"separator_id\": 50257", "separator_id"},
        {"\"seed\": \"18446744073709551612\"", "\"seed\": \"-1\"", "seed"},
        {"\"val_fraction\": 0.125", "\"val_fraction\": 1.5", "val_fraction"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = replace(good, cases[i].from, cases[i].to);
        expect_manifest_bad(t, cases[i].needle);
        free(t);
    }
    expect_manifest_bad("{\"format\": ", "invalid JSON");
    expect_manifest_bad("[1, 2]", "not a JSON object");
    expect_manifest_bad("", "invalid JSON");
    /* every truncation of the good text fails cleanly */
    for (size_t k = 0; k + 1 < n; k += 7) { /* n - 1: only the final newline is gone */
        st_manifest *r = NULL;
        st_status s = st_manifest_read_mem(good, k, "trunc.json", &r);
        assert_int_not_equal(s, ST_OK);
        assert_null(r);
    }
    free(good);
}

static void test_sha256(void **state) {
    (void)state;
    spit(tpath("abc"), "abc", 3);
    char hex[65];
    uint64_t n = 0;
    assert_int_equal(st_sha256_file(tpath("abc"), hex, &n), ST_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(n, 3);
    spit(tpath("empty"), "", 0);
    assert_int_equal(st_sha256_file(tpath("empty"), hex, &n), ST_OK);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(st_sha256_file(tpath("missing"), hex, &n), ST_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_u16),
        cmocka_unit_test(test_roundtrip_u32),
        cmocka_unit_test(test_write_rejects),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_manifest_roundtrip),
        cmocka_unit_test(test_manifest_hostile),
        cmocka_unit_test(test_sha256),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
