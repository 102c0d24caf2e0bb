/*
 * dist.c — `strata bench dist`: data-parallel training throughput at 1 and
 * 2 ranks (strata/dist.h), measured side by side in one run.
 *
 * It launches `mpirun -np 1` and `mpirun -np 2` of this same binary's
 * `strata train` on shakespeare-char (data/tinyshakespeare.txt; nanoGPT's
 * 6-layer, 384-wide configuration) with STRATA_THREADS=1 per rank, the
 * same per-rank batch (weak scaling: 2 ranks train on twice the rows per
 * step) and --steps steps, and reads rank 0's --json summary: tokens/s over
 * the steps after the first (the first pays allocations and page faults),
 * and the seconds the training thread waited for gradient buckets after
 * backward (all-reduce not hidden behind backward) as a share of the step
 * time. Each size runs --reps times, alternating, and medians are printed;
 * the speedup is 2-rank tokens/s over 1-rank tokens/s (goal >= 1.8x). With
 * --overlap all the three overlap modes (thread, poll, none) are measured.
 * Runs write into a temporary directory that is removed afterwards;
 * tracking is off.
 *
 * Ownership: everything is local to bench_dist_main. Threads: this process
 * waits; the ranks are other processes.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

typedef struct {
    int steps, batch, reps;
    const char *config, *data, *overlap;
    bool json;
} opts;

static void usage(FILE *f) {
    fprintf(f, "usage: strata bench dist [options]\n\n"
               "Data-parallel training tokens/s at 1 and 2 MPI ranks (mpirun, 1 thread each)\n"
               "on shakespeare-char, the speedup (goal >= 1.8x) and the share of the step\n"
               "time spent in all-reduce not hidden behind backward.\n\n"
               "options:\n"
               "  --config NAME   training configuration (default shakespeare-char)\n"
               "  --data PATH     training text (default data/tinyshakespeare.txt, else\n"
               "                  $STRATA_SOURCE_DIR/data/tinyshakespeare.txt)\n"
               "  --batch B       rows per rank per step (default 8)\n"
               "  --steps N       steps per run, the first not timed (default 4)\n"
               "  --reps R        runs of each size; medians (default 3)\n"
               "  --overlap M     auto, thread, poll, none or all (default auto, as\n"
               "                  strata train; all: thread, poll and none)\n"
               "  --json          JSON lines instead of the table\n"
               "Environment: MPIRUN_ARGS adds options to mpirun (e.g. --mca btl self,vader).\n");
}

typedef struct {
    double tps, exposed_share, comm_s_per_step, step_s;
    bool ok;
} run_result;

/* Runs mpirun -np n ... and parses rank 0's last stdout line. */
static run_result run_once(const opts *o, const char *self, const char *data, const char *dir,
                           int n, const char *overlap, int rep) {
    run_result r = {0};
    char out[PATH_MAX + 64], cmd[6 * PATH_MAX];
    snprintf(out, sizeof out, "%s/run-%d-%s-%d", dir, n, overlap, rep);
    const char *extra = getenv("MPIRUN_ARGS");
    snprintf(cmd, sizeof cmd,
             "STRATA_THREADS=1 STRATA_TRACKING=off mpirun -np %d --oversubscribe --bind-to none %s "
             "%s -x STRATA_THREADS -x STRATA_TRACKING '%s' train --config '%s' --data '%s' "
             "--out '%s' --steps %d --batch %d --eval-iters 1 --eval-every 1000000 "
             "--dist-overlap %s --json 2>'%s.err'",
             n, geteuid() == 0 ? "--allow-run-as-root" : "", extra ? extra : "", self, o->config,
             data, out, o->steps, o->batch, overlap, out);
    FILE *p = popen(cmd, "r");
    if (!p) return r;
    char line[8192], last[8192] = "";
    while (fgets(line, sizeof line, p))
        if (line[0] == '{') snprintf(last, sizeof last, "%s", line);
    int rc = pclose(p);
    if (rc != 0) {
        fprintf(stderr, "bench dist: %d-rank run failed (exit %d); see %s.err:\n", n,
                WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, out);
        char e[PATH_MAX + 256];
        snprintf(e, sizeof e, "tail -5 '%s.err' >&2", out);
        if (system(e) != 0) { /* nothing more to show */
        }
        return r;
    }
    json_t *j = json_loads(last, 0, NULL);
    if (!j) return r;
    double tt = json_number_value(json_object_get(j, "train_time_s"));
    double f = json_number_value(json_object_get(j, "first_step_s"));
    double tps_all = json_number_value(json_object_get(j, "tokens_per_s"));
    double exposed = json_number_value(json_object_get(j, "allreduce_exposed_s"));
    double comm = json_number_value(json_object_get(j, "allreduce_s"));
    json_decref(j);
    double timed = tt - f;
    int steps = o->steps - 1;
    if (timed > 0 && steps > 0) {
        /* tokens per step from the summary's rate over all steps */
        double per_step = tps_all * tt / (double)o->steps;
        r.tps = per_step * steps / timed;
        r.exposed_share = exposed / timed;
        r.comm_s_per_step = comm / steps;
        r.step_s = timed / steps;
        r.ok = true;
    }
    return r;
}

static int find_data(const char *given, char *buf, size_t n) {
    if (given) {
        snprintf(buf, n, "%s", given);
        return access(buf, R_OK) == 0 ? 0 : -1;
    }
    snprintf(buf, n, "data/tinyshakespeare.txt");
    if (access(buf, R_OK) == 0) return 0;
    const char *src = getenv("STRATA_SOURCE_DIR");
    if (src) {
        snprintf(buf, n, "%s/data/tinyshakespeare.txt", src);
        if (access(buf, R_OK) == 0) return 0;
    }
    return -1;
}

int bench_dist_main(int argc, char **argv) {
    opts o = {.steps = 4, .batch = 8, .reps = 3, .config = "shakespeare-char", .overlap = "auto"};
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x = 0;
        if (!strcmp(k, "--json")) {
            o.json = true;
            continue;
        }
        if (!v) return cli_usage_error("bench dist", "%s needs a value", k);
        i++;
        if (!strcmp(k, "--config"))
            o.config = v;
        else if (!strcmp(k, "--data"))
            o.data = v;
        else if (!strcmp(k, "--overlap")) {
            if (strcmp(v, "auto") && strcmp(v, "thread") && strcmp(v, "poll") && strcmp(v, "none") &&
                strcmp(v, "all"))
                return cli_usage_error("bench dist", "bad --overlap '%s'", v);
            o.overlap = v;
        } else if (!strcmp(k, "--steps") && cli_parse_long(v, &x) && x >= 2 && x <= 100000)
            o.steps = (int)x;
        else if (!strcmp(k, "--batch") && cli_parse_long(v, &x) && x >= 1 && x <= 4096)
            o.batch = (int)x;
        else if (!strcmp(k, "--reps") && cli_parse_long(v, &x) && x >= 1 && x <= 50)
            o.reps = (int)x;
        else
            return cli_usage_error("bench dist", "bad option or value: %s %s", k, v);
    }
    char data[PATH_MAX], self[PATH_MAX];
    if (find_data(o.data, data, sizeof data) != 0) {
        fprintf(stderr, "bench dist: %s not found (--data PATH or STRATA_SOURCE_DIR)\n",
                o.data ? o.data : "data/tinyshakespeare.txt");
        return 1;
    }
    char *abs = realpath(data, NULL);
    if (abs) {
        snprintf(data, sizeof data, "%s", abs);
        free(abs);
    }
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sn <= 0) {
        fprintf(stderr, "bench dist: cannot find this program's path: %s\n", strerror(errno));
        return 1;
    }
    self[sn] = '\0';
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        fprintf(stderr, "bench dist: mpirun not found (apt-get install openmpi-bin)\n");
        return 1;
    }
    char dir[] = "/tmp/strata-bench-dist-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "bench dist: cannot make a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    const char *modes[3] = {"thread", "poll", "none"};
    int n_modes = !strcmp(o.overlap, "all") ? 3 : 1;
    if (n_modes == 1) modes[0] = o.overlap;
    if (!o.json)
        printf("strata bench dist: %s, batch %d per rank, %d steps (first untimed), "
               "STRATA_THREADS=1 per rank, median of %d\n",
               o.config, o.batch, o.steps, o.reps);
    fflush(stdout);
    double one[50], two[3][50], exp_[3][50], comm[3][50], st1[50], st2[3][50];
    int n1 = 0, n2[3] = {0, 0, 0};
    int rc = 0;
    for (int rep = 0; rep < o.reps; rep++) {
        run_result a = run_once(&o, self, data, dir, 1, modes[0], rep);
        if (a.ok) {
            one[n1] = a.tps;
            st1[n1++] = a.step_s;
        }
        for (int m = 0; m < n_modes; m++) {
            run_result b = run_once(&o, self, data, dir, 2, modes[m], rep);
            if (!b.ok) continue;
            two[m][n2[m]] = b.tps;
            exp_[m][n2[m]] = b.exposed_share;
            comm[m][n2[m]] = b.comm_s_per_step;
            st2[m][n2[m]++] = b.step_s;
        }
    }
    if (n1 == 0) {
        fprintf(stderr, "bench dist: no 1-rank run succeeded\n");
        rc = 1;
        goto out;
    }
    double t1 = bench_median(one, n1), s1 = bench_median(st1, n1);
    if (o.json)
        printf("{\"bench\": \"dist\", \"ranks\": 1, \"config\": \"%s\", \"batch_per_rank\": %d, "
               "\"tokens_per_s\": %.1f, \"step_s\": %.4f, \"runs\": %d}\n",
               o.config, o.batch, t1, s1, n1);
    else {
        printf("\n%-6s %-8s %12s %10s %9s %16s %14s\n", "ranks", "overlap", "tokens/s", "step s",
               "speedup", "all-reduce s/step", "not hidden");
        printf("%-6d %-8s %12.0f %10.3f %8.2fx %16s %14s\n", 1, "-", t1, s1, 1.0, "-", "-");
    }
    for (int m = 0; m < n_modes; m++) {
        if (n2[m] == 0) {
            rc = 1;
            continue;
        }
        double t2 = bench_median(two[m], n2[m]), e2 = bench_median(exp_[m], n2[m]);
        double c2 = bench_median(comm[m], n2[m]), s2 = bench_median(st2[m], n2[m]);
        if (o.json)
            printf(
                "{\"bench\": \"dist\", \"ranks\": 2, \"overlap\": \"%s\", \"tokens_per_s\": %.1f, "
                "\"step_s\": %.4f, \"speedup\": %.4f, \"allreduce_s_per_step\": %.6f, "
                "\"allreduce_exposed_share\": %.6f, \"goal_speedup\": 1.8, \"runs\": %d}\n",
                modes[m], t2, s2, t2 / t1, c2, e2, n2[m]);
        else
            printf("%-6d %-8s %12.0f %10.3f %8.2fx %16.4f %13.1f%%\n", 2, modes[m], t2, s2, t2 / t1,
                   c2, 100.0 * e2);
    }
    if (!o.json)
        printf("\ngoal: >= 1.80x at 2 ranks. \"not hidden\": time the training thread waited for\n"
               "gradient buckets after backward, as a share of the step time.\n");
out : {
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0) fprintf(stderr, "bench dist: could not remove %s\n", dir);
}
    return rc;
}
