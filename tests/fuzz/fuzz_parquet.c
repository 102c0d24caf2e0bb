/*
 * fuzz_parquet.c — libFuzzer target for the Parquet reader and Arrow export.
 *
 * Feeds arbitrary bytes to st_parquet_open_memory (the same footer, schema
 * and page code as the file reader, minus pread), then decodes every column
 * chunk of every row group, touches every level, value and string byte so a
 * pointer outside a buffer shows up under AddressSanitizer, and exports row
 * group 0 through the Arrow C Data Interface and releases it. The decode
 * limit is lowered to 32 MiB so a hostile count fails instead of tripping
 * libFuzzer's memory limit. Built only with clang: see CMakeLists.txt
 * (STRATA_FUZZ) and `make fuzz`; seeds in tests/fuzz/corpus/fuzz_parquet/
 * (the types*.parquet files of tests/data/parquet).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "strata/arrow.h"
#include "strata/parquet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_parquet_params p = st_parquet_default_params();
    p.max_decoded_bytes = 32u << 20;
    p.max_page_bytes = 16u << 20;
    st_parquet_file *f = NULL;
    if (st_parquet_open_memory(data, size, "fuzz", &p, &f) != ST_OK) return 0;
    volatile uint8_t sink = 0;
    for (int g = 0; g < st_parquet_n_row_groups(f) && g < 16; g++) {
        for (int c = 0; c < st_parquet_n_columns(f) && c < 64; c++) {
            st_pq_chunk_info ci;
            if (st_parquet_chunk_info(f, g, c, &ci) == ST_OK && ci.stats.has_min_max)
                for (uint32_t i = 0; i < ci.stats.min_len; i++)
                    sink ^= ci.stats.min[i];
            st_pq_column *col;
            if (st_parquet_read_column(f, g, c, &col) != ST_OK) continue;
            for (int64_t i = 0; i < col->n_values; i++) {
                if (col->def_levels) sink ^= (uint8_t)col->def_levels[i];
                if (col->rep_levels) sink ^= (uint8_t)col->rep_levels[i];
                const uint8_t *s;
                size_t n;
                if (st_pq_column_string(col, i, &s, &n) && n) sink ^= s[0] ^ s[n - 1];
            }
            if (col->values && col->n_present)
                sink ^= ((const uint8_t *)
                             col->values)[(size_t)col->n_present * (size_t)col->type_length - 1];
            st_pq_column_free(col);
        }
    }
    struct ArrowSchema s;
    struct ArrowArray a;
    if (st_parquet_n_row_groups(f) > 0 &&
        st_arrow_export_row_group(f, 0, NULL, 0, &s, &a) == ST_OK) {
        for (int64_t i = 0; i < a.n_children; i++)
            sink ^= (uint8_t)a.children[i]->length;
        a.release(&a);
        s.release(&s);
    }
    (void)sink;
    st_parquet_close(f);
    return 0;
}
