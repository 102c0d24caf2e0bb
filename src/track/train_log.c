/*
 * train_log.c — the adapter `strata train` uses to log every run into the
 * tracking store (strata/track.h, "the training adapter"): one object that
 * owns the store and the run, turns the configuration JSON into
 * parameters, and downgrades every tracking failure to a warning so that
 * tracking can never stop a training run. Single-threaded, like train.
 */
#include "track_impl.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct st_train_log {
    st_track *t;
    st_track_run *r;
};

static void warn(const char *what) {
    st_log_msg(ST_LOG_WARN, "tracking: %s: %s (training goes on)", what, st_last_error());
}

void st_train_log_begin(const char *uri, const char *experiment, int argc, char **argv, const char *config_json,
                        int64_t seed, st_train_log **out) {
    *out = NULL;
    st_track_catch_signals();
    const char *off = getenv("STRATA_TRACKING");
    if (off && (!strcmp(off, "off") || !strcmp(off, "0"))) return;
    st_train_log *l = st_calloc(1, sizeof *l);
    if (!l) return;
    char cmd[4096];
    size_t k = (size_t)snprintf(cmd, sizeof cmd, "strata");
    for (int i = 0; i < argc && k < sizeof cmd; i++)
        k += (size_t)snprintf(cmd + k, sizeof cmd - k, " %s", argv[i]);
    st_track_params p = st_track_default_params();
    p.uri = uri;
    st_run_start rs = st_run_start_default();
    rs.experiment = experiment;
    rs.command = cmd;
    rs.seed = seed;
    if (st_track_open(&p, &l->t) != ST_OK || st_track_run_start(l->t, &rs, &l->r) != ST_OK) {
        warn("cannot start a run");
        st_track_close(l->t);
        st_free(l);
        return;
    }
    json_t *cfg = config_json ? json_loads(config_json, 0, NULL) : NULL;
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v) {
        char buf[64];
        const char *val = NULL;
        if (json_is_string(v)) val = json_string_value(v);
        else if (json_is_integer(v)) snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v)), val = buf;
        else if (json_is_real(v)) { /* the shortest text that reads back as the same double */
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(buf, sizeof buf, "%.*g", prec, json_real_value(v));
                if (strtod(buf, NULL) == json_real_value(v)) break;
            }
            val = buf;
        }
        else if (json_is_boolean(v)) val = json_is_true(v) ? "true" : "false";
        if (val && st_track_log_param(l->r, key, val) != ST_OK) warn("cannot log a parameter");
    }
    json_decref(cfg);
    fprintf(stderr, "strata: tracking run %s in %s\n", st_track_run_id(l->r), st_track_uri(l->t));
    *out = l;
}

void st_train_log_eval(st_train_log *l, int64_t step, double train_loss, double val_loss, double lr,
                       double tokens_per_s, double elapsed_s) {
    if (!l) return;
    const char *keys[5] = {"train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s"};
    double vals[5] = {train_loss, val_loss, lr, tokens_per_s, elapsed_s};
    for (int i = 0; i < 5; i++)
        if (isfinite(vals[i]) && st_track_log_metric(l->r, keys[i], vals[i], step) != ST_OK) warn("cannot log");
    if (st_track_flush(l->r) != ST_OK) warn("cannot flush metrics");
}

void st_train_log_step(st_train_log *l, int64_t step, double loss) {
    if (l && st_track_log_metric(l->r, "loss", loss, step) != ST_OK) warn("cannot log the step loss");
}

int st_train_log_signal(const st_train_log *l) {
    (void)l;
    return st_track_signal_caught();
}

void st_train_log_end(st_train_log *l, st_run_status status, const char *model_file) {
    if (!l) return;
    if (model_file && status == ST_RUN_FINISHED && st_track_log_artifact(l->r, model_file, NULL, NULL) != ST_OK)
        warn("cannot store the model as an artifact");
    if (st_track_run_end(l->r, status) != ST_OK) warn("cannot end the run");
    st_track_run_free(l->r);
    st_track_close(l->t);
    st_free(l);
}
