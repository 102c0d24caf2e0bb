/*
 * log.c — leveled messages to stderr, and the monotonic clock.
 * The level is read once from STRATA_LOG; st_log_set_level overrides it.
 */
#include "strata/base.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic int g_level = -1;

static const char *k_level_name[] = {"error", "warn", "info", "debug"};

st_log_level st_log_get_level(void) {
    int lv = atomic_load(&g_level);
    if (lv < 0) {
        lv = ST_LOG_WARN;
        const char *e = getenv("STRATA_LOG");
        if (e) {
            for (int i = 0; i < 4; i++)
                if (strcmp(e, k_level_name[i]) == 0) lv = i;
        }
        atomic_store(&g_level, lv);
    }
    return (st_log_level)lv;
}

void st_log_set_level(st_log_level level) { atomic_store(&g_level, (int)level); }

void st_log_msg(st_log_level level, const char *fmt, ...) {
    if ((int)level > (int)st_log_get_level()) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "strata: %s: %s\n", k_level_name[level], buf);
}

double st_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
