"""Validated public indicator functions; the arithmetic lives in ``_kernels``.

Kernels are looked up through ``_aot.kernels``: one-series calls run the ahead-of-time compiled
kernels where the build made them for this CPU (no numba import), batches the numba ones.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._exceptions import ValidationError
from .._validation import check_choice, check_float, check_int
from ._aot import kernels as k
from ._inputs import as_float, as_float_many, as_ticks, empty_like, wrap

__all__ = [
    "MACD",
    "Bollinger",
    "Stochastic",
    "Cyclical",
    "sma",
    "ema",
    "rsi",
    "macd",
    "bollinger",
    "rolling_std",
    "zscore",
    "volatility",
    "returns",
    "momentum",
    "roc",
    "volume_ratio",
    "atr",
    "stochastic",
    "obv",
    "hour_of_day",
    "day_of_week",
]


class MACD(NamedTuple):
    """MACD line, its signal line and the histogram (line minus signal)."""

    macd: Any
    signal: Any
    hist: Any


class Bollinger(NamedTuple):
    """Bollinger bands with the price's position inside them and the relative band width."""

    middle: Any
    upper: Any
    lower: Any
    position: Any
    bandwidth: Any


class Stochastic(NamedTuple):
    """Slow stochastic oscillator: %K and its moving average %D."""

    k: Any
    d: Any


class Cyclical(NamedTuple):
    """A periodic quantity encoded on the unit circle."""

    sin: Any
    cos: Any


def _window(value: Any, param: str = "window") -> int:
    return check_int(value, param, minimum=1)


def _one(kernel: str, x: Any, *args: Any) -> Any:
    """Run ``{kernel}_1d`` on one series or ``{kernel}_2d`` on a batch into a new output."""
    arr, layout = as_float(x, "x")
    out = empty_like(arr)
    getattr(k, f"{kernel}_{arr.ndim}d")(arr, *args, out)
    return wrap(out, layout)


# --------------------------------------------------------------------------- moving averages


def sma(x: Any, window: int = 30) -> Any:
    """Simple moving average (TA-Lib ``SMA``).

    Parameters
    ----------
    x : array_like, pandas Series or DataFrame
        One series (1-D) or many: a 2-D numpy array holds one series per row, a DataFrame one
        series per column. Any real dtype and any strides.
    window : int, default 30
        Number of bars averaged, at least 1.

    Returns
    -------
    numpy.ndarray, pandas Series or DataFrame
        float64 of the input's shape (pandas in, pandas out with the same index). The first
        ``window - 1`` values are NaN, as in TA-Lib. A NaN or infinite input value is a gap:
        the output is NaN until the window holds ``window`` valid values after it.

    Examples
    --------
    >>> from kaizenml.indicators import sma
    >>> sma([1.0, 2.0, 3.0, 4.0], window=2)
    array([nan, 1.5, 2.5, 3.5])
    """
    window = _window(window)
    return _one("_sma", x, window)


def ema(x: Any, window: int = 30) -> Any:
    """Exponential moving average with ``alpha = 2 / (window + 1)`` (TA-Lib ``EMA``).

    Seeded with the simple mean of the first ``window`` values, so the first ``window - 1``
    outputs are NaN. After a gap the average is seeded again from the next ``window`` values.

    Parameters
    ----------
    x : array_like, pandas Series or DataFrame
        One or many series (rows of a 2-D array, columns of a DataFrame).
    window : int, default 30
        Span of the average, at least 1.

    Examples
    --------
    >>> from kaizenml.indicators import ema
    >>> ema([1.0, 2.0, 3.0, 4.0], window=2)
    array([nan, 1.5, 2.5, 3.5])
    """
    window = _window(window)
    return _one("_ema", x, window)


def rsi(x: Any, window: int = 14) -> Any:
    """Relative strength index with Wilder's smoothing (TA-Lib ``RSI``), in [0, 100].

    The averages of gains and losses are seeded with the means of the first ``window``
    changes, so the first ``window`` outputs are NaN. A window without any change gives 0, as
    in TA-Lib. After a gap the indicator restarts and needs ``window + 1`` new valid values.

    Parameters
    ----------
    x : array_like, pandas Series or DataFrame
        One or many series (rows of a 2-D array, columns of a DataFrame).
    window : int, default 14
        Smoothing period, at least 1.

    Examples
    --------
    >>> from kaizenml.indicators import rsi
    >>> rsi([1.0, 2.0, 1.0, 2.0, 3.0], window=2).round(2)
    array([ nan,  nan, 50. , 75. , 87.5])
    """
    window = _window(window)
    return _one("_rsi", x, window)


def macd(x: Any, fast: int = 12, slow: int = 26, signal: int = 9) -> MACD:
    """Moving average convergence/divergence (TA-Lib ``MACD``).

    ``macd = ema(x, fast) - ema(x, slow)`` with both averages started on the slow average's
    first bar (the fast one seeded with the mean of the ``fast`` values ending there),
    ``signal = ema(macd, signal)`` and ``hist = macd - signal``. All three outputs start after
    ``slow + signal - 2`` NaNs, exactly as TA-Lib's.

    Parameters
    ----------
    x : array_like, pandas Series or DataFrame
        One or many series (rows of a 2-D array, columns of a DataFrame).
    fast, slow, signal : int
        Spans of the fast, slow and signal averages; ``1 <= fast <= slow``.

    Returns
    -------
    MACD
        Named tuple ``(macd, signal, hist)``.

    Examples
    --------
    >>> import numpy as np
    >>> from kaizenml.indicators import macd
    >>> out = macd(np.arange(50.0))
    >>> int(np.isnan(out.macd).sum()), round(float(out.macd[-1]), 4)
    (33, 7.0)
    """
    fast = _window(fast, "fast")
    slow = _window(slow, "slow")
    signal = _window(signal, "signal")
    if fast > slow:
        raise ValidationError(
            f"fast must not exceed slow, got fast={fast} and slow={slow}; swap them"
        )
    arr, layout = as_float(x, "x")
    outs = [empty_like(arr) for _ in range(3)]
    if arr.ndim == 1:
        k._macd_1d(arr, fast, slow, signal, *outs)
    else:
        k._macd_2d(arr, fast, slow, signal, *outs)
    return MACD(*(wrap(o, layout) for o in outs))


# --------------------------------------------------------------------------- dispersion


def rolling_std(x: Any, window: int = 5, ddof: int = 0) -> Any:
    """Rolling standard deviation (TA-Lib ``STDDEV`` with ``ddof=0``).

    Computed from sums of deviations around a recent value, so it keeps full precision at
    high price levels. TA-Lib reports 0 whenever the variance is below 1e-8; this function
    returns the actual (small) value.

    Parameters
    ----------
    x : array_like, pandas Series or DataFrame
        One or many series (rows of a 2-D array, columns of a DataFrame).
    window : int, default 5
        Number of bars, larger than ``ddof``.
    ddof : int, default 0
        Delta degrees of freedom: 0 for the population deviation (TA-Lib), 1 for the sample
        deviation (pandas' default).

    Examples
    --------
    >>> from kaizenml.indicators import rolling_std
    >>> rolling_std([1.0, 2.0, 3.0, 4.0], window=2)
    array([nan, 0.5, 0.5, 0.5])
    """
    window = _window(window)
    ddof = check_int(ddof, "ddof", minimum=0)
    if ddof >= window:
        raise ValidationError(f"ddof must be smaller than window, got ddof={ddof}, window={window}")
    return _one("_std", x, window, ddof)


def zscore(x: Any, window: int = 20, *, ddof: int = 0) -> Any:
    """Causal rolling z-score: ``(x - rolling mean) / rolling std`` over the last ``window``.

    Only bars at or before ``t`` enter the value at ``t``. A window with zero spread gives 0.

    Parameters
    ----------
    x : array_like, pandas Series or DataFrame
        One or many series (rows of a 2-D array, columns of a DataFrame).
    window : int, default 20
        Number of bars, larger than ``ddof``.
    ddof : int, default 0
        Delta degrees of freedom of the standard deviation.

    Examples
    --------
    >>> from kaizenml.indicators import zscore
    >>> zscore([1.0, 2.0, 3.0, 3.0], window=3).round(4)
    array([   nan,    nan, 1.2247, 0.7071])
    """
    window = _window(window)
    ddof = check_int(ddof, "ddof", minimum=0)
    if ddof >= window:
        raise ValidationError(f"ddof must be smaller than window, got ddof={ddof}, window={window}")
    return _one("_zscore", x, window, ddof)


def bollinger(x: Any, window: int = 20, nbdev: float = 2.0) -> Bollinger:
    """Bollinger bands (TA-Lib ``BBANDS`` with a simple moving average, population std).

    Parameters
    ----------
    x : array_like, pandas Series or DataFrame
        One or many series (rows of a 2-D array, columns of a DataFrame).
    window : int, default 20
        Number of bars in the average and the deviation.
    nbdev : float, default 2.0
        Band half-width in standard deviations (finite, >= 0).

    Returns
    -------
    Bollinger
        Named tuple ``(middle, upper, lower, position, bandwidth)`` where
        ``position = (x - lower) / (upper - lower)`` (0.5 when the bands coincide) and
        ``bandwidth = (upper - lower) / middle``.

    Examples
    --------
    >>> from kaizenml.indicators import bollinger
    >>> bands = bollinger([1.0, 3.0, 1.0, 3.0], window=2, nbdev=1.0)
    >>> bands.upper, bands.position
    (array([nan,  3.,  3.,  3.]), array([nan,  1.,  0.,  1.]))
    """
    window = _window(window)
    nbdev = check_float(nbdev, "nbdev", minimum=0.0)
    arr, layout = as_float(x, "x")
    outs = [empty_like(arr) for _ in range(5)]
    if arr.ndim == 1:
        k._bollinger_1d(arr, window, nbdev, *outs)
    else:
        k._bollinger_2d(arr, window, nbdev, *outs)
    return Bollinger(*(wrap(o, layout) for o in outs))


def _bollinger_position(x: Any, window: int = 20, nbdev: float = 2.0) -> Any:
    """Only the ``position`` output of :func:`bollinger` (the feature store's ``bb_position``),
    without allocating and writing the four other outputs."""
    window = _window(window)
    nbdev = check_float(nbdev, "nbdev", minimum=0.0)
    arr, layout = as_float(x, "x")
    position = empty_like(arr)
    unused = np.empty(arr.shape[:-1] + (0,))
    if arr.ndim == 1:
        k._bollinger_1d(arr, window, nbdev, unused, unused, unused, position, unused)
    else:
        k._bollinger_2d(arr, window, nbdev, unused, unused, unused, position, unused)
    return wrap(position, layout)


def _log_returns(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[..., 1:] = log(x[..., 1:] / x[..., :-1])`` with numpy's vectorized log.

    numpy evaluates the logarithm with SIMD instructions, several times faster than the scalar
    libm call a numba loop makes; the volatility kernels then run on these values in place.
    Non-positive or missing prices give NaN or infinities here, which the kernels treat as gaps.
    """
    if x.shape[-1] < 2:
        return out
    body = out[..., 1:]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.divide(x[..., 1:], x[..., :-1], out=body)
        np.log(body, out=body)
    return out


def volatility(
    close: Any, window: int = 20, annualization: float | None = None, *, ddof: int = 1
) -> Any:
    """Rolling standard deviation of log returns, optionally annualized.

    ``std(log(close[t] / close[t-1]) over the last window returns) * sqrt(annualization)``.
    The first ``window`` values are NaN (``window`` returns need ``window + 1`` prices).

    Parameters
    ----------
    close : array_like, pandas Series or DataFrame
        Positive prices; one or many series (rows of a 2-D array, columns of a DataFrame). A
        zero or negative price has no log return and is treated like a gap.
    window : int, default 20
        Number of returns, larger than ``ddof``.
    annualization : float, optional
        Periods per year (252 for daily bars); the result is multiplied by its square root.
    ddof : int, default 1
        Delta degrees of freedom: 1 gives the sample deviation, as ``pandas.Series.std``.

    Examples
    --------
    >>> import numpy as np
    >>> from kaizenml.indicators import volatility
    >>> prices = 100 * np.exp(np.tile([0.01, -0.01], 5).cumsum())
    >>> round(float(volatility(prices, window=4, ddof=0)[-1]), 12)
    0.01
    """
    window = _window(window)
    ddof = check_int(ddof, "ddof", minimum=0)
    if ddof >= window:
        raise ValidationError(f"ddof must be smaller than window, got ddof={ddof}, window={window}")
    scale = 1.0
    if annualization is not None:
        scale = math.sqrt(check_float(annualization, "annualization", minimum=0.0))
        if scale == 0.0:
            raise ValidationError("annualization must be positive, got 0")
    arr, layout = as_float(close, "close")
    out = empty_like(arr)
    _log_returns(arr, out)
    if arr.ndim == 1:
        k._volatility_1d(arr, window, ddof, scale, np.empty(window), out)
    else:
        k._volatility_2d(arr, window, ddof, scale, out)
    return wrap(out, layout)


# --------------------------------------------------------------------------- differences

_RETURN_KINDS = ("simple", "log")


def returns(x: Any, horizon: int = 1, kind: str = "simple") -> Any:
    """Returns over ``horizon`` bars: ``x[t] / x[t-h] - 1`` or ``log(x[t] / x[t-h])``.

    The simple return equals TA-Lib ``ROCP``. The first ``horizon`` values are NaN; a gap
    makes the next ``horizon`` values NaN.

    Parameters
    ----------
    x : array_like, pandas Series or DataFrame
        Prices; one or many series (rows of a 2-D array, columns of a DataFrame).
    horizon : int, default 1
        Lag in bars, at least 1.
    kind : {"simple", "log"}
        Simple or logarithmic return.

    Examples
    --------
    >>> from kaizenml.indicators import returns
    >>> returns([100.0, 110.0, 99.0])
    array([ nan,  0.1, -0.1])
    """
    horizon = _window(horizon, "horizon")
    kind = check_choice(kind, "kind", _RETURN_KINDS)
    return _one("_lag", x, horizon, _RETURN_KINDS.index(kind))


def momentum(x: Any, window: int = 10) -> Any:
    """Momentum ``x[t] - x[t-window]`` (TA-Lib ``MOM``).

    Examples
    --------
    >>> from kaizenml.indicators import momentum
    >>> momentum([1.0, 4.0, 9.0], window=1)
    array([nan,  3.,  5.])
    """
    window = _window(window)
    return _one("_lag", x, window, 2)


def roc(x: Any, window: int = 10) -> Any:
    """Rate of change in percent, ``(x[t] / x[t-window] - 1) * 100`` (TA-Lib ``ROC``).

    TA-Lib reports 0 when ``x[t-window]`` is 0; this function returns the IEEE result (inf or
    NaN).

    Examples
    --------
    >>> from kaizenml.indicators import roc
    >>> roc([100.0, 110.0, 99.0], window=1)
    array([ nan,  10., -10.])
    """
    window = _window(window)
    return _one("_lag", x, window, 3)


def volume_ratio(volume: Any, window: int = 20) -> Any:
    """Volume relative to its rolling mean: ``volume[t] / sma(volume, window)[t]``.

    The mean includes the current bar, so the value is causal. A window of zero volume gives
    NaN.

    Examples
    --------
    >>> from kaizenml.indicators import volume_ratio
    >>> volume_ratio([10.0, 30.0, 20.0], window=2)
    array([nan, 1.5, 0.8])
    """
    window = _window(window)
    arr, layout = as_float(volume, "volume")
    out = empty_like(arr)
    if arr.ndim == 1:
        k._volume_ratio_1d(arr, window, out)
    else:
        k._volume_ratio_2d(arr, window, out)
    return wrap(out, layout)


# --------------------------------------------------------------------------- high/low/close


def atr(high: Any, low: Any, close: Any, window: int = 14) -> Any:
    """Average true range with Wilder's smoothing (TA-Lib ``ATR``).

    The true range needs the previous close, so the first ``window`` outputs are NaN; the
    average is seeded with the mean of the first ``window`` true ranges. A gap in any of the
    three inputs restarts the indicator.

    Parameters
    ----------
    high, low, close : array_like, pandas Series or DataFrame
        Same shape; one or many series (rows of a 2-D array, columns of a DataFrame).
    window : int, default 14
        Smoothing period, at least 1.

    Examples
    --------
    >>> from kaizenml.indicators import atr
    >>> atr([2.0, 3.0, 4.0], [1.0, 1.0, 2.0], [1.5, 2.0, 3.0], window=1)
    array([nan,  2.,  2.])
    """
    window = _window(window)
    (h, lo, c), layout = as_float_many({"high": high, "low": low, "close": close})
    out = empty_like(c)
    if c.ndim == 1:
        k._atr_1d(h, lo, c, window, out)
    else:
        k._atr_2d(h, lo, c, window, out)
    return wrap(out, layout)


def stochastic(
    high: Any, low: Any, close: Any, fastk: int = 5, slowk: int = 3, slowd: int = 3
) -> Stochastic:
    """Slow stochastic oscillator (TA-Lib ``STOCH`` with simple moving averages).

    The fast %K is ``100 * (close - lowest low) / (highest high - lowest low)`` over ``fastk``
    bars (0 when the range is empty, as in TA-Lib); %K is its ``slowk``-bar mean and %D the
    ``slowd``-bar mean of %K. Both outputs start after ``fastk + slowk + slowd - 3`` NaNs.

    Parameters
    ----------
    high, low, close : array_like, pandas Series or DataFrame
        Same shape; one or many series (rows of a 2-D array, columns of a DataFrame).
    fastk, slowk, slowd : int
        Window lengths, each at least 1.

    Returns
    -------
    Stochastic
        Named tuple ``(k, d)``.

    Examples
    --------
    >>> from kaizenml.indicators import stochastic
    >>> out = stochastic([2.0, 3.0, 4.0], [1.0, 1.0, 2.0], [1.5, 2.0, 3.0], 2, 1, 1)
    >>> out.k
    array([        nan, 50.        , 66.66666667])
    """
    fastk = _window(fastk, "fastk")
    slowk = _window(slowk, "slowk")
    slowd = _window(slowd, "slowd")
    (h, lo, c), layout = as_float_many({"high": high, "low": low, "close": close})
    out_k = empty_like(c)
    out_d = empty_like(c)
    if c.ndim == 1:
        k._stochastic_1d(
            h, lo, c, fastk, slowk, slowd, np.empty(slowk), np.empty(slowd), out_k, out_d
        )
    else:
        k._stochastic_2d(h, lo, c, fastk, slowk, slowd, out_k, out_d)
    return Stochastic(wrap(out_k, layout), wrap(out_d, layout))


def obv(close: Any, volume: Any) -> Any:
    """On-balance volume (TA-Lib ``OBV``): the running sum of volume signed by the close's move.

    Starts at the first bar's volume. After a gap in either input the sum starts again from
    the next bar's volume.

    Examples
    --------
    >>> from kaizenml.indicators import obv
    >>> obv([1.0, 2.0, 1.5, 1.5], [10.0, 5.0, 3.0, 7.0])
    array([10., 15., 12., 12.])
    """
    (c, v), layout = as_float_many({"close": close, "volume": volume})
    out = empty_like(c)
    if c.ndim == 1:
        k._obv_1d(c, v, out)
    else:
        k._obv_2d(c, v, out)
    return wrap(out, layout)


# --------------------------------------------------------------------------- calendar


def _cyclical(kind: str, timestamps: Any) -> Cyclical:
    ticks, per_day, layout = as_ticks(timestamps)
    out_sin = np.empty(ticks.shape, dtype=np.float64)
    out_cos = np.empty(ticks.shape, dtype=np.float64)
    if kind == "hour":
        slots = k._calendar_slots(per_day)
        kernel = "_hour_of_day"
    else:
        slots = 7
        kernel = "_day_of_week"
    tab_sin = np.empty(slots)
    tab_cos = np.empty(slots)
    if kind == "hour":
        k._hour_table(per_day, tab_sin, tab_cos)
    else:
        k._day_table(tab_sin, tab_cos)
    getattr(k, f"{kernel}_{ticks.ndim}d")(ticks, per_day, tab_sin, tab_cos, out_sin, out_cos)
    return Cyclical(wrap(out_sin, layout), wrap(out_cos, layout))


def hour_of_day(timestamps: Any) -> Cyclical:
    """Time of day on the unit circle: ``sin`` and ``cos`` of ``2 pi * hours / 24``.

    ``hours`` includes minutes and seconds as a fraction, so 18:30 is 18.5.

    Parameters
    ----------
    timestamps : array_like, pandas Series or DatetimeIndex
        numpy ``datetime64`` of any unit, or epoch seconds (int, or float rounded to the
        microsecond). Naive values and epoch seconds are read as UTC; timezone-aware pandas
        values as wall-clock time in their own timezone. NaT is refused.

    Returns
    -------
    Cyclical
        Named tuple ``(sin, cos)`` of float64 arrays (pandas Series for pandas input).

    Examples
    --------
    >>> import numpy as np
    >>> from kaizenml.indicators import hour_of_day
    >>> enc = hour_of_day(np.array(["2024-01-01T06:00"], dtype="datetime64[m]"))
    >>> float(enc.sin[0]), round(float(enc.cos[0]), 12)
    (1.0, 0.0)
    """
    return _cyclical("hour", timestamps)


def day_of_week(timestamps: Any) -> Cyclical:
    """Day of the week on the unit circle: ``sin`` and ``cos`` of ``2 pi * day / 7``.

    ``day`` is 0 on Monday through 6 on Sunday (the calendar day in UTC for naive values and
    epoch seconds, in the value's own timezone for timezone-aware pandas data).

    Parameters
    ----------
    timestamps : array_like, pandas Series or DatetimeIndex
        As for :func:`hour_of_day`.

    Examples
    --------
    >>> import numpy as np
    >>> from kaizenml.indicators import day_of_week
    >>> enc = day_of_week(np.array(["2024-01-01"], dtype="datetime64[D]"))  # a Monday
    >>> float(enc.sin[0]), float(enc.cos[0])
    (0.0, 1.0)
    """
    return _cyclical("day", timestamps)
