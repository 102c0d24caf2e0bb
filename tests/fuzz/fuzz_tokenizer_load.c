/*
 * fuzz_tokenizer_load.c — libFuzzer target for the tokenizer loaders of
 * layer 5: the input is a tokenizer file in one of four formats, chosen by
 * its first byte (low two bits): 0 a Hugging Face tokenizer.json, 1 a
 * .tiktoken rank file (bit 2 set: named like cl100k_base, so the special
 * tokens are added), 2 a llama2.c tokenizer.bin, 3 a GPT-2 pair: encoder.json
 * and vocab.bpe separated by the first NUL byte. The loaders take memory
 * directly (st__load_*_mem). When a load succeeds, a fixed text is encoded
 * (with and without special tokens) and decoded, to exercise the tables the
 * loader built. Every failure must be a status, never a crash or a leak.
 *
 * Build (clang only; CMake wires it when the compiler is clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *     -Iinclude -Isrc tests/fuzz/fuzz_tokenizer_load.c $(find src/base -name '*.c') \
 *     src/data/tokenizer*.c -ljansson -lpcre2-8 -lm -o fuzz_tokenizer_load
 * Seeds carry their format byte first, e.g.:
 *   mkdir -p corpus
 *   (printf '\x02'; cat data/stories260K/tok512.bin) >corpus/sp
 *   (printf '\x05'; head -400 data/cl100k/cl100k_base.tiktoken) >corpus/tt
 *   ./fuzz_tokenizer_load -max_len=70000 -rss_limit_mb=2048 corpus
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "data/tokenizer_impl.h"
#include "strata/tokenizer.h"

static void exercise(st_tokenizer *t) {
    static const char text[] =
        "Hello, world! It's 2024 \xE4\xBD\xA0\xE5\xA5\xBD <|endoftext|> \xFF tabs\t\tand  spaces\n";
    for (int special = 0; special < 2; special++) {
        st_encode_opts o = {.allow_special = special, .add_bos = special};
        int32_t *ids = NULL;
        size_t n = 0;
        if (st_tokenizer_encode(t, text, sizeof text - 1, &o, &ids, &n) == ST_OK) {
            char *back = NULL;
            size_t bn = 0;
            if (st_tokenizer_decode(t, ids, n, &back, &bn) == ST_OK) st_free(back);
            st_free(ids);
        }
    }
    for (int32_t id = -1; id < st_tokenizer_vocab_size(t) && id < 600; id++) {
        size_t pn;
        (void)st_tokenizer_piece(t, id, &pn);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    st_tokenizer *t = NULL;
    st_status s;
    switch (sel & 3) {
    case 0: s = st__load_hf_json_mem(p, n, "fuzz/tokenizer.json", &t); break;
    case 1:
        s = st__load_tiktoken_mem(p, n, (sel & 4) ? "fuzz/cl100k_base.tiktoken" : "fuzz/x.tiktoken",
                                  &t);
        break;
    case 2: s = st__load_llama2c_mem(p, n, "fuzz/tokenizer.bin", &t); break;
    default: {
        const char *nul = memchr(p, '\0', n);
        size_t a = nul ? (size_t)(nul - p) : n;
        s = st__load_gpt2_mem(p, a, "fuzz/encoder.json", nul ? nul + 1 : p + n, nul ? n - a - 1 : 0,
                              "fuzz/vocab.bpe", &t);
        break;
    }
    }
    if (s == ST_OK) {
        exercise(t);
        st_tokenizer_free(t);
    }
    return 0;
}
