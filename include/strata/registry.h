/*
 * strata/registry.h — layer 6: the model hub. A content-addressed registry
 * of models with immutable revisions, movable tags and model cards, kept
 * under STRATA_HOME; an HTTP server that exposes it and a client that pulls
 * from (and pushes to) such a server. docs/L6-hub.md describes the layout
 * on disk, the manifest format and the HTTP API.
 *
 *   STRATA_HOME/hub/
 *     lock                         flock(2): shared for readers, exclusive for writers
 *     blobs/sha256/ab/abcdef…      file contents, named by their SHA-256, read-only
 *     models/NAME/revisions/REV.json   manifests (REV = SHA-256 of the manifest bytes)
 *     models/NAME/tags/TAG         one line: the revision a tag points at
 *     models/NAME/snapshots/REV/   a revision materialized as a directory (hard links)
 *     tmp/                         temporary and partial files (gc removes stale ones)
 *
 * References: NAME (= NAME:latest), NAME:TAG, NAME@REV (REV: the 64 hex digits
 * or a unique prefix of at least 7). Names and tags are 1..128 characters of
 * [A-Za-z0-9._-], not starting with '.' or '-'.
 *
 * Error convention as everywhere (strata/base.h): functions return st_status
 * and leave a message naming the file, the reference or the URL and the fault
 * in st_last_error(). Every manifest, tag file, HTTP response and uploaded
 * body is outside data: malformed manifests, file paths that are absolute or
 * contain "..", names with path separators and declared sizes over
 * ST_REGISTRY_MAX_FILE_BYTES are ST_ERR_FORMAT, never a crash.
 *
 * Concurrency: every writer (push, tag, rm, gc, the commit of a pull or an
 * upload) holds the registry's lock exclusively while it changes manifests,
 * tags or blobs; readers hold it shared. Large copies and downloads happen
 * before the lock is taken, into STRATA_HOME/hub/tmp, so a reader never waits
 * for a download. Several processes may use one registry at once; an
 * st_registry handle itself is not thread-safe (the server serializes its
 * use). A process killed at any point leaves the registry consistent: the
 * tag is written last, after every blob and the manifest are durable.
 */
#ifndef STRATA_REGISTRY_H
#define STRATA_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "strata/hub.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits on outside data. */
#define ST_REGISTRY_MAX_NAME 128                       /* name or tag length */
#define ST_REGISTRY_MAX_PATH 1024                      /* a file path inside a model */
#define ST_REGISTRY_MAX_FILES 100000                   /* files in one revision */
#define ST_REGISTRY_MAX_MANIFEST_BYTES (16u << 20)     /* manifest JSON */
#define ST_REGISTRY_MAX_FILE_BYTES (1ull << 40)        /* one file: 1 TiB */
#define ST_REGISTRY_MAX_CARD_BYTES (64u << 10)         /* YAML front matter */

/* ==== the registry ======================================================= */

typedef struct st_registry st_registry;

/* The STRATA_HOME directory: $STRATA_HOME, else $XDG_DATA_HOME/strata, else
 * $HOME/.local/share/strata. *out is st_malloc'd (free with st_free).
 * Errors: ST_ERR_INVALID_ARG (none of the variables set), ST_ERR_NOMEM. */
st_status st_registry_home(char **out);

/* Opens the registry under home (NULL: st_registry_home()), creating
 * home/hub and its folders when missing. Borrows home for the call.
 * Errors: ST_ERR_IO (names the folder), ST_ERR_NOMEM. */
st_status st_registry_open(const char *home, st_registry **out);
/* Closes the handle (and its lock descriptor). NULL is a no-op. */
void st_registry_close(st_registry *r);
/* STRATA_HOME/hub of the handle. Borrowed. */
const char *st_registry_root(const st_registry *r);

/* One file of a revision. */
typedef struct st_registry_file {
    char *path;           /* relative, '/'-separated, no "." or ".." parts */
    char sha256[65];      /* lowercase hex */
    uint64_t size;        /* bytes */
} st_registry_file;

/* A revision's manifest. Owned by the caller; free with
 * st_registry_manifest_free. files are sorted by path (bytewise). */
typedef struct st_registry_manifest {
    char revision[65];    /* SHA-256 of the canonical manifest JSON */
    char *name;
    char parent[65];      /* "" for the first revision */
    char *author;
    char *message;
    char *time;           /* ISO 8601 UTC, e.g. "2026-11-29T17:00:00Z" */
    bool single_file;     /* pushed as one FILE ("kind": "file"), else a directory */
    int n_files;
    st_registry_file *files;
    uint64_t total_bytes; /* sum of sizes */
} st_registry_manifest;

void st_registry_manifest_free(st_registry_manifest *m);

/* Parses and validates manifest bytes (outside data: from disk or HTTP).
 * Checks: one JSON object with "format": "strata-manifest", "version": 1,
 * "kind": "directory" or "file", a
 * valid name, a parent that is "" / null or 64 hex digits, string author,
 * message and time, and "files": an array of at most ST_REGISTRY_MAX_FILES
 * objects {path, sha256, size} ("kind" "file" needs exactly one) with safe unique paths, 64 lowercase hex
 * digits and 0 <= size <= ST_REGISTRY_MAX_FILE_BYTES. m->revision is the
 * SHA-256 of the canonical form of the manifest (st_registry_manifest_json),
 * whatever the spacing or key order of buf. source names buf in messages.
 * Errors: ST_ERR_FORMAT (names source and the fault), ST_ERR_NOMEM. */
st_status st_registry_manifest_parse(const void *buf, size_t n, const char *source,
                                     st_registry_manifest **out);

/* The canonical JSON of m (sorted keys, no spaces, files sorted by path)
 * into *json (st_malloc'd, NUL-terminated, *n bytes without the NUL); the
 * revision id is its SHA-256. Errors: ST_ERR_NOMEM, ST_ERR_INVALID_ARG. */
st_status st_registry_manifest_json(const st_registry_manifest *m, char **json, size_t *n);

/* Settings of a push. */
typedef struct st_registry_push_params {
    const char *tag;      /* a tag to move to the new revision besides "latest" (NULL: none) */
    const char *message;  /* NULL: "" */
    const char *author;   /* NULL: $USER, else "unknown" */
    /* When not NULL: the text of README.md in the revision (a generated model
     * card), replacing any README.md of the source. */
    const char *card_markdown;
} st_registry_push_params;

st_registry_push_params st_registry_push_default_params(void);

/* Records path (a directory: every regular file below it, recursively,
 * skipping dot-files and symbolic links; or one file, stored under its base
 * name) as a new revision of model name. Each file is hashed while it is
 * copied into tmp/ (no lock held), then, holding the lock: blobs not yet in
 * the store are renamed into it, the manifest (parent: the current "latest",
 * read under the lock) is written, then "latest" and p->tag are moved to it.
 * Pushing content identical to "latest" still makes a new revision when the
 * message or time differs. rev_out (may be NULL) receives the revision id.
 * Borrows everything. Errors: ST_ERR_INVALID_ARG (bad name or tag, empty
 * directory), ST_ERR_IO (names the path), ST_ERR_NOMEM. */
st_status st_registry_push(st_registry *r, const char *path, const char *name,
                           const st_registry_push_params *p, char rev_out[65]);

/* For `strata train --register NAME`: opens the default registry
 * (STRATA_HOME), and pushes model directory dir as a new revision of name,
 * with tag (NULL: only "latest") and message. When card is not NULL, the
 * revision's README.md is a model card generated from it (YAML front matter
 * with the data set and final metrics, then the card's text), while dir is
 * left untouched. rev_out may be NULL. Errors: those of st_registry_open and
 * st_registry_push. */
st_status st_registry_push_dir(const char *dir, const char *name, const char *tag,
                               const char *message, const st_model_card *card,
                               char rev_out[65]);

/* Parses a reference "NAME", "NAME:TAG" or "NAME@REV" into name (and tag or
 * rev prefix; the other left ""). Errors: ST_ERR_INVALID_ARG naming ref. */
st_status st_registry_parse_ref(const char *ref, char name[ST_REGISTRY_MAX_NAME + 1],
                                char tag[ST_REGISTRY_MAX_NAME + 1], char rev[65]);

/* The manifest a reference points at (holding the lock shared).
 * Errors: ST_ERR_INVALID_ARG (bad reference), ST_ERR_IO (no such model, tag
 * or revision; an ambiguous prefix), ST_ERR_FORMAT (a corrupt manifest or
 * tag file, or a manifest whose hash is not its file name), ST_ERR_NOMEM. */
st_status st_registry_get(st_registry *r, const char *ref, st_registry_manifest **out);

/* The directory of a revision, for every command that takes a model:
 *  - when ref names an existing file or directory, *path_out is a copy of ref;
 *  - else ref is a registry reference NAME[:TAG|@REV] in the default registry
 *    (STRATA_HOME); the revision is materialized (once) as
 *    STRATA_HOME/hub/models/NAME/snapshots/REV/ holding its files as hard
 *    links to the blobs (copies when the file system refuses links), and
 *    every file is verified against the manifest (size and SHA-256) on each
 *    call, so a corrupted blob is refused (ST_ERR_FORMAT naming the file).
 *    When the revision is a single file (pushed as FILE), *path_out is that
 *    file's path inside the snapshot, not the directory.
 * The snapshot is shared and read-only: do not write into it (a training run
 * resumed from a registry reference must write its checkpoints elsewhere;
 * replacing a file by rename is harmless, writing into one in place would
 * corrupt the blob). *path_out is st_malloc'd (st_free).
 * Errors: ST_ERR_INVALID_ARG (neither a path nor a valid reference; the
 * message says both), those of st_registry_get, ST_ERR_FORMAT (a file that
 * fails verification), ST_ERR_IO, ST_ERR_NOMEM. */
st_status st_registry_resolve(const char *ref, char **path_out);
/* As st_registry_resolve on an open registry (no path check). */
st_status st_registry_materialize(st_registry *r, const char *ref, char **path_out);

/* ---- listing ---- */

typedef struct st_registry_tag_info {
    char name[ST_REGISTRY_MAX_NAME + 1];
    char revision[65];
} st_registry_tag_info;

typedef struct st_registry_model_info {
    char name[ST_REGISTRY_MAX_NAME + 1];
    int n_revisions;
    int n_tags;
    st_registry_tag_info *tags;       /* sorted by name */
    char **revisions;             /* ids, sorted */
    char latest[65];              /* "" when no latest tag */
} st_registry_model_info;

/* Models in the registry, sorted by name. *out (n entries) is freed with
 * st_registry_models_free. Errors: ST_ERR_IO, ST_ERR_FORMAT, ST_ERR_NOMEM. */
st_status st_registry_list(st_registry *r, st_registry_model_info **out, int *n);
/* One model. Errors: ST_ERR_IO (no such model), ST_ERR_FORMAT, ST_ERR_NOMEM. */
st_status st_registry_model(st_registry *r, const char *name, st_registry_model_info **out);
void st_registry_models_free(st_registry_model_info *m, int n);

/* The history from ref (default NAME = latest) following parents: *out
 * holds up to max_n manifests, newest first, freed with
 * st_registry_manifests_free. A parent that was removed ends the chain.
 * Errors: those of st_registry_get. */
st_status st_registry_log(st_registry *r, const char *ref, int max_n,
                          st_registry_manifest ***out, int *n);
void st_registry_manifests_free(st_registry_manifest **m, int n);

/* ---- changing tags and removing ---- */

/* Points tag of model at the revision ref names (creating or moving it).
 * Errors: ST_ERR_INVALID_ARG (bad tag), those of st_registry_get, ST_ERR_IO. */
st_status st_registry_tag(st_registry *r, const char *ref, const char *tag);

/* NAME:TAG removes the tag; NAME@REV removes the revision, its snapshot and
 * every tag pointing at it; NAME removes the model. Blobs stay until gc.
 * Errors: ST_ERR_IO (no such model/tag/revision), ST_ERR_INVALID_ARG. */
st_status st_registry_rm(st_registry *r, const char *ref);

/* ---- maintenance ---- */

typedef struct st_registry_gc_stats {
    int64_t blobs_removed, bytes_removed;
    int64_t blobs_kept, bytes_kept;
    int64_t tmp_removed;          /* stale temporary files */
    int64_t snapshots_removed;    /* snapshots of removed revisions */
} st_registry_gc_stats;

/* Removes blobs that no manifest references, snapshots of revisions that no
 * longer exist, and stale temporary files (those of processes that are no
 * longer alive, and partial downloads untouched for 24 hours), holding the
 * lock exclusively. Errors: ST_ERR_IO, ST_ERR_FORMAT (a corrupt manifest: gc
 * refuses to guess what it referenced), ST_ERR_NOMEM. */
st_status st_registry_gc(st_registry *r, st_registry_gc_stats *stats);

/* One problem found by verify. */
typedef struct st_registry_problem {
    char what[96];                /* "blob", "manifest", "tag", "missing blob" */
    char detail[512];             /* the path and the fault */
} st_registry_problem;

/* Rehashes every blob (its SHA-256 must be its name) and checks every
 * manifest (parses, hash equals its name, its blobs exist with the declared
 * sizes) and every tag (points at an existing revision). *problems (may be
 * NULL when none) lists what is wrong; free with st_free. Returns ST_OK when
 * the check ran, even if problems were found; *n_blobs and *n_bytes count
 * what was hashed (either may be NULL). Errors: ST_ERR_IO, ST_ERR_NOMEM. */
st_status st_registry_verify(st_registry *r, st_registry_problem **problems, int *n_problems,
                             int64_t *n_blobs, int64_t *n_bytes);

/* SHA-256 of a file into hex (65 bytes) and its size. Errors: ST_ERR_IO. */
st_status st_registry_hash_file(const char *path, char hex[65], uint64_t *size);

/* ---- model cards ---- */

#define ST_CARD_MAX_ITEMS 64

/* The subset of a model card's YAML front matter Strata reads (see
 * st_registry_card_parse). Strings are st_malloc'd; free with
 * st_registry_card_free. */
typedef struct st_registry_card {
    char *license, *base_model;
    int n_datasets, n_tags, n_metrics;
    char *datasets[ST_CARD_MAX_ITEMS];
    char *tags[ST_CARD_MAX_ITEMS];
    char *metric_names[ST_CARD_MAX_ITEMS];
    char *metric_values[ST_CARD_MAX_ITEMS];
    char *body;                   /* the Markdown after the front matter */
} st_registry_card;

/* Parses README.md text: a front matter between "---" lines, of which only
 * top-level "key: value" scalars and "key:" followed by "  - item" lists or
 * "  name: value" maps (metrics) are read; other keys and deeper nesting are
 * skipped. A full YAML parser is not needed for five fields and is not in
 * the dependency list; this reader is bounded (ST_REGISTRY_MAX_CARD_BYTES,
 * ST_CARD_MAX_ITEMS, one level of nesting). Text without front matter is a
 * card with only a body. Errors: ST_ERR_FORMAT (an unterminated or oversized
 * front matter, naming source), ST_ERR_NOMEM. */
st_status st_registry_card_parse(const char *text, size_t n, const char *source,
                                 st_registry_card *out);
void st_registry_card_free(st_registry_card *c);

/* Test hook: when the environment variable STRATA_REGISTRY_TEST_PAUSE is
 * "PHASE:FILE", a push reaching PHASE ("copied": files hashed into tmp/, no
 * lock; "committing": lock held, blobs and manifest durable, tag not yet
 * written) creates FILE and sleeps 60 s, so a test can kill it there. */

/* ==== HTTP: server and client ============================================= */

typedef struct st_hub_server st_hub_server;

typedef struct st_hub_server_params {
    const char *home;       /* STRATA_HOME (NULL: st_registry_home()) */
    const char *host;       /* bind address (default "127.0.0.1") */
    int port;               /* 0: any free port (see st_hub_server_port) */
    const char *api_key;    /* required as "Authorization: Bearer KEY" for uploads;
                               NULL: uploads refused (403) */
    bool log_requests;      /* one line per request on stderr */
    int n_threads;          /* connection threads (default 4) */
} st_hub_server_params;

st_hub_server_params st_hub_server_default_params(void);

/* Starts serving the registry over HTTP/1.1 (libmicrohttpd, its own
 * threads) until st_hub_server_stop. Endpoints (docs/L6-hub.md):
 *   GET  /v1/models                         list (JSON)
 *   GET  /v1/models/NAME                    tags and revisions (JSON)
 *   GET  /v1/models/NAME/tags/TAG           {"revision": REV}
 *   GET  /v1/models/NAME/revisions/REV      the manifest (ETag "REV")
 *   GET|HEAD /v1/blobs/SHA256               the bytes; ETag "SHA256"; Range
 *                                           (206 + Content-Range, 416)
 *   PUT  /v1/blobs/SHA256                   upload, verified (auth)
 *   POST /v1/models/NAME/revisions[?tag=T]  a manifest whose blobs are all
 *                                           present; moves latest (auth)
 * Errors: ST_ERR_IO (cannot bind; names host:port), those of
 * st_registry_open, ST_ERR_NOMEM. */
st_status st_hub_server_start(const st_hub_server_params *p, st_hub_server **out);
/* The bound port. */
int st_hub_server_port(const st_hub_server *s);
/* Requests served so far whose path starts with prefix (e.g. "/v1/blobs/H"
 * counts downloads of blob H; NULL: all). For tests and benches. */
int64_t st_hub_server_count(const st_hub_server *s, const char *prefix);
/* Stops the server (waits for its threads). NULL is a no-op. */
void st_hub_server_stop(st_hub_server *s);

/* Where a pull's time went, for benches and the curious (st_hub_pull fills
 * it when st_hub_client_params.stats is set; wall-clock seconds summed over
 * the blobs downloaded). The receiving thread writes what arrives; a second
 * thread reads it back and hashes it meanwhile, so receive and hash overlap
 * and their sum exceeds transfer_s when the pipeline works. */
typedef struct st_hub_pull_stats {
    double total_s;       /* the whole st_hub_pull call */
    double transfer_s;    /* HTTP transfers of blobs (connect to last byte) */
    double receive_s;     /* receiving thread, outside write(2): curl's recv + callbacks */
    double write_s;       /* receiving thread, inside write(2) into the page cache */
    double hash_s;        /* verifying thread: SHA-256 */
    double readback_s;    /* verifying thread: reading written bytes back (page cache) */
    double hash_tail_s;   /* after the last byte arrived, waiting for the hash to finish */
    double fsync_s;       /* final fsync of each blob (writeback not yet done) */
    double commit_s;      /* under the lock: rename into the store, manifest, tag */
    double receive_cpu_s; /* CPU time (user + system) of the receiving thread in transfers */
    double verify_cpu_s;  /* CPU time of the verifying thread */
    uint64_t bytes;       /* blob bytes received */
} st_hub_pull_stats;

typedef struct st_hub_client_params {
    const char *api_key;              /* for uploads (NULL: none) */
    uint64_t max_recv_bytes_per_s;    /* download rate limit (0: none) */
    /* Called as bytes arrive (done counts blobs already present too). */
    void (*progress)(void *user, uint64_t done_bytes, uint64_t total_bytes);
    void *progress_user;
    int64_t *blobs_fetched;           /* when not NULL: += blobs downloaded (not skipped) */
    int64_t *bytes_fetched;           /* when not NULL: += blob bytes received over the network */
    st_hub_pull_stats *stats;         /* when not NULL: zeroed, then filled by st_hub_pull */
    /* How a blob is verified and made durable (the defaults are measured best;
     * docs/L6-hub.md): false (default) hashes on a second thread that reads the
     * written bytes back while the next ones arrive; true hashes each piece on
     * the receiving thread as it arrives (one core; what pull did before). */
    bool hash_on_receiving_thread;
    /* Starts the kernel's writeback every this many bytes written, so the fsync
     * before the commit finds little left (0: default 16 MiB; UINT64_MAX:
     * never, one fsync of the whole blob at the end). */
    uint64_t writeback_every_bytes;
} st_hub_client_params;

st_hub_client_params st_hub_client_default_params(void);

/* Pulls ref (NAME[:TAG|@REV], REV in full when given) from the hub at url
 * (e.g. "http://127.0.0.1:8080") into r. The manifest is fetched and checked
 * (its SHA-256 must equal the revision; paths and sizes validated); each
 * blob not already in r downloads into hub/tmp/SHA.partial, resuming a
 * partial file with a Range request, is hashed as it arrives (by default on
 * a second thread that this call starts and joins, reading the written
 * bytes back) and, when its hash and size match, is fsynced and kept; only
 * when every blob is verified are they
 * moved into the store, the manifest written and then the tag (TAG, or
 * latest for NAME@REV too) moved — holding the lock only for that commit.
 * rev_out may be NULL. Errors: ST_ERR_IO (network, HTTP status; names the
 * URL), ST_ERR_FORMAT (a hash or size mismatch, a malformed manifest or
 * response; names the URL), ST_ERR_NOMEM. */
st_status st_hub_pull(st_registry *r, const char *url, const char *ref,
                      const st_hub_client_params *p, char rev_out[65]);

/* Uploads revision ref of r to the hub at url: blobs the server lacks (HEAD
 * says 404) are PUT, then the manifest is POSTed with tag (NULL: latest
 * only). Needs p->api_key. Errors: ST_ERR_IO (network, HTTP status 401/403
 * etc.; names the URL), those of st_registry_get. */
st_status st_hub_push_remote(st_registry *r, const char *ref, const char *url,
                             const char *tag, const st_hub_client_params *p);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_REGISTRY_H */
