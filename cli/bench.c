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
            "  parquet  scan of the text column of the shakespeare Parquet files vs DuckDB\n"
            "  train  training tokens/s (fwd+bwd+AdamW) of the shakespeare configs vs PyTorch\n"
            "  loader token-shard loader batches/s vs shakespeare-char training steps/s\n"
            "         and the data-wait share of training (goals: >= 50x, < 1%%)\n"
            "  serve  strata serve under 1-64 streaming clients: tokens/s, TTFT, ITL, KV use\n"
            "  vec    HNSW build time, queries/s, recall@10 and flat queries/s vs FAISS\n"
            "  track  experiment tracking: metric points/s logged vs a training step\n"
            "  hubpull  hub pull over loopback (hash-verified) vs read + SHA-256 of the bytes\n"
            "  decode  engine prefill vs the sgemm peak, decode vs the memory-bandwidth bound\n"
            "  llamacpp  engine prefill/decode vs llama.cpp (node-llama-cpp) on the same GGUF\n"
            "  dist   data-parallel training tokens/s at 1 and 2 MPI ranks (goal >= 1.8x)\n\n"
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
    if (strcmp(argv[1], "loader") == 0) return bench_loader_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "train") == 0) return bench_train_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "parquet") == 0) return bench_parquet_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0) return bench_serve_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "vec") == 0) return bench_vec_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "track") == 0) return bench_track_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "hubpull") == 0) return bench_hubpull_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "decode") == 0) return bench_decode_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "llamacpp") == 0) return bench_llamacpp_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "dist") == 0) return bench_dist_main(argc - 1, argv + 1);
    return cli_usage_error("bench", "unknown benchmark '%s'", argv[1]);
}
