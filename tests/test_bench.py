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
