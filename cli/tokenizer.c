/*
 * tokenizer.c — `strata tokenizer train`: builds a tokenizer from a corpus
 * and writes it as a Hugging Face tokenizer.json (strata/tokenizer.h does
 * the work: byte-level BPE training with GPT-2 pre-tokenization, or a
 * character-level vocabulary with --char).
 *
 * The corpus is read whole (at most 2 GiB); memory is local to the command.
 * Progress and a summary go to stderr; --json prints the summary as JSON.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strata/data.h"
#include "strata/tokenizer.h"

#define SUB "tokenizer"

static void print_help(void) {
    printf(
        "usage: strata tokenizer train --input FILE --out tokenizer.json\n"
        "                              (--vocab-size N | --char) [--json]\n"
        "\n"
        "Train a tokenizer on a UTF-8 text corpus and write it as a Hugging Face\n"
        "tokenizer.json (load it back with --tokenizer PATH anywhere in strata).\n"
        "\n"
        "options:\n"
        "  --input FILE      the corpus (read whole, at most 2 GiB)\n"
        "  --out PATH        where to write tokenizer.json (temp file + fsync + rename)\n"
        "  --vocab-size N    byte-level BPE: 256 byte tokens, then N-256 merges learnt\n"
        "                    from the corpus (GPT-2 pre-tokenization; the most frequent\n"
        "                    pair first, ties to the smallest ids). 256 <= N <= 1048576.\n"
        "                    Training stops early when no pair occurs twice.\n"
        "  --char            character-level instead: one token per distinct character\n"
        "                    of the corpus, ids in code point order (the corpus must be\n"
        "                    valid UTF-8)\n"
        "  --json            print the summary as one JSON object on stdout\n"
        "  -h, --help        this text\n"
        "\n"
        "examples:\n"
        "  strata tokenizer train --input data/tinyshakespeare.txt --vocab-size 1024 --out tok.json\n"
        "  strata tokenizer train --input data/tinyshakespeare.txt --char --out char.json\n"
        "  strata tokenize --tokenizer tok.json 'To be, or not to be'\n");
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") != 0)
        return cli_usage_error(SUB, "unknown action '%s' (only 'train')", argv[1]);
    if (cli_wants_help(argc, argv)) {
        print_help();
        return 0;
    }
    const char *input = NULL, *out = NULL;
    long vocab = -1;
    bool chr = false, json = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--input") == 0 || strcmp(a, "--out") == 0 || strcmp(a, "--vocab-size") == 0) {
            if (i + 1 >= argc) return cli_usage_error(SUB, "%s needs a value", a);
            const char *v = argv[++i];
            if (a[2] == 'i') input = v;
            else if (a[2] == 'o') out = v;
            else if (!cli_parse_long(v, &vocab) || vocab < 256 || vocab > (1 << 20))
                return cli_usage_error(SUB, "--vocab-size '%s' is not an integer in [256, 1048576]", v);
        } else if (strcmp(a, "--char") == 0) chr = true;
        else if (strcmp(a, "--json") == 0) json = true;
        else return cli_usage_error(SUB, "unknown option '%s'", a);
    }
    if (!input || !out) return cli_usage_error(SUB, "train needs --input FILE and --out PATH");
    if (chr == (vocab > 0)) return cli_usage_error(SUB, "give exactly one of --vocab-size N and --char");
    size_t n = 0;
    char *text = NULL;
    st_status rs = st_text_read_file(input, (size_t)1 << 31, &text, &n);
    if (rs != ST_OK) return cli_fail(SUB, rs);
    double t0 = st_time_s();
    st_tokenizer *tok = NULL;
    if (!json) fprintf(stderr, "strata tokenizer: training on %s (%zu bytes)...\n", input, n);
    st_status s = chr ? st_tokenizer_char_from_corpus(text, n, &tok)
                      : st_tokenizer_train_bpe(text, n, (int)vocab, &tok);
    double train_s = st_time_s() - t0;
    int rc = 0;
    if (s == ST_OK) s = st_tokenizer_save_json(tok, out);
    if (s != ST_OK) rc = cli_fail(SUB, s);
    size_t n_ids = 0;
    if (rc == 0) {
        int32_t *ids = NULL;
        s = st_tokenizer_encode(tok, text, n, NULL, &ids, &n_ids);
        st_free(ids);
        if (s != ST_OK) rc = cli_fail(SUB, s);
    }
    if (rc == 0) {
        int vs = st_tokenizer_vocab_size(tok);
        double bpt = n_ids ? (double)n / (double)n_ids : 0.0;
        if (json) {
            json_t *o = json_pack("{s:s, s:i, s:I, s:I, s:f, s:f, s:s}", "kind", chr ? "char" : "bpe",
                                  "vocab_size", vs, "input_bytes", (json_int_t)n, "tokens",
                                  (json_int_t)n_ids, "bytes_per_token", bpt, "train_s", train_s,
                                  "out", out);
            char *d = o ? json_dumps(o, JSON_COMPACT) : NULL;
            if (d) printf("%s\n", d);
            free(d);
            json_decref(o);
        }
        else
            fprintf(stderr,
                    "strata tokenizer: %s vocabulary of %d tokens in %.2f s; the corpus is %zu "
                    "tokens (%.2f bytes/token); wrote %s\n",
                    chr ? "character" : "BPE", vs, train_s, n_ids, bpt, out);
    }
    st_tokenizer_free(tok);
    st_free(text);
    return rc;
}
