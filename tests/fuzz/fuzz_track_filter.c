/*
 * fuzz_track_filter.c — libFuzzer target for the run filter language and
 * sort keys (src/track/filter.c).
 *
 * The input, cut at its first NUL, is compiled as a filter and as a sort
 * key. What compiles must be well formed: every placeholder names one of
 * the bound values, and a string value holding a quote never appears in
 * the SQL text (values travel only as parameters). Seeds in
 * tests/fuzz/corpus/fuzz_track_filter/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "track/track_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 10000) return 0;
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    st__sqlfrag f;
    if (st__filter_compile(s, 1, &f) == ST_OK) {
        /* Placeholders stay within the bound values. */
        for (const char *p = strchr(f.sql, '$'); p; p = strchr(p + 1, '$')) {
            int k = atoi(p + 1);
            if (k < 1 || k > f.n_params) __builtin_trap();
        }
        for (int i = 0; i < f.n_params; i++)
            if (f.params[i].type == ST__DB_TEXT && strchr(f.params[i].s, '\'') && strstr(f.sql, f.params[i].s))
                __builtin_trap();
        st__sqlfrag_free(&f);
    }
    if (st__sort_compile(s, 3, &f) == ST_OK) {
        for (const char *p = strchr(f.sql, '$'); p; p = strchr(p + 1, '$')) {
            int k = atoi(p + 1);
            if (k < 3 || k >= 3 + f.n_params) __builtin_trap();
        }
        st__sqlfrag_free(&f);
    }
    free(s);
    return 0;
}
