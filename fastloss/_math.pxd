# cython: language_level=3
"""Numerically stable scalar math shared by every kernel family.

Every function here is ``inline noexcept nogil`` so that it disappears into the kernel loops.
Most work in float64 (float32 inputs are widened, so their per-element math is exact to float32
rounding). The few written over the fused type ``real`` compute in the arithmetic of their
argument: float64 as the others, or float32 with the float32 functions of ``_vmath.h``, for the
losses whose float32 kernels compute in float32 (see ``_elementwise.tpi``, ``NATIVE32``). The elementary functions ``exp``, ``expm1``, ``log``, ``log1p`` and ``tanh`` are
fastloss's own branch-free versions from ``_vmath.h`` (a few ulp, exact special values), which the
compiler vectorises inside the kernel loops where libm calls would run one element at a time.
Each helper says where its cut-offs come from; the tests check the losses built on them against
mpmath at the cut-offs and at the extremes.
"""

from libc.math cimport fabs, sqrt, copysign, INFINITY, NAN

cdef extern from "_vmath.h":
    double exp "fl_exp"(double) noexcept nogil
    double expm1 "fl_expm1"(double) noexcept nogil
    double log "fl_log"(double) noexcept nogil
    # the same log without the AVX2 and AVX-512 builds' table (the float32 mixed-precision
    # kernels: its gathers made them slower)
    double log_by_series "fl_log_by_series"(double) noexcept nogil
    double log1p "fl_log1p"(double) noexcept nogil
    # for two logs per element: the series on AVX-512 (fewer gathers), else log
    double log_pair "fl_log_pair"(double) noexcept nogil
    double tanh "fl_tanh"(double) noexcept nogil
    # log1p for arguments in [-0.6, 1] only (a probability, e^{-|z|}, -tanh^2): a third cheaper
    double log1p_unit "fl_log1p_unit"(double) noexcept nogil
    # 2 atanh(s) = log1p(f) from s = f / (2 + f), |s| <= 0.172 (log-cosh)
    double log_atanh "fl_log_atanh"(double) noexcept nogil
    # exp to about 1e-8 relative for x <= 709 (0 below e^-708): for results rounded to float32
    double exp_lp "fl_exp_lp"(double) noexcept nogil
    # e^x for x <= 0 and, from the same reduction, *m = e^x - 1 (log-cosh)
    double exp_m1_nonpos "fl_exp_m1_nonpos"(double, double*) noexcept nogil
    # float32 arithmetic (8 lanes per AVX2 vector), within 2 float32 ulp: exp for x <= 0 (and
    # its e^x - 1 as above), log1p for x in [-0.6, 1]
    float expf_nonpos "fl_expf_nonpos"(float) noexcept nogil
    float expf_m1_nonpos "fl_expf_m1_nonpos"(float, float*) noexcept nogil
    float log1p_unitf "fl_log1p_unitf"(float) noexcept nogil
    float logf_normal "fl_logf_normal"(float) noexcept nogil
    float logf_atanh "fl_logf_atanh"(float) noexcept nogil
    # float32 exp for every x, and e^r - 1 - r for |r| <= 1 (the deviances' mixed kernels)
    float fl_expf(float) noexcept nogil
    float expm1mxf_poly "fl_expm1mxf_poly"(float) noexcept nogil

cdef extern from "<math.h>":
    float fabsf(float) noexcept nogil
    float copysignf(float, float) noexcept nogil
    float sqrtf(float) noexcept nogil

ctypedef fused real:
    # the arithmetic of the helpers below: that of their argument
    float
    double


cdef inline real rabs(real x) noexcept nogil:
    if real is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline real rcopysign(real x, real s) noexcept nogil:
    if real is float:
        return copysignf(x, s)
    else:
        return copysign(x, s)


cdef inline real rexp_nonpos(real x) noexcept nogil:
    """e^x for x <= 0 (also -inf and NaN); float64: ``fl_exp``."""
    if real is float:
        return expf_nonpos(x)
    else:
        return exp(x)


cdef inline real rlog1p_unit(real x) noexcept nogil:
    """log1p(x) for x in [-0.6, 1] (see ``log1p_unit``)."""
    if real is float:
        return log1p_unitf(x)
    else:
        return log1p_unit(x)


cdef inline real rlog_atanh(real s) noexcept nogil:
    """log1p(f) = 2 atanh(s) from s = f / (2 + f), |s| <= 0.172 (see ``log_atanh``)."""
    if real is float:
        return logf_atanh(s)
    else:
        return log_atanh(s)


cdef inline real rlog_normal(real x) noexcept nogil:
    """log(x) for positive normal x (and NaN), in loops taking two logs per element: float32
    ``fl_logf_normal``; float64 ``fl_log_pair``."""
    if real is float:
        return logf_normal(x)
    else:
        return log_pair(x)


cdef inline real rexp_m1_nonpos(real x, real* m) noexcept nogil:
    """e^x for x <= 0 (also -inf and NaN), and e^x - 1 into ``m`` from the same reduction
    (see ``exp_m1_nonpos``)."""
    if real is float:
        return expf_m1_nonpos(x, m)
    else:
        return exp_m1_nonpos(x, m)


cdef inline bint isnan(double x) noexcept nogil:
    return x != x

cdef extern from *:
    """
    #define FASTLOSS_LN2 0.693147180559945309417232121458176568
    #define FASTLOSS_LN2F_HI 0.693359375f
    #define FASTLOSS_LN2F_LO -2.12194440054690583e-4f
    """
    double LN2 "FASTLOSS_LN2"
    # log 2 in two parts (high part with its low bits clear), float64 and float32
    double LN2_HI "FL_LN2_HI"
    double LN2_LO "FL_LN2_LO"
    float LN2F_HI "FASTLOSS_LN2F_HI"
    float LN2F_LO "FASTLOSS_LN2F_LO"


cdef inline real rplus_minus_ln2(real a, real b) noexcept nogil:
    """a + b - log 2, with log 2 in two parts: exact where a - log 2 cancels (Sterbenz's lemma
    for a in [log2 / 2, 2 log 2])."""
    if real is float:
        return (a - LN2F_HI) + (b - LN2F_LO)
    else:
        return (a - LN2_HI) + (b - LN2_LO)


ctypedef struct Deriv:
    # One element's loss and its first and second derivative with respect to y_pred.
    # Kernels that do not use a field let the compiler drop the code computing it.
    double loss
    double grad
    double hess


cdef inline real rsign(real x) noexcept nogil:
    """-1, 0 or 1; NaN for NaN (a subgradient of |x| that is 0 at 0)."""
    cdef real one = 1, zero = 0
    if x > 0:
        return one
    if x < 0:
        return -one
    return x * zero  # 0 for +-0, NaN for NaN


cdef inline double sign(double x) noexcept nogil:
    """:func:`rsign` in float64."""
    return rsign(x)


cdef inline double log1pexp(double x) noexcept nogil:
    """log(1 + exp(x)) without overflow.

    Cut-offs from M. Maechler, "Accurately computing log(1 - exp(-|a|))" (Rmpfr vignette, 2012),
    eq. (10): below -37 exp(x) is the answer to double precision, above 33.3 x + exp(-x) is.
    """
    if x <= -37.0:
        return exp(x)
    if x <= 18.0:
        return log1p(exp(x))
    if x <= 33.3:
        return x + exp(-x)
    return x


cdef inline double logcosh(double x) noexcept nogil:
    """log(cosh x) without overflow and without cancellation near 0.

    |x| <= 2: log1p(cosh x - 1) with cosh x - 1 = m^2 / (2 (m + 1)), m = expm1(|x|), exact to a
    few ulp down to subnormal x (the naive log(cosh x) loses everything below 1e-8).
    |x| > 2: |x| + log1p(exp(-2|x|)) - log 2, which cannot overflow and cancels by at most a
    factor 1.6 there.
    """
    cdef double a = fabs(x)
    cdef double m
    if a <= 2.0:
        m = expm1(a)
        return log1p(m * m / (2.0 * (m + 1.0)))
    return a + log1p(exp(-2.0 * a)) - LN2


cdef inline double sech2(double x) noexcept nogil:
    """1 - tanh(x)^2 computed as 4 e^{-2|x|} / (1 + e^{-2|x|})^2: no cancellation for large |x|."""
    cdef double t = exp(-2.0 * fabs(x))
    return 4.0 * t / ((1.0 + t) * (1.0 + t))


cdef inline void expf_split(double u, bint tails, float* e, float* m, float* tail) noexcept nogil:
    """e^u in float32 from a float64 exponent u, and when asked m = e^u - 1 and t = e^u - 1 - u.

    u = uf + ur with uf its float32 rounding and ur the rest: e^u = e^uf (1 + ur) (the rounding
    alone would cost |u| float32 ulp, 5e-6 at u = 88). For |uf| < 1, m and t come from the
    series of e^uf - 1 - uf with the rest's first-order term (no cancellation); beyond, from
    e^u - 1 (cancels by at most 1.6x) and e^u - 1 - u (by at most 3.8x). Infinite u: rest 0,
    and t = +inf at u = +inf. For the mixed-precision float32 kernels (Gamma, Tweedie), whose
    exponents come from a float64 log.
    """
    cdef float one = 1
    cdef float uf = <float>u
    cdef float ur = <float>(u - <double>uf)
    ur = ur if ur == ur else <float>0
    cdef float ef = fl_expf(uf)
    cdef float poly
    cdef bint small
    e[0] = ef * (one + ur)
    if tails:
        poly = expm1mxf_poly(uf)
        small = fabsf(uf) < one
        tail[0] = poly + (uf + poly) * ur if small else ((e[0] - one) - uf) - ur
        tail[0] = e[0] if e[0] == INFINITY else tail[0]     # u = +inf: not inf - inf
        m[0] = (uf + poly) + ef * ur if small else e[0] - one


cdef inline double expm1mx_poly(double x) noexcept nogil:
    """exp(x) - 1 - x for |x| <= 1: Taylor terms x^2/2! .. x^19/19! (truncation < 2e-17 relative).

    By Estrin's scheme (pairs of terms, then pairs of pairs), for the short dependency chain
    that keeps a loop holding it and an exp from being latency-bound (see ``_vmath.h``).
    """
    cdef double x2 = x * x
    cdef double x4 = x2 * x2
    cdef double x8 = x4 * x4
    cdef double x16 = x8 * x8
    cdef double a0 = 1.0 / 2.0 + x * (1.0 / 6.0)
    cdef double a1 = 1.0 / 24.0 + x * (1.0 / 120.0)
    cdef double a2 = 1.0 / 720.0 + x * (1.0 / 5040.0)
    cdef double a3 = 1.0 / 40320.0 + x * (1.0 / 362880.0)
    cdef double a4 = 1.0 / 3628800.0 + x * (1.0 / 39916800.0)
    cdef double a5 = 1.0 / 479001600.0 + x * (1.0 / 6227020800.0)
    cdef double a6 = 1.0 / 87178291200.0 + x * (1.0 / 1307674368000.0)
    cdef double a7 = 1.0 / 20922789888000.0 + x * (1.0 / 355687428096000.0)
    cdef double a8 = 1.0 / 6402373705728000.0 + x * (1.0 / 121645100408832000.0)
    cdef double b0 = a0 + x2 * a1
    cdef double b1 = a2 + x2 * a3
    cdef double b2 = a4 + x2 * a5
    cdef double b3 = a6 + x2 * a7
    cdef double c0 = b0 + x4 * b1
    cdef double c1 = b2 + x4 * b3
    return ((c0 + x8 * c1) + x16 * a8) * x2


cdef inline double expm1mx(double x) noexcept nogil:
    """exp(x) - 1 - x, accurate near 0 where the direct form cancels.

    |x| < 1: the Taylor polynomial; beyond, expm1(x) - x cancels by at most a factor 3.8.
    The limits are exact: +inf at both +inf (not inf - inf) and -inf.
    """
    if fabs(x) < 1.0:
        return expm1mx_poly(x)
    return x if x == INFINITY else expm1(x) - x


ctypedef struct Exp2:
    # The shared part of sums c1 e^{u1} + c2 e^{u2} over one pair (u1, u2): with M = max(u1, u2),
    # c1 e^{u1} + c2 e^{u2} = e^M (c1 w1 + c2 w2), one of w1, w2 being 1, the other e^{-|u1-u2|}.
    double em
    double w1
    double w2


cdef inline Exp2 exp2_frame(double u1, double u2) noexcept nogil:
    """The factors of :func:`sum2exp` for exponents ``u1, u2``: two exps for any number of sums.

    Branch-free (selects), so loops using it vectorise. ``u1 == u2`` (both infinite included)
    gives equal weights 1, not exp(inf - inf) = NaN.
    """
    cdef Exp2 f
    cdef bint first = u1 >= u2
    cdef double e = 1.0 if u1 == u2 else exp(-fabs(u1 - u2))
    f.em = exp(u1 if first else u2)
    f.w1 = 1.0 if first else e
    f.w2 = e if first else 1.0
    return f


cdef inline double sum2exp(Exp2 f, double c1, double c2) noexcept nogil:
    """c1 e^{u1} + c2 e^{u2} without inf - inf: the larger exponent is factored out.

    The result overflows to +-inf only when the true value does (a term at +inf with a zero
    coefficient counts 0, not 0 * inf); it is NaN only for NaN input.
    """
    cdef double inner = c1 * f.w1 + c2 * f.w2
    return 0.0 if inner == 0.0 else f.em * inner


cdef inline real rnan_or(real x, real value) noexcept nogil:
    """``value``, or NaN when ``x`` is NaN (keeps NaN in constant derivatives)."""
    return x if x != x else value


cdef inline double nan_or(double x, double value) noexcept nogil:
    """:func:`rnan_or` in float64."""
    return rnan_or(x, value)


cdef inline real rhypot1(real t) noexcept nogil:
    """sqrt(1 + t^2) for |t| <= 1 (no overflow possible there; vectorises, unlike libm hypot)."""
    cdef real one = 1
    if real is float:
        return sqrtf(one + t * t)
    else:
        return sqrt(one + t * t)


cdef inline double hypot1(double t) noexcept nogil:
    """:func:`rhypot1` in float64."""
    return rhypot1(t)


ctypedef struct Sigmoid:
    # For a logit z: p = sigmoid(z), q = 1 - p = sigmoid(-z), and their negative logs
    # nlp = -log p = log1pexp(-z), nlq = -log q = log1pexp(z), each to full relative precision.
    double p
    double q
    double nlp
    double nlq


cdef inline void sigmoid_parts(real z, real* p, real* q, real* nlp, real* nlq) noexcept nogil:
    """sigmoid(+-z) and log1pexp(-+z) from one exp(-|z|) and one log1p, never forming 1 - p.

    With e = exp(-|z|) <= 1: the larger of p, q is 1/(1 + e), the smaller e/(1 + e); and
    log1pexp(x) = max(x, 0) + log1p(e) for x = +-z, a sum of two non-negative terms (no
    cancellation; the log1p term is exact where the naive log(1 + exp(x)) would round it away).
    Huge |z| give the exact limits (sigmoid(-1e4) = 0, log1pexp(1e4) = 1e4); NaN gives NaN.
    In the arithmetic of ``real`` (p = sigmoid(z), q = 1 - p, nlp = -log p, nlq = -log q).
    """
    cdef real e = rexp_nonpos(-rabs(z))
    cdef real one = 1     # (a bare literal would be a C double: float32 code would widen)
    cdef real r = one / (one + e)
    cdef real l = rlog1p_unit(e)     # e in [0, 1]
    if z >= 0:
        p[0] = r
        q[0] = e * r
        nlp[0] = l
        nlq[0] = z + l
    else:
        p[0] = e * r
        q[0] = r
        nlp[0] = l - z
        nlq[0] = l


cdef inline Sigmoid sigmoid2(double z) noexcept nogil:
    """:func:`sigmoid_parts` in float64, as a struct."""
    cdef Sigmoid s
    sigmoid_parts(z, &s.p, &s.q, &s.nlp, &s.nlq)
    return s


cdef inline double xlogx(double x) noexcept nogil:
    """x log x with 0 log 0 = 0 (NaN for NaN)."""
    if x == 0.0:
        return 0.0
    return x * log(x)


cdef inline real rclip_unit(real p, real eps) noexcept nogil:
    """p clipped to [eps, 1 - eps]; NaN stays NaN (the comparisons are false for it)."""
    cdef real one = 1
    if p < eps:
        return eps
    if p > one - eps:
        return one - eps
    return p


cdef inline double clip_unit(double p, double eps) noexcept nogil:
    """:func:`rclip_unit` in float64."""
    return rclip_unit(p, eps)


cdef inline double pow_nonneg(double m, double g) noexcept nogil:
    """m^g for m >= 0 and g >= 0 (0^0 = 1) as exp(g log m), branch-free so loops vectorise.

    Relative error about |g log m| ulp (1e-14 for m = 1e-17, g = 2.5); exact for m = 1 and m = 0.
    (Selecting exact forms for g = 1 or 2 on the loop-invariant g stops GCC vectorising the
    loop, a per-element select does not.)
    """
    cdef double r = exp(g * log(m))
    return r if m != 0.0 else (0.0 if g > 0.0 else 1.0)
