/*
 * convert.c — `strata convert` and `strata quantize`: load a model from any
 * source st_lm reads (GGUF, a model directory, a llama2.c checkpoint),
 * optionally change its weight type (st_lm_quantize), and write it as GGUF
 * (OUT ending in .gguf) or a Hugging Face-style directory (anything else).
 * cmd_quantize (cli/quantize.c) shares the code through cli_convert_run.
 * All memory is local to one call and freed before it returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "strata/infer.h"

static void print_help(void) {
    printf(
        "usage: strata convert IN --out OUT [--type f32|f16|bf16|q8_0|q4_0] [--tokenizer PATH] [--json]\n"
        "\n"
        "Convert a model between formats, optionally changing the weight type.\n"
        "\n"
        "IN:   a .gguf file (llama or gpt2; f32, f16, bf16, q8_0, q4_0 tensors),\n"
        "      a model directory (config.json + model.safetensors [+ tokenizer.json],\n"
        "      Strata's or Hugging Face's Llama/GPT-2 names), or a llama2.c checkpoint\n"
        "OUT:  ending in .gguf: GGUF v3 (alignment 32, tokenizer in the metadata,\n"
        "      q/k rows in llama.cpp's interleaved RoPE order); otherwise a directory\n"
        "      in Hugging Face's layout (config.json, model.safetensors in f32 with\n"
        "      quantized matrices dequantized, tokenizer.json)\n"
        "\n"
        "options:\n"
        "  --out OUT          where to write (required); files are written to a\n"
        "                     temporary name, fsynced and renamed\n"
        "  --type T           weight type of every 2-D matrix (default: keep each as\n"
        "                     it is); matrices whose rows are not whole 32-element\n"
        "                     blocks stay f32 for q8_0/q4_0\n"
        "  --tokenizer PATH   a tokenizer for sources without one (llama2.c's\n"
        "                     tokenizer.bin) or to replace the source's\n"
        "  --json             print one JSON object with the sizes\n"
        "  -h, --help         this text\n"
        "\n"
        "exit status: 0 ok, 1 load/convert/write failure, 2 bad usage.\n"
        "\n"
        "examples:\n"
        "  strata convert stories260K.bin --tokenizer tok512.bin --out s260k.gguf\n"
        "  strata convert s260k.gguf --out s260k-hf/\n"
        "  strata convert model-dir --out model-q8.gguf --type q8_0\n");
}

static bool ends_with(const char *s, const char *suf) {
    const size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static size_t file_bytes(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (size_t)sb.st_size : 0;
}

/* loads IN (a model directory, .gguf, llama2.c checkpoint or registry
 * reference: st_lm_load tells them apart); tok (may be NULL) replaces or
 * supplies the tokenizer */
static st_status load_any(st_ctx *ctx, const char *in, const char *tok, st_lm **out) {
    return st_lm_load(ctx, in, tok, out);
}

int cli_convert_run(const char *sub, const char *in, const char *out, int type, const char *tok,
                    bool json) {
    st_ctx_params cp = st_ctx_default_params();
    st_ctx *ctx = NULL;
    st_status s = st_ctx_new(&cp, &ctx);
    if (s != ST_OK) return cli_fail(sub, s);
    st_lm *lm = NULL, *q = NULL;
    s = load_any(ctx, in, tok, &lm);
    const size_t before = lm ? st_lm_weight_bytes(lm) : 0;
    if (s == ST_OK && type >= 0) {
        s = st_lm_quantize(lm, (st_wtype)type, &q);
        if (s == ST_OK) {
            st_lm_free(lm);
            lm = q;
        }
    }
    if (s == ST_OK) s = ends_with(out, ".gguf") ? st_lm_save_gguf(lm, out) : st_lm_save_hf(lm, out);
    if (s != ST_OK) {
        st_lm_free(lm);
        st_ctx_free(ctx);
        return cli_fail(sub, s);
    }
    const size_t after = st_lm_weight_bytes(lm);
    const size_t in_file = is_dir(in) ? 0 : file_bytes(in), out_file = ends_with(out, ".gguf") ? file_bytes(out) : 0;
    const char *tn = type >= 0 ? st_wtype_name((st_wtype)type) : "unchanged";
    if (json)
        printf("{\"in\": \"%s\", \"out\": \"%s\", \"type\": \"%s\", \"weight_bytes_before\": %zu, "
               "\"weight_bytes_after\": %zu, \"file_bytes_in\": %zu, \"file_bytes_out\": %zu}\n",
               in, out, tn, before, after, in_file, out_file);
    else
        printf("%s -> %s (%s): weights %.2f MiB -> %.2f MiB (%.2fx)%s\n", in, out, tn,
               before / 1048576.0, after / 1048576.0, after ? (double)before / after : 0.0,
               out_file ? "" : "");
    st_lm_free(lm);
    st_ctx_free(ctx);
    return 0;
}

int cmd_convert(int argc, char **argv) {
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
            if (type < 0) return cli_usage_error("convert", "unknown --type '%s'", argv[i]);
        } else if (!strcmp(a, "--json")) json = true;
        else if (a[0] == '-' && a[1]) return cli_usage_error("convert", "unknown option '%s'", a);
        else if (!in) in = a;
        else return cli_usage_error("convert", "one input only ('%s')", a);
    }
    if (!in || !out) return cli_usage_error("convert", "IN and --out OUT are required");
    return cli_convert_run("convert", in, out, type, tok, json);
}
