/*
 * hub.c — `strata hub`: the model registry from the command line
 * (strata/registry.h; docs/L6-hub.md). One verb per function below; each
 * prints for people by default and JSON with --json. The registry lives
 * under STRATA_HOME (default $XDG_DATA_HOME/strata, else
 * ~/.local/share/strata). `hub serve` runs until SIGINT/SIGTERM.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "strata/registry.h"

int cmd_hub(int argc, char **argv); /* (declared in cli.h once registered in main.c) */

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata hub <verb> [options]\n\n"
            "A content-addressed model registry under STRATA_HOME/hub: files stored once by\n"
            "SHA-256, immutable revisions, movable tags, model cards; an HTTP hub to share it.\n\n"
            "verbs:\n"
            "  push DIR|FILE --name NAME [--tag T] [-m MSG] [--author A] [--to URL --api-key K]\n"
            "                 record DIR (or one FILE) as a new revision of NAME; moves tag\n"
            "                 'latest' (and T). With --to, also upload that revision to a hub.\n"
            "  list           models, their revisions and tags\n"
            "  path REF       materialize REF (verified) and print its directory: what\n"
            "                 --model REF resolves to in every command\n"
            "  show REF       a revision: files, tags, and the model card (README.md)\n"
            "  log NAME[:T|@R] [-n N]   history, newest first, following parents (default 20)\n"
            "  diff REF_A REF_B  files added/removed/changed; config.json key differences\n"
            "  tag NAME[:T|@R] TAG   point TAG at a revision (default NAME = latest)\n"
            "  rm NAME[:T|@R]  NAME:T removes a tag; NAME@R a revision (and its tags);\n"
            "                 NAME the whole model. Blobs are freed by gc.\n"
            "  verify         rehash every blob; check every manifest and tag (exit 1 on a problem)\n"
            "  gc             remove unreferenced blobs, stale temporaries, dead snapshots\n"
            "  serve [--host H] [--port P] [--api-key K] [--quiet]\n"
            "                 serve the registry over HTTP (default 127.0.0.1:8090; port 0 picks\n"
            "                 a free one; prints 'listening on URL'); uploads need the API key\n"
            "                 (also $STRATA_HUB_API_KEY); without one uploads are refused\n"
            "  pull URL NAME[:T|@R] [--limit-rate BYTES_PER_S]\n"
            "                 download a revision from a hub (resumes, verifies every hash)\n\n"
            "REF is NAME (= NAME:latest), NAME:TAG or NAME@REV (a unique prefix of >= 7 hex\n"
            "digits). Every verb that prints takes --json. Exit codes: 0 ok, 1 failure, 2 usage.\n");
}

typedef struct opts {
    const char *pos[4];
    int n_pos;
    const char *name, *tag, *msg, *author, *to, *api_key, *host;
    long port, n, limit_rate;
    bool json, quiet;
} opts;

static int parse(int argc, char **argv, opts *o, const char *verb) {
    memset(o, 0, sizeof *o);
    o->port = 8090;
    o->n = 20;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **sv = NULL;
        long *lv = NULL;
        if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "--quiet")) o->quiet = true;
        else if (!strcmp(a, "--name")) sv = &o->name;
        else if (!strcmp(a, "--tag") || !strcmp(a, "-t")) sv = &o->tag;
        else if (!strcmp(a, "-m") || !strcmp(a, "--message")) sv = &o->msg;
        else if (!strcmp(a, "--author")) sv = &o->author;
        else if (!strcmp(a, "--to")) sv = &o->to;
        else if (!strcmp(a, "--api-key")) sv = &o->api_key;
        else if (!strcmp(a, "--host")) sv = &o->host;
        else if (!strcmp(a, "--port")) lv = &o->port;
        else if (!strcmp(a, "-n")) lv = &o->n;
        else if (!strcmp(a, "--limit-rate")) lv = &o->limit_rate;
        else if (a[0] == '-' && a[1]) return cli_usage_error("hub", "%s: unknown option %s", verb, a);
        else if (o->n_pos < 4) o->pos[o->n_pos++] = a;
        else return cli_usage_error("hub", "%s: too many arguments", verb);
        if (sv || lv) {
            if (i + 1 >= argc) return cli_usage_error("hub", "%s: %s needs a value", verb, a);
            if (sv) *sv = argv[++i];
            else if (!cli_parse_long(argv[++i], lv) || *lv < 0)
                return cli_usage_error("hub", "%s: %s needs a non-negative integer", verb, a);
        }
    }
    return 0;
}

static void print_json(json_t *o) {
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s) puts(s);
    free(s);
    json_decref(o);
}

static json_t *manifest_json(const st_registry_manifest *m) {
    json_t *files = json_array();
    for (int i = 0; i < m->n_files; i++)
        json_array_append_new(files, json_pack("{s:s, s:s, s:I}", "path", m->files[i].path, "sha256",
                                               m->files[i].sha256, "size", (json_int_t)m->files[i].size));
    return json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:o, s:I}", "revision", m->revision, "name", m->name,
                     "parent", m->parent[0] ? json_string(m->parent) : json_null(), "author", m->author, "message",
                     m->message, "time", m->time, "kind", m->single_file ? "file" : "directory", "files", files,
                     "total_bytes", (json_int_t)m->total_bytes);
}

static void human_bytes(uint64_t b, char *buf, size_t n) {
    if (b >= (1ull << 30)) snprintf(buf, n, "%.2f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20)) snprintf(buf, n, "%.2f MiB", (double)b / (double)(1ull << 20));
    else if (b >= 1024) snprintf(buf, n, "%.1f KiB", (double)b / 1024.0);
    else snprintf(buf, n, "%llu B", (unsigned long long)b);
}

/* ---- progress (bytes) on a terminal ---- */

typedef struct bar {
    bool tty;
    double t0, last;
} bar;

static void bar_cb(void *user, uint64_t done, uint64_t total) {
    bar *b = user;
    if (!b->tty) return;
    double now = st_time_s();
    if (done < total && now - b->last < 0.1) return;
    b->last = now;
    double el = now - b->t0, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : -1;
    int width = 24, fill = total ? (int)((double)width * (double)done / (double)total) : width;
    char bb[32];
    for (int i = 0; i < width; i++) bb[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bb[width] = '\0';
    char d[32], t[32];
    human_bytes(done, d, sizeof d);
    human_bytes(total, t, sizeof t);
    fprintf(stderr, "\r\033[K%s / %s [%s] %.1f MB/s ETA %.0fs", d, t, bb, rate / 1e6, eta < 0 ? 0 : eta);
    fflush(stderr);
}

static void bar_clear(bar *b) {
    if (b->tty) fprintf(stderr, "\r\033[K");
}

/* ---- verbs ---- */

static int do_push(st_registry *r, opts *o) {
    if (o->n_pos != 1 || !o->name) return cli_usage_error("hub", "push: usage: push DIR|FILE --name NAME [--tag T] [-m MSG]");
    if (o->to && !o->api_key && !getenv("STRATA_HUB_API_KEY"))
        return cli_usage_error("hub", "push --to needs --api-key (or STRATA_HUB_API_KEY)");
    st_registry_push_params p = st_registry_push_default_params();
    p.tag = o->tag;
    p.message = o->msg;
    p.author = o->author;
    char rev[65];
    st_status s = st_registry_push(r, o->pos[0], o->name, &p, rev);
    if (s) return cli_fail("hub push", s);
    if (o->to) {
        st_hub_client_params cp = st_hub_client_default_params();
        cp.api_key = o->api_key ? o->api_key : getenv("STRATA_HUB_API_KEY");
        bar b = {isatty(2) != 0, st_time_s(), 0};
        cp.progress = bar_cb;
        cp.progress_user = &b;
        char ref[300];
        snprintf(ref, sizeof ref, "%s@%s", o->name, rev);
        s = st_hub_push_remote(r, ref, o->to, o->tag, &cp);
        bar_clear(&b);
        if (s) return cli_fail("hub push", s);
    }
    if (o->json) print_json(json_pack("{s:s, s:s, s:s*, s:s*}", "name", o->name, "revision", rev, "tag", o->tag, "to", o->to));
    else printf("%s@%s%s%s%s%s\n", o->name, rev, o->tag ? " tagged " : "", o->tag ? o->tag : "", o->to ? " uploaded to " : "",
                o->to ? o->to : "");
    return 0;
}

static int do_list(st_registry *r, opts *o) {
    st_registry_model_info *mi;
    int n;
    st_status s = st_registry_list(r, &mi, &n);
    if (s) return cli_fail("hub list", s);
    if (o->json) {
        json_t *a = json_array();
        for (int i = 0; i < n; i++) {
            json_t *tags = json_object();
            for (int j = 0; j < mi[i].n_tags; j++) json_object_set_new(tags, mi[i].tags[j].name, json_string(mi[i].tags[j].revision));
            json_array_append_new(a, json_pack("{s:s, s:i, s:o, s:s}", "name", mi[i].name, "revisions", mi[i].n_revisions,
                                               "tags", tags, "latest", mi[i].latest));
        }
        print_json(a);
    } else {
        if (n == 0) printf("no models in %s\n", st_registry_root(r));
        for (int i = 0; i < n; i++) {
            printf("%-32s %3d revision%s  latest %.12s  tags:", mi[i].name, mi[i].n_revisions, mi[i].n_revisions == 1 ? " " : "s",
                   mi[i].latest[0] ? mi[i].latest : "-");
            for (int j = 0; j < mi[i].n_tags; j++) printf(" %s", mi[i].tags[j].name);
            printf("\n");
        }
    }
    st_registry_models_free(mi, n);
    return 0;
}

/* Reads a blob of a manifest file into memory (NULL if absent or too big). */
static char *read_blob(st_registry *r, const st_registry_manifest *m, const char *path, size_t max, size_t *n) {
    for (int i = 0; i < m->n_files; i++) {
        if (strcmp(m->files[i].path, path) || m->files[i].size > max) continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/blobs/sha256/%.2s/%s", st_registry_root(r), m->files[i].sha256, m->files[i].sha256);
        FILE *f = fopen(p, "rb");
        if (!f) return NULL;
        char *b = malloc(m->files[i].size + 1);
        size_t got = b ? fread(b, 1, m->files[i].size, f) : 0;
        fclose(f);
        if (!b || got != m->files[i].size) {
            free(b);
            return NULL;
        }
        b[got] = '\0';
        *n = got;
        return b;
    }
    return NULL;
}

static int do_show(st_registry *r, opts *o) {
    if (o->n_pos != 1) return cli_usage_error("hub", "show: usage: show NAME[:TAG|@REV]");
    st_registry_manifest *m;
    st_status s = st_registry_get(r, o->pos[0], &m);
    if (s) return cli_fail("hub show", s);
    st_registry_model_info *mi = NULL;
    st_registry_model(r, m->name, &mi);
    size_t cn = 0;
    char *card_text = read_blob(r, m, "README.md", 1u << 20, &cn);
    st_registry_card card;
    memset(&card, 0, sizeof card);
    bool have_card = card_text && st_registry_card_parse(card_text, cn, "README.md", &card) == ST_OK;
    if (o->json) {
        json_t *j = manifest_json(m), *tags = json_array();
        for (int i = 0; mi && i < mi->n_tags; i++)
            if (!strcmp(mi->tags[i].revision, m->revision)) json_array_append_new(tags, json_string(mi->tags[i].name));
        json_object_set_new(j, "tags", tags);
        if (have_card) {
            json_t *ds = json_array(), *tg = json_array(), *mt = json_object();
            for (int i = 0; i < card.n_datasets; i++) json_array_append_new(ds, json_string(card.datasets[i]));
            for (int i = 0; i < card.n_tags; i++) json_array_append_new(tg, json_string(card.tags[i]));
            for (int i = 0; i < card.n_metrics; i++) json_object_set_new(mt, card.metric_names[i], json_string(card.metric_values[i]));
            json_object_set_new(j, "card", json_pack("{s:s*, s:s*, s:o, s:o, s:o}", "license", card.license, "base_model",
                                                     card.base_model, "datasets", ds, "tags", tg, "metrics", mt));
        }
        print_json(j);
    } else {
        char tb[32];
        human_bytes(m->total_bytes, tb, sizeof tb);
        printf("%s@%s\n", m->name, m->revision);
        printf("  tags:    ");
        for (int i = 0; mi && i < mi->n_tags; i++)
            if (!strcmp(mi->tags[i].revision, m->revision)) printf("%s ", mi->tags[i].name);
        printf("\n  parent:  %s\n  author:  %s\n  time:    %s\n  message: %s\n  files:   %d (%s)\n",
               m->parent[0] ? m->parent : "(none)", m->author, m->time, m->message, m->n_files, tb);
        for (int i = 0; i < m->n_files; i++) {
            human_bytes(m->files[i].size, tb, sizeof tb);
            printf("    %-40s %10s  %.16s\n", m->files[i].path, tb, m->files[i].sha256);
        }
        if (have_card) {
            printf("\nmodel card\n");
            printf("  license:    %s\n  base model: %s\n", card.license ? card.license : "-", card.base_model ? card.base_model : "-");
            printf("  datasets:  ");
            for (int i = 0; i < card.n_datasets; i++) printf(" %s", card.datasets[i]);
            printf("\n  tags:      ");
            for (int i = 0; i < card.n_tags; i++) printf(" %s", card.tags[i]);
            printf("\n");
            if (card.n_metrics) printf("  metrics:\n");
            for (int i = 0; i < card.n_metrics; i++) printf("    %-20s %s\n", card.metric_names[i], card.metric_values[i]);
            if (card.body && *card.body) printf("\n%s%s", card.body, card.body[strlen(card.body) - 1] == '\n' ? "" : "\n");
        } else if (card_text) {
            printf("\n(README.md has a malformed front matter: %s)\n", st_last_error());
        }
    }
    st_registry_card_free(&card);
    free(card_text);
    st_registry_models_free(mi, mi ? 1 : 0);
    st_registry_manifest_free(m);
    return 0;
}

static int do_log(st_registry *r, opts *o) {
    if (o->n_pos != 1) return cli_usage_error("hub", "log: usage: log NAME[:TAG|@REV] [-n N]");
    st_registry_manifest **v;
    int n;
    st_status s = st_registry_log(r, o->pos[0], o->n > 0 ? (int)o->n : 20, &v, &n);
    if (s) return cli_fail("hub log", s);
    if (o->json) {
        json_t *a = json_array();
        for (int i = 0; i < n; i++) {
            json_t *j = manifest_json(v[i]);
            json_object_del(j, "files");
            json_object_set_new(j, "n_files", json_integer(v[i]->n_files));
            json_array_append_new(a, j);
        }
        print_json(a);
    } else {
        for (int i = 0; i < n; i++) {
            char tb[32];
            human_bytes(v[i]->total_bytes, tb, sizeof tb);
            printf("revision %s\n  %s  %s  %d files, %s\n  %s\n\n", v[i]->revision, v[i]->time, v[i]->author, v[i]->n_files,
                   tb, *v[i]->message ? v[i]->message : "(no message)");
        }
    }
    st_registry_manifests_free(v, n);
    return 0;
}

static const st_registry_file *find_file(const st_registry_manifest *m, const char *path) {
    for (int i = 0; i < m->n_files; i++)
        if (!strcmp(m->files[i].path, path)) return &m->files[i];
    return NULL;
}

static int do_diff(st_registry *r, opts *o) {
    if (o->n_pos != 2) return cli_usage_error("hub", "diff: usage: diff NAME@A NAME@B");
    st_registry_manifest *a = NULL, *b = NULL;
    st_status s = st_registry_get(r, o->pos[0], &a);
    if (s == ST_OK) s = st_registry_get(r, o->pos[1], &b);
    if (s) {
        st_registry_manifest_free(a);
        return cli_fail("hub diff", s);
    }
    json_t *added = json_array(), *removed = json_array(), *changed = json_array();
    for (int i = 0; i < b->n_files; i++)
        if (!find_file(a, b->files[i].path)) json_array_append_new(added, json_string(b->files[i].path));
    for (int i = 0; i < a->n_files; i++) {
        const st_registry_file *f = find_file(b, a->files[i].path);
        if (!f) json_array_append_new(removed, json_string(a->files[i].path));
        else if (strcmp(f->sha256, a->files[i].sha256))
            json_array_append_new(changed, json_pack("{s:s, s:I, s:I}", "path", f->path, "size_a",
                                                     (json_int_t)a->files[i].size, "size_b", (json_int_t)f->size));
    }
    /* config.json: top-level key differences */
    json_t *cfg = json_object();
    size_t na = 0, nb = 0;
    char *ta = read_blob(r, a, "config.json", 1u << 20, &na), *tb = read_blob(r, b, "config.json", 1u << 20, &nb);
    json_t *ja = ta ? json_loadb(ta, na, 0, NULL) : NULL, *jb = tb ? json_loadb(tb, nb, 0, NULL) : NULL;
    if (json_is_object(ja) && json_is_object(jb)) {
        const char *k;
        json_t *v;
        json_object_foreach(jb, k, v) {
            json_t *va = json_object_get(ja, k);
            if (!va) json_object_set_new(cfg, k, json_pack("{s:n, s:O}", "a", "b", v));
            else if (!json_equal(va, v)) json_object_set_new(cfg, k, json_pack("{s:O, s:O}", "a", va, "b", v));
        }
        json_object_foreach(ja, k, v) {
            if (!json_object_get(jb, k)) json_object_set_new(cfg, k, json_pack("{s:O, s:n}", "a", v, "b"));
        }
    }
    if (o->json) {
        print_json(json_pack("{s:s, s:s, s:O, s:O, s:O, s:O}", "a", a->revision, "b", b->revision, "added", added, "removed",
                             removed, "changed", changed, "config", cfg));
    } else {
        printf("a: %s@%s\nb: %s@%s\n", a->name, a->revision, b->name, b->revision);
        size_t i;
        json_t *v;
        json_array_foreach(added, i, v) printf("  + %s\n", json_string_value(v));
        json_array_foreach(removed, i, v) printf("  - %s\n", json_string_value(v));
        json_array_foreach(changed, i, v)
            printf("  ~ %s (%lld -> %lld bytes)\n", json_string_value(json_object_get(v, "path")),
                   (long long)json_integer_value(json_object_get(v, "size_a")),
                   (long long)json_integer_value(json_object_get(v, "size_b")));
        const char *k;
        json_object_foreach(cfg, k, v) {
            char *sa = json_dumps(json_object_get(v, "a"), JSON_ENCODE_ANY | JSON_COMPACT);
            char *sb = json_dumps(json_object_get(v, "b"), JSON_ENCODE_ANY | JSON_COMPACT);
            printf("  config.json %s: %s -> %s\n", k, sa ? sa : "?", sb ? sb : "?");
            free(sa);
            free(sb);
        }
        if (!json_array_size(added) && !json_array_size(removed) && !json_array_size(changed)) printf("  (same files)\n");
    }
    json_decref(added);
    json_decref(removed);
    json_decref(changed);
    json_decref(cfg);
    json_decref(ja);
    json_decref(jb);
    free(ta);
    free(tb);
    st_registry_manifest_free(a);
    st_registry_manifest_free(b);
    return 0;
}

static int do_verify(st_registry *r, opts *o) {
    st_registry_problem *p;
    int np;
    int64_t nb = 0, nby = 0;
    st_status s = st_registry_verify(r, &p, &np, &nb, &nby);
    if (s) return cli_fail("hub verify", s);
    if (o->json) {
        json_t *a = json_array();
        for (int i = 0; i < np; i++) json_array_append_new(a, json_pack("{s:s, s:s}", "what", p[i].what, "detail", p[i].detail));
        print_json(json_pack("{s:b, s:I, s:I, s:o}", "ok", np == 0, "blobs", (json_int_t)nb, "bytes", (json_int_t)nby, "problems", a));
    } else {
        char tb[32];
        human_bytes((uint64_t)nby, tb, sizeof tb);
        for (int i = 0; i < np; i++) printf("%s: %s\n", p[i].what, p[i].detail);
        printf("%s: %lld blobs (%s) rehashed, %d problem%s\n", np ? "FAILED" : "ok", (long long)nb, tb, np, np == 1 ? "" : "s");
    }
    st_free(p);
    return np ? 1 : 0;
}

static int do_gc(st_registry *r, opts *o) {
    st_registry_gc_stats g;
    st_status s = st_registry_gc(r, &g);
    if (s) return cli_fail("hub gc", s);
    if (o->json) {
        print_json(json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "blobs_removed", (json_int_t)g.blobs_removed, "bytes_removed",
                             (json_int_t)g.bytes_removed, "blobs_kept", (json_int_t)g.blobs_kept, "bytes_kept",
                             (json_int_t)g.bytes_kept, "tmp_removed", (json_int_t)g.tmp_removed, "snapshots_removed",
                             (json_int_t)g.snapshots_removed));
    } else {
        char a[32], b[32];
        human_bytes((uint64_t)g.bytes_removed, a, sizeof a);
        human_bytes((uint64_t)g.bytes_kept, b, sizeof b);
        printf("removed %lld blobs (%s), %lld temporaries, %lld snapshots; kept %lld blobs (%s)\n", (long long)g.blobs_removed, a,
               (long long)g.tmp_removed, (long long)g.snapshots_removed, (long long)g.blobs_kept, b);
    }
    return 0;
}

static int do_serve(opts *o) {
    st_hub_server_params p = st_hub_server_default_params();
    if (o->host) p.host = o->host;
    if (o->port > 65535) return cli_usage_error("hub", "serve: --port must be 0..65535");
    p.port = (int)o->port;
    p.api_key = o->api_key ? o->api_key : getenv("STRATA_HUB_API_KEY");
    p.log_requests = !o->quiet;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before MHD's threads start: they inherit it */
    st_hub_server *s;
    st_status st = st_hub_server_start(&p, &s);
    if (st) return cli_fail("hub serve", st);
    printf("listening on http://%s:%d\n", p.host, st_hub_server_port(s));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    st_hub_server_stop(s);
    return 0;
}

static int do_pull(st_registry *r, opts *o) {
    if (o->n_pos != 2) return cli_usage_error("hub", "pull: usage: pull URL NAME[:TAG|@REV]");
    st_hub_client_params p = st_hub_client_default_params();
    bar b = {isatty(2) != 0 && !o->quiet, st_time_s(), 0};
    p.progress = bar_cb;
    p.progress_user = &b;
    p.max_recv_bytes_per_s = (uint64_t)o->limit_rate;
    int64_t fetched = 0;
    p.blobs_fetched = &fetched;
    char rev[65];
    double t0 = st_time_s();
    st_status s = st_hub_pull(r, o->pos[0], o->pos[1], &p, rev);
    bar_clear(&b);
    if (s) return cli_fail("hub pull", s);
    double el = st_time_s() - t0;
    if (o->json) print_json(json_pack("{s:s, s:s, s:I, s:f}", "ref", o->pos[1], "revision", rev, "blobs_fetched", (json_int_t)fetched, "seconds", el));
    else printf("pulled %s (revision %s): %lld blob%s fetched in %.2f s\n", o->pos[1], rev, (long long)fetched, fetched == 1 ? "" : "s", el);
    return 0;
}

int cmd_hub(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1];
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    opts o;
    int rc = parse(argc, argv, &o, verb);
    if (rc) return rc;
    if (!strcmp(verb, "serve")) return do_serve(&o);
    static const char *const k_verbs[] = {"path", "push", "list", "show", "log", "diff", "tag", "rm", "verify", "gc", "pull"};
    bool known = false;
    for (size_t i = 0; i < sizeof k_verbs / sizeof *k_verbs; i++) known |= !strcmp(verb, k_verbs[i]);
    if (!known) return cli_usage_error("hub", "unknown verb '%s'", verb);
    st_registry *r;
    st_status s = st_registry_open(NULL, &r);
    if (s) return cli_fail("hub", s);
    if (!strcmp(verb, "push")) rc = do_push(r, &o);
    else if (!strcmp(verb, "list")) rc = do_list(r, &o);
    else if (!strcmp(verb, "show")) rc = do_show(r, &o);
    else if (!strcmp(verb, "log")) rc = do_log(r, &o);
    else if (!strcmp(verb, "diff")) rc = do_diff(r, &o);
    else if (!strcmp(verb, "verify")) rc = do_verify(r, &o);
    else if (!strcmp(verb, "gc")) rc = do_gc(r, &o);
    else if (!strcmp(verb, "pull")) rc = do_pull(r, &o);
    else if (!strcmp(verb, "path")) {
        char *path = NULL;
        if (o.n_pos != 1) rc = cli_usage_error("hub", "path: usage: path NAME[:TAG|@REV]");
        else if ((s = st_registry_materialize(r, o.pos[0], &path))) rc = cli_fail("hub path", s);
        else if (o.json) print_json(json_pack("{s:s, s:s}", "ref", o.pos[0], "path", path));
        else printf("%s\n", path);
        st_free(path);
    } else if (!strcmp(verb, "tag")) {
        if (o.n_pos != 2) rc = cli_usage_error("hub", "tag: usage: tag NAME[:TAG|@REV] TAG");
        else if ((s = st_registry_tag(r, o.pos[0], o.pos[1]))) rc = cli_fail("hub tag", s);
        else if (o.json) print_json(json_pack("{s:s, s:s}", "ref", o.pos[0], "tag", o.pos[1]));
        else printf("tagged %s as %s\n", o.pos[0], o.pos[1]);
    } else if (!strcmp(verb, "rm")) {
        if (o.n_pos != 1) rc = cli_usage_error("hub", "rm: usage: rm NAME[:TAG|@REV]");
        else if ((s = st_registry_rm(r, o.pos[0]))) rc = cli_fail("hub rm", s);
        else if (o.json) print_json(json_pack("{s:s}", "removed", o.pos[0]));
        else printf("removed %s (run `strata hub gc` to free unreferenced blobs)\n", o.pos[0]);
    }
    st_registry_close(r);
    return rc;
}
