"""Inputs for every registered loss, built from its declaration (``Loss.input_forms``).

Shared by the hardening suites (test_properties, test_concurrency, test_leaks): nothing here
knows a loss by name. A loss describes its positional arrays (shapes as symbols, value domains,
which ones get a gradient) and its parameters (``Param``); these helpers draw valid calls from
that description, with hypothesis (small, adversarial) or NumPy (large, for threads and leaks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastloss
from fastloss._base import ArraySpec, Domain, Param
from fastloss._params import ChoiceParam, IntParam, OptionalParam, VectorParam

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def _describes_inputs(name: str) -> bool:
    try:
        fastloss.get(name).input_forms()
    except NotImplementedError:
        return False
    return True


# Every registered loss that describes its inputs (``input_forms``); any that does not is
# listed in NOT_DESCRIBED, so the gap is visible (test_properties.py::test_every_loss_is_covered).
NAMES = [n for n in fastloss.available() if _describes_inputs(n)]
NOT_DESCRIBED = [n for n in fastloss.available() if n not in NAMES]


def loss_class(name: str) -> type:
    return type(fastloss.get(name))


def form_ids(loss) -> List[int]:
    return list(range(len(loss.input_forms())))


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------

def _param_floats(p: Param, mode: str) -> st.SearchStrategy:
    """Values of a float parameter inside its declared domain.

    ``mode="any"``: the whole float range the domain allows (tiny, huge, subnormal);
    ``"moderate"``: magnitudes in [1e-3, 3] (or 0), where the finiteness contract applies.
    """
    lo = -math.inf if p.low is None else p.low
    hi = math.inf if p.high is None else p.high
    if mode == "moderate":
        lo, hi = max(lo, -3.0), min(hi, 3.0)
        base = st.floats(lo, hi, exclude_min=p.low_open and lo == p.low,
                         exclude_max=p.high_open and hi == p.high)
        base = base.filter(lambda v: v == 0 or abs(v) >= 1e-3)
    else:
        base = st.floats(None if math.isinf(lo) else lo, None if math.isinf(hi) else hi,
                         allow_nan=False, allow_infinity=False,
                         allow_subnormal=not (lo >= 2.2250738585072014e-308
                                              or hi <= -2.2250738585072014e-308),
                         exclude_min=p.low_open and p.low is not None,
                         exclude_max=p.high_open and p.high is not None)
    if p.default is not None and not isinstance(p.default, bool):
        base = st.one_of(st.just(float(p.default)), base)
    if p.check is not None:
        base = base.filter(p.check)
    return base


@st.composite
def loss_instances(draw, name: str, mode: str = "any"):
    """A loss of class ``name`` with parameters drawn from their declared domains.

    Numbers and flags (``Param``), numbers or None (``OptionalParam``), integers or None
    (``IntParam``: small values, which may coincide with labels), choices (``ChoiceParam``).
    Vectors (``VectorParam``) are drawn by :func:`calls` once the shapes are known, when the
    loss declares their shape (``param_shapes``); otherwise they, and parameters of kinds the
    tests do not know, keep their default. Combinations the constructor rejects (e.g.
    ``squared=True`` with ``p != 2``) are skipped.
    """
    cls = loss_class(name)
    kwargs: Dict[str, Any] = {}
    for p in cls.params:
        if isinstance(p, ChoiceParam):
            kwargs[p.name] = draw(st.sampled_from(p.choices))
        elif isinstance(p, IntParam):
            ints = st.integers(-2, 4)
            kwargs[p.name] = draw(st.one_of(st.none(), ints) if p.optional else ints)
        elif isinstance(p, OptionalParam):
            kwargs[p.name] = draw(st.one_of(st.none(), _param_floats(p, mode)))
        elif type(p) is not Param:
            continue
        elif p.kind == "bool":
            kwargs[p.name] = draw(st.booleans())
        elif p.kind == "float":
            kwargs[p.name] = draw(_param_floats(p, mode))
    try:
        return cls(**kwargs)
    except ValueError:
        assume(False)


@st.composite
def with_vector_params(draw, loss, sizes: Dict[str, Any], mode: str = "any"):
    """``loss`` with each vector parameter of declared shape (``param_shapes``, e.g.
    ``class_weight``: ``("K",)``) drawn as None or a vector of that length in its domain."""
    shapes = getattr(loss, "param_shapes", None) or {}
    params = {p.name: p for p in type(loss).params}
    changes = {}
    for pname, shape in shapes.items():
        p = params[pname]
        if not isinstance(p, VectorParam) or not draw(st.booleans()):
            continue
        length = int(np.prod([sizes[s] for s in shape]))
        if length == 0:
            continue
        lo = -1e6 if p.low is None else p.low
        hi = 1e6 if p.high is None else p.high
        el = st.one_of(st.sampled_from([v for v in (lo, 0.0, 1.0, 2.5, hi) if lo <= v <= hi]),
                       st.floats(lo, hi, allow_nan=False, allow_infinity=False))
        if mode != "any":
            el = st.one_of(st.just(0.0), st.floats(max(lo, 0.0078125), min(hi, 128.0)))
        vec = tuple(draw(st.lists(el, min_size=length, max_size=length)))
        if p.check is not None and not p.check(vec):
            continue
        changes[pname] = vec
    if not changes:
        return loss
    try:
        return type(loss)(**{**loss.get_params(), **changes})
    except ValueError:
        assume(False)


def mean_denominator(call: "Call", weights: Optional[np.ndarray]) -> np.ndarray:
    """Each sample's part of a "mean"'s denominator: the weights (ones without), or what the
    loss declares (``mean_sample_weights``: class weights, ignored rows...)."""
    fn = getattr(call.loss, "mean_sample_weights", None)
    w = np.ones(call.n_samples) if weights is None else np.asarray(weights, np.float64)
    if fn is None:
        return w
    arrays = arrays_of(call)
    return np.asarray(fn(*arrays, sample_weight=w), np.float64)


# ---------------------------------------------------------------------------------------------
# Shapes and values
# ---------------------------------------------------------------------------------------------

SPECIAL_SHAPES = [(), (0,), (1,), (1, 1), (5, 1), (1, 5), (0, 3), (3, 0), (2, 3, 2)]


def min_sizes(loss) -> Dict[str, int]:
    """The smallest valid size of each shape symbol (``Loss.min_sizes``; 0 when not declared).

    Row-wise losses need ``K >= 1`` columns; a smaller size is a bad input (ValueError).
    """
    return dict(getattr(loss, "min_sizes", None) or {})


@st.composite
def sizes_for(draw, form: Sequence[ArraySpec], max_rows: int = 6, max_cols: int = 4,
              mins: Optional[Dict[str, int]] = None):
    mins = mins or {}
    symbols = {s for spec in form for s in spec.shape}
    sizes: Dict[str, Any] = {}
    if "*" in symbols:
        sizes["*"] = draw(st.one_of(
            st.sampled_from(SPECIAL_SHAPES),
            st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple),
        ))
    for s in sorted(symbols - {"*"}):
        top = max_rows if s == "n" else max_cols
        sizes[s] = draw(st.integers(min(mins.get(s, 0), top), top))
    return sizes


def shape_of(spec: ArraySpec, sizes: Dict[str, Any]) -> tuple:
    if spec.shape == ("*",):
        return tuple(sizes["*"])
    return tuple(int(sizes[s]) for s in spec.shape)


def weight_shape(form: Sequence[ArraySpec], sizes: Dict[str, Any]) -> tuple:
    """sample_weight: the shape of the element-wise arrays, else one weight per row."""
    if any(spec.shape == ("*",) for spec in form):
        return tuple(sizes["*"])
    return (int(sizes["n"]),)


def _bound(x, sizes):
    return float(sizes[x]) if isinstance(x, str) else float(x)


def value_elements(dom: Domain, sizes: Dict[str, Any], width: int, mode: str,
                   labels: bool = False) -> st.SearchStrategy:
    """One value of a domain, representable at ``width`` bits.

    ``mode="any"``: the whole float range the domain allows (+-inf, NaN, subnormals, -0.0,
    huge); ``"moderate"``: finite, magnitudes 0 or within [1e-6, dom.finite_up_to];
    ``"smooth"``: finite, magnitudes in [0.05, 4], at least 0.01 inside any finite bound (for
    finite differences).
    """
    if labels or dom.integer:
        lo = -1 if math.isinf(dom.low) else int(math.ceil(dom.low))
        hi = (int(_bound(dom.high, sizes)) - (1 if dom.high_open else 0)
              if not (isinstance(dom.high, float) and math.isinf(dom.high)) else 2)
        if lo > hi:
            return st.nothing()
        return st.integers(lo, hi).map(float)
    lo, hi = dom.low, _bound(dom.high, sizes)
    if mode == "any":
        bounded = not (math.isinf(lo) and math.isinf(hi))
        parts = [st.floats(None if math.isinf(lo) else lo, None if math.isinf(hi) else hi,
                           allow_nan=dom.nan and not bounded,
                           allow_infinity=math.isinf(lo) or math.isinf(hi),
                           allow_subnormal=True, exclude_min=dom.low_open and not math.isinf(lo),
                           exclude_max=dom.high_open and not math.isinf(hi), width=width)]
        if dom.contains(np.array([-0.0]), sizes):
            parts.append(st.just(-0.0))
        if dom.nan:
            parts.append(st.just(math.nan))
        return st.one_of(*parts)
    if mode == "moderate":
        top = min(dom.finite_up_to, 3e38 if width == 32 else 1e308)
        mag = st.one_of(st.just(0.0), st.floats(1e-6, top))
    else:
        mag = st.floats(0.05, 4.0)
    margin = 0.01 if mode == "smooth" else 0.0

    def inside(v):
        if mode == "smooth":
            if not math.isinf(lo) and v < lo + margin:
                return False
            if not math.isinf(hi) and v > hi - margin:
                return False
        return bool(dom.contains(np.array([v]), sizes))

    return st.tuples(mag, st.booleans()).map(
        lambda t: float(np.float32(t[0]) if width == 32 else t[0]) * (-1 if t[1] else 1)
    ).filter(inside)


@st.composite
def spec_values(draw, spec: ArraySpec, sizes, dtype: np.dtype, mode: str):
    """An array of ``spec``'s shape, values in its domain, at the compute width of ``dtype``."""
    shape = shape_of(spec, sizes)
    dom = spec.domain
    width = 32 if dtype == F32 else 64
    if dom.value_sets:
        values = draw(st.sampled_from(dom.value_sets))
        elements = st.sampled_from(values).map(float)
    else:
        elements = value_elements(dom, sizes, width, mode, spec.labels)
    arr = draw(hnp.arrays(np.float64, shape, elements=elements))
    assume(dom.contains(arr, sizes))
    return arr


@dataclass
class Call:
    """A drawn call: the loss, its form, the arrays (float64 values) and options."""

    loss: Any
    form: Tuple[ArraySpec, ...]
    sizes: Dict[str, Any]
    values: List[np.ndarray]
    dtype: np.dtype
    weights: Optional[np.ndarray] = None
    layouts: List[str] = field(default_factory=list)

    @property
    def n_samples(self) -> tuple:
        return weight_shape(self.form, self.sizes)


@st.composite
def calls(draw, name: str, mode: str = "any", weights: Optional[bool] = None,
          dtypes=(F32, F64), loss=None):
    """A valid call of loss ``name``: parameters, form, sizes, values and maybe weights."""
    if loss is None:
        loss = draw(loss_instances(name, "any" if mode == "any" else "moderate"))
    form = draw(st.sampled_from(loss.input_forms()))
    sizes = draw(sizes_for(form, mins=min_sizes(loss)))
    loss = draw(with_vector_params(loss, sizes, mode))
    dtype = draw(st.sampled_from(dtypes))
    values = [draw(spec_values(spec, sizes, dtype, mode)) for spec in form]
    w = None
    if weights is None:
        weights = draw(st.booleans())
    if weights:
        wel = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1e6, width=32),
                        st.floats(0.0, 1e300 if dtype == F64 else float(np.float32(3e38)),
                                  width=64 if dtype == F64 else 32),
                        st.sampled_from([5e-324 if dtype == F64 else 1e-45, 1e-300, 2.0]))
        if mode != "any":
            wel = st.one_of(st.just(0.0), st.floats(0.0078125, 128.0, width=32))
        w = draw(hnp.arrays(np.float64, weight_shape(form, sizes), elements=wel))
        w = w.astype(dtype).astype(np.float64)
    return Call(loss, tuple(form), sizes, values, dtype, w)


# ---------------------------------------------------------------------------------------------
# Layouts: the same values in every memory layout the API accepts
# ---------------------------------------------------------------------------------------------

LAYOUTS = ["c", "f", "strided", "reversed", "readonly", "memmap", "list", "other_dtype"]


def apply_layout(values: np.ndarray, dtype: np.dtype, layout: str, tmpdir,
                 is_grad: bool, labels: bool = False):
    """``values`` as an array of ``dtype`` (or a list...) in the given layout.

    Arrays that get a gradient keep the compute dtype (it is set by them); "list" and
    "other_dtype" only apply to the others, where the conversion is exact.
    """
    if labels:
        base = values.astype(np.int64)
    else:
        with np.errstate(over="ignore"):    # numpy_values' specials: 1e300 is inf in float32
            base = values.astype(dtype)
    if layout == "f" and base.ndim >= 2:
        return np.asfortranarray(base)
    if layout == "strided" and base.ndim >= 1:
        big = np.zeros(tuple(2 * s + 1 for s in base.shape), base.dtype)
        view = big[tuple(slice(1, None, 2) for _ in base.shape)]
        view[...] = base
        return view
    if layout == "reversed" and base.ndim >= 1:
        return np.ascontiguousarray(base[::-1])[::-1]
    if layout == "readonly":
        base = base.copy()
        base.flags.writeable = False
        return base
    if layout == "memmap" and base.size > 0 and base.ndim >= 1 and tmpdir is not None:
        import tempfile
        fd, path = tempfile.mkstemp(dir=tmpdir, suffix=".mm")
        import os
        os.close(fd)
        mm = np.memmap(path, dtype=base.dtype, mode="w+", shape=base.shape)
        mm[...] = base
        mm.flush()
        del mm
        return np.memmap(path, dtype=base.dtype, mode="r", shape=base.shape)
    if not is_grad and layout == "list" and base.size > 0:     # [] would lose an empty shape
        return base.tolist()
    if not is_grad and layout == "other_dtype":
        if labels:
            return values.astype(np.float64)
        finite = np.isfinite(values)
        if finite.all() and np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53):
            return values.astype(np.int64)
        other = F64 if dtype == F32 else F32
        with np.errstate(over="ignore"):
            conv = values.astype(other)
        if np.array_equal(conv.astype(F64), values, equal_nan=True):
            return conv
    return base


# ---------------------------------------------------------------------------------------------
# Large NumPy inputs (threads, leaks, concurrency)
# ---------------------------------------------------------------------------------------------

def numpy_values(spec: ArraySpec, sizes, rng: np.random.Generator, dtype: np.dtype,
                 specials: bool = False) -> np.ndarray:
    """Random valid values of ``spec`` (a few special values sprinkled in when asked)."""
    shape = shape_of(spec, sizes)
    dom = spec.domain
    if dom.value_sets:
        vals = np.asarray(dom.value_sets[0], np.float64)
        return rng.choice(vals, size=shape)
    if spec.labels or dom.integer:
        hi = int(_bound(dom.high, sizes)) if isinstance(dom.high, str) else 4
        lo = 0 if math.isinf(dom.low) else int(dom.low)
        return rng.integers(lo, max(hi, lo + 1), size=shape).astype(np.float64)
    lo, hi = dom.low, _bound(dom.high, sizes)
    if math.isinf(lo) and math.isinf(hi):
        x = rng.normal(scale=2.0, size=shape)
    elif math.isinf(hi):
        x = lo + rng.gamma(2.0, 1.0, size=shape) + (1e-3 if dom.low_open else 0.0)
    else:
        x = rng.uniform(lo, hi, size=shape)
    x = x.astype(dtype).astype(np.float64)
    if specials and x.size:
        cands = [v for v in (math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1e300, -1e300)
                 if dom.contains(np.array([v]), sizes)]
        flat = x.reshape(-1)
        idx = rng.choice(flat.size, size=max(1, flat.size // 1000), replace=False)
        flat[idx] = rng.choice(cands, size=idx.size)
    assert dom.contains(x, sizes)
    return x


def large_sizes(form: Sequence[ArraySpec], work: int) -> Dict[str, Any]:
    """Sizes with at least ``work`` elements (or, for batch mining, n*n*d work)."""
    symbols = {s for spec in form for s in spec.shape}
    if "*" in symbols:
        return {"*": (work // 64, 64)}
    sizes = {s: 8 for s in symbols}  # >= every declared minimum
    sizes["n"] = max(8, work // 8)
    return sizes


def numpy_call(loss, form_index: int, rng, dtype=F64, work: int = 300_000,
               specials: bool = False, weighted: bool = True) -> Call:
    form = loss.input_forms()[form_index]
    sizes = large_sizes(form, work)
    if not loss.independent_samples:     # n x n work: n*n*d >= work
        sizes["n"] = int(math.ceil(math.sqrt(work / sizes.get("d", 8))))
    values = [numpy_values(spec, sizes, rng, dtype, specials) for spec in form]
    w = rng.uniform(0.0, 2.0, size=weight_shape(form, sizes)).astype(dtype).astype(
        np.float64) if weighted else None
    return Call(loss, tuple(form), sizes, values, dtype, w)


def arrays_of(call: Call, layouts: Optional[Sequence[str]] = None, tmpdir=None) -> list:
    """The positional arrays of ``call`` (C-contiguous in the compute dtype by default)."""
    out = []
    for k, (spec, v) in enumerate(zip(call.form, call.values)):
        layout = layouts[k] if layouts else "c"
        out.append(apply_layout(v, call.dtype, layout, tmpdir, spec.grad, spec.labels))
    return out


def weights_of(call: Call, layout: str = "c", tmpdir=None):
    if call.weights is None:
        return None
    return apply_layout(call.weights, call.dtype, layout, tmpdir, False)


# ---------------------------------------------------------------------------------------------
# Calling every method
# ---------------------------------------------------------------------------------------------

def as_tuple(g) -> tuple:
    """Gradients as a tuple (element-wise losses return one array, row-wise ones a tuple)."""
    return tuple(g) if isinstance(g, (tuple, list)) else (g,)


def run_all(loss, arrays: list, w, n_threads: Optional[int] = None) -> Dict[tuple, Any]:
    """Every method with every reduction the loss has; an exception is recorded as the value."""
    out: Dict[tuple, Any] = {}
    kw = dict(sample_weight=w, n_threads=n_threads)

    def rec(key, fn, *a, **k):
        try:
            out[key] = fn(*a, **k)
        except Exception as exc:  # noqa: BLE001 - recorded and judged by the caller
            out[key] = exc

    for r in loss.reductions:
        rec(("loss", r), loss.loss, *arrays, reduction=r, **kw)
        rec(("gradient", r), loss.gradient, *arrays, reduction=r, **kw)
        rec(("loss_gradient", r), loss.loss_gradient, *arrays, reduction=r, **kw)
        if loss.has_hessian:
            rec(("loss_gradient_hessian", r), loss.loss_gradient_hessian, *arrays, reduction=r,
                **kw)
    if loss.has_hessian:
        rec(("gradient_hessian",), loss.gradient_hessian, *arrays, **kw)
    return out


def flat_outputs(key, value) -> List[Tuple[str, Any]]:
    """(kind, array-or-scalar) pieces of one result: kind is "loss", "grad" or "hess"."""
    method = key[0]
    if method == "loss":
        return [("loss", value)]
    if method == "gradient":
        return [("grad", g) for g in as_tuple(value)]
    if method == "loss_gradient":
        return [("loss", value[0])] + [("grad", g) for g in as_tuple(value[1])]
    if method == "loss_gradient_hessian":
        return ([("loss", value[0])] + [("grad", g) for g in as_tuple(value[1])]
                + [("hess", h) for h in as_tuple(value[2])])
    if method == "gradient_hessian":
        return [("grad", g) for g in as_tuple(value[0])] + [("hess", h) for h in as_tuple(value[1])]
    raise AssertionError(key)


def same(a, b) -> bool:
    """Bitwise-equal values (NaN equal to NaN, -0.0 equal to 0.0) and equal dtypes."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def same_result(x, y) -> bool:
    if isinstance(x, Exception) or isinstance(y, Exception):
        return type(x) is type(y) and str(x) == str(y)
    if isinstance(x, (tuple, list)):
        return (isinstance(y, (tuple, list)) and len(x) == len(y)
                and all(same_result(a, b) for a, b in zip(x, y)))
    return same(x, y)
