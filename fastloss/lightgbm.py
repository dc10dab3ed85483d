"""Any fastloss loss as a LightGBM objective and eval metric.

Usage (``X``, ``y`` your data)::

    import lightgbm as lgb
    import fastloss, fastloss.lightgbm as flgb

    loss = fastloss.Poisson()
    obj = flgb.Objective(loss)
    b = obj.intercept(y)
    train = lgb.Dataset(X, y, init_score=obj.init_score(y, intercept=b))
    bst = lgb.train({"objective": obj, "metric": "None"}, train, 50, feval=flgb.Metric(loss))
    mu = obj.inverse_link(bst.predict(X_new) + b)

- :class:`Objective` is the native objective, ``params["objective"] = Objective(loss)`` in
  ``lightgbm.train``: called with the raw scores (float64, ``(n,)``, or ``(n, K)`` for
  multiclass in LightGBM 4, a flat class-major array before) and the training ``Dataset``. It
  applies the Dataset's weights itself (LightGBM does not) and returns float32 gradient and
  hessian, LightGBM's storage type, multiclass in the column-major layout LightGBM copies from,
  so LightGBM makes no further copy.
- :class:`SklearnObjective` is the scikit-learn-API objective, ``LGBMRegressor(objective=...)``.
  It takes three arguments, so LightGBM 4 passes it the weights (the two-argument form gets
  none, and LightGBM 4 no longer applies them afterwards); with LightGBM 3 the third argument is
  the query group and LightGBM weights the result itself, which the adapter detects.
- :class:`Metric` (``feval=``) and :class:`SklearnMetric` (``eval_metric=``): the weighted mean
  loss of the raw scores, ``(name, value, False)``.

The intercept: with a custom objective LightGBM starts from 0 (``boost_from_average`` is for its
built-in objectives) and keeps ``init_score`` out of the model: give ``init_score`` to every
Dataset (training and validation) and add the intercept to ``predict``'s raw scores (with a
custom objective ``predict`` returns raw scores). :meth:`Objective.init_score` gives the
``(n,)`` or ``(n, K)`` array, :meth:`Objective.inverse_link` means and probabilities.

This module never imports ``lightgbm`` (it reads ``lightgbm.__version__`` when LightGBM is
already imported).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ._gbdt import Adapter, ArrayLike, MetricBase, check_call_form, library_version

__all__ = ["Objective", "SklearnObjective", "Metric", "SklearnMetric"]


def _as_rows(scores: ArrayLike, n: int) -> Tuple[np.ndarray, bool]:
    """Raw scores as ``(n,)`` or ``(n, K)``; flag whether they came flat (class-major)."""
    s = np.asarray(scores)
    if s.ndim == 1 and n and s.size != n:
        if s.size % n:
            raise ValueError(f"{s.size} raw scores for {n} labels")
        # LightGBM < 4: class-major, score of class k for row i at k * n + i.
        return s.reshape(-1, n).T, True
    return s, False


class _LGBAdapter(Adapter):
    __doc__ = Adapter.__doc__
    library = "lightgbm"

    def _bound_factor(self, n_classes: int) -> float:
        # multiclass (softmax): hess = K / (K - 1) * p (1 - p)
        return n_classes / (n_classes - 1.0)

    def _call(self, labels: np.ndarray, preds: ArrayLike,
              weight: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        labels = np.asarray(labels)
        raw, flat = _as_rows(preds, labels.size)
        g, h = self.derivatives(labels, raw, weight)
        if g.ndim == 2:
            # Column-major float32: LightGBM's ravel(order="F") is then a view, not a copy.
            g = np.asfortranarray(g, dtype=np.float32)
            h = np.asfortranarray(h, dtype=np.float32)
            if flat:
                return g.ravel(order="F"), h.ravel(order="F")
            return g, h
        return g.astype(np.float32, copy=False), h.astype(np.float32, copy=False)


class Objective(_LGBAdapter):
    __doc__ = (
        "LightGBM native objective: ``lightgbm.train({'objective': Objective(loss)}, train)``."
        "\n\nCalled as ``obj(preds, train_data) -> (grad, hess)``." + "\n"
        + (Adapter.__doc__ or "") + """
    Examples
    --------
    >>> import numpy as np, fastloss, fastloss.lightgbm as flgb
    >>> obj = flgb.Objective(fastloss.MAE())      # constant hessian: see hessian="auto"
    >>> g, h = obj.derivatives([1.0, 2.0], [0.5, 2.5])
    >>> g.tolist(), h.tolist(), obj.hessian_policy
    ([-1.0, 1.0], [1.0, 1.0], ('constant', 1.0))
    >>> obj.init_score([1.0, 2.0, 6.0]).tolist()    # the weighted median, for every row
    [2.0, 2.0, 2.0]
"""
    )

    def __call__(self, preds: ArrayLike, train_data: Any) -> Tuple[np.ndarray, np.ndarray]:
        check_call_form(True, train_data, "fastloss.lightgbm.Objective", "SklearnObjective")
        return self._call(train_data.get_label(), preds, train_data.get_weight())


def _third_is_group() -> bool:
    """LightGBM < 4 passes (y_true, y_pred, group) to a 3-argument objective and weights the
    result itself."""
    version = library_version("lightgbm", import_it=False)
    return version is not None and version < (4, 0)


class SklearnObjective(_LGBAdapter):
    __doc__ = (
        "LightGBM scikit-learn-API objective: ``LGBMRegressor(objective=SklearnObjective(loss))``."
        "\n\nCalled as ``obj(y_true, y_pred, weight=None) -> (grad, hess)``." + "\n"
        + (Adapter.__doc__ or "")
    )

    def __call__(self, y_true: ArrayLike, y_pred: ArrayLike, weight: ArrayLike = None
                 ) -> Tuple[np.ndarray, np.ndarray]:
        check_call_form(False, y_pred, "fastloss.lightgbm.SklearnObjective", "Objective")
        if _third_is_group():
            weight = None
        return self._call(np.asarray(y_true), y_pred, weight)


class Metric(MetricBase):
    """LightGBM native eval metric: ``lightgbm.train(..., feval=Metric(loss))``.

    Called as ``metric(preds, eval_data) -> (name, value, False)``: the weighted mean loss of the
    raw scores (set ``params["metric"] = "None"`` to see it alone).
    """

    def __call__(self, preds: ArrayLike, eval_data: Any) -> Tuple[str, float, bool]:
        check_call_form(True, eval_data, "fastloss.lightgbm.Metric", "SklearnMetric")
        labels = np.asarray(eval_data.get_label())
        raw, _ = _as_rows(preds, labels.size)
        return self.__name__, self.value(labels, raw, eval_data.get_weight()), False


class SklearnMetric(MetricBase):
    """LightGBM scikit-learn-API eval metric: ``model.fit(..., eval_metric=SklearnMetric(loss))``.

    Called as ``metric(y_true, y_pred, weight=None) -> (name, value, False)``.
    """

    def __call__(self, y_true: ArrayLike, y_pred: ArrayLike, weight: ArrayLike = None
                 ) -> Tuple[str, float, bool]:
        check_call_form(False, y_pred, "fastloss.lightgbm.SklearnMetric", "Metric")
        labels = np.asarray(y_true)
        raw, _ = _as_rows(y_pred, labels.size)
        return self.__name__, self.value(labels, raw, weight), False
