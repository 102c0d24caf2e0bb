/*
 * kernels_reduce.h — horizontal sums of four vectors at once, shared by the
 * SIMD kernel files that need them (the small-n products, kernels_small_*.c,
 * and the attention kernels, src/infer/infer_kernels_*.c). Each includes it
 * after <immintrin.h>; a function is defined only where the file is compiled
 * for its level (__AVX512F__ / __AVX2__), so the AVX2 files see only theirs.
 *
 * Folding four accumulators into one vector of four sums costs about a third
 * of the operations of four separate full reductions, and the four dependency
 * chains before it run side by side. The order of the adds is fixed here, so
 * every caller of one level sums the same way. Stateless, static inline.
 */
#ifndef STRATA_BACKEND_CPU_KERNELS_REDUCE_H
#define STRATA_BACKEND_CPU_KERNELS_REDUCE_H

#if defined(__x86_64__)
#include <immintrin.h>

#if defined(__AVX512F__)
/* [sum a, sum b, sum c, sum d] of four 16-float vectors */
static inline __attribute__((always_inline)) __m128 st__reduce4_avx512(__m512 a, __m512 b,
                                                                       __m512 c, __m512 d) {
    const __m512 ab =
        _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
    const __m512 cd =
        _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
    /* t = [a', b', c', d'] as four 128-bit quarters, each 4 partial sums */
    const __m512 t =
        _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
    const __m256 lo = _mm512_castps512_ps256(t), hi = _mm512_extractf32x8_ps(t, 1);
    __m256 h = _mm256_hadd_ps(lo, hi); /* [a01 a23 c01 c23 | b01 b23 d01 d23] */
    h = _mm256_hadd_ps(h, h);          /* [a c a c | b d b d] */
    return _mm_unpacklo_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}
#endif

#if defined(__AVX2__)
/* [sum a, sum b, sum c, sum d] of four 8-float vectors */
static inline __attribute__((always_inline)) __m128 st__reduce4_avx2(__m256 a, __m256 b, __m256 c,
                                                                     __m256 d) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}
#endif

#endif /* __x86_64__ */
#endif
