"""Indicators without a TA-Lib counterpart, against slow numpy/pandas references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kaizenml import indicators as ki


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(x, w)


def _lead_nan(a: np.ndarray, k: int) -> None:
    assert np.isnan(a[:k]).all() and not np.isnan(a[k:]).any()


@pytest.mark.parametrize("level", [100.0, 1e6])
@pytest.mark.parametrize("ddof", [0, 1])
def test_rolling_std_two_pass(walk, level: float, ddof: int) -> None:
    # at 1e6 with 1e-4 relative moves, E[x^2] - E[x]^2 would lose every digit
    x = walk(4000, seed=2, level=level)
    out = ki.rolling_std(x, 25, ddof)
    ref = np.std(_windows(x, 25), axis=1, ddof=ddof)
    _lead_nan(out, 24)
    np.testing.assert_allclose(out[24:], ref, rtol=1e-9)


def test_zscore_matches_pandas(walk) -> None:
    x = walk(3000, seed=4)
    s = pd.Series(x)
    roll = s.rolling(20)
    ref = ((s - roll.mean()) / roll.std(ddof=0)).to_numpy()
    out = ki.zscore(x)
    _lead_nan(out, 19)
    np.testing.assert_allclose(out[19:], ref[19:], rtol=1e-8)
    out1 = ki.zscore(x, 10, ddof=1)
    ref1 = ((s - s.rolling(10).mean()) / s.rolling(10).std(ddof=1)).to_numpy()
    np.testing.assert_allclose(out1[9:], ref1[9:], rtol=1e-8)
    assert (ki.zscore(np.full(50, 3.0), 5)[4:] == 0.0).all()


@pytest.mark.parametrize("annualization", [None, 252])
def test_volatility_matches_pandas(walk, annualization) -> None:
    x = walk(3000, seed=5)
    ref = np.log(pd.Series(x)).diff().rolling(20).std().to_numpy()
    if annualization:
        ref = ref * np.sqrt(annualization)
    out = ki.volatility(x, annualization=annualization)
    _lead_nan(out, 20)
    np.testing.assert_allclose(out[20:], ref[20:], rtol=1e-9)
    out0 = ki.volatility(x, 7, ddof=0)
    ref0 = np.std(_windows(np.diff(np.log(x)), 7), axis=1)
    np.testing.assert_allclose(out0[7:], ref0, rtol=1e-9)


def test_volume_ratio(bars) -> None:
    v = bars(2000, seed=6)["volume"]
    out = ki.volume_ratio(v, 20)
    _lead_nan(out, 19)
    np.testing.assert_allclose(out[19:], v[19:] / _windows(v, 20).mean(axis=1), rtol=1e-9)


@pytest.mark.parametrize("horizon", [1, 3])
def test_log_returns(walk, horizon: int) -> None:
    x = walk(500, seed=8)
    out = ki.returns(x, horizon, "log")
    _lead_nan(out, horizon)
    np.testing.assert_allclose(out[horizon:], np.log(x[horizon:] / x[:-horizon]), rtol=1e-12)


def test_bollinger_position_and_bandwidth(walk) -> None:
    x = walk(1000, seed=9)
    b = ki.bollinger(x, 20, 2.0)
    w = _windows(x, 20)
    mid = w.mean(axis=1)
    sd = w.std(axis=1)
    up, lo = mid + 2 * sd, mid - 2 * sd
    np.testing.assert_allclose(b.position[19:], (x[19:] - lo) / (up - lo), rtol=1e-8)
    np.testing.assert_allclose(b.bandwidth[19:], (up - lo) / mid, rtol=1e-8)
    _lead_nan(b.position, 19)
    flat = ki.bollinger(np.full(30, 7.0), 5)
    assert (flat.position[4:] == 0.5).all() and (flat.bandwidth[4:] == 0.0).all()


def test_calendar_encodings_match_pandas() -> None:
    rng = np.random.default_rng(0)
    secs = rng.integers(-2_000_000_000, 4_000_000_000, 500)
    stamps = pd.to_datetime(secs, unit="s")
    hours = stamps.hour + stamps.minute / 60 + stamps.second / 3600
    dows = np.asarray(stamps.day_of_week)
    for given in (
        secs,
        secs.astype(np.float64),
        stamps.to_numpy(),
        stamps.to_numpy().astype("datetime64[s]"),
        pd.Series(stamps),
    ):
        h = ki.hour_of_day(given)
        d = ki.day_of_week(given)
        np.testing.assert_allclose(np.asarray(h.sin), np.sin(2 * np.pi * hours / 24), atol=1e-12)
        np.testing.assert_allclose(np.asarray(h.cos), np.cos(2 * np.pi * hours / 24), atol=1e-12)
        np.testing.assert_allclose(np.asarray(d.sin), np.sin(2 * np.pi * dows / 7), atol=1e-12)
        np.testing.assert_allclose(np.asarray(d.cos), np.cos(2 * np.pi * dows / 7), atol=1e-12)


def test_calendar_units_and_timezones() -> None:
    day = np.array(["2024-03-04", "2024-03-10"], dtype="datetime64[D]")  # Monday, Sunday
    enc = ki.day_of_week(day)
    np.testing.assert_allclose(enc.sin, [0.0, np.sin(2 * np.pi * 6 / 7)], atol=1e-15)
    # hour-resolution input and a tz-aware index read as local wall-clock time
    hours = np.array(["2024-03-04T18"], dtype="datetime64[h]")
    np.testing.assert_allclose(ki.hour_of_day(hours).sin, [np.sin(2 * np.pi * 18 / 24)])
    idx = pd.DatetimeIndex(["2024-03-04 23:30"]).tz_localize("America/New_York")
    out = ki.hour_of_day(idx)
    assert isinstance(out.sin, pd.Series) and out.sin.index.equals(idx)
    np.testing.assert_allclose(out.cos.to_numpy(), [np.cos(2 * np.pi * 23.5 / 24)])
    # Monday 23:30 in New York is already Tuesday in UTC; the local day is kept
    np.testing.assert_allclose(ki.day_of_week(idx).cos.to_numpy(), [1.0])


def test_docstring_examples() -> None:
    import doctest

    import kaizenml.indicators
    from kaizenml.indicators import _api

    result = doctest.testmod(_api, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20 and result.failed == 0
    result = doctest.testmod(kaizenml.indicators, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


def test_windows_of_one_are_analytic(walk) -> None:
    x = walk(200, seed=12)
    np.testing.assert_array_equal(ki.sma(x, 1), x)
    np.testing.assert_array_equal(ki.ema(x, 1), x)
    np.testing.assert_array_equal(ki.rolling_std(x, 1), np.zeros_like(x))
    change = np.diff(x)
    expected = np.where(change > 0, 100.0, np.where(change < 0, 0.0, 0.0))
    np.testing.assert_array_equal(ki.rsi(x, 1)[1:], expected)
    np.testing.assert_array_equal(ki.macd(x, 1, 1, 1).macd, np.zeros_like(x))


def test_flat_stretch_after_moves_has_exactly_zero_spread(walk) -> None:
    # running sums carry rounding from the moves; a flat window must still read exactly 0
    x = np.concatenate([walk(300, seed=13, level=5000.0), np.full(40, 4321.5)])
    assert (ki.rolling_std(x, 10)[310:] == 0.0).all()
    assert (ki.zscore(x, 10)[310:] == 0.0).all()
    assert (ki.bollinger(x, 10).position[310:] == 0.5).all()
    assert (ki.volatility(x, 10)[311:] == 0.0).all()
    assert (ki.rolling_std(x, 10)[300:309] > 0.0).all()


def test_calendar_multiple_units() -> None:
    stamps = np.array(["2024-03-05T15:00:07"], dtype="datetime64[s]")  # a Tuesday
    for unit in ("7s", "10ms", "us", "ns"):
        given = stamps.astype(f"datetime64[{unit}]")
        seconds = given.astype("datetime64[s]").astype(np.int64)[0] % 86_400
        hours = seconds / 3600
        assert abs(hours - 15) < 0.01
        enc = ki.hour_of_day(given)
        np.testing.assert_allclose(enc.cos, [np.cos(2 * np.pi * hours / 24)], rtol=1e-12)
        dow = ki.day_of_week(given)
        np.testing.assert_allclose(dow.sin, [np.sin(2 * np.pi / 7)], rtol=1e-12)


@pytest.mark.parametrize("bad_price", [0.0, -5.0])
def test_volatility_restarts_after_a_price_without_log_return(walk, bad_price: float) -> None:
    x = walk(200, seed=14)
    x[90] = bad_price
    out = ki.volatility(x, 10)
    np.testing.assert_array_equal(out[:90], ki.volatility(x[:90], 10))
    assert np.isnan(out[90:101]).all()
    np.testing.assert_array_equal(out[91:], ki.volatility(x[91:], 10))


@pytest.mark.parametrize(
    ("unit", "per_day"),
    [
        ("ns", 86_400 * 10**9),
        ("us", 86_400 * 10**6),
        ("ms", 86_400_000),
        ("s", 86_400),
        ("m", 1440),
        ("h", 24),
        ("D", 1),
    ],
)
def test_calendar_tables_match_the_definition(unit: str, per_day: int) -> None:
    # the kernels look sin/cos up in per-minute and per-weekday tables; compare with sin/cos
    # evaluated on the definition, before and after 1970 and off whole minutes
    rng = np.random.default_rng(21)
    days = rng.integers(-30_000, 30_000, 4000)
    within = rng.integers(0, per_day, 4000)
    ticks = days * per_day + within
    given = ticks.astype(f"datetime64[{unit}]")
    angle = 2 * np.pi * ((ticks % per_day) / per_day)
    enc = ki.hour_of_day(given)
    np.testing.assert_allclose(enc.sin, np.sin(angle), rtol=0, atol=4e-15)
    np.testing.assert_allclose(enc.cos, np.cos(angle), rtol=0, atol=4e-15)
    on_minute = (ticks % max(per_day // 1440, 1)) == 0
    np.testing.assert_array_equal(enc.sin[on_minute], np.sin(angle[on_minute]))
    weekday = (days + 3) % 7
    dow = ki.day_of_week(given)
    np.testing.assert_array_equal(dow.sin, np.sin(2 * np.pi * (weekday / 7)))
    np.testing.assert_array_equal(dow.cos, np.cos(2 * np.pi * (weekday / 7)))
    # the 2-D kernels give the same rows
    both = ki.hour_of_day(given.reshape(2, -1))
    np.testing.assert_array_equal(both.cos.ravel(), enc.cos)
    np.testing.assert_array_equal(ki.day_of_week(given.reshape(2, -1)).sin.ravel(), dow.sin)


def test_position_only_bollinger_matches_the_full_one(walk) -> None:
    from kaizenml.indicators._api import _bollinger_position

    x = walk(600, seed=22, level=3000.0)
    x[300] = np.nan
    np.testing.assert_array_equal(_bollinger_position(x, 20, 2.0), ki.bollinger(x, 20).position)
    many = np.stack([x, walk(600, seed=23)])
    np.testing.assert_array_equal(
        _bollinger_position(many, 7, 1.5), ki.bollinger(many, 7, 1.5).position
    )
