"""The report's text sections: the header, the overfitting checks, the top runs and the
details. Each function takes the :class:`~sweep.report.load.ReportData` and returns an
HTML fragment ("" when it has nothing to show)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import polars as pl

from engine.metrics import LOWER_IS_BETTER
from sweep.report.format import esc, fmt_date, fmt_metric, fmt_value, human_seconds, num
from sweep.report.load import ReportData
from sweep.report.verdicts import dsr_verdict, overfitting_checks, pbo_verdict, threshold_rules

__all__ = ["details", "header", "top_runs", "verdicts"]

_TOP_METRICS = ("sharpe", "total_return", "cagr", "max_drawdown", "sortino", "calmar",
                "n_trades", "win_rate")


def _kv(rows: list[tuple[str, str]], cls: str = "kv") -> str:
    """Rows of (key, HTML) as a two-column table."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


# ------------------------------------------------------------------------ header
def header(d: ReportData) -> str:
    r = d.record
    badge = {"complete": "good"}.get(r.status, "bad" if r.status == "failed" else "warn")
    source = r.data.source if isinstance(r.data.source, str) else json.dumps(r.data.source)
    cards = [
        ("runs planned", r.n_runs),
        ("runs written", r.runs_written),
        ("runs failed", r.runs_failed),
        ("folds" if r.walk_forward else "windows", len(r.windows)),
        ("parameter sets", r.n_runs // max(len(r.windows), 1)),
        ("wall time (last call)", human_seconds(r.seconds_last_call)),
    ]
    card_html = "".join(
        f'<div class="card{" bad" if k == "runs failed" and v else ""}">'
        f'<div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>'
        for k, v in cards)
    facts = [f"created {esc(r.created_at)}"]
    if r.finished_at:
        facts.append(f"finished {esc(r.finished_at)}")
    n = r.plan.n_chunks
    facts.append(f"{n} chunk{'s' * (n != 1)} (chunk size {r.plan.chunk_size})")
    rate = r.compute_last_call
    if rate is not None and rate.runs and rate.seconds > 0:
        facts.append(f"last call computed {rate.runs:,} runs in {rate.seconds:.1f} s on "
                     f"{rate.worker_threads} worker threads ({rate.runs / rate.seconds:,.0f} "
                     "runs/s)")
    if r.search is not None:
        s = r.search
        facts.append(f"search {esc(s.method)}: {s.n_trials} trials by {esc(s.objective)}"
                     + (f", best {fmt_metric(s.objective, s.best_value)}"
                        if s.best_value is not None else ""))
    notes = []
    if r.status != "complete":
        notes.append(
            f'<p class="note warn">This sweep is <b>{esc(r.status)}</b>: the report covers '
            f"the {d.runs.height} runs written so far. Rerun the same command to finish it."
            "</p>")
    if d.n_errors:
        items = "".join(f"<li><code>{esc(err[:300])}</code> ({n} run{'s' * (n != 1)})</li>"
                        for err, n in d.errors)
        notes.append(
            f'<div class="note bad"><b>{d.n_errors} run(s) failed</b> and are left out of '
            "the charts and tables below; each keeps its message in the <code>error</code> "
            f"column of the runs table.<ul>{items}</ul></div>")
    if r.failed_chunks:
        items = "".join(f"<li>chunk {esc(k)}: <code>{esc(str(v)[:300])}</code></li>"
                        for k, v in list(r.failed_chunks.items())[:5])
        more = len(r.failed_chunks) - 5
        notes.append(
            f'<div class="note bad"><b>{len(r.failed_chunks)} chunk(s) failed</b> (their '
            f"runs are missing; rerun to retry them):<ul>{items}"
            f"{f'<li>... and {more} more</li>' if more > 0 else ''}</ul></div>")
    notes += [f'<p class="note warn">{esc(n)}</p>' for n in d.notes]
    return ('<header id="top">'
            f'<h1>{esc(r.name)} <span class="badge {badge}">{esc(r.status)}</span></h1>'
            f'<p class="sub">strategy <b>{esc(r.spec.get("strategy", "?"))}</b> · data '
            f"<code>{esc(source)}</code> ({r.data.bars} bars x {r.data.assets} assets, "
            f"{fmt_date(r.data.start)} to {fmt_date(r.data.end)})</p>"
            f'<div class="cards">{card_html}</div>'
            f'<p class="muted">{" · ".join(facts)}</p>' + "".join(notes) + "</header>")


# ------------------------------------------------------------------------ verdicts
def verdicts(d: ReportData) -> str:
    r = d.record
    checks = overfitting_checks(r)
    if not checks:
        return ""
    items = "".join(
        f'<li class="verdict {c.verdict.level if c.verdict else "none"}" '
        f'id="verdict-{c.key}">{esc(c.sentence)}</li>' for c in checks)
    rules = threshold_rules()
    parts = ['<section id="verdicts"><h2>Overfitting checks</h2>',
             f'<ul class="verdicts">{items}</ul>',
             f'<p class="muted small">Best run by <b>{esc(d.selection.objective)}</b>'
             + (f" among runs with {esc(' and '.join(d.selection.filters))}"
                if d.selection.filters else "")
             + ". Thresholds: " + "; ".join(rules[c.key] for c in checks) + ".</p>"]
    wf = r.walk_forward
    if wf is not None:
        oos = wf.oos_metrics
        order = [k for k in d.metrics if k in oos] + [k for k in oos if k not in d.metrics]
        cells = "".join(f'<div class="card"><div class="v">{esc(fmt_metric(k, oos[k]))}</div>'
                        f'<div class="k">{esc(k)}</div></div>' for k in order)
        parts.append(f'<h3>Out-of-sample metrics</h3><div class="cards small">{cells}</div>'
                     f'<p class="muted small">In-sample mean CAGR of the winners '
                     f"{esc(fmt_metric('cagr', wf.is_mean_cagr))}; walk-forward efficiency "
                     "= out-of-sample CAGR / that.</p>")
        if wf.param_stability:
            parts.append("<h3>Parameter stability</h3>" + _stability(wf.param_stability))
    if r.overfit and not wf:
        parts.append("<h3>By window</h3>" + _by_window(d))
    parts.append("</section>")
    return "".join(parts)


def _stability(stab: dict[str, Any]) -> str:
    cols = ["distinct", "mode", "mode_share", "cv"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = "".join(
        f"<tr><th>{esc(p)}</th>"
        + "".join(f"<td>{esc(_plain(v.get(c)))}</td>" for c in cols) + "</tr>"
        for p, v in stab.items())
    return (f'<table class="stability"><thead><tr><th></th>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _plain(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return fmt_metric("", v)
    return str(v)


def _by_window(d: ReportData) -> str:
    r = d.record
    rows = []
    for v in r.overfit or ():
        dsr = "n/a" if v.dsr is None else f"{v.dsr:.2f} ({dsr_verdict(v.dsr, v.n_trials).word})"
        pbo = "n/a" if v.pbo is None else f"{v.pbo:.2f} ({pbo_verdict(v.pbo).word})"
        if v.pbo_note:
            pbo += f" — {v.pbo_note}"
        rows.append(f"<tr><td>{v.window}</td><td>{esc(r.window_label(v.window))}</td>"
                    f'<td class="num">{v.n_trials}</td><td>{esc(dsr)}</td><td>{esc(pbo)}</td>'
                    f"<td><code>{esc(str(v.best_run_id or '')[:12])}</code></td></tr>")
    return ('<table id="overfit-table" class="data"><thead><tr><th>window</th><th>dates</th>'
            "<th>trials</th><th>DSR</th><th>PBO</th><th>best run</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


# ------------------------------------------------------------------------ top runs
def top_runs(d: ReportData, top: int) -> str:
    objective = d.selection.objective
    best = d.top_runs(top)
    head = f'<section id="top-runs"><h2>Top {best.height} runs by {esc(objective)}</h2>'
    if best.height == 0:
        return head + f'<p class="muted">No run has a {esc(objective)} value.</p></section>'
    metrics = [m for m in dict.fromkeys((objective, *_TOP_METRICS)) if m in best.columns]
    cols = ("<th>#</th><th>window</th>"
            + "".join(f'<th class="param">{esc(p)}</th>' for p in d.params)
            + "".join(f"<th>{esc(m)}</th>" for m in metrics) + "<th>run_id</th>")
    rows = []
    for i, r in enumerate(best.iter_rows(named=True), 1):
        cells = [f"<td>{i}</td>", f"<td>{esc(r['window'])}</td>"]
        cells += [f'<td class="param">{esc(fmt_value(r[p]))}</td>' for p in d.params]
        for m in metrics:
            v = num(r[m])
            neg = v is not None and v < 0 and m not in LOWER_IS_BETTER
            cells.append(f'<td class="num{" neg" if neg else ""}">{fmt_metric(m, r[m])}</td>')
        cells.append(f"<td><code>{esc(str(r['run_id'])[:12])}</code></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    filters = (f" passing {esc(' and '.join(d.selection.filters))}"
               if d.selection.filters else "")
    return (head + f'<p class="muted">Out of {d.ok.height} successful runs (each window '
            f"counts separately){filters}. In-sample numbers: the best of many trials is "
            "optimistic; see the overfitting checks.</p>"
            '<div class="scroll"><table id="top-runs-table" class="data">'
            f"<thead><tr>{cols}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            "</section>")


# ------------------------------------------------------------------------ details
def details(d: ReportData) -> str:
    r = d.record
    parts = ['<section id="details"><h2>Details</h2>']
    metric = d.metric
    agg = d.ok.group_by("window").agg(pl.len().alias("n"), pl.col(metric).mean().alias("mean"),
                                      pl.col(metric).max().alias("max"),
                                      pl.col(metric).min().alias("min"))
    stats = {row[0]: row[1:] for row in agg.iter_rows()}
    best_col = "min" if metric in LOWER_IS_BETTER else "max"
    rows = []
    for w in r.windows:
        n, mean, hi, lo = stats.get(w.window, (0, None, None, None))
        rows.append(
            f"<tr><td>{w.window}</td><td>{fmt_date(w.start)}</td><td>{fmt_date(w.end)}</td>"
            f'<td class="num">{w.bars}</td><td class="num">{w.bars_per_year:.1f}</td>'
            f'<td class="num">{n}</td><td class="num">{fmt_metric(metric, mean)}</td>'
            f'<td class="num">{fmt_metric(metric, lo if best_col == "min" else hi)}</td></tr>')
    what = "Folds (train windows)" if r.walk_forward else "Windows"
    parts.append(f'<h3>{what}</h3><table id="windows-table" class="data"><thead><tr>'
                 "<th>window</th><th>start</th><th>end</th><th>bars</th><th>bars/year</th>"
                 f"<th>runs</th><th>mean {esc(metric)}</th><th>best {esc(metric)}</th></tr>"
                 f"</thead><tbody>{''.join(rows)}</tbody></table>")
    spec = r.spec
    if spec.get("grid"):
        parts.append("<h3>Grid</h3>" + _kv(
            [(k, f"<code>{esc(json.dumps(v, default=str))}</code>")
             for k, v in spec["grid"].items()]))
    extra = []
    for key in ("constraints", "engine", "windows", "walk_forward", "samples", "seed",
                "pbo_blocks", "modules"):
        if spec.get(key) not in (None, [], {}, ()):
            extra.append((key, json.dumps(spec[key], default=str)))
    if r.search is not None:
        extra.append(("search", json.dumps(dataclasses.asdict(r.search), default=str)))
    extra += [("digest", r.digest), ("data fingerprint", r.fingerprint),
              ("record schema", str(r.schema))]
    if r.versions:
        extra.append(("versions", ", ".join(f"{k} {v}" for k, v in r.versions.items())))
    parts.append("<h3>Settings</h3>" + _kv([(k, f"<code>{esc(v)}</code>") for k, v in extra]))
    parts.append("</section>")
    return "".join(parts)
