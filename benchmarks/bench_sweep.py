"""Distributed sweeps through the CLI: Dask overhead (100k runs) and scale (1M runs).

Part (a), the issue's goal "a 100,000-run MA-cross sweep through the CLI on a 2-worker
local cluster reaches >= 1.8x the runs/s of the same grid in one in-process
``sweep.evaluate`` call on one core" (``configs/sweep_100k.toml``):

* a tiny sweep (8 runs, same data) through the CLI first: the fixed cost of a sweep
  (interpreter, imports, cluster start and stop, planning, summary) and warm caches;
* in-process: a child process (``NUMBA_NUM_THREADS=1``, single-threaded) resolves the same
  TOML and times one ``sweep.evaluate(panel, strategy, grid, config, constraints=...)``
  call over the whole grid, after a warm-up call on a 2-combination grid;
* CLI: ``backsweep run CONFIG --workers 2 --out DIR --no-progress`` timed from spawn to
  exit. Also measured from the outside: the client's peak RSS (``VmHWM`` of its /proc
  entry, polled every 50 ms), the CPU time of the whole process tree (``wait4`` rusage)
  and of each worker (polled), and the steady-state runs/s from the chunk files' mtimes
  (with W workers: runs in the chunk files after the W-th / time from the W-th to the
  last file written, so that the workers' first chunks, which end together, do not
  count).

The two alternate for ``--rounds`` rounds, each CLI round in a fresh output folder.

Part (b), "a 1,000,000-run sweep finishes with client peak RSS < 1 GB, and a polars scan
of three columns of its results takes < 2 s" (``configs/sweep_1m.toml``, 1 asset x 250
bars): the same CLI measurement, then, in a fresh process, ``pl.scan_parquet(OUT/NAME/
"runs", hive_partitioning=True).select(["fast", "slow", "sharpe"]).collect()`` timed
``--scan-repeat`` times (the files were just written, so they are in the page cache: a
cold-disk scan is not measured; dropping caches needs root).

Part (a) also times, in each round, the same sweep through ``sweep.run_sweep(spec,
client=c)`` in a child that already runs a 2-worker local cluster (``cluster.connect``, as
a notebook would), warmed up by a tiny sweep: the issue's second end-to-end goal (the
call's wall time, and the CPU time the child's process used meanwhile: client, scheduler
and nannies). The goals (issue 22): end to end through the CLI >= 1.5x the in-process
runs/s, through ``run_sweep`` with a running client >= 1.75x.

Part (c), "how cost grows": sweeps of 1,000 to 10,000,000 runs through the CLI (the
tiny panel of part (b), grids cut or widened along ``commission``), each with its
runs/s (end to end, and as the CLI reports its computing) and client peak RSS, in a table
and a chart (``--plot``, an SVG); then the polars scan of three columns of the largest.
Goals: the 10M-run sweep's client peak RSS < 1 GB, its scan < 2 s.

Usage (from the repository root)::

    python benchmarks/bench_sweep.py                      # parts a and b, ~6 minutes
    python benchmarks/bench_sweep.py --part a --rounds 1
    python benchmarks/bench_sweep.py --part b --keep /tmp/sweeps   # keep the results
    python benchmarks/bench_sweep.py --part c --plot benchmarks/sweep_scale.svg
    python benchmarks/bench_sweep.py --quick              # smoke run: small grids

These are measurements, not assertions: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # the helper module sits next to this script
    emit_json,
    format_table,
    load_average,
    load_str,
    machine_summary,
    peak_rss_mb,
    proc_status_mb,
    run_child,
    si,
    time_calls_cpu,
)

HERE = Path(__file__).resolve().parent
CONFIG_A = HERE / "configs" / "sweep_100k.toml"
CONFIG_B = HERE / "configs" / "sweep_1m.toml"
CHILD_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
GOAL_SPEEDUP = 1.5          # end to end through the CLI (issue 22)
GOAL_CLIENT_SPEEDUP = 1.75  # run_sweep with a client already running
SCALE_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
GOAL_CLIENT_MB = 1024.0
GOAL_SCAN_S = 2.0
SCAN_COLUMNS = ["fast", "slow", "sharpe"]


# ------------------------------------------------------------------------ child modes
def inprocess_child(args: argparse.Namespace) -> None:
    """Child: one in-process sweep.evaluate call over the TOML's whole grid."""
    import sweep
    from sweep.spec import SweepSpec

    spec = SweepSpec.from_toml(args.config)
    resolved = spec.resolve()
    after_inputs = peak_rss_mb()
    panel, cfg = resolved.panel, resolved.config
    if [(w.start_bar, w.end_bar) for w in resolved.windows] != [(0, panel.n_bars)]:
        raise SystemExit("the in-process baseline supports whole-panel sweeps only")
    grid = dict(spec.grid)
    small = {k: _first_two(v) for k, v in grid.items()}
    t0 = time.perf_counter()
    sweep.evaluate(panel, spec.strategy, small, cfg, constraints=spec.constraints)
    warm = time.perf_counter() - t0
    load0 = load_average()
    holder: dict[str, Any] = {}

    def run() -> None:
        holder["df"] = sweep.evaluate(panel, spec.strategy, grid, cfg,
                                      constraints=spec.constraints)

    wall, cpu = time_calls_cpu(run, args.inprocess_repeat, warmup=0)
    emit_json({"wall": wall.to_dict(), "cpu": cpu.to_dict(), "runs": holder["df"].height,
               "warmup_s": warm, "after_inputs_mb": after_inputs, "peak_mb": peak_rss_mb(),
               "load": [load0, load_average()], "bars": panel.n_bars,
               "assets": panel.n_assets})


def _first_two(spec: Any) -> list[Any]:
    from sweep.grid import expand_values

    return expand_values("x", spec)[:2]


def chunks_child(args: argparse.Namespace) -> None:
    """Child: what one task of the sweep costs on a worker, piece by piece (CPU time).

    Installs the sweep's context as the worker plugin does, then walks the chunks one
    worker of two would get (every other chunk from the start, ``--chunk-samples`` of
    them, after a warm-up chunk of another segment) and times the pieces of
    ``sweep.worker.run_chunk``: the segment's ``prepare`` (the moving averages, once per
    segment), the compiled loop with and without the PBO block statistics on the chunk's
    slice of it, the run ids, the whole task, and the Parquet write of its result;
    also what ``prepare`` of the chunk alone would cost (the layout before segments).
    """
    import tempfile as _tempfile

    import sweep.worker as worker
    from sweep.evaluate import evaluate_windows
    from sweep.grid import strategy_columns
    from sweep.plan import Plan
    from sweep.spec import SweepSpec
    from sweep.store import ResultStore
    from sweep.worker import _CONTEXTS, run_chunk, run_ids

    spec = SweepSpec.from_toml(args.config)
    resolved = spec.resolve()
    key = "bench"
    _CONTEXTS[key] = resolved
    plan = Plan(args.chunk_size, resolved.n_combos, len(resolved.windows))
    panel, strat, cfg = resolved.panel, resolved.strategy, resolved.config
    blocks = spec.pbo_blocks
    windows = resolved.windows
    picks = list(range(0, plan.n_chunks, 2))[:args.chunk_samples]
    run_chunk(key, plan.chunk(plan.n_chunks - 1))  # warm-up: compile or load the caches
    pieces: dict[str, float] = {}
    runs = 0
    distinct = []
    segments = set()

    def clock(name, fn):
        t0 = time.process_time()
        out = fn()
        pieces[name] = pieces.get(name, 0.0) + time.process_time() - t0
        return out

    with _tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp))
        for cid in picks:
            ch = plan.chunk(cid)
            if ch.segment not in segments:
                segments.add(ch.segment)
                worker._SEGMENTS.pop(key, None)
                clock("segment: grid rows, a probe and prepare (once a segment)",
                      lambda ch=ch: worker._segment_slice(key, resolved, ch))
            table, prepared = worker._segment_slice(key, resolved, ch)
            data, _ = clock("prepare of the chunk alone (not run: segments replace it)",
                            lambda t=table: strat.prepare(panel, strategy_columns(strat, t)))
            distinct.append(data.shape[0] - 1)
            del data
            clock("compiled loop on the chunk's slice, PBO blocks off",
                  lambda t=table, p=prepared: evaluate_windows(panel, strat, t, cfg, windows,
                                                               prepared=p))
            clock(f"compiled loop, {blocks} PBO blocks (what the task runs)",
                  lambda t=table, p=prepared: evaluate_windows(
                      panel, strat, t, cfg, windows, blocks=blocks, prepared=p))
            clock("run ids (a template, a hash a run)",
                  lambda t=table: [run_ids(resolved, t, w) for w in windows])
            arrow = clock("run_chunk: the whole task (segment cached)",
                          lambda ch=ch: run_chunk(key, ch))
            clock("Parquet write of the task's tables (the store's atomic write)",
                  lambda a=arrow, cid=cid: [store.write_chunk(w, cid, t)
                                            for w, t in enumerate(a)])
            runs += table.height * len(windows)
    pieces["run_chunk: the whole task (segment cached)"] += pieces[
        "segment: grid rows, a probe and prepare (once a segment)"]
    pieces["run_chunk: the whole task, segment prepare included"] = pieces.pop(
        "run_chunk: the whole task (segment cached)")
    whole = resolved.combos_table(0, resolved.n_combos)
    full_distinct = strat.prepare(panel, strategy_columns(strat, whole))[0].shape[0] - 1
    emit_json({"pieces": pieces, "runs": runs, "chunks": len(picks),
               "whole_grid_indicators": full_distinct,
               "chunk_size": args.chunk_size, "distinct_indicators": distinct,
               "segments": len(segments), "blocks": blocks, "load": load_average()})


def client_child(args: argparse.Namespace) -> None:
    """Child: ``run_sweep`` on a local cluster this process already runs (a notebook's),
    after a tiny warm-up sweep; its wall time and this process's CPU time."""
    import tempfile as _tempfile

    import cluster
    import sweep

    spec = sweep.SweepSpec.from_toml(args.config)
    tiny = sweep.SweepSpec.from_toml(args.tiny)
    with _tempfile.TemporaryDirectory(prefix="bench-client-") as tmp, \
            cluster.connect("local", workers=args.workers, dashboard=False) as c:
        sweep.run_sweep(tiny, client=c, out=Path(tmp) / "warm", progress=False)
        load0 = load_average()
        cpu0, t0 = time.process_time(), time.perf_counter()
        summary = sweep.run_sweep(spec, client=c, out=Path(tmp) / "run", progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        meta = json.loads((Path(tmp) / "run" / spec.name / "sweep.json").read_text())
    emit_json({"wall": wall, "cpu": cpu, "runs": summary.n_runs,
               "chunks": summary.chunks_run, "tasks": getattr(summary, "tasks_run", 0),
               "compute_s": summary.compute_seconds, "plan": meta.get("plan"),
               "load": [load0, load_average()]})


def scan_child(args: argparse.Namespace) -> None:
    """Child: time the polars scan of three columns of a sweep's results."""
    t0 = time.perf_counter()
    import polars as pl

    imported = time.perf_counter() - t0
    runs = Path(args.results) / "runs"
    seconds, height = [], 0
    for _ in range(args.scan_repeat):
        t0 = time.perf_counter()
        df = pl.scan_parquet(runs, hive_partitioning=True).select(SCAN_COLUMNS).collect()
        seconds.append(time.perf_counter() - t0)
        height = df.height
        del df
    emit_json({"import_s": imported, "seconds": seconds, "rows": height,
               "peak_mb": peak_rss_mb(), "polars": pl.__version__})


# ------------------------------------------------------------------- the CLI, observed
def run_cli(config: Path, out: Path, workers: int, timeout: float) -> dict[str, Any]:
    """``backsweep run CONFIG --workers W --out OUT --no-progress``, observed from outside."""
    import psutil

    exe = Path(sys.executable).with_name("backsweep")
    argv = [str(exe), "run", str(config), "--workers", str(workers), "--out", str(out),
            "--no-progress"]
    out.mkdir(parents=True, exist_ok=True)
    log_out, log_err = out / "cli.stdout", out / "cli.stderr"
    load0 = load_average()
    with open(log_out, "w") as fo, open(log_err, "w") as fe:
        spawned = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=fo, stderr=fe)
        client = psutil.Process(proc.pid)
        client_hwm = 0.0
        client_cpu = 0.0
        workers_seen: dict[int, dict[str, Any]] = {}
        next_tree = 0.0
        status, rusage = None, None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                raise RuntimeError(f"{' '.join(argv)} did not finish in {timeout:.0f} s")
            hwm = proc_status_mb(proc.pid, "VmHWM")
            if hwm == hwm:
                client_hwm = max(client_hwm, hwm)
            now = time.perf_counter()
            if now >= next_tree:
                next_tree = now + 0.25
                try:
                    ct = client.cpu_times()
                    client_cpu = ct.user + ct.system
                    for child in client.children(recursive=True):
                        with child.oneshot():
                            c = child.cpu_times()
                            info = workers_seen.setdefault(child.pid, {"hwm": 0.0})
                            info["cpu"] = c.user + c.system
                            info["cmd"] = " ".join(child.cmdline())[-120:]
                            h = proc_status_mb(child.pid, "VmHWM")
                            if h == h:
                                info["hwm"] = max(info["hwm"], h)
                except psutil.Error:
                    pass
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{log_err.read_text()[-2000:]}")
    name = _sweep_name(config)
    root = out / name
    meta = json.loads((root / "sweep.json").read_text())
    chunks = _chunk_times(root)
    tree_cpu = rusage.ru_utime + rusage.ru_stime
    result = {
        "argv": argv, "exit": code, "wall": wall, "client_hwm_mb": client_hwm,
        "client_cpu_s": client_cpu, "tree_cpu_s": tree_cpu,
        "processes": workers_seen, "load": [load0, load_average()],
        "n_runs": meta.get("runs_written"), "runs_failed": meta.get("runs_failed"),
        "plan": meta.get("plan"), "run_sweep_s": meta.get("seconds_last_call"),
        "status": meta.get("status"), "summary": meta.get("summary"),
        "reported_runs_per_s": _reported_rate(meta),
        "disk_mb": sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20,
        "root": str(root), "stdout": log_out.read_text()[-1500:],
    }
    if chunks:
        # Steady state: the runs written after the first chunk of every worker, over the
        # time from that point to the last file. (Counting from the very first file, with
        # W workers finishing their first chunks together, overstates the rate by a factor
        # (k - 1/W) / (k - 1) for k chunks a worker: +3 % at 36 chunks on 2 workers.)
        skip = min(max(1, workers), len(chunks) - 1)
        first, last = chunks[0][0], chunks[-1][0]
        start = chunks[skip - 1][0] if skip else first
        steady_runs = sum(n for _, n in chunks[skip:])
        result.update(
            chunks=len(chunks), first_chunk_s=first - spawned, last_chunk_s=last - spawned,
            steady_runs_per_s=steady_runs / (last - start) if last > start else float("nan"),
        )
    return result


def _reported_rate(meta: dict[str, Any]) -> float:
    """The rate the CLI itself reports (sweep.json ``compute_last_call``: runs / seconds
    from its first task submitted to its last result); NaN from an older backsweep."""
    done = meta.get("compute_last_call") or {}
    if not done.get("runs") or not done.get("seconds"):
        return float("nan")
    return done["runs"] / done["seconds"]


def _sweep_name(config: Path) -> str:
    import tomllib

    with open(config, "rb") as fh:
        return tomllib.load(fh)["name"]


def _chunk_times(root: Path) -> list[tuple[float, int]]:
    """(mtime, rows) of every chunk file, oldest first."""
    import pyarrow.parquet as pq

    out = []
    for f in root.glob("runs/window=*/part-*.parquet"):
        out.append((f.stat().st_mtime, pq.read_metadata(f).num_rows))
    return sorted(out)


# ------------------------------------------------------------------------- the parts
def tiny_config(config: Path, tmp: Path) -> Path:
    """The same sweep with a 2 x 2 x 2 grid (8 runs): the fixed cost of a CLI sweep."""
    import tomllib

    with open(config, "rb") as fh:
        raw = tomllib.load(fh)
    lines = [f'name = "{raw["name"]}_tiny"', f'strategy = "{raw["strategy"]}"',
             f'data = "{raw["data"]}"',
             "constraints = [" + ", ".join(f'"{c}"' for c in raw.get("constraints", [])) + "]"]
    if raw.get("engine"):
        lines.append("[engine]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in raw["engine"].items()]
    lines.append("[grid]")
    for k, v in raw["grid"].items():
        lines.append(f"{k} = {json.dumps(_first_two(v))}")
    path = tmp / "tiny.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def part_a(args, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": []}
    tiny = tiny_config(args.config_a, tmp)
    print(f"  (a) tiny sweep through the CLI ({load_str()}) ...", flush=True)
    out["tiny"] = run_cli(tiny, tmp / "tiny", args.workers, args.timeout)
    print(f"      {out['tiny']['wall']:.1f} s", flush=True)
    script = str(Path(__file__).resolve())
    for k in range(args.rounds):
        print(f"  (a) round {k + 1}: in-process sweep.evaluate ({load_str()}) ...", flush=True)
        rep, _ = run_child([sys.executable, script, "--child", "inprocess", "--config",
                            str(args.config_a), "--inprocess-repeat",
                            str(args.inprocess_repeat)], env=CHILD_ENV, timeout=args.timeout)
        print(f"      wall {rep['wall']['median_ms'] / 1e3:.1f} s, CPU "
              f"{rep['cpu']['median_ms'] / 1e3:.1f} s", flush=True)
        print(f"  (a) round {k + 1}: backsweep run --workers {args.workers} ({load_str()}) ...",
              flush=True)
        cli = run_cli(args.config_a, tmp / f"a{k}", args.workers, args.timeout)
        print(f"      {cli['wall']:.1f} s", flush=True)
        if not args.keep:
            shutil.rmtree(tmp / f"a{k}", ignore_errors=True)
        rnd = {"inprocess": rep, "cli": cli}
        if not args.no_client:
            print(f"  (a) round {k + 1}: run_sweep with a running client ({load_str()}) ...",
                  flush=True)
            rnd["client"], _ = run_child(
                [sys.executable, script, "--child", "client", "--config", str(args.config_a),
                 "--tiny", str(tiny), "--workers", str(args.workers)], timeout=args.timeout)
            print(f"      {rnd['client']['wall']:.1f} s", flush=True)
        out["rounds"].append(rnd)
    if not args.no_chunk_profile:
        size = (out["rounds"][-1]["cli"].get("plan") or {}).get("chunk_size", 2000)
        print(f"  (a) one task's pieces, chunk size {size} ({load_str()}) ...", flush=True)
        out["chunks"], _ = run_child(
            [sys.executable, script, "--child", "chunks", "--config", str(args.config_a),
             "--chunk-size", str(size), "--chunk-samples", str(args.chunk_samples)],
            env=CHILD_ENV, timeout=args.timeout)
    return out


def part_b(args, tmp: Path) -> dict[str, Any]:
    print(f"  (b) 1M-run sweep through the CLI ({load_str()}) ...", flush=True)
    cli = run_cli(args.config_b, tmp / "b", args.workers, args.timeout)
    print(f"      {cli['wall']:.1f} s, client peak {cli['client_hwm_mb']:.0f} MB", flush=True)
    print(f"  (b) polars scan ({load_str()}) ...", flush=True)
    scan, wall = run_child([sys.executable, str(Path(__file__).resolve()), "--child", "scan",
                            "--results", cli["root"], "--scan-repeat", str(args.scan_repeat)],
                           timeout=args.timeout)
    scan["wall"] = wall
    scan["load"] = load_average()
    return {"cli": cli, "scan": scan}


def scale_config(runs: int, base: Path, tmp: Path) -> Path:
    """part (b)'s sweep (1 asset x 250 bars) with a grid of exactly ``runs`` runs: the
    10,000 (fast, slow) pairs x kind x long_short x commissions, cut for small sizes."""
    import tomllib

    with open(base, "rb") as fh:
        raw = tomllib.load(fh)
    grid = {"fast": {"start": 1, "stop": 100}, "slow": {"start": 101, "stop": 200}}
    if runs < 10_000:
        grid["fast"] = {"start": 1, "stop": max(1, runs // 100)}
        extra = {}
    else:
        rest = runs // 10_000
        kinds = ["sma", "ema"] if rest % 2 == 0 else ["sma"]
        rest //= len(kinds)
        sides = [False, True] if rest % 2 == 0 and rest >= 2 else [False]
        rest //= len(sides)
        extra = {"kind": kinds, "long_short": sides,
                 "commission": {"start": 0.0, "stop": round((rest - 1) * 1e-5, 10),
                                "step": 1e-5}}
    lines = [f'name = "scale_{runs}"', f'strategy = "{raw["strategy"]}"',
             f'data = "{raw["data"]}"', 'constraints = ["fast < slow"]', "[engine]",
             "allow_short = true", "[grid]"]
    for k, v in {**grid, **extra}.items():
        lines.append(f"{k} = {_toml_value(v)}")
    path = tmp / f"scale_{runs}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def part_c(args, tmp: Path) -> dict[str, Any]:
    from sweep.spec import SweepSpec

    rows = []
    for runs in args.sizes:
        config = scale_config(runs, args.config_b, tmp)
        n = SweepSpec.from_toml(config).resolve().n_runs
        assert n == runs, (runs, n)
        print(f"  (c) {runs:,}-run sweep through the CLI ({load_str()}) ...", flush=True)
        cli = run_cli(config, tmp / f"c{runs}", args.workers, args.timeout)
        print(f"      {cli['wall']:.1f} s, client peak {cli['client_hwm_mb']:.0f} MB",
              flush=True)
        row = {"runs": runs, "cli": cli}
        if runs == max(args.sizes):
            scan, wall = run_child([sys.executable, str(Path(__file__).resolve()), "--child",
                                    "scan", "--results", cli["root"], "--scan-repeat",
                                    str(args.scan_repeat)], timeout=args.timeout)
            scan["wall"], scan["load"] = wall, load_average()
            row["scan"] = scan
        if not args.keep:
            shutil.rmtree(tmp / f"c{runs}", ignore_errors=True)
        rows.append(row)
    return {"rows": rows}


def scale_chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Two panels, runs/s (end to end and computing) and the client's peak RSS, against
    the sweep's runs, log-log: an SVG drawn with the report's SVG helpers."""
    import math

    from sweep.report.charts import svg

    runs = [r["runs"] for r in rows]
    e2e = [r["runs"] / r["cli"]["wall"] for r in rows]
    comp = [r["cli"]["reported_runs_per_s"] for r in rows]
    rss = [r["cli"]["client_hwm_mb"] for r in rows]
    w, h, left, right, top, bottom = 360, 260, 62, 14, 30, 44
    panels = [("runs per second", [("end to end", e2e, "#1f77b4"),
                                   ("computing (as the CLI reports)", comp, "#ff7f0e")], True),
              ("client peak RSS, MB", [("client peak RSS", rss, "#2ca02c")], False)]
    parts = []
    lx0, lx1 = math.log10(min(runs)), math.log10(max(runs))
    for k, (label, series, logy) in enumerate(panels):
        x0 = k * w
        vals = [v for _, ys, _ in series for v in ys if v == v and v > 0]
        lo, hi = min(vals), max(vals)
        if logy:
            ly0, ly1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        else:
            ly0, ly1 = 0.0, hi * 1.15

        def xpos(r: float, x0: float = x0) -> float:
            return x0 + left + (math.log10(r) - lx0) / max(lx1 - lx0, 1e-9) * (
                w - left - right)

        def ypos(v: float, logy: bool = logy, ly0: float = ly0, ly1: float = ly1) -> float:
            t = (math.log10(v) - ly0) / (ly1 - ly0) if logy else (v - ly0) / (ly1 - ly0)
            return top + (1 - t) * (h - top - bottom)

        parts.append(svg.title(x0 + left, 16, label))
        parts.append(svg.line(x0 + left, h - bottom, x0 + w - right, h - bottom))
        parts.append(svg.line(x0 + left, top, x0 + left, h - bottom))
        for r in runs:
            parts.append(svg.text(xpos(r), h - bottom + 14, f"{r:,.0f}".replace(",000,000", "M")
                                  .replace(",000", "k"), size=10))
        parts.append(svg.text(x0 + w / 2, h - 8, "runs in the sweep (log scale)", size=10))
        ticks = ([10 ** e for e in range(int(ly0), int(ly1) + 1)] if logy
                 else [ly1 * f for f in (0, 0.25, 0.5, 0.75, 1.0)])
        for t in ticks:
            parts.append(svg.line(x0 + left - 3, ypos(t), x0 + left, ypos(t)))
            parts.append(svg.text(x0 + left - 5, ypos(t) + 3, f"{t:,.0f}", anchor="end", size=10))
        for j, (name, ys, color) in enumerate(series):
            pts = [(xpos(r), ypos(v)) for r, v in zip(runs, ys, strict=True) if v == v and v > 0]
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                         f'points="{svg.points([p[0] for p in pts], [p[1] for p in pts])}"/>')
            for px, py in pts:
                parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>')
            parts.append(svg.text(x0 + left + 8, top + 12 + 13 * j, name, anchor="start",
                                  size=10, fill=color))
        if not logy:
            parts.append(svg.line(x0 + left, ypos(1024), x0 + w - right, ypos(1024),
                                  stroke="#d62728"))
            parts.append(svg.text(x0 + w - right - 2, ypos(1024) - 4, "1 GB goal", anchor="end",
                                  size=10))
    body = "\n".join(parts)
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h}" '
                    f'viewBox="0 0 {2 * w} {h}" font-family="sans-serif">\n'
                    f'<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n')


# ------------------------------------------------------------------------- reporting
def _cli_row(label: str, c: dict[str, Any], runs: int) -> list[Any]:
    workers = [p for p in c["processes"].values() if "spawn_main" in p.get("cmd", "")]
    wcpu = sum(p.get("cpu", 0.0) for p in workers)
    return [label, f"{runs:,}", f"{c['wall']:.1f}", f"{c.get('run_sweep_s') or 0:.1f}",
            f"{runs / c['wall']:,.0f}", f"{c.get('steady_runs_per_s', float('nan')):,.0f}",
            f"{c.get('first_chunk_s', float('nan')):.1f}",
            f"{c['wall'] - c.get('last_chunk_s', float('nan')):.1f}",
            c.get("chunks", 0), (c.get("plan") or {}).get("chunk_size", "-"),
            f"{c['tree_cpu_s']:.1f}", f"{wcpu:.1f}", f"{c['client_cpu_s']:.1f}",
            f"{c['client_hwm_mb']:.0f}",
            f"{max((p['hwm'] for p in workers), default=float('nan')):.0f}",
            f"{c['load'][0][0]:.1f}-{c['load'][1][0]:.1f}"]


CLI_HEADERS = ["sweep", "runs", "wall s", "run_sweep s", "runs/s end-to-end",
               "runs/s steady", "1st chunk at s", "after last chunk s", "chunks",
               "chunk size", "CPU s (tree)", "CPU s (workers)", "CPU s (client)",
               "client peak MB", "worker peak MB", "load 1m"]


def report_c(args, c: dict[str, Any]) -> None:
    rows = []
    for r in c["rows"]:
        cli = r["cli"]
        rows.append([f"{r['runs']:,}", f"{cli['wall']:.1f}",
                     f"{r['runs'] / cli['wall']:,.0f}",
                     f"{cli.get('reported_runs_per_s', float('nan')):,.0f}",
                     cli.get("chunks", 0), (cli.get("plan") or {}).get("chunk_size", "-"),
                     f"{cli['client_hwm_mb']:.0f}", f"{cli['client_cpu_s']:.1f}",
                     f"{cli['disk_mb']:.0f}",
                     f"{cli['load'][0][0]:.1f}-{cli['load'][1][0]:.1f}"])
    print()
    print(f"(c) How cost grows: {_rel(args.config_b)}'s panel, --workers {args.workers}")
    print(format_table(["runs", "wall s", "runs/s end to end", "runs/s computing",
                        "chunks", "chunk size", "client peak MB", "client CPU s",
                        "on disk MB", "load 1m"], rows))
    big = c["rows"][-1]
    ok = big["cli"]["client_hwm_mb"] < GOAL_CLIENT_MB
    print(f"  goal client peak RSS < {GOAL_CLIENT_MB:.0f} MB at {big['runs']:,} runs: "
          f"{big['cli']['client_hwm_mb']:.0f} MB ({'met' if ok else 'NOT met'})")
    if "scan" in big:
        secs = big["scan"]["seconds"]
        print(f"  scan of {SCAN_COLUMNS} over {big['scan']['rows']:,} rows: "
              + ", ".join(f"{x:.3f}" for x in secs) + " s (first, then repeats); goal < "
              f"{GOAL_SCAN_S:g} s: {'met' if secs[0] < GOAL_SCAN_S else 'NOT met'}")
    if args.plot:
        scale_chart(c["rows"], args.plot)
        print(f"  chart: {args.plot}")


def report(args, a: dict[str, Any] | None, b: dict[str, Any] | None) -> None:
    if a:
        print()
        t = a["tiny"]
        print(f"(a) Dask overhead: {_rel(args.config_a)}, "
              f"--workers {args.workers}")
        rows = [_cli_row("tiny (8 runs): fixed cost", t, t["n_runs"] or 0)]
        for k, rnd in enumerate(a["rounds"], 1):
            rows.append(_cli_row(f"round {k}: CLI", rnd["cli"], rnd["cli"]["n_runs"] or 0))
        print(format_table(CLI_HEADERS, rows))
        print("  wall = spawn to exit of `backsweep run`; run_sweep s = its own timing in "
              "sweep.json (after imports; cluster start included); steady = runs in the chunk "
              "files after the first W (W workers) / time from the W-th to the last file; "
              "1st chunk at = "
              "spawn to the first chunk file; CPU s (tree) = wait4 rusage of the client and "
              "its reaped children (nannies, workers); workers = last polled CPU of the "
              "worker processes; peaks = VmHWM polled every 50 ms (client) / 250 ms.")
        rows, ratios = [], []
        for k, rnd in enumerate(a["rounds"], 1):
            ip, cli = rnd["inprocess"], rnd["cli"]
            runs = ip["runs"]
            ip_rate = runs / (ip["wall"]["median_ms"] / 1e3)
            ip_cpu_rate = runs / (ip["cpu"]["median_ms"] / 1e3)
            e2e = (cli["n_runs"] or 0) / cli["wall"]
            steady = cli.get("steady_runs_per_s", float("nan"))
            reported = cli.get("reported_runs_per_s", float("nan"))
            ratios.append((e2e / ip_rate, steady / ip_rate, reported / ip_rate))
            rows.append([f"round {k}", f"{runs:,}", f"{ip['wall']['median_ms'] / 1e3:.1f}",
                         f"{ip['cpu']['median_ms'] / 1e3:.1f}", f"{ip_rate:,.0f}",
                         f"{ip_cpu_rate:,.0f}", f"{e2e:,.0f}", f"{steady:,.0f}",
                         f"{reported:,.0f}", f"{e2e / ip_rate:.2f}x",
                         f"{steady / ip_rate:.2f}x", f"{reported / ip_rate:.2f}x",
                         f"{ip['load'][0][0]:.1f}-{ip['load'][1][0]:.1f}"])
        print(format_table(["in-process vs CLI", "runs", "in-process wall s", "CPU s",
                            "runs/s (wall)", "runs/CPU-s", "CLI runs/s end-to-end",
                            "CLI runs/s steady", "CLI runs/s reported",
                            "end-to-end / in-process", "steady / in-process",
                            "reported / in-process", "load 1m (in-process)"], rows))
        print("  reported = the rate the CLI prints and keeps in sweep.json "
              "(compute_last_call: first task submitted to last result, the workers' "
              "first chunks and their segment set-up included).")
        if "chunks" in a:
            ch = a["chunks"]
            runs = ch["runs"]
            ip = a["rounds"][-1]["inprocess"]
            ip_us = 1e6 * ip["cpu"]["median_ms"] / 1e3 / ip["runs"]
            # The same runs' bare compute is the fair reference: the sampled chunks are the
            # grid's first (fast windows 1, 2, ...: more trades than the grid's average).
            bare = ch["pieces"]["compiled loop on the chunk's slice, PBO blocks off"]
            rows = [[k, f"{v:.2f}", f"{1e6 * v / runs:.1f}", f"{v / bare:.2f}"]
                    for k, v in ch["pieces"].items()]
            rows.append(["in-process sweep.evaluate, whole grid in one call (last round)",
                         "-", f"{ip_us:.1f}", "(other runs)"])
            print(f"One worker's tasks, piece by piece: {ch['chunks']} chunks of "
                  f"{ch['chunk_size']:,} combinations (every other chunk from the start, "
                  f"{ch['segments']} segment(s); {runs:,} runs), CPU time, one process; "
                  f"indicators a chunk alone needs: "
                  f"{', '.join(map(str, ch['distinct_indicators']))} (the whole grid: "
                  f"{ch['whole_grid_indicators']:,}); load {ch['load'][0]:.1f}")
            print(format_table(["piece", "CPU s", "µs/run", "vs the compiled loop"], rows))
        crows, cratios = [], []
        for k, rnd in enumerate(a["rounds"], 1):
            if "client" not in rnd:
                continue
            ip, cl = rnd["inprocess"], rnd["client"]
            ip_rate = ip["runs"] / (ip["wall"]["median_ms"] / 1e3)
            rate = cl["runs"] / cl["wall"]
            cratios.append(rate / ip_rate)
            crows.append([f"round {k}", f"{cl['runs']:,}", f"{cl['wall']:.2f}",
                          f"{cl['cpu']:.2f}", f"{cl['chunks']}", f"{cl.get('tasks', 0)}",
                          f"{rate:,.0f}", f"{ip_rate:,.0f}", f"{rate / ip_rate:.2f}x",
                          f"{cl['load'][0][0]:.1f}-{cl['load'][1][0]:.1f}"])
        if crows:
            print(format_table(["run_sweep, client running", "runs", "wall s",
                                "CPU s (this process)", "chunks", "tasks", "runs/s",
                                "in-process runs/s", "ratio", "load 1m"], crows))
            med = statistics.median(cratios)
            print(f"  goal >= {GOAL_CLIENT_SPEEDUP}x the in-process runs/s with a client "
                  f"already running: {'met' if med >= GOAL_CLIENT_SPEEDUP else 'NOT met'} "
                  f"({med:.2f}x median; best round {max(cratios):.2f}x). CPU s = the child "
                  "process during the call: client, scheduler and nannies.")
        med_e2e = statistics.median(r[0] for r in ratios)
        med_steady = statistics.median(r[1] for r in ratios)
        med_reported = statistics.median(r[2] for r in ratios)
        print(f"  goal >= {GOAL_SPEEDUP}x the in-process runs/s end to end through the CLI "
              f"(median of the rounds): {'met' if med_e2e >= GOAL_SPEEDUP else 'NOT met'} "
              f"({med_e2e:.2f}x; best round {max(r[0] for r in ratios):.2f}x); for "
              f"reference, the steady state {med_steady:.2f}x (best round "
              f"{max(r[1] for r in ratios):.2f}x) and the CLI's reported compute rate "
              f"{med_reported:.2f}x (best round {max(r[2] for r in ratios):.2f}x)")
    if b:
        print()
        c, s = b["cli"], b["scan"]
        print(f"(b) Scale: {_rel(args.config_b)}, --workers {args.workers}")
        print(format_table(CLI_HEADERS, [_cli_row("1M-run CLI", c, c["n_runs"] or 0)]))
        print(f"  results on disk: {c['disk_mb']:.0f} MB; status {c['status']}, "
              f"{c['n_runs']:,} runs written, {c['runs_failed']} failed")
        ok = c["client_hwm_mb"] < GOAL_CLIENT_MB
        print(f"  goal client peak RSS < {GOAL_CLIENT_MB:.0f} MB: "
              f"{c['client_hwm_mb']:.0f} MB ({'met' if ok else 'NOT met'})")
        secs = s["seconds"]
        print(f"  pl.scan_parquet(runs, hive_partitioning=True).select({SCAN_COLUMNS})"
              f".collect(): {s['rows']:,} rows; " + ", ".join(f"{x:.3f}" for x in secs)
              + f" s (first, then repeats; import polars {s['import_s']:.2f} s, process "
              f"peak {s['peak_mb']:.0f} MB, spawn to exit {s['wall']:.1f} s, "
              f"{s['load'][0]:.1f} load)")
        print(f"  goal scan < {GOAL_SCAN_S:g} s: {'met' if secs[0] < GOAL_SCAN_S else 'NOT met'}"
              f" (first scan {secs[0]:.3f} s; page cache warm)")


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("a", "b", "c", "all"), default="all",
                   help="all = a and b; c (the scale table) runs only when asked for")
    p.add_argument("--config-a", type=Path, default=CONFIG_A)
    p.add_argument("--config-b", type=Path, default=CONFIG_B)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="in-process / CLI rounds in (a)")
    p.add_argument("--inprocess-repeat", type=int, default=1,
                   help="timed in-process calls a round")
    p.add_argument("--scan-repeat", type=int, default=3)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--keep", type=Path, default=None,
                   help="write the sweeps under this folder and keep them")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: the configs' tiny variants only (8 runs each)")
    p.add_argument("--chunk-samples", type=int, default=5,
                   help="chunks timed piece by piece on the worker side in (a)")
    p.add_argument("--no-chunk-profile", action="store_true")
    p.add_argument("--no-client", action="store_true",
                   help="skip part (a)'s run_sweep with a running client")
    p.add_argument("--sizes", default=",".join(map(str, SCALE_SIZES)),
                   type=lambda v: [int(x) for x in v.split(",") if x.strip()],
                   help="part (c)'s sweep sizes (runs)")
    p.add_argument("--plot", type=Path, default=None,
                   help="part (c): write the chart (SVG) here")
    p.add_argument("--json", type=Path, default=None, help="write every figure here")
    p.add_argument("--child", choices=("inprocess", "scan", "chunks", "client"),
                   help=argparse.SUPPRESS)
    p.add_argument("--tiny", help=argparse.SUPPRESS)
    p.add_argument("--chunk-size", type=int, default=2000, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--results", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "inprocess":
        inprocess_child(args)
        return 0
    if args.child == "scan":
        scan_child(args)
        return 0
    if args.child == "chunks":
        chunks_child(args)
        return 0
    if args.child == "client":
        client_child(args)
        return 0
    import dask
    import distributed
    import polars
    from bench_engine import engine_source

    print(f"backsweep sweep benchmark, {dt.date.today()}")
    print(f"machine: {machine_summary()}; {load_str()}")
    print(f"dask {dask.__version__}, distributed {distributed.__version__}, polars "
          f"{polars.__version__}")
    print(f"backsweep engine: {engine_source()}")
    started = time.perf_counter()
    tmp_ctx = (tempfile.TemporaryDirectory(prefix="backsweep-sweeps-") if args.keep is None
               else None)
    tmp = Path(tmp_ctx.name) if tmp_ctx else args.keep
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if args.quick:
            args.config_a = tiny_config(args.config_a, _mk(tmp / "qa"))
            args.config_b = tiny_config(args.config_b, _mk(tmp / "qb"))
            args.rounds = 1
        a = part_a(args, tmp) if args.part in ("a", "all") else None
        b = part_b(args, tmp) if args.part in ("b", "all") else None
        c = part_c(args, tmp) if args.part == "c" else None
        report(args, a, b)
        if c:
            report_c(args, c)
        if args.json:
            args.json.write_text(json.dumps({"a": a, "b": b, "c": c}, indent=1,
                                            default=str))
    finally:
        if tmp_ctx:
            tmp_ctx.cleanup()
    print(f"\n(total {time.perf_counter() - started:.0f} s; {load_str()}; "
          f"{si(os.cpu_count() or 0)} logical CPUs)")
    return 0


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
