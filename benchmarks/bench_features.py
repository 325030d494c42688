"""Feature store speed: the nine built-ins on 10^6 rows against pandas and TA-Lib, and a cache hit.

Run the pytest-benchmark suite with
``PYTHONPATH=src python -m pytest benchmarks/bench_features.py --benchmark-only``, or print the
ratio table of benchmarks/features.md with ``PYTHONPATH=src python benchmarks/bench_features.py``.

Every competitor computes the same 13 columns (price_return, price_volatility, price_momentum,
volume_ratio, rsi_14, macd/macd_signal/macd_hist, bb_position, hour_of_day sin/cos,
day_of_week sin/cos) from the same arrays, allocation included.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import talib

from kaizenml.features import FeatureStore

N_ROWS = 1_000_000
NAMES = [
    "price_return",
    "price_volatility",
    "price_momentum",
    "volume_ratio",
    "rsi_14",
    "macd",
    "bb_position",
    "hour_of_day",
    "day_of_week",
]
TWO_PI = 2 * np.pi


def make_data(n: int = N_ROWS, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    volume = rng.integers(100, 100_000, n).astype(np.float64)
    timestamp = np.datetime64("2020-01-01T00:00", "ns") + np.arange(n) * np.timedelta64(60, "s")
    return {"close": close, "volume": volume, "timestamp": timestamp}


def _time_columns(ts: np.ndarray) -> dict[str, np.ndarray]:
    day = ts.astype("datetime64[D]")
    hours = (ts - day) / np.timedelta64(1, "h")
    weekday = (day.astype(np.int64) + 3) % 7
    return {
        "hour_of_day_sin": np.sin(TWO_PI * hours / 24),
        "hour_of_day_cos": np.cos(TWO_PI * hours / 24),
        "day_of_week_sin": np.sin(TWO_PI * weekday / 7),
        "day_of_week_cos": np.cos(TWO_PI * weekday / 7),
    }


def with_talib(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same columns assembled from TA-Lib calls plus numpy glue."""
    close, volume = data["close"], data["volume"]
    log_ret = np.empty_like(close)
    log_ret[0] = np.nan
    np.log(close[1:] / close[:-1], out=log_ret[1:])
    vol = np.full_like(close, np.nan)
    # TA-Lib's STDDEV is the population deviation; rescale to the sample one (ddof=1)
    vol[1:] = talib.STDDEV(log_ret[1:], 20, 1.0) * np.sqrt(20 / 19)
    upper, _middle, lower = talib.BBANDS(close, 20, 2.0, 2.0)
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    return {
        "price_return": talib.ROCP(close, 1),
        "price_volatility": vol,
        "price_momentum": talib.MOM(close, 10),
        "volume_ratio": volume / talib.SMA(volume, 20),
        "rsi_14": talib.RSI(close, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_position": (close - lower) / (upper - lower),
        **_time_columns(data["timestamp"]),
    }


def with_pandas(frame: pd.DataFrame) -> pd.DataFrame:
    """The same columns with pandas rolling/ewm (Wilder RSI as an ewm with alpha=1/14)."""
    close, volume, ts = frame["close"], frame["volume"], frame["timestamp"]
    out = pd.DataFrame(index=frame.index)
    out["price_return"] = close.pct_change()
    out["price_volatility"] = np.log(close).diff().rolling(20).std()
    out["price_momentum"] = close.diff(10)
    out["volume_ratio"] = volume / volume.rolling(20).mean()
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
    out["rsi_14"] = 100 - 100 / (1 + gain / loss)
    macd = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    out["macd"] = macd
    out["macd_signal"] = macd.ewm(span=9, adjust=False).mean()
    out["macd_hist"] = macd - out["macd_signal"]
    mid = close.rolling(20).mean()
    std = close.rolling(20).std(ddof=0)
    out["bb_position"] = (close - (mid - 2 * std)) / (4 * std)
    hours = ts.dt.hour + ts.dt.minute / 60 + ts.dt.second / 3600
    out["hour_of_day_sin"] = np.sin(TWO_PI * hours / 24)
    out["hour_of_day_cos"] = np.cos(TWO_PI * hours / 24)
    out["day_of_week_sin"] = np.sin(TWO_PI * ts.dt.day_of_week / 7)
    out["day_of_week_cos"] = np.cos(TWO_PI * ts.dt.day_of_week / 7)
    return out


def with_store(store: FeatureStore, data: Any, **kwargs: Any) -> Any:
    return store.compute_features(NAMES, data, **kwargs)


# ----------------------------------------------------------------------------- pytest-benchmark
try:
    import pytest
except ImportError:  # pragma: no cover - the script mode below needs only numpy/pandas/talib
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="module")
    def data() -> dict[str, np.ndarray]:
        return make_data()

    @pytest.fixture(scope="module")
    def store(tmp_path_factory: Any) -> FeatureStore:
        path = tmp_path_factory.mktemp("bench") / "features.db"
        return FeatureStore(f"sqlite:///{path}", statistics=False)

    def test_store_nine_builtins(benchmark: Any, store: FeatureStore, data: Any) -> None:
        benchmark(with_store, store, data, use_cache=False)

    def test_store_nine_builtins_with_statistics(
        benchmark: Any, store: FeatureStore, data: Any
    ) -> None:
        benchmark(with_store, store, data, use_cache=False, statistics=True)

    def test_store_cache_hit(benchmark: Any, store: FeatureStore, data: Any) -> None:
        with_store(store, data)
        benchmark(with_store, store, data)

    def test_talib_nine(benchmark: Any, data: Any) -> None:
        benchmark(with_talib, data)

    def test_pandas_nine(benchmark: Any, data: Any) -> None:
        benchmark(with_pandas, pd.DataFrame(data))

    def test_store_many_symbols(benchmark: Any, store: FeatureStore, data: Any) -> None:
        many = pd.DataFrame({**data, "symbol": np.repeat(np.arange(2000), 500)})
        benchmark(with_store, store, many, symbol="symbol", use_cache=False)


# ----------------------------------------------------------------------------- table mode
def _best(fn: Any, repeat: int) -> float:
    fn()  # warm-up (numba compilation, page cache)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(repeat: int = 7) -> None:
    data = make_data()
    frame = pd.DataFrame(data)
    store = FeatureStore("sqlite:///:memory:", statistics=False)
    # the store and the TA-Lib assembly compute the same numbers (pandas seeds RSI/MACD
    # differently, so it is timed only)
    ours = with_store(store, data, use_cache=False)
    ref = with_talib(data)
    for name, col in ref.items():
        np.testing.assert_allclose(ours[name], col, rtol=1e-8, atol=1e-9, err_msg=name)
    rows = {
        "kaizenml store, cold (no cache, no statistics)": _best(
            lambda: with_store(store, data, use_cache=False), repeat
        ),
        "kaizenml store, cold, pandas in/out": _best(
            lambda: with_store(store, frame, use_cache=False), repeat
        ),
        "kaizenml store, cold, with statistics": _best(
            lambda: with_store(store, data, use_cache=False, statistics=True), repeat
        ),
        "kaizenml store, cache hit (mapping)": _best(lambda: with_store(store, data), repeat),
        "kaizenml store, cache hit (pandas)": _best(lambda: with_store(store, frame), repeat),
        "TA-Lib calls + numpy": _best(lambda: with_talib(data), repeat),
        "pandas rolling/ewm": _best(lambda: with_pandas(frame), max(2, repeat // 2)),
    }
    # many symbols: 2000 x 500 rows with a symbol column vs a Python loop of the TA-Lib assembly
    n_sym, length = 2000, 500
    many = pd.DataFrame({**data, "symbol": np.repeat(np.arange(n_sym), length)})
    rows["kaizenml store, 2000 symbols x 500 rows (symbol column)"] = _best(
        lambda: with_store(store, many, symbol="symbol", use_cache=False), max(2, repeat // 2)
    )

    def talib_loop() -> None:
        for s in range(n_sym):
            part = slice(s * length, (s + 1) * length)
            with_talib({k: v[part] for k, v in data.items()})

    rows["TA-Lib assembly, Python loop over 2000 symbols"] = _best(talib_loop, max(2, repeat // 2))
    base = rows["kaizenml store, cold (no cache, no statistics)"]
    print(f"{'variant':52s} {'ms':>9s} {'x store':>8s}")
    for name, t in rows.items():
        print(f"{name:52s} {t * 1e3:9.2f} {t / base:8.2f}")
    print("store cold vs TA-Lib:", round(rows["TA-Lib calls + numpy"] / base, 2), "x faster")
    print("store cold vs pandas:", round(rows["pandas rolling/ewm"] / base, 2), "x faster")
    many_ratio = (
        rows["TA-Lib assembly, Python loop over 2000 symbols"]
        / rows["kaizenml store, 2000 symbols x 500 rows (symbol column)"]
    )
    print("2000 symbols, store vs TA-Lib loop:", round(many_ratio, 2), "x faster")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
