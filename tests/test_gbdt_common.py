"""The GBDT adapters without any GBDT library: derivatives, policies, layouts, links, pickling.

Every expected value is written from the formula in NumPy here (or taken from SciPy).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import fastloss
import fastloss.catboost as fcb
import fastloss.lightgbm as flgb
import fastloss.xgboost as fxgb
from fastloss._gbdt import AUTO_HESSIAN, apply_link

from gbdt_support import NumpyBCE, NumpyFocal, NumpySoftmaxCE

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = [fxgb.Objective, fxgb.SklearnObjective, flgb.Objective, flgb.SklearnObjective,
            fcb.Objective]
METRICS = [fxgb.Metric, fxgb.SklearnMetric, flgb.Metric, flgb.SklearnMetric, fcb.Metric]

rng = np.random.default_rng(42)
N = 257
Y = rng.normal(size=N)
P = rng.normal(size=N)
W = rng.uniform(0.1, 3.0, size=N)


class FakeDMatrix:
    """The two methods an XGBoost objective uses, over NumPy arrays (XGBoost's float32)."""

    def __init__(self, label, weight=None):
        self._label = np.asarray(label, np.float32)
        self._weight = np.empty(0, np.float32) if weight is None else np.asarray(weight,
                                                                                   np.float32)

    def get_label(self):
        return self._label

    def get_weight(self):
        return self._weight


class FakeDataset:
    """The two methods a LightGBM objective uses (labels float32, weights or None)."""

    def __init__(self, label, weight=None):
        self._label = np.asarray(label, np.float32)
        self._weight = weight

    def get_label(self):
        return self._label

    def get_weight(self):
        return self._weight


# ---------------------------------------------------------------------------------------------
# derivatives: scale, weights, hessian policies
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_squared_error_on_the_libraries_scale(weighted):
    w = W if weighted else None
    g, h = flgb.Objective(fastloss.MSE()).derivatives(Y, P, w)
    ww = 1.0 if w is None else w
    np.testing.assert_allclose(g, ww * (P - Y), rtol=1e-15)   # half squared error
    np.testing.assert_allclose(h, ww * np.ones(N), rtol=1e-15)
    g2, h2 = flgb.Objective(fastloss.MSE(), scale=1.0).derivatives(Y, P, w)
    np.testing.assert_allclose(g2, 2 * ww * (P - Y), rtol=1e-15)  # fastloss's own
    np.testing.assert_allclose(h2, 2 * ww * np.ones(N), rtol=1e-15)


@pytest.mark.parametrize("loss,grad,hess", [
    (fastloss.Poisson(), lambda y, mu: mu - y, lambda y, mu: mu),
    (fastloss.Gamma(), lambda y, mu: 1 - y / mu, lambda y, mu: y / mu),
    (fastloss.Tweedie(power=1.5), lambda y, mu: mu ** 0.5 - y * mu ** -0.5,
     lambda y, mu: 0.5 * mu ** 0.5 + 0.5 * y * mu ** -0.5),
], ids=["poisson", "gamma", "tweedie"])
def test_log_link_losses_are_negative_log_likelihoods(loss, grad, hess):
    y = rng.gamma(2.0, 1.0, size=N)
    g, h = fxgb.Objective(loss).derivatives(y, P, W)
    mu = np.exp(P)
    np.testing.assert_allclose(g, W * grad(y, mu), rtol=1e-12)
    np.testing.assert_allclose(h, W * hess(y, mu), rtol=1e-12)


def test_constant_hessian_is_the_auto_policy_of_mae():
    obj = fxgb.Objective(fastloss.MAE())
    assert obj.hessian_policy == ("constant", 1.0)
    g, h = obj.derivatives(Y, P, W)
    np.testing.assert_array_equal(g, W * np.sign(P - Y))
    np.testing.assert_array_equal(h, W)
    g, h = fxgb.Objective(fastloss.MAE(), hessian="constant", hessian_value=0.5).derivatives(Y, P)
    np.testing.assert_array_equal(h, np.full(N, 0.5))


def test_floor_applies_per_unit_weight():
    y = np.zeros(N)
    p = np.linspace(-8, 8, N)  # log-cosh hessian sech^2 spans 1 .. 4.5e-7
    _, own = fastloss.LogCosh().gradient_hessian(y, p)   # the loss's exact hessian
    np.testing.assert_allclose(own, 1 / np.cosh(p) ** 2, rtol=1e-8)
    g, h = flgb.Objective(fastloss.LogCosh(), hessian="floor", hessian_value=0.1).derivatives(
        y, p, W)
    np.testing.assert_allclose(h, W * np.maximum(own, 0.1), rtol=1e-15)
    np.testing.assert_allclose(g, W * np.tanh(p), rtol=1e-12)
    _, h = flgb.Objective(fastloss.LogCosh(), hessian="exact").derivatives(y, p, W)
    np.testing.assert_allclose(h, W * own, rtol=1e-15)
    _, h = flgb.Objective(fastloss.LogCosh(), hessian="floor").derivatives(y, p)
    np.testing.assert_array_equal(h, np.maximum(own, 1e-6))  # default floor 1e-6


def test_focal_auto_hessian_is_bounded_where_exact_is_negative():
    z = np.linspace(-6, 6, 121)
    y = np.ones_like(z)
    _, exact = fxgb.Objective(NumpyFocal(), hessian="exact").derivatives(y, z)
    assert exact.min() < 0  # confidently wrong: the exact hessian is negative
    obj = fxgb.Objective(NumpyFocal())
    assert obj.hessian_policy == AUTO_HESSIAN["focal"]
    _, h = obj.derivatives(y, z)
    assert np.all(h > 0)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("module,factor", [(fxgb, lambda k: 2.0), (flgb, lambda k: k / (k - 1)),
                                           (fcb, lambda k: 1.0)], ids=["xgb", "lgb", "cb"])
def test_softmax_bound_is_each_librarys(module, factor):
    k = 5
    z = rng.normal(size=(N, k))
    labels = rng.integers(0, k, size=N)
    obj = module.Objective(NumpySoftmaxCE(k))
    g, h = obj.derivatives(labels.astype(np.float32), z, W)
    p = _softmax(z)
    np.testing.assert_allclose(g, W[:, None] * (p - np.eye(k)[labels]), rtol=1e-12)
    np.testing.assert_allclose(h, factor(k) * W[:, None] * p * (1 - p), rtol=1e-12)
    _, h = module.Objective(NumpySoftmaxCE(k), hessian="exact").derivatives(labels, z, W)
    np.testing.assert_allclose(h, W[:, None] * p * (1 - p), rtol=1e-12)


def test_multiclass_labels_must_be_integral():
    obj = fxgb.Objective(NumpySoftmaxCE(3))
    with pytest.raises(ValueError, match="integers"):
        obj.derivatives(np.array([0.0, 1.5]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="element-wise"):
        fxgb.Objective(fastloss.MSE()).derivatives(np.zeros(2), np.zeros((2, 3)))


def test_elementwise_multi_output_broadcasts_row_weights():
    y = rng.normal(size=(N, 3))
    z = rng.normal(size=(N, 3))
    g, h = fxgb.Objective(fastloss.MSE()).derivatives(y, z, W)
    np.testing.assert_allclose(g, W[:, None] * (z - y), rtol=1e-15)
    np.testing.assert_allclose(h, np.repeat(W[:, None], 3, axis=1), rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# call forms and layouts
# ---------------------------------------------------------------------------------------------
def test_xgboost_native_call_float32_and_weights():
    p32 = P.astype(np.float32)
    g, h = fxgb.Objective(fastloss.MSE())(p32, FakeDMatrix(Y, W))
    assert g.dtype == h.dtype == np.float32
    np.testing.assert_allclose(g, W.astype(np.float32) * (p32 - Y.astype(np.float32)), rtol=1e-6)
    g_unw, _ = fxgb.Objective(fastloss.MSE())(p32, FakeDMatrix(Y))
    np.testing.assert_allclose(g_unw, p32 - Y.astype(np.float32), rtol=1e-6)


def test_xgboost_flat_row_major_multiclass_layout():
    # XGBoost 1.x: margins flattened row-major; the gradient must come back the same way.
    k = 3
    z = rng.normal(size=(N, k)).astype(np.float32)
    labels = rng.integers(0, k, size=N)
    obj = fxgb.Objective(NumpySoftmaxCE(k))
    g2, h2 = obj(z, FakeDMatrix(labels, W))
    g1, h1 = obj(z.reshape(-1), FakeDMatrix(labels, W))
    assert g1.shape == (N * k,)
    np.testing.assert_array_equal(g1, g2.reshape(-1))
    np.testing.assert_array_equal(h1, h2.reshape(-1))


def test_lightgbm_flat_class_major_multiclass_layout():
    # LightGBM 3: scores flattened class-major (class k of row i at k * n + i), float64.
    k = 3
    z = rng.normal(size=(N, k))
    labels = rng.integers(0, k, size=N)
    obj = flgb.Objective(NumpySoftmaxCE(k))
    g2, h2 = obj(np.asfortranarray(z), FakeDataset(labels, W))
    g1, h1 = obj(z.ravel(order="F"), FakeDataset(labels, W))
    assert g1.dtype == np.float32 and g1.shape == (N * k,)
    np.testing.assert_array_equal(g1, g2.ravel(order="F"))
    np.testing.assert_array_equal(h1, h2.ravel(order="F"))
    p = _softmax(z)
    np.testing.assert_allclose(g2, W[:, None] * (p - np.eye(k)[labels]), rtol=1e-6, atol=1e-7)


def test_lightgbm_outputs_float32():
    g, h = flgb.Objective(fastloss.Poisson())(P, FakeDataset(np.abs(Y), W))
    assert g.dtype == h.dtype == np.float32 and g.flags.c_contiguous


def _fake_module(monkeypatch, name, version):
    monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(__version__=version))


def test_lightgbm_sklearn_forms(monkeypatch):
    obj = flgb.SklearnObjective(fastloss.MSE())
    _fake_module(monkeypatch, "lightgbm", "4.6.0")
    g, _ = obj(Y, P, W)  # LightGBM 4: the third argument is the weight, applied here
    np.testing.assert_allclose(g, W * (P - Y), rtol=1e-6)
    g, _ = obj(Y, P)     # called with two arguments: no weights
    np.testing.assert_allclose(g, P - Y, rtol=1e-6)
    _fake_module(monkeypatch, "lightgbm", "3.3.5")
    g, _ = obj(Y, P, np.array([3, 4]))  # LightGBM 3: a query group; LightGBM weights itself
    np.testing.assert_allclose(g, P - Y, rtol=1e-6)
    name, value, higher = flgb.SklearnMetric(fastloss.MSE())(Y, P, W)
    assert (name, higher) == ("mse", False)
    assert value == pytest.approx(np.average((Y - P) ** 2, weights=W), rel=1e-12)


def test_xgboost_sklearn_refuses_versions_that_drop_weights(monkeypatch):
    obj = fxgb.SklearnObjective(fastloss.MSE())
    _fake_module(monkeypatch, "xgboost", "2.1.0")
    g, _ = obj(Y, P, sample_weight=W)
    np.testing.assert_allclose(g, W * (P - Y), rtol=1e-6)
    obj(Y, P)  # unweighted on a version that would have passed weights: fine
    _fake_module(monkeypatch, "xgboost", "2.0.3")
    with pytest.raises(RuntimeError, match="no sample weights"):
        obj(Y, P)
    with pytest.raises(RuntimeError, match="no sample weights"):
        fxgb.SklearnMetric(fastloss.MSE())(Y, P)
    obj(Y, P, sample_weight=W)  # weights were passed: fine


def test_xgboost_sklearn_signature_has_sample_weight():
    import inspect

    assert "sample_weight" in inspect.signature(fxgb.SklearnObjective(fastloss.MSE())).parameters
    assert fxgb.SklearnMetric(fastloss.MSE()).__name__ == "mse"
    assert len(inspect.signature(flgb.SklearnObjective(fastloss.MSE())).parameters) == 3
    assert len(inspect.signature(flgb.SklearnMetric(fastloss.MSE())).parameters) == 3


def test_xgboost_metric():
    name, value = fxgb.Metric(fastloss.Huber(delta=0.5))(P.astype(np.float32),
                                                         FakeDMatrix(Y, W))
    e = np.abs(Y.astype(np.float32).astype(float) - P.astype(np.float32).astype(float))
    expected = np.average(np.where(e <= 0.5, 0.5 * e ** 2, 0.5 * (e - 0.25)), weights=W)
    assert name == "huber" and value == pytest.approx(expected, rel=1e-5)
    assert fxgb.Metric(fastloss.MSE(), name="sq")(P, FakeDMatrix(Y))[0] == "sq"


def test_catboost_metric_multiclass_approxes():
    k = 3
    z = rng.normal(size=(N, k))
    labels = rng.integers(0, k, size=N).astype(np.float32)
    metric = fcb.Metric(NumpySoftmaxCE(k))
    err, wsum = metric.evaluate([z[:, j] for j in range(k)], labels, W)
    p = _softmax(z)
    nll = -np.log(p[np.arange(N), labels.astype(int)])
    assert err == pytest.approx(np.sum(W * nll), rel=1e-12) and wsum == pytest.approx(W.sum())
    err, wsum = metric.evaluate([z[:, j] for j in range(k)], labels, None)
    assert wsum == N and err == pytest.approx(np.sum(nll), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# intercept and inverse link
# ---------------------------------------------------------------------------------------------
def test_intercepts_from_baseline():
    y = rng.poisson(3.0, size=N).astype(float)
    obj = fxgb.Objective(fastloss.Poisson())
    b = obj.intercept(y, sample_weight=W)
    assert b == pytest.approx(np.log(np.average(y, weights=W)), rel=1e-14)
    assert obj.base_score(y, sample_weight=W) == b
    np.testing.assert_array_equal(obj.base_margin(y, sample_weight=W), np.full(N, b))
    soft = fxgb.Objective(NumpySoftmaxCE(3))
    labels = rng.integers(0, 3, size=N)
    vec = soft.intercept(labels)
    np.testing.assert_allclose(np.exp(vec), np.bincount(labels, minlength=3) / N, rtol=1e-14)
    assert soft.base_score(labels) == [float(v) for v in vec]
    init = flgb.Objective(NumpySoftmaxCE(3)).init_score(labels)
    assert init.shape == (N, 3) and np.all(init == vec)
    with pytest.raises(ValueError, match="not finite"):
        obj.intercept(np.zeros(5))
    with pytest.raises(ValueError, match="not finite"):  # class 3 never occurs
        soft.intercept(labels, n_classes=4)


def test_inverse_links_against_scipy():
    special = pytest.importorskip("scipy.special")
    z = np.array([-1e4, -50.0, -1.0, 0.0, 2.5, 50.0, 1e4])
    np.testing.assert_allclose(fxgb.Objective(NumpyBCE()).inverse_link(z), special.expit(z),
                               rtol=1e-15)
    assert fxgb.Objective(NumpyFocal()).link == "logit"
    np.testing.assert_allclose(fxgb.Objective(fastloss.Gamma()).inverse_link(z[1:-1]),
                               np.exp(z[1:-1]), rtol=1e-15)
    zz = rng.normal(scale=300.0, size=(20, 4))
    sm = fxgb.Objective(NumpySoftmaxCE(4)).inverse_link(zz)
    np.testing.assert_allclose(sm, special.softmax(zz, axis=1), rtol=1e-12, atol=1e-300)
    assert np.all(np.isfinite(sm))
    np.testing.assert_array_equal(fxgb.Objective(fastloss.MSE()).inverse_link(z), z)
    assert fxgb.Objective(fastloss.MSE(), link="log").link == "log"
    with pytest.raises(ValueError):
        apply_link("softmax", z)


# ---------------------------------------------------------------------------------------------
# construction, equality, pickling, imports
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ADAPTERS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_adapters_pickle_and_compare(cls):
    obj = cls(fastloss.Tweedie(power=1.2), hessian="floor", hessian_value=0.01, n_threads=1)
    clone = pickle.loads(pickle.dumps(obj))
    assert clone == obj and hash(clone) == hash(obj) and repr(clone) == repr(obj)
    assert "hessian_value=0.01" in repr(obj)
    assert clone != cls(fastloss.Tweedie(power=1.2))
    y = np.abs(Y)
    for a, b in zip(obj.derivatives(y, P, W), clone.derivatives(y, P, W)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", METRICS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_metrics_pickle(cls):
    m = cls(fastloss.Quantile(quantile=0.3), name="q30")
    clone = pickle.loads(pickle.dumps(m))
    assert clone == m and clone.__name__ == "q30" and repr(clone) == repr(m)
    assert clone.value(Y, P, W) == m.value(Y, P, W)


@pytest.mark.parametrize("kwargs,match", [
    ({"hessian": "newton"}, "hessian must be one of"),
    ({"hessian": "exact", "hessian_value": 1.0}, "only used with"),
    ({"hessian": "constant", "hessian_value": 0.0}, "> 0"),
    ({"hessian": "floor", "hessian_value": -1.0}, ">= 0"),
    ({"hessian": "bound"}, "element-wise"),
    ({"scale": 0.0}, "scale"),
    ({"scale": "half"}, "scale"),
    ({"link": "probit"}, "link"),
    ({"n_threads": 0}, "n_threads"),
])
def test_bad_options_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fxgb.Objective(fastloss.MSE(), **kwargs)


def test_bad_losses():
    with pytest.raises(ValueError, match="RMSE has no per-sample hessian.*use MSE"):
        flgb.Objective(fastloss.RMSE())
    if hasattr(fastloss, "Contrastive"):
        with pytest.raises(ValueError, match="Contrastive has no per-sample hessian"):
            fcb.Objective(fastloss.Contrastive())
    with pytest.raises(TypeError, match="gradient_hessian"):
        fcb.Objective("mse")
    probs = NumpyBCE()
    probs.from_logits = False
    with pytest.raises(ValueError, match="from_logits=True"):
        fxgb.Objective(probs)
    with pytest.raises(ValueError, match="from_logits=True"):
        fxgb.Metric(probs)


def test_no_gbdt_library_is_imported():
    code = (
        "import sys, numpy as np, fastloss\n"
        "import fastloss.xgboost as a, fastloss.lightgbm as b, fastloss.catboost as c\n"
        "y = np.arange(5.0); p = np.zeros(5)\n"
        "for m in (a, b, c):\n"
        "    m.Objective(fastloss.MSE()).derivatives(y, p)\n"
        "a.Objective(fastloss.MSE())(p.astype(np.float32), type('D', (), {\n"
        "    'get_label': lambda s: y.astype(np.float32),\n"
        "    'get_weight': lambda s: np.empty(0, np.float32)})())\n"
        "c.Objective(fastloss.MSE()).calc_ders_range(p, y, None)\n"
        "bad = [m for m in ('xgboost', 'lightgbm', 'catboost') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize("name,adapter", [("xgboost", fxgb), ("lightgbm", flgb)])
def test_adapter_modules_do_not_shadow_the_libraries(name, adapter):
    lib = pytest.importorskip(name)
    assert lib is not adapter and sys.modules[name] is lib
    from fastloss._gbdt import library_version

    major, minor = (int(v) for v in lib.__version__.split(".")[:2])
    assert library_version(name) == (major, minor)


def _derivatives_in_worker(obj, y, p, w):
    return obj.derivatives(y, p, w)


def test_adapters_ship_to_worker_processes():
    # What Dask and Spark do with an objective: pickle it (cloudpickle when present) and call it
    # in another process.
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    objs = [cls(fastloss.Poisson()) for cls in ADAPTERS]
    cloudpickle = pytest.importorskip("cloudpickle")
    for obj in objs:
        assert cloudpickle.loads(cloudpickle.dumps(obj)) == obj
    y = np.abs(Y)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        remote = list(pool.map(_derivatives_in_worker, objs, [y] * 5, [P] * 5, [W] * 5))
    for obj, (g, h) in zip(objs, remote):
        g0, h0 = obj.derivatives(y, P, W)
        np.testing.assert_array_equal(g, g0)
        np.testing.assert_array_equal(h, h0)


def test_wrong_call_form_says_which_adapter_to_use():
    d = FakeDMatrix(Y, W)
    with pytest.raises(TypeError, match="SklearnObjective"):
        fxgb.Objective(fastloss.MSE())(Y, P)              # native objective in XGBRegressor
    with pytest.raises(TypeError, match="use Objective"):
        fxgb.SklearnObjective(fastloss.MSE())(P, d)       # scikit-learn objective in xgb.train
    with pytest.raises(TypeError, match="SklearnMetric"):
        fxgb.Metric(fastloss.MSE())(Y, P)
    with pytest.raises(TypeError, match="use Metric"):
        fxgb.SklearnMetric(fastloss.MSE())(P, d)
    ds = FakeDataset(Y, W)
    with pytest.raises(TypeError, match="SklearnObjective"):
        flgb.Objective(fastloss.MSE())(Y, P)
    with pytest.raises(TypeError, match="use Objective"):
        flgb.SklearnObjective(fastloss.MSE())(P, ds)
    with pytest.raises(TypeError, match="SklearnMetric"):
        flgb.Metric(fastloss.MSE())(Y, P)
    with pytest.raises(TypeError, match="use Metric"):
        flgb.SklearnMetric(fastloss.MSE())(P, ds)
