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


/* ---- token shards, dataset ingest and the loader --------------------------
 * [Appended by the L5 ingest work; src/data/shards.c, ingest.c, loader.c;
 * docs/L5-data.md "Ingest, shards and the loader".]
 *
 * A dataset directory (written by st_ingest, read by st_loader) holds:
 *   manifest.json        the manifest (format "strata-token-shards", version 1)
 *   tokenizer.json       the tokenizer, as st_tokenizer_save_json writes it;
 *                        its SHA-256 is the dataset's tokenizer hash
 *   train-000000.bin ... token shards of the train split, in stream order
 *   val-000000.bin ...   token shards of the validation split
 * A split's token stream is the concatenation of its shards in manifest
 * order. While an ingest runs (or after it was interrupted) the directory
 * also holds ingest.journal.json and {train,val}.pending.bin (see st_ingest).
 *
 * Shard file (little-endian), 64-byte header then the tokens:
 *   0  char[8]  magic "STSHARD1"
 *   8  u32      version (1)
 *   12 u32      bytes per token: 2 (uint16, when vocab_size <= 65536) or 4
 *   16 u64      token count n
 *   24 u32      vocab_size (every token is < vocab_size)
 *   28 u32      reserved (0)
 *   32 u8[32]   SHA-256 of the tokenizer (of tokenizer.json's bytes)
 *   64 ...      n tokens; the file is exactly 64 + n * bytes long.
 */
#define ST_SHARD_MAGIC "STSHARD1"
#define ST_SHARD_VERSION 1u
#define ST_SHARD_HEADER_BYTES 64

typedef struct st_shard_info {
    uint32_t version;
    uint32_t token_bytes;          /* 2 or 4 */
    uint64_t n_tokens;
    uint32_t vocab_size;
    uint8_t tokenizer_sha256[32];
} st_shard_info;

/* An open, validated shard: mmap'd (st_shard_open) or borrowed memory
 * (st_shard_open_mem). Immutable; safe to read from several threads. */
typedef struct st_shard st_shard;

/* Writes n ids as a shard at path (temp file, fsync, rename), uint16 when
 * vocab_size <= 65536, else uint32. Every id must be in [0, vocab_size).
 * Errors: ST_ERR_INVALID_ARG (NULL, vocab_size 0, an id out of range: the
 * message gives its index), ST_ERR_IO (names the path), ST_ERR_NOMEM. */
st_status st_shard_write(const char *path, const int32_t *ids, size_t n, uint32_t vocab_size,
                         const uint8_t tokenizer_sha256[32]);
/* Maps and validates a shard: magic, version, token size, that the file
 * size is exactly 64 + n * bytes, and (check_tokens) that every token is
 * below vocab_size (one pass over the file). Errors: ST_ERR_IO (cannot
 * open/map; names the path), ST_ERR_FORMAT (names the path and the fault:
 * bad magic, unknown version, truncated, trailing bytes, token out of
 * range ...), ST_ERR_NOMEM. */
st_status st_shard_open(const char *path, bool check_tokens, st_shard **out);
/* The same over n bytes of memory, which is borrowed (it must outlive the
 * shard); name is used in messages. */
st_status st_shard_open_mem(const void *buf, size_t n, const char *name, bool check_tokens,
                            st_shard **out);
/* Unmaps. NULL is a no-op. */
void st_shard_free(st_shard *sh);
/* The header of an open shard (borrowed, valid while sh lives). */
const st_shard_info *st_shard_get_info(const st_shard *sh);
/* Copies n tokens starting at token `offset` into out as int32.
 * Errors: ST_ERR_BOUNDS (offset + n past the end). */
st_status st_shard_read(const st_shard *sh, uint64_t offset, size_t n, int32_t *out);

/* ---- the manifest (manifest.json) -------------------------------------- */
typedef struct st_manifest_shard {
    char *file;       /* file name inside the dataset directory (no '/') */
    st_split split;
    uint64_t n_tokens;
} st_manifest_shard;

typedef struct st_manifest_source {
    char *path;       /* as given to the ingest (after directory/glob expansion) */
    uint64_t n_bytes;
    char sha256[65];  /* lowercase hex */
    uint64_t n_docs;
    uint64_t n_tokens; /* both splits, separators included */
} st_manifest_source;

/* The manifest in memory. Every string is st_malloc'd and owned by the
 * struct; st_manifest_free frees them. */
typedef struct st_manifest {
    int version;                /* 1 */
    char *tokenizer_name;       /* what --tokenizer named */
    char *tokenizer_file;       /* "tokenizer.json" */
    char tokenizer_sha256[65];
    uint32_t vocab_size;
    uint32_t token_bytes;       /* 2 or 4 */
    int32_t separator_id;       /* id put before each document, -1: none */
    /* ingest parameters */
    char *column;
    double val_fraction;
    uint64_t shard_tokens;
    uint64_t seed;
    /* contents */
    uint64_t n_docs;
    uint64_t n_tokens[2];       /* [ST_SPLIT_TRAIN], [ST_SPLIT_VAL] */
    int n_shards;
    st_manifest_shard *shards;
    int n_sources;
    st_manifest_source *sources;
} st_manifest;

/* Reads DIR/manifest.json or a manifest file (a path ending in ".json").
 * Checks types, ranges, that shard names have no '/', and that the totals
 * agree with the shards. Errors: ST_ERR_IO, ST_ERR_FORMAT (names the file
 * and the key), ST_ERR_NOMEM. */
st_status st_manifest_read(const char *path, st_manifest **out);
/* The same from memory (name is used in messages). */
st_status st_manifest_read_mem(const char *buf, size_t n, const char *name, st_manifest **out);
/* Writes m as JSON (temp file, fsync, rename). Errors: ST_ERR_IO, ST_ERR_NOMEM. */
st_status st_manifest_write(const char *path, const st_manifest *m);
/* NULL is a no-op. */
void st_manifest_free(st_manifest *m);

/* SHA-256 of a file (streamed, any size) as 64 lowercase hex digits + NUL;
 * *n_bytes receives its size. Errors: ST_ERR_IO naming the path. */
st_status st_sha256_file(const char *path, char hex[65], uint64_t *n_bytes);

/* ---- ingest --------------------------------------------------------------
 * Turns text inputs into a dataset directory:
 *   .txt            the whole file is one document
 *   .jsonl          one JSON object per line; the document is the string
 *                   field `column` (blank lines are skipped; a line that is
 *                   not an object, or whose field is missing or not a
 *                   string, is ST_ERR_FORMAT naming file:line)
 *   .csv            RFC 4180 (quoted fields, "" escapes, newlines inside
 *                   quotes, CRLF); the header row names the columns and the
 *                   document is the field of column `column`
 *   .parquet        the string column `column`, when Strata is built with
 *                   the Parquet reader (otherwise ST_ERR_UNSUPPORTED)
 *   a directory     every file with one of those extensions under it,
 *                   recursively, in byte order of the path
 *   a glob pattern  (containing * ? or [) its matches, sorted
 * Inputs are processed in the order given. Document k (counting over all
 * inputs from 0) goes to the validation split when
 * splitmix64(seed, k) / 2^64 < val_fraction, else to train, so a document's
 * split never depends on threads or shard sizes. Each document is preceded
 * by the separator: the tokenizer's BOS when it has one, else its EOS
 * (GPT-2's <|endoftext|>, as nanoGPT's fineweb.py does), else nothing.
 * Text is encoded ordinarily (special-token text stays text).
 *
 * Tokenization runs on the pool's threads (documents are claimed one by one
 * and the results appended in document order), so the bytes written are
 * identical for every thread count. Nothing else runs while it does.
 *
 * Resume: after an input is finished (at most every journal_interval_s
 * seconds) the state is saved: the shards written, the partly filled
 * shard of each split (as {train,val}.pending.bin) and the inputs done with
 * their size and SHA-256, in ingest.journal.json. A rerun with the same
 * inputs and parameters skips the finished inputs whose hash still matches
 * and continues; its output is byte for byte what an uninterrupted run
 * writes. A journal from different parameters or changed inputs is ignored
 * (the ingest starts over, with a warning). The manifest is written last;
 * then the journal and pending files are removed.
 */
typedef struct st_ingest_progress {
    uint64_t bytes_done, bytes_total; /* input bytes */
    uint64_t n_docs, n_tokens;
    int inputs_done, n_inputs;
} st_ingest_progress;

typedef struct st_ingest_params {
    const st_tokenizer *tokenizer; /* borrowed; required */
    const char *tokenizer_name;    /* recorded in the manifest (default "custom") */
    const char *column;            /* jsonl/csv/parquet field (default "text") */
    double val_fraction;           /* in [0, 1); default 0.0005 (nanoGPT's) */
    uint64_t shard_tokens;         /* tokens per shard; default 16777216 (2^24) */
    uint64_t seed;                 /* split hash seed; default 1337 */
    int n_threads;                 /* tokenizer threads; 0: STRATA_THREADS, else all CPUs */
    struct st_pool *pool;          /* borrowed (e.g. st_backend_cpu_pool of a context);
                                      NULL: a pool of n_threads is made for the call */
    double journal_interval_s;     /* min seconds between journal saves; default 2 */
    int stop_after_inputs;         /* > 0: return after this many inputs done in this
                                      call, journal saved, result.complete false (for
                                      tests and incremental runs); default 0 */
    size_t max_doc_bytes;          /* a document longer is ST_ERR_FORMAT; default 1 GiB */
    void (*progress)(void *user, const st_ingest_progress *p); /* optional */
    void *progress_user;
} st_ingest_params;

typedef struct st_ingest_result {
    bool complete;        /* the manifest was written */
    int n_inputs;         /* after expansion */
    int n_inputs_skipped; /* done by an earlier run (journal) */
    uint64_t n_docs;
    uint64_t n_tokens[2];
    int n_shards;
    uint64_t bytes_in;
    double seconds;
} st_ingest_result;

st_ingest_params st_ingest_default_params(void);

/* Ingests n_inputs paths (files, directories, globs) into out_dir (created
 * when missing). Borrows everything. Errors: ST_ERR_INVALID_ARG (no
 * tokenizer, bad parameters, no inputs after expansion, an unsupported file
 * type), ST_ERR_IO (names the path), ST_ERR_FORMAT (names file:line and the
 * fault), ST_ERR_UNSUPPORTED (.parquet without the reader), ST_ERR_NOMEM,
 * errors of st_tokenizer_encode. On an error the last journal saved is
 * kept, so a rerun resumes from it. */
st_status st_ingest(const char *const *inputs, int n_inputs, const char *out_dir,
                    const st_ingest_params *params, st_ingest_result *result);

/* ---- the loader ------------------------------------------------------------
 * Batches of B rows of T+1 int32 ids from a dataset directory's split (the
 * model's input is row[0..T-1], its targets row[1..T]). The shards are
 * mmap'd; a split's stream is their concatenation (rows may span shards).
 *
 * Global batches and ranks: batch i of the run is global batch i of
 * world_size * B rows; rank r takes rows [r*B, (r+1)*B). The global batch
 * is the same for every world_size with the same world_size * B, so
 * distributed training sees the same data as one process with the whole
 * batch.
 *  - ST_LOADER_RANDOM: global row j of batch i starts at a position drawn
 *    uniformly from [0, n - T - 1] by splitmix64 over (seed, split, i, j)
 *    (exactly st_textdata_batch's draw), so batch i is a pure function of
 *    (seed, split, i). No epochs (state.epoch is 0).
 *  - ST_LOADER_SEQUENTIAL: the stream is cut into n_chunks = (n - 1) / T
 *    chunks, chunk c = ids [c*T, c*T + T]; each epoch e visits them in the
 *    order of a seeded bijection of [0, n_chunks) keyed by (seed, split, e)
 *    (a Feistel permutation: no table in memory). An epoch has
 *    floor(n_chunks / (world_size * B)) batches; the chunks of the last,
 *    partial global batch are skipped in that epoch (a different set in
 *    each epoch). Batch i is in epoch i / batches_per_epoch.
 * Prefetch: with prefetch > 0 one background thread fills a ring of that
 * many batches ahead of the consumer (it sleeps while the ring is full; it
 * only copies from the maps, so it does not compete with the compute
 * pool). The batches are identical with and without prefetch.
 *
 * A loader is used by one consumer thread at a time.
 */
typedef enum st_loader_mode { ST_LOADER_RANDOM = 0, ST_LOADER_SEQUENTIAL = 1 } st_loader_mode;

typedef struct st_loader_params {
    st_split split;       /* default ST_SPLIT_TRAIN */
    st_loader_mode mode;  /* default ST_LOADER_RANDOM */
    int batch_size;       /* B, rows per rank (default 12) */
    int block_size;       /* T (default 1024) */
    uint64_t seed;        /* default 1337 */
    int rank, world_size; /* default 0, 1 */
    int prefetch;         /* ring depth; 0: no thread, batches made in next(); default 4 */
    bool check_tokens;    /* scan every token against vocab_size at open; default true */
} st_loader_params;

/* The position of a loader: next_batch is the index of the batch the next
 * st_loader_next returns; epoch = next_batch / batches_per_epoch in
 * sequential mode (0 in random mode). mode and seed are recorded so a
 * restore into a differently configured loader is refused. */
typedef struct st_loader_state {
    st_loader_mode mode;
    uint64_t seed;
    uint64_t epoch;
    uint64_t next_batch;
} st_loader_state;

typedef struct st_loader st_loader;

st_loader_params st_loader_default_params(void);

/* Opens a dataset directory (its manifest.json), maps and validates the
 * shards of the split, and starts the prefetch thread. Errors:
 * ST_ERR_INVALID_ARG (bad params, rank outside [0, world_size)),
 * ST_ERR_IO / ST_ERR_FORMAT (manifest or shards; names the file), ST_ERR_SHAPE
 * (the split has fewer than T+1 tokens, or in sequential mode fewer chunks
 * than one global batch: the message gives the counts), ST_ERR_NOMEM. */
st_status st_loader_new(const char *dir, const st_loader_params *params, st_loader **out);
/* Stops the prefetch thread and unmaps. NULL is a no-op. */
void st_loader_free(st_loader *l);

/* The next batch into out (B*(T+1) ids); *wait_s (optional) receives the
 * seconds this call waited for data (with prefetch 0: the time to make the
 * batch). Errors: ST_ERR_INVALID_ARG, ST_ERR_INTERNAL (the prefetch thread
 * failed; the message says why). */
st_status st_loader_next(st_loader *l, int32_t *out, double *wait_s);
/* Batch `index` of this rank computed directly (no ring, no state change):
 * what st_loader_next returns when the state's next_batch is index. */
st_status st_loader_batch(const st_loader *l, uint64_t index, int32_t *out);

/* Total seconds st_loader_next has waited, and the number of batches it
 * returned, since the loader was created. */
double st_loader_wait_s(const st_loader *l);
uint64_t st_loader_n_batches(const st_loader *l);
/* Tokens in the loader's split; vocabulary size of the dataset. */
uint64_t st_loader_n_tokens(const st_loader *l);
uint32_t st_loader_vocab_size(const st_loader *l);
/* Batches per epoch (sequential mode; 0 in random mode). */
uint64_t st_loader_batches_per_epoch(const st_loader *l);

void st_loader_get_state(const st_loader *l, st_loader_state *st);
/* Moves the loader to st (drops prefetched batches). Errors:
 * ST_ERR_INVALID_ARG (a mode or seed other than the loader's). */
st_status st_loader_set_state(st_loader *l, const st_loader_state *st);
/* The state as a JSON object {"mode": "random"|"sequential", "seed": S,
 * "epoch": E, "next_batch": N} (st_malloc'd text; the seed as a decimal
 * string so 64-bit values survive JSON readers), and back. Parse errors:
 * ST_ERR_FORMAT naming `source` and the key. */
st_status st_loader_state_to_json(const st_loader_state *st, char **json);
st_status st_loader_state_from_json(const char *json, size_t n, const char *source,
                                    st_loader_state *st);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_DATA_H */
