"""Chunked readers and writers behind ``fastloss score`` (:mod:`fastloss.scoring`).

A *source* yields an input column (or ``K`` columns) in chunks of exactly ``chunk_rows`` rows (the
last one shorter), never holding more than one chunk: ``.npy`` files through a memory map of one
chunk's window at a time (unmapped before the next, so the mapped pages leave the process), Parquet
files row group by row group with pyarrow, CSV files a slice of lines at a time. A *sink* writes
per-row results chunk by chunk to a temporary file beside the target and renames it into place
only when the run completes, so an interrupted or failed run never leaves a half-written file
under the final name.

Every error a user can act on (missing file, unknown column, unsupported dtype, truncated file)
is a :class:`ScoringError` naming the argument and the file.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import tempfile
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["ScoringError", "open_source", "open_sink", "Source", "Sink"]


class ScoringError(ValueError):
    """Bad input to :func:`fastloss.score_files` that the user can fix (file, column, length...)."""


def _numeric(dtype: np.dtype, what: str) -> np.dtype:
    if dtype.kind not in "fiub":
        raise ScoringError(f"{what} must hold real numbers (float, int or bool), got dtype {dtype}")
    return dtype


def _import_pyarrow(what: str):
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the environment
        raise ScoringError(
            f"{what}: reading and writing Parquet needs pyarrow "
            "(pip install 'fastloss[parquet]')"
        ) from None
    return pq


# ----------------------------------------------------------------------------------- sources
class Source:
    """One input, read in chunks of rows.

    Attributes: ``name`` (the argument, for messages), ``path``, ``n_rows`` (``None`` when the
    format only knows it at the end, CSV), ``row_shape`` (``()`` or ``(K,)``), ``dtype``.
    """

    name: str
    path: str
    n_rows: Optional[int]
    row_shape: Tuple[int, ...]
    dtype: np.dtype

    def chunks(self, chunk_rows: int) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def fraction_done(self) -> Optional[float]:
        """Progress through the file when the row count is unknown (``None`` if not known)."""
        return None

    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize

    def describe(self) -> str:
        rows = "?" if self.n_rows is None else str(self.n_rows)
        return f"{self.path} ({rows} x {self.row_shape or 'scalar'}, {self.dtype})"


class ArraySource(Source):
    """An array already in memory (or a ``np.memmap`` the caller opened): chunks are views."""

    def __init__(self, arr: Any, name: str) -> None:
        a = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
        if a.ndim not in (1, 2):
            raise ScoringError(f"{name} must be 1-D (n,) or 2-D (n, K), got shape {a.shape}")
        self.arr = a
        self.name, self.path = name, f"<array {name}>"
        self.n_rows, self.row_shape = a.shape[0], a.shape[1:]
        self.dtype = _numeric(a.dtype, name)

    def chunks(self, chunk_rows: int) -> Iterator[np.ndarray]:
        for r0 in range(0, self.n_rows, chunk_rows):
            yield self.arr[r0:r0 + chunk_rows]


class NpySource(Source):
    """A ``.npy`` file, memory-mapped one chunk window at a time (C or Fortran order)."""

    def __init__(self, path: str, name: str) -> None:
        self.name, self.path = name, path
        with open(path, "rb") as f:
            fmt = np.lib.format
            try:
                version = fmt.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=100_000)
                elif version == (2, 0):
                    shape, fortran, dtype = fmt.read_array_header_2_0(f, max_header_size=100_000)
                else:  # (3, 0): utf-8 field names, no public reader
                    shape, fortran, dtype = fmt._read_array_header(  # type: ignore[attr-defined]
                        f, version, max_header_size=100_000)
            except ValueError as exc:
                raise ScoringError(f"{name}: {path} is not a valid .npy file ({exc})") from None
            self.offset = f.tell()
        if dtype.hasobject:
            raise ScoringError(f"{name}: {path} holds Python objects, expected numbers")
        self.dtype = _numeric(dtype, f"{name} ({path})")
        if len(shape) not in (1, 2):
            raise ScoringError(f"{name}: {path} must hold a 1-D (n,) or 2-D (n, K) array, "
                               f"got shape {shape}")
        self.n_rows, self.row_shape = int(shape[0]), tuple(int(k) for k in shape[1:])
        self.fortran = bool(fortran) and len(shape) == 2
        need = self.offset + self.n_rows * self.row_bytes()
        have = os.path.getsize(path)
        if have < need:
            raise ScoringError(f"{name}: {path} is truncated: its header says shape {shape} "
                               f"({need} bytes) but the file has {have} bytes")

    def _window(self, start_elem: int, count: int) -> np.ndarray:
        return np.memmap(self.path, dtype=self.dtype, mode="r",
                         offset=self.offset + start_elem * self.dtype.itemsize, shape=(count,))

    def _prefetch(self, fd: Optional[int], r0: int, rows: int, k: int) -> None:
        """Ask the OS to start reading rows ``r0:r0+rows`` while the current chunk computes."""
        if fd is None or rows <= 0:
            return
        spans = ([(r0 * k, rows * k)] if not self.fortran
                 else [(j * self.n_rows + r0, rows) for j in range(k)])
        for start, count in spans:
            os.posix_fadvise(fd, self.offset + start * self.dtype.itemsize,
                             count * self.dtype.itemsize, os.POSIX_FADV_WILLNEED)

    def chunks(self, chunk_rows: int) -> Iterator[np.ndarray]:
        n, k = self.n_rows, (self.row_shape[0] if self.row_shape else 1)
        fd = os.open(self.path, os.O_RDONLY) if hasattr(os, "posix_fadvise") else None
        try:
            yield from self._chunks(chunk_rows, n, k, fd)
        finally:
            if fd is not None:
                os.close(fd)

    def _chunks(self, chunk_rows: int, n: int, k: int, fd: Optional[int]) -> Iterator[np.ndarray]:
        buf = None
        for r0 in range(0, n, chunk_rows):
            rows = min(chunk_rows, n - r0)
            self._prefetch(fd, r0 + rows, min(chunk_rows, n - r0 - rows), k)
            if rows == 0 or k == 0:
                yield np.empty((rows,) + self.row_shape, self.dtype)
            elif not self.fortran:
                # A fresh mapping per chunk: dropping it unmaps the pages, so the resident set
                # never holds more than a chunk of the file.
                yield self._window(r0 * k, rows * k).reshape((rows,) + self.row_shape)
            else:
                # Fortran order: column j of the chunk is contiguous at (j * n + r0).
                if buf is None or buf.shape[0] != rows:
                    buf = np.empty((rows, k), self.dtype)
                for j in range(k):
                    col = self._window(j * n + r0, rows)
                    buf[:, j] = col
                    del col
                yield buf


def _select(available: Sequence[str], spec: Optional[str], name: str, path: str) -> List[str]:
    """Columns named by ``spec``: ``a``, ``a,b,c`` or a glob ``p_*`` (in the file's order)."""
    if spec is None:
        if len(available) == 1:
            return list(available)
        raise ScoringError(
            f"{name}: {path} has {len(available)} columns {list(available)}; "
            f"choose with {path}:COLUMN (or COL1,COL2,... or a pattern such as p_*)"
        )
    chosen: List[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if any(ch in part for ch in "*?["):
            hits = [c for c in available if fnmatch.fnmatchcase(c, part)]
        else:
            hits = [part] if part in available else []
            if not hits and part.isdigit() and int(part) < len(available):
                hits = [available[int(part)]]  # a 0-based position (CSV without a header)
        if not hits:
            raise ScoringError(
                f"{name}: column {part!r} is not in {path}; it has {list(available)}"
            )
        chosen += hits
    return chosen


def _is_multi(spec: Optional[str], chosen: Sequence[str]) -> bool:
    """Whether the columns make an ``(n, K)`` array: several, or asked for as a list/pattern."""
    listed = spec is not None and ("," in spec or any(ch in spec for ch in "*?["))
    return len(chosen) > 1 or listed


class ParquetSource(Source):
    """One or more numeric columns of a Parquet file, streamed by row group with pyarrow."""

    def __init__(self, path: str, columns: Optional[str], name: str) -> None:
        pq = _import_pyarrow(name)
        import pyarrow as pa

        self.name, self.path = name, path
        try:
            self.file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ScoringError(f"{name}: {path} is not a readable Parquet file ({exc})") from None
        schema = self.file.schema_arrow
        self.columns = _select(schema.names, columns, name, path)
        dtypes = []
        for c in self.columns:
            t = schema.field(c).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                raise ScoringError(f"{name}: column {c!r} of {path} has type {t}, "
                                   "expected numbers (integer, float or boolean)")
            dtypes.append(np.dtype(t.to_pandas_dtype()))
        self.dtype = np.result_type(*dtypes)
        self.n_rows = self.file.metadata.num_rows
        self.row_shape = (len(self.columns),) if _is_multi(columns, self.columns) else ()

    def chunks(self, chunk_rows: int) -> Iterator[np.ndarray]:
        k = len(self.columns)
        shape_of = (lambda r: (r, k)) if self.row_shape else (lambda r: (r,))
        buf = np.empty(shape_of(chunk_rows), self.dtype)
        fill = 0
        unique = list(dict.fromkeys(self.columns))  # a column may be asked for twice
        batches = self.file.iter_batches(batch_size=chunk_rows,
                                         columns=unique, use_threads=False)
        for batch in batches:
            pos, m = 0, batch.num_rows
            while pos < m:
                take = min(m - pos, chunk_rows - fill)
                for j, c in enumerate(self.columns):
                    col = batch.column(unique.index(c)).slice(pos, take)
                    if col.null_count:
                        raise ScoringError(f"{self.name}: column {c!r} of {self.path} has "
                                           "missing (null) values")
                    vals = col.to_numpy(zero_copy_only=False)
                    if self.row_shape:
                        buf[fill:fill + take, j] = vals
                    else:
                        buf[fill:fill + take] = vals
                fill += take
                pos += take
                if fill == chunk_rows:
                    yield buf
                    fill = 0
        if fill:
            yield buf[:fill]


class CsvSource(Source):
    """Numeric columns of a CSV file (``,``-separated, optional header), a slice of lines at a time.

    Values are read as float64 (integer labels included: the losses accept integral floats). The
    row count is only known at the end, so length mismatches surface when one file runs out.
    """

    def __init__(self, path: str, columns: Optional[str], name: str) -> None:
        self.name, self.path = name, path
        self.size = os.path.getsize(path)
        self.f = open(path, "r", newline="")
        first = self.f.readline()
        fields = [x.strip() for x in first.rstrip("\r\n").split(",")]
        if not first or fields == [""]:
            self.f.close()
            raise ScoringError(f"{name}: {path} is empty")
        try:
            [float(x) for x in fields]
            header, self.pending = [str(i) for i in range(len(fields))], [first]
        except ValueError:
            header, self.pending = [x.strip('"') for x in fields], []
        self.header = header
        chosen = _select(header, columns, name, path)
        self.usecols = tuple(header.index(c) for c in chosen)
        self.columns = chosen
        self.row_shape = (len(chosen),) if _is_multi(columns, chosen) else ()
        self.dtype = np.dtype(np.float64)
        self.n_rows = None
        self.consumed = len(first)

    def fraction_done(self) -> Optional[float]:
        return min(1.0, self.consumed / self.size) if self.size else None

    LINES_PER_PARSE = 1 << 16  # text held at once: ~100 bytes a line, whatever chunk_rows is

    def chunks(self, chunk_rows: int) -> Iterator[np.ndarray]:
        lines = itertools.chain(self.pending, self.f)
        k = len(self.usecols)
        buf = np.empty((chunk_rows, k), np.float64)
        row = fill = 0
        try:
            while True:
                block = list(itertools.islice(lines, min(self.LINES_PER_PARSE,
                                                         chunk_rows - fill)))
                done = not block
                if block:
                    self.consumed += sum(map(len, block))
                    try:
                        # blank lines are skipped: they are not rows (a trailing newline, say)
                        arr = np.loadtxt(block, delimiter=",", usecols=self.usecols,
                                         dtype=np.float64, ndmin=2, quotechar='"',
                                         comments=None)
                    except ValueError as exc:
                        raise ScoringError(f"{self.name}: {self.path}, data rows from {row}: "
                                           f"{exc}") from None
                    m = arr.shape[0]
                    buf[fill:fill + m] = arr
                    fill += m
                    row += m
                    del block, arr
                if fill and (fill == chunk_rows or done):
                    out = buf[:fill]
                    yield out if self.row_shape else out[:, 0]
                    del out
                    fill = 0
                if done:
                    return
        finally:
            self.f.close()


def _split_spec(spec: str) -> Tuple[str, Optional[str]]:
    """``FILE`` or ``FILE:columns``; a path that exists as given is never split."""
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    path, cols = spec.rsplit(":", 1)
    if not path or os.sep in cols or (os.altsep and os.altsep in cols):
        return spec, None
    return path, (cols or None)


def open_source(spec: Any, name: str) -> Source:
    """A :class:`Source` for ``spec``: a path (``FILE`` or ``FILE:columns``) or an array."""
    if not isinstance(spec, (str, os.PathLike)):
        return ArraySource(spec, name)
    path, cols = _split_spec(os.fspath(spec))
    if not os.path.exists(path):
        raise ScoringError(f"{name}: no such file: {path}")
    if os.path.isdir(path):
        raise ScoringError(f"{name}: {path} is a directory, expected a .npy, .parquet or .csv file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        if cols is not None:
            raise ScoringError(f"{name}: a .npy file has no columns to choose; got {spec!r}")
        return NpySource(path, name)
    if ext in (".parquet", ".pq"):
        return ParquetSource(path, cols, name)
    if ext in (".csv", ".txt"):
        return CsvSource(path, cols, name)
    raise ScoringError(f"{name}: unknown file type {ext or '(none)'!r} for {path}; "
                       "expected .npy, .parquet or .csv")


# ----------------------------------------------------------------------------------- sinks
class Sink:
    """Per-row results written chunk by chunk to a temporary file, renamed on :meth:`commit`."""

    def __init__(self, path: str) -> None:
        self.path = path
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise ScoringError(f"output: directory {d} does not exist")
        fd, self.tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                                        suffix=".partial", dir=d)
        os.close(fd)
        self.rows = 0

    def write(self, values: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        self._close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp made it private; give it a normal mode
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._close()
        except Exception:
            pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


class NpySink(Sink):
    """A ``.npy`` written in one stream; the header, whose shape is known only at the end, is
    reserved up front at a fixed length and filled in on commit."""

    HEADER_BYTES = 256  # a multiple of 64, room for any shape

    def __init__(self, path: str, row_shape: Tuple[int, ...], dtype: np.dtype) -> None:
        super().__init__(path)
        self.row_shape, self.dtype = row_shape, np.dtype(dtype)
        self.f = open(self.tmp, "wb")
        self.f.write(b"\0" * self.HEADER_BYTES)

    def _header(self) -> bytes:
        shape = (self.rows,) + tuple(self.row_shape)
        d = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
             "shape": shape}
        text = repr(d).encode("latin1")
        body = self.HEADER_BYTES - 10  # magic (6) + version (2) + length (2)
        text = text + b" " * (body - len(text) - 1) + b"\n"
        return b"\x93NUMPY\x01\x00" + np.uint16(body).tobytes() + text

    def write(self, values: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(values, self.dtype).data)
        self.rows += values.shape[0]

    def _close(self) -> None:
        if not self.f.closed:
            self.f.seek(0)
            self.f.write(self._header())
            self.f.close()


class ParquetSink(Sink):
    """A Parquet file, one row group per chunk: ``loss`` (or ``loss_0`` ... ``loss_{K-1}``)."""

    def __init__(self, path: str, row_shape: Tuple[int, ...], dtype: np.dtype) -> None:
        pq = _import_pyarrow("output")
        import pyarrow as pa

        super().__init__(path)
        self.pa = pa
        k = row_shape[0] if row_shape else 0
        self.names = [f"loss_{j}" for j in range(k)] if row_shape else ["loss"]
        typ = pa.from_numpy_dtype(np.dtype(dtype))
        self.schema = pa.schema([(n, typ) for n in self.names])
        self.writer = pq.ParquetWriter(self.tmp, self.schema)

    def write(self, values: np.ndarray) -> None:
        cols = [values] if values.ndim == 1 else [values[:, j] for j in range(values.shape[1])]
        table = self.pa.Table.from_arrays([self.pa.array(c) for c in cols], schema=self.schema)
        self.writer.write_table(table)
        self.rows += values.shape[0]

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def open_sink(path: str, row_shape: Tuple[int, ...], dtype: np.dtype) -> Sink:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return NpySink(path, row_shape, dtype)
    if ext in (".parquet", ".pq"):
        return ParquetSink(path, row_shape, dtype)
    raise ScoringError(f"output: per-row losses are written to .npy or .parquet, got {path!r}")
