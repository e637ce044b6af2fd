"""Parity of ``run_backtest`` with vectorbt 1.2.0's ``Portfolio.from_orders``.

docs/engine.md promises that ``fill="close"`` behaves exactly like

    vbt.Portfolio.from_orders(close, size=weights, size_type="targetpercent",
                              group_by=True, cash_sharing=True, call_seq="auto",
                              fees=commission, fixed_fees=fixed_fee, slippage=slippage,
                              init_cash=init_cash, min_size=0.0)

(same equity, cash, positions, fills, fees, traded notional and round trips, to 1e-9), and
``fill="next_open"`` matches the same call with the weights shifted one bar and
``price=open`` when the panel has no overnight gaps. vectorbt is a required test dependency
(imported normally: a missing vectorbt fails this module rather than skipping it).

Where the engines coincide (read from ``vectorbt/portfolio/nb.py``,
``simulate_from_orders_nb``):

* the value used for sizing is taken once per bar, before any order
  (``update_value=False``): ``cash + sum(pos * valuation price)``, backsweep's ``E``;
* ``targetpercent`` orders ``w * E / price - pos``;
* ``call_seq="auto"`` executes the bar's orders in ascending ``approx_order_value_nb`` =
  ``w * E - pos * price`` (stable insertion sort): sells first, smallest buy first;
* ``buy_nb`` cuts a buy that does not fit the cash (beyond ``is_close``'s 1e-9 relative
  tolerance) to ``(cash - fixed_fees) / (1 + fees) / (price * (1 + slippage))`` and
  rejects it when nothing is left; ``sell_nb`` rejects a sale whose fees exceed it.

NaN weights and column order. In a plain insertion sort a NaN order value (a NaN weight =
no order, or an unlisted asset with a NaN valuation price) would be a barrier that later
orders cannot pass (``>`` with NaN is False), so a sale listed after it would run after the
buys before it. vectorbt 1.2.0's ``insert_argsort_nb`` (vectorbt/utils/array_.py) guards
against that: its inner loop is ``while i >= 0 and (A[i] > A_j or np.isnan(A[i]))``, so
NaN values move to the end and the real orders come out sorted, exactly as backsweep sorts
only its real orders. Column order and NaN instructions therefore do not matter: the
"shuffled" layout below (random column order, late listings anywhere, NaN instructions in
rebalance rows) and ``test_nan_order_values_sort_last_in_vectorbt`` check that.

Conditions the comparison does need (each a documented difference, not a bug):

(a) No delistings: backsweep closes a position on the asset's last valid bar (exit reason
    ``delisted``), vectorbt keeps it. (Halts are left out too, to keep the check simple.)
(b) Weights only for assets with a bar at the decision: in next_open mode backsweep
    ignores an instruction for an asset without a close at bar t, while vectorbt, fed the
    shifted row, would execute it at t+1's open if the asset lists then.
(c) Fractional shares only: backsweep truncates the *target* to whole shares, vectorbt's
    ``size_granularity`` floors the *order* (a sale then leaves the position rounded up).
(d) ``min_size=0.0``: vectorbt's Portfolio default ``min_size=1e-8`` rejects orders below
    1e-8 units, which backsweep fills (``test_vectorbt_min_size_default_drops_dust_orders``).
    vectorbt also ignores orders of at most 1e-12 units as "size zero"; none occur here.
(e) backsweep's leverage cap must stay idle: a row is scaled down when its finite weights
    plus the exposure of held assets left at NaN exceed ``max_leverage`` (1 in a cash
    account); vectorbt has no such cap and lets the cash rule cut the last buy instead
    (``test_leverage_cap_with_held_nan_weights_differs``). This, not the sort, is why a
    fully invested rebalance row must give a finite weight to every held asset.
(f) next_open needs gapless panels: backsweep fixes the quantity at bar t's close
    (``w * E_t / close_t - pos``) and fills it at t+1's open; vectorbt sizes the order from
    the open's valuation. They agree only when ``open[t+1] == close[t]``
    (``test_next_open_differs_when_opens_gap``).

``_check_comparable`` and ``_assert_leverage_cap_idle`` enforce (a), (b) and (e) on every
parity run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import vectorbt as vbt

from engine import EngineConfig, Panel, run_backtest
from engine.data import sample_stocks

INIT_CASH = 100_000.0
RTOL = 1e-9

COSTS = {
    "none": {},
    "commission": {"commission": 0.002},
    "fixed_fee": {"fixed_fee": 3.0},
    "slippage": {"slippage": 0.001},
    "all": {"commission": 0.001, "fixed_fee": 2.0, "slippage": 0.0005},
}
CLOSE_SEEDS = list(range(12))
NEXT_OPEN_SEEDS = list(range(100, 108))


# --------------------------------------------------------------------------- panels


def _first_bars(close: np.ndarray) -> np.ndarray:
    """Per asset, the first row with a close (T if none)."""
    has = np.isfinite(close)
    return np.where(has.any(axis=0), has.argmax(axis=0), close.shape[0])


def by_listing_date(panel: Panel) -> Panel:
    """The same panel with columns ordered by first bar (stable): late listings last."""
    order = np.argsort(_first_bars(panel.close), kind="stable")
    return Panel.from_arrays(
        panel.timestamps,
        [panel.assets[i] for i in order],
        close=panel.close[:, order],
        open=panel.open[:, order],
        high=panel.high[:, order],
        low=panel.low[:, order],
        volume=panel.volume[:, order],
    )


def random_panel(seed: int, *, opens: str, layout: str = "listing_order"
                 ) -> tuple[Panel, np.ndarray]:
    """A random panel (T 200-500, N 3-12, about half the assets listed late) and random
    target weights, rebalanced every k bars (1-20).

    ``opens``: "gapless" (open = previous close) or "gapped" (open = previous close times a
    1% lognormal gap). A listing bar's open is always a small jump from its close.

    ``layout``: "listing_order": columns by listing date, every rebalance row finite for
    every listed asset (the conservative setup). "shuffled": columns in random order, and
    rebalance rows leave some listed assets without instruction (NaN): flat ones at random,
    and sometimes one held asset whose position is kept, the other weights then leaving
    room for it so that backsweep's leverage cap does not bind.
    """
    rng = np.random.default_rng(seed)
    T = int(rng.integers(200, 501))
    N = int(rng.integers(3, 13))
    n_early = max(1, N // 2)
    listing = np.sort(
        np.concatenate([np.zeros(n_early, int), rng.integers(1, int(0.7 * T), N - n_early)])
    )
    close = rng.uniform(5, 500, N) * np.exp(np.cumsum(rng.normal(3e-4, 0.02, (T, N)), axis=0))
    open_ = np.empty_like(close)
    open_[1:] = close[:-1]
    if opens == "gapped":
        open_[1:] *= np.exp(rng.normal(0.0, 0.01, (T - 1, N)))
    elif opens != "gapless":
        raise ValueError(opens)
    open_[listing, np.arange(N)] = close[listing, np.arange(N)] * np.exp(rng.normal(0, 0.01, N))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, (T, N)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, (T, N)))
    for n, first in enumerate(listing):
        for a in (open_, high, low, close):
            a[:first, n] = np.nan

    w = np.full((T, N), np.nan)
    last = np.zeros(N)  # last finite weight per asset
    every = int(rng.integers(1, 21))
    for t in range(0, T, every):
        listed = np.flatnonzero(listing <= t)
        x = rng.uniform(0, 1, listed.size)
        x[rng.uniform(size=listed.size) < 0.2] = 0.0  # some explicit closes / stay-flats
        if rng.uniform() < 0.05:
            x[:] = 0.0  # go flat
        elif x.sum() == 0.0:
            x[0] = 1.0
        else:
            x /= x.sum()  # fully invested: with costs the last buy is cut by the cash
            if rng.uniform() < 0.4:
                x *= rng.uniform(0.3, 1.0)  # partly in cash
        row = np.full(N, np.nan)
        row[listed] = x
        if layout == "shuffled":
            row[listed[(last[listed] == 0) & (rng.uniform(size=listed.size) < 0.5)]] = np.nan
            held = listed[last[listed] > 0]
            if held.size and rng.uniform() < 0.3:
                keep = rng.choice(held)
                row[keep] = np.nan
                fin = np.isfinite(row)
                room = max(0.0, 1.0 - 2.0 * last[keep])
                if row[fin].sum() > room:
                    row[fin] *= room / row[fin].sum()
        elif layout != "listing_order":
            raise ValueError(layout)
        fin = np.isfinite(row)
        last[fin] = row[fin]
        w[t] = row

    names = [f"A{i:02d}" for i in range(N)]
    order = rng.permutation(N) if layout == "shuffled" else np.arange(N)
    ts = np.datetime64("2020-01-01", "D") + np.arange(T)
    panel = Panel.from_arrays(ts, [names[i] for i in order], close=close[:, order],
                              open=open_[:, order], high=high[:, order], low=low[:, order])
    return panel, w[:, order]


def gapless(panel: Panel) -> Panel:
    """The panel with every open replaced by the asset's previous close (high/low widened)."""
    open_ = panel.open.copy()
    open_[1:] = np.where(np.isfinite(panel.close[:-1]), panel.close[:-1], open_[1:])
    return Panel.from_arrays(
        panel.timestamps, panel.assets, close=panel.close, open=open_,
        high=np.fmax(panel.high, open_), low=np.fmin(panel.low, open_), volume=panel.volume,
    )


# ------------------------------------------------------------------------ vectorbt side


def vbt_portfolio(panel: Panel, weights: np.ndarray, cfg: EngineConfig,
                  **overrides) -> vbt.Portfolio:
    """vectorbt's account of the same run (see the module docstring)."""
    idx = pd.DatetimeIndex(panel.timestamps)
    kwargs = {
        "size_type": "targetpercent",
        "group_by": True,
        "cash_sharing": True,
        "call_seq": "auto",
        "fees": cfg.commission,
        "fixed_fees": cfg.fixed_fee,
        "slippage": cfg.slippage,
        "init_cash": cfg.init_cash,
        "min_size": 0.0,
        "freq": "1D",
    }
    if cfg.fill == "next_open":
        size = np.full_like(weights, np.nan)
        size[1:] = weights[:-1]  # decided at t's close, executed on bar t+1
        kwargs["price"] = pd.DataFrame(panel.open, index=idx)
    else:
        size = weights
    kwargs.update(overrides)
    return vbt.Portfolio.from_orders(pd.DataFrame(panel.close, index=idx),
                                     size=pd.DataFrame(size, index=idx), **kwargs)


def _check_comparable(panel: Panel, weights: np.ndarray, cfg: EngineConfig) -> None:
    """Conditions (a)-(c) of the module docstring, checked before a run, so that a parity
    failure means a real difference. (d) is ``vbt_portfolio``'s ``min_size=0.0``; (e) needs
    the run (``_assert_leverage_cap_idle``); (f) is up to the panel's author."""
    assert cfg.fractional and cfg.cash_account
    assert cfg.stop_loss is cfg.take_profit is cfg.trailing_stop is cfg.atr_stop is None
    assert cfg.min_trade_value == 0 and cfg.min_weight_change == 0
    listed = np.isfinite(panel.close)
    after_listing = np.arange(panel.n_bars)[:, None] >= _first_bars(panel.close)[None, :]
    assert np.array_equal(listed, after_listing), "no halts or delistings"
    assert not (np.isfinite(weights) & ~listed).any(), "weights only for listed assets"


def _assert_leverage_cap_idle(panel: Panel, weights: np.ndarray, res) -> None:
    """backsweep's row scaling (docs/engine.md, "Weights rows, leverage and shorting") never
    fired: at every decision, finite weights plus the exposure of held assets left without
    instruction stay within max_leverage = 1. vectorbt has no such cap."""
    T, N = panel.shape
    close_mode = res.config.fill == "close"
    for t in np.flatnonzero(np.isfinite(weights).any(axis=1)):
        if close_mode:
            pos = res.positions[t - 1] if t else np.zeros(N)
            held = pos != 0
            equity = (res.cash[t - 1] if t else res.config.init_cash) + np.sum(
                pos[held] * panel.close[t, held])
        elif t == T - 1:
            continue  # next_open decides nothing on the last bar
        else:
            pos, equity = res.positions[t], res.equity[t]
        w = weights[t]
        nan_held = np.isnan(w) & (pos != 0)
        gross = np.abs(w[np.isfinite(w)]).sum()
        held_exposure = np.abs(pos[nan_held] * panel.close[t, nan_held]).sum() / equity
        assert gross == 0 or gross + held_exposure <= 1.0 + 1e-9, (t, gross, held_exposure)


def _fill_matrix(pf: vbt.Portfolio, shape: tuple[int, int]) -> np.ndarray:
    """vectorbt's signed fill quantity per (bar, asset); at most one fill per cell."""
    o = pf.orders.values
    out = np.zeros(shape)
    assert len({(int(i), int(c)) for i, c in zip(o["idx"], o["col"], strict=True)}) == len(o)
    out[o["idx"], o["col"]] = np.where(o["side"] == 0, o["size"], -o["size"])
    return out


def _per_bar(pf: vbt.Portfolio, values: np.ndarray, n_bars: int) -> np.ndarray:
    out = np.zeros(n_bars)
    np.add.at(out, pf.orders.values["idx"], values)
    return out


def assert_parity(panel: Panel, weights: np.ndarray, cfg: EngineConfig):
    """Run both engines and compare everything both report. Returns (result, portfolio)."""
    _check_comparable(panel, weights, cfg)
    res = run_backtest(panel, weights, cfg, positions=True)
    _assert_leverage_cap_idle(panel, weights, res)
    pf = vbt_portfolio(panel, weights, cfg)
    T, N = panel.shape
    orders = pf.orders.values

    # Equity (marked at the close), cash and positions, bar by bar.
    np.testing.assert_allclose(res.equity, pf.value().values, rtol=RTOL)
    np.testing.assert_allclose(res.cash, pf.cash().values, rtol=RTOL, atol=RTOL * cfg.init_cash)
    np.testing.assert_allclose(res.positions, pf.assets().values, rtol=RTOL, atol=1e-9)

    # The same fills: same (bar, asset) cells, same signed quantities.
    vbt_fills = _fill_matrix(pf, (T, N))
    our_fills = np.diff(res.positions, axis=0, prepend=np.zeros((1, N)))
    np.testing.assert_array_equal(our_fills != 0, vbt_fills != 0)
    np.testing.assert_allclose(our_fills, vbt_fills, rtol=RTOL,
                               atol=1e-12 * max(1.0, np.abs(res.positions).max()))

    # Fees and traded notional (at the slipped fill price), per bar and in total.
    vbt_fees = _per_bar(pf, orders["fees"], T)
    vbt_notional = _per_bar(pf, orders["size"] * orders["price"], T)
    np.testing.assert_allclose(res.fees, vbt_fees, rtol=RTOL, atol=1e-12 * cfg.init_cash)
    np.testing.assert_allclose(res.turnover, vbt_notional, rtol=RTOL,
                               atol=1e-12 * cfg.init_cash)
    np.testing.assert_allclose(res.fees.sum(), orders["fees"].sum(), rtol=RTOL)
    np.testing.assert_allclose(res.turnover.sum(), (orders["size"] * orders["price"]).sum(),
                               rtol=RTOL)
    np.testing.assert_allclose(res.metrics["fees"], orders["fees"].sum(), rtol=RTOL)
    np.testing.assert_allclose(res.metrics["final_equity"], pf.value().values[-1], rtol=RTOL)

    # Round trips: backsweep's trades are vectorbt's positions (flat to flat).
    _assert_trades_match(panel, res, pf)
    return res, pf


def _assert_trades_match(panel: Panel, res, pf: vbt.Portfolio) -> None:
    pos = pf.positions.values
    pos = pos[np.lexsort((pos["entry_idx"], pos["col"]))]
    tr = res.trades
    asset_idx = np.array([panel.assets.index(a) for a in tr["asset"]], dtype=np.int64)
    order = np.lexsort((tr["entry_bar"].to_numpy(), asset_idx))
    tr, asset_idx = tr[order], asset_idx[order]

    assert res.metrics["n_trades"] == len(pos) == tr.height
    np.testing.assert_array_equal(asset_idx, pos["col"])
    np.testing.assert_array_equal(tr["entry_bar"].to_numpy(), pos["entry_idx"])
    assert (tr["direction"] == "long").all() and (pos["direction"] == 0).all()
    closed = pos["status"] == 1
    np.testing.assert_array_equal(tr["exit_reason"].to_numpy() == "open", ~closed)
    np.testing.assert_array_equal(tr["exit_bar"].to_numpy()[closed], pos["exit_idx"][closed])
    np.testing.assert_allclose(tr["quantity"].to_numpy(), pos["size"], rtol=RTOL)
    np.testing.assert_allclose(tr["entry_price"].to_numpy(), pos["entry_price"], rtol=RTOL)
    np.testing.assert_allclose(tr["exit_price"].to_numpy()[closed], pos["exit_price"][closed],
                               rtol=RTOL)
    np.testing.assert_allclose(tr["fees"].to_numpy(), pos["entry_fees"] + pos["exit_fees"],
                               rtol=RTOL, atol=1e-12 * res.config.init_cash)
    np.testing.assert_allclose(tr["pnl"].to_numpy(), pos["pnl"], rtol=RTOL,
                               atol=RTOL * res.config.init_cash)


def _assert_trades_and_costs(res, pf: vbt.Portfolio, cfg: EngineConfig,
                             min_trading_bars: int = 3) -> None:
    """The parity run is not vacuous: it trades, and costs cost."""
    assert len(pf.orders.values) > 0 and res.metrics["n_trades"] > 0
    assert (res.turnover > 0).sum() >= min_trading_bars
    if cfg.commission > 0 or cfg.fixed_fee > 0:
        assert res.fees.sum() > 0
    else:
        assert res.fees.sum() == 0


def _cut_buys(close: np.ndarray, weights: np.ndarray, pos: np.ndarray, cash: np.ndarray,
              init_cash: float) -> dict[int, tuple[list[int], list[int]]]:
    """Buys (fill="close") that the cash rule cut or rejected, recomputed from the
    positions and cash an engine reports.

    Returns ``{bar: (cut assets, that bar's buys in ascending order of approximate value)}``
    for the bars with at least one cut buy.
    """
    N = close.shape[1]
    prev_pos = np.vstack([np.zeros((1, N)), pos[:-1]])
    prev_cash = np.r_[init_cash, cash[:-1]]
    out = {}
    for t in np.flatnonzero(np.isfinite(weights).any(axis=1)):
        held = prev_pos[t] != 0
        equity = prev_cash[t] + np.sum(prev_pos[t, held] * close[t, held])
        ok = np.isfinite(weights[t])
        order = np.zeros(N)
        order[ok] = weights[t, ok] * equity / close[t, ok] - prev_pos[t, ok]
        value = weights[t] * equity - prev_pos[t] * close[t]
        buys = np.flatnonzero(order > 0)
        buys = buys[np.argsort(value[buys], kind="stable")]
        filled = pos[t] - prev_pos[t]
        cut = [int(n) for n in buys if filled[n] < order[n] * (1 - 1e-6)]
        if cut:
            out[int(t)] = (sorted(cut), [int(n) for n in buys])
    return out


# ------------------------------------------------------------------------------ tests

LAYOUTS = ["listing_order", "shuffled"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("costs", list(COSTS))
@pytest.mark.parametrize("seed", CLOSE_SEEDS)
def test_close_fill_matches_vectorbt_on_random_panels(seed, costs, layout):
    panel, w = random_panel(seed, opens="gapped", layout=layout)
    cfg = EngineConfig(fill="close", init_cash=INIT_CASH, **COSTS[costs])
    res, pf = assert_parity(panel, w, cfg)
    _assert_trades_and_costs(res, pf, cfg)


def test_shuffled_layout_exercises_nan_instructions():
    """The "shuffled" panels do what they claim: late-listed assets sit before early ones,
    and rebalance rows leave listed assets (held ones included) without instruction."""
    late_first = nan_listed = nan_held = 0
    for seed in CLOSE_SEEDS:
        panel, w = random_panel(seed, opens="gapped", layout="shuffled")
        first = _first_bars(panel.close)
        late_first += bool(np.any(np.diff(first) < 0))
        rows = np.isfinite(w).any(axis=1)
        gaps = rows[:, None] & np.isnan(w) & np.isfinite(panel.close)
        nan_listed += int(gaps.sum())
        res = run_backtest(panel, w, EngineConfig(fill="close", init_cash=INIT_CASH),
                           positions=True)
        prev = np.vstack([np.zeros((1, panel.n_assets)), res.positions[:-1]])
        nan_held += int((gaps & (prev != 0)).sum())
    assert late_first >= len(CLOSE_SEEDS) // 2
    assert nan_listed >= 100 and nan_held >= 10


@pytest.mark.parametrize("seed", CLOSE_SEEDS[:4])
def test_cash_binds_and_execution_order_matters(seed):
    """Rows summing to 1 with a commission: the cash cannot pay every buy, so the last
    (largest) buy is cut to what is left. Cut buys happen at the same places in both
    engines, the account is then empty, and executing in column order instead of
    sells-first/smallest-buy-first gives a different equity: the parity runs are sensitive
    to the execution order and to the cash-reduction rule."""
    panel, w = random_panel(seed, opens="gapped")
    cfg = EngineConfig(fill="close", init_cash=INIT_CASH, commission=0.002)
    res, pf = assert_parity(panel, w, cfg)

    ours = _cut_buys(panel.close, w, res.positions, res.cash, INIT_CASH)
    theirs = _cut_buys(panel.close, w, pf.assets().values, pf.cash().values, INIT_CASH)
    assert ours == theirs
    assert len(ours) >= 3
    vbt_cash = pf.cash().values  # vectorbt rebuilds cash from cash flows: rounding crumbs
    for t, (cut, buys) in ours.items():
        # The largest buys come last and are the ones cut; the cash is then spent.
        assert cut == sorted(buys[len(buys) - len(cut):])
        assert res.cash[t] == 0.0
        assert abs(vbt_cash[t]) <= 1e-12 * INIT_CASH

    in_column_order = vbt_portfolio(panel, w, cfg, call_seq="default").value().values
    assert np.max(np.abs(in_column_order / res.equity - 1)) > 1e-6


def _three_assets(close: list[list[float]]) -> Panel:
    c = np.array(close)
    return Panel.from_arrays(np.datetime64("2021-01-04", "D") + np.arange(len(c)),
                             ["A", "B", "C"], close=c)


def test_nan_order_values_sort_last_in_vectorbt():
    """A NaN weight (B, held) between a buy (A) and a sale (C) on a bar where the buy needs
    the sale's cash. A NaN barrier would run A's buy first and reject it for lack of cash;
    vectorbt 1.2.0 moves the NaN to the end instead and sells C first, like backsweep."""
    panel = _three_assets([[10.0, 20.0, 40.0], [10.0, 21.0, 44.0], [11.0, 22.0, 45.0]])
    cfg = EngineConfig(fill="close", init_cash=1000.0)
    w = np.array([[0.0, 0.5, 0.5], [0.5, np.nan, 0.0], [np.nan] * 3])
    res, pf = assert_parity(panel, w, cfg)
    assert res.cash[0] == 0.0
    assert res.positions[1, 2] == 0.0
    np.testing.assert_allclose(res.positions[1, 0], 0.5 * res.equity[1] / 10.0, rtol=1e-12)
    np.testing.assert_allclose(pf.assets().values[1], res.positions[1], rtol=1e-12)


def test_leverage_cap_with_held_nan_weights_differs():
    """Documented difference (e): B is held and left at NaN while A and C get weights
    summing to 1. backsweep's cap scales A and C by (1 - B's exposure) / 1, so that A, B
    and C together are exactly fully invested; vectorbt targets A and C in full, C's sale
    does not pay for A's buy and the cash rule cuts A. Both end fully invested, in
    different proportions."""
    panel = _three_assets([[10.0, 20.0, 40.0], [10.0, 21.0, 44.0], [11.0, 22.0, 45.0]])
    cfg = EngineConfig(fill="close", init_cash=1000.0)
    w = np.array([[0.0, 0.5, 0.5], [0.6, np.nan, 0.4], [np.nan] * 3])
    res = run_backtest(panel, w, cfg, positions=True)
    pf = vbt_portfolio(panel, w, cfg)

    e1 = res.cash[0] + res.positions[0] @ panel.close[1]
    scale = 1.0 - res.positions[0, 1] * 21.0 / e1
    np.testing.assert_allclose(res.positions[1, [0, 2]],
                               [0.6 * scale * e1 / 10.0, 0.4 * scale * e1 / 44.0], rtol=1e-12)
    assert res.cash[1] == 0.0
    vbt_pos = pf.assets().values[1]
    np.testing.assert_allclose(vbt_pos[2], 0.4 * e1 / 44.0, rtol=1e-12)  # C at full target
    assert vbt_pos[0] < 0.6 * e1 / 10.0 * (1 - 1e-6)  # A cut by the cash rule
    assert abs(pf.cash().values[1]) < 1e-9
    assert abs(res.equity[-1] / pf.value().values[-1] - 1) > 1e-4


def test_vectorbt_min_size_default_drops_dust_orders():
    """Repeating a fully invested rebalance on flat prices with a commission leaves ever
    smaller remainders (each top-up's commission is cut again). vectorbt's default
    ``min_size=1e-8`` rejects the sub-1e-8-unit orders that backsweep fills; with
    ``min_size=0`` the fills coincide. The dust is immaterial for equity either way."""
    T = 10
    close = np.column_stack([np.r_[10.0, np.full(T - 1, 11.0)],
                             np.r_[20.0, np.full(T - 1, 19.0)], np.full(T, 7.0)])
    panel = _three_assets(close.tolist())
    w = np.tile([0.3, 0.3, 0.4], (T, 1))
    cfg = EngineConfig(fill="close", init_cash=1000.0, commission=0.001)
    res, _ = assert_parity(panel, w, cfg)

    default_pf = vbt_portfolio(panel, w, cfg, min_size=1e-8)
    fills = np.diff(res.positions, axis=0, prepend=np.zeros((1, 3)))
    dust = (fills != 0) & (np.abs(fills) < 1e-8)
    assert dust.any()
    np.testing.assert_array_equal(_fill_matrix(default_pf, panel.shape) != 0,
                                  (fills != 0) & ~dust)
    np.testing.assert_allclose(res.equity, default_pf.value().values, rtol=1e-12)


# ---------------------------------------------------------------- real data (sample)


@pytest.fixture(scope="module", params=["as_loaded", "by_listing_date"])
def stocks(request) -> Panel:
    """The five sample stocks, in sample_stocks' sorted order (FB, listed 2012-05-18,
    second) and reordered by listing date (FB last)."""
    panel = sample_stocks()
    assert panel.assets == ("AAPL", "FB", "GOOG", "IBM", "MSFT")
    if request.param == "by_listing_date":
        panel = by_listing_date(panel)
        assert panel.assets == ("AAPL", "IBM", "MSFT", "GOOG", "FB")
    return panel


def _month_starts(ts: np.ndarray) -> np.ndarray:
    months = ts.astype("datetime64[M]")
    return np.flatnonzero(np.r_[True, months[1:] != months[:-1]])


def inverse_vol_weights(panel: Panel, window: int = 63) -> np.ndarray:
    """Monthly 1/vol weights over the listed assets, fully invested; an asset with too
    little history gets 0."""
    logret = np.diff(np.log(panel.close), axis=0, prepend=np.nan)
    vol = pd.DataFrame(logret).rolling(window).std().to_numpy()
    w = np.full(panel.shape, np.nan)
    for t in _month_starts(panel.timestamps):
        listed = np.isfinite(panel.close[t])
        inv = np.where(np.isfinite(vol[t]) & listed, 1.0 / vol[t], 0.0)
        if inv.sum() > 0:
            w[t, listed] = inv[listed] / inv.sum()
    return w


def random_monthly_weights(panel: Panel, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = np.full(panel.shape, np.nan)
    for t in _month_starts(panel.timestamps):
        listed = np.flatnonzero(np.isfinite(panel.close[t]))
        x = rng.dirichlet(np.ones(listed.size)) * (1.0 if rng.uniform() < 0.6 else 0.8)
        x[rng.uniform(size=listed.size) < 0.15] = 0.0
        w[t, listed] = x
    return w


def buy_and_hold_weights(panel: Panel) -> np.ndarray:
    w = np.full(panel.shape, np.nan)
    listed = np.isfinite(panel.close[0])
    w[0, listed] = 1.0 / listed.sum()
    return w


STRATEGIES = {
    "inverse_vol": inverse_vol_weights,
    "random": random_monthly_weights,
    "buy_and_hold": buy_and_hold_weights,
}


@pytest.mark.parametrize("costs", ["none", "all"])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_close_fill_matches_vectorbt_on_sample_stocks(stocks, strategy, costs):
    w = STRATEGIES[strategy](stocks)
    cfg = EngineConfig(fill="close", init_cash=INIT_CASH, **COSTS[costs])
    res, pf = assert_parity(stocks, w, cfg)
    _assert_trades_and_costs(res, pf, cfg, min_trading_bars=1)
    if strategy == "buy_and_hold":
        assert len(pf.orders.values) == 3 and np.count_nonzero(res.turnover) == 1
    else:
        assert (np.abs(res.positions).sum(axis=0) > 0).all()  # FB and GOOG traded too
        assert (res.turnover > 0).sum() >= 100
    if costs == "all" and strategy == "inverse_vol":
        assert (res.cash[_month_starts(stocks.timestamps)] == 0.0).sum() > 100


@pytest.mark.parametrize("strategy", ["inverse_vol", "random"])
def test_next_open_matches_vectorbt_on_gapless_sample_stocks(stocks, strategy):
    panel = gapless(stocks)
    w = STRATEGIES[strategy](panel)
    cfg = EngineConfig(fill="next_open", init_cash=INIT_CASH, **COSTS["all"])
    res, pf = assert_parity(panel, w, cfg)
    _assert_trades_and_costs(res, pf, cfg)


# ----------------------------------------------------------------------- next_open


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("costs", ["none", "commission", "all"])
@pytest.mark.parametrize("seed", NEXT_OPEN_SEEDS)
def test_next_open_matches_vectorbt_without_gaps(seed, costs, layout):
    """With open[t+1] == close[t], sizing at t's close (backsweep) and at t+1's open
    (vectorbt, weights shifted one bar, price=open) give the same quantities, the same
    sells-first order and the same cash cuts; vectorbt's value() is marked at the close
    like backsweep's equity."""
    panel, w = random_panel(seed, opens="gapless", layout=layout)
    prev_close = panel.close[:-1]
    listed_before = np.isfinite(prev_close)
    assert np.array_equal(panel.open[1:][listed_before], prev_close[listed_before])
    cfg = EngineConfig(fill="next_open", init_cash=INIT_CASH, **COSTS[costs])
    res, pf = assert_parity(panel, w, cfg)
    _assert_trades_and_costs(res, pf, cfg)


@pytest.mark.parametrize("seed", NEXT_OPEN_SEEDS[:3])
def test_next_open_differs_when_opens_gap(seed):
    """Documented difference (f). backsweep decides an order at bar t's close, when
    tomorrow's open is unknown: the quantity is fixed to ``w * E_t / close_t - pos`` and
    filled at the next open whatever it is. vectorbt (weights shifted, price=open) sizes
    the same instruction at t+1 from the open's valuation, ``w * V_open / open - pos``,
    information backsweep cannot have at decision time. With overnight gaps the quantities,
    hence equity, differ. Each side's sizing rule is checked on its sells (which the cash
    rule never cuts)."""
    panel, w = random_panel(seed, opens="gapped")
    cfg = EngineConfig(fill="next_open", init_cash=INIT_CASH, **COSTS["all"])
    _check_comparable(panel, w, cfg)
    res = run_backtest(panel, w, cfg, positions=True)
    pf = vbt_portfolio(panel, w, cfg)
    T, N = panel.shape

    assert np.max(np.abs(res.equity / pf.value().values - 1)) > 1e-6

    # backsweep: decided at t from the close of t, filled at t+1.
    ours = np.diff(res.positions, axis=0, prepend=np.zeros((1, N)))[1:]
    w_t = w[:-1]
    at_close = w_t * res.equity[:-1, None] / panel.close[:-1] - res.positions[:-1]
    sells = np.isfinite(w_t) & (ours < 0)
    assert sells.sum() >= 5
    np.testing.assert_allclose(ours[sells], at_close[sells], rtol=RTOL, atol=1e-9)

    # vectorbt: sized at t+1 from the open (its own positions and cash before the bar).
    vpos, vcash = pf.assets().values, pf.cash().values
    theirs = _fill_matrix(pf, (T, N))[1:]
    open_next = panel.open[1:]
    held_value = np.where(vpos[:-1] != 0, vpos[:-1] * open_next, 0.0)
    v_open = vcash[:-1] + np.nansum(held_value, axis=1)
    at_open = w_t * v_open[:, None] / open_next - vpos[:-1]
    vsells = np.isfinite(w_t) & (theirs < 0)
    assert vsells.sum() >= 5
    np.testing.assert_allclose(theirs[vsells], at_open[vsells], rtol=RTOL, atol=1e-9)

    both = sells & vsells
    assert np.mean(np.abs(ours[both] / theirs[both] - 1) > 1e-6) > 0.5
