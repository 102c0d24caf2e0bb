/*
 * ingest.c — text, JSON Lines, CSV and Parquet inputs into a dataset
 * directory of token shards (st_ingest in strata/data.h).
 *
 * Pipeline, one input at a time in the given order: hash the file
 * (SHA-256, libcrypto), then a format-specific source yields documents
 * (.txt: the mmap'd file; .jsonl: the column of each line through jansson;
 * .csv: an RFC 4180 record reader — written here because no Debian C
 * library reads CSV with quoted newlines into memory we control, and it is
 * forty lines; .parquet: st_parquet_read_column per row group). Documents
 * are gathered in batches (at most 16 MiB of text, their bytes in an arena
 * reset per batch), tokenized in parallel on a pool (threads claim
 * documents one by one through an atomic counter and write each result
 * into the document's own slot), then appended in document order to the
 * split's shard buffer, which is written out (st_shard_write) whenever it
 * holds shard_tokens ids. Output therefore never depends on the thread
 * count.
 *
 * Resume: after finished inputs (at most every journal_interval_s) the
 * partial shard buffers go to {train,val}.pending.<seq>.bin and the state to
 * ingest.journal.json (both written atomically, pending files first; the
 * journal names them, so a crash between the two leaves the previous
 * journal valid). A rerun whose parameters, tokenizer hash and input list
 * match the journal's, and whose finished inputs still hash the same,
 * restores the buffers and continues after the last finished input.
 *
 * Ownership: everything is freed before st_ingest returns; the tokenizer is
 * borrowed. Threading: the calling thread drives; the pool's threads only
 * run the tokenizer (thread-safe) on documents they claimed.
 */
#include "strata/data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/tokenizer_impl.h"
#include "strata/backend.h"
#include "strata/parquet.h"

#define BATCH_BYTES ((size_t)16 << 20)
#define BATCH_DOCS 65536

/* ---- small helpers --------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static bool doc_is_val(uint64_t seed, uint64_t k, double frac) {
    if (frac <= 0) return false;
    uint64_t h = splitmix64(splitmix64(seed ^ 0x53504c4954444f43ULL /* "SPLITDOC" */) ^ k);
    return (double)(h >> 11) * 0x1.0p-53 < frac;
}

static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = st_malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

typedef struct strlist {
    char **v;
    int n, cap;
} strlist;

static st_status strlist_push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **v = st_realloc(l->v, sizeof *v * (size_t)cap);
        if (!v) return st__fail(ST_ERR_NOMEM, "ingest: no memory for the input list");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = st_strdup(s);
    if (!l->v[l->n]) return st__fail(ST_ERR_NOMEM, "ingest: no memory for the input list");
    l->n++;
    return ST_OK;
}

static void strlist_free(strlist *l) {
    for (int i = 0; i < l->n; i++)
        st_free(l->v[i]);
    st_free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

typedef enum { IN_NONE = 0, IN_TXT, IN_JSONL, IN_CSV, IN_PARQUET } in_kind;

static in_kind kind_of(const char *path) {
    const char *dot = strrchr(path, '.'), *sl = strrchr(path, '/');
    if (!dot || (sl && dot < sl)) return IN_NONE;
    if (!strcmp(dot, ".txt")) return IN_TXT;
    if (!strcmp(dot, ".jsonl")) return IN_JSONL;
    if (!strcmp(dot, ".csv")) return IN_CSV;
    if (!strcmp(dot, ".parquet")) return IN_PARQUET;
    return IN_NONE;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every supported file under dir, recursively, appended to out sorted. */
static st_status scan_dir(const char *dir, strlist *out, int depth) {
    if (depth > 64) return st__fail(ST_ERR_INVALID_ARG, "%s: directories nested too deep", dir);
    DIR *d = opendir(dir);
    if (!d) return st__fail(ST_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    strlist here = {0};
    st_status s = ST_OK;
    struct dirent *e;
    while (s == ST_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* hidden files, . and .. */
        char *p = path_join(dir, e->d_name);
        if (!p) {
            s = st__fail(ST_ERR_NOMEM, "%s: no memory", dir);
            break;
        }
        s = strlist_push(&here, p);
        st_free(p);
    }
    closedir(d);
    if (here.n) qsort(here.v, (size_t)here.n, sizeof *here.v, cmp_str);
    for (int i = 0; s == ST_OK && i < here.n; i++) {
        struct stat sb;
        if (stat(here.v[i], &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode))
            s = scan_dir(here.v[i], out, depth + 1);
        else if (S_ISREG(sb.st_mode) && kind_of(here.v[i]) != IN_NONE)
            s = strlist_push(out, here.v[i]);
    }
    strlist_free(&here);
    return s;
}

static st_status expand_one(const char *in, strlist *out) {
    struct stat sb;
    if (stat(in, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return scan_dir(in, out, 0);
        if (kind_of(in) == IN_NONE)
            return st__fail(ST_ERR_INVALID_ARG,
                            "%s: unsupported input type (expected .txt, .jsonl, .csv or .parquet)",
                            in);
        return strlist_push(out, in);
    }
    if (strpbrk(in, "*?[")) {
        glob_t g;
        int r = glob(in, 0, NULL, &g);
        if (r == GLOB_NOMATCH) return st__fail(ST_ERR_IO, "%s: the pattern matches no file", in);
        if (r != 0) return st__fail(ST_ERR_IO, "%s: glob failed", in);
        st_status s = ST_OK;
        for (size_t i = 0; s == ST_OK && i < g.gl_pathc; i++) {
            if (stat(g.gl_pathv[i], &sb) != 0) continue;
            if (S_ISDIR(sb.st_mode))
                s = scan_dir(g.gl_pathv[i], out, 0);
            else if (kind_of(g.gl_pathv[i]) != IN_NONE)
                s = strlist_push(out, g.gl_pathv[i]);
        }
        globfree(&g);
        return s;
    }
    return st__fail(ST_ERR_IO, "%s: no such file or directory", in);
}

/* ---- document sources ------------------------------------------------------- */

typedef struct doc {
    const char *p;
    size_t n;
    int32_t *ids;
    size_t n_ids;
} doc;

typedef struct source {
    in_kind kind;
    const char *path;
    const char *column;
    size_t max_doc_bytes;
    /* mapped file (txt, jsonl, csv) */
    const char *buf;
    size_t n, pos;
    uint64_t line; /* 1-based line of pos */
    bool txt_done;
    int csv_col, csv_ncols;
    char *field; /* csv scratch */
    size_t field_cap;
    /* parquet */
    st_parquet_file *pq;
    int pq_col, pq_rg;
    st_pq_column *pq_c;
    int64_t pq_i;
} source;

static st_status grow_field(source *s, size_t need) {
    if (need <= s->field_cap) return ST_OK;
    size_t cap = s->field_cap ? s->field_cap : 256;
    while (cap < need)
        cap *= 2;
    char *f = st_realloc(s->field, cap);
    if (!f) return st__fail(ST_ERR_NOMEM, "%s: no memory for a CSV field", s->path);
    s->field = f;
    s->field_cap = cap;
    return ST_OK;
}

/* One CSV record from s->pos. For each field calls back through want: the
 * field with index `want` is unescaped into s->field (*fn its length).
 * Returns the number of fields in *nf; *eof when no record was left. */
static st_status csv_record(source *s, int want, size_t *fn, int *nf, bool *eof) {
    const char *b = s->buf;
    size_t i = s->pos, n = s->n;
    uint64_t line0 = s->line;
    *nf = 0;
    *fn = 0;
    *eof = false;
    /* skip empty lines */
    while (i < n && (b[i] == '\n' || (b[i] == '\r' && i + 1 < n && b[i + 1] == '\n'))) {
        i += b[i] == '\r' ? 2 : 1;
        s->line++;
        line0 = s->line;
    }
    if (i >= n) {
        s->pos = i;
        *eof = true;
        return ST_OK;
    }
    for (;;) {
        int idx = (*nf)++;
        size_t len = 0;
        bool keep = idx == want;
        if (i < n && b[i] == '"') {
            i++;
            for (;;) {
                if (i >= n)
                    return st__fail(ST_ERR_FORMAT, "%s:%" PRIu64 ": unterminated quoted field",
                                    s->path, line0);
                char c = b[i];
                if (c == '"') {
                    if (i + 1 < n && b[i + 1] == '"') {
                        i++;
                    } else {
                        i++;
                        break;
                    }
                } else if (c == '\n') {
                    s->line++;
                }
                if (keep) {
                    ST_TRY(grow_field(s, len + 1));
                    s->field[len] = c;
                }
                len++;
                i++;
            }
            if (i < n && b[i] != ',' && b[i] != '\n' &&
                !(b[i] == '\r' && i + 1 < n && b[i + 1] == '\n'))
                return st__fail(ST_ERR_FORMAT,
                                "%s:%" PRIu64 ": unexpected character after a closing quote "
                                "(a quote inside a quoted field must be doubled)",
                                s->path, s->line);
        } else {
            size_t j = i;
            while (j < n && b[j] != ',' && b[j] != '\n' &&
                   !(b[j] == '\r' && j + 1 < n && b[j + 1] == '\n')) {
                if (b[j] == '"')
                    return st__fail(ST_ERR_FORMAT,
                                    "%s:%" PRIu64 ": a quote inside an unquoted field (RFC 4180 "
                                    "wants the field quoted and the quote doubled)",
                                    s->path, s->line);
                j++;
            }
            len = j - i;
            if (keep) {
                ST_TRY(grow_field(s, len + 1));
                memcpy(s->field, b + i, len);
            }
            i = j;
        }
        if (keep) {
            if (len > s->max_doc_bytes)
                return st__fail(ST_ERR_FORMAT,
                                "%s:%" PRIu64 ": a field of %zu bytes, over the "
                                "document limit of %zu",
                                s->path, line0, len, s->max_doc_bytes);
            *fn = len;
        }
        if (i < n && b[i] == ',') {
            i++;
            continue;
        }
        if (i < n) { /* end of record */
            i += b[i] == '\r' ? 2 : 1;
            s->line++;
        }
        break;
    }
    s->pos = i;
    (void)line0;
    return ST_OK;
}

static st_status source_open(source *s) {
    if (s->kind == IN_PARQUET) {
        ST_TRY(st_parquet_open(s->path, NULL, &s->pq));
        s->pq_col = st_parquet_find_column(s->pq, s->column);
        if (s->pq_col < 0)
            return st__fail(ST_ERR_FORMAT, "%s: no column \"%s\" (use --column)", s->path,
                            s->column);
        return ST_OK;
    }
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open: %s", s->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return st__fail(ST_ERR_IO, "%s: not a regular file", s->path);
    }
    s->n = (size_t)sb.st_size;
    s->line = 1;
    if (s->n) {
        void *m = mmap(NULL, s->n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            s->n = 0;
            return st__fail(ST_ERR_IO, "%s: mmap failed: %s", s->path, strerror(errno));
        }
        madvise(m, s->n, MADV_SEQUENTIAL);
        s->buf = m;
    }
    close(fd);
    if (s->kind == IN_CSV) {
        size_t fn;
        int nf;
        bool eof;
        /* the header: find the column */
        size_t p0 = s->pos;
        uint64_t l0 = s->line;
        ST_TRY(csv_record(s, -1, &fn, &nf, &eof));
        if (eof) return st__fail(ST_ERR_FORMAT, "%s: empty CSV file (no header row)", s->path);
        s->csv_ncols = nf;
        s->csv_col = -1;
        size_t pend = s->pos;
        uint64_t lend = s->line;
        for (int c = 0; c < nf && s->csv_col < 0; c++) {
            s->pos = p0;
            s->line = l0;
            ST_TRY(csv_record(s, c, &fn, &nf, &eof));
            size_t skip = (fn >= 3 && c == 0 && !memcmp(s->field, "\xEF\xBB\xBF", 3)) ? 3 : 0;
            if (fn - skip == strlen(s->column) && !memcmp(s->field + skip, s->column, fn - skip))
                s->csv_col = c;
        }
        s->pos = pend;
        s->line = lend;
        if (s->csv_col < 0)
            return st__fail(ST_ERR_FORMAT,
                            "%s:%" PRIu64 ": the header row has no column \"%s\" "
                            "(use --column)",
                            s->path, l0, s->column);
    }
    return ST_OK;
}

static void source_close(source *s) {
    if (s->buf) munmap((void *)s->buf, s->n);
    s->buf = NULL;
    st_free(s->field);
    s->field = NULL;
    st_pq_column_free(s->pq_c);
    s->pq_c = NULL;
    st_parquet_close(s->pq);
    s->pq = NULL;
}

/* Next document into p, n (bytes in the arena or the map); got false at the end. */
static st_status source_next(source *s, st_arena *ar, const char **p, size_t *n, bool *got) {
    *got = false;
    switch (s->kind) {
    case IN_TXT:
        if (s->txt_done) return ST_OK;
        s->txt_done = true;
        if (s->n > s->max_doc_bytes)
            return st__fail(ST_ERR_FORMAT, "%s: %zu bytes, over the document limit of %zu", s->path,
                            s->n, s->max_doc_bytes);
        *p = s->buf ? s->buf : "";
        *n = s->n;
        s->pos = s->n;
        *got = true;
        return ST_OK;
    case IN_JSONL:
        while (s->pos < s->n) {
            const char *b = s->buf + s->pos;
            const char *nl = memchr(b, '\n', s->n - s->pos);
            size_t len = nl ? (size_t)(nl - b) : s->n - s->pos;
            uint64_t line = s->line;
            s->pos += len + (nl ? 1 : 0);
            s->line++;
            size_t k = 0;
            while (k < len && (b[k] == ' ' || b[k] == '\t' || b[k] == '\r'))
                k++;
            if (k == len) continue; /* blank line */
            json_error_t je;
            json_t *o = json_loadb(b, len, 0, &je);
            if (!o)
                return st__fail(ST_ERR_FORMAT, "%s:%" PRIu64 ": invalid JSON (column %d): %s",
                                s->path, line, je.column, je.text);
            json_t *v = json_is_object(o) ? json_object_get(o, s->column) : NULL;
            if (!json_is_string(v)) {
                bool obj = json_is_object(o);
                json_decref(o);
                return st__fail(ST_ERR_FORMAT,
                                obj ? "%s:%" PRIu64 ": field \"%s\" is missing or not a string"
                                    : "%s:%" PRIu64 ": not a JSON object (looking for \"%s\")",
                                s->path, line, s->column);
            }
            size_t vn = json_string_length(v);
            char *d = vn > s->max_doc_bytes ? NULL : st_arena_alloc(ar, vn + 1, 1);
            if (d) memcpy(d, json_string_value(v), vn);
            json_decref(o);
            if (vn > s->max_doc_bytes)
                return st__fail(ST_ERR_FORMAT,
                                "%s:%" PRIu64 ": a document of %zu bytes, over the "
                                "limit of %zu",
                                s->path, line, vn, s->max_doc_bytes);
            if (!d) return st__fail(ST_ERR_NOMEM, "%s:%" PRIu64 ": no memory", s->path, line);
            *p = d;
            *n = vn;
            *got = true;
            return ST_OK;
        }
        return ST_OK;
    case IN_CSV: {
        size_t fn;
        int nf;
        bool eof;
        uint64_t line = s->line;
        ST_TRY(csv_record(s, s->csv_col, &fn, &nf, &eof));
        if (eof) return ST_OK;
        if (nf != s->csv_ncols)
            return st__fail(ST_ERR_FORMAT, "%s:%" PRIu64 ": %d fields, the header has %d", s->path,
                            line, nf, s->csv_ncols);
        char *d = st_arena_alloc(ar, fn + 1, 1);
        if (!d) return st__fail(ST_ERR_NOMEM, "%s:%" PRIu64 ": no memory", s->path, line);
        memcpy(d, s->field, fn);
        *p = d;
        *n = fn;
        *got = true;
        return ST_OK;
    }
    case IN_PARQUET:
        for (;;) {
            if (s->pq_c && s->pq_i < s->pq_c->n_values) {
                const uint8_t *b;
                size_t bn;
                int64_t i = s->pq_i++;
                if (!st_pq_column_string(s->pq_c, i, &b, &bn)) continue; /* null: no document */
                if (bn > s->max_doc_bytes)
                    return st__fail(ST_ERR_FORMAT,
                                    "%s: row group %d entry %lld: %zu bytes, over the "
                                    "document limit",
                                    s->path, s->pq_rg - 1, (long long)i, bn);
                char *d = st_arena_alloc(ar, bn + 1, 1);
                if (!d) return st__fail(ST_ERR_NOMEM, "%s: no memory", s->path);
                memcpy(d, b, bn);
                *p = d;
                *n = bn;
                *got = true;
                return ST_OK;
            }
            st_pq_column_free(s->pq_c);
            s->pq_c = NULL;
            if (s->pq_rg >= st_parquet_n_row_groups(s->pq)) return ST_OK;
            ST_TRY(st_parquet_read_column(s->pq, s->pq_rg, s->pq_col, &s->pq_c));
            s->pq_rg++;
            s->pq_i = 0;
            if (s->pq_c->max_rep != 0 || (s->pq_c->physical != ST_PQ_BYTE_ARRAY &&
                                          s->pq_c->physical != ST_PQ_FIXED_LEN_BYTE_ARRAY))
                return st__fail(ST_ERR_FORMAT, "%s: column \"%s\" is not a flat string column",
                                s->path, s->column);
        }
    default:
        return st__fail(ST_ERR_INVALID_ARG, "%s: unsupported input type", s->path);
    }
}

/* Bytes of the input consumed so far (for progress; Parquet: by row groups). */
static uint64_t source_pos(const source *s, uint64_t file_bytes) {
    if (s->kind != IN_PARQUET) return s->pos;
    int ng = s->pq ? st_parquet_n_row_groups(s->pq) : 0;
    return ng ? file_bytes * (uint64_t)s->pq_rg / (uint64_t)ng : 0;
}

/* ---- parallel tokenization ------------------------------------------------------ */

typedef struct tok_job {
    const st_tokenizer *tok;
    doc *docs;
    size_t n_docs;
    atomic_size_t next;
    atomic_size_t first_err; /* lowest failing index, SIZE_MAX: none */
    st_status err_status;
    char err_msg[512];
    pthread_mutex_t err_mu;
} tok_job;

static void tok_worker(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    tok_job *j = arg;
    st_encode_opts o = {.allow_special = false, .add_bos = false};
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n_docs) break;
        if (i > atomic_load(&j->first_err)) continue;
        doc *d = &j->docs[i];
        st_status s = st_tokenizer_encode(j->tok, d->p, d->n, &o, &d->ids, &d->n_ids);
        if (s != ST_OK) {
            pthread_mutex_lock(&j->err_mu);
            if (i < atomic_load(&j->first_err)) {
                atomic_store(&j->first_err, i);
                j->err_status = s;
                snprintf(j->err_msg, sizeof j->err_msg, "%s", st_last_error());
            }
            pthread_mutex_unlock(&j->err_mu);
        }
    }
}

/* ---- the writer state ---------------------------------------------------------- */

typedef struct split_buf {
    int32_t *buf;
    uint64_t n;
    int next_shard;
} split_buf;

typedef struct ingest {
    const char *dir;
    st_ingest_params p;
    uint8_t tok_sha[32];
    char tok_hex[65];
    uint32_t vocab;
    int32_t sep;
    split_buf sp[2];
    st_manifest_shard *shards;
    int n_shards, cap_shards;
    st_manifest_source *srcs; /* one per input; filled as inputs finish */
    int n_srcs_done;
    uint64_t n_docs, n_tokens[2];
    int journal_seq;
    char *pending_files[2];
    json_t *fingerprint;
} ingest;

static st_status flush_shard(ingest *g, int split) {
    split_buf *b = &g->sp[split];
    char name[64];
    snprintf(name, sizeof name, "%s-%06d.bin", split ? "val" : "train", b->next_shard);
    char *path = path_join(g->dir, name);
    if (!path) return st__fail(ST_ERR_NOMEM, "ingest: no memory");
    st_status s = st_shard_write(path, b->buf, (size_t)b->n, g->vocab, g->tok_sha);
    st_free(path);
    if (s != ST_OK) return s;
    if (g->n_shards == g->cap_shards) {
        int cap = g->cap_shards ? 2 * g->cap_shards : 16;
        st_manifest_shard *v = st_realloc(g->shards, sizeof *v * (size_t)cap);
        if (!v) return st__fail(ST_ERR_NOMEM, "ingest: no memory");
        g->shards = v;
        g->cap_shards = cap;
    }
    st_manifest_shard *e = &g->shards[g->n_shards];
    e->file = st_strdup(name);
    if (!e->file) return st__fail(ST_ERR_NOMEM, "ingest: no memory");
    e->split = (st_split)split;
    e->n_tokens = b->n;
    g->n_shards++;
    b->next_shard++;
    b->n = 0;
    return ST_OK;
}

static st_status append(ingest *g, int split, const int32_t *ids, size_t n) {
    split_buf *b = &g->sp[split];
    while (n > 0) {
        uint64_t room = g->p.shard_tokens - b->n;
        size_t take = room < n ? (size_t)room : n;
        memcpy(b->buf + b->n, ids, take * sizeof *ids);
        b->n += take;
        ids += take;
        n -= take;
        g->n_tokens[split] += take;
        if (b->n == g->p.shard_tokens) ST_TRY(flush_shard(g, split));
    }
    return ST_OK;
}

/* ---- journal ------------------------------------------------------------------------ */

static json_t *make_fingerprint(const ingest *g, const strlist *inputs) {
    json_t *f = json_object();
    char buf[64];
    json_object_set_new(f, "tokenizer_sha256", json_string(g->tok_hex));
    json_object_set_new(f, "column", json_string(g->p.column));
    snprintf(buf, sizeof buf, "%.17g", g->p.val_fraction);
    json_object_set_new(f, "val_fraction", json_string(buf));
    snprintf(buf, sizeof buf, "%" PRIu64, g->p.shard_tokens);
    json_object_set_new(f, "shard_tokens", json_string(buf));
    snprintf(buf, sizeof buf, "%" PRIu64, g->p.seed);
    json_object_set_new(f, "seed", json_string(buf));
    json_t *in = json_array();
    for (int i = 0; i < inputs->n; i++)
        json_array_append_new(in, json_string(inputs->v[i]));
    json_object_set_new(f, "inputs", in);
    return f;
}

static st_status save_journal(ingest *g) {
    int seq = g->journal_seq + 1;
    char *newp[2] = {NULL, NULL};
    st_status s = ST_OK;
    for (int k = 0; k < 2 && s == ST_OK; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s.pending.%d.bin", k ? "val" : "train", seq);
        newp[k] = st_strdup(name);
        char *path = path_join(g->dir, name);
        if (!newp[k] || !path)
            s = st__fail(ST_ERR_NOMEM, "ingest: no memory");
        else
            s = st_shard_write(path, g->sp[k].buf, (size_t)g->sp[k].n, g->vocab, g->tok_sha);
        st_free(path);
    }
    json_t *j = json_object();
    json_object_set_new(j, "version", json_integer(1));
    json_object_set(j, "fingerprint", g->fingerprint);
    json_object_set_new(j, "inputs_done", json_integer(g->n_srcs_done));
    json_t *src = json_array();
    for (int i = 0; i < g->n_srcs_done; i++) {
        const st_manifest_source *d = &g->srcs[i];
        json_t *e = json_object();
        json_object_set_new(e, "path", json_string(d->path));
        json_object_set_new(e, "bytes", json_integer((json_int_t)d->n_bytes));
        json_object_set_new(e, "sha256", json_string(d->sha256));
        json_object_set_new(e, "documents", json_integer((json_int_t)d->n_docs));
        json_object_set_new(e, "tokens", json_integer((json_int_t)d->n_tokens));
        json_array_append_new(src, e);
    }
    json_object_set_new(j, "sources", src);
    json_t *sh = json_array();
    for (int i = 0; i < g->n_shards; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "file", json_string(g->shards[i].file));
        json_object_set_new(e, "split", json_string(g->shards[i].split ? "val" : "train"));
        json_object_set_new(e, "tokens", json_integer((json_int_t)g->shards[i].n_tokens));
        json_array_append_new(sh, e);
    }
    json_object_set_new(j, "shards", sh);
    json_object_set_new(j, "documents", json_integer((json_int_t)g->n_docs));
    json_object_set_new(j, "train_tokens", json_integer((json_int_t)g->n_tokens[0]));
    json_object_set_new(j, "val_tokens", json_integer((json_int_t)g->n_tokens[1]));
    for (int k = 0; k < 2; k++) {
        json_t *e = json_object();
        json_object_set_new(e, "file", json_string(newp[k] ? newp[k] : ""));
        json_object_set_new(e, "tokens", json_integer((json_int_t)g->sp[k].n));
        json_object_set_new(e, "next_shard", json_integer(g->sp[k].next_shard));
        json_object_set_new(j, k ? "pending_val" : "pending_train", e);
    }
    char *text = s == ST_OK ? json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (s == ST_OK && !text) s = st__fail(ST_ERR_NOMEM, "ingest: cannot serialize the journal");
    if (s == ST_OK) {
        char *path = path_join(g->dir, "ingest.journal.json");
        s = path ? st__write_file_atomic(path, text, strlen(text))
                 : st__fail(ST_ERR_NOMEM, "ingest: no memory");
        st_free(path);
    }
    free(text);
    if (s != ST_OK) {
        for (int k = 0; k < 2; k++)
            st_free(newp[k]);
        return s;
    }
    for (int k = 0; k < 2; k++) { /* the previous pending files are no longer named */
        if (g->pending_files[k]) {
            char *path = path_join(g->dir, g->pending_files[k]);
            if (path) unlink(path);
            st_free(path);
            st_free(g->pending_files[k]);
        }
        g->pending_files[k] = newp[k];
    }
    g->journal_seq = seq;
    return ST_OK;
}

/* Restores the state of a matching journal. *resumed false (and the state
 * untouched) when there is none or it does not match. */
static st_status load_journal(ingest *g, const strlist *inputs, bool *resumed) {
    *resumed = false;
    char *path = path_join(g->dir, "ingest.journal.json");
    if (!path) return st__fail(ST_ERR_NOMEM, "ingest: no memory");
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    st_free(path);
    if (!j) return ST_OK;
    const char *why = NULL;
    json_t *fp = json_object_get(j, "fingerprint"), *src = json_object_get(j, "sources"),
           *sh = json_object_get(j, "shards");
    if (!json_equal(fp, g->fingerprint))
        why = "the inputs or parameters changed";
    else if (!json_is_array(src) || !json_is_array(sh) || json_array_size(src) > (size_t)inputs->n)
        why = "the journal is malformed";
    for (size_t i = 0; !why && i < json_array_size(src); i++) {
        json_t *e = json_array_get(src, i);
        const char *sha = json_string_value(json_object_get(e, "sha256"));
        json_t *by = json_object_get(e, "bytes"), *dc = json_object_get(e, "documents"),
               *tk = json_object_get(e, "tokens");
        if (!sha || strlen(sha) != 64 || !json_is_integer(by) || !json_is_integer(dc) ||
            !json_is_integer(tk)) {
            why = "the journal is malformed";
            break;
        }
        char hex[65];
        uint64_t nb = 0;
        if (st_sha256_file(inputs->v[i], hex, &nb) != ST_OK || strcmp(hex, sha) != 0 ||
            nb != (uint64_t)json_integer_value(by)) {
            why = "a finished input changed";
            st_clear_error();
            break;
        }
        st_manifest_source *d = &g->srcs[i];
        memcpy(d->sha256, hex, 65);
        d->n_bytes = nb;
        d->n_docs = (uint64_t)json_integer_value(dc);
        d->n_tokens = (uint64_t)json_integer_value(tk);
    }
    /* pending buffers */
    st_shard *pend[2] = {NULL, NULL};
    for (int k = 0; !why && k < 2; k++) {
        json_t *e = json_object_get(j, k ? "pending_val" : "pending_train");
        const char *file = json_string_value(json_object_get(e, "file"));
        json_t *tk = json_object_get(e, "tokens"), *ns = json_object_get(e, "next_shard");
        if (!file || strchr(file, '/') || !json_is_integer(tk) || !json_is_integer(ns) ||
            json_integer_value(tk) < 0 || (uint64_t)json_integer_value(tk) >= g->p.shard_tokens ||
            json_integer_value(ns) < 0 || json_integer_value(ns) > 999999) {
            why = "the journal is malformed";
            break;
        }
        char *pp = path_join(g->dir, file);
        if (!pp || st_shard_open(pp, true, &pend[k]) != ST_OK ||
            st_shard_get_info(pend[k])->n_tokens != (uint64_t)json_integer_value(tk) ||
            memcmp(st_shard_get_info(pend[k])->tokenizer_sha256, g->tok_sha, 32) != 0 ||
            st_shard_get_info(pend[k])->vocab_size != g->vocab) {
            why = "a pending shard is missing or does not match";
            st_clear_error();
        }
        st_free(pp);
    }
    for (size_t i = 0; !why && i < json_array_size(sh); i++) {
        json_t *e = json_array_get(sh, i);
        const char *file = json_string_value(json_object_get(e, "file"));
        const char *sp = json_string_value(json_object_get(e, "split"));
        json_t *tk = json_object_get(e, "tokens");
        if (!file || strchr(file, '/') || !sp || !json_is_integer(tk)) {
            why = "the journal is malformed";
            break;
        }
        char *pp = path_join(g->dir, file);
        st_shard *x = NULL;
        if (!pp || st_shard_open(pp, false, &x) != ST_OK ||
            st_shard_get_info(x)->n_tokens != (uint64_t)json_integer_value(tk)) {
            why = "a finished shard is missing or does not match";
            st_clear_error();
        }
        st_shard_free(x);
        st_free(pp);
    }
    if (!why) {
        /* commit */
        for (size_t i = 0; i < json_array_size(sh); i++) {
            json_t *e = json_array_get(sh, i);
            st_manifest_shard ms = {
                .file = (char *)json_string_value(json_object_get(e, "file")),
                .split = strcmp(json_string_value(json_object_get(e, "split")), "val")
                             ? ST_SPLIT_TRAIN
                             : ST_SPLIT_VAL,
                .n_tokens = (uint64_t)json_integer_value(json_object_get(e, "tokens"))};
            if (g->n_shards == g->cap_shards) {
                int cap = g->cap_shards ? 2 * g->cap_shards : 16;
                st_manifest_shard *v = st_realloc(g->shards, sizeof *v * (size_t)cap);
                if (!v) {
                    why = "no memory";
                    break;
                }
                g->shards = v;
                g->cap_shards = cap;
            }
            ms.file = st_strdup(ms.file);
            if (!ms.file) {
                why = "no memory";
                break;
            }
            g->shards[g->n_shards++] = ms;
        }
    }
    if (why && !strcmp(why, "no memory")) {
        for (int k = 0; k < 2; k++)
            st_shard_free(pend[k]);
        json_decref(j);
        return st__fail(ST_ERR_NOMEM, "ingest: %s: no memory to resume", g->dir);
    }
    if (!why) {
        g->n_srcs_done = (int)json_array_size(src);
        for (int i = 0; i < g->n_srcs_done; i++)
            g->srcs[i].path = st_strdup(inputs->v[i]);
        g->n_docs = (uint64_t)json_integer_value(json_object_get(j, "documents"));
        g->n_tokens[0] = (uint64_t)json_integer_value(json_object_get(j, "train_tokens"));
        g->n_tokens[1] = (uint64_t)json_integer_value(json_object_get(j, "val_tokens"));
        for (int k = 0; k < 2; k++) {
            json_t *e = json_object_get(j, k ? "pending_val" : "pending_train");
            g->sp[k].next_shard = (int)json_integer_value(json_object_get(e, "next_shard"));
            g->sp[k].n = st_shard_get_info(pend[k])->n_tokens;
            st_shard_read(pend[k], 0, (size_t)g->sp[k].n, g->sp[k].buf);
            g->pending_files[k] = st_strdup(json_string_value(json_object_get(e, "file")));
        }
        g->journal_seq = 0;
        for (int k = 0; k < 2; k++) { /* continue the numbering after the journal's */
            const char *f = g->pending_files[k];
            const char *dot = f ? strchr(f, '.') : NULL;
            int seq = dot ? atoi(dot + 9) : 0; /* ".pending." */
            if (seq > g->journal_seq) g->journal_seq = seq;
        }
        *resumed = true;
    } else {
        st_log_msg(ST_LOG_WARN,
                   "ingest: %s: ignoring the journal of an earlier run (%s); starting over", g->dir,
                   why);
        for (int i = 0; i < inputs->n; i++)
            memset(&g->srcs[i], 0, sizeof g->srcs[i]);
    }
    for (int k = 0; k < 2; k++)
        st_shard_free(pend[k]);
    json_decref(j);
    return ST_OK;
}

/* A fresh start: an old manifest must not make the directory look
 * complete, and an old journal or pending files must not linger. */
static void remove_stale(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        size_t l = strlen(n);
        bool pending = (!strncmp(n, "train.pending.", 14) || !strncmp(n, "val.pending.", 12)) &&
                       l > 4 && !strcmp(n + l - 4, ".bin");
        if (pending || !strcmp(n, "manifest.json") || !strcmp(n, "ingest.journal.json")) {
            char *p = path_join(dir, n);
            if (p) unlink(p);
            st_free(p);
        }
    }
    closedir(d);
}

/* ---- the driver ------------------------------------------------------------------------ */

st_ingest_params st_ingest_default_params(void) {
    st_ingest_params p = {.tokenizer = NULL,
                          .tokenizer_name = "custom",
                          .column = "text",
                          .val_fraction = 0.0005,
                          .shard_tokens = (uint64_t)1 << 24,
                          .seed = 1337,
                          .n_threads = 0,
                          .journal_interval_s = 2.0,
                          .stop_after_inputs = 0,
                          .max_doc_bytes = (size_t)1 << 30};
    return p;
}

static st_status run_input(ingest *g, st_pool *pool, st_arena *ar, const char *path, int index,
                           st_ingest_progress *prog, uint64_t bytes_before) {
    st_manifest_source *src = &g->srcs[index];
    src->path = st_strdup(path);
    if (!src->path) return st__fail(ST_ERR_NOMEM, "ingest: no memory");
    ST_TRY(st_sha256_file(path, src->sha256, &src->n_bytes));
    source s = {.kind = kind_of(path),
                .path = path,
                .column = g->p.column,
                .max_doc_bytes = g->p.max_doc_bytes};
    doc *docs = st_malloc(sizeof *docs * BATCH_DOCS);
    if (!docs) return st__fail(ST_ERR_NOMEM, "ingest: no memory");
    st_status st = source_open(&s);
    bool more = true;
    uint64_t tok_before = g->n_tokens[0] + g->n_tokens[1];
    while (st == ST_OK && more) {
        st_arena_reset(ar);
        size_t nd = 0, bytes = 0;
        while (nd < BATCH_DOCS && bytes < BATCH_BYTES) {
            bool got;
            st = source_next(&s, ar, &docs[nd].p, &docs[nd].n, &got);
            if (st != ST_OK || !got) {
                more = false;
                break;
            }
            docs[nd].ids = NULL;
            docs[nd].n_ids = 0;
            bytes += docs[nd].n;
            nd++;
        }
        if (st == ST_OK && nd > 0) {
            tok_job j = {.tok = g->p.tokenizer, .docs = docs, .n_docs = nd};
            atomic_init(&j.next, 0);
            atomic_init(&j.first_err, SIZE_MAX);
            pthread_mutex_init(&j.err_mu, NULL);
            if (nd == 1 || !pool)
                tok_worker(&j, 0, 1);
            else
                st_pool_run(pool, tok_worker, &j);
            pthread_mutex_destroy(&j.err_mu);
            size_t fe = atomic_load(&j.first_err);
            if (fe != SIZE_MAX)
                st = st__fail(j.err_status, "%s: document %" PRIu64 ": %s", path,
                              g->n_docs + (uint64_t)fe, j.err_msg);
            for (size_t i = 0; st == ST_OK && i < nd; i++) {
                int split = doc_is_val(g->p.seed, g->n_docs, g->p.val_fraction) ? 1 : 0;
                if (g->sep >= 0) st = append(g, split, &g->sep, 1);
                if (st == ST_OK) st = append(g, split, docs[i].ids, docs[i].n_ids);
                g->n_docs++;
                src->n_docs++;
            }
            for (size_t i = 0; i < nd; i++)
                st_free(docs[i].ids);
        }
        if (st == ST_OK && g->p.progress) {
            prog->bytes_done = bytes_before + source_pos(&s, src->n_bytes);
            prog->n_docs = g->n_docs;
            prog->n_tokens = g->n_tokens[0] + g->n_tokens[1];
            g->p.progress(g->p.progress_user, prog);
        }
    }
    st_free(docs);
    source_close(&s);
    src->n_tokens = g->n_tokens[0] + g->n_tokens[1] - tok_before;
    return st;
}

st_status st_ingest(const char *const *inputs, int n_inputs, const char *out_dir,
                    const st_ingest_params *params, st_ingest_result *result) {
    double t0 = st_time_s();
    if (result) memset(result, 0, sizeof *result);
    if (!out_dir || !params || (!inputs && n_inputs) || n_inputs < 0)
        return st__fail(ST_ERR_INVALID_ARG, "st_ingest: NULL argument");
    st_ingest_params p = *params;
    if (!p.tokenizer) return st__fail(ST_ERR_INVALID_ARG, "ingest: no tokenizer given");
    if (!p.tokenizer_name) p.tokenizer_name = "custom";
    if (!p.column || !*p.column) p.column = "text";
    if (!(p.val_fraction >= 0 && p.val_fraction < 1))
        return st__fail(ST_ERR_INVALID_ARG, "ingest: val_fraction %g outside [0, 1)",
                        p.val_fraction);
    if (p.shard_tokens == 0 || p.shard_tokens > ((uint64_t)1 << 32))
        return st__fail(ST_ERR_INVALID_ARG, "ingest: shard_tokens %" PRIu64 " outside [1, 2^32]",
                        p.shard_tokens);
    if (p.max_doc_bytes == 0) p.max_doc_bytes = (size_t)1 << 30;
    if (p.n_threads < 0)
        return st__fail(ST_ERR_INVALID_ARG, "ingest: n_threads %d < 0", p.n_threads);

    strlist in = {0};
    st_status s = ST_OK;
    for (int i = 0; s == ST_OK && i < n_inputs; i++)
        s = expand_one(inputs[i], &in);
    if (s == ST_OK && in.n == 0) s = st__fail(ST_ERR_INVALID_ARG, "ingest: no input files");
    if (s != ST_OK) {
        strlist_free(&in);
        return s;
    }
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        s = st__fail(ST_ERR_IO, "%s: cannot create directory: %s", out_dir, strerror(errno));
        strlist_free(&in);
        return s;
    }

    ingest g = {.dir = out_dir, .p = p};
    g.vocab = (uint32_t)st_tokenizer_vocab_size(p.tokenizer);
    g.sep = st_tokenizer_bos_id(p.tokenizer);
    if (g.sep < 0) g.sep = st_tokenizer_eos_id(p.tokenizer);
    st_pool *pool = NULL;
    st_arena *ar = NULL;
    g.srcs = st_calloc((size_t)in.n, sizeof *g.srcs);
    for (int k = 0; k < 2; k++)
        g.sp[k].buf = st_malloc(sizeof(int32_t) * (size_t)p.shard_tokens);
    if (!g.srcs || !g.sp[0].buf || !g.sp[1].buf)
        s = st__fail(ST_ERR_NOMEM, "ingest: no memory for %" PRIu64 "-token shard buffers",
                     p.shard_tokens);
    /* the tokenizer goes into the dataset; its file's hash identifies it */
    char *tok_path = path_join(out_dir, "tokenizer.json");
    if (s == ST_OK && !tok_path) s = st__fail(ST_ERR_NOMEM, "ingest: no memory");
    if (s == ST_OK) s = st_tokenizer_save_json(p.tokenizer, tok_path);
    if (s == ST_OK) s = st_sha256_file(tok_path, g.tok_hex, NULL);
    st_free(tok_path);
    for (int i = 0; s == ST_OK && i < 32; i++) {
        unsigned v;
        sscanf(g.tok_hex + 2 * i, "%2x", &v);
        g.tok_sha[i] = (uint8_t)v;
    }
    if (s == ST_OK) g.fingerprint = make_fingerprint(&g, &in);
    bool resumed = false;
    if (s == ST_OK) s = load_journal(&g, &in, &resumed);
    if (s == ST_OK && !resumed) remove_stale(out_dir);
    if (s == ST_OK) s = st_arena_new((size_t)BATCH_BYTES + ((size_t)1 << 20), &ar);
    st_pool *own_pool = NULL;
    if (p.pool)
        pool = p.pool;
    else if (s == ST_OK && p.n_threads != 1)
        s = st_pool_new(p.n_threads, &own_pool), pool = own_pool;

    st_ingest_progress prog = {.n_inputs = in.n};
    for (int i = 0; i < in.n; i++) {
        struct stat sb;
        if (stat(in.v[i], &sb) == 0) prog.bytes_total += (uint64_t)sb.st_size;
    }
    int skipped = g.n_srcs_done, done_now = 0;
    uint64_t bytes_before = 0;
    for (int i = 0; i < g.n_srcs_done; i++)
        bytes_before += g.srcs[i].n_bytes;
    double last_journal = st_time_s();
    bool stopped = false;
    for (int i = g.n_srcs_done; s == ST_OK && i < in.n; i++) {
        prog.inputs_done = i;
        s = run_input(&g, pool, ar, in.v[i], i, &prog, bytes_before);
        if (s != ST_OK) break;
        bytes_before += g.srcs[i].n_bytes;
        g.n_srcs_done = i + 1;
        done_now++;
        bool stop = p.stop_after_inputs > 0 && done_now >= p.stop_after_inputs && i + 1 < in.n;
        double now = st_time_s();
        if (i + 1 < in.n && (stop || now - last_journal >= p.journal_interval_s)) {
            s = save_journal(&g);
            last_journal = now;
        }
        if (stop) {
            stopped = true;
            break;
        }
    }
    if (s == ST_OK && !stopped) {
        for (int k = 0; s == ST_OK && k < 2; k++)
            if (g.sp[k].n > 0) s = flush_shard(&g, k);
        if (s == ST_OK) {
            st_manifest m = {.version = 1,
                             .tokenizer_name = (char *)p.tokenizer_name,
                             .tokenizer_file = "tokenizer.json",
                             .vocab_size = g.vocab,
                             .token_bytes = g.vocab <= 65536u ? 2 : 4,
                             .separator_id = g.sep,
                             .column = (char *)p.column,
                             .val_fraction = p.val_fraction,
                             .shard_tokens = p.shard_tokens,
                             .seed = p.seed,
                             .n_docs = g.n_docs,
                             .n_tokens = {g.n_tokens[0], g.n_tokens[1]},
                             .n_shards = g.n_shards,
                             .shards = g.shards,
                             .n_sources = in.n,
                             .sources = g.srcs};
            memcpy(m.tokenizer_sha256, g.tok_hex, 65);
            char *mp = path_join(out_dir, "manifest.json");
            s = mp ? st_manifest_write(mp, &m) : st__fail(ST_ERR_NOMEM, "ingest: no memory");
            st_free(mp);
        }
        if (s == ST_OK) { /* committed: the journal and pending files go */
            char *jp = path_join(out_dir, "ingest.journal.json");
            if (jp) unlink(jp);
            st_free(jp);
            for (int k = 0; k < 2; k++)
                if (g.pending_files[k]) {
                    char *pp = path_join(out_dir, g.pending_files[k]);
                    if (pp) unlink(pp);
                    st_free(pp);
                }
        }
    }
    if (result) {
        result->complete = s == ST_OK && !stopped;
        result->n_inputs = in.n;
        result->n_inputs_skipped = skipped;
        result->n_docs = g.n_docs;
        result->n_tokens[0] = g.n_tokens[0];
        result->n_tokens[1] = g.n_tokens[1];
        result->n_shards = g.n_shards;
        result->bytes_in = bytes_before;
        result->seconds = st_time_s() - t0;
    }
    st_pool_free(own_pool);
    st_arena_free(ar);
    for (int k = 0; k < 2; k++) {
        st_free(g.sp[k].buf);
        st_free(g.pending_files[k]);
    }
    for (int i = 0; i < g.n_shards; i++)
        st_free(g.shards[i].file);
    st_free(g.shards);
    if (g.srcs)
        for (int i = 0; i < in.n; i++)
            st_free(g.srcs[i].path);
    st_free(g.srcs);
    json_decref(g.fingerprint);
    strlist_free(&in);
    return s;
}
