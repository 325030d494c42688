"""The shared checks behind every API boundary: clear errors naming the parameter."""

from __future__ import annotations

import numpy as np
import pytest

from kaizenml import KaizenTypeError, ValidationError
from kaizenml import indicators as ki
from kaizenml._validation import check_float, check_int


def test_check_int_limits_and_types() -> None:
    assert check_int(np.int64(2**63 - 1), "n") == 2**63 - 1
    assert check_int(-(2**63), "n") == -(2**63)
    with pytest.raises(ValidationError, match=r"n=9223372036854775808 does not fit in a 64-bit"):
        check_int(2**63, "n")
    with pytest.raises(ValidationError, match=r"n must be <= 5, got 6"):
        check_int(6, "n", maximum=5)
    with pytest.raises(ValidationError, match=r"n must be >= 1, got 0"):
        check_int(0, "n", minimum=1)
    for bad in (True, 1.0, "1", None):
        with pytest.raises(KaizenTypeError, match="n must be an integer"):
            check_int(bad, "n")


def test_check_float_overflow_and_finiteness() -> None:
    assert check_float(10**300, "x") == 1e300
    with pytest.raises(ValidationError, match=r"x=10{400} is too large for a 64-bit float".replace(
            "10{400}", "1" + "0" * 400)):
        check_float(10**400, "x")
    with pytest.raises(ValidationError, match="x must be finite"):
        check_float(float("inf"), "x")
    assert check_float(float("inf"), "x", finite=False) == float("inf")


@pytest.mark.parametrize(
    "call, param",
    [
        (lambda x: ki.sma(x, 10**20), "window"),
        (lambda x: ki.returns(x, 10**20), "horizon"),
        (lambda x: ki.ema(x, 2**64), "window"),
    ],
)
def test_huge_integers_name_the_parameter(call, param: str) -> None:
    with pytest.raises(ValidationError, match=rf"^{param}=\d+ does not fit in a 64-bit integer"):
        call(np.arange(50.0))
