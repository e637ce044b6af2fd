"""Numbers, dates and text for people: one place for how the report and its charts write
a metric value, a parameter value, a date or a duration.

Example:
    >>> fmt_metric("total_return", 0.0831), fmt_metric("n_trades", 12.0)
    ('8.3%', '12')
    >>> fmt_metric("sharpe", float("nan")), fmt_date("2010-01-04T00:00:00")
    ('n/a', '2010-01-04')
"""

from __future__ import annotations

import html
import math
from datetime import date, datetime
from typing import Any

from engine.metrics import INTEGER_METRICS

__all__ = [
    "CURRENCY_METRICS",
    "PERCENT_METRICS",
    "esc",
    "fmt_date",
    "fmt_metric",
    "fmt_value",
    "human_seconds",
    "num",
]

PERCENT_METRICS = frozenset(
    {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure",
     "excess_return", "tracking_error", "alpha"}
)
"""Metrics that are fractions, shown as percentages."""
CURRENCY_METRICS = frozenset({"final_equity", "fees"})
"""Metrics in units of cash, shown with thousands separators and no decimals."""


def esc(value: Any) -> str:
    """``value`` as text, escaped for HTML and SVG (attributes included)."""
    return html.escape(str(value), quote=True)


def num(value: Any) -> float | None:
    """A finite float, or None (for None, bools, text, NaN and ±inf)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt_metric(metric: str, value: Any) -> str:
    """A metric value: percentages, integers, currency, or 3 decimals; "n/a" when missing."""
    v = num(value)
    if v is None:
        return "n/a"
    if metric in PERCENT_METRICS:
        return f"{v * 100:.1f}%" if abs(v) >= 0.001 or v == 0 else f"{v * 100:.2g}%"
    if metric in INTEGER_METRICS or metric in CURRENCY_METRICS or abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3f}" if abs(v) >= 0.001 or v == 0 else f"{v:.2e}"


def fmt_value(value: Any) -> str:
    """A parameter value ("–" for none)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def fmt_date(value: Any) -> str:
    """A date: 'YYYY-MM-DD', with the time only when it is not midnight."""
    if value is None:
        return "?"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d" if value.time() == datetime.min.time()
                              else "%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if len(text) > 10 and text[10] in "T ":
        rest = text[11:].rstrip("Z")
        if not rest.replace("0", "").replace(":", "").replace(".", ""):
            return text[:10]
        return f"{text[:10]} {text[11:16]}"
    return text


def human_seconds(s: Any) -> str:
    """A duration: seconds, minutes or hours."""
    v = num(s)
    if v is None:
        return "?"
    if v < 120:
        return f"{v:.1f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"
