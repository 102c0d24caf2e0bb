/*
 * store.c — the tracking store: schema and migrations, runs and what they
 * log, the reaper, reads for `strata runs` and the dashboard.
 *
 * Data: experiments(name), runs(id, experiment, name, status, start_time,
 * end_time, heartbeat, command, git_commit, host, pid, seed, parent_id),
 * params(run_id, key, value, value_num), tags(run_id, key, value),
 * metrics(run_id, key, step, value, wall_time), artifacts(run_id, name,
 * sha256, bytes) and schema_migrations(version, applied_at). The same DDL
 * runs on SQLite and PostgreSQL (db.c binds every value).
 *
 * Ownership: st_track owns its database connection; an st_track_run
 * borrows the store and owns its metric buffer (struct-of-arrays, keys
 * interned per run so a point costs no allocation in steady state). The
 * buffer is written in one transaction per flush together with the
 * heartbeat, which the reaper reads. Single-threaded per handle; processes
 * coordinate through the database (WAL + busy timeout on SQLite, row
 * locks on PostgreSQL; migrations take an advisory lock there).
 */
#include "track_impl.h"
#include "strata/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct st_track {
    st__db *db;
    char *uri;
    st_track_params p;
    char host[256];
};

typedef struct metric_buf {
    size_t n, cap;
    uint32_t *key;
    double *value, *wall;
    int64_t *step;
    char **keys; /* interned key names */
    uint32_t n_keys, cap_keys;
} metric_buf;

struct st_track_run {
    st_track *t;
    char id[33];
    bool ended;
    metric_buf buf;
};

static const char *const k_status[] = {"running", "finished", "failed", "killed"};

const char *st_run_status_name(st_run_status s) {
    return (unsigned)s < ST_RUN_STATUS_COUNT_ ? k_status[s] : "unknown";
}

static st_run_status status_from(const char *s) {
    for (int i = 0; i < ST_RUN_STATUS_COUNT_; i++)
        if (s && strcmp(s, k_status[i]) == 0) return (st_run_status)i;
    return ST_RUN_FAILED;
}

double st__wall_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

st_track_params st_track_default_params(void) {
    st_track_params p = {NULL, 15000, 900.0, true};
    return p;
}

st_run_start st_run_start_default(void) {
    st_run_start r = {NULL, NULL, NULL, NULL, -1, NULL};
    return r;
}

st_status st_track_home(char *buf, size_t n) {
    char *h = NULL;
    ST_TRY(st_registry_home(&h)); /* one rule for STRATA_HOME, kept by the registry */
    int k = snprintf(buf, n, "%s", h);
    st_free(h);
    if (k < 0 || (size_t)k >= n) return st__fail(ST_ERR_INVALID_ARG, "tracking: STRATA_HOME too long");
    return ST_OK;
}

st_status st_track_default_uri(char *buf, size_t n) {
    const char *u = getenv("STRATA_TRACKING_URI");
    if (u && *u) {
        if ((size_t)snprintf(buf, n, "%s", u) >= n)
            return st__fail(ST_ERR_INVALID_ARG, "tracking: STRATA_TRACKING_URI too long");
        return ST_OK;
    }
    char home[3900];
    ST_TRY(st_track_home(home, sizeof home));
    if ((size_t)snprintf(buf, n, "sqlite://%s/tracking.db", home) >= n)
        return st__fail(ST_ERR_INVALID_ARG, "tracking: STRATA_HOME too long");
    return ST_OK;
}

/* ---- schema ---------------------------------------------------------------------- */

static const char *const k_schema_v1[] = {
    "CREATE TABLE IF NOT EXISTS experiments (name TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, experiment TEXT NOT NULL, name TEXT NOT NULL,"
    " status TEXT NOT NULL, start_time DOUBLE PRECISION NOT NULL, end_time DOUBLE PRECISION,"
    " heartbeat DOUBLE PRECISION NOT NULL, command TEXT, git_commit TEXT, host TEXT, pid BIGINT,"
    " seed BIGINT, parent_id TEXT)",
    "CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment, start_time)",
    "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status)",
    "CREATE TABLE IF NOT EXISTS params (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " value_num DOUBLE PRECISION, PRIMARY KEY (run_id, key))",
    "CREATE TABLE IF NOT EXISTS tags (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (run_id, key))",
    "CREATE TABLE IF NOT EXISTS metrics (run_id TEXT NOT NULL, key TEXT NOT NULL, step BIGINT NOT NULL,"
    " value DOUBLE PRECISION, wall_time DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS metrics_by_run_key ON metrics (run_id, key, step)",
    "CREATE TABLE IF NOT EXISTS artifacts (run_id TEXT NOT NULL, name TEXT NOT NULL, sha256 TEXT NOT NULL,"
    " bytes BIGINT NOT NULL, PRIMARY KEY (run_id, name))",
};

static st_status migrate(st_track *t) {
    st__db *db = t->db;
    ST_TRY(st__db_begin(db));
    st_status s = ST_OK;
    if (st__db_is_pg(db)) {
        /* Concurrent CREATE TABLE IF NOT EXISTS can collide on PostgreSQL. */
        st__dbrows *r = NULL;
        s = st__db_query(db, "SELECT pg_advisory_xact_lock(727200801)", NULL, 0, &r);
        st__dbrows_free(r);
    }
    if (s == ST_OK)
        s = st__db_exec(db, "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
                            " applied_at DOUBLE PRECISION NOT NULL)", NULL, 0, NULL);
    st__dbrows *rows = NULL;
    if (s == ST_OK) s = st__db_query(db, "SELECT MAX(version) FROM schema_migrations", NULL, 0, &rows);
    long long v = 0;
    if (s == ST_OK && rows->n_rows == 1 && st__dbrows_get(rows, 0, 0))
        v = atoll(st__dbrows_get(rows, 0, 0));
    st__dbrows_free(rows);
    if (s == ST_OK && v > ST_TRACK_SCHEMA_VERSION)
        s = st__fail(ST_ERR_FORMAT,
                     "tracking store %s: schema version %lld is newer than this strata's %d; "
                     "upgrade strata", t->uri, v, ST_TRACK_SCHEMA_VERSION);
    if (s == ST_OK && v < 1) {
        for (size_t i = 0; s == ST_OK && i < sizeof k_schema_v1 / sizeof k_schema_v1[0]; i++)
            s = st__db_exec(db, k_schema_v1[i], NULL, 0, NULL);
        st__dbval p[2] = {st__db_int(1), st__db_real(st__wall_time_s())};
        if (s == ST_OK)
            s = st__db_exec(db, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", p, 2,
                            NULL);
    }
    if (s == ST_OK) s = st__db_commit(db);
    if (s != ST_OK) st__db_rollback(db);
    return s;
}

st_status st_track_open(const st_track_params *pin, st_track **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "st_track_open: NULL out");
    *out = NULL;
    st_track_params p = pin ? *pin : st_track_default_params();
    char uri[4096];
    if (p.uri && *p.uri) {
        if ((size_t)snprintf(uri, sizeof uri, "%s", p.uri) >= sizeof uri)
            return st__fail(ST_ERR_INVALID_ARG, "tracking: URI too long");
    } else {
        ST_TRY(st_track_default_uri(uri, sizeof uri));
    }
    st_track *t = st_calloc(1, sizeof *t);
    if (!t) return st__fail(ST_ERR_NOMEM, "tracking: no memory");
    t->p = p;
    t->p.uri = NULL;
    if (gethostname(t->host, sizeof t->host - 1) != 0) strcpy(t->host, "unknown");
    st_status s = st__db_open(uri, p.busy_timeout_ms, &t->db);
    if (s == ST_OK) {
        /* Keep the masked form for messages. */
        t->uri = st_strdup(uri);
        char *at = t->uri ? strchr(t->uri, '@') : NULL;
        char *sc = t->uri ? strstr(t->uri, "://") : NULL;
        if (at && sc) {
            char *colon = memchr(sc + 3, ':', (size_t)(at - (sc + 3)));
            if (colon) memmove(colon + 4, at, strlen(at) + 1), memcpy(colon, ":***", 4);
        }
        if (!t->uri) s = st__fail(ST_ERR_NOMEM, "tracking: no memory");
    }
    if (s == ST_OK) s = migrate(t);
    if (s == ST_OK && p.reap_on_open) s = st_track_reap(t, NULL);
    if (s != ST_OK) {
        st_track_close(t);
        return s;
    }
    *out = t;
    return ST_OK;
}

void st_track_close(st_track *t) {
    if (!t) return;
    st__db_close(t->db);
    st_free(t->uri);
    st_free(t);
}

const char *st_track_uri(const st_track *t) { return t->uri; }
const char *st_track_backend(const st_track *t) { return st__db_is_pg(t->db) ? "postgresql" : "sqlite"; }

/* ---- git --------------------------------------------------------------------------- */

static bool read_small(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t k = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[k] = '\0';
    while (k && (buf[k - 1] == '\n' || buf[k - 1] == '\r' || buf[k - 1] == ' ')) buf[--k] = '\0';
    return true;
}

static bool is_hex40(const char *s) {
    for (int i = 0; i < 40; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static bool ref_in(const char *gitdir, const char *ref, char out[41]) {
    char path[4600], buf[256];
    snprintf(path, sizeof path, "%s/%s", gitdir, ref);
    if (read_small(path, buf, sizeof buf) && strlen(buf) >= 40 && is_hex40(buf)) {
        memcpy(out, buf, 40);
        out[40] = '\0';
        return true;
    }
    snprintf(path, sizeof path, "%s/packed-refs", gitdir);
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char line[1024];
    bool found = false;
    size_t rl = strlen(ref);
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = '\0';
        if (l == 41 + rl && line[40] == ' ' && is_hex40(line) && strcmp(line + 41, ref) == 0) {
            memcpy(out, line, 40);
            out[40] = '\0';
            found = true;
            break;
        }
    }
    fclose(f);
    return found;
}

bool st__git_commit(const char *dir, char out[41]) {
    char cur[4096];
    if (dir && *dir) {
        if (!realpath(dir, cur)) return false;
    } else if (!getcwd(cur, sizeof cur)) {
        return false;
    }
    char gitdir[4200], buf[4200];
    for (;;) {
        snprintf(gitdir, sizeof gitdir, "%s/.git", cur);
        struct stat st;
        if (stat(gitdir, &st) == 0) {
            if (S_ISREG(st.st_mode)) { /* a worktree or submodule: "gitdir: PATH" */
                if (!read_small(gitdir, buf, sizeof buf) || strncmp(buf, "gitdir: ", 8) != 0) return false;
                int k = buf[8] == '/' ? snprintf(gitdir, sizeof gitdir, "%s", buf + 8)
                                      : snprintf(gitdir, sizeof gitdir, "%s/%s", cur, buf + 8);
                if (k < 0 || (size_t)k >= sizeof gitdir) return false;
            }
            break;
        }
        char *slash = strrchr(cur, '/');
        if (!slash || slash == cur) return false;
        *slash = '\0';
    }
    char head[4300];
    snprintf(head, sizeof head, "%s/HEAD", gitdir);
    if (!read_small(head, buf, sizeof buf)) return false;
    if (strlen(buf) >= 40 && is_hex40(buf)) {
        memcpy(out, buf, 40);
        out[40] = '\0';
        return true;
    }
    if (strncmp(buf, "ref: ", 5) != 0) return false;
    char ref[1024];
    if ((size_t)snprintf(ref, sizeof ref, "%s", buf + 5) >= sizeof ref) return false;
    if (ref_in(gitdir, ref, out)) return true;
    /* Linked worktrees keep branch refs in the common folder. */
    char common[4300];
    snprintf(common, sizeof common, "%s/commondir", gitdir);
    if (!read_small(common, buf, sizeof buf)) return false;
    char cd[4400];
    int k = buf[0] == '/' ? snprintf(cd, sizeof cd, "%s", buf) : snprintf(cd, sizeof cd, "%s/%s", gitdir, buf);
    if (k < 0 || (size_t)k >= sizeof cd) return false;
    return ref_in(cd, ref, out);
}

/* ---- writing ---------------------------------------------------------------------- */

static st_status check_kv(const char *what, const char *key, const char *value) {
    if (!key || !*key) return st__fail(ST_ERR_INVALID_ARG, "tracking: empty %s key", what);
    if (strlen(key) > ST_TRACK_MAX_KEY)
        return st__fail(ST_ERR_INVALID_ARG, "tracking: %s key '%.40s...' longer than %d bytes", what, key,
                        ST_TRACK_MAX_KEY);
    if (value && strlen(value) > ST_TRACK_MAX_VALUE)
        return st__fail(ST_ERR_INVALID_ARG, "tracking: %s '%s' value longer than %d bytes", what, key,
                        ST_TRACK_MAX_VALUE);
    return ST_OK;
}

st_status st_track_run_start(st_track *t, const st_run_start *rsin, st_track_run **out) {
    if (!t || !out) return st__fail(ST_ERR_INVALID_ARG, "st_track_run_start: NULL argument");
    *out = NULL;
    st_run_start rs = rsin ? *rsin : st_run_start_default();
    const char *exp = rs.experiment && *rs.experiment ? rs.experiment : "default";
    ST_TRY(check_kv("experiment", exp, rs.name));
    st_track_run *r = st_calloc(1, sizeof *r);
    if (!r) return st__fail(ST_ERR_NOMEM, "tracking: no memory");
    r->t = t;
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        /* Fall back on time and pid; ids need only be unique. */
        uint64_t a = (uint64_t)(st__wall_time_s() * 1e9), b = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
        memcpy(rnd, &a, 8);
        memcpy(rnd + 8, &b, 8);
    }
    for (int i = 0; i < 16; i++) snprintf(r->id + 2 * i, 3, "%02x", rnd[i]);
    char name[64];
    if (!rs.name || !*rs.name) snprintf(name, sizeof name, "run-%.8s", r->id);
    char commit[41];
    bool have_commit = st__git_commit(rs.source_dir, commit);
    double now = st__wall_time_s();
    st_status s = st__db_begin(t->db);
    if (s != ST_OK) {
        st_free(r);
        return s;
    }
    if (rs.parent_id) {
        st__dbval pp = st__db_text(rs.parent_id);
        st__dbrows *rows = NULL;
        s = st__db_query(t->db, "SELECT id FROM runs WHERE id = $1", &pp, 1, &rows);
        if (s == ST_OK && rows->n_rows != 1)
            s = st__fail(ST_ERR_INVALID_ARG, "tracking: parent run %.40s does not exist in %s", rs.parent_id,
                         t->uri);
        st__dbrows_free(rows);
    }
    st__dbval e[2] = {st__db_text(exp), st__db_real(now)};
    if (s == ST_OK)
        s = st__db_exec(t->db, "INSERT INTO experiments (name, created) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                        e, 2, NULL);
    st__dbval v[12] = {
        st__db_text(r->id), st__db_text(exp), st__db_text(rs.name && *rs.name ? rs.name : name),
        st__db_real(now), st__db_text(rs.command), st__db_text(have_commit ? commit : NULL),
        st__db_text(t->host), st__db_int(getpid()),
        rs.seed >= 0 ? st__db_int(rs.seed) : st__db_text(NULL), st__db_text(rs.parent_id),
    };
    if (s == ST_OK)
        s = st__db_exec(t->db,
                        "INSERT INTO runs (id, experiment, name, status, start_time, heartbeat, command,"
                        " git_commit, host, pid, seed, parent_id) VALUES ($1, $2, $3, 'running', $4, $4, $5,"
                        " $6, $7, $8, $9, $10)",
                        v, 10, NULL);
    if (s == ST_OK) s = st__db_commit(t->db);
    if (s != ST_OK) {
        st__db_rollback(t->db);
        st_free(r);
        return s;
    }
    *out = r;
    return ST_OK;
}

const char *st_track_run_id(const st_track_run *r) { return r->id; }

st_status st_track_log_param(st_track_run *r, const char *key, const char *value) {
    if (!r || !value) return st__fail(ST_ERR_INVALID_ARG, "st_track_log_param: NULL argument");
    ST_TRY(check_kv("parameter", key, value));
    char *end;
    errno = 0;
    double num = strtod(value, &end);
    bool is_num = *value && !*end && errno == 0 && isfinite(num);
    st__dbval v[4] = {st__db_text(r->id), st__db_text(key), st__db_text(value),
                      is_num ? st__db_real(num) : st__db_text(NULL)};
    return st__db_exec(r->t->db,
                       "INSERT INTO params (run_id, key, value, value_num) VALUES ($1, $2, $3, $4)"
                       " ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, value_num = excluded.value_num",
                       v, 4, NULL);
}

st_status st_track_set_tag(st_track_run *r, const char *key, const char *value) {
    if (!r || !value) return st__fail(ST_ERR_INVALID_ARG, "st_track_set_tag: NULL argument");
    ST_TRY(check_kv("tag", key, value));
    st__dbval v[3] = {st__db_text(r->id), st__db_text(key), st__db_text(value)};
    return st__db_exec(r->t->db,
                       "INSERT INTO tags (run_id, key, value) VALUES ($1, $2, $3)"
                       " ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                       v, 3, NULL);
}

static st_status intern_key(metric_buf *b, const char *key, uint32_t *out) {
    /* Most recent first: a training loop logs the same few keys. */
    for (uint32_t i = b->n_keys; i-- > 0;)
        if (strcmp(b->keys[i], key) == 0) {
            *out = i;
            return ST_OK;
        }
    if (b->n_keys == b->cap_keys) {
        uint32_t nc = b->cap_keys ? b->cap_keys * 2 : 8;
        char **k = st_realloc(b->keys, nc * sizeof *k);
        if (!k) return st__fail(ST_ERR_NOMEM, "tracking: no memory for metric keys");
        b->keys = k;
        b->cap_keys = nc;
    }
    b->keys[b->n_keys] = st_strdup(key);
    if (!b->keys[b->n_keys]) return st__fail(ST_ERR_NOMEM, "tracking: no memory for metric keys");
    *out = b->n_keys++;
    return ST_OK;
}

st_status st_track_log_metric(st_track_run *r, const char *key, double value, int64_t step) {
    if (!r) return st__fail(ST_ERR_INVALID_ARG, "st_track_log_metric: NULL run");
    metric_buf *b = &r->buf;
    uint32_t ki = 0;
    /* Keys are checked when first seen (interning) only. */
    if (b->n_keys && strcmp(b->keys[b->n_keys - 1], key ? key : "") == 0) ki = b->n_keys - 1;
    else {
        ST_TRY(check_kv("metric", key, NULL));
        ST_TRY(intern_key(b, key, &ki));
    }
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        uint32_t *k = st_realloc(b->key, nc * sizeof *k);
        if (k) b->key = k;
        double *v = k ? st_realloc(b->value, nc * sizeof *v) : NULL;
        if (v) b->value = v;
        double *w = v ? st_realloc(b->wall, nc * sizeof *w) : NULL;
        if (w) b->wall = w;
        int64_t *s = w ? st_realloc(b->step, nc * sizeof *s) : NULL;
        if (!s) return st__fail(ST_ERR_NOMEM, "tracking: no memory for the metric buffer");
        b->step = s;
        b->cap = nc;
    }
    b->key[b->n] = ki;
    b->value[b->n] = value;
    b->step[b->n] = step;
    b->wall[b->n] = st__wall_time_s();
    b->n++;
    if (b->n >= ST_TRACK_FLUSH_POINTS) return st_track_flush(r);
    return ST_OK;
}

size_t st_track_pending(const st_track_run *r) { return r ? r->buf.n : 0; }

st_status st_track_flush(st_track_run *r) {
    if (!r) return st__fail(ST_ERR_INVALID_ARG, "st_track_flush: NULL run");
    metric_buf *b = &r->buf;
    st__db *db = r->t->db;
    st__dbval *vals = NULL;
    if (b->n) {
        size_t bytes;
        if (st_mul_overflow_size(b->n, 5 * sizeof *vals, &bytes) || !(vals = st_malloc(bytes)))
            return st__fail(ST_ERR_NOMEM, "tracking: no memory to flush %zu metric points", b->n);
        for (size_t i = 0; i < b->n; i++) {
            st__dbval *v = vals + 5 * i;
            v[0] = st__db_text(r->id);
            v[1] = st__db_text(b->keys[b->key[i]]);
            v[2] = st__db_int(b->step[i]);
            v[3] = st__db_real(b->value[i]);
            v[4] = st__db_real(b->wall[i]);
        }
    }
    static const char *const cols[5] = {"run_id", "key", "step", "value", "wall_time"};
    st_status s = st__db_begin(db);
    if (s == ST_OK) s = st__db_insert_rows(db, "metrics", cols, 5, vals, (int64_t)b->n);
    st__dbval hb[2] = {st__db_real(st__wall_time_s()), st__db_text(r->id)};
    if (s == ST_OK) s = st__db_exec(db, "UPDATE runs SET heartbeat = $1 WHERE id = $2", hb, 2, NULL);
    if (s == ST_OK) s = st__db_commit(db);
    if (s != ST_OK) st__db_rollback(db);
    st_free(vals);
    if (s == ST_OK) b->n = 0;
    return s;
}

st_status st_track_run_end(st_track_run *r, st_run_status status) {
    if (!r) return st__fail(ST_ERR_INVALID_ARG, "st_track_run_end: NULL run");
    if (status == ST_RUN_RUNNING || (unsigned)status >= ST_RUN_STATUS_COUNT_)
        return st__fail(ST_ERR_INVALID_ARG, "st_track_run_end: status must be finished, failed or killed");
    st_status s = st_track_flush(r);
    st__dbval v[3] = {st__db_text(st_run_status_name(status)), st__db_real(st__wall_time_s()),
                      st__db_text(r->id)};
    st_status s2 = st__db_exec(r->t->db, "UPDATE runs SET status = $1, end_time = $2, heartbeat = $2 WHERE id = $3",
                               v, 3, NULL);
    if (s2 == ST_OK) r->ended = true;
    return s != ST_OK ? s : s2;
}

void st_track_run_free(st_track_run *r) {
    if (!r) return;
    if (!r->ended && st_track_run_end(r, ST_RUN_FAILED) != ST_OK)
        st_log_msg(ST_LOG_WARN, "tracking: could not mark run %s failed: %s", r->id, st_last_error());
    for (uint32_t i = 0; i < r->buf.n_keys; i++) st_free(r->buf.keys[i]);
    st_free(r->buf.keys);
    st_free(r->buf.key);
    st_free(r->buf.value);
    st_free(r->buf.wall);
    st_free(r->buf.step);
    st_free(r);
}

/* ---- artifacts ---------------------------------------------------------------------- */

st_status st_track_blob_path(const char *sha256_hex, char *buf, size_t n) {
    char home[3900];
    ST_TRY(st_track_home(home, sizeof home));
    if (sha256_hex && (strlen(sha256_hex) != 64 || strspn(sha256_hex, "0123456789abcdef") != 64))
        return st__fail(ST_ERR_INVALID_ARG, "tracking: '%.70s' is not a SHA-256 in hex", sha256_hex);
    int k = sha256_hex ? snprintf(buf, n, "%s/blobs/sha256/%.2s/%s", home, sha256_hex, sha256_hex)
                       : snprintf(buf, n, "%s/blobs/sha256", home);
    if (k < 0 || (size_t)k >= n) return st__fail(ST_ERR_INVALID_ARG, "tracking: blob path too long");
    return ST_OK;
}

static st_status fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0 && errno != EINVAL) return st__fail(ST_ERR_IO, "%s: fsync failed: %s", dir, strerror(errno));
    return ST_OK;
}

/* Streams path into the blob folder while hashing it. */
static st_status store_blob(const char *path, char hex[65], int64_t *bytes) {
    char dir[4096], tmp[4200], final[4400];
    ST_TRY(st_track_blob_path(NULL, dir, sizeof dir));
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0777) != 0 && errno != EEXIST)
                return st__fail(ST_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
            *p = '/';
        }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return st__fail(ST_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    FILE *in = fopen(path, "rbe");
    if (!in) return st__fail(ST_ERR_IO, "artifact %s: cannot open: %s", path, strerror(errno));
    unsigned rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) rnd = (unsigned)getpid();
    snprintf(tmp, sizeof tmp, "%s/.tmp.%ld.%08x", dir, (long)getpid(), rnd);
    FILE *o = fopen(tmp, "wbe");
    if (!o) {
        fclose(in);
        return st__fail(ST_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    st_status s = ST_OK;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        s = st__fail(ST_ERR_INTERNAL, "artifact %s: SHA-256 init failed", path);
    char *chunk = st_malloc(1 << 20);
    if (s == ST_OK && !chunk) s = st__fail(ST_ERR_NOMEM, "artifact %s: no memory", path);
    int64_t total = 0;
    while (s == ST_OK) {
        size_t k = fread(chunk, 1, 1 << 20, in);
        if (k == 0) {
            if (ferror(in)) s = st__fail(ST_ERR_IO, "artifact %s: read failed: %s", path, strerror(errno));
            break;
        }
        total += (int64_t)k;
        if (EVP_DigestUpdate(md, chunk, k) != 1) s = st__fail(ST_ERR_INTERNAL, "artifact %s: SHA-256 failed", path);
        else if (fwrite(chunk, 1, k, o) != k) s = st__fail(ST_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    }
    st_free(chunk);
    fclose(in);
    unsigned char dg[32];
    unsigned dl = 0;
    if (s == ST_OK && EVP_DigestFinal_ex(md, dg, &dl) != 1)
        s = st__fail(ST_ERR_INTERNAL, "artifact %s: SHA-256 failed", path);
    EVP_MD_CTX_free(md);
    if (s == ST_OK && (fflush(o) != 0 || fsync(fileno(o)) != 0))
        s = st__fail(ST_ERR_IO, "%s: flush/fsync failed: %s", tmp, strerror(errno));
    if (fclose(o) != 0 && s == ST_OK) s = st__fail(ST_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (s != ST_OK) {
        unlink(tmp);
        return s;
    }
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", dg[i]);
    /* Sharded by the first two hex digits, as the hub's registry does. */
    char shard[4200];
    snprintf(shard, sizeof shard, "%s/%.2s", dir, hex);
    if (mkdir(shard, 0777) != 0 && errno != EEXIST) {
        s = st__fail(ST_ERR_IO, "%s: cannot create folder: %s", shard, strerror(errno));
        unlink(tmp);
        return s;
    }
    snprintf(final, sizeof final, "%s/%s", shard, hex);
    struct stat st;
    if (stat(final, &st) == 0 && st.st_size == total) {
        unlink(tmp); /* content-addressed: the blob is already there */
    } else {
        if (rename(tmp, final) != 0) {
            s = st__fail(ST_ERR_IO, "%s: rename to %s failed: %s", tmp, final, strerror(errno));
            unlink(tmp);
            return s;
        }
        ST_TRY(fsync_dir(shard));
    }
    *bytes = total;
    return ST_OK;
}

st_status st_track_log_artifact(st_track_run *r, const char *path, const char *name, char *sha256_hex) {
    if (!r || !path) return st__fail(ST_ERR_INVALID_ARG, "st_track_log_artifact: NULL argument");
    if (!name || !*name) {
        const char *sl = strrchr(path, '/');
        name = sl ? sl + 1 : path;
    }
    ST_TRY(check_kv("artifact", name, NULL));
    char hex[65];
    int64_t bytes = 0;
    ST_TRY(store_blob(path, hex, &bytes));
    st__dbval v[4] = {st__db_text(r->id), st__db_text(name), st__db_text(hex), st__db_int(bytes)};
    ST_TRY(st__db_exec(r->t->db,
                       "INSERT INTO artifacts (run_id, name, sha256, bytes) VALUES ($1, $2, $3, $4)"
                       " ON CONFLICT (run_id, name) DO UPDATE SET sha256 = excluded.sha256, bytes = excluded.bytes",
                       v, 4, NULL));
    if (sha256_hex) memcpy(sha256_hex, hex, 65);
    return ST_OK;
}

/* ---- signals ------------------------------------------------------------------------------ */

static volatile sig_atomic_t g_signal;

static void on_signal(int sig) {
    if (g_signal) { /* second signal: die now; the reaper marks the run failed */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_signal = sig;
}

void st_track_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int st_track_signal_caught(void) { return (int)g_signal; }

/* ---- reaper ------------------------------------------------------------------------------- */

st_status st_track_reap(st_track *t, int *n_reaped) {
    if (n_reaped) *n_reaped = 0;
    st__dbrows *rows = NULL;
    ST_TRY(st__db_query(t->db, "SELECT id, host, pid, heartbeat FROM runs WHERE status = 'running'", NULL, 0,
                        &rows));
    double now = st__wall_time_s();
    int n = 0;
    st_status s = ST_OK;
    for (int i = 0; i < rows->n_rows && s == ST_OK; i++) {
        const char *id = st__dbrows_get(rows, i, 0), *host = st__dbrows_get(rows, i, 1);
        const char *pids = st__dbrows_get(rows, i, 2), *hbs = st__dbrows_get(rows, i, 3);
        long long pid = pids ? atoll(pids) : 0;
        double hb = hbs ? atof(hbs) : 0;
        bool dead = false;
        if (host && strcmp(host, t->host) == 0 && pid > 0 && pid != getpid())
            dead = kill((pid_t)pid, 0) != 0 && errno == ESRCH;
        if (!dead && now - hb > t->p.stale_s) dead = true;
        if (!dead) continue;
        st__dbval v[2] = {st__db_real(hb), st__db_text(id)};
        int64_t ch = 0;
        s = st__db_exec(t->db,
                        "UPDATE runs SET status = 'failed', end_time = $1 WHERE id = $2 AND status = 'running'", v,
                        2, &ch);
        if (s == ST_OK && ch > 0) {
            n++;
            st__dbval tg[3] = {st__db_text(id), st__db_text("strata.reaped"),
                               st__db_text("process gone or heartbeat stale")};
            s = st__db_exec(t->db,
                            "INSERT INTO tags (run_id, key, value) VALUES ($1, $2, $3)"
                            " ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                            tg, 3, NULL);
        }
    }
    st__dbrows_free(rows);
    if (n_reaped) *n_reaped = n;
    return s;
}

/* ---- reading ------------------------------------------------------------------------------- */

static char *dup_or_null(const char *s) { return s ? st_strdup(s) : NULL; }
static double num_or(const char *s, double d) { return s ? atof(s) : d; }

#define RUN_COLS \
    "r.id, r.experiment, r.name, r.status, r.start_time, r.end_time, r.heartbeat, r.command, r.git_commit," \
    " r.host, r.pid, r.seed, r.parent_id"

void st_run_record_free(st_run_record *rec) {
    if (!rec) return;
    st_free(rec->experiment);
    st_free(rec->name);
    st_free(rec->command);
    st_free(rec->git_commit);
    st_free(rec->host);
    st_free(rec->parent_id);
    for (int i = 0; i < rec->n_params; i++) st_free(rec->params[i].key), st_free(rec->params[i].value);
    for (int i = 0; i < rec->n_tags; i++) st_free(rec->tags[i].key), st_free(rec->tags[i].value);
    for (int i = 0; i < rec->n_metrics; i++) st_free(rec->metrics[i].key);
    for (int i = 0; i < rec->n_artifacts; i++) st_free(rec->artifacts[i].name);
    st_free(rec->params);
    st_free(rec->tags);
    st_free(rec->metrics);
    st_free(rec->artifacts);
    st_free(rec);
}

static st_status load_kv(st_track *t, const char *sql, const char *id, st_track_kv **out, int *n) {
    st__dbval p = st__db_text(id);
    st__dbrows *rows = NULL;
    ST_TRY(st__db_query(t->db, sql, &p, 1, &rows));
    *out = st_calloc((size_t)rows->n_rows + 1, sizeof **out);
    if (!*out) {
        st__dbrows_free(rows);
        return st__fail(ST_ERR_NOMEM, "tracking: no memory");
    }
    for (int i = 0; i < rows->n_rows; i++) {
        (*out)[i].key = rows->cells[2 * i];
        (*out)[i].value = rows->cells[2 * i + 1] ? rows->cells[2 * i + 1] : st_strdup("");
        rows->cells[2 * i] = rows->cells[2 * i + 1] = NULL;
    }
    *n = rows->n_rows;
    st__dbrows_free(rows);
    return ST_OK;
}

static st_status load_record(st_track *t, st__dbrows *rr, int row, st_run_record **out) {
    st_run_record *rec = st_calloc(1, sizeof *rec);
    if (!rec) return st__fail(ST_ERR_NOMEM, "tracking: no memory");
#define C(i) st__dbrows_get(rr, row, i)
    snprintf(rec->id, sizeof rec->id, "%s", C(0) ? C(0) : "");
    rec->experiment = dup_or_null(C(1));
    rec->name = dup_or_null(C(2));
    rec->status = status_from(C(3));
    rec->start_time = num_or(C(4), NAN);
    rec->end_time = num_or(C(5), NAN);
    rec->heartbeat = num_or(C(6), NAN);
    rec->command = dup_or_null(C(7));
    rec->git_commit = dup_or_null(C(8));
    rec->host = dup_or_null(C(9));
    rec->pid = C(10) ? atoll(C(10)) : -1;
    rec->seed = C(11) ? atoll(C(11)) : -1;
    rec->parent_id = dup_or_null(C(12));
#undef C
    st_status s = load_kv(t, "SELECT key, value FROM params WHERE run_id = $1 ORDER BY key", rec->id, &rec->params,
                          &rec->n_params);
    if (s == ST_OK)
        s = load_kv(t, "SELECT key, value FROM tags WHERE run_id = $1 ORDER BY key", rec->id, &rec->tags,
                    &rec->n_tags);
    st__dbval p = st__db_text(rec->id);
    st__dbrows *m = NULL, *last = NULL, *a = NULL;
    if (s == ST_OK)
        s = st__db_query(t->db,
                         "SELECT key, COUNT(*), MIN(value), MAX(value), MAX(step) FROM metrics WHERE run_id = $1"
                         " GROUP BY key ORDER BY key",
                         &p, 1, &m);
    if (s == ST_OK)
        s = st__db_query(t->db,
                         "SELECT m.key, m.value, m.step FROM metrics m WHERE m.run_id = $1 AND m.step ="
                         " (SELECT MAX(m2.step) FROM metrics m2 WHERE m2.run_id = m.run_id AND m2.key = m.key)"
                         " ORDER BY m.key, m.wall_time",
                         &p, 1, &last);
    if (s == ST_OK)
        s = st__db_query(t->db, "SELECT name, sha256, bytes FROM artifacts WHERE run_id = $1 ORDER BY name", &p, 1,
                         &a);
    if (s == ST_OK) {
        rec->metrics = st_calloc((size_t)m->n_rows + 1, sizeof *rec->metrics);
        rec->artifacts = st_calloc((size_t)a->n_rows + 1, sizeof *rec->artifacts);
        if (!rec->metrics || !rec->artifacts) s = st__fail(ST_ERR_NOMEM, "tracking: no memory");
    }
    if (s == ST_OK) {
        int j = 0;
        for (int i = 0; i < m->n_rows; i++) {
            st_track_metric_summary *ms = &rec->metrics[i];
            ms->key = m->cells[5 * i];
            m->cells[5 * i] = NULL;
            ms->n_points = atoll(st__dbrows_get(m, i, 1));
            ms->min = num_or(st__dbrows_get(m, i, 2), NAN);
            ms->max = num_or(st__dbrows_get(m, i, 3), NAN);
            ms->last_step = atoll(st__dbrows_get(m, i, 4));
            ms->last = NAN;
            /* last rows are sorted by key then wall time: take the final one of this key. */
            while (j < last->n_rows && strcmp(st__dbrows_get(last, j, 0), ms->key) < 0) j++;
            while (j < last->n_rows && strcmp(st__dbrows_get(last, j, 0), ms->key) == 0) {
                ms->last = num_or(st__dbrows_get(last, j, 1), NAN);
                j++;
            }
        }
        rec->n_metrics = m->n_rows;
        for (int i = 0; i < a->n_rows; i++) {
            rec->artifacts[i].name = a->cells[3 * i];
            a->cells[3 * i] = NULL;
            snprintf(rec->artifacts[i].sha256, 65, "%s", st__dbrows_get(a, i, 1) ? st__dbrows_get(a, i, 1) : "");
            rec->artifacts[i].bytes = atoll(st__dbrows_get(a, i, 2) ? st__dbrows_get(a, i, 2) : "0");
        }
        rec->n_artifacts = a->n_rows;
    }
    st__dbrows_free(m);
    st__dbrows_free(last);
    st__dbrows_free(a);
    if (s != ST_OK) {
        st_run_record_free(rec);
        return s;
    }
    *out = rec;
    return ST_OK;
}

/* Resolves a full id or a unique prefix of >= 4 hex digits into full[33]. */
static st_status resolve_id(st_track *t, const char *id, char full[33]) {
    size_t n = id ? strlen(id) : 0;
    if (n < 4 || n > 32 || strspn(id, "0123456789abcdef") != n)
        return st__fail(ST_ERR_INVALID_ARG, "tracking: '%.40s' is not a run id (4 to 32 lowercase hex digits)",
                        id ? id : "(null)");
    char pat[40];
    snprintf(pat, sizeof pat, "%s%%", id);
    st__dbval p = st__db_text(pat);
    st__dbrows *rows = NULL;
    ST_TRY(st__db_query(t->db, "SELECT id FROM runs WHERE id LIKE $1 ORDER BY id LIMIT 2", &p, 1, &rows));
    st_status s = ST_OK;
    if (rows->n_rows == 0) s = st__fail(ST_ERR_INVALID_ARG, "tracking: no run %s in %s", id, t->uri);
    else if (rows->n_rows > 1) s = st__fail(ST_ERR_INVALID_ARG, "tracking: run id prefix %s is ambiguous", id);
    else snprintf(full, 33, "%s", st__dbrows_get(rows, 0, 0));
    st__dbrows_free(rows);
    return s;
}

st_status st_track_get_run(st_track *t, const char *id, st_run_record **out) {
    if (!t || !out) return st__fail(ST_ERR_INVALID_ARG, "st_track_get_run: NULL argument");
    *out = NULL;
    char full[33];
    ST_TRY(resolve_id(t, id, full));
    st__dbval p = st__db_text(full);
    st__dbrows *rows = NULL;
    ST_TRY(st__db_query(t->db, "SELECT " RUN_COLS " FROM runs r WHERE r.id = $1", &p, 1, &rows));
    st_status s = rows->n_rows == 1 ? load_record(t, rows, 0, out)
                                    : st__fail(ST_ERR_INVALID_ARG, "tracking: run %s vanished", full);
    st__dbrows_free(rows);
    return s;
}

void st_run_list_free(st_run_list *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) st_run_record_free(l->runs[i]);
    st_free(l->runs);
    st_free(l);
}

st_status st_track_list_runs(st_track *t, const st_run_query *qin, st_run_list **out) {
    if (!t || !out) return st__fail(ST_ERR_INVALID_ARG, "st_track_list_runs: NULL argument");
    *out = NULL;
    st_run_query q = qin ? *qin : (st_run_query){0};
    ST_TRY(st_track_reap(t, NULL));
    st__dbval params[2 * ST__FILTER_MAX_PARAMS + 2];
    int np = 0;
    if (q.experiment) params[np++] = st__db_text(q.experiment);
    st__sqlfrag f, so;
    ST_TRY(st__filter_compile(q.filter, np + 1, &f));
    for (int i = 0; i < f.n_params; i++) params[np++] = f.params[i];
    st_status s = st__sort_compile(q.sort, np + 1, &so);
    if (s != ST_OK) {
        st__sqlfrag_free(&f);
        return s;
    }
    for (int i = 0; i < so.n_params; i++) params[np++] = so.params[i];
    if (q.limit > 0) params[np++] = st__db_int(q.limit);
    size_t n = strlen(f.sql) + strlen(so.sql) + 512;
    char *sql = st_malloc(n);
    st__dbrows *rows = NULL;
    if (!sql) s = st__fail(ST_ERR_NOMEM, "tracking: no memory");
    else {
        snprintf(sql, n, "SELECT " RUN_COLS " FROM runs r WHERE %s(%s) ORDER BY %s%s",
                 q.experiment ? "r.experiment = $1 AND " : "", f.sql, so.sql, q.limit > 0 ? "" : "");
        if (q.limit > 0) snprintf(sql + strlen(sql), n - strlen(sql), " LIMIT $%d", np);
        s = st__db_query(t->db, sql, params, np, &rows);
    }
    st_free(sql);
    st__sqlfrag_free(&f);
    st__sqlfrag_free(&so);
    ST_TRY(s);
    st_run_list *l = st_calloc(1, sizeof *l);
    if (l) l->runs = st_calloc((size_t)rows->n_rows + 1, sizeof *l->runs);
    if (!l || !l->runs) {
        st_free(l);
        st__dbrows_free(rows);
        return st__fail(ST_ERR_NOMEM, "tracking: no memory");
    }
    for (int i = 0; i < rows->n_rows && s == ST_OK; i++) {
        s = load_record(t, rows, i, &l->runs[i]);
        if (s == ST_OK) l->n++;
    }
    st__dbrows_free(rows);
    if (s != ST_OK) {
        st_run_list_free(l);
        return s;
    }
    *out = l;
    return ST_OK;
}

void st_metric_series_free(st_metric_series *s) {
    if (!s) return;
    st_free(s->key);
    st_free(s->step);
    st_free(s->value);
    st_free(s->wall_time);
    st_free(s);
}

st_status st_track_metric_history(st_track *t, const char *id, const char *key, st_metric_series **out) {
    if (!t || !id || !key || !out) return st__fail(ST_ERR_INVALID_ARG, "st_track_metric_history: NULL argument");
    *out = NULL;
    st__dbval p[2] = {st__db_text(id), st__db_text(key)};
    st__dbrows *rows = NULL;
    ST_TRY(st__db_query(t->db,
                        "SELECT step, value, wall_time FROM metrics WHERE run_id = $1 AND key = $2"
                        " ORDER BY step, wall_time",
                        p, 2, &rows));
    st_metric_series *s = st_calloc(1, sizeof *s);
    size_t n = (size_t)rows->n_rows + 1;
    if (s) {
        s->key = st_strdup(key);
        s->step = st_malloc(n * sizeof *s->step);
        s->value = st_malloc(n * sizeof *s->value);
        s->wall_time = st_malloc(n * sizeof *s->wall_time);
    }
    if (!s || !s->key || !s->step || !s->value || !s->wall_time) {
        st_metric_series_free(s);
        st__dbrows_free(rows);
        return st__fail(ST_ERR_NOMEM, "tracking: no memory");
    }
    for (int i = 0; i < rows->n_rows; i++) {
        s->step[i] = atoll(st__dbrows_get(rows, i, 0));
        const char *v = st__dbrows_get(rows, i, 1);
        s->value[i] = v ? strtod(v, NULL) : NAN; /* strtod reads "NaN" and "Infinity" */
        s->wall_time[i] = num_or(st__dbrows_get(rows, i, 2), NAN);
    }
    s->n = rows->n_rows;
    st__dbrows_free(rows);
    *out = s;
    return ST_OK;
}

st_status st_track_list_experiments(st_track *t, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    st__dbrows *rows = NULL;
    ST_TRY(st__db_query(t->db, "SELECT name FROM experiments ORDER BY name", NULL, 0, &rows));
    char **v = st_calloc((size_t)rows->n_rows + 1, sizeof *v);
    if (!v) {
        st__dbrows_free(rows);
        return st__fail(ST_ERR_NOMEM, "tracking: no memory");
    }
    for (int i = 0; i < rows->n_rows; i++) v[i] = rows->cells[i], rows->cells[i] = NULL;
    *n = rows->n_rows;
    *out = v;
    st__dbrows_free(rows);
    return ST_OK;
}

st_status st_track_delete_run(st_track *t, const char *id) {
    char full[33];
    ST_TRY(resolve_id(t, id, full));
    st__dbval p = st__db_text(full);
    static const char *const k_del[] = {
        "DELETE FROM metrics WHERE run_id = $1", "DELETE FROM params WHERE run_id = $1",
        "DELETE FROM tags WHERE run_id = $1",    "DELETE FROM artifacts WHERE run_id = $1",
        "DELETE FROM runs WHERE id = $1",
    };
    st_status s = st__db_begin(t->db);
    for (size_t i = 0; s == ST_OK && i < sizeof k_del / sizeof k_del[0]; i++)
        s = st__db_exec(t->db, k_del[i], &p, 1, NULL);
    if (s == ST_OK) s = st__db_commit(t->db);
    if (s != ST_OK) st__db_rollback(t->db);
    return s;
}

/* ---- import ---------------------------------------------------------------------------------- */

#define MAX_LINE_BYTES (64 * 1024)

st_status st_track_import_metrics_jsonl(st_track_run *r, const char *path, int64_t *n_points) {
    if (n_points) *n_points = 0;
    if (!r || !path) return st__fail(ST_ERR_INVALID_ARG, "st_track_import_metrics_jsonl: NULL argument");
    FILE *f = fopen(path, "rbe");
    if (!f) return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int64_t n = 0;
    st_status s = ST_OK;
    while (s == ST_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)len > MAX_LINE_BYTES) {
            s = st__fail(ST_ERR_FORMAT, "%s: line %ld longer than %d bytes", path, lineno, MAX_LINE_BYTES);
            break;
        }
        size_t k = strspn(line, " \t\r\n");
        if ((ssize_t)k == len) continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &je);
        if (!o || !json_is_object(o)) {
            s = st__fail(ST_ERR_FORMAT, "%s: line %ld: %s", path, lineno, o ? "not a JSON object" : je.text);
            json_decref(o);
            break;
        }
        json_t *st = json_object_get(o, "step");
        if (!json_is_integer(st)) {
            s = st__fail(ST_ERR_FORMAT, "%s: line %ld: no integer \"step\"", path, lineno);
            json_decref(o);
            break;
        }
        int64_t step = (int64_t)json_integer_value(st);
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v) {
            if (strcmp(key, "step") == 0 || !json_is_number(v)) continue;
            s = st_track_log_metric(r, key, json_number_value(v), step);
            if (s != ST_OK) break;
            n++;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    if (s == ST_OK) s = st_track_flush(r);
    if (n_points) *n_points = n;
    return s;
}
