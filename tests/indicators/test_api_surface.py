"""The public names, parameter names and defaults that other parts of kaizenml rely on."""

from __future__ import annotations

import inspect

import pytest

from kaizenml import indicators as ki

EXPECTED = {
    "sma": [("x", None), ("window", 30)],
    "ema": [("x", None), ("window", 30)],
    "rsi": [("x", None), ("window", 14)],
    "rolling_std": [("x", None), ("window", 5), ("ddof", 0)],
    "momentum": [("x", None), ("window", 10)],
    "roc": [("x", None), ("window", 10)],
    "zscore": [("x", None), ("window", 20)],
    "macd": [("x", None), ("fast", 12), ("slow", 26), ("signal", 9)],
    "bollinger": [("x", None), ("window", 20), ("nbdev", 2.0)],
    "volatility": [("close", None), ("window", 20), ("annualization", None)],
    "returns": [("x", None), ("horizon", 1), ("kind", "simple")],
    "volume_ratio": [("volume", None), ("window", 20)],
    "atr": [("high", None), ("low", None), ("close", None), ("window", 14)],
    "stochastic": [
        ("high", None),
        ("low", None),
        ("close", None),
        ("fastk", 5),
        ("slowk", 3),
        ("slowd", 3),
    ],
    "obv": [("close", None), ("volume", None)],
    "hour_of_day": [("timestamps", None)],
    "day_of_week": [("timestamps", None)],
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_signature(name: str) -> None:
    params = [
        p
        for p in inspect.signature(getattr(ki, name)).parameters.values()
        if p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    got = [(p.name, None if p.default is p.empty else p.default) for p in params]
    assert got == EXPECTED[name]
    assert name in ki.__all__


def test_named_tuples() -> None:
    assert ki.MACD._fields == ("macd", "signal", "hist")
    assert ki.Bollinger._fields == ("middle", "upper", "lower", "position", "bandwidth")
    assert ki.Stochastic._fields == ("k", "d")
    assert ki.Cyclical._fields == ("sin", "cos")
    out = ki.macd([1.0, 2.0, 3.0])
    assert isinstance(out, ki.MACD) and out.hist.shape == (3,)
