"""Combinatorially symmetric cross-validation (CSCV) for PBO, compiled: the schedule of
in-sample halves and the two passes over the trials (see
:func:`sweep.overfit.pbo_from_block_stats`, the API and the definitions).

The in-sample halves holding block 0 are visited in revolving-door order, so each step
moves one block in and one out (a few adds per configuration); the out-of-sample half is
total minus in-sample and is itself the in-sample half of the complementary combination.
Configurations go through in tiles (cache-sized), on several threads (the kernels are
``nogil``), merged with the tiles' tie rule, so results do not depend on either.
"""

from __future__ import annotations

import contextlib
import itertools
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from numba import njit

from engine.nb.bits import bits_float

__all__ = ["cscv", "cscv_schedule"]


@lru_cache(maxsize=8)
def _revolving_door(n: int, k: int) -> tuple[int, ...]:
    """All k-subsets of {0..n-1} as bitmasks, successive ones differing by one swap
    (the revolving-door Gray code: Γ(n,k) = Γ(n−1,k), then reversed Γ(n−1,k−1) ∪ {n−1};
    Knuth, TAOCP 7.2.1.3)."""
    if k == 0:
        return (0,)
    if k == n:
        return ((1 << n) - 1,)
    top = 1 << (n - 1)
    return _revolving_door(n - 1, k) + tuple(m | top for m in
                                             reversed(_revolving_door(n - 1, k - 1)))


def cscv_schedule(S: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half of the C(S, S/2) in-sample sets: those holding block 0 (the others are their
    complements), in revolving-door order. Returns the masks (P, S) and, for each step
    j ≥ 1, the block entering and the block leaving the in-sample set (both 0 at step 0:
    a move that changes nothing)."""
    subsets = _revolving_door(S - 1, S // 2 - 1)
    P = len(subsets)
    masks = np.zeros((P, S), dtype=np.bool_)
    swap_in = np.zeros(P, dtype=np.int64)
    swap_out = np.zeros(P, dtype=np.int64)
    masks[:, 0] = True
    for j, m in enumerate(subsets):
        for b in range(S - 1):
            if m >> b & 1:
                masks[j, b + 1] = True
        if j:
            d_in = m & ~subsets[j - 1]
            d_out = subsets[j - 1] & ~m
            assert d_in.bit_count() == 1 and d_out.bit_count() == 1
            swap_in[j] = d_in.bit_length()        # bit b is block b + 1
            swap_out[j] = d_out.bit_length()
    return masks, swap_in, swap_out


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _key(s, q, n):
    """A number ordered as the Sharpe ratio mean/std (ddof=1) of n returns with sum s and
    sum of squares q: SR·|SR| = s|s|(n−1) / (n(nq − s²)), without a square root.
    n < 2 gives −inf (undefined: ranked last); zero variance gives 0 when the sum is 0
    (a run that did not trade) and ±inf otherwise. Never NaN (``_max`` relies on it;
    ``pbo_from_block_stats`` also refuses sums over the blocks that overflow), and written
    without branches, so that the loops calling it vectorise."""
    d = n * q - s * s
    d = d if d > 0.0 else 0.0
    num = s * abs(s) * (n - 1.0)
    # d == 0: num / 0 is ±inf, and 0 / 0 would be NaN: divide 0 by 1 instead.
    den = n * d if d > 0.0 else (0.0 if num != 0.0 else 1.0)
    k = num / den
    k = k if k == k else 0.0      # inf / inf: sums near the float range's end
    return k if n >= 2.0 else -np.inf


@njit(nogil=True, cache=True, error_model="numpy")
def _tile_init(Sb, Qb, Cb, first, a, b, s, q, c):
    for i in range(b - a):
        s[i] = 0.0
        q[i] = 0.0
        c[i] = 0.0
    for blk in range(first.shape[0]):
        if first[blk]:
            for i in range(b - a):
                s[i] += Sb[blk, a + i]
                q[i] += Qb[blk, a + i]
                c[i] += Cb[blk, a + i]


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _half_keys(si, qi, ci, x, St, Qt, Ct, ni, no, uniform):
    """Configuration x's keys on the in-sample half (sums si, qi, count ci) and on the
    out-of-sample half (the totals minus those). ``uniform``: every configuration has
    the same count in each block, so the halves' counts are the scalars ni, no and ``ci``
    is not read."""
    if not uniform:
        ni = ci
        no = Ct[x] - ci
    return _key(si, qi, ni), _key(St[x] - si, Qt[x] - qi, no)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _advance(Sb, Qb, Cb, St, Qt, Ct, bi, bo, ni, no, uniform, a, i, s, q, c):
    """Move configuration a + i's in-sample sums one step (block bi in, block bo out;
    step 0 passes bi == bo, which adds exactly 0.0) and return its two halves' keys."""
    x = a + i
    si = s[i] + (Sb[bi, x] - Sb[bo, x])
    qi = q[i] + (Qb[bi, x] - Qb[bo, x])
    s[i] = si
    q[i] = qi
    ci = 0.0
    if not uniform:
        ci = c[i] + (Cb[bi, x] - Cb[bo, x])
        c[i] = ci
    return _half_keys(si, qi, ci, x, St, Qt, Ct, ni, no, uniform)


@njit(nogil=True, cache=True, error_model="numpy")
def _step_keys(Sb, Qb, Cb, St, Qt, Ct, bi, bo, ni, no, uniform, a, b, s, q, c, ka, kb):
    """One step over the tile a..b-1: sums and keys in one pass, the keys written to
    ``ka`` (in-sample half) and ``kb``."""
    # Two loops alike but for the literal: each compiles with ``uniform`` a constant, so
    # the uniform one neither tracks nor reads the per-configuration counts.
    if uniform:
        for i in range(b - a):
            ka[i], kb[i] = _advance(Sb, Qb, Cb, St, Qt, Ct, bi, bo, ni, no, True, a, i, s, q, c)
    else:
        for i in range(b - a):
            ka[i], kb[i] = _advance(Sb, Qb, Cb, St, Qt, Ct, bi, bo, ni, no, False, a, i, s, q, c)


@njit(nogil=True, cache=True, error_model="numpy")
def _max(x, m):
    """max(x[:m]) of keys (never NaN).

    Written by hand because Numba's LLVM vectorises no floating-point max reduction (not
    even with fastmath), and one running max is a chain of dependent instructions. A
    double's integer image ``bits ^ ((bits >> 63) & 0x7FF..F)`` orders as the double does
    (−0.0 just below 0.0), and an integer max reduction vectorises: 1.4 µs against 6.7 µs
    for 4,096 keys. The result is one of the keys, bit for bit."""
    bits = x.view(np.int64)
    v = np.iinfo(np.int64).min
    for i in range(m):
        k = bits[i]
        v = max(v, k ^ ((k >> 63) & 0x7FFFFFFFFFFFFFFF))
    return bits_float(v ^ ((v >> 63) & 0x7FFFFFFFFFFFFFFF))     # the map is its own inverse


@njit(nogil=True, cache=True, error_model="numpy")
def _count(ka, kb, m, ta, tb):
    """How many of kb[:m] are below / equal to ``ta``, and of ka[:m] below / equal to
    ``tb``."""
    la = ea = lb = eb = 0
    for i in range(m):
        la += kb[i] < ta
        ea += kb[i] == ta
        lb += ka[i] < tb
        eb += ka[i] == tb
    return la, ea, lb, eb


@njit(nogil=True, cache=True, error_model="numpy")
def _first(x, m, v):
    for i in range(m):
        if x[i] == v:
            return i
    return -1


@njit(nogil=True, cache=True, error_model="numpy")
def _totals(Sb, Qb, Cb):
    """Each configuration's sums over all S blocks, in block order."""
    S, N = Sb.shape
    St = np.zeros(N)
    Qt = np.zeros(N)
    Ct = np.zeros(N)
    for blk in range(S):
        for i in range(N):
            St[i] += Sb[blk, i]
            Qt[i] += Qb[blk, i]
            Ct[i] += Cb[blk, i]
    return St, Qt, Ct


@njit(nogil=True, cache=True, error_model="numpy")
def _tile_buffers(tile):
    """A tile's running sums (s, q, c) and its two halves' keys (ka, kb)."""
    return np.empty(tile), np.empty(tile), np.empty(tile), np.empty(tile), np.empty(tile)


@njit(nogil=True, cache=True, error_model="numpy")
def _cscv_best(Sb, Qb, Cb, St, Qt, Ct, first, swap_in, swap_out, n_in, n_out, uniform,
               tile, lo, hi):
    """Pass 1 over configurations lo..hi-1: for each step j (in-sample set A_j and its
    complement B_j), the in-sample best of A_j and of B_j (first index on ties), its
    in-sample key and its out-of-sample key. Configurations are processed in cache-sized
    tiles; a configuration's sums follow the same floating-point operations whatever its
    tile or range, so its keys are bit-identical in both passes."""
    P = swap_in.shape[0]
    best_a = np.full(P, -1, dtype=np.int64)
    best_b = np.full(P, -1, dtype=np.int64)
    key_a = np.full(P, -np.inf)     # in-sample key of the best of A_j
    key_b = np.full(P, -np.inf)
    oos_a = np.full(P, -np.inf)     # its out-of-sample key (on B_j)
    oos_b = np.full(P, -np.inf)
    s, q, c, ka, kb = _tile_buffers(tile)
    for a in range(lo, hi, tile):
        b = min(a + tile, hi)
        m = b - a
        _tile_init(Sb, Qb, Cb, first, a, b, s, q, c)
        for j in range(P):
            _step_keys(Sb, Qb, Cb, St, Qt, Ct, swap_in[j], swap_out[j], n_in[j], n_out[j],
                       uniform, a, b, s, q, c, ka, kb)
            v = _max(ka, m)
            if v > key_a[j] or best_a[j] < 0:     # strict: an earlier tile wins ties
                i = _first(ka, m, v)
                key_a[j] = v
                best_a[j] = a + i
                oos_a[j] = kb[i]
            v = _max(kb, m)
            if v > key_b[j] or best_b[j] < 0:
                i = _first(kb, m, v)
                key_b[j] = v
                best_b[j] = a + i
                oos_b[j] = ka[i]
    return best_a, best_b, key_a, key_b, oos_a, oos_b


@njit(nogil=True, cache=True, error_model="numpy")
def _cscv_rank(Sb, Qb, Cb, St, Qt, Ct, first, swap_in, swap_out, n_in, n_out, uniform,
               tile, lo, hi, oos_a, oos_b):
    """Pass 2 over configurations lo..hi-1: for each step, how many have an
    out-of-sample key smaller than / equal to that of the in-sample best of A_j (and of
    B_j). The chosen configuration's key is bit-identical here, so it counts as equal."""
    P = swap_in.shape[0]
    less_a = np.zeros(P, dtype=np.int64)
    eq_a = np.zeros(P, dtype=np.int64)
    less_b = np.zeros(P, dtype=np.int64)
    eq_b = np.zeros(P, dtype=np.int64)
    s, q, c, ka, kb = _tile_buffers(tile)
    for a in range(lo, hi, tile):
        b = min(a + tile, hi)
        _tile_init(Sb, Qb, Cb, first, a, b, s, q, c)
        for j in range(P):
            _step_keys(Sb, Qb, Cb, St, Qt, Ct, swap_in[j], swap_out[j], n_in[j], n_out[j],
                       uniform, a, b, s, q, c, ka, kb)
            la, ea, lb, eb = _count(ka, kb, b - a, oos_a[j], oos_b[j])
            less_a[j] += la
            eq_a[j] += ea
            less_b[j] += lb
            eq_b[j] += eb
    return less_a, eq_a, less_b, eq_b


def cscv(Sb: np.ndarray, Qb: np.ndarray, Cb: np.ndarray, first: np.ndarray,
          swap_in: np.ndarray, swap_out: np.ndarray, n_in: np.ndarray, n_out: np.ndarray,
          uniform: bool, tile: int, threads: int) -> tuple[np.ndarray, ...]:
    """Both CSCV passes, the configurations split into ``threads`` contiguous ranges run
    in threads (the kernels release the GIL). The ranges' pass-1 results are merged in
    range order with the tiles' rule (a later range wins only if strictly better), so
    the result is the same for any thread count."""
    N = Sb.shape[1]
    totals = _totals(Sb, Qb, Cb)
    common = (Sb, Qb, Cb, *totals, first, swap_in, swap_out, n_in, n_out, uniform, tile)
    n = max(1, min(threads, -(-N // tile)))
    edges = [N * k // n for k in range(n + 1)]
    ranges = list(itertools.pairwise(edges))
    with ThreadPoolExecutor(n) if n > 1 else contextlib.nullcontext() as pool:
        run = pool.map if pool is not None else map
        parts = list(run(lambda r: _cscv_best(*common, *r), ranges))
        best_a, best_b, key_a, key_b, oos_a, oos_b = parts[0]  # fresh arrays: merge in place
        for pa, pb, ka, kb, oa, ob in parts[1:]:
            take = ka > key_a
            best_a[take], key_a[take], oos_a[take] = pa[take], ka[take], oa[take]
            take = kb > key_b
            best_b[take], key_b[take], oos_b[take] = pb[take], kb[take], ob[take]
        counts = list(run(lambda r: _cscv_rank(*common, *r, oos_a, oos_b), ranges))
    less_a, eq_a, less_b, eq_b = (sum(x) for x in zip(*counts, strict=True))
    return best_a, best_b, less_a, eq_a, less_b, eq_b
