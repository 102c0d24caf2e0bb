/*
 * data_ingest.c — `strata data ingest`: text, JSON Lines, CSV and Parquet
 * inputs into a dataset directory of token shards (st_ingest, strata/data.h).
 * cli/data.c dispatches `data ingest` here (argv[0] == "ingest").
 *
 * Progress goes to stderr: a bar redrawn in place on a terminal, a plain
 * line every 5 seconds otherwise; --json prints one object on stdout at the
 * end. Single-threaded driver; the tokenizer threads belong to st_ingest.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "strata/data.h"

static void usage(FILE *f) {
    fprintf(f, "usage: strata data ingest INPUT... --out DIR --tokenizer T [options]\n\n"
               "Tokenizes documents into token shards for training (strata train --data DIR).\n"
               "INPUT is a file, a directory (every .txt/.jsonl/.csv/.parquet under it,\n"
               "recursively, sorted) or a quoted glob pattern. Documents:\n"
               "  .txt      the whole file is one document\n"
               "  .jsonl    the string field --column of each line (blank lines skipped)\n"
               "  .csv      RFC 4180; the header row names the columns; field --column\n"
               "  .parquet  the string column --column of every row (nulls skipped)\n"
               "Each document is preceded by the tokenizer's BOS token, else its EOS token\n"
               "(GPT-2's <|endoftext|>), else nothing. Document k goes to the validation\n"
               "split when a seeded hash of k falls below --val-fraction, so the split does\n"
               "not depend on threads or shard sizes, and the output bytes are the same for\n"
               "every thread count. An interrupted ingest rerun with the same arguments\n"
               "resumes after the inputs it had finished (DIR/ingest.journal.json).\n\n"
               "DIR receives manifest.json, tokenizer.json and train-NNNNNN.bin /\n"
               "val-NNNNNN.bin shards (uint16 ids when the vocabulary fits, else uint32).\n\n"
               "options:\n"
               "  --out DIR            output directory (created when missing; required)\n"
               "  --tokenizer T        gpt2, cl100k_base, tok512, or a path: tokenizer.json,\n"
               "                       .tiktoken, tokenizer.bin, a GPT-2 folder (required;\n"
               "                       `strata tokenizer` makes a char-level tokenizer.json)\n"
               "  --column NAME        field of .jsonl/.csv/.parquet inputs (default: text)\n"
               "  --val-fraction F     share of documents for validation, in [0, 1)\n"
               "                       (default: 0.0005)\n"
               "  --shard-tokens N     tokens per shard (default: 16777216)\n"
               "  --seed S             seed of the split hash (default: 1337)\n"
               "  --threads N          tokenizer threads (default: STRATA_THREADS, else all CPUs)\n"
               "  --quiet              no progress display\n"
               "  --json               print the result as one JSON object\n");
}

typedef struct prog_state {
    bool tty, enabled, drawn;
    double t0, last;
} prog_state;

static void on_progress(void *user, const st_ingest_progress *p) {
    prog_state *ps = user;
    if (!ps->enabled) return;
    double now = st_time_s(), el = now - ps->t0;
    if (now - ps->last < (ps->tty ? 0.1 : 5.0)) return;
    ps->last = now;
    double frac = p->bytes_total ? (double)p->bytes_done / (double)p->bytes_total : 0.0;
    if (frac > 1) frac = 1;
    double mbs = el > 0 ? (double)p->bytes_done / el / 1e6 : 0.0;
    double eta = frac > 0 ? el / frac - el : -1;
    if (ps->tty) {
        char bar[25];
        int fill = (int)(24 * frac);
        for (int i = 0; i < 24; i++)
            bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[24] = '\0';
        fprintf(stderr,
                "\r\033[Kinput %d/%d [%s] %.1f%% | %" PRIu64 " docs | %" PRIu64
                " tokens | %.1f MB/s | ETA %.0fs",
                p->inputs_done + 1, p->n_inputs, bar, 100 * frac, p->n_docs, p->n_tokens, mbs,
                eta < 0 ? 0 : eta);
        fflush(stderr);
        ps->drawn = true;
    } else {
        fprintf(stderr,
                "ingest: input %d/%d, %.1f%%, %" PRIu64 " docs, %" PRIu64 " tokens, %.1f MB/s\n",
                p->inputs_done + 1, p->n_inputs, 100 * frac, p->n_docs, p->n_tokens, mbs);
    }
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int st_cli_data_ingest(int argc, char **argv) {
    const char *sub = "data ingest";
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    st_ingest_params p = st_ingest_default_params();
    const char *out = NULL, *tok_name = NULL;
    bool json = false, quiet = false;
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    int n_in = 0;
    if (!inputs) return cli_usage_error(sub, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        double d;
        if (!strcmp(k, "--json")) {
            json = true;
        } else if (!strcmp(k, "--quiet")) {
            quiet = true;
        } else if (!strcmp(k, "--out") && v) {
            out = v;
            i++;
        } else if (!strcmp(k, "--tokenizer") && v) {
            tok_name = v;
            i++;
        } else if (!strcmp(k, "--column") && v) {
            p.column = v;
            i++;
        } else if (!strcmp(k, "--val-fraction") && v) {
            if (!cli_parse_double(v, &d) || !(d >= 0 && d < 1)) {
                free(inputs);
                return cli_usage_error(sub, "--val-fraction wants a number in [0, 1), not '%s'", v);
            }
            p.val_fraction = d;
            i++;
        } else if (!strcmp(k, "--shard-tokens") && v) {
            if (!cli_parse_long(v, &x) || x < 1 || x > (1L << 32)) {
                free(inputs);
                return cli_usage_error(sub,
                                       "--shard-tokens wants an integer in [1, 2^32], not '%s'", v);
            }
            p.shard_tokens = (uint64_t)x;
            i++;
        } else if (!strcmp(k, "--seed") && v) {
            char *end = NULL;
            unsigned long long s = strtoull(v, &end, 10);
            if (!*v || *end || *v == '-') {
                free(inputs);
                return cli_usage_error(sub, "--seed wants a non-negative integer, not '%s'", v);
            }
            p.seed = s;
            i++;
        } else if (!strcmp(k, "--threads") && v) {
            if (!cli_parse_long(v, &x) || x < 1 || x > 1024) {
                free(inputs);
                return cli_usage_error(sub, "--threads wants an integer in [1, 1024], not '%s'", v);
            }
            p.n_threads = (int)x;
            i++;
        } else if (k[0] == '-' && k[1] == '-') {
            free(inputs);
            return cli_usage_error(sub, "unknown or incomplete option '%s'", k);
        } else {
            inputs[n_in++] = k;
        }
    }
    if (!n_in || !out || !tok_name) {
        free(inputs);
        return cli_usage_error(sub, "%s",
                               !n_in  ? "no INPUT given"
                               : !out ? "--out DIR is required"
                                      : "--tokenizer is required");
    }
    st_tokenizer *tok = NULL;
    st_status s = st_tokenizer_load(tok_name, &tok);
    if (s != ST_OK) {
        free(inputs);
        return cli_fail(sub, s);
    }
    prog_state ps = {.tty = isatty(fileno(stderr)) != 0, .enabled = !quiet, .t0 = st_time_s()};
    p.tokenizer = tok;
    p.tokenizer_name = tok_name;
    p.progress = on_progress;
    p.progress_user = &ps;
    st_ingest_result r;
    s = st_ingest(inputs, n_in, out, &p, &r);
    if (ps.drawn) fprintf(stderr, "\r\033[K");
    free(inputs);
    st_tokenizer_free(tok);
    if (s != ST_OK) return cli_fail(sub, s);
    if (json) {
        printf("{\"out\": ");
        json_str(stdout, out);
        printf(", \"complete\": %s, \"inputs\": %d, \"inputs_skipped\": %d, \"documents\": %" PRIu64
               ", \"train_tokens\": %" PRIu64 ", \"val_tokens\": %" PRIu64 ", \"shards\": %d, "
               "\"bytes_in\": %" PRIu64 ", \"seconds\": %.3f}\n",
               r.complete ? "true" : "false", r.n_inputs, r.n_inputs_skipped, r.n_docs,
               r.n_tokens[0], r.n_tokens[1], r.n_shards, r.bytes_in, r.seconds);
    } else {
        printf("ingested %d input%s (%d resumed from an earlier run): %" PRIu64
               " documents, %" PRIu64 " train + %" PRIu64
               " val tokens in %d shards -> %s (%.1f s, %.1f MB/s)\n",
               r.n_inputs, r.n_inputs == 1 ? "" : "s", r.n_inputs_skipped, r.n_docs, r.n_tokens[0],
               r.n_tokens[1], r.n_shards, out, r.seconds,
               r.seconds > 0 ? (double)r.bytes_in / r.seconds / 1e6 : 0.0);
    }
    return 0;
}
