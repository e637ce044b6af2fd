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
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from distributed.diagnostics.plugin import WorkerPlugin

from engine import METRIC_NAMES, Panel
from sweep.evaluate import BLOCK_COLUMNS, evaluate_table
from sweep.grid import ENGINE_AXES
from sweep.plan import Chunk
from sweep.spec import ResolvedSweep, SweepSpec

__all__ = ["SweepContextPlugin", "context", "result_schema", "run_chunk"]

_CONTEXTS: dict[str, ResolvedSweep] = {}  # per worker process, by sweep key


@dataclass(frozen=True)
class _Payload:
    spec: dict[str, Any]
    fingerprint: str
    panel: Panel | None  # None: rebuild from spec["data"]


def _is_recipe(data: str) -> bool:
    return data.startswith(("synthetic", "sample:"))


class SweepContextPlugin(WorkerPlugin):
    """Worker plugin carrying one sweep's spec and data to every worker (also late ones)."""

    def __init__(self, key: str, resolved: ResolvedSweep) -> None:
        self.key = key
        self.name = f"backsweep-{key}"
        spec = resolved.spec
        self.payload = _Payload(spec.to_dict(), resolved.panel.fingerprint,
                                None if _is_recipe(spec.data) else resolved.panel)

    def setup(self, worker: Any = None) -> None:
        install_context(self.key, self.payload)

    def teardown(self, worker: Any = None) -> None:
        _CONTEXTS.pop(self.key, None)


def install_context(key: str, payload: _Payload) -> ResolvedSweep:
    if key in _CONTEXTS:
        return _CONTEXTS[key]
    spec = SweepSpec.from_dict(payload.spec)
    panel = payload.panel
    if panel is None:
        from engine.data import parse_data_spec

        panel = parse_data_spec(spec.data)
        if panel.fingerprint != payload.fingerprint:
            raise RuntimeError(
                f"data {spec.data!r} rebuilt on this worker differs from the client's "
                f"(fingerprint {panel.fingerprint} != {payload.fingerprint}): package "
                "versions differ between client and workers"
            )
    resolved = spec.resolve(panel, load_modules=False)  # cluster.prepare shipped them
    _CONTEXTS[key] = resolved
    return resolved


def context(key: str) -> ResolvedSweep:
    try:
        return _CONTEXTS[key]
    except KeyError:
        raise RuntimeError(
            f"sweep context {key!r} is not installed on this worker (plugin missing)"
        ) from None


def result_schema(resolved: ResolvedSweep) -> pa.Schema:
    """Columns of the runs table, in order (the hive folder adds ``window``)."""
    fields = [
        pa.field("run_id", pa.string()), pa.field("chunk_id", pa.int64()),
        pa.field("strategy", pa.string()), pa.field("window_start", pa.timestamp("ns")),
        pa.field("window_end", pa.timestamp("ns")), pa.field("combo", pa.int64()),
    ]
    sample = resolved.grid.block(0, 0).drop("combo").to_arrow().schema
    fields += [sample.field(i) for i in range(len(sample))]
    fields += [pa.field(m, pa.float64()) for m in METRIC_NAMES]
    blocks = resolved.spec.pbo_blocks
    if blocks:
        fields += [pa.field(c, pa.list_(pa.float64(), blocks)) for c in BLOCK_COLUMNS]
    fields.append(pa.field("error", pa.string()))
    return pa.schema(fields)


def run_chunk(key: str, chunk: Chunk) -> pa.Table:
    """Evaluate one chunk; a run that raises is recorded with its error, not lost."""
    resolved = context(key)
    i0, i1 = resolved.windows[chunk.window]
    table = resolved.combos_table(chunk.start, chunk.stop)
    metrics, errors = _evaluate_isolating_errors(resolved, table, i0, i1)
    ts = resolved.panel.timestamps
    n = table.height
    frame = pl.concat(
        [
            pl.DataFrame({
                "run_id": run_ids(resolved, table, chunk.window),
                "chunk_id": np.full(n, chunk.chunk_id, dtype=np.int64),
                "strategy": [resolved.strategy.name] * n,
                "window_start": np.repeat(ts[i0], n),
                "window_end": np.repeat(ts[i1 - 1], n),
            }),
            table,
            metrics,
            pl.DataFrame({"error": pl.Series(errors, dtype=pl.String)}),
        ],
        how="horizontal",
    )
    return frame.to_arrow().cast(result_schema(resolved))


def _evaluate_isolating_errors(resolved: ResolvedSweep, table: pl.DataFrame, i0: int, i1: int
                               ) -> tuple[pl.DataFrame, list[str | None]]:
    args = (resolved.panel, resolved.strategy)
    blocks = resolved.spec.pbo_blocks
    try:
        return (evaluate_table(*args, table, resolved.config, i0, i1, blocks=blocks),
                [None] * table.height)
    except Exception:
        pass  # find the runs that fail, one by one; the others still count
    rows, errors = [], []
    nan_row = pl.DataFrame({m: [float("nan")] for m in METRIC_NAMES})
    if blocks:
        nan_row = nan_row.with_columns(
            pl.Series(c, [[float("nan")] * blocks], dtype=pl.Array(pl.Float64, blocks))
            for c in BLOCK_COLUMNS
        )
    for k in range(table.height):
        try:
            rows.append(evaluate_table(*args, table.slice(k, 1), resolved.config, i0, i1,
                                       blocks=blocks))
            errors.append(None)
        except Exception as exc:
            rows.append(nan_row)
            errors.append(f"{type(exc).__name__}: {exc}"[:2000] or traceback.format_exc(1))
    return pl.concat(rows), errors


def run_ids(resolved: ResolvedSweep, table: pl.DataFrame, window: int) -> list[str]:
    """Deterministic run ids: a hash of strategy, every parameter (defaults included), the
    window's dates, the effective engine config and the data's fingerprint."""
    i0, i1 = resolved.windows[window]
    ts = resolved.panel.timestamps
    defaults = {k: p.default for k, p in resolved.strategy.params.items()}
    engine = resolved.config.to_dict()
    names = [c for c in table.columns if c != "combo"]
    out = []
    for row in table.select(names).iter_rows(named=True):
        text = json.dumps({
            "strategy": resolved.strategy.name,
            "params": defaults | {k: v for k, v in row.items() if k not in ENGINE_AXES},
            "engine": engine | {k: v for k, v in row.items() if k in ENGINE_AXES},
            "window": [str(ts[i0]), str(ts[i1 - 1])],
            "data": resolved.panel.fingerprint,
        }, sort_keys=True, default=str)
        out.append(hashlib.blake2b(text.encode(), digest_size=10).hexdigest())
    return out
