"""What a search optimises, written once: a run's value and a trial's value, and the
search's convergence read back from the store.

* A run's value is its objective metric when the run succeeded (``error`` is null) and
  passes the selection's filters (a walk-forward's ``min_trades``, ``filters``), else NaN.
* A trial's value is the mean of its runs' values over its study's windows, or the value
  in ``objective_window`` when set; NaN (a failed trial) when any is NaN. ±inf counts.
* A trial that pruning stopped has the mean over the windows it was evaluated on as its
  last intermediate value, and no final value: it never counts as the best.

Workers compute run values from the tables they build (the client then needs no file
back), the search's driver combines them into trial values, and ``backsweep show`` and the
report rebuild the same from the stored runs (:func:`trial_values`).

Example:
    >>> import polars as pl
    >>> runs = pl.DataFrame({"sharpe": [1.0, 2.0, 3.0], "n_trades": [5, 20, 30],
    ...                      "error": [None, None, "boom"]})
    >>> run_values(runs, "sharpe", ("n_trades >= 10",)).tolist()
    [nan, 2.0, nan]
    >>> trial_value([1.0, 2.0], None), trial_value([1.0, 2.0], 1)
    (1.5, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from sweep.schema import ERROR, PRUNED, TRIAL
from sweep.select import descending

__all__ = ["convergence_lines", "convergence_points", "run_value_expr", "run_values",
           "trial_value", "trial_values"]


def run_value_expr(objective: str, filters: Sequence[str] = ()) -> pl.Expr:
    """A run's value as a polars expression (see the module docstring)."""
    ok = pl.col(ERROR).is_null() & pl.col(objective).is_not_null() \
        & ~pl.col(objective).cast(pl.Float64).is_nan()
    for f in filters:
        ok = ok & pl.sql_expr(f).fill_null(False)
    return pl.when(ok).then(pl.col(objective).cast(pl.Float64)).otherwise(float("nan"))


def run_values(frame: pl.DataFrame, objective: str, filters: Sequence[str] = ()
               ) -> np.ndarray:
    """Each run's value (float64, NaN: failed or filtered out)."""
    if frame.height == 0:
        return np.zeros(0)
    return frame.select(run_value_expr(objective, filters).alias("v"))["v"].to_numpy()


def trial_value(values: Sequence[float], window: int | None) -> float:
    """A trial's value from its runs' values, in its study's window order: the mean, or
    the value at position ``window``; NaN when any (or that one) is NaN."""
    if window is not None:
        return float(values[window])
    if not len(values) or any(math.isnan(v) for v in values):
        return float("nan")
    return float(np.mean(values))


def trial_values(runs: pl.LazyFrame | pl.DataFrame, search: Any) -> pl.DataFrame:
    """One row a stored trial: ``study``, ``trial``, ``combo``, ``value`` (NaN: failed or
    pruned), ``state`` (complete, pruned, failed) and ``best``: the best value of the
    study's complete trials up to this one (null before the first). ``search``: the
    record's :class:`sweep.record.SearchInfo`."""
    lf = runs.lazy()
    names = lf.collect_schema().names()
    schema = {"study": pl.Int64, "trial": pl.Int64, "combo": pl.Int64, "value": pl.Float64,
              "state": pl.String, "best": pl.Float64}
    if TRIAL not in names or not search.studies:
        return pl.DataFrame(schema=schema)
    settings = search.settings
    filters = tuple(settings.get("filters", ()))
    window = settings.get("objective_window")
    desc = descending(search.objective)
    out = []
    for study in search.studies:
        wins = list(study.windows)
        rows = (lf.filter(pl.col("window").is_in(wins) & pl.col(TRIAL).is_not_null())
                .select("window", TRIAL, "combo",
                        (pl.col(PRUNED) if PRUNED in names else pl.lit(False)).alias("p"),
                        run_value_expr(search.objective, filters).alias("v"))
                .collect())
        if rows.height == 0:
            continue
        rows = rows.with_columns(pos=pl.col("window").replace_strict(
            wins, list(range(len(wins))), return_dtype=pl.Int64)).sort(TRIAL, "pos")
        per = rows.group_by(TRIAL, maintain_order=True).agg(
            pl.col("combo").first(), pl.col("p").any().alias("pruned"),
            pl.col("v"), pl.col("pos"))
        values, states = [], []
        for vals, pos, pruned in zip(per["v"].to_list(), per["pos"].to_list(),
                                     per["pruned"].to_list(), strict=True):
            if pruned:
                values.append(float("nan"))
                states.append("pruned")
                continue
            full = [float("nan")] * len(wins)
            for p, v in zip(pos, vals, strict=True):
                full[p] = v
            value = trial_value(full, window)
            values.append(value)
            states.append("failed" if math.isnan(value) else "complete")
        frame = pl.DataFrame({"study": [study.study] * per.height, "trial": per[TRIAL],
                              "combo": per["combo"], "value": values, "state": states},
                             schema_overrides={"value": pl.Float64})
        ok = pl.when(pl.col("state") == "complete").then(pl.col("value"))
        best = ok.cum_max() if desc else ok.cum_min()
        out.append(frame.with_columns(best=best.forward_fill()))
    if not out:
        return pl.DataFrame(schema=schema)
    return pl.concat(out).cast(schema)  # type: ignore[arg-type]


def convergence_points(n: int, k: int = 10) -> list[int]:
    """About ``k`` trial counts from 1 to ``n``, spaced evenly on a log scale (1, 2, 5, 10,
    ..., n), where a convergence summary reads the best value.

    Example:
        >>> convergence_points(495)
        [1, 2, 5, 10, 20, 50, 100, 200, 495]
    """
    if n < 1:
        return []
    out = [p for d in (1, 10, 100, 1000, 10_000, 100_000, 1_000_000) for p in
           (d, 2 * d, 5 * d) if p < n]
    if len(out) > k:
        out = out[-k:]
    return [*out, n]


def convergence_lines(search: Any, runs: pl.LazyFrame | pl.DataFrame) -> list[str]:
    """``backsweep show``'s account of a search: what it ran and its convergence (the best
    value after 1, 2, 5, 10, ... trials, a row a study), from the stored runs."""
    s = search
    settings = s.settings
    lines = [f"search {s.method} ({settings.get('sampler')}, seed {settings.get('seed')}, "
             f"batch {settings.get('batch')}"
             + (f", prune {settings['prune']}" if settings.get("prune") else "")
             + f"): {s.n_trials} trials by {s.objective}"
             + ("" if s.complete else " (not finished)")
             + f"; {s.n_proposals} proposals, {s.n_repeats} repeats (nothing run), "
             f"{s.n_rejected} broke the constraints, {s.n_pruned} pruned, {s.n_failed} failed"]
    if s.sampler_ms is not None:
        lines.append(f"  sampler {s.sampler_ms:.2f} ms a proposal"
                     + (f"; runs {s.run_ms:.2f} ms of worker time each" if s.run_ms else ""))
    table = trial_values(runs, s)
    if table.height == 0:
        return lines
    several = len(s.studies) > 1
    n = int(table["trial"].max()) + 1
    points = convergence_points(n)
    width = max(9, *(len(f"{p:,}") + 2 for p in points))
    lines.append(f"convergence: best {s.objective} after N trials"
                 + (" (per fold)" if several else ""))
    lines.append("  " + f"{'trials':<8}" + "".join(f"{p:>{width},}" for p in points))
    for st in s.studies:
        rows = table.filter(pl.col("study") == st.study).sort("trial")
        best = rows["best"].to_list()
        cells = []
        for p in points:
            v = best[p - 1] if p - 1 < len(best) else (best[-1] if best else None)
            cells.append(f"{'n/a' if v is None else f'{v:.4g}':>{width}}")
        label = f"fold {st.study}" if several else "best"
        where = "" if st.best_trial is None else f"   (trial {st.best_trial})"
        lines.append("  " + f"{label:<8}" + "".join(cells) + where)
    return lines
