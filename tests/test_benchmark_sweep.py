"""Benchmark and risk-free rate through a sweep: ``[engine] benchmark = "ASSET"`` or a
price file, ``risk_free`` as an annual rate or a file of rates (read relative to the
config), on a real LocalCluster whose workers get the series with the data (not from the
files): the stored metrics equal ``run_backtest``'s with the same series, and a replayed
run's bit for bit; Sharpe becomes an excess-return ratio."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from cluster_fixtures import read_runs, run_cli, write_toml

import strategies
import sweep
from engine import METRIC_NAMES, EngineConfig, run_backtest
from engine.data import sample_stocks
from sweep import SpecError, SweepSpec

BENCH = ("alpha", "beta", "information_ratio", "tracking_error", "excess_return")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Sample stocks without IBM as the data, IBM's closes as a benchmark price file, and
    a monthly file of annual T-bill-like rates in percent (FRED's layout)."""
    tmp = tmp_path_factory.mktemp("bench")
    p = sample_stocks()
    frame = p.to_frame()
    frame.filter(pl.col("asset") != "IBM").write_parquet(tmp / "stocks.parquet")
    frame.filter(pl.col("asset") == "IBM").select(
        pl.col("timestamp").dt.date().alias("DATE"), pl.col("close").alias("IBM")
    ).write_csv(tmp / "ibm.csv")
    months = pl.date_range(pl.date(1999, 12, 1), pl.date(2013, 12, 1), "1mo", eager=True)
    rates = 1.0 + 4.0 * np.abs(np.sin(np.arange(months.len()) / 20.0))
    pl.DataFrame({"DATE": months, "DGS3MO": rates}).write_csv(tmp / "rates.csv")
    return {"root": tmp}


def spec_text(engine: str) -> str:
    return f"""
name = "bench"
strategy = "ma_cross"
data = "stocks.parquet"
[engine]
commission = 0.001
{engine}
[grid]
fast = [10, 20]
slow = [100, 150]
"""


def test_a_benchmark_asset_and_a_constant_rate(client: Any, tmp_path: Path) -> None:
    spec = SweepSpec(name="asset", strategy="ma_cross", data="sample:stocks",
                     grid={"fast": [10, 20], "slow": [100]},
                     engine={"benchmark": "IBM", "risk_free": 0.02})
    assert sweep.run_sweep(spec, client, tmp_path, progress=False).ok
    runs = read_runs(tmp_path / "asset").sort("fast")
    panel = sample_stocks()
    cfg = EngineConfig(benchmark="IBM", risk_free=0.02)
    for row in runs.iter_rows(named=True):
        w = strategies.get("ma_cross").weights(panel, fast=row["fast"], slow=100)
        ref = run_backtest(panel, w, cfg).metrics
        assert all(row[m] == ref[m] or (math.isnan(row[m]) and math.isnan(ref[m]))
                   for m in METRIC_NAMES)
        assert all(math.isfinite(row[m]) for m in BENCH)
    plain = run_backtest(panel, strategies.get("ma_cross").weights(panel, fast=10, slow=100),
                         EngineConfig()).metrics
    assert runs["sharpe"][0] < plain["sharpe"]  # excess over 2 % a year


def test_series_files_reach_the_workers_with_the_data(client: Any, files: dict[str, Path],
                                                      tmp_path: Path) -> None:
    root = files["root"]
    config = write_toml(root / "bench.toml", spec_text(
        'benchmark = "ibm.csv"\nrisk_free = {file = "rates.csv", scale = 0.01}'))
    spec = SweepSpec.from_toml(config)
    resolved = spec.resolve()
    assert set(resolved.series) == {"benchmark_prices", "risk_free"}
    assert resolved.fingerprint != resolved.panel.fingerprint
    out = tmp_path / "out"
    assert sweep.run_sweep(spec, client, out, progress=False).ok
    runs = read_runs(out / "bench")
    assert runs.height == 4 and all(runs[m].is_finite().all() for m in BENCH)
    # the same runs in this process, with the same series: the same bits
    panel = resolved.panel
    for row in runs.iter_rows(named=True):
        w = strategies.get("ma_cross").weights(panel, fast=row["fast"], slow=row["slow"])
        ref = run_backtest(panel, w, resolved.config, **resolved.market_inputs).metrics
        assert [row[m] for m in METRIC_NAMES] == pytest.approx(
            [ref[m] for m in METRIC_NAMES], rel=0, abs=0, nan_ok=True)
    # a replay reads the files again and gives the stored metrics bit for bit
    replayed = sweep.replay(out / "bench", runs["run_id"].to_list())
    for row, res in zip(runs.iter_rows(named=True), replayed, strict=True):
        assert [row[m] for m in BENCH] == [res.metrics[m] for m in BENCH]
    # another rate file is other data: the stored runs are not this sweep's
    (root / "rates.csv").write_text((root / "rates.csv").read_text().replace(",1.", ",2."))
    proc = run_cli("run", config, "--out", out, "--workers", "1")
    assert proc.returncode == 2 and "different sweep" in proc.stderr


def test_bad_series_are_refused_before_any_work(files: dict[str, Path]) -> None:
    root = files["root"]
    for engine, message in [
        ('benchmark = "SPY"', "SPY"),
        ('benchmark = "missing.csv"', "missing.csv"),
        ('risk_free = "rates.csv"', "percent|above|> 1|100"),
        ('risk_free = {file = "rates.csv", scal = 0.01}', r"\{file, column, scale\}"),
    ]:
        spec = SweepSpec.from_toml(write_toml(root / "bad.toml", spec_text(engine)))
        with pytest.raises(SpecError, match=message):
            spec.resolve()
