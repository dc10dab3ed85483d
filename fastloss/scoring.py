"""Batch scoring of files too large for memory: :func:`score_files` and ``fastloss score``.

The inputs are read in chunks of ``chunk_rows`` rows (see :mod:`fastloss._fileio`), a multiple of
the kernels' block size. For ``"mean"`` and ``"sum"`` each chunk contributes the float64 sums of
its kernel blocks (:meth:`~fastloss.ElementwiseLoss.partial_sums`); they are folded in block order
with the same compensated summation the kernels use to combine blocks, so the streamed result is
bit for bit the result of one in-memory call on the whole arrays, for any chunk size and thread
count. ``"none"`` streams the per-row losses to a ``.npy`` or ``.parquet`` file, written under a
temporary name and renamed into place only when the run has finished.

Memory stays bounded by a few chunks whatever the file size: see :data:`MEMORY_NOTE`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _core
from ._base import ElementwiseLoss, Loss
from ._fileio import ScoringError, Sink, Source, open_sink, open_source
from ._registry import get as get_loss, loss_class
from ._threads import resolve_n_threads
from ._validation import compute_dtype

__all__ = ["score_files", "ScoreResult", "ScoringError", "DEFAULT_CHUNK_ROWS"]

BLOCK: int = _core.build_info()["block_size"]
DEFAULT_CHUNK_ROWS: int = 1 << 20  # 128 kernel blocks
MEMORY_NOTE = (
    "Memory: the inputs are never loaded whole. Beyond the interpreter's own footprint "
    "(about 30 MB with NumPy), peak memory is bounded by about 3 x CHUNK_ROWS x (bytes of "
    "one row of every input and of the output), whatever the file size: about 100 MB for "
    "float64 y_true, y_pred, sample weights and per-row output at the default "
    f"{DEFAULT_CHUNK_ROWS:,} rows (6 MB at --chunk-rows 65536). Reading or writing Parquet "
    "adds pyarrow's own footprint (about 100 MB) and one row group of the selected columns."
)

PathOrArray = Union[str, "os.PathLike[str]", np.ndarray]


@dataclass
class ScoreResult:
    """What :func:`score_files` computed.

    ``value`` is the reduced loss (a NumPy scalar of the compute dtype) or ``None`` with
    ``reduction="none"``, whose per-row losses went to ``output``. ``samples`` counts elements
    for element-wise losses on ``(n, K)`` inputs (rows otherwise); ``weight_sum`` is ``sum(w)``
    (``samples`` without weights). ``exact`` says whether the reduction reproduces the in-memory
    call bit for bit (losses with ``partial_sums``; others agree to rounding).
    """

    loss: str
    reduction: str
    value: Any
    rows: int
    samples: int
    weight_sum: float
    dtype: str
    chunk_rows: int
    n_threads: int
    seconds: float
    output: Optional[str] = None
    exact: bool = True
    inputs: Dict[str, str] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["value"] = None if self.value is None else float(self.value)
        d["rows_per_second"] = self.rows_per_second
        return d


# ------------------------------------------------------------------------------ reductions
class _OrderedSum:
    """Neumaier's compensated sum, folded one value at a time in order.

    The same operations as ``combine`` in ``_blocks.pxd``: folding the block partials of
    consecutive chunks gives exactly the kernels' combination of all the blocks at once.
    """

    __slots__ = ("s", "c")

    def __init__(self) -> None:
        self.s = 0.0
        self.c = 0.0

    def add(self, values: np.ndarray) -> None:
        s, c = self.s, self.c
        for x in values.tolist():
            t = s + x
            if abs(s) >= abs(x):
                c += (s - t) + x
            else:
                c += (x - t) + s
            s = t
        self.s, self.c = s, c

    def value(self) -> float:
        return self.s + self.c


def _block_sums(values: np.ndarray) -> np.ndarray:
    """float64 sums of consecutive blocks of ``BLOCK`` values (for losses without partials)."""
    v = np.ascontiguousarray(values, np.float64).reshape(-1)
    if v.size == 0:
        return np.zeros(0)
    return np.add.reduceat(v, np.arange(0, v.size, BLOCK))


class _Reducer:
    """Accumulates ``(sum w*l, sum w)`` over chunks for one loss.

    With the loss's ``partial_sums`` hook the sums are the kernels' own block sums (exact).
    Without it (a loss from elsewhere, or a family without the hook) the per-sample losses of
    ``reduction="none"`` are summed in float64, and for ``"mean"`` each chunk checks that the
    loss's own mean is ``sum(w*l) / sum(w)``: a loss that divides by something else (class
    weights, ignored rows) is refused rather than averaged wrongly.
    """

    def __init__(self, loss: Loss, weighted: bool, n_threads: int,
                 reduction: str = "sum") -> None:
        self.loss, self.weighted, self.nt, self.reduction = loss, weighted, n_threads, reduction
        self.exact = hasattr(loss, "partial_sums")
        self.l_sum, self.w_sum = _OrderedSum(), _OrderedSum()

    def add(self, yt: np.ndarray, yp: np.ndarray, w: Optional[np.ndarray]) -> None:
        if self.exact:
            lp, wp = self.loss.partial_sums(yt, yp, sample_weight=w,  # type: ignore[attr-defined]
                                            n_threads=self.nt)
        else:
            vals = self.loss.loss(yt, yp, sample_weight=w, reduction="none",  # type: ignore
                                  n_threads=self.nt)
            lp, wp = _block_sums(vals), None if w is None else _block_sums(w)
            if self.reduction == "mean":
                self._check_mean(yt, yp, w, vals, lp, wp)
        self.l_sum.add(lp)
        if wp is not None:
            self.w_sum.add(wp)

    def _check_mean(self, yt, yp, w, vals, lp, wp) -> None:
        denom = float(np.sum(wp)) if wp is not None else float(np.shape(vals)[0])
        if denom <= 0:
            return
        own = float(self.loss.loss(yt, yp, sample_weight=w, reduction="mean",  # type: ignore
                                   n_threads=self.nt))
        ours = float(np.sum(lp)) / denom
        tol = 1e-5 if np.asarray(vals).dtype == np.float32 else 1e-10
        if math.isfinite(own) and math.isfinite(ours) and \
                not math.isclose(own, ours, rel_tol=tol, abs_tol=tol * 1e-3):
            raise ScoringError(
                f"{self.loss!r}: its mean is not sum(w*l) / sum(w) (class weights or ignored "
                "rows?) and it has no partial_sums hook to stream it exactly; use "
                "reduction='sum' or 'none'"
            )

    def result(self, reduction: str, samples: int, dtype: np.dtype):
        total = self.l_sum.value()
        wsum = self.w_sum.value() if self.weighted else float(samples)
        if reduction == "mean" and self.weighted and wsum == 0 and samples > 0:
            raise ScoringError("sample_weight must not sum to 0 with reduction='mean'")
        finish = getattr(self.loss, "reduce_sums", None)
        if finish is not None:
            return finish(total, wsum, reduction, dtype), wsum
        if reduction == "mean":
            return dtype.type(total / wsum if wsum > 0 else math.nan), wsum
        return dtype.type(total), wsum


# ------------------------------------------------------------------------------ progress
class _ProgressBar:
    """A one-line progress bar on a terminal stream, redrawn at most ten times a second."""

    def __init__(self, total: Optional[int], label: str, stream: Any = None) -> None:
        self.total, self.label = total, label
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self.last = -1.0
        self.width = 30

    def __call__(self, rows: int, fraction: Optional[float], final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < 0.1:
            return
        self.last = now
        if self.total:
            fraction = rows / self.total
        elapsed = max(now - self.t0, 1e-9)
        rate = rows / elapsed
        if fraction is None:
            bar, pct, eta = "", "", ""
        else:
            fraction = min(max(fraction, 0.0), 1.0)
            filled = int(round(fraction * self.width))
            bar = "[" + "#" * filled + "." * (self.width - filled) + "] "
            pct = f"{100 * fraction:5.1f}% "
            left = elapsed * (1 - fraction) / fraction if fraction > 0 else math.nan
            eta = f" ETA {_hms(left)}" if not final and math.isfinite(left) else ""
        total = f"/{_si(self.total)}" if self.total else ""
        line = f"\r{self.label} {bar}{pct}{_si(rows)}{total} rows  {_si(rate)} rows/s{eta}"
        self.stream.write(line.ljust(getattr(self, "_prev", 0)))
        self._prev = len(line)
        if final:
            self.stream.write("\n")
        self.stream.flush()


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def _hms(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


# ------------------------------------------------------------------------------ the run
def _resolve_loss(loss: Any, params: Optional[Mapping[str, Any]]) -> Loss:
    if isinstance(loss, Loss):
        if params:
            raise ScoringError("params is only used with a loss given by name")
        return loss
    if isinstance(loss, str):
        params = dict(params or {})
        try:
            cls = loss_class(loss)
        except KeyError:
            return get_loss(loss, **params)  # raises, listing the losses
        known = [p.name for p in getattr(cls, "params", ())]
        for name in params:
            if name not in known:
                raise TypeError(f"{cls.__name__}: unknown parameter {name!r}; it takes: "
                                f"{', '.join(known) or 'no parameters'}")
        return get_loss(loss, **params)
    if hasattr(loss, "loss") and callable(loss.loss):  # a loss-like object from elsewhere
        return loss
    raise TypeError(f"loss must be a fastloss loss object or a registered name, got {loss!r}")


def _check_chunk_rows(chunk_rows: Any) -> int:
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) \
            or chunk_rows < 1:
        raise ScoringError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    # Chunks must start on kernel block boundaries for the reduction to be exact.
    return int(-(-int(chunk_rows) // BLOCK) * BLOCK)


def _check_layout(loss: Loss, srcs: Dict[str, Source]) -> None:
    """Row counts (when the formats know them) and row shapes, before anything is read."""
    known = {k: s.n_rows for k, s in srcs.items() if s.n_rows is not None}
    if len(set(known.values())) > 1:
        a = next(iter(known))
        b = next(k for k in known if known[k] != known[a])
        raise ScoringError(
            "mismatched lengths: " + ", ".join(f"{k} has {n} rows" for k, n in known.items())
            + f" ({srcs[a].path} vs {srcs[b].path})"
        )
    yp, yt, w = srcs["y_pred"], srcs["y_true"], srcs.get("sample_weight")
    if isinstance(loss, ElementwiseLoss):
        for other in (yt, w):
            if other is not None and other.row_shape != yp.row_shape:
                raise ScoringError(
                    f"{other.name} and y_pred must have the same row shape for the element-wise "
                    f"{type(loss).__name__}: {other.name} rows are "
                    f"{other.row_shape or 'scalars'}, y_pred rows are {yp.row_shape or 'scalars'}"
                )
    else:  # row-wise (multiclass): y_pred (n, K), y_true labels (n,) or (n, K), weights (n,)
        if len(yp.row_shape) != 1:
            raise ScoringError(f"{type(loss).__name__} needs y_pred of shape (n, K) (a 2-D .npy "
                               "or several columns FILE:c1,c2,...), got one value per row")
        if yt.row_shape not in ((), yp.row_shape):
            raise ScoringError(f"y_true must be labels (n,) or probabilities of y_pred's shape "
                               f"(n, {yp.row_shape[0]}), got rows of shape {yt.row_shape}")
        if w is not None and w.row_shape != ():
            raise ScoringError("sample_weight must have one value per row, got rows of shape "
                               f"{w.row_shape}")


def _zip_chunks(srcs: Dict[str, Source], chunk_rows: int) -> Iterator[Dict[str, np.ndarray]]:
    """Chunks of every source side by side; a source ending early is a length mismatch."""
    names = list(srcs)
    iters = [srcs[k].chunks(chunk_rows) for k in names]
    rows = 0
    sentinel = object()
    try:
        while True:
            got = [next(it, sentinel) for it in iters]
            ended = [k for k, c in zip(names, got) if c is sentinel]
            if len(ended) == len(names):
                return
            sizes = {k: (0 if c is sentinel else c.shape[0]) for k, c in zip(names, got)}
            if ended or len(set(sizes.values())) > 1:
                short = min(sizes, key=sizes.get)  # type: ignore[arg-type]
                raise ScoringError(
                    f"mismatched lengths: {short} ({srcs[short].path}) has "
                    f"{rows + sizes[short]} rows, "
                    + ", ".join(f"{k} has more" for k in names if sizes[k] > sizes[short])
                )
            rows += sizes[names[0]]
            yield dict(zip(names, got))  # type: ignore[arg-type]
            del got  # hold no chunk while the next is read
    finally:
        for it in iters:
            close = getattr(it, "close", None)
            if close is not None:
                close()


def score_files(
    loss: Union[str, Loss],
    y_true: PathOrArray,
    y_pred: PathOrArray,
    *,
    sample_weight: Optional[PathOrArray] = None,
    reduction: str = "mean",
    output: Optional[Union[str, "os.PathLike[str]"]] = None,
    params: Optional[Mapping[str, Any]] = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    n_threads: Optional[int] = None,
    progress: Union[None, bool, Callable[[int, Optional[int]], Any]] = None,
) -> ScoreResult:
    """Score predictions against targets stored in files, streamed in chunks of bounded memory.

    Parameters
    ----------
    loss : str or Loss
        A loss object (``fastloss.Huber(delta=2)``) or a registered name (``"huber"``, with
        ``params``).
    y_true, y_pred, sample_weight : str, path or ndarray
        ``FILE.npy`` (memory-mapped, ``(n,)`` or ``(n, K)``), ``FILE.parquet:COLUMN``,
        ``FILE.csv:COLUMN`` (several columns ``FILE:c1,c2,...`` or a pattern ``FILE:p_*`` make an
        ``(n, K)`` input; a file with a single column needs no ``:COLUMN``), or an array in
        memory (a ``np.memmap`` you opened keeps the pages it read mapped: give the path to
        bound memory).
    reduction : {"mean", "sum", "none"}
        ``"none"`` writes the per-row losses ``w*l`` to ``output``.
    output : str or path, optional
        ``.npy`` or ``.parquet`` for ``reduction="none"`` (required then, unused otherwise). It
        is written under a temporary name and renamed when complete: a failed or interrupted run
        leaves no file under this name.
    params : mapping, optional
        Hyper-parameters when ``loss`` is a name.
    chunk_rows : int
        Rows per chunk, rounded up to a multiple of the kernel block size (8192). Memory is
        bounded by a few chunks (see :data:`MEMORY_NOTE`).
    n_threads : int, optional
        Kernel threads (default :func:`fastloss.get_num_threads`).
    progress : bool or callable, optional
        ``True`` draws a progress bar on stderr, ``None`` (default) does when stderr is a
        terminal; a callable is called as ``progress(rows_done, total_rows_or_None)`` after
        every chunk.

    Returns
    -------
    ScoreResult
        With ``value`` bit for bit equal to ``loss.loss(y_true, y_pred, sample_weight=...,
        reduction=...)`` on the whole arrays in memory.

    Raises
    ------
    ScoringError
        (a ``ValueError``) for a missing file or column, mismatched lengths (before reading
        when the formats know their length), a bad reduction or output, or bad values in a chunk
        (with its row range). Unknown losses and parameters raise as :func:`fastloss.get` does.

    Examples
    --------
    >>> import numpy as np, fastloss, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "y.npy"), np.zeros(100_000))
    >>> np.save(os.path.join(d, "p.npy"), np.full(100_000, 3.0))
    >>> r = fastloss.score_files("huber", os.path.join(d, "y.npy"), os.path.join(d, "p.npy"),
    ...                          params={"delta": 2.0}, chunk_rows=8192)
    >>> float(r.value)   # 2 * (3 - 2 / 2)
    4.0
    """
    t0 = time.perf_counter()
    loss_obj = _resolve_loss(loss, params)
    allowed = tuple(getattr(loss_obj, "reductions", ("mean", "sum", "none")))
    if reduction not in allowed:
        raise ScoringError(f"reduction must be one of {', '.join(map(repr, allowed))} for "
                           f"{loss_obj!r}, got {reduction!r}")
    chunk_rows = _check_chunk_rows(chunk_rows)
    nt = resolve_n_threads(n_threads)
    if reduction == "none":
        if output is None:
            raise ScoringError("reduction='none' needs an output file (.npy or .parquet)")
        output = os.fspath(output)
    elif output is not None:
        raise ScoringError("output is only used with reduction='none' (the per-row losses)")

    srcs: Dict[str, Source] = {"y_true": open_source(y_true, "y_true"),
                               "y_pred": open_source(y_pred, "y_pred")}
    if sample_weight is not None:
        srcs["sample_weight"] = open_source(sample_weight, "sample_weight")
    if output is not None:
        for s in srcs.values():
            if os.path.exists(s.path) and os.path.exists(output) \
                    and os.path.samefile(s.path, output):
                raise ScoringError(f"output {output} is also the input {s.name}")
    _check_layout(loss_obj, srcs)
    yp = srcs["y_pred"]
    dtype = compute_dtype(np.empty(0, yp.dtype))
    elementwise = isinstance(loss_obj, ElementwiseLoss)
    per_row = int(np.prod(yp.row_shape)) if elementwise else 1
    total = yp.n_rows
    for s in srcs.values():
        total = s.n_rows if total is None else total

    if callable(progress) and not isinstance(progress, bool):
        report: Optional[Callable[[int, Optional[float], bool], Any]] = (
            lambda rows, frac, final=False: progress(rows, total)  # type: ignore[misc]
        )
    elif progress or (progress is None and _isatty(sys.stderr)):
        report = _ProgressBar(total, f"{loss_obj!r}")
    else:
        report = None

    sink: Optional[Sink] = None
    reducer = _Reducer(loss_obj, "sample_weight" in srcs, nt, reduction)
    rows = 0
    try:
        if reduction == "none":
            sink = open_sink(output, yp.row_shape if elementwise else (), dtype)  # type: ignore
        for chunk in _zip_chunks(srcs, chunk_rows):
            yt_c, yp_c, w_c = chunk["y_true"], chunk["y_pred"], chunk.get("sample_weight")
            m = yp_c.shape[0]
            try:
                if sink is not None:
                    sink.write(loss_obj.loss(yt_c, yp_c, sample_weight=w_c,  # type: ignore
                                             reduction="none", n_threads=nt))
                else:
                    reducer.add(yt_c, yp_c, w_c)
            except (ValueError, TypeError) as exc:
                raise ScoringError(f"rows {rows}-{rows + m - 1}: {exc}") from exc
            del chunk, yt_c, yp_c, w_c  # unmap this chunk before reading the next
            rows += m
            if report is not None:
                report(rows, _fraction(srcs))
        samples = rows * per_row
        value, wsum = None, float(samples)
        if sink is None:
            value, wsum = reducer.result(reduction, samples, dtype)
        else:
            sink.commit()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        if isinstance(report, _ProgressBar):
            report(rows, _fraction(srcs), final=True)
    return ScoreResult(
        loss=repr(loss_obj), reduction=reduction, value=value, rows=rows, samples=samples,
        weight_sum=wsum, dtype=str(dtype), chunk_rows=chunk_rows, n_threads=nt,
        seconds=time.perf_counter() - t0, output=output, exact=reducer.exact or sink is not None,
        inputs={k: s.path for k, s in srcs.items()},
    )


def _fraction(srcs: Dict[str, Source]) -> Optional[float]:
    fr = [f for f in (s.fraction_done() for s in srcs.values()) if f is not None]
    return min(fr) if fr else None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# ------------------------------------------------------------------------------ command line
_DESCRIPTION = """\
Score predictions against targets stored in files too large for memory, streamed in chunks.

Inputs: FILE.npy (memory-mapped; (n,) or (n, K)), FILE.parquet:COLUMN (row groups streamed
with pyarrow), FILE.csv:COLUMN (header optional; a column is a name or a 0-based index).
COL1,COL2,... or a pattern such as FILE.parquet:p_* gives an (n, K) input (multiclass
predictions, or K element-wise columns); a file with one column needs no :COLUMN.

"mean" and "sum" equal the in-memory result bit for bit (the same fixed-block float64 partial
sums). "none" writes the per-row losses to --output FILE.npy or FILE.parquet, under a temporary
name renamed into place when complete: an interrupted run leaves no file under that name.
"""

_EPILOG = """\
{memory}

Examples:
  fastloss score --loss huber --param delta=2 --y-true y.npy --y-pred p.npy
  fastloss score --loss mse --y-true data.parquet:target --y-pred data.parquet:pred \\
      --sample-weight data.parquet:w --format json
  fastloss score --loss log_cosh --y-true y.csv:y --y-pred p.csv:pred --reduction none \\
      --output losses.npy
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "score", help="a loss over files too large for memory, streamed in chunks",
        description=_DESCRIPTION, epilog=_EPILOG.format(memory=_wrap(MEMORY_NOTE)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--loss", required=True, metavar="NAME",
                   help="a loss name (see `fastloss info`), e.g. huber, mse, poisson")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a loss hyper-parameter, e.g. delta=2 or from_logits=true (repeatable)")
    p.add_argument("--y-true", required=True, metavar="FILE[:COLS]", help="targets")
    p.add_argument("--y-pred", required=True, metavar="FILE[:COLS]", help="predictions")
    p.add_argument("--sample-weight", metavar="FILE[:COLS]", help="non-negative sample weights")
    p.add_argument("--reduction", choices=("mean", "sum", "none"), default="mean",
                   help="mean (default, weighted), sum, or none (per-row losses to --output)")
    p.add_argument("--output", metavar="FILE",
                   help="with --reduction none: FILE.npy or FILE.parquet for the per-row "
                        "losses (required); otherwise the report goes there instead of stdout")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="report format (default: table)")
    p.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, metavar="N",
                   help=f"rows per chunk, rounded up to a multiple of {BLOCK} "
                        f"(default {DEFAULT_CHUNK_ROWS}); memory grows with it")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="kernel threads (default: fastloss.get_num_threads())")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar (there is none when stderr is not a terminal)")
    return p


def _wrap(text: str, width: int = 79) -> str:
    import textwrap

    return textwrap.fill(text, width)


def _parse_params(items: Sequence[str]) -> Dict[str, Any]:
    params: Dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw:
            raise ScoringError(f"--param must be NAME=VALUE, got {item!r}")
        low = raw.lower()
        if low in ("true", "false"):
            params[name] = low == "true"
            continue
        try:
            params[name] = int(raw) if raw.lstrip("+-").isdigit() else float(raw)
        except ValueError:
            raise ScoringError(f"--param {name}: expected a number or true/false, "
                               f"got {raw!r}") from None
    return params


def format_table(result: ScoreResult) -> str:
    rows: List[tuple] = [("loss", result.loss), ("reduction", result.reduction)]
    if result.value is not None:
        rows.append(("value", str(result.value)))
    if result.output:
        rows.append(("output", result.output))
    rows += [
        ("rows", f"{result.rows:,}"),
        ("samples", f"{result.samples:,}"),
        ("weight_sum", repr(result.weight_sum)),
        ("dtype", result.dtype),
        ("seconds", f"{result.seconds:.3f}"),
        ("rows/s", f"{result.rows_per_second:,.0f}"),
    ]
    return "\n".join(f"{k:<11} {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    def fail(msg: str, code: int = 2) -> int:
        print(f"fastloss score: error: {msg}", file=sys.stderr)
        return code

    # SIGTERM unwinds like Ctrl-C, so the temporary output is removed.
    def _term(signum, frame):
        raise KeyboardInterrupt

    old = None
    try:
        old = signal.signal(signal.SIGTERM, _term)
    except ValueError:  # not the main thread
        pass
    try:
        params = _parse_params(args.param)
        result = score_files(
            args.loss, args.y_true, args.y_pred, sample_weight=args.sample_weight,
            reduction=args.reduction,
            output=args.output if args.reduction == "none" else None,
            params=params, chunk_rows=args.chunk_rows, n_threads=args.threads,
            progress=False if args.quiet else None,
        )
        text = (json.dumps(result.to_dict(), indent=2) if args.format == "json"
                else format_table(result))
        if args.output and args.reduction != "none":
            _write_report(args.output, text + "\n")
        else:
            print(text)
        return 0
    except KeyboardInterrupt:
        return fail("interrupted; no output was written", 130)
    except (ValueError, TypeError, OSError) as exc:
        return fail(str(exc))
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _write_report(path: str, text: str) -> None:
    tmp = f"{path}.partial-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
