"""top_n grid on 500 assets x 2,520 bars through ``sweep.evaluate``: ms a run.

The workload (the project's speed issue): ``synthetic_panel(n_assets=500, n_bars=2520,
seed=0)`` (late listings, delistings, rare halts), strategy ``top_n`` ranked by the
``ml_score`` feature, grid ``n`` = 5..50 (every integer, 46 values) x ``rebalance_every`` in
{5, 10, 21, 63}: 184 runs, commission 10 bp. Goal: <= 10 ms a run.

Everything runs in one child process (``NUMBA_NUM_THREADS=1``, single-threaded): one
untimed warm-up call, then timed ``sweep.evaluate`` calls over the whole grid, in both fill
modes; then each ``rebalance_every`` alone (the cost grows with the number of rebalances);
then the split of the time into strategy kernel / simulation / metrics (see
``_components.py``). Wall and CPU time (``time.process_time``) are both reported: on this
shared machine the CPU time is what a run costs a core.

Usage (from the repository root)::

    python benchmarks/bench_top_n_grid.py             # full size, ~2 minutes
    python benchmarks/bench_top_n_grid.py --quick     # smoke run: 50 assets x 504 bars

These are measurements, not assertions: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # the helper module sits next to this script
    emit_json,
    format_table,
    load_average,
    load_str,
    machine_summary,
    peak_rss_mb,
    pin_to_cpu,
    run_child,
    si,
    time_calls_cpu,
)

CHILD_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
GOAL_MS = 10.0


def grid(args: argparse.Namespace) -> dict[str, list[int]]:
    return {"n": list(range(args.n_min, args.n_max + 1)), "rebalance_every": args.every}


def child(args: argparse.Namespace) -> None:
    pinned = pin_to_cpu(args.cpu)
    from _components import profile_components

    import strategies
    import sweep
    from engine import EngineConfig
    from engine.data import synthetic_panel
    from sweep.grid import Grid

    out: dict[str, Any] = {"pinned": pinned, "load_start": load_average()}
    panel = synthetic_panel(n_assets=args.assets, n_bars=args.bars, seed=args.seed)
    out["after_inputs_mb"] = peak_rss_mb()
    g = grid(args)
    timings = {}
    for fill in ("next_open", "close"):
        cfg = EngineConfig(commission=args.commission, fill=fill)
        t0 = time.perf_counter()
        df = sweep.evaluate(panel, "top_n", g, cfg)  # warm-up: compile or load the caches
        first = time.perf_counter() - t0
        load0 = load_average()
        wall, cpu = time_calls_cpu(lambda cfg=cfg: sweep.evaluate(panel, "top_n", g, cfg),
                                   args.repeat, warmup=0)
        timings[fill] = {"wall": wall.to_dict(), "cpu": cpu.to_dict(), "first_s": first,
                         "runs": df.height, "mean_trades": float(df["n_trades"].mean()),
                         "mean_turnover": float(df["turnover"].mean()),
                         "load": [load0, load_average()]}
    out["timings"] = timings

    # Each rebalance_every alone (default fill): the cost grows with the rebalances.
    cfg = EngineConfig(commission=args.commission)
    by_every = {}
    for every in args.every:
        sub = {"n": g["n"], "rebalance_every": [every]}
        wall, cpu = time_calls_cpu(lambda sub=sub: sweep.evaluate(panel, "top_n", sub, cfg),
                                   max(2, args.repeat // 2))
        by_every[every] = {"wall": wall.to_dict(), "cpu": cpu.to_dict(),
                           "runs": len(g["n"])}
    out["by_every"] = by_every

    if not args.no_profile:
        s = strategies.get("top_n")
        table = Grid.build(s, g).frame()
        out["load_profile"] = load_average()
        out["components"] = profile_components(panel, s, table, cfg,
                                               repeat=args.profile_repeat).to_dict()
    out["peak_mb"] = peak_rss_mb()
    out["load_end"] = load_average()
    emit_json(out)


def report(args, rep: dict[str, Any]) -> None:
    T, N = args.bars, args.assets
    rows = []
    for fill, t in rep["timings"].items():
        R = t["runs"]
        w, c = t["wall"], t["cpu"]
        per = c["median_ms"] / R
        rows.append([f"sweep.evaluate fill={fill}", R, f"{w['median_ms'] / R:.2f}",
                     f"{w['min_ms'] / R:.2f}", f"{c['median_ms'] / R:.2f}",
                     f"{c['min_ms'] / R:.2f}", len(w["seconds"]), si(T / (per / 1e3)),
                     si(T * N / (per / 1e3)), f"{t['mean_trades']:,.0f}",
                     f"{t['load'][0][0]:.1f}-{t['load'][1][0]:.1f}",
                     "met" if per <= GOAL_MS else "NOT met"])
    print()
    print(f"top_n grid: {N} assets x {T:,} bars (synthetic seed {args.seed}), n = "
          f"{args.n_min}..{args.n_max} x rebalance_every {args.every}, commission "
          f"{args.commission:g}; one process, NUMBA_NUM_THREADS=1, {rep['pinned']}")
    print(format_table(
        ["call", "runs", "wall ms/run med", "wall min", "CPU ms/run med", "CPU min", "n",
         "bar-runs/s (CPU)", "asset-bar-runs/s (CPU)", "trades/run", "load 1m",
         f"<= {GOAL_MS:g} ms"], rows))
    print("  ms/run = one sweep.evaluate call over the whole grid / runs (Python around the "
          "compiled loop included); CPU = time.process_time of the call.")
    rows = []
    for every, t in rep["by_every"].items():
        R = t["runs"]
        rows.append([f"rebalance_every={every}", R, f"{t['wall']['median_ms'] / R:.2f}",
                     f"{t['cpu']['median_ms'] / R:.2f}", f"{t['cpu']['min_ms'] / R:.2f}",
                     (T + int(every) - 1) // int(every)])
    print(format_table(["subset (fill=next_open)", "runs", "wall ms/run med",
                        "CPU ms/run med", "CPU min", "rebalances"], rows))
    if "components" in rep:
        from _components import ComponentTimes

        comp = ComponentTimes(**rep["components"])
        print(f"Where the time goes (fill=next_open, {comp.runs} runs, CPU time, "
              f"{comp.repeat} calls each, interleaved; load "
              f"{rep['load_profile'][0]:.1f}):")
        print(format_table(list(ComponentTimes.HEADERS), comp.rows()))
        print(f"  mean trades a run {comp.mean_trades:,.0f}. 'The median-trades run' is "
              "the grid's median run by n_trades; runs differ a lot here (rebalance_every=5, "
              "n=50 costs several times more), so the direct rows time one run while the "
              "differences give the grid's mean.")
    print(f"peak RSS of the process: {rep['peak_mb']:.0f} MB (after building the panel "
          f"{rep['after_inputs_mb']:.0f} MB)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", type=int, default=500)
    p.add_argument("--bars", type=int, default=2520)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-min", type=int, default=5)
    p.add_argument("--n-max", type=int, default=50)
    p.add_argument("--every", type=int, nargs="+", default=[5, 10, 21, 63],
                   help="rebalance_every values")
    p.add_argument("--commission", type=float, default=0.001)
    p.add_argument("--repeat", type=int, default=5, help="timed calls over the grid")
    p.add_argument("--profile-repeat", type=int, default=3)
    p.add_argument("--cpu", type=int, default=None, help="pin the child to this CPU")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--quick", action="store_true", help="smoke run: 50 assets x 504 bars")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.assets, args.bars, args.repeat, args.profile_repeat = 50, 504, 2, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    import numba
    from bench_engine import engine_source

    print(f"backsweep top_n grid benchmark, {dt.date.today()}")
    print(f"machine: {machine_summary()}; {load_str()}")
    print(f"numpy {np.__version__}, numba {numba.__version__}")
    print(f"backsweep engine: {engine_source()}")
    started = time.perf_counter()
    argv_ = [sys.executable, str(Path(__file__).resolve()), "--child",
             *(a for a in (argv if argv is not None else sys.argv[1:]))]
    rep, _ = run_child(argv_, env=CHILD_ENV, timeout=3600)
    report(args, rep)
    print(f"\n(total {time.perf_counter() - started:.0f} s; {load_str()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
