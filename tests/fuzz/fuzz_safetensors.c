/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors reader.
 *
 * Feeds arbitrary bytes to st_safetensors_open_memory (the same parser as
 * the file reader, minus the mmap) and, when a file parses, touches every
 * tensor's bytes and every metadata string so that a pointer outside the
 * buffer shows up under AddressSanitizer. Built only with clang: see
 * CMakeLists.txt (STRATA_FUZZ) and `make fuzz`; seeds in
 * tests/fuzz/corpus/fuzz_safetensors/.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "strata/hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_safetensors *f = NULL;
    if (st_safetensors_open_memory(data, size, "fuzz", &f) != ST_OK) return 0;
    volatile uint8_t sink = 0;
    for (int i = 0; i < st_safetensors_n_tensors(f); i++) {
        st_safetensors_tensor t;
        if (st_safetensors_get(f, i, &t) != ST_OK) continue;
        const uint8_t *p = t.data;
        for (size_t b = 0; b < t.n_bytes; b++) sink ^= p[b];
        sink ^= (uint8_t)strlen(t.name);
        (void)st_safetensors_find(f, t.name);
    }
    for (int i = 0; i < st_safetensors_n_metadata(f); i++) {
        const char *k, *v;
        st_safetensors_metadata_at(f, i, &k, &v);
        sink ^= (uint8_t)(strlen(k) + strlen(v));
    }
    (void)sink;
    st_safetensors_close(f);
    return 0;
}
