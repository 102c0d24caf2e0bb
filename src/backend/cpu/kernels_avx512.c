/*
 * kernels_avx512.c — the AVX-512 (F/BW/VL/DQ) CPU kernel table.
 *
 * Same functions and algorithms as kernels_avx2.c on 16-float vectors; tails
 * are one masked load/store (AVX-512 masks also cover the 16-bit tails of
 * the conversions, so nothing here runs element by element). exp differs
 * from the AVX2 one: a 16-entry table of 2^(j/16) in a register and a cubic
 * instead of the degree-6 polynomial (see v_exp), scaled with vscalefps
 * (correct overflow to inf and rounding into the subnormal range); log
 * splits x with vgetexpps/vgetmantps (subnormals handled by the hardware).
 * Other polynomial coefficients come from kernels_math.h, shared with the
 * AVX2 table.
 *
 * bf16: the level only promises F/BW/VL/DQ, so the AVX512_BF16 instruction
 * (vdpbf16ps, in dot_bf16) is used only when the CPU reports it; the answer
 * is read once with __builtin_cpu_supports and cached in an atomic int.
 * f32 -> bf16 always uses the integer round-to-nearest-even: vcvtneps2bf16
 * flushes subnormal inputs to zero and so would differ from the scalar spec.
 *
 * Streaming forms (unary_nt, binary_nt, layernorm_nt, rmsnorm_nt; see
 * kernels.h) share every loop with the ordinary ones: the loops take a
 * store kind (U ordinary, NT non-temporal from the first 64-byte
 * boundary of y; UP and NTP also prefetch rows ahead), so both forms
 * compute each lane with the same instructions and write the same bits.
 *
 * Compiled with -mavx512f/bw/vl/dq/bf16 -mavx2 -mfma -mf16c (CMake, by file
 * name); the executor calls this table only when layer 1 reports the level.
 * No allocation, no threads; the cached CPU flag is the only state.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_math.h"

#define VL 16

static inline __m512 bc(float f) { return _mm512_set1_ps(f); }

/* lanes [0, rem) on, rem in 0..16 */
static inline __mmask16 tmask(int64_t rem) { return (__mmask16)((1u << rem) - 1u); }

/* ---- vector math ------------------------------------------------------------------ */

/* exp(x) = 2^(k/16) e^r, k = round(16 x log2 e), r = x - k ln2/16 (|r| <=
 * ln2/32; Cody-Waite with ln2 split as in kernels_math.h, k/16 * LN2_HI
 * exact): 2^(j/16), j = k mod 16, from a 16-entry table in one register
 * (vpermps on the low 4 bits of t), e^r - 1 = r + r^2/2 + r^3/6 (error
 * r^4/24 < 1e-8), result = tb + tb (e^r - 1) rounded once, then scaled by
 * 2^floor(k/16) with vscalefps (overflow to inf, one rounding into the
 * subnormal range). k is rounded by adding 1.5 * 2^23 in the FMA. Max error
 * 1.07 ulp over [-103, 88.7] (the degree-6 polynomial without a table:
 * 1.0 ulp) for 8 FMA-pipe operations instead of 10 plus a vrndscaleps:
 * exp and everything built on it (softmax, GELU, SiLU, tanh) ran 1.3-1.4x
 * faster on Zen 5, where they are bound by the FP pipes. */
#define EXP_ROUND 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */
static inline __m512 v_exp(__m512 x) {
    const __m512 tbl = _mm512_setr_ps(
        1.0f, 1.04427378242741384f, 1.09050773266525766f, 1.13878863475669165f,
        1.18920711500272107f, 1.24185781207348405f, 1.29683955465100967f, 1.35425554693689273f,
        1.41421356237309505f, 1.47682614593949931f, 1.54221082540794082f, 1.61049033194925431f,
        1.68179283050742909f, 1.75625216037329948f, 1.83400808640934246f, 1.91520656139714729f);
    /* max/min return their second operand when one is NaN: NaN passes */
    x = _mm512_max_ps(bc(ST_K_EXP_LO), x);
    x = _mm512_min_ps(bc(ST_K_EXP_HI), x);
    __m512 t = _mm512_fmadd_ps(x, bc(16.0f * ST_K_LOG2E), bc(EXP_ROUND)); /* low bits: k */
    __m512 k16 = _mm512_fmsub_ps(t, bc(0.0625f), bc(EXP_ROUND / 16.0f));  /* k/16, exact */
    __m512 r = _mm512_fnmadd_ps(k16, bc(ST_K_LN2_HI), x);
    r = _mm512_fnmadd_ps(k16, bc(ST_K_LN2_LO), r);
    __m512 q = _mm512_fmadd_ps(bc(1.0f / 6.0f), r, bc(0.5f));
    q = _mm512_fmadd_ps(q, r, bc(1.0f));
    __m512 em1 = _mm512_mul_ps(q, r);
    __m512 tb = _mm512_permutexvar_ps(_mm512_castps_si512(t), tbl);
    return _mm512_scalef_ps(_mm512_fmadd_ps(tb, em1, tb), k16); /* 2^floor(k/16) */
}

static inline __m512 v_log(__m512 x) {
    const __m512 zero = _mm512_setzero_ps();
    /* x = m 2^e with m in [0.5, 1) (frexp), subnormals included */
    __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_p5_1, _MM_MANT_SIGN_zero);
    __m512 e = _mm512_add_ps(_mm512_getexp_ps(x), bc(1.0f));
    __mmask16 lt = _mm512_cmp_ps_mask(m, bc(ST_K_SQRTHF), _CMP_LT_OQ);
    e = _mm512_mask_sub_ps(e, lt, e, bc(1.0f));
    __m512 f = _mm512_sub_ps(_mm512_mask_add_ps(m, lt, m, m), bc(1.0f));
    __m512 z = _mm512_mul_ps(f, f);
    __m512 p = bc(ST_K_LOG_P0);
    p = _mm512_fmadd_ps(p, f, bc(ST_K_LOG_P1));
    p = _mm512_fmadd_ps(p, f, bc(ST_K_LOG_P2));
    p = _mm512_fmadd_ps(p, f, bc(ST_K_LOG_P3));
    p = _mm512_fmadd_ps(p, f, bc(ST_K_LOG_P4));
    p = _mm512_fmadd_ps(p, f, bc(ST_K_LOG_P5));
    p = _mm512_fmadd_ps(p, f, bc(ST_K_LOG_P6));
    p = _mm512_fmadd_ps(p, f, bc(ST_K_LOG_P7));
    p = _mm512_fmadd_ps(p, f, bc(ST_K_LOG_P8));
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, f), z);
    y = _mm512_fmadd_ps(e, bc(ST_K_LN2_LO), y);
    y = _mm512_fnmadd_ps(bc(0.5f), z, y);
    __m512 r = _mm512_add_ps(f, y);
    r = _mm512_fmadd_ps(e, bc(ST_K_LN2_HI), r);
    /* specials: +inf -> +inf, 0 -> -inf, x < 0 or NaN -> NaN */
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, bc(INFINITY), _CMP_EQ_OQ), x);
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, zero, _CMP_EQ_OQ), bc(-INFINITY));
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, zero, _CMP_NGE_UQ), bc(NAN));
    return r;
}

static inline __m512 v_tanh(__m512 x) {
    const __m512 sign = bc(-0.0f);
    __m512 ax = _mm512_andnot_ps(sign, x);
    __m512 s = _mm512_mul_ps(x, x);
    __m512 p = bc(ST_K_TANH_P0);
    p = _mm512_fmadd_ps(p, s, bc(ST_K_TANH_P1));
    p = _mm512_fmadd_ps(p, s, bc(ST_K_TANH_P2));
    p = _mm512_fmadd_ps(p, s, bc(ST_K_TANH_P3));
    p = _mm512_fmadd_ps(p, s, bc(ST_K_TANH_P4));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, s), x, x);
    __m512 e = v_exp(_mm512_add_ps(ax, ax));
    __m512 big = _mm512_sub_ps(bc(1.0f), _mm512_div_ps(bc(2.0f), _mm512_add_ps(e, bc(1.0f))));
    big = _mm512_or_ps(big, _mm512_and_ps(sign, x));
    return _mm512_mask_mov_ps(big, _mm512_cmp_ps_mask(ax, bc(ST_K_TANH_SMALL), _CMP_LT_OQ), small);
}

/* Phi(x), the normal CDF (see kernels_math.h) */
static inline __m512 v_phi(__m512 x) {
    const __m512 sign = bc(-0.0f);
    __m512 az = _mm512_mul_ps(_mm512_andnot_ps(sign, x), bc(ST_K_INV_SQRT2));
    __m512 t = _mm512_min_ps(bc(ST_K_PHI_CLAMP), az); /* NaN passes */
    /* Estrin's scheme: a shorter dependency chain than Horner */
    __m512 t2 = _mm512_mul_ps(t, t);
    __m512 t4 = _mm512_mul_ps(t2, t2);
    __m512 p01 = _mm512_fmadd_ps(bc(ST_K_PHI_Q1), t, bc(ST_K_PHI_Q0));
    __m512 p23 = _mm512_fmadd_ps(bc(ST_K_PHI_Q3), t, bc(ST_K_PHI_Q2));
    __m512 p45 = _mm512_fmadd_ps(bc(ST_K_PHI_Q5), t, bc(ST_K_PHI_Q4));
    __m512 p67 = _mm512_fmadd_ps(bc(ST_K_PHI_Q7), t, bc(ST_K_PHI_Q6));
    __m512 p03 = _mm512_fmadd_ps(p23, t2, p01);
    __m512 p48 = _mm512_fmadd_ps(bc(ST_K_PHI_Q8), t4, _mm512_fmadd_ps(p67, t2, p45));
    __m512 q = _mm512_fmadd_ps(p48, t4, p03);
    __m512 h = _mm512_mul_ps(bc(0.5f), v_exp(q));
    h = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(az, bc(ST_K_PHI_CLAMP), _CMP_NGT_UQ), h);
    return _mm512_mask_mov_ps(_mm512_sub_ps(bc(1.0f), h), _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), h);
}

/* 1 / (1 + exp(-x)) */
static inline __m512 v_sigmoid(__m512 x) {
    return _mm512_div_ps(bc(1.0f), _mm512_add_ps(bc(1.0f), v_exp(_mm512_xor_ps(x, bc(-0.0f)))));
}

/* ---- elementwise ---------------------------------------------------------------------- */

/* ---- stores ------------------------------------------------------------------------
 * Every loop that writes an output takes a store kind S, fixed at compile
 * time: U writes ordinary unaligned vectors from element 0; NT streams
 * (non-temporal stores) from y's first 64-byte boundary on, after one
 * masked ordinary store for the head before it (see kernels.h); UP and NTP
 * are U and NT plus a prefetch of pf_ + i (a pointer the caller has in
 * scope) per vector. Every lane of a result is computed by the same instructions
 * whichever vector it falls in, so the kinds write identical values. */
static inline int64_t nt_head(const float *y, int64_t n) {
    int64_t h = (int64_t)((-(uintptr_t)y & 63) / sizeof(float));
    return h < n ? h : n;
}
#define HEAD_U(y, n) 0
#define HEAD_UP(y, n) 0
#define HEAD_NT(y, n) nt_head((y), (n))
#define HEAD_NTP(y, n) nt_head((y), (n))
#define STV_U(p, v) _mm512_storeu_ps((p), (v))
#define STV_UP(p, v) _mm512_storeu_ps((p), (v))
#define STV_NT(p, v) _mm512_stream_ps((p), (v))
#define STV_NTP(p, v) _mm512_stream_ps((p), (v))
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
            __mmask16 m_ = tmask(i_);                                          \
            _mm512_mask_storeu_ps((y), m_, F(_mm512_maskz_loadu_ps(m_, (x)))); \
        }                                                                      \
        for (; i_ + 4 * VL <= (n); i_ += 4 * VL) {                             \
            __m512 v0_ = _mm512_loadu_ps((x) + i_);                            \
            __m512 v1_ = _mm512_loadu_ps((x) + i_ + VL);                       \
            __m512 v2_ = _mm512_loadu_ps((x) + i_ + 2 * VL);                   \
            __m512 v3_ = _mm512_loadu_ps((x) + i_ + 3 * VL);                   \
            PF_##S(i_), PF_##S(i_ + VL), PF_##S(i_ + 2 * VL), PF_##S(i_ + 3 * VL); \
            STV_##S((y) + i_, F(v0_));                                         \
            STV_##S((y) + i_ + VL, F(v1_));                                    \
            STV_##S((y) + i_ + 2 * VL, F(v2_));                                \
            STV_##S((y) + i_ + 3 * VL, F(v3_));                                \
        }                                                                      \
        for (; i_ + VL <= (n); i_ += VL) {                                     \
            PF_##S(i_);                                                        \
            STV_##S((y) + i_, F(_mm512_loadu_ps((x) + i_)));                   \
        }                                                                      \
        if (i_ < (n)) {                                                        \
            __mmask16 m_ = tmask((n) - i_);                                    \
            _mm512_mask_storeu_ps((y) + i_, m_, F(_mm512_maskz_loadu_ps(m_, (x) + i_))); \
        }                                                                      \
    } while (0)

/* z[i] = F(x[i], y[i]) */
#define LOOP_2_1_S(n, x, y, z, F, S)                                           \
    do {                                                                       \
        int64_t i_ = HEAD_##S((z), (n));                                       \
        if (i_ > 0) {                                                          \
            __mmask16 m_ = tmask(i_);                                          \
            _mm512_mask_storeu_ps((z), m_,                                     \
                                  F(_mm512_maskz_loadu_ps(m_, (x)), _mm512_maskz_loadu_ps(m_, (y)))); \
        }                                                                      \
        for (; i_ + 2 * VL <= (n); i_ += 2 * VL) {                             \
            __m512 a0_ = _mm512_loadu_ps((x) + i_);                            \
            __m512 a1_ = _mm512_loadu_ps((x) + i_ + VL);                       \
            __m512 b0_ = _mm512_loadu_ps((y) + i_);                            \
            __m512 b1_ = _mm512_loadu_ps((y) + i_ + VL);                       \
            PF_##S(i_), PF_##S(i_ + VL);                                       \
            STV_##S((z) + i_, F(a0_, b0_));                                    \
            STV_##S((z) + i_ + VL, F(a1_, b1_));                               \
        }                                                                      \
        for (; i_ + VL <= (n); i_ += VL) {                                     \
            PF_##S(i_);                                                        \
            STV_##S((z) + i_, F(_mm512_loadu_ps((x) + i_), _mm512_loadu_ps((y) + i_))); \
        }                                                                      \
        if (i_ < (n)) {                                                        \
            __mmask16 m_ = tmask((n) - i_);                                    \
            _mm512_mask_storeu_ps((z) + i_, m_,                                \
                                  F(_mm512_maskz_loadu_ps(m_, (x) + i_), _mm512_maskz_loadu_ps(m_, (y) + i_))); \
        }                                                                      \
    } while (0)

/* w[i] = F(x[i], y[i], z[i]) */
#define LOOP_3_1_S(n, x, y, z, w, F, S)                                        \
    do {                                                                       \
        int64_t i_ = HEAD_##S((w), (n));                                       \
        if (i_ > 0) {                                                          \
            __mmask16 m_ = tmask(i_);                                          \
            _mm512_mask_storeu_ps((w), m_,                                     \
                                  F(_mm512_maskz_loadu_ps(m_, (x)), _mm512_maskz_loadu_ps(m_, (y)), \
                                    _mm512_maskz_loadu_ps(m_, (z))));          \
        }                                                                      \
        for (; i_ + VL <= (n); i_ += VL) {                                     \
            PF_##S(i_);                                                        \
            STV_##S((w) + i_, F(_mm512_loadu_ps((x) + i_), _mm512_loadu_ps((y) + i_), \
                                _mm512_loadu_ps((z) + i_)));                   \
        }                                                                      \
        if (i_ < (n)) {                                                        \
            __mmask16 m_ = tmask((n) - i_);                                    \
            _mm512_mask_storeu_ps((w) + i_, m_,                                \
                                  F(_mm512_maskz_loadu_ps(m_, (x) + i_), _mm512_maskz_loadu_ps(m_, (y) + i_), \
                                    _mm512_maskz_loadu_ps(m_, (z) + i_)));     \
        }                                                                      \
    } while (0)

#define LOOP_1_1(n, x, y, F) LOOP_1_1_S(n, x, y, F, U)
#define LOOP_2_1(n, x, y, z, F) LOOP_2_1_S(n, x, y, z, F, U)
#define LOOP_3_1(n, x, y, z, w, F) LOOP_3_1_S(n, x, y, z, w, F, U)

static inline __m512 f_neg(__m512 x) { return _mm512_xor_ps(x, bc(-0.0f)); }
static inline __m512 f_log(__m512 x) { return v_log(x); }
static inline __m512 f_sqrt(__m512 x) { return _mm512_sqrt_ps(x); }
static inline __m512 f_relu(__m512 x) { return _mm512_max_ps(x, _mm512_setzero_ps()); }

/* 0.5 x (1 + tanh(u)) == x sigmoid(2u) == x / (1 + exp(-2u)), u = sqrt(2/pi)
 * (x + c x^3), -2u = x (K1 + K2 x^2): one exp, one add and one division per
 * vector and a short dependency chain; the loop is bound by the FP pipes,
 * not by memory, so every operation saved shows. */
static inline __m512 f_gelu_tanh(__m512 x) {
    __m512 v = _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_mul_ps(x, x), bc(ST_K_GELU_K2), bc(ST_K_GELU_K1)));
    return _mm512_div_ps(x, _mm512_add_ps(bc(1.0f), v_exp(v)));
}

static inline __m512 f_gelu_erf(__m512 x) { return _mm512_mul_ps(x, v_phi(x)); }

/* x sigmoid(x) == x / (1 + exp(-x)) (as the scalar spec writes it) */
static inline __m512 f_silu(__m512 x) {
    return _mm512_div_ps(x, _mm512_add_ps(bc(1.0f), v_exp(_mm512_xor_ps(x, bc(-0.0f)))));
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
    const __m512 va = bc(alpha);
#define F_SCALE(v) _mm512_mul_ps(va, (v))
    UNARY_SWITCH(U)
#undef F_SCALE
}

static void k_unary_nt(st_op op, int64_t n, const float *x, float *y, float alpha) {
    const __m512 va = bc(alpha);
#define F_SCALE(v) _mm512_mul_ps(va, (v))
    UNARY_SWITCH(NT)
#undef F_SCALE
}
#undef UNARY_SWITCH

/* derivatives times dy */
static inline __m512 b_neg(__m512 x, __m512 dy) { (void)x; return f_neg(dy); }
static inline __m512 b_exp(__m512 x, __m512 dy) { return _mm512_mul_ps(v_exp(x), dy); }
static inline __m512 b_exp_y(__m512 x, __m512 y, __m512 dy) { (void)x; return _mm512_mul_ps(y, dy); }
static inline __m512 b_log(__m512 x, __m512 dy) { return _mm512_div_ps(dy, x); }
static inline __m512 b_sqrt(__m512 x, __m512 dy) {
    return _mm512_div_ps(_mm512_mul_ps(bc(0.5f), dy), _mm512_sqrt_ps(x));
}
static inline __m512 b_sqrt_y(__m512 x, __m512 y, __m512 dy) {
    (void)x;
    return _mm512_div_ps(_mm512_mul_ps(bc(0.5f), dy), y);
}
static inline __m512 b_tanh_t(__m512 t, __m512 dy) {
    return _mm512_mul_ps(_mm512_fnmadd_ps(t, t, bc(1.0f)), dy);
}
static inline __m512 b_tanh(__m512 x, __m512 dy) { return b_tanh_t(v_tanh(x), dy); }
static inline __m512 b_tanh_y(__m512 x, __m512 y, __m512 dy) { (void)x; return b_tanh_t(y, dy); }
/* s = sigmoid(2u): d = s + 2 x s (1 - s) u'(x), u' = sqrt(2/pi) (1 + 3 c x^2) */
static inline __m512 b_gelu_tanh(__m512 x, __m512 dy) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u = _mm512_mul_ps(bc(ST_K_SQRT_2_OVER_PI),
                             _mm512_fmadd_ps(_mm512_mul_ps(bc(ST_K_GELU_C), x2), x, x));
    __m512 du = _mm512_mul_ps(bc(ST_K_SQRT_2_OVER_PI), _mm512_fmadd_ps(bc(3.0f * ST_K_GELU_C), x2, bc(1.0f)));
    __m512 s = v_sigmoid(_mm512_add_ps(u, u));
    __m512 s1 = _mm512_mul_ps(s, _mm512_sub_ps(bc(1.0f), s));
    __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_add_ps(x, x), s1), du, s);
    return _mm512_mul_ps(d, dy);
}
/* Phi(x) + x phi(x) */
static inline __m512 b_gelu_erf(__m512 x, __m512 dy) {
    __m512 phi = _mm512_mul_ps(bc(ST_K_INV_SQRT_2PI),
                               v_exp(_mm512_mul_ps(bc(-0.5f), _mm512_mul_ps(x, x))));
    return _mm512_mul_ps(_mm512_fmadd_ps(x, phi, v_phi(x)), dy);
}
static inline __m512 b_silu(__m512 x, __m512 dy) {
    __m512 s = v_sigmoid(x);
    __m512 d = _mm512_mul_ps(s, _mm512_fmadd_ps(x, _mm512_sub_ps(bc(1.0f), s), bc(1.0f)));
    return _mm512_mul_ps(d, dy);
}
static inline __m512 b_relu(__m512 x, __m512 dy) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), dy);
}

static void k_unary_backward(st_op op, int64_t n, const float *x, const float *y,
                             const float *dy, float *dx, float alpha) {
    const __m512 va = bc(alpha);
#define B_SCALE(xv, dv) ((void)(xv), _mm512_mul_ps(va, (dv)))
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
#define LD1(P, i) _mm512_loadu_ps((P) + (i))
#define LD0(P, i) P##v
#define LDT1(P, i, m) _mm512_maskz_loadu_ps((m), (P) + (i))
#define LDT0(P, i, m) P##v

#define BIN_LOOP(OPF, SA, SB, S)                                               \
    do {                                                                       \
        int64_t i_ = HEAD_##S(y, n);                                           \
        if (i_ > 0) {                                                          \
            __mmask16 m_ = tmask(i_);                                          \
            _mm512_mask_storeu_ps(y, m_, OPF(LDT##SA(a, 0, m_), LDT##SB(b, 0, m_))); \
        }                                                                      \
        for (; i_ + 4 * VL <= n; i_ += 4 * VL) {                               \
            __m512 r0_ = OPF(LD##SA(a, i_), LD##SB(b, i_));                    \
            __m512 r1_ = OPF(LD##SA(a, i_ + VL), LD##SB(b, i_ + VL));          \
            __m512 r2_ = OPF(LD##SA(a, i_ + 2 * VL), LD##SB(b, i_ + 2 * VL));  \
            __m512 r3_ = OPF(LD##SA(a, i_ + 3 * VL), LD##SB(b, i_ + 3 * VL));  \
            STV_##S(y + i_, r0_);                                              \
            STV_##S(y + i_ + VL, r1_);                                         \
            STV_##S(y + i_ + 2 * VL, r2_);                                     \
            STV_##S(y + i_ + 3 * VL, r3_);                                     \
        }                                                                      \
        for (; i_ + VL <= n; i_ += VL)                                         \
            STV_##S(y + i_, OPF(LD##SA(a, i_), LD##SB(b, i_)));                \
        if (i_ < n) {                                                          \
            __mmask16 m_ = tmask(n - i_);                                      \
            _mm512_mask_storeu_ps(y + i_, m_, OPF(LDT##SA(a, i_, m_), LDT##SB(b, i_, m_))); \
        }                                                                      \
    } while (0)

#define DEF_BINARY(NAME, OPF, S)                                               \
    static void NAME(int64_t n, const float *a, int64_t sa, const float *b, int64_t sb, \
                     float *y) {                                               \
        if (n <= 0) return;                                                    \
        const __m512 av = bc(a[0]), bv = bc(b[0]);                             \
        if (sa && sb) BIN_LOOP(OPF, 1, 1, S);                                  \
        else if (sa) BIN_LOOP(OPF, 1, 0, S);                                   \
        else if (sb) BIN_LOOP(OPF, 0, 1, S);                                   \
        else BIN_LOOP(OPF, 0, 0, S);                                           \
        (void)av;                                                              \
        (void)bv;                                                              \
    }

DEF_BINARY(bin_add, _mm512_add_ps, U)
DEF_BINARY(bin_sub, _mm512_sub_ps, U)
DEF_BINARY(bin_mul, _mm512_mul_ps, U)
DEF_BINARY(bin_div, _mm512_div_ps, U)
DEF_BINARY(bin_add_nt, _mm512_add_ps, NT)
DEF_BINARY(bin_sub_nt, _mm512_sub_ps, NT)
DEF_BINARY(bin_mul_nt, _mm512_mul_ps, NT)
DEF_BINARY(bin_div_nt, _mm512_div_ps, NT)

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
    const __m512 va = bc(alpha);
#define AXPY_F(xv, yv) _mm512_fmadd_ps(va, (xv), (yv))
    if (sx) {
        LOOP_2_1(n, x, y, y, AXPY_F);
    } else {
        /* y += alpha * x[0]: the same product every element */
        const __m512 vc = bc(alpha * x[0]);
#define AXPY_C(yv) _mm512_add_ps((yv), vc)
        LOOP_1_1(n, y, y, AXPY_C);
#undef AXPY_C
    }
#undef AXPY_F
}

/* ---- reductions ------------------------------------------------------------------------- */

static float k_sum(int64_t n, const float *x) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + VL));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + i + 2 * VL));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + i + 3 * VL));
    }
    for (; i + VL <= n; i += VL) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    if (i < n) s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(tmask(n - i), x + i));
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* NaN anywhere gives NaN (as the scalar spec); -inf for n == 0 */
static float k_max(int64_t n, const float *x) {
    const __m512 ninf = bc(-INFINITY);
    __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    __mmask16 nan = 0;
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + VL);
        __m512 v2 = _mm512_loadu_ps(x + i + 2 * VL), v3 = _mm512_loadu_ps(x + i + 3 * VL);
        m0 = _mm512_max_ps(v0, m0);
        m1 = _mm512_max_ps(v1, m1);
        m2 = _mm512_max_ps(v2, m2);
        m3 = _mm512_max_ps(v3, m3);
        nan |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v2, v3, _CMP_UNORD_Q);
    }
    for (; i + VL <= n; i += VL) {
        __m512 v = _mm512_loadu_ps(x + i);
        m0 = _mm512_max_ps(v, m0);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    if (i < n) {
        __m512 v = _mm512_mask_loadu_ps(ninf, tmask(n - i), x + i);
        m1 = _mm512_max_ps(v, m1);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    if (nan) return NAN;
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

static float k_dot(int64_t n, const float *x, const float *y) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + VL), _mm512_loadu_ps(y + i + VL), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 2 * VL), _mm512_loadu_ps(y + i + 2 * VL), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 3 * VL), _mm512_loadu_ps(y + i + 3 * VL), s3);
    }
    for (; i + VL <= n; i += VL)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
    if (i < n) {
        __mmask16 m = tmask(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* sum of (x[i] - c)^2 */
static float sum_sqdev(int64_t n, const float *x, float c) {
    const __m512 vc = bc(c);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vc);
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + VL), vc);
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 2 * VL), vc);
        __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 3 * VL), vc);
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
        s2 = _mm512_fmadd_ps(d2, d2, s2);
        s3 = _mm512_fmadd_ps(d3, d3, s3);
    }
    for (; i + VL <= n; i += VL) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), vc);
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    if (i < n) {
        __mmask16 m = tmask(n - i);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vc);
        s1 = _mm512_fmadd_ps(d, d, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
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
 * output rows ahead (pw) for writing, one line of each per vector. */
static inline __attribute__((always_inline)) float softmax_exp(int64_t n, const float *x, __m512 vm,
                                                               float *t, const float *pf,
                                                               const float *pw) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        _mm_prefetch((const char *)(pf + i + VL), _MM_HINT_T0);
        prefetch_w(pw + i);
        prefetch_w(pw + i + VL);
        __m512 e0 = v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        __m512 e1 = v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i + VL), vm));
        _mm512_storeu_ps(t + i, e0);
        _mm512_storeu_ps(t + i + VL, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    for (; i + VL <= n; i += VL) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        prefetch_w(pw + i);
        __m512 e = v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(t + i, e);
        s0 = _mm512_add_ps(s0, e);
    }
    if (i < n) {
        __mmask16 m = tmask(n - i);
        __m512 e = _mm512_maskz_mov_ps(m, v_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm)));
        _mm512_mask_storeu_ps(t + i, m, e);
        s1 = _mm512_add_ps(s1, e);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

#define SM_SCALE(v) _mm512_mul_ps((v), inv)

static void k_softmax(int64_t n, const float *x, float *y) {
    if (n <= 0) return;
    const __m512 vm = bc(k_max(n, x));
    const __m512 inv = bc(1.0f / softmax_exp(n, x, vm, y, x + row_ahead(n), y + row_ahead(n)));
    LOOP_1_1(n, y, y, SM_SCALE);
}

#undef SM_SCALE

/* sum of exp(x[i] - m) (pf, pw as in softmax_exp) */
static inline __attribute__((always_inline)) float lse_sum(int64_t n, const float *x, __m512 vm,
                                                           const float *pf, const float *pw) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        _mm_prefetch((const char *)(pf + i + VL), _MM_HINT_T0);
        prefetch_w(pw + i);
        prefetch_w(pw + i + VL);
        s0 = _mm512_add_ps(s0, v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)));
        s1 = _mm512_add_ps(s1, v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i + VL), vm)));
    }
    for (; i + VL <= n; i += VL) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        prefetch_w(pw + i);
        s0 = _mm512_add_ps(s0, v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)));
    }
    if (i < n) {
        __mmask16 mk = tmask(n - i);
        s1 = _mm512_add_ps(s1, _mm512_maskz_mov_ps(mk, v_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm))));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void k_log_softmax(int64_t n, const float *x, float *y) {
    if (n <= 0) return;
    const float m = k_max(n, x);
    const __m512 vm = bc(m);
    const __m512 lse = bc(m + logf(lse_sum(n, x, vm, x + row_ahead(n), y + row_ahead(n))));
#define LSM_F(v) _mm512_sub_ps((v), lse)
    LOOP_1_1(n, x, y, LSM_F);
#undef LSM_F
}

static void k_softmax_backward(int64_t n, const float *y, const float *dy, float *dx) {
    const __m512 d = bc(k_dot(n, dy, y));
#define SMB_F(yv, dyv) _mm512_mul_ps((yv), _mm512_sub_ps((dyv), d))
    LOOP_2_1(n, y, dy, dx, SMB_F);
#undef SMB_F
}

static void k_log_softmax_backward(int64_t n, const float *y, const float *dy, float *dx) {
    const __m512 s = bc(k_sum(n, dy));
#define LSMB_F(yv, dyv) _mm512_fnmadd_ps(v_exp(yv), s, (dyv))
    LOOP_2_1(n, y, dy, dx, LSMB_F);
#undef LSMB_F
}

static void row_moments(int64_t n, const float *x, float eps, float *mean, float *rstd) {
    float mu = k_sum(n, x) / (float)n;
    float var = sum_sqdev(n, x, mu) / (float)n;
    *mean = mu;
    *rstd = 1.0f / sqrtf(var + eps);
}

/* full-vector and masked-tail loads/stores at element i (mask m) */
#define LD_F(p) _mm512_loadu_ps((p) + i)
#define ST_F(p, v) _mm512_storeu_ps((p) + i, (v))
#define LD_M(p) _mm512_maskz_loadu_ps(m, (p) + i)
#define ST_M(p, v) _mm512_mask_storeu_ps((p) + i, m, (v))

/* The last pass prefetches rows ahead (UP, NTP; see kernels.h). */
static inline __attribute__((always_inline)) void layernorm_row(int64_t n, const float *x,
                                                                const float *g, const float *b,
                                                                float eps, float *y, bool nt) {
    if (n <= 0) return;
    float mu, rstd;
    row_moments(n, x, eps, &mu, &rstd);
    const __m512 vmu = bc(mu), vr = bc(rstd);
    const float *pf_ = x + row_ahead(n);
#define LN_XHAT(xv) _mm512_mul_ps(_mm512_sub_ps((xv), vmu), vr)
#define LN_G(xv, gv) _mm512_mul_ps(LN_XHAT(xv), (gv))
#define LN_B(xv, bv) _mm512_add_ps(LN_XHAT(xv), (bv))
#define LN_GB(xv, gv, bv) _mm512_fmadd_ps(LN_XHAT(xv), (gv), (bv))
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
    const __m512 vmu = bc(mu), vr = bc(rstd), one = bc(1.0f);
    /* sums of g*dy and g*dy*xhat; dg/db accumulation in the same pass.
     * Masked-out tail lanes load dy = 0, so they add nothing. */
    __m512 s1 = _mm512_setzero_ps(), s2 = s1;
    int64_t i = 0;
    __mmask16 m = 0;
#define LNB_STEP(LD, ST)                                                       \
    do {                                                                       \
        __m512 xv = LD(x), dyv = LD(dy), gv = g ? LD(g) : one;                 \
        __m512 xhat = LN_XHAT(xv);                                             \
        __m512 gdy = _mm512_mul_ps(gv, dyv);                                   \
        s1 = _mm512_add_ps(s1, gdy);                                           \
        s2 = _mm512_fmadd_ps(gdy, xhat, s2);                                   \
        if (dg_acc) ST(dg_acc, _mm512_fmadd_ps(dyv, xhat, LD(dg_acc)));        \
        if (db_acc) ST(db_acc, _mm512_add_ps(dyv, LD(db_acc)));                \
    } while (0)
    for (; i + VL <= n; i += VL) LNB_STEP(LD_F, ST_F);
    if (i < n) {
        m = tmask(n - i);
        LNB_STEP(LD_M, ST_M);
    }
#undef LNB_STEP
    const __m512 m1 = bc(_mm512_reduce_add_ps(s1) / (float)n), m2 = bc(_mm512_reduce_add_ps(s2) / (float)n);
#define LNB_F(xv, dyv) _mm512_mul_ps(vr, _mm512_fnmadd_ps(LN_XHAT(xv), m2, _mm512_sub_ps((dyv), m1)))
#define LNB_FG(xv, gv, dyv) LNB_F(xv, _mm512_mul_ps((gv), (dyv)))
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
    const __m512 vr = bc(row_rrms(n, x, eps));
    const float *pf_ = x + row_ahead(n);
#define RN_F(xv) _mm512_mul_ps((xv), vr)
#define RN_FG(xv, gv) _mm512_mul_ps(RN_F(xv), (gv))
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
    const __m512 vr = bc(r), one = bc(1.0f);
    __m512 s = _mm512_setzero_ps();
    int64_t i = 0;
    __mmask16 m = 0;
#define RNB_STEP(LD, ST)                                                       \
    do {                                                                       \
        __m512 xv = LD(x), dyv = LD(dy), gv = g ? LD(g) : one;                 \
        s = _mm512_fmadd_ps(_mm512_mul_ps(gv, dyv), xv, s);                    \
        if (dg_acc) ST(dg_acc, _mm512_fmadd_ps(_mm512_mul_ps(dyv, xv), vr, LD(dg_acc))); \
    } while (0)
    for (; i + VL <= n; i += VL) RNB_STEP(LD_F, ST_F);
    if (i < n) {
        m = tmask(n - i);
        RNB_STEP(LD_M, ST_M);
    }
#undef RNB_STEP
    const __m512 c = bc(_mm512_reduce_add_ps(s) / (float)n * r * r * r);
#define RNB_F(xv, dyv) _mm512_fnmadd_ps((xv), c, _mm512_mul_ps(vr, (dyv)))
#define RNB_FG(xv, gv, dyv) RNB_F(xv, _mm512_mul_ps((gv), (dyv)))
    if (g) LOOP_3_1(n, x, g, dy, dx, RNB_FG);
    else LOOP_2_1(n, x, dy, dx, RNB_F);
#undef RNB_F
#undef RNB_FG
}

#undef LD_F
#undef ST_F
#undef LD_M
#undef ST_M

/* ---- conversions ---------------------------------------------------------------------------- */

static void k_bf16_to_f32(int64_t n, const uint16_t *x, float *y) {
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
        __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i + VL)));
        _mm512_storeu_si512(y + i, _mm512_slli_epi32(a, 16));
        _mm512_storeu_si512(y + i + VL, _mm512_slli_epi32(b, 16));
    }
    for (; i < n; i += VL) {
        __mmask16 m = tmask(n - i < VL ? n - i : VL);
        __m512i a = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(a, 16)));
    }
}

/* 16 floats -> 16 bf16, round to nearest even, NaN made quiet (bit-exact
 * with st__k_f32_to_bf16, subnormals included) */
static inline __m256i cvt_bf16_16(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    __m512i qnan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    __mmask16 isnan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                              _mm512_set1_epi32(0x7f800000));
    return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(r, isnan, qnan));
}

static void k_f32_to_bf16(int64_t n, const float *x, uint16_t *y) {
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        _mm256_storeu_si256((__m256i *)(y + i), cvt_bf16_16(_mm512_loadu_ps(x + i)));
        _mm256_storeu_si256((__m256i *)(y + i + VL), cvt_bf16_16(_mm512_loadu_ps(x + i + VL)));
    }
    for (; i < n; i += VL) {
        __mmask16 m = tmask(n - i < VL ? n - i : VL);
        _mm256_mask_storeu_epi16(y + i, m, cvt_bf16_16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void k_f16_to_f32(int64_t n, const uint16_t *x, float *y) {
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
        _mm512_storeu_ps(y + i + VL, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i + VL))));
    }
    for (; i < n; i += VL) {
        __mmask16 m = tmask(n - i < VL ? n - i : VL);
        _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)));
    }
}

static void k_f32_to_f16(int64_t n, const float *x, uint16_t *y) {
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
        _mm256_storeu_si256((__m256i *)(y + i + VL),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i + VL), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i += VL) {
        __mmask16 m = tmask(n - i < VL ? n - i : VL);
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT));
    }
}

/* Whether the CPU has AVX512_BF16: -1 unknown yet, then 0 or 1. A benign
 * race: every thread that finds -1 computes and stores the same answer. */
static int g_has_bf16 = -1;

static bool has_avx512_bf16(void) {
    int v = __atomic_load_n(&g_has_bf16, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
        __atomic_store_n(&g_has_bf16, v, __ATOMIC_RELAXED);
    }
    return v != 0;
}

/* vdpbf16ps: per 32-bit lane, acc += x_even*y_even + x_odd*y_odd (f32
 * products, bf16 subnormals read as zero) */
static float dot_bf16_dp(int64_t n, const uint16_t *x, const uint16_t *y) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
#define BH(p) ((__m512bh)_mm512_loadu_si512(p))
    for (; i + 8 * VL <= n; i += 8 * VL) {
        s0 = _mm512_dpbf16_ps(s0, BH(x + i), BH(y + i));
        s1 = _mm512_dpbf16_ps(s1, BH(x + i + 2 * VL), BH(y + i + 2 * VL));
        s2 = _mm512_dpbf16_ps(s2, BH(x + i + 4 * VL), BH(y + i + 4 * VL));
        s3 = _mm512_dpbf16_ps(s3, BH(x + i + 6 * VL), BH(y + i + 6 * VL));
    }
    for (; i + 2 * VL <= n; i += 2 * VL) s0 = _mm512_dpbf16_ps(s0, BH(x + i), BH(y + i));
#undef BH
    if (i < n) {
        __mmask32 m = (__mmask32)((1u << (n - i)) - 1u);
        s1 = _mm512_dpbf16_ps(s1, (__m512bh)_mm512_maskz_loadu_epi16(m, x + i),
                              (__m512bh)_mm512_maskz_loadu_epi16(m, y + i));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* Without AVX512_BF16: 32 bf16 per 512-bit load; the even elements are the
 * low halves of the 32-bit lanes (shift left 16), the odd ones the high
 * halves (mask). */
static inline void dot_bf16_32(__m512i a, __m512i b, __m512 *se, __m512 *so) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    *se = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(a, 16)),
                          _mm512_castsi512_ps(_mm512_slli_epi32(b, 16)), *se);
    *so = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(a, hi)),
                          _mm512_castsi512_ps(_mm512_and_si512(b, hi)), *so);
}

static float dot_bf16_shift(int64_t n, const uint16_t *x, const uint16_t *y) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        dot_bf16_32(_mm512_loadu_si512(x + i), _mm512_loadu_si512(y + i), &s0, &s1);
        dot_bf16_32(_mm512_loadu_si512(x + i + 2 * VL), _mm512_loadu_si512(y + i + 2 * VL), &s2, &s3);
    }
    for (; i < n; i += 2 * VL) {
        int64_t rem = n - i < 2 * VL ? n - i : 2 * VL;
        __mmask32 m = (__mmask32)(rem == 32 ? 0xffffffffu : (1u << rem) - 1u);
        dot_bf16_32(_mm512_maskz_loadu_epi16(m, x + i), _mm512_maskz_loadu_epi16(m, y + i), &s0, &s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static float k_dot_bf16(int64_t n, const uint16_t *x, const uint16_t *y) {
    return has_avx512_bf16() ? dot_bf16_dp(n, x, y) : dot_bf16_shift(n, x, y);
}

void st__cpu_kernels_avx512_bf16_override(int use) {
    if (use < 0) use = -1;
    else if (use > 0) use = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    __atomic_store_n(&g_has_bf16, use, __ATOMIC_RELAXED);
}

const st_cpu_kernels st__cpu_kernels_avx512 = {
    .level = ST_SIMD_AVX512,
    .name = "avx512",
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
