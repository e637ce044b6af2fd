"""Adaptive search (``[search]``, sweep.search) on real clusters, real files, real Optuna.

* the search space: every axis kind mapped to Optuna and back to the grid's combination;
* every bad ``[search]`` input refused with exit code 2 before any cluster work (the
  cluster given is unreachable: reaching for it first would be another error);
* ``method = "grid"`` is the grid sweep (same digest, same files);
* on a LocalCluster of 2 workers: the same seed and batch give the same trials on 1 and 2
  workers; constraints never broken; repeats cost nothing; the store holds every trial
  with its number, ``n_trials`` and the DSR/PBO count them all; pruned trials stored and
  counted; one seeded search a walk-forward fold; the progress bar, ``show`` and the
  report's convergence;
* on ``dask scheduler`` + ``dask worker`` processes: the client SIGKILLed mid-search, and
  the rerun ends with the trials of an uninterrupted search.
"""

from __future__ import annotations

import json
import math
import re
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from cluster_fixtures import (
    DaskProcesses,
    kill_group,
    part_files,
    read_meta,
    read_runs,
    run_cli,
    start_cli,
    wait_for,
    write_toml,
)
from polars.testing import assert_frame_equal

import cluster
import strategies
from engine import METRIC_NAMES
from sweep import SpecError, SweepSpec, run_sweep
from sweep.grid import Grid
from sweep.overfit import deflated_sharpe_ratio
from sweep.record import SweepRecord
from sweep.report import render_report
from sweep.search.objective import trial_values
from sweep.search.space import Space

DATA = "synthetic:assets=12,bars=900,seed=4"
GRID = {"fast": {"start": 2, "stop": 40, "step": 2}, "slow": {"start": 20, "stop": 150,
                                                             "step": 10},
        "kind": ["sma", "ema"]}
CONSTRAINTS = ("fast < slow",)
TRIAL_COLUMNS = ["window", "trial", "combo", "run_id", "pruned", *METRIC_NAMES]


def spec(name: str, search: dict[str, Any] | None, **kw: Any) -> SweepSpec:
    base: dict[str, Any] = {"name": name, "strategy": "ma_cross", "data": DATA,
                            "grid": GRID, "constraints": CONSTRAINTS}
    return SweepSpec(**(base | kw), search=search)


def trials_of(root: Path) -> pl.DataFrame:
    return read_runs(root).select(TRIAL_COLUMNS).sort("window", "trial")


def record(root: Path) -> SweepRecord:
    return SweepRecord.read(root / "sweep.json")


@pytest.fixture(scope="module")
def client() -> Any:
    with cluster.connect("local", workers=2, dashboard=False) as c:
        yield c


# ------------------------------------------------------------------- the search space
def test_space_maps_every_axis_kind_to_its_grid_combination() -> None:
    raw = {"fast": {"start": 3, "stop": 30, "step": 3},             # stepped int
           "slow": {"start": 40, "stop": 400, "num": 9, "log": True},  # nearest, log
           "commission": {"start": 0.0, "stop": 0.002, "step": 0.0005},  # stepped float
           "kind": ["sma", "ema"],                                   # categorical
           "long_short": [False]}                                    # fixed
    grid = Grid.build(strategies.get("ma_cross"), raw)
    space = Space.build(grid, raw)
    assert space.kinds == {"fast": "stepped", "slow": "nearest", "commission": "stepped",
                           "kind": "categorical", "long_short": "fixed"}
    dists = space.distributions()
    assert set(dists) == {"fast", "slow", "commission", "kind"}
    assert (dists["fast"].low, dists["fast"].high, dists["fast"].step) == (3, 30, 3)
    assert dists["slow"].log and (dists["slow"].low, dists["slow"].high) == (40, 400)
    assert dists["commission"].step == 0.0005
    rng = np.random.default_rng(0)
    for combo in rng.choice(grid.size, 200, replace=False):
        row = grid.take(np.array([combo])).row(0, named=True)
        assert space.combo(row) == combo  # a grid point maps to itself
    # off-grid proposals snap: the nearest value (log scale for a log axis)
    slows = dict(grid.axes)["slow"]
    row = {"fast": 9, "slow": 47.0, "commission": 0.00100000001, "kind": "ema"}
    got = grid.take(np.array([space.combo(row)])).row(0, named=True)
    assert got["fast"] == 9 and got["commission"] == 0.001 and got["kind"] == "ema"
    assert got["slow"] == min(slows, key=lambda v: abs(math.log(v) - math.log(47.0)))
    assert space.allowed(space.combo(got))
    constrained = Space.build(Grid.build(strategies.get("ma_cross"), raw, ["fast > 20"]), raw)
    assert not constrained.allowed(space.combo(got))
    # a repeat's nudge: the neighbours are one step on one axis; the nearest untried one
    combo = space.combo(got)
    assert space.from_digits(space.digits(combo)) == combo
    near = space.neighbours(combo)
    rows = grid.take(np.array(near)).to_dicts()
    changed = [[k for k in ("fast", "slow", "commission", "kind") if r[k] != got[k]]
               for r in rows]
    assert all(len(c) == 1 for c in changed)
    assert sorted(r["fast"] for r, c in zip(rows, changed, strict=True) if c == ["fast"]) \
        == [6, 12]
    assert len(near) == 2 + 2 + 2 + 1  # fast, slow, commission up/down; the other kind
    tried = {combo, *near}
    found = space.nearest(combo, lambda c: c not in tried, np.random.default_rng(0))
    assert found not in tried and found in {n2 for n in near for n2 in space.neighbours(n)}
    assert space.values(found).keys() == dists.keys()


# ------------------------------------------------------------------- bad input
BAD = {
    "unknown method": ({"method": "hyperopt", "trials": 10}, "unknown method 'hyperopt'"),
    "zero trials": ({"method": "tpe", "trials": 0}, "'trials' must be a positive integer"),
    "negative trials": ({"method": "random", "trials": -3},
                        "'trials' must be a positive integer"),
    "no trials": ({"method": "tpe"}, "'trials' is required"),
    "unknown option": ({"method": "tpe", "trials": 10, "options": {"n_startup": 5}},
                       "TPESampler takes no option(s) ['n_startup']"),
    "option of another sampler": ({"method": "random", "trials": 10,
                                   "options": {"n_startup_trials": 5}},
                                  "RandomSampler takes no option(s)"),
    "bad pruner option": ({"method": "tpe", "trials": 10, "prune": "hyperband",
                           "prune_options": {"eta": 3}}, "HyperbandPruner takes no option"),
    "prune with one window": ({"method": "tpe", "trials": 10, "prune": "successive_halving"},
                              "needs two or more [windows]"),
    "objective not a metric": ({"method": "tpe", "trials": 10, "objective": "alpha_x"},
                               "is not a metric"),
    "batch zero": ({"method": "tpe", "trials": 10, "batch": 0}, "'batch' must be"),
    "more trials than the grid": ({"method": "tpe", "trials": 100_000},
                                  "more than the grid's"),
    "grid with trials": ({"method": "grid", "trials": 10}, "apply to an adaptive search"),
    "unknown key": ({"method": "tpe", "trials": 10, "sampler": "x"}, "unknown key(s)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_search_input_is_a_spec_error(case: str) -> None:
    search, message = BAD[case]
    with pytest.raises(SpecError, match=re.escape(message)):
        spec("bad", search).resolve()


def _toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


@pytest.mark.parametrize("case", ["unknown method", "zero trials", "negative trials",
                                  "unknown option", "bad pruner option"])
def test_bad_search_input_exits_2_before_any_cluster_work(case: str, tmp_path: Path) -> None:
    search, message = BAD[case]
    table = "\n".join(f"{k} = {_toml_value(v)}" for k, v in search.items())
    config = write_toml(tmp_path / "bad.toml", f"""
name = "bad"
strategy = "ma_cross"
data = "{DATA}"
[grid]
fast = [5, 10]
slow = [20, 40]
[windows]
ranges = [["2010-01-01", "2011-06-30"], ["2011-07-01", "2013-06-30"]]
[search]
{table}
""")
    out = tmp_path / "out"
    # Port 9 refuses connections: had the command reached for the cluster before reading
    # [search], it would fail with "cannot reach the Dask scheduler" instead.
    res = run_cli("run", config, "--out", out, "--cluster", "tcp://127.0.0.1:9",
                  "--no-progress")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "[search]" in res.stderr and message in res.stderr, res.stderr
    assert "scheduler" not in res.stderr
    assert not out.exists()  # nothing written


# ------------------------------------------------------------------- grid is the grid
def test_method_grid_is_the_grid_sweep(client: Any, tmp_path: Path) -> None:
    small = {"fast": [5, 10, 15], "slow": [30, 60], "kind": ["sma", "ema"]}
    plain = spec("g", None, grid=small)
    graded = spec("g", {"method": "grid"}, grid=small)
    assert plain.digest == graded.digest and plain.to_dict() == graded.to_dict()
    a = run_sweep(plain, client, tmp_path / "a", progress=False, chunk_size=5)
    b = run_sweep(graded, client, tmp_path / "b", progress=False, chunk_size=5)
    assert a.ok and b.ok and a.n_runs == b.n_runs == 12 and b.search is None
    ta, tb = read_runs(tmp_path / "a" / "g"), read_runs(tmp_path / "b" / "g")
    assert "trial" not in tb.columns and "pruned" not in tb.columns
    assert_frame_equal(ta, tb, check_exact=True)
    ra, rb = read_meta(tmp_path / "a" / "g"), read_meta(tmp_path / "b" / "g")
    assert rb["search"] is None and ra["spec"] == rb["spec"] and ra["plan"] == rb["plan"]


# ------------------------------------------------------------------- determinism
DET = {"method": "tpe", "trials": 32, "seed": 5, "batch": 4}


@pytest.fixture(scope="module")
def det_two(client: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("det2")
    summary = run_sweep(spec("det", DET), client, out, progress=False)
    assert summary.ok and summary.search.complete, summary.describe()
    text = summary.describe()  # the closing summary: trials, best, the sampler's cost
    assert f"tpe search, 32 trials ({summary.n_runs} runs stored" in text
    assert re.search(r"sampler \d+\.\d+ s, \d+\.\d+ ms a proposal; runs \d+\.\d+ ms", text)
    return out / "det"


def test_same_trials_whatever_the_worker_count(det_two: Path, tmp_path: Path) -> None:
    with cluster.connect("local", workers=1, dashboard=False) as one:
        summary = run_sweep(spec("det", DET), one, tmp_path, progress=False)
    assert summary.worker_threads == 1 and summary.ok
    a, b = trials_of(det_two), trials_of(tmp_path / "det")
    assert a["trial"].to_list() == list(range(32))
    assert_frame_equal(a, b, check_exact=True)
    assert record(det_two).search.studies[0].seed == 5


def test_another_seed_proposes_other_trials(det_two: Path, client: Any,
                                            tmp_path: Path) -> None:
    run_sweep(spec("det", DET | {"seed": 6}), client, tmp_path, progress=False)
    a, b = trials_of(det_two), trials_of(tmp_path / "det")
    assert a.height == b.height == 32
    assert a["combo"].to_list() != b["combo"].to_list()


def test_the_store_is_the_study(det_two: Path) -> None:
    """Every trial a row with its number; sweep.json says what ran and what it cost."""
    runs = read_runs(det_two)
    meta = read_meta(det_two)
    s = record(det_two).search
    assert runs.height == runs["combo"].n_unique() == runs["run_id"].n_unique() == 32
    assert sorted(runs["trial"].to_list()) == list(range(32))
    assert not runs["pruned"].any()
    assert meta["n_runs"] == 32 and meta["runs_written"] == 32
    assert meta["status"] == "complete" and s.complete and s.n_trials == 32
    assert s.method == "tpe" and s.settings["sampler"] == "TPESampler"
    assert s.settings["seed"] == 5 and s.settings["batch"] == 4
    assert s.n_proposals == s.n_trials + s.n_repeats + s.n_rejected
    assert s.sampler_seconds > 0 and s.sampler_ms > 0
    assert s.runs_computed == 32 and s.run_seconds > 0
    best = runs.sort("sharpe", descending=True).row(0, named=True)
    assert s.best_value == best["sharpe"] and s.best_trial == best["trial"]
    assert (runs["fast"] < runs["slow"]).all()


def test_a_finished_search_reruns_without_a_cluster(det_two: Path, tmp_path: Path) -> None:
    before = read_runs(det_two)
    summary = run_sweep(spec("det", DET), "tcp://127.0.0.1:9", det_two.parent,
                        progress=False)  # an unreachable cluster: never contacted
    assert summary.ok and summary.chunks_run == 0 and summary.runs_computed == 0
    assert summary.search.n_trials == 32 and summary.search.complete
    assert_frame_equal(before, read_runs(det_two), check_exact=True)


def test_more_trials_continue_the_search(det_two: Path, client: Any, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "more"
    shutil.copytree(det_two, out / "det")
    summary = run_sweep(spec("det", DET | {"trials": 40}), client, out, progress=False)
    assert summary.ok and summary.runs_computed == 8
    longer = trials_of(out / "det")
    assert longer["trial"].to_list() == list(range(40))
    meta = read_meta(out / "det")
    assert meta["n_runs"] == 40 and meta["search"]["settings"]["trials"] == 40
    assert_frame_equal(longer.head(32), trials_of(det_two), check_exact=True)
    # ... and equal to a search of 40 trials from scratch
    fresh = run_sweep(spec("det", DET | {"trials": 40}), client, tmp_path / "fresh",
                      progress=False)
    assert fresh.ok
    assert_frame_equal(longer, trials_of(tmp_path / "fresh" / "det"), check_exact=True)


# ------------------------------------------------------------------- constraints, repeats
def test_constraints_never_broken_and_forbidden_proposals_never_run(
        client: Any, tmp_path: Path) -> None:
    cons = ("fast < slow", "slow - fast >= 60")
    s = spec("cons", {"method": "random", "trials": 40, "seed": 1, "batch": 8},
             constraints=cons)
    summary = run_sweep(s, client, tmp_path, progress=False)
    runs = read_runs(tmp_path / "cons")
    assert summary.ok and runs.height == 40
    assert (runs["fast"] < runs["slow"]).all() and (runs["slow"] - runs["fast"] >= 60).all()
    info = summary.search
    assert info.n_rejected > 0  # the sampler did propose forbidden points ...
    assert info.n_proposals == 40 + info.n_rejected + info.n_repeats  # ... none ran


def test_repeats_cost_nothing(client: Any, tmp_path: Path) -> None:
    """A space of 12 combinations searched for 12 trials: random proposals repeat; each
    repeat is told the stored result and runs nothing, so every combination runs once."""
    small = {"fast": [5, 10, 15], "slow": [30, 60], "kind": ["sma", "ema"]}
    s = spec("rep", {"method": "random", "trials": 12, "seed": 3, "batch": 4}, grid=small)
    summary = run_sweep(s, client, tmp_path, progress=False)
    runs = read_runs(tmp_path / "rep")
    assert summary.ok and summary.search.n_repeats > 0
    assert runs.height == runs["combo"].n_unique() == runs["run_id"].n_unique() == 12
    assert summary.search.runs_computed == 12


@pytest.mark.parametrize(("method", "options"), [("cmaes", {"sigma0": 5.0}),
                                                  ("qmc", {"qmc_type": "halton"}),
                                                  ("NSGAIISampler", {"population_size": 8})])
def test_other_optuna_samplers_by_name(method: str, options: dict[str, Any], client: Any,
                                       tmp_path: Path) -> None:
    s = spec("other", {"method": method, "trials": 16, "seed": 1, "batch": 4,
                       "options": options})
    summary = run_sweep(s, client, tmp_path, progress=False)
    runs = read_runs(tmp_path / "other")
    assert summary.ok and summary.search.complete
    assert runs.height == runs["combo"].n_unique() == 16
    assert summary.search.settings["options"] == options
    assert (runs["fast"] < runs["slow"]).all()


def test_samples_and_a_search_exclude_each_other() -> None:
    with pytest.raises(SpecError, match="'samples'"):
        spec("x", {"method": "tpe", "trials": 10}, samples=20).resolve()
    with pytest.raises(SpecError, match="differs from the walk-forward's"):
        spec("x", {"method": "tpe", "trials": 10, "objective": "calmar"},
             walk_forward={"train": 300, "test": 150, "objective": "sharpe"}).resolve()


# ------------------------------------------------------------------- windows, DSR, PBO
RANGES = [["2010-01-01", "2011-06-30"], ["2011-07-01", "2013-06-30"]]


def test_several_windows_mean_objective_and_every_trial_counted(
        client: Any, tmp_path: Path) -> None:
    s = spec("win", {"method": "tpe", "trials": 24, "seed": 2, "batch": 4},
             windows={"ranges": RANGES})
    summary = run_sweep(s, client, tmp_path, progress=False)
    root = tmp_path / "win"
    runs = read_runs(root)
    rec = record(root)
    assert summary.ok and runs.height == 48  # every trial on both windows
    per_trial = runs.group_by("trial").agg(pl.col("sharpe").mean(), pl.len())
    assert (per_trial["len"] == 2).all()
    best = per_trial.sort("sharpe", descending=True).row(0, named=True)
    assert rec.search.best_value == pytest.approx(best["sharpe"], rel=1e-12)
    assert rec.search.best_trial == best["trial"]
    # n_trials and DSR count every stored trial: the verdict of each window deflates
    # the best run's Sharpe for all 24 trials and their spread.
    assert rec.search.n_trials == 24
    for w, verdict in enumerate(rec.overfit):
        trials = runs.filter(pl.col("window") == w)
        assert verdict.n_trials == trials.height == 24
        b = trials.sort("sharpe", descending=True).row(0, named=True)
        scale = math.sqrt(rec.windows[w].bars_per_year)
        want = deflated_sharpe_ratio(b["sharpe"] / scale, b["n_bars"], b["skew"],
                                     b["kurtosis"],
                                     trial_srs=trials["sharpe"].to_numpy() / scale)
        assert verdict.dsr == pytest.approx(want, rel=1e-12)
        fewer = deflated_sharpe_ratio(b["sharpe"] / scale, b["n_bars"], b["skew"],
                                      b["kurtosis"],
                                      trial_srs=trials["sharpe"].to_numpy()[:6] / scale)
        assert verdict.dsr != pytest.approx(fewer, rel=1e-6)  # the count matters
        assert verdict.pbo is not None and verdict.best_run_id == b["run_id"]
    # objective_window: the trials' value is window 1's sharpe
    s1 = spec("win1", {"method": "tpe", "trials": 12, "seed": 2, "batch": 4,
                       "objective_window": 1}, windows={"ranges": RANGES})
    run_sweep(s1, client, tmp_path, progress=False)
    r1 = read_runs(tmp_path / "win1").filter(pl.col("window") == 1)
    top = r1.sort("sharpe", descending=True).row(0, named=True)
    assert record(tmp_path / "win1").search.best_value == top["sharpe"]


@pytest.mark.parametrize("pruner", ["successive_halving", "hyperband"])
def test_pruned_trials_are_stored_and_counted(pruner: str, client: Any,
                                              tmp_path: Path) -> None:
    s = spec("prune", {"method": "tpe", "trials": 32, "seed": 4, "batch": 8,
                       "prune": pruner, "prune_options": {"reduction_factor": 2}},
             windows={"length": 220, "step": 220})
    summary = run_sweep(s, client, tmp_path, progress=False)
    root = tmp_path / "prune"
    runs = read_runs(root)
    rec = record(root)
    n_windows = len(rec.windows)
    assert summary.ok and n_windows == 4
    per = runs.group_by("trial").agg(pl.len().alias("n"), pl.col("pruned").all().alias("all"),
                                     pl.col("pruned").any().alias("any"),
                                     pl.col("window").max().alias("last"))
    assert per.height == 32 == rec.search.n_trials  # pruned ones are trials too
    assert (per["all"] == per["any"]).all()  # a trial is pruned on all its rows or none
    pruned, complete = per.filter(pl.col("all")), per.filter(~pl.col("all"))
    assert pruned.height == rec.search.n_pruned > 0 and complete.height > 0
    assert (pruned["n"] < n_windows).all() and (complete["n"] == n_windows).all()
    assert (pruned["n"] == pruned["last"] + 1).all()  # evaluated window by window
    # window 0 holds every trial; the verdicts count the trials each window ran
    counts = runs.group_by("window").len().sort("window")["len"].to_list()
    assert counts[0] == 32 and counts == sorted(counts, reverse=True)
    assert [v.n_trials for v in rec.overfit] == counts
    # the best is a complete trial: the mean over all the windows
    means = (runs.filter(~pl.col("pruned")).group_by("trial")
             .agg(pl.col("sharpe").mean()).sort("sharpe", descending=True))
    assert rec.search.best_value == pytest.approx(means["sharpe"][0], rel=1e-12)
    table = trial_values(pl.scan_parquet(root / "runs" / "**" / "*.parquet",
                                         hive_partitioning=True), rec.search)
    assert int((table["state"] == "pruned").sum()) == rec.search.n_pruned


def test_walk_forward_one_seeded_search_a_fold(client: Any, tmp_path: Path) -> None:
    import sweep

    s = spec("wf", {"method": "tpe", "trials": 12, "seed": 9, "batch": 4},
             walk_forward={"train": 300, "test": 150, "objective": "sharpe"})
    result = sweep.walk_forward(s, client, tmp_path, progress=False)
    root = tmp_path / "wf"
    runs = read_runs(root)
    rec = record(root)
    n_folds = rec.walk_forward.n_folds
    assert result.ok and n_folds >= 3 and len(rec.search.studies) == n_folds
    for w in range(n_folds):
        fold = runs.filter(pl.col("window") == w)
        assert sorted(fold["trial"].to_list()) == list(range(12))
        winner = result.folds.filter(pl.col("fold") == w).row(0, named=True)
        best = fold.sort("sharpe", descending=True).row(0, named=True)
        assert (winner["fast"], winner["slow"]) == (best["fast"], best["slow"])
        assert rec.search.studies[w].best_value == best["sharpe"]
    seeds = [st.seed for st in rec.search.studies]
    assert len(set(seeds)) == n_folds  # each fold its own seed ...
    first = [runs.filter(pl.col("window") == w).sort("trial")["combo"].to_list()
             for w in range(n_folds)]
    assert len({tuple(c) for c in first}) == n_folds  # ... so its own proposals
    assert [v.n_trials for v in rec.overfit] == [12] * n_folds


# ------------------------------------------------------------------- visible
def test_progress_bar_show_and_report(det_two: Path, client: Any, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_sweep(spec("bar", DET | {"trials": 12}), client, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "12/12" in err and "trials" in err and "best sharpe" in err
    res = run_cli("show", det_two)
    assert res.returncode == 0, res.stderr
    s = record(det_two).search
    assert "search tpe (TPESampler, seed 5, batch 4): 32 trials by sharpe" in res.stdout
    assert "convergence: best sharpe after N trials" in res.stdout
    row = next(line for line in res.stdout.splitlines() if line.strip().startswith("best "))
    assert row.split()[-3] == f"{s.best_value:.4g}" and row.endswith(f"(trial {s.best_trial})")
    html = render_report(det_two)
    assert 'id="convergence-chart"' in html and "Search convergence" in html
    assert html.count('class="trial-dot"') == 32  # every complete trial a dot
    assert html.index('id="convergence"') < html.index('id="heatmaps"')


# ------------------------------------------------------------------- a killed client
KILL_CONFIG = """
name = "killed"
strategy = "ma_cross"
data = "synthetic:assets=60,bars=2000,seed=8"
constraints = ["fast < slow"]
[grid]
fast = {start = 2, stop = 60, step = 1}
slow = {start = 20, stop = 300, step = 5}
kind = ["sma", "ema"]
[search]
method = "tpe"
trials = 72
seed = 11
batch = 4
"""


def test_client_killed_mid_search_then_rerun_continues(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "killed.toml", KILL_CONFIG)
    procs = DaskProcesses(tmp_path / "dask")
    (tmp_path / "dask").mkdir()
    try:
        procs.start_scheduler()
        procs.ensure_workers(2)
        reference = run_sweep(SweepSpec.from_toml(config), procs.address, tmp_path / "ref",
                              progress=False)
        assert reference.ok and reference.search.n_trials == 72
        out = tmp_path / "out"
        root = out / "killed"
        log = tmp_path / "run.log"
        proc = start_cli("run", config, "--out", out, "--cluster", procs.address,
                         "--no-progress", log=log)
        try:
            def started() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"the search ended before the kill:\n"
                                         f"{log.read_text(errors='replace')[-3000:]}")
                return len(part_files(root)) >= 6
            wait_for(started, 240, "6 part files")
        finally:
            kill_group(proc, signal.SIGKILL)
        assert proc.returncode == -signal.SIGKILL
        time.sleep(3)  # tasks running at the kill finish and write their files
        stored = read_runs(root)
        assert read_meta(root)["status"] == "running" and 0 < stored.height < 72
        res = run_cli("run", config, "--out", out, "--cluster", procs.address,
                      "--no-progress", timeout=400)
        assert res.returncode == 0, (res.stdout, res.stderr)
        assert "72 trials" in res.stdout
        resumed = record(root).search
        assert resumed.complete and resumed.runs_computed == 72 - stored.height
        assert_frame_equal(trials_of(root), trials_of(tmp_path / "ref" / "killed"),
                           check_exact=True)
    finally:
        procs.close()
