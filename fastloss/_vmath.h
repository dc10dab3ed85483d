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
 *          The AVX2 + FMA kernels use a 128-entry table instead (fl_log_core, below: no
 *          division, a degree-8 polynomial; within 0.62 ulp where the series is within 1.5).
 *   log1p: u = 1 + x; log1p(x) = log(u) * x / (u - 1), which cancels the rounding of u
 *          (Goldberg, "What every computer scientist should know about floating-point", 1991).
 *   expm1: the same reduction and polynomial q = e^r - 1, then (2^k - 1) + 2^k q (for |x| < ln2/2,
 *          k = 0 and q itself; elsewhere cancellation <= 2.4x). One polynomial, like exp.
 *   The polynomials of exp, log and log1p_unit are evaluated by Estrin's scheme (fl_log_series).
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

/* e^r - 1 - r for |r| <= ln2/2 + a little: Taylor terms r^2/2! .. r^13/13!, by Estrin's
 * scheme (pairs, then pairs of pairs; see fl_log_series). */
static inline double fl_expm1_poly_tail(double r)
{
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double a0 = 0.5 + r * (1.0 / 6.0);
    double a1 = 1.0 / 24.0 + r * (1.0 / 120.0);
    double a2 = 1.0 / 720.0 + r * (1.0 / 5040.0);
    double a3 = 1.0 / 40320.0 + r * (1.0 / 362880.0);
    double a4 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0);
    double a5 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0);
    double b0 = a0 + r2 * a1, b1 = a2 + r2 * a3, b2 = a4 + r2 * a5;
    return ((b0 + r4 * b1) + r8 * b2) * r2;
}

/* 1/3 + z/5 + z^2/7 + ... + z^10/23 (the atanh series of the logs), by Estrin's scheme.
 * Why Estrin and not Horner: a loss's loop body chains several such polynomials (exp, then
 * a log of its result), and Horner's chain of 11-12 dependent FMAs per polynomial makes the
 * loop latency-bound (the out-of-order window holds about two iterations). Estrin's chain is
 * 5 deep for a few more multiplications: measured 7.7 -> 5.6 ns per element for exp then
 * log1p, AVX2, one core (a C loop; tests/test_vmath.py checks the accuracy is unchanged). */
static inline double fl_log_series(double z)
{
    double z2 = z * z, z4 = z2 * z2, z8 = z4 * z4;
    double a0 = 1.0 / 3.0 + z * (1.0 / 5.0);
    double a1 = 1.0 / 7.0 + z * (1.0 / 9.0);
    double a2 = 1.0 / 11.0 + z * (1.0 / 13.0);
    double a3 = 1.0 / 15.0 + z * (1.0 / 17.0);
    double a4 = 1.0 / 19.0 + z * (1.0 / 21.0);
    double b0 = a0 + z2 * a1, b1 = a2 + z2 * a3, b2 = a4 + z2 * (1.0 / 23.0);
    return (b0 + z4 * b1) + z8 * b2;
}

/* x = k ln2 + r, |r| <= ln2/2 (ln2 split in two for an exact reduction); returns
 * q = e^r - 1 and sets *kd = k. x is clamped to [-746, 710] first, so the reduction stays in
 * range; callers restore the true limits. */
static inline double fl_exp_reduce(double x, double *kd)
{
    double xc = x > 710.0 ? 710.0 : x;
    xc = xc < -746.0 ? -746.0 : xc;
    double k = (xc * FL_LOG2E + FL_SHIFTER) - FL_SHIFTER;
    double r = (xc - k * FL_LN2_HI) - k * FL_LN2_LO;
    *kd = k;
    return r + fl_expm1_poly_tail(r);
}

/* v 2^k for k in [-1075, 1025], as 2^k1 2^k2 with both halves in the normal range, so that
 * k = 1024 and subnormal results scale without intermediate overflow. */
static inline double fl_scale2(double v, double kd)
{
    double k1 = (kd * 0.5 + FL_SHIFTER) - FL_SHIFTER;
    double k2 = kd - k1;
    return (v * fl_pow2i(k1)) * fl_pow2i(k2);
}

static inline double fl_exp(double x)
{
    double kd;
    double q = fl_exp_reduce(x, &kd);
    double y = fl_scale2(1.0 + q, kd);
    y = x > FL_EXP_HI ? INFINITY : y;
    y = x < FL_EXP_LO ? 0.0 : y;
    return y;   /* NaN: every comparison is false and NaN flows through */
}

/* e^x for x <= 0 (and NaN), and *m = e^x - 1 from the same reduction: the reduction's own
 * q = e^r - 1 where k = 0 (|x| < ln2/2, r = x exactly: no cancellation, and no second
 * polynomial), else e^x - 1 (at most -0.29: no cancellation either). For log-cosh, which
 * needs both (an expm1 beside the exp had cost it a tenth of its time). */
static inline double fl_exp_m1_nonpos(double x, double *m)
{
    double kd;
    double q = fl_exp_reduce(x, &kd);
    double y = fl_scale2(1.0 + q, kd);
    y = x < FL_EXP_LO ? 0.0 : y;
    *m = kd == 0.0 ? q : y - 1.0;
    return y;   /* NaN: every comparison is false and NaN flows through */
}

/* exp(x) to about 1e-8 relative (float32 results: a sixth of a float32 ulp), for x <= 709,
 * in about half the operations of fl_exp: one-constant reduction x = k ln2 + r (the rounding
 * of k ln2 costs at most 1e-13 relative), e^r by its Taylor polynomial to degree 7 (truncation
 * < 7e-9 relative for |r| <= ln2/2) by Estrin's scheme, 2^k by one factor. Results below
 * e^-708 (about 3e-308) are 0: no subnormals, which no float32 result could hold anyway.
 * exp(-inf) = 0; NaN in -> NaN out. For kernels whose results are rounded to float32. */
static inline double fl_exp_lp(double x)
{
    double xc = x < -708.0 ? -708.0 : x;
    double k = (xc * FL_LOG2E + FL_SHIFTER) - FL_SHIFTER;
    double r = xc - k * 6.93147180559945309417e-01;
    double r2 = r * r, r4 = r2 * r2;
    double a0 = 1.0 + r;
    double a1 = 0.5 + r * (1.0 / 6.0);
    double a2 = 1.0 / 24.0 + r * (1.0 / 120.0);
    double a3 = 1.0 / 720.0 + r * (1.0 / 5040.0);
    double p = (a0 + r2 * a1) + r4 * (a2 + r2 * a3);
    double y = p * fl_pow2i(k);
    return x < -708.0 ? 0.0 : y;  /* NaN: the comparisons are false and NaN flows through */
}

/* expm1(x) = (2^k - 1) + 2^k q from the same reduction: q itself for |x| < ln2/2 (k = 0,
 * r = x exactly: no cancellation), and a sum cancelling by at most a factor 2.4 otherwise;
 * e^x - 1 = e^x for k > 60 (overflowing like exp), -1 for k < -60. One polynomial. */
static inline double fl_expm1(double x)
{
    double kd;
    double q = fl_exp_reduce(x, &kd);
    double kc = kd > 60.0 ? 60.0 : (kd < -60.0 ? -60.0 : kd);
    double p2 = fl_pow2i(kc);
    double m = (p2 - 1.0) + p2 * q;
    m = kd > 60.0 ? fl_scale2(1.0 + q, kd) : m;
    m = kd < -60.0 ? -1.0 : m;
    m = x > FL_EXP_HI ? INFINITY : m;
    return x == 0.0 ? x : m;    /* expm1(-0) = -0; NaN flows through */
}

/* k ln2 + log(1 + f) for |f| <= sqrt(2) - 1 (f = m - 1 of x = 2^k m), the common end of fl_log
 * and fl_log1p_unit: log(1 + f) = 2 atanh(s), s = f / (2 + f), by its odd series (Estrin,
 * fl_log_series: Horner's chain of 11 dependent FMAs made the deviances latency-bound; the
 * worst error stays 2 ulp, and Poisson's and Gamma's loss+gradient+hessian went 8.9 -> 7.7 and
 * 9.5 -> 8.0 ns, AVX2, one core), with log m = 2s + 2s z p = f - s f + 2s z p (since
 * 2s = f - s f), the usual accurate split, and k ln2 added in two parts. */
static inline double fl_log_parts(double f, double k)
{
    double s = f / (2.0 + f);
    double z = s * s;
    double logm = f - s * f + 2.0 * s * z * fl_log_series(z);
    return k * FL_LN2_HI + (logm + k * FL_LN2_LO);
}

/* log(1 + f) = 2 atanh(s), from s = f / (2 + f) itself (|s| <= 0.172, as fl_log_parts): for
 * callers that form s without a division of their own (log-cosh shares one reciprocal between
 * s and tanh). 2s + 2s z P(z), without fl_log_parts' split of f, so the result keeps s's
 * relative error plus about an ulp. */
static inline double fl_log_atanh(double s)
{
    double z = s * s;
    return 2.0 * s + 2.0 * s * z * fl_log_series(z);
}

#if defined(__AVX2__) && defined(__FMA__)
/* log on the AVX2 + FMA kernels (and the AVX-512 ones): a table of 128 subintervals instead of
 * the division and the
 * 11-term series. x = 2^k z, z in [OFF, 2 OFF) (OFF just below 0.6875), the subinterval i from
 * the top 7 bits of z's mantissa above OFF, then
 *     log x = k ln2 + logc_i + log1p(r),   r = z invc_i - 1 (one FMA: rounded once, |r| < 0.0041),
 * invc_i near 1/(the subinterval's centre), logc_i = -log(invc_i) (scripts/gen_log_table.py
 * picks invc_i so that logc_i rounds by under 0.001 ulp; the subinterval of 1 has invc = 1,
 * logc = 0, so near x = 1 nothing cancels). log1p(r) = r + r^2 P(r), P to r^6 (truncation
 * < 3e-19 relative), and k ln2 + logc + r summed with their rounding errors kept (Fast2Sum).
 * The two table reads become gathers; SSE2 and NEON have none, so those kernels keep the
 * series. Within 1 ulp of mpmath (0.62 seen; test_log_table_within_one_ulp), where
 * the series reaches 1.5; C loop, AVX2, 1e5 values: 1.35 against 2.22 ns per log (AMD Zen 3). */
#include "_vmath_logtab.h"
#define FL_LOG_TABLE 1
/* xs = 2^k z, z in [OFF, 2 OFF): returns z; sets the subinterval *i, *k = k + kadj, and *kbits
 * = k's bits in the exponent field (2^-k is 1.0's bits minus them) */
static inline double fl_log_tab_reduce(double xs, double kadj, uint64_t *i, double *k,
                                       uint64_t *kbits)
{
    uint64_t ix = fl_to_bits(xs);
    uint64_t tmp = ix - FL_LOG_OFF;
    *i = (tmp >> (52 - FL_LOG_BITS)) & ((1u << FL_LOG_BITS) - 1u);
    *kbits = tmp & (0xfffULL << 52);
    /* k = tmp >> 52 as a signed 12-bit value, made a double through the 2^52 trick */
    *k = fl_from_bits((((tmp >> 52) & 0xfffULL) ^ 0x800ULL) | 0x4330000000000000ULL)
         - (4503599627370496.0 + 2048.0) + kadj;
    return fl_from_bits(ix - *kbits);
}

/* k ln2 + logc_i + log1p(r) */
static inline double fl_log_tab_sum(double k, uint64_t i, double r)
{
    double logc = fl_log_logc[i];
    double kl = k * FL_LN2_HI;                       /* exact: FL_LN2_HI has 21 bits */
    double w = kl + logc;
    double we = (kl - w) + logc;                     /* its rounding error (|kl| >= |logc| or kl = 0) */
    double hi = w + r;
    double lo = ((w - hi) + r) + (we + k * FL_LN2_LO);
    double r2 = r * r, r4 = r2 * r2;
    double p = ((-0.5 + r * (1.0 / 3.0)) + r2 * (-0.25 + r * 0.2))
               + r4 * ((-1.0 / 6.0 + r * (1.0 / 7.0)) + r2 * (-0.125));
    return hi + (lo + r2 * p);
}

static inline double fl_log_core(double xs, double kadj)
{
    uint64_t i, kbits;
    double k;
    double z = fl_log_tab_reduce(xs, kadj, &i, &k, &kbits);
    return fl_log_tab_sum(k, i, fma(z, fl_log_invc[i], -1.0));
}
#endif

/* The two ends every log shares, around its reduction of a positive normal x: subnormals
 * scaled by 2^54 first (*kadj = -54 then, the exponent's correction), and the special values
 * by selects. */
static inline double fl_log_scaled(double x, double *kadj)
{
    int sub = x < 2.2250738585072014e-308;
    *kadj = sub ? -54.0 : 0.0;
    return sub ? x * 18014398509481984.0 : x;  /* 2^54 */
}

static inline double fl_log_specials(double x, double y)
{
    y = x == 0.0 ? -INFINITY : y;
    y = x < 0.0 ? NAN : y;
    y = x == INFINITY ? INFINITY : y;
    return x != x ? x : y;
}

/* The series reduction: x = 2^e m, m in [sqrt(2)/2, sqrt(2)), then fl_log_parts. */
static inline double fl_log_series_core(double xs, double kadj)
{
    uint64_t u = fl_to_bits(xs);
    /* exponent as a double, through the 2^52 trick: (2^52 + e_field) - 2^52 */
    double e = fl_from_bits((u >> 52) | 0x4330000000000000ULL) - 4503599627370496.0 - 1023.0;
    double m = fl_from_bits((u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL); /* [1, 2) */
    int hi = m > 1.4142135623730951;
    m = hi ? 0.5 * m : m;
    e = hi ? e + 1.0 : e;
    return fl_log_parts(m - 1.0, e + kadj);
}

/* log by the series on every build. The float32 mixed-precision kernels (log of a float32
 * y_true in float64) use it with AVX2 and AVX-512 too: with their 16 elements per step the
 * table's gathers made them 4-6% slower on AVX2 (Poisson, Gamma, Tweedie; AMD Zen 3), 7-12%
 * on AVX-512 (Poisson float32 1.69 against 1.51 ns per element; Zen 5), where the float64
 * kernels gain. */
static inline double fl_log_by_series(double x)
{
    double kadj, xs = fl_log_scaled(x, &kadj);
    return fl_log_specials(x, fl_log_series_core(xs, kadj));
}

static inline double fl_log(double x)
{
#ifdef FL_LOG_TABLE
    double kadj, xs = fl_log_scaled(x, &kadj);
    return fl_log_specials(x, fl_log_core(xs, kadj));
#else
    return fl_log_by_series(x);
#endif
}

/* log for the loops that take two per element (BCE and focal from probabilities: log c and
 * log(1 - c)). On the AVX-512 kernels the series, whose division pipelines, beats the table's
 * four 8-wide gathers per step: BCE from probabilities float64 1.79 against 2.22 ns per
 * element (1e5, one thread, AMD Zen 5), where Poisson and Gamma (one log) gain 4% from the
 * table. Elsewhere fl_log. */
static inline double fl_log_pair(double x)
{
#if defined(__AVX512F__)
    return fl_log_by_series(x);
#else
    return fl_log(x);
#endif
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

/* log1p(x) for x in [-0.6, 1] (NaN propagates; outside that range the result is wrong): the
 * common case of the losses (log1p of e^{-|z|}, of -tanh^2, of a probability), with none of
 * the general function's special cases. 1 + x = 2^k m with k in {-1, 0, 1} chosen by
 * comparing u = 1 + x, and f = m - 1 formed from x itself, exactly or nearly (x for k = 0,
 * (x - 1)/2 for k = 1, 2x + 1 for k = -1), so no bits of x are lost to the rounding of 1 + x;
 * then the log series of fl_log. One division, no bit manipulation. */
static inline double fl_log1p_unit_by_series(double x)
{
    double u = 1.0 + x;
    double f = u > 1.4142135623730951 ? (x - 1.0) * 0.5 : x;
    f = u < 0.7071067811865476 ? 2.0 * x + 1.0 : f;
    double k = u > 1.4142135623730951 ? 1.0 : (u < 0.7071067811865476 ? -1.0 : 0.0);
    double y = fl_log_parts(f, k);
    return x == 0.0 ? x : y;                        /* log1p(-0) = -0 */
}

/* log1p(x) for x in [-0.6, 1] (as fl_log1p_unit_by_series): on the AVX2 and AVX-512 kernels
 * by the log table, with no division. u = 1 + x rounds, and its error d = (1 - u) + x is exact
 * (Fast2Sum, |x| <= 1); log(u + d) is the table's log of u with d added to r, scaled like u.
 * Within 1 ulp of mpmath (0.67 seen; test_log1p_unit_table_within_one_ulp), where the
 * series reaches 1.5. Log-cosh takes neither: it shares one division between its tanh and
 * its log1p (fl_log_atanh); with the table its loop had been 6% slower than with the series
 * (AVX2) and 23% (AVX-512). */
static inline double fl_log1p_unit(double x)
{
#ifdef FL_LOG_TABLE
    double u = 1.0 + x;
    double d = (1.0 - u) + x;
    uint64_t i, kbits;
    double k;
    double z = fl_log_tab_reduce(u, 0.0, &i, &k, &kbits);
    double invc = fl_log_invc[i];
    /* r of u + d: d scaled like z, by 2^-k */
    double r = fma(z, invc, -1.0) + (d * fl_from_bits(0x3ff0000000000000ULL - kbits)) * invc;
    /* log1p(x) has the sign of x: copysign gives log1p(-0) = -0 */
    return copysign(fl_log_tab_sum(k, i, r), x);
#else
    return fl_log1p_unit_by_series(x);
#endif
}

static inline double fl_tanh(double x)
{
    double t = fl_expm1(-2.0 * fabs(x));
    return copysign(-t / (t + 2.0), x);
}


/* ---------------------------------------------------------------------------------------------
 * Float32 versions, for the kernels that compute float32 data in float32 arithmetic (8 lanes
 * per AVX2 vector instead of 4, and shorter polynomials). Only the functions those kernels need,
 * over the ranges they use; accuracy checked against mpmath in tests/test_vmath.py.
 *   expf_nonpos:  exp(x) for x <= 0 (and -inf, NaN): within 2 float32 ulp, gradual underflow to
 *                 subnormals and 0 (below about -103.97). Same reduction as fl_exp with ln 2
 *                 split into a 9-bit high part (k ln2_hi is exact for |k| < 2^15), e^r by its
 *                 Taylor polynomial to degree 7 (truncation < 6e-9 relative), 2^k applied as two
 *                 factors: 2^max(k, -125) first (exact: the product stays normal) then the rest,
 *                 so a subnormal result is rounded once.
 *   log1p_unitf:  log1p(x) for x in [-0.6, 1], as fl_log1p_unit with the atanh series to s^9
 *                 (truncation < 3e-9 relative); within 2 float32 ulp.
 *   logf_normal:  log(x) for positive normal x, the same series after the exponent split.
 *   expm1f_tail:  e^r - 1 - r for |r| <= 0.35 (Taylor terms r^2/2! .. r^7/7!), within 4 ulp;
 *                 added to r, which is at least 3 times larger, it gives expm1 within about 2.
 *   expf:         exp(x) for every x, as expf_nonpos, with overflow to inf above about 88.72.
 *   expm1mxf_poly: e^r - 1 - r for |r| <= 1 (to r^10/10!), within 2.5 ulp.
 */
static inline float fl_from_bits_f(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static inline uint32_t fl_to_bits_f(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }

#define FLF_SHIFTER 12582912.0f /* 1.5 * 2^23: x + S - S rounds x to an integer */

/* 2^k for an integral float k in [-126, 127]: exponent bits built by shifting. */
static inline float fl_pow2if(float k)
{
    uint32_t b = fl_to_bits_f(k + (127.0f + FLF_SHIFTER));
    return fl_from_bits_f(b << 23);
}

static inline float fl_expm1f_poly_tail(float r)
{
    float r2 = r * r, r4 = r2 * r2;
    float a0 = 0.5f + r * (1.0f / 6.0f);
    float a1 = 1.0f / 24.0f + r * (1.0f / 120.0f);
    float a2 = 1.0f / 720.0f + r * (1.0f / 5040.0f);
    return ((a0 + r2 * a1) + r4 * a2) * r2;
}

/* x = k ln2 + r (ln 2 split into a 9-bit high part: k ln2_hi is exact for |k| < 2^15);
 * returns e^r - 1 and sets *k. x must already be clamped to [-110, 89]. */
static inline float fl_expf_reduce_m1(float x, float *k)
{
    float kf = (x * 1.44269504088896341f + FLF_SHIFTER) - FLF_SHIFTER;
    float r = (x - kf * 0.693359375f) - kf * -2.12194440054690583e-4f;
    *k = kf;
    return r + fl_expm1f_poly_tail(r);
}

/* the same, returning e^r */
static inline float fl_expf_reduce(float x, float *k)
{
    return 1.0f + fl_expf_reduce_m1(x, k);
}

/* e^x for x <= 0 (and NaN) in float32, and *m = e^x - 1 from the same reduction (as
 * fl_exp_m1_nonpos: the reduction's own e^r - 1 where k = 0, else e^x - 1) */
static inline float fl_expf_m1_nonpos(float x, float *m)
{
    float k;
    float xc = x < -110.0f ? -110.0f : x;       /* e^-110 rounds to 0; NaN stays NaN */
    float q = fl_expf_reduce_m1(xc, &k);
    float k1 = k < -125.0f ? -125.0f : k;
    float y = ((1.0f + q) * fl_pow2if(k1)) * fl_pow2if(k - k1);
    *m = k == 0.0f ? q : y - 1.0f;
    return y;
}

/* e^x for x <= 0: the same, its e^x - 1 unused (the compiler drops it) */
static inline float fl_expf_nonpos(float x)
{
    float m;
    return fl_expf_m1_nonpos(x, &m);
}

/* e^x for every float32 x: fl_expf_nonpos's method, with x also clamped at 89 (e^89
 * overflows float32) and 2^k split as 2^min(k, 127) 2^(k - 127) at the top, so that results
 * just below FLT_MAX are finite and larger ones overflow to inf. */
static inline float fl_expf(float x)
{
    float k;
    float xc = x > 89.0f ? 89.0f : x;           /* NaN stays NaN */
    xc = xc < -110.0f ? -110.0f : xc;
    float p = fl_expf_reduce(xc, &k);
    float k1 = k < -125.0f ? -125.0f : (k > 127.0f ? 127.0f : k);
    return (p * fl_pow2if(k1)) * fl_pow2if(k - k1);
}

/* e^r - 1 - r for |r| <= 1: Taylor terms r^2/2! .. r^10/10! (truncation < 3e-8 of the
 * result), by Estrin's scheme; within 2.5 float32 ulp (the terms alternate for r < 0 and cancel
 * by at most a factor 2). For the deviances near their minimum, where the direct form cancels. */
static inline float fl_expm1mxf_poly(float r)
{
    float r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    float a0 = r * (1.0f / 6.0f);
    float a1 = 1.0f / 24.0f + r * (1.0f / 120.0f);
    float a2 = 1.0f / 720.0f + r * (1.0f / 5040.0f);
    float a3 = 1.0f / 40320.0f + r * (1.0f / 362880.0f);
    float b0 = a0 + r2 * a1, b1 = a2 + r2 * a3;
    /* the leading term r^2/2 apart (exact but for the rounding of r^2): the rest is at most a
     * third of it, so its rounding errors count a third */
    return 0.5f * r2 + ((b0 + r4 * b1) + r8 * (1.0f / 3628800.0f)) * r2;
}

/* 1/3 + z/5 + z^2/7 + z^3/9 by Estrin's scheme (the atanh series of log1p_unitf) */
static inline float fl_logf_series(float z)
{
    return (1.0f / 3.0f + z * (1.0f / 5.0f)) + (z * z) * (1.0f / 7.0f + z * (1.0f / 9.0f));
}

/* k ln2 + log(1 + f) for |f| <= sqrt(2) - 1, in float32: fl_log_parts with the shorter series */
static inline float fl_logf_parts(float f, float k)
{
    float s = f / (2.0f + f);
    float z = s * s;
    float logm = f - s * f + 2.0f * s * z * fl_logf_series(z);
    return k * 0.693359375f + (logm + k * -2.12194440054690583e-4f);
}

/* fl_log_atanh in float32, with the shorter series */
static inline float fl_logf_atanh(float s)
{
    float z = s * s;
    return 2.0f * s + 2.0f * s * z * fl_logf_series(z);
}

/* log(x) for positive normal float32 x (and NaN): x = 2^e m, m in [sqrt(2)/2, sqrt(2)), then
 * the series of log1p_unitf on f = m - 1; within 2 float32 ulp. For the clipped probabilities
 * of the float32-arithmetic kernels (x >= 2^-23): no subnormal, zero, negative or infinite x. */
static inline float fl_logf_normal(float x)
{
    uint32_t u = fl_to_bits_f(x);
    float e = (float)(int32_t)(u >> 23) - 127.0f;
    float m = fl_from_bits_f((u & 0x007fffffu) | 0x3f800000u);   /* [1, 2) */
    int hi = m > 1.41421356f;
    m = hi ? 0.5f * m : m;
    e = hi ? e + 1.0f : e;
    float y = fl_logf_parts(m - 1.0f, e);
    return x != x ? x : y;
}

static inline float fl_log1p_unitf(float x)
{
    float u = 1.0f + x;
    float f = u > 1.41421356f ? (x - 1.0f) * 0.5f : x;
    f = u < 0.707106781f ? 2.0f * x + 1.0f : f;
    float k = u > 1.41421356f ? 1.0f : (u < 0.707106781f ? -1.0f : 0.0f);
    float y = fl_logf_parts(f, k);
    return x == 0.0f ? x : y;                       /* log1p(-0) = -0 */
}

#endif
