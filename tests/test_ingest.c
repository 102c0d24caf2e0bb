/*
 * test_ingest.c — dataset ingest into token shards (layer 5).
 *
 * References: the token stream of the shards decoded back (char-level
 * tokenizer: decode is exact) equals the documents in the documented order
 * (directories sorted, .txt whole, .jsonl field, .csv RFC 4180 field with
 * quotes, doubled quotes, commas and newlines inside, CRLF); with GPT-2 the
 * stream is <|endoftext|> + encode(doc) per document; Parquet input (when
 * the shared test files are present) gives the 7222 paragraphs and
 * 1100949 characters of the files' expected summary. Malformed lines fail
 * with ST_ERR_FORMAT naming file:line. Output bytes are identical for 1, 2
 * and 3 threads, and for a run interrupted twice and resumed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define _XOPEN_SOURCE_EXTENDED 1
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/backend.h"
#include "strata/data.h"

static char g_tmp[256];
static st_tokenizer *g_char;

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/strata_test_ingest_XXXXXX");
    if (!mkdtemp(g_tmp)) return -1;
    char corpus[200];
    int k = 0;
    for (int c = 32; c < 127; c++)
        corpus[k++] = (char)c;
    corpus[k++] = '\n';
    corpus[k++] = '\r';
    corpus[k++] = '\t';
    return st_tokenizer_char_from_corpus(corpus, (size_t)k, &g_char) == ST_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    st_tokenizer_free(g_char);
    nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static char *tp(const char *name) {
    static char buf[64][512];
    static int k;
    k = (k + 1) % 64;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

static void spit(const char *path, const char *text) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = dir + strlen(g_tmp) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        mkdir(dir, 0755);
        *s = '/';
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* The whole token stream of a split (malloc'd). */
static int32_t *read_split(const char *dir, st_split split, uint64_t *n) {
    st_manifest *m = NULL;
    if (st_manifest_read(dir, &m) != ST_OK) fail_msg("manifest %s: %s", dir, st_last_error());
    int32_t *ids = malloc(sizeof(int32_t) * (m->n_tokens[split] + 1));
    uint64_t at = 0;
    for (int i = 0; i < m->n_shards; i++) {
        if (m->shards[i].split != split) continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, m->shards[i].file);
        st_shard *sh = NULL;
        assert_int_equal(st_shard_open(path, true, &sh), ST_OK);
        uint64_t k = st_shard_get_info(sh)->n_tokens;
        assert_int_equal(st_shard_read(sh, 0, (size_t)k, ids + at), ST_OK);
        at += k;
        st_shard_free(sh);
    }
    assert_int_equal(at, m->n_tokens[split]);
    *n = at;
    st_manifest_free(m);
    return ids;
}

static char *decode_split(const char *dir, st_split split) {
    uint64_t n;
    int32_t *ids = read_split(dir, split, &n);
    char *text = NULL;
    size_t tn;
    assert_int_equal(st_tokenizer_decode(g_char, ids, (size_t)n, &text, &tn), ST_OK);
    free(ids);
    return text;
}

static st_ingest_params params(void) {
    st_ingest_params p = st_ingest_default_params();
    p.tokenizer = g_char;
    p.tokenizer_name = "char-test";
    p.val_fraction = 0;
    p.n_threads = 2;
    return p;
}

static void ingest_ok(const char *const *in, int n, const char *out, const st_ingest_params *p,
                      st_ingest_result *r) {
    st_status s = st_ingest(in, n, out, p, r);
    if (s != ST_OK) fail_msg("ingest into %s: %s", out, st_last_error());
}

static void test_formats(void **state) {
    (void)state;
    spit(tp("in/a.txt"), "Hello world\n");
    spit(tp("in/b.jsonl"), "{\"text\": \"first\"}\n"
                           "   \n"
                           "{\"other\": 1, \"text\": \"sec\\\"ond\\nline\"}\r\n"
                           "{\"id\": 3, \"text\": \"\"}");
    spit(tp("in/c.csv"), "id,text,extra\r\n"
                         "1,plain,x\r\n"
                         "2,\"with, comma\",y\r\n"
                         "3,\"quote \"\"inside\"\"\",z\r\n"
                         "4,\"multi\r\nline\",\r\n"
                         "\r\n"
                         "5,,last\r\n");
    spit(tp("in/sub/d.txt"), "deep");
    spit(tp("in/ignored.md"), "not an input");
    const char *in[] = {tp("in")};
    st_ingest_params p = params();
    st_ingest_result r;
    ingest_ok(in, 1, tp("out_formats"), &p, &r);
    assert_true(r.complete);
    assert_int_equal(r.n_inputs, 4);
    assert_int_equal(r.n_docs, 1 + 3 + 5 + 1);
    char *text = decode_split(tp("out_formats"), ST_SPLIT_TRAIN);
    const char *want = "Hello world\n"
                       "first"
                       "sec\"ond\nline"
                       ""
                       "plain"
                       "with, comma"
                       "quote \"inside\""
                       "multi\r\nline"
                       ""
                       "deep";
    assert_string_equal(text, want);
    st_free(text);
    st_manifest *m = NULL;
    assert_int_equal(st_manifest_read(tp("out_formats"), &m), ST_OK);
    assert_int_equal(m->n_sources, 4);
    assert_string_equal(m->sources[0].path, tp("in/a.txt"));
    assert_string_equal(m->sources[3].path, tp("in/sub/d.txt"));
    char hex[65];
    uint64_t nb;
    assert_int_equal(st_sha256_file(tp("in/c.csv"), hex, &nb), ST_OK);
    assert_string_equal(m->sources[2].sha256, hex);
    assert_int_equal(m->sources[2].n_bytes, nb);
    assert_int_equal(m->sources[2].n_docs, 5);
    assert_int_equal(m->separator_id, -1); /* char-level: no BOS/EOS */
    assert_int_equal(m->token_bytes, 2);
    assert_string_equal(m->tokenizer_name, "char-test");
    /* the manifest's tokenizer hash is that of the tokenizer.json beside it */
    assert_int_equal(st_sha256_file(tp("out_formats/tokenizer.json"), hex, NULL), ST_OK);
    assert_string_equal(m->tokenizer_sha256, hex);
    st_manifest_free(m);
    /* no journal or pending file is left */
    assert_int_not_equal(access(tp("out_formats/ingest.journal.json"), F_OK), 0);
    /* a glob picks the matching files only */
    const char *gl[] = {tp("in/*.jsonl")};
    ingest_ok(gl, 1, tp("out_glob"), &p, &r);
    assert_int_equal(r.n_inputs, 1);
    assert_int_equal(r.n_docs, 3);
    /* a --column that names another field */
    spit(tp("col.csv"), "body,title\n\"b1\",t1\n\"b2\",t2\n");
    const char *cs[] = {tp("col.csv")};
    p.column = "title";
    ingest_ok(cs, 1, tp("out_col"), &p, &r);
    text = decode_split(tp("out_col"), ST_SPLIT_TRAIN);
    assert_string_equal(text, "t1t2");
    st_free(text);
}

static void expect_fail(const char *file, const char *content, st_status want, const char *needle) {
    if (content) spit(tp(file), content);
    const char *in[] = {tp(file)};
    st_ingest_params p = params();
    st_ingest_result r;
    st_status s = st_ingest(in, 1, tp("out_bad"), &p, &r);
    if (s != want) fail_msg("%s: got %s (%s)", file, st_status_name(s), st_last_error());
    if (!strstr(st_last_error(), needle))
        fail_msg("%s: message '%s' lacks '%s'", file, st_last_error(), needle);
    assert_false(r.complete);
}

static void test_bad_inputs(void **state) {
    (void)state;
    expect_fail("b1.jsonl", "{\"text\": \"a\"}\n{\"text\": \n", ST_ERR_FORMAT,
                "b1.jsonl:2: invalid JSON");
    expect_fail("b2.jsonl", "{\"txt\": \"a\"}\n", ST_ERR_FORMAT,
                "b2.jsonl:1: field \"text\" is missing");
    expect_fail("b3.jsonl", "\n\n[\"a\"]\n", ST_ERR_FORMAT, "b3.jsonl:3: not a JSON object");
    expect_fail("b4.jsonl", "{\"text\": 7}\n", ST_ERR_FORMAT, "not a string");
    expect_fail("b1.csv", "text\n\"abc\n", ST_ERR_FORMAT, "b1.csv:2: unterminated quoted field");
    expect_fail("b2.csv", "a,text\n1,2\n1,2,3\n", ST_ERR_FORMAT,
                "b2.csv:3: 3 fields, the header has 2");
    expect_fail("b3.csv", "a,b\n1,2\n", ST_ERR_FORMAT, "no column \"text\"");
    expect_fail("b4.csv", "text\nab\"c\n", ST_ERR_FORMAT,
                "b4.csv:2: a quote inside an unquoted field");
    expect_fail("b5.csv", "text\n\"ab\"c\n", ST_ERR_FORMAT,
                "b5.csv:2: unexpected character after a closing quote");
    expect_fail("b6.csv", "", ST_ERR_FORMAT, "empty CSV");
    expect_fail("x.md", "hello", ST_ERR_INVALID_ARG, "unsupported input type");
    expect_fail("missing.txt", NULL, ST_ERR_IO, "missing.txt");
    expect_fail("nomatch*.jsonl", NULL, ST_ERR_IO, "matches no file");
    /* a character the char-level tokenizer lacks: names the file and document */
    expect_fail("utf.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"caf\\u00e9\"}\n", ST_ERR_FORMAT,
                "utf.jsonl: document 1");
    /* bad parameters */
    const char *in[] = {tp("b1.jsonl")};
    st_ingest_params p = params();
    p.val_fraction = 1.0;
    assert_int_equal(st_ingest(in, 1, tp("out_bad"), &p, NULL), ST_ERR_INVALID_ARG);
    p = params();
    p.tokenizer = NULL;
    assert_int_equal(st_ingest(in, 1, tp("out_bad"), &p, NULL), ST_ERR_INVALID_ARG);
}

/* Asserts that two dataset directories hold the same files, byte for byte. */
static void same_dirs(const char *a, const char *b) {
    for (int pass = 0; pass < 2; pass++) {
        const char *x = pass ? b : a, *y = pass ? a : b;
        DIR *d = opendir(x);
        assert_non_null(d);
        struct dirent *e;
        int n = 0;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p1[600], p2[600];
            snprintf(p1, sizeof p1, "%s/%s", x, e->d_name);
            snprintf(p2, sizeof p2, "%s/%s", y, e->d_name);
            if (access(p2, F_OK) != 0) fail_msg("%s has %s, %s does not", x, e->d_name, y);
            size_t n1, n2;
            uint8_t *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2);
            if (n1 != n2 || memcmp(b1, b2, n1) != 0)
                fail_msg("%s differs between %s and %s", e->d_name, x, y);
            free(b1);
            free(b2);
            n++;
        }
        closedir(d);
        assert_true(n >= 3);
    }
}

/* n_files jsonl files of docs with varied lengths. */
static void make_corpus(const char *sub, int n_files, int docs_per_file) {
    char *buf = malloc(1 << 20);
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (int f = 0; f < n_files; f++) {
        size_t k = 0;
        for (int d = 0; d < docs_per_file; d++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int len = 1 + (int)(x % 300);
            k += (size_t)sprintf(buf + k, "{\"text\": \"doc %d.%d ", f, d);
            for (int i = 0; i < len; i++)
                buf[k++] = (char)('a' + (x >> (i % 50)) % 26);
            k += (size_t)sprintf(buf + k, "\\n\"}\n");
        }
        buf[k] = 0;
        char name[128];
        snprintf(name, sizeof name, "%s/part-%02d.jsonl", sub, f);
        spit(tp(name), buf);
    }
    free(buf);
}

static void test_threads_identical(void **state) {
    (void)state;
    make_corpus("thr", 3, 400);
    const char *in[] = {tp("thr")};
    st_ingest_params p = params();
    p.val_fraction = 0.2;
    p.shard_tokens = 20000;
    const char *outs[3] = {tp("thr_out1"), tp("thr_out2"), tp("thr_out3")};
    st_ingest_result r[3];
    for (int t = 0; t < 3; t++) {
        p.n_threads = t + 1;
        ingest_ok(in, 1, outs[t], &p, &r[t]);
        assert_true(r[t].complete);
    }
    assert_true(r[0].n_shards > 6);
    assert_true(r[0].n_tokens[1] > 0);
    /* the val fraction is near 0.2 of the documents' tokens */
    double vf = (double)r[0].n_tokens[1] / (double)(r[0].n_tokens[0] + r[0].n_tokens[1]);
    assert_true(vf > 0.12 && vf < 0.28);
    same_dirs(outs[0], outs[1]);
    same_dirs(outs[0], outs[2]);
    /* a borrowed pool (a context's) gives the same bytes */
    st_pool *pool = NULL;
    assert_int_equal(st_pool_new(2, &pool), ST_OK);
    p.pool = pool;
    ingest_ok(in, 1, tp("thr_pool"), &p, NULL);
    st_pool_free(pool);
    same_dirs(outs[0], tp("thr_pool"));
}

static void test_split_stable(void **state) {
    (void)state;
    make_corpus("stab", 2, 300);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tp("stab"));
    const char *in[] = {dir};
    st_ingest_params p = params();
    p.val_fraction = 0.3;
    p.shard_tokens = 777;
    st_ingest_result r;
    ingest_ok(in, 1, tp("stab_a"), &p, &r);
    p.shard_tokens = 1 << 20;
    p.n_threads = 1;
    ingest_ok(in, 1, tp("stab_b"), &p, &r);
    for (int s = 0; s < 2; s++) {
        char *a = decode_split(tp("stab_a"), (st_split)s),
             *b = decode_split(tp("stab_b"), (st_split)s);
        assert_string_equal(a, b);
        st_free(a);
        st_free(b);
    }
    /* a different seed moves documents between the splits */
    p.seed = 7;
    ingest_ok(in, 1, tp("stab_c"), &p, &r);
    char *a = decode_split(tp("stab_a"), ST_SPLIT_VAL),
         *c = decode_split(tp("stab_c"), ST_SPLIT_VAL);
    assert_string_not_equal(a, c);
    st_free(a);
    st_free(c);
}

static void test_resume(void **state) {
    (void)state;
    make_corpus("res", 5, 150);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tp("res"));
    const char *in[] = {dir};
    st_ingest_params p = params();
    p.val_fraction = 0.1;
    p.shard_tokens = 12000; /* shards end mid-input, pending buffers are non-empty */
    st_ingest_result r;
    ingest_ok(in, 1, tp("res_full"), &p, &r);
    assert_true(r.complete);
    /* interrupted after 2 inputs, then after 2 more, then finished */
    p.journal_interval_s = 0;
    p.stop_after_inputs = 2;
    ingest_ok(in, 1, tp("res_part"), &p, &r);
    assert_false(r.complete);
    assert_int_equal(r.n_inputs_skipped, 0);
    assert_int_equal(access(tp("res_part/ingest.journal.json"), F_OK), 0);
    assert_int_not_equal(access(tp("res_part/manifest.json"), F_OK), 0);
    st_loader *l = NULL;
    assert_int_equal(st_loader_new(tp("res_part"), NULL, &l), ST_ERR_IO); /* not a dataset yet */
    p.n_threads = 1; /* another thread count on resume */
    ingest_ok(in, 1, tp("res_part"), &p, &r);
    assert_false(r.complete);
    assert_int_equal(r.n_inputs_skipped, 2);
    p.stop_after_inputs = 0;
    ingest_ok(in, 1, tp("res_part"), &p, &r);
    assert_true(r.complete);
    assert_int_equal(r.n_inputs_skipped, 4);
    same_dirs(tp("res_full"), tp("res_part"));
    /* an input that changed after the interruption: the journal is ignored */
    p.stop_after_inputs = 3;
    ingest_ok(in, 1, tp("res_chg"), &p, &r);
    spit(tp("res/part-00.jsonl"), "{\"text\": \"changed\"}\n");
    p.stop_after_inputs = 0;
    ingest_ok(in, 1, tp("res_chg"), &p, &r);
    assert_true(r.complete);
    assert_int_equal(r.n_inputs_skipped, 0);
    ingest_ok(in, 1, tp("res_chg_ref"), &p, &r);
    same_dirs(tp("res_chg"), tp("res_chg_ref"));
}

static void test_gpt2_separator(void **state) {
    (void)state;
    st_tokenizer *tok = NULL;
    if (st_tokenizer_load(STRATA_SOURCE_DIR "/data/gpt2-bpe", &tok) != ST_OK)
        fail_msg("gpt2: %s", st_last_error());
    int eot = st_tokenizer_eos_id(tok);
    assert_int_equal(eot, 50256);
    spit(tp("g/1.txt"), "Hello, world!");
    spit(tp("g/2.txt"), " It's <|endoftext|> plain text.");
    const char *in[] = {tp("g/1.txt"), tp("g/2.txt")};
    st_ingest_params p = params();
    p.tokenizer = tok;
    p.tokenizer_name = "gpt2";
    ingest_ok(in, 2, tp("g_out"), &p, NULL);
    uint64_t n;
    int32_t *ids = read_split(tp("g_out"), ST_SPLIT_TRAIN, &n);
    int32_t *want = malloc(sizeof(int32_t) * 64);
    size_t k = 0;
    const char *docs[2] = {"Hello, world!", " It's <|endoftext|> plain text."};
    for (int d = 0; d < 2; d++) {
        want[k++] = eot;
        int32_t *e = NULL;
        size_t en = 0;
        st_encode_opts o = {0};
        assert_int_equal(st_tokenizer_encode(tok, docs[d], strlen(docs[d]), &o, &e, &en), ST_OK);
        memcpy(want + k, e, en * sizeof *e);
        k += en;
        st_free(e);
    }
    assert_int_equal(n, k);
    assert_memory_equal(ids, want, k * sizeof *ids);
    st_manifest *m = NULL;
    assert_int_equal(st_manifest_read(tp("g_out"), &m), ST_OK);
    assert_int_equal(m->separator_id, 50256);
    assert_int_equal(m->vocab_size, 50257);
    assert_int_equal(m->token_bytes, 2);
    st_manifest_free(m);
    /* the loader reads what ingest wrote */
    st_loader_params lp = st_loader_default_params();
    lp.batch_size = 2;
    lp.block_size = 4;
    st_loader *l = NULL;
    assert_int_equal(st_loader_new(tp("g_out"), &lp, &l), ST_OK);
    int32_t batch[10];
    assert_int_equal(st_loader_next(l, batch, NULL), ST_OK);
    for (int i = 0; i < 10; i++)
        assert_true(batch[i] >= 0 && batch[i] < 50257);
    st_loader_free(l);
    free(ids);
    free(want);
    st_tokenizer_free(tok);
}

#define PQ_DIR STRATA_SOURCE_DIR "/../shared/data/parquet"

static void test_parquet(void **state) {
    (void)state;
    const char *file = PQ_DIR "/shakespeare.parquet";
    if (access(file, R_OK) != 0) {
        print_message("skipped: %s not present\n", file);
        skip();
    }
    char *text = NULL;
    size_t tn = 0;
    assert_int_equal(
        st_text_read_file(STRATA_SOURCE_DIR "/data/tinyshakespeare.txt", 0, &text, &tn), ST_OK);
    st_tokenizer *tok = NULL;
    assert_int_equal(st_tokenizer_char_from_corpus(text, tn, &tok), ST_OK);
    st_free(text);
    const char *in[] = {file, PQ_DIR "/shakespeare.zstd_dict.parquet"};
    st_ingest_params p = params();
    p.tokenizer = tok;
    st_ingest_result r;
    ingest_ok(in, 2, tp("pq_out"), &p, &r);
    assert_int_equal(r.n_docs, 2 * 7222);
    assert_int_equal(r.n_tokens[0], 2 * 1100949ull); /* char-level: one token per character */
    uint64_t n;
    int32_t *ids = read_split(tp("pq_out"), ST_SPLIT_TRAIN, &n);
    char *first = NULL;
    size_t fn;
    assert_int_equal(st_tokenizer_decode(tok, ids, 60, &first, &fn), ST_OK);
    assert_string_equal(first, "First Citizen:\nBefore we proceed any further, hear me speak.");
    /* both files carry the same rows: the two halves of the stream agree */
    assert_memory_equal(ids, ids + n / 2, sizeof(int32_t) * (n / 2));
    st_free(first);
    free(ids);
    st_tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_split_stable),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_gpt2_separator),
        cmocka_unit_test(test_parquet),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
