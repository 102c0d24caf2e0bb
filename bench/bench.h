/*
 * bench.h — benchmark programs reachable as `strata bench NAME`.
 * Each prints a table for people (or JSON Lines with --json) of ratios
 * against a peer or the machine's measured limit, measured side by side in
 * one run. They never judge: goals are printed next to the figures.
 */
#ifndef STRATA_BENCH_H
#define STRATA_BENCH_H

#include "strata/hw.h"
#include "strata/infer.h"

int bench_ops_main(int argc, char **argv);
int bench_tokenizer_main(int argc, char **argv);
int bench_train_main(int argc, char **argv);
int bench_loader_main(int argc, char **argv);
int bench_parquet_main(int argc, char **argv);
int bench_serve_main(int argc, char **argv);
int bench_hubpull_main(int argc, char **argv);
int bench_track_main(int argc, char **argv);
int bench_vec_main(int argc, char **argv);
int bench_decode_main(int argc, char **argv);
int bench_llamacpp_main(int argc, char **argv);
int bench_dist_main(int argc, char **argv);

/* Engine speed as bench decode and bench llamacpp measure it (bench/decode.c):
 * reps times, a BENCH_PREFILL_TOKENS-token prefill of ids (tokens/s), then a
 * fresh sequence's BENCH_PROMPT_TOKENS-token prompt followed by
 * BENCH_DECODE_TOKENS single-token decode steps feeding next[] (tokens/s);
 * medians into *prefill_tps and *decode_tps. reps in [1, 16].
 * With bw (else NULL), each rep ends with the bandwidth probe
 * (st_hw_measure_bandwidth), so every decode figure has the machine's
 * copy bandwidth of the same moment: the median copy GB/s into *copy_gbs
 * and the median over reps of decode tokens/s / (copy bytes/s / weight
 * bytes per token) into *vs_bound. */
#define BENCH_PREFILL_TOKENS 128
#define BENCH_PROMPT_TOKENS 16
#define BENCH_DECODE_TOKENS 64
st_status bench_engine_speed(st_ctx *ctx, const st_lm *lm, const int32_t *ids,
                             const int32_t *next, int reps, const st_hw_measure_params *bw,
                             double *prefill_tps, double *decode_tps, double *copy_gbs,
                             double *vs_bound);

/* Median of n doubles (sorts v in place). */
double bench_median(double *v, int n);

#endif
