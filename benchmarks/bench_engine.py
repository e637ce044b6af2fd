"""Speed and memory of one target-weight backtest: backsweep vs vectorbt vs ml4t-backtest.

The workload (the project's speed issue): ``synthetic_panel(n_assets=500, n_bars=2520,
seed=0)``; on every 21st bar (bar 0, 21, 42, ...) the assets with a bar are ranked by the
``ml_score`` feature, the top 25 get weight 1/25 and every other listed asset 0; rows in
between are NaN (no instruction). Commission 10 bp, initial cash 1,000,000.

What is timed, all in this one process after one untimed warm-up call each:

* backsweep ``run_backtest`` with ``EngineConfig(commission=0.001)`` in both fill modes
  (``close`` is the like-for-like comparison with vectorbt's ``from_orders``), and
  ``run_batch`` over a commission grid (per-run cost without per-call Python overhead);
* vectorbt ``Portfolio.from_orders(size_type="targetpercent", group_by=True,
  cash_sharing=True, call_seq="auto")`` plus ``pf.value()`` so the work is really done;
* ml4t-backtest (when installed): its event-driven ``Engine`` with a strategy that hands
  each rebalance row to ``TargetWeightExecutor`` (DataFeed construction included);
* interleaved rounds (``--rounds``): one vectorbt call, then backsweep's calls after a
  collection and back to back, so that each ratio compares the engines in the same minute
  (this shared machine's speed drifts by 2x for minutes at a time).

Then, unless switched off: vectorbt parity of the final equity, each engine's peak RSS in
its own child process, and the cold / warm start of a fresh process (Numba compile vs
Numba disk cache).

Usage (from the repository root)::

    python benchmarks/bench_engine.py                 # full size, ~2 minutes
    python benchmarks/bench_engine.py --quick         # smoke run, small sizes
    python benchmarks/bench_engine.py --only backsweep --only vectorbt --no-start

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
    load_str,
    machine_summary,
    peak_rss_mb,
    reset_peak_rss,
    rss_mb,
    run_child,
    si,
    time_calls,
)

ENGINES = ("backsweep", "vectorbt", "ml4t")
INIT_CASH = 1_000_000.0
# Relative equity difference below which two engines "agree" (float noise over 2,520 bars).
AGREE_RTOL = 1e-9

# The start-up probe: a fresh interpreter imports the engine and runs one backtest on the
# benchmark's data (loaded from an .npz, so data generation is not part of the start).
START_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from engine import EngineConfig, Panel, run_backtest, run_batch
t1 = time.perf_counter()
d = np.load(sys.argv[1])
panel = Panel.from_arrays(d["timestamps"], [str(a) for a in d["assets"]], open=d["open"],
                          high=d["high"], low=d["low"], close=d["close"], volume=d["volume"])
w = d["weights"]
t2 = time.perf_counter()
res = run_backtest(panel, w, EngineConfig(commission=float(sys.argv[2])))
t3 = time.perf_counter()
run_batch(panel, w, [EngineConfig(commission=float(sys.argv[2]))])
t4 = time.perf_counter()
print("@@bench-json " + json.dumps({"import": t1 - t0, "data": t2 - t1, "first_run": t3 - t2,
      "first_batch": t4 - t3, "to_first_result": t3 - t0,
      "final_equity": float(res.equity[-1])}), flush=True)
"""


# --------------------------------------------------------------------------- workload
def top_k_weights(close: np.ndarray, score: np.ndarray, every: int, k: int) -> np.ndarray:
    """(T, N) weights: on bars 0, every, 2*every, ... the k best-scored assets with a bar
    get 1/k, every other asset with a bar 0; NaN elsewhere (no instruction).

    Ties in the score keep asset order (stable sort).
    """
    w = np.full(close.shape, np.nan)
    for t in range(0, close.shape[0], every):
        listed = np.flatnonzero(np.isfinite(close[t]) & np.isfinite(score[t]))
        if listed.size == 0:
            continue
        w[t, listed] = 0.0
        best = listed[np.argsort(-score[t, listed], kind="stable")[:k]]
        w[t, best] = 1.0 / k
    return w


def build_inputs(args: argparse.Namespace):
    from engine.data import synthetic_panel

    panel = synthetic_panel(n_assets=args.assets, n_bars=args.bars, seed=args.seed)
    weights = top_k_weights(panel.close, panel.features["ml_score"], args.every, args.top)
    return panel, weights


def save_inputs(path: Path, panel, weights: np.ndarray) -> None:
    np.savez(path, timestamps=panel.timestamps, assets=np.array(panel.assets),
             open=panel.open, high=panel.high, low=panel.low, close=panel.close,
             volume=panel.volume, weights=weights)


def load_inputs(path: str):
    from engine import Panel

    d = np.load(path)
    panel = Panel.from_arrays(d["timestamps"], [str(a) for a in d["assets"]], open=d["open"],
                              high=d["high"], low=d["low"], close=d["close"],
                              volume=d["volume"])
    return panel, d["weights"]


def delisting_adjusted(close: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weights with a 0 on each early-ending asset's last bar: backsweep closes such a
    position at that close (docs/engine.md, "delisted"); vectorbt needs to be told."""
    from engine.nb.simulate import last_valid_bars

    w = weights.copy()
    last = last_valid_bars(close)
    for n, t in enumerate(last):
        if 0 <= t < close.shape[0] - 1:
            w[t, n] = 0.0
    return w


# ----------------------------------------------------------------------- the engines
def backsweep_runner(panel, weights, commission: float, fill: str):
    from engine import EngineConfig, run_backtest

    cfg = EngineConfig(commission=commission, fill=fill, init_cash=INIT_CASH)

    def run():
        return run_backtest(panel, weights, cfg)

    return run


def backsweep_batch_runner(panel, weights, commission: float, fill: str, n_runs: int):
    from engine import EngineConfig, run_batch

    grid = np.linspace(0.0, 2.0 * commission, n_runs) if n_runs > 1 else [commission]
    cfgs = [EngineConfig(commission=float(c), fill=fill, init_cash=INIT_CASH) for c in grid]

    def run():
        return run_batch(panel, weights, cfgs)

    return run


def vectorbt_frames(panel, weights: np.ndarray):
    import pandas as pd

    index = pd.DatetimeIndex(panel.timestamps)
    columns = list(panel.assets)
    close = pd.DataFrame(panel.close, index=index, columns=columns)
    size = pd.DataFrame(weights, index=index, columns=columns)
    return close, size


def vectorbt_runner(close_df, size_df, commission: float):
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import vectorbt as vbt

    def run():
        pf = vbt.Portfolio.from_orders(
            close_df, size=size_df, size_type="targetpercent", group_by=True,
            cash_sharing=True, call_seq="auto", fees=commission, init_cash=INIT_CASH,
            freq="1D",
        )
        return pf.value().to_numpy()

    return run


def ml4t_inputs(panel, weights: np.ndarray):
    """The long price frame ml4t's DataFeed reads, and the rebalance rows as dicts."""
    import polars as pl

    T, N = panel.shape
    has_bar = np.isfinite(panel.close).ravel()
    prices = pl.DataFrame({
        "timestamp": np.repeat(panel.timestamps, N)[has_bar],
        "asset": np.tile(np.array(panel.assets), T)[has_bar],
        "open": panel.open.ravel()[has_bar],
        "high": panel.high.ravel()[has_bar],
        "low": panel.low.ravel()[has_bar],
        "close": panel.close.ravel()[has_bar],
        "volume": panel.volume.ravel()[has_bar],
    })
    # Same weights: every finite weight of a row (zeros included). ml4t's executor closes
    # held assets that are missing from the dict; it has no "no instruction" for them.
    targets = {}
    for t in np.flatnonzero(np.isfinite(weights).any(axis=1)):
        row = weights[t]
        key = panel.timestamps[t].astype("datetime64[us]").item()
        targets[key] = {panel.assets[n]: float(row[n]) for n in np.flatnonzero(np.isfinite(row))}
    return prices, targets


def ml4t_runner(prices, targets: dict, commission: float):
    from ml4t.backtest import (
        BacktestConfig,
        DataFeed,
        Engine,
        RebalanceConfig,
        Strategy,
        TargetWeightExecutor,
    )
    from ml4t.backtest.config import CommissionType, RebalanceMode

    class TargetWeights(Strategy):
        def __init__(self) -> None:
            self.executor = TargetWeightExecutor(RebalanceConfig(
                min_trade_value=0.0, min_weight_change=0.0, allow_fractional=True,
                rebalance_mode=RebalanceMode.HYBRID,  # "frozen targets, sequential fills"
            ))

        def on_data(self, timestamp, data, context, broker) -> None:
            row = targets.get(timestamp)
            if row is not None:
                self.executor.execute(row, data, broker)

    def run():
        cfg = BacktestConfig.from_preset("vectorbt")  # same-bar fills at the close
        cfg.allow_short_selling = False
        cfg.commission_type = CommissionType.PERCENTAGE
        cfg.commission_rate = commission
        cfg.initial_cash = INIT_CASH
        result = Engine(DataFeed(prices_df=prices), TargetWeights(), cfg).run()
        return np.array([v for _, v in result.equity_curve])

    return run


def ml4t_version() -> str | None:
    try:
        from importlib.metadata import version

        import ml4t.backtest  # noqa: F401
        return version("ml4t-backtest")
    except ImportError as exc:
        return None if "ml4t" in str(exc) else f"broken ({exc})"


# ------------------------------------------------------------------------ measuring
def rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(a) / np.asarray(b) - 1.0)


def first_bad(d: np.ndarray, tol: float = AGREE_RTOL) -> int | None:
    bad = np.flatnonzero(~(d <= tol))
    return int(bad[0]) if bad.size else None


def parity_vs_vectorbt(args, panel, weights, size_df, close_df) -> dict[str, Any]:
    """Final equity of backsweep (fill='close') against vectorbt on the same weights.

    Three comparisons: the raw weights; weights with a 0 on each delisting bar (backsweep
    closes delisting positions, vectorbt keeps them as dead money valued at the last
    close); and a control panel without trading halts (see the report for why).
    """
    import pandas as pd

    from engine import EngineConfig, run_backtest
    from engine.data import synthetic_panel

    cfg = EngineConfig(commission=args.commission, fill="close", init_cash=INIT_CASH)
    res = run_backtest(panel, weights, cfg, positions=True)
    ours = res.equity
    out: dict[str, Any] = {"backsweep_final": float(ours[-1])}

    raw = vectorbt_runner(close_df, size_df, args.commission)()
    d = rel_diff(raw, ours)
    out["raw"] = {"vbt_final": float(raw[-1]), "final_rel": float(d[-1]),
                  "max_rel": float(d.max()), "first_bar": first_bad(d)}

    w_adj = delisting_adjusted(panel.close, weights)
    adj = vectorbt_runner(close_df, pd.DataFrame(w_adj, index=size_df.index,
                                                 columns=size_df.columns), args.commission)()
    d = rel_diff(adj, ours)
    # Rebalance bars on which a held position has no bar (a halt): backsweep counts it in
    # the row's gross exposure and scales the row down (max_leverage, docs/engine.md).
    held = np.vstack([np.zeros((1, panel.n_assets)), res.positions[:-1]]) != 0
    rebalance = np.isfinite(weights).any(axis=1)
    halted_held = np.flatnonzero(rebalance & (held & np.isnan(panel.close)).any(axis=1))
    first_halt = int(halted_held[0]) if halted_held.size else None
    before = d[:first_halt] if first_halt is not None else d
    out["delist_adjusted"] = {
        "vbt_final": float(adj[-1]), "final_rel": float(d[-1]), "max_rel": float(d.max()),
        "first_bar": first_bad(d), "first_halted_held_rebalance": first_halt,
        "n_halted_held_rebalances": int(halted_held.size),
        "max_rel_before_first_halt": float(before.max()) if before.size else 0.0,
    }

    ctl = synthetic_panel(n_assets=args.assets, n_bars=args.bars, seed=args.seed,
                          halt_probability=0.0)
    w_ctl = delisting_adjusted(ctl.close, top_k_weights(ctl.close, ctl.features["ml_score"],
                                                        args.every, args.top))
    ours_ctl = run_backtest(ctl, w_ctl, cfg).equity
    c_close, c_size = vectorbt_frames(ctl, w_ctl)
    theirs_ctl = vectorbt_runner(c_close, c_size, args.commission)()
    d = rel_diff(theirs_ctl, ours_ctl)
    out["control_no_halts"] = {"backsweep_final": float(ours_ctl[-1]),
                               "vbt_final": float(theirs_ctl[-1]),
                               "final_rel": float(d[-1]), "max_rel": float(d.max()),
                               "first_bar": first_bad(d)}
    return out


def measure_in_process(args, panel, weights, engines: list[str]) -> dict[str, Any]:
    """All timings in this process, each after one untimed warm-up call."""
    out: dict[str, Any] = {"timings": {}, "finals": {}, "curves": {}, "skipped": {}}
    T = panel.n_bars

    if "backsweep" in engines:
        for fill in ("close", "next_open"):
            run = backsweep_runner(panel, weights, args.commission, fill)
            t = time_calls(run, args.repeat)
            out["timings"][("backsweep", f"run_backtest fill={fill}")] = (t, 1)
            res = run()
            out["finals"][f"backsweep {fill}"] = float(res.equity[-1])
            if fill == "close":
                out["curves"]["backsweep"] = res.equity
                t = time_calls(run, args.repeat, collect=False)
                out["timings"][("backsweep", "run_backtest fill=close, back to back")] = (t, 1)
        if args.batch > 0:
            for fill in ("close", "next_open"):
                run = backsweep_batch_runner(panel, weights, args.commission, fill, args.batch)
                t = time_calls(run, max(3, args.repeat // 2))
                out["timings"][("backsweep", f"run_batch x{args.batch} fill={fill}")] = (
                    t, args.batch)

    if "vectorbt" in engines:
        try:
            close_df, size_df = vectorbt_frames(panel, weights)
            run = vectorbt_runner(close_df, size_df, args.commission)
        except ImportError as exc:
            out["skipped"]["vectorbt"] = f"not installed ({exc})"
        else:
            t = time_calls(run, args.vbt_repeat)
            out["timings"][("vectorbt", "from_orders + value()")] = (t, 1)
            out["curves"]["vectorbt"] = run()
            out["finals"]["vectorbt"] = float(out["curves"]["vectorbt"][-1])
            out["vbt_frames"] = (close_df, size_df)
            if "backsweep" in engines and args.rounds > 0:
                out["interleaved"] = interleaved_rounds(
                    args, run, backsweep_runner(panel, weights, args.commission, "close"))

    if "ml4t" in engines:
        ver = ml4t_version()
        if ver is None or ver.startswith("broken"):
            out["skipped"]["ml4t"] = ("not installed" if ver is None else ver) + \
                " (pip install ml4t-backtest)"
        else:
            prices, targets = ml4t_inputs(panel, weights)
            run = ml4t_runner(prices, targets, args.commission)
            t = time_calls(run, args.ml4t_repeat)
            out["timings"][("ml4t", f"{ver} TargetWeightExecutor")] = (t, 1)
            curve = run()
            if len(curve) == T:
                out["curves"]["ml4t"] = curve
                out["finals"]["ml4t"] = float(curve[-1])
    return out


def interleaved_rounds(args, vbt_run, bs_run) -> list[dict[str, float]]:
    """Rounds of one vectorbt call then ``args.repeat`` backsweep calls after a collection
    and as many back to back: on a shared machine whose speed drifts for minutes at a
    time, each round's ratio compares the two engines in the same minute."""
    rounds = []
    for _ in range(args.rounds):
        vbt = time_calls(vbt_run, 1, warmup=0).median
        collected = time_calls(bs_run, args.repeat, warmup=0).median
        warm = time_calls(bs_run, args.repeat, warmup=0, collect=False).median
        rounds.append({"vbt": vbt, "collected": collected, "warm": warm})
    return rounds


def rss_child(args) -> None:
    """Child process: import one engine, load the inputs, run it; report memory."""
    eng = args.only[0]
    # Import the engine's library before the baseline: its import cost is the library's,
    # not the run's, and is reported separately.
    if eng == "backsweep":
        import engine  # noqa: F401
    elif eng == "vectorbt":
        warnings.filterwarnings("ignore")
        import vectorbt  # noqa: F401
    elif eng == "ml4t":
        import ml4t.backtest  # noqa: F401
    after_import = peak_rss_mb()
    panel, weights = load_inputs(args.data)
    if eng == "backsweep":
        runs = [backsweep_runner(panel, weights, args.commission, f) for f in
                ("close", "next_open")]
        if args.batch > 0:
            runs.append(backsweep_batch_runner(panel, weights, args.commission, "close",
                                               args.batch))
    elif eng == "vectorbt":
        runs = [vectorbt_runner(*vectorbt_frames(panel, weights), args.commission)]
    else:
        runs = [ml4t_runner(*ml4t_inputs(panel, weights), args.commission)]
    baseline = peak_rss_mb()
    for run in runs:
        run()  # first call: compiles or loads the Numba cache, warms pandas / polars
    first_peak = peak_rss_mb()
    # Steady state: the peak of a second round of calls, over the RSS just before it.
    reset = reset_peak_rss()
    rss_before = rss_mb() if reset else baseline
    for run in runs:
        run()
    steady_peak = peak_rss_mb()
    emit_json({"engine": eng, "after_import_mb": after_import, "baseline_mb": baseline,
               "first_call_delta_mb": first_peak - baseline,
               "peak_mb": max(first_peak, steady_peak),
               "delta_mb": steady_peak - rss_before, "hwm_reset": reset})


def measure_rss(args, data_path: Path, engines: list[str]) -> dict[str, Any]:
    out = {}
    for eng in engines:
        argv = [sys.executable, str(Path(__file__).resolve()), "--rss-child", "--only", eng,
                "--data", str(data_path), "--commission", str(args.commission),
                "--batch", str(args.batch)]
        try:
            out[eng], _ = run_child(argv)
        except RuntimeError as exc:
            out[eng] = {"error": str(exc).splitlines()[0]}
    return out


def measure_start(args, data_path: Path) -> dict[str, Any]:
    """Fresh interpreters against an empty Numba cache directory: cold, then warm."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="backsweep-numba-cache-") as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        argv = [sys.executable, "-c", START_PROBE, str(data_path), str(args.commission)]
        for label in ("cold", "warm"):
            report, wall = run_child(argv, env=env)
            report["wall"] = wall
            out[label] = report
        out["cache_files"] = sum(len(files) for _, _, files in os.walk(cache))
    return out


# ------------------------------------------------------------------------- reporting
def report(args, panel, weights, timed, parity, rss, start) -> None:
    T, N = panel.shape
    n_rebal = int(np.isfinite(weights).any(axis=1).sum())
    print()
    timings = timed["timings"]
    ref_key = ("backsweep", "run_backtest fill=close")
    ref = timings[ref_key][0].median / timings[ref_key][1] if ref_key in timings else None
    rows = []
    for (eng, what), (t, runs) in timings.items():
        per_run = t.median / runs
        mem = rss.get(eng, {}) if rss else {}
        rows.append([
            eng, what, f"{1e3 * per_run:.2f}", f"{1e3 * t.best / runs:.2f}",
            len(t.seconds),
            f"{per_run / ref:.1f}x" if ref else "-",
            f"{mem['peak_mb']:.0f}" if "peak_mb" in mem else "-",
            f"{mem['delta_mb']:.0f}" if "delta_mb" in mem else "-",
            si(T / per_run), si(T * N / per_run),
        ])
    print(f"Timings: {T} bars x {N} assets, top-{args.top} equal weight every {args.every} "
          f"bars ({n_rebal} rebalances), commission {args.commission:g}, one process, "
          "after one warm-up call")
    print(format_table(
        ["engine", "what", "ms/run med", "ms/run min", "n", "vs backsweep",
         "peak RSS MB", "run Δ MB", "bar-runs/s", "asset-bars/s"], rows))
    print("  ms/run of run_batch = call time / runs in the batch; 'vs backsweep' = median "
          "ms/run / backsweep run_backtest fill=close median.")
    print("  peak RSS = peak of a child process running only that engine (imports, inputs, "
          "a first call, a second call); run Δ = peak of the second call over the RSS "
          "before it.")
    for eng, why in timed["skipped"].items():
        print(f"  {eng}: skipped ({why})")
    if rss:
        print("  per engine child, MB: " + "; ".join(
            f"{e}: after imports {r['after_import_mb']:.0f}, after inputs {r['baseline_mb']:.0f}, "
            f"first call Δ {r['first_call_delta_mb']:.0f}" if "peak_mb" in r
            else f"{e}: error {r['error']}" for e, r in rss.items()))

    if ref is not None:
        vbt = next((t.median for (e, _), (t, _) in timings.items() if e == "vectorbt"), None)
        warm = timings.get(("backsweep", "run_backtest fill=close, back to back"))
        for label, t in (("", ref), (", back to back", warm[0].median if warm else None)):
            if t is None:
                continue
            goal = f"Goal <= 2 ms/run: backsweep fill=close{label} {1e3 * t:.2f} ms " \
                   f"({'met' if t <= 0.002 else 'NOT met'})"
            if vbt is not None:
                goal += f"; vectorbt / backsweep = {vbt / t:.1f}x (goal >= 250x: " \
                        f"{'met' if vbt / t >= 250 else 'NOT met'})"
            print(goal)

    rounds = timed.get("interleaved")
    if rounds:
        print()
        print(f"Interleaved rounds (one vectorbt call, then {args.repeat} backsweep "
              "run_backtest fill=close calls after a collection each, then as many back to "
              "back; ratios within a round):")
        rows = [[k + 1, f"{1e3 * r['vbt']:.0f}", f"{1e3 * r['collected']:.2f}",
                 f"{r['vbt'] / r['collected']:.1f}x", f"{1e3 * r['warm']:.2f}",
                 f"{r['vbt'] / r['warm']:.1f}x"] for k, r in enumerate(rounds)]
        print(format_table(["round", "vectorbt ms", "backsweep ms", "ratio",
                            "back to back ms", "ratio"], rows))
        for label, key in (("", "collected"), (", back to back", "warm")):
            ms = 1e3 * float(np.median([r[key] for r in rounds]))
            ratio = float(np.median([r["vbt"] / r[key] for r in rounds]))
            print(f"Goal (interleaved, medians of the rounds): backsweep fill=close{label} "
                  f"{ms:.2f} ms ({'met' if ms <= 2.0 else 'NOT met'} <= 2 ms); vectorbt / "
                  f"backsweep = {ratio:.1f}x ({'met' if ratio >= 250 else 'NOT met'} >= 250x)")

    if start:
        print()
        rows = []
        for label in ("cold", "warm"):
            s = start[label]
            rows.append([label, f"{s['wall']:.2f}", f"{s['import']:.2f}", f"{s['data']:.2f}",
                         f"{s['first_run']:.2f}", f"{s['first_batch']:.2f}"])
        print("Start of a fresh process (python -c: import engine, load the inputs, one "
              "run_backtest; then one run_batch), NUMBA_CACHE_DIR = a new empty directory:")
        print(format_table(["start", "wall s", "import s", "inputs s", "first run_backtest s",
                            "first run_batch s"], rows))
        warm = start["warm"]["wall"]
        print(f"  cold = compile and write the cache ({start['cache_files']} files), warm = "
              f"load it. Goal: warm start <= 3 s: {warm:.2f} s "
              f"({'met' if warm <= 3.0 else 'NOT met'})")

    print()
    finals = timed["finals"]
    if finals:
        print("Final equity: " + ", ".join(f"{k} {v:,.2f}" for k, v in finals.items()))
    curves = timed["curves"]
    if "ml4t" in curves and "backsweep" in curves:
        d = rel_diff(curves["ml4t"], curves["backsweep"])
        line = (f"  ml4t vs backsweep fill=close: final rel diff {d[-1]:.2e}, max {d.max():.2e}, "
                f"first bar > {AGREE_RTOL:g}: {first_bad(d)}")
        if "vectorbt" in curves:
            d = rel_diff(curves["ml4t"], curves["vectorbt"])
            line += (f"; ml4t vs vectorbt (raw weights): final {d[-1]:.2e}, "
                     f"first bar > {AGREE_RTOL:g}: {first_bad(d)}")
        print(line)
    if parity:
        r, a, c = parity["raw"], parity["delist_adjusted"], parity["control_no_halts"]
        print("vectorbt parity (backsweep fill=close vs from_orders, equity curves):")
        print(f"  same weights:             final {r['vbt_final']:,.2f} vs "
              f"{parity['backsweep_final']:,.2f}, rel diff {r['final_rel']:.2e} (max "
              f"{r['max_rel']:.2e}, first bar > {AGREE_RTOL:g}: {r['first_bar']})")
        print("    (vectorbt keeps a delisted position as dead money valued at its last close, "
              "backsweep sells it on its last bar; and halts, below)")
        print(f"  0 on each delisting bar:  final {a['vbt_final']:,.2f}, rel diff "
              f"{a['final_rel']:.2e} (max {a['max_rel']:.2e}, first bar > {AGREE_RTOL:g}: "
              f"{a['first_bar']}); max {a['max_rel_before_first_halt']:.1e} before bar "
              f"{a['first_halted_held_rebalance']}, the first of "
              f"{a['n_halted_held_rebalances']} rebalances with a held asset halted")
        print(f"  control without halts:    final {c['vbt_final']:,.2f} vs "
              f"{c['backsweep_final']:,.2f}, rel diff {c['final_rel']:.2e} (max "
              f"{c['max_rel']:.2e}, first bar > {AGREE_RTOL:g}: {c['first_bar']})")
        print("  (a held asset with no bar on a rebalance bar keeps its NaN weight; backsweep "
              "adds its value to the row's gross exposure and scales the row down to "
              "max_leverage=1, vectorbt buys in order until the cash runs out)")


def engine_source() -> str:
    """Where ``engine`` is imported from, with its git commit and whether it is modified."""
    import subprocess

    import engine

    root = Path(engine.__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "engine"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{root} (not a git checkout)"
    return f"{root} at {rev}" + (" + uncommitted changes under engine/" if dirty else "")


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", type=int, default=500)
    p.add_argument("--bars", type=int, default=2520)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=25, help="assets held (equal weight)")
    p.add_argument("--every", type=int, default=21, help="rebalance every N bars")
    p.add_argument("--commission", type=float, default=0.001)
    p.add_argument("--repeat", type=int, default=15, help="timed runs of backsweep")
    p.add_argument("--vbt-repeat", type=int, default=5, help="timed runs of vectorbt")
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved vectorbt / backsweep rounds (0 = skip)")
    p.add_argument("--ml4t-repeat", type=int, default=3, help="timed runs of ml4t-backtest")
    p.add_argument("--batch", type=int, default=20,
                   help="configs in the run_batch timing (commission grid); 0 = skip")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 50 assets x 252 bars, few repeats")
    p.add_argument("--only", action="append", metavar="ENGINE",
                   help=f"engine(s) to run, of {', '.join(ENGINES)} (repeat or comma-separate)")
    p.add_argument("--no-parity", action="store_true", help="skip the vectorbt parity check")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-memory children")
    p.add_argument("--no-start", action="store_true", help="skip the cold/warm start probe")
    p.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    only = [e.strip() for item in (args.only or list(ENGINES)) for e in item.split(",")]
    unknown = sorted(set(only) - set(ENGINES))
    if unknown:
        p.error(f"unknown engine(s) {unknown}; choose from {', '.join(ENGINES)}")
    args.only = [e for e in ENGINES if e in only]
    if args.quick:
        args.assets, args.bars = min(args.assets, 50), min(args.bars, 252)
        args.repeat, args.vbt_repeat, args.ml4t_repeat, args.rounds = 3, 2, 1, 1
        args.batch = min(args.batch, 4)
    if args.top < 1 or args.every < 1 or args.repeat < 1:
        p.error("--top, --every and --repeat must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rss_child:
        rss_child(args)
        return 0
    import numba

    print(f"backsweep engine benchmark, {dt.date.today()}")
    print(f"machine: {machine_summary()}; {load_str()}")
    print(f"numpy {np.__version__}, numba {numba.__version__}, engines: "
          f"{', '.join(args.only)}")
    print(f"backsweep engine: {engine_source()}")
    t0 = time.perf_counter()
    panel, weights = build_inputs(args)
    print(f"inputs: {panel!r}, built in {time.perf_counter() - t0:.1f} s")

    timed = measure_in_process(args, panel, weights, args.only)
    print(f"in-process timings done ({load_str()})", flush=True)
    parity = None
    if not args.no_parity and "backsweep" in args.only and "vbt_frames" in timed:
        parity = parity_vs_vectorbt(args, panel, weights, timed["vbt_frames"][1],
                                    timed["vbt_frames"][0])
    rss, start = {}, None
    with tempfile.TemporaryDirectory(prefix="backsweep-bench-") as tmp:
        data_path = Path(tmp) / "inputs.npz"
        save_inputs(data_path, panel, weights)
        if not args.no_rss:
            rss = measure_rss(args, data_path, [e for e in args.only
                                                if e not in timed["skipped"]])
        if not args.no_start and "backsweep" in args.only:
            start = measure_start(args, data_path)
    report(args, panel, weights, timed, parity, rss, start)
    print(f"\n({load_str()} at the end)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
