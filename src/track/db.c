/*
 * db.c — the tracking store's database layer: one small interface over
 * SQLite (sqlite3) and PostgreSQL (libpq), so store.c writes each query once.
 *
 * SQL is written with PostgreSQL's $1, $2, ... placeholders; SQLite accepts
 * them as named parameters and we bind by name ("$1"), so the same text runs
 * on both. Values are always bound (sqlite3_bind_*, PQexecParams), never
 * spliced into SQL. Results come back as text cells (REALs from SQLite are
 * printed with %.17g so no precision is lost; PostgreSQL prints float8
 * exactly by default since version 12).
 *
 * SQLite: WAL mode, synchronous=NORMAL, a busy timeout, and BEGIN IMMEDIATE
 * for write transactions (a deferred transaction that later needs the write
 * lock can fail with SQLITE_BUSY without waiting); statements that still
 * meet SQLITE_BUSY are retried with a growing sleep. PostgreSQL: one
 * connection, text-format parameters, multi-row INSERTs of up to ~30000
 * parameters per statement for batches.
 *
 * A handle belongs to one thread at a time.
 */
#include "track_impl.h"

#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct st__db {
    sqlite3 *lite;
    PGconn *pg;
    char *where; /* names the store in messages (password masked) */
};

bool st__db_is_pg(const st__db *db) { return db->pg != NULL; }

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Masks the password of a postgresql://user:pw@host URI. */
static char *mask_uri(const char *uri) {
    char *m = st_strdup(uri);
    if (!m) return NULL;
    char *scheme = strstr(m, "://");
    if (!scheme) return m;
    char *auth = scheme + 3;
    char *at = strchr(auth, '@');
    char *slash = strchr(auth, '/');
    if (!at || (slash && slash < at)) return m;
    char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon) return m;
    memmove(colon + 4, at, strlen(at) + 1);
    memcpy(colon, ":***", 4);
    return m;
}

static st_status mkdirs_for(const char *path) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return st__fail(ST_ERR_INVALID_ARG, "%s: path too long", path);
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return st__fail(ST_ERR_IO, "%s: cannot create folder %s: %s", path, buf, strerror(errno));
        *p = '/';
    }
    return ST_OK;
}

st_status st__db_open(const char *uri, int busy_timeout_ms, st__db **out) {
    *out = NULL;
    if (!uri || !*uri) return st__fail(ST_ERR_INVALID_ARG, "tracking: empty store URI");
    st__db *db = st_calloc(1, sizeof *db);
    if (!db) return st__fail(ST_ERR_NOMEM, "tracking: no memory");
    db->where = mask_uri(uri);
    if (!db->where) {
        st_free(db);
        return st__fail(ST_ERR_NOMEM, "tracking: no memory");
    }
    if (strncmp(uri, "postgresql://", 13) == 0 || strncmp(uri, "postgres://", 11) == 0) {
        db->pg = PQconnectdb(uri);
        if (!db->pg || PQstatus(db->pg) != CONNECTION_OK) {
            st_status s = st__fail(ST_ERR_IO, "tracking store %s: cannot connect: %s", db->where,
                                   db->pg ? PQerrorMessage(db->pg) : "out of memory");
            st__db_close(db);
            return s;
        }
        PGresult *r = PQexec(db->pg, "SET client_min_messages = warning");
        PQclear(r);
        *out = db;
        return ST_OK;
    }
    const char *path = uri;
    if (strncmp(uri, "sqlite://", 9) == 0) path = uri + 9;
    else if (strstr(uri, "://")) {
        st_status s = st__fail(ST_ERR_INVALID_ARG,
                               "tracking store %s: unknown scheme (want sqlite://, postgresql:// "
                               "or a file path)", db->where);
        st__db_close(db);
        return s;
    }
    if (!*path) {
        st__db_close(db);
        return st__fail(ST_ERR_INVALID_ARG, "tracking store %s: no file path", uri);
    }
    st_status s = mkdirs_for(path);
    if (s != ST_OK) {
        st__db_close(db);
        return s;
    }
    int rc = sqlite3_open_v2(path, &db->lite, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        s = st__fail(ST_ERR_IO, "tracking store %s: cannot open: %s", path,
                     db->lite ? sqlite3_errmsg(db->lite) : sqlite3_errstr(rc));
        st__db_close(db);
        return s;
    }
    sqlite3_busy_timeout(db->lite, busy_timeout_ms > 0 ? busy_timeout_ms : 15000);
    /* WAL lets readers run beside one writer; switching needs the lock, so
     * retry while another process holds it. */
    for (int attempt = 0;; attempt++) {
        char *err = NULL;
        rc = sqlite3_exec(db->lite, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL,
                          NULL, &err);
        if (rc == SQLITE_OK) break;
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && attempt < 50) {
            sqlite3_free(err);
            sleep_ms(10 + attempt * 10);
            continue;
        }
        s = st__fail(rc == SQLITE_NOTADB ? ST_ERR_FORMAT : ST_ERR_IO,
                     "tracking store %s: cannot set WAL mode: %s", path,
                     err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        st__db_close(db);
        return s;
    }
    *out = db;
    return ST_OK;
}

void st__db_close(st__db *db) {
    if (!db) return;
    if (db->lite) sqlite3_close_v2(db->lite);
    if (db->pg) PQfinish(db->pg);
    st_free(db->where);
    st_free(db);
}

void st__dbrows_free(st__dbrows *r) {
    if (!r) return;
    for (size_t i = 0; i < (size_t)r->n_rows * (size_t)r->n_cols; i++) st_free(r->cells[i]);
    st_free(r->cells);
    st_free(r);
}

/* ---- SQLite ---------------------------------------------------------------- */

static st_status lite_fail(st__db *db, const char *sql, int rc) {
    return st__fail(ST_ERR_INTERNAL, "tracking store %s: %s (in: %.120s)", db->where,
                    db->lite ? sqlite3_errmsg(db->lite) : sqlite3_errstr(rc), sql);
}

static st_status lite_bind(st__db *db, sqlite3_stmt *st, const char *sql, const st__dbval *p,
                           int n) {
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "$%d", i + 1);
        int idx = sqlite3_bind_parameter_index(st, name);
        if (idx == 0) continue; /* not used by this text */
        int rc;
        switch (p[i].type) {
        case ST__DB_TEXT: rc = sqlite3_bind_text(st, idx, p[i].s, -1, SQLITE_STATIC); break;
        case ST__DB_REAL: rc = sqlite3_bind_double(st, idx, p[i].d); break;
        case ST__DB_INT: rc = sqlite3_bind_int64(st, idx, p[i].i); break;
        default: rc = sqlite3_bind_null(st, idx); break;
        }
        if (rc != SQLITE_OK) return lite_fail(db, sql, rc);
    }
    return ST_OK;
}

static st_status lite_prepare(st__db *db, const char *sql, sqlite3_stmt **st) {
    for (int attempt = 0;; attempt++) {
        int rc = sqlite3_prepare_v2(db->lite, sql, -1, st, NULL);
        if (rc == SQLITE_OK) return ST_OK;
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && attempt < 20) {
            sleep_ms(5 + attempt * 5);
            continue;
        }
        return lite_fail(db, sql, rc);
    }
}

/* Steps until done, retrying SQLITE_BUSY; collects rows when rows != NULL. */
static st_status lite_run(st__db *db, sqlite3_stmt *st, const char *sql, st__dbrows *rows) {
    size_t cap = 0;
    for (int attempt = 0;;) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) return ST_OK;
        if (rc == SQLITE_ROW) {
            if (!rows) continue;
            int nc = sqlite3_column_count(st);
            rows->n_cols = nc;
            size_t need = ((size_t)rows->n_rows + 1) * (size_t)nc;
            if (need > cap) {
                size_t nw = cap ? cap * 2 : (size_t)nc * 16;
                while (nw < need) nw *= 2;
                char **c = st_realloc(rows->cells, nw * sizeof *c);
                if (!c) return st__fail(ST_ERR_NOMEM, "tracking: no memory for query rows");
                rows->cells = c;
                cap = nw;
            }
            char **cell = rows->cells + (size_t)rows->n_rows * (size_t)nc;
            for (int c = 0; c < nc; c++) cell[c] = NULL;
            rows->n_rows++;
            for (int c = 0; c < nc; c++) {
                int t = sqlite3_column_type(st, c);
                char num[64];
                const char *txt = NULL;
                if (t == SQLITE_NULL) continue;
                if (t == SQLITE_FLOAT) {
                    snprintf(num, sizeof num, "%.17g", sqlite3_column_double(st, c));
                    txt = num;
                } else if (t == SQLITE_INTEGER) {
                    snprintf(num, sizeof num, "%lld", (long long)sqlite3_column_int64(st, c));
                    txt = num;
                } else {
                    txt = (const char *)sqlite3_column_text(st, c);
                    if (!txt) txt = "";
                }
                cell[c] = st_strdup(txt);
                if (!cell[c]) return st__fail(ST_ERR_NOMEM, "tracking: no memory for query rows");
            }
            continue;
        }
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && attempt < 20 && !rows) {
            attempt++;
            sqlite3_reset(st);
            sleep_ms(5 * attempt);
            continue;
        }
        return lite_fail(db, sql, rc);
    }
}

/* ---- PostgreSQL ------------------------------------------------------------ */

typedef struct pgparams {
    const char **v;
    char *num; /* n * 32 bytes of printed numbers */
} pgparams;

static st_status pg_params(const st__dbval *p, int n, pgparams *pp) {
    pp->v = st_calloc((size_t)(n ? n : 1), sizeof *pp->v);
    pp->num = st_malloc((size_t)(n ? n : 1) * 32);
    if (!pp->v || !pp->num) {
        st_free(pp->v);
        st_free(pp->num);
        return st__fail(ST_ERR_NOMEM, "tracking: no memory for parameters");
    }
    for (int i = 0; i < n; i++) {
        char *b = pp->num + (size_t)i * 32;
        switch (p[i].type) {
        case ST__DB_TEXT: pp->v[i] = p[i].s; break;
        case ST__DB_REAL:
            if (isnan(p[i].d)) snprintf(b, 32, "NaN");
            else if (isinf(p[i].d)) snprintf(b, 32, p[i].d > 0 ? "Infinity" : "-Infinity");
            else snprintf(b, 32, "%.17g", p[i].d);
            pp->v[i] = b;
            break;
        case ST__DB_INT:
            snprintf(b, 32, "%lld", (long long)p[i].i);
            pp->v[i] = b;
            break;
        default: pp->v[i] = NULL; break;
        }
    }
    return ST_OK;
}

static st_status pg_run(st__db *db, const char *sql, const st__dbval *p, int n, st__dbrows *rows,
                        int64_t *changes) {
    pgparams pp;
    ST_TRY(pg_params(p, n, &pp));
    PGresult *r = PQexecParams(db->pg, sql, n, NULL, pp.v, NULL, NULL, 0);
    st_free(pp.v);
    st_free(pp.num);
    ExecStatusType es = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
        st_status s = st__fail(ST_ERR_INTERNAL, "tracking store %s: %s(in: %.120s)", db->where,
                               PQerrorMessage(db->pg), sql);
        PQclear(r);
        return s;
    }
    if (changes) {
        const char *ct = PQcmdTuples(r);
        *changes = (ct && *ct) ? atoll(ct) : 0;
    }
    if (rows && es == PGRES_TUPLES_OK) {
        int nr = PQntuples(r), nc = PQnfields(r);
        rows->n_rows = nr;
        rows->n_cols = nc;
        rows->cells = st_calloc((size_t)nr * (size_t)nc + 1, sizeof *rows->cells);
        if (!rows->cells) {
            PQclear(r);
            return st__fail(ST_ERR_NOMEM, "tracking: no memory for query rows");
        }
        for (int i = 0; i < nr; i++)
            for (int c = 0; c < nc; c++) {
                if (PQgetisnull(r, i, c)) continue;
                char *v = st_strdup(PQgetvalue(r, i, c));
                if (!v) {
                    PQclear(r);
                    return st__fail(ST_ERR_NOMEM, "tracking: no memory for query rows");
                }
                rows->cells[(size_t)i * (size_t)nc + (size_t)c] = v;
            }
    }
    PQclear(r);
    return ST_OK;
}

/* ---- the interface ---------------------------------------------------------- */

st_status st__db_exec(st__db *db, const char *sql, const st__dbval *p, int n, int64_t *changes) {
    if (db->pg) return pg_run(db, sql, p, n, NULL, changes);
    sqlite3_stmt *st;
    ST_TRY(lite_prepare(db, sql, &st));
    st_status s = lite_bind(db, st, sql, p, n);
    if (s == ST_OK) s = lite_run(db, st, sql, NULL);
    if (s == ST_OK && changes) *changes = sqlite3_changes64(db->lite);
    sqlite3_finalize(st);
    return s;
}

st_status st__db_query(st__db *db, const char *sql, const st__dbval *p, int n, st__dbrows **out) {
    *out = NULL;
    st__dbrows *rows = st_calloc(1, sizeof *rows);
    if (!rows) return st__fail(ST_ERR_NOMEM, "tracking: no memory");
    st_status s;
    if (db->pg) {
        s = pg_run(db, sql, p, n, rows, NULL);
    } else {
        sqlite3_stmt *st;
        s = lite_prepare(db, sql, &st);
        if (s == ST_OK) {
            s = lite_bind(db, st, sql, p, n);
            if (s == ST_OK) s = lite_run(db, st, sql, rows);
            if (rows->n_cols == 0) rows->n_cols = sqlite3_column_count(st);
            sqlite3_finalize(st);
        }
    }
    if (s != ST_OK) {
        st__dbrows_free(rows);
        return s;
    }
    *out = rows;
    return ST_OK;
}

st_status st__db_begin(st__db *db) {
    return st__db_exec(db, db->pg ? "BEGIN" : "BEGIN IMMEDIATE", NULL, 0, NULL);
}

st_status st__db_commit(st__db *db) {
    /* COMMIT in WAL mode can meet SQLITE_BUSY only on a checkpoint race;
     * lite_run retries it. */
    return st__db_exec(db, "COMMIT", NULL, 0, NULL);
}

void st__db_rollback(st__db *db) {
    char saved[512];
    snprintf(saved, sizeof saved, "%s", st_last_error());
    if (db->pg) {
        PGresult *r = PQexec(db->pg, "ROLLBACK");
        PQclear(r);
    } else if (!sqlite3_get_autocommit(db->lite)) {
        sqlite3_exec(db->lite, "ROLLBACK", NULL, NULL, NULL);
    }
    if (*saved) st__fail(ST_ERR_INTERNAL, "%s", saved); /* keep the first failure's message */
}

st_status st__db_insert_rows(st__db *db, const char *table, const char *const *cols, int n_cols,
                             const st__dbval *vals, int64_t n_rows) {
    if (n_rows <= 0) return ST_OK;
    char head[512];
    int k = snprintf(head, sizeof head, "INSERT INTO %s (", table);
    for (int c = 0; c < n_cols; c++)
        k += snprintf(head + k, sizeof head - (size_t)k, "%s%s", c ? ", " : "", cols[c]);
    snprintf(head + k, sizeof head - (size_t)k, ") VALUES ");
    if (!db->pg) {
        /* One prepared statement stepped per row: the fastest SQLite path. */
        char sql[1024];
        k = snprintf(sql, sizeof sql, "%s(", head);
        for (int c = 0; c < n_cols; c++)
            k += snprintf(sql + k, sizeof sql - (size_t)k, "%s$%d", c ? ", " : "", c + 1);
        snprintf(sql + k, sizeof sql - (size_t)k, ")");
        sqlite3_stmt *st;
        ST_TRY(lite_prepare(db, sql, &st));
        st_status s = ST_OK;
        /* $1..$n appear in order, so parameter i is at index i + 1: bind by
         * position (the hot loop of a metric flush). */
        for (int64_t r = 0; r < n_rows && s == ST_OK; r++) {
            sqlite3_reset(st);
            const st__dbval *v = vals + r * n_cols;
            for (int c = 0; c < n_cols; c++) {
                int rc = v[c].type == ST__DB_TEXT   ? sqlite3_bind_text(st, c + 1, v[c].s, -1, SQLITE_STATIC)
                         : v[c].type == ST__DB_REAL ? sqlite3_bind_double(st, c + 1, v[c].d)
                         : v[c].type == ST__DB_INT  ? sqlite3_bind_int64(st, c + 1, v[c].i)
                                                    : sqlite3_bind_null(st, c + 1);
                if (rc != SQLITE_OK) {
                    s = lite_fail(db, sql, rc);
                    break;
                }
            }
            if (s == ST_OK) s = lite_run(db, st, sql, NULL);
        }
        sqlite3_finalize(st);
        return s;
    }
    int64_t per = 30000 / n_cols;
    size_t cap = strlen(head) + (size_t)per * (size_t)n_cols * 10 + 64;
    char *sql = st_malloc(cap);
    if (!sql) return st__fail(ST_ERR_NOMEM, "tracking: no memory");
    st_status s = ST_OK;
    for (int64_t r0 = 0; r0 < n_rows && s == ST_OK; r0 += per) {
        int64_t nr = n_rows - r0 < per ? n_rows - r0 : per;
        size_t o = (size_t)snprintf(sql, cap, "%s", head);
        int pi = 1;
        for (int64_t r = 0; r < nr; r++) {
            sql[o++] = r ? ',' : ' ';
            sql[o++] = '(';
            for (int c = 0; c < n_cols; c++)
                o += (size_t)snprintf(sql + o, cap - o, "%s$%d", c ? "," : "", pi++);
            sql[o++] = ')';
        }
        sql[o] = '\0';
        s = pg_run(db, sql, vals + r0 * n_cols, (int)(nr * n_cols), NULL, NULL);
    }
    st_free(sql);
    return s;
}
