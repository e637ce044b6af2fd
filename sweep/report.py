"""A sweep's results as ONE self-contained HTML page (``backsweep report``).

The page needs no network to open: the CSS is inline and every chart is an inline SVG
drawn by this module (no JavaScript, no CDN, no web fonts). Hovering a heatmap cell, a
histogram bar or a fold band shows its numbers (SVG ``<title>`` tooltips).

Sections, each present only when its data is:

* header: sweep name, strategy, data, run counts, status, timing, windows, grid;
  a note when runs or chunks failed or the sweep is not complete;
* overfitting checks: verdicts in words from ``sweep.json["summary"]`` (DSR, PBO,
  walk-forward efficiency, out-of-sample metrics, parameter stability);
* walk-forward: from ``folds.parquet`` and ``oos_equity.parquet`` next to ``sweep.json``:
  stitched out-of-sample equity against the in-sample best's equity with fold boundaries,
  the out-of-sample underwater (drawdown) curve, IS vs OOS Sharpe per fold, a folds table;
* parameter heatmaps: the mean of a metric (default ``sharpe``) per cell of the two most
  important parameters, all windows pooled and one small multiple per window;
* distributions: histograms of sharpe, total_return and max_drawdown across runs;
* the top runs by sharpe.

Verdict thresholds (module constants, so tests and docs can refer to them):

========================  =====================================================
Deflated Sharpe (DSR)     >= 0.95 strong; 0.5 to 0.95 weak; < 0.5 not significant
PBO                       < 0.2 low; 0.2 to 0.5 moderate; >= 0.5 high (likely overfit)
Walk-forward efficiency   >= 0.5 robust; 0 to 0.5 weak; < 0 fails out of sample
========================  =====================================================

DSR is the probability that the selected strategy's true Sharpe is above zero after
deflating for the number of trials (Bailey & Lopez de Prado); PBO is the probability that
the in-sample best configuration ranks below the median out of sample (CSCV); WFE is the
out-of-sample performance as a fraction of the in-sample performance (Pardo's 50% rule).

"The two most important parameters": among the grid axes with two or more values (numeric
axes preferred; a categorical one is used only when fewer than two numeric axes vary), the
pair whose cell means of the metric have the largest variance; ties go to the first pair in
parameter order. An axis with more than ``MAX_AXIS_CELLS`` distinct values (random samples,
long ranges) is cut into that many bins of consecutive distinct values, about equally many
in each. Other parameters are averaged over within a cell; all panels share one colour
scale (diverging around 0 when the values have both signs).

Example:
    >>> from sweep.report import write_report
    >>> write_report("results/ma_demo", "ma_demo.html")        # doctest: +SKIP
    PosixPath('ma_demo.html')
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine.metrics import LOWER_IS_BETTER
from sweep.store import atomic_write, load_results

__all__ = [
    "DSR_STRONG",
    "DSR_WEAK",
    "PBO_HIGH",
    "PBO_LOW",
    "WFE_GOOD",
    "WFE_WEAK",
    "ReportError",
    "dsr_verdict",
    "pbo_verdict",
    "render_report",
    "wfe_verdict",
    "write_report",
]

# ------------------------------------------------------------------ thresholds
DSR_STRONG = 0.95  # DSR >= this: the selected Sharpe is very likely genuine
DSR_WEAK = 0.5  # DSR in [DSR_WEAK, DSR_STRONG): weak evidence; below: not significant
PBO_LOW = 0.2  # PBO < this: low probability of backtest overfitting
PBO_HIGH = 0.5  # PBO >= this: high (the IS winner is below the OOS median more often than not)
WFE_GOOD = 0.5  # WFE >= this: OOS keeps at least half of the IS performance
WFE_WEAK = 0.0  # WFE in [WFE_WEAK, WFE_GOOD): weak; below: OOS loses money where IS made it

# ------------------------------------------------------------------ layout limits
TOP_N = 20
HIST_METRICS = ("sharpe", "total_return", "max_drawdown")
MAX_AXIS_CELLS = 30  # an axis with more distinct values is binned into this many bins
MAX_WINDOW_PANELS = 24  # per-window heatmaps beyond this are left out (with a note)
MAX_LINE_POINTS = 1500  # line charts are thinned to about this many points

_PERCENT = frozenset(
    {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure"}
)
_INTEGER = frozenset({"n_trades", "n_bars", "max_drawdown_duration"})
_NOT_PARAMS = frozenset(
    {"run_id", "chunk_id", "strategy", "window", "window_start", "window_end", "combo",
     "error", "block_sum", "block_sumsq", "block_n"}
)
_TOP_METRICS = ("sharpe", "total_return", "cagr", "max_drawdown", "sortino", "calmar",
                "n_trades", "win_rate")

# Colour scales: diverging (red = bad, green = good) and sequential (light = worse).
_DIVERGING = ("#b2182b", "#e7745b", "#f7c6a9", "#f5f5f0", "#c2e3b8", "#5fae6a", "#1b7837")
_SEQUENTIAL = ("#f5f5f0", "#d7ecc9", "#9dd39a", "#4fa968", "#1b7837", "#0b4a22")


class ReportError(ValueError):
    """The folder is not a sweep's results folder (or the report cannot be written)."""


# ============================================================== public API
def render_report(results_dir: str | os.PathLike[str], *, metric: str = "sharpe",
                  top: int = TOP_N) -> str:
    """The HTML report of the sweep in ``results_dir`` (``OUT/NAME``) as a string.

    ``metric`` is the one the parameter heatmaps show. Raises ReportError when the folder
    has no ``sweep.json`` or no runs, or ``metric`` is not a metric.
    """
    data = _load(Path(results_dir), metric)
    sections = [
        _header(data),
        _verdicts(data),
        _walk_forward(data),
        _heatmaps(data),
        _distributions(data),
        _top_runs(data, top),
        _details(data),
    ]
    return _page(data, [s for s in sections if s])


def write_report(results_dir: str | os.PathLike[str],
                 output: str | os.PathLike[str] | None = None, *, metric: str = "sharpe",
                 top: int = TOP_N) -> Path:
    """Render the report and write it atomically to ``output``; returns the path.

    ``output`` defaults to ``results_dir/report.html``. Nothing is written when the
    folder is not a sweep's results (ReportError).
    """
    text = render_report(results_dir, metric=metric, top=top)
    path = Path(output) if output is not None else Path(results_dir) / "report.html"
    if path.is_dir():
        raise ReportError(f"{path}: is a folder; give a file name such as report.html")
    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)  # a page to share, not a private temp file

    try:
        return atomic_write(path, write)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc}") from None


# ============================================================== loading
@dataclass
class _Data:
    root: Path
    meta: dict[str, Any]
    metric: str
    metrics: list[str]  # metric columns present
    params: list[str]  # parameter columns
    runs: pl.DataFrame  # every run (params, window, metrics, error)
    ok: pl.DataFrame  # runs without error; non-finite metric values are null
    n_errors: int
    errors: list[tuple[str, int]]  # most frequent error messages with counts
    folds: pl.DataFrame | None
    equity: pl.DataFrame | None
    wf_notes: list[str]

    @property
    def summary(self) -> dict[str, Any] | None:
        s = self.meta.get("summary")
        return s if isinstance(s, dict) else None

    def window_label(self, k: Any) -> str:
        for w in self.meta.get("windows") or []:
            if isinstance(w, dict) and w.get("window") == k:
                return f"{_date(w.get('start'))} to {_date(w.get('end'))}"
        return ""


def _metric_names() -> tuple[str, ...]:
    from engine import METRIC_NAMES

    return tuple(METRIC_NAMES)


def _load(root: Path, metric: str) -> _Data:
    all_metrics = _metric_names()
    if metric not in all_metrics:
        raise ReportError(f"{metric!r} is not a metric; metrics: {', '.join(all_metrics)}")
    if not root.is_dir():
        raise ReportError(f"{root}: no such folder")
    meta_path = root / "sweep.json"
    if not meta_path.is_file():
        raise ReportError(f"{root}: no sweep.json here (not a sweep's results folder)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{meta_path}: unreadable ({exc})") from None
    if not isinstance(meta, dict):
        raise ReportError(f"{meta_path}: not a sweep description (expected a JSON object)")
    try:
        lf = load_results(root)
        schema = lf.collect_schema()
    except FileNotFoundError:
        raise ReportError(f"{root}: no runs here (no runs/window=*/part-*.parquet files); "
                          "run the sweep first") from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ReportError(f"{root / 'runs'}: unreadable ({exc})") from None

    names = schema.names()
    metrics = [m for m in all_metrics if m in names]
    grid = (meta.get("spec") or {}).get("grid")
    if isinstance(grid, dict) and any(k in names for k in grid):
        params = [c for c in names if c in grid]
    else:
        params = [c for c in names if c not in _NOT_PARAMS and c not in all_metrics
                  and not isinstance(schema[c], pl.List | pl.Array | pl.Struct)]
    cols = [c for c in ("run_id", "window", *params, *metrics, "error") if c in names]
    try:
        runs = lf.select(cols).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ReportError(f"{root / 'runs'}: unreadable ({exc})") from None
    if runs.height == 0:
        raise ReportError(f"{root}: the runs files hold no runs")
    if "window" not in runs.columns:
        runs = runs.with_columns(window=pl.lit(0))

    clean = [
        pl.when(pl.col(m).cast(pl.Float64).is_finite()).then(pl.col(m).cast(pl.Float64))
        .otherwise(None).alias(m)
        for m in metrics
    ]
    has_err = "error" in runs.columns
    failed = runs.filter(pl.col("error").is_not_null()) if has_err else runs.clear()
    ok = (runs.filter(pl.col("error").is_null()) if has_err else runs).with_columns(clean)
    errors: list[tuple[str, int]] = []
    if failed.height:
        counts = (failed.group_by("error").len().sort(["len", "error"], descending=[True, False])
                  .head(5))
        errors = [(str(e), int(n)) for e, n in counts.iter_rows()]

    folds, equity, notes = _load_walk_forward(root)
    return _Data(root, meta, metric, metrics, params, runs, ok, failed.height, errors,
                 folds, equity, notes)


def _load_walk_forward(root: Path) -> tuple[pl.DataFrame | None, pl.DataFrame | None,
                                            list[str]]:
    notes: list[str] = []
    folds = equity = None
    path = root / "folds.parquet"
    if path.is_file():
        try:
            folds = pl.read_parquet(path)
            if "fold" in folds.columns:
                folds = folds.sort("fold")
        except (OSError, pl.exceptions.PolarsError) as exc:
            notes.append(f"folds.parquet could not be read: {exc}")
    path = root / "oos_equity.parquet"
    if path.is_file():
        try:
            eq = pl.read_parquet(path)
            if "oos_equity" not in eq.columns and "equity" in eq.columns:
                eq = eq.rename({"equity": "oos_equity"})
            missing = [c for c in ("timestamp", "oos_equity") if c not in eq.columns]
            if missing:
                notes.append(f"oos_equity.parquet has no {', '.join(missing)} column")
            else:
                ts = eq.schema["timestamp"]
                if isinstance(ts, pl.Datetime) and ts.time_zone:
                    eq = eq.with_columns(pl.col("timestamp").dt.convert_time_zone("UTC")
                                         .dt.replace_time_zone(None))
                elif isinstance(ts, pl.Date):
                    eq = eq.with_columns(pl.col("timestamp").cast(pl.Datetime("us")))
                equity = (eq.filter(pl.col("oos_equity").is_not_null()).sort("timestamp")
                          .with_columns(pl.col("timestamp").dt.epoch("ms").alias("_ms")))
                if equity.height == 0:
                    equity = None
        except (OSError, pl.exceptions.PolarsError) as exc:
            notes.append(f"oos_equity.parquet could not be read: {exc}")
    return folds, equity, notes


# ============================================================== formatting
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> float | None:
    """A finite float, or None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(metric: str, value: Any) -> str:
    """A metric value for people: percentages, integers, or 3 decimals; n/a when missing."""
    v = _num(value)
    if v is None:
        return "n/a"
    if metric in _PERCENT:
        return f"{v * 100:.1f}%" if abs(v) >= 0.001 or v == 0 else f"{v * 100:.2g}%"
    if metric in _INTEGER:
        return f"{v:,.0f}"
    if metric in ("final_equity", "fees"):
        return f"{v:,.0f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3f}" if abs(v) >= 0.001 or v == 0 else f"{v:.2e}"


def _fmt_value(value: Any) -> str:
    """A parameter value."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _date(value: Any) -> str:
    """A date for people: 'YYYY-MM-DD', with the time only when it is not midnight."""
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


def _human_seconds(s: Any) -> str:
    v = _num(s)
    if v is None:
        return "?"
    if v < 120:
        return f"{v:.1f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"


def _mix(c1: str, c2: str, t: float) -> str:
    a = [int(c1[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(c2[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))


def _ramp(stops: Sequence[str], t: float) -> str:
    t = min(1.0, max(0.0, t))
    pos = t * (len(stops) - 1)
    i = min(int(pos), len(stops) - 2)
    return _mix(stops[i], stops[i + 1], pos - i)


def _dark(color: str) -> bool:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b < 140


@dataclass
class _Scale:
    """Value -> colour: diverging around 0 when values have both signs, else sequential."""

    lo: float
    hi: float
    diverging: bool
    flip: bool  # lower is better

    @classmethod
    def fit(cls, values: Iterable[float], metric: str) -> _Scale:
        vals = [v for v in values if v is not None and math.isfinite(v)]
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        flip = metric in LOWER_IS_BETTER
        if lo < 0 < hi:
            m = max(-lo, hi)
            return cls(-m, m, True, flip)
        if hi == lo:
            hi = lo + (abs(lo) or 1.0) * 1e-9
        return cls(lo, hi, False, flip)

    def color(self, v: float) -> str:
        t = (v - self.lo) / (self.hi - self.lo)
        if self.flip:
            t = 1 - t
        return _ramp(_DIVERGING if self.diverging else _SEQUENTIAL, t)


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw * 0.999:
            return m * mag
    return 10 * mag


def _ticks(lo: float, hi: float, n: int = 5) -> tuple[list[float], float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo], 1.0
    step = _nice_step(hi - lo, n)
    k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [k * step for k in range(k0, k1 + 1)], step


def _tick_label(v: float, step: float, pct: bool = False) -> str:
    if pct:
        v, step = v * 100, step * 100
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if step > 0 and round(step * 10 ** decimals) % 10 == 5 and step < 1:
        decimals += 1
    decimals = min(decimals, 6)
    text = f"{v:,.{decimals}f}" if abs(v) >= 10000 else f"{v:.{decimals}f}"
    if text.lstrip("-").strip("0.") == "":
        text = "0"
    return text + ("%" if pct else "")


def _pad(lo: float, hi: float, frac: float = 0.05) -> tuple[float, float]:
    if hi <= lo:
        d = abs(lo) * 0.05 or 1.0
        return lo - d, hi + d
    d = (hi - lo) * frac
    return lo - d, hi + d


# ============================================================== SVG helpers
def _svg(width: float, height: float, body: str, *, cls: str, label: str,
         fluid: bool = False, id_: str | None = None) -> str:
    size = ('width="100%"' if fluid else f'width="{width:.0f}" height="{height:.0f}"')
    ident = f' id="{_e(id_)}"' if id_ else ""
    return (f'<svg{ident} class="{cls}" viewBox="0 0 {width:.0f} {height:.0f}" {size} '
            f'role="img" aria-label="{_e(label)}" preserveAspectRatio="xMinYMin meet">'
            f"{body}</svg>")


def _text(x: float, y: float, s: str, *, anchor: str = "middle", cls: str = "lbl",
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{cls}"{extra}>'
            f"{_e(s)}</text>")


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))


def _time_ticks(t0_ms: float, t1_ms: float, max_ticks: int = 8) -> list[tuple[float, str]]:
    """Calendar ticks (month / year starts, or days) between two epoch-ms instants."""
    epoch = datetime(1970, 1, 1)
    d0 = epoch + timedelta(milliseconds=t0_ms)
    d1 = epoch + timedelta(milliseconds=t1_ms)

    def ms(d: datetime) -> float:
        return (d - epoch).total_seconds() * 1000

    span_days = (d1 - d0).total_seconds() / 86400
    if span_days > 62:
        m0 = d0.year * 12 + d0.month - 1 + (0 if (d0.day, d0.hour) == (1, 0) else 1)
        m1 = d1.year * 12 + d1.month - 1
        for step in (1, 2, 3, 6, 12, 24, 36, 60, 120, 240):
            months = [m for m in range(m0, m1 + 1) if m % step == 0]
            if len(months) <= max_ticks:
                fmt = "%Y" if step >= 12 else "%Y-%m"
                out = []
                for m in months:
                    d = datetime(m // 12, m % 12 + 1, 1)
                    out.append((ms(d), d.strftime(fmt)))
                return out
    day_step = max(1, math.ceil(span_days / max_ticks))
    start = datetime(d0.year, d0.month, d0.day)
    if start < d0:
        start += timedelta(days=1)
    out = []
    d = start
    while d <= d1 and len(out) < 50:
        out.append((ms(d), d.strftime("%Y-%m-%d")))
        d += timedelta(days=day_step)
    return out


def _thin(n: int, limit: int = MAX_LINE_POINTS) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


# ============================================================== sections
def _page(d: _Data, sections: list[str]) -> str:
    name = d.meta.get("name") or d.root.name
    nav = []
    for anchor, title in (("verdicts", "Overfitting checks"), ("walk-forward", "Walk-forward"),
                          ("heatmaps", "Parameter heatmaps"), ("distributions", "Distributions"),
                          ("top-runs", "Top runs"), ("details", "Details")):
        if any(f'id="{anchor}"' in s for s in sections):
            nav.append(f'<a href="#{anchor}">{title}</a>')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(name)} · backsweep report</title>\n<style>{_CSS}</style>\n</head>\n"
        f'<body>\n<nav class="toc">{" ".join(nav)}</nav>\n<main>\n'
        + "\n".join(sections)
        + "\n</main>\n"
        f'<footer>backsweep report of <code>{_e(d.root)}</code></footer>\n'
        "</body>\n</html>\n"
    )


def _parameter_sets(d: _Data) -> Any:
    """Parameter combinations per window (after constraints)."""
    n_runs, windows = _num(d.meta.get("n_runs")), d.meta.get("windows")
    if n_runs and isinstance(windows, list) and windows:
        return int(n_runs) // len(windows)
    return d.runs.group_by("window").len()["len"].max()


def _header(d: _Data) -> str:
    m = d.meta
    spec = m.get("spec") if isinstance(m.get("spec"), dict) else {}
    data = m.get("data") if isinstance(m.get("data"), dict) else {}
    name = m.get("name") or spec.get("name") or d.root.name
    status = str(m.get("status") or "unknown")
    badge = {"complete": "good"}.get(status, "bad" if status == "failed" else "warn")
    n_runs = m.get("n_runs")
    written = m.get("runs_written", d.runs.height)
    failed = m.get("runs_failed", d.n_errors)
    windows = m.get("windows") or []
    plan = m.get("plan") if isinstance(m.get("plan"), dict) else {}
    source = spec.get("data") or data.get("source") or "?"
    shape = ""
    if data.get("bars") is not None:
        shape = f" ({_e(data.get('bars'))} bars x {_e(data.get('assets', '?'))} assets)"

    cards = [
        ("runs planned", n_runs if n_runs is not None else "?"),
        ("runs written", written),
        ("runs failed", failed),
        ("windows", len(windows) if windows else d.runs["window"].n_unique()),
        ("parameter sets", _parameter_sets(d)),
        ("wall time (last call)", _human_seconds(m.get("seconds_last_call"))),
    ]
    card_html = "".join(
        f'<div class="card{" bad" if k == "runs failed" and _num(v) else ""}">'
        f'<div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
        for k, v in cards
    )
    timing = []
    for key, label in (("created_at", "created"), ("finished_at", "finished")):
        if m.get(key):
            timing.append(f"{label} {_e(m[key])}")
    if plan.get("chunk_size"):
        timing.append(f"chunk size {_e(plan['chunk_size'])}")
    if plan.get("n_chunks"):
        timing.append(f"{_e(plan['n_chunks'])} chunks")

    notes = []
    if status != "complete":
        notes.append(
            f'<p class="note warn">This sweep is <b>{_e(status)}</b>: the report covers the '
            f"{_e(written)} runs written so far. Rerun the same command to finish it.</p>"
        )
    if d.n_errors or _num(failed):
        items = "".join(f"<li><code>{_e(err[:300])}</code> ({n} run{'s' * (n != 1)})</li>"
                        for err, n in d.errors)
        notes.append(
            f'<div class="note bad"><b>{_e(d.n_errors or failed)} run(s) failed</b> and are '
            "left out of the charts and tables below; each keeps its message in the "
            "<code>error</code> column of the runs table."
            + (f"<ul>{items}</ul>" if items else "") + "</div>"
        )
    failed_chunks = m.get("failed_chunks")
    if isinstance(failed_chunks, dict) and failed_chunks:
        items = "".join(f"<li>chunk {_e(k)}: <code>{_e(str(v)[:300])}</code></li>"
                        for k, v in list(failed_chunks.items())[:5])
        more = len(failed_chunks) - 5
        notes.append(
            f'<div class="note bad"><b>{len(failed_chunks)} chunk(s) failed</b> (their runs '
            f"are missing; rerun to retry them):<ul>{items}"
            f"{f'<li>... and {more} more</li>' if more > 0 else ''}</ul></div>"
        )
    for note in d.wf_notes:
        notes.append(f'<p class="note warn">{_e(note)}</p>')

    return (
        '<header id="top">'
        f"<h1>{_e(name)} <span class=\"badge {badge}\">{_e(status)}</span></h1>"
        f'<p class="sub">strategy <b>{_e(spec.get("strategy", "?"))}</b> · data '
        f"<code>{_e(source)}</code>{shape}</p>"
        f'<div class="cards">{card_html}</div>'
        f'<p class="muted">{" · ".join(timing)}</p>'
        + "".join(notes)
        + "</header>"
    )


# ---------------------------------------------------------------- verdicts
def _n_trials(d: _Data) -> Any:
    s = d.summary or {}
    for key in ("n_trials", "trials"):
        if _num(s.get(key)):
            return int(_num(s[key]))  # type: ignore[arg-type]
    by_window = s.get("by_window")
    if isinstance(by_window, list):
        counts = {w.get("n_trials") for w in by_window if isinstance(w, dict)}
        counts.discard(None)
        if len(counts) == 1:
            return counts.pop()
    # Trials = the successful runs of a window (the grid after its constraints).
    per_window = d.ok.group_by("window").len()["len"]
    return int(per_window.median()) if per_window.len() else d.runs.height


def dsr_verdict(dsr: float, n_trials: Any) -> tuple[str, str]:
    """(level, sentence) for a Deflated Sharpe Ratio (a probability in [0, 1])."""
    if dsr >= DSR_STRONG:
        return "good", (f"DSR {dsr:.2f}: the selected Sharpe is very likely genuine after "
                        f"deflating for {n_trials} trials (strong, DSR ≥ {DSR_STRONG}).")
    if dsr >= DSR_WEAK:
        return "warn", (f"DSR {dsr:.2f}: weak evidence — the selected Sharpe is probably "
                        f"positive after deflating for {n_trials} trials, but not "
                        f"conclusively ({DSR_WEAK} ≤ DSR < {DSR_STRONG}).")
    return "bad", (f"DSR {dsr:.2f}: not significant — after deflating for {n_trials} trials "
                   f"the selected Sharpe is what luck alone would likely produce "
                   f"(DSR < {DSR_WEAK}).")


def pbo_verdict(pbo: float) -> tuple[str, str]:
    """(level, sentence) for a Probability of Backtest Overfitting in [0, 1]."""
    if pbo < PBO_LOW:
        return "good", (f"PBO {pbo:.2f}: low probability of overfitting — the in-sample "
                        f"winner usually stays above the median out of sample "
                        f"(PBO < {PBO_LOW}).")
    if pbo < PBO_HIGH:
        return "warn", (f"PBO {pbo:.2f}: moderate probability that the in-sample winner "
                        f"underperforms the median out of sample — treat the selection with "
                        f"caution ({PBO_LOW} ≤ PBO < {PBO_HIGH}).")
    return "bad", (f"PBO {pbo:.2f}: high probability that the in-sample winner underperforms "
                   f"the median out of sample — likely overfit (PBO ≥ {PBO_HIGH}).")


def wfe_verdict(wfe: float) -> tuple[str, str]:
    """(level, sentence) for a walk-forward efficiency (OOS / IS performance)."""
    pct = f"{wfe * 100:.0f}%"
    if wfe >= WFE_GOOD:
        return "good", (f"WFE {wfe:.2f}: out of sample keeps {pct} of the in-sample "
                        f"performance — robust (WFE ≥ {WFE_GOOD}).")
    if wfe >= WFE_WEAK:
        return "warn", (f"WFE {wfe:.2f}: out of sample keeps only {pct} of the in-sample "
                        f"performance — much of the edge is lost "
                        f"({WFE_WEAK} ≤ WFE < {WFE_GOOD}).")
    return "bad", (f"WFE {wfe:.2f}: out of sample loses where in sample wins — the "
                   f"selection does not carry forward (WFE < {WFE_WEAK}).")


def _verdicts(d: _Data) -> str:
    s = d.summary
    if s is None:
        return ""
    items = []
    for key, judge in (("dsr", lambda v: dsr_verdict(v, _n_trials(d))),
                       ("pbo", pbo_verdict), ("wfe", wfe_verdict)):
        if key not in s:
            continue
        v = _num(s.get(key))
        if v is None:
            why = {"dsr": "fewer than two trials", "pbo": "no per-block return statistics "
                   "or too many trials", "wfe": "undefined when the in-sample return is not "
                   "positive"}[key]
            items.append(f'<li class="verdict none" id="verdict-{key}"><b>{key.upper()}</b>: '
                         f"not available ({why}).</li>")
            continue
        level, sentence = judge(v)
        if key in ("dsr", "pbo"):
            sentence += _averaged_over(s, key)
        items.append(f'<li class="verdict {level}" id="verdict-{key}">{_e(sentence)}</li>')
    parts = ['<section id="verdicts"><h2>Overfitting checks</h2>']
    if items:
        parts.append(f'<ul class="verdicts">{"".join(items)}</ul>')
    rules = {"dsr": f"DSR ≥ {DSR_STRONG} strong, {DSR_WEAK} to {DSR_STRONG} weak, below "
                    f"{DSR_WEAK} not significant",
             "pbo": f"PBO below {PBO_LOW} low, {PBO_LOW} to {PBO_HIGH} moderate, {PBO_HIGH} "
                    "or more high",
             "wfe": f"WFE {WFE_GOOD} or more robust, {WFE_WEAK:g} to {WFE_GOOD} weak, below "
                    f"{WFE_WEAK:g} fails"}
    shown = [rule for key, rule in rules.items() if key in s]
    if shown:
        parts.append(f'<p class="muted small">Thresholds: {"; ".join(shown)}.</p>')
    oos = s.get("oos_metrics")
    if isinstance(oos, dict) and oos:
        order = [k for k in d.metrics if k in oos] + [k for k in oos if k not in d.metrics]
        cells = "".join(f'<div class="card"><div class="v">{_cell_metric(k, oos[k])}</div>'
                        f'<div class="k">{_e(k)}</div></div>' for k in order)
        parts.append(f'<h3>Out-of-sample metrics</h3><div class="cards small">{cells}</div>')
    stab = s.get("param_stability")
    if isinstance(stab, dict) and stab:
        parts.append("<h3>Parameter stability</h3>" + _kv_table(stab, "stability"))
    by_window = s.get("by_window")
    if isinstance(by_window, list) and by_window and all(isinstance(w, dict) for w in by_window):
        parts.append("<h3>By window</h3>" + _kv_table(
            {f"window {w.get('window', i)}": {k: v for k, v in w.items() if k != "window"}
             for i, w in enumerate(by_window)}, "stability"))
    skip = {"dsr", "pbo", "wfe", "oos_metrics", "param_stability", "by_window"}
    if d.folds is not None:  # per-fold values are columns of the folds table
        skip |= {f"{k}_by_fold" for k in ("dsr", "pbo")
                 if k in d.folds.columns or k in _per_fold_stats(d)}
    others = {k: v for k, v in s.items() if k not in skip}
    if others:
        parts.append("<h3>Other summary values</h3>" + _kv_table(others, "summary-other"))
    parts.append("</section>")
    return "".join(parts)


def _averaged_over(s: dict[str, Any], key: str) -> str:
    """' Mean over K folds.' when the summary's value averages per-fold/window values."""
    per_fold = s.get(f"{key}_by_fold")
    if isinstance(per_fold, list) and len(per_fold) > 1:
        return f" Mean over {len(per_fold)} folds."
    by_window = s.get("by_window")
    if isinstance(by_window, list) and len(by_window) > 1:
        return f" Mean over {len(by_window)} windows."
    return ""


def _cell_metric(metric: str, v: Any) -> str:
    if isinstance(v, str):
        return _e(v)
    return _e(_fmt(metric, v))


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return _e(_fmt("", v))
    if isinstance(v, list) and all(isinstance(x, int | float) or x is None for x in v):
        return "<code>[" + ", ".join("–" if x is None else _e(_fmt("", x)) for x in v) + "]</code>"
    if isinstance(v, dict | list):
        return f"<code>{_e(json.dumps(v, default=str)[:200])}</code>"
    return _e(v)


def _kv_table(mapping: dict[str, Any], cls: str) -> str:
    """A dict as a table: one row per key; dict values become columns."""
    if all(isinstance(v, dict) for v in mapping.values()):
        cols: list[str] = []
        for v in mapping.values():
            cols += [c for c in v if c not in cols]
        preferred = ("n_trials", "distinct", "mode", "mode_share", "cv", "dsr", "pbo")
        cols.sort(key=lambda c: preferred.index(c) if c in preferred else len(preferred))
        head = "".join(f"<th>{_e(c)}</th>" for c in cols)
        rows = "".join(
            f"<tr><th>{_e(k)}</th>" + "".join(f"<td>{_cell(v.get(c))}</td>" for c in cols)
            + "</tr>"
            for k, v in mapping.items()
        )
        return f'<table class="{cls}"><thead><tr><th></th>{head}</tr></thead>{rows}</table>'
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_cell(v)}</td></tr>" for k, v in mapping.items())
    return f'<table class="{cls}">{rows}</table>'


# ---------------------------------------------------------------- walk-forward
def _walk_forward(d: _Data) -> str:
    if d.folds is None and d.equity is None:
        return ""
    parts = ['<section id="walk-forward"><h2>Walk-forward</h2>']
    if d.equity is not None:
        parts.append(_equity_chart(d))
        parts.append(_drawdown_chart(d))
    if d.folds is not None and d.folds.height:
        parts.append(_fold_bars(d.folds))
        parts.append(_folds_table(d))
    parts.append("</section>")
    return "".join(parts)


def _fold_starts(d: _Data) -> list[tuple[Any, float]]:
    """(fold, epoch ms of its first out-of-sample bar)."""
    eq = d.equity
    if eq is not None and "fold" in eq.columns:
        firsts = eq.group_by("fold").agg(pl.col("_ms").min()).sort("_ms")
        return [(f, float(t)) for f, t in firsts.iter_rows()]
    if d.folds is not None and {"fold", "test_start"} <= set(d.folds.columns):
        f = d.folds.select("fold", pl.col("test_start").cast(pl.Datetime("ms")).dt.epoch("ms"))
        return [(a, float(b)) for a, b in f.iter_rows() if b is not None]
    return []


_W, _H = 1100.0, 330.0
_ML, _MR, _MT, _MB = 78.0, 20.0, 30.0, 36.0


def _time_frame(t: np.ndarray, y_lo: float, y_hi: float, y_pct: bool,
                height: float = _H) -> tuple[Any, Any, str]:
    """x/y mappers and the axes (grid lines, ticks) of a time-series chart."""
    t0, t1 = float(t[0]), float(t[-1])
    if t1 <= t0:
        t1 = t0 + 86_400_000
    pw, ph = _W - _ML - _MR, height - _MT - _MB

    def fx(v: Any) -> Any:
        return _ML + (np.asarray(v, dtype=float) - t0) / (t1 - t0) * pw

    def fy(v: Any) -> Any:
        return _MT + (y_hi - np.asarray(v, dtype=float)) / (y_hi - y_lo) * ph

    out = [f'<rect class="plot-bg" x="{_ML}" y="{_MT}" width="{pw}" height="{ph}"/>']
    yt, step = _ticks(y_lo, y_hi, 6)
    for v in yt:
        y = float(fy(v))
        out.append(f'<line class="grid" x1="{_ML}" x2="{_W - _MR}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(_text(_ML - 6, y + 4, _tick_label(v, step, y_pct), anchor="end"))
    for ms, label in _time_ticks(t0, t1):
        x = float(fx(ms))
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{_MT}" '
                   f'y2="{_MT + ph}"/>')
        out.append(_text(x, _MT + ph + 18, label))
    return fx, fy, "".join(out)


def _equity_chart(d: _Data) -> str:
    eq = d.equity
    assert eq is not None
    t = eq["_ms"].to_numpy().astype(float)
    oos = eq["oos_equity"].cast(pl.Float64).to_numpy()
    has_is = "is_equity" in eq.columns and eq["is_equity"].null_count() < eq.height
    ins = eq["is_equity"].cast(pl.Float64).fill_null(np.nan).to_numpy() if has_is else None
    vals = np.concatenate([oos, ins]) if ins is not None else oos
    vals = vals[np.isfinite(vals)]
    lo, hi = _pad(float(vals.min()), float(vals.max()))
    fx, fy, axes = _time_frame(t, lo, hi, False)
    body = [axes]
    starts = _fold_starts(d)
    test_ret = {}
    if d.folds is not None and {"fold", "oos_total_return"} <= set(d.folds.columns):
        test_ret = dict(d.folds.select("fold", "oos_total_return").iter_rows())
    for i, (fold, ms) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else float(t[-1])
        x0, x1 = float(fx(ms)), float(fx(end))
        tip = f"fold {fold}: out of sample from {_date(_ms_date(ms))} to {_date(_ms_date(end))}"
        if fold in test_ret and _num(test_ret[fold]) is not None:
            tip += f", OOS return {_fmt('total_return', test_ret[fold])}"
        body.append(f'<rect class="fold-band{" alt" if i % 2 else ""}" x="{x0:.1f}" y="{_MT}" '
                    f'width="{max(x1 - x0, 0.5):.1f}" height="{_H - _MT - _MB}">'
                    f"<title>{_e(tip)}</title></rect>")
        body.append(f'<line class="fold-boundary" x1="{x0:.1f}" x2="{x0:.1f}" y1="{_MT}" '
                    f'y2="{_H - _MB}"/>')
        body.append(_text(x0 + 3, _MT - 6, f"F{fold}", anchor="start", cls="lbl small"))
    idx = _thin(len(t))
    if ins is not None:
        ok = idx[np.isfinite(ins[idx])]
        body.append(f'<polyline id="is-equity-line" class="line is" '
                    f'points="{_points(fx(t[ok]), fy(ins[ok]))}">'
                    f"<title>in-sample best parameters over the same bars: "
                    f"{_e(_fmt('', ins[ok][0]))} to {_e(_fmt('', ins[ok][-1]))}</title>"
                    "</polyline>")
    body.append(f'<polyline id="oos-equity-line" class="line oos" '
                f'points="{_points(fx(t[idx]), fy(oos[idx]))}">'
                f"<title>stitched out-of-sample equity: {_e(_fmt('', oos[0]))} to "
                f"{_e(_fmt('', oos[-1]))}</title></polyline>")
    legend = [("oos", "out of sample (stitched, re-optimised per fold)")]
    if ins is not None:
        legend.append(("is", "in-sample promise (each winner's train growth rate)"))
    x = _ML + 12
    for cls, label in legend:
        body.append(f'<line class="line {cls}" x1="{x}" x2="{x + 22}" y1="{_MT + 16}" '
                    f'y2="{_MT + 16}"/>')
        body.append(_text(x + 28, _MT + 20, label, anchor="start"))
        x += 40 + 6.2 * len(label)
    total = oos[-1] / oos[0] - 1 if oos[0] else float("nan")
    caption = (f"Out-of-sample equity {_fmt('', oos[0])} → {_fmt('', oos[-1])} "
               f"({_fmt('total_return', total)})")
    if ins is not None and np.isfinite(ins).any():
        fin = ins[np.isfinite(ins)]
        caption += (f"; in-sample best {_fmt('', fin[0])} → {_fmt('', fin[-1])} "
                    f"({_fmt('total_return', fin[-1] / fin[0] - 1 if fin[0] else None)})")
    caption += f"; {len(starts)} folds (dashed lines: the start of each test period)."
    return ('<figure class="chart">'
            + _svg(_W, _H, "".join(body), cls="equity-chart", label="walk-forward equity",
                   fluid=True, id_="equity-chart")
            + f"<figcaption>{_e(caption)}</figcaption></figure>")


def _ms_date(ms: float) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=ms)


def _drawdown_chart(d: _Data) -> str:
    eq = d.equity
    assert eq is not None
    t = eq["_ms"].to_numpy().astype(float)
    oos = eq["oos_equity"].cast(pl.Float64).to_numpy()
    peak = np.maximum.accumulate(np.where(np.isfinite(oos), oos, -np.inf))
    dd = np.where(peak > 0, oos / np.where(peak > 0, peak, 1.0) - 1.0, 0.0)
    dd = np.where(np.isfinite(dd), dd, 0.0)
    worst = float(dd.min())
    height = 220.0
    lo = min(worst * 1.1, -0.01)
    fx, fy, axes = _time_frame(t, lo, 0.0, True, height)
    # Thin by buckets, keeping each bucket's deepest point so the max drawdown shows.
    if len(t) > MAX_LINE_POINTS:
        edges = _thin(len(t))
        mins = np.minimum.reduceat(dd, edges)
        tt, yy = t[edges], mins
    else:
        tt, yy = t, dd
    xs, ys = fx(tt), fy(yy)
    base = float(fy(0.0))
    area = f"{xs[0]:.1f},{base:.1f} " + _points(xs, ys) + f" {xs[-1]:.1f},{base:.1f}"
    body = [axes]
    for fold, ms in _fold_starts(d):
        x = float(fx(ms))
        body.append(f'<line class="fold-boundary" x1="{x:.1f}" x2="{x:.1f}" y1="{_MT}" '
                    f'y2="{height - _MB}"><title>fold {_e(fold)}</title></line>')
    i = int(np.argmin(dd))
    body.append(f'<polygon id="oos-drawdown-area" class="dd-area" points="{area}">'
                f"<title>out-of-sample drawdown; worst {_fmt('max_drawdown', -worst)} on "
                f"{_date(_ms_date(t[i]))}</title></polygon>")
    body.append(f'<polyline class="dd-line" points="{_points(xs, ys)}"/>')
    if worst < 0:
        x, y = float(fx(t[i])), float(fy(worst))
        body.append(f'<circle class="dd-worst" cx="{x:.1f}" cy="{y:.1f}" r="3.5"/>')
        anchor = "end" if x > _W * 0.7 else "start"
        body.append(_text(x + (-6 if anchor == "end" else 6), y + 4,
                          f"max drawdown {_fmt('max_drawdown', -worst)}", anchor=anchor))
    return ('<figure class="chart">'
            + _svg(_W, height, "".join(body), cls="drawdown-chart",
                   label="out-of-sample drawdown", fluid=True, id_="drawdown-chart")
            + "<figcaption>Underwater curve of the out-of-sample equity: the fall from its "
              "running peak.</figcaption></figure>")


def _fold_bars(folds: pl.DataFrame) -> str:
    if not {"fold", "is_sharpe", "oos_sharpe"} <= set(folds.columns):
        return ""
    rows = folds.select("fold", pl.col("is_sharpe").cast(pl.Float64),
                        pl.col("oos_sharpe").cast(pl.Float64)).rows()
    vals = [v for _, a, b in rows for v in (a, b) if _num(v) is not None]
    if not vals:
        return ""
    lo, hi = min(0.0, *vals), max(0.0, *vals)
    lo, hi = _pad(lo, hi, 0.08)
    width = max(360.0, min(_W, 90.0 + 56.0 * len(rows)))
    height, ml, mt, mb = 220.0, 56.0, 24.0, 30.0
    pw, ph = width - ml - 12, height - mt - mb

    def fy(v: float) -> float:
        return mt + (hi - v) / (hi - lo) * ph

    body = []
    yt, step = _ticks(lo, hi, 5)
    for v in yt:
        y = fy(v)
        body.append(f'<line class="grid{" zero" if v == 0 else ""}" x1="{ml}" '
                    f'x2="{width - 12}" y1="{y:.1f}" y2="{y:.1f}"/>')
        body.append(_text(ml - 6, y + 4, _tick_label(v, step), anchor="end"))
    slot = pw / len(rows)
    bw = min(22.0, slot * 0.38)
    for i, (fold, a, b) in enumerate(rows):
        cx = ml + slot * (i + 0.5)
        for j, (v, cls, label) in enumerate(((a, "is", "in sample"), (b, "oos", "out of sample"))):
            if _num(v) is None:
                continue
            y0, y1 = sorted((fy(0.0), fy(v)))
            x = cx - bw + j * bw
            body.append(f'<rect class="fold-bar {cls}" x="{x:.1f}" y="{y0:.1f}" '
                        f'width="{bw - 1:.1f}" height="{max(y1 - y0, 0.5):.1f}">'
                        f"<title>fold {_e(fold)} {label} Sharpe {_fmt('sharpe', v)}</title></rect>")
        body.append(_text(cx, height - mb + 16, f"F{fold}"))
    body.append(f'<rect class="fold-bar is" x="{ml + 8}" y="6" width="10" height="10"/>')
    body.append(_text(ml + 22, 15, "in sample", anchor="start"))
    body.append(f'<rect class="fold-bar oos" x="{ml + 92}" y="6" width="10" height="10"/>')
    body.append(_text(ml + 106, 15, "out of sample", anchor="start"))
    return ('<figure class="chart">'
            + _svg(width, height, "".join(body), cls="fold-sharpe-chart",
                   label="in-sample vs out-of-sample Sharpe per fold", id_="fold-sharpe-chart")
            + "<figcaption>Sharpe of the chosen parameters per fold: in sample (training) vs "
              "out of sample (the following test period).</figcaption></figure>")


def _per_fold_stats(d: _Data) -> dict[str, list[float | None]]:
    """Per-fold DSR / PBO from the summary (``dsr_by_fold``), when one value per fold."""
    out: dict[str, list[float | None]] = {}
    n = d.folds.height if d.folds is not None else -1
    for key in ("dsr", "pbo"):
        vals = (d.summary or {}).get(f"{key}_by_fold")
        if isinstance(vals, list) and len(vals) == n:
            out[key] = [_num(v) for v in vals]
    return out


def _folds_table(d: _Data) -> str:
    folds = d.folds
    assert folds is not None
    cols = folds.columns
    fixed = {"fold", "train_start", "train_end", "test_start", "test_end", "dsr", "pbo"}
    grid = (d.meta.get("spec") or {}).get("grid")
    known = set(d.params) | (set(grid) if isinstance(grid, dict) else set())
    params = [c for c in cols if c in known]
    if not params:
        params = [c for c in cols if c not in fixed and not c.startswith(("is_", "oos_"))]
    shown = [(f"{p}_{m}", f"{label} {m.replace('_', ' ')}", m)
             for m in ("sharpe", "total_return") for p, label in (("is", "IS"), ("oos", "OOS"))
             if f"{p}_{m}" in cols]
    per_fold = _per_fold_stats(d)
    for key in ("dsr", "pbo"):
        if key in cols:
            shown.append((key, key.upper(), key))
        elif key in per_fold:
            folds = folds.with_columns(pl.Series(key, per_fold[key], dtype=pl.Float64))
            shown.append((key, key.upper(), key))
    head = ("<th>fold</th><th>train</th><th>test</th>"
            + "".join(f'<th class="param">{_e(p)}</th>' for p in params)
            + "".join(f"<th>{_e(label)}</th>" for _, label, _ in shown))
    rows = []
    for r in folds.iter_rows(named=True):
        cells = [f"<td>{_e(r.get('fold'))}</td>",
                 f"<td>{_date(r.get('train_start'))} to {_date(r.get('train_end'))}</td>",
                 f"<td>{_date(r.get('test_start'))} to {_date(r.get('test_end'))}</td>"]
        cells += [f'<td class="param">{_e(_fmt_value(r[p]))}</td>' for p in params]
        for col, _, m in shown:
            v = _num(r[col])
            cls = "num neg" if v is not None and v < 0 else "num"
            cells.append(f'<td class="{cls}">{_fmt(m, r[col])}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<h3>Folds</h3><div class="scroll"><table id="folds-table" class="data">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


# ---------------------------------------------------------------- heatmaps
@dataclass
class _Axis:
    name: str
    labels: list[str]
    index: pl.Series  # per ok run: cell index along this axis (null = none)


def _axis(name: str, s: pl.Series) -> _Axis:
    if s.dtype.is_numeric() and s.n_unique() > MAX_AXIS_CELLS:
        # Bins of consecutive distinct values, about as many values in each: never empty,
        # and it follows the grid's own spacing (linear, log or random samples).
        v = s.cast(pl.Float64).to_numpy()
        finite = np.isfinite(v)
        uniq = np.unique(v[finite])
        group = np.arange(uniq.size) * MAX_AXIS_CELLS // uniq.size
        idx = group[np.clip(np.searchsorted(uniq, np.where(finite, v, uniq[0])), 0,
                            uniq.size - 1)]
        as_int = s.dtype.is_integer()
        labels = []
        for g in range(int(group[-1]) + 1):
            members = uniq[group == g]
            lo, hi = (f"{x:.0f}" if as_int else f"{x:.3g}" for x in (members[0], members[-1]))
            labels.append(lo if lo == hi else f"{lo}–{hi}")
        index = pl.Series(idx, dtype=pl.Int64)
        bad = np.flatnonzero(~finite)
        if bad.size:
            index = index.scatter(bad, None)
        return _Axis(name, labels, index)
    uniq = s.drop_nulls().unique().sort()
    lookup = pl.DataFrame({"v": uniq, "i": pl.int_range(uniq.len(), eager=True)})
    idx = pl.DataFrame({"v": s}).join(lookup, on="v", how="left", maintain_order="left")["i"]
    return _Axis(name, [_fmt_value(u) for u in uniq.to_list()], idx.cast(pl.Int64))


def _pick_axes(ok: pl.DataFrame, params: list[str], metric: str) -> list[_Axis]:
    """The one or two axes of the heatmaps (see the module docstring)."""
    numeric, other = [], []
    for p in params:
        s = ok[p]
        if s.drop_nulls().n_unique() < 2:
            continue
        (numeric if s.dtype.is_numeric() else other).append(p)
    cands = numeric if len(numeric) >= 2 else (numeric + other)
    if len(cands) < 2:
        return [_axis(p, ok[p]) for p in cands]
    cands = cands[:8]
    axes = {p: _axis(p, ok[p]) for p in cands}
    best, best_var = (cands[0], cands[1]), -1.0
    y = ok[metric]
    for i, a in enumerate(cands):
        for b in cands[i + 1:]:
            cells = (pl.DataFrame({"x": axes[a].index, "y": axes[b].index, "m": y})
                     .drop_nulls().group_by("x", "y").agg(pl.col("m").mean()))
            var = cells["m"].var() if cells.height > 1 else None
            if var is not None and var > best_var + 1e-15:
                best, best_var = (a, b), float(var)
    return [axes[best[0]], axes[best[1]]]


def _heatmaps(d: _Data) -> str:
    metric = d.metric
    head = f'<section id="heatmaps"><h2>Parameter heatmaps: mean {_e(metric)}</h2>'
    if d.ok.height == 0 or d.ok[metric].null_count() == d.ok.height:
        return (head + f'<p class="note warn">No successful run has a {_e(metric)} value.</p>'
                "</section>")
    axes = _pick_axes(d.ok, d.params, metric)
    if not axes:
        return (head + '<p class="muted">No parameter takes two or more values in this sweep, '
                "so there is nothing to map.</p></section>")
    if len(axes) == 1:
        axes.append(_Axis("", [""], pl.Series([0] * d.ok.height, dtype=pl.Int64)))
    ax, ay = axes
    frame = pl.DataFrame({"w": d.ok["window"], "x": ax.index, "y": ay.index,
                          "m": d.ok[metric]}).drop_nulls(["x", "y"])
    aggs = [pl.col("m").mean().alias("mean"), pl.col("m").min().alias("min"),
            pl.col("m").max().alias("max"), pl.col("m").count().alias("n")]
    windows = sorted(frame["w"].unique().to_list())
    panels: list[tuple[str, str, pl.DataFrame]] = []
    if len(windows) > 1:
        panels.append(("all", "all windows", frame.group_by("x", "y").agg(aggs)))
    shown_windows = windows[:MAX_WINDOW_PANELS]
    for w in shown_windows:
        sub = frame.filter(pl.col("w") == w).group_by("x", "y").agg(aggs)
        label = f"window {w}"
        span = d.window_label(w)
        panels.append((str(w), f"{label}: {span}" if span else label, sub))
    scale = _Scale.fit((v for _, _, p in panels for v in p["mean"].to_list()), metric)

    others = [p for p in d.params if p not in (ax.name, ay.name)]
    varying = [p for p in others if d.ok[p].n_unique() > 1]
    expl = (f"Each cell is the mean {metric} of the runs with those values of "
            f"<b>{_e(ax.name)}</b>" + (f" and <b>{_e(ay.name)}</b>" if ay.name else ""))
    if varying:
        expl += f", averaged over {', '.join(f'<b>{_e(p)}</b>' for p in varying)}"
    expl += ". Grey cells have no run (excluded by constraints or failed). Hover a cell for "
    expl += "its numbers."
    if ay.name:
        expl += (" The pair shown is the one whose cell means vary the most"
                 " among the varying parameters.")
    body = [head, f'<p class="muted">{expl}</p>', _legend(scale, metric)]
    body.append('<div class="multiples">')
    for key, title, cells in panels:
        body.append(_heatmap_svg(key, title, cells, ax, ay, scale, metric))
    body.append("</div>")
    if len(windows) > len(shown_windows):
        body.append(f'<p class="muted">{len(windows) - len(shown_windows)} more windows are '
                    "not drawn (the first panel pools all of them).</p>")
    body.append("</section>")
    return "".join(body)


def _heatmap_svg(key: str, title: str, cells: pl.DataFrame, ax: _Axis, ay: _Axis,
                 scale: _Scale, metric: str) -> str:
    nx, ny = len(ax.labels), len(ay.labels)
    cw = max(14.0, min(52.0, 400.0 / nx))
    ch = max(12.0, min(36.0, 300.0 / ny))
    ylab_w = max((len(s) for s in ay.labels), default=1) * 6.5 + 10
    rotate = max((len(s) for s in ax.labels), default=1) * 6.5 > cw - 2
    xlab_h = (max(len(s) for s in ax.labels) * 5.0 + 10) if rotate else 16
    ml = (22 if ay.name else 4) + ylab_w
    mt = 4.0
    width = ml + nx * cw + 10
    height = mt + ny * ch + xlab_h + 22
    out = []
    lookup = {(int(r[0]), int(r[1])): r for r in cells.select("x", "y", "mean", "min", "max", "n")
              .iter_rows()}
    show_values = cw >= 34 and ch >= 18
    for yi in range(ny):
        yv = ay.labels[yi]
        y = mt + (ny - 1 - yi) * ch  # the largest value on top
        for xi in range(nx):
            x = ml + xi * cw
            where = f"{ax.name}={ax.labels[xi]}" + (f", {ay.name}={yv}" if ay.name else "")
            r = lookup.get((xi, yi))
            if r is None or r[2] is None:
                out.append(f'<rect class="heatmap-empty" x="{x:.1f}" y="{y:.1f}" '
                           f'width="{cw - 1:.1f}" height="{ch - 1:.1f}">'
                           f"<title>{_e(where)}: no runs</title></rect>")
                continue
            _, _, mean, lo, hi, n = r
            fill = scale.color(mean)
            tip = (f"{where}: mean {metric} {_fmt(metric, mean)} over {n} run"
                   + ("" if n == 1 else
                      f"s (min {_fmt(metric, lo)}, max {_fmt(metric, hi)})"))
            out.append(f'<rect class="heatmap-cell" data-window="{_e(key)}" data-x="{xi}" '
                       f'data-y="{yi}" x="{x:.1f}" y="{y:.1f}" width="{cw - 1:.1f}" '
                       f'height="{ch - 1:.1f}" fill="{fill}"><title>{_e(tip)}</title></rect>')
            if show_values:
                out.append(_text(x + cw / 2 - 0.5, y + ch / 2 + 3.5, _fmt(metric, mean),
                                 cls="cellv dark" if _dark(fill) else "cellv"))
    for yi, label in enumerate(ay.labels):
        y = mt + (ny - 1 - yi) * ch + ch / 2 + 3.5
        out.append(_text(ml - 5, y, label, anchor="end"))
    base = mt + ny * ch
    for xi, label in enumerate(ax.labels):
        x = ml + xi * cw + cw / 2
        if rotate:
            out.append(_text(x + 3, base + 8, label, anchor="end",
                             extra=f' transform="rotate(-45 {x + 3:.1f} {base + 8:.1f})"'))
        else:
            out.append(_text(x, base + 13, label))
    out.append(_text(ml + nx * cw / 2, height - 5, ax.name, cls="lbl axis"))
    if ay.name:
        yc = mt + ny * ch / 2
        out.append(_text(12, yc, ay.name, cls="lbl axis",
                         extra=f' transform="rotate(-90 12 {yc:.1f})"'))
    return (f'<figure class="chart hm" style="max-width:{max(width, 200):.0f}px">'
            f"<figcaption class=\"title\">{_e(title)}</figcaption>"
            + _svg(width, height, "".join(out), cls="heatmap", label=f"heatmap {title}",
                   id_=f"heatmap-{key}")
            + "</figure>")


def _legend(scale: _Scale, metric: str) -> str:
    n, sw, ml = 48, 6.0, 10.0
    parts = []
    for i in range(n):
        v = scale.lo + (scale.hi - scale.lo) * (i + 0.5) / n
        parts.append(f'<rect class="legend-swatch" x="{ml + i * sw:.1f}" y="4" '
                     f'width="{sw + 0.3:.1f}" height="12" fill="{scale.color(v)}"/>')
    ticks, step = _ticks(scale.lo, scale.hi, 4)
    for v in ticks:
        x = ml + (v - scale.lo) / (scale.hi - scale.lo) * n * sw
        parts.append(f'<line class="axis-line" x1="{x:.1f}" x2="{x:.1f}" y1="16" y2="20"/>')
        parts.append(_text(x, 31, _tick_label(v, step, metric in _PERCENT)))
    parts.append(_text(ml + n * sw + 12, 14, f"mean {metric}"
                       + (" (lower is better)" if scale.flip else ""), anchor="start"))
    return _svg(ml + n * sw + 200, 36, "".join(parts), cls="legend", label="colour legend",
                id_="heatmap-legend")


# ---------------------------------------------------------------- distributions
def _distributions(d: _Data) -> str:
    figs = []
    for m in HIST_METRICS:
        if m in d.ok.columns:
            figs.append(_histogram(m, d.ok[m].drop_nulls().to_numpy().astype(float),
                                   d.ok.height))
    if not figs:
        return ""
    return ('<section id="distributions"><h2>Metric distributions across runs</h2>'
            f'<div class="multiples">{"".join(figs)}</div></section>')


def _histogram(metric: str, v: np.ndarray, n_total: int) -> str:
    width, height, ml, mr, mt, mb = 350.0, 230.0, 44.0, 12.0, 26.0, 38.0
    pw, ph = width - ml - mr, height - mt - mb
    pct = metric in _PERCENT
    out = [_text(ml, 15, metric, anchor="start", cls="lbl title")]
    if v.size == 0:
        out.append(_text(width / 2, height / 2, "no values"))
        return '<figure class="chart">' + _svg(width, height, "".join(out), cls="histogram",
                                               label=f"histogram of {metric}",
                                               id_=f"hist-{metric}") + "</figure>"
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        lo, hi = _pad(lo, hi)
    nb = int(min(40, max(5, math.ceil(math.sqrt(v.size))))) if v.size > 4 else max(v.size, 1)
    counts, edges = np.histogram(v, bins=nb, range=(lo, hi))
    cmax = max(int(counts.max()), 1) * 1.08  # headroom above the tallest bar

    def fx(x: float) -> float:
        return ml + (x - lo) / (hi - lo) * pw

    def fy(c: float) -> float:
        return mt + ph - c / cmax * ph

    yt, _ = _ticks(0, cmax, 4)
    for c in yt:
        if c != int(c):
            continue
        out.append(f'<line class="grid" x1="{ml}" x2="{width - mr}" y1="{fy(c):.1f}" '
                   f'y2="{fy(c):.1f}"/>')
        out.append(_text(ml - 5, fy(c) + 4, f"{c:.0f}", anchor="end"))
    for i, c in enumerate(counts):
        x0, x1 = fx(edges[i]), fx(edges[i + 1])
        tip = (f"{metric} {_fmt(metric, edges[i])} to {_fmt(metric, edges[i + 1])}: "
               f"{int(c)} run{'' if c == 1 else 's'}")
        good = (edges[i] + edges[i + 1]) / 2 >= 0 if metric not in LOWER_IS_BETTER else True
        out.append(f'<rect class="hist-bar{"" if good else " neg"}" x="{x0 + 0.5:.1f}" '
                   f'y="{fy(c):.1f}" width="{max(x1 - x0 - 1, 0.8):.1f}" '
                   f'height="{mt + ph - fy(c):.1f}"><title>{_e(tip)}</title></rect>')
    xt, xstep = _ticks(lo, hi, 5)
    for x in xt:
        out.append(f'<line class="axis-line" x1="{fx(x):.1f}" x2="{fx(x):.1f}" '
                   f'y1="{mt + ph}" y2="{mt + ph + 4}"/>')
        out.append(_text(fx(x), mt + ph + 16, _tick_label(x, xstep, pct)))
    out.append(f'<line class="axis-line" x1="{ml}" x2="{width - mr}" y1="{mt + ph}" '
               f'y2="{mt + ph}"/>')
    med = float(np.median(v))
    out.append(f'<line class="hist-median" x1="{fx(med):.1f}" x2="{fx(med):.1f}" y1="{mt}" '
               f'y2="{mt + ph}"><title>median {_e(_fmt(metric, med))}</title></line>')
    out.append(_text(width - mr, 15, f"median {_fmt(metric, med)}", anchor="end",
                     cls="lbl small"))
    missing = n_total - v.size
    note = f"{v.size} runs" + (f"; {missing} without a value" if missing else "")
    out.append(_text(ml + pw / 2, height - 4, note, cls="lbl small"))
    return ('<figure class="chart">'
            + _svg(width, height, "".join(out), cls="histogram",
                   label=f"histogram of {metric}", id_=f"hist-{metric}")
            + "</figure>")


# ---------------------------------------------------------------- top runs
def _top_runs(d: _Data, top: int) -> str:
    if "sharpe" not in d.ok.columns:
        return ""
    best = (d.ok.filter(pl.col("sharpe").is_not_null()).top_k(top, by="sharpe")
            .sort("sharpe", descending=True))
    if best.height == 0:
        return ('<section id="top-runs"><h2>Top runs</h2><p class="muted">No run has a Sharpe '
                "ratio.</p></section>")
    metrics = [m for m in _TOP_METRICS if m in best.columns]
    head = ("<th>#</th><th>window</th>"
            + "".join(f'<th class="param">{_e(p)}</th>' for p in d.params)
            + "".join(f"<th>{_e(m)}</th>" for m in metrics) + "<th>run_id</th>")
    rows = []
    for i, r in enumerate(best.iter_rows(named=True), 1):
        cells = [f"<td>{i}</td>", f"<td>{_e(r['window'])}</td>"]
        cells += [f'<td class="param">{_e(_fmt_value(r[p]))}</td>' for p in d.params]
        for m in metrics:
            v = _num(r[m])
            neg = v is not None and v < 0 and m not in LOWER_IS_BETTER
            cells.append(f'<td class="num{" neg" if neg else ""}">{_fmt(m, r[m])}</td>')
        cells.append(f"<td><code>{_e(str(r.get('run_id', ''))[:12])}</code></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<section id="top-runs"><h2>Top {best.height} runs by Sharpe</h2>'
            f'<p class="muted">Out of {d.ok.height} successful runs (each window counts '
            "separately). In-sample numbers: the best of many trials is optimistic; see the "
            f"overfitting checks.</p>"
            f'<div class="scroll"><table id="top-runs-table" class="data">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            "</section>")


# ---------------------------------------------------------------- details
def _details(d: _Data) -> str:
    m = d.meta
    spec = m.get("spec") if isinstance(m.get("spec"), dict) else {}
    parts = ['<section id="details"><h2>Details</h2>']
    windows = [w for w in (m.get("windows") or []) if isinstance(w, dict)]
    if windows:
        stats = {}
        if "sharpe" in d.ok.columns:
            agg = d.ok.group_by("window").agg(
                pl.len().alias("n"), pl.col("sharpe").mean().alias("mean"),
                pl.col("sharpe").max().alias("max"))
            stats = {r[0]: r[1:] for r in agg.iter_rows()}
        rows = []
        for w in windows:
            n, mean, best = stats.get(w.get("window"), (0, None, None))
            rows.append(f"<tr><td>{_e(w.get('window'))}</td><td>{_date(w.get('start'))}</td>"
                        f"<td>{_date(w.get('end'))}</td><td class=\"num\">{_e(w.get('bars', ''))}"
                        f'</td><td class="num">{n}</td><td class="num">{_fmt("sharpe", mean)}</td>'
                        f'<td class="num">{_fmt("sharpe", best)}</td></tr>')
        parts.append('<h3>Windows</h3><table id="windows-table" class="data"><thead><tr>'
                     "<th>window</th><th>start</th><th>end</th><th>bars</th><th>runs</th>"
                     "<th>mean sharpe</th><th>best sharpe</th></tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table>")
    grid = spec.get("grid")
    if isinstance(grid, dict) and grid:
        rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(json.dumps(v, default=str))}</code>"
                       "</td></tr>" for k, v in grid.items())
        parts.append(f'<h3>Grid</h3><table class="kv">{rows}</table>')
    extra = []
    if spec.get("constraints"):
        extra.append(("constraints", "; ".join(map(str, spec["constraints"]))))
    if spec.get("engine"):
        extra.append(("engine", json.dumps(spec["engine"], default=str)))
    if spec.get("samples"):
        extra.append(("samples", f"{spec['samples']} (seed {spec.get('seed')})"))
    if spec.get("walk_forward"):
        extra.append(("walk_forward", json.dumps(spec["walk_forward"], default=str)))
    for key in ("digest", "fingerprint"):
        if m.get(key):
            extra.append((key, str(m[key])))
    versions = m.get("versions")
    if isinstance(versions, dict) and versions:
        extra.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    if extra:
        rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>"
                       for k, v in extra)
        parts.append(f'<h3>Settings</h3><table class="kv">{rows}</table>')
    parts.append("</section>")
    return "".join(parts)


_CSS = """
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#d9dee5;--bg:#fff;--panel:#f6f8fa;
--good:#1b7837;--warn:#a86400;--bad:#b2182b;--oos:#1f5fbf;--is:#e08a1e}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:8px 24px 24px}
nav.toc{position:sticky;top:0;z-index:2;background:#fffffff0;border-bottom:1px solid var(--line);
padding:8px 24px;font-size:13px}
nav.toc a{color:var(--oos);text-decoration:none;margin-right:16px}
h1{font-size:26px;margin:18px 0 4px}h2{font-size:19px;margin:30px 0 8px;padding-top:8px;
border-top:1px solid var(--line)}h3{font-size:15px;margin:18px 0 6px}
.sub{margin:0 0 10px;color:var(--muted)}.muted{color:var(--muted)}.small{font-size:12px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--panel);
padding:1px 4px;border-radius:3px}
.badge{font-size:13px;font-weight:600;padding:2px 9px;border-radius:10px;vertical-align:middle;
color:#fff;background:var(--muted)}
.badge.good{background:var(--good)}.badge.warn{background:var(--warn)}
.badge.bad{background:var(--bad)}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:8px 14px;
min-width:120px}
.card .v{font-size:20px;font-weight:600}.card .k{font-size:12px;color:var(--muted)}
.card.bad .v{color:var(--bad)}.cards.small .card{min-width:96px;padding:6px 10px}
.cards.small .v{font-size:15px}
.note{border-left:4px solid var(--warn);background:#fff7e8;padding:8px 12px;margin:10px 0;
border-radius:3px}.note.bad{border-color:var(--bad);background:#fdeeee}
.note ul{margin:4px 0 0;padding-left:20px}
ul.verdicts{list-style:none;padding:0;margin:8px 0}
.verdict{padding:9px 12px 9px 14px;margin:6px 0;border-radius:4px;border-left:5px solid;
font-size:15px}
.verdict.good{border-color:var(--good);background:#edf7ee}
.verdict.warn{border-color:var(--warn);background:#fff7e8}
.verdict.bad{border-color:var(--bad);background:#fdeeee}
.verdict.none{border-color:var(--line);background:var(--panel)}
figure.chart{margin:10px 0 16px}figcaption{color:var(--muted);font-size:12px;margin-top:2px}
figure.hm figcaption.title{color:var(--fg);font-weight:600;font-size:12.5px;margin:0 0 2px}
.multiples{display:flex;flex-wrap:wrap;gap:18px 26px;align-items:flex-start}
.multiples figure.chart{margin:0}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
.lbl{font-size:11px;fill:#3b4452}.lbl.small{font-size:10px;fill:var(--muted)}
.lbl.title{font-size:12.5px;font-weight:600;fill:var(--fg)}
.lbl.axis{font-size:12px;font-weight:600}
.cellv{font-size:10px;fill:#1d2330;pointer-events:none}.cellv.dark{fill:#fff}
.heatmap-cell:hover,.hist-bar:hover,.fold-bar:hover{stroke:#000;stroke-width:1.2}
.heatmap-empty{fill:#e4e6ea}
.plot-bg{fill:#fbfcfd;stroke:var(--line)}
.grid{stroke:#e6e9ee;stroke-width:1}.grid.zero{stroke:#9aa3ad}
.axis-line{stroke:#8a939e}
.line{fill:none;stroke-width:1.8;stroke-linejoin:round}
.line.oos{stroke:var(--oos)}.line.is{stroke:var(--is);stroke-dasharray:6 3}
.fold-band{fill:#000;fill-opacity:0}.fold-band.alt{fill-opacity:.035}
.fold-band:hover{fill:var(--oos);fill-opacity:.08}
.fold-boundary{stroke:#7b8591;stroke-dasharray:3 3;stroke-width:1}
.dd-area{fill:var(--bad);fill-opacity:.22}.dd-line{fill:none;stroke:var(--bad);stroke-width:1.2}
.dd-worst{fill:var(--bad)}
.fold-bar.is{fill:var(--is)}.fold-bar.oos{fill:var(--oos)}
.hist-bar{fill:#4f7fc4}.hist-bar.neg{fill:#d07a6c}
.hist-median{stroke:#1d2330;stroke-width:1.5;stroke-dasharray:4 3}
table{border-collapse:collapse;margin:6px 0 12px}
table.data th,table.data td{padding:4px 8px;border-bottom:1px solid var(--line);
white-space:nowrap}
table.data thead th{background:var(--panel);text-align:left;font-weight:600;
border-bottom:2px solid var(--line);position:sticky;top:0}
table.data tbody tr:nth-child(even){background:#fafbfc}
table.data tbody tr:hover{background:#eef4fb}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.neg{color:var(--bad)}
th.param,td.param{background:#f3f6fb}
table.kv th,table.stability th,table.summary-other th{text-align:left;padding:3px 12px 3px 0;
font-weight:600;vertical-align:top}
table.kv td,table.stability td,table.summary-other td{padding:3px 12px 3px 0}
table.stability thead th{color:var(--muted);font-weight:500}
.scroll{overflow-x:auto}
footer{max-width:1180px;margin:0 auto;padding:16px 24px 30px;color:var(--muted);font-size:12px;
border-top:1px solid var(--line)}
@media print{nav.toc{display:none}}
"""
