/*
 * ui.c — `strata ui`: serves the tracking dashboard (src/track/ui.c) until
 * SIGINT or SIGTERM. The main thread only waits; the server's own thread
 * uses the store.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "strata/track.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata ui [--host H] [--port P] [--tracking URI]\n\n"
            "Serve the experiment-tracking dashboard over HTTP: a run table with sorting and\n"
            "filtering, a page per run with its metric curves (SVG), a compare page overlaying\n"
            "several runs' curves, and a JSON API (/api/runs, /api/runs/ID,\n"
            "/api/runs/ID/metrics?key=K). Runs until interrupted (Ctrl-C).\n\n"
            "options:\n"
            "  --host H        IPv4 address to listen on (default 127.0.0.1; 0.0.0.0 for all)\n"
            "  --port P        TCP port (default 5000; 0 picks a free one)\n"
            "  --tracking URI  the store: sqlite:///path.db, a path, or postgresql://...\n"
            "                  (default: $STRATA_TRACKING_URI, else sqlite at\n"
            "                  $STRATA_HOME/tracking.db)\n\n"
            "The first line on stdout is the URL, e.g. \"strata ui: http://127.0.0.1:5000/\".\n");
}

int cmd_ui(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    st_track_ui_params up = st_track_ui_default_params();
    up.port = 5000;
    const char *uri = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--host") || !strcmp(a, "--port") || !strcmp(a, "--tracking")) {
            if (i + 1 >= argc) return cli_usage_error("ui", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--host")) up.host = v;
            else if (!strcmp(a, "--tracking")) uri = v;
            else {
                long p;
                if (!cli_parse_long(v, &p) || p < 0 || p > 65535)
                    return cli_usage_error("ui", "--port wants 0..65535, not '%s'", v);
                up.port = (int)p;
            }
        } else {
            return cli_usage_error("ui", "unknown argument '%s'", a);
        }
    }
    st_track_params tp = st_track_default_params();
    tp.uri = uri;
    st_track *t;
    st_status s = st_track_open(&tp, &t);
    if (s) return cli_fail("ui", s);
    st_track_ui *ui;
    s = st_track_ui_start(t, &up, &ui);
    if (s) {
        st_track_close(t);
        return cli_fail("ui", s);
    }
    st_track_catch_signals();
    printf("strata ui: http://%s:%d/\n", up.host, st_track_ui_port(ui));
    fflush(stdout);
    fprintf(stderr, "strata ui: serving %s (Ctrl-C stops)\n", st_track_uri(t));
    struct timespec ts = {0, 100 * 1000 * 1000};
    while (!st_track_signal_caught()) nanosleep(&ts, NULL);
    st_track_ui_stop(ui);
    st_track_close(t);
    return 0;
}
