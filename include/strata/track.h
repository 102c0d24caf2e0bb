/*
 * strata/track.h — layer 7: experiment tracking.
 *
 * A tracking store records every run: its experiment, status, start and end,
 * command line, the git commit of the code, host, seed and parent run; its
 * parameters, tags, metrics (key, value, step, wall time) and artifacts
 * (files stored content-addressed by SHA-256 under STRATA_HOME/blobs and
 * referenced by hash). docs/L7-tracking.md has the schema and a worked
 * example.
 *
 * Two backends behind one URI:
 *   sqlite:///abs/path.db, sqlite://rel/path.db or a plain path  SQLite (WAL
 *       mode, busy timeout and retries: many processes may log at once);
 *   postgresql://... or postgres://...  PostgreSQL through libpq (any
 *       libpq connection URI), the same schema.
 * The default URI is STRATA_TRACKING_URI when set, else SQLite at
 * STRATA_HOME/tracking.db (STRATA_HOME: $XDG_DATA_HOME/strata, else
 * ~/.local/share/strata). Both schemas carry a migrations table with a
 * version; opening a store creates or upgrades it.
 *
 * Writing: st_track_run_start opens a run (status running); metrics are
 * buffered in the run handle and written in one transaction by
 * st_track_flush (which also updates the run's heartbeat), or when the
 * buffer holds ST_TRACK_FLUSH_POINTS points. st_track_run_end flushes and
 * sets the final status. A run that is never ended is not left running:
 * st_track_run_free marks it failed, and the reaper (st_track_reap, run by
 * st_track_open and st_track_list_runs) marks failed every running run
 * whose process is gone (same host, pid no longer alive) or whose heartbeat
 * is older than st_track_params.stale_s.
 *
 * Reading: runs are selected with a filter in a small language,
 *   metrics.val_loss < 1.6 and params.n_layer = 4 and tags.x = 'y'
 *   and status = 'finished'
 * (grammar in docs/L7-tracking.md) compiled into SQL in which every value
 * and every key is a bound parameter; a bad filter fails with
 * ST_ERR_INVALID_ARG and a message giving the position of the fault.
 *
 * Threads: a store handle and its run handles belong to one thread at a
 * time. Several processes (and several handles) may share one store.
 * Errors as everywhere (strata/base.h): st_status plus st_last_error().
 */
#ifndef STRATA_TRACK_H
#define STRATA_TRACK_H

#include "strata/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Current schema version (the migrations table holds the applied ones). */
#define ST_TRACK_SCHEMA_VERSION 1
/* A run's metric buffer is written when it holds this many points. */
#define ST_TRACK_FLUSH_POINTS 8192
/* Longest key (parameter, metric, tag) and longest parameter/tag value. */
#define ST_TRACK_MAX_KEY 250
#define ST_TRACK_MAX_VALUE 8000

typedef struct st_track st_track;         /* an open store */
typedef struct st_track_run st_track_run; /* a run being logged */

/* Run status; values only grow. */
typedef enum st_run_status {
    ST_RUN_RUNNING = 0,
    ST_RUN_FINISHED = 1,
    ST_RUN_FAILED = 2,
    ST_RUN_KILLED = 3,
    ST_RUN_STATUS_COUNT_
} st_run_status;
/* "running", "finished", "failed", "killed" ("unknown" outside the enum). */
const char *st_run_status_name(st_run_status s);

typedef struct st_track_params {
    const char *uri;     /* NULL: st_track_default_uri */
    int busy_timeout_ms; /* SQLite: wait this long for a lock (default 15000) */
    double stale_s;      /* reap running runs silent this long (default 900) */
    bool reap_on_open;   /* run the reaper when opening (default true) */
} st_track_params;
st_track_params st_track_default_params(void);

/* STRATA_HOME into buf (see above; the folder is not created).
 * Errors: ST_ERR_INVALID_ARG (buffer too small, no HOME). */
st_status st_track_home(char *buf, size_t n);
/* The URI used when none is given: STRATA_TRACKING_URI, else
 * sqlite://STRATA_HOME/tracking.db. Errors as st_track_home. */
st_status st_track_default_uri(char *buf, size_t n);

/* Opens (creating when absent, migrating when old) the store named by
 * p->uri. For SQLite the parent folder is created. *out is owned by the
 * caller (st_track_close). Errors: ST_ERR_INVALID_ARG (bad URI),
 * ST_ERR_IO (cannot open/connect; names the URI without its password),
 * ST_ERR_FORMAT (the schema is newer than this program: upgrade strata),
 * ST_ERR_INTERNAL (SQL errors, with the database's message). */
st_status st_track_open(const st_track_params *p, st_track **out);
/* Closes the store. Run handles must be freed first. NULL is a no-op. */
void st_track_close(st_track *t);
/* The URI the store was opened with, password masked. Borrowed. */
const char *st_track_uri(const st_track *t);
/* "sqlite" or "postgresql". */
const char *st_track_backend(const st_track *t);

/* ---- writing a run -------------------------------------------------------- */

typedef struct st_run_start {
    const char *experiment; /* NULL: "default" (created on first use) */
    const char *name;       /* NULL: "run-<first 8 hex of the id>" */
    const char *command;    /* the command line, for people (may be NULL) */
    const char *source_dir; /* folder whose git commit is recorded (NULL: cwd) */
    int64_t seed;           /* -1: none */
    const char *parent_id;  /* a parent run's id (NULL: none); must exist */
} st_run_start;
st_run_start st_run_start_default(void);

/* Starts a run: inserts it with status running, start time now, host,
 * pid, and the git commit found by reading <source_dir>/.git (no git
 * process). *out borrows t (close t only after freeing the run).
 * Errors: ST_ERR_INVALID_ARG (unknown parent, too long names), database
 * errors as st_track_open. */
st_status st_track_run_start(st_track *t, const st_run_start *rs, st_track_run **out);
/* The run's id (32 lowercase hex digits). Borrowed from the handle. */
const char *st_track_run_id(const st_track_run *r);

/* Parameters and tags are written at once (upsert: a key logged again
 * takes the new value). Parameter values that parse as numbers are also
 * stored as numbers, so filters compare them numerically.
 * Errors: ST_ERR_INVALID_ARG (empty or too long key/value), database. */
st_status st_track_log_param(st_track_run *r, const char *key, const char *value);
st_status st_track_set_tag(st_track_run *r, const char *key, const char *value);

/* Buffers one metric point (wall time now). Flushes by itself when the
 * buffer is full. NaN and infinities are kept as NULL (SQLite) or as
 * themselves (PostgreSQL). Errors: ST_ERR_INVALID_ARG, ST_ERR_NOMEM,
 * database errors of the automatic flush. */
st_status st_track_log_metric(st_track_run *r, const char *key, double value, int64_t step);
/* Writes buffered points in one transaction and updates the heartbeat.
 * On failure the points stay buffered (a later flush retries). */
st_status st_track_flush(st_track_run *r);
/* Points buffered and not yet written. */
size_t st_track_pending(const st_track_run *r);

/* Copies the file at path into the blob store (STRATA_HOME/blobs/sha256/
 * <first 2 hex>/<hex>, the layout of the hub registry's blobs; temp file,
 * fsync, rename; an existing blob is kept) and records it under name (NULL: the file's base name) with its hash and size. The
 * hash goes to sha256_hex when not NULL (65 bytes). Errors: ST_ERR_IO
 * (names the file), database. */
st_status st_track_log_artifact(st_track_run *r, const char *path, const char *name,
                                char *sha256_hex);

/* Flushes and ends the run with status (FINISHED, FAILED or KILLED) and
 * the end time. The handle stays valid (free it with st_track_run_free). */
st_status st_track_run_end(st_track_run *r, st_run_status status);
/* Frees the handle. A run not yet ended is flushed and marked failed
 * (best effort; errors are logged). NULL is a no-op. */
void st_track_run_free(st_track_run *r);

/* The folder of blobs (sha256_hex NULL: STRATA_HOME/blobs/sha256) or the
 * path of one blob into buf. Errors: ST_ERR_INVALID_ARG (not 64 hex digits,
 * buffer too small). */
st_status st_track_blob_path(const char *sha256_hex, char *buf, size_t n);

/* ---- kill handling for commands ---------------------------------------------
 * st_track_catch_signals installs handlers for SIGINT, SIGTERM and SIGHUP
 * that only record the signal (async-signal-safe); a long loop asks
 * st_track_signal_caught() each step and, when non-zero, ends its run with
 * ST_RUN_KILLED and exits. A second signal kills at once (the reaper then
 * marks the run failed). */
void st_track_catch_signals(void);
int st_track_signal_caught(void);

/* ---- reading ------------------------------------------------------------------- */

typedef struct st_track_kv {
    char *key, *value;
} st_track_kv;

typedef struct st_track_metric_summary {
    char *key;
    double last;       /* value at the highest step (NaN when NULL) */
    int64_t last_step;
    double min, max;   /* over the run */
    int64_t n_points;
} st_track_metric_summary;

typedef struct st_track_artifact {
    char *name;
    char sha256[65];
    int64_t bytes;
} st_track_artifact;

/* One run with everything logged about it except the metric histories.
 * Strings are owned by the record; NULL where unknown. */
typedef struct st_run_record {
    char id[33];
    char *experiment, *name, *command, *git_commit, *host, *parent_id;
    st_run_status status;
    double start_time, end_time, heartbeat; /* Unix seconds; end NaN while running */
    int64_t seed, pid;                      /* -1 when none */
    int n_params, n_tags, n_metrics, n_artifacts;
    st_track_kv *params, *tags;             /* sorted by key */
    st_track_metric_summary *metrics;       /* sorted by key */
    st_track_artifact *artifacts;
} st_run_record;

/* Reads one run; id may be a unique prefix (at least 4 digits).
 * *out is owned by the caller (st_run_record_free). Errors:
 * ST_ERR_INVALID_ARG (no such run, or an ambiguous prefix), database. */
st_status st_track_get_run(st_track *t, const char *id, st_run_record **out);
void st_run_record_free(st_run_record *rec);

typedef struct st_run_query {
    const char *experiment; /* NULL: all */
    const char *filter;     /* NULL or "": all (see the top of this file) */
    const char *sort;       /* a filter identifier, '-' first for descending
                               (NULL: "-start_time") */
    int64_t limit;          /* <= 0: no limit */
} st_run_query;

typedef struct st_run_list {
    int n;
    st_run_record **runs;
} st_run_list;

/* Runs the reaper, then selects runs. *out is owned by the caller
 * (st_run_list_free). Errors: ST_ERR_INVALID_ARG (bad filter or sort key:
 * the message gives the 1-based column), database. */
st_status st_track_list_runs(st_track *t, const st_run_query *q, st_run_list **out);
void st_run_list_free(st_run_list *l);

/* One metric's history, ordered by step then wall time. */
typedef struct st_metric_series {
    char *key;
    int64_t n;
    int64_t *step;
    double *value; /* NaN for NULL */
    double *wall_time;
} st_metric_series;
/* Every point of metric key of run id (the full id). n may be 0. */
st_status st_track_metric_history(st_track *t, const char *id, const char *key,
                                  st_metric_series **out);
void st_metric_series_free(st_metric_series *s);

/* Experiment names, sorted; *out is an array of n owned strings (free each
 * and the array with st_free). */
st_status st_track_list_experiments(st_track *t, char ***out, int *n);

/* Deletes a run and everything logged about it (blobs stay; the hub's gc
 * removes unreferenced ones). Errors: ST_ERR_INVALID_ARG (no such run). */
st_status st_track_delete_run(st_track *t, const char *id);

/* Marks failed every running run whose process is gone or whose heartbeat
 * is older than stale_s; *n_reaped (may be NULL) gets the count. */
st_status st_track_reap(st_track *t, int *n_reaped);

/* Checks a filter without running it. Errors: ST_ERR_INVALID_ARG with the
 * position. */
st_status st_track_filter_check(const char *filter);

/* Logs a `strata train` metrics.jsonl (one JSON object per line with a
 * "step") into run r: every other numeric field becomes a metric at that
 * step. *n_points (may be NULL) gets the count. Lines longer than 64 KiB,
 * non-objects and a missing or non-integer step are ST_ERR_FORMAT naming
 * the file and the line. */
st_status st_track_import_metrics_jsonl(st_track_run *r, const char *path, int64_t *n_points);

/* ---- JSON and the dashboard -------------------------------------------------------- */

/* A run as one JSON object: id, experiment, name, status, start_time,
 * end_time (null while running), heartbeat, command, git_commit, host, pid,
 * seed, parent_id, params {k: "v"}, tags {k: "v"}, metrics {k: {last,
 * last_step, min, max, n}} (NaN as null), artifacts [{name, sha256,
 * bytes}]. *json is owned by the caller (st_free). A list is an array of
 * them. flags: 0 compact, 1 indented. Errors: ST_ERR_NOMEM. */
st_status st_run_record_to_json(const st_run_record *rec, int flags, char **json);
st_status st_run_list_to_json(const st_run_list *l, int flags, char **json);

typedef struct st_track_ui st_track_ui;

typedef struct st_track_ui_params {
    const char *host; /* address to bind (default "127.0.0.1") */
    int port;         /* 0: any free port (st_track_ui_port tells which) */
} st_track_ui_params;
st_track_ui_params st_track_ui_default_params(void);

/* Starts the dashboard's HTTP server (libmicrohttpd, one internal thread
 * that owns every use of t until st_track_ui_stop; the caller must not use
 * t meanwhile). Pages: / (run table; ?filter=F&sort=KEY&experiment=E),
 * /run/ID (metric charts as inline SVG), /compare?ids=A,B,... (curves
 * overlaid), /api/runs (same query as /), /api/runs/ID,
 * /api/runs/ID/metrics?key=K. Errors: ST_ERR_INVALID_ARG (bad host),
 * ST_ERR_IO (cannot bind). */
st_status st_track_ui_start(st_track *t, const st_track_ui_params *p, st_track_ui **out);
int st_track_ui_port(const st_track_ui *ui);
/* Stops the server (waits for its thread) and frees the handle. NULL ok. */
void st_track_ui_stop(st_track_ui *ui);

/* Renders one dashboard page without HTTP (what the server sends): path
 * as in the URL, query as "a=1&b=2" (percent-encoded; NULL for none).
 * *body (st_free) and *content_type (static) on success; *http_status is
 * 200, 400 (bad filter: the page says why) or 404. Errors: database,
 * ST_ERR_NOMEM. */
st_status st_track_ui_render(st_track *t, const char *path, const char *query, int *http_status,
                             char **body, size_t *n_body, const char **content_type);

/* ---- the training adapter ------------------------------------------------------------
 * What `strata train` calls so that every run is logged, in four lines.
 * Tracking never stops training: when the store cannot be opened (or
 * STRATA_TRACKING=off), begin warns once and gives a NULL log, and every
 * other call takes NULL as a no-op. Errors while logging are warnings. */
typedef struct st_train_log st_train_log;

/* Opens the store (uri NULL: the default), starts a run (experiment NULL:
 * "default"; the command line from argv; the git commit of the current
 * folder; seed), logs every scalar top-level key of config_json (may be
 * NULL) as a parameter and installs the signal handlers of
 * st_track_catch_signals. *out may be NULL afterwards (see above). */
void st_train_log_begin(const char *uri, const char *experiment, int argc, char **argv,
                        const char *config_json, int64_t seed, st_train_log **out);
/* Logs one evaluation (NaN values are skipped) and flushes. */
void st_train_log_eval(st_train_log *l, int64_t step, double train_loss, double val_loss,
                       double lr, double tokens_per_s, double elapsed_s);
/* Buffers one step's training loss as metric "loss" (written at the next
 * evaluation or when the buffer fills). */
void st_train_log_step(st_train_log *l, int64_t step, double loss);
/* The signal caught by the handlers (0: none): the loop should stop and
 * end the run with ST_RUN_KILLED. Works with a NULL log too. */
int st_train_log_signal(const st_train_log *l);
/* Records model_file (may be NULL) as an artifact, ends the run with
 * status, closes the store and frees l. NULL is a no-op. */
void st_train_log_end(st_train_log *l, st_run_status status, const char *model_file);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_TRACK_H */
