/*
 * bench_tokenizer.c — `strata bench tokenizer`: byte-level BPE encoding
 * speed (MB/s, 1e6 bytes per second, single thread) of the gpt2 and
 * cl100k_base tokenizers on one text file, side by side with js-tiktoken
 * (npm js-tiktoken, the pure-JavaScript port of OpenAI's tiktoken) on the
 * same file in the same run when node and bench/js/node_modules are present.
 *
 * Each figure is the median of --reps encodings of the whole file after one
 * warm-up; the goal (>= 20 MB/s per core on English text) is printed next to
 * it, never judged. The peer runs as a child process (node
 * bench/js/tiktoken_bench.mjs FILE REPS) that prints one JSON line per
 * encoding; its figures are parsed with jansson.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "strata/tokenizer.h"

#define GOAL_MBS 20.0

static void usage(void) {
    printf("usage: strata bench tokenizer [--file PATH] [--reps N] [--json] [--no-js]\n\n"
           "Encode a text file with the gpt2 and cl100k_base BPE tokenizers, single-threaded,\n"
           "and print MB/s (1e6 bytes/s; median of N runs after one warm-up) next to\n"
           "js-tiktoken's figure for the same file and encodings.\n\n"
           "options:\n"
           "  --file PATH   the text (default: data/tinyshakespeare.txt)\n"
           "  --reps N      timed repetitions per tokenizer (default 5)\n"
           "  --json        JSON Lines instead of the table\n"
           "  --no-js       skip the js-tiktoken peer\n\n"
           "tokenizers are found through STRATA_DATA_DIR (default ./data); the peer needs\n"
           "node and bench/js/node_modules (cd bench/js && npm install), run from the\n"
           "source tree. Goal: >= %.0f MB/s per core on English text.\n",
           GOAL_MBS);
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size <= 0) {
        fclose(f);
        return NULL;
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (b && fread(b, 1, (size_t)st.st_size, f) != (size_t)st.st_size) free(b), b = NULL;
    fclose(f);
    if (b) b[st.st_size] = '\0', *n = (size_t)st.st_size;
    return b;
}

typedef struct js_fig {
    double mbs[2]; /* gpt2, cl100k_base; 0 when missing */
    long tokens[2];
    bool ran;
} js_fig;

static js_fig run_js(const char *file, int reps) {
    js_fig r = {{0, 0}, {0, 0}, false};
    if (access("bench/js/node_modules/js-tiktoken", F_OK) != 0) return r;
    if (system("command -v node >/dev/null 2>&1") != 0) return r;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "node bench/js/tiktoken_bench.mjs '%s' %d", file, reps);
    FILE *p = popen(cmd, "r");
    if (!p) return r;
    char line[1024];
    while (fgets(line, sizeof line, p)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        const char *enc = json_string_value(json_object_get(o, "encoding"));
        if (enc) {
            int k = strcmp(enc, "gpt2") == 0 ? 0 : strcmp(enc, "cl100k_base") == 0 ? 1 : -1;
            if (k >= 0) {
                r.mbs[k] = json_number_value(json_object_get(o, "mb_per_s"));
                r.tokens[k] = (long)json_integer_value(json_object_get(o, "tokens"));
                r.ran = true;
            }
        }
        json_decref(o);
    }
    pclose(p);
    return r;
}

int bench_tokenizer_main(int argc, char **argv) {
    const char *file = "data/tinyshakespeare.txt";
    int reps = 5;
    bool json = false, js = true;
    for (int i = 1; i < argc; i++) {
        long v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) file = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc && cli_parse_long(argv[++i], &v) &&
                 v >= 1 && v <= 1000)
            reps = (int)v;
        else if (strcmp(argv[i], "--json") == 0) json = true;
        else if (strcmp(argv[i], "--no-js") == 0) js = false;
        else return cli_usage_error("bench tokenizer", "bad option '%s'", argv[i]);
    }
    size_t n = 0;
    char *text = read_all(file, &n);
    if (!text) {
        fprintf(stderr, "strata bench tokenizer: %s: cannot read (or empty)\n", file);
        return 1;
    }
    const char *names[2] = {"gpt2", "cl100k_base"};
    double mbs[2] = {0, 0};
    size_t toks[2] = {0, 0};
    int rc = 0;
    double *t = malloc((size_t)reps * sizeof *t);
    for (int k = 0; k < 2 && rc == 0; k++) {
        st_tokenizer *tok = NULL;
        st_status s = st_tokenizer_load(names[k], &tok);
        if (s != ST_OK) {
            rc = cli_fail("bench tokenizer", s);
            break;
        }
        for (int r = -1; r < reps && rc == 0; r++) {
            int32_t *ids = NULL;
            double t0 = st_time_s();
            s = st_tokenizer_encode(tok, text, n, NULL, &ids, &toks[k]);
            double dt = st_time_s() - t0;
            st_free(ids);
            if (s != ST_OK) rc = cli_fail("bench tokenizer", s);
            if (r >= 0) t[r] = (double)n / dt / 1e6;
        }
        if (rc == 0) mbs[k] = bench_median(t, reps);
        st_tokenizer_free(tok);
    }
    free(t);
    if (rc) {
        free(text);
        return rc;
    }
    js_fig jf = js ? run_js(file, reps) : (js_fig){{0, 0}, {0, 0}, false};
    for (int k = 0; k < 2; k++) {
        if (json) {
            printf("{\"bench\":\"tokenizer\",\"encoding\":\"%s\",\"file_bytes\":%zu,\"tokens\":%zu,"
                   "\"strata_mb_per_s\":%.2f,\"goal_mb_per_s\":%.0f",
                   names[k], n, toks[k], mbs[k], GOAL_MBS);
            if (jf.mbs[k] > 0)
                printf(",\"js_tiktoken_mb_per_s\":%.2f,\"js_tiktoken_tokens\":%ld,\"ratio\":%.3f",
                       jf.mbs[k], jf.tokens[k], mbs[k] / jf.mbs[k]);
            printf("}\n");
        } else {
            if (k == 0)
                printf("BPE encoding, %s (%zu bytes), 1 thread, median of %d\n"
                       "%-12s %10s %12s %14s %8s %8s\n",
                       file, n, reps, "encoding", "tokens", "strata MB/s", "js-tiktoken", "ratio",
                       "goal");
            if (jf.mbs[k] > 0)
                printf("%-12s %10zu %12.2f %14.2f %7.2fx %6.0f+%s\n", names[k], toks[k], mbs[k],
                       jf.mbs[k], mbs[k] / jf.mbs[k], GOAL_MBS,
                       (size_t)jf.tokens[k] == toks[k] ? "" : "  (token counts differ!)");
            else
                printf("%-12s %10zu %12.2f %14s %8s %6.0f+\n", names[k], toks[k], mbs[k], "-", "-",
                       GOAL_MBS);
        }
    }
    if (js && !jf.ran && !json)
        printf("js-tiktoken: not installed (cd bench/js && npm install)\n");
    free(text);
    return 0;
}
