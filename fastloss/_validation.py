"""Input checking and dtype/layout handling shared by every loss.

The rules (DESIGN.md section 2 and 4): the compute dtype is that of ``y_pred`` when it is float32
or float64 (float16 computes in float32, integers and booleans in float64); other inputs are
converted to it; C-contiguous arrays of the compute dtype are passed to the kernels without a
copy; inputs are never modified; complex, object and string data raise ``TypeError``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _core

REDUCTIONS = ("mean", "sum", "none")

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
EMPTY = {_F32: np.empty(0, _F32), _F64: np.empty(0, _F64)}
for _a in EMPTY.values():
    _a.flags.writeable = True


def as_array(x: Any, name: str) -> np.ndarray:
    """``np.asarray`` that names the argument when the data cannot be numeric."""
    if x is None:
        raise TypeError(f"{name} must be an array-like of numbers, got None")
    arr = x if type(x) is np.ndarray else np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(
            f"{name} must hold real numbers (float, int or bool), got dtype {arr.dtype}"
        )
    return arr


def compute_dtype(y_pred: np.ndarray) -> np.dtype:
    dt = y_pred.dtype
    if dt == _F64 or dt == _F32:
        return dt
    if dt.kind == "f" and dt.itemsize < 4:
        return _F32
    return _F64


def as_compute(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The array in ``dtype``, C-contiguous; no copy when it already is."""
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr, dtype=dtype)


def check_reduction(reduction: Any, allowed: tuple = REDUCTIONS) -> str:
    if reduction not in allowed or type(reduction) is not str:
        raise ValueError(
            f"reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}"
        )
    return reduction


def check_same_shape(y_true: np.ndarray, y_pred: np.ndarray,
                     true_name: str = "y_true", pred_name: str = "y_pred") -> None:
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{true_name} and {pred_name} must have the same shape, got {true_name} "
            f"{y_true.shape} and {pred_name} {y_pred.shape}"
        )


def check_out(out: Optional[Any], shape: tuple, dtype: np.dtype, name: str) -> np.ndarray:
    """Validate a user ``out`` array (exact shape and dtype, C-contiguous, writeable) or make one."""
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return out


def flat(arr: np.ndarray) -> np.ndarray:
    """1-D view of a C-contiguous array (no copy)."""
    return arr if arr.ndim == 1 else arr.reshape(-1)


def detach_inputs(inputs: tuple, outs: tuple, in_place_ok: bool = True) -> tuple:
    """The inputs, each copied where it overlaps a user ``out`` array.

    The element-wise kernels write output element i after reading input element i only, so
    there (``in_place_ok``) an ``out`` that *is* an input (``gradient(y, p, out=p)``, an
    in-place update) is safe and is not copied. An ``out`` that overlaps an input at other
    positions (``out=a[1:]`` with ``y_pred=a[:-1]``), or any overlap for kernels that read a row
    again after writing it (``in_place_ok=False``), would have inputs overwritten before they are
    read; such inputs are copied first, as NumPy's ufuncs do. Outputs overlapping each other
    raise ``ValueError``. ``None`` entries are skipped.
    """
    given = [o for o in outs if o is not None]
    if not given:
        return tuple(inputs)
    overlap = _core.overlap
    for i in range(len(given) - 1):
        for o2 in given[i + 1:]:
            if overlap(given[i], o2):
                raise ValueError("the out arrays must not overlap each other")
    detached = []
    for a in inputs:
        if a is not None:
            for o in given:
                how = overlap(a, o)
                if how == 2 or (how == 1 and not in_place_ok):
                    a = a.copy()
                    break
        detached.append(a)
    return tuple(detached)
