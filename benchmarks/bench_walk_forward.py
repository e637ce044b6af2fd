"""Walk-forward cost against one full-period sweep, and PBO / DSR over 100,000 trials.

Part ``wf``, the issue's goal "walk-forward of top_n on 500 assets x 2,520 bars, 200
parameter sets, 8 folds, on a 2-worker local cluster costs <= 1.5x one full-period sweep
of the same grid". Two TOMLs are written to a temporary folder, identical but for the
``[walk_forward]`` table:

* data ``synthetic:assets=500,bars=2520,seed=11``, strategy ``top_n``, commission 10 bp,
  grid ``n`` = 5, 10, ..., 100 (20) x ``rebalance_every`` = 5, 10, 21, 42, 63 (5) x
  ``weighting`` = equal, score (2) = 200 combinations;
* walk-forward: ``train = 504``, ``test = 252``, ``step = 252`` bars, ``purge = 0``,
  objective ``sharpe``, ``min_trades = 10``: (2520 - 504) / 252 = 8 folds. The grid runs
  on 8 train windows of 504 bars (4,032 bars per parameter set; the full-period sweep
  simulates 2,520), then each fold's winner trades its 252-bar test window.

Each is timed end to end through the CLI, from spawn to exit, each into an empty output
folder, after one untimed warm-up run of each (so the Numba disk cache is warm)::

    backsweep walk-forward WF.toml  --workers 2 --out DIR --no-progress
    backsweep run          FULL.toml --workers 2 --out DIR --no-progress

``--rounds`` rounds, the order alternating between rounds. Also read from ``sweep.json``:
``seconds_last_call`` (``run_sweep``'s own time: cluster start, chunk-size calibration,
the chunks, cluster stop, the per-window DSR/PBO summary; for the walk-forward, everything
but the imports, the fold selection, the out-of-sample runs and the fold summaries). The
CPU time of the whole process tree (client, nannies, workers) comes from ``wait4``.

With the same commands in each round (skip with ``--no-tiny``): the two TOMLs with a grid
of one parameter set, the fixed cost of each command (interpreter, imports, data, cluster
start and stop, calibration, summaries), to separate the marginal cost of the grid.

Then, to explain the ratio, a child process pinned to one core evaluates the same grid
in-process (``sweep.evaluate.evaluate_windows``, the unit of work of a task): on the whole
panel, on the 8 train windows at once (as a walk-forward task runs them: each parameter
set's weights computed once, then every window simulated), on the 9 train windows of a
``train = test = step = 252`` design, and the ``top_n`` weights kernel alone (200 calls),
which splits each call into strategy and simulation.

Part ``pbo``: ``sweep.overfit.pbo_from_block_stats`` over 100,000 configurations x S = 16
blocks, in a child process pinned to one core with ``NUMBA_NUM_THREADS=1`` (goal: <= 10 s on
one core). Random block stats for 2,520 bars (blocks of 158 and 157 bars, as
``np.array_split`` cuts them): per block, sum = sigma sqrt(n) Z and sum of squares =
sum^2 / n + sigma^2 chi^2(n - 1) (exactly the distribution for n normal returns with
sigma = 0.01). One untimed first call (it loads, or compiles, the kernels), then the median
of ``--pbo-repeat`` timed calls, wall and CPU; also with counts that differ between
configurations (10 % of them miss one bar), the slower path. DSR over 100,000 trials'
Sharpe ratios: ``deflated_sharpe_ratio(sr, 2520, skew, kurtosis, trial_srs=...)``.

Usage (from the repository root)::

    python benchmarks/bench_walk_forward.py                   # both parts, ~5-10 minutes
    python benchmarks/bench_walk_forward.py --part pbo
    python benchmarks/bench_walk_forward.py --part wf --rounds 3 --keep /tmp/wf
    python benchmarks/bench_walk_forward.py --quick           # smoke run: small sizes

These are measurements, not assertions: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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
    pin_to_cpu,
    run_child,
    time_calls_cpu,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
GOAL_WF_RATIO = 1.5
GOAL_PBO_S = 10.0

GRID = {"n": {"start": 5, "stop": 100, "step": 5},       # 20 values
        "rebalance_every": [5, 10, 21, 42, 63],          # 5
        "weighting": ["equal", "score"]}                 # 2  -> 200 combinations
QUICK_GRID = {"n": {"start": 5, "stop": 20, "step": 5}, "rebalance_every": [5, 21],
              "weighting": ["equal", "score"]}           # 16
TINY_GRID = {"n": [25], "rebalance_every": [21], "weighting": ["equal"]}  # 1 set
WF_TABLE = {"train": 504, "test": 252, "step": 252, "purge": 0, "objective": "sharpe",
            "min_trades": 10}


# ------------------------------------------------------------------------------ configs
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def write_configs(tmp: Path, quick: bool, tiny: bool = False
                  ) -> tuple[Path, Path, dict[str, Any]]:
    """The walk-forward TOML and the full-period TOML (same grid, no [walk_forward]);
    ``tiny``: the same with a grid of one parameter set (the fixed cost)."""
    data = ("synthetic:assets=50,bars=2520,seed=11" if quick
            else "synthetic:assets=500,bars=2520,seed=11")
    grid = TINY_GRID if tiny else QUICK_GRID if quick else GRID
    tag = "_tiny" if tiny else ""

    def body(name: str, wf: bool) -> str:
        lines = [f'name = "{name}"', 'strategy = "top_n"', f'data = "{data}"', "",
                 "[engine]", "commission = 0.001", "", "[grid]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in grid.items()]
        if wf:
            lines += ["", "[walk_forward]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in WF_TABLE.items()]
        return "\n".join(lines) + "\n"

    wf_path, full_path = tmp / f"wf{tag}.toml", tmp / f"full{tag}.toml"
    wf_path.write_text(body(f"top_n_wf{tag}_bench", True))
    full_path.write_text(body(f"top_n_full{tag}_bench", False))
    return wf_path, full_path, {"data": data, "grid": grid, "walk_forward": WF_TABLE}


# --------------------------------------------------------------------------- CLI runs
def run_cli(command: str, config: Path, out: Path, workers: int, timeout: float
            ) -> dict[str, Any]:
    """``backsweep COMMAND CONFIG --workers W --out OUT --no-progress`` from spawn to exit."""
    exe = Path(sys.executable).with_name("backsweep")
    argv = [str(exe), command, str(config), "--workers", str(workers), "--out", str(out),
            "--no-progress"]
    out.mkdir(parents=True, exist_ok=False)   # always an empty output folder
    log_out, log_err = out / "cli.stdout", out / "cli.stderr"
    load0 = load_average()
    with open(log_out, "w") as fo, open(log_err, "w") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=fo, stderr=fe)
        status, rusage = None, None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                raise RuntimeError(f"{' '.join(argv)} did not finish in {timeout:.0f} s")
            time.sleep(0.02)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                           f"{log_err.read_text()[-2000:]}")
    name = next(p for p in out.iterdir() if p.is_dir()).name
    meta = json.loads((out / name / "sweep.json").read_text())
    plan = meta.get("plan") or {}
    summary = meta.get("summary") or {}
    return {
        "command": command, "argv": argv, "wall": wall,
        "tree_cpu": rusage.ru_utime + rusage.ru_stime,
        "load": [load0, load_average()],
        "run_sweep_s": meta.get("seconds_last_call"),
        "n_runs": meta.get("runs_written"), "runs_failed": meta.get("runs_failed"),
        "chunk_size": plan.get("chunk_size"),
        "n_chunks": -(-plan["n_combos"] // plan["chunk_size"]) if plan else None,
        "n_windows": plan.get("n_windows"),
        "n_folds": summary.get("n_folds"),
        "oos_sharpe": (summary.get("oos_metrics") or {}).get("sharpe"),
        "wfe": summary.get("wfe"), "dsr": summary.get("dsr"), "pbo": summary.get("pbo"),
        "stdout": log_out.read_text()[-800:],
    }


def part_wf(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    wf_cfg, full_cfg, setup = write_configs(tmp, args.quick)
    print(f"\n[wf] configs in {tmp}:\n{wf_cfg.read_text()}")
    kinds = {"walk-forward": ("walk-forward", wf_cfg), "full sweep": ("run", full_cfg)}
    warm = {}
    for label, (command, cfg) in kinds.items():   # the tiny ones need no warm-up of their own
        r = run_cli(command, cfg, tmp / "warmup" / _slug(label), args.workers, args.timeout)
        warm[label] = r
        print(f"  warm-up {label:13s} wall {r['wall']:6.1f} s  ({load_str()})", flush=True)
    if not args.no_tiny:
        wf_tiny, full_tiny, _ = write_configs(tmp, args.quick, tiny=True)
        kinds |= {"WF, 1 set": ("walk-forward", wf_tiny), "full, 1 set": ("run", full_tiny)}
    rounds = []
    for k in range(args.rounds):
        order = list(kinds) if k % 2 == 0 else list(reversed(kinds))
        rnd = {}
        for label in order:
            command, cfg = kinds[label]
            r = run_cli(command, cfg, tmp / f"round{k + 1}" / _slug(label), args.workers,
                        args.timeout)
            rnd[label] = r
            print(f"  round {k + 1} {label:13s} wall {r['wall']:6.1f} s, run_sweep "
                  f"{r['run_sweep_s']:6.1f} s, tree CPU {r['tree_cpu']:6.1f} s, "
                  f"load {r['load'][0][0]:.1f} -> {r['load'][1][0]:.1f}", flush=True)
        rounds.append(rnd)
    inproc = None
    if not args.no_inprocess:
        print("  in-process breakdown (child pinned to one core) ...", flush=True)
        inproc, wall = run_child(
            [sys.executable, __file__, "--child", "inprocess", "--cpu", str(args.cpu),
             "--inprocess-repeat", str(args.inprocess_repeat),
             *(["--quick"] if args.quick else [])], env=CHILD_ENV, timeout=args.timeout * 4)
        inproc["spawn_to_exit"] = wall
    return {"setup": setup, "warmup": warm, "rounds": rounds, "inprocess": inproc}


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)


# ------------------------------------------------------------------------ child modes
def inprocess_child(args: argparse.Namespace) -> None:
    """Child: the grid in-process on the whole panel vs on the 8 train windows."""
    pinned = pin_to_cpu(args.cpu)
    import numpy as np

    from sweep.evaluate import evaluate_table, evaluate_windows
    from sweep.grid import strategy_columns
    from sweep.spec import SweepSpec
    from sweep.walkforward import WalkForwardConfig, make_folds

    tmp = Path(tempfile.mkdtemp(prefix="bench-wf-child-"))
    _, full_cfg, _ = write_configs(tmp, args.quick)
    resolved = SweepSpec.from_toml(full_cfg).resolve()
    panel, strategy, config = resolved.panel, resolved.strategy, resolved.config
    blocks = resolved.spec.pbo_blocks
    table = resolved.combos_table(0, resolved.n_combos)
    folds = make_folds(panel, WalkForwardConfig(**{k: WF_TABLE[k] for k in
                                                   ("train", "test", "step", "purge")}))
    # A design with shorter train windows: train = test = step = 252 bars (9 folds).
    short = make_folds(panel, WalkForwardConfig(252, 252, 252))
    data, rows = strategy.prepare(panel, strategy_columns(strategy, table))
    out = np.empty(panel.shape)

    def full() -> None:
        evaluate_table(panel, strategy, table, config, 0, panel.n_bars, blocks=blocks)

    def walk() -> None:  # what a walk-forward task runs: every train window at once
        evaluate_windows(panel, strategy, table, config, [f.train for f in folds],
                         blocks=blocks)

    def walk_short() -> None:
        evaluate_windows(panel, strategy, table, config, [f.train for f in short],
                         blocks=blocks)

    def kernel() -> None:
        for i in range(rows.shape[0]):
            strategy.kernel(data, rows[i], out)

    evaluate_table(panel, strategy, table.head(2), config, 0, panel.n_bars, blocks=blocks)
    load0 = load_average()
    res: dict[str, Any] = {}
    calls = (("full", full), ("walk", walk), ("walk_short", walk_short), ("kernel", kernel))
    walls: dict[str, list[float]] = {name: [] for name, _ in calls}
    cpus: dict[str, list[float]] = {name: [] for name, _ in calls}
    for _ in range(args.inprocess_repeat):   # interleaved, so drifts in load hit them all
        for name, fn in calls:
            w, c = time_calls_cpu(fn, 1, warmup=0)
            walls[name].append(w.seconds[0])
            cpus[name].append(c.seconds[0])
    for name in walls:
        res[name] = {"wall": statistics.median(walls[name]),
                     "cpu": statistics.median(cpus[name]),
                     "walls": walls[name], "cpus": cpus[name]}
    res.update(runs=table.height, folds=[[f.train, f.test] for f in folds],
               short_folds=[[f.train, f.test] for f in short],
               n_bars=panel.n_bars, n_assets=panel.n_assets, pinned=pinned,
               load=[load0, load_average()], repeat=args.inprocess_repeat)
    emit_json(res)


def pbo_child(args: argparse.Namespace) -> None:
    """Child: PBO over N x S random block stats, and DSR over N trials, on one core."""
    pinned = pin_to_cpu(args.cpu)
    import numpy as np

    from sweep.overfit import deflated_sharpe_ratio, pbo_from_block_stats

    N, S, T = args.pbo_configs, args.pbo_blocks, args.pbo_bars
    rng = np.random.default_rng(args.seed)
    sizes = np.array([len(b) for b in np.array_split(np.arange(T), S)], dtype=np.int64)
    sigma = 0.01
    sums = sigma * np.sqrt(sizes) * rng.standard_normal((N, S))
    sumsq = sums ** 2 / sizes + sigma ** 2 * rng.chisquare(sizes - 1, size=(N, S))
    counts = np.broadcast_to(sizes, (N, S)).astype(np.float64).copy()  # the store's block_n
    # The slower path: counts that differ between configurations (10 % miss one bar).
    counts_nu = counts.copy()
    miss = rng.random(N) < 0.1
    counts_nu[miss, rng.integers(0, S, int(miss.sum()))] -= 1.0

    t0 = time.perf_counter()
    c0 = time.process_time()
    first = pbo_from_block_stats(sums, sumsq, counts)
    first_wall, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    load0 = load_average()
    box: dict[str, Any] = {}

    def uniform() -> None:
        box["u"] = pbo_from_block_stats(sums, sumsq, counts)

    def varying() -> None:
        box["v"] = pbo_from_block_stats(sums, sumsq, counts_nu)

    u_wall, u_cpu = time_calls_cpu(uniform, args.pbo_repeat, warmup=0)
    load1 = load_average()
    v_wall, v_cpu = time_calls_cpu(varying, args.pbo_repeat, warmup=1)
    load2 = load_average()

    srs = rng.normal(0.0, 0.02, N)            # per-bar Sharpe ratios of N trials
    best = float(srs.max())
    d_wall, d_cpu = time_calls_cpu(
        lambda: deflated_sharpe_ratio(best, T, -0.3, 5.0, trial_srs=srs), 20, warmup=1)
    dsr = float(deflated_sharpe_ratio(best, T, -0.3, 5.0, trial_srs=srs))
    emit_json({
        "N": N, "S": S, "T": T, "block_sizes": sorted(set(sizes.tolist())),
        "n_combinations": first.n_combinations, "pinned": pinned,
        "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
        "first": {"wall": first_wall, "cpu": first_cpu},
        "uniform": {"wall": u_wall.to_dict(), "cpu": u_cpu.to_dict(), "pbo": box["u"].pbo},
        "varying": {"wall": v_wall.to_dict(), "cpu": v_cpu.to_dict(), "pbo": box["v"].pbo},
        "dsr": {"wall": d_wall.to_dict(), "cpu": d_cpu.to_dict(), "value": dsr},
        "load": [load0, load1, load2],
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
    })


def part_pbo(args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n[pbo] child pinned to CPU {args.cpu}, NUMBA_NUM_THREADS=1 ...", flush=True)
    res, wall = run_child(
        [sys.executable, __file__, "--child", "pbo", "--cpu", str(args.cpu),
         "--pbo-configs", str(args.pbo_configs), "--pbo-blocks", str(args.pbo_blocks),
         "--pbo-bars", str(args.pbo_bars), "--pbo-repeat", str(args.pbo_repeat),
         "--seed", str(args.seed)], env=CHILD_ENV, timeout=args.timeout * 4)
    res["spawn_to_exit"] = wall
    return res


# ----------------------------------------------------------------------------- report
def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(args: argparse.Namespace, wf: dict[str, Any] | None,
           pbo: dict[str, Any] | None) -> dict[str, Any]:
    verdicts: dict[str, Any] = {}
    if wf:
        rounds = wf["rounds"]
        print(f"\nWalk-forward vs full-period sweep, `--workers {args.workers}` "
              f"({len(rounds)} rounds; wall = spawn to exit; run_sweep = sweep.json "
              "seconds_last_call; CPU = whole process tree)")
        rows = []
        for k, rnd in enumerate(rounds, 1):
            w, f = rnd["walk-forward"], rnd["full sweep"]
            rows.append([f"round {k}", f"{w['wall']:.1f}", f"{f['wall']:.1f}",
                         f"{w['wall'] / f['wall']:.2f}x", f"{w['run_sweep_s']:.1f}",
                         f"{f['run_sweep_s']:.1f}",
                         f"{w['run_sweep_s'] / f['run_sweep_s']:.2f}x",
                         f"{w['tree_cpu']:.1f}", f"{f['tree_cpu']:.1f}",
                         f"{w['tree_cpu'] / f['tree_cpu']:.2f}x",
                         f"{min(w['load'][0][0], f['load'][0][0]):.1f}-"
                         f"{max(w['load'][1][0], f['load'][1][0]):.1f}"])
        med = {key: {lab: _med([r[lab][key] for r in rounds])
                     for lab in ("walk-forward", "full sweep")}
               for key in ("wall", "run_sweep_s", "tree_cpu")}
        paired = {key: _med([r["walk-forward"][key] / r["full sweep"][key] for r in rounds])
                  for key in ("wall", "run_sweep_s", "tree_cpu")}
        mr = {key: med[key]["walk-forward"] / med[key]["full sweep"] for key in med}
        rows.append(["median", f"{med['wall']['walk-forward']:.1f}",
                     f"{med['wall']['full sweep']:.1f}",
                     f"{mr['wall']:.2f}x",
                     f"{med['run_sweep_s']['walk-forward']:.1f}",
                     f"{med['run_sweep_s']['full sweep']:.1f}",
                     f"{mr['run_sweep_s']:.2f}x",
                     f"{med['tree_cpu']['walk-forward']:.1f}",
                     f"{med['tree_cpu']['full sweep']:.1f}",
                     f"{mr['tree_cpu']:.2f}x",
                     ""])
        rows.append(["median of per-round ratios", "", "", f"{paired['wall']:.2f}x", "",
                     "", f"{paired['run_sweep_s']:.2f}x", "", "",
                     f"{paired['tree_cpu']:.2f}x", ""])
        print(format_table(["", "WF wall s", "full wall s", "ratio", "WF run_sweep s",
                            "full run_sweep s", "ratio", "WF CPU s", "full CPU s", "ratio",
                            "load 1m"], rows))
        w0, f0 = rounds[0]["walk-forward"], rounds[0]["full sweep"]
        print(f"  runs: walk-forward {w0['n_runs']} ({w0['n_windows']} train windows, "
              f"{w0['n_chunks']} chunks of {w0['chunk_size']}), full sweep {f0['n_runs']} "
              f"({f0['n_chunks']} chunks of {f0['chunk_size']}); folds {w0['n_folds']}; "
              f"OOS sharpe {w0['oos_sharpe']}, WFE {w0['wfe']}, DSR {w0['dsr']}, "
              f"PBO {w0['pbo']}")
        if "WF, 1 set" in rounds[0]:
            print("\nFixed cost (the same TOMLs with a grid of one parameter set) and the "
                  "marginal cost of the grid (grid minus 1 set, median per round)")
            rows = []
            for lab in ("WF, 1 set", "full, 1 set"):
                rows.append([lab, f"{_med([r[lab]['wall'] for r in rounds]):.1f}",
                             f"{_med([r[lab]['run_sweep_s'] for r in rounds]):.1f}",
                             f"{_med([r[lab]['tree_cpu'] for r in rounds]):.1f}"])
            marg = {}
            for big, small in (("walk-forward", "WF, 1 set"), ("full sweep", "full, 1 set")):
                marg[big] = {key: _med([r[big][key] - r[small][key] for r in rounds])
                             for key in ("wall", "run_sweep_s", "tree_cpu")}
                rows.append([f"{big}: grid - 1 set",
                             *(f"{marg[big][key]:.1f}"
                               for key in ("wall", "run_sweep_s", "tree_cpu"))])
            mratio = {key: _med([(r["walk-forward"][key] - r["WF, 1 set"][key])
                                 / (r["full sweep"][key] - r["full, 1 set"][key])
                                 for r in rounds]) for key in ("wall", "run_sweep_s",
                                                               "tree_cpu")}
            rows.append(["marginal ratio WF / full (median per round)",
                         *(f"{mratio[key]:.2f}x" for key in ("wall", "run_sweep_s",
                                                             "tree_cpu"))])
            print(format_table(["", "wall s", "run_sweep s", "CPU s"], rows))
            verdicts["marginal"] = {"medians": marg, "ratio": mratio}
        ratio = mr["wall"]
        verdicts["wf"] = {"ratio_medians": mr, "paired": paired, "medians": med,
                          "met": ratio <= GOAL_WF_RATIO}
        print(f"  goal walk-forward <= {GOAL_WF_RATIO}x the full sweep: "
              f"{'met' if ratio <= GOAL_WF_RATIO else 'NOT met'} (end to end {ratio:.2f}x "
              f"of the medians, {paired['wall']:.2f}x median per round; run_sweep "
              f"{paired['run_sweep_s']:.2f}x; CPU {paired['tree_cpu']:.2f}x)")
        ip = wf.get("inprocess")
        if ip:
            n = ip["runs"]
            full, walk, kern = ip["full"], ip["walk"], ip["kernel"]
            short = ip["walk_short"]
            k, ks = len(ip["folds"]), len(ip["short_folds"])
            train_bars = sum(b - a for (a, b), _ in ip["folds"])
            sim_full = full["cpu"] - kern["cpu"]
            sim_walk = walk["cpu"] - kern["cpu"]  # weights once per parameter set
            print(f"\nIn-process, one core ({ip['pinned']}), {n} runs, median of "
                  f"{ip['repeat']} (load {ip['load'][0][0]:.1f} -> {ip['load'][1][0]:.1f})")

            def row(label: str, t: dict[str, float] | None, cpu: float) -> list[str]:
                return [label, f"{t['wall']:.2f}" if t else "", f"{cpu:.2f}",
                        f"{1e3 * cpu / n:.1f}", f"{cpu / full['cpu']:.2f}x"]

            rows = [
                row(f"whole panel ({ip['n_bars']:,} bars), 1 call", full, full["cpu"]),
                row(f"{k} train windows of 504 bars ({train_bars:,}), 1 call (this "
                    "benchmark)", walk, walk["cpu"]),
                row(f"{ks} train windows of 252 bars, 1 call (train = test = step = 252)",
                    short, short["cpu"]),
                row("top_n weights kernel alone, whole panel, 1 per set", kern, kern["cpu"]),
                row("  = whole panel minus kernel (simulate, metrics, rest)", None,
                    sim_full),
                row(f"  = {k} windows minus kernel (simulate {k} windows, metrics, rest)",
                    None, sim_walk),
            ]
            print(format_table(["evaluate_table", "wall s", "CPU s", "CPU ms/param set",
                                "CPU vs whole panel"], rows))
            verdicts["inprocess"] = {"walk_over_full_cpu": walk["cpu"] / full["cpu"],
                                     "short_over_full_cpu": short["cpu"] / full["cpu"],
                                     "kernel_share_full": kern["cpu"] / full["cpu"]}
    if pbo:
        u, v, d = pbo["uniform"], pbo["varying"], pbo["dsr"]
        print(f"\nPBO (CSCV) over N = {pbo['N']:,} configurations x S = {pbo['S']} blocks "
              f"({pbo['n_combinations']:,} combinations), {pbo['pinned']}, "
              f"NUMBA_NUM_THREADS={pbo['numba_threads']}; load "
              f"{pbo['load'][0][0]:.1f} / {pbo['load'][1][0]:.1f} / {pbo['load'][2][0]:.1f}")
        rows = [
            ["first call (loads/compiles the kernels)", f"{pbo['first']['wall']:.2f}",
             f"{pbo['first']['cpu']:.2f}", "", ""],
            [f"pbo_from_block_stats, equal counts (x{len(u['wall']['seconds'])})",
             f"{u['wall']['median_ms'] / 1e3:.2f}", f"{u['cpu']['median_ms'] / 1e3:.2f}",
             f"{u['wall']['min_ms'] / 1e3:.2f}", f"{u['pbo']:.3f}"],
            [f"pbo_from_block_stats, counts differ (x{len(v['wall']['seconds'])})",
             f"{v['wall']['median_ms'] / 1e3:.2f}", f"{v['cpu']['median_ms'] / 1e3:.2f}",
             f"{v['wall']['min_ms'] / 1e3:.2f}", f"{v['pbo']:.3f}"],
            [f"deflated_sharpe_ratio, {pbo['N']:,} trials (x{len(d['wall']['seconds'])})",
             f"{d['wall']['median_ms'] / 1e3:.4f}", f"{d['cpu']['median_ms'] / 1e3:.4f}",
             f"{d['wall']['min_ms'] / 1e3:.4f}", f"{d['value']:.3f}"],
        ]
        print(format_table(["call", "median wall s", "median CPU s", "min wall s",
                            "value"], rows))
        t = u["wall"]["median_ms"] / 1e3
        verdicts["pbo"] = {"median_s": t, "met": t <= GOAL_PBO_S}
        print(f"  goal PBO over 100,000 configurations, S = 16, <= {GOAL_PBO_S:g} s on one "
              f"core: {'met' if t <= GOAL_PBO_S else 'NOT met'} ({t:.2f} s median wall, "
              f"{u['cpu']['median_ms'] / 1e3:.2f} s CPU)")
    return verdicts


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("wf", "pbo", "all"), default="all")
    ap.add_argument("--rounds", type=int, default=5,
                    help="timed rounds of (walk-forward, full sweep)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cpu", type=int, default=0, help="CPU the one-core children use")
    ap.add_argument("--inprocess-repeat", type=int, default=3)
    ap.add_argument("--no-tiny", action="store_true",
                    help="skip the one-parameter-set runs (fixed cost) of part wf")
    ap.add_argument("--no-inprocess", action="store_true",
                    help="skip the in-process breakdown of part wf")
    ap.add_argument("--pbo-configs", type=int, default=100_000)
    ap.add_argument("--pbo-blocks", type=int, default=16)
    ap.add_argument("--pbo-bars", type=int, default=2520)
    ap.add_argument("--pbo-repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per CLI run")
    ap.add_argument("--keep", type=Path, default=None,
                    help="write configs and results here (kept) instead of a temp dir")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 50 assets, 16 combinations, 1 round, PBO N = 2,000")
    ap.add_argument("--child", choices=("inprocess", "pbo"), help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _source() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "engine", "sweep", "strategies", "cluster"],
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"commit {head}" + (" + uncommitted changes in " + ", ".join(sorted(
        {line[3:].split("/")[0] for line in dirty.splitlines() if line.strip()}))
        if dirty.strip() else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.rounds = 1
        args.pbo_configs = min(args.pbo_configs, 2_000)
        args.inprocess_repeat = 1
    if args.child == "inprocess":
        inprocess_child(args)
        return 0
    if args.child == "pbo":
        pbo_child(args)
        return 0
    import dask
    import distributed
    import numba
    import numpy

    print(f"backsweep walk-forward / PBO benchmark, {dt.date.today()}")
    print(f"machine: {machine_summary()}; {load_str()}")
    print(f"numpy {numpy.__version__}, numba {numba.__version__}, dask {dask.__version__}, "
          f"distributed {distributed.__version__}; backsweep {_source()}")
    started = time.perf_counter()
    tmp_ctx = (tempfile.TemporaryDirectory(prefix="backsweep-wf-") if args.keep is None
               else None)
    tmp = Path(tmp_ctx.name) if tmp_ctx else args.keep
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        pbo = part_pbo(args) if args.part in ("pbo", "all") else None
        wf = part_wf(args, tmp) if args.part in ("wf", "all") else None
        verdicts = report(args, wf, pbo)
        if args.json:
            args.json.write_text(json.dumps({"wf": wf, "pbo": pbo, "verdicts": verdicts},
                                            indent=1, default=str))
    finally:
        if tmp_ctx:
            tmp_ctx.cleanup()
    print(f"\n(total {time.perf_counter() - started:.0f} s; {load_str()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
