/*
 * json.c — runs as JSON (jansson) for `strata runs --json`, `runs export`
 * and the dashboard's /api. One function builds a run's object; the text is
 * copied into st_malloc'd memory so callers free it like every other
 * library string. No state; thread-safe.
 */
#include "track_impl.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }
static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

json_t *st__run_json(const st_run_record *r) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "experiment", str_or_null(r->experiment));
    json_object_set_new(o, "name", str_or_null(r->name));
    json_object_set_new(o, "status", json_string(st_run_status_name(r->status)));
    json_object_set_new(o, "start_time", num_or_null(r->start_time));
    json_object_set_new(o, "end_time", num_or_null(r->end_time));
    json_object_set_new(o, "heartbeat", num_or_null(r->heartbeat));
    json_object_set_new(o, "command", str_or_null(r->command));
    json_object_set_new(o, "git_commit", str_or_null(r->git_commit));
    json_object_set_new(o, "host", str_or_null(r->host));
    json_object_set_new(o, "pid", r->pid >= 0 ? json_integer(r->pid) : json_null());
    json_object_set_new(o, "seed", r->seed >= 0 ? json_integer(r->seed) : json_null());
    json_object_set_new(o, "parent_id", str_or_null(r->parent_id));
    json_t *p = json_object(), *t = json_object(), *m = json_object(), *a = json_array();
    for (int i = 0; i < r->n_params; i++) json_object_set_new(p, r->params[i].key, json_string(r->params[i].value));
    for (int i = 0; i < r->n_tags; i++) json_object_set_new(t, r->tags[i].key, json_string(r->tags[i].value));
    for (int i = 0; i < r->n_metrics; i++) {
        const st_track_metric_summary *s = &r->metrics[i];
        json_t *mo = json_object();
        json_object_set_new(mo, "last", num_or_null(s->last));
        json_object_set_new(mo, "last_step", json_integer(s->last_step));
        json_object_set_new(mo, "min", num_or_null(s->min));
        json_object_set_new(mo, "max", num_or_null(s->max));
        json_object_set_new(mo, "n", json_integer(s->n_points));
        json_object_set_new(m, s->key, mo);
    }
    for (int i = 0; i < r->n_artifacts; i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:I}", "name", r->artifacts[i].name, "sha256",
                                           r->artifacts[i].sha256, "bytes", (json_int_t)r->artifacts[i].bytes));
    json_object_set_new(o, "params", p);
    json_object_set_new(o, "tags", t);
    json_object_set_new(o, "metrics", m);
    json_object_set_new(o, "artifacts", a);
    return o;
}

static st_status dump(json_t *j, int flags, char **out) {
    *out = NULL;
    if (!j) return st__fail(ST_ERR_NOMEM, "tracking: no memory for JSON");
    char *txt = json_dumps(j, (flags ? JSON_INDENT(2) : JSON_COMPACT) | JSON_ENSURE_ASCII);
    json_decref(j);
    if (!txt) return st__fail(ST_ERR_NOMEM, "tracking: no memory for JSON");
    *out = st_strdup(txt);
    free(txt);
    return *out ? ST_OK : st__fail(ST_ERR_NOMEM, "tracking: no memory for JSON");
}

st_status st_run_record_to_json(const st_run_record *rec, int flags, char **json) {
    if (!rec || !json) return st__fail(ST_ERR_INVALID_ARG, "st_run_record_to_json: NULL argument");
    return dump(st__run_json(rec), flags, json);
}

st_status st_run_list_to_json(const st_run_list *l, int flags, char **json) {
    if (!l || !json) return st__fail(ST_ERR_INVALID_ARG, "st_run_list_to_json: NULL argument");
    json_t *a = json_array();
    for (int i = 0; a && i < l->n; i++) json_array_append_new(a, st__run_json(l->runs[i]));
    return dump(a, flags, json);
}
