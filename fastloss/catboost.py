"""Any fastloss loss as a CatBoost objective and eval metric.

Usage (``X``, ``y`` your data)::

    from catboost import CatBoostRegressor
    import fastloss, fastloss.catboost as fcb

    loss = fastloss.Poisson()
    obj = fcb.Objective(loss)
    b = obj.intercept(y)
    model = CatBoostRegressor(loss_function=obj, eval_metric=fcb.Metric(loss),
                              leaf_estimation_method="Newton")
    model.fit(X, y, baseline=obj.init_score(y, intercept=b))
    obj.set_intercept(model, b)              # predictions now include it
    mu = obj.inverse_link(model.predict(X_new, prediction_type="RawFormulaVal"))

- :class:`Objective` is the ``loss_function`` object of ``CatBoost``, ``CatBoostRegressor`` and
  ``CatBoostClassifier``: ``calc_ders_range`` for one-dimensional losses (CatBoost calls it on
  chunks of rows) and ``calc_ders_multi`` for multiclass (one row per call; pass
  ``classes_count``). CatBoost wants the derivatives of *minus* the loss (of the
  log-likelihood); the adapter negates fastloss's derivatives itself.
- :class:`Metric` is the ``eval_metric`` object: the weighted mean loss of the raw scores.

Leaf values: CatBoost's default leaf estimation for a Python objective is a gradient step; pass
``leaf_estimation_method="Newton"`` to use the hessian (what its built-in ``RMSE`` and
``Logloss`` do). The multiclass hessian handed over is diagonal (fastloss's row-wise losses give
the diagonal), under the same hessian policy as the other libraries.

The intercept: CatBoost's ``boost_from_average`` only serves its built-in losses, and a
``baseline`` given to ``fit`` is not part of the model: :meth:`Objective.set_intercept` adds the
intercept to the model's bias after training, so ``predict`` includes it.

This module never imports ``catboost``.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from ._gbdt import Adapter, ArrayLike, MetricBase, shape_targets, shape_weights

__all__ = ["Objective", "Metric"]


class Objective(Adapter):
    __doc__ = (
        "CatBoost objective: ``CatBoostRegressor(loss_function=Objective(loss))``.\n\n"
        "CatBoost calls ``calc_ders_range(approxes, targets, weights)`` (one-dimensional) or "
        "``calc_ders_multi(approxes, target, weight)`` (multiclass), and gets the derivatives "
        "of minus the loss.\n" + (Adapter.__doc__ or "") + """
    Examples
    --------
    >>> import numpy as np, fastloss, fastloss.catboost as fcb
    >>> obj = fcb.Objective(fastloss.MSE())
    >>> obj.calc_ders_range(np.array([0.5, 3.0]), np.array([1.0, 1.0]), None).tolist()
    [[0.5, -1.0], [-2.0, -1.0]]
"""
    )
    library = "catboost"

    def calc_ders_range(self, approxes: ArrayLike, targets: ArrayLike,
                        weights: ArrayLike) -> np.ndarray:
        """``(m, 2)`` array of ``(-g, -h)`` for the rows of one chunk (float64, CatBoost's type)."""
        raw = np.asarray(approxes, dtype=np.float64)
        out = np.empty((2, raw.shape[0]), dtype=np.float64)
        g, h = self.derivatives(targets, raw, weights, gradient_out=out[0], hessian_out=out[1])
        if g is not out[0] or h is not out[1]:  # a loss that does not honour the out arrays
            out[0], out[1] = g, h
        np.negative(out, out=out)
        return out.T

    def calc_ders_multi(self, approxes: ArrayLike, target: Any, weight: Any
                        ) -> Tuple[np.ndarray, np.ndarray]:
        """``(-g, -H)`` for one row: ``K`` gradients and the ``K x K`` (diagonal) hessian."""
        # One call per row: skip the array-shaping checks of derivatives() (CatBoost gives a
        # scalar class index and a scalar weight, 1.0 when there are none).
        raw = np.asarray(approxes, dtype=np.float64).reshape(1, -1)
        label = float(target)
        if not label.is_integer():
            raise ValueError(f"{type(self).__name__}: multiclass labels must be integers, "
                             f"got {target!r}")
        w = None if weight is None or weight == 1.0 else np.array([weight], dtype=np.float64)
        g, h = self._derivatives(np.array([int(label)]), raw, w)
        hess = np.zeros((raw.shape[1], raw.shape[1]))
        np.negative(h[0], out=hess.reshape(-1)[:: raw.shape[1] + 1])
        return np.negative(g[0]), hess

    def set_intercept(self, model: Any, intercept: Union[float, np.ndarray]) -> Any:
        """Add ``intercept`` (from :meth:`intercept`) to a trained CatBoost model's bias, so its
        raw predictions include the ``baseline`` it was trained from. Returns the model."""
        scale, bias = model.get_scale_and_bias()
        b = np.asarray(intercept, dtype=np.float64)
        if b.ndim == 0:
            new_bias: Any = np.asarray(bias, dtype=np.float64) + float(b)
        else:
            new_bias = np.asarray(bias, dtype=np.float64) + b
        new_bias = float(new_bias) if np.ndim(new_bias) == 0 else [float(v) for v in new_bias]
        model.set_scale_and_bias(scale, new_bias)
        return model


class Metric(MetricBase):
    """CatBoost eval metric: ``CatBoostRegressor(eval_metric=Metric(loss))``.

    ``evaluate(approxes, target, weight)`` returns ``(sum of w * loss, sum of w)`` over the raw
    scores and ``get_final_error`` their ratio, the weighted mean loss; lower is better.
    """

    def is_max_optimal(self) -> bool:
        return False

    def evaluate(self, approxes: Any, target: ArrayLike, weight: Optional[ArrayLike]
                 ) -> Tuple[float, float]:
        if len(approxes) == 1:
            raw = np.asarray(approxes[0], dtype=np.float64)
        else:
            raw = np.column_stack([np.asarray(a, dtype=np.float64) for a in approxes])
        n = raw.shape[0]
        if weight is not None and np.size(weight) == 0:
            weight = None
        total = self.sum(target, raw, weight)
        wsum = float(n) if weight is None else float(np.sum(np.asarray(weight, np.float64)))
        return total, wsum

    def sum(self, y_true: ArrayLike, raw_score: ArrayLike, sample_weight: ArrayLike = None
            ) -> float:
        """The weighted sum of the loss of ``raw_score`` against ``y_true``."""
        raw = np.asarray(raw_score)
        who = type(self).__name__
        y = shape_targets(np.asarray(y_true), raw, self._elementwise, who)
        w = shape_weights(sample_weight, raw, self._elementwise, who)
        return float(self._loss.loss(y, raw, sample_weight=w, reduction="sum",
                                     n_threads=self._n_threads))

    def get_final_error(self, error: float, weight: float) -> float:
        return error / weight if weight > 0 else float("nan")
