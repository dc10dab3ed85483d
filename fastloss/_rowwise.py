"""Row-wise losses: a row of ``y_pred`` (n, K) is a sample.

:class:`RowwiseLoss` is the row-wise twin of :class:`fastloss._base.ElementwiseLoss`: the same
public methods and keywords (DESIGN.md section 2), with these shapes:

* ``y_pred``: (n, K), any memory layout (C- or F-ordered or strided arrays of the compute dtype
  are passed to the kernels without a copy);
* ``y_true``: integer class labels (n,) in ``[0, K)``, or target rows (n, K), as the loss allows;
* ``sample_weight``: (n,), one weight per row;
* ``"none"`` gives (n,) losses ``w_i l_i``; gradients and hessians are (n, K) C-contiguous.

A subclass describes itself with ``_kernel_call(target, n_classes, dtype)`` (the compiled kernel
of ``_multiclass`` and its trailing arguments) and, where they apply, ``_class_weights`` and
``_ignore`` (PyTorch's ``weight`` and ``ignore_index``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple

import numpy as np

from . import _core
from ._base import (
    REAL, ArrayLike, ArraySpec, Domain, Loss, computes_float32, mean_weights,
    retry_overflowed_mean, to_dtype,
)
from ._dispatch import kernel_module
from ._threads import resolve_n_threads
from ._validation import (
    EMPTY, as_array, as_compute, check_out, check_reduction, compute_dtype, detach_inputs,
)

_multiclass = kernel_module("_multiclass")
_MAX_CALLS = 64     # kernel calls cached per instance (see RowwiseLoss._kernel_for)
_NO_PARTIALS = np.empty(0, np.float64)
_EMPTY2 = {dt: np.empty((0, 0), dt) for dt in EMPTY}
_LABEL_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def as_rows(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``arr`` in ``dtype`` without a copy when it already is (any layout the kernels can stride).

    A conversion keeps the memory order (``order="K"``), so an F-ordered input stays F-ordered.
    """
    if arr.dtype == dtype and arr.flags.aligned:
        size = dtype.itemsize
        if arr.ndim == 2:      # (the common case, without a generator: a small call's cost)
            s0, s1 = arr.strides
            if not (s0 % size or s1 % size):
                return arr
        elif all(s % size == 0 for s in arr.strides):
            return arr
    return arr.astype(dtype, order="K")


def as_labels(y: np.ndarray) -> np.ndarray:
    """Integer class labels as int32 or int64 (no copy for aligned ones); floats must be
    integral.

    Values too large for int64 are clipped to a value the kernels reject as out of range.
    """
    if y.dtype in _LABEL_DTYPES and y.strides[0] % y.itemsize == 0 and y.flags.aligned:
        return y
    kind = y.dtype.kind
    if kind == "b":
        return y.astype(np.int64)
    if kind in "iu":
        if y.dtype.itemsize >= 8 and kind == "u":
            y = np.minimum(y, np.uint64(2**62))
        return y.astype(np.int64)
    # floats: integral values only
    bad = ~np.isfinite(y) | (y != np.trunc(y))
    if np.any(bad):
        raise ValueError(
            "y_true class labels must be integers, got the non-integral value "
            f"{float(y[bad][0])}"
        )
    return np.clip(y, -(2.0**62), 2.0**62).astype(np.int64)


class RowwiseLoss(Loss):
    """A loss where each row of ``y_pred`` (n, K) is a sample (see the module docstring).

    Subclasses set ``name``, ``params``, which ``y_true`` formats they take (``label_targets``:
    integer labels (n,); ``row_targets``: rows (n, K)), the domains used in error messages, and
    implement ``_kernel_call``.
    """

    label_targets: ClassVar[bool] = True
    row_targets: ClassVar[bool] = True
    y_true_domain: ClassVar[str] = ""        # of a target row (n, K)
    y_pred_domain: ClassVar[str] = ""
    has_hessian: ClassVar[bool] = True
    reductions: ClassVar[Tuple[str, ...]] = ("mean", "sum", "none")
    # The same domains, declaratively (see fastloss._base.Domain); properties where they
    # depend on a parameter.
    y_true_values: ClassVar[Domain] = Domain(low=0, high=1)
    y_pred_values: ClassVar[Domain] = REAL
    # The smallest valid size of each shape symbol of input_forms: a row needs one class at
    # least (K = 0 raises ValueError).
    min_sizes: ClassVar[Dict[str, int]] = {"K": 1}

    __slots__ = ()

    def input_forms(self) -> Tuple[Tuple[ArraySpec, ...], ...]:
        """``(labels (n,), y_pred (n, K))`` and/or ``(rows (n, K), y_pred (n, K))``."""
        pred = ArraySpec("y_pred", ("n", "K"), self.y_pred_values, grad=True)
        forms = []
        if self.label_targets:
            labels = Domain(low=0, high="K", high_open=True, integer=True, nan=False)
            forms.append((ArraySpec("y_true", ("n",), labels, labels=True), pred))
        if self.row_targets:
            forms.append((ArraySpec("y_true", ("n", "K"), self.y_true_values), pred))
        return tuple(forms)

    def mean_sample_weights(self, y_true: ArrayLike, y_pred: ArrayLike, *,
                            sample_weight: ArrayLike = None) -> np.ndarray:
        """Each row's part of the denominator of ``"mean"`` (float64, shape (n,)).

        ``w_i`` (1 without weights) with target rows; with integer labels
        ``w_i class_weight[y_i]``, and 0 for rows labelled ``ignore_index`` (PyTorch's
        convention). ``"mean"`` is ``sum_i w_i l_i`` divided by their sum (NaN when it is 0).
        """
        target, yt, yp, w, _ = self._prepare(y_true, y_pred, sample_weight)
        n, k = yp.shape
        out = np.ones(n) if w is None else w.astype(np.float64)
        if target == "label":
            labels = np.asarray(yt, np.int64)
            ign = self._ignore()
            keep = (labels >= 0) & (labels < k)
            cw = self._label_weights(k)
            out = out * np.where(keep, cw[np.where(keep, labels, 0)], 0.0)
            if ign is not None:
                out = np.where(labels == ign, 0.0, out)
        return out

    @property
    def float32_arithmetic(self) -> bool:
        """Whether float32 inputs compute in float32 arithmetic (True) or in float64 (False).

        True for the softmax losses from logits (categorical cross-entropy and KL divergence,
        every target form): float32 rows of up to 64 classes run their per-element passes
        (maximum, exponentials, gradient, hessian) in float32 arithmetic, twice the SIMD lanes,
        within the contract's float32 accuracy (about 1e-6 relative; a gradient ``S p_k - u_k``
        that cancels, to a few float32 ulp of its terms). Their sums (the row's sum of
        exponentials, the target sums, the loss and every reduction) still accumulate in
        float64. Rows of more than 64 classes compute in float64 even then, so True says that
        float32 results may differ from the float64 results rounded, not that every call does.
        Float64 inputs always compute in float64.
        """
        cw = self.get_params().get("class_weight")
        n_classes = len(cw) if cw is not None else 2
        target = "label" if self.label_targets else "rows"
        kernel = self._kernel_for(target, n_classes, np.dtype(np.float32))[0]
        return computes_float32(kernel)

    # ------------------------------------------------------------------ description hooks
    def _kernel_call(self, target: str, n_classes: int,
                     dtype: np.dtype) -> Tuple[Callable[..., Tuple[float, int]], tuple]:
        """The kernel for ``target`` (``"label"`` or ``"rows"``) and its trailing arguments."""
        raise NotImplementedError

    def _kernel_for(self, target: str, n_classes: int,
                    dtype: np.dtype) -> Tuple[Callable[..., Tuple[float, int]], tuple]:
        """``_kernel_call(target, n_classes, dtype)``, computed once per instance and key.

        Instances are immutable, and the lookup (parameter reads, the class-weight array) cost
        more than a small kernel call. A call that raises (``class_weight`` of the wrong length)
        is not cached, so it raises again. At most ``_MAX_CALLS`` keys are kept per instance
        (one per number of classes seen, in practice).
        """
        key = (target, n_classes, dtype)
        try:                # (the hit first, without building the closure: a small call's cost)
            return self._calls[key]
        except KeyError:
            return self._cached(key, lambda: self._kernel_call(target, n_classes, dtype))

    def _cached(self, key, make: Callable[[], Any]) -> Any:
        """``self._calls[key]``, made by ``make()`` on a miss (nothing is stored if it raises);
        at most ``_MAX_CALLS`` entries per instance (the cache is cleared when full)."""
        try:
            return self._calls[key]
        except KeyError:
            pass
        value = make()
        if len(self._calls) >= _MAX_CALLS:
            self._calls.clear()
        self._calls[key] = value
        return value

    def _class_weights(self, n_classes: int) -> Optional[np.ndarray]:
        """Per-class weights (float64, length K) or ``None``; they weight the "mean" over labels."""
        return None

    def _ignore(self) -> Optional[int]:
        """The label whose rows are ignored, or ``None``."""
        return None

    # ------------------------------------------------------------------ validation
    def _prepare(self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike):
        cls = type(self).__name__
        yp = as_array(y_pred, "y_pred")
        if yp.ndim != 2:
            raise ValueError(
                f"{cls}: y_pred must be 2-D (n_samples, n_classes), got shape {yp.shape}"
            )
        n, k = yp.shape
        if k < 1:
            raise ValueError(f"{cls}: y_pred must have at least one column, got shape {yp.shape}")
        dtype = compute_dtype(yp)
        yp = as_rows(yp, dtype)
        yt = as_array(y_true, "y_true")
        if yt.ndim == 1 and self.label_targets:
            if yt.shape[0] != n:
                raise ValueError(
                    f"{cls}: y_true has {yt.shape[0]} labels but y_pred has {n} rows"
                )
            target, yt = "label", as_labels(yt)
        elif yt.ndim == 2 and self.row_targets:
            if yt.shape != yp.shape:
                raise ValueError(
                    f"{cls}: y_true and y_pred must have the same shape, got y_true "
                    f"{yt.shape} and y_pred {yp.shape}"
                )
            target, yt = "rows", as_rows(yt, dtype)
        else:
            raise ValueError(f"{cls}: y_true must be {self._target_formats()}, got shape "
                             f"{yt.shape} for y_pred of shape {yp.shape}")
        w = None
        if sample_weight is not None:
            w = as_array(sample_weight, "sample_weight")
            if w.shape != (n,):
                raise ValueError(
                    f"sample_weight must have shape ({n},), one weight per row of y_pred, "
                    f"got {w.shape}"
                )
            w = as_compute(w, dtype)
        return target, yt, yp, w, dtype

    def _target_formats(self) -> str:
        forms = []
        if self.label_targets:
            forms.append("integer class labels of shape (n,)")
        if self.row_targets:
            forms.append(f"{self.y_true_domain} of shape (n, K) like y_pred")
        return " or ".join(forms)

    def _label_weights(self, n_classes: int) -> np.ndarray:
        """The class weights, ones without them: read-only, cached per instance and K (a new
        array per call cost a few microseconds of a small call). Raises as ``_class_weights``."""
        def make():
            cw = self._class_weights(n_classes)
            cw = np.ones(n_classes) if cw is None else np.array(cw, dtype=np.float64)
            cw.flags.writeable = False
            return cw
        return self._cached(("label_weights", n_classes), make)

    def _label_error(self, labels: np.ndarray, n_classes: int) -> str:
        ign = self._ignore()
        bad = (labels < 0) | (labels >= n_classes)
        if ign is not None:
            bad &= labels != ign
        example = labels[bad][0] if np.any(bad) else "?"
        extra = f" (or ignore_index={ign})" if ign is not None else ""
        return (f"y_true class labels must be in [0, {n_classes}) for y_pred with {n_classes} "
                f"columns{extra}, got {example}")

    def _raise_domain(self, flags: int, target: str, y_true: np.ndarray, n_classes: int) -> None:
        parts = []
        if flags & 1:
            if target == "label":
                parts.append(self._label_error(y_true, n_classes))
            else:
                parts.append(f"y_true must be {self.y_true_domain}")
        if flags & 2:
            parts.append(f"y_pred must be {self.y_pred_domain}")
        raise ValueError(f"{type(self).__name__}: {'; '.join(parts)}; got values outside")

    # ------------------------------------------------------------------ one fused pass
    def _run(self, y_true, y_pred, sample_weight, reduction, n_threads, *, loss, grad, hess,
             loss_out=None, gradient_out=None, hessian_out=None, partials=None):
        """One fused pass. Returns (loss or None, gradient or None, hessian or None).

        The "mean" divides by ``sum_i w_i class_weight[y_i]`` over the rows not ignored with
        integer labels (PyTorch's convention), by ``sum_i w_i`` with target rows.
        """
        reduction = check_reduction(reduction, self.reductions)
        target, yt, yp, w, dtype = self._prepare(y_true, y_pred, sample_weight)
        nt = resolve_n_threads(n_threads)
        n, k = yp.shape
        empty = EMPTY[dtype]
        if w is not None:
            wsum, negative = _core.weight_sum(w, nt)
            if negative:
                raise ValueError("sample_weight must be non-negative, got a negative weight")
            if reduction == "mean" and wsum == 0 and n > 0:
                raise ValueError("sample_weight must not sum to 0 with reduction='mean'")
            if reduction == "mean":
                # a sum of weights that is subnormal or overflows: a power-of-two rescale
                w, wsum = mean_weights(w, wsum, nt)
        else:
            wsum = float(n)
        kernel, args = self._kernel_for(target, k, dtype)
        denom = wsum
        if target == "label" and reduction == "mean":
            ign = self._ignore()
            no_cw = self._calls.get(("no_class_weight", k))
            if no_cw is None:
                no_cw = self._cached(("no_class_weight", k),
                                     lambda: self._class_weights(k) is None)
            if w is None and ign is None and no_cw:
                # every row counts once; the kernel flags labels outside [0, K) itself
                # (a separate label pass cost about 3 us of a small call)
                denom = float(n)
            else:
                denom, flags = _multiclass.label_weight_sum(
                    yt, self._label_weights(k), empty if w is None else w,
                    0 if ign is None else ign, ign is not None, nt)
                if flags:
                    self._raise_domain(flags, target, yt, k)
        scale = 1.0 / denom if (reduction == "mean" and denom > 0) else 1.0
        store = loss and reduction == "none"
        if loss_out is not None and not store:
            raise ValueError("loss_out is only used with reduction='none'")
        lo = check_out(loss_out, (n,), dtype, "loss_out") if store else None
        go = check_out(gradient_out, (n, k), dtype, "gradient_out") if grad else None
        ho = check_out(hessian_out, (n, k), dtype, "hessian_out") if hess else None
        if loss_out is not None or gradient_out is not None or hessian_out is not None:
            # (a row's inputs are read again after its outputs are written: copy on any overlap)
            yt, yp, w = detach_inputs((yt, yp, w), (lo, go, ho), in_place_ok=False)
        e2 = _EMPTY2[dtype]
        total, flags = kernel(
            yp, yt, empty if w is None else w, empty if lo is None else lo,
            e2 if go is None else go, e2 if ho is None else ho, loss and not store, scale, nt,
            _NO_PARTIALS if partials is None else partials, *args,
        )
        if flags:
            self._raise_domain(flags, target, yt, k)
        if (loss and reduction == "mean" and dtype == np.float64 and partials is None
                and math.isinf(total)):
            # (the closures only where the float64 sum overflowed: a small call's cost)
            ign = self._ignore()

            def denominator(w2):
                if target == "label":
                    return _multiclass.label_weight_sum(
                        yt, self._label_weights(k), w2, 0 if ign is None else ign,
                        ign is not None, nt)[0]
                return _core.weight_sum(w2, nt)[0]

            total, denom = retry_overflowed_mean(
                total, denom, w, n, dtype,
                lambda w2: kernel(yp, yt, w2, empty, e2, e2, True, 1.0, nt, _NO_PARTIALS,
                                  *args)[0],
                denominator)
        value = None
        if store:
            value = lo
        elif loss:
            if reduction == "mean":
                total = total / denom if denom > 0 else math.nan
            value = to_dtype(total, dtype)
        return value, go, ho

    # ------------------------------------------------------------------ public API
    def loss(self, y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike = None,
             reduction: str = "mean", loss_out: Optional[np.ndarray] = None,
             n_threads: Optional[int] = None):
        """The loss, reduced over rows (``"mean"``, ``"sum"``) or per row (``"none"``).

        Parameters
        ----------
        y_true : array-like, (n,) integer labels or (n, K) target rows
            As the loss allows (see the class docstring).
        y_pred : array-like of shape (n, K)
            Predictions, one row per sample; sets the compute dtype. Any memory layout.
        sample_weight : array-like of shape (n,), optional
            Non-negative row weights ``w``.
        reduction : {"mean", "sum", "none"}
        loss_out : ndarray of shape (n,), optional
            With ``reduction="none"``: the array to write ``w*l`` into (exact shape and dtype).
        n_threads : int, optional
            Threads for the kernel (default :func:`fastloss.get_num_threads`).

        Returns
        -------
        scalar of the compute dtype, or ndarray of shape (n,)
        """
        return self._run(y_true, y_pred, sample_weight, reduction, n_threads,
                         loss=True, grad=False, hess=False, loss_out=loss_out)[0]

    def gradient(self, y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike = None,
                 reduction: str = "mean", out: Optional[np.ndarray] = None,
                 n_threads: Optional[int] = None) -> np.ndarray:
        """Gradient (n, K) of the reduced loss with respect to ``y_pred``.

        ``"mean"`` includes the division by the mean's denominator; ``"sum"`` and ``"none"``
        give ``w_i dl_i/dy_pred_i``. ``out`` receives it when given (C-contiguous (n, K)).
        """
        return self._run(y_true, y_pred, sample_weight, reduction, n_threads,
                         loss=False, grad=True, hess=False, gradient_out=out)[1]

    def loss_gradient(self, y_true: ArrayLike, y_pred: ArrayLike, *,
                      sample_weight: ArrayLike = None, reduction: str = "mean",
                      loss_out: Optional[np.ndarray] = None,
                      gradient_out: Optional[np.ndarray] = None,
                      n_threads: Optional[int] = None):
        """``(loss, gradient)`` in one pass; the gradient is that of the returned loss."""
        value, g, _ = self._run(y_true, y_pred, sample_weight, reduction, n_threads,
                                loss=True, grad=True, hess=False, loss_out=loss_out,
                                gradient_out=gradient_out)
        return value, g

    def loss_gradient_hessian(self, y_true: ArrayLike, y_pred: ArrayLike, *,
                              sample_weight: ArrayLike = None, reduction: str = "mean",
                              loss_out: Optional[np.ndarray] = None,
                              gradient_out: Optional[np.ndarray] = None,
                              hessian_out: Optional[np.ndarray] = None,
                              n_threads: Optional[int] = None):
        """``(loss, gradient, diagonal hessian)`` in one pass, all for the given reduction."""
        return self._run(y_true, y_pred, sample_weight, reduction, n_threads,
                         loss=True, grad=True, hess=True, loss_out=loss_out,
                         gradient_out=gradient_out, hessian_out=hessian_out)

    def gradient_hessian(self, y_true: ArrayLike, y_pred: ArrayLike, *,
                         sample_weight: ArrayLike = None,
                         gradient_out: Optional[np.ndarray] = None,
                         hessian_out: Optional[np.ndarray] = None,
                         n_threads: Optional[int] = None):
        """Per-sample ``(w_i dl_i/dy_pred_i, w_i diag d2l_i/dy_pred_i^2)``, both (n, K)."""
        _, g, h = self._run(y_true, y_pred, sample_weight, "none", n_threads,
                            loss=False, grad=True, hess=True, gradient_out=gradient_out,
                            hessian_out=hessian_out)
        return g, h

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None,
                 n_classes: Optional[int] = None) -> np.ndarray:
        """The constant row ``y_pred`` (K,) that minimises the (weighted) loss over ``y_true``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers for baselines
    def _baseline_weights(self, n: int, sample_weight: ArrayLike) -> np.ndarray:
        if sample_weight is None:
            return np.ones(n)
        w = np.ravel(as_array(sample_weight, "sample_weight")).astype(np.float64)
        if w.shape != (n,):
            raise ValueError(f"sample_weight must have {n} elements like y_true, got {w.size}")
        if np.any(w < 0):
            raise ValueError("sample_weight must be non-negative, got a negative weight")
        if not np.sum(w) > 0:
            raise ValueError("sample_weight must not sum to 0")
        return w

    def _baseline_labels(self, y_true: ArrayLike, sample_weight: ArrayLike,
                         n_classes: Optional[int]):
        """Labels (int64, ignored rows dropped), their weights, and K.

        K is ``n_classes``, else the length of the class weights, else the largest label + 1.
        """
        cls = type(self).__name__
        y = as_labels(np.ravel(as_array(y_true, "y_true")))
        w = self._baseline_weights(y.size, sample_weight)
        ign = self._ignore()
        if ign is not None:
            keep = y != ign
            y, w = y[keep], w[keep]
        if y.size == 0:
            raise ValueError(f"{cls}: baseline needs at least one labelled row")
        if n_classes is None:
            cw = self.get_params().get("class_weight")
            n_classes = len(cw) if cw is not None else int(np.max(y)) + 1
        n_classes = int(n_classes)
        if n_classes < 1:
            raise ValueError(f"n_classes must be a positive integer, got {n_classes}")
        if np.any((y < 0) | (y >= n_classes)):
            raise ValueError(f"{cls}: {self._label_error(y, n_classes)}")
        return y, w, n_classes
