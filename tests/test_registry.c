/*
 * test_registry.c — the content-addressed model registry
 * (src/hub/registry*.c, strata/registry.h).
 *
 * References: SHA-256 of "abc" from FIPS 180-2; every blob and revision id
 * recomputed here with OpenSSL directly, independently of the code under
 * test; materialized files compared byte for byte with the pushed ones.
 * Cases: push / revisions / parents / tags / prefixes / rm; a single-file
 * push; verify finding a flipped byte and load (resolve) refusing it; gc of
 * unreferenced blobs, stale temporaries and dead snapshots; two pushers in
 * forked processes both recorded; kill -9 of a pusher paused (by the
 * STRATA_REGISTRY_TEST_PAUSE hook) after copying and in the middle of the
 * commit, leaving a registry that verifies and whose tags are unchanged;
 * malformed manifests (path traversal, absolute paths, huge sizes, bad
 * hashes, duplicates, wrong version) and references refused; model-card
 * front matter; the HTTP server and client in one process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "strata/registry.h"

static char g_dir[256], g_home[300];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/strata_test_reg_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_home, sizeof g_home, "%s/home", g_dir);
    setenv("STRATA_HOME", g_home, 1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", g_dir, g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const void *data, size_t n) {
    char d[600];
    snprintf(d, sizeof d, "%s", path);
    for (char *p = d + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(d, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    b[sz] = '\0';
    *n = (size_t)sz;
    return b;
}

static void ref_sha(const void *p, size_t n, char hex[65]) {
    unsigned char d[32];
    unsigned int len;
    EVP_Digest(p, n, d, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* A model directory with three files; `variant` changes the config and adds
 * a file. Random-ish weights of 300 KB. */
static void make_model(const char *dir, int variant) {
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char cfg[200];
    snprintf(cfg, sizeof cfg, "{\"model_type\":\"gpt2\",\"n_layer\":%d,\"n_embd\":16}", 2 + variant);
    write_file(p, cfg, strlen(cfg));
    size_t n = 300000;
    unsigned char *w = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) x = x * 1664525u + 1013904223u, w[i] = (unsigned char)(x >> 24);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_file(p, w, n);
    free(w);
    snprintf(p, sizeof p, "%s/sub/notes.txt", dir);
    write_file(p, "notes\n", 6);
    if (variant) {
        snprintf(p, sizeof p, "%s/extra-%d.txt", dir, variant);
        write_file(p, dir, strlen(dir));
    }
}

static st_registry *open_reg(void) {
    st_registry *r = NULL;
    assert_int_equal(st_registry_open(g_home, &r), ST_OK);
    return r;
}

static void test_hash_reference(void **state) {
    (void)state;
    char p[400], hex[65];
    uint64_t sz;
    snprintf(p, sizeof p, "%s/abc", g_dir);
    write_file(p, "abc", 3);
    assert_int_equal(st_registry_hash_file(p, hex, &sz), ST_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(sz, 3);
}

static void test_push_revisions_tags(void **state) {
    (void)state;
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/ma", g_dir);
    snprintf(b, sizeof b, "%s/mb", g_dir);
    make_model(a, 0);
    make_model(b, 1);
    st_registry *r = open_reg();
    char r1[65], r2[65];
    st_registry_push_params pp = st_registry_push_default_params();
    pp.message = "first";
    pp.tag = "v1";
    assert_int_equal(st_registry_push(r, a, "tiny", &pp, r1), ST_OK);
    pp.message = "second";
    pp.tag = NULL;
    assert_int_equal(st_registry_push(r, b, "tiny", &pp, r2), ST_OK);
    assert_string_not_equal(r1, r2);

    /* the manifest: files sorted, hashes and sizes equal to OpenSSL's */
    st_registry_manifest *m;
    assert_int_equal(st_registry_get(r, "tiny", &m), ST_OK);
    assert_string_equal(m->revision, r2);
    assert_string_equal(m->parent, r1);
    assert_string_equal(m->message, "second");
    assert_int_equal(m->n_files, 4);
    assert_string_equal(m->files[0].path, "config.json");
    assert_string_equal(m->files[1].path, "extra-1.txt");
    assert_string_equal(m->files[2].path, "model.safetensors");
    assert_string_equal(m->files[3].path, "sub/notes.txt");
    for (int i = 0; i < m->n_files; i++) {
        char p[600], hex[65];
        snprintf(p, sizeof p, "%s/%s", b, m->files[i].path);
        size_t n;
        char *d = read_all(p, &n);
        ref_sha(d, n, hex);
        assert_string_equal(hex, m->files[i].sha256);
        assert_int_equal(m->files[i].size, n);
        free(d);
    }
    /* the revision id is the SHA-256 of the stored manifest file */
    char mp[700], hex[65];
    snprintf(mp, sizeof mp, "%s/hub/models/tiny/revisions/%s.json", g_home, r2);
    size_t mn;
    char *mj = read_all(mp, &mn);
    ref_sha(mj, mn, hex);
    assert_string_equal(hex, r2);
    free(mj);
    st_registry_manifest_free(m);

    /* tags, prefixes, log */
    assert_int_equal(st_registry_get(r, "tiny:v1", &m), ST_OK);
    assert_string_equal(m->revision, r1);
    assert_string_equal(m->parent, "");
    st_registry_manifest_free(m);
    char ref[100];
    snprintf(ref, sizeof ref, "tiny@%.8s", r1);
    assert_int_equal(st_registry_get(r, ref, &m), ST_OK);
    assert_string_equal(m->revision, r1);
    st_registry_manifest_free(m);
    assert_int_equal(st_registry_get(r, "tiny:nope", &m), ST_ERR_IO);
    assert_int_equal(st_registry_get(r, "nomodel", &m), ST_ERR_IO);
    st_registry_manifest **log;
    int n;
    assert_int_equal(st_registry_log(r, "tiny", 10, &log, &n), ST_OK);
    assert_int_equal(n, 2);
    assert_string_equal(log[0]->revision, r2);
    assert_string_equal(log[1]->revision, r1);
    st_registry_manifests_free(log, n);
    assert_int_equal(st_registry_tag(r, ref, "prod"), ST_OK);
    st_registry_model_info *mi;
    assert_int_equal(st_registry_model(r, "tiny", &mi), ST_OK);
    assert_int_equal(mi->n_revisions, 2);
    assert_int_equal(mi->n_tags, 3); /* latest, prod, v1 */
    assert_string_equal(mi->tags[1].name, "prod");
    assert_string_equal(mi->tags[1].revision, r1);
    assert_string_equal(mi->latest, r2);
    st_registry_models_free(mi, 1);
    assert_int_equal(st_registry_rm(r, "tiny:prod"), ST_OK);
    assert_int_equal(st_registry_get(r, "tiny:prod", &m), ST_ERR_IO);
    assert_int_equal(st_registry_tag(r, "tiny", "../x"), ST_ERR_INVALID_ARG);

    /* the same files pushed again are stored once */
    st_registry_problem *pr;
    int np;
    int64_t nb0, nb1;
    assert_int_equal(st_registry_verify(r, &pr, &np, &nb0, NULL), ST_OK);
    assert_int_equal(np, 0);
    assert_int_equal(st_registry_push(r, a, "tiny2", NULL, NULL), ST_OK);
    assert_int_equal(st_registry_verify(r, &pr, &np, &nb1, NULL), ST_OK);
    assert_int_equal(np, 0);
    assert_int_equal(nb1, nb0);
    assert_int_equal(st_registry_push(r, a, "../evil", NULL, NULL), ST_ERR_INVALID_ARG);
    st_registry_close(r);
}

static void test_resolve_and_corruption(void **state) {
    (void)state;
    char a[400];
    snprintf(a, sizeof a, "%s/mc", g_dir);
    make_model(a, 0);
    st_registry *r = open_reg();
    char rev[65];
    assert_int_equal(st_registry_push(r, a, "res", NULL, rev), ST_OK);
    char *path = NULL;
    assert_int_equal(st_registry_resolve("res:latest", &path), ST_OK);
    char p1[700], p2[700];
    static const char *const files[] = {"config.json", "model.safetensors", "sub/notes.txt"};
    for (int i = 0; i < 3; i++) {
        snprintf(p1, sizeof p1, "%s/%s", a, files[i]);
        snprintf(p2, sizeof p2, "%s/%s", path, files[i]);
        size_t n1, n2;
        char *d1 = read_all(p1, &n1), *d2 = read_all(p2, &n2);
        assert_non_null(d2);
        assert_int_equal(n1, n2);
        assert_memory_equal(d1, d2, n1);
        free(d1);
        free(d2);
    }
    st_free(path);
    /* an existing path resolves to itself */
    assert_int_equal(st_registry_resolve(a, &path), ST_OK);
    assert_string_equal(path, a);
    st_free(path);
    assert_int_equal(st_registry_resolve("/no/such/dir", &path), ST_ERR_INVALID_ARG);
    assert_int_equal(st_registry_resolve("../../etc/passwd:x", &path), ST_ERR_INVALID_ARG);
    /* a single file resolves to the file */
    snprintf(p1, sizeof p1, "%s/model.safetensors", a);
    assert_int_equal(st_registry_push(r, p1, "onefile", NULL, NULL), ST_OK);
    assert_int_equal(st_registry_resolve("onefile", &path), ST_OK);
    assert_non_null(strstr(path, "/snapshots/"));
    assert_string_equal(strrchr(path, '/'), "/model.safetensors");
    st_free(path);

    /* flip one byte of the weights' blob */
    st_registry_manifest *m;
    assert_int_equal(st_registry_get(r, "res", &m), ST_OK);
    char blob[800];
    snprintf(blob, sizeof blob, "%s/blobs/sha256/%.2s/%s", st_registry_root(r), m->files[1].sha256, m->files[1].sha256);
    st_registry_manifest_free(m);
    chmod(blob, 0644);
    FILE *f = fopen(blob, "r+b");
    assert_non_null(f);
    fseek(f, 1000, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 1000, SEEK_SET);
    fputc(c ^ 0x01, f);
    fclose(f);
    st_registry_problem *pr;
    int np;
    assert_int_equal(st_registry_verify(r, &pr, &np, NULL, NULL), ST_OK);
    assert_int_equal(np, 1);
    assert_string_equal(pr[0].what, "blob");
    assert_non_null(strstr(pr[0].detail, "corrupt"));
    st_free(pr);
    /* load refuses it, whether or not the snapshot exists already */
    assert_int_equal(st_registry_resolve("res", &path), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "model.safetensors"));
    assert_int_equal(st_registry_resolve("onefile", &path), ST_ERR_FORMAT);
    assert_null(path);
    st_registry_close(r);
}

static void test_gc(void **state) {
    (void)state;
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/ga", g_dir);
    snprintf(b, sizeof b, "%s/gb", g_dir);
    make_model(a, 0);
    make_model(b, 2);
    st_registry *r = open_reg();
    char r1[65], r2[65], ref[100], *path;
    assert_int_equal(st_registry_push(r, a, "g", NULL, r1), ST_OK);
    assert_int_equal(st_registry_push(r, b, "g", NULL, r2), ST_OK);
    snprintf(ref, sizeof ref, "g@%s", r1);
    assert_int_equal(st_registry_materialize(r, ref, &path), ST_OK);
    st_free(path);
    /* a stale temporary of a dead process and a fresh partial download */
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    char t1[600], t2[600];
    snprintf(t1, sizeof t1, "%s/tmp/push.%ld.0", st_registry_root(r), (long)child);
    snprintf(t2, sizeof t2, "%s/tmp/%064d.partial", st_registry_root(r), 0);
    write_file(t1, "junk", 4);
    write_file(t2, "part", 4);
    st_registry_gc_stats g;
    assert_int_equal(st_registry_gc(r, &g), ST_OK);
    assert_int_equal(g.blobs_removed, 0);
    assert_int_equal(g.tmp_removed, 1);
    assert_int_equal(access(t1, F_OK), -1);
    assert_int_equal(access(t2, F_OK), 0); /* partials live 24 h for resume */
    /* r1 differs from r2 only in config.json (n_layer): r2 adds extra-2.txt */
    assert_int_equal(st_registry_rm(r, ref), ST_OK);
    assert_int_equal(st_registry_gc(r, &g), ST_OK);
    assert_int_equal(g.blobs_removed, 1); /* r1's config.json */
    assert_int_equal(g.blobs_kept, 4);
    assert_int_equal(g.bytes_removed, (int64_t)strlen("{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_embd\":16}"));
    assert_int_equal(g.snapshots_removed, 0); /* rm removed r1's snapshot already */
    st_registry_problem *pr;
    int np;
    assert_int_equal(st_registry_verify(r, &pr, &np, NULL, NULL), ST_OK);
    assert_int_equal(np, 0);
    assert_int_equal(st_registry_rm(r, "g"), ST_OK);
    assert_int_equal(st_registry_gc(r, &g), ST_OK);
    assert_int_equal(g.blobs_kept, 0);
    st_registry_close(r);
}

static void test_concurrent_pushers(void **state) {
    (void)state;
    char d[2][400];
    for (int i = 0; i < 2; i++) {
        snprintf(d[i], sizeof d[i], "%s/cp%d", g_dir, i);
        make_model(d[i], i + 1);
    }
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            st_registry *r = NULL;
            if (st_registry_open(g_home, &r) != ST_OK) _exit(3);
            st_registry_push_params pp = st_registry_push_default_params();
            pp.message = i ? "pusher 1" : "pusher 0";
            st_status s = st_registry_push(r, d[i], "race", &pp, NULL);
            st_registry_close(r);
            _exit(s == ST_OK ? 0 : 4);
        }
    }
    for (int i = 0; i < 2; i++) {
        int status;
        waitpid(pids[i], &status, 0);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    st_registry *r = open_reg();
    st_registry_manifest **log;
    int n;
    assert_int_equal(st_registry_log(r, "race", 10, &log, &n), ST_OK);
    assert_int_equal(n, 2); /* both recorded, one the parent of the other */
    assert_string_equal(log[0]->parent, log[1]->revision);
    assert_string_not_equal(log[0]->message, log[1]->message);
    st_registry_manifests_free(log, n);
    st_registry_problem *pr;
    int np;
    assert_int_equal(st_registry_verify(r, &pr, &np, NULL, NULL), ST_OK);
    assert_int_equal(np, 0);
    st_registry_close(r);
}

/* Forks a pusher that pauses at phase; kills it with SIGKILL there. */
static void kill_mid_push(const char *phase, const char *dir) {
    char marker[400], env[500];
    snprintf(marker, sizeof marker, "%s/paused.%s", g_dir, phase);
    unlink(marker);
    snprintf(env, sizeof env, "%s:%s", phase, marker);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("STRATA_REGISTRY_TEST_PAUSE", env, 1);
        st_registry *r = NULL;
        if (st_registry_open(g_home, &r) != ST_OK) _exit(3);
        st_registry_push(r, dir, "killme", NULL, NULL);
        _exit(5); /* not reached when killed */
    }
    for (int i = 0; i < 1000 && access(marker, F_OK) != 0; i++) usleep(10000);
    assert_int_equal(access(marker, F_OK), 0);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
}

static void test_kill_mid_push(void **state) {
    (void)state;
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/ka", g_dir);
    snprintf(b, sizeof b, "%s/kb", g_dir);
    make_model(a, 0);
    make_model(b, 3);
    st_registry *r = open_reg();
    char r1[65];
    assert_int_equal(st_registry_push(r, a, "killme", NULL, r1), ST_OK);
    st_registry_problem *pr;
    int np;
    st_registry_manifest *m;
    for (int phase = 0; phase < 2; phase++) {
        kill_mid_push(phase ? "committing" : "copied", b);
        /* consistent: verify passes, latest still the first revision */
        assert_int_equal(st_registry_verify(r, &pr, &np, NULL, NULL), ST_OK);
        for (int i = 0; i < np; i++) print_message("problem: %s %s\n", pr[i].what, pr[i].detail);
        assert_int_equal(np, 0);
        st_free(pr);
        assert_int_equal(st_registry_get(r, "killme", &m), ST_OK);
        assert_string_equal(m->revision, r1);
        st_registry_manifest_free(m);
        char *path;
        assert_int_equal(st_registry_resolve("killme", &path), ST_OK);
        st_free(path);
    }
    /* the lock was released by the kill; gc removes the dead pusher's temporaries */
    st_registry_gc_stats g;
    assert_int_equal(st_registry_gc(r, &g), ST_OK);
    assert_true(g.tmp_removed >= 1);
    char r2[65];
    assert_int_equal(st_registry_push(r, b, "killme", NULL, r2), ST_OK);
    assert_int_equal(st_registry_get(r, "killme", &m), ST_OK);
    assert_string_equal(m->revision, r2);
    assert_string_equal(m->parent, r1);
    st_registry_manifest_free(m);
    assert_int_equal(st_registry_verify(r, &pr, &np, NULL, NULL), ST_OK);
    assert_int_equal(np, 0);
    st_registry_close(r);
}

static const char k_hex[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

static st_status parse_with(const char *files_json, const char *extra) {
    char buf[2000];
    snprintf(buf, sizeof buf,
             "{\"format\":\"strata-manifest\",\"version\":1,\"kind\":\"directory\",\"name\":\"m\",\"parent\":null,"
             "\"author\":\"a\",\"message\":\"\",\"time\":\"t\"%s,\"files\":%s}",
             extra, files_json);
    st_registry_manifest *m = NULL;
    st_status s = st_registry_manifest_parse(buf, strlen(buf), "test", &m);
    st_registry_manifest_free(m);
    return s;
}

static void test_malformed_manifests(void **state) {
    (void)state;
    char f[600];
    snprintf(f, sizeof f, "[{\"path\":\"config.json\",\"sha256\":\"%s\",\"size\":3}]", k_hex);
    assert_int_equal(parse_with(f, ""), ST_OK);
    static const char *const bad_paths[] = {"../x", "/etc/passwd", "a/../b", "a//b", "", ".", "a\\b", "a/", "x\001"};
    for (size_t i = 0; i < sizeof bad_paths / sizeof *bad_paths; i++) {
        snprintf(f, sizeof f, "[{\"path\":\"%s\",\"sha256\":\"%s\",\"size\":3}]", bad_paths[i], k_hex);
        assert_int_equal(parse_with(f, ""), ST_ERR_FORMAT);
        assert_non_null(strstr(st_last_error(), "test"));
    }
    snprintf(f, sizeof f, "[{\"path\":\"a\",\"sha256\":\"%s\",\"size\":9223372036854775807}]", k_hex);
    assert_int_equal(parse_with(f, ""), ST_ERR_FORMAT); /* huge declared size */
    snprintf(f, sizeof f, "[{\"path\":\"a\",\"sha256\":\"%s\",\"size\":-1}]", k_hex);
    assert_int_equal(parse_with(f, ""), ST_ERR_FORMAT);
    assert_int_equal(parse_with("[{\"path\":\"a\",\"sha256\":\"ABC\",\"size\":1}]", ""), ST_ERR_FORMAT);
    snprintf(f, sizeof f, "[{\"path\":\"a\",\"sha256\":\"%s\",\"size\":3},{\"path\":\"a\",\"sha256\":\"%s\",\"size\":3}]",
             k_hex, k_hex);
    assert_int_equal(parse_with(f, ""), ST_ERR_FORMAT); /* duplicate */
    snprintf(f, sizeof f, "[{\"path\":\"a\",\"sha256\":\"%s\",\"size\":3},{\"path\":\"a/b\",\"sha256\":\"%s\",\"size\":3}]",
             k_hex, k_hex);
    assert_int_equal(parse_with(f, ""), ST_ERR_FORMAT); /* file and directory */
    assert_int_equal(parse_with("{}", ""), ST_ERR_FORMAT);
    st_registry_manifest *m = NULL;
    assert_int_equal(st_registry_manifest_parse("not json", 8, "x", &m), ST_ERR_FORMAT);
    const char *v2 = "{\"format\":\"strata-manifest\",\"version\":2}";
    assert_int_equal(st_registry_manifest_parse(v2, strlen(v2), "x", &m), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "version"));
    const char *badname = "{\"format\":\"strata-manifest\",\"version\":1,\"kind\":\"directory\",\"name\":\"../m\","
                          "\"author\":\"a\",\"message\":\"\",\"time\":\"t\",\"files\":[]}";
    assert_int_equal(st_registry_manifest_parse(badname, strlen(badname), "x", &m), ST_ERR_FORMAT);
    assert_null(m);

    /* the revision does not depend on spacing or key order */
    char a[800], b[800];
    snprintf(a, sizeof a,
             "{\"format\":\"strata-manifest\",\"version\":1,\"kind\":\"directory\",\"name\":\"m\",\"parent\":null,"
             "\"author\":\"a\",\"message\":\"\",\"time\":\"t\",\"files\":[{\"path\":\"b\",\"sha256\":\"%s\",\"size\":3},"
             "{\"path\":\"a\",\"sha256\":\"%s\",\"size\":3}]}",
             k_hex, k_hex);
    snprintf(b, sizeof b,
             "{ \"time\": \"t\", \"files\": [ {\"size\": 3, \"path\": \"a\", \"sha256\": \"%s\"}, {\"sha256\":\"%s\","
             "\"size\":3,\"path\":\"b\"} ], \"name\":\"m\", \"kind\":\"directory\", \"format\":\"strata-manifest\","
             "\"version\":1, \"author\":\"a\", \"message\":\"\" }",
             k_hex, k_hex);
    st_registry_manifest *ma, *mb;
    assert_int_equal(st_registry_manifest_parse(a, strlen(a), "a", &ma), ST_OK);
    assert_int_equal(st_registry_manifest_parse(b, strlen(b), "b", &mb), ST_OK);
    assert_string_equal(ma->revision, mb->revision);
    char *js;
    size_t jn;
    assert_int_equal(st_registry_manifest_json(ma, &js, &jn), ST_OK);
    char hex[65];
    ref_sha(js, jn, hex);
    assert_string_equal(hex, ma->revision);
    st_free(js);
    st_registry_manifest_free(ma);
    st_registry_manifest_free(mb);

    char name[ST_REGISTRY_MAX_NAME + 1], tag[ST_REGISTRY_MAX_NAME + 1], rev[65];
    assert_int_equal(st_registry_parse_ref("a/b", name, tag, rev), ST_ERR_INVALID_ARG);
    assert_int_equal(st_registry_parse_ref("..", name, tag, rev), ST_ERR_INVALID_ARG);
    assert_int_equal(st_registry_parse_ref("m@xyz1234", name, tag, rev), ST_ERR_INVALID_ARG);
    assert_int_equal(st_registry_parse_ref("m@abc", name, tag, rev), ST_ERR_INVALID_ARG);
    assert_int_equal(st_registry_parse_ref("m:a:b", name, tag, rev), ST_ERR_INVALID_ARG);
    assert_int_equal(st_registry_parse_ref("m", name, tag, rev), ST_OK);
    assert_string_equal(tag, "latest");
}

static void test_card(void **state) {
    (void)state;
    const char *t = "---\nlicense: apache-2.0\nbase_model: \"gpt2\"\ndatasets:\n  - tinyshakespeare\n  - 'owt'\n"
                    "tags: [a, \"b c\"]\nmetrics:\n  val_loss: 1.91\n  perplexity: 6.7\nmodel-index:\n  - name: x\n"
                    "    results: []\n---\n# Title\n\ntext\n";
    st_registry_card c;
    assert_int_equal(st_registry_card_parse(t, strlen(t), "README.md", &c), ST_OK);
    assert_string_equal(c.license, "apache-2.0");
    assert_string_equal(c.base_model, "gpt2");
    assert_int_equal(c.n_datasets, 2);
    assert_string_equal(c.datasets[1], "owt");
    assert_int_equal(c.n_tags, 2);
    assert_string_equal(c.tags[1], "b c");
    assert_int_equal(c.n_metrics, 2);
    assert_string_equal(c.metric_names[1], "perplexity");
    assert_string_equal(c.metric_values[0], "1.91");
    assert_string_equal(c.body, "# Title\n\ntext\n");
    st_registry_card_free(&c);
    assert_int_equal(st_registry_card_parse("just text", 9, "R", &c), ST_OK);
    assert_null(c.license);
    assert_string_equal(c.body, "just text");
    st_registry_card_free(&c);
    const char *open = "---\nlicense: mit\nno end";
    assert_int_equal(st_registry_card_parse(open, strlen(open), "R", &c), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "never closed"));

    /* push_dir with a generated card replaces README.md in the revision only */
    char a[400];
    snprintf(a, sizeof a, "%s/card", g_dir);
    make_model(a, 0);
    char p[600];
    snprintf(p, sizeof p, "%s/README.md", a);
    write_file(p, "old", 3);
    st_model_card mc = st_model_card_default();
    mc.training_data = "tinyshakespeare.txt";
    mc.val_loss = 1.5;
    mc.step = 100;
    char rev[65];
    assert_int_equal(st_registry_push_dir(a, "carded", "run1", "trained", &mc, rev), ST_OK);
    char *path;
    assert_int_equal(st_registry_resolve("carded:run1", &path), ST_OK);
    char rp[700];
    snprintf(rp, sizeof rp, "%s/README.md", path);
    size_t n;
    char *md = read_all(rp, &n);
    assert_int_equal(st_registry_card_parse(md, n, rp, &c), ST_OK);
    assert_int_equal(c.n_datasets, 1);
    assert_string_equal(c.datasets[0], "tinyshakespeare.txt");
    assert_string_equal(c.metric_names[0], "val_loss");
    assert_string_equal(c.metric_values[0], "1.5");
    st_registry_card_free(&c);
    free(md);
    st_free(path);
    md = read_all(p, &n);
    assert_string_equal(md, "old");
    free(md);
}


/* Server and client in one process: pull byte-identical, incremental, a
 * resumed partial (Range) counted on the server, a corrupt partial refused
 * and then recovered, uploads with and without the key. (tests/cli_hub.sh
 * does the same through the command, plus a kill -9 and hostile servers.) */
static void test_pull_over_http(void **state) {
    (void)state;
    char a[400], home_a[400], home_b[400], home_c[400];
    snprintf(a, sizeof a, "%s/hm", g_dir);
    snprintf(home_a, sizeof home_a, "%s/ha", g_dir);
    snprintf(home_b, sizeof home_b, "%s/hb", g_dir);
    snprintf(home_c, sizeof home_c, "%s/hc", g_dir);
    make_model(a, 0);
    st_registry *ra, *rb, *rc;
    assert_int_equal(st_registry_open(home_a, &ra), ST_OK);
    assert_int_equal(st_registry_open(home_b, &rb), ST_OK);
    assert_int_equal(st_registry_open(home_c, &rc), ST_OK);
    char rev[65], got[65];
    st_registry_push_params pp = st_registry_push_default_params();
    pp.tag = "v1";
    assert_int_equal(st_registry_push(ra, a, "net", &pp, rev), ST_OK);
    st_hub_server_params sp = st_hub_server_default_params();
    sp.home = home_a;
    sp.port = 0;
    sp.api_key = "k3y";
    st_hub_server *srv;
    assert_int_equal(st_hub_server_start(&sp, &srv), ST_OK);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", st_hub_server_port(srv));

    int64_t fetched = 0;
    st_hub_client_params cp = st_hub_client_default_params();
    cp.blobs_fetched = &fetched;
    assert_int_equal(st_hub_pull(rb, url, "net:v1", &cp, got), ST_OK);
    assert_string_equal(got, rev);
    assert_int_equal(fetched, 3);
    char *pa, *pb;
    assert_int_equal(st_registry_materialize(ra, "net", &pa), ST_OK);
    assert_int_equal(st_registry_materialize(rb, "net:v1", &pb), ST_OK);
    static const char *const files[] = {"config.json", "model.safetensors", "sub/notes.txt"};
    for (int i = 0; i < 3; i++) {
        char p1[800], p2[800];
        snprintf(p1, sizeof p1, "%s/%s", pa, files[i]);
        snprintf(p2, sizeof p2, "%s/%s", pb, files[i]);
        size_t n1, n2;
        char *d1 = read_all(p1, &n1), *d2 = read_all(p2, &n2);
        assert_non_null(d2);
        assert_int_equal(n1, n2);
        assert_memory_equal(d1, d2, n1);
        free(d1);
        free(d2);
    }
    st_free(pa);
    st_free(pb);
    fetched = 0;
    assert_int_equal(st_hub_pull(rb, url, "net", &cp, NULL), ST_OK);
    assert_int_equal(fetched, 0); /* everything already there */

    /* a partial download of the weights: the pull continues it with a Range */
    st_registry_manifest *m;
    assert_int_equal(st_registry_get(ra, "net", &m), ST_OK);
    const st_registry_file *w = &m->files[1];
    assert_string_equal(w->path, "model.safetensors");
    char blob[800], part[800], pref[100];
    snprintf(blob, sizeof blob, "%s/hub/blobs/sha256/%.2s/%s", home_a, w->sha256, w->sha256);
    snprintf(part, sizeof part, "%s/hub/tmp/%s.partial", home_c, w->sha256);
    snprintf(pref, sizeof pref, "/v1/blobs/%s", w->sha256);
    size_t n;
    char *bytes = read_all(blob, &n);
    write_file(part, bytes, 123456);
    int64_t before = st_hub_server_count(srv, pref), got_bytes = 0;
    cp.bytes_fetched = &got_bytes;
    assert_int_equal(st_hub_pull(rc, url, "net", &cp, NULL), ST_OK);
    cp.bytes_fetched = NULL;
    /* only the rest of the weights crossed the network, plus the two small files */
    assert_int_equal(got_bytes, (int64_t)(m->total_bytes - 123456));
    assert_int_equal(st_hub_server_count(srv, pref), before + 1);
    assert_int_equal(access(part, F_OK), -1); /* moved into the store */
    /* a corrupt partial: refused by the hash, deleted, and the next pull recovers */
    assert_int_equal(st_registry_rm(rc, "net"), ST_OK);
    st_registry_gc_stats g;
    assert_int_equal(st_registry_gc(rc, &g), ST_OK);
    bytes[100] ^= 0x40;
    write_file(part, bytes, 200000);
    assert_int_equal(st_hub_pull(rc, url, "net", &cp, NULL), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "SHA-256"));
    assert_int_equal(access(part, F_OK), -1);
    st_registry_manifest *m4 = NULL;
    assert_int_equal(st_registry_get(rc, "net", &m4), ST_ERR_IO); /* nothing visible */
    assert_int_equal(st_hub_pull(rc, url, "net", &cp, NULL), ST_OK);
    free(bytes);
    assert_int_equal(st_hub_pull(rc, url, "nosuch", &cp, NULL), ST_ERR_IO);

    /* uploads: wrong key refused, right key recorded on the server */
    char up[400];
    snprintf(up, sizeof up, "%s/up", g_dir);
    make_model(up, 5);
    assert_int_equal(st_registry_push(rb, up, "upl", NULL, NULL), ST_OK);
    cp.api_key = "wrong";
    assert_int_equal(st_hub_push_remote(rb, "upl", url, NULL, &cp), ST_ERR_IO);
    assert_non_null(strstr(st_last_error(), "401"));
    cp.api_key = "k3y";
    assert_int_equal(st_hub_push_remote(rb, "upl", url, "t", &cp), ST_OK);
    st_registry_manifest *m2;
    assert_int_equal(st_registry_get(rb, "upl", &m2), ST_OK);
    st_registry_manifest *m3;
    assert_int_equal(st_registry_get(ra, "upl:t", &m3), ST_OK);
    assert_string_equal(m2->revision, m3->revision);
    st_registry_manifest_free(m2);
    st_registry_manifest_free(m3);
    st_registry_manifest_free(m);
    st_hub_server_stop(srv);
    st_registry_close(ra);
    st_registry_close(rb);
    st_registry_close(rc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hash_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_revisions_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_and_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_pushers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_mid_push, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_manifests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_card, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_over_http, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
