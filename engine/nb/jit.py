"""How the bar loop's small helpers are compiled: :data:`loop_helper`."""

from numba import njit

__all__ = ["loop_helper"]

loop_helper = njit(nogil=True, cache=True, error_model="numpy", _nrt=False)
"""``@loop_helper``: the compile options of a helper that the bar loop calls (does not
inline) many times a run -- each fill, each held asset of a bar, each quiet span -- with
array arguments: Numba's reference counting (NRT) off.

With it, every such call increfs each array argument on entry and decrefs it on each
return: a call through a function pointer to an atomic operation, per array, per call,
which Numba's refcount pruning leaves in place in a function with several returns. For
``engine.nb.fills.fill_order`` (three arrays) that was ~25 % of a 500-asset rebalancing
backtest (interleaved against the same code with NRT, same bits; benchmarks/README.md,
2026-12-06). The caller holds the references, so none is needed; and without NRT a helper
cannot allocate an array (Numba refuses to compile it), which such a helper must not do
anyway. Inlining the helper instead (``inline="always"``) keeps the counting and costs
seconds of cold compilation. ``_nrt`` is an option of Numba's CPU target (numba is pinned
in ci/constraints.txt).
"""
