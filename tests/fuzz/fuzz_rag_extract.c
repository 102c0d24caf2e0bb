/*
 * fuzz_rag_extract.c — libFuzzer target for the RAG text extraction
 * (HTML through libxml2, JSON Lines through jansson, plain text) and the
 * chunker (src/app/rag_extract.c, rag_chunk.c).
 *
 * Input: byte 0 picks the format (0 text, 1 HTML, 2 JSON Lines), byte 1
 * the chunk size (1..64 tokens) and overlap; the rest is the file. What
 * extracts must be well formed: the line map covers the text in order with
 * 1-based source lines, and every chunk lies inside the text with
 * 1 <= line_start <= line_end, at most chunk tokens, moving forward. Seeds
 * in tests/fuzz/corpus/fuzz_rag_extract/.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "app/rag_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 100000) return 0;
    static const st__rag_format fmts[3] = {ST__RAG_TEXT, ST__RAG_HTML, ST__RAG_JSONL};
    st__rag_format f = fmts[data[0] % 3];
    int chunk = 1 + data[1] % 64, overlap = (data[1] / 64) * chunk / 4;
    if (overlap >= chunk) overlap = 0;
    st__rag_text t = {0};
    if (st__rag_extract(f, data + 2, size - 2, "fuzz", 1 << 20, &t) == ST_OK) {
        if (t.n_lines < 1 || t.line_off[0] != 0) __builtin_trap();
        for (int64_t k = 0; k < t.n_lines; k++) {
            if (t.src_first[k] < 1 || t.src_last[k] < t.src_first[k]) __builtin_trap();
            if (t.line_off[k] >= (int64_t)t.buf.len) __builtin_trap();
            if (k && t.line_off[k] <= t.line_off[k - 1]) __builtin_trap();
        }
        st__rag_chunk *c = NULL;
        int64_t n = 0;
        if (st__rag_chunk_text(&t, chunk, overlap, NULL, NULL, &c, &n) == ST_OK) {
            for (int64_t i = 0; i < n; i++) {
                if (c[i].off < 0 || c[i].len < 1 || c[i].off + c[i].len > (int64_t)t.buf.len)
                    __builtin_trap();
                if (c[i].line_start < 1 || c[i].line_end < c[i].line_start) __builtin_trap();
                if (c[i].n_tokens > chunk && c[i].n_tokens != 0) {
                    /* one word alone may exceed the size: it is never split */
                    const char *p = t.buf.p + c[i].off;
                    for (int64_t j = 0; j < c[i].len; j++)
                        if (p[j] == ' ' || p[j] == '\n') __builtin_trap();
                }
                if (i && c[i].off <= c[i - 1].off) __builtin_trap();
            }
            st_free(c);
        }
    }
    st__rag_text_free(&t);
    return 0;
}
