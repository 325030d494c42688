"""Bad input fails at the boundary with an error that names the parameter."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kaizenml import indicators as ki
from kaizenml._exceptions import KaizenTypeError, ValidationError

X = np.linspace(100.0, 110.0, 50)


@pytest.mark.parametrize(
    "call, param",
    [
        (lambda: ki.sma(X, 0), "window"),
        (lambda: ki.ema(X, -3), "window"),
        (lambda: ki.rsi(X, window=0), "window"),
        (lambda: ki.macd(X, fast=0), "fast"),
        (lambda: ki.macd(X, slow=0), "slow"),
        (lambda: ki.macd(X, signal=0), "signal"),
        (lambda: ki.macd(X, fast=30, slow=10), "fast"),
        (lambda: ki.rolling_std(X, 5, ddof=5), "ddof"),
        (lambda: ki.rolling_std(X, 5, ddof=-1), "ddof"),
        (lambda: ki.zscore(X, 1, ddof=1), "ddof"),
        (lambda: ki.volatility(X, 0), "window"),
        (lambda: ki.volatility(X, annualization=-1.0), "annualization"),
        (lambda: ki.volatility(X, annualization=float("nan")), "annualization"),
        (lambda: ki.returns(X, horizon=0), "horizon"),
        (lambda: ki.returns(X, kind="pct"), "kind"),
        (lambda: ki.bollinger(X, nbdev=-1.0), "nbdev"),
        (lambda: ki.bollinger(X, nbdev=float("inf")), "nbdev"),
        (lambda: ki.stochastic(X, X, X, fastk=0), "fastk"),
        (lambda: ki.atr(X, X, X, window=0), "window"),
        (lambda: ki.sma(np.zeros((2, 3, 4)), 2), "x"),
        (lambda: ki.sma(np.float64(3.0), 2), "x"),
        (lambda: ki.atr(X, X[:-1], X), "low"),
        (lambda: ki.atr(X, X, X[:10]), "close"),
        (lambda: ki.obv(X, X[:-1]), "volume"),
        (lambda: ki.stochastic(X, X, np.tile(X, (2, 1))), "close"),
    ],
)
def test_bad_values_raise_value_error(call, param: str) -> None:
    # the message starts with the parameter's name
    with pytest.raises(ValidationError, match=rf"^{re.escape(param)}\b") as info:
        call()
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "call, param",
    [
        (lambda: ki.sma(X, 2.0), "window"),
        (lambda: ki.sma(X, "5"), "window"),
        (lambda: ki.rsi(X, True), "window"),
        (lambda: ki.macd(X, fast=None), "fast"),
        (lambda: ki.bollinger(X, nbdev="2"), "nbdev"),
        (lambda: ki.sma(["a", "b", "c"], 2), "x"),
        (lambda: ki.sma(np.array([True, False]), 1), "x"),
        (lambda: ki.sma(np.array([1 + 2j, 3j]), 1), "x"),
        (lambda: ki.sma("1,2,3", 1), "x"),
        (lambda: ki.sma(None, 1), "x"),
        (lambda: ki.sma(np.array(["2024-01-01"], dtype="datetime64[D]"), 1), "x"),
        (lambda: ki.volume_ratio([object(), 1.0]), "volume"),
        (lambda: ki.atr(X, X, [str(v) + "x" for v in X]), "close"),
        (lambda: ki.hour_of_day(["2024-01-01"]), "timestamps"),
        (lambda: ki.day_of_week(np.array([1.5 + 0j])), "timestamps"),
        (lambda: ki.hour_of_day("2024-01-01"), "timestamps"),
    ],
)
def test_bad_types_raise_type_error(call, param: str) -> None:
    with pytest.raises(KaizenTypeError, match=rf"^{re.escape(param)}\b") as info:
        call()
    assert isinstance(info.value, TypeError)


def test_nat_and_nan_timestamps_are_refused() -> None:
    stamps = np.array(["2024-01-01T00:00", "NaT"], dtype="datetime64[m]")
    with pytest.raises(ValidationError, match=r"timestamps contains NaT at position \(1,\)"):
        ki.hour_of_day(stamps)
    with pytest.raises(ValidationError, match=r"timestamps contains nan at position \(1,\); drop"):
        ki.day_of_week(np.array([1.7e9, np.nan]))


def test_timestamps_outside_int64_are_refused_not_wrapped() -> None:
    with pytest.raises(ValidationError, match=r"timestamps contains 1e\+300 at position \(0,\); "
                       r"epoch seconds must be within"):
        ki.hour_of_day([1e300])
    huge = np.array([0, 2**63 + 5], dtype=np.uint64)
    with pytest.raises(ValidationError, match=r"holds 9223372036854775813 at position \(1,\)"):
        ki.hour_of_day(huge)
    # large but valid values still work: 2**62 s is 4611686018427387904 % 86400 = 55104 s
    # after midnight, 15.3067 h
    out = ki.hour_of_day(np.array([2**62], dtype=np.uint64))
    angle = 2 * np.pi * ((2**62 % 86_400) / 3600.0) / 24.0
    np.testing.assert_allclose([out.sin[0], out.cos[0]], [np.sin(angle), np.cos(angle)],
                               rtol=1e-12)


def test_ragged_nested_lists_name_the_parameter() -> None:
    with pytest.raises(ValidationError, match=r"^x must be rectangular: every series"):
        ki.sma([[1.0, 2.0], [3.0]], 1)
    with pytest.raises(ValidationError, match=r"^close must be rectangular"):
        ki.atr([[1.0, 2.0]], [[1.0, 2.0]], [[1.0], [2.0, 3.0]], 1)


def test_pandas_inputs_are_checked() -> None:
    import pandas as pd
    with pytest.raises(KaizenTypeError, match="x"):
        ki.sma(pd.Series(["a", "b"]), 1)
    with pytest.raises(KaizenTypeError, match=r"^x\['name'\] must hold real numbers"):
        ki.sma(pd.DataFrame({"price": [1.0, 2.0], "name": ["a", "b"]}), 1)
    with pytest.raises(KaizenTypeError, match="x"):
        ki.sma(pd.Index([1.0, 2.0]), 1)
    with pytest.raises(ValidationError, match="timestamps contains NaT"):
        ki.hour_of_day(pd.Series(pd.to_datetime(["2024-01-01", None])))
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    with pytest.raises(ValidationError, match="low has 2 rows and 1 columns"):
        ki.atr(frame, frame.iloc[:2], frame)


def test_error_messages_say_how_to_fix() -> None:
    with pytest.raises(ValidationError) as info:
        ki.sma(np.zeros((2, 2, 2)))
    assert "3-D" in str(info.value) and "one series per row" in str(info.value)
    with pytest.raises(ValidationError, match="got 0"):
        ki.ema(X, 0)
