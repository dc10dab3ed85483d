"""Classification losses: binary (element-wise) and multiclass (row-wise).

Each class is a description (name, parameters, kernel choice, baseline); the math is in
``_binary.pyx.tp`` (element-wise) and ``_multiclass.pyx.tp`` (row-wise), and the API comes from
:class:`fastloss._base.ElementwiseLoss` and :class:`fastloss._rowwise.RowwiseLoss`.

Conventions shared by every class here:

* ``from_logits=False`` (the default) means ``y_pred`` holds probabilities, checked to lie in
  [0, 1] and clipped to ``[eps, 1 - eps]`` with ``eps = numpy.finfo(dtype).eps`` of the compute
  dtype (2.2e-16 for float64, 1.2e-7 for float32), as ``sklearn.metrics.log_loss`` does.
  Derivatives are then those of the formula at the clipped value (finite, never zeroed by the
  clip). ``from_logits=True`` means raw margins; derivatives are with respect to them.
* ``0 log 0 = 0``.
* Label smoothing mixes the target with the uniform distribution over the K classes,
  ``(1 - eps) * target + eps / K`` (K = 2 for the binary losses).
* Class weights follow PyTorch: see :class:`CategoricalCrossEntropy`.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ._base import REAL, ArrayLike, Domain, ElementwiseLoss, Param
from ._dispatch import kernel_module
from ._params import ChoiceParam, IntParam, OptionalParam, VectorParam
from ._registry import register
from ._rowwise import RowwiseLoss
from ._validation import as_array

_binary = kernel_module("_binary")
_multiclass = kernel_module("_multiclass")

__all__ = [
    "BinaryCrossEntropy", "Focal", "Hinge", "SquaredHinge",
    "CategoricalCrossEntropy", "KLDivergence", "MulticlassHinge", "probability_eps",
]


def probability_eps(dtype: Any) -> float:
    """The clip applied to probability inputs of compute dtype ``dtype``: ``finfo(dtype).eps``.

    Probabilities are clipped to ``[eps, 1 - eps]``; both bounds are exact in that dtype.

    Examples
    --------
    >>> from fastloss.classification import probability_eps
    >>> probability_eps("float64"), float(probability_eps("float32")) > 1e-7
    (2.220446049250313e-16, True)
    """
    return float(np.finfo(np.dtype(dtype)).eps)


_F64 = np.dtype(np.float64)
_FROM_LOGITS = Param("from_logits", False, kind="bool")
# Declarative domains (fastloss._base.Domain) for the generic property tests.
_UNIT = Domain(low=0, high=1)
_LOG_UNIT = Domain(high=0)
# Logits whose differences (z_j - z_k, margins) stay finite.
_SCORES = Domain(finite_up_to=1e300)


def _weighted_mean(y: np.ndarray, w: np.ndarray) -> float:
    return float(np.dot(w, y) / np.sum(w))


def _check_unit(y: np.ndarray, what: str, owner: str) -> None:
    if np.any((y < 0) | (y > 1)):
        raise ValueError(f"{owner}: {what} must be in [0, 1]; got values outside")


def _logit(a: float, b: float) -> float:
    """log(a / b) for a, b >= 0, with the infinite limits when one of them is 0."""
    if a == 0:
        return -math.inf
    if b == 0:
        return math.inf
    return math.log(a) - math.log(b)


def _sigmoid(c: float) -> float:
    if c >= 0:
        return 1.0 / (1.0 + math.exp(-c))
    e = math.exp(c)
    return e / (1.0 + e)


# ---------------------------------------------------------------------------------------------
# Binary, element-wise
# ---------------------------------------------------------------------------------------------

class _BinaryLoss(ElementwiseLoss):
    """Shared by the binary losses: the kernel is picked from ``from_logits`` (and the dtype)."""

    _kernels: Tuple[str, str] = ("", "")   # (from probabilities, from logits)
    __slots__ = ()

    def _scalar_args(self) -> tuple:
        raise NotImplementedError

    def _kernel_call_for(self, dtype: np.dtype):
        logits = self.from_logits
        kernel = getattr(_binary, self._kernels[1 if logits else 0])
        args = self._scalar_args()
        return kernel, args if logits else args + (probability_eps(dtype),)

    def _kernel_call(self):
        return self._kernel_call_for(_F64)

    @property
    def y_pred_domain(self) -> str:  # type: ignore[override]
        if self.from_logits:
            return "real"
        return "probabilities in [0, 1] (pass from_logits=True for logits)"

    y_true_values = _UNIT

    @property
    def y_pred_values(self) -> Domain:  # type: ignore[override]
        return REAL if self.from_logits else _UNIT

    @property
    def clipped_inputs(self) -> Tuple[str, ...]:
        """The input arrays clipped to ``[eps, 1 - eps]``, ``eps = probability_eps(dtype)``."""
        return () if self.from_logits else ("y_pred",)


@register
class BinaryCrossEntropy(_BinaryLoss):
    r"""Binary cross-entropy (log loss), from probabilities or from logits.

    With the smoothed target :math:`t = (1 - \epsilon) y + \epsilon / 2` and
    :math:`a = w_+ t`, :math:`b = 1 - t` (:math:`w_+` = ``pos_weight``):

    .. math:: l = -\left(a \log p + b \log(1 - p)\right), \qquad p = \sigma(z) \text{ from logits}

    From logits (``z``): :math:`l = a \log(1 + e^{-z}) + b \log(1 + e^{z})`, gradient
    :math:`l' = b\,p - a\,(1 - p)` (``sigmoid(z) - y`` for the defaults), hessian
    :math:`l'' = (a + b)\,p (1 - p)`. From probabilities (``p``, clipped to
    ``[eps, 1 - eps]``): :math:`l' = b / (1 - p) - a / p`, :math:`l'' = a / p^2 + b / (1 - p)^2`.

    ``pos_weight`` is PyTorch's (``binary_cross_entropy_with_logits``); the weighted form
    :math:`-(\alpha y \log p + \beta (1 - y) \log(1 - p))` is ``beta *`` this loss with
    ``pos_weight=alpha/beta``, or, for 0/1 labels, this loss with
    ``sample_weight = alpha * y + beta * (1 - y)``.

    Parameters
    ----------
    from_logits : bool, default False
        ``y_pred`` holds logits instead of probabilities in [0, 1].
    pos_weight : float > 0, default 1.0
        Weight of the positive term.
    label_smoothing : float in [0, 1], default 0.0
        ``y`` becomes ``(1 - label_smoothing) * y + label_smoothing / 2``.

    ``y_true`` holds targets in [0, 1] (soft labels allowed).

    From logits, float32 inputs compute in float32 arithmetic (``float32_arithmetic``: twice
    the SIMD lanes; a few float32 ulp, the gradient a few ulp of its two terms).

    Examples
    --------
    >>> import fastloss, math
    >>> l = float(fastloss.BinaryCrossEntropy().loss([1.0, 0.0], [0.8, 0.2]))
    >>> abs(l + math.log(0.8)) < 1e-15
    True
    >>> g, h = fastloss.BinaryCrossEntropy(from_logits=True).gradient_hessian([1.0], [0.0])
    >>> float(g[0]), float(h[0])
    (-0.5, 0.25)
    """

    name = "binary_cross_entropy"
    aliases = ("bce",)
    params = (
        _FROM_LOGITS,
        Param("pos_weight", 1.0, low=0, low_open=True),
        Param("label_smoothing", 0.0, low=0, high=1),
    )
    y_true_domain = "in [0, 1]"
    _kernels = ("bce_proba", "bce_logits")
    __slots__ = ()

    def __init__(self, from_logits: bool = False, pos_weight: float = 1.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__(from_logits=from_logits, pos_weight=pos_weight,
                         label_smoothing=label_smoothing)

    def _scalar_args(self) -> tuple:
        return (self.pos_weight, self.label_smoothing)

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        """The best constant: ``p = a / (a + b)`` with ``a = pos_weight * t``, ``b = 1 - t``.

        ``t`` is the smoothed weighted mean of ``y_true``. From logits this is its logit
        ``log(pos_weight) + logit(t)`` (``+-inf`` when every target is 1 or 0).
        """
        y, w = self._baseline_inputs(y_true, sample_weight)
        _check_unit(y, "y_true", type(self).__name__)
        eps = self.label_smoothing
        t = _weighted_mean(y, w) * (1.0 - eps) + 0.5 * eps
        a, b = self.pos_weight * t, 1.0 - t
        if self.from_logits:
            return _logit(a, b)
        return a / (a + b)


@register
class Focal(_BinaryLoss):
    r"""Binary focal loss (Lin et al., "Focal Loss for Dense Object Detection", 2017).

    With :math:`p` the predicted probability (``sigmoid(z)`` from logits), the target ``y`` in
    [0, 1], :math:`1 - p_t = y (1 - p) + (1 - y) p` and
    :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)` (1 when ``alpha=None``):

    .. math:: l = -\alpha_t (1 - p_t)^\gamma \left(y \log p + (1 - y) \log(1 - p)\right)

    which is :math:`-\alpha_t (1 - p_t)^\gamma \log p_t` for 0/1 labels, and the formula of
    ``torchvision.ops.sigmoid_focal_loss`` from logits. Gradient and hessian are exact (derived
    with :math:`m = 1 - p_t` and the bounded ratio :math:`r = m'/m`, see ``_binary.pyx.tp``); for
    :math:`\gamma > 0` the hessian can be negative, and is returned as it is (a GBDT adapter can
    floor it). ``gamma=0`` is ``alpha_t`` times the binary cross-entropy.

    ``gamma=2`` (the default) has kernels of its own: :math:`m^2` as a product, not
    :math:`\exp(2 \log m)`, so float32 inputs compute in float32 arithmetic
    (``float32_arithmetic``: about 4x faster than at other gammas, within a few float32 ulp);
    other gammas compute float32 inputs in float64.

    Parameters
    ----------
    alpha : float in [0, 1] or None, default 0.25
        Weight of the positive class (``1 - alpha`` for the negative one); ``None``: no weighting.
    gamma : float >= 0, default 2.0
        Focusing exponent.
    from_logits : bool, default False
        ``y_pred`` holds logits instead of probabilities in [0, 1].

    Examples
    --------
    >>> import fastloss, math
    >>> l = float(fastloss.Focal(alpha=None, gamma=2.0).loss([1.0], [0.75]))
    >>> abs(l - 0.25 ** 2 * -math.log(0.75)) < 1e-15
    True
    """

    name = "focal"
    params = (
        OptionalParam("alpha", 0.25, low=0, high=1),
        Param("gamma", 2.0, low=0),
        _FROM_LOGITS,
    )
    y_true_domain = "in [0, 1]"
    _kernels = ("focal_proba", "focal_logits")
    __slots__ = ()

    def __init__(self, alpha: Optional[float] = 0.25, gamma: float = 2.0,
                 from_logits: bool = False) -> None:
        super().__init__(alpha=alpha, gamma=gamma, from_logits=from_logits)

    def _scalar_args(self) -> tuple:
        return (-1.0 if self.alpha is None else self.alpha, self.gamma)

    def _kernel_call_for(self, dtype: np.dtype):
        if self.gamma != 2.0:
            return super()._kernel_call_for(dtype)
        # gamma = 2 has kernels of its own: m^2, not exp(2 log m), and float32 arithmetic
        alpha = -1.0 if self.alpha is None else self.alpha
        if self.from_logits:
            return _binary.focal2_logits, (alpha,)
        return _binary.focal2_proba, (alpha, probability_eps(dtype))

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        """The best constant, found numerically (a logit, or its probability).

        The weighted loss of a constant logit ``c`` is evaluated over the distinct targets on a
        grid of ``c`` in [-700, 700]; the best grid cell is refined by bisection on the
        gradient. ``+-inf`` (or 1, 0) when every target with weight is 1 (or 0).
        """
        y, w = self._baseline_inputs(y_true, sample_weight)
        _check_unit(y, "y_true", type(self).__name__)
        keep = w > 0
        y, w = y[keep], w[keep]
        if np.all(y == 1) or np.all(y == 0):
            c = math.inf if y[0] == 1 else -math.inf
        else:
            u, inv = np.unique(y, return_inverse=True)
            wu = np.bincount(inv.ravel(), weights=w)
            logit_loss = Focal(alpha=self.alpha, gamma=self.gamma, from_logits=True)
            c = _minimise_constant(logit_loss, u, wu)
        if self.from_logits:
            return c
        return _sigmoid(c)


def _minimise_constant(loss: ElementwiseLoss, u: np.ndarray, wu: np.ndarray) -> float:
    """argmin over c of sum_j wu_j l(u_j, c): a grid, then bisection on the summed gradient."""
    grid = np.linspace(-700.0, 700.0, 2801)
    yy = np.tile(u, grid.size)
    cc = np.repeat(grid, u.size)
    ww = np.tile(wu, grid.size)
    f = loss.loss(yy, cc, sample_weight=ww, reduction="none").reshape(grid.size, u.size).sum(1)
    k = int(np.argmin(f))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]

    def slope(c: float) -> float:
        return float(np.sum(loss.gradient(u, np.full(u.size, c), sample_weight=wu,
                                          reduction="sum")))

    if slope(lo) >= 0:      # the minimum is at (or beyond) the lower end of the cell
        return lo
    if slope(hi) <= 0:
        return hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid == lo or mid == hi:
            break
        if slope(mid) > 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


class _HingeBase(_BinaryLoss):
    y_true_domain = "in {-1, 1} or {0, 1}"
    y_pred_domain = "real"  # type: ignore[assignment]
    y_true_values = Domain(value_sets=((-1.0, 1.0), (0.0, 1.0)), nan=False)
    y_pred_values = REAL  # type: ignore[assignment]
    clipped_inputs: Tuple[str, ...] = ()  # type: ignore[assignment]
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()

    def _kernel_call_for(self, dtype: np.dtype):
        return getattr(_binary, self._kernels[1]), ()

    def _raise_domain(self, flags: int) -> None:
        # bits 4 and 8 say a 0 and a -1 label were seen: either convention alone is fine
        if flags & 3:
            super()._raise_domain(flags & 3)
        if flags & 12 == 12:
            raise ValueError(
                f"{type(self).__name__}: y_true must use one label convention, {{-1, 1}} or "
                "{0, 1}; got both -1 and 0"
            )

    def _signed_weights(self, y_true: ArrayLike, sample_weight: ArrayLike):
        y, w = self._baseline_inputs(y_true, sample_weight)
        if not np.all((y == 1) | (y == 0) | (y == -1)):
            raise ValueError(f"{type(self).__name__}: y_true must be {self.y_true_domain}")
        if np.any(y == 0) and np.any(y == -1):
            raise ValueError(f"{type(self).__name__}: y_true must use one label convention")
        pos = float(np.sum(w[y == 1]))
        return pos, float(np.sum(w)) - pos


@register
class Hinge(_HingeBase):
    r"""Hinge loss :math:`l = \max(0, 1 - t z)` of a margin ``z`` and a label :math:`t = \pm 1`.

    ``y_true`` holds labels in {-1, 1} or in {0, 1} (0 is the negative class); ``y_pred`` holds
    real margins (decision values), not probabilities. Gradient :math:`l' = -t` where
    :math:`t z < 1`, else 0 (0 at the kink); hessian 0.

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.Hinge().loss([1, 0], [0.5, 0.5]))   # (0.5 + 1.5) / 2
    1.0
    """

    name = "hinge"
    _kernels = ("", "hinge")
    __slots__ = ()

    @property
    def from_logits(self) -> bool:
        return True

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        """1 if the positive weight is larger, -1 if smaller, 0 on a tie."""
        pos, neg = self._signed_weights(y_true, sample_weight)
        return 1.0 if pos > neg else (-1.0 if pos < neg else 0.0)


@register
class SquaredHinge(_HingeBase):
    r"""Squared hinge loss :math:`l = \max(0, 1 - t z)^2`, labels as for :class:`Hinge`.

    Gradient :math:`l' = -2 t \max(0, 1 - t z)`, hessian 2 where :math:`t z < 1`, else 0.

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.SquaredHinge().loss([1, -1], [0.5, 0.5]))   # (0.25 + 2.25) / 2
    1.25
    """

    name = "squared_hinge"
    y_pred_values = Domain(finite_up_to=1e150)   # (1 - t z)^2 overflows beyond
    _kernels = ("", "squared_hinge")
    __slots__ = ()

    @property
    def from_logits(self) -> bool:
        return True

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        """``(W+ - W-) / (W+ + W-)``, the weighted balance of the labels."""
        pos, neg = self._signed_weights(y_true, sample_weight)
        return (pos - neg) / (pos + neg)


# ---------------------------------------------------------------------------------------------
# Multiclass, row-wise
# ---------------------------------------------------------------------------------------------

def _log_or_prob(q: np.ndarray, log: bool) -> np.ndarray:
    if not log:
        return q
    with np.errstate(divide="ignore"):
        return np.log(q)


@register
class CategoricalCrossEntropy(RowwiseLoss):
    r"""Categorical cross-entropy over rows of K classes, from logits or from probabilities.

    With the target row ``t`` (one-hot of the label, or given probabilities), label smoothing
    :math:`t' = (1 - \epsilon) t + \epsilon / K`, class weights ``c`` (1 by default) and
    :math:`q` the predicted probabilities (``softmax(z)`` from logits):

    .. math:: l = -\sum_k c_k t'_k \log q_k

    From logits the softmax is fused per row (max, exp, sum):
    :math:`l = \sum_k c_k t'_k (\operatorname{lse}(z) - z_k)`, gradient
    :math:`\partial l / \partial z_k = S q_k - c_k t'_k` with :math:`S = \sum_k c_k t'_k`
    (``softmax - onehot`` for the defaults), diagonal hessian :math:`S q_k (1 - q_k)`.
    From probabilities (each clipped to ``[eps, 1 - eps]``, rows used as given, not
    renormalised): :math:`\partial l / \partial q_k = -c_k t'_k / q_k`, hessian
    :math:`c_k t'_k / q_k^2`.

    Weighting is PyTorch's (``torch.nn.functional.cross_entropy``): with integer labels and no
    smoothing, ``class_weight[y_i]`` acts as a per-sample weight, and ``"mean"`` divides by
    :math:`\sum_i w_i c_{y_i}` over the rows not ignored (with smoothing too: the loss keeps
    the class weight inside the sum, the denominator stays this one); with target rows
    ``"mean"`` divides by :math:`\sum_i w_i`. Rows labelled ``ignore_index`` have loss,
    gradient and hessian 0 and count in neither sum (a "mean" over no row is NaN).

    Parameters
    ----------
    from_logits : bool, default False
        ``y_pred`` holds logits instead of probabilities in [0, 1].
    class_weight : sequence of K non-negative floats, or None
    label_smoothing : float in [0, 1], default 0.0
    ignore_index : int or None, default None
        Rows with this integer label are ignored (PyTorch's default is -100; here it is off).

    ``y_true`` is integer labels (n,) in ``[0, K)`` or target probabilities (n, K).

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> z = np.log([[0.2, 0.3, 0.5]])
    >>> ce = fastloss.CategoricalCrossEntropy(from_logits=True)
    >>> bool(np.isclose(ce.loss([2], z), -np.log(0.5)))
    True
    >>> g, h = ce.gradient_hessian([2], z)
    >>> np.round(g, 12).tolist(), np.round(h, 12).tolist()
    ([[0.2, 0.3, -0.5]], [[0.16, 0.21, 0.25]])
    """

    name = "categorical_cross_entropy"
    aliases = ("cross_entropy",)
    params = (
        _FROM_LOGITS,
        VectorParam("class_weight", None, low=0, check=lambda v: any(x > 0 for x in v),
                    rule="not all 0"),
        Param("label_smoothing", 0.0, low=0, high=1),
        IntParam("ignore_index", None, optional=True),
    )
    y_true_domain = "target probabilities in [0, 1]"
    # the shape of vector parameters, in the symbols of input_forms (for the generic tests)
    param_shapes = {"class_weight": ("K",)}
    __slots__ = ()

    def __init__(self, from_logits: bool = False,
                 class_weight: Optional[Sequence[float]] = None,
                 label_smoothing: float = 0.0, ignore_index: Optional[int] = None) -> None:
        super().__init__(from_logits=from_logits, class_weight=class_weight,
                         label_smoothing=label_smoothing, ignore_index=ignore_index)

    @property
    def y_pred_domain(self) -> str:  # type: ignore[override]
        if self.from_logits:
            return "real"
        return "probabilities in [0, 1] (pass from_logits=True for logits)"

    @property
    def y_pred_values(self) -> Domain:  # type: ignore[override]
        return _SCORES if self.from_logits else _UNIT

    @property
    def clipped_inputs(self) -> Tuple[str, ...]:
        """The input arrays clipped to ``[eps, 1 - eps]``, ``eps = probability_eps(dtype)``."""
        return () if self.from_logits else ("y_pred",)

    def _class_weights(self, n_classes: int) -> Optional[np.ndarray]:
        cw = self.class_weight
        if cw is None:
            return None
        if len(cw) != n_classes:
            raise ValueError(
                f"{type(self).__name__}: class_weight has {len(cw)} entries but y_pred has "
                f"{n_classes} columns (classes)"
            )
        return np.asarray(cw, dtype=np.float64)

    def _ignore(self) -> Optional[int]:
        return self.ignore_index

    def _kernel_call(self, target: str, n_classes: int, dtype: np.dtype):
        pred = "logits" if self.from_logits else "proba"
        kernel = getattr(_multiclass, f"ce_{pred}_{'label' if target == 'label' else 'proba'}")
        args: list = [self._label_weights(n_classes), self.label_smoothing]
        if not self.from_logits:
            args.append(probability_eps(dtype))
        if target == "label":
            ign = self.ignore_index
            args += [0 if ign is None else ign, ign is not None]
        return kernel, tuple(args)

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None,
                 n_classes: Optional[int] = None) -> np.ndarray:
        """The best constant row: ``q_k`` proportional to ``c_k sum_i w_i t'_ik``.

        Returned as log-probabilities (log of the weighted, smoothed class frequencies; ``-inf``
        for a class that never occurs) from logits, as probabilities otherwise. With integer
        labels K is ``n_classes``, else ``len(class_weight)``, else the largest label + 1.
        """
        yt = as_array(y_true, "y_true")
        eps = self.label_smoothing
        if yt.ndim == 1:
            y, w, k = self._baseline_labels(yt, sample_weight, n_classes)
            mass = np.bincount(y, weights=w, minlength=k)
        elif yt.ndim == 2:
            t = yt.astype(np.float64)
            k = t.shape[1]
            if np.any((t < 0) | (t > 1)):
                raise ValueError(f"{type(self).__name__}: y_true must be {self.y_true_domain}")
            w = self._baseline_weights(t.shape[0], sample_weight)
            mass = w @ t
        else:
            raise ValueError(f"{type(self).__name__}: y_true must be {self._target_formats()}")
        mass = (1.0 - eps) * mass + eps / k * np.sum(w)
        cw = self._class_weights(k)
        a = mass if cw is None else cw * mass
        return _log_or_prob(a / np.sum(a), self.from_logits)


@register
class KLDivergence(RowwiseLoss):
    r"""Kullback-Leibler divergence :math:`\mathrm{KL}(t \,\|\, q) = \sum_k t_k \log(t_k / q_k)`.

    Per row, ``y_true`` is the target distribution ``t`` (probabilities, or log-probabilities
    with ``log_target=True``) and ``y_pred`` the model's ``q``: probabilities (default, clipped
    to ``[eps, 1 - eps]``), log-probabilities (``log_pred=True``, as PyTorch's ``kl_div``
    input) or logits (``from_logits=True``, ``q = softmax(z)`` fused per row). ``0 log 0 = 0``.

    Derivatives with respect to what ``y_pred`` holds: logits :math:`q_k - t_k` (times
    :math:`\sum_k t_k` when the target row is not normalised), hessian :math:`q_k (1 - q_k)`
    (likewise); log-probabilities :math:`-t_k`, hessian 0; probabilities :math:`-t_k / q_k`,
    hessian :math:`t_k / q_k^2`.

    ``"mean"`` is the weighted mean over rows (PyTorch's ``reduction="batchmean"``; PyTorch's
    ``"mean"`` divides by ``n * K`` instead).

    Parameters
    ----------
    from_logits : bool, default False
    log_pred : bool, default False
        ``y_pred`` holds log-probabilities (exclusive with ``from_logits``).
    log_target : bool, default False
        ``y_true`` holds log-probabilities.

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> t, q = np.array([[0.5, 0.5]]), np.array([[0.25, 0.75]])
    >>> bool(np.isclose(fastloss.KLDivergence().loss(t, q), 0.5 * np.log(4 / 3)))
    True
    """

    name = "kl_divergence"
    params = (
        _FROM_LOGITS,
        Param("log_pred", False, kind="bool"),
        Param("log_target", False, kind="bool"),
    )
    label_targets = False
    __slots__ = ()

    def __init__(self, from_logits: bool = False, log_pred: bool = False,
                 log_target: bool = False) -> None:
        super().__init__(from_logits=from_logits, log_pred=log_pred, log_target=log_target)
        if self.from_logits and self.log_pred:
            raise ValueError(
                "KLDivergence: from_logits and log_pred cannot both be True (y_pred holds "
                "logits, log-probabilities or probabilities)"
            )

    @property
    def y_true_domain(self) -> str:  # type: ignore[override]
        return "log-probabilities <= 0" if self.log_target else "probabilities in [0, 1]"

    @property
    def y_pred_domain(self) -> str:  # type: ignore[override]
        if self.from_logits:
            return "real"
        if self.log_pred:
            return "log-probabilities <= 0"
        return "probabilities in [0, 1] (pass from_logits=True or log_pred=True otherwise)"

    @property
    def y_true_values(self) -> Domain:  # type: ignore[override]
        return _LOG_UNIT if self.log_target else _UNIT

    @property
    def y_pred_values(self) -> Domain:  # type: ignore[override]
        if self.from_logits:
            return _SCORES
        return Domain(high=0, finite_up_to=1e300) if self.log_pred else _UNIT

    @property
    def clipped_inputs(self) -> Tuple[str, ...]:
        """The input arrays clipped to ``[eps, 1 - eps]``, ``eps = probability_eps(dtype)``."""
        return () if (self.from_logits or self.log_pred) else ("y_pred",)

    def _kernel_call(self, target: str, n_classes: int, dtype: np.dtype):
        pred = "logits" if self.from_logits else ("logproba" if self.log_pred else "proba")
        tgt = "logproba" if self.log_target else "proba"
        kernel = getattr(_multiclass, f"kl_{pred}_{tgt}")
        return kernel, ((probability_eps(dtype),) if pred == "proba" else ())

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None,
                 n_classes: Optional[int] = None) -> np.ndarray:
        """The best constant row ``q`` proportional to ``sum_i w_i t_i``.

        As log-probabilities for ``from_logits`` or ``log_pred``, else as probabilities.
        """
        t = as_array(y_true, "y_true").astype(np.float64)
        if t.ndim != 2:
            raise ValueError(f"{type(self).__name__}: y_true must be {self._target_formats()}")
        if self.log_target:
            if np.any(t > 0):
                raise ValueError(f"{type(self).__name__}: y_true must be {self.y_true_domain}")
            t = np.exp(t)
        elif np.any((t < 0) | (t > 1)):
            raise ValueError(f"{type(self).__name__}: y_true must be {self.y_true_domain}")
        w = self._baseline_weights(t.shape[0], sample_weight)
        mass = w @ t
        return _log_or_prob(mass / np.sum(mass), self.from_logits or self.log_pred)


@register
class MulticlassHinge(RowwiseLoss):
    r"""Multiclass hinge loss of a score row ``z`` and an integer label ``y``.

    ``method="crammer_singer"`` (default; Keras' ``categorical_hinge``, scikit-learn's
    multiclass ``hinge_loss``):

    .. math:: l = \max\left(0,\ \Delta + \max_{j \ne y} z_j - z_y\right)

    gradient +1 at the first arg-max ``j`` and -1 at ``y`` where the term is positive.

    ``method="weston_watkins"`` (PyTorch's ``multi_margin_loss`` times K):

    .. math:: l = \sum_{j \ne y} \max(0,\ \Delta + z_j - z_y)

    gradient +1 at each ``j`` with a positive term and minus their count at ``y``. The hessian
    is 0 for both; gradients are 0 at the kinks. ``y_true`` holds integer labels (n,).

    Parameters
    ----------
    margin : float > 0, default 1.0
        :math:`\Delta`.
    method : {"crammer_singer", "weston_watkins"}

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.MulticlassHinge().loss([0], [[1.0, 0.5, 0.8]]))   # 1 + 0.8 - 1
    0.8
    >>> float(fastloss.MulticlassHinge(method="weston_watkins").loss([0], [[1.0, 0.5, 0.8]]))
    1.3
    """

    name = "multiclass_hinge"
    params = (
        Param("margin", 1.0, low=0, low_open=True),
        ChoiceParam("method", "crammer_singer", choices=("crammer_singer", "weston_watkins")),
    )
    row_targets = False
    y_pred_domain = "real"
    y_pred_values = _SCORES
    __slots__ = ()

    def __init__(self, margin: float = 1.0, method: str = "crammer_singer") -> None:
        super().__init__(margin=margin, method=method)

    def _kernel_call(self, target: str, n_classes: int, dtype: np.dtype):
        return getattr(_multiclass, f"hinge_{self.method}"), (self.margin, 0, False)

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None,
                 n_classes: Optional[int] = None) -> np.ndarray:
        """The best constant score row (exact; one of many, since adding a constant is free).

        Crammer-Singer: ``margin`` at the heaviest class if it holds more than half the weight,
        else 0 everywhere. Weston-Watkins: classes sorted by weight get levels ``0, 1, 2...``
        (times ``margin``) grouped to minimise the loss, a 1-D segmentation solved exactly by
        dynamic programming (the problem is a linear program whose vertices are multiples of
        the margin, with levels monotone in the class weight).
        """
        y, w, k = self._baseline_labels(y_true, sample_weight, n_classes)
        mass = np.bincount(y, weights=w, minlength=k)
        if self.method == "crammer_singer":
            c = np.zeros(k)
            a = int(np.argmax(mass))
            if mass[a] > 0.5 * np.sum(mass):
                c[a] = self.margin
            return c
        return self.margin * _weston_watkins_levels(mass)


def _weston_watkins_levels(mass: np.ndarray) -> np.ndarray:
    """Integer levels L minimising sum_{j != k} W_k max(0, 1 + L_j - L_k) over classes.

    With classes sorted by weight (ascending, 1-based, prefix sums C(p) = sum_{j<=p} W_j and
    P(p) = sum_{j<=p} j W_j), the optimal levels are consecutive groups of the sorted classes,
    and the loss is a constant plus C(p)(K - p) for each boundary after position p plus
    sum_{k in [a, b]} W_k (k - a) for each group [a, b]: dynamic programming over the end of the
    last group gives the exact minimum in O(K^2).
    """
    k = mass.size
    order = np.argsort(mass, kind="stable")
    ws = mass[order]
    pos = np.arange(1, k + 1)
    csum = np.concatenate([[0.0], np.cumsum(ws)])
    psum = np.concatenate([[0.0], np.cumsum(ws * pos)])
    boundary = csum[:k] * (k - np.arange(k))       # boundary after position p = 0..K-1
    dp = np.zeros(k + 1)
    start = np.zeros(k + 1, dtype=np.int64)
    for b in range(1, k + 1):
        a = pos[:b]
        cand = dp[a - 1] + boundary[a - 1] - psum[a - 1] + a * csum[a - 1] - a * csum[b]
        j = int(np.argmin(cand))
        dp[b] = psum[b] + cand[j]
        start[b] = a[j]
    groups = []
    b = k
    while b > 0:
        groups.append((int(start[b]), b))
        b = int(start[b]) - 1
    levels = np.empty(k)
    for level, (a, b) in enumerate(reversed(groups)):
        levels[a - 1:b] = level
    out = np.empty(k)
    out[order] = levels
    return out
