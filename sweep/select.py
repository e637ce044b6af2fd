"""Choosing runs: the best by an objective, after filters. One definition, used by
``backsweep show``, the analysis API, the overfitting summary and walk-forward.

A run competes when it succeeded (``error`` is null), its objective is a number (not null,
not NaN; ±inf counts) and it passes every filter (polars SQL conditions such as
``"n_trades >= 10"``). The direction follows the metric: lower is better for
``engine.metrics.LOWER_IS_BETTER`` (drawdown, volatility, fees, turnover...), higher for
the others. Ties go to the lowest ``combo`` (the grid's order), then the table's order.

Example:
    >>> import polars as pl
    >>> runs = pl.DataFrame({"combo": [0, 1, 2], "window": [0, 0, 0],
    ...                      "sharpe": [0.5, 1.5, float("nan")], "n_trades": [3, 1, 9],
    ...                      "error": [None, None, None]})
    >>> select_best(runs, Selection("sharpe"))["combo"].to_list()
    [1]
    >>> select_best(runs, Selection("sharpe", ("n_trades >= 2",)))["combo"].to_list()
    [0]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from engine import METRIC_NAMES
from engine.metrics import LOWER_IS_BETTER
from sweep.schema import ERROR

__all__ = ["SELECTION_KEYS", "Selection", "SelectionError", "candidates", "descending",
           "select_best"]

Runs = pl.DataFrame | pl.LazyFrame
SELECTION_KEYS = ("objective", "filters", "min_trades")
"""The keys of a config table that say how runs are chosen (see Selection.from_dict)."""


class SelectionError(ValueError):
    """An objective or filter that cannot select runs; the message names it."""


def descending(metric: str) -> bool:
    """Does a larger ``metric`` rank first?"""
    return metric not in LOWER_IS_BETTER


@dataclass(frozen=True)
class Selection:
    """What "best" means: an objective metric and filters every chosen run passes;
    ``ascending`` overrides the metric's own direction (None: keep it)."""

    objective: str = "sharpe"
    filters: tuple[str, ...] = ()
    ascending: bool | None = None

    @property
    def descending(self) -> bool:
        return descending(self.objective) if self.ascending is None else not self.ascending

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Selection:
        """From a config table's ``objective``, ``filters`` and ``min_trades`` keys (other
        keys are ignored: the caller owns the table)."""
        objective = raw.get("objective", "sharpe")
        if objective not in METRIC_NAMES:
            raise SelectionError(f"objective {objective!r} is not a metric; metrics: "
                                 f"{', '.join(METRIC_NAMES)}")
        filters = raw.get("filters", [])
        if isinstance(filters, str):
            filters = [filters]
        if not isinstance(filters, list | tuple) or not all(isinstance(f, str)
                                                            for f in filters):
            raise SelectionError("'filters' must be a list of conditions such as "
                                 "'n_trades >= 10'")
        if "min_trades" in raw:
            n = raw["min_trades"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise SelectionError(f"'min_trades' must be an integer >= 0, got {n!r}")
            filters = [*filters, f"n_trades >= {n}"]
        probe = pl.DataFrame({m: [0.0] for m in METRIC_NAMES})
        for f in filters:
            try:
                probe.select(pl.sql_expr(f))
            except Exception as exc:
                raise SelectionError(f"filter {f!r} is not a condition on metrics "
                                     f"({str(exc).splitlines()[0]})") from None
        return cls(objective, tuple(filters))


def candidates(runs: Runs, selection: Selection) -> pl.LazyFrame:
    """The runs that compete under ``selection`` (see the module docstring)."""
    lf = runs.lazy()
    names = lf.collect_schema().names()
    if selection.objective not in names:
        raise SelectionError(f"no column {selection.objective!r} in the runs")
    if ERROR in names:
        lf = lf.filter(pl.col(ERROR).is_null())
    col = pl.col(selection.objective)
    lf = lf.filter(col.is_not_null() & ~col.cast(pl.Float64).is_nan())
    for f in selection.filters:
        lf = lf.filter(pl.sql_expr(f))
    return lf


def select_best(runs: Runs, selection: Selection, *, k: int = 1,
                by: Iterable[str] = ()) -> pl.DataFrame:
    """The ``k`` best runs under ``selection`` (all columns, best first); with ``by``
    (e.g. ``["window"]``), the ``k`` best of each group, groups in order."""
    if k < 1:
        raise SelectionError(f"k must be >= 1, got {k}")
    lf = candidates(runs, selection)
    names = lf.collect_schema().names()
    by = list(by)
    order = [*by, selection.objective, *(["combo"] if "combo" in names else [])]
    desc = [False] * len(by) + [selection.descending, False][: len(order) - len(by)]
    ranked = lf.sort(order, descending=desc, maintain_order=True)
    if by:
        return ranked.group_by(by, maintain_order=True).head(k).collect()
    return ranked.head(k).collect()
