/*
 * test_hub_pull.c — the pull's download pipeline (src/hub/hub_client.c) on
 * blobs large enough to exercise it: a receiving thread writes the bytes, a
 * verifying thread reads them back and hashes them, starting writeback every
 * 16 MiB (docs/L6-hub.md).
 *
 * References: every blob id recomputed here with OpenSSL directly; the
 * pulled files compared byte for byte with the source. Cases: a 24 MiB
 * weights file (several writeback kicks, a tail that is not a multiple of
 * the read-back piece) pulled byte-identical with st_hub_pull_stats
 * consistent (bytes counted once, stage times within the total); a 10 MiB
 * partial continued with a Range request (only the rest crosses the network,
 * the partial's bytes are rehashed); a byte flipped deep inside the served
 * blob refused by the hash, the partial deleted and nothing made visible; a
 * server that answers 200 to a Range request (a small libmicrohttpd server
 * in this file) restarts the blob from zero and still verifies it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <microhttpd.h>
#include <openssl/evp.h>

#include "strata/registry.h"

#define BIG ((24u << 20) + 12345u) /* bytes of the weights file */

static char g_dir[256];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/strata_test_hubpull_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", g_dir, g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void ref_sha(const void *p, size_t n, char hex[65]) {
    unsigned char d[32];
    unsigned int len;
    EVP_Digest(p, n, d, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* A model directory: config.json and a BIG-byte model.safetensors (xorshift
 * bytes; *weights keeps a copy). */
static void make_model(const char *dir, unsigned char **weights) {
    char p[600];
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, "{\"model_type\":\"gpt2\"}", 21);
    unsigned char *w = malloc(BIG);
    assert_non_null(w);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < BIG; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        w[i] = (unsigned char)(x >> 32);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_file(p, w, BIG);
    *weights = w;
}

/* The pulled weights of ref in r equal w. */
static void assert_weights(st_registry *r, const char *ref, const unsigned char *w) {
    char *dir = NULL, p[800];
    assert_int_equal(st_registry_materialize(r, ref, &dir), ST_OK);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    size_t n = 0;
    unsigned char *got = read_all(p, &n);
    assert_non_null(got);
    assert_int_equal(n, BIG);
    assert_memory_equal(got, w, BIG);
    free(got);
    st_free(dir);
}

typedef struct fixture {
    char home_a[300], url[64], blob[700], part_b[700];
    st_registry *ra, *rb;
    st_hub_server *srv;
    unsigned char *w;
    char sha[65], rev[65];
} fixture;

static void fixture_up(fixture *f) {
    memset(f, 0, sizeof *f);
    char src[300], home_b[300];
    snprintf(src, sizeof src, "%s/src", g_dir);
    snprintf(f->home_a, sizeof f->home_a, "%s/a", g_dir);
    snprintf(home_b, sizeof home_b, "%s/b", g_dir);
    make_model(src, &f->w);
    ref_sha(f->w, BIG, f->sha);
    assert_int_equal(st_registry_open(f->home_a, &f->ra), ST_OK);
    assert_int_equal(st_registry_open(home_b, &f->rb), ST_OK);
    assert_int_equal(st_registry_push(f->ra, src, "big", NULL, f->rev), ST_OK);
    snprintf(f->blob, sizeof f->blob, "%s/hub/blobs/sha256/%.2s/%s", f->home_a, f->sha, f->sha);
    snprintf(f->part_b, sizeof f->part_b, "%s/hub/tmp/%s.partial", home_b, f->sha);
    assert_int_equal(access(f->blob, R_OK), 0); /* stored under the id computed here */
    st_hub_server_params sp = st_hub_server_default_params();
    sp.home = f->home_a;
    sp.port = 0;
    assert_int_equal(st_hub_server_start(&sp, &f->srv), ST_OK);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", st_hub_server_port(f->srv));
}

static void fixture_down(fixture *f) {
    st_hub_server_stop(f->srv);
    st_registry_close(f->ra);
    st_registry_close(f->rb);
    free(f->w);
}

static void test_pull_big(void **state) {
    (void)state;
    fixture f;
    fixture_up(&f);
    st_hub_pull_stats ps;
    memset(&ps, 0xff, sizeof ps); /* st_hub_pull zeroes it */
    int64_t got_bytes = 0, blobs = 0;
    st_hub_client_params cp = st_hub_client_default_params();
    cp.stats = &ps;
    cp.bytes_fetched = &got_bytes;
    cp.blobs_fetched = &blobs;
    char rev[65];
    assert_int_equal(st_hub_pull(f.rb, f.url, "big", &cp, rev), ST_OK);
    assert_string_equal(rev, f.rev);
    assert_int_equal(blobs, 2);
    assert_int_equal(got_bytes, (int64_t)BIG + 21);
    assert_int_equal(ps.bytes, (uint64_t)BIG + 21);
    assert_true(ps.transfer_s > 0 && ps.hash_s > 0 && ps.write_s > 0 && ps.fsync_s >= 0 &&
                ps.commit_s > 0);
    assert_true(ps.receive_s >= 0 && ps.readback_s >= 0 && ps.hash_tail_s >= 0);
    assert_true(ps.transfer_s + ps.hash_tail_s + ps.fsync_s + ps.commit_s <= ps.total_s + 1e-6);
    assert_true(ps.write_s <= ps.transfer_s + 1e-6);
    assert_weights(f.rb, "big", f.w);
    assert_int_equal(access(f.part_b, F_OK), -1);
    /* the blob in the store verifies */
    char hex[65];
    char *stored = NULL;
    assert_int_equal(st_registry_materialize(f.rb, "big", &stored), ST_OK);
    char p[800];
    snprintf(p, sizeof p, "%s/model.safetensors", stored);
    assert_int_equal(st_registry_hash_file(p, hex, NULL), ST_OK);
    assert_string_equal(hex, f.sha);
    st_free(stored);
    fixture_down(&f);
}

static void test_resume_big_partial(void **state) {
    (void)state;
    fixture f;
    fixture_up(&f);
    size_t have = (10u << 20) + 3;
    char tmpdir[400];
    snprintf(tmpdir, sizeof tmpdir, "%s/b/hub/tmp", g_dir);
    mkdir(tmpdir, 0755);
    write_file(f.part_b, f.w, have);
    char pref[100];
    snprintf(pref, sizeof pref, "/v1/blobs/%s", f.sha);
    int64_t before = st_hub_server_count(f.srv, pref), got_bytes = 0;
    st_hub_pull_stats ps;
    st_hub_client_params cp = st_hub_client_default_params();
    cp.bytes_fetched = &got_bytes;
    cp.stats = &ps;
    assert_int_equal(st_hub_pull(f.rb, f.url, "big", &cp, NULL), ST_OK);
    assert_int_equal(got_bytes, (int64_t)(BIG - have) + 21); /* the rest, and config.json */
    assert_int_equal(ps.bytes, (uint64_t)(BIG - have) + 21);
    assert_int_equal(st_hub_server_count(f.srv, pref), before + 1);
    assert_weights(f.rb, "big", f.w);
    fixture_down(&f);
}

static void test_flipped_byte_refused(void **state) {
    (void)state;
    fixture f;
    fixture_up(&f);
    /* flip one byte 18 MiB into the served blob */
    assert_int_equal(chmod(f.blob, 0644), 0);
    FILE *b = fopen(f.blob, "r+b");
    assert_non_null(b);
    assert_int_equal(fseek(b, 18l << 20, SEEK_SET), 0);
    int c = fgetc(b);
    assert_int_equal(fseek(b, 18l << 20, SEEK_SET), 0);
    fputc(c ^ 0x01, b);
    assert_int_equal(fclose(b), 0);
    assert_int_equal(st_hub_pull(f.rb, f.url, "big", NULL, NULL), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "SHA-256"));
    assert_non_null(strstr(st_last_error(), f.sha));
    assert_int_equal(access(f.part_b, F_OK), -1); /* never resumed from */
    st_registry_manifest *m = NULL;
    assert_int_equal(st_registry_get(f.rb, "big", &m), ST_ERR_IO); /* nothing visible */
    /* the server's bytes mended: the next pull succeeds */
    b = fopen(f.blob, "r+b");
    assert_non_null(b);
    assert_int_equal(fseek(b, 18l << 20, SEEK_SET), 0);
    fputc(c, b);
    assert_int_equal(fclose(b), 0);
    assert_int_equal(st_hub_pull(f.rb, f.url, "big", NULL, NULL), ST_OK);
    assert_weights(f.rb, "big", f.w);
    fixture_down(&f);
}

/* ---- a hub that ignores Range: every blob answered in full with 200 ---- */

typedef struct plain_hub {
    unsigned char *manifest, *blob, *config;
    size_t manifest_n, blob_n, config_n;
    char rev[65], sha[65], config_sha[65];
    int blob_gets;
} plain_hub;

static enum MHD_Result plain_handler(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version, const char *data,
                                     size_t *data_size, void **con_cls) {
    (void)method, (void)version, (void)data, (void)data_size, (void)con_cls;
    plain_hub *h = cls;
    char path[200];
    const void *body = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "/v1/models/big/revisions/%s", h->rev);
    if (!strcmp(url, path)) body = h->manifest, n = h->manifest_n;
    snprintf(path, sizeof path, "/v1/blobs/%s", h->sha);
    if (!strcmp(url, path)) body = h->blob, n = h->blob_n, h->blob_gets++;
    snprintf(path, sizeof path, "/v1/blobs/%s", h->config_sha);
    if (!strcmp(url, path)) body = h->config, n = h->config_n;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, (void *)(body ? body : ""), MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, body ? 200 : 404, r);
    MHD_destroy_response(r);
    return ret;
}

static void test_server_ignoring_range(void **state) {
    (void)state;
    fixture f;
    fixture_up(&f);
    plain_hub h;
    memset(&h, 0, sizeof h);
    char p[800];
    snprintf(p, sizeof p, "%s/hub/models/big/revisions/%s.json", f.home_a, f.rev);
    h.manifest = read_all(p, &h.manifest_n);
    assert_non_null(h.manifest);
    h.blob = f.w, h.blob_n = BIG;
    h.config = (unsigned char *)"{\"model_type\":\"gpt2\"}", h.config_n = 21;
    memcpy(h.rev, f.rev, 65);
    memcpy(h.sha, f.sha, 65);
    ref_sha(h.config, h.config_n, h.config_sha);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                            plain_handler, &h, MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", di->port);
    /* a partial of 5 MiB, but the last 1000 bytes are wrong: only a restart from zero can verify */
    char tmpdir[400];
    snprintf(tmpdir, sizeof tmpdir, "%s/b/hub/tmp", g_dir);
    mkdir(tmpdir, 0755);
    size_t have = 5u << 20;
    unsigned char *bad = malloc(have);
    assert_non_null(bad);
    memcpy(bad, f.w, have);
    memset(bad + have - 1000, 0, 1000);
    write_file(f.part_b, bad, have);
    free(bad);
    int64_t got_bytes = 0;
    st_hub_client_params cp = st_hub_client_default_params();
    cp.bytes_fetched = &got_bytes;
    char ref[100];
    snprintf(ref, sizeof ref, "big@%s", f.rev);
    assert_int_equal(st_hub_pull(f.rb, url, ref, &cp, NULL), ST_OK);
    assert_int_equal(h.blob_gets, 1);
    assert_int_equal(got_bytes, (int64_t)BIG + 21); /* everything, from zero */
    assert_weights(f.rb, ref, f.w);
    MHD_stop_daemon(d);
    free(h.manifest);
    fixture_down(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pull_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_big_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_ignoring_range, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
