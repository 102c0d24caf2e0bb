/*
 * progress.h — progress display for long commands: on a terminal a
 * one-line bar redrawn in place (step, loss, rate, ETA); when stderr is
 * not a terminal, a plain line every `plain_every` steps.
 */
#ifndef STRATA_CLI_PROGRESS_H
#define STRATA_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cli_progress {
    bool tty, enabled, drawn;
    int64_t first, total, plain_every;
    double t0, last_draw;
} cli_progress;

/* Steps run from first to total. enabled false: prints nothing. */
void cli_progress_init(cli_progress *p, int64_t first, int64_t total, int64_t plain_every,
                       bool enabled);
/* After step `step` (1-based count of steps done) with its loss and the
 * current rate in tokens/s. Redraws at most 10 times a second on a TTY. */
void cli_progress_update(cli_progress *p, int64_t step, double loss, double tokens_per_s);
/* Erases the bar (on a TTY) so other output can be printed. */
void cli_progress_clear(cli_progress *p);

#endif
