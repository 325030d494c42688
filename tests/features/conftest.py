"""Shared fixtures for the feature store tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from kaizenml.features import FeatureStore

BUILTIN_NAMES = (
    "price_return",
    "price_volatility",
    "price_momentum",
    "volume_ratio",
    "rsi_14",
    "macd",
    "bb_position",
    "hour_of_day",
    "day_of_week",
)


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'features.db'}"


@pytest.fixture
def store(db_url: str) -> FeatureStore:
    return FeatureStore(db_url)


@pytest.fixture
def builtin_names() -> tuple[str, ...]:
    return BUILTIN_NAMES


@pytest.fixture
def market() -> Callable[..., dict[str, np.ndarray]]:
    """A factory of market data: geometric random walk close, positive volume, timestamps."""

    def make(n: int = 400, seed: int = 0, start: str = "2024-03-01T09:30") -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
        volume = rng.integers(100, 10_000, n).astype(np.float64)
        timestamp = np.datetime64(start, "s") + np.arange(n) * np.timedelta64(3_700, "s")
        return {"close": close, "volume": volume, "timestamp": timestamp}

    return make
