"""Sweep specs: every TOML key form resolves to the grid, engine config and windows it says,
and every bad input is refused before any cluster work: ``SpecError`` naming the problem
in-process, and ``backsweep run`` exiting 2 with one line on stderr, no traceback and
nothing written under ``--out``.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from cluster_fixtures import REPO, run_cli, write_toml

import strategies
from engine import EngineConfig
from engine.data import parse_data_spec, synthetic_panel
from sweep import SpecError, SweepSpec
from sweep.spec import ResolvedSweep

DATA = "synthetic:assets=4,bars=300,seed=1"
BASE = f'name = "case"\nstrategy = "ma_cross"\ndata = "{DATA}"\n'


def resolve_text(tmp_path: Path, text: str, name: str = "case.toml") -> ResolvedSweep:
    return SweepSpec.from_toml(write_toml(tmp_path / name, text)).resolve()


def bounds(resolved: ResolvedSweep) -> list[tuple[int, int]]:
    return [w.bounds for w in resolved.windows]


def axes(resolved: ResolvedSweep) -> dict[str, list]:
    return {name: list(values) for name, values in resolved.grid.axes}


# ------------------------------------------------------------------ good key forms
def test_lists_ranges_and_constraints(tmp_path: Path) -> None:
    r = resolve_text(tmp_path, BASE + """
constraints = ["fast < slow", "kind != 'ema' or fast >= 10"]
[grid]
fast = {start = 5, stop = 20, step = 5}
slow = [10, 50]
kind = ["sma", "ema"]
""")
    assert axes(r) == {"fast": [5, 10, 15, 20], "slow": [10, 50], "kind": ["sma", "ema"]}
    expected = [(f, s, k) for f, s, k in itertools.product([5, 10, 15, 20], [10, 50],
                                                             ["sma", "ema"])
                if f < s and (k != "ema" or f >= 10)]
    table = r.combos_table(0, r.n_combos)
    assert list(table.select("fast", "slow", "kind").iter_rows()) == expected
    assert r.n_runs == len(expected)
    assert bounds(r) == [(0, 300)]
    assert r.combos is None
    assert r.strategy is strategies.get("ma_cross")
    # a single constraint may be a plain string
    one = resolve_text(tmp_path, BASE + 'constraints = "fast < slow"\n'
                       '[grid]\nfast = [5, 60]\nslow = [50]\n', "one.toml")
    assert one.n_runs == 1


def test_scalars_float_steps_num_and_log_ranges(tmp_path: Path) -> None:
    r = resolve_text(tmp_path, BASE + """
[grid]
fast = {start = 1, stop = 100, num = 3, log = true}
slow = 200
long_short = [false, true]
commission = {start = 0.0001, stop = 0.01, num = 3, log = true}
slippage = {start = 0.0, stop = 0.002, step = 0.001}
atr_window = {start = 10, stop = 30, num = 3}
[engine]
allow_short = true
""")
    assert axes(r) == {
        "fast": [1, 10, 100], "slow": [200], "long_short": [False, True],
        "commission": [0.0001, 0.001, 0.01], "slippage": [0.0, 0.001, 0.002],
        "atr_window": [10, 20, 30],
    }
    assert r.n_runs == 3 * 2 * 3 * 3 * 3
    schema = r.combos_table(0, 1).schema
    assert schema["fast"] == pl.Int64 and schema["slow"] == pl.Int64
    assert schema["long_short"] == pl.Boolean
    assert schema["commission"] == pl.Float64 and schema["slippage"] == pl.Float64
    assert schema["atr_window"] == pl.Int64


def test_engine_table_and_engine_fields_as_axes(tmp_path: Path) -> None:
    r = resolve_text(tmp_path, BASE + """
[engine]
init_cash = 50000.0
fill = "close"
commission = 0.001
fixed_fee = 1.5
allow_short = true
max_leverage = 2.0
stop_loss = 0.05
[grid]
fast = [5, 10]
commission = [0, 0.002]        # ints on a float field are fractions too
allow_short = [false, true]
""")
    assert r.config == EngineConfig(init_cash=50_000.0, fill="close", commission=0.001,
                                    fixed_fee=1.5, allow_short=True, max_leverage=2.0,
                                    stop_loss=0.05)
    assert axes(r)["commission"] == [0.0, 0.002]
    assert all(type(v) is float for v in axes(r)["commission"])
    assert axes(r)["allow_short"] == [False, True]
    assert r.n_runs == 8


def test_windows_ranges(tmp_path: Path) -> None:
    r = resolve_text(tmp_path, BASE + """
[windows]
ranges = [["2010-02-01", "2010-06-30"], ["2010-06-01", "2011-01-31"]]
""")
    ts = r.panel.timestamps
    assert bounds(r) == [r.panel.index_range("2010-02-01", "2010-06-30"),
                         r.panel.index_range("2010-06-01", "2011-01-31")]
    (a0, a1), (b0, _) = bounds(r)
    assert str(ts[a0])[:10] == "2010-02-01" and str(ts[a1 - 1])[:10] == "2010-06-30"
    assert b0 < a1  # overlapping windows are allowed


@pytest.mark.parametrize(
    ("windows", "expected"),
    [
        ('length = 100', [(0, 100), (100, 200), (200, 300)]),
        ('length = 100\nstep = 50', [(0, 100), (50, 150), (100, 200), (150, 250), (200, 300)]),
        ('length = 120\nstep = 90', [(0, 120), (90, 210), (180, 300)]),
        ('length = 100\nanchored = true', [(0, 100), (0, 200), (0, 300)]),
        ('length = 100\nstep = 50\nanchored = true',
         [(0, 100), (0, 150), (0, 200), (0, 250), (0, 300)]),
    ],
)
def test_generated_windows_in_bars(tmp_path: Path, windows: str, expected: list) -> None:
    r = resolve_text(tmp_path, BASE + "[windows]\n" + windows + "\n")
    assert bounds(r) == expected


def _offset(ts: np.datetime64, length: str) -> np.datetime64:
    series = pl.Series(np.array([ts], dtype="datetime64[ns]"))
    return series.dt.offset_by(length).to_numpy()[0]


def test_generated_calendar_windows_2y_1y(tmp_path: Path) -> None:
    r = resolve_text(tmp_path, BASE.replace(DATA, "synthetic:assets=3,bars=2520,seed=7")
                     + '[windows]\nlength = "2Y"\nstep = "1Y"\n')
    ts = r.panel.timestamps
    assert len(r.windows) == 8  # 2010-01-04 .. 2019-08-30: starts 2010 .. 2017
    days = np.timedelta64(4, "D")  # a weekend-rolled bound may move a few days
    for k, (i0, i1) in enumerate(bounds(r)):
        assert str(ts[i0])[:4] == str(2010 + k)
        # about [start, start + 2Y): the last bar is before the 2-year mark, the next not
        assert ts[i1 - 1] < _offset(ts[i0], "2y") + days
        assert ts[i1] >= _offset(ts[i0], "2y") - days
        assert i1 - i0 > 500


def test_generated_calendar_windows_6m_anchored_within_bounds(tmp_path: Path) -> None:
    r = resolve_text(tmp_path, BASE.replace(DATA, "synthetic:assets=3,bars=2520,seed=7")
                     + '[windows]\nlength = "6M"\nanchored = true\n'
                       'start = "2011-01-01"\nend = "2013-12-31"\n')
    ts = r.panel.timestamps
    lo, hi = r.panel.index_range("2011-01-01", "2013-12-31")
    assert len(r.windows) == 5  # 6, 12, 18, 24, 30 months; 36 would pass the end bound
    assert all(i0 == lo for i0, _ in bounds(r))
    ends = [i1 for _, i1 in bounds(r)]
    assert ends == sorted(ends) and ends[-1] <= hi
    # the first one is exactly [start, start + 6 months)
    assert ts[ends[0] - 1] < _offset(ts[lo], "6mo") <= ts[ends[0]]


@pytest.mark.parametrize(
    ("windows", "bound", "unit"),
    [('length = "1M"\nstep = "1M"', "start", "mo"),
     ('length = "6M"\nanchored = true', "end", "mo"),
     ('length = "2W"\nstep = "1W"', "start", "w")],
    ids=["rolling-1M", "expanding-6M", "rolling-1W"],
)
def test_calendar_windows_do_not_drift(tmp_path: Path, windows: str, bound: str,
                                       unit: str) -> None:
    """Window k of a calendar step starts (rolling) or ends (expanding) at the first bar on
    or after the first date + k steps.

    Stepping from the previous window's (weekend-rolled) bar instead drifts: monthly
    windows start ~9 days late after a year and ~2.5 months late after nine.
    """
    r = resolve_text(tmp_path, BASE.replace(DATA, "synthetic:assets=3,bars=2520,seed=7")
                     + "[windows]\n" + windows + "\n")
    ts = r.panel.timestamps
    n = 6 if "6M" in windows else 1
    late = {}
    for k, (i0, i1) in enumerate(bounds(r)):
        steps = k if bound == "start" else k + 1
        expected = int(np.searchsorted(ts, _offset(ts[0], f"{n * steps}{unit}"), side="left"))
        got = i0 if bound == "start" else i1
        if got != expected:
            late[k] = (str(ts[min(got, len(ts) - 1)])[:10], str(ts[expected])[:10])
    assert not late, f"{len(late)} of {len(r.windows)} windows' {bound}s are late: " + \
        ", ".join(f"#{k} {got} (expected {want})" for k, (got, want) in list(late.items())[:4])


def test_samples_with_seed_draw_k_valid_combos_deterministically(tmp_path: Path) -> None:
    text = BASE + """
constraints = ["fast < slow"]
samples = 25
seed = 3
[grid]
fast = {start = 2, stop = 60, step = 2}
slow = {start = 10, stop = 100, step = 10}
kind = ["sma", "ema"]
[windows]
ranges = [["2010-01-01", "2010-06-30"], ["2010-07-01", "2010-12-31"]]
"""
    a = resolve_text(tmp_path, text, "a.toml")
    b = resolve_text(tmp_path, text, "b.toml")
    c = resolve_text(tmp_path, text.replace("seed = 3", "seed = 4"), "c.toml")
    assert a.combos is not None and a.combos.size == 25
    assert np.array_equal(a.combos, b.combos)                 # same seed, same draw
    assert not np.array_equal(a.combos, c.combos)             # another seed, another draw
    assert np.array_equal(a.combos, np.unique(a.combos))      # sorted, distinct
    assert a.n_combos == 25 and a.n_runs == 50                # K combos x 2 windows
    table = a.combos_table(0, a.n_combos)
    assert table.height == 25
    assert (table["fast"] < table["slow"]).all()              # only valid combos
    assert set(table["combo"]) <= set(a.grid.frame()["combo"])
    # K at least the grid: the whole valid grid
    everything = resolve_text(tmp_path, text.replace("samples = 25", "samples = 100000"),
                              "all.toml")
    assert everything.combos is not None
    assert everything.combos.tolist() == a.grid.frame()["combo"].to_list()


def test_samples_are_spread_over_the_whole_grid(tmp_path: Path) -> None:
    """A random sample of K combos from a 1000-combo grid is uniform, not the K smallest
    indices of a larger draw (which keeps it in the first ~quarter of the grid)."""
    text = BASE + """
samples = 50
seed = {seed}
[grid]
fast = {start = 1, stop = 100}
slow = {start = 101, stop = 110}
"""
    means = []
    for seed in range(5):
        r = resolve_text(tmp_path, text.replace("{seed}", str(seed)), f"s{seed}.toml")
        assert r.grid.size == 1000 and r.combos is not None and r.combos.size == 50
        means.append(float(r.combos.mean()))
    # the mean of 50 uniform draws from 0..999 is 499.5 +- ~41 (one sigma)
    assert all(300 < m < 700 for m in means), f"sample means {means} (uniform: ~500)"


def test_relative_data_path_is_relative_to_the_config(tmp_path: Path) -> None:
    synthetic_panel(n_assets=3, n_bars=120, seed=2).write_parquet(tmp_path / "d" / "p.parquet")
    cfg = write_toml(tmp_path / "d" / "sweep.toml",
                     'name = "rel"\nstrategy = "ma_cross"\ndata = "p.parquet"\n'
                     'description = "a relative data path"\n[grid]\nfast = [3]\nslow = [9]\n')
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = SweepSpec.from_toml(cfg).resolve()
    finally:
        os.chdir(cwd)
    assert r.spec.data == str(tmp_path / "d" / "p.parquet")
    assert r.panel.fingerprint == synthetic_panel(n_assets=3, n_bars=120, seed=2).fingerprint


def test_digest_is_the_content(tmp_path: Path) -> None:
    text = BASE + '[grid]\nfast = [5, 10]\n'
    a = SweepSpec.from_toml(write_toml(tmp_path / "a.toml", text))
    b = SweepSpec.from_toml(write_toml(tmp_path / "b.toml", "# a comment\n" + text))
    c = SweepSpec.from_toml(write_toml(tmp_path / "c.toml", text.replace("10", "20")))
    assert a.digest == b.digest != c.digest


# first_sweep.toml reads a CSV folder the README's first commands make: tests/test_readme.py
@pytest.mark.parametrize("example", sorted(p for p in (REPO / "examples").glob("*.toml")
                                           if p.name != "first_sweep.toml"),
                         ids=lambda p: p.name)
def test_example_configs_resolve(example: Path) -> None:
    r = SweepSpec.from_toml(example).resolve()
    assert r.n_runs > 0


def test_example_top_n_windows() -> None:
    r = SweepSpec.from_toml(REPO / "examples" / "top_n_windows.toml").resolve()
    ts = r.panel.timestamps
    assert len(r.windows) >= 5
    assert all(str(ts[i0])[:4] == str(2010 + k) for k, (i0, _) in enumerate(bounds(r)))
    assert any(name in axes(r) for name in ("commission", "slippage"))


def test_example_sampled() -> None:
    spec = SweepSpec.from_toml(REPO / "examples" / "sampled.toml")
    r = spec.resolve()
    assert spec.samples is not None and r.combos is not None
    assert r.combos.size == spec.samples < r.grid.size
    assert r.n_runs == spec.samples * len(r.windows)


# ----------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def bad_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A garbage-bytes 'Parquet' and a Parquet whose bar 7 has high < low."""
    folder = tmp_path_factory.mktemp("bad_data")
    (folder / "garbage.parquet").write_bytes(bytes(range(256)) * 3)
    frame = synthetic_panel(n_assets=3, n_bars=60, seed=1).to_frame()
    broken = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.col("low") * 0.5)
        .otherwise(pl.col("high")).alias("high")
    )
    broken.write_parquet(folder / "high_below_low.parquet")
    return folder


def _grid(body: str) -> str:
    return BASE + "[grid]\n" + body + "\n"


# name -> (config text, words the error message must contain); {bad} = the bad_data folder
BAD = {
    "unknown_strategy": ('name = "case"\nstrategy = "no_such"\ndata = "synthetic"\n',
                         ["unknown strategy", "no_such"]),
    "unknown_parameter": (_grid("speed = [1, 2]"), ["speed", "ma_cross"]),
    "out_of_bounds": (_grid("fast = [5, 0]"), ["fast", "0", "lower bound"]),
    "above_bound": (_grid("fast = [10001]"), ["fast", "upper bound"]),
    "wrong_type": (_grid('fast = ["ten"]'), ["fast", "ten", "not a number"]),
    "not_an_integer": (_grid("fast = [2.5]"), ["fast", "2.5", "not an integer"]),
    "bad_choice": (_grid('kind = ["wma"]'), ["kind", "wma"]),
    "repeated_value": (_grid("fast = [5, 5]"), ["fast", "repeats"]),
    "bad_range": (_grid("fast = {start = 5, stop = 1, step = 1}"), ["fast", "step"]),
    "engine_wrong_type": (BASE + '[engine]\ncommission = "cheap"\n', ["commission", "cheap"]),
    "engine_unknown_field": (BASE + "[engine]\nbroker = 1\n", ["broker"]),
    "engine_out_of_range": (BASE + "[engine]\ncommission = 1.5\n", ["commission", "1.5"]),
    "engine_axis_out_of_range": (_grid("slippage = [0.0, -0.01]"), ["slippage", "-0.01"]),
    "fill_is_not_an_axis": (_grid('fill = ["close"]'), ["fill"]),
    "empty_after_constraints": (BASE + 'constraints = ["fast > slow"]\n'
                                + "[grid]\nfast = [5, 10]\nslow = [50]\n",
                                ["empty", "fast > slow"]),
    "constraint_unknown_column": (BASE + 'constraints = ["speed < slow"]\n'
                                  + "[grid]\nfast = [5]\n", ["speed < slow"]),
    "constraint_not_boolean": (BASE + 'constraints = ["fast + 1"]\n'
                               + "[grid]\nfast = [5]\n", ["fast + 1", "true/false"]),
    "constraint_unparsable": (BASE + 'constraints = ["fast <"]\n[grid]\nfast = [5]\n',
                              ["fast <"]),
    "window_outside_data": (BASE + '[windows]\nranges = [["1990-01-01", "1990-12-31"]]\n',
                            ["window 0", "1990-01-01"]),
    "window_after_data": (BASE + '[windows]\nranges = [["2010-02-01", "2010-03-01"], '
                          '["2030-01-01", "2031-01-01"]]\n', ["window 1", "2030-01-01"]),
    "window_bad_date": (BASE + '[windows]\nranges = [["2010-13-45", "2011-01-01"]]\n',
                        ["2010-13-45"]),
    "window_length_too_long": (BASE + '[windows]\nlength = "5Y"\n', ["5Y", "does not fit"]),
    "window_length_bad_unit": (BASE + '[windows]\nlength = "2X"\n', ["length", "2X"]),
    "window_unknown_key": (BASE + "[windows]\nlenght = 100\n", ["lenght"]),
    "window_ranges_and_length": (BASE + '[windows]\nranges = [["2010-01-01", "2010-06-30"]]'
                                 "\nlength = 100\n", ["ranges", "length"]),
    "missing_data_file": ('name = "case"\nstrategy = "ma_cross"\ndata = "{bad}/nope.parquet"\n',
                          ["nope.parquet", "no such file"]),
    "garbage_data_file": ('name = "case"\nstrategy = "ma_cross"\n'
                          'data = "{bad}/garbage.parquet"\n',
                          ["garbage.parquet", "not a readable Parquet"]),
    "invalid_panel": ('name = "case"\nstrategy = "ma_cross"\n'
                      'data = "{bad}/high_below_low.parquet"\n',
                      ["high_below_low.parquet", "high below low"]),
    "unknown_data_source": ('name = "case"\nstrategy = "ma_cross"\ndata = "ftp:prices"\n',
                            ["ftp"]),
    "bad_synthetic_key": ('name = "case"\nstrategy = "ma_cross"\n'
                          'data = "synthetic:asets=3"\n', ["asets"]),
    "reserved_run_id": (_grid("run_id = [1]"), ["run_id", "reserved"]),
    "reserved_window": (_grid("window = [1]"), ["window", "reserved"]),
    "reserved_error": (_grid('error = ["x"]'), ["error", "reserved"]),
    "reserved_chunk_id": (_grid("chunk_id = [1]"), ["chunk_id", "reserved"]),
    "unknown_top_level_key": (BASE + "sampels = 10\n", ["sampels"]),
    "invalid_toml": (BASE + "[grid]\nfast = [5, 10\n", ["invalid TOML"]),
    "samples_zero": (BASE + "samples = 0\n", ["samples"]),
    "samples_not_int": (BASE + 'samples = "many"\n', ["samples", "many"]),
    "seed_negative": (BASE + "seed = -1\n", ["seed"]),
    "missing_name": ('strategy = "ma_cross"\ndata = "synthetic"\n', ["name"]),
    "name_with_slash": ('name = "../escape"\nstrategy = "ma_cross"\ndata = "synthetic"\n',
                        ["name", "../escape"]),
    "grid_not_a_table": (BASE + 'grid = "fast"\n', ["grid"]),
    "unknown_feature": ('name = "case"\nstrategy = "top_n"\ndata = "' + DATA + '"\n'
                        '[grid]\nfeature = ["nope"]\n', ["feature", "nope"]),
    # only the second value is bad: validation must look at every value, not the first
    # combination only (else every run with it fails on the cluster instead)
    "unknown_feature_not_first": ('name = "case"\nstrategy = "top_n"\ndata = "' + DATA
                                  + '"\n[grid]\nn = [1, 2]\nfeature = ["ml_score", "nope"]\n',
                                  ["feature", "nope"]),
}

# The cases the issue names, also run through the real `backsweep run` subprocess.
CLI_CASES = [
    "unknown_strategy", "unknown_parameter", "out_of_bounds", "wrong_type",
    "engine_wrong_type", "empty_after_constraints", "window_outside_data",
    "missing_data_file", "garbage_data_file", "invalid_panel", "reserved_run_id",
    "reserved_window", "unknown_top_level_key", "invalid_toml", "unknown_feature_not_first",
]


def write_bad(folder: Path, case: str, bad: Path) -> Path:
    text, _ = BAD[case]
    return write_toml(folder / f"{case}.toml", text.replace("{bad}", str(bad)))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_spec_error(tmp_path: Path, bad_data: Path, case: str) -> None:
    path = write_bad(tmp_path, case, bad_data)
    with pytest.raises(SpecError) as info:
        SweepSpec.from_toml(path).resolve()
    message = str(info.value)
    assert str(path) in message, f"the message does not name the file: {message}"
    for word in BAD[case][1]:
        assert word in message, f"{word!r} not in {message!r}"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such config file"):
        SweepSpec.from_toml(tmp_path / "nope.toml")


def test_python_spec_is_validated_like_toml() -> None:
    with pytest.raises(SpecError, match="no_such"):
        SweepSpec.from_dict({"name": "x", "strategy": "no_such", "data": DATA}).resolve()
    with pytest.raises(SpecError, match="reserved"):
        SweepSpec(name="x", strategy="ma_cross", data=DATA, grid={"window": [1]}).resolve()
    ok = SweepSpec(name="x", strategy="ma_cross", data=DATA, grid={"fast": [3, 4]})
    assert ok.resolve(parse_data_spec(DATA)).n_runs == 2


# ------------------------------------------------------------- the same, via the CLI
UNREACHABLE = "tcp://127.0.0.1:1"


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory: pytest.TempPathFactory, bad_data: Path) -> dict:
    """Run `backsweep run` on every CLI case (and an unreachable --cluster) concurrently:
    each is a separate process, so this only saves waiting."""
    folder = tmp_path_factory.mktemp("cli_bad")
    jobs: dict[str, tuple[Path, list[str]]] = {}
    for case in CLI_CASES:
        out = folder / f"out_{case}"
        jobs[case] = (out, ["run", str(write_bad(folder, case, bad_data)), "--out", str(out),
                            "--workers", "1", "--chunk-size", "1", "--no-progress"])
    good = write_toml(folder / "good.toml", _grid("fast = [5, 10]\nslow = [50]"))
    out = folder / "out_unreachable"
    jobs["unreachable_cluster"] = (out, ["run", str(good), "--out", str(out), "--cluster",
                                         UNREACHABLE, "--chunk-size", "1", "--no-progress"])

    def one(args: list[str]) -> tuple[object, float]:
        started = time.monotonic()
        result = run_cli(*args, timeout=120)
        return result, time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        # the unreachable cluster mostly waits: start it first, alongside the others
        order = ["unreachable_cluster", *CLI_CASES]
        futures = {case: pool.submit(one, jobs[case][1]) for case in order}
        return {case: (jobs[case][0], *futures[case].result()) for case in order}


def check_refused(out: Path, result: object) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(err.splitlines()) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert err.startswith("error: "), err
    assert result.stdout.strip() == "", result.stdout
    written = sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []
    assert not written, f"files written under --out: {written}"
    return err


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses_bad_config(cli_results: dict, case: str) -> None:
    out, result, _ = cli_results[case]
    err = check_refused(out, result)
    for word in BAD[case][1]:
        assert word in err, f"{word!r} not in {err!r}"


def test_cli_unreachable_cluster(cli_results: dict) -> None:
    out, result, seconds = cli_results["unreachable_cluster"]
    # A hang guard, not a speed test: the connect timeout is 20 s, and a loaded CI machine
    # can add a lot of interpreter start-up on top of it.
    assert seconds < 150, f"took {seconds:.0f} s to give up on {UNREACHABLE}"
    err = check_refused(out, result)
    assert UNREACHABLE in err


def test_cli_missing_config_file(tmp_path: Path) -> None:
    result = run_cli("run", tmp_path / "nope.toml", "--out", tmp_path / "out")
    err = check_refused(tmp_path / "out", result)
    assert "nope.toml" in err
