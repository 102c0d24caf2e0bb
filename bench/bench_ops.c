/*
 * bench_ops.c — `strata bench ops`: layer 2/3 operation speed against the
 * machine and a peer, side by side in one run.
 *
 *  1. matmul: st_matmul against a raw cblas_sgemm on the same buffers and the
 *     same BLAS threads, n = 256, 512, 1024, 2048 (goal: >= 0.95 from 512).
 *  2. memory-bound ops on 64 MiB tensors (add, mul, gelu, softmax, layernorm)
 *     against the copy bandwidth measured in the same run by layer 1's
 *     probe (goal: >= 0.7). Bytes counted: every input read once plus the
 *     output written once.
 *  3. every SIMD level the CPU runs against the scalar kernels, on 4 MiB
 *     tensors (cache-resident, so the kernels' arithmetic shows).
 *
 * Each figure is the median of --reps repetitions; the two sides of a ratio
 * are measured alternately within each repetition, so machine noise hits
 * both. Every op result is a step tensor: the context is reset after each
 * call, so the arena reuses one block and no page faults are timed.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "strata/hw.h"
#include "strata/tensor.h"

typedef struct {
    bool json;
    int reps;
    int threads;
    int mib;       /* size of each memory-bound tensor */
    bool quick;    /* small sizes, for the smoke test */
} opts;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- timed bodies ------------------------------------------------------------ */
typedef enum { OP_ADD, OP_MUL, OP_GELU, OP_EXP, OP_SOFTMAX, OP_LAYERNORM, OP_COUNT } mem_op;
static const char *k_mem_name[OP_COUNT] = {"add", "mul", "gelu", "exp", "softmax", "layernorm"};
static const int k_mem_arrays[OP_COUNT] = {3, 3, 2, 2, 2, 2}; /* arrays moved */

typedef struct {
    st_ctx *ctx;
    st_tensor *a, *b, *gamma, *beta;
} mem_case;

static st_status run_mem_op(mem_case *c, mem_op op) {
    st_tensor *y = NULL;
    st_status s;
    switch (op) {
    case OP_ADD: s = st_add(c->ctx, c->a, c->b, &y); break;
    case OP_MUL: s = st_mul(c->ctx, c->a, c->b, &y); break;
    case OP_GELU: s = st_gelu(c->ctx, c->a, ST_GELU_TANH, &y); break;
    case OP_EXP: s = st_exp(c->ctx, c->a, &y); break;
    case OP_SOFTMAX: s = st_softmax(c->ctx, c->a, &y); break;
    case OP_LAYERNORM: s = st_layernorm(c->ctx, c->a, c->gamma, c->beta, 1e-5f, &y); break;
    default: s = ST_ERR_INVALID_ARG;
    }
    st_ctx_reset(c->ctx);
    return s;
}

/* Seconds per call: repeat until at least min_s has passed. */
static st_status time_mem_op(mem_case *c, mem_op op, double min_s, double *sec) {
    int n = 0;
    double t0 = st_time_s(), t;
    do {
        ST_TRY(run_mem_op(c, op));
        n++;
        t = st_time_s() - t0;
    } while (t < min_s);
    *sec = t / n;
    return ST_OK;
}

static st_status mem_case_new(st_ctx *ctx, int64_t rows, int64_t cols, mem_case *c) {
    memset(c, 0, sizeof *c);
    c->ctx = ctx;
    int64_t shape[2] = {rows, cols};
    ST_TRY(st_tensor_new(ctx, ST_F32, 2, shape, &c->a));
    ST_TRY(st_tensor_new(ctx, ST_F32, 2, shape, &c->b));
    ST_TRY(st_tensor_new(ctx, ST_F32, 1, &cols, &c->gamma));
    ST_TRY(st_tensor_new(ctx, ST_F32, 1, &cols, &c->beta));
    ST_TRY(st_randn_(c->a, 1, 0.f, 1.f));
    ST_TRY(st_randn_(c->b, 2, 0.f, 1.f));
    ST_TRY(st_randn_(c->gamma, 3, 1.f, 0.1f));
    ST_TRY(st_randn_(c->beta, 4, 0.f, 0.1f));
    return ST_OK;
}

static void mem_case_free(mem_case *c) {
    st_tensor_free(c->a);
    st_tensor_free(c->b);
    st_tensor_free(c->gamma);
    st_tensor_free(c->beta);
}

static st_status make_ctx(int threads, int simd, st_ctx **ctx) {
    st_ctx_params p = st_ctx_default_params();
    p.cpu.n_threads = threads;
    p.cpu.simd_level = simd;
    return st_ctx_new(&p, ctx);
}

/* ---- 1. matmul ---------------------------------------------------------------- */
static st_status bench_matmul(const opts *o, st_ctx *ctx) {
    static const int k_full[] = {256, 512, 1024, 2048};
    static const int k_quick[] = {64, 128};
    const int *sizes = o->quick ? k_quick : k_full;
    int n_sizes = o->quick ? 2 : 4;
    if (!o->json) {
        printf("\nmatmul f32, C = A B (n x n x n), %d threads; ratio goal >= 0.95 from n = 512\n",
               st_ctx_n_threads(ctx));
        printf("  %6s %14s %14s %8s\n", "n", "strata GF/s", "cblas GF/s", "ratio");
    }
    for (int i = 0; i < n_sizes; i++) {
        int64_t n = sizes[i];
        int64_t shape[2] = {n, n};
        st_tensor *a = NULL, *b = NULL;
        float *c_raw = NULL;
        st_status s = st_tensor_new(ctx, ST_F32, 2, shape, &a);
        if (!s) s = st_tensor_new(ctx, ST_F32, 2, shape, &b);
        if (!s) s = st_randn_(a, 10, 0.f, 1.f);
        if (!s) s = st_randn_(b, 11, 0.f, 1.f);
        if (!s && !(c_raw = st_malloc((size_t)(n * n) * sizeof(float))))
            s = st__fail(ST_ERR_NOMEM, "bench: no memory for a %lldx%lld matrix", (long long)n,
                         (long long)n);
        double flop = 2.0 * (double)n * (double)n * (double)n;
        double min_s = o->quick ? 0.002 : 0.1;
        double *g_st = calloc((size_t)o->reps, sizeof(double));
        double *g_raw = calloc((size_t)o->reps, sizeof(double));
        /* warm-up: BLAS buffers, arena block */
        if (!s) {
            st_tensor *c = NULL;
            s = st_matmul(ctx, a, b, &c);
            st_ctx_reset(ctx);
        }
        for (int r = 0; r < o->reps && !s; r++) {
            int k = 0;
            double t0 = st_time_s(), t;
            do {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n,
                            1.f, a->data, (int)n, b->data, (int)n, 0.f, c_raw, (int)n);
                k++;
                t = st_time_s() - t0;
            } while (t < min_s);
            g_raw[r] = flop * k / t * 1e-9;
            k = 0;
            t0 = st_time_s();
            do {
                st_tensor *c = NULL;
                s = st_matmul(ctx, a, b, &c);
                st_ctx_reset(ctx);
                k++;
                t = st_time_s() - t0;
            } while (!s && t < min_s);
            g_st[r] = flop * k / t * 1e-9;
        }
        if (!s) {
            double ms = bench_median(g_st, o->reps), mr = bench_median(g_raw, o->reps);
            if (o->json)
                printf("{\"bench\":\"ops\",\"section\":\"matmul\",\"n\":%lld,\"threads\":%d,"
                       "\"strata_gflops\":%.2f,\"cblas_gflops\":%.2f,\"ratio\":%.3f,\"goal\":0.95}\n",
                       (long long)n, st_ctx_n_threads(ctx), ms, mr, ms / mr);
            else
                printf("  %6lld %14.1f %14.1f %8.3f\n", (long long)n, ms, mr, ms / mr);
        }
        free(g_st);
        free(g_raw);
        st_free(c_raw);
        st_tensor_free(a);
        st_tensor_free(b);
        if (s) return s;
    }
    return ST_OK;
}

/* ---- 2. memory-bound ops against the copy bandwidth ------------------------------ */
static st_status bench_memory(const opts *o, st_ctx *ctx) {
    int64_t cols = 1024;
    int64_t rows = ((int64_t)o->mib << 20) / 4 / cols;
    if (rows < 1) rows = 1;
    double bytes1 = (double)(rows * cols) * 4.0;

    st_hw_measure_params mp = st_hw_measure_default_params();
    mp.n_threads = st_ctx_n_threads(ctx);
    mp.stream_bytes = (size_t)bytes1;
    mp.min_time_s = o->quick ? 0.01 : 0.2;
    mp.gemm_n = 64; /* only the bandwidth matters here */
    st_hw_measure m;
    ST_TRY(st_hw_measure_run(&mp, &m));

    mem_case c;
    st_status s = mem_case_new(ctx, rows, cols, &c);
    if (!s && !o->json) {
        printf("\nmemory-bound ops on [%lld, %lld] f32 (%d MiB per tensor), %d threads;\n"
               "measured copy bandwidth %.1f GB/s (triad %.1f); ratio goal >= 0.7\n",
               (long long)rows, (long long)cols, o->mib, st_ctx_n_threads(ctx), m.copy_gbs,
               m.triad_gbs);
        printf("  %-10s %10s %10s %8s\n", "op", "ms", "GB/s", "ratio");
    }
    double min_s = o->quick ? 0.002 : 0.05;
    for (int op = 0; op < OP_COUNT && !s; op++) {
        if (op == OP_EXP) continue; /* exp is in the SIMD table only */
        double *v = calloc((size_t)o->reps, sizeof(double));
        double sec = 0;
        s = time_mem_op(&c, (mem_op)op, 0, &sec); /* warm-up */
        for (int r = 0; r < o->reps && !s; r++) {
            s = time_mem_op(&c, (mem_op)op, min_s, &sec);
            v[r] = sec;
        }
        if (!s) {
            double t = bench_median(v, o->reps);
            double gbs = k_mem_arrays[op] * bytes1 / t * 1e-9;
            if (o->json)
                printf("{\"bench\":\"ops\",\"section\":\"memory\",\"op\":\"%s\",\"mib\":%d,"
                       "\"threads\":%d,\"ms\":%.3f,\"gbs\":%.2f,\"copy_gbs\":%.2f,"
                       "\"ratio\":%.3f,\"goal\":0.7}\n",
                       k_mem_name[op], o->mib, st_ctx_n_threads(ctx), t * 1e3, gbs, m.copy_gbs,
                       gbs / m.copy_gbs);
            else
                printf("  %-10s %10.2f %10.1f %8.3f\n", k_mem_name[op], t * 1e3, gbs,
                       gbs / m.copy_gbs);
        }
        free(v);
    }
    mem_case_free(&c);
    return s;
}

/* ---- 3. SIMD levels against scalar ------------------------------------------------ */
static st_status bench_simd(const opts *o) {
    st_hw_info info;
    ST_TRY(st_hw_query(&info));
    int64_t cols = 1024, rows = o->quick ? 64 : 1024; /* 4 MiB per tensor */
    double base[OP_COUNT] = {0};
    if (!o->json) {
        printf("\nSIMD levels on [%lld, %lld] f32 (%lld KiB per tensor), %d threads: "
               "ms per op (speed-up over scalar)\n",
               (long long)rows, (long long)cols, (long long)(rows * cols * 4 / 1024),
               o->threads ? o->threads : info.threads);
        printf("  %-8s", "level");
        for (int op = 0; op < OP_COUNT; op++) printf(" %17s", k_mem_name[op]);
        printf("\n");
    }
    double min_s = o->quick ? 0.001 : 0.03;
    for (int lv = ST_SIMD_SCALAR; lv < ST_SIMD_COUNT_; lv++) {
        if (!st_hw_simd_supported(&info, (st_simd_level)lv)) continue;
        st_ctx *ctx = NULL;
        st_status s = make_ctx(o->threads, lv, &ctx);
        if (s == ST_ERR_UNSUPPORTED) continue; /* not compiled for this arch */
        ST_TRY(s);
        mem_case c;
        s = mem_case_new(ctx, rows, cols, &c);
        double ms[OP_COUNT] = {0};
        for (int op = 0; op < OP_COUNT && !s; op++) {
            double *v = calloc((size_t)o->reps, sizeof(double));
            double sec = 0;
            s = time_mem_op(&c, (mem_op)op, 0, &sec);
            for (int r = 0; r < o->reps && !s; r++) {
                s = time_mem_op(&c, (mem_op)op, min_s, &sec);
                v[r] = sec;
            }
            if (!s) ms[op] = bench_median(v, o->reps) * 1e3;
            free(v);
            if (lv == ST_SIMD_SCALAR) base[op] = ms[op];
        }
        mem_case_free(&c);
        st_ctx_free(ctx);
        ST_TRY(s);
        const char *name = st_hw_simd_level_name((st_simd_level)lv);
        if (o->json) {
            for (int op = 0; op < OP_COUNT; op++)
                printf("{\"bench\":\"ops\",\"section\":\"simd\",\"level\":\"%s\",\"op\":\"%s\","
                       "\"ms\":%.4f,\"speedup_vs_scalar\":%.2f}\n",
                       name, k_mem_name[op], ms[op], base[op] / ms[op]);
        } else {
            printf("  %-8s", name);
            for (int op = 0; op < OP_COUNT; op++)
                printf("  %7.3f (%5.1fx)", ms[op], base[op] / ms[op]);
            printf("\n");
        }
    }
    return ST_OK;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: strata bench ops [--json] [--reps N] [--threads N] [--mib N] [--quick]\n\n"
            "Measures, side by side in one run:\n"
            "  matmul     st_matmul vs raw cblas_sgemm, n = 256..2048 (goal >= 0.95 from 512)\n"
            "  memory     add, mul, gelu, softmax, layernorm on 64 MiB tensors vs the copy\n"
            "             bandwidth measured by the same run (goal >= 0.7)\n"
            "  simd       every SIMD level this CPU runs vs the scalar kernels\n\n"
            "options:\n"
            "  --json       JSON Lines, one object per figure, instead of tables\n"
            "  --reps N     repetitions per figure; the median is reported (default 5)\n"
            "  --threads N  worker threads (default: STRATA_THREADS, else all CPUs)\n"
            "  --mib N      MiB per tensor for the memory section (default 64)\n"
            "  --quick      tiny sizes (a smoke test, not a measurement)\n");
}

int bench_ops_main(int argc, char **argv) {
    opts o = {.reps = 5, .mib = 64};
    for (int i = 1; i < argc; i++) {
        long v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            o.json = true;
        } else if (strcmp(argv[i], "--quick") == 0) {
            o.quick = true;
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            if (!cli_parse_long(argv[++i], &v) || v < 1 || v > 1000)
                return cli_usage_error("bench ops", "--reps wants 1..1000, got '%s'", argv[i]);
            o.reps = (int)v;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (!cli_parse_long(argv[++i], &v) || v < 1 || v > 1024)
                return cli_usage_error("bench ops", "--threads wants 1..1024, got '%s'", argv[i]);
            o.threads = (int)v;
        } else if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc) {
            if (!cli_parse_long(argv[++i], &v) || v < 1 || v > 65536)
                return cli_usage_error("bench ops", "--mib wants 1..65536, got '%s'", argv[i]);
            o.mib = (int)v;
        } else {
            return cli_usage_error("bench ops", "unknown option '%s'", argv[i]);
        }
    }
    if (o.quick) {
        if (o.mib == 64) o.mib = 1;
        if (o.reps == 5) o.reps = 1;
    }

    st_ctx *ctx = NULL;
    st_status s = make_ctx(o.threads, -1, &ctx);
    if (s) return cli_fail("bench ops", s);
    if (!o.json) {
        st_hw_info info;
        if (st_hw_query(&info) == ST_OK)
            printf("strata bench ops — %s, %d threads, kernels %s, %s %s (core %s)\n",
                   info.cpu_model, st_ctx_n_threads(ctx),
                   st_hw_simd_level_name(
                       (st_simd_level)st_backend_cpu_simd_level(st_ctx_backend(ctx))),
                   info.blas_name, info.blas_version, info.blas_core);
        printf("figures are medians of %d repetitions\n", o.reps);
    }
    s = bench_matmul(&o, ctx);
    if (!s) s = bench_memory(&o, ctx);
    st_ctx_free(ctx);
    if (!s) s = bench_simd(&o);
    if (s) return cli_fail("bench ops", s);
    return 0;
}
