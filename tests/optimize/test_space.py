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
