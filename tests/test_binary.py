"""Binary classification losses (element-wise) against independent references.

References written here from the textbook formulas: NumPy/SciPy for the values, mpmath at 50
digits (values and derivatives by high-precision numerical differentiation), central finite
differences, and PyTorch (``binary_cross_entropy``, ``binary_cross_entropy_with_logits`` and the
torchvision sigmoid focal loss formula written with torch ops, with autograd for the
derivatives) when it is installed. Every generic test runs over the CASES table.
"""

import math

import mpmath
import numpy as np
import pytest
from scipy import optimize
from scipy.special import expit

import fastloss
from fastloss.classification import probability_eps

mpmath.mp.dps = 50


# ---------------------------------------------------------------------------------------------
# Independent references: NumPy losses, and mpmath losses (derivatives come from mp.diff)
# ---------------------------------------------------------------------------------------------

def np_bce_logits(y, z, pos_weight=1.0, smoothing=0.0):
    t = (1 - smoothing) * y + smoothing / 2
    return pos_weight * t * np.logaddexp(0, -z) + (1 - t) * np.logaddexp(0, z)


def np_bce_proba(y, p, pos_weight=1.0, smoothing=0.0, eps=2.220446049250313e-16):
    t = (1 - smoothing) * y + smoothing / 2
    p = np.clip(p, eps, 1 - eps)
    return -(pos_weight * t * np.log(p) + (1 - t) * np.log1p(-p))


def np_focal(y, p, alpha, gamma, ce):
    """-a_t (1 - p_t)^gamma (y log p + (1 - y) log(1 - p)), the torchvision form for soft y."""
    one_minus_pt = y * (1 - p) + (1 - y) * p
    at = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return at * one_minus_pt**gamma * ce


def np_focal_logits(y, z, alpha=0.25, gamma=2.0):
    return np_focal(y, expit(z), alpha, gamma, np_bce_logits(y, z))


def np_focal_proba(y, p, alpha=0.25, gamma=2.0, eps=2.220446049250313e-16):
    p = np.clip(p, eps, 1 - eps)
    return np_focal(y, p, alpha, gamma, np_bce_proba(y, p, eps=eps))


def np_hinge(y, z):
    t = np.where(y == 0, -1.0, y)
    return np.maximum(0, 1 - t * z)


def np_squared_hinge(y, z):
    return np_hinge(y, z) ** 2


def mp_bce_logits(y, z, pos_weight=1.0, smoothing=0.0):
    t = (1 - mpmath.mpf(smoothing)) * y + mpmath.mpf(smoothing) / 2
    return pos_weight * t * mpmath.log1p(mpmath.exp(-z)) + (1 - t) * mpmath.log1p(mpmath.exp(z))


def mp_bce_proba(y, p, pos_weight=1.0, smoothing=0.0):
    t = (1 - mpmath.mpf(smoothing)) * y + mpmath.mpf(smoothing) / 2
    return -(pos_weight * t * mpmath.log(p) + (1 - t) * mpmath.log(1 - p))


def mp_focal_logits(y, z, alpha=0.25, gamma=2.0):
    p = 1 / (1 + mpmath.exp(-z))
    q = 1 / (1 + mpmath.exp(z))
    m = y * q + (1 - y) * p
    at = 1 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return at * m**gamma * mp_bce_logits(y, z)


def mp_focal_proba(y, p, alpha=0.25, gamma=2.0):
    m = y * (1 - p) + (1 - y) * p
    at = 1 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return at * m**gamma * mp_bce_proba(y, p)


def mp_hinge(y, z):
    t = -1 if y == 0 else y
    return max(mpmath.mpf(0), 1 - t * z)


def mp_squared_hinge(y, z):
    return mp_hinge(y, z) ** 2


# (loss, numpy reference, mpmath reference, targets, predictions)
# targets: "soft" in [0, 1], "hard" in {0, 1}, "pm" in {-1, 1}, "01" in {0, 1}
# predictions: "logit" reals, "proba" in (0, 1)
CASES = {
    "bce_logits": (fastloss.BinaryCrossEntropy(from_logits=True),
                   np_bce_logits, mp_bce_logits, "soft", "logit"),
    "bce_logits_pw_ls": (
        fastloss.BinaryCrossEntropy(from_logits=True, pos_weight=3.0, label_smoothing=0.1),
        lambda y, z: np_bce_logits(y, z, 3.0, 0.1),
        lambda y, z: mp_bce_logits(y, z, 3.0, 0.1), "hard", "logit"),
    "bce_proba": (fastloss.BinaryCrossEntropy(), np_bce_proba, mp_bce_proba, "soft", "proba"),
    "bce_proba_pw_ls": (
        fastloss.BinaryCrossEntropy(pos_weight=0.5, label_smoothing=0.2),
        lambda y, p: np_bce_proba(y, p, 0.5, 0.2),
        lambda y, p: mp_bce_proba(y, p, 0.5, 0.2), "hard", "proba"),
    "focal_logits": (fastloss.Focal(from_logits=True), np_focal_logits, mp_focal_logits,
                     "hard", "logit"),
    "focal_logits_soft": (
        fastloss.Focal(alpha=None, gamma=1.5, from_logits=True),
        lambda y, z: np_focal_logits(y, z, None, 1.5),
        lambda y, z: mp_focal_logits(y, z, None, 1.5), "soft", "logit"),
    "focal_logits_g05": (
        fastloss.Focal(alpha=0.7, gamma=0.5, from_logits=True),
        lambda y, z: np_focal_logits(y, z, 0.7, 0.5),
        lambda y, z: mp_focal_logits(y, z, 0.7, 0.5), "hard", "logit"),
    "focal_proba": (fastloss.Focal(), np_focal_proba, mp_focal_proba, "hard", "proba"),
    "focal_proba_soft": (
        fastloss.Focal(alpha=0.4, gamma=3.0),
        lambda y, p: np_focal_proba(y, p, 0.4, 3.0),
        lambda y, p: mp_focal_proba(y, p, 0.4, 3.0), "soft", "proba"),
    "hinge_pm": (fastloss.Hinge(), np_hinge, mp_hinge, "pm", "logit"),
    "hinge_01": (fastloss.Hinge(), np_hinge, mp_hinge, "01", "logit"),
    "squared_hinge": (fastloss.SquaredHinge(), np_squared_hinge, mp_squared_hinge, "pm", "logit"),
    "squared_hinge_01": (fastloss.SquaredHinge(), np_squared_hinge, mp_squared_hinge, "01",
                         "logit"),
}
SMOOTH = [c for c in CASES if "hinge" not in c]


def make_data(case, n, rng, dtype=np.float64):
    _, _, _, targets, preds = CASES[case]
    if targets == "soft":
        y = rng.uniform(0, 1, n)
        y[: n // 4] = rng.integers(0, 2, n // 4)   # some hard labels too
    elif targets == "pm":
        y = rng.choice([-1.0, 1.0], n)
    else:
        y = rng.integers(0, 2, n).astype(float)
    if preds == "logit":
        p = rng.normal(0, 3, n)
    else:
        p = rng.uniform(0.01, 0.99, n)
    return y.astype(dtype), p.astype(dtype)


def tol(dtype):
    return dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# Values and derivatives
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_matches_numpy(case, dtype, weighted, reduction, rng):
    loss, ref, _, _, _ = CASES[case]
    y, p = make_data(case, 1001, rng, dtype)
    w = rng.uniform(0, 2, y.size).astype(dtype) if weighted else None
    yd, pd_ = y.astype(np.float64), p.astype(np.float64)
    if "proba" in case:
        ref_l = ref(yd, pd_) if "focal" not in case else ref(yd, pd_)
    else:
        ref_l = ref(yd, pd_)
    wd = np.ones_like(yd) if w is None else w.astype(np.float64)
    expect = {"none": wd * ref_l, "sum": np.sum(wd * ref_l),
              "mean": np.sum(wd * ref_l) / np.sum(wd)}[reduction]
    got = loss.loss(y, p, sample_weight=w, reduction=reduction)
    assert np.asarray(got).dtype == dtype
    np.testing.assert_allclose(got, expect, **tol(dtype))


@pytest.mark.parametrize("case", CASES)
def test_high_precision_against_mpmath(case, rng):
    """Loss, gradient and hessian at 50 digits (mp.diff), including large margins."""
    loss, _, mpref, targets, preds = CASES[case]
    y, p = make_data(case, 40, rng)
    if preds == "logit":
        p[:8] = [-40.0, -25.0, -8.0, -1e-3, 1e-3, 8.0, 25.0, 40.0]
    else:
        p[:6] = [1e-9, 1e-4, 0.3, 0.7, 1 - 1e-4, 1 - 1e-9]
    if "hinge" in case:
        p = p[np.abs(1 - np.where(y == 0, -1, y) * p) > 1e-3]  # away from the kink
        y = y[: p.size]
    value, g, h = loss.loss_gradient_hessian(y, p, reduction="none")
    for i in range(y.size):
        yi, pi = mpmath.mpf(float(y[i])), mpmath.mpf(float(p[i]))
        f = lambda v: mpref(yi, v)  # noqa: E731
        expect = [float(f(pi)), float(mpmath.diff(f, pi, 1)), float(mpmath.diff(f, pi, 2))]
        scale = max(1.0, abs(expect[0]))
        for got, exp in zip((value[i], g[i], h[i]), expect):
            assert got == pytest.approx(exp, rel=1e-12, abs=1e-15 * scale), (i, y[i], p[i])


@pytest.mark.parametrize("case", SMOOTH)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_finite_differences(case, dtype, rng):
    """Gradient = d loss / d y_pred and hessian = d gradient / d y_pred, element by element."""
    loss, _, _, _, preds = CASES[case]
    y, p = make_data(case, 300, rng)
    if preds == "proba":
        p = np.clip(p, 0.05, 0.95)
    _, g, h = loss.loss_gradient_hessian(y.astype(dtype), p.astype(dtype), reduction="none")
    step = 1e-6 * np.maximum(1.0, np.abs(p))
    lp = loss.loss(y, p + step, reduction="none")
    lm = loss.loss(y, p - step, reduction="none")
    gp = loss.gradient(y, p + step, reduction="none")
    gm = loss.gradient(y, p - step, reduction="none")
    fd_g = (lp - lm) / (2 * step)
    fd_h = (gp - gm) / (2 * step)
    t = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g, fd_g, **t)
    np.testing.assert_allclose(h, fd_h, **t)


@pytest.mark.parametrize("case", ["hinge_pm", "squared_hinge_01"])
def test_hinge_finite_differences_away_from_the_kink(case, rng):
    loss = CASES[case][0]
    y, p = make_data(case, 400, rng)
    t = np.where(y == 0, -1, y)
    keep = np.abs(1 - t * p) > 1e-3
    y, p = y[keep], p[keep]
    _, g, h = loss.loss_gradient_hessian(y, p, reduction="none")
    step = 1e-7
    fd = (loss.loss(y, p + step, reduction="none") - loss.loss(y, p - step, reduction="none"))
    np.testing.assert_allclose(g, fd / (2 * step), rtol=1e-6, atol=1e-7)
    fdh = (loss.gradient(y, p + step, reduction="none")
           - loss.gradient(y, p - step, reduction="none")) / (2 * step)
    np.testing.assert_allclose(h, fdh, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_derivatives_follow_the_reduction(case, reduction, rng):
    loss = CASES[case][0]
    y, p = make_data(case, 200, rng)
    w = rng.uniform(0, 2, y.size)
    _, g1, h1 = loss.loss_gradient_hessian(y, p, sample_weight=w, reduction=reduction)
    g0, h0 = loss.gradient_hessian(y, p)
    factor = w / np.sum(w) if reduction == "mean" else w
    np.testing.assert_allclose(g1, factor * g0, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(h1, factor * h0, rtol=1e-14, atol=1e-300)
    np.testing.assert_array_equal(loss.gradient(y, p, sample_weight=w, reduction=reduction), g1)


def test_focal_hessian_can_be_negative_and_is_returned():
    # y = 1, gamma = 2: l = (1 - p)^2 log1pexp(-z) is concave around z = -4, where the
    # down-weighting factor (1 - p)^2 -> 1 bends the nearly linear loss (mp.diff agrees)
    loss = fastloss.Focal(alpha=None, gamma=2.0, from_logits=True)
    z = np.linspace(-8, 2, 101)
    _, h = loss.gradient_hessian(np.ones_like(z), z)
    assert np.any(h < 0)
    for zi, hi in zip(z[::10], h[::10]):
        exp = float(mpmath.diff(lambda v: mp_focal_logits(1, v, None, 2.0), mpmath.mpf(zi), 2))
        assert hi == pytest.approx(exp, rel=1e-12, abs=1e-16)


def test_gbdt_contract_sigmoid_minus_y():
    """BinaryCrossEntropy(from_logits=True): per-sample gradient sigmoid(z) - y, hessian p(1-p)."""
    rng = np.random.default_rng(3)
    z = rng.normal(0, 4, 1000)
    y = rng.integers(0, 2, 1000).astype(float)
    g, h = fastloss.BinaryCrossEntropy(from_logits=True).gradient_hessian(y, z)
    np.testing.assert_allclose(g, expit(z) - y, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h, expit(z) * expit(-z), rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# Relations between losses
# ---------------------------------------------------------------------------------------------

def test_bce_from_logits_is_two_class_softmax_cross_entropy(rng):
    z = rng.normal(0, 5, 500)
    y = rng.integers(0, 2, 500)
    w = rng.uniform(0, 1, 500)
    bce = fastloss.BinaryCrossEntropy(from_logits=True)
    ce = fastloss.CategoricalCrossEntropy(from_logits=True)
    rows = np.stack([np.zeros_like(z), z], axis=1)
    np.testing.assert_allclose(bce.loss(y, z, reduction="none"), ce.loss(y, rows, reduction="none"),
                               rtol=1e-13, atol=1e-15)
    assert bce.loss(y, z, sample_weight=w) == pytest.approx(ce.loss(y, rows, sample_weight=w),
                                                           rel=1e-13)
    g_b, h_b = bce.gradient_hessian(y, z)
    g_c, h_c = ce.gradient_hessian(y, rows)
    np.testing.assert_allclose(g_b, g_c[:, 1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h_b, h_c[:, 1], rtol=1e-12, atol=1e-15)
    # label smoothing means the same on both sides: (1 - eps) y + eps / 2
    bs = fastloss.BinaryCrossEntropy(from_logits=True, label_smoothing=0.3)
    cs = fastloss.CategoricalCrossEntropy(from_logits=True, label_smoothing=0.3)
    np.testing.assert_allclose(bs.loss(y, z, reduction="none"), cs.loss(y, rows, reduction="none"),
                               rtol=1e-13, atol=1e-15)


def test_probability_and_logit_forms_agree(rng):
    z = rng.normal(0, 2, 300)
    y = rng.uniform(0, 1, 300)
    for logit_loss, prob_loss in [
        (fastloss.BinaryCrossEntropy(from_logits=True, pos_weight=2.0, label_smoothing=0.1),
         fastloss.BinaryCrossEntropy(pos_weight=2.0, label_smoothing=0.1)),
        (fastloss.Focal(alpha=0.3, gamma=1.7, from_logits=True),
         fastloss.Focal(alpha=0.3, gamma=1.7)),
    ]:
        p = expit(z)
        np.testing.assert_allclose(logit_loss.loss(y, z, reduction="none"),
                                   prob_loss.loss(y, p, reduction="none"), rtol=1e-12)
        # chain rule: dl/dz = dl/dp * p (1 - p)
        np.testing.assert_allclose(logit_loss.gradient(y, z, reduction="none"),
                                   prob_loss.gradient(y, p, reduction="none") * p * (1 - p),
                                   rtol=1e-9, atol=1e-14)


def test_focal_with_gamma_0_is_weighted_bce(rng):
    z = rng.normal(0, 3, 400)
    y = rng.integers(0, 2, 400).astype(float)
    f = fastloss.Focal(alpha=0.25, gamma=0.0, from_logits=True)
    b = fastloss.BinaryCrossEntropy(from_logits=True)
    at = 0.25 * y + 0.75 * (1 - y)
    for a, c in zip(f.loss_gradient_hessian(y, z, reduction="none"),
                    b.loss_gradient_hessian(y, z, sample_weight=at, reduction="none")):
        np.testing.assert_allclose(a, c, rtol=1e-14, atol=1e-300)


def test_alpha_beta_weighted_bce(rng):
    """-(alpha y log p + beta (1 - y) log(1 - p)) through pos_weight or sample_weight."""
    alpha, beta = 3.0, 0.5
    p = rng.uniform(0.01, 0.99, 300)
    y = rng.integers(0, 2, 300).astype(float)
    expect = -(alpha * y * np.log(p) + beta * (1 - y) * np.log(1 - p))
    via_pw = beta * fastloss.BinaryCrossEntropy(pos_weight=alpha / beta).loss(
        y, p, reduction="none")
    via_w = fastloss.BinaryCrossEntropy().loss(y, p, sample_weight=alpha * y + beta * (1 - y),
                                               reduction="none")
    np.testing.assert_allclose(via_pw, expect, rtol=1e-13)
    np.testing.assert_allclose(via_w, expect, rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# Numerical edges
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_huge_logits_give_exact_limits(dtype):
    z = np.array([-1e4, 1e4, -1e4, 1e4], dtype)
    y = np.array([1, 1, 0, 0], dtype)
    with np.errstate(all="raise"):
        l, g, h = fastloss.BinaryCrossEntropy(from_logits=True).loss_gradient_hessian(
            y, z, reduction="none")
    np.testing.assert_array_equal(l, [1e4, 0, 0, 1e4])
    np.testing.assert_array_equal(g, [-1, 0, 0, 1])
    np.testing.assert_array_equal(h, [0, 0, 0, 0])
    l, g, h = fastloss.Focal(alpha=0.25, gamma=2.0, from_logits=True).loss_gradient_hessian(
        y, z, reduction="none")
    np.testing.assert_array_equal(l, [0.25e4, 0, 0, 0.75e4])
    np.testing.assert_array_equal(g, [-0.25, 0, 0, 0.75])
    np.testing.assert_array_equal(h, [0, 0, 0, 0])
    for gamma in (0.0, 0.5, 1.0, 3.0):
        for loss in (fastloss.Focal(alpha=None, gamma=gamma, from_logits=True),
                     fastloss.BinaryCrossEntropy(from_logits=True, pos_weight=2.0,
                                                 label_smoothing=0.1)):
            ys = np.array([0.0, 0.3, 1.0, 0.5], dtype)
            for zz in (z, -z):
                out = loss.loss_gradient_hessian(ys, zz, reduction="none")
                assert all(np.all(np.isfinite(a)) for a in out), (loss, out)
    l, g, h = fastloss.Hinge().loss_gradient_hessian(y, z, reduction="none")
    np.testing.assert_array_equal(l, [1e4 + 1, 0, 0, 1e4 + 1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_probabilities_0_and_1_are_clipped_to_eps(dtype):
    eps = probability_eps(dtype)
    y = np.array([1, 0, 1, 0], dtype)
    p = np.array([0, 1, 1, 0], dtype)
    l, g, h = fastloss.BinaryCrossEntropy().loss_gradient_hessian(y, p, reduction="none")
    assert np.all(np.isfinite(l)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    np.testing.assert_allclose(l[:2], -math.log(eps), rtol=1e-6)
    np.testing.assert_allclose(l[2:], -math.log1p(-eps), rtol=1e-6)
    # the derivatives are the formula's at the clipped value: -1/eps and 1/eps
    np.testing.assert_allclose(g[:2], [-1 / eps, 1 / eps], rtol=1e-6)
    fl = fastloss.Focal(gamma=0.5).loss_gradient_hessian(y, p, reduction="none")
    assert all(np.all(np.isfinite(a)) for a in fl)
    assert probability_eps(np.float64) == np.finfo(np.float64).eps
    assert probability_eps(np.float32) == np.finfo(np.float32).eps


@pytest.mark.parametrize("case", CASES)
def test_nan_propagates(case, rng):
    loss = CASES[case][0]
    y, p = make_data(case, 10, rng)
    p[3] = np.nan
    l, g, h = loss.loss_gradient_hessian(y, p, reduction="none")
    assert np.isnan(l[3]) and np.isnan(g[3]) and np.isnan(h[3])
    assert np.all(np.isfinite(np.delete(l, 3)))
    assert np.isnan(loss.loss(y, p))
    if CASES[case][3] == "soft":
        y[5] = np.nan
        assert np.isnan(loss.loss(y, p, reduction="none")[5])


@pytest.mark.parametrize("case", ["bce_logits", "focal_proba", "hinge_01"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_bits_for_any_thread_count(case, dtype, rng):
    loss = CASES[case][0]
    y, p = make_data(case, 300_001, rng, dtype)
    w = rng.uniform(0, 2, y.size).astype(dtype)
    runs = [loss.loss_gradient_hessian(y, p, sample_weight=w, n_threads=t) for t in (1, 2, 3)]
    for other in runs[1:]:
        for a, b in zip(other, runs[0]):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


# ---------------------------------------------------------------------------------------------
# PyTorch, with the conventions mapped explicitly
# ---------------------------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def test_torch_binary_cross_entropy_with_logits(rng):
    torch = _torch()
    F = torch.nn.functional
    n = 500
    z, y = rng.normal(0, 4, n), rng.uniform(0, 1, n)
    w = rng.uniform(0, 2, n)
    for pw in (1.0, 2.5):
        ours = fastloss.BinaryCrossEntropy(from_logits=True, pos_weight=pw)
        zt = torch.tensor(z, requires_grad=True)
        kw = dict(weight=torch.tensor(w), pos_weight=torch.tensor(pw, dtype=torch.float64))
        tl = F.binary_cross_entropy_with_logits(zt, torch.tensor(y), reduction="none", **kw)
        np.testing.assert_allclose(ours.loss(y, z, sample_weight=w, reduction="none"),
                                   tl.detach().numpy(), rtol=1e-12, atol=1e-15)
        # PyTorch's "mean" divides by n, ours by sum(w): compare through "sum"
        ts = F.binary_cross_entropy_with_logits(zt, torch.tensor(y), reduction="sum", **kw)
        (g_t,) = torch.autograd.grad(ts, zt)
        val, g = ours.loss_gradient(y, z, sample_weight=w, reduction="sum")
        assert val == pytest.approx(ts.item(), rel=1e-13)
        np.testing.assert_allclose(g, g_t.numpy(), rtol=1e-12, atol=1e-15)
        tm = F.binary_cross_entropy_with_logits(zt, torch.tensor(y), reduction="mean", **kw)
        assert ours.loss(y, z, sample_weight=w) * np.sum(w) / n == pytest.approx(tm.item(),
                                                                               rel=1e-13)
    # label smoothing is PyTorch with the smoothed target (1 - eps) y + eps / 2
    ls = fastloss.BinaryCrossEntropy(from_logits=True, label_smoothing=0.2)
    tl = F.binary_cross_entropy_with_logits(torch.tensor(z), torch.tensor(0.8 * y + 0.1),
                                            reduction="none")
    np.testing.assert_allclose(ls.loss(y, z, reduction="none"), tl.numpy(), rtol=1e-12)


def test_torch_binary_cross_entropy_from_probabilities(rng):
    torch = _torch()
    F = torch.nn.functional
    p, y = rng.uniform(0.001, 0.999, 400), rng.uniform(0, 1, 400)
    w = rng.uniform(0, 2, 400)
    for dtype, tdtype, rtol in [(np.float64, torch.float64, 1e-12),
                                (np.float32, torch.float32, 2e-6)]:
        pt = torch.tensor(p.astype(dtype), requires_grad=True)
        tl = F.binary_cross_entropy(pt, torch.tensor(y, dtype=tdtype),
                                    weight=torch.tensor(w, dtype=tdtype), reduction="sum")
        (g_t,) = torch.autograd.grad(tl, pt)
        val, g = fastloss.BinaryCrossEntropy().loss_gradient(
            y.astype(dtype), p.astype(dtype), sample_weight=w.astype(dtype), reduction="sum")
        assert val == pytest.approx(tl.item(), rel=rtol)
        np.testing.assert_allclose(g, g_t.numpy(), rtol=rtol * 10, atol=1e-6)


def _torch_sigmoid_focal(torch, x, y, alpha, gamma):
    """The torchvision.ops.sigmoid_focal_loss formula written with torch ops (reduction none)."""
    F = torch.nn.functional
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha is not None and alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (None, 1.5), (0.6, 0.5), (0.25, 0.0)])
def test_torch_sigmoid_focal_loss_and_autograd(alpha, gamma, rng):
    torch = _torch()
    n = 300
    z = rng.normal(0, 3, n)
    y = rng.integers(0, 2, n).astype(float)
    y[:50] = rng.uniform(0, 1, 50)
    x = torch.tensor(z, requires_grad=True)
    tl = _torch_sigmoid_focal(torch, x, torch.tensor(y), alpha, gamma)
    (g_t,) = torch.autograd.grad(tl.sum(), x, create_graph=True)
    (h_t,) = torch.autograd.grad(g_t.sum(), x)   # element-wise loss: the hessian is diagonal
    l, g, h = fastloss.Focal(alpha=alpha, gamma=gamma, from_logits=True).loss_gradient_hessian(
        y, z, reduction="none")
    np.testing.assert_allclose(l, tl.detach().numpy(), rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(g, g_t.detach().numpy(), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(h, h_t.numpy(), rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Peer library: scikit-learn
# ---------------------------------------------------------------------------------------------

def test_against_scikit_learn(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    y = rng.integers(0, 2, 500)
    p = rng.uniform(0.01, 0.99, 500)
    w = rng.uniform(0, 2, 500)
    assert fastloss.BinaryCrossEntropy().loss(y, p, sample_weight=w) == pytest.approx(
        metrics.log_loss(y, p, sample_weight=w), rel=1e-13)
    z = rng.normal(0, 2, 500)
    assert fastloss.Hinge().loss(y, z, sample_weight=w) == pytest.approx(
        metrics.hinge_loss(2 * y - 1, z, sample_weight=w), rel=1e-13)


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------

def _best_constant(loss, y, w, lo, hi):
    res = optimize.minimize_scalar(
        lambda c: float(loss.loss(y, np.full(y.shape, c), sample_weight=w)),
        bounds=(lo, hi), method="bounded", options=dict(xatol=1e-10))
    return res.x


@pytest.mark.parametrize("loss", [
    fastloss.BinaryCrossEntropy(from_logits=True),
    fastloss.BinaryCrossEntropy(from_logits=True, pos_weight=3.0, label_smoothing=0.2),
    fastloss.BinaryCrossEntropy(pos_weight=0.5),
    fastloss.Focal(from_logits=True),
    fastloss.Focal(alpha=None, gamma=1.0, from_logits=True),
    fastloss.Focal(alpha=0.8, gamma=3.0),
], ids=repr)
def test_baseline_minimises_the_loss(loss, rng):
    y = (rng.uniform(size=400) < 0.2).astype(float)
    y[:40] = rng.uniform(0, 1, 40)
    w = rng.uniform(0, 2, 400)
    c = loss.baseline(y, sample_weight=w)
    lo, hi = (-20, 20) if loss.from_logits else (1e-6, 1 - 1e-6)
    best = _best_constant(loss, y, w, lo, hi)
    assert c == pytest.approx(best, abs=1e-6)
    f = lambda v: float(loss.loss(y, np.full(y.shape, v), sample_weight=w))  # noqa: E731
    assert f(c) <= f(best) + 1e-12


def test_baseline_known_values():
    y = np.array([1.0, 0.0, 0.0, 0.0])
    assert fastloss.BinaryCrossEntropy().baseline(y) == pytest.approx(0.25)
    assert fastloss.BinaryCrossEntropy(from_logits=True).baseline(y) == pytest.approx(
        math.log(1 / 3))
    assert fastloss.BinaryCrossEntropy(from_logits=True, pos_weight=3.0).baseline(y) == (
        pytest.approx(0.0, abs=1e-15))
    assert fastloss.BinaryCrossEntropy(from_logits=True).baseline([1.0, 1.0]) == math.inf
    assert fastloss.Focal(from_logits=True).baseline([0.0, 0.0]) == -math.inf
    assert fastloss.Focal().baseline([1.0]) == 1.0
    assert fastloss.Hinge().baseline([1, 1, 0]) == 1.0
    assert fastloss.Hinge().baseline([1, -1]) == 0.0
    assert fastloss.Hinge().baseline([1, -1, -1], sample_weight=[3, 1, 1]) == 1.0
    assert fastloss.SquaredHinge().baseline([1, 0, 0, 0]) == -0.5
    with pytest.raises(ValueError, match="y_true must be in"):
        fastloss.BinaryCrossEntropy().baseline([2.0])
    with pytest.raises(ValueError, match="one label convention"):
        fastloss.Hinge().baseline([1, 0, -1])


@pytest.mark.parametrize("loss", [fastloss.Hinge(), fastloss.SquaredHinge()], ids=repr)
def test_hinge_baselines_minimise(loss, rng):
    y = rng.choice([-1.0, 1.0], 300, p=[0.3, 0.7])
    w = rng.uniform(0, 1, 300)
    c = loss.baseline(y, sample_weight=w)
    grid = np.linspace(-3, 3, 6001)
    vals = [float(loss.loss(y, np.full(300, v), sample_weight=w)) for v in grid]
    assert float(loss.loss(y, np.full(300, c), sample_weight=w)) <= min(vals) + 1e-12


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

def test_bad_targets_and_probabilities_name_the_argument():
    bce = fastloss.BinaryCrossEntropy()
    with pytest.raises(ValueError, match=r"BinaryCrossEntropy: y_true must be in \[0, 1\]"):
        bce.loss([0.5, 1.5], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"y_pred must be probabilities in \[0, 1\].*from_logits"):
        bce.loss([0.0, 1.0], [0.5, 2.0])
    with pytest.raises(ValueError, match=r"y_true must be in \[0, 1\] and y_pred must be"):
        bce.gradient([-1.0], [-0.5])
    assert np.isfinite(fastloss.BinaryCrossEntropy(from_logits=True).loss([1.0], [2.0]))
    with pytest.raises(ValueError, match=r"Focal: y_true must be in \[0, 1\]"):
        fastloss.Focal(from_logits=True).loss([2.0], [0.0])
    with pytest.raises(ValueError, match="Focal: y_pred must be probabilities"):
        fastloss.Focal().gradient_hessian([1.0], [1.5])
    for hinge in (fastloss.Hinge(), fastloss.SquaredHinge()):
        with pytest.raises(ValueError, match=r"y_true must be in \{-1, 1\} or \{0, 1\}"):
            hinge.loss([1.0, 0.5], [0.0, 0.0])
        with pytest.raises(ValueError, match=r"y_true must be in \{-1, 1\} or \{0, 1\}"):
            hinge.loss([2.0], [0.0])
        with pytest.raises(ValueError, match="one label convention.*both -1 and 0"):
            hinge.loss([1.0, 0.0, -1.0], [0.0, 0.0, 0.0])
        # each convention alone is fine, and they agree
        np.testing.assert_array_equal(hinge.loss([1, 0], [0.3, 0.3], reduction="none"),
                                      hinge.loss([1, -1], [0.3, 0.3], reduction="none"))


def test_parameters_are_validated():
    with pytest.raises(ValueError, match="pos_weight must be a finite number > 0, got 0"):
        fastloss.BinaryCrossEntropy(pos_weight=0)
    with pytest.raises(ValueError, match="label_smoothing must be a finite number >= 0 and <= 1"):
        fastloss.BinaryCrossEntropy(label_smoothing=1.5)
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        fastloss.BinaryCrossEntropy(from_logits=1)
    with pytest.raises(ValueError, match=r"alpha must be .* or None, got 1.5"):
        fastloss.Focal(alpha=1.5)
    with pytest.raises(TypeError, match="alpha must be a real number or None"):
        fastloss.Focal(alpha="a")
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        fastloss.Focal(gamma=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'margin'"):
        fastloss.Hinge(margin=2)
    assert fastloss.get("bce", from_logits=True) == fastloss.BinaryCrossEntropy(from_logits=True)
    assert fastloss.Focal(alpha=None).alpha is None


def test_functional_shortcuts(rng):
    y = rng.integers(0, 2, 50).astype(float)
    z = rng.normal(size=50)
    assert fastloss.binary_cross_entropy(y, z, from_logits=True) == (
        fastloss.BinaryCrossEntropy(from_logits=True).loss(y, z))
    assert fastloss.focal(y, expit(z), gamma=1.0, reduction="sum") == (
        fastloss.Focal(gamma=1.0).loss(y, expit(z), reduction="sum"))
    assert fastloss.hinge(y, z) == fastloss.Hinge().loss(y, z)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-14), (np.float32, 1e-6)])
def test_bce_probabilities_near_zero_and_smoothed_labels_stay_accurate(dtype, rtol):
    """-log(1 - p) for tiny p: 1 - p rounds, and log's condition number 1/p would turn that
    into 1e-7 relative at p = 1e-9 in float64 (1e-4 at p = 1e-4 in float32); and 1 - t for a
    smoothed label 1 cancels. Against log1p in float64 / mpmath."""
    p = np.array([1e-9, 1e-6, 1e-4, 0.3], dtype)
    y = np.zeros(4, dtype)
    got = fastloss.BinaryCrossEntropy().loss(y, p, reduction="none")
    c = np.clip(p.astype(np.float64), probability_eps(dtype), 1)      # float32: 1e-9 -> eps
    np.testing.assert_allclose(got, -np.log1p(-c), rtol=rtol)
    s = 0.05
    _, got = fastloss.BinaryCrossEntropy(label_smoothing=s).gradient_hessian(np.ones(4, dtype), p)
    t = mpmath.mpf(1) - mpmath.mpf(float(dtype(s))) / 2
    expect = [float(t / mpmath.mpf(float(v)) ** 2 + (1 - t) / (1 - mpmath.mpf(float(v))) ** 2)
              for v in c]
    np.testing.assert_allclose(got, expect, rtol=rtol)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-13), (np.float32, 1e-6)])
@pytest.mark.parametrize("gamma", [2.0, 1.5])
def test_focal_probabilities_near_zero_stay_accurate(dtype, rtol, gamma):
    """Focal from probabilities, negative labels, tiny p: the loss is p^g (-log(1 - p)), where
    1 - p rounds (float64 data at p < 1/2, float32 arithmetic at gamma = 2) and log's condition
    number 1/p made that 1e-7 relative at p = 1e-9 in float64. Against log1p in mpmath."""
    p = np.array([1e-9 * (1 + 2.0 ** -30), 3.3e-10, 7.77e-8, 1e-4, 0.3], dtype)
    y = np.zeros(5, dtype)
    got = fastloss.Focal(alpha=None, gamma=gamma).loss(y, p, reduction="none")
    eps = mpmath.mpf(float(probability_eps(dtype)))
    for g, v in zip(got, p):
        c = max(mpmath.mpf(float(v)), eps)
        want = c ** mpmath.mpf(gamma) * -mpmath.log1p(-c)
        assert abs(mpmath.mpf(float(g)) - want) <= rtol * want, (float(v), float(g), float(want))
