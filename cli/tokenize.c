/*
 * tokenize.c — `strata tokenize`: text -> token ids, or ids -> text with
 * --decode, with any tokenizer strata/tokenizer.h loads (a name or a path).
 *
 * Input is the TEXT arguments joined by spaces, or stdin for "-" or no
 * argument. Output: ids separated by spaces and a newline, or one JSON
 * object {"ids": [...]} (jansson) with --json; --decode writes the text's
 * bytes exactly (no newline added) or {"text": "..."} with --json.
 * All memory is local to cmd_tokenize and freed before it returns.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strata/tokenizer.h"

#define SUB "tokenize"
#define MAX_INPUT_BYTES ((size_t)1 << 31)

static void print_help(void) {
    printf(
        "usage: strata tokenize --tokenizer NAME|PATH [--json] [--allow-special] [--bos] [TEXT...|-]\n"
        "       strata tokenize --tokenizer NAME|PATH --decode [--json] [ID...|-]\n"
        "\n"
        "Encode text to token ids (default) or decode ids back to text.\n"
        "\n"
        "options:\n"
        "  --tokenizer T    a name: gpt2, cl100k_base (alias cl100k) or tok512 (the\n"
        "                   stories260K llama2.c tokenizer), looked up in STRATA_DATA_DIR\n"
        "                   (default: ./data); or a path: a tokenizer.json, a .tiktoken\n"
        "                   file, a llama2.c tokenizer.bin, or a folder holding\n"
        "                   encoder.json + vocab.bpe (or a tokenizer.json)\n"
        "  --decode         read token ids (arguments, or whitespace/comma separated\n"
        "                   on stdin; a JSON {\"ids\": [...]} or [...] on stdin works too)\n"
        "                   and print the text they decode to, byte-exact\n"
        "  --json           encode: print {\"ids\": [...]}; decode: {\"text\": \"...\"}\n"
        "  --allow-special  special-token text such as <|endoftext|> becomes its id\n"
        "                   (default: encoded as ordinary text, like tiktoken's\n"
        "                   encode_ordinary)\n"
        "  --bos            prepend the BOS id when the tokenizer has one (llama2.c: 1)\n"
        "  -h, --help       this text\n"
        "\n"
        "TEXT: the arguments joined by single spaces; '-' or none reads stdin (all of\n"
        "it, bytes as they are; at most 2 GiB).\n"
        "\n"
        "output: encode prints the ids separated by spaces and a newline.\n"
        "exit status: 0 ok, 1 a load/encode/decode failure (the message names the\n"
        "file or the fault), 2 bad usage.\n"
        "\n"
        "examples:\n"
        "  strata tokenize --tokenizer gpt2 'Hello, world!'          # 15496 11 995 0\n"
        "  strata tokenize --tokenizer cl100k_base --json 'Hello'\n"
        "  strata tokenize --tokenizer gpt2 --decode 15496 11 995 0\n"
        "  echo 'Once upon a time' | strata tokenize --tokenizer data/stories260K/tok512.bin --bos\n");
}

static bool read_stdin(char **buf, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    if (!b) return false;
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_INPUT_BYTES) {
                free(b);
                return false;
            }
            cap *= 2;
            char *nb = realloc(b, cap + 1);
            if (!nb) {
                free(b);
                return false;
            }
            b = nb;
        }
        size_t r = fread(b + len, 1, cap - len, stdin);
        len += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) {
        free(b);
        return false;
    }
    b[len] = '\0';
    *buf = b;
    *n = len;
    return true;
}

/* Parses ids from text: integers separated by spaces, commas, brackets, or
 * a JSON object with "ids". Returns false on junk (names it in *bad). */
static bool parse_ids(const char *s, int32_t **ids, size_t *n, const char **bad) {
    json_error_t je;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &je);
    json_t *arr = json_is_object(j) ? json_object_get(j, "ids") : j;
    size_t cap = 64, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return false;
    if (json_is_array(arr)) {
        size_t i;
        json_t *x;
        json_array_foreach(arr, i, x) {
            if (!json_is_integer(x) || json_integer_value(x) < INT32_MIN ||
                json_integer_value(x) > INT32_MAX) {
                *bad = "a non-integer in the JSON ids";
                json_decref(j);
                free(v);
                return false;
            }
            if (k == cap) v = realloc(v, (cap *= 2) * sizeof *v);
            if (!v) return false;
            v[k++] = (int32_t)json_integer_value(x);
        }
        json_decref(j);
        *ids = v, *n = k;
        return true;
    }
    json_decref(j);
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == ',' || *p == '[' ||
               *p == ']')
            p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX ||
            (*end && !strchr(" \n\t\r,[]", *end))) {
            *bad = p;
            free(v);
            return false;
        }
        if (k == cap) v = realloc(v, (cap *= 2) * sizeof *v);
        if (!v) return false;
        v[k++] = (int32_t)x;
        p = end;
    }
    *ids = v, *n = k;
    return true;
}

int cmd_tokenize(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        print_help();
        return 0;
    }
    const char *tok_name = NULL;
    bool decode = false, json = false, special = false, bos = false, use_stdin = false;
    int first_arg = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (first_arg < 0 && strcmp(a, "--tokenizer") == 0) {
            if (++i >= argc) return cli_usage_error(SUB, "--tokenizer needs a name or a path");
            tok_name = argv[i];
        } else if (first_arg < 0 && strncmp(a, "--tokenizer=", 12) == 0) tok_name = a + 12;
        else if (first_arg < 0 && strcmp(a, "--decode") == 0) decode = true;
        else if (first_arg < 0 && strcmp(a, "--json") == 0) json = true;
        else if (first_arg < 0 && strcmp(a, "--allow-special") == 0) special = true;
        else if (first_arg < 0 && strcmp(a, "--bos") == 0) bos = true;
        else if (first_arg < 0 && strcmp(a, "--") == 0) first_arg = i + 1;
        else if (first_arg < 0 && strcmp(a, "-") == 0) use_stdin = true;
        else if (first_arg < 0 && a[0] == '-' && a[1] == '-')
            return cli_usage_error(SUB, "unknown option '%s'", a);
        else if (first_arg < 0) first_arg = i;
    }
    if (!tok_name) return cli_usage_error(SUB, "--tokenizer NAME|PATH is required");
    if (first_arg >= argc) first_arg = -1;
    if (use_stdin && first_arg >= 0) return cli_usage_error(SUB, "give TEXT or '-', not both");

    /* the input, as one buffer */
    char *in = NULL;
    size_t in_n = 0;
    if (first_arg < 0) {
        if (!read_stdin(&in, &in_n)) {
            fprintf(stderr, "strata %s: cannot read stdin (or more than 2 GiB)\n", SUB);
            return 1;
        }
    } else {
        for (int i = first_arg; i < argc; i++) in_n += strlen(argv[i]) + 1;
        in = malloc(in_n + 1);
        if (!in) return 1;
        in_n = 0;
        for (int i = first_arg; i < argc; i++) {
            if (i > first_arg) in[in_n++] = ' ';
            size_t l = strlen(argv[i]);
            memcpy(in + in_n, argv[i], l);
            in_n += l;
        }
        in[in_n] = '\0';
    }

    st_tokenizer *tok = NULL;
    st_status s = st_tokenizer_load(tok_name, &tok);
    if (s != ST_OK) {
        free(in);
        return cli_fail(SUB, s);
    }
    int rc = 0;
    if (decode) {
        int32_t *ids = NULL;
        size_t n = 0;
        const char *bad = "out of memory";
        if (!parse_ids(in, &ids, &n, &bad)) {
            rc = cli_usage_error(SUB, "--decode: not a token id: '%.20s'", bad);
        } else {
            char *text = NULL;
            size_t tn = 0;
            s = st_tokenizer_decode(tok, ids, n, &text, &tn);
            if (s != ST_OK) rc = cli_fail(SUB, s);
            else if (json) {
                json_t *o = json_pack("{s:s%}", "text", text, tn);
                char *d = o ? json_dumps(o, JSON_COMPACT) : NULL;
                if (d) printf("%s\n", d);
                else rc = 1, fprintf(stderr, "strata %s: decoded text is not valid UTF-8 for JSON\n", SUB);
                free(d);
                json_decref(o);
            } else {
                fwrite(text, 1, tn, stdout);
            }
            st_free(text);
        }
        free(ids);
    } else {
        st_encode_opts o = {.allow_special = special, .add_bos = bos};
        int32_t *ids = NULL;
        size_t n = 0;
        s = st_tokenizer_encode(tok, in, in_n, &o, &ids, &n);
        if (s != ST_OK) rc = cli_fail(SUB, s);
        else {
            if (json) fputs("{\"ids\": [", stdout);
            for (size_t i = 0; i < n; i++)
                printf(i ? (json ? ", %d" : " %d") : "%d", ids[i]);
            fputs(json ? "]}\n" : "\n", stdout);
        }
        st_free(ids);
    }
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "strata %s: write failed: %s\n", SUB, strerror(errno));
        rc = 1;
    }
    st_tokenizer_free(tok);
    free(in);
    return rc;
}
