"""run_sweep on a real LocalCluster (2 worker processes): the result store's layout and
columns, equality with sweep.evaluate, run ids, resume, refusal of a different sweep,
determinism across workers / chunk sizes / resumed histories, failing runs, atomic writes,
and the CLI end to end (``backsweep run`` and ``backsweep show`` in subprocesses).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cluster_fixtures import (
    REPO,
    TESTS,
    part_files,
    read_meta,
    read_runs,
    run_cli,
    same_runs,
    write_toml,
)

import sweep
from engine import METRIC_NAMES, EngineConfig
from sweep import SpecError, SweepSpec, load_results, run_sweep
from sweep.plan import Plan
from sweep.store import ResultStore, atomic_write
from sweep.warmup import warm_up

GRID = {"fast": [3, 5, 8, 13], "slow": [20, 40, 60], "kind": ["sma", "ema"],
        "commission": [0.0, 0.001]}
RANGES = [["2010-01-01", "2010-08-31"], ["2010-07-01", "2011-06-30"]]
SPEC = SweepSpec(
    name="grid", strategy="ma_cross", data="synthetic:assets=6,bars=400,seed=5",
    grid=GRID, engine={"init_cash": 100_000.0, "fixed_fee": 1.0},
    windows={"ranges": RANGES},
)
N_RUNS = 4 * 3 * 2 * 2 * 2
CHUNK = 7
PARAMS = ["fast", "slow", "kind", "commission"]
PART = re.compile(r"^window=(\d+)/part-(\d{7})\.parquet$")


def quiet(spec: SweepSpec | str | Path, client: Any, out: Path, **kw: Any) -> sweep.SweepSummary:
    return run_sweep(spec, client, out, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(client: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SPEC swept once with chunk_size=7: OUT/NAME, shared read-only by several tests."""
    out = tmp_path_factory.mktemp("reference")
    summary = quiet(SPEC, client, out, chunk_size=CHUNK)
    assert summary.ok, summary.describe()
    assert summary.n_runs == N_RUNS and summary.chunks_run == summary.chunks_total
    assert summary.runs_computed == N_RUNS and summary.worker_threads == 2
    assert 0 < summary.compute_seconds < summary.seconds
    assert summary.runs_per_second == N_RUNS / summary.compute_seconds
    assert f"computed {N_RUNS:,} runs in" in summary.describe()
    assert read_meta(out / SPEC.name)["compute_last_call"] == {
        "runs": N_RUNS, "seconds": round(summary.compute_seconds, 3), "worker_threads": 2}
    return out / SPEC.name


# ---------------------------------------------------------------------- the store
def test_store_layout(reference: Path) -> None:
    meta = read_meta(reference)
    assert meta["status"] == "complete"
    assert meta["name"] == "grid" and meta["digest"] == SPEC.digest
    assert meta["n_runs"] == meta["runs_written"] == N_RUNS
    assert meta["runs_failed"] == 0
    assert meta["spec"]["grid"] == {k: list(v) for k, v in GRID.items()}
    plan = Plan(**meta["plan"])
    assert plan.chunk_size == CHUNK and plan.n_windows == 2
    assert [w["window"] for w in meta["windows"]] == [0, 1]
    # only runs/window=K/part-NNNNNNN.parquet (and sweep.json): no temp files left over
    files = sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*")
                   if p.is_file())
    assert files[-1] == "sweep.json"
    parts = [f.removeprefix("runs/") for f in files[:-1]]
    assert all(f.startswith("runs/") for f in files[:-1])
    matches = [PART.match(f) for f in parts]
    assert all(matches), parts
    # a chunk is one block of combinations on every window: one file a window, same id
    pairs = sorted((int(m.group(2)), int(m.group(1))) for m in matches)
    assert pairs == [(cid, w) for cid in range(plan.n_chunks) for w in range(2)]
    for m in matches:
        cid = int(m.group(2))
        table = pl.read_parquet(reference / "runs" / m.group(0))
        assert set(table["chunk_id"].to_list()) <= {cid}
        chunk = plan.chunk(cid)
        assert table["combo"].to_list() == list(range(chunk.start, chunk.stop))


def test_columns_and_types(reference: Path) -> None:
    df = pl.scan_parquet(reference / "runs", hive_partitioning=True).collect()
    assert df.height == N_RUNS
    assert "window" in df.columns                             # from the hive folder
    cols = [c for c in df.columns if c != "window"]           # polars puts it last
    first = ["run_id", "chunk_id", "strategy", "window_start", "window_end"]
    assert cols[:len(first)] == first
    for p in PARAMS:
        assert p in cols
    assert cols.index("window_end") < min(cols.index(p) for p in PARAMS)
    assert max(cols.index(p) for p in PARAMS) < min(cols.index(m) for m in METRIC_NAMES)
    assert cols[-1] == "error"
    schema = df.schema
    assert schema["run_id"] == pl.String and schema["strategy"] == pl.String
    assert schema["chunk_id"] == pl.Int64 and schema["window"].is_integer()
    assert schema["window_start"] == pl.Datetime("ns") == schema["window_end"]
    assert schema["fast"] == pl.Int64 and schema["slow"] == pl.Int64
    assert schema["kind"] == pl.String and schema["commission"] == pl.Float64
    assert all(schema[m] == pl.Float64 for m in METRIC_NAMES)
    assert schema["error"] == pl.String
    assert df["error"].null_count() == N_RUNS
    assert (df["strategy"] == "ma_cross").all()
    # window dates: the same as in sweep.json, one pair per window
    meta = read_meta(reference)
    dates = (df.group_by("window").agg(pl.col("window_start").unique(),
                                       pl.col("window_end").unique()).sort("window"))
    for row, w in zip(dates.iter_rows(named=True), meta["windows"], strict=True):
        assert len(row["window_start"]) == len(row["window_end"]) == 1
        assert np.datetime64(row["window_start"][0], "ns") == np.datetime64(w["start"])
        assert np.datetime64(row["window_end"][0], "ns") == np.datetime64(w["end"])
    assert str(dates["window_start"][0][0])[:10] >= RANGES[0][0]
    assert str(dates["window_end"][1][0])[:10] <= RANGES[1][1]


def test_load_results(reference: Path) -> None:
    lf = load_results(reference)
    assert isinstance(lf, pl.LazyFrame)
    a = lf.collect().sort("run_id")
    b = load_results(reference / "runs").collect().sort("run_id")
    c = pl.scan_parquet(reference / "runs", hive_partitioning=True).collect().sort("run_id")
    assert a.height == N_RUNS
    assert a.equals(b) and a.select(c.columns).equals(c)
    with pytest.raises(FileNotFoundError):
        load_results(reference.parent / "nothing_here")


def test_results_equal_evaluate(reference: Path) -> None:
    panel = SPEC.resolve().panel
    expected = sweep.evaluate(panel, "ma_cross", GRID,
                              EngineConfig(init_cash=100_000.0, fixed_fee=1.0),
                              windows=[tuple(r) for r in RANGES])
    got = read_runs(reference)
    assert got.height == expected.height == N_RUNS
    joined = got.join(expected, on=["window", "combo"], how="inner", suffix="_ev")
    assert joined.height == N_RUNS
    for col in [*PARAMS, "window_start", "window_end"]:
        assert (joined[col] == joined[f"{col}_ev"]).all(), col
    for m in METRIC_NAMES:  # bit-identical, NaN where NaN
        a, b = joined[m].to_numpy(), joined[f"{m}_ev"].to_numpy()
        assert np.array_equal(a, b, equal_nan=True), m


def test_run_ids_unique_and_deterministic(client: Any, reference: Path,
                                          tmp_path: Path) -> None:
    ref = read_runs(reference)
    assert ref["run_id"].n_unique() == N_RUNS
    assert ref["run_id"].str.contains(r"^[0-9a-f]{20}$").all()
    # the same combination in two windows: two runs, two ids
    per_combo = ref.group_by("combo").agg(pl.col("run_id").n_unique())
    assert (per_combo["run_id"] == 2).all()
    # another sweep of the same runs cut into other chunks gives the same ids
    summary = quiet(SPEC, client, tmp_path, chunk_size=1)
    assert summary.ok and summary.chunks_total == 48
    again = read_runs(tmp_path / SPEC.name)
    assert again.select("window", "combo", "run_id").sort("window", "combo").equals(
        ref.select("window", "combo", "run_id").sort("window", "combo"))
    same_runs(ref, again, ignore=["chunk_id"])
    assert again["chunk_id"].n_unique() == 48


# ------------------------------------------------------------------ resume, refusal
def test_rerun_of_a_finished_sweep_computes_nothing(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference, out / SPEC.name)
    before = {p: p.stat().st_mtime_ns for p in part_files(out / SPEC.name)}
    # an unreachable scheduler: a finished sweep must not even connect
    summary = quiet(SPEC, "tcp://127.0.0.1:1", out)
    assert summary.chunks_run == 0
    assert summary.chunks_skipped == summary.chunks_total == Plan(**read_meta(
        reference)["plan"]).n_chunks
    assert summary.n_runs == N_RUNS and summary.ok
    assert summary.runs_computed == 0 and summary.runs_per_second is None
    assert "computed" not in summary.describe().replace("computed now", "")
    assert {p: p.stat().st_mtime_ns for p in part_files(out / SPEC.name)} == before
    assert read_meta(out / SPEC.name)["status"] == "complete"


def test_different_spec_refused_unless_overwrite(client: Any, reference: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    root = out / SPEC.name
    shutil.copytree(reference, root)
    meta_before = (root / "sweep.json").read_bytes()
    files_before = sorted(part_files(root))
    other = SweepSpec(name=SPEC.name, strategy="ma_cross", data=SPEC.data,
                      grid={"fast": [4, 6], "slow": [30]})
    with pytest.raises(SpecError, match="different sweep"):
        quiet(other, client, out)
    assert (root / "sweep.json").read_bytes() == meta_before
    assert sorted(part_files(root)) == files_before
    # other data is another sweep too
    moved = dataclasses.replace(SPEC, data="synthetic:assets=6,bars=400,seed=6")
    with pytest.raises(SpecError, match="overwrite"):
        quiet(moved, client, out)
    summary = quiet(other, client, out, overwrite=True, chunk_size=1)
    assert summary.ok and summary.n_runs == 2 and summary.chunks_run == 2
    assert read_meta(root)["digest"] == other.digest
    df = read_runs(root)
    assert df.height == 2 and set(df["fast"]) == {4, 6}
    assert "commission" not in df.columns


def test_workers_write_or_send_their_chunks(client: Any, reference: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """On a local cluster the workers see the output folder and write the chunk files
    themselves (the client writes none); with worker_writes=False every chunk travels to
    the client, which writes it. Same runs either way; no token file left behind."""
    client_writes: list[int] = []
    real = ResultStore.write_chunk

    def spy(self: ResultStore, window: int, chunk_id: int, *a: Any, **k: Any) -> Path:
        client_writes.append(chunk_id)
        return real(self, window, chunk_id, *a, **k)

    monkeypatch.setattr(ResultStore, "write_chunk", spy)  # this process only: the client
    a = quiet(SPEC, client, tmp_path / "a", chunk_size=CHUNK)
    assert a.ok and client_writes == []
    b = quiet(SPEC, client, tmp_path / "b", chunk_size=CHUNK, worker_writes=False)
    assert b.ok and sorted(client_writes) == sorted(
        cid for cid in range(b.chunks_total) for _ in range(2))
    for root in (a.path, b.path):
        assert not any(p.name == ".worker-token" for p in root.rglob("*"))
        same_runs(read_runs(reference), read_runs(root))


def test_older_record_layout_refused_unless_overwrite(client: Any, reference: Path,
                                                      tmp_path: Path) -> None:
    """Results of this same sweep written by an older backsweep (a sweep.json without
    the record's schema version) are refused, never misread, with a message saying how
    to rerun; --overwrite recomputes them."""
    out = tmp_path / "out"
    root = out / SPEC.name
    shutil.copytree(reference, root)
    meta = read_meta(root)
    del meta["schema"]
    meta["status"] = "running"
    (root / "sweep.json").write_text(json.dumps(meta))
    files_before = sorted(part_files(root))
    with pytest.raises(SpecError, match=r"older backsweep.*--overwrite"):
        quiet(SPEC, client, out)
    assert sorted(part_files(root)) == files_before
    summary = quiet(SPEC, client, out, overwrite=True, chunk_size=CHUNK)
    assert summary.ok and summary.chunks_run == summary.chunks_total
    same_runs(read_runs(reference), read_runs(root))


@pytest.fixture(scope="module")
def one_worker_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SPEC on a separate LocalCluster of ONE worker, the reference's chunk size."""
    out = tmp_path_factory.mktemp("one_worker")
    summary = quiet(SPEC, "local", out, workers=1, chunk_size=CHUNK)
    assert summary.ok and summary.chunks_run == summary.chunks_total
    return out / SPEC.name


def test_same_table_on_one_or_two_workers(reference: Path, one_worker_run: Path) -> None:
    same_runs(read_runs(reference), read_runs(one_worker_run))  # chunk ids included


@pytest.mark.parametrize("chunk_size", [1, None], ids=["chunk1", "calibrated"])
def test_same_table_for_any_chunk_size(client: Any, reference: Path, tmp_path: Path,
                                       chunk_size: int | None) -> None:
    summary = quiet(SPEC, client, tmp_path, chunk_size=chunk_size)
    assert summary.ok and summary.n_runs == N_RUNS
    plan = read_meta(tmp_path / SPEC.name)["plan"]
    if chunk_size is not None:
        assert plan["chunk_size"] == chunk_size
    same_runs(read_runs(reference), read_runs(tmp_path / SPEC.name), ignore=["chunk_id"])


def test_resumed_history_gives_the_same_table(client: Any, reference: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    root = out / SPEC.name
    shutil.copytree(reference, root)
    parts = part_files(root)
    gone = parts[1::3]
    for p in gone:
        p.unlink()
    # what a client killed while writing leaves behind: a temp file, never a part file
    (root / ".tmp").mkdir(exist_ok=True)
    stale = root / ".tmp" / f".{gone[0].name}.k1ll3d.tmp"
    stale.write_bytes(b"PAR1 half a file")
    summary = quiet(SPEC, client, out, chunk_size=1)  # the stored plan wins on resume
    # a chunk with any window's file missing is recomputed (all its windows rewritten)
    redo = {int(PART.match(p.relative_to(root / "runs").as_posix()).group(2)) for p in gone}
    n_chunks = Plan(**read_meta(reference)["plan"]).n_chunks
    assert summary.chunks_run == len(redo)
    assert summary.chunks_skipped == n_chunks - len(redo)
    # the rate counts this call's runs only: each redone chunk's runs on every window
    assert summary.runs_computed == sum(
        min(CHUNK, N_RUNS // 2 - cid * CHUNK) for cid in redo) * 2
    assert summary.ok and summary.n_runs == N_RUNS
    assert not stale.exists()
    assert read_meta(root)["plan"]["chunk_size"] == CHUNK
    same_runs(read_runs(reference), read_runs(root))


def test_sampled_sweep(client: Any, tmp_path: Path) -> None:
    spec = SweepSpec(name="sampled", strategy="ma_cross", data=SPEC.data, grid=GRID,
                     constraints=("fast * 4 < slow",), samples=9, seed=11,
                     windows={"ranges": RANGES})
    resolved = spec.resolve()
    summary = quiet(spec, client, tmp_path, chunk_size=4)
    assert summary.ok and summary.n_runs == 9 * 2
    df = read_runs(tmp_path / "sampled")
    assert sorted(set(df["combo"])) == resolved.combos.tolist()
    assert (df["fast"] * 4 < df["slow"]).all()
    assert df["run_id"].n_unique() == 18


def test_concurrent_sweeps_of_one_spec_in_other_chunks_do_not_mix(
        client: Any, reference: Path, tmp_path: Path) -> None:
    """Two clients of one cluster sweep the same spec at once, cut into different chunks
    (two users, or two calibrated chunk sizes). Each gets exactly its own runs: task keys
    must name what a task computes, not only the chunk's number."""
    from distributed import Client

    results: dict[int, Any] = {}

    def sweep_with(chunk_size: int) -> None:
        with Client(client.scheduler.address, timeout=30) as own:
            results[chunk_size] = quiet(SPEC, own, tmp_path / f"c{chunk_size}",
                                        chunk_size=chunk_size)

    threads = [threading.Thread(target=sweep_with, args=(n,)) for n in (4, CHUNK)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert sorted(results) == [4, CHUNK]
    ref = read_runs(reference)
    for n in (4, CHUNK):
        got = read_runs(tmp_path / f"c{n}" / SPEC.name)
        assert got.height == N_RUNS and got["run_id"].n_unique() == N_RUNS, \
            f"chunk_size={n}: {got.height} rows, {got['run_id'].n_unique()} distinct runs"
        same_runs(ref, got, ignore=["chunk_id"])


def test_a_finished_sweep_leaves_no_data_on_the_cluster(client: Any, tmp_path: Path) -> None:
    """The sweep's context (spec and, for file data, the whole panel) reaches the workers
    through a plugin; a long-lived shared cluster must not keep one per sweep forever."""
    synthetic_panel = pytest.importorskip("engine.data").synthetic_panel
    data = synthetic_panel(n_assets=5, n_bars=200, seed=9).write_parquet(tmp_path / "p.parquet")
    spec = SweepSpec(name="leak", strategy="ma_cross", data=str(data), grid={"fast": [3, 4]})
    assert quiet(spec, client, tmp_path, chunk_size=1).ok

    def contexts() -> list[str]:
        from sweep import worker

        return sorted(worker._CONTEXTS)

    def plugins(dask_scheduler: Any) -> list[str]:
        # Sweep contexts hold data; the cluster's setup and module plugins hold none and
        # are meant to stay for the next sweep.
        return sorted(n for n in dask_scheduler.worker_plugins
                      if n.startswith("backsweep-") and n != "backsweep-setup"
                      and not n.startswith("backsweep-module"))

    left = {addr: keys for addr, keys in client.run(contexts).items() if keys}
    assert not left, f"sweep contexts still held by workers: {left}"
    assert client.run_on_scheduler(plugins) == []



def test_workers_warm_up_only_the_sweeps_strategy(client: Any, tmp_path: Path) -> None:
    """A sweep compiles (or loads) only its own strategy's kernels on the workers: with a
    cold cache, every other strategy and the standalone backtest cost each worker ~6 s."""
    spec = SweepSpec(name="warm", strategy="breakout", data="synthetic:assets=3,bars=200",
                     grid={"channel": [10, 20]})
    assert quiet(spec, client, tmp_path).ok

    def warmed(dask_worker: Any) -> list[str]:
        return sorted(dask_worker.plugins["backsweep-setup"].report["warm_up"]["seconds"])

    assert set(map(tuple, client.run(warmed).values())) == {("breakout",)}
    everything = warm_up(n_assets=3, n_bars=120)
    assert everything["errors"] == {}
    assert {"backtest", "ma_cross", "top_n", "breakout"} <= set(everything["seconds"])

def test_corrupt_sweep_json_is_bad_input(client: Any, reference: Path, tmp_path: Path) -> None:
    """An unreadable OUT/NAME/sweep.json: exit 2 with one line (not a traceback); the
    message says --overwrite, and --overwrite does replace it."""
    cfg = write_toml(tmp_path / "small.toml", f"""
name = "small"
strategy = "ma_cross"
data = "{SPEC.data}"
[grid]
fast = [5, 10]
""")
    root = tmp_path / "out" / "small"
    root.mkdir(parents=True)
    (root / "sweep.json").write_text("{ half a json")
    args = ["run", cfg, "--out", tmp_path / "out", "--cluster", client.scheduler.address,
            "--chunk-size", "1", "--no-progress"]
    result = run_cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "sweep.json" in result.stderr and "--overwrite" in result.stderr
    assert (root / "sweep.json").read_text() == "{ half a json"
    result = run_cli(*args, "--overwrite")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert read_meta(root)["status"] == "complete"
    assert read_runs(root).height == 2


# ------------------------------------------------------------------- failing runs
@pytest.fixture(scope="module")
def explosive(client: Any) -> str:
    """tests/failing_strategy.py imported here and on every worker (also later ones)."""
    import failing_strategy

    client.upload_file(str(TESTS / "failing_strategy.py"))
    return failing_strategy.EXPLOSIVE_MA.name


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(client: Any, explosive: str,
                                                         tmp_path: Path) -> None:
    from failing_strategy import BAD_FUSE

    grid = {"fuse": [0, BAD_FUSE, 26], "fast": [5, 10], "slow": [40]}
    spec = SweepSpec(name="boom", strategy=explosive, data=SPEC.data, grid=grid)
    summary = quiet(spec, client, tmp_path, chunk_size=4)
    assert summary.n_runs == 6 and summary.n_errors == 2
    assert not summary.ok and not summary.failed_chunks
    assert "2 run(s) failed" in summary.describe()
    df = read_runs(tmp_path / "boom")
    bad = df.filter(pl.col("fuse") == BAD_FUSE)
    good = df.filter(pl.col("fuse") != BAD_FUSE)
    assert bad.height == 2 and good.height == 4
    assert bad["error"].str.contains("ValueError: explosive_ma: fuse 13 blew up").all()
    assert all(math.isnan(v) for m in METRIC_NAMES for v in bad[m])
    assert good["error"].null_count() == 4
    # the runs that worked are exactly what evaluate gives without the bad value
    ev = sweep.evaluate(spec.resolve().panel, explosive,
                        {"fuse": [0, 26], "fast": [5, 10], "slow": [40]})
    joined = good.join(ev, on=["fuse", "fast", "slow"], suffix="_ev")
    assert joined.height == 4
    for m in METRIC_NAMES:
        assert np.array_equal(joined[m].to_numpy(), joined[f"{m}_ev"].to_numpy(),
                              equal_nan=True), m
    assert read_meta(tmp_path / "boom")["runs_failed"] == 2


# ---------------------------------------------------------------- atomic writes
def test_concurrent_reader_never_sees_a_partial_file(client: Any, tmp_path: Path) -> None:
    root = tmp_path / SPEC.name
    stop = threading.Event()
    seen: set[str] = set()
    reads = 0
    problems: list[str] = []

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            for path in (root / "runs").glob("window=*/part-*.parquet"):
                seen.add(path.name)
                try:
                    table = pq.read_table(path)  # the whole file, every time
                    assert table.num_rows == table.column("run_id").length()
                    assert table.column("error").null_count == table.num_rows
                    reads += 1
                except FileNotFoundError:
                    problems.append(f"{path.name} listed but gone")
                except Exception as exc:
                    problems.append(f"{path.name}: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        summary = quiet(SPEC, client, tmp_path, chunk_size=1)
    finally:
        stop.set()
        thread.join(30)
    assert summary.ok and summary.chunks_run == 48  # chunks of one combination x 2 windows
    assert not problems, problems[:5]
    assert reads > 0
    assert all(re.fullmatch(r"part-\d{7}\.parquet", name) for name in seen), seen
    assert read_runs(root).height == N_RUNS


def test_atomic_write_temp_file_is_hidden_and_removed_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "window=0" / "part-0000003.parquet"
    temps: list[Path] = []

    def write(tmp: str) -> None:
        path = Path(tmp)
        temps.append(path)
        assert path.name.startswith(".part-0000003.parquet.") and path.name.endswith(".tmp")
        assert not list(target.parent.glob("part-*.parquet"))  # not visible as a part
        path.write_bytes(b"data")
        assert not target.exists()

    atomic_write(target, write)
    assert target.read_bytes() == b"data" and not temps[0].exists()

    def broken(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError("disk full")

    other = target.with_name("part-0000004.parquet")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(other, broken)
    assert not other.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [target.name]


def test_runs_folder_scans_while_chunks_are_being_written(reference: Path,
                                                          tmp_path: Path) -> None:
    """DESIGN: the runs are readable with pl.scan_parquet(OUT/NAME/"runs",
    hive_partitioning=True) -- also while a sweep writes chunks. A reader scanning in a loop
    while the store writes must never fail: no temp file may sit inside the hive folders."""
    root = tmp_path / SPEC.name
    shutil.copytree(reference, root)
    store = ResultStore(root)
    table = pq.read_table(part_files(root)[0])
    table = pa.concat_tables([table] * 200)  # a few ms to write
    stop = threading.Event()
    errors: list[str] = []
    scans = 0

    def reader() -> None:
        nonlocal scans
        while not stop.is_set():
            try:
                n = (pl.scan_parquet(root / "runs", hive_partitioning=True)
                     .select(pl.len()).collect().item())
                assert n >= N_RUNS
                scans += 1
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for k in range(150):
            store.write_chunk(0, 1000 + k, table)
    finally:
        stop.set()
        thread.join(30)
    assert scans > 0
    assert not errors, f"{len(errors)} of {len(errors) + scans} scans failed: {errors[0]}"


# ------------------------------------------------------------------------ the CLI
def test_cli_exits_1_when_runs_fail(client: Any, tmp_path: Path) -> None:
    """long_short runs under a long-only engine raise (ShortingError): recorded, exit 1."""
    cfg = write_toml(tmp_path / "shorts.toml", f"""
name = "shorts"
strategy = "ma_cross"
data = "{SPEC.data}"
[grid]
fast = [5, 10]
slow = [40]
long_short = [false, true]
""")
    out = tmp_path / "out"
    result = run_cli("run", cfg, "--out", out, "--cluster", client.scheduler.address,
                     "--chunk-size", "3", "--no-progress")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "4 runs in 2 chunks" in result.stdout
    assert "2 run(s) failed" in result.stdout
    df = read_runs(out / "shorts")
    failed = df.filter(pl.col("error").is_not_null())
    assert failed["long_short"].to_list() == [True, True]
    assert failed["error"].str.contains("allow_short").all()


MA_DEMO = REPO / "examples" / "ma_demo.toml"


@pytest.fixture(scope="module")
def ma_demo_runs() -> int:
    return SweepSpec.from_toml(MA_DEMO).resolve().n_runs


@pytest.fixture(scope="module")
def ma_demo(tmp_path_factory: pytest.TempPathFactory, ma_demo_runs: int) -> Path:
    """`backsweep run examples/ma_demo.toml --out OUT --workers 2`, in a subprocess."""
    out = tmp_path_factory.mktemp("ma_demo")
    result = run_cli("run", MA_DEMO, "--out", out, "--workers", "2", "--no-progress",
                     timeout=300)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert re.search(rf"ma_demo: {ma_demo_runs} runs in \d+ chunks? \(\d+ computed now, "
                     r"0 already", result.stdout), result.stdout
    # the workers wrote the chunks (their results are never fetched), and the grid's
    # constraint forbids some combinations of a chunk: the count is still the runs stored
    assert f"computed {ma_demo_runs} runs in" in result.stdout, result.stdout
    return out / "ma_demo"


def test_cli_run_ma_demo_end_to_end(ma_demo: Path, ma_demo_runs: int) -> None:
    meta = read_meta(ma_demo)
    assert meta["status"] == "complete" and meta["runs_written"] == ma_demo_runs
    df = read_runs(ma_demo)
    assert df.height == ma_demo_runs and df["run_id"].n_unique() == ma_demo_runs
    assert sorted(set(df["window"])) == list(range(len(meta["windows"])))
    assert df["error"].null_count() == ma_demo_runs
    # rerun: nothing to compute
    result = run_cli("run", MA_DEMO, "--out", ma_demo.parent, "--workers", "2",
                     "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "(0 computed now," in result.stdout


WIDE = {"POLARS_TABLE_WIDTH": "2000"}  # one line a row, whatever the columns


def table_rows(text: str) -> list[list[str]]:
    """The data rows of a polars table printed by `backsweep show`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("╞"))
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("│"):
            break
        rows.append([cell.strip() for cell in line.strip("│").split("┆")])
    return rows


def test_cli_show_top_n(ma_demo: Path, ma_demo_runs: int) -> None:
    result = run_cli("show", ma_demo, "--top", "5", "--by", "total_return", **WIDE)
    assert result.returncode == 0, result.stderr
    assert "ma_demo: strategy ma_cross" in result.stdout
    assert f"{ma_demo_runs} of {ma_demo_runs} runs" in result.stdout
    rows = table_rows(result.stdout)
    assert len(rows) == 5
    header = result.stdout.splitlines()
    header_line = next(line for line in header if "total_return" in line)
    names = [c.strip() for c in header_line.strip("│").split("┆")]
    best = read_runs(ma_demo).sort("total_return", descending=True).head(5)
    shown = [float(r[names.index("total_return")]) for r in rows]
    assert shown == sorted(shown, reverse=True)
    assert shown == pytest.approx(best["total_return"].to_list(), abs=1e-4)
    fasts = [int(r[names.index("fast")]) for r in rows]
    assert fasts == best["fast"].to_list()
    trades = [r[names.index("n_trades")] for r in rows]  # counts print as integers
    assert trades == [str(int(n)) for n in best["n_trades"].to_list()]
    meta = read_meta(ma_demo)
    for w, info in zip(meta["overfit"], meta["windows"], strict=True):
        dates = f"{info['start'][:10]} .. {info['end'][:10]}"
        assert re.search(rf"window {w['window']} \({dates}\): DSR {w['dsr']:.2f} \(.+\), "
                         rf"PBO {w['pbo']:.2f} \(.+\) over {w['n_trials']} trials",
                         result.stdout), result.stdout
    # lower-is-better metrics rank ascending
    result = run_cli("show", ma_demo, "--top", "3", "--by", "max_drawdown", **WIDE)
    assert result.returncode == 0, result.stderr
    header_line = next(line for line in result.stdout.splitlines() if "max_drawdown" in line)
    names = [c.strip() for c in header_line.strip("│").split("┆")]
    shown = [float(r[names.index("max_drawdown")]) for r in table_rows(result.stdout)]
    assert shown == pytest.approx(
        read_runs(ma_demo)["max_drawdown"].sort().head(3).to_list(), abs=1e-4)


def test_cli_show_bad_input(ma_demo: Path, tmp_path: Path) -> None:
    result = run_cli("show", ma_demo, "--by", "sharpness")
    assert result.returncode == 2 and "sharpness" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("show", tmp_path)
    assert result.returncode == 2 and "sweep.json" in result.stderr


def test_cli_show_ranks_runs_without_a_metric_last(client: Any, tmp_path: Path) -> None:
    """Runs that never trade have a NaN Sharpe; `show --by sharpe` must not rank them best."""
    spec = SweepSpec(name="flat", strategy="ma_cross", data="synthetic:assets=4,bars=300,seed=1",
                     grid={"fast": [5, 150], "slow": [20, 280, 299]})
    summary = quiet(spec, client, tmp_path, chunk_size=6)
    assert summary.ok
    df = read_runs(tmp_path / "flat")
    assert df["sharpe"].is_nan().sum() >= 2 and df["sharpe"].is_not_nan().sum() >= 2
    result = run_cli("show", tmp_path / "flat", "--top", "2", "--by", "sharpe", **WIDE)
    assert result.returncode == 0, result.stderr
    header_line = next(line for line in result.stdout.splitlines() if "sharpe" in line)
    names = [c.strip() for c in header_line.strip("│").split("┆")]
    shown = [r[names.index("sharpe")] for r in table_rows(result.stdout)]
    best = df.filter(pl.col("sharpe").is_not_nan()).sort("sharpe", descending=True)
    assert "NaN" not in shown, result.stdout
    assert [float(s) for s in shown] == pytest.approx(best["sharpe"].head(2).to_list(),
                                                      abs=1e-4)



def test_run_sweep_uses_the_notebooks_client(client: Any, tmp_path: Path) -> None:
    """With client=None, run_sweep runs on the Dask client this process already has (a
    notebook's), not on a new local cluster: its tasks show in that client's stream."""
    from distributed import default_client

    assert default_client() is client
    spec = SweepSpec(name="nb", strategy="ma_cross", data=SPEC.data,
                     grid={"fast": [3, 5], "slow": [20]})
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        summary = run_sweep(spec, None, tmp_path, progress=False)
    assert summary.ok and summary.n_runs == 2
    assert any("backsweep-" in str(t["key"]) for t in stream.data)
    assert summary.worker_threads == sum(client.nthreads().values())
