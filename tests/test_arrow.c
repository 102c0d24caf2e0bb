/*
 * test_arrow.c — Arrow C Data Interface export (src/data/arrow.c).
 *
 * Against the spec (arrow.apache.org/docs/format/CDataInterface.html and
 * Columnar.html): format strings, validity bitmaps (LSB-first, bit set =
 * valid), null counts, int32 offsets (n+1, monotonic, nulls empty), boolean
 * values bit-packed, lists as "+l" with offsets into the child, record
 * batches as "+s"; zero-copy where the decoded layout matches; release
 * callbacks that free children and set release to NULL; a child moved out of
 * its parent stays valid after the parent's release and is released on its
 * own. Values are checked against tests/data/parquet/types.expected.jsonl's
 * rules (README: i = row index). Leaks fail the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "strata/arrow.h"

#define DATA STRATA_SOURCE_DIR "/tests/data/parquet/"

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

static bool bit(const void *bm, int64_t i) {
    return bm == NULL || (((const uint8_t *)bm)[i >> 3] >> (i & 7)) & 1;
}

static void expected_name(int i, char *buf, size_t n, bool *is_null) {
    *is_null = i % 5 == 4;
    if (i % 11 == 0)
        snprintf(buf, n, "%s", "");
    else if (i % 13 == 0)
        snprintf(buf, n, "ünïcödé ✓ 漢字 %d", i);
    else
        snprintf(buf, n, "row-%d", i);
}

static void export_col(st_parquet_file *f, int g, const char *name, struct ArrowSchema *s,
                       struct ArrowArray *a, const void **values) {
    st_pq_column *c;
    assert_int_equal(st_parquet_read_column(f, g, st_parquet_find_column(f, name), &c), ST_OK);
    if (values) *values = c->values;
    st_status st = st_arrow_export_column(f, c, s, a);
    if (st != ST_OK) fail_msg("%s", st_last_error());
}

static void test_flat_columns(void **state) {
    (void)state;
    const char *files[] = {"types.parquet", "types.duckdb.parquet",
                           "types.zstd_plain_v2_smallpages.parquet"};
    for (int fi = 0; fi < 3; fi++) {
        char path[512];
        snprintf(path, sizeof path, DATA "%s", files[fi]);
        st_parquet_file *f;
        assert_int_equal(st_parquet_open(path, NULL, &f), ST_OK);
        int64_t base = 0;
        for (int g = 0; g < st_parquet_n_row_groups(f); g++) {
            int64_t rows = st_parquet_row_group_rows(f, g);
            struct ArrowSchema s;
            struct ArrowArray a;
            /* int32 with nulls: i%3 == 1 is null, else i*i-1000 */
            export_col(f, g, "opt_i32", &s, &a, NULL);
            assert_string_equal(s.format, "i");
            assert_string_equal(s.name, "opt_i32");
            assert_true(s.flags & ARROW_FLAG_NULLABLE);
            assert_int_equal(s.n_children, 0);
            assert_int_equal(a.length, rows);
            assert_int_equal(a.offset, 0);
            assert_int_equal(a.n_buffers, 2);
            assert_int_equal(a.n_children, 0);
            int64_t nulls = 0;
            for (int64_t r = 0; r < rows; r++) {
                int i = (int)(base + r);
                assert_int_equal(bit(a.buffers[0], r), i % 3 != 1);
                nulls += i % 3 == 1;
                if (i % 3 != 1) assert_int_equal(((const int32_t *)a.buffers[1])[r], i * i - 1000);
            }
            assert_int_equal(a.null_count, nulls);
            assert_non_null(a.buffers[0]);
            s.release(&s);
            a.release(&a);
            assert_null(s.release);
            assert_null(a.release);

            /* strings with nulls: offsets n+1, monotonic, nulls empty */
            export_col(f, g, "name", &s, &a, NULL);
            assert_string_equal(s.format, "u");
            assert_int_equal(a.n_buffers, 3);
            const int32_t *off = a.buffers[1];
            const char *data = a.buffers[2];
            assert_int_equal(off[0], 0);
            nulls = 0;
            for (int64_t r = 0; r < rows; r++) {
                char want[64];
                bool isnull;
                expected_name((int)(base + r), want, sizeof want, &isnull);
                assert_true(off[r + 1] >= off[r]);
                assert_int_equal(bit(a.buffers[0], r), !isnull);
                if (isnull) {
                    nulls++;
                    assert_int_equal(off[r + 1], off[r]);
                } else {
                    assert_int_equal(off[r + 1] - off[r], strlen(want));
                    assert_memory_equal(data + off[r], want, strlen(want));
                }
            }
            assert_int_equal(a.null_count, nulls);
            s.release(&s);
            a.release(&a);

            /* booleans: values bit-packed; null if i%7 == 3, else i%3 == 0 */
            export_col(f, g, "flag", &s, &a, NULL);
            assert_string_equal(s.format, "b");
            for (int64_t r = 0; r < rows; r++) {
                int i = (int)(base + r);
                assert_int_equal(bit(a.buffers[0], r), i % 7 != 3);
                if (i % 7 != 3) assert_int_equal(bit(a.buffers[1], r), i % 3 == 0);
            }
            s.release(&s);
            a.release(&a);

            /* a column without nulls: no bitmap; zero-copy of the decoded values */
            const void *vals;
            export_col(f, g, "id", &s, &a, &vals);
            assert_string_equal(s.format, "l");
            assert_int_equal(a.null_count, 0);
            assert_null(a.buffers[0]);
            assert_ptr_equal(a.buffers[1], vals);
            for (int64_t r = 0; r < rows; r++)
                assert_int_equal(((const int64_t *)a.buffers[1])[r], base + r);
            s.release(&s);
            a.release(&a);
            base += rows;
        }
        st_parquet_close(f);
    }
}

static void test_list_and_batch(void **state) {
    (void)state;
    st_parquet_file *f;
    assert_int_equal(st_parquet_open(DATA "types.duckdb.parquet", NULL, &f), ST_OK);
    struct ArrowSchema s;
    struct ArrowArray a;
    export_col(f, 0, "embedding", &s, &a, NULL);
    assert_string_equal(s.format, "+l");
    assert_int_equal(s.n_children, 1);
    assert_string_equal(s.children[0]->format, "f");
    assert_string_equal(s.children[0]->name, "element");
    assert_int_equal(a.length, 1000);
    assert_int_equal(a.null_count, 0);
    assert_int_equal(a.n_children, 1);
    const int32_t *off = a.buffers[1];
    for (int r = 0; r <= 1000; r++)
        assert_int_equal(off[r], 8 * r);
    struct ArrowArray *child = a.children[0];
    assert_int_equal(child->length, 8000);
    assert_int_equal(child->null_count, 0);
    s.release(&s);
    a.release(&a);

    /* a record batch: "+s" with every top-level field, in schema order */
    assert_int_equal(st_arrow_export_row_group(f, 0, NULL, 0, &s, &a), ST_OK);
    assert_string_equal(s.format, "+s");
    assert_int_equal(s.n_children, 10);
    assert_int_equal(a.n_children, 10);
    assert_int_equal(a.length, 1000);
    assert_int_equal(a.null_count, 0);
    assert_int_equal(a.n_buffers, 1);
    static const char *names[] = {"id",   "i32",  "i64",      "f32",     "f64",
                                  "flag", "name", "category", "opt_i32", "embedding"};
    static const char *fmts[] = {"l", "i", "l", "f", "g", "b", "u", "u", "i", "+l"};
    for (int i = 0; i < 10; i++) {
        assert_string_equal(s.children[i]->name, names[i]);
        assert_string_equal(s.children[i]->format, fmts[i]);
        assert_int_equal(a.children[i]->length, 1000);
    }
    /* move a child out (spec: copy the struct, mark the source released),
     * release the parent, then use and release the child on its own */
    struct ArrowArray moved = *a.children[6];
    a.children[6]->release = NULL;
    struct ArrowSchema moved_s = *s.children[6];
    s.children[6]->release = NULL;
    a.release(&a);
    s.release(&s);
    assert_null(a.release);
    const int32_t *o = moved.buffers[1];
    assert_int_equal(o[2] - o[1], 5); /* "row-1" */
    assert_memory_equal((const char *)moved.buffers[2] + o[1], "row-1", 5);
    assert_string_equal(moved_s.name, "name");
    void (*rel)(struct ArrowArray *) = moved.release;
    moved.release(&moved);
    assert_null(moved.release);
    rel(&moved); /* a released struct is never released twice: release checks */
    moved_s.release(&moved_s);

    /* projection: two fields */
    int fields[2] = {st_parquet_column_node(f, st_parquet_find_column(f, "i64")),
                     st_parquet_column_node(f, st_parquet_find_column(f, "category"))};
    assert_int_equal(st_arrow_export_row_group(f, 0, fields, 2, &s, &a), ST_OK);
    assert_int_equal(s.n_children, 2);
    assert_string_equal(s.children[1]->name, "category");
    const int32_t *co = a.children[1]->buffers[1];
    assert_memory_equal((const char *)a.children[1]->buffers[2] + co[3], "delta", 5);
    assert_true(((const int64_t *)a.children[0]->buffers[1])[1] == INT64_C(-7046029254386353131));
    a.release(&a);
    s.release(&s);

    char fmt[64];
    assert_int_equal(st_arrow_format(f, fields[0], fmt, sizeof fmt), ST_OK);
    assert_string_equal(fmt, "l");
    assert_int_equal(st_arrow_format(f, 0, fmt, sizeof fmt), ST_ERR_BOUNDS); /* the root */
    st_parquet_close(f);
}

static void test_arrow_rs_list(void **state) {
    (void)state;
    st_parquet_file *f;
    assert_int_equal(st_parquet_open(DATA "types.parquet", NULL, &f), ST_OK);
    struct ArrowSchema s;
    struct ArrowArray a;
    export_col(f, 1, "embedding", &s, &a, NULL);
    assert_string_equal(s.children[0]->name, "item");
    assert_false(s.flags & ARROW_FLAG_NULLABLE); /* REQUIRED group (LIST) */
    assert_true(s.children[0]->flags & ARROW_FLAG_NULLABLE);
    assert_int_equal(a.length, 300);
    assert_null(a.buffers[0]);
    /* release the child first, independently, then the parent */
    struct ArrowArray child = *a.children[0];
    a.children[0]->release = NULL;
    float v0 = ((const float *)child.buffers[1])[0];
    child.release(&child);
    a.release(&a);
    s.release(&s);
    (void)v0;
    st_parquet_close(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flat_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrow_rs_list, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
