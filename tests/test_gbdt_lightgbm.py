"""fastloss.lightgbm: models trained with fastloss objectives against LightGBM's built-in ones.

LightGBM computes built-in gradients in float64 and stores them as float32, as the adapter does,
so the raw scores agree to ~1e-8 (the built-in's ``boost_from_average`` start against the
adapter's ``init_score``, added back to the custom model's raw predictions).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastloss

lgb = pytest.importorskip("lightgbm")
import fastloss.lightgbm as flgb  # noqa: E402

from gbdt_support import (  # noqa: E402
    N_THREADS, binary_losses, focal_losses, make_data, max_abs_diff, softmax_losses,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    # LightGBM 4.7 renames eval_set; the old name is what every LightGBM 4 understands
    pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated"),
]

ROUNDS = 20
PARAMS = {"num_leaves": 8, "learning_rate": 0.3, "num_threads": N_THREADS, "seed": 0,
          "verbose": -1, "deterministic": True, "force_row_wise": True}
ATOL = 1e-6

REGRESSION = [
    ("regression", fastloss.MSE(), "regression", {}, "regression"),
    # LightGBM's poisson multiplies its hessian by exp(poisson_max_delta_step) (0.7 by default;
    # it must be > 0): a negligible step gives the exact Newton step, which is fastloss's.
    ("poisson", fastloss.Poisson(), "poisson", {"poisson_max_delta_step": 1e-12}, "poisson"),
    ("tweedie", fastloss.Tweedie(power=1.5), "tweedie", {"tweedie_variance_power": 1.5},
     "tweedie"),
    ("gamma", fastloss.Gamma(), "gamma", {}, "gamma"),
]


def _train_pair(loss, builtin, extra, X, y, w, *, num_class=None, rounds=ROUNDS, **adapter):
    obj = flgb.Objective(loss, **adapter)
    b = obj.intercept(y, sample_weight=w)
    params = dict(PARAMS, num_class=num_class) if num_class else dict(PARAMS)
    ref = lgb.train(dict(params, objective=builtin, **extra), lgb.Dataset(X, y, weight=w), rounds)
    train = lgb.Dataset(X, y, weight=w, init_score=obj.init_score(y, intercept=b))
    ours = lgb.train(dict(params, objective=obj), train, rounds)
    return ref.predict(X, raw_score=True), ours.predict(X, raw_score=True) + b, obj, ref


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", REGRESSION, ids=[c[0] for c in REGRESSION])
def test_regression_matches_builtin(case, weighted):
    _, loss, builtin, extra, task = case
    X, y, w = make_data(task)
    w = w if weighted else None
    ref, ours, obj, ref_model = _train_pair(loss, builtin, extra, X, y, w)
    assert max_abs_diff(ref, ours) <= ATOL * max(1.0, np.max(np.abs(ref)))
    np.testing.assert_allclose(obj.inverse_link(ours), ref_model.predict(X), rtol=1e-6)


def test_huber_with_auto_hessian_matches_lightgbm_huber():
    # LightGBM's huber uses a unit hessian, which is the adapter's default for Huber; both start
    # from the same init_score (the Huber M-estimate), so only the derivatives could differ.
    X, y, w = make_data("heavy")
    obj = flgb.Objective(fastloss.Huber(delta=1.0))
    init = obj.init_score(y, sample_weight=w)
    ref = lgb.train(dict(PARAMS, objective="huber", alpha=1.0),
                    lgb.Dataset(X, y, weight=w, init_score=init), ROUNDS)
    ours = lgb.train(dict(PARAMS, objective=obj), lgb.Dataset(X, y, weight=w, init_score=init),
                     ROUNDS)
    assert max_abs_diff(ref.predict(X, raw_score=True), ours.predict(X, raw_score=True)) <= 1e-9


@pytest.mark.parametrize("case", REGRESSION[:2], ids=[c[0] for c in REGRESSION[:2]])
def test_weights_change_the_model_as_builtin_does(case):
    _, loss, builtin, extra, task = case
    X, y, w = make_data(task)
    ref_w, ours_w, *_ = _train_pair(loss, builtin, extra, X, y, w)
    _, ours_u, *_ = _train_pair(loss, builtin, extra, X, y, None)
    assert max_abs_diff(ours_w, ours_u) > 1e-2
    assert max_abs_diff(ref_w, ours_w) <= ATOL * max(1.0, np.max(np.abs(ref_w)))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss", binary_losses())
def test_logistic_matches_binary(loss, weighted):
    X, y, w = make_data("binary")
    w = w if weighted else None
    ref, ours, obj, ref_model = _train_pair(loss, "binary", {}, X, y, w)
    assert max_abs_diff(ref, ours) <= ATOL * max(1.0, np.max(np.abs(ref)))
    np.testing.assert_allclose(obj.inverse_link(ours), ref_model.predict(X), rtol=1e-6)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss", softmax_losses(4))
def test_softmax_matches_multiclass(loss, weighted):
    X, y, w = make_data("multiclass")
    w = w if weighted else None
    ref, ours, obj, ref_model = _train_pair(loss, "multiclass", {}, X, y, w, num_class=4)
    assert ours.shape == (X.shape[0], 4)
    assert max_abs_diff(ref, ours) <= ATOL * max(1.0, np.max(np.abs(ref)))
    np.testing.assert_allclose(obj.inverse_link(ours), ref_model.predict(X), rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize("loss", softmax_losses(4))
def test_multiclass_gradients_are_float32_column_major(loss):
    X, y, w = make_data("multiclass", n=200)
    train = lgb.Dataset(X, y, weight=w).construct()
    preds = np.asfortranarray(np.random.default_rng(0).normal(size=(200, 4)))
    g, h = flgb.Objective(loss)(preds, train)
    assert g.dtype == h.dtype == np.float32 and g.shape == (200, 4)
    # LightGBM copies ravel(order="F") into its buffer: a view here, no copy
    assert np.shares_memory(g.ravel(order="F"), g) and np.shares_memory(h.ravel(order="F"), h)
    p = np.exp(preds - preds.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(4)[y.astype(int)]
    np.testing.assert_allclose(g, w[:, None] * (p - onehot), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h, 4 / 3 * w[:, None] * p * (1 - p), rtol=1e-6, atol=1e-7)


def test_sklearn_api_matches_builtin_with_sample_weight():
    X, y, w = make_data("poisson")
    loss = fastloss.Poisson()
    obj = flgb.SklearnObjective(loss)
    b = obj.intercept(y, sample_weight=w)
    kw = dict(n_estimators=ROUNDS, num_leaves=8, learning_rate=0.3, n_jobs=N_THREADS,
              random_state=0, verbose=-1, deterministic=True, force_row_wise=True)
    ref = lgb.LGBMRegressor(objective="poisson", poisson_max_delta_step=1e-12, **kw)
    ref.fit(X, y, sample_weight=w)
    ours = lgb.LGBMRegressor(objective=obj, **kw)
    ours.fit(X, y, sample_weight=w, init_score=obj.init_score(y, intercept=b),
             eval_set=[(X, y)], eval_sample_weight=[w],
             eval_init_score=[obj.init_score(y, intercept=b)],
             eval_metric=flgb.SklearnMetric(loss))
    raw = ours.predict(X) + b  # a custom objective's predict gives raw scores
    assert max_abs_diff(ref.predict(X, raw_score=True), raw) <= 1e-6
    unweighted = lgb.LGBMRegressor(objective=obj, **kw).fit(
        X, y, init_score=obj.init_score(y, intercept=b))
    assert max_abs_diff(unweighted.predict(X), ours.predict(X)) > 1e-2
    mu = obj.inverse_link(raw)
    dev = 2 * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - y + mu)
    logged = ours.evals_result_["training"]["poisson"]
    assert len(logged) == ROUNDS
    assert logged[-1] == pytest.approx(np.average(dev, weights=w), rel=1e-6)


@pytest.mark.parametrize("loss", softmax_losses(3))
def test_sklearn_classifier_multiclass(loss):
    X, y, w = make_data("multiclass", n=1000, n_classes=3)
    obj = flgb.SklearnObjective(loss)
    b = obj.intercept(y, sample_weight=w)
    kw = dict(n_estimators=10, num_leaves=8, learning_rate=0.3, n_jobs=N_THREADS,
              random_state=0, verbose=-1, deterministic=True, force_row_wise=True)
    ref = lgb.LGBMClassifier(objective="multiclass", **kw).fit(X, y.astype(int), sample_weight=w)
    ours = lgb.LGBMClassifier(objective=obj, **kw).fit(
        X, y.astype(int), sample_weight=w, init_score=obj.init_score(y, intercept=b))
    proba = obj.inverse_link(ours.predict(X, raw_score=True) + b)
    assert max_abs_diff(ref.predict_proba(X), proba) <= 1e-6


def test_native_metric_logs_fastloss_loss():
    X, y, w = make_data("regression")
    loss = fastloss.Huber(delta=1.0)
    obj = flgb.Objective(loss)
    b = obj.intercept(y, sample_weight=w)
    train = lgb.Dataset(X, y, weight=w, init_score=obj.init_score(y, intercept=b))
    log = {}
    bst = lgb.train(dict(PARAMS, objective=obj, metric="None"), train, 5, valid_sets=[train],
                    valid_names=["train"], feval=flgb.Metric(loss),
                    callbacks=[lgb.record_evaluation(log)])
    e = np.abs(y - (bst.predict(X) + b))
    huber = np.where(e <= 1, 0.5 * e ** 2, e - 0.5)
    assert log["train"]["huber"][-1] == pytest.approx(np.average(huber, weights=w), rel=1e-7)
    assert log["train"]["huber"][-1] < log["train"]["huber"][0]


def _beats_constant(loss, task, **adapter):
    X, y, _ = make_data(task, n=3000)
    Xt, yt, _ = make_data(task, n=3000, seed=1)
    obj = flgb.Objective(loss, **adapter)
    b = obj.intercept(y)
    bst = lgb.train(dict(PARAMS, objective=obj), lgb.Dataset(X, y, init_score=obj.init_score(y)),
                    40)
    raw = bst.predict(Xt) + b
    assert np.all(np.isfinite(raw))
    assert float(loss.loss(yt, raw)) < 0.9 * float(loss.loss(yt, np.full(yt.shape, b)))


@pytest.mark.parametrize("loss", focal_losses())
def test_focal_trains(loss):
    _beats_constant(loss, "binary")


def test_log_cosh_trains():
    _beats_constant(fastloss.LogCosh(), "heavy")


@pytest.mark.parametrize("loss", [fastloss.MAE(), fastloss.Quantile(quantile=0.8),
                                  fastloss.Huber(delta=1.0)], ids=lambda l: type(l).__name__)
def test_nonsmooth_losses_train(loss):
    _beats_constant(loss, "heavy")


def test_pickled_objective_trains_the_same_model():
    X, y, w = make_data("gamma", n=1000)
    obj = flgb.Objective(fastloss.Gamma())
    clone = pickle.loads(pickle.dumps(obj))
    assert clone == obj and clone is not obj
    init = obj.init_score(y, sample_weight=w)
    a = lgb.train(dict(PARAMS, objective=obj), lgb.Dataset(X, y, weight=w, init_score=init), 10)
    b = lgb.train(dict(PARAMS, objective=clone), lgb.Dataset(X, y, weight=w, init_score=init), 10)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
