"""The compiled fast path of the element-wise methods (``_core.elementwise_call``).

The public methods of ``ElementwiseLoss`` run common calls in C and hand every other call to
``ElementwiseLoss._run``. These tests check that the two routes cannot be told apart: the same
bits (values, dtypes, scalar types, shapes) and the same exceptions; that the fast path is really
taken for the common calls (``_core.fast_call_counts``); that thread settings changed between
calls take effect (the ``n_threads`` a kernel receives, seen through the loss's kernel cache);
and, independently of ``_run``, that the results are the NumPy formula. The reference for
"identical" is the same public call with the fast path switched off (``_core.set_fast_path``),
where every call is made by ``_run``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastloss
from fastloss import _core
from fastloss._base import ElementwiseLoss
from fastloss._registry import loss_class

ELEMENTWISE = [n for n in fastloss.available() if issubclass(loss_class(n), ElementwiseLoss)]
METHODS = ["loss", "gradient", "loss_gradient", "loss_gradient_hessian", "gradient_hessian"]


def _inputs(name, n, dtype, rng, shape=None):
    """Valid (y_true, y_pred) for the loss ``name``: labels, positive targets or reals."""
    shape = (n,) if shape is None else shape
    size = int(np.prod(shape))
    p = rng.standard_normal(size)
    if name in ("binary_cross_entropy", "focal", "hinge", "squared_hinge"):
        y = (rng.random(size) < 0.5).astype(np.float64)
        if name in ("binary_cross_entropy", "focal"):
            p = 1.0 / (1.0 + np.exp(-p))          # probabilities (from_logits=False)
    elif name in ("poisson", "tweedie"):
        y = rng.poisson(2.0, size).astype(np.float64)
    elif name == "gamma":
        y = rng.gamma(2.0, 1.0, size) + 0.1
    else:
        y = rng.standard_normal(size)
    return y.astype(dtype).reshape(shape), p.astype(dtype).reshape(shape)


def _reference(loss, method, y, p, **kw):
    """What the public method returns with the fast path off: every call made by _run."""
    previous = _core.set_fast_path(False)
    try:
        return _public(loss, method, y, p, **kw)
    finally:
        _core.set_fast_path(previous)


def _public(loss, method, y, p, *, reduction="mean", **kw):
    if method != "gradient_hessian":
        kw["reduction"] = reduction
    return getattr(loss, method)(y, p, **kw)


def _assert_same_bits(got, want):
    if isinstance(want, tuple):
        assert type(got) is tuple and len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same_bits(g, w)
        return
    if want is None:
        assert got is None
        return
    assert type(got) is type(want)
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def _fast_counts():
    return _core.fast_call_counts()


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_path_is_bitwise_run(name, dtype):
    loss = fastloss.get(name)
    rng = np.random.default_rng(7)
    methods = [m for m in METHODS if loss.has_hessian or "hessian" not in m]
    for shape in [(1000,), (0,), (3, 5), (), (20_000,)]:
        y, p = _inputs(name, 0, dtype, rng, shape)
        w = rng.random(shape).astype(dtype)
        y0, p0, w0 = y.copy(), p.copy(), w.copy()
        for method in methods:
            for reduction in loss.reductions:
                for weight in (None, w):
                    for n_threads in (None, 1, 2):
                        kw = dict(sample_weight=weight, reduction=reduction, n_threads=n_threads)
                        before = _fast_counts()
                        got = _public(loss, method, y, p, **kw)
                        after = _fast_counts()
                        want = _reference(loss, method, y, p, **kw)
                        _assert_same_bits(got, want)
                        if type(loss).__dict__.get(method) is None:   # not overridden (RMSE)
                            # every one of these calls is a common one: all on the fast path
                            assert after[0] > before[0] and after[1] == before[1], (method, kw)
        for a, b in ((y, y0), (p, p0), (w, w0)):
            np.testing.assert_array_equal(a, b)   # inputs untouched


_OUT_ARGS = {"loss": ("loss_out",), "gradient": ("out",),
             "loss_gradient": ("loss_out", "gradient_out"),
             "loss_gradient_hessian": ("loss_out", "gradient_out", "hessian_out"),
             "gradient_hessian": ("gradient_out", "hessian_out")}


@pytest.mark.parametrize("name", ["mse", "poisson", "binary_cross_entropy", "huber"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_out_arrays_on_the_fast_path(name, dtype):
    """Fitting out arrays that overlap nothing run on the fast path and are the arrays returned;
    an in-place or overlapping out goes to _run; both give _run's bits."""
    loss = fastloss.get(name)
    rng = np.random.default_rng(11)
    y, p = _inputs(name, 3000, dtype, rng)
    for method, names in _OUT_ARGS.items():
        for reduction in ("none", "mean"):
            outs = {k: np.empty_like(p) for k in names
                    if k != "loss_out" or (reduction == "none" and method != "gradient_hessian")}
            if not outs:
                continue
            before = _fast_counts()
            got = _public(loss, method, y, p, reduction=reduction, **outs)
            after = _fast_counts()
            assert after[0] == before[0] + 1 and after[1] == before[1]
            want = _reference(loss, method, y, p, reduction=reduction,
                              **{k: np.empty_like(p) for k in outs})
            _assert_same_bits(got, want)
            got = got if isinstance(got, tuple) else (got,)
            assert all(any(g is o for g in got) for o in outs.values())
    # an out that is y_pred (in place) or overlaps it: _run, and still right
    if name != "binary_cross_entropy":
        want = loss.gradient(y, p, reduction="none")
        want_in_place = want
        if dtype == np.float32 and loss.float32_arithmetic:
            # in place, a float32-arithmetic loss computes in float64 (a call redone after an
            # overflow would read overwritten inputs): the float64 result, rounded once
            want_in_place = loss.gradient(y.astype(np.float64), p.astype(np.float64),
                                          reduction="none").astype(np.float32)
        before = _fast_counts()
        q = p.copy()
        assert loss.gradient(y, q, reduction="none", out=q) is q
        assert _fast_counts()[1] == before[1] + 1
        np.testing.assert_array_equal(q, want_in_place)
        buf = np.concatenate([p, np.zeros(1, dtype)])
        loss.gradient(y, buf[:-1], reduction="none", out=buf[1:])
        np.testing.assert_array_equal(buf[1:], want)
    g = np.empty_like(p)
    with pytest.raises(ValueError, match="loss_out is only used with reduction='none'"):
        loss.loss_gradient(y, p, loss_out=g, gradient_out=np.empty_like(p))
    with pytest.raises(ValueError, match="must not overlap each other"):
        loss.gradient_hessian(y, p, gradient_out=g, hessian_out=g)


def test_results_are_the_numpy_formula():
    # independent of _run: the MSE and its derivatives written out in NumPy
    rng = np.random.default_rng(3)
    for dtype, rtol in ((np.float64, 1e-13), (np.float32, 2e-6)):
        y, p = (rng.standard_normal(1000).astype(dtype) for _ in range(2))
        w = rng.random(1000).astype(dtype)
        e = y.astype(np.float64) - p.astype(np.float64)
        wd = w.astype(np.float64)
        value, g, h = fastloss.MSE().loss_gradient_hessian(y, p)
        assert type(value) is np.dtype(dtype).type
        np.testing.assert_allclose(value, np.mean(e ** 2), rtol=rtol)
        np.testing.assert_allclose(g, -2 * e / 1000, rtol=rtol)
        np.testing.assert_allclose(h, np.full(1000, 2 / 1000), rtol=rtol)
        value, g = fastloss.MSE().loss_gradient(y, p, sample_weight=w, reduction="sum")
        np.testing.assert_allclose(value, np.sum(wd * e ** 2), rtol=rtol)
        np.testing.assert_allclose(g, -2 * wd * e, rtol=rtol, atol=1e-6)
        z = rng.standard_normal(1000).astype(dtype)
        b = (rng.random(1000) < 0.5).astype(dtype)
        zd, bd = z.astype(np.float64), b.astype(np.float64)
        value, g, h = fastloss.BinaryCrossEntropy(from_logits=True).loss_gradient_hessian(b, z)
        s = 1 / (1 + np.exp(-zd))
        np.testing.assert_allclose(value, np.mean(np.logaddexp(0, zd) - bd * zd), rtol=rtol)
        np.testing.assert_allclose(g, (s - bd) / 1000, rtol=rtol, atol=1e-9)
        np.testing.assert_allclose(h, s * (1 - s) / 1000, rtol=rtol, atol=1e-9)


class _Listish(list):
    pass


def _bad_calls():
    """(label, loss, method, y_true, y_pred, kwargs) of calls that must raise."""
    rng = np.random.default_rng(5)
    y, p = rng.standard_normal(10), rng.standard_normal(10)
    y32 = y.astype(np.float32)
    w = rng.random(10)
    mse = fastloss.MSE()
    yield "reduction", mse, "loss", y, p, dict(reduction="max")
    yield "reduction None", mse, "loss", y, p, dict(reduction=None)
    yield "reduction bytes", mse, "gradient", y, p, dict(reduction=b"mean")
    yield "rmse none", fastloss.RMSE(), "loss", y, p, dict(reduction="none")
    yield "shapes", mse, "loss", y, p[:9], {}
    yield "shapes 2d", mse, "loss_gradient", y.reshape(2, 5), p.reshape(5, 2), {}
    yield "complex", mse, "loss", y, p.astype(complex), {}
    yield "strings", mse, "loss", y.astype(str), p, {}
    yield "None", mse, "loss", y, None, {}
    yield "weight shape", mse, "loss", y, p, dict(sample_weight=w[:9])
    yield "weight negative", mse, "loss", y, p, dict(sample_weight=-w)
    yield "weight negative f32", mse, "loss", y32, y32, dict(sample_weight=-w.astype(np.float32))
    yield "weight zero mean", mse, "gradient", y, p, dict(sample_weight=0 * w)
    yield "weight complex", mse, "loss", y, p, dict(sample_weight=w.astype(complex))
    yield "threads 0", mse, "loss", y, p, dict(n_threads=0)
    yield "threads -1", mse, "loss_gradient_hessian", y, p, dict(n_threads=-1)
    yield "threads float", mse, "loss", y, p, dict(n_threads=1.5)
    yield "threads bool", mse, "loss", y, p, dict(n_threads=True)
    yield "threads str", mse, "loss", y, p, dict(n_threads="2")
    yield "domain y", fastloss.Poisson(), "loss", -np.abs(y), p, {}
    yield "domain p", fastloss.BinaryCrossEntropy(), "loss_gradient", (y > 0) * 1.0, p + 5, {}
    yield "labels", fastloss.BinaryCrossEntropy(from_logits=True), "loss", y, p, {}
    yield "hinge both", fastloss.Hinge(), "loss", np.r_[-1.0, 0.0, 1.0], p[:3], {}
    yield "no hessian", fastloss.RMSE(), "loss_gradient_hessian", y, p, {}
    yield "loss_out", mse, "loss", y, p, dict(reduction="none", loss_out=np.empty(10, np.float32))
    yield "loss_out mean", mse, "loss", y, p, dict(loss_out=np.empty(10))
    yield "out", mse, "gradient", y, p, dict(out=np.empty(9))
    yield "list subclass", mse, "loss", _Listish(["a"]), p[:1], {}


def _outcome(f):
    try:
        f()
    except Exception as exc:        # noqa: BLE001 - the exception is the result compared
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("case", list(_bad_calls()), ids=lambda c: c[0])
def test_same_exceptions_as_run(case):
    _, loss, method, y, p, kw = case
    got = _outcome(lambda: getattr(loss, method)(y, p, **kw))
    assert got is not None, "the call should raise"
    previous = _core.set_fast_path(False)
    try:
        want = _outcome(lambda: getattr(loss, method)(y, p, **kw))
    finally:
        _core.set_fast_path(previous)
    assert got == want
    # and the same as _run's own, called as the public method calls it
    if method == "loss" and not any(k.endswith("out") for k in kw):
        want = _outcome(lambda: loss._run(y, p, kw.get("sample_weight"),
                                          kw.get("reduction", "mean"), kw.get("n_threads"),
                                          loss=True, grad=False, hess=False))
        assert got == want


def test_uncommon_calls_go_to_run_and_agree():
    rng = np.random.default_rng(11)
    y, p = rng.standard_normal(1000), rng.standard_normal(1000)
    mse = fastloss.MSE()
    uncommon = [
        (y.tolist(), p, {}),                                   # a list
        (y, p[::-1], {}),                                      # not contiguous
        (y.astype(np.float32), p, {}),                         # mixed dtypes
        (y, p.astype(np.float16), {}),                         # float16 computes in float32
        (y, p.astype(">f8"), {}),                              # byte-swapped float64
        (y.astype(int), p.astype(int), {}),                    # integers compute in float64
        (y, p, dict(sample_weight=rng.random(1000).astype(np.float32))),  # weight dtype
        (y, p, dict(sample_weight=rng.random(1000).tolist())),
        (y, p, dict(n_threads=np.int64(2))),
        # mean_weights rescales ("mean" only: gradient_hessian's "none" stays fast)
        (y, p, dict(sample_weight=np.full(1000, 1e-300))),
        (y, p, dict(sample_weight=np.full(1000, np.nan))),
        (y, np.ma.masked_array(p), {}),                        # an ndarray subclass
    ]
    for yt, yp, kw in uncommon:
        for method in METHODS:
            before = _fast_counts()
            got = _public(mse, method, yt, yp, **kw)
            w = kw.get("sample_weight")
            rescaled = w is not None and not np.all(np.asarray(w) > 1e-100)
            if not (rescaled and method == "gradient_hessian"):
                assert _fast_counts()[1] == before[1] + 1, (method, kw)
            _assert_same_bits(got, _reference(mse, method, yt, yp, **kw))


def test_mean_overflow_retry():
    # every l = 1e308 is finite, their float64 sum is not: the mean is 1e308, as in _run
    y, p = np.full(8, 1e154), np.zeros(8)
    for loss in (fastloss.MSE(), fastloss.RMSE()):
        value = loss.loss(y, p)
        assert np.isfinite(value)
        _assert_same_bits(value, _reference(loss, "loss", y, p))
        _assert_same_bits(loss.loss_gradient(y, p), _reference(loss, "loss_gradient", y, p))
    np.testing.assert_allclose(fastloss.MSE().loss(y, p), 1e308, rtol=1e-15)
    np.testing.assert_allclose(fastloss.RMSE().loss(y, p), 1e154, rtol=1e-15)


def test_float32_overflow_to_inf_without_warning():
    y, p = np.full(4, 3e19, np.float32), np.full(4, -3e19, np.float32)
    with np.errstate(all="raise"):
        value = fastloss.MSE().loss(y, p)
    assert type(value) is np.float32 and value == np.inf
    _assert_same_bits(value, _reference(fastloss.MSE(), "loss", y, p))


def test_label_flags_that_do_not_raise():
    # hinge kernels flag which label convention they saw (bits 4, 8): _raise_domain ignores
    # one convention alone, on the fast path as in _run
    rng = np.random.default_rng(2)
    p = rng.standard_normal(100)
    for labels in ((0.0, 1.0), (-1.0, 1.0)):
        y = rng.choice(labels, 100)
        for method in METHODS:
            _assert_same_bits(_public(fastloss.Hinge(), method, y, p),
                              _reference(fastloss.Hinge(), method, y, p))


def test_subclasses_overriding_the_call_path_are_honoured():
    calls = []

    class LoggedMSE(fastloss.MSE):
        __slots__ = ()

        def _run(self, *args, **kwargs):
            calls.append(kwargs)
            return super()._run(*args, **kwargs)

    class HalfMSE(fastloss.MSE):
        __slots__ = ()

        def _reduce(self, total, wsum, reduction):
            return 0.5 * super()._reduce(total, wsum, reduction)

    class NumpyReduce(fastloss.MSE):
        __slots__ = ()

        def _reduce(self, total, wsum, reduction):
            return np.float64(super()._reduce(total, wsum, reduction))

    y, p = np.arange(6.0), np.zeros(6)
    assert LoggedMSE().loss(y, p) == np.mean(y ** 2)
    assert LoggedMSE().loss_gradient_hessian(y, p, reduction="sum")[0] == np.sum(y ** 2)
    assert len(calls) == 2 and calls[1]["hess"] is True
    for cls in (HalfMSE, NumpyReduce):
        for dtype in (np.float64, np.float32):
            yd, pd = y.astype(dtype), p.astype(dtype)
            before = _fast_counts()
            got = cls().loss(yd, pd)
            assert _fast_counts()[0] == before[0] + 1
            _assert_same_bits(got, _reference(cls(), "loss", yd, pd))
    assert HalfMSE().loss(y, p) == 0.5 * np.mean(y ** 2)


class _SpyKernel:
    """Stands in for a loss's kernel in its per-instance cache; records ``n_threads``."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.threads = []

    def __call__(self, *args):
        self.threads.append(args[8])
        return self.kernel(*args)


def _spied(loss, dtype=np.float64):
    kernel, args = loss._kernel_for(np.dtype(dtype))
    spy = _SpyKernel(kernel)
    loss._calls[np.dtype(dtype)] = (spy, args)
    return spy


def test_thread_settings_are_read_on_every_call():
    n = 200_000            # several blocks, so that threads could be used
    rng = np.random.default_rng(1)
    y, p = rng.standard_normal(n), rng.standard_normal(n)
    plain = fastloss.MSE()
    want = plain.loss_gradient(y, p)
    loss = fastloss.MSE()
    spy = _spied(loss)
    try:
        for setting in (1, 2, 3, None, 1, None):
            fastloss.set_num_threads(setting)
            expected = fastloss.get_num_threads()
            assert _core.default_threads() == expected
            if setting is not None:
                assert expected == setting
            before = _fast_counts()
            _assert_same_bits(loss.loss_gradient(y, p), want)
            assert _fast_counts()[0] == before[0] + 1
            assert spy.threads[-1] == expected
            # an explicit n_threads wins over the default
            loss.loss(y, p, n_threads=5)
            assert spy.threads[-1] == 5
    finally:
        fastloss.set_num_threads(None)


def test_threadpoolctl_limits_are_followed():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not _core.build_info()["openmp"]:
        pytest.skip("a serial build always uses one thread")
    y = np.ones(200_000)
    loss = fastloss.MSE()
    spy = _spied(loss)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastloss.get_num_threads() == 1 == _core.default_threads()
        loss.loss(y, y)
        assert spy.threads[-1] == 1
    loss.loss(y, y)
    assert spy.threads[-1] == fastloss.get_num_threads()


@pytest.mark.parametrize("env", ["1", "2"])
def test_omp_num_threads_is_followed(env):
    code = ("import numpy as np, fastloss; from fastloss import _core; "
            "print(fastloss.get_num_threads(), _core.default_threads())")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastloss.__file__)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS=env, PYTHONPATH=root), check=True)
    get, default = map(int, res.stdout.split())
    assert get == default
    if _core.build_info()["openmp"]:
        assert get == min(int(env), len(os.sched_getaffinity(0)))


def test_kernel_cache_is_used_and_filled():
    loss = fastloss.Huber(delta=0.5)
    assert loss._calls == {}
    y = np.linspace(-2, 2, 50)
    loss.loss(y, 0 * y)
    assert set(loss._calls) == {np.dtype(np.float64)}
    spy = _spied(loss)
    loss.gradient(y, 0 * y)
    assert len(spy.threads) == 1


def test_hessian_methods_check_for_a_hessian_first():
    y = np.zeros(4)
    for method in ("loss_gradient_hessian", "gradient_hessian"):
        # before anything else: even with inputs that would fail, the error is about the hessian
        with pytest.raises(NotImplementedError, match="RMSE has no per-sample hessian"):
            getattr(fastloss.RMSE(), method)(y, None, n_threads=0)
    calls = []

    class Checked(fastloss.MSE):
        __slots__ = ()

        def _require_hessian(self):
            calls.append(1)
            super()._require_hessian()

    class NoHessian(fastloss.MSE):
        __slots__ = ()
        has_hessian = False

    Checked().loss_gradient_hessian(y, y)
    Checked().gradient_hessian(y, y)
    Checked().loss_gradient(y, y)
    assert calls == [1, 1]
    with pytest.raises(NotImplementedError, match="NoHessian has no per-sample hessian"):
        NoHessian().gradient_hessian(y, y)


def test_rowwise_kernel_cache():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((50, 4))
    y = rng.integers(0, 4, 50)
    t = rng.dirichlet(np.ones(4), 50)
    loss = fastloss.CategoricalCrossEntropy(from_logits=True, class_weight=[1.0, 2.0, 0.5, 1.0])
    for _ in range(2):      # the second round runs from the cache: the same bits
        for yt in (y, t):
            for zz in (z, z.astype(np.float32)):
                got = loss.loss_gradient(yt, zz, reduction="mean")
                fresh = fastloss.CategoricalCrossEntropy(
                    from_logits=True, class_weight=[1.0, 2.0, 0.5, 1.0])
                _assert_same_bits(got, fresh.loss_gradient(yt, zz, reduction="mean"))
    # four kernel calls (target x dtype), the label weights of K = 4, and whether there are
    # class weights (without, and unweighted, a mean over labels skips the label pass)
    assert sorted(map(str, loss._calls)) == sorted(map(str, [
        ("label", 4, np.dtype(np.float64)), ("label", 4, np.dtype(np.float32)),
        ("rows", 4, np.dtype(np.float64)), ("rows", 4, np.dtype(np.float32)),
        ("label_weights", 4), ("no_class_weight", 4)]))
    # NumPy reference for the weighted mean over labels (PyTorch's convention)
    cw = np.array([1.0, 2.0, 0.5, 1.0])
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    want = np.sum(-cw[y] * logp[np.arange(50), y]) / np.sum(cw[y])
    np.testing.assert_allclose(loss.loss(y, z), want, rtol=1e-13)
    # an error is not cached: it is raised on every call
    for _ in range(2):
        with pytest.raises(ValueError, match="class_weight has 4 entries"):
            loss.loss(y, z[:, :3])
    # the cache stays bounded whatever the number of classes seen
    plain = fastloss.CategoricalCrossEntropy(from_logits=True)
    for k in range(1, 150):
        plain.loss(np.zeros(3, int), np.zeros((3, k)))
    assert len(plain._calls) <= 64


def test_no_reference_leaks():
    # a C path holds references by hand: the inputs' and the loss's counts must not move
    y, p, w = np.ones(100), np.zeros(100), np.ones(100)
    loss = fastloss.Huber()
    before = [sys.getrefcount(x) for x in (y, p, w, loss)]
    for _ in range(1000):
        loss.loss(y, p)
        loss.loss_gradient_hessian(y, p, sample_weight=w, reduction="sum")
        loss.gradient_hessian(y, p, sample_weight=w)
        with pytest.raises(ValueError):
            loss.gradient(y, p, sample_weight=-w)
    assert [sys.getrefcount(x) for x in (y, p, w, loss)] == before
