/*
 * infer_kernels_avx512.c — the AVX-512 kernels of infer_kernels.h (compiled
 * with the AVX-512 flags by CMake's naming rule; chosen only when the level
 * is ST_SIMD_AVX512). Rows of any length use masked loads for the tail, so
 * there is no scalar loop. Stateless; any thread.
 *
 * Attention: scores four keys at a time, each key's row read once for all
 * the run's heads (front to back, so the prefetchers stream it; the next
 * block is prefetched by hand, blocks being scattered), the four dot chains
 * side by side and folded into four sums at once (kernels_reduce.h: per key
 * a full 16-lane reduction cost more than the dot; one run of 2 heads over
 * 48 cached keys 0.96 -> 0.75 us from cache); per head max, exp and its
 * sum sixteen scores at a time; out = sum_s p_s V_s block by block, each
 * head's output in up to four registers while the block's rows pass (in L1
 * after the first head), scaled by 1/sum after the last block.
 */
#include <immintrin.h>
#include <math.h>

#include "infer/infer_kernels.h"
#include "backend/cpu/kernels_reduce.h"

#include <stdint.h>

/* exp(x) for x in [-88, 88] (clamped outside), Cephes' expf polynomial:
 * x = k ln2 + r, |r| <= ln2/2, exp(r) = 1 + r + r^2 P(r), times 2^k by
 * vscalefps (which gives the subnormals expf gives near -88). */
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0f)), _mm512_set1_ps(88.0f));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, k);
}

static inline __mmask16 mask_of(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* Prefetches rows [0, m) of a block, floats [0, len) of each, into L2. */
static inline void prefetch_block(const float *b, int64_t m, int64_t row, int64_t len) {
    for (int64_t s = 0; s < m; s++)
        for (int64_t i = 0; i < len; i += 16)
            _mm_prefetch((const char *)(b + s * row + i), _MM_HINT_T1);
}

void st__att_avx512(const st__att_args *a) {
    const int64_t D = a->D, n = a->n_keys, bt = a->bt, row = a->row, bstride = bt * row;
    const int64_t H = a->n_heads, nv = (D + 15) / 16;
    const __mmask16 tail = mask_of(D - 16 * (nv - 1));
    const float scale = a->scale;
    int64_t kvo[ST_ATT_MAX_HEADS];
    for (int64_t j = 0; j < H; j++)
        kvo[j] = ((a->first + j) / a->group - a->first / a->group) * D;
    /* floats of a row the run reads */
    const int64_t span = ((a->first + H - 1) / a->group - a->first / a->group) * D + D;
    /* scores: each key's row once, all heads of the run */
    for (int64_t s0 = 0; s0 < n; s0 += bt) {
        const float *kb = a->k + (int64_t)a->blocks[s0 / bt] * bstride;
        const int64_t m = n - s0 < bt ? n - s0 : bt;
        if (s0 + bt < n) {
            const int64_t m2 = n - s0 - bt < bt ? n - s0 - bt : bt;
            prefetch_block(a->k + (int64_t)a->blocks[s0 / bt + 1] * bstride, m2, row, span);
        }
        int64_t s = 0;
        /* four keys at a time: four independent dot chains, one folded sum */
        for (; s + 4 <= m; s += 4) {
            const float *kr = kb + s * row;
            for (int64_t j = 0; j < H; j++) {
                const float *qj = a->q + j * D, *kj = kr + kvo[j];
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int64_t c = 0; c < nv; c++) {
                    const __mmask16 mk = c == nv - 1 ? tail : (__mmask16)0xFFFF;
                    const __m512 qv = _mm512_maskz_loadu_ps(mk, qj + 16 * c);
                    const float *kc = kj + 16 * c;
                    a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, kc), a0);
                    a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, kc + row), a1);
                    a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, kc + 2 * row), a2);
                    a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, kc + 3 * row), a3);
                }
                _mm_storeu_ps(a->scores + j * n + s0 + s,
                              _mm_mul_ps(st__reduce4_avx512(a0, a1, a2, a3), _mm_set1_ps(scale)));
            }
        }
        for (; s < m; s++) {
            const float *kr = kb + s * row;
            for (int64_t j = 0; j < H; j++) {
                const float *qj = a->q + j * D, *kj = kr + kvo[j];
                __m512 acc = _mm512_setzero_ps();
                for (int64_t c = 0; c < nv; c++) {
                    const __mmask16 mk = c == nv - 1 ? tail : (__mmask16)0xFFFF;
                    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, qj + 16 * c),
                                          _mm512_maskz_loadu_ps(mk, kj + 16 * c), acc);
                }
                a->scores[j * n + s0 + s] = _mm512_reduce_add_ps(acc) * scale;
            }
        }
    }
    /* softmax numerators per head; 1/sum applied to out at the end */
    float inv[ST_ATT_MAX_HEADS];
    for (int64_t j = 0; j < H; j++) {
        float *sc = a->scores + j * n;
        __m512 vmx = _mm512_set1_ps(-INFINITY);
        for (int64_t i = 0; i < n; i += 16)
            vmx = _mm512_mask_max_ps(vmx, mask_of(n - i), vmx,
                                     _mm512_maskz_loadu_ps(mask_of(n - i), sc + i));
        const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmx));
        __m512 vsum = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 mk = mask_of(n - i);
            __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, sc + i), mx));
            _mm512_mask_storeu_ps(sc + i, mk, e);
            vsum = _mm512_mask_add_ps(vsum, mk, vsum, e);
        }
        inv[j] = 1.0f / _mm512_reduce_add_ps(vsum);
    }
    /* out = P V block by block: per head, 64 output floats in registers
     * while the block's rows pass (the block is in L1 after the first head) */
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
                const __mmask16 m0 = mask_of(D - 16 * c0), m1 = mask_of(D - 16 * (c0 + 1)),
                                m2 = mask_of(D - 16 * (c0 + 2)), m3 = mask_of(D - 16 * (c0 + 3));
                float *o = a->out + j * D + 16 * c0;
                __m512 o0, o1, o2, o3;
                if (s0 == 0) {
                    o0 = o1 = o2 = o3 = _mm512_setzero_ps();
                } else {
                    o0 = _mm512_maskz_loadu_ps(m0, o);
                    o1 = _mm512_maskz_loadu_ps(m1, o + 16);
                    o2 = _mm512_maskz_loadu_ps(m2, o + 32);
                    o3 = _mm512_maskz_loadu_ps(m3, o + 48);
                }
                const float *vr = vb + kvo[j] + 16 * c0;
                for (int64_t s = 0; s < m; s++, vr += row) {
                    const __m512 p = _mm512_set1_ps(sc[s]);
                    o0 = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(m0, vr), o0);
                    o1 = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(m1, vr + 16), o1);
                    o2 = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(m2, vr + 32), o2);
                    o3 = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(m3, vr + 48), o3);
                }
                if (s0 + bt >= n) { /* last block: normalize */
                    const __m512 vi = _mm512_set1_ps(inv[j]);
                    o0 = _mm512_mul_ps(o0, vi);
                    o1 = _mm512_mul_ps(o1, vi);
                    o2 = _mm512_mul_ps(o2, vi);
                    o3 = _mm512_mul_ps(o3, vi);
                }
                _mm512_mask_storeu_ps(o, m0, o0);
                _mm512_mask_storeu_ps(o + 16, m1, o1);
                _mm512_mask_storeu_ps(o + 32, m2, o2);
                _mm512_mask_storeu_ps(o + 48, m3, o3);
            }
        }
    }
}

/* ---- the sampler's vocabulary passes ---------------------------------------------- */

static int32_t argmax_avx512(int64_t n, const float *x) {
    /* the largest value (vmaxps returns its second operand when one is NaN,
     * so NaNs drop out), then the first index holding it */
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm512_max_ps(_mm512_loadu_ps(x + i), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(x + i + 16), m1);
    }
    for (; i < n; i += 16)
        m0 = _mm512_max_ps(_mm512_maskz_loadu_ps(mask_of(n - i), x + i), m0);
    const float mx = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    const __m512 vm = _mm512_set1_ps(mx);
    for (i = 0; i < n; i += 16) {
        __mmask16 hit = _mm512_mask_cmp_ps_mask(
            mask_of(n - i), _mm512_maskz_loadu_ps(mask_of(n - i), x + i), vm, _CMP_EQ_OQ);
        if (hit) return (int32_t)(i + __builtin_ctz((unsigned)hit));
    }
    return 0; /* all NaN */
}

static double exp_sum_avx512(int64_t n, const float *x, float mx, float scale, float *y) {
    const __m512 vm = _mm512_set1_ps(mx), vs = _mm512_set1_ps(scale);
    __m512d total = _mm512_setzero_pd();
    for (int64_t i0 = 0; i0 < n; i0 += 1024) {
        /* float lanes over at most 1024 terms, then into double */
        const int64_t end = n - i0 < 1024 ? n : i0 + 1024;
        __m512 s = _mm512_setzero_ps();
        for (int64_t i = i0; i < end; i += 16) {
            const __mmask16 mk = mask_of(end - i);
            __m512 e =
                exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm), vs));
            if (y) _mm512_mask_storeu_ps(y + i, mk, e);
            s = _mm512_mask_add_ps(s, mk, s, e);
        }
        total = _mm512_add_pd(total, _mm512_cvtps_pd(_mm512_castps512_ps256(s)));
        total = _mm512_add_pd(total, _mm512_cvtps_pd(_mm512_extractf32x8_ps(s, 1)));
    }
    return _mm512_reduce_add_pd(total);
}

const st__vocab_kernels st__vocab_avx512 = {argmax_avx512, exp_sum_avx512};
