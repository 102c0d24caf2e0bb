/*
 * vec.c — `strata bench vec`: the vector index against FAISS.
 *
 * Generates (seeded) N clustered vectors of dimension D and NQ queries from
 * the same clusters, then measures, side by side in one run and on the same
 * number of threads:
 *   - HNSW build time (M, efConstruction), median of --reps builds, in wall
 *     seconds and in process CPU seconds (the work done, whatever share of
 *     a shared machine's cores the run got),
 *   - HNSW queries per second at efSearch (median of --search-reps batch
 *     searches of all queries after a warm-up) and recall@k against the
 *     exact answer (Strata's flat search; FAISS's flat ids are compared with
 *     it too),
 *   - flat (exact) search queries per second,
 * for Strata and for FAISS (IndexHNSWFlat, IndexFlatL2 through
 * bench/vec_faiss.py under /usr/bin/python3, which reads the same vectors
 * from .npy files in a temporary directory). Prints a table of ratios with
 * the goals next to them (recall >= 0.95, QPS >= 1.0x FAISS, build time <=
 * FAISS's, flat >= 0.8x), or JSON Lines with --json; never judges.
 */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "strata/vecindex.h"

int bench_vec_main(int argc, char **argv);

typedef struct vec_opts {
    long n, nq, dim, clusters, m, efc, ef, k, reps, search_reps, threads;
    double sigma;
    long seed;
    bool json, faiss;
} vec_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata bench vec [--n N] [--nq N] [--dim D] [--clusters C] [--sigma S]\n"
            "                        [--m M] [--ef-construction E] [--ef E] [-k K]\n"
            "                        [--reps R] [--search-reps R] [--threads T] [--seed S]\n"
            "                        [--no-faiss] [--json]\n\n"
            "HNSW build time, queries/s and recall@k, and flat (exact) queries/s of\n"
            "strata's vector index next to FAISS's IndexHNSWFlat and IndexFlatL2 on the\n"
            "same generated vectors, the same parameters and the same threads.\n\n"
            "options (defaults):\n"
            "  --n N               base vectors (100000)\n"
            "  --nq N              queries (1000)\n"
            "  --dim D             dimension (128)\n"
            "  --clusters C        Gaussian clusters, centres N(0,1) (100)\n"
            "  --sigma S           spread of a cluster (0.5)\n"
            "  --m M               HNSW links per node (16; 32 on layer 0)\n"
            "  --ef-construction E (200)\n"
            "  --ef E              efSearch (64)\n"
            "  -k K                results per query (10)\n"
            "  --reps R            builds per library; the median is reported (3)\n"
            "  --search-reps R     timed batch searches after a warm-up (5)\n"
            "  --threads T         threads for both (STRATA_THREADS, else all CPUs)\n"
            "  --seed S            data seed (1)\n"
            "  --no-faiss          skip the FAISS side\n"
            "  --json              JSON Lines instead of the table\n\n"
            "FAISS runs as /usr/bin/python3 bench/vec_faiss.py (Debian python3-faiss,\n"
            "python3-numpy), found through STRATA_SOURCE_DIR, ./bench or the source tree.\n"
            "Goals: recall@10 >= 0.95, HNSW QPS >= 1.0x FAISS, build time <= FAISS's,\n"
            "flat QPS >= 0.8x FAISS.\n");
}

static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float gauss(uint64_t *s) {
    double u = ((double)(rnd(s) >> 11) + 1.0) * 0x1.0p-53, v = (double)(rnd(s) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static bool find_script(char *out, size_t n) {
    const char *env = getenv("STRATA_SOURCE_DIR");
    if (env) {
        snprintf(out, n, "%s/bench/vec_faiss.py", env);
        if (access(out, R_OK) == 0) return true;
    }
    snprintf(out, n, "bench/vec_faiss.py");
    if (access(out, R_OK) == 0) return true;
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        for (int up = 0; up < 2; up++) {
            char *sl = strrchr(exe, '/');
            if (!sl) break;
            *sl = '\0';
        }
        snprintf(out, n, "%s/bench/vec_faiss.py", exe);
        if (access(out, R_OK) == 0) return true;
    }
    return false;
}

/* CPU seconds of the process (all threads): on a shared machine, the work
 * done, whatever share of the cores the run got. */
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double recall(const int64_t *got, const int64_t *ref, int64_t nq, int k) {
    int64_t hit = 0;
    for (int64_t i = 0; i < nq; i++)
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                if (got[i * k + b] == ref[i * k + a]) {
                    hit++;
                    break;
                }
    return (double)hit / (double)(nq * k);
}

static double json_median(json_t *arr) {
    int n = (int)json_array_size(arr);
    if (n <= 0) return -1;
    double v[64];
    if (n > 64) n = 64;
    for (int i = 0; i < n; i++) v[i] = json_number_value(json_array_get(arr, (size_t)i));
    return bench_median(v, n);
}

typedef struct faiss_fig {
    double build_s, build_cpu_s, hnsw_qps, flat_qps, recall, flat_agree;
    char version[32];
} faiss_fig;

static bool faiss_side(const vec_opts *o, const char *dir, const int64_t *gt, faiss_fig *f,
                       char *why, size_t nwhy) {
    char script[PATH_MAX + 64], cmd[2 * PATH_MAX + 512];
    if (!find_script(script, sizeof script)) {
        snprintf(why, nwhy, "bench/vec_faiss.py not found (set STRATA_SOURCE_DIR)");
        return false;
    }
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s' --base '%s/x.npy' --queries '%s/q.npy' --out '%s/faiss' "
             "--m %ld --ef-construction %ld --ef %ld -k %ld --reps %ld --search-reps %ld "
             "--threads %ld",
             script, dir, dir, dir, o->m, o->efc, o->ef, o->k, o->reps, o->search_reps,
             o->threads);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, nwhy, "cannot run /usr/bin/python3");
        return false;
    }
    char line[8192] = "", last[8192] = "";
    while (fgets(line, sizeof line, p))
        if (line[0] == '{') snprintf(last, sizeof last, "%s", line);
    int rc = pclose(p);
    json_t *j = last[0] ? json_loads(last, 0, NULL) : NULL;
    if (!j) {
        snprintf(why, nwhy, "%s", rc == 3 << 8 ? "faiss or numpy not importable by /usr/bin/python3 "
                                                 "(apt-get install python3-faiss)"
                                               : "vec_faiss.py failed");
        return false;
    }
    f->build_s = json_median(json_object_get(j, "build_s"));
    f->build_cpu_s = json_median(json_object_get(j, "build_cpu_s"));
    f->hnsw_qps = json_median(json_object_get(j, "hnsw_qps"));
    f->flat_qps = json_median(json_object_get(j, "flat_qps"));
    snprintf(f->version, sizeof f->version, "%s",
             json_string_value(json_object_get(j, "faiss_version")) ?: "?");
    json_decref(j);
    char path[PATH_MAX + 32];
    int64_t *ids = NULL, n = 0;
    int d = 0;
    snprintf(path, sizeof path, "%s/faiss_hnsw.npy", dir);
    if (st_vec_read_ids(path, &ids, &n, &d) != ST_OK || n != o->nq || d != o->k) {
        snprintf(why, nwhy, "faiss ids unreadable: %s", st_last_error());
        st_free(ids);
        return false;
    }
    f->recall = recall(ids, gt, o->nq, (int)o->k);
    st_free(ids);
    snprintf(path, sizeof path, "%s/faiss_flat.npy", dir);
    if (st_vec_read_ids(path, &ids, &n, &d) != ST_OK || n != o->nq || d != o->k) {
        snprintf(why, nwhy, "faiss flat ids unreadable: %s", st_last_error());
        st_free(ids);
        return false;
    }
    f->flat_agree = recall(ids, gt, o->nq, (int)o->k);
    st_free(ids);
    return true;
}

static bool parse(int argc, char **argv, vec_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long *dst = NULL;
        if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "--no-faiss")) o->faiss = false;
        else if (!strcmp(a, "--sigma") && i + 1 < argc) {
            if (!cli_parse_double(argv[++i], &o->sigma) || !(o->sigma > 0)) return false;
        } else {
            if (!strcmp(a, "--n")) dst = &o->n;
            else if (!strcmp(a, "--nq")) dst = &o->nq;
            else if (!strcmp(a, "--dim")) dst = &o->dim;
            else if (!strcmp(a, "--clusters")) dst = &o->clusters;
            else if (!strcmp(a, "--m")) dst = &o->m;
            else if (!strcmp(a, "--ef-construction")) dst = &o->efc;
            else if (!strcmp(a, "--ef")) dst = &o->ef;
            else if (!strcmp(a, "-k")) dst = &o->k;
            else if (!strcmp(a, "--reps")) dst = &o->reps;
            else if (!strcmp(a, "--search-reps")) dst = &o->search_reps;
            else if (!strcmp(a, "--threads")) dst = &o->threads;
            else if (!strcmp(a, "--seed")) dst = &o->seed;
            if (!dst || i + 1 >= argc || !cli_parse_long(argv[++i], dst)) return false;
            if (*dst < (dst == &o->seed ? 0 : 1)) return false;
        }
    }
    return o->reps <= 64 && o->search_reps <= 64 && o->dim <= 65536 && o->k <= o->n;
}

static void row(const vec_opts *o, const char *what, double s, double f, double ratio,
                const char *goal) {
    if (o->json) {
        printf("{\"bench\":\"vec\",\"metric\":\"%s\",\"strata\":%.6g,\"faiss\":%.6g,\"ratio\":%.4g,"
               "\"goal\":\"%s\",\"n\":%ld,\"dim\":%ld,\"threads\":%ld}\n",
               what, s, f, ratio, goal, o->n, o->dim, o->threads);
        return;
    }
    char fs[32] = "-", rs[32] = "-";
    if (f >= 0) snprintf(fs, sizeof fs, "%.4g", f);
    if (ratio >= 0) snprintf(rs, sizeof rs, "%.2fx", ratio);
    printf("%-26s %12.4g %12s %9s   %s\n", what, s, fs, rs, goal);
}

int bench_vec_main(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    vec_opts o = {.n = 100000, .nq = 1000, .dim = 128, .clusters = 100, .m = 16, .efc = 200,
                  .ef = 64, .k = 10, .reps = 3, .search_reps = 5, .sigma = 0.5, .seed = 1,
                  .faiss = true};
    st_ctx_params cp = st_ctx_default_params();
    if (!parse(argc, argv, &o)) return cli_usage_error("bench vec", "bad option");
    cp.cpu.n_threads = (int)(o.threads > 0 ? o.threads : 0);
    st_ctx *ctx = NULL;
    st_status s = st_ctx_new(&cp, &ctx);
    if (s) return cli_fail("bench vec", s);
    o.threads = st_ctx_n_threads(ctx);
    int d = (int)o.dim, k = (int)o.k;
    /* data: base and queries around the same centres */
    uint64_t rs = (uint64_t)o.seed * 0x2545F4914F6CDD1Dull + 1;
    float *c = malloc((size_t)o.clusters * d * 4), *x = malloc((size_t)o.n * d * 4),
          *q = malloc((size_t)o.nq * d * 4);
    int64_t *gt = malloc((size_t)o.nq * k * 8), *ids = malloc((size_t)o.nq * k * 8);
    double *bt = calloc((size_t)o.reps, 8), *bc = calloc((size_t)o.reps, 8), *qt = calloc((size_t)o.search_reps, 8),
           *ft = calloc((size_t)o.search_reps, 8);
    char dir[] = "/tmp/strata_bench_vec_XXXXXX";
    int rc = 1;
    st_vecindex *flat = NULL, *hnsw = NULL;
    if (!c || !x || !q || !gt || !ids || !bt || !bc || !qt || !ft || !mkdtemp(dir)) {
        fprintf(stderr, "strata bench vec: out of memory or no temporary directory\n");
        goto done;
    }
    for (long i = 0; i < o.clusters * d; i++) c[i] = gauss(&rs);
    for (long i = 0; i < o.n + o.nq; i++) {
        float *v = i < o.n ? x + i * d : q + (i - o.n) * d;
        const float *cc = c + (rnd(&rs) % (uint64_t)o.clusters) * d;
        for (int j = 0; j < d; j++) v[j] = cc[j] + (float)o.sigma * gauss(&rs);
    }
    char px[64], pq[64];
    snprintf(px, sizeof px, "%s/x.npy", dir);
    snprintf(pq, sizeof pq, "%s/q.npy", dir);
    if ((s = st_vec_write(px, x, o.n, d)) || (s = st_vec_write(pq, q, o.nq, d))) {
        cli_fail("bench vec", s);
        goto done;
    }
    /* strata: flat (the ground truth, then timed) */
    st_vecindex_params p = st_vecindex_default_params();
    p.dim = d, p.kind = ST_VEC_FLAT;
    st_vec_search_params sp = st_vec_search_default_params();
    sp.k = k, sp.ef = (int)o.ef;
    if ((s = st_vecindex_new(&p, &flat)) || (s = st_vecindex_add(flat, ctx, o.n, x, NULL)) ||
        (s = st_vecindex_search(flat, ctx, o.nq, q, &sp, gt, NULL))) {
        cli_fail("bench vec", s);
        goto done;
    }
    for (long r = 0; r < o.search_reps; r++) {
        double t0 = st_time_s();
        if ((s = st_vecindex_search(flat, ctx, o.nq, q, &sp, ids, NULL))) break;
        ft[r] = (double)o.nq / (st_time_s() - t0);
    }
    if (s) {
        cli_fail("bench vec", s);
        goto done;
    }
    /* strata: HNSW */
    p.kind = ST_VEC_HNSW, p.m = (int)o.m, p.ef_construction = (int)o.efc;
    for (long r = 0; r < o.reps; r++) {
        st_vecindex_free(hnsw);
        hnsw = NULL;
        double t0 = st_time_s(), c0 = cpu_s();
        if ((s = st_vecindex_new(&p, &hnsw)) || (s = st_vecindex_add(hnsw, ctx, o.n, x, NULL)))
            break;
        bt[r] = st_time_s() - t0;
        bc[r] = cpu_s() - c0;
        if (!o.json)
            fprintf(stderr, "strata: HNSW build %ld/%ld: %.2f s (%.2f CPU s)\n", r + 1, o.reps,
                    bt[r], bc[r]);
    }
    if (!s) s = st_vecindex_search(hnsw, ctx, o.nq, q, &sp, ids, NULL); /* warm-up */
    for (long r = 0; r < o.search_reps && !s; r++) {
        double t0 = st_time_s();
        if ((s = st_vecindex_search(hnsw, ctx, o.nq, q, &sp, ids, NULL))) break;
        qt[r] = (double)o.nq / (st_time_s() - t0);
    }
    if (s) {
        cli_fail("bench vec", s);
        goto done;
    }
    double rec = recall(ids, gt, o.nq, k);
    double bc_med = bench_median(bc, (int)o.reps);
    double b_med = bench_median(bt, (int)o.reps), q_med = bench_median(qt, (int)o.search_reps);
    double f_med = bench_median(ft, (int)o.search_reps);
    faiss_fig ff = {-1, -1, -1, -1, -1, -1, ""};
    char why[256] = "";
    if (o.faiss) {
        if (!o.json) fprintf(stderr, "faiss: running bench/vec_faiss.py ...\n");
        if (!faiss_side(&o, dir, gt, &ff, why, sizeof why))
            fprintf(stderr, "strata bench vec: FAISS side skipped: %s\n", why);
    }
    if (!o.json) {
        printf("vector index: %ld x %ld clustered (%ld clusters, sigma %g), %ld queries, k %d,\n"
               "HNSW M %ld, efConstruction %ld, efSearch %ld; %ld thread(s); medians of %ld builds"
               " / %ld searches; FAISS %s\n\n",
               o.n, o.dim, o.clusters, o.sigma, o.nq, k, o.m, o.efc, o.ef, o.threads, o.reps,
               o.search_reps, ff.version[0] ? ff.version : "not run");
        printf("%-26s %12s %12s %9s   %s\n", "", "strata", "faiss", "ratio", "goal");
    }
    bool have = ff.build_s > 0;
    row(&o, "hnsw_build_s", b_med, have ? ff.build_s : -1, have ? ff.build_s / b_med : -1,
        "faiss/strata >= 1.0");
    row(&o, "hnsw_build_cpu_s", bc_med, have ? ff.build_cpu_s : -1,
        have ? ff.build_cpu_s / bc_med : -1, "faiss/strata >= 1.0");
    row(&o, "hnsw_qps", q_med, have ? ff.hnsw_qps : -1, have ? q_med / ff.hnsw_qps : -1,
        ">= 1.0x faiss");
    row(&o, "hnsw_recall_at_k", rec, have ? ff.recall : -1, have ? rec / ff.recall : -1,
        ">= 0.95");
    row(&o, "flat_qps", f_med, have ? ff.flat_qps : -1, have ? f_med / ff.flat_qps : -1,
        ">= 0.8x faiss");
    if (have && !o.json)
        printf("\n(FAISS IndexFlatL2 agrees with strata's flat search on %.4f of the top-%d ids)\n",
               ff.flat_agree, k);
    rc = 0;
done:
    st_vecindex_free(flat);
    st_vecindex_free(hnsw);
    st_ctx_free(ctx);
    free(c), free(x), free(q), free(gt), free(ids), free(bt), free(bc), free(qt), free(ft);
    if (dir[sizeof dir - 7] != 'X') {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "strata bench vec: could not remove %s\n", dir);
    }
    return rc;
}
