/*
 * test_track.c — the tracking store (src/track/): one suite run against
 * SQLite (a fresh file) and, when STRATA_TEST_PG_URI is set, against
 * PostgreSQL (tools/pg_test.sh starts a throwaway server and sets it);
 * without it the PostgreSQL group says so and skips.
 *
 * Checked: runs/params/tags/metrics/artifacts round trip (the blob's hash
 * against sha256sum's), batching across the automatic flush, 20 forked
 * processes logging at once lose nothing (counts), the reaper marks a
 * SIGKILLed run and a stale one failed and a freed-but-not-ended run is
 * failed, the filter language selects the right runs and sorts, invalid
 * filters name the column, SQL injection attempts are inert (the tables
 * survive, nothing matches), metrics.jsonl import, the git commit against
 * `git rev-parse HEAD`. Allocation counters must return to their start.
 */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "strata/track.h"
#include "track/track_impl.h"

static char g_dir[256];   /* temp folder: STRATA_HOME and the SQLite file */
static char g_uri[1024];  /* the store under test */
static unsigned g_serial; /* unique experiment names across tests */

static void uniq(char *buf, size_t n, const char *what) {
    snprintf(buf, n, "%s-%ld-%u-%u", what, (long)getpid(), g_serial++, (unsigned)rand());
}

static int setup_common(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/strata_test_track_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    setenv("STRATA_HOME", g_dir, 1);
    srand((unsigned)getpid());
    return 0;
}

static int setup_sqlite(void **state) {
    (void)state;
    if (setup_common()) return -1;
    snprintf(g_uri, sizeof g_uri, "sqlite://%s/tracking.db", g_dir);
    return 0;
}

static int setup_pg(void **state) {
    (void)state;
    if (setup_common()) return -1;
    const char *u = getenv("STRATA_TEST_PG_URI");
    snprintf(g_uri, sizeof g_uri, "%s", u ? u : "");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static st_track *open_store(void) {
    if (!*g_uri) {
        print_message("skipped: STRATA_TEST_PG_URI is not set (tools/pg_test.sh sets it)\n");
        skip();
    }
    st_track_params p = st_track_default_params();
    p.uri = g_uri;
    st_track *t = NULL;
    st_status s = st_track_open(&p, &t);
    if (s != ST_OK) print_message("open %s: %s\n", g_uri, st_last_error());
    assert_int_equal(s, ST_OK);
    return t;
}

#define OK(x)                                                                                   \
    do {                                                                                        \
        st_status s_ = (x);                                                                     \
        if (s_ != ST_OK) print_message("%s: %s\n", #x, st_last_error());                        \
        assert_int_equal(s_, ST_OK);                                                            \
    } while (0)

static const st_track_metric_summary *find_metric(const st_run_record *r, const char *key) {
    for (int i = 0; i < r->n_metrics; i++)
        if (strcmp(r->metrics[i].key, key) == 0) return &r->metrics[i];
    return NULL;
}
static const char *find_kv(const st_track_kv *kv, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0) return kv[i].value;
    return NULL;
}

/* ---- round trip ---------------------------------------------------------------- */

static void test_round_trip(void **state) {
    (void)state;
    st_track *t = open_store();
    int64_t live0 = st_alloc_get_stats().live_bytes;
    char exp[64];
    uniq(exp, sizeof exp, "rt");
    st_run_start rs = st_run_start_default();
    rs.experiment = exp;
    rs.name = "baby 'quoted' <run>";
    rs.command = "strata train --config shakespeare-char-baby";
    rs.seed = 1337;
    rs.source_dir = STRATA_SOURCE_DIR;
    st_track_run *r = NULL;
    OK(st_track_run_start(t, &rs, &r));
    char id[33];
    snprintf(id, sizeof id, "%s", st_track_run_id(r));
    assert_int_equal(strlen(id), 32);
    OK(st_track_log_param(r, "n_layer", "4"));
    OK(st_track_log_param(r, "lr", "0.001"));
    OK(st_track_log_param(r, "arch", "gpt2"));
    OK(st_track_log_param(r, "n_layer", "6")); /* upsert */
    OK(st_track_set_tag(r, "team", "o'brien; DROP TABLE runs"));
    for (int step = 0; step < 100; step++) {
        OK(st_track_log_metric(r, "train_loss", 4.0 - step * 0.01, step));
        OK(st_track_log_metric(r, "lr", 1e-3 * (step + 1) / 100.0, step));
        if (step % 10 == 9) OK(st_track_log_metric(r, "val_loss", 3.0 - step * 0.001, step));
    }
    assert_int_equal(st_track_pending(r), 210);
    OK(st_track_flush(r));
    assert_int_equal(st_track_pending(r), 0);
    /* An artifact: its hash must equal sha256sum's. */
    char art[512], ref[128] = {0}, hex[65];
    snprintf(art, sizeof art, "%s/model.bin", g_dir);
    FILE *f = fopen(art, "wb");
    assert_non_null(f);
    for (unsigned i = 0; i < 300000; i++) fputc((int)((i * 7919u) & 0xffu), f);
    fclose(f);
    OK(st_track_log_artifact(r, art, NULL, hex));
    char cmd[700];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", art);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(ref, sizeof ref, p));
    pclose(p);
    assert_memory_equal(hex, ref, 64);
    char blob[4096];
    OK(st_track_blob_path(hex, blob, sizeof blob));
    assert_int_equal(access(blob, R_OK), 0);
    OK(st_track_run_end(r, ST_RUN_FINISHED));
    st_track_run_free(r);

    st_run_record *rec = NULL;
    OK(st_track_get_run(t, id, &rec));
    assert_string_equal(rec->id, id);
    assert_string_equal(rec->experiment, exp);
    assert_string_equal(rec->name, "baby 'quoted' <run>");
    assert_string_equal(rec->command, rs.command);
    assert_int_equal(rec->status, ST_RUN_FINISHED);
    assert_int_equal(rec->seed, 1337);
    assert_int_equal(rec->pid, getpid());
    assert_true(rec->end_time >= rec->start_time);
    assert_non_null(rec->host);
    assert_int_equal(rec->n_params, 3);
    assert_string_equal(find_kv(rec->params, rec->n_params, "n_layer"), "6");
    assert_string_equal(find_kv(rec->params, rec->n_params, "lr"), "0.001");
    assert_string_equal(find_kv(rec->tags, rec->n_tags, "team"), "o'brien; DROP TABLE runs");
    assert_int_equal(rec->n_metrics, 3);
    const st_track_metric_summary *tl = find_metric(rec, "train_loss");
    assert_non_null(tl);
    assert_int_equal(tl->n_points, 100);
    assert_int_equal(tl->last_step, 99);
    assert_true(tl->last == 4.0 - 99 * 0.01); /* exact: %.17g round trip */
    assert_true(tl->min == 4.0 - 99 * 0.01 && tl->max == 4.0);
    assert_int_equal(find_metric(rec, "val_loss")->n_points, 10);
    assert_int_equal(rec->n_artifacts, 1);
    assert_string_equal(rec->artifacts[0].name, "model.bin");
    assert_int_equal(rec->artifacts[0].bytes, 300000);
    assert_memory_equal(rec->artifacts[0].sha256, ref, 64);
    st_run_record_free(rec);

    /* A prefix finds the run; history comes back in step order, exactly. */
    char prefix[9];
    snprintf(prefix, sizeof prefix, "%.8s", id);
    OK(st_track_get_run(t, prefix, &rec));
    assert_string_equal(rec->id, id);
    st_run_record_free(rec);
    st_metric_series *ser = NULL;
    OK(st_track_metric_history(t, id, "lr", &ser));
    assert_int_equal(ser->n, 100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(ser->step[i], i);
        assert_true(ser->value[i] == 1e-3 * (i + 1) / 100.0);
    }
    st_metric_series_free(ser);
    /* Errors: a bad id, an unknown parent. */
    assert_int_equal(st_track_get_run(t, "zz'--", &rec), ST_ERR_INVALID_ARG);
    assert_int_equal(st_track_get_run(t, "0000000000000000000000000000000f", &rec), ST_ERR_INVALID_ARG);
    rs.parent_id = "00000000000000000000000000000000";
    assert_int_equal(st_track_run_start(t, &rs, &r), ST_ERR_INVALID_ARG);
    assert_non_null(strstr(st_last_error(), "parent"));
    /* A child run. */
    rs.parent_id = id;
    rs.name = "child";
    OK(st_track_run_start(t, &rs, &r));
    char cid[33];
    snprintf(cid, sizeof cid, "%s", st_track_run_id(r));
    OK(st_track_run_end(r, ST_RUN_FINISHED));
    st_track_run_free(r);
    OK(st_track_get_run(t, cid, &rec));
    assert_string_equal(rec->parent_id, id);
    st_run_record_free(rec);
    /* Delete removes the run and what it logged. */
    OK(st_track_delete_run(t, cid));
    assert_int_equal(st_track_get_run(t, cid, &rec), ST_ERR_INVALID_ARG);
    assert_int_equal(st_alloc_get_stats().live_bytes, live0);
    st_track_close(t);
}

/* ---- batching ------------------------------------------------------------------- */

static void test_batching(void **state) {
    (void)state;
    st_track *t = open_store();
    char exp[64];
    uniq(exp, sizeof exp, "batch");
    st_run_start rs = st_run_start_default();
    rs.experiment = exp;
    st_track_run *r;
    OK(st_track_run_start(t, &rs, &r));
    const int n = 3 * ST_TRACK_FLUSH_POINTS + 17;
    for (int i = 0; i < n; i++) {
        OK(st_track_log_metric(r, "loss", (double)i, i));
        /* The buffer never exceeds its limit: a full one is written. */
        assert_true(st_track_pending(r) < ST_TRACK_FLUSH_POINTS);
    }
    assert_int_equal(st_track_pending(r), 17);
    /* Before the final flush the store holds exactly the full batches. */
    st_metric_series *s;
    OK(st_track_metric_history(t, st_track_run_id(r), "loss", &s));
    assert_int_equal(s->n, 3 * ST_TRACK_FLUSH_POINTS);
    st_metric_series_free(s);
    OK(st_track_run_end(r, ST_RUN_FINISHED));
    OK(st_track_metric_history(t, st_track_run_id(r), "loss", &s));
    assert_int_equal(s->n, n);
    for (int i = 0; i < n; i++) assert_true(s->value[i] == (double)i);
    st_metric_series_free(s);
    /* NaN survives as NaN (NULL on SQLite reads back as NaN). */
    OK(st_track_log_metric(r, "nan", NAN, 0));
    OK(st_track_flush(r));
    OK(st_track_metric_history(t, st_track_run_id(r), "nan", &s));
    assert_int_equal(s->n, 1);
    assert_true(isnan(s->value[0]));
    st_metric_series_free(s);
    /* Bad keys. */
    assert_int_equal(st_track_log_metric(r, "", 1, 0), ST_ERR_INVALID_ARG);
    char longkey[400];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(st_track_log_param(r, longkey, "1"), ST_ERR_INVALID_ARG);
    st_track_run_free(r);
    st_track_close(t);
}

/* ---- 20 processes at once --------------------------------------------------------- */

enum { N_PROC = 20, N_POINTS = 1500, BATCH = 100 };

static void test_concurrent(void **state) {
    (void)state;
    st_track *t = open_store(); /* creates the schema before the children race */
    st_track_close(t);
    char exp[64];
    uniq(exp, sizeof exp, "conc");
    pid_t pids[N_PROC];
    for (int c = 0; c < N_PROC; c++) {
        pids[c] = fork();
        assert_true(pids[c] >= 0);
        if (pids[c] == 0) {
            st_track_params p = st_track_default_params();
            p.uri = g_uri;
            st_track *ct = NULL;
            st_track_run *r = NULL;
            int rc = 1;
            st_run_start rs = st_run_start_default();
            rs.experiment = exp;
            char name[32], v[32];
            snprintf(name, sizeof name, "proc-%d", c);
            rs.name = name;
            if (st_track_open(&p, &ct) == ST_OK && st_track_run_start(ct, &rs, &r) == ST_OK) {
                snprintf(v, sizeof v, "%d", c);
                rc = st_track_log_param(r, "child", v) != ST_OK;
                for (int i = 0; i < N_POINTS && !rc; i++) {
                    rc = st_track_log_metric(r, "x", c * 1e6 + i, i) != ST_OK;
                    if (!rc && i % BATCH == BATCH - 1) rc = st_track_flush(r) != ST_OK;
                }
                if (!rc) rc = st_track_run_end(r, ST_RUN_FINISHED) != ST_OK;
            }
            if (rc) fprintf(stderr, "child %d: %s\n", c, st_last_error());
            st_track_run_free(r);
            st_track_close(ct);
            _exit(rc);
        }
    }
    int failures = 0;
    for (int c = 0; c < N_PROC; c++) {
        int st;
        waitpid(pids[c], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failures++;
    }
    assert_int_equal(failures, 0);
    t = open_store();
    st_run_query q = {exp, "status = 'finished'", "params.child", 0};
    st_run_list *l;
    OK(st_track_list_runs(t, &q, &l));
    assert_int_equal(l->n, N_PROC);
    for (int c = 0; c < N_PROC; c++) {
        const st_track_metric_summary *m = find_metric(l->runs[c], "x");
        assert_non_null(m);
        assert_int_equal(m->n_points, N_POINTS);
        assert_true(m->min == c * 1e6 && m->max == c * 1e6 + N_POINTS - 1);
    }
    st_run_list_free(l);
    st_track_close(t);
}

/* ---- the reaper --------------------------------------------------------------------------- */

static void test_reaper(void **state) {
    (void)state;
    st_track *t = open_store();
    st_track_close(t);
    char exp[64];
    uniq(exp, sizeof exp, "reap");
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        st_track_params p = st_track_default_params();
        p.uri = g_uri;
        st_track *ct;
        st_track_run *r;
        st_run_start rs = st_run_start_default();
        rs.experiment = exp;
        if (st_track_open(&p, &ct) != ST_OK || st_track_run_start(ct, &rs, &r) != ST_OK) _exit(1);
        st_track_log_metric(r, "loss", 1.0, 0);
        st_track_flush(r);
        if (write(fds[1], st_track_run_id(r), 32) != 32) _exit(1);
        for (;;) pause(); /* killed here, mid-run */
    }
    char id[33] = {0};
    assert_int_equal(read(fds[0], id, 32), 32);
    close(fds[0]);
    close(fds[1]);
    t = open_store();
    st_run_record *rec;
    OK(st_track_get_run(t, id, &rec));
    assert_int_equal(rec->status, ST_RUN_RUNNING); /* alive: not reaped */
    st_run_record_free(rec);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    int n = 0;
    OK(st_track_reap(t, &n));
    assert_true(n >= 1);
    OK(st_track_get_run(t, id, &rec));
    assert_int_equal(rec->status, ST_RUN_FAILED);
    assert_true(isfinite(rec->end_time));
    assert_non_null(find_kv(rec->tags, rec->n_tags, "strata.reaped"));
    st_run_record_free(rec);
    st_track_close(t);

    /* A stale heartbeat (another host's run, say) is reaped too. */
    t = open_store();
    st_run_start rs = st_run_start_default();
    rs.experiment = exp;
    st_track_run *r;
    OK(st_track_run_start(t, &rs, &r));
    char id2[33];
    snprintf(id2, sizeof id2, "%s", st_track_run_id(r));
    st_track_params p = st_track_default_params();
    p.uri = g_uri;
    p.stale_s = 0.05;
    p.reap_on_open = false;
    st_track *t2;
    OK(st_track_open(&p, &t2));
    usleep(120000);
    OK(st_track_reap(t2, &n));
    OK(st_track_get_run(t2, id2, &rec));
    assert_int_equal(rec->status, ST_RUN_FAILED);
    st_run_record_free(rec);
    st_track_close(t2);
    st_track_run_free(r); /* already failed; stays failed? it ends as failed */
    /* A handle freed without an end marks its run failed. */
    OK(st_track_run_start(t, &rs, &r));
    snprintf(id2, sizeof id2, "%s", st_track_run_id(r));
    st_track_run_free(r);
    OK(st_track_get_run(t, id2, &rec));
    assert_int_equal(rec->status, ST_RUN_FAILED);
    st_run_record_free(rec);
    st_track_close(t);
}

/* ---- filters --------------------------------------------------------------------------------- */

/* Three runs: (n_layer, val_loss, tag x, status). */
static void make_runs(st_track *t, const char *exp, char ids[3][33]) {
    static const struct {
        const char *n_layer;
        double val_loss;
        const char *x;
        st_run_status status;
        const char *name;
    } k[3] = {{"4", 1.5, "y", ST_RUN_FINISHED, "a"},
              {"4", 1.7, "z", ST_RUN_FINISHED, "b"},
              {"6", 1.2, "y", ST_RUN_FAILED, "c"}};
    for (int i = 0; i < 3; i++) {
        st_run_start rs = st_run_start_default();
        rs.experiment = exp;
        rs.name = k[i].name;
        st_track_run *r;
        OK(st_track_run_start(t, &rs, &r));
        snprintf(ids[i], 33, "%s", st_track_run_id(r));
        OK(st_track_log_param(r, "n_layer", k[i].n_layer));
        OK(st_track_log_param(r, "x", "1"));
        OK(st_track_set_tag(r, "x", k[i].x));
        OK(st_track_log_metric(r, "val_loss", 9.0, 0)); /* the last step counts */
        OK(st_track_log_metric(r, "val_loss", k[i].val_loss, 10));
        OK(st_track_run_end(r, k[i].status));
        st_track_run_free(r);
    }
}

/* The names of the runs a filter selects, in order, as "a,b". */
static st_status select_names(st_track *t, const char *exp, const char *filter, const char *sort, char *out,
                              size_t n) {
    st_run_query q = {exp, filter, sort ? sort : "name", 0};
    st_run_list *l;
    ST_TRY(st_track_list_runs(t, &q, &l));
    out[0] = '\0';
    for (int i = 0; i < l->n; i++)
        snprintf(out + strlen(out), n - strlen(out), "%s%s", i ? "," : "", l->runs[i]->name);
    st_run_list_free(l);
    return ST_OK;
}

static void test_filters(void **state) {
    (void)state;
    st_track *t = open_store();
    char exp[64], ids[3][33], got[256];
    uniq(exp, sizeof exp, "filter");
    make_runs(t, exp, ids);
    static const struct {
        const char *filter, *sort, *want;
    } k_ok[] = {
        {"", NULL, "a,b,c"},
        {"metrics.val_loss < 1.6 and params.n_layer = 4 and tags.x = 'y' and status = 'finished'", NULL, "a"},
        {"metrics.val_loss < 1.6", NULL, "a,c"},
        {"metrics.val_loss >= 1.5", NULL, "a,b"},
        {"params.n_layer = 4", NULL, "a,b"},
        {"params.n_layer > 4.5", NULL, "c"},
        {"params.n_layer = '4'", NULL, "a,b"},
        {"tags.x != 'y'", NULL, "b"},
        {"status = 'failed' or name = \"b\"", NULL, "b,c"},
        {"not (status = 'failed') and (tags.x = 'y' or tags.x = 'z')", NULL, "a,b"},
        {"NAME LIKE 'a%' OR name == 'c'", NULL, "a,c"},
        {"metrics.missing is null", NULL, "a,b,c"},
        {"metrics.val_loss is not null and seed is null", NULL, "a,b,c"},
        {"params.`n_layer` = 6", NULL, "c"},
        {"", "metrics.val_loss", "c,a,b"},
        {"", "-metrics.val_loss", "b,a,c"},
        {"", "-params.n_layer", "c,b,a"},
        {"", "-name", "c,b,a"},
        {"", "metrics.missing", "a,b,c"},
    };
    for (size_t i = 0; i < sizeof k_ok / sizeof k_ok[0]; i++) {
        st_status s = select_names(t, exp, k_ok[i].filter, k_ok[i].sort, got, sizeof got);
        if (s != ST_OK || strcmp(got, k_ok[i].want) != 0)
            print_message("filter [%s] sort [%s]: got '%s' (%s), want '%s'\n", k_ok[i].filter,
                          k_ok[i].sort ? k_ok[i].sort : "name", got, st_last_error(), k_ok[i].want);
        assert_int_equal(s, ST_OK);
        assert_string_equal(got, k_ok[i].want);
    }
    /* Invalid filters: ST_ERR_INVALID_ARG naming the column. */
    static const struct {
        const char *filter, *col;
    } k_bad[] = {
        {"metrics.val_loss <", "column 19"},
        {"metrics.val_loss < 'x'", "column 20"},
        {"bogus = 1", "column 1"},
        {"params.x = 1 and", "column 17"},
        {"(status = 'failed'", "column 19"},
        {"status = 'unterminated", "column 10"},
        {"params.x = '1'; DROP TABLE runs; --'", "column 15"},
        {"status = 'x' extra", "column 14"},
        {"tags.x = 'a' or '1' = '1'", "column 17"},
        {"metrics. < 1", "column 9"},
        {"status ! 'x'", "column 8"},
        {"seed = 'x'", "column 8"},
        {"foo.bar = 1", "column 1"},
    };
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        st_status s = st_track_filter_check(k_bad[i].filter);
        if (s != ST_ERR_INVALID_ARG || !strstr(st_last_error(), k_bad[i].col))
            print_message("filter [%s]: %s (want %s)\n", k_bad[i].filter, st_last_error(), k_bad[i].col);
        assert_int_equal(s, ST_ERR_INVALID_ARG);
        assert_non_null(strstr(st_last_error(), k_bad[i].col));
        assert_int_equal(select_names(t, exp, k_bad[i].filter, NULL, got, sizeof got), ST_ERR_INVALID_ARG);
    }
    assert_int_equal(select_names(t, exp, "", "params.", got, sizeof got), ST_ERR_INVALID_ARG);
    assert_int_equal(select_names(t, exp, "", "name; DROP TABLE runs", got, sizeof got), ST_ERR_INVALID_ARG);
    /* Injection attempts that parse: keys and values are data. */
    static const char *const k_inert[] = {
        "params.x = '1''; DROP TABLE runs; --'",
        "params.`x') OR 1=1 --` = 1",
        "tags.x = 'y'' OR ''1''=''1'",
        "name = 'a\" OR 1=1 --'",
        "params.`n_layer = 4 or 1` = 4",
    };
    for (size_t i = 0; i < sizeof k_inert / sizeof k_inert[0]; i++) {
        OK(select_names(t, exp, k_inert[i], NULL, got, sizeof got));
        if (*got) print_message("inert filter [%s] selected '%s'\n", k_inert[i], got);
        assert_string_equal(got, "");
    }
    /* ... and every table is still there with its rows. */
    OK(select_names(t, exp, "", NULL, got, sizeof got));
    assert_string_equal(got, "a,b,c");
    /* The compiled SQL holds no byte of the values: only placeholders. */
    st__sqlfrag f;
    OK(st__filter_compile("params.`evil'key` = 'DROP TABLE runs' and metrics.m < 1", 3, &f));
    assert_null(strstr(f.sql, "DROP"));
    assert_null(strstr(f.sql, "evil"));
    assert_non_null(strstr(f.sql, "$3"));
    assert_non_null(strstr(f.sql, "$6"));
    assert_int_equal(f.n_params, 4);
    assert_string_equal(f.params[0].s, "evil'key");
    assert_string_equal(f.params[1].s, "DROP TABLE runs");
    st__sqlfrag_free(&f);
    /* Limit. */
    st_run_query q = {exp, NULL, "name", 2};
    st_run_list *l;
    OK(st_track_list_runs(t, &q, &l));
    assert_int_equal(l->n, 2);
    st_run_list_free(l);
    st_track_close(t);
}

/* ---- import, git ---------------------------------------------------------------------------------- */

static void test_import(void **state) {
    (void)state;
    st_track *t = open_store();
    char path[512], exp[64];
    uniq(exp, sizeof exp, "import");
    snprintf(path, sizeof path, "%s/metrics.jsonl", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"step\": 0, \"train_loss\": 4.2, \"val_loss\": 4.25, \"lr\": 0.0, \"note\": \"x\"}\n\n"
               "{\"step\": 10, \"train_loss\": 3.1, \"val_loss\": 3.3, \"lr\": 0.0001}\n");
    fclose(f);
    st_run_start rs = st_run_start_default();
    rs.experiment = exp;
    st_track_run *r;
    OK(st_track_run_start(t, &rs, &r));
    int64_t n = 0;
    OK(st_track_import_metrics_jsonl(r, path, &n));
    assert_int_equal(n, 6);
    st_metric_series *s;
    OK(st_track_metric_history(t, st_track_run_id(r), "val_loss", &s));
    assert_int_equal(s->n, 2);
    assert_true(s->value[1] == 3.3 && s->step[1] == 10);
    st_metric_series_free(s);
    /* Malformed files name the file and the line. */
    static const char *const k_bad[] = {"{\"step\": 1}\n[1,2]\n", "{\"train_loss\": 1}\n",
                                        "{\"step\": 1.5}\n", "{\"step\": 1, \"a\": }\n"};
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        f = fopen(path, "w");
        fputs(k_bad[i], f);
        fclose(f);
        assert_int_equal(st_track_import_metrics_jsonl(r, path, &n), ST_ERR_FORMAT);
        assert_non_null(strstr(st_last_error(), "metrics.jsonl: line"));
    }
    assert_int_equal(st_track_import_metrics_jsonl(r, "/nonexistent/m.jsonl", &n), ST_ERR_IO);
    OK(st_track_run_end(r, ST_RUN_FINISHED));
    st_track_run_free(r);
    st_track_close(t);
}

static void test_git_and_uri(void **state) {
    (void)state;
    char c[41];
    FILE *p = popen("git -C '" STRATA_SOURCE_DIR "' rev-parse HEAD 2>/dev/null", "r");
    char ref[64] = {0};
    bool have_git = p && fgets(ref, sizeof ref, p) && strlen(ref) >= 40;
    if (p) pclose(p);
    if (have_git) {
        assert_true(st__git_commit(STRATA_SOURCE_DIR "/src/track", c));
        assert_memory_equal(c, ref, 40);
    }
    assert_false(st__git_commit("/proc", c));
    /* URIs: unknown scheme, unreachable PostgreSQL, not a database. */
    st_track_params pr = st_track_default_params();
    st_track *t;
    pr.uri = "mysql://x/y";
    assert_int_equal(st_track_open(&pr, &t), ST_ERR_INVALID_ARG);
    pr.uri = "postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2";
    assert_int_equal(st_track_open(&pr, &t), ST_ERR_IO);
    assert_null(strstr(st_last_error(), "secret")); /* password masked */
    char junk[512];
    snprintf(junk, sizeof junk, "%s/junk.db", g_dir);
    FILE *f = fopen(junk, "w");
    fputs("this is not a database file, not at all, no sqlite header here.......", f);
    fclose(f);
    pr.uri = junk;
    assert_int_not_equal(st_track_open(&pr, &t), ST_OK);
    /* The default URI follows STRATA_TRACKING_URI, else STRATA_HOME. */
    char u[1024];
    unsetenv("STRATA_TRACKING_URI");
    OK(st_track_default_uri(u, sizeof u));
    char want[600];
    snprintf(want, sizeof want, "sqlite://%s/tracking.db", g_dir);
    assert_string_equal(u, want);
    setenv("STRATA_TRACKING_URI", "postgresql://h/db", 1);
    OK(st_track_default_uri(u, sizeof u));
    assert_string_equal(u, "postgresql://h/db");
    unsetenv("STRATA_TRACKING_URI");
}

/* ---- the dashboard's pages (no HTTP) -------------------------------------------------------- */

static char *render(st_track *t, const char *path, const char *q, int want_http) {
    int http = 0;
    char *body = NULL;
    size_t n = 0;
    const char *ct = NULL;
    OK(st_track_ui_render(t, path, q, &http, &body, &n, &ct));
    if (http != want_http) print_message("%s?%s: HTTP %d, want %d\n", path, q ? q : "", http, want_http);
    assert_int_equal(http, want_http);
    assert_int_equal(strlen(body), n);
    return body;
}

static void test_ui_pages(void **state) {
    (void)state;
    st_track *t = open_store();
    int64_t live0 = st_alloc_get_stats().live_bytes;
    char exp[64], ids[3][33];
    uniq(exp, sizeof exp, "ui");
    make_runs(t, exp, ids);
    st_run_start rs = st_run_start_default();
    rs.experiment = exp;
    rs.name = "<img src=x onerror=alert(1)>";
    st_track_run *r;
    OK(st_track_run_start(t, &rs, &r));
    char evil[33];
    snprintf(evil, sizeof evil, "%s", st_track_run_id(r));
    OK(st_track_set_tag(r, "note", "\"><script>x</script>"));
    for (int i = 0; i < 25; i++) OK(st_track_log_metric(r, "val_loss", 3.0 / (i + 1), i * 4));
    OK(st_track_run_end(r, ST_RUN_FINISHED));
    st_track_run_free(r);

    char q[300];
    snprintf(q, sizeof q, "experiment=%s&sort=-metrics.val_loss", exp);
    char *b = render(t, "/", q, 200);
    assert_non_null(strstr(b, ids[0]));
    assert_null(strstr(b, "<img"));
    assert_non_null(strstr(b, "&lt;img src=x onerror=alert(1)&gt;"));
    st_free(b);
    b = render(t, "/", "filter=metrics.val_loss+%3C", 400);
    assert_non_null(strstr(b, "column 19"));
    st_free(b);
    char path[80];
    snprintf(path, sizeof path, "/run/%s", evil);
    b = render(t, path, NULL, 200);
    assert_null(strstr(b, "<script>"));
    assert_non_null(strstr(b, "&quot;&gt;&lt;script&gt;"));
    const char *pl = strstr(b, "<polyline");
    assert_non_null(pl);
    assert_non_null(strstr(pl, "data-points=\"25\""));
    const char *pts = strstr(pl, "\" points=\"");
    assert_non_null(pts);
    int n_pts = 1;
    for (const char *c = pts + 10; *c != '"'; c++) n_pts += *c == ' ';
    assert_int_equal(n_pts, 25);
    st_free(b);
    snprintf(q, sizeof q, "ids=%s,%.8s&id=%s", ids[0], ids[1], ids[2]);
    b = render(t, "/compare", q, 200);
    const char *v = strstr(b, "data-metric=\"val_loss\"");
    assert_non_null(v);
    int curves = 0;
    for (const char *c = v; (c = strstr(c, "<polyline")) && c < strstr(v, "</svg>"); c++) curves++;
    assert_int_equal(curves, 3);
    st_free(b);
    b = render(t, "/compare", "ids=zz", 404);
    st_free(b);
    snprintf(path, sizeof path, "/api/runs/%s/metrics", evil);
    b = render(t, path, "key=val_loss", 200);
    assert_non_null(strstr(b, "\"steps\": [0, 4, 8") ? b : strstr(b, "\"steps\":[0,4,8"));
    st_free(b);
    b = render(t, "/api/runs", "filter=params.n_layer%3D6", 200);
    assert_non_null(strstr(b, ids[2]));
    assert_null(strstr(b, ids[0]));
    st_free(b);
    b = render(t, "/nowhere", NULL, 404);
    st_free(b);
    assert_int_equal(st_alloc_get_stats().live_bytes, live0);
    st_track_close(t);
}

#define SUITE                                                                                                     \
    cmocka_unit_test(test_round_trip), cmocka_unit_test(test_batching), cmocka_unit_test(test_concurrent),       \
        cmocka_unit_test(test_reaper), cmocka_unit_test(test_filters), cmocka_unit_test(test_import),             \
        cmocka_unit_test(test_ui_pages)

int main(void) {
    const struct CMUnitTest sqlite_tests[] = {SUITE, cmocka_unit_test(test_git_and_uri)};
    const struct CMUnitTest pg_tests[] = {SUITE};
    int rc = cmocka_run_group_tests_name("track_sqlite", sqlite_tests, setup_sqlite, teardown);
    if (!getenv("STRATA_TEST_PG_URI"))
        printf("track_postgresql: skipped: STRATA_TEST_PG_URI is not set (run tools/pg_test.sh)\n");
    else rc |= cmocka_run_group_tests_name("track_postgresql", pg_tests, setup_pg, teardown);
    return rc;
}
