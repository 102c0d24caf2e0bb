/*
 * hubpull.c — `strata bench hubpull`: how fast `strata hub pull` moves a
 * model over loopback, hash verification and fsync included.
 *
 * Setup (not timed): a random blob of --size-mib MiB (default 1024) is
 * pushed as model "bench-model" into a temporary STRATA_HOME A, which a hub
 * server (st_hub_server, libmicrohttpd, in this process) serves on a free
 * 127.0.0.1 port. Each repetition pulls it into an emptied STRATA_HOME B
 * (st_hub_pull: HTTP GET, SHA-256 of every byte as it arrives, write, fsync,
 * commit) and, side by side, hashes the served blob with a plain sequential
 * read + SHA-256 (st_registry_hash_file) — the machine's limit for a
 * verified copy, since a pull must at least read and hash every byte. Both
 * read from the page cache. Figures are medians of --reps repetitions;
 * GB/s are 1e9 bytes per second; the goal (>= 0.5 GB/s) is printed, never
 * judged. A third row, read + SHA-256 + write + fsync of the same blob to a
 * local file, shows what the pull costs beyond HTTP (the disk write).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "strata/registry.h"

int bench_hubpull_main(int argc, char **argv);

#define GOAL_GBS 0.5

static void usage(void) {
    printf("usage: strata bench hubpull [--size-mib N] [--reps N] [--json]\n\n"
           "Pull a random N MiB model over loopback from an in-process hub server into an\n"
           "empty registry (SHA-256 verified, fsynced), and hash the same bytes with a plain\n"
           "sequential read + SHA-256 in the same run: GB/s (1e9 bytes/s), medians.\n\n"
           "options:\n"
           "  --size-mib N  model size (default 1024 = 1 GiB; 64 for a quick run)\n"
           "  --reps N      timed pulls (default 3)\n"
           "  --json        one JSON line instead of the table\n\n"
           "Needs 2 x N MiB free under $TMPDIR (default /tmp). Goal: >= %.1f GB/s.\n",
           GOAL_GBS);
}

/* The local equivalent of a pull without HTTP: read, SHA-256, write, fsync. */
static double copy_hash_fsync(const char *src, const char *dst) {
    double t0 = st_time_s();
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    size_t chunk = 1 << 20;
    char *buf = malloc(chunk);
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    if (!in || !out || !buf || !h) {
        EVP_MD_CTX_free(h);
        if (in) fclose(in);
        if (out) fclose(out);
        free(buf);
        return -1;
    }
    /* one pass, as a pull: hash each chunk, write it */
    EVP_DigestInit_ex(h, EVP_sha256(), NULL);
    size_t k;
    while ((k = fread(buf, 1, chunk, in)) > 0) {
        EVP_DigestUpdate(h, buf, k);
        if (fwrite(buf, 1, k, out) != k) break;
    }
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(h, d, &dl);
    EVP_MD_CTX_free(h);
    fflush(out);
    fsync(fileno(out));
    fclose(in);
    fclose(out);
    free(buf);
    double t = st_time_s() - t0;
    unlink(dst);
    return t;
}

/* CPU seconds (user + system) of this process, all threads (the server's too). */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

static int write_random(const char *path, uint64_t bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t chunk = 1 << 20;
    uint64_t *buf = malloc(chunk);
    if (!buf) {
        fclose(f);
        return -1;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (uint64_t done = 0; done < bytes;) {
        for (size_t i = 0; i < chunk / 8; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = x;
        }
        size_t k = bytes - done < chunk ? (size_t)(bytes - done) : chunk;
        if (fwrite(buf, 1, k, f) != k) {
            free(buf);
            fclose(f);
            return -1;
        }
        done += k;
    }
    free(buf);
    return fclose(f);
}

int bench_hubpull_main(int argc, char **argv) {
    long size_mib = 1024, reps = 3;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--size-mib") && i + 1 < argc) {
            if (!cli_parse_long(argv[++i], &size_mib) || size_mib < 1) return cli_usage_error("bench hubpull", "--size-mib needs a positive integer");
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            if (!cli_parse_long(argv[++i], &reps) || reps < 1 || reps > 100) return cli_usage_error("bench hubpull", "--reps needs 1..100");
        } else {
            return cli_usage_error("bench hubpull", "unknown option %s", argv[i]);
        }
    }
    const char *tmpd = getenv("TMPDIR");
    char root[512], src[600], home_a[600], home_b[600], cmd[1300];
    snprintf(root, sizeof root, "%s/strata-hubpull-XXXXXX", tmpd && *tmpd ? tmpd : "/tmp");
    if (!mkdtemp(root)) {
        fprintf(stderr, "bench hubpull: cannot create a temporary directory under %s\n", root);
        return 1;
    }
    snprintf(src, sizeof src, "%s/model.bin", root);
    snprintf(home_a, sizeof home_a, "%s/a", root);
    snprintf(home_b, sizeof home_b, "%s/b", root);
    uint64_t bytes = (uint64_t)size_mib << 20;
    int rc = 1;
    st_registry *ra = NULL;
    st_hub_server *srv = NULL;
    double *pull_s = calloc((size_t)reps, sizeof(double)), *hash_s = calloc((size_t)reps, sizeof(double));
    double *copy_s = calloc((size_t)reps, sizeof(double)), *pull_cpu = calloc((size_t)reps, sizeof(double));
    char copy_dst[700];
    snprintf(copy_dst, sizeof copy_dst, "%s/copy.bin", root);
    char rev[65], hex[65], blob[700];
    fprintf(stderr, "bench hubpull: generating and pushing a %ld MiB model...\n", size_mib);
    st_status s = write_random(src, bytes) == 0 ? ST_OK : st__fail(ST_ERR_IO, "%s: cannot write", src);
    if (s == ST_OK) s = st_registry_open(home_a, &ra);
    if (s == ST_OK) s = st_registry_push(ra, src, "bench-model", NULL, rev);
    unlink(src);
    st_registry_manifest *m = NULL;
    if (s == ST_OK) s = st_registry_get(ra, "bench-model", &m);
    if (s == ST_OK) snprintf(blob, sizeof blob, "%s/blobs/sha256/%.2s/%s", st_registry_root(ra), m->files[0].sha256, m->files[0].sha256);
    st_hub_server_params sp = st_hub_server_default_params();
    sp.home = home_a;
    sp.port = 0;
    if (s == ST_OK) s = st_hub_server_start(&sp, &srv);
    char url[64];
    if (s == ST_OK) snprintf(url, sizeof url, "http://127.0.0.1:%d", st_hub_server_port(srv));
    for (long i = 0; s == ST_OK && i < reps; i++) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", home_b);
        if (system(cmd) != 0) break;
        st_registry *rb = NULL;
        s = st_registry_open(home_b, &rb);
        double t0 = st_time_s(), c0 = cpu_s();
        if (s == ST_OK) s = st_hub_pull(rb, url, "bench-model", NULL, NULL);
        pull_s[i] = st_time_s() - t0;
        pull_cpu[i] = cpu_s() - c0;
        st_registry_close(rb);
        t0 = st_time_s();
        if (s == ST_OK) s = st_registry_hash_file(blob, hex, NULL);
        hash_s[i] = st_time_s() - t0;
        if (s == ST_OK && strcmp(hex, m->files[0].sha256)) s = st__fail(ST_ERR_INTERNAL, "blob hash changed");
        if (s == ST_OK && (copy_s[i] = copy_hash_fsync(blob, copy_dst)) < 0) s = st__fail(ST_ERR_IO, "%s: copy failed", copy_dst);
    }
    if (s == ST_OK) {
        double pm = bench_median(pull_s, (int)reps), hm = bench_median(hash_s, (int)reps);
        double cm = bench_median(copy_s, (int)reps), pc = bench_median(pull_cpu, (int)reps);
        double pg = (double)bytes / 1e9 / pm, hg = (double)bytes / 1e9 / hm, cg = (double)bytes / 1e9 / cm;
        if (json) {
            printf("{\"bench\":\"hubpull\",\"bytes\":%llu,\"reps\":%ld,\"pull_gbs\":%.3f,\"read_sha256_gbs\":%.3f,"
                   "\"local_copy_sha256_fsync_gbs\":%.3f,\"pull_cpu_s_per_gb\":%.3f,\"ratio_vs_read_sha256\":%.3f,\"goal_gbs\":%.1f}\n",
                   (unsigned long long)bytes, reps, pg, hg, cg, pc / ((double)bytes / 1e9), pg / hg, GOAL_GBS);
        } else {
            printf("strata bench hubpull: %ld MiB over loopback, median of %ld\n\n", size_mib, reps);
            printf("%-44s %10s %10s\n", "what", "GB/s", "seconds");
            printf("%-44s %10.3f %10.3f\n", "hub pull (HTTP + SHA-256 + write + fsync)", pg, pm);
            printf("%-44s %10.3f %10.3f\n", "sequential read + SHA-256 (machine limit)", hg, hm);
            printf("%-44s %10.3f %10.3f\n", "local read + SHA-256 + write + fsync", cg, cm);
            printf("\npull CPU time (client + server threads): %.2f s per GB; wall/CPU %.2f (> 1: waiting for\n"
                   "the disk or for a busy machine's cores)\n", pc / ((double)bytes / 1e9), pm / pc);
            printf("pull / read+SHA-256: %.2f   goal: >= %.1f GB/s (%.2fx of goal)\n", pg / hg, GOAL_GBS, pg / GOAL_GBS);
        }
        rc = 0;
    } else {
        fprintf(stderr, "bench hubpull: %s\n", st_last_error());
    }
    st_registry_manifest_free(m);
    st_hub_server_stop(srv);
    st_registry_close(ra);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "bench hubpull: could not remove %s\n", root);
    free(pull_s);
    free(hash_s);
    free(copy_s);
    free(pull_cpu);
    return rc;
}
