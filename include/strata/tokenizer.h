/*
 * strata/tokenizer.h — layer 5: text <-> token ids.
 *
 * One handle type for every tokenizer kind Strata reads:
 *  - character-level, built from a corpus (each distinct UTF-8 character of
 *    the corpus is a token, ids in order of first code point value);
 *  - byte-level BPE: GPT-2's encoder.json + vocab.bpe, Hugging Face
 *    tokenizer.json (model "BPE" with the ByteLevel pre-tokenizer), and
 *    .tiktoken rank files (cl100k_base) with their pre-tokenization regex;
 *  - llama2.c tokenizer.bin (SentencePiece-style scores, byte fallback).
 * Encoding is "ordinary" unless special tokens are allowed: special-token
 * text is encoded as plain text (tiktoken's encode_ordinary).
 *
 * A tokenizer is immutable after load and safe to use from several threads.
 */
#ifndef STRATA_TOKENIZER_H
#define STRATA_TOKENIZER_H

#include "strata/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_tokenizer st_tokenizer;

typedef enum st_tokenizer_kind {
    ST_TOK_CHAR = 0,
    ST_TOK_BPE = 1,        /* byte-level BPE (GPT-2, HF tokenizer.json, tiktoken) */
    ST_TOK_SENTENCEPIECE = 2, /* llama2.c tokenizer.bin */
} st_tokenizer_kind;

/* Loads by path: a tokenizer.json, a .tiktoken file, a llama2.c
 * tokenizer.bin, or a folder holding encoder.json + vocab.bpe (or a
 * tokenizer.json). Names "gpt2" and "cl100k_base" are looked up in
 * STRATA_DATA_DIR (default: the data/ folder of the installation).
 * [Implementation notes, appended by the L5 tokenizer work: the default data
 * folder is "./data" (the current directory's data/); "cl100k" is an alias of
 * "cl100k_base", and "tok512" (alias "stories260K") names
 * stories260K/tok512.bin. A .tiktoken whose file name contains "cl100k" gets
 * cl100k's special tokens and regex; "r50k"/"gpt2" GPT-2's; other names
 * cl100k's regex and no specials. Files are capped at 1 GiB.]
 * Errors: ST_ERR_IO (cannot open; message names the path), ST_ERR_FORMAT
 * (malformed; message names the file and the fault), ST_ERR_NOMEM. */
st_status st_tokenizer_load(const char *path_or_name, st_tokenizer **out);

/* Character-level tokenizer from a UTF-8 corpus (invalid UTF-8 is
 * ST_ERR_FORMAT naming the byte offset). */
st_status st_tokenizer_char_from_corpus(const char *text, size_t n_bytes, st_tokenizer **out);

/* Trains a byte-level BPE tokenizer (GPT-2 pre-tokenization) with
 * vocab_size >= 256 tokens (256 byte tokens first, then merges). */
st_status st_tokenizer_train_bpe(const char *text, size_t n_bytes, int vocab_size,
                                 st_tokenizer **out);

void st_tokenizer_free(st_tokenizer *tok);

st_tokenizer_kind st_tokenizer_get_kind(const st_tokenizer *tok);
int st_tokenizer_vocab_size(const st_tokenizer *tok); /* including special tokens */
/* Id of a special token such as "<|endoftext|>", or -1. */
int st_tokenizer_special_id(const st_tokenizer *tok, const char *text);
int st_tokenizer_bos_id(const st_tokenizer *tok); /* -1 when none */
int st_tokenizer_eos_id(const st_tokenizer *tok); /* -1 when none */

typedef struct st_encode_opts {
    bool allow_special; /* special-token text becomes its id */
    bool add_bos;       /* prepend BOS when the tokenizer has one */
} st_encode_opts;

/* Encodes n_bytes of UTF-8 text. *ids is allocated with st_malloc (the
 * caller frees it with st_free); *n_ids receives the count. Errors:
 * ST_ERR_FORMAT (a character the tokenizer cannot represent, char-level
 * only: message names the character and its byte offset), ST_ERR_NOMEM. */
st_status st_tokenizer_encode(const st_tokenizer *tok, const char *text, size_t n_bytes,
                              const st_encode_opts *opts, int32_t **ids, size_t *n_ids);

/* Decodes ids to bytes (st_malloc'd, NUL-terminated; *n_bytes excludes the
 * NUL). Errors: ST_ERR_BOUNDS (an id outside the vocabulary).
 * [Appended: for SENTENCEPIECE, BOS and EOS ids produce no text and the
 * leading space of the first piece (after BOS or at the start) is dropped,
 * like llama2.c's run.c and SentencePiece, so decode(encode(text)) == text.
 * Byte-level BPE and char decode concatenate the pieces exactly (special
 * tokens give their text). Invalid UTF-8 given to a BPE tokenizer is encoded
 * byte by byte and decodes back exactly.] */
st_status st_tokenizer_decode(const st_tokenizer *tok, const int32_t *ids, size_t n_ids,
                              char **text, size_t *n_bytes);
/* The bytes of one token (not NUL-terminated), for streaming output;
 * NULL for an id outside the vocabulary. Valid while tok lives. */
const char *st_tokenizer_piece(const st_tokenizer *tok, int32_t id, size_t *n_bytes);

/* Writes a Hugging Face tokenizer.json (temp file, fsync, rename).
 * Every kind can be written; loading it back gives the same encoding. */
st_status st_tokenizer_save_json(const st_tokenizer *tok, const char *path);

/* ---- token lists (GGUF's tokenizer.ggml.* metadata), appended by the L6
 * formats work; src/data/tokenizer_vocab.c ------------------------------------ */

/* A SentencePiece tokenizer (llama2.c's rules) from n pieces in
 * SentencePiece form (U+2581 for a space, "<0xNN>" byte tokens; at least
 * <unk>, <s>, </s> and the 256 byte tokens), their scores (NULL: 0) and the
 * bos/eos ids (-1: llama2.c's 1 and 2). Borrows everything; name is used in
 * messages. Errors: ST_ERR_FORMAT, ST_ERR_INVALID_ARG, ST_ERR_NOMEM. */
st_status st_tokenizer_from_sp_pieces(int n, const char *const *pieces, const size_t *lens,
                                      const float *scores, int bos_id, int eos_id,
                                      const char *name, st_tokenizer **out);
/* A byte-level BPE tokenizer (GPT-2's rules and regex; "<|endoftext|>" is
 * the special bos/eos when present) from n tokens in GPT-2's printable byte
 * form (NULL entries: absent ids) and n_merges "a b" merges in rank order.
 * Borrows everything. Errors: ST_ERR_FORMAT (duplicate tokens, a bad
 * merge), ST_ERR_INVALID_ARG, ST_ERR_NOMEM. */
st_status st_tokenizer_from_bpe_lists(int n, const char *const *tokens, const size_t *lens,
                                      int n_merges, const char *const *merges,
                                      const size_t *merge_lens, const char *name,
                                      st_tokenizer **out);
/* Token id of a SentencePiece tokenizer in SentencePiece form: *out is
 * st_malloc'd (NUL-terminated, *n bytes; the caller frees it); score and
 * gguf_type (llama.cpp's: 1 normal, 2 unknown, 3 control, 6 byte) may be
 * NULL. Errors: ST_ERR_INVALID_ARG (another kind, id out of range). */
st_status st_tokenizer_sp_piece(const st_tokenizer *tok, int32_t id, char **out, size_t *n,
                                float *score, int *gguf_type);
/* Token id of a byte-level BPE tokenizer in GPT-2's printable form
 * (specials as their text), st_malloc'd; *out = NULL for an absent id. */
st_status st_tokenizer_bpe_token(const st_tokenizer *tok, int32_t id, char **out);
/* The merges of a byte-level BPE tokenizer as "a b" strings in rank order:
 * *out is an st_malloc'd array of *n st_malloc'd strings (free each, then
 * the array). */
st_status st_tokenizer_bpe_merges(const st_tokenizer *tok, char ***out, int *n);
/* An independent copy (SentencePiece and GPT-2 byte-level BPE through the
 * lists above; other kinds through a tokenizer.json in a private temporary
 * directory). Errors: ST_ERR_IO, those of the loaders, ST_ERR_NOMEM. */
st_status st_tokenizer_clone(const st_tokenizer *tok, st_tokenizer **out);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_TOKENIZER_H */
