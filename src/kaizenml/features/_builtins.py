"""The built-in features: thin adapters from the store's calling convention to
:mod:`kaizenml.indicators`.

Every indicator adapter runs in ``"batch"`` mode: it receives one series as a 1-D array or many
symbols as a 2-D array (one NaN-padded row per symbol) and hands it to the indicator's 1-D or
2-D kernel. The time encodings are pointwise and run once over all rows (``"elementwise"``).
Indicator windows come from ``computation_config.params``; ``window_size`` is the store's
post-processing window and is ignored here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BUILTIN_DEFINITIONS", "BUILTIN_FUNCTIONS"]


def _ind() -> Any:
    from .. import indicators

    return indicators


def _rows(fn: Any, x: np.ndarray, **kwargs: Any) -> Any:
    """Call an indicator on one series (1-D kernel) or on a batch of rows (2-D kernel)."""
    if x.ndim == 2 and x.shape[0] == 1:
        out = fn(x[0], **kwargs)
        if isinstance(out, tuple):
            return type(out)(*(np.asarray(o).reshape(1, -1) for o in out))
        return np.asarray(out).reshape(1, -1)
    return fn(x, **kwargs)


def price_return(
    close: np.ndarray, *, window_size: int | None = None, horizon: int = 1, kind: str = "simple"
) -> np.ndarray:
    """close[t] / close[t - horizon] - 1 (``kind="simple"``) or its logarithm (``"log"``)."""
    return _rows(_ind().returns, close, horizon=horizon, kind=kind)


def price_volatility(
    close: np.ndarray,
    *,
    window_size: int | None = None,
    window: int = 20,
    annualization: float | None = None,
) -> np.ndarray:
    """Rolling standard deviation of log returns over ``window`` (optionally annualized)."""
    return _rows(_ind().volatility, close, window=window, annualization=annualization)


def price_momentum(
    close: np.ndarray, *, window_size: int | None = None, window: int = 10
) -> np.ndarray:
    """close[t] - close[t - window] (TA-Lib MOM)."""
    return _rows(_ind().momentum, close, window=window)


def volume_ratio(
    volume: np.ndarray, *, window_size: int | None = None, window: int = 20
) -> np.ndarray:
    """volume[t] / mean(volume over the last ``window`` rows)."""
    return _rows(_ind().volume_ratio, volume, window=window)


def rsi(close: np.ndarray, *, window_size: int | None = None, window: int = 14) -> np.ndarray:
    """Wilder's relative strength index (TA-Lib RSI)."""
    return _rows(_ind().rsi, close, window=window)


def macd(
    close: np.ndarray,
    *,
    window_size: int | None = None,
    fast: int = 12,
    slow: int = 26,
    signal: int = 9,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MACD line, signal line and histogram (TA-Lib MACD)."""
    out = _rows(_ind().macd, close, fast=fast, slow=slow, signal=signal)
    return out.macd, out.signal, out.hist


def bollinger_position(
    close: np.ndarray, *, window_size: int | None = None, window: int = 20, nbdev: float = 2.0
) -> np.ndarray:
    """(close - lower) / (upper - lower) of the Bollinger bands (TA-Lib BBANDS, ddof=0)."""
    return _rows(_ind().bollinger, close, window=window, nbdev=nbdev).position


def hour_of_day(
    timestamp: np.ndarray, *, window_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of 2*pi*(hour + minute/60 + second/3600)/24."""
    sin, cos = _ind().hour_of_day(timestamp)
    return sin, cos


def day_of_week(
    timestamp: np.ndarray, *, window_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of 2*pi*weekday/7 (Monday = 0)."""
    sin, cos = _ind().day_of_week(timestamp)
    return sin, cos


#: function name -> (callable, mode)
BUILTIN_FUNCTIONS: dict[str, tuple[Any, str]] = {
    "returns": (price_return, "batch"),
    "volatility": (price_volatility, "batch"),
    "momentum": (price_momentum, "batch"),
    "volume_ratio": (volume_ratio, "batch"),
    "rsi": (rsi, "batch"),
    "macd": (macd, "batch"),
    "bollinger_position": (bollinger_position, "batch"),
    "hour_of_day": (hour_of_day, "elementwise"),
    "day_of_week": (day_of_week, "elementwise"),
}

#: the nine built-in feature definitions (as dicts, turned into FeatureDefinitions by the store)
BUILTIN_DEFINITIONS: list[dict[str, Any]] = [
    {
        "name": "price_return",
        "description": "Simple return of close over `horizon` rows (params: horizon=1, "
        "kind='simple'|'log').",
        "dependencies": ["close"],
        "compute_function": "returns",
        "computation_config": {"params": {"horizon": 1, "kind": "simple"}},
        "tags": ["builtin", "price"],
    },
    {
        "name": "price_volatility",
        "description": "Rolling std (ddof=1) of log returns of close over `window`=20 rows.",
        "dependencies": ["close"],
        "compute_function": "volatility",
        "computation_config": {"params": {"window": 20, "annualization": None}},
        "tags": ["builtin", "price"],
    },
    {
        "name": "price_momentum",
        "description": "close[t] - close[t - window], window=10 (TA-Lib MOM).",
        "dependencies": ["close"],
        "compute_function": "momentum",
        "computation_config": {"params": {"window": 10}},
        "tags": ["builtin", "price"],
    },
    {
        "name": "volume_ratio",
        "description": "volume / rolling mean of volume over `window`=20 rows.",
        "dependencies": ["volume"],
        "compute_function": "volume_ratio",
        "computation_config": {"params": {"window": 20}},
        "tags": ["builtin", "volume"],
    },
    {
        "name": "rsi_14",
        "description": "Wilder RSI of close over 14 rows (TA-Lib RSI).",
        "dependencies": ["close"],
        "compute_function": "rsi",
        "computation_config": {"params": {"window": 14}},
        "tags": ["builtin", "price"],
    },
    {
        "name": "macd",
        "description": "MACD 12/26/9 of close: columns macd, macd_signal, macd_hist (TA-Lib MACD).",
        "dependencies": ["close"],
        "compute_function": "macd",
        "computation_config": {"params": {"fast": 12, "slow": 26, "signal": 9}},
        "tags": ["builtin", "price"],
        "outputs": ["macd", "macd_signal", "macd_hist"],
    },
    {
        "name": "bb_position",
        "description": "Position of close inside the Bollinger bands (20 rows, 2 std): "
        "(close - lower) / (upper - lower).",
        "dependencies": ["close"],
        "compute_function": "bollinger_position",
        "computation_config": {"params": {"window": 20, "nbdev": 2.0}},
        "tags": ["builtin", "price"],
    },
    {
        "name": "hour_of_day",
        "description": "Cyclical hour of the timestamp: columns hour_of_day_sin, hour_of_day_cos.",
        "dependencies": ["timestamp"],
        "compute_function": "hour_of_day",
        "tags": ["builtin", "time"],
        "outputs": ["hour_of_day_sin", "hour_of_day_cos"],
    },
    {
        "name": "day_of_week",
        "description": "Cyclical weekday of the timestamp: columns day_of_week_sin, "
        "day_of_week_cos.",
        "dependencies": ["timestamp"],
        "compute_function": "day_of_week",
        "tags": ["builtin", "time"],
        "outputs": ["day_of_week_sin", "day_of_week_cos"],
    },
]
