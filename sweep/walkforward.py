"""Walk-forward validation: optimise on each train window, trade the winner out of sample.

The whole grid runs on every train window through the same distributed sweep (the train
windows are the sweep's windows, so the store, resume and fault tolerance are the same).
Each fold's winner by the objective then runs on the following test window, warmed up on
the bars before it, and the test segments are stitched into one compounding out-of-sample
equity curve. Outputs in ``OUT/NAME``: ``folds.parquet``, ``oos_equity.parquet`` and the
record's ``walk_forward`` summary in ``sweep.json``.

``oos_equity.parquet`` has ``timestamp``, ``fold``, ``equity`` (the stitched out-of-sample
curve) and ``is_equity``: what the in-sample results promised over the same bars, i.e. each
fold winner's geometric per-bar growth in its train window, compounded over its test bars.
The gap between the two lines is the in-sample optimism the walk-forward exposes.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine import METRIC_NAMES, run_backtest
from engine.metrics import metrics_vector
from sweep.grid import ENGINE_AXES
from sweep.location import atomic_write
from sweep.record import FoldInfo, WalkForwardInfo, finite_or_none
from sweep.runner import SweepSummary, run_sweep
from sweep.schema import scan_runs
from sweep.select import select_best
from sweep.spec import ResolvedSweep, SpecError, SweepSpec
from sweep.store import ResultStore
from sweep.trials import window_verdict
from sweep.windows import Fold

__all__ = ["WalkForwardResult", "walk_forward"]


@dataclasses.dataclass
class WalkForwardResult:
    """The sweep over the train windows and what walk-forward made of it."""

    sweep: SweepSummary
    folds: pl.DataFrame
    oos_equity: pl.DataFrame
    summary: WalkForwardInfo

    @property
    def ok(self) -> bool:
        return self.sweep.ok

    def describe(self) -> str:
        s = self.summary
        oos = s.oos_metrics
        return "\n".join([
            self.sweep.describe(),
            f"walk-forward: {s.n_folds} folds; out of sample: total return "
            f"{_pct(oos['total_return'])}, sharpe {_fmt(oos['sharpe'], '.2f')}, max drawdown "
            f"{_pct(oos['max_drawdown'])}",
            f"  walk-forward efficiency {_fmt(s.wfe)}, DSR {_fmt(s.dsr)}, PBO {_fmt(s.pbo)}",
        ])


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{spec}}"


def _pct(x: float | None) -> str:
    return _fmt(x, ".2%")


def walk_forward(
    spec: SweepSpec | str | Path,
    client: Any = None,
    out: str | Path | None = None,
    **sweep_options: Any,
) -> WalkForwardResult:
    """Run a walk-forward validation described by the spec's [walk_forward] table.

    The grid runs on every fold's train window as one sweep (resumable: a rerun reuses
    the stored runs, also after choosing by another objective); each fold's winner then
    trades its test window, warmed up on the bars before it.

    Example:
        >>> import sweep
        >>> spec = sweep.SweepSpec.from_toml("examples/walk_forward.toml")  # doctest: +SKIP
        >>> result = sweep.walk_forward(spec, out="results")                 # doctest: +SKIP
        >>> result.summary.pbo                                               # doctest: +SKIP
    """
    if not isinstance(spec, SweepSpec):
        spec = SweepSpec.from_toml(spec)
    if not spec.walk_forward:
        where = f"{spec.source}: " if spec.source else ""
        raise SpecError(f"{where}no [walk_forward] table in the config")
    resolved = spec.resolve()  # validates everything, the folds included
    summary = run_sweep(resolved, client, out, **sweep_options)
    if summary.failed_chunks:
        raise RuntimeError(
            f"walk-forward needs every train run; {len(summary.failed_chunks)} chunk(s) "
            f"failed:\n{summary.describe()}"
        )
    store = ResultStore(summary.path)
    runs = scan_runs(store.root, check=False)
    folds_df, oos = _out_of_sample(resolved, runs)
    info, folds_df = _summarise(resolved, runs, folds_df, oos)
    atomic_write(store.root / "folds.parquet", folds_df.write_parquet)
    atomic_write(store.root / "oos_equity.parquet", oos.write_parquet)
    record = store.read_record()
    record.walk_forward = info
    store.write_record(record)
    return WalkForwardResult(summary, folds_df, oos, info)


def _out_of_sample(resolved: ResolvedSweep, runs: pl.LazyFrame
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    panel, strategy, base = resolved.panel, resolved.strategy, resolved.config
    ts = panel.timestamps
    params = [n for n in resolved.grid.names if n in strategy.params]
    engine_axes = [n for n in resolved.grid.names if n in ENGINE_AXES]
    rows, segments = [], []
    level = base.init_cash  # the stitched curve compounds across folds
    promised = base.init_cash
    for f in resolved.folds or ():
        best = _winner(runs, f, resolved)
        test = f.test
        row: dict[str, Any] = {
            "fold": f.index, "train_start": f.train.start, "train_end": f.train.end,
            "test_start": test.start, "test_end": test.end,
        }
        bars = ts[test.start_bar:test.end_bar]
        if best is None:  # nothing passed the filters: stay in cash for this fold
            row |= {p: None for p in params + engine_axes}
            row |= {f"is_{m}": None for m in METRIC_NAMES}
            row |= {f"oos_{m}": None for m in METRIC_NAMES}
            segments.append(pl.DataFrame({
                "timestamp": bars, "fold": [f.index] * test.bars,
                "equity": [level] * test.bars, "is_equity": [promised] * test.bars}))
            rows.append(row)
            continue
        chosen = {p: best[p] for p in params}
        cfg = base.replace(**{a: best[a] for a in engine_axes}) if engine_axes else base
        weights = strategy.weights(panel, **chosen)
        res = run_backtest(panel, weights, cfg, window=(test.start, test.end),
                           **resolved.market_inputs)
        row |= chosen | {a: best[a] for a in engine_axes}
        row |= {f"is_{m}": best[m] for m in METRIC_NAMES}
        row |= {f"oos_{m}": res.metrics[m] for m in METRIC_NAMES}
        rows.append(row)
        oos_curve = level * res.equity / cfg.init_cash
        # What the in-sample run promised: its geometric per-bar growth, over the test bars.
        growth = (1.0 + best["total_return"]) ** (1.0 / best["n_bars"]) if \
            best["total_return"] > -1 else 0.0
        promised_curve = promised * growth ** np.arange(1, len(oos_curve) + 1)
        segments.append(pl.DataFrame({
            "timestamp": bars, "fold": [f.index] * len(oos_curve),
            "equity": oos_curve, "is_equity": promised_curve}))
        level, promised = float(oos_curve[-1]), float(promised_curve[-1])
    folds_df = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col(c).cast(pl.Datetime("ns")) for c in
        ("train_start", "train_end", "test_start", "test_end"))
    oos = pl.concat(segments).with_columns(pl.col("timestamp").cast(pl.Datetime("ns")))
    return folds_df, oos


def _winner(runs: pl.LazyFrame, fold: Fold, resolved: ResolvedSweep) -> dict[str, Any] | None:
    """The fold's best train run by the walk-forward's selection."""
    best = select_best(runs.filter(pl.col("window") == fold.index), resolved.selection)
    return best.row(0, named=True) if best.height else None


def _summarise(resolved: ResolvedSweep, runs: pl.LazyFrame, folds_df: pl.DataFrame,
               oos: pl.DataFrame) -> tuple[WalkForwardInfo, pl.DataFrame]:
    base = resolved.config
    folds = resolved.folds or ()
    equity = oos["equity"].to_numpy()
    # The stitched curve's returns are the data's bars: annualised at the data's rate
    # (the folds' windows carry it), not at the rate of the stitched timestamps' span,
    # which counts the bars between test windows when step > test.
    rate = folds[0].test.bars_per_year
    bench, rf = _stitched_market(resolved)
    values = metrics_vector(equity, np.zeros_like(equity), base.init_cash, rate,
                            float(folds_df["oos_fees"].fill_null(0).sum()), 0.0,
                            float(folds_df["oos_n_trades"].fill_null(0).sum()), 0.0, 0.0,
                            0.0, 0.0, base.risk_free, bench, rf)
    oos_metrics = {m: finite_or_none(v) for m, v in zip(METRIC_NAMES, values.tolist(),
                                                          strict=True)
                   if m not in ("win_rate", "profit_factor", "turnover", "exposure")}
    is_cagr = folds_df["is_cagr"].drop_nulls()
    mean_is = float(is_cagr.mean()) if is_cagr.len() else float("nan")
    # Walk-forward efficiency: annualised OOS return over annualised IS return; undefined
    # (None) when the in-sample return is not positive, where the ratio would mislead.
    wfe = oos_metrics["cagr"] / mean_is if mean_is > 0 and oos_metrics["cagr"] is not None \
        else None
    verdicts = [window_verdict(runs, f.train, resolved.selection) for f in folds]
    dsr = [v.dsr for v in verdicts]
    pbo = [v.pbo for v in verdicts]
    folds_df = folds_df.with_columns(pl.Series("dsr", dsr, dtype=pl.Float64),
                                     pl.Series("pbo", pbo, dtype=pl.Float64))
    known_dsr = [d for d in dsr if d is not None]
    known_pbo = [p for p in pbo if p is not None]
    info = WalkForwardInfo(
        n_folds=len(folds), objective=resolved.selection.objective,
        oos_metrics=oos_metrics, is_mean_cagr=finite_or_none(mean_is),
        wfe=finite_or_none(wfe),
        dsr=finite_or_none(float(np.mean(known_dsr))) if known_dsr else None,
        pbo=finite_or_none(float(np.mean(known_pbo))) if known_pbo else None,
        dsr_by_fold=dsr, pbo_by_fold=pbo,
        param_stability=_stability(folds_df, resolved),
        folds=[FoldInfo(f.index, [str(f.train.start), str(f.train.end)],
                        [str(f.test.start), str(f.test.end)]) for f in folds],
    )
    return info, folds_df


def _stitched_market(resolved: ResolvedSweep) -> tuple[np.ndarray, np.ndarray]:
    """The benchmark's per-bar returns and the per-bar risk-free rates over the stitched
    test bars (empty arrays when there are none), as the test runs saw them."""
    market = resolved.market
    folds = resolved.folds or ()
    if market is None or not folds:
        return np.empty(0), np.empty(0)
    rate = folds[0].test.bars_per_year
    parts = [market.take(*f.test.bounds).kernel_arrays(rate) for f in folds]
    bench = np.concatenate([p[0] for p in parts]) if market.has_benchmark else np.empty(0)
    rf = np.concatenate([p[1] for p in parts])
    return bench, rf


def _stability(folds_df: pl.DataFrame, resolved: ResolvedSweep) -> dict[str, Any]:
    """Per parameter: how often the most common choice was made, and how much numeric
    choices vary (coefficient of variation) across folds."""
    out: dict[str, Any] = {}
    for name in resolved.grid.names:
        col = folds_df[name].drop_nulls()
        if col.len() == 0:
            continue
        counts = col.value_counts(sort=True)
        mode, n = counts.row(0)
        info: dict[str, Any] = {"distinct": counts.height, "mode": mode,
                                "mode_share": n / col.len()}
        if col.dtype.is_numeric():
            mean = float(col.cast(pl.Float64).mean())
            std = float(col.cast(pl.Float64).std()) if col.len() > 1 else 0.0
            info["cv"] = finite_or_none(std / abs(mean)) if mean else None
        out[name] = info
    return out
