"""What the gradient-boosting adapters share: derivative policy, layouts, intercept and links.

A gradient-boosting library asks its objective, every round, for the gradient and hessian of the
loss of every sample with respect to the raw score (the *margin*) it currently predicts. The
adapters in ``fastloss.xgboost``, ``fastloss.lightgbm`` and ``fastloss.catboost`` differ only in
how they receive the data (which call form, which array layout, which dtype) and hand the result
back; everything else lives here, once:

* **scale**: fastloss's losses follow their textbook definitions (``MSE`` is ``(y - p)^2``, the
  ``Poisson``/``Gamma``/``Tweedie`` losses are unit *deviances*), while the libraries' built-in
  objectives use half of those (half the squared error, the negative log-likelihood). A Newton
  leaf ``-G / (H + lambda)`` only keeps its meaning for the regularisation parameters
  (``lambda``/``reg_lambda``/``lambda_l2``/``l2_leaf_reg``, ``min_child_weight``/
  ``min_sum_hessian_in_leaf``, ``gamma``/``min_gain_to_split``) when the derivatives are on the
  library's scale, so by default the adapter multiplies them by 0.5 for those four losses
  (``scale="auto"``). The minimiser is the same either way.
* **hessian policy**: losses whose exact hessian is zero (MAE, quantile, hinge), vanishing far
  from the target (Huber, log-cosh, Charbonnier) or negative (focal) make a poor Newton step.
  ``hessian="floor"`` uses ``max(l'', floor)``, ``hessian="constant"`` a constant, and for the
  softmax ``hessian="bound"`` the diagonal bound the library's own multiclass objective uses
  (XGBoost ``2 p (1 - p)``, LightGBM ``K/(K-1) p (1 - p)``). ``"auto"`` picks per loss
  (:data:`AUTO_HESSIAN`). Values are per unit sample weight, on the library's scale.
* **weights** are always applied (``w * l'``, ``w * l''``), whatever the call form.
* **intercept**: ``loss.baseline`` gives the best constant raw score; the adapters turn it into
  ``base_score`` / ``base_margin`` / ``init_score`` / ``baseline``.
* **inverse link**: raw scores back to means and probabilities (identity, ``exp``, sigmoid,
  softmax), by loss (:data:`LINKS`).

No GBDT library is imported by this module, nor by the adapters until they need a version check.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Optional, Tuple, Union

import numpy as np

from ._base import ElementwiseLoss

ArrayLike = Any

#: Factor from the fastloss loss to the library's convention (see the module docstring).
SCALES = {"mse": 0.5, "poisson": 0.5, "gamma": 0.5, "tweedie": 0.5}

#: Inverse link from the raw score to the prediction, by loss name (others: identity).
LINKS = {
    "poisson": "log",
    "gamma": "log",
    "tweedie": "log",
    "binary_cross_entropy": "logit",
    "focal": "logit",
    "categorical_cross_entropy": "softmax",
}

#: The hessian policy ``hessian="auto"`` picks, by loss name: ``(policy, value)``. Losses not
#: listed use their exact hessian.
#:
#: - MAE, quantile, hinge: the exact hessian is 0, so a constant 1 (gradient boosting with unit
#:   Newton denominators, as the libraries' built-in MAE and quantile objectives use before they
#:   re-fit leaves to medians or quantiles, which a custom objective cannot do).
#: - Huber, log-cosh, Charbonnier: the exact hessian vanishes far from the target, where a Newton
#:   step ``g / h`` explodes (for log-cosh it is ``sinh(2e)/2``). A constant 1 is exact near the
#:   target for Huber and log-cosh and bounds their curvature above, so every step descends
#:   (for Huber it is LightGBM's ``huber`` objective).
#: - squared hinge: 2 where the margin is violated, else 0; the constant 2 is its bound.
#: - focal: the exact hessian turns negative for confidently wrong predictions, and Newton steps
#:   on it (or on a small floor) diverge at large learning rates; a constant 0.25, the logistic
#:   hessian at ``p = 1/2``, makes steps of at most ``4 alpha_t`` times the learning rate.
#: - binary cross-entropy: exact, floored at 1e-16 as XGBoost's ``binary:logistic`` does.
#: - categorical cross-entropy: the library's own diagonal bound (``"bound"``).
AUTO_HESSIAN = {
    "mae": ("constant", 1.0),
    "quantile": ("constant", 1.0),
    "hinge": ("constant", 1.0),
    "multiclass_hinge": ("constant", 1.0),
    "huber": ("constant", 1.0),
    "log_cosh": ("constant", 1.0),
    "charbonnier": ("constant", 1.0),
    "squared_hinge": ("constant", 2.0),
    "focal": ("constant", 0.25),
    "binary_cross_entropy": ("floor", 1e-16),
    "categorical_cross_entropy": ("bound", None),
}

HESSIAN_POLICIES = ("auto", "exact", "floor", "constant", "bound")
_DEFAULT_VALUE = {"floor": 1e-6, "constant": 1.0}
_TINY = 1e-16  # the floor XGBoost puts under its logistic and softmax hessians


def loss_name(loss: Any) -> str:
    """The registry name of a fastloss loss, or "" for another object."""
    name = getattr(type(loss), "name", "")
    return name if isinstance(name, str) else ""


class Adapter:
    """Base of every objective adapter: holds the loss and the policies, computes derivatives.

    Parameters
    ----------
    loss : fastloss loss
        Any loss with a per-sample hessian (``gradient_hessian``). Classification losses must be
        built with ``from_logits=True``: the library's raw scores are margins.
    hessian : {"auto", "exact", "floor", "constant", "bound"}, default "auto"
        What to hand the library as the hessian: the loss's exact one, ``max(l'', hessian_value)``,
        the constant ``hessian_value``, or (softmax) the library's diagonal bound. ``"auto"``
        picks per loss: see :data:`AUTO_HESSIAN`.
    hessian_value : float, optional
        The floor (default 1e-6) or the constant (default 1.0), per unit sample weight, on the
        library's scale. Only with ``hessian="floor"`` or ``"constant"``.
    scale : "auto" or float > 0, default "auto"
        Factor applied to gradient and hessian: 0.5 for MSE, Poisson, Gamma and Tweedie (whose
        fastloss definitions are twice the libraries'), 1 otherwise.
    link : {"auto", "identity", "log", "logit", "softmax"}, default "auto"
        Inverse link of :meth:`inverse_link`; "auto" picks it from the loss.
    n_threads : int, optional
        Threads for the fastloss kernels (default :func:`fastloss.get_num_threads`).
    """

    library = ""

    def __init__(self, loss: Any, *, hessian: str = "auto", hessian_value: Optional[float] = None,
                 scale: Union[str, float] = "auto", link: str = "auto",
                 n_threads: Optional[int] = None) -> None:
        cls = type(self).__name__
        if not callable(getattr(loss, "gradient_hessian", None)):
            raise TypeError(
                f"{cls}: loss must be a fastloss loss with gradient_hessian(), got {loss!r}"
            )
        if getattr(loss, "has_hessian", True) is False:
            hint = " (use MSE: it has the same minimiser)" if loss_name(loss) == "rmse" else ""
            raise ValueError(
                f"{cls}: {type(loss).__name__} has no per-sample hessian, so it cannot be a "
                f"boosting objective{hint}"
            )
        if getattr(loss, "from_logits", True) is False:
            raise ValueError(
                f"{cls}: boosting libraries predict raw margins; build the loss with "
                f"from_logits=True, got {loss!r}"
            )
        name = loss_name(loss)
        self._loss = loss
        self._elementwise = isinstance(loss, ElementwiseLoss)

        if hessian not in HESSIAN_POLICIES:
            raise ValueError(
                f"{cls}: hessian must be one of {', '.join(map(repr, HESSIAN_POLICIES))}, "
                f"got {hessian!r}"
            )
        if hessian_value is not None:
            if hessian not in ("floor", "constant"):
                raise ValueError(
                    f"{cls}: hessian_value is only used with hessian='floor' or 'constant', "
                    f"got hessian={hessian!r}"
                )
            v = float(hessian_value)
            if not (math.isfinite(v) and v >= 0) or (hessian == "constant" and v == 0):
                raise ValueError(
                    f"{cls}: hessian_value must be a finite number "
                    f"{'> 0' if hessian == 'constant' else '>= 0'}, got {hessian_value!r}"
                )
        if hessian == "bound" and self._elementwise:
            raise ValueError(
                f"{cls}: hessian='bound' is the softmax's diagonal bound; "
                f"{type(loss).__name__} is element-wise"
            )
        self._hessian = hessian
        self._hessian_value = hessian_value
        if hessian == "auto":
            kind, value = AUTO_HESSIAN.get(name, ("exact", None))
        else:
            kind = hessian
            value = _DEFAULT_VALUE.get(kind) if hessian_value is None else float(hessian_value)
        self._kind, self._value = kind, value

        if isinstance(scale, str):
            if scale != "auto":
                raise ValueError(f"{cls}: scale must be 'auto' or a number > 0, got {scale!r}")
            self._scale_arg: Union[str, float] = "auto"
            self._scale = SCALES.get(name, 1.0)
        else:
            s = float(scale)
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"{cls}: scale must be 'auto' or a number > 0, got {scale!r}")
            self._scale_arg = self._scale = s

        links = ("auto", "identity", "log", "logit", "softmax")
        if link not in links:
            raise ValueError(f"{cls}: link must be one of {', '.join(map(repr, links))}, "
                             f"got {link!r}")
        self._link_arg = link
        self._link = LINKS.get(name, "identity") if link == "auto" else link
        if n_threads is not None and (isinstance(n_threads, bool) or int(n_threads) != n_threads
                                      or n_threads < 1):
            raise ValueError(f"{cls}: n_threads must be a positive integer, got {n_threads!r}")
        self._n_threads = None if n_threads is None else int(n_threads)

    # ------------------------------------------------------------------ description
    @property
    def loss(self) -> Any:
        """The fastloss loss."""
        return self._loss

    @property
    def hessian_policy(self) -> Tuple[str, Optional[float]]:
        """The resolved ``(policy, value)``: what ``hessian="auto"`` chose, or what was given."""
        return self._kind, self._value

    @property
    def scale(self) -> float:
        """The factor applied to gradient and hessian."""
        return self._scale

    @property
    def link(self) -> str:
        """The resolved inverse link: "identity", "log", "logit" or "softmax"."""
        return self._link

    def _options(self) -> dict:
        out = {}
        if self._hessian != "auto":
            out["hessian"] = self._hessian
        if self._hessian_value is not None:
            out["hessian_value"] = self._hessian_value
        if self._scale_arg != "auto":
            out["scale"] = self._scale_arg
        if self._link_arg != "auto":
            out["link"] = self._link_arg
        if self._n_threads is not None:
            out["n_threads"] = self._n_threads
        return out

    def __repr__(self) -> str:
        args = [repr(self._loss)] + [f"{k}={v!r}" for k, v in self._options().items()]
        return f"{type(self).__name__}({', '.join(args)})"

    def __eq__(self, other: object) -> bool:
        return (type(self) is type(other) and self._loss == other._loss  # type: ignore
                and self._options() == other._options())  # type: ignore

    def __hash__(self) -> int:
        return hash((type(self), self._loss, tuple(sorted(self._options().items()))))

    def __reduce__(self):
        return (_rebuild, (type(self), self._loss, self._options()))

    # ------------------------------------------------------------------ derivatives
    def _bound_factor(self, n_classes: int) -> float:
        """The library's diagonal softmax bound relative to ``p (1 - p)``; 1 when it has none."""
        return 1.0

    def derivatives(self, y_true: ArrayLike, raw_score: ArrayLike,
                    sample_weight: ArrayLike = None, *,
                    gradient_out: Optional[np.ndarray] = None,
                    hessian_out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Per-sample gradient and hessian of the loss at ``raw_score``, as the library gets them.

        ``raw_score`` is ``(n,)`` or ``(n, K)`` (one column per class or output); ``y_true`` is
        ``(n,)`` (targets or class indices) or ``(n, K)``; ``sample_weight`` is ``(n,)``. The
        result has the shape and compute dtype of ``raw_score`` (float32 stays float32) and
        includes the weights, the scale and the hessian policy.

        Parameters
        ----------
        y_true, raw_score, sample_weight : array-like
        gradient_out, hessian_out : ndarray, optional
            Arrays to write into (the shape and compute dtype of ``raw_score``, C-contiguous).

        Returns
        -------
        gradient, hessian : ndarray
        """
        raw = np.asarray(raw_score)
        if raw.ndim not in (1, 2):
            raise ValueError(f"raw_score must be 1-D or 2-D, got shape {raw.shape}")
        who = type(self).__name__
        y = shape_targets(np.asarray(y_true), raw, self._elementwise, who)
        w = shape_weights(sample_weight, raw, self._elementwise, who)
        return self._derivatives(y, raw, w, gradient_out, hessian_out)

    def _derivatives(self, y: np.ndarray, raw: np.ndarray, w: Optional[np.ndarray],
                     gradient_out: Optional[np.ndarray] = None,
                     hessian_out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """:meth:`derivatives` on targets and weights already shaped for the loss."""
        loss, nt, kind, value = self._loss, self._n_threads, self._kind, self._value
        gs = self._scale
        hs = gs * (self._bound_factor(raw.shape[1] if raw.ndim == 2 else 2)
                   if kind == "bound" else 1.0)
        kw = w
        if w is not None and gs != 1.0:
            # Fold the scale into the kernel's weights: one pass over the weights instead of one
            # over the gradient and one over the hessian (bitwise the same for a power of 2).
            kw = np.multiply(w, gs)
            hs /= gs
            gs = 1.0
        if kind == "constant":
            g = loss.gradient(y, raw, sample_weight=kw, reduction="none", out=gradient_out,
                              n_threads=nt)
            if gs != 1.0:
                g *= g.dtype.type(gs)
            h = np.empty_like(g) if hessian_out is None else hessian_out
            if h.shape != g.shape or h.dtype != g.dtype:
                raise ValueError(f"hessian_out must have shape {g.shape} and dtype {g.dtype}")
            if w is None:
                h.fill(value)
            else:
                np.multiply(w.reshape(-1, 1) if g.ndim == 2 and w.ndim == 1 else w, value,
                            out=h, casting="unsafe")
            return g, h
        g, h = loss.gradient_hessian(y, raw, sample_weight=kw, gradient_out=gradient_out,
                                     hessian_out=hessian_out, n_threads=nt)
        if gs != 1.0:
            g *= g.dtype.type(gs)
        if hs != 1.0:
            h *= h.dtype.type(hs)
        if kind == "bound":
            value = _TINY if self.library == "xgboost" else None
        if kind in ("floor", "bound") and value is not None:
            if w is None:
                np.maximum(h, value, out=h)
            else:
                ww = w.reshape(-1, 1) if h.ndim == 2 and w.ndim == 1 else w
                np.maximum(h, np.multiply(ww, value, dtype=h.dtype), out=h)
        return g, h

    # ------------------------------------------------------------------ intercept and link
    def intercept(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None,
                  n_classes: Optional[int] = None) -> Union[float, np.ndarray]:
        """The best constant raw score for ``y_true``: ``loss.baseline`` (a float, or one value
        per class for multiclass losses).

        ``n_classes`` is passed to a multiclass loss's baseline (otherwise it counts the largest
        label + 1). Raises ``ValueError`` when the result is not finite (a log-link loss on
        all-zero targets, a class that never occurs, a single class).
        """
        if n_classes is None:
            b = self._loss.baseline(y_true, sample_weight=sample_weight)
        else:
            b = self._loss.baseline(y_true, sample_weight=sample_weight, n_classes=n_classes)
        arr = np.asarray(b, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(
                f"the baseline of {self._loss!r} is not finite ({b!r}); "
                "give the intercept yourself"
            )
        return float(arr) if arr.ndim == 0 else arr

    def init_score(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None,
                   intercept: Union[None, float, np.ndarray] = None,
                   n_classes: Optional[int] = None) -> np.ndarray:
        """The intercept repeated for every row of ``y_true``: ``(n,)``, or ``(n, K)`` for a
        multiclass loss (float64, C order). ``intercept`` reuses a value from :meth:`intercept`
        (for validation or prediction rows, whose own targets must not set it)."""
        if intercept is None:
            intercept = self.intercept(y_true, sample_weight=sample_weight, n_classes=n_classes)
        b = intercept
        n = np.shape(y_true)[0]
        b = np.asarray(b, dtype=np.float64)
        if b.ndim == 0:
            return np.full(n, float(b))
        return np.repeat(b.reshape(1, -1), n, axis=0)

    def inverse_link(self, raw_score: ArrayLike) -> np.ndarray:
        """Raw scores back to predictions: the identity, ``exp`` (log link), the sigmoid
        (binary, logit link) or the row-wise softmax; float64, evaluated without overflow.

        The raw score must include the intercept (XGBoost's ``base_score``/``base_margin`` do;
        LightGBM's and CatBoost's ``init_score``/``baseline`` are not part of their models: add
        the intercept to their raw predictions first).
        """
        return apply_link(self._link, raw_score)


def check_call_form(native: bool, data: Any, who: str, other: str) -> None:
    """A clear error when a native adapter gets the scikit-learn call form or the reverse."""
    has_labels = callable(getattr(data, "get_label", None))
    if native and not has_labels:
        raise TypeError(
            f"{who} takes the native call form (raw scores, the library's dataset), got a "
            f"{type(data).__name__} second; for the scikit-learn API use {other}"
        )
    if not native and has_labels:
        raise TypeError(
            f"{who} takes the scikit-learn call form (y_true, y_pred, weight), got a "
            f"{type(data).__name__}; for the native API use {other}"
        )


def shape_targets(y_true: np.ndarray, raw: np.ndarray, elementwise: bool, who: str
                  ) -> np.ndarray:
    """Labels shaped for the loss: ``(n,)`` for 1-D raw scores; for ``(n, K)`` raw scores either
    ``(n, K)`` targets (element-wise losses, multi-output) or ``(n,)`` integer class indices."""
    if raw.ndim == 1 or y_true.size == raw.size:
        return y_true.reshape(raw.shape)
    if y_true.size != raw.shape[0]:
        raise ValueError(f"{who}: {y_true.size} labels for raw scores of shape {raw.shape}")
    if elementwise:
        raise ValueError(
            f"{who}: an element-wise loss needs one target per raw score, got {y_true.size} "
            f"labels for scores of shape {raw.shape}; for {raw.shape[1]} classes use "
            "CategoricalCrossEntropy(from_logits=True)"
        )
    labels = y_true.reshape(-1)
    if labels.dtype.kind == "f":
        as_int = labels.astype(np.int64)
        if not np.array_equal(as_int, labels):
            raise ValueError(
                f"{who}: multiclass labels must be integers in [0, {raw.shape[1]}), "
                "got non-integral values"
            )
        labels = as_int
    return labels


def shape_weights(weight: ArrayLike, raw: np.ndarray, elementwise: bool, who: str
                  ) -> Optional[np.ndarray]:
    """Sample weights (one per row) shaped for the loss; ``None`` when there are none (the
    libraries give ``None`` or an empty array)."""
    if weight is None:
        return None
    w = np.asarray(weight)
    if w.size == 0:
        return None
    if w.size != raw.shape[0]:
        raise ValueError(f"{who}: {w.size} sample weights for {raw.shape[0]} samples")
    w = w.reshape(-1)
    if raw.ndim == 2 and elementwise:
        w = np.broadcast_to(w[:, None], raw.shape)
    return w


def _rebuild(cls, loss, options):
    return cls(loss, **options)


def apply_link(link: str, raw_score: ArrayLike) -> np.ndarray:
    """Apply an inverse link (see :meth:`Adapter.inverse_link`)."""
    z = np.array(raw_score, dtype=np.float64)
    if link == "identity":
        return z
    if link == "log":
        return np.exp(z, out=z)
    if link == "logit":
        # sigmoid(z) = 1 / (1 + e^-z) for z >= 0, e^z / (1 + e^z) for z < 0: never overflows.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if link == "softmax":
        if z.ndim != 2:
            raise ValueError(f"softmax needs raw scores of shape (n, K), got {z.shape}")
        z -= np.max(z, axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= np.sum(z, axis=1, keepdims=True)
        return z
    raise ValueError(f"unknown link {link!r}")


def library_version(module: str, *, import_it: bool = True) -> Optional[Tuple[int, ...]]:
    """The ``(major, minor)`` version of a GBDT library; ``None`` when it is not imported and
    ``import_it`` is false."""
    mod = sys.modules.get(module)
    if mod is None:
        if not import_it:
            return None
        import importlib

        mod = importlib.import_module(module)
    parts = []
    for piece in str(getattr(mod, "__version__", "0")).split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    while len(parts) < 2:
        parts.append(0)
    return tuple(parts)


class MetricBase:
    """An eval metric: the weighted mean of ``loss`` over raw scores, named after the loss.

    Parameters
    ----------
    loss : fastloss loss
        Classification losses with ``from_logits=True`` (the library passes raw margins to a
        custom metric when the objective is custom).
    name : str, optional
        The name in the evaluation log (default: the loss's registry name).
    n_threads : int, optional
    """

    def __init__(self, loss: Any, *, name: Optional[str] = None,
                 n_threads: Optional[int] = None) -> None:
        if not callable(getattr(loss, "loss", None)):
            raise TypeError(f"{type(self).__name__}: loss must be a fastloss loss, got {loss!r}")
        if getattr(loss, "from_logits", True) is False:
            raise ValueError(
                f"{type(self).__name__}: custom metrics get raw margins; build the loss with "
                f"from_logits=True, got {loss!r}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}")
        self._loss = loss
        self._elementwise = isinstance(loss, ElementwiseLoss)
        self._name = name
        self._n_threads = n_threads
        self.__name__ = name or loss_name(loss) or type(loss).__name__

    @property
    def loss(self) -> Any:
        """The fastloss loss."""
        return self._loss

    def value(self, y_true: ArrayLike, raw_score: ArrayLike, sample_weight: ArrayLike = None
              ) -> float:
        """The weighted mean loss of ``raw_score`` (``(n,)`` or ``(n, K)``) against ``y_true``."""
        raw = np.asarray(raw_score)
        who = type(self).__name__
        y = shape_targets(np.asarray(y_true), raw, self._elementwise, who)
        w = shape_weights(sample_weight, raw, self._elementwise, who)
        return float(self._loss.loss(y, raw, sample_weight=w, reduction="mean",
                                     n_threads=self._n_threads))

    def __repr__(self) -> str:
        extra = f", name={self._name!r}" if self._name else ""
        return f"{type(self).__name__}({self._loss!r}{extra})"

    def __eq__(self, other: object) -> bool:
        return (type(self) is type(other) and self._loss == other._loss  # type: ignore
                and self._name == other._name)  # type: ignore

    def __hash__(self) -> int:
        return hash((type(self), self._loss, self._name))

    def __reduce__(self):
        return (_rebuild_metric, (type(self), self._loss, self._name, self._n_threads))


def _rebuild_metric(cls, loss, name, n_threads):
    return cls(loss, name=name, n_threads=n_threads)
