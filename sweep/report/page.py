"""The page: the sections in order, a table of contents, the stylesheet; rendering to a
string and writing it atomically.

One offline file: the CSS is inline and every chart an inline SVG (no JavaScript, no CDN,
no web fonts); hovering a heatmap cell, a histogram bar or a fold band shows its numbers
(SVG ``<title>`` tooltips).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sweep.location import atomic_write, location
from sweep.report import figures, sections
from sweep.report.format import esc
from sweep.report.load import Curve, ReportData, ReportError, load

__all__ = ["TOP_N", "render_report", "write_report"]

TOP_N = 20
_TOC = (("verdicts", "Overfitting checks"), ("walk-forward", "Walk-forward"),
        ("top-equity", "Top runs' equity"), ("convergence", "Search convergence"),
        ("heatmaps", "Parameter heatmaps"),
        ("distributions", "Distributions"), ("top-runs", "Top runs"), ("details", "Details"))


def _curves(curves: Iterable[Any] | None) -> list[Curve]:
    return [c if isinstance(c, Curve) else Curve(*c) for c in curves or ()]


def render_report(results_dir: str | os.PathLike[str], *, metric: str = "sharpe",
                  top: int = TOP_N, curves: Sequence[Any] | None = None) -> str:
    """The HTML report of the sweep in ``results_dir`` (``OUT/NAME``) as a string.

    ``metric``: the one the parameter heatmaps show. ``curves``: equity curves to draw in
    the "top runs' equity" section, each a :class:`~sweep.report.load.Curve` or a tuple
    ``(run_id, label, timestamps, equity)``; the section is left out without them.
    Raises ReportError when the folder is not a readable sweep's results folder or
    ``metric`` is not a metric.
    """
    return render_page(load(results_dir, metric), top=top, curves=_curves(curves))


def render_page(d: ReportData, *, top: int = TOP_N, curves: Sequence[Curve] = ()) -> str:
    """The page of already loaded data."""
    parts = [sections.header(d), sections.verdicts(d), figures.walk_forward(d),
             figures.top_equity(d, curves), figures.convergence(d), figures.heatmaps(d),
             figures.distributions(d),
             sections.top_runs(d, top), sections.details(d)]
    parts = [p for p in parts if p]
    nav = " ".join(f'<a href="#{anchor}">{label}</a>' for anchor, label in _TOC
                   if any(f'id="{anchor}"' in p for p in parts))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(d.record.name)} · backsweep report</title>\n<style>{CSS}</style>\n"
        f'</head>\n<body>\n<nav class="toc">{nav}</nav>\n<main>\n'
        + "\n".join(parts)
        + f'\n</main>\n<footer>backsweep report of <code>{esc(d.root)}</code></footer>\n'
        "</body>\n</html>\n"
    )


def write_report(results_dir: str | os.PathLike[str],
                 output: str | os.PathLike[str] | None = None, *, metric: str = "sharpe",
                 top: int = TOP_N, curves: Sequence[Any] | None = None) -> Path:
    """Render the report and write it atomically to ``output`` (default
    ``results_dir/report.html``); returns the path. Nothing is written when the folder is
    not a sweep's results or ``output`` is a folder (ReportError).

    Example:
        >>> from sweep.report import write_report
        >>> write_report("results/ma_demo", "ma_demo.html")        # doctest: +SKIP
        PosixPath('ma_demo.html')
    """
    path = location(output) if output is not None else location(results_dir) / "report.html"
    if path.is_dir():
        raise ReportError(f"{path}: is a folder; give a file name such as report.html")
    text = render_report(results_dir, metric=metric, top=top, curves=curves)

    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)  # a page to share, not a private temp file

    try:
        return atomic_write(path, write)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc}") from None


CSS = """
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#d9dee5;--bg:#fff;--panel:#f6f8fa;
--good:#1b7837;--warn:#a86400;--bad:#b2182b;--link:#1f5fbf}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:8px 24px 24px}
nav.toc{position:sticky;top:0;z-index:2;background:#fffffff0;border-bottom:1px solid var(--line);
padding:8px 24px;font-size:13px}
nav.toc a{color:var(--link);text-decoration:none;margin-right:16px}
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
figcaption{color:var(--muted);font-size:12px;margin-top:2px}
.multiples{display:flex;flex-wrap:wrap;gap:18px 26px;align-items:flex-start}
.multiples figure.chart{margin:0!important}
svg .cellv{pointer-events:none}
.heatmap-cell:hover,.hist-bar:hover,.bar:hover{stroke:#000;stroke-width:1.2}
.fold-band:hover{fill:var(--link);fill-opacity:.08}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
table{border-collapse:collapse;margin:6px 0 12px}
table.data th,table.data td{padding:4px 8px;border-bottom:1px solid var(--line);
white-space:nowrap}
table.data thead th{background:var(--panel);text-align:left;font-weight:600;
border-bottom:2px solid var(--line);position:sticky;top:0}
table.data tbody tr:nth-child(even){background:#fafbfc}
table.data tbody tr:hover{background:#eef4fb}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.neg{color:var(--bad)}
th.param,td.param{background:#f3f6fb}
table.kv th,table.stability th{text-align:left;padding:3px 12px 3px 0;font-weight:600;
vertical-align:top}
table.kv td,table.stability td{padding:3px 12px 3px 0}
table.stability thead th{color:var(--muted);font-weight:500}
.scroll{overflow-x:auto}
footer{max-width:1180px;margin:0 auto;padding:16px 24px 30px;color:var(--muted);font-size:12px;
border-top:1px solid var(--line)}
@media print{nav.toc{display:none}}
"""
