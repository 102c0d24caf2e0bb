/*
 * fuzz_llama2c.c — libFuzzer target for the llama2.c checkpoint reader.
 *
 * Feeds arbitrary bytes to st__lm_llama2c_from_memory (the parser behind
 * st_lm_load_llama2c, minus the mmap) and, when a model parses, reads every
 * byte of every weight matrix and norm vector it points at, so that a
 * pointer or a size past the buffer shows up under AddressSanitizer. Built
 * only with clang: see CMakeLists.txt (STRATA_FUZZ) and `make fuzz`; seeds
 * (tiny legacy and version-1 checkpoints, shared and unshared classifier)
 * in tests/fuzz/corpus/fuzz_llama2c/.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "infer/infer_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t touch(const void *p, size_t n) {
    const uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++) x ^= b[i];
    return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_lm *lm = NULL;
    if (st__lm_llama2c_from_memory(data, size, "fuzz", &lm) != ST_OK) return 0;
    volatile uint8_t sink = 0;
    const st_model_config *c = &lm->cfg;
    const size_t E = (size_t)c->n_embd * sizeof(float);
    sink ^= touch(lm->tok_embd.data, (size_t)lm->tok_embd.rows * lm->tok_embd.row_bytes);
    sink ^= touch(lm->lm_head.data, (size_t)lm->lm_head.rows * lm->lm_head.row_bytes);
    sink ^= touch(lm->lnf_w, E);
    for (int l = 0; l < c->n_layer; l++) {
        const st_lm_layer *L = &lm->layers[l];
        const st_wmatrix *m[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
            sink ^= touch(m[i]->data, (size_t)m[i]->rows * m[i]->row_bytes);
        sink ^= touch(L->ln1_w, E) ^ touch(L->ln2_w, E);
    }
    (void)st_lm_weight_bytes(lm);
    (void)sink;
    st_lm_free(lm);
    return 0;
}
