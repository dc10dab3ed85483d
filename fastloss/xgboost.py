"""Any fastloss loss as an XGBoost objective and eval metric.

Usage (``X``, ``y`` your data)::

    import xgboost as xgb
    import fastloss, fastloss.xgboost as fxgb

    loss = fastloss.Poisson()
    obj = fxgb.Objective(loss)
    params = {"base_score": obj.base_score(y), "disable_default_eval_metric": True}
    bst = xgb.train(params, xgb.DMatrix(X, y), 50, obj=obj, custom_metric=fxgb.Metric(loss))
    mu = obj.inverse_link(bst.predict(xgb.DMatrix(X_new), output_margin=True))

- :class:`Objective` is the native objective, ``xgb.train(obj=...)``: called with the raw margins
  (float32, ``(n,)`` or ``(n, K)``) and the training ``DMatrix``; it returns float32 gradient and
  hessian in the same shape, weighted by the ``DMatrix``'s weights, computed in float32 without
  copying the margins, labels or weights.
- :class:`SklearnObjective` is the scikit-learn-API objective, ``XGBRegressor(objective=...)``,
  called as ``obj(y_true, y_pred, sample_weight=w)`` (XGBoost >= 2.1 passes the weights; older
  versions do not, and the adapter then raises rather than train unweighted).
- :class:`Metric` (``custom_metric=``) and :class:`SklearnMetric` (``eval_metric=``) give the
  weighted mean loss on the raw margins, which is what XGBoost passes to a custom metric when the
  objective is custom.

Multiclass: set ``num_class`` and use a loss such as ``CategoricalCrossEntropy(from_logits=True)``;
margins are ``(n, K)`` (XGBoost >= 2; the flat row-major layout of XGBoost 1.x is handled too).
With a custom objective XGBoost predicts margins (for ``num_class`` it returns argmax labels unless
``output_margin=True``), so :meth:`Objective.inverse_link` gives means and probabilities back.

The intercept: with a custom objective XGBoost does not estimate ``base_score`` (it stays 0.5 in
margin space). :meth:`Objective.base_score` gives ``loss.baseline`` in margin space, the
``base_score`` parameter, saved in the model. For multiclass, :meth:`Objective.base_margin` gives
it per row for ``DMatrix(base_margin=...)`` (which replaces ``base_score`` and must be given
again at prediction); a per-class ``base_score`` list works with XGBoost 3.1 to 3.4.

This module never imports ``xgboost`` except to check its version in the scikit-learn adapters.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

import numpy as np

from ._gbdt import Adapter, ArrayLike, MetricBase, check_call_form, library_version

__all__ = ["Objective", "SklearnObjective", "Metric", "SklearnMetric"]


_EXAMPLE = """
    Examples
    --------
    >>> import fastloss, fastloss.xgboost as fxgb
    >>> obj = fxgb.Objective(fastloss.MSE())      # half squared error, as reg:squarederror
    >>> g, h = obj.derivatives([1.0, 2.0], [0.5, 2.5], [1.0, 3.0])
    >>> g.tolist(), h.tolist()
    ([-0.5, 1.5], [1.0, 3.0])
    >>> obj.base_score([1.0, 2.0, 6.0])
    3.0
"""


class _XGBAdapter(Adapter):
    __doc__ = Adapter.__doc__
    library = "xgboost"

    def _bound_factor(self, n_classes: int) -> float:
        # multi:softprob: hess = max(2 p (1 - p) w, 1e-16)
        return 2.0

    def _call(self, labels: np.ndarray, predt: np.ndarray,
              weight: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        flat = np.ndim(predt) == 1
        predt = _unflatten(predt, labels)
        flat = flat and predt.ndim == 2
        g, h = self.derivatives(labels, predt, weight)
        if flat:
            return g.reshape(-1), h.reshape(-1)
        return g, h

    def base_score(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None,
                   n_classes: Optional[int] = None) -> Union[float, List[float]]:
        """The ``base_score`` parameter for a custom objective: ``loss.baseline`` in margin
        space (XGBoost applies no link to it when the objective is custom).

        A float, or for multiclass a list with one margin per class, which XGBoost 3.1 to 3.4
        read as margins; :meth:`base_margin` is the version-proof way to give a per-class
        intercept."""
        b = self.intercept(y_true, sample_weight=sample_weight, n_classes=n_classes)
        if isinstance(b, float):
            return b
        version = library_version("xgboost", import_it=False)
        if version is not None and version < (3, 1):
            raise ValueError(
                "XGBoost < 3.1 has a scalar base_score; give the per-class intercept as "
                "DMatrix(base_margin=obj.base_margin(y))"
            )
        return [float(v) for v in b]

    def base_margin(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None,
                    intercept: Union[None, float, np.ndarray] = None,
                    n_classes: Optional[int] = None) -> np.ndarray:
        """``loss.baseline`` for every row of ``y_true``, ``(n,)`` or ``(n, K)``, for
        ``DMatrix(base_margin=...)``. XGBoost then ignores ``base_score``, and a prediction
        DMatrix needs its own base margin (``init_score`` with ``intercept=`` repeats a known
        intercept for any number of rows); :meth:`base_score` avoids both."""
        return self.init_score(y_true, sample_weight=sample_weight, intercept=intercept,
                               n_classes=n_classes)


class Objective(_XGBAdapter):
    __doc__ = (
        "XGBoost native objective: ``xgb.train(params, dtrain, obj=Objective(loss))``.\n\n"
        "Called as ``obj(predt, dtrain) -> (grad, hess)``." + "\n" + (Adapter.__doc__ or "")
        + _EXAMPLE
    )

    def __call__(self, predt: np.ndarray, dtrain: Any) -> Tuple[np.ndarray, np.ndarray]:
        check_call_form(True, dtrain, "fastloss.xgboost.Objective", "SklearnObjective")
        return self._call(dtrain.get_label(), predt, dtrain.get_weight())


def _unflatten(predt: ArrayLike, labels: np.ndarray) -> np.ndarray:
    """XGBoost < 2 hands multiclass margins as a flat row-major ``(n * K,)`` array."""
    predt = np.asarray(predt)
    if predt.ndim == 1 and labels.size and predt.size != labels.size:
        if predt.size % labels.size:
            raise ValueError(f"{predt.size} margins for {labels.size} labels")
        return predt.reshape(labels.size, -1)
    return predt


def _check_sklearn_weights(who: str) -> None:
    version = library_version("xgboost", import_it=False)
    if version is not None and version < (2, 1):
        raise RuntimeError(
            f"{who}: this XGBoost (< 2.1) gives scikit-learn-API custom objectives and metrics "
            "no sample weights, so they would train unweighted; upgrade XGBoost or use "
            "fastloss.xgboost.Objective with xgboost.train"
        )


class SklearnObjective(_XGBAdapter):
    __doc__ = (
        "XGBoost scikit-learn-API objective: ``XGBRegressor(objective=SklearnObjective(loss))``."
        "\n\nCalled as ``obj(y_true, y_pred, sample_weight=None) -> (grad, hess)``." + "\n"
        + (Adapter.__doc__ or "")
    )

    def __call__(self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike = None
                 ) -> Tuple[np.ndarray, np.ndarray]:
        check_call_form(False, y_pred, "fastloss.xgboost.SklearnObjective", "Objective")
        if sample_weight is None:
            _check_sklearn_weights(type(self).__name__)
        return self._call(np.asarray(y_true), y_pred, sample_weight)


class Metric(MetricBase):
    """XGBoost native eval metric: ``xgb.train(..., custom_metric=Metric(loss))``.

    Called as ``metric(predt, dmatrix) -> (name, value)``: the weighted mean loss of the raw
    margins (set ``disable_default_eval_metric`` to see it alone).

    Parameters
    ----------
    loss : fastloss loss
    name : str, optional
        The metric's name in the evaluation log (default: the loss's registry name).
    n_threads : int, optional
    """

    def __call__(self, predt: np.ndarray, dmatrix: Any) -> Tuple[str, float]:
        check_call_form(True, dmatrix, "fastloss.xgboost.Metric", "SklearnMetric")
        labels = dmatrix.get_label()
        return self.__name__, self.value(labels, _unflatten(predt, labels), dmatrix.get_weight())


class SklearnMetric(MetricBase):
    """XGBoost scikit-learn-API eval metric: ``XGBRegressor(eval_metric=SklearnMetric(loss))``.

    Called as ``metric(y_true, y_pred, sample_weight=None) -> value``; the name shown is the
    loss's registry name (or ``name``).
    """

    def __call__(self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike = None
                 ) -> float:
        check_call_form(False, y_pred, "fastloss.xgboost.SklearnMetric", "Metric")
        if sample_weight is None:
            _check_sklearn_weights(type(self).__name__)
        y = np.asarray(y_true)
        return self.value(y, _unflatten(y_pred, y), sample_weight)
