"""Moving-average crossover: long after the fast average crosses above the slow one."""

from collections.abc import Mapping

import numpy as np
from numba import njit

from engine import Panel
from engine.nb import single
from strategies.base import Param, Strategy, fused_kernel, weights_kernel
from strategies.indicators import ema, rolling_mean
from strategies.signals import cross_flips, state_row

__all__ = ["MA_CROSS"]

# The columns of a run's row (``rows[r]``): written by _prepare, read by _kernel.
FAST = 0         # slot in ``data`` of the fast average
SLOW = 1         # slot of the slow average
LONG_SHORT = 2   # 1.0: go short after a cross down (else flat)
# For the fused one-asset kernel (one asset, every close finite), from
# strategies.signals.cross_flips: where the run's crosses are, found once for the grid.
CROSS_AT = 3     # where the run's cross bars start (-1: not computed), as an index in
#                  data.ravel().view(np.uint32): the rows after the averages hold them as
#                  uint32, two to a float64
N_CROSSES = 4    # how many
FIRST_BAR = 5    # the bar from which both averages exist (-1: never)
FIRST_SIGN = 6   # the sign of fast - slow there
ROW_FIELDS = 7


@njit(nogil=True, cache=True, inline="always")
def _cross(f, s, state, relation, long_short):
    """One asset's bar with a close: its new (state, relation). ``relation`` is the last
    strict relation of fast vs slow (+1 above, -1 below, 0 unknown); a cross is a flip of
    it. Equal bars don't count; warm-up (NaN averages) forgets it."""
    if np.isnan(f) or np.isnan(s):
        return state, 0
    d = 1 if f > s else (-1 if f < s else 0)
    if d == 1 and relation == -1:
        state = 1.0
    elif d == -1 and relation == 1:
        state = -1.0 if long_short else 0.0
    return state, (d if d != 0 else relation)


@weights_kernel
def _kernel(data, row, out):
    close = data[0]
    fast = data[int(row[FAST])]
    slow = data[int(row[SLOW])]
    long_short = row[LONG_SHORT] != 0.0
    T, N = close.shape
    if N == 1:
        # One asset (the usual MA sweep): the steps of _cross with the state in registers
        # and a branch per case, not a select: crosses are rare, so the branches are
        # predicted and no bar waits for the previous bar's state (measured 3.8 -> 2.4 ns
        # a bar). Its weight is its state (1 asset held) on the bars where it changes.
        exit_state = -1.0 if long_short else 0.0
        st = 0.0
        rel = 0
        for t in range(T):
            out[t, 0] = np.nan
            if np.isnan(close[t, 0]):
                continue
            f = fast[t, 0]
            s = slow[t, 0]
            if f > s:
                if rel == -1 and st != 1.0:
                    st = 1.0
                    out[t, 0] = 1.0
                rel = 1
            elif f < s:
                if rel == 1 and st != exit_state:
                    st = exit_state
                    out[t, 0] = exit_state
                rel = -1
            elif np.isnan(f) or np.isnan(s):
                rel = 0
        return
    state = np.zeros(N)  # +1 long, -1 short, 0 flat
    relation = np.zeros(N, dtype=np.int64)
    held = 0
    for t in range(T):
        changed = False
        for n in range(N):
            if np.isnan(close[t, n]):  # no bar: keep the position and the memory
                continue
            new, relation[n] = _cross(fast[t, n], slow[t, n], state[n], relation[n],
                                      long_short)
            if new != state[n]:
                changed = True
                held += int(new != 0.0) - int(state[n] != 0.0)
                state[n] = new
        state_row(out, t, close, state, held, changed)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _instructions(fast, slow, t1, exit_state, lo, ev):
    """The one-asset kernel's instructions on bars ``lo``..t1-1 (its bars before ``lo``
    only move its state), by comparing the averages bar by bar: into ``ev`` (bars,
    weights); returns how many. Every close is finite (the caller checks it)."""
    st = 0.0
    rel = 0
    n = 0
    for t in range(t1):
        f = fast[t]
        s = slow[t]
        if f > s:
            if rel == -1 and st != 1.0:
                st = 1.0
                if t >= lo:
                    ev[0, n] = t
                    ev[1, n] = st
                    n += 1
            rel = 1
        elif f < s:
            if rel == 1 and st != exit_state:
                st = exit_state
                if t >= lo:
                    ev[0, n] = t
                    ev[1, n] = st
                    n += 1
            rel = -1
        elif np.isnan(f) or np.isnan(s):
            rel = 0
    return n


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _cross_instructions(flat, k, end, first, rel, t1, exit_state, lo, ev):
    """:func:`_instructions` from the run's crosses (``flat[k:end]``, ascending bars
    after ``first``, where the relation starts at ``rel`` and flips at each cross):
    O(crosses), the averages are not read."""
    st = 0.0
    n = 0
    if first < 0 or first >= t1:
        return 0
    for i in range(k, end):
        t = int(flat[i])
        if t >= t1:
            break
        rel = -rel
        if rel == 1:
            if st == 1.0:
                continue
            st = 1.0
        else:
            if st == exit_state:
                continue
            st = exit_state
        if t >= lo:
            ev[0, n] = t
            ev[1, n] = st
            n += 1
    return n


@fused_kernel
def _fused(data, row, open_, close, cfgs, ci, t0, t1, periods_per_year, blocks, out, ev):
    """The one-asset kernel's instructions on bars t0..t1-1 (from the crosses prepare
    found for the whole grid, or from the averages), run by the engine
    (engine.nb.single.run_events): the bits of the weights path, no weights array."""
    exit_state = -1.0 if row[LONG_SHORT] != 0.0 else 0.0
    if row[CROSS_AT] >= 0.0:
        k = int(row[CROSS_AT])
        n = _cross_instructions(data.reshape(data.size).view(np.uint32), k,
                                k + int(row[N_CROSSES]),
                                int(row[FIRST_BAR]), int(row[FIRST_SIGN]), t1, exit_state,
                                t0, ev)
    else:
        T = close.shape[0]
        n = _instructions(data[int(row[FAST])].reshape(T), data[int(row[SLOW])].reshape(T),
                          t1, exit_state, t0, ev)
    return int(single.run_events(cfgs, ci, open_, close, t0, t1, ev, n, periods_per_year,
                                 blocks, out))


@njit(nogil=True, cache=True)
def _close_and_averages(close, keys, data):
    """Into ``data`` (1 + K, T, N): the closes, then the average of each key (window * 2,
    + 1 for an EMA). One call, not one a window: a call from Python costs more than a
    2,520-bar average."""
    data[0] = close
    for i in range(keys.shape[0]):
        window = keys[i] // 2
        data[1 + i] = ema(close, window) if keys[i] % 2 else rolling_mean(close, window)


def _prepare(panel: Panel, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    fast = cols["fast"].astype(np.int64)
    slow = cols["slow"].astype(np.int64)
    is_ema = (cols["kind"] == "ema").astype(np.int64)
    runs = fast.shape[0]
    # One average per distinct (window, kind) across both legs of every run.
    keys, slot = np.unique(np.concatenate([fast * 2 + is_ema, slow * 2 + is_ema]),
                           return_inverse=True)
    n_avg = keys.shape[0]
    close = np.ascontiguousarray(panel.close)
    rows = np.empty((runs, ROW_FIELDS))
    rows[:, FAST] = 1 + slot[:runs]
    rows[:, SLOW] = 1 + slot[runs:]
    rows[:, LONG_SHORT] = cols["long_short"]
    rows[:, CROSS_AT:] = -1.0
    data = np.empty((1 + n_avg, *panel.shape))  # numpy's: resizable below
    _close_and_averages(close, keys, data)
    if panel.n_assets != 1 or not np.isfinite(panel.close).all():
        return data, rows
    # One asset: every run's crosses at once (the fused kernel's signal: no scan of the
    # averages), stored in rows after the averages (uint32 bars, two to a float64).
    ok, first, sign0, start, count, bars = cross_flips(data[1:, :, 0], slot[:runs],
                                                       slot[runs:])
    if not ok:
        return data, rows
    extra = -(-bars.shape[0] // (2 * panel.n_bars))  # rows of float64, two bars to each
    if extra:
        shape = (1 + n_avg + extra, *panel.shape)
        try:
            # grown in place (a large block is remapped, not copied): the averages are
            # not held twice while the bars are written after them
            data.resize(shape, refcheck=True)
        except ValueError:  # something holds a reference to it (a profiler): a copy,
            grown = np.zeros(shape)  # zeros after the data, as resize leaves them
            grown[:1 + n_avg] = data
            data = grown
        data[1 + n_avg:].reshape(-1).view(np.uint32)[:bars.shape[0]] = bars
    rows[:, CROSS_AT] = 2 * (1 + n_avg) * panel.n_bars + start
    rows[:, N_CROSSES] = count
    rows[:, FIRST_BAR] = first
    rows[:, FIRST_SIGN] = sign0
    return data, rows


MA_CROSS = Strategy(
    name="ma_cross",
    params={
        "fast": Param("int", 10, 1, 10_000, doc="fast moving-average window (bars)"),
        "slow": Param("int", 50, 2, 10_000, doc="slow moving-average window (bars)"),
        "kind": Param("choice", "sma", choices=("sma", "ema"), doc="simple or exponential"),
        "long_short": Param("bool", False, doc="go short after a cross down"),
    },
    prepare=_prepare,
    kernel=_kernel,
    fused=_fused,
    lookback_fn=lambda fast, slow, kind, long_short: max(fast, slow),
    doc=(
        "Per asset: enter long on the bar the fast average crosses above the slow one, exit "
        "(or go short) when it crosses below. Equal weight across the assets in position, "
        "re-balanced only on bars where some position changes."
    ),
)
