"""Results on object storage: ``--out s3://bucket/prefix`` against a real S3-compatible
server started here on 127.0.0.1 (moto's server mode), through s3fs, with credentials and
the endpoint from the usual environment (AWS_*), never from the spec.

* a sweep on a LocalCluster whose workers write their chunks straight to the bucket (one
  whole-object upload a file), the same table as a local sweep; ``show``, ``report``,
  ``load_results`` and a walk-forward on the URL;
* a worker SIGKILLed mid-sweep (``dask scheduler`` / ``dask worker`` processes): every run
  stored exactly once;
* the client SIGKILLed mid-sweep, then a rerun resumes from what is in the bucket;
* a reader listing and reading the bucket throughout a sweep never sees a partial file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from cluster_fixtures import (
    BIN,
    DaskProcesses,
    kill_group,
    read_runs,
    run_cli,
    same_runs,
    start_cli,
    subprocess_env,
    wait_for,
    write_toml,
)

import sweep
from sweep import SweepSpec
from sweep.location import location
from sweep.schema import check_part, part_files

CONFIG = """
name = "s3sweep"
strategy = "ma_cross"
data = "synthetic:assets=20,bars=800,seed=4"
[grid]
fast = {start = 2, stop = 30, step = 2}
slow = [40, 60, 80, 100]
[windows]
ranges = [["2010-01-01", "2011-06-30"], ["2011-07-01", ""]]
"""
N_RUNS = 15 * 4 * 2
CHUNK = 2  # 30 chunks of 2 parameter sets x 2 windows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 and a bucket; the environment points every client at
    it (this process, the CLI subprocesses and the Dask workers inherit it)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "AWS_ALLOW_HTTP": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(up, 60, "the moto S3 server to listen")
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("backsweep-test")
        yield "s3://backsweep-test"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        kill_group(proc)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toml(tmp_path_factory.mktemp("cfg") / "s3sweep.toml", CONFIG)


@pytest.fixture(scope="module")
def local_table(client: Any, config: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("local")
    assert sweep.run_sweep(SweepSpec.from_toml(config), client, out, chunk_size=CHUNK,
                           progress=False).ok
    return read_runs(out / "s3sweep")


def s3_table(url: str) -> pl.DataFrame:
    return sweep.load_results(url).collect().sort("run_id")


def test_a_sweep_on_s3_equals_the_local_one(s3: str, client: Any, config: Path,
                                            local_table: pl.DataFrame, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from sweep.store import ResultStore

    client_writes: list[int] = []
    real = ResultStore.write_chunk

    def spy(self: Any, window: int, chunk_id: int, *a: Any, **kw: Any) -> Any:
        client_writes.append(chunk_id)
        return real(self, window, chunk_id, *a, **kw)

    monkeypatch.setattr(ResultStore, "write_chunk", spy)  # this process only: the client
    out = f"{s3}/plain"
    summary = sweep.run_sweep(SweepSpec.from_toml(config), client, out, chunk_size=CHUNK,
                              progress=False)
    assert summary.ok and summary.n_runs == N_RUNS and client_writes == []  # workers wrote
    root = f"{out}/s3sweep"
    same_runs(s3_table(root), local_table)
    assert not location(f"{root}/.worker-token").exists()
    # the readers take the URL
    shown = run_cli("show", root, "--top", "3")
    assert shown.returncode == 0 and "s3sweep: strategy ma_cross" in shown.stdout
    page = tmp_path / "r.html"
    assert run_cli("report", root, "-o", page, "--curves", "2").returncode == 0
    assert 'id="top-equity"' in page.read_text()
    again = run_cli("run", config, "--out", out, "--workers", "1")  # a finished sweep
    assert again.returncode == 0 and "0 computed now" in again.stdout


def test_a_walk_forward_on_s3(s3: str, client: Any) -> None:
    spec = SweepSpec(name="wf", strategy="ma_cross", data="synthetic:assets=6,bars=700,seed=2",
                     grid={"fast": [3, 8], "slow": [30, 60]},
                     walk_forward={"train": 250, "test": 100})
    result = sweep.walk_forward(spec, client, f"{s3}/wf", progress=False)
    assert result.ok and result.summary.n_folds == 4
    root = location(f"{s3}/wf/wf")
    folds = pl.read_parquet(str(root / "folds.parquet"))
    assert folds.height == 4
    assert (root / "sweep.json").exists() and (root / "oos_equity.parquet").exists()


def _reader(url: str, stop: threading.Event, seen: list[int], bad: list[str]) -> None:
    """List and check every part file again and again while the sweep writes."""
    runs = location(url) / "runs"
    while not stop.is_set():
        try:
            files = part_files(runs)
        except Exception:  # the listing itself raced a new prefix: try again
            continue
        for _, _, path in files:
            problem = check_part(path)
            if problem is not None and path.exists():
                bad.append(f"{path}: {problem}")
        seen.append(len(files))
        time.sleep(0.05)


def test_worker_killed_and_client_killed_on_s3(s3: str, config: Path,
                                              local_table: pl.DataFrame,
                                              tmp_path: Path) -> None:
    """Against real scheduler and worker processes: a worker SIGKILLed mid-sweep, then the
    client SIGKILLed and the sweep rerun; a reader checks every file all along. Every run
    ends up stored exactly once."""
    (tmp_path / "dask").mkdir()
    procs = DaskProcesses(tmp_path / "dask")
    out = f"{s3}/faults"
    root = location(f"{out}/s3sweep")
    stop, seen, bad = threading.Event(), [], []
    reader = threading.Thread(target=_reader, args=(str(root), stop, seen, bad), daemon=True)
    try:
        address = procs.start_scheduler()
        procs.ensure_workers(2)
        reader.start()
        log = tmp_path / "run.log"
        proc = start_cli("run", config, "--out", out, "--cluster", address, "--chunk-size",
                         str(CHUNK), "--no-progress", log=log)
        wait_for(lambda: len(part_files(root / "runs")) >= 6 or proc.poll() is not None, 240,
                 "chunk files in the bucket")
        procs.kill_worker(procs.workers[0])
        wait_for(lambda: len(part_files(root / "runs")) >= 20 or proc.poll() is not None, 240,
                 "more chunk files after the worker was killed")
        kill_group(proc)  # the client dies mid-sweep (or just after: then nothing to redo)
        procs.ensure_workers(2)
        again = run_cli("run", config, "--out", out, "--cluster", address, "--no-progress",
                        timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        stop.set()
        reader.join(timeout=10)
        procs.close()
    table = s3_table(str(root))
    assert table.height == N_RUNS and table["run_id"].n_unique() == N_RUNS
    assert table["error"].null_count() == N_RUNS
    same_runs(table, local_table)
    assert not bad, bad[:3]
    assert max(seen) > 0 and len(seen) > 10  # the reader really read along


def test_credentials_never_come_from_the_spec(s3: str, config: Path, tmp_path: Path) -> None:
    """Without the environment's credentials the URL is refused up front (exit 2, the
    reason named, nothing computed); a spec has no place for them."""
    env = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    proc = run_cli("run", config, "--out", "s3://no-such-bucket-xyz/out", "--workers", "1",
                   **env)
    assert proc.returncode == 2 and "s3://no-such-bucket-xyz/out/s3sweep" in proc.stderr
    with pytest.raises(sweep.SpecError, match="unknown key"):
        SweepSpec.from_dict({**SweepSpec.from_toml(config).to_dict(),
                             "storage_options": {"key": "x"}})
    assert subprocess_env()["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1")
