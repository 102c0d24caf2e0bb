/*
 * ui.c — the tracking dashboard: HTML and JSON written by C, served by
 * libmicrohttpd (`strata ui`). No JavaScript framework and no Node at run
 * time: pages are plain HTML with forms and links, charts are inline SVG
 * (ui_svg.c).
 *
 *   /                      run table: filter box (the filter language of
 *                          strata/track.h), sortable columns (?sort=KEY),
 *                          checkboxes to compare
 *   /run/ID                a run: attributes, params, tags, artifacts and one
 *                          chart per metric
 *   /compare?ids=A,B       the runs' curves overlaid, one chart per metric,
 *                          and their params side by side (also ?id=A&id=B)
 *   /api/runs              JSON array (same query parameters as /)
 *   /api/runs/ID           JSON object of a run
 *   /api/runs/ID/metrics   {"key": {"steps": [...], "values": [...],
 *                          "wall_time": [...]}}, one key with ?key=K
 *
 * Everything read from the store is HTML-escaped (st__sb_html) and every
 * value put in a link is percent-encoded. Threads: the server runs one
 * internal polling thread (MHD_USE_INTERNAL_POLLING_THREAD), so requests
 * are served one at a time and the store handle is only ever used from
 * that thread while the server runs.
 */
#include "ui_impl.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_QUERY 64
#define MAX_COMPARE 10
#define DEFAULT_LIMIT 500

typedef struct query {
    int n;
    char *k[MAX_QUERY], *v[MAX_QUERY];
} query;

static void query_free(query *q) {
    for (int i = 0; i < q->n; i++) st_free(q->k[i]), st_free(q->v[i]);
    q->n = 0;
}

static st_status query_add(query *q, const char *k, size_t kn, const char *v, size_t vn) {
    if (q->n >= MAX_QUERY) return ST_OK; /* extra parameters are ignored */
    char *a = st_malloc(kn + 1), *b = st_malloc(vn + 1);
    if (!a || !b) {
        st_free(a);
        st_free(b);
        return st__fail(ST_ERR_NOMEM, "dashboard: no memory");
    }
    memcpy(a, k, kn), a[kn] = '\0';
    memcpy(b, v, vn), b[vn] = '\0';
    q->k[q->n] = a;
    q->v[q->n++] = b;
    return ST_OK;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes %XX and '+' in place. */
static void url_decode(char *s) {
    char *o = s;
    for (; *s; s++) {
        if (*s == '+') *o++ = ' ';
        else if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
            *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            s += 2;
        } else *o++ = *s;
    }
    *o = '\0';
}

static st_status query_parse(query *q, const char *raw) {
    while (raw && *raw) {
        const char *amp = strchr(raw, '&');
        size_t len = amp ? (size_t)(amp - raw) : strlen(raw);
        const char *eq = memchr(raw, '=', len);
        size_t kn = eq ? (size_t)(eq - raw) : len;
        ST_TRY(query_add(q, raw, kn, eq ? eq + 1 : "", eq ? len - kn - 1 : 0));
        url_decode(q->k[q->n - 1]);
        url_decode(q->v[q->n - 1]);
        raw = amp ? amp + 1 : NULL;
    }
    return ST_OK;
}

static const char *qget(const query *q, const char *k) {
    for (int i = 0; i < q->n; i++)
        if (!strcmp(q->k[i], k)) return q->v[i];
    return NULL;
}

/* ---- page parts ------------------------------------------------------------------ */

static st_status page_head(st_strbuf *b, const char *title) {
    ST_TRY(st_strbuf_puts(b, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"));
    ST_TRY(st__sb_html(b, title));
    return st_strbuf_puts(
        b, " — strata runs</title><style>"
           "body{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#222}"
           "table{border-collapse:collapse;margin:8px 0}th,td{border-bottom:1px solid #ddd;padding:3px 8px;"
           "text-align:left;white-space:nowrap}th a{color:#222}td.num{text-align:right;font-variant-numeric:"
           "tabular-nums}.finished{color:#2a7}.failed{color:#c33}.killed{color:#a60}.running{color:#36c}"
           ".diff{background:#fff3c4}.err{color:#b00;font-weight:bold}input[name=filter]{width:60%}"
           "svg.chart{border:1px solid #ccc;margin:6px 6px 0 0}code{background:#f4f4f4}"
           "</style></head><body><p><a href=\"/\">all runs</a></p>");
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

static st_status num_cell(st_strbuf *b, double v) {
    if (!isfinite(v)) return st_strbuf_puts(b, "<td class=\"num\">-</td>");
    return st_strbuf_printf(b, "<td class=\"num\">%.6g</td>", v);
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

/* Sorted union of metric (which=1) or param (which=0) keys, at most max. */
static int key_union(st_run_record *const *runs, int n_runs, int which, const char **out, int max) {
    int n = 0;
    for (int i = 0; i < n_runs; i++) {
        const st_run_record *r = runs[i];
        int m = which ? r->n_metrics : r->n_params;
        for (int j = 0; j < m; j++) {
            const char *k = which ? r->metrics[j].key : r->params[j].key;
            bool seen = false;
            for (int q = 0; q < n && !seen; q++) seen = !strcmp(out[q], k);
            if (!seen && n < max) out[n++] = k;
        }
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(out[j - 1], out[j]) > 0; j--) {
            const char *x = out[j];
            out[j] = out[j - 1];
            out[j - 1] = x;
        }
    return n;
}

/* A column header linking to the table sorted by key (toggling order). */
static st_status sort_header(st_strbuf *b, const query *q, const char *key, const char *label) {
    const char *cur = qget(q, "sort");
    char next[300];
    bool asc_now = cur && !strcmp(cur, key);
    snprintf(next, sizeof next, "%s%s", asc_now ? "-" : "", key);
    bool desc_now = cur && cur[0] == '-' && !strcmp(cur + 1, key);
    ST_TRY(st_strbuf_puts(b, "<th><a href=\"/?sort="));
    ST_TRY(st__sb_url(b, next));
    const char *f = qget(q, "filter"), *e = qget(q, "experiment");
    if (f && *f) {
        ST_TRY(st_strbuf_puts(b, "&amp;filter="));
        ST_TRY(st__sb_url(b, f));
    }
    if (e && *e) {
        ST_TRY(st_strbuf_puts(b, "&amp;experiment="));
        ST_TRY(st__sb_url(b, e));
    }
    ST_TRY(st_strbuf_puts(b, "\">"));
    ST_TRY(st__sb_html(b, label));
    return st_strbuf_puts(b, asc_now ? " ▲</a></th>" : desc_now ? " ▼</a></th>" : "</a></th>");
}

static st_status page_runs(st_track *t, const query *q, st_strbuf *b, int *http) {
    const char *filter = qget(q, "filter"), *sort = qget(q, "sort"), *exp = qget(q, "experiment");
    ST_TRY(page_head(b, "runs"));
    ST_TRY(st_strbuf_puts(b, "<h1>Runs</h1><form method=\"get\" action=\"/\"><input name=\"filter\" value=\""));
    ST_TRY(st__sb_html(b, filter));
    ST_TRY(st_strbuf_puts(b, "\" placeholder=\"metrics.val_loss &lt; 1.6 and params.n_layer = 4 and status = "
                          "'finished'\"> <input type=\"hidden\" name=\"sort\" value=\""));
    ST_TRY(st__sb_html(b, sort));
    ST_TRY(st_strbuf_puts(b, "\"> <button>filter</button></form>"));
    st_run_query rq = {exp && *exp ? exp : NULL, filter, sort && *sort ? sort : NULL, DEFAULT_LIMIT};
    st_run_list *l = NULL;
    st_status s = st_track_list_runs(t, &rq, &l);
    if (s == ST_ERR_INVALID_ARG) { /* a bad filter or sort key: say why */
        *http = 400;
        ST_TRY(st_strbuf_puts(b, "<p class=\"err\">"));
        ST_TRY(st__sb_html(b, st_last_error()));
        return st_strbuf_puts(b, "</p></body></html>");
    }
    ST_TRY(s);
    const char *mk[6], *pk[6];
    int nm = key_union(l->runs, l->n, 1, mk, 6), np = key_union(l->runs, l->n, 0, pk, 6);
    s = st_strbuf_printf(b, "<p>%d run%s in <code>", l->n, l->n == 1 ? "" : "s");
    if (!s) s = st__sb_html(b, st_track_uri(t));
    if (!s) s = st_strbuf_puts(b, "</code></p><form method=\"get\" action=\"/compare\"><table id=\"runs\"><tr><th></th>");
    if (!s) s = sort_header(b, q, "id", "id");
    if (!s) s = sort_header(b, q, "name", "name");
    if (!s) s = sort_header(b, q, "experiment", "experiment");
    if (!s) s = sort_header(b, q, "status", "status");
    if (!s) s = sort_header(b, q, "start_time", "started");
    char key[300];
    for (int i = 0; i < np && !s; i++) {
        snprintf(key, sizeof key, "params.%s", pk[i]);
        s = sort_header(b, q, key, key);
    }
    for (int i = 0; i < nm && !s; i++) {
        snprintf(key, sizeof key, "metrics.%s", mk[i]);
        s = sort_header(b, q, key, key);
    }
    if (!s) s = st_strbuf_puts(b, "</tr>");
    for (int i = 0; i < l->n && !s; i++) {
        const st_run_record *r = l->runs[i];
        char ts[40];
        fmt_time(r->start_time, ts, sizeof ts);
        st_strbuf_printf(b, "<tr><td><input type=\"checkbox\" name=\"id\" value=\"%s\"></td>"
                         "<td><a href=\"/run/%s\"><code>%.8s</code></a></td><td>", r->id, r->id, r->id);
        st__sb_html(b, r->name);
        st_strbuf_puts(b, "</td><td>");
        st__sb_html(b, r->experiment);
        st_strbuf_printf(b, "</td><td class=\"%s\">%s</td><td>%s</td>", st_run_status_name(r->status),
                      st_run_status_name(r->status), ts);
        for (int k = 0; k < np; k++) {
            st_strbuf_puts(b, "<td>");
            st__sb_html(b, kv_of(r->params, r->n_params, pk[k]));
            st_strbuf_puts(b, "</td>");
        }
        for (int k = 0; k < nm; k++) {
            const st_track_metric_summary *m = metric_of(r, mk[k]);
            num_cell(b, m ? m->last : NAN);
        }
        s = st_strbuf_puts(b, "</tr>");
    }
    if (!s) s = st_strbuf_puts(b, "</table><button>compare selected</button></form></body></html>");
    st_run_list_free(l);
    return s;
}

static st_status charts_for(st_track *t, st_run_record *const *runs, int n_runs, st_strbuf *b) {
    const char *all[64], *mk[64];
    int na = key_union(runs, n_runs, 1, all, 64), nm = 0;
    /* Losses first (what a reader looks for), then the rest by name. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < na; i++)
            if ((strstr(all[i], "loss") != NULL) == (pass == 0)) mk[nm++] = all[i];
    st_status s = ST_OK;
    for (int k = 0; k < nm && !s; k++) {
        st_metric_series *h[MAX_COMPARE] = {0};
        st__series ser[MAX_COMPARE];
        int ns = 0;
        for (int i = 0; i < n_runs && !s; i++) {
            if (!metric_of(runs[i], mk[k])) continue;
            s = st_track_metric_history(t, runs[i]->id, mk[k], &h[ns]);
            if (s) break;
            ser[ns] = (st__series){runs[i]->name ? runs[i]->name : runs[i]->id, h[ns]->n, h[ns]->step, h[ns]->value};
            ns++;
        }
        if (!s) s = st__svg_chart(b, mk[k], ser, ns);
        for (int i = 0; i < ns; i++) st_metric_series_free(h[i]);
    }
    if (!s && nm == 0) s = st_strbuf_puts(b, "<p>(no metrics logged)</p>");
    return s;
}

static st_status page_run(st_track *t, const char *id, st_strbuf *b, int *http) {
    st_run_record *r = NULL;
    st_status s = st_track_get_run(t, id, &r);
    if (s == ST_ERR_INVALID_ARG) {
        *http = 404;
        ST_TRY(page_head(b, "no such run"));
        ST_TRY(st_strbuf_puts(b, "<p class=\"err\">"));
        ST_TRY(st__sb_html(b, st_last_error()));
        return st_strbuf_puts(b, "</p></body></html>");
    }
    ST_TRY(s);
    char ts[40], te[40];
    fmt_time(r->start_time, ts, sizeof ts);
    fmt_time(r->end_time, te, sizeof te);
    s = page_head(b, r->name);
    st_strbuf_puts(b, "<h1>");
    st__sb_html(b, r->name);
    st_strbuf_printf(b, " <small class=\"%s\">%s</small></h1><table>", st_run_status_name(r->status),
                  st_run_status_name(r->status));
    static const char *const labels[] = {"id", "experiment", "command", "git commit", "host", "parent"};
    const char *vals[] = {r->id, r->experiment, r->command, r->git_commit, r->host, r->parent_id};
    for (int i = 0; i < 6; i++) {
        if (!vals[i]) continue;
        st_strbuf_printf(b, "<tr><th>%s</th><td><code>", labels[i]);
        st__sb_html(b, vals[i]);
        st_strbuf_puts(b, "</code></td></tr>");
    }
    st_strbuf_printf(b, "<tr><th>started</th><td>%s</td></tr><tr><th>ended</th><td>%s</td></tr>", ts, te);
    if (r->seed >= 0) st_strbuf_printf(b, "<tr><th>seed</th><td>%lld</td></tr>", (long long)r->seed);
    st_strbuf_puts(b, "</table><h2>Metrics</h2>");
    if (!s) s = charts_for(t, &r, 1, b);
    st_strbuf_puts(b, "<table><tr><th>metric</th><th>last</th><th>step</th><th>min</th><th>max</th><th>points</th></tr>");
    for (int i = 0; i < r->n_metrics; i++) {
        const st_track_metric_summary *m = &r->metrics[i];
        st_strbuf_puts(b, "<tr><td>");
        st__sb_html(b, m->key);
        st_strbuf_puts(b, "</td>");
        num_cell(b, m->last);
        st_strbuf_printf(b, "<td class=\"num\">%lld</td>", (long long)m->last_step);
        num_cell(b, m->min);
        num_cell(b, m->max);
        st_strbuf_printf(b, "<td class=\"num\">%lld</td></tr>", (long long)m->n_points);
    }
    st_strbuf_puts(b, "</table><h2>Parameters</h2><table>");
    for (int i = 0; i < r->n_params; i++) {
        st_strbuf_puts(b, "<tr><th>");
        st__sb_html(b, r->params[i].key);
        st_strbuf_puts(b, "</th><td>");
        st__sb_html(b, r->params[i].value);
        st_strbuf_puts(b, "</td></tr>");
    }
    st_strbuf_puts(b, "</table><h2>Tags</h2><table>");
    for (int i = 0; i < r->n_tags; i++) {
        st_strbuf_puts(b, "<tr><th>");
        st__sb_html(b, r->tags[i].key);
        st_strbuf_puts(b, "</th><td>");
        st__sb_html(b, r->tags[i].value);
        st_strbuf_puts(b, "</td></tr>");
    }
    st_strbuf_puts(b, "</table><h2>Artifacts</h2><table>");
    for (int i = 0; i < r->n_artifacts; i++) {
        st_strbuf_puts(b, "<tr><th>");
        st__sb_html(b, r->artifacts[i].name);
        st_strbuf_printf(b, "</th><td><code>sha256:%s</code></td><td class=\"num\">%lld bytes</td></tr>",
                      r->artifacts[i].sha256, (long long)r->artifacts[i].bytes);
    }
    if (!s) s = st_strbuf_puts(b, "</table></body></html>");
    st_run_record_free(r);
    return s;
}

static st_status page_compare(st_track *t, const query *q, st_strbuf *b, int *http) {
    char *ids[MAX_COMPARE];
    int n = 0;
    for (int i = 0; i < q->n; i++) {
        if (!strcmp(q->k[i], "id") && n < MAX_COMPARE) ids[n++] = q->v[i];
        if (!strcmp(q->k[i], "ids")) {
            char *save = NULL, *copy = q->v[i]; /* split in place: the query is ours */
            for (char *tok = strtok_r(copy, ",", &save); tok && n < MAX_COMPARE; tok = strtok_r(NULL, ",", &save))
                ids[n++] = tok;
        }
    }
    ST_TRY(page_head(b, "compare"));
    if (n < 1) {
        *http = 400;
        return st_strbuf_puts(b, "<p class=\"err\">compare: pick runs (?ids=A,B)</p></body></html>");
    }
    st_run_record *runs[MAX_COMPARE];
    int nr = 0;
    st_status s = ST_OK;
    for (int i = 0; i < n && !s; i++) {
        s = st_track_get_run(t, ids[i], &runs[nr]);
        if (!s) nr++;
    }
    if (s == ST_ERR_INVALID_ARG) {
        *http = 404;
        st_strbuf_puts(b, "<p class=\"err\">");
        st__sb_html(b, st_last_error());
        s = st_strbuf_puts(b, "</p></body></html>");
    } else if (!s) {
        st_strbuf_printf(b, "<h1>Comparing %d runs</h1><table><tr><th></th>", nr);
        for (int i = 0; i < nr; i++) {
            st_strbuf_printf(b, "<th><a href=\"/run/%s\">", runs[i]->id);
            st__sb_html(b, runs[i]->name);
            st_strbuf_puts(b, "</a></th>");
        }
        st_strbuf_puts(b, "</tr>");
        const char *pk[128];
        int np = key_union(runs, nr, 0, pk, 128);
        for (int k = 0; k < np; k++) {
            const char *v0 = kv_of(runs[0]->params, runs[0]->n_params, pk[k]);
            bool diff = false;
            for (int i = 1; i < nr; i++) {
                const char *v = kv_of(runs[i]->params, runs[i]->n_params, pk[k]);
                diff |= (!v0 != !v) || (v && v0 && strcmp(v, v0));
            }
            st_strbuf_printf(b, "<tr%s><th>params.", diff ? " class=\"diff\"" : "");
            st__sb_html(b, pk[k]);
            st_strbuf_puts(b, "</th>");
            for (int i = 0; i < nr; i++) {
                st_strbuf_puts(b, "<td>");
                st__sb_html(b, kv_of(runs[i]->params, runs[i]->n_params, pk[k]));
                st_strbuf_puts(b, "</td>");
            }
            st_strbuf_puts(b, "</tr>");
        }
        const char *mk[128];
        int nm = key_union(runs, nr, 1, mk, 128);
        for (int k = 0; k < nm; k++) {
            st_strbuf_puts(b, "<tr><th>metrics.");
            st__sb_html(b, mk[k]);
            st_strbuf_puts(b, "</th>");
            for (int i = 0; i < nr; i++) {
                const st_track_metric_summary *m = metric_of(runs[i], mk[k]);
                num_cell(b, m ? m->last : NAN);
            }
            st_strbuf_puts(b, "</tr>");
        }
        st_strbuf_puts(b, "</table>");
        s = charts_for(t, runs, nr, b);
        if (!s) s = st_strbuf_puts(b, "</body></html>");
    }
    for (int i = 0; i < nr; i++) st_run_record_free(runs[i]);
    return s;
}

/* ---- JSON API --------------------------------------------------------------------- */

static st_status take_json(char *j, st_strbuf *b) {
    st_status s = st_strbuf_puts(b, j);
    st_free(j);
    return s;
}

static json_t *series_json(const st_metric_series *h) {
    json_t *o = json_object(), *st = json_array(), *v = json_array(), *w = json_array();
    for (int64_t i = 0; i < h->n; i++) {
        json_array_append_new(st, json_integer(h->step[i]));
        json_array_append_new(v, isfinite(h->value[i]) ? json_real(h->value[i]) : json_null());
        json_array_append_new(w, json_real(h->wall_time[i]));
    }
    json_object_set_new(o, "steps", st);
    json_object_set_new(o, "values", v);
    json_object_set_new(o, "wall_time", w);
    return o;
}

static st_status api(st_track *t, const char *rest, const query *q, st_strbuf *b, int *http) {
    if (!*rest) { /* /api/runs */
        const char *lim = qget(q, "limit");
        st_run_query rq = {qget(q, "experiment"), qget(q, "filter"), qget(q, "sort"), lim ? atoll(lim) : 0};
        if (rq.experiment && !*rq.experiment) rq.experiment = NULL;
        if (rq.sort && !*rq.sort) rq.sort = NULL;
        st_run_list *l;
        st_status s = st_track_list_runs(t, &rq, &l);
        if (s == ST_ERR_INVALID_ARG) {
            *http = 400;
            json_t *e = json_pack("{s:s}", "error", st_last_error());
            char *j = json_dumps(e, JSON_ENSURE_ASCII);
            json_decref(e);
            s = st_strbuf_puts(b, j ? j : "{}");
            free(j);
            return s;
        }
        ST_TRY(s);
        char *j;
        s = st_run_list_to_json(l, 0, &j);
        st_run_list_free(l);
        ST_TRY(s);
        return take_json(j, b);
    }
    if (*rest != '/') {
        *http = 404;
        return st_strbuf_puts(b, "{\"error\": \"not found\"}");
    }
    rest++;
    char id[40];
    size_t idn = strcspn(rest, "/");
    snprintf(id, sizeof id, "%.*s", (int)(idn < 39 ? idn : 39), rest);
    const char *tail = rest + idn;
    st_run_record *r;
    st_status s = st_track_get_run(t, id, &r);
    if (s == ST_ERR_INVALID_ARG || (*tail && strcmp(tail, "/metrics"))) {
        if (!s) st_run_record_free(r);
        *http = 404;
        json_t *e = json_pack("{s:s}", "error", s ? st_last_error() : "not found");
        char *j = json_dumps(e, JSON_ENSURE_ASCII);
        json_decref(e);
        s = st_strbuf_puts(b, j ? j : "{}");
        free(j);
        return s;
    }
    ST_TRY(s);
    if (!*tail) {
        char *j;
        s = st_run_record_to_json(r, 0, &j);
        st_run_record_free(r);
        ST_TRY(s);
        return take_json(j, b);
    }
    const char *key = qget(q, "key");
    json_t *o = json_object();
    for (int i = 0; i < r->n_metrics && !s; i++) {
        if (key && strcmp(key, r->metrics[i].key)) continue;
        st_metric_series *h;
        s = st_track_metric_history(t, r->id, r->metrics[i].key, &h);
        if (!s) json_object_set_new(o, h->key, series_json(h)), st_metric_series_free(h);
    }
    st_run_record_free(r);
    char *j = s ? NULL : json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (!s && !j) s = st__fail(ST_ERR_NOMEM, "dashboard: no memory");
    if (!s) s = st_strbuf_puts(b, j);
    free(j);
    return s;
}

static st_status route(st_track *t, const char *path, query *q, int *http, st_strbuf *b, const char **ctype) {
    *http = 200;
    *ctype = "text/html; charset=utf-8";
    if (!strcmp(path, "/") || !strcmp(path, "/runs")) return page_runs(t, q, b, http);
    if (!strncmp(path, "/run/", 5)) return page_run(t, path + 5, b, http);
    if (!strcmp(path, "/compare")) return page_compare(t, q, b, http);
    if (!strncmp(path, "/api/runs", 9)) {
        *ctype = "application/json";
        return api(t, path + 9, q, b, http);
    }
    *http = 404;
    *ctype = "text/plain; charset=utf-8";
    return st_strbuf_puts(b, "not found\n");
}

st_status st_track_ui_render(st_track *t, const char *path, const char *raw_query, int *http, char **body,
                             size_t *n_body, const char **ctype) {
    if (!t || !path || !http || !body || !n_body || !ctype)
        return st__fail(ST_ERR_INVALID_ARG, "st_track_ui_render: NULL argument");
    *body = NULL;
    query q = {0};
    st_strbuf b = {0};
    st_status s = query_parse(&q, raw_query);
    if (!s) s = route(t, path, &q, http, &b, ctype);
    if (!s && b.failed) s = st__fail(ST_ERR_NOMEM, "dashboard: no memory for the page");
    query_free(&q);
    if (s) {
        st_free(b.p);
        return s;
    }
    if (!b.p) st_strbuf_puts(&b, "");
    *body = b.p;
    *n_body = b.len;
    return b.p ? ST_OK : st__fail(ST_ERR_NOMEM, "dashboard: no memory");
}

/* ---- the server --------------------------------------------------------------------- */

struct st_track_ui {
    struct MHD_Daemon *d;
    st_track *t;
    int port;
};

st_track_ui_params st_track_ui_default_params(void) {
    st_track_ui_params p = {"127.0.0.1", 0};
    return p;
}

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    query *q = cls;
    if (key) query_add(q, key, strlen(key), value ? value : "", value ? strlen(value) : 0);
    return MHD_YES;
}

static enum MHD_Result reply(struct MHD_Connection *c, int http, const char *ctype, const char *body, size_t n) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)http, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version, (void)upload, (void)con_cls;
    st_track_ui *ui = cls;
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        static const char msg[] = "only GET\n";
        return reply(c, 405, "text/plain", msg, sizeof msg - 1);
    }
    if (*upload_size) { /* GET with a body: ignore it */
        *upload_size = 0;
        return MHD_YES;
    }
    query q = {0};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect, &q);
    int http = 200;
    const char *ctype = "text/html";
    st_strbuf b = {0};
    st_status s = route(ui->t, url, &q, &http, &b, &ctype);
    query_free(&q);
    enum MHD_Result ok;
    if (s || b.failed) {
        char msg[700];
        int n = snprintf(msg, sizeof msg, "dashboard error: %s\n", st_last_error());
        ok = reply(c, 500, "text/plain; charset=utf-8", msg, (size_t)(n < 0 ? 0 : n < (int)sizeof msg ? n : (int)sizeof msg - 1));
    } else {
        ok = reply(c, http, ctype, b.p ? b.p : "", b.len);
    }
    st_free(b.p);
    return ok;
}

st_status st_track_ui_start(st_track *t, const st_track_ui_params *pin, st_track_ui **out) {
    if (!t || !out) return st__fail(ST_ERR_INVALID_ARG, "st_track_ui_start: NULL argument");
    *out = NULL;
    st_track_ui_params p = pin ? *pin : st_track_ui_default_params();
    const char *host = p.host && *p.host ? p.host : "127.0.0.1";
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    if (p.port < 0 || p.port > 65535) return st__fail(ST_ERR_INVALID_ARG, "dashboard: port %d out of range", p.port);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)p.port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return st__fail(ST_ERR_INVALID_ARG, "dashboard: '%s' is not an IPv4 address", host);
    st_track_ui *ui = st_calloc(1, sizeof *ui);
    if (!ui) return st__fail(ST_ERR_NOMEM, "dashboard: no memory");
    ui->t = t;
    ui->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)p.port, NULL, NULL,
                             handle, ui, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (!ui->d) {
        st_free(ui);
        return st__fail(ST_ERR_IO, "dashboard: cannot listen on %s:%d (in use?)", host, p.port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(ui->d, MHD_DAEMON_INFO_BIND_PORT);
    ui->port = info ? info->port : p.port;
    *out = ui;
    return ST_OK;
}

int st_track_ui_port(const st_track_ui *ui) { return ui ? ui->port : 0; }

void st_track_ui_stop(st_track_ui *ui) {
    if (!ui) return;
    MHD_stop_daemon(ui->d);
    st_free(ui);
}
