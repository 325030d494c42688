"""The nine built-in features against TA-Lib and hand numpy computations, over every input kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from kaizenml import NotFoundError, ValidationError
from kaizenml.features import FeatureDefinition, FeatureStore


def _hand_log_vol(close: np.ndarray, window: int, annualization: float | None = None) -> np.ndarray:
    lr = np.full(close.size, np.nan)
    lr[1:] = np.log(close[1:] / close[:-1])
    out = np.full(close.size, np.nan)
    if close.size > window:
        win = np.lib.stride_tricks.sliding_window_view(lr[1:], window)
        out[window:] = win.std(axis=1, ddof=1)
    return out * (np.sqrt(annualization) if annualization else 1.0)


def _hand_time(ts: np.ndarray) -> dict[str, np.ndarray]:
    hours = (ts - ts.astype("datetime64[D]")) / np.timedelta64(1, "h")
    days = ts.astype("datetime64[D]").astype(np.int64)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return {
        "hour_of_day_sin": np.sin(2 * np.pi * hours / 24),
        "hour_of_day_cos": np.cos(2 * np.pi * hours / 24),
        "day_of_week_sin": np.sin(2 * np.pi * weekday / 7),
        "day_of_week_cos": np.cos(2 * np.pi * weekday / 7),
    }


def _oracle(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    close, volume = data["close"], data["volume"]
    upper, _mid, lower = talib.BBANDS(close, 20, 2.0, 2.0)
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    simple = np.full(close.size, np.nan)
    simple[1:] = close[1:] / close[:-1] - 1
    return {
        "price_return": simple,
        "price_volatility": _hand_log_vol(close, 20),
        "price_momentum": talib.MOM(close, 10),
        "volume_ratio": volume / talib.SMA(volume, 20),
        "rsi_14": talib.RSI(close, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_position": (close - lower) / (upper - lower),
        **_hand_time(data["timestamp"]),
    }


def _assert_close(got: np.ndarray, want: np.ndarray, name: str) -> None:
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{name}: NaN pattern differs"
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=name)


def test_all_builtins_equal_talib_and_numpy(store: FeatureStore, market, builtin_names) -> None:
    data = market(600)
    out = store.compute_features(list(builtin_names), data)
    expected = _oracle(data)
    assert list(out) == list(expected)
    for name, want in expected.items():
        _assert_close(out[name], want, name)


def test_single_feature_shapes_and_output_columns(store: FeatureStore, market) -> None:
    data = market(300)
    expected = _oracle(data)
    sig = store.compute_feature("macd_signal", data)
    _assert_close(sig, expected["macd_signal"], "macd_signal")
    both = store.compute_feature("hour_of_day", data)
    assert both.shape == (300, 2)
    _assert_close(both[:, 0], expected["hour_of_day_sin"], "sin")
    _assert_close(both[:, 1], expected["hour_of_day_cos"], "cos")
    full = store.compute_feature("macd", data)
    assert full.shape == (300, 3)
    _assert_close(full[:, 2], expected["macd_hist"], "macd_hist")
    with pytest.raises(ValueError, match="read-only"):
        full[0, 0] = 1.0  # results are read-only


def test_indicator_parameters_through_computation_config(store: FeatureStore, market) -> None:
    data = market(400)
    close = data["close"]
    store.register_feature(
        FeatureDefinition(
            "rsi_7",
            "1.0.0",
            dependencies=["close"],
            compute_function="rsi",
            computation_config={"params": {"window": 7}},
        )
    )
    store.register_feature(
        FeatureDefinition(
            "macd_fast",
            "1.0.0",
            dependencies=["close"],
            compute_function="macd",
            outputs=["mf", "mf_signal", "mf_hist"],
            computation_config={"params": {"fast": 5, "slow": 13, "signal": 4}},
        )
    )
    store.register_feature(
        FeatureDefinition(
            "log_ret_5",
            "1.0.0",
            dependencies=["close"],
            compute_function="returns",
            computation_config={"params": {"horizon": 5, "kind": "log"}},
        )
    )
    store.register_feature(
        FeatureDefinition(
            "vol_ann",
            "1.0.0",
            dependencies=["close"],
            compute_function="volatility",
            computation_config={"params": {"window": 10, "annualization": 252}},
        )
    )
    store.register_feature(
        FeatureDefinition(
            "bb_wide",
            "1.0.0",
            dependencies=["close"],
            compute_function="bollinger_position",
            computation_config={"params": {"window": 10, "nbdev": 3.0}},
        )
    )
    out = store.compute_features(["rsi_7", "macd_fast", "log_ret_5", "vol_ann", "bb_wide"], data)
    _assert_close(out["rsi_7"], talib.RSI(close, 7), "rsi_7")
    m, s, h = talib.MACD(close, 5, 13, 4)
    _assert_close(out["mf_signal"], s, "mf_signal")
    _assert_close(out["mf_hist"], h, "mf_hist")
    lr = np.full(close.size, np.nan)
    lr[5:] = np.log(close[5:] / close[:-5])
    _assert_close(out["log_ret_5"], lr, "log_ret_5")
    _assert_close(out["vol_ann"], _hand_log_vol(close, 10, 252), "vol_ann")
    up, _mid, lo = talib.BBANDS(close, 10, 3.0, 3.0)
    _assert_close(out["bb_wide"], (close - lo) / (up - lo), "bb_wide")


def test_new_version_of_builtin_with_other_params(store: FeatureStore, market) -> None:
    data = market(200)
    store.register_feature(
        FeatureDefinition(
            "rsi_14",
            "1.1.0",
            dependencies=["close"],
            compute_function="rsi",
            computation_config={"params": {"window": 21}},
        )
    )
    _assert_close(store.compute_feature("rsi_14", data), talib.RSI(data["close"], 21), "new")
    _assert_close(store.compute_feature("rsi_14@1.0", data), talib.RSI(data["close"], 14), "pin")


def test_bad_builtin_params_are_named(store: FeatureStore) -> None:
    with pytest.raises(ValidationError, match=r"does not take \['windw'\]"):
        store.register_feature(
            FeatureDefinition(
                "rsi_x",
                "1.0.0",
                dependencies=["close"],
                compute_function="rsi",
                computation_config={"params": {"windw": 7}},
            )
        )


def test_missing_raw_column_names_the_chain(store: FeatureStore, market) -> None:
    data = market(50)
    del data["volume"]
    with pytest.raises(NotFoundError, match=r"'volume' \(chain: volume_ratio@1.0.0 -> volume\)"):
        store.compute_feature("volume_ratio", data)


def _interleave(parts: dict[str, dict[str, np.ndarray]], seed: int) -> pd.DataFrame:
    """Rows of several symbols shuffled together, each symbol's rows kept in time order."""
    labels = np.concatenate([np.full(len(d["close"]), sym) for sym, d in parts.items()])
    np.random.default_rng(seed).shuffle(labels)
    columns = {}
    for col in ("close", "volume", "timestamp"):
        first = next(iter(parts.values()))[col]
        arr = np.empty(labels.size, dtype=first.dtype)
        for sym, d in parts.items():
            arr[labels == sym] = d[col]  # k-th row of the symbol goes to its k-th position
        columns[col] = arr
    return pd.DataFrame({**columns, "symbol": labels}, index=pd.RangeIndex(100, 100 + labels.size))


# the last case pads so unevenly that batch functions fall back to one call per symbol
@pytest.mark.parametrize(
    "lengths", [(300, 300, 300), (500, 40, 260), (900, 3, 8), (3000, 3, 8, 2, 4)]
)
def test_many_symbols_equal_one_by_one(store: FeatureStore, market, builtin_names, lengths) -> None:
    parts = {f"S{i}": market(n, seed=i) for i, n in enumerate(lengths)}
    frame = _interleave(parts, seed=len(lengths))
    out = store.compute_features(list(builtin_names), frame, symbol="symbol")
    assert isinstance(out, pd.DataFrame) and out.index.equals(frame.index)
    for sym, data in parts.items():
        rows = (frame["symbol"] == sym).to_numpy()
        expected = _oracle(data)
        for name, want in expected.items():
            _assert_close(out[name].to_numpy()[rows], want, f"{sym}:{name}")
    # a dict of frames gives the same numbers, split per symbol
    per = store.compute_features(
        list(builtin_names), {s: pd.DataFrame(d) for s, d in parts.items()}
    )
    for sym, data in parts.items():
        expected = _oracle(data)
        for name, want in expected.items():
            _assert_close(per[sym][name].to_numpy(), want, f"frames {sym}:{name}")


def test_mapping_and_pandas_inputs(store: FeatureStore, market) -> None:
    data = market(120)
    df = pd.DataFrame(data, index=pd.date_range("2024-01-01", periods=120, freq="h"))
    out = store.compute_features(["rsi_14", "day_of_week"], df)
    assert isinstance(out, pd.DataFrame) and out.index.equals(df.index)
    as_map = store.compute_features(["rsi_14", "day_of_week"], data)
    assert isinstance(as_map, dict)
    for col in out.columns:
        _assert_close(out[col].to_numpy(), as_map[col], col)
    single = store.compute_feature("rsi_14", df)
    assert isinstance(single, np.ndarray) and single.shape == (120,)


def test_polars_input(store: FeatureStore, market) -> None:
    import polars as pl
    data = market(150)
    data["timestamp"] = data["timestamp"].astype("datetime64[ms]")  # polars has no seconds unit
    frame = pl.DataFrame(data)
    out = store.compute_features(["rsi_14", "hour_of_day", "volume_ratio"], frame)
    assert isinstance(out, pl.DataFrame)
    expected = _oracle(data)
    for col in ["rsi_14", "hour_of_day_sin", "hour_of_day_cos", "volume_ratio"]:
        _assert_close(out[col].to_numpy(), expected[col], col)
    data_b = market(80, seed=4)
    data_b["timestamp"] = data_b["timestamp"].astype("datetime64[ms]")
    sym = pl.concat(
        [
            frame.with_columns(pl.lit("a").alias("s")),
            pl.DataFrame(data_b).with_columns(pl.lit("b").alias("s")),
        ]
    )
    out2 = store.compute_feature("rsi_14", sym, symbol="s")
    _assert_close(out2[150:], talib.RSI(market(80, seed=4)["close"], 14), "polars symbol b")


def test_pandas_nullable_and_timezone_columns(store: FeatureStore, market) -> None:
    data = market(60)
    close = data["close"].copy()
    close[7] = np.nan
    df = pd.DataFrame(
        {
            "close": pd.array(np.where(np.isnan(close), None, close), dtype="Float64"),
            "timestamp": pd.Series(data["timestamp"]).dt.tz_localize("Asia/Tokyo"),
        }
    )
    ret = store.compute_feature("price_return", df)
    expected = np.full(60, np.nan)
    expected[1:] = close[1:] / close[:-1] - 1
    _assert_close(ret, expected, "nullable price_return")
    # timezone-aware timestamps are read as wall-clock time in their own zone
    hours = store.compute_feature("hour_of_day", df)
    _assert_close(hours[:, 0], _hand_time(data["timestamp"])["hour_of_day_sin"], "tz sin")


@pytest.mark.parametrize(
    "labels",
    [
        ["x"] * 50 + ["y"] * 70 + ["z"] * 30,  # grouped runs
        [3] * 50 + [1] * 70 + [2] * 30,  # grouped numeric ids
        ["x"] * 50 + ["y"] * 70 + ["x"] * 30,  # a symbol comes back: not grouped
    ],
)
def test_symbol_layouts(store: FeatureStore, market, labels) -> None:
    data = market(150)
    sym = np.array(labels)
    out = store.compute_feature("rsi_14", {**data, "s": sym}, symbol="s")
    for label in np.unique(sym):
        rows = sym == label
        _assert_close(out[rows], talib.RSI(data["close"][rows], 14), str(label))


def test_pandas_datetime_index_is_the_timestamp(store: FeatureStore, market) -> None:
    data = market(80)
    df = pd.DataFrame({"close": data["close"]}, index=pd.DatetimeIndex(data["timestamp"]))
    out = store.compute_features(["hour_of_day", "rsi_14"], df)
    expected = _hand_time(data["timestamp"])
    _assert_close(out["hour_of_day_sin"].to_numpy(), expected["hour_of_day_sin"], "index sin")
    assert out.index.equals(df.index)
    named = df.rename_axis("ts")
    store.register_function(
        "epoch_days", lambda ts, window_size=None: ts.astype("datetime64[D]").astype(np.int64)
    )
    store.register_feature(
        FeatureDefinition("days", dependencies=["ts"], compute_function="epoch_days")
    )
    got = store.compute_feature("days", named)
    np.testing.assert_array_equal(got, data["timestamp"].astype("datetime64[D]").astype(np.int64))


def test_column_aliases(store: FeatureStore, market) -> None:
    data = market(90)
    df = pd.DataFrame({"Close": data["close"], "Vol": data["volume"], "Sym": "A"})
    out = store.compute_features(
        ["rsi_14", "volume_ratio"], df, columns={"close": "Close", "volume": "Vol"}, symbol="Sym"
    )
    _assert_close(out["rsi_14"].to_numpy(), talib.RSI(data["close"], 14), "aliased rsi")
    _assert_close(
        out["volume_ratio"].to_numpy(), data["volume"] / talib.SMA(data["volume"], 20), "vr"
    )
    assert store.get_lineage("rsi_14").source_columns == ("close",)
    with pytest.raises(ValidationError, match=r"columns\['close'\]='Price' is not a column"):
        store.compute_feature("rsi_14", df, columns={"close": "Price"})
