"""Compute built-in and custom features through the feature store: cached, described, traced.

Run: python examples/02_feature_store.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from kaizenml.demo.data import generate_ohlcv
from kaizenml.features import FeatureDefinition, FeatureStore

bars = generate_ohlcv(20_000, seed=3)
store = FeatureStore(f"sqlite:///{tempfile.mkdtemp()}/features.db")


# a custom feature: the compute function is registered by name, never evaluated from text
@store.compute_function("gap")
def gap(open, close, **_):  # noqa: A002 - the dependency is called "open"
    prev_close = np.concatenate(([np.nan], close[:-1]))
    return np.log(open / prev_close) * 1e4  # opening gap in basis points


store.register_feature(
    FeatureDefinition(
        "gap_bps",
        "1.0.0",
        description="open vs previous close in bp, expanding z-score",
        dependencies=["open", "close"],
        compute_function="gap",
        computation_config={"normalize": "zscore"},
    )
)

names = ["rsi_14", "macd", "bb_position", "volume_ratio", "hour_of_day", "gap_bps"]
data = {k: bars[k] for k in ("timestamp", "open", "high", "low", "close", "volume")}
t0 = time.perf_counter()
features = store.compute_features(names, data)
t1 = time.perf_counter()
store.compute_features(names, data)  # same definitions, same input: served by the cache
t2 = time.perf_counter()
print(f"columns: {list(features)}")
print(f"first computation {1e3 * (t1 - t0):.1f} ms, cached {1e3 * (t2 - t1):.2f} ms")

stats = store.get_statistics("rsi_14")
print(
    f"rsi_14: mean {stats.mean:.2f}, std {stats.std:.2f}, missing {stats.missing}, "
    f"median {stats.percentiles[50]:.2f}"
)
lineage = store.get_lineage("gap_bps")
print(
    "gap_bps lineage:",
    [step["step"] for step in lineage.transformations],
    "from",
    lineage.source_columns,
)
