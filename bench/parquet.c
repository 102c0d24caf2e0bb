/*
 * parquet.c — `strata bench parquet`: scans the text column of the
 * shakespeare Parquet files (tests/data/parquet; every codec, encoding and
 * page variant there) with Strata's reader, side by side in one run with
 * DuckDB (npm @duckdb/node-api, run as a child process: node
 * bench/js/duckdb_parquet_bench.mjs FILE REPS, `SET threads=1`) when node
 * and bench/js/node_modules are present. Both single-threaded; both decode
 * every string (DuckDB sums strlen(text)). Figures are MB/s of text bytes
 * (1e6 bytes/s), medians of REPS runs after one warm-up, each run
 * open + read the text column of every row group + close. Two figures per
 * side: wall-clock and process CPU time (user+system); on a shared machine
 * the CPU-time ratio is the steadier one, and the table shows it. The goal
 * (>= 0.5x DuckDB) is printed next to the ratio, never judged.
 */
#include <glob.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "strata/parquet.h"

#define GOAL_RATIO 0.5

static void usage(void) {
    printf("usage: strata bench parquet [--file PATH] [--column C] [--reps N] [--json] "
           "[--no-duckdb]\n\n"
           "Scans a string column of Parquet files with Strata's reader and with DuckDB\n"
           "(single-threaded both) and prints MB/s of string bytes and the ratio.\n\n"
           "options:\n"
           "  --file PATH   one file (default: tests/data/parquet/shakespeare*.parquet)\n"
           "  --column C    the column (default: text)\n"
           "  --reps N      repetitions, median reported (default: 7)\n"
           "  --json        JSON Lines instead of the table\n"
           "  --no-duckdb   skip the DuckDB peer\n\n"
           "The peer needs node and bench/js/node_modules (cd bench/js && npm install),\n"
           "run from the repository root. Goal: >= %.1fx DuckDB.\n",
           GOAL_RATIO);
}

typedef struct scan {
    int64_t rows, bytes;
} scan;

static st_status one_pass(const char *path, const char *column, scan *out) {
    st_parquet_file *f;
    ST_TRY(st_parquet_open(path, NULL, &f));
    int c = st_parquet_find_column(f, column);
    st_status s = c < 0 ? st__fail(ST_ERR_INVALID_ARG, "%s: no column '%s'", path, column) : ST_OK;
    out->rows = out->bytes = 0;
    for (int g = 0; s == ST_OK && g < st_parquet_n_row_groups(f); g++) {
        st_pq_column *col;
        s = st_parquet_read_column(f, g, c, &col);
        if (s != ST_OK) break;
        out->rows += col->n_values;
        out->bytes += col->offsets ? col->offsets[col->n_present] : 0;
        st_pq_column_free(col);
    }
    st_parquet_close(f);
    return s;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct peer {
    double seconds, cpu_seconds;
    int64_t bytes, rows;
} peer;

static peer run_duckdb(const char *file, const char *column, int reps) {
    peer r = {0, 0, 0, 0};
    if (access("bench/js/node_modules/@duckdb/node-api", F_OK) != 0) return r;
    if (system("command -v node >/dev/null 2>&1") != 0) return r;
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "node bench/js/duckdb_parquet_bench.mjs '%s' %d '%s'", file, reps,
             column);
    FILE *p = popen(cmd, "r");
    if (!p) return r;
    char line[4096];
    while (fgets(line, sizeof line, p)) {
        json_t *o = json_loads(line, 0, NULL);
        if (o && json_object_get(o, "seconds")) {
            r.seconds = json_number_value(json_object_get(o, "seconds"));
            r.cpu_seconds = json_number_value(json_object_get(o, "cpu_seconds"));
            r.bytes = (int64_t)json_integer_value(json_object_get(o, "bytes"));
            r.rows = (int64_t)json_integer_value(json_object_get(o, "rows"));
        }
        json_decref(o);
    }
    pclose(p);
    return r;
}

int bench_parquet_main(int argc, char **argv) {
    const char *file = NULL, *column = "text";
    int reps = 7;
    bool json = false, duck = true;
    for (int i = 1; i < argc; i++) {
        long v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "--column") == 0 && i + 1 < argc)
            column = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc && cli_parse_long(argv[++i], &v) &&
                 v >= 1 && v <= 1000)
            reps = (int)v;
        else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--no-duckdb") == 0)
            duck = false;
        else
            return cli_usage_error("bench parquet", "bad option '%s'", argv[i]);
    }
    glob_t gl;
    memset(&gl, 0, sizeof gl);
    if (!file && glob("tests/data/parquet/shakespeare*.parquet", 0, NULL, &gl) != 0) {
        fprintf(stderr, "strata bench parquet: no tests/data/parquet/shakespeare*.parquet here "
                        "(run from the repository root, or pass --file)\n");
        return 1;
    }
    size_t n_files = file ? 1 : gl.gl_pathc;
    double *t = malloc((size_t)reps * sizeof *t), *tc = malloc((size_t)reps * sizeof *tc);
    double *ratios = malloc((n_files + 1) * sizeof *ratios);
    int n_ratios = 0, rc = 0;
    if (!json)
        printf("Parquet scan of column '%s', 1 thread each, median of %d runs\n"
               "(MB/s of string bytes per CPU second; wall ratio: the same by wall clock)\n"
               "%-40s %6s %8s %12s %12s %8s %10s %6s\n",
               column, reps, "file", "rows", "MB", "strata MB/s", "DuckDB MB/s", "ratio",
               "wall ratio", "goal");
    for (size_t k = 0; k < n_files && rc == 0; k++) {
        const char *path = file ? file : gl.gl_pathv[k];
        scan sc = {0, 0};
        for (int r = -1; r < reps; r++) {
            double t0 = st_time_s(), c0 = cpu_s();
            st_status s = one_pass(path, column, &sc);
            double dt = st_time_s() - t0, dc = cpu_s() - c0;
            if (s != ST_OK) {
                rc = cli_fail("bench parquet", s);
                break;
            }
            if (r >= 0) t[r] = dt, tc[r] = dc;
        }
        if (rc) break;
        double secs = bench_median(t, reps), csecs = bench_median(tc, reps);
        double mbs = (double)sc.bytes / csecs / 1e6, wmbs = (double)sc.bytes / secs / 1e6;
        peer pd = duck ? run_duckdb(path, column, reps) : (peer){0, 0, 0, 0};
        double dmbs = pd.cpu_seconds > 0 ? (double)pd.bytes / pd.cpu_seconds / 1e6 : 0;
        double dwmbs = pd.seconds > 0 ? (double)pd.bytes / pd.seconds / 1e6 : 0;
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        if (dmbs > 0) ratios[n_ratios++] = mbs / dmbs;
        if (json) {
            printf("{\"bench\":\"parquet\",\"file\":\"%s\",\"column\":\"%s\",\"rows\":%lld,"
                   "\"bytes\":%lld,"
                   "\"strata_mb_per_s\":%.2f,\"strata_cpu_seconds\":%.6f,\"strata_wall_mb_per_s\":%"
                   ".2f",
                   base, column, (long long)sc.rows, (long long)sc.bytes, mbs, csecs, wmbs);
            if (dmbs > 0)
                printf(",\"duckdb_mb_per_s\":%.2f,\"duckdb_cpu_seconds\":%.6f,\"duckdb_wall_mb_per_"
                       "s\":%.2f,"
                       "\"ratio\":%.3f,\"wall_ratio\":%.3f,\"goal_ratio\":%.1f",
                       dmbs, pd.cpu_seconds, dwmbs, mbs / dmbs, dwmbs > 0 ? wmbs / dwmbs : 0,
                       GOAL_RATIO);
            printf("}\n");
        } else if (dmbs > 0) {
            printf("%-40s %6lld %8.2f %12.1f %12.1f %7.2fx %9.2fx %5.1fx+%s\n", base,
                   (long long)sc.rows, sc.bytes / 1e6, mbs, dmbs, mbs / dmbs,
                   dwmbs > 0 ? wmbs / dwmbs : 0, GOAL_RATIO,
                   pd.bytes == sc.bytes && pd.rows == sc.rows ? ""
                                                              : "  (byte or row counts differ!)");
        } else {
            printf("%-40s %6lld %8.2f %12.1f %12s %8s %10s %5.1fx+\n", base, (long long)sc.rows,
                   sc.bytes / 1e6, mbs, "-", "-", "-", GOAL_RATIO);
        }
    }
    if (rc == 0 && !json && n_ratios > 1)
        printf("median ratio over %d files: %.2fx\n", n_ratios, bench_median(ratios, n_ratios));
    if (rc == 0 && duck && n_ratios == 0 && !json)
        printf("DuckDB: not installed (cd bench/js && npm install)\n");
    free(t);
    free(tc);
    free(ratios);
    if (!file) globfree(&gl);
    return rc;
}
