/*
 * quantize.c — `strata quantize IN --out OUT --type q8_0|q4_0`: llama.cpp's
 * block quantization of every weight matrix (st_lm_quantize), written as
 * GGUF or a model directory; prints the weight sizes before and after. The
 * loading and writing are convert's (cli/convert.c, cli_convert_run).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "strata/quant.h"

int cli_convert_run(const char *sub, const char *in, const char *out, int type, const char *tok,
                    bool json);

static void print_help(void) {
    printf(
        "usage: strata quantize IN --out OUT --type q8_0|q4_0 [--tokenizer PATH] [--json]\n"
        "\n"
        "Quantize every 2-D weight matrix to llama.cpp's q8_0 (34 bytes per 32 weights)\n"
        "or q4_0 (18 bytes per 32) block layout, rounding as llama.cpp's reference\n"
        "quantizer does, so the file holds the bytes llama.cpp would write. Norms and\n"
        "biases stay f32; matrices whose rows are not whole 32-element blocks stay f32.\n"
        "\n"
        "IN:   a .gguf file, a model directory or a llama2.c checkpoint (see convert)\n"
        "OUT:  a .gguf file (usual), or a directory (weights dequantized to f32 there)\n"
        "\n"
        "options:\n"
        "  --out OUT          where to write (required)\n"
        "  --type T           q8_0 or q4_0 (required; f16/bf16/f32 via strata convert)\n"
        "  --tokenizer PATH   a tokenizer for sources without one (llama2.c)\n"
        "  --json             print {\"weight_bytes_before\": .., \"weight_bytes_after\": ..}\n"
        "  -h, --help         this text\n"
        "\n"
        "Compare quality with strata eval --model OUT --data FILE (perplexity).\n"
        "exit status: 0 ok, 1 load/quantize/write failure, 2 bad usage.\n"
        "\n"
        "example:\n"
        "  strata quantize stories15M.gguf --out stories15M-q8_0.gguf --type q8_0\n");
}

int cmd_quantize(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        print_help();
        return 0;
    }
    const char *in = NULL, *out = NULL, *tok = NULL;
    int type = -1;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) tok = argv[++i];
        else if (!strcmp(a, "--type") && i + 1 < argc) {
            type = st_wtype_from_name(argv[++i]);
            if (type != ST_WT_Q8_0 && type != ST_WT_Q4_0)
                return cli_usage_error("quantize", "--type must be q8_0 or q4_0, not '%s'", argv[i]);
        } else if (!strcmp(a, "--json")) json = true;
        else if (a[0] == '-' && a[1]) return cli_usage_error("quantize", "unknown option '%s'", a);
        else if (!in) in = a;
        else return cli_usage_error("quantize", "one input only ('%s')", a);
    }
    if (!in || !out || type < 0)
        return cli_usage_error("quantize", "IN, --out OUT and --type are required");
    return cli_convert_run("quantize", in, out, type, tok, json);
}
