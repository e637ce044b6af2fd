"""The window model: lengths in bars, the calendar forms and any polars duration; windows
and walk-forward folds on intraday data; one annualisation rule for every window.

Real hourly data: EURUSD as shipped by the ``backtesting`` package (``sample:eurusd``);
minute data: a synthetic trading-hours calendar built here.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest

from engine import EngineConfig, Panel, run_backtest
from engine.data import parse_data_spec
from engine.metrics import bars_per_year
from sweep import SpecError, SweepSpec
from sweep.spec import WalkForwardConfig
from sweep.windows import (
    Schedule,
    WindowError,
    advance,
    make_folds,
    parse_length,
    windows_from_spec,
)


@pytest.fixture(scope="module")
def hourly() -> Panel:
    return parse_data_spec("sample:eurusd")


def minute_panel(days: int = 30) -> Panel:
    """390 one-minute bars a weekday (09:30-16:00), a random walk."""
    dates = pl.date_range(pl.date(2024, 1, 1), pl.date(2024, 12, 31), eager=True)
    dates = dates.filter(dates.dt.weekday() <= 5).head(days)
    stamps = np.concatenate([
        np.datetime64(str(d)) + np.timedelta64(9 * 60 + 30, "m") + np.arange(390).astype(
            "timedelta64[m]") for d in dates.to_list()]).astype("datetime64[ns]")
    rng = np.random.default_rng(4)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 4e-4, stamps.size)))[:, None]
    return Panel.from_arrays(stamps, ["X"], close=close)


# ------------------------------------------------------------------------ lengths
@pytest.mark.parametrize(("text", "expected"), [
    ("2Y", "2y"), ("6M", "6mo"), ("3W", "3w"), ("30D", "30d"),   # the calendar forms
    ("2y", "2y"), ("6mo", "6mo"), ("1y6mo", "1y6mo"), ("4h", "4h"), ("30m", "30m"),
    ("90s", "90s"), ("1q", "1q"), (" 5d ", "5d"), (250, 250),
])
def test_parse_length(text: object, expected: object) -> None:
    assert parse_length(text, "length") == expected


@pytest.mark.parametrize("bad", ["2X", "0d", "m", "6 months", "", "-3d", 0, 2.5, True, None])
def test_parse_length_refuses(bad: object) -> None:
    with pytest.raises(WindowError, match=r"length: "):
        parse_length(bad, "length")


def test_upper_case_m_is_months_and_lower_case_m_minutes(hourly: Panel) -> None:
    """"6M" keeps its old meaning (months); "6m" is polars' six minutes."""
    assert advance(hourly, 0, parse_length("1M", "x")) == advance(hourly, 0, "1mo")
    assert advance(hourly, 0, parse_length("60m", "x")) == 1  # the next hourly bar
    assert advance(hourly, 0, "1mo") > 400


def test_purge_may_be_zero_or_a_duration() -> None:
    assert parse_length(0, "purge", minimum=0) == 0
    assert parse_length("1d", "purge", minimum=0) == "1d"
    with pytest.raises(WindowError, match="at least 1"):
        parse_length(0, "test")


# ------------------------------------------------------------- windows, intraday
def test_monthly_windows_on_hourly_data(hourly: Panel) -> None:
    wins = windows_from_spec(hourly, {"length": "1mo", "step": "1mo"})
    assert len(wins) == 9  # 2017-04-19 .. 2018-02-07: nine whole months from the first bar
    ts = hourly.timestamps
    for w in wins:
        assert w.end_bar == (wins[w.index + 1].start_bar if w.index + 1 < len(wins)
                             else w.end_bar)
        span = (ts[w.end_bar] - ts[w.start_bar]) / np.timedelta64(1, "D")
        assert 28 <= span <= 31 + 3  # a month, give or take a weekend
    assert wins[1].label() == "2017-05-19 09:00 .. 2017-06-19 08:00"


def test_four_hour_windows_on_minute_data() -> None:
    p = minute_panel(days=5)
    wins = windows_from_spec(p, {"length": "4h", "step": "1d"})
    assert len(wins) == 5
    assert all(w.bars == 240 for w in wins)  # 09:30 .. 13:29, every day
    assert [str(w.start)[11:16] for w in wins] == ["09:30"] * 5


def test_walk_forward_in_months_and_days_on_hourly_data(hourly: Panel) -> None:
    wf = WalkForwardConfig.from_dict({"train": "3mo", "test": "1mo", "purge": "1d"})
    folds = make_folds(hourly, wf.schedule, wf.test, wf.purge)
    assert len(folds) >= 5
    ts = hourly.timestamps
    for f in folds:
        gap = (ts[f.test.start_bar] - ts[f.train.end_bar - 1]) / np.timedelta64(1, "h")
        assert 24 <= gap <= 24 + 72  # the purge: one day (more over a weekend)
    assert all(a.test.end_bar == b.test.start_bar for a, b in itertools.pairwise(folds))


def test_a_sweep_spec_with_durations(tmp_path: object) -> None:
    spec = SweepSpec(name="fx", strategy="ma_cross", data="sample:eurusd",
                     grid={"fast": [10], "slow": [50]},
                     walk_forward={"train": "2mo", "test": "2w", "purge": "12h"})
    r = spec.resolve()
    assert r.folds is not None and len(r.folds) >= 10
    assert [w.bounds for w in r.windows] == [f.train.bounds for f in r.folds]
    with pytest.raises(SpecError, match=r"\[walk_forward\] test: expected bars"):
        SweepSpec(name="fx", strategy="ma_cross", data="sample:eurusd",
                  walk_forward={"train": "2mo", "test": "2 weeks"}).resolve()


# ----------------------------------------------------------------- annualisation
def test_intraday_annualisation_is_the_datas_bars_per_year(hourly: Panel) -> None:
    """No setting is needed for intraday bars: the rate is what the data shows. Hourly FX
    trades 24 hours, 5 days a week (~6,240 bars a year); minute bars of a 6.5-hour
    session ~98,000."""
    t = hourly.timestamps
    years = (t[-1] - t[0]) / np.timedelta64(1, "D") / 365.25
    assert bars_per_year(t) == pytest.approx((len(t) - 1) / years)
    assert 5_800 < bars_per_year(t) < 6_500
    m = minute_panel(days=60)
    assert 90_000 < bars_per_year(m.timestamps) < 110_000
    # Every window of a sweep is annualised at that rate, whatever its own span.
    r = SweepSpec(name="fx", strategy="ma_cross", data="sample:eurusd",
                  grid={"fast": [10], "slow": [50]},
                  windows={"length": "1w", "step": "1mo"}).resolve()
    assert {w.bars_per_year for w in r.windows} == {bars_per_year(t)}


def test_the_same_returns_get_the_same_sharpe_in_any_window() -> None:
    """One rate for the data: two windows holding the same bar returns report the same
    Sharpe although one spans a holiday gap (a per-window estimate would not)."""
    rng = np.random.default_rng(1)
    r = rng.normal(5e-4, 0.01, 100)
    close = 100 * np.cumprod(1 + np.concatenate([r, r]))[:, None]
    days = np.arange(200).astype("timedelta64[D]")
    days[100:] += np.timedelta64(20, "D")  # a 20-day gap before the second copy
    p = Panel.from_arrays(np.datetime64("2020-01-01") + days, ["X"], close=close)
    w = np.full(p.shape, np.nan)
    w[0] = w[100] = 1.0
    w[99] = 0.0
    cfg = EngineConfig(fill="close")
    a = run_backtest(p, w, cfg, window=(p.timestamps[0], p.timestamps[99]))
    b = run_backtest(p, w, cfg, window=(p.timestamps[100], p.timestamps[199]))
    rate = bars_per_year(p.timestamps)
    for res in (a, b):
        ret = res.equity / np.concatenate([[cfg.init_cash], res.equity[:-1]]) - 1
        assert res.metrics["sharpe"] == pytest.approx(
            ret.mean() / ret.std(ddof=1) * math.sqrt(rate), rel=1e-9)
    assert a.metrics["sharpe"] == pytest.approx(b.metrics["sharpe"], rel=1e-9)


def test_schedule_validation() -> None:
    with pytest.raises(WindowError, match="anchored"):
        Schedule.parse(10, 10, "yes", ("length", "step"))
    p = minute_panel(days=2)
    with pytest.raises(WindowError, match="does not fit"):
        windows_from_spec(p, {"length": "1w"})
