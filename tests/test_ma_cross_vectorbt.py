"""ma_cross against vectorbt's moving-average crossover recipe on the real sample stocks.

For each ticker alone (a single-asset panel; FB too, with its short 2012-13 history), a few
(fast, slow) pairs, SMA and EMA:

    fast_ma, slow_ma = vbt.MA.run_combs(close, window=[fast, slow], r=2, ewm=...)
    entries = fast_ma.ma_crossed_above(slow_ma)
    exits = fast_ma.ma_crossed_below(slow_ma)
    pf = vbt.Portfolio.from_signals(close, entries, exits, init_cash=..., fees=...,
                                    fixed_fees=..., slippage=..., freq="1D")

must give the same round trips (entry/exit bars) and the same equity (1e-9 relative) as
``run_backtest(panel, ma_cross.weights(panel, ...), EngineConfig(fill="close", ...))``.

Why they coincide: ma_cross emits weight 1.0 on the cross-up bar and 0.0 on the cross-down
bar (single asset), NaN otherwise; a target of 100% of equity from flat is a buy bigger than
the cash once costs are added, which the engine cuts to ``(cash - fixed_fee) / (1 + fees) /
(close * (1 + slippage))``, exactly what from_signals' default ``size=inf`` buys. vectorbt's MA is
``rolling_mean_nb(close, window, minp=window)`` or ``ewm_mean_nb(close, span=window,
minp=window, adjust=False)`` (vectorbt/indicators/nb.py ``ma_nb``), the same numbers as
strategies/indicators.py. vectorbt 1.2.0's ``crossed_above_1d_nb`` keeps "was below" through
bars where the averages are equal, as ma_cross does; the one difference (after an equal bar
while *above*, vectorbt signals a second cross up) only repeats an entry while already in
position, which from_signals ignores - checked through the trades, and the raw signals are
compared on the bars where the position changes.

vectorbt is a required test dependency: imported normally, never skipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import vectorbt as vbt

import strategies
from engine import EngineConfig, Panel, run_backtest
from engine.data import SAMPLE_TICKERS, sample_stocks
from strategies.indicators import ema, rolling_mean

INIT_CASH = 100_000.0
PAIRS = [(5, 30), (10, 50), (20, 100)]
COSTS = {
    "free": {},
    "costs": {"commission": 0.001, "slippage": 0.0005},
    "fixed": {"commission": 0.0005, "slippage": 0.001, "fixed_fee": 5.0},
}


@pytest.fixture(scope="module")
def stocks() -> dict[str, Panel]:
    return {t: sample_stocks([t]) for t in SAMPLE_TICKERS}


def vbt_crossover(close: pd.Series, fast: int, slow: int, ewm: bool
                  ) -> tuple[pd.Series, pd.Series, np.ndarray, np.ndarray]:
    fast_ma, slow_ma = vbt.MA.run_combs(close, window=[fast, slow], r=2, ewm=ewm,
                                        short_names=["fast", "slow"])
    entries = fast_ma.ma_crossed_above(slow_ma)
    exits = fast_ma.ma_crossed_below(slow_ma)
    return entries, exits, np.asarray(fast_ma.ma), np.asarray(slow_ma.ma)


@pytest.mark.parametrize("cost", list(COSTS))
@pytest.mark.parametrize("kind", ["sma", "ema"])
@pytest.mark.parametrize("ticker", SAMPLE_TICKERS)
def test_ma_cross_matches_vectorbt(stocks: dict[str, Panel], ticker: str, kind: str,
                                   cost: str) -> None:
    panel = stocks[ticker]
    assert panel.n_assets == 1 and not np.isnan(panel.close).any()
    close = pd.Series(panel.close[:, 0], index=pd.DatetimeIndex(panel.timestamps))
    costs = COSTS[cost]
    cfg = EngineConfig(init_cash=INIT_CASH, fill="close", **costs)
    s = strategies.get("ma_cross")
    total_trades = 0
    for fast, slow in PAIRS:
        where = f"{ticker} {kind}({fast}, {slow}) {cost}"
        entries, exits, fast_ma, slow_ma = vbt_crossover(close, fast, slow, kind == "ema")

        # The averages themselves.
        mine = (ema if kind == "ema" else rolling_mean)
        np.testing.assert_allclose(mine(panel.close, fast)[:, 0], fast_ma.ravel(),
                                   rtol=1e-12, equal_nan=True, err_msg=where)
        np.testing.assert_allclose(mine(panel.close, slow)[:, 0], slow_ma.ravel(),
                                   rtol=1e-12, equal_nan=True, err_msg=where)

        w = s.weights(panel, fast=fast, slow=slow, kind=kind)[:, 0]
        res = run_backtest(panel, w[:, None], cfg)
        pf = vbt.Portfolio.from_signals(
            close, entries, exits, init_cash=INIT_CASH, fees=costs.get("commission", 0.0),
            fixed_fees=costs.get("fixed_fee", 0.0), slippage=costs.get("slippage", 0.0),
            freq="1D",
        )

        # (a) the signals where the position changes, and the round trips
        ent = np.asarray(entries, dtype=bool).ravel()
        ext = np.asarray(exits, dtype=bool).ravel()
        assert not (ent & ext).any()
        assert set(np.flatnonzero(w == 1.0)) <= set(np.flatnonzero(ent)), where
        assert set(np.flatnonzero(w == 0.0)) <= set(np.flatnonzero(ext)), where
        assert np.isin(w[np.isfinite(w)], (0.0, 1.0)).all()

        pos = pf.positions.values
        trades = res.trades
        assert len(trades) == len(pos), where
        assert trades["entry_bar"].to_list() == pos["entry_idx"].tolist(), where
        is_open = pos["status"] == 0
        assert trades["exit_reason"].to_list() == [
            "open" if o else "signal" for o in is_open
        ], where
        exit_bar = trades["exit_bar"].to_list()
        assert [b for b, o in zip(exit_bar, is_open, strict=True) if not o] == \
            pos["exit_idx"][~is_open].tolist(), where
        np.testing.assert_allclose(trades["entry_price"].to_numpy(), pos["entry_price"],
                                   rtol=1e-12, err_msg=where)
        np.testing.assert_allclose(trades["quantity"].to_numpy(), pos["size"], rtol=1e-9,
                                   err_msg=where)
        np.testing.assert_allclose(trades["pnl"].to_numpy(), pos["pnl"], rtol=1e-9,
                                   atol=1e-6, err_msg=where)
        total_trades += len(trades)

        # (b) equity and cash, bar by bar
        np.testing.assert_allclose(res.equity, np.asarray(pf.value()), rtol=1e-9,
                                   err_msg=where)
        np.testing.assert_allclose(res.cash, np.asarray(pf.cash()), rtol=1e-9, atol=1e-6,
                                   err_msg=where)
        if costs:
            assert res.metrics["fees"] > 0
            np.testing.assert_allclose(res.metrics["fees"],
                                       pos["entry_fees"].sum() + pos["exit_fees"].sum(),
                                       rtol=1e-9, err_msg=where)
    assert total_trades >= len(PAIRS), f"{ticker}: too few trades to compare"
