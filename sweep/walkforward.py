"""Walk-forward validation: optimise on each train window, trade the winner out of sample.

The whole grid runs on every train window through the same distributed sweep (the train
windows are the sweep's windows, so the store, resume and fault tolerance are the same).
Each fold's winner by the objective then runs on the following test window, warmed up on
the bars before it, and the test segments are stitched into one compounding out-of-sample
equity curve. Outputs in ``OUT/NAME``: ``folds.parquet``, ``oos_equity.parquet`` and a
``summary`` in ``sweep.json``.

``oos_equity.parquet`` has ``timestamp``, ``fold``, ``equity`` (the stitched out-of-sample
curve) and ``is_equity``: what the in-sample results promised over the same bars, i.e. each
fold winner's geometric per-bar growth in its train window, compounded over its test bars.
The gap between the two lines is the in-sample optimism the walk-forward exposes.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine import METRIC_NAMES, Panel, run_backtest
from engine.metrics import LOWER_IS_BETTER, metrics_vector, periods_per_year
from sweep.grid import ENGINE_AXES
from sweep.runner import SweepSummary, run_sweep
from sweep.spec import SpecError, SweepSpec
from sweep.store import ResultStore, atomic_write
from sweep.trials import finite_or_none as _num
from sweep.trials import window_overfit_stats
from sweep.windows import advance, parse_length

__all__ = ["Fold", "WalkForwardConfig", "WalkForwardResult", "make_folds", "walk_forward"]

_WF_KEYS = {"train", "test", "step", "anchored", "purge", "objective", "filters", "min_trades"}
_SELECTION_KEYS = ("objective", "filters", "min_trades")


@dataclass(frozen=True)
class WalkForwardConfig:
    """The [walk_forward] table: lengths in bars (int) or calendar units ("2Y", "6M")."""

    train: int | str
    test: int | str
    step: int | str
    anchored: bool = False
    purge: int = 0
    objective: str = "sharpe"
    filters: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WalkForwardConfig:
        unknown = sorted(set(raw) - _WF_KEYS)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; known: {sorted(_WF_KEYS)}")
        for key in ("train", "test"):
            if key not in raw:
                raise ValueError(f"'{key}' is required (bars, or a length like '2Y')")
        train = parse_length(raw["train"], "train")
        test = parse_length(raw["test"], "test")
        step = parse_length(raw.get("step", raw["test"]), "step")
        anchored = raw.get("anchored", False)
        if not isinstance(anchored, bool):
            raise ValueError(f"'anchored' must be true or false, got {anchored!r}")
        purge = raw.get("purge", 0)
        if isinstance(purge, bool) or not isinstance(purge, int) or purge < 0:
            raise ValueError(f"'purge' must be a number of bars >= 0, got {purge!r}")
        objective = raw.get("objective", "sharpe")
        if objective not in METRIC_NAMES:
            raise ValueError(f"objective {objective!r} is not a metric; metrics: "
                             f"{', '.join(METRIC_NAMES)}")
        filters = raw.get("filters", [])
        if isinstance(filters, str):
            filters = [filters]
        if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
            raise ValueError("'filters' must be a list of conditions such as 'n_trades >= 10'")
        if "min_trades" in raw:
            n = raw["min_trades"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"'min_trades' must be an integer >= 0, got {n!r}")
            filters = [*filters, f"n_trades >= {n}"]
        probe = pl.DataFrame({m: [0.0] for m in METRIC_NAMES})
        for f in filters:
            try:
                probe.select(pl.sql_expr(f))
            except Exception as exc:
                raise ValueError(f"filter {f!r} is not a condition on metrics "
                                 f"({str(exc).splitlines()[0]})") from None
        return cls(train, test, step, anchored, purge, objective, tuple(filters))


@dataclass(frozen=True)
class Fold:
    """Bar bounds (end exclusive) of one fold's train and test windows."""

    fold: int
    train: tuple[int, int]
    test: tuple[int, int]


def make_folds(panel: Panel, wf: WalkForwardConfig) -> list[Fold]:
    """Train windows roll (or expand, if anchored) by ``step``; each test window starts
    ``purge`` bars after its train window ends and lasts ``test``.

    Example:
        >>> from engine.data import synthetic_panel
        >>> p = synthetic_panel(3, 1000, seed=1)
        >>> [f.test for f in make_folds(p, WalkForwardConfig(500, 100, 100))][:2]
        [(500, 600), (600, 700)]
    """
    folds: list[Fold] = []
    start, end = 0, advance(panel, 0, wf.train)
    while end <= panel.n_bars:
        t0 = end + wf.purge
        t1 = advance(panel, t0, wf.test) if t0 < panel.n_bars else panel.n_bars + 1
        if t1 > panel.n_bars:
            break
        folds.append(Fold(len(folds), (0 if wf.anchored else start, end), (t0, t1)))
        start = advance(panel, start, wf.step)
        end = advance(panel, start, wf.train)
    if wf.step == wf.test:
        # Calendar lengths do not add up exactly (weekends, month ends): end each test
        # window where the next one starts, so that the tests tile the data as with bars.
        folds = [dataclasses.replace(f, test=(f.test[0], nxt.test[0]))
                 for f, nxt in itertools.pairwise(folds)] + folds[-1:]
    return folds


@dataclass
class WalkForwardResult:
    """The sweep over the train windows and what walk-forward made of it."""

    sweep: SweepSummary
    folds: pl.DataFrame
    oos_equity: pl.DataFrame
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.sweep.ok

    def describe(self) -> str:
        s = self.summary
        oos = s["oos_metrics"]
        return "\n".join([
            self.sweep.describe(),
            f"walk-forward: {s['n_folds']} folds; out of sample: total return "
            f"{_pct(oos['total_return'])}, sharpe {_fmt(oos['sharpe'], '.2f')}, max drawdown "
            f"{_pct(oos['max_drawdown'])}",
            f"  walk-forward efficiency {_fmt(s['wfe'])}, DSR {_fmt(s['dsr'])}, "
            f"PBO {_fmt(s['pbo'])}",
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

    Example:
        >>> import sweep
        >>> spec = sweep.SweepSpec.from_toml("examples/walk_forward.toml")  # doctest: +SKIP
        >>> result = sweep.walk_forward(spec, out="results")                 # doctest: +SKIP
        >>> result.summary["pbo"]                                            # doctest: +SKIP
    """
    if not isinstance(spec, SweepSpec):
        spec = SweepSpec.from_toml(spec)
    where = f"{spec.source}: " if spec.source else ""
    if not spec.walk_forward:
        raise SpecError(f"{where}no [walk_forward] table in the config")
    if spec.windows is not None:
        raise SpecError(f"{where}[windows] and [walk_forward] exclude each other: the folds "
                        "are the windows")
    try:
        wf = WalkForwardConfig.from_dict(spec.walk_forward)
    except ValueError as exc:
        raise SpecError(f"{where}[walk_forward] {exc}") from None
    panel = spec.resolve().panel  # validates everything else first
    folds = make_folds(panel, wf)
    overlap = [(a.fold, b.fold) for a, b in itertools.pairwise(folds)
               if b.test[0] < a.test[1]]
    if overlap:
        raise SpecError(
            f"{where}[walk_forward] step {spec.walk_forward.get('step')!r} is shorter than "
            f"test {spec.walk_forward['test']!r}: the test windows of folds {overlap[0]} "
            "overlap and cannot be stitched into one out-of-sample curve")
    if not folds:
        raise SpecError(
            f"{where}[walk_forward] no fold fits: train {spec.walk_forward['train']!r} + "
            f"purge {wf.purge} + test {spec.walk_forward['test']!r} is longer than the data "
            f"({panel.n_bars} bars, {panel.timestamps[0]!s:.10} .. "
            f"{panel.timestamps[-1]!s:.10})"
        )
    ts = panel.timestamps
    # The train sweep's identity leaves out the selection keys: choosing by another
    # objective or filter reuses the stored runs instead of recomputing the grid.
    train_spec = dataclasses.replace(
        spec,
        windows={"ranges": [[str(ts[f.train[0]]), str(ts[f.train[1] - 1])] for f in folds]},
        walk_forward={k: v for k, v in spec.walk_forward.items() if k not in _SELECTION_KEYS},
    )
    summary = run_sweep(train_spec, client, out, **sweep_options)
    store = ResultStore(summary.path)
    if summary.failed_chunks:
        raise RuntimeError(
            f"walk-forward needs every train run; {len(summary.failed_chunks)} chunk(s) "
            f"failed:\n{summary.describe()}"
        )
    resolved = train_spec.resolve(panel)
    runs = pl.scan_parquet(store.runs / "**" / "part-*.parquet", hive_partitioning=True)
    folds_df, oos = _out_of_sample(resolved, runs, folds, wf)
    result = _summarise(resolved, runs, folds, folds_df, oos, wf, summary)
    atomic_write(store.root / "folds.parquet", result.folds.write_parquet)
    atomic_write(store.root / "oos_equity.parquet", oos.write_parquet)
    meta = store.read_meta() or {}
    meta["summary"] = result.summary
    meta["folds"] = [
        {"fold": f.fold, "train": [str(ts[f.train[0]]), str(ts[f.train[1] - 1])],
         "test": [str(ts[f.test[0]]), str(ts[f.test[1] - 1])]} for f in folds
    ]
    store.write_meta(meta)
    return result


def _select(runs: pl.LazyFrame, fold: int, wf: WalkForwardConfig) -> dict[str, Any] | None:
    """The fold's best run by the objective among runs passing the filters."""
    lf = runs.filter((pl.col("window") == fold) & pl.col("error").is_null()
                     & pl.col(wf.objective).is_not_nan())
    for f in wf.filters:
        lf = lf.filter(pl.sql_expr(f))
    best = lf.sort([wf.objective, "combo"],
                   descending=[wf.objective not in LOWER_IS_BETTER, False]).head(1).collect()
    return best.row(0, named=True) if best.height else None


def _out_of_sample(resolved: Any, runs: pl.LazyFrame, folds: list[Fold],
                   wf: WalkForwardConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    panel, strategy, base = resolved.panel, resolved.strategy, resolved.config
    ts = panel.timestamps
    params = [n for n in resolved.grid.names if n in strategy.params]
    engine_axes = [n for n in resolved.grid.names if n in ENGINE_AXES]
    rows, segments = [], []
    level = base.init_cash  # the stitched curve compounds across folds
    promised = base.init_cash
    for f in folds:
        best = _select(runs, f.fold, wf)
        row: dict[str, Any] = {
            "fold": f.fold, "train_start": ts[f.train[0]], "train_end": ts[f.train[1] - 1],
            "test_start": ts[f.test[0]], "test_end": ts[f.test[1] - 1],
        }
        if best is None:  # nothing passed the filters: stay in cash for this fold
            row |= {p: None for p in params + engine_axes}
            row |= {f"is_{m}": None for m in METRIC_NAMES}
            row |= {f"oos_{m}": None for m in METRIC_NAMES}
            n = f.test[1] - f.test[0]
            segments.append(pl.DataFrame({
                "timestamp": ts[f.test[0]:f.test[1]], "fold": [f.fold] * n,
                "equity": [level] * n, "is_equity": [promised] * n}))
            rows.append(row)
            continue
        chosen = {p: best[p] for p in params}
        cfg = base.replace(**{a: best[a] for a in engine_axes}) if engine_axes else base
        weights = strategy.weights(panel, **chosen)
        res = run_backtest(panel, weights, cfg, window=(ts[f.test[0]], ts[f.test[1] - 1]))
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
            "timestamp": ts[f.test[0]:f.test[1]], "fold": [f.fold] * len(oos_curve),
            "equity": oos_curve, "is_equity": promised_curve}))
        level, promised = float(oos_curve[-1]), float(promised_curve[-1])
    folds_df = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col(c).cast(pl.Datetime("ns")) for c in
        ("train_start", "train_end", "test_start", "test_end"))
    oos = pl.concat(segments).with_columns(pl.col("timestamp").cast(pl.Datetime("ns")))
    return folds_df, oos


def _summarise(resolved: Any, runs: pl.LazyFrame, folds: list[Fold], folds_df: pl.DataFrame,
               oos: pl.DataFrame, wf: WalkForwardConfig, sweep: SweepSummary
               ) -> WalkForwardResult:
    base = resolved.config
    equity = oos["equity"].to_numpy()
    # The data's bars per year: the stitched timestamps' span counts the bars between
    # test windows when step > test, which would deflate volatility and Sharpe.
    ppy = base.periods_per_year or periods_per_year(resolved.panel.timestamps)
    values = metrics_vector(equity, np.zeros_like(equity), base.init_cash, ppy,
                            float(folds_df["oos_fees"].fill_null(0).sum()), 0.0,
                            float(folds_df["oos_n_trades"].fill_null(0).sum()), 0.0, 0.0,
                            0.0, 0.0)
    oos_metrics = {m: _num(v) for m, v in zip(METRIC_NAMES, values.tolist(), strict=True)
                   if m not in ("win_rate", "profit_factor", "turnover", "exposure")}
    is_cagr = folds_df["is_cagr"].drop_nulls()
    mean_is = float(is_cagr.mean()) if is_cagr.len() else float("nan")
    # Walk-forward efficiency: annualised OOS return over annualised IS return; undefined
    # (None) when the in-sample return is not positive, where the ratio would mislead.
    wfe = oos_metrics["cagr"] / mean_is if mean_is > 0 else None
    per_fold = [window_overfit_stats(runs, f.fold, wf.objective, wf.filters) for f in folds]
    dsr = [p["dsr"] for p in per_fold if p["dsr"] is not None]
    pbo = [p["pbo"] for p in per_fold if p["pbo"] is not None]
    folds_df = folds_df.with_columns(
        pl.Series("dsr", [p["dsr"] for p in per_fold], dtype=pl.Float64),
        pl.Series("pbo", [p["pbo"] for p in per_fold], dtype=pl.Float64),
    )
    summary = {
        "n_folds": len(folds),
        "objective": wf.objective,
        "oos_metrics": oos_metrics,
        "is_mean_cagr": _num(mean_is),
        "wfe": _num(wfe),
        "dsr": _num(float(np.mean(dsr))) if dsr else None,
        "pbo": _num(float(np.mean(pbo))) if pbo else None,
        "dsr_by_fold": [p["dsr"] for p in per_fold],
        "pbo_by_fold": [p["pbo"] for p in per_fold],
        "param_stability": _stability(folds_df, resolved),
    }
    return WalkForwardResult(sweep, folds_df, oos, summary)


def _stability(folds_df: pl.DataFrame, resolved: Any) -> dict[str, Any]:
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
            info["cv"] = _num(std / abs(mean)) if mean else None
        out[name] = info
    return out


