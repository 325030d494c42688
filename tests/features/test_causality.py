"""Property: for every built-in and every post-processing config, row t never sees rows > t."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaizenml.features import FeatureDefinition, FeatureStore
from kaizenml.features._builtins import BUILTIN_DEFINITIONS

_STORE: dict[str, FeatureStore] = {}


def _store() -> FeatureStore:
    if "s" not in _STORE:
        _STORE["s"] = FeatureStore("sqlite:///:memory:", statistics=False)
    return _STORE["s"]


# every registered built-in, so a new one is checked for look-ahead without editing this test
BUILTINS = [definition["name"] for definition in BUILTIN_DEFINITIONS]

configs = st.fixed_dictionaries(
    {
        "aggregation": st.sampled_from([None, "mean", "sum", "min", "max", "std", "last"]),
        "window_size": st.integers(2, 6),
        "fill_missing": st.sampled_from([None, "zero", "mean", "forward"]),
        "normalize": st.sampled_from([False, "zscore", "minmax"]),
        "normalize_window": st.sampled_from([None, 3, 8]),
    }
)


def _variant(store: FeatureStore, builtin: str, cfg: dict) -> str:
    """Register the built-in's computation under the given post-processing config."""
    base = store.get_definition(builtin)
    tag = "_".join(str(v) for v in cfg.values()).replace("None", "n").replace("False", "f")
    name = f"{builtin}_{tag}"
    outputs = [f"{name}_{i}" for i in range(len(base.outputs))]
    store.register_feature(
        FeatureDefinition(
            name,
            "1.0.0",
            dependencies=list(base.dependencies),
            compute_function=base.compute_function,
            outputs=outputs,
            computation_config={**cfg, "params": dict(base.computation_config.params)},
        )
    )
    return name


def _data(seed: int, n: int, n_nan: int, symbols: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    close[rng.integers(0, n, n_nan)] = np.nan
    volume = rng.integers(1, 1_000, n).astype(float)
    ts = np.datetime64("2024-01-01T00:00", "s") + np.cumsum(rng.integers(60, 40_000, n)).astype(
        "timedelta64[s]"
    )
    sym = rng.integers(0, symbols, n)
    return {"close": close, "volume": volume, "timestamp": ts, "sym": sym}


def _mutate_after(data: dict[str, np.ndarray], t: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    out = {k: v.copy() for k, v in data.items()}
    m = out["close"].size - t - 1
    if m > 0:
        out["close"][t + 1 :] = 50 * np.exp(rng.normal(0, 0.5, m))
        out["close"][t + 1 :][rng.random(m) < 0.2] = np.nan
        out["volume"][t + 1 :] = rng.integers(1, 1_000, m)
        out["timestamp"][t + 1 :] = out["timestamp"][t] + np.cumsum(
            rng.integers(1, 90_000, m)
        ).astype("timedelta64[s]")
    return out


def _same_prefix(a: np.ndarray, b: np.ndarray, t: int) -> bool:
    a, b = a[: t + 1], b[: t + 1]
    return bool(np.array_equal(a, b, equal_nan=True))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    builtin=st.sampled_from(BUILTINS),
    cfg=configs,
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(5, 90),
    n_nan=st.integers(0, 4),
    symbols=st.sampled_from([1, 1, 3]),
    frac=st.floats(0.0, 1.0),
)
def test_every_builtin_and_config_is_causal(builtin, cfg, seed, n, n_nan, symbols, frac) -> None:
    if cfg["aggregation"] is None:
        cfg = {**cfg, "window_size": None}
    store = _store()
    name = _variant(store, builtin, cfg)
    data = _data(seed, n, n_nan, symbols)
    t = min(int(frac * n), n - 1)
    kwargs = {"symbol": "sym"} if symbols > 1 else {}
    before = store.compute_feature(name, data, **kwargs)
    after = store.compute_feature(name, _mutate_after(data, t, seed), **kwargs)
    assert _same_prefix(before, after, t), (name, t)


def test_property_detects_look_ahead() -> None:
    """The same check flags a deliberately non-causal (backward-filled) feature."""
    store = _store()
    store.register_feature(
        FeatureDefinition(
            "rsi_bfill",
            "1.0.0",
            dependencies=["close"],
            compute_function="rsi",
            computation_config={
                "fill_missing": "backward",
                "causal": False,
                "params": {"window": 3},
            },
        )
    )
    data = _data(3, 40, 0, 1)
    data["close"][10] = np.nan  # the RSI is NaN at the gap and for its seed window after it
    before = store.compute_feature("rsi_bfill", data)
    after = store.compute_feature("rsi_bfill", _mutate_after(data, 12, 3))
    assert not _same_prefix(before, after, 12)
    assert not store.get_lineage("rsi_bfill").causal


def test_every_postprocessing_config_is_causal_exhaustively() -> None:
    """Every aggregation x fill x normalization combination, on a series with gaps."""
    store = _store()
    data = _data(17, 70, 6, 1)
    mutated = {t: _mutate_after(data, t, 17 + t) for t in (8, 30, 55)}
    for agg in [None, "mean", "sum", "min", "max", "std", "last"]:
        for fill in [None, "zero", "mean", "forward"]:
            for norm in [False, "zscore", "minmax"]:
                for nw in [None, 4]:
                    cfg = {
                        "aggregation": agg,
                        "window_size": 3 if agg else None,
                        "fill_missing": fill,
                        "normalize": norm,
                        "normalize_window": nw,
                    }
                    name = _variant(store, "price_momentum", cfg)
                    before = store.compute_feature(name, data)
                    for t, other in mutated.items():
                        after = store.compute_feature(name, other)
                        assert _same_prefix(before, after, t), (name, t)


@pytest.mark.parametrize("builtin", BUILTINS)
def test_every_builtin_is_causal_with_many_symbols(builtin: str) -> None:
    store = _store()
    data = _data(23, 120, 5, 4)
    before = store.compute_feature(builtin, data, symbol="sym")
    for t in (0, 40, 77, 119):
        after = store.compute_feature(builtin, _mutate_after(data, t, t), symbol="sym")
        assert _same_prefix(before, after, t), (builtin, t)
