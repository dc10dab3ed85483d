"""Regression losses against independent references.

The references below are written here from the textbook formulas, in plain NumPy (and mpmath for
the high-precision checks); they share no code with the kernels. Every test is generic over the
CASES table, so a regression loss added there gets every check.
"""

import math

import mpmath
import numpy as np
import pytest

import fastloss

mpmath.mp.dps = 50


# ---------------------------------------------------------------------------------------------
# Independent references: (loss, d/dp, d2/dp2) as NumPy functions of (y, p) in float64.
# ---------------------------------------------------------------------------------------------

def _huber(delta):
    def l(y, p):
        e = y - p
        return np.where(np.abs(e) <= delta, 0.5 * e**2, delta * (np.abs(e) - 0.5 * delta))

    def g(y, p):
        e = y - p
        return np.where(np.abs(e) <= delta, -e, -delta * np.sign(e))

    def h(y, p):
        return np.where(np.abs(y - p) <= delta, 1.0, 0.0)

    return l, g, h


def _pseudo_huber(delta):
    def l(y, p):
        return delta**2 * (np.sqrt(1 + ((y - p) / delta) ** 2) - 1)

    def g(y, p):
        e = y - p
        return -e / np.sqrt(1 + (e / delta) ** 2)

    def h(y, p):
        return (1 + ((y - p) / delta) ** 2) ** -1.5

    return l, g, h


def _charbonnier(eps):
    return (lambda y, p: np.sqrt((y - p) ** 2 + eps**2),
            lambda y, p: -(y - p) / np.sqrt((y - p) ** 2 + eps**2),
            lambda y, p: eps**2 / ((y - p) ** 2 + eps**2) ** 1.5)


def _quantile(q):
    return (lambda y, p: np.maximum(q * (y - p), (q - 1) * (y - p)),
            lambda y, p: np.where(y > p, -q, np.where(y < p, 1 - q, 0.0)),
            lambda y, p: np.zeros_like(y - p))


def _tweedie(rho):
    def l(y, p):
        mu = np.exp(p)
        if rho == 0:
            return (y - mu) ** 2
        if rho == 1:
            return 2 * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - y + mu)
        if rho == 2:
            return 2 * (np.log(mu / y) + y / mu - 1)
        return 2 * (np.maximum(y, 0) ** (2 - rho) / ((1 - rho) * (2 - rho))
                    - y * mu ** (1 - rho) / (1 - rho) + mu ** (2 - rho) / (2 - rho))

    def g(y, p):
        mu = np.exp(p)
        return 2 * (mu ** (2 - rho) - y * mu ** (1 - rho))

    def h(y, p):
        mu = np.exp(p)
        return 2 * ((2 - rho) * mu ** (2 - rho) - (1 - rho) * y * mu ** (1 - rho))

    return l, g, h


REFS = {
    "mse": (lambda y, p: (y - p) ** 2, lambda y, p: -2 * (y - p),
            lambda y, p: np.full_like(y - p, 2.0)),
    "mae": (lambda y, p: np.abs(y - p), lambda y, p: -np.sign(y - p),
            lambda y, p: np.zeros_like(y - p)),
    "huber": _huber(1.0),
    "huber_d2": _huber(2.5),
    "pseudo_huber": _pseudo_huber(1.0),
    "pseudo_huber_d03": _pseudo_huber(0.3),
    "charbonnier": _charbonnier(1e-3),
    "charbonnier_e05": _charbonnier(0.5),
    "log_cosh": (lambda y, p: np.log(np.cosh(y - p)), lambda y, p: -np.tanh(y - p),
                 lambda y, p: 1 / np.cosh(y - p) ** 2),
    "quantile": _quantile(0.5),
    "quantile_q09": _quantile(0.9),
    "poisson": _tweedie(1),
    "gamma": _tweedie(2),
    "tweedie": _tweedie(1.5),
    "tweedie_0": _tweedie(0),
    "tweedie_3": _tweedie(3),
    "tweedie_neg": _tweedie(-0.5),
}

# id -> (loss object, y_true domain: "real" | "nonneg" | "pos")
CASES = {
    "mse": (fastloss.MSE(), "real"),
    "mae": (fastloss.MAE(), "real"),
    "huber": (fastloss.Huber(), "real"),
    "huber_d2": (fastloss.Huber(delta=2.5), "real"),
    "pseudo_huber": (fastloss.PseudoHuber(), "real"),
    "pseudo_huber_d03": (fastloss.PseudoHuber(delta=0.3), "real"),
    "charbonnier": (fastloss.Charbonnier(), "real"),
    "charbonnier_e05": (fastloss.Charbonnier(eps=0.5), "real"),
    "log_cosh": (fastloss.LogCosh(), "real"),
    "quantile": (fastloss.Quantile(), "real"),
    "quantile_q09": (fastloss.Quantile(quantile=0.9), "real"),
    "poisson": (fastloss.Poisson(), "nonneg"),
    "gamma": (fastloss.Gamma(), "pos"),
    "tweedie": (fastloss.Tweedie(power=1.5), "nonneg"),
    "tweedie_0": (fastloss.Tweedie(power=0), "real"),
    "tweedie_3": (fastloss.Tweedie(power=3), "pos"),
    "tweedie_neg": (fastloss.Tweedie(power=-0.5), "real"),
}
IDS = list(CASES)
SMOOTH = ["mse", "pseudo_huber", "pseudo_huber_d03", "charbonnier", "charbonnier_e05", "log_cosh",
          "poisson", "gamma", "tweedie", "tweedie_0", "tweedie_3", "tweedie_neg"]


def make_data(case, shape, rng, dtype=np.float64):
    _, dom = CASES[case]
    n = int(np.prod(shape))
    if dom == "real":
        y = rng.normal(scale=2.0, size=n)
    elif dom == "nonneg":
        y = rng.poisson(2.0, size=n).astype(float)
    else:
        y = rng.gamma(2.0, 1.5, size=n)
    if CASES[case][0].name in ("poisson", "gamma", "tweedie"):
        p = rng.normal(scale=0.7, size=n) + 0.5
    else:
        p = y + rng.normal(scale=1.5, size=n)
    return y.reshape(shape).astype(dtype), p.reshape(shape).astype(dtype)


def reduce_ref(values, w, reduction):
    if reduction == "none":
        return values * w
    if reduction == "sum":
        return np.sum(values * w)
    return np.sum(values * w) / np.sum(w)


# ---------------------------------------------------------------------------------------------
# Values, gradients and hessians against the references
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(1000,), (20, 7, 3)])
def test_matches_reference(case, dtype, weighted, reduction, shape, rng):
    loss, _ = CASES[case]
    y, p = make_data(case, shape, rng, dtype)
    w = rng.uniform(0.0, 3.0, size=shape).astype(dtype) if weighted else None
    ref_l, ref_g, ref_h = REFS[case]
    y64, p64 = y.astype(np.float64), p.astype(np.float64)
    w64 = np.ones(shape) if w is None else w.astype(np.float64)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    scale = 1.0 / np.sum(w64) if reduction == "mean" else 1.0

    value, grad, hess = loss.loss_gradient_hessian(y, p, sample_weight=w, reduction=reduction)
    expect = reduce_ref(ref_l(y64, p64), w64, reduction)
    # Elementwise comparisons are scaled to the size of the terms (deviances cancel near 0).
    atol_l = rtol * (np.max(np.abs(ref_l(y64, p64) * w64)) + 1) * (1 if reduction == "none" else 10)
    np.testing.assert_allclose(np.asarray(value, np.float64), expect, rtol=rtol, atol=atol_l)
    assert np.asarray(value).dtype == dtype
    assert grad.dtype == dtype and hess.dtype == dtype
    assert grad.shape == shape and hess.shape == shape
    g_exp = scale * w64 * ref_g(y64, p64)
    h_exp = scale * w64 * ref_h(y64, p64)
    np.testing.assert_allclose(grad, g_exp, rtol=rtol, atol=rtol * np.max(np.abs(g_exp)))
    np.testing.assert_allclose(hess, h_exp, rtol=rtol, atol=rtol * np.max(np.abs(h_exp)))

    # Every entry point agrees with the fused one (to rounding: the compiler may contract
    # a*b+c into an FMA differently in the loops that compute fewer outputs).
    # Deviances near 0 cancel, so the tolerance is relative to the largest term.
    tol = 1e-14 if dtype == np.float64 else 1e-6
    l2 = loss.loss(y, p, sample_weight=w, reduction=reduction)
    np.testing.assert_allclose(l2, value, rtol=tol, atol=tol * np.max(np.abs(value)))
    np.testing.assert_allclose(loss.gradient(y, p, sample_weight=w, reduction=reduction), grad,
                               rtol=tol, atol=tol * np.max(np.abs(grad)))
    l3, g3 = loss.loss_gradient(y, p, sample_weight=w, reduction=reduction)
    np.testing.assert_allclose(l3, value, rtol=tol, atol=tol * np.max(np.abs(value)))
    np.testing.assert_allclose(g3, grad, rtol=tol, atol=tol * np.max(np.abs(grad)))


@pytest.mark.parametrize("case", IDS)
def test_gradient_hessian_is_per_sample(case, rng):
    loss, _ = CASES[case]
    y, p = make_data(case, (500,), rng)
    w = rng.uniform(0.5, 2.0, size=500)
    g, h = loss.gradient_hessian(y, p, sample_weight=w)
    ref_l, ref_g, ref_h = REFS[case]
    np.testing.assert_allclose(g, w * ref_g(y, p), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, w * ref_h(y, p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", IDS)
def test_finite_differences(case, rng):
    """Derivatives against central differences of the loss itself (away from kinks)."""
    loss, _ = CASES[case]
    y, p = make_data(case, (400,), rng)
    if case not in SMOOTH:
        # keep away from kinks: |e| = 0, and |e| = delta for Huber
        e = y - p
        delta = getattr(loss, "delta", None) if case.startswith("huber") else None
        keep = np.abs(e) > 1e-3
        if delta is not None:
            keep &= np.abs(np.abs(e) - delta) > 1e-3
        y, p = y[keep], p[keep]
    h = 1e-5
    lp = loss.loss(y, p + h, reduction="none")
    lm = loss.loss(y, p - h, reduction="none")
    l0 = loss.loss(y, p, reduction="none")
    g, hs = loss.gradient_hessian(y, p)
    np.testing.assert_allclose(g, (lp - lm) / (2 * h), rtol=1e-6, atol=1e-6)
    hh = 1e-4  # second differences: rounding error ~ eps |l| / hh^2
    lp = loss.loss(y, p + hh, reduction="none")
    lm = loss.loss(y, p - hh, reduction="none")
    fd_h = (lp - 2 * l0 + lm) / hh**2
    np.testing.assert_allclose(hs, fd_h, rtol=1e-4, atol=1e-6 * (1 + np.max(np.abs(l0))))


@pytest.mark.parametrize("case", IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradient_of_the_reduced_loss(case, reduction, rng):
    """d(reduced loss)/d p_i by finite differences on the reduced value, weighted."""
    loss, _ = CASES[case]
    y, p = make_data(case, (60,), rng)
    w = rng.uniform(0.2, 2.0, size=60)
    _, g = loss.loss_gradient(y, p, sample_weight=w, reduction=reduction)
    h = 1e-6
    for i in (0, 17, 59):
        if case not in SMOOTH and abs(y[i] - p[i]) < 1e-3:
            continue
        pp, pm = p.copy(), p.copy()
        pp[i] += h
        pm[i] -= h
        fd = (loss.loss(y, pp, sample_weight=w, reduction=reduction)
              - loss.loss(y, pm, sample_weight=w, reduction=reduction)) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=1e-5, abs=1e-8)


# ---------------------------------------------------------------------------------------------
# High precision and extreme inputs
# ---------------------------------------------------------------------------------------------

def _mp_loss(case, y, p):
    y, p = mpmath.mpf(y), mpmath.mpf(p)
    e = y - p
    loss, _ = CASES[case]
    if case == "mse":
        return e**2
    if case == "log_cosh":
        return mpmath.log(mpmath.cosh(e))
    if case.startswith("pseudo_huber"):
        d = mpmath.mpf(loss.delta)
        return d**2 * (mpmath.sqrt(1 + (e / d) ** 2) - 1)
    if case.startswith("charbonnier"):
        return mpmath.sqrt(e**2 + mpmath.mpf(loss.eps) ** 2)
    mu = mpmath.exp(p)
    if case == "poisson":
        return 2 * ((y * mpmath.log(y / mu) if y > 0 else 0) - y + mu)
    if case == "gamma":
        return 2 * (mpmath.log(mu / y) + y / mu - 1)
    raise KeyError(case)


@pytest.mark.parametrize("case", ["mse", "log_cosh", "pseudo_huber", "pseudo_huber_d03",
                                  "charbonnier", "poisson", "gamma"])
def test_high_precision(case):
    """float64 results against 50-digit mpmath, including near the optimum where naive forms
    cancel (log cosh of tiny e, pseudo-Huber s - 1, deviances near mu = y).

    The bound is that of a backward-stable evaluation: a few ulp times the condition number of
    the loss in its inputs, |y dl/dy / l| + |p dl/dp / l|. Away from the optimum that is ~1e-15;
    at 1e-7 from it the deviances are ill-conditioned in p itself and the bound widens with it.
    """
    loss, dom = CASES[case]
    if dom == "real":
        pts = [(0.0, 1e-9), (0.0, 1e-4), (1.0, 0.3), (0.0, 17.0), (0.0, -300.0), (5.0, -1e3)]
    else:
        pts = [(2.0, math.log(2.0) + 1e-7), (2.0, math.log(2.0) + 0.05), (3.0, -1.0),
               (0.5, 4.0), (7.0, 2.0)]
    y = np.array([a for a, _ in pts])
    p = np.array([b for _, b in pts])
    got = loss.loss(y, p, reduction="none")
    eps = np.finfo(np.float64).eps
    for gi, yi, pi in zip(got, y, p):
        ref = _mp_loss(case, yi, pi)
        dldy = mpmath.diff(lambda t: _mp_loss(case, t, pi), yi) if yi != 0 else 0
        dldp = mpmath.diff(lambda t: _mp_loss(case, yi, t), pi)
        cond = float(abs(yi * dldy / ref) + abs(pi * dldp / ref))
        assert float(abs(gi - ref)) <= 4 * eps * (1 + cond) * float(abs(ref)), (yi, pi, gi, ref)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_cosh_within_a_few_ulp_across_its_cut_offs(dtype):
    """The kernel switches form at |e| = 0.173 (t - 1 from the exp's own reduction below it)
    and 0.606 (-log1p(-tanh^2) / 2 below, |e| - log 2 + log1p(t) above, where that sum cancels
    most): loss, gradient and hessian within 6 ulp of mpmath on both sides of each, and between
    them (their condition numbers stay <= 2.6 for |e| <= 1.3, and e = y - 0 is exact)."""
    rng = np.random.default_rng(17)
    cuts = [0.17328679513998632, 0.606, 1.0]
    e = np.concatenate([rng.uniform(0, 1.3, 300), 10 ** rng.uniform(-12, 0, 60)]
                       + [c + rng.uniform(-1e-3, 1e-3, 40) for c in cuts]
                       + [np.nextafter(np.array(cuts, dtype), k) for k in (-np.inf, np.inf)])
    e = np.concatenate([e, -e]).astype(dtype)
    value, g, h = fastloss.LogCosh().loss_gradient_hessian(e, np.zeros_like(e),
                                                            reduction="none")
    ulp = np.finfo(dtype).eps
    for ei, li, gi, hi in zip(e, value, g, h):
        x = mpmath.mpf(float(ei))
        for got, ref in ((li, mpmath.log(mpmath.cosh(x))), (gi, -mpmath.tanh(x)),
                         (hi, 1 / mpmath.cosh(x) ** 2)):
            assert float(abs(got - ref)) <= 6 * ulp * float(abs(ref)), (ei, got, ref)


@pytest.mark.parametrize("case", IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extreme_inputs_no_nan(case, dtype):
    """Residuals and log-link predictions of +-1e4: no NaN anywhere; finite where the true value
    is representable, and the exact limits where they are known."""
    loss, dom = CASES[case]
    big = 1e4
    if CASES[case][0].name in ("poisson", "gamma", "tweedie"):
        y = np.array([1.0, 1.0, 3.0, 3.0] + ([0.0, 0.0] if dom != "pos" else [2.0, 2.0]))
        p = np.array([big, -big, big, -big, big, -big])
    else:
        y = np.array([0.0, 0.0, big, -big, 0.0, 1.0])
        p = np.array([big, -big, 0.0, 0.0, 0.0, 1.0])
    y, p = y.astype(dtype), p.astype(dtype)
    value, g, h = loss.loss_gradient_hessian(y, p, reduction="none")
    assert not np.any(np.isnan(value)) and not np.any(np.isnan(g)) and not np.any(np.isnan(h))
    if CASES[case][0].name not in ("poisson", "gamma", "tweedie"):
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    if case == "log_cosh":
        # log cosh(1e4) = 1e4 - log 2 exactly to double precision; tanh -> 1, sech^2 -> 0
        np.testing.assert_allclose(value[:4], big - math.log(2), rtol=1e-6 if dtype == np.float32 else 1e-15)
        np.testing.assert_array_equal(np.abs(g[:4]), 1.0)
        np.testing.assert_array_equal(h[:4], 0.0)


@pytest.mark.parametrize("case", IDS)
def test_exact_zero_residual(case):
    loss, dom = CASES[case]
    if dom == "real":
        y = np.array([0.0, 1.5, -2.0])
        p = y.copy()
        if CASES[case][0].name == "tweedie":
            p = np.log(np.abs(y) + 1.0)
            y = np.abs(y) + 1.0
    else:
        y = np.array([1.0, 2.5, 4.0])
        p = np.log(y)
    value, g, h = loss.loss_gradient_hessian(y, p, reduction="none")
    if case.startswith("charbonnier"):
        np.testing.assert_allclose(value, loss.eps, rtol=1e-15)
    else:
        np.testing.assert_allclose(value, 0.0, atol=1e-14)
    # the derivative terms are of size |y|^(2 - power) at most: allow rounding at that scale
    np.testing.assert_allclose(g, 0.0, atol=1e-14 * (1 + np.max(np.abs(y))) ** 3)
    assert np.all(np.isfinite(h))


@pytest.mark.parametrize("case", IDS)
def test_nan_propagates(case, rng):
    loss, _ = CASES[case]
    y, p = make_data(case, (50,), rng)
    p[7] = np.nan
    y[30] = np.nan
    value, g, h = loss.loss_gradient_hessian(y, p, reduction="none")
    for arr in (value, g, h):
        assert np.isnan(arr[7]) and np.isnan(arr[30])
        assert np.sum(np.isnan(arr)) == 2
    assert np.isnan(loss.loss(y, p))


# ---------------------------------------------------------------------------------------------
# Threads, layouts, outputs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["huber", "log_cosh", "poisson", "tweedie"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_bits_for_any_thread_count(case, dtype, rng):
    loss, _ = CASES[case]
    y, p = make_data(case, (300_001,), rng, dtype)
    w = rng.uniform(0, 2, size=y.shape).astype(dtype)
    runs = [loss.loss_gradient_hessian(y, p, sample_weight=w, n_threads=t) for t in (1, 2, 3)]
    for other in runs[1:]:
        assert other[0].tobytes() == runs[0][0].tobytes()
        assert other[1].tobytes() == runs[0][1].tobytes()
        assert other[2].tobytes() == runs[0][2].tobytes()
    s = [loss.loss(y, p, reduction="sum", n_threads=t) for t in (1, 2)]
    assert s[0].tobytes() == s[1].tobytes()


def test_layouts_and_inputs_unchanged(tmp_path, rng):
    loss = fastloss.Huber(delta=0.7)
    y, p = make_data("huber", (40, 25), rng)
    expect = loss.loss(y, p, reduction="none")
    y0, p0 = y.copy(), p.copy()

    ro_y, ro_p = y.copy(), p.copy()
    ro_y.flags.writeable = False
    ro_p.flags.writeable = False
    np.testing.assert_array_equal(loss.loss(ro_y, ro_p, reduction="none"), expect)

    fy, fp = np.asfortranarray(y), np.asfortranarray(p)
    np.testing.assert_array_equal(loss.loss(fy, fp, reduction="none"), expect)

    big_y, big_p = np.zeros((40, 50)), np.zeros((40, 50))
    big_y[:, ::2], big_p[:, ::2] = y, p
    np.testing.assert_array_equal(loss.loss(big_y[:, ::2], big_p[:, ::2], reduction="none"),
                                  expect)

    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "p.npy", p)
    my = np.load(tmp_path / "y.npy", mmap_mode="r")
    mp = np.load(tmp_path / "p.npy", mmap_mode="r")
    np.testing.assert_array_equal(loss.loss(my, mp, reduction="none"), expect)

    np.testing.assert_array_equal(loss.loss(y.tolist(), p.tolist(), reduction="none"), expect)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(p, p0)


def test_out_arrays_are_filled_and_returned(rng):
    loss = fastloss.LogCosh()
    y, p = make_data("log_cosh", (33, 3), rng)
    lo, go, ho = np.empty_like(p), np.empty_like(p), np.empty_like(p)
    value, g, h = loss.loss_gradient_hessian(y, p, reduction="none", loss_out=lo,
                                             gradient_out=go, hessian_out=ho)
    assert value is lo and g is go and h is ho
    # the reference in high precision: NumPy's log(cosh(e)) itself loses ~1e-13 relative at
    # |e| ~ 0.04 (log of 1.0009), and how much depends on the NumPy build
    with mpmath.workdps(30):
        ref = [float(mpmath.log(mpmath.cosh(mpmath.mpf(float(e))))) for e in (y - p).ravel()]
    np.testing.assert_allclose(lo.ravel(), ref, rtol=1e-14)
    out = np.empty_like(p)
    assert loss.gradient(y, p, out=out) is out
    g2, h2 = np.empty_like(p), np.empty_like(p)
    rg, rh = loss.gradient_hessian(y, p, gradient_out=g2, hessian_out=h2)
    assert rg is g2 and rh is h2


def test_dtype_rules(rng):
    y = rng.normal(size=100)
    p = rng.normal(size=100)
    mse = fastloss.MSE()
    assert mse.loss(y, p.astype(np.float32)).dtype == np.float32
    assert mse.loss(y, p.astype(np.float16)).dtype == np.float32
    assert mse.loss(y, np.arange(100)).dtype == np.float64
    assert mse.loss(y.astype(np.float32), p).dtype == np.float64
    g = mse.gradient(y, p.astype(np.float32))
    assert g.dtype == np.float32
    # float32 inputs accumulate in float64: the float32 mean is the float64 mean rounded once
    y32, p32 = y.astype(np.float32), p.astype(np.float32)
    exact = np.mean((y32.astype(np.float64) - p32.astype(np.float64)) ** 2)
    assert float(mse.loss(y32, p32)) == pytest.approx(exact, rel=1e-7)


def test_empty_and_scalar_inputs():
    mse = fastloss.MSE()
    assert np.isnan(mse.loss([], []))
    assert mse.loss([], [], reduction="sum") == 0.0
    assert mse.loss([], [], reduction="none").shape == (0,)
    assert mse.gradient([], []).shape == (0,)
    assert float(mse.loss(3.0, 1.0)) == 4.0
    assert mse.loss(3.0, 1.0, reduction="none").shape == ()


# ---------------------------------------------------------------------------------------------
# RMSE, baselines, peers
# ---------------------------------------------------------------------------------------------

def test_rmse(rng):
    y, p = rng.normal(size=200), rng.normal(size=200)
    w = rng.uniform(0.1, 2, size=200)
    rmse = fastloss.RMSE()
    value, g = rmse.loss_gradient(y, p, sample_weight=w)
    expect = math.sqrt(np.sum(w * (y - p) ** 2) / np.sum(w))
    assert float(value) == pytest.approx(expect, rel=1e-13)
    h = 1e-6
    for i in (0, 50, 199):
        pp, pm = p.copy(), p.copy()
        pp[i] += h
        pm[i] -= h
        fd = (rmse.loss(y, pp, sample_weight=w) - rmse.loss(y, pm, sample_weight=w)) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=1e-6)
    _, g0 = rmse.loss_gradient(y, y)
    np.testing.assert_array_equal(g0, 0.0)
    with pytest.raises(ValueError, match="reduction"):
        rmse.loss(y, p, reduction="sum")
    with pytest.raises(NotImplementedError, match="hessian"):
        rmse.gradient_hessian(y, p)


@pytest.mark.parametrize("magnitude", [1e200, 1e-200, 2**1000, 1e-310])
@pytest.mark.parametrize("weighted", [False, True])
def test_rmse_where_the_mean_of_squares_overflows_or_underflows(magnitude, weighted, rng):
    """|e| beyond 1.3e154 (e^2 overflows) or below 1.5e-162 (e^2 underflows to 0): the RMSE and
    its gradient -w e / (W RMSE) are still finite and non-zero. Reference: exact rationals."""
    from fractions import Fraction
    e = rng.uniform(0.5, 2, 50) * np.where(rng.uniform(size=50) < 0.5, -1.0, 1.0)
    p = e * magnitude
    y = np.zeros_like(p)
    w = rng.uniform(0.5, 2, 50) if weighted else np.ones(50)
    W = sum(Fraction(float(v)) for v in w)
    mean = sum(Fraction(float(wi)) * Fraction(float(pi)) ** 2 for wi, pi in zip(w, p)) / W
    unit = math.sqrt(float(mean / Fraction(magnitude) ** 2))     # RMSE / magnitude, about 1
    ref = unit * magnitude              # (for magnitude 1e-310, a subnormal: fewer digits)
    value, g = fastloss.RMSE().loss_gradient(y, p, sample_weight=w if weighted else None)
    tol = dict(rel=1e-14, abs=5e-324)   # a subnormal RMSE is rounded to its last bit
    assert float(value) == pytest.approx(ref, **tol)
    assert float(fastloss.RMSE().loss(y, p, sample_weight=w if weighted else None)) == \
        pytest.approx(ref, **tol)
    g_ref = np.array([float(Fraction(float(wi)) * Fraction(float(pi)) / W / Fraction(magnitude))
                      for wi, pi in zip(w, p)]) / unit
    np.testing.assert_allclose(g, g_ref, rtol=1e-13)


@pytest.mark.parametrize("case", IDS)
def test_baseline_minimises_the_loss(case, rng):
    scipy_opt = pytest.importorskip("scipy.optimize")
    loss, _ = CASES[case]
    y, _ = make_data(case, (301,), rng)
    w = rng.uniform(0.1, 3.0, size=301)
    ref_l = REFS[case][0]

    def objective(c):
        return np.sum(w * ref_l(y, np.full_like(y, c)))

    c = loss.baseline(y, sample_weight=w)
    lo, hi = (np.min(y), np.max(y))
    if CASES[case][0].name in ("poisson", "gamma", "tweedie"):
        lo, hi = np.log(np.min(y[y > 0])), np.log(np.max(y))
    best = scipy_opt.minimize_scalar(objective, bounds=(lo, hi), method="bounded",
                                     options={"xatol": 1e-10})
    assert objective(c) <= best.fun * (1 + 1e-9) + 1e-12


def test_baseline_known_values():
    y = np.array([1.0, 2.0, 3.0, 10.0])
    w = np.array([1.0, 1.0, 1.0, 3.0])
    assert fastloss.MSE().baseline(y, sample_weight=w) == pytest.approx(36 / 6)
    assert fastloss.MAE().baseline(y, sample_weight=w) == 3.0  # any c in [3, 10]; the lower
    assert fastloss.MAE().baseline(y) == 2.0
    assert fastloss.Quantile(quantile=0.1).baseline(y) == 1.0
    assert fastloss.Poisson().baseline(y) == pytest.approx(math.log(4.0))
    assert fastloss.Poisson().baseline([0.0, 0.0]) == -math.inf


def test_against_scikit_learn_metrics(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    y = rng.gamma(2.0, 1.0, size=500)
    p = rng.normal(scale=0.5, size=500)
    mu = np.exp(p)
    w = rng.uniform(0.1, 2, size=500)
    pairs = [
        (fastloss.MSE(), metrics.mean_squared_error(y, p, sample_weight=w), p),
        (fastloss.MAE(), metrics.mean_absolute_error(y, p, sample_weight=w), p),
        (fastloss.Quantile(quantile=0.3),
         metrics.mean_pinball_loss(y, p, alpha=0.3, sample_weight=w), p),
        (fastloss.Poisson(), metrics.mean_poisson_deviance(y, mu, sample_weight=w), p),
        (fastloss.Gamma(), metrics.mean_gamma_deviance(y, mu, sample_weight=w), p),
        (fastloss.Tweedie(power=1.3),
         metrics.mean_tweedie_deviance(y, mu, power=1.3, sample_weight=w), p),
        (fastloss.Tweedie(power=2.5),
         metrics.mean_tweedie_deviance(y, mu, power=2.5, sample_weight=w), p),
    ]
    for loss, expect, pred in pairs:
        assert float(loss.loss(y, pred, sample_weight=w)) == pytest.approx(expect, rel=1e-12), loss


@pytest.mark.slow
def test_more_than_2_31_elements():
    """64-bit indexing: a float32 array of 2^31 + 10 elements (about 17 GB with its twin)."""
    n = 2**31 + 10
    y = np.zeros(n, np.float32)
    p = np.ones(n, np.float32)
    p[-1] = 3.0
    total = fastloss.MSE().loss(y, p, reduction="sum")
    assert float(total) == pytest.approx(n - 1 + 9.0, rel=1e-7)


def test_log_cosh_derivatives_high_precision():
    """tanh and sech^2 to a few ulp against mpmath, including large residuals where
    1 - tanh^2 (or expm1(-2|e|) + 1) cancels (a relative error of 4e-10 at e = 8 once)."""
    e = np.array([1e-9, 0.1, 0.17, 0.18, 0.5, 1.0, 3.0, 8.0, 20.0, 300.0, -8.0])
    _, g, h = fastloss.LogCosh().loss_gradient_hessian(np.zeros_like(e), -e, reduction="none")
    for ei, gi, hi in zip(e, g, h):
        x = mpmath.mpf(float(ei))
        assert abs(gi - (-mpmath.tanh(x))) <= 4 * 2.2e-16 * abs(mpmath.tanh(x))
        ref_h = mpmath.sech(x) ** 2
        assert abs(hi - ref_h) <= 8 * 2.2e-16 * ref_h, (ei, hi, ref_h)


@pytest.mark.parametrize("power", [1.5, 1.8])
def test_tweedie_targets_near_the_top_of_the_range(power):
    """y / (1 - power) overflowed for y ~ 1e308 and |1 - power| < 1, giving inf * 0 = NaN
    where the deviance is finite (found by the property tests)."""
    y, p = 2.0**1023, 7.0
    a1, a2 = 1 - power, 2 - power
    ym, mu = mpmath.mpf(y), mpmath.exp(mpmath.mpf(p))
    ref_l = 2 * (ym**a2 / (a1 * a2) - ym * mu**a1 / a1 + mu**a2 / a2)
    ref_g = 2 * (mu**a2 - ym * mu**a1)
    ref_h = 2 * (a2 * mu**a2 - a1 * ym * mu**a1)
    l, g, h = fastloss.Tweedie(power=power).loss_gradient_hessian(
        np.array([y]), np.array([p]), reduction="none")
    for got, ref in ((l[0], ref_l), (g[0], ref_g), (h[0], ref_h)):
        assert np.isfinite(got)
        assert abs(got - float(ref)) <= 1e-12 * abs(float(ref)), (got, ref)


@pytest.mark.parametrize("weighted", [False, True])
def test_mean_of_losses_near_the_float64_maximum(weighted):
    """sum(w*l) overflows float64 while the mean does not: the mean is still finite and right
    (the weights are rescaled by a power of two, which changes no mean)."""
    e = np.array([1.3e154, 1.2e154, 1.1e154])
    w = np.array([1.0, 2.0, 3.0]) if weighted else np.ones(3)
    got = fastloss.MSE().loss(np.zeros(3), e, sample_weight=w if weighted else None)
    ref = math.fsum(float(wi) * (float(ei) / 1e154) ** 2 for wi, ei in zip(w, e)) / w.sum()
    assert np.isfinite(got)
    assert got / 1e308 == pytest.approx(ref, rel=1e-14)


def test_mean_of_infinite_losses_with_a_tiny_weight_stays_inf():
    """The overflow retry of a "mean" rescales the weights; a subnormal weight then underflows
    to 0 and 0 * inf = NaN: the infinite mean is kept (found by deeper fuzzing)."""
    got = fastloss.MSE().loss(np.zeros(2, np.float32), np.full(2, np.inf, np.float32),
                              sample_weight=np.array([1.0, 1.4e-45], np.float32))
    assert got == np.inf
    got = fastloss.Poisson().loss(np.zeros(3), np.array([0.0, 710.0, 0.0]),
                                  sample_weight=np.array([2.0, 5e-324, 0.0]))
    assert got == np.inf


def _mp_tweedie(y, p, power):
    """The Tweedie deviance with log link in mpmath at the float64 inputs exactly: loss,
    gradient, hessian, and the loss's derivative in y (mu = e^p, a1 = 1 - power, a2 = 2 - power)."""
    yi, pi = mpmath.mpf(float(y)), mpmath.mpf(float(p))
    a1, a2 = 1 - mpmath.mpf(power), 2 - mpmath.mpf(power)
    mu = mpmath.exp(pi)
    loss = 2 * ((yi ** a2 / (a1 * a2) if yi > 0 else 0) - yi * mu ** a1 / a1 + mu ** a2 / a2)
    grad = 2 * (mu ** a2 - yi * mu ** a1)
    hess = 2 * (a2 * mu ** a2 - a1 * yi * mu ** a1)
    dl_dy = 2 / a1 * ((yi ** a1 if yi > 0 else 0) - mu ** a1)
    return loss, grad, hess, dl_dy


@pytest.mark.parametrize("power", [1.01, 1.5, 1.99, 3.0, -0.5])
def test_tweedie_float64_keeps_relative_accuracy_at_the_optimum(power):
    """Near the optimum p = log y the Tweedie loss is ~ y^(2 - power) t^2 (t = p - log y) while
    the three terms of its textbook form stay ~ y^(2 - power) / |(1 - power)(2 - power)|: summed
    as such they leave only absolute accuracy (7.1e-15 computed for a true 8.7e-19 at y = 13.15,
    power 1.5, t = 4.9e-10).
    The kernel's series form keeps the loss and the gradient relatively accurate, up to the
    limit set by log y itself (a few ulp of |log y|, divided by |t|), and the hessian as before.
    Reference: mpmath, at the float64 inputs exactly."""
    rng = np.random.default_rng(int(abs(power) * 100) + 7)
    n = 300
    y = np.exp(rng.uniform(-20, 20, n))
    p = np.log(y) + rng.choice([-1, 1], n) * 10.0 ** rng.uniform(-7, 0.5, n)
    p[:20] = rng.uniform(-15, 15, 20)          # and some far from it
    loss, grad, hess = fastloss.Tweedie(power=power).loss_gradient_hessian(y, p, reduction="none")
    for i in range(n):
        el, eg, eh, _ = _mp_tweedie(y[i], p[i], power)
        log_y = mpmath.log(mpmath.mpf(float(y[i])))
        t = abs(mpmath.mpf(float(p[i])) - log_y)
        rtol = 2e-14 + 4e-15 * (abs(log_y) + 1) / t
        assert abs(loss[i] - el) <= rtol * abs(el), (i, float(y[i]), float(p[i]), loss[i], el)
        assert abs(grad[i] - eg) <= rtol * abs(eg), (i, float(y[i]), float(p[i]), grad[i], eg)
        assert abs(hess[i] - eh) <= 1e-12 * abs(eh), (i, float(y[i]), float(p[i]), hess[i], eh)


@pytest.mark.parametrize("power", [1.001, 1.01, 1.5, 1.99, 2.01, 3.0, -0.5])
def test_tweedie_float64_loss_backward_stable_away_from_the_optimum(power):
    """Away from the optimum (0.05 <= |t| <= 8, t = p - log y) the loss is within a few ulp
    times (1 + its condition number in y and p). The textbook form's three terms cancel where
    1/(1 - power) or 1/(2 - power) is large: 1.4e-12 relative (857 ulp times 1 + 6.4) at
    power 1.001, t = -1.3. Reference: mpmath, at the float64 inputs exactly."""
    rng = np.random.default_rng(int(abs(power) * 1000) + 3)
    n = 200
    y = np.exp(rng.uniform(-8, 8, n))
    p = np.log(y) + rng.choice([-1, 1], n) * rng.uniform(0.05, 8, n)
    loss = fastloss.Tweedie(power=power).loss(y, p, reduction="none")
    for i in range(n):
        el, dl_dp, _, dl_dy = _mp_tweedie(y[i], p[i], power)
        kappa = (abs(float(p[i]) * dl_dp) + abs(float(y[i]) * dl_dy)) / abs(el)
        assert abs(loss[i] - el) <= 8 * 2.0 ** -52 * (1 + kappa) * abs(el), \
            (i, float(y[i]), float(p[i]), loss[i], el)


@pytest.mark.parametrize("power", [3.0, 2.5, 1.5, 1.2])
def test_tweedie_float64_tiny_and_huge_targets_stay_finite(power):
    """y mu^(1 - power) computed as one exponential, e^((1 - power) p + log y): as the product
    y e^((1 - power) p) it overflowed (or underflowed) in its second factor alone, and the loss
    was +-inf at y = 1e-200, power 3, where it is 2e200. Reference: mpmath."""
    y = np.array([1e-200, 1e-200, 1e-200, 3e-300, 1e300, 1e300, 1e250])
    p = np.log(y) + np.array([-0.9, 2.0, -5.0, 1.5, -0.7, 3.0, 0.2])
    loss, grad, hess = fastloss.Tweedie(power=power).loss_gradient_hessian(y, p, reduction="none")
    checked = 0
    for i in range(y.size):
        el, eg, eh, _ = _mp_tweedie(y[i], p[i], power)
        for got, exact in ((loss[i], el), (grad[i], eg), (hess[i], eh)):
            if abs(exact) < 2.3e-308:     # below float64's normal range
                assert abs(got) < 1e-300, (i, float(y[i]), got, exact)
            elif abs(exact) < 1e308:
                checked += 1
                # |p| up to 690: the rounding of a p in the exponents costs ~|a p| ulp
                assert abs(got - exact) <= 1e-12 * abs(exact), (i, float(y[i]), got, exact)
            else:
                assert np.isinf(got) and np.sign(got) == np.sign(float(exact)), (i, got, exact)
    assert checked >= 12
