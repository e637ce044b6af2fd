"""A slow, obvious, bar-by-bar pure-Python implementation of docs/engine.md (the oracle).

Written from the spec only (never from the Numba kernels), so that the parity tests compare two
independent readings of docs/engine.md. Everything is plain Python floats and loops; numpy is
only used to hold the outputs and for the metrics' final arithmetic.

Ambiguities in docs/engine.md and the reading this file takes. Where my first (literal)
reading differed from the engine's and the engine's is a defensible reading, the default
follows the engine and the literal reading stays available as a switch in `Interp`, so the
lead can settle it by flipping one flag (A4, A5, A9, A12, A15 were settled in the engine's
reading, now written into docs/engine.md):

A1  min_trade_value in "next_open" mode: the price in `abs(qty) * price` is the decision
    bar's close (the order is fully decided at the close), not the fill bar's open.
    [Interp.mtv_price_at_fill]
A2  "Orders whose closes a position fully (target 0)": read as target *quantity* == 0 while
    pos != 0 (with whole shares a tiny weight that truncates to 0 shares is a full close and
    is exempt from min_trade_value / min_weight_change). [Interp.exempt_on_zero_weight]
A3  min_weight_change compares the leverage-scaled target weight with the current weight
    `pos * close / E` (E and close of the decision bar).
A4  SETTLED. Leverage scaling, which weights count in `sum(|w| over finite w)`. Literal: every
    finite weight in the row. Default (the engine's): a finite weight that cannot act this
    bar counts as NaN (no close, delisting bar in next_open mode, stop-blocked and equal to
    the block weight), so a held asset with such a weight goes into held_nan; in "close"
    mode an asset on its delisting bar counts as weight 0 (its target is forced to 0).
    [Interp.gross_only_tradable, Interp.gross_skips_blocked]
A5  SETTLED. "The weight in force when the stop fired": default (the engine's) = the asset's
    last finite raw weight that was actually considered at a decision (the asset had a close,
    was not on its delisting bar, not the last bar in next_open mode). Literal alternative:
    the last finite value in the weights column before the stop bar, also one given on a
    halted bar. Rows are compared with it raw (unscaled) by exact equality.
    [Interp.block_weight_any_row]
A6  ATR with halts: true ranges are computed over the asset's own valid bars (halts skipped,
    "prev close" = previous valid close, "first bar" = the asset's first valid bar), and
    ATR(n) is the mean of the last n of them. [Interp.atr_nan_on_halt]
A7  "The ATR level is fixed when the trade opens": the level itself is fixed at the first
    entry fill, `first fill price -/+ k * ATR`; later increases (which move the average entry
    used by stop_loss/take_profit) do not move it. [Interp.atr_level_from_avg_entry]
A8  A stop or delisting exit whose sale is refused (negative proceeds: fixed fee > sale) does
    not happen: the position and trade stay open, no stop block is set; the stop is checked
    again on the next bar.
A9  SETTLED. "Non-positive equity at a decision: no new orders". Default (the engine's): only
    full closes (weight exactly 0) are executed from that row; every other weight is ignored
    (w * E / close would even flip the sign of the target). Literal alternative: no orders at
    all from the row. The forced delisting close-out of "close" mode happens in both.
    [Interp.closes_at_nonpositive_equity]
A10 Trades: quantity is positive (direction says long/short); entry/exit prices are the
    quantity-weighted average *fill* prices (slippage included); "return" = pnl / sum(q * fill
    price) of the increasing fills (fees not in the denominator). An open trade's exit_price is
    not specified: here the average of its reducing fills so far (NaN if none); the engine
    reports the last mark. Not compared.
A11 Cash account: a buy is "beyond tolerance" when cost > cash * (1 + 1e-9); a buy that leaves
    cash within 1e-9 * (cash before) of zero, on either side, sets cash to exactly 0 (the
    engine also snaps positive dust; margin accounts never snap). A cash-reduced quantity is
    not re-checked against min_trade_value.
A12 Metrics: skew/kurtosis are NaN when the population variance of r is 0; profit_factor is
    inf when there is no losing closed trade but some winner, NaN when all closed pnl are 0
    (0 / 0; the spec's "inf if no loss" would say inf); max drawdown duration counts bars with
    equity strictly below the running peak (peak starts at init_cash); periods per year uses
    the span in fractional days (ns / 86400e9).
A13 "close" mode sort key `order * close`: with fractional shares computed as
    `w * E - pos * close` (the same number, but exact for equal weights, so an equal-weight
    portfolio's buys really tie and keep asset order, as the engine does); with whole shares
    it is the truncated order times the close, as written.
A15 SETTLED. Metrics at non-positive equity (the spec is silent; its formulas give negative
    nonsense): turnover is NaN when mean(equity) <= 0, and a bar with equity <= 0 counts as
    exposure 0 in the mean. Both are the engine's guards.
A16 Benchmark and risk-free rate (docs/engine.md "Benchmark and risk-free rate"): with a
    constant rate, the standard deviation of r - rf is computed as that of r (equal in
    exact arithmetic; computed from r, a flat run's Sharpe stays undefined instead of a
    ratio of rounding noise, as in the engine). A bar before a series' first value is NaN
    and makes the metrics that use it NaN.
A14 Knife edges (see EDGE): where the spec's discrete decision sits exactly on its boundary in
    exact arithmetic (e.g. a rebalance sale worth exactly the fixed fee: proceeds 0, or two
    next_open buys whose keys `qty * open` tie, one of them cut by cash), either outcome is
    correct; the reference records the bar and parity tests stop comparing there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.config import EngineConfig
from engine.panel import Panel

__all__ = ["CASH_TOL", "Interp", "RefResult", "compute_metrics", "reference_backtest"]

CASH_TOL = 1e-9  # relative tolerance on cash in a cash account (spec: "1e-9 relative")
# A discrete decision (fill or not, which whole number, which order first, stop or not) taken
# this close (relative) to its boundary is a knife edge: two correct implementations that round
# differently in the last bits may legitimately decide differently. The first such bar is
# recorded in RefResult.knife_edge_bar so parity tests compare only the bars before it.
EDGE = 1e-11  # float noise here is ~1e-15 relative; 1e-9 would touch the cash tolerance
STOP_REASONS = ("stop_loss", "atr_stop", "trailing_stop", "take_profit")


@dataclass(frozen=True)
class Interp:
    """Switches for the ambiguous points listed at the top of the file (defaults = the readings
    the parity tests currently hold the engine to; "PENDING" ones await a decision)."""

    mtv_price_at_fill: bool = False          # A1
    exempt_on_zero_weight: bool = False      # A2
    gross_only_tradable: bool = True         # A4 (False = the literal reading)
    gross_skips_blocked: bool = True         # A4 (only with gross_only_tradable)
    block_weight_any_row: bool = False       # A5 (True = the literal reading)
    atr_nan_on_halt: bool = False            # A6
    atr_level_from_avg_entry: bool = False   # A7
    closes_at_nonpositive_equity: bool = True  # A9 (False = the literal reading)


@dataclass
class RefResult:
    equity: np.ndarray
    cash: np.ndarray
    exposure: np.ndarray
    fees: np.ndarray
    turnover: np.ndarray
    positions: np.ndarray
    trades: list[dict[str, Any]]
    metrics: dict[str, float]
    knife_edge_bar: int | None = None
    knife_edges: list[str] = field(default_factory=list)


@dataclass
class _Trade:
    """One open round trip of one asset, accumulated fill by fill."""

    asset: int
    direction: int               # +1 long, -1 short
    entry_bar: int
    first_price: float           # fill price of the opening fill (A7)
    entry_qty: float = 0.0       # sum of increasing fills
    entry_notional: float = 0.0  # sum of q * fill price of increasing fills
    exit_qty: float = 0.0
    exit_notional: float = 0.0
    last_exit_price: float = math.nan
    cash_flow: float = 0.0       # net cash of the trade, fees included
    fees: float = 0.0
    extreme: float = math.nan    # trailing reference: peak (long) / trough (short)
    atr_level: float = math.nan  # fixed ATR stop level (A7), NaN = no ATR stop
    atr_value: float = math.nan  # ATR of the decision bar (for the A7 alternative)

    @property
    def entry_price(self) -> float:
        # exact for a single fill (q * p / q may be 1 ulp off p, which breaks exact ties
        # between stop levels, e.g. stop_loss == trailing_stop right after the entry)
        if self.entry_notional == self.entry_qty * self.first_price:
            return self.first_price
        return self.entry_notional / self.entry_qty


@dataclass
class _Order:
    asset: int
    qty: float           # signed
    reason: str
    value: float         # qty * decision close: the sort key in "close" mode


@dataclass
class _State:
    """The whole simulation state: the one place that holds cash and positions."""

    panel: Panel
    weights: np.ndarray
    cfg: EngineConfig
    interp: Interp
    atr: np.ndarray
    last_valid: list[int]
    cash: float
    pos: list[float]
    mark: list[float]
    open_trades: list[_Trade | None]
    closed: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[bool] = field(default_factory=list)
    block_w: list[float] = field(default_factory=list)
    considered_w: list[float] = field(default_factory=list)  # for A5 alternative
    bar_fees: float = 0.0
    bar_turnover: float = 0.0
    pending: list[_Order] = field(default_factory=list)
    edge_bar: int | None = None
    edges: list[str] = field(default_factory=list)
    cash_cut: bool = False  # the last buy _execute saw was cut or refused for cash

    @property
    def n_assets(self) -> int:
        return len(self.pos)

    @property
    def cash_account(self) -> bool:
        return (not self.cfg.allow_short) and self.cfg.max_leverage <= 1.0


# ---------------------------------------------------------------------------- helpers
def _finite(x: float) -> bool:
    return not math.isnan(x) and not math.isinf(x)


def _edge(st: _State, t: int, a: float, b: float, scale: float, what: str) -> None:
    """Record a knife edge when a decision compares a with b and they are within EDGE."""
    if abs(a - b) <= EDGE * abs(scale):
        _knife_edge(st, t, f"{what} ({a!r} vs {b!r})")


def _knife_edge(st: _State, t: int, what: str) -> None:
    """Record a knife edge at bar t."""
    if st.edge_bar is None:
        st.edge_bar = t
    st.edges.append(f"bar {t}: {what}")


def _edge_sort(st: _State, t: int, keys: list[float]) -> None:
    """Two nearly (not exactly) equal sort keys: the execution order is a knife edge when
    the order matters, i.e. in a cash account where a later buy may be cut by cash."""
    if not st.cash_account:
        return
    for i in range(1, len(keys)):
        if keys[i] != keys[i - 1]:
            _edge(st, t, keys[i], keys[i - 1], max(abs(keys[i]), abs(keys[i - 1])),
                  "execution order")


def _edge_int(st: _State, t: int, x: float, what: str) -> None:
    """Whole shares: truncating x is a knife edge when x is within EDGE of an integer."""
    _edge(st, t, x, float(round(x)), max(1.0, abs(x)), what)


def _equity(st: _State) -> float:
    e = st.cash
    for n in range(st.n_assets):
        if st.pos[n] != 0.0:
            e += st.pos[n] * st.mark[n]
    return e


def _gross_exposure(st: _State) -> float:
    g = 0.0
    for n in range(st.n_assets):
        if st.pos[n] != 0.0:
            g += abs(st.pos[n] * st.mark[n])
    return g


def _atr_matrix(panel: Panel, window: int, nan_on_halt: bool) -> np.ndarray:
    """ATR(window) per bar and asset: simple mean of the last `window` true ranges (A6)."""
    T, N = panel.shape
    out = np.full((T, N), np.nan)
    for n in range(N):
        trs: list[float] = []
        prev_close = math.nan
        prev_row = -2
        for t in range(T):
            c = float(panel.close[t, n])
            if not _finite(c):
                continue
            h, lo = float(panel.high[t, n]), float(panel.low[t, n])
            if math.isnan(prev_close):
                tr = h - lo
            else:
                tr = max(h - lo, abs(h - prev_close), abs(lo - prev_close))
            if nan_on_halt and prev_row >= 0 and prev_row != t - 1:
                trs = []  # alternative reading: a halt breaks the window
            trs.append(tr)
            prev_close, prev_row = c, t
            if len(trs) >= window:
                out[t, n] = sum(trs[-window:]) / window
    return out


def _last_valid_bars(panel: Panel) -> list[int]:
    out = []
    for n in range(panel.n_assets):
        last = -1
        for t in range(panel.n_bars):
            if _finite(float(panel.close[t, n])):
                last = t
        out.append(last)
    return out


# ---------------------------------------------------------------------------- trades
def _close_trade_record(st: _State, tr: _Trade, exit_bar: int | None, reason: str,
                        mark: float, open_qty: float) -> dict[str, Any]:
    exit_price = math.nan
    if tr.exit_qty > 0:
        exit_price = tr.exit_notional / tr.exit_qty
        if tr.last_exit_price * tr.exit_qty == tr.exit_notional:
            exit_price = tr.last_exit_price  # a single exit fill: exact
    pnl = tr.cash_flow + (open_qty * mark if open_qty != 0.0 else 0.0)
    return {
        "asset": st.panel.assets[tr.asset],
        "direction": "long" if tr.direction > 0 else "short",
        "entry_bar": tr.entry_bar,
        "exit_bar": exit_bar,
        "entry_price": tr.entry_price,
        "exit_price": exit_price,
        "quantity": tr.entry_qty,
        "pnl": pnl,
        "return": pnl / tr.entry_notional,
        "fees": tr.fees,
        "exit_reason": reason,
    }


def _open_trade(st: _State, t: int, n: int, direction: int, q: float, price: float,
                fee: float, decision_bar: int) -> None:
    tr = _Trade(asset=n, direction=direction, entry_bar=t, first_price=price)
    tr.entry_qty = q
    tr.entry_notional = q * price
    tr.cash_flow = -direction * q * price - fee
    tr.fees = fee
    tr.extreme = price
    atr = float(st.atr[decision_bar, n]) if decision_bar >= 0 else math.nan
    if st.cfg.atr_stop is not None and _finite(atr):
        tr.atr_value = atr
        tr.atr_level = price - direction * st.cfg.atr_stop * atr
    st.open_trades[n] = tr


def _book_fill(st: _State, t: int, n: int, dq: float, price: float, fee: float,
               reason: str, decision_bar: int) -> None:
    """Record a fill of signed quantity dq at fill price `price` with total fee `fee` in the
    trade list. Called before st.pos[n] is updated."""
    pos = st.pos[n]
    q = abs(dq)
    side = 1 if dq > 0 else -1
    tr = st.open_trades[n]
    if pos == 0.0 or tr is None:
        _open_trade(st, t, n, side, q, price, fee, decision_bar)
        return
    if side == tr.direction:  # increase
        tr.entry_qty += q
        tr.entry_notional += q * price
        tr.cash_flow += -side * q * price - fee
        tr.fees += fee
        return
    # reducing fill, possibly a reversal
    held = abs(pos)
    if q <= held:
        tr.exit_qty += q
        tr.exit_notional += q * price
        tr.last_exit_price = price
        tr.cash_flow += -side * q * price - fee
        tr.fees += fee
        if pos + dq == 0.0:
            st.closed.append(_close_trade_record(st, tr, t, reason, math.nan, 0.0))
            st.open_trades[n] = None
        return
    # reversal: close `held` with its share of the fee, open the rest (fee split by quantity)
    fee_close = fee * held / q
    fee_open = fee - fee_close
    tr.exit_qty += held
    tr.exit_notional += held * price
    tr.last_exit_price = price
    tr.cash_flow += -side * held * price - fee_close
    tr.fees += fee_close
    st.closed.append(_close_trade_record(st, tr, t, reason, math.nan, 0.0))
    st.open_trades[n] = None
    _open_trade(st, t, n, side, q - held, price, fee_open, decision_bar)


# ---------------------------------------------------------------------------- one order
def _execute(st: _State, t: int, n: int, dq: float, p: float, reason: str,
             decision_bar: int) -> bool:
    """Execute a signed order of dq at raw price p (spec "Executing one order").
    Returns True if something was filled."""
    cfg = st.cfg
    s, c, f = cfg.slippage, cfg.commission, cfg.fixed_fee
    if dq == 0.0:
        return False  # an order of size 0 is not an order
    if dq > 0:
        fp = p * (1.0 + s)
        q = dq
        cost = q * fp * (1.0 + c) + f
        if st.cash_account:
            _edge(st, t, cost, st.cash * (1.0 + CASH_TOL), max(cost, st.cash), "cash limit")
        if st.cash_account and cost > st.cash * (1.0 + CASH_TOL):
            st.cash_cut = True
            if f > 0.0:  # with f = 0 both sides are exact (cash is snapped to 0)
                _edge(st, t, st.cash, f, max(f, st.cash), "cash vs fixed fee")
            if st.cash <= f:
                return False
            q = (st.cash - f) / (1.0 + c) / fp
            if not cfg.fractional:
                _edge_int(st, t, q, "whole shares of a cash-limited buy")
                q = float(math.trunc(q))
            if q <= 0.0:
                return False
            cost = q * fp * (1.0 + c) + f
        commission = q * fp * c
        _book_fill(st, t, n, q, fp, commission + f, reason, decision_bar)
        before = st.cash
        st.cash -= cost
        if st.cash_account:
            _edge(st, t, st.cash, CASH_TOL * before, before, "cash snap to zero")
        if st.cash_account and st.cash <= CASH_TOL * before:
            st.cash = 0.0  # a result within the tolerance of zero, either side (A11)
        st.pos[n] += q
    else:
        fp = p * (1.0 - s)
        q = -dq
        proceeds = q * fp * (1.0 - c) - f
        if f > 0.0:  # q may be a small difference of big numbers: scale by the position
            _edge(st, t, proceeds, 0.0, max(q, abs(st.pos[n])) * fp, "sale proceeds vs 0")
        if proceeds < 0.0:
            return False
        commission = q * fp * c
        _book_fill(st, t, n, -q, fp, commission + f, reason, decision_bar)
        st.cash += proceeds
        st.pos[n] -= q
    st.bar_fees += commission + f
    st.bar_turnover += abs(q * fp)
    return True


# ---------------------------------------------------------------------------- phases
def _fill_pending(st: _State, t: int) -> None:
    """next_open step 1: fill yesterday's orders at this open, reductions before increases."""
    live: list[tuple[float, int, _Order]] = []
    for k, o in enumerate(st.pending):
        op = float(st.panel.open[t, o.asset])
        if not _finite(op):
            continue  # no open this bar: dropped
        live.append((o.qty * op, k, o))
    live.sort(key=lambda x: (x[0], x[1]))  # stable: ties keep asset order
    keys = [k for k, _, _ in live]
    _edge_sort(st, t, keys)
    for key, _, o in live:
        st.cash_cut = False
        _execute(st, t, o.asset, o.qty, float(st.panel.open[t, o.asset]), o.reason, t - 1)
        if st.cash_cut and keys.count(key) > 1:
            # The keys are rounded products: buys tied exactly here may be an ulp apart in
            # another correct rounding and run in the other order (equal weights at an open
            # equal to the last close: each key is w * E in exact arithmetic). Which of them
            # cash cuts is then a knife edge. (Close mode's keys tie exactly in both, A13.)
            _knife_edge(st, t, f"tied buys, one cut by cash ({key!r})")
    st.pending = []


def _weight_in_force(st: _State, t: int, n: int) -> float:
    if not st.interp.block_weight_any_row:
        return st.considered_w[n]
    for s in range(t - 1, -1, -1):
        w = float(st.weights[s, n])
        if not math.isnan(w):
            return w
    return math.nan


def _check_stops(st: _State, t: int) -> None:
    """Stops for positions whose trade was opened before this bar, in asset order."""
    cfg = st.cfg
    if (cfg.stop_loss is None and cfg.take_profit is None and cfg.trailing_stop is None
            and cfg.atr_stop is None):
        return
    for n in range(st.n_assets):
        tr = st.open_trades[n]
        if tr is None or st.pos[n] == 0.0 or tr.entry_bar >= t:
            continue
        if not _finite(float(st.panel.close[t, n])):
            continue  # no bar
        o = float(st.panel.open[t, n])
        h = float(st.panel.high[t, n])
        lo = float(st.panel.low[t, n])
        entry = tr.entry_price
        d = tr.direction
        atr_level = tr.atr_level
        if st.interp.atr_level_from_avg_entry and _finite(tr.atr_value):
            atr_level = entry - d * cfg.atr_stop * tr.atr_value  # type: ignore[operator]
        # loss-side candidates in tie-break order
        cands: list[tuple[float, str]] = []
        if cfg.stop_loss is not None:
            cands.append((entry * (1.0 - d * cfg.stop_loss), "stop_loss"))
        if cfg.atr_stop is not None and _finite(atr_level):
            cands.append((atr_level, "atr_stop"))
        if cfg.trailing_stop is not None:
            cands.append((tr.extreme * (1.0 - d * cfg.trailing_stop), "trailing_stop"))
        fire_price = math.nan
        reason = ""
        if cands:
            level, reason = cands[0]
            for lv, rs in cands[1:]:
                # long: the highest level; short: the lowest; ties keep the earlier stop
                if lv != level:  # an exact tie is the spec's tie-break, not a knife edge
                    _edge(st, t, lv, level, level, f"stop levels {rs} vs {reason}")
                if (d > 0 and lv > level) or (d < 0 and lv < level):
                    level, reason = lv, rs
            _edge(st, t, o, level, level, f"open vs {reason} level")
            _edge(st, t, lo if d > 0 else h, level, level, f"range vs {reason} level")
            if d > 0:
                if o <= level:
                    fire_price = o
                elif lo <= level:
                    fire_price = level
            else:
                if o >= level:
                    fire_price = o
                elif h >= level:
                    fire_price = level
        if math.isnan(fire_price) and cfg.take_profit is not None:
            tp_level = entry * (1.0 + d * cfg.take_profit)
            reason = "take_profit"
            _edge(st, t, o, tp_level, tp_level, "open vs take_profit level")
            _edge(st, t, h if d > 0 else lo, tp_level, tp_level, "range vs take_profit level")
            if d > 0:
                if o >= tp_level:
                    fire_price = o
                elif h >= tp_level:
                    fire_price = tp_level
            else:
                if o <= tp_level:
                    fire_price = o
                elif lo <= tp_level:
                    fire_price = tp_level
        if math.isnan(fire_price):
            continue
        w_force = _weight_in_force(st, t, n)
        if _execute(st, t, n, -st.pos[n], fire_price, reason, -1):
            st.blocked[n] = True
            st.block_w[n] = w_force


def _delist_next_open(st: _State, t: int) -> None:
    """next_open step 3: close positions in assets whose last valid bar is this one."""
    if t == st.panel.n_bars - 1:
        return
    for n in range(st.n_assets):
        if st.last_valid[n] == t and st.pos[n] != 0.0:
            _execute(st, t, n, -st.pos[n], float(st.panel.close[t, n]), "delisted", -1)


def _mark(st: _State, t: int) -> None:
    for n in range(st.n_assets):
        c = float(st.panel.close[t, n])
        if _finite(c):
            st.mark[n] = c


def _scaled_row(st: _State, t: int, E: float, tradable: list[bool],
                forced_zero: list[bool]) -> list[float]:
    """Weights row t scaled down to max_leverage (spec "Weights rows, leverage and shorting")."""
    row = [float(x) for x in st.weights[t]]
    sum_w = 0.0
    held_nan = 0.0
    for n in range(st.n_assets):
        w = row[n]
        if st.interp.gross_only_tradable:
            if forced_zero[n]:
                w = 0.0  # close mode, delisting bar: the target is 0 whatever the weight
            elif not math.isnan(w) and (not tradable[n] or (
                    st.interp.gross_skips_blocked and st.blocked[n] and w == st.block_w[n])):
                w = math.nan  # a weight that cannot act counts as no instruction
        if not math.isnan(w):
            sum_w += abs(w)
        elif st.pos[n] != 0.0:
            held_nan += abs(st.pos[n] * st.mark[n]) / E
    gross = sum_w + held_nan
    if gross > st.cfg.max_leverage and sum_w > 0.0:
        k = max(0.0, st.cfg.max_leverage - held_nan) / sum_w
        row = [w * k if not math.isnan(w) else w for w in row]
    return row


def _size_orders(st: _State, t: int, E: float, row: list[float],
                 tradable: list[bool], raw: list[float],
                 only_closes: bool = False) -> list[_Order]:
    """order = target qty - pos for each tradable asset with a finite (scaled) weight,
    minus the orders skipped by blocks and the minimum filters."""
    cfg = st.cfg
    orders: list[_Order] = []
    for n in range(st.n_assets):
        if not tradable[n]:
            continue
        w_raw = raw[n]
        if math.isnan(w_raw) or (only_closes and w_raw != 0.0):
            continue
        st.considered_w[n] = w_raw
        if st.blocked[n]:
            if w_raw == st.block_w[n]:
                continue
            st.blocked[n] = False  # a different finite weight lifts the block
        w = row[n]
        close = float(st.panel.close[t, n])
        target = w * E / close
        if not cfg.fractional and w != 0.0:  # w = 0 gives exactly 0: no noise
            _edge_int(st, t, target, f"whole-share target of asset {n}")
            target = float(math.trunc(target))
        dq = target - st.pos[n]
        if cfg.fractional and cfg.fixed_fee > 0.0 and st.pos[n] != 0.0 and target != 0.0:
            # dq is 0 in exact arithmetic (e.g. w = 1 repeated, fully invested): filling the
            # dust or not only matters when a fill costs a fixed fee
            _edge(st, t, dq, 0.0, st.pos[n], f"dust order of asset {n}")
        if dq == 0.0:
            continue
        full_close = (w == 0.0) if st.interp.exempt_on_zero_weight else (target == 0.0)
        full_close = full_close and st.pos[n] != 0.0
        if not full_close:
            if cfg.min_weight_change > 0.0:
                cur_w = st.pos[n] * close / E
                _edge(st, t, abs(w - cur_w), cfg.min_weight_change, 1.0, "min_weight_change")
                if abs(w - cur_w) < cfg.min_weight_change:
                    continue
            if cfg.min_trade_value > 0.0:
                price = close
                if st.interp.mtv_price_at_fill and cfg.fill == "next_open":
                    nxt = float(st.panel.open[t + 1, n])
                    price = nxt if _finite(nxt) else close
                _edge(st, t, abs(dq) * price, cfg.min_trade_value, cfg.min_trade_value,
                      "min_trade_value")
                if abs(dq) * price < cfg.min_trade_value:
                    continue
        # order value w*E - pos*close: algebraically order*close, but exact for equal weights,
        # so ties between equal target values really keep asset order (see A13)
        value = (w * E - st.pos[n] * close) if cfg.fractional else dq * close
        orders.append(_Order(asset=n, qty=dq, reason="signal", value=value))
    return orders


def _decide_next_open(st: _State, t: int) -> None:
    """next_open step 5: orders from weights[t], to be filled at t+1's open."""
    T = st.panel.n_bars
    if t == T - 1:
        return
    tradable = [
        _finite(float(st.panel.close[t, n])) and st.last_valid[n] != t
        for n in range(st.n_assets)
    ]
    E = _equity(st)
    _edge(st, t, E, 0.0, st.cfg.init_cash, "equity vs 0")
    if E <= 0.0 and not st.interp.closes_at_nonpositive_equity:
        return
    raw = [float(x) for x in st.weights[t]]
    row = _scaled_row(st, t, E, tradable, [False] * st.n_assets) if E > 0.0 else raw
    st.pending = _size_orders(st, t, E, row, tradable, raw, only_closes=E <= 0.0)


def _decide_fill_close(st: _State, t: int) -> None:
    """close step 2: mark, size from E before any fill, force delisting exits, fill at close."""
    T = st.panel.n_bars
    _mark(st, t)
    E = _equity(st)
    has_close = [_finite(float(st.panel.close[t, n])) for n in range(st.n_assets)]
    delisting = [st.last_valid[n] == t and t != T - 1 for n in range(st.n_assets)]
    tradable = [has_close[n] and not delisting[n] for n in range(st.n_assets)]
    orders: list[_Order] = []
    _edge(st, t, E, 0.0, st.cfg.init_cash, "equity vs 0")
    raw = [float(x) for x in st.weights[t]]
    if E > 0.0:
        row = _scaled_row(st, t, E, tradable, delisting)
        orders = _size_orders(st, t, E, row, tradable, raw)
    elif st.interp.closes_at_nonpositive_equity:
        orders = _size_orders(st, t, E, raw, tradable, raw, only_closes=True)
    for n in range(st.n_assets):
        if delisting[n] and st.pos[n] != 0.0:
            c = float(st.panel.close[t, n])
            orders.append(_Order(asset=n, qty=-st.pos[n], reason="delisted", value=-st.pos[n] * c))
    keyed = [(o.value, o.asset, o) for o in orders]
    keyed.sort(key=lambda x: (x[0], x[1]))  # stable sort, ties keep asset order
    _edge_sort(st, t, [k for k, _, _ in keyed])
    for _, _, o in keyed:
        _execute(st, t, o.asset, o.qty, float(st.panel.close[t, o.asset]), o.reason, t)


def _update_trailing(st: _State, t: int) -> None:
    """End of bar: move each open trade's peak (long) / trough (short) with this bar's range."""
    if st.cfg.trailing_stop is None:
        return
    for n in range(st.n_assets):
        tr = st.open_trades[n]
        if tr is None or not _finite(float(st.panel.close[t, n])):
            continue
        if st.cfg.fill == "close" and tr.entry_bar >= t:
            continue  # close mode: from the bar after the entry
        if tr.direction > 0:
            tr.extreme = max(tr.extreme, float(st.panel.high[t, n]))
        else:
            tr.extreme = min(tr.extreme, float(st.panel.low[t, n]))


# ---------------------------------------------------------------------------- driver
def reference_backtest(panel: Panel, weights: np.ndarray, cfg: EngineConfig,
                       interp: Interp | None = None, *,
                       benchmark_prices: np.ndarray | None = None,
                       risk_free: np.ndarray | None = None) -> RefResult:
    """Run the spec bar by bar. Slow on purpose; for small panels in tests only.
    ``benchmark_prices`` and ``risk_free`` (annual rates): one value per bar (NaN = none)."""
    interp = interp or Interp()
    weights = np.asarray(weights, dtype=np.float64)
    T, N = panel.shape
    if weights.shape != (T, N):
        raise ValueError(f"weights shape {weights.shape} != panel shape {(T, N)}")
    if not cfg.allow_short and bool(np.any(weights < 0)):
        raise ValueError("negative weights need allow_short=True")
    st = _State(
        panel=panel, weights=weights, cfg=cfg, interp=interp,
        atr=_atr_matrix(panel, cfg.atr_window, interp.atr_nan_on_halt),
        last_valid=_last_valid_bars(panel),
        cash=float(cfg.init_cash), pos=[0.0] * N, mark=[math.nan] * N,
        open_trades=[None] * N, blocked=[False] * N, block_w=[math.nan] * N,
        considered_w=[math.nan] * N,
    )
    equity = np.zeros(T)
    cash = np.zeros(T)
    exposure = np.zeros(T)
    fees = np.zeros(T)
    turnover = np.zeros(T)
    positions = np.zeros((T, N))
    for t in range(T):
        st.bar_fees = 0.0
        st.bar_turnover = 0.0
        if cfg.fill == "next_open":
            _fill_pending(st, t)
            _check_stops(st, t)
            _delist_next_open(st, t)
            _mark(st, t)
            equity[t] = _equity(st)
            cash[t] = st.cash
            exposure[t] = _gross_exposure(st)
            _decide_next_open(st, t)
        else:
            _check_stops(st, t)
            _decide_fill_close(st, t)
            _mark(st, t)
            equity[t] = _equity(st)
            cash[t] = st.cash
            exposure[t] = _gross_exposure(st)
        _update_trailing(st, t)
        fees[t] = st.bar_fees
        turnover[t] = st.bar_turnover
        positions[t] = st.pos
    trades = list(st.closed)
    for n in range(N):
        tr = st.open_trades[n]
        if tr is not None:
            trades.append(_close_trade_record(st, tr, None, "open", st.mark[n], st.pos[n]))
    trades.sort(key=lambda d: (d["entry_bar"], panel.assets.index(d["asset"])))
    metrics = compute_metrics(equity, exposure, fees, turnover, trades, cfg, panel.timestamps,
                              benchmark_prices=benchmark_of(panel, cfg, benchmark_prices),
                              risk_free=risk_free)
    return RefResult(equity, cash, exposure, fees, turnover, positions, trades, metrics,
                     st.edge_bar, st.edges)


# ---------------------------------------------------------------------------- metrics
def periods_per_year(timestamps: np.ndarray, configured: float | None) -> float:
    if configured is not None:
        return float(configured)
    T = len(timestamps)
    if T < 2:
        return 252.0
    span_ns = int(timestamps[-1].astype("datetime64[ns]").astype(np.int64)) - int(
        timestamps[0].astype("datetime64[ns]").astype(np.int64))
    days = span_ns / 86400e9
    return (T - 1) / (days / 365.25)


def benchmark_of(panel: Panel, cfg: EngineConfig,
                 prices: np.ndarray | None) -> list[float] | None:
    """The benchmark's price on each bar: the given prices, or the closes of the asset
    ``cfg.benchmark`` (None: no benchmark)."""
    if prices is not None:
        return [float(x) for x in prices]
    if cfg.benchmark is None:
        return None
    n = list(panel.assets).index(cfg.benchmark)
    return [float(panel.close[t, n]) for t in range(panel.n_bars)]


def _carried(values: list[float]) -> list[float]:
    """Each NaN replaced by the last value before it (NaN before the first value)."""
    out = []
    last = math.nan
    for x in values:
        if not math.isnan(x):
            last = x
        out.append(last)
    return out


def compute_metrics(equity: np.ndarray, exposure: np.ndarray, fees: np.ndarray,
                    turnover: np.ndarray, trades: list[dict[str, Any]], cfg: EngineConfig,
                    timestamps: np.ndarray, *, benchmark_prices: Any = None,
                    risk_free: Any = None) -> dict[str, float]:
    """docs/engine.md "Metrics", one definition per line, plain Python. ``benchmark_prices``
    (per bar, NaN = none that bar) and ``risk_free`` (annual rates per bar) as in
    docs/engine.md "Benchmark and risk-free rate"; None = no benchmark, the constant
    ``cfg.risk_free``."""
    T = len(equity)
    init = float(cfg.init_cash)
    eq = [float(x) for x in equity]
    P = periods_per_year(timestamps, cfg.periods_per_year)
    years = T / P
    r = [eq[0] / init - 1.0] + [eq[t] / eq[t - 1] - 1.0 for t in range(1, T)]
    mean_r = sum(r) / T
    std_r = math.sqrt(sum((x - mean_r) ** 2 for x in r) / (T - 1)) if T > 1 else math.nan
    nan = math.nan
    m: dict[str, float] = {}
    m["total_return"] = eq[-1] / init - 1.0
    m["cagr"] = -1.0 if eq[-1] <= 0 else (eq[-1] / init) ** (1.0 / years) - 1.0
    m["volatility"] = std_r * math.sqrt(P)
    # the per-bar risk-free rate: the annual one compounded down to a bar
    annual = [float(cfg.risk_free)] * T if risk_free is None else _carried(
        [float(x) for x in risk_free])
    rf = [(1.0 + a) ** (1.0 / P) - 1.0 for a in annual]
    ex = [r[t] - rf[t] for t in range(T)]
    mean_ex = sum(ex) / T
    if risk_free is None:
        std_ex = std_r  # A16: r - constant has r's deviation
    else:
        std_ex = math.sqrt(sum((x - mean_ex) ** 2 for x in ex) / (T - 1)) if T > 1 else nan
    m["sharpe"] = nan if (std_ex == 0 or math.isnan(std_ex)) else \
        mean_ex / std_ex * math.sqrt(P)
    down = math.sqrt(sum(min(x, 0.0) ** 2 for x in ex) / T)
    m["sortino"] = nan if down == 0 else mean_ex / down * math.sqrt(P)
    peak = init
    mdd = 0.0
    run = 0
    longest = 0
    for x in eq:
        peak = max(peak, x)
        mdd = max(mdd, 1.0 - x / peak)
        run = run + 1 if x < peak else 0
        longest = max(longest, run)
    m["max_drawdown"] = mdd
    m["max_drawdown_duration"] = float(longest)
    m["calmar"] = nan if mdd == 0 else m["cagr"] / mdd
    closed = [tr for tr in trades if tr["exit_bar"] is not None]
    m["n_trades"] = float(len(trades))
    m["win_rate"] = nan if not closed else sum(tr["pnl"] > 0 for tr in closed) / len(closed)
    gains = sum(tr["pnl"] for tr in closed if tr["pnl"] > 0)
    losses = -sum(tr["pnl"] for tr in closed if tr["pnl"] < 0)
    if not closed:
        m["profit_factor"] = nan
    elif not any(tr["pnl"] < 0 for tr in closed):
        m["profit_factor"] = math.inf if gains > 0 else nan  # A12: 0 / 0 is undefined
    else:
        m["profit_factor"] = gains / losses
    mean_eq = sum(eq) / T
    # A15: the spec's ratios are meaningless at non-positive equity; the engine's guards
    m["turnover"] = nan if mean_eq <= 0 else float(sum(turnover)) / 2.0 / mean_eq / years
    m["exposure"] = sum(float(exposure[t]) / eq[t] if eq[t] > 0 else 0.0 for t in range(T)) / T
    m["fees"] = float(sum(fees))
    m["final_equity"] = eq[-1]
    m2 = sum((x - mean_r) ** 2 for x in r) / T
    m3 = sum((x - mean_r) ** 3 for x in r) / T
    m4 = sum((x - mean_r) ** 4 for x in r) / T
    m["skew"] = nan if m2 == 0 else m3 / m2 ** 1.5
    m["kurtosis"] = nan if m2 == 0 else m4 / m2 ** 2
    m["n_bars"] = float(T)
    for k in ("alpha", "beta", "information_ratio", "tracking_error", "excess_return"):
        m[k] = nan
    if benchmark_prices is not None:
        price = _carried([float(x) for x in benchmark_prices])
        # bought at the first close: no return on the first bar
        b = [0.0] + [price[t] / price[t - 1] - 1.0 for t in range(1, T)]
        bex = [b[t] - rf[t] for t in range(T)]
        act = [r[t] - b[t] for t in range(T)]
        mean_b = sum(bex) / T
        var_b = sum((x - mean_b) ** 2 for x in bex) / T
        cov = sum((ex[t] - mean_ex) * (bex[t] - mean_b) for t in range(T)) / T
        beta = cov / var_b if var_b >= 1e-30 else nan  # NaN var_b: False, NaN
        m["beta"] = beta
        m["alpha"] = (1.0 + sum(ex[t] - beta * bex[t] for t in range(T)) / T) ** P - 1.0 \
            if T > 1 else nan
        mean_a = sum(act) / T
        sd_a = math.sqrt(sum((x - mean_a) ** 2 for x in act) / (T - 1)) if T > 1 else nan
        m["tracking_error"] = sd_a * math.sqrt(P)
        m["information_ratio"] = nan if (sd_a == 0 or math.isnan(sd_a)) else \
            mean_a / sd_a * math.sqrt(P)
        growth = 1.0
        for x in b:
            growth *= 1.0 + x
        m["excess_return"] = m["total_return"] - (growth - 1.0)
    return m
