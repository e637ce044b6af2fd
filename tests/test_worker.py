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
from sweep.worker import TOKEN_FILE, StoreTarget, SweepContextPlugin, run_chunk, run_ids

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
    # the worker keeps one segment, the last one, until the sweep's plugin is torn down
    assert worker._SEGMENT[0][0][0] == key
    SweepContextPlugin(key, resolved).teardown()
    assert worker._SEGMENT[0] is None and key not in worker._CONTEXTS


def test_a_chunk_bigger_than_a_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep.plan, "SEGMENT_COMBOS", 2)
    plan = Plan(5, 12, 1)
    assert [plan.chunk(c).segment for c in range(3)] == [(0, 5), (5, 10), (10, 12)]
    monkeypatch.setattr(sweep.plan, "SEGMENT_COMBOS", 11)
    assert [plan.chunk(c).segment for c in range(3)] == [(0, 10), (0, 10), (10, 12)]


def _reference_run_ids(resolved: Any, table: pl.DataFrame, window: int) -> list[str]:
    """The definition, run by run: blake2b of the canonical JSON of the run."""
    i0, i1 = resolved.windows[window]
    ts = resolved.panel.timestamps
    defaults = {k: p.default for k, p in resolved.strategy.params.items()}
    engine = resolved.config.to_dict()
    out = []
    for row in table.drop("combo").iter_rows(named=True):
        text = json.dumps({
            "strategy": resolved.strategy.name,
            "params": defaults | {k: v for k, v in row.items() if k not in ENGINE_AXES},
            "engine": engine | {k: v for k, v in row.items() if k in ENGINE_AXES},
            "window": [str(ts[i0]), str(ts[i1 - 1])],
            "data": resolved.panel.fingerprint,
        }, sort_keys=True, default=str)
        out.append(hashlib.blake2b(text.encode(), digest_size=10).hexdigest())
    return out


def test_run_ids_follow_their_definition() -> None:
    resolved = _spec(engine={"fixed_fee": 0.5, "stop_loss": 0.05}).resolve()
    table = resolved.combos_table(0, resolved.n_combos)
    for w in range(len(RANGES)):
        ids = run_ids(resolved, table, w)
        assert ids == _reference_run_ids(resolved, table, w)
        assert len(set(ids)) == table.height
    # a grid of floats, bools and a string, in another column order
    spec = SweepSpec(name="f", strategy="mean_reversion", data="synthetic:assets=3,bars=300",
                     grid={"exit_z": [0.0, 0.25], "entry_z": [1.0, 1.5, 2.0],
                           "slippage": [0.0, 0.0005], "allow_short": [False, True]})
    resolved = spec.resolve()
    table = resolved.combos_table(0, resolved.n_combos)
    assert run_ids(resolved, table, 0) == _reference_run_ids(resolved, table, 0)


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
