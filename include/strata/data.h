/*
 * strata/data.h — layer 5: training data in memory.
 *
 * A text corpus tokenized once into i32 ids and split like nanoGPT's
 * prepare.py: the first train_frac of the ids train, the rest validate.
 * Batches are drawn with a counter-based RNG: batch i of a split depends
 * only on (seed, split, i), never on what was drawn before, so a run
 * resumed at step k draws exactly the batches it would have drawn.
 *
 * A st_textdata is immutable after creation; st_textdata_batch may be called
 * from several threads at once.
 */
#ifndef STRATA_DATA_H
#define STRATA_DATA_H

#include "strata/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum st_split { ST_SPLIT_TRAIN = 0, ST_SPLIT_VAL = 1 } st_split;

typedef struct st_textdata st_textdata;

/* Reads a whole text file (at most max_bytes; 0: 1 GiB) into an st_malloc'd
 * NUL-terminated buffer. Errors: ST_ERR_IO (names the path), ST_ERR_FORMAT
 * (over the limit), ST_ERR_NOMEM. */
st_status st_text_read_file(const char *path, size_t max_bytes, char **text, size_t *n_bytes);

/* Tokenizes n_bytes of text with tok (ordinary encoding, no BOS) and splits
 * the ids: the first floor(train_frac * n) train, the rest validate
 * (train_frac in (0, 1]; 0.9 is nanoGPT's). source names the text in
 * messages. Borrows text and tok for the call only.
 * Errors: ST_ERR_INVALID_ARG, errors of st_tokenizer_encode, ST_ERR_NOMEM. */
st_status st_textdata_new(const st_tokenizer *tok, const char *text, size_t n_bytes,
                          double train_frac, const char *source, st_textdata **out);
/* NULL is a no-op. */
void st_textdata_free(st_textdata *d);

/* Tokens in a split. */
int64_t st_textdata_n_tokens(const st_textdata *d, st_split split);
/* The ids of a split (borrowed, valid while d lives). */
const int32_t *st_textdata_tokens(const st_textdata *d, st_split split);

/* Batch `index` of a split: B rows of T+1 consecutive ids each, row b
 * starting at a position drawn uniformly from [0, n - T - 1] by a
 * counter-based hash of (seed, split, index, b). out holds B*(T+1) ids:
 * the model's input is out[b][0..T-1], its targets out[b][1..T].
 * Errors: ST_ERR_INVALID_ARG (B or T < 1, NULL), ST_ERR_SHAPE (the split
 * has fewer than T+1 tokens; the message says how many there are). */
st_status st_textdata_batch(const st_textdata *d, st_split split, uint64_t seed, uint64_t index,
                            int B, int T, int32_t *out);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_DATA_H */
