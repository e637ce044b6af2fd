"""Faults around the result store (issue: "never delete what a sweep did not write"):

* ``OUT/NAME`` already a folder of the user's: refused with exit 2, every file kept;
  ``--overwrite`` on a real store replaces only the sweep's own files;
* each kind of damaged chunk file (empty, truncated, garbage, wrong schema, too few
  rows): ``show`` and ``load_results`` name it and say to rerun; the rerun quarantines
  it, recomputes its chunk and ends with the undamaged table;
* an ``--out`` that cannot be created or written: exit 2 before any cluster work, with
  nothing written;
* ``report -o`` never replaces a file unless told to, and never a folder.

Real LocalCluster workers, real ``backsweep`` subprocesses, real Parquet files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cluster_fixtures import part_files, read_runs, run_cli, same_runs, write_toml

import sweep
from sweep import SweepSpec
from sweep.schema import DamagedFileError

CONFIG = """
name = "store"
strategy = "ma_cross"
data = "synthetic:assets=5,bars=400,seed=3"
[grid]
fast = [3, 5, 8, 13]
slow = [20, 40, 60]
"""
CHUNK = 3  # 4 chunks of 3 parameter sets
N_RUNS = 12


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (what a user would miss)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toml(tmp_path_factory.mktemp("cfg") / "store.toml", CONFIG)


@pytest.fixture(scope="module")
def undamaged(client: Any, config: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("undamaged")
    summary = sweep.run_sweep(SweepSpec.from_toml(config), client, out, chunk_size=CHUNK,
                              progress=False)
    assert summary.ok and summary.n_runs == N_RUNS and summary.chunks_total == 4
    return read_runs(out / "store")


# ----------------------------------------------------------- never delete user files
def test_a_users_folder_is_refused_and_left_alone(config: Path, tmp_path: Path) -> None:
    root = tmp_path / "out" / "store"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("my notes\n")
    (root / "sub" / "data.csv").write_text("a,b\n1,2\n")
    before = files_of(root)
    for extra in ((), ("--overwrite",)):
        proc = run_cli("run", config, "--out", tmp_path / "out", "--workers", "1",
                       "--no-progress", *extra)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert str(root) in proc.stderr and "not a sweep's results folder" in proc.stderr
        assert "notes.txt" in proc.stderr and "sub/" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert files_of(root) == before
        assert sorted(p.name for p in root.iterdir()) == ["notes.txt", "sub"]


def test_overwrite_replaces_only_the_sweeps_files(client: Any, config: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "out"
    other = SweepSpec.from_toml(config)
    other = SweepSpec.from_dict({**other.to_dict(), "grid": {"fast": [3], "slow": [20]}})
    assert sweep.run_sweep(other, client, out, progress=False).ok
    root = out / "store"
    (root / "notes.txt").write_text("keep me\n")
    (root / "runs" / "README").write_text("mine too\n")
    proc = run_cli("run", config, "--out", out, "--workers", "1", "--no-progress")
    assert proc.returncode == 2 and "different sweep" in proc.stderr  # not without asking
    proc = run_cli("run", config, "--out", out, "--workers", "1", "--no-progress",
                   "--chunk-size", str(CHUNK), "--overwrite")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "left in place" in proc.stderr and "notes.txt" in proc.stderr
    assert "runs/README" in proc.stderr
    assert (root / "notes.txt").read_text() == "keep me\n"
    assert (root / "runs" / "README").read_text() == "mine too\n"
    assert read_runs(root).height == N_RUNS  # the new sweep, whole


# -------------------------------------------------------------------- damaged files
def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _wrong_schema(path: Path) -> None:
    pq.write_table(pa.table({"run_id": ["x"], "something": [1.0]}), path)


def _too_few_rows(path: Path) -> None:
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)


DAMAGE = {"empty": _empty, "truncated": _truncated, "garbage": _garbage,
          "wrong schema": _wrong_schema, "too few rows": _too_few_rows}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_chunk_file_is_named_then_quarantined_and_recomputed(
        client: Any, config: Path, undamaged: pl.DataFrame, tmp_path: Path,
        kind: str) -> None:
    out = tmp_path / "out"
    assert sweep.run_sweep(SweepSpec.from_toml(config), client, out, chunk_size=CHUNK,
                           progress=False).ok
    root = out / "store"
    victim = part_files(root)[1]
    DAMAGE[kind](victim)
    # Readers name the file and say what to do, instead of a polars traceback.
    shown = run_cli("show", root)
    if kind != "too few rows":  # a whole file with fewer rows is only known to resume
        assert shown.returncode == 2, shown.stdout + shown.stderr
        assert str(victim) in shown.stderr and "rerun the sweep" in shown.stderr
        assert "Traceback" not in shown.stderr
        with pytest.raises(DamagedFileError, match="rerun the sweep") as info:
            sweep.load_results(root)
        assert info.value.path == victim
    # The rerun moves it aside, says so, and recomputes only its chunk.
    proc = run_cli("run", config, "--out", out, "--workers", "1", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    quarantined = root / ".quarantine" / victim.relative_to(root / "runs")
    assert quarantined.is_file() and str(quarantined) in proc.stderr + proc.stdout
    assert "1 computed now, 3 already on disk" in proc.stdout
    same_runs(read_runs(root), undamaged)
    assert run_cli("show", root).returncode == 0


def test_files_the_sweep_writes_are_never_partial(client: Any, config: Path,
                                                  tmp_path: Path) -> None:
    """What resume checks can only fail for files something else damaged: every file a
    sweep writes passes the same check (the atomic temp-file-and-rename writes)."""
    from sweep.schema import check_part

    out = tmp_path / "out"
    resolved = SweepSpec.from_toml(config).resolve()
    assert sweep.run_sweep(resolved, client, out, chunk_size=CHUNK, progress=False).ok
    files = part_files(out / "store")
    assert len(files) == 4
    assert all(check_part(f, resolved.schema.names, CHUNK) is None for f in files)
    assert not [p for p in (out / "store").rglob("*.tmp") if p.is_file()]


# -------------------------------------------------------------------- unusable --out
@contextlib.contextmanager
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder on a read-only mount (a bind mount remounted read-only: needs root)."""
    src, target = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    target.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(target)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


def _unusable(kind: str, tmp_path: Path, stack: contextlib.ExitStack) -> Path:
    if kind == "proc":
        return Path("/proc/backsweep-no-such-dir")
    if kind == "under a file":
        (tmp_path / "a_file").write_text("x")
        return tmp_path / "a_file" / "results"
    if os.geteuid() != 0:
        pytest.skip("a read-only mount needs root")
    return stack.enter_context(read_only_folder(tmp_path)) / "results"


@pytest.mark.parametrize("kind", ["proc", "under a file", "read-only mount"])
def test_an_unusable_out_exits_2_before_any_cluster_work(config: Path, tmp_path: Path,
                                                         kind: str) -> None:
    with contextlib.ExitStack() as stack:
        out = _unusable(kind, tmp_path, stack)
        before = files_of(tmp_path)
        # An unreachable cluster: had the sweep tried it first, the message would say so.
        proc = run_cli("run", config, "--out", out, "--cluster", "tcp://127.0.0.1:9",
                       "--no-progress")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert str(out / "store") in proc.stderr and "cannot" in proc.stderr
        assert "127.0.0.1:9" not in proc.stderr and "Traceback" not in proc.stderr
        assert files_of(tmp_path) == before
        assert not (tmp_path / "src").exists() or not any((tmp_path / "src").iterdir())


# -------------------------------------------------------------- report -o, export -o
def test_report_never_replaces_a_file_unless_told_and_never_a_folder(
        client: Any, config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert sweep.run_sweep(SweepSpec.from_toml(config), client, out, chunk_size=CHUNK,
                           progress=False).ok
    root = out / "store"
    page = tmp_path / "mine.html"
    page.write_text("my page")
    proc = run_cli("report", root, "-o", page)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert page.read_text() == "my page"
    folder = tmp_path / "folder.html"
    folder.mkdir()
    (folder / "x").write_text("x")
    proc = run_cli("report", root, "-o", folder, "--overwrite")
    assert proc.returncode == 2 and "folder" in proc.stderr
    assert (folder / "x").read_text() == "x"
    proc = run_cli("report", root, "-o", page, "--overwrite")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert page.read_text().startswith("<!DOCTYPE html>")
    shutil.rmtree(folder)
