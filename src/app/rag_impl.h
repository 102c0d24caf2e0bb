/*
 * rag_impl.h — private parts of the RAG layer (src/app/rag*.c), shared with
 * the tests and the fuzz target: text extraction with a line map, the word
 * tokenizer, the chunker, the hashed embedding, reciprocal rank fusion and
 * the citation parser. The public API is strata/app.h.
 */
#ifndef STRATA_APP_RAG_IMPL_H
#define STRATA_APP_RAG_IMPL_H

#include "strata/app.h"

/* ---- extracted text with a map to source lines ---------------------------------
 * The text is what gets chunked: UTF-8, lines separated by '\n', paragraphs
 * by a blank line. Each extracted line k keeps the source range it came
 * from, 1-based and inclusive: a line of a .txt/.md file maps to itself, an
 * HTML paragraph to the lines its text nodes sat on, a JSONL record to its
 * line, a Parquet record to its row (1-based), PDF text to its page. */
typedef struct st__rag_text {
    st_strbuf buf;
    int64_t *line_off;   /* byte offset where extracted line k starts */
    int32_t *src_first;  /* source range of extracted line k */
    int32_t *src_last;
    int64_t n_lines, cap_lines;
    /* builder state */
    bool pending_space;  /* collapse mode: a space is owed before the next byte */
    int n_warnings;      /* records skipped inside the file (bad JSONL line, ...) */
    char warning[256];   /* the first of them */
} st__rag_text;

/* Formats by extension; ST__RAG_TEXT is also the guess for other extensions. */
typedef enum st__rag_format {
    ST__RAG_TEXT = 0,
    ST__RAG_MARKDOWN = 1,
    ST__RAG_HTML = 2,
    ST__RAG_JSONL = 3,
    ST__RAG_PARQUET = 4,
    ST__RAG_PDF = 5,
} st__rag_format;

st__rag_format st__rag_format_of(const char *path);
const char *st__rag_format_name(st__rag_format f);

void st__rag_text_free(st__rag_text *t);
/* Appends n bytes whose first byte sits on source line line; with advance,
 * each '\n' moves to the next source line (a text file), else every byte
 * maps to line (a JSONL record). '\r' before '\n' is dropped. */
st_status st__rag_text_put(st__rag_text *t, const char *s, size_t n, int32_t line, bool advance);
/* Ends the paragraph: the text ends with a blank line afterwards (nothing
 * when the text is empty or already ends so). */
st_status st__rag_text_para(st__rag_text *t);

/* Extracts the text of data[0..n) (the file's bytes) in format f into *out
 * (zero it first; free with st__rag_text_free even on failure). name labels
 * messages. max_text_bytes bounds the extracted text (0: 256 MiB).
 * Errors: ST_ERR_FORMAT (binary: a NUL byte; not UTF-8 at byte N; a file
 * that is not of its format; no text at all), ST_ERR_BOUNDS (the text is
 * over the limit), ST_ERR_NOMEM. The message names the file and the fault. */
st_status st__rag_extract(st__rag_format f, const void *data, size_t n, const char *name,
                          size_t max_text_bytes, st__rag_text *out);

/* ---- words and chunks ------------------------------------------------------------ */

/* The word tokenizer of the hashed embedder and of chunk sizes without a
 * model: a token is a maximal run of ASCII letters and digits or of bytes
 * >= 0x80 (non-ASCII letters stay whole), lowercased; every other byte
 * separates. Calls fn for each token (tok NUL-terminated, at most 63 bytes:
 * longer runs are cut). Returns the number of tokens. */
typedef void (*st__rag_word_fn)(void *user, const char *tok, size_t n);
int64_t st__rag_words(const char *s, size_t n, st__rag_word_fn fn, void *user);

/* Token count of a span (of a whitespace-separated word): the word
 * tokenizer's count, or a model tokenizer's. */
typedef int (*st__rag_count_fn)(void *user, const char *s, size_t n);

typedef struct st__rag_chunk {
    int64_t off, len;              /* byte range in the extracted text */
    int32_t line_start, line_end;  /* source lines, 1-based, inclusive */
    int32_t n_tokens;
} st__rag_chunk;

/* Cuts t into chunks of at most chunk_tokens tokens sharing about
 * overlap_tokens with the previous one. Units are whitespace-separated
 * words; a chunk ends preferably at a paragraph boundary (when that keeps
 * it at least half full), else at a sentence boundary (after '.', '!', '?'
 * or a line end; when that keeps it a quarter full), else between words. The
 * overlap is the longest run of whole sentences ending the previous chunk
 * within overlap_tokens, else the words that fit. count NULL: the word
 * tokenizer. *chunks is st_malloc'd. Errors: ST_ERR_INVALID_ARG
 * (chunk_tokens < 1, overlap outside [0, chunk_tokens)), ST_ERR_NOMEM. */
st_status st__rag_chunk_text(const st__rag_text *t, int chunk_tokens, int overlap_tokens,
                             st__rag_count_fn count, void *count_user, st__rag_chunk **chunks,
                             int64_t *n_chunks);

/* The hashed bag-of-words embedding: word tokens (above) minus a short
 * English stop-word list, lightly stemmed (plural -s/-es/-ies, -ing, -ed);
 * features: each stem (weight 1), each pair of adjacent stems (0.25) and
 * the character trigrams of stems of 4+ bytes with '<' '>' at the ends
 * (0.1 each: "openblas" meets "blas"). Each feature is hashed with CRC-32
 * (zlib) to a bucket (crc % dim) and a sign (the top bit); bucket values
 * are scaled sublinearly (sign(v) * log(1 + |v|)) and the vector is
 * L2-normalised (all zeros when the text has no token). Deterministic
 * across runs and machines. Queries are further weighted by the index's
 * bucket IDF (rag.c). */
void st__rag_hash_embed(const char *s, size_t n, int dim, float *out);

/* Reciprocal rank fusion of n_lists ranked id lists (lists[i] has lens[i]
 * ids, best first): score(id) = sum of 1 / (rrf_k + rank), rank from 1.
 * Writes at most max_out (id, score) pairs best first (ties: the better
 * best-rank, then the smaller id) and returns how many; -1 on no memory. */
int64_t st__rag_rrf(const int64_t *const *lists, const int64_t *lens, int n_lists, double rrf_k,
                    int64_t max_out, int64_t *ids, double *scores);

/* The citations [n] in text (also "[1, 2]" and "[1][3]"), 1 <= n <= n_max,
 * unique, ascending, into cited (room for n_max). Returns their number. */
int st__rag_parse_citations(const char *text, int n_max, int *cited);

#endif
