"""Adaptive search (issue 20, "Performance"): how well TPE finds the grid's best runs, what
the sampler costs, and how busy the cluster stays during a search.

Part (a), quality: MA-cross over fast and slow in 2..101 (fast < slow: 4,950 pairs) on
each sample stock alone (AAPL, FB, GOOG, IBM, MSFT; ``sample:stocks:XYZ``), and the same
on a 4-parameter ``breakout`` space (channel 5..100 by 5, atr_window 5..50 by 5, atr_mult
0.5..5 by 0.5, long_short: 4,000 combinations). The whole grid is evaluated once per stock
(``sweep.evaluate``, in process) to rank every run by Sharpe; then, for each budget (5 %,
10 % and 20 % of the grid) and seed (0..4), a search is run with the real
:class:`sweep.search.driver.SearchDriver` (Optuna's TPESampler, batch 4: the default on the
2-worker cluster) whose chunks are answered from the evaluated grid instead of the cluster.
A search's proposals depend only on what it is told, so this gives exactly the trials a
cluster run gives (checked: one search per space also runs through ``run_sweep`` on a
2-worker local cluster and must propose the same trials with the same values). Reported:
the best trial's rank in the grid, its median over the seeds, and the fraction of
(stock, seed) searches whose best trial is in the grid's top 1 % (the 49 best of 4,950,
the 40 best of 4,000); the same for Optuna's RandomSampler as the baseline; the sampler's
time a proposal.

Part (b), utilisation: a TPE search (300 trials, default batch) of a heavier MA-cross run
(``synthetic:assets=400,bars=2520``, about 0.1 s a run) through ``run_sweep`` on a
2-worker local cluster, recorded with Dask's task stream (``distributed.get_task_stream``):
utilisation = the tasks' compute time / (worker threads x the span from the first task's
start to the last task's end); also over the span from the first submit to the last
result (the call's ``compute_seconds``).

Usage (from the repository root)::

    python benchmarks/bench_search.py                  # both parts, ~40 minutes
    python benchmarks/bench_search.py --part a --space ma --budgets 0.1 --seeds 5
    python benchmarks/bench_search.py --part b
    python benchmarks/bench_search.py --quick          # smoke run: 2 stocks, 2 seeds

These are measurements, not assertions: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import format_table, load_str, machine_summary

STOCKS = ("AAPL", "FB", "GOOG", "IBM", "MSFT")
SPACES = {
    "ma": ("ma_cross", {"fast": {"start": 2, "stop": 101, "step": 1},
                        "slow": {"start": 2, "stop": 101, "step": 1}}, ["fast < slow"], {}),
    "breakout": ("breakout", {"channel": {"start": 5, "stop": 100, "step": 5},
                              "atr_window": {"start": 5, "stop": 50, "step": 5},
                              "atr_mult": {"start": 0.5, "stop": 5.0, "step": 0.5},
                              "long_short": [False, True]}, [],
                 {"allow_short": True}),  # long_short = true sells short
}
BATCH = 4  # the default batch on the 2-worker local cluster (two a worker thread)


def spec_for(space: str, stock: str, search: dict[str, Any], name: str = "bench") -> Any:
    from sweep import SweepSpec

    strategy, grid, constraints, engine = SPACES[space]
    return SweepSpec(name=name, strategy=strategy, data=f"sample:stocks:{stock}", grid=grid,
                     constraints=tuple(constraints), engine=engine, search=search)


def grid_values(resolved: Any) -> np.ndarray:
    """Every combination's Sharpe ratio, by combination index (NaN: forbidden or none)."""
    import sweep

    _, grid, constraints, _ = SPACES_BY_STRATEGY[resolved.strategy.name]
    frame = sweep.evaluate(resolved.panel, resolved.strategy.name, grid, resolved.config,
                           constraints=constraints)
    values = np.full(resolved.grid.size, np.nan)
    values[frame["combo"].to_numpy()] = frame["sharpe"].to_numpy()
    return values


SPACES_BY_STRATEGY = {v[0]: v for v in SPACES.values()}


def search_offline(resolved: Any, config: Any, values: np.ndarray) -> Any:
    """The driver of a real search, its chunks answered from the evaluated grid."""
    from sweep.search.driver import SearchDriver
    from sweep.worker import TrialResult

    driver = SearchDriver(resolved, config, batch=BATCH, chunk_trials=BATCH)
    queue = deque(driver.start())
    while queue:
        chunk = queue.popleft()
        v = values[np.asarray(chunk.combos)]
        queue.extend(driver.collect(chunk, [TrialResult(w, len(chunk.combos), v)
                                            for w in chunk.windows]))
    return driver


def rank_of(value: float, values: np.ndarray) -> int:
    """1-based rank of ``value`` among the grid's finite values (1 = the best)."""
    finite = values[np.isfinite(values)]
    return int((finite > value).sum()) + 1


def part_a(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for space in args.space:
        rows, summary = [], []
        per_budget: dict[tuple[str, float], list[int]] = {}
        sampler_ms: dict[tuple[str, float], list[float]] = {}
        for stock in args.stocks:
            resolved = spec_for(space, stock, {"method": "tpe", "trials": 10}).resolve()
            t0 = time.perf_counter()
            values = grid_values(resolved)
            n_valid = int(np.isfinite(values).sum())
            top = max(1, int(0.01 * n_valid))  # the grid's top 1 %
            print(f"[{space}] {stock}: {n_valid} runs evaluated in "
                  f"{time.perf_counter() - t0:.1f} s; best sharpe {np.nanmax(values):.3f}, "
                  f"top 1 % = the {top} best (sharpe >= "
                  f"{np.sort(values[np.isfinite(values)])[-top]:.3f})", flush=True)
            for budget in args.budgets:
                trials = round(budget * n_valid)
                for method in args.methods:
                    ranks = []
                    for seed in range(args.seeds):
                        config = dataclasses.replace(
                            resolved.search, method=method,
                            sampler={"tpe": "TPESampler", "random": "RandomSampler"}[method],
                            trials=trials, seed=seed)
                        t1 = time.perf_counter()
                        driver = search_offline(resolved, config, values)
                        took = time.perf_counter() - t1
                        best = driver.studies[0].best
                        r = rank_of(best, values)
                        ranks.append(r)
                        per_budget.setdefault((method, budget), []).append(r)
                        info = driver.info(method, {})
                        sampler_ms.setdefault((method, budget), []).append(info.sampler_ms)
                        rows.append({"space": space, "stock": stock, "budget": budget,
                                     "trials": trials, "method": method, "seed": seed,
                                     "best": best, "rank": r, "top1": r <= top,
                                     "proposals": info.n_proposals,
                                     "repeats": info.n_repeats,
                                     "rejected": info.n_rejected,
                                     "sampler_ms": info.sampler_ms, "seconds": took})
                    med = statistics.median(ranks)
                    summary.append([space, stock, f"{budget:.0%}", trials, method,
                                    f"{med:g}", f"{100 * med / n_valid:.2f} %",
                                    f"{sum(r <= top for r in ranks)}/{len(ranks)}",
                                    " ".join(map(str, ranks))])
                    print(f"  {budget:.0%} ({trials} trials) {method:6}: ranks {ranks}, "
                          f"median {med:g}", flush=True)
        print(format_table(["space", "stock", "budget", "trials", "sampler", "median rank",
                            "percentile", "top-1 %", "ranks (seeds 0..)"], summary))
        totals = []
        for (method, budget), ranks in sorted(per_budget.items(),
                                              key=lambda x: (x[0][1], x[0][0])):
            hits = sum(1 for row in rows if row["space"] == space and row["top1"]
                       and row["method"] == method and row["budget"] == budget)
            totals.append([space, f"{budget:.0%}", method, f"{hits}/{len(ranks)}",
                           f"{hits / len(ranks):.0%}", f"{statistics.median(ranks):g}",
                           f"{statistics.median(sampler_ms[(method, budget)]):.2f}"])
        print(format_table(["space", "budget", "sampler", "top-1 % found", "fraction",
                            "median rank", "sampler ms/proposal"], totals))
        out[space] = {"rows": rows, "totals": totals}
        if args.check:
            out[space]["cluster_check"] = cluster_check(space, args.stocks[0])
    return out


def cluster_check(space: str, stock: str) -> dict[str, Any]:
    """One search through run_sweep on a 2-worker local cluster: the same trials and
    values as the driver answered from the grid."""
    import polars as pl

    import cluster
    from sweep import run_sweep

    trials = 200
    search = {"method": "tpe", "trials": trials, "seed": 0, "batch": BATCH}
    resolved = spec_for(space, stock, search).resolve()
    values = grid_values(resolved)
    offline = search_offline(resolved, resolved.search, values)
    want = [(t.number, t.combo, values[t.combo]) for t in offline.studies[0].trials]
    with tempfile.TemporaryDirectory() as tmp, \
            cluster.connect("local", workers=2, dashboard=False) as client:
        summary = run_sweep(resolved, client, tmp, progress=False)
        got = (pl.scan_parquet(Path(tmp) / "bench" / "runs" / "**" / "*.parquet")
               .select("trial", "combo", "sharpe").collect().sort("trial").rows())
    same = len(got) == len(want) and all(
        a[0] == b[0] and a[1] == b[1] and (a[2] == b[2] or (a[2] != a[2] and b[2] != b[2]))
        for a, b in zip(got, want, strict=False))
    print(f"cluster check [{space}] {stock}, {trials} trials: "
          f"{'the same trials and values' if same else 'DIFFERENT'} "
          f"(cluster run {summary.seconds:.1f} s)", flush=True)
    return {"space": space, "stock": stock, "trials": trials, "same": same}


def part_b(args: argparse.Namespace) -> dict[str, Any]:
    """Utilisation of the 2 worker threads during a search, from the task stream."""
    from distributed import get_task_stream

    import cluster
    from sweep import SweepSpec, run_sweep

    def make(name: str, trials: int) -> Any:
        return SweepSpec(name=name, strategy="ma_cross", data=args.util_data,
                         grid={"fast": {"start": 2, "stop": 101, "step": 1},
                               "slow": {"start": 2, "stop": 301, "step": 3},
                               "kind": ["sma", "ema"]},
                         constraints=("fast < slow",),
                         search={"method": "tpe", "trials": trials, "seed": 0}
                         | ({"batch": args.util_batch} if args.util_batch else {}))

    results = []
    with cluster.connect("local", workers=2, dashboard=False) as client, \
            tempfile.TemporaryDirectory() as tmp:
        run_sweep(make("warm", 8), client, tmp, progress=False)  # JIT, caches, data
        for rnd in range(args.rounds):
            with get_task_stream(client=client) as ts:
                s = run_sweep(make(f"util{rnd}", args.util_trials), client, tmp,
                              progress=False)
            tasks = [t for t in ts.data if str(t["key"]).startswith("backsweep-")]
            spans = [(ss["start"], ss["stop"]) for t in tasks for ss in t["startstops"]
                     if ss["action"] == "compute"]
            busy = sum(b - a for a, b in spans)
            first, last = min(a for a, _ in spans), max(b for _, b in spans)
            threads = s.worker_threads
            util = busy / (threads * (last - first))
            util_call = busy / (threads * s.compute_seconds)
            info = s.search
            results.append({"round": rnd, "trials": info.n_trials, "tasks": len(tasks),
                            "threads": threads, "task_span_s": last - first,
                            "compute_seconds": s.compute_seconds, "busy_s": busy,
                            "utilisation": util, "utilisation_call": util_call,
                            "sampler_ms": info.sampler_ms, "run_ms": info.run_ms,
                            "batch": info.settings["batch"], "seconds": s.seconds})
            print(f"round {rnd}: {info.n_trials} trials in {len(tasks)} tasks, "
                  f"utilisation {util:.1%} over the tasks' span ({last - first:.1f} s), "
                  f"{util_call:.1%} from the first submit to the last result "
                  f"({s.compute_seconds:.1f} s); sampler {info.sampler_ms:.2f} ms a "
                  f"proposal, runs {info.run_ms:.1f} ms each; batch "
                  f"{info.settings['batch']}", flush=True)
    return {"rounds": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["a", "b", "both"], default="both")
    ap.add_argument("--space", nargs="+", choices=list(SPACES), default=list(SPACES))
    ap.add_argument("--stocks", nargs="+", default=list(STOCKS))
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.05, 0.10, 0.20])
    ap.add_argument("--methods", nargs="+", choices=["tpe", "random"],
                    default=["tpe", "random"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--no-check", dest="check", action="store_false",
                    help="skip the cluster run that checks the offline searches")
    ap.add_argument("--util-data", default="synthetic:assets=400,bars=2520,seed=1")
    ap.add_argument("--util-trials", type=int, default=300)
    ap.add_argument("--util-batch", type=int, default=None,
                    help="the search's batch (default: the cluster's default, 4)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 stocks, 2 seeds, 10 %% only")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    if args.quick:
        args.stocks, args.seeds, args.budgets = args.stocks[:2], 2, [0.10]
        args.util_trials, args.rounds = 60, 1
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    print(f"{dt.date.today()}  commit {commit}  {machine_summary()}  {load_str()}")
    report: dict[str, Any] = {"date": str(dt.date.today()), "commit": commit,
                              "machine": machine_summary()}
    if args.part in ("a", "both"):
        report["quality"] = part_a(args)
    if args.part in ("b", "both"):
        report["utilisation"] = part_b(args)
    print(load_str())
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
