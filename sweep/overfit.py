"""Overfitting statistics for parameter sweeps: PSR, expected maximum Sharpe, DSR and PBO.

All Sharpe ratios here are **per period** (mean / standard deviation of the per-bar returns,
``ddof=1``, not annualised): the definition of ``engine.nb.metrics.sharpe`` before its
``sqrt(periods_per_year)`` factor. A Sharpe ratio from the result store is annualised;
divide it by ``sqrt(periods_per_year)`` first. Skew is the population skewness and kurtosis
is the RAW (Pearson) kurtosis, 3 for a normal distribution, as in the store's ``skew`` and
``kurtosis`` columns.

References:
    * D. H. Bailey and M. López de Prado (2012), "The Sharpe Ratio Efficient Frontier",
      Journal of Risk 15(2): the probabilistic Sharpe ratio (PSR).
    * D. H. Bailey and M. López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for
      Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio
      Management 40(5): the expected maximum Sharpe ratio of N trials and the DSR.
    * D. H. Bailey, J. M. Borwein, M. López de Prado and Q. J. Zhu (2017), "The Probability
      of Backtest Overfitting", Journal of Computational Finance 20(4): PBO by
      combinatorially symmetric cross-validation (CSCV).

The module needs only numpy and numba: Φ comes from ``math.erfc`` and Φ⁻¹ from Acklam's
rational approximation refined by one Halley step (absolute error < 1e-13 on (0, 1)).

Example:
    >>> import numpy as np
    >>> from sweep.overfit import block_stats, pbo_from_block_stats
    >>> rng = np.random.default_rng(0)
    >>> returns = rng.normal(0.0, 0.01, size=(50, 800))       # 50 configurations of noise
    >>> res = pbo_from_block_stats(*block_stats(returns, 8))
    >>> res.n_combinations, 0.0 <= res.pbo <= 1.0
    (70, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweep.cscv import cscv, cscv_schedule

__all__ = [
    "EULER_GAMMA",
    "PBOResult",
    "block_stats",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "norm_cdf",
    "norm_ppf",
    "pbo_from_block_stats",
    "probabilistic_sharpe_ratio",
]

EULER_GAMMA = 0.5772156649015329
"""The Euler–Mascheroni constant γ."""


# --------------------------------------------------------------------------------------
# The standard normal distribution
# --------------------------------------------------------------------------------------

# Acklam's coefficients (P. J. Acklam, "An algorithm for computing the inverse normal
# cumulative distribution function", 2003): relative error < 1.15e-9 before refinement.
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
      3.754408661907416e00)
_P_LOW = 0.02425
_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / _SQRT2)


def _ppf(p: float) -> float:
    if math.isnan(p) or p < 0.0 or p > 1.0:
        return math.nan
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    if p < _P_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        x = ((((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5])
             / ((((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0))
    elif p <= 1.0 - _P_LOW:
        q = p - 0.5
        r = q * q
        x = ((((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q
             / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0))
    else:
        q = math.sqrt(-2.0 * math.log1p(-p))
        x = -((((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5])
              / ((((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0))
    # One Halley step on f(x) = Φ(x) − p; the error is taken on the smaller tail so that
    # p close to 1 keeps its precision.
    e = (0.5 * math.erfc(-x / _SQRT2) - p if x <= 0.0
         else (1.0 - p) - 0.5 * math.erfc(x / _SQRT2))
    u = e * _SQRT2PI * math.exp(0.5 * x * x)
    return x - u / (1.0 + 0.5 * x * u)


def _elementwise(fn: Any, x: Any) -> Any:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        return fn(float(a))
    return np.fromiter((fn(float(v)) for v in a.ravel()), np.float64, a.size).reshape(a.shape)


def norm_cdf(x: Any) -> Any:
    """Φ(x), the standard normal CDF (via ``math.erfc``); scalar or array in, same out."""
    return _elementwise(_cdf, x)


def norm_ppf(p: Any) -> Any:
    """Φ⁻¹(p), the standard normal quantile; scalar or array in, same out.

    Acklam's rational approximation (relative error 1.15e-9) followed by one Halley step
    against ``math.erfc``, which brings the error to the level of double rounding. ``p`` of
    0 and 1 give ∓inf, outside [0, 1] NaN.
    """
    return _elementwise(_ppf, p)


# --------------------------------------------------------------------------------------
# PSR, expected maximum Sharpe, DSR
# --------------------------------------------------------------------------------------


def probabilistic_sharpe_ratio(sr: Any, sr_benchmark: Any, n_obs: Any, skew: Any,
                               kurtosis: Any) -> Any:
    """Probability that the true Sharpe ratio exceeds ``sr_benchmark`` (Bailey & López de
    Prado 2012, "The Sharpe Ratio Efficient Frontier", eq. for PSR):

        PSR = Φ( (SR − SR*) √(n − 1) / √(1 − γ3·SR + (γ4 − 1)/4 · SR²) )

    Args:
        sr: observed per-period (non-annualised) Sharpe ratio.
        sr_benchmark: the benchmark SR*, per period.
        n_obs: number of return observations n.
        skew: skewness γ3 of the returns.
        kurtosis: RAW kurtosis γ4 of the returns (3 for a normal distribution; NOT the
            excess kurtosis, which would understate the variance of the estimated SR).

    Scalars or broadcastable arrays; NaN where the variance term is not positive or
    ``n_obs < 2``.

    Example:
        >>> round(probabilistic_sharpe_ratio(0.1, 0.0, 253, 0.0, 3.0), 4)
        0.9433
    """
    sr = np.asarray(sr, dtype=np.float64)
    bench = np.asarray(sr_benchmark, dtype=np.float64)
    n = np.asarray(n_obs, dtype=np.float64)
    g3 = np.asarray(skew, dtype=np.float64)
    g4 = np.asarray(kurtosis, dtype=np.float64)
    var = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (sr - bench) * np.sqrt(n - 1.0) / np.sqrt(var)
    z = np.where((var > 0.0) & (n >= 2.0), z, np.nan)
    return norm_cdf(z)


def expected_max_sharpe(sr_variance: float, n_trials: int) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratios whose true value is zero (Bailey &
    López de Prado 2014, "The Deflated Sharpe Ratio", eq. for SR0):

        SR0 = √V · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e)))

    with V the variance of the trials' Sharpe ratios across trials (per period, like the
    result) and γ the Euler–Mascheroni constant. One trial gives 0.

    Example:
        >>> round(expected_max_sharpe(0.5 / 250, 100), 4)    # the paper's example
        0.1132
    """
    n = int(n_trials)
    if n < 1 or n != n_trials:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    if not sr_variance >= 0.0:
        raise ValueError(f"sr_variance must be >= 0, got {sr_variance!r}")
    if n == 1:
        return 0.0
    return math.sqrt(sr_variance) * (
        (1.0 - EULER_GAMMA) * _ppf(1.0 - 1.0 / n) + EULER_GAMMA * _ppf(1.0 - 1.0 / (n * math.e))
    )


def deflated_sharpe_ratio(sr: Any, n_obs: Any, skew: Any, kurtosis: Any,
                          trial_srs: Any = None, *, sr_variance: float | None = None,
                          n_trials: int | None = None) -> Any:
    """The deflated Sharpe ratio (Bailey & López de Prado 2014): the PSR of ``sr`` against
    the Sharpe ratio the best of the trials would show by luck alone,
    ``SR* = expected_max_sharpe(V, N)``.

    Give either ``trial_srs`` (the per-period Sharpe ratios of all the trials, e.g. every
    run of a sweep; V is their sample variance with ``ddof=1`` and N their count, NaN
    ignored) or both ``sr_variance`` and ``n_trials``. ``kurtosis`` is RAW (normal = 3):
    vectorbt's ``deflated_sharpe_ratio`` passes the excess kurtosis into the (γ4 − 1)/4
    term, which this function does not do.

    Example:
        >>> # The paper's example: annual SR 2.5 over 1250 days, skew -3, kurtosis 10, the
        >>> # best of 100 trials whose annualised Sharpe ratios have variance 0.5.
        >>> sr = 2.5 / 250 ** 0.5
        >>> round(deflated_sharpe_ratio(sr, 1250, -3, 10, sr_variance=0.5 / 250,
        ...                             n_trials=100), 4)
        0.9004
    """
    if trial_srs is not None:
        if sr_variance is not None or n_trials is not None:
            raise ValueError("give trial_srs or (sr_variance, n_trials), not both")
        t = np.asarray(trial_srs, dtype=np.float64).ravel()
        t = t[np.isfinite(t)]
        if t.size == 0:
            raise ValueError("trial_srs holds no finite Sharpe ratio")
        sr_variance = float(np.var(t, ddof=1)) if t.size > 1 else 0.0
        n_trials = int(t.size)
    elif sr_variance is None or n_trials is None:
        raise ValueError("give trial_srs or both sr_variance and n_trials")
    sr0 = expected_max_sharpe(sr_variance, n_trials)
    return probabilistic_sharpe_ratio(sr, sr0, n_obs, skew, kurtosis)


# --------------------------------------------------------------------------------------
# PBO by combinatorially symmetric cross-validation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PBOResult:
    """The outcome of CSCV (Bailey, Borwein, López de Prado & Zhu 2017).

    Attributes:
        pbo: share of the combinations whose logit is ≤ 0 (the in-sample best is at or
            below the out-of-sample median).
        logits: λ = ln(ω / (1 − ω)) per combination.
        omega: ω = rank / (N + 1), the relative out-of-sample rank of the in-sample best
            (rank 1 = worst out of sample, N = best; ties take their average rank).
        best_is: index (row of the input) of the configuration chosen in sample.
        is_sharpe, oos_sharpe: per-period Sharpe ratio of that configuration in and out
            of sample (NaN where undefined).
        in_sample: (n_combinations, S) bool, the blocks forming each in-sample half.
        n_combinations: C(S, S/2); n_configs: N; n_blocks: S.
    """

    pbo: float
    logits: np.ndarray
    omega: np.ndarray
    best_is: np.ndarray
    is_sharpe: np.ndarray
    oos_sharpe: np.ndarray
    in_sample: np.ndarray
    n_combinations: int
    n_configs: int
    n_blocks: int

    @property
    def prob_oos_loss(self) -> float:
        """Share of combinations whose in-sample best loses out of sample (OOS Sharpe < 0)."""
        return float(np.mean(self.oos_sharpe < 0.0))


def block_stats(returns: Any, n_blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-block sum, sum of squares and count of returns, the input of
    :func:`pbo_from_block_stats`.

    ``returns`` is (T,) or (N, T) (one row a configuration); the T bars are cut into S =
    ``n_blocks`` contiguous blocks as the engine cuts a run's returns when a sweep stores
    its block columns: block b is bars ``b*T//S .. (b+1)*T//S - 1``, so the two give the
    same blocks for the same returns. NaN returns are skipped (not counted). Returns three
    arrays of shape (S,) or (N, S): float64 sums and sums of squares, int64 counts.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim not in (1, 2):
        raise ValueError(f"returns must be (T,) or (N, T), got shape {r.shape}")
    T = r.shape[-1]
    if not 1 <= n_blocks <= T:
        raise ValueError(f"n_blocks must be in 1..{T} (the number of bars), got {n_blocks}")
    edges = np.arange(n_blocks + 1) * T // n_blocks  # engine.nb.metrics.metrics_with_blocks
    ok = ~np.isnan(r)
    z = np.where(ok, r, 0.0)
    sums = np.add.reduceat(z, edges[:-1], axis=-1)
    sumsq = np.add.reduceat(z * z, edges[:-1], axis=-1)
    counts = np.add.reduceat(ok.astype(np.int64), edges[:-1], axis=-1)
    return sums, sumsq, counts


def _sharpe_of(s: np.ndarray, q: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (q - s * s / n) / (n - 1.0)
        sr = (s / n) / np.sqrt(var)
    return np.where((n >= 2) & (var > 0.0), sr, np.nan)


def pbo_from_block_stats(sums: Any, sumsq: Any, counts: Any, *, tile: int = 4096,
                         threads: int | None = None) -> PBOResult:
    """Probability of backtest overfitting by CSCV (Bailey, Borwein, López de Prado & Zhu
    2017, "The Probability of Backtest Overfitting"), from per-block return statistics.

    Args:
        sums, sumsq: (N, S) float arrays: for each of N configurations and each of S
            contiguous blocks of the backtest period, the sum and the sum of squares of
            the per-period returns.
        counts: (N, S) or (S,) number of returns in each block.
        tile: configurations processed together (a cache-size knob; the result does not
            depend on it).
        threads: threads sharing the configurations (default: the CPUs this process may
            use); the result does not depend on it either.

    For each of the C(S, S/2) ways to pick S/2 blocks as the in-sample half (the rest is
    out of sample), the configuration with the highest in-sample Sharpe ratio is chosen
    (the first one on ties), and its out-of-sample Sharpe ratio is ranked among all N:
    rank = (number of configurations below it) + (number tied with it, itself included
    + 1) / 2, i.e. the average rank of its tie group, so ω = rank / (N + 1) ∈ (0, 1) and
    λ = ln(ω / (1 − ω)). PBO is the share of combinations with λ ≤ 0.

    The Sharpe ratio is per period, mean / std with ``ddof=1`` (``engine.nb.metrics.sharpe``
    without annualisation, which does not change ranks), computed as
    ``(s/n) / sqrt((q − s²/n) / (n − 1))`` on the union of the blocks. Undefined Sharpe
    ratios (fewer than 2 returns) rank below everything; a half with zero variance ranks as
    Sharpe 0 if its returns are all zero (a run that did not trade), ±inf otherwise.

    Cost: the in-sample halves holding block 0 are visited in revolving-door order, so each
    step moves one block in and one out (a few adds per configuration); the out-of-sample
    half is total − in-sample and is itself the in-sample half of the complementary
    combination. Two passes over C(S, S/2)/2 steps × N configurations, no square roots;
    N = 100,000 and S = 16 take 4-7 s on one core, depending on the CPU (~40 % more when
    the counts differ between configurations), plus ~3 s of JIT compilation on the first
    call without a Numba cache; ``threads`` cores divide that.
    """
    sums = np.asarray(sums, dtype=np.float64)
    sumsq = np.asarray(sumsq, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if sums.ndim != 2 or sumsq.shape != sums.shape:
        raise ValueError(
            f"sums and sumsq must both be (N, S); got {sums.shape} and {sumsq.shape}")
    N, S = sums.shape
    if counts.ndim == 1 and counts.shape == (S,):
        counts = np.broadcast_to(counts, (N, S))
    if counts.shape != (N, S):
        raise ValueError(f"counts must be (N, S) = {(N, S)} or (S,), got {counts.shape}")
    if S < 2 or S % 2:
        raise ValueError(f"the number of blocks S must be even and >= 2, got {S}")
    if N < 2:
        raise ValueError(f"PBO needs at least 2 configurations, got {N}")
    bad = ~(np.isfinite(sums) & np.isfinite(sumsq) & np.isfinite(counts)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} configuration(s) have non-finite block stats (first: row "
            f"{int(np.flatnonzero(bad)[0])}); drop failed runs first")
    if (counts < 0).any():
        raise ValueError("counts must be >= 0")
    # Every partial sum over the blocks must be finite too (the kernels add and subtract
    # blocks and take totals minus halves): a row whose magnitudes overflow has no keys.
    with np.errstate(over="ignore"):
        huge = ~(np.isfinite(np.abs(sums).sum(axis=1))
                 & np.isfinite(np.abs(sumsq).sum(axis=1)) & np.isfinite(counts.sum(axis=1)))
    if huge.any():
        raise ValueError(
            f"{int(huge.sum())} configuration(s) have block stats whose sum over the blocks "
            f"overflows (first: row {int(np.flatnonzero(huge)[0])}); rescale the returns")
    masks, swap_in, swap_out = cscv_schedule(S)
    Sb = np.ascontiguousarray(sums.T)
    Qb = np.ascontiguousarray(sumsq.T)
    Cb = np.ascontiguousarray(counts.T)
    uniform = bool((counts == counts[0]).all())
    n_in = (masks * counts[0]).sum(axis=1)      # used only when uniform
    n_out = counts[0].sum() - n_in
    if threads is None:
        from cluster import default_workers  # the cores this process may use

        threads = default_workers()
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    best_a, best_b, less_a, eq_a, less_b, eq_b = cscv(
        Sb, Qb, Cb, masks[0].copy(), swap_in, swap_out, n_in, n_out, uniform,
        int(max(1, min(tile, N))), int(threads))
    in_sample = np.concatenate([masks, ~masks])
    best = np.concatenate([best_a, best_b])
    rank = np.concatenate([less_a, less_b]) + (np.concatenate([eq_a, eq_b]) + 1) / 2.0
    omega = rank / (N + 1.0)
    logits = np.log(omega / (1.0 - omega))
    m = in_sample.astype(np.float64)
    is_s = _sharpe_of((sums[best] * m).sum(1), (sumsq[best] * m).sum(1),
                      (counts[best] * m).sum(1))
    oos_s = _sharpe_of((sums[best] * (1 - m)).sum(1), (sumsq[best] * (1 - m)).sum(1),
                       (counts[best] * (1 - m)).sum(1))
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        omega=omega,
        best_is=best,
        is_sharpe=is_s,
        oos_sharpe=oos_s,
        in_sample=in_sample,
        n_combinations=int(in_sample.shape[0]),
        n_configs=int(N),
        n_blocks=int(S),
    )
