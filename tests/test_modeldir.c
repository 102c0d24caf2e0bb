/*
 * test_modeldir.c — the native model directory and the training state
 * (src/hub/modeldir.c).
 *
 * For a gpt2 and a llama configuration: save, load, compare every tensor bit
 * for bit, the configuration and the tokenizer; save again over the existing
 * directory (a checkpoint). Then the failures a user meets, each with its
 * status and a message naming the file (and the tensor): truncated
 * model.safetensors, corrupt or missing config.json, a config.json whose
 * shapes disagree with the weights. Last, the training state: optimizer
 * moments and step survive a save/load, and a torn checkpoint is detected.
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

#include "strata/data.h"
#include "strata/hub.h"

static char g_dir[256];
static const char k_text[] = "hello world, hello strata\n";

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/strata_test_md_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static st_ctx *new_ctx(void) {
    st_ctx *ctx = NULL;
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = 1;
    cp.arena_bytes = 1 << 20;
    assert_int_equal(st_ctx_new(&cp, &ctx), ST_OK);
    return ctx;
}

static st_model_config tiny_config(st_arch arch, int vocab) {
    st_model_config c = st_model_config_default(arch);
    c.n_layer = 2;
    c.n_head = 2;
    c.n_kv_head = arch == ST_ARCH_LLAMA ? 1 : 2;
    c.n_embd = 16;
    c.n_ff = arch == ST_ARCH_LLAMA ? 24 : 64;
    c.vocab_size = vocab;
    c.n_ctx = 8;
    c.bias = arch == ST_ARCH_GPT2;
    c.tie_embeddings = arch == ST_ARCH_GPT2;
    return c;
}

static void write_text(const char *path, const char *text, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
}

static void test_round_trip(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    st_ctx *ctx = new_ctx();
    st_tokenizer *tok = NULL;
    assert_int_equal(st_tokenizer_char_from_corpus(k_text, strlen(k_text), &tok), ST_OK);
    const st_arch archs[] = {ST_ARCH_GPT2, ST_ARCH_LLAMA, ST_ARCH_GPT2};
    for (int a = 0; a < 3; a++) {
        st_model_config cfg = tiny_config(archs[a], st_tokenizer_vocab_size(tok));
        if (a == 2) cfg.bias = false; /* nanoGPT's bias=False: no bias tensors in the file */
        st_model *m = NULL;
        assert_int_equal(st_model_new(ctx, &cfg, 42 + (uint64_t)a, &m), ST_OK);
        char dir[300];
        snprintf(dir, sizeof dir, "%s/model_%d", g_dir, a);
        st_model_card card = st_model_card_default();
        card.training_data = "a \"tiny\" test text";
        card.step = 3;
        card.val_loss = 2.5;
        assert_int_equal(st_modeldir_save(dir, m, tok, &card), ST_OK);
        assert_int_equal(st_modeldir_step(dir), 3);
        /* Over the existing directory, as a checkpoint does. */
        card.step = 4;
        assert_int_equal(st_modeldir_save(dir, m, tok, &card), ST_OK);
        assert_int_equal(st_modeldir_step(dir), 4);

        st_model *m2 = NULL;
        st_tokenizer *tok2 = NULL;
        assert_int_equal(st_modeldir_load(ctx, dir, &m2, &tok2), ST_OK);
        const st_model_config *c2 = st_model_get_config(m2);
        assert_int_equal(c2->arch, cfg.arch);
        assert_int_equal(c2->n_layer, cfg.n_layer);
        assert_int_equal(c2->n_embd, cfg.n_embd);
        assert_int_equal(c2->n_kv_head, cfg.n_kv_head);
        assert_int_equal(c2->vocab_size, cfg.vocab_size);
        assert_int_equal(c2->bias, cfg.bias);
        assert_int_equal(st_model_n_tensors(m2), st_model_n_tensors(m));
        if (a == 2) assert_null(st_model_find_tensor(m2, "h.0.ln_1.bias"));
        for (int i = 0; i < st_model_n_tensors(m); i++) {
            const char *name;
            st_tensor *t = st_model_tensor(m, i, &name);
            st_tensor *t2 = st_model_find_tensor(m2, name);
            assert_non_null(t2);
            assert_int_equal(st_tensor_nbytes(t), st_tensor_nbytes(t2));
            assert_memory_equal(t->data, t2->data, st_tensor_nbytes(t));
        }
        int32_t *ids1 = NULL, *ids2 = NULL;
        size_t n1 = 0, n2 = 0;
        st_encode_opts eo = {0};
        assert_int_equal(st_tokenizer_encode(tok, k_text, strlen(k_text), &eo, &ids1, &n1), ST_OK);
        assert_int_equal(st_tokenizer_encode(tok2, k_text, strlen(k_text), &eo, &ids2, &n2), ST_OK);
        assert_int_equal(n1, n2);
        assert_memory_equal(ids1, ids2, n1 * sizeof(int32_t));
        st_free(ids1);
        st_free(ids2);
        /* Every file of the layout is there; the card has YAML front matter. */
        static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json",
                                            "generation_config.json", "README.md"};
        for (size_t k = 0; k < 5; k++) {
            char p[400];
            snprintf(p, sizeof p, "%s/%s", dir, files[k]);
            assert_int_equal(access(p, R_OK), 0);
        }
        char p[400], *card_txt = NULL;
        snprintf(p, sizeof p, "%s/README.md", dir);
        assert_int_equal(st_text_read_file(p, 0, &card_txt, NULL), ST_OK);
        assert_memory_equal(card_txt, "---\n", 4);
        assert_non_null(strstr(card_txt, "parameters:"));
        assert_non_null(strstr(card_txt, "val_loss: 2.5000"));
        assert_non_null(strstr(card_txt, "\\\"tiny\\\""));
        st_free(card_txt);
        st_model_free(m2);
        st_tokenizer_free(tok2);
        st_model_free(m);
    }
    st_tokenizer_free(tok);
    st_ctx_free(ctx);
    st_alloc_stats a1 = st_alloc_get_stats();
    assert_int_equal(a1.n_alloc - a0.n_alloc, a1.n_free - a0.n_free);
}

/* Copies src to dst, keeping only the first keep bytes (all when < 0). */
static void copy_file(const char *src, const char *dst, long keep) {
    char *buf = NULL;
    size_t n = 0;
    assert_int_equal(st_text_read_file(src, 0, &buf, &n), ST_OK);
    write_text(dst, buf, keep >= 0 && (size_t)keep < n ? (size_t)keep : n);
    st_free(buf);
}

static void test_failures(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    st_ctx *ctx = new_ctx();
    st_tokenizer *tok = NULL;
    assert_int_equal(st_tokenizer_char_from_corpus(k_text, strlen(k_text), &tok), ST_OK);
    st_model_config cfg = tiny_config(ST_ARCH_GPT2, st_tokenizer_vocab_size(tok));
    st_model *m = NULL;
    assert_int_equal(st_model_new(ctx, &cfg, 7, &m), ST_OK);
    char good[300];
    snprintf(good, sizeof good, "%s/good", g_dir);
    assert_int_equal(st_modeldir_save(good, m, tok, NULL), ST_OK);

    /* A wider model's config.json over these weights: the tensor is named. */
    st_model_config wide = cfg;
    wide.n_embd = 32;
    char *wide_json = NULL;
    assert_int_equal(st_model_config_to_json(&wide, &wide_json), ST_OK);

    static const struct {
        const char *what;
        const char *file;   /* the file to damage */
        long keep;          /* truncate to this many bytes (-1: replace by text) */
        const char *text;   /* replacement (NULL: delete the file) */
        st_status want;
        const char *fault;  /* in the message */
    } k_cases[] = {
        {"truncated weights", "model.safetensors", 100, NULL, ST_ERR_FORMAT, "model.safetensors"},
        {"weights cut in the data", "model.safetensors", -2, NULL, ST_ERR_FORMAT,
         "outside the data section"},
        {"corrupt config", "config.json", -1, "{\"model_type\": \"gpt2\", \"n_layer\": ",
         ST_ERR_FORMAT, "config.json"},
        {"missing config", "config.json", -1, NULL, ST_ERR_IO, "config.json"},
        {"missing weights", "model.safetensors", -1, NULL, ST_ERR_IO, "model.safetensors"},
        {"shape mismatch", "config.json", -1, "WIDE", ST_ERR_FORMAT, "wte.weight"},
        {"missing tokenizer", "tokenizer.json", -1, NULL, ST_ERR_IO, "tokenizer.json"},
    };
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        char dir[300], cmd[700], p[400], src[400];
        snprintf(dir, sizeof dir, "%s/bad%zu", g_dir, i);
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", good, dir);
        assert_int_equal(system(cmd), 0);
        snprintf(p, sizeof p, "%s/%s", dir, k_cases[i].file);
        snprintf(src, sizeof src, "%s/%s", good, k_cases[i].file);
        if (k_cases[i].keep >= 0) {
            copy_file(src, p, k_cases[i].keep);
        } else if (k_cases[i].keep == -2) {
            char *buf = NULL;
            size_t n = 0;
            assert_int_equal(st_text_read_file(src, 0, &buf, &n), ST_OK);
            write_text(p, buf, n - 64);
            st_free(buf);
        } else if (k_cases[i].text) {
            const char *t = strcmp(k_cases[i].text, "WIDE") == 0 ? wide_json : k_cases[i].text;
            write_text(p, t, strlen(t));
        } else {
            assert_int_equal(unlink(p), 0);
        }
        st_model *m2 = (st_model *)1;
        st_tokenizer *t2 = (st_tokenizer *)1;
        st_status s = st_modeldir_load(ctx, dir, &m2, &t2);
        if (s != k_cases[i].want || !strstr(st_last_error(), k_cases[i].fault))
            fail_msg("case \"%s\": %s, \"%s\"", k_cases[i].what, st_status_name(s),
                     st_last_error());
        assert_null(m2);
        assert_null(t2);
    }
    st_model *m2 = NULL;
    assert_int_equal(st_modeldir_load(ctx, "/nonexistent/dir", &m2, NULL), ST_ERR_IO);
    st_free(wide_json);
    st_model_free(m);
    st_tokenizer_free(tok);
    st_ctx_free(ctx);
    st_alloc_stats a1 = st_alloc_get_stats();
    assert_int_equal(a1.n_alloc - a0.n_alloc, a1.n_free - a0.n_free);
}

static void test_train_state(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    st_ctx *ctx = new_ctx();
    st_model_config cfg = tiny_config(ST_ARCH_GPT2, 13);
    st_model *m = NULL;
    assert_int_equal(st_model_new(ctx, &cfg, 1, &m), ST_OK);
    st_optim_params op = st_optim_default_params(ST_OPTIM_ADAMW);
    st_optim *o = NULL, *o2 = NULL;
    assert_int_equal(st_optim_new(m, &op, &o), ST_OK);
    assert_int_equal(st_optim_new(m, &op, &o2), ST_OK);
    assert_true(st_optim_n_state(o) > 0);
    for (int i = 0; i < st_optim_n_state(o); i++)
        assert_int_equal(st_randn_(st_optim_state(o, i, NULL), 100 + (uint64_t)i, 0.0f, 1.0f),
                         ST_OK);
    st_optim_set_step(o, 17);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/run", g_dir);
    st_model_card card = st_model_card_default();
    card.step = 17;
    assert_int_equal(st_modeldir_save(dir, m, NULL, &card), ST_OK);
    st_train_state ts = {0};
    ts.step = 17;
    ts.seed = 0xfedcba9876543210ULL; /* above INT64_MAX: kept exact */
    ts.tokens_seen = 17 * 96;
    ts.elapsed_s = 1.25;
    ts.config_json = "{\"n_layer\": 2, \"learning_rate\": 0.001}";
    ts.data_path = "data/x.txt";
    ts.data_bytes = 1234;
    ts.schedule = (st_lr_schedule){.lr_max = 1e-3f, .lr_min = 1e-4f, .warmup_steps = 10,
                                   .decay_steps = 2000, .cosine = true};
    assert_int_equal(st_train_state_save(dir, o, &ts), ST_OK);

    st_train_state back;
    assert_int_equal(st_train_state_load(dir, o2, &back), ST_OK);
    assert_int_equal(back.step, 17);
    assert_true(back.seed == ts.seed);
    assert_int_equal(back.tokens_seen, ts.tokens_seen);
    assert_true(back.elapsed_s == 1.25);
    assert_int_equal(back.data_bytes, 1234);
    assert_string_equal(back.data_path, "data/x.txt");
    assert_non_null(strstr(back.config_json, "learning_rate"));
    assert_true(back.schedule.lr_max == ts.schedule.lr_max);
    assert_true(back.schedule.lr_min == ts.schedule.lr_min);
    assert_int_equal(back.schedule.decay_steps, 2000);
    assert_true(back.schedule.cosine);
    assert_int_equal(st_optim_get_step(o2), 17);
    for (int i = 0; i < st_optim_n_state(o); i++) {
        st_tensor *x = st_optim_state(o, i, NULL), *y = st_optim_state(o2, i, NULL);
        assert_memory_equal(x->data, y->data, st_tensor_nbytes(x));
    }
    st_train_state_clear(&back);

    /* The model moved on to step 18 but the state did not: a torn checkpoint. */
    card.step = 18;
    assert_int_equal(st_modeldir_save(dir, m, NULL, &card), ST_OK);
    assert_int_equal(st_train_state_load(dir, o2, &back), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "torn"));
    /* A corrupt train_state.json. */
    char p[400];
    snprintf(p, sizeof p, "%s/train_state.json", dir);
    write_text(p, "{\"format\": 1", 12);
    assert_int_equal(st_train_state_load(dir, NULL, &back), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "train_state.json"));

    st_optim_free(o);
    st_optim_free(o2);
    st_model_free(m);
    st_ctx_free(ctx);
    st_alloc_stats a1 = st_alloc_get_stats();
    assert_int_equal(a1.n_alloc - a0.n_alloc, a1.n_free - a0.n_free);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_train_state),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
