/*
 * strata/infer.h — layer 6: the inference engine.
 *
 * Three parts:
 *  - st_lm: a language model's weights laid out for inference (no tape, no
 *    gradients): the gpt2 or llama configuration, per-layer weight matrices
 *    (st_wmatrix: f32, f16, bf16, q8_0 or q4_0), norm weights and biases in
 *    f32, and the tokenizer when the source carries one. Loaded from a
 *    native / Hugging Face model directory, a llama2.c checkpoint or a GGUF
 *    file; written as GGUF or a model directory (src/hub/ does the bytes).
 *  - st_engine: runs an st_lm over a batch of sequences of different
 *    lengths with a paged KV cache (fixed-size blocks from one pool, a block
 *    table per sequence, blocks reference-counted so that sequences can share
 *    a prompt prefix). Prefill goes through matrix-matrix products, decode
 *    through matrix-vector products.
 *  - st_sampler: greedy, temperature, top-k, top-p, min-p, penalties, seeded.
 *
 * Matrix layout: [out, in] row-major (strata/quant.h). RoPE pairs follow
 * st_lm.rope: llama2.c and GGUF files use ST_ROPE_INTERLEAVED, Strata's and
 * Hugging Face's llama use ST_ROPE_HALF; converters permute the q/k rows
 * when they change the convention, as llama.cpp's converter does.
 *
 * Threads: an st_lm is immutable once loaded and may be shared. An
 * st_engine (and its KV cache) is driven by one thread at a time; its
 * products run over the context's pool.
 */
#ifndef STRATA_INFER_H
#define STRATA_INFER_H

#include "strata/model.h"
#include "strata/quant.h"
#include "strata/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== weights ============================================================ */

/* One transformer block. Norm weights/biases and linear biases are f32
 * arrays (NULL when the model has none: llama has no biases, RMSNorm has no
 * bias). Shapes (hd = n_embd / n_head):
 *   wq [n_head*hd, n_embd], wk/wv [n_kv_head*hd, n_embd], wo [n_embd, n_head*hd]
 *   llama: w_gate, w_up [n_ff, n_embd], w_down [n_embd, n_ff]
 *   gpt2:  w_up = c_fc [n_ff, n_embd], w_down = mlp.c_proj [n_embd, n_ff],
 *          w_gate unused (data NULL); GELU (tanh) between them. */
typedef struct st_lm_layer {
    const float *ln1_w, *ln1_b;   /* [n_embd] attention norm */
    st_wmatrix wq, wk, wv, wo;
    const float *bq, *bk, *bv, *bo;
    const float *ln2_w, *ln2_b;   /* [n_embd] MLP norm */
    st_wmatrix w_gate, w_up, w_down;
    const float *b_up, *b_down;   /* gpt2 */
} st_lm_layer;

typedef struct st_lm {
    st_model_config cfg;          /* arch, sizes, norm_eps, rope_theta, bias, tie */
    st_rope_kind rope;            /* llama only */
    st_wmatrix tok_embd;          /* [vocab, n_embd] */
    const float *pos_embd;        /* gpt2: [n_ctx, n_embd]; NULL for llama */
    st_lm_layer *layers;          /* cfg.n_layer entries */
    const float *lnf_w, *lnf_b;   /* [n_embd] final norm */
    st_wmatrix lm_head;           /* [vocab, n_embd]; the tok_embd bytes when tied */
    st_tokenizer *tok;            /* owned; NULL when the source has none */
    int32_t bos_id, eos_id;       /* -1 when unknown */
    char *source;                 /* path loaded from (owned; may be NULL) */

    /* Storage the pointers above point into; freed by st_lm_free. */
    void **bufs;                  /* st_malloc'd buffers */
    int n_bufs, cap_bufs;
    void *slabs;                  /* weight slabs (lm.c), a list */
    char *slab;                   /* the newest slab's free part */
    size_t slab_left, slab_next;  /* its bytes, and the size of the next slab */
    void *map;                    /* a read-only mapping (GGUF), or NULL */
    size_t map_bytes;
} st_lm;

/* An empty model (layers allocated for cfg->n_layer, zeroed; no weights).
 * Loaders fill it. Errors: ST_ERR_INVALID_ARG, ST_ERR_NOMEM. */
st_status st_lm_new_empty(const st_model_config *cfg, st_lm **out);
/* bytes of 64-byte-aligned storage owned by lm (freed with it); NULL with
 * ST_ERR_NOMEM recorded on failure. Consecutive calls are laid out one
 * after another in slabs backed by transparent huge pages where the kernel
 * grants them (decode streams every weight once per token; see lm.c). */
void *st_lm_alloc(st_lm *lm, size_t bytes);
/* Frees the storage, the mapping, the tokenizer and the struct. NULL: no-op. */
void st_lm_free(st_lm *lm);
/* Gives every q8_0 / q4_0 matrix of the layers and the head that has none a packed
 * form (st_wmatrix_pack) in lm's own storage: as many bytes again as those
 * matrices. The row-major bytes stay (embedding rows, other kernels). An
 * engine packs on its own (st_engine_params.no_pack); this is for callers
 * of st_wmatrix_matmul on lm's matrices. Errors: ST_ERR_NOMEM,
 * ST_ERR_INVALID_ARG. */
st_status st_lm_pack(st_lm *lm);
/* Whether some q8_0 / q4_0 matrix of the layers or the head has no packed form. */
bool st_lm_needs_pack(const st_lm *lm);
/* Checks every matrix and array against cfg (present, shapes, row_bytes,
 * types). source names the file in messages. Errors: ST_ERR_FORMAT. */
st_status st_lm_validate(const st_lm *lm, const char *source);
/* Bytes of all weights (what one decode step reads). */
size_t st_lm_weight_bytes(const st_lm *lm);

/* Copies the weights of a training model (f32, rope ST_ROPE_HALF; gpt2
 * Conv1D [in, out] weights transposed to [out, in]). Borrows m for the
 * call. Errors: ST_ERR_NOMEM, ST_ERR_STATE (a tensor that is not f32). */
st_status st_lm_from_model(const st_model *m, st_lm **out);

/* Loads a model reference: a directory (config.json + model.safetensors
 * [+ tokenizer.json]), a .gguf file, or a llama2.c checkpoint (legacy or
 * version-1 header). tokenizer_path (may be NULL) loads a tokenizer for
 * sources without one (llama2.c's tokenizer.bin) or replaces the source's.
 * Errors: ST_ERR_IO (names the path), ST_ERR_FORMAT (names the file and the
 * fault), ST_ERR_UNSUPPORTED, ST_ERR_NOMEM. */
st_status st_lm_load(st_ctx *ctx, const char *path, const char *tokenizer_path, st_lm **out);
/* llama2.c: legacy header (7 int32: dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size (negative: untied classifier), seq_len) or the
 * version-1 header (magic "ak42", version 1). Every size is checked against
 * the file's length before a byte is read. */
st_status st_lm_load_llama2c(const char *path, st_lm **out);

/* ==== paged KV cache ===================================================== */

typedef struct st_kv_cache st_kv_cache;

typedef struct st_kv_params {
    int block_tokens;   /* tokens per block (default 16) */
    int64_t n_blocks;   /* blocks in the pool (0: enough for one n_ctx sequence) */
} st_kv_params;
st_kv_params st_kv_default_params(void);

/* A sequence's view of the cache: its block table and how many tokens it
 * holds. Zero-initialize before first use; release with st_kv_seq_release. */
typedef struct st_kv_seq {
    int32_t *blocks;    /* block ids, st_malloc'd */
    int n_blocks, cap_blocks;
    int64_t n_tokens;   /* tokens whose K and V are stored */
} st_kv_seq;

st_status st_kv_cache_new(const st_lm *lm, const st_kv_params *p, st_kv_cache **out);
void st_kv_cache_free(st_kv_cache *kv);
int st_kv_block_tokens(const st_kv_cache *kv);
int64_t st_kv_n_blocks(const st_kv_cache *kv);
int64_t st_kv_n_free(const st_kv_cache *kv);
/* Makes room for n_tokens more tokens in seq: allocates blocks, and copies
 * a shared (refcount > 1) last block before it is written (copy-on-write).
 * Errors: ST_ERR_NOMEM when the pool has too few free blocks (nothing is
 * allocated then). */
st_status st_kv_seq_reserve(st_kv_cache *kv, st_kv_seq *seq, int64_t n_tokens);
/* dst shares src's first n_tokens (whole blocks are shared by reference,
 * refcounts incremented): prefix sharing. dst must be empty. */
st_status st_kv_seq_fork(st_kv_cache *kv, const st_kv_seq *src, int64_t n_tokens, st_kv_seq *dst);
/* Drops seq's references (blocks whose count reaches 0 return to the pool)
 * and empties it. */
void st_kv_seq_release(st_kv_cache *kv, st_kv_seq *seq);
/* Keeps seq's first n_tokens (0 <= n_tokens <= seq->n_tokens) and drops
 * the blocks past them (rollback, preemption). Errors: ST_ERR_INVALID_ARG. */
st_status st_kv_seq_truncate(st_kv_cache *kv, st_kv_seq *seq, int64_t n_tokens);
/* Blocks st_kv_seq_reserve(kv, seq, n_tokens) would take from the pool
 * (new blocks plus a copy-on-write copy), so that a scheduler can admit a
 * batch only when all of it fits. */
int64_t st_kv_seq_blocks_needed(const st_kv_cache *kv, const st_kv_seq *seq, int64_t n_tokens);
/* A block's reference count (0: free); -1 for an id outside the pool. */
int32_t st_kv_block_refcount(const st_kv_cache *kv, int32_t block);
/* Bytes of K and V storage per block (all layers), and of the whole pool. */
size_t st_kv_block_bytes(const st_kv_cache *kv);
/* Block reference counting for caches above the engine (prefix caches):
 * a block held by a prefix cache stays out of the pool until unref'd.
 * Ids outside the pool, or unref of a free block, are programming errors
 * (ST_ASSERT). */
void st_kv_block_ref(st_kv_cache *kv, int32_t block);
void st_kv_block_unref(st_kv_cache *kv, int32_t block);

/* ==== engine ============================================================= */

typedef struct st_engine st_engine;

typedef struct st_engine_params {
    st_kv_params kv;
    int max_batch_tokens; /* tokens per forward call (prefill is chunked to it); default 512 */
    /* true: read q8_0 / q4_0 weights row-major as stored. Default false: where the
     * context's kernels read packed weights (st_wmatrix_packs), the engine
     * keeps a packed copy of every q8_0 / q4_0 matrix (as many bytes again
     * as those weights) and decodes 1.1-2x faster (docs/L6).
     * st_engine_default_params sets it when STRATA_PACK=0. */
    bool no_pack;
} st_engine_params;
st_engine_params st_engine_default_params(void);

/* Borrows ctx and lm (both must outlive the engine). Errors: ST_ERR_NOMEM,
 * ST_ERR_INVALID_ARG. */
st_status st_engine_new(st_ctx *ctx, const st_lm *lm, const st_engine_params *p,
                        st_engine **out);
void st_engine_free(st_engine *e);
st_kv_cache *st_engine_kv(st_engine *e);
const st_lm *st_engine_lm(const st_engine *e);

/* One sequence's part of a batched forward: tokens to append after its
 * cached ones (positions seq->n_tokens ..). Outputs (each may be NULL):
 *  logits      [vocab]               of the last appended token
 *  logits_all  [n_tokens, vocab]     of every appended token (perplexity)
 *  hidden_sum  [n_embd]              final-norm hidden states of the
 *                                    appended tokens, added (embeddings) */
typedef struct st_engine_seq {
    st_kv_seq *seq;
    const int32_t *tokens;
    int n_tokens;
    float *logits;
    float *logits_all;
    float *hidden_sum;
} st_engine_seq;

/* Runs the model over all sequences' new tokens in one pass (sequences of
 * different lengths; prefill and decode mixed), storing their K and V in
 * the cache (reserving blocks first: on ST_ERR_NOMEM no sequence changed).
 * Errors: ST_ERR_BOUNDS (a token outside the vocabulary, a position past
 * n_ctx), ST_ERR_NOMEM (KV blocks), ST_ERR_INVALID_ARG. */
st_status st_engine_forward(st_engine *e, st_engine_seq *seqs, int n_seqs);

/* ==== chat templates (src/infer/chat_template.c) ========================== */

/* One chat message. Strings are borrowed by the functions below. */
typedef struct st_chat_message {
    char *role;    /* "system", "user", "assistant" (or "developer", "tool": kept) */
    char *content; /* text parts joined */
} st_chat_message;

typedef enum st_chat_template {
    ST_CHAT_CHATML = 0, /* <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n */
    ST_CHAT_LLAMA2 = 1, /* <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] ... */
    ST_CHAT_PLAIN = 2,  /* SYSTEM:\n...\n\nUSER:\n...\n\nASSISTANT:\n (char-level models) */
} st_chat_template;

/* Picks the template from a tokenizer configuration's "chat_template"
 * (Jinja text; recognized by its markers, since Strata runs no Jinja) or,
 * when there is none (NULL), from the architecture: llama -> Llama-2,
 * otherwise ChatML. */
st_chat_template st_chat_template_detect(const char *chat_template_text, bool llama);
/* The template a model is chatted with: PLAIN for character-level
 * tokenizers (their vocabulary lacks the other templates' markers), else
 * st_chat_template_detect(chat_template_text, lm is llama). */
st_chat_template st_chat_template_for(const st_lm *lm, const st_tokenizer *tok,
                                      const char *chat_template_text);
/* The "chat_template" text of MODEL_DIR/tokenizer_config.json (st_malloc'd),
 * or NULL when the file, the key or the directory is absent. */
char *st_chat_template_read(const char *model_dir);
const char *st_chat_template_name(st_chat_template t);
/* Renders messages into the prompt text (st_malloc'd), ending with the
 * opening of the assistant's turn. Llama-2's BOS is left to the tokenizer
 * (add_bos); its later turns carry "</s><s>" as text. Errors: ST_ERR_NOMEM. */
st_status st_chat_template_render(st_chat_template t, const st_chat_message *msgs, int n,
                                  char **out);
/* The stop string the template ends an assistant turn with ("<|im_end|>"
 * for ChatML, a blank line for PLAIN; NULL for Llama-2, which ends with EOS). */
const char *st_chat_template_stop(st_chat_template t);

/* ==== sampling =========================================================== */

typedef struct st_sampler_params {
    float temperature;        /* 0: greedy (argmax, lowest id on ties) */
    int top_k;                /* 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 1: off (CTRL / llama.cpp style) */
    float frequency_penalty;  /* 0: off (OpenAI) */
    float presence_penalty;   /* 0: off (OpenAI) */
    uint64_t seed;
} st_sampler_params;
st_sampler_params st_sampler_default_params(void);

typedef struct st_token_logprob {
    int32_t id;
    float logprob;  /* log-softmax of the logits after penalties, before temperature */
} st_token_logprob;

typedef struct st_sampler st_sampler;
/* Errors: ST_ERR_INVALID_ARG (temperature < 0, top_p outside (0, 1], ...). */
st_status st_sampler_new(const st_sampler_params *p, int vocab_size, st_sampler **out);
void st_sampler_free(st_sampler *s);
/* Picks the next token from logits[vocab] (overwritten as scratch) given
 * the ids so far (history, for penalties). chosen (may be NULL) gets the
 * chosen token's log-probability; top (may be NULL) gets the n_top most
 * likely tokens. The seed and the number of calls determine the draw. */
st_status st_sampler_sample(st_sampler *s, float *logits, const int32_t *history,
                            int64_t n_history, int32_t *token, st_token_logprob *chosen,
                            st_token_logprob *top, int n_top);

/* ==== generation loop ==================================================== */

/* Why a generation ended. */
typedef enum st_finish_reason {
    ST_FINISH_LENGTH = 0,  /* max_tokens reached, or the context (n_ctx) is full */
    ST_FINISH_EOS = 1,     /* the model produced EOS (or BOS: llama2.c's end) */
    ST_FINISH_STOP = 2,    /* a stop string appeared (it is not emitted) */
    ST_FINISH_CANCEL = 3,  /* the callback asked to stop */
} st_finish_reason;

typedef struct st_generate_params {
    st_sampler_params sampler;
    int64_t max_tokens;        /* new tokens at most (default 256); the context also ends it */
    const char *const *stop;   /* stop strings (borrowed; may be NULL) */
    int n_stop;
    bool stop_at_eos;          /* default true: EOS (and BOS) end the text */
    int n_top_logprobs;        /* 0..20: top alternatives passed to the callback */
} st_generate_params;
st_generate_params st_generate_default_params(void);

typedef struct st_generate_stats {
    int64_t n_prompt;          /* prompt tokens run through the model */
    int64_t n_generated;       /* tokens sampled */
    double prefill_s;          /* seconds in the prompt's forward pass */
    double decode_s;           /* seconds from the first sampled token to the end */
    st_finish_reason finish;
} st_generate_stats;

/* Called once per sampled token. text/n_bytes: the text this token makes
 * final (UTF-8 characters split across tokens are held back until whole;
 * text that could begin a stop string is held back until it cannot; so
 * n_bytes may be 0, and the concatenated texts are the generated text).
 * chosen/top: log-probabilities (top has n_top entries). Return non-zero
 * to stop (ST_FINISH_CANCEL). The final call may carry id -1 to flush text
 * held back at the end. */
typedef int (*st_token_fn)(void *user, int32_t id, const char *text, size_t n_bytes,
                           const st_token_logprob *chosen, const st_token_logprob *top,
                           int n_top);

/* Runs prompt[n_prompt] (it must not be empty; BOS is the caller's choice)
 * through the engine in a fresh sequence, then samples until max_tokens,
 * EOS, a stop string, a full context or the callback ends it. tok turns ids
 * into text (NULL: the model's tokenizer; stop strings need one). The
 * sequence's KV blocks are released before returning. Borrows everything.
 * Errors: those of st_engine_forward and st_sampler_new, ST_ERR_INVALID_ARG
 * (empty prompt, no tokenizer), ST_ERR_BOUNDS (prompt longer than n_ctx). */
st_status st_generate(st_engine *e, const st_tokenizer *tok, const int32_t *prompt,
                      int64_t n_prompt, const st_generate_params *p, st_token_fn fn, void *user,
                      st_generate_stats *stats);
/* st_generate on the caller's sequence seq, which holds K and V for
 * prompt[0..seq->n_tokens) (a prefix: 0 <= seq->n_tokens < n_prompt); only
 * the rest of the prompt is run (stats->n_prompt counts those tokens). On
 * return, also on error, seq is kept, not released: it holds the prompt and
 * every sampled token but the last (whose K and V were never computed),
 * i.e. seq->n_tokens - n_prompt of the tokens the callback saw. The caller
 * releases it (st_kv_seq_release). Errors: those of st_generate, and
 * ST_ERR_INVALID_ARG when no prompt token is new. */
st_status st_generate_seq(st_engine *e, st_kv_seq *seq, const st_tokenizer *tok,
                          const int32_t *prompt, int64_t n_prompt, const st_generate_params *p,
                          st_token_fn fn, void *user, st_generate_stats *stats);

/* ==== GGUF, Hugging Face directories, quantization (src/hub/) ============ */

/* GGUF v2/v3 (llama and gpt2 architectures; f32, f16, bf16, q8_0, q4_0
 * tensors; the tokenizer from the metadata: "llama" SentencePiece or "gpt2"
 * byte-level BPE). The tensor data is mapped, not copied: *out owns the
 * mapping (st_lm_free unmaps it); rope is ST_ROPE_INTERLEAVED. Every count,
 * length, dimension and offset is checked against the file before use.
 * Errors: ST_ERR_IO (cannot open/map; names the path), ST_ERR_FORMAT (names
 * the file and the field: truncation, absurd dimensions, unknown types,
 * missing tensors or hyperparameters), ST_ERR_UNSUPPORTED (another
 * architecture), ST_ERR_NOMEM. */
st_status st_lm_load_gguf(const char *path, st_lm **out);
/* Writes lm as GGUF v3 (alignment 32; general.architecture, general.name,
 * general.file_type, the <arch>.* hyperparameters, the tokenizer when lm has
 * a SentencePiece or byte-level BPE one) to path.tmp, fsyncs and renames it
 * over path. ST_ROPE_HALF llama q/k rows are permuted to GGUF's interleaved
 * order (convert_hf_to_gguf.py's permute); gpt2 q, k, v are written fused
 * as attn_qkv. Borrows lm. Errors: ST_ERR_FORMAT (st_lm_validate),
 * ST_ERR_UNSUPPORTED (gpt2 q/k/v of different types), ST_ERR_IO, ST_ERR_NOMEM. */
st_status st_lm_save_gguf(const st_lm *lm, const char *path);
/* Hugging Face-style directory (config.json, model.safetensors with Llama
 * or GPT-2 names, "transformer." prefix or not, f32/f16/bf16; tokenizer.json
 * when present). Weights are copied (f16/bf16 matrices keep their type;
 * GPT-2 Conv1D weights become f32 [out, in]); rope is ST_ROPE_HALF.
 * Errors: those of st_model_config_parse and st_safetensors_open,
 * ST_ERR_FORMAT (a missing or misshapen tensor, naming it), ST_ERR_NOMEM. */
st_status st_lm_load_hf(const char *dir, st_lm **out);
/* Writes dir/config.json, dir/model.safetensors (f32; quantized matrices
 * dequantized; interleaved q/k rows put back in HF order; gpt2 in Conv1D
 * layout with c_attn fused) and dir/tokenizer.json (when lm has a
 * tokenizer), each crash-safe. Creates dir if needed. Borrows lm.
 * Errors: ST_ERR_FORMAT (st_lm_validate), ST_ERR_IO, ST_ERR_NOMEM. */
st_status st_lm_save_hf(const st_lm *lm, const char *dir);
/* A copy of src with every 2-D weight matrix (not the norms) in type t;
 * rows whose length is not a multiple of ST_QK stay f32. The copy owns all
 * its storage and a clone of the tokenizer; src is borrowed. Errors:
 * ST_ERR_INVALID_ARG, ST_ERR_IO (cloning a tokenizer other than
 * SentencePiece / GPT-2 BPE goes through a temporary file), ST_ERR_NOMEM. */
st_status st_lm_quantize(const st_lm *src, st_wtype t, st_lm **out);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_INFER_H */
