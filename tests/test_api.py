"""The public API around the kernels: objects, registry, shortcuts, threads, bad input."""

import math
import pickle

import numpy as np
import pytest

import fastloss

ELEMENTWISE = [fastloss.get(name) for name in ("mse", "mae", "huber", "pseudo_huber",
                                                 "charbonnier", "log_cosh", "quantile",
                                                 "poisson", "gamma", "tweedie")]


# ---------------------------------------------------------------------------------------------
# Objects and registry
# ---------------------------------------------------------------------------------------------

def test_registry_round_trip():
    names = fastloss.available()
    assert {"mse", "mae", "rmse", "huber", "pseudo_huber", "charbonnier", "log_cosh",
            "quantile", "poisson", "gamma", "tweedie"} <= set(names)
    assert fastloss.get("huber", delta=2.0) == fastloss.Huber(delta=2.0)
    assert fastloss.get("pinball", quantile=0.2) == fastloss.Quantile(0.2)
    with pytest.raises(ValueError, match="unknown loss 'hubber'"):
        fastloss.get("hubber")
    with pytest.raises(TypeError, match="unexpected keyword argument 'delt'"):
        fastloss.get("huber", delt=1.0)


@pytest.mark.parametrize("name", fastloss.available())
def test_objects_are_immutable_picklable_and_readable(name):
    loss = fastloss.get(name)
    clone = pickle.loads(pickle.dumps(loss))
    assert clone == loss and hash(clone) == hash(loss)
    assert type(clone) is type(loss)
    assert repr(loss).startswith(type(loss).__name__ + "(")
    assert eval(repr(loss), vars(fastloss)) == loss
    with pytest.raises(AttributeError, match="immutable"):
        loss.anything = 1


def test_parameters_are_validated_at_construction():
    with pytest.raises(ValueError, match="delta must be a finite number > 0, got 0"):
        fastloss.Huber(delta=0)
    with pytest.raises(ValueError, match="delta"):
        fastloss.PseudoHuber(delta=-1.0)
    with pytest.raises(ValueError, match="eps"):
        fastloss.Charbonnier(eps=0.0)
    with pytest.raises(ValueError, match="quantile"):
        fastloss.Quantile(quantile=1.0)
    with pytest.raises(ValueError, match=r"power must be .*not in \(0, 1\), got 0.5"):
        fastloss.Tweedie(power=0.5)
    with pytest.raises(ValueError, match="delta"):
        fastloss.Huber(delta=float("nan"))
    with pytest.raises(TypeError, match="delta must be a real number"):
        fastloss.Huber(delta="1")
    assert fastloss.Huber(2).delta == 2.0
    assert fastloss.Tweedie(power=3).get_params() == {"power": 3.0}


def test_functional_shortcuts_match_the_classes(rng):
    y, p = rng.normal(size=100), rng.normal(size=100)
    w = rng.uniform(size=100)
    assert fastloss.huber(y, p, delta=0.5) == fastloss.Huber(0.5).loss(y, p)
    assert fastloss.mse(y, p, sample_weight=w, reduction="sum") == fastloss.MSE().loss(
        y, p, sample_weight=w, reduction="sum")
    np.testing.assert_array_equal(fastloss.quantile(y, p, quantile=0.1, reduction="none"),
                                  fastloss.Quantile(0.1).loss(y, p, reduction="none"))
    import inspect
    sig = inspect.signature(fastloss.huber)
    assert list(sig.parameters)[:3] == ["y_true", "y_pred", "delta"]
    assert sig.parameters["delta"].default == 1.0


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------

def test_thread_settings():
    default = fastloss.get_num_threads()
    assert default >= 1
    try:
        fastloss.set_num_threads(1)
        assert fastloss.get_num_threads() == 1
    finally:
        fastloss.set_num_threads(None)
    assert fastloss.get_num_threads() == default
    with pytest.raises(ValueError, match="n_threads must be a positive integer"):
        fastloss.set_num_threads(0)
    with pytest.raises(ValueError, match="n_threads"):
        fastloss.MSE().loss([1.0], [2.0], n_threads=-1)
    with pytest.raises(TypeError, match="n_threads"):
        fastloss.MSE().loss([1.0], [2.0], n_threads=1.5)


def test_omp_num_threads_is_honoured():
    import subprocess
    import sys
    code = "import fastloss; print(fastloss.get_num_threads())"
    import os
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "1"


def test_show_config_tells_the_build(capsys):
    fastloss.show_config()
    text = capsys.readouterr().out
    assert fastloss.__version__ in text
    assert "openmp" in text and "huber" in text


# ---------------------------------------------------------------------------------------------
# Bad input: every case raises the right exception naming the argument
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ELEMENTWISE, ids=repr)
def test_bad_inputs(loss):
    y = np.ones(10)
    p = np.zeros(10)
    with pytest.raises(ValueError, match=r"y_true and y_pred must have the same shape.*\(9,\)"):
        loss.loss(y[:9], p)
    with pytest.raises(ValueError, match="same shape"):
        loss.loss(y.reshape(2, 5), p)
    with pytest.raises(ValueError, match=r"sample_weight must have the shape of y_pred \(10,\)"):
        loss.loss(y, p, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        loss.loss(y, p, sample_weight=-np.ones(10))
    with pytest.raises(ValueError, match="sample_weight must not sum to 0"):
        loss.loss(y, p, sample_weight=np.zeros(10))
    assert loss.loss(y, p, sample_weight=np.zeros(10), reduction="sum") == 0.0
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none', got 'avg'"):
        loss.loss(y, p, reduction="avg")
    with pytest.raises(TypeError, match="y_pred must hold real numbers.*complex"):
        loss.loss(y, p.astype(complex))
    with pytest.raises(TypeError, match="y_true must hold real numbers.*object"):
        loss.loss(np.array([None] * 10), p)
    with pytest.raises(TypeError, match="y_pred must hold real numbers"):
        loss.loss(y, ["a"] * 10)
    with pytest.raises(TypeError, match="sample_weight must hold real numbers"):
        loss.loss(y, p, sample_weight=np.array(["x"] * 10))
    with pytest.raises(TypeError, match="y_true must be an array-like"):
        loss.loss(None, p)
    with pytest.raises(ValueError, match=r"gradient_out must have shape \(10,\), got \(9,\)"):
        loss.gradient(y, p, out=np.empty(9))
    with pytest.raises(ValueError, match="gradient_out must have dtype float64, got float32"):
        loss.gradient(y, p, out=np.empty(10, np.float32))
    with pytest.raises(ValueError, match="gradient_out must be C-contiguous"):
        loss.gradient(y, p, out=np.empty(20)[::2])
    ro = np.empty(10)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="hessian_out must be writeable"):
        loss.gradient_hessian(y, p, hessian_out=ro)
    with pytest.raises(ValueError, match="loss_out is only used with reduction='none'"):
        loss.loss(y, p, loss_out=np.empty(10))
    with pytest.raises(ValueError, match="gradient_out must be a numpy.ndarray"):
        loss.gradient(y, p, out=[0.0] * 10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_out_arrays_overlapping_the_inputs(dtype):
    # A reference from separate arrays: the residual formula written here, not the kernel.
    n = 20_000                       # several blocks and chunks
    a = np.linspace(-3, 3, n + 1).astype(dtype)
    y = np.cos(np.arange(n)).astype(dtype)
    expected = (-2 * (y.astype(np.float64) - a[:-1])).astype(dtype)
    # out *is* y_pred (an in-place update): allowed, no copy needed
    p = a[:-1].copy()
    g = fastloss.MSE().gradient(y, p, reduction="none", out=p)
    assert g is p
    np.testing.assert_array_equal(p, expected)
    # out overlaps y_pred shifted by one element: y_pred must be read before it is overwritten
    b = a.copy()
    fastloss.MSE().gradient(y, b[:-1], reduction="none", out=b[1:])
    np.testing.assert_array_equal(b[1:], expected)
    b = a.copy()
    fastloss.MSE().gradient(b[1:], np.zeros(n, dtype), reduction="none", out=b[:-1])
    np.testing.assert_array_equal(b[:-1], (-2 * a[1:].astype(np.float64)).astype(dtype))
    # outputs sharing memory with each other cannot both be right
    with pytest.raises(ValueError, match="out arrays must not overlap"):
        fastloss.MSE().gradient_hessian(y, p, gradient_out=b[:-1], hessian_out=b[1:])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_wise_out_arrays_overlapping_the_inputs(dtype):
    # The softmax gradient, written here in NumPy: softmax(z) - onehot(y), for the mean.
    rng = np.random.default_rng(3)
    n, k = 3000, 5
    z = rng.normal(0, 2, (n, k)).astype(dtype)
    y = rng.integers(0, k, n)
    z64 = z.astype(np.float64)
    s = np.exp(z64 - z64.max(axis=1, keepdims=True))
    expected = s / s.sum(axis=1, keepdims=True)
    expected[np.arange(n), y] -= 1
    expected = (expected / n).astype(dtype)
    loss = fastloss.CategoricalCrossEntropy(from_logits=True)
    tol = dict(rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-9)
    zz = z.copy()                    # in place: the gradient replaces the logits
    g = loss.gradient(y, zz, out=zz)
    assert g is zz
    np.testing.assert_allclose(zz, expected, **tol)
    buf = np.concatenate([z.ravel(), np.zeros(k, dtype)])   # out shifted by one row
    loss.gradient(y, buf[:-k].reshape(n, k), out=buf[k:].reshape(n, k))
    np.testing.assert_allclose(buf[k:].reshape(n, k), expected, **tol)


def test_domain_errors_name_the_argument():
    with pytest.raises(ValueError, match="Poisson: y_true must be >= 0"):
        fastloss.Poisson().loss([1.0, -1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="Gamma: y_true must be > 0"):
        fastloss.Gamma().loss([1.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="Tweedie: y_true must be > 0"):
        fastloss.Tweedie(power=3).gradient_hessian([0.0], [0.0])
    with pytest.raises(ValueError, match="Tweedie: y_true must be >= 0"):
        fastloss.Tweedie(power=1.5).loss([-1.0], [0.0])
    # power <= 0 accepts any real target, and 1 <= power < 2 accepts zeros
    assert np.isfinite(fastloss.Tweedie(power=0).loss([-1.0], [0.0]))
    assert np.isfinite(fastloss.Tweedie(power=1.5).loss([0.0], [0.0]))


def test_bad_input_never_modifies_the_inputs(rng):
    y, p = rng.normal(size=50), rng.normal(size=50)
    w = -np.ones(50)
    y0, p0, w0 = y.copy(), p.copy(), w.copy()
    with pytest.raises(ValueError):
        fastloss.Huber().loss_gradient_hessian(y, p, sample_weight=w)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(p, p0)
    np.testing.assert_array_equal(w, w0)


def test_kernels_check_sizes_themselves():
    """The compiled drivers refuse inconsistent sizes even when called directly."""
    from fastloss import _regression
    e = np.empty(0)
    with pytest.raises(ValueError, match="y_true has 3 elements, expected 4"):
        _regression.huber(np.ones(3), np.ones(4), e, e, e, e, True, 1.0, 1, e, 1.0)
    with pytest.raises(ValueError, match="gradient_out has 2 elements, expected 4"):
        _regression.huber(np.ones(4), np.ones(4), e, e, np.empty(2), e, True, 1.0, 1, e, 1.0)


def test_concurrent_callers_get_the_same_bits(rng):
    """Python threads calling at once (the GIL is released; callers share the threads)."""
    from concurrent.futures import ThreadPoolExecutor
    y, p = rng.normal(size=400_000), rng.normal(size=400_000)
    loss = fastloss.LogCosh()
    expect = loss.loss_gradient_hessian(y, p, n_threads=1)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: loss.loss_gradient_hessian(y, p, n_threads=2),
                                range(8)))
    for value, g, h in results:
        assert value.tobytes() == expect[0].tobytes()
        assert g.tobytes() == expect[1].tobytes() and h.tobytes() == expect[2].tobytes()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 3, 4, 7, 8192, 8195, 30_001])
def test_weight_sum_and_negative_flag(dtype, n):
    """The kernels' sum of weights: float64, close to math.fsum, the same for any thread
    count, and the negative flag wherever the negative weight sits (tail elements included)."""
    rng = np.random.default_rng(n)
    w = rng.uniform(0, 3, n).astype(dtype)
    exact = math.fsum(w.astype(np.float64))
    s1, neg1 = fastloss._core.weight_sum(w, 1)
    s2, neg2 = fastloss._core.weight_sum(w, 2)
    assert s1 == s2 and not neg1 and not neg2
    assert s1 == pytest.approx(exact, rel=1e-13)
    for pos in {0, n // 2, n - 1}:
        v = w.copy()
        v[pos] = -0.5
        assert fastloss._core.weight_sum(v, 2)[1]
    v = w.copy()
    v[n - 1] = -0.0                  # -0 is not negative
    assert not fastloss._core.weight_sum(v, 1)[1]


def test_overlap_of_contiguous_arrays():
    """_core.overlap against NumPy's exact np.shares_memory, on views of one buffer."""
    buf = np.zeros(100)
    views = [buf, buf[:50], buf[50:], buf[10:60], buf[49:51], buf[:0], np.zeros(10),
             buf.view(np.float32), buf[:50].reshape(5, 10)]
    for a in views:
        for b in views:
            how = fastloss._core.overlap(a, b)
            assert (how != 0) == np.shares_memory(a, b)
            same = a.nbytes == b.nbytes and a.nbytes > 0 and \
                a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            assert (how == 1) == same
    with pytest.raises(ValueError, match="C-contiguous"):
        fastloss._core.overlap(buf[::2], buf)
