"""The search space: the ``[grid]`` axes as Optuna distributions, and a proposal turned
back into a grid combination.

A trial IS a grid combination (its index ``combo``), so run ids, the store and resume are a
grid sweep's. Each axis becomes:

* a list: a categorical distribution of its values;
* ``{start, stop, step}``: an integer (or float) distribution with that step, exactly the
  axis's values;
* ``{start, stop, num}`` (``log = true``: a log scale): an integer or float distribution
  from the smallest to the largest value (log-scaled), a proposal snapped to the nearest
  value of the axis (nearest in log space for a log axis);
* a single value: fixed, not searched.

Example:
    >>> import strategies
    >>> from sweep.grid import Grid
    >>> raw = {"fast": {"start": 2, "stop": 20, "step": 2}, "kind": ["sma", "ema"]}
    >>> space = Space.build(Grid.build(strategies.get("ma_cross"), raw), raw)
    >>> space.kinds
    {'fast': 'stepped', 'kind': 'categorical'}
    >>> space.combo({"fast": 6, "kind": "ema"})   # fast is the 3rd value, kind the 2nd
    5
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweep.grid import Grid

__all__ = ["Axis", "Space"]


@dataclass(frozen=True)
class Axis:
    """One grid axis as the sampler sees it. ``kind``: categorical, stepped, nearest or
    fixed; ``step``: the stepped axis's step; ``log``: a nearest axis on a log scale."""

    name: str
    values: tuple[Any, ...]
    kind: str
    step: float = 0.0
    log: bool = False

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in self.values)

    def distribution(self) -> Any:
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == "categorical":
            return CategoricalDistribution(self.values)
        lo, hi = min(self.values), max(self.values)
        if self.kind == "stepped":
            if self.integer:
                return IntDistribution(lo, hi, step=int(self.step))
            return FloatDistribution(float(lo), float(hi), step=float(self.step))
        if self.integer:
            return IntDistribution(lo, hi, log=self.log)
        return FloatDistribution(float(lo), float(hi), log=self.log)

    def digit(self, value: Any) -> int:
        """The index in ``values`` of a proposed value (snapped to the axis)."""
        if self.kind == "fixed":
            return 0
        if self.kind == "categorical":
            for i, v in enumerate(self.values):
                if v is value or (type(v) is type(value) and v == value):
                    return i
            raise ValueError(f"{self.name}: {value!r} is not one of {self.values}")
        order = np.argsort(np.asarray(self.values, dtype=float), kind="stable")
        ordered = np.asarray(self.values, dtype=float)[order]
        x = float(value)
        if self.kind == "stepped":
            k = round((x - ordered[0]) / self.step)
        elif self.log:
            k = int(np.argmin(np.abs(np.log(ordered) - math.log(x))))
        else:
            k = int(np.argmin(np.abs(ordered - x)))
        return int(order[min(max(k, 0), len(ordered) - 1)])


@dataclass(frozen=True)
class Space:
    """The grid's axes as a sampler's search space (see the module docstring)."""

    grid: Grid
    axes: tuple[Axis, ...]

    @classmethod
    def build(cls, grid: Grid, raw: Mapping[str, Any]) -> Space:
        """From the built grid (its checked values) and the ``[grid]`` table as written
        (whether an axis was a list or a range)."""
        axes = []
        for name, values in grid.axes:
            spec = raw.get(name)
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool)
                          for v in values)
            if len(values) == 1:
                axes.append(Axis(name, values, "fixed"))
            elif not isinstance(spec, Mapping) or not numeric:
                axes.append(Axis(name, values, "categorical"))
            elif "num" in spec or spec.get("log"):
                axes.append(Axis(name, values, "nearest", log=bool(spec.get("log"))))
            else:
                axes.append(Axis(name, values, "stepped", step=abs(spec.get("step", 1))))
        return cls(grid, tuple(axes))

    @property
    def kinds(self) -> dict[str, str]:
        return {a.name: a.kind for a in self.axes}

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of the searched (not fixed) axes."""
        return {a.name: a.distribution() for a in self.axes if a.kind != "fixed"}

    def combo(self, params: Mapping[str, Any]) -> int:
        """The grid combination of a proposal (mixed radix, last axis fastest)."""
        combo, radix = 0, 1
        for a in reversed(self.axes):
            combo += a.digit(params.get(a.name)) * radix
            radix *= len(a.values)
        return combo

    def digits(self, combo: int) -> list[int]:
        """Each axis's value index in a combination (the inverse of :meth:`combo`)."""
        out = []
        for a in reversed(self.axes):
            combo, d = divmod(combo, len(a.values))
            out.append(d)
        return out[::-1]

    def from_digits(self, digits: list[int]) -> int:
        combo = 0
        for a, d in zip(self.axes, digits, strict=True):
            combo = combo * len(a.values) + d
        return combo

    def values(self, combo: int) -> dict[str, Any]:
        """The searched axes' values of a combination (a proposal Optuna can replay)."""
        return {a.name: a.values[d] for a, d in zip(self.axes, self.digits(combo), strict=True)
                if a.kind != "fixed"}

    def neighbours(self, combo: int) -> list[int]:
        """Combinations one step away: the next value up or down on one ordered axis (the
        axis's values are in range order), or another value of one categorical axis."""
        digits = self.digits(combo)
        out = []
        for i, a in enumerate(self.axes):
            n = len(a.values)
            if a.kind == "fixed":
                continue
            steps = [k for k in range(n) if k != digits[i]] if a.kind == "categorical" \
                else [k for k in (digits[i] - 1, digits[i] + 1) if 0 <= k < n]
            for k in steps:
                out.append(self.from_digits([*digits[:i], k, *digits[i + 1:]]))
        return out

    def nearest(self, combo: int, wanted: Any, rng: np.random.Generator,
                limit: int = 4096) -> int | None:
        """The nearest combination (fewest steps, see :meth:`neighbours`; ties in
        ``rng``'s order) for which ``wanted(combo)`` holds; None within ``limit`` visits."""
        seen = {combo}
        level = [combo]
        while level and len(seen) < limit:
            nxt = []
            for c in level:
                for nb in self.neighbours(c):
                    if nb not in seen:
                        seen.add(nb)
                        nxt.append(nb)
            nxt = [nxt[i] for i in rng.permutation(len(nxt))]
            for c in nxt:
                if wanted(c):
                    return c
            level = nxt
        return None

    def allowed(self, combo: int) -> bool:
        """Does the combination pass the grid's constraints?"""
        if not self.grid.constraints:
            return True
        return self.grid.take(np.array([combo], dtype=np.int64)).height == 1
