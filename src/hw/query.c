/*
 * query.c — st_hw_query() and the kernel-level choice layer 2 dispatches on.
 *
 * The query stitches together the sources (cpu.c, sysinfo.c, blas.c, gpu.c);
 * each one fills what it can and none can fail the whole report.
 * Kernel levels: avx2 needs AVX2 + FMA + F16C (the AVX2 kernels use all
 * three); avx512 needs F + BW + VL + DQ on top of the avx2 level; neon needs
 * Advanced SIMD. STRATA_SIMD (scalar|avx2|avx512|neon) can only lower the
 * level: a level the CPU cannot run is refused (st_hw_simd_from_env) and
 * st_hw_simd_best() then keeps the best level the CPU has.
 *
 * No state; the feature-name table is constant. Thread-safe apart from
 * getenv racing with a setenv on another thread (a libc limitation).
 */
#include "hw_impl.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

st_status st_hw_query(st_hw_info *out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "hw_query: out is NULL");
    memset(out, 0, sizeof *out);
    st__hw_cpu_fill(out);
    st__hw_sys_fill(out);
    st__hw_blas_fill(out);
    st__hw_gpu_fill(out);
    return ST_OK;
}

/* ---- feature and level names -------------------------------------------- */
static const char *const k_feature_names[] = {
    "sse4_2",      "avx",         "avx2",     "fma",      "f16c",     "avx512f",
    "avx512bw",    "avx512vl",    "avx512dq", "avx512_bf16", "avx512_vnni",
    "avx_vnni",    "amx_tile",    "amx_bf16", "amx_int8", "neon",     "sve",
    "sve2",        "arm_bf16",    "arm_dotprod",
};
#define N_FEATURES (sizeof k_feature_names / sizeof k_feature_names[0])
_Static_assert(N_FEATURES == 20, "one name per ST_HW_* bit");
_Static_assert(ST_HW_ARM_DOTPROD == 1u << (N_FEATURES - 1), "names cover the bits");

const char *st_hw_feature_name(uint32_t bit) {
    if (bit == 0 || (bit & (bit - 1)) != 0) return NULL; /* exactly one bit */
    unsigned i = (unsigned)__builtin_ctz(bit);
    return i < N_FEATURES ? k_feature_names[i] : NULL;
}

static const char *const k_level_names[ST_SIMD_COUNT_] = {
    [ST_SIMD_SCALAR] = "scalar",
    [ST_SIMD_AVX2] = "avx2",
    [ST_SIMD_AVX512] = "avx512",
    [ST_SIMD_NEON] = "neon",
};

const char *st_hw_simd_level_name(st_simd_level level) {
    if ((unsigned)level >= ST_SIMD_COUNT_) return "unknown";
    return k_level_names[level];
}

/* ---- levels ------------------------------------------------------------------ */
#define NEED_AVX2 (ST_HW_AVX | ST_HW_AVX2 | ST_HW_FMA | ST_HW_F16C)
#define NEED_AVX512 (NEED_AVX2 | ST_HW_AVX512F | ST_HW_AVX512BW | ST_HW_AVX512VL | ST_HW_AVX512DQ)

static uint32_t simd_bits(const st_hw_info *info) {
    return info ? info->simd : st__hw_cpu_simd();
}

static bool bits_support(uint32_t simd, st_simd_level level) {
    switch (level) {
    case ST_SIMD_SCALAR: return true;
    case ST_SIMD_AVX2: return (simd & NEED_AVX2) == NEED_AVX2;
    case ST_SIMD_AVX512: return (simd & NEED_AVX512) == NEED_AVX512;
    case ST_SIMD_NEON: return (simd & ST_HW_NEON) != 0;
    default: return false;
    }
}

bool st_hw_simd_supported(const st_hw_info *info, st_simd_level level) {
    return bits_support(simd_bits(info), level);
}

static st_simd_level best_of_bits(uint32_t simd) {
    if (bits_support(simd, ST_SIMD_AVX512)) return ST_SIMD_AVX512;
    if (bits_support(simd, ST_SIMD_AVX2)) return ST_SIMD_AVX2;
    if (bits_support(simd, ST_SIMD_NEON)) return ST_SIMD_NEON;
    return ST_SIMD_SCALAR;
}

st_status st_hw_simd_from_env(const st_hw_info *info, st_simd_level *level) {
    if (!level) return st__fail(ST_ERR_INVALID_ARG, "hw_simd_from_env: level is NULL");
    uint32_t simd = simd_bits(info);
    st_simd_level best = best_of_bits(simd);
    *level = best;
    const char *env = getenv("STRATA_SIMD");
    if (!env || !*env) return ST_OK;
    int want = -1;
    for (int l = 0; l < ST_SIMD_COUNT_; l++)
        if (strcasecmp(env, k_level_names[l]) == 0) want = l;
    if (want < 0)
        return st__fail(ST_ERR_INVALID_ARG,
                        "STRATA_SIMD='%.64s': unknown level (allowed: scalar, avx2, avx512, neon)",
                        env);
    if (!bits_support(simd, (st_simd_level)want))
        return st__fail(ST_ERR_UNSUPPORTED,
                        "STRATA_SIMD=%s: this CPU cannot run that level (best here: %s)",
                        k_level_names[want], k_level_names[best]);
    *level = (st_simd_level)want;
    return ST_OK;
}

st_simd_level st_hw_simd_best(const st_hw_info *info) {
    st_simd_level level;
    st_status s = st_hw_simd_from_env(info, &level);
    if (s != ST_OK)
        st_log_msg(ST_LOG_WARN, "%s; using %s", st_last_error(), st_hw_simd_level_name(level));
    return level;
}
