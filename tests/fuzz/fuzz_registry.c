/*
 * fuzz_registry.c — libFuzzer target for the registry's two parsers of
 * outside text: the manifest (st_registry_manifest_parse, JSON from disk or
 * a hub server) and the model card's front matter (st_registry_card_parse).
 * The first input byte picks the parser; a manifest that parses is
 * serialized again and must parse to the same revision. Built only with
 * clang (`make fuzz`); seeds in tests/fuzz/corpus/fuzz_registry/.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "strata/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1) {
        st_registry_card c;
        if (st_registry_card_parse((const char *)data + 1, size - 1, "fuzz", &c) == ST_OK) {
            volatile size_t sink = strlen(c.body);
            for (int i = 0; i < c.n_metrics; i++) sink += strlen(c.metric_names[i]) + strlen(c.metric_values[i]);
            (void)sink;
            st_registry_card_free(&c);
        }
        return 0;
    }
    st_registry_manifest *m = NULL;
    if (st_registry_manifest_parse(data + 1, size - 1, "fuzz", &m) != ST_OK) return 0;
    char *js = NULL;
    size_t n = 0;
    if (st_registry_manifest_json(m, &js, &n) == ST_OK) {
        st_registry_manifest *m2 = NULL;
        if (st_registry_manifest_parse(js, n, "fuzz-again", &m2) != ST_OK) __builtin_trap();
        if (strcmp(m->revision, m2->revision) != 0) __builtin_trap();
        st_registry_manifest_free(m2);
        st_free(js);
    }
    st_registry_manifest_free(m);
    return 0;
}
