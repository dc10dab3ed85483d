"""fastloss.xgboost: models trained with fastloss objectives against XGBoost's built-in ones.

Each comparison trains twice on the same data with the same parameters and the same intercept:
once with XGBoost's objective, once with the fastloss objective; the raw margins must agree to
float32 rounding (both compute float32 gradients).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastloss

xgb = pytest.importorskip("xgboost")
import fastloss.xgboost as fxgb  # noqa: E402

from gbdt_support import (  # noqa: E402
    N_THREADS, binary_losses, focal_losses, make_data, max_abs_diff, softmax_losses,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ROUNDS = 20
PARAMS = {"max_depth": 3, "eta": 0.3, "nthread": N_THREADS, "seed": 0}
ATOL = 5e-6  # a few float32 ulps of margins of size ~5

REGRESSION = [
    # (id, loss, built-in objective, its extra parameters, data)
    ("squarederror", fastloss.MSE(), "reg:squarederror", {}, "regression"),
    ("pseudohuber", fastloss.PseudoHuber(delta=1.5), "reg:pseudohubererror",
     {"huber_slope": 1.5}, "heavy"),
    # count:poisson multiplies its hessian by exp(max_delta_step) (0.7 by default) as a
    # safeguard: 0 gives the exact Newton step, which is fastloss's.
    ("poisson", fastloss.Poisson(), "count:poisson", {"max_delta_step": 0.0}, "poisson"),
    ("tweedie", fastloss.Tweedie(power=1.5), "reg:tweedie", {"tweedie_variance_power": 1.5},
     "tweedie"),
    ("gamma", fastloss.Gamma(), "reg:gamma", {}, "gamma"),
]


def _train_pair(loss, builtin, extra, X, y, w, *, num_class=None, rounds=ROUNDS, **adapter):
    """(built-in margins, fastloss margins, objective) with the same base score."""
    obj = fxgb.Objective(loss, **adapter)
    if num_class:
        # per-class intercepts: as a base margin, which every XGBoost reads as margins
        params = dict(PARAMS, num_class=num_class)
        dtrain = xgb.DMatrix(X, y, weight=w, base_margin=obj.base_margin(y, sample_weight=w))
        ref_params, our_params = dict(params), dict(params)
    else:
        # A built-in objective reads a scalar base_score on its response scale (a mean or a
        # probability) and maps it through its link; a custom objective takes it as a margin.
        base_score = obj.base_score(y, sample_weight=w)
        dtrain = xgb.DMatrix(X, y, weight=w)
        ref_params = dict(PARAMS, base_score=float(obj.inverse_link(base_score)))
        our_params = dict(PARAMS, base_score=base_score)
    ref = xgb.train(dict(ref_params, objective=builtin, **extra), dtrain, rounds)
    ours = xgb.train(dict(our_params, disable_default_eval_metric=True), dtrain, rounds, obj=obj)
    return (ref.predict(dtrain, output_margin=True), ours.predict(dtrain, output_margin=True),
            obj, ref, ours)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", REGRESSION, ids=[c[0] for c in REGRESSION])
def test_regression_matches_builtin(case, weighted):
    _, loss, builtin, extra, task = case
    X, y, w = make_data(task)
    w = w if weighted else None
    ref, ours, obj, ref_model, _ = _train_pair(loss, builtin, extra, X, y, w)
    assert ours.dtype == np.float32
    assert max_abs_diff(ref, ours) <= ATOL * max(1.0, np.max(np.abs(ref)))
    # the inverse link gives the built-in's predictions (means) back
    mean = ref_model.predict(xgb.DMatrix(X))
    np.testing.assert_allclose(obj.inverse_link(ours), mean, rtol=2e-5)


@pytest.mark.parametrize("case", REGRESSION[:3], ids=[c[0] for c in REGRESSION[:3]])
def test_weights_change_the_model_as_builtin_does(case):
    _, loss, builtin, extra, task = case
    X, y, w = make_data(task)
    ref_w, ours_w, *_ = _train_pair(loss, builtin, extra, X, y, w)
    _, ours_u, *_ = _train_pair(loss, builtin, extra, X, y, None)
    assert max_abs_diff(ours_w, ours_u) > 1e-2  # the weights matter...
    assert max_abs_diff(ref_w, ours_w) <= ATOL * max(1.0, np.max(np.abs(ref_w)))  # ...as built in


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss", binary_losses())
def test_logistic_matches_binary_logistic(loss, weighted):
    X, y, w = make_data("binary")
    w = w if weighted else None
    ref, ours, obj, ref_model, _ = _train_pair(loss, "binary:logistic", {}, X, y, w)
    assert max_abs_diff(ref, ours) <= ATOL * max(1.0, np.max(np.abs(ref)))
    # and the built-in's probabilities back
    proba = ref_model.predict(xgb.DMatrix(X))
    np.testing.assert_allclose(obj.inverse_link(ours), proba, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss", softmax_losses(4))
def test_softmax_matches_multi_softprob(loss, weighted):
    X, y, w = make_data("multiclass")
    w = w if weighted else None
    ref, ours, obj, ref_model, _ = _train_pair(loss, "multi:softprob", {}, X, y, w, num_class=4)
    assert ours.shape == (X.shape[0], 4)
    assert obj.hessian_policy == ("bound", None)
    assert max_abs_diff(ref, ours) <= ATOL * max(1.0, np.max(np.abs(ref)))
    dpred = xgb.DMatrix(X, base_margin=obj.base_margin(y, sample_weight=w))
    np.testing.assert_allclose(obj.inverse_link(ours), ref_model.predict(dpred),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", softmax_losses(4))
def test_softmax_base_margin_matches_base_score(loss):
    # XGBoost >= 3.1 takes a per-class base_score, as margins (a canary: an open XGBoost
    # proposal would read it as class probabilities).
    if tuple(int(v) for v in xgb.__version__.split(".")[:2]) < (3, 1):
        pytest.skip("XGBoost < 3.1 has a scalar base_score")
    X, y, w = make_data("multiclass", n=1000)
    obj = fxgb.Objective(loss)
    d1 = xgb.DMatrix(X, y, weight=w, base_margin=obj.base_margin(y, sample_weight=w))
    d2 = xgb.DMatrix(X, y, weight=w)
    params = dict(PARAMS, num_class=4, disable_default_eval_metric=True)
    m1 = xgb.train(params, d1, 10, obj=obj)
    m2 = xgb.train(dict(params, base_score=obj.base_score(y, sample_weight=w)), d2, 10, obj=obj)
    assert max_abs_diff(m1.predict(d1, output_margin=True), m2.predict(d2, output_margin=True)) \
        <= 1e-5


def test_sklearn_api_matches_builtin_with_sample_weight():
    X, y, w = make_data("regression")
    loss = fastloss.MSE()
    obj = fxgb.SklearnObjective(loss)
    kw = dict(n_estimators=ROUNDS, max_depth=3, learning_rate=0.3, n_jobs=N_THREADS,
              random_state=0, base_score=obj.base_score(y, sample_weight=w))
    ref = xgb.XGBRegressor(objective="reg:squarederror", **kw).fit(X, y, sample_weight=w)
    ours = xgb.XGBRegressor(objective=obj, eval_metric=fxgb.SklearnMetric(loss), **kw)
    ours.fit(X, y, sample_weight=w, eval_set=[(X, y)], sample_weight_eval_set=[w],
             verbose=False)
    assert max_abs_diff(ref.predict(X), ours.predict(X)) <= 1e-5
    unweighted = xgb.XGBRegressor(objective=obj, **kw).fit(X, y)
    assert max_abs_diff(unweighted.predict(X), ours.predict(X)) > 1e-2
    # the metric is fastloss's weighted mean loss of the margins, round after round
    logged = ours.evals_result()["validation_0"]["mse"]
    assert len(logged) == ROUNDS
    expected = np.average((y - ours.predict(X)) ** 2, weights=w)
    assert logged[-1] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", softmax_losses(3))
def test_sklearn_classifier_multiclass(loss):
    X, y, w = make_data("multiclass", n=1000, n_classes=3)
    obj = fxgb.SklearnObjective(loss)
    margin = obj.base_margin(y, sample_weight=w)
    kw = dict(n_estimators=10, max_depth=3, learning_rate=0.3, n_jobs=N_THREADS, random_state=0)
    ref = xgb.XGBClassifier(objective="multi:softprob", **kw).fit(
        X, y.astype(int), sample_weight=w, base_margin=margin)
    ours = xgb.XGBClassifier(objective=obj, **kw).fit(X, y.astype(int), sample_weight=w,
                                                      base_margin=margin)
    proba = obj.inverse_link(ours.predict(X, output_margin=True, base_margin=margin))
    assert max_abs_diff(ref.predict_proba(X, base_margin=margin), proba) <= 1e-5


def test_native_metric_logs_fastloss_loss():
    X, y, w = make_data("poisson")
    loss = fastloss.Poisson()
    obj = fxgb.Objective(loss)
    d = xgb.DMatrix(X, y, weight=w)
    log = {}
    bst = xgb.train(dict(PARAMS, base_score=obj.base_score(y, sample_weight=w),
                         disable_default_eval_metric=True), d, 5, obj=obj,
                    custom_metric=fxgb.Metric(loss), evals=[(d, "train")], evals_result=log,
                    verbose_eval=False)
    mu = obj.inverse_link(bst.predict(d, output_margin=True))
    dev = 2 * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - y + mu)
    assert log["train"]["poisson"][-1] == pytest.approx(np.average(dev, weights=w), rel=1e-5)
    assert log["train"]["poisson"][-1] < log["train"]["poisson"][0]


def _beats_constant(loss, task, **adapter):
    X, y, _ = make_data(task, n=3000)
    Xt, yt, _ = make_data(task, n=3000, seed=1)
    obj = fxgb.Objective(loss, **adapter)
    b = obj.base_score(y)
    bst = xgb.train(dict(PARAMS, base_score=b, disable_default_eval_metric=True),
                    xgb.DMatrix(X, y), 40, obj=obj)
    margin = bst.predict(xgb.DMatrix(Xt), output_margin=True)
    assert np.all(np.isfinite(margin))
    model = float(loss.loss(yt, margin.astype(np.float64)))
    constant = float(loss.loss(yt, np.full(yt.shape, b)))
    assert model < 0.9 * constant


@pytest.mark.parametrize("loss", focal_losses())
def test_focal_trains(loss):
    _beats_constant(loss, "binary")


def test_log_cosh_trains():
    _beats_constant(fastloss.LogCosh(), "heavy")


@pytest.mark.parametrize("loss", [fastloss.MAE(), fastloss.Quantile(quantile=0.8),
                                  fastloss.Huber(delta=1.0), fastloss.Charbonnier()],
                         ids=lambda l: type(l).__name__)
def test_nonsmooth_losses_train(loss):
    _beats_constant(loss, "heavy")


def test_pickled_objective_trains_the_same_model():
    X, y, w = make_data("tweedie", n=1000)
    obj = fxgb.Objective(fastloss.Tweedie(power=1.3), hessian="floor", hessian_value=1e-3)
    clone = pickle.loads(pickle.dumps(obj))
    assert clone == obj and clone is not obj
    d = xgb.DMatrix(X, y, weight=w)
    params = dict(PARAMS, base_score=obj.base_score(y, sample_weight=w))
    a = xgb.train(params, d, 10, obj=obj).predict(d, output_margin=True)
    b = xgb.train(params, d, 10, obj=clone).predict(d, output_margin=True)
    np.testing.assert_array_equal(a, b)


def test_objective_output_is_float32_from_float32_margins():
    X, y, w = make_data("regression", n=300)
    d = xgb.DMatrix(X, y, weight=w)
    predt = np.linspace(-1, 1, 300, dtype=np.float32)
    g, h = fxgb.Objective(fastloss.PseudoHuber())(predt, d)
    assert g.dtype == h.dtype == np.float32 and g.shape == (300,)
    e = (y - predt.astype(np.float64))
    s = np.sqrt(1 + e ** 2)
    np.testing.assert_allclose(g, -w * e / s, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h, w / s ** 3, rtol=1e-6, atol=1e-7)
