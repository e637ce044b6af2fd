"""The CLI and TOML gaps a new user hits: "none" for an optional engine field (no stop) in
``[engine]`` and on grid axes, window dates in ``show``, scriptable output (``show
--format json|csv``, ``-q``/``-v``), ``run --dry-run``, and one documented chunk target.
Everything through the ``backsweep`` command in subprocesses, on real Parquet files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from cluster_fixtures import read_runs, run_cli, write_toml

import sweep.plan
from sweep import SweepSpec

DATA = "synthetic:assets=6,bars=600,seed=5"
STOPS = f"""
name = "stops"
strategy = "ma_cross"
data = "{DATA}"
[engine]
trailing_stop = "None"
[grid]
fast = [5, 10]
slow = [40]
atr_stop = ["none", 2.0]
[windows]
ranges = [["2010-01-01", "2010-12-31"], ["2011-01-01", "2012-12-31"]]
"""
PLAIN = f"""
name = "plain"
strategy = "ma_cross"
data = "{DATA}"
[grid]
fast = [5, 10]
slow = [40]
[windows]
ranges = [["2010-01-01", "2010-12-31"], ["2011-01-01", "2012-12-31"]]
"""


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    out = tmp / "out"
    for name, text in (("stops", STOPS), ("plain", PLAIN)):
        proc = run_cli("run", write_toml(tmp / f"{name}.toml", text), "--out", out,
                       "--workers", "1", "--no-progress", timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"stops": out / "stops", "plain": out / "plain", "tmp": tmp}


def test_none_on_a_grid_axis_is_the_field_unset(stores: dict[str, Path]) -> None:
    """"none" runs are stored with a null atr_stop and are the very runs of a sweep that
    leaves the field unset: the same run ids and bit-identical metrics."""
    stops, plain = read_runs(stores["stops"]), read_runs(stores["plain"])
    assert stops.schema["atr_stop"] == pl.Float64
    none = stops.filter(pl.col("atr_stop").is_null())
    assert none.height == plain.height == 4
    assert stops.filter(pl.col("atr_stop") == 2.0).height == 4
    keep = [c for c in plain.columns if c not in ("chunk_id", "combo")]
    left = none.select(keep).sort("run_id")
    right = plain.select(keep).sort("run_id")
    assert left["run_id"].to_list() == right["run_id"].to_list()
    assert left.equals(right)
    # the stop does something, so the two halves really differ
    stopped = stops.filter(pl.col("atr_stop") == 2.0).sort(["window", "fast"])
    assert not stopped["final_equity"].equals(none.sort(["window", "fast"])["final_equity"])


def test_none_in_the_engine_table_and_its_errors(tmp_path: Path) -> None:
    spec = SweepSpec.from_toml(write_toml(tmp_path / "s.toml", STOPS))
    assert spec.resolve().config.trailing_stop is None
    bad = STOPS.replace('atr_stop = ["none", 2.0]', 'atr_window = ["none", 14]')
    proc = run_cli("run", write_toml(tmp_path / "bad.toml", bad), "--out", tmp_path)
    assert proc.returncode == 2 and "atr_window" in proc.stderr
    assert not (tmp_path / "stops").exists()


def test_show_says_none_and_dates_and_scripts_read_json_and_csv(
        stores: dict[str, Path]) -> None:
    root = stores["stops"]
    text = run_cli("show", root, "--top", "8").stdout
    assert "none" in text
    # several windows: each row's dates, and the dates on the DSR/PBO lines
    assert "2010-01-04" in text and "2012-04-20" in text
    assert re.search(r"window 1 \(2011-01-03 .. 2012-04-20\): DSR", text), text
    rows = json.loads(run_cli("show", root, "--format", "json", "--top", "8").stdout)
    assert len(rows) == 8 and {r["atr_stop"] for r in rows} == {None, 2.0}
    assert {"window", "start", "end", "fast", "sharpe"} <= set(rows[0])
    assert rows == sorted(rows, key=lambda r: -r["sharpe"])
    csv = run_cli("show", root, "--format", "csv", "--top", "8").stdout.splitlines()
    assert csv[0].split(",")[:5] == ["window", "start", "end", "fast", "slow"]
    assert len(csv) == 9 and any(",none," in line for line in csv)


def test_quiet_and_verbose(stores: dict[str, Path]) -> None:
    config = write_toml(stores["tmp"] / "stops.toml", STOPS)
    out = stores["stops"].parent
    quiet = run_cli("run", config, "--out", out, "-q")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    loud = run_cli("run", config, "--out", out, "-v", "--workers", "1")
    assert loud.returncode == 0 and "already on disk" in loud.stdout


def test_dry_run_validates_estimates_and_writes_nothing(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "stops.toml", STOPS)
    out = tmp_path / "out"
    proc = run_cli("run", config, "--out", out, "--dry-run", "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert "runs: 8 (4 parameter sets x 2 windows)" in text
    assert "window 0: 2010-01-04 .. 2010-12-31" in text
    assert re.search(r"chunks: [\d,]+ of up to [\d,]+ parameter sets", text), text
    assert re.search(r"estimated compute: [\d.]+ s on one worker thread, about [\d.]+ s on 2",
                     text)
    assert "no cluster started, nothing written" in text
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stops.toml"]
    # bad input is still refused with exit 2
    bad = write_toml(tmp_path / "bad.toml", STOPS.replace("fast = [5, 10]", "fast = [0]"))
    proc = run_cli("run", bad, "--out", out, "--dry-run")
    assert proc.returncode == 2 and "fast" in proc.stderr and not out.exists()


def test_one_chunk_target_everywhere() -> None:
    """The --chunk-size help, sweep.plan's docstring and README say the calibration's
    target, TARGET_SECONDS, not another number."""
    target = f"{sweep.plan.TARGET_SECONDS:g} s"
    help_text = " ".join(run_cli("run", "--help").stdout.split())
    assert f"calibrated to about {target} of work" in help_text
    assert "about half a second of work" in sweep.plan.__doc__
    assert sweep.plan.TARGET_SECONDS == 0.5
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "about half a second of work" in readme
    assert "~1 s" not in help_text and "~1 s" not in sweep.plan.__doc__
