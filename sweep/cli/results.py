"""``backsweep show`` and ``report``: reading a sweep's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sweep.cli.app import LOCATION, bad_input, main

_SHOWN_METRICS = ("total_return", "sharpe", "max_drawdown", "n_trades")
_DSR_WORDS = {"good": "strong", "warn": "weak", "bad": "not significant"}
_PBO_WORDS = {"good": "low", "warn": "moderate", "bad": "high"}


def open_results(results: Path) -> tuple[Any, Any]:
    """(record, runs LazyFrame) of a results folder, or exit 2 with a message saying
    what is wrong (not a sweep's folder, an old layout, a damaged file)."""
    from sweep.record import RecordError, SweepRecord
    from sweep.schema import DamagedFileError, scan_runs
    from sweep.store import RECORD_NAME

    path = results / RECORD_NAME
    if not path.is_file():
        bad_input(f"{results}: no {RECORD_NAME} here (not a sweep's results folder)")
    try:
        record = SweepRecord.read(path)
        runs = scan_runs(results)
    except (RecordError, DamagedFileError, FileNotFoundError) as exc:
        bad_input(str(exc))
    return record, runs


@main.command()
@click.argument("results", type=LOCATION)
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows to show.")
@click.option("--by", "metric", default="sharpe", show_default=True,
              help="Metric to rank by (lower-is-better metrics rank ascending).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]),
              default="table", show_default=True,
              help="table: for reading; json (one object a run) or csv: for scripts, the "
                   "rows only.")
def show(results: Path, top: int, metric: str, fmt: str) -> None:
    """Show a sweep's summary and its best runs by a metric."""
    import polars as pl

    from engine import METRIC_NAMES
    from engine.metrics import INTEGER_METRICS
    from sweep.grid import OPTIONAL_ENGINE_FIELDS
    from sweep.schema import param_columns
    from sweep.select import Selection, select_best

    if metric not in METRIC_NAMES:
        bad_input(f"--by {metric!r} is not a metric; metrics: {', '.join(METRIC_NAMES)}")
    record, runs = open_results(results)
    names = runs.collect_schema().names()
    several = len(record.windows) > 1
    dates = [pl.col("window_start").dt.date().alias("start"),
             pl.col("window_end").dt.date().alias("end")] if several else []
    shown = [*param_columns(names), metric, *(m for m in _SHOWN_METRICS if m != metric)]
    best = (select_best(runs, Selection(metric), k=top)
            .select("window", *dates, *shown)
            # Counts are float metrics (NaN where undefined); shown as the integers they are.
            .with_columns(pl.col(c).fill_nan(None).cast(pl.Int64)
                          for c in INTEGER_METRICS if c in shown))
    if fmt == "json":
        click.echo(best.write_json())
        return
    # "none": an optional engine field left unset (no stop), stored as null.
    nones = [pl.col(c).cast(pl.String).fill_null("none")
             for c in best.columns if c in OPTIONAL_ENGINE_FIELDS]
    best = best.with_columns(nones)
    if fmt == "csv":
        click.echo(best.write_csv(), nl=False)
        return
    spec = record.spec
    click.echo(f"{record.name}: strategy {spec.get('strategy')}, data "
               f"{_data_label(record.data.source)}, {record.runs_written} of "
               f"{record.n_runs} runs, status {record.status}")
    if not several:
        click.echo(f"window 0: {record.window_label(0)}")
    with pl.Config(tbl_rows=top, tbl_cols=-1, float_precision=4, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True, tbl_width_chars=160):
        click.echo(best)
    failed = runs.filter(pl.col("error").is_not_null()).select(pl.len()).collect().item()
    if failed:
        click.echo(f"{failed} run(s) failed; see their 'error' column")
    if record.search is not None:  # an adaptive search: what it ran, how it converged
        from sweep.search import convergence_lines

        click.echo("\n".join(convergence_lines(record.search, runs)))
    if record.overfit:
        click.echo(overfit_lines(record))


def _data_label(source: Any) -> str:
    """A spec's data as written: the string, or a [data] table's source and options."""
    if not isinstance(source, dict):
        return str(source)
    options = ", ".join(f"{k}={v}" for k, v in source.items() if k != "source")
    return f"{source.get('source')}" + (f" ({options})" if options else "")


def overfit_lines(record: Any) -> str:
    """The record's overfitting summary, a line a window: the deflated Sharpe ratio of the
    window's best run and the probability of backtest overfitting of its trials, with the
    report's verdict words."""
    from sweep.report import dsr_verdict, pbo_verdict

    def dsr(v: float | None, n: int) -> str:
        return "DSR n/a" if v is None else f"DSR {v:.2f} ({_DSR_WORDS[dsr_verdict(v, n)[0]]})"

    def pbo(v: float | None) -> str:
        return "PBO n/a" if v is None else f"PBO {v:.2f} ({_PBO_WORDS[pbo_verdict(v)[0]]})"

    lines = [f"overfitting, best run of each window by {record.objective} (DSR: probability "
             "its Sharpe ratio beats what the best of the trials would show by luck; PBO: "
             "probability of backtest overfitting):"]
    for v in record.overfit:
        note = f" ({v.pbo_note})" if v.pbo_note else ""
        lines.append(f"  window {v.window} ({record.window_label(v.window)}): "
                     f"{dsr(v.dsr, v.n_trials)}, {pbo(v.pbo)} over {v.n_trials} trials{note}")
    return "\n".join(lines)


# ------------------------------------------------------------------------- report
@main.command("report")
@click.argument("results", type=LOCATION)
@click.option("-o", "--output", type=LOCATION, default=None,
              metavar="FILE.html", help="HTML file to write [default: RESULTS/report.html].")
@click.option("--metric", default="sharpe", show_default=True,
              help="Metric shown by the parameter heatmaps.")
@click.option("--curves", type=click.IntRange(min=0), default=5, show_default=True,
              help="Equity curves of this many top runs, rebuilt from the data (0: none).")
@click.option("--overwrite", is_flag=True, help="Replace FILE.html if it exists.")
def report_cmd(results: Path, output: Path | None, metric: str, curves: int,
               overwrite: bool) -> None:
    """Write a self-contained HTML report of a sweep's results (opens offline).

    Parameter heatmaps per window, metric histograms, the top runs and their equity
    curves, and the walk-forward charts and overfitting verdicts (DSR, PBO, WFE) when the
    sweep has them. An existing FILE.html is replaced only with --overwrite (never a
    folder). Exit code 2 (nothing written) when RESULTS is not a sweep's results folder.
    """
    from sweep.report import ReportError, write_report

    path = output if output is not None else results / "report.html"
    if path.is_dir():
        bad_input(f"{path} is a folder; give a file name such as report.html")
    if path.exists() and not overwrite:
        bad_input(f"{path} exists; pass --overwrite to replace it, or choose another -o")
    try:
        path = write_report(results, path, metric=metric,
                            curves=top_curves(results, metric, curves) if curves else None)
    except ReportError as exc:
        bad_input(str(exc))
    click.echo(f"wrote {path}")


def top_curves(results: Path, metric: str, k: int) -> list[Any] | None:
    """The equity curves of the report's top ``k`` runs, replayed from the data; None (and
    a warning) when they cannot be rebuilt, e.g. the data moved since the sweep."""
    from sweep.playback import ReplayError, replay
    from sweep.report import Curve, ReportError, load

    try:
        data = load(results, metric)
        best = data.top_runs(k)
        rebuilt = replay(results, best["run_id"].to_list())
    except (ReportError, ReplayError) as exc:
        click.echo(f"warning: the top runs' equity curves are left out: {exc}", err=True)
        return None
    return [Curve.of(row["run_id"], data.label(row), res)
            for row, res in zip(best.iter_rows(named=True), rebuilt, strict=True)]
