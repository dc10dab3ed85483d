"""pytest-benchmark suite: every loss of ``fastloss bench`` against its NumPy baseline
(element-wise losses, and softmax cross-entropy with n rows of 10 classes).

Run: ``pytest benchmarks/ --benchmark-only --benchmark-group-by=param:case`` (the NumPy
baselines live in ``fastloss/_bench.py`` so that ``fastloss bench`` can use them too; they are
clear, vectorised and numerically stable, what a careful user would write). Each case is loss +
gradient + hessian of the mean, the work of one training step or boosting round; the memory
probe moves the same bytes (two arrays read, two written) with no arithmetic, so
``probe / fastloss`` is the fraction of the memory-bandwidth bound reached.
"""

import numpy as np
import pytest

import fastloss
from fastloss import _bench, _core

SIZES = [10**3, 10**5, 10**7]
CASES = [(name, n, dt, t) for name in _bench.BASELINES for n in SIZES
         for dt in ("float64", "float32") for t in (1, 2)]
CASES += [pytest.param(name, 10**8, "float32", 2, marks=pytest.mark.huge)
          for name in _bench.BASELINES if _bench.BASELINES[name][2] != "multiclass"]


def _data(name, n, dt):
    np_fn, factory, kind = _bench.BASELINES[name]
    y, p = _bench.make_data(kind, n, np.dtype(dt))
    return np_fn, factory(), y, p


@pytest.mark.parametrize("name,n,dt,threads", CASES)
def test_fastloss(benchmark, name, n, dt, threads):
    _, loss, y, p = _data(name, n, dt)
    g, h = np.empty_like(p), np.empty_like(p)
    benchmark.extra_info.update(case=f"{name}-{n}-{dt}", impl="fastloss")
    benchmark(loss.loss_gradient_hessian, y, p, gradient_out=g, hessian_out=h,
              n_threads=threads)


@pytest.mark.parametrize("name,n,dt", sorted({(c[0], c[1], c[2]) for c in CASES
                                               if not hasattr(c, "marks")}))
def test_numpy(benchmark, name, n, dt):
    np_fn, _, y, p = _data(name, n, dt)
    benchmark.extra_info.update(case=f"{name}-{n}-{dt}", impl="numpy")
    benchmark(np_fn, y, p)


@pytest.mark.parametrize("n,dt,threads", [(n, dt, t) for n in SIZES
                                          for dt in ("float64", "float32") for t in (1, 2)])
def test_memory_probe(benchmark, n, dt, threads):
    a = np.ones(n, dt)
    b, c, d = np.ones_like(a), np.empty_like(a), np.empty_like(a)
    benchmark.extra_info.update(case=f"probe-{n}-{dt}", impl="probe")
    benchmark(_core.stream_probe, a, b, c, d, threads)
