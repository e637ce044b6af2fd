"""Record layouts shared by the kernels.

All mutable simulation state lives in two arrays created per run: ``book`` (per asset: the
position and the open trade's bookkeeping) and ``acct`` (cash and running totals). Nothing
else holds a position or a cash balance.
"""

# Per-asset state: rows of a float array ``book[FIELD, asset]`` (plain scalar indexing: no
# record views, whose reference counting Numba cannot prune inside the bar loop).
POS = 0           # signed quantity; the only copy of the position
MARK = 1          # last valid close while held (what the position is marked at)
ORDER = 2         # order quantity waiting to fill (next_open) or being filled
TR_DIR = 3        # open trade's direction: +1 long, -1 short, 0 flat
TR_ENTRY_BAR = 4
TR_QTY_IN = 5     # sum of increasing fills
TR_ENTRY_PRICE = 6  # average price of increasing fills (exactly the price for one fill)
TR_QTY_OUT = 7
TR_VALUE_OUT = 8
TR_FEES = 9
TR_CASH = 10      # net cash flow of the trade so far (its realised pnl)
PEAK = 11         # trailing reference: highest high (long) / lowest low (short)
ATR_LEVEL = 12    # ATR stop level fixed at entry (NaN = none)
LAST_W = 13       # last finite weight instruction
BLOCKED = 14      # 1 = flat after a stop until the instruction changes
BLOCK_W = 15      # the instruction in force when the stop fired
BOOK_FIELDS = 16

# Account state: a float array ``acct[FIELD]``.
CASH = 0
BAR_FEES = 1      # fees paid during the current bar
BAR_NOTIONAL = 2  # |qty * fill price| traded during the current bar
N_OPENED = 3
N_CLOSED = 4
N_WINS = 5
GROSS_PROFIT = 6
GROSS_LOSS = 7
N_DROPPED = 8     # orders that could not fill (no bar, no cash, fees)
N_REFUSED = 9     # negative weights ignored because shorting is off
ACCT_FIELDS = 10

# A trade as the kernels log it: one float64 row of these columns (the integers -- asset,
# direction, bars, exit reason -- are exact in a float). Rows, not records: a record view
# in the bar loop costs Numba reference counting on every closed trade, ~6 % of a
# rebalancing backtest that logs its trades. engine.backtest.BacktestResult.trades makes
# the table of them.
LOG_COLUMNS = ("asset", "direction", "entry_bar", "exit_bar", "entry_price", "exit_price",
               "quantity", "pnl", "cost", "fees", "exit_reason")
(LOG_ASSET, LOG_DIRECTION, LOG_ENTRY_BAR, LOG_EXIT_BAR, LOG_ENTRY_PRICE, LOG_EXIT_PRICE,
 LOG_QUANTITY, LOG_PNL, LOG_COST, LOG_FEES, LOG_EXIT_REASON) = range(len(LOG_COLUMNS))
LOG_FIELDS = len(LOG_COLUMNS)  # exit_bar is -1 while the trade is open

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
