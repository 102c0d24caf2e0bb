/*
 * test_hw.c — layer 1: the machine query, the kernel-level choice
 * (STRATA_SIMD), feature names and the roofline probes.
 *
 * The query is checked for internal consistency (this test runs on any
 * machine, so no fixed values); the level logic is checked on fabricated
 * st_hw_info values so that every branch is covered whatever the CPU; the
 * probes run tiny (gemm 128, 4 MiB arrays, 10 ms) and must give positive,
 * finite numbers. No timings are asserted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "strata/hw.h"

#define X86_AVX2 (ST_HW_SSE42 | ST_HW_AVX | ST_HW_AVX2 | ST_HW_FMA | ST_HW_F16C)
#define X86_AVX512 (X86_AVX2 | ST_HW_AVX512F | ST_HW_AVX512BW | ST_HW_AVX512VL | ST_HW_AVX512DQ)

static st_hw_info fake(uint32_t simd) {
    st_hw_info info;
    memset(&info, 0, sizeof info);
    info.simd = simd;
    return info;
}

/* ---- query ---------------------------------------------------------------- */
static void test_query_sanity(void **state) {
    (void)state;
    st_hw_info hw;
    assert_int_equal(st_hw_query(&hw), ST_OK);
    assert_true(hw.arch[0] != '\0');
    assert_true(hw.threads >= 1);
    assert_true(hw.cores >= 1);
    assert_true(hw.cores <= hw.threads);
    assert_true(hw.sockets >= 1);
    assert_true(hw.sockets <= hw.cores);
    assert_true(hw.mem_available_bytes > 0);
    assert_true(hw.mem_total_bytes >= hw.mem_available_bytes);
    assert_true(hw.numa_nodes >= 1);
    if (hw.cacheline_bytes)
        assert_true(hw.cacheline_bytes == 32 || hw.cacheline_bytes == 64 ||
                    hw.cacheline_bytes == 128 || hw.cacheline_bytes == 256);
    /* The BLAS is linked in, so it always answers. */
    assert_true(hw.blas_name[0] != '\0');
    assert_true(hw.blas_threads >= 1);
    /* Only defined bits (0..19) may be set. */
    assert_int_equal(hw.simd & ~((1u << 20) - 1), 0);
#if defined(__x86_64__)
    assert_true(hw.cpu_vendor[0] != '\0');
    assert_true(hw.simd & ST_HW_SSE42); /* every x86-64 CPU this decade */
    if (hw.simd & ST_HW_AVX512F) assert_true(hw.simd & ST_HW_AVX2);
    if (hw.simd & ST_HW_AVX2) assert_true(hw.simd & ST_HW_AVX);
    if (hw.simd & ST_HW_AVX512_BF16) assert_true(hw.simd & ST_HW_AVX512F);
    assert_int_equal(hw.simd & (ST_HW_NEON | ST_HW_SVE | ST_HW_SVE2), 0);
#elif defined(__aarch64__)
    assert_true(hw.simd & ST_HW_NEON);
    if (hw.simd & ST_HW_SVE2) assert_true(hw.simd & ST_HW_SVE);
#endif
    unsetenv("STRATA_SIMD");
    assert_true(st_hw_simd_supported(&hw, st_hw_simd_best(&hw)));
    assert_true(st_hw_simd_supported(&hw, st_hw_simd_best(NULL)));
#ifdef STRATA_HAVE_CUDA
    assert_true(hw.cuda_built);
#else
    assert_false(hw.cuda_built);
#endif
    assert_true(hw.n_gpus >= 0 && hw.n_gpus <= ST_HW_MAX_GPUS);
    for (int i = 0; i < hw.n_gpus; i++) {
        assert_true(hw.gpus[i].name[0] != '\0');
        assert_true(hw.gpus[i].mem_total_bytes > 0);
        assert_true(hw.gpus[i].cc_major >= 1);
    }
}

static void test_query_null(void **state) {
    (void)state;
    assert_int_equal(st_hw_query(NULL), ST_ERR_INVALID_ARG);
    assert_non_null(strstr(st_last_error(), "NULL"));
}

/* ---- kernel levels ------------------------------------------------------------ */
static void test_simd_supported(void **state) {
    (void)state;
    static const struct {
        uint32_t simd;
        st_simd_level level;
        bool want;
    } cases[] = {
        {0, ST_SIMD_SCALAR, true},
        {0, ST_SIMD_AVX2, false},
        {X86_AVX2, ST_SIMD_AVX2, true},
        {X86_AVX2 & ~ST_HW_FMA, ST_SIMD_AVX2, false},  /* AVX2 without FMA */
        {X86_AVX2 & ~ST_HW_F16C, ST_SIMD_AVX2, false}, /* nor without F16C */
        {X86_AVX2, ST_SIMD_AVX512, false},
        {X86_AVX512, ST_SIMD_AVX512, true},
        {X86_AVX512, ST_SIMD_AVX2, true},
        {X86_AVX512 & ~ST_HW_AVX512VL, ST_SIMD_AVX512, false},
        {X86_AVX512 & ~ST_HW_AVX2, ST_SIMD_AVX512, false}, /* needs the avx2 level too */
        {X86_AVX512, ST_SIMD_NEON, false},
        {ST_HW_NEON, ST_SIMD_NEON, true},
        {ST_HW_NEON, ST_SIMD_AVX2, false},
        {X86_AVX512, (st_simd_level)ST_SIMD_COUNT_, false},
        {X86_AVX512, (st_simd_level)-1, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        st_hw_info info = fake(cases[i].simd);
        if (st_hw_simd_supported(&info, cases[i].level) != cases[i].want)
            fail_msg("case %zu: simd=0x%x level=%d want %d", i, cases[i].simd, cases[i].level,
                     cases[i].want);
    }
}

static void test_simd_env(void **state) {
    (void)state;
    static const struct {
        const char *env; /* NULL: unset */
        uint32_t simd;
        st_status want_status;
        st_simd_level want_level; /* from_env's *level, also what simd_best returns */
    } cases[] = {
        {NULL, X86_AVX512, ST_OK, ST_SIMD_AVX512},
        {"", X86_AVX512, ST_OK, ST_SIMD_AVX512},
        {NULL, X86_AVX2, ST_OK, ST_SIMD_AVX2},
        {NULL, 0, ST_OK, ST_SIMD_SCALAR},
        {NULL, ST_HW_NEON, ST_OK, ST_SIMD_NEON},
        {"scalar", X86_AVX512, ST_OK, ST_SIMD_SCALAR},
        {"avx2", X86_AVX512, ST_OK, ST_SIMD_AVX2},
        {"AVX512", X86_AVX512, ST_OK, ST_SIMD_AVX512}, /* case-insensitive */
        {"avx512", X86_AVX2, ST_ERR_UNSUPPORTED, ST_SIMD_AVX2},
        {"avx2", 0, ST_ERR_UNSUPPORTED, ST_SIMD_SCALAR},
        {"neon", X86_AVX512, ST_ERR_UNSUPPORTED, ST_SIMD_AVX512},
        {"neon", ST_HW_NEON, ST_OK, ST_SIMD_NEON},
        {"bogus", X86_AVX512, ST_ERR_INVALID_ARG, ST_SIMD_AVX512},
        {"avx", X86_AVX512, ST_ERR_INVALID_ARG, ST_SIMD_AVX512},
    };
    const char *saved = getenv("STRATA_SIMD");
    char *saved_copy = saved ? strdup(saved) : NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].env) setenv("STRATA_SIMD", cases[i].env, 1);
        else unsetenv("STRATA_SIMD");
        st_hw_info info = fake(cases[i].simd);
        st_simd_level level = (st_simd_level)-1;
        st_status s = st_hw_simd_from_env(&info, &level);
        if (s != cases[i].want_status || level != cases[i].want_level)
            fail_msg("case %zu (STRATA_SIMD=%s): got %s level %d, want %s level %d", i,
                     cases[i].env ? cases[i].env : "(unset)", st_status_name(s), level,
                     st_status_name(cases[i].want_status), cases[i].want_level);
        if (s == ST_ERR_INVALID_ARG) {
            /* The message names the value and the allowed ones. */
            assert_non_null(strstr(st_last_error(), cases[i].env));
            assert_non_null(strstr(st_last_error(), "avx512"));
            assert_non_null(strstr(st_last_error(), "scalar"));
        }
        if (s == ST_ERR_UNSUPPORTED) assert_non_null(strstr(st_last_error(), "STRATA_SIMD"));
        assert_int_equal(st_hw_simd_best(&info), cases[i].want_level);
    }
    assert_int_equal(st_hw_simd_from_env(NULL, NULL), ST_ERR_INVALID_ARG);
    if (saved_copy) setenv("STRATA_SIMD", saved_copy, 1);
    else unsetenv("STRATA_SIMD");
    free(saved_copy);
}

static void test_names(void **state) {
    (void)state;
    static const struct {
        uint32_t bit;
        const char *name; /* NULL: no name */
    } cases[] = {
        {ST_HW_SSE42, "sse4_2"},
        {ST_HW_AVX2, "avx2"},
        {ST_HW_AVX512F, "avx512f"},
        {ST_HW_AVX512_BF16, "avx512_bf16"},
        {ST_HW_AVX512_VNNI, "avx512_vnni"},
        {ST_HW_AVX_VNNI, "avx_vnni"},
        {ST_HW_AMX_TILE, "amx_tile"},
        {ST_HW_NEON, "neon"},
        {ST_HW_ARM_DOTPROD, "arm_dotprod"},
        {0, NULL},
        {ST_HW_AVX | ST_HW_AVX2, NULL}, /* two bits */
        {1u << 20, NULL},               /* not defined (yet) */
        {1u << 31, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = st_hw_feature_name(cases[i].bit);
        if (cases[i].name == NULL) assert_null(got);
        else assert_string_equal(got, cases[i].name);
    }
    /* Every defined bit has its own name. */
    for (int i = 0; i < 20; i++) {
        const char *a = st_hw_feature_name(1u << i);
        assert_non_null(a);
        for (int j = 0; j < i; j++) assert_string_not_equal(a, st_hw_feature_name(1u << j));
    }
    assert_string_equal(st_hw_simd_level_name(ST_SIMD_SCALAR), "scalar");
    assert_string_equal(st_hw_simd_level_name(ST_SIMD_AVX2), "avx2");
    assert_string_equal(st_hw_simd_level_name(ST_SIMD_AVX512), "avx512");
    assert_string_equal(st_hw_simd_level_name(ST_SIMD_NEON), "neon");
    assert_string_equal(st_hw_simd_level_name((st_simd_level)99), "unknown");
}

/* ---- BLAS threads ------------------------------------------------------------- */
static void test_blas_threads(void **state) {
    (void)state;
    int prev = st_hw_blas_get_threads();
    assert_true(prev >= 1);
    st_hw_blas_set_threads(1);
    assert_int_equal(st_hw_blas_get_threads(), 1);
    st_hw_blas_set_threads(0); /* all processors */
    assert_true(st_hw_blas_get_threads() >= 1);
    st_hw_blas_set_threads(prev);
    assert_int_equal(st_hw_blas_get_threads(), prev);
}

/* ---- probes ---------------------------------------------------------------------- */
static void test_measure_tiny(void **state) {
    (void)state;
    st_hw_measure_params p = st_hw_measure_default_params();
    assert_int_equal(p.n_threads, 0);
    p.n_threads = 2;
    p.gemm_n = 128;
    p.stream_bytes = (size_t)4 << 20;
    p.min_time_s = 0.01;
    const int blas_before = st_hw_blas_get_threads();
    const int64_t live_before = st_alloc_get_stats().live_bytes;
    st_hw_measure m;
    assert_int_equal(st_hw_measure_run(&p, &m), ST_OK);
    assert_int_equal(m.n_threads, 2);
    const double vals[] = {m.sgemm_gflops, m.copy_gbs, m.triad_gbs, m.ridge_flop_per_byte};
    for (size_t i = 0; i < 4; i++) {
        assert_true(isfinite(vals[i]));
        assert_true(vals[i] > 0);
    }
    /* ridge is sgemm / triad exactly, up to rounding (relative 1e-12). */
    assert_true(fabs(m.ridge_flop_per_byte - m.sgemm_gflops / m.triad_gbs) <=
                1e-12 * m.ridge_flop_per_byte);
    assert_int_equal(st_hw_blas_get_threads(), blas_before); /* restored */
    assert_int_equal(st_alloc_get_stats().live_bytes, live_before); /* all freed */

    /* One thread, a size that does not split evenly into cache lines. */
    p.n_threads = 1;
    p.gemm_n = 33;
    p.stream_bytes = (64 << 10) + 12;
    assert_int_equal(st_hw_measure_run(&p, &m), ST_OK);
    assert_true(m.sgemm_gflops > 0 && m.copy_gbs > 0 && m.triad_gbs > 0);

    /* The bandwidth probes alone: no sgemm figures, nothing left allocated. */
    assert_int_equal(st_hw_measure_bandwidth(&p, &m), ST_OK);
    assert_true(m.copy_gbs > 0 && isfinite(m.copy_gbs) && m.triad_gbs > 0);
    assert_true(m.sgemm_gflops == 0 && m.ridge_flop_per_byte == 0);
    assert_int_equal(m.n_threads, 1);
    assert_int_equal(st_alloc_get_stats().live_bytes, live_before);
}

static void test_measure_bad_params(void **state) {
    (void)state;
    st_hw_measure m;
    st_hw_measure_params base = st_hw_measure_default_params();
    base.gemm_n = 64;
    base.stream_bytes = (size_t)1 << 20;
    base.min_time_s = 0.001;
    st_hw_measure_params cases[6];
    for (int i = 0; i < 6; i++) cases[i] = base;
    cases[0].n_threads = -1;
    cases[1].gemm_n = -5;
    cases[2].gemm_n = 1 << 20;
    cases[3].stream_bytes = 100; /* below the 64 KiB floor */
    cases[4].min_time_s = -1;
    cases[5].min_time_s = NAN;
    for (int i = 0; i < 6; i++) {
        if (st_hw_measure_run(&cases[i], &m) != ST_ERR_INVALID_ARG) fail_msg("case %d", i);
        assert_non_null(strstr(st_last_error(), "hw_measure"));
        if (st_hw_measure_bandwidth(&cases[i], &m) != ST_ERR_INVALID_ARG)
            fail_msg("bandwidth case %d", i);
    }
    assert_int_equal(st_hw_measure_bandwidth(NULL, &m), ST_ERR_INVALID_ARG);
    assert_int_equal(st_hw_measure_run(NULL, &m), ST_ERR_INVALID_ARG);
    assert_int_equal(st_hw_measure_run(&base, NULL), ST_ERR_INVALID_ARG);
}

static void test_measure_nomem(void **state) {
    (void)state;
    st_hw_measure_params p = st_hw_measure_default_params();
    p.n_threads = 2;
    p.gemm_n = 64;
    p.stream_bytes = (size_t)1 << 20;
    p.min_time_s = 0.001;
    st_hw_measure m;
    /* Fail the first, then a later allocation: both probes' paths. */
    for (int64_t n = 0; n < 8; n++) {
        st_alloc_fail_after(n);
        st_status s = st_hw_measure_run(&p, &m);
        st_alloc_fail_after(-1);
        assert_true(s == ST_OK || s == ST_ERR_NOMEM);
        if (s == ST_ERR_NOMEM) assert_non_null(strstr(st_last_error(), "hw_measure"));
    }
    st_alloc_fail_after(0);
    assert_int_equal(st_hw_measure_run(&p, &m), ST_ERR_NOMEM);
    st_alloc_fail_after(-1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_sanity),      cmocka_unit_test(test_query_null),
        cmocka_unit_test(test_simd_supported),    cmocka_unit_test(test_simd_env),
        cmocka_unit_test(test_names),             cmocka_unit_test(test_blas_threads),
        cmocka_unit_test(test_measure_tiny),      cmocka_unit_test(test_measure_bad_params),
        cmocka_unit_test(test_measure_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
