/*
 * status.c — the status table and the thread-local message of the last
 * failure. One table gives every st_status its name and message (libuv's
 * error map); messages are formatted once, at the failure, into a
 * thread-local buffer so that st_last_error() needs no allocation.
 */
#include "strata/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    const char *message;
} k_status[ST_STATUS_COUNT_] = {
    [ST_OK] = {"ST_OK", "success"},
    [ST_ERR_INVALID_ARG] = {"ST_ERR_INVALID_ARG", "invalid argument"},
    [ST_ERR_SHAPE] = {"ST_ERR_SHAPE", "shape mismatch"},
    [ST_ERR_DTYPE] = {"ST_ERR_DTYPE", "unsupported or mismatched dtype"},
    [ST_ERR_AXIS] = {"ST_ERR_AXIS", "axis out of range"},
    [ST_ERR_BOUNDS] = {"ST_ERR_BOUNDS", "index or view out of bounds"},
    [ST_ERR_NOMEM] = {"ST_ERR_NOMEM", "out of memory"},
    [ST_ERR_IO] = {"ST_ERR_IO", "input/output error"},
    [ST_ERR_FORMAT] = {"ST_ERR_FORMAT", "malformed input data"},
    [ST_ERR_UNSUPPORTED] = {"ST_ERR_UNSUPPORTED", "not supported in this build"},
    [ST_ERR_STATE] = {"ST_ERR_STATE", "called in the wrong state"},
    [ST_ERR_INTERNAL] = {"ST_ERR_INTERNAL", "internal error"},
};

const char *st_status_name(st_status s) {
    if ((unsigned)s >= ST_STATUS_COUNT_) return "ST_UNKNOWN";
    return k_status[s].name;
}

const char *st_status_message(st_status s) {
    if ((unsigned)s >= ST_STATUS_COUNT_) return "unknown status";
    return k_status[s].message;
}

static _Thread_local char t_error[1024];

const char *st_last_error(void) { return t_error; }

void st_clear_error(void) { t_error[0] = '\0'; }

st_status st__failv(st_status s, const char *fmt, va_list ap) {
    vsnprintf(t_error, sizeof t_error, fmt, ap);
    st_log_msg(ST_LOG_DEBUG, "%s: %s", st_status_name(s), t_error);
    return s;
}

st_status st__fail(st_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    st__failv(s, fmt, ap);
    va_end(ap);
    return s;
}

_Noreturn void st__assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "strata: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
