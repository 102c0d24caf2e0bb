/*
 * hw.c — `strata hw`: what this machine is (layer 1) and, with --measure,
 * its roofline (peak sgemm GFLOP/s, copy/triad GB/s, ridge point).
 *
 * Reads everything through strata/hw.h; prints either an aligned report for
 * people or one JSON object (jansson) for scripts. All memory is local to
 * cmd_hw and freed before it returns. Single-threaded apart from the probe
 * threads st_hw_measure_run() starts and joins.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "strata/hw.h"

#define SUB "hw"
#define MAX_THREADS 4096

static void print_help(void) {
    printf(
        "usage: strata hw [--measure] [--json] [--threads N]\n"
        "\n"
        "Describe this machine as Strata sees it: the CPU and its SIMD features, the\n"
        "kernel level Strata will dispatch to, caches, memory, NUMA nodes, the BLAS\n"
        "library and the GPUs. Reading it is cheap (cpuid, sysfs, /proc; no probes).\n"
        "\n"
        "options:\n"
        "  --measure      also run the roofline probes (about 1-3 s): peak FP32\n"
        "                 GFLOP/s of a 2048x2048x2048 BLAS sgemm, and memory bandwidth\n"
        "                 in GB/s (1e9 bytes/s) of STREAM-style copy and triad kernels\n"
        "                 over three 256 MiB float arrays (less when memory is short:\n"
        "                 at most 1/8 of the available memory in all)\n"
        "  --threads N    threads for the probes (default: STRATA_THREADS, else all\n"
        "                 logical CPUs)\n"
        "  --json         print one JSON object instead of the report (keys in\n"
        "                 docs/L1-hardware.md)\n"
        "  -h, --help     this text\n"
        "\n"
        "environment:\n"
        "  STRATA_SIMD    scalar|avx2|avx512|neon: cap the kernel level (it can only\n"
        "                 lower it; an unknown or unsupported value is reported and\n"
        "                 the best level is kept)\n"
        "  STRATA_THREADS default for --threads\n"
        "\n"
        "fields:\n"
        "  topology       sockets (physical packages), physical cores, logical CPUs online\n"
        "  SIMD           features the CPU has AND the OS enabled (XCR0); AMX may still\n"
        "                 need a per-process permission request on Linux\n"
        "  kernel level   avx512 needs AVX-512 F/BW/VL/DQ; avx2 needs AVX2+FMA+F16C\n"
        "  caches         L1d and L2 per core, L3 in total for one socket\n"
        "  memory         total and available (MemAvailable) RAM, GiB = 2^30 bytes\n"
        "  BLAS           library, version, the kernel set it picked for this CPU\n"
        "                 (core) and its thread count\n"
        "  sgemm          best GFLOP/s = 2 n^3 / time over the repetitions\n"
        "  copy, triad    bytes read + written per second: copy 8 B/element (a=b),\n"
        "                 triad 12 B/element (a=b+s*c); best repetition\n"
        "  ridge          sgemm GFLOP/s / triad GB/s: the arithmetic intensity\n"
        "                 (FLOP/byte) above which a kernel is compute-bound\n"
        "\n"
        "exit status: 0 ok, 1 a probe failed, 2 bad usage\n");
}

/* "48 KiB", "1 MiB", "23.5 GiB". */
static void fmt_bytes(char *buf, size_t cap, uint64_t b) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (v == (double)(uint64_t)v) snprintf(buf, cap, "%llu %s", (unsigned long long)v, units[u]);
    else snprintf(buf, cap, "%.1f %s", v, units[u]);
}

/* "13000" -> "13.0" (CUDA's 1000*major + 10*minor). */
static void fmt_cuda_version(char *buf, size_t cap, int v) {
    if (v <= 0) snprintf(buf, cap, "unknown");
    else snprintf(buf, cap, "%d.%d", v / 1000, (v % 1000) / 10);
}

typedef struct {
    st_simd_level best;  /* what the CPU can run */
    st_simd_level level; /* what Strata will use */
    const char *env;     /* STRATA_SIMD or NULL */
    st_status env_status;
    char env_error[256];
} simd_choice;

static simd_choice choose_simd(const st_hw_info *info) {
    simd_choice c;
    memset(&c, 0, sizeof c);
    const char *saved = getenv("STRATA_SIMD");
    c.env = saved && *saved ? saved : NULL;
    c.env_status = st_hw_simd_from_env(info, &c.level);
    if (c.env_status != ST_OK) snprintf(c.env_error, sizeof c.env_error, "%s", st_last_error());
    /* The hardware's own best: the level when no cap is asked for. */
    c.best = ST_SIMD_SCALAR;
    for (int l = 0; l < ST_SIMD_COUNT_; l++)
        if (st_hw_simd_supported(info, (st_simd_level)l) && l != ST_SIMD_SCALAR) c.best = l;
    return c;
}

static void print_report(const st_hw_info *hw, const simd_choice *sc, const st_hw_measure *m) {
    char b1[64], b2[64];
    printf("strata %s: this machine\n\n", ST_VERSION_STRING);

    printf("CPU\n");
    printf("  %-14s %s\n", "arch", hw->arch[0] ? hw->arch : "unknown");
    printf("  %-14s %s\n", "vendor", hw->cpu_vendor[0] ? hw->cpu_vendor : "unknown");
    printf("  %-14s %s\n", "model", hw->cpu_model[0] ? hw->cpu_model : "unknown");
    printf("  %-14s %d socket%s, %d core%s, %d thread%s\n", "topology", hw->sockets,
           hw->sockets == 1 ? "" : "s", hw->cores, hw->cores == 1 ? "" : "s", hw->threads,
           hw->threads == 1 ? "" : "s");
    printf("  %-14s", "SIMD");
    int any = 0;
    for (int i = 0; i < 32; i++) {
        uint32_t bit = 1u << i;
        const char *name = st_hw_feature_name(bit);
        if (name && (hw->simd & bit)) {
            printf(" %s", name);
            any = 1;
        }
    }
    printf("%s\n", any ? "" : " none");
    if (sc->env_status != ST_OK)
        printf("  %-14s %s (STRATA_SIMD ignored: %s)\n", "kernel level",
               st_hw_simd_level_name(sc->level), sc->env_error);
    else if (sc->env)
        printf("  %-14s %s (STRATA_SIMD=%s; best here: %s)\n", "kernel level",
               st_hw_simd_level_name(sc->level), sc->env, st_hw_simd_level_name(sc->best));
    else
        printf("  %-14s %s (the best this CPU runs)\n", "kernel level",
               st_hw_simd_level_name(sc->level));

    printf("\nCaches\n");
    if (hw->l1d_bytes) fmt_bytes(b1, sizeof b1, hw->l1d_bytes);
    printf("  %-14s %s%s\n", "L1d", hw->l1d_bytes ? b1 : "unknown", hw->l1d_bytes ? " per core" : "");
    if (hw->l2_bytes) fmt_bytes(b1, sizeof b1, hw->l2_bytes);
    printf("  %-14s %s%s\n", "L2", hw->l2_bytes ? b1 : "unknown", hw->l2_bytes ? " per core" : "");
    if (hw->l3_bytes) fmt_bytes(b1, sizeof b1, hw->l3_bytes);
    printf("  %-14s %s%s\n", "L3", hw->l3_bytes ? b1 : "unknown", hw->l3_bytes ? " per socket" : "");
    if (hw->cacheline_bytes) printf("  %-14s %d bytes\n", "line", hw->cacheline_bytes);
    else printf("  %-14s unknown\n", "line");

    printf("\nMemory\n");
    fmt_bytes(b1, sizeof b1, hw->mem_total_bytes);
    fmt_bytes(b2, sizeof b2, hw->mem_available_bytes);
    printf("  %-14s %s\n", "total", b1);
    printf("  %-14s %s\n", "available", b2);
    printf("  %-14s %d\n", "NUMA nodes", hw->numa_nodes);

    printf("\nBLAS\n");
    printf("  %-14s %s%s%s\n", "library", hw->blas_name[0] ? hw->blas_name : "unknown",
           hw->blas_version[0] ? " " : "", hw->blas_version);
    printf("  %-14s %s\n", "core", hw->blas_core[0] ? hw->blas_core : "unknown");
    printf("  %-14s %d\n", "threads", hw->blas_threads);
    printf("  %-14s %s\n", "config", hw->blas_config);

    printf("\nGPUs\n");
    if (!hw->cuda_built) printf("  none (built without CUDA)\n");
    else if (hw->n_gpus == 0) printf("  none found\n");
    for (int i = 0; i < hw->n_gpus; i++) {
        const st_hw_gpu *g = &hw->gpus[i];
        fmt_bytes(b1, sizeof b1, g->mem_total_bytes);
        char drv[32], rt[32];
        fmt_cuda_version(drv, sizeof drv, g->driver_version);
        fmt_cuda_version(rt, sizeof rt, g->runtime_version);
        printf("  [%d] %s, %s, compute capability %d.%d, driver %s, runtime %s\n", i, g->name, b1,
               g->cc_major, g->cc_minor, drv, rt);
    }

    if (m) {
        printf("\nRoofline (%d thread%s)\n", m->n_threads, m->n_threads == 1 ? "" : "s");
        printf("  %-14s %.1f GFLOP/s\n", "sgemm", m->sgemm_gflops);
        printf("  %-14s %.1f GB/s\n", "copy", m->copy_gbs);
        printf("  %-14s %.1f GB/s\n", "triad", m->triad_gbs);
        printf("  %-14s %.1f FLOP/byte\n", "ridge", m->ridge_flop_per_byte);
    }
}

/* Builds the JSON document; NULL when jansson runs out of memory. */
static json_t *build_json(const st_hw_info *hw, const simd_choice *sc, const st_hw_measure *m) {
    json_t *simd = json_array();
    for (int i = 0; i < 32; i++) {
        uint32_t bit = 1u << i;
        const char *name = st_hw_feature_name(bit);
        if (name && (hw->simd & bit)) json_array_append_new(simd, json_string(name));
    }
    json_t *cpu = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:o, s:s, s:s, s:o}",
                            "arch", hw->arch, "vendor", hw->cpu_vendor, "model", hw->cpu_model,
                            "sockets", hw->sockets, "cores", hw->cores, "threads", hw->threads,
                            "simd", simd, "simd_best", st_hw_simd_level_name(sc->best),
                            "simd_level", st_hw_simd_level_name(sc->level), "simd_env",
                            sc->env ? json_string(sc->env) : json_null());
    json_t *caches = json_pack("{s:I, s:I, s:I, s:i}", "l1d_bytes", (json_int_t)hw->l1d_bytes,
                               "l2_bytes", (json_int_t)hw->l2_bytes, "l3_bytes",
                               (json_int_t)hw->l3_bytes, "line_bytes", hw->cacheline_bytes);
    json_t *memory = json_pack("{s:I, s:I}", "total_bytes", (json_int_t)hw->mem_total_bytes,
                               "available_bytes", (json_int_t)hw->mem_available_bytes);
    json_t *blas = json_pack("{s:s, s:s, s:s, s:i, s:s}", "name", hw->blas_name, "version",
                             hw->blas_version, "core", hw->blas_core, "threads", hw->blas_threads,
                             "config", hw->blas_config);
    json_t *gpus = json_array();
    for (int i = 0; i < hw->n_gpus; i++) {
        const st_hw_gpu *g = &hw->gpus[i];
        char cc[16];
        snprintf(cc, sizeof cc, "%d.%d", g->cc_major, g->cc_minor);
        json_array_append_new(gpus, json_pack("{s:s, s:I, s:s, s:i, s:i}", "name", g->name,
                                              "memory_bytes", (json_int_t)g->mem_total_bytes,
                                              "compute_capability", cc, "driver_version",
                                              g->driver_version, "runtime_version",
                                              g->runtime_version));
    }
    json_t *root = json_pack("{s:s, s:o, s:o, s:o, s:i, s:o, s:b, s:o}", "strata_version",
                             ST_VERSION_STRING, "cpu", cpu, "caches", caches, "memory", memory,
                             "numa_nodes", hw->numa_nodes, "blas", blas, "cuda_built",
                             hw->cuda_built, "gpus", gpus);
    if (root && m) {
        json_object_set_new(root, "measure",
                            json_pack("{s:i, s:f, s:f, s:f, s:f}", "threads", m->n_threads,
                                      "sgemm_gflops", m->sgemm_gflops, "copy_gbs", m->copy_gbs,
                                      "triad_gbs", m->triad_gbs, "ridge_flop_per_byte",
                                      m->ridge_flop_per_byte));
    }
    return root;
}

/* STRATA_THREADS when it holds a positive count, else 0 (all CPUs). */
static int env_threads(void) {
    const char *s = getenv("STRATA_THREADS");
    long v;
    if (!s || !*s) return 0;
    if (!cli_parse_long(s, &v) || v < 1 || v > MAX_THREADS) {
        fprintf(stderr, "strata hw: ignoring STRATA_THREADS='%s' (want 1..%d)\n", s, MAX_THREADS);
        return 0;
    }
    return (int)v;
}

int cmd_hw(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        print_help();
        return 0;
    }
    bool measure = false, as_json = false;
    int threads = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--measure") == 0) {
            measure = true;
        } else if (strcmp(a, "--json") == 0) {
            as_json = true;
        } else if (strcmp(a, "--threads") == 0 || strncmp(a, "--threads=", 10) == 0) {
            const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
            long n;
            if (!v) return cli_usage_error(SUB, "--threads needs a value");
            if (!cli_parse_long(v, &n) || n < 1 || n > MAX_THREADS)
                return cli_usage_error(SUB, "--threads '%s': want a whole number in 1..%d", v,
                                       MAX_THREADS);
            threads = (int)n;
        } else {
            return cli_usage_error(SUB, "unknown option '%s'", a);
        }
    }
    if (threads < 0) threads = env_threads();

    st_hw_info hw;
    st_status s = st_hw_query(&hw);
    if (s != ST_OK) return cli_fail(SUB, s);
    simd_choice sc = choose_simd(&hw);
    if (sc.env_status != ST_OK)
        fprintf(stderr, "strata hw: warning: %s; using %s\n", sc.env_error,
                st_hw_simd_level_name(sc.level));

    st_hw_measure m;
    if (measure) {
        st_hw_measure_params p = st_hw_measure_default_params();
        p.n_threads = threads;
        if (isatty(STDERR_FILENO)) fprintf(stderr, "strata hw: measuring (a few seconds)...\n");
        s = st_hw_measure_run(&p, &m);
        if (s != ST_OK) return cli_fail(SUB, s);
    }

    if (!as_json) {
        print_report(&hw, &sc, measure ? &m : NULL);
        return 0;
    }
    json_t *root = build_json(&hw, &sc, measure ? &m : NULL);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text) {
        fprintf(stderr, "strata hw: out of memory building the JSON report\n");
        return 1;
    }
    puts(text);
    free(text);
    return 0;
}
