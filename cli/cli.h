/*
 * cli.h — the strata command: one file per subcommand, each exporting
 * int cmd_NAME(int argc, char **argv) where argv[0] is the subcommand name.
 * Exit codes: 0 success, 1 failure at run time, 2 bad usage.
 */
#ifndef STRATA_CLI_H
#define STRATA_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "strata/base.h"
#include "strata/infer.h"

int cmd_hw(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_data(int argc, char **argv);
/* `strata data ingest` (cli/data_ingest.c); argv[0] is "ingest". cmd_data calls it. */
int st_cli_data_ingest(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_hub(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_ui(int argc, char **argv);
int cmd_vec(int argc, char **argv);
int cmd_rag(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_mcp(int argc, char **argv);

/* True when argv holds -h or --help. */
bool cli_wants_help(int argc, char **argv);
/* Prints "strata SUB: message: last error" to stderr and returns 1. */
int cli_fail(const char *sub, st_status s);
/* Prints "strata SUB: msg" and the hint to run --help; returns 2. */
int cli_usage_error(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a whole decimal integer / float; false on junk or overflow. */
bool cli_parse_long(const char *s, long *out);
bool cli_parse_double(const char *s, double *out);

/* Opens a model for inference, as every command with --model does: a
 * context with `threads` workers (0: all), the model REF (a path, or a
 * registry reference resolved and verified once) with tok_path for model
 * files that carry no tokenizer. need_tok: a model without a tokenizer is
 * an error naming it. path_out (may be NULL): the resolved path (a model
 * directory's chat template lives there), st_malloc'd. On error nothing is
 * left allocated and the outputs are NULL. */
st_status cli_open_lm(long threads, const char *ref, const char *tok_path, bool need_tok,
                      st_ctx **ctx, st_lm **lm, char **path_out);

#endif
