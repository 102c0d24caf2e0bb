/*
 * kernels_avx2.c — the AVX2 + FMA + F16C CPU kernel table.
 *
 * Same functions as kernels_scalar.c (the spec) on 8-float vectors. Every
 * f32 loop runs unrolled full vectors and finishes the tail with one masked
 * load/store (vmaskmov), so the tail takes the same code path as the body
 * and no element is handled by a per-element branch or call (the 16-bit
 * conversions, which have no 16-bit masked moves here, finish their < 16
 * tail elements with the bit-exact scalar helpers). exp, log, tanh and the
 * normal CDF are vectorized here (range reduction + polynomials whose
 * coefficients live in kernels_math.h, shared with the AVX-512 table); GELU
 * and SiLU are built from them. Reductions keep four independent accumulators. Row
 * kernels (softmax, norms) make vectorized passes over the row, which stays
 * in L1/L2 after the first.
 *
 * Streaming forms (unary_nt, binary_nt, layernorm_nt, rmsnorm_nt; see
 * kernels.h) share every loop with the ordinary ones: the loops take a
 * store kind (U ordinary, NT non-temporal from the first 32-byte
 * boundary of y; UP and NTP also prefetch rows ahead), so both forms
 * compute each lane with the same instructions and write the same bits.
 *
 * Compiled with -mavx2 -mfma -mf16c (CMake, by file name); the executor only
 * calls this table when layer 1 reports AVX2+FMA. No state, no allocation,
 * no threads.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_math.h"

#define VL 8

static inline __m256 bc(float f) { return _mm256_set1_ps(f); }

/* lanes [0, rem) on, rem in 1..7 */
static inline __m256i tail_mask(int64_t rem) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), idx);
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- vector math ------------------------------------------------------------------ */

static inline __m256 v_exp(__m256 x) {
    /* max/min return their second operand when one is NaN: NaN passes */
    x = _mm256_max_ps(bc(ST_K_EXP_LO), x);
    x = _mm256_min_ps(bc(ST_K_EXP_HI), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, bc(ST_K_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, bc(ST_K_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, bc(ST_K_LN2_LO), r);
    __m256 p = bc(ST_K_EXP_P0);
    p = _mm256_fmadd_ps(p, r, bc(ST_K_EXP_P1));
    p = _mm256_fmadd_ps(p, r, bc(ST_K_EXP_P2));
    p = _mm256_fmadd_ps(p, r, bc(ST_K_EXP_P3));
    p = _mm256_fmadd_ps(p, r, bc(ST_K_EXP_P4));
    p = _mm256_fmadd_ps(p, r, bc(ST_K_EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, bc(1.0f));
    /* 2^n as 2^(n/2) * 2^(n - n/2): both halves are normal for n in [-150, 129] */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

static inline __m256 v_log(__m256 x) {
    const __m256 zero = _mm256_setzero_ps();
    /* subnormals: scale by 2^23 and take 23 off the exponent */
    __m256 sub = _mm256_cmp_ps(x, bc(1.17549435e-38f), _CMP_LT_OQ);
    __m256 xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, bc(8388608.0f)), sub);
    __m256 eadj = _mm256_and_ps(sub, bc(23.0f));
    __m256i xi = _mm256_castps_si256(xs);
    __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(126)));
    e = _mm256_sub_ps(e, eadj);
    /* m in [0.5, 1) */
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(xi, _mm256_set1_epi32(0x007fffff)),
                                                   _mm256_set1_epi32(0x3f000000)));
    __m256 lt = _mm256_cmp_ps(m, bc(ST_K_SQRTHF), _CMP_LT_OQ);
    e = _mm256_sub_ps(e, _mm256_and_ps(lt, bc(1.0f)));
    __m256 f = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(lt, m)), bc(1.0f));
    __m256 z = _mm256_mul_ps(f, f);
    __m256 p = bc(ST_K_LOG_P0);
    p = _mm256_fmadd_ps(p, f, bc(ST_K_LOG_P1));
    p = _mm256_fmadd_ps(p, f, bc(ST_K_LOG_P2));
    p = _mm256_fmadd_ps(p, f, bc(ST_K_LOG_P3));
    p = _mm256_fmadd_ps(p, f, bc(ST_K_LOG_P4));
    p = _mm256_fmadd_ps(p, f, bc(ST_K_LOG_P5));
    p = _mm256_fmadd_ps(p, f, bc(ST_K_LOG_P6));
    p = _mm256_fmadd_ps(p, f, bc(ST_K_LOG_P7));
    p = _mm256_fmadd_ps(p, f, bc(ST_K_LOG_P8));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, f), z);
    y = _mm256_fmadd_ps(e, bc(ST_K_LN2_LO), y);
    y = _mm256_fnmadd_ps(bc(0.5f), z, y);
    __m256 r = _mm256_add_ps(f, y);
    r = _mm256_fmadd_ps(e, bc(ST_K_LN2_HI), r);
    /* specials: +inf -> +inf, 0 -> -inf, x < 0 or NaN -> NaN */
    r = _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, bc(INFINITY), _CMP_EQ_OQ));
    r = _mm256_blendv_ps(r, bc(-INFINITY), _mm256_cmp_ps(x, zero, _CMP_EQ_OQ));
    r = _mm256_blendv_ps(r, bc(NAN), _mm256_cmp_ps(x, zero, _CMP_NGE_UQ));
    return r;
}

static inline __m256 v_tanh(__m256 x) {
    const __m256 sign = bc(-0.0f);
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 s = _mm256_mul_ps(x, x);
    __m256 p = bc(ST_K_TANH_P0);
    p = _mm256_fmadd_ps(p, s, bc(ST_K_TANH_P1));
    p = _mm256_fmadd_ps(p, s, bc(ST_K_TANH_P2));
    p = _mm256_fmadd_ps(p, s, bc(ST_K_TANH_P3));
    p = _mm256_fmadd_ps(p, s, bc(ST_K_TANH_P4));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, s), x, x);
    __m256 e = v_exp(_mm256_add_ps(ax, ax));
    __m256 big = _mm256_sub_ps(bc(1.0f), _mm256_div_ps(bc(2.0f), _mm256_add_ps(e, bc(1.0f))));
    big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, bc(ST_K_TANH_SMALL), _CMP_LT_OQ));
}

/* Phi(x), the normal CDF (see kernels_math.h) */
static inline __m256 v_phi(__m256 x) {
    const __m256 sign = bc(-0.0f);
    __m256 az = _mm256_mul_ps(_mm256_andnot_ps(sign, x), bc(ST_K_INV_SQRT2));
    __m256 t = _mm256_min_ps(bc(ST_K_PHI_CLAMP), az); /* NaN passes */
    /* Estrin's scheme: a shorter dependency chain than Horner */
    __m256 t2 = _mm256_mul_ps(t, t);
    __m256 t4 = _mm256_mul_ps(t2, t2);
    __m256 p01 = _mm256_fmadd_ps(bc(ST_K_PHI_Q1), t, bc(ST_K_PHI_Q0));
    __m256 p23 = _mm256_fmadd_ps(bc(ST_K_PHI_Q3), t, bc(ST_K_PHI_Q2));
    __m256 p45 = _mm256_fmadd_ps(bc(ST_K_PHI_Q5), t, bc(ST_K_PHI_Q4));
    __m256 p67 = _mm256_fmadd_ps(bc(ST_K_PHI_Q7), t, bc(ST_K_PHI_Q6));
    __m256 p03 = _mm256_fmadd_ps(p23, t2, p01);
    __m256 p48 = _mm256_fmadd_ps(bc(ST_K_PHI_Q8), t4, _mm256_fmadd_ps(p67, t2, p45));
    __m256 q = _mm256_fmadd_ps(p48, t4, p03);
    __m256 h = _mm256_mul_ps(bc(0.5f), v_exp(q));
    h = _mm256_andnot_ps(_mm256_cmp_ps(az, bc(ST_K_PHI_CLAMP), _CMP_GT_OQ), h);
    return _mm256_blendv_ps(_mm256_sub_ps(bc(1.0f), h), h, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
}

/* 1 / (1 + exp(-x)) */
static inline __m256 v_sigmoid(__m256 x) {
    return _mm256_div_ps(bc(1.0f), _mm256_add_ps(bc(1.0f), v_exp(_mm256_xor_ps(x, bc(-0.0f)))));
}

/* ---- elementwise ---------------------------------------------------------------------- */

/* ---- stores ------------------------------------------------------------------------
 * Every loop that writes an output takes a store kind S, fixed at compile
 * time: U writes ordinary unaligned vectors from element 0; NT streams
 * (non-temporal stores) from y's first 32-byte boundary on, after one
 * masked ordinary store for the head before it (see kernels.h); UP and NTP
 * are U and NT plus a prefetch of pf_ + i (a pointer the caller has in
 * scope) per vector. Every lane of a result is computed by the same instructions
 * whichever vector it falls in, so the kinds write identical values. */
static inline int64_t nt_head(const float *y, int64_t n) {
    int64_t h = (int64_t)((-(uintptr_t)y & 31) / sizeof(float));
    return h < n ? h : n;
}
#define HEAD_U(y, n) 0
#define HEAD_UP(y, n) 0
#define HEAD_NT(y, n) nt_head((y), (n))
#define HEAD_NTP(y, n) nt_head((y), (n))
#define STV_U(p, v) _mm256_storeu_ps((p), (v))
#define STV_UP(p, v) _mm256_storeu_ps((p), (v))
#define STV_NT(p, v) _mm256_stream_ps((p), (v))
#define STV_NTP(p, v) _mm256_stream_ps((p), (v))
#define PF_U(i) ((void)0)
#define PF_UP(i) _mm_prefetch((const char *)(pf_ + (i)), _MM_HINT_T0)
#define PF_NT(i) ((void)0)
#define PF_NTP(i) _mm_prefetch((const char *)(pf_ + (i)), _MM_HINT_T0)

/* y[i] = F(x[i]) over n floats: the head (store kind NT), 4 vectors a step,
 * then single vectors, then one masked vector for the tail. y may equal x
 * (each step loads first). */
#define LOOP_1_1_S(n, x, y, F, S)                                              \
    do {                                                                       \
        int64_t i_ = HEAD_##S((y), (n));                                       \
        if (i_ > 0) {                                                          \
            __m256i m_ = tail_mask(i_);                                        \
            _mm256_maskstore_ps((y), m_, F(_mm256_maskload_ps((x), m_)));      \
        }                                                                      \
        for (; i_ + 4 * VL <= (n); i_ += 4 * VL) {                             \
            __m256 v0_ = _mm256_loadu_ps((x) + i_);                            \
            __m256 v1_ = _mm256_loadu_ps((x) + i_ + VL);                       \
            __m256 v2_ = _mm256_loadu_ps((x) + i_ + 2 * VL);                   \
            __m256 v3_ = _mm256_loadu_ps((x) + i_ + 3 * VL);                   \
            PF_##S(i_), PF_##S(i_ + 2 * VL);                                   \
            STV_##S((y) + i_, F(v0_));                                         \
            STV_##S((y) + i_ + VL, F(v1_));                                    \
            STV_##S((y) + i_ + 2 * VL, F(v2_));                                \
            STV_##S((y) + i_ + 3 * VL, F(v3_));                                \
        }                                                                      \
        for (; i_ + VL <= (n); i_ += VL) {                                     \
            PF_##S(i_);                                                        \
            STV_##S((y) + i_, F(_mm256_loadu_ps((x) + i_)));                   \
        }                                                                      \
        if (i_ < (n)) {                                                        \
            __m256i m_ = tail_mask((n) - i_);                                  \
            _mm256_maskstore_ps((y) + i_, m_, F(_mm256_maskload_ps((x) + i_, m_))); \
        }                                                                      \
    } while (0)

/* z[i] = F(x[i], y[i]) */
#define LOOP_2_1_S(n, x, y, z, F, S)                                           \
    do {                                                                       \
        int64_t i_ = HEAD_##S((z), (n));                                       \
        if (i_ > 0) {                                                          \
            __m256i m_ = tail_mask(i_);                                        \
            _mm256_maskstore_ps((z), m_, F(_mm256_maskload_ps((x), m_), _mm256_maskload_ps((y), m_))); \
        }                                                                      \
        for (; i_ + 2 * VL <= (n); i_ += 2 * VL) {                             \
            __m256 a0_ = _mm256_loadu_ps((x) + i_);                            \
            __m256 a1_ = _mm256_loadu_ps((x) + i_ + VL);                       \
            __m256 b0_ = _mm256_loadu_ps((y) + i_);                            \
            __m256 b1_ = _mm256_loadu_ps((y) + i_ + VL);                       \
            PF_##S(i_);                                                        \
            STV_##S((z) + i_, F(a0_, b0_));                                    \
            STV_##S((z) + i_ + VL, F(a1_, b1_));                               \
        }                                                                      \
        for (; i_ + VL <= (n); i_ += VL) {                                     \
            PF_##S(i_);                                                        \
            STV_##S((z) + i_, F(_mm256_loadu_ps((x) + i_), _mm256_loadu_ps((y) + i_))); \
        }                                                                      \
        if (i_ < (n)) {                                                        \
            __m256i m_ = tail_mask((n) - i_);                                  \
            _mm256_maskstore_ps((z) + i_, m_,                                  \
                                F(_mm256_maskload_ps((x) + i_, m_), _mm256_maskload_ps((y) + i_, m_))); \
        }                                                                      \
    } while (0)

/* w[i] = F(x[i], y[i], z[i]) */
#define LOOP_3_1_S(n, x, y, z, w, F, S)                                        \
    do {                                                                       \
        int64_t i_ = HEAD_##S((w), (n));                                       \
        if (i_ > 0) {                                                          \
            __m256i m_ = tail_mask(i_);                                        \
            _mm256_maskstore_ps((w), m_,                                       \
                                F(_mm256_maskload_ps((x), m_), _mm256_maskload_ps((y), m_), \
                                  _mm256_maskload_ps((z), m_)));               \
        }                                                                      \
        for (; i_ + VL <= (n); i_ += VL) {                                     \
            PF_##S(i_);                                                        \
            STV_##S((w) + i_, F(_mm256_loadu_ps((x) + i_), _mm256_loadu_ps((y) + i_), \
                                _mm256_loadu_ps((z) + i_)));                   \
        }                                                                      \
        if (i_ < (n)) {                                                        \
            __m256i m_ = tail_mask((n) - i_);                                  \
            _mm256_maskstore_ps((w) + i_, m_,                                  \
                                F(_mm256_maskload_ps((x) + i_, m_), _mm256_maskload_ps((y) + i_, m_), \
                                  _mm256_maskload_ps((z) + i_, m_)));          \
        }                                                                      \
    } while (0)

#define LOOP_1_1(n, x, y, F) LOOP_1_1_S(n, x, y, F, U)
#define LOOP_2_1(n, x, y, z, F) LOOP_2_1_S(n, x, y, z, F, U)
#define LOOP_3_1(n, x, y, z, w, F) LOOP_3_1_S(n, x, y, z, w, F, U)

static inline __m256 f_neg(__m256 x) { return _mm256_xor_ps(x, bc(-0.0f)); }
static inline __m256 f_log(__m256 x) { return v_log(x); }
static inline __m256 f_sqrt(__m256 x) { return _mm256_sqrt_ps(x); }
static inline __m256 f_relu(__m256 x) { return _mm256_max_ps(x, _mm256_setzero_ps()); }

/* 0.5 x (1 + tanh(u)) == x sigmoid(2u) == x / (1 + exp(-2u)), u = sqrt(2/pi)
 * (x + c x^3), -2u = x (K1 + K2 x^2): one exp, one add and one division per
 * vector and a short dependency chain; the loop is bound by the FP pipes,
 * not by memory, so every operation saved shows. */
static inline __m256 f_gelu_tanh(__m256 x) {
    __m256 v = _mm256_mul_ps(x, _mm256_fmadd_ps(_mm256_mul_ps(x, x), bc(ST_K_GELU_K2), bc(ST_K_GELU_K1)));
    return _mm256_div_ps(x, _mm256_add_ps(bc(1.0f), v_exp(v)));
}

static inline __m256 f_gelu_erf(__m256 x) { return _mm256_mul_ps(x, v_phi(x)); }

/* x sigmoid(x) == x / (1 + exp(-x)) (as the scalar spec writes it) */
static inline __m256 f_silu(__m256 x) {
    return _mm256_div_ps(x, _mm256_add_ps(bc(1.0f), v_exp(_mm256_xor_ps(x, bc(-0.0f)))));
}

#define UNARY_SWITCH(S)                                                        \
    switch (op) {                                                              \
    case ST_OP_NEG: LOOP_1_1_S(n, x, y, f_neg, S); break;                      \
    case ST_OP_EXP: LOOP_1_1_S(n, x, y, v_exp, S); break;                      \
    case ST_OP_LOG: LOOP_1_1_S(n, x, y, f_log, S); break;                      \
    case ST_OP_SQRT: LOOP_1_1_S(n, x, y, f_sqrt, S); break;                    \
    case ST_OP_TANH: LOOP_1_1_S(n, x, y, v_tanh, S); break;                    \
    case ST_OP_GELU_TANH: LOOP_1_1_S(n, x, y, f_gelu_tanh, S); break;          \
    case ST_OP_GELU_ERF: LOOP_1_1_S(n, x, y, f_gelu_erf, S); break;            \
    case ST_OP_SILU: LOOP_1_1_S(n, x, y, f_silu, S); break;                    \
    case ST_OP_RELU: LOOP_1_1_S(n, x, y, f_relu, S); break;                    \
    case ST_OP_SCALE: LOOP_1_1_S(n, x, y, F_SCALE, S); break;                  \
    default: break;                                                            \
    }

static void k_unary(st_op op, int64_t n, const float *x, float *y, float alpha) {
    const __m256 va = bc(alpha);
#define F_SCALE(v) _mm256_mul_ps(va, (v))
    UNARY_SWITCH(U)
#undef F_SCALE
}

static void k_unary_nt(st_op op, int64_t n, const float *x, float *y, float alpha) {
    const __m256 va = bc(alpha);
#define F_SCALE(v) _mm256_mul_ps(va, (v))
    UNARY_SWITCH(NT)
#undef F_SCALE
}
#undef UNARY_SWITCH

/* derivatives times dy */
static inline __m256 b_neg(__m256 x, __m256 dy) { (void)x; return f_neg(dy); }
static inline __m256 b_exp(__m256 x, __m256 dy) { return _mm256_mul_ps(v_exp(x), dy); }
static inline __m256 b_exp_y(__m256 x, __m256 y, __m256 dy) { (void)x; return _mm256_mul_ps(y, dy); }
static inline __m256 b_log(__m256 x, __m256 dy) { return _mm256_div_ps(dy, x); }
static inline __m256 b_sqrt(__m256 x, __m256 dy) {
    return _mm256_div_ps(_mm256_mul_ps(bc(0.5f), dy), _mm256_sqrt_ps(x));
}
static inline __m256 b_sqrt_y(__m256 x, __m256 y, __m256 dy) {
    (void)x;
    return _mm256_div_ps(_mm256_mul_ps(bc(0.5f), dy), y);
}
static inline __m256 b_tanh_t(__m256 t, __m256 dy) {
    return _mm256_mul_ps(_mm256_fnmadd_ps(t, t, bc(1.0f)), dy);
}
static inline __m256 b_tanh(__m256 x, __m256 dy) { return b_tanh_t(v_tanh(x), dy); }
static inline __m256 b_tanh_y(__m256 x, __m256 y, __m256 dy) { (void)x; return b_tanh_t(y, dy); }
/* s = sigmoid(2u): d = s + 2 x s (1 - s) u'(x), u' = sqrt(2/pi) (1 + 3 c x^2) */
static inline __m256 b_gelu_tanh(__m256 x, __m256 dy) {
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 u = _mm256_mul_ps(bc(ST_K_SQRT_2_OVER_PI),
                             _mm256_fmadd_ps(_mm256_mul_ps(bc(ST_K_GELU_C), x2), x, x));
    __m256 du = _mm256_mul_ps(bc(ST_K_SQRT_2_OVER_PI), _mm256_fmadd_ps(bc(3.0f * ST_K_GELU_C), x2, bc(1.0f)));
    __m256 s = v_sigmoid(_mm256_add_ps(u, u));
    __m256 s1 = _mm256_mul_ps(s, _mm256_sub_ps(bc(1.0f), s));
    __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_add_ps(x, x), s1), du, s);
    return _mm256_mul_ps(d, dy);
}
/* Phi(x) + x phi(x) */
static inline __m256 b_gelu_erf(__m256 x, __m256 dy) {
    __m256 phi = _mm256_mul_ps(bc(ST_K_INV_SQRT_2PI),
                               v_exp(_mm256_mul_ps(bc(-0.5f), _mm256_mul_ps(x, x))));
    return _mm256_mul_ps(_mm256_fmadd_ps(x, phi, v_phi(x)), dy);
}
static inline __m256 b_silu(__m256 x, __m256 dy) {
    __m256 s = v_sigmoid(x);
    __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(x, _mm256_sub_ps(bc(1.0f), s), bc(1.0f)));
    return _mm256_mul_ps(d, dy);
}
static inline __m256 b_relu(__m256 x, __m256 dy) {
    return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ), dy);
}

static void k_unary_backward(st_op op, int64_t n, const float *x, const float *y,
                             const float *dy, float *dx, float alpha) {
    const __m256 va = bc(alpha);
#define B_SCALE(xv, dv) ((void)(xv), _mm256_mul_ps(va, (dv)))
    switch (op) {
    case ST_OP_NEG: LOOP_2_1(n, x, dy, dx, b_neg); break;
    case ST_OP_EXP:
        if (y) LOOP_3_1(n, x, y, dy, dx, b_exp_y);
        else LOOP_2_1(n, x, dy, dx, b_exp);
        break;
    case ST_OP_LOG: LOOP_2_1(n, x, dy, dx, b_log); break;
    case ST_OP_SQRT:
        if (y) LOOP_3_1(n, x, y, dy, dx, b_sqrt_y);
        else LOOP_2_1(n, x, dy, dx, b_sqrt);
        break;
    case ST_OP_TANH:
        if (y) LOOP_3_1(n, x, y, dy, dx, b_tanh_y);
        else LOOP_2_1(n, x, dy, dx, b_tanh);
        break;
    case ST_OP_GELU_TANH: LOOP_2_1(n, x, dy, dx, b_gelu_tanh); break;
    case ST_OP_GELU_ERF: LOOP_2_1(n, x, dy, dx, b_gelu_erf); break;
    case ST_OP_SILU: LOOP_2_1(n, x, dy, dx, b_silu); break;
    case ST_OP_RELU: LOOP_2_1(n, x, dy, dx, b_relu); break;
    case ST_OP_SCALE: LOOP_2_1(n, x, dy, dx, B_SCALE); break;
    default: break;
    }
#undef B_SCALE
}

/* ---- binary with broadcast strides ------------------------------------------------------ */

/* Loads of operand P (a or b) at element i: S = 1 contiguous, S = 0 the
 * broadcast register P##v. */
#define LD1(P, i) _mm256_loadu_ps((P) + (i))
#define LD0(P, i) P##v
#define LDT1(P, i, m) _mm256_maskload_ps((P) + (i), (m))
#define LDT0(P, i, m) P##v

#define BIN_LOOP(OPF, SA, SB, S)                                               \
    do {                                                                       \
        int64_t i_ = HEAD_##S(y, n);                                           \
        if (i_ > 0) {                                                          \
            __m256i m_ = tail_mask(i_);                                        \
            _mm256_maskstore_ps(y, m_, OPF(LDT##SA(a, 0, m_), LDT##SB(b, 0, m_))); \
        }                                                                      \
        for (; i_ + 4 * VL <= n; i_ += 4 * VL) {                               \
            __m256 r0_ = OPF(LD##SA(a, i_), LD##SB(b, i_));                    \
            __m256 r1_ = OPF(LD##SA(a, i_ + VL), LD##SB(b, i_ + VL));          \
            __m256 r2_ = OPF(LD##SA(a, i_ + 2 * VL), LD##SB(b, i_ + 2 * VL));  \
            __m256 r3_ = OPF(LD##SA(a, i_ + 3 * VL), LD##SB(b, i_ + 3 * VL));  \
            STV_##S(y + i_, r0_);                                              \
            STV_##S(y + i_ + VL, r1_);                                         \
            STV_##S(y + i_ + 2 * VL, r2_);                                     \
            STV_##S(y + i_ + 3 * VL, r3_);                                     \
        }                                                                      \
        for (; i_ + VL <= n; i_ += VL)                                         \
            STV_##S(y + i_, OPF(LD##SA(a, i_), LD##SB(b, i_)));                \
        if (i_ < n) {                                                          \
            __m256i m_ = tail_mask(n - i_);                                    \
            _mm256_maskstore_ps(y + i_, m_, OPF(LDT##SA(a, i_, m_), LDT##SB(b, i_, m_))); \
        }                                                                      \
    } while (0)

#define DEF_BINARY(NAME, OPF, S)                                               \
    static void NAME(int64_t n, const float *a, int64_t sa, const float *b, int64_t sb, \
                     float *y) {                                               \
        if (n <= 0) return;                                                    \
        const __m256 av = bc(a[0]), bv = bc(b[0]);                             \
        if (sa && sb) BIN_LOOP(OPF, 1, 1, S);                                  \
        else if (sa) BIN_LOOP(OPF, 1, 0, S);                                   \
        else if (sb) BIN_LOOP(OPF, 0, 1, S);                                   \
        else BIN_LOOP(OPF, 0, 0, S);                                           \
        (void)av;                                                              \
        (void)bv;                                                              \
    }

DEF_BINARY(bin_add, _mm256_add_ps, U)
DEF_BINARY(bin_sub, _mm256_sub_ps, U)
DEF_BINARY(bin_mul, _mm256_mul_ps, U)
DEF_BINARY(bin_div, _mm256_div_ps, U)
DEF_BINARY(bin_add_nt, _mm256_add_ps, NT)
DEF_BINARY(bin_sub_nt, _mm256_sub_ps, NT)
DEF_BINARY(bin_mul_nt, _mm256_mul_ps, NT)
DEF_BINARY(bin_div_nt, _mm256_div_ps, NT)

static void k_binary(st_op op, int64_t n, const float *a, int64_t sa, const float *b,
                     int64_t sb, float *y) {
    switch (op) {
    case ST_OP_ADD: bin_add(n, a, sa, b, sb, y); break;
    case ST_OP_SUB: bin_sub(n, a, sa, b, sb, y); break;
    case ST_OP_MUL: bin_mul(n, a, sa, b, sb, y); break;
    case ST_OP_DIV: bin_div(n, a, sa, b, sb, y); break;
    default: break;
    }
}

static void k_binary_nt(st_op op, int64_t n, const float *a, int64_t sa, const float *b,
                        int64_t sb, float *y) {
    switch (op) {
    case ST_OP_ADD: bin_add_nt(n, a, sa, b, sb, y); break;
    case ST_OP_SUB: bin_sub_nt(n, a, sa, b, sb, y); break;
    case ST_OP_MUL: bin_mul_nt(n, a, sa, b, sb, y); break;
    case ST_OP_DIV: bin_div_nt(n, a, sa, b, sb, y); break;
    default: break;
    }
}

static void k_stream_fence(void) { _mm_sfence(); }

static void k_axpy(int64_t n, float alpha, const float *x, int64_t sx, float *y) {
    if (n <= 0) return;
    const __m256 va = bc(alpha);
#define AXPY_F(xv, yv) _mm256_fmadd_ps(va, (xv), (yv))
    if (sx) {
        LOOP_2_1(n, x, y, y, AXPY_F);
    } else {
        /* y += alpha * x[0]: the same product every element */
        const float c = alpha * x[0];
        const __m256 vc = bc(c);
#define AXPY_C(yv) _mm256_add_ps((yv), vc)
        LOOP_1_1(n, y, y, AXPY_C);
#undef AXPY_C
    }
#undef AXPY_F
}

/* ---- reductions ------------------------------------------------------------------------- */

static float k_sum(int64_t n, const float *x) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + VL));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + i + 2 * VL));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + i + 3 * VL));
    }
    for (; i + VL <= n; i += VL) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
    if (i < n) s1 = _mm256_add_ps(s1, _mm256_maskload_ps(x + i, tail_mask(n - i)));
    return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

/* NaN anywhere gives NaN (as the scalar spec); -inf for n == 0 */
static float k_max(int64_t n, const float *x) {
    const __m256 ninf = bc(-INFINITY);
    __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    __m256 nan = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + VL);
        __m256 v2 = _mm256_loadu_ps(x + i + 2 * VL), v3 = _mm256_loadu_ps(x + i + 3 * VL);
        m0 = _mm256_max_ps(v0, m0);
        m1 = _mm256_max_ps(v1, m1);
        m2 = _mm256_max_ps(v2, m2);
        m3 = _mm256_max_ps(v3, m3);
        nan = _mm256_or_ps(nan, _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q),
                                             _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)));
    }
    for (; i + VL <= n; i += VL) {
        __m256 v = _mm256_loadu_ps(x + i);
        m0 = _mm256_max_ps(v, m0);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 v = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, mk), _mm256_castsi256_ps(mk));
        m1 = _mm256_max_ps(v, m1);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan)) return NAN;
    return hmax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
}

static float k_dot(int64_t n, const float *x, const float *y) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + VL), _mm256_loadu_ps(y + i + VL), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 2 * VL), _mm256_loadu_ps(y + i + 2 * VL), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 3 * VL), _mm256_loadu_ps(y + i + 3 * VL), s3);
    }
    for (; i + VL <= n; i += VL)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    if (i < n) {
        __m256i m = tail_mask(n - i);
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m), s1);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

/* sum of (x[i] - c)^2 */
static float sum_sqdev(int64_t n, const float *x, float c) {
    const __m256 vc = bc(c);
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vc);
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + VL), vc);
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 2 * VL), vc);
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 3 * VL), vc);
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
        s2 = _mm256_fmadd_ps(d2, d2, s2);
        s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i + VL <= n; i += VL) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vc);
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vc), _mm256_castsi256_ps(m));
        s1 = _mm256_fmadd_ps(d, d, s1);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

/* ---- rows ---------------------------------------------------------------------------------- */

/* Where the row kernels prefetch (kernels.h): rows still to come. */
static inline int64_t row_ahead(int64_t n) {
    return n > ST_CPU_ROW_PREFETCH ? n : ST_CPU_ROW_PREFETCH;
}

/* Fetches the line at p for writing (PREFETCHW: the line arrives owned, so
 * the store that follows does not wait for a read-for-ownership). Written
 * as asm so the file needs no -mprfchw; CPUs without the feature run the
 * encoding as a NOP. */
static inline void prefetch_w(const float *p) {
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
}

/* exp(x[i] - m) into t (t may be x) and their sum. While this pass
 * computes, the input rows ahead (pf) are prefetched for reading and the
 * output rows ahead (pw) for writing, one line of each per two vectors. */
static inline __attribute__((always_inline)) float softmax_exp(int64_t n, const float *x, __m256 vm,
                                                               float *t, const float *pf,
                                                               const float *pw) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        prefetch_w(pw + i);
        __m256 e0 = v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        __m256 e1 = v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i + VL), vm));
        _mm256_storeu_ps(t + i, e0);
        _mm256_storeu_ps(t + i + VL, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; i + VL <= n; i += VL) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        prefetch_w(pw + i);
        __m256 e = v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(t + i, e);
        s0 = _mm256_add_ps(s0, e);
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 e = _mm256_and_ps(v_exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vm)),
                                 _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(t + i, m, e);
        s1 = _mm256_add_ps(s1, e);
    }
    return hsum(_mm256_add_ps(s0, s1));
}

#define SM_SCALE(v) _mm256_mul_ps((v), inv)

static void k_softmax(int64_t n, const float *x, float *y) {
    if (n <= 0) return;
    const __m256 vm = bc(k_max(n, x));
    const __m256 inv = bc(1.0f / softmax_exp(n, x, vm, y, x + row_ahead(n), y + row_ahead(n)));
    LOOP_1_1(n, y, y, SM_SCALE);
}

#undef SM_SCALE

/* sum of exp(x[i] - m) (pf, pw as in softmax_exp) */
static inline __attribute__((always_inline)) float lse_sum(int64_t n, const float *x, __m256 vm,
                                                           const float *pf, const float *pw) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        prefetch_w(pw + i);
        s0 = _mm256_add_ps(s0, v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
        s1 = _mm256_add_ps(s1, v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i + VL), vm)));
    }
    for (; i + VL <= n; i += VL) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        prefetch_w(pw + i);
        s0 = _mm256_add_ps(s0, v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
    }
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        s1 = _mm256_add_ps(s1, _mm256_and_ps(v_exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm)),
                                             _mm256_castsi256_ps(mk)));
    }
    return hsum(_mm256_add_ps(s0, s1));
}

static void k_log_softmax(int64_t n, const float *x, float *y) {
    if (n <= 0) return;
    const float m = k_max(n, x);
    const __m256 vm = bc(m);
    const __m256 lse = bc(m + logf(lse_sum(n, x, vm, x + row_ahead(n), y + row_ahead(n))));
#define LSM_F(v) _mm256_sub_ps((v), lse)
    LOOP_1_1(n, x, y, LSM_F);
#undef LSM_F
}

static void k_softmax_backward(int64_t n, const float *y, const float *dy, float *dx) {
    const __m256 d = bc(k_dot(n, dy, y));
#define SMB_F(yv, dyv) _mm256_mul_ps((yv), _mm256_sub_ps((dyv), d))
    LOOP_2_1(n, y, dy, dx, SMB_F);
#undef SMB_F
}

static void k_log_softmax_backward(int64_t n, const float *y, const float *dy, float *dx) {
    const __m256 s = bc(k_sum(n, dy));
#define LSMB_F(yv, dyv) _mm256_fnmadd_ps(v_exp(yv), s, (dyv))
    LOOP_2_1(n, y, dy, dx, LSMB_F);
#undef LSMB_F
}

static void row_moments(int64_t n, const float *x, float eps, float *mean, float *rstd) {
    float mu = k_sum(n, x) / (float)n;
    float var = sum_sqdev(n, x, mu) / (float)n;
    *mean = mu;
    *rstd = 1.0f / sqrtf(var + eps);
}

/* The last pass prefetches rows ahead (UP, NTP; see kernels.h). */
static inline __attribute__((always_inline)) void layernorm_row(int64_t n, const float *x,
                                                                const float *g, const float *b,
                                                                float eps, float *y, bool nt) {
    if (n <= 0) return;
    float mu, rstd;
    row_moments(n, x, eps, &mu, &rstd);
    const __m256 vmu = bc(mu), vr = bc(rstd);
    const float *pf_ = x + row_ahead(n);
#define LN_XHAT(xv) _mm256_mul_ps(_mm256_sub_ps((xv), vmu), vr)
#define LN_G(xv, gv) _mm256_mul_ps(LN_XHAT(xv), (gv))
#define LN_B(xv, bv) _mm256_add_ps(LN_XHAT(xv), (bv))
#define LN_GB(xv, gv, bv) _mm256_fmadd_ps(LN_XHAT(xv), (gv), (bv))
#define LN_BODY(S)                                                             \
    do {                                                                       \
        if (g && b) LOOP_3_1_S(n, x, g, b, y, LN_GB, S);                       \
        else if (g) LOOP_2_1_S(n, x, g, y, LN_G, S);                           \
        else if (b) LOOP_2_1_S(n, x, b, y, LN_B, S);                           \
        else LOOP_1_1_S(n, x, y, LN_XHAT, S);                                  \
    } while (0)
    if (nt) LN_BODY(NTP);
    else LN_BODY(UP);
#undef LN_BODY
#undef LN_G
#undef LN_B
#undef LN_GB
}

static void k_layernorm(int64_t n, const float *x, const float *g, const float *b, float eps,
                        float *y) {
    layernorm_row(n, x, g, b, eps, y, false);
}

static void k_layernorm_nt(int64_t n, const float *x, const float *g, const float *b, float eps,
                           float *y) {
    layernorm_row(n, x, g, b, eps, y, true);
}

static void k_layernorm_backward(int64_t n, const float *x, const float *g, const float *dy,
                                 float eps, float *dx, float *dg_acc, float *db_acc) {
    if (n <= 0) return;
    float mu, rstd;
    row_moments(n, x, eps, &mu, &rstd);
    const __m256 vmu = bc(mu), vr = bc(rstd), one = bc(1.0f);
    /* sums of g*dy and g*dy*xhat; dg/db accumulation in the same pass */
    __m256 s1 = _mm256_setzero_ps(), s2 = s1;
    int64_t i = 0;
    __m256i m = _mm256_set1_epi32(-1);
#define LD_F(p) _mm256_loadu_ps((p) + i)
#define ST_F(p, v) _mm256_storeu_ps((p) + i, (v))
#define LD_M(p) _mm256_maskload_ps((p) + i, m)
#define ST_M(p, v) _mm256_maskstore_ps((p) + i, m, (v))
#define LNB_STEP(LD, ST)                                                       \
    do {                                                                       \
        __m256 xv = LD(x), dyv = LD(dy), gv = g ? LD(g) : one;                 \
        __m256 xhat = LN_XHAT(xv);                                             \
        __m256 gdy = _mm256_mul_ps(gv, dyv);                                   \
        s1 = _mm256_add_ps(s1, gdy);                                           \
        s2 = _mm256_fmadd_ps(gdy, xhat, s2);                                   \
        if (dg_acc) ST(dg_acc, _mm256_fmadd_ps(dyv, xhat, LD(dg_acc)));        \
        if (db_acc) ST(db_acc, _mm256_add_ps(dyv, LD(db_acc)));                \
    } while (0)
    for (; i + VL <= n; i += VL) LNB_STEP(LD_F, ST_F);
    if (i < n) {
        m = tail_mask(n - i);
        LNB_STEP(LD_M, ST_M);
    }
#undef LNB_STEP
    /* masked-out lanes of the tail contribute xhat = -mu*rstd times gdy = 0 */
    const __m256 m1 = bc(hsum(s1) / (float)n), m2 = bc(hsum(s2) / (float)n);
#define LNB_F(xv, dyv) _mm256_mul_ps(vr, _mm256_fnmadd_ps(LN_XHAT(xv), m2, _mm256_sub_ps((dyv), m1)))
#define LNB_FG(xv, gv, dyv) LNB_F(xv, _mm256_mul_ps((gv), (dyv)))
    if (g) LOOP_3_1(n, x, g, dy, dx, LNB_FG);
    else LOOP_2_1(n, x, dy, dx, LNB_F);
#undef LNB_F
#undef LNB_FG
#undef LN_XHAT
}

static float row_rrms(int64_t n, const float *x, float eps) {
    float ss = sum_sqdev(n, x, 0.0f);
    return 1.0f / sqrtf(ss / (float)n + eps);
}

static inline __attribute__((always_inline)) void rmsnorm_row(int64_t n, const float *x,
                                                              const float *g, float eps, float *y,
                                                              bool nt) {
    if (n <= 0) return;
    const __m256 vr = bc(row_rrms(n, x, eps));
    const float *pf_ = x + row_ahead(n);
#define RN_F(xv) _mm256_mul_ps((xv), vr)
#define RN_FG(xv, gv) _mm256_mul_ps(RN_F(xv), (gv))
    if (nt) {
        if (g) LOOP_2_1_S(n, x, g, y, RN_FG, NTP);
        else LOOP_1_1_S(n, x, y, RN_F, NTP);
    } else {
        if (g) LOOP_2_1_S(n, x, g, y, RN_FG, UP);
        else LOOP_1_1_S(n, x, y, RN_F, UP);
    }
#undef RN_F
#undef RN_FG
}

static void k_rmsnorm(int64_t n, const float *x, const float *g, float eps, float *y) {
    rmsnorm_row(n, x, g, eps, y, false);
}

static void k_rmsnorm_nt(int64_t n, const float *x, const float *g, float eps, float *y) {
    rmsnorm_row(n, x, g, eps, y, true);
}

static void k_rmsnorm_backward(int64_t n, const float *x, const float *g, const float *dy,
                               float eps, float *dx, float *dg_acc) {
    if (n <= 0) return;
    const float r = row_rrms(n, x, eps);
    const __m256 vr = bc(r);
    const __m256 one = bc(1.0f);
    __m256 s = _mm256_setzero_ps();
    int64_t i = 0;
    __m256i m = _mm256_set1_epi32(-1);
#define RNB_STEP(LD, ST)                                                       \
    do {                                                                       \
        __m256 xv = LD(x), dyv = LD(dy), gv = g ? LD(g) : one;                 \
        s = _mm256_fmadd_ps(_mm256_mul_ps(gv, dyv), xv, s);                    \
        if (dg_acc) ST(dg_acc, _mm256_fmadd_ps(_mm256_mul_ps(dyv, xv), vr, LD(dg_acc))); \
    } while (0)
    for (; i + VL <= n; i += VL) RNB_STEP(LD_F, ST_F);
    if (i < n) {
        m = tail_mask(n - i);
        RNB_STEP(LD_M, ST_M);
    }
#undef RNB_STEP
#undef LD_F
#undef ST_F
#undef LD_M
#undef ST_M
    const __m256 c = bc(hsum(s) / (float)n * r * r * r);
#define RNB_F(xv, dyv) _mm256_fnmadd_ps((xv), c, _mm256_mul_ps(vr, (dyv)))
#define RNB_FG(xv, gv, dyv) RNB_F(xv, _mm256_mul_ps((gv), (dyv)))
    if (g) LOOP_3_1(n, x, g, dy, dx, RNB_FG);
    else LOOP_2_1(n, x, dy, dx, RNB_F);
#undef RNB_F
#undef RNB_FG
}

/* ---- conversions ---------------------------------------------------------------------------- */

static void k_bf16_to_f32(int64_t n, const uint16_t *x, float *y) {
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i lo = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(h));
        __m256i hi = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_slli_epi32(lo, 16));
        _mm256_storeu_si256((__m256i *)(y + i + VL), _mm256_slli_epi32(hi, 16));
    }
    for (; i < n; i++) y[i] = st__k_bf16_to_f32(x[i]);
}

/* 8 floats -> 8 bf16 in the low 16 bits of each lane, round to nearest
 * even, NaN made quiet (bit-exact with st__k_f32_to_bf16) */
static inline __m256i cvt_bf16_8(__m256 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                       _mm256_set1_epi32(0x7f800000));
    return _mm256_blendv_epi8(r, qnan, isnan);
}

static void k_f32_to_bf16(int64_t n, const float *x, uint16_t *y) {
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        __m256i a = cvt_bf16_8(_mm256_loadu_ps(x + i));
        __m256i b = cvt_bf16_8(_mm256_loadu_ps(x + i + VL));
        /* packus works per 128-bit lane: a0-3 b0-3 a4-7 b4-7; fix the order */
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
        _mm256_storeu_si256((__m256i *)(y + i), p);
    }
    for (; i < n; i++) y[i] = st__k_f32_to_bf16(x[i]);
}

static void k_f16_to_f32(int64_t n, const uint16_t *x, float *y) {
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        __m128i h0 = _mm_loadu_si128((const __m128i *)(x + i));
        __m128i h1 = _mm_loadu_si128((const __m128i *)(x + i + VL));
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(h0));
        _mm256_storeu_ps(y + i + VL, _mm256_cvtph_ps(h1));
    }
    for (; i < n; i++) y[i] = st__k_f16_to_f32(x[i]);
}

static void k_f32_to_f16(int64_t n, const float *x, uint16_t *y) {
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        __m128i h0 = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        __m128i h1 = _mm256_cvtps_ph(_mm256_loadu_ps(x + i + VL), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(y + i), h0);
        _mm_storeu_si128((__m128i *)(y + i + VL), h1);
    }
    for (; i < n; i++) y[i] = st__k_f32_to_f16(x[i]);
}

/* 16 bf16 per 256-bit load: the even elements are the low halves of the
 * 32-bit lanes (shift left 16), the odd ones the high halves (mask). */
static inline void dot_bf16_16(const uint16_t *x, const uint16_t *y, __m256 *se, __m256 *so) {
    const __m256i hi_mask = _mm256_set1_epi32((int)0xffff0000u);
    __m256i a = _mm256_loadu_si256((const __m256i *)x);
    __m256i b = _mm256_loadu_si256((const __m256i *)y);
    *se = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(a, 16)),
                          _mm256_castsi256_ps(_mm256_slli_epi32(b, 16)), *se);
    *so = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(a, hi_mask)),
                          _mm256_castsi256_ps(_mm256_and_si256(b, hi_mask)), *so);
}

static float k_dot_bf16(int64_t n, const uint16_t *x, const uint16_t *y) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        dot_bf16_16(x + i, y + i, &s0, &s1);
        dot_bf16_16(x + i + 2 * VL, y + i + 2 * VL, &s2, &s3);
    }
    if (i + 2 * VL <= n) {
        dot_bf16_16(x + i, y + i, &s0, &s1);
        i += 2 * VL;
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += st__k_bf16_to_f32(x[i]) * st__k_bf16_to_f32(y[i]);
    return s;
}

const st_cpu_kernels st__cpu_kernels_avx2 = {
    .level = ST_SIMD_AVX2,
    .name = "avx2",
    .unary = k_unary,
    .unary_backward = k_unary_backward,
    .binary = k_binary,
    .axpy = k_axpy,
    .sum = k_sum,
    .max = k_max,
    .dot = k_dot,
    .softmax = k_softmax,
    .log_softmax = k_log_softmax,
    .softmax_backward = k_softmax_backward,
    .log_softmax_backward = k_log_softmax_backward,
    .layernorm = k_layernorm,
    .layernorm_backward = k_layernorm_backward,
    .rmsnorm = k_rmsnorm,
    .rmsnorm_backward = k_rmsnorm_backward,
    .unary_nt = k_unary_nt,
    .binary_nt = k_binary_nt,
    .layernorm_nt = k_layernorm_nt,
    .rmsnorm_nt = k_rmsnorm_nt,
    .stream_fence = k_stream_fence,
    .bf16_to_f32 = k_bf16_to_f32,
    .f32_to_bf16 = k_f32_to_bf16,
    .f16_to_f32 = k_f16_to_f32,
    .f32_to_f16 = k_f32_to_f16,
    .dot_bf16 = k_dot_bf16,
};

#endif /* __x86_64__ */
