/*
 * test_loader.c — the prefetching loader over token shards (layer 5).
 *
 * References: random mode against st_textdata_batch (the in-memory path of
 * `strata train --data FILE.txt`) over the same ids cut into three shards,
 * so rows that span shards are covered; sequential mode against the
 * definition (ids are their own positions, so each row names its chunk):
 * every chunk once per epoch, a different order each epoch; exact resume
 * through the JSON state; ranks disjoint and together equal to one
 * process with the whole batch; prefetch on and off give the same batches.
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
static char g_rand[300], g_seq[300];

enum { NSEQ_T = 8, NSEQ_CHUNKS = 240 };

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* A dataset dir with the given train ids cut at the cut points, plus val. */
static void make_dataset(const char *dir, const int32_t *ids, uint64_t n, const uint64_t *cuts,
                         int n_cuts, uint32_t vocab) {
    mkdir(dir, 0755);
    st_manifest m = {.version = 1,
                     .tokenizer_name = "test",
                     .tokenizer_file = "tokenizer.json",
                     .vocab_size = vocab,
                     .token_bytes = vocab <= 65536 ? 2 : 4,
                     .separator_id = -1,
                     .column = "text",
                     .val_fraction = 0.1,
                     .shard_tokens = 1 << 20,
                     .seed = 1};
    memset(m.tokenizer_sha256, '0', 64);
    uint8_t sha[32] = {0};
    st_manifest_shard sh[16];
    char names[16][32];
    uint64_t prev = 0;
    for (int i = 0; i <= n_cuts; i++) {
        uint64_t end = i < n_cuts ? cuts[i] : n;
        snprintf(names[i], sizeof names[i], "train-%06d.bin", i);
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        assert_int_equal(st_shard_write(path, ids + prev, (size_t)(end - prev), vocab, sha), ST_OK);
        sh[i] =
            (st_manifest_shard){.file = names[i], .split = ST_SPLIT_TRAIN, .n_tokens = end - prev};
        prev = end;
    }
    int ns = n_cuts + 1;
    char path[512];
    snprintf(path, sizeof path, "%s/val-000000.bin", dir);
    assert_int_equal(st_shard_write(path, ids, 500, vocab, sha), ST_OK);
    sh[ns++] =
        (st_manifest_shard){.file = "val-000000.bin", .split = ST_SPLIT_VAL, .n_tokens = 500};
    m.n_shards = ns;
    m.shards = sh;
    m.n_tokens[0] = n;
    m.n_tokens[1] = 500;
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    assert_int_equal(st_manifest_write(path, &m), ST_OK);
}

static st_textdata *g_td;

static int setup(void **state) {
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/strata_test_loader_XXXXXX");
    if (!mkdtemp(g_tmp)) return -1;
    /* random-mode data: tinyshakespeare's first 60 KB, char-level */
    char *text = NULL;
    size_t n = 0;
    if (st_text_read_file(STRATA_SOURCE_DIR "/data/tinyshakespeare.txt", 0, &text, &n) != ST_OK)
        return -1;
    n = 60000;
    st_tokenizer *tok = NULL;
    if (st_tokenizer_char_from_corpus(text, n, &tok) != ST_OK) return -1;
    if (st_textdata_new(tok, text, n, 1.0, "shakespeare", &g_td) != ST_OK) return -1;
    st_tokenizer_free(tok);
    st_free(text);
    snprintf(g_rand, sizeof g_rand, "%s/rand", g_tmp);
    uint64_t nt = (uint64_t)st_textdata_n_tokens(g_td, ST_SPLIT_TRAIN);
    uint64_t cuts[2] = {nt / 3, nt / 3 + 70}; /* a 70-token shard: rows span three shards */
    make_dataset(g_rand, st_textdata_tokens(g_td, ST_SPLIT_TRAIN), nt, cuts, 2, 65);
    /* sequential data: id == position */
    uint64_t ns = (uint64_t)NSEQ_T * NSEQ_CHUNKS + 1;
    int32_t *ids = malloc(sizeof(int32_t) * ns);
    for (uint64_t i = 0; i < ns; i++)
        ids[i] = (int32_t)i;
    snprintf(g_seq, sizeof g_seq, "%s/seq", g_tmp);
    uint64_t c2[3] = {100, 101, 1000};
    make_dataset(g_seq, ids, ns, c2, 3, 65536);
    free(ids);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    st_textdata_free(g_td);
    nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static st_loader *open_ok(const char *dir, st_loader_params p) {
    st_loader *l = NULL;
    st_status s = st_loader_new(dir, &p, &l);
    if (s != ST_OK) fail_msg("st_loader_new %s: %s", dir, st_last_error());
    return l;
}

static void test_random_matches_textdata(void **state) {
    (void)state;
    int B = 16, T = 64;
    size_t e = (size_t)B * (T + 1);
    int32_t *a = malloc(e * 4), *b = malloc(e * 4);
    for (int pf = 0; pf < 2; pf++) {
        st_loader_params p = st_loader_default_params();
        p.batch_size = B;
        p.block_size = T;
        p.seed = 4242;
        p.prefetch = pf ? 3 : 0;
        st_loader *l = open_ok(g_rand, p);
        assert_int_equal(st_loader_n_tokens(l), st_textdata_n_tokens(g_td, ST_SPLIT_TRAIN));
        assert_int_equal(st_loader_vocab_size(l), 65);
        for (uint64_t i = 0; i < 40; i++) {
            double w = -1;
            assert_int_equal(st_loader_next(l, a, &w), ST_OK);
            assert_true(w >= 0);
            assert_int_equal(st_textdata_batch(g_td, ST_SPLIT_TRAIN, 4242, i, B, T, b), ST_OK);
            assert_memory_equal(a, b, e * 4);
            assert_int_equal(st_loader_batch(l, i, b), ST_OK);
            assert_memory_equal(a, b, e * 4);
        }
        assert_int_equal(st_loader_n_batches(l), 40);
        assert_true(st_loader_wait_s(l) >= 0);
        st_loader_free(l);
    }
    free(a);
    free(b);
}

static void test_sequential_epochs(void **state) {
    (void)state;
    int B = 4, T = NSEQ_T;
    size_t e = (size_t)B * (T + 1);
    int32_t *a = malloc(e * 4);
    st_loader_params p = st_loader_default_params();
    p.mode = ST_LOADER_SEQUENTIAL;
    p.batch_size = B;
    p.block_size = T;
    p.prefetch = 2;
    st_loader *l = open_ok(g_seq, p);
    uint64_t bpe = st_loader_batches_per_epoch(l);
    assert_int_equal(bpe, NSEQ_CHUNKS / B);
    int order[2][NSEQ_CHUNKS];
    for (int ep = 0; ep < 2; ep++) {
        int seen[NSEQ_CHUNKS] = {0};
        for (uint64_t i = 0; i < bpe; i++) {
            assert_int_equal(st_loader_next(l, a, NULL), ST_OK);
            for (int r = 0; r < B; r++) {
                const int32_t *row = a + (size_t)r * (T + 1);
                assert_int_equal(row[0] % T, 0);
                int c = row[0] / T;
                assert_true(c >= 0 && c < NSEQ_CHUNKS);
                for (int t = 0; t <= T; t++)
                    assert_int_equal(row[t], c * T + t);
                seen[c]++;
                order[ep][i * B + (uint64_t)r] = c;
            }
        }
        for (int c = 0; c < NSEQ_CHUNKS; c++)
            assert_int_equal(seen[c], 1);
        st_loader_state st;
        st_loader_get_state(l, &st);
        assert_int_equal(st.epoch, (uint64_t)ep + 1);
    }
    assert_memory_not_equal(order[0], order[1], sizeof order[0]);
    /* not the identity either */
    int ident = 1;
    for (int c = 0; c < NSEQ_CHUNKS; c++)
        ident &= order[0][c] == c;
    assert_false(ident);
    st_loader_free(l);
    free(a);
}

static void resume_case(st_loader_mode mode) {
    int B = 3, T = 8;
    size_t e = (size_t)B * (T + 1);
    int32_t *a = malloc(e * 4), *b = malloc(e * 4);
    st_loader_params p = st_loader_default_params();
    p.mode = mode;
    p.batch_size = B;
    p.block_size = T;
    p.seed = 99;
    p.prefetch = 4;
    const char *dir = mode == ST_LOADER_RANDOM ? g_rand : g_seq;
    st_loader *l1 = open_ok(dir, p);
    for (int i = 0; i < 100; i++)
        assert_int_equal(st_loader_next(l1, a, NULL), ST_OK); /* > 1 epoch */
    st_loader_state st;
    st_loader_get_state(l1, &st);
    assert_int_equal(st.next_batch, 100);
    char *js = NULL;
    assert_int_equal(st_loader_state_to_json(&st, &js), ST_OK);
    st_loader_state back;
    assert_int_equal(st_loader_state_from_json(js, strlen(js), "state.json", &back), ST_OK);
    st_free(js);
    assert_int_equal(back.mode, st.mode);
    assert_true(back.seed == st.seed);
    assert_int_equal(back.next_batch, 100);
    assert_int_equal(back.epoch, st.epoch);
    p.prefetch = 0; /* the resumed run need not prefetch the same way */
    st_loader *l2 = open_ok(dir, p);
    assert_int_equal(st_loader_next(l2, b, NULL), ST_OK); /* moves, then is moved back */
    assert_int_equal(st_loader_set_state(l2, &back), ST_OK);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(st_loader_next(l1, a, NULL), ST_OK);
        assert_int_equal(st_loader_next(l2, b, NULL), ST_OK);
        assert_memory_equal(a, b, e * 4);
    }
    /* set_state on a prefetching loader mid-stream, backwards */
    st_loader_state st5 = back;
    st5.next_batch = 5;
    assert_int_equal(st_loader_set_state(l1, &st5), ST_OK);
    assert_int_equal(st_loader_next(l1, a, NULL), ST_OK);
    assert_int_equal(st_loader_batch(l2, 5, b), ST_OK);
    assert_memory_equal(a, b, e * 4);
    /* a state of another mode or seed is refused */
    st_loader_state other = back;
    other.seed = 100;
    assert_int_equal(st_loader_set_state(l2, &other), ST_ERR_INVALID_ARG);
    other = back;
    other.mode = mode == ST_LOADER_RANDOM ? ST_LOADER_SEQUENTIAL : ST_LOADER_RANDOM;
    assert_int_equal(st_loader_set_state(l2, &other), ST_ERR_INVALID_ARG);
    st_loader_free(l1);
    st_loader_free(l2);
    free(a);
    free(b);
}

static void test_resume(void **state) {
    (void)state;
    resume_case(ST_LOADER_RANDOM);
    resume_case(ST_LOADER_SEQUENTIAL);
}

static void test_state_json_errors(void **state) {
    (void)state;
    st_loader_state st;
    const char *bad[] = {
        "{",
        "{\"mode\": \"shuffle\", \"seed\": \"1\", \"epoch\": 0, \"next_batch\": 0}",
        "{\"mode\": \"random\", \"seed\": 1, \"epoch\": 0, \"next_batch\": 0}",
        "{\"mode\": \"random\", \"seed\": \"x1\", \"epoch\": 0, \"next_batch\": 0}",
        "{\"mode\": \"random\", \"seed\": \"1\", \"epoch\": 0, \"next_batch\": -4}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(st_loader_state_from_json(bad[i], strlen(bad[i]), "ckpt/loader.json", &st),
                         ST_ERR_FORMAT);
        assert_non_null(strstr(st_last_error(), "ckpt/loader.json"));
    }
}

static void test_ranks(void **state) {
    (void)state;
    int W = 3, B = 2, T = NSEQ_T;
    size_t e = (size_t)B * (T + 1), eg = (size_t)W * e;
    int32_t *g = malloc(eg * 4), *r = malloc(e * 4);
    /* random: rank k's rows are rows [kB, (k+1)B) of one process with W*B rows */
    for (int mode = 0; mode < 2; mode++) {
        const char *dir = mode ? g_seq : g_rand;
        st_loader_params p = st_loader_default_params();
        p.mode = (st_loader_mode)mode;
        p.block_size = T;
        p.prefetch = 0;
        p.batch_size = W * B;
        st_loader *whole = open_ok(dir, p);
        st_loader *rk[3];
        p.batch_size = B;
        p.world_size = W;
        for (int k = 0; k < W; k++) {
            p.rank = k;
            p.prefetch = k; /* mixed prefetch settings */
            rk[k] = open_ok(dir, p);
        }
        uint64_t bpe = st_loader_batches_per_epoch(rk[0]);
        if (mode) assert_int_equal(bpe, NSEQ_CHUNKS / (W * B));
        int seen[NSEQ_CHUNKS] = {0};
        uint64_t nb = mode ? bpe : 25;
        for (uint64_t i = 0; i < nb; i++) {
            assert_int_equal(st_loader_next(whole, g, NULL), ST_OK);
            for (int k = 0; k < W; k++) {
                assert_int_equal(st_loader_next(rk[k], r, NULL), ST_OK);
                assert_memory_equal(r, g + (size_t)k * e, e * 4);
                if (mode)
                    for (int b = 0; b < B; b++)
                        seen[r[(size_t)b * (T + 1)] / T]++;
            }
        }
        if (mode) /* disjoint and covering: every chunk exactly once over the ranks */
            for (int c = 0; c < NSEQ_CHUNKS; c++)
                assert_int_equal(seen[c], 1);
        st_loader_free(whole);
        for (int k = 0; k < W; k++)
            st_loader_free(rk[k]);
    }
    free(g);
    free(r);
}

static void test_prefetch_same(void **state) {
    (void)state;
    int B = 8, T = 32;
    size_t e = (size_t)B * (T + 1);
    int32_t *a = malloc(e * 4), *b = malloc(e * 4);
    for (int mode = 0; mode < 2; mode++) {
        st_loader_params p = st_loader_default_params();
        p.mode = (st_loader_mode)mode;
        p.batch_size = B;
        p.block_size = T;
        p.split = mode ? ST_SPLIT_TRAIN : ST_SPLIT_VAL;
        p.prefetch = 0;
        st_loader *l0 = open_ok(g_rand, p);
        p.prefetch = 1;
        st_loader *l1 = open_ok(g_rand, p);
        p.prefetch = 7;
        st_loader *l7 = open_ok(g_rand, p);
        for (int i = 0; i < 60; i++) {
            assert_int_equal(st_loader_next(l0, a, NULL), ST_OK);
            assert_int_equal(st_loader_next(l1, b, NULL), ST_OK);
            assert_memory_equal(a, b, e * 4);
            assert_int_equal(st_loader_next(l7, b, NULL), ST_OK);
            assert_memory_equal(a, b, e * 4);
        }
        st_loader_free(l0);
        st_loader_free(l1);
        st_loader_free(l7);
    }
    /* a loader freed with a full ring and one freed at once shut down cleanly */
    st_loader_params p = st_loader_default_params();
    p.batch_size = B;
    p.block_size = T;
    p.prefetch = 3;
    st_loader *l = open_ok(g_rand, p);
    usleep(20000);
    st_loader_free(l);
    st_loader_free(open_ok(g_rand, p));
    free(a);
    free(b);
}

static void test_errors(void **state) {
    (void)state;
    st_loader *l = NULL;
    st_loader_params p = st_loader_default_params();
    p.block_size = 600; /* val has 500 tokens */
    p.split = ST_SPLIT_VAL;
    assert_int_equal(st_loader_new(g_rand, &p, &l), ST_ERR_SHAPE);
    assert_non_null(strstr(st_last_error(), "500 tokens"));
    assert_null(l);
    p = st_loader_default_params();
    p.rank = 2;
    p.world_size = 2;
    assert_int_equal(st_loader_new(g_rand, &p, &l), ST_ERR_INVALID_ARG);
    p = st_loader_default_params();
    p.mode = ST_LOADER_SEQUENTIAL;
    p.block_size = NSEQ_T;
    p.batch_size = NSEQ_CHUNKS + 1; /* more rows than chunks */
    assert_int_equal(st_loader_new(g_seq, &p, &l), ST_ERR_SHAPE);
    assert_int_equal(st_loader_new(g_tmp, NULL, &l), ST_ERR_IO); /* no manifest */
    /* a shard that disagrees with the manifest, and a missing one */
    char dir[400], path[512];
    snprintf(dir, sizeof dir, "%s/broken", g_tmp);
    int32_t ids[2000];
    for (int i = 0; i < 2000; i++)
        ids[i] = i % 65;
    uint64_t cut = 1000;
    make_dataset(dir, ids, 2000, &cut, 1, 65);
    snprintf(path, sizeof path, "%s/train-000001.bin", dir);
    assert_int_equal(st_shard_write(path, ids, 999, 65, NULL), ST_OK);
    p = st_loader_default_params();
    p.block_size = 16;
    assert_int_equal(st_loader_new(dir, &p, &l), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "train-000001.bin"));
    unlink(path);
    assert_int_equal(st_loader_new(dir, &p, &l), ST_ERR_IO);
    assert_non_null(strstr(st_last_error(), "train-000001.bin"));
    assert_null(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_matches_textdata),
        cmocka_unit_test(test_sequential_epochs),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_state_json_errors),
        cmocka_unit_test(test_ranks),
        cmocka_unit_test(test_prefetch_same),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
