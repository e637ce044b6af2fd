"""Playing stored runs back: rebuild chosen runs and export their equity and trades.

(The module is not named ``replay``: ``sweep.replay`` is the function.)

A stored run is fully described by ``sweep.json`` (the spec: data, strategy, engine,
windows) and its row (parameters, window). :func:`replay` rebuilds the runs through the
same engine call as the sweep (the strategy's weights over the whole panel, the run
trading its window only, the same bars per year and market series), so their metrics
equal the stored ones bit for bit. :func:`export` writes their equity curves and trade
records as two Parquet files, replaying many runs on the cluster.

Example:
    >>> import sweep
    >>> res = sweep.replay("results/ma_demo", ["3f9c0e2d1a"])   # doctest: +SKIP
    >>> res[0].equity[-1], res[0].trades.height                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from engine import BacktestResult, run_backtest
from sweep.grid import ENGINE_AXES
from sweep.location import atomic_write, location
from sweep.record import SweepRecord
from sweep.schema import scan_runs
from sweep.select import Selection, select_best
from sweep.spec import ResolvedSweep, SpecError, SweepSpec
from sweep.store import RECORD_NAME

__all__ = ["EXPORT_FILES", "ReplayError", "export", "replay", "select_runs"]

logger = logging.getLogger("backsweep")

EXPORT_FILES = ("equity.parquet", "trades.parquet")
# Up to this many runs are replayed in this process; more go to the cluster.
LOCAL_RUNS = 16
# Runs a cluster task replays (each returns its curves and trades as two small tables).
RUNS_PER_TASK = 8


class ReplayError(ValueError):
    """Runs that cannot be replayed: unknown run ids, data that changed since the sweep,
    a results folder that is not a sweep's; the message says which and what to do."""


@dataclass(frozen=True)
class _Context:
    resolved: ResolvedSweep
    record: SweepRecord


def _context(results_dir: str | os.PathLike[str]) -> _Context:
    root = location(results_dir)
    path = root / RECORD_NAME
    if not path.is_file():
        raise ReplayError(f"{root}: no {RECORD_NAME} here (not a sweep's results folder)")
    record = SweepRecord.read(path)
    spec = SweepSpec.from_dict(record.spec)
    try:
        resolved = spec.resolve()
    except SpecError as exc:
        raise ReplayError(f"{root}: the sweep cannot be rebuilt: {exc}") from None
    if resolved.fingerprint != record.fingerprint:
        raise ReplayError(
            f"{root}: the data {spec.data_source!r} differs from the data the sweep ran on "
            f"(fingerprint {resolved.fingerprint[:12]}, stored "
            f"{record.fingerprint[:12]}): its runs cannot be rebuilt from it")
    return _Context(resolved, record)


def _rows(root: Path, run_ids: Sequence[str]) -> pl.DataFrame:
    wanted = list(dict.fromkeys(run_ids))
    if not wanted:
        raise ReplayError("no run ids given")
    rows = scan_runs(root).filter(pl.col("run_id").is_in(wanted)).collect()
    missing = sorted(set(wanted) - set(rows["run_id"].to_list()))
    if missing:
        raise ReplayError(f"{root}: no run with id {', '.join(missing[:5])}"
                          + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""))
    order = {rid: k for k, rid in enumerate(wanted)}
    return rows.sort(pl.col("run_id").replace_strict(order, return_dtype=pl.Int64))


def _replay_row(resolved: ResolvedSweep, row: dict[str, Any]) -> BacktestResult:
    """The run of one stored row, through run_backtest as the sweep ran it."""
    strategy = resolved.strategy
    params = {p: row[p] for p in strategy.params if p in row}
    engine = {a: row[a] for a in resolved.grid.names if a in ENGINE_AXES}
    cfg = resolved.config.replace(**engine) if engine else resolved.config
    window = resolved.windows[row["window"]]
    weights = strategy.weights(resolved.panel, **params)
    return run_backtest(resolved.panel, weights, cfg, window=(window.start, window.end),
                        **resolved.market_inputs)


def replay(results_dir: str | os.PathLike[str], run_ids: Iterable[str]
           ) -> list[BacktestResult]:
    """The stored runs ``run_ids`` of the sweep in ``results_dir`` (``OUT/NAME``), rebuilt
    in this process: one :class:`engine.BacktestResult` each (equity, cash, exposure,
    trades), in the order asked. The sweep's user modules are imported, the data is
    reloaded and checked against the stored fingerprint; the metrics equal the stored
    ones bit for bit.

    Example:
        >>> import sweep
        >>> runs = sweep.load_results("results/ma_demo").head(2).collect()   # doctest: +SKIP
        >>> [r.metrics["sharpe"] for r in sweep.replay("results/ma_demo",
        ...                                            runs["run_id"])]      # doctest: +SKIP
    """
    root = location(results_dir)
    ctx = _context(root)
    rows = _rows(root, list(run_ids))
    return [_replay_row(ctx.resolved, row) for row in rows.iter_rows(named=True)]


def select_runs(results_dir: str | os.PathLike[str], *, top: int | None = None,
                by: str = "sharpe", window: int | None = None,
                run_ids: Sequence[str] = ()) -> list[str]:
    """Run ids to export: ``run_ids`` as given, or the ``top`` best of each window by
    ``by`` (lower-is-better metrics ascend), of one ``window`` if given."""
    if run_ids:
        return list(run_ids)
    if top is None or top < 1:
        raise ReplayError("give run ids, or --top K (K >= 1) with --by METRIC")
    runs = scan_runs(results_dir)
    if window is not None:
        windows = runs.select(pl.col("window").unique()).collect()["window"].to_list()
        if window not in windows:
            raise ReplayError(f"window {window} is not in the results; windows: "
                              f"{sorted(windows)}")
        runs = runs.filter(pl.col("window") == window)
    try:
        best = select_best(runs, Selection(by), k=top, by=["window"])
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    return best["run_id"].to_list()


# ------------------------------------------------------------------------- export
def _tables(resolved: ResolvedSweep, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The equity and trades tables of the rows' runs."""
    curves, trades = [], []
    for row in rows.iter_rows(named=True):
        res = _replay_row(resolved, row)
        key = [pl.lit(row["run_id"]).alias("run_id"),
               pl.lit(row["window"], dtype=pl.Int64).alias("window")]
        curves.append(res.equity_frame().select(
            *key, "timestamp", "equity", "cash", pl.col("exposure").alias("gross_exposure")))
        trades.append(res.trades.select(*key, pl.all()))
    return pl.concat(curves), pl.concat(trades)


def _replay_task(key: str, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A cluster task: replay a few rows with the sweep's context on this worker."""
    from sweep.worker import context

    return _tables(context(key), rows)


def export(results_dir: str | os.PathLike[str], run_ids: Iterable[str],
           out: str | os.PathLike[str], *, client: Any = None, workers: int | None = None,
           overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``OUT/equity.parquet`` (run_id, window, timestamp, equity, cash,
    gross_exposure: one row a bar of each run's window) and ``OUT/trades.parquet``
    (run_id, window, then the trade records of ``run_backtest``: one row a trade, open
    trades with exit_reason "open") for the stored runs ``run_ids``. Up to LOCAL_RUNS
    runs are replayed here, more on the cluster (``client`` as in ``run_sweep``). Existing
    files are replaced only with ``overwrite``; both appear atomically.

    Example:
        >>> import sweep
        >>> from sweep.playback import select_runs
        >>> ids = select_runs("results/ma_demo", top=3, by="sharpe")  # doctest: +SKIP
        >>> sweep.export("results/ma_demo", ids, "winners")           # doctest: +SKIP
    """
    root, target = location(results_dir), location(out)
    paths = tuple(target / name for name in EXPORT_FILES)
    if target.exists() and not target.is_dir():
        raise ReplayError(f"{target} is a file; -o names a folder for {', '.join(EXPORT_FILES)}")
    for path in paths:
        if path.is_dir():
            raise ReplayError(f"{path} is a folder; choose another -o")
        if path.exists() and not overwrite:
            raise ReplayError(f"{path} exists; pass --overwrite to replace it, or choose "
                              "another -o")
    ctx = _context(root)
    rows = _rows(root, list(run_ids))
    if rows.height <= LOCAL_RUNS:
        equity, trades = _tables(ctx.resolved, rows)
    else:
        equity, trades = _on_cluster(ctx.resolved, rows, client, workers)
    try:
        for path, table in zip(paths, (equity, trades), strict=True):
            atomic_write(path, table.write_parquet)
    except OSError as exc:
        raise ReplayError(f"cannot write {target}: {exc.strerror or exc}") from None
    logger.info("exported %d run(s): %s, %s", rows.height, *paths)
    return paths


def _on_cluster(resolved: ResolvedSweep, rows: pl.DataFrame, client: Any,
                workers: int | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    import cluster
    from sweep.runner import _default_client
    from sweep.worker import SweepContextPlugin

    key = f"replay-{resolved.spec.digest}-{uuid.uuid4().hex[:8]}"
    with cluster.connect(_default_client(client), workers=workers) as c:
        cluster.prepare(c, modules=resolved.spec.modules)
        plugin = SweepContextPlugin(key, resolved)
        c.register_plugin(plugin, name=plugin.name)
        try:
            futures = [c.submit(_replay_task, key, rows.slice(i, RUNS_PER_TASK), pure=False)
                       for i in range(0, rows.height, RUNS_PER_TASK)]
            parts = c.gather(futures)
        finally:
            with contextlib.suppress(Exception):
                c.unregister_worker_plugin(plugin.name)
    return (pl.concat([p[0] for p in parts]), pl.concat([p[1] for p in parts]))
