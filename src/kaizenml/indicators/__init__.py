"""Technical indicators compiled with numba, reproducing TA-Lib.

Every function takes one series (1-D) or many at once: a 2-D numpy array holds one series per
row, a pandas DataFrame one series per column, and the batch is spread over threads. Outputs
are float64 with the input's shape and the same leading NaNs as TA-Lib; pandas input gives
pandas output with the same index.

Gaps: a NaN or infinite input value is a gap. The output is NaN at the gap and the indicator
restarts after it, as if the series began on the next bar: ``f(x)[g + 1:]`` equals
``f(x[g + 1:])`` and the values before the gap are untouched. (TA-Lib instead returns NaN or 0
for the rest of the series.)

Examples
--------
>>> import numpy as np
>>> from kaizenml import indicators as ki
>>> close = 100 + np.cumsum(np.random.default_rng(0).normal(size=500))
>>> ki.rsi(close).shape
(500,)
>>> ki.macd(np.tile(close, (4, 1))).hist.shape  # four series at once
(4, 500)
"""

from __future__ import annotations

from ._api import (
    MACD,
    Bollinger,
    Cyclical,
    Stochastic,
    atr,
    bollinger,
    day_of_week,
    ema,
    hour_of_day,
    macd,
    momentum,
    obv,
    returns,
    roc,
    rolling_std,
    rsi,
    sma,
    stochastic,
    volatility,
    volume_ratio,
    zscore,
)

__all__ = [
    "MACD",
    "Bollinger",
    "Cyclical",
    "Stochastic",
    "atr",
    "bollinger",
    "day_of_week",
    "ema",
    "hour_of_day",
    "macd",
    "momentum",
    "obv",
    "returns",
    "roc",
    "rolling_std",
    "rsi",
    "sma",
    "stochastic",
    "volatility",
    "volume_ratio",
    "zscore",
]
