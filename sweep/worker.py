"""What runs on a Dask worker: the sweep's context (data, grid, config) and chunk tasks.

The context reaches every worker once through a worker plugin, not inside each task's
graph: the scheduler keeps the plugin and hands it to every worker that joins, so a task
never depends on the worker that first held the data. Synthetic and bundled data travel as
their recipe and are rebuilt on the worker (checked against the client's fingerprint);
file data travels as the panel itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from distributed.diagnostics.plugin import WorkerPlugin

from engine import METRIC_NAMES, Panel
from sweep.evaluate import evaluate_windows
from sweep.grid import ENGINE_AXES, strategy_columns
from sweep.plan import Chunk, TrialChunk
from sweep.schema import BLOCK_COLUMNS, ERROR, PRUNED, TRIAL
from sweep.search.objective import run_values
from sweep.spec import ResolvedSweep, SweepSpec
from sweep.store import ResultStore, StoreChangedError
from sweep.windows import Window

__all__ = [
    "StoreTarget", "SweepContextPlugin", "TrialResult", "Written", "chunk_tables", "context",
    "run_chunk", "run_chunks", "sees_store", "trial_tables",
]

logger = logging.getLogger("backsweep")
_CONTEXTS: dict[str, ResolvedSweep] = {}  # per worker process, by sweep key


@dataclass(frozen=True)
class _Payload:
    spec: dict[str, Any]
    fingerprint: str  # the panel's
    panel: Panel | None  # None: rebuild from spec["data"]
    series: dict[str, np.ndarray]  # benchmark / risk-free series read from files


class SweepContextPlugin(WorkerPlugin):
    """Worker plugin carrying one sweep's spec and data to every worker (also late ones).

    A worker whose rebuilt data differs from the client's (another version of the data
    generator) leaves the cluster rather than compute runs of other data."""

    def __init__(self, key: str, resolved: ResolvedSweep) -> None:
        self.key = key
        self.name = f"backsweep-{key}"
        spec = resolved.spec
        self.payload = _Payload(spec.to_dict(), resolved.panel.fingerprint,
                                None if spec.data_is_recipe else resolved.panel,
                                dict(resolved.series))

    def setup(self, worker: Any = None) -> None:
        try:
            install_context(self.key, self.payload)
        except DataMismatchError as exc:
            where = getattr(worker, "address", "this process")
            name = getattr(worker, "name", None)
            message = f"worker {where}" + (f" (name {name!r})" if name not in (None, where)
                                           else "") + f": {exc}"
            logger.error("backsweep: %s; it leaves the cluster", message)
            if worker is not None:
                worker.loop.add_callback(worker.close, nanny=True,
                                         reason="backsweep-data-mismatch")
            raise DataMismatchError(message) from None

    def teardown(self, worker: Any = None) -> None:
        _CONTEXTS.pop(self.key, None)
        with _SEGMENT_LOCK:  # a long-lived worker must not keep the sweep's indicators
            _SEGMENTS.pop(self.key, None)


def install_context(key: str, payload: _Payload) -> ResolvedSweep:
    if key in _CONTEXTS:
        return _CONTEXTS[key]
    spec = SweepSpec.from_dict(payload.spec)
    panel = payload.panel
    if panel is None:
        from engine.data import parse_data_spec

        panel = parse_data_spec(spec.data_source)
        if panel.fingerprint != payload.fingerprint:
            raise DataMismatchError(
                f"its data {spec.data!r}, rebuilt from the recipe, differs from the "
                f"client's (fingerprint {panel.fingerprint[:12]} != "
                f"{payload.fingerprint[:12]}): another version of backsweep's data "
                "generator or of numpy is installed there")
    # cluster.prepare shipped the modules; the series come with the data, not from files
    resolved = spec.resolve(panel, load_modules=False, series=payload.series)
    _CONTEXTS[key] = resolved
    return resolved


class DataMismatchError(RuntimeError):
    """A worker's rebuilt data is not the client's."""


def context(key: str) -> ResolvedSweep:
    try:
        return _CONTEXTS[key]
    except KeyError:
        raise RuntimeError(
            f"sweep context {key!r} is not installed on this worker (plugin missing)"
        ) from None


@dataclass(frozen=True)
class StoreTarget:
    """Where the client stores results, and a token the client wrote there: a worker that
    reads the same token from the same path shares the client's filesystem."""

    root: str
    token: str


def sees_store(target: StoreTarget) -> bool:
    """Does this process see the client's result store, and does the sweep still own it?
    (A local cluster, or a cluster on a shared filesystem; the client removes the token
    when it stops, so a task still running after an interrupted sweep writes nothing.)"""
    try:
        return ResultStore(target.root).token.read_text() == target.token
    except OSError:
        return False


@dataclass(frozen=True)
class TrialResult:
    """One window of a :class:`~sweep.plan.TrialChunk`: the window's index, its rows (an
    Arrow table for the client to write, or how many rows the worker wrote), each run's
    value for the search (in the chunk's order) and the seconds the chunk took."""

    window: int
    rows: pa.Table | int
    values: np.ndarray
    seconds: float = 0.0


def run_chunk(key: str, chunk: Chunk | TrialChunk, target: StoreTarget | None = None
              ) -> list[pa.Table] | list[int] | list[TrialResult]:
    """Evaluate one chunk on every window. If the worker sees the client's store
    (``target``), it writes the chunk's files itself, atomically, and returns the number
    of runs a window: results then never travel through the client, whose one process
    would otherwise cap the runs/s of a large cluster. Otherwise it returns one table a
    window, in window order, for the client to write. A run that raises is recorded with
    its error, not lost. A search's :class:`~sweep.plan.TrialChunk` returns one
    :class:`TrialResult` a window it ran on."""
    if isinstance(chunk, TrialChunk):
        return _run_trials(key, chunk, None if chunk.hold else target)
    tables = chunk_tables(key, chunk)
    if target is not None and sees_store(target):
        store = ResultStore(target.root)
        try:
            for window, table in enumerate(tables):
                store.write_chunk(window, chunk.chunk_id, table,
                                  still_ours=lambda: sees_store(target))
        except StoreChangedError:
            return tables  # the client has gone or moved on; it decides what to keep
        return [table.num_rows for table in tables]
    return tables


class Written(tuple):
    """What a task of :func:`run_chunks` returns when its worker wrote every chunk's files
    itself: each chunk's runs a window. The client tells it from the task's result type
    (``Future.type``), without fetching it."""


def run_chunks(key: str, chunks: Sequence[Chunk], target: StoreTarget | None = None
               ) -> Written | list[list[pa.Table] | list[int]]:
    """Consecutive grid chunks in one task (a big cluster's tasks hold several, so that
    the client and the scheduler handle fewer): :func:`run_chunk` each, in order."""
    out = [run_chunk(key, chunk, target) for chunk in chunks]
    if all(isinstance(n, int) for runs in out for n in runs):
        return Written(tuple(runs) for runs in out)
    return out


def _run_trials(key: str, chunk: TrialChunk, target: StoreTarget | None
                ) -> list[TrialResult]:
    started = time.perf_counter()
    frames = trial_tables(key, chunk)
    seconds = time.perf_counter() - started
    out = [TrialResult(w, table, values, seconds) for w, table, values in frames]
    if target is not None and sees_store(target):
        store = ResultStore(target.root)
        try:
            for w, table, _ in frames:
                store.write_chunk(w, chunk.chunk_id, table,
                                  still_ours=lambda: sees_store(target))
        except StoreChangedError:
            return out  # the client has gone or moved on; it decides what to keep
        seconds = time.perf_counter() - started
        return [TrialResult(w, table.num_rows, values, seconds)
                for w, table, values in frames]
    return out


def chunk_tables(key: str, chunk: Chunk) -> list[pa.Table]:
    """The result tables of one chunk, one a window, in window order."""
    resolved = context(key)
    table, prepared = _segment_slice(key, resolved, chunk)
    frames, errors = _evaluate_isolating_errors(resolved, table, prepared, resolved.windows)
    schema = resolved.schema.arrow
    return [_runs_frame(resolved, table, w, metrics, err, chunk.chunk_id)
            .to_arrow().select(schema.names).cast(schema)
            for w, metrics, err in zip(resolved.windows, frames, errors, strict=True)]


def trial_tables(key: str, chunk: TrialChunk) -> list[tuple[int, pa.Table, np.ndarray]]:
    """A search chunk's runs: (window index, its table, each run's value) a window, in
    the chunk's window order; rows in the chunk's trial order, not yet pruned."""
    resolved = context(key)
    table = resolved.grid.take(np.asarray(chunk.combos, dtype=np.int64))
    if table.height != chunk.size:
        raise RuntimeError(f"chunk {chunk.chunk_id}: {chunk.size - table.height} of its "
                           "combinations break the grid's constraints")
    windows = [resolved.windows[w] for w in chunk.windows]
    frames, errors = _evaluate_isolating_errors(resolved, table, None, windows)
    schema = resolved.schema.arrow
    extra = {TRIAL: pl.Series(TRIAL, chunk.trials, dtype=pl.Int64),
             PRUNED: pl.Series(PRUNED, [False] * chunk.size, dtype=pl.Boolean)}
    out = []
    for w, metrics, err in zip(windows, frames, errors, strict=True):
        frame = _runs_frame(resolved, table, w, metrics, err, chunk.chunk_id, extra)
        out.append((w.index, frame.to_arrow().select(schema.names).cast(schema),
                    run_values(frame, chunk.objective, chunk.filters)))
    return out


def _runs_frame(resolved: ResolvedSweep, table: pl.DataFrame, w: Window,
                metrics: pl.DataFrame, errors: list[str | None], chunk_id: int,
                extra: dict[str, pl.Series] | None = None) -> pl.DataFrame:
    """One window's rows: the key columns, the grid rows, the metrics and the errors."""
    n = table.height
    return pl.concat(
        [
            pl.DataFrame({
                "run_id": run_ids(resolved, table, w),
                "chunk_id": np.full(n, chunk_id, dtype=np.int64),
                "strategy": [resolved.strategy.name] * n,
                "window_start": np.repeat(w.start, n),
                "window_end": np.repeat(w.end, n),
                **(extra or {}),
            }),
            table,
            metrics,
            pl.DataFrame({ERROR: pl.Series(errors, dtype=pl.String)}),
        ],
        how="horizontal",
    )


# Per sweep, this worker's last prepared segment (see sweep.plan): (segment bounds, grid
# rows, their positions, data, rows), or (segment bounds, None, ...) when the segment is
# prepared chunk by chunk instead (too big for SEGMENT_BYTES, or prepare() raised on it).
# The lock only guards the dict: a segment is built outside it.
_SEGMENTS: dict[str, tuple[Any, ...]] = {}
_SEGMENT_LOCK = threading.Lock()
SEGMENT_BYTES = 512 * 2**20  # the most a segment's indicators may take on a worker


def _segment_slice(key: str, resolved: ResolvedSweep, chunk: Chunk
                   ) -> tuple[pl.DataFrame, tuple[np.ndarray, np.ndarray] | None]:
    """The chunk's grid rows and their prepared (data, rows) sliced from the worker's
    cached segment; (rows, None) when the chunk is to be prepared on its own: the
    segment's indicators would not fit SEGMENT_BYTES, or preparing them raised (then the
    chunk's runs are evaluated one by one and a failing run is isolated and recorded)."""
    with _SEGMENT_LOCK:
        cached = _SEGMENTS.get(key)
    if cached is None or cached[0] != chunk.segment:
        cached = _build_segment(resolved, chunk)
        with _SEGMENT_LOCK:
            if key in _CONTEXTS:  # not torn down meanwhile
                _SEGMENTS[key] = cached
    _, table, position, data, rows = cached
    if table is None:
        return resolved.combos_table(chunk.start, chunk.stop), None
    lo, hi = (int(i) for i in np.searchsorted(position, [chunk.start, chunk.stop]))
    return table.slice(lo, hi - lo), (data, rows[lo:hi])


def _build_segment(resolved: ResolvedSweep, chunk: Chunk) -> tuple[Any, ...]:
    """Prepare the chunk's segment, unless its indicators would not fit SEGMENT_BYTES.

    prepare() is opaque, so the segment's size is estimated from the chunk's: its
    prepared bytes, scaled by how many more distinct parameter values the segment holds
    (exact for moving-average grids, where each distinct window is one average; an
    overestimate where indicators do not grow with the parameters)."""
    strategy, panel = resolved.strategy, resolved.panel
    skip = (chunk.segment, None, None, None, None)
    table = resolved.combos_table(*chunk.segment)
    columns = strategy_columns(strategy, table)
    whole = chunk.segment == (chunk.start, chunk.stop)  # nothing to estimate or share
    try:
        if not whole:
            own = strategy_columns(strategy, resolved.combos_table(chunk.start, chunk.stop))
            probe = strategy.prepare(panel, own)[0].nbytes
            if probe * _distinct(columns) / max(1, _distinct(own)) > SEGMENT_BYTES:
                return skip
        data, rows = strategy.prepare(panel, columns)
    except Exception:
        return skip
    combo = table["combo"].to_numpy()
    position = combo if resolved.combos is None else np.searchsorted(resolved.combos, combo)
    return chunk.segment, table, position, data, rows


def _distinct(columns: dict[str, np.ndarray]) -> int:
    return sum(len(np.unique(v)) for v in columns.values())


def _evaluate_isolating_errors(resolved: ResolvedSweep, table: pl.DataFrame,
                               prepared: tuple[np.ndarray, np.ndarray] | None,
                               windows: Sequence[Window]
                               ) -> tuple[list[pl.DataFrame], list[list[str | None]]]:
    """Metrics and errors per window (of ``windows``, in their order). When the block
    raises, its runs are evaluated one by one, and a run that raises on all its windows at
    once one window at a time: a run fails only in the windows where it fails (e.g. shorts
    in one of them)."""
    panel, strategy, config = resolved.panel, resolved.strategy, resolved.config
    blocks = resolved.spec.pbo_blocks
    W = len(windows)
    try:
        return (evaluate_windows(panel, strategy, table, config, windows, blocks=blocks,
                                 prepared=prepared, market=resolved.market),
                [[None] * table.height for _ in range(W)])
    except Exception:
        pass  # find the runs that fail, one by one; the others still count
    nan_row = pl.DataFrame({m: [float("nan")] for m in METRIC_NAMES})
    if blocks:
        nan_row = nan_row.with_columns(
            pl.Series(c, [[float("nan")] * blocks], dtype=pl.Array(pl.Float64, blocks))
            for c in BLOCK_COLUMNS
        )

    def one(run: pl.DataFrame, wins: Sequence[Window]
            ) -> tuple[list[pl.DataFrame], str | None]:
        try:
            return evaluate_windows(panel, strategy, run, config, wins, blocks=blocks,
                                    market=resolved.market), None
        except Exception as exc:
            return [nan_row] * len(wins), (f"{type(exc).__name__}: {exc}"[:2000]
                                           or traceback.format_exc(1))

    frames: list[list[pl.DataFrame]] = [[] for _ in range(W)]
    errors: list[list[str | None]] = [[] for _ in range(W)]
    for k in range(table.height):
        run = table.slice(k, 1)
        metrics, error = one(run, windows)
        if error is None or W == 1:
            results = [(m, error) for m in metrics]
        else:
            results = [(m[0], e) for m, e in (one(run, [w]) for w in windows)]
        for w, (m, e) in enumerate(results):
            frames[w].append(m)
            errors[w].append(e)
    return [pl.concat(f) for f in frames], errors


def run_ids(resolved: ResolvedSweep, table: pl.DataFrame, window: Window) -> list[str]:
    """Deterministic run ids: a hash of strategy, every parameter (defaults included), the
    window's dates, the effective engine config and the data's fingerprint.

    The hashed text is the canonical JSON (sorted keys) of those fields. Its constant part
    is built once: each grid column's distinct values are JSON-encoded once and spliced
    into a template, so a run costs one string concatenation (in polars) and one hash.
    """
    names = [c for c in table.columns if c != "combo"]
    slot = {name: f"\x00{k}\x00" for k, name in enumerate(names)}
    defaults = {k: p.default for k, p in resolved.strategy.params.items()}
    engine = resolved.config.to_dict()
    template = json.dumps({
        "strategy": resolved.strategy.name,
        "params": defaults | {k: v for k, v in slot.items() if k not in ENGINE_AXES},
        "engine": engine | {k: v for k, v in slot.items() if k in ENGINE_AXES},
        "window": [str(window.start), str(window.end)],
        "data": resolved.fingerprint,
    }, sort_keys=True, default=str)
    pieces = _SLOT.split(template)  # literal, column index, literal, column index, ...
    parts: list[pl.Expr | pl.Series] = []
    for k, piece in enumerate(pieces):
        if k % 2 == 0:
            parts.append(pl.lit(piece, dtype=pl.String))
        else:
            parts.append(_json_column(table[names[int(piece)]]))
    texts = table.select(pl.concat_str(parts).cast(pl.Binary).alias("text"))["text"]
    blake2b = hashlib.blake2b
    return [blake2b(t, digest_size=10).hexdigest() for t in texts.to_list()]


def _json_column(col: pl.Series) -> pl.Series:
    """Each value's JSON text, each distinct value encoded once. Floats are told apart by
    their bits: -0.0 and 0.0 are different grid values (and ids) though they compare
    equal."""
    if col.dtype.is_integer() and not col.has_nulls():
        return col.cast(pl.String)  # an integer's JSON text is its decimal digits
    if col.dtype.is_float() and not col.has_nulls():
        bits, inverse = np.unique(col.to_numpy().view(np.int64), return_inverse=True)
        texts = np.array([json.dumps(v) for v in bits.view(np.float64).tolist()], dtype=object)
        return pl.Series(col.name, texts[inverse], dtype=pl.String)
    values = col.unique().to_list()
    return col.replace_strict(values, [json.dumps(v, default=str) for v in values],
                              return_dtype=pl.String)


_SLOT = re.compile(r'"\\u0000(\d+)\\u0000"')
