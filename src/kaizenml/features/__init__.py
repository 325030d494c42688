"""A causal feature store: registered, versioned features over market data.

Definitions (:class:`FeatureDefinition`, :class:`ComputationConfig`) name a compute function in
a registry; :class:`FeatureStore` resolves dependencies, computes per symbol with numba kernels,
caches by content fingerprint, and keeps statistics and lineage in the shared storage.

Examples
--------
>>> import numpy as np
>>> from kaizenml.features import FeatureStore
>>> store = FeatureStore("sqlite:///:memory:")
>>> close = 100 + np.cumsum(np.random.default_rng(0).normal(size=300))
>>> out = store.compute_features(["rsi_14", "bb_position"], {"close": close})
>>> sorted(out)
['bb_position', 'rsi_14']
"""

from __future__ import annotations

from ._definition import ComputationConfig, FeatureDefinition, parse_version
from ._stats import DriftReport, FeatureStatistics
from ._store import FeatureLineage, FeatureStore, get_feature_store

__all__ = [
    "ComputationConfig",
    "DriftReport",
    "FeatureDefinition",
    "FeatureLineage",
    "FeatureStatistics",
    "FeatureStore",
    "get_feature_store",
    "parse_version",
]
