"""Property-based tests over every registered loss (DESIGN.md sections 2-4).

Nothing here names a loss: every test is parametrised over ``fastloss.available()`` and draws
its inputs from the loss's own declaration (``Loss.input_forms``: shapes, value domains, which
arrays get a gradient; ``Loss.params``: parameter domains), through ``tests/_generic.py``. A loss
added later is covered by construction; one that does not describe its inputs fails
``test_every_loss_describes_its_inputs``.

Properties, for random shapes (0 and 1 elements, ``(n, 1)``, ``(1, K)``, 0-d), both dtypes,
weights or none, every reduction and method, C/F order, strided, reversed, read-only,
memory-mapped and list inputs, and values from the whole float range (+-inf, NaN, subnormals,
-0.0, huge):

* no crash, and no exception but the documented one (a ``"mean"`` without a denominator);
* outputs of the compute dtype and the documented shapes; inputs never modified;
* fused methods equal the separate ones bit for bit;
* NaN only where an input is NaN (or an undefined ``inf - inf`` form, see ``_nan_allowed``);
* finite inputs of moderate size give finite outputs;
* float32 results are the float64 results rounded to float32;
* weighted results are the unweighted ones times the weights;
* gradients and hessians match finite differences where the loss is smooth;
* bad inputs raise the documented exception (``ValueError``/``TypeError``) naming the argument;
* 1 and 2 threads give bitwise identical results (a deterministic test on large inputs).

Example counts are small and the examples derandomised (``tests/conftest.py``), so CI is
reproducible and fast; ``FASTLOSS_FUZZ_SCALE=20`` multiplies every count for a long fuzzing run.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

import fastloss
from fastloss._dispatch import simd_path

from _generic import (
    F32, F64, LAYOUTS, NAMES, Call, apply_layout, arrays_of, as_tuple, calls, flat_outputs,
    mean_denominator, numpy_call, run_all, same, same_result, shape_of, weight_shape, weights_of,
)

SCALE = int(os.environ.get("FASTLOSS_FUZZ_SCALE", "1"))


def examples(n: int) -> settings:
    return settings(max_examples=n * SCALE)


@pytest.fixture(scope="module")
def mmdir(tmp_path_factory):
    return tmp_path_factory.mktemp("memmaps")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _snapshot(x):
    if isinstance(x, np.ndarray):
        return np.array(x, copy=True)
    return copy.deepcopy(x)


def _unchanged(before, after) -> bool:
    if isinstance(before, np.ndarray):
        return (isinstance(after, np.ndarray) and before.dtype == after.dtype
                and before.tobytes() == np.ascontiguousarray(after).tobytes())
    return before == after or (before != before and after != after)


def _is_mean_error(key, exc) -> bool:
    """The one error a valid call may raise: a "mean" whose denominator is 0."""
    return (isinstance(exc, ValueError) and len(key) > 1 and key[1] == "mean"
            and "mean" in str(exc))


def _float_values(call: Call):
    """(spec, float64 values) of the arrays that are not labels."""
    return [(spec, v) for spec, v in zip(call.form, call.values) if not spec.labels]


def _nan_allowed(call: Call) -> np.ndarray:
    """Where a NaN output is legitimate, per sample (shape of sample_weight).

    Element-wise losses: where an input is NaN, or ``y_true`` and ``y_pred`` are both infinite
    (their residual ``inf - inf`` is undefined). Row-wise losses: rows with a non-finite value
    (``d(a, p) - d(a, n)`` is ``inf - inf`` as soon as one coordinate of the anchor is
    infinite). Losses over a whole batch (mining): everywhere, when any input is non-finite.
    A zero weight times an infinite loss is NaN too (IEEE); test_weights_scale_per_sample checks
    that this is the only way weights make NaN.
    """
    wshape = call.n_samples
    pieces = _float_values(call)
    if not call.loss.independent_samples:
        bad = any(not np.all(np.isfinite(v)) for _, v in pieces)
        allowed = np.full(wshape, bad)
    elif any(spec.shape == ("*",) for spec, _ in pieces):
        nan = np.zeros(wshape, bool)
        inf = np.zeros(wshape, int)
        for _, v in pieces:
            nan |= np.isnan(v)
            inf += np.isinf(v)
        allowed = nan | (inf >= 2)
    else:
        n = wshape[0]
        allowed = np.zeros(n, bool)
        for _, v in pieces:
            allowed |= ~np.all(np.isfinite(v.reshape(n, -1)), axis=1) if n else allowed
    if call.weights is not None:
        allowed = allowed | (call.weights == 0)
    return allowed


def _expand(mask: np.ndarray, shape: tuple) -> np.ndarray:
    """A per-sample mask broadcast to an output of ``shape`` (rows for (n, d) outputs)."""
    if mask.shape == shape:
        return mask
    return np.broadcast_to(mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim)), shape)


def _mean_undefined(call: Call) -> bool:
    """Whether a "mean" divides by 0 without raising: the loss's own denominator
    (``mean_sample_weights``: every row ignored or of class weight 0) is 0, which is NaN
    (PyTorch's convention; a zero ``sum(sample_weight)`` raises instead)."""
    if int(np.prod(call.n_samples)) == 0:
        return True
    return not math.fsum(mean_denominator(call, call.weights).ravel()) > 0


def _check_nan(call: Call, results: dict) -> None:
    allowed = _nan_allowed(call)
    any_allowed = bool(allowed.any()) or int(np.prod(call.n_samples)) == 0
    undefined_mean = _mean_undefined(call)
    for key, value in results.items():
        if isinstance(value, Exception):
            continue
        for kind, out in flat_outputs(key, value):
            arr = np.asarray(out)
            if arr.ndim == 0 and not (kind == "loss" and key[1] == "none"):
                ok = any_allowed or (undefined_mean and key[1] == "mean")
                assert not np.isnan(arr) or ok, (key, kind, out)
                continue
            nan = np.isnan(arr)
            if nan.any():
                ok = _expand(allowed, arr.shape)
                assert not np.any(nan & ~ok), (
                    f"{key} {kind}: NaN without a NaN input at "
                    f"{np.argwhere(nan & ~ok)[:5].tolist()}"
                )


def _grad_specs(call: Call):
    return [spec for spec in call.form if spec.grad]


def _check_shapes(call: Call, results: dict, dtype: np.dtype) -> None:
    wshape = call.n_samples
    gshapes = [shape_of(spec, call.sizes) for spec in _grad_specs(call)]
    for key, value in results.items():
        if isinstance(value, Exception):
            continue
        reduction = key[1] if len(key) > 1 else "none"
        grads = [p for k, p in flat_outputs(key, value) if k in ("grad", "hess")]
        losses = [p for k, p in flat_outputs(key, value) if k == "loss"]
        for out in losses:
            assert np.asarray(out).dtype == dtype, (key, np.asarray(out).dtype)
            if reduction == "none":
                assert isinstance(out, np.ndarray) and out.shape == wshape, (key, np.shape(out))
            else:
                assert np.ndim(out) == 0, key
        per = len(gshapes)
        for k, g in enumerate(grads):
            assert isinstance(g, np.ndarray) and g.dtype == dtype, (key, type(g))
            assert g.shape == gshapes[k % per], (key, g.shape, gshapes)
            assert g.flags.c_contiguous, key


def _check_fused(loss, results: dict) -> None:
    """loss_gradient == (loss, gradient); loss_gradient_hessian == (loss, gradient, hessian)."""
    for r in loss.reductions:
        lo, g, lg = results[("loss", r)], results[("gradient", r)], results[("loss_gradient", r)]
        if isinstance(lg, Exception):
            assert same_result(lo, lg) and same_result(g, lg), r
            continue
        assert same_result(lg[0], lo), ("loss_gradient loss", r)
        assert same_result(as_tuple(lg[1]), as_tuple(g)), ("loss_gradient gradient", r)
        if loss.has_hessian:
            lgh = results[("loss_gradient_hessian", r)]
            assert same_result(lgh[0], lo), ("loss_gradient_hessian loss", r)
            assert same_result(as_tuple(lgh[1]), as_tuple(g)), ("loss_gradient_hessian grad", r)
    if loss.has_hessian and "none" in loss.reductions:
        gh = results[("gradient_hessian",)]
        lgh = results[("loss_gradient_hessian", "none")]
        assert same_result(as_tuple(gh[0]), as_tuple(results[("gradient", "none")]))
        assert same_result(as_tuple(gh[1]), as_tuple(lgh[2])), "gradient_hessian hessian"


def _dtype_of(call: Call) -> np.dtype:
    return call.dtype


# ---------------------------------------------------------------------------------------------
# Coverage by construction
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_every_loss_describes_its_inputs(name):
    """Each registered loss declares its input forms, so every test below covers it."""
    loss = fastloss.get(name)
    forms = loss.input_forms()
    assert forms, name
    for form in forms:
        names = [spec.name for spec in form]
        assert len(set(names)) == len(names), names
        assert any(spec.grad for spec in form), f"{name}: no array gets a gradient"
        for spec in form:
            assert spec.shape == ("*",) or all(isinstance(s, str) for s in spec.shape)


# ---------------------------------------------------------------------------------------------
# Valid inputs from the whole float range
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@examples(30)
@given(data=st.data())
def test_valid_inputs_anywhere_in_the_float_range(name, data, mmdir):
    """No crash; the documented outputs; fused == separate; NaN only from NaN; inputs intact."""
    call = data.draw(calls(name, "any"), label="call")
    layouts = [data.draw(st.sampled_from(LAYOUTS), label=f"layout {s.name}") for s in call.form]
    wlayout = data.draw(st.sampled_from(["c", "strided", "readonly", "list", "f"]),
                        label="weight layout")
    n_threads = data.draw(st.sampled_from([None, 1, 2, np.int64(2), 2**40]), label="n_threads")
    note(f"{call.loss!r} sizes={call.sizes} dtype={call.dtype} values={call.values} "
         f"w={call.weights}")
    arrays = arrays_of(call, layouts, mmdir)
    w = weights_of(call, wlayout, mmdir)
    before = [_snapshot(a) for a in arrays] + [_snapshot(w)]
    results = run_all(call.loss, arrays, w, n_threads)
    for key, value in results.items():
        if isinstance(value, Exception):
            assert _is_mean_error(key, value), (key, repr(value))
    for b, a in zip(before, arrays + [w]):
        assert _unchanged(b, a), "an input was modified"
    _check_shapes(call, results, call.dtype)
    _check_fused(call.loss, results)
    _check_nan(call, results)


def _within_f32_contract(x: np.ndarray, y: np.ndarray, amp: float = 1.0) -> bool:
    """Same NaN and infinity positions; elsewhere at most 8 float32 steps apart, or closer than
    2**-20 times the largest finite magnitude of ``y``, or than ``16 * amp`` smallest
    subnormals."""
    x, y = np.asarray(x, F32).ravel(), np.asarray(y, F32).ravel()
    inf = np.isinf(x)
    if not (np.array_equal(np.isnan(x), np.isnan(y)) and np.array_equal(inf, np.isinf(y))
            and np.array_equal(x[inf], y[inf])):
        return False
    ok = np.isfinite(x)
    scale = float(np.max(np.abs(y[ok]), initial=0.0))
    diff = np.abs(x[ok].astype(np.float64) - y[ok])
    close = (diff <= 2.0 ** -20 * scale) | (diff <= 16 * amp * 2.0 ** -149)
    return _within_ulps(x[ok][~close], y[ok][~close], 8)


def _within_ulps(x: np.ndarray, y: np.ndarray, ulps: int) -> bool:
    """Same NaN positions and at most ``ulps`` float32 steps apart elsewhere (inf is one step
    beyond the largest float32)."""
    x, y = np.asarray(x, F32).ravel(), np.asarray(y, F32).ravel()
    if x.shape != y.shape or not np.array_equal(np.isnan(x), np.isnan(y)):
        return False
    ok = ~np.isnan(x)
    ix = x[ok].view(np.int32).astype(np.int64)
    iy = y[ok].view(np.int32).astype(np.int64)
    ix = np.where(ix < 0, -(ix & 0x7FFFFFFF), ix)     # monotone integer order, -0 == +0
    iy = np.where(iy < 0, -(iy & 0x7FFFFFFF), iy)
    return bool(np.all(np.abs(ix - iy) <= ulps))


@pytest.mark.parametrize("name", NAMES)
@examples(20)
@given(data=st.data())
def test_float32_is_float64_rounded(name, data):
    """Kernels compute in float64 whatever the dtype: a float32 call returns the float64 call's
    results (on the same values) rounded to float32, overflow to +-inf included. Two float32
    steps are allowed for results the Python layer rescales in float32 (RMSE's gradient).

    Losses that compute float32 in float32 arithmetic (``float32_arithmetic``) are held to the
    contract's float32 accuracy instead: 8 float32 steps, or, for differences that cancel (a
    gradient near its zero), an error below 2**-20 of the output's largest magnitude, or,
    for values below float32's normal range before weighting, 16 subnormal steps per unit of
    weight (a "sum" or "none" with weights above 1 magnifies them).

    Probabilities are clipped to ``[eps, 1 - eps]`` with the ``eps`` of the compute dtype (the
    arrays a loss names in ``clipped_inputs``): the float64 reference gets them clipped at the
    float32 ``eps``, which is what the float32 call computes with."""
    call = data.draw(calls(name, "any", dtypes=(F32,)), label="call")
    r32 = run_all(call.loss, arrays_of(call), weights_of(call))
    clipped = getattr(call.loss, "clipped_inputs", None) or ()
    eps32 = float(np.finfo(F32).eps)
    values64 = [np.clip(v, eps32, 1.0 - eps32) if spec.name in clipped else v
                for spec, v in zip(call.form, call.values)]
    call64 = Call(call.loss, call.form, call.sizes, values64, F64, call.weights)
    r64 = run_all(call.loss, arrays_of(call64), weights_of(call64))
    for key in r32:
        a, b = r32[key], r64[key]
        if isinstance(a, Exception) or isinstance(b, Exception):
            assert type(a) is type(b), (key, a, b)
            continue
        for (kind, x), (_, y) in zip(flat_outputs(key, a), flat_outputs(key, b)):
            with np.errstate(over="ignore"):
                expect = np.asarray(y).astype(F32)
            assert np.asarray(x).dtype == F32
            if getattr(call.loss, "float32_arithmetic", False):
                amp = 1.0
                if call.weights is not None and key[-1] != "mean":
                    amp = max(1.0, float(np.sum(call.weights)))
                assert _within_f32_contract(np.asarray(x), expect, amp), (key, kind, x, expect)
            else:
                assert _within_ulps(np.asarray(x), expect, 2), (key, kind, x, expect)


@pytest.mark.parametrize("name", NAMES)
@examples(20)
@given(data=st.data())
def test_finite_inputs_give_finite_outputs(name, data):
    """Finite inputs of moderate size (parameters in [1e-3, 3], values up to the declared
    ``finite_up_to``, 1e100 by default, 0 included) never give inf or NaN (float64)."""
    call = data.draw(calls(name, "moderate", dtypes=(F64,)), label="call")
    assume(int(np.prod(call.n_samples)) > 0)
    results = run_all(call.loss, arrays_of(call), weights_of(call))
    undefined_mean = _mean_undefined(call)
    for key, value in results.items():
        if isinstance(value, Exception):
            assert _is_mean_error(key, value), (key, repr(value))
            continue
        for kind, out in flat_outputs(key, value):
            if kind == "loss" and key[1] == "mean" and undefined_mean:
                assert np.isnan(out), (key, out)          # 0 / 0, documented
                continue
            assert np.all(np.isfinite(out)), (key, kind, out)


@pytest.mark.parametrize("name", NAMES)
@examples(20)
@given(data=st.data())
def test_weights_scale_per_sample(name, data):
    """``w * l`` per sample: "none" and "sum" losses and gradients with weights are the
    unweighted ones times the weights; "mean" is ``sum(w l) / sum(w)``."""
    call = data.draw(calls(name, "any", weights=True), label="call")
    loss, dtype = call.loss, call.dtype
    arrays = arrays_of(call)
    w = weights_of(call)
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).smallest_subnormal
    wd = call.weights

    def close(got, ref, unweighted):
        """got == ref to rounding; where w == 0 and the unweighted value is infinite (it may
        only have overflowed the dtype) 0 * inf is NaN, and 0 is right too."""
        got = np.asarray(got, np.float64)
        with np.errstate(over="ignore"):
            ref = np.asarray(ref, np.float64).astype(dtype).astype(np.float64)
        wx = _expand(wd, got.shape)
        # the unweighted value is rounded to the dtype's subnormal grid: w times that error
        with np.errstate(over="ignore", invalid="ignore"):
            ok = np.isclose(got, ref, rtol=4 * eps, atol=0, equal_nan=True)
            ok |= np.abs(got - ref) <= (wx + 4) * tiny
        zero_inf = (wx == 0) & np.isinf(np.asarray(unweighted, np.float64))
        ok |= zero_inf & ((got == 0) | np.isnan(got))
        # an unweighted value just past the dtype's largest finite may come back finite
        # when weighted by w < 1: w * l is representable although l is not
        unw = np.asarray(unweighted, np.float64)
        big = np.finfo(dtype).max * (1 - 4 * eps)
        with np.errstate(over="ignore", invalid="ignore"):
            past = np.isinf(unw) & (wx > 0) & (wx < 1) & (np.sign(got) == np.sign(unw))
            ok |= past & (np.abs(got) >= wx * big)
        return bool(np.all(ok)), got[~ok][:5], ref[~ok][:5]

    if "none" in loss.reductions:
        l1 = loss.loss(*arrays, reduction="none")
        lw = loss.loss(*arrays, sample_weight=w, reduction="none")
        with np.errstate(invalid="ignore", over="ignore"):
            ok, got, ref = close(lw, wd * np.asarray(l1, np.float64), l1)
        assert ok, ("none", got, ref)
        if loss.independent_samples:
            g1 = as_tuple(loss.gradient(*arrays, reduction="none"))
            gw = as_tuple(loss.gradient(*arrays, sample_weight=w, reduction="none"))
            for a, b in zip(gw, g1):
                with np.errstate(invalid="ignore", over="ignore"):
                    ok, got, ref = close(a, _expand(wd, b.shape) * np.asarray(b, np.float64), b)
                assert ok, ("gradient none", got, ref)
        if loss.independent_samples and "mean" in loss.reductions and np.sum(wd) > 0 \
                and np.all(np.isfinite(l1)):
            lm = float(loss.loss(*arrays, sample_weight=w, reduction="mean"))
            ws = np.ldexp(wd, -math.frexp(float(np.max(wd)))[1])   # exact; no subnormal w*l
            terms = ws * np.asarray(l1, np.float64)
            den = math.fsum(mean_denominator(call, ws).ravel())     # sum(w) or as declared
            ref = math.fsum(terms.ravel()) / den if den > 0 else math.nan
            bound = 8 * eps * (math.fsum(np.abs(terms).ravel()) / den) if den > 0 else 0.0
            bound += tiny
            if not den > 0:
                assert np.isnan(lm), lm
            elif np.isfinite(ref):
                assert abs(lm - ref) <= bound + 4 * eps * abs(ref), (lm, ref)


@pytest.mark.parametrize("name", NAMES)
@examples(15)
@given(data=st.data())
def test_derivatives_match_finite_differences(name, data):
    """The gradient of the summed loss, and the diagonal hessian, against central differences
    at every coordinate where the function is smooth (its one-sided differences agree)."""
    call = data.draw(calls(name, "smooth", weights=False, dtypes=(F64,)), label="call")
    loss = call.loss
    assume(0 < sum(v.size for s, v in zip(call.form, call.values) if s.grad) <= 24)
    arrays = arrays_of(call)
    red = "sum" if "sum" in loss.reductions else loss.reductions[0]

    def L(arrs):
        return float(loss.loss(*arrs, reduction=red))

    def G(arrs):
        return [np.asarray(g, np.float64) for g in as_tuple(loss.gradient(*arrs, reduction=red))]

    try:
        L0, G0 = L(arrays), G(arrays)
    except ValueError as exc:
        assume(not _is_mean_error(("loss", red), exc))
        raise
    H0 = None
    if loss.has_hessian and red == "sum":
        H0 = [np.asarray(h, np.float64) for h in as_tuple(loss.gradient_hessian(*arrays)[1])]
    grad_idx = [k for k, spec in enumerate(call.form) if spec.grad]
    checked = 0
    for gi, k in enumerate(grad_idx):
        base = arrays[k]
        for j in range(base.size):
            x = float(base.flat[j])
            h = 1e-6 * max(1.0, abs(x))

            def moved(step):
                arrs = list(arrays)
                a = base.copy()
                a.flat[j] = x + step
                arrs[k] = a
                return arrs

            up, down = moved(h), moved(-h)
            Lp, Lm = L(up), L(down)
            fwd, bwd, cen = (Lp - L0) / h, (L0 - Lm) / h, (Lp - Lm) / (2 * h)
            noise = 4e-16 * (abs(L0) + abs(Lp) + abs(Lm)) / h
            if abs(fwd - bwd) > 1e-3 * (1 + abs(cen)) + 4 * noise:
                continue                              # a kink within h: not smooth here
            g = G0[gi].flat[j]
            assert abs(g - cen) <= 1e-5 * (1 + abs(cen)) + 2 * noise, (
                f"{loss!r} d/d{call.form[k].name}[{j}]: gradient {g} vs finite difference {cen}")
            checked += 1
            if H0 is None:
                continue
            gp, gm = G(up)[gi].flat[j], G(down)[gi].flat[j]
            gfwd, gbwd, gcen = (gp - g) / h, (g - gm) / h, (gp - gm) / (2 * h)
            gnoise = 4e-16 * (abs(g) + abs(gp) + abs(gm)) / h
            if abs(gfwd - gbwd) > 1e-3 * (1 + abs(gcen)) + 4 * gnoise:
                continue
            hh = H0[gi].flat[j]
            assert abs(hh - gcen) <= 1e-5 * (1 + abs(gcen)) + 2 * gnoise, (
                f"{loss!r} d2/d{call.form[k].name}[{j}]^2: hessian {hh} vs {gcen}")
    note(f"checked {checked} coordinates")


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------

BAD_KINDS = ["dtype", "none", "shape", "ndim", "domain", "weight_negative", "weight_shape",
             "weight_dtype", "reduction", "n_threads_value", "n_threads_type", "out",
             "loss_out_reduction", "nargs", "hessian"]


def _out_of_domain(spec, call: Call, data):
    """An array of ``spec`` with one value outside its domain, or None if none can be made."""
    values = call.values[call.form.index(spec)]
    if values.size == 0:
        return None
    dom = spec.domain
    cands = [-1.0, -5e-324, -1e-30, -0.0, 0.0, 0.5, 2.0, -3.0, 1e300, -1e300, math.inf,
             -math.inf, math.nan]
    if not isinstance(dom.high, str) and math.isfinite(dom.high):
        cands += [dom.high + 1.0, float(np.nextafter(dom.high, math.inf, dtype=call.dtype))]
    if isinstance(dom.high, str):
        cands += [float(call.sizes[dom.high]), float(call.sizes[dom.high]) + 0.5]
    if math.isfinite(dom.low):
        cands += [dom.low - 1.0, float(np.nextafter(dom.low, -math.inf, dtype=call.dtype))]
    pos = data.draw(st.integers(0, values.size - 1), label="position")
    options = []
    for c in cands:
        v = values.astype(call.dtype).astype(np.float64)
        with np.errstate(over="ignore"):          # 1e300 is inf in float32: still outside
            v.flat[pos] = float(call.dtype.type(c)) if np.isfinite(c) else c
        if not dom.contains(v, call.sizes):
            options.append(v)
    if not options:
        return None
    return data.draw(st.sampled_from(options), label="bad values").astype(
        np.float64 if spec.labels else call.dtype)


@pytest.mark.parametrize("name", NAMES)
@examples(40)
@given(data=st.data())
def test_bad_inputs_raise_the_documented_exception(name, data):
    """Every kind of bad input raises ValueError or TypeError (NotImplementedError for a missing
    hessian) naming the culprit, leaves the inputs as they were, and the next call works."""
    call = data.draw(calls(name, "moderate"), label="call")
    if call.weights is not None and not np.sum(call.weights) > 0:
        call.weights = None          # one bad thing at a time
    loss = call.loss
    kind = data.draw(st.sampled_from(BAD_KINDS), label="kind")
    arrays = arrays_of(call)
    w = weights_of(call)
    before = [_snapshot(a) for a in arrays] + [_snapshot(w)]
    args, kw = list(arrays), dict(sample_weight=w)
    method = loss.loss
    k = data.draw(st.integers(0, len(call.form) - 1), label="which array")
    spec = call.form[k]
    nsamples = int(np.prod(call.n_samples))
    expect, mention = ValueError, spec.name
    if kind == "dtype":
        bad = data.draw(st.sampled_from(["complex", "object", "str"]))
        v = np.asarray(arrays[k])
        args[k] = {"complex": v.astype(complex), "object": v.astype(object),
                   "str": v.astype(str)}[bad]
        if bad == "object" and v.size:
            args[k].flat[0] = None
        expect = TypeError
    elif kind == "none":
        args[k] = None
        expect = TypeError
    elif kind == "shape":
        v = np.asarray(arrays[k])
        assume(v.ndim >= 1 and v.shape[0] > 0)
        args[k] = v[:-1]
        mention = [s.name for s in call.form]
    elif kind == "ndim":
        v = np.asarray(arrays[k])
        assume(spec.shape != ("*",))
        args[k] = v[..., None] if data.draw(st.booleans()) else v.reshape(-1)[:, None, None]
    elif kind == "domain":
        bad = _out_of_domain(spec, call, data)
        assume(bad is not None)
        args[k] = bad
    elif kind.startswith("weight"):
        assume(nsamples > 0)
        mention = "sample_weight"
        wv = np.ones(call.n_samples, call.dtype)
        if kind == "weight_negative":
            wv.flat[data.draw(st.integers(0, nsamples - 1))] = data.draw(
                st.sampled_from([-1.0, -5e-324 if call.dtype == F64 else -1e-45, -np.inf]))
        elif kind == "weight_shape":
            wv = np.ones(nsamples + 1, call.dtype)
        else:
            wv = wv.astype(complex)
            expect = TypeError
        kw["sample_weight"] = wv
    elif kind == "reduction":
        kw["reduction"] = data.draw(st.sampled_from(
            ["avg", "MEAN", None, 1] + [r for r in ("mean", "sum", "none")
                                        if r not in loss.reductions]))
        mention = "reduction"
    elif kind == "n_threads_value":
        kw["n_threads"] = data.draw(st.sampled_from([0, -1, -(2**40), np.int64(0)]))
        mention = "n_threads"
    elif kind == "n_threads_type":
        kw["n_threads"] = data.draw(st.sampled_from([1.5, "2", True, [2]]))
        expect, mention = TypeError, "n_threads"
    elif kind == "out":
        which = data.draw(st.sampled_from(["gradient", "loss"] + (
            ["hessian"] if loss.has_hessian else [])))
        assume(which != "loss" or "none" in loss.reductions)
        red0 = "sum" if "sum" in loss.reductions else loss.reductions[0]
        good = loss.gradient_hessian(*arrays) if which == "hessian" else (
            loss.loss(*arrays, reduction="none") if which == "loss" else
            loss.gradient(*arrays, reduction=red0))
        if which == "hessian":
            good = good[1]
        outs = [np.asarray(o) for o in as_tuple(good)]
        j = data.draw(st.integers(0, len(outs) - 1))
        o = outs[j]
        how = data.draw(st.sampled_from(["shape", "dtype", "strided", "readonly", "list"]))
        if how == "shape":
            o = np.empty(o.shape + (2,), o.dtype)
        elif how == "dtype":
            o = np.empty(o.shape, F32 if o.dtype == F64 else F64)
        elif how == "strided":
            assume(o.ndim >= 1 and o.shape[-1] > 1 and o.size > 0)
            o = np.empty(o.shape[:-1] + (2 * o.shape[-1],), o.dtype)[..., ::2]
        elif how == "readonly":
            o = np.empty(o.shape, o.dtype)
            o.flags.writeable = False
        else:
            o = o.tolist()
        outs[j] = o
        packed = outs[0] if isinstance(good, np.ndarray) else tuple(outs)
        if which == "gradient":
            method, kw["out"], kw["reduction"] = loss.gradient, packed, red0
            mention = "gradient_out"
        elif which == "loss":
            kw["reduction"], kw["loss_out"] = "none", packed
            mention = "loss_out"
        else:
            method, kw["hessian_out"] = loss.gradient_hessian, packed
            mention = "hessian_out"
    elif kind == "loss_out_reduction":
        red = [r for r in loss.reductions if r != "none"]
        assume(red)
        kw["reduction"] = red[0]
        kw["loss_out"] = np.empty(call.n_samples, call.dtype)
        mention = "loss_out"
    elif kind == "nargs":
        args = args[:-1]
        expect, mention = TypeError, None
        if any(len(f) == len(args) for f in loss.input_forms()):
            expect = (TypeError, ValueError)       # read as another form, whose checks fail
    elif kind == "hessian":
        assume(not loss.has_hessian)
        method = loss.gradient_hessian
        expect, mention = NotImplementedError, "hessian"
    with pytest.raises(Exception) as info:
        method(*args, **kw)
    exc = info.value
    assert isinstance(exc, expect), f"{kind}: expected {expect}, got {exc!r}"
    if mention is not None:
        names = [mention] if isinstance(mention, str) else mention
        assert any(nm in str(exc) for nm in names) or _is_mean_error(
            ("loss", kw.get("reduction", "mean")), exc), f"{kind}: {exc} does not name {names}"
    for b, a in zip(before, arrays + [w]):
        assert _unchanged(b, a), "an input was modified"
    # the loss object and the process are still fine
    try:
        loss.loss(*arrays, sample_weight=w, reduction=loss.reductions[-1])
    except ValueError as exc2:
        assert _is_mean_error(("loss", loss.reductions[-1]), exc2)


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------

def _forms():
    return [(name, k) for name in NAMES for k in range(len(fastloss.get(name).input_forms()))]


@pytest.mark.parametrize("name,form", _forms())
@pytest.mark.parametrize("specials", [False, True], ids=["clean", "specials"])
def test_one_and_two_threads_are_identical(name, form, specials):
    """Inputs large enough for two threads: every output bitwise equal to the 1-thread one."""
    loss = fastloss.get(name)
    rng = np.random.default_rng(2024 + form)
    for dtype in (F32, F64):
        call = numpy_call(loss, form, rng, dtype, work=140_000, specials=specials,
                          weighted=not specials)
        arrays, w = arrays_of(call), weights_of(call)
        one = run_all(loss, arrays, w, n_threads=1)
        two = run_all(loss, arrays, w, n_threads=2)
        for key in one:
            assert same_result(one[key], two[key]), (key, dtype)


# ---------------------------------------------------------------------------------------------
# Bugs these properties found: one regression test each, with the numbers worked out by hand
# ---------------------------------------------------------------------------------------------

def test_regression_infinite_sum_is_not_nan():
    """_blocks.combine: an infinite block partial made the Neumaier compensation inf - inf, so
    every "sum"/"mean" whose true value is +inf came out NaN (Poisson at mu = e^710, or any
    loss that overflows)."""
    assert fastloss.MSE().loss([0.0, 0.0], [1e200, 1.0], reduction="sum") == np.inf
    assert fastloss.Poisson().loss(np.zeros(3), np.full(3, 710.0)) == np.inf
    assert fastloss.MSE().loss(np.zeros(2, np.float32), np.array([1e30, 1.0], np.float32)) \
        == np.inf
    assert fastloss._core.combine_partials(np.array([1.0, np.inf, 2.0])) == np.inf
    assert fastloss._core.combine_partials(np.array([-np.inf, 1.0])) == -np.inf
    assert np.isnan(fastloss._core.combine_partials(np.array([np.inf, -np.inf])))
    assert fastloss._core.combine_partials(np.array([1e308, 1e308])) == np.inf
    total, negative = fastloss._core.weight_sum(np.array([1.0, np.inf]), 1)
    assert total == np.inf and not negative
    # finite sums keep their compensation
    assert fastloss._core.combine_partials(np.array([1.0, 1e100, 1.0, -1e100])) == 2.0


def test_regression_log_link_limits_at_infinity():
    """_math.expm1mx(+inf) was inf - inf: Poisson with y > 0 at y_pred = +inf and Gamma at
    y_pred = -inf or y_true = +inf gave NaN for a deviance whose limit is +inf."""
    assert fastloss.Poisson().loss([1.0, 2.0], [np.inf, np.inf], reduction="none").tolist() \
        == [np.inf, np.inf]
    g, h = fastloss.Poisson().gradient_hessian([1.0], [np.inf])
    assert g[0] == np.inf and h[0] == np.inf
    assert fastloss.Gamma().loss([1.0], [-np.inf]) == np.inf
    assert fastloss.Gamma().loss([np.inf], [0.0]) == np.inf
    g, h = fastloss.Gamma().gradient_hessian([1.0], [np.inf])     # r = -inf: l' = 2, l'' = 0
    assert g[0] == 2.0 and h[0] == 0.0


def test_regression_tweedie_infinite_target():
    """Tweedie deviance at y_true = +inf was inf - inf = NaN for 1 < power < 2 and power < 0;
    its limit is +inf for every finite mu."""
    for power in (-1.0, -0.5, 1.5, 1.2, 3.0):
        assert fastloss.Tweedie(power=power).loss([np.inf], [0.3]) == np.inf, power


def test_regression_pseudo_huber_extreme_delta():
    """delta^2 overflowed for delta > 1.3e154 (inf * 0 = NaN at e = 0), and e / delta for a
    tiny delta (inf for a loss of about delta |e|)."""
    big = fastloss.PseudoHuber(delta=1.34e154)
    assert big.loss([0.0], [0.0]) == 0.0
    assert big.loss([0.0], [2.0]) == pytest.approx(2.0, rel=1e-15)          # ~ e^2 / 2
    g, h = big.gradient_hessian([0.0], [2.0])
    assert g[0] == pytest.approx(2.0, rel=1e-15) and h[0] == pytest.approx(1.0, rel=1e-15)
    tiny = fastloss.PseudoHuber(delta=1e-300)
    # delta^2 (sqrt(1 + (e/delta)^2) - 1) = delta (sqrt(e^2 + delta^2) - delta) ~ delta |e|
    assert tiny.loss([0.0], [1e10]) == pytest.approx(1e-290, rel=1e-15)
    g, h = tiny.gradient_hessian([0.0], [1e10])
    assert g[0] == pytest.approx(1e-300, rel=1e-15) and h[0] == 0.0


def test_regression_contrastive_huge_margin():
    """0.5 * h * h overflowed before the halving: margin 1.8e154 at distance 0 gives 1.62e308."""
    value = fastloss.Contrastive(margin=1.8e154).loss([0.0], [1])
    assert np.isfinite(value) and value == pytest.approx(0.5 * 1.8e154 * 1.8e154 / 1.0, rel=1e-15)


@pytest.mark.parametrize("name", ["contrastive", "triplet", "batch_hard_triplet",
                                  "batch_all_triplet"])
def test_regression_empty_batch_per_sample(name):
    """Row-wise kernels raised ValueError("nothing to compute") for 0 rows with
    reduction="none": the empty loss_out was taken for "no loss_out"."""
    loss = fastloss.get(name)
    form = loss.input_forms()[0]
    arrays = [np.zeros((0, 3)) if spec.shape == ("n", "d") else np.zeros(0) for spec in form]
    out = loss.loss(*arrays, reduction="none")
    assert out.shape == (0,)
    value, grads = loss.loss_gradient(*arrays, reduction="none")
    assert value.shape == (0,) and all(g.shape == (0, 3) for g in grads)


def test_regression_tiny_and_huge_weights_in_a_mean():
    """A mean with weights summing to a subnormal had 1/sum(w) = inf (gradient inf, hessian
    NaN, the loss rounded to 4 digits); weights summing past 1e308 had sum(w) = inf (the mean
    NaN, the gradient 0). The weights are now rescaled by a power of two for a mean."""
    gamma = fastloss.Gamma()
    value, g, h = gamma.loss_gradient_hessian([5e-324], [1.0], sample_weight=[5e-324])
    v1, g1, h1 = gamma.loss_gradient_hessian([5e-324], [1.0])
    assert value == v1 and g[0] == g1[0] == 2.0 and h[0] == h1[0]
    y, p = np.array([0.0, 1.0, 3.0]), np.array([0.5, 0.5, 0.5])
    for w in ([1e300, 1e300, 1e300], [5e-324, 5e-324, 5e-324], [1e308, 1e308, 1e308]):
        value, grad = fastloss.MSE().loss_gradient(y, p, sample_weight=w)
        ref_v, ref_g = fastloss.MSE().loss_gradient(y, p)
        assert value == pytest.approx(ref_v, rel=1e-15), w
        np.testing.assert_allclose(grad, ref_g, rtol=1e-15)
    w = np.array([1e300, 1e300])
    fastloss.MSE().loss([0.0, 1.0], [0.0, 0.0], sample_weight=w)
    assert w.tolist() == [1e300, 1e300]                    # the caller's weights are untouched
    assert fastloss.MSE().loss([0.0, 1.0], [0.0, 0.0], sample_weight=w, reduction="sum") \
        == 1e300                                           # "sum" is w * l itself


def test_regression_rmse_float32_root_of_the_float64_mean():
    """RMSE took the root of the mean rounded to float32: a mean just past the float32 range
    (an RMSE of 1.8e19) gave inf."""
    value = fastloss.RMSE().loss(np.zeros(1, np.float32), np.array([1.8446744e19], np.float32))
    assert value.dtype == np.float32 and value == np.float32(1.8446744e19)


def test_regression_huge_thread_counts():
    """n_threads >= 2^31 raised OverflowError (the kernels take a C int): now "as many as
    useful", like any count above the number of blocks."""
    assert fastloss.MSE().loss([1.0], [2.0], n_threads=2**40) == 1.0
    fastloss.set_num_threads(2**40)
    try:
        assert fastloss.MSE().loss([1.0], [2.0]) == 1.0
    finally:
        fastloss.set_num_threads(None)


# ---------------------------------------------------------------------------------------------
# The portable kernels too
# ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(simd_path() == "baseline", reason="the baseline kernels are the ones in use")
def test_properties_on_the_baseline_kernels():
    """The same properties on the portable build of every kernel (FASTLOSS_SIMD=baseline);
    the bad-input checks, which run before any kernel, are not repeated."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, FASTLOSS_SIMD="baseline")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         str(Path(__file__)), "-k", "not baseline_kernels and not bad_inputs and not describes"],
        cwd=root, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


_BASELINE_DOMAIN_SCRIPT = """
import numpy as np, fastloss
from fastloss._dispatch import simd_path
assert simd_path() == 'baseline', simd_path()
rng = np.random.default_rng(0)
cases = [
    (fastloss.BinaryCrossEntropy(from_logits=True), 'u', 1.5),
    (fastloss.BinaryCrossEntropy(), 'u', -0.5),
    (fastloss.Focal(from_logits=True, gamma=1.5), 'u', 2.0),
    (fastloss.Poisson(), 'g', -1.0),
    (fastloss.Gamma(), 'g', 0.0),
    (fastloss.Tweedie(power=3.0), 'g', 0.0),
    (fastloss.Tweedie(power=1.5), 'g', -2.0),
]
for loss, kind, bad in cases:
    for dt in (np.float64, np.float32):
        y = (rng.uniform(0.05, 0.95, 20000) if kind == 'u' else rng.gamma(2.0, 1.0, 20000) + 0.1)
        y = y.astype(dt)
        p = rng.uniform(0.05, 0.95, 20000).astype(dt)
        loss.loss_gradient_hessian(y, p)                 # valid: no error
        for where in (0, 5000, 19999):                   # first chunk, a later one, the tail
            yb = y.copy()
            yb[where] = bad
            try:
                loss.loss_gradient_hessian(yb, p)
            except ValueError as exc:
                assert 'y_true' in str(exc), (repr(loss), str(exc))
            else:
                raise AssertionError(f'{loss!r} {np.dtype(dt).name}: y_true={bad} at {where} not flagged')
print('ok')
"""


@pytest.mark.skipif(simd_path() == "baseline", reason="the baseline kernels are the ones in use")
def test_domain_flags_on_the_baseline_kernels():
    """The portable kernels find a y_true outside the domain in any chunk: without AVX2 their
    float64 loops track only whether some element raised a flag, and find the bits in a second
    pass (_elementwise.tpi), which this exercises."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", _BASELINE_DOMAIN_SCRIPT], cwd=root,
                          env=dict(os.environ, FASTLOSS_SIMD="baseline"), capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_every_loss_is_covered():
    """Every registered loss describes its inputs (``input_forms``), so the generic properties
    cover it; a loss added without a description fails here, named."""
    from _generic import NOT_DESCRIBED
    assert not NOT_DESCRIBED, f"not described (input_forms), so not fuzzed: {NOT_DESCRIBED}"
    assert sorted(NAMES) == sorted(fastloss.available())
