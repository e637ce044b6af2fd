"""``backsweep show`` and ``report``: reading a sweep's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sweep.cli.app import bad_input, main


@main.command()
@click.argument("results", type=click.Path(file_okay=False, path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows to show.")
@click.option("--by", "metric", default="sharpe", show_default=True,
              help="Metric to rank by (lower-is-better metrics rank ascending).")
def show(results: Path, top: int, metric: str) -> None:
    """Show a sweep's summary and its best runs by a metric."""
    import json

    import polars as pl

    from engine import METRIC_NAMES
    from engine.metrics import LOWER_IS_BETTER
    from sweep.analysis import param_columns
    from sweep.store import load_results

    meta_path = results / "sweep.json"
    if not meta_path.exists():
        bad_input(f"{results}: no sweep.json here (not a sweep's results folder)")
    meta = json.loads(meta_path.read_text())
    if metric not in METRIC_NAMES:
        bad_input(f"--by {metric!r} is not a metric; metrics: {', '.join(METRIC_NAMES)}")
    try:
        lf = load_results(results)
    except FileNotFoundError as exc:
        bad_input(str(exc))
    spec = meta.get("spec", {})
    click.echo(
        f"{meta.get('name')}: strategy {spec.get('strategy')}, data {spec.get('data')}, "
        f"{meta.get('runs_written', '?')} of {meta.get('n_runs', '?')} runs, "
        f"status {meta.get('status')}"
    )
    params = [c for c in param_columns(lf) if c != "window"]
    params = ["window", *params] if "window" in lf.collect_schema().names() else params
    shown = [*params, metric, *(m for m in ("total_return", "sharpe", "max_drawdown",
                                              "n_trades") if m != metric)]
    best = (lf.filter(pl.col("error").is_null())
            .sort(pl.col(metric).fill_nan(None), descending=metric not in LOWER_IS_BETTER,
                  nulls_last=True)
            .select(shown).head(top)
            # Counts are float metrics (NaN where undefined); shown as the integers they are.
            .with_columns(pl.col(c).fill_nan(None).cast(pl.Int64)
                          for c in COUNT_METRICS if c in shown)
            .collect())
    failed = lf.filter(pl.col("error").is_not_null()).select(pl.len()).collect().item()
    with pl.Config(tbl_rows=top, tbl_cols=-1, float_precision=4, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        click.echo(best)
    if failed:
        click.echo(f"{failed} run(s) failed; see their 'error' column")
    if meta.get("summary"):
        click.echo(overfit_line(meta["summary"]))


COUNT_METRICS = ("n_trades", "n_bars", "max_drawdown_duration")


def overfit_line(summary: dict[str, Any]) -> str:
    """sweep.json's overfitting summary, a line a window: the deflated Sharpe ratio of the
    window's best run and the probability of backtest overfitting of its trials."""
    def num(v: Any) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    objective = summary.get("objective", "sharpe")
    lines = [f"overfitting, best run of each window by {objective} (DSR: probability its "
             "Sharpe ratio beats what the best of the trials would show by luck; PBO: "
             "probability of backtest overfitting):"]
    lines += [f"  window {w['window']}: DSR {num(w.get('dsr'))}, PBO {num(w.get('pbo'))}"
              f" over {w.get('n_trials', '?')} trials" + (f" ({w['pbo_note']})"
                                                          if w.get("pbo_note") else "")
              for w in summary.get("by_window", [])]
    return "\n".join(lines)


@main.command("report")
@click.argument("results", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.html", help="HTML file to write [default: RESULTS/report.html].")
@click.option("--metric", default="sharpe", show_default=True,
              help="Metric shown by the parameter heatmaps.")
def report_cmd(results: Path, output: Path | None, metric: str) -> None:
    """Write a self-contained HTML report of a sweep's results (opens offline).

    Parameter heatmaps per window, metric histograms, the top runs, and the walk-forward
    charts and overfitting verdicts (DSR, PBO, WFE) when the sweep has them.
    Exit code 2 (nothing written) when RESULTS is not a sweep's results folder.
    """
    from sweep.report import ReportError, write_report

    try:
        path = write_report(results, output, metric=metric)
    except ReportError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    click.echo(f"wrote {path}")


