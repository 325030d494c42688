"""Shared data for the indicator tests: random walks with price gaps and jumps, OHLCV bars."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def random_walk(n: int, seed: int, level: float = 100.0) -> np.ndarray:
    """A positive price path with occasional jumps (opening gaps) of several percent."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.01, n)
    jumps = rng.random(n) < 0.01
    steps[jumps] += rng.normal(0.0, 0.08, jumps.sum())
    return level * np.exp(np.cumsum(steps))


def ohlcv(n: int, seed: int, level: float = 100.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    close = random_walk(n, seed, level)
    spread = close * rng.uniform(0.0, 0.02, n)
    high = close + spread * rng.uniform(0.0, 1.0, n)
    low = close - spread * rng.uniform(0.0, 1.0, n)
    volume = rng.lognormal(10.0, 1.0, n).round()
    return {"high": high, "low": low, "close": close, "volume": volume}


@pytest.fixture(scope="session")
def walk() -> Callable[..., np.ndarray]:
    return random_walk


@pytest.fixture(scope="session")
def bars() -> Callable[..., dict[str, np.ndarray]]:
    return ohlcv


def nan_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality that treats NaN as equal to NaN."""
    a = np.asarray(a)
    b = np.asarray(b)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


@pytest.fixture(scope="session")
def same() -> Callable[[np.ndarray, np.ndarray], bool]:
    return nan_equal
