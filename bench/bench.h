/*
 * bench.h — benchmark programs reachable as `strata bench NAME`.
 * Each prints a table for people (or JSON Lines with --json) of ratios
 * against a peer or the machine's measured limit, measured side by side in
 * one run. They never judge: goals are printed next to the figures.
 */
#ifndef STRATA_BENCH_H
#define STRATA_BENCH_H

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

/* Median of n doubles (sorts v in place). */
double bench_median(double *v, int n);

#endif
