"""Hypothesis strategies for small random backtest cases (panel, weights, config).

Hypothesis draws only a handful of scalars (a `CaseSpec`); the arrays are generated from a
seed on a fixed MAX_T x MAX_N grid and then sliced to (T, N). That way a failing example is
printed as one short, copy-pasteable `CaseSpec(...)`, and when Hypothesis shrinks T or N the
remaining bars and assets keep their values, so shrinking produces genuinely smaller cases.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from engine.config import EngineConfig
from engine.panel import Panel

__all__ = ["MAX_N", "MAX_T", "CaseSpec", "build_case", "case_specs", "configs", "make_panel"]

MAX_T = 60
MAX_N = 5


@dataclass(frozen=True)
class CaseSpec:
    """Everything needed to rebuild one case: `build_case(spec)`."""

    T: int
    N: int
    seed: int
    cfg: EngineConfig
    late_listings: bool = False
    delistings: bool = False
    halts: bool = False
    gaps: bool = True
    tick_round: bool = False     # prices on a 0.01 grid: exact ties at stop levels happen
    rebalance_every: int = 1     # rows between rebalance rows (NaN rows in between)
    repeat_rows: float = 0.3     # probability a rebalance row repeats the previous one
    nan_in_rows: float = 0.1     # probability of a NaN entry inside a rebalance row
    zero_in_rows: float = 0.15   # probability of a 0 entry (close the position)
    gross: float = 0.9           # typical gross exposure of a rebalance row
    discrete_weights: bool = False  # weights from a small set of round values
    volatility: float = 0.03


def make_panel(T: int, N: int, seed: int, *, late_listings: bool = False,
               delistings: bool = False, halts: bool = False, gaps: bool = True,
               tick_round: bool = False, volatility: float = 0.03) -> Panel:
    """A random OHLC panel; generated on the MAX_T x MAX_N grid then sliced (see module doc)."""
    rng = np.random.default_rng(seed)
    big_t, big_n = max(T, MAX_T), max(N, MAX_N)
    start = np.exp(rng.uniform(np.log(1.0), np.log(200.0), big_n))
    rets = rng.normal(0.0, volatility, (big_t, big_n))
    close = start * np.exp(np.cumsum(rets, axis=0))
    prev = np.vstack([start, close[:-1]])
    gap = np.exp(rng.normal(0.0, volatility, (big_t, big_n))) if gaps else 1.0
    open_ = prev * gap
    hi_noise = np.abs(rng.normal(0.0, volatility / 2, (big_t, big_n)))
    lo_noise = np.abs(rng.normal(0.0, volatility / 2, (big_t, big_n)))
    high = np.maximum(open_, close) * (1.0 + hi_noise)
    low = np.minimum(open_, close) / (1.0 + lo_noise)
    if tick_round:
        open_ = np.maximum(np.round(open_, 2), 0.05)
        close = np.maximum(np.round(close, 2), 0.05)
        high = np.maximum(np.ceil(high * 100) / 100, np.maximum(open_, close))
        low = np.minimum(np.maximum(np.floor(low * 100) / 100, 0.01), np.minimum(open_, close))
    exists = np.ones((big_t, big_n), dtype=bool)
    first = rng.integers(1, 25, big_n)
    last = rng.integers(4, big_t, big_n)
    use_first = rng.random(big_n) < 0.5
    use_last = rng.random(big_n) < 0.5
    for n in range(big_n):
        if late_listings and use_first[n]:
            exists[: first[n], n] = False
        if delistings and use_last[n]:
            exists[last[n] + 1:, n] = False
    if halts:
        halt = rng.random((big_t, big_n)) < 0.06
        # single-bar halts only: a halt needs a live bar on both sides
        for n in range(big_n):
            for t in range(1, big_t - 1):
                if halt[t, n] and exists[t - 1, n] and exists[t + 1, n]:
                    exists[t, n] = False
    sl = (slice(0, T), slice(0, N))
    o, h, lo, c = (np.where(exists, a, np.nan)[sl] for a in (open_, high, low, close))
    day_gaps = rng.integers(1, 4, big_t)[:T]
    ts = np.datetime64("2020-01-01", "ns") + np.cumsum(day_gaps).astype("timedelta64[D]")
    assets = [f"A{n}" for n in range(N)]
    return Panel.from_arrays(ts, assets, close=c, open=o, high=h, low=lo)


def make_weights(spec: CaseSpec) -> np.ndarray:
    rng = np.random.default_rng(spec.seed + 1)
    big_t, big_n = max(spec.T, MAX_T), max(spec.N, MAX_N)
    w = np.full((big_t, big_n), np.nan)
    prev: np.ndarray | None = None
    choices = np.array([0.0, 0.1, 0.2, 0.25, 0.5, 1.0])
    offset = int(rng.integers(0, spec.rebalance_every))
    for t in range(big_t):
        if (t - offset) % spec.rebalance_every:
            continue
        if prev is not None and rng.random() < spec.repeat_rows:
            w[t] = prev
            continue
        if spec.discrete_weights:
            row = rng.choice(choices, big_n)
        else:
            row = rng.dirichlet(np.ones(big_n)) * spec.gross * rng.uniform(0.5, 1.5)
        if spec.cfg.allow_short:
            row = row * np.where(rng.random(big_n) < 0.4, -1.0, 1.0)
        row[rng.random(big_n) < spec.zero_in_rows] = 0.0
        row[rng.random(big_n) < spec.nan_in_rows] = np.nan
        w[t] = row
        prev = row
    return w[: spec.T, : spec.N]


def build_case(spec: CaseSpec) -> tuple[Panel, np.ndarray, EngineConfig]:
    panel = make_panel(spec.T, spec.N, spec.seed, late_listings=spec.late_listings,
                       delistings=spec.delistings, halts=spec.halts, gaps=spec.gaps,
                       tick_round=spec.tick_round, volatility=spec.volatility)
    return panel, make_weights(spec), spec.cfg


def _maybe(strategy: st.SearchStrategy, p_none: float = 0.5) -> st.SearchStrategy:
    """None with probability ~p_none (Hypothesis' one_of is uniform over branches)."""
    if p_none <= 0.34:
        return st.one_of(strategy, strategy, st.none())
    return st.one_of(strategy, st.none())


_FRACTIONS = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def configs(draw: st.DrawFn, *, stops: bool | None = None,
            fill: str | None = None) -> EngineConfig:
    """Random EngineConfigs over the whole documented parameter space."""
    allow_short = draw(st.booleans())
    if allow_short:
        max_lev = draw(st.floats(0.5, 2.0))
    else:
        max_lev = draw(st.one_of(st.just(1.0), st.floats(0.5, 1.5)))
    with_stops = draw(st.booleans()) if stops is None else stops
    stop_kw: dict[str, object] = {}
    if with_stops:
        stop_kw = {
            "stop_loss": draw(_maybe(st.floats(0.005, 0.2))),
            "take_profit": draw(_maybe(st.floats(0.005, 0.5))),
            "trailing_stop": draw(_maybe(st.floats(0.005, 0.2))),
            "atr_stop": draw(_maybe(st.floats(0.3, 4.0))),
            "atr_window": draw(st.integers(1, 8)),
        }
    zero_or = lambda hi: st.one_of(st.just(0.0), st.floats(0.0, hi))  # noqa: E731
    return EngineConfig(
        init_cash=draw(st.floats(10_000.0, 1_000_000.0)),
        fill=fill or draw(st.sampled_from(["next_open", "close"])),
        commission=draw(zero_or(0.01)),
        fixed_fee=draw(zero_or(50.0)),
        slippage=draw(zero_or(0.01)),
        fractional=draw(st.booleans()),
        min_trade_value=draw(st.one_of(st.just(0.0), st.just(0.0), st.floats(0.0, 2000.0))),
        min_weight_change=draw(st.one_of(st.just(0.0), st.just(0.0), st.floats(0.0, 0.05))),
        allow_short=allow_short,
        max_leverage=max_lev,
        periods_per_year=draw(st.one_of(st.none(), st.just(252.0))),
        **stop_kw,  # type: ignore[arg-type]
    )


@st.composite
def case_specs(draw: st.DrawFn, *, max_t: int = MAX_T, max_n: int = MAX_N,
               stops: bool | None = None, fill: str | None = None,
               cfg: st.SearchStrategy[EngineConfig] | None = None) -> CaseSpec:
    config = draw(cfg if cfg is not None else configs(stops=stops, fill=fill))
    return CaseSpec(
        T=draw(st.integers(2, max_t)),
        N=draw(st.integers(1, max_n)),
        seed=draw(st.integers(0, 2**31 - 1)),
        cfg=config,
        late_listings=draw(st.booleans()),
        delistings=draw(st.booleans()),
        halts=draw(st.booleans()),
        gaps=draw(st.booleans()),
        tick_round=draw(st.booleans()),
        rebalance_every=draw(st.integers(1, 6)),
        repeat_rows=draw(st.sampled_from([0.0, 0.3, 0.8])),
        nan_in_rows=draw(st.sampled_from([0.0, 0.1, 0.3])),
        zero_in_rows=draw(st.sampled_from([0.0, 0.15, 0.4])),
        gross=draw(st.sampled_from([0.3, 0.9, 1.0, 1.6])),
        discrete_weights=draw(st.booleans()),
        volatility=draw(st.sampled_from([0.01, 0.03, 0.08])),
    )


def replace_cfg(spec: CaseSpec, **changes: object) -> CaseSpec:
    """The same case with some config fields changed (for minimising failures by hand)."""
    return dataclasses.replace(spec, cfg=spec.cfg.replace(**changes))
