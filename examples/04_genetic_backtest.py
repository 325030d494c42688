"""Evolve trading-rule parameters with a large-population genetic search.

The fitness is a numba backtest of the whole population at once (an EMA crossover in units
of volatility, see kaizenml.demo._backtest); the search runs in-sample and the winner is
checked on later, held-out bars.

Run: python examples/04_genetic_backtest.py
"""

from __future__ import annotations

import numpy as np

from kaizenml.demo._backtest import backtest_population, backtest_rule, prepare_rule_data
from kaizenml.demo.data import generate_ohlcv
from kaizenml.optimize import Categorical, Float, GeneticSearch, Int

bars = generate_ohlcv(12_000, seed=5)
close = bars["close"]
ret = np.diff(np.log(close), prepend=np.log(close[0]))
vol = np.full_like(close, np.nan)
vol[50:] = [ret[t - 49 : t + 1].std(ddof=1) for t in range(50, close.size)]
data = prepare_rule_data(close, vol, span_hi=128)
split = 8_000

space = {
    "fast": Int(2, 32),
    "slow": Int(16, 128),
    "entry": Float(0.0, 3.0),
    "exit_frac": Float(0.0, 1.0),
    "mode": Categorical(["trend", "revert"]),
}


def fitness(pop):
    return backtest_population(data, pop, start=128, stop=split, min_trades=50)["sharpe"]


ga = GeneticSearch(space, population_size=4_000, seed=2)
res = ga.run(fitness, generations=8, direction="maximize")
held_out = backtest_rule(data, res.best_params, start=split)
print(f"{res.n_evaluations} backtests in {res.elapsed:.1f} s; best {res.best_params}")
print(
    f"in-sample Sharpe {res.best_value:.2f}, held-out Sharpe {held_out['sharpe']:.2f} "
    f"over {held_out['trades']} trades"
)
