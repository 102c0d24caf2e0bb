/*
 * chat.c — `strata chat`: a terminal chat with a model (strata/app.h
 * st_chat does the conversation: template, KV-cache reuse, truncation).
 *
 * On a terminal: line editing and history through libedit's readline
 * (history kept in STRATA_HOME/chat_history), answers streamed as they are
 * sampled, commands /reset, /system TEXT, /save FILE, /help, /quit. Ctrl-C
 * while an answer streams stops that answer (SIGINT sets a flag the token
 * callback reads); at the prompt it leaves as usual.
 *
 * Without a terminal on stdin (scripts, tests): one user message per line
 * (commands work the same), or the messages given with --message; each
 * answer is printed on stdout followed by one newline, notices go to
 * stderr. --json prints the transcript as JSON at the end instead of the
 * answers. All memory is local and freed on return.
 */
#include <editline/readline.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "strata/app.h"
#include "strata/registry.h"

#define SUB "chat"
#define MAX_MESSAGES 64
#define MAX_LINE_BYTES ((size_t)1 << 20) /* one piped message */

static void print_help(void) {
    printf(
        "usage: strata chat --model REF [--tokenizer PATH] [options]\n"
        "\n"
        "Chats with a model in the terminal. The conversation is rendered with the\n"
        "model's chat template (ChatML, Llama-2, or a plain SYSTEM/USER/ASSISTANT\n"
        "layout for character-level models) each turn; the KV cache keeps what\n"
        "the previous turn computed, and when the context fills up the oldest\n"
        "turns are left out (with a notice). Answers stream as they are sampled;\n"
        "Ctrl-C stops an answer, not the program.\n"
        "\n"
        "options:\n"
        "  --model REF          model directory, .gguf file, llama2.c checkpoint or\n"
        "                       registry reference NAME[:TAG|@REV]\n"
        "  --tokenizer PATH     tokenizer for models that carry none (llama2.c's\n"
        "                       tokenizer.bin)\n"
        "  --system TEXT        system message (default: none)\n"
        "  --temperature T      0 = greedy (default 0.8)\n"
        "  --top-p P            nucleus sampling mass in (0, 1]; 1 = off (default 0.95)\n"
        "  --top-k K            keep the K most likely tokens; 0 = off (default 0)\n"
        "  --seed S             sampling seed; turn k uses S + k (default 0: the clock)\n"
        "  -n, --max-tokens N   longest answer in tokens (default 256)\n"
        "  --message TEXT       send TEXT as a user message (repeatable, up to %d);\n"
        "                       stdin is not read then\n"
        "  --json               print the transcript as JSON at the end (format\n"
        "                       \"strata-chat\", as /save writes) instead of the answers\n"
        "  --threads N          worker threads (default: STRATA_THREADS, else all CPUs)\n"
        "  --help               this text\n"
        "\n"
        "commands (at the prompt, or as a line of piped input):\n"
        "  /reset               forget the conversation (the system message stays)\n"
        "  /system TEXT         set the system message (/system alone clears it)\n"
        "  /save FILE           write the transcript as JSON (crash-safe)\n"
        "  /help                list the commands\n"
        "  /quit                leave (also /exit, Ctrl-D)\n"
        "  //text               send \"/text\" as a message\n"
        "\n"
        "Without a terminal on stdin each line is one message; each answer is\n"
        "printed on stdout followed by a newline, e.g.\n"
        "  printf 'Hello\\nTell me a story\\n' | strata chat --model stories260K.bin \\\n"
        "      --tokenizer tok512.bin --temperature 0\n",
        MAX_MESSAGES);
}

static volatile sig_atomic_t g_stop;

static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

typedef struct out_state {
    bool print;     /* stream the answer to stdout */
    bool wrote;     /* something was printed for this answer */
    bool ends_nl;   /* the last byte printed was a newline */
} out_state;

static int on_token(void *user, int32_t id, const char *text, size_t n, const st_token_logprob *c,
                    const st_token_logprob *top, int n_top) {
    (void)id;
    (void)c;
    (void)top;
    (void)n_top;
    out_state *o = user;
    if (o->print && n) {
        fwrite(text, 1, n, stdout);
        fflush(stdout);
        o->wrote = true;
        o->ends_nl = text[n - 1] == '\n';
    }
    return g_stop ? 1 : 0;
}

typedef struct chat_cli {
    st_chat *chat;
    bool tty, json;
    int failures;
} chat_cli;

static void help_commands(FILE *f) {
    fprintf(f,
            "/reset        forget the conversation\n"
            "/system TEXT  set the system message (/system alone clears it)\n"
            "/save FILE    write the transcript as JSON\n"
            "/quit         leave (also Ctrl-D)\n");
}

/* One user message: generate and print the answer. */
static void send_message(chat_cli *cc, const char *text) {
    out_state o = {.print = !cc->json};
    st_chat_turn_stats ts;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    g_stop = 0;
    sigaction(SIGINT, &sa, &old);
    st_status s = st_chat_send(cc->chat, text, on_token, &o, &ts);
    sigaction(SIGINT, &old, NULL);
    if (o.print && (o.wrote || s == ST_OK) && !(cc->tty && o.ends_nl)) {
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (s != ST_OK) {
        cli_fail(SUB, s);
        cc->failures++;
        return;
    }
    if (ts.dropped_messages > 0)
        fprintf(stderr,
                "strata chat: the context is full: the %d oldest message%s no longer in the "
                "prompt\n",
                ts.dropped_messages, ts.dropped_messages == 1 ? " is" : "s are");
    if (ts.gen.finish == ST_FINISH_CANCEL) fprintf(stderr, "strata chat: [answer stopped]\n");
    if (cc->tty)
        fprintf(stderr, "[%lld prompt tokens (%lld reused), %lld generated, %.1f tokens/s]\n",
                (long long)ts.prompt_tokens, (long long)ts.reused_tokens,
                (long long)ts.gen.n_generated,
                ts.gen.decode_s > 0 ? (double)ts.gen.n_generated / ts.gen.decode_s : 0.0);
}

/* A line typed or piped in; false when it asks to quit. */
static bool handle_line(chat_cli *cc, const char *line) {
    if (line[0] != '/' || line[1] == '/') {
        send_message(cc, line[0] == '/' ? line + 1 : line);
        return true;
    }
    const char *arg = strchr(line, ' ');
    size_t cmd_len = arg ? (size_t)(arg - line) : strlen(line);
    while (arg && *arg == ' ') arg++;
#define IS(c) (cmd_len == strlen(c) && strncmp(line, c, cmd_len) == 0)
    if (IS("/quit") || IS("/exit")) return false;
    if (IS("/help")) {
        help_commands(cc->tty ? stdout : stderr);
    } else if (IS("/reset")) {
        st_chat_reset(cc->chat);
        fprintf(stderr, "strata chat: conversation cleared\n");
    } else if (IS("/system")) {
        st_status s = st_chat_set_system(cc->chat, arg && *arg ? arg : NULL);
        if (s) cli_fail(SUB, s), cc->failures++;
        else fprintf(stderr, "strata chat: system message %s\n", arg && *arg ? "set" : "cleared");
    } else if (IS("/save")) {
        if (!arg || !*arg) {
            fprintf(stderr, "strata chat: /save needs a file name\n");
            cc->failures++;
        } else {
            st_status s = st_chat_save(cc->chat, arg);
            if (s) cli_fail(SUB, s), cc->failures++;
            else fprintf(stderr, "strata chat: saved the transcript to %s\n", arg);
        }
    } else {
        fprintf(stderr, "strata chat: unknown command %.*s (/help lists them)\n", (int)cmd_len,
                line);
        cc->failures++;
    }
#undef IS
    return true;
}

/* Reads one line of at most MAX_LINE_BYTES from stdin into buf (without the
 * newline). Returns false at end of input; *too_long for a longer line (its
 * rest is dropped). */
static bool read_piped_line(char *buf, size_t *n, bool *too_long) {
    size_t k = 0;
    int c;
    *too_long = false;
    while ((c = getchar()) != EOF && c != '\n') {
        if (k < MAX_LINE_BYTES) buf[k++] = (char)c;
        else *too_long = true;
    }
    if (c == EOF && k == 0 && !*too_long) return false;
    if (k > 0 && buf[k - 1] == '\r') k--;
    buf[k] = 0;
    *n = k;
    return true;
}

static void run_piped(chat_cli *cc) {
    char *buf = malloc(MAX_LINE_BYTES + 1);
    if (!buf) {
        fprintf(stderr, "strata chat: no memory\n");
        cc->failures++;
        return;
    }
    size_t n;
    bool too_long;
    while (read_piped_line(buf, &n, &too_long)) {
        if (too_long) {
            fprintf(stderr, "strata chat: a line over %zu bytes was skipped\n", MAX_LINE_BYTES);
            cc->failures++;
            continue;
        }
        if (memchr(buf, 0, n)) {
            fprintf(stderr, "strata chat: a line holding a NUL byte was skipped\n");
            cc->failures++;
            continue;
        }
        if (n == 0) continue;
        if (!handle_line(cc, buf)) break;
    }
    free(buf);
}

static void run_tty(chat_cli *cc, const char *model, st_chat_template t) {
    char *home = NULL, hist[4096] = "";
    if (st_registry_home(&home) == ST_OK) {
        snprintf(hist, sizeof hist, "%s/chat_history", home);
        st_free(home);
        using_history();
        read_history(hist);
    }
    fprintf(stderr, "strata chat: %s (template %s). /help lists the commands, Ctrl-D leaves.\n",
            model, st_chat_template_name(t));
    for (;;) {
        char *line = readline("> ");
        if (!line) {
            fputc('\n', stdout);
            break;
        }
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        bool go_on = true;
        if (*p) {
            add_history(line);
            go_on = handle_line(cc, p);
        }
        free(line);
        if (!go_on) break;
    }
    if (hist[0]) write_history(hist);
}

int cmd_chat(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL, *system = NULL;
    const char *messages[MAX_MESSAGES];
    int n_messages = 0;
    long max_tokens = 256, top_k = 0, seed = 0, threads = 0;
    double temperature = 0.8, top_p = 0.95;
    bool json = false;
    if (cli_wants_help(argc, argv)) {
        print_help();
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(k, "--json")) {
            json = true;
            continue;
        }
        if (!v) return cli_usage_error(SUB, "%s needs a value", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--tokenizer")) tok_path = v;
        else if (!strcmp(k, "--system")) system = v;
        else if (!strcmp(k, "--temperature")) ok = cli_parse_double(v, &temperature) && temperature >= 0;
        else if (!strcmp(k, "--top-p")) ok = cli_parse_double(v, &top_p) && top_p > 0 && top_p <= 1;
        else if (!strcmp(k, "--top-k")) ok = cli_parse_long(v, &top_k) && top_k >= 0 && top_k < (1L << 30);
        else if (!strcmp(k, "--seed")) ok = cli_parse_long(v, &seed) && seed >= 0;
        else if (!strcmp(k, "-n") || !strcmp(k, "--max-tokens")) ok = cli_parse_long(v, &max_tokens) && max_tokens >= 1;
        else if (!strcmp(k, "--threads")) ok = cli_parse_long(v, &threads) && threads >= 1;
        else if (!strcmp(k, "--message")) {
            if (n_messages == MAX_MESSAGES) return cli_usage_error(SUB, "at most %d --message", MAX_MESSAGES);
            messages[n_messages++] = v;
        } else return cli_usage_error(SUB, "unknown option '%s'", k);
        if (!ok) return cli_usage_error(SUB, "bad value '%s' for %s", v, k);
    }
    if (!model) return cli_usage_error(SUB, "--model REF is required");

    st_ctx *ctx = NULL;
    st_lm *lm = NULL;
    st_engine *eng = NULL;
    char *model_path = NULL, *tmpl = NULL;
    chat_cli cc = {.json = json};
    int rc = 1;
    st_status s;
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        s = (expr);                                                                                \
        if (s != ST_OK) goto fail;                                                                 \
    } while (0)
    TRY(cli_open_lm(threads, model, tok_path, true, &ctx, &lm, &model_path));
    tmpl = st_chat_template_read(model_path); /* NULL unless a directory with one */
    st_engine_params ep = st_engine_default_params();
    TRY(st_engine_new(ctx, lm, &ep, &eng));
    st_chat_params chp = st_chat_default_params();
    chp.system = system;
    chp.chat_template_text = tmpl;
    chp.model_name = model;
    chp.gen.max_tokens = max_tokens;
    chp.gen.sampler.temperature = (float)temperature;
    chp.gen.sampler.top_p = (float)top_p;
    chp.gen.sampler.top_k = (int)top_k;
    chp.gen.sampler.seed = seed ? (uint64_t)seed : (uint64_t)(st_time_s() * 1e9);
    TRY(st_chat_new(eng, lm->tok, &chp, &cc.chat));

    cc.tty = n_messages == 0 && !json && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    if (n_messages > 0) {
        for (int i = 0; i < n_messages; i++)
            if (!handle_line(&cc, messages[i])) break;
    } else if (cc.tty) {
        run_tty(&cc, model, st_chat_get_template(cc.chat));
    } else {
        run_piped(&cc);
    }
    if (json) {
        char *js = NULL;
        TRY(st_chat_to_json(cc.chat, &js));
        printf("%s\n", js);
        st_free(js);
    }
    /* piped input: a failed message or command fails the run (after the rest ran) */
    rc = cc.failures > 0 && !cc.tty ? 1 : 0;
    goto done;
fail:
    rc = cli_fail(SUB, s);
done:
    st_chat_free(cc.chat);
    st_engine_free(eng);
    st_lm_free(lm);
    st_ctx_free(ctx);
    st_free(model_path);
    st_free(tmpl);
    return rc;
#undef TRY
}
