"""How the bar loop's small helpers are compiled: :data:`loop_helper`."""

from numba import njit

__all__ = ["LOOP_HELPER_OPTIONS", "loop_helper"]

LOOP_HELPER_OPTIONS = {"nogil": True, "cache": True, "error_model": "numpy", "_nrt": False}
"""The options of :data:`loop_helper`, for a helper compiled with a signature
(``strategies.base.fused_kernel``)."""
loop_helper = njit(**LOOP_HELPER_OPTIONS)
"""``@loop_helper``: the compile options of a helper that the bar loop calls (does not
inline) many times a run -- each fill, each held asset of a bar, each quiet span -- or a
grid loop once a run (``engine.nb.single.run_events``), with array arguments: Numba's
reference counting (NRT) off.

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
