"""The softmax kernels' tile path (rows side by side in SIMD lanes, K <= 64) and its edges.

References written here, independently of the kernels: mpmath at 40 digits for the row loss,
its gradient ``S softmax(z) - u`` and hessian diagonal ``S q (1 - q)`` (with ``u = c t'``,
``S = sum u``), and SciPy's ``log_softmax`` for the smoothed/weighted forms. Both sides of
the tile/row cut-off (K = 64 / 65) are covered, with row counts that leave partial tiles,
and C / F / strided layouts, thread counts and extreme logits.
"""

import mpmath
import numpy as np
import pytest
from scipy.special import log_softmax

import fastloss

CE = fastloss.CategoricalCrossEntropy
KL = fastloss.KLDivergence
KS = [1, 2, 3, 5, 10, 17, 64, 65, 130]


def mp_row(z, u, dps=40):
    """(loss, gradient, hessian) of one row at ``dps`` digits: u = c t' (weighted targets)."""
    with mpmath.workdps(dps):
        zs = [mpmath.mpf(float(v)) for v in z]
        us = [mpmath.mpf(float(v)) for v in u]
        m = max(zs)
        s = mpmath.fsum(mpmath.exp(v - m) for v in zs)
        lse = m + mpmath.log(s)
        q = [mpmath.exp(v - lse) for v in zs]
        S = mpmath.fsum(us)
        loss = mpmath.fsum(uk * (lse - v) for uk, v in zip(us, zs) if uk != 0)
        grad = [S * qk - uk for qk, uk in zip(q, us)]
        hess = [S * qk * (1 - qk) for qk in q]
        return float(loss), np.array([float(g) for g in grad]), np.array([float(h) for h in hess])


def mp_reference(u, z, dps=40):
    out = [mp_row(zr, ur, dps) for zr, ur in zip(z, u)]
    return (np.array([o[0] for o in out]), np.array([o[1] for o in out]),
            np.array([o[2] for o in out]))


def rel_close(a, b, rtol, scale):
    """|a - b| <= rtol * (|b| + scale), elementwise (scale: the row's magnitude, for terms that
    cancel to near 0 such as a gradient S q_k - u_k)."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    assert np.all(np.abs(a - b) <= rtol * (np.abs(b) + scale)), np.max(np.abs(a - b))


def per_row(loss, y, z, **kw):
    return loss.loss_gradient_hessian(y, z, reduction="none", **kw)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 2e-6)])
@pytest.mark.parametrize("k", KS)
def test_labels_against_mpmath(k, dtype, rtol):
    rng = np.random.default_rng(k)
    n = 53                                   # not a multiple of any tile size
    z64 = rng.standard_normal((n, k)) * 4.0
    z64[0] = 0.0                             # ties for the maximum
    z64[1, : min(k, 3)] = 50.0
    z64[2] = -30.0 * np.arange(k)            # a confident row: tiny loss, 1 - p_a tiny
    z = z64.astype(dtype)
    y = rng.integers(0, k, n)
    y[2] = 0
    cw = rng.uniform(0.5, 2.0, k)
    loss = CE(from_logits=True, class_weight=cw)
    l, g, h = per_row(loss, y, z)
    u = np.zeros((n, k))
    u[np.arange(n), y] = cw[y]
    rl, rg, rh = mp_reference(u, z.astype(np.float64))
    rel_close(l, rl, rtol, 0.0)
    scale = u.sum(axis=1, keepdims=True) * (np.finfo(dtype).tiny / np.finfo(dtype).eps)
    rel_close(g, rg, rtol, scale)
    rel_close(h, rh, rtol, scale)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 2e-6)])
@pytest.mark.parametrize("k", [2, 10, 64, 65])
def test_smoothing_and_rows_against_mpmath(k, dtype, rtol):
    rng = np.random.default_rng(100 + k)
    n = 21
    z = (rng.standard_normal((n, k)) * 3.0).astype(dtype)
    y = rng.integers(0, k, n)
    cw = rng.uniform(0.5, 2.0, k)
    s = 0.1
    loss = CE(from_logits=True, class_weight=cw, label_smoothing=s)
    t = np.zeros((n, k))
    t[np.arange(n), y] = 1.0
    p = rng.dirichlet(np.ones(k), n)
    # integer labels (one-hot t) and target rows (probabilities p): the same loss, u = c t'
    for target, rows in ((y, t), (p, p)):
        l, g, h = per_row(loss, target, z)
        u = cw * ((1 - s) * rows + s / k)
        rl, rg, rh = mp_reference(u, z.astype(np.float64))
        sc = u.sum(axis=1, keepdims=True)
        rel_close(l, rl, rtol, 0.0)
        if dtype == np.float32:
            # float32 arithmetic: a gradient S q_k - u_k that cancels is held to a few float32
            # ulp of its terms (the contract), not of its float64 value
            check_f32(g, rg, np.maximum(rg + u, u), rtol=rtol)
        else:
            rel_close(g, rg, rtol, sc * 1e-3)
        rel_close(h, rh, rtol, 0.0)


@pytest.mark.parametrize("k", [3, 10, 64, 65])
def test_kl_from_logits_against_scipy(k):
    rng = np.random.default_rng(7 + k)
    n = 37
    z = rng.standard_normal((n, k)) * 3.0
    t = rng.dirichlet(np.ones(k), n)
    t[0, 0] = 0.0
    t[0] /= t[0].sum()
    loss = KL(from_logits=True)
    l = loss.loss(t, z, reduction="none")
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = np.sum(np.where(t > 0, t * (np.log(np.where(t > 0, t, 1)) - log_softmax(z, axis=1)),
                              0.0), axis=1)
    np.testing.assert_allclose(l, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 2, 10, 64, 65])
def test_layouts_give_identical_bits(k, dtype):
    rng = np.random.default_rng(k)
    n = 203
    zc = (rng.standard_normal((n, k)) * 5).astype(dtype)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n).astype(dtype)
    zf = np.asfortranarray(zc)
    big = np.zeros((2 * n, 3 * k), dtype)
    big[::2, ::3] = zc
    zs = big[::2, ::3]                       # both strides non-unit
    zr = zc[::-1][::-1]                      # reversed twice: a view, negative-stride free
    for loss in (CE(from_logits=True), CE(from_logits=True, label_smoothing=0.2)):
        for target in (y, p, np.asfortranarray(p)):
            ref = per_row(loss, target, zc)
            for zz in (zf, zs, zr):
                out = per_row(loss, target, zz)
                for a, b in zip(out, ref):
                    assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [2, 10, 65])
def test_thread_count_gives_identical_bits(k, dtype):
    rng = np.random.default_rng(3)
    n = 300_000 // k + 17
    z = (rng.standard_normal((n, k)) * 3).astype(dtype)
    y = rng.integers(0, k, n)
    w = rng.uniform(0, 2, n).astype(dtype)
    loss = CE(from_logits=True, ignore_index=1)
    ref = loss.loss_gradient_hessian(y, z, sample_weight=w, n_threads=1)
    out = loss.loss_gradient_hessian(y, z, sample_weight=w, n_threads=2)
    assert out[0] == ref[0] or (np.isnan(out[0]) and np.isnan(ref[0]))
    assert np.array_equal(out[1], ref[1]) and np.array_equal(out[2], ref[2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [2, 10, 65])
def test_extreme_logits(k, dtype):
    z = np.zeros((4, k), dtype)
    z[0, 0] = 1e4                   # certain and right
    z[1, 1 % k] = 1e4               # certain and wrong (for k > 1)
    z[2, :] = -1e4                  # all equal
    z[3, 0] = -1e4                  # one class impossible
    y = np.array([0, 0, 0, 0])
    l, g, h = per_row(CE(from_logits=True), y, z)
    assert np.all(np.isfinite(l)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    assert l[0] == 0 and np.all(g[0] == 0) and np.all(h[0] == 0)
    assert l[1] == pytest.approx(1e4, rel=1e-6)
    assert g[1, 0] == -1 and g[1, 1] == 1 and np.all(h[1] == 0)
    np.testing.assert_allclose(l[2], np.log(k), rtol=1e-6)
    np.testing.assert_allclose(h[2], (1 / k) * (1 - 1 / k), rtol=1e-6)
    assert l[3] == pytest.approx(1e4 + np.log(k - 1), rel=1e-6)
    assert g[3, 0] == -1


def test_tiny_losses_keep_relative_precision():
    # a confident right row: loss = log1p(sum e^-d) ~ (K - 1) e^-d, down to subnormals
    for d in (30.0, 300.0, 700.0, 740.0):
        z = np.array([[0.0] + [-d] * 9])
        l, g, h = per_row(CE(from_logits=True), np.array([0]), z)
        ref = mp_row(z[0], [1.0] + [0.0] * 9, dps=400)   # 1 + 1e-321 exactly
        sub = 20 * 5e-324             # the e^-d are subnormal below d = 708: a few ulps of them
        assert l[0] == pytest.approx(ref[0], rel=1e-12, abs=sub)
        np.testing.assert_allclose(g[0], ref[1], rtol=1e-12, atol=sub)


def test_nan_stays_in_its_row_and_ignored_rows_are_zero():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((70, 10))
    z[5, 3] = np.nan
    z[6, 0] = np.nan
    y = rng.integers(0, 10, 70)
    y[9] = -100
    z[9, 2] = np.nan                # an ignored row's NaN counts nowhere
    l, g, h = per_row(CE(from_logits=True, ignore_index=-100), y, z)
    bad = {5, 6}
    for i in range(70):
        if i in bad:
            assert np.isnan(l[i]) and np.all(np.isnan(g[i])) and np.all(np.isnan(h[i]))
        else:
            assert np.isfinite(l[i]) and np.all(np.isfinite(g[i]))
    assert l[9] == 0 and np.all(g[9] == 0) and np.all(h[9] == 0)


def test_bad_label_raises_in_the_tile_path():
    z = np.zeros((100, 10))
    y = np.zeros(100, int)
    y[77] = 10
    with pytest.raises(ValueError, match="class labels must be in"):
        CE(from_logits=True).loss(y, z)


# ---------------------------------------------------------------------------------------------
# Float32 arithmetic: float32 rows of up to 64 classes compute their tiles in float32
# ---------------------------------------------------------------------------------------------

TINY32 = float(np.finfo(np.float32).smallest_subnormal)
# 40 significant digits after the cancellation lse - z_k of a confident row (its loss is
# log(1 + e^-100) ~ 4e-44): 100 digits in all
DPS = 100


def ulp32(x):
    """The float32 spacing at |x| (the smallest subnormal at 0)."""
    return np.spacing(np.abs(np.asarray(x, np.float32))).astype(np.float64)


def mp_kl_entropy(t):
    """sum_k t_k log t_k per row (0 log 0 = 0) at 40 digits."""
    with mpmath.workdps(40):
        return np.array([float(mpmath.fsum(mpmath.mpf(float(v)) * mpmath.log(mpmath.mpf(float(v)))
                                           for v in row if v > 0)) for row in t])


def hard_rows_f32(k, rng):
    """float32 logits with the cases where float32 arithmetic could lose accuracy: logit spreads
    of 100 and 1e4 (z - max down to -1e4), differences z_k - max that float32 rounds (no
    Sterbenz: 40.123456 and 0.0012345), near-ties, and ordinary rows."""
    rows = [
        np.linspace(0.0, -100.0, k),                       # spread 100
        np.linspace(5e3, -5e3, k),                         # spread 1e4
        np.resize([40.123456, 0.0012345, -3.3333, 17.77], k),
        np.resize([40.123456, 40.1234, 39.99, -47.5], k),   # near-ties
        np.resize([-0.0012345, -88.123, -60.7, -1e-4], k),   # e^d down to e^-88 (subnormal)
        rng.standard_normal(k) * 10.0,
        rng.standard_normal(k) * 30.0 + 1e3,
    ]
    return np.array(rows).astype(np.float32)


def check_f32(got, ref, terms, rtol=1e-6, ulps=8, floor=4 * TINY32):
    """|got - ref| <= max(rtol |ref|, ulps float32 ulp of the terms) + floor (subnormals)."""
    got = np.asarray(got, np.float64)
    tol = np.maximum(rtol * np.abs(ref), ulps * ulp32(terms)) + floor
    err = np.abs(got - ref)
    assert np.all(err <= tol), (np.max(err / tol), np.unravel_index(np.argmax(err / tol),
                                                                    err.shape))


@pytest.mark.parametrize("k", [2, 3, 10, 17, 64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_float32_cross_entropy_against_mpmath(k, smoothing):
    rng = np.random.default_rng(1000 + k)
    z = hard_rows_f32(k, rng)
    z = np.concatenate([z] * 3)              # 21 rows: partial tiles
    n = z.shape[0]
    y = rng.integers(0, k, n)
    y[:7] = 0                                # the largest class for most hard rows
    cw = rng.uniform(0.5, 2.0, k)
    loss = CE(from_logits=True, class_weight=cw, label_smoothing=smoothing)
    assert loss.float32_arithmetic
    p = rng.dirichlet(np.ones(k) * 0.5, n).astype(np.float32)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    for target, rows in ((y, onehot), (p, p.astype(np.float64))):
        l, g, h = per_row(loss, target, z)
        assert l.dtype == g.dtype == h.dtype == np.float32
        u = cw * ((1 - smoothing) * rows + smoothing / k)
        rl, rg, rh = mp_reference(u, z.astype(np.float64), DPS)
        S = u.sum(axis=1, keepdims=True)
        q = (rg + u) / S                      # the softmax, from the reference gradient
        check_f32(l, rl, 0.0)
        check_f32(g, rg, np.maximum(S * q, u))
        check_f32(h, rh, 0.0)


@pytest.mark.parametrize("k", [2, 10, 64])
@pytest.mark.parametrize("log_target", [False, True])
def test_float32_kl_from_logits_against_mpmath(k, log_target):
    rng = np.random.default_rng(2000 + k)
    z = np.concatenate([hard_rows_f32(k, rng)] * 2)
    n = z.shape[0]
    t = rng.dirichlet(np.ones(k) * 0.5, n).astype(np.float32)
    t[0, :] = 0.0
    t[0, 0] = 1.0                            # a one-hot row: 0 log 0 = 0 elsewhere
    t[1, 0] = 0.0
    t[1] /= t[1].sum()
    loss = fastloss.KLDivergence(from_logits=True, log_target=log_target)
    assert loss.float32_arithmetic
    with np.errstate(divide="ignore"):
        target = np.log(t) if log_target else t
    target = target.astype(np.float32)
    t64 = np.exp(target.astype(np.float64)) if log_target else t.astype(np.float64)
    l, g, h = per_row(loss, target, z)
    rl, rg, rh = mp_reference(t64, z.astype(np.float64), DPS)
    ent = mp_kl_entropy(t64)
    # the loss sum u (lse - z) + sum t log t: terms of opposite signs; float32 is held to
    # 1e-6 of the larger one
    check_f32(l, rl + ent, 0.0, floor=1e-6 * np.abs(rl) + 4 * TINY32)
    q = rg + t64                             # S = 1 for probability targets
    check_f32(g, rg, np.maximum(q, t64))
    check_f32(h, rh, 0.0)


def test_float32_exponentials_of_rounded_differences():
    # rows (0, d) with d = z_1 - z_0 not a float32 (z_0 = 40.123456 or 0.0012345 and z_1 below):
    # p_1 = e^d / (1 + e^d) within 1e-6 relative for d down to -87 (e^d a normal float32), and
    # within a few steps of the smallest subnormal below, where float32 has no more digits
    d = -np.geomspace(1e-3, 100.0, 2001)
    for z0 in (40.123456, 0.0012345, -7.654321):
        z = np.stack([np.full(d.size, z0), z0 + d], axis=1).astype(np.float32)
        dd = z[:, 1].astype(np.float64) - z[:, 0].astype(np.float64)   # exact
        g = CE(from_logits=True).gradient(np.zeros(d.size, int), z, reduction="sum")
        with mpmath.workdps(40):
            ref = np.array([float(mpmath.exp(mpmath.mpf(v)) / (1 + mpmath.exp(mpmath.mpf(v))))
                            for v in dd])
        normal = ref > np.finfo(np.float32).tiny
        assert np.all(np.abs(g[normal, 1] - ref[normal]) <= 1e-6 * ref[normal])
        assert np.all(np.abs(g[~normal, 1] - ref[~normal]) <= 2 * TINY32)
        # the largest class: -(1 - p_0) = -p_1, without cancellation
        assert np.all(np.abs(g[normal, 0] + ref[normal]) <= 1e-6 * ref[normal])


def test_float32_arithmetic_tells_the_truth():
    assert CE(from_logits=True).float32_arithmetic
    assert CE(from_logits=True, class_weight=[1.0, 2.0, 3.0]).float32_arithmetic
    assert KL(from_logits=True).float32_arithmetic
    assert not CE().float32_arithmetic                # probabilities: float64 arithmetic
    assert not KL().float32_arithmetic
    assert not fastloss.MulticlassHinge().float32_arithmetic
    rng = np.random.default_rng(5)
    for k, native in ((10, True), (64, True), (65, False)):
        n = 20_000 // k
        z = (rng.standard_normal((n, k)) * 4).astype(np.float32)
        y = rng.integers(0, k, n)
        r32 = per_row(CE(from_logits=True), y, z)
        r64 = per_row(CE(from_logits=True), y, z.astype(np.float64))
        same = all(np.array_equal(a, b.astype(np.float32)) for a, b in zip(r32, r64))
        # float32 arithmetic rounds differently somewhere; rows of 65 classes compute in
        # float64 and give the float64 results rounded, bit for bit
        assert same != native, k


@pytest.mark.parametrize("w0", [1e-42, 1e-30, 1.0, 1e30])
def test_float32_weights_multiply_in_float64(w0):
    # a weight that is subnormal or huge in float32 loses nothing: the gradient and hessian
    # are w_i times the unweighted ones (float64 products, rounded once)
    rng = np.random.default_rng(11)
    n, k = 50, 10
    z = (rng.standard_normal((n, k)) * 3).astype(np.float32)
    y = rng.integers(0, k, n)
    w = np.full(n, w0, np.float32)
    for loss, target in ((CE(from_logits=True), y),
                         (CE(from_logits=True, label_smoothing=0.1), y),
                         (KL(from_logits=True), rng.dirichlet(np.ones(k), n).astype(np.float32))):
        _, g1, h1 = loss.loss_gradient_hessian(target, z, reduction="none")
        _, gw, hw = loss.loss_gradient_hessian(target, z, sample_weight=w, reduction="none")
        for a, b in ((gw, g1), (hw, h1)):
            expect = (np.float64(w[0]) * b.astype(np.float64)).astype(np.float32)
            # soft targets compute their gradient in float64: w x and x are each rounded once
            # to float32, so w fl(x) rounded may differ by one step
            assert np.all(np.abs(a.astype(np.float64) - expect) <= ulp32(expect) + TINY32)
            if target is y and loss.label_smoothing == 0.0:
                assert np.array_equal(a, expect)       # float32 terms times a float64 weight
