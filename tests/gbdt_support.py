"""Shared data and independent NumPy reference losses for the GBDT adapter tests.

The reference losses are written here from their formulas, separately from fastloss's kernels,
with the same duck-typed API (``gradient_hessian``, ``gradient``, ``loss``, ``baseline``) and the
same registry ``name`` so the adapters pick the same policies for them. They test the adapters'
plumbing (layouts, weights, signs, intercepts) on classification whether or not fastloss's own
classification losses are present; where those are, the tests run on both.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastloss

N_THREADS = 1


def make_data(task: str, n: int = 2000, seed: int = 0, n_classes: int = 4):
    """``X (n, 6)``, targets for ``task`` and positive weights, from a fixed seed."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    f = X[:, 0] + 0.5 * X[:, 1] ** 2 - 0.4 * X[:, 2] + 0.3 * X[:, 3] * X[:, 4]
    w = rng.uniform(0.2, 3.0, size=n)
    if task == "regression":
        y = 3.0 + f + rng.normal(size=n)
    elif task == "heavy":
        y = 3.0 + f + rng.standard_t(2, size=n)
    elif task == "poisson":
        y = rng.poisson(np.exp(0.5 * f)).astype(float)
    elif task == "tweedie":
        y = rng.poisson(np.exp(0.4 * f)) * rng.gamma(2.0, 1.0, size=n)
    elif task == "gamma":
        y = rng.gamma(2.0, np.exp(0.4 * f) / 2.0)
    elif task == "binary":
        y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-2.0 * (f - 0.5)))).astype(float)
    elif task == "multiclass":
        edges = np.quantile(f, np.linspace(0, 1, n_classes + 1)[1:-1])
        y = np.digitize(f + 0.7 * rng.normal(size=n), edges).astype(float)
    else:
        raise ValueError(task)
    return X, y, w


def _weighted(l, w, reduction):
    if reduction == "none":
        return l if w is None else l * w
    w = np.ones_like(l) if w is None else np.asarray(w, np.float64)
    s = float(np.sum(w * l))
    return s / float(np.sum(w)) if reduction == "mean" else s


class NumpyBCE:
    """Logistic loss of logits z: ``log(1 + e^z) - y z``; l' = p - y, l'' = p (1 - p)."""

    name = "binary_cross_entropy"
    from_logits = True

    def gradient_hessian(self, y_true, y_pred, *, sample_weight=None, gradient_out=None,
                         hessian_out=None, n_threads=None):
        z = np.asarray(y_pred)
        p = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
        g, h = p - np.asarray(y_true, np.float64), p * (1.0 - p)
        if sample_weight is not None:
            g, h = g * sample_weight, h * sample_weight
        return g.astype(z.dtype), h.astype(z.dtype)

    def gradient(self, y_true, y_pred, *, sample_weight=None, reduction="none", out=None,
                 n_threads=None):
        return self.gradient_hessian(y_true, y_pred, sample_weight=sample_weight)[0]

    def loss(self, y_true, y_pred, *, sample_weight=None, reduction="mean", n_threads=None):
        z = np.asarray(y_pred, np.float64)
        return _weighted(np.logaddexp(0.0, z) - np.asarray(y_true) * z, sample_weight, reduction)

    def baseline(self, y_true, *, sample_weight=None):
        m = np.average(y_true, weights=sample_weight)
        return float(np.log(m / (1.0 - m)))


class NumpySoftmaxCE:
    """Softmax cross-entropy of logits (n, K) with integer labels (n,)."""

    name = "categorical_cross_entropy"
    from_logits = True

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes

    @staticmethod
    def _softmax(z):
        z = np.asarray(z, np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def gradient_hessian(self, y_true, y_pred, *, sample_weight=None, gradient_out=None,
                         hessian_out=None, n_threads=None):
        labels = np.asarray(y_true)
        assert labels.dtype.kind in "iu", "labels reach the loss as integers"
        p = self._softmax(y_pred)
        onehot = np.zeros_like(p)
        onehot[np.arange(p.shape[0]), labels] = 1.0
        g, h = p - onehot, p * (1.0 - p)
        if sample_weight is not None:
            w = np.asarray(sample_weight, np.float64)[:, None]
            g, h = g * w, h * w
        dt = np.asarray(y_pred).dtype
        return g.astype(dt), h.astype(dt)

    def gradient(self, y_true, y_pred, *, sample_weight=None, reduction="none", out=None,
                 n_threads=None):
        return self.gradient_hessian(y_true, y_pred, sample_weight=sample_weight)[0]

    def loss(self, y_true, y_pred, *, sample_weight=None, reduction="mean", n_threads=None):
        p = self._softmax(y_pred)
        labels = np.asarray(y_true).astype(int)
        return _weighted(-np.log(p[np.arange(p.shape[0]), labels]), sample_weight, reduction)

    def baseline(self, y_true, *, sample_weight=None, n_classes=None):
        w = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight)
        k = self.n_classes if n_classes is None else n_classes
        counts = np.bincount(np.asarray(y_true).astype(int), weights=w, minlength=k)
        with np.errstate(divide="ignore"):
            return np.log(counts / counts.sum())


class NumpyFocal:
    """Binary focal loss of logits, ``-alpha_t (1 - p_t)^gamma log p_t``, exact derivatives."""

    name = "focal"
    from_logits = True

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0) -> None:
        self.alpha, self.gamma = alpha, gamma

    def _parts(self, y, z):
        z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
        s = 2.0 * y - 1.0
        log_pt = -np.logaddexp(0.0, -s * z)
        pt = np.exp(log_pt)
        return s, pt, -np.expm1(log_pt), log_pt, np.where(y > 0, self.alpha, 1.0 - self.alpha)

    def gradient_hessian(self, y_true, y_pred, *, sample_weight=None, gradient_out=None,
                         hessian_out=None, n_threads=None):
        gm = self.gamma
        s, p, u, lp, at = self._parts(y_true, y_pred)
        g = s * at * u ** gm * (gm * p * lp - u)
        h = at * p * u * (gm * u ** (gm - 1) * (u - gm * p * lp) + u ** gm * (gm * lp + gm + 1))
        if sample_weight is not None:
            g, h = g * sample_weight, h * sample_weight
        dt = np.asarray(y_pred).dtype
        return g.astype(dt), h.astype(dt)

    def gradient(self, y_true, y_pred, *, sample_weight=None, reduction="none", out=None,
                 n_threads=None):
        return self.gradient_hessian(y_true, y_pred, sample_weight=sample_weight)[0]

    def loss(self, y_true, y_pred, *, sample_weight=None, reduction="mean", n_threads=None):
        _, _, u, lp, at = self._parts(y_true, y_pred)
        return _weighted(-at * u ** self.gamma * lp, sample_weight, reduction)

    def baseline(self, y_true, *, sample_weight=None):
        # 1-D convex-enough search on a fine grid then a few golden-section steps.
        y = np.asarray(y_true, np.float64)
        lo, hi = -10.0, 10.0
        for _ in range(100):
            a, b = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
            la = self.loss(y, np.full(y.shape, a), sample_weight=sample_weight)
            lb = self.loss(y, np.full(y.shape, b), sample_weight=sample_weight)
            lo, hi = (lo, b) if la < lb else (a, hi)
        return 0.5 * (lo + hi)


def _fastloss_or_skip(class_name: str, **params):
    cls = getattr(fastloss, class_name, None)
    if cls is None:
        return pytest.param(None, id=f"fastloss.{class_name}",
                            marks=pytest.mark.skip(reason=f"fastloss.{class_name} not built yet"))
    return pytest.param(cls(**params), id=f"fastloss.{class_name}")


def binary_losses():
    """The logistic loss: NumPy reference, and fastloss's when it exists."""
    return [pytest.param(NumpyBCE(), id="numpy-bce"),
            _fastloss_or_skip("BinaryCrossEntropy", from_logits=True)]


def softmax_losses(n_classes: int = 4):
    """The softmax cross-entropy: NumPy reference, and fastloss's when it exists."""
    return [pytest.param(NumpySoftmaxCE(n_classes), id="numpy-softmax"),
            _fastloss_or_skip("CategoricalCrossEntropy", from_logits=True)]


def focal_losses():
    return [pytest.param(NumpyFocal(), id="numpy-focal"),
            _fastloss_or_skip("Focal", alpha=0.25, gamma=2.0, from_logits=True)]


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
