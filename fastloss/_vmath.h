/* Vectorizable elementary functions for the fastloss kernels.
 *
 * Why: libm's exp/log/log1p/expm1/tanh are opaque calls, so a loop that uses them runs one
 * element at a time (GCC maps them to vector versions only under -ffast-math, which fastloss
 * never uses because it breaks NaN and infinity handling). These functions are branch-free
 * static inline C: range reduction with bit manipulation and a polynomial, every special case
 * handled with selects, so the compiler inlines them into the kernel loops and vectorises those.
 *
 * Accuracy (float64, checked against mpmath in tests/test_vmath.py): exp, log, log1p, expm1
 * within 2 ulp; tanh within 3 ulp. Exact special values: exp(-inf) = 0, exp(+inf) = inf,
 * overflow to inf past 709.78, gradual underflow to subnormals and 0 below -708.4, log(0) = -inf,
 * log(x < 0) = NaN, log(inf) = inf, log of subnormals, NaN in -> NaN out.
 *
 * Methods (standard, as in fdlibm/Cody-Waite; the code is written here):
 *   exp:   x = k ln2 + r, |r| <= ln2/2, ln2 split in two for an exact reduction; e^r by its Taylor
 *          polynomial to degree 13 (truncation < 2^-57 relative); 2^k applied as two factors so
 *          that k = 1024 and subnormal results scale without intermediate overflow.
 *          k is rounded with the 1.5*2^52 shifter, which needs round-to-nearest (the default).
 *   log:   x = 2^e m, m in [sqrt(2)/2, sqrt(2)); log m = 2 atanh(s), s = (m-1)/(m+1), by its odd
 *          series to s^23 (|s| <= 0.1716, truncation < 2^-60); e ln2 added in two parts.
 *   log1p: u = 1 + x; log1p(x) = log(u) * x / (u - 1), which cancels the rounding of u
 *          (Goldberg, "What every computer scientist should know about floating-point", 1991).
 *   expm1: its Taylor polynomial for |x| < ln2/2, exp(x) - 1 beyond (cancellation <= 2.4x there).
 *   tanh:  -expm1(-2|x|) / (expm1(-2|x|) + 2) with the sign of x.
 */
#ifndef FASTLOSS_VMATH_H
#define FASTLOSS_VMATH_H

#include <stdint.h>
#include <string.h>
#include <math.h>

static inline double fl_from_bits(uint64_t u) { double d; memcpy(&d, &u, sizeof d); return d; }
static inline uint64_t fl_to_bits(double d) { uint64_t u; memcpy(&u, &d, sizeof u); return u; }

#define FL_SHIFTER 6755399441055744.0 /* 1.5 * 2^52: x + S - S rounds x to an integer */
#define FL_LN2_HI 6.93147180369123816490e-01 /* ln 2 with its low 32 bits cleared */
#define FL_LN2_LO 1.90821492927058770002e-10 /* ln 2 - FL_LN2_HI */
#define FL_LOG2E 1.44269504088896338700e+00
#define FL_EXP_HI 709.782712893383973096 /* exp overflows above this */
#define FL_EXP_LO -745.133219101941108420 /* exp is 0 below this */

/* 2^k for an integral double k in [-1022, 1023]: exponent bits built by shifting. */
static inline double fl_pow2i(double k)
{
    uint64_t b = fl_to_bits(k + (1023.0 + FL_SHIFTER));
    return fl_from_bits(b << 52);
}

/* e^r - 1 - r for |r| <= ln2/2 + a little: Taylor terms r^2/2! .. r^13/13!. */
static inline double fl_expm1_poly_tail(double r)
{
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    return p * (r * r);
}

static inline double fl_exp(double x)
{
    /* clamp so the reduction stays in range; the true limits are restored at the end */
    double xc = x > 710.0 ? 710.0 : x;
    xc = xc < -746.0 ? -746.0 : xc;
    double kd = (xc * FL_LOG2E + FL_SHIFTER) - FL_SHIFTER;
    double r = (xc - kd * FL_LN2_HI) - kd * FL_LN2_LO;
    double er = 1.0 + (r + fl_expm1_poly_tail(r));
    /* 2^k = 2^k1 * 2^k2 with both halves in the normal range (k in [-1075, 1025]) */
    double k1 = (kd * 0.5 + FL_SHIFTER) - FL_SHIFTER;
    double k2 = kd - k1;
    double y = (er * fl_pow2i(k1)) * fl_pow2i(k2);
    y = x > FL_EXP_HI ? INFINITY : y;
    y = x < FL_EXP_LO ? 0.0 : y;
    return y;   /* NaN: every comparison is false and NaN flows through */
}

static inline double fl_expm1(double x)
{
    double small = x + fl_expm1_poly_tail(x);
    double big = fl_exp(x) - 1.0;
    return fabs(x) < 0.34657359027997264 ? small : big;
}

static inline double fl_log(double x)
{
    /* subnormals: scale into the normal range first */
    int sub = x < 2.2250738585072014e-308;
    double xs = sub ? x * 18014398509481984.0 : x; /* 2^54 */
    uint64_t u = fl_to_bits(xs);
    /* exponent as a double, through the 2^52 trick: (2^52 + e_field) - 2^52 */
    double e = fl_from_bits((u >> 52) | 0x4330000000000000ULL) - 4503599627370496.0 - 1023.0;
    double m = fl_from_bits((u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL); /* [1, 2) */
    int hi = m > 1.4142135623730951;
    m = hi ? 0.5 * m : m;
    e = hi ? e + 1.0 : e;
    e = sub ? e - 54.0 : e;
    double f = m - 1.0;
    double s = f / (m + 1.0);
    double z = s * s;
    double p = 1.0 / 23.0;
    p = p * z + 1.0 / 21.0;
    p = p * z + 1.0 / 19.0;
    p = p * z + 1.0 / 17.0;
    p = p * z + 1.0 / 15.0;
    p = p * z + 1.0 / 13.0;
    p = p * z + 1.0 / 11.0;
    p = p * z + 1.0 / 9.0;
    p = p * z + 1.0 / 7.0;
    p = p * z + 1.0 / 5.0;
    p = p * z + 1.0 / 3.0;
    /* log m = 2s + 2s z p = f - s f + 2 s z p  (since 2s = f - s f), the usual accurate split */
    double logm = f - s * f + 2.0 * s * z * p;
    double y = e * FL_LN2_HI + (logm + e * FL_LN2_LO);
    y = x == 0.0 ? -INFINITY : y;
    y = x < 0.0 ? NAN : y;
    y = x == INFINITY ? INFINITY : y;
    y = x != x ? x : y;
    return y;
}

static inline double fl_log1p(double x)
{
    double u = 1.0 + x;
    double d = u - 1.0;
    double y = fl_log(u) * (x / (d == 0.0 ? 1.0 : d));
    y = d == 0.0 ? x : y;            /* |x| below half an ulp of 1: log1p(x) = x */
    y = x == INFINITY ? INFINITY : y;
    return y;
}

static inline double fl_tanh(double x)
{
    double t = fl_expm1(-2.0 * fabs(x));
    return copysign(-t / (t + 2.0), x);
}

#endif
