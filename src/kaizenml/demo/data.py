"""Market data for the demo: a seeded OHLCV generator and a CSV/Parquet loader.

The generator produces intraday bars with the features that make strategy research hard and
that a toy random walk lacks:

* **regimes** that switch by a Markov chain: up-trend, down-trend (positive return
  autocorrelation and a drift) and mean reversion (the log price is pulled back to a slowly
  moving anchor, so returns are negatively autocorrelated);
* **volatility clustering** from a GARCH(1, 1) recursion with Student-t shocks, times an
  intraday U-shaped seasonality (busy open and close, quiet lunch);
* **timestamps** on weekday sessions (09:30 to 16:00 by default), with an overnight gap at
  every session open;
* **OHLC consistency** (``low <= min(open, close)`` and ``max(open, close) <= high``) and a
  **volume** that grows with the absolute return and the intraday activity.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``, so a seed
reproduces the bars exactly, on any machine.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import KaizenTypeError, NotFoundError, ValidationError
from .._validation import check_float, check_int

__all__ = ["OHLCV_COLUMNS", "generate_ohlcv", "load_ohlcv", "to_frame"]

#: The columns every OHLCV mapping produced by this module holds, in order.
OHLCV_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")

_FREQ_UNITS = {"s": 1, "sec": 1, "min": 60, "t": 60, "h": 3600, "hour": 3600}

# regime ids (the "regime" column of the generator's output)
TREND_UP, TREND_DOWN, MEAN_REVERT = 0, 1, 2


def _parse_freq(freq: str) -> int:
    """Bar length in seconds from '5min', '1min', '30s', '1h'."""
    if not isinstance(freq, str):
        raise KaizenTypeError(f"freq must be a str such as '5min', got {type(freq).__name__}")
    text = freq.strip().lower()
    digits = ""
    while text and text[0].isdigit():
        digits, text = digits + text[0], text[1:]
    unit = _FREQ_UNITS.get(text)
    if unit is None:
        raise ValidationError(
            f"freq={freq!r} is not understood; use a number and a unit, e.g. '30s', '5min', '1h'"
        )
    seconds = int(digits or "1") * unit
    if seconds <= 0 or 86400 % seconds:
        raise ValidationError(f"freq={freq!r} must divide a day evenly, e.g. '1min' or '5min'")
    return seconds


def _session_timestamps(
    n_bars: int, bar_seconds: int, start: str, session: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Bar-close timestamps on weekday sessions, and each bar's position in its session [0, 1)."""
    open_h, open_m = (int(x) for x in session[0].split(":"))
    close_h, close_m = (int(x) for x in session[1].split(":"))
    open_s, close_s = open_h * 3600 + open_m * 60, close_h * 3600 + close_m * 60
    if close_s <= open_s:
        raise ValidationError(
            f"session={session!r} must close after it opens, e.g. ('09:30', '16:00')"
        )
    per_day = (close_s - open_s) // bar_seconds
    if per_day < 1:
        raise ValidationError(f"session={session!r} is shorter than one bar of {bar_seconds} s")
    day = np.datetime64(start, "D")
    n_days_needed = -(-n_bars // per_day)
    days: list[np.datetime64] = []
    while len(days) < n_days_needed:
        # numpy weekday: 1970-01-01 was a Thursday, so (days + 3) % 7 gives Monday = 0
        if (int(day.astype(np.int64)) + 3) % 7 < 5:
            days.append(day)
        day = day + np.timedelta64(1, "D")
    day_arr = np.array(days, dtype="datetime64[s]")
    offsets = open_s + bar_seconds * np.arange(1, per_day + 1)  # a bar is stamped at its close
    stamps = (day_arr[:, None] + offsets[None, :].astype("timedelta64[s]")).ravel()[:n_bars]
    phase = np.tile((np.arange(per_day) + 0.5) / per_day, n_days_needed)[:n_bars]
    return stamps.astype("datetime64[ns]"), phase


def _one_symbol(
    rng: np.random.Generator,
    n_bars: int,
    phase: np.ndarray,
    session_start: np.ndarray,
    *,
    start_price: float,
    annual_vol: float,
    bars_per_year: float,
    regime_length: float,
) -> dict[str, np.ndarray]:
    # GARCH(1, 1) on the per-bar variance; unconditional variance matches annual_vol
    base_var = annual_vol**2 / bars_per_year
    alpha, beta = 0.08, 0.90
    omega = base_var * (1.0 - alpha - beta)
    nu = 5.0
    shocks = rng.standard_t(nu, size=n_bars) / math.sqrt(nu / (nu - 2.0))
    # U-shaped intraday activity: busy at the open and the close
    season = 0.75 + 1.2 * (phase - 0.5) ** 2 * 4.0
    season = season / np.sqrt(np.mean(season**2))

    # regimes: a Markov chain with mean duration `regime_length` bars
    p_switch = 1.0 / regime_length
    switch = rng.random(n_bars) < p_switch
    new_regime = rng.choice(3, size=n_bars, p=[0.3, 0.3, 0.4])
    drift_scale = rng.uniform(0.01, 0.05, size=n_bars)

    regime = np.empty(n_bars, dtype=np.int64)
    log_ret = np.empty(n_bars)
    sigma = np.empty(n_bars)
    var = base_var
    r_prev = 0.0
    eps_prev = 0.0
    cur = int(rng.integers(0, 3))
    cur_drift = 0.1
    log_p = math.log(start_price)
    anchor = log_p
    for t in range(n_bars):
        if switch[t]:
            cur = int(new_regime[t])
            cur_drift = float(drift_scale[t])
            anchor = log_p
        var = omega + alpha * eps_prev**2 + beta * var
        s = math.sqrt(var) * season[t]
        if session_start[t]:
            s *= 2.5  # the overnight gap
        eps = s * shocks[t]
        if cur == TREND_UP:
            r = cur_drift * s + 0.08 * r_prev + eps
        elif cur == TREND_DOWN:
            r = -cur_drift * s + 0.08 * r_prev + eps
        else:
            # pull back towards a slowly drifting anchor: negative autocorrelation
            anchor += 0.02 * (log_p - anchor)
            r = -0.05 * (log_p - anchor) - 0.08 * r_prev + eps
        regime[t] = cur
        log_ret[t] = r
        sigma[t] = s
        log_p += r
        r_prev = r
        eps_prev = eps / season[t]

    close = start_price * np.exp(np.cumsum(log_ret))
    prev_close = np.concatenate(([start_price], close[:-1]))
    # the open sits between the previous close and this close, off by a fraction of the move
    # (an overnight gap carries the whole move into the open)
    open_frac = np.where(session_start, 0.8, rng.uniform(0.0, 0.25, size=n_bars))
    open_ = prev_close * np.exp(open_frac * log_ret)
    body_hi = np.maximum(open_, close)
    body_lo = np.minimum(open_, close)
    high = body_hi * np.exp(np.abs(rng.normal(0.0, 0.6, size=n_bars)) * sigma)
    low = body_lo * np.exp(-np.abs(rng.normal(0.0, 0.6, size=n_bars)) * sigma)

    # volume: log-normal around a level that rises with |return| / sigma and intraday activity
    z = np.abs(log_ret) / np.maximum(sigma, 1e-12)
    log_vol = math.log(1e5) + 0.45 * z + 0.8 * np.log(season) + rng.normal(0.0, 0.3, size=n_bars)
    volume = np.round(np.exp(log_vol))
    return {
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "regime": regime,
    }


def generate_ohlcv(
    n_bars: int,
    *,
    n_symbols: int = 1,
    seed: int | None = 0,
    freq: str = "5min",
    start: str = "2024-01-02",
    session: tuple[str, str] = ("09:30", "16:00"),
    start_price: float = 100.0,
    annual_vol: float = 0.25,
    regime_length: float = 400.0,
    as_frame: bool = False,
) -> Any:
    """Generate realistic intraday OHLCV bars.

    Parameters
    ----------
    n_bars:
        Bars per symbol (>= 2).
    n_symbols:
        Number of symbols, named ``SYM000``, ``SYM001``, ...; each is an independent draw.
        The rows are ordered by symbol, then by time.
    seed:
        Seed of the random generator; the same seed gives the same bars. ``None`` draws fresh
        entropy.
    freq:
        Bar length: ``'30s'``, ``'1min'``, ``'5min'`` (default), ``'1h'`` ...
    start:
        First calendar day (ISO date); weekends are skipped.
    session:
        Opening and closing time of the trading day, ``('09:30', '16:00')`` by default.
    start_price, annual_vol:
        Price of the first bar and the long-run annualized volatility.
    regime_length:
        Mean length of a regime (trend up, trend down, mean reversion) in bars.
    as_frame:
        Return a pandas DataFrame instead of a dict of numpy arrays (needs pandas).

    Returns
    -------
    dict of numpy arrays (or a pandas DataFrame)
        Columns ``timestamp`` (datetime64[ns], the bar's close time), ``symbol`` (str),
        ``open``, ``high``, ``low``, ``close``, ``volume`` (float64) and ``regime``
        (int: 0 trend up, 1 trend down, 2 mean reversion; the truth, for teaching and tests).

    Examples
    --------
    >>> from kaizenml.demo.data import generate_ohlcv
    >>> bars = generate_ohlcv(1_000, seed=7)
    >>> bool((bars["low"] <= bars["open"]).all() and (bars["close"] <= bars["high"]).all())
    True
    """
    n_bars = check_int(n_bars, "n_bars", minimum=2)
    n_symbols = check_int(n_symbols, "n_symbols", minimum=1)
    if seed is not None:
        seed = check_int(seed, "seed", minimum=0)
    start_price = check_float(start_price, "start_price", minimum=1e-9)
    annual_vol = check_float(annual_vol, "annual_vol", minimum=1e-6, maximum=5.0)
    regime_length = check_float(regime_length, "regime_length", minimum=1.0)
    bar_seconds = _parse_freq(freq)
    try:
        np.datetime64(start, "D")
    except ValueError as exc:
        raise ValidationError(f"start={start!r} is not an ISO date such as '2024-01-02'") from exc

    stamps, phase = _session_timestamps(n_bars, bar_seconds, start, session)
    day = stamps.astype("datetime64[D]")
    session_start = np.concatenate(([True], day[1:] != day[:-1]))
    bars_per_day = (
        int(round(1.0 / (phase[1] - phase[0]))) if n_bars > 1 and phase[1] > phase[0] else 78
    )
    bars_per_year = 252.0 * bars_per_day

    root = np.random.SeedSequence(seed)
    columns: dict[str, list[np.ndarray]] = {k: [] for k in (*OHLCV_COLUMNS, "regime")}
    for i, child in enumerate(root.spawn(n_symbols)):
        rng = np.random.default_rng(child)
        bars = _one_symbol(
            rng,
            n_bars,
            phase,
            session_start,
            start_price=start_price * (1.0 if i == 0 else float(rng.uniform(0.2, 5.0))),
            annual_vol=annual_vol * (1.0 if i == 0 else float(rng.uniform(0.6, 1.6))),
            bars_per_year=bars_per_year,
            regime_length=regime_length,
        )
        columns["timestamp"].append(stamps)
        columns["symbol"].append(np.full(n_bars, f"SYM{i:03d}", dtype=object))
        for key, value in bars.items():
            columns[key].append(value)
    out = {k: np.concatenate(v) for k, v in columns.items()}
    out["symbol"] = out["symbol"].astype(str)
    return to_frame(out) if as_frame else out


def to_frame(data: Mapping[str, np.ndarray]) -> Any:
    """A pandas DataFrame from a mapping of columns (pandas is needed only here)."""
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the test extra
        raise ImportError("as_frame=True needs pandas: pip install pandas") from exc
    return pd.DataFrame({k: np.asarray(v) for k, v in data.items()})


# --------------------------------------------------------------------------------------------
# loading a user's bars
# --------------------------------------------------------------------------------------------

_ALIASES = {
    "timestamp": ("timestamp", "time", "datetime", "date", "ts"),
    "symbol": ("symbol", "ticker", "asset", "instrument"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c", "last", "price"),
    "volume": ("volume", "vol", "v"),
}


def _read_table(path: Path, sep: str) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError(
                f"reading {path.name} needs pyarrow: pip install pyarrow (or convert it to CSV)"
            ) from exc
        table = pq.read_table(path)
        return {name: table.column(name).to_numpy() for name in table.column_names}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=sep)
        try:
            header = next(reader)
        except StopIteration:
            raise ValidationError(
                f"data file {str(path)!r} is empty; it needs a header row"
            ) from None
        rows = [row for row in reader if row]
    width = len(header)
    bad = next((i for i, row in enumerate(rows) if len(row) != width), None)
    if bad is not None:
        raise ValidationError(
            f"{path.name}: row {bad + 2} has {len(rows[bad])} fields, the header has {width}; "
            f"check the separator (sep={sep!r})"
        )
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    return {
        name.strip(): np.array(col, dtype=object) for name, col in zip(header, cols, strict=True)
    }


def _find(table: Mapping[str, np.ndarray], role: str, given: str | None, path: Path) -> str | None:
    if given is not None:
        if given not in table:
            raise NotFoundError(
                f"{role}_col={given!r} is not a column of {path.name}; its columns are "
                f"{sorted(table)}"
            )
        return given
    lower = {name.lower(): name for name in table}
    for alias in _ALIASES[role]:
        if alias in lower:
            return lower[alias]
    return None


def _to_datetime(values: np.ndarray, name: str, fmt_unit: str | None) -> np.ndarray:
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[ns]")
    try:
        numeric = values.astype(np.float64)
    except (TypeError, ValueError):
        numeric = None
    if numeric is not None:
        unit = fmt_unit
        if unit is None:  # guess epoch units from the magnitude
            top = float(np.nanmax(np.abs(numeric))) if numeric.size else 0.0
            unit = "s" if top < 1e11 else "ms" if top < 1e14 else "us" if top < 1e17 else "ns"
        return numeric.astype(np.int64).astype(f"datetime64[{unit}]").astype("datetime64[ns]")
    text = np.array([str(v).strip().replace(" ", "T").rstrip("Z") for v in values])
    try:
        return text.astype("datetime64[ns]")
    except ValueError as exc:
        raise ValidationError(
            f"column {name!r} holds timestamps numpy cannot parse (first: {values[0]!r}); "
            "use ISO 8601 ('2024-01-02 09:35:00') or epoch numbers with time_unit='s'/'ms'"
        ) from exc


def load_ohlcv(
    path: str | os.PathLike[str],
    *,
    timestamp_col: str | None = None,
    open_col: str | None = None,
    high_col: str | None = None,
    low_col: str | None = None,
    close_col: str | None = None,
    volume_col: str | None = None,
    symbol_col: str | None = None,
    sep: str = ",",
    time_unit: str | None = None,
) -> dict[str, np.ndarray]:
    """Load bars from a CSV or Parquet file into the generator's column layout.

    Columns are found by name, case-insensitively (``Date``/``time``/``timestamp``,
    ``Open``, ``High``, ``Low``, ``Close``/``price``, ``Volume``, ``symbol``/``ticker``), or named
    explicitly with the ``*_col`` options. Only ``close`` is required: a missing open/high/low
    is filled from the close, a missing volume with ones, a missing timestamp with a bar index.

    Parameters
    ----------
    path:
        A ``.csv`` (or other delimited text, see ``sep``) or ``.parquet`` file.
    timestamp_col, open_col, high_col, low_col, close_col, volume_col, symbol_col:
        Column names in the file, when they are not the usual ones.
    sep:
        Field separator of a text file.
    time_unit:
        Unit of numeric epoch timestamps (``'s'``, ``'ms'``, ``'us'``, ``'ns'``); guessed from
        the magnitude when omitted.

    Returns
    -------
    dict of numpy arrays
        ``timestamp``, ``symbol``, ``open``, ``high``, ``low``, ``close``, ``volume``, sorted by
        symbol then time.

    Examples
    --------
    >>> bars = load_ohlcv("prices.csv", close_col="Adj Close")  # doctest: +SKIP
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise NotFoundError(
            f"data file {str(path)!r} does not exist; pass the path of a CSV or Parquet file"
        )
    table = _read_table(path, sep)
    roles = {
        "timestamp": timestamp_col,
        "symbol": symbol_col,
        "open": open_col,
        "high": high_col,
        "low": low_col,
        "close": close_col,
        "volume": volume_col,
    }
    found = {role: _find(table, role, given, path) for role, given in roles.items()}
    if found["close"] is None:
        raise ValidationError(
            f"{path.name} has no close column (columns: {sorted(table)}); name it with "
            "close_col=... (or --close-col on the command line)"
        )
    n = len(table[found["close"]])
    if n < 2:
        raise ValidationError(f"{path.name} holds {n} rows; at least 2 bars are needed")

    def numeric(role: str) -> np.ndarray:
        name = found[role]
        assert name is not None
        try:
            out = np.asarray(table[name]).astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"column {name!r} ({role}) of {path.name} is not numeric"
            ) from exc
        return out

    close = numeric("close")
    out: dict[str, np.ndarray] = {}
    if found["timestamp"] is not None:
        out["timestamp"] = _to_datetime(
            np.asarray(table[found["timestamp"]]), found["timestamp"], time_unit
        )
    else:
        out["timestamp"] = np.arange(n).astype("datetime64[m]").astype("datetime64[ns]")
    out["symbol"] = (
        np.asarray(table[found["symbol"]]).astype(str)
        if found["symbol"] is not None
        else np.full(n, path.stem, dtype=object).astype(str)
    )
    out["open"] = numeric("open") if found["open"] is not None else close.copy()
    out["high"] = numeric("high") if found["high"] is not None else np.maximum(out["open"], close)
    out["low"] = numeric("low") if found["low"] is not None else np.minimum(out["open"], close)
    out["close"] = close
    out["volume"] = numeric("volume") if found["volume"] is not None else np.ones(n)
    if not np.all(np.isfinite(close)) or np.any(close <= 0):
        raise ValidationError(f"{path.name}: the close column must hold positive finite prices")
    order = np.lexsort((out["timestamp"], out["symbol"]))
    return {k: v[order] for k, v in out.items()}
