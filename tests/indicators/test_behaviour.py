"""Behaviour shared by every indicator: gaps, causality, batches, containers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaizenml import indicators as ki

Data = dict[str, np.ndarray]

# name -> (the inputs it reads, function of the OHLCV dict returning a tuple of outputs)
INDICATORS: dict[str, tuple[tuple[str, ...], Callable[[Data], tuple]]] = {
    "sma": (("close",), lambda d: (ki.sma(d["close"], 6),)),
    "ema": (("close",), lambda d: (ki.ema(d["close"], 6),)),
    "rsi": (("close",), lambda d: (ki.rsi(d["close"], 5),)),
    "macd": (("close",), lambda d: tuple(ki.macd(d["close"], 3, 7, 4))),
    "bollinger": (("close",), lambda d: tuple(ki.bollinger(d["close"], 6, 2.0))),
    "rolling_std": (("close",), lambda d: (ki.rolling_std(d["close"], 4),)),
    "rolling_std_ddof1": (("close",), lambda d: (ki.rolling_std(d["close"], 4, ddof=1),)),
    "zscore": (("close",), lambda d: (ki.zscore(d["close"], 5),)),
    "volatility": (("close",), lambda d: (ki.volatility(d["close"], 5, 252),)),
    "returns": (("close",), lambda d: (ki.returns(d["close"], 2),)),
    "log_returns": (("close",), lambda d: (ki.returns(d["close"], 1, "log"),)),
    "momentum": (("close",), lambda d: (ki.momentum(d["close"], 3),)),
    "roc": (("close",), lambda d: (ki.roc(d["close"], 3),)),
    "volume_ratio": (("volume",), lambda d: (ki.volume_ratio(d["volume"], 5),)),
    "atr": (("high", "low", "close"), lambda d: (ki.atr(d["high"], d["low"], d["close"], 5),)),
    "stochastic": (
        ("high", "low", "close"),
        lambda d: tuple(ki.stochastic(d["high"], d["low"], d["close"], 5, 3, 2)),
    ),
    "stochastic_long": (
        ("high", "low", "close"),
        lambda d: tuple(ki.stochastic(d["high"], d["low"], d["close"], 35, 2, 2)),
    ),
    "obv": (("close", "volume"), lambda d: (ki.obv(d["close"], d["volume"]),)),
}
CALENDAR: dict[str, Callable[[Data], tuple]] = {
    "hour_of_day": lambda d: tuple(ki.hour_of_day(d["stamps"])),
    "day_of_week": lambda d: tuple(ki.day_of_week(d["stamps"])),
}


def _all(d: Data) -> dict[str, tuple]:
    out = {name: fn(d) for name, (_, fn) in INDICATORS.items()}
    if "stamps" in d:
        out.update({name: fn(d) for name, fn in CALENDAR.items()})
    return out


def _slice(d: Data, sl: slice) -> Data:
    return {k: v[sl] for k, v in d.items()}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.asarray(a)
    b = np.asarray(b)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


# --------------------------------------------------------------------------- gaps


@pytest.mark.parametrize("name", list(INDICATORS))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_gap_restarts_the_indicator(name: str, bad: float, bars) -> None:
    inputs, fn = INDICATORS[name]
    d = bars(300, seed=21)
    g = 120
    for key in inputs:
        gapped = {k: v.copy() for k, v in d.items()}
        gapped[key][g] = bad
        out = fn(gapped)
        before = fn(_slice(d, slice(None, g)))
        after = fn(_slice(d, slice(g + 1, None)))
        for o, b, a in zip(out, before, after, strict=True):
            assert _same(o[:g], b), f"{name}: values before a gap in {key} changed"
            assert np.isnan(o[g]), f"{name}: a gap in {key} must give NaN"
            assert _same(o[g + 1 :], a), f"{name}: after a gap in {key} it must restart"
            assert not np.isnan(o[-1])


def test_gap_policy_differs_from_talib_only_where_talib_is_stuck(walk) -> None:
    import talib
    x = walk(400, seed=3)
    gapped = x.copy()
    gapped[200] = np.nan
    ours = ki.rsi(gapped)
    # TA-Lib's RSI is 0 for ever after a NaN; ours is NaN for 14 bars, then TA-Lib's value on
    # the clean segment
    assert (talib.RSI(gapped, 14)[215:] == 0.0).all()
    assert np.isnan(ours[200:215]).all()
    np.testing.assert_allclose(ours[215:], talib.RSI(x[201:], 14)[14:], rtol=1e-12)
    np.testing.assert_allclose(ki.ema(gapped, 10)[210:], talib.EMA(x[201:], 10)[9:], rtol=1e-12)


def test_windows_full_of_gaps_stay_nan() -> None:
    x = np.array([1.0, np.nan, 2.0, np.nan, 3.0, 4.0, np.nan, 5.0])
    assert np.isnan(ki.sma(x, 3)).all()
    assert np.isnan(ki.rsi(x, 2)).all()
    np.testing.assert_array_equal(ki.sma(x, 2)[5], 3.5)
    assert np.isnan(ki.macd(np.full(100, np.nan)).macd).all()


# --------------------------------------------------------------------------- causality

_prices = st.floats(1.0, 1000.0, allow_nan=False, allow_infinity=False)


@st.composite
def _paths(draw: st.DrawFn) -> tuple[Data, Data, int]:
    n = draw(st.integers(1, 60))
    close = np.array(draw(st.lists(_prices | st.just(np.nan), min_size=n, max_size=n)))
    t = draw(st.integers(0, n - 1))
    tail = np.array(draw(st.lists(_prices | st.just(np.nan), min_size=n, max_size=n)))
    volume = np.array(draw(st.lists(st.floats(0.0, 1e6), min_size=n, max_size=n)))
    stamps = np.array(draw(st.lists(st.integers(0, 4_000_000_000), min_size=n, max_size=n)))
    changed = close.copy()
    changed[t + 1 :] = tail[t + 1 :]
    new_volume = volume.copy()
    new_volume[t + 1 :] = volume[::-1][t + 1 :] * 3.0
    new_stamps = stamps.copy()
    new_stamps[t + 1 :] += 12_345

    def ohlcv(c: np.ndarray, v: np.ndarray, s: np.ndarray) -> Data:
        return {"close": c, "high": c * 1.01 + 0.5, "low": c * 0.99 - 0.5, "volume": v, "stamps": s}

    return ohlcv(close, volume, stamps), ohlcv(changed, new_volume, new_stamps), t


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_paths())
def test_no_indicator_looks_ahead(case: tuple[Data, Data, int]) -> None:
    original, changed, t = case
    first = _all(original)
    second = _all(changed)
    for name, outs in first.items():
        for a, b in zip(outs, second[name], strict=True):
            assert _same(a[: t + 1], b[: t + 1]), f"{name} at or before t={t} saw later data"


_LONG_LAGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "momentum 10": lambda c: ki.momentum(c, 10),
    "returns 10": lambda c: ki.returns(c, 10),
    "log returns 10": lambda c: ki.returns(c, 10, "log"),
    "roc 10": lambda c: ki.roc(c, 10),
}


@pytest.mark.parametrize("gaps", [(1,), (5,), (5, 6, 7), (0, 19), (2, 25)])
def test_every_prefix_equals_the_full_run(gaps: tuple[int, ...], bars) -> None:
    """What a live system computes on the data so far equals the backtest on all the data, at
    every row, with gaps anywhere (a gap inside a lag that no result of the prefix reads used
    to be missed by the lag kernels' fast path when the series was shorter than twice the
    horizon)."""
    d = bars(30, seed=3)
    d["stamps"] = (1_700_000_000 + 900 * np.arange(30)).astype(np.int64)
    for g in gaps:
        d["close"][g] = np.nan
    full = _all(d)
    full_lags = {name: fn(d["close"]) for name, fn in _LONG_LAGS.items()}
    for t in range(1, 31):
        prefix = _all(_slice(d, slice(0, t)))
        for name, outs in full.items():
            for a, b in zip(prefix[name], outs, strict=True):
                assert _same(a, b[:t]), f"{name} on the first {t} rows differs from the full run"
        for name, fn in _LONG_LAGS.items():
            assert _same(fn(d["close"][:t]), full_lags[name][:t]), f"{name}, first {t} rows"


# --------------------------------------------------------------------------- batches


def _batch(bars, n_series: int, n: int) -> list[Data]:
    series = [bars(n, seed=100 + i, level=50.0 * (i + 1)) for i in range(n_series)]
    series[1]["close"][40] = np.nan  # one row with a gap
    for i, s in enumerate(series):
        s["stamps"] = (1_700_000_000 + 3_600 * i + 900 * np.arange(n)).astype(np.int64)
    return series


def test_2d_rows_equal_1d(bars) -> None:
    series = _batch(bars, 5, 250)
    stacked = {k: np.stack([s[k] for s in series]) for k in series[0]}
    batch = _all(stacked)
    for i, s in enumerate(series):
        for name, outs in _all(s).items():
            for row_out, single in zip(batch[name], outs, strict=True):
                assert row_out.shape == (5, 250)
                assert _same(row_out[i], single), f"{name}: row {i} differs from the 1-D call"


def test_dataframe_columns_are_series(bars) -> None:
    import pandas as pd
    series = _batch(bars, 3, 120)
    index = pd.date_range("2024-01-01", periods=120, freq="h")
    frames = {
        k: pd.DataFrame({f"s{i}": s[k] for i, s in enumerate(series)}, index=index)
        for k in series[0]
    }
    frames["stamps"] = pd.DataFrame({f"s{i}": s["stamps"] for i, s in enumerate(series)})
    batch = _all(frames)
    for i, s in enumerate(series):
        for name, outs in _all(s).items():
            for frame_out, single in zip(batch[name], outs, strict=True):
                assert isinstance(frame_out, pd.DataFrame)
                assert list(frame_out.columns) == ["s0", "s1", "s2"]
                if name not in CALENDAR:
                    assert frame_out.index.equals(index)
                assert _same(frame_out[f"s{i}"].to_numpy(), single), name


def test_series_in_series_out(bars) -> None:
    import pandas as pd
    d = bars(80, seed=5)
    index = pd.date_range("2024-01-01", periods=80, freq="D")
    as_series = {k: pd.Series(v, index=index, name=k) for k, v in d.items()}
    as_series["stamps"] = pd.Series(index, index=index)
    plain = {**d, "stamps": index.to_numpy()}
    wrapped = _all(as_series)
    for name, outs in _all(plain).items():
        for s, single in zip(wrapped[name], outs, strict=True):
            assert isinstance(s, pd.Series) and s.index.equals(index), name
            assert _same(s.to_numpy(), single), name
    # nullable dtypes: pandas.NA is a gap
    nullable = pd.Series([1.0, 2.0, None, 4.0, 5.0, 6.0], dtype="Float64")
    np.testing.assert_array_equal(
        ki.sma(nullable, 2).to_numpy(), [np.nan, 1.5, np.nan, np.nan, 4.5, 5.5]
    )


def test_outputs_are_fresh_float64(walk) -> None:
    x = walk(50, seed=1).astype(np.float32)
    out = ki.ema(x, 5)
    assert out.dtype == np.float64 and out.flags.c_contiguous and out.flags.writeable
    assert not np.shares_memory(out, x)
    assert ki.sma(np.empty((0, 10)), 3).shape == (0, 10)
    assert ki.sma(np.empty((3, 0)), 3).shape == (3, 0)
