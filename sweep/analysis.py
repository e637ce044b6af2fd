"""Notebook helpers over a sweep's runs table: polars in, polars out, and charts.

Every function takes the table as a polars ``DataFrame`` or ``LazyFrame`` (what
``sweep.evaluate`` and ``sweep.load_results`` return). The table functions return a
``DataFrame``; each ``*_chart`` companion takes the same arguments and returns a
:class:`sweep.report.charts.Chart` of the same numbers, which Jupyter shows inline (an SVG,
no plotting library; ``chart.save("x.svg")`` writes it to a file):

==========================  =================================================
``heatmap``                 ``heatmap_chart``: the pivot as coloured cells
``sensitivity``             ``sensitivity_chart``: the best point and its neighbours
``compare_windows``         ``compare_windows_chart``: parameter sets x windows
(a metric's values)         ``distribution_chart``: a histogram across runs
(walk-forward tables)       ``walk_forward_chart``: OOS equity vs the IS promise
(backtest results)          ``equity_chart`` / ``drawdown_chart``: run curves
==========================  =================================================

Failed runs (non-null ``error``) and runs whose metric is null or NaN are left out; ±inf
values (e.g. a ``profit_factor`` with no losing trade) are kept.

"Best" follows the metric's direction: higher is better except for ``max_drawdown``,
``max_drawdown_duration``, ``volatility``, ``fees`` and ``turnover`` (see
:data:`LOWER_IS_BETTER`); functions with an ``ascending`` argument let you override it.

Example:
    >>> import sweep
    >>> from sweep import analysis
    >>> from engine.data import synthetic_panel
    >>> panel = synthetic_panel(n_assets=5, n_bars=400, seed=2)
    >>> runs = sweep.evaluate(panel, "ma_cross", {"fast": [5, 10], "slow": [20, 50]})
    >>> analysis.param_columns(runs)
    ['fast', 'slow']
    >>> analysis.top_k(runs, "sharpe", k=2).height
    2
    >>> analysis.heatmap(runs, x="fast", y="slow").columns
    ['slow', '5', '10']
    >>> analysis.heatmap_chart(runs, x="fast", y="slow")   # shown as an SVG in Jupyter
    <Chart heatmap: heatmap of mean sharpe by fast and slow>
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine import METRIC_NAMES
from engine.metrics import LOWER_IS_BETTER
from sweep.report import charts
from sweep.report.charts import Chart
from sweep.report.figures import walk_forward_chart as _walk_forward_chart
from sweep.report.format import fmt_metric, fmt_value
from sweep.schema import is_param_column
from sweep.schema import param_columns as _param_names
from sweep.select import Selection, SelectionError, candidates, descending, select_best

__all__ = [
    "LOWER_IS_BETTER",
    "PLATEAU_MAX_RELATIVE_DROP",
    "STABLE_MIN_SPEARMAN",
    "best_per_window",
    "compare_windows",
    "compare_windows_chart",
    "distribution_chart",
    "drawdown_chart",
    "equity_chart",
    "heatmap",
    "heatmap_chart",
    "param_columns",
    "sensitivity",
    "sensitivity_chart",
    "top_k",
    "walk_forward_chart",
    "window_rank_correlation",
]

PLATEAU_MAX_RELATIVE_DROP = 0.25
"""``sensitivity``: the best point sits on a plateau when the median relative drop of the
metric at its neighbouring grid points is at most this (25%)."""

STABLE_MIN_SPEARMAN = 0.5
"""``window_rank_correlation``: a window pair ranks the parameter sets consistently when
their Spearman rank correlation is at least this."""

_AGGS = ("mean", "median", "min", "max", "std", "sum", "count")

Runs = pl.DataFrame | pl.LazyFrame


def _lazy(runs: Any) -> pl.LazyFrame:
    if isinstance(runs, pl.LazyFrame):
        return runs
    if isinstance(runs, pl.DataFrame):
        return runs.lazy()
    raise TypeError(
        f"runs must be a polars DataFrame or LazyFrame (sweep.evaluate / sweep.load_results),"
        f" got {type(runs).__name__}"
    )


def _names(lf: pl.LazyFrame) -> list[str]:
    return lf.collect_schema().names()


def param_columns(runs: Runs) -> list[str]:
    """The parameter columns of a runs table (``sweep.schema.param_columns``: every column
    that is neither a metric nor bookkeeping), in table order. Engine fields swept as
    grid axes (e.g. ``commission``) count as parameters."""
    return _param_names(_names(_lazy(runs)))


def _check_metric(names: list[str], metric: str) -> None:
    if metric not in names:
        have = [c for c in names if c in METRIC_NAMES]
        others = [c for c in names if is_param_column(c)]
        raise ValueError(
            f"unknown metric column {metric!r}; available metrics: {', '.join(have) or 'none'}"
            + (f" (other columns: {', '.join(others)})" if others else "")
        )


def _check_params(names: list[str], params: Sequence[str], what: str = "parameter") -> None:
    available = _param_names(names)
    for p in params:
        if p not in available:
            raise ValueError(
                f"unknown {what} column {p!r}; available parameters: "
                f"{', '.join(available) or 'none'}"
            )


def _in_window(lf: pl.LazyFrame, names: list[str], window: int | None) -> pl.LazyFrame:
    if window is None:
        return lf
    if "window" not in names:
        raise ValueError(f"window={window!r} given but the table has no 'window' column")
    return lf.filter(pl.col("window") == window)


def top_k(runs: Runs, metric: str = "sharpe", k: int = 10, ascending: bool | None = None,
          by_window: bool = False) -> pl.DataFrame:
    """The ``k`` best runs by ``metric`` (all columns), best first.

    ``ascending=None`` sorts lower-is-better metrics (:data:`LOWER_IS_BETTER`) ascending
    and the others descending. ``by_window=True`` gives the top ``k`` of each window,
    windows in order. Ties go to the lowest ``combo`` (sweep.select, as everywhere).
    """
    lf = _lazy(runs)
    names = _names(lf)
    _check_metric(names, metric)
    if by_window and "window" not in names:
        raise ValueError("by_window=True but the table has no 'window' column")
    try:
        return select_best(lf, Selection(metric, ascending=ascending), k=k,
                           by=["window"] if by_window else ())
    except SelectionError as exc:
        raise ValueError(str(exc)) from None


def best_per_window(runs: Runs, metric: str = "sharpe", ascending: bool | None = None
                    ) -> pl.DataFrame:
    """The best run of each window (one row a window, in window order)."""
    return top_k(runs, metric, k=1, ascending=ascending, by_window=True)


def heatmap(runs: Runs, x: str, y: str, metric: str = "sharpe", agg: str = "mean",
            window: int | None = None) -> pl.DataFrame:
    """A pivot table of ``metric`` over two parameters, ready for plotting.

    One row per value of ``y`` (the first column, sorted), one column per value of ``x``
    (named by the value as a string, sorted by value); each cell aggregates (``agg``: mean,
    median, min, max, std, sum or count) the runs with those two values, i.e. across the
    other parameters and, unless ``window`` picks one, across windows. Missing combinations
    (e.g. removed by a constraint) are null.

    Example (plotting): ``h = heatmap(runs, "fast", "slow");
    plt.imshow(h.drop("slow").to_numpy())``.
    """
    if agg not in _AGGS:
        raise ValueError(f"unknown agg {agg!r}; choose one of {', '.join(_AGGS)}")
    lf = _lazy(runs)
    names = _names(lf)
    _check_metric(names, metric)
    _check_params(names, [x, y])
    if x == y:
        raise ValueError(f"x and y must be different parameters, both are {x!r}")
    lf = candidates(_in_window(lf, names, window), Selection(metric))
    cells = (
        lf.group_by([y, x])
        .agg(getattr(pl.col(metric), agg)().alias(metric))
        .sort([x, y])
        .collect()
    )
    if cells.height == 0:
        raise ValueError(f"no successful run with a {metric!r} value"
                         + (f" in window {window}" if window is not None else ""))
    wide = cells.pivot(on=x, index=y, values=metric, sort_columns=False)
    return wide.sort(y)


def _aggregate_sets(lf: pl.LazyFrame, params: list[str], metric: str) -> pl.DataFrame:
    """One row per parameter set: the metric's mean over its runs (its windows)."""
    return lf.group_by(params, maintain_order=True).agg(pl.col(metric).mean()).collect()


def _value_dtype(schema: pl.Schema, params: Sequence[str]) -> pl.DataType:
    dtypes = {schema[p] for p in params}
    if len(dtypes) == 1:
        return dtypes.pop()
    if all(d.is_numeric() for d in dtypes):
        return pl.Float64()
    return pl.String()


def sensitivity(runs: Runs, params: Sequence[str] | str | None = None, metric: str = "sharpe",
                window: int | None = None) -> pl.DataFrame:
    """How much ``metric`` drops next to the best grid point: a plateau or a spike?

    The runs are reduced to one value per parameter set (the mean over its windows, unless
    ``window`` picks one); the best set is the first in table order among equals. From it,
    each parameter in ``params`` (default: every parameter with more than one value) is
    moved one grid step down (``direction`` "-") and up ("+") with all the other
    parameters held at the best set's values; the grid
    steps are the values that parameter takes in the table along that line (so points
    removed by a constraint are skipped). Edges have no neighbour and give no row.

    Columns: ``param``, ``direction``, ``best_value``, ``value`` (the neighbour's value of
    ``param``), ``best_metric``, ``metric`` (the neighbour's), ``drop`` (how much worse the
    neighbour is: ``best − neighbour``, or ``neighbour − best`` for lower-is-better metrics;
    never negative), ``relative_drop`` (``drop / |best_metric|``, null when that is 0 or
    not finite), and ``verdict``, the same on every row:

    * "plateau" when the median ``relative_drop`` over the neighbours is at most
      :data:`PLATEAU_MAX_RELATIVE_DROP` (25%): the best point's neighbourhood performs
      about as well, so the choice is robust;
    * "spike" otherwise: the best point is an isolated peak, a classic sign of overfitting;
    * "undetermined" when no neighbour has a defined relative drop.
    """
    lf = _lazy(runs)
    names = _names(lf)
    _check_metric(names, metric)
    all_params = param_columns(lf)
    if not all_params:
        raise ValueError("the table has no parameter columns")
    lf = candidates(_in_window(lf, names, window), Selection(metric))
    sets = _aggregate_sets(lf, all_params, metric)
    if sets.height == 0:
        raise ValueError(f"no successful run with a {metric!r} value"
                         + (f" in window {window}" if window is not None else ""))
    if params is None:
        params = [p for p in all_params if sets[p].n_unique() > 1]
    else:
        params = [params] if isinstance(params, str) else list(params)
        _check_params(names, params)
    desc = descending(metric)
    best = sets.sort(metric, descending=desc, maintain_order=True).row(0, named=True)
    best_metric = best[metric]
    rows = []
    for p in params:
        line = sets
        for other in all_params:
            if other != p:
                line = line.filter(pl.col(other).eq_missing(best[other]))
        line = line.sort(p, nulls_last=True)
        values = line[p].to_list()
        pos = values.index(best[p])
        for direction, nb in (("-", pos - 1), ("+", pos + 1)):
            if 0 <= nb < len(values):
                m = line[metric][nb]
                drop = best_metric - m if desc else m - best_metric
                rel = (drop / abs(best_metric)
                       if best_metric != 0 and math.isfinite(best_metric) and
                       math.isfinite(drop) else None)
                rows.append((p, direction, best[p], values[nb], best_metric, m, drop, rel))
    if not rows:
        raise ValueError(
            f"no neighbouring grid point: {', '.join(params) or 'no parameter'} "
            "has a single value along the best point's line"
        )
    vdt = _value_dtype(sets.schema, params)

    def val(v: Any) -> Any:
        if v is None:
            return None
        return str(v) if vdt == pl.String() else v

    out = pl.DataFrame(
        {
            "param": [r[0] for r in rows],
            "direction": [r[1] for r in rows],
            "best_value": pl.Series([val(r[2]) for r in rows], dtype=vdt, strict=False),
            "value": pl.Series([val(r[3]) for r in rows], dtype=vdt, strict=False),
            "best_metric": [float(r[4]) for r in rows],
            "metric": [float(r[5]) for r in rows],
            "drop": [float(r[6]) for r in rows],
            "relative_drop": pl.Series([r[7] for r in rows], dtype=pl.Float64),
        }
    )
    rel = out["relative_drop"].drop_nulls()
    if rel.len() == 0:
        verdict = "undetermined"
    else:
        verdict = "plateau" if rel.median() <= PLATEAU_MAX_RELATIVE_DROP else "spike"
    return out.with_columns(pl.lit(verdict).alias("verdict"))


def _window_ids(lf: pl.LazyFrame, names: list[str]) -> list[Any]:
    if "window" not in names:
        raise ValueError("the table has no 'window' column")
    return sorted(lf.select(pl.col("window").unique()).collect()["window"].to_list())


def _side_by_side(runs: Runs, metric: str, params: Sequence[str] | str | None
                  ) -> tuple[pl.DataFrame, list[Any]]:
    lf = _lazy(runs)
    names = _names(lf)
    _check_metric(names, metric)
    params = param_columns(lf) if params is None else (
        [params] if isinstance(params, str) else list(params))
    _check_params(names, params)
    if not params:
        raise ValueError("the table has no parameter columns")
    windows = _window_ids(lf, names)
    lf = candidates(lf, Selection(metric))
    per = (lf.group_by([*params, "window"], maintain_order=True)
           .agg(pl.col(metric).mean()).collect())
    out = per.select(params).unique(maintain_order=True)
    for w in windows:
        part = per.filter(pl.col("window") == w).select(
            [*params, pl.col(metric).alias(f"{metric}_w{w}")])
        out = out.join(part, on=params, how="left", nulls_equal=True)
    wcols = [f"{metric}_w{w}" for w in windows]
    out = out.with_columns(pl.mean_horizontal(wcols).alias(f"{metric}_mean"))
    out = out.sort(f"{metric}_mean", descending=descending(metric), nulls_last=True,
                   maintain_order=True)
    return out, windows


def compare_windows(runs: Runs, metric: str = "sharpe",
                    params: Sequence[str] | str | None = None) -> pl.DataFrame:
    """The metric of each parameter set in each window, side by side.

    One row per parameter set (``params``, default every parameter column; the metric is
    averaged over the runs sharing those values), one column ``{metric}_w{K}`` per window
    K (null when the run failed or is missing there), and ``{metric}_mean`` over the
    windows; best mean first. Whether the windows rank the sets alike is
    :func:`window_rank_correlation`.
    """
    return _side_by_side(runs, metric, params)[0]


def _average_ranks(x: np.ndarray) -> np.ndarray:
    return pl.Series(x).rank("average").to_numpy().astype(np.float64)


def window_rank_correlation(runs: Runs, metric: str = "sharpe",
                            params: Sequence[str] | str | None = None) -> pl.DataFrame:
    """Spearman rank correlation of ``metric`` across parameter sets, for each pair of
    windows: is the ranking of the parameter sets stable from one window to the next?

    Columns: ``window_a``, ``window_b`` (a < b), ``n`` (parameter sets with a value in
    both), ``spearman`` (Pearson correlation of the average ranks; null with fewer than 3
    sets or a constant column) and ``stable`` (``spearman >=``
    :data:`STABLE_MIN_SPEARMAN`, i.e. 0.5). A table whose windows are uncorrelated says the
    in-sample winner won by luck, not skill.
    """
    wide, windows = _side_by_side(runs, metric, params)
    rows = []
    for i, wa in enumerate(windows):
        for wb in windows[i + 1:]:
            both = wide.select(f"{metric}_w{wa}", f"{metric}_w{wb}").drop_nulls()
            a = both[:, 0].to_numpy().astype(np.float64)
            b = both[:, 1].to_numpy().astype(np.float64)
            rho = None
            if a.size >= 3:
                ra, rb = _average_ranks(a), _average_ranks(b)
                if ra.std() > 0 and rb.std() > 0:
                    rho = float(np.corrcoef(ra, rb)[0, 1])
            rows.append((wa, wb, int(a.size), rho))
    wdt = _lazy(runs).collect_schema()["window"]
    out = pl.DataFrame(
        {
            "window_a": pl.Series([r[0] for r in rows], dtype=wdt),
            "window_b": pl.Series([r[1] for r in rows], dtype=wdt),
            "n": pl.Series([r[2] for r in rows], dtype=pl.Int64),
            "spearman": pl.Series([r[3] for r in rows], dtype=pl.Float64),
        }
    )
    return out.with_columns((pl.col("spearman") >= STABLE_MIN_SPEARMAN).alias("stable"))


# ------------------------------------------------------------------------------ charts
def heatmap_chart(runs: Runs, x: str, y: str, metric: str = "sharpe", agg: str = "mean",
                  window: int | None = None) -> Chart:
    """:func:`heatmap` drawn: one cell a pair of values (the largest ``y`` on top, grey
    where no run has the pair), its hover text the value and the number of runs."""
    pivot = heatmap(runs, x, y, metric, agg, window)
    counts, lo, hi = (heatmap(runs, x, y, metric, a, window).drop(y).fill_null(0)
                      .cast(pl.Float64).to_numpy() for a in ("count", "min", "max"))
    where = "" if window is None else f", window {window}"
    return charts.heatmap(pivot.drop(y).cast(pl.Float64).to_numpy(), pivot.columns[1:],
                          [fmt_value(v) for v in pivot[y]], metric=metric, x_name=x,
                          y_name=y, counts=counts, mins=lo, maxs=hi, what=agg,
                          chart_title=f"{agg} {metric} by {x} and {y}{where}")


def sensitivity_chart(runs: Runs, params: Sequence[str] | str | None = None,
                      metric: str = "sharpe", window: int | None = None) -> Chart:
    """:func:`sensitivity` drawn: for each parameter, the metric one grid step down, at
    the best point and one step up (a missing bar: an edge of the grid); the title gives
    the verdict (plateau or spike)."""
    s = sensitivity(runs, params, metric, window)
    groups = list(dict.fromkeys(s["param"].to_list()))
    series = ["one step down", "best", "one step up"]
    values, tips = [], []
    for p in groups:
        rows = {r["direction"]: r for r in s.filter(pl.col("param") == p).iter_rows(named=True)}
        first = next(iter(rows.values()))
        best = (first["best_value"], first["best_metric"])
        cells = [(rows["-"]["value"], rows["-"]["metric"]) if "-" in rows else None, best,
                 (rows["+"]["value"], rows["+"]["metric"]) if "+" in rows else None]
        values.append([None if c is None else c[1] for c in cells])
        tips.append(["" if c is None else f"{p}={fmt_value(c[0])}: {metric} "
                     f"{fmt_metric(metric, c[1])}" for c in cells])
    verdict = s["verdict"][0]
    return charts.grouped_bars(groups, series, values, metric=metric, tips=tips,
                               colors=["#9aa3ad", "#1b7837", "#5f6b7a"],
                               chart_title=f"{metric} around the best point: {verdict}")


def compare_windows_chart(runs: Runs, metric: str = "sharpe",
                          params: Sequence[str] | str | None = None, top: int = 20) -> Chart:
    """:func:`compare_windows` drawn: the ``top`` parameter sets by their mean over the
    windows (best on top), one column a window, coloured by the metric. A set that is good
    in one window and bad in the next shows as a row of mixed colours."""
    wide, windows = _side_by_side(runs, metric, params)
    wide = wide.head(top)[::-1]  # charts draw the first row at the bottom
    names = [c for c in wide.columns if not c.startswith(f"{metric}_")]
    labels = [", ".join(f"{p}={fmt_value(v)}" for p, v in zip(names, row, strict=True))
              for row in wide.select(names).iter_rows()]
    values = wide.select(f"{metric}_w{w}" for w in windows).cast(pl.Float64).to_numpy()
    return charts.heatmap(values, [f"w{w}" for w in windows], labels, metric=metric,
                          x_name="window", what="mean",
                          chart_title=f"{metric} of the {wide.height} best parameter sets "
                                      "in each window")


def distribution_chart(runs: Runs, metric: str = "sharpe", window: int | None = None,
                       bins: int | None = None) -> Chart:
    """A histogram of ``metric`` across the successful runs (of one ``window``, or all),
    with its median."""
    lf = _lazy(runs)
    names = _names(lf)
    _check_metric(names, metric)
    values = (candidates(_in_window(lf, names, window), Selection(metric))
              .select(pl.col(metric).cast(pl.Float64)).collect()[metric].to_numpy())
    where = "" if window is None else f", window {window}"
    return charts.histogram(values, metric, bins=bins, chart_title=f"{metric}{where}")


def _curves(results: Any, labels: Sequence[str] | None) -> list[tuple[str, Any]]:
    if isinstance(results, dict):
        return [(str(k), v) for k, v in results.items()]
    results = list(results) if isinstance(results, list | tuple) else [results]
    if labels is not None:
        return list(zip(labels, results, strict=True))
    return [(getattr(r, "label", None) or f"run {i}", r) for i, r in enumerate(results)]


def equity_chart(results: Any, labels: Sequence[str] | None = None,
                 title: str = "equity") -> Chart:
    """Equity curves over time, one line each: ``results`` is one or a list of objects
    with ``.timestamps`` and ``.equity`` (``engine.run_backtest`` results,
    ``sweep.replay``'s, :class:`sweep.report.Curve`), or a dict ``{label: result}``."""
    lines = [charts.Line(label, r.timestamps, r.equity) for label, r in _curves(results,
                                                                                 labels)]
    return charts.line_chart(lines, chart_title=title)


def drawdown_chart(result: Any, title: str = "drawdown") -> Chart:
    """The underwater curve of one run (``.timestamps``, ``.equity``; the peak starts at
    ``result.config.init_cash`` when it has one), its max drawdown marked."""
    config = getattr(result, "config", None)
    return charts.drawdown_chart(result.timestamps, result.equity, chart_title=title,
                                 start=getattr(config, "init_cash", None), id=None)


def walk_forward_chart(oos_equity: pl.DataFrame | str | os.PathLike[str],
                       folds: pl.DataFrame | None = None) -> Chart:
    """A walk-forward's stitched out-of-sample equity against the in-sample promise, one
    band a fold: from its tables (``WalkForwardResult.oos_equity`` and ``.folds``), or
    from its results folder (``OUT/NAME``, which holds both)."""
    if not isinstance(oos_equity, pl.DataFrame):
        root = Path(oos_equity)
        oos_equity, folds = (pl.read_parquet(root / "oos_equity.parquet"),
                             pl.read_parquet(root / "folds.parquet"))
    return _walk_forward_chart(oos_equity.sort("timestamp"), folds)
