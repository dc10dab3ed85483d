"""fastloss.catboost: models trained with fastloss objectives against CatBoost's RMSE and Logloss.

Both models use Newton leaves (what the built-ins use; a Python objective would otherwise get
gradient steps) and plain boosting without random bootstrap or score noise, so the only
difference left is who computes the derivatives.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastloss

catboost = pytest.importorskip("catboost")
import fastloss.catboost as fcb  # noqa: E402

from gbdt_support import (  # noqa: E402
    N_THREADS, binary_losses, focal_losses, make_data, max_abs_diff, softmax_losses,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PARAMS = dict(iterations=20, depth=3, learning_rate=0.3, thread_count=N_THREADS, random_seed=0,
              verbose=0, boosting_type="Plain", bootstrap_type="No", random_strength=0,
              leaf_estimation_method="Newton", leaf_estimation_iterations=1, allow_writing_files=False)
ATOL = 1e-6


def _train_pair(loss, builtin, model_cls, X, y, w, **extra):
    obj = fcb.Objective(loss)
    b = obj.intercept(y, sample_weight=w)
    ref = model_cls(loss_function=builtin, boost_from_average=True, **PARAMS, **extra)
    ref.fit(X, y, sample_weight=w)
    ours = model_cls(loss_function=obj, eval_metric=fcb.Metric(loss), **PARAMS, **extra)
    ours.fit(X, y, sample_weight=w, baseline=obj.init_score(y, intercept=b))
    obj.set_intercept(ours, b)
    raw = dict(prediction_type="RawFormulaVal")
    return ref.predict(X, **raw), ours.predict(X, **raw), obj, ref, ours


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_rmse_matches_builtin(weighted):
    X, y, w = make_data("regression")
    w = w if weighted else None
    ref, ours, *_ = _train_pair(fastloss.MSE(), "RMSE", catboost.CatBoostRegressor, X, y, w)
    assert max_abs_diff(ref, ours) <= ATOL * max(1.0, np.max(np.abs(ref)))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss", binary_losses())
def test_logloss_matches_builtin(loss, weighted):
    X, y, w = make_data("binary")
    w = w if weighted else None
    ref, ours, obj, ref_model, _ = _train_pair(loss, "Logloss", catboost.CatBoostClassifier,
                                               X, y, w)
    assert max_abs_diff(ref, ours) <= ATOL * max(1.0, np.max(np.abs(ref)))
    np.testing.assert_allclose(obj.inverse_link(ours), ref_model.predict_proba(X)[:, 1],
                               rtol=1e-6, atol=1e-9)


def test_weights_change_the_model_as_builtin_does():
    X, y, w = make_data("regression")
    ref_w, ours_w, *_ = _train_pair(fastloss.MSE(), "RMSE", catboost.CatBoostRegressor, X, y, w)
    _, ours_u, *_ = _train_pair(fastloss.MSE(), "RMSE", catboost.CatBoostRegressor, X, y, None)
    assert max_abs_diff(ours_w, ours_u) > 1e-2
    assert max_abs_diff(ref_w, ours_w) <= ATOL * max(1.0, np.max(np.abs(ref_w)))


def test_derivative_signs_are_catboosts():
    # CatBoost wants derivatives of minus the loss: for RMSE, (y - a) and -1 per unit weight.
    obj = fcb.Objective(fastloss.MSE())
    approx = np.array([0.5, 2.0, -1.0])
    target = np.array([1.0, 1.0, 1.0], dtype=np.float32)
    ders = obj.calc_ders_range(approx, target, np.array([1.0, 2.0, 0.5]))
    np.testing.assert_allclose(ders[:, 0], [0.5, -2.0, 1.0])
    np.testing.assert_allclose(ders[:, 1], [-1.0, -2.0, -0.5])
    np.testing.assert_allclose(obj.calc_ders_range(approx, target, None)[:, 1], -1.0)


@pytest.mark.parametrize("loss", softmax_losses(3))
def test_multiclass_trains(loss):
    X, y, _ = make_data("multiclass", n=400, n_classes=3)
    Xt, yt, _ = make_data("multiclass", n=400, n_classes=3, seed=1)
    obj = fcb.Objective(loss)
    b = obj.intercept(y)
    model = catboost.CatBoostClassifier(loss_function=obj, eval_metric=fcb.Metric(loss),
                                        classes_count=3, **dict(PARAMS, iterations=10))
    model.fit(X, y.astype(int), baseline=obj.init_score(y, intercept=b))
    obj.set_intercept(model, b)
    raw = model.predict(Xt, prediction_type="RawFormulaVal")
    assert raw.shape == (400, 3) and np.all(np.isfinite(raw))
    assert float(loss.loss(yt.astype(int), raw)) < 0.9 * float(
        loss.loss(yt.astype(int), np.tile(b, (400, 1))))
    # calc_ders_multi: minus the softmax gradient, minus the diagonal hessian
    g, H = obj.calc_ders_multi(np.array([0.0, 1.0, -1.0]), 1.0, 2.0)
    p = np.exp([0.0, 1.0, -1.0])
    p /= p.sum()
    np.testing.assert_allclose(g, -2.0 * (p - [0, 1, 0]), rtol=1e-6)
    np.testing.assert_allclose(H, np.diag(-2.0 * p * (1 - p)), rtol=1e-6, atol=1e-12)


def test_metric_is_the_weighted_mean_loss():
    X, y, w = make_data("poisson", n=500)
    loss = fastloss.Poisson()
    metric = fcb.Metric(loss)
    raw = np.log(np.full(500, y.mean()))
    err, wsum = metric.evaluate([raw], y.astype(np.float32), w)
    mu = np.exp(raw)
    dev = 2 * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - y + mu)
    assert wsum == pytest.approx(w.sum())
    assert metric.get_final_error(err, wsum) == pytest.approx(np.average(dev, weights=w),
                                                              rel=1e-12)
    assert metric.is_max_optimal() is False


def _beats_constant(loss, task):
    X, y, _ = make_data(task, n=2000)
    Xt, yt, _ = make_data(task, n=2000, seed=1)
    obj = fcb.Objective(loss)
    b = obj.intercept(y)
    cls = catboost.CatBoostClassifier if task == "binary" else catboost.CatBoostRegressor
    model = cls(loss_function=obj, eval_metric=fcb.Metric(loss), **dict(PARAMS, iterations=40))
    model.fit(X, y, baseline=obj.init_score(y, intercept=b))
    obj.set_intercept(model, b)
    raw = model.predict(Xt, prediction_type="RawFormulaVal")
    assert np.all(np.isfinite(raw))
    assert float(loss.loss(yt, raw)) < 0.9 * float(loss.loss(yt, np.full(yt.shape, b)))


@pytest.mark.parametrize("loss", focal_losses())
def test_focal_trains(loss):
    _beats_constant(loss, "binary")


def test_log_cosh_trains():
    _beats_constant(fastloss.LogCosh(), "heavy")


def test_pickled_objective_trains_the_same_model():
    X, y, w = make_data("regression", n=500)
    obj = fcb.Objective(fastloss.PseudoHuber(delta=2.0))
    clone = pickle.loads(pickle.dumps(obj))
    assert clone == obj
    preds = []
    for o in (obj, clone):
        m = catboost.CatBoostRegressor(loss_function=o, eval_metric="RMSE",
                                       **dict(PARAMS, iterations=5))
        m.fit(X, y, sample_weight=w)
        preds.append(m.predict(X))
    np.testing.assert_array_equal(*preds)
