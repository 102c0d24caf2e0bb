/*
 * test_safetensors.c — the safetensors reader and writer (src/hub/safetensors.c).
 *
 * Round trip of every dtype Strata writes (F32, BF16, F16, I32, I8), of a
 * strided view and of metadata; then a table of hostile files, each of which
 * must fail with ST_ERR_FORMAT and a message naming the file and the fault,
 * through both the file reader and the memory reader. Leaks fail the test
 * (the library's allocation counters must return to where they started).
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

#include "strata/hub.h"

static char g_dir[256];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/strata_test_st_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_round_trip(void **state) {
    (void)state;
    st_alloc_stats a0 = st_alloc_get_stats();
    st_ctx *ctx = NULL;
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = 1;
    assert_int_equal(st_ctx_new(&cp, &ctx), ST_OK);

    static const struct {
        const char *name;
        st_dtype dtype;
        int ndim;
        int64_t shape[4];
    } k_cases[] = {
        {"f32.weight", ST_F32, 2, {3, 5}},  {"bf16.weight", ST_BF16, 1, {7}},
        {"f16.x", ST_F16, 3, {2, 1, 3}},    {"i32.ids", ST_I32, 1, {4}},
        {"i8.q", ST_I8, 2, {3, 3}},         {"empty", ST_F32, 2, {0, 4}},
        {"four.d", ST_F32, 4, {2, 2, 2, 2}},
    };
    enum { N = sizeof k_cases / sizeof k_cases[0] };
    st_tensor *t[N + 1];
    st_safetensors_entry e[N + 1];
    for (int i = 0; i < N; i++) {
        assert_int_equal(st_tensor_new(ctx, k_cases[i].dtype, k_cases[i].ndim, k_cases[i].shape,
                                       &t[i]),
                         ST_OK);
        uint8_t *p = t[i]->data;
        for (size_t b = 0; b < st_tensor_nbytes(t[i]); b++) p[b] = (uint8_t)(b * 7 + i);
        e[i].name = k_cases[i].name;
        e[i].tensor = t[i];
    }
    /* A transposed view of f32.weight: written gathered, row-major. */
    st_tensor *tv = NULL;
    assert_int_equal(st_transpose(ctx, t[0], 0, 1, &tv), ST_OK);
    e[N].name = "f32.transposed";
    e[N].tensor = tv;

    char path[300];
    snprintf(path, sizeof path, "%s/rt.safetensors", g_dir);
    const char *meta[] = {"format", "pt", "note", "round trip"};
    assert_int_equal(st_safetensors_save(path, e, N + 1, meta, 2), ST_OK);

    st_safetensors *f = NULL;
    assert_int_equal(st_safetensors_open(path, &f), ST_OK);
    assert_int_equal(st_safetensors_n_tensors(f), N + 1);
    assert_int_equal(st_safetensors_n_metadata(f), 2);
    assert_string_equal(st_safetensors_metadata(f, "note"), "round trip");
    assert_null(st_safetensors_metadata(f, "absent"));
    for (int i = 0; i < N; i++) {
        int k = st_safetensors_find(f, k_cases[i].name);
        assert_true(k >= 0);
        st_safetensors_tensor r;
        assert_int_equal(st_safetensors_get(f, k, &r), ST_OK);
        assert_string_equal(r.name, k_cases[i].name);
        assert_int_equal(r.dtype, k_cases[i].dtype);
        assert_int_equal(r.ndim, k_cases[i].ndim);
        for (int d = 0; d < r.ndim; d++) assert_int_equal(r.shape[d], k_cases[i].shape[d]);
        assert_int_equal(r.n_bytes, st_tensor_nbytes(t[i]));
        if (r.n_bytes) assert_memory_equal(r.data, t[i]->data, r.n_bytes);
    }
    /* The transposed view came back as its row-major gather. */
    st_safetensors_tensor r;
    assert_int_equal(st_safetensors_get(f, st_safetensors_find(f, "f32.transposed"), &r), ST_OK);
    assert_int_equal(r.shape[0], 5);
    assert_int_equal(r.shape[1], 3);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++) {
            float x, y;
            memcpy(&x, (const uint8_t *)r.data + 4 * (i * 3 + j), 4);
            memcpy(&y, (const uint8_t *)t[0]->data + 4 * (j * 5 + i), 4);
            assert_memory_equal(&x, &y, 4);
        }
    /* read_into: exact copy, then a shape mismatch naming the tensor. */
    st_tensor *back = NULL, *wrong = NULL;
    assert_int_equal(st_tensor_new(ctx, ST_F32, 2, k_cases[0].shape, &back), ST_OK);
    assert_int_equal(st_safetensors_read_into(f, "f32.weight", back), ST_OK);
    assert_memory_equal(back->data, t[0]->data, st_tensor_nbytes(back));
    const int64_t ws[2] = {5, 3};
    assert_int_equal(st_tensor_new(ctx, ST_F32, 2, ws, &wrong), ST_OK);
    assert_int_equal(st_safetensors_read_into(f, "f32.weight", wrong), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "f32.weight"));
    assert_non_null(strstr(st_last_error(), "[3,5]"));
    assert_int_equal(st_safetensors_read_into(f, "nope", wrong), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "nope"));
    /* bf16 file tensor into an f32 tensor converts. */
    st_tensor *conv = NULL;
    const int64_t s7[1] = {7};
    assert_int_equal(st_tensor_new(ctx, ST_F32, 1, s7, &conv), ST_OK);
    assert_int_equal(st_safetensors_read_into(f, "bf16.weight", conv), ST_OK);
    float v0;
    uint16_t h0;
    memcpy(&h0, t[1]->data, 2);
    assert_int_equal(st_tensor_get_f32(conv, 0, &v0), ST_OK);
    assert_memory_equal(&v0, &(float){st_bf16_to_f32(h0)}, 4);
    st_safetensors_close(f);

    /* The data section starts 8-byte aligned, header padded with spaces. */
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t len8[8];
    assert_int_equal(fread(len8, 1, 8, fp), 8);
    fclose(fp);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    assert_int_equal((8 + hlen) % 8, 0);

    /* Writer argument checks. */
    st_safetensors_entry dup[2] = {{"a", t[0]}, {"a", t[1]}};
    assert_int_equal(st_safetensors_save(path, dup, 2, NULL, 0), ST_ERR_INVALID_ARG);
    st_safetensors_entry res[1] = {{"__metadata__", t[0]}};
    assert_int_equal(st_safetensors_save(path, res, 1, NULL, 0), ST_ERR_INVALID_ARG);
    /* The failed saves left the good file in place. */
    assert_int_equal(st_safetensors_open(path, &f), ST_OK);
    assert_int_equal(st_safetensors_n_tensors(f), N + 1);
    st_safetensors_close(f);

    for (int i = 0; i < N; i++) st_tensor_free(t[i]);
    st_tensor_free(back);
    st_tensor_free(wrong);
    st_tensor_free(conv);
    st_ctx_free(ctx);
    st_alloc_stats a1 = st_alloc_get_stats();
    assert_int_equal(a1.n_alloc - a0.n_alloc, a1.n_free - a0.n_free);
}

/* Builds le64(len(header)) + header + data_len bytes of data (or uses
 * hlen_override for the length field when it is not 0). */
static uint8_t *make_file(const char *header, uint64_t hlen_override, size_t data_len,
                          size_t *n) {
    size_t h = strlen(header);
    *n = 8 + h + data_len;
    uint8_t *b = calloc(1, *n);
    uint64_t hl = hlen_override ? hlen_override : h;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hl >> (8 * i));
    memcpy(b + 8, header, h);
    return b;
}

static void test_hostile(void **state) {
    (void)state;
    static const struct {
        const char *what;
        const char *header;
        uint64_t hlen;   /* 0: the header's length */
        size_t data_len;
        size_t cut;      /* when not 0: the file is only this many bytes */
        const char *fault;
    } k_bad[] = {
        {"too short", "", 0, 0, 5, "shorter than the 8-byte header length"},
        {"length past EOF", "{}", 1000, 4, 0, "runs past the end of the file"},
        {"huge length", "{}", UINT64_MAX, 4, 0, "runs past the end of the file"},
        {"not JSON", "{not json}", 0, 0, 0, "not valid JSON"},
        {"not an object", "[1,2]", 0, 0, 0, "does not start with a JSON object"},
        {"truncated JSON", "{\"a\":{\"dtype\":\"F32\"", 0, 0, 0, "not valid JSON"},
        {"offsets outside data",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 4, 0,
         "outside the data section"},
        {"begin after end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 0,
         8, 0, "outside the data section"},
        {"size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0,
         8, 0, "need 12"},
        {"overflowing shape",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,8]}}",
         0, 8, 0, "overflows"},
        {"byte size overflow",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,2],\"data_offsets\":[0,8]}}",
         0, 8, 0, "overflows"},
        {"unknown dtype", "{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0,
         8, 0, "unknown or unsupported dtype"},
        {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
         0, 0, "shape[0]"},
        {"float dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 0, 4,
         0, "shape[0]"},
        {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, 4, 0,
         "data_offsets"},
        {"entry not object", "{\"a\":5}", 0, 0, 0, "not a JSON object"},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         0, 12, 0, "overlap"},
        {"duplicate key",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         0, 8, 0, "duplicate"},
        {"metadata not strings", "{\"__metadata__\":{\"k\":1}}", 0, 0, 0, "__metadata__"},
        {"metadata not object", "{\"__metadata__\":[]}", 0, 0, 0, "__metadata__"},
        {"too many dims",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 0,
         4, 0, "dimensions"},
    };
    st_alloc_stats a0 = st_alloc_get_stats();
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        size_t n;
        uint8_t *b = make_file(k_bad[i].header, k_bad[i].hlen, k_bad[i].data_len, &n);
        if (k_bad[i].cut) n = k_bad[i].cut;
        /* From memory. */
        st_safetensors *f = (st_safetensors *)1;
        st_status s = st_safetensors_open_memory(b, n, "hostile.safetensors", &f);
        if (s != ST_ERR_FORMAT || !strstr(st_last_error(), k_bad[i].fault) ||
            !strstr(st_last_error(), "hostile.safetensors"))
            fail_msg("case \"%s\": status %s, message \"%s\"", k_bad[i].what, st_status_name(s),
                     st_last_error());
        assert_null(f);
        /* From a file: the message names the path. */
        char path[300];
        snprintf(path, sizeof path, "%s/bad%zu.safetensors", g_dir, i);
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(b, 1, n, fp), n);
        fclose(fp);
        s = st_safetensors_open(path, &f);
        if (s != ST_ERR_FORMAT || !strstr(st_last_error(), path))
            fail_msg("case \"%s\" (file): status %s, message \"%s\"", k_bad[i].what,
                     st_status_name(s), st_last_error());
        free(b);
    }
    /* A missing file is ST_ERR_IO naming it. */
    st_safetensors *f = NULL;
    assert_int_equal(st_safetensors_open("/nonexistent/x.safetensors", &f), ST_ERR_IO);
    assert_non_null(strstr(st_last_error(), "/nonexistent/x.safetensors"));
    /* A valid minimal file: empty object, and one with a scalar. */
    size_t n;
    uint8_t *b = make_file("{}", 0, 0, &n);
    assert_int_equal(st_safetensors_open_memory(b, n, NULL, &f), ST_OK);
    assert_int_equal(st_safetensors_n_tensors(f), 0);
    st_safetensors_close(f);
    free(b);
    b = make_file("{\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}  ", 0, 4, &n);
    assert_int_equal(st_safetensors_open_memory(b, n, NULL, &f), ST_OK);
    st_safetensors_tensor t;
    assert_int_equal(st_safetensors_get(f, 0, &t), ST_OK);
    assert_int_equal(t.ndim, 0);
    assert_int_equal(t.numel, 1);
    assert_int_equal(st_safetensors_get(f, 1, &t), ST_ERR_BOUNDS);
    st_safetensors_close(f);
    free(b);
    st_alloc_stats a1 = st_alloc_get_stats();
    assert_int_equal(a1.n_alloc - a0.n_alloc, a1.n_free - a0.n_free);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
