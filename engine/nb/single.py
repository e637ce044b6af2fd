"""One asset, no stops: a backtest fused with its metrics, one pass per run.

On a one-asset panel whose closes are finite and a config without stops, the bar loop of
:mod:`engine.nb.simulate` keeps the cash and the position constant between two
instructions: a bar there only marks the position and adds to the metrics' running sums.
:func:`run_events` runs such a backtest from its instructions alone (``ev``: the bars
with a weight, and the weights; a strategy's fused kernel finds them, see
``strategies.base.fused_kernel``): one pass over the bars with the account and every
running sum in registers (a :class:`Run` of scalars), nothing written per bar, the quiet
bars between two instructions in a tight loop, a flat stretch at once.

The bits are those of ``run_backtest``: every per-bar value (equity, return, exposure
share) and every running sum is computed by the operations of ``simulate`` and
``engine.nb.metrics.metrics_with_blocks`` in the same order; the fills' costs by the same
:func:`engine.nb.fills.order_cost`, the metrics finished by the same
:func:`engine.nb.metrics.finish_metrics`, from the same power sums (or, in the rare run
where the mean is large against the spread, from a second pass around the mean, as the
array path does: ``power_sums_do``). tests/test_engine_single.py checks it on random
cases. A flat stretch adds the same cash (and, with a rate, the same squared excess
return) on every bar: :func:`add_n` gives the bits of k such additions in a few steps, so
a flat stretch costs about as much as one bar.
"""

import math
from collections import namedtuple

import numpy as np
from numba import njit

from engine.nb.bits import bits_float, float_bits
from engine.nb.fills import _close_enough, order_cost, order_quantity
from engine.nb.jit import loop_helper
from engine.nb.metrics import (
    FEES,
    N_BARS,
    N_TRADES,
    drawdown_step,
    finish_metrics,
    per_bar_rate,
    power_sums_do,
)

__all__ = ["ADD_N_MIN", "Account", "Book", "Sums", "add_n", "run_events"]

Account = namedtuple("Account", ["cash", "pos", "pending"])
Account.__doc__ = """Cash, position and (next_open) the order decided on the previous bar."""
Book = namedtuple("Book", ["tr_dir", "tr_cash", "n_opened", "n_closed", "n_wins",
                           "gross_profit", "gross_loss", "n_dropped", "n_refused", "fees",
                           "notional", "init_cash"])
Book.__doc__ = """The open trade (direction, net cash flow so far: its pnl once closed),
the trade counts and totals the metrics need, orders dropped, negative weights refused
(allow_short off), fees and traded notional in bar order, and the initial cash."""
Sums = namedtuple("Sums", ["prev", "total", "s2", "s3", "s4", "down", "equity_sum", "share",
                           "peak", "worst", "run", "longest", "b1", "b2"])
Sums.__doc__ = """The running sums of engine.nb.metrics._sums_and_drawdown: the previous
bar's equity, the sums of the returns and of the 2nd to 4th powers of their deviations
from ``centre`` (0: the powers themselves), of squared negative excess returns, of equity
and of exposure shares, the peak, the deepest drawdown, the bars below the peak now and
the most in a run that has ended (engine.nb.metrics.drawdown_step); and the current PBO
block's sum and sum of squares of excess returns."""

# No helper here is inline="always": Numba's own (IR-level) inlining of them into
# run_events made a cold cache compile it for ~85 s and 2 GB per signature (a new user's
# first sweep waited three minutes); LLVM inlines what pays, and the MA grid runs as fast
# without it (benchmarks/README.md, 2026-12-06).
_TWO52 = 4503599627370496.0  # 2**52
ADD_N_MIN = 8
"""Equal additions below which a plain loop costs less than :func:`add_n`: each addition
waits for the one before (~4 cycles), a binade of add_n costs ~20-30 cycles (on the
benchmark machine 8 and 4 measured alike, 32 ~5 % slower on the MA grid)."""


@njit(nogil=True, cache=True, error_model="numpy")
def add_n(s, c, k):
    """The bits of ``k`` sequential additions ``s = s + c``, in a few steps.

    While ``s`` stays in one binade [2**E, 2**(E+1)) every representable number there is
    a multiple of its spacing u = 2**(E-52), so ``s + c`` rounds to ``s + round(c / u) * u``:
    the same step each time, unless ``c / u`` is a tie (then the step depends on the parity
    of s; those additions are done one by one, like every addition that leaves the
    binade). The steps that fit in the binade are taken at once, exactly: |s| is its
    integer mantissa M times u, so the sum is (M +- j * steps) * u. A flat stretch of a run
    adds the same cash to the equity sum on every bar; this makes its cost independent of
    its length (tests/test_engine_single.py checks it against the plain loop)."""
    if c == 0.0:
        return s + c if k > 0 else s  # once: -0.0 may become 0.0; again changes nothing
    if k > 0 and s == math.floor(s) and c == math.floor(c) and (
            abs(s) + float(k) * abs(c) < _TWO52):
        # integers (a count of all-in bars): every partial sum is an integer below 2**53,
        # so each addition is exact and k of them are one multiplication and one addition
        return s + float(k) * c
    while k > 0:
        bits = float_bits(s) & 0x7FFFFFFFFFFFFFFF
        e = bits >> 52                   # the biased exponent of |s|
        if k < 4 or e < 64 or e > 1980:  # few additions, or |s| tiny, huge, inf or NaN
            s = s + c
            k -= 1
            continue
        q = c * bits_float((2098 - e) << 52)  # c / u, exact (u = 2**(e - 1075))
        if not abs(q) < _TWO52:          # c is not small against s (or not finite)
            s = s + c
            k -= 1
            continue
        fq = math.floor(q)
        frac = q - fq
        if frac == 0.5:                  # a tie: rounded to even, the step alternates
            s = s + c
            k -= 1
            continue
        steps = fq + 1.0 if frac > 0.5 else fq  # c rounded to the binade's grid, in units of u
        units = float((bits & 0xFFFFFFFFFFFFF) | 0x10000000000000)  # |s| / u, in [2**52, 2**53)
        if steps == 0.0:
            # c is absorbed while s stays here: it stays here. Except at |s| = 2**E with c
            # pointing to zero: the spacing below is u/2, so u/4 < |c| < u/2 moves s there.
            if units != _TWO52 or (c > 0.0) == (s > 0.0):
                return s
            s = s + c
            k -= 1
            continue
        mag = abs(steps)
        grows = (steps > 0.0) == (s > 0.0)
        # keep one unit from the binade's ends, where the spacing changes
        room = (2.0 * _TWO52 - 1.0) - units if grows else units - (_TWO52 + 1.0)
        if k * mag <= room:
            j = float(k)
        else:
            j = math.floor(room / mag)
            if j <= 0.0:
                s = s + c
                k -= 1
                continue
        units = units + j * mag if grows else units - j * mag
        s = math.copysign(units * bits_float((e - 52) << 52), s)
        k -= int(j)
    return s


# ------------------------------------------------------------------ one bar into the sums
@njit(nogil=True, cache=True, error_model="numpy")
def _bar(sums, x, share_term, rf_bar, centre, with_blocks):
    """A bar of equity ``x`` (exposure share ``share_term``) into the sums: the
    operations of engine.nb.metrics._sums_and_drawdown (and _central_moments, around
    ``centre``), in their order."""
    r = x / sums.prev - 1.0
    total = sums.total + r
    d = r - centre
    d2 = d * d
    e = r - rf_bar
    b1, b2 = sums.b1, sums.b2
    if with_blocks:
        b1 += e
        b2 += e * e
    peak, worst, _, run, longest = drawdown_step(x, sums.peak, sums.worst,
                                                 sums.peak * (1.0 - sums.worst), sums.run,
                                                 sums.longest)
    return Sums(x, total, sums.s2 + d2, sums.s3 + d2 * d, sums.s4 + d2 * d2,
                sums.down + (e * e if e < 0.0 else 0.0), sums.equity_sum + x,
                sums.share + share_term, peak, worst, run, longest, b1, b2)


@njit(nogil=True, cache=True, error_model="numpy")
def _share(cash, v, x):
    """The exposure share |v| / x of a bar (0 without exposure or equity); exactly 1 for
    an all-in account (cash 0, v > 0: x = 0 + v = v), without the division."""
    if cash == 0.0:
        return 1.0 if v > 0.0 else 0.0
    g = abs(v)
    return g / x if g != 0.0 and x > 0.0 else 0.0


@njit(nogil=True, cache=True, error_model="numpy")
def _record_bar(acct, sums, c, rf_bar, centre, with_blocks):
    """The bar with close ``c``, with the account after its fills: equity
    ``cash + pos * c`` (the cash alone when flat), gross exposure ``|pos * c|``."""
    cash = acct.cash
    if acct.pos != 0.0:
        v = acct.pos * c
        x = cash + v
        return _bar(sums, x, _share(cash, v, x), rf_bar, centre, with_blocks)
    return _bar(sums, cash, 0.0, rf_bar, centre, with_blocks)


@njit(nogil=True, cache=True, error_model="numpy")
def _flat(sums, cash, k, rf_bar, centre, with_blocks):
    """k more flat bars after one that ended with this ``cash`` (finite, not 0): each
    returns cash / cash - 1 = 0 exactly, so the returns' sum does not move, the powers of
    the deviation (-centre) and the excess return (-rf_bar) add constants, the equity sum
    the cash, and the drawdown test changes nothing (the same value against the same
    peak): only the run below the peak grows."""
    s2, s3, s4, down, equity_sum = sums.s2, sums.s3, sums.s4, sums.down, sums.equity_sum
    b1, b2 = sums.b1, sums.b2
    d = 0.0 - centre
    d2 = d * d
    d3 = d2 * d
    d4 = d2 * d2
    e = 0.0 - rf_bar
    e2 = e * e
    moments = centre != 0.0
    if k < ADD_N_MIN:
        for _ in range(k):
            equity_sum += cash
            if moments:
                s2 += d2
                s3 += d3
                s4 += d4
            if e < 0.0:
                down += e2
            if with_blocks:
                b1 += e
                b2 += e2
    else:
        equity_sum = add_n(equity_sum, cash, k)
        if moments:
            s2 = add_n(s2, d2, k)
            s3 = add_n(s3, d3, k)
            s4 = add_n(s4, d4, k)
        if e < 0.0:
            down = add_n(down, e2, k)
        if with_blocks:
            b1 = add_n(b1, e, k)
            b2 = add_n(b2, e2, k)
    peak, run, longest = sums.peak, sums.run, sums.longest
    if cash >= peak:
        peak = cash
        longest = max(longest, run)
        run = 0
    else:
        run += k
    return Sums(cash, sums.total, s2, s3, s4, down, equity_sum, sums.share, peak,
                sums.worst, run, longest, b1, b2)


# ------------------------------------------------------------------ fills and decisions
@njit(nogil=True, cache=True, error_model="numpy")
def _fill(acct, book, cfg, q, price):
    """engine.nb.fills.fill_order and engine.nb.trades.apply_fill for the one asset: what
    the metrics need (cash, position, the trade's pnl and counts, fees, notional)."""
    cash = acct.cash
    qty, fill_price, fee, spend, status = order_cost(q, price, cash, cfg)
    if status != 0:
        if status == 2:
            book = Book(book.tr_dir, book.tr_cash, book.n_opened, book.n_closed,
                        book.n_wins, book.gross_profit, book.gross_loss,
                        book.n_dropped + 1.0, book.n_refused, book.fees, book.notional,
                        book.init_cash)
        return acct, book
    tr_dir, tr_cash = book.tr_dir, book.tr_cash
    n_opened, n_closed, n_wins = book.n_opened, book.n_closed, book.n_wins
    gross_profit, gross_loss = book.gross_profit, book.gross_loss
    new_cash = cash - (qty * fill_price + fee)
    fees = book.fees + fee
    notional = book.notional + abs(qty) * fill_price
    pos = acct.pos
    new_pos = pos + qty
    if pos == 0.0:
        tr_dir = 1.0 if qty > 0 else -1.0
        tr_cash = -qty * fill_price - fee
        n_opened += 1.0
    elif (qty > 0) == (pos > 0):
        tr_cash -= qty * fill_price + fee
    else:
        closing = min(abs(qty), abs(pos))
        part = closing / abs(qty)
        tr_cash += tr_dir * closing * fill_price - fee * part
        if new_pos == 0.0 or (new_pos > 0) != (pos > 0):
            n_closed += 1.0
            if tr_cash > 0:
                n_wins += 1.0
                gross_profit += tr_cash
            else:
                gross_loss -= tr_cash
            if new_pos != 0.0:
                tr_dir = 1.0 if new_pos > 0 else -1.0
                tr_cash = -new_pos * fill_price - fee * (1.0 - part)
                n_opened += 1.0
            else:
                tr_dir = 0.0
    if cfg.cash_account and spend > 0.0 and _close_enough(spend, cash):
        new_cash = 0.0
    return (Account(new_cash, new_pos, acct.pending),
            Book(tr_dir, tr_cash, n_opened, n_closed, n_wins, gross_profit, gross_loss,
                 book.n_dropped, book.n_refused, fees, notional, book.init_cash))


@njit(nogil=True, cache=True, error_model="numpy")
def _order(acct, cfg, w, c):
    """engine.nb.simulate._decide for the one asset with weight ``w`` and close ``c``:
    ``(order quantity (0 = none), refused)``."""
    if w < 0.0 and not cfg.allow_short:
        return 0.0, 1.0
    pos = acct.pos
    equity = acct.cash + pos * c if pos != 0.0 else acct.cash
    gross = abs(w)
    if gross > 0.0 and gross > cfg.max_leverage + 1e-9:
        w = w * (max(0.0, cfg.max_leverage) / gross)
    return order_quantity(w, pos, c, equity, cfg), 0.0


# ------------------------------------------------------------------ the run
@loop_helper
def _block_end(sums, blocks, part, t0, n, S):
    """Store block ``part``'s statistics (it ended on this bar) and return the next
    block's index and end (past empty blocks; t0 + n + 1: none left)."""
    lo = t0 + part * n // S
    hi = t0 + (part + 1) * n // S
    blocks[part, 0] += sums.b1
    blocks[part, 1] += sums.b2
    blocks[part, 2] += hi - lo
    part += 1
    while part < S and t0 + (part + 1) * n // S == t0 + part * n // S:
        part += 1  # an empty block: nothing to add
    return part, (t0 + (part + 1) * n // S if part < S else t0 + n + 1)


@loop_helper
def _pass(cfg, open_, close, t0, t1, ev, n_ev, rf_bar, blocks, centre):
    """The run over bars t0..t1-1 with the instructions ``ev`` (bars, weights): its
    account, book and sums (the powers of the returns' deviations from ``centre``)."""
    n = t1 - t0
    S = blocks.shape[0]
    with_blocks = S > 0
    c0 = cfg.init_cash
    acct = Account(c0, 0.0, 0.0)
    book = Book(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, c0)
    sums = Sums(c0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, c0, 0.0, 0, 0, 0.0, 0.0)
    part = 0
    hi = t1 + 1
    if with_blocks:
        hi = t0 + n // S
        while part < S and hi == t0 + part * n // S:  # empty first blocks
            part += 1
            hi = t0 + (part + 1) * n // S if part < S else t1 + 1
    fast = rf_bar == 0.0 and centre == 0.0 and not with_blocks
    t = t0
    for i in range(n_ev + 1):
        e = int(ev[0, i]) if i < n_ev else t1
        # -- the quiet bars t .. e-1 (an order decided before t fills at t's open)
        if t < e and acct.pending != 0.0:
            acct, book = _fill(Account(acct.cash, acct.pos, 0.0), book, cfg, acct.pending,
                               open_[t])
            sums = _record_bar(acct, sums, close[t], rf_bar, centre, with_blocks)
            t += 1
            if t == hi:
                part, hi = _block_end(sums, blocks, part, t0, n, S)
                sums = Sums(sums.prev, sums.total, sums.s2, sums.s3, sums.s4, sums.down,
                            sums.equity_sum, sums.share, sums.peak, sums.worst, sums.run,
                            sums.longest, 0.0, 0.0)
        while t < e:
            end = min(e, hi)
            cash = acct.cash
            pos = acct.pos
            if pos == 0.0:
                usable = cash != 0.0 and abs(cash) < np.inf
                if sums.prev != cash or not usable:
                    sums = _bar(sums, cash, 0.0, rf_bar, centre, with_blocks)
                    t += 1
                if usable:
                    sums = _flat(sums, cash, end - t, rf_bar, centre, with_blocks)
                else:  # a ruined account: bar by bar
                    for _ in range(t, end):
                        sums = _bar(sums, cash, 0.0, rf_bar, centre, with_blocks)
            else:
                rest = t  # the bars from here take the loop of every account, below
                if fast and cash == 0.0:
                    # all in, no rate, no blocks, the powers themselves (the usual grid run):
                    # r - 0.0 is r, and while the equity 0.0 + pos * close is positive it is
                    # pos * close and its exposure share 1.0, so the shares are added at the
                    # end. With a positive peak and drawdown limit (peak * (1 - worst)), a bar
                    # at or above the limit has positive equity and leaves the limit positive:
                    # only a bar below it (the drawdown deepens, rare) is tested. The first
                    # bar without positive equity, or after which the limit is not positive,
                    # leaves the rest of the stretch to the loop below.
                    prev, total, s2, s3, s4 = sums.prev, sums.total, sums.s2, sums.s3, sums.s4
                    down, equity_sum = sums.down, sums.equity_sum
                    peak, worst, run_, longest = sums.peak, sums.worst, sums.run, sums.longest
                    limit = peak * (1.0 - worst)
                    u = 0
                    if peak > 0.0 and limit > 0.0:
                        while u < end - t:
                            # an unsigned index: no negative-index wrap per bar (a slice
                            # close[t:end] would cost two atomic reference counts a stretch)
                            x = pos * close[np.uint64(t + u)]
                            last = False
                            if x < limit:
                                if not x > 0.0:
                                    break
                                peak, worst, limit, run_, longest = drawdown_step(
                                    x, peak, worst, limit, run_, longest)
                                last = not limit > 0.0
                            else:  # the same step: here the compiler drops its test x < limit
                                peak, worst, limit, run_, longest = drawdown_step(
                                    x, peak, worst, limit, run_, longest)
                            r = x / prev - 1.0
                            prev = x
                            total += r
                            r2 = r * r
                            s2 += r2
                            s3 += r2 * r
                            s4 += r2 * r2
                            down += r2 if r < 0.0 else 0.0
                            equity_sum += x
                            u += 1
                            if last:
                                break
                    sums = Sums(prev, total, s2, s3, s4, down, equity_sum,
                                add_n(sums.share, 1.0, u), peak, worst, run_, longest,
                                sums.b1, sums.b2)
                    rest = t + u
                for u in range(rest, end):
                    v = pos * close[u]
                    x = cash + v
                    sums = _bar(sums, x, _share(cash, v, x), rf_bar, centre, with_blocks)
            t = end
            if t == hi:
                part, hi = _block_end(sums, blocks, part, t0, n, S)
                sums = Sums(sums.prev, sums.total, sums.s2, sums.s3, sums.s4, sums.down,
                            sums.equity_sum, sums.share, sums.peak, sums.worst, sums.run,
                            sums.longest, 0.0, 0.0)
        if e >= t1:
            break
        # -- bar e, with its instruction
        w = ev[1, i]
        c = close[e]
        refused = 0.0
        if cfg.fill_close:
            q, refused = _order(acct, cfg, w, c)
            if q != 0.0:
                acct, book = _fill(acct, book, cfg, q, c)
        else:
            if acct.pending != 0.0:
                acct, book = _fill(Account(acct.cash, acct.pos, 0.0), book, cfg,
                                   acct.pending, open_[e])
            if e < t1 - 1:
                q, refused = _order(acct, cfg, w, c)
                acct = Account(acct.cash, acct.pos, q)
        if refused != 0.0:
            book = Book(book.tr_dir, book.tr_cash, book.n_opened, book.n_closed,
                        book.n_wins, book.gross_profit, book.gross_loss, book.n_dropped,
                        book.n_refused + refused, book.fees, book.notional, book.init_cash)
        sums = _record_bar(acct, sums, c, rf_bar, centre, with_blocks)
        t = e + 1
        if t == hi:
            part, hi = _block_end(sums, blocks, part, t0, n, S)
            sums = Sums(sums.prev, sums.total, sums.s2, sums.s3, sums.s4, sums.down,
                        sums.equity_sum, sums.share, sums.peak, sums.worst, sums.run,
                        sums.longest, 0.0, 0.0)
    return book, sums


@loop_helper
def run_events(cfgs, ci, open_, close, t0, t1, ev, n_ev, periods_per_year, blocks, out):
    """One backtest of bars t0..t1-1 of a one-asset panel with the config ``cfgs[ci]``
    (no stops) and the instructions ``ev[0, :n_ev]`` (bars, ascending, in t0..t1-1) with
    weights ``ev[1, :n_ev]`` (finite; every other bar is NaN: no instruction): writes its
    metrics (METRIC_NAMES) to ``out``, adds its PBO block statistics to ``blocks`` (S, 3;
    S = 0: none) and returns the number of negative weights refused (allow_short off).
    Every close of the bars must be finite (and every open, in next_open mode), as in
    ``run_backtest`` of the same weights, whose bits it gives."""
    cfg = cfgs[ci]
    rf_bar = per_bar_rate(cfg.risk_free, periods_per_year)
    book, sums = _pass(cfg, open_, close, t0, t1, ev, n_ev, rf_bar, blocks, 0.0)
    n = t1 - t0
    out[:] = np.nan
    out[N_BARS] = n
    out[N_TRADES] = book.n_opened
    out[FEES] = book.fees
    if n <= 0:
        return book.n_refused
    s2, s3, s4 = sums.s2, sums.s3, sums.s4
    centred = not power_sums_do(sums.total, s2, n)
    if centred:  # the moments around the mean, from a second run (as the array path)
        _, again = _pass(cfg, open_, close, t0, t1, ev, n_ev, rf_bar, blocks[:0],
                         sums.total / n)
        s2, s3, s4 = again.s2, again.s3, again.s4
    finish_metrics(out, n, sums.total, s2, s3, s4, centred, sums.down, sums.equity_sum,
                   sums.share, sums.worst, max(sums.longest, sums.run), sums.prev,
                   book.init_cash, periods_per_year, book.notional, book.n_closed, book.n_wins,
                   book.gross_profit, book.gross_loss, rf_bar)
    return book.n_refused
