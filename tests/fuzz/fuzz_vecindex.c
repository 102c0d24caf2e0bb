/*
 * fuzz_vecindex.c — libFuzzer target for the vector index file reader and
 * the vector file parsers (src/app/vecindex.c, vecindex_io.c).
 *
 * Feeds arbitrary bytes to st_vecindex_load_memory (the same checks as the
 * mmap reader) and, when an index loads, searches it (HNSW and exact) with a
 * few queries, so that a link, level or offset the reader let through shows
 * up under AddressSanitizer as a read outside the image; then adds a vector
 * and removes one (the copy out of the image). The same bytes go through
 * st_vec_parse as .fvecs and as .npy. Built only with clang: see
 * CMakeLists.txt (STRATA_FUZZ) and `make fuzz`; seeds in
 * tests/fuzz/corpus/fuzz_vecindex/.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "strata/vecindex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_vecindex *ix = NULL;
    if (st_vecindex_load_memory(data, size, "fuzz", &ix) == ST_OK) {
        int d = st_vecindex_dim(ix);
        if (d <= 4096) {
            float q[2 * 4096];
            for (int i = 0; i < 2 * d; i++) q[i] = (float)((i * 37) % 11) - 5.f;
            int64_t ids[2 * 5];
            float dist[2 * 5];
            st_vec_search_params sp = st_vec_search_default_params();
            sp.k = 5, sp.ef = 8;
            (void)st_vecindex_search(ix, NULL, 2, q, &sp, ids, dist);
            sp.exact = true;
            (void)st_vecindex_search(ix, NULL, 2, q, &sp, ids, dist);
            if (st_vecindex_size(ix) < 2000) {
                (void)st_vecindex_add(ix, NULL, 1, q, NULL);
                (void)st_vecindex_remove(ix, 0);
                sp.exact = false;
                (void)st_vecindex_search(ix, NULL, 1, q, &sp, ids, dist);
            }
        }
        st_vecindex_info info;
        st_vecindex_get_info(ix, &info);
        st_vecindex_free(ix);
    }
    float *x = NULL;
    int64_t n;
    int dim;
    if (st_vec_parse(data, size, "fuzz.fvecs", 'f', &x, &n, &dim) == ST_OK) st_free(x);
    x = NULL;
    if (st_vec_parse(data, size, "fuzz.npy", 'n', &x, &n, &dim) == ST_OK) st_free(x);
    return 0;
}
