"""Loss objects: parameters, validation, dispatch to the compiled kernels, reductions.

A loss class is a *description*: its registry name, its parameters with their domains, the kernel
that computes it, the domain of ``y_true``, and its optimal constant (``baseline``). The
machinery here turns that description into the public API of DESIGN.md section 2, so a loss adds
no code of its own beyond its math and its docstring.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional, Tuple, Union

import numpy as np

from . import _core, _threads
from ._threads import get_num_threads, resolve_n_threads
from ._validation import (
    EMPTY,
    as_array,
    as_compute,
    check_out,
    check_reduction,
    check_same_shape,
    detach_inputs,
    compute_dtype,
    flat,
)

ArrayLike = Any
_NO_PARTIALS = np.empty(0, np.float64)
# The public methods of ElementwiseLoss: a compiled fast path for the common call that hands
# every other call to ElementwiseLoss._run (see "the fast call path" in _core.pyx).
_call = _core.elementwise_call
_F64 = np.dtype(np.float64)
_F32 = np.dtype(np.float32)


@dataclass(frozen=True)
class Param:
    """A scalar hyper-parameter and its domain.

    ``low``/``high`` bound the value (``None``: unbounded); ``low_open``/``high_open`` exclude the
    bound itself; ``check`` is an extra predicate, described by ``rule`` in the error message.
    ``kind="bool"`` makes a flag (``True``/``False``) instead of a number.
    """

    name: str
    default: Any = None
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    check: Optional[Callable[[float], bool]] = None
    rule: str = ""
    kind: str = "float"

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        if self.rule:
            parts.append(self.rule)
        return "a finite number" + (" " + " and ".join(parts) if parts else "")

    def validate(self, owner: str, value: Any) -> Any:
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{owner}: {self.name} must be True or False, got {value!r}")
            return bool(value)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{owner}: {self.name} must be a real number, got {value!r}")
        v = float(value)
        ok = math.isfinite(v)
        if ok and self.low is not None:
            ok = v > self.low if self.low_open else v >= self.low
        if ok and self.high is not None:
            ok = v < self.high if self.high_open else v <= self.high
        if ok and self.check is not None:
            ok = bool(self.check(v))
        if not ok:
            raise ValueError(f"{owner}: {self.name} must be {self.describe()}, got {value!r}")
        return v


@dataclass(frozen=True)
class Domain:
    """The values one input array of a loss may hold: a real interval or finite sets of values.

    A declarative description, used by the generic property tests (``tests/test_properties.py``)
    to draw valid inputs for every registered loss and to check that values outside the domain
    raise ``ValueError``; the error messages themselves come from the loss (``y_true_domain``).

    ``low``/``high`` bound the values (closed unless ``*_open``; infinities are in the closed
    interval ``[-inf, inf]``). ``high`` may be a shape symbol such as ``"K"``: labels below the
    number of classes. ``value_sets``, when not empty, lists alternative sets: an array is valid
    when all its values lie in one of them (hinge labels: ``{-1, 1}`` or ``{0, 1}``).
    ``integer``: integral values only (class labels). ``nan``: whether NaN is accepted (it then
    propagates to the results, DESIGN.md section 3) rather than rejected. ``finite_up_to``: finite
    values of magnitude up to this give finite results (for parameters of moderate size), e.g.
    the log of a mean, whose ``exp`` overflows beyond about 700.
    """

    low: float = -math.inf
    high: Union[float, str] = math.inf
    low_open: bool = False
    high_open: bool = False
    value_sets: Tuple[Tuple[float, ...], ...] = ()
    integer: bool = False
    nan: bool = True
    finite_up_to: float = 1e100

    def contains(self, values: np.ndarray, sizes: Optional[dict] = None) -> bool:
        """Whether every value of ``values`` lies in the domain (``sizes`` gives shape symbols)."""
        v = np.asarray(values, dtype=np.float64)
        nan = np.isnan(v)
        if nan.any() and not self.nan:
            return False
        v = v[~nan]
        if self.value_sets:
            return any(bool(np.isin(v, s).all()) for s in self.value_sets)
        if self.integer and not bool(np.all(np.isfinite(v) & (v == np.round(v)))):
            return False
        high = float((sizes or {})[self.high]) if isinstance(self.high, str) else self.high
        ok = (v > self.low) if self.low_open else (v >= self.low)
        ok &= (v < high) if self.high_open else (v <= high)
        return bool(ok.all())


REAL = Domain()


@dataclass(frozen=True)
class ArraySpec:
    """One positional input array of a loss: its name, shape, domain and whether it gets a gradient.

    ``shape`` is a tuple of symbols: ``("*",)`` is any shape, shared by every ``"*"`` array of the
    call (element-wise losses); otherwise named sizes such as ``("n", "d")`` (rows, columns),
    equal wherever the same symbol appears. ``grad``: the loss returns a gradient for it.
    ``labels``: integer class labels (drawn as integers by the tests, never differentiated).
    """

    name: str
    shape: Tuple[str, ...]
    domain: Domain = REAL
    grad: bool = False
    labels: bool = False


class Loss:
    """Base of every loss: immutable, picklable, comparable, with a readable ``repr``."""

    name: ClassVar[str] = ""
    aliases: ClassVar[Tuple[str, ...]] = ()
    params: ClassVar[Tuple[Param, ...]] = ()
    # Whether sample i's loss and gradient depend on sample i's inputs only (False for losses
    # that mine a batch); the generic tests attribute NaN and weights per sample when True.
    independent_samples: ClassVar[bool] = True

    __slots__ = ("_values", "_calls")

    def input_forms(self) -> Tuple[Tuple[ArraySpec, ...], ...]:
        """The positional arrays the methods take, one tuple of :class:`ArraySpec` per form.

        A declarative description of the inputs (shapes, domains, which get a gradient), used
        by the generic property tests so that every registered loss is covered by construction.
        ``sample_weight`` has the shape of the ``"*"`` arrays, or ``("n",)`` for row-wise forms.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not describe its inputs (input_forms)"
        )

    def __init__(self, **kwargs: Any) -> None:
        values = []
        cls = type(self).__name__
        unknown = set(kwargs) - {p.name for p in self.params}
        if unknown:
            raise TypeError(f"{cls}: unknown parameter(s) {sorted(unknown)}")
        for p in self.params:
            values.append(p.validate(cls, kwargs.get(p.name, p.default)))
        object.__setattr__(self, "_values", tuple(values))
        object.__setattr__(self, "_calls", {})     # kernel and scalar arguments per dtype

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Each hyper-parameter reads as an attribute (``Huber(delta=2).delta``) through a
        # read-only property per class: about 50 ns, where a ``__getattr__`` fallback cost
        # 2-3 us per read (the failed normal lookup raises first), a large part of a small
        # row-wise call, which reads parameters several times.
        super().__init_subclass__(**kwargs)
        for i, p in enumerate(cls.params):
            if p.name not in cls.__dict__:
                setattr(cls, p.name, property(lambda self, i=i: self._values[i],
                                              doc=f"The ``{p.name}`` hyper-parameter."))

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: build a new one to change {attr}")

    def get_params(self) -> dict:
        """The hyper-parameters as a ``{name: value}`` dict."""
        return {p.name: v for p, v in zip(self.params, self._values)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._values == other._values  # type: ignore

    def __hash__(self) -> int:
        return hash((type(self), self._values))

    def __reduce__(self):
        return (_rebuild, (type(self), self.get_params()))


def _rebuild(cls, params):
    return cls(**params)


_WSUM_LOW, _WSUM_HIGH = 2.0**-600, 2.0**600
_F32_ROUNDS_TO_INF = 3.4028235677973366e38     # float32 max + half an ulp: rounds to inf


def mean_weights(w: Optional[np.ndarray], wsum: float, n_threads: int):
    """Weights for a ``"mean"``, rescaled by a power of two when their sum is out of range.

    A mean is ``sum(w*l) / sum(w)`` and its derivatives carry ``w / sum(w)``: scaling every
    weight by the same power of two changes neither, and is exact. It is needed when the sum is
    tiny (subnormal weights: ``1 / sum(w)`` overflows to inf, and ``w*l`` loses its digits) or
    overflows (``sum(w) = inf`` makes every derivative 0 and the mean NaN). Returns
    ``(w, sum(w))``, the input arrays untouched (a scaled copy is made).
    """
    if w is None or wsum == 0 or _WSUM_LOW <= wsum <= _WSUM_HIGH:
        return w, wsum
    top = float(np.max(w))
    if not (0.0 < top < math.inf):
        return w, wsum              # NaN or infinite weights: the result is NaN anyway
    # (np.asarray: a ufunc returns a scalar, not an array, for 0-d input)
    w = np.asarray(np.ldexp(w, -math.frexp(top)[1]), dtype=w.dtype)
    wsum, _ = _core.weight_sum(w.reshape(-1), n_threads)
    return w, wsum


def to_dtype(x: float, dtype: np.dtype):
    """A float64 result as a scalar of ``dtype``: overflow to +-inf is the correctly rounded
    value, without NumPy's "overflow encountered in cast" warning."""
    if dtype == np.float32 and not abs(x) < _F32_ROUNDS_TO_INF and not math.isnan(x):
        with np.errstate(over="ignore"):
            return dtype.type(x)
    return dtype.type(x)


def unit_sum_weights(w: Optional[np.ndarray], n: int, denom: float,
                     dtype: np.dtype) -> np.ndarray:
    """The weights (ones when ``w`` is None) times ``2**-k``, so the mean's ``denom`` is < 1.

    For a ``"mean"`` whose float64 sum of ``w*l`` overflowed although the mean may not have
    (n losses near the float64 maximum): with weights summing to less than 1, ``sum(w*l)`` is
    at most ``max(l)``. A power of two scales the numerator and the denominator of the mean
    exactly, so the mean is unchanged (to the rounding of a sum); weights that underflow carry
    a negligible part of such a mean. ``denom`` must be homogeneous of degree 1 in the weights.
    """
    k = math.frexp(denom)[1]
    base = np.ones(n, dtype) if w is None else w
    # (np.asarray: a ufunc returns a scalar, not an array, for 0-d input)
    return np.asarray(np.ldexp(base, -k), dtype=dtype)


def retry_overflowed_mean(total: float, denom: float, w: Optional[np.ndarray], n: int,
                          dtype: np.dtype, rerun: Callable[[np.ndarray], float],
                          denominator: Callable[[np.ndarray], float]) -> Tuple[float, float]:
    """``(sum(w*l), denom)`` of a "mean", redone when the float64 sum overflowed.

    ``sum(w*l)`` can overflow although the mean does not (n losses near the float64 maximum).
    Then ``rerun(w2)`` recomputes the sum with the weights of :func:`unit_sum_weights` (which
    sum below 1) and ``denominator(w2)`` gives the mean's denominator for them. The new pair is
    kept only if finite: an infinite loss times a weight that underflowed to 0 is NaN, where the
    first sum's inf was right. Derivatives need no retry: they carry ``w / denom``. Shared by
    every family (element-wise, row-wise, embeddings).
    """
    if not (math.isinf(total) and 0 < denom < math.inf):
        return total, denom
    w2 = unit_sum_weights(w, n, denom, dtype)
    total2 = rerun(w2)
    if math.isfinite(total2):
        return total2, denominator(w2)
    return total, denom


def computes_float32(kernel: Callable[..., Any]) -> bool:
    """Whether a compiled kernel computes float32 data in float32 arithmetic: it is listed in
    its module's ``NATIVE32`` (the ``float32_arithmetic`` of element-wise and row-wise losses)."""
    module = sys.modules.get(getattr(kernel, "__module__", ""), None)
    return getattr(kernel, "__name__", "") in getattr(module, "NATIVE32", ())


class ElementwiseLoss(Loss):
    """A loss where every element of ``y_pred`` is a sample (any shape).

    Subclasses set ``name``, ``params``, ``_kernel`` (a function of the compiled family module)
    and, where ``y_true`` has a domain, ``y_true_domain`` (used in the error message when the
    kernel flags a value outside it).
    """

    _kernel: ClassVar[Callable[..., Tuple[float, int]]]
    y_true_domain: ClassVar[str] = ""
    y_pred_domain: ClassVar[str] = ""
    # The same domains, declaratively (see Domain); override with a property where they
    # depend on a parameter.
    y_true_values: ClassVar[Domain] = REAL
    y_pred_values: ClassVar[Domain] = REAL
    has_hessian: ClassVar[bool] = True
    reductions: ClassVar[Tuple[str, ...]] = ("mean", "sum", "none")

    __slots__ = ()

    def input_forms(self) -> Tuple[Tuple[ArraySpec, ...], ...]:
        """``(y_true, y_pred)`` of any shape, with the loss's domains (see :class:`Domain`)."""
        return ((ArraySpec("y_true", ("*",), self.y_true_values),
                 ArraySpec("y_pred", ("*",), self.y_pred_values, grad=True)),)

    # ------------------------------------------------------------------ dispatch
    def _kernel_call(self) -> Tuple[Callable[..., Tuple[float, int]], tuple]:
        """The compiled kernel and its trailing scalar arguments for this instance.

        The default passes every parameter value in declaration order; a loss whose kernel
        depends on a parameter (``from_logits``) overrides this.
        """
        return type(self)._kernel, self._values

    @property
    def float32_arithmetic(self) -> bool:
        """Whether float32 inputs compute in float32 arithmetic (True) or in float64 (False).

        Float32 arithmetic runs twice the SIMD lanes with shorter polynomials, for the losses
        where it keeps the contract's float32 accuracy: a few float32 ulp, and a difference
        that cancels (a gradient near its zero, for soft labels) to a few ulp of its terms.
        As in any float32 computation, values below the normal range (1.2e-38) before
        weighting keep only float32's subnormal steps, which weights above 1 magnify.
        Float64 arithmetic is used instead for calls whose scale (``1 / sum(w)``) or
        parameters lie outside [2**-60, 2**60], for in-place calls, and to redo a call where an
        output overflowed float32 from finite inputs. Float64 inputs always compute in float64.
        """
        return computes_float32(self._kernel_call()[0])

    def _kernel_for(self, dtype: np.dtype) -> Tuple[Callable[..., Tuple[float, int]], tuple]:
        """``_kernel_call_for(dtype)``, computed once per instance and dtype (instances are
        immutable, and the lookup, e.g. ``finfo(dtype).eps``, costs a good part of a small call)."""
        try:
            return self._calls[dtype]
        except KeyError:
            call = self._calls[dtype] = self._kernel_call_for(dtype)
            return call

    def _kernel_call_for(self, dtype: np.dtype) -> Tuple[Callable[..., Tuple[float, int]], tuple]:
        """``_kernel_call()`` for a compute dtype; what ``_run`` calls.

        The default ignores ``dtype``. A loss whose scalar arguments depend on it (the
        probability clip ``eps`` of the classification losses) overrides this instead.
        """
        return self._kernel_call()

    def _prepare(self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike):
        # Fast path (a few hundred ns): unweighted C-contiguous float arrays of one dtype.
        if type(y_pred) is np.ndarray and type(y_true) is np.ndarray and sample_weight is None:
            dt = y_pred.dtype
            if ((dt is _F64 or dt is _F32) and y_true.dtype is dt
                    and y_true.shape == y_pred.shape and y_pred.flags.c_contiguous
                    and y_true.flags.c_contiguous):
                return y_true, y_pred, None, dt
        yp = as_array(y_pred, "y_pred")
        yt = as_array(y_true, "y_true")
        check_same_shape(yt, yp)
        dtype = compute_dtype(yp)
        yp = as_compute(yp, dtype)
        yt = as_compute(yt, dtype)
        w = None
        if sample_weight is not None:
            w = as_array(sample_weight, "sample_weight")
            if w.shape != yp.shape:
                raise ValueError(
                    f"sample_weight must have the shape of y_pred {yp.shape}, got {w.shape}"
                )
            w = as_compute(w, dtype)
        return yt, yp, w, dtype

    def _run(self, y_true, y_pred, sample_weight, reduction, n_threads, *, loss, grad, hess,
             loss_out=None, gradient_out=None, hessian_out=None, partials=None,
             weight_total=None, weight_partials=None):
        """One fused pass. Returns (loss or None, gradient or None, hessian or None).

        ``partials`` (float64, one slot per kernel block) receives the block sums of ``w*l``.
        ``weight_partials`` receives the block sums of ``w`` (when weights are given).
        ``weight_total``, when given, replaces this call's own ``sum(w)`` (or ``n``) in the
        ``"mean"`` scaling: the call is then one chunk of a larger array whose total weight it is
        (blockwise derivatives of a mean, as in :mod:`fastloss.dask`).
        """
        # The common call (about 1.5 us of Python for 1,000 elements) avoids helper calls where
        # an inline test does: check_reduction and resolve_n_threads only on the unusual paths.
        if type(reduction) is not str or reduction not in self.reductions:
            check_reduction(reduction, self.reductions)
        yt, yp, w, dtype = self._prepare(y_true, y_pred, sample_weight)
        nt = get_num_threads() if n_threads is None else resolve_n_threads(n_threads)
        shape = yp.shape
        n = yp.size
        empty = EMPTY[dtype]
        if w is not None:
            wsum, negative = _core.weight_sum(flat(w), nt, weight_partials)
            if negative:
                raise ValueError("sample_weight must be non-negative, got a negative weight")
            if weight_total is not None:
                wsum = float(weight_total)
            if reduction == "mean" and wsum == 0 and n > 0:
                raise ValueError("sample_weight must not sum to 0 with reduction='mean'")
            if reduction == "mean":
                w, wsum = mean_weights(w, wsum, nt)
        else:
            wsum = float(n) if weight_total is None else float(weight_total)
        scale = 1.0 / wsum if (reduction == "mean" and wsum > 0) else 1.0
        store = loss and reduction == "none"
        if loss_out is not None and not store:
            raise ValueError("loss_out is only used with reduction='none'")
        # outputs: the user's (checked) or new; `empty` tells the kernel "not wanted"
        lo = go = ho = empty
        if store:
            lo = (np.empty(shape, dtype) if loss_out is None
                  else check_out(loss_out, shape, dtype, "loss_out"))
        if grad:
            go = (np.empty(shape, dtype) if gradient_out is None
                  else check_out(gradient_out, shape, dtype, "gradient_out"))
        if hess:
            ho = (np.empty(shape, dtype) if hessian_out is None
                  else check_out(hessian_out, shape, dtype, "hessian_out"))
        if loss_out is not None or gradient_out is not None or hessian_out is not None:
            yt, yp, w = detach_inputs((yt, yp, w), (loss_out, gradient_out, hessian_out))
        try:
            kernel, args = self._calls[dtype]
        except KeyError:
            kernel, args = self._kernel_for(dtype)
        # the kernels read C-contiguous arrays of any shape as their flat sequence
        total, flags = kernel(
            yt, yp, empty if w is None else w, lo, go, ho, loss and not store, scale, nt,
            _NO_PARTIALS if partials is None else partials, *args,
        )
        if flags:
            self._raise_domain(flags)
        if not grad:
            go = None
        if not hess:
            ho = None
        if store:
            return lo, go, ho
        if loss:
            if reduction == "mean" and partials is None and weight_total is None:
                total, wsum = retry_overflowed_mean(
                    total, wsum, w, n, dtype,
                    lambda w2: kernel(yt, yp, w2, empty, empty, empty, True, 1.0, nt,
                                      _NO_PARTIALS, *args)[0],
                    lambda w2: _core.weight_sum(flat(w2), nt)[0])
            value = self._reduce(total, wsum, reduction)
            return (dtype.type(value) if dtype is _F64 else to_dtype(value, dtype)), go, ho
        return None, go, ho

    # ------------------------------------------------------------------ chunked reductions
    def partial_sums(self, y_true: ArrayLike, y_pred: ArrayLike, *,
                     sample_weight: ArrayLike = None, n_threads: Optional[int] = None):
        """Per-block float64 sums of ``w*l`` and ``w``, for exact reductions over chunks.

        The kernels cut an array into fixed blocks of ``_core.build_info()["block_size"]``
        elements and combine the blocks' float64 sums in order. This returns those block sums,
        so that a caller reading an array in chunks whose lengths are multiples of the block size
        can concatenate them in order, combine them with ``_core.combine_partials`` and pass the
        totals to :meth:`reduce_sums`: the result is bit for bit that of one in-memory call.
        Inputs are validated as in :meth:`loss` (shapes, negative weights, domains).

        Returns
        -------
        loss_partials : ndarray of float64, one slot per block
        weight_partials : ndarray of float64, one slot per block, or None without weights
        """
        n = as_array(y_pred, "y_pred").size
        lp = np.zeros(-(-n // _core.build_info()["block_size"]), np.float64)
        wp = None if sample_weight is None else np.zeros_like(lp)
        # Block sums are of w*l whatever the reduction; "mean" is the one every loss allows,
        # and weight_total=1 keeps a chunk whose weights are all 0 from being refused.
        self._run(y_true, y_pred, sample_weight, "mean", n_threads, loss=True, grad=False,
                  hess=False, partials=lp, weight_partials=wp, weight_total=1.0)
        return lp, wp

    def reduce_sums(self, loss_sum: float, weight_sum: float, reduction: str = "mean",
                    dtype: Any = np.float64):
        """The reduced loss from float64 totals ``sum(w*l)`` and ``sum(w)`` (``n`` unweighted).

        What :meth:`loss` returns for ``reduction`` ("mean" or "sum") given those totals, in
        ``dtype`` (the compute dtype); the counterpart of :meth:`partial_sums`.
        """
        reduction = check_reduction(reduction, tuple(r for r in self.reductions if r != "none"))
        dtype = np.dtype(dtype)
        if reduction == "mean":
            return dtype.type(loss_sum / weight_sum if weight_sum > 0 else math.nan)
        return dtype.type(loss_sum)

    def _reduce(self, total: float, wsum: float, reduction: str) -> float:
        """The reduced loss from ``sum(w*l)`` and ``sum(w)``, in float64 (cast by the caller)."""
        if reduction == "mean":
            return total / wsum if wsum > 0 else math.nan
        return total

    def _raise_domain(self, flags: int) -> None:
        which = [("y_true", self.y_true_domain, 1), ("y_pred", self.y_pred_domain, 2)]
        bad = [f"{arg} must be {dom}" for arg, dom, bit in which if flags & bit]
        raise ValueError(f"{type(self).__name__}: {' and '.join(bad)}; got values outside")

    # ------------------------------------------------------------------ public API
    def loss(self, y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike = None,
             reduction: str = "mean", loss_out: Optional[np.ndarray] = None,
             n_threads: Optional[int] = None):
        """The loss, reduced (``"mean"``, ``"sum"``) or per element (``"none"``).

        Parameters
        ----------
        y_true, y_pred : array-like of the same shape
            Targets and predictions. ``y_pred`` sets the compute dtype.
        sample_weight : array-like of the same shape, optional
            Non-negative weights ``w``; the mean is ``sum(w*l) / sum(w)``.
        reduction : {"mean", "sum", "none"}
        loss_out : ndarray, optional
            With ``reduction="none"``: the array to write ``w*l`` into (exact shape and dtype).
        n_threads : int, optional
            Threads for the kernel (default :func:`fastloss.get_num_threads`).

        Returns
        -------
        scalar of the compute dtype, or ndarray of the shape of ``y_pred``
        """
        return _call(self, y_true, y_pred, sample_weight, reduction, n_threads, 1, loss_out,
                     None, None)

    def gradient(self, y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike = None,
                 reduction: str = "mean", out: Optional[np.ndarray] = None,
                 n_threads: Optional[int] = None) -> np.ndarray:
        """Gradient of the reduced loss with respect to ``y_pred``.

        ``"mean"`` gives ``w_i l'_i / sum(w)``; ``"sum"`` and ``"none"`` give ``w_i l'_i``.
        ``out`` receives it when given. Other parameters as in :meth:`loss`.
        """
        return _call(self, y_true, y_pred, sample_weight, reduction, n_threads, 2, None, out,
                     None)

    def loss_gradient(self, y_true: ArrayLike, y_pred: ArrayLike, *,
                      sample_weight: ArrayLike = None, reduction: str = "mean",
                      loss_out: Optional[np.ndarray] = None,
                      gradient_out: Optional[np.ndarray] = None,
                      n_threads: Optional[int] = None):
        """``(loss, gradient)`` in one pass; the gradient is that of the returned loss."""
        return _call(self, y_true, y_pred, sample_weight, reduction, n_threads, 3, loss_out,
                     gradient_out, None)

    def loss_gradient_hessian(self, y_true: ArrayLike, y_pred: ArrayLike, *,
                              sample_weight: ArrayLike = None, reduction: str = "mean",
                              loss_out: Optional[np.ndarray] = None,
                              gradient_out: Optional[np.ndarray] = None,
                              hessian_out: Optional[np.ndarray] = None,
                              n_threads: Optional[int] = None):
        """``(loss, gradient, hessian)`` in one pass, all three for the given reduction."""
        # (elementwise_call calls self._require_hessian() first)
        return _call(self, y_true, y_pred, sample_weight, reduction, n_threads, 7, loss_out,
                     gradient_out, hessian_out)

    def gradient_hessian(self, y_true: ArrayLike, y_pred: ArrayLike, *,
                         sample_weight: ArrayLike = None,
                         gradient_out: Optional[np.ndarray] = None,
                         hessian_out: Optional[np.ndarray] = None,
                         n_threads: Optional[int] = None):
        """Per-sample ``(w_i l'_i, w_i l''_i)``, as gradient boosting wants them."""
        # (elementwise_call calls self._require_hessian() first)
        return _call(self, y_true, y_pred, sample_weight, "none", n_threads, 6, None,
                     gradient_out, hessian_out)

    def _require_hessian(self) -> None:
        if not self.has_hessian:
            raise NotImplementedError(f"{type(self).__name__} has no per-sample hessian")

    def baseline(self, y_true: ArrayLike, *, sample_weight: ArrayLike = None) -> float:
        """The constant ``y_pred`` that minimises the (weighted) loss over ``y_true``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers for baselines
    def _baseline_inputs(self, y_true: ArrayLike, sample_weight: ArrayLike):
        y = np.ravel(as_array(y_true, "y_true")).astype(np.float64)
        if y.size == 0:
            raise ValueError("baseline needs at least one y_true value")
        if sample_weight is None:
            w = np.ones_like(y)
        else:
            w = np.ravel(as_array(sample_weight, "sample_weight")).astype(np.float64)
            if w.shape != y.shape:
                raise ValueError(
                    f"sample_weight must have {y.size} elements like y_true, got {w.size}"
                )
            if np.any(w < 0):
                raise ValueError("sample_weight must be non-negative, got a negative weight")
            if not np.sum(w) > 0:
                raise ValueError("sample_weight must not sum to 0")
        return y, w


_core.fast_setup(ElementwiseLoss, _threads.__dict__, EMPTY[_F64], EMPTY[_F32], _NO_PARTIALS,
                 to_dtype)
