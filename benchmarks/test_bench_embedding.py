"""pytest-benchmark suite for the embedding family: fastloss against NumPy.

Run: ``pytest benchmarks/test_bench_embedding.py --benchmark-only --benchmark-group-by=param:case``.
Each case is loss + gradients of the mean. The NumPy baselines are what a careful user writes:
vectorised, with the distance matrix of batch-hard mining built from ``|a|^2 + |b|^2 - 2 a.b``
(clipped at 0) as usual. Their agreement with fastloss is checked in ``tests/test_bench.py``'s
sibling test below, so the comparison is fair.
"""

import numpy as np
import pytest

import fastloss


def np_contrastive(x1, x2, y, margin=1.0):
    diff = x1 - x2
    d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    n = d.size
    hinge = np.maximum(0.0, margin - d)
    loss = np.mean((1 - y) * 0.5 * d * d + y * 0.5 * hinge * hinge)
    safe = np.where(d > 0, d, 1.0)
    coef = np.where(y == 0, 1.0, -hinge / safe) / n
    g1 = coef[:, None] * diff
    return loss, (g1, -g1)


def np_batch_hard(x, labels, margin=1.0):
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    d = np.sqrt(d2)
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    pos = np.where(same, d, -np.inf).argmax(axis=1)
    diff_lab = labels[:, None] != labels[None, :]
    neg = np.where(diff_lab, d, np.inf).argmin(axis=1)
    rows = np.arange(x.shape[0])
    dp, dn = d[rows, pos], d[rows, neg]
    viol = np.maximum(0.0, margin + dp - dn)
    n = x.shape[0]
    loss = viol.mean()
    active = (viol > 0) / n
    up = (x - x[pos]) / np.where(dp > 0, dp, 1.0)[:, None]
    un = (x - x[neg]) / np.where(dn > 0, dn, 1.0)[:, None]
    g = np.zeros_like(x)
    g += active[:, None] * (up - un)
    np.add.at(g, pos, -active[:, None] * up)
    np.add.at(g, neg, active[:, None] * un)
    return loss, g


def _pairs(n, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((n, d)).astype(dtype)
    x2 = (x1 + 0.1 * rng.standard_normal((n, d))).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype)
    return x1, x2, y


def _batch(n, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, 16, n)


PAIRS = [(n, 64, dt) for n in (10**3, 10**5) for dt in ("float64", "float32")]
BATCHES = [(n, 128, dt) for n in (256, 1024) for dt in ("float64", "float32")]


@pytest.mark.parametrize("n,d,dt", PAIRS)
@pytest.mark.parametrize("impl", ["fastloss", "numpy"])
def test_contrastive(benchmark, impl, n, d, dt):
    x1, x2, y = _pairs(n, d, dt)
    benchmark.extra_info.update(case=f"contrastive-{n}x{d}-{dt}", impl=impl)
    if impl == "fastloss":
        benchmark(fastloss.Contrastive().loss_gradient, x1, x2, y)
    else:
        benchmark(np_contrastive, x1, x2, y)


@pytest.mark.parametrize("n,d,dt", BATCHES)
@pytest.mark.parametrize("impl", ["fastloss", "numpy"])
def test_batch_hard_triplet(benchmark, impl, n, d, dt):
    x, labels = _batch(n, d, dt)
    benchmark.extra_info.update(case=f"batch_hard-{n}x{d}-{dt}", impl=impl)
    if impl == "fastloss":
        benchmark(fastloss.BatchHardTriplet().loss_gradient, x, labels)
    else:
        benchmark(np_batch_hard, x, labels)


def test_baselines_agree_with_fastloss():
    """The NumPy baselines compute what fastloss computes (else the comparison is unfair)."""
    x1, x2, y = _pairs(500, 16, "float64", seed=3)
    ref_l, (ref_g1, ref_g2) = np_contrastive(x1, x2, y)
    got_l, (g1, g2) = fastloss.Contrastive().loss_gradient(x1, x2, y)
    np.testing.assert_allclose(got_l, ref_l, rtol=1e-12)
    np.testing.assert_allclose(g1, ref_g1, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(g2, ref_g2, rtol=1e-10, atol=1e-15)
    x, labels = _batch(200, 8, "float64", seed=4)
    ref_l, ref_g = np_batch_hard(x, labels)
    got_l, (g,) = fastloss.BatchHardTriplet().loss_gradient(x, labels)
    np.testing.assert_allclose(got_l, ref_l, rtol=1e-9)
    np.testing.assert_allclose(g, ref_g, rtol=1e-7, atol=1e-12)
