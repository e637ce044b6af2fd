"""The engine's Numba kernels, by phase (weights, fills, trades, stops, simulate, single,
metrics), with their shared layouts (layout), compile options (jit) and float bits (bits).

Importing this package imports Numba without SciPy. Numba imports ``scipy`` when it is
imported (a version check) and ``scipy.linalg``'s BLAS (~30 MB of resident memory) when
it first compiles or loads a kernel, if SciPy is installed, to run ``np.dot`` inside
``np.correlate`` / ``np.convolve`` on BLAS. No kernel here needs it: both are done while
SciPy is hidden (:func:`_numba_without_scipy`), so a backtest or a sweep never imports
SciPy. Nothing else changes: Numba's linear algebra (``np.linalg``, ``np.dot``) still
imports SciPy when a kernel uses it, and an ``import scipy`` anywhere works as usual;
only ``np.correlate`` / ``np.convolve`` in a kernel compiled in such a process use
Numba's own loop instead of BLAS.
"""

from __future__ import annotations

import importlib.abc
import sys


class _HideSciPy(importlib.abc.MetaPathFinder):
    """An import finder that makes ``scipy`` (and its submodules) look absent."""

    def find_spec(self, name, path=None, target=None):
        if name == "scipy" or name.startswith("scipy."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden while Numba loads)",
                                      name=name)
        return None


def _numba_without_scipy() -> None:
    """Import Numba and its array implementations (numba.np.arraymath, what its first
    compilation loads) with SciPy hidden, unless they are loaded already or SciPy's
    linear algebra is (then there is nothing to save)."""
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    finder = _HideSciPy()
    sys.meta_path.insert(0, finder)
    try:
        import numba
        import numba.np.arraymath  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


_numba_without_scipy()
