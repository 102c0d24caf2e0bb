/*
 * measure.c — the roofline probes: peak FP32 FLOP/s through the BLAS sgemm
 * and memory bandwidth with STREAM-style copy and triad kernels.
 *
 * Bandwidth: three float arrays a, b, c of stream_bytes each. n_threads
 * short-lived pthreads each own one contiguous, cache-line aligned chunk of
 * every array and touch it first (so on a NUMA machine the pages land on the
 * owner's node). Every repetition is fenced by a barrier on both sides;
 * thread 0 times it. Bytes counted per element: copy a[i] = b[i] 2 x 4
 * (one read, one write), triad a[i] = b[i] + s*c[i] 3 x 4. Write-allocate
 * traffic is not counted (STREAM's convention). Best repetition wins.
 * Both kernels are explicit loops of 16-byte vectors with ordinary stores,
 * one 64-byte line per step, written so that the compiler can neither turn
 * the copy into a memcpy/memmove call (GCC did, at -O2) nor leave the triad
 * scalar (it did): a library copy changes method with the size of the
 * call. glibc 2.36 on the development VM copied a 32 MiB per-thread chunk
 * (the 64 MiB of `bench ops`) with ordinary stores but switched to
 * non-temporal stores above its 127 MiB threshold (the default 256 MiB
 * probe: 128 MiB per thread), so the same probe measured two different
 * copies. Ordinary stores are what docs/L1-hardware.md states. Against
 * glibc's memmove on that VM (2 threads, interleaved, best of 25) the
 * explicit copy was as fast at 64 MiB and 13% faster at 256 MiB, and the
 * vectorized triad 15-30% faster than the scalar loop: neither probe got
 * easier to beat.
 * The bandwidth probes run before sgemm: OpenBLAS's workers spin for a while
 * after a call and would steal the cores from the stream threads.
 *
 * sgemm: C = A*B with n x n row-major matrices, OpenBLAS set to n_threads
 * threads for the probe and restored after; one warm-up call, then repeated
 * until min_time_s has passed; GFLOP/s = 2 n^3 / best time / 1e9.
 *
 * Ownership: every buffer is st_malloc'd here and freed before return.
 * Threading: the caller's thread blocks until the probe threads are joined.
 * Not reentrant with anything else that sets the BLAS thread count.
 */
#include "hw_impl.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DEFAULT_GEMM_N 2048
#define DEFAULT_STREAM_BYTES ((size_t)256 << 20)
#define MIN_STREAM_BYTES ((size_t)64 << 10)
#define DEFAULT_MIN_TIME_S 0.3
#define MAX_THREADS 4096
#define MAX_GEMM_N 16384
#define LINE_FLOATS 16 /* a 64-byte line of floats */

st_hw_measure_params st_hw_measure_default_params(void) {
    st_hw_measure_params p = {.n_threads = 0, .gemm_n = 0, .stream_bytes = 0, .min_time_s = 0};
    return p;
}

/* ---- bandwidth ------------------------------------------------------------- */
/* Asks for transparent huge pages over the 2 MiB-aligned interior of a
 * buffer. Only to make the first touch cheaper: page faults on 4 KiB pages
 * ran at 0.3 GB/s on a VM here and would dominate the probe's run time.
 * A hint; failure changes nothing. */
static void advise_huge(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t lo = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate; /* 0 wait, 1 go, -1 abort (a thread could not be created) */
    pthread_barrier_t bar;
    float *a, *b, *c;
    size_t n; /* elements per array */
    int n_threads;
    double min_time_s;
    /* written by thread 0 between barriers, read by all after one */
    int stop;
    double best_s[2]; /* [0] copy, [1] triad */
} stream_shared;

typedef struct {
    stream_shared *sh;
    int tid;
} stream_arg;

static void chunk_of(const stream_shared *sh, int tid, size_t *lo, size_t *hi) {
    size_t per = (sh->n + (size_t)sh->n_threads - 1) / (size_t)sh->n_threads;
    per = (per + LINE_FLOATS - 1) / LINE_FLOATS * LINE_FLOATS;
    size_t l = per * (size_t)tid, h = l + per;
    if (l > sh->n) l = sh->n;
    if (h > sh->n) h = sh->n;
    *lo = l;
    *hi = h;
}

/* 4 floats (SSE2 on x86-64, NEON on Arm); may_alias: it reads float arrays */
typedef float v4f __attribute__((vector_size(16), may_alias));

/* lo is a multiple of LINE_FLOATS and the arrays are 64-byte aligned, so
 * every vector access is aligned; the last chunk may end mid-line. The
 * empty asm hides the index from idiom recognition (no memmove call). */
static void kernel_copy(float *restrict a, const float *restrict b, size_t lo, size_t hi) {
    size_t i = lo;
    for (; i + LINE_FLOATS <= hi; i += LINE_FLOATS) {
        v4f x0 = *(const v4f *)(b + i), x1 = *(const v4f *)(b + i + 4);
        v4f x2 = *(const v4f *)(b + i + 8), x3 = *(const v4f *)(b + i + 12);
        *(v4f *)(a + i) = x0;
        *(v4f *)(a + i + 4) = x1;
        *(v4f *)(a + i + 8) = x2;
        *(v4f *)(a + i + 12) = x3;
        __asm__("" : "+r"(i));
    }
    for (; i < hi; i++) {
        a[i] = b[i];
        __asm__("" : "+r"(i));
    }
}

static void kernel_triad(float *restrict a, const float *restrict b, const float *restrict c,
                         float s, size_t lo, size_t hi) {
    const v4f vs = {s, s, s, s};
    size_t i = lo;
    for (; i + LINE_FLOATS <= hi; i += LINE_FLOATS) {
        for (size_t k = 0; k < LINE_FLOATS; k += 4)
            *(v4f *)(a + i + k) = *(const v4f *)(b + i + k) + vs * *(const v4f *)(c + i + k);
        __asm__("" : "+r"(i));
    }
    for (; i < hi; i++) a[i] = b[i] + s * c[i];
}

static void *stream_worker(void *p) {
    stream_arg *arg = p;
    stream_shared *sh = arg->sh;
    const int tid = arg->tid;

    pthread_mutex_lock(&sh->mu);
    while (sh->gate == 0) pthread_cond_wait(&sh->cv, &sh->mu);
    int gate = sh->gate;
    pthread_mutex_unlock(&sh->mu);
    if (gate < 0) return NULL;

    size_t lo, hi;
    chunk_of(sh, tid, &lo, &hi);
    for (size_t i = lo; i < hi; i++) { /* first touch by the owner */
        sh->a[i] = 0.0f;
        sh->b[i] = 1.0f;
        sh->c[i] = 2.0f;
    }
    for (int phase = 0; phase < 2; phase++) {
        double elapsed = 0, t0 = 0;
        int reps = 0;
        if (tid == 0) sh->best_s[phase] = INFINITY;
        for (;;) {
            pthread_barrier_wait(&sh->bar);
            if (tid == 0) t0 = st_time_s();
            if (phase == 0) kernel_copy(sh->a, sh->b, lo, hi);
            else kernel_triad(sh->a, sh->b, sh->c, 3.0f, lo, hi);
            pthread_barrier_wait(&sh->bar);
            if (tid == 0) {
                double dt = st_time_s() - t0;
                if (dt < sh->best_s[phase]) sh->best_s[phase] = dt;
                elapsed += dt;
                reps++;
                sh->stop = reps >= 2 && elapsed >= sh->min_time_s;
            }
            pthread_barrier_wait(&sh->bar);
            if (sh->stop) break;
        }
        /* everyone has read stop before thread 0 may clear it */
        pthread_barrier_wait(&sh->bar);
        if (tid == 0) sh->stop = 0;
    }
    return NULL;
}

static st_status run_stream(int n_threads, size_t bytes, double min_time_s, double *copy_gbs,
                            double *triad_gbs) {
    st_status st = ST_OK;
    stream_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.n = bytes / sizeof(float);
    sh.n_threads = n_threads;
    sh.min_time_s = min_time_s;
    sh.a = st_malloc(sh.n * sizeof(float));
    sh.b = st_malloc(sh.n * sizeof(float));
    sh.c = st_malloc(sh.n * sizeof(float));
    pthread_t *th = st_calloc((size_t)n_threads, sizeof *th);
    stream_arg *args = st_calloc((size_t)n_threads, sizeof *args);
    if (!sh.a || !sh.b || !sh.c || !th || !args) {
        st = st__fail(ST_ERR_NOMEM, "hw_measure: cannot allocate 3 x %zu bytes for the bandwidth probe",
                      bytes);
        goto out_free;
    }
    advise_huge(sh.a, sh.n * sizeof(float));
    advise_huge(sh.b, sh.n * sizeof(float));
    advise_huge(sh.c, sh.n * sizeof(float));
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    pthread_barrier_init(&sh.bar, NULL, (unsigned)n_threads);

    int created = 0;
    for (; created < n_threads; created++) {
        args[created].sh = &sh;
        args[created].tid = created;
        if (pthread_create(&th[created], NULL, stream_worker, &args[created]) != 0) break;
    }
    pthread_mutex_lock(&sh.mu);
    sh.gate = created == n_threads ? 1 : -1;
    pthread_cond_broadcast(&sh.cv);
    pthread_mutex_unlock(&sh.mu);
    for (int i = 0; i < created; i++) pthread_join(th[i], NULL);
    if (created != n_threads) {
        st = st__fail(ST_ERR_NOMEM, "hw_measure: could only start %d of %d probe threads", created,
                      n_threads);
    } else {
        double n = (double)sh.n;
        for (int i = 0; i < 2; i++) /* a clock tick at worst, never zero */
            if (!(sh.best_s[i] > 1e-9)) sh.best_s[i] = 1e-9;
        *copy_gbs = 2.0 * sizeof(float) * n / sh.best_s[0] / 1e9;
        *triad_gbs = 3.0 * sizeof(float) * n / sh.best_s[1] / 1e9;
    }
    pthread_barrier_destroy(&sh.bar);
    pthread_cond_destroy(&sh.cv);
    pthread_mutex_destroy(&sh.mu);
out_free:
    st_free(args);
    st_free(th);
    st_free(sh.c);
    st_free(sh.b);
    st_free(sh.a);
    return st;
}

/* ---- sgemm ---------------------------------------------------------------------- */
static st_status run_sgemm(int n_threads, int n, double min_time_s, double *gflops) {
    size_t nn = (size_t)n * (size_t)n;
    float *a = st_malloc(nn * sizeof(float));
    float *b = st_malloc(nn * sizeof(float));
    float *c = st_malloc(nn * sizeof(float));
    if (!a || !b || !c) {
        st_free(a);
        st_free(b);
        st_free(c);
        return st__fail(ST_ERR_NOMEM, "hw_measure: cannot allocate 3 x %dx%d floats for sgemm", n, n);
    }
    /* Small, varied values: no denormals, no overflow, nothing to shortcut. */
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)((int)(i % 13) - 6) * 0.01f;
        b[i] = (float)((int)(i % 7) - 3) * 0.02f;
        c[i] = 0.0f;
    }
    const int prev = openblas_get_num_threads();
    openblas_set_num_threads(n_threads);
    double best = INFINITY, elapsed = 0;
    for (int rep = -1;; rep++) { /* rep -1: warm-up, not timed */
        double t0 = st_time_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                    c, n);
        double dt = st_time_s() - t0;
        if (rep < 0) continue;
        if (dt < best) best = dt;
        elapsed += dt;
        if (elapsed >= min_time_s && rep >= 1) break;
    }
    openblas_set_num_threads(prev > 0 ? prev : 1);
    if (!(best > 1e-9)) best = 1e-9;
    st_free(a);
    st_free(b);
    st_free(c);
    *gflops = 2.0 * (double)n * (double)n * (double)n / best / 1e9;
    return ST_OK;
}

/* ---- the public entry -------------------------------------------------------------- */
static size_t default_stream_bytes(void) {
    /* The three arrays together take at most 1/8 of the available memory. */
    FILE *f = fopen("/proc/meminfo", "r");
    uint64_t avail = 0;
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) avail = kb * 1024;
        fclose(f);
    }
    size_t bytes = DEFAULT_STREAM_BYTES;
    if (avail > 0 && avail / 24 < bytes) bytes = (size_t)(avail / 24);
    if (bytes < MIN_STREAM_BYTES) bytes = MIN_STREAM_BYTES;
    return bytes;
}

/* checks p and fills in its defaults */
static st_status resolve(const st_hw_measure_params *p, st_hw_measure *out, int *n_threads,
                         int *gemm_n, size_t *bytes, double *min_time_s) {
    if (!p || !out) return st__fail(ST_ERR_INVALID_ARG, "hw_measure: params or out is NULL");
    memset(out, 0, sizeof *out);
    if (p->n_threads < 0 || p->n_threads > MAX_THREADS)
        return st__fail(ST_ERR_INVALID_ARG, "hw_measure: n_threads=%d outside [0, %d]",
                        p->n_threads, MAX_THREADS);
    if (p->gemm_n < 0 || p->gemm_n > MAX_GEMM_N)
        return st__fail(ST_ERR_INVALID_ARG, "hw_measure: gemm_n=%d outside [0, %d]", p->gemm_n,
                        MAX_GEMM_N);
    if (p->stream_bytes != 0 && (p->stream_bytes < MIN_STREAM_BYTES ||
                                 p->stream_bytes > SIZE_MAX / 4))
        return st__fail(ST_ERR_INVALID_ARG,
                        "hw_measure: stream_bytes=%zu (0 for the default, else at least %zu)",
                        p->stream_bytes, MIN_STREAM_BYTES);
    if (!(p->min_time_s >= 0 && p->min_time_s <= 60)) /* also refuses NaN */
        return st__fail(ST_ERR_INVALID_ARG, "hw_measure: min_time_s=%g outside [0, 60]",
                        p->min_time_s);
    *n_threads = p->n_threads;
    if (*n_threads == 0) {
        long t = sysconf(_SC_NPROCESSORS_ONLN);
        *n_threads = t > 0 ? (int)(t < MAX_THREADS ? t : MAX_THREADS) : 1;
    }
    *gemm_n = p->gemm_n ? p->gemm_n : DEFAULT_GEMM_N;
    *bytes = p->stream_bytes ? p->stream_bytes : default_stream_bytes();
    *min_time_s = p->min_time_s > 0 ? p->min_time_s : DEFAULT_MIN_TIME_S;
    out->n_threads = *n_threads;
    return ST_OK;
}

/* the bandwidth probes, then (with_sgemm) the sgemm probe */
static st_status measure(const st_hw_measure_params *p, st_hw_measure *out, bool with_sgemm) {
    int n_threads = 0, gemm_n = 0;
    size_t bytes = 0;
    double min_time_s = 0;
    ST_TRY(resolve(p, out, &n_threads, &gemm_n, &bytes, &min_time_s));
    const double t0 = st_time_s();
    ST_TRY(run_stream(n_threads, bytes, min_time_s, &out->copy_gbs, &out->triad_gbs));
    if (!with_sgemm) return ST_OK;
    const double t1 = st_time_s();
    ST_TRY(run_sgemm(n_threads, gemm_n, min_time_s, &out->sgemm_gflops));
    st_log_msg(ST_LOG_DEBUG, "hw_measure: %d threads; bandwidth probe %.2f s (3 x %zu bytes), sgemm probe %.2f s (n=%d)",
               n_threads, t1 - t0, bytes, st_time_s() - t1, gemm_n);
    out->ridge_flop_per_byte = out->triad_gbs > 0 ? out->sgemm_gflops / out->triad_gbs : 0;
    return ST_OK;
}

st_status st_hw_measure_run(const st_hw_measure_params *p, st_hw_measure *out) {
    return measure(p, out, true);
}

st_status st_hw_measure_bandwidth(const st_hw_measure_params *p, st_hw_measure *out) {
    return measure(p, out, false);
}
