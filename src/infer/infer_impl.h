/*
 * infer_impl.h — private to layer 6's inference code (src/infer/, and the
 * llama2.c reader in src/hub/): KV-cache storage access for the engine and
 * the in-memory llama2.c parser the fuzz target drives.
 */
#ifndef STRATA_INFER_IMPL_H
#define STRATA_INFER_IMPL_H

#include "strata/infer.h"

/* K or V rows of one block of one layer: [block_tokens, n_kv_head * hd]. */
float *st__kv_k(st_kv_cache *kv, int layer, int32_t block);
float *st__kv_v(st_kv_cache *kv, int layer, int32_t block);
/* Elements per token row (n_kv_head * hd). */
int64_t st__kv_row(const st_kv_cache *kv);

/* Parses a llama2.c checkpoint held in buf[n] (borrowed: the model's
 * weights point into it, so buf must outlive *out). source names it in
 * messages. */
st_status st__lm_llama2c_from_memory(const void *buf, size_t n, const char *source, st_lm **out);

#endif
