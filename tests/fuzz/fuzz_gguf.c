/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader (src/hub/gguf.c).
 *
 * The reader maps a file, so each input is written to an anonymous memory
 * file (memfd) and loaded through /proc/self/fd/N, the same path a real file
 * takes. A model that loads is then walked: every matrix's last row is
 * dequantized and every norm weight touched, so a pointer past the mapping
 * shows up under AddressSanitizer; the tokenizer, when present, encodes a
 * short text. Built only with clang: see CMakeLists.txt (STRATA_FUZZ) and
 * `make fuzz`; seeds in tests/fuzz/corpus/fuzz_gguf/ (small llama and gpt2
 * files written by st_lm_save_gguf, with and without tokenizers).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "strata/infer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile float g_sink;

static void touch(const st_wmatrix *w) {
    if (!w->data || w->rows == 0 || w->cols > (1 << 20)) return;
    float *row = st_malloc((size_t)w->cols * sizeof(float));
    if (!row) return;
    if (st_wmatrix_get_row(w, w->rows - 1, row) == ST_OK) g_sink += row[w->cols - 1];
    st_free(row);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz_gguf", 0);
    if (fd < 0) return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    st_lm *lm = NULL;
    if (st_lm_load_gguf(path, &lm) == ST_OK) {
        touch(&lm->tok_embd);
        touch(&lm->lm_head);
        g_sink += lm->lnf_w[lm->cfg.n_embd - 1];
        for (int l = 0; l < lm->cfg.n_layer; l++) {
            const st_lm_layer *L = &lm->layers[l];
            touch(&L->wq), touch(&L->wk), touch(&L->wv), touch(&L->wo);
            touch(&L->w_gate), touch(&L->w_up), touch(&L->w_down);
            g_sink += L->ln1_w[0] + L->ln2_w[lm->cfg.n_embd - 1];
        }
        if (lm->tok) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (st_tokenizer_encode(lm->tok, "hello world", 11, NULL, &ids, &n) == ST_OK) st_free(ids);
        }
        st_lm_free(lm);
    }
    close(fd);
    return 0;
}
