"""Memory: repeated calls keep it flat (error paths included), and 64-bit indexing.

Leaks are measured twice: Python-level allocations with ``tracemalloc`` (NumPy reports its
array buffers to it) and the resident set size from ``/proc/self/status`` (which also sees the
kernels' own ``malloc`` scratch). After a warm-up, a leak of even a few bytes per call would show
over 10^5 small calls; 10^2 calls on 10^6 elements would show a lost output array. Every
registered loss and method takes part, through the generic inputs of ``tests/_generic.py``.

The 64-bit indexing tests allocate about 17 GB and are marked ``slow`` (``--runslow``).
"""

from __future__ import annotations

import gc
import itertools
import math
import os
import tracemalloc

import numpy as np
import pytest

import fastloss

from _generic import NAMES, arrays_of, numpy_call, weights_of


def _rss() -> int:
    """Resident set size in bytes (Linux), or -1 where it means nothing: no /proc, or under
    AddressSanitizer (scripts/sanitize.sh), whose quarantine holds freed memory on purpose."""
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        return -1
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def _small_jobs():
    """(callable) closures: every loss, method and reduction on small inputs, plus error paths."""
    rng = np.random.default_rng(5)
    jobs = []
    for name in NAMES:
        loss = fastloss.get(name)
        for k in range(len(loss.input_forms())):
            call = numpy_call(loss, k, rng, work=64)
            arrays, w = arrays_of(call), weights_of(call)
            for r in loss.reductions:
                jobs.append(lambda loss=loss, a=arrays, w=w, r=r:
                            loss.loss_gradient(*a, sample_weight=w, reduction=r))
                jobs.append(lambda loss=loss, a=arrays, r=r: loss.loss(*a, reduction=r))
            if loss.has_hessian:
                jobs.append(lambda loss=loss, a=arrays, w=w: loss.gradient_hessian(*a, sample_weight=w))
            # error paths: checked in Python, and flagged by the kernel after a full pass
            bad_w = -np.ones(weights_of(call).shape)
            jobs.append(lambda loss=loss, a=arrays, w=bad_w: loss.loss(*a, sample_weight=w))
            jobs.append(lambda loss=loss, a=arrays: loss.loss(*a, reduction="avg"))
            jobs.append(lambda loss=loss, a=arrays: loss.loss(*a[:-1]))
            for spec_k, spec in enumerate(call.form):
                bad = _out_of_domain_values(spec, call.values[spec_k])
                if bad is not None:
                    a = list(arrays)
                    a[spec_k] = bad.astype(np.float64 if spec.labels else call.dtype)
                    jobs.append(lambda loss=loss, a=a: loss.loss_gradient(*a))
    return jobs


def _out_of_domain_values(spec, values):
    dom = spec.domain
    for c in (-1.0, 0.5, math.nan, -math.inf):
        v = values.copy()
        v.flat[0] = c
        if not dom.contains(v, None if not isinstance(dom.high, str) else {dom.high: 1e9}):
            return v
    return None


def _call(job):
    try:
        job()
    except (ValueError, TypeError, NotImplementedError):
        pass


def _measure(jobs, n_calls):
    it = itertools.islice(itertools.cycle(jobs), n_calls)
    for job in it:
        _call(job)


def _traced_growth(jobs, before, calls):
    """Bytes of Python allocations still held after ``calls`` calls, under tracemalloc, the
    count taken after ``before`` calls (0: from the start)."""
    tracemalloc.start()
    try:
        _measure(jobs, before)
        gc.collect()
        traced0 = tracemalloc.get_traced_memory()[0]
        _measure(jobs, calls)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - traced0
    finally:
        tracemalloc.stop()


def test_small_calls_keep_memory_flat():
    """10^5 small calls over every loss, method and error path: RSS flat; and 10^4 of them
    under tracemalloc: Python allocations flat."""
    jobs = _small_jobs()
    _measure(jobs, 20 * len(jobs))                # warm-up: caches, pools, first imports
    gc.collect()
    rss0 = _rss()
    _measure(jobs, 100_000)
    gc.collect()
    rss1 = _rss()
    if rss0 > 0:
        # 40 bytes lost per call would be 4 MB
        assert rss1 - rss0 < 4 * 2**20, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"
    grown = _traced_growth(jobs, 1_000, 10_000)
    assert grown < 16 * 1024, f"Python allocations grew by {grown} B"


def test_large_calls_keep_memory_flat():
    """10^2 calls on 10^6 elements: the outputs are freed (RSS grows by less than one)."""
    rng = np.random.default_rng(6)
    jobs = []
    for name in NAMES:
        loss = fastloss.get(name)
        work = 1_000_000 if loss.independent_samples else 40_000
        call = numpy_call(loss, 0, rng, work=work)
        arrays, w = arrays_of(call), weights_of(call)
        jobs.append(lambda loss=loss, a=arrays, w=w: loss.loss_gradient(
            *a, sample_weight=w, reduction="none"))
    _measure(jobs, 2 * len(jobs))
    gc.collect()
    rss0 = _rss()
    grown = _traced_growth(jobs, 0, 100)
    rss1 = _rss()
    assert grown < 1 * 2**20, f"Python allocations grew by {grown} B"
    if rss0 > 0:
        assert rss1 - rss0 < 8 * 2**20, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# 64-bit indexing: more than 2^31 elements (about 17 GB each; run with --runslow)
# ---------------------------------------------------------------------------------------------

N_HUGE = 2**31 + 4099       # past 2^31, and not a multiple of the block size


@pytest.mark.slow
def test_elementwise_gradient_past_2_31():
    """A loss, its sum and a gradient written beyond element 2^31 (Poisson, float32).

    The same array is y_true and y_pred (an input is never written), so 8.6 GB in and 8.6 GB out:
    with y = p = 0 the deviance is 2 and l' = 2; the last 3 elements are 1: l = 2 (e - 2) and
    l' = 2 (e - 1).
    """
    x = np.zeros(N_HUGE, np.float32)
    x[-3:] = 1.0
    g = np.empty(N_HUGE, np.float32)
    total, g = fastloss.Poisson().loss_gradient(x, x, reduction="sum", gradient_out=g,
                                                n_threads=2)
    e = math.e
    expect = 2.0 * (N_HUGE - 3) + 3 * 2.0 * (e - 2.0)
    assert float(total) == pytest.approx(expect, rel=1e-6)
    np.testing.assert_allclose(g[-3:], 2.0 * (e - 1.0), rtol=1e-6)
    assert g[-4] == 2.0 and g[2**31] == 2.0 and g[0] == 2.0
    assert float(fastloss.Poisson().loss(x, x, n_threads=2)) == pytest.approx(
        expect / N_HUGE, rel=1e-6)
    assert np.all(x[:-3] == 0)


@pytest.mark.slow
def test_rowwise_past_2_31():
    """The row-wise driver past 2^31 rows: contrastive loss on given distances (float32).

    One array is both the distances and the labels (8.6 GB, plus 8.6 GB for "none"): a 0 is a
    similar pair at distance 0 (loss 0), a 1 a dissimilar pair at distance 1, with margin 2 a
    loss of (2 - 1)^2 / 2 = 1/2.
    """
    x = np.zeros(N_HUGE, np.float32)
    x[::1021] = 1.0
    x[2**31] = 1.0
    x[-1] = 1.0
    ones = int(np.count_nonzero(x))
    loss = fastloss.Contrastive(margin=2.0)
    total = loss.loss(x, x, reduction="sum", n_threads=2)
    assert float(total) == 0.5 * ones
    assert float(loss.loss(x, x, n_threads=2)) == pytest.approx(0.5 * ones / N_HUGE, rel=1e-6)
    none = loss.loss(x, x, reduction="none", n_threads=2)
    assert none[-1] == 0.5 and none[2**31] == 0.5 and none[-2] == 0.0 and none[2**31 + 1] == 0.0
    assert float(np.sum(none, dtype=np.float64)) == 0.5 * ones
