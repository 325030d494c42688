"""A vectorized backtest of a parametrized trading rule, for a whole population at once.

Called by the demo's genetic search as its fitness function, and by
:func:`backtest_rule` for one parameter set. The rule is an EMA crossover measured in units of
volatility, with hysteresis and a choice of trading with the trend or against it:

* ``z_t = (EMA_fast(close)_t - EMA_slow(close)_t) / (close_t * vol_t)``;
* flat -> long when ``z > entry``, flat -> short when ``z < -entry``; a position is closed when
  ``|z|`` falls below ``exit_frac * entry`` and flipped when ``z`` crosses ``entry`` the other way;
* ``mode = +1`` trades with the sign of ``z`` (trend following), ``-1`` against it (mean
  reversion).

The position decided at the close of bar ``t`` earns the log return of bar ``t + 1``, so the
backtest is causal; every change of position pays ``cost`` (a fraction of the notional).

The EMA of every span the population may ask for is computed once, as a ``(n_spans, n_bars)``
matrix, so the per-individual work is one pass over the bars with two lookups per bar.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit, prange

from .._exceptions import ValidationError

__all__ = ["RuleData", "backtest_population", "backtest_rule", "prepare_rule_data"]


@njit(cache=True)
def _ema_matrix(close: np.ndarray, span_lo: int, span_hi: int) -> np.ndarray:
    n = close.shape[0]
    out = np.empty((span_hi - span_lo + 1, n))  # (n_spans, n_bars)
    for k in range(span_hi - span_lo + 1):
        alpha = 2.0 / (span_lo + k + 1.0)
        e = close[0]
        for t in range(n):
            e = alpha * close[t] + (1.0 - alpha) * e
            out[k, t] = e
    return out


@njit(cache=True, inline="always")
def _next_position(pos: float, z: float, entry: float, exit_level: float) -> float:
    """The rule's state machine: flat/long/short from the signal z (NaN z means flat)."""
    if math.isnan(z):
        return 0.0
    if pos == 0.0:
        if z > entry:
            return 1.0
        if z < -entry:
            return -1.0
        return 0.0
    if pos > 0.0:
        if z < -entry:
            return -1.0
        if z < exit_level:
            return 0.0
        return 1.0
    if z > entry:
        return 1.0
    if z > -exit_level:
        return 0.0
    return -1.0


@njit(cache=True, inline="always")
def _signal(ema: np.ndarray, f: int, s: int, close: np.ndarray, vol: np.ndarray, t: int) -> float:
    v = vol[t]
    if v > 0.0:  # False for NaN too
        return (ema[f, t] - ema[s, t]) / (close[t] * v)
    return math.nan


@njit(cache=True)
def _run_rule(
    ema: np.ndarray,
    span_lo: int,
    close: np.ndarray,
    vol: np.ndarray,
    fwd_ret: np.ndarray,
    fast: int,
    slow: int,
    entry: float,
    exit_frac: float,
    mode: float,
    cost: float,
    start: int,
    stop: int,
    pnl_out: np.ndarray,
) -> int:
    """One individual over bars [start, stop); writes per-bar net pnl, returns the trade count."""
    f = fast - span_lo
    s = slow - span_lo
    pos = 0.0
    trades = 0
    exit_level = exit_frac * entry
    for t in range(start, stop):
        new = _next_position(pos, _signal(ema, f, s, close, vol, t), entry, exit_level)
        change = abs(new - pos)
        if change > 0.0:
            trades += 1
        pos = new
        pnl_out[t - start] = mode * pos * fwd_ret[t] - cost * change
    return trades


@njit(parallel=True)
def _population_kernel(
    ema: np.ndarray,
    span_lo: int,
    close: np.ndarray,
    vol: np.ndarray,
    fwd_ret: np.ndarray,
    fast: np.ndarray,
    slow: np.ndarray,
    entry: np.ndarray,
    exit_frac: np.ndarray,
    mode: np.ndarray,
    cost: float,
    start: int,
    stop: int,
    min_trades: int,
    annualization: float,
    out: np.ndarray,  # (n_individuals, 3): sharpe, total log return, trades
) -> None:
    n = fast.shape[0]
    length = stop - start
    for i in prange(n):
        # one pass, no per-individual buffer: sums of pnl and pnl^2 give mean and variance
        f = fast[i] - span_lo
        s = slow[i] - span_lo
        e = entry[i]
        exit_level = exit_frac[i] * e
        m = mode[i]
        pos = 0.0
        trades = 0
        total = 0.0
        total_sq = 0.0
        for t in range(start, stop):
            new = _next_position(pos, _signal(ema, f, s, close, vol, t), e, exit_level)
            change = abs(new - pos)
            if change > 0.0:
                trades += 1
            pos = new
            pnl = m * pos * fwd_ret[t] - cost * change
            total += pnl
            total_sq += pnl * pnl
        mean = total / length
        var = (total_sq - total * mean) / max(length - 1, 1)
        sd = math.sqrt(var) if var > 0.0 else 0.0
        if trades < min_trades or sd <= 0.0:
            out[i, 0] = -10.0  # a rule that (almost) never trades has no measurable edge
        else:
            out[i, 0] = mean / sd * annualization
        out[i, 1] = total
        out[i, 2] = trades


class RuleData:
    """Precomputed inputs of the rule backtest for one price series.

    Parameters
    ----------
    close:
        Close prices, shape ``(n_bars,)``.
    vol:
        A causal volatility of returns at each bar (for example the feature store's
        ``price_volatility``); NaN during warm-up keeps the rule flat.
    span_lo, span_hi:
        Smallest and largest EMA span the population may use.
    bars_per_year:
        For the annualized Sharpe ratio.
    """

    def __init__(
        self,
        close: np.ndarray,
        vol: np.ndarray,
        *,
        span_lo: int = 2,
        span_hi: int = 256,
        bars_per_year: float = 252.0 * 78.0,
    ) -> None:
        close = np.ascontiguousarray(close, dtype=np.float64)
        vol = np.ascontiguousarray(vol, dtype=np.float64)
        if close.ndim != 1 or close.shape != vol.shape:
            raise ValidationError(
                f"close and vol must be 1-D arrays of one length, got {close.shape} and {vol.shape}"
            )
        if close.shape[0] < 10 or not np.all(close > 0):
            raise ValidationError("close must hold at least 10 positive prices")
        if not 1 <= span_lo < span_hi:
            raise ValidationError(f"need 1 <= span_lo < span_hi, got {span_lo}, {span_hi}")
        self.close = close
        self.vol = vol
        self.span_lo = int(span_lo)
        self.span_hi = int(span_hi)
        self.ema = _ema_matrix(close, self.span_lo, self.span_hi)
        log_c = np.log(close)
        self.fwd_ret = np.append(np.diff(log_c), 0.0)  # the return earned by the position at t
        self.bars_per_year = float(bars_per_year)

    @property
    def n_bars(self) -> int:
        return int(self.close.shape[0])


def prepare_rule_data(close: Any, vol: Any, **options: Any) -> RuleData:
    """Build :class:`RuleData` (EMA matrix and forward returns) for :func:`backtest_population`."""
    return RuleData(np.asarray(close), np.asarray(vol), **options)


def _column(population: Mapping[str, Any], name: str, n: int | None, dtype: Any) -> np.ndarray:
    if name not in population:
        raise ValidationError(
            f"population has no {name!r} parameter; it needs fast, slow, entry, exit_frac, mode"
        )
    arr = np.asarray(population[name])
    if name == "mode" and arr.dtype.kind in "USO":
        arr = np.where(arr == "trend", 1.0, -1.0)
    arr = np.ascontiguousarray(arr, dtype=dtype).reshape(-1)
    if n is not None and arr.shape[0] != n:
        raise ValidationError(f"population column {name!r} has {arr.shape[0]} rows, expected {n}")
    return arr


def backtest_population(
    data: RuleData,
    population: Mapping[str, Any],
    *,
    start: int = 0,
    stop: int | None = None,
    cost: float = 1e-4,
    min_trades: int = 10,
) -> dict[str, np.ndarray]:
    """Backtest every individual of a population over bars ``[start, stop)``.

    Parameters
    ----------
    data:
        From :func:`prepare_rule_data`.
    population:
        Arrays of one length: ``fast`` and ``slow`` (int spans within the data's span range),
        ``entry`` (>= 0), ``exit_frac`` (in [0, 1]) and ``mode`` (``'trend'``/``'revert'`` or
        +1/-1).
    cost:
        Cost of one unit of position change, as a fraction of notional (1e-4 = 1 bp).
    min_trades:
        Individuals with fewer position changes get a Sharpe of -10.

    Returns
    -------
    dict
        ``sharpe`` (annualized), ``total_return`` (sum of net log returns) and ``trades``.

    Examples
    --------
    >>> import numpy as np
    >>> from kaizenml.demo.data import generate_ohlcv
    >>> bars = generate_ohlcv(2_000, seed=1)
    >>> vol = np.full(2_000, 0.002)
    >>> rd = prepare_rule_data(bars["close"], vol, span_hi=64)
    >>> pop = {"fast": [5, 8], "slow": [30, 50], "entry": [0.5, 1.0], "exit_frac": [0.2, 0.5],
    ...        "mode": ["trend", "revert"]}
    >>> backtest_population(rd, pop)["sharpe"].shape
    (2,)
    """
    fast = _column(population, "fast", None, np.int64)
    n = fast.shape[0]
    slow = _column(population, "slow", n, np.int64)
    entry = _column(population, "entry", n, np.float64)
    exit_frac = _column(population, "exit_frac", n, np.float64)
    mode = _column(population, "mode", n, np.float64)
    for name, arr in (("fast", fast), ("slow", slow)):
        if n and (arr.min() < data.span_lo or arr.max() > data.span_hi):
            raise ValidationError(
                f"{name} spans must lie in [{data.span_lo}, {data.span_hi}], got "
                f"[{arr.min()}, {arr.max()}]; build the data with a wider span range"
            )
    stop = data.n_bars - 1 if stop is None else int(stop)
    if not 0 <= start < stop <= data.n_bars:
        raise ValidationError(f"need 0 <= start < stop <= {data.n_bars}, got {start}, {stop}")
    out = np.empty((n, 3))
    _population_kernel(
        data.ema,
        data.span_lo,
        data.close,
        data.vol,
        data.fwd_ret,
        fast,
        slow,
        entry,
        exit_frac,
        mode,
        float(cost),
        int(start),
        int(stop),
        int(min_trades),
        math.sqrt(data.bars_per_year),
        out,
    )
    return {
        "sharpe": out[:, 0].copy(),
        "total_return": out[:, 1].copy(),
        "trades": out[:, 2].copy(),
    }


def backtest_rule(
    data: RuleData,
    params: Mapping[str, Any],
    *,
    start: int = 0,
    stop: int | None = None,
    cost: float = 1e-4,
) -> dict[str, Any]:
    """Backtest one parameter set; returns metrics and the equity curve (cumulative log return).

    Metrics: ``sharpe``, ``total_return``, ``max_drawdown`` (of the log equity, >= 0),
    ``trades``, ``hit_rate`` (share of bars in a position that made money).
    """
    stop = data.n_bars - 1 if stop is None else int(stop)
    if not 0 <= start < stop <= data.n_bars:
        raise ValidationError(f"need 0 <= start < stop <= {data.n_bars}, got {start}, {stop}")
    mode = params["mode"]
    mode_f = (1.0 if mode == "trend" else -1.0) if isinstance(mode, str) else float(mode)
    pnl = np.empty(stop - start)
    trades = _run_rule(
        data.ema,
        data.span_lo,
        data.close,
        data.vol,
        data.fwd_ret,
        int(params["fast"]),
        int(params["slow"]),
        float(params["entry"]),
        float(params["exit_frac"]),
        mode_f,
        float(cost),
        int(start),
        int(stop),
        pnl,
    )
    equity = np.cumsum(pnl)
    sd = float(pnl.std(ddof=1)) if pnl.size > 1 else 0.0
    sharpe = float(pnl.mean() / sd * math.sqrt(data.bars_per_year)) if sd > 0 else 0.0
    peak = np.maximum.accumulate(np.concatenate(([0.0], equity)))[1:]
    active = pnl != 0.0
    return {
        "sharpe": sharpe,
        "total_return": float(equity[-1]) if equity.size else 0.0,
        "max_drawdown": float(np.max(peak - equity)) if equity.size else 0.0,
        "trades": int(trades),
        "hit_rate": float(np.mean(pnl[active] > 0)) if active.any() else 0.0,
        "equity": equity,
    }
