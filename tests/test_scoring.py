"""``fastloss score`` / ``fastloss.score_files``: streamed scoring of files larger than a chunk.

The property under test: the streamed result equals the in-memory call on the whole arrays bit
for bit, whatever the chunk size, format or thread count; the in-memory call is itself checked
here against the textbook formula written in NumPy (``_huber``). Files are generated in
``tmp_path``, always several chunks long (the smallest chunk is one kernel block, 8192 rows).
"""

import json
import math
import os
import pty
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastloss
from fastloss.scoring import BLOCK, ScoringError, score_files
from fastloss import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 5 * BLOCK + 1234  # six chunks of one block, the last one partial


def _huber(y, p, delta):
    e = np.asarray(y, np.float64) - np.asarray(p, np.float64)
    return np.where(np.abs(e) <= delta, 0.5 * e * e, delta * (np.abs(e) - 0.5 * delta))


@pytest.fixture
def data(rng):
    y = rng.normal(size=N)
    p = y + rng.normal(scale=2.0, size=N)
    w = rng.random(N)
    return y, p, w


def _save(tmp_path, **arrays):
    out = {}
    for name, arr in arrays.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, arr)
        out[name] = str(path)
    return out


def _same(a, b):
    """Bitwise equality of two scalars of the same dtype (NaN equal to NaN)."""
    return type(a) is type(b) and (a == b or (math.isnan(a) and math.isnan(b)))


# ---------------------------------------------------------------------------------------------
# The hooks the streaming is built on
# ---------------------------------------------------------------------------------------------

def test_partial_sums_combine_to_the_in_memory_reduction(data):
    y, p, w = data
    loss = fastloss.Huber(delta=1.5)
    lp, wp = loss.partial_sums(y, p, sample_weight=w)
    assert lp.shape == wp.shape == (-(-N // BLOCK),)
    # each block's sum is that block's w*l, in float64 (independent formula)
    ref = _huber(y, p, 1.5) * w
    np.testing.assert_allclose(lp, [ref[i:i + BLOCK].sum() for i in range(0, N, BLOCK)],
                               rtol=1e-12)
    np.testing.assert_allclose(wp, [w[i:i + BLOCK].sum() for i in range(0, N, BLOCK)],
                               rtol=1e-13)
    total = fastloss._core.combine_partials(lp)
    wsum = fastloss._core.combine_partials(wp)
    for red in ("mean", "sum"):
        assert _same(loss.reduce_sums(total, wsum, red, np.float64),
                     loss.loss(y, p, sample_weight=w, reduction=red))
    assert loss.partial_sums(y, p)[1] is None
    with pytest.raises(ValueError, match="non-negative"):
        loss.partial_sums(y, p, sample_weight=-w)


def test_weight_total_scales_a_chunk_like_the_whole_array(data):
    y, p, w = data
    loss = fastloss.Huber()
    whole = loss.gradient(y, p, sample_weight=w)
    wsum = fastloss._core.weight_sum(w, 1)[0]
    cut = 3 * BLOCK + 17
    parts = [loss._run(y[s], p[s], w[s], "mean", 1, loss=False, grad=True, hess=False,
                       weight_total=wsum)[1] for s in (slice(0, cut), slice(cut, None))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # a chunk whose own weights are all zero is fine when the whole array's are not
    zero = np.zeros(10)
    g = loss._run(y[:10], p[:10], zero, "mean", 1, loss=False, grad=True, hess=False,
                  weight_total=1.0)[1]
    np.testing.assert_array_equal(g, np.zeros(10))


# ---------------------------------------------------------------------------------------------
# Exact reductions, every format
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", [fastloss.Huber(delta=2.0), fastloss.MSE(), fastloss.RMSE(),
                                  fastloss.LogCosh(), fastloss.Quantile(quantile=0.3)],
                         ids=repr)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_npy_reductions_equal_the_in_memory_call_bit_for_bit(tmp_path, data, loss, weighted,
                                                             dtype):
    y, p, w = data
    p = p.astype(dtype)
    files = _save(tmp_path, y=y, p=p, w=w)
    sw = w if weighted else None
    for red in loss.reductions:
        if red == "none":
            continue
        ref = loss.loss(y, p, sample_weight=sw, reduction=red)
        for chunk in (BLOCK, 3 * BLOCK, 10_000, 1 << 20):
            r = score_files(loss, files["y"], files["p"], reduction=red, chunk_rows=chunk,
                            sample_weight=files["w"] if weighted else None)
            assert _same(r.value, ref), (red, chunk, r.value, ref)
            assert r.exact and r.rows == N and r.dtype == np.dtype(dtype).name


def test_the_in_memory_reference_is_the_textbook_formula(tmp_path, data):
    y, p, w = data
    files = _save(tmp_path, y=y, p=p, w=w)
    r = score_files("huber", files["y"], files["p"], sample_weight=files["w"],
                    params={"delta": 2.0}, chunk_rows=BLOCK)
    expected = math.fsum(_huber(y, p, 2.0) * w) / math.fsum(w)
    assert r.value == pytest.approx(expected, rel=1e-13)
    assert r.weight_sum == pytest.approx(math.fsum(w), rel=1e-14)


def test_thread_count_does_not_change_the_result(tmp_path, data):
    y, p, _ = data
    files = _save(tmp_path, y=y, p=p)
    ref = fastloss.LogCosh().loss(y, p)
    for nt in (1, 2, 3):
        assert _same(score_files("log_cosh", files["y"], files["p"], chunk_rows=BLOCK,
                                 n_threads=nt).value, ref)


@pytest.mark.parametrize("order", ["C", "F"])
def test_two_dimensional_npy_elementwise(tmp_path, rng, order):
    y = rng.normal(size=(N // 3, 3))
    p = rng.normal(size=(N // 3, 3))
    files = _save(tmp_path, y=np.asarray(y, order=order), p=np.asarray(p, order=order),
                  w=np.asarray(rng.random(y.shape), order=order))
    w = np.load(files["w"])
    for red in ("mean", "sum"):
        r = score_files("mse", files["y"], files["p"], sample_weight=files["w"],
                        reduction=red, chunk_rows=BLOCK)
        assert _same(r.value, fastloss.MSE().loss(y, p, sample_weight=w, reduction=red))
        assert r.samples == y.size and r.rows == y.shape[0]
    out = tmp_path / "out.npy"
    score_files("mse", files["y"], files["p"], reduction="none", output=out, chunk_rows=BLOCK)
    np.testing.assert_array_equal(np.load(out), (y - p) ** 2)


def test_integer_targets_are_converted_like_in_memory(tmp_path, rng):
    y = rng.poisson(3.0, size=N).astype(np.int64)
    p = rng.normal(scale=0.3, size=N) + 1.0
    files = _save(tmp_path, y=y, p=p)
    r = score_files(fastloss.Poisson(), files["y"], files["p"], chunk_rows=BLOCK)
    assert _same(r.value, fastloss.Poisson().loss(y, p))


@pytest.fixture
def parquet_file(tmp_path, data, rng):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    y, p, w = data
    k = rng.normal(size=(N, 3))
    table = pa.table({"y": y, "p": p, "w": w.astype(np.float32), "count": rng.poisson(2, N),
                      "k_0": k[:, 0], "k_1": k[:, 1], "k_2": k[:, 2], "name": ["a"] * N})
    path = tmp_path / "data.parquet"
    pq.write_table(table, path, row_group_size=7001)  # row groups not aligned with chunks
    return str(path), table


def test_parquet_columns_and_weights(parquet_file):
    path, t = parquet_file
    y, p, w = (t[c].to_numpy() for c in ("y", "p", "w"))
    for red in ("mean", "sum"):
        r = score_files("huber", f"{path}:y", f"{path}:p", sample_weight=f"{path}:w",
                        reduction=red, chunk_rows=BLOCK, params={"delta": 0.5})
        assert _same(r.value, fastloss.Huber(delta=0.5).loss(y, p, sample_weight=w,
                                                             reduction=red))
    # K columns make an (n, K) input: a list (columns may repeat) or a pattern
    k = np.stack([t[f"k_{j}"].to_numpy() for j in range(3)], axis=1)
    yk = np.stack([y, y, y], axis=1)
    r = score_files("mae", f"{path}:y,y,y", f"{path}:k_*", chunk_rows=BLOCK)
    assert _same(r.value, fastloss.MAE().loss(yk, k))
    # an integer column as targets
    r = score_files("poisson", f"{path}:count", f"{path}:k_0", chunk_rows=2 * BLOCK)
    assert _same(r.value, fastloss.Poisson().loss(t["count"].to_numpy(), k[:, 0]))


def _write_csv(path, header, columns):
    with open(path, "w") as f:
        if header:
            f.write(",".join(header) + "\n")
        for row in zip(*(c.tolist() for c in columns)):
            f.write(",".join(repr(v) for v in row) + "\n")


def test_csv_with_and_without_header(tmp_path, data, monkeypatch):
    from fastloss import _fileio

    monkeypatch.setattr(_fileio.CsvSource, "LINES_PER_PARSE", 1000)  # several parses a chunk
    y, p, w = data
    _write_csv(tmp_path / "h.csv", ["target", "pred", "weight"], [y, p, w])
    _write_csv(tmp_path / "n.csv", None, [p, y])
    ref = fastloss.PseudoHuber().loss(y, p, sample_weight=w)
    h = str(tmp_path / "h.csv")
    r = score_files("pseudo_huber", f"{h}:target", f"{h}:pred", sample_weight=f"{h}:weight",
                    chunk_rows=BLOCK)
    assert _same(r.value, ref)
    # no header: columns by 0-based position; mixed with a .npy
    files = _save(tmp_path, w=w)
    n = str(tmp_path / "n.csv")
    r = score_files("pseudo_huber", f"{n}:1", f"{n}:0", sample_weight=files["w"],
                    chunk_rows=BLOCK)
    assert _same(r.value, ref)
    # blank lines are not rows
    text = (tmp_path / "h.csv").read_text().splitlines(keepends=True)
    (tmp_path / "b.csv").write_text("".join(text[:5000] + ["\n"] + text[5000:] + ["\n"]))
    b = str(tmp_path / "b.csv")
    r = score_files("pseudo_huber", f"{b}:target", f"{b}:pred", sample_weight=f"{b}:weight",
                    chunk_rows=BLOCK)
    assert _same(r.value, ref) and r.rows == N


# ---------------------------------------------------------------------------------------------
# Per-row output
# ---------------------------------------------------------------------------------------------

def test_reduction_none_streams_to_npy_and_parquet(tmp_path, data):
    y, p, w = data
    files = _save(tmp_path, y=y, p=p.astype(np.float32), w=w)
    ref = fastloss.Huber().loss(y, p.astype(np.float32), sample_weight=w, reduction="none")
    out = tmp_path / "loss.npy"
    r = score_files("huber", files["y"], files["p"], sample_weight=files["w"],
                    reduction="none", output=out, chunk_rows=BLOCK)
    got = np.load(out)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)
    assert r.value is None and r.output == str(out) and r.rows == N
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "loss.parquet"
    score_files("huber", files["y"], files["p"], sample_weight=files["w"], reduction="none",
                output=out, chunk_rows=BLOCK)
    np.testing.assert_array_equal(pq.read_table(out)["loss"].to_numpy(), ref)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".partial")]


def test_reduction_none_of_k_columns_to_parquet(tmp_path, rng):
    pq = pytest.importorskip("pyarrow.parquet")
    y, p = rng.normal(size=(N, 2)), rng.normal(size=(N, 2))
    files = _save(tmp_path, y=y, p=p)
    out = tmp_path / "loss.parquet"
    score_files("log_cosh", files["y"], files["p"], reduction="none", output=out,
                chunk_rows=BLOCK)
    t = pq.read_table(out)
    assert t.column_names == ["loss_0", "loss_1"]
    ref = fastloss.LogCosh().loss(y, p, reduction="none")
    np.testing.assert_array_equal(np.stack([t["loss_0"], t["loss_1"]], axis=1), ref)


def test_chunks_whose_weights_are_all_zero(tmp_path, data):
    y, p, w = data
    w[BLOCK:3 * BLOCK] = 0.0  # two whole chunks weigh nothing
    files = _save(tmp_path, y=y, p=p, w=w)
    r = score_files("mse", files["y"], files["p"], sample_weight=files["w"], chunk_rows=BLOCK)
    assert _same(r.value, fastloss.MSE().loss(y, p, sample_weight=w))


class RowMSE:
    """A row-wise loss from outside fastloss, in NumPy: ``l_i = mean_k (y_ik - p_ik)^2``.

    It has only the public ``loss`` method (no ``partial_sums``), so scoring takes the generic
    path. ``denominator`` != 1 makes its mean something other than ``sum(w*l) / sum(w)``.
    """

    reductions = ("mean", "sum", "none")

    def __init__(self, denominator=1.0):
        self.denominator = denominator

    def __repr__(self):
        return f"RowMSE({self.denominator})"

    def loss(self, y_true, y_pred, *, sample_weight=None, reduction="mean", n_threads=None):
        l = np.mean((np.asarray(y_true) - np.asarray(y_pred)) ** 2, axis=1)
        w = np.ones(len(l)) if sample_weight is None else np.asarray(sample_weight, float)
        if reduction == "none":
            return w * l
        if reduction == "sum":
            return np.float64(math.fsum(w * l))
        return np.float64(math.fsum(w * l) / (self.denominator * math.fsum(w)))


def test_a_row_wise_loss_without_the_hook(tmp_path, rng):
    y, p = rng.normal(size=(N, 3)), rng.normal(size=(N, 3))
    w = rng.random(N)
    files = _save(tmp_path, y=y, p=p, w=w)
    loss = RowMSE()
    for red in ("mean", "sum"):
        r = score_files(loss, files["y"], files["p"], sample_weight=files["w"], reduction=red,
                        chunk_rows=BLOCK)
        assert not r.exact and r.samples == N
        assert r.value == pytest.approx(loss.loss(y, p, sample_weight=w, reduction=red),
                                        rel=1e-14)
    out = tmp_path / "rows.npy"
    score_files(loss, files["y"], files["p"], reduction="none", output=out, chunk_rows=BLOCK)
    np.testing.assert_array_equal(np.load(out), loss.loss(y, p, reduction="none"))
    with pytest.raises(ScoringError, match=r"RowMSE\(2.0\): its mean is not sum\(w\*l\) / "
                                           r"sum\(w\)"):
        score_files(RowMSE(2.0), files["y"], files["p"], chunk_rows=BLOCK)
    r = score_files(RowMSE(2.0), files["y"], files["p"], reduction="sum", chunk_rows=BLOCK)
    assert r.value == pytest.approx(loss.loss(y, p, reduction="sum"), rel=1e-14)
    with pytest.raises(ScoringError, match=r"needs y_pred of shape \(n, K\)"):
        score_files(loss, files["w"], files["w"])


# ---------------------------------------------------------------------------------------------
# Multiclass (row-wise losses), when the classification family is there
# ---------------------------------------------------------------------------------------------

def test_multiclass_npy_and_integer_labels(tmp_path, rng):
    if not hasattr(fastloss, "CategoricalCrossEntropy"):
        pytest.skip("fastloss.CategoricalCrossEntropy is not built yet")
    loss = fastloss.CategoricalCrossEntropy(from_logits=True)
    k = 4
    logits = rng.normal(scale=3.0, size=(N, k))
    labels = rng.integers(0, k, size=N).astype(np.int32)
    w = rng.random(N)
    files = _save(tmp_path, y=labels, p=logits, w=w)
    for red in ("mean", "sum"):
        r = score_files(loss, files["y"], files["p"], sample_weight=files["w"],
                        reduction=red, chunk_rows=BLOCK)
        ref = loss.loss(labels, logits, sample_weight=w, reduction=red)
        assert r.value == pytest.approx(ref, rel=1e-14)
        if r.exact:
            assert _same(r.value, ref)
    # independent: -log softmax of the true class
    lse = np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1)) + logits.max(1)
    nll = lse - logits[np.arange(N), labels]
    r = score_files(loss, files["y"], files["p"], sample_weight=files["w"], chunk_rows=BLOCK)
    assert r.value == pytest.approx(math.fsum(nll * w) / math.fsum(w), rel=1e-12)
    out = tmp_path / "rows.npy"
    score_files(loss, files["y"], files["p"], reduction="none", output=out, chunk_rows=BLOCK)
    np.testing.assert_array_equal(np.load(out), loss.loss(labels, logits, reduction="none"))
    np.testing.assert_allclose(np.load(out), nll, rtol=1e-12, atol=1e-14)
    with pytest.raises(ScoringError, match="one value per row"):
        score_files(loss, files["y"], files["p"], sample_weight=files["p"])


# ---------------------------------------------------------------------------------------------
# Errors a user can act on, and interrupted runs
# ---------------------------------------------------------------------------------------------

def test_parquet_column_errors(parquet_file):
    path, _ = parquet_file
    with pytest.raises(ScoringError, match=r"y_pred: column 'pp' is not in .*it has \['y', 'p'"):
        score_files("mse", f"{path}:y", f"{path}:pp")
    with pytest.raises(ScoringError, match=r"has 8 columns .* choose with .*:COLUMN"):
        score_files("mse", path, f"{path}:p")
    with pytest.raises(ScoringError, match="column 'name' .* expected numbers"):
        score_files("mse", f"{path}:name", f"{path}:p")
    with pytest.raises(ScoringError, match=f"sample_weight has {N - 1} rows"):
        score_files("mse", f"{path}:y", f"{path}:p", sample_weight=np.zeros(N - 1))


def test_missing_file_wrong_column_and_bad_formats(tmp_path, data):
    y, p, _ = data
    files = _save(tmp_path, y=y, p=p)
    with pytest.raises(ScoringError, match="y_true: no such file: .*nope.npy"):
        score_files("mse", str(tmp_path / "nope.npy"), files["p"])
    _write_csv(tmp_path / "a.csv", ["a", "b"], [y, p])
    with pytest.raises(ScoringError, match=r"column 'c' is not in .*a.csv; it has \['a', 'b'\]"):
        score_files("mse", f"{tmp_path / 'a.csv'}:c", files["p"])
    (tmp_path / "x.txt.gz").write_bytes(b"")
    with pytest.raises(ScoringError, match="unknown file type '.gz'"):
        score_files("mse", str(tmp_path / "x.txt.gz"), files["p"])
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ScoringError, match="not a valid .npy file"):
        score_files("mse", str(tmp_path / "bad.npy"), files["p"])
    with open(files["p"], "rb") as f:
        (tmp_path / "cut.npy").write_bytes(f.read()[:-100])
    with pytest.raises(ScoringError, match="truncated"):
        score_files("mse", files["y"], str(tmp_path / "cut.npy"))


def test_mismatched_lengths_are_found_before_the_run_when_known(tmp_path, data):
    y, p, w = data
    files = _save(tmp_path, y=y, p=p[:-1], w=w)
    calls = []
    with pytest.raises(ScoringError, match=f"y_true has {N} rows, y_pred has {N - 1} rows"):
        score_files("mse", files["y"], files["p"], progress=lambda *a: calls.append(a))
    with pytest.raises(ScoringError, match=f"sample_weight has {N} rows"):
        score_files("mse", files["p"], files["p"], sample_weight=files["w"],
                    progress=lambda *a: calls.append(a))
    assert calls == []  # nothing was read
    with pytest.raises(ScoringError, match=r"same row shape .* y_true rows are scalars, "
                                           r"y_pred rows are \(2,\)"):
        score_files("mse", files["y"], _save(tmp_path, k=np.zeros((N, 2)))["k"])
    # CSV only knows its length at the end: found then, and no output is left behind
    _write_csv(tmp_path / "short.csv", ["y"], [y[: 2 * BLOCK + 5]])
    out = tmp_path / "o.npy"
    with pytest.raises(ScoringError, match=rf"y_true \(.*short.csv\) has {2 * BLOCK + 5} rows, "
                                           "y_pred has more"):
        score_files("mse", str(tmp_path / "short.csv"), files["y"], reduction="none",
                    output=out, chunk_rows=BLOCK)
    assert os.listdir(tmp_path).count("o.npy") == 0
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".partial")]


def test_unknown_loss_parameter_and_reduction(tmp_path, data):
    y, p, _ = data
    files = _save(tmp_path, y=y, p=p)
    with pytest.raises(ValueError, match="unknown loss 'hubber'; available: .*huber"):
        score_files("hubber", files["y"], files["p"])
    with pytest.raises(TypeError, match="Huber: unknown parameter 'dleta'; it takes: delta"):
        score_files("huber", files["y"], files["p"], params={"dleta": 1})
    with pytest.raises(ValueError, match="delta must be a finite number > 0, got -1"):
        score_files("huber", files["y"], files["p"], params={"delta": -1})
    with pytest.raises(ScoringError, match="reduction must be one of 'mean' for RMSE"):
        score_files("rmse", files["y"], files["p"], reduction="sum")
    with pytest.raises(ScoringError, match="needs an output file"):
        score_files("mse", files["y"], files["p"], reduction="none")
    with pytest.raises(ScoringError, match="written to .npy or .parquet"):
        score_files("mse", files["y"], files["p"], reduction="none", output=tmp_path / "o.csv")
    with pytest.raises(ScoringError, match="output .* is also the input y_pred"):
        score_files("mse", files["y"], files["p"], reduction="none", output=files["p"])
    with pytest.raises(ScoringError, match="chunk_rows must be a positive integer"):
        score_files("mse", files["y"], files["p"], chunk_rows=0)


def test_bad_values_name_the_rows_and_leave_no_output(tmp_path, data):
    y, p, w = data
    y = np.abs(y)
    y[4 * BLOCK + 3] = -1.0  # Poisson targets must be >= 0: in the fifth chunk
    w[2 * BLOCK] = -0.5
    files = _save(tmp_path, y=y, p=p, w=w)
    out = tmp_path / "o.parquet" if _has_pyarrow() else tmp_path / "o.npy"
    with pytest.raises(ScoringError, match=rf"rows {4 * BLOCK}-{5 * BLOCK - 1}: Poisson: "
                                           "y_true must be >= 0"):
        score_files("poisson", files["y"], files["p"], reduction="none", output=out,
                    chunk_rows=BLOCK)
    with pytest.raises(ScoringError, match=rf"rows {2 * BLOCK}-.*non-negative"):
        score_files("mse", files["p"], files["p"], sample_weight=files["w"], chunk_rows=BLOCK)
    with pytest.raises(ScoringError, match="must not sum to 0"):
        score_files("mse", files["p"], files["p"],
                    sample_weight=_save(tmp_path, z=np.zeros(N))["z"], chunk_rows=BLOCK)
    assert sorted(os.listdir(tmp_path)) == ["p.npy", "w.npy", "y.npy", "z.npy"]


def _has_pyarrow():
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("ext", [".npy", ".parquet"])
def test_an_interrupted_run_leaves_no_output(tmp_path, data, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    y, p, _ = data
    files = _save(tmp_path, y=y, p=p)
    out = tmp_path / ("old" + ext)
    out.write_bytes(b"previous result")

    def stop(rows, total):
        assert total == N
        if rows >= 3 * BLOCK:
            assert any(f.endswith(".partial") for f in os.listdir(tmp_path))  # mid-write
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_files("mse", files["y"], files["p"], reduction="none", output=out,
                    chunk_rows=BLOCK, progress=stop)
    assert out.read_bytes() == b"previous result"  # untouched under its final name
    assert sorted(os.listdir(tmp_path)) == sorted(["y.npy", "p.npy", out.name])


def test_cli_sigint_while_streaming_leaves_no_output(tmp_path, data):
    """A real interrupt: y_pred is a FIFO fed half-way, SIGINT once output is being written."""
    y, p, _ = data
    files = _save(tmp_path, y=y)
    fifo = tmp_path / "pred.csv"
    os.mkfifo(fifo)
    out = tmp_path / "losses.npy"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastloss", "score", "--loss", "mse", "--y-true", files["y"],
         "--y-pred", str(fifo), "--reduction", "none", "--output", str(out),
         "--chunk-rows", str(BLOCK)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with open(fifo, "w") as f:
            f.write("\n".join(map(repr, p[: 2 * BLOCK].tolist())) + "\n")
            f.flush()
            deadline = time.monotonic() + 60
            while not any(n.endswith(".partial") for n in os.listdir(tmp_path)):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.02)
            time.sleep(0.2)  # let it block reading the third chunk
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted; no output was written" in err
    assert sorted(os.listdir(tmp_path)) == ["pred.csv", "y.npy"]


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def test_cli_table_json_and_report_file(tmp_path, data, capsys):
    y, p, w = data
    files = _save(tmp_path, y=y, p=p, w=w)
    ref = fastloss.Huber(delta=2.0).loss(y, p, sample_weight=w)
    base = ["score", "--loss", "huber", "--param", "delta=2", "--y-true", files["y"],
            "--y-pred", files["p"], "--sample-weight", files["w"], "--chunk-rows", "8192"]
    assert cli.main(base) == 0
    text = capsys.readouterr().out
    assert "Huber(delta=2.0)" in text and f"value       {ref}" in text
    assert f"rows        {N:,}" in text
    assert cli.main(base + ["--format", "json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["value"] == float(ref) and report["rows"] == N and report["exact"]
    assert report["weight_sum"] == pytest.approx(math.fsum(w), rel=1e-14)
    assert cli.main(base + ["--format", "json", "--output", str(tmp_path / "r.json")]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads((tmp_path / "r.json").read_text())["value"] == float(ref)


def test_cli_errors_exit_2_with_a_message(tmp_path, data, capsys):
    y, p, _ = data
    files = _save(tmp_path, y=y, p=p[:100])
    cases = [
        (["--loss", "mse", "--y-true", str(tmp_path / "no.npy"), "--y-pred", files["p"]],
         "y_true: no such file"),
        (["--loss", "mse", "--y-true", files["y"], "--y-pred", files["p"]],
         f"mismatched lengths: y_true has {N} rows, y_pred has 100 rows"),
        (["--loss", "nope", "--y-true", files["y"], "--y-pred", files["p"]],
         "unknown loss 'nope'"),
        (["--loss", "huber", "--param", "delta", "--y-true", files["y"], "--y-pred", files["p"]],
         "--param must be NAME=VALUE"),
        (["--loss", "huber", "--param", "delta=x", "--y-true", files["y"],
          "--y-pred", files["p"]], "--param delta: expected a number"),
        (["--loss", "huber", "--param", "alpha=1", "--y-true", files["y"],
          "--y-pred", files["p"]], "unknown parameter 'alpha'"),
    ]
    for args, message in cases:
        assert cli.main(["score", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fastloss score: error: ") and message in err, err


def test_help_states_the_memory_bound(capsys):
    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Memory:" in out and "CHUNK_ROWS" in out and "whatever the file size" in out


def _run_cli(args, tty):
    """Run ``python -m fastloss score`` with stderr a pseudo-terminal or a pipe."""
    cmd = [sys.executable, "-m", "fastloss", "score", *args]
    if not tty:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO once the child has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode()
    proc.wait(timeout=120)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def test_progress_bar_only_on_a_terminal(tmp_path, data):
    y, p, _ = data
    files = _save(tmp_path, y=y, p=p)
    args = ["--loss", "mse", "--y-true", files["y"], "--y-pred", files["p"],
            "--chunk-rows", "8192"]
    code, out, err = _run_cli(args, tty=True)
    assert code == 0 and "value" in out
    assert "rows/s" in err and "100.0%" in err and f"{N / 1e3:.2f}k/{N / 1e3:.2f}k rows" in err
    code, out, err = _run_cli(args + ["--quiet"], tty=True)
    assert code == 0 and "value" in out and "rows/s" not in err
    code, out, err = _run_cli(args, tty=False)
    assert code == 0 and "value" in out and err == ""


# ---------------------------------------------------------------------------------------------
# Bounded memory
# ---------------------------------------------------------------------------------------------

def _peak_rss_mb(cmd):
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read()
    return usage.ru_maxrss / 1024  # kilobytes on Linux


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units are Linux's")
def test_peak_memory_is_bounded_on_a_file_many_chunks_long(tmp_path):
    n = 1 << 22  # 32 MiB per float64 file: 64 chunks of 65536 rows
    rng = np.random.default_rng(7)
    files = _save(tmp_path, y=rng.normal(size=n), p=rng.normal(size=n))
    file_mb = 2 * n * 8 / 2**20
    baseline = _peak_rss_mb([sys.executable, "-c", "import fastloss, fastloss.scoring"])
    common = [sys.executable, "-m", "fastloss", "score", "--loss", "huber", "--y-true",
              files["y"], "--y-pred", files["p"], "--chunk-rows", "65536", "--quiet"]
    for extra in ([], ["--reduction", "none", "--output", str(tmp_path / "o.npy")]):
        peak = _peak_rss_mb(common + extra)
        # one chunk of every input and of the output is ~1.5 MiB; the files are 64 MiB
        assert peak - baseline < 24, (extra, peak, baseline, file_mb)
    assert np.load(tmp_path / "o.npy", mmap_mode="r").shape == (n,)
