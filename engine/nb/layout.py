"""Record layouts shared by the kernels.

All mutable simulation state lives in two record arrays created per run: ``book`` (one
record per asset: the position and the open trade's bookkeeping) and ``acct`` (one record:
cash and running totals). Nothing else holds a position or a cash balance.
"""

import numpy as np

BOOK_DTYPE = np.dtype(
    [
        ("pos", np.float64),        # signed quantity; the only copy of the position
        ("mark", np.float64),       # last valid close (NaN before the first bar)
        ("order", np.float64),      # order quantity waiting to fill (next_open) or being filled
        ("tr_dir", np.int64),       # open trade's direction: +1 long, -1 short, 0 flat
        ("tr_entry_bar", np.int64),
        ("tr_qty_in", np.float64),  # sum of increasing fills
        ("tr_cost_in", np.float64), # notional of increasing fills
        ("tr_qty_out", np.float64),
        ("tr_value_out", np.float64),
        ("tr_fees", np.float64),
        ("tr_cash", np.float64),    # net cash flow of the trade so far (its realised pnl)
        ("peak", np.float64),       # trailing reference: highest high (long) / lowest low (short)
        ("atr_level", np.float64),  # ATR stop level fixed at entry (NaN = none)
        ("last_w", np.float64),     # last finite weight instruction
        ("blocked", np.bool_),      # flat after a stop until the instruction changes
        ("block_w", np.float64),    # the instruction in force when the stop fired
    ],
    align=True,
)

ACCT_DTYPE = np.dtype(
    [
        ("cash", np.float64),
        ("bar_fees", np.float64),      # fees paid during the current bar
        ("bar_notional", np.float64),  # |qty * fill price| traded during the current bar
        ("n_opened", np.int64),
        ("n_closed", np.int64),
        ("n_wins", np.int64),
        ("gross_profit", np.float64),
        ("gross_loss", np.float64),
        ("n_dropped", np.int64),       # orders that could not fill (no bar, no cash, fees)
    ],
    align=True,
)

TRADE_DTYPE = np.dtype(
    [
        ("asset", np.int64),
        ("direction", np.int64),
        ("entry_bar", np.int64),
        ("exit_bar", np.int64),     # -1 while open
        ("entry_price", np.float64),
        ("exit_price", np.float64),
        ("quantity", np.float64),
        ("pnl", np.float64),
        ("cost", np.float64),
        ("fees", np.float64),
        ("exit_reason", np.int64),
    ],
    align=True,
)

# Exit reasons, indices into EXIT_REASONS.
SIGNAL = 0
STOP_LOSS = 1
TAKE_PROFIT = 2
TRAILING_STOP = 3
ATR_STOP = 4
DELISTED = 5
OPEN = 6
EXIT_REASONS = (
    "signal", "stop_loss", "take_profit", "trailing_stop", "atr_stop", "delisted", "open",
)

# vectorbt's tolerance for "the cost fits the cash"; kept so that parity holds to 1e-9.
CASH_RTOL = 1e-9
