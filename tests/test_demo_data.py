"""The demo's market-data generator, loader, rule backtest and classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kaizenml import NotFoundError, ValidationError
from kaizenml.demo._backtest import backtest_population, backtest_rule, prepare_rule_data
from kaizenml.demo._classifier import MLPClassifier, log_loss, make_labeled_dataset
from kaizenml.demo.data import generate_ohlcv, load_ohlcv


@pytest.fixture(scope="module")
def bars() -> dict[str, np.ndarray]:
    return generate_ohlcv(30_000, seed=11)


def test_generator_is_seeded_and_consistent(bars: dict[str, np.ndarray]) -> None:
    again = generate_ohlcv(30_000, seed=11)
    for k in bars:
        np.testing.assert_array_equal(bars[k], again[k])
    other = generate_ohlcv(30_000, seed=12)
    assert not np.array_equal(bars["close"], other["close"])
    lo_body = np.minimum(bars["open"], bars["close"])
    hi_body = np.maximum(bars["open"], bars["close"])
    assert np.all(bars["low"] <= lo_body) and np.all(hi_body <= bars["high"])
    assert np.all(bars["low"] > 0) and np.all(bars["volume"] > 0)


def test_generator_stylized_facts(bars: dict[str, np.ndarray]) -> None:
    r = np.diff(np.log(bars["close"]))
    a = np.abs(r)
    # volatility clustering: |r| is autocorrelated while r nearly is not
    acf_abs = np.corrcoef(a[:-1], a[1:])[0, 1]
    assert acf_abs > 0.1
    # volume grows with |return|
    assert np.corrcoef(a, bars["volume"][1:])[0, 1] > 0.15
    # fat tails
    z = (r - r.mean()) / r.std()
    assert np.mean(z**4) > 4.0
    # regimes: trending bars have positive return autocorrelation, mean reversion negative
    reg = bars["regime"][1:]
    for regime, sign in ((0, 1), (1, 1), (2, -1)):
        m = (reg[1:] == regime) & (reg[:-1] == regime)
        rho = np.corrcoef(r[1:][m], r[:-1][m])[0, 1]
        assert sign * rho > 0.03, (regime, rho)
    assert set(np.unique(bars["regime"])) == {0, 1, 2}


def test_generator_timestamps_are_intraday_weekdays() -> None:
    b = generate_ohlcv(200, seed=0, freq="5min", start="2024-01-05")  # a Friday
    ts = b["timestamp"]
    assert ts.dtype == np.dtype("datetime64[ns]")
    assert np.all(np.diff(ts.astype(np.int64)) > 0)
    minutes = (ts - ts.astype("datetime64[D]")).astype("timedelta64[m]").astype(int)
    assert minutes.min() == 9 * 60 + 35 and minutes.max() == 16 * 60
    weekday = (ts.astype("datetime64[D]").astype(np.int64) + 3) % 7
    assert weekday.max() < 5
    assert str(ts[78])[:10] == "2024-01-08"  # the Monday after


def test_generator_many_symbols_and_errors() -> None:
    b = generate_ohlcv(100, n_symbols=3, seed=1)
    assert b["close"].shape == (300,)
    assert list(np.unique(b["symbol"])) == ["SYM000", "SYM001", "SYM002"]
    with pytest.raises(ValidationError, match="freq"):
        generate_ohlcv(100, freq="7 parsecs")
    with pytest.raises(ValidationError, match="n_bars"):
        generate_ohlcv(1)


def test_load_csv_with_column_options(tmp_path, bars) -> None:
    path = tmp_path / "prices.csv"
    n = 50
    with open(path, "w") as fh:
        fh.write("Date;Px;Hi;Lo;Op;Qty\n")
        for i in range(n):
            ts = str(bars["timestamp"][i])[:19].replace("T", " ")
            vals = [repr(float(bars[k][i])) for k in ("close", "high", "low", "open", "volume")]
            fh.write(f"{ts};" + ";".join(vals) + "\n")
    got = load_ohlcv(
        path, sep=";", close_col="Px", high_col="Hi", low_col="Lo", open_col="Op", volume_col="Qty"
    )
    np.testing.assert_array_equal(got["close"], bars["close"][:n])
    np.testing.assert_array_equal(got["open"], bars["open"][:n])
    np.testing.assert_array_equal(got["timestamp"], bars["timestamp"][:n])
    assert set(got["symbol"]) == {"prices"}
    with pytest.raises(NotFoundError, match="Close"):
        load_ohlcv(path, sep=";", close_col="Close")
    with pytest.raises(ValidationError, match="close column"):
        load_ohlcv(path, sep=";")
    with pytest.raises(NotFoundError, match="does not exist"):
        load_ohlcv(tmp_path / "missing.csv")


def test_load_parquet_autodetects_columns(tmp_path, bars) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    n = 40
    table = pa.table(
        {
            "Timestamp": bars["timestamp"][:n],
            "Open": bars["open"][:n],
            "High": bars["high"][:n],
            "Low": bars["low"][:n],
            "Close": bars["close"][:n],
            "Volume": bars["volume"][:n],
            "Ticker": np.array(["B"] * 20 + ["A"] * 20),
        }
    )
    path = tmp_path / "bars.parquet"
    pq.write_table(table, path)
    got = load_ohlcv(path)
    # sorted by symbol then time: the "A" rows come first
    np.testing.assert_array_equal(got["close"][:20], bars["close"][20:n])
    np.testing.assert_array_equal(got["high"][20:], bars["high"][:20])
    assert list(got["symbol"][:1]) == ["A"]


def _reference_backtest(close, vol, p, start, stop, cost):
    """Slow, obvious version of the rule: pandas-free EMA and an explicit state machine."""

    def ema(span):
        a = 2.0 / (span + 1.0)
        out, e = [], close[0]
        for c in close:
            e = a * c + (1 - a) * e
            out.append(e)
        return np.array(out)

    ef, es = ema(p["fast"]), ema(p["slow"])
    fwd = np.append(np.diff(np.log(close)), 0.0)
    mode = 1.0 if p["mode"] == "trend" else -1.0
    pos, pnl, trades = 0.0, [], 0
    for t in range(start, stop):
        if vol[t] > 0:
            z = (ef[t] - es[t]) / (close[t] * vol[t])
            new = pos
            if pos == 0 and z > p["entry"]:
                new = 1.0
            elif pos == 0 and z < -p["entry"]:
                new = -1.0
            elif pos > 0:
                new = -1.0 if z < -p["entry"] else (0.0 if z < p["exit_frac"] * p["entry"] else 1.0)
            elif pos < 0:
                new = 1.0 if z > p["entry"] else (0.0 if z > -p["exit_frac"] * p["entry"] else -1.0)
        else:
            new = 0.0
        trades += new != pos
        pnl.append(mode * new * fwd[t] - cost * abs(new - pos))
        pos = new
    return np.array(pnl), trades


def test_population_backtest_matches_reference(bars) -> None:
    close = bars["close"][:3000]
    r = np.append(0.0, np.diff(np.log(close)))
    vol = np.full_like(close, np.nan)
    for t in range(30, close.size):
        vol[t] = r[t - 29 : t + 1].std()
    rd = prepare_rule_data(close, vol, span_lo=2, span_hi=80)
    rng = np.random.default_rng(5)
    n = 12
    pop = {
        "fast": rng.integers(2, 20, n),
        "slow": rng.integers(20, 81, n),
        "entry": rng.uniform(0, 1.5, n),
        "exit_frac": rng.uniform(0, 1, n),
        "mode": rng.choice(["trend", "revert"], n),
    }
    got = backtest_population(rd, pop, start=100, stop=2500, cost=2e-4, min_trades=0)
    for i in range(n):
        p = {k: v[i] for k, v in pop.items()}
        pnl, trades = _reference_backtest(close, vol, p, 100, 2500, 2e-4)
        sharpe = pnl.mean() / pnl.std(ddof=1) * math.sqrt(252 * 78)
        assert got["trades"][i] == trades
        assert got["total_return"][i] == pytest.approx(pnl.sum(), rel=1e-9, abs=1e-12)
        assert got["sharpe"][i] == pytest.approx(sharpe, rel=1e-8)
        one = backtest_rule(rd, p, start=100, stop=2500, cost=2e-4)
        assert one["sharpe"] == pytest.approx(sharpe, rel=1e-8)
        np.testing.assert_allclose(one["equity"], np.cumsum(pnl), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValidationError, match="spans must lie"):
        backtest_population(rd, {**pop, "slow": np.full(n, 500)})


def test_classifier_learns_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)  # XOR-like: needs the hidden layer
    clf = MLPClassifier(hidden=16, learning_rate=0.02, l2=1e-5, batch_size=64, seed=3)
    losses = [clf.train_epoch(X, y) for _ in range(40)]
    assert losses[-1] < 0.6 * losses[0]
    assert clf.accuracy(X, y) > 0.9
    again = MLPClassifier.from_artifact(clf.to_artifact())
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    p = clf.predict_proba(X)
    ref = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert log_loss(y, p) == pytest.approx(ref, rel=1e-12)


def test_direction_dataset_labels_future_moves() -> None:
    close = np.array([1.0, 2.0, 1.5, 1.7, 1.6, 3.0])
    feats = {"a": np.array([np.nan, 1, 2, 3, 4, 5.0])}
    X, y, idx = make_labeled_dataset(feats, close, horizon=2)
    assert list(idx) == [1, 2, 3]
    assert list(y) == [0.0, 1.0, 1.0]  # 2.0->1.7 down, 1.5->1.6 up, 1.7->3.0 up


def test_volatility_label_compares_next_and_last_windows() -> None:
    close = np.exp(np.cumsum([0.0, 0.01, -0.01, 0.03, -0.03, 0.001, 0.001, 0.0]))
    feats = {"a": np.ones(8)}
    X, y, idx = make_labeled_dataset(feats, close, horizon=2, target="volatility")
    # rows t = 2..5: |r| past (t-2, t] vs next (t, t+2]
    r = np.abs(np.diff(np.log(close)))
    expected = [float(r[t : t + 2].sum() > r[t - 2 : t].sum()) for t in range(2, 6)]
    assert list(idx) == [2, 3, 4, 5] and list(y) == expected
    with pytest.raises(ValidationError, match="target"):
        make_labeled_dataset(feats, close, target="alpha")
