/*
 * infer_kernels_avx2.c — the AVX2+FMA kernels of infer_kernels.h (compiled
 * with the AVX2 flags by CMake's naming rule; chosen only when the level is
 * ST_SIMD_AVX2). Same passes as infer_kernels_avx512.c at eight lanes
 * (attention holds 32 output floats of a head in registers); a row that is
 * not a multiple of 8 takes masked loads (vmaskmovps) for its last vector.
 * Stateless; any thread.
 */
#include <immintrin.h>
#include <math.h>

#include "infer/infer_kernels.h"
#include "backend/cpu/kernels_reduce.h"

static const int32_t k_mask_src[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* lanes [0, left) set, left clamped to [0, 8] */
static inline __m256i mask_of(int64_t left) {
    int64_t l = left < 0 ? 0 : left > 8 ? 8 : left;
    return _mm256_loadu_si256((const __m256i *)(k_mask_src + 8 - l));
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x), Cephes' expf polynomial as in infer_kernels_avx512.c; 2^k built in the
 * exponent field, so x is clamped to [-87, 88] and lanes below -87 give 0
 * (expf there is below 1.7e-38). */
static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 live = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.0f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^k for k in [-126, 127]: (k + 127) << 23 */
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), live);
}

static inline void prefetch_block(const float *b, int64_t m, int64_t row, int64_t len) {
    for (int64_t s = 0; s < m; s++)
        for (int64_t i = 0; i < len; i += 16)
            _mm_prefetch((const char *)(b + s * row + i), _MM_HINT_T1);
}

void st__att_avx2(const st__att_args *a) {
    const int64_t D = a->D, n = a->n_keys, bt = a->bt, row = a->row, bstride = bt * row;
    const int64_t H = a->n_heads, nv = (D + 7) / 8;
    const __m256i tail = mask_of(D - 8 * (nv - 1)), full = mask_of(8);
    const float scale = a->scale;
    int64_t kvo[ST_ATT_MAX_HEADS];
    for (int64_t j = 0; j < H; j++)
        kvo[j] = ((a->first + j) / a->group - a->first / a->group) * D;
    const int64_t span = ((a->first + H - 1) / a->group - a->first / a->group) * D + D;
    for (int64_t s0 = 0; s0 < n; s0 += bt) {
        const float *kb = a->k + (int64_t)a->blocks[s0 / bt] * bstride;
        const int64_t m = n - s0 < bt ? n - s0 : bt;
        if (s0 + bt < n) {
            const int64_t m2 = n - s0 - bt < bt ? n - s0 - bt : bt;
            prefetch_block(a->k + (int64_t)a->blocks[s0 / bt + 1] * bstride, m2, row, span);
        }
        int64_t s = 0;
        /* four keys at a time: four dot chains, one folded sum (as AVX-512) */
        for (; s + 4 <= m; s += 4) {
            const float *kr = kb + s * row;
            for (int64_t j = 0; j < H; j++) {
                const float *qj = a->q + j * D, *kj = kr + kvo[j];
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int64_t c = 0; c < nv; c++) {
                    const __m256i mk = c == nv - 1 ? tail : full;
                    const __m256 qv = _mm256_maskload_ps(qj + 8 * c, mk);
                    const float *kc = kj + 8 * c;
                    a0 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kc, mk), a0);
                    a1 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kc + row, mk), a1);
                    a2 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kc + 2 * row, mk), a2);
                    a3 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kc + 3 * row, mk), a3);
                }
                _mm_storeu_ps(a->scores + j * n + s0 + s,
                              _mm_mul_ps(st__reduce4_avx2(a0, a1, a2, a3), _mm_set1_ps(scale)));
            }
        }
        for (; s < m; s++) {
            const float *kr = kb + s * row;
            for (int64_t j = 0; j < H; j++) {
                const float *qj = a->q + j * D, *kj = kr + kvo[j];
                __m256 acc = _mm256_setzero_ps();
                for (int64_t c = 0; c < nv; c++) {
                    const __m256i mk = c == nv - 1 ? tail : full;
                    acc = _mm256_fmadd_ps(_mm256_maskload_ps(qj + 8 * c, mk),
                                          _mm256_maskload_ps(kj + 8 * c, mk), acc);
                }
                a->scores[j * n + s0 + s] = hsum8(acc) * scale;
            }
        }
    }
    float inv[ST_ATT_MAX_HEADS];
    for (int64_t j = 0; j < H; j++) {
        float *sc = a->scores + j * n;
        __m256 vmx = _mm256_set1_ps(-INFINITY);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(sc + i));
        float mxs = hmax8(vmx);
        for (; i < n; i++)
            mxs = sc[i] > mxs ? sc[i] : mxs;
        const __m256 mx = _mm256_set1_ps(mxs);
        __m256 vsum = _mm256_setzero_ps();
        for (i = 0; i < n; i += 8) {
            const __m256i mk = mask_of(n - i);
            __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(sc + i, mk), mx)),
                                     _mm256_castsi256_ps(mk));
            _mm256_maskstore_ps(sc + i, mk, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        inv[j] = 1.0f / hsum8(vsum);
    }
    for (int64_t s0 = 0; s0 < n; s0 += bt) {
        const float *vb = a->v + (int64_t)a->blocks[s0 / bt] * bstride;
        const int64_t m = n - s0 < bt ? n - s0 : bt;
        if (s0 + bt < n) {
            const int64_t m2 = n - s0 - bt < bt ? n - s0 - bt : bt;
            prefetch_block(a->v + (int64_t)a->blocks[s0 / bt + 1] * bstride, m2, row, span);
        }
        for (int64_t j = 0; j < H; j++) {
            const float *sc = a->scores + j * n + s0;
            for (int64_t c0 = 0; c0 < nv; c0 += 4) {
                const __m256i m0 = mask_of(D - 8 * c0), m1 = mask_of(D - 8 * (c0 + 1)),
                              m2 = mask_of(D - 8 * (c0 + 2)), m3 = mask_of(D - 8 * (c0 + 3));
                float *o = a->out + j * D + 8 * c0;
                __m256 o0, o1, o2, o3;
                if (s0 == 0) {
                    o0 = o1 = o2 = o3 = _mm256_setzero_ps();
                } else {
                    o0 = _mm256_maskload_ps(o, m0);
                    o1 = _mm256_maskload_ps(o + 8, m1);
                    o2 = _mm256_maskload_ps(o + 16, m2);
                    o3 = _mm256_maskload_ps(o + 24, m3);
                }
                const float *vr = vb + kvo[j] + 8 * c0;
                for (int64_t s = 0; s < m; s++, vr += row) {
                    const __m256 p = _mm256_set1_ps(sc[s]);
                    o0 = _mm256_fmadd_ps(p, _mm256_maskload_ps(vr, m0), o0);
                    o1 = _mm256_fmadd_ps(p, _mm256_maskload_ps(vr + 8, m1), o1);
                    o2 = _mm256_fmadd_ps(p, _mm256_maskload_ps(vr + 16, m2), o2);
                    o3 = _mm256_fmadd_ps(p, _mm256_maskload_ps(vr + 24, m3), o3);
                }
                if (s0 + bt >= n) {
                    const __m256 vi = _mm256_set1_ps(inv[j]);
                    o0 = _mm256_mul_ps(o0, vi);
                    o1 = _mm256_mul_ps(o1, vi);
                    o2 = _mm256_mul_ps(o2, vi);
                    o3 = _mm256_mul_ps(o3, vi);
                }
                _mm256_maskstore_ps(o, m0, o0);
                _mm256_maskstore_ps(o + 8, m1, o1);
                _mm256_maskstore_ps(o + 16, m2, o2);
                _mm256_maskstore_ps(o + 24, m3, o3);
            }
        }
    }
}

/* ---- the sampler's vocabulary passes ---------------------------------------------- */

static int32_t argmax_avx2(int64_t n, const float *x) {
    /* the largest value (vmaxps returns its second operand when one is NaN,
     * so NaNs drop out), then the first index holding it */
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
    }
    float mx = hmax8(_mm256_max_ps(m0, m1));
    for (; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    const __m256 vm = _mm256_set1_ps(mx);
    for (i = 0; i + 8 <= n; i += 8) {
        int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), vm, _CMP_EQ_OQ));
        if (hit) return (int32_t)(i + __builtin_ctz((unsigned)hit));
    }
    for (; i < n; i++)
        if (x[i] == mx) return (int32_t)i;
    return 0; /* all NaN */
}

static double exp_sum_avx2(int64_t n, const float *x, float mx, float scale, float *y) {
    const __m256 vm = _mm256_set1_ps(mx), vs = _mm256_set1_ps(scale);
    __m256d total = _mm256_setzero_pd();
    for (int64_t i0 = 0; i0 < n; i0 += 1024) {
        /* float lanes over at most 1024 terms, then into double */
        const int64_t end = n - i0 < 1024 ? n : i0 + 1024;
        __m256 s = _mm256_setzero_ps();
        for (int64_t i = i0; i < end; i += 8) {
            const __m256i mk = mask_of(end - i);
            __m256 e = _mm256_and_ps(
                exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm), vs)),
                _mm256_castsi256_ps(mk));
            if (y) _mm256_maskstore_ps(y + i, mk, e);
            s = _mm256_add_ps(s, e);
        }
        total = _mm256_add_pd(total, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));
        total = _mm256_add_pd(total, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
    }
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(total), _mm256_extractf128_pd(total, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}

const st__vocab_kernels st__vocab_avx2 = {argmax_avx2, exp_sum_avx2};
