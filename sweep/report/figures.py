"""The report's chart sections: walk-forward, the top runs' equity, an adaptive search's
convergence, parameter heatmaps and metric distributions. Each function takes the
:class:`~sweep.report.load.ReportData` and returns an HTML fragment ("" when it has
nothing to show); the drawing is :mod:`sweep.report.charts`.

"The two most important parameters" of the heatmaps: among the grid axes with two or more
values (numeric axes preferred; a categorical one is used only when fewer than two numeric
axes vary), the pair whose cell means of the metric have the largest variance; ties go to
the first pair in parameter order. An axis with more than :data:`MAX_AXIS_CELLS` distinct
values (random samples, long ranges) is cut into that many bins of consecutive distinct
values, about equally many in each. Other parameters are averaged over within a cell; all
panels share one colour scale (diverging around 0 when the values have both signs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from sweep.report import charts
from sweep.report.charts.scales import epoch_ms, ms_datetime
from sweep.report.format import esc, fmt_date, fmt_metric, fmt_value
from sweep.report.load import Curve, ReportData

__all__ = ["HIST_METRICS", "MAX_AXIS_CELLS", "MAX_WINDOW_PANELS", "Axis", "convergence",
           "distributions", "heatmaps", "pick_axes", "top_equity", "walk_forward"]

HIST_METRICS = ("sharpe", "total_return", "max_drawdown")
MAX_AXIS_CELLS = 30  # an axis with more distinct values is binned into this many bins
MAX_WINDOW_PANELS = 24  # per-window heatmaps beyond this are left out (with a note)
OOS, IS = "#1f5fbf", "#e08a1e"


# ------------------------------------------------------------------ walk-forward
def fold_bands(oos: pl.DataFrame, folds: pl.DataFrame | None) -> list[charts.Band]:
    """One band a fold: from its first out-of-sample bar to the next fold's first bar
    (the last one to the curve's end), with the fold's OOS return in its hover text."""
    firsts = oos.group_by("fold").agg(pl.col("timestamp").min()).sort("timestamp")
    starts = list(zip(firsts["fold"].to_list(), epoch_ms(firsts["timestamp"]), strict=True))
    end = float(epoch_ms(oos["timestamp"].tail(1))[0])
    ret = dict(folds.select("fold", "oos_total_return").iter_rows()) if folds is not None \
        else {}
    bands = []
    for i, (fold, t0) in enumerate(starts):
        t1 = starts[i + 1][1] if i + 1 < len(starts) else end
        tip = (f"fold {fold}: out of sample from {fmt_date(ms_datetime(t0))} to "
               f"{fmt_date(ms_datetime(t1))}")
        if ret.get(fold) is not None:
            tip += f", OOS return {fmt_metric('total_return', ret[fold])}"
        bands.append(charts.Band(t0, t1, f"F{fold}", tip))
    return bands


def walk_forward_chart(oos: pl.DataFrame, folds: pl.DataFrame | None = None) -> charts.Chart:
    """The stitched out-of-sample equity against the in-sample promise, fold bands
    behind (``oos``: the columns of ``oos_equity.parquet``)."""
    eq = oos["equity"].cast(pl.Float64).to_numpy()
    ins = oos["is_equity"].cast(pl.Float64).to_numpy()
    lines = [charts.Line("in-sample promise (each winner's train growth rate)",
                         oos["timestamp"], ins, color=IS, dash="6 3", id="is-equity-line",
                         cls="is"),
             charts.Line("out of sample (stitched, re-optimised per fold)", oos["timestamp"],
                         eq, color=OOS, id="oos-equity-line", cls="oos")]
    bands = fold_bands(oos, folds)
    caption = (f"Out-of-sample equity {fmt_metric('', eq[0])} → {fmt_metric('', eq[-1])} "
               f"({fmt_metric('total_return', eq[-1] / eq[0] - 1 if eq[0] else None)}); "
               f"in-sample promise {fmt_metric('', ins[0])} → {fmt_metric('', ins[-1])}; "
               f"{len(bands)} folds (dashed lines: the start of each test period).")
    return charts.line_chart(lines, bands=bands, id="equity-chart", caption=caption,
                             kind="line equity-chart")


def walk_forward(d: ReportData) -> str:
    if d.record.walk_forward is None or (d.oos is None and d.folds is None):
        return ""
    parts = ['<section id="walk-forward"><h2>Walk-forward</h2>']
    if d.oos is not None:
        parts.append(walk_forward_chart(d.oos, d.folds).figure())
        parts.append(charts.drawdown_chart(
            d.oos["timestamp"], d.oos["equity"].to_numpy(), start=d.init_cash,
            bands=fold_bands(d.oos, d.folds), area_id="oos-drawdown-area",
            caption="Underwater curve of the out-of-sample equity: its fall from the running "
                    "peak (from the initial cash), the deepest point marked.").figure())
    if d.folds is not None and d.folds.height:
        f = d.folds
        parts.append(charts.fold_bars(f["fold"].to_list(), f["is_sharpe"].to_list(),
                                      f["oos_sharpe"].to_list()).figure())
        parts.append(_folds_table(d, f))
    parts.append("</section>")
    return "".join(parts)


def _folds_table(d: ReportData, folds: pl.DataFrame) -> str:
    params = [p for p in d.params if p in folds.columns]
    shown = [(f"{p}_{m}", f"{label} {m.replace('_', ' ')}", m)
             for m in ("sharpe", "total_return") for p, label in (("is", "IS"), ("oos", "OOS"))]
    shown += [("dsr", "DSR", "dsr"), ("pbo", "PBO", "pbo")]
    shown = [s for s in shown if s[0] in folds.columns]
    head = ("<th>fold</th><th>train</th><th>test</th>"
            + "".join(f'<th class="param">{esc(p)}</th>' for p in params)
            + "".join(f"<th>{esc(label)}</th>" for _, label, _ in shown))
    rows = []
    for r in folds.iter_rows(named=True):
        cells = [f"<td>{r['fold']}</td>",
                 f"<td>{fmt_date(r['train_start'])} to {fmt_date(r['train_end'])}</td>",
                 f"<td>{fmt_date(r['test_start'])} to {fmt_date(r['test_end'])}</td>"]
        cells += [f'<td class="param">{esc(fmt_value(r[p]))}</td>' for p in params]
        for col, _, m in shown:
            neg = r[col] is not None and r[col] < 0
            cells.append(f'<td class="num{" neg" if neg else ""}">{fmt_metric(m, r[col])}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ('<h3>Folds</h3><div class="scroll"><table id="folds-table" class="data">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


# ------------------------------------------------------------------ top runs' equity
def top_equity(d: ReportData, curves: Sequence[Curve]) -> str:
    """The equity curves of the top runs (given, e.g. replayed), one line each, and a
    table of their stored metrics."""
    if not curves:
        return ""
    lines = [charts.Line(f"{c.label}", c.timestamps, c.equity, id=f"curve-{i}", cls="curve",
                         tip=f"{c.run_id[:12]} {c.label}")
             for i, c in enumerate(curves)]
    chart = charts.line_chart(lines, id="top-equity-chart", kind="line top-equity",
                              caption="Equity at each bar's close of the top runs, rebuilt "
                                      "from the store.")
    stored = {r["run_id"]: r for r in d.runs.filter(
        pl.col("run_id").is_in([c.run_id for c in curves])).iter_rows(named=True)}
    metrics = [m for m in ("total_return", "sharpe", "max_drawdown", "final_equity")
               if m in d.metrics]
    rows = []
    for i, c in enumerate(curves):
        r = stored.get(c.run_id, {})
        color = charts.PALETTE[i % len(charts.PALETTE)]
        cells = [f'<td><span class="swatch" style="background:{color}"></span>{i + 1}</td>',
                 f"<td>{esc(c.label)}</td>", f"<td>{esc(r.get('window', '?'))}</td>"]
        cells += [f'<td class="num">{fmt_metric(m, r.get(m))}</td>' for m in metrics]
        cells.append(f"<td><code>{esc(c.run_id[:12])}</code></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = ("<th>#</th><th>run</th><th>window</th>"
            + "".join(f"<th>stored {esc(m)}</th>" for m in metrics) + "<th>run_id</th>")
    return ('<section id="top-equity"><h2>Equity of the top runs</h2>' + chart.figure()
            + '<div class="scroll"><table id="top-equity-table" class="data">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            "</section>")


# ------------------------------------------------------------------ search convergence
def convergence(d: ReportData) -> str:
    """An adaptive search's best value against its trials (one line a study: a
    walk-forward's folds), from the stored runs (sweep.search.objective.trial_values)."""
    from engine.metrics import LOWER_IS_BETTER
    from sweep.search.objective import trial_values

    s = d.record.search
    if s is None or not s.studies:
        return ""
    table = trial_values(d.runs, s)
    if table.height == 0:
        return ""
    several = len(s.studies) > 1
    series = []
    for st in s.studies:
        rows = table.filter(pl.col("study") == st.study)
        label = f"fold {st.study}" if several else s.method
        series.append(charts.Convergence(label, rows["trial"].to_numpy(),
                                         rows["value"].to_numpy(),
                                         s.objective in LOWER_IS_BETTER))
    n_pruned = int((table["state"] == "pruned").sum())
    n_failed = int((table["state"] == "failed").sum())
    what = "window" if s.settings.get("objective_window") is not None else "mean over the windows"
    value = (f"its {esc(s.objective)} in window {s.settings['objective_window']}"
             if s.settings.get("objective_window") is not None
             else f"its {esc(s.objective)}" + ("" if len(d.record.windows) < 2 or several
                                              else f" ({what})"))
    notes = [f"{s.method} search ({esc(s.settings.get('sampler', ''))}, seed "
             f"{esc(s.settings.get('seed'))}, batch {esc(s.settings.get('batch'))}): "
             f"{s.n_trials} trials, each a parameter set run once; a trial's value is "
             f"{value}."]
    if s.n_repeats or s.n_rejected:
        notes.append(f"Of {s.n_proposals} proposals, {s.n_repeats} repeated a trial and "
                     f"{s.n_rejected} broke the constraints: neither ran anything.")
    if n_pruned or n_failed:
        notes.append(f"{n_pruned} trials were pruned and {n_failed} failed: no dot.")
    if s.sampler_ms is not None:
        notes.append(f"Sampler time {s.sampler_ms:.2f} ms a proposal"
                     + (f", runs {s.run_ms:.2f} ms of worker time each." if s.run_ms
                        else "."))
    chart = charts.convergence_chart(series, metric=s.objective)
    return ('<section id="convergence"><h2>Search convergence</h2>'
            f'<p class="muted">{" ".join(notes)}</p>{chart.figure()}</section>')


# ------------------------------------------------------------------ heatmaps
@dataclass
class Axis:
    """A heatmap axis: the parameter, its cell labels, and each run's cell (null: none)."""

    name: str
    labels: list[str]
    index: pl.Series


def axis(name: str, s: pl.Series) -> Axis:
    """The cells of parameter ``name`` (the values ``s`` of the runs): one a distinct
    value, or :data:`MAX_AXIS_CELLS` bins of consecutive distinct values."""
    if s.dtype.is_numeric() and s.n_unique() > MAX_AXIS_CELLS:
        # Bins of consecutive distinct values, about as many values in each: never empty,
        # and it follows the grid's own spacing (linear, log or random samples).
        v = s.cast(pl.Float64).to_numpy()
        finite = np.isfinite(v)
        uniq = np.unique(v[finite])
        group = np.arange(uniq.size) * MAX_AXIS_CELLS // uniq.size
        idx = group[np.clip(np.searchsorted(uniq, np.where(finite, v, uniq[0])), 0,
                            uniq.size - 1)]
        fmt = "{:.0f}" if s.dtype.is_integer() else "{:.3g}"
        labels = []
        for g in range(int(group[-1]) + 1):
            members = uniq[group == g]
            lo, hi = fmt.format(members[0]), fmt.format(members[-1])
            labels.append(lo if lo == hi else f"{lo}–{hi}")
        index = pl.Series(idx, dtype=pl.Int64)
        bad = np.flatnonzero(~finite)
        return Axis(name, labels, index.scatter(bad, None) if bad.size else index)
    uniq = s.drop_nulls().unique().sort()
    lookup = pl.DataFrame({"v": uniq, "i": pl.int_range(uniq.len(), eager=True)})
    idx = pl.DataFrame({"v": s}).join(lookup, on="v", how="left", maintain_order="left")["i"]
    return Axis(name, [fmt_value(u) for u in uniq.to_list()], idx.cast(pl.Int64))


def pick_axes(ok: pl.DataFrame, params: list[str], metric: str) -> list[Axis]:
    """The one or two axes of the heatmaps (see the module docstring)."""
    numeric, other = [], []
    for p in params:
        if ok[p].drop_nulls().n_unique() >= 2:
            (numeric if ok[p].dtype.is_numeric() else other).append(p)
    cands = numeric if len(numeric) >= 2 else numeric + other
    if len(cands) < 2:
        return [axis(p, ok[p]) for p in cands]
    cands = cands[:8]
    axes = {p: axis(p, ok[p]) for p in cands}
    best, best_var = (cands[0], cands[1]), -1.0
    for i, a in enumerate(cands):
        for b in cands[i + 1:]:
            cells = (pl.DataFrame({"x": axes[a].index, "y": axes[b].index, "m": ok[metric]})
                     .drop_nulls().group_by("x", "y").agg(pl.col("m").mean()))
            var = cells["m"].var() if cells.height > 1 else None
            if var is not None and var > best_var + 1e-15:
                best, best_var = (a, b), float(var)
    return [axes[best[0]], axes[best[1]]]


def heatmaps(d: ReportData) -> str:
    metric = d.metric
    head = f'<section id="heatmaps"><h2>Parameter heatmaps: mean {esc(metric)}</h2>'
    if d.ok.height == 0 or d.ok[metric].null_count() == d.ok.height:
        return (head + f'<p class="note warn">No successful run has a {esc(metric)} value.'
                "</p></section>")
    axes = pick_axes(d.ok, d.params, metric)
    if not axes:
        return (head + '<p class="muted">No parameter takes two or more values in this '
                "sweep, so there is nothing to map.</p></section>")
    if len(axes) == 1:
        axes.append(Axis("", [""], pl.Series([0] * d.ok.height, dtype=pl.Int64)))
    ax, ay = axes
    frame = pl.DataFrame({"w": d.ok["window"], "x": ax.index, "y": ay.index,
                          "m": d.ok[metric]}).drop_nulls(["x", "y"])
    windows = sorted(frame["w"].unique().to_list())
    panels = [("all", "all windows", frame)] if len(windows) > 1 else []
    shown = windows[:MAX_WINDOW_PANELS]
    for w in shown:
        span = d.record.window_label(w)
        panels.append((str(w), f"window {w}: {span}" if span else f"window {w}",
                       frame.filter(pl.col("w") == w)))
    grids = [(key, name, _cells(sub, len(ax.labels), len(ay.labels)))
             for key, name, sub in panels]
    scale = charts.ColorScale.fit((v for _, _, g in grids for v in g[0][np.isfinite(g[0])]),
                                  metric)
    varying = [p for p in d.params if p not in (ax.name, ay.name) and d.ok[p].n_unique() > 1]
    expl = (f"Each cell is the mean {esc(metric)} of the runs with those values of "
            f"<b>{esc(ax.name)}</b>" + (f" and <b>{esc(ay.name)}</b>" if ay.name else ""))
    if varying:
        expl += f", averaged over {', '.join(f'<b>{esc(p)}</b>' for p in varying)}"
    expl += ". Grey cells have no run (excluded by constraints or failed). Hover a cell for "
    expl += "its numbers."
    if ay.name:
        expl += (" The pair shown is the one whose cell means vary the most among the "
                 "varying parameters.")
    body = [head, f'<p class="muted">{expl}</p>', charts.colour_legend(scale, metric).svg(),
            '<div class="multiples">']
    for key, name, (mean, n, lo, hi) in grids:
        body.append(charts.heatmap(mean, ax.labels, ay.labels, metric=metric, x_name=ax.name,
                                   y_name=ay.name, counts=n, mins=lo, maxs=hi, scale=scale,
                                   chart_title=name, id=f"heatmap-{key}", key=key,
                                   legend=False).figure())
    body.append("</div>")
    if len(windows) > len(shown):
        body.append(f'<p class="muted">{len(windows) - len(shown)} more windows are not '
                    "drawn (the first panel pools all of them).</p>")
    return "".join(body) + "</section>"


def _cells(frame: pl.DataFrame, nx: int, ny: int) -> tuple[np.ndarray, ...]:
    """(mean, count, min, max) of the metric per cell, (ny, nx) arrays (NaN/0: no run)."""
    agg = frame.group_by("x", "y").agg(pl.col("m").mean().alias("mean"),
                                       pl.col("m").count().alias("n"),
                                       pl.col("m").min().alias("min"),
                                       pl.col("m").max().alias("max")).drop_nulls("mean")
    out = [np.full((ny, nx), np.nan) for _ in range(4)]
    ys, xs = agg["y"].to_numpy(), agg["x"].to_numpy()
    for arr, col in zip(out, ("mean", "n", "min", "max"), strict=True):
        arr[ys, xs] = agg[col].cast(pl.Float64).to_numpy()
    out[1] = np.nan_to_num(out[1]).astype(np.int64)
    return tuple(out)


# ------------------------------------------------------------------ distributions
def distributions(d: ReportData) -> str:
    figs = [charts.histogram(d.ok[m].drop_nulls().to_numpy(), m, n_total=d.ok.height,
                             id=f"hist-{m}").figure()
            for m in HIST_METRICS if m in d.ok.columns]
    if not figs:
        return ""
    return ('<section id="distributions"><h2>Metric distributions across runs</h2>'
            f'<div class="multiples">{"".join(figs)}</div></section>')
