"""Throughput of the demo's population backtest (the genetic search's fitness).

kaizenml's numba kernel (one parallel pass per individual over a precomputed EMA matrix) is
timed against the natural vectorized numpy version of the same rule (a Python loop over bars,
numpy operations across the population), on the same bars and population, in the same run.

Run: PYTHONPATH=src python -m pytest benchmarks/bench_demo.py --benchmark-only -q
"""

from __future__ import annotations

import numpy as np
import pytest

from kaizenml.demo._backtest import backtest_population, prepare_rule_data
from kaizenml.demo.data import generate_ohlcv

N_BARS = 10_000
N_POP = 4_000


@pytest.fixture(scope="module")
def setup():
    bars = generate_ohlcv(N_BARS, seed=0)
    close = bars["close"]
    r = np.diff(np.log(close), prepend=np.log(close[0]))
    vol = np.full_like(close, np.nan)
    vol[20:] = np.lib.stride_tricks.sliding_window_view(r, 20)[:-1].std(axis=1, ddof=1)
    data = prepare_rule_data(close, vol, span_hi=128)
    rng = np.random.default_rng(1)
    pop = {
        "fast": rng.integers(2, 33, N_POP),
        "slow": rng.integers(16, 129, N_POP),
        "entry": rng.uniform(0, 3, N_POP),
        "exit_frac": rng.uniform(0, 1, N_POP),
        "mode": rng.choice(["trend", "revert"], N_POP),
    }
    backtest_population(data, pop)  # compile outside the timing
    return data, pop


def numpy_population(data, pop, cost=1e-4):
    """The same rule vectorized across the population with numpy."""
    f = pop["fast"] - data.span_lo
    s = pop["slow"] - data.span_lo
    entry = pop["entry"]
    exit_level = pop["exit_frac"] * entry
    mode = np.where(pop["mode"] == "trend", 1.0, -1.0)
    n = f.size
    pos = np.zeros(n)
    total = np.zeros(n)
    total_sq = np.zeros(n)
    trades = np.zeros(n)
    for t in range(data.n_bars - 1):
        v = data.vol[t]
        if v > 0:
            z = (data.ema[f, t] - data.ema[s, t]) / (data.close[t] * v)
            flat, long_, short = pos == 0, pos > 0, pos < 0
            new = pos.copy()
            new[flat & (z > entry)] = 1.0
            new[flat & (z < -entry)] = -1.0
            new[long_ & (z < exit_level)] = 0.0
            new[long_ & (z < -entry)] = -1.0
            new[short & (z > -exit_level)] = 0.0
            new[short & (z > entry)] = 1.0
        else:
            new = np.zeros(n)
        change = np.abs(new - pos)
        trades += change > 0
        pos = new
        pnl = mode * pos * data.fwd_ret[t] - cost * change
        total += pnl
        total_sq += pnl * pnl
    return total, trades


def test_numpy_matches_kernel(setup) -> None:
    data, pop = setup
    small = {k: v[:200] for k, v in pop.items()}
    total, trades = numpy_population(data, small)
    got = backtest_population(data, small, min_trades=0)
    np.testing.assert_allclose(got["total_return"], total, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got["trades"], trades)


def test_kaizenml_numba(benchmark, setup) -> None:
    data, pop = setup
    benchmark(backtest_population, data, pop)


def test_numpy_vectorized(benchmark, setup) -> None:
    data, pop = setup
    benchmark.pedantic(numpy_population, args=(data, pop), rounds=2, iterations=1)
