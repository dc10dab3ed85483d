"""fastloss on Dask arrays: the same losses, reductions and derivatives, chunk by chunk.

``pip install 'fastloss[dask]'``. Every function takes a fastloss loss object (or a registered name
with its parameters as keywords) and the arrays as Dask arrays (NumPy arrays are wrapped with
``y_pred``'s chunks):

* ``"mean"`` and ``"sum"`` are a tree reduction of float64 partial sums ``(sum w*l, sum w)``, each
  carried as a compensated pair ``(s, c)`` and merged with Neumaier's summation, so the result
  equals the in-memory one to ~1e-15 relative whatever the chunking (not bit for bit: the
  chunks need not fall on the kernels' 8192-element blocks);
* ``"none"``, gradients and hessians are blockwise maps; the gradient of a ``"mean"`` is scaled by
  the whole array's ``1 / sum(w)`` (itself a tree reduction), exactly as the in-memory call does;
* ``(n, K)`` inputs of row-wise (multiclass) losses are rechunked so that the class axis is one
  chunk; labels ``(n,)`` and weights ``(n,)`` follow the row chunks;
* ``compute=False`` returns a lazy result: a 0-d Dask array for a reduction.

Threads: the kernels release the GIL, so a Dask worker runs one kernel per Dask thread in
parallel. Each task uses ``n_threads=1`` kernel threads by default, so that a worker with ``T``
threads uses ``T`` cores and never oversubscribes; pass ``n_threads`` to change it (for example
with one Dask thread per worker process).

Examples
--------
>>> import dask.array as da, fastloss, fastloss.dask
>>> y = da.zeros(100_000, chunks=30_000)
>>> p = da.full(100_000, 3.0, chunks=30_000)
>>> float(fastloss.dask.loss(fastloss.Huber(delta=2.0), y, p))   # 2 * (3 - 2 / 2)
4.0
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastloss.dask needs Dask: pip install 'fastloss[dask]' (dask[array] and distributed)"
    ) from exc

from ._base import ElementwiseLoss, Loss
from ._registry import get as _get
from ._validation import check_reduction, compute_dtype
from .scoring import _OrderedSum, _Reducer

__all__ = ["loss", "gradient", "loss_gradient", "gradient_hessian", "loss_gradient_hessian"]

DEFAULT_SPLIT_EVERY = 8


# ------------------------------------------------------------------------------ tasks
# Module-level functions (picklable), run on the workers. A partial is a float64 array
# [s_l, c_l, s_w, c_w, samples]: compensated sums of w*l and of w, and the sample count.

def _chunk_partial(lossobj: Loss, yt, yp, w, n_threads: int, elementwise: bool,
                   reduction: str) -> np.ndarray:
    red = _Reducer(lossobj, w is not None, n_threads, reduction)
    red.add(yt, yp, w)
    samples = yp.size if elementwise else yp.shape[0]
    return np.array([red.l_sum.s, red.l_sum.c, red.w_sum.s, red.w_sum.c, samples], np.float64)


def _weight_partial(w, n_threads: int) -> np.ndarray:
    from . import _core

    wf = np.ascontiguousarray(w, np.float64).reshape(-1)
    total = _OrderedSum()
    parts = np.zeros(-(-wf.size // _core.build_info()["block_size"]))
    if wf.size:
        _, negative = _core.weight_sum(wf, n_threads, parts)
        if negative:
            raise ValueError("sample_weight must be non-negative, got a negative weight")
    total.add(parts)
    return np.array([0.0, 0.0, total.s, total.c, wf.size], np.float64)


def _merge(*parts: np.ndarray) -> np.ndarray:
    lsum, wsum = _OrderedSum(), _OrderedSum()
    n = 0.0
    for p in parts:
        lsum.add(p[0:2])
        wsum.add(p[2:4])
        n += p[4]
    return np.array([lsum.s, lsum.c, wsum.s, wsum.c, n], np.float64)


def _finish(part: np.ndarray, lossobj: Loss, reduction: str, weighted: bool, dtype: np.dtype):
    total = part[0] + part[1]
    samples = int(part[4])
    wsum = float(part[2] + part[3]) if weighted else float(samples)
    if reduction == "mean" and weighted and wsum == 0 and samples > 0:
        raise ValueError("sample_weight must not sum to 0 with reduction='mean'")
    finish = getattr(lossobj, "reduce_sums", None)
    if finish is not None:
        return finish(float(total), wsum, reduction, dtype)
    if reduction == "mean":
        return dtype.type(total / wsum if wsum > 0 else math.nan)
    return dtype.type(total)


def _weight_total(part: np.ndarray) -> float:
    return float(part[2] + part[3])


def _block_none(yt, yp, *rest, lossobj: Loss, n_threads: int, weighted: bool):
    w = rest[0] if weighted else None
    return lossobj.loss(yt, yp, sample_weight=w, reduction="none",  # type: ignore[attr-defined]
                        n_threads=n_threads)


def _block_derivs(yt, yp, *rest, lossobj: Loss, n_threads: int, weighted: bool,
                  reduction: str, hess: bool):
    """Gradient (and hessian, stacked on a new leading axis) of one block.

    For ``"mean"`` the last positional argument is the whole array's ``sum(w)`` (or sample count),
    which replaces the block's own in the scaling, so every element is what the in-memory call on
    the whole array gives.
    """
    w = rest[0] if weighted else None
    total = float(rest[-1]) if reduction == "mean" else None
    if isinstance(lossobj, ElementwiseLoss):
        _, g, h = lossobj._run(yt, yp, w, reduction, n_threads, loss=False, grad=True,
                               hess=hess, weight_total=total)
    else:  # losses without the chunk hook: per-sample derivatives, scaled here
        if hess:
            g, h = lossobj.gradient_hessian(yt, yp, sample_weight=w,  # type: ignore[attr-defined]
                                            n_threads=n_threads)
        else:
            g, h = lossobj.gradient(yt, yp, sample_weight=w, reduction="sum",  # type: ignore
                                    n_threads=n_threads), None
        if total is not None:
            scale = 1.0 / total if total > 0 else 1.0
            g = g * g.dtype.type(scale)
            h = None if h is None else h * h.dtype.type(scale)
    return np.stack([g, h]) if hess else g


# ------------------------------------------------------------------------------ graph building
def _resolve(lossobj: Any, params: dict) -> Loss:
    if isinstance(lossobj, str):
        return _get(lossobj, **params)
    if params:
        raise TypeError(f"unexpected keyword argument(s) {sorted(params)}: hyper-parameters go "
                        "to the loss object, or pass the loss by name")
    if not hasattr(lossobj, "loss"):
        raise TypeError(f"loss must be a fastloss loss object or a registered name, got "
                        f"{lossobj!r}")
    return lossobj


def _as_dask(x: Any, name: str, like: Optional["da.Array"] = None) -> "da.Array":
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    if isinstance(x, da.Array):
        return x
    arr = np.asarray(x)
    if like is not None and arr.ndim >= 1 and arr.shape[0] == like.shape[0]:
        chunks = like.chunks[: arr.ndim] if arr.ndim <= like.ndim else "auto"
        return da.from_array(arr, chunks=chunks)
    return da.from_array(arr)


def _prepare(lossobj: Loss, y_true, y_pred, sample_weight):
    """Dask arrays with aligned chunks; for row-wise losses the class axis in one chunk."""
    yp = _as_dask(y_pred, "y_pred")
    if yp.dtype.kind not in "fiub":
        raise TypeError(f"y_pred must hold real numbers, got dtype {yp.dtype}")
    elementwise = isinstance(lossobj, ElementwiseLoss)
    if not elementwise:
        if yp.ndim != 2:
            raise ValueError(f"{type(lossobj).__name__} needs y_pred of shape (n, K), "
                             f"got {yp.shape}")
        yp = yp.rechunk({1: -1})
    yt = _as_dask(y_true, "y_true", yp)
    w = None if sample_weight is None else _as_dask(sample_weight, "sample_weight", yp)
    if elementwise:
        if yt.shape != yp.shape:
            raise ValueError(f"y_true and y_pred must have the same shape, got y_true "
                             f"{yt.shape} and y_pred {yp.shape}")
        if w is not None and w.shape != yp.shape:
            raise ValueError(f"sample_weight must have the shape of y_pred {yp.shape}, "
                             f"got {w.shape}")
        yt = yt.rechunk(yp.chunks)
        w = None if w is None else w.rechunk(yp.chunks)
        ind = "ij"[: yp.ndim] if yp.ndim <= 2 else "".join(chr(97 + k) for k in range(yp.ndim))
        inds = (ind, ind, ind)
    else:
        if yt.ndim == 1:
            if yt.shape[0] != yp.shape[0]:
                raise ValueError(f"y_true has {yt.shape[0]} labels, y_pred {yp.shape[0]} rows")
            yt = yt.rechunk((yp.chunks[0],))
            tind = "i"
        else:
            if yt.shape != yp.shape:
                raise ValueError(f"y_true and y_pred must have the same shape, got y_true "
                                 f"{yt.shape} and y_pred {yp.shape}")
            yt = yt.rechunk(yp.chunks)
            tind = "ij"
        if w is not None:
            if w.shape != (yp.shape[0],):
                raise ValueError(f"sample_weight must have shape ({yp.shape[0]},), got {w.shape}")
            w = w.rechunk((yp.chunks[0],))
        inds = (tind, "ij", "i")
    return yt, yp, w, inds, elementwise


def _tree(parts: list, split_every: int):
    while len(parts) > 1:
        parts = [dask.delayed(_merge, pure=True)(*parts[i:i + split_every])
                 for i in range(0, len(parts), split_every)]
    return parts[0] if parts else dask.delayed(np.zeros)(5)


def _block_delayeds(x: Optional["da.Array"], nblocks: int) -> list:
    if x is None:
        return [None] * nblocks
    return list(x.to_delayed().ravel())


def _reduced(lossobj, yt, yp, w, elementwise, reduction, n_threads, split_every):
    """The 0-d lazy reduction (a tree of float64 partials)."""
    dtype = compute_dtype(np.empty(0, yp.dtype))
    if elementwise:
        blocks_p = list(yp.to_delayed().ravel())
        blocks_t = list(yt.to_delayed().ravel())
    else:  # one block per row chunk (class axis in one chunk)
        blocks_p = list(yp.to_delayed()[:, 0])
        blocks_t = list(yt.to_delayed().reshape(-1) if yt.ndim == 1 else yt.to_delayed()[:, 0])
    blocks_w = _block_delayeds(w, len(blocks_p))
    parts = [dask.delayed(_chunk_partial, pure=True)(lossobj, t, p, ww, n_threads, elementwise,
                                                     reduction)
             for t, p, ww in zip(blocks_t, blocks_p, blocks_w)]
    root = _tree(parts, split_every)
    value = dask.delayed(_finish, pure=True)(root, lossobj, reduction, w is not None, dtype)
    return da.from_delayed(value, shape=(), dtype=dtype)


def _weight_scale(yp, w, elementwise, n_threads, split_every):
    """The whole array's ``sum(w)`` (lazy) or sample count, for the scaling of a mean."""
    if w is None:
        return float(yp.size if elementwise else yp.shape[0])
    parts = [dask.delayed(_weight_partial, pure=True)(b, n_threads)
             for b in w.to_delayed().ravel()]
    root = _tree(parts, split_every)
    return da.from_delayed(dask.delayed(_weight_total, pure=True)(root), shape=(),
                           dtype=np.float64)


def _derivs(lossobj, yt, yp, w, inds, elementwise, reduction, hess, n_threads, split_every):
    dtype = compute_dtype(np.empty(0, yp.dtype))
    tind, pind, wind = inds
    args: list = [yt, tind, yp, pind]
    if w is not None:
        args += [w, wind]
    if reduction == "mean":
        wt = _weight_scale(yp, w, elementwise, n_threads, split_every)
        args += [wt, None] if not isinstance(wt, da.Array) else [wt, ""]
    kw = dict(lossobj=lossobj, n_threads=n_threads, weighted=w is not None,
              reduction=reduction, hess=hess)
    if hess:
        out = da.blockwise(_block_derivs, "z" + pind, *args, new_axes={"z": 2},
                           dtype=dtype, concatenate=True, meta=_meta(len(pind) + 1, dtype),
                           **kw)
        return out[0], out[1]
    return da.blockwise(_block_derivs, pind, *args, dtype=dtype, concatenate=True,
                        meta=_meta(len(pind), dtype), **kw)


def _meta(ndim: int, dtype: np.dtype) -> np.ndarray:
    """The output's type, given so Dask does not call a task on empty arrays to find it."""
    return np.empty((0,) * ndim, dtype)


def _check_derivatives(lossobj: Loss) -> None:
    cls = type(lossobj)
    if isinstance(lossobj, ElementwiseLoss) and (
        cls.loss_gradient is not ElementwiseLoss.loss_gradient
        or cls.gradient is not ElementwiseLoss.gradient
    ):
        raise NotImplementedError(
            f"fastloss.dask: {cls.__name__}'s derivatives depend on the whole array's loss "
            "(not blockwise); compute them in memory"
        )


def _maybe_compute(x, compute: Optional[bool], default: bool):
    if compute if compute is not None else default:
        return dask.compute(*x) if isinstance(x, tuple) else x.compute()
    return x


# ------------------------------------------------------------------------------ public API
def loss(lossobj: Any, y_true: Any, y_pred: Any, *, sample_weight: Any = None,
         reduction: str = "mean", n_threads: int = 1, compute: Optional[bool] = None,
         split_every: int = DEFAULT_SPLIT_EVERY, **params: Any):
    """The loss over Dask arrays: reduced (``"mean"``, ``"sum"``) or per sample (``"none"``).

    Parameters
    ----------
    lossobj : Loss or str
        A fastloss loss object, or a registered name with its hyper-parameters as keywords
        (``fastloss.dask.loss("huber", y, p, delta=2.0)``).
    y_true, y_pred : dask arrays (or array-likes, wrapped with ``y_pred``'s chunks)
        Element-wise losses: the same shape, any chunking (``y_true`` is rechunked like
        ``y_pred``). Row-wise losses: ``y_pred`` ``(n, K)``, rechunked so that the class axis is
        one chunk; ``y_true`` labels ``(n,)`` or probabilities ``(n, K)``.
    sample_weight : dask array, optional
        Non-negative weights, shaped like ``y_pred`` (element-wise) or ``(n,)`` (row-wise).
    reduction : {"mean", "sum", "none"}
        ``"mean"`` is ``sum(w*l) / sum(w)`` over the whole array, ``"none"`` a blockwise map.
    n_threads : int
        Kernel threads per task (default 1: one per Dask thread, no oversubscription).
    compute : bool, optional
        ``True`` (the default for ``"mean"``/``"sum"``) returns a NumPy scalar; ``False`` a lazy
        0-d Dask array. ``"none"`` returns a lazy Dask array unless ``compute=True``.
    split_every : int
        Fan-in of the tree reduction.

    Returns
    -------
    scalar of the compute dtype, 0-d dask array, or dask array
        For ``"mean"``/``"sum"`` equal to the in-memory ``lossobj.loss`` to ~1e-15 relative
        whatever the chunking: each chunk's float64 block sums are carried as compensated pairs.
    """
    lossobj = _resolve(lossobj, params)
    reduction = check_reduction(reduction, tuple(getattr(lossobj, "reductions",
                                                         ("mean", "sum", "none"))))
    yt, yp, w, inds, elementwise = _prepare(lossobj, y_true, y_pred, sample_weight)
    if reduction == "none":
        dtype = compute_dtype(np.empty(0, yp.dtype))
        tind, pind, wind = inds
        args: list = [yt, tind, yp, pind] + ([w, wind] if w is not None else [])
        oind = pind if elementwise else "i"
        out = da.blockwise(_block_none, oind, *args, dtype=dtype, concatenate=True,
                           meta=_meta(len(oind), dtype), lossobj=lossobj,
                           n_threads=n_threads, weighted=w is not None)
        return _maybe_compute(out, compute, False)
    out = _reduced(lossobj, yt, yp, w, elementwise, reduction, n_threads, split_every)
    return _maybe_compute(out, compute, True)


def gradient(lossobj: Any, y_true: Any, y_pred: Any, *, sample_weight: Any = None,
             reduction: str = "mean", n_threads: int = 1, compute: Optional[bool] = None,
             split_every: int = DEFAULT_SPLIT_EVERY, **params: Any):
    """Gradient of the reduced loss with respect to ``y_pred``, as a blockwise Dask array.

    ``"mean"`` gives ``w_i l'_i / sum(w)`` with the whole array's ``sum(w)``; ``"sum"`` and
    ``"none"`` give ``w_i l'_i``. Lazy unless ``compute=True``. Other parameters as in
    :func:`loss`.
    """
    lossobj = _resolve(lossobj, params)
    _check_derivatives(lossobj)
    reduction = check_reduction(reduction, tuple(getattr(lossobj, "reductions",
                                                         ("mean", "sum", "none"))))
    yt, yp, w, inds, elementwise = _prepare(lossobj, y_true, y_pred, sample_weight)
    g = _derivs(lossobj, yt, yp, w, inds, elementwise, reduction, False, n_threads, split_every)
    return _maybe_compute(g, compute, False)


def loss_gradient(lossobj: Any, y_true: Any, y_pred: Any, *, sample_weight: Any = None,
                  reduction: str = "mean", n_threads: int = 1, compute: Optional[bool] = None,
                  split_every: int = DEFAULT_SPLIT_EVERY, **params: Any) -> Tuple[Any, Any]:
    """``(loss, gradient)``: the reduction of :func:`loss` and the blockwise :func:`gradient`.

    Both lazy unless ``compute=True`` (then computed together, sharing the inputs).
    """
    lossobj = _resolve(lossobj, params)
    value = loss(lossobj, y_true, y_pred, sample_weight=sample_weight, reduction=reduction,
                 n_threads=n_threads, compute=False, split_every=split_every)
    g = gradient(lossobj, y_true, y_pred, sample_weight=sample_weight, reduction=reduction,
                 n_threads=n_threads, compute=False, split_every=split_every)
    return _maybe_compute((value, g), compute, False)


def gradient_hessian(lossobj: Any, y_true: Any, y_pred: Any, *, sample_weight: Any = None,
                     n_threads: int = 1, compute: Optional[bool] = None,
                     split_every: int = DEFAULT_SPLIT_EVERY,
                     **params: Any) -> Tuple[Any, Any]:
    """Per-sample ``(w_i l'_i, w_i l''_i)`` as two blockwise Dask arrays (one kernel pass).

    Lazy unless ``compute=True``. Other parameters as in :func:`loss`.
    """
    lossobj = _resolve(lossobj, params)
    _check_derivatives(lossobj)
    yt, yp, w, inds, elementwise = _prepare(lossobj, y_true, y_pred, sample_weight)
    gh = _derivs(lossobj, yt, yp, w, inds, elementwise, "none", True, n_threads, split_every)
    return _maybe_compute(gh, compute, False)


def loss_gradient_hessian(lossobj: Any, y_true: Any, y_pred: Any, *,
                          sample_weight: Any = None, reduction: str = "mean",
                          n_threads: int = 1, compute: Optional[bool] = None,
                          split_every: int = DEFAULT_SPLIT_EVERY,
                          **params: Any) -> Tuple[Any, Any, Any]:
    """``(loss, gradient, hessian)`` for ``reduction``: the derivatives of what is returned.

    The loss is a tree reduction, the gradient and hessian one blockwise pass (for ``"mean"``
    scaled by the whole array's ``1 / sum(w)``). Lazy unless ``compute=True``.
    """
    lossobj = _resolve(lossobj, params)
    _check_derivatives(lossobj)
    if not getattr(lossobj, "has_hessian", True):
        raise NotImplementedError(f"{type(lossobj).__name__} has no per-sample hessian")
    value = loss(lossobj, y_true, y_pred, sample_weight=sample_weight, reduction=reduction,
                 n_threads=n_threads, compute=False, split_every=split_every)
    yt, yp, w, inds, elementwise = _prepare(lossobj, y_true, y_pred, sample_weight)
    g, h = _derivs(lossobj, yt, yp, w, inds, elementwise, reduction, True, n_threads,
                   split_every)
    return _maybe_compute((value, g, h), compute, False)
