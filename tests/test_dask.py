"""``fastloss.dask`` on a real ``distributed.LocalCluster`` with two worker processes.

Reductions over uneven chunks are compared with the in-memory call and with a NumPy formula summed
exactly (``math.fsum``); blockwise derivatives with the in-memory derivatives. Arrays stay small:
this runs in CI on a 2-core machine.
"""

import math

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

import fastloss  # noqa: E402
import fastloss.dask as fd  # noqa: E402

N = 60_011


def _uneven(n):
    """Uneven chunks: tiny, block-sized, odd; none a multiple of another."""
    sizes = [1, 8191, 20_000, 3, 9_999]
    sizes.append(n - sum(sizes))
    return (tuple(sizes),)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(2024)
    y = rng.normal(size=N)
    p = y + rng.normal(scale=2.0, size=N)
    w = rng.random(N)
    return y, p, w


def _huber(y, p, delta):
    e = y - p
    return np.where(np.abs(e) <= delta, 0.5 * e * e, delta * (np.abs(e) - 0.5 * delta))


def test_the_cluster_has_two_worker_processes(client):
    info = client.scheduler_info()
    assert len(info["workers"]) == 2
    pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2


@pytest.mark.parametrize("loss", [fastloss.Huber(delta=1.5), fastloss.MSE(), fastloss.RMSE(),
                                  fastloss.LogCosh()], ids=repr)
def test_reductions_over_uneven_chunks_equal_the_in_memory_result(client, arrays, loss):
    y, p, w = arrays
    Y = da.from_array(y, chunks=_uneven(N))
    P = da.from_array(p, chunks=7_777)           # chunks of y_pred differ from y_true's
    W = da.from_array(w, chunks=((N - 5, 5),))
    for red in loss.reductions:
        if red == "none":
            continue
        for sw, SW in ((None, None), (w, W)):
            got = fd.loss(loss, Y, P, sample_weight=SW, reduction=red)
            ref = loss.loss(y, p, sample_weight=sw, reduction=red)
            assert type(got) is type(ref)
            # chunks that do not fall on the kernel's blocks round differently: ~1e-15
            assert got == pytest.approx(ref, rel=1e-14, abs=0)


def test_reduction_against_an_exactly_summed_formula(client, arrays):
    y, p, w = arrays
    Y, P, W = (da.from_array(a, chunks=_uneven(N)) for a in (y, p, w))
    l = _huber(y, p, 1.5)
    assert fd.loss("huber", Y, P, delta=1.5, reduction="sum") == pytest.approx(
        math.fsum(l), rel=1e-14)
    assert fd.loss("huber", Y, P, sample_weight=W, delta=1.5) == pytest.approx(
        math.fsum(l * w) / math.fsum(w), rel=1e-14)


def test_weighted_mean_is_unbiased_with_uneven_chunks(client):
    # The first chunk is one sample of huge weight and loss; averaging per-chunk means would
    # weight it like a whole chunk, a plain mean would ignore the weights.
    rng = np.random.default_rng(3)
    n = 20_001
    y = rng.normal(size=n)
    p = y.copy()
    p[0] = y[0] + 10.0
    w = rng.random(n)
    w[0] = 1000.0
    Y, P, W = (da.from_array(a, chunks=((1, 5_000, n - 5_001),)) for a in (y, p, w))
    got = fd.loss(fastloss.MSE(), Y, P, sample_weight=W)
    expected = math.fsum(w * (y - p) ** 2) / math.fsum(w)  # = 1e5 / sum(w)
    assert got == pytest.approx(expected, rel=1e-14)
    per_chunk = np.mean([100.0, 0.0, 0.0])
    assert abs(got - per_chunk) > 1.0 and abs(got - np.mean((y - p) ** 2)) > 1.0


def test_gradients_and_hessians_blockwise_equal_the_in_memory_ones(client, arrays):
    y, p, w = arrays
    loss = fastloss.PseudoHuber(delta=0.8)
    Y = da.from_array(y, chunks=_uneven(N))
    P = da.from_array(p, chunks=_uneven(N))
    W = da.from_array(w, chunks=_uneven(N))
    # unweighted: the scale 1/n is exact, so every element is bit for bit the in-memory one
    for red in ("mean", "sum", "none"):
        g = fd.gradient(loss, Y, P, reduction=red)
        assert isinstance(g, da.Array) and g.chunks == P.chunks
        np.testing.assert_array_equal(g.compute(), loss.gradient(y, p, reduction=red))
    # weighted "mean": scaled by the whole array's sum(w) (a tree reduction, last-bit close)
    np.testing.assert_allclose(fd.gradient(loss, Y, P, sample_weight=W).compute(),
                               loss.gradient(y, p, sample_weight=w), rtol=1e-14, atol=0)
    g, h = fd.gradient_hessian(loss, Y, P, sample_weight=W, compute=True)
    g0, h0 = loss.gradient_hessian(y, p, sample_weight=w)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(h, h0)
    v, g, h = fd.loss_gradient_hessian(loss, Y, P, reduction="mean", compute=True)
    v0, g0, h0 = loss.loss_gradient_hessian(y, p)
    assert v == pytest.approx(v0, rel=1e-14)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(h, h0)
    # and against finite differences of the loss itself (independent of the kernel's formula)
    eps = 1e-6
    fd_grad = (loss.loss(y, p + eps, reduction="none")
               - loss.loss(y, p - eps, reduction="none")) / (2 * eps)
    np.testing.assert_allclose(fd.gradient(loss, Y, P, reduction="none").compute(), fd_grad,
                               rtol=1e-6, atol=1e-8)


def test_none_is_blockwise_and_lazy_results(client, arrays):
    y, p, w = arrays
    loss = fastloss.Huber()
    Y, P, W = (da.from_array(a, chunks=_uneven(N)) for a in (y, p, w))
    out = fd.loss(loss, Y, P, sample_weight=W, reduction="none")
    assert isinstance(out, da.Array) and out.chunks == P.chunks
    np.testing.assert_array_equal(out.compute(), loss.loss(y, p, sample_weight=w,
                                                           reduction="none"))
    lazy = fd.loss(loss, Y, P, sample_weight=W, compute=False)
    assert isinstance(lazy, da.Array) and lazy.shape == ()
    assert lazy.compute() == pytest.approx(loss.loss(y, p, sample_weight=w), rel=1e-14)
    v, g = fd.loss_gradient(loss, Y, P, reduction="sum")
    assert isinstance(v, da.Array) and isinstance(g, da.Array)
    v, g = dask.compute(v, g)
    assert v == pytest.approx(loss.loss(y, p, reduction="sum"), rel=1e-14)
    np.testing.assert_array_equal(g, loss.gradient(y, p, reduction="sum"))


def test_two_dimensional_and_float32_inputs(client):
    rng = np.random.default_rng(5)
    y = rng.normal(size=(3_001, 5))
    p = rng.normal(size=(3_001, 5)).astype(np.float32)
    Y = da.from_array(y, chunks=(1_000, 2))
    P = da.from_array(p, chunks=(700, 5))
    loss = fastloss.LogCosh()
    got = fd.loss(loss, Y, P)
    ref = loss.loss(y, p)
    assert got.dtype == np.float32 and got == ref  # float32 result: the rounding hides chunking
    g = fd.gradient(loss, Y, P, reduction="sum").compute()
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, loss.gradient(y, p, reduction="sum"))


def test_multiclass_class_axis_in_one_chunk(client):
    if not hasattr(fastloss, "CategoricalCrossEntropy"):
        pytest.skip("fastloss.CategoricalCrossEntropy is not built yet")
    rng = np.random.default_rng(6)
    n, k = 10_007, 4
    logits = rng.normal(scale=3.0, size=(n, k))
    labels = rng.integers(0, k, size=n)
    w = rng.random(n)
    loss = fastloss.CategoricalCrossEntropy(from_logits=True)
    L = da.from_array(logits, chunks=(3_001, 2))  # class axis split: rechunked
    T = da.from_array(labels, chunks=4_000)
    W = da.from_array(w, chunks=5_000)
    got = fd.loss(loss, T, L, sample_weight=W)
    assert got == pytest.approx(loss.loss(labels, logits, sample_weight=w), rel=1e-14)
    rows = fd.loss(loss, T, L, reduction="none")
    assert rows.shape == (n,)
    np.testing.assert_allclose(rows.compute(), loss.loss(labels, logits, reduction="none"),
                               rtol=1e-15)
    g = fd.gradient(loss, T, L, reduction="sum").compute()
    np.testing.assert_allclose(g, loss.gradient(labels, logits, reduction="sum"), rtol=1e-15)


def test_a_row_wise_loss_without_the_hook():
    from test_scoring import RowMSE

    rng = np.random.default_rng(8)
    y, p, w = rng.normal(size=(5_003, 3)), rng.normal(size=(5_003, 3)), rng.random(5_003)
    Y = da.from_array(y, chunks=(1_000, 2))  # the class axis is rechunked into one
    P = da.from_array(p, chunks=(2_000, 1))
    W = da.from_array(w, chunks=999)
    with dask.config.set(scheduler="sync"):
        for red in ("mean", "sum"):
            got = fd.loss(RowMSE(), Y, P, sample_weight=W, reduction=red)
            assert got == pytest.approx(RowMSE().loss(y, p, sample_weight=w, reduction=red),
                                        rel=1e-14)
        rows = fd.loss(RowMSE(), Y, P, reduction="none")
        assert rows.shape == (5_003,)
        np.testing.assert_array_equal(rows.compute(), RowMSE().loss(y, p, reduction="none"))
        with pytest.raises(ValueError, match="its mean is not"):
            fd.loss(RowMSE(2.0), Y, P)


def test_one_kernel_thread_per_dask_thread_by_default(monkeypatch):
    from fastloss import _base

    calls = []
    real = _base.resolve_n_threads

    def record(n_threads):
        calls.append(n_threads)
        return real(n_threads)

    monkeypatch.setattr(_base, "resolve_n_threads", record)
    y = da.zeros(50_000, chunks=10_000)
    with dask.config.set(scheduler="sync"):
        for n_threads, expected in ((None, 1), (1, 1), (2, 2)):
            calls.clear()
            kw = {} if n_threads is None else {"n_threads": n_threads}
            fd.loss(fastloss.Huber(), y, y, **kw)
            fd.gradient(fastloss.Huber(), y, y, **kw).compute()
            assert calls == [expected] * 10, (n_threads, calls)


def test_bad_input():
    y = da.zeros(10, chunks=5)
    with pytest.raises(ValueError, match=r"same shape, got y_true \(10,\) and y_pred \(9,\)"):
        fd.loss(fastloss.MSE(), y, da.zeros(9, chunks=5))
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        fd.loss("nope", y, y)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fd.loss(fastloss.MSE(), y, y, reduction="max")
    with pytest.raises(NotImplementedError, match="RMSE's derivatives depend on the whole"):
        fd.gradient(fastloss.RMSE(), y, y)
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match="non-negative"):
            fd.loss(fastloss.MSE(), y, y, sample_weight=-da.ones(10, chunks=5))
        with pytest.raises(ValueError, match="must not sum to 0"):
            fd.loss(fastloss.MSE(), y, y, sample_weight=da.zeros(10, chunks=5))
