"""Search spaces: validation, the plain-dict form and the shared unit-cube encoding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kaizenml import KaizenTypeError, ValidationError
from kaizenml.optimize import (
    CATEGORICAL,
    CONTINUOUS,
    DISCRETE,
    Categorical,
    Float,
    Int,
    SearchSpace,
)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Float(1.0, 1.0), "low < high"),
        (lambda: Float(0.0, 1.0, log=True), "low > 0"),
        (lambda: Float(0.0, 1.0, step=0.3), "does not divide"),
        (lambda: Int(0, 10, step=3), "does not divide"),
        (lambda: Int(0, 10, log=True), "low >= 1"),
        (lambda: Categorical([]), "at least one"),
        (lambda: Categorical(["a", "a"]), "distinct"),
        (
            lambda: SearchSpace({"x": {"type": "float", "min": 0, "max": 1, "scale": 2}}),
            "unknown keys",
        ),
        (lambda: SearchSpace({"x": {"type": "uniform", "min": 0, "max": 1}}), "type='uniform'"),
        (lambda: SearchSpace({"x": {"type": "int", "min": 3}}), "needs 'min' and 'max'"),
    ],
)
def test_invalid_parameters_are_refused_clearly(make, match) -> None:
    with pytest.raises(ValidationError, match=match):
        make()


def test_type_errors() -> None:
    with pytest.raises(KaizenTypeError, match="Int low"):
        Int(0.5, 3)
    with pytest.raises(KaizenTypeError, match="choices"):
        Categorical("abc")
    with pytest.raises(KaizenTypeError):
        SearchSpace({"x": (0, 1)})


def test_plain_dict_form_equals_the_objects() -> None:
    from_dicts = SearchSpace(
        {
            "lr": {"type": "float", "min": 1e-4, "max": 0.1, "log": True},
            "n": {"type": "int", "min": 2, "max": 10, "step": 2},
            "act": {"type": "categorical", "choices": ["relu", "tanh"]},
        }
    )
    objects = SearchSpace(
        {
            "lr": Float(1e-4, 0.1, log=True),
            "n": Int(2, 10, step=2),
            "act": Categorical(["relu", "tanh"]),
        }
    )
    assert from_dicts == objects
    assert SearchSpace(objects.to_dict()) == objects
    assert list(from_dicts.kinds) == [CONTINUOUS, DISCRETE, CATEGORICAL]
    assert list(from_dicts.n_levels) == [0, 5, 2]


def test_encoding_known_values_and_exact_round_trips() -> None:
    space = SearchSpace(
        {
            "x": Float(-1.0, 3.0),
            "lr": Float(1e-4, 1e-0, log=True),
            "k": Int(0, 4),
            "s": Float(0.0, 1.0, step=0.25),
            "c": Categorical(["a", None, True]),
            "big": Int(1, 1000, log=True),
        }
    )
    u = space.encode({"x": 0.0, "lr": 1e-2, "k": 2, "s": 0.75, "c": None, "big": 1})
    np.testing.assert_allclose(u[:5], [0.25, 0.5, 0.5, 0.7, 0.5], rtol=0, atol=1e-15)
    assert u[5] == pytest.approx((0.0 - math.log(0.5)) / (math.log(1000.5) - math.log(0.5)))
    for k in range(5):
        for s in (0.0, 0.25, 0.5, 0.75, 1.0):
            for c in ("a", None, True):
                for big in (1, 2, 17, 999, 1000):
                    p = {"x": 0.5, "lr": 0.5, "k": k, "s": s, "c": c, "big": big}
                    back = space.decode(space.encode(p))
                    assert back["k"] == k and back["s"] == s and back["c"] is c
                    assert back["big"] == big
    # any unit value decodes to a valid value
    rng = np.random.default_rng(0)
    for row in rng.random((200, space.n_dims)):
        space.validate_params(space.decode(row))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_categorical_refuses_non_finite_float_choices(bad) -> None:
    with pytest.raises(ValidationError) as info:
        Categorical([0.5, bad, "x"])
    assert str(info.value) == (
        f"Categorical choices must be finite numbers, got {bad!r} in [0.5, {bad!r}, 'x']; "
        "use a string such as 'nan' or None for a missing value"
    )
    with pytest.raises(ValidationError, match=r"^space\['c'\]: Categorical choices must be finite"):
        SearchSpace({"c": {"type": "categorical", "choices": [1.0, bad]}})
    # the readable stand-ins for a missing value stay valid and round-trip
    space = SearchSpace({"c": Categorical([0.5, "nan", None])})
    for v in (0.5, "nan", None):
        assert space.decode(space.encode({"c": v})) == {"c": v}


def test_out_of_range_bounds_are_validation_errors_at_construction() -> None:
    with pytest.raises(ValidationError) as info:
        Float(0, 10**400)
    assert str(info.value) == (
        "Float high must be a finite float (at most about 1.8e308 in size), got an integer of "
        "about 401 digits"
    )
    with pytest.raises(ValidationError, match="Float low must be a finite float"):
        Float(-(10**400), 0.0)
    with pytest.raises(ValidationError, match=r"high - low overflows"):
        Float(-1e308, 1e308)
    with pytest.raises(ValidationError, match=r"gives 1e\+300 levels"):
        Float(0.0, 1.0, step=1e-300)
    with pytest.raises(ValidationError) as info:
        Int(1, 10**30)
    assert str(info.value) == (
        "Int high must fit in a 64-bit integer ([-2**63, 2**63 - 1]), got an integer of about "
        "31 digits"
    )
    with pytest.raises(ValidationError, match="Int low must fit in a 64-bit integer"):
        Int(-(2**63) - 1, 0)
    with pytest.raises(ValidationError, match="Int high must fit in a 64-bit integer"):
        Int(0, 1e30)  # an integral float is accepted, so it is range-checked too
    with pytest.raises(ValidationError, match=r"too wide: high - low must fit"):
        Int(-(2**63), 2**63 - 1)
    with pytest.raises(ValidationError, match=r"space\['n'\]: Int high must fit"):
        SearchSpace({"n": {"type": "int", "min": 1, "max": 10**30}})


def test_the_widest_accepted_ranges_encode_exactly() -> None:
    hi = 2**50 - 1  # 2**50 levels, the most an Int may hold
    space = SearchSpace({"n": Int(0, hi), "w": Int(2**62, 2**62 + 2**40, step=2**10)})
    for n in (0, 1, 2**49 + 1, hi - 1, hi):
        for w in (2**62, 2**62 + 2**30, 2**62 + 2**40):
            assert space.decode(space.encode({"n": n, "w": w})) == {"n": n, "w": w}
    assert space.decode(np.ones(2)) == {"n": hi, "w": 2**62 + 2**40}
    with pytest.raises(ValidationError, match="at most 2\\*\\*50 levels"):
        Int(0, hi + 1)
