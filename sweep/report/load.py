"""What a report shows, read from a results folder: the record (``sweep.json`` through
:class:`sweep.record.SweepRecord`), the runs (through :func:`sweep.schema.scan_runs`, which
checks every file), the walk-forward tables, and the best runs (through
:func:`sweep.select.select_best`, with the sweep's own selection).

Example:
    >>> from sweep.report.load import load
    >>> data = load("results/ma_demo")                  # doctest: +SKIP
    >>> data.top_runs(5)["run_id"].to_list()            # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from engine import METRIC_NAMES, EngineConfig
from sweep.location import location
from sweep.record import RecordError, SweepRecord
from sweep.report.format import fmt_value
from sweep.schema import ERROR, PRUNED, TRIAL, DamagedFileError, param_columns, scan_runs
from sweep.select import Selection, select_best
from sweep.store import RECORD_NAME, WALK_FORWARD_FILES

__all__ = ["Curve", "ReportData", "ReportError", "load"]


class ReportError(ValueError):
    """The folder is not a readable sweep's results folder, or the report cannot be
    written; the message says why."""


class Curve(NamedTuple):
    """One run's equity curve for the report's "top runs' equity" section: the stored
    ``run_id`` (its metrics are looked up in the runs table), a ``label``, the bars'
    ``timestamps`` and the ``equity`` at each bar's close."""

    run_id: str
    label: str
    timestamps: Any
    equity: Any

    @classmethod
    def of(cls, run_id: str, label: str, result: Any) -> Curve:
        """From anything with ``.timestamps`` and ``.equity`` (an engine BacktestResult)."""
        return cls(run_id, label, result.timestamps, np.asarray(result.equity, dtype=float))


@dataclass
class ReportData:
    """A results folder, read once. ``runs``: every run (run_id, window, combo, an
    adaptive search's trial and pruned columns, the parameters, the metrics, error);
    ``ok``: the successful ones with non-finite metric values as null (what the
    distributions and heatmaps draw); ``errors``: the most frequent error messages with
    their counts; ``folds``/``oos``: ``folds.parquet`` and
    ``oos_equity.parquet`` of a walk-forward; ``notes``: what could not be read."""

    root: Path
    record: SweepRecord
    metric: str
    selection: Selection
    metrics: list[str]
    params: list[str]
    runs: pl.DataFrame
    ok: pl.DataFrame
    n_errors: int
    errors: list[tuple[str, int]]
    folds: pl.DataFrame | None
    oos: pl.DataFrame | None
    notes: list[str]

    def top_runs(self, k: int) -> pl.DataFrame:
        """The ``k`` best runs by the sweep's selection (its objective and filters), all
        windows together, best first: the report's "top runs"."""
        return select_best(self.runs, self.selection, k=k)

    def label(self, row: dict[str, Any]) -> str:
        """A run's short label: its window and parameter values."""
        values = ", ".join(f"{p}={fmt_value(row[p])}" for p in self.params if p in row)
        return f"w{row['window']} {values}" if len(self.record.windows) > 1 else values

    @property
    def init_cash(self) -> float:
        """The starting cash of every run (the spec's engine table, else the default)."""
        return float(self.record.spec.get("engine", {}).get("init_cash",
                                                             EngineConfig().init_cash))


def selection_of(record: SweepRecord) -> Selection:
    """The selection the sweep chose its best runs with: the walk-forward's objective and
    filters, else the record's objective."""
    wf = record.spec.get("walk_forward")
    return Selection.from_dict(wf) if wf else Selection(record.objective)


def load(root: str | os.PathLike[str], metric: str = "sharpe") -> ReportData:
    """Read a results folder (``OUT/NAME``); ReportError when it is not one, its record
    or a runs file is unreadable, it has no runs, or ``metric`` is not a metric."""
    root = location(root)
    if metric not in METRIC_NAMES:
        raise ReportError(f"{metric!r} is not a metric; metrics: {', '.join(METRIC_NAMES)}")
    if not root.is_dir():
        raise ReportError(f"{root}: no such folder")
    if not (root / RECORD_NAME).is_file():
        raise ReportError(f"{root}: no {RECORD_NAME} here (not a sweep's results folder)")
    try:
        record = SweepRecord.read(root / RECORD_NAME)
        lf = scan_runs(root)
        names = lf.collect_schema().names()
    except (RecordError, DamagedFileError) as exc:
        raise ReportError(str(exc)) from None
    except FileNotFoundError:
        raise ReportError(f"{root}: no runs here (no runs/window=*/part-*.parquet files); "
                          "run the sweep first") from None
    metrics = [m for m in METRIC_NAMES if m in names]
    params = param_columns(names)
    search = [c for c in ("combo", TRIAL, PRUNED) if c in names]  # an adaptive search's
    cols = ["run_id", "window", *search, *params, *metrics, ERROR]
    try:
        runs = lf.select(cols).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ReportError(f"{root / 'runs'}: unreadable ({exc})") from None
    if runs.height == 0:
        raise ReportError(f"{root}: the runs files hold no runs")
    failed = runs.filter(pl.col(ERROR).is_not_null())
    ok = runs.filter(pl.col(ERROR).is_null()).with_columns(
        pl.when(pl.col(m).is_finite()).then(pl.col(m)).otherwise(None).alias(m)
        for m in metrics)
    errors = [(str(e), int(n)) for e, n in
              failed.group_by(ERROR).len().sort(["len", ERROR], descending=[True, False])
              .head(5).iter_rows()]
    folds, oos, notes = _walk_forward_tables(root, record)
    return ReportData(root, record, metric, selection_of(record), metrics, params, runs, ok,
                      failed.height, errors, folds, oos, notes)


def _walk_forward_tables(root: Path, record: SweepRecord
                         ) -> tuple[pl.DataFrame | None, pl.DataFrame | None, list[str]]:
    """``folds.parquet`` (sorted by fold) and ``oos_equity.parquet`` (timestamp, fold,
    equity, is_equity), when the record has a walk-forward summary."""
    if record.walk_forward is None:
        return None, None, []
    tables: list[pl.DataFrame | None] = []
    notes = []
    for name in WALK_FORWARD_FILES:
        path = root / name
        try:
            tables.append(pl.read_parquet(str(path)))
        except (OSError, pl.exceptions.PolarsError) as exc:
            tables.append(None)
            notes.append(f"{name} could not be read ({str(exc)[:200]}); rerun the "
                         "walk-forward to rewrite it")
    folds, oos = tables
    return (None if folds is None else folds.sort("fold"),
            None if oos is None or oos.height == 0 else oos.sort("timestamp"), notes)
