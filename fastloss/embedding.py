"""Embedding (metric-learning) losses: contrastive, triplet, and triplet mining over a batch.

A sample is a *row*: an embedding of ``d`` values. The methods take the embedding arrays in place
of ``(y_true, y_pred)`` (DESIGN.md section 5) and return one gradient per embedding input, as a
tuple in the order of the inputs::

    Contrastive().loss_gradient(x1, x2, y)             -> (loss, (g1, g2))
    Contrastive().loss_gradient(distance, y)           -> (loss, (g_distance,))
    Triplet().loss_gradient(anchor, positive, negative) -> (loss, (ga, gp, gn))
    BatchHardTriplet().loss_gradient(embeddings, labels) -> (loss, (g,))

with the keywords of every loss (``sample_weight`` per pair / triplet / anchor, ``reduction``,
``n_threads``, ``loss_out``, ``gradient_out``). The per-row math and the loops are in
``_embedding.pyx``.

Conventions common to the family:

* **dtype**: float32 when every embedding array is float32 (or float16), float64 otherwise;
  labels are converted as needed. Outputs have that dtype; every sum accumulates in float64.
* **Distances** are exact: ``||x - y||_p`` with no epsilon (``Triplet(eps=...)`` adds one the
  way PyTorch does). At identical points the distance is 0 and its gradient is taken as 0 (the
  minimal-norm subgradient of a norm at 0), never a division by zero.
* **Hessians**: the hessian of a distance with respect to an embedding is a full ``d x d`` block
  per row (coordinates are coupled through the norm), so a diagonal hessian is of no use for
  these losses: ``loss_gradient_hessian`` and ``gradient_hessian`` raise ``NotImplementedError``,
  as does ``baseline`` (there is no constant prediction to speak of).
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._dispatch import kernel_module
from ._base import (
    ArrayLike, ArraySpec, Domain, Loss, Param, mean_weights, retry_overflowed_mean, to_dtype,
)
from ._registry import register
from ._threads import resolve_n_threads
from ._validation import EMPTY, as_array, as_compute, check_out, check_reduction, compute_dtype

_embedding = kernel_module("_embedding")

__all__ = ["EmbeddingLoss", "Contrastive", "Triplet", "BatchHardTriplet", "BatchAllTriplet"]

# Must match the enums of _embedding.pyx.
_L1, _L2, _SQL2, _LP = 1, 2, 3, 4
_CONTRASTIVE, _CONTRASTIVE_DISTANCE, _TRIPLET = 0, 1, 2
_MINE_HARD, _MINE_ALL = 0, 1
_FLAG_LABEL, _FLAG_DISTANCE = 1, 2

_EMPTY2 = {dt: np.empty((0, 0), dt) for dt in EMPTY}

Grads = Tuple[np.ndarray, ...]

# Declarative input descriptions (Loss.input_forms), used by the generic property tests.
_ROWS = ("n", "d")
_PAIR_LABELS = ArraySpec("y", ("n",), Domain(value_sets=((0.0, 1.0),), nan=False))


def _kind(p: float, squared: bool) -> int:
    if squared:
        return _SQL2
    return {1.0: _L1, 2.0: _L2}.get(p, _LP)


def _dtype_of(*arrays: np.ndarray) -> np.dtype:
    """The compute dtype of several embedding arrays (float32 only if all are float32-ish)."""
    dts = [compute_dtype(a) for a in arrays]
    return dts[0] if all(dt == dts[0] for dt in dts) else np.dtype(np.float64)


def _matrix(x: ArrayLike, name: str) -> np.ndarray:
    arr = as_array(x, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of embeddings (n, d), got {arr.ndim}-D shape {arr.shape}"
        )
    return arr


def _vector(x: ArrayLike, name: str, n: int, what: str) -> np.ndarray:
    arr = as_array(x, name)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one {what}, got shape {arr.shape}")
    return arr


def _same_shape(arrays: Sequence[np.ndarray], names: Sequence[str]) -> None:
    for a, name in zip(arrays[1:], names[1:]):
        if a.shape != arrays[0].shape:
            raise ValueError(
                f"{names[0]} and {name} must have the same shape (n, d), got {names[0]} "
                f"{arrays[0].shape} and {name} {a.shape}"
            )


class EmbeddingLoss(Loss):
    """Base of the embedding losses: rows of embedding arrays are the samples.

    Subclasses set ``name``, ``params``, ``inputs`` (how the positional arrays read, for error
    messages) and implement ``_parse``, which validates the arrays and returns a ``_Call`` that
    knows how to run its kernel. The public methods are those of every
    loss with the embedding arrays as positional arguments; gradients come back as a tuple, one
    array per embedding input.
    """

    has_hessian: ClassVar[bool] = False
    takes_arrays: ClassVar[bool] = True     # functional shortcuts take ``*arrays``
    reductions: ClassVar[Tuple[str, ...]] = ("mean", "sum", "none")
    inputs: ClassVar[str] = ""

    __slots__ = ()

    # ------------------------------------------------------------------ to implement
    def _parse(self, arrays: tuple):  # pragma: no cover - abstract
        """Validate and convert the arrays: returns a ``_Call`` (see below)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ machinery
    def _run(self, arrays: tuple, sample_weight: ArrayLike, reduction: str,
             n_threads: Optional[int], *, loss: bool, grad: bool,
             loss_out: Optional[np.ndarray] = None, gradient_out: Any = None):
        reduction = check_reduction(reduction, self.reductions)
        call = self._parse(arrays)
        nt = resolve_n_threads(n_threads)
        n, dtype = call.n, call.dtype
        w = None
        if sample_weight is not None:
            w = as_compute(_vector(sample_weight, "sample_weight", n, call.sample), dtype)
            wsum, negative = _core.weight_sum(w, nt)
            if negative:
                raise ValueError("sample_weight must be non-negative, got a negative weight")
            if reduction == "mean":
                w, wsum = mean_weights(w, wsum, nt)
        else:
            wsum = float(n)
        denom = call.denominator(w, wsum)
        if reduction == "mean" and denom == 0 and n > 0:
            raise ValueError(call.empty_message(w))
        scale = 1.0 / denom if (reduction == "mean" and denom > 0) else 1.0
        store = loss and reduction == "none"
        if loss_out is not None and not store:
            raise ValueError("loss_out is only used with reduction='none'")
        lo = check_out(loss_out, (n,), dtype, "loss_out") if store else None
        gos = None
        if grad:
            gos = self._grad_outs(gradient_out, call.grad_shapes, dtype)
        total, flags = call.run(w, lo, gos, loss and not store, scale, nt)
        if flags:
            call.raise_flags(flags)
        if loss and reduction == "mean" and dtype == np.float64:
            total, denom = retry_overflowed_mean(
                total, denom, w, n, dtype,
                lambda w2: call.run(w2, None, None, True, 1.0, nt)[0],
                lambda w2: call.denominator(w2, float(_core.weight_sum(w2, nt)[0])))
        value = None
        if store:
            value = lo
        elif loss:
            if reduction == "mean":
                total = total / denom if denom > 0 else math.nan
            value = to_dtype(total, dtype)
        return value, (tuple(gos) if grad else None)

    def _grad_outs(self, out: Any, shapes: Sequence[Tuple[tuple, str]],
                   dtype: np.dtype) -> list:
        if out is None:
            out = (None,) * len(shapes)
        elif isinstance(out, np.ndarray) or not isinstance(out, (tuple, list)):
            raise ValueError(
                f"gradient_out must be a tuple of {len(shapes)} array(s) (or None entries), "
                f"one per input of {self.inputs}, got {type(out).__name__}"
            )
        if len(out) != len(shapes):
            raise ValueError(
                f"gradient_out must hold {len(shapes)} array(s), one per input of "
                f"{self.inputs}, got {len(out)}"
            )
        return [check_out(o, shape, dtype, f"gradient_out[{k}] ({name})")
                for k, (o, (shape, name)) in enumerate(zip(out, shapes))]

    # ------------------------------------------------------------------ public API
    def loss(self, *arrays: ArrayLike, sample_weight: ArrayLike = None, reduction: str = "mean",
             loss_out: Optional[np.ndarray] = None, n_threads: Optional[int] = None):
        """The loss, reduced (``"mean"``, ``"sum"``) or per sample (``"none"``).

        Parameters
        ----------
        *arrays : array-like
            The embedding arrays (see the class docstring for their order and shapes).
        sample_weight : array-like (n,), optional
            Non-negative weight of each sample (pair, triplet or anchor).
        reduction : {"mean", "sum", "none"}
            ``"mean"`` is ``sum(w*l) / sum(w)``, ``"sum"`` is ``sum(w*l)``, ``"none"`` gives
            ``w*l`` per sample.
        loss_out : ndarray (n,), optional
            With ``reduction="none"``: the array to write ``w*l`` into (exact shape and dtype).
        n_threads : int, optional
            Threads for the kernel (default :func:`fastloss.get_num_threads`).

        Returns
        -------
        scalar of the compute dtype, or ndarray (n,)
        """
        return self._run(arrays, sample_weight, reduction, n_threads, loss=True, grad=False,
                         loss_out=loss_out)[0]

    def gradient(self, *arrays: ArrayLike, sample_weight: ArrayLike = None,
                 reduction: str = "mean", out: Optional[Sequence[Optional[np.ndarray]]] = None,
                 n_threads: Optional[int] = None) -> Grads:
        """Gradients of the reduced loss, one array per embedding input, as a tuple.

        ``"mean"`` gives ``w_i dl_i/dx / sum(w)``; ``"sum"`` and ``"none"`` give ``w_i dl_i/dx``.
        ``out``: a tuple of arrays (or ``None`` entries) to write the gradients into.
        """
        return self._run(arrays, sample_weight, reduction, n_threads, loss=False, grad=True,
                         gradient_out=out)[1]

    def loss_gradient(self, *arrays: ArrayLike, sample_weight: ArrayLike = None,
                      reduction: str = "mean", loss_out: Optional[np.ndarray] = None,
                      gradient_out: Optional[Sequence[Optional[np.ndarray]]] = None,
                      n_threads: Optional[int] = None):
        """``(loss, gradients)`` in one pass; the gradients (a tuple, one per embedding input)
        are those of the returned loss."""
        return self._run(arrays, sample_weight, reduction, n_threads, loss=True, grad=True,
                         loss_out=loss_out, gradient_out=gradient_out)

    def loss_gradient_hessian(self, *arrays: Any, **kwargs: Any):
        """Not available: see :meth:`gradient_hessian`."""
        self._no_hessian()

    def gradient_hessian(self, *arrays: Any, **kwargs: Any):
        """Not available: the hessian of an embedding loss couples the ``d`` coordinates of a
        row (a full ``d x d`` block), so no diagonal hessian is useful. Raises
        ``NotImplementedError``."""
        self._no_hessian()

    def _no_hessian(self):
        raise NotImplementedError(
            f"{type(self).__name__} has no diagonal hessian: the hessian of a distance couples "
            f"the coordinates of an embedding (a full d x d block per row); use loss_gradient"
        )

    def baseline(self, *args: Any, **kwargs: Any) -> float:
        """Not available for embedding losses (there is no constant prediction)."""
        raise NotImplementedError(
            f"{type(self).__name__}: baseline does not apply to embedding losses (there is no "
            f"constant prediction that minimises them)"
        )


class _Call:
    """One validated call of a row-wise kernel: the converted arrays and how to run them."""

    sample = "weight per row"

    def __init__(self, owner: EmbeddingLoss, n: int, dtype: np.dtype) -> None:
        self.owner, self.n, self.dtype = owner, n, dtype

    def denominator(self, w: Optional[np.ndarray], wsum: float) -> float:
        return wsum

    def empty_message(self, w: Optional[np.ndarray]) -> str:
        return "sample_weight must not sum to 0 with reduction='mean'"


class _RowsCall(_Call):
    """A call of ``_embedding.rows`` (contrastive, its distance form, triplet)."""

    def __init__(self, owner, task, xs, names, labels, dtype, kernel_args) -> None:
        super().__init__(owner, xs[0].shape[0], dtype)
        self.task, self.xs, self.names, self.labels = task, xs, names, labels
        self.kernel_args = kernel_args
        if task == _CONTRASTIVE_DISTANCE:
            self.grad_shapes = [((self.n,), names[0])]
            self.sample = "weight per distance"
        else:
            self.grad_shapes = [(x.shape, nm) for x, nm in zip(xs, names)]
            self.sample = "weight per pair" if task == _CONTRASTIVE else "weight per triplet"

    def run(self, w, lo, gos, want_loss, scale, nt):
        dt = self.dtype
        e1, e2 = EMPTY[dt], _EMPTY2[dt]
        xs = list(self.xs)
        gs = list(gos) if gos is not None else []
        if self.task == _CONTRASTIVE_DISTANCE:
            xs = [xs[0].reshape(-1, 1)]
            gs = [g.reshape(-1, 1) for g in gs]
        xs += [e2] * (3 - len(xs))
        gs += [e2] * (3 - len(gs))
        return _embedding.rows(
            self.task, xs[0], xs[1], xs[2], e1 if self.labels is None else self.labels,
            e1 if w is None else w, e1 if lo is None else lo, gs[0], gs[1], gs[2],
            want_loss, gos is not None, scale, nt, *self.kernel_args,
        )

    def raise_flags(self, flags: int) -> None:
        cls = type(self.owner).__name__
        if flags & _FLAG_LABEL:
            y = self.labels
            bad = y[(y != 0) & (y != 1)]
            raise ValueError(
                f"{cls}: y must hold 0 (similar) or 1 (dissimilar) labels, got {bad[0].item()!r}"
            )
        if flags & _FLAG_DISTANCE:
            dist = self.xs[0]
            raise ValueError(f"{cls}: distance must be >= 0, got {dist[dist < 0][0].item()!r}")


def _labels01(y: ArrayLike, n: int, dtype: np.dtype) -> np.ndarray:
    arr = _vector(y, "y", n, "label (0 similar, 1 dissimilar) per pair")
    return as_compute(arr, dtype)


@register
class Contrastive(EmbeddingLoss):
    r"""Contrastive loss of pairs of embeddings (Hadsell, Chopra & LeCun, 2006).

    .. math::
        l = (1 - y) \tfrac12 D^2 + y \tfrac12 \max(0, m - D)^2,
        \quad D = \lVert x_1 - x_2 \rVert_2

    with ``y = 0`` for a similar pair and ``y = 1`` for a dissimilar one (any other value, NaN
    included, raises ``ValueError``), margin ``m``.

    Two forms, told apart by the number of arrays:

    * ``(x1, x2, y)``: embeddings ``x1, x2`` of shape ``(n, d)``, labels ``y`` ``(n,)``; the
      gradients are ``(g1, g2)`` with :math:`g_1 = \partial l/\partial D \cdot (x_1 - x_2)/D
      = -g_2`, i.e. :math:`x_1 - x_2` for a similar pair and
      :math:`-(m - D)(x_1 - x_2)/D` for a dissimilar pair inside the margin.
    * ``(distance, y)``: precomputed distances ``(n,)`` (>= 0); the gradient is
      ``(g_distance,)`` with :math:`\partial l/\partial D = D` (similar) or
      :math:`-\max(0, m - D)` (dissimilar).

    Identical embeddings (``D = 0``): the loss is ``m^2/2`` for a dissimilar pair, and the
    gradient is 0 (the loss has a cone there; 0 is its minimal-norm subgradient and what a
    central finite difference gives), never a division by zero. At ``D = m`` the loss is smooth
    (both sides have derivative 0). No hessian (see :class:`EmbeddingLoss`).

    Parameters
    ----------
    margin : float >= 0, default 1.0

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> x1 = np.array([[0.0, 0.0], [0.0, 0.0]]); x2 = np.array([[3.0, 4.0], [0.0, 0.5]])
    >>> loss, (g1, g2) = fastloss.Contrastive(margin=1.0).loss_gradient(x1, x2, [0, 1],
    ...                                                                 reduction="sum")
    >>> float(loss)          # 25/2 + (1 - 0.5)^2/2
    12.625
    >>> float(fastloss.contrastive([5.0, 0.5], [0, 1], reduction="sum"))   # distance form
    12.625
    """

    name = "contrastive"
    params = (Param("margin", 1.0, low=0),)
    inputs = "(x1, x2, y) or (distance, y)"
    __slots__ = ()

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__(margin=margin)

    def input_forms(self):
        return ((ArraySpec("x1", _ROWS, grad=True), ArraySpec("x2", _ROWS, grad=True),
                 _PAIR_LABELS),
                (ArraySpec("distance", ("n",), Domain(low=0), grad=True), _PAIR_LABELS))

    def _parse(self, arrays: tuple) -> _RowsCall:
        if len(arrays) == 3:
            x1, x2 = _matrix(arrays[0], "x1"), _matrix(arrays[1], "x2")
            _same_shape([x1, x2], ["x1", "x2"])
            dtype = _dtype_of(x1, x2)
            xs = [as_compute(x1, dtype), as_compute(x2, dtype)]
            y = _labels01(arrays[2], x1.shape[0], dtype)
            return _RowsCall(self, _CONTRASTIVE, xs, ["x1", "x2"], y, dtype, (self.margin,))
        if len(arrays) == 2:
            dist = as_array(arrays[0], "distance")
            if dist.ndim != 1:
                raise ValueError(
                    f"distance must be a 1-D array (n,) of distances, got shape {dist.shape}"
                    " (pass (x1, x2, y) for embeddings)"
                )
            dtype = compute_dtype(dist)
            dist = as_compute(dist, dtype)
            y = _labels01(arrays[1], dist.shape[0], dtype)
            return _RowsCall(self, _CONTRASTIVE_DISTANCE, [dist], ["distance"], y, dtype,
                             (self.margin,))
        raise TypeError(
            f"Contrastive takes the arrays {self.inputs}, got {len(arrays)} positional array(s)"
        )


@register
class Triplet(EmbeddingLoss):
    r"""Triplet margin loss of (anchor, positive, negative) embeddings (Schroff et al., 2015).

    .. math::
        l = \max(0, d(a, p) - d(a, n) + m), \quad d(x, y) = \lVert x - y + \epsilon \rVert_p

    on arrays ``anchor``, ``positive``, ``negative`` of shape ``(n, d)``. With ``swap=True``
    ``d(a, n)`` is replaced by ``min(d(a, n), d(p, n))`` (Balntas et al., 2016; as PyTorch),
    ``d(a, n)`` on ties. ``squared=True`` (only with ``p=2``) uses the squared Euclidean
    distance :math:`\lVert a - p \rVert_2^2`.

    Gradients ``(ga, gp, gn)``, where the loss is positive:
    :math:`g_a = \nabla d(a - p) - \nabla d(a - n)`, :math:`g_p = -\nabla d(a - p)`,
    :math:`g_n = \nabla d(a - n)` (with the swap taken: :math:`g_a = \nabla d(a - p)`,
    :math:`g_p = -\nabla d(a - p) - \nabla d(p - n)`, :math:`g_n = \nabla d(p - n)`), where
    :math:`\nabla d(u)_k` is :math:`u_k / \lVert u \rVert_2` (p = 2), :math:`2 u_k` (squared),
    :math:`\operatorname{sign} u_k` (p = 1), :math:`\operatorname{sign} u_k
    (|u_k| / \lVert u \rVert_p)^{p-1}` (other p). Zero where the loss is 0, exactly at the
    margin included (the derivative of the flat side, as ReLU's convention).

    **Identical points.** With the default ``eps=0`` the distance is exact: identical points are
    at distance 0 and the gradient of that distance is 0 (the minimal-norm subgradient of a norm
    at 0; a central finite difference agrees), never a division by zero. PyTorch's
    ``triplet_margin_loss`` instead adds ``eps=1e-6`` to every coordinate of the difference
    (``||x - y + eps||_p``), which makes the distance of identical points ``eps * d^(1/p)``;
    ``Triplet(eps=1e-6)`` reproduces it exactly.

    Parameters
    ----------
    margin : float >= 0, default 1.0
    p : float >= 1, default 2.0
        The norm's exponent (1 and 2 have fast paths; other values use a scaled form that does
        not overflow).
    swap : bool, default False
    squared : bool, default False
        Squared Euclidean distance (requires ``p=2``).
    eps : float in [0, 1], default 0.0
        Added to each coordinate of the difference, for PyTorch compatibility (its
        ``pairwise_distance`` eps, 1e-6 there): a small constant, at most 1.

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> a = np.zeros((1, 2)); p = np.array([[3.0, 4.0]]); n = np.array([[1.0, 0.0]])
    >>> loss, (ga, gp, gn) = fastloss.Triplet(margin=1.0).loss_gradient(a, p, n)
    >>> float(loss)          # 5 - 1 + 1
    5.0
    >>> gn.tolist()          # -d d(a, n)/dn = (a - n) / d(a, n)
    [[-1.0, 0.0]]
    """

    name = "triplet"
    params = (
        Param("margin", 1.0, low=0),
        Param("p", 2.0, low=1),
        Param("swap", False, kind="bool"),
        Param("squared", False, kind="bool"),
        Param("eps", 0.0, low=0, high=1.0),
    )
    inputs = "(anchor, positive, negative)"
    __slots__ = ()

    def __init__(self, margin: float = 1.0, p: float = 2.0, swap: bool = False,
                 squared: bool = False, eps: float = 0.0) -> None:
        if squared is True and isinstance(p, (int, float)) and p != 2:
            raise ValueError(f"Triplet: squared=True needs p=2 (squared Euclidean), got p={p!r}")
        super().__init__(margin=margin, p=p, swap=swap, squared=squared, eps=eps)

    def input_forms(self):
        return (tuple(ArraySpec(nm, _ROWS, grad=True)
                      for nm in ("anchor", "positive", "negative")),)

    def _parse(self, arrays: tuple) -> _RowsCall:
        names = ["anchor", "positive", "negative"]
        if len(arrays) != 3:
            raise TypeError(
                f"Triplet takes the arrays {self.inputs}, got {len(arrays)} positional array(s)"
            )
        xs = [_matrix(a, nm) for a, nm in zip(arrays, names)]
        _same_shape(xs, names)
        dtype = _dtype_of(*xs)
        xs = [as_compute(x, dtype) for x in xs]
        args = (self.margin, _kind(self.p, self.squared), self.p, self.eps, self.swap)
        return _RowsCall(self, _TRIPLET, xs, names, None, dtype, args)


def _physical_memory() -> float:
    """Bytes of physical memory (inf where the platform does not say)."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return math.inf


class _MiningCall(_Call):
    """A call of ``_embedding.batch_triplet``."""

    sample = "weight per anchor"

    def __init__(self, owner, mining, x, codes, counts, dtype, kind) -> None:
        super().__init__(owner, x.shape[0], dtype)
        self.mining, self.x, self.codes, self.kind = mining, x, codes, kind
        same = counts[codes] if self.n else np.zeros(0, np.int64)
        self.positives = same - 1                 # other rows with the anchor's label
        self.negatives = self.n - same            # rows with another label
        self.grad_shapes = [(x.shape, "embeddings")]

    def _triplets(self) -> np.ndarray:
        """Triplets per anchor: 1 or 0 (batch-hard), positives * negatives (batch-all)."""
        if self.mining == _MINE_HARD:
            return ((self.positives > 0) & (self.negatives > 0)).astype(np.float64)
        return self.positives.astype(np.float64) * self.negatives

    def denominator(self, w, wsum):
        t = self._triplets()
        return float(np.sum(t if w is None else t * w))

    def empty_message(self, w):
        if not np.any(self._triplets()):
            return (f"{type(self.owner).__name__}: the batch has no valid triplet (an anchor "
                    f"needs another row with its label and a row with another label), so "
                    f"reduction='mean' is undefined")
        return ("sample_weight must not sum to 0 over the anchors that have a triplet with "
                "reduction='mean'")

    def run(self, w, lo, gos, want_loss, scale, nt):
        dt = self.dtype
        need = 8 * self.n * self.n
        if need > _physical_memory():
            raise MemoryError(
                f"{type(self.owner).__name__}: a batch of n={self.n} needs an n x n float64 "
                f"work matrix ({need / 2**30:.1f} GiB), more than this machine's memory"
            )
        work = np.empty((self.n, self.n), np.float64)
        g = gos[0] if gos is not None else _EMPTY2[dt]
        return _embedding.batch_triplet(
            self.mining, self.x, self.codes, EMPTY[dt] if w is None else w,
            EMPTY[dt] if lo is None else lo, g, work, want_loss, gos is not None, scale, nt,
            self.owner.margin, self.kind,
        )

    def raise_flags(self, flags: int) -> None:  # pragma: no cover - no domain flags here
        raise RuntimeError(f"batch_triplet returned flags {flags}")


class _BatchTriplet(EmbeddingLoss):
    """Shared implementation of the batch-mining triplet losses."""

    _mining: ClassVar[int]
    params = (
        Param("margin", 1.0, low=0),
        Param("p", 2.0, check=lambda v: v in (1.0, 2.0), rule="equal to 1 or 2"),
        Param("squared", False, kind="bool"),
    )
    inputs = "(embeddings, labels)"
    independent_samples = False      # an anchor's loss depends on every row of the batch
    __slots__ = ()

    def input_forms(self):
        return ((ArraySpec("embeddings", _ROWS, grad=True),
                 ArraySpec("labels", ("n",), Domain(integer=True, nan=False), labels=True)),)

    def __init__(self, margin: float = 1.0, p: float = 2.0, squared: bool = False) -> None:
        if squared is True and isinstance(p, (int, float)) and p != 2:
            raise ValueError(
                f"{type(self).__name__}: squared=True needs p=2 (squared Euclidean), got p={p!r}"
            )
        super().__init__(margin=margin, p=p, squared=squared)

    def _parse(self, arrays: tuple) -> _MiningCall:
        if len(arrays) != 2:
            raise TypeError(
                f"{type(self).__name__} takes the arrays {self.inputs}, got {len(arrays)} "
                f"positional array(s)"
            )
        x = _matrix(arrays[0], "embeddings")
        dtype = compute_dtype(x)
        x = as_compute(x, dtype)
        labels = _vector(arrays[1], "labels", x.shape[0], "integer class label per row")
        if labels.dtype.kind == "f":
            if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                bad = labels[~np.isfinite(labels) | (labels != np.round(labels))][0]
                raise ValueError(f"labels must be integers (class labels), got {bad.item()!r}")
        if labels.dtype.kind not in "fiub":  # pragma: no cover - as_array rejects these
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
        codes = np.ascontiguousarray(codes.reshape(-1), dtype=np.int64)
        return _MiningCall(self, self._mining, x, codes, counts, dtype,
                           _kind(self.p, self.squared))


_MINING_DOC = r"""

    Parameters
    ----------
    margin : float >= 0, default 1.0
    p : {{1, 2}}, default 2
        The distance: L1 or Euclidean.
    squared : bool, default False
        Squared Euclidean distance (requires ``p=2``).

    Notes
    -----
    **Inputs.** ``(embeddings, labels)``: embeddings ``(n, d)``, class labels ``(n,)`` (any
    integers, or floats holding integers). ``sample_weight`` ``(n,)`` weighs each *anchor*: every
    triplet of an anchor has its weight. An anchor without a positive (another row with its
    label) or without a negative (a row with another label) has no triplet: its loss is 0 and it
    does not count in the mean; ``reduction="mean"`` raises ``ValueError`` when no anchor has
    one. Distances are exact (0 between identical rows, with gradient 0 there).

    **Outputs.** The gradient is ``(g,)``, ``g`` of the shape of ``embeddings``; a row gets the
    contributions of every triplet it appears in (as anchor, positive or negative), so with
    ``"none"`` as with ``"sum"`` it is the gradient of ``sum_a w_a l_a``. NaN in an embedding
    gives NaN for the anchors whose candidates it reaches and for their gradients.

    **Cost.** Computed from the pairwise distance matrix: one ``n x n`` float64 work matrix
    (8 n^2 bytes), built once per unordered pair in cache-sized tiles of rows shared among
    threads, so results are bitwise identical for any thread count. Time O(n^2 d / 2) for the
    distances, then {mining_cost}. Gradient: {grad_cost}.
"""


@register
class BatchHardTriplet(_BatchTriplet):
    __doc__ = r"""Batch-hard triplet loss (Hermans, Beyer & Leibe, 2017) of one batch of embeddings.

    For every anchor ``a`` of the batch, its hardest positive (the farthest row with the same
    label) and its hardest negative (the closest row with another label):

    .. math::
        l_a = \max\bigl(0, \max_{p:\,y_p = y_a,\,p \ne a} D(a, p)
              - \min_{n:\,y_n \ne y_a} D(a, n) + m\bigr)

    The mean is over the anchors that have a triplet (weighted: ``sum(w_a l_a) / sum(w_a)``);
    ``"none"`` gives ``w_a l_a`` per anchor. Ties pick the lowest row index; the gradient flows to
    the anchor and its two chosen rows where ``l_a > 0`` (0 exactly at the margin).
    """ + _MINING_DOC.format(
        mining_cost="O(n^2) to mine (one scan of each row of the matrix)",
        grad_cost="O(n^2) to gather the coefficients plus O(n d)",
    ) + r"""
    Examples
    --------
    >>> import numpy as np, fastloss
    >>> x = np.array([[0.0], [2.0], [2.5], [5.0]]); labels = [0, 0, 1, 1]
    >>> float(fastloss.BatchHardTriplet(margin=1.0).loss(x, labels))   # (0.5+2.5+3+0.5) / 4
    1.625
    """

    name = "batch_hard_triplet"
    _mining = _MINE_HARD
    __slots__ = ()


@register
class BatchAllTriplet(_BatchTriplet):
    __doc__ = r"""Batch-all triplet loss: every valid triplet of one batch of embeddings.

    .. math::
        L = \frac{\sum_a w_a \sum_{p:\,y_p = y_a,\,p \ne a} \sum_{n:\,y_n \ne y_a}
                  \max(0, D(a, p) - D(a, n) + m)}{\sum_a w_a P_a N_a}

    with ``P_a`` and ``N_a`` the anchor's numbers of positives and negatives: the weighted mean
    over all valid triplets (zero-loss ones included). ``"sum"`` is the numerator; ``"none"``
    gives per anchor ``w_a`` times the sum of its triplets' losses (the ``n^3`` triplet losses are
    never stored). Gradient zero for triplets exactly at the margin.
    """ + _MINING_DOC.format(
        mining_cost=("O(n N log P) <= O(n^2 log n) to mine, for P positives and N negatives\n"
                     "    per anchor: its positives' distances are sorted, and one binary search "
                     "per\n    negative gives its active positives and their loss sum, instead "
                     "of\n    enumerating the n P N triplets"),
        grad_cost="O(n^2 d) (every pair of rows can contribute)",
    ) + r"""
    Examples
    --------
    >>> import numpy as np, fastloss
    >>> x = np.array([[0.0], [2.0], [2.5], [5.0]]); labels = [0, 0, 1, 1]
    >>> loss = fastloss.BatchAllTriplet(margin=1.0)
    >>> float(loss.loss(x, labels, reduction="sum"))     # 8 triplets, 5 of them active
    7.5
    >>> float(loss.loss(x, labels))                      # 7.5 / 8
    0.9375
    """

    name = "batch_all_triplet"
    _mining = _MINE_ALL
    __slots__ = ()
