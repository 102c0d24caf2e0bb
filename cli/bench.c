/*
 * bench.c — `strata bench NAME`: dispatches to the benchmark programs in
 * bench/ (one per name).
 */
#include <string.h>

#include "bench.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata bench <name> [options]\n\n"
            "benchmarks (each prints ratios against a peer or the machine's limit,\n"
            "measured side by side in one run; medians of several repetitions):\n"
            "  ops    matmul vs raw cblas_sgemm; elementwise, softmax and layernorm vs\n"
            "         the measured copy bandwidth; every SIMD level vs scalar\n"
            "  tokenizer  BPE encoding MB/s (gpt2, cl100k_base) vs js-tiktoken\n"
            "  train  training tokens/s (fwd+bwd+AdamW) of the shakespeare configs vs PyTorch\n\n"
            "Run 'strata bench <name> --help' for its options.\n");
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "ops") == 0) return bench_ops_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "tokenizer") == 0) return bench_tokenizer_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "train") == 0) return bench_train_main(argc - 1, argv + 1);
    return cli_usage_error("bench", "unknown benchmark '%s'", argv[1]);
}
