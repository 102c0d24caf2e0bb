/*
 * strata/app.h — layer 8: applications on the stack. Retrieval-augmented
 * generation (RAG) over a folder of documents (docs/L8-rag.md); the chat and
 * MCP commands (cli/chat.c, cli/mcp.c) build on it and on strata/infer.h.
 *
 * A RAG index is a folder STRATA_HOME/rag/NAME holding
 *  - chunks.db   SQLite: files (path, SHA-256, size, mtime), chunks (file,
 *                ordinal, line range, text, token count) and an FTS5 table
 *                over the chunk text (BM25 ranking);
 *  - vectors.G.idx the chunk embeddings in an st_vecindex (HNSW, inner
 *                product on L2-normalised vectors), id = chunk rowid; G is
 *                the generation recorded in chunks.db's meta table, so the
 *                database always names the one vector file that matches it;
 *  - meta.json   the embedder (model REF and its dimension, or the hashed
 *                bag-of-words embedder and its dimension) and the chunking
 *                parameters: an index is always queried with the embedder
 *                it was built with.
 * Indexing is incremental: a file whose SHA-256 is unchanged is skipped, a
 * changed one has its chunks replaced, a vanished one (under an indexed
 * folder) has its chunks removed. Files that cannot be read as text
 * (binary, not UTF-8, empty, over the size limit) are skipped with a
 * warning naming the file and the reason; nothing is half-written: an
 * indexing run writes vectors.(G+1).idx (temp + fsync + rename), then
 * commits one SQLite transaction that moves the generation to G+1, then
 * deletes vectors.G.idx; a crash before the commit leaves generation G and
 * its file intact (the orphan file is removed by the next run).
 *
 * Retrieval is hybrid: the BM25 ranking (FTS5) and the vector ranking are
 * fused by reciprocal rank fusion, score = sum over rankings of
 * 1 / (rrf_k + rank), rank counted from 1.
 *
 * A handle sees other processes' indexing runs: each search reloads the
 * vector file when the generation moved.
 *
 * Threads: an st_rag handle is used by one thread at a time; the embedder
 * and the index use the context's pool inside the calls.
 */
#ifndef STRATA_APP_H
#define STRATA_APP_H

#include <stdio.h> /* FILE, for st_mcp_serve */

#include "strata/infer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_rag st_rag;

/* What indexing did with one file, for progress displays and logs. event is
 * "indexed" (detail NULL, or a warning about records skipped inside the
 * file), "unchanged", "skipped" (detail: the reason; the file's old chunks,
 * if any, are dropped), "removed", or "compacted" (path: the index folder;
 * the vector file was rebuilt without its tombstones: they outnumbered the
 * live chunks, and chunk ids were renumbered); n_chunks is the file's chunk
 * count (indexed) or 0. Strings are borrowed for the call. */
typedef void (*st_rag_progress_fn)(void *user, const char *event, const char *path,
                                   const char *detail, int64_t n_chunks);

typedef struct st_rag_params {
    const char *home;         /* STRATA_HOME (NULL: the default, see strata/registry.h) */
    const char *name;         /* index name (folder under home/rag; [A-Za-z0-9._-]+) */
    /* Creation only (an existing index keeps what it was built with): */
    const char *embed_model;  /* model REF whose mean-pooled final hidden states embed
                                 chunks; NULL: hashed bag-of-words embedding */
    const char *embed_tokenizer; /* tokenizer for embed_model when it carries none */
    int hash_dim;             /* dimension of the hashed embedding (default 1024) */
    int chunk_tokens;         /* chunk size in tokens: the word tokenizer's (hashed embedder)
                                 or embed_model's tokenizer's (default 200) */
    int overlap_tokens;       /* tokens shared by consecutive chunks (default 40) */
    size_t max_file_bytes;    /* larger files are skipped with a warning (default 64 MiB) */
    /* Every open: */
    st_rag_progress_fn progress; /* NULL: skipped files are logged (st_log_msg, warn) */
    void *progress_user;
} st_rag_params;

st_rag_params st_rag_default_params(void);

/* Opens index p->name under p->home; create: make it when missing (else a
 * missing index is ST_ERR_IO naming it). Borrows ctx, which must
 * outlive the handle. Errors: ST_ERR_INVALID_ARG (bad name), ST_ERR_IO,
 * ST_ERR_FORMAT (damaged index files, named), errors of
 * the embedding model's loading. */
st_status st_rag_open(st_ctx *ctx, const st_rag_params *p, bool create, st_rag **out);
void st_rag_free(st_rag *r);

typedef struct st_rag_index_stats {
    int64_t files_seen;       /* regular files found under the paths */
    int64_t files_indexed;    /* new or changed, now chunked and embedded */
    int64_t files_unchanged;  /* same SHA-256 as before: skipped */
    int64_t files_skipped;    /* unreadable as text (warned) */
    int64_t files_removed;    /* gone from an indexed folder: chunks dropped */
    int64_t chunks_added;
    int64_t chunks_total;
} st_rag_index_stats;

/* Indexes files and folders (recursively; names starting with '.' and
 * symbolic links to folders skipped) under paths: .txt, .md, .html/.htm
 * (text extracted), .jsonl (one record per line: its "text" field, or all
 * string fields), .parquet (string columns), .pdf, and any other file that
 * is UTF-8 text. Skipped files are reported through p->progress (else
 * logged) and counted; they are not errors. stats may be NULL. Borrows
 * paths. The run is one transaction: on failure nothing changed.
 * Errors: ST_ERR_IO (a path that does not exist, named; the database or
 * the vector file), ST_ERR_INVALID_ARG, ST_ERR_NOMEM, errors of the
 * embedding model. */
st_status st_rag_index_paths(st_rag *r, const char *const *paths, int n_paths,
                             st_rag_index_stats *stats);

typedef enum st_rag_mode {
    ST_RAG_HYBRID = 0,        /* BM25 and vectors fused by reciprocal rank fusion */
    ST_RAG_BM25 = 1,
    ST_RAG_VECTOR = 2,
} st_rag_mode;

typedef struct st_rag_hit {
    int64_t chunk_id;
    char *path;               /* the file as indexed (absolute) */
    int line_start, line_end; /* 1-based, inclusive */
    char *text;               /* the chunk */
    double score;             /* fused score (or the single ranking's score) */
    int bm25_rank, vec_rank;  /* 1-based ranks in each list; 0: absent from it */
} st_rag_hit;

/* The k best chunks for query (1 <= k <= 10000). Hybrid fuses the k best
 * of BM25 and the k best of the vector search (RRF, rrf_k = 60); the
 * hashed embedder weights the query's buckets by their IDF over the index. *hits is st_malloc'd (free with
 * st_rag_hits_free); *n_hits <= k (fewer when the index is smaller).
 * Errors: ST_ERR_INVALID_ARG, ST_ERR_IO. */
st_status st_rag_search(st_rag *r, const char *query, int k, st_rag_mode mode,
                        st_rag_hit **hits, int *n_hits);
void st_rag_hits_free(st_rag_hit *hits, int n_hits);

typedef struct st_rag_ask_params {
    int k;                    /* sources put in the prompt (default 4) */
    st_rag_mode mode;         /* default ST_RAG_HYBRID */
    st_generate_params gen;   /* sampling, max_tokens (default 256), stops */
    const char *system;       /* system message (NULL: answer from the numbered
                                 sources only and cite them as [n]) */
} st_rag_ask_params;
st_rag_ask_params st_rag_default_ask_params(void);

typedef struct st_rag_answer {
    char *text;               /* the generated answer */
    st_rag_hit *sources;      /* sources[i] is [i+1] in the prompt */
    int n_sources;
    int *cited;               /* source numbers (1-based) the answer cites, ascending */
    int n_cited;
    st_generate_stats stats;
} st_rag_answer;

/* Retrieves, renders the numbered sources and the question with the
 * model's chat template (st_chat_template_for), generates with e (and tok:
 * NULL means the engine's model's tokenizer), streaming through fn when not
 * NULL, and fills out (free with st_rag_answer_free). Errors: those of
 * st_rag_search and st_generate; ST_ERR_BOUNDS when even one source does
 * not fit the context (sources are dropped from the end to fit). */
st_status st_rag_ask(st_rag *r, st_engine *e, const st_tokenizer *tok, const char *question,
                     const st_rag_ask_params *p, st_token_fn fn, void *user,
                     st_rag_answer *out);
void st_rag_answer_free(st_rag_answer *a);

typedef struct st_rag_doc {
    char *path;
    char sha256[65];
    int64_t bytes;
    int64_t n_chunks;
} st_rag_doc;

/* The indexed files, by path. Free with st_rag_docs_free. */
st_status st_rag_list_docs(st_rag *r, st_rag_doc **docs, int *n_docs);
void st_rag_docs_free(st_rag_doc *docs, int n_docs);
/* The extracted text of an indexed file, as chunked (st_malloc'd, NUL-
 * terminated). Errors: ST_ERR_INVALID_ARG (not in the index), ST_ERR_IO. */
st_status st_rag_doc_text(st_rag *r, const char *path, char **text, size_t *n_bytes);

/* Lists the index names under home (NULL: default). Free with st_free on
 * each name and the array. */
st_status st_rag_list_indexes(const char *home, char ***names, int *n_names);

/* ==== chat (src/app/chat.c; `strata chat`) ================================
 *
 * A conversation with a model: the history is re-rendered with the model's
 * chat template (st_chat_template_render) on every turn and tokenized; the
 * KV cache keeps the tokens of the previous turn, and the longest common
 * prefix of those tokens and the new prompt is reused, so a turn runs only
 * the new messages through the model. When the prompt and the answer's
 * budget do not fit the context, the oldest user/assistant turns are left
 * out of the prompt (the system message is kept); the turn's stats say how
 * many. The transcript keeps every message.
 *
 * Threads: an st_chat is driven by one thread at a time; it owns its engine
 * sequence and uses the engine's pool inside st_chat_send. */

typedef struct st_chat st_chat;

typedef struct st_chat_params {
    const char *system;             /* system message (NULL: none); copied */
    st_generate_params gen;         /* sampling, max_tokens per answer (default 256),
                                       extra stop strings (borrowed: must outlive the chat);
                                       the template's stop string is always added */
    const char *chat_template_text; /* tokenizer_config.json's "chat_template" (NULL: from
                                       the model, see st_chat_template_for); borrowed */
    const char *model_name;         /* recorded in the transcript (NULL: none); copied */
} st_chat_params;

/* gen = st_generate_default_params(), everything else NULL. */
st_chat_params st_chat_default_params(void);

/* A chat over engine e. tok turns text into ids and back (NULL: the
 * engine's model's tokenizer). Borrows e and tok (both must outlive the
 * chat). The chat keeps up to one context of KV blocks of e between turns
 * (the previous turn's tokens): give e a pool with room for whatever else
 * runs on it (st_kv_params.n_blocks). Errors: ST_ERR_INVALID_ARG (no
 * tokenizer, bad sampling parameters), ST_ERR_NOMEM. */
st_status st_chat_new(st_engine *e, const st_tokenizer *tok, const st_chat_params *p,
                      st_chat **out);
/* Releases the KV blocks and the transcript. NULL: no-op. */
void st_chat_free(st_chat *c);

typedef struct st_chat_turn_stats {
    st_generate_stats gen;    /* n_prompt counts the tokens actually run (not reused) */
    int64_t prompt_tokens;    /* tokens of the rendered prompt */
    int64_t reused_tokens;    /* of those, taken from the KV cache of the previous turn */
    int dropped_messages;     /* oldest messages newly left out of the prompt to fit */
} st_chat_turn_stats;

/* Appends the user message text, generates the answer (streamed through fn
 * when not NULL, as st_generate does; fn returning non-zero cancels: the
 * text so far is kept as the answer) and appends it as the assistant's
 * message. Sampling turn k (0-based) uses seed gen.sampler.seed + k.
 * Borrows text. Errors: ST_ERR_BOUNDS (the system message and this one
 * message alone do not fit the context: neither is kept), those of
 * st_tokenizer_encode and st_engine_forward (the user message is dropped
 * from the transcript then), ST_ERR_NOMEM. */
st_status st_chat_send(st_chat *c, const char *text, st_token_fn fn, void *user,
                       st_chat_turn_stats *stats);

/* Forgets the conversation (the system message stays). */
void st_chat_reset(st_chat *c);
/* Replaces the system message (NULL or "": none). Copies text. Errors: ST_ERR_NOMEM. */
st_status st_chat_set_system(st_chat *c, const char *text);
/* The transcript: the system message (when set) then every user and
 * assistant message in order, dropped ones included. Borrowed until the
 * next call that changes the chat. */
const st_chat_message *st_chat_messages(const st_chat *c, int *n);
/* The template in use. */
st_chat_template st_chat_get_template(const st_chat *c);

/* The transcript as JSON text (st_malloc'd, NUL-terminated):
 * {"format": "strata-chat", "version": 1, "model": NAME|null,
 *  "template": "chatml"|"llama-2"|"plain", "messages": [{"role", "content"}]}.
 * Errors: ST_ERR_NOMEM. */
st_status st_chat_to_json(const st_chat *c, char **out);
/* Writes st_chat_to_json's text and a newline to path, crash-safe (temp
 * file, fsync, rename). Errors: ST_ERR_IO naming path, ST_ERR_NOMEM. */
st_status st_chat_save(const st_chat *c, const char *path);

/* ==== MCP server (src/app/mcp.c; `strata mcp`) =============================
 *
 * A Model Context Protocol server: JSON-RPC 2.0 messages, one per line on
 * stdio (docs/L8-chat-mcp.md). Protocol versions 2025-11-25 (what the npm
 * @modelcontextprotocol/sdk client asks for), 2025-06-18, 2025-03-26 and
 * 2024-11-05: initialize answers the client's version when it is one of
 * these, else the newest. Tools: rag_search, rag_ask, generate,
 * list_models; resources: the documents of the RAG indexes
 * (strata-rag://NAME/PATH; file:///PATH is accepted by resources/read for
 * an indexed file). Every message is outside data: malformed JSON is a
 * -32700 reply, an invalid request -32600, an unknown method -32601, bad
 * parameters -32602; a tool that fails returns a result with isError true;
 * notifications get no reply. Batches (JSON arrays) are answered with an
 * array of the replies.
 *
 * Threads: one thread handles messages at a time (the engine and the
 * indexes are not shared). */

typedef struct st_mcp st_mcp;

typedef struct st_mcp_params {
    const char *home;          /* STRATA_HOME for RAG indexes and the registry (NULL: default) */
    const char *index;         /* default index of rag_search / rag_ask and the only one
                                  listed as resources (NULL: every index under home) */
    st_engine *engine;         /* for generate and rag_ask (NULL: those tools fail) */
    const st_tokenizer *tok;   /* the engine's tokenizer (NULL: the model's) */
    const char *model_name;    /* the loaded model, shown by list_models (NULL: none) */
    size_t max_message_bytes;  /* longest line st_mcp_serve accepts (default 4 MiB) */
    int64_t max_tokens_limit;  /* largest max_tokens a call may ask (default 4096) */
} st_mcp_params;

st_mcp_params st_mcp_default_params(void);

/* Borrows ctx (for the RAG indexes' embedders) and everything p points at;
 * strings are copied. Opens nothing yet: indexes are opened on first use.
 * Errors: ST_ERR_INVALID_ARG (a bad index name), ST_ERR_NOMEM. */
st_status st_mcp_new(st_ctx *ctx, const st_mcp_params *p, st_mcp **out);
void st_mcp_free(st_mcp *m);

/* Handles one message of n bytes (a request, a notification, a response or
 * a batch). *reply is the JSON text to send back (st_malloc'd, one line, no
 * newline; *n_reply bytes), or NULL when there is nothing to send. Every
 * fault of the message becomes a JSON-RPC error in *reply; the function
 * fails only for ST_ERR_NOMEM. */
st_status st_mcp_handle(st_mcp *m, const char *msg, size_t n, char **reply, size_t *n_reply);

/* Reads newline-delimited messages from in until end of file, writing each
 * reply and a newline to out (flushed). Lines longer than
 * max_message_bytes are skipped with an invalid-request reply; blank lines
 * are ignored. Borrows in and out. Errors: ST_ERR_IO (a read or write
 * failed, e.g. the client closed the pipe), ST_ERR_NOMEM. */
st_status st_mcp_serve(st_mcp *m, FILE *in, FILE *out);

#ifdef __cplusplus
}
#endif

#endif /* STRATA_APP_H */
