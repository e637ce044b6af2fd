"""From the store back to runs: ``sweep.replay`` rebuilds stored runs whose metrics equal
the stored ones bit for bit; ``backsweep export`` writes their equity curves and trades
(a curve ends at its stored final_equity, its trades number its stored n_trades), many
runs replayed on the cluster; the report shows the top runs' curves.

Real LocalCluster, a sweep with two windows and an engine axis, a user strategy module
(imported in a fresh process from the record), real Parquet data files.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from cluster_fixtures import REPO, read_runs, run_cli, write_toml

import sweep
from engine import METRIC_NAMES
from engine.data import synthetic_panel
from sweep import SweepSpec
from sweep.playback import LOCAL_RUNS, ReplayError, select_runs
from sweep.schema import scan_runs
from sweep.select import Selection, select_best

SPEC = SweepSpec(name="two", strategy="ma_cross", data="synthetic:assets=6,bars=700,seed=9",
                 grid={"fast": [3, 5, 8, 13], "slow": [20, 40], "commission": [0.0, 0.002]},
                 engine={"stop_loss": 0.08},
                 windows={"ranges": [["2010-01-01", "2010-12-31"], ["2011-01-01", None]]})
USER = f"""
name = "user"
strategy = "rsi_reversal"
modules = ["{REPO / 'examples' / 'user_strategy.py'}"]
data = "synthetic:assets=8,bars=500,seed=5"
constraints = ["lower < upper"]
[grid]
period = [7, 14]
lower = [25, 35]
upper = [60, 70]
[windows]
ranges = [["2010-01-01", "2010-09-30"], ["2010-10-01", ""]]
"""


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.fixture(scope="module")
def two(client: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("two")
    assert sweep.run_sweep(SPEC, client, out, progress=False).ok
    return out / SPEC.name


def test_replay_gives_the_stored_metrics_bit_for_bit(two: Path) -> None:
    runs = read_runs(two)
    assert runs.height == 32 and set(runs["window"]) == {0, 1}
    results = sweep.replay(two, runs["run_id"].to_list())
    for row, res in zip(runs.iter_rows(named=True), results, strict=True):
        bad = [m for m in METRIC_NAMES if not same(row[m], res.metrics[m])]
        assert not bad, (row["run_id"], [(m, row[m], res.metrics[m]) for m in bad])
        assert res.equity[-1] == row["final_equity"]
        assert res.trades.height == row["n_trades"]
        assert str(res.timestamps[0]) == str(np.datetime64(row["window_start"], "ns"))
        assert res.config.commission == row["commission"] and res.config.stop_loss == 0.08


def test_replay_refuses_unknown_ids_and_changed_data(two: Path, tmp_path: Path,
                                                      client: Any) -> None:
    with pytest.raises(ReplayError, match="no run with id nope"):
        sweep.replay(two, ["nope"])
    data = tmp_path / "panel.parquet"
    synthetic_panel(n_assets=3, n_bars=300, seed=2).write_parquet(data)
    spec = SweepSpec(name="file", strategy="ma_cross", data=str(data),
                     grid={"fast": [3, 5], "slow": [20]})
    assert sweep.run_sweep(spec, client, tmp_path, progress=False).ok
    rid = read_runs(tmp_path / "file")["run_id"][0]
    assert len(sweep.replay(tmp_path / "file", [rid])) == 1
    synthetic_panel(n_assets=3, n_bars=300, seed=3).write_parquet(data)  # other prices
    with pytest.raises(ReplayError, match="differs from the data the sweep ran on"):
        sweep.replay(tmp_path / "file", [rid])


def test_export_top_k_of_each_window(two: Path, tmp_path: Path) -> None:
    out = tmp_path / "winners"
    proc = run_cli("export", two, "--top", "3", "--by", "sharpe", "-o", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = read_runs(two)
    equity = pl.read_parquet(out / "equity.parquet")
    trades = pl.read_parquet(out / "trades.parquet")
    assert equity.columns == ["run_id", "window", "timestamp", "equity", "cash",
                              "gross_exposure"]
    assert trades.columns[:3] == ["run_id", "window", "asset"]
    assert {"entry_time", "exit_time", "pnl", "fees", "exit_reason"} <= set(trades.columns)
    chosen = equity["run_id"].unique(maintain_order=True).to_list()
    assert len(chosen) == 6
    for w in (0, 1):
        best = runs.filter(pl.col("window") == w).sort(["sharpe", "combo"],
                                                       descending=[True, False]).head(3)
        assert set(best["run_id"]) == set(equity.filter(pl.col("window") == w)["run_id"])
    for row in runs.filter(pl.col("run_id").is_in(chosen)).iter_rows(named=True):
        curve = equity.filter(pl.col("run_id") == row["run_id"])
        assert curve["equity"][-1] == row["final_equity"]
        assert curve.height == row["n_bars"]
        assert trades.filter(pl.col("run_id") == row["run_id"]).height == row["n_trades"]
    # lower-is-better metrics ascend; --window picks one window
    out2 = tmp_path / "calm"
    assert run_cli("export", two, "--top", "2", "--by", "max_drawdown", "--window", "1",
                   "-o", out2).returncode == 0
    ids = pl.read_parquet(out2 / "equity.parquet")["run_id"].unique().to_list()
    expect = runs.filter(pl.col("window") == 1).sort("max_drawdown").head(2)["run_id"]
    assert set(ids) == set(expect)


def test_export_refuses_without_writing(two: Path, tmp_path: Path) -> None:
    out = tmp_path / "x"
    assert run_cli("export", two, "--run-id", read_runs(two)["run_id"][0], "-o",
                   out).returncode == 0
    before = (out / "equity.parquet").read_bytes()
    for args, message in [
        ((), "exists; pass --overwrite"),
        (("--window", "1"), "--top"),
        (("--top", "2", "--by", "sharpness"), "not a metric"),
        (("--top", "2", "--window", "7"), "window 7"),
    ]:
        ids = () if "--top" in args else ("--run-id", read_runs(two)["run_id"][0])
        proc = run_cli("export", two, *ids, *args, "-o", out)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert (out / "equity.parquet").read_bytes() == before
    file = tmp_path / "a_file"
    file.write_text("x")
    proc = run_cli("export", two, "--top", "1", "-o", file)
    assert proc.returncode == 2 and file.read_text() == "x"
    proc = run_cli("export", two, "--run-id", "nope", "-o", tmp_path / "y")
    assert proc.returncode == 2 and "no run with id nope" in proc.stderr
    assert not (tmp_path / "y").exists()


def test_many_runs_are_replayed_on_the_cluster(two: Path, tmp_path: Path,
                                              client: Any) -> None:
    ids = read_runs(two)["run_id"].to_list()
    assert len(ids) > LOCAL_RUNS
    paths = sweep.export(two, ids, tmp_path / "all", client=client)
    here = sweep.replay(two, ids)
    equity = pl.read_parquet(paths[0])
    for rid, res in zip(ids, here, strict=True):
        np.testing.assert_array_equal(equity.filter(pl.col("run_id") == rid)["equity"],
                                      res.equity)
    assert pl.read_parquet(paths[1]).height == sum(r.trades.height for r in here)


def test_a_user_strategy_is_replayed_in_a_fresh_process(client: Any, tmp_path: Path) -> None:
    config = write_toml(tmp_path / "user.toml", USER)
    spec = SweepSpec.from_toml(config)
    assert sweep.run_sweep(spec, client, tmp_path / "out", progress=False).ok
    root = tmp_path / "out" / "user"
    shutil.copy(config, tmp_path / "kept.toml")
    proc = run_cli("export", root, "--top", "2", "-o", tmp_path / "exp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = read_runs(root)
    equity = pl.read_parquet(tmp_path / "exp" / "equity.parquet")
    for rid in equity["run_id"].unique():
        row = runs.filter(pl.col("run_id") == rid).row(0, named=True)
        assert equity.filter(pl.col("run_id") == rid)["equity"][-1] == row["final_equity"]
    ids = select_runs(root, top=1, by="sharpe")
    assert len(ids) == 2  # one a window


def test_report_shows_the_top_runs_equity(two: Path, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    proc = run_cli("report", two, "-o", page, "--curves", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = page.read_text()
    assert 'id="top-equity"' in text and 'id="top-equity-chart"' in text
    best = select_best(scan_runs(two), Selection("sharpe"), k=3)
    assert all(rid[:12] in text for rid in best["run_id"])
    assert 'id="curve-2"' in text and 'id="curve-3"' not in text  # three curves
    proc = run_cli("report", two, "-o", tmp_path / "none.html", "--curves", "0")
    assert proc.returncode == 0 and 'id="top-equity"' not in (tmp_path / "none.html").read_text()
