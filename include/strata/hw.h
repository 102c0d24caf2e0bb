/*
 * strata/hw.h — layer 1: what the machine is and what it can do.
 *
 * st_hw_query() describes the machine (CPU, SIMD features, caches, memory,
 * NUMA, the BLAS library, GPUs when built with CUDA). st_hw_measure() runs
 * short probes for the roofline: peak FP32 GFLOP/s through the BLAS sgemm
 * and memory bandwidth (copy and triad). Layer 2 picks its kernels from
 * st_hw_simd_best().
 */
#ifndef STRATA_HW_H
#define STRATA_HW_H

#include "strata/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* SIMD feature bits (st_hw_info.simd). Values only grow. */
enum {
    ST_HW_SSE42 = 1u << 0,
    ST_HW_AVX = 1u << 1,
    ST_HW_AVX2 = 1u << 2,
    ST_HW_FMA = 1u << 3,
    ST_HW_F16C = 1u << 4,
    ST_HW_AVX512F = 1u << 5,
    ST_HW_AVX512BW = 1u << 6,
    ST_HW_AVX512VL = 1u << 7,
    ST_HW_AVX512DQ = 1u << 8,
    ST_HW_AVX512_BF16 = 1u << 9,
    ST_HW_AVX512_VNNI = 1u << 10,
    ST_HW_AVX_VNNI = 1u << 11,
    ST_HW_AMX_TILE = 1u << 12,
    ST_HW_AMX_BF16 = 1u << 13,
    ST_HW_AMX_INT8 = 1u << 14,
    ST_HW_NEON = 1u << 15,
    ST_HW_SVE = 1u << 16,
    ST_HW_SVE2 = 1u << 17,
    ST_HW_ARM_BF16 = 1u << 18,
    ST_HW_ARM_DOTPROD = 1u << 19,
};

/* The kernel levels layer 2 dispatches to, in increasing order. */
typedef enum st_simd_level {
    ST_SIMD_SCALAR = 0,
    ST_SIMD_AVX2 = 1,   /* AVX2 + FMA (+ F16C) */
    ST_SIMD_AVX512 = 2, /* AVX-512 F/BW/VL/DQ */
    ST_SIMD_NEON = 3,   /* reserved for Arm */
    ST_SIMD_COUNT_
} st_simd_level;

#define ST_HW_MAX_GPUS 16

typedef struct st_hw_gpu {
    char name[128];
    uint64_t mem_total_bytes;
    int cc_major, cc_minor; /* compute capability */
    int driver_version;     /* CUDA driver API version, e.g. 13000 */
    int runtime_version;    /* CUDA runtime version the build uses */
} st_hw_gpu;

typedef struct st_hw_info {
    char arch[16];        /* "x86_64", "aarch64" */
    char cpu_vendor[32];  /* "AuthenticAMD", "GenuineIntel", "ARM" */
    char cpu_model[128];  /* brand string */
    int sockets;          /* physical packages */
    int cores;            /* physical cores, all sockets */
    int threads;          /* logical CPUs online */
    uint32_t simd;        /* ST_HW_* bits: what the CPU and the OS support */
    /* Caches in bytes (0 when unknown); l1d and l2 are per core, l3 is the
     * total of one socket. */
    uint64_t l1d_bytes, l2_bytes, l3_bytes;
    int cacheline_bytes;
    uint64_t mem_total_bytes, mem_available_bytes;
    int numa_nodes;
    /* BLAS */
    char blas_name[32];     /* "OpenBLAS" */
    char blas_version[32];  /* "0.3.21" */
    char blas_core[32];     /* the kernel set it selected, e.g. "Haswell" */
    char blas_config[160];  /* its build configuration string */
    int blas_threads;       /* threads it uses now */
    /* GPUs (only when built with CUDA and a device is present) */
    bool cuda_built;
    int n_gpus;
    st_hw_gpu gpus[ST_HW_MAX_GPUS];
} st_hw_info;

/* Fills *out. Cheap (reads cpuid, sysfs and /proc; no probes). Fields that
 * cannot be read stay zero/empty. Errors: ST_ERR_INVALID_ARG. */
st_status st_hw_query(st_hw_info *out);

/* The best kernel level the CPU supports, lowered by STRATA_SIMD
 * (scalar|avx2|avx512) when set. An unknown STRATA_SIMD value, or one the CPU
 * cannot run, is reported by st_hw_simd_from_env(). */
st_simd_level st_hw_simd_best(const st_hw_info *info);
/* Reads STRATA_SIMD: ST_OK with *level = the forced level, or the best one
 * when unset; ST_ERR_INVALID_ARG for an unknown name; ST_ERR_UNSUPPORTED for a
 * level the CPU lacks. */
st_status st_hw_simd_from_env(const st_hw_info *info, st_simd_level *level);
/* Whether this CPU can run kernels of the level. */
bool st_hw_simd_supported(const st_hw_info *info, st_simd_level level);
const char *st_hw_simd_level_name(st_simd_level level); /* "scalar", "avx2" ... */
/* Name of one ST_HW_* bit ("avx512_bf16"), NULL for an unknown bit. */
const char *st_hw_feature_name(uint32_t bit);

typedef struct st_hw_measure_params {
    int n_threads;        /* threads for the probes (0: all logical CPUs) */
    int gemm_n;           /* sgemm size n×n×n (0: 2048) */
    size_t stream_bytes;  /* bytes per bandwidth array (0: 256 MiB or ~1/8 of available memory) */
    double min_time_s;    /* each probe repeats for at least this long (0: 0.3) */
} st_hw_measure_params;

st_hw_measure_params st_hw_measure_default_params(void);

typedef struct st_hw_measure {
    int n_threads;
    double sgemm_gflops;  /* best of the repetitions */
    double copy_gbs;      /* a[i] = b[i]: bytes read + written per second, 1e9 */
    double triad_gbs;     /* a[i] = b[i] + s*c[i] */
    double ridge_flop_per_byte; /* sgemm_gflops / triad_gbs */
} st_hw_measure;

/* Runs the probes. The bandwidth probes use their own short-lived threads;
 * the sgemm probe runs the BLAS with n_threads threads.
 * Errors: ST_ERR_NOMEM, ST_ERR_INVALID_ARG. */
st_status st_hw_measure_run(const st_hw_measure_params *p, st_hw_measure *out);
/* The bandwidth probes alone (copy_gbs and triad_gbs of out; the sgemm
 * fields stay 0): for a benchmark that takes the machine's bandwidth again
 * next to each of its measurements, as a noisy shared host's bandwidth
 * drifts by tens of percent within minutes. Errors as st_hw_measure_run. */
st_status st_hw_measure_bandwidth(const st_hw_measure_params *p, st_hw_measure *out);

/* Sets the BLAS library's thread count (the pool owner calls this). */
void st_hw_blas_set_threads(int n);
int st_hw_blas_get_threads(void);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_HW_H */
