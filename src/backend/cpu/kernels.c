/*
 * kernels.c — picks the CPU kernel table of a SIMD level.
 *
 * The tables themselves live in kernels_scalar.c, kernels_avx2.c and
 * kernels_avx512.c (the last two are compiled only on x86-64, with their
 * instruction-set flags). This file does not ask the CPU what it can run:
 * layer 1 (st_hw_simd_supported) answers that, and the executor calls this
 * only with a level the CPU supports. Stateless; safe from any thread.
 */
#include "backend/cpu/kernels.h"

const st_cpu_kernels *st__cpu_kernels(st_simd_level level) {
    switch (level) {
    case ST_SIMD_SCALAR: return &st__cpu_kernels_scalar;
#if defined(__x86_64__)
    case ST_SIMD_AVX2: return &st__cpu_kernels_avx2;
    case ST_SIMD_AVX512: return &st__cpu_kernels_avx512;
#endif
    default: return NULL;
    }
}
