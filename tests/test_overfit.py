"""sweep.overfit: Φ / Φ⁻¹ against scipy, PSR / expected max Sharpe / DSR against the papers'
formulas written out by hand, and PBO by CSCV against a brute-force computation from the
raw return series."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import strategies
from sweep.cscv import _max, cscv_schedule
from sweep.overfit import (
    EULER_GAMMA,
    block_stats,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    norm_cdf,
    norm_ppf,
    pbo_from_block_stats,
    probabilistic_sharpe_ratio,
)

norm = scipy.stats.norm


# --------------------------------------------------------------------------------------
# Φ and Φ⁻¹
# --------------------------------------------------------------------------------------


def test_norm_cdf_matches_scipy():
    x = np.concatenate([np.linspace(-37.0, 37.0, 20001), [0.0, -1e-300, 1e-12]])
    got = norm_cdf(x)
    want = norm.cdf(x)
    assert np.max(np.abs(got - want)) < 1e-15
    tail = x < -5
    np.testing.assert_allclose(got[tail], want[tail], rtol=1e-12, atol=0)
    assert isinstance(norm_cdf(0.3), float)
    assert norm_cdf(0.0) == 0.5


def test_norm_ppf_matches_scipy_to_1e9():
    p = np.concatenate([
        np.logspace(-300, -1, 3000),
        np.linspace(1e-6, 1 - 1e-6, 20001),
        1.0 - np.logspace(-16, -1, 3000),
        [0.02425, 1 - 0.02425, 0.5],
    ])
    got = norm_ppf(p)
    want = norm.ppf(p)
    # Acklam alone is good to ~1e-9 relative; the Halley step brings it to rounding level.
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(got - want)) < 1e-9
    assert norm_ppf(0.0) == -math.inf and norm_ppf(1.0) == math.inf
    assert math.isnan(norm_ppf(-0.1)) and math.isnan(norm_ppf(1.5))
    assert math.isnan(norm_ppf(math.nan))
    assert norm_ppf(0.5) == 0.0
    # round trip (above ~5, Φ(x) = 1 - tiny loses the digits that Φ⁻¹ would need)
    x = np.linspace(-8, 4, 1001)
    np.testing.assert_allclose(norm_ppf(norm_cdf(x)), x, atol=1e-9)


# --------------------------------------------------------------------------------------
# PSR, expected maximum Sharpe, DSR
# --------------------------------------------------------------------------------------


def test_psr_matches_formula_with_scipy():
    rng = np.random.default_rng(3)
    sr = rng.normal(0.05, 0.05, 200)
    bench = rng.normal(0.0, 0.03, 200)
    n = rng.integers(20, 3000, 200)
    g3 = rng.normal(0, 1, 200)
    g4 = rng.uniform(2.0, 12.0, 200)
    want = norm.cdf((sr - bench) * np.sqrt(n - 1) / np.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    got = probabilistic_sharpe_ratio(sr, bench, n, g3, g4)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    one = probabilistic_sharpe_ratio(sr[0], bench[0], n[0], g3[0], g4[0])
    assert isinstance(one, float) and one == pytest.approx(want[0], rel=1e-12)
    # SR equal to the benchmark: exactly one half
    assert probabilistic_sharpe_ratio(0.1, 0.1, 500, -1.0, 6.0) == 0.5
    # undefined: too few observations or a non-positive variance term
    assert math.isnan(probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0))
    assert math.isnan(probabilistic_sharpe_ratio(1.0, 0.0, 100, 5.0, 3.0))


def test_expected_max_sharpe_by_hand():
    V, N = 0.0004, 250
    want = math.sqrt(V) * ((1 - 0.5772156649015329) * norm.ppf(1 - 1 / N)
                           + 0.5772156649015329 * norm.ppf(1 - 1 / (N * math.e)))
    assert expected_max_sharpe(V, N) == pytest.approx(want, rel=1e-12)
    assert abs(EULER_GAMMA - 0.5772156649015329) < 1e-16
    assert expected_max_sharpe(V, 1) == 0.0
    assert expected_max_sharpe(0.0, 100) == 0.0
    # grows with the number of trials
    vals = [expected_max_sharpe(V, n) for n in (2, 10, 100, 1000, 10**6)]
    assert vals == sorted(vals)
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(V, 0)
    with pytest.raises(ValueError, match="sr_variance"):
        expected_max_sharpe(-1.0, 10)


def test_dsr_hand_computed_raw_not_excess_kurtosis():
    """A hand computation (per-period SR 0.2 over 500 bars, skew -1, RAW kurtosis 8, the
    best of 50 trials whose SRs have variance 0.003).

    The raw-kurtosis formula and the one vectorbt effectively uses (excess kurtosis 5 in
    the (γ4 − 1)/4 term) give clearly different answers; ours is the former."""
    sr, T, g3, g4, V, N = 0.2, 500, -1.0, 8.0, 0.003, 50
    g = 0.5772156649015329
    sr0 = math.sqrt(V) * ((1 - g) * norm.ppf(1 - 1 / N) + g * norm.ppf(1 - 1 / (N * math.e)))
    # sr0 = 0.054772 * (0.422784 * 2.053749 + 0.577216 * 2.439314) = 0.124678
    assert sr0 == pytest.approx(0.124678, abs=1e-6)
    var_raw = 1 - g3 * sr + (g4 - 1) / 4 * sr**2           # 1 + 0.2 + 0.07 = 1.27
    var_excess = 1 - g3 * sr + ((g4 - 3) - 1) / 4 * sr**2  # 1 + 0.2 + 0.04 = 1.24
    assert var_raw == pytest.approx(1.27) and var_excess == pytest.approx(1.24)
    dsr_raw = norm.cdf((sr - sr0) * math.sqrt(T - 1) / math.sqrt(var_raw))
    dsr_excess = norm.cdf((sr - sr0) * math.sqrt(T - 1) / math.sqrt(var_excess))
    got = deflated_sharpe_ratio(sr, T, g3, g4, sr_variance=V, n_trials=N)
    assert got == pytest.approx(dsr_raw, rel=1e-12)
    # z = (0.2 - 0.124678) * sqrt(499) / sqrt(1.27) = 1.49303 -> Φ(z) = 0.93229
    # (with 1.24 instead: z = 1.51098 -> 0.93460)
    assert got == pytest.approx(0.932285, abs=1e-6)
    assert dsr_excess == pytest.approx(0.934604, abs=1e-6)
    assert abs(got - dsr_excess) > 2e-3


def test_dsr_paper_example():
    """Bailey & López de Prado (2014), section 'A numerical example': annualised SR 2.5
    over 5 years of daily data (T = 1250, 250 days a year), γ3 = −3, γ4 = 10, N = 100
    trials with annualised variance 0.5 → SR0 ≈ 0.1132 per day and DSR ≈ 0.9004."""
    sr = 2.5 / math.sqrt(250)
    assert expected_max_sharpe(0.5 / 250, 100) == pytest.approx(0.1132, abs=1e-4)
    dsr = deflated_sharpe_ratio(sr, 1250, -3.0, 10.0, sr_variance=0.5 / 250, n_trials=100)
    assert dsr == pytest.approx(0.9004, abs=1e-4)
    # with excess kurtosis (7) fed in, as vectorbt does, the answer moves
    wrong = deflated_sharpe_ratio(sr, 1250, -3.0, 7.0, sr_variance=0.5 / 250, n_trials=100)
    assert wrong == pytest.approx(0.9017, abs=1e-4)


def test_dsr_from_trial_srs():
    rng = np.random.default_rng(11)
    trials = rng.normal(0.0, 0.04, 300)
    trials[5] = np.nan                     # a failed run: ignored
    finite = trials[np.isfinite(trials)]
    want = deflated_sharpe_ratio(0.15, 800, 0.1, 4.0, sr_variance=float(np.var(finite, ddof=1)),
                                 n_trials=finite.size)
    assert deflated_sharpe_ratio(0.15, 800, 0.1, 4.0, trials) == pytest.approx(want, rel=1e-14)
    sr0 = expected_max_sharpe(float(np.var(finite, ddof=1)), finite.size)
    assert want == pytest.approx(probabilistic_sharpe_ratio(0.15, sr0, 800, 0.1, 4.0))
    with pytest.raises(ValueError, match="not both"):
        deflated_sharpe_ratio(0.1, 100, 0, 3, trials, n_trials=3)
    with pytest.raises(ValueError, match="trial_srs or both"):
        deflated_sharpe_ratio(0.1, 100, 0, 3, sr_variance=0.1)
    with pytest.raises(ValueError, match="no finite"):
        deflated_sharpe_ratio(0.1, 100, 0, 3, [np.nan])


# --------------------------------------------------------------------------------------
# block_stats
# --------------------------------------------------------------------------------------


def test_block_stats():
    rng = np.random.default_rng(0)
    R = rng.normal(size=(4, 23))
    sums, sumsq, counts = block_stats(R, 5)
    assert sums.shape == sumsq.shape == counts.shape == (4, 5)
    assert counts.dtype == np.int64
    parts = [np.arange(b * 23 // 5, (b + 1) * 23 // 5) for b in range(5)]
    for b, idx in enumerate(parts):
        np.testing.assert_allclose(sums[:, b], R[:, idx].sum(1), rtol=1e-13)
        np.testing.assert_allclose(sumsq[:, b], (R[:, idx] ** 2).sum(1), rtol=1e-13)
        assert (counts[:, b] == len(idx)).all()
    assert counts[0].tolist() == [4, 5, 4, 5, 5]  # bars 0-3, 4-8, 9-12, 13-17, 18-22
    s1, _, _ = block_stats(R[2], 5)
    assert s1.shape == (5,)
    np.testing.assert_array_equal(s1, sums[2])
    # NaN returns are skipped
    R[1, 3] = np.nan
    s, _, c = block_stats(R, 5)
    assert c[1, 0] == 3 and c[0, 0] == 4
    assert s[1, 0] == pytest.approx(np.nansum(R[1, :4]))
    with pytest.raises(ValueError, match="n_blocks"):
        block_stats(R, 24)
    with pytest.raises(ValueError, match="shape"):
        block_stats(np.zeros((2, 2, 2)), 1)


def test_block_stats_cut_returns_as_the_engine_does():
    """A sweep's stored block columns and block_stats of the same run's returns are the same
    blocks (checked where T % S != 0, the case where the two could disagree)."""
    from engine import EngineConfig, run_backtest
    from engine.data import synthetic_panel
    from sweep.evaluate import evaluate_table
    from sweep.grid import Grid

    strategy = strategies.get("ma_cross")
    panel = synthetic_panel(n_assets=3, n_bars=203, seed=4)
    cfg = EngineConfig(commission=0.001)
    table = Grid.build(strategy, {"fast": [5], "slow": [30]}).frame()
    row = evaluate_table(panel, strategy, table, cfg, blocks=6).row(0, named=True)
    equity = run_backtest(panel, strategy.weights(panel, fast=5, slow=30), cfg).equity
    returns = equity / np.concatenate([[cfg.init_cash], equity[:-1]]) - 1.0
    sums, sumsq, counts = block_stats(returns, 6)
    assert row["block_n"] == counts.tolist() == [33, 34, 34, 34, 34, 34]
    np.testing.assert_allclose(row["block_sum"], sums, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(row["block_sumsq"], sumsq, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------
# PBO
# --------------------------------------------------------------------------------------


def _sharpe_rows(r: np.ndarray) -> np.ndarray:
    """Per-period Sharpe (ddof=1) of each row from the raw returns (NaN skipped), with the
    module's conventions: fewer than 2 returns -> -inf, zero variance -> 0 if the mean is
    0 else ±inf."""
    out = np.empty(r.shape[0])
    for i, row in enumerate(r):
        x = row[~np.isnan(row)]
        if x.size < 2:
            out[i] = -np.inf
            continue
        m, sd = x.mean(), x.std(ddof=1)
        out[i] = m / sd if sd > 0 else (0.0 if m == 0 else math.copysign(math.inf, m))
    return out


def brute_force_pbo(R: np.ndarray, S: int) -> dict[tuple[int, ...], tuple[int, float]]:
    """CSCV straight from the paper: every S/2-subset of the S blocks, the full Sharpe of
    each configuration on the concatenated in- and out-of-sample returns, the first index
    on in-sample ties, average ranks on out-of-sample ties. Blocks as the engine cuts
    them: block b is bars b*T//S .. (b+1)*T//S - 1."""
    N, T = R.shape
    blocks = [np.arange(b * T // S, (b + 1) * T // S) for b in range(S)]
    out = {}
    for combo in itertools.combinations(range(S), S // 2):
        is_idx = np.concatenate([blocks[b] for b in combo])
        oos_idx = np.concatenate([blocks[b] for b in range(S) if b not in combo])
        is_sr = _sharpe_rows(R[:, is_idx])
        oos_sr = _sharpe_rows(R[:, oos_idx])
        best = int(np.argmax(is_sr))
        rank = (oos_sr < oos_sr[best]).sum() + ((oos_sr == oos_sr[best]).sum() + 1) / 2
        omega = rank / (N + 1)
        out[combo] = (best, math.log(omega / (1 - omega)))
    return out


def check_against_brute_force(R: np.ndarray, S: int, tile: int = 4096, threads: int = 1
                              ) -> None:
    want = brute_force_pbo(R, S)
    res = pbo_from_block_stats(*block_stats(R, S), tile=tile, threads=threads)
    assert res.n_combinations == len(want) == math.comb(S, S // 2)
    seen = set()
    for k in range(res.n_combinations):
        combo = tuple(int(b) for b in np.flatnonzero(res.in_sample[k]))
        seen.add(combo)
        best, logit = want[combo]
        assert res.best_is[k] == best, (combo, best, res.best_is[k])
        assert res.logits[k] == pytest.approx(logit, abs=1e-12), combo
    assert seen == set(want)
    logits = np.array([v[1] for v in want.values()])
    assert res.pbo == pytest.approx(np.mean(logits <= 0), abs=1e-15)


@pytest.mark.parametrize("seed", range(30))
def test_pbo_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    N = int(rng.integers(5, 51))
    S = int(rng.choice([4, 6, 8]))
    T = int(rng.integers(3 * S, 200))
    # configurations with different true means, so selection is not pure noise
    R = rng.normal(rng.normal(0.0, 0.002, (N, 1)), 0.01, (N, T))
    tile = int(rng.choice([1, 3, 7, 4096]))
    check_against_brute_force(R, S, tile, threads=int(rng.integers(1, 5)))


@pytest.mark.parametrize("seed", range(10))
def test_pbo_ties_and_degenerate_runs(seed):
    """Ties: duplicated configurations (identical returns) tie in and out of sample.
    In sample the lowest index wins; out of sample the chosen one takes the average
    rank of its tie group. Runs that never trade (all-zero returns) rank as Sharpe 0."""
    rng = np.random.default_rng(100 + seed)
    N, S = int(rng.integers(6, 30)), int(rng.choice([4, 6, 8]))
    T = int(rng.integers(4 * S, 150))
    R = rng.normal(rng.normal(0.0, 0.003, (N, 1)), 0.01, (N, T))
    src = rng.integers(0, N, N // 2)
    dst = rng.integers(0, N, N // 2)
    R[dst] = R[src]
    R[rng.integers(0, N)] = 0.0
    check_against_brute_force(R, S, tile=int(rng.choice([2, 5, 4096])),
                              threads=int(rng.integers(1, 5)))


def test_pbo_duplicates_of_the_winner_take_the_average_rank():
    rng = np.random.default_rng(5)
    R = rng.normal(0.0, 0.01, (6, 80))
    R[2] += 0.01           # the best everywhere ...
    R[4] = R[2]            # ... twice
    res = pbo_from_block_stats(*block_stats(R, 4))
    assert (res.best_is == 2).all()                     # the first of the tied pair
    np.testing.assert_allclose(res.omega, 5.5 / 7)      # ranks 5 and 6 -> 5.5 of N + 1 = 7
    assert res.pbo == 0.0


@pytest.mark.parametrize("uneven", [False, True])
def test_pbo_is_the_same_for_any_thread_count(uneven):
    """Threads split the configurations into ranges; ties between ranges (a copy of the
    winner in every range, runs that never trade) still go to the lowest index, and the
    result is identical, not just close, for any thread count."""
    rng = np.random.default_rng(31)
    N, S = 400, 8
    R = rng.normal(rng.normal(0.0, 0.003, (N, 1)), 0.01, (N, 240))
    if uneven:
        R[rng.random(R.shape) < 0.05] = np.nan
    R[[10, 110, 210, 390]] = R[10] + 0.05      # the best, once in each of 4 ranges
    R[[50, 150, 250, 350]] = 0.0
    stats = block_stats(R, S)
    one = pbo_from_block_stats(*stats, tile=16, threads=1)
    assert (one.best_is == 10).all()
    for threads in (2, 3, 4, 7, 64):
        res = pbo_from_block_stats(*stats, tile=16, threads=threads)
        for field in ("logits", "omega", "best_is", "is_sharpe", "oos_sharpe", "in_sample"):
            np.testing.assert_array_equal(getattr(res, field), getattr(one, field), field)
        assert res.pbo == one.pbo


def test_pbo_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        pbo_from_block_stats(*block_stats(np.ones((3, 40)), 4), threads=0)


@pytest.mark.parametrize("seed", range(4))
def test_pbo_with_uneven_counts_matches_brute_force(seed):
    """NaN returns (a run without a bar) give per-configuration counts: the general path."""
    rng = np.random.default_rng(200 + seed)
    N, S, T = 25, 6, 120
    R = rng.normal(rng.normal(0.0, 0.002, (N, 1)), 0.01, (N, T))
    R[rng.random((N, T)) < 0.1] = np.nan
    R[3, :40] = np.nan                 # a run starting late: its first block is empty
    check_against_brute_force(R, S, tile=int(rng.choice([4, 4096])), threads=1 + seed)


def test_pbo_mid_size_matches_matrix_computation():
    """N = 3000, S = 12: the incremental, tiled kernel against a dense computation of
    every half's Sharpe ratio from the block stats (masks as a matrix product)."""
    rng = np.random.default_rng(9)
    N, S = 3000, 12
    sums, sumsq, counts = block_stats(rng.normal(rng.normal(0, 5e-4, (N, 1)), 0.01, (N, 1200)), S)
    res = pbo_from_block_stats(sums, sumsq, counts, tile=1000)
    m = res.in_sample.T.astype(np.float64)            # (S, C)

    def sharpe(s, q, n):
        return (s / n) / np.sqrt((q - s * s / n) / (n - 1))

    is_sr = sharpe(sums @ m, sumsq @ m, counts @ m)                 # (N, C)
    oos_sr = sharpe(sums @ (1 - m), sumsq @ (1 - m), counts @ (1 - m))
    best = np.argmax(is_sr, axis=0)
    np.testing.assert_array_equal(res.best_is, best)
    chosen = oos_sr[best, np.arange(best.size)]
    rank = (oos_sr < chosen).sum(0) + ((oos_sr == chosen).sum(0) + 1) / 2
    np.testing.assert_allclose(res.omega, rank / (N + 1), atol=1e-12)
    np.testing.assert_allclose(res.is_sharpe, is_sr[best, np.arange(best.size)], rtol=1e-10)
    np.testing.assert_allclose(res.oos_sharpe, chosen, rtol=1e-10)
    assert res.prob_oos_loss == pytest.approx(np.mean(chosen < 0))


def test_pbo_best_everywhere_is_near_zero():
    rng = np.random.default_rng(1)
    R = rng.normal(0.0, 0.01, (200, 2000))
    R[7] += 0.003                         # a real edge, present in every block
    res = pbo_from_block_stats(*block_stats(R, 10))
    assert (res.best_is == 7).all()
    assert res.pbo == 0.0
    assert (res.omega > 0.95).all()
    assert res.prob_oos_loss == 0.0


def test_pbo_pure_noise_is_near_one_half():
    """No configuration has an edge: the in-sample winner's out-of-sample rank is uniform,
    so PBO is 1/2 on average (one data set's PBO is noisy: the combinations overlap)."""
    pbos = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        res = pbo_from_block_stats(*block_stats(rng.normal(0.0, 0.01, (200, 1600)), 8))
        assert 0.1 < res.pbo < 0.9
        pbos.append(res.pbo)
    assert np.mean(pbos) == pytest.approx(0.5, abs=0.12)


def test_pbo_result_layout():
    rng = np.random.default_rng(2)
    res = pbo_from_block_stats(*block_stats(rng.normal(0.0, 0.01, (10, 100)), 6))
    C = math.comb(6, 3)
    assert res.n_combinations == C and res.n_configs == 10 and res.n_blocks == 6
    for a in (res.logits, res.omega, res.best_is, res.is_sharpe, res.oos_sharpe):
        assert a.shape == (C,)
    assert res.in_sample.shape == (C, 6) and (res.in_sample.sum(1) == 3).all()
    assert len({tuple(r) for r in res.in_sample}) == C
    # the second half of the combinations are the complements of the first half
    np.testing.assert_array_equal(res.in_sample[C // 2:], ~res.in_sample[: C // 2])
    assert ((res.omega > 0) & (res.omega < 1)).all()
    np.testing.assert_allclose(res.logits, np.log(res.omega / (1 - res.omega)))
    # counts may be given once for all configurations
    s, q, c = block_stats(rng.normal(0.0, 0.01, (10, 100)), 6)
    a = pbo_from_block_stats(s, q, c)
    b = pbo_from_block_stats(s, q, c[0])
    np.testing.assert_array_equal(a.logits, b.logits)


@pytest.mark.parametrize("S", [2, 4, 6, 8, 10, 12, 16])
def test_cscv_schedule_is_a_revolving_door(S):
    masks, swap_in, swap_out = cscv_schedule(S)
    assert masks.shape == (math.comb(S, S // 2) // 2, S)
    assert masks[:, 0].all() and (masks.sum(1) == S // 2).all()
    assert len({m.tobytes() for m in masks}) == masks.shape[0]
    for j in range(1, masks.shape[0]):
        d = masks[j].astype(int) - masks[j - 1].astype(int)
        assert np.flatnonzero(d == 1).tolist() == [swap_in[j]]
        assert np.flatnonzero(d == -1).tolist() == [swap_out[j]]


def test_cscv_schedule_step_zero_moves_nothing():
    # The kernels advance every step alike: step 0 "moves" block 0 in and out (+ 0.0).
    _, swap_in, swap_out = cscv_schedule(8)
    assert swap_in[0] == swap_out[0] == 0


@settings(max_examples=200)
@given(st.lists(st.one_of(
    st.floats(allow_nan=False),
    st.sampled_from([0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324, 1e308, -1e308])),
    min_size=1, max_size=70), st.data())
def test_cscv_max_is_numpys_max(keys, data):
    """``_max`` takes the max of the keys' integer images (sign-magnitude bits turned into
    an order-preserving int64): the same key as numpy's max, bit for bit, including ±inf,
    subnormals and negative keys, over any prefix length."""
    x = np.array(keys)
    m = data.draw(st.integers(1, len(keys)))
    got = _max(x, m)
    want = np.max(x[:m])
    if want != 0.0:
        assert np.float64(got).tobytes() == np.float64(want).tobytes()
    else:  # of 0.0 and -0.0 either is a right answer (they compare equal, as ranks need)
        assert got == 0.0


def test_pbo_input_errors():
    s = np.zeros((5, 4))
    with pytest.raises(ValueError, match="even"):
        pbo_from_block_stats(np.zeros((5, 3)), np.zeros((5, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="at least 2 configurations"):
        pbo_from_block_stats(np.zeros((1, 4)), np.zeros((1, 4)), np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"\(N, S\)"):
        pbo_from_block_stats(np.zeros(4), np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match="counts"):
        pbo_from_block_stats(s, s, np.ones((5, 3)))
    bad = s.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="row 2"):
        pbo_from_block_stats(bad, s, np.ones((5, 4)))
    # finite blocks whose total overflows (inf - inf would make NaN keys in the kernels)
    big = s.copy()
    big[3, :2] = 1e308
    with pytest.raises(ValueError, match=r"overflows \(first: row 3\)"):
        pbo_from_block_stats(big, s, np.ones((5, 4)))
    counts = np.ones((5, 4))
    counts[1] = 1.7e308
    with pytest.raises(ValueError, match=r"overflows \(first: row 1\)"):
        pbo_from_block_stats(s, s, counts)
