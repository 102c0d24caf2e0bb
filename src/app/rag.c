/*
 * rag.c — the RAG index (strata/app.h): the index folder, its SQLite
 * database (files, chunks, an FTS5 table for BM25, a meta table with the
 * vector file's generation), the vector file, incremental indexing by
 * SHA-256, hybrid search with reciprocal rank fusion, and st_rag_ask
 * (numbered sources through the model's chat template, generation,
 * citations).
 *
 * Ownership: an st_rag owns its database connection, its vector index (a
 * mapping of vectors.G.idx until the first change copies it into memory),
 * the embedding model and engine when the index was built with one, and its
 * strings; it borrows the context. Crash safety: one indexing run is one
 * SQLite transaction (BEGIN IMMEDIATE: one indexer at a time) plus one new
 * vector file named by the next generation, written before the commit that
 * switches to it (app.h). Readers in other processes keep working during a
 * run (WAL). Threads: one thread per handle; the vector index and the
 * embedding model use the context's pool inside the calls.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rag_impl.h"
#include "strata/data.h"
#include "strata/hub.h"
#include "strata/registry.h"
#include "strata/vecindex.h"

#define RAG_META_VERSION 1
#define RRF_K 60.0
#define MAX_QUERY_TOKENS 64

struct st_rag {
    st_ctx *ctx;
    char *dir, *db_path, *name;
    sqlite3 *db;
    st_vecindex *vi;
    int64_t gen;
    /* what the index was built with (meta.json) */
    int dim;
    char *embed_model, *embed_tokenizer;
    int chunk_tokens, overlap_tokens;
    size_t max_file_bytes;
    st_lm *lm;          /* the embedding model, or NULL: hashed embedding */
    st_engine *eng;
    st_rag_progress_fn progress;
    void *progress_user;
    /* hashed embedder: chunks per non-zero bucket (query IDF weights),
     * recomputed from the stored vectors after every change */
    int64_t *df, df_chunks;
    bool df_valid;
};

st_rag_params st_rag_default_params(void) {
    st_rag_params p = {0};
    p.hash_dim = 1024;
    p.chunk_tokens = 200;
    p.overlap_tokens = 40;
    p.max_file_bytes = (size_t)64 << 20;
    return p;
}

st_rag_ask_params st_rag_default_ask_params(void) {
    st_rag_ask_params p = {0};
    p.k = 4;
    p.mode = ST_RAG_HYBRID;
    p.gen = st_generate_default_params();
    p.gen.max_tokens = 256;
    return p;
}

/* ---- small helpers ---------------------------------------------------------------- */

static char *join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *s = st_malloc(na + nb + 2);
    if (!s) return NULL;
    memcpy(s, a, na);
    s[na] = '/';
    memcpy(s + na + 1, b, nb + 1);
    return s;
}

static st_status db_fail(const st_rag *r, const char *what) {
    return st__fail(ST_ERR_IO, "%s: %s: %s", r->db_path, what, sqlite3_errmsg(r->db));
}

static st_status exec(st_rag *r, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(r->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        st_status s = st__fail(ST_ERR_IO, "%s: %s: %s", r->db_path, sql, msg ? msg : "?");
        sqlite3_free(msg);
        return s;
    }
    return ST_OK;
}

static st_status prep(st_rag *r, const char *sql, sqlite3_stmt **st) {
    if (sqlite3_prepare_v2(r->db, sql, -1, st, NULL) != SQLITE_OK) return db_fail(r, sql);
    return ST_OK;
}

static bool valid_name(const char *n) {
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > 128 || !strcmp(n, ".") || !strcmp(n, "..")) return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static st_status mkdir_p(const char *path) {
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf) return st__fail(ST_ERR_INVALID_ARG, "%s: path too long", path);
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return st__fail(ST_ERR_IO, "%s: mkdir: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return st__fail(ST_ERR_IO, "%s: mkdir: %s", buf, strerror(errno));
    return ST_OK;
}

static void sha256_hex(const void *data, size_t n, char hex[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void report(st_rag *r, const char *event, const char *path, const char *detail,
                   int64_t n_chunks) {
    if (r->progress) r->progress(r->progress_user, event, path, detail, n_chunks);
    else if (!strcmp(event, "skipped") || (detail && !strcmp(event, "indexed")))
        st_log_msg(ST_LOG_WARN, "rag: %s %s: %s", event, path, detail ? detail : "");
}

/* ---- meta.json ---------------------------------------------------------------------- */

static st_status write_meta(st_rag *r) {
    json_t *j = json_pack("{s:i, s:s, s:i, s:i, s:i, s:I}", "version", RAG_META_VERSION,
                          "embedder", r->embed_model ? "model" : "hash", "dim", r->dim,
                          "chunk_tokens", r->chunk_tokens, "overlap_tokens", r->overlap_tokens,
                          "max_file_bytes", (json_int_t)r->max_file_bytes);
    if (j && r->embed_model) json_object_set_new(j, "embed_model", json_string(r->embed_model));
    if (j && r->embed_tokenizer)
        json_object_set_new(j, "embed_tokenizer", json_string(r->embed_tokenizer));
    char *txt = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!txt) return st__fail(ST_ERR_NOMEM, "rag: no memory for meta.json");
    char *path = join(r->dir, "meta.json");
    st_status s = path ? st_file_write_atomic(path, txt, strlen(txt))
                       : st__fail(ST_ERR_NOMEM, "rag: no memory");
    free(txt);
    st_free(path);
    return s;
}

static st_status read_meta(st_rag *r, const char *path) {
    char *txt = NULL;
    size_t n = 0;
    ST_TRY(st_text_read_file(path, 1 << 20, &txt, &n));
    json_error_t err;
    json_t *j = json_loadb(txt, n, 0, &err);
    st_free(txt);
    if (!j) return st__fail(ST_ERR_FORMAT, "%s: not JSON: %s (line %d)", path, err.text, err.line);
    st_status s = ST_OK;
    json_t *v = json_object_get(j, "version"), *e = json_object_get(j, "embedder"),
           *d = json_object_get(j, "dim"), *c = json_object_get(j, "chunk_tokens"),
           *o = json_object_get(j, "overlap_tokens"), *m = json_object_get(j, "max_file_bytes");
    if (!json_is_integer(v)) s = st__fail(ST_ERR_FORMAT, "%s: no integer \"version\"", path);
    else if (json_integer_value(v) > RAG_META_VERSION)
        s = st__fail(ST_ERR_FORMAT, "%s: version %lld is newer than this strata reads (%d): "
                     "upgrade strata or rebuild the index", path,
                     (long long)json_integer_value(v), RAG_META_VERSION);
    else if (!json_is_string(e) || (strcmp(json_string_value(e), "hash") &&
                                    strcmp(json_string_value(e), "model")))
        s = st__fail(ST_ERR_FORMAT, "%s: \"embedder\" must be \"hash\" or \"model\"", path);
    else if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > 65536)
        s = st__fail(ST_ERR_FORMAT, "%s: \"dim\" must be an integer in 1..65536", path);
    else if (!json_is_integer(c) || json_integer_value(c) < 1 || json_integer_value(c) > 1000000)
        s = st__fail(ST_ERR_FORMAT, "%s: \"chunk_tokens\" must be an integer in 1..1000000", path);
    else if (!json_is_integer(o) || json_integer_value(o) < 0 ||
             json_integer_value(o) >= json_integer_value(c))
        s = st__fail(ST_ERR_FORMAT, "%s: \"overlap_tokens\" must be in [0, chunk_tokens)", path);
    if (s == ST_OK) {
        r->dim = (int)json_integer_value(d);
        r->chunk_tokens = (int)json_integer_value(c);
        r->overlap_tokens = (int)json_integer_value(o);
        if (json_is_integer(m) && json_integer_value(m) > 0)
            r->max_file_bytes = (size_t)json_integer_value(m);
        if (!strcmp(json_string_value(e), "model")) {
            json_t *em = json_object_get(j, "embed_model"), *et = json_object_get(j, "embed_tokenizer");
            if (!json_is_string(em)) s = st__fail(ST_ERR_FORMAT, "%s: no \"embed_model\"", path);
            else {
                r->embed_model = st_strdup(json_string_value(em));
                if (json_is_string(et)) r->embed_tokenizer = st_strdup(json_string_value(et));
                if (!r->embed_model) s = st__fail(ST_ERR_NOMEM, "rag: no memory");
            }
        }
    }
    json_decref(j);
    return s;
}

/* ---- the database ------------------------------------------------------------------- */

static const char *k_schema =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS files(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL,"
    " sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, mtime INTEGER NOT NULL,"
    " format TEXT NOT NULL, text TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL,"
    " ordinal INTEGER NOT NULL, line_start INTEGER NOT NULL, line_end INTEGER NOT NULL,"
    " n_tokens INTEGER NOT NULL, text TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS chunks_file ON chunks(file_id);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, tokenize='porter unicode61');";

static st_status read_gen(st_rag *r, int64_t *gen) {
    sqlite3_stmt *st;
    ST_TRY(prep(r, "SELECT value FROM meta WHERE key='generation'", &st));
    *gen = 0;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *gen = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_fail(r, "reading the generation");
    if (*gen < 0) return st__fail(ST_ERR_FORMAT, "%s: negative generation", r->db_path);
    return ST_OK;
}

static char *vec_path(const st_rag *r, int64_t gen) {
    char name[64];
    snprintf(name, sizeof name, "vectors.%lld.idx", (long long)gen);
    return join(r->dir, name);
}

static st_status new_vecindex(st_rag *r) {
    st_vecindex_params vp = st_vecindex_default_params();
    vp.kind = ST_VEC_HNSW;
    vp.metric = ST_VEC_IP;
    vp.dim = r->dim;
    vp.ef_construction = 100;
    return st_vecindex_new(&vp, &r->vi);
}

/* Loads the vector file of the current generation (re-reading the
 * generation when a concurrent run replaced the file meanwhile). */
static st_status load_vectors(st_rag *r) {
    r->df_valid = false;
    st_vecindex_free(r->vi);
    r->vi = NULL;
    for (int attempt = 0;; attempt++) {
        ST_TRY(read_gen(r, &r->gen));
        if (r->gen == 0) return new_vecindex(r);
        char *p = vec_path(r, r->gen);
        if (!p) return st__fail(ST_ERR_NOMEM, "rag: no memory");
        st_status s = st_vecindex_load(p, &r->vi);
        st_free(p);
        if (s == ST_OK) break;
        int64_t g2 = 0;
        if (attempt < 3 && read_gen(r, &g2) == ST_OK && g2 != r->gen) continue;
        return s;
    }
    st_vecindex_info info;
    st_vecindex_get_info(r->vi, &info);
    if (info.dim != r->dim || info.metric != ST_VEC_IP)
        return st__fail(ST_ERR_FORMAT, "%s: vectors.%lld.idx has dim %d, meta.json says %d",
                        r->dir, (long long)r->gen, info.dim, r->dim);
    sqlite3_stmt *st;
    ST_TRY(prep(r, "SELECT max(id) FROM chunks", &st));
    int64_t max_id = -1;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        max_id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (max_id >= info.n)
        return st__fail(ST_ERR_FORMAT, "%s: chunk %lld has no vector (the vector file holds %lld)",
                        r->dir, (long long)max_id, (long long)info.n);
    return ST_OK;
}

/* ---- open / free ------------------------------------------------------------------- */

void st_rag_free(st_rag *r) {
    if (!r) return;
    if (r->db) sqlite3_close(r->db);
    st_vecindex_free(r->vi);
    st_engine_free(r->eng);
    st_lm_free(r->lm);
    st_free(r->dir);
    st_free(r->db_path);
    st_free(r->name);
    st_free(r->embed_model);
    st_free(r->embed_tokenizer);
    st_free(r->df);
    st_free(r);
}

static st_status rag_home(const char *home, char **out) {
    if (home) {
        *out = st_strdup(home);
        return *out ? ST_OK : st__fail(ST_ERR_NOMEM, "rag: no memory");
    }
    return st_registry_home(out);
}

st_status st_rag_open(st_ctx *ctx, const st_rag_params *p, bool create, st_rag **out) {
    *out = NULL;
    if (!p || !valid_name(p->name))
        return st__fail(ST_ERR_INVALID_ARG, "rag: index name '%s' must be 1-128 of [A-Za-z0-9._-]",
                        p && p->name ? p->name : "(null)");
    st_rag *r = st_calloc(1, sizeof *r);
    if (!r) return st__fail(ST_ERR_NOMEM, "rag: no memory");
    r->ctx = ctx;
    r->progress = p->progress;
    r->progress_user = p->progress_user;
    r->max_file_bytes = p->max_file_bytes ? p->max_file_bytes : (size_t)64 << 20;
    char *home = NULL, *ragdir = NULL, *meta = NULL;
    st_status s = rag_home(p->home, &home);
    if (s == ST_OK) {
        ragdir = join(home, "rag");
        r->name = st_strdup(p->name);
        r->dir = ragdir ? join(ragdir, p->name) : NULL;
        r->db_path = r->dir ? join(r->dir, "chunks.db") : NULL;
        meta = r->dir ? join(r->dir, "meta.json") : NULL;
        if (!meta || !r->name || !r->db_path) s = st__fail(ST_ERR_NOMEM, "rag: no memory");
    }
    struct stat sb;
    bool exists = s == ST_OK && stat(meta, &sb) == 0;
    if (s == ST_OK && !exists && !create)
        s = st__fail(ST_ERR_IO, "no RAG index '%s' (%s has no meta.json): build it with "
                     "`strata rag index PATH --index %s`", p->name, r->dir, p->name);
    if (s == ST_OK && exists) {
        s = read_meta(r, meta);
    } else if (s == ST_OK) { /* create */
        r->chunk_tokens = p->chunk_tokens;
        r->overlap_tokens = p->overlap_tokens;
        r->dim = p->hash_dim;
        if (p->chunk_tokens < 1 || p->chunk_tokens > 1000000 || p->overlap_tokens < 0 ||
            p->overlap_tokens >= p->chunk_tokens)
            s = st__fail(ST_ERR_INVALID_ARG, "rag: chunk_tokens %d, overlap_tokens %d: need "
                         "1 <= chunk <= 1000000 and 0 <= overlap < chunk",
                         p->chunk_tokens, p->overlap_tokens);
        else if (!p->embed_model && (p->hash_dim < 8 || p->hash_dim > 65536))
            s = st__fail(ST_ERR_INVALID_ARG, "rag: hash_dim %d outside 8..65536", p->hash_dim);
        if (s == ST_OK && p->embed_model) {
            r->embed_model = st_strdup(p->embed_model);
            if (p->embed_tokenizer) r->embed_tokenizer = st_strdup(p->embed_tokenizer);
        }
    }
    /* the embedding model */
    if (s == ST_OK && r->embed_model) {
        s = st_lm_load(ctx, r->embed_model, r->embed_tokenizer, &r->lm);
        if (s == ST_OK && !r->lm->tok)
            s = st__fail(ST_ERR_INVALID_ARG, "rag: embedding model %s carries no tokenizer: "
                         "pass one (--embed-tokenizer)", r->embed_model);
        if (s == ST_OK && exists && r->lm->cfg.n_embd != r->dim)
            s = st__fail(ST_ERR_FORMAT, "%s: built with %d-dimensional embeddings, model %s "
                         "gives %d", meta, r->dim, r->embed_model, (int)r->lm->cfg.n_embd);
        if (s == ST_OK) {
            r->dim = (int)r->lm->cfg.n_embd;
            st_engine_params ep = st_engine_default_params();
            s = st_engine_new(ctx, r->lm, &ep, &r->eng);
        }
    }
    if (s == ST_OK && !exists) s = mkdir_p(r->dir);
    if (s == ST_OK) {
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (exists ? 0 : SQLITE_OPEN_CREATE);
        if (sqlite3_open_v2(r->db_path, &r->db, flags, NULL) != SQLITE_OK)
            s = r->db ? db_fail(r, "open") : st__fail(ST_ERR_NOMEM, "rag: sqlite3_open");
    }
    if (s == ST_OK) {
        sqlite3_busy_timeout(r->db, 30000);
        s = exec(r, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    }
    if (s == ST_OK && !exists) s = exec(r, k_schema);
    if (s == ST_OK) { /* a damaged or foreign database fails here, naming the file */
        sqlite3_stmt *st = NULL;
        s = prep(r, "SELECT count(*) FROM files, chunks_fts WHERE 0", &st);
        if (s != ST_OK) s = st__fail(ST_ERR_FORMAT, "%s: not a RAG index database (%s)",
                                     r->db_path, sqlite3_errmsg(r->db));
        sqlite3_finalize(st);
    }
    if (s == ST_OK && !exists) s = write_meta(r); /* last: it marks the index as made */
    if (s == ST_OK) s = load_vectors(r);
    st_free(home);
    st_free(ragdir);
    st_free(meta);
    if (s != ST_OK) {
        st_rag_free(r);
        return s;
    }
    *out = r;
    return ST_OK;
}

/* ---- embeddings -------------------------------------------------------------------- */

static int model_count(void *user, const char *s, size_t n) {
    const st_tokenizer *tok = user;
    int32_t *ids = NULL;
    size_t m = 0;
    st_encode_opts eo = {.allow_special = false, .add_bos = false};
    if (st_tokenizer_encode(tok, s, n, &eo, &ids, &m) != ST_OK) return 1;
    st_free(ids);
    return (int)m;
}

/* Mean of the final-norm hidden states over the text's tokens (BOS first),
 * L2-normalised; the text is cut to the model's context. */
static st_status model_embed(st_rag *r, const char *s, size_t n, float *out) {
    int32_t *ids = NULL;
    size_t m = 0;
    st_encode_opts eo = {.allow_special = false, .add_bos = true};
    ST_TRY(st_tokenizer_encode(r->lm->tok, s, n, &eo, &ids, &m));
    const int E = r->dim;
    memset(out, 0, (size_t)E * sizeof *out);
    if (m > (size_t)r->lm->cfg.n_ctx) m = (size_t)r->lm->cfg.n_ctx;
    float *tmp = st_malloc((size_t)E * sizeof *tmp);
    st_status st = tmp ? ST_OK : st__fail(ST_ERR_NOMEM, "rag: no memory");
    st_kv_seq seq = {0};
    const size_t step = 256;
    for (size_t i = 0; st == ST_OK && i < m; i += step) {
        size_t k = m - i < step ? m - i : step;
        st_engine_seq es = {.seq = &seq, .tokens = ids + i, .n_tokens = (int)k, .hidden_sum = tmp};
        st = st_engine_forward(r->eng, &es, 1);
        for (int c = 0; st == ST_OK && c < E; c++) out[c] += tmp[c];
    }
    st_kv_seq_release(st_engine_kv(r->eng), &seq);
    st_free(tmp);
    st_free(ids);
    ST_TRY(st);
    double norm = 0;
    for (int c = 0; c < E; c++) norm += (double)out[c] * out[c];
    if (norm > 0) {
        float inv = (float)(1.0 / sqrt(norm)); /* the mean's direction: the 1/m cancels */
        for (int c = 0; c < E; c++) out[c] *= inv;
    }
    return ST_OK;
}

static st_status embed(st_rag *r, const char *s, size_t n, float *out) {
    if (!r->lm) {
        st__rag_hash_embed(s, n, r->dim, out);
        return ST_OK;
    }
    return model_embed(r, s, n, out);
}

/* ---- indexing --------------------------------------------------------------------- */

typedef struct pathlist {
    char **p;
    int64_t n, cap;
} pathlist;

static st_status pl_push(pathlist *l, const char *s) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 64;
        char **np = st_realloc(l->p, (size_t)cap * sizeof *np);
        if (!np) return st__fail(ST_ERR_NOMEM, "rag: no memory for the file list");
        l->p = np;
        l->cap = cap;
    }
    if (!(l->p[l->n] = st_strdup(s))) return st__fail(ST_ERR_NOMEM, "rag: no memory");
    l->n++;
    return ST_OK;
}

static void pl_free(pathlist *l) {
    for (int64_t i = 0; i < l->n; i++) st_free(l->p[i]);
    st_free(l->p);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Regular files under dir (recursively, names starting with '.' skipped,
 * symbolic links to folders not followed), sorted. */
static st_status walk(const char *dir, const char *skip_dir, pathlist *out, int depth) {
    if (depth > 64) return ST_OK;
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) return st__fail(ST_ERR_IO, "%s: scandir: %s", dir, strerror(errno));
    st_status s = ST_OK;
    for (int i = 0; i < n; i++) {
        const char *nm = ents[i]->d_name;
        if (s == ST_OK && nm[0] != '.') {
            char *p = join(dir, nm);
            struct stat lsb, sb;
            if (!p) s = st__fail(ST_ERR_NOMEM, "rag: no memory");
            else if (lstat(p, &lsb) == 0) {
                if (S_ISDIR(lsb.st_mode)) {
                    if (!skip_dir || strcmp(p, skip_dir)) s = walk(p, skip_dir, out, depth + 1);
                } else if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
                    s = pl_push(out, p);
                }
            }
            st_free(p);
        }
        free(ents[i]);
    }
    free(ents);
    return s;
}

static st_status remove_file_chunks(st_rag *r, int64_t file_id, bool drop_file) {
    sqlite3_stmt *st;
    ST_TRY(prep(r, "SELECT id FROM chunks WHERE file_id=?1", &st));
    sqlite3_bind_int64(st, 1, file_id);
    st_status s = ST_OK;
    int rc;
    while (s == ST_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (id < st_vecindex_size(r->vi)) s = st_vecindex_remove(r->vi, id);
    }
    sqlite3_finalize(st);
    ST_TRY(s);
    ST_TRY(prep(r, "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE file_id=?1)", &st));
    sqlite3_bind_int64(st, 1, file_id);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(r, "deleting chunks");
    ST_TRY(prep(r, "DELETE FROM chunks WHERE file_id=?1", &st));
    sqlite3_bind_int64(st, 1, file_id);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(r, "deleting chunks");
    if (drop_file) {
        ST_TRY(prep(r, "DELETE FROM files WHERE id=?1", &st));
        sqlite3_bind_int64(st, 1, file_id);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return db_fail(r, "deleting a file");
    }
    return ST_OK;
}

/* id and hash of path in the index; id -1 when absent. */
static st_status find_file(st_rag *r, const char *path, int64_t *id, char sha[65]) {
    sqlite3_stmt *st;
    ST_TRY(prep(r, "SELECT id, sha256 FROM files WHERE path=?1", &st));
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    *id = -1;
    sha[0] = 0;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        const unsigned char *h = sqlite3_column_text(st, 1);
        snprintf(sha, 65, "%s", h ? (const char *)h : "");
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_fail(r, "looking up a file");
    return ST_OK;
}

static st_status skip_file(st_rag *r, const char *path, int64_t old_id, st_rag_index_stats *stt,
                           bool *changed) {
    const char *why = st_last_error();
    size_t n = strlen(path);
    if (!strncmp(why, path, n) && why[n] == ':' && why[n + 1] == ' ') why += n + 2; /* named already */
    report(r, "skipped", path, why, 0);
    stt->files_skipped++;
    if (old_id >= 0) {
        ST_TRY(remove_file_chunks(r, old_id, true));
        *changed = true;
    }
    st_clear_error();
    return ST_OK;
}

/* The first line of the text (the title) and the last Markdown heading
 * ("#" at a line start) before off, each on its own line, appended to b.
 * Chunks come in text order: the scan state carries the last heading seen,
 * so a file costs one pass. */
typedef struct heading_scan {
    int64_t pos, hb, he; /* scanned up to pos; the last heading [hb, he) or -1 */
} heading_scan;

static st_status chunk_context(const st__rag_text *t, int64_t off, heading_scan *hs, st_strbuf *b) {
    const char *s = t->buf.p;
    int64_t n = (int64_t)t->buf.len, e = 0;
    while (e < n && e < 200 && s[e] != '\n') e++;
    ST_TRY(st_strbuf_put(b, s, (size_t)e));
    ST_TRY(st_strbuf_put(b, "\n", 1));
    if (hs->pos < e + 1) hs->pos = e + 1;
    for (; hs->pos < off; hs->pos++) {
        if (s[hs->pos] == '#' && s[hs->pos - 1] == '\n') {
            int64_t j = hs->pos;
            while (j < n && j - hs->pos < 200 && s[j] != '\n') j++;
            hs->hb = hs->pos;
            hs->he = j;
        }
    }
    if (hs->hb >= 0) {
        ST_TRY(st_strbuf_put(b, s + hs->hb, (size_t)(hs->he - hs->hb)));
        ST_TRY(st_strbuf_put(b, "\n", 1));
    }
    return ST_OK;
}

static st_status index_file(st_rag *r, const char *path, st_rag_index_stats *stt, bool *changed) {
    struct stat sb;
    if (stat(path, &sb) != 0) return st__fail(ST_ERR_IO, "%s: stat: %s", path, strerror(errno));
    int64_t old_id;
    char old_sha[65];
    ST_TRY(find_file(r, path, &old_id, old_sha));
    if (sb.st_size == 0) {
        st__fail(ST_ERR_FORMAT, "empty file");
        return skip_file(r, path, old_id, stt, changed);
    }
    if ((uint64_t)sb.st_size > r->max_file_bytes) {
        st__fail(ST_ERR_BOUNDS, "over the size limit (%lld bytes > %zu)", (long long)sb.st_size,
                 r->max_file_bytes);
        return skip_file(r, path, old_id, stt, changed);
    }
    char *data = NULL;
    size_t n = 0;
    st_status s = st_text_read_file(path, r->max_file_bytes, &data, &n);
    if (s == ST_ERR_NOMEM) return s;
    if (s != ST_OK) return skip_file(r, path, old_id, stt, changed);
    char sha[65];
    sha256_hex(data, n, sha);
    if (old_id >= 0 && !strcmp(sha, old_sha)) {
        st_free(data);
        stt->files_unchanged++;
        report(r, "unchanged", path, NULL, 0);
        return ST_OK;
    }
    st__rag_format fmt = st__rag_format_of(path);
    st__rag_text t = {0};
    st__rag_chunk *ch = NULL;
    int64_t nch = 0;
    float *vecs = NULL;
    s = st__rag_extract(fmt, data, n, path, 4 * r->max_file_bytes, &t);
    st_free(data);
    if (s == ST_ERR_FORMAT || s == ST_ERR_BOUNDS || s == ST_ERR_UNSUPPORTED) {
        st__rag_text_free(&t);
        return skip_file(r, path, old_id, stt, changed);
    }
    if (s == ST_OK)
        s = st__rag_chunk_text(&t, r->chunk_tokens, r->overlap_tokens,
                               r->lm ? model_count : NULL, r->lm ? (void *)r->lm->tok : NULL, &ch,
                               &nch);
    if (s == ST_OK && nch > 0) {
        vecs = st_malloc((size_t)nch * (size_t)r->dim * sizeof *vecs);
        if (!vecs) s = st__fail(ST_ERR_NOMEM, "rag: no memory for %lld embeddings", (long long)nch);
        st_strbuf ctxt = {0};
        heading_scan hs = {.pos = 0, .hb = -1, .he = -1};
        for (int64_t i = 0; s == ST_OK && i < nch; i++) {
            /* embedded with its context: the document's title and the
             * section heading it sits under (contextual chunk headers) */
            ctxt.len = 0;
            if (ctxt.p) ctxt.p[0] = 0;
            s = chunk_context(&t, ch[i].off, &hs, &ctxt);
            if (s == ST_OK) s = st_strbuf_put(&ctxt, t.buf.p + ch[i].off, (size_t)ch[i].len);
            if (s == ST_OK) s = embed(r, ctxt.p, ctxt.len, vecs + i * r->dim);
        }
        st_strbuf_free(&ctxt);
    }
    /* replace the old chunks */
    if (s == ST_OK && old_id >= 0) s = remove_file_chunks(r, old_id, false);
    int64_t file_id = old_id;
    sqlite3_stmt *st = NULL;
    if (s == ST_OK) {
        s = prep(r, old_id >= 0
                        ? "UPDATE files SET sha256=?2, bytes=?3, mtime=?4, format=?5, text=?6 WHERE id=?7"
                        : "INSERT INTO files(path, sha256, bytes, mtime, format, text) "
                          "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                 &st);
    }
    if (s == ST_OK) {
        if (old_id < 0) sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, sha, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)n);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)sb.st_mtime);
        sqlite3_bind_text(st, 5, st__rag_format_name(fmt), -1, SQLITE_STATIC);
        sqlite3_bind_text64(st, 6, t.buf.p, t.buf.len, SQLITE_STATIC, SQLITE_UTF8);
        if (old_id >= 0) sqlite3_bind_int64(st, 7, old_id);
        if (sqlite3_step(st) != SQLITE_DONE) s = db_fail(r, "writing a file row");
        else if (old_id < 0) file_id = sqlite3_last_insert_rowid(r->db);
    }
    sqlite3_finalize(st);
    st = NULL;
    int64_t first = 0;
    if (s == ST_OK && nch > 0) s = st_vecindex_add(r->vi, r->ctx, nch, vecs, &first);
    sqlite3_stmt *fts = NULL;
    if (s == ST_OK) s = prep(r, "INSERT INTO chunks(id, file_id, ordinal, line_start, line_end, "
                                "n_tokens, text) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)", &st);
    if (s == ST_OK) s = prep(r, "INSERT INTO chunks_fts(rowid, text) VALUES(?1, ?2)", &fts);
    for (int64_t i = 0; s == ST_OK && i < nch; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, first + i);
        sqlite3_bind_int64(st, 2, file_id);
        sqlite3_bind_int64(st, 3, i);
        sqlite3_bind_int(st, 4, ch[i].line_start);
        sqlite3_bind_int(st, 5, ch[i].line_end);
        sqlite3_bind_int(st, 6, ch[i].n_tokens);
        sqlite3_bind_text64(st, 7, t.buf.p + ch[i].off, (sqlite3_uint64)ch[i].len, SQLITE_STATIC,
                            SQLITE_UTF8);
        if (sqlite3_step(st) != SQLITE_DONE) s = db_fail(r, "writing a chunk");
        sqlite3_reset(fts);
        sqlite3_bind_int64(fts, 1, first + i);
        sqlite3_bind_text64(fts, 2, t.buf.p + ch[i].off, (sqlite3_uint64)ch[i].len, SQLITE_STATIC,
                            SQLITE_UTF8);
        if (s == ST_OK && sqlite3_step(fts) != SQLITE_DONE) s = db_fail(r, "writing the FTS index");
    }
    sqlite3_finalize(st);
    sqlite3_finalize(fts);
    if (s == ST_OK) {
        *changed = true;
        stt->files_indexed++;
        stt->chunks_added += nch;
        char warn[300];
        if (t.n_warnings)
            snprintf(warn, sizeof warn, "%d record(s) skipped; the first: %s", t.n_warnings,
                     t.warning);
        report(r, "indexed", path, t.n_warnings ? warn : NULL, nch);
    }
    st__rag_text_free(&t);
    st_free(ch);
    st_free(vecs);
    return s;
}

/* Drops index entries under dir (a folder given to this run) whose files
 * were not seen. seen is sorted. */
static st_status remove_vanished(st_rag *r, const char *dir, const pathlist *seen,
                                 st_rag_index_stats *stt, bool *changed) {
    sqlite3_stmt *st;
    ST_TRY(prep(r, "SELECT id, path FROM files WHERE substr(path, 1, ?2) = ?1", &st));
    size_t nd = strlen(dir);
    char *prefix = st_malloc(nd + 2);
    if (!prefix) {
        sqlite3_finalize(st);
        return st__fail(ST_ERR_NOMEM, "rag: no memory");
    }
    memcpy(prefix, dir, nd);
    if (nd == 0 || dir[nd - 1] != '/') prefix[nd++] = '/';
    prefix[nd] = 0;
    sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)nd);
    int64_t *ids = NULL, n = 0, cap = 0;
    pathlist gone = {0};
    st_status s = ST_OK;
    int rc;
    while (s == ST_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(st, 1);
        if (!p || bsearch(&p, seen->p, (size_t)seen->n, sizeof *seen->p, cmp_str)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *ni = st_realloc(ids, (size_t)cap * sizeof *ids);
            if (!ni) {
                s = st__fail(ST_ERR_NOMEM, "rag: no memory");
                break;
            }
            ids = ni;
        }
        ids[n++] = sqlite3_column_int64(st, 0);
        s = pl_push(&gone, p);
    }
    sqlite3_finalize(st);
    st_free(prefix);
    for (int64_t i = 0; s == ST_OK && i < n; i++) {
        s = remove_file_chunks(r, ids[i], true);
        if (s == ST_OK) {
            stt->files_removed++;
            *changed = true;
            report(r, "removed", gone.p[i], NULL, 0);
        }
    }
    st_free(ids);
    pl_free(&gone);
    return s;
}

/* Rebuilds the vector index from the live chunks when tombstones outnumber
 * them (and number at least COMPACT_MIN): live chunks are renumbered 0..L-1
 * in id order (ascending, so an id is never taken twice mid-way), their
 * vectors copied into a fresh index in that order, and the FTS table is
 * rebuilt with the new ids. Runs inside the indexing transaction; *done
 * says whether it did. */
#define COMPACT_MIN 64
static st_status maybe_compact(st_rag *r, bool *done) {
    *done = false;
    st_vecindex_info info;
    st_vecindex_get_info(r->vi, &info);
    const int64_t live = info.n - info.n_deleted;
    if (info.n_deleted < COMPACT_MIN || info.n_deleted <= live) return ST_OK;
    float *x = st_malloc((size_t)(live > 0 ? live : 1) * (size_t)r->dim * sizeof *x);
    int64_t *old = st_malloc((size_t)(live > 0 ? live : 1) * sizeof *old);
    st_vecindex *nv = NULL;
    st_status s = (x && old) ? ST_OK : st__fail(ST_ERR_NOMEM, "rag: no memory to compact");
    sqlite3_stmt *st = NULL;
    int64_t m = 0;
    if (s == ST_OK) s = prep(r, "SELECT id FROM chunks ORDER BY id", &st);
    int rc = SQLITE_DONE;
    while (s == ST_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const float *v = st_vecindex_vector(r->vi, id);
        if (m >= live || !v || st_vecindex_is_deleted(r->vi, id)) {
            s = st__fail(ST_ERR_FORMAT, "%s: chunk %lld has no live vector", r->dir, (long long)id);
            break;
        }
        memcpy(x + m * r->dim, v, (size_t)r->dim * sizeof *x);
        old[m++] = id;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (s == ST_OK && rc != SQLITE_DONE) s = db_fail(r, "listing chunks");
    if (s == ST_OK) {
        st_vecindex *keep = r->vi;
        r->vi = NULL;
        s = new_vecindex(r);
        nv = r->vi;
        r->vi = keep;
    }
    if (s == ST_OK && m > 0) s = st_vecindex_add(nv, r->ctx, m, x, NULL);
    if (s == ST_OK) s = prep(r, "UPDATE chunks SET id = ?1 WHERE id = ?2", &st);
    for (int64_t i = 0; s == ST_OK && i < m; i++) {
        if (old[i] == i) continue;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, i);
        sqlite3_bind_int64(st, 2, old[i]);
        if (sqlite3_step(st) != SQLITE_DONE) s = db_fail(r, "renumbering chunks");
    }
    sqlite3_finalize(st);
    if (s == ST_OK)
        s = exec(r, "DELETE FROM chunks_fts; "
                    "INSERT INTO chunks_fts(rowid, text) SELECT id, text FROM chunks;");
    st_free(x);
    st_free(old);
    if (s != ST_OK) {
        st_vecindex_free(nv);
        return s;
    }
    st_vecindex_free(r->vi);
    r->vi = nv;
    *done = true;
    return ST_OK;
}

/* Deletes vectors.G.idx files other than the current generation's (left by
 * a run that crashed before its commit). Called inside the write lock. */
static void clean_orphans(st_rag *r) {
    DIR *d = opendir(r->dir);
    if (!d) return;
    struct dirent *e;
    char keep[64];
    snprintf(keep, sizeof keep, "vectors.%lld.idx", (long long)r->gen);
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "vectors.", 8) || strcmp(e->d_name, keep) == 0) continue;
        char *p = join(r->dir, e->d_name);
        if (p) unlink(p);
        st_free(p);
    }
    closedir(d);
}

st_status st_rag_index_paths(st_rag *r, const char *const *paths, int n_paths,
                             st_rag_index_stats *stats) {
    st_rag_index_stats stt = {0};
    if (stats) *stats = stt;
    if (!r || (n_paths > 0 && !paths) || n_paths < 0)
        return st__fail(ST_ERR_INVALID_ARG, "st_rag_index_paths: NULL argument");
    /* resolve the paths before taking the lock */
    pathlist files = {0}, dirs = {0};
    st_status s = ST_OK;
    for (int i = 0; s == ST_OK && i < n_paths; i++) {
        char *rp = realpath(paths[i], NULL);
        struct stat sb;
        if (!rp || stat(rp, &sb) != 0) {
            s = st__fail(ST_ERR_IO, "%s: %s", paths[i], strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            s = pl_push(&dirs, rp);
            if (s == ST_OK) s = walk(rp, r->dir, &files, 0);
        } else if (S_ISREG(sb.st_mode)) {
            s = pl_push(&files, rp);
        } else {
            s = st__fail(ST_ERR_IO, "%s: not a regular file or a folder", paths[i]);
        }
        free(rp);
    }
    bool changed = false, in_tx = false;
    if (s == ST_OK) s = exec(r, "BEGIN IMMEDIATE");
    if (s == ST_OK) {
        in_tx = true;
        s = load_vectors(r); /* another process may have moved the generation */
    }
    if (s == ST_OK) clean_orphans(r);
    stt.files_seen = files.n;
    for (int64_t i = 0; s == ST_OK && i < files.n; i++) s = index_file(r, files.p[i], &stt, &changed);
    if (s == ST_OK && dirs.n) {
        qsort(files.p, (size_t)files.n, sizeof *files.p, cmp_str);
        for (int64_t i = 0; s == ST_OK && i < dirs.n; i++)
            s = remove_vanished(r, dirs.p[i], &files, &stt, &changed);
    }
    char *new_path = NULL;
    bool compacted = false;
    if (s == ST_OK && changed) s = maybe_compact(r, &compacted);
    if (s == ST_OK && compacted) report(r, "compacted", r->dir, NULL, 0);
    if (s == ST_OK && changed) {
        new_path = vec_path(r, r->gen + 1);
        s = new_path ? st_vecindex_save(r->vi, new_path) : st__fail(ST_ERR_NOMEM, "rag: no memory");
        sqlite3_stmt *st = NULL;
        if (s == ST_OK)
            s = prep(r, "INSERT INTO meta(key, value) VALUES('generation', ?1) "
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value", &st);
        if (s == ST_OK) {
            sqlite3_bind_int64(st, 1, r->gen + 1);
            if (sqlite3_step(st) != SQLITE_DONE) s = db_fail(r, "writing the generation");
        }
        sqlite3_finalize(st);
    }
    if (s == ST_OK && in_tx) {
        s = exec(r, "COMMIT");
        if (s == ST_OK) {
            in_tx = false;
            if (changed) {
                r->df_valid = false;
                char *old = vec_path(r, r->gen);
                if (old && r->gen > 0) unlink(old);
                st_free(old);
                r->gen++;
            }
        }
    }
    if (s != ST_OK) {
        char *msg = st_strdup(st_last_error());
        if (in_tx) sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
        if (new_path) unlink(new_path);
        load_vectors(r); /* drop the in-memory changes */
        st__fail(s, "%s", msg ? msg : "rag: indexing failed");
        st_free(msg);
    }
    st_free(new_path);
    if (s == ST_OK) {
        sqlite3_stmt *st;
        if (prep(r, "SELECT count(*) FROM chunks", &st) == ST_OK) {
            if (sqlite3_step(st) == SQLITE_ROW) stt.chunks_total = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
        if (stats) *stats = stt;
    }
    pl_free(&files);
    pl_free(&dirs);
    return s;
}

/* ---- search ----------------------------------------------------------------------- */

typedef struct qbuild {
    st_strbuf b;
    int n;
} qbuild;

static void q_word(void *user, const char *tok, size_t n) {
    qbuild *q = user;
    if (q->n >= MAX_QUERY_TOKENS) return;
    st_strbuf_printf(&q->b, "%s\"%.*s\"", q->n ? " OR " : "", (int)n, tok);
    q->n++;
}

static st_status bm25_list(st_rag *r, const char *query, int64_t n_cand, int64_t **ids,
                           double **scores, int64_t *n) {
    *ids = NULL;
    *scores = NULL;
    *n = 0;
    qbuild q = {0};
    st__rag_words(query, strlen(query), q_word, &q);
    if (q.b.failed) {
        st_strbuf_free(&q.b);
        return st__fail(ST_ERR_NOMEM, "rag: no memory for the query");
    }
    if (q.n == 0) return ST_OK;
    *ids = st_malloc((size_t)n_cand * sizeof **ids);
    *scores = st_malloc((size_t)n_cand * sizeof **scores);
    sqlite3_stmt *st = NULL;
    st_status s = (*ids && *scores) ? ST_OK : st__fail(ST_ERR_NOMEM, "rag: no memory");
    if (s == ST_OK)
        s = prep(r, "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?1 "
                    "ORDER BY bm25(chunks_fts), rowid LIMIT ?2", &st);
    if (s == ST_OK) {
        sqlite3_bind_text(st, 1, q.b.p, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, n_cand);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < n_cand) {
            (*ids)[*n] = sqlite3_column_int64(st, 0);
            (*scores)[*n] = -sqlite3_column_double(st, 1);
            (*n)++;
        }
        if (rc != SQLITE_DONE && rc != SQLITE_ROW) s = db_fail(r, "BM25 query");
    }
    sqlite3_finalize(st);
    st_strbuf_free(&q.b);
    return s;
}

/* Document frequencies of the hashed embedding's buckets over the live
 * chunks (a bucket counts for a chunk when its value is non-zero). */
static st_status compute_df(st_rag *r) {
    if (!r->df) r->df = st_malloc((size_t)r->dim * sizeof *r->df);
    if (!r->df) return st__fail(ST_ERR_NOMEM, "rag: no memory");
    memset(r->df, 0, (size_t)r->dim * sizeof *r->df);
    r->df_chunks = 0;
    sqlite3_stmt *st;
    ST_TRY(prep(r, "SELECT id FROM chunks", &st));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const float *v = st_vecindex_vector(r->vi, sqlite3_column_int64(st, 0));
        if (!v) continue;
        for (int b = 0; b < r->dim; b++) r->df[b] += v[b] != 0.0f;
        r->df_chunks++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(r, "reading chunk ids");
    r->df_valid = true;
    return ST_OK;
}

/* The hashed query, each bucket weighted by its inverse document frequency
 * over the index (BM25's idf, log(1 + (N - df + 0.5) / (df + 0.5))), then
 * re-normalised: chunk vectors carry term frequencies, the query the
 * rarity, so the inner product ranks like TF-IDF. */
static st_status idf_weight(st_rag *r, float *q) {
    if (!r->df_valid) ST_TRY(compute_df(r));
    double norm = 0, N = (double)r->df_chunks;
    for (int b = 0; b < r->dim; b++) {
        if (q[b] == 0.0f) continue;
        double df = (double)r->df[b];
        q[b] *= (float)log(1.0 + (N - df + 0.5) / (df + 0.5));
        norm += (double)q[b] * q[b];
    }
    if (norm > 0) {
        float inv = (float)(1.0 / sqrt(norm));
        for (int b = 0; b < r->dim; b++) q[b] *= inv;
    }
    return ST_OK;
}

static st_status vec_list(st_rag *r, const char *query, int64_t n_cand, int64_t **ids,
                          double **scores, int64_t *n) {
    *ids = NULL;
    *scores = NULL;
    *n = 0;
    if (st_vecindex_size(r->vi) == 0) return ST_OK;
    float *q = st_malloc((size_t)r->dim * sizeof *q);
    int64_t *vi = st_malloc((size_t)n_cand * sizeof *vi);
    float *d = st_malloc((size_t)n_cand * sizeof *d);
    *ids = st_malloc((size_t)n_cand * sizeof **ids);
    *scores = st_malloc((size_t)n_cand * sizeof **scores);
    st_status s = (q && vi && d && *ids && *scores) ? ST_OK : st__fail(ST_ERR_NOMEM, "rag: no memory");
    if (s == ST_OK) s = embed(r, query, strlen(query), q);
    if (s == ST_OK && !r->lm) s = idf_weight(r, q);
    bool any = false;
    for (int i = 0; s == ST_OK && i < r->dim; i++) any |= q[i] != 0;
    if (s == ST_OK && any) {
        st_vec_search_params sp = st_vec_search_default_params();
        sp.k = (int)n_cand;
        sp.ef = (int)(n_cand > 128 ? n_cand : 128);
        s = st_vecindex_search(r->vi, r->ctx, 1, q, &sp, vi, d);
        for (int64_t i = 0; s == ST_OK && i < n_cand; i++) {
            if (vi[i] < 0) break;
            (*ids)[*n] = vi[i];
            (*scores)[*n] = -(double)d[i];
            (*n)++;
        }
    }
    st_free(q);
    st_free(vi);
    st_free(d);
    return s;
}

void st_rag_hits_free(st_rag_hit *hits, int n_hits) {
    if (!hits) return;
    for (int i = 0; i < n_hits; i++) {
        st_free(hits[i].path);
        st_free(hits[i].text);
    }
    st_free(hits);
}

static int64_t rank_in(const int64_t *ids, int64_t n, int64_t id) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] == id) return i + 1;
    return 0;
}

st_status st_rag_search(st_rag *r, const char *query, int k, st_rag_mode mode,
                        st_rag_hit **hits, int *n_hits) {
    if (hits) *hits = NULL;
    if (n_hits) *n_hits = 0;
    if (!r || !query || !hits || !n_hits || k < 1 || k > 10000 ||
        (mode != ST_RAG_HYBRID && mode != ST_RAG_BM25 && mode != ST_RAG_VECTOR))
        return st__fail(ST_ERR_INVALID_ARG, "st_rag_search: NULL argument, k %d outside 1..10000 "
                        "or an unknown mode", k);
    const int64_t n_cand = k; /* hybrid fuses the top k of each list */
    int64_t *bi = NULL, *vi = NULL, nb = 0, nv = 0;
    double *bs = NULL, *vs = NULL;
    /* a long-lived handle (the MCP server) follows runs of other processes */
    int64_t gen = 0;
    st_status s = read_gen(r, &gen);
    if (s == ST_OK && gen != r->gen) s = load_vectors(r);
    if (s != ST_OK) return s;
    if (mode != ST_RAG_VECTOR) s = bm25_list(r, query, n_cand, &bi, &bs, &nb);
    if (s == ST_OK && mode != ST_RAG_BM25) s = vec_list(r, query, n_cand, &vi, &vs, &nv);
    int64_t nf = 0, *fid = NULL;
    double *fsc = NULL;
    if (s == ST_OK) {
        int64_t total = nb + nv;
        fid = st_malloc((size_t)(total ? total : 1) * sizeof *fid);
        fsc = st_malloc((size_t)(total ? total : 1) * sizeof *fsc);
        if (!fid || !fsc) s = st__fail(ST_ERR_NOMEM, "rag: no memory");
        else if (mode == ST_RAG_HYBRID) {
            const int64_t *lists[2] = {bi, vi};
            const int64_t lens[2] = {nb, nv};
            nf = st__rag_rrf(lists, lens, 2, RRF_K, total, fid, fsc);
            if (nf < 0) s = st__fail(ST_ERR_NOMEM, "rag: no memory for the fusion");
        } else {
            nf = mode == ST_RAG_BM25 ? nb : nv;
            if (nf > 0) { /* no hits (an empty query): the lists may be NULL */
                memcpy(fid, mode == ST_RAG_BM25 ? bi : vi, (size_t)nf * sizeof *fid);
                memcpy(fsc, mode == ST_RAG_BM25 ? bs : vs, (size_t)nf * sizeof *fsc);
            }
        }
    }
    st_rag_hit *h = NULL;
    int nh = 0;
    sqlite3_stmt *st = NULL;
    if (s == ST_OK && nf > 0) {
        h = st_calloc((size_t)(nf < k ? nf : k), sizeof *h);
        if (!h) s = st__fail(ST_ERR_NOMEM, "rag: no memory");
        if (s == ST_OK)
            s = prep(r, "SELECT c.line_start, c.line_end, c.text, f.path FROM chunks c "
                        "JOIN files f ON f.id = c.file_id WHERE c.id = ?1", &st);
    }
    for (int64_t i = 0; s == ST_OK && i < nf && nh < k; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, fid[i]);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) continue; /* a vector without a chunk row: never returned */
        if (rc != SQLITE_ROW) {
            s = db_fail(r, "reading a chunk");
            break;
        }
        st_rag_hit *x = &h[nh];
        x->chunk_id = fid[i];
        x->line_start = sqlite3_column_int(st, 0);
        x->line_end = sqlite3_column_int(st, 1);
        const char *txt = (const char *)sqlite3_column_text(st, 2);
        const char *p = (const char *)sqlite3_column_text(st, 3);
        x->text = st_strdup(txt ? txt : "");
        x->path = st_strdup(p ? p : "");
        x->score = fsc[i];
        x->bm25_rank = (int)rank_in(bi, nb, fid[i]);
        x->vec_rank = (int)rank_in(vi, nv, fid[i]);
        nh++;
        if (!x->text || !x->path) s = st__fail(ST_ERR_NOMEM, "rag: no memory");
    }
    sqlite3_finalize(st);
    st_free(bi);
    st_free(bs);
    st_free(vi);
    st_free(vs);
    st_free(fid);
    st_free(fsc);
    if (s != ST_OK) {
        st_rag_hits_free(h, nh);
        return s;
    }
    *hits = h;
    *n_hits = nh;
    return ST_OK;
}

/* ---- ask --------------------------------------------------------------------------- */

static const char *k_default_system =
    "Answer the question using only the numbered sources below. Cite the sources you use as "
    "[n]. If the sources do not contain the answer, say so.";

static st_status render_prompt(st_chat_template t, const char *system, const char *question,
                               const st_rag_hit *src, int n_src, char **out) {
    st_strbuf b = {0};
    if (n_src == 0) st_strbuf_puts(&b, "Sources: none were found.\n\n");
    else st_strbuf_puts(&b, "Sources:\n\n");
    for (int i = 0; i < n_src; i++) {
        const char *slash = strrchr(src[i].path, '/');
        st_strbuf_printf(&b, "[%d] %s:L%d-L%d\n%s\n\n", i + 1, slash ? slash + 1 : src[i].path,
                         src[i].line_start, src[i].line_end, src[i].text);
    }
    st_strbuf_printf(&b, "Question: %s", question);
    if (b.failed) {
        st_strbuf_free(&b);
        return st__fail(ST_ERR_NOMEM, "rag: no memory for the prompt");
    }
    st_chat_message msgs[2] = {{.role = "system", .content = (char *)system},
                               {.role = "user", .content = b.p}};
    st_status s = st_chat_template_render(t, msgs, 2, out);
    st_strbuf_free(&b);
    return s;
}

typedef struct ask_state {
    st_strbuf text;
    st_token_fn fn;
    void *user;
} ask_state;

static int ask_token(void *user, int32_t id, const char *text, size_t n, const st_token_logprob *c,
                     const st_token_logprob *top, int n_top) {
    ask_state *a = user;
    if (n) st_strbuf_put(&a->text, text, n);
    if (a->text.failed) return 1;
    return a->fn ? a->fn(a->user, id, text, n, c, top, n_top) : 0;
}

void st_rag_answer_free(st_rag_answer *a) {
    if (!a) return;
    st_free(a->text);
    st_rag_hits_free(a->sources, a->n_sources);
    st_free(a->cited);
    memset(a, 0, sizeof *a);
}

static bool is_dir(const char *p) {
    struct stat sb;
    return p && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

st_status st_rag_ask(st_rag *r, st_engine *e, const st_tokenizer *tok, const char *question,
                     const st_rag_ask_params *p, st_token_fn fn, void *user,
                     st_rag_answer *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!r || !e || !question || !out)
        return st__fail(ST_ERR_INVALID_ARG, "st_rag_ask: NULL argument");
    st_rag_ask_params dp = st_rag_default_ask_params();
    if (!p) p = &dp;
    const st_lm *lm = st_engine_lm(e);
    if (!tok) tok = lm->tok;
    if (!tok) return st__fail(ST_ERR_INVALID_ARG, "st_rag_ask: the model carries no tokenizer");
    st_rag_hit *hits = NULL;
    int n_hits = 0;
    ST_TRY(st_rag_search(r, question, p->k > 0 ? p->k : 4, p->mode, &hits, &n_hits));
    char *tmpl_text = is_dir(lm->source) ? st_chat_template_read(lm->source) : NULL;
    st_chat_template t = st_chat_template_for(lm, tok, tmpl_text);
    st_free(tmpl_text);
    const char *system = p->system ? p->system : k_default_system;
    const int64_t n_ctx = lm->cfg.n_ctx;
    int64_t reserve = p->gen.max_tokens < n_ctx / 8 ? p->gen.max_tokens : n_ctx / 8;
    if (reserve < 1) reserve = 1;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    st_status s = ST_OK;
    int n_use = n_hits;
    for (;; n_use--) {
        char *prompt = NULL;
        s = render_prompt(t, system, question, hits, n_use, &prompt);
        if (s != ST_OK) break;
        st_free(ids);
        ids = NULL;
        st_encode_opts eo = {.allow_special = true, .add_bos = lm->bos_id >= 0};
        s = st_tokenizer_encode(tok, prompt, strlen(prompt), &eo, &ids, &n_ids);
        st_free(prompt);
        if (s != ST_OK) break;
        if ((int64_t)n_ids + reserve <= n_ctx) break;
        if (n_use <= 1) {
            s = st__fail(ST_ERR_BOUNDS, "rag ask: the prompt with %d source(s) takes %zu tokens; "
                         "with %lld kept for the answer that is over the model's context of "
                         "%lld (index with smaller chunks, or lower k)", n_use, n_ids,
                         (long long)reserve, (long long)n_ctx);
            break;
        }
    }
    /* stops: the template's end of turn, then the caller's */
    const char *stops[17];
    int n_stop = 0;
    const char *ts = st_chat_template_stop(t);
    if (ts) stops[n_stop++] = ts;
    for (int i = 0; i < p->gen.n_stop && n_stop < 17; i++) stops[n_stop++] = p->gen.stop[i];
    st_generate_params gp = p->gen;
    gp.stop = stops;
    gp.n_stop = n_stop;
    ask_state as = {.fn = fn, .user = user};
    if (s == ST_OK) s = st_generate(e, tok, ids, (int64_t)n_ids, &gp, ask_token, &as, &out->stats);
    st_free(ids);
    if (s == ST_OK && as.text.failed) s = st__fail(ST_ERR_NOMEM, "rag: no memory for the answer");
    if (s == ST_OK) {
        out->text = as.text.p ? as.text.p : st_strdup("");
        as.text.p = NULL;
        out->cited = st_malloc((size_t)(n_use > 0 ? n_use : 1) * sizeof *out->cited);
        if (!out->text || !out->cited) s = st__fail(ST_ERR_NOMEM, "rag: no memory");
    }
    st_strbuf_free(&as.text);
    if (s != ST_OK) {
        st_rag_hits_free(hits, n_hits);
        st_rag_answer_free(out);
        return s;
    }
    out->n_cited = st__rag_parse_citations(out->text, n_use, out->cited);
    /* keep the sources that were in the prompt */
    for (int i = n_use; i < n_hits; i++) {
        st_free(hits[i].path);
        st_free(hits[i].text);
    }
    out->sources = hits;
    out->n_sources = n_use;
    return ST_OK;
}

/* ---- documents and indexes --------------------------------------------------------- */

void st_rag_docs_free(st_rag_doc *docs, int n_docs) {
    if (!docs) return;
    for (int i = 0; i < n_docs; i++) st_free(docs[i].path);
    st_free(docs);
}

st_status st_rag_list_docs(st_rag *r, st_rag_doc **docs, int *n_docs) {
    if (docs) *docs = NULL;
    if (n_docs) *n_docs = 0;
    if (!r || !docs || !n_docs) return st__fail(ST_ERR_INVALID_ARG, "st_rag_list_docs: NULL argument");
    sqlite3_stmt *st;
    ST_TRY(prep(r, "SELECT f.path, f.sha256, f.bytes, (SELECT count(*) FROM chunks c WHERE "
                   "c.file_id = f.id) FROM files f ORDER BY f.path", &st));
    st_rag_doc *d = NULL;
    int n = 0, cap = 0, rc;
    st_status s = ST_OK;
    while (s == ST_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            st_rag_doc *nd = st_realloc(d, (size_t)cap * sizeof *d);
            if (!nd) {
                s = st__fail(ST_ERR_NOMEM, "rag: no memory");
                break;
            }
            d = nd;
        }
        memset(&d[n], 0, sizeof d[n]);
        const char *p = (const char *)sqlite3_column_text(st, 0);
        const char *h = (const char *)sqlite3_column_text(st, 1);
        d[n].path = st_strdup(p ? p : "");
        snprintf(d[n].sha256, sizeof d[n].sha256, "%s", h ? h : "");
        d[n].bytes = sqlite3_column_int64(st, 2);
        d[n].n_chunks = sqlite3_column_int64(st, 3);
        n++;
        if (!d[n - 1].path) s = st__fail(ST_ERR_NOMEM, "rag: no memory");
    }
    if (s == ST_OK && rc != SQLITE_DONE) s = db_fail(r, "listing files");
    sqlite3_finalize(st);
    if (s != ST_OK) {
        st_rag_docs_free(d, n);
        return s;
    }
    *docs = d;
    *n_docs = n;
    return ST_OK;
}

st_status st_rag_doc_text(st_rag *r, const char *path, char **text, size_t *n_bytes) {
    if (text) *text = NULL;
    if (n_bytes) *n_bytes = 0;
    if (!r || !path || !text) return st__fail(ST_ERR_INVALID_ARG, "st_rag_doc_text: NULL argument");
    sqlite3_stmt *st;
    ST_TRY(prep(r, "SELECT text FROM files WHERE path = ?1", &st));
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    st_status s = ST_OK;
    if (rc == SQLITE_ROW) {
        const void *b = sqlite3_column_text(st, 0);
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        char *c = st_malloc(n + 1);
        if (!c) s = st__fail(ST_ERR_NOMEM, "rag: no memory");
        else {
            if (n) memcpy(c, b, n);
            c[n] = 0;
            *text = c;
            if (n_bytes) *n_bytes = n;
        }
    } else if (rc == SQLITE_DONE) {
        s = st__fail(ST_ERR_INVALID_ARG, "%s is not in RAG index '%s'", path, r->name);
    } else {
        s = db_fail(r, "reading a document");
    }
    sqlite3_finalize(st);
    return s;
}

st_status st_rag_list_indexes(const char *home, char ***names, int *n_names) {
    if (names) *names = NULL;
    if (n_names) *n_names = 0;
    if (!names || !n_names) return st__fail(ST_ERR_INVALID_ARG, "st_rag_list_indexes: NULL argument");
    char *h = NULL;
    ST_TRY(rag_home(home, &h));
    char *dir = join(h, "rag");
    st_free(h);
    if (!dir) return st__fail(ST_ERR_NOMEM, "rag: no memory");
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) {
        st_status s = errno == ENOENT ? ST_OK : st__fail(ST_ERR_IO, "%s: %s", dir, strerror(errno));
        st_free(dir);
        return s;
    }
    char **out = st_calloc((size_t)(n > 0 ? n : 1), sizeof *out);
    int k = 0;
    st_status s = out ? ST_OK : st__fail(ST_ERR_NOMEM, "rag: no memory");
    for (int i = 0; i < n; i++) {
        if (s == ST_OK && valid_name(ents[i]->d_name)) {
            char *sub = join(dir, ents[i]->d_name), *meta = sub ? join(sub, "meta.json") : NULL;
            struct stat sb;
            if (!meta) s = st__fail(ST_ERR_NOMEM, "rag: no memory");
            else if (stat(meta, &sb) == 0 && !(out[k++] = st_strdup(ents[i]->d_name)))
                s = st__fail(ST_ERR_NOMEM, "rag: no memory");
            st_free(sub);
            st_free(meta);
        }
        free(ents[i]);
    }
    free(ents);
    st_free(dir);
    if (s != ST_OK) {
        for (int i = 0; i < k; i++) st_free(out[i]);
        st_free(out);
        return s;
    }
    *names = out;
    *n_names = k;
    return ST_OK;
}
