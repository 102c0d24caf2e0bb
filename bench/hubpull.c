/*
 * hubpull.c — `strata bench hubpull`: how fast `strata hub pull` moves a
 * model over loopback, hash verification and fsync included, and where the
 * time goes.
 *
 * Setup (not timed): a random blob of --size-mib MiB (default 1024) is
 * pushed as model "bench-model" into a temporary STRATA_HOME A, which a hub
 * server (st_hub_server, libmicrohttpd, in this process) serves on a free
 * 127.0.0.1 port. Each repetition pulls it into an emptied STRATA_HOME B
 * (st_hub_pull: HTTP GET, write, SHA-256 of every byte, fsync, commit) with
 * st_hub_pull_stats collecting the stages, and pulls it again the former
 * way (hash on the receiving thread, one fsync at the end: the
 * st_hub_client_params switches; the two pulls alternate which goes first,
 * since this disk's speed depends on what was just written), and side by
 * side measures the limits a
 * pull is made of: a plain HTTP GET of the same blob from the same
 * server whose bytes are discarded (libcurl; transport + server), a plain
 * sequential read + SHA-256 of the served blob (st_registry_hash_file;
 * hashing), a local read + SHA-256 + write + fsync (the pull minus
 * HTTP), and a plain write of as many bytes + fdatasync (the disk's limit,
 * as dd). The served blob is read from the page cache (the push just wrote
 * it; the residency is measured with mincore and printed) unless --cold
 * drops it before each pull (posix_fadvise DONTNEED: then the server reads
 * the disk). Figures are medians of --reps repetitions; GB/s are 1e9
 * bytes per second; the goal (>= 0.5 GB/s) is printed, never judged.
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "strata/registry.h"

int bench_hubpull_main(int argc, char **argv);

#define GOAL_GBS 0.5

static void usage(void) {
    printf("usage: strata bench hubpull [--size-mib N] [--reps N] [--writeback-mib N] [--cold] [--json]\n\n"
           "Pull a random N MiB model over loopback from an in-process hub server into an\n"
           "empty registry (SHA-256 verified, fsynced) and print where the time went\n"
           "(receive, write, read-back, hash, fsync, commit). Side by side in the same run:\n"
           "the same pull done the former way (hash on the receiving thread, one fsync),\n"
           "an HTTP GET of the same blob whose bytes are discarded, a plain sequential\n"
           "read + SHA-256, a local read + SHA-256 + write + fsync, and a plain write +\n"
           "fdatasync of as many bytes (the disk's limit): GB/s (1e9 bytes/s), medians.\n\n"
           "options:\n"
           "  --size-mib N  model size (default 1024 = 1 GiB; 64 for a quick run)\n"
           "  --reps N      timed pulls (default 3)\n"
           "  --writeback-mib N  the pull starts writeback every N MiB (default 16;\n"
           "                0: never, one fsync at the end)\n"
           "  --cold        drop the served blob from the page cache before each pull and\n"
           "                each comparison (default: served from the cache, as after a push)\n"
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

static size_t discard(char *data, size_t sz, size_t nm, void *ud) {
    (void)data;
    *(uint64_t *)ud += sz * nm;
    return sz * nm;
}

/* An HTTP GET of url whose bytes are thrown away: the transport and the
 * server alone, with the pull's receive buffer size. */
static double http_get_discard(const char *url, uint64_t expect) {
    CURL *c = curl_easy_init();
    if (!c) return -1;
    uint64_t got = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 2L << 20);
    double t0 = st_time_s();
    CURLcode rc = curl_easy_perform(c);
    double t = st_time_s() - t0;
    curl_easy_cleanup(c);
    return rc == CURLE_OK && got == expect ? t : -1;
}

/* Fraction of path's pages in the page cache (mincore), or -1. */
static double cached_fraction(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return -1;
    long pg = sysconf(_SC_PAGESIZE);
    size_t n = ((size_t)st.st_size + (size_t)pg - 1) / (size_t)pg, in = 0;
    unsigned char *v = malloc(n);
    if (v && mincore(p, (size_t)st.st_size, v) == 0)
        for (size_t i = 0; i < n; i++) in += v[i] & 1;
    double f = v ? (double)in / (double)n : -1;
    free(v);
    munmap(p, (size_t)st.st_size);
    return f;
}

/* Drops a clean file's pages from the page cache (--cold). */
static void drop_cache(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

/* Writes bytes to path in 2 MiB pieces (the same piece again: what is
 * written does not matter to the disk) and fdatasyncs: the disk's limit for
 * any durable copy, as `dd bs=2M conv=fdatasync`. */
static double write_fsync(const char *path, uint64_t bytes) {
    size_t chunk = 2u << 20;
    char *buf = malloc(chunk);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!buf || fd < 0) {
        free(buf);
        if (fd >= 0) close(fd);
        return -1;
    }
    for (size_t i = 0; i < chunk; i++) buf[i] = (char)(i * 2654435761u >> 24);
    double t0 = st_time_s();
    bool ok = true;
    for (uint64_t done = 0; ok && done < bytes;) {
        size_t k = bytes - done < chunk ? (size_t)(bytes - done) : chunk;
        ok = write(fd, buf, k) == (ssize_t)k;
        done += k;
    }
    ok = ok && fdatasync(fd) == 0;
    double t = st_time_s() - t0;
    close(fd);
    unlink(path);
    free(buf);
    return ok ? t : -1;
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

enum { ST_TOTAL, ST_TRANSFER, ST_RECEIVE, ST_WRITE, ST_READBACK, ST_HASH, ST_TAIL, ST_FSYNC, ST_COMMIT, ST_RCPU, ST_VCPU, ST_PCPU, ST_OTHER, N_STAGES };

int bench_hubpull_main(int argc, char **argv) {
    long size_mib = 1024, reps = 3, wb_mib = 16;
    bool json = false, cold = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--cold")) {
            cold = true;
        } else if (!strcmp(argv[i], "--size-mib") && i + 1 < argc) {
            if (!cli_parse_long(argv[++i], &size_mib) || size_mib < 1) return cli_usage_error("bench hubpull", "--size-mib needs a positive integer");
        } else if (!strcmp(argv[i], "--writeback-mib") && i + 1 < argc) {
            if (!cli_parse_long(argv[++i], &wb_mib) || wb_mib < 0 || wb_mib > 1 << 20)
                return cli_usage_error("bench hubpull", "--writeback-mib needs 0..1048576");
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
    double gb = (double)bytes / 1e9;
    int rc = 1;
    st_registry *ra = NULL;
    st_hub_server *srv = NULL;
    size_t nr = (size_t)reps;
    double *pull_s = calloc(nr, sizeof(double)), *hash_s = calloc(nr, sizeof(double));
    double *copy_s = calloc(nr, sizeof(double)), *pull_cpu = calloc(nr, sizeof(double));
    double *get_s = calloc(nr, sizeof(double)), *cached = calloc(nr, sizeof(double));
    double *stage = calloc(nr * N_STAGES, sizeof(double)), col[100], *old_s = calloc(nr, sizeof(double));
    double *disk_s = calloc(nr, sizeof(double));
    char copy_dst[700];
    snprintf(copy_dst, sizeof copy_dst, "%s/copy.bin", root);
    char rev[65], hex[65], blob[700], blob_url[200];
    fprintf(stderr, "bench hubpull: generating and pushing a %ld MiB model...\n", size_mib);
    st_status s = !pull_s || !hash_s || !copy_s || !pull_cpu || !get_s || !cached || !stage || !old_s || !disk_s
                      ? st__fail(ST_ERR_NOMEM, "bench hubpull: no memory")
                      : ST_OK;
    if (s == ST_OK) s = write_random(src, bytes) == 0 ? ST_OK : st__fail(ST_ERR_IO, "%s: cannot write", src);
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
    if (s == ST_OK) {
        snprintf(url, sizeof url, "http://127.0.0.1:%d", st_hub_server_port(srv));
        snprintf(blob_url, sizeof blob_url, "%s/v1/blobs/%s", url, m->files[0].sha256);
    }
    for (long i = 0; s == ST_OK && i < reps; i++) {
        /* the pull and the former design, in alternating order (the disk's speed depends on
         * what was just written); each into an emptied registry, removed after */
        for (int j = 0; s == ST_OK && j < 2; j++) {
            bool former = (j + i) % 2 == 1;
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", home_b);
            if (system(cmd) != 0) {
                s = st__fail(ST_ERR_IO, "%s: cannot remove", home_b);
                break;
            }
            st_registry *rb = NULL;
            if ((s = st_registry_open(home_b, &rb)) != ST_OK) break;
            if (cold) drop_cache(blob);
            if (!former) cached[i] = cached_fraction(blob);
            st_hub_pull_stats ps;
            st_hub_client_params cp = st_hub_client_default_params();
            cp.stats = &ps;
            cp.writeback_every_bytes = wb_mib ? (uint64_t)wb_mib << 20 : UINT64_MAX;
            if (former) { /* hash on the receiving thread, one fsync at the end */
                cp.hash_on_receiving_thread = true;
                cp.writeback_every_bytes = UINT64_MAX;
            }
            double t0 = st_time_s(), c0 = cpu_s();
            s = st_hub_pull(rb, url, "bench-model", &cp, NULL);
            double t = st_time_s() - t0, c = cpu_s() - c0;
            st_registry_close(rb);
            if (s != ST_OK) break;
            if (former) {
                old_s[i] = t;
                continue;
            }
            pull_s[i] = t;
            pull_cpu[i] = c;
            double *sg = stage + (size_t)i * N_STAGES;
            sg[ST_TOTAL] = ps.total_s, sg[ST_TRANSFER] = ps.transfer_s, sg[ST_RECEIVE] = ps.receive_s;
            sg[ST_WRITE] = ps.write_s, sg[ST_READBACK] = ps.readback_s, sg[ST_HASH] = ps.hash_s;
            sg[ST_TAIL] = ps.hash_tail_s, sg[ST_FSYNC] = ps.fsync_s, sg[ST_COMMIT] = ps.commit_s;
            sg[ST_RCPU] = ps.receive_cpu_s, sg[ST_VCPU] = ps.verify_cpu_s, sg[ST_PCPU] = c;
            sg[ST_OTHER] = ps.total_s - ps.transfer_s - ps.hash_tail_s - ps.fsync_s - ps.commit_s;
        }
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", home_b); /* its pages leave the cache before the next rows */
        if (s != ST_OK || system(cmd) != 0) break;
        double t0;
        if (cold) drop_cache(blob);
        if ((get_s[i] = http_get_discard(blob_url, bytes)) < 0) s = st__fail(ST_ERR_IO, "%s: GET failed", blob_url);
        if (cold) drop_cache(blob);
        t0 = st_time_s();
        if (s == ST_OK) s = st_registry_hash_file(blob, hex, NULL);
        hash_s[i] = st_time_s() - t0;
        if (s == ST_OK && strcmp(hex, m->files[0].sha256)) s = st__fail(ST_ERR_INTERNAL, "blob hash changed");
        if (cold) drop_cache(blob);
        if (s == ST_OK && (copy_s[i] = copy_hash_fsync(blob, copy_dst)) < 0) s = st__fail(ST_ERR_IO, "%s: copy failed", copy_dst);
        if (s == ST_OK && (disk_s[i] = write_fsync(copy_dst, bytes)) < 0) s = st__fail(ST_ERR_IO, "%s: write failed", copy_dst);
    }
    if (s == ST_OK) {
        double pm = bench_median(pull_s, (int)reps), hm = bench_median(hash_s, (int)reps);
        double cm = bench_median(copy_s, (int)reps), pc = bench_median(pull_cpu, (int)reps);
        double gm = bench_median(get_s, (int)reps), cf = bench_median(cached, (int)reps);
        double om = bench_median(old_s, (int)reps), og = gb / om;
        double dm = bench_median(disk_s, (int)reps), dg = gb / dm;
        double med[N_STAGES];
        for (int k = 0; k < N_STAGES; k++) {
            for (long i = 0; i < reps; i++) col[i] = stage[(size_t)i * N_STAGES + (size_t)k];
            med[k] = bench_median(col, (int)reps);
        }
        double pg = gb / pm, hg = gb / hm, cg = gb / cm, gg = gb / gm;
        if (json) {
            printf("{\"bench\":\"hubpull\",\"bytes\":%llu,\"reps\":%ld,\"cold\":%s,\"source_cached\":%.3f,\"pull_gbs\":%.3f,"
                   "\"pull_one_thread_gbs\":%.3f,\"http_get_gbs\":%.3f,\"read_sha256_gbs\":%.3f,\"local_copy_sha256_fsync_gbs\":%.3f,"
                   "\"disk_write_fdatasync_gbs\":%.3f,\"pull_cpu_s_per_gb\":%.3f,\"ratio_vs_read_sha256\":%.3f,\"goal_gbs\":%.1f,\"ratio_vs_goal\":%.3f,"
                   "\"stages_s\":{\"total\":%.3f,\"transfer\":%.3f,\"receive\":%.3f,\"write\":%.3f,\"readback\":%.3f,"
                   "\"sha256\":%.3f,\"hash_tail\":%.3f,\"fsync\":%.3f,\"commit\":%.3f},"
                   "\"cpu_s\":{\"receiving_thread\":%.3f,\"verifying_thread\":%.3f,\"process\":%.3f}}\n",
                   (unsigned long long)bytes, reps, cold ? "true" : "false", cf, pg, og, gg, hg, cg, dg, pc / gb, pg / hg, GOAL_GBS,
                   pg / GOAL_GBS, med[ST_TOTAL], med[ST_TRANSFER], med[ST_RECEIVE], med[ST_WRITE], med[ST_READBACK],
                   med[ST_HASH], med[ST_TAIL], med[ST_FSYNC], med[ST_COMMIT], med[ST_RCPU], med[ST_VCPU], med[ST_PCPU]);
        } else {
            printf("strata bench hubpull: %ld MiB over loopback, median of %ld; served blob %.0f%% in the page cache%s\n\n",
                   size_mib, reps, cf * 100, cold ? " (--cold)" : "");
            printf("%-48s %10s %10s %8s\n", "what", "GB/s", "seconds", "pull/x");
            printf("%-48s %10.3f %10.3f %8s\n", "hub pull (HTTP + write + SHA-256 + fsync)", pg, pm, "1.00");
            printf("%-48s %10.3f %10.3f %8.2f\n", "pull, one thread + one fsync (former design)", og, om, pg / og);
            printf("%-48s %10.3f %10.3f %8.2f\n", "HTTP GET, bytes discarded (transport limit)", gg, gm, pg / gg);
            printf("%-48s %10.3f %10.3f %8.2f\n", "sequential read + SHA-256 (hashing limit)", hg, hm, pg / hg);
            printf("%-48s %10.3f %10.3f %8.2f\n", "local read + SHA-256 + write + fsync", cg, cm, pg / cg);
            printf("%-48s %10.3f %10.3f %8.2f\n", "write + fdatasync alone (disk limit, as dd)", dg, dm, pg / dg);
            printf("\nwhere the pull's time went (medians of each line, seconds; the verifying thread runs during\n"
                   "the transfer):\n");
            printf("  %-58s %8.3f\n", "transfer, first request to last byte", med[ST_TRANSFER]);
            printf("    %-56s %8.3f\n", "receiving thread: recv + curl (outside write)", med[ST_RECEIVE]);
            printf("    %-56s %8.3f\n", "receiving thread: write(2) into the page cache", med[ST_WRITE]);
            printf("    %-56s %8.3f\n", "verifying thread: read back (overlapped)", med[ST_READBACK]);
            printf("    %-56s %8.3f\n", "verifying thread: SHA-256 (overlapped)", med[ST_HASH]);
            printf("  %-58s %8.3f\n", "hash tail after the last byte", med[ST_TAIL]);
            printf("  %-58s %8.3f\n", "fsync (writeback left after the overlap)", med[ST_FSYNC]);
            printf("  %-58s %8.3f\n", "commit under the lock (rename, manifest, tag)", med[ST_COMMIT]);
            printf("  %-58s %8.3f\n", "other (tag and manifest GETs, setup)", med[ST_OTHER]);
            printf("  %-58s %8.3f\n", "total st_hub_pull", med[ST_TOTAL]);
            printf("\nCPU seconds of the pull (medians): receiving thread %.3f, verifying thread %.3f, the rest\n"
                   "(server threads, commit, setup) %.3f; in all %.2f s per GB, wall/CPU %.2f (above 0.5 on 2 cores:\n"
                   "waiting for the disk, for each other, or for a busy machine's cores)\n",
                   med[ST_RCPU], med[ST_VCPU], pc - med[ST_RCPU] - med[ST_VCPU], pc / gb, pm / pc);
            printf("goal: >= %.1f GB/s; pull %.3f GB/s = %.2fx of goal\n", GOAL_GBS, pg, pg / GOAL_GBS);
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
    free(get_s);
    free(cached);
    free(stage);
    free(old_s);
    free(disk_s);
    return rc;
}
