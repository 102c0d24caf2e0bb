/*
 * runs.c — `strata runs list|show|compare|export|delete|import`: the
 * tracking store (strata/track.h) from the command line.
 *
 * Each action opens the store named by --tracking (default
 * STRATA_TRACKING_URI, else SQLite at STRATA_HOME/tracking.db), does one
 * thing and closes it. Tables for people on stdout; --json (and export)
 * for scripts. Single-threaded.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "strata/track.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata runs list [--experiment E] [--filter F] [--sort KEY] [--limit N] [--json]\n"
            "       strata runs show ID [--json]\n"
            "       strata runs compare ID ID... [--json]\n"
            "       strata runs export [--format csv|json] [--experiment E] [--filter F] [--out FILE]\n"
            "       strata runs delete ID\n"
            "       strata runs import METRICS.jsonl [--experiment E] [--name N] [--param K=V]...\n"
            "                          [--tag K=V]... [--artifact FILE]... [--status S] [--json]\n"
            "   every action takes --tracking URI\n\n"
            "Experiment tracking: every run with its parameters, metrics, tags and artifacts.\n\n"
            "actions:\n"
            "  list      runs, newest first (a table; --json: an array of run objects)\n"
            "  show      one run: attributes, parameters, tags, metrics (last/min/max), artifacts\n"
            "  compare   runs side by side: parameters (differences marked *) and final metrics\n"
            "  export    every selected run as CSV (one row per run; params.K, metrics.K = last\n"
            "            value, tags.K columns) or as a JSON array\n"
            "  delete    a run and everything logged about it (blobs stay for the hub's gc)\n"
            "  import    log a `strata train` metrics.jsonl as a new finished run; prints its id\n\n"
            "options:\n"
            "  --tracking URI    the store: sqlite:///path.db, a path, or postgresql://...\n"
            "                    (default: $STRATA_TRACKING_URI, else sqlite at\n"
            "                    $STRATA_HOME/tracking.db)\n"
            "  --experiment E    only runs of experiment E (import: the run's experiment,\n"
            "                    default \"default\")\n"
            "  --filter F        e.g. \"metrics.val_loss < 1.6 and params.n_layer = 4 and\n"
            "                    tags.x = 'y' and status = 'finished'\"; names: metrics.K (value at\n"
            "                    the last step), params.K, tags.K, id name experiment status host\n"
            "                    git_commit command parent_id start_time end_time seed; operators\n"
            "                    = != < <= > >= like, is [not] null; and, or, not, parentheses;\n"
            "                    'strings'; keys with odd characters in `backquotes`\n"
            "  --sort KEY        one of those names, '-' first for descending (default -start_time)\n"
            "  --limit N         at most N runs (default: all)\n"
            "  --format F        export format: csv (default) or json\n"
            "  --out FILE        export into FILE instead of stdout\n"
            "  --json            JSON for scripts\n"
            "  --status S        import: finished (default), failed or killed\n\n"
            "ID is a run id or a unique prefix of at least 4 hex digits.\n"
            "exit codes: 0 ok, 1 failure (bad filter, unknown run, store errors), 2 bad usage\n");
}

typedef struct opts {
    const char *tracking, *experiment, *filter, *sort, *format, *out, *name, *status;
    long limit;
    bool json;
    const char *pos[64];
    int n_pos;
    const char *kv_param[64], *kv_tag[64], *artifacts[64];
    int n_param, n_tag, n_art;
} opts;

static int parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (!strcmp(a, "--tracking")) dst = &o->tracking;
        else if (!strcmp(a, "--experiment")) dst = &o->experiment;
        else if (!strcmp(a, "--filter")) dst = &o->filter;
        else if (!strcmp(a, "--sort")) dst = &o->sort;
        else if (!strcmp(a, "--format")) dst = &o->format;
        else if (!strcmp(a, "--out")) dst = &o->out;
        else if (!strcmp(a, "--name")) dst = &o->name;
        else if (!strcmp(a, "--status")) dst = &o->status;
        if (dst || !strcmp(a, "--limit") || !strcmp(a, "--param") || !strcmp(a, "--tag") ||
            !strcmp(a, "--artifact")) {
            if (i + 1 >= argc) return cli_usage_error("runs", "%s needs a value", a);
            const char *v = argv[++i];
            if (dst) *dst = v;
            else if (!strcmp(a, "--limit")) {
                if (!cli_parse_long(v, &o->limit) || o->limit < 1)
                    return cli_usage_error("runs", "--limit wants a positive integer, not '%s'", v);
            } else {
                const char **arr = !strcmp(a, "--param") ? o->kv_param : !strcmp(a, "--tag") ? o->kv_tag : o->artifacts;
                int *n = !strcmp(a, "--param") ? &o->n_param : !strcmp(a, "--tag") ? &o->n_tag : &o->n_art;
                if (*n >= 64) return cli_usage_error("runs", "too many %s options", a);
                if (arr != o->artifacts && !strchr(v, '='))
                    return cli_usage_error("runs", "%s wants KEY=VALUE, not '%s'", a, v);
                arr[(*n)++] = v;
            }
            continue;
        }
        if (a[0] == '-' && a[1]) return cli_usage_error("runs", "unknown option '%s'", a);
        if (o->n_pos >= 64) return cli_usage_error("runs", "too many arguments");
        o->pos[o->n_pos++] = a;
    }
    return 0;
}

static st_status open_store(const opts *o, st_track **t) {
    st_track_params p = st_track_default_params();
    p.uri = o->tracking;
    return st_track_open(&p, t);
}

static void fmt_time(double t, char *buf, size_t n) {
    if (!isfinite(t)) {
        snprintf(buf, n, "-");
        return;
    }
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%SZ", &tm);
}

static void fmt_duration(const st_run_record *r, char *buf, size_t n) {
    double end = isfinite(r->end_time) ? r->end_time : r->heartbeat;
    double d = end - r->start_time;
    if (!isfinite(d) || d < 0) snprintf(buf, n, "-");
    else if (d < 60) snprintf(buf, n, "%.1fs", d);
    else if (d < 3600) snprintf(buf, n, "%dm%02ds", (int)(d / 60), (int)fmod(d, 60));
    else snprintf(buf, n, "%dh%02dm", (int)(d / 3600), (int)fmod(d / 60, 60));
}

static const st_track_metric_summary *metric_of(const st_run_record *r, const char *key) {
    for (int i = 0; i < r->n_metrics; i++)
        if (!strcmp(r->metrics[i].key, key)) return &r->metrics[i];
    return NULL;
}
static const char *kv_of(const st_track_kv *kv, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(kv[i].key, key)) return kv[i].value;
    return NULL;
}

/* Union of keys over runs (params: which=0, metrics: 1, tags: 2), sorted. */
static int key_union(const st_run_list *l, int which, const char ***out) {
    int cap = 16, n = 0;
    const char **v = malloc((size_t)cap * sizeof *v);
    for (int i = 0; v && i < l->n; i++) {
        const st_run_record *r = l->runs[i];
        int m = which == 0 ? r->n_params : which == 1 ? r->n_metrics : r->n_tags;
        for (int j = 0; j < m; j++) {
            const char *k = which == 0 ? r->params[j].key : which == 1 ? r->metrics[j].key : r->tags[j].key;
            bool seen = false;
            for (int q = 0; q < n && !seen; q++) seen = !strcmp(v[q], k);
            if (seen) continue;
            if (n == cap) {
                const char **nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
                if (!nv) break;
                v = nv;
            }
            v[n++] = k;
        }
    }
    for (int i = 1; i < n; i++) /* insertion sort: few keys */
        for (int j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
            const char *x = v[j];
            v[j] = v[j - 1];
            v[j - 1] = x;
        }
    *out = v;
    return v ? n : 0;
}

static int print_json_and_free(char *j) {
    fputs(j, stdout);
    fputc('\n', stdout);
    st_free(j);
    return 0;
}

static int act_list(const opts *o, st_track *t) {
    st_run_query q = {o->experiment, o->filter, o->sort, o->limit};
    st_run_list *l;
    st_status s = st_track_list_runs(t, &q, &l);
    if (s) return cli_fail("runs list", s);
    if (o->json) {
        char *j;
        s = st_run_list_to_json(l, 1, &j);
        st_run_list_free(l);
        return s ? cli_fail("runs list", s) : print_json_and_free(j);
    }
    /* Metric columns: val_loss and train_loss first, then others; at most 4. */
    const char **keys;
    int nk = key_union(l, 1, &keys), nshow = 0;
    const char *show[4];
    static const char *const pref[] = {"val_loss", "train_loss"};
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < nk; i++)
            if (!strcmp(keys[i], pref[p]) && nshow < 4) show[nshow++] = keys[i];
    for (int i = 0; i < nk && nshow < 4; i++)
        if (strcmp(keys[i], pref[0]) && strcmp(keys[i], pref[1])) show[nshow++] = keys[i];
    printf("%-8s  %-20s  %-14s  %-8s  %-20s  %8s", "ID", "NAME", "EXPERIMENT", "STATUS", "STARTED", "DURATION");
    for (int k = 0; k < nshow; k++) printf("  %12.12s", show[k]);
    printf("\n");
    for (int i = 0; i < l->n; i++) {
        const st_run_record *r = l->runs[i];
        char ts[32], du[32];
        fmt_time(r->start_time, ts, sizeof ts);
        fmt_duration(r, du, sizeof du);
        printf("%-8.8s  %-20.20s  %-14.14s  %-8s  %-20s  %8s", r->id, r->name ? r->name : "",
               r->experiment ? r->experiment : "", st_run_status_name(r->status), ts, du);
        for (int k = 0; k < nshow; k++) {
            const st_track_metric_summary *m = metric_of(r, show[k]);
            if (m) printf("  %12.6g", m->last);
            else printf("  %12s", "-");
        }
        printf("\n");
    }
    if (l->n == 0) printf("(no runs in %s%s%s)\n", st_track_uri(t), o->filter ? " matching the filter" : "", "");
    free(keys);
    st_run_list_free(l);
    return 0;
}

static int act_show(const opts *o, st_track *t) {
    if (o->n_pos != 1) return cli_usage_error("runs", "show takes one run ID");
    st_run_record *r;
    st_status s = st_track_get_run(t, o->pos[0], &r);
    if (s) return cli_fail("runs show", s);
    if (o->json) {
        char *j;
        s = st_run_record_to_json(r, 1, &j);
        st_run_record_free(r);
        return s ? cli_fail("runs show", s) : print_json_and_free(j);
    }
    char ts[32], te[32], du[32];
    fmt_time(r->start_time, ts, sizeof ts);
    fmt_time(r->end_time, te, sizeof te);
    fmt_duration(r, du, sizeof du);
    printf("run %s\n  name        %s\n  experiment  %s\n  status      %s\n  started     %s\n"
           "  ended       %s (%s)\n  command     %s\n  git commit  %s\n  host        %s (pid %lld)\n",
           r->id, r->name, r->experiment, st_run_status_name(r->status), ts, te, du, r->command ? r->command : "-",
           r->git_commit ? r->git_commit : "-", r->host ? r->host : "-", (long long)r->pid);
    if (r->seed >= 0) printf("  seed        %lld\n", (long long)r->seed);
    if (r->parent_id) printf("  parent      %s\n", r->parent_id);
    printf("params (%d)\n", r->n_params);
    for (int i = 0; i < r->n_params; i++) printf("  %-24s %s\n", r->params[i].key, r->params[i].value);
    printf("tags (%d)\n", r->n_tags);
    for (int i = 0; i < r->n_tags; i++) printf("  %-24s %s\n", r->tags[i].key, r->tags[i].value);
    printf("metrics (%d)%*s%14s %10s %14s %14s %8s\n", r->n_metrics, 13, "", "last", "@step", "min", "max", "points");
    for (int i = 0; i < r->n_metrics; i++) {
        const st_track_metric_summary *m = &r->metrics[i];
        printf("  %-24s %14.6g %10lld %14.6g %14.6g %8lld\n", m->key, m->last, (long long)m->last_step, m->min, m->max,
               (long long)m->n_points);
    }
    printf("artifacts (%d)\n", r->n_artifacts);
    for (int i = 0; i < r->n_artifacts; i++)
        printf("  %-24s sha256:%s %lld bytes\n", r->artifacts[i].name, r->artifacts[i].sha256,
               (long long)r->artifacts[i].bytes);
    st_run_record_free(r);
    return 0;
}

static int act_compare(const opts *o, st_track *t) {
    if (o->n_pos < 2) return cli_usage_error("runs", "compare takes two or more run IDs");
    st_run_list l = {0, calloc((size_t)o->n_pos, sizeof(st_run_record *))};
    if (!l.runs) return cli_fail("runs compare", st__fail(ST_ERR_NOMEM, "no memory"));
    st_status s = ST_OK;
    for (int i = 0; i < o->n_pos && !s; i++) {
        s = st_track_get_run(t, o->pos[i], &l.runs[i]);
        if (!s) l.n++;
    }
    int rc = 0;
    const char **pk = NULL, **mk = NULL;
    int npk = 0, nmk = 0;
    if (s) rc = cli_fail("runs compare", s);
    else {
        npk = key_union(&l, 0, &pk);
        nmk = key_union(&l, 1, &mk);
    }
    if (!rc && o->json) {
        json_t *root = json_object(), *ids = json_array(), *params = json_object(), *diff = json_array(),
               *metrics = json_object();
        for (int i = 0; i < l.n; i++) json_array_append_new(ids, json_string(l.runs[i]->id));
        for (int k = 0; k < npk; k++) {
            json_t *vals = json_array();
            const char *v0 = kv_of(l.runs[0]->params, l.runs[0]->n_params, pk[k]);
            bool d = false;
            for (int i = 0; i < l.n; i++) {
                const char *v = kv_of(l.runs[i]->params, l.runs[i]->n_params, pk[k]);
                json_array_append_new(vals, v ? json_string(v) : json_null());
                d |= (!v0 != !v) || (v && v0 && strcmp(v, v0));
            }
            json_object_set_new(params, pk[k], vals);
            if (d) json_array_append_new(diff, json_string(pk[k]));
        }
        for (int k = 0; k < nmk; k++) {
            json_t *vals = json_array();
            for (int i = 0; i < l.n; i++) {
                const st_track_metric_summary *m = metric_of(l.runs[i], mk[k]);
                json_array_append_new(vals, m && isfinite(m->last) ? json_real(m->last) : json_null());
            }
            json_object_set_new(metrics, mk[k], vals);
        }
        json_object_set_new(root, "runs", ids);
        json_object_set_new(root, "params", params);
        json_object_set_new(root, "differing_params", diff);
        json_object_set_new(root, "metrics", metrics);
        char *j = json_dumps(root, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        json_decref(root);
        if (j) puts(j);
        free(j);
    } else if (!rc) {
        printf("%-24s", "");
        for (int i = 0; i < l.n; i++) printf("  %-16.8s", l.runs[i]->id);
        printf("\n%-24s", "name");
        for (int i = 0; i < l.n; i++) printf("  %-16.16s", l.runs[i]->name);
        printf("\n%-24s", "status");
        for (int i = 0; i < l.n; i++) printf("  %-16s", st_run_status_name(l.runs[i]->status));
        printf("\nparams (* differs)\n");
        for (int k = 0; k < npk; k++) {
            const char *v0 = kv_of(l.runs[0]->params, l.runs[0]->n_params, pk[k]);
            bool diff = false;
            for (int i = 1; i < l.n; i++) {
                const char *v = kv_of(l.runs[i]->params, l.runs[i]->n_params, pk[k]);
                diff |= (!v0 != !v) || (v && v0 && strcmp(v, v0));
            }
            printf("%c %-22.22s", diff ? '*' : ' ', pk[k]);
            for (int i = 0; i < l.n; i++) {
                const char *v = kv_of(l.runs[i]->params, l.runs[i]->n_params, pk[k]);
                printf("  %-16.16s", v ? v : "-");
            }
            printf("\n");
        }
        printf("metrics (last value)\n");
        for (int k = 0; k < nmk; k++) {
            printf("  %-22.22s", mk[k]);
            for (int i = 0; i < l.n; i++) {
                const st_track_metric_summary *m = metric_of(l.runs[i], mk[k]);
                if (m) printf("  %-16.6g", m->last);
                else printf("  %-16s", "-");
            }
            printf("\n");
        }
    }
    free(pk);
    free(mk);
    for (int i = 0; i < l.n; i++) st_run_record_free(l.runs[i]);
    free(l.runs);
    return rc;
}

/* RFC 4180: quote fields holding a comma, quote or line break. */
static void csv_field(FILE *f, const char *s, bool first) {
    if (!first) fputc(',', f);
    if (!s) return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int act_export(const opts *o, st_track *t) {
    const char *fmt = o->format ? o->format : "csv";
    if (strcmp(fmt, "csv") && strcmp(fmt, "json"))
        return cli_usage_error("runs", "--format wants csv or json, not '%s'", fmt);
    st_run_query q = {o->experiment, o->filter, o->sort ? o->sort : "start_time", o->limit};
    st_run_list *l;
    st_status s = st_track_list_runs(t, &q, &l);
    if (s) return cli_fail("runs export", s);
    FILE *f = stdout;
    if (o->out && !(f = fopen(o->out, "w"))) {
        st_run_list_free(l);
        return cli_fail("runs export", st__fail(ST_ERR_IO, "%s: cannot create", o->out));
    }
    int rc = 0;
    if (!strcmp(fmt, "json")) {
        char *j;
        s = st_run_list_to_json(l, 1, &j);
        if (s) rc = cli_fail("runs export", s);
        else fprintf(f, "%s\n", j), st_free(j);
    } else {
        const char **pk, **mk, **tk;
        int np = key_union(l, 0, &pk), nm = key_union(l, 1, &mk), nt = key_union(l, 2, &tk);
        static const char *const attrs[] = {"id", "experiment", "name", "status", "start_time", "end_time",
                                            "git_commit", "host", "seed", "parent_id", "command"};
        char buf[600];
        for (size_t a = 0; a < sizeof attrs / sizeof attrs[0]; a++) csv_field(f, attrs[a], a == 0);
        for (int k = 0; k < np; k++) snprintf(buf, sizeof buf, "params.%s", pk[k]), csv_field(f, buf, false);
        for (int k = 0; k < nm; k++) snprintf(buf, sizeof buf, "metrics.%s", mk[k]), csv_field(f, buf, false);
        for (int k = 0; k < nt; k++) snprintf(buf, sizeof buf, "tags.%s", tk[k]), csv_field(f, buf, false);
        fputs("\r\n", f);
        for (int i = 0; i < l->n; i++) {
            const st_run_record *r = l->runs[i];
            char st[40], et[40], seed[32];
            snprintf(st, sizeof st, "%.6f", r->start_time);
            snprintf(et, sizeof et, "%.6f", r->end_time);
            snprintf(seed, sizeof seed, "%lld", (long long)r->seed);
            csv_field(f, r->id, true);
            csv_field(f, r->experiment, false);
            csv_field(f, r->name, false);
            csv_field(f, st_run_status_name(r->status), false);
            csv_field(f, st, false);
            csv_field(f, isfinite(r->end_time) ? et : NULL, false);
            csv_field(f, r->git_commit, false);
            csv_field(f, r->host, false);
            csv_field(f, r->seed >= 0 ? seed : NULL, false);
            csv_field(f, r->parent_id, false);
            csv_field(f, r->command, false);
            for (int k = 0; k < np; k++) csv_field(f, kv_of(r->params, r->n_params, pk[k]), false);
            for (int k = 0; k < nm; k++) {
                const st_track_metric_summary *m = metric_of(r, mk[k]);
                /* The shortest text that reads back as the same double. */
                for (int prec = 15; m && isfinite(m->last) && prec <= 17; prec++) {
                    snprintf(buf, sizeof buf, "%.*g", prec, m->last);
                    if (strtod(buf, NULL) == m->last) break;
                }
                csv_field(f, m && isfinite(m->last) ? buf : NULL, false);
            }
            for (int k = 0; k < nt; k++) csv_field(f, kv_of(r->tags, r->n_tags, tk[k]), false);
            fputs("\r\n", f);
        }
        free(pk);
        free(mk);
        free(tk);
    }
    if (f != stdout && fclose(f) != 0) rc = cli_fail("runs export", st__fail(ST_ERR_IO, "%s: write failed", o->out));
    st_run_list_free(l);
    return rc;
}

static int act_delete(const opts *o, st_track *t) {
    if (o->n_pos != 1) return cli_usage_error("runs", "delete takes one run ID");
    st_status s = st_track_delete_run(t, o->pos[0]);
    if (s) return cli_fail("runs delete", s);
    printf("deleted %s\n", o->pos[0]);
    return 0;
}

static int act_import(const opts *o, st_track *t, int argc, char **argv) {
    if (o->n_pos != 1) return cli_usage_error("runs", "import takes one metrics.jsonl file");
    st_run_status end = ST_RUN_FINISHED;
    if (o->status) {
        if (!strcmp(o->status, "finished")) end = ST_RUN_FINISHED;
        else if (!strcmp(o->status, "failed")) end = ST_RUN_FAILED;
        else if (!strcmp(o->status, "killed")) end = ST_RUN_KILLED;
        else return cli_usage_error("runs", "--status wants finished, failed or killed, not '%s'", o->status);
    }
    char cmd[2048] = "strata";
    for (int i = 0; i < argc; i++)
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", argv[i]);
    st_run_start rs = st_run_start_default();
    rs.experiment = o->experiment;
    rs.name = o->name;
    rs.command = cmd;
    st_track_run *r;
    st_status s = st_track_run_start(t, &rs, &r);
    if (s) return cli_fail("runs import", s);
    for (int i = 0; i < o->n_param && !s; i++) {
        char k[300];
        const char *eq = strchr(o->kv_param[i], '=');
        snprintf(k, sizeof k, "%.*s", (int)(eq - o->kv_param[i]), o->kv_param[i]);
        s = st_track_log_param(r, k, eq + 1);
    }
    for (int i = 0; i < o->n_tag && !s; i++) {
        char k[300];
        const char *eq = strchr(o->kv_tag[i], '=');
        snprintf(k, sizeof k, "%.*s", (int)(eq - o->kv_tag[i]), o->kv_tag[i]);
        s = st_track_set_tag(r, k, eq + 1);
    }
    int64_t n = 0;
    if (!s) s = st_track_import_metrics_jsonl(r, o->pos[0], &n);
    for (int i = 0; i < o->n_art && !s; i++) s = st_track_log_artifact(r, o->artifacts[i], NULL, NULL);
    if (!s) s = st_track_run_end(r, end);
    char id[33];
    snprintf(id, sizeof id, "%s", st_track_run_id(r));
    st_track_run_free(r); /* not ended on failure: marked failed */
    if (s) return cli_fail("runs import", s);
    if (o->json) printf("{\"id\": \"%s\", \"points\": %lld}\n", id, (long long)n);
    else printf("%s\n", id);
    fprintf(stderr, "strata runs import: %lld metric points from %s into run %s\n", (long long)n, o->pos[0], id);
    return 0;
}

int cmd_runs(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    static const char *const k_actions[] = {"list", "show", "compare", "export", "delete", "import"};
    int act = -1;
    for (int i = 0; i < 6; i++)
        if (!strcmp(argv[1], k_actions[i])) act = i;
    if (act < 0) return cli_usage_error("runs", "unknown action '%s' (list, show, compare, export, delete, import)", argv[1]);
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    if (act == 0 || act == 3) {
        if (o.n_pos) return cli_usage_error("runs", "%s takes no positional arguments", argv[1]);
        if (o.filter) {
            st_status s = st_track_filter_check(o.filter);
            if (s) return cli_fail("runs", s);
        }
    }
    st_track *t;
    st_status s = open_store(&o, &t);
    if (s) return cli_fail("runs", s);
    switch (act) {
    case 0: rc = act_list(&o, t); break;
    case 1: rc = act_show(&o, t); break;
    case 2: rc = act_compare(&o, t); break;
    case 3: rc = act_export(&o, t); break;
    case 4: rc = act_delete(&o, t); break;
    default: rc = act_import(&o, t, argc, argv); break;
    }
    st_track_close(t);
    return rc;
}
