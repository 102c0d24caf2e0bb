/*
 * test_parquet.c — the Parquet reader (src/data/parquet*.c, thrift_compact.c).
 *
 * References: every file in tests/data/parquet (written by arrow-rs and
 * DuckDB, copied from ../shared/data/parquet with its README) must read back
 * exactly its expected rows: types*.parquet against types.expected.jsonl
 * (parquet-wasm's read-back, cross-checked with DuckDB), shakespeare*.parquet
 * against shakespeare.expected_summary.json (row count, n_chars sum/min/max,
 * SHA-256 of all texts). Rows are rebuilt here from the raw levels, not
 * through the CLI. Then projection, row-group iteration, statistics, and
 * hostile inputs: truncation at many offsets, bit flips, hand-built files
 * (Thrift written byte by byte below) with deep and cyclic schemas, sizes
 * past the end, negative sizes, dictionary indices out of range, bad CRCs and
 * huge declared counts, each of which must fail with a clear message and no
 * crash or unbounded allocation. Leaks fail the test.
 */
#include <lz4.h>
#include <setjmp.h>
#include <snappy-c.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "strata/arrow.h"
#include "strata/parquet.h"

#define DATA STRATA_SOURCE_DIR "/tests/data/parquet/"

static const char *k_types[] = {"types.parquet", "types.duckdb.parquet",
                                "types.zstd_plain_v2_smallpages.parquet"};
static const char *k_shakespeare[] = {"shakespeare.parquet",
                                      "shakespeare.uncompressed_plain.parquet",
                                      "shakespeare.zstd_dict.parquet",
                                      "shakespeare.gzip_plain.parquet",
                                      "shakespeare.snappy_dict_v2.parquet",
                                      "shakespeare.zstd_plain_v2.parquet",
                                      "shakespeare.snappy_smallpages.parquet",
                                      "shakespeare.duckdb_zstd.parquet",
                                      "shakespeare.duckdb_snappy_v2.parquet"};
static const int k_shakespeare_groups[] = {15, 15, 15, 15, 15, 15, 8, 4, 4};

static int64_t live0;
static int setup(void **state) {
    (void)state;
    live0 = st_alloc_get_stats().live_bytes;
    return 0;
}
static int teardown(void **state) {
    (void)state;
    return st_alloc_get_stats().live_bytes == live0 ? 0 : -1;
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, fp);
    fclose(fp);
    return b;
}

/* ---- types*.parquet against types.expected.jsonl --------------------------------- */

static void check_flat(const st_pq_column *c, int64_t base, json_t **rows, const char *key) {
    for (int64_t i = 0; i < c->n_values; i++) {
        json_t *e = json_object_get(rows[base + i], key);
        assert_non_null(e);
        int64_t k = c->value_index ? c->value_index[i] : i;
        if (json_is_null(e)) {
            assert_true(k < 0);
            continue;
        }
        assert_true(k >= 0);
        switch (c->physical) {
        case ST_PQ_INT64:
            assert_true(((const int64_t *)c->values)[k] == (int64_t)json_integer_value(e));
            break;
        case ST_PQ_INT32:
            assert_int_equal(((const int32_t *)c->values)[k], json_integer_value(e));
            break;
        case ST_PQ_FLOAT:
            assert_true(((const float *)c->values)[k] == (float)json_number_value(e));
            break;
        case ST_PQ_DOUBLE:
            assert_true(((const double *)c->values)[k] == json_number_value(e));
            break;
        case ST_PQ_BOOLEAN:
            assert_int_equal(((const uint8_t *)c->values)[k], json_is_true(e));
            break;
        case ST_PQ_BYTE_ARRAY: {
            const uint8_t *p;
            size_t n;
            assert_true(st_pq_column_string(c, i, &p, &n));
            assert_int_equal(n, json_string_length(e));
            assert_memory_equal(p, json_string_value(e), n);
            break;
        }
        default:
            fail_msg("unexpected type");
        }
    }
}

/* embedding: a list per row rebuilt from repetition/definition levels */
static void check_list(const st_parquet_file *f, const st_pq_column *c, int64_t base,
                       json_t **rows) {
    const st_pq_node *leaf = st_parquet_node(f, st_parquet_column_node(f, c->column));
    const st_pq_node *rep = st_parquet_node(f, leaf->parent);
    assert_int_equal(rep->repetition, ST_PQ_REPEATED);
    assert_int_equal(c->max_rep, 1);
    assert_non_null(c->rep_levels);
    int64_t row = -1, k = 0, pos = 0;
    for (int64_t i = 0; i < c->n_values; i++) {
        if (c->rep_levels[i] == 0) row++, pos = 0;
        json_t *arr = json_object_get(rows[base + row], "embedding");
        assert_true(c->def_levels[i] >= rep->max_def);  /* no null or empty lists */
        assert_int_equal(c->def_levels[i], c->max_def); /* no null items */
        assert_true(((const float *)c->values)[k] ==
                    (float)json_number_value(json_array_get(arr, (size_t)pos)));
        k++, pos++;
        if (i + 1 == c->n_values || c->rep_levels[i + 1] == 0)
            assert_int_equal(pos, json_array_size(arr));
    }
    assert_int_equal(row + 1, c->n_rows);
    assert_int_equal(k, c->n_present);
}

static void test_types_files(void **state) {
    (void)state;
    size_t n;
    uint8_t *txt = slurp(DATA "types.expected.jsonl", &n);
    assert_non_null(txt);
    txt[n] = 0;
    json_t *rows[1000];
    int nr = 0;
    for (char *save = NULL, *line = strtok_r((char *)txt, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        assert_true(nr < 1000);
        rows[nr] = json_loads(line, 0, NULL);
        assert_non_null(rows[nr]);
        nr++;
    }
    assert_int_equal(nr, 1000);
    static const char *cols[] = {"id",   "i32",  "i64",      "f32",    "f64",
                                 "flag", "name", "category", "opt_i32"};
    for (size_t fi = 0; fi < sizeof k_types / sizeof *k_types; fi++) {
        char path[512];
        snprintf(path, sizeof path, DATA "%s", k_types[fi]);
        st_parquet_file *f;
        assert_int_equal(st_parquet_open(path, NULL, &f), ST_OK);
        assert_int_equal(st_parquet_n_rows(f), 1000);
        assert_int_equal(st_parquet_n_columns(f), 10);
        int64_t base = 0;
        for (int g = 0; g < st_parquet_n_row_groups(f); g++) {
            for (size_t ci = 0; ci < sizeof cols / sizeof *cols; ci++) {
                int c = st_parquet_find_column(f, cols[ci]);
                assert_true(c >= 0);
                st_pq_column *col;
                st_status s = st_parquet_read_column(f, g, c, &col);
                if (s != ST_OK) fail_msg("%s: %s", k_types[fi], st_last_error());
                assert_int_equal(col->n_rows, st_parquet_row_group_rows(f, g));
                check_flat(col, base, rows, cols[ci]);
                st_pq_column_free(col);
            }
            int c = st_parquet_find_column(f, "embedding");
            assert_true(c >= 0);
            st_pq_column *col;
            assert_int_equal(st_parquet_read_column(f, g, c, &col), ST_OK);
            check_list(f, col, base, rows);
            st_pq_column_free(col);
            base += st_parquet_row_group_rows(f, g);
        }
        assert_int_equal(base, 1000);
        st_parquet_close(f);
    }
    for (int i = 0; i < nr; i++)
        json_decref(rows[i]);
    free(txt);
}

/* ---- shakespeare*.parquet against the summary ---------------------------------------- */

typedef struct scan {
    EVP_MD_CTX *md;
    int64_t rows, bytes;
} scan;

static st_status on_text(void *user, int64_t row, const uint8_t *p, size_t n) {
    scan *s = user;
    if (!p || row != s->rows) return ST_ERR_STATE;
    if (row) EVP_DigestUpdate(s->md, "\n\n", 2);
    EVP_DigestUpdate(s->md, p, n);
    s->rows++;
    s->bytes += (int64_t)n;
    return ST_OK;
}

static void test_shakespeare_files(void **state) {
    (void)state;
    for (size_t fi = 0; fi < sizeof k_shakespeare / sizeof *k_shakespeare; fi++) {
        char path[512];
        snprintf(path, sizeof path, DATA "%s", k_shakespeare[fi]);
        st_parquet_file *f;
        if (st_parquet_open(path, NULL, &f) != ST_OK) fail_msg("%s", st_last_error());
        assert_int_equal(st_parquet_n_rows(f), 7222);
        assert_int_equal(st_parquet_n_row_groups(f), k_shakespeare_groups[fi]);
        scan s = {EVP_MD_CTX_new(), 0, 0};
        EVP_DigestInit_ex(s.md, EVP_sha256(), NULL);
        int tc = st_parquet_find_column(f, "text");
        st_status st = st_parquet_scan_strings(f, tc, on_text, &s);
        if (st != ST_OK) fail_msg("%s: %s", k_shakespeare[fi], st_last_error());
        unsigned char dg[32];
        unsigned int dl;
        EVP_DigestFinal_ex(s.md, dg, &dl);
        EVP_MD_CTX_free(s.md);
        char hex[65];
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", dg[i]);
        assert_string_equal(hex,
                            "d6dd8468734dc1b65356e090826eb831b8e6dbdc5ee53516d1b274e5afca5d40");
        assert_int_equal(s.rows, 7222);
        assert_int_equal(s.bytes, 1100949);
        /* id is 0..n-1; n_chars sums to the byte count, min 4, max 3080 */
        int ic = st_parquet_find_column(f, "id"), nc = st_parquet_find_column(f, "n_chars");
        int64_t next = 0, sum = 0, mn = INT64_MAX, mx = 0;
        for (int g = 0; g < st_parquet_n_row_groups(f); g++) {
            st_pq_column *a, *b;
            assert_int_equal(st_parquet_read_column(f, g, ic, &a), ST_OK);
            assert_int_equal(st_parquet_read_column(f, g, nc, &b), ST_OK);
            assert_int_equal(a->n_present, a->n_values);
            for (int64_t i = 0; i < a->n_present; i++) {
                assert_true(((const int64_t *)a->values)[i] == next);
                next++;
                int32_t v = ((const int32_t *)b->values)[i];
                sum += v;
                mn = v < mn ? v : mn;
                mx = v > mx ? v : mx;
            }
            st_pq_column_free(a);
            st_pq_column_free(b);
        }
        assert_int_equal(next, 7222);
        assert_int_equal(sum, 1100949);
        assert_int_equal(mn, 4);
        assert_int_equal(mx, 3080);
        st_parquet_close(f);
    }
}

/* ---- metadata, projection, statistics ------------------------------------------------ */

static void test_metadata(void **state) {
    (void)state;
    st_parquet_file *f;
    assert_int_equal(st_parquet_open(DATA "types.parquet", NULL, &f), ST_OK);
    assert_string_equal(st_parquet_created_by(f), "parquet-rs version 59.3.0");
    assert_int_equal(st_parquet_n_row_groups(f), 4);
    assert_int_equal(st_parquet_row_group_rows(f, 3), 100);
    int e = st_parquet_find_column(f, "embedding");
    assert_string_equal(st_parquet_column_path(f, e), "embedding.list.item");
    assert_int_equal(st_parquet_find_column(f, "embedding.list.item"), e);
    assert_int_equal(st_parquet_find_column(f, "nope"), -1);
    const st_pq_node *leaf = st_parquet_node(f, st_parquet_column_node(f, e));
    assert_int_equal(leaf->max_def, 2);
    assert_int_equal(leaf->max_rep, 1);
    const st_pq_node *list = st_parquet_node(f, st_parquet_node(f, leaf->parent)->parent);
    assert_int_equal(list->logical, ST_PQ_LT_LIST);
    const st_pq_node *name =
        st_parquet_node(f, st_parquet_column_node(f, st_parquet_find_column(f, "name")));
    assert_int_equal(name->logical, ST_PQ_LT_STRING);
    assert_int_equal(name->repetition, ST_PQ_OPTIONAL);
    bool has_kv = false;
    for (int i = 0; i < st_parquet_n_kv(f); i++) {
        const char *k, *v;
        st_parquet_kv(f, i, &k, &v);
        has_kv |= strcmp(k, "ARROW:schema") == 0;
    }
    assert_true(has_kv);
    /* chunk metadata and statistics: id in row group 1 is 300..599 */
    st_pq_chunk_info ci;
    assert_int_equal(st_parquet_chunk_info(f, 1, st_parquet_find_column(f, "id"), &ci), ST_OK);
    assert_int_equal(ci.codec, ST_PQ_SNAPPY);
    assert_int_equal(ci.num_values, 300);
    assert_true(ci.stats.has_min_max);
    int64_t mn, mx;
    assert_int_equal(ci.stats.min_len, 8);
    memcpy(&mn, ci.stats.min, 8);
    memcpy(&mx, ci.stats.max, 8);
    assert_int_equal(mn, 300);
    assert_int_equal(mx, 599);
    bool dict = false;
    for (int i = 0; i < ci.n_encodings; i++)
        dict |= ci.encodings[i] == ST_PQ_RLE_DICTIONARY;
    assert_true(dict);
    assert_int_equal(st_parquet_chunk_info(f, 4, 0, &ci), ST_ERR_BOUNDS);
    st_pq_column *c;
    assert_int_equal(st_parquet_read_column(f, 0, 10, &c), ST_ERR_BOUNDS);
    assert_int_equal(st_parquet_read_column(f, -1, 0, &c), ST_ERR_BOUNDS);
    /* projection: one column of the last row group, alone */
    assert_int_equal(st_parquet_read_column(f, 3, st_parquet_find_column(f, "opt_i32"), &c), ST_OK);
    assert_int_equal(c->n_values, 100);
    assert_int_equal(c->n_present, 67);      /* rows 900..999 with i%3 != 1 */
    assert_int_equal(c->value_index[1], -1); /* row 901: 901 % 3 == 1 */
    assert_int_equal(((const int32_t *)c->values)[c->value_index[0]], 900 * 900 - 1000);
    st_pq_column_free(c);
    /* the list column is not a flat string column */
    assert_int_equal(st_parquet_scan_strings(f, e, on_text, NULL), ST_ERR_INVALID_ARG);
    st_parquet_close(f);

    /* DuckDB: every column OPTIONAL, list leaf named element, INT_64 converted type */
    assert_int_equal(st_parquet_open(DATA "types.duckdb.parquet", NULL, &f), ST_OK);
    assert_string_equal(st_parquet_column_path(f, st_parquet_find_column(f, "embedding")),
                        "embedding.list.element");
    const st_pq_node *id = st_parquet_node(f, st_parquet_column_node(f, 0));
    assert_int_equal(id->repetition, ST_PQ_OPTIONAL);
    assert_int_equal(id->logical, ST_PQ_LT_INTEGER);
    assert_int_equal(id->int_bits, 64);
    st_parquet_close(f);
}

/* ---- a Thrift compact writer for hand-built files ------------------------------------------ */

typedef struct wb {
    uint8_t b[1 << 16];
    size_t n;
    int16_t last[64];
    int depth;
} wb;

static void put(wb *w, uint8_t x) {
    w->b[w->n++] = x;
}
static void uv(wb *w, uint64_t v) {
    while (v >= 0x80)
        put(w, (uint8_t)(v | 0x80)), v >>= 7;
    put(w, (uint8_t)v);
}
static uint64_t zz(int64_t v) {
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}
static void fh(wb *w, int id, int type) {
    int d = id - w->last[w->depth];
    if (d > 0 && d <= 15)
        put(w, (uint8_t)(d << 4 | type));
    else
        put(w, (uint8_t)type), uv(w, zz(id));
    w->last[w->depth] = (int16_t)id;
}
static void fi32(wb *w, int id, int64_t v) {
    fh(w, id, 5), uv(w, zz(v));
}
static void fi64(wb *w, int id, int64_t v) {
    fh(w, id, 6), uv(w, zz(v));
}
static void fstr(wb *w, int id, const char *s) {
    fh(w, id, 8);
    uv(w, strlen(s));
    memcpy(w->b + w->n, s, strlen(s));
    w->n += strlen(s);
}
static void sbeg(wb *w, int id) {
    fh(w, id, 12), w->last[++w->depth] = 0;
}
static void ebeg(wb *w) {
    w->last[++w->depth] = 0;
} /* a struct as a list element */
static void send_(wb *w) {
    put(w, 0), w->depth--;
}
static void flist(wb *w, int id, int etype, uint64_t n) {
    fh(w, id, 9);
    if (n < 15)
        put(w, (uint8_t)(n << 4 | (uint64_t)etype));
    else
        put(w, (uint8_t)(0xf0 | etype)), uv(w, n);
}

/* A whole file: one REQUIRED INT32 column "x", n rows, a dictionary page of
 * dict_n values (10*i) and one RLE_DICTIONARY data page whose n indices are
 * all idx. crc: 0 none, 1 right, 2 wrong. */
typedef struct craft_opts {
    int dict_n, n;
    uint8_t idx;
    int crc;
    int64_t rows_declared;      /* 0: n */
    int32_t page_size_override; /* 0: none */
} craft_opts;

static size_t craft(uint8_t *out, craft_opts o) {
    wb *w = calloc(1, sizeof *w);
    size_t at = 0;
    memcpy(out, "PAR1", 4);
    at = 4;
    /* dictionary page */
    uint8_t dict[64];
    for (int i = 0; i < o.dict_n; i++) {
        int32_t v = 10 * i;
        memcpy(dict + 4 * i, &v, 4);
    }
    size_t dlen = (size_t)o.dict_n * 4;
    fi32(w, 1, 2), fi32(w, 2, (int64_t)dlen), fi32(w, 3, (int64_t)dlen);
    if (o.crc) fi32(w, 4, (int32_t)(crc32(0, dict, (uInt)dlen) + (o.crc == 2)));
    sbeg(w, 7), fi32(w, 1, o.dict_n), fi32(w, 2, 0), send_(w);
    put(w, 0);
    memcpy(out + at, w->b, w->n), at += w->n;
    memcpy(out + at, dict, dlen), at += dlen;
    size_t data_off = at;
    /* data page: bit width 8, one RLE run of n copies of idx */
    uint8_t pg[32];
    size_t pn = 0;
    pg[pn++] = 8;
    uint64_t h = (uint64_t)o.n << 1;
    while (h >= 0x80)
        pg[pn++] = (uint8_t)(h | 0x80), h >>= 7;
    pg[pn++] = (uint8_t)h;
    pg[pn++] = o.idx;
    memset(w, 0, sizeof *w);
    fi32(w, 1, 0), fi32(w, 2, o.page_size_override ? o.page_size_override : (int64_t)pn),
        fi32(w, 3, o.page_size_override ? o.page_size_override : (int64_t)pn);
    if (o.crc) fi32(w, 4, (int32_t)crc32(0, pg, (uInt)pn));
    sbeg(w, 5), fi32(w, 1, o.n), fi32(w, 2, 8), fi32(w, 3, 3), fi32(w, 4, 3), send_(w);
    put(w, 0);
    memcpy(out + at, w->b, w->n), at += w->n;
    memcpy(out + at, pg, pn), at += pn;
    size_t chunk_len = at - 4;
    int64_t rows = o.rows_declared ? o.rows_declared : o.n;
    /* footer */
    memset(w, 0, sizeof *w);
    fi32(w, 1, 1);
    flist(w, 2, 12, 2);
    ebeg(w), fstr(w, 4, "schema"), fi32(w, 5, 1), send_(w);
    ebeg(w), fi32(w, 1, 1), fi32(w, 3, 0), fstr(w, 4, "x"), send_(w);
    fi64(w, 3, rows);
    flist(w, 4, 12, 1);
    ebeg(w);
    flist(w, 1, 12, 1);
    ebeg(w);
    fi64(w, 2, 4);
    sbeg(w, 3);
    fi32(w, 1, 1);
    flist(w, 2, 5, 2), uv(w, zz(0)), uv(w, zz(8));
    flist(w, 3, 8, 1), uv(w, 1), put(w, 'x');
    fi32(w, 4, 0), fi64(w, 5, rows), fi64(w, 6, (int64_t)chunk_len), fi64(w, 7, (int64_t)chunk_len);
    fi64(w, 9, (int64_t)data_off), fi64(w, 11, 4);
    send_(w); /* meta_data */
    send_(w); /* ColumnChunk */
    fi64(w, 2, (int64_t)chunk_len), fi64(w, 3, rows);
    send_(w);  /* RowGroup */
    put(w, 0); /* FileMetaData */
    memcpy(out + at, w->b, w->n), at += w->n;
    uint32_t fl = (uint32_t)w->n;
    memcpy(out + at, &fl, 4), at += 4;
    memcpy(out + at, "PAR1", 4), at += 4;
    free(w);
    return at;
}

static st_status read_all(const uint8_t *buf, size_t n, const st_parquet_params *p) {
    st_parquet_file *f;
    st_status s = st_parquet_open_memory(buf, n, "crafted.parquet", p, &f);
    if (s != ST_OK) return s;
    for (int g = 0; g < st_parquet_n_row_groups(f) && s == ST_OK; g++)
        for (int c = 0; c < st_parquet_n_columns(f) && s == ST_OK; c++) {
            st_pq_column *col;
            s = st_parquet_read_column(f, g, c, &col);
            st_pq_column_free(s == ST_OK ? col : NULL);
        }
    st_parquet_close(f);
    return s;
}

static void expect_fail(st_status s, st_status code, const char *needle) {
    assert_int_equal(s, code);
    if (!strstr(st_last_error(), needle))
        fail_msg("message '%s' lacks '%s'", st_last_error(), needle);
    assert_non_null(strstr(st_last_error(), "crafted.parquet"));
}

static void test_crafted(void **state) {
    (void)state;
    uint8_t *buf = calloc(1, 1 << 17);
    /* a good one first: the hand-built file reads back */
    size_t n = craft(buf, (craft_opts){.dict_n = 3, .n = 5, .idx = 2, .crc = 1});
    st_parquet_file *f;
    assert_int_equal(st_parquet_open_memory(buf, n, "crafted.parquet", NULL, &f), ST_OK);
    st_pq_column *c;
    if (st_parquet_read_column(f, 0, 0, &c) != ST_OK) fail_msg("%s", st_last_error());
    assert_int_equal(c->n_present, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(((const int32_t *)c->values)[i], 20);
    st_pq_column_free(c);
    st_parquet_close(f);
    /* dictionary index out of range */
    n = craft(buf, (craft_opts){.dict_n = 3, .n = 5, .idx = 7});
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "dictionary index 7 out of range");
    /* a wrong CRC is caught; with checking off it reads */
    n = craft(buf, (craft_opts){.dict_n = 3, .n = 5, .idx = 1, .crc = 2});
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "CRC32 mismatch");
    st_parquet_params p = st_parquet_default_params();
    p.check_crc = false;
    assert_int_equal(read_all(buf, n, &p), ST_OK);
    /* a negative page size */
    n = craft(buf, (craft_opts){.dict_n = 3, .n = 5, .idx = 1, .page_size_override = -5});
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "negative sizes");
    /* a page size past the end of the chunk */
    n = craft(buf, (craft_opts){.dict_n = 3, .n = 5, .idx = 1, .page_size_override = 100000});
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "past the end of the column chunk");
    /* a billion declared rows: refused by the decode limit, nothing allocated for them */
    n = craft(buf, (craft_opts){.dict_n = 3, .n = 5, .idx = 1, .rows_declared = 1000000000});
    p = st_parquet_default_params();
    p.max_decoded_bytes = 1 << 20;
    expect_fail(read_all(buf, n, &p), ST_ERR_FORMAT, "decode limit");
    /* with the default limit: the page holds fewer values than declared */
    int64_t peak0 = st_alloc_get_stats().peak_bytes;
    (void)peak0;
    /* the declared 5 values but a run of 5: rows mismatch at a different declared count */
    n = craft(buf, (craft_opts){.dict_n = 3, .n = 5, .idx = 1, .rows_declared = 6});
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "ends after 5 of 6 values");
    free(buf);
}

/* A file with one REQUIRED leaf "v" of the given physical type (and
 * converted type, -1 for none), n values in one v1 data page holding
 * `payload` (already encoded) compressed with codec. */
typedef struct plain_opts {
    int physical, type_length, converted, scale, precision, codec, encoding, n;
    const uint8_t *payload;
    size_t payload_len;
} plain_opts;

static size_t compress_with(int codec, const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
    switch (codec) {
    case ST_PQ_UNCOMPRESSED:
        memcpy(dst, src, n);
        return n;
    case ST_PQ_SNAPPY: {
        size_t len = cap;
        return snappy_compress((const char *)src, n, (char *)dst, &len) == SNAPPY_OK ? len : 0;
    }
    case ST_PQ_GZIP: { /* a real gzip member, as writers produce */
        z_stream z;
        memset(&z, 0, sizeof z);
        deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
        z.next_in = (Bytef *)src, z.avail_in = (uInt)n, z.next_out = dst, z.avail_out = (uInt)cap;
        deflate(&z, Z_FINISH);
        size_t len = cap - z.avail_out;
        deflateEnd(&z);
        return len;
    }
    case ST_PQ_ZSTD:
        return ZSTD_compress(dst, cap, src, n, 3);
    case ST_PQ_LZ4_RAW:
        return (size_t)LZ4_compress_default((const char *)src, (char *)dst, (int)n, (int)cap);
    default:
        return 0;
    }
}

static size_t craft_plain(uint8_t *out, plain_opts o) {
    wb *w = calloc(1, sizeof *w);
    uint8_t *comp = malloc(o.payload_len + 1024);
    size_t clen = compress_with(o.codec, o.payload, o.payload_len, comp, o.payload_len + 1024);
    memcpy(out, "PAR1", 4);
    size_t at = 4;
    fi32(w, 1, 0), fi32(w, 2, (int64_t)o.payload_len), fi32(w, 3, (int64_t)clen);
    fi32(w, 4, (int32_t)crc32(0, comp, (uInt)clen));
    sbeg(w, 5), fi32(w, 1, o.n), fi32(w, 2, o.encoding), fi32(w, 3, 3), fi32(w, 4, 3), send_(w);
    put(w, 0);
    memcpy(out + at, w->b, w->n), at += w->n;
    memcpy(out + at, comp, clen), at += clen;
    size_t chunk_len = at - 4;
    memset(w, 0, sizeof *w);
    fi32(w, 1, 1);
    flist(w, 2, 12, 2);
    ebeg(w), fstr(w, 4, "schema"), fi32(w, 5, 1), send_(w);
    ebeg(w), fi32(w, 1, o.physical);
    if (o.type_length) fi32(w, 2, o.type_length);
    fi32(w, 3, 0), fstr(w, 4, "v");
    if (o.converted >= 0) fi32(w, 6, o.converted), fi32(w, 7, o.scale), fi32(w, 8, o.precision);
    send_(w);
    fi64(w, 3, o.n);
    flist(w, 4, 12, 1);
    ebeg(w);
    flist(w, 1, 12, 1);
    ebeg(w);
    fi64(w, 2, 4);
    sbeg(w, 3);
    fi32(w, 1, o.physical);
    flist(w, 2, 5, 1), uv(w, zz(o.encoding));
    flist(w, 3, 8, 1), uv(w, 1), put(w, 'v');
    fi32(w, 4, o.codec), fi64(w, 5, o.n), fi64(w, 6, (int64_t)chunk_len),
        fi64(w, 7, (int64_t)chunk_len);
    fi64(w, 9, 4);
    send_(w), send_(w);
    fi64(w, 2, (int64_t)chunk_len), fi64(w, 3, o.n);
    send_(w);
    put(w, 0);
    memcpy(out + at, w->b, w->n), at += w->n;
    uint32_t fl = (uint32_t)w->n;
    memcpy(out + at, &fl, 4), at += 4;
    memcpy(out + at, "PAR1", 4), at += 4;
    free(comp);
    free(w);
    return at;
}

static st_pq_column *read_one(const uint8_t *buf, size_t n, st_parquet_file **fo) {
    st_parquet_file *f;
    if (st_parquet_open_memory(buf, n, "crafted.parquet", NULL, &f) != ST_OK)
        fail_msg("%s", st_last_error());
    st_pq_column *c;
    if (st_parquet_read_column(f, 0, 0, &c) != ST_OK) fail_msg("%s", st_last_error());
    *fo = f;
    return c;
}

/* The codecs and encodings the shared files lack (LZ4_RAW, BYTE_STREAM_SPLIT,
 * FIXED_LEN_BYTE_ARRAY, DATE, DECIMAL) through hand-built files, each read
 * back and exported to Arrow with the right format. */
static void test_codecs_and_types(void **state) {
    (void)state;
    enum { N = 1000 };
    uint8_t *buf = calloc(1, 1 << 18);
    int32_t i32[N];
    float f32[N];
    for (int i = 0; i < N; i++)
        i32[i] = i * 37 - 5000, f32[i] = (float)i * 0.25f - 7.5f;
    static const int codecs[] = {ST_PQ_UNCOMPRESSED, ST_PQ_SNAPPY, ST_PQ_GZIP, ST_PQ_ZSTD,
                                 ST_PQ_LZ4_RAW};
    for (size_t k = 0; k < sizeof codecs / sizeof *codecs; k++) {
        /* INT32 DATE, PLAIN */
        size_t n = craft_plain(buf, (plain_opts){ST_PQ_INT32, 0, 6 /* DATE */, 0, 0, codecs[k],
                                                 ST_PQ_PLAIN, N, (const uint8_t *)i32, sizeof i32});
        st_parquet_file *f;
        st_pq_column *c = read_one(buf, n, &f);
        assert_memory_equal(c->values, i32, sizeof i32);
        assert_int_equal(st_parquet_node(f, 1)->logical, ST_PQ_LT_DATE);
        struct ArrowSchema as;
        struct ArrowArray aa;
        assert_int_equal(st_arrow_export_column(f, c, &as, &aa), ST_OK);
        assert_string_equal(as.format, "tdD");
        as.release(&as), aa.release(&aa);
        st_parquet_close(f);
        /* FLOAT, BYTE_STREAM_SPLIT */
        uint8_t bss[sizeof f32];
        for (int i = 0; i < N; i++)
            for (int b = 0; b < 4; b++)
                bss[b * N + i] = ((const uint8_t *)&f32[i])[b];
        n = craft_plain(buf, (plain_opts){ST_PQ_FLOAT, 0, -1, 0, 0, codecs[k],
                                          ST_PQ_BYTE_STREAM_SPLIT, N, bss, sizeof bss});
        c = read_one(buf, n, &f);
        assert_memory_equal(c->values, f32, sizeof f32);
        st_pq_column_free(c);
        st_parquet_close(f);
    }
    /* INT64 DECIMAL(12,2) -> "d:12,2", 128-bit little-endian */
    int64_t d64[4] = {12345, -1, 0, INT64_C(-99999999999)};
    size_t n = craft_plain(buf, (plain_opts){ST_PQ_INT64, 0, 5 /* DECIMAL */, 2, 12, ST_PQ_ZSTD,
                                             ST_PQ_PLAIN, 4, (const uint8_t *)d64, sizeof d64});
    st_parquet_file *f;
    st_pq_column *c = read_one(buf, n, &f);
    const st_pq_node *nd = st_parquet_node(f, 1);
    assert_int_equal(nd->logical, ST_PQ_LT_DECIMAL);
    assert_int_equal(nd->scale, 2);
    assert_int_equal(nd->precision, 12);
    struct ArrowSchema as;
    struct ArrowArray aa;
    assert_int_equal(st_arrow_export_column(f, c, &as, &aa), ST_OK);
    assert_string_equal(as.format, "d:12,2");
    const __int128 *dv = aa.buffers[1];
    for (int i = 0; i < 4; i++)
        assert_true(dv[i] == (__int128)d64[i]);
    as.release(&as), aa.release(&aa);
    st_parquet_close(f);
    /* FIXED_LEN_BYTE_ARRAY(3), PLAIN and BYTE_STREAM_SPLIT */
    uint8_t fl[3 * 5] = "abcdefghijklmno", flb[15];
    for (int i = 0; i < 5; i++)
        for (int b = 0; b < 3; b++)
            flb[b * 5 + i] = fl[3 * i + b];
    for (int e = 0; e < 2; e++) {
        n = craft_plain(buf, (plain_opts){ST_PQ_FIXED_LEN_BYTE_ARRAY, 3, -1, 0, 0, ST_PQ_SNAPPY,
                                          e ? ST_PQ_BYTE_STREAM_SPLIT : ST_PQ_PLAIN, 5,
                                          e ? flb : fl, 15});
        c = read_one(buf, n, &f);
        const uint8_t *p;
        size_t len;
        assert_true(st_pq_column_string(c, 4, &p, &len));
        assert_int_equal(len, 3);
        assert_memory_equal(p, "mno", 3);
        assert_int_equal(st_arrow_export_column(f, c, &as, &aa), ST_OK);
        assert_string_equal(as.format, "w:3");
        as.release(&as), aa.release(&aa);
        st_parquet_close(f);
    }
    /* a codec this build does not read says so */
    n = craft_plain(buf, (plain_opts){ST_PQ_INT32, 0, -1, 0, 0, ST_PQ_UNCOMPRESSED, ST_PQ_PLAIN, N,
                                      (const uint8_t *)i32, sizeof i32});
    /* patch the chunk's codec (field 4 of ColumnMetaData: 0x15 then zigzag 0) to LZO (3 -> zigzag
     * 6) */
    for (size_t i = n - 8; i > 4; i--) {
        if (buf[i] == 0x15 && buf[i + 1] == 0x00 && buf[i - 1] == 'v') {
            buf[i + 1] = 6;
            break;
        }
    }
    assert_int_equal(read_all(buf, n, NULL), ST_ERR_UNSUPPORTED);
    assert_non_null(strstr(st_last_error(), "LZO"));
    free(buf);
}

static size_t wrap_footer(uint8_t *out, const wb *w) {
    memcpy(out, "PAR1", 4);
    memcpy(out + 4, w->b, w->n);
    uint32_t fl = (uint32_t)w->n;
    memcpy(out + 4 + w->n, &fl, 4);
    memcpy(out + 8 + w->n, "PAR1", 4);
    return w->n + 12;
}

static void test_hostile_footers(void **state) {
    (void)state;
    wb *w = calloc(1, sizeof *w);
    uint8_t *buf = calloc(1, 1 << 17);
    size_t n;
    /* a schema nested 100 deep */
    flist(w, 2, 12, 101);
    for (int i = 0; i < 100; i++)
        ebeg(w), fstr(w, 4, "g"), fi32(w, 3, 0), fi32(w, 5, 1), send_(w);
    ebeg(w), fi32(w, 1, 1), fi32(w, 3, 0), fstr(w, 4, "x"), send_(w);
    fi64(w, 3, 0), flist(w, 4, 12, 0), put(w, 0);
    n = wrap_footer(buf, w);
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "nested deeper");
    /* a group claiming more children than there are elements (a cycle can't be expressed) */
    memset(w, 0, sizeof *w);
    flist(w, 2, 12, 2);
    ebeg(w), fstr(w, 4, "schema"), fi32(w, 5, 5), send_(w);
    ebeg(w), fi32(w, 1, 1), fi32(w, 3, 0), fstr(w, 4, "x"), send_(w);
    fi64(w, 3, 0), flist(w, 4, 12, 0), put(w, 0);
    n = wrap_footer(buf, w);
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "declares 5 children");
    /* negative num_children */
    memset(w, 0, sizeof *w);
    flist(w, 2, 12, 2);
    ebeg(w), fstr(w, 4, "schema"), fi32(w, 5, 1), send_(w);
    ebeg(w), fi32(w, 3, 0), fstr(w, 4, "x"), fi32(w, 5, -3), send_(w);
    fi64(w, 3, 0), flist(w, 4, 12, 0), put(w, 0);
    n = wrap_footer(buf, w);
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "physical type -1");
    /* a string length far past the end */
    memset(w, 0, sizeof *w);
    fh(w, 6, 8), uv(w, (uint64_t)1 << 40);
    n = wrap_footer(buf, w);
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "string length past the end");
    /* a list claiming a billion elements */
    memset(w, 0, sizeof *w);
    flist(w, 2, 12, 1000000000);
    n = wrap_footer(buf, w);
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "list size larger than the bytes left");
    /* unknown fields nested 40 structs deep (skipping must not recurse without bound) */
    memset(w, 0, sizeof *w);
    for (int i = 0; i < 40; i++)
        sbeg(w, 50);
    for (int i = 0; i < 40; i++)
        send_(w);
    put(w, 0);
    n = wrap_footer(buf, w);
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "nesting deeper than 32");
    /* a footer length past the start */
    memset(w, 0, sizeof *w);
    put(w, 0);
    n = wrap_footer(buf, w);
    buf[n - 8] = 0xff, buf[n - 7] = 0xff;
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "footer length");
    /* not Parquet at all */
    expect_fail(read_all((const uint8_t *)"hello, world, this is text", 26, NULL), ST_ERR_FORMAT,
                "not a Parquet file");
    /* an empty footer: no schema */
    memset(w, 0, sizeof *w);
    put(w, 0);
    n = wrap_footer(buf, w);
    expect_fail(read_all(buf, n, NULL), ST_ERR_FORMAT, "no schema");
    free(buf);
    free(w);
}

/* ---- real files, damaged --------------------------------------------------------------- */

static void test_truncated_and_flipped(void **state) {
    (void)state;
    const char *files[] = {"types.parquet", "types.zstd_plain_v2_smallpages.parquet",
                           "types.duckdb.parquet"};
    for (size_t fi = 0; fi < 3; fi++) {
        char path[512];
        snprintf(path, sizeof path, DATA "%s", files[fi]);
        size_t n;
        uint8_t *orig = slurp(path, &n);
        assert_non_null(orig);
        uint8_t *b = malloc(n);
        st_parquet_params p = st_parquet_default_params();
        p.max_decoded_bytes = 64 << 20;
        /* truncation: every cut fails cleanly (a truncated file loses its footer magic) */
        for (size_t cut = 0; cut < n; cut += n / 97 + 1) {
            st_status s = read_all(orig, cut, &p);
            assert_int_not_equal(s, ST_OK);
            assert_true(strlen(st_last_error()) > 0);
        }
        /* bit flips: anything but a crash; failures carry a message */
        uint64_t x = 0x9E3779B97F4A7C15ull + fi;
        int failures = 0;
        for (int t = 0; t < 300; t++) {
            memcpy(b, orig, n);
            for (int k = 0; k < 3; k++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                size_t pos =
                    (t & 1) ? n - 8 - (x >> 8) % (n / 8) : (x >> 8) % n; /* footer-heavy half */
                b[pos] ^= (uint8_t)(1u << (x & 7));
            }
            st_status s = read_all(b, n, &p);
            if (s != ST_OK) {
                failures++;
                assert_true(strlen(st_last_error()) > 0);
            }
        }
        assert_true(failures > 0);
        free(b);
        free(orig);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_types_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shakespeare_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crafted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_footers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codecs_and_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_and_flipped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
