"""A sweep's results as ONE self-contained HTML page (``backsweep report``), and the charts
it is drawn with, which also render inline in Jupyter.

The page opens offline: inline CSS, inline SVG charts, no JavaScript, no CDN, no web fonts.
Sections, each present only when its data is:

* header: name, status, strategy, data, run counts, timing, plan; notes when runs or
  chunks failed or the sweep is not complete;
* overfitting checks: DSR, PBO (and WFE for a walk-forward) in words, from the record
  (:mod:`sweep.report.verdicts`, shared with ``backsweep show``), the out-of-sample
  metrics and parameter stability of a walk-forward, each window's DSR and PBO otherwise;
* walk-forward: the stitched out-of-sample equity against the in-sample promise with fold
  bands, its drawdown, in-sample vs out-of-sample Sharpe per fold, the folds table;
* the top runs' equity: curves given by the caller (``curves=``, e.g. replayed runs);
* parameter heatmaps: the mean of a metric over the two most important parameters, all
  windows pooled and one small multiple per window;
* distributions: histograms of sharpe, total_return and max_drawdown across runs;
* the top runs by the sweep's objective (``sweep.select.select_best``) and the details.

Modules: :mod:`~sweep.report.load` (reading a results folder), :mod:`~sweep.report.verdicts`,
:mod:`~sweep.report.format`, :mod:`~sweep.report.charts` (scales and each chart kind),
:mod:`~sweep.report.sections` and :mod:`~sweep.report.figures` (the page's sections),
:mod:`~sweep.report.page` (the page, its CSS, rendering and writing).

Example:
    >>> from sweep.report import write_report
    >>> write_report("results/ma_demo", "ma_demo.html")        # doctest: +SKIP
    PosixPath('ma_demo.html')
"""

from sweep.report import charts
from sweep.report.load import Curve, ReportData, ReportError, load
from sweep.report.page import TOP_N, render_page, render_report, write_report
from sweep.report.verdicts import (
    DSR_STRONG,
    DSR_WEAK,
    PBO_HIGH,
    PBO_LOW,
    WFE_GOOD,
    WFE_WEAK,
    Check,
    Verdict,
    dsr_verdict,
    overfitting_checks,
    pbo_verdict,
    wfe_verdict,
)

__all__ = [
    "DSR_STRONG",
    "DSR_WEAK",
    "PBO_HIGH",
    "PBO_LOW",
    "TOP_N",
    "WFE_GOOD",
    "WFE_WEAK",
    "Check",
    "Curve",
    "ReportData",
    "ReportError",
    "Verdict",
    "charts",
    "dsr_verdict",
    "load",
    "overfitting_checks",
    "pbo_verdict",
    "render_page",
    "render_report",
    "wfe_verdict",
    "write_report",
]
