/*
 * progress.c — the progress bar of long commands (cli/progress.h).
 * Writes to stderr only; state is the caller's struct; single-threaded.
 */
#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#include "strata/base.h"

void cli_progress_init(cli_progress *p, int64_t first, int64_t total, int64_t plain_every,
                       bool enabled) {
    p->tty = isatty(fileno(stderr)) != 0;
    p->enabled = enabled;
    p->drawn = false;
    p->first = first;
    p->total = total;
    p->plain_every = plain_every > 0 ? plain_every : 1;
    p->t0 = st_time_s();
    p->last_draw = 0.0;
}

static void fmt_time(double s, char *buf, size_t n) {
    if (s < 0 || s > 1e7) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

void cli_progress_update(cli_progress *p, int64_t step, double loss, double tokens_per_s) {
    if (!p->enabled) return;
    double now = st_time_s();
    double done = (double)(step - p->first), left = (double)(p->total - step);
    double eta = done > 0 ? (now - p->t0) / done * left : -1.0;
    char etabuf[32];
    fmt_time(eta, etabuf, sizeof etabuf);
    if (p->tty) {
        if (step < p->total && now - p->last_draw < 0.1) return;
        p->last_draw = now;
        int width = 24, fill = p->total > 0 ? (int)((double)width * (double)step / (double)p->total) : 0;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[width] = '\0';
        fprintf(stderr, "\r\033[Kstep %lld/%lld [%s] loss %.4f | %.0f tok/s | ETA %s",
                (long long)step, (long long)p->total, bar, loss, tokens_per_s, etabuf);
        fflush(stderr);
        p->drawn = true;
    } else if (step % p->plain_every == 0 || step == p->total) {
        fprintf(stderr, "step %lld/%lld: loss %.4f, %.0f tok/s, ETA %s\n", (long long)step,
                (long long)p->total, loss, tokens_per_s, etabuf);
    }
}

void cli_progress_clear(cli_progress *p) {
    if (p->enabled && p->tty && p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        p->drawn = false;
    }
}
