"""The README's "Your first sweep" section, run as written: every command of its shell
block, in a fresh folder holding a copy of examples/, must succeed, and end with the
exported winner's equity curve."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
from cluster_fixtures import BIN, REPO, subprocess_env


def first_sweep_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Your first sweep", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_first_sweep_section_runs_as_written(tmp_path: Path) -> None:
    commands = first_sweep_commands()
    assert commands[0].startswith("python examples/sample_csvs.py")
    assert any(c.startswith("backsweep export") for c in commands)
    shutil.copytree(REPO / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = subprocess_env(PATH=f"{BIN}:{subprocess_env()['PATH']}")
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=600)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    equity = pl.read_parquet(tmp_path / "winner" / "equity.parquet")
    runs = pl.scan_parquet(tmp_path / "results" / "first_sweep" / "runs",
                           hive_partitioning=True).collect()
    assert equity["run_id"].n_unique() == 1
    row = runs.filter(pl.col("run_id") == equity["run_id"][0]).row(0, named=True)
    assert equity["equity"][-1] == row["final_equity"] and row["window"] == 9
    best = runs.filter(pl.col("window") == 9)["sharpe"].max()
    assert row["sharpe"] == best
