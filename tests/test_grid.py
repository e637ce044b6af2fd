"""sweep.grid: axis values (lists, scalars, ranges), the cartesian product by index
arithmetic (Grid.size / block / frame), and constraints."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

import strategies
from sweep.grid import ENGINE_AXES, Grid, GridError, expand_values

MA = strategies.get("ma_cross")


# ------------------------------------------------------------------ expand_values
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ([5, 10, 20], [5, 10, 20]),
        ((1, 2), [1, 2]),
        (7, [7]),
        (0.5, [0.5]),
        ("ema", ["ema"]),
        (True, [True]),
        # {start, stop, step}: stop included when it lands on the step
        ({"start": 5, "stop": 20, "step": 5}, [5, 10, 15, 20]),
        ({"start": 5, "stop": 22, "step": 5}, [5, 10, 15, 20]),
        ({"start": 1, "stop": 4}, [1, 2, 3, 4]),               # step defaults to 1
        ({"start": 3, "stop": 3}, [3]),
        ({"start": 10, "stop": 0, "step": -5}, [10, 5, 0]),
        # float steps: no 0.30000000000000004, stop included despite rounding
        ({"start": 0.1, "stop": 0.3, "step": 0.1}, [0.1, 0.2, 0.3]),
        ({"start": 1, "stop": 2, "step": 0.25}, [1.0, 1.25, 1.5, 1.75, 2.0]),
        ({"start": 0.001, "stop": 0.002, "step": 0.0002},
         [0.001, 0.0012, 0.0014, 0.0016, 0.0018, 0.002]),
        # {start, stop, num}: linear, ints stay ints
        ({"start": 10, "stop": 50, "num": 5}, [10, 20, 30, 40, 50]),
        ({"start": 0.0, "stop": 1.0, "num": 5}, [0.0, 0.25, 0.5, 0.75, 1.0]),
        # log ranges
        ({"start": 0.0001, "stop": 0.01, "num": 3, "log": True}, [0.0001, 0.001, 0.01]),
        ({"start": 1, "stop": 1000, "num": 4, "log": True}, [1, 10, 100, 1000]),
        ({"start": 1, "stop": 4, "num": 10, "log": True}, [1, 2, 3, 4]),  # ints de-duplicated
        ({"start": 2.0, "stop": 32.0, "num": 5, "log": True}, [2.0, 4.0, 8.0, 16.0, 32.0]),
        ({"start": 5, "stop": 5, "num": 1, "log": True}, [5]),
    ],
)
def test_expand_values(spec: object, expected: list) -> None:
    got = expand_values("x", spec)
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]


def test_log_range_is_geometric() -> None:
    vals = expand_values("c", {"start": 1e-4, "stop": 1e-1, "num": 7, "log": True})
    assert len(vals) == 7
    ratios = np.array(vals[1:]) / np.array(vals[:-1])
    np.testing.assert_allclose(ratios, 10 ** 0.5, rtol=1e-10)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], r"'x' has no values"),
        ({"start": 1, "stop": 5, "stpe": 1}, r"'x': unknown range key\(s\) \['stpe'\]"),
        ({"start": 1}, r"'x': a range needs start and stop"),
        ({"stop": 1}, r"'x': a range needs start and stop"),
        ({"start": "1", "stop": 5}, r"'x': range values must be numbers"),
        ({"start": True, "stop": 5}, r"'x': range values must be numbers"),
        ({"start": 1, "stop": 5, "step": 0}, r"'x': step 0 never reaches stop"),
        ({"start": 1, "stop": 5, "step": -1}, r"'x': step -1 never reaches stop"),
        ({"start": 5, "stop": 1, "step": 1}, r"'x': step 1 never reaches stop"),
        ({"start": 1, "stop": 5, "num": 0}, r"'x': num must be an integer >= 1"),
        ({"start": 1, "stop": 5, "num": 2.5}, r"'x': num must be an integer >= 1"),
        ({"start": 1, "stop": 5, "log": True}, r"'x': a log range needs num >= 1"),
        ({"start": 0, "stop": 5, "num": 3, "log": True}, r"positive start/stop"),
        ({"start": 1, "stop": -5, "num": 3, "log": True}, r"positive start/stop"),
        ({"start": 0, "stop": 10**8}, r"'x': 100000001 values is too many"),
    ],
)
def test_expand_values_errors(spec: object, message: str) -> None:
    with pytest.raises(GridError, match=message):
        expand_values("x", spec)


# ------------------------------------------------------------------ the product
AXES = {"fast": [3, 5, 8], "slow": [10, 20], "kind": ["sma", "ema"],
        "commission": [0.0, 0.001, 0.002]}


def product_rows(axes: dict) -> list[tuple]:
    return list(itertools.product(*axes.values()))


def test_size_and_frame_follow_itertools_product() -> None:
    g = Grid.build(MA, AXES)
    assert g.names == tuple(AXES)
    assert g.size == 3 * 2 * 2 * 3
    f = g.frame()
    assert f.columns == ["combo", *AXES]
    assert f["combo"].to_list() == list(range(g.size))
    assert f.select(list(AXES)).rows() == product_rows(AXES)
    assert f.schema["fast"] == pl.Int64 and f.schema["commission"] == pl.Float64
    assert f.schema["kind"] == pl.String


@pytest.mark.parametrize(("a", "b"), [(0, 36), (0, 1), (5, 6), (7, 23), (30, 36), (35, 99),
                                      (12, 12)])
def test_block_is_a_slice_of_the_frame(a: int, b: int) -> None:
    g = Grid.build(MA, AXES)
    block = g.block(a, b)
    assert block.equals(g.frame().slice(a, max(0, min(b, g.size) - a)))
    assert block.select(list(AXES)).rows() == product_rows(AXES)[a:b]
    assert block["combo"].to_list() == list(range(a, min(b, g.size)))


def test_block_decodes_large_grids_without_materialising() -> None:
    axes = {"fast": list(range(1, 101)), "slow": list(range(2, 1002)),
            "commission": [0.0, 0.001, 0.002, 0.003, 0.004]}
    g = Grid.build(MA, axes)
    assert g.size == 100 * 1000 * 5
    i = 123_457
    row = g.block(i, i + 1).row(0, named=True)
    # mixed radix, last axis fastest: i = (f * 1000 + s) * 5 + c
    f, rest = divmod(i, 1000 * 5)
    s, c = divmod(rest, 5)
    assert row == {"combo": i, "fast": axes["fast"][f], "slow": axes["slow"][s],
                   "commission": axes["commission"][c]}


def test_single_value_and_empty_axes() -> None:
    g = Grid.build(MA, {"fast": 5})
    assert g.size == 1
    assert g.frame().rows() == [(0, 5)]
    g = Grid.build(MA, {})
    assert g.size == 1 and g.names == ()
    assert g.frame()["combo"].to_list() == [0]


def test_engine_axes_are_validated_and_floats() -> None:
    g = Grid.build(MA, {"commission": [0, 0.001], "stop_loss": [0.05, 0.1],
                        "allow_short": [False, True], "atr_window": [5, 14]})
    assert dict(g.axes)["commission"] == (0.0, 0.001)
    assert type(dict(g.axes)["commission"][0]) is float
    assert dict(g.axes)["atr_window"] == (5, 14)
    assert "fill" not in ENGINE_AXES and "periods_per_year" not in ENGINE_AXES


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"fats": [5]}, r"grid axis 'fats' is neither a parameter of strategy 'ma_cross' "
                        r"\(fast, slow, kind, long_short\) nor an engine field"),
        ({"fill": ["close"]}, r"grid axis 'fill' is neither"),
        ({"slwo": [50]}, r"grid axis 'slwo' is neither .*; did you mean 'slow'\?$"),
        ({"comission": [0.0]}, r"did you mean 'commission'\?$"),
        ({"run": [1]}, r"'run' clashes with a reserved result column"),
        ({"combo": [1]}, r"'combo' clashes with a reserved"),
        ({"fast": [0, 5]}, r"parameter 'fast': 0 is below the lower bound"),
        ({"fast": ["5"]}, r"parameter 'fast': '5' is not a number"),
        ({"kind": ["sma", "hma"]}, r"parameter 'kind': 'hma' is not one of"),
        ({"fast": [5, 5]}, r"grid axis 'fast' repeats a value"),
        ({"fast": [5, 5.0]}, r"grid axis 'fast' repeats a value"),  # both the int 5
        ({"commission": [-0.01]}, r"grid axis 'commission': .*commission must be >= 0"),
        ({"stop_loss": [1.5]}, r"grid axis 'stop_loss': .*stop_loss .* must be < 1"),
        ({"atr_window": [0]}, r"grid axis 'atr_window': .*atr_window must be an integer"),
        ({"allow_short": ["yes"]}, r"grid axis 'allow_short': .*true or false"),
    ],
)
def test_build_errors(spec: dict, message: str) -> None:
    with pytest.raises(strategies.StrategyError, match=message):
        Grid.build(MA, spec)


# ------------------------------------------------------------------ constraints
def test_constraints_filter_and_keep_combo_indices() -> None:
    axes = {"fast": [5, 10, 20], "slow": [10, 20, 50], "commission": [0.0, 0.001]}
    g = Grid.build(MA, axes, constraints=["fast < slow", "commission > 0 or fast = 5"])
    f = g.frame()
    expected = [
        (i, fa, s, c) for i, (fa, s, c) in enumerate(product_rows(axes))
        if fa < s and (c > 0 or fa == 5)
    ]
    assert f.rows() == expected
    assert g.size == 18  # size counts combinations before the constraints
    # A block filters its own slice only.
    assert g.block(4, 12).rows() == [r for r in expected if 4 <= r[0] < 12]
    assert g.block(0, 1).rows() == [(0, 5, 10, 0.0)]   # fast = 5 passes without commission
    assert g.block(6, 8).rows() == []                   # (10, 10, *): fast < slow fails


def test_constraint_on_strings_and_bools() -> None:
    g = Grid.build(MA, {"kind": ["sma", "ema"], "long_short": [False, True],
                        "fast": [5, 10]},
                   constraints=["kind = 'ema' or not long_short", "fast * 2 <= 10"])
    assert g.frame().select("kind", "long_short", "fast").rows() == [
        ("sma", False, 5), ("ema", False, 5), ("ema", True, 5)
    ]


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        ("fast <", r"constraint 'fast <' cannot be evaluated over the grid axes "
                   r"\['fast', 'slow'\]"),
        ("fats < slow", r"constraint 'fats < slow' cannot be evaluated"),
        ("kind = 'sma'", r"constraint \"kind = 'sma'\" cannot be evaluated"),  # not an axis
        ("fast + slow", r"constraint 'fast \+ slow' is not a true/false condition"),
        ("", r"constraint '' is not an expression"),
        ("   ", r"is not an expression"),
    ],
)
def test_bad_constraints(constraint: str, message: str) -> None:
    with pytest.raises(GridError, match=message):
        Grid.build(MA, {"fast": [5, 10], "slow": [20, 50]}, constraints=[constraint])


def test_constraints_can_empty_the_grid() -> None:
    g = Grid.build(MA, {"fast": [50], "slow": [20]}, constraints=["fast < slow"])
    assert g.size == 1
    assert g.frame().height == 0
