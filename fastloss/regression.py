"""Element-wise regression losses.

Each class is a description (name, parameters, kernel, baseline); the per-element math is in
``_regression.pyx.tp`` under the same name, and the API comes from
:class:`fastloss._base.ElementwiseLoss`. Residual ``e = y_true - y_pred``; derivatives are with
respect to ``y_pred``.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ._dispatch import kernel_module
from ._base import ArrayLike, Domain, ElementwiseLoss, Param
from ._registry import register

_regression = kernel_module("_regression")

__all__ = [
    "MSE", "MAE", "RMSE", "Huber", "PseudoHuber", "Charbonnier", "LogCosh", "Quantile",
    "Poisson", "Gamma", "Tweedie",
]


# y_pred of the log-link losses is log(mu): exp of it overflows beyond about 700.
_LOG_MEAN = Domain(finite_up_to=100.0)


def _weighted_quantile(y: np.ndarray, w: np.ndarray, q: float) -> float:
    """Smallest y_k whose cumulative weight reaches q * sum(w): a minimiser of the pinball loss."""
    order = np.argsort(y, kind="stable")
    ys, cw = y[order], np.cumsum(w[order])
    k = int(np.searchsorted(cw, q * cw[-1], side="left"))
    return float(ys[min(k, ys.size - 1)])


def _weighted_mean(y: np.ndarray, w: np.ndarray) -> float:
    return float(np.dot(w, y) / np.sum(w))


class _ConvexBaselineMixin:
    """Baseline of a convex, symmetric loss in the residual: solve sum w l'(y - c) = 0 for c.

    The minimiser lies in [min y, max y]; a Newton step from the loss's own derivatives is taken
    when it stays inside the bracket, else bisection. 60 iterations reach float64 resolution.
    """

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        y, w = self._baseline_inputs(y_true, sample_weight)  # type: ignore[attr-defined]
        lo, hi = float(np.min(y)), float(np.max(y))
        c = _weighted_mean(y, w)
        for _ in range(200):
            g, h = self.gradient_hessian(y, np.full_like(y, c), sample_weight=w)  # type: ignore
            gs, hs = float(np.sum(g)), float(np.sum(h))
            if gs > 0:
                hi = c
            elif gs < 0:
                lo = c
            else:
                return c
            step = c - gs / hs if hs > 0 else math.nan
            new = step if lo < step < hi else 0.5 * (lo + hi)
            if new == c or hi - lo <= 4 * np.finfo(float).eps * max(abs(lo), abs(hi), 1e-300):
                return new
            c = new
        return c


@register
class MSE(ElementwiseLoss):
    r"""Squared error :math:`l = (y - p)^2` (the mean of it is the MSE).

    Gradient :math:`l' = -2 (y - p)`, hessian :math:`l'' = 2`.

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.MSE().loss([0.0, 1.0], [1.0, 3.0]))   # (1 + 4) / 2
    2.5
    """

    name = "mse"
    aliases = ("squared_error",)
    _kernel = staticmethod(_regression.squared_error)
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        """The weighted mean of ``y_true``."""
        return _weighted_mean(*self._baseline_inputs(y_true, sample_weight))


@register
class MAE(ElementwiseLoss):
    r"""Absolute error :math:`l = |y - p|`.

    Gradient :math:`l' = -\operatorname{sign}(y - p)` (0 where ``y == p``), hessian 0.

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.MAE().loss([0.0, 1.0], [1.0, 3.0]))
    1.5
    """

    name = "mae"
    aliases = ("absolute_error",)
    _kernel = staticmethod(_regression.absolute_error)
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        """The weighted median of ``y_true`` (the lower one when two values tie)."""
        return _weighted_quantile(*self._baseline_inputs(y_true, sample_weight), 0.5)


_RMS_TINY = 2.0**-450       # below it, the mean of e^2 has lost its digits or underflowed


def _scaled_value(value, k: int):
    """``value * 2^k`` in the dtype of ``value`` (inf past the float32 range, no warning)."""
    with np.errstate(over="ignore"):
        return value.dtype.type(math.ldexp(float(value), k))


@register
class RMSE(ElementwiseLoss):
    r"""Root mean squared error :math:`L = \sqrt{\sum_i w_i (y_i - p_i)^2 / \sum_i w_i}`.

    Only ``reduction="mean"`` exists. Gradient
    :math:`\partial L / \partial p_i = -w_i (y_i - p_i) / (L \sum_j w_j)` (0 when ``L == 0``);
    it has no per-sample hessian, so :meth:`gradient_hessian` raises ``NotImplementedError``.

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.RMSE().loss([0.0, 0.0], [3.0, 4.0]))   # sqrt((9 + 16) / 2)
    3.5355339059327378
    """

    name = "rmse"
    has_hessian = False
    reductions = ("mean",)
    _kernel = staticmethod(_regression.squared_error)
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()

    def _reduce(self, total: float, wsum: float, reduction: str) -> float:
        # the root of the float64 mean: in float32 the mean itself may overflow (or round)
        mean = super()._reduce(total, wsum, reduction)
        return math.sqrt(mean) if mean >= 0 else mean

    def loss(self, y_true, y_pred, *, sample_weight=None, reduction="mean", loss_out=None,
             n_threads=None):
        value = super().loss(y_true, y_pred, sample_weight=sample_weight, reduction=reduction,
                             loss_out=loss_out, n_threads=n_threads)
        if not _RMS_TINY <= float(value) < math.inf:
            scaled = self._rescaled(y_true, y_pred, sample_weight, n_threads, False)
            if scaled is not None:
                value = scaled[0]
        return value

    def gradient(self, y_true, y_pred, *, sample_weight=None, reduction="mean", out=None,
                 n_threads=None):
        return self.loss_gradient(y_true, y_pred, sample_weight=sample_weight,
                                  reduction=reduction, gradient_out=out, n_threads=n_threads)[1]

    def loss_gradient(self, y_true, y_pred, *, sample_weight=None, reduction="mean",
                      loss_out=None, gradient_out=None, n_threads=None):
        # d sqrt(M) = dM / (2 sqrt(M)): one pass for sqrt(M) and dM/dp, then the gradient
        # scaled once.
        value, g = super().loss_gradient(y_true, y_pred, sample_weight=sample_weight,
                                         reduction=reduction, loss_out=loss_out,
                                         gradient_out=gradient_out, n_threads=n_threads)
        rmse = float(value)
        if not _RMS_TINY <= rmse < math.inf and (rmse != 0 or np.any(g)):
            scaled = self._rescaled(y_true, y_pred, sample_weight, n_threads, True, g)
            if scaled is not None:
                return scaled
        with np.errstate(invalid="ignore"):     # inf * 0 = NaN for infinite inputs
            g *= (0.5 / rmse) if rmse > 0 else 0.0
        return value, g

    def _rescaled(self, y_true, y_pred, sample_weight, n_threads, grad, g=None):
        """``(RMSE, gradient)`` from residuals scaled by a power of two, or None.

        The mean of e^2 overflows for |e| > 1.3e154 and underflows to 0 for |e| < 1.5e-162
        although the RMSE, and its gradient ``-w e / (W RMSE)``, are finite and non-zero. With
        ``y / s`` and ``p / s`` for ``s = 2^k`` (exact), the scaled pass gives ``RMSE / s`` and a
        gradient that ``RMSE / s`` scales back exactly. None when the inputs are not finite (the
        first result stands) or the scaled pass is no better.
        """
        yt = np.asarray(y_true, dtype=np.float64 if np.asarray(y_pred).dtype != np.float32
                        else np.float32)
        yp = np.asarray(y_pred, dtype=yt.dtype)
        with np.errstate(invalid="ignore"):
            top = max(float(np.max(np.abs(yt), initial=0.0)),
                      float(np.max(np.abs(yp), initial=0.0)))
        if not 0.0 < top < math.inf:
            return None
        k = math.frexp(top)[1]
        ys, ps = np.ldexp(yt, -k), np.ldexp(yp, -k)
        if not grad:
            value = super().loss(ys, ps, sample_weight=sample_weight, n_threads=n_threads)
            return (_scaled_value(value, k),) if 0 < value < math.inf else None
        value, gs = super().loss_gradient(ys, ps, sample_weight=sample_weight,
                                          n_threads=n_threads)
        if not 0 < float(value) < math.inf:
            return None
        # (gs holds -2 w (e/s) / W: times 0.5 / (RMSE/s) it is the gradient, unscaled)
        g[...] = gs * (0.5 / float(value))
        return _scaled_value(value, k), g

    def reduce_sums(self, loss_sum, weight_sum, reduction="mean", dtype=np.float64):
        """The root of the mean from the totals of :meth:`partial_sums` (squared errors)."""
        mse = super().reduce_sums(loss_sum, weight_sum, reduction, dtype)
        return type(mse)(math.sqrt(mse))

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        """The weighted mean of ``y_true``."""
        return _weighted_mean(*self._baseline_inputs(y_true, sample_weight))


@register
class Huber(_ConvexBaselineMixin, ElementwiseLoss):
    r"""Huber loss, quadratic within ``delta`` of the target and linear beyond.

    .. math::
        l = \begin{cases} \tfrac12 e^2 & |e| \le \delta \\
                          \delta (|e| - \tfrac12 \delta) & |e| > \delta \end{cases},
        \quad e = y - p

    Gradient :math:`l' = -e` inside, :math:`-\delta \operatorname{sign}(e)` outside; hessian 1
    inside, 0 outside.

    Parameters
    ----------
    delta : float > 0, default 1.0
        Where the quadratic part meets the linear one.

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.Huber(delta=1.0).loss([0.0, 0.0], [0.5, 3.0]))   # (0.125 + 2.5) / 2
    1.3125
    """

    name = "huber"
    params = (Param("delta", 1.0, low=0, low_open=True),)
    _kernel = staticmethod(_regression.huber)
    __slots__ = ()

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__(delta=delta)


@register
class PseudoHuber(_ConvexBaselineMixin, ElementwiseLoss):
    r"""Pseudo-Huber loss, a smooth Huber: :math:`l = \delta^2(\sqrt{1 + (e/\delta)^2} - 1)`.

    With :math:`s = \sqrt{1 + (e/\delta)^2}`: gradient :math:`l' = -e / s`, hessian
    :math:`l'' = s^{-3}`. Evaluated without cancellation for small ``e`` and without overflow for
    large ``e``.

    Parameters
    ----------
    delta : float > 0, default 1.0

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.PseudoHuber(delta=1.0).loss([0.0], [0.0]))
    0.0
    """

    name = "pseudo_huber"
    params = (Param("delta", 1.0, low=0, low_open=True),)
    _kernel = staticmethod(_regression.pseudo_huber)
    __slots__ = ()

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__(delta=delta)


@register
class Charbonnier(_ConvexBaselineMixin, ElementwiseLoss):
    r"""Charbonnier loss :math:`l = \sqrt{e^2 + \epsilon^2}` (a smooth absolute error).

    Gradient :math:`l' = -e / l`, hessian :math:`l'' = \epsilon^2 / l^3`. Note that the loss is
    ``eps`` (not 0) at ``e = 0``, as in the usual definition.

    Parameters
    ----------
    eps : float > 0, default 1e-3

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.Charbonnier(eps=3.0).loss([0.0], [4.0]))
    5.0
    """

    name = "charbonnier"
    params = (Param("eps", 1e-3, low=0, low_open=True),)
    _kernel = staticmethod(_regression.charbonnier)
    __slots__ = ()

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__(eps=eps)


@register
class LogCosh(_ConvexBaselineMixin, ElementwiseLoss):
    r"""Log-cosh loss :math:`l = \log\cosh(e)`.

    Computed as :math:`|e| + \operatorname{log1p}(e^{-2|e|}) - \log 2`, finite for every finite
    ``e``. Gradient :math:`l' = -\tanh(e)`, hessian :math:`l'' = 1 - \tanh^2(e)`.

    Float32 inputs compute in float32 arithmetic (``float32_arithmetic``: twice the SIMD
    lanes, within a few float32 ulp of the exact values).

    Examples
    --------
    >>> import fastloss, math
    >>> abs(float(fastloss.LogCosh().loss([0.0], [1.0])) - math.log(math.cosh(1.0))) < 1e-15
    True
    """

    name = "log_cosh"
    aliases = ("logcosh",)
    _kernel = staticmethod(_regression.log_cosh)
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()


@register
class Quantile(ElementwiseLoss):
    r"""Pinball (quantile) loss :math:`l = \max(q e, (q - 1) e)`.

    Gradient :math:`l' = -q` for :math:`e > 0`, :math:`1 - q` for :math:`e < 0`, 0 at
    :math:`e = 0`; hessian 0. ``quantile=0.5`` is half the absolute error.

    Parameters
    ----------
    quantile : float in (0, 1), default 0.5

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.Quantile(quantile=0.9).loss([1.0, 0.0], [0.0, 1.0]))   # (0.9 + 0.1) / 2
    0.5
    """

    name = "quantile"
    aliases = ("pinball",)
    params = (Param("quantile", 0.5, low=0, high=1, low_open=True, high_open=True),)
    _kernel = staticmethod(_regression.pinball)
    __slots__ = ()

    def __init__(self, quantile: float = 0.5) -> None:
        super().__init__(quantile=quantile)

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        """The weighted ``quantile`` of ``y_true``."""
        return _weighted_quantile(*self._baseline_inputs(y_true, sample_weight), self.quantile)


class _LogLinkBaselineMixin:
    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        """``log`` of the weighted mean of ``y_true`` (``-inf`` when every target is 0)."""
        m = _weighted_mean(*self._baseline_inputs(y_true, sample_weight))  # type: ignore
        return math.log(m) if m > 0 else -math.inf


@register
class Poisson(_LogLinkBaselineMixin, ElementwiseLoss):
    r"""Poisson deviance with a log link: ``y_pred`` is :math:`\log \mu`.

    .. math:: l = 2\,(y \log(y/\mu) - y + \mu), \qquad \mu = e^{p}

    (:math:`0 \log 0 = 0`). Gradient :math:`l' = 2(\mu - y)`, hessian :math:`l'' = 2\mu`.
    ``y_true`` must be >= 0. This is the unit deviance of ``sklearn.metrics.mean_poisson_deviance``
    evaluated at :math:`\mu = e^p`.

    Float32 inputs compute in mixed precision (``float32_arithmetic``): :math:`\log y` and
    :math:`r = p - \log y` in float64 (near the optimum the loss is about :math:`y r^2`), the
    rest in float32 SIMD, within a few float32 ulp of the exact values.

    Examples
    --------
    >>> import fastloss, math
    >>> float(fastloss.Poisson().loss([2.0], [math.log(2.0)]))
    0.0
    """

    name = "poisson"
    y_true_domain = ">= 0"
    y_true_values = Domain(low=0)
    y_pred_values = _LOG_MEAN
    _kernel = staticmethod(_regression.poisson_deviance)
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()


@register
class Gamma(_LogLinkBaselineMixin, ElementwiseLoss):
    r"""Gamma deviance with a log link: ``y_pred`` is :math:`\log \mu`.

    .. math:: l = 2\,(\log(\mu / y) + y / \mu - 1), \qquad \mu = e^{p}

    Gradient :math:`l' = 2(1 - y/\mu)`, hessian :math:`l'' = 2 y / \mu`. ``y_true`` must be > 0.

    Float32 inputs compute in mixed precision (``float32_arithmetic``), as :class:`Poisson`:
    :math:`\log y - p` in float64, the rest in float32 SIMD.

    Examples
    --------
    >>> import fastloss, math
    >>> float(fastloss.Gamma().loss([3.0], [math.log(3.0)]))
    0.0
    """

    name = "gamma"
    y_true_domain = "> 0"
    y_true_values = Domain(low=0, low_open=True)
    y_pred_values = _LOG_MEAN
    _kernel = staticmethod(_regression.gamma_deviance)
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()


@register
class Tweedie(_LogLinkBaselineMixin, ElementwiseLoss):
    r"""Tweedie deviance with power :math:`\rho` and a log link (``y_pred`` is :math:`\log\mu`).

    .. math::
        l = 2\left(\frac{\max(y,0)^{2-\rho}}{(1-\rho)(2-\rho)}
                   - \frac{y\,\mu^{1-\rho}}{1-\rho} + \frac{\mu^{2-\rho}}{2-\rho}\right)

    Gradient :math:`l' = 2(\mu^{2-\rho} - y\mu^{1-\rho})`, hessian
    :math:`l'' = 2((2-\rho)\mu^{2-\rho} - (1-\rho) y \mu^{1-\rho})`. ``power=0`` is the squared
    error in :math:`\mu`, 1 the Poisson and 2 the Gamma deviance. ``y_true`` must be >= 0 for
    ``1 <= power < 2`` and > 0 for ``power >= 2``; any real for ``power <= 0``.

    Parameters
    ----------
    power : float, <= 0 or >= 1, default 1.5

    Examples
    --------
    >>> import fastloss, math
    >>> abs(float(fastloss.Tweedie(power=1.5).loss([2.0], [math.log(2.0)]))) < 1e-12
    True
    """

    name = "tweedie"
    params = (Param("power", 1.5, check=lambda v: v <= 0 or v >= 1, rule="not in (0, 1)"),)
    _kernel = staticmethod(_regression.tweedie_deviance)
    __slots__ = ()

    def __init__(self, power: float = 1.5) -> None:
        super().__init__(power=power)

    def _kernel_call(self):
        # powers 0, 1 and 2 have closed forms of their own (exact, and cheaper)
        special = {0.0: _regression.tweedie0_deviance, 1.0: _regression.poisson_deviance,
                   2.0: _regression.gamma_deviance}
        if self.power in special:
            return special[self.power], ()
        if 1.0 < self.power < 2.0:
            # the common range (compound Poisson-gamma): float32 data in mixed precision
            return _regression.tweedie12_deviance, (self.power,)
        return _regression.tweedie_deviance, (self.power,)

    @property
    def y_true_domain(self) -> str:  # type: ignore[override]
        if self.power <= 0:
            return "a real number"
        return ">= 0" if self.power < 2 else "> 0"

    # y^(2 - power) grows fast for negative powers: finite up to 1e30 for powers of moderate size
    y_pred_values = _LOG_MEAN

    @property
    def y_true_values(self) -> Domain:  # type: ignore[override]
        if self.power <= 0:
            return Domain(finite_up_to=1e30)
        return Domain(low=0, low_open=self.power >= 2, finite_up_to=1e30)
