"""Registry, versions, dependency resolution, custom functions, cache, persistence, lineage."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import talib

from kaizenml import KaizenTypeError, NotFoundError, ValidationError
from kaizenml.features import ComputationConfig, FeatureDefinition, FeatureStore, get_feature_store


def _spread_def(version: str = "1.0.0", **cfg) -> FeatureDefinition:
    return FeatureDefinition(
        "spread",
        version,
        dependencies=["high", "low"],
        compute_function="spread",
        computation_config=cfg,
    )


@pytest.fixture
def hl() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    low = 100 + np.cumsum(rng.normal(size=300))
    return {"high": low + rng.random(300) * 2, "low": low, "close": low + 0.5}


def _register_spread(store: FeatureStore) -> list[int]:
    calls: list[int] = []

    @store.compute_function("spread")
    def spread(high, low, *, window_size=None, scale=1.0):
        calls.append(len(high))
        return (high - low) * scale

    return calls


# ------------------------------------------------------------------ registry and versions
def test_versions_kept_newest_default_and_pinning(store: FeatureStore, hl) -> None:
    _register_spread(store)
    store.register_feature(_spread_def("1.0.0"))
    store.register_feature(_spread_def("1.10.0", params={"scale": 3.0}))
    store.register_feature(_spread_def("1.9.0", params={"scale": 2.0}))
    store.register_feature(_spread_def("2.0.0-rc.1", params={"scale": 5.0}))
    refs = [d.ref for d in store.list_features() if d.name == "spread"]
    assert refs == ["spread@1.0.0", "spread@1.9.0", "spread@1.10.0", "spread@2.0.0-rc.1"]
    base = hl["high"] - hl["low"]
    np.testing.assert_allclose(store.compute_feature("spread", hl), 5 * base)  # rc is newest
    np.testing.assert_allclose(store.compute_feature("spread@1.10.0", hl), 3 * base)
    np.testing.assert_allclose(store.compute_feature("spread@1.9", hl), 2 * base)
    np.testing.assert_allclose(store.compute_feature("spread@1", hl), base)
    with pytest.raises(NotFoundError, match="no version '3.0.0'"):
        store.compute_feature("spread@3.0.0", hl)


def test_reregistering_same_version_rules(store: FeatureStore) -> None:
    _register_spread(store)
    d = store.register_feature(_spread_def())
    assert store.register_feature(_spread_def()) == d  # identical: no-op
    relabeled = FeatureDefinition.from_dict({**d.to_dict(), "description": "new words"})
    store.register_feature(relabeled)
    assert store.get_definition("spread").description == "new words"
    with pytest.raises(ValidationError, match="new version"):
        store.register_feature(_spread_def(params={"scale": 2.0}))
    with pytest.raises(ValidationError, match="equals the registered version"):
        store.register_feature(_spread_def("1.0", params={"scale": 2.0}))
    with pytest.raises(ValidationError, match="built-in"):
        store.register_feature(
            FeatureDefinition("rsi_14", "1.0.0", dependencies=["close"], compute_function="rsi")
        )


def test_register_needs_known_function_and_accepts_dicts(store: FeatureStore) -> None:
    with pytest.raises(NotFoundError, match="register_function\\('nope', fn\\)"):
        store.register_feature(
            FeatureDefinition("x", dependencies=["close"], compute_function="nope")
        )
    d = store.register_feature(
        {
            "name": "r9",
            "version": "0.1.0",
            "dependencies": ["close"],
            "compute_function": "rsi",
            "computation_config": {"params": {"window": 9}},
        }
    )
    assert d.computation_config == ComputationConfig(params={"window": 9})
    with pytest.raises(KaizenTypeError, match="definition must be a FeatureDefinition or a dict"):
        store.register_feature(42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="built in"):
        store.register_function("rsi", lambda close: close)
    with pytest.raises(ValidationError, match="mode='rows'"):
        store.register_function("f", lambda x: x, mode="rows")


def test_deprecated_feature_warns(store: FeatureStore, hl) -> None:
    _register_spread(store)
    store.register_feature(_spread_def())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.compute_feature("spread", hl)
    store.deprecate("spread@1.0.0")
    assert store.get_definition("spread").deprecated
    with pytest.warns(
        DeprecationWarning, match="spread@1.0.0 is deprecated|'spread@1.0.0' is deprecated"
    ):
        store.compute_feature("spread", hl)


# ------------------------------------------------------------------ dependencies
def test_dependency_chain_computed_in_order_once(store: FeatureStore, hl) -> None:
    calls = _register_spread(store)
    store.register_feature(_spread_def())
    order: list[str] = []

    @store.compute_function("double")
    def double(spread, *, window_size=None):
        order.append("double")
        return 2 * spread

    @store.compute_function("combo")
    def combo(spread, spread_x2, rsi_14, *, window_size=None):
        order.append("combo")
        return spread + spread_x2 + rsi_14

    store.register_feature(
        FeatureDefinition("spread_x2", dependencies=["spread"], compute_function="double")
    )
    store.register_feature(
        FeatureDefinition(
            "combo", dependencies=["spread", "spread_x2", "rsi_14"], compute_function="combo"
        )
    )
    out = store.compute_features(["combo", "spread_x2", "spread"], hl)
    assert len(calls) == 1 and order == ["double", "combo"]
    base = hl["high"] - hl["low"]
    np.testing.assert_allclose(out["combo"], 3 * base + talib.RSI(hl["close"], 14))
    lin = store.get_lineage("combo")
    assert lin.source_columns == ("high", "low", "close")
    assert lin.upstream_features == ("spread@1.0.0", "spread_x2@1.0.0", "rsi_14@1.0.0")
    assert [t["feature"] for t in lin.transformations] == [
        "spread@1.0.0",
        "spread_x2@1.0.0",
        "rsi_14@1.0.0",
        "combo@1.0.0",
    ]
    assert lin.transformations[2]["params"] == {"window": 14}


def test_cycle_is_named(store: FeatureStore, hl) -> None:
    store.register_function("ident", lambda **kw: next(iter(kw.values())))
    store.register_feature(FeatureDefinition("a", dependencies=["b"], compute_function="ident"))
    store.register_feature(FeatureDefinition("b", dependencies=["c"], compute_function="ident"))
    store.register_feature(FeatureDefinition("c", dependencies=["a"], compute_function="ident"))
    with pytest.raises(ValidationError, match=r"cycle: a@1.0.0 -> b@1.0.0 -> c@1.0.0 -> a@1.0.0"):
        store.compute_feature("a", hl)


def test_missing_column_in_a_deep_chain(store: FeatureStore, hl) -> None:
    store.register_function("ident", lambda **kw: next(iter(kw.values())))
    store.register_feature(FeatureDefinition("a", dependencies=["b"], compute_function="ident"))
    store.register_feature(FeatureDefinition("b", dependencies=["bid"], compute_function="ident"))
    with pytest.raises(NotFoundError, match=r"'bid' \(chain: a@1.0.0 -> b@1.0.0 -> bid\)"):
        store.compute_feature("a", hl)
    with pytest.raises(NotFoundError, match="neither a registered feature"):
        store.compute_feature("zzz", hl)


def test_custom_function_errors_are_clear(store: FeatureStore, hl) -> None:
    store.register_function("short", lambda high, window_size=None: high[:-1])
    store.register_feature(
        FeatureDefinition("short", dependencies=["high"], compute_function="short")
    )
    with pytest.raises(ValidationError, match=r"returned shape \(299,\).*expected \(300,\)"):
        store.compute_feature("short", hl)
    with pytest.raises(ValidationError, match="equal lengths"):
        store.compute_feature("rsi_14", {"close": np.ones(5), "high": np.ones(4)})
    with pytest.raises(KaizenTypeError, match="dtype"):
        store.compute_feature("rsi_14", {"close": np.array(["a", "b"])})
    with pytest.raises(KaizenTypeError, match="data must be"):
        store.compute_feature("rsi_14", [1.0, 2.0])
    with pytest.raises(ValidationError, match="symbol='sym' is not a column"):
        store.compute_feature("rsi_14", hl, symbol="sym")


@pytest.mark.parametrize("mode", ["series", "batch", "elementwise"])
def test_function_modes_per_symbol(store: FeatureStore, mode: str) -> None:
    seen: list[tuple[int, ...]] = []

    def cumulative(x, *, window_size=None):
        seen.append(x.shape)
        if mode == "batch":
            return np.cumsum(np.nan_to_num(x), axis=-1)
        return np.cumsum(x) if mode == "series" else x * 2

    store.register_function("cum", cumulative, mode=mode)
    store.register_feature(FeatureDefinition("cum", dependencies=["x"], compute_function="cum"))
    data = {"x": np.arange(10.0), "sym": np.array(list("ababbbaaab"))}
    out = store.compute_feature("cum", data, symbol="sym")
    if mode == "elementwise":
        np.testing.assert_array_equal(out, data["x"] * 2)
        assert seen == [(10,)]
        return
    expected = np.empty(10)
    for s in "ab":
        rows = data["sym"] == s
        expected[rows] = np.cumsum(data["x"][rows])
    np.testing.assert_array_equal(out, expected)
    assert seen == ([(5,), (5,)] if mode == "series" else [(2, 5)])


# ------------------------------------------------------------------ post-processing via the store
def test_aggregation_fill_normalize_pipeline_matches_pandas(store: FeatureStore, hl) -> None:
    _register_spread(store)
    store.register_feature(
        _spread_def(
            window_size=5,
            aggregation="max",
            fill_missing="forward",
            normalize="zscore",
            normalize_window=10,
        )
    )
    out = store.compute_feature("spread", hl)
    s = pd.Series(hl["high"] - hl["low"]).rolling(5).max().ffill()
    expected = (s - s.rolling(10).mean()) / s.rolling(10).std()
    np.testing.assert_allclose(out, expected.to_numpy(), rtol=1e-9)
    lin = store.get_lineage("spread")
    assert [t["step"] for t in lin.transformations] == [
        "compute",
        "aggregation",
        "fill_missing",
        "normalize",
    ]
    assert lin.transformations[3] == {
        "feature": "spread@1.0.0",
        "step": "normalize",
        "method": "zscore",
        "window": 10,
    }


@pytest.mark.parametrize(
    "cfg",
    [
        {"normalize": "minmax"},
        {"normalize": "zscore"},
        {"fill_missing": "mean"},
        {"fill_missing": "mean", "normalize": "zscore"},
    ],
)
def test_an_infinity_is_a_gap_in_expanding_steps(store: FeatureStore, cfg) -> None:
    @store.compute_function("passthrough")
    def passthrough(x, *, window_size=None):
        return x

    store.register_feature(
        FeatureDefinition(
            "passthrough",
            "1.0.0",
            dependencies=["x"],
            compute_function="passthrough",
            computation_config=cfg,
        )
    )
    x = np.array([1.0, 2.0, 3.0, np.inf, 5.0, np.nan, -np.inf, 6.0, 7.0, 8.0])
    out = store.compute_feature("passthrough", {"x": x})
    s = pd.Series(np.where(np.isfinite(x), x, np.nan))  # the oracle: infinities are gaps
    if cfg.get("fill_missing") == "mean":
        s = s.fillna(s.expanding().mean())
    if cfg.get("normalize") == "zscore":
        s = (s - s.expanding().mean()) / s.expanding().std()
    elif cfg.get("normalize") == "minmax":
        lo, hi = s.expanding().min(), s.expanding().max()
        s = ((s - lo) / (hi - lo)).where(hi > lo, 0.5).where(s.notna())
    np.testing.assert_allclose(out, s.to_numpy(), rtol=1e-12)
    assert np.array_equal(np.isnan(out), s.isna().to_numpy())
    assert np.isfinite(out[-3:]).all()


# ------------------------------------------------------------------ cache
def test_cache_hits_and_never_stale(store: FeatureStore, hl) -> None:
    calls = _register_spread(store)
    store.register_feature(_spread_def())
    a = store.compute_feature("spread", hl)
    b = store.compute_feature("spread", {k: v.copy() for k, v in hl.items()})
    assert len(calls) == 1 and store.cache_hits == 1 and store.cache_misses == 1
    np.testing.assert_array_equal(a, b)
    changed = dict(hl, high=hl["high"].copy())
    changed["high"][-1] += 1.0  # one changed input value
    c = store.compute_feature("spread", changed)
    assert len(calls) == 2 and c[-1] == pytest.approx(a[-1] + 1.0)
    store.register_feature(_spread_def("1.1.0", params={"scale": 2.0}))  # changed definition
    np.testing.assert_allclose(store.compute_feature("spread", hl), 2 * a)
    assert len(calls) == 3

    @store.compute_function("spread")  # same name, new code: must not return the old values
    def spread(high, low, *, window_size=None, scale=1.0):
        return (high - low) * scale + 1

    np.testing.assert_allclose(store.compute_feature("spread", hl), 2 * a + 1)
    # a changed upstream function invalidates the downstream feature too
    store.register_function("neg", lambda spread, window_size=None: -spread)
    store.register_feature(
        FeatureDefinition("neg", dependencies=["spread"], compute_function="neg")
    )
    np.testing.assert_allclose(store.compute_feature("neg", hl), -(2 * a + 1))

    @store.compute_function("spread")
    def spread2(high, low, *, window_size=None, scale=1.0):
        return (high - low) * scale + 2

    np.testing.assert_allclose(store.compute_feature("neg", hl), -(2 * a + 2))
    # a new upstream version does not change what neg@1.0.0 computes: its unpinned dependency
    # resolved to spread@1.1.0 when it was registered; a new version of neg follows the new one
    store.register_feature(_spread_def("1.2.0", params={"scale": 4.0}))
    np.testing.assert_allclose(store.compute_feature("neg", hl), -(2 * a + 2))
    store.register_feature(
        FeatureDefinition("neg", "1.1.0", dependencies=["spread"], compute_function="neg")
    )
    np.testing.assert_allclose(store.compute_feature("neg", hl), -(4 * a + 2))
    np.testing.assert_allclose(store.compute_feature("neg@1.0.0", hl), -(2 * a + 2))
    store.clear_cache()
    assert store.cache_info()["entries"] == 0 and store.cache_hits == 0


def test_cache_respects_byte_bound(db_url: str, hl) -> None:
    store = FeatureStore(db_url, cache_bytes=3 * 300 * 8)
    for w in (5, 6, 7, 8, 9):
        store.register_feature(
            FeatureDefinition(
                f"r{w}",
                dependencies=["close"],
                compute_function="rsi",
                computation_config={"params": {"window": w}},
            )
        )
        store.compute_feature(f"r{w}", hl)
    info = store.cache_info()
    assert info["entries"] == 3 and info["bytes"] <= info["max_bytes"]
    store.compute_feature("r9", hl)  # newest stays
    assert store.cache_hits == 1
    store.compute_feature("r5", hl)  # oldest was evicted
    assert store.cache_hits == 1 and store.cache_misses == 6


def test_disk_cache_survives_restart_and_rejects_corruption(db_url: str, tmp_path, hl) -> None:
    cache_dir = tmp_path / "cache"
    first = FeatureStore(db_url, cache_dir=cache_dir)
    a = first.compute_feature("rsi_14", hl)
    files = sorted(p.name for p in cache_dir.iterdir())
    assert len(files) == 2 and files[0].endswith(".npz") and files[1].endswith(".sha256")
    second = FeatureStore(db_url, cache_dir=cache_dir)
    b = second.compute_feature("rsi_14", hl)
    np.testing.assert_array_equal(a, b)
    assert second.cache_info()["disk_hits"] == 1
    data_file = next(cache_dir.glob("*.npz"))
    raw = bytearray(data_file.read_bytes())
    raw[-20] ^= 0xFF
    data_file.write_bytes(bytes(raw))
    third = FeatureStore(db_url, cache_dir=cache_dir)
    c = third.compute_feature("rsi_14", hl)
    assert third.cache_info()["disk_hits"] == 0 and third.cache_misses == 1
    np.testing.assert_array_equal(a, c)


def test_cache_hit_on_a_million_rows_returns_the_stored_result(store: FeatureStore) -> None:
    # the speed of a hit is measured in benchmarks/bench_features.py; here: a hit is a hit
    rng = np.random.default_rng(0)
    close = 100 + np.cumsum(rng.normal(size=1_000_000))
    data = {"close": close}
    first = store.compute_feature("rsi_14", data, statistics=False)
    for _ in range(3):
        again = store.compute_feature("rsi_14", data)
        np.testing.assert_array_equal(again, first)
    assert store.cache_hits == 3 and store.cache_misses == 1
    close[-1] += 1.0  # same object, new content: a miss, not a stale hit
    changed = store.compute_feature("rsi_14", data)
    assert store.cache_misses == 2
    assert changed[-1] != first[-1]


# ------------------------------------------------------------------ statistics, drift, persistence
def test_statistics_persist_and_equal_numpy(db_url: str, hl) -> None:
    store = FeatureStore(db_url)
    values = store.compute_feature("price_return", hl)
    st = store.get_statistics("price_return")
    clean = values[~np.isnan(values)]
    assert st.count == clean.size == 299 and st.missing == 1
    assert st.mean == pytest.approx(clean.mean(), rel=1e-12)
    assert st.std == pytest.approx(clean.std(ddof=1), rel=1e-10)
    assert (st.min, st.max) == (clean.min(), clean.max())
    for q in (5, 25, 50, 75, 95):
        assert st.percentiles[q] == np.percentile(clean, q)
    reopened = FeatureStore(db_url)
    assert reopened.get_statistics("price_return") == st
    assert reopened.get_lineage("price_return").n_rows == 300
    with pytest.raises(ValidationError, match="several columns"):
        reopened.get_statistics("hour_of_day")
    with pytest.raises(NotFoundError, match="no statistics"):
        reopened.get_statistics("macd_hist")


def test_statistics_reach_the_column_named_after_its_feature(store: FeatureStore, hl) -> None:
    # `macd` is both the three-column feature and its first column (the MACD line): where one
    # column is required, the name means that column
    values = store.compute_feature("macd", hl)
    for j, col in enumerate(["macd", "macd_signal", "macd_hist"]):
        clean = values[:, j][~np.isnan(values[:, j])]
        for ref in (col, "macd@1.0.0") if col == "macd" else (col,):
            st = store.get_statistics(ref)
            assert (st.feature, st.column) == ("macd", col)
            assert st.count == clean.size and st.missing == 33
            assert st.mean == pytest.approx(clean.mean(), rel=1e-12)
            assert st.percentiles[50] == np.percentile(clean, 50)
    line = store.get_statistics("macd")
    assert line != store.get_statistics("macd_signal")
    report = store.check_drift("macd", values[:, 0])
    assert report.column == "macd" and report.psi == pytest.approx(0.0, abs=1e-12)
    # a multi-output feature without a column of its own name still needs a column name
    store.compute_feature("hour_of_day", {"timestamp": np.arange(300) * 3600})
    with pytest.raises(ValidationError, match="several columns"):
        store.get_statistics("hour_of_day")
    assert store.get_statistics("hour_of_day_sin").count == 300


def test_drift_psi_equals_hand_computation(store: FeatureStore) -> None:
    rng = np.random.default_rng(5)
    ref = {"close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 2_000)))}
    store.compute_feature("price_return", ref)
    new = {"close": 100 * np.exp(np.cumsum(rng.normal(0.002, 0.03, 1_000)))}
    report = store.check_drift("price_return", new, threshold=0.25)
    ref_values = store.compute_feature("price_return", ref)
    new_values = store.compute_feature("price_return", new, statistics=False)
    ref_values = ref_values[~np.isnan(ref_values)]
    hand, _ = _numpy_psi(ref_values, new_values)
    assert report.psi == pytest.approx(hand, rel=1e-12)
    assert report.drifted and report.psi > 0.25
    same = store.check_drift("price_return", ref_values)
    assert same.psi == pytest.approx(0.0, abs=1e-12) and not same.drifted


def _numpy_psi(reference: np.ndarray, new: np.ndarray) -> tuple[float, np.ndarray]:
    """The oracle: decile bins of the reference (numpy), shares floored at 1e-6, PSI."""
    reference = reference[~np.isnan(reference)]
    new = new[~np.isnan(new)]
    edges = np.percentile(reference, np.arange(10, 100, 10))
    e = np.bincount(np.searchsorted(edges, reference), minlength=10) / reference.size
    a = np.bincount(np.searchsorted(edges, new), minlength=10) / new.size
    e, a = np.maximum(e, 1e-6), np.maximum(a, 1e-6)
    return float(np.sum((a - e) * np.log(a / e))), edges


def _walk(seed: int, n: int, drift: float, vol: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"close": 100 * np.exp(np.cumsum(rng.normal(drift, vol, n)))}


def _returns(close: np.ndarray) -> np.ndarray:
    return np.concatenate([[np.nan], close[1:] / close[:-1] - 1])


def test_live_computations_do_not_replace_the_drift_reference(db_url: str) -> None:
    store = FeatureStore(db_url)
    ref, new = _walk(5, 2_000, 0.0, 0.01), _walk(6, 1_000, 0.002, 0.03)
    store.compute_feature("price_return", ref)
    first = store.check_drift("price_return", new)
    # serving the feature on live data records its statistics as the latest...
    live = store.compute_feature("price_return", new)
    assert store.get_statistics("price_return").count == 999
    # ...but drift is still measured against the first computation
    report = store.check_drift("price_return", live)
    oracle, edges = _numpy_psi(_returns(ref["close"]), _returns(new["close"]))
    assert report.psi == pytest.approx(oracle, rel=1e-9) and report.psi > 1.0
    assert report.drifted and report.psi == pytest.approx(first.psi, rel=1e-12)
    np.testing.assert_allclose(report.edges, edges, rtol=1e-12)
    assert report.reference_origin == "computation"
    # even a five-row call leaves the reference alone, also after a restart
    store.compute_feature("price_return", {"close": new["close"][:5]})
    assert store.get_statistics("price_return").count == 4
    reopened = FeatureStore(db_url)
    reference = reopened.get_drift_reference("price_return")
    assert reference.count == 1_999 and reference.missing == 1
    assert reference.percentiles[50] == pytest.approx(np.nanmedian(_returns(ref["close"])))
    assert reopened.check_drift("price_return", live).psi == pytest.approx(oracle, rel=1e-9)


def test_set_drift_reference_pins_explicitly(store: FeatureStore) -> None:
    ref, new = _walk(7, 1_500, 0.0, 0.01), _walk(8, 800, 0.0, 0.02)
    store.compute_feature("price_return", new)  # the first computation: live data
    # pin the training data instead (computed, not recorded as the latest statistics)
    pinned = store.set_drift_reference("price_return", ref)
    assert pinned.count == 1_499 and store.get_statistics("price_return").count == 799
    assert store.get_drift_reference("price_return") == pinned
    report = store.check_drift("price_return", new)
    oracle, _edges = _numpy_psi(_returns(ref["close"]), _returns(new["close"]))
    assert report.psi == pytest.approx(oracle, rel=1e-9) and report.reference_origin == "pinned"
    # values work as well as data; later computations keep the pinned reference
    store.set_drift_reference("price_return", _returns(new["close"]))
    store.compute_feature("price_return", ref)
    back, _ = _numpy_psi(_returns(new["close"]), _returns(ref["close"]))
    assert store.check_drift("price_return", ref).psi == pytest.approx(back, rel=1e-9)
    # adopting the latest statistics re-pins them: drift of the same data is zero
    store.set_drift_reference("price_return", store.get_statistics("price_return"))
    assert store.check_drift("price_return", ref).psi == pytest.approx(0.0, abs=1e-12)
    store.compute_feature("rsi_14", ref)
    with pytest.raises(ValidationError, match="not of 'price_return'"):
        store.set_drift_reference("price_return", store.get_statistics("rsi_14"))
    with pytest.raises(ValidationError, match="no non-missing values"):
        store.set_drift_reference("price_return", [np.nan, np.nan])
    with pytest.raises(KaizenTypeError, match="^reference must be numbers"):
        store.set_drift_reference("price_return", ["a", "b"])
    with pytest.raises(NotFoundError, match=r"no drift reference.*set_drift_reference"):
        store.check_drift("price_volatility", [0.1, 0.2])


def test_drift_reference_per_version_and_pinned_version_computed(store: FeatureStore) -> None:
    store.register_feature(
        FeatureDefinition(
            "price_return",
            "1.1.0",
            dependencies=["close"],
            compute_function="returns",
            computation_config={"params": {"horizon": 5}},
        )
    )
    ref, new = _walk(9, 1_000, 0.0, 0.01), _walk(10, 600, 0.001, 0.02)
    store.compute_feature("price_return@1.0.0", ref)
    store.compute_feature("price_return", ref)  # 1.1.0: its own reference
    assert store.get_drift_reference("price_return").count == 995
    assert store.get_drift_reference("price_return@1.0.0").count == 999
    # raw data is computed with the version asked for, not the newest
    report = store.check_drift("price_return@1.0.0", new)
    oracle, _ = _numpy_psi(_returns(ref["close"]), _returns(new["close"]))
    assert report.psi == pytest.approx(oracle, rel=1e-9) and report.feature == "price_return@1.0.0"


def test_statistics_without_values_pin_no_reference(store: FeatureStore) -> None:
    store.compute_feature("price_return", {"close": [100.0]})  # one row: no return yet
    with pytest.raises(NotFoundError, match="no drift reference"):
        store.check_drift("price_return", [0.1])
    ref = _walk(11, 300, 0.0, 0.01)
    store.compute_feature("price_return", ref)  # the first computation with values
    store.compute_feature("price_return", _walk(12, 300, 0.0, 0.05))
    assert store.get_drift_reference("price_return").count == 299
    assert store.get_drift_reference("price_return").mean == pytest.approx(
        np.nanmean(_returns(ref["close"])), rel=1e-12
    )


def test_store_from_before_drift_references_keeps_its_statistics_as_reference(tmp_path) -> None:
    fixtures = Path(__file__).resolve().parent / "fixtures"
    source = fixtures / "features_before_drift_references.sqlite"
    conn = sqlite3.connect(source)  # the committed file is what its SQL source says
    tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    assert tables == ["feature_definitions", "feature_lineage", "feature_statistics"]
    conn.close()
    shutil.copy(source, tmp_path / "old.db")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = FeatureStore(url)
    assert "feature_drift_references" in sa.inspect(store.engine).get_table_names()
    ref, new = _walk(5, 2_000, 0.0, 0.01), _walk(6, 1_000, 0.002, 0.03)
    oracle, edges = _numpy_psi(_returns(ref["close"]), _returns(new["close"]))
    # the statistics stored by the old store are the reference until something is pinned...
    old = store.get_statistics("price_return")
    assert old.count == 1_999 and store.get_drift_reference("price_return") == old
    report = store.check_drift("price_return", new)
    assert report.psi == pytest.approx(oracle, rel=1e-9)
    np.testing.assert_allclose(report.edges, edges, rtol=1e-12)
    # ...and the first new computation pins them before replacing the latest statistics
    live = store.compute_feature("price_return", new)
    assert store.get_statistics("price_return").count == 999
    assert store.get_drift_reference("price_return") == old
    assert FeatureStore(url).check_drift("price_return", live).psi == pytest.approx(oracle, 1e-9)


def test_statistics_follow_a_cached_result_first_computed_without_them(store: FeatureStore) -> None:
    first, second = _walk(13, 200, 0.0, 0.01), _walk(14, 50, 0.0, 0.01)
    store.compute_feature("price_return", first)
    store.compute_feature("price_return", second, statistics=False)
    store.compute_feature("price_return", second)  # a cache hit, now with statistics
    st = store.get_statistics("price_return")
    expected = _returns(second["close"])[1:]
    assert st.count == 49 and st.mean == pytest.approx(expected.mean(), rel=1e-12)


def test_drift_input_and_feature_name_errors_name_the_parameter(store: FeatureStore, hl) -> None:
    store.compute_feature("rsi_14", hl)
    with pytest.raises(KaizenTypeError, match=r"^new must be numbers.*dtype <U1"):
        store.check_drift("rsi_14", np.array(["a"]))
    with pytest.raises(KaizenTypeError, match=r"^new must be numbers.*got Series.*not all numbers"):
        store.check_drift("rsi_14", pd.Series(["a", "b"]))
    with pytest.raises(KaizenTypeError, match=r"^new must be numbers.*datetime64"):
        store.check_drift("rsi_14", np.array(["2024-01-02"], dtype="datetime64[s]"))
    with pytest.raises(ValidationError, match=r"^new must be 1-D values.*\(1, 1\)"):
        store.check_drift("rsi_14", [[1.0]])
    with pytest.raises(KaizenTypeError, match=r"^name must be a feature name str.*got int 5"):
        store.compute_feature(5, hl)
    with pytest.raises(NotFoundError, match=r"^name='nope' is neither"):
        store.compute_feature("nope", hl)
    with pytest.raises(KaizenTypeError, match=r"^names\[1\] must be a feature name str.*int 5"):
        store.compute_features(["rsi_14", 5], hl)
    with pytest.raises(NotFoundError, match=r"^names\[1\]='nope' is neither"):
        store.compute_features(["rsi_14", "nope"], hl)
    with pytest.raises(KaizenTypeError, match=r"^names must be a list.*\['rsi_14'\]"):
        store.compute_features("rsi_14", hl)


def test_cache_dir_that_is_a_file_is_refused(db_url: str, tmp_path) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    for path in (a_file, a_file / "below"):
        with pytest.raises(ValidationError, match=r"^cache_dir must be a folder.*is a file"):
            FeatureStore(db_url, cache_dir=path)
    assert a_file.read_text() == "x"


def test_definitions_persist_and_missing_function_is_clear(db_url: str, hl) -> None:
    first = FeatureStore(db_url)
    _register_spread(first)
    first.register_feature(_spread_def(window_size=3, aggregation="mean"))
    expected = first.compute_feature("spread", hl)
    second = FeatureStore(db_url)
    assert "spread@1.0.0" in [d.ref for d in second.list_features()]
    assert second.get_definition("spread").computation_config.aggregation == "mean"
    with pytest.raises(
        NotFoundError, match=r"register it again with store.register_function\('spread'"
    ):
        second.compute_feature("spread", hl)
    _register_spread(second)
    np.testing.assert_allclose(second.compute_feature("spread", hl), expected)


def test_get_feature_store_default_from_kaizenml_home(tmp_path, monkeypatch, hl) -> None:
    monkeypatch.setenv("KAIZENML_HOME", str(tmp_path / "home"))
    store = get_feature_store()
    assert store is get_feature_store()
    assert str(tmp_path / "home" / "kaizenml.db") in str(store.engine.url)
    url = f"sqlite:///{tmp_path / 'other.db'}"
    other = get_feature_store(url)
    assert other is not store and other is get_feature_store(url)
    other.compute_feature("rsi_14", hl)
    assert FeatureStore(url).get_lineage("rsi_14").source_columns == ("close",)


def test_lineage_fields(store: FeatureStore, hl) -> None:
    store.compute_features(["macd"], hl, symbol=None)
    lin = store.get_lineage("macd_signal")
    d = store.get_definition("macd")
    assert lin.feature == "macd" and lin.version == "1.0.0"
    assert lin.definition_hash == d.definition_hash()
    assert lin.transformations[0]["function"] == "macd"
    assert lin.transformations[0]["params"] == {"fast": 12, "slow": 26, "signal": 9}
    assert set(lin.input_fingerprints) == {"close"} and lin.n_rows == 300 and lin.causal
    assert lin.computed_at.endswith("+00:00")
    with pytest.raises(NotFoundError, match="has not been computed"):
        store.get_lineage("rsi_14")


def test_threaded_and_serial_computation_agree(db_url: str, market, builtin_names) -> None:
    data = market(500)
    threaded = FeatureStore(db_url, n_threads=4)
    seen_threads: set[str] = set()

    @threaded.compute_function("tagged", thread_safe=True)
    def tagged(close, *, window_size=None):
        seen_threads.add(threading.current_thread().name)
        return close * 2

    threaded.register_feature(
        FeatureDefinition("tagged", dependencies=["close"], compute_function="tagged")
    )
    names = [*builtin_names, "tagged"]
    a = threaded.compute_features(names, data, use_cache=False)
    serial = FeatureStore(db_url, n_threads=1)
    serial.register_function("tagged", lambda close, window_size=None: close * 2)
    b = serial.compute_features(names, data, use_cache=False)
    assert list(a) == list(b)
    for col in a:
        np.testing.assert_array_equal(a[col], b[col])
    assert seen_threads and all(name.startswith("kaizenml-features") for name in seen_threads)
    with pytest.raises(ValidationError, match="n_threads must be >= 1"):
        FeatureStore(db_url, n_threads=0)
    with pytest.raises(KaizenTypeError, match="thread_safe"):
        serial.register_function("x", lambda close: close, thread_safe="yes")  # type: ignore[arg-type]


def test_output_column_resolves_to_newest_version_that_has_it(store: FeatureStore, hl) -> None:
    # macd@2.0.0 keeps only the line: "macd_signal" still comes from macd@1.0.0
    store.register_feature(
        FeatureDefinition(
            "macd",
            "2.0.0",
            dependencies=["close"],
            compute_function="macd",
            outputs=["macd", "macd_signal2", "macd_hist2"],
            computation_config={"params": {"fast": 5, "slow": 10, "signal": 3}},
        )
    )
    _m, signal, _h = talib.MACD(hl["close"], 12, 26, 9)
    np.testing.assert_allclose(store.compute_feature("macd_signal", hl), signal, rtol=1e-9)
    _m, signal2, _h = talib.MACD(hl["close"], 5, 10, 3)
    np.testing.assert_allclose(store.compute_feature("macd_signal2", hl), signal2, rtol=1e-9)
    assert store.compute_feature("macd", hl).shape == (300, 3)


def test_column_names_cannot_collide(store: FeatureStore) -> None:
    with pytest.raises(ValidationError, match="'rsi_14' .*already a feature"):
        store.register_feature(
            FeatureDefinition(
                "pair",
                dependencies=["close"],
                compute_function="macd",
                outputs=["a", "rsi_14", "c"],
            )
        )
    with pytest.raises(ValidationError, match="already an output column of feature 'macd'"):
        store.register_feature(
            FeatureDefinition("macd_hist", dependencies=["close"], compute_function="rsi")
        )


def test_results_are_read_only_unless_copied(store: FeatureStore, hl) -> None:
    frame = pd.DataFrame(hl)
    out = store.compute_features(["rsi_14", "price_return"], frame)
    with pytest.raises(ValueError, match="read-only"):
        out.iloc[20, 0] = 5.0
    mine = store.compute_features(["rsi_14", "price_return"], frame, copy=True)
    mine.iloc[20, 0] = 5.0
    again = store.compute_feature("rsi_14", frame, copy=True)
    assert again[20] == out.iloc[20, 0] != 5.0  # the cache was not touched
    again[20] = 1.0
    assert store.compute_feature("rsi_14", frame)[20] == out.iloc[20, 0]


def test_empty_and_one_row_inputs(store: FeatureStore, builtin_names) -> None:
    empty = {
        "close": np.array([]),
        "volume": np.array([]),
        "timestamp": np.array([], dtype="datetime64[s]"),
        "sym": np.array([], dtype=object),
    }
    out = store.compute_features(list(builtin_names), empty, symbol="sym")
    assert len(out) == 13 and all(v.shape == (0,) for v in out.values())
    one = {"close": [5.0], "volume": [1.0], "timestamp": np.array(["2024-01-01"], "datetime64[s]")}
    out = store.compute_features(list(builtin_names), one)
    assert np.isnan(out["rsi_14"][0]) and out["day_of_week_cos"][0] == 1.0  # a Monday
    st = store.get_statistics("rsi_14")
    assert (st.count, st.missing) == (0, 1) and np.isnan(st.mean)


def test_function_returning_its_input_does_not_freeze_caller_data(store: FeatureStore) -> None:
    store.register_function("ident", lambda x, window_size=None: x)
    store.register_feature(FeatureDefinition("ident", dependencies=["x"], compute_function="ident"))
    x = np.arange(5.0)
    out = store.compute_feature("ident", {"x": x})
    x[0] = 42.0  # the caller's array stays writable and the cached value independent
    np.testing.assert_array_equal(out, np.arange(5.0))
    assert not out.flags.writeable


def test_symbol_column_without_pandas(store: FeatureStore, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # the numpy factorization path
    x = np.arange(10.0) + 1
    sym = np.array(list("babbaabaab"), dtype=object)
    out = store.compute_feature("price_return", {"close": x, "s": sym}, symbol="s")
    expected = np.full(10, np.nan)
    for label in "ab":
        rows = np.flatnonzero(sym == label)
        expected[rows[1:]] = x[rows[1:]] / x[rows[:-1]] - 1
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_close_stops_threads_and_store_stays_usable(db_url: str, market) -> None:
    data = market(100)
    with FeatureStore(db_url, n_threads=2) as store:
        first = store.compute_features(["rsi_14", "price_momentum"], data, use_cache=False)
    assert store._executor is None
    again = store.compute_features(["rsi_14", "price_momentum"], data, use_cache=False)
    np.testing.assert_array_equal(first["rsi_14"], again["rsi_14"])
    store.close()


def test_disk_cache_bound_evicts_least_recently_used(db_url: str, tmp_path, hl) -> None:
    cache_dir = tmp_path / "bounded"
    store = FeatureStore(db_url, cache_dir=cache_dir, cache_disk_bytes=6_000)
    for w in (5, 6, 7, 8):
        store.register_feature(
            FeatureDefinition(
                f"r{w}",
                dependencies=["close"],
                compute_function="rsi",
                computation_config={"params": {"window": w}},
            )
        )
        store.compute_feature(f"r{w}", hl)
        time.sleep(0.01)  # distinct modification times
    files = list(cache_dir.glob("*.npz"))
    assert sum(p.stat().st_size for p in files) <= 6_000
    assert len(files) == len(list(cache_dir.glob("*.sha256")))
    fresh = FeatureStore(db_url, cache_dir=cache_dir)
    fresh.compute_feature("r8", hl)  # the newest file survived
    assert fresh.cache_info()["disk_hits"] == 1
    fresh.compute_feature("r5", hl)  # the oldest was evicted
    assert fresh.cache_info()["disk_hits"] == 1 and fresh.cache_misses == 1


def test_disk_cache_keeps_columns_named_like_savez_arguments(tmp_path) -> None:
    """Columns called ``file`` or ``allow_pickle`` survive the disk cache (``np.savez(**cols)``
    refused the first and silently dropped the second)."""
    from kaizenml.features._cache import FeatureCache

    cols = {"allow_pickle": np.arange(3.0), "file": np.ones(2), "rsi_14": np.full(4, 7.0)}
    FeatureCache(1 << 20, tmp_path).put("ab" * 16, cols)
    back = FeatureCache(1 << 20, tmp_path).get("ab" * 16)  # a new process: read from disk
    assert back is not None and sorted(back) == sorted(cols)
    for name, values in cols.items():
        np.testing.assert_array_equal(back[name], values)


_SCALE = 2.0


def _scaled_helper(x):
    return x * _SCALE


def _scaled(close, *, window_size=None):
    return _scaled_helper(close)


def test_function_fingerprint_follows_helpers_globals_closures_and_attributes() -> None:
    """A change that alters what a compute function returns changes its cache token: a helper it
    calls, a module constant that helper reads, the middle of a large closure array, a callable
    object's attribute."""
    import kaizenml.features._store as store_module

    token = store_module._function_token
    before = token(_scaled)
    global _SCALE
    _SCALE = 3.0
    try:
        assert token(_scaled) != before
    finally:
        _SCALE = 2.0
    assert token(_scaled) == before  # and back: the token is a function of what is used

    def closing_over(w):
        def weighted(close, *, window_size=None):
            return close * w
        return weighted

    w = np.ones(5000)
    w2 = w.copy()
    w2[2500] = 3.0  # repr() of both arrays is the same
    assert repr(w) == repr(w2)
    assert token(closing_over(w)) != token(closing_over(w2))

    class Scale:
        def __init__(self, k):
            self.k = k

        def __call__(self, close, *, window_size=None):
            return close * self.k

    assert token(Scale(2.0)) != token(Scale(3.0))
    assert token(Scale(2.0)) == token(Scale(2.0))



def test_unpinned_dependencies_keep_the_version_they_resolved_to(db_url: str) -> None:
    """d@1.0.0 over a and b over x (a diamond): registering x@2.0.0 later does not change what
    d@1.0.0 computes, in this process or in a new one reading the stored definitions."""
    def build(store: FeatureStore) -> None:
        store.register_function("ident", lambda close, *, window_size=None: close)
        store.register_function("neg", lambda close, *, window_size=None: -close)
        store.register_function("add1", lambda x, *, window_size=None: x + 1)
        store.register_function("times2", lambda x, *, window_size=None: x * 2)
        store.register_function("plus", lambda a, b, *, window_size=None: a + b)

    store = FeatureStore(db_url, cache_dir=None)
    build(store)
    store.register_feature(FeatureDefinition("x", "1.0.0", dependencies=["close"],
                                             compute_function="ident"))
    store.register_feature(FeatureDefinition("a", "1.0.0", dependencies=["x"],
                                             compute_function="add1"))
    store.register_feature(FeatureDefinition("b", "1.0.0", dependencies=["x"],
                                             compute_function="times2"))
    store.register_feature(FeatureDefinition("d", "1.0.0", dependencies=["a", "b"],
                                             compute_function="plus"))
    data = {"close": np.array([1.0, 2.0])}
    np.testing.assert_array_equal(store.compute_feature("d", data), [4.0, 7.0])
    store.register_feature(FeatureDefinition("x", "2.0.0", dependencies=["close"],
                                             compute_function="neg"))
    np.testing.assert_array_equal(store.compute_feature("d", data), [4.0, 7.0])
    assert store.get_lineage("d").upstream_features == ("x@1.0.0", "a@1.0.0", "b@1.0.0")
    # a new process reads the recorded resolutions
    other = FeatureStore(db_url, cache_dir=None)
    build(other)
    np.testing.assert_array_equal(other.compute_feature("d", data), [4.0, 7.0])
    # new versions along the chain follow x@2.0.0: -x + 1 plus -2x
    other.register_feature(FeatureDefinition("a", "1.1.0", dependencies=["x"],
                                             compute_function="add1"))
    other.register_feature(FeatureDefinition("b", "1.1.0", dependencies=["x"],
                                             compute_function="times2"))
    other.register_feature(FeatureDefinition("d", "1.1.0", dependencies=["a", "b"],
                                             compute_function="plus"))
    np.testing.assert_array_equal(other.compute_feature("d", data), [-2.0, -5.0])
    np.testing.assert_array_equal(other.compute_feature("d@1.0.0", data), [4.0, 7.0])
