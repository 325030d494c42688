"""Every indicator TA-Lib has, compared with TA-Lib's own output.

Values after the lookback agree to a relative 1e-9 (plus an absolute floor of 1e-12 times the
price level, for outputs that are differences of prices and pass through zero) and the count of
leading NaNs is exactly TA-Lib's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import talib

from kaizenml import indicators as ki

Case = tuple[Callable[..., object], Callable[..., object]]

# name -> (ours(high, low, close, volume), TA-Lib's(high, low, close, volume)); both give tuples
CASES: dict[str, Case] = {
    "sma": (lambda h, lo, c, v: (ki.sma(c),), lambda h, lo, c, v: (talib.SMA(c, 30),)),
    "sma_7": (lambda h, lo, c, v: (ki.sma(c, 7),), lambda h, lo, c, v: (talib.SMA(c, 7),)),
    "ema": (lambda h, lo, c, v: (ki.ema(c),), lambda h, lo, c, v: (talib.EMA(c, 30),)),
    "ema_5": (lambda h, lo, c, v: (ki.ema(c, window=5),), lambda h, lo, c, v: (talib.EMA(c, 5),)),
    "rsi": (lambda h, lo, c, v: (ki.rsi(c),), lambda h, lo, c, v: (talib.RSI(c, 14),)),
    "rsi_3": (lambda h, lo, c, v: (ki.rsi(c, 3),), lambda h, lo, c, v: (talib.RSI(c, 3),)),
    "macd": (lambda h, lo, c, v: tuple(ki.macd(c)), lambda h, lo, c, v: talib.MACD(c, 12, 26, 9)),
    "macd_5_8_4": (
        lambda h, lo, c, v: tuple(ki.macd(c, fast=5, slow=8, signal=4)),
        lambda h, lo, c, v: talib.MACD(c, 5, 8, 4),
    ),
    "bollinger": (
        lambda h, lo, c, v: (lambda b: (b.upper, b.middle, b.lower))(ki.bollinger(c)),
        lambda h, lo, c, v: talib.BBANDS(c, 20, 2.0, 2.0, 0),
    ),
    "bollinger_10_1.5": (
        lambda h, lo, c, v: (lambda b: (b.upper, b.middle, b.lower))(ki.bollinger(c, 10, 1.5)),
        lambda h, lo, c, v: talib.BBANDS(c, 10, 1.5, 1.5, 0),
    ),
    "rolling_std": (
        lambda h, lo, c, v: (ki.rolling_std(c),),
        lambda h, lo, c, v: (talib.STDDEV(c, 5, 1.0),),
    ),
    "rolling_std_30": (
        lambda h, lo, c, v: (ki.rolling_std(c, 30),),
        lambda h, lo, c, v: (talib.STDDEV(c, 30, 1.0),),
    ),
    "momentum": (lambda h, lo, c, v: (ki.momentum(c),), lambda h, lo, c, v: (talib.MOM(c, 10),)),
    "roc": (lambda h, lo, c, v: (ki.roc(c),), lambda h, lo, c, v: (talib.ROC(c, 10),)),
    "returns": (lambda h, lo, c, v: (ki.returns(c),), lambda h, lo, c, v: (talib.ROCP(c, 1),)),
    "returns_5": (
        lambda h, lo, c, v: (ki.returns(c, horizon=5),),
        lambda h, lo, c, v: (talib.ROCP(c, 5),),
    ),
    "atr": (
        lambda h, lo, c, v: (ki.atr(h, lo, c),),
        lambda h, lo, c, v: (talib.ATR(h, lo, c, 14),),
    ),
    "atr_1": (
        lambda h, lo, c, v: (ki.atr(h, lo, c, 1),),
        lambda h, lo, c, v: (talib.ATR(h, lo, c, 1),),
    ),
    "stochastic": (
        lambda h, lo, c, v: tuple(ki.stochastic(h, lo, c)),
        lambda h, lo, c, v: talib.STOCH(h, lo, c, 5, 3, 0, 3, 0),
    ),
    "stochastic_14_1_4": (
        lambda h, lo, c, v: tuple(ki.stochastic(h, lo, c, fastk=14, slowk=1, slowd=4)),
        lambda h, lo, c, v: talib.STOCH(h, lo, c, 14, 1, 0, 4, 0),
    ),
    "stochastic_40_3_3": (  # a window long enough to track the extremes instead of scanning
        lambda h, lo, c, v: tuple(ki.stochastic(h, lo, c, fastk=40)),
        lambda h, lo, c, v: talib.STOCH(h, lo, c, 40, 3, 0, 3, 0),
    ),
    "obv": (lambda h, lo, c, v: (ki.obv(c, v),), lambda h, lo, c, v: (talib.OBV(c, v),)),
}


def _compare(ours: tuple, theirs: tuple, level: float) -> None:
    assert len(ours) == len(theirs)
    for mine, ref in zip(ours, theirs, strict=True):
        mine = np.asarray(mine)
        assert mine.dtype == np.float64 and mine.shape == ref.shape
        lead_ref = int(np.argmax(~np.isnan(ref))) if (~np.isnan(ref)).any() else ref.size
        lead_mine = int(np.argmax(~np.isnan(mine))) if (~np.isnan(mine)).any() else mine.size
        assert lead_mine == lead_ref, "leading NaN count differs from TA-Lib"
        np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=1e-12 * level, equal_nan=True)


def _as64(d: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(d[k], dtype=np.float64) for k in ("high", "low", "close", "volume"))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("level", [100.0, 25_000.0])
def test_random_walk_with_jumps(name: str, level: float, bars) -> None:
    data = bars(3000, seed=7, level=level)
    ours, theirs = CASES[name]
    _compare(ours(*_as64(data)), theirs(*_as64(data)), level)


@pytest.mark.parametrize("name", list(CASES))
def test_constant_series(name: str) -> None:
    n = 200
    h = np.full(n, 101.0)
    lo = np.full(n, 99.0)
    c = np.full(n, 100.0)
    v = np.full(n, 5.0)
    ours, theirs = CASES[name]
    _compare(ours(h, lo, c, v), theirs(h, lo, c, v), 100.0)
    # a flat series with no range at all (high == low == close)
    _compare(ours(c, c, c, v), theirs(c, c, c, v), 100.0)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("n", [0, 1, 5, 20])
def test_short_series(name: str, n: int, bars) -> None:
    data = bars(max(n, 1), seed=3)
    args = tuple(a[:n] for a in _as64(data))
    ours, theirs = CASES[name]
    out = ours(*args)
    for o in out:
        assert o.shape == (n,)
    if n > 0:  # TA-Lib itself refuses empty input
        _compare(out, theirs(*args), 100.0)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_int_and_strided_inputs(name: str, bars) -> None:
    data = bars(1200, seed=11)
    ours, theirs = CASES[name]
    # float32: the result equals TA-Lib on the same values widened to float64
    f32 = {k: v.astype(np.float32) for k, v in data.items()}
    _compare(
        ours(*(f32[k] for k in ("high", "low", "close", "volume"))), theirs(*_as64(f32)), 100.0
    )
    # integers (e.g. prices in ticks)
    ints = {k: np.rint(v * 100).astype(np.int64) for k, v in data.items()}
    _compare(
        ours(*(ints[k] for k in ("high", "low", "close", "volume"))), theirs(*_as64(ints)), 1e4
    )
    # non-contiguous views: every other bar of a Fortran-ordered block
    block = np.asfortranarray(np.stack([data[k] for k in ("high", "low", "close", "volume")], 1))
    views = tuple(block[::2, j] for j in range(4))
    assert not views[2].flags.c_contiguous
    _compare(ours(*views), theirs(*(np.ascontiguousarray(v) for v in views)), 100.0)


def test_lists_are_accepted(walk) -> None:
    x = walk(100, seed=1)
    np.testing.assert_allclose(ki.rsi(list(x)), talib.RSI(x, 14), rtol=1e-12)
