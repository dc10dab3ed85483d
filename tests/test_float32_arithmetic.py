"""Losses whose float32 calls compute in float32 arithmetic (``float32_arithmetic``).

Checked against mpmath at 40 digits on the float32 inputs themselves: the contract's float32
accuracy (rtol 1e-6; a gradient that is a difference of two terms to a few float32 ulp of the
terms), the exact limits at huge logits, subnormal results, and the fallback to float64
arithmetic for scales and parameters float32 cannot carry.
"""

import mpmath
import numpy as np
import pytest

import fastloss

mpmath.mp.dps = 40
F32 = np.float32
ULP = 2.0 ** -23


def _bce_terms(y, z, pos_weight, smoothing):
    """(loss, gradient, hessian, gradient term scale) of BCE from logits, in mpmath."""
    t = y * (1 - smoothing) + smoothing / 2
    a, b = pos_weight * t, 1 - t
    p = 1 / (1 + mpmath.exp(-z))
    q = 1 / (1 + mpmath.exp(z))
    loss = a * mpmath.log1p(mpmath.exp(-z)) + b * mpmath.log1p(mpmath.exp(z))
    return loss, b * p - a * q, (a + b) * p * q, abs(b * p) + abs(a * q)


def _log_cosh_terms(y, p):
    e = y - p
    th = mpmath.tanh(e)
    return mpmath.log(mpmath.cosh(e)), -th, 1 / mpmath.cosh(e) ** 2, abs(th)


def _check(got, terms):
    """Relative 1e-6 for the loss and hessian; the gradient to 8 ulp of its terms' scale."""
    loss, grad, hess = got
    for i in range(loss.size):
        el, eg, eh, gscale = terms[i]
        for value, exact in ((loss[i], el), (hess[i], eh)):
            assert abs(mpmath.mpf(float(value)) - exact) <= 1e-6 * abs(exact) + 1e-44, (
                i, float(value), float(exact))
        assert abs(mpmath.mpf(float(grad[i])) - eg) <= 1e-6 * abs(eg) + 8 * ULP * gscale + 1e-44, (
            i, float(grad[i]), float(eg))


def _logits(rng, n):
    z = rng.normal(0, 4, n)
    z[:12] = [0.0, -0.0, 1e-30, -1e-6, 0.3466, -0.3466, 87.0, -95.0, 103.0, -104.5, 1e4, -1e4]
    return z.astype(F32)


@pytest.mark.parametrize("pos_weight,smoothing", [(1.0, 0.0), (3.5, 0.0), (0.25, 0.1)])
@pytest.mark.parametrize("labels", ["hard", "soft"])
def test_bce_logits_float32_against_mpmath(pos_weight, smoothing, labels):
    rng = np.random.default_rng(5)
    n = 400
    z = _logits(rng, n)
    y = (rng.integers(0, 2, n) if labels == "hard" else rng.uniform(0, 1, n)).astype(F32)
    if labels == "soft":   # targets at the sigmoid of the logit: the gradient cancels
        y[20:60] = (1 / (1 + np.exp(-z[20:60].astype(np.float64)))).astype(F32)
    loss = fastloss.BinaryCrossEntropy(from_logits=True, pos_weight=pos_weight,
                                       label_smoothing=smoothing)
    assert loss.float32_arithmetic
    got = loss.loss_gradient_hessian(y, z, reduction="none")
    assert all(a.dtype == F32 for a in got)
    terms = [_bce_terms(mpmath.mpf(float(yi)), mpmath.mpf(float(zi)), mpmath.mpf(pos_weight),
                        mpmath.mpf(smoothing)) for yi, zi in zip(y, z)]
    _check(got, terms)


def test_log_cosh_float32_against_mpmath():
    rng = np.random.default_rng(6)
    n = 400
    p = rng.normal(0, 3, n).astype(F32)
    y = (p + rng.normal(0, 1, n) * 10.0 ** rng.uniform(-8, 1, n)).astype(F32)
    y[:8] = p[:8] + np.array([0.0, 1e-30, -1e-20, 0.1733, 1.0, -60.0, 1e4, -3e38], F32)
    # residuals that float32 rounds (not Sterbenz) where sech^2 amplifies it by 2|e|
    y[8:14] = [40.123456, 0.0012345, 30.5, -25.123, 12.3456789, -50.987654]
    p[8:14] = [0.0012345, 40.123456, -3.1e-3, 7.77e-4, 0.3333333, 1.2345678e-3]
    loss = fastloss.LogCosh()
    assert loss.float32_arithmetic
    got = loss.loss_gradient_hessian(y, p, reduction="none")
    terms = [_log_cosh_terms(mpmath.mpf(float(yi)), mpmath.mpf(float(pi)))
             for yi, pi in zip(y, p)]
    _check(got, terms)


def _poisson_terms(y, p):
    mu = mpmath.exp(p)
    loss = 2 * mu if y == 0 else 2 * (y * mpmath.log(y / mu) - y + mu)
    return loss, 2 * (mu - y), 2 * mu, 2 * (mu + y)


def _gamma_terms(y, p):
    q = y / mpmath.exp(p)
    return 2 * (-mpmath.log(q) + q - 1), 2 * (1 - q), 2 * q, 2 * (1 + q)


@pytest.mark.parametrize("name", ["poisson", "gamma"])
def test_deviances_float32_against_mpmath(name):
    """Mixed precision: log y and r = p - log y in float64, the rest in float32. Near the
    optimum (p = log y) the loss is about y r^2, which float32 log y would ruin."""
    rng = np.random.default_rng(9)
    n = 500
    y = rng.gamma(2.0, 2.0, n)
    if name == "poisson":
        y[:100] = rng.poisson(3.0, 100)
        y[:5] = 0.0
    y = y.astype(F32)
    p = rng.uniform(-20, 20, n)
    near = slice(100, 300)   # at the optimum, off by 1e-12 .. 1 (the series and its edge)
    p[near] = np.log(np.maximum(y[near].astype(np.float64), 1e-3)) + (
        rng.choice([-1, 1], 200) * 10.0 ** rng.uniform(-12, 0.3, 200))
    # extremes: mu near FLT_MAX and subnormal (Poisson); y/mu near 1e37 and 1e-34 (Gamma)
    p[300:306] = [88.0, -100.0, 0.0, -0.0, 1e-30, -87.0] if name == "poisson" else [
        80.0, -80.0, 0.0, -0.0, 1e-30, -70.0]
    p = p.astype(F32)
    loss = fastloss.get(name)
    assert loss.float32_arithmetic
    got = loss.loss_gradient_hessian(y, p, reduction="none")
    assert all(a.dtype == F32 for a in got)
    terms_of = _poisson_terms if name == "poisson" else _gamma_terms
    terms = [terms_of(mpmath.mpf(float(yi)), mpmath.mpf(float(pi))) for yi, pi in zip(y, p)]
    _check(got, terms)


def _tweedie_terms(y, p, power):
    """(loss, gradient, hessian, gradient term scale) of the Tweedie deviance, in mpmath."""
    mu, a1, a2 = mpmath.exp(p), 1 - power, 2 - power
    ypow = y ** a2 / (a1 * a2) if y > 0 else 0
    loss = 2 * (ypow - y * mu ** a1 / a1 + mu ** a2 / a2)
    return (loss, 2 * (mu ** a2 - y * mu ** a1), 2 * (a2 * mu ** a2 - a1 * y * mu ** a1),
            2 * (mu ** a2 + y * mu ** a1))


@pytest.mark.parametrize("power", [1.01, 1.3, 1.5, 1.9, 1.99])
def test_tweedie_float32_against_mpmath(power):
    """1 < power < 2, mixed precision: log y, t = p - log y and the exponents in float64, the
    rest in float32; the loss as a sum of two non-negative terms, so that it keeps its
    relative accuracy at the optimum (l ~ y^(2 - power) t^2), where the float64 kernel's
    three-term form cancels (to about 1e-15 of y^(2 - power) only)."""
    mpmath.mp.dps = 40
    rng = np.random.default_rng(int(power * 100))
    n = 400
    y = np.exp(rng.uniform(-25, 25, n))
    y[:5] = [0.0, 0.0, 1e-38, 1.0, 3.0]
    y = y.astype(F32)
    p = rng.uniform(-20, 20, n)
    near = slice(100, 300)   # near the optimum p = log y, off by 1e-7 .. 2 (float32 p)
    p[near] = np.log(np.maximum(y[near].astype(np.float64), 1e-3)) + (
        rng.choice([-1, 1], 200) * 10.0 ** rng.uniform(-7, 0.3, 200))
    # extremes: mu^(2 - power) and y mu^(1 - power) near the ends of float32's range
    p[300:306] = [80.0, -80.0, 0.0, -0.0, 1e-30, -70.0]
    p = p.astype(F32)
    loss = fastloss.Tweedie(power=power)
    assert loss.float32_arithmetic
    got = loss.loss_gradient_hessian(y, p, reduction="none")
    assert all(a.dtype == F32 for a in got)
    mpmath.mp.dps = 40
    terms = [_tweedie_terms(mpmath.mpf(float(yi)), mpmath.mpf(float(pi)), mpmath.mpf(power))
             for yi, pi in zip(y, p)]
    finite = [i for i in range(n) if abs(terms[i][0]) < 3e38 and abs(terms[i][2]) < 3e38
              and abs(terms[i][3]) < 3e38]
    assert len(finite) > n - 10
    _check([a[finite] for a in got], [terms[i] for i in finite])


def test_tweedie_float32_special_values_are_the_float64_ones():
    """Non-finite inputs, and outputs beyond float32 from finite ones, run in float64 (REDO64):
    the float64 kernel's limits, rounded."""
    y = np.array([np.inf, 1.0, 1.0, 0.0, np.nan, 2.0, 1e-38, 3e38, 5.0], F32)
    p = np.array([0.0, np.inf, -np.inf, -np.inf, 1.0, np.nan, 85.0, -85.0, 1.0], F32)
    loss = fastloss.Tweedie(power=1.5)
    got = loss.loss_gradient_hessian(y, p, reduction="none")
    with np.errstate(all="ignore"):
        ref = [a.astype(F32) for a in loss.loss_gradient_hessian(
            y.astype(np.float64), p.astype(np.float64), reduction="none")]
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


def _focal_terms(y, v, alpha, from_logits):
    """Focal loss at gamma = 2 in mpmath, as a function of the logit or of the (clipped)
    probability v: (loss, gradient, hessian) by numerical differentiation of the loss itself,
    and the scales of the terms the kernel sums for the gradient and the hessian:
    f (2 |r| ce + |ce'|) and f (2 r^2 ce + 4 |r ce'| + [2 |r (1 - 2p)| ce + p q | ce''])."""
    at = 1 if alpha is None else alpha * y + (1 - alpha) * (1 - y)

    def loss_of(u):
        s = 1 / (1 + mpmath.exp(-u)) if from_logits else u
        m = y * (1 - s) + (1 - y) * s
        return -at * m ** 2 * (y * mpmath.log(s) + (1 - y) * mpmath.log(1 - s))

    s = 1 / (1 + mpmath.exp(-v)) if from_logits else v
    m = y * (1 - s) + (1 - y) * s
    ce = -(y * mpmath.log(s) + (1 - y) * mpmath.log(1 - s))
    f = at * m ** 2
    if from_logits:
        r, dce = (1 - 2 * y) * s * (1 - s) / m, (1 - y) * s - y * (1 - s)
        last = 2 * abs(r * (1 - 2 * s)) * ce + s * (1 - s)
    else:
        r, dce = (1 - 2 * y) / m, (1 - y) / (1 - s) - y / s
        last = y / s ** 2 + (1 - y) / (1 - s) ** 2
    gscale = f * (2 * abs(r) * ce + abs(dce))
    hscale = f * (2 * r ** 2 * ce + 4 * abs(r * dce) + last)
    return loss_of(v), mpmath.diff(loss_of, v), mpmath.diff(loss_of, v, 2), gscale, hscale


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("alpha", [0.25, None])
def test_focal_gamma2_float32_against_mpmath(from_logits, alpha):
    """gamma = 2 computes m^2 as m * m, in float32 arithmetic: the loss to 1e-6 relative; the
    gradient and hessian, sums of terms of both signs (the hessian changes sign), to 1e-6
    relative plus 16 float32 ulp of their terms' scale."""
    rng = np.random.default_rng(12)
    n = 200
    y = np.where(rng.random(n) < 0.5, 1.0, 0.0)
    y[:40] = rng.uniform(0, 1, 40)                     # soft labels
    if from_logits:
        p = rng.normal(0, 4, n)
        p[40:48] = [0.0, 1e-6, -3.0, 12.0, -12.0, 30.0, -30.0, 2.5]
    else:
        p = rng.uniform(0, 1, n)
        p[40:48] = [1e-3, 0.999, 0.5, 1e-6, 1 - 1e-6, 0.25, 0.75, 0.1]
    y, p = y.astype(F32), p.astype(F32)
    loss = fastloss.Focal(alpha=alpha, gamma=2.0, from_logits=from_logits)
    assert loss.float32_arithmetic
    got = loss.loss_gradient_hessian(y, p, reduction="none")
    assert all(a.dtype == F32 for a in got)
    eps = mpmath.mpf(float(fastloss.classification.probability_eps(np.dtype(F32))))
    for i in range(n):
        v = mpmath.mpf(float(p[i]))
        if not from_logits:
            v = min(max(v, eps), 1 - eps)
        el, eg, eh, gs, hs = _focal_terms(mpmath.mpf(float(y[i])), v, alpha, from_logits)
        assert abs(mpmath.mpf(float(got[0][i])) - el) <= 1e-6 * abs(el) + 1e-44, (i, "loss")
        for k, exact, scale in ((1, eg, gs), (2, eh, hs)):
            assert abs(mpmath.mpf(float(got[k][i])) - exact) <= (
                1e-6 * abs(exact) + 16 * ULP * scale + 1e-44), (i, k, float(got[k][i]),
                                                                float(exact))


@pytest.mark.parametrize("make", [lambda: fastloss.LogCosh(),
                                  lambda: fastloss.BinaryCrossEntropy(from_logits=True),
                                  lambda: fastloss.MSE(), lambda: fastloss.Huber(delta=0.7),
                                  lambda: fastloss.Quantile(quantile=0.3),
                                  lambda: fastloss.get("poisson"), lambda: fastloss.get("gamma")])
def test_float32_arithmetic_is_what_runs(make):
    """The attribute tells the truth: float32 results are not all the float64 ones rounded
    (weighted means: the weight and the scale are rounded in float32 arithmetic too)."""
    rng = np.random.default_rng(8)
    y = rng.uniform(0, 1, 20000).astype(F32)
    p = rng.normal(0, 3, 20000).astype(F32)
    w = rng.uniform(0, 2, 20000).astype(F32)
    loss = make()
    g32 = loss.gradient(y, p, sample_weight=w)
    g64 = loss.gradient(y.astype(np.float64), p.astype(np.float64),
                        sample_weight=w.astype(np.float64)).astype(F32)
    assert not np.array_equal(g32, g64)
    np.testing.assert_allclose(g32, g64, rtol=1e-6, atol=1e-6 * np.max(np.abs(g64)))


def test_other_losses_compute_float32_in_float64():
    assert not fastloss.get("tweedie", power=2.5).float32_arithmetic
    assert not fastloss.get("tweedie", power=-1.0).float32_arithmetic
    assert not fastloss.get("tweedie", power=0.0).float32_arithmetic
    # focal at gamma != 2: exp(gamma log m) would lose |gamma log m| float32 ulp
    assert not fastloss.get("focal", from_logits=True, gamma=1.5).float32_arithmetic
    assert not fastloss.get("focal", gamma=3.0).float32_arithmetic         # from probabilities
    assert fastloss.get("focal", from_logits=True).float32_arithmetic      # gamma = 2: m * m
    assert fastloss.get("focal", alpha=None).float32_arithmetic
    # the deviances at powers 1 and 2 are the Poisson and Gamma kernels, and those between
    # the tweedie12 kernel (mixed precision)
    assert fastloss.get("tweedie", power=1.0).float32_arithmetic
    assert fastloss.get("tweedie", power=2.0).float32_arithmetic
    assert fastloss.get("tweedie", power=1.5).float32_arithmetic


@pytest.mark.parametrize("pos_weight", [3.4028235677973366e38, 1e39, 1e300, 1e-30])
def test_parameters_beyond_float32_compute_in_float64(pos_weight):
    """A pos_weight float32 would round to inf (or to a few bits) runs the float64-arithmetic
    kernel: no NaN from inf * 0, and the float64 results rounded."""
    y = np.array([0.0, 1.0, 0.5, 1.0, 0.0], F32)
    z = np.array([0.0, 2.0, -1.0, 200.0, -200.0], F32)
    loss = fastloss.BinaryCrossEntropy(from_logits=True, pos_weight=pos_weight)
    got = loss.loss_gradient_hessian(y, z, reduction="none")
    ref = loss.loss_gradient_hessian(y.astype(np.float64), z.astype(np.float64),
                                     reduction="none")
    for a, b in zip(got, ref):
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(a, b.astype(F32))


def test_scales_beyond_float32_compute_in_float64():
    """Weights so large that 1/sum(w) is below 2**-60: the mean's gradient is the float64 one
    rounded (float32 arithmetic would keep few bits of such a scale)."""
    rng = np.random.default_rng(9)
    y = rng.uniform(0, 1, 1000).astype(F32)
    z = rng.normal(0, 2, 1000).astype(F32)
    w = rng.uniform(1e36, 3e36, 1000).astype(F32)
    loss = fastloss.BinaryCrossEntropy(from_logits=True)
    g = loss.gradient(y, z, sample_weight=w)
    g64 = loss.gradient(y.astype(np.float64), z.astype(np.float64),
                        sample_weight=w.astype(np.float64))
    np.testing.assert_array_equal(g, g64.astype(F32))


def test_loss_beyond_float32_from_finite_inputs_is_redone_in_float64():
    """|y - p| > FLT_MAX: the float32 loss overflows, but a mean or a weight below 1 brings the
    true value back into range; the call is redone in float64 arithmetic and gives it."""
    y = np.array([3e38, 0.0], F32)
    p = np.array([-3e38, 0.0], F32)
    loss = fastloss.LogCosh()
    expect = (6e38 - np.log(2.0)) / 2                  # (log cosh(6e38) + 0) / 2
    assert loss.loss(y, p) == pytest.approx(expect, rel=1e-6)
    w = np.array([0.25, 1.0], F32)
    lw = loss.loss(y, p, sample_weight=w, reduction="none")
    np.testing.assert_allclose(lw, [0.25 * (6e38 - np.log(2.0)), 0.0], rtol=1e-6)
    bce = fastloss.BinaryCrossEntropy(from_logits=True, pos_weight=4.0)
    z = np.array([-3e38, 1.0], F32)
    got = bce.loss(np.ones(2, F32), z, sample_weight=np.array([0.1, 1.0], F32),
                   reduction="none")
    np.testing.assert_allclose(got[0], 0.1 * 4.0 * 3e38, rtol=1e-6)
    assert np.isfinite(got).all()


def test_in_place_outputs_compute_in_float64():
    """An output that is an input (in place) cannot be redone after the fact, so such calls
    compute in float64 arithmetic from the start: the float64 results, rounded."""
    rng = np.random.default_rng(10)
    y = rng.normal(0, 3, 1000).astype(F32)
    p = rng.normal(0, 3, 1000).astype(F32)
    ref = fastloss.LogCosh().gradient(y.astype(np.float64), p.astype(np.float64),
                                      reduction="none").astype(F32)
    g = p.copy()
    fastloss.LogCosh().gradient(y, g, reduction="none", out=g)
    np.testing.assert_array_equal(g, ref)


SIMPLE = {   # loss, gradient, hessian of e = y - p, exactly (Fractions), as in the docstrings
    "mse": (lambda e, d: e * e, lambda e, d: -2 * e, lambda e, d: 2),
    "mae": (lambda e, d: abs(e), lambda e, d: -(e > 0) + (e < 0), lambda e, d: 0),
    "huber": (lambda e, d: e * e / 2 if abs(e) <= d else d * (abs(e) - d / 2),
              lambda e, d: -e if abs(e) <= d else -d * ((e > 0) - (e < 0)),
              lambda e, d: 1 if abs(e) <= d else 0),
    "quantile": (lambda e, q: q * e if e >= 0 else (q - 1) * e,
                 lambda e, q: -q if e > 0 else (1 - q if e < 0 else 0), lambda e, q: 0),
}


@pytest.mark.parametrize("name,param", [("mse", None), ("mae", None), ("huber", 0.75),
                                        ("quantile", 0.3)])
def test_simple_losses_float32_against_exact_values(name, param):
    """Weighted per-element outputs and the weighted mean against exact rational arithmetic
    on the float32 inputs: within 4 float32 ulp (the residual, the weight and the scale are
    each rounded once in float32)."""
    from fractions import Fraction as Fr
    rng = np.random.default_rng(12)
    n = 3000
    y = (rng.normal(0, 3, n) * 10.0 ** rng.uniform(-3, 3, n)).astype(F32)
    p = (y + rng.normal(0, 1, n) * 10.0 ** rng.uniform(-6, 1, n)).astype(F32)
    p[:4] = y[:4]
    w = rng.uniform(0, 3, n).astype(F32)
    kwargs = {} if param is None else {"huber": {"delta": param},
                                        "quantile": {"quantile": param}}[name]
    loss = fastloss.get(name, **kwargs)
    assert loss.float32_arithmetic
    lf, gf, hf = SIMPLE[name]
    d = Fr(float(F32(param))) if param is not None else None
    sw = sum(Fr(float(v)) for v in w)
    mean, g, h = loss.loss_gradient_hessian(y, p, sample_weight=w)
    exact_sum = Fr(0)
    for i in range(n):
        e, wi = Fr(float(y[i])) - Fr(float(p[i])), Fr(float(w[i]))
        exact_sum += wi * lf(e, d)
        for got, exact in ((g[i], wi * gf(e, d) / sw), (h[i], wi * hf(e, d) / sw)):
            assert abs(Fr(float(got)) - exact) <= 4 * ULP * abs(exact), (name, i, got, exact)
    assert abs(Fr(float(mean)) - exact_sum / sw) <= 4 * ULP * abs(exact_sum / sw)


def test_gradient_beyond_float32_from_finite_inputs_is_redone_in_float64():
    """y - p overflows float32 but the mean's gradient -2 (y - p) / n is finite."""
    y = np.array([3e38, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], F32)
    p = np.array([-3e38, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], F32)
    g = fastloss.MSE().gradient(y, p)
    assert g[0] == pytest.approx(-2 * 6e38 / 8, rel=1e-6)
    assert fastloss.MAE().loss(y, p) == pytest.approx(6e38 / 8, rel=1e-6)


def _pseudo_huber(e, d):
    s = mpmath.sqrt(1 + (e / d) ** 2)
    return d * d * (s - 1), -e / s, 1 / s ** 3


def _charbonnier(e, d):
    l = mpmath.sqrt(e * e + d * d)   # noqa: E741
    return l, -e / l, d * d / l ** 3


@pytest.mark.parametrize("name,ref", [("pseudo_huber", _pseudo_huber),
                                      ("charbonnier", _charbonnier)])
@pytest.mark.parametrize("param", [1e-3, 1.0, 50.0])
def test_smooth_l1_losses_float32_against_mpmath(name, ref, param):
    """Relative 2e-6 for loss, gradient and hessian, residuals from 1e-6 to 1e6 around the
    parameter, some that float32 rounds (not Sterbenz)."""
    rng = np.random.default_rng(13)
    n = 300
    p = rng.normal(0, 3, n).astype(F32)
    y = (p + rng.choice([-1, 1], n) * param * 10.0 ** rng.uniform(-3, 3, n)).astype(F32)
    y[:3] = [40.123456, p[1], -7.5e5]
    loss = fastloss.get(name, **{"pseudo_huber": {"delta": param},
                                 "charbonnier": {"eps": param}}[name])
    assert loss.float32_arithmetic
    got = loss.loss_gradient_hessian(y, p, reduction="none")
    d = mpmath.mpf(float(F32(param)))
    for i in range(n):
        e = mpmath.mpf(float(y[i])) - mpmath.mpf(float(p[i]))
        for value, exact in zip((a[i] for a in got), ref(e, d)):
            assert abs(mpmath.mpf(float(value)) - exact) <= 2e-6 * abs(exact) + 1e-44, (
                name, i, float(value), float(exact))


@pytest.mark.parametrize("pos_weight,smoothing", [(1.0, 0.0), (2.5, 0.05)])
def test_bce_probabilities_float32_against_mpmath(pos_weight, smoothing):
    """From probabilities (clipped to [eps, 1 - eps], eps = 2^-23 for float32): loss and
    hessian within 1e-6 relative, the gradient (a difference) to 8 ulp of its terms."""
    rng = np.random.default_rng(14)
    n = 400
    p = rng.uniform(0, 1, n).astype(F32)
    p[:8] = [0.0, 1e-30, 2.0 ** -23, 1e-4, 0.5, 1 - 1e-4, 1 - 2.0 ** -24, 1.0]
    y = rng.uniform(0, 1, n).astype(F32)
    y[::3] = rng.integers(0, 2, y[::3].size)
    loss = fastloss.BinaryCrossEntropy(pos_weight=pos_weight, label_smoothing=smoothing)
    assert loss.float32_arithmetic
    got = loss.loss_gradient_hessian(y, p, reduction="none")
    eps = mpmath.mpf(2.0 ** -23)
    terms = []
    for yi, pi in zip(y, p):
        t = mpmath.mpf(float(yi)) * (1 - smoothing) + mpmath.mpf(smoothing) / 2
        a, b = pos_weight * t, 1 - t
        c = min(max(mpmath.mpf(float(pi)), eps), 1 - eps)
        terms.append((-(a * mpmath.log(c) + b * mpmath.log(1 - c)), b / (1 - c) - a / c,
                      a / c ** 2 + b / (1 - c) ** 2, abs(b / (1 - c)) + abs(a / c)))
    _check(got, terms)


@pytest.mark.parametrize("name", ["mse", "huber", "poisson", "gamma", "log_cosh"])
def test_weight_scaled_below_float32_range_redoes_in_float64(name):
    """A weight of 1e-45 in a mean: scale * w rounds to 0 in float32, and (scale w) * g would be
    0 where the true value is not, or NaN for an infinite g (y_true = inf; found by the
    property tests). Such a call is redone in float64 arithmetic: the float64 result, rounded."""
    y = np.array([1.0, np.inf, 1.0, 2.0, 1.0], F32)
    p = np.array([0.0, 0.0, 1e-45, 0.5, -3.0], F32)
    w = np.array([2.0, 1e-45, 1e-45, 1e-45, 3e-45], F32)
    loss = fastloss.get(name)
    assert loss.float32_arithmetic
    g32, h32 = loss.gradient_hessian(y, p, sample_weight=w)
    g64, h64 = loss.gradient_hessian(y.astype(np.float64), p.astype(np.float64),
                                     sample_weight=w.astype(np.float64))
    mean32 = loss.gradient(y, p, sample_weight=w)
    mean64 = loss.gradient(y.astype(np.float64), p.astype(np.float64),
                           sample_weight=w.astype(np.float64))
    np.testing.assert_array_equal(mean32, mean64.astype(F32))
    assert not np.isnan(mean32).any()
    # per sample (no scale: w itself is representable) the call stays in float32 arithmetic
    for got, want in ((g32, g64), (h32, h64)):
        assert not np.isnan(got).any()
        np.testing.assert_allclose(got, want.astype(F32), rtol=1e-6, atol=0)
