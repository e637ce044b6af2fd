"""The worker side of a sweep without a cluster: a chunk's tables (every window, in
order), the per-worker segment of prepared indicators, and run ids.

``run_chunk`` is called in this process on an installed context, as a worker would call
it; the reference is ``sweep.evaluate`` on the whole grid.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import sweep
import sweep.plan
import sweep.worker as worker
from engine import METRIC_NAMES
from sweep import SweepSpec
from sweep.grid import ENGINE_AXES
from sweep.plan import Plan
from sweep.store import TOKEN_NAME as TOKEN_FILE
from sweep.worker import StoreTarget, SweepContextPlugin, run_chunk, run_ids

GRID = {"fast": [3, 5, 8], "slow": [20, 40], "kind": ["sma", "ema"],
        "commission": [0.0, 0.001]}
RANGES = [["2010-01-01", "2010-08-31"], ["2010-07-01", "2011-06-30"],
          ["2010-03-01", "2011-03-31"]]


def _spec(**kw: Any) -> SweepSpec:
    return SweepSpec(name="w", strategy="ma_cross", data="synthetic:assets=4,bars=400,seed=3",
                     grid=GRID, constraints=("fast * 5 != slow",),
                     windows={"ranges": RANGES}, **kw)


def _install(spec: SweepSpec, key: str) -> Any:
    resolved = spec.resolve()
    SweepContextPlugin(key, resolved).setup()
    return resolved


def _chunks(resolved: Any, key: str, chunk_size: int) -> pl.DataFrame:
    plan = Plan(chunk_size, resolved.n_combos, len(resolved.windows))
    frames = []
    for cid in range(plan.n_chunks):
        tables = run_chunk(key, plan.chunk(cid))
        assert len(tables) == len(resolved.windows)
        frames += [pl.from_arrow(t).with_columns(pl.lit(w).alias("window"))
                   for w, t in enumerate(tables)]
    return pl.concat(frames)


@pytest.mark.parametrize("samples", [None, 17])
def test_chunks_across_small_segments_equal_evaluate(monkeypatch: pytest.MonkeyPatch,
                                                     samples: int | None) -> None:
    # segments of 2 chunks of 3 positions: every chunk slices a cached segment, and the
    # worker moves from segment to segment
    monkeypatch.setattr(sweep.plan, "SEGMENT_COMBOS", 6)
    key = f"segments-{samples}"
    resolved = _install(_spec(samples=samples, seed=4), key)
    got = _chunks(resolved, key, chunk_size=3)
    assert got["error"].null_count() == got.height
    want = sweep.evaluate(resolved.panel, "ma_cross", GRID, resolved.config,
                          constraints=["fast * 5 != slow"], windows=RANGES)
    if samples is not None:
        combos = resolved.grid.take(resolved.combos)
        want = want.join(combos.select("combo", *GRID), on=list(GRID), how="semi")
        assert got.height == samples * len(RANGES)
    assert got.height == want.height
    keys = ["window", *GRID]
    a = got.sort(keys)
    b = want.sort(keys)
    for m in METRIC_NAMES:
        assert np.array_equal(a[m].to_numpy(), b[m].to_numpy(), equal_nan=True), m
    # the worker keeps one segment a sweep, the last one, until its plugin is torn down
    assert worker._SEGMENTS[key][1] is not None
    SweepContextPlugin(key, resolved).teardown()
    assert key not in worker._SEGMENTS and key not in worker._CONTEXTS


def test_a_segment_too_big_for_the_budget_is_prepared_chunk_by_chunk(
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = "budget"
    resolved = _install(_spec(), key)
    want = _chunks(resolved, key, chunk_size=3)
    monkeypatch.setattr(worker, "SEGMENT_BYTES", 1)  # nothing fits
    worker._SEGMENTS.pop(key, None)
    got = _chunks(resolved, key, chunk_size=3)
    assert worker._SEGMENTS[key][1] is None  # remembered: no segment for this sweep
    assert got.drop("run_id").equals(want.drop("run_id"))
    SweepContextPlugin(key, resolved).teardown()


def test_a_run_that_shorts_in_one_window_fails_in_that_window_only() -> None:
    # long_short on a long-only engine: refused where the run goes short, which happens
    # in the long window but not in a few bars where no cross down occurs
    spec = SweepSpec(name="s", strategy="ma_cross", data="synthetic:assets=3,bars=400,seed=3",
                     grid={"fast": [3], "slow": [20], "long_short": [False, True]},
                     windows={"ranges": [["2010-01-01", "2011-06-30"],
                                         ["2010-01-01", "2010-01-20"]]})
    resolved = _install(spec, "shorts")
    tables = run_chunk("shorts", Plan(2, resolved.n_combos, 2).chunk(0))
    long_window, short_window = (pl.from_arrow(t) for t in tables)
    assert long_window["error"].to_list()[0] is None
    assert "allow_short" in long_window["error"].to_list()[1]
    assert short_window["error"].null_count() == 2
    assert not short_window["n_bars"].is_nan().any()  # computed, not error rows


def test_a_chunk_bigger_than_a_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep.plan, "SEGMENT_COMBOS", 2)
    plan = Plan(5, 12, 1)
    assert [plan.chunk(c).segment for c in range(3)] == [(0, 5), (5, 10), (10, 12)]
    monkeypatch.setattr(sweep.plan, "SEGMENT_COMBOS", 11)
    assert [plan.chunk(c).segment for c in range(3)] == [(0, 10), (0, 10), (10, 12)]


def _reference_run_ids(resolved: Any, table: pl.DataFrame, window: int) -> list[str]:
    """The definition, run by run: blake2b of the canonical JSON of the run."""
    w = resolved.windows[window]
    defaults = {k: p.default for k, p in resolved.strategy.params.items()}
    engine = resolved.config.to_dict()
    out = []
    for row in table.drop("combo").iter_rows(named=True):
        text = json.dumps({
            "strategy": resolved.strategy.name,
            "params": defaults | {k: v for k, v in row.items() if k not in ENGINE_AXES},
            "engine": engine | {k: v for k, v in row.items() if k in ENGINE_AXES},
            "window": [str(w.start), str(w.end)],
            "data": resolved.panel.fingerprint,
        }, sort_keys=True, default=str)
        out.append(hashlib.blake2b(text.encode(), digest_size=10).hexdigest())
    return out


def test_run_ids_follow_their_definition() -> None:
    resolved = _spec(engine={"fixed_fee": 0.5, "stop_loss": 0.05}).resolve()
    table = resolved.combos_table(0, resolved.n_combos)
    for w in range(len(RANGES)):
        ids = run_ids(resolved, table, resolved.windows[w])
        assert ids == _reference_run_ids(resolved, table, w)
        assert len(set(ids)) == table.height
    # a grid of floats, bools and a string, in another column order
    spec = SweepSpec(name="f", strategy="mean_reversion", data="synthetic:assets=3,bars=300",
                     grid={"exit_z": [0.0, 0.25], "entry_z": [1.0, 1.5, 2.0],
                           "slippage": [0.0, 0.0005], "allow_short": [False, True]})
    resolved = spec.resolve()
    table = resolved.combos_table(0, resolved.n_combos)
    assert run_ids(resolved, table, resolved.windows[0]) == \
        _reference_run_ids(resolved, table, 0)
    # -0.0 and 0.0 compare equal but are two grid values: two runs, two ids
    spec = SweepSpec(name="z", strategy="ma_cross", data="synthetic:assets=2,bars=200",
                     grid={"fast": [3], "slow": [20], "commission": [0.0, -0.0, 0.001]})
    resolved = spec.resolve()
    table = resolved.combos_table(0, resolved.n_combos)
    ids = run_ids(resolved, table, resolved.windows[0])
    assert ids == _reference_run_ids(resolved, table, 0) and len(set(ids)) == 3


def test_a_worker_writes_only_while_the_sweep_owns_the_store(tmp_path: Any) -> None:
    key = "owner"
    resolved = _install(_spec(), key)
    plan = Plan(4, resolved.n_combos, len(resolved.windows))
    root = tmp_path / "w"
    root.mkdir()
    target = StoreTarget(str(root), "t0k3n")
    # no token (another machine, or the client has stopped): tables come back, no files
    tables = run_chunk(key, plan.chunk(1), target)
    assert [t.num_rows for t in tables] == [4, 4, 4]
    assert not (root / "runs").exists()
    (root / TOKEN_FILE).write_text("t0k3n")
    assert run_chunk(key, plan.chunk(1), target) == [4, 4, 4]
    files = sorted(p.relative_to(root / "runs").as_posix()
                   for p in (root / "runs").rglob("*.parquet"))
    assert files == [f"window={w}/part-0000001.parquet" for w in range(3)]
    got = pl.read_parquet(root / "runs" / "window=2" / "part-0000001.parquet")
    assert got.equals(pl.from_arrow(tables[2]))
    # the folder taken over between the files: the write in progress is dropped
    (root / TOKEN_FILE).write_text("another sweep")
    assert isinstance(run_chunk(key, plan.chunk(2), target)[0], pa.Table)
    assert not list((root / "runs").rglob("part-0000002.parquet"))
    assert not [p for p in root.rglob("*.tmp") if p.is_file()]


def test_a_call_releases_only_its_own_token(tmp_path: Any) -> None:
    from sweep.runner import _release_token

    (tmp_path / TOKEN_FILE).write_text("theirs")
    _release_token(StoreTarget(str(tmp_path), "mine"))
    assert (tmp_path / TOKEN_FILE).read_text() == "theirs"
    _release_token(StoreTarget(str(tmp_path), "theirs"))
    assert not (tmp_path / TOKEN_FILE).exists()
