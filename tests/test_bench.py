"""``fastloss bench``: the NumPy baselines are right, and the command runs and reports."""

import json

import numpy as np
import pytest

from fastloss import _bench
from fastloss.cli import main


@pytest.mark.parametrize("name", list(_bench.BASELINES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_baselines_compute_what_fastloss_computes(name, dtype):
    """A fair comparison: each NumPy baseline returns the mean loss, its gradient and hessian,
    equal to fastloss's, and both agree with the float64 computation."""
    np_fn, factory, kind = _bench.BASELINES[name]
    y, p = _bench.make_data(kind, 2000, np.dtype(dtype))
    lv, g, h = factory().loss_gradient_hessian(y, p)
    nl, ng, nh = np_fn(y.astype(np.float64), p.astype(np.float64))
    tol = 1e-10 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(lv, nl, rtol=tol)
    np.testing.assert_allclose(g, ng, rtol=tol, atol=tol * np.max(np.abs(ng)))
    np.testing.assert_allclose(h, nh, rtol=tol, atol=tol * np.max(np.abs(nh)) + 1e-30)


def test_bench_command_json(capsys):
    assert main(["bench", "--losses", "mse,huber", "--sizes", "1000", "--dtypes", "float64",
                 "--threads", "1", "--repeat", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["loss"], r["n"], r["threads"]) for r in rows] == [("mse", 1000, 1),
                                                                 ("huber", 1000, 1)]
    for r in rows:
        assert r["fastloss_s"] > 0 and r["numpy_s"] > 0 and r["probe_s"] > 0
        assert r["speedup"] == pytest.approx(r["numpy_s"] / r["fastloss_s"])


def test_bench_command_table_and_errors(capsys):
    assert main(["bench", "--losses", "mse", "--sizes", "1000", "--dtypes", "float32",
                 "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and "memory bound" in out and "float32" in out
    with pytest.raises(SystemExit, match="unknown loss"):
        main(["bench", "--losses", "nope"])


def test_bench_all_losses_and_rowwise_probe(capsys):
    """``--losses all`` runs every baseline, the row-wise one (softmax_ce, n rows of K classes)
    included, with a probe of the same traffic."""
    assert main(["bench", "--losses", "all", "--sizes", "300", "--dtypes", "float64",
                 "--threads", "1", "--repeat", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["loss"] for r in rows] == list(_bench.BASELINES)
    assert all(r["fastloss_s"] > 0 and r["probe_s"] > 0 for r in rows)


def test_best_times_interleaves_rounds_and_keeps_each_best(monkeypatch):
    """The rounds of fastloss, NumPy and the probe alternate (so a drift of the machine reaches
    all three alike), each function gets its own number of rounds, and each keeps its best."""
    calls = []
    clock = [0.0]
    # seconds per call: a warm-up, one calibration call (>= min_time, so one call a round),
    # then the rounds
    durations = {"a": [5.0, 1.0, 3.0, 2.0, 4.0], "b": [2.0, 4.0, 6.0, 1.0]}

    def timed(name):
        def fn():
            calls.append(name)
            k = sum(1 for c in calls if c == name) - 1
            seq = durations[name]
            clock[0] += seq[min(k, len(seq) - 1)]
        return fn

    monkeypatch.setattr(_bench.time, "perf_counter", lambda: clock[0])
    a, b = timed("a"), timed("b")
    best = _bench.best_times([a, b], [3, 2], min_time=0.5)
    # the calibration (a a, b b), then the rounds a b a b a
    assert calls == ["a", "a", "b", "b", "a", "b", "a", "b", "a"]
    assert best == [2.0, 1.0]
