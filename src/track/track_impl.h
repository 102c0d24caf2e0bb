/*
 * track_impl.h — internals of the tracking store shared by the files of src/track:
 * the two-backend database layer (db.c), the filter compiler (filter.c)
 * and the store's struct (store.c). Not a public API; tests include it.
 */
#ifndef STRATA_TRACK_IMPL_H
#define STRATA_TRACK_IMPL_H

#include "strata/track.h"

/* ---- database layer (db.c) ---------------------------------------------------
 * One SQL text serves both backends: placeholders are written $1, $2, ...
 * (PostgreSQL's form; SQLite binds them by name). Every value travels as a
 * bound parameter. */
typedef enum { ST__DB_NULL, ST__DB_TEXT, ST__DB_REAL, ST__DB_INT } st__dbtype;

typedef struct st__dbval {
    st__dbtype type;
    const char *s;
    double d;
    int64_t i;
} st__dbval;

static inline st__dbval st__db_text(const char *s) {
    st__dbval v = {s ? ST__DB_TEXT : ST__DB_NULL, s, 0, 0};
    return v;
}
static inline st__dbval st__db_real(double d) {
    st__dbval v = {ST__DB_REAL, NULL, d, 0};
    return v;
}
static inline st__dbval st__db_int(int64_t i) {
    st__dbval v = {ST__DB_INT, NULL, 0, i};
    return v;
}

typedef struct st__db st__db;

/* Rows of a query, every cell as text (NULL for SQL NULL). */
typedef struct st__dbrows {
    int n_rows, n_cols;
    char **cells; /* n_rows * n_cols, each owned */
} st__dbrows;

st_status st__db_open(const char *uri, int busy_timeout_ms, st__db **out);
void st__db_close(st__db *db);
bool st__db_is_pg(const st__db *db);
/* Executes one statement; *changes (may be NULL) gets the rows changed. */
st_status st__db_exec(st__db *db, const char *sql, const st__dbval *p, int n, int64_t *changes);
st_status st__db_query(st__db *db, const char *sql, const st__dbval *p, int n, st__dbrows **out);
void st__dbrows_free(st__dbrows *r);
static inline const char *st__dbrows_get(const st__dbrows *r, int row, int col) {
    return r->cells[(size_t)row * (size_t)r->n_cols + (size_t)col];
}
/* A write transaction (BEGIN IMMEDIATE on SQLite). */
st_status st__db_begin(st__db *db);
st_status st__db_commit(st__db *db);
void st__db_rollback(st__db *db);
/* Inserts rows of n_cols values each (vals: n_rows * n_cols) into table
 * (a constant of the caller, never outside text) in as few statements as
 * the backend allows. */
st_status st__db_insert_rows(st__db *db, const char *table, const char *const *cols, int n_cols,
                             const st__dbval *vals, int64_t n_rows);

/* ---- filter compiler (filter.c) ----------------------------------------------- */
#define ST__FILTER_MAX_PARAMS 256

typedef struct st__sqlfrag {
    char *sql;                            /* owned; refers to runs as r */
    int n_params;
    st__dbval params[ST__FILTER_MAX_PARAMS]; /* strings owned (s) */
} st__sqlfrag;

/* Compiles filter into a boolean SQL expression whose placeholders start
 * at $first_param. An empty filter gives "1=1". */
st_status st__filter_compile(const char *filter, int first_param, st__sqlfrag *out);
/* Compiles a sort key ("-metrics.val_loss") into an ORDER BY list. */
st_status st__sort_compile(const char *sort, int first_param, st__sqlfrag *out);
void st__sqlfrag_free(st__sqlfrag *f);

/* ---- JSON (json.c) ------------------------------------------------------------------ */
struct json_t;
/* A new reference to the run's JSON object (NULL when out of memory). */
struct json_t *st__run_json(const st_run_record *r);

/* ---- helpers ---------------------------------------------------------------------- */
double st__wall_time_s(void);
/* Reads the commit of the git checkout holding dir into out (41 bytes);
 * false when none is found. Reads .git files only. */
bool st__git_commit(const char *dir, char out[41]);

#endif
