"""fastloss's own vectorizable exp/log/log1p/expm1/tanh (``_vmath.h``) against mpmath, on every
SIMD path this build has; and the two kernel builds against each other."""

import importlib.util

import mpmath
import numpy as np
import pytest

import fastloss
from fastloss._dispatch import kernel_module

mpmath.mp.dps = 40
PATHS = ["baseline"] + [p for p in ("avx2", "avx512")
                        if importlib.util.find_spec(f"fastloss._core_{p}")]
FUNCS = {"exp": mpmath.exp, "expm1": mpmath.expm1, "log": mpmath.log, "log1p": mpmath.log1p,
         "tanh": mpmath.tanh, "log1p_unit": mpmath.log1p,
         # e^x - 1 of fl_exp_m1_nonpos (log-cosh), x <= 0
         "exp_m1_nonpos_m": mpmath.expm1}
MAX_ULP = {"exp": 1.0, "expm1": 4.0, "log": 2.0, "log1p": 2.5, "tanh": 3.0, "log1p_unit": 2.5,
           "exp_m1_nonpos_m": 4.0}


def _inputs(name, rng):
    if name == "log":
        return np.concatenate([10 ** rng.uniform(-307, 307, 600), rng.uniform(0.5, 2, 600),
                               [5e-324, 1e-310, 2.2250738585072014e-308, 1.0, 2.0, 1e308]])
    if name == "log1p":
        return np.concatenate([rng.uniform(-0.999, 1, 600), 10 ** rng.uniform(-300, 300, 300),
                               -(10 ** rng.uniform(-300, -0.01, 300)), [1e-300, -1e-300]])
    if name == "log1p_unit":   # its domain, [-0.6, 1], with the reduction's switch points
        return np.concatenate([rng.uniform(-0.6, 1, 1500), 10 ** rng.uniform(-300, 0, 300),
                               -(10 ** rng.uniform(-300, -0.23, 300)),
                               np.nextafter(np.sqrt(2) - 1, [0, 1]),
                               np.nextafter(np.sqrt(0.5) - 1, [-1, 0]), [-0.6, 1.0, 5e-324]])
    x = np.concatenate([rng.uniform(-700, 700, 600), rng.uniform(-1, 1, 600),
                        rng.uniform(-1e-6, 1e-6, 100), [-745.1, -740.0, -708.5, 709.7,
                                                        0.34657, -0.34658, 1e-300]])
    if name == "exp_m1_nonpos_m":   # x <= 0, with the reduction's k = 0 edge
        x = -np.abs(np.concatenate([x, rng.uniform(0.34, 0.35, 200)]))
    return x


def _ulps(got, ref):
    r = float(ref)
    if r == 0:
        return 0.0 if got == 0 else np.inf
    return float(abs(mpmath.mpf(float(got)) - ref) / np.spacing(abs(r)))


def _cands(path):
    if path == "avx2" and not fastloss._core.cpu_has_avx2_fma():
        pytest.skip("this CPU cannot run the AVX2 build")
    if path == "avx512" and not fastloss._core.cpu_has_avx512():
        pytest.skip("this CPU cannot run the AVX-512 build")
    return kernel_module("_core", path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(FUNCS))
def test_accuracy_in_ulps(path, name):
    core = _cands(path)
    x = _inputs(name, np.random.default_rng(7))
    out = np.empty_like(x)
    core.vmath_eval(name, x, out)
    worst = max(_ulps(o, FUNCS[name](mpmath.mpf(float(v)))) for v, o in zip(x, out))
    assert worst <= MAX_ULP[name]


@pytest.mark.skipif(len(PATHS) < 2, reason="this build has no table-log (AVX2) kernels")
@pytest.mark.parametrize("path", PATHS[1:])
def test_log_table_within_one_ulp(path):
    """The AVX2 and AVX-512 logs read a 128-entry table (scripts/gen_log_table.py): its
    subintervals' edges and both sides of them, x near 1 (the centred subinterval, where
    log x ~ x - 1), powers of two times the edges, and subnormals, all within 1 ulp of mpmath
    (0.62 seen); the series of the portable build reaches 1.5."""
    import struct
    core = _cands(path)
    rng = np.random.default_rng(11)
    off = 0x3FE5F00000000000      # FL_LOG_OFF of fastloss/_vmath_logtab.h
    edges = np.array([struct.unpack("<d", struct.pack("<Q", off + (i << 45)))[0]
                      for i in range(129)])
    x = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, 2),
                        edges * 2.0 ** rng.integers(-1000, 1000, edges.size),
                        1 + rng.uniform(-4e-3, 4e-3, 1000),
                        1 + rng.choice([-1, 1], 500) * 10.0 ** rng.uniform(-16, -3, 500),
                        10 ** rng.uniform(-307, 307, 1000), 10 ** rng.uniform(-323, -308, 200)])
    out = np.empty_like(x)
    core.vmath_eval("log", x, out)
    worst = max(_ulps(o, mpmath.log(mpmath.mpf(float(v)))) for v, o in zip(x, out))
    assert worst <= 1.0, worst


@pytest.mark.skipif(len(PATHS) < 2, reason="this build has no table-log (AVX2) kernels")
@pytest.mark.parametrize("path", PATHS[1:])
def test_log1p_unit_table_within_one_ulp(path):
    """The AVX2 and AVX-512 log1p on [-0.6, 1] reads the same table for u = 1 + x and adds
    back the rounding error of 1 + x: x whose 1 + x falls on the subintervals' edges and
    beside them, x that 1 + x rounds (bits below ulp(1)), tiny x, and the domain's ends, all
    within 1 ulp of mpmath (0.67 seen; the series of the portable build reaches 1.5)."""
    import struct
    core = _cands(path)
    rng = np.random.default_rng(12)
    off = 0x3FE5F00000000000      # FL_LOG_OFF of fastloss/_vmath_logtab.h
    u = np.array([struct.unpack("<d", struct.pack("<Q", off + (i << 45)))[0] * s
                  for i in range(129) for s in (0.5, 1.0, 2.0)])
    x = u[(u >= 0.4) & (u <= 2.0)] - 1.0
    x = np.concatenate([x, np.nextafter(x, -1), np.nextafter(x, 2),
                        x + rng.uniform(-1e-16, 1e-16, x.size),   # 1 + x rounds these
                        rng.uniform(-0.6, 1.0, 3000),
                        rng.choice([-1, 1], 500) * 10.0 ** rng.uniform(-320, -1, 500),
                        [-0.6, 1.0, 5e-324, -5e-324]])
    x = x[(x >= -0.6) & (x <= 1.0)]
    out = np.empty_like(x)
    core.vmath_eval("log1p_unit", x, out)
    worst = max(_ulps(o, mpmath.log1p(mpmath.mpf(float(v)))) for v, o in zip(x, out))
    assert worst <= 1.0, worst


@pytest.mark.parametrize("path", PATHS)
def test_exp_lp_relative_error(path):
    """The float32-data exp: about 1e-8 relative on its domain x <= 709 (the softmax kernels
    call it at x <= 0); 0 below e^-708, exact 1 at 0, NaN through."""
    core = _cands(path)
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.uniform(-708, 709, 3000), rng.uniform(-1, 1, 1000),
                        [0.0, -0.34657, 0.34657, -707.9, 709.0]])
    out = np.empty_like(x)
    core.vmath_eval("exp_lp", x, out)
    rel = max(float(abs(mpmath.mpf(float(o)) / mpmath.exp(mpmath.mpf(float(v))) - 1))
              for v, o in zip(x, out))
    assert rel < 1e-8
    x = np.array([-708.5, -1e4, -np.inf, np.nan, 0.0])
    out = np.empty_like(x)
    core.vmath_eval("exp_lp", x, out)
    assert list(out[:3]) == [0.0, 0.0, 0.0] and np.isnan(out[3]) and out[4] == 1.0


@pytest.mark.parametrize("path", PATHS)
def test_log1p_unit_signed_zero_and_nan(path):
    core = _cands(path)
    x = np.array([-0.0, 0.0, np.nan])
    out = np.empty_like(x)
    core.vmath_eval("log1p_unit", x, out)
    assert np.signbit(out[0]) and out[0] == 0 and not np.signbit(out[1]) and np.isnan(out[2])


@pytest.mark.parametrize("path", PATHS)
def test_special_values(path):
    core = _cands(path)
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -1.0, 1000.0, -1000.0, 709.79, -745.2])
    expect = {
        "exp": [np.inf, 0.0, np.nan, 1.0, np.exp(-1.0), np.inf, 0.0, np.inf, 0.0],
        "expm1": [np.inf, -1.0, np.nan, 0.0, np.expm1(-1.0), np.inf, -1.0, np.inf, -1.0],
        "log": [np.inf, np.nan, np.nan, -np.inf, np.nan, np.log(1000.0), np.nan,
                np.log(709.79), np.nan],
        "log1p": [np.inf, np.nan, np.nan, 0.0, -np.inf, np.log1p(1000.0), np.nan,
                  np.log1p(709.79), np.nan],
        "tanh": [1.0, -1.0, np.nan, 0.0, np.tanh(-1.0), 1.0, -1.0, 1.0, -1.0],
    }
    for name, exp in expect.items():
        out = np.empty_like(x)
        core.vmath_eval(name, x, out)
        np.testing.assert_allclose(out, exp, rtol=4e-16, err_msg=name)
    # subnormal results of exp, exactly rounded like libm's
    x = np.array([-740.0, -744.0, -720.5])
    out = np.empty_like(x)
    core.vmath_eval("exp", x, out)
    np.testing.assert_array_equal(out, np.exp(x))


@pytest.mark.skipif(len(PATHS) < 2, reason="this build has one SIMD path")
@pytest.mark.parametrize("name", ["huber", "log_cosh", "poisson", "gamma", "tweedie",
                                  "pseudo_huber", "charbonnier"])
def test_both_kernel_builds_agree(name):
    """The portable, the AVX2 and the AVX-512 builds compute the same numbers up to FMA
    rounding (the twins this CPU runs)."""
    _cands("avx2")
    paths = [p for p in PATHS if p != "avx512" or fastloss._core.cpu_has_avx512()]
    rng = np.random.default_rng(3)
    y = rng.gamma(2.0, 1.0, 5000)
    p = rng.normal(size=5000) * 0.5
    loss = fastloss.get(name)
    fn, args = loss._kernel_call()
    kname = fn.__name__
    e = np.empty(0)
    outs = []
    for path in paths:
        mod = kernel_module("_regression", path)
        lo, go, ho = np.empty(5000), np.empty(5000), np.empty(5000)
        getattr(mod, kname)(y, p, e, lo, go, ho, True, 1.0, 1, e, *args)
        outs.append((lo, go, ho))
    for twin in outs[1:]:
        for a, b in zip(outs[0], twin):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13 * np.max(np.abs(a)))


# ---------------------------------------------------------------------------------------------
# float32 functions (the float32-arithmetic kernels, ElementwiseLoss.float32_arithmetic)
# ---------------------------------------------------------------------------------------------

F32_FUNCS = {"exp_nonpos": mpmath.exp, "log1p_unit": mpmath.log1p,
             "expm1_tail": lambda x: mpmath.expm1(x) - x, "log_normal": mpmath.log,
             "exp": mpmath.exp, "expm1mx": lambda x: mpmath.expm1(x) - x,
             "exp_m1_nonpos_m": mpmath.expm1}
F32_MAX_ULP = {"expm1_tail": 4.0, "expm1mx": 2.5}


def _inputs_f32(name, rng):
    if name in ("exp_nonpos", "exp_m1_nonpos_m"):   # x <= 0: normal, subnormal, zero e^x
        return np.concatenate([-rng.exponential(5.0, 3000), -rng.uniform(0, 110, 1500),
                               -(10 ** rng.uniform(-40, 0, 300)),
                               [-0.0, -87.3, -88.0, -100.0, -103.2, -103.9, -104.0, -120.0,
                                -0.34657, -0.34658]]).astype(np.float32)
    if name == "log1p_unit":   # its domain, [-0.6, 1], with the reduction's switch points
        return np.concatenate([rng.uniform(-0.6, 1, 3000), 10 ** rng.uniform(-44, 0, 500),
                               -(10 ** rng.uniform(-44, -0.23, 500)),
                               [np.sqrt(2) - 1, np.sqrt(0.5) - 1, -0.6, 1.0,
                                1e-45]]).astype(np.float32)
    if name == "log_normal":   # positive normal floats, with the reduction's switch points
        return np.concatenate([10 ** rng.uniform(-37.9, 38.5, 3000), rng.uniform(0.5, 2, 1500),
                               rng.uniform(1 - 1e-3, 1 + 1e-3, 300),
                               [1.1754944e-38, 1.0, 2.0, np.sqrt(2), np.sqrt(0.5), 1 - 2**-24,
                                1 + 2**-23, 2**-23, 3.4e38]]).astype(np.float32)
    if name == "exp":   # every finite result: the top near FLT_MAX, subnormals at the bottom
        return np.concatenate([rng.uniform(-104, 88.72, 3000), rng.uniform(-1, 1, 1000),
                               [0.0, 88.0, 88.7, 88.72, 88.7228, -87.3, -100.0, -103.9,
                                0.34657, -0.34658]]).astype(np.float32)
    if name == "expm1mx":   # the deviances' tail on |r| <= 1, down to tiny r (r^2 normal)
        r = np.concatenate([rng.uniform(-1, 1, 3000), 10 ** rng.uniform(-18, 0, 500), [1.0]])
        return np.concatenate([r, -r]).astype(np.float32)
    # the tail e^r - 1 - r on |r| <= 0.35 (r^2 normal: the callers add it to r)
    r = np.concatenate([rng.uniform(-0.35, 0.35, 3000), 10 ** rng.uniform(-15, -0.5, 300)])
    return np.concatenate([r, -r]).astype(np.float32)


def _ulps_f32(got, ref):
    r = np.float32(float(ref))
    spacing = float(np.spacing(np.abs(r))) if r != 0 else 1.401298464324817e-45
    return float(abs(mpmath.mpf(float(got)) - ref) / spacing)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(F32_FUNCS))
def test_float32_accuracy_in_ulps(path, name):
    """Within 2 float32 ulp of mpmath over the range the kernels use them on (subnormal
    results of exp counted in units of the smallest subnormal); the tail e^r - 1 - r within 4
    (it is added to r, at least 3 times larger, so expm1 = r + tail stays within about 2), and
    the deviances' longer tail within 3."""
    core = _cands(path)
    x = _inputs_f32(name, np.random.default_rng(11))
    out = np.empty_like(x)
    core.vmath_eval_f32(name, x, out)
    worst = max(_ulps_f32(o, F32_FUNCS[name](mpmath.mpf(float(v)))) for v, o in zip(x, out))
    assert worst <= F32_MAX_ULP.get(name, 2.0)


@pytest.mark.parametrize("path", PATHS)
def test_float32_special_values(path):
    core = _cands(path)
    x = np.array([0.0, -0.0, -np.inf, np.nan, -200.0], np.float32)
    out = np.empty_like(x)
    core.vmath_eval_f32("exp_nonpos", x, out)
    np.testing.assert_array_equal(out, [1.0, 1.0, 0.0, np.nan, 0.0])
    x = np.array([0.0, -0.0, np.nan], np.float32)
    core.vmath_eval_f32("log1p_unit", x, out[:3])
    np.testing.assert_array_equal(out[:3], [0.0, -0.0, np.nan])
    assert np.signbit(out[1])
    core.vmath_eval_f32("log_normal", np.array([np.nan, 1.0], np.float32), out[:2])
    np.testing.assert_array_equal(out[:2], [np.nan, 0.0])
    # exp over the whole line: overflow past log(FLT_MAX) = 88.7228...; FLT_MAX itself stays
    x = np.array([np.inf, -np.inf, np.nan, 88.7229, 89.0, 1e30, -1e30, 88.72283], np.float32)
    out = np.empty_like(x)
    core.vmath_eval_f32("exp", x, out)
    np.testing.assert_array_equal(out[:7], [np.inf, 0.0, np.nan, np.inf, np.inf, np.inf, 0.0])
    assert np.isfinite(out[7]) and out[7] > 3.4e38
