/*
 * strata/hub.h — layer 6: model formats on disk.
 *
 * Three things live here (docs/L6-formats.md describes the bytes):
 *  - safetensors, Hugging Face's tensor file: an 8-byte little-endian header
 *    length, a JSON header naming each tensor's dtype, shape and byte range,
 *    then the raw data. The reader maps the file and validates every size
 *    and offset before anything points into it; the writer writes a
 *    temporary file, fsyncs it and renames it into place.
 *  - the native model directory (config.json, model.safetensors,
 *    tokenizer.json, generation_config.json, README.md);
 *  - the training state kept beside a model directory for `strata train
 *    --resume` (train_state.safetensors + train_state.json).
 *
 * Error convention as everywhere (strata/base.h): functions return st_status
 * and leave a message naming the file and the fault in st_last_error().
 * Outside files are never trusted: a malformed file is ST_ERR_FORMAT, never
 * a crash. Handles are not thread-safe unless said otherwise; a reader that
 * is no longer modified may be read from several threads.
 */
#ifndef STRATA_HUB_H
#define STRATA_HUB_H

#include "strata/model.h"
#include "strata/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== safetensors ======================================================== */

/* Most dimensions a safetensors tensor may have here (st_tensor holds 4). */
#define ST_SAFETENSORS_MAX_DIMS 8
/* Largest JSON header accepted (the format's own limit is 100 MB). */
#define ST_SAFETENSORS_MAX_HEADER_BYTES (100u * 1024u * 1024u)

typedef struct st_safetensors st_safetensors;

/* One tensor of an open file. Every pointer is borrowed from the reader and
 * valid until st_safetensors_close. data may be unaligned for the dtype
 * (the format guarantees nothing): copy with memcpy, do not cast. */
typedef struct st_safetensors_tensor {
    const char *name;
    st_dtype dtype;                       /* F32, F16, BF16, I32 or I8 */
    int ndim;                             /* 0 (a scalar) .. ST_SAFETENSORS_MAX_DIMS */
    int64_t shape[ST_SAFETENSORS_MAX_DIMS];
    int64_t numel;                        /* product of shape (1 for a scalar) */
    const void *data;                     /* numel * st_dtype_size(dtype) bytes */
    size_t n_bytes;
} st_safetensors_tensor;

/* Opens and validates a safetensors file, mapping it read-only (the data is
 * not copied). Checks: the header length fits in the file and under
 * ST_SAFETENSORS_MAX_HEADER_BYTES; the header is one JSON object; each
 * entry has a known dtype, a shape of non-negative dims whose byte size does
 * not overflow, data_offsets [begin, end] inside the data section with
 * end - begin equal to that byte size, and no two tensors overlap;
 * "__metadata__", when present, maps strings to strings.
 * On success *out is a handle to close with st_safetensors_close.
 * Errors: ST_ERR_INVALID_ARG, ST_ERR_IO (cannot open or map; names the
 * path), ST_ERR_FORMAT (names the file, the tensor and the fault),
 * ST_ERR_NOMEM. */
st_status st_safetensors_open(const char *path, st_safetensors **out);

/* As st_safetensors_open over n bytes in memory. Borrows buf: it must stay
 * unchanged until the handle is closed. source names the bytes in messages
 * (NULL: "<memory>"). Used by tests and the fuzz target. */
st_status st_safetensors_open_memory(const void *buf, size_t n, const char *source,
                                     st_safetensors **out);

/* Closes the handle and unmaps the file; every pointer it gave out dies.
 * NULL is a no-op. */
void st_safetensors_close(st_safetensors *f);

/* Number of tensors, in the order of their data offsets. */
int st_safetensors_n_tensors(const st_safetensors *f);
/* Tensor i (0 <= i < n) into *out. Errors: ST_ERR_BOUNDS. */
st_status st_safetensors_get(const st_safetensors *f, int i, st_safetensors_tensor *out);
/* Index of the tensor named name, or -1. */
int st_safetensors_find(const st_safetensors *f, const char *name);
/* The path or source the handle was opened with. Borrowed. */
const char *st_safetensors_source(const st_safetensors *f);

/* The "__metadata__" string map: count, i-th pair, lookup by key (NULL when
 * absent). Borrowed, valid until close. */
int st_safetensors_n_metadata(const st_safetensors *f);
void st_safetensors_metadata_at(const st_safetensors *f, int i, const char **key,
                                const char **value);
const char *st_safetensors_metadata(const st_safetensors *f, const char *key);

/* Copies tensor `name` into dst (any dtype st_copy_ converts among: f32,
 * bf16, f16 and i32 to i32), checking that the shapes match exactly (a
 * scalar matches a [1] tensor). Errors: ST_ERR_FORMAT (missing tensor or
 * shape/dtype mismatch; the message names the file, the tensor, both
 * shapes), errors of st_copy_. */
st_status st_safetensors_read_into(const st_safetensors *f, const char *name, st_tensor *dst);

/* One tensor to write: its name and a tensor of any layout (strided views
 * are gathered). Borrowed for the call. */
typedef struct st_safetensors_entry {
    const char *name;
    const st_tensor *tensor;
} st_safetensors_entry;

/* Writes a safetensors file: the JSON header (keys in the given order,
 * "__metadata__" first when n_meta > 0, padded with spaces so the data
 * starts at a multiple of 8) and the tensors' bytes, to a temporary file
 * beside path that is fsynced and renamed over path (then the directory is
 * fsynced): a crash leaves the old file or the new one, never a mix.
 * meta: n_meta key/value pairs as 2*n_meta strings (may be NULL when
 * n_meta is 0). Errors: ST_ERR_INVALID_ARG (NULL, empty or duplicate names,
 * a name "__metadata__", a tensor of ST_I8 with strides), ST_ERR_IO (names
 * the path and the failing call), ST_ERR_NOMEM. */
st_status st_safetensors_save(const char *path, const st_safetensors_entry *entries, int n,
                              const char *const *meta, int n_meta);

/* ==== files ============================================================== */

/* (Whole-file reads: st_text_read_file in strata/data.h.) */
/* Writes n bytes to path through a temporary file, fsync and rename, then
 * fsyncs the directory. Errors: ST_ERR_IO naming the path and the call. */
st_status st_file_write_atomic(const char *path, const void *data, size_t n);

/* ==== native model directory ============================================= */

/* What the model card (README.md) says beyond the configuration. Every field
 * may be NULL / negative / NaN when unknown. Borrowed for the call. */
typedef struct st_model_card {
    const char *name;           /* title; default: the directory's name */
    const char *training_data;  /* e.g. "tinyshakespeare.txt (1.1 MB, char-level)" */
    const char *description;    /* free text, Markdown */
    int64_t step;               /* optimizer steps trained (-1: unknown) */
    int64_t tokens_seen;        /* training tokens seen (-1: unknown) */
    double train_loss;          /* final losses (NaN: unknown) */
    double val_loss;
} st_model_card;

/* An empty card: NULL strings, -1 counts, NaN losses. */
st_model_card st_model_card_default(void);

/* Saves a model directory at dir: config.json (st_model_config_to_json),
 * model.safetensors (the model's tensors under their HF names, f32, with
 * metadata "format": "pt", "strata.step"), tokenizer.json (when tok is not
 * NULL), generation_config.json and README.md (model card with YAML front
 * matter). When dir does not exist the files are written into a temporary
 * directory beside it that is renamed into place; when it exists (a
 * checkpoint over the previous one) each file is replaced atomically and
 * other files in dir are left alone. card may be NULL.
 * Errors: ST_ERR_INVALID_ARG, ST_ERR_IO (names the path), ST_ERR_NOMEM. */
st_status st_modeldir_save(const char *dir, const st_model *m, const st_tokenizer *tok,
                           const st_model_card *card);

/* Loads a model directory: config.json -> a new model on ctx whose weights
 * are copied from model.safetensors (every model tensor must be present
 * with its exact shape; a file tensor the model lacks is an error too), and,
 * when tok is not NULL, tokenizer.json -> *tok. The model is in eval mode
 * and its parameters require grad (as st_model_new makes them).
 * On failure nothing is returned (*model, *tok NULL).
 * Errors: ST_ERR_IO (a missing file; names it), ST_ERR_FORMAT (corrupt or
 * truncated files, a missing or mismatched tensor: names the file and the
 * tensor), ST_ERR_UNSUPPORTED (model_type), errors of st_model_new. */
st_status st_modeldir_load(st_ctx *ctx, const char *dir, st_model **model, st_tokenizer **tok);

/* The "strata.step" recorded in dir/model.safetensors' metadata, or -1. */
int64_t st_modeldir_step(const char *dir);

/* ==== training state (resume) ============================================ */

/* The scalar part of a training run's state. Fields are copied on save; on
 * load config_json is st_malloc'd (free with st_train_state_clear). */
typedef struct st_train_state {
    int64_t step;          /* optimizer steps completed */
    uint64_t seed;         /* the run's seed: batches and dropout derive from (seed, step) */
    int64_t tokens_seen;   /* training tokens consumed (B*T per step) */
    double elapsed_s;      /* training wall time so far (excluding restarts) */
    char *config_json;     /* the training configuration, one JSON object (may be NULL) */
    char *data_path;       /* the training text (may be NULL) */
    int64_t data_bytes;    /* its size, checked on resume (-1: unknown) */
    st_lr_schedule schedule;
} st_train_state;

void st_train_state_clear(st_train_state *s);

/* Writes dir/train_state.safetensors (the optimizer's state tensors under
 * their st_optim_state names, metadata "strata.step") and then
 * dir/train_state.json (the fields above plus "optim_step"), each
 * atomically; train_state.json is written last and is the commit record.
 * Errors: ST_ERR_INVALID_ARG, ST_ERR_IO, ST_ERR_NOMEM. */
st_status st_train_state_save(const char *dir, const st_optim *o, const st_train_state *s);

/* Reads dir/train_state.json into *s and, when o is not NULL, copies the
 * moments of train_state.safetensors into o's state tensors and restores its
 * step count. Checks that the step of train_state.safetensors and of
 * dir/model.safetensors equal the JSON's step (a torn checkpoint is
 * ST_ERR_FORMAT). Errors: ST_ERR_IO (missing file), ST_ERR_FORMAT,
 * ST_ERR_NOMEM. On failure *s is cleared. */
st_status st_train_state_load(const char *dir, st_optim *o, st_train_state *s);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_HUB_H */
