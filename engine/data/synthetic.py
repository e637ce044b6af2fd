"""A synthetic equity panel with the awkward features of real data, for finding engine bugs.

What it contains (all deterministic for a given ``seed``):

* business-day timestamps starting at ``start`` (weekends skipped, no holiday calendar);
* log returns from a factor model: a market factor plus ``n_factors`` sector factors with
  random loadings, plus idiosyncratic Student-t noise (fat tails); each asset has its own
  volatility, drawn around ``annual_vol``, and its own share of systematic variance;
* consistent OHLC bars: the open gaps away from the previous close, the high is at or above
  ``max(open, close)``, the low at or below ``min(open, close)``, every price is positive;
* positive volume that rises on large moves;
* staggered listings (some assets start late), delistings (some end early) and rare
  single-bar trading halts, all shown as NaN bars;
* a feature ``ml_score``: a noisy forecast of the next bar's return with a chosen
  cross-sectional rank correlation (Spearman IC).

About ``ml_score`` and look-ahead: the score at bar ``t`` is built FROM the return of bar
``t + 1``. That is deliberate: an informative forecast is, by definition, correlated with
the future, and this is the cheapest way to make one with a known IC. The engine's
no-look-ahead guarantee is about what the *engine* reads (a decision at bar ``t`` only uses
rows ``<= t`` of the panel and the weights); it says nothing about how a feature was made.
A strategy trading on ``ml_score`` should therefore earn roughly what an IC of ``ic``
allows, and an engine bug that shifts fills by one bar shows up as a large change in that
profit.
"""

from __future__ import annotations

import math

import numpy as np

from engine.panel import DateLike, Panel

__all__ = ["synthetic_panel"]

_BARS_PER_YEAR = 252
# Log-normal spread of per-asset volatility around ``annual_vol`` (so a 0.30 median gives
# roughly 0.2 .. 0.45 for the middle two thirds of assets).
_VOL_DISPERSION = 0.35
# Share of each asset's return variance explained by the factors (market + sectors).
_SYSTEMATIC_SHARE = (0.15, 0.45)
# Fraction of a bar's log return that happens overnight (open vs previous close).
_OVERNIGHT_SHARE = 0.3
# Latest listing bar, as a fraction of the panel: late listers still get a useful history.
_LATEST_LISTING = 0.6


def synthetic_panel(
    n_assets: int = 500,
    n_bars: int = 2520,
    seed: int = 0,
    *,
    ic: float = 0.05,
    start: DateLike = "2010-01-04",
    n_factors: int = 3,
    listing_fraction: float = 0.2,
    delisting_fraction: float = 0.1,
    halt_probability: float = 0.0005,
    annual_vol: float = 0.30,
    tail_df: float = 4.0,
) -> Panel:
    """A reproducible ``n_bars x n_assets`` daily panel with OHLCV and an ``ml_score`` feature.

    Args:
        n_assets: number of assets, named ``A0000``, ``A0001``, ... (sorted = column order).
        n_bars: number of business-day bars starting at ``start``.
        seed: seed of the random generator; the same arguments give the same panel.
        ic: target mean Spearman correlation, across assets, between ``ml_score`` at bar
            ``t`` and the close-to-close return from ``t`` to ``t + 1``. In ``(-1, 1)``.
        start: first date; rolled forward to a business day.
        n_factors: number of sector factors besides the market factor.
        listing_fraction: fraction of assets whose first bar comes later than bar 0.
        delisting_fraction: fraction of assets whose last bar comes before the last bar.
        halt_probability: chance that a bar strictly inside an asset's life is missing.
        annual_vol: median annualized volatility of the assets.
        tail_df: degrees of freedom of the Student-t shocks (> 2; smaller = fatter tails).

    One asset (chosen at random) trades on every bar, so every timestamp has at least one
    bar and the panel survives a Parquet round trip unchanged. ``ml_score`` is
    cross-sectionally standardized (mean 0, std 1 over the assets with a bar) and NaN where
    an asset has no bar. See the module docstring for why it uses the next bar's return.

    Example:
        >>> p = synthetic_panel(n_assets=20, n_bars=300, seed=7, ic=0.1)
        >>> p.shape
        (300, 20)
        >>> str(p.timestamps[0])[:10], p.assets[:2]
        ('2010-01-04', ('A0000', 'A0001'))
        >>> bool((p.high >= p.low).all(where=~np.isnan(p.close)))
        True
        >>> synthetic_panel(n_assets=20, n_bars=300, seed=7, ic=0.1).fingerprint == p.fingerprint
        True
    """
    _check_args(n_assets, n_bars, seed, ic, n_factors, listing_fraction, delisting_fraction,
                halt_probability, annual_vol, tail_df)
    T, N = int(n_bars), int(n_assets)
    timestamps = _business_days(start, T)
    rng = np.random.default_rng(seed)

    # --- per-asset parameters
    daily_vol = (annual_vol * np.exp(rng.normal(0.0, _VOL_DISPERSION, N)).clip(0.25, 4.0)
                 / math.sqrt(_BARS_PER_YEAR))
    annual_drift = rng.normal(0.06, 0.04, N)
    log_drift = annual_drift / _BARS_PER_YEAR - 0.5 * daily_vol**2
    systematic_share = rng.uniform(*_SYSTEMATIC_SHARE, N)
    beta = rng.normal(1.0, 0.3, N)
    loadings = rng.normal(0.0, 0.6, (n_factors, N))
    start_price = np.exp(rng.normal(math.log(50.0), 0.8, N))
    base_volume = np.exp(rng.normal(math.log(1e6), 1.0, N))

    # --- latent log returns. Row t is the return into bar t (row 0 comes from a hidden bar
    # before the panel); the extra row T is the return after the last bar, which only the
    # last bar's ml_score sees. Every asset gets a full path; NaN masks are applied at the
    # end, so a bar after a halt gaps by two days of moves, as a real reopening does.
    rows = T + 1
    market = _unit_t(rng, tail_df, (rows, 1))
    sectors = rng.standard_normal((rows, n_factors))
    systematic = beta * market + sectors @ loadings
    systematic /= np.sqrt(beta**2 + (loadings**2).sum(axis=0))  # unit variance per asset
    idio = _unit_t(rng, tail_df, (rows, N))
    shock = np.sqrt(systematic_share) * systematic + np.sqrt(1 - systematic_share) * idio
    log_ret = log_drift + daily_vol * shock

    # --- OHLC from the return path
    log_close = np.log(start_price) + np.cumsum(log_ret[:T], axis=0)
    overnight = (_OVERNIGHT_SHARE * log_ret[:T]
                 + 0.25 * daily_vol * rng.standard_normal((T, N)))
    close = np.exp(log_close)
    open_ = np.exp(log_close - log_ret[:T] + overnight)
    # Multiplying by a factor >= 1 (or <= 1) keeps high >= max(open, close) exactly in floats.
    wick = 0.5 * daily_vol
    high = np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal((T, N))) * wick)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal((T, N))) * wick)
    volume = np.rint(base_volume * np.exp(0.4 * rng.standard_normal((T, N)))
                     * (1.0 + np.abs(shock[:T])))
    volume = np.maximum(volume, 1.0)

    # --- lives: listings, delistings, halts
    has_bar = _has_bar(rng, T, N, listing_fraction, delisting_fraction, halt_probability)

    # --- the forecast
    score = _score(rng, log_ret[1:], has_bar, ic)

    no_bar = ~has_bar
    for arr in (open_, high, low, close, volume):
        arr[no_bar] = np.nan
    width = max(4, len(str(N - 1)))
    assets = [f"A{i:0{width}d}" for i in range(N)]
    return Panel.from_arrays(
        timestamps, assets, open=open_, high=high, low=low, close=close, volume=volume,
        features={"ml_score": score},
    )


def _check_args(n_assets: int, n_bars: int, seed: int, ic: float, n_factors: int,
                listing_fraction: float, delisting_fraction: float, halt_probability: float,
                annual_vol: float, tail_df: float) -> None:
    def whole(name: str, value: object, low: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    def number(name: str, value: object, ok: bool, rule: str) -> None:
        if not ok:
            raise ValueError(f"{name} must be {rule}, got {value!r}")

    whole("n_assets", n_assets, 1)
    whole("n_bars", n_bars, 1)
    whole("n_factors", n_factors, 0)
    whole("seed", seed, 0)

    def finite(x: object) -> bool:
        return isinstance(x, int | float | np.number) and math.isfinite(float(x))

    number("ic", ic, finite(ic) and -1 < ic < 1, "in (-1, 1)")
    for name, frac in (("listing_fraction", listing_fraction),
                       ("delisting_fraction", delisting_fraction)):
        number(name, frac, finite(frac) and 0 <= frac <= 1, "in [0, 1]")
    number("halt_probability", halt_probability,
           finite(halt_probability) and 0 <= halt_probability < 1, "in [0, 1)")
    number("annual_vol", annual_vol, finite(annual_vol) and annual_vol > 0, "> 0")
    # Unit-variance Student-t needs a finite variance: df > 2.
    number("tail_df", tail_df, finite(tail_df) and tail_df > 2, "> 2")


def _business_days(start: DateLike, n: int) -> np.ndarray:
    try:
        day = np.datetime64(start).astype("datetime64[D]")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start: cannot parse {start!r} as a date") from exc
    if np.isnat(day):
        raise ValueError(f"start: cannot parse {start!r} as a date")
    days = np.busday_offset(day, np.arange(n), roll="forward")
    return days.astype("datetime64[ns]")


def _unit_t(rng: np.random.Generator, df: float, size: tuple[int, ...]) -> np.ndarray:
    """Student-t draws rescaled to unit variance (the t's variance is df / (df - 2))."""
    return rng.standard_t(df, size) * math.sqrt((df - 2.0) / df)


def _has_bar(rng: np.random.Generator, T: int, N: int, listing_fraction: float,
             delisting_fraction: float, halt_probability: float) -> np.ndarray:
    """(T, N) mask of existing bars; one random 'anchor' asset trades on every bar."""
    anchor = int(rng.integers(N))
    others = np.delete(np.arange(N), anchor)
    first = np.zeros(N, dtype=np.int64)
    last = np.full(N, T - 1, dtype=np.int64)

    n_list = min(round(listing_fraction * N), N - 1)
    if n_list and T >= 2:
        late = rng.choice(others, n_list, replace=False)
        latest = max(1, min(T - 1, int(_LATEST_LISTING * T)))
        first[late] = rng.integers(1, latest + 1, n_list)

    n_delist = min(round(delisting_fraction * N), N - 1)
    if n_delist:
        early = rng.choice(others, n_delist, replace=False)
        # Ending early needs room for a last bar in first+1 .. T-2; otherwise keep the asset.
        room = T - 2 - first[early]
        pick = first[early] + 1 + np.floor(rng.uniform(0.2, 1.0, n_delist) * room)
        last[early] = np.where(room >= 1, pick.astype(np.int64), last[early])

    t = np.arange(T)[:, None]
    alive = (t >= first) & (t <= last)
    # Halts only strictly inside a life: the first and last bars always exist.
    halted = (rng.random((T, N)) < halt_probability) & (t > first) & (t < last)
    # Keep halts single-bar: a halt right after another one is dropped.
    halted[1:] &= ~halted[:-1]
    halted[:, anchor] = False
    return alive & ~halted


def _score(rng: np.random.Generator, next_log_ret: np.ndarray, has_bar: np.ndarray,
           ic: float) -> np.ndarray:
    """Forecast of next_log_ret[t] with mean cross-sectional Spearman correlation ``ic``.

    The next return is turned into normal scores (ranks -> Gaussian quantiles) among the
    assets with a bar, then mixed with Gaussian noise. For a bivariate normal with
    correlation rho, Spearman's correlation is (6 / pi) * asin(rho / 2), so choosing
    rho = 2 sin(pi * ic / 6) makes the expected Spearman IC equal ``ic``.
    """
    T, N = has_bar.shape
    # +inf (not NaN) sorts no-bar cells last: argsort is ~4x slower on rows holding NaN.
    key = np.where(has_bar, next_log_ret, np.inf)
    order = np.argsort(key, axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(N)[None, :], axis=1)
    n_valid = has_bar.sum(axis=1)
    # A row's normal scores depend only on its count of assets: one quantile table per count.
    normal_scores = np.zeros((T, N))
    for n in np.unique(n_valid):
        rows = np.flatnonzero(n_valid == n)
        table = np.append(_norm_ppf((np.arange(n) + 0.5) / n), 0.0)  # rank >= n: no bar
        normal_scores[rows] = table[np.minimum(ranks[rows], n)]
    rho = 2.0 * math.sin(math.pi * ic / 6.0)
    raw = rho * normal_scores + math.sqrt(1.0 - rho**2) * rng.standard_normal((T, N))
    raw = np.where(has_bar, raw, 0.0)
    n = np.maximum(n_valid, 1)[:, None]
    mean = raw.sum(axis=1, keepdims=True) / n
    centered = np.where(has_bar, raw - mean, 0.0)
    std = np.sqrt((centered**2).sum(axis=1, keepdims=True) / n)
    score = centered / np.where(std > 0, std, 1.0)
    return np.where(has_bar, score, np.nan)


def _norm_ppf(p: np.ndarray) -> np.ndarray:
    """Standard normal quantile, rational approximation (Abramowitz & Stegun 26.2.23).

    Absolute error below 4.5e-4, plenty for normal scores; numpy has no erfinv and scipy is
    not a dependency.
    """
    q = np.minimum(p, 1.0 - p)
    t = np.sqrt(-2.0 * np.log(q))
    x = t - (2.515517 + 0.802853 * t + 0.010328 * t**2) / (
        1.0 + 1.432788 * t + 0.189269 * t**2 + 0.001308 * t**3
    )
    return np.where(p < 0.5, -x, x)
