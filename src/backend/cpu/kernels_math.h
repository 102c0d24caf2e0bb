/*
 * kernels_math.h — math shared by the CPU kernel tables (private to
 * src/backend/cpu).
 *
 * Holds the bit-exact scalar conversions between f32 and bf16/f16 (the spec
 * every SIMD level must reproduce bit for bit, also used for their tails),
 * the GELU constants, and the polynomial coefficients of the vectorized
 * exp/log/tanh/erf so the AVX2 and AVX-512 tables compute the same
 * approximations. Everything here is static inline or a macro: no state, no
 * allocation, safe from any thread.
 */
#ifndef STRATA_BACKEND_CPU_KERNELS_MATH_H
#define STRATA_BACKEND_CPU_KERNELS_MATH_H

#include <stdint.h>
#include <string.h>

/* ---- GELU constants --------------------------------------------------------- */
#define ST_K_SQRT_2_OVER_PI 0.7978845608028654f /* sqrt(2/pi) */
#define ST_K_GELU_C 0.044715f
/* the vectorized tanh GELU as x / (1 + exp(x (K1 + K2 x^2))): K1 x + K2 x^3 = -2u */
#define ST_K_GELU_K1 (-2.0f * ST_K_SQRT_2_OVER_PI)
#define ST_K_GELU_K2 (-2.0f * ST_K_SQRT_2_OVER_PI * ST_K_GELU_C)
#define ST_K_INV_SQRT2 0.7071067811865476f      /* 1/sqrt(2) */
#define ST_K_INV_SQRT_2PI 0.3989422804014327f   /* 1/sqrt(2 pi) */

/* ---- bit casts ----------------------------------------------------------------- */
static inline uint32_t st__f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float st__bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- bf16 ------------------------------------------------------------------------
 * bf16 is the top half of an f32. f32 -> bf16 rounds to nearest even on the
 * dropped 16 bits (subnormals included, overflow rounds to inf); a NaN keeps
 * its sign and top payload bits and is made quiet (bit 6 set), as the
 * AVX-512 BF16 instructions do. */
static inline float st__k_bf16_to_f32(uint16_t h) { return st__bits_f32((uint32_t)h << 16); }

static inline uint16_t st__k_f32_to_bf16(float f) {
    uint32_t u = st__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* ---- IEEE half ------------------------------------------------------------------
 * f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Both directions
 * handle subnormals, infinities and NaN; f32 -> f16 rounds to nearest even
 * and overflows to inf. NaN payloads keep their top bits and are made quiet
 * (the F16C instructions do the same, so every level agrees bit for bit). */
static inline float st__k_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
        if (man) u |= 0x00400000u; /* quiet NaN */
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13); /* 112 = 127 - 15 */
    } else if (man == 0) {
        u = sign;
    } else {
        /* subnormal: value = man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-08f; /* 2^-24 */
        u = sign | st__f32_bits(v);
    }
    return st__bits_f32(u);
}

static inline uint16_t st__k_f32_to_f16(float f) {
    uint32_t u = st__f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) { /* inf or NaN */
        if (a == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    }
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: rounds to inf */
    if (a >= 0x38800000u) {                                  /* >= 2^-14: normal half */
        uint32_t r = a + 0x0fffu + ((a >> 13) & 1u);          /* RNE on 13 dropped bits */
        return (uint16_t)(sign | ((r - 0x38000000u) >> 13));  /* rebias 127 -> 15 */
    }
    if (a < 0x33000000u) return sign; /* < 2^-25: rounds to zero (2^-25 itself ties to 0) */
    /* subnormal half: shift the full mantissa right, round to nearest even */
    uint32_t e = a >> 23;                   /* 102..112 */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;              /* 14..24: m >> shift is in units of 2^-24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

/* ---- coefficients of the vectorized exp / log / tanh / erf ---------------------
 * exp(x): x clamped to [-104, 89] (outside: 0 or inf; NaN passes), n =
 * round(x log2 e), r = x - n ln2 in two parts (Cody-Waite; n * LN2_HI is
 * exact for |n| <= 150), e^r = 1 + r + r^2 P(r) on |r| <= ln2/2 (Cephes
 * expf, ~1 ulp), then scaled by 2^n so that results in the subnormal range
 * round once (AVX2: two exponent-field multiplies, 2^(n/2) 2^(n - n/2)).
 * The AVX-512 table keeps the clamp and the ln2 split but reduces by ln2/16
 * against a table of 2^(j/16) with a cubic and vscalefps (its v_exp). */
#define ST_K_EXP_HI 89.0f
#define ST_K_EXP_LO -104.0f
#define ST_K_LOG2E 1.44269504088896341f
#define ST_K_LN2_HI 0.693359375f
#define ST_K_LN2_LO -2.12194440e-4f
#define ST_K_EXP_P0 1.9875691500e-4f
#define ST_K_EXP_P1 1.3981999507e-3f
#define ST_K_EXP_P2 8.3334519073e-3f
#define ST_K_EXP_P3 4.1665795894e-2f
#define ST_K_EXP_P4 1.6666665459e-1f
#define ST_K_EXP_P5 5.0000001201e-1f

/* log(x) (Cephes logf): x = m 2^e with m in [sqrt(1/2), sqrt(2)), f = m - 1,
 * log(x) = f - f^2/2 + f^3 P(f) + e ln2 (ln2 split as for exp). Subnormal x
 * are scaled by 2^23 first; 0 -> -inf, x < 0 -> NaN, inf -> inf. */
#define ST_K_SQRTHF 0.707106781186547524f
#define ST_K_LOG_P0 7.0376836292e-2f
#define ST_K_LOG_P1 -1.1514610310e-1f
#define ST_K_LOG_P2 1.1676998740e-1f
#define ST_K_LOG_P3 -1.2420140846e-1f
#define ST_K_LOG_P4 1.4249322787e-1f
#define ST_K_LOG_P5 -1.6668057665e-1f
#define ST_K_LOG_P6 2.0000714765e-1f
#define ST_K_LOG_P7 -2.4999993993e-1f
#define ST_K_LOG_P8 3.3333331174e-1f

/* tanh(x) (Cephes tanhf): |x| < 0.625: x + x^3 P(x^2); else
 * sign(x) (1 - 2 / (exp(2|x|) + 1)). */
#define ST_K_TANH_SMALL 0.625f
#define ST_K_TANH_P0 -5.70498872745e-3f
#define ST_K_TANH_P1 2.06390887954e-2f
#define ST_K_TANH_P2 -5.37397155531e-2f
#define ST_K_TANH_P3 1.33314422036e-1f
#define ST_K_TANH_P4 -3.33332819422e-1f

/* Phi(x) = 0.5 erfc(-x / sqrt(2)), the normal CDF of GELU (erf form), as one
 * branch-free formula: t = |x| / sqrt(2) clamped to 4, h = 0.5 exp(Q(t))
 * with Q(t) ~ log(erfc(t)) a degree-8 polynomial fitted for Strata on
 * [0, 4] (least squares on Chebyshev nodes weighted by erfc(t), mpmath):
 * |erfc(t) - exp(Q(t))| <= 1.6e-8. h = 0 where t > 4 (erfc(4) = 1.5e-8);
 * Phi = h for x < 0, 1 - h otherwise. This avoids the cancellation of
 * 1 + erf(x) for negative x, so it is at least as accurate as the scalar
 * 0.5 (1 + erff(x / sqrt(2))). */
#define ST_K_PHI_CLAMP 4.0f
#define ST_K_PHI_Q0 1.5931612126218342e-8f
#define ST_K_PHI_Q1 -1.1283808374121604f
#define ST_K_PHI_Q2 -0.63659210706362722f
#define ST_K_PHI_Q3 -0.10294222273220505f
#define ST_K_PHI_Q4 0.019629476457584574f
#define ST_K_PHI_Q5 -0.00058639226051508949f
#define ST_K_PHI_Q6 -0.0010031384824766994f
#define ST_K_PHI_Q7 0.00029998764975291734f
#define ST_K_PHI_Q8 -3.0388302859388492e-5f

#endif
