"""Row-wise multiclass losses against independent references.

References written here: NumPy/SciPy formulas (``log_softmax``, ``xlogy``), mpmath at 50 digits
(row losses and their partial derivatives by numerical differentiation), central finite
differences row by row, ``scipy.optimize.linprog`` for the hinge baselines, scikit-learn's
``hinge_loss``, and PyTorch (``cross_entropy`` with ``weight``/``label_smoothing``/
``ignore_index``, ``nll_loss``, ``kl_div``, ``multi_margin_loss``; autograd for the gradients
and the hessian diagonals) when it is installed, each with the convention mapped explicitly.
"""

import math
import warnings

import mpmath
import numpy as np
import pytest
from scipy import optimize
from scipy.special import log_softmax, softmax, xlogy

import fastloss
from fastloss import _core, _multiclass
from fastloss._rowwise import as_labels, as_rows
from fastloss.classification import probability_eps

mpmath.mp.dps = 50
CE = fastloss.CategoricalCrossEntropy


# ---------------------------------------------------------------------------------------------
# Independent references (per-row losses), NumPy
# ---------------------------------------------------------------------------------------------

def onehot(y, k):
    t = np.zeros((y.size, k))
    t[np.arange(y.size), y] = 1.0
    return t


def np_ce(t, z=None, p=None, class_weight=None, smoothing=0.0, eps=np.finfo(float).eps):
    """-sum_k c_k t'_k log q_k with t' = (1 - s) t + s / K; q = softmax(z) or clip(p)."""
    k = t.shape[1]
    ts = (1 - smoothing) * t + smoothing / k
    c = np.ones(k) if class_weight is None else np.asarray(class_weight, float)
    logq = log_softmax(z, axis=1) if z is not None else np.log(np.clip(p, eps, 1 - eps))
    return -np.sum(c * ts * logq, axis=1)


def np_ce_logits_derivatives(t, z, class_weight=None, smoothing=0.0):
    """The textbook derivatives: S softmax(z) - c t', diagonal S q (1 - q), S = sum c t'."""
    k = t.shape[1]
    ts = (1 - smoothing) * t + smoothing / k
    c = np.ones(k) if class_weight is None else np.asarray(class_weight, float)
    u = c * ts
    s = u.sum(axis=1, keepdims=True)
    q = softmax(z, axis=1)
    return s * q - u, s * q * (1 - q)


def np_kl(t, logq):
    return np.sum(xlogy(t, t) - t * logq, axis=1)


def np_hinge_cs(y, z, margin=1.0):
    zy = z[np.arange(y.size), y]
    other = z.copy()
    other[np.arange(y.size), y] = -np.inf
    return np.maximum(0, margin + other.max(axis=1) - zy)


def np_hinge_ww(y, z, margin=1.0):
    zy = z[np.arange(y.size), y][:, None]
    terms = np.maximum(0, margin + z - zy)
    terms[np.arange(y.size), y] = 0
    return terms.sum(axis=1)


def make_rows(n, k, rng, dtype=np.float64, kind="logits"):
    if kind == "logits":
        return (rng.normal(0, 2, (n, k))).astype(dtype)
    p = rng.dirichlet(np.ones(k), n)
    return p.astype(dtype)


def tol(dtype):
    return dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)


# (loss, target kind, pred kind, numpy reference of (y_true, y_pred) -> per-row losses)
# target kinds: "label" (int labels), "proba" (rows), "logproba" (log rows)
CW = (0.5, 2.0, 1.0, 3.0, 0.25)
CASES = {
    "ce_logits_label": (CE(from_logits=True), "label", "logits",
                        lambda y, z: np_ce(onehot(y, z.shape[1]), z=z)),
    "ce_logits_label_cw_ls": (
        CE(from_logits=True, class_weight=CW, label_smoothing=0.1), "label", "logits",
        lambda y, z: np_ce(onehot(y, z.shape[1]), z=z, class_weight=np.resize(CW, z.shape[1]),
                           smoothing=0.1)),
    "ce_logits_proba": (CE(from_logits=True, label_smoothing=0.05), "proba", "logits",
                        lambda t, z: np_ce(t, z=z, smoothing=0.05)),
    "ce_logits_proba_cw": (CE(from_logits=True, class_weight=CW), "proba", "logits",
                           lambda t, z: np_ce(t, z=z, class_weight=np.resize(CW, t.shape[1]))),
    "ce_proba_label": (CE(), "label", "proba", lambda y, p: np_ce(onehot(y, p.shape[1]), p=p)),
    "ce_proba_label_cw_ls": (
        CE(class_weight=CW, label_smoothing=0.2), "label", "proba",
        lambda y, p: np_ce(onehot(y, p.shape[1]), p=p, class_weight=np.resize(CW, p.shape[1]),
                           smoothing=0.2)),
    "ce_proba_proba": (CE(class_weight=CW), "proba", "proba",
                       lambda t, p: np_ce(t, p=p, class_weight=np.resize(CW, t.shape[1]))),
    "kl_logits_proba": (fastloss.KLDivergence(from_logits=True), "proba", "logits",
                        lambda t, z: np_kl(t, log_softmax(z, axis=1))),
    "kl_logits_logproba": (fastloss.KLDivergence(from_logits=True, log_target=True),
                           "logproba", "logits",
                           lambda lt, z: np_kl(np.exp(lt), log_softmax(z, axis=1))),
    "kl_proba_proba": (fastloss.KLDivergence(), "proba", "proba",
                       lambda t, p: np_kl(t, np.log(p))),
    "kl_proba_logproba": (fastloss.KLDivergence(log_target=True), "logproba", "proba",
                          lambda lt, p: np_kl(np.exp(lt), np.log(p))),
    "kl_logproba_proba": (fastloss.KLDivergence(log_pred=True), "proba", "logproba",
                          lambda t, lq: np_kl(t, lq)),
    "kl_logproba_logproba": (fastloss.KLDivergence(log_pred=True, log_target=True),
                             "logproba", "logproba", lambda lt, lq: np_kl(np.exp(lt), lq)),
    "hinge_cs": (fastloss.MulticlassHinge(), "label", "logits", np_hinge_cs),
    "hinge_cs_m2": (fastloss.MulticlassHinge(margin=2.0), "label", "logits",
                    lambda y, z: np_hinge_cs(y, z, 2.0)),
    "hinge_ww": (fastloss.MulticlassHinge(method="weston_watkins"), "label", "logits",
                 np_hinge_ww),
}
SMOOTH = [c for c in CASES if "hinge" not in c]


def make_data(case, n, rng, dtype=np.float64, k=5):
    _, target, pred, _ = CASES[case]
    z = rng.normal(0, 2, (n, k))
    if pred == "proba":
        yp = softmax(z, axis=1)
    elif pred == "logproba":
        yp = log_softmax(z, axis=1)
    else:
        yp = z
    if target == "label":
        yt = rng.integers(0, k, n)
    else:
        t = rng.dirichlet(np.full(k, 0.7), n)
        t[: n // 5] = onehot(rng.integers(0, k, n // 5), k)   # hard rows, with exact zeros
        with np.errstate(divide="ignore"):
            yt = t if target == "proba" else np.log(t)   # log 0 = -inf: a legal log target
        yt = yt.astype(dtype)
    return yt, yp.astype(dtype)


def with_classes(loss, k):
    """The loss with its class weights stretched to k classes (CW repeated)."""
    cw = loss.get_params().get("class_weight")
    if cw is None or len(cw) == k:
        return loss
    return type(loss)(**{**loss.get_params(), "class_weight": tuple(np.resize(CW, k))})


def ref_rows(case, yt, yp):
    ref = CASES[case][3]
    yt = yt if yt.ndim == 1 else yt.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ref(yt, yp.astype(np.float64))


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("k", [5, 12])   # the softmax rows take a scalar path up to 8 classes
def test_loss_matches_numpy(case, dtype, weighted, reduction, k, rng):
    loss, target, _, _ = CASES[case]
    loss = with_classes(loss, k)
    yt, yp = make_data(case, 301, rng, dtype, k=k)
    w = rng.uniform(0, 2, 301).astype(dtype) if weighted else None
    rows = ref_rows(case, yt, yp)
    wd = np.ones(301) if w is None else w.astype(np.float64)
    # "mean" divides by sum w_i c[y_i] with labels (PyTorch), by sum w_i with target rows
    cw = loss.get_params().get("class_weight")
    denom = np.sum(wd * np.asarray(cw)[yt]) if (target == "label" and cw) else np.sum(wd)
    expect = {"none": wd * rows, "sum": np.sum(wd * rows),
              "mean": np.sum(wd * rows) / denom}[reduction]
    got = loss.loss(yt, yp, sample_weight=w, reduction=reduction)
    assert np.asarray(got).dtype == dtype
    np.testing.assert_allclose(got, expect, **tol(dtype))


@pytest.mark.parametrize("k", [2, 3, 17, 1000, 10_000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_any_number_of_classes(k, dtype, rng):
    n = max(8, 200_000 // k)
    z = make_rows(n, k, rng, dtype)
    y = rng.integers(0, k, n)
    ce = CE(from_logits=True, label_smoothing=0.1)
    l, g, h = ce.loss_gradient_hessian(y, z, reduction="none")
    zd = z.astype(np.float64)
    np.testing.assert_allclose(l, np_ce(onehot(y, k), z=zd, smoothing=0.1), **tol(dtype))
    eg, eh = np_ce_logits_derivatives(onehot(y, k), zd, smoothing=0.1)
    np.testing.assert_allclose(g, eg, **tol(dtype))
    np.testing.assert_allclose(h, eh, **tol(dtype))
    # the same through F order, without a copy
    zf = np.asfortranarray(z)
    assert as_rows(zf, np.dtype(dtype)) is zf
    lf, gf, hf = ce.loss_gradient_hessian(y, zf, reduction="none")
    assert lf.tobytes() == l.tobytes() and gf.tobytes() == g.tobytes()
    assert hf.tobytes() == h.tobytes()


# ---------------------------------------------------------------------------------------------
# Derivatives: reference formulas, finite differences row by row, mpmath
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cw", [None, CW])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("labels", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [5, 12])
def test_cross_entropy_from_logits_derivatives(cw, smoothing, labels, dtype, k, rng):
    z = make_rows(400, k, rng, dtype)
    y = rng.integers(0, k, 400)
    t = onehot(y, k) if labels else rng.dirichlet(np.ones(k), 400)
    cw = None if cw is None else tuple(np.resize(cw, k))
    yt = y if labels else t.astype(dtype)
    g, h = CE(from_logits=True, class_weight=cw, label_smoothing=smoothing).gradient_hessian(
        yt, z)
    eg, eh = np_ce_logits_derivatives(t, z.astype(np.float64), cw, smoothing)
    np.testing.assert_allclose(g, eg, **tol(dtype))
    np.testing.assert_allclose(h, eh, **tol(dtype))


def _fd_rows(loss, yt, yp, step):
    """Central differences of every row's loss and gradient with respect to each column.

    Rows are independent, so moving column k of every row at once gives, for each row, the
    partial derivative of that row's loss with respect to its own entry k.
    """
    n, k = yp.shape
    fd_g, fd_h = np.empty((n, k)), np.empty((n, k))
    for j in range(k):
        up, dn = yp.copy(), yp.copy()
        up[:, j] += step[:, j]
        dn[:, j] -= step[:, j]
        lp, gp = loss.loss_gradient(yt, up, reduction="none")
        lm, gm = loss.loss_gradient(yt, dn, reduction="none")
        fd_g[:, j] = (lp - lm) / (2 * step[:, j])
        fd_h[:, j] = (gp[:, j] - gm[:, j]) / (2 * step[:, j])
    return fd_g, fd_h


@pytest.mark.parametrize("case", SMOOTH)
@pytest.mark.parametrize("k", [5, 12])
def test_finite_differences_row_by_row(case, k, rng):
    loss, _, pred, _ = CASES[case]
    loss = with_classes(loss, k)
    yt, yp = make_data(case, 200, rng, k=k)
    if pred == "proba":
        yp = np.clip(yp, 0.02, 0.98)
    if pred == "logproba":
        yp = np.minimum(yp, -0.02)
    step = 1e-6 * np.maximum(1.0, np.abs(yp))
    if pred != "logits":
        step = np.full_like(yp, 1e-7)
    _, g, h = loss.loss_gradient_hessian(yt, yp, reduction="none")
    fd_g, fd_h = _fd_rows(loss, yt, yp, step)
    np.testing.assert_allclose(g, fd_g, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h, fd_h, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["hinge_cs", "hinge_cs_m2", "hinge_ww"])
def test_hinge_derivatives(case, rng):
    loss, _, _, _ = CASES[case]
    yt, z = make_data(case, 300, rng)
    margin = loss.margin
    _, g, h = loss.loss_gradient_hessian(yt, z, reduction="none")
    assert np.all(h == 0)
    # reference: Crammer-Singer +1 at the arg-max rival and -1 at y where the term is positive;
    # Weston-Watkins +1 at every violating rival and minus their count at y
    n = yt.size
    eg = np.zeros_like(z)
    zy = z[np.arange(n), yt]
    if loss.method == "crammer_singer":
        other = z.copy()
        other[np.arange(n), yt] = -np.inf
        j = np.argmax(other, axis=1)
        on = margin + other[np.arange(n), j] - zy > 0
        eg[np.arange(n)[on], j[on]] = 1
        eg[np.arange(n)[on], yt[on]] = -1
    else:
        viol = (margin + z - zy[:, None] > 0)
        viol[np.arange(n), yt] = False
        eg[viol] = 1
        eg[np.arange(n), yt] = -viol.sum(axis=1)
    np.testing.assert_array_equal(g, eg)
    # and finite differences away from the kinks
    away = np.abs(margin + z - zy[:, None]).min(axis=1) > 1e-3
    fd_g, _ = _fd_rows(loss, yt[away], z[away], np.full(z[away].shape, 1e-7))
    np.testing.assert_allclose(g[away], fd_g, rtol=1e-6, atol=1e-6)


def _mp_ce_row(t, z, cw=None, smoothing=0.0):
    k = len(z)
    m = max(z)
    lse = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in z))
    c = [1] * k if cw is None else cw
    ts = [(1 - mpmath.mpf(smoothing)) * tk + mpmath.mpf(smoothing) / k for tk in t]
    return mpmath.fsum(c[j] * ts[j] * (lse - z[j]) for j in range(k))


@pytest.mark.parametrize("cw,smoothing", [(None, 0.0), (CW, 0.15)])
@pytest.mark.parametrize("k", [5, 9])
def test_cross_entropy_high_precision(cw, smoothing, k):
    """Confident rows keep full relative precision: loss, gradient and hessian vs mpmath."""
    rows = np.array([[30.0, 0.0, 0.0, -5.0, 1.0], [40.0, 39.0, -3.0, 0.5, 0.0],
                     [-2.0, 0.1, 0.2, 0.3, 0.4], [700.0, -700.0, 0.0, 1e-3, 5.0],
                     [1e-8, 0.0, -1e-8, 2e-8, 0.0], [12.0, 35.0, -35.0, 0.0, 3.0]])
    rows = np.hstack([rows, np.full((6, k - 5), -4.0)])
    cw = None if cw is None else tuple(np.resize(cw, k))
    labels = np.array([0, 1, 3, 0, 2, 1])
    loss = CE(from_logits=True, class_weight=cw, label_smoothing=smoothing)
    l, g, h = loss.loss_gradient_hessian(labels, rows, reduction="none")
    for i in range(rows.shape[0]):
        t = [1 if j == labels[i] else 0 for j in range(k)]
        zi = [mpmath.mpf(float(v)) for v in rows[i]]
        f = lambda *v: _mp_ce_row(t, list(v), cw, smoothing)  # noqa: E731
        assert l[i] == pytest.approx(float(f(*zi)), rel=1e-13, abs=1e-300)
        for j in range(k):
            d1 = [0] * k
            # 700 digits: numerical differentiation must resolve derivatives near 1e-302
            with mpmath.workdps(700):
                d1[j] = 1
                eg = float(mpmath.diff(f, zi, tuple(d1)))
                d1[j] = 2
                eh = float(mpmath.diff(f, zi, tuple(d1)))
            assert g[i, j] == pytest.approx(eg, rel=1e-12, abs=1e-300), (i, j)
            assert h[i, j] == pytest.approx(eh, rel=1e-12, abs=1e-300), (i, j)


def test_gbdt_contract_softmax_minus_onehot(rng):
    """CategoricalCrossEntropy(from_logits=True).gradient_hessian(labels (n,), logits (n, K))."""
    z = rng.normal(0, 3, (500, 4))
    y = rng.integers(0, 4, 500)
    g, h = CE(from_logits=True).gradient_hessian(y, z)
    assert g.shape == h.shape == (500, 4) and g.flags.c_contiguous
    q = softmax(z, axis=1)
    np.testing.assert_allclose(g, q - onehot(y, 4), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h, q * (1 - q), rtol=1e-12, atol=1e-300)
    w = rng.uniform(0, 2, 500)
    gw, hw = CE(from_logits=True).gradient_hessian(y, z, sample_weight=w)
    np.testing.assert_allclose(gw, w[:, None] * g, rtol=1e-15)
    np.testing.assert_allclose(hw, w[:, None] * h, rtol=1e-15)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_derivatives_follow_the_reduction(case, reduction, rng):
    loss, target, _, _ = CASES[case]
    yt, yp = make_data(case, 100, rng)
    w = rng.uniform(0, 2, 100)
    _, g1, h1 = loss.loss_gradient_hessian(yt, yp, sample_weight=w, reduction=reduction)
    g0, h0 = loss.gradient_hessian(yt, yp)
    cw = loss.get_params().get("class_weight")
    denom = np.sum(w * np.asarray(cw)[yt]) if (target == "label" and cw) else np.sum(w)
    factor = (w / denom if reduction == "mean" else w)[:, None]
    np.testing.assert_allclose(g1, factor * g0, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(h1, factor * h0, rtol=1e-14, atol=1e-300)
    np.testing.assert_array_equal(loss.gradient(yt, yp, sample_weight=w, reduction=reduction), g1)


# ---------------------------------------------------------------------------------------------
# Relations, conventions
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_one_hot_targets_equal_integer_labels(from_logits, smoothing, rng):
    z = make_rows(300, 6, rng, kind="logits" if from_logits else "proba")
    y = rng.integers(0, 6, 300)
    w = rng.uniform(0, 2, 300)
    cw = (1.0, 2.0, 0.5, 1.5, 3.0, 0.1)
    for weights in (None, cw):
        loss = CE(from_logits=from_logits, class_weight=weights, label_smoothing=smoothing)
        a = loss.loss_gradient_hessian(y, z, sample_weight=w, reduction="none")
        b = loss.loss_gradient_hessian(onehot(y, 6), z, sample_weight=w, reduction="none")
        for x, x2 in zip(a, b):
            np.testing.assert_allclose(x, x2, rtol=1e-14, atol=1e-300)
        assert loss.loss(y, z, reduction="sum") == pytest.approx(
            loss.loss(onehot(y, 6), z, reduction="sum"), rel=1e-14)
    # the means agree without class weights; with them PyTorch divides labels by sum c[y_i]
    loss = CE(from_logits=from_logits, label_smoothing=smoothing)
    assert loss.loss(y, z, sample_weight=w) == pytest.approx(
        loss.loss(onehot(y, 6), z, sample_weight=w), rel=1e-14)


def test_kl_is_cross_entropy_minus_entropy(rng):
    t = rng.dirichlet(np.ones(4), 200)
    z = rng.normal(size=(200, 4))
    kl = fastloss.KLDivergence(from_logits=True).loss_gradient_hessian(t, z, reduction="none")
    ce = CE(from_logits=True).loss_gradient_hessian(t, z, reduction="none")
    np.testing.assert_allclose(kl[0], ce[0] + np.sum(xlogy(t, t), axis=1), rtol=1e-12)
    np.testing.assert_allclose(kl[1], ce[1], rtol=1e-15)   # gradient q - t
    np.testing.assert_allclose(kl[1], softmax(z, axis=1) - t, rtol=1e-12, atol=1e-15)
    # the four (log-)input forms agree
    lt, lq, q = np.log(t), log_softmax(z, axis=1), softmax(z, axis=1)
    for loss, args in [(fastloss.KLDivergence(), (t, q)),
                       (fastloss.KLDivergence(log_target=True), (lt, q)),
                       (fastloss.KLDivergence(log_pred=True), (t, lq)),
                       (fastloss.KLDivergence(log_pred=True, log_target=True), (lt, lq))]:
        np.testing.assert_allclose(loss.loss(*args, reduction="none"), kl[0], rtol=1e-11,
                                   atol=1e-15)


def test_zero_log_zero_is_zero():
    t = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    for loss, yp in [(fastloss.KLDivergence(), np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])),
                     (fastloss.KLDivergence(log_pred=True),
                      np.log([[1.0, 1e-300, 1e-300], [0.5, 0.5, 1e-300]])),
                     (fastloss.KLDivergence(log_target=True, log_pred=True),
                      np.log([[1.0, 1e-300, 1e-300], [0.5, 0.5, 1e-300]]))]:
        with np.errstate(divide="ignore"):
            yt = np.log(t) if loss.log_target else t
        l, g, h = loss.loss_gradient_hessian(yt, yp, reduction="none")
        assert np.all(np.isfinite(l)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
        np.testing.assert_allclose(l, 0.0, atol=1e-13)
    # a logit of -inf for a class with target 0 adds nothing
    z = np.array([[0.0, -np.inf, 1.0]])
    assert CE(from_logits=True).loss([2], z) == pytest.approx(np.log1p(np.exp(-1.0)))


def test_ignore_index_and_pytorch_weighting_by_hand():
    z = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.2, 0.2, 0.6]]))
    y = np.array([0, -100, 2, 1])
    cw = (1.0, 2.0, 0.5)
    loss = CE(from_logits=True, class_weight=cw, ignore_index=-100)
    rows = loss.loss(y, z, reduction="none")
    expect = np.array([-1.0 * np.log(0.7), 0.0, -0.5 * np.log(0.4), -2.0 * np.log(0.2)])
    np.testing.assert_allclose(rows, expect, rtol=1e-14)
    assert loss.loss(y, z) == pytest.approx(expect.sum() / (1.0 + 0.5 + 2.0), rel=1e-14)
    g = loss.gradient(y, z, reduction="none")
    assert np.all(g[1] == 0)
    w = np.array([1.0, 5.0, 2.0, 0.5])
    assert loss.loss(y, z, sample_weight=w) == pytest.approx(
        (w * expect).sum() / (1.0 * 1 + 0.5 * 2 + 2.0 * 0.5), rel=1e-14)
    # ignore_index may be a valid class; everything ignored gives NaN (as PyTorch) and 0 gradient
    assert CE(from_logits=True, ignore_index=0).loss([0, 0], z[:2]) != CE(
        from_logits=True).loss([0, 0], z[:2])
    v, gz = CE(from_logits=True, ignore_index=0).loss_gradient([0, 0], z[:2])
    assert math.isnan(v) and np.all(gz == 0)


# ---------------------------------------------------------------------------------------------
# Numerical edges, NaN, layouts, threads
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_huge_logits_give_exact_limits(dtype):
    z = np.array([[1e4, -1e4, 0.0]] * 3, dtype)
    y = np.array([0, 1, 2])
    with np.errstate(all="raise"):
        l, g, h = CE(from_logits=True).loss_gradient_hessian(y, z, reduction="none")
    np.testing.assert_array_equal(l, [0, 2e4, 1e4])
    np.testing.assert_array_equal(g, [[0, 0, 0], [1, -1, 0], [1, 0, -1]])
    np.testing.assert_array_equal(h, np.zeros((3, 3)))
    # the same on the vectorised path (more than 8 classes)
    wide = np.hstack([z, np.full((3, 9), -1e4, dtype)])
    l, g, h = CE(from_logits=True).loss_gradient_hessian(y, wide, reduction="none")
    np.testing.assert_array_equal(l, [0, 2e4, 1e4])
    np.testing.assert_array_equal(g[:, :3], [[0, 0, 0], [1, -1, 0], [1, 0, -1]])
    np.testing.assert_array_equal(g[:, 3:], 0)
    np.testing.assert_array_equal(h, 0)
    t = np.array([[0.5, 0.5, 0.0]] * 3, dtype)
    l, g, h = fastloss.KLDivergence(from_logits=True).loss_gradient_hessian(
        t, z, reduction="none")
    assert np.all(np.isfinite(l)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    np.testing.assert_allclose(l, [1e4 - np.log(2), 1e4 - np.log(2), 1e4 - np.log(2)],
                               rtol=1e-7)
    for loss in (fastloss.MulticlassHinge(), fastloss.MulticlassHinge(method="weston_watkins")):
        out = loss.loss_gradient_hessian(y, z, reduction="none")
        assert all(np.all(np.isfinite(a)) for a in out)
        np.testing.assert_array_equal(out[0][:2], [0, 2e4 + 1] if loss.method[0] == "c" else
                                      [0, 2e4 + 1 + 1e4 + 1])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("k", [5, 12])
def test_nan_propagates_to_its_row(case, k, rng):
    loss = with_classes(CASES[case][0], k)
    yt, yp = make_data(case, 6, rng, k=k)
    yp = yp.copy()
    yp[2, 0] = np.nan
    if CASES[case][2] != "logits" and CASES[case][1] == "label":
        yt[2] = 0            # a NaN probability matters where the target has weight
    l, g, h = loss.loss_gradient_hessian(yt, yp, reduction="none")
    assert np.isnan(l[2]) and np.isnan(g[2, 0]) and np.isnan(h[2, 0])
    assert np.all(np.isfinite(np.delete(l, 2)))
    assert np.isnan(loss.loss(yt, yp))


def test_nan_probability_of_another_class_still_gives_nan():
    p = np.array([[0.2, np.nan, 0.8], [0.2, 0.3, 0.5]])
    l, g, h = CE().loss_gradient_hessian([0, 0], p, reduction="none")
    assert np.isnan(l[0]) and np.isnan(g[0, 1]) and np.isnan(h[0, 1]) and g[0, 2] == 0
    assert np.isfinite(l[1])
    t = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert np.isnan(fastloss.KLDivergence().loss(t, p, reduction="none")[0])


def test_layouts_are_used_without_copies_and_agree(tmp_path, rng):
    z = rng.normal(size=(50, 7))
    y = rng.integers(0, 7, 50)
    t = rng.dirichlet(np.ones(7), 50)
    loss = CE(from_logits=True, class_weight=(1, 2, 3, 4, 5, 6, 7), label_smoothing=0.1)
    ref = loss.loss_gradient_hessian(y, z, reduction="none")
    ref_t = loss.loss_gradient_hessian(t, z, reduction="none")
    big = np.zeros((100, 21))
    big[::2, ::3] = z
    ro = z.copy()
    ro.flags.writeable = False
    np.save(tmp_path / "z.npy", z)
    views = {"F": np.asfortranarray(z), "strided": big[::2, ::3], "read-only": ro,
             "memmap": np.load(tmp_path / "z.npy", mmap_mode="r"),
             "reversed": z[::-1][::-1], "list": z.tolist()}
    for label, v in views.items():
        if isinstance(v, np.ndarray):
            assert as_rows(v, np.dtype(np.float64)) is v, label
        for a, b in zip(loss.loss_gradient_hessian(y, v, reduction="none"), ref):
            assert a.tobytes() == b.tobytes(), label
    # negative strides and F-ordered targets
    rev = loss.loss_gradient_hessian(y[::-1], z[::-1], reduction="none")
    assert rev[0].tobytes() == ref[0][::-1].tobytes()
    for a, b in zip(loss.loss_gradient_hessian(np.asfortranarray(t), z[:, :], reduction="none"),
                    ref_t):
        assert a.tobytes() == b.tobytes()
    # a broadcast row (stride 0) works too
    row = np.broadcast_to(z[0], (50, 7))
    l_b = loss.loss(y, row, reduction="none")
    np.testing.assert_array_equal(l_b, loss.loss(y, np.tile(z[0], (50, 1)), reduction="none"))
    # inputs are never modified
    z0 = z.copy()
    loss.loss_gradient_hessian(y, z)
    np.testing.assert_array_equal(z, z0)


def test_label_dtypes(rng):
    z = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, 40)
    ref = CE(from_logits=True).loss(y, z, reduction="none")
    for dt in (np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64, np.float32, float):
        np.testing.assert_array_equal(CE(from_logits=True).loss(y.astype(dt), z, reduction="none"),
                                      ref)
    y32 = y.astype(np.int32)
    assert as_labels(y32) is y32
    assert as_labels(y) is y
    np.testing.assert_array_equal(
        CE(from_logits=True).loss(y[::-1].astype(np.int32), z[::-1], reduction="none"), ref[::-1])
    yb = (y > 0)
    np.testing.assert_array_equal(CE(from_logits=True).loss(yb, z, reduction="none"),
                                  CE(from_logits=True).loss(yb.astype(int), z, reduction="none"))


def test_dtype_rules(rng):
    z = rng.normal(size=(10, 3))
    y = rng.integers(0, 3, 10)
    assert CE(from_logits=True).loss(y, z.astype(np.float16)).dtype == np.float32
    assert CE(from_logits=True).gradient(y, (z * 10).astype(np.int64)).dtype == np.float64
    assert CE(from_logits=True).loss(y, z.astype(np.float32), reduction="none").dtype == (
        np.float32)
    t = softmax(z, axis=1)
    g = fastloss.KLDivergence().gradient(t, t.astype(np.float32))
    assert g.dtype == np.float32


@pytest.mark.parametrize("case", ["ce_logits_label_cw_ls", "kl_proba_proba", "hinge_ww"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [5, 10_000])
def test_same_bits_for_any_thread_count(case, dtype, k, rng):
    loss = CASES[case][0]
    if "cw" in case:
        loss = CE(from_logits=True, class_weight=tuple(np.linspace(0.5, 2, k)),
                  label_smoothing=0.1)
    yt, yp = make_data(case, 400_000 // k, rng, dtype, k=k)
    w = rng.uniform(0, 2, yp.shape[0]).astype(dtype)
    runs = [loss.loss_gradient_hessian(yt, yp, sample_weight=w, n_threads=t) for t in (1, 2, 3)]
    for other in runs[1:]:
        for a, b in zip(other, runs[0]):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    s = [loss.loss(yt, np.asfortranarray(yp), reduction="sum", n_threads=t) for t in (1, 2)]
    assert s[0].tobytes() == s[1].tobytes()


def test_block_partials_reproduce_the_reduction(rng):
    z = rng.normal(size=(3000, 7))
    y = rng.integers(0, 7, 3000)
    loss = CE(from_logits=True)
    nb = -(-3000 // _multiclass.rows_per_block(7))
    assert _multiclass.rows_per_block(7) == _core.build_info()["block_size"] // 7
    assert _multiclass.rows_per_block(100_000) == 1
    parts = np.zeros(nb)
    total, _, _ = loss._run(y, z, None, "sum", 2, loss=True, grad=False, hess=False,
                            partials=parts)
    assert _core.combine_partials(parts) == total
    np.testing.assert_allclose(parts.sum(), np.sum(loss.loss(y, z, reduction="none")), rtol=1e-13)


def test_out_arrays_are_filled_and_returned(rng):
    z = rng.normal(size=(20, 4))
    y = rng.integers(0, 4, 20)
    lo, go, ho = np.empty(20), np.empty((20, 4)), np.empty((20, 4))
    loss = CE(from_logits=True)
    l, g, h = loss.loss_gradient_hessian(y, z, reduction="none", loss_out=lo, gradient_out=go,
                                         hessian_out=ho)
    assert l is lo and g is go and h is ho
    g2, h2 = loss.gradient_hessian(y, z)
    np.testing.assert_array_equal(g2, go)
    with pytest.raises(ValueError, match=r"gradient_out must have shape \(20, 4\), got \(80,\)"):
        loss.gradient(y, z, out=np.empty(80))
    with pytest.raises(ValueError, match="gradient_out must be C-contiguous"):
        loss.gradient(y, z, out=np.empty((20, 4), order="F"))
    with pytest.raises(ValueError, match=r"loss_out must have shape \(20,\)"):
        loss.loss(y, z, reduction="none", loss_out=np.empty((20, 4)))
    with pytest.raises(ValueError, match="hessian_out must have dtype float64, got float32"):
        loss.gradient_hessian(y, z, hessian_out=np.empty((20, 4), np.float32))


def test_empty_inputs():
    loss = CE(from_logits=True)
    assert math.isnan(loss.loss(np.zeros(0, int), np.zeros((0, 3))))
    assert loss.loss(np.zeros(0, int), np.zeros((0, 3)), reduction="sum") == 0
    g, h = loss.gradient_hessian(np.zeros(0, int), np.zeros((0, 3)))
    assert g.shape == (0, 3) and h.shape == (0, 3)
    assert loss.loss(np.zeros((0, 3)), np.zeros((0, 3)), reduction="none").shape == (0,)


# ---------------------------------------------------------------------------------------------
# PyTorch, with the conventions mapped explicitly
# ---------------------------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _torch_derivatives(torch, fn, x):
    """Value of fn (a sum of per-row losses), its gradient and the diagonal of its hessian."""
    xt = torch.tensor(x, requires_grad=True)
    value = fn(xt)
    (g,) = torch.autograd.grad(value, xt, create_graph=True)
    h = np.zeros_like(x)
    if not g.requires_grad:   # the gradient does not depend on x: the hessian is 0
        return value.item(), g.detach().numpy(), h
    for k in range(x.shape[1]):
        v = torch.zeros_like(xt)
        v[:, k] = 1
        (hv,) = torch.autograd.grad(g, xt, grad_outputs=v, retain_graph=True)
        h[:, k] = hv[:, k].detach().numpy()
    return value.item(), g.detach().numpy(), h


@pytest.mark.parametrize("weight", [None, CW])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_cross_entropy_integer_labels(weight, smoothing, ignore, reduction, rng):
    torch = _torch()
    F = torch.nn.functional
    z = rng.normal(0, 2, (200, 5))
    y = rng.integers(0, 5, 200)
    if ignore:
        y[rng.uniform(size=200) < 0.2] = -100
    kw = dict(label_smoothing=smoothing, ignore_index=-100)
    if weight is not None:
        kw["weight"] = torch.tensor(weight, dtype=torch.float64)
    ours = CE(from_logits=True, class_weight=weight, label_smoothing=smoothing,
              ignore_index=-100 if ignore else None)
    yt = torch.tensor(y)
    expect = F.cross_entropy(torch.tensor(z), yt, reduction=reduction, **kw).numpy()
    np.testing.assert_allclose(ours.loss(y, z, reduction=reduction), expect, rtol=1e-12,
                               atol=1e-15)
    # derivatives of the same reduction, by autograd (the mean is torch's, = ours)
    red = "sum" if reduction == "none" else reduction
    _, g_t, h_t = _torch_derivatives(
        torch, lambda x: F.cross_entropy(x, yt, reduction=red, **kw), z)
    _, g, h = ours.loss_gradient_hessian(y, z, reduction=red)
    np.testing.assert_allclose(g, g_t, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(h, h_t, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("weight", [None, CW])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_torch_cross_entropy_probability_targets(weight, smoothing, rng):
    torch = _torch()
    F = torch.nn.functional
    z = rng.normal(0, 2, (150, 5))
    t = rng.dirichlet(np.ones(5), 150)
    kw = dict(label_smoothing=smoothing)
    if weight is not None:
        kw["weight"] = torch.tensor(weight, dtype=torch.float64)
    ours = CE(from_logits=True, class_weight=weight, label_smoothing=smoothing)
    tt = torch.tensor(t)
    for reduction in ("mean", "sum", "none"):
        # with target probabilities PyTorch's "mean" divides by n, as ours does
        expect = F.cross_entropy(torch.tensor(z), tt, reduction=reduction, **kw).numpy()
        np.testing.assert_allclose(ours.loss(t, z, reduction=reduction), expect, rtol=1e-12)
    _, g_t, h_t = _torch_derivatives(torch, lambda x: F.cross_entropy(x, tt, **kw), z)
    _, g, h = ours.loss_gradient_hessian(t, z)
    np.testing.assert_allclose(g, g_t, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(h, h_t, rtol=1e-11, atol=1e-15)


def test_torch_cross_entropy_float32(rng):
    torch = _torch()
    F = torch.nn.functional
    z = rng.normal(0, 3, (500, 10)).astype(np.float32)
    y = rng.integers(0, 10, 500)
    expect = F.cross_entropy(torch.tensor(z), torch.tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(CE(from_logits=True).loss(y, z, reduction="none"), expect,
                               rtol=2e-6, atol=2e-6)


def test_torch_nll_of_probabilities(rng):
    torch = _torch()
    F = torch.nn.functional
    p = rng.dirichlet(np.ones(4), 200)
    y = rng.integers(0, 4, 200)
    w = (1.0, 0.5, 2.0, 1.5)
    # from probabilities = nll_loss(log p): PyTorch's weighted mean divides by sum w[y_i] too
    expect = F.nll_loss(torch.tensor(np.log(p)), torch.tensor(y),
                        weight=torch.tensor(w, dtype=torch.float64))
    assert CE(class_weight=w).loss(y, p) == pytest.approx(expect.item(), rel=1e-13)
    pt = torch.tensor(p, requires_grad=True)
    (g_t,) = torch.autograd.grad(F.nll_loss(torch.log(pt), torch.tensor(y), reduction="sum"), pt)
    np.testing.assert_allclose(CE().gradient(y, p, reduction="sum"), g_t.numpy(), rtol=1e-13)


@pytest.mark.parametrize("log_target", [False, True])
def test_torch_kl_div(log_target, rng):
    torch = _torch()
    F = torch.nn.functional
    z = rng.normal(0, 2, (120, 6))
    t = rng.dirichlet(np.full(6, 0.5), 120)
    if not log_target:
        # exact zeros: 0 log 0 = 0 on both sides (PyTorch's log_target=True form would give
        # exp(-inf) * (-inf - x) = NaN for them, where fastloss gives 0)
        t[:10] = onehot(rng.integers(0, 6, 10), 6)
    tgt = np.log(t) if log_target else t
    tt = torch.tensor(tgt)
    lq = log_softmax(z, axis=1)

    def kl(x):  # PyTorch's input is log q; "batchmean" is the mean over rows
        return F.kl_div(x, tt, reduction="batchmean", log_target=log_target)

    expect = kl(torch.tensor(lq)).item()
    ours_lp = fastloss.KLDivergence(log_pred=True, log_target=log_target)
    assert ours_lp.loss(tgt, lq) == pytest.approx(expect, rel=1e-12)
    # PyTorch's "mean" divides by n * K (it warns about that)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch_mean = F.kl_div(torch.tensor(lq), tt, reduction="mean", log_target=log_target)
    assert ours_lp.loss(tgt, lq) / 6 == pytest.approx(torch_mean.item(), rel=1e-12)
    v, g_t, h_t = _torch_derivatives(torch, kl, lq)
    _, g, h = ours_lp.loss_gradient_hessian(tgt, lq)
    np.testing.assert_allclose(g, g_t, rtol=1e-13, atol=1e-16)
    np.testing.assert_array_equal(h, 0)
    # from logits: the same loss, derivatives through log_softmax
    ours_z = fastloss.KLDivergence(from_logits=True, log_target=log_target)
    v, g_t, h_t = _torch_derivatives(torch, lambda x: kl(torch.log_softmax(x, dim=1)), z)
    val, g, h = ours_z.loss_gradient_hessian(tgt, z)
    assert val == pytest.approx(v, rel=1e-12)
    np.testing.assert_allclose(g, g_t, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(h, h_t, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_torch_multi_margin_loss_is_weston_watkins_over_k(margin, rng):
    torch = _torch()
    F = torch.nn.functional
    z = rng.normal(0, 1, (300, 5))
    y = rng.integers(0, 5, 300)
    ours = fastloss.MulticlassHinge(margin=margin, method="weston_watkins")
    expect = F.multi_margin_loss(torch.tensor(z), torch.tensor(y), margin=margin,
                                 reduction="none").numpy()
    np.testing.assert_allclose(ours.loss(y, z, reduction="none"), 5 * expect, rtol=1e-13)
    zt = torch.tensor(z, requires_grad=True)
    (g_t,) = torch.autograd.grad(
        F.multi_margin_loss(zt, torch.tensor(y), margin=margin, reduction="sum"), zt)
    np.testing.assert_allclose(ours.gradient(y, z, reduction="sum"), 5 * g_t.numpy(),
                               rtol=1e-13)


def test_scikit_learn_hinge_loss_is_crammer_singer(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    z = rng.normal(0, 1, (300, 4))
    y = rng.integers(0, 4, 300)
    w = rng.uniform(0, 2, 300)
    assert fastloss.MulticlassHinge().loss(y, z, sample_weight=w) == pytest.approx(
        metrics.hinge_loss(y, z, labels=np.arange(4), sample_weight=w), rel=1e-13)
    p = softmax(z, axis=1)
    assert CE().loss(y, p, sample_weight=w) == pytest.approx(
        metrics.log_loss(y, p, sample_weight=w, labels=np.arange(4)), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss,labels", [
    (CE(from_logits=True), True), (CE(from_logits=True), False),
    (CE(from_logits=True, class_weight=(1, 2, 0.5, 1), label_smoothing=0.1), True),
    (CE(from_logits=True, class_weight=(1, 2, 0.5, 1), label_smoothing=0.1), False),
    (fastloss.KLDivergence(from_logits=True), False),
], ids=repr)
def test_baseline_minimises_from_logits(loss, labels, rng):
    y = rng.choice(4, 500, p=[0.5, 0.3, 0.15, 0.05])
    yt = y if labels else rng.dirichlet(np.ones(4), 500)
    w = rng.uniform(0, 2, 500)
    c = loss.baseline(yt, sample_weight=w, n_classes=4)
    assert c.shape == (4,)
    rows = np.tile(c, (500, 1))
    # stationary: the summed gradient vanishes, and scipy finds nothing lower
    np.testing.assert_allclose(loss.gradient(yt, rows, sample_weight=w, reduction="sum").sum(0),
                               0, atol=1e-10)
    f = lambda v: float(loss.loss(yt, np.tile(v, (500, 1)), sample_weight=w))  # noqa: E731
    res = optimize.minimize(f, np.zeros(4), method="BFGS")
    assert f(c) <= res.fun + 1e-12


def test_baseline_known_values():
    y = np.array([0, 0, 1, 2, 2, 2])
    np.testing.assert_allclose(CE(from_logits=True).baseline(y), np.log([2 / 6, 1 / 6, 3 / 6]))
    np.testing.assert_allclose(CE().baseline(y, n_classes=4), [2 / 6, 1 / 6, 3 / 6, 0])
    b = CE(from_logits=True, class_weight=(1, 2, 0)).baseline(y)
    np.testing.assert_allclose(b, [np.log(0.5), np.log(0.5), -np.inf])
    ign = CE(ignore_index=-1).baseline([0, -1, -1, 1])
    np.testing.assert_allclose(ign, [0.5, 0.5])
    t = np.array([[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(fastloss.KLDivergence().baseline(t), [0.4, 0.6])
    np.testing.assert_allclose(fastloss.KLDivergence(log_pred=True).baseline(t), np.log([0.4, 0.6]))
    np.testing.assert_allclose(fastloss.MulticlassHinge().baseline([0, 0, 0, 1]), [1, 0])
    np.testing.assert_allclose(fastloss.MulticlassHinge().baseline([0, 0, 1, 1]), [0, 0])
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 2\)"):
        CE().baseline([0, 1, 2], n_classes=2)


def _hinge_lp(mass, margin, method):
    """The optimal constant's loss by linear programming (scipy's HiGHS)."""
    k = mass.size
    pairs = [(a, j) for a in range(k) for j in range(k) if a != j]
    if method == "weston_watkins":
        # variables c (k), s_aj >= 0 per pair; s_aj >= margin + c_j - c_a
        nv = k + len(pairs)
        cost = np.concatenate([np.zeros(k), [mass[a] for a, _ in pairs]])
        a_ub = np.zeros((len(pairs), nv))
        for r, (a, j) in enumerate(pairs):
            a_ub[r, j], a_ub[r, a], a_ub[r, k + r] = 1, -1, -1
    else:
        # variables c (k), s_a >= 0 per class; s_a >= margin + c_j - c_a for every j != a
        nv = 2 * k
        cost = np.concatenate([np.zeros(k), mass])
        a_ub = np.zeros((len(pairs), nv))
        for r, (a, j) in enumerate(pairs):
            a_ub[r, j], a_ub[r, a], a_ub[r, k + a] = 1, -1, -1
    b_ub = np.full(len(pairs), -margin)
    bounds = [(None, None)] * k + [(0, None)] * (nv - k)
    res = optimize.linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("method", ["crammer_singer", "weston_watkins"])
def test_hinge_baseline_is_the_linear_programming_optimum(method, rng):
    for trial in range(25):
        k = int(rng.integers(2, 8))
        probs = rng.dirichlet(np.full(k, 0.5 if trial % 2 else 3.0))
        y = rng.choice(k, 200, p=probs)
        w = rng.uniform(0, 1, 200)
        margin = float(rng.choice([1.0, 0.7]))
        loss = fastloss.MulticlassHinge(margin=margin, method=method)
        c = loss.baseline(y, sample_weight=w, n_classes=k)
        ours = float(loss.loss(y, np.tile(c, (200, 1)), sample_weight=w, reduction="sum"))
        mass = np.bincount(y, weights=w, minlength=k)
        assert ours == pytest.approx(_hinge_lp(mass, margin, method), rel=1e-9, abs=1e-9)


def test_weston_watkins_baseline_scales_to_many_classes(rng):
    y = rng.integers(0, 2000, 20_000)
    c = fastloss.MulticlassHinge(method="weston_watkins").baseline(y, n_classes=2000)
    assert c.shape == (2000,) and np.all(np.isfinite(c))


# ---------------------------------------------------------------------------------------------
# Bad input: named arguments, and never an out-of-bounds read
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", [CE(from_logits=True), CE(), CE(ignore_index=-100),
                                  fastloss.MulticlassHinge(),
                                  fastloss.MulticlassHinge(method="weston_watkins")], ids=repr)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_labels_out_of_range_are_refused(loss, reduction):
    p = np.full((4, 3), 1 / 3)
    for bad in (3, -1, 2**40, -(2**40), 2**31 - 1, -(2**31)):
        y = np.array([0, 1, bad, 2])
        with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\) for y_pred with "
                                             rf"3 columns.*got {bad}"):
            loss.loss(y, p, reduction=reduction)
        with pytest.raises(ValueError, match="class labels"):
            loss.gradient_hessian(y, p)
        with pytest.raises(ValueError, match="class labels"):
            loss.loss(y.astype(np.float64), p, reduction=reduction)
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\)"):
        loss.loss(np.array([0, 1, 2**64 - 1, 2], np.uint64), p, reduction=reduction)


def test_bad_inputs_name_the_argument(rng):
    z = rng.normal(size=(10, 3))
    y = rng.integers(0, 3, 10)
    ce = CE(from_logits=True)
    with pytest.raises(ValueError, match="class labels must be integers.*non-integral value 1.5"):
        ce.loss(np.where(y == 0, 1.5, y), z)
    with pytest.raises(ValueError, match="class labels must be integers.*nan"):
        ce.loss(np.where(y == 0, np.nan, y), z)
    with pytest.raises(ValueError, match="y_true has 9 labels but y_pred has 10 rows"):
        ce.loss(y[:9], z)
    with pytest.raises(ValueError, match=r"y_true and y_pred must have the same shape.*\(10, 4\)"):
        ce.loss(np.ones((10, 4)) / 4, z)
    with pytest.raises(ValueError, match=r"y_pred must be 2-D \(n_samples, n_classes\), got "
                                         r"shape \(10,\)"):
        ce.loss(y, z[:, 0])
    with pytest.raises(ValueError, match="y_pred must have at least one column"):
        ce.loss(y, np.zeros((10, 0)))
    with pytest.raises(ValueError, match="y_true must be integer class labels of shape"):
        ce.loss(np.ones((10, 3, 1)), z)
    with pytest.raises(ValueError, match="class_weight has 2 entries but y_pred has 3 columns"):
        CE(class_weight=(1.0, 2.0)).loss(y, softmax(z, axis=1))
    with pytest.raises(ValueError, match="class_weight has 4 entries"):
        CE(from_logits=True, class_weight=(1, 1, 1, 1)).loss(np.eye(3)[y], z, reduction="sum")
    with pytest.raises(ValueError, match=r"y_true must be target probabilities in \[0, 1\]"):
        ce.loss(np.full((10, 3), 1.5), z)
    with pytest.raises(ValueError, match=r"y_pred must be probabilities in \[0, 1\].*from_logits"):
        CE().loss(y, z)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(10,\)"):
        ce.loss(y, z, sample_weight=np.ones((10, 1)))
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        ce.loss(y, z, sample_weight=-np.ones(10))
    with pytest.raises(ValueError, match="sample_weight must not sum to 0"):
        ce.loss(y, z, sample_weight=np.zeros(10))
    with pytest.raises(ValueError, match="reduction must be one of"):
        ce.loss(y, z, reduction="batchmean")
    with pytest.raises(TypeError, match="y_pred must hold real numbers"):
        ce.loss(y, z.astype(complex))
    with pytest.raises(TypeError, match="y_true must hold real numbers"):
        ce.loss(np.array(["a"] * 10), z)
    kl = fastloss.KLDivergence()
    p = softmax(z, axis=1)
    with pytest.raises(ValueError, match=r"KLDivergence: y_true must be probabilities in \[0, 1\] "
                                         "of shape"):
        kl.loss(y, p)
    with pytest.raises(ValueError, match="y_true must be log-probabilities <= 0"):
        fastloss.KLDivergence(log_target=True).loss(p, p)
    with pytest.raises(ValueError, match="y_pred must be log-probabilities <= 0"):
        fastloss.KLDivergence(log_pred=True).loss(p, p)
    with pytest.raises(ValueError, match=r"y_pred must be probabilities in \[0, 1\]"):
        kl.loss(p, z)
    with pytest.raises(ValueError, match="MulticlassHinge: y_true must be integer class labels"):
        fastloss.MulticlassHinge().loss(p, z)


def test_parameters_are_validated():
    with pytest.raises(ValueError, match=r"class_weight must hold finite numbers >= 0, not all 0"):
        CE(class_weight=(0, 0))
    with pytest.raises(ValueError, match="class_weight must hold"):
        CE(class_weight=(1.0, -1.0))
    with pytest.raises(ValueError, match="class_weight must hold"):
        CE(class_weight=(1.0, np.inf))
    with pytest.raises(TypeError, match="class_weight must be a 1-D sequence"):
        CE(class_weight=[[1.0, 2.0]])
    with pytest.raises(TypeError, match="class_weight must be a 1-D sequence"):
        CE(class_weight="abc")
    with pytest.raises(TypeError, match="ignore_index must be an integer or None"):
        CE(ignore_index=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        CE(label_smoothing=-0.1)
    with pytest.raises(ValueError, match="from_logits and log_pred cannot both be True"):
        fastloss.KLDivergence(from_logits=True, log_pred=True)
    with pytest.raises(ValueError, match="method must be one of 'crammer_singer', "
                                         "'weston_watkins', got 'cs'"):
        fastloss.MulticlassHinge(method="cs")
    with pytest.raises(ValueError, match="margin must be a finite number > 0"):
        fastloss.MulticlassHinge(margin=0)
    loss = CE(class_weight=np.array([1, 2]), ignore_index=np.int64(-100))
    assert loss.class_weight == (1.0, 2.0) and loss.ignore_index == -100
    assert eval(repr(loss), vars(fastloss)) == loss
    import pickle
    assert pickle.loads(pickle.dumps(loss)) == loss
    assert fastloss.get("cross_entropy", from_logits=True) == CE(from_logits=True)


def test_kernels_check_sizes_themselves():
    """The compiled drivers refuse inconsistent sizes even when called directly."""
    e, e2 = np.empty(0), np.empty((0, 0))
    z = np.zeros((4, 3))
    cw = np.ones(3)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="y_true has 3 rows, y_pred has 4"):
        _multiclass.ce_logits_label(z, y[:3], e, e, e2, e2, True, 1.0, 1, e, cw, 0.0, 0, False)
    with pytest.raises(ValueError, match="class_weight has 2 entries, y_pred has 3 columns"):
        _multiclass.ce_logits_label(z, y, e, e, e2, e2, True, 1.0, 1, e, cw[:2], 0.0, 0, False)
    with pytest.raises(ValueError, match=r"gradient_out has shape \(4, 2\), expected \(4, 3\)"):
        _multiclass.ce_logits_label(z, y, e, e, np.empty((4, 2)), e2, True, 1.0, 1, e, cw, 0.0,
                                    0, False)
    with pytest.raises(ValueError, match="y_true has 2 columns, y_pred has 3"):
        _multiclass.kl_proba_proba(z, np.zeros((4, 2)), e, e, e2, e2, True, 1.0, 1, e, 1e-16)
    with pytest.raises(ValueError, match="partials has 5 slots, expected 1"):
        _multiclass.hinge_weston_watkins(z, y, e, e, e2, e2, True, 1.0, 1, np.zeros(5), 1.0, 0,
                                         False)
    total, flags = _multiclass.ce_logits_label(z, np.array([0, 1, 7, 2]), e, e, np.empty((4, 3)),
                                               e2, True, 1.0, 1, e, cw, 0.0, 0, False)
    assert flags == 1
    assert _multiclass.label_weight_sum(np.array([0, 5, 1]), cw, e, 0, False, 1) == (2.0, 1)


def test_kernels_check_types_themselves():
    """The compiled drivers read their arrays through the NumPy C API (no typed memoryviews):
    each wrong type, dtype, dimension count or byte order is refused with the argument named,
    and the int32 / int64 label and float32 / float64 combinations agree with each other."""
    e, e2 = np.empty(0), np.empty((0, 0))
    z = np.random.default_rng(0).standard_normal((6, 3))
    cw = np.ones(3)
    y = np.array([0, 1, 2, 2, 1, 0])
    ce = _multiclass.ce_logits_label
    tail = (e, e, e2, e2, True, 1.0, 1, e, cw, 0.0, 0, False)
    with pytest.raises(TypeError, match="y_pred must be a numpy.ndarray, got list"):
        ce(z.tolist(), y, *tail)
    with pytest.raises(ValueError, match="y_pred must be float32 or float64, got int64"):
        ce(z.astype(np.int64), y, *tail)
    with pytest.raises(ValueError, match="y_pred must be 2-D, got 1 dimensions"):
        ce(z[:, 0].copy(), y, *tail)
    with pytest.raises(ValueError, match="y_pred must be aligned and in native byte order"):
        ce(z.astype(z.dtype.newbyteorder()), y, *tail)
    with pytest.raises(ValueError, match="y_true labels must be int32 or int64, got float64"):
        ce(z, y.astype(np.float64), *tail)
    with pytest.raises(ValueError, match="y_true labels must be int32 or int64, got uint32"):
        ce(z, y.astype(np.uint32), *tail)
    with pytest.raises(ValueError, match="y_true must be 1-D"):
        ce(z, y[:, None], *tail)
    with pytest.raises(TypeError, match="class_weight must be a numpy.ndarray"):
        ce(z, y, e, e, e2, e2, True, 1.0, 1, e, [1.0, 1.0, 1.0], 0.0, 0, False)
    with pytest.raises(ValueError, match="class_weight has dtype float32"):
        ce(z, y, e, e, e2, e2, True, 1.0, 1, e, cw.astype(np.float32), 0.0, 0, False)
    with pytest.raises(ValueError, match="y_true has dtype float32, expected that of y_pred"):
        _multiclass.kl_proba_proba(z, np.full((6, 3), 1 / 3, np.float32), e, e, e2, e2, True,
                                   1.0, 1, e, 1e-16)
    with pytest.raises(ValueError, match="sample_weight has dtype float32"):
        ce(z, y, np.ones(6, np.float32), e, e2, e2, True, 1.0, 1, e, cw, 0.0, 0, False)
    # every dtype pairing computes the same thing (float32 to its own precision), and strided
    # views (every other row, reversed columns) read the right elements
    ref = ce(z, y, *tail)
    assert ce(z, y.astype(np.int32), *tail) == ref
    e32, e32x2 = np.empty(0, np.float32), np.empty((0, 0), np.float32)
    t32, f32 = ce(z.astype(np.float32), y.astype(np.int32), e32, e32, e32x2, e32x2, True, 1.0, 1,
                  e, cw, 0.0, 0, False)
    assert f32 == 0 and t32 == pytest.approx(ref[0], rel=1e-6)
    zz = np.zeros((12, 3))
    zz[::2] = z[:, ::-1]
    assert ce(zz[::2, ::-1], y, *tail) == ref
    yy = np.zeros(12, np.int64)
    yy[1::2] = y
    assert ce(z, yy[1::2], *tail) == ref
    # the reference, from the formula: the mean of log-sum-exp(z) - z_y
    lse = np.log(np.exp(z).sum(axis=1))
    assert ref[0] == pytest.approx(np.sum(lse - z[np.arange(6), y]), rel=1e-13)


def test_unaligned_inputs_are_copied_for_the_kernels():
    """Arrays at an address that is not a multiple of their item size (views into a byte
    buffer, as deserialisers make them) are copied by the Python layer: the drivers refuse
    them, and the results are those of the aligned arrays."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((5, 4))
    y = np.array([3, 0, 1, 2, 1])

    def unaligned(a):
        buf = np.zeros(a.nbytes + 1, np.uint8)
        out = buf[1:].view(a.dtype).reshape(a.shape)
        out[...] = a
        assert not out.flags.aligned
        return out

    loss = CE(from_logits=True)
    want = loss.loss_gradient_hessian(y, z, reduction="none")
    got = loss.loss_gradient_hessian(unaligned(y), unaligned(z), reduction="none")
    for a, b in zip(want, got):
        assert np.array_equal(a, b)
    t = np.full((5, 4), 0.25)
    assert np.array_equal(loss.loss(t, z, reduction="none"),
                          loss.loss(unaligned(t), unaligned(z), reduction="none"))


def test_regression_mean_of_huge_losses_does_not_overflow():
    """A "mean" of row losses near the float64 maximum was inf: the float64 sum of w*l
    overflowed although the mean itself is finite (found by test_weights_scale_per_sample).
    The reference is the row loss from its formula, lse(z) - z_y = |z_1 - z_0| for a row
    (-a, a), and the mean of equal rows is that row's loss."""
    a = 8e307
    z = np.array([[-a, a]] * 3)
    ce = fastloss.CategoricalCrossEntropy(from_logits=True)
    row = float(mpmath.mpf(a) - mpmath.mpf(-a))          # lse(z) - z_0 = 2a, exp(-2a) = 0
    assert ce.loss([0, 0, 0], z) == pytest.approx(row, rel=1e-15)
    w = np.array([1.0, 2.0, 0.5])
    assert ce.loss([0, 0, 0], z, sample_weight=w) == pytest.approx(row, rel=1e-15)
    value, g = ce.loss_gradient([0, 0, 0], z, sample_weight=w)
    assert value == pytest.approx(row, rel=1e-15)
    # the gradient w_i (softmax - onehot) / sum(w) is that of the unscaled call, bit for bit
    assert np.array_equal(g, ce.gradient([0, 0, 0], z, sample_weight=w))
    np.testing.assert_allclose(g, (w / w.sum())[:, None] * np.array([[-1.0, 1.0]]), rtol=1e-15)
    hinge = fastloss.MulticlassHinge(margin=1.5e308)
    assert hinge.loss([0, 1, 0], np.zeros((3, 2))) == 1.5e308          # max(0, margin + 0 - 0)
    assert hinge.loss([0, 1], np.zeros((2, 2)), reduction="sum") == np.inf   # the sum is inf


def test_regression_subnormal_weights():
    """Found by test_weights_scale_per_sample (KLDivergence(log_target=True), one row):

    * the "mean" with weights summing to a subnormal was 36.0 instead of -log(eps) = 36.04...:
      w * l was rounded to the subnormal grid (the row-wise path did not rescale the weights
      as the element-wise one does);
    * the per-row gradient -w t / q for w = 5e-324 was -0.0 instead of -8.19e-309: the kernel
      formed w * t first, which underflowed, before dividing by the clipped q = eps.
    The references are the formulas with mpmath."""
    eps = probability_eps(np.float64)
    kl = fastloss.KLDivergence(log_target=True)
    expect = float(-mpmath.log(mpmath.mpf(eps)))                   # t = exp(0) = 1, q = eps
    assert kl.loss([[0.0]], [[0.0]], sample_weight=[5e-324]) == pytest.approx(expect, rel=1e-15)
    ce = fastloss.CategoricalCrossEntropy()
    assert ce.loss([0, 1], [[0.0, 1.0], [0.5, 0.5]], sample_weight=[5e-324, 5e-324]) \
        == pytest.approx(float((-mpmath.log(mpmath.mpf(eps)) - mpmath.log(0.5)) / 2), rel=1e-15)
    g = kl.gradient([[-1.0]], [[0.0]], sample_weight=[5e-324], reduction="none")
    ref = float(-mpmath.mpf(5e-324) * mpmath.exp(-1) / mpmath.mpf(eps))
    assert g[0, 0] == pytest.approx(ref, rel=1e-15)
    _, h = kl.gradient_hessian([[-1.0]], [[0.0]], sample_weight=[5e-324])   # w t / q^2
    assert h[0, 0] == pytest.approx(
        float(mpmath.mpf(5e-324) * mpmath.exp(-1) / mpmath.mpf(eps) ** 2), rel=1e-15)
