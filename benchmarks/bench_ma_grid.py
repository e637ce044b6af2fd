"""MA-cross grid on one asset: backsweep's ``sweep.evaluate`` vs vectorbt, side by side.

The workload (the project's MA-grid issue): every (fast, slow) pair of windows 2..101 with
fast < slow (4,950 runs), one asset x 2,520 bars, three metrics of every run, one process,
one core.

* backsweep: ``sweep.evaluate(panel, "ma_cross", {"fast": range(2, 102), "slow":
  range(2, 102)}, EngineConfig(fill="close"), constraints=["fast < slow"])`` (all 18
  metrics of every run, as a polars frame);
* vectorbt: ``fast_ma, slow_ma = vbt.MA.run_combs(close, window=np.arange(2, 102), r=2,
  short_names=["fast", "slow"])``; entries / exits = ``fast_ma.ma_crossed_above /
  below(slow_ma)``; ``pf = vbt.Portfolio.from_signals(close, entries, exits, freq="1D",
  init_cash=1e6)``; ``pf.total_return()``, ``pf.sharpe_ratio()``, ``pf.max_drawdown()``.

Each engine runs in its own child process (``NUMBA_NUM_THREADS=1``, pinned to one CPU):
import, build the panel, one untimed warm-up call (JIT compile, caches), then timed calls
(backsweep's for ``--span`` seconds, about as long as vectorbt's three calls take); its
peak RSS is its ``VmHWM``. The engines alternate for ``--rounds`` rounds so that both see
the same background load: on a shared machine whose speed moves within minutes, a round of
a few backsweep calls (0.3 s) could fall wholly in a slow or a fast stretch that a
vectorbt round (~13 s) averages over. Then the results are compared pair by pair (total return,
max drawdown, Sharpe rescaled to vectorbt's 365-day year) and, unless ``--no-profile``,
a third child splits backsweep's time into strategy kernel / simulation / metrics /
Python around the compiled loop.

Usage (from the repository root)::

    python benchmarks/bench_ma_grid.py                   # full size, ~4 minutes
    python benchmarks/bench_ma_grid.py --quick           # smoke run: windows 2..21, 504 bars
    python benchmarks/bench_ma_grid.py --only backsweep --no-profile

These are measurements, not assertions: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import warnings
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
    reset_peak_rss,
    rss_mb,
    run_child,
    si,
    time_calls_cpu,
)

ENGINES = ("backsweep", "vectorbt")
INIT_CASH = 1_000_000.0
# The published figure we compare bar-runs/s with: ~450M bar-runs/s on 4 vCPUs (a Rust
# engine), i.e. ~112M a core.
PUBLISHED_BAR_RUNS = 450e6
PUBLISHED_CORES = 4
CHILD_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
GOAL_SPEED = 100.0   # issue 22: >= 100x vectorbt (CPU medians) ...
GOAL_MEMORY = 0.1    # ... at <= 1/10 of its peak RSS
FUSED_RUNS = "evaluate_block_single (the fused runs sweep.evaluate makes)"


# --------------------------------------------------------------------------- workload
def build_panel(args: argparse.Namespace):
    if args.data == "aapl":
        from engine.data import sample_stocks

        p = sample_stocks(["AAPL"])
        return p.take(max(0, p.n_bars - args.bars), p.n_bars)
    from engine.data import synthetic_panel

    return synthetic_panel(n_assets=1, n_bars=args.bars, seed=args.seed,
                           listing_fraction=0.0, delisting_fraction=0.0,
                           halt_probability=0.0)


def windows(args: argparse.Namespace) -> list[int]:
    return list(range(args.min_window, args.max_window + 1))


def n_pairs(args: argparse.Namespace) -> int:
    k = args.max_window - args.min_window + 1
    return k * (k - 1) // 2


def backsweep_runner(panel, args):
    import sweep
    from engine import EngineConfig

    grid = {"fast": windows(args), "slow": windows(args)}
    cfg = EngineConfig(fill="close", init_cash=INIT_CASH)

    def run():
        return sweep.evaluate(panel, "ma_cross", grid, cfg, constraints=["fast < slow"])

    def arrays(df) -> dict[str, np.ndarray]:
        return {k: df[k].to_numpy() for k in ("fast", "slow", "total_return", "sharpe",
                                              "max_drawdown", "n_trades")}

    return run, arrays


def vectorbt_runner(panel, args):
    warnings.filterwarnings("ignore")
    import pandas as pd
    import vectorbt as vbt

    close = pd.Series(panel.close[:, 0], index=pd.DatetimeIndex(panel.timestamps),
                      name="close")
    wins = np.arange(args.min_window, args.max_window + 1)

    def run():
        fast_ma, slow_ma = vbt.MA.run_combs(close, window=wins, r=2,
                                            short_names=["fast", "slow"])
        entries = fast_ma.ma_crossed_above(slow_ma)
        exits = fast_ma.ma_crossed_below(slow_ma)
        pf = vbt.Portfolio.from_signals(close, entries, exits, freq="1D", init_cash=INIT_CASH)
        return pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown()

    def arrays(res) -> dict[str, np.ndarray]:
        tr, sr, md = res
        idx = tr.index
        return {"fast": np.asarray(idx.get_level_values(0)),
                "slow": np.asarray(idx.get_level_values(1)),
                "total_return": tr.to_numpy(), "sharpe": sr.to_numpy(),
                "max_drawdown": md.to_numpy()}

    return run, arrays


# ------------------------------------------------------------------------ child modes
def timing_child(args: argparse.Namespace) -> None:
    """Child: one engine, pinned; warm-up, timed calls, memory; results to an .npz."""
    pinned = pin_to_cpu(args.cpu)
    load_before = load_average()
    eng = args.child
    if eng == "backsweep":
        import sweep  # noqa: F401
    else:
        warnings.filterwarnings("ignore")
        import vectorbt  # noqa: F401
    after_import = peak_rss_mb()
    panel = build_panel(args)
    run, arrays = (backsweep_runner if eng == "backsweep" else vectorbt_runner)(panel, args)
    baseline = peak_rss_mb()
    t0 = time.perf_counter()
    res = run()  # warm-up: JIT compile or load caches
    first_s = time.perf_counter() - t0
    first_peak = peak_rss_mb()
    out = arrays(res)
    del res
    reset = reset_peak_rss()
    rss_before = rss_mb()
    if eng == "backsweep":
        wall, cpu = time_calls_cpu(run, args.repeat, warmup=0, span=args.span)
    else:
        wall, cpu = time_calls_cpu(run, args.vbt_repeat, warmup=0)
    steady_peak = peak_rss_mb()
    # Then calls back to back as a plain script makes them (no gc.collect() between them,
    # the previous result still referenced while the next call runs): garbage that only
    # the cycle collector frees can pile up; this is the peak such a script sees.
    res = None
    for _ in range(args.natural_calls):
        res = run()
    natural_peak = peak_rss_mb()
    del res
    from engine.metrics import periods_per_year

    np.savez(args.result, ppy=periods_per_year(panel.timestamps), **out)
    emit_json({
        "engine": eng, "pinned": pinned, "timing": wall.to_dict(), "cpu": cpu.to_dict(),
        "first_s": first_s,
        "after_import_mb": after_import, "baseline_mb": baseline,
        "first_call_delta_mb": first_peak - baseline,
        "peak_mb": max(first_peak, steady_peak), "steady_delta_mb": steady_peak - rss_before,
        "natural_peak_mb": max(first_peak, steady_peak, natural_peak),
        "natural_calls": args.natural_calls,
        "hwm_reset": reset, "load_before": load_before, "load_after": load_average(),
        "runs": int(out["total_return"].shape[0]), "bars": panel.n_bars,
    })


def script_child(args: argparse.Namespace) -> None:
    """Child: the workload as a plain script runs it in a fresh process: import, build the
    panel, then ``--script-calls`` calls back to back (the first compiles), no
    gc.collect(), each result kept until the next call returns; report the peak RSS."""
    eng = args.child.removeprefix("script-")
    if eng == "vectorbt":
        warnings.filterwarnings("ignore")
    c0 = time.process_time()
    panel = build_panel(args)
    run, _ = (backsweep_runner if eng == "backsweep" else vectorbt_runner)(panel, args)
    setup = time.process_time() - c0  # imports (eager compilation there), the panel
    calls = []
    res = None
    for _ in range(args.script_calls):
        c0, t0 = time.process_time(), time.perf_counter()
        res = run()
        calls.append((time.perf_counter() - t0, time.process_time() - c0))
    del res
    emit_json({"engine": eng, "calls": calls, "setup_cpu_s": setup, "peak_mb": peak_rss_mb(),
               "load": load_average()})


def profile_child(args: argparse.Namespace) -> None:
    """Child: backsweep only, pinned; split sweep.evaluate's time into its parts."""
    pinned = pin_to_cpu(args.cpu)
    from _components import profile_components

    import strategies
    import sweep
    from engine import EngineConfig
    from engine.config import pack_configs
    from engine.metrics import bars_per_year
    from sweep.evaluate import evaluate_table
    from sweep.grid import Grid, strategy_columns
    from sweep.kernels import evaluate_block_single

    panel = build_panel(args)
    s = strategies.get("ma_cross")
    grid = {"fast": windows(args), "slow": windows(args)}
    cfg = EngineConfig(fill="close", init_cash=INIT_CASH)
    load_before = load_average()
    comp = profile_components(panel, s, Grid.build(s, grid, ["fast < slow"]).frame(), cfg,
                              repeat=args.repeat)

    def grid_table():
        return Grid.build(s, grid, ["fast < slow"]).frame()

    table = grid_table()
    cols = strategy_columns(s, table)
    # The fused runs alone, as sweep.evaluate calls them for this grid (one asset, a
    # fused kernel): the loop the components above stand in for.
    data, rows = (np.ascontiguousarray(a) for a in s.prepare(panel, cols))
    open_, close = (np.ascontiguousarray(a[:, 0]) for a in (panel.open, panel.close))
    cfgs, of_run = pack_configs([cfg]), np.zeros(rows.shape[0], dtype=np.int64)
    bounds = np.array([[0, panel.n_bars]], dtype=np.int64)
    ppy = np.array([bars_per_year(panel.timestamps, cfg.periods_per_year)])
    rep = args.repeat
    py = {}
    for name, fn in (
        ("grid build + frame", grid_table),
        ("prepare (the distinct moving averages)", lambda: s.prepare(panel, cols)),
        (FUSED_RUNS, lambda: evaluate_block_single(s.fused, data, rows, open_, close, cfgs,
                                                   of_run, bounds, ppy, 0)),
        ("evaluate_table", lambda: evaluate_table(panel, s, table, cfg)),
        ("sweep.evaluate", lambda: sweep.evaluate(panel, "ma_cross", grid, cfg,
                                                  constraints=["fast < slow"])),
    ):
        _, t = time_calls_cpu(fn, rep)
        py[name] = (t.median, t.best)
    emit_json({"pinned": pinned, "components": comp.to_dict(), "python": py,
               "load_before": load_before, "load_after": load_average()})


# ------------------------------------------------------------------------- the parent
def run_engines(args, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    reports, results = [], {}
    script = str(Path(__file__).resolve())
    for rnd in range(args.rounds):
        for eng in args.only:
            res = tmp / f"{eng}-{rnd}.npz"
            argv = [sys.executable, script, "--child", eng, "--result", str(res),
                    *forwarded(args)]
            load = load_average()
            print(f"  round {rnd + 1}: {eng} ... ({load_str()})", flush=True)
            rep, wall = run_child(argv, env=CHILD_ENV, timeout=3600)
            rep.update(round=rnd + 1, wall=wall, load_parent=load)
            t = rep["timing"]
            print(f"    median {t['median_ms']:.1f} ms, min {t['min_ms']:.1f} ms, peak RSS "
                  f"{rep['peak_mb']:.0f} MB, first call {rep['first_s']:.1f} s", flush=True)
            reports.append(rep)
            results[eng] = res
    return reports, results


def forwarded(args) -> list[str]:
    return ["--bars", str(args.bars), "--seed", str(args.seed), "--data", args.data,
            "--min-window", str(args.min_window), "--max-window", str(args.max_window),
            "--repeat", str(args.repeat), "--vbt-repeat", str(args.vbt_repeat),
            "--span", str(args.span),
            "--natural-calls", str(args.natural_calls),
            *(["--cpu", str(args.cpu)] if args.cpu is not None else [])]


def compare(results: dict[str, Path]) -> dict[str, Any] | None:
    if set(results) != set(ENGINES):
        return None
    b, v = (dict(np.load(results[e])) for e in ENGINES)

    def ordered(d):
        order = np.lexsort((d["slow"], d["fast"]))
        return {k: (a[order] if np.ndim(a) else a) for k, a in d.items()}

    b, v = ordered(b), ordered(v)
    same_pairs = bool(np.array_equal(b["fast"], v["fast"]) and
                      np.array_equal(b["slow"], v["slow"]))
    out: dict[str, Any] = {"same_pairs": same_pairs, "runs": int(b["fast"].shape[0])}
    if not same_pairs:
        return out
    scale = np.sqrt(365.0 / float(b["ppy"]))  # vectorbt: freq 1D, year = 365 days
    pairs = {
        "total_return": (b["total_return"], v["total_return"]),
        "max_drawdown": (b["max_drawdown"], -v["max_drawdown"]),
        "sharpe (x sqrt(365/ppy))": (b["sharpe"] * scale, v["sharpe"]),
    }
    for name, (x, y) in pairs.items():
        both = np.isfinite(x) & np.isfinite(y)
        diff = np.abs(x[both] - y[both])
        rel = diff / np.maximum(np.abs(y[both]), 1e-12)
        out[name] = {"compared": int(both.sum()),
                     "finite_mismatch": int((np.isfinite(x) != np.isfinite(y)).sum()),
                     "max_abs": float(diff.max()) if diff.size else float("nan"),
                     "max_rel": float(rel.max()) if rel.size else float("nan"),
                     "within_1e-9": int((diff <= 1e-9 * np.maximum(1.0, np.abs(y[both])))
                                        .sum())}
    for eng, d in (("backsweep", b), ("vectorbt", v)):
        k = int(np.nanargmax(d["total_return"]))
        out[f"best_{eng}"] = (int(d["fast"][k]), int(d["slow"][k]),
                              float(d["total_return"][k]))
    out["mean_trades"] = float(np.nanmean(b["n_trades"]))
    out["ppy"] = float(b["ppy"])
    return out


def _pooled(reports, eng: str, key: str) -> list[float]:
    return [x for r in reports if r["engine"] == eng for x in r[key]["seconds"]]


def report(args, reports, parity, profile, scripts) -> None:
    R = n_pairs(args)
    T = args.bars
    rows = []
    for rep in reports:
        t, c = rep["timing"], rep["cpu"]
        rows.append([rep["engine"], rep["round"], f"{t['median_ms']:,.1f}",
                     f"{t['min_ms']:,.1f}", f"{c['median_ms']:,.1f}", f"{c['min_ms']:,.1f}",
                     len(t["seconds"]), f"{1e3 * c['median_ms'] / R:.1f}",
                     si(R * T / (c["median_ms"] / 1e3)), f"{rep['first_s']:.1f}",
                     f"{rep['peak_mb']:,.0f}", f"{rep['natural_peak_mb']:,.0f}",
                     f"{rep['after_import_mb']:.0f}",
                     f"{rep['steady_delta_mb']:,.0f}",
                     f"{rep['load_before'][0]:.1f}-{rep['load_after'][0]:.1f}"])
    print()
    pin = f"pinned to CPU {args.cpu}" if args.cpu is not None else "not pinned"
    print(f"MA-cross grid: windows {args.min_window}..{args.max_window}, fast < slow = {R:,} "
          f"runs, 1 asset x {T:,} bars ({args.data}); one child process a engine, "
          f"NUMBA_NUM_THREADS=1, single-threaded, {pin}")
    print(format_table(
        ["engine", "round", "wall ms med", "wall ms min", "CPU ms med", "CPU ms min", "n",
         "µs/run (CPU)", "bar-runs/s (CPU)", "warm-up s", "peak RSS MB",
         "peak, plain-script calls MB", "imports MB",
         "run Δ MB", "load 1m"], rows))
    print("  CPU ms = user + system time of the call (time.process_time): the core-time it "
          "cost, without the time it waited for a core on this shared machine.")
    print("  peak RSS = VmHWM of the engine's child over imports, panel, warm-up and the "
          "timed calls (gc.collect() before each); plain-script calls = the same after "
          f"{args.natural_calls} more calls back to back without gc.collect(), the previous "
          "result still referenced; imports MB = the peak after imports; run Δ = peak of "
          "the timed calls over the RSS before them (pages the allocator kept from the "
          "warm-up are reused, so this understates a first call).")
    engines = [e for e in ENGINES if _pooled(reports, e, "timing")]
    if len(engines) == 2:
        med = {(e, k): float(np.median(_pooled(reports, e, k))) for e in engines
               for k in ("timing", "cpu")}
        low = {(e, k): float(np.min(_pooled(reports, e, k))) for e in engines
               for k in ("timing", "cpu")}
        peak = {(e, k): [r[k] for r in reports if r["engine"] == e] for e in engines
                for k in ("peak_mb", "natural_peak_mb")}

        def per_round(key: str) -> str:
            out = []
            for k in range(1, args.rounds + 1):
                v, b = (next(r for r in reports if r["engine"] == e and r["round"] == k)
                        [key]["median_ms"] for e in ("vectorbt", "backsweep"))
                out.append(f"{v / b:.1f}x")
            return ", ".join(out)

        for key, label in (("timing", "wall"), ("cpu", "CPU")):
            v, b = med[("vectorbt", key)], med[("backsweep", key)]
            print(f"vectorbt / backsweep, {label} time: {v / b:.1f}x on the pooled medians "
                  f"({1e3 * v:,.0f} / {1e3 * b:,.1f} ms), "
                  f"{low[('vectorbt', key)] / low[('backsweep', key)]:.1f}x on the minima; "
                  f"per round (medians): {per_round(key)}")
        ratio = med[("vectorbt", "cpu")] / med[("backsweep", "cpu")]
        print(f"  goal >= {GOAL_SPEED:.0f}x: {'met' if ratio >= GOAL_SPEED else 'NOT met'} "
              f"(CPU medians; at this vectorbt time backsweep would need <= "
              f"{1e3 * med[('vectorbt', 'cpu')] / GOAL_SPEED:.0f} ms)")
        for (e, cache), r in scripts.items():
            peak[(e, f"script-{cache}")] = [r["peak_mb"]]
        for key, label in (("peak_mb", "gc.collect() between calls"),
                           ("natural_peak_mb", "then calls back to back"),
                           ("script-warm", "fresh plain script, warm Numba cache"),
                           ("script-cold", "fresh plain script, cold Numba cache")):
            if not all((e, key) in peak for e in engines):
                continue
            b, v = min(peak[("backsweep", key)]), min(peak[("vectorbt", key)])
            bmax = max(peak[("backsweep", key)])
            mem = b / v
            print(f"peak RSS backsweep / vectorbt, {label}: {b:,.0f} / {v:,.0f} MB = "
                  f"1/{1 / mem:.1f} (lowest of the rounds; backsweep's highest {bmax:,.0f} "
                  f"MB = 1/{v / bmax:.1f}); goal <= 1/{1 / GOAL_MEMORY:.0f}: "
                  f"{'met' if mem <= GOAL_MEMORY else 'NOT met'}")
    if scripts:
        rows = [[e, cache, f"{r['setup_cpu_s']:.2f}", len(r["calls"]),
                 ", ".join(f"{c:.2f}" for _, c in r["calls"]),
                 f"{r['peak_mb']:,.0f}", f"{r['load'][0]:.1f}"]
                for (e, cache), r in scripts.items()]
        print(f"Fresh plain script (import, panel, {args.script_calls} calls back to back, "
              "the first compiles or loads the caches; no gc.collect(); the previous result "
              "referenced while the next call runs); cold = NUMBA_CACHE_DIR a new empty "
              "directory, so every cached Numba function of both libraries compiles:")
        print(format_table(["engine", "Numba cache", "imports + panel CPU s", "calls",
                            "CPU s of each call",
                            "peak RSS MB", "load 1m"], rows))
    if _pooled(reports, "backsweep", "cpu"):
        per_core = PUBLISHED_BAR_RUNS / PUBLISHED_CORES
        cpu = _pooled(reports, "backsweep", "cpu")
        wall = _pooled(reports, "backsweep", "timing")
        rate = R * T / float(np.median(cpu))
        print(f"backsweep bar-runs/s on one core: {si(rate)} (CPU median; "
              f"{si(R * T / min(cpu))} at the minimum; wall median "
              f"{si(R * T / float(np.median(wall)))}) = {rate / per_core:.2f} of the published "
              f"~{si(per_core)} a core (~{si(PUBLISHED_BAR_RUNS)} on {PUBLISHED_CORES} vCPUs); "
              f"{1e9 / rate:.1f} ns a bar-run vs {1e9 / per_core:.1f} ns")

    if parity:
        print()
        if not parity["same_pairs"]:
            print("parity: the engines returned different (fast, slow) pairs!")
        else:
            print(f"parity over {parity['runs']:,} (fast, slow) pairs (backsweep ma_cross "
                  "fill=close vs vectorbt from_signals):")
            for k in ("total_return", "max_drawdown", "sharpe (x sqrt(365/ppy))"):
                d = parity[k]
                print(f"  {k:26} compared {d['compared']:,}, max abs diff {d['max_abs']:.2e}, "
                      f"max rel {d['max_rel']:.2e}, within 1e-9: {d['within_1e-9']:,}, "
                      f"finite in one only: {d['finite_mismatch']}")
            for eng in ENGINES:
                f, s, tr = parity[f"best_{eng}"]
                print(f"  best by total return, {eng:9}: fast {f}, slow {s}, total return "
                      f"{tr:.6f}")
            print(f"  mean trades a run (backsweep n_trades): {parity['mean_trades']:.1f}; "
                  f"ppy {parity['ppy']:.2f}")

    if profile:
        c = profile["components"]
        from _components import ComponentTimes

        comp = ComponentTimes(**c)
        print()
        print(f"Where backsweep's time goes ({R:,} runs x {T:,} bars, one core, CPU time, "
              f"{args.repeat} calls each, interleaved; load {profile['load_before'][0]:.1f} -> "
              f"{profile['load_after'][0]:.1f}); the stages of the general path (weights, "
              "then the bar loop), which a grid runs without a fused one-asset kernel:")
        print(format_table(list(ComponentTimes.HEADERS), comp.rows()))
        py = profile["python"]
        rows = [[k, f"{1e3 * v[0]:.1f}", f"{1e3 * v[1]:.1f}", f"{1e6 * v[1] / R:.2f}"]
                for k, v in py.items()]
        gap = [py["sweep.evaluate"][i] - py[FUSED_RUNS][i] for i in (0, 1)]
        rows.append(["  sweep.evaluate - the fused runs", f"{1e3 * gap[0]:.1f}",
                     f"{1e3 * gap[1]:.1f}", f"{1e6 * gap[1] / R:.2f}"])
        print(format_table(["Python around the compiled loop", "CPU ms med", "CPU ms min",
                            "µs/run (min)"], rows))
        print(f"  mean trades a run: {c['mean_trades']:.1f} (the direct "
              "timings use the grid's median run by n_trades)")


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bars", type=int, default=2520)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", choices=("synthetic", "aapl"), default="synthetic",
                   help="synthetic one-asset panel (no gaps), or the last --bars bars of "
                        "the bundled AAPL sample")
    p.add_argument("--min-window", type=int, default=2)
    p.add_argument("--max-window", type=int, default=101)
    p.add_argument("--repeat", type=int, default=7, help="timed backsweep calls a child")
    p.add_argument("--span", type=float, default=12.0,
                   help="and more timed backsweep calls until this many seconds have passed "
                        "(about one vectorbt child's timed calls: both engines' medians then "
                        "sample as long a stretch of a shared machine's load; 0 = --repeat "
                        "calls only, the method before 2026-12-06 19:00)")
    p.add_argument("--vbt-repeat", type=int, default=3, help="timed vectorbt calls a child")
    p.add_argument("--natural-calls", type=int, default=2,
                   help="untimed calls back to back without gc.collect() after the timed "
                        "ones (the peak RSS a plain script sees)")
    p.add_argument("--rounds", type=int, default=2,
                   help="alternate the engine children this many times")
    p.add_argument("--cpu", type=int, default=None,
                   help="pin the children to this CPU (default: not pinned; they are "
                        "single-threaded either way)")
    p.add_argument("--only", action="append", metavar="ENGINE")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: windows 2..21 on 504 bars, 1 round")
    p.add_argument("--script-calls", type=int, default=3,
                   help="calls of the fresh-process plain-script memory check (0 = skip)")
    p.add_argument("--no-cold-script", dest="cold_script", action="store_false",
                   help="skip the plain-script memory check with a cold Numba cache")
    p.add_argument("--child", choices=(*ENGINES, "profile", "script-backsweep",
                                       "script-vectorbt"), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    only = [e.strip() for item in (args.only or list(ENGINES)) for e in item.split(",")]
    if set(only) - set(ENGINES):
        p.error(f"unknown engine(s) {sorted(set(only) - set(ENGINES))}")
    args.only = [e for e in ENGINES if e in only]
    if args.quick:
        args.max_window, args.bars, args.rounds = min(args.max_window, 21), 504, 1
        args.repeat, args.vbt_repeat, args.span = 3, 2, 0.0
    if args.min_window < 1 or args.max_window <= args.min_window:
        p.error("need 1 <= --min-window < --max-window")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "profile":
        profile_child(args)
        return 0
    if args.child and args.child.startswith("script-"):
        script_child(args)
        return 0
    if args.child:
        timing_child(args)
        return 0
    import numba
    from bench_engine import engine_source

    print(f"backsweep MA-cross grid benchmark, {dt.date.today()}")
    print(f"machine: {machine_summary()}; {load_str()}")
    try:
        import vectorbt
        vbt_ver = vectorbt.__version__
    except ImportError:
        vbt_ver = "not installed"
    print(f"numpy {np.__version__}, numba {numba.__version__}, vectorbt {vbt_ver}")
    print(f"backsweep engine: {engine_source()}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="backsweep-magrid-") as tmp:
        reports, results = run_engines(args, Path(tmp))
        parity = compare(results)
    scripts = {}
    caches = ("warm", "cold") if args.cold_script else ("warm",)
    for cache in caches if args.script_calls > 0 else ():
        for eng in args.only:
            print(f"  plain script, {eng}, {cache} Numba cache ... ({load_str()})", flush=True)
            argv_ = [sys.executable, str(Path(__file__).resolve()), "--child",
                     f"script-{eng}", "--script-calls", str(args.script_calls),
                     *forwarded(args)]
            with tempfile.TemporaryDirectory(prefix="backsweep-numba-cold-") as cold:
                env = dict(CHILD_ENV, **({"NUMBA_CACHE_DIR": cold} if cache == "cold" else {}))
                scripts[(eng, cache)], _ = run_child(argv_, env=env, timeout=3600)
    profile = None
    if not args.no_profile and "backsweep" in args.only:
        print(f"  profile child ... ({load_str()})", flush=True)
        argv_ = [sys.executable, str(Path(__file__).resolve()), "--child", "profile",
                 *forwarded(args)]
        profile, _ = run_child(argv_, env=CHILD_ENV, timeout=3600)
    report(args, reports, parity, profile, scripts)
    print(f"\n(total {time.perf_counter() - started:.0f} s; {load_str()}; "
          f"pid {os.getpid()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
