"""Numba kernels behind :mod:`kaizenml.indicators`.

Called only by the validated wrappers in ``kaizenml.indicators._api``. Every indicator has

* ``_name_1d(x, ..., out)``: one contiguous float64 series in, results written into ``out``
  (allocated by the caller with ``np.empty``: numpy-allocated outputs fault in pages far more
  cheaply than arrays allocated inside a jitted function), and
* ``_name_2d(x, ..., out)``: a C-contiguous ``(n_series, n_points)`` batch, rows spread over
  threads with ``prange``, each row computed by the 1-D kernel so both paths agree bit for bit.

Gap policy, shared by every kernel: a non-finite input (NaN or +-inf) is a gap. The output at a
gap is NaN and the indicator restarts after it, exactly as if the series began on the next bar
(so ``f(x)[g + 1:] == f(x[g + 1:])`` and ``f(x)[:g] == f(x[:g])``). Each kernel tracks ``run``,
the number of consecutive valid bars ending at the current one; seeds and windows are counted in
``run`` so a restart needs no special code path.

The arithmetic mirrors TA-Lib 0.8.1 where TA-Lib has the indicator (same seeds, same order of
running-sum updates, multiplication by a precomputed ``1/n`` in Wilder smoothing), so results
agree to the last few ulps. Rolling variances use sums of deviations from an anchor that is
re-set to a recent value every ``window`` bars (and the sums recomputed), which keeps full
precision at high price levels where ``E[x^2] - E[x]^2`` cancels catastrophically.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__: list[str] = []

_NAN = np.nan
_TWO_PI = 2.0 * math.pi
# A window variance below this fraction of the mean squared deviation from the anchor is
# rounding noise of the running sums (the anchor stays within the last window, so a genuine
# variance is never that small relative to it); it is reported as exactly zero.
_VAR_NOISE = 8.0 * 2.220446049250313e-16

# error_model="numpy": division by zero gives inf/NaN as in C (and TA-Lib) instead of raising,
# and the divisions need no zero checks in the hot loops
_serial = njit(cache=True, nogil=True, error_model="numpy")
# The batch kernels are parallel; whether they may be cached is decided in _config.
from ._config import PARALLEL_CACHE as _PARALLEL_CACHE  # noqa: E402

_parallel = njit(parallel=True, cache=_PARALLEL_CACHE, nogil=True, error_model="numpy")


@_serial
def _ok(v):
    return math.isfinite(v)


@_serial
def _window_var(s1, s2, window, ddof):
    """Variance of a window from sums of deviations from an anchor."""
    mean = s1 / window
    msq = s2 / window
    var = msq - mean * mean
    if var <= _VAR_NOISE * msq:
        return 0.0
    if ddof != 0:
        var = var * window / (window - ddof)
    return var


# --------------------------------------------------------------------------- moving averages


@_serial
def _sma_1d(x, window, out):
    n = x.shape[0]
    run = 0
    total = 0.0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            total = 0.0
            out[i] = _NAN
            continue
        run += 1
        total += v
        if run >= window:
            out[i] = total / window
            # TA-Lib removes the trailing value after the output; same order, same rounding
            total -= x[i - window + 1]
        else:
            out[i] = _NAN


@_parallel
def _sma_2d(x, window, out):
    for r in prange(x.shape[0]):
        _sma_1d(x[r], window, out[r])


@_serial
def _ema_1d(x, window, out):
    n = x.shape[0]
    k = 2.0 / (window + 1)
    run = 0
    total = 0.0
    prev = 0.0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            total = 0.0
            out[i] = _NAN
            continue
        run += 1
        if run < window:
            total += v
            out[i] = _NAN
        elif run == window:
            total += v
            prev = total / window
            out[i] = prev
        else:
            prev = (v - prev) * k + prev
            out[i] = prev


@_parallel
def _ema_2d(x, window, out):
    for r in prange(x.shape[0]):
        _ema_1d(x[r], window, out[r])


@_serial
def _rsi_1d(x, window, out):
    n = x.shape[0]
    inv = 1.0 / window
    keep = window - 1.0
    run = 0
    last = 0.0
    gain = 0.0
    loss = 0.0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            out[i] = _NAN
            continue
        run += 1
        if run == 1:
            last = v
            gain = 0.0
            loss = 0.0
            out[i] = _NAN
            continue
        change = v - last
        last = v
        if run <= window + 1:
            if change < 0.0:
                loss -= change
            else:
                gain += change
            if run <= window:
                out[i] = _NAN
                continue
            gain *= inv
            loss *= inv
        else:
            gain *= keep
            loss *= keep
            if change < 0.0:
                loss -= change
            else:
                gain += change
            gain *= inv
            loss *= inv
        total = gain + loss
        # a window without any change: TA-Lib reports 0, and so do we
        out[i] = 100.0 * (gain / total) if total != 0.0 else 0.0


@_parallel
def _rsi_2d(x, window, out):
    for r in prange(x.shape[0]):
        _rsi_1d(x[r], window, out[r])


@_serial
def _macd_1d(x, fast, slow, signal, out_macd, out_signal, out_hist):
    n = x.shape[0]
    k_fast = 2.0 / (fast + 1)
    k_slow = 2.0 / (slow + 1)
    k_signal = 2.0 / (signal + 1)
    first = slow + signal - 1  # run at which all three outputs exist
    run = 0
    ema_fast = 0.0
    ema_slow = 0.0
    sig = 0.0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            if run < first:
                # the run ended before its signal was seeded: drop its scratch values
                for j in range(i - run, i):
                    out_macd[j] = _NAN
            run = 0
            out_macd[i] = _NAN
            out_signal[i] = _NAN
            out_hist[i] = _NAN
            continue
        run += 1
        if run < slow:
            out_macd[i] = _NAN
            out_signal[i] = _NAN
            out_hist[i] = _NAN
            continue
        if run == slow:
            # both averages start on the slow one's first bar; the fast one is seeded with the
            # mean of the `fast` values ending there (TA-Lib's alignment)
            total = 0.0
            for j in range(i - slow + 1, i + 1):
                total += x[j]
            ema_slow = total / slow
            total = 0.0
            for j in range(i - fast + 1, i + 1):
                total += x[j]
            ema_fast = total / fast
        else:
            ema_slow = (v - ema_slow) * k_slow + ema_slow
            ema_fast = (v - ema_fast) * k_fast + ema_fast
        m = ema_fast - ema_slow
        out_macd[i] = m  # scratch until the signal line is seeded
        if run < first:
            out_signal[i] = _NAN
            out_hist[i] = _NAN
            continue
        if run == first:
            total = 0.0
            for j in range(i - signal + 1, i + 1):
                total += out_macd[j]
            sig = total / signal
            for j in range(i - signal + 1, i):
                out_macd[j] = _NAN
        else:
            sig = (m - sig) * k_signal + sig
        out_signal[i] = sig
        out_hist[i] = m - sig
    if run < first:
        for j in range(n - run, n):
            out_macd[j] = _NAN


@_parallel
def _macd_2d(x, fast, slow, signal, out_macd, out_signal, out_hist):
    for r in prange(x.shape[0]):
        _macd_1d(x[r], fast, slow, signal, out_macd[r], out_signal[r], out_hist[r])


# --------------------------------------------------------------------------- dispersion


@_serial
def _std_1d(x, window, ddof, out):
    n = x.shape[0]
    run = 0
    anchor = 0.0
    s1 = 0.0
    s2 = 0.0
    countdown = 0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            out[i] = _NAN
            continue
        run += 1
        if run == 1:
            anchor = v
            s1 = 0.0
            s2 = 0.0
            countdown = window
        d = v - anchor
        s1 += d
        s2 += d * d
        if run > window:
            t = x[i - window] - anchor
            s1 -= t
            s2 -= t * t
        if run >= window:
            out[i] = math.sqrt(_window_var(s1, s2, window, ddof))
        else:
            out[i] = _NAN
        countdown -= 1
        if countdown == 0 and run >= window:
            # re-anchor on the newest value and rebuild the sums of the current window
            countdown = window
            anchor = v
            s1 = 0.0
            s2 = 0.0
            for j in range(i - window + 1, i + 1):
                d = x[j] - anchor
                s1 += d
                s2 += d * d
        elif countdown == 0:
            countdown = window


@_parallel
def _std_2d(x, window, ddof, out):
    for r in prange(x.shape[0]):
        _std_1d(x[r], window, ddof, out[r])


@_serial
def _zscore_1d(x, window, ddof, out):
    n = x.shape[0]
    run = 0
    anchor = 0.0
    s1 = 0.0
    s2 = 0.0
    countdown = 0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            out[i] = _NAN
            continue
        run += 1
        if run == 1:
            anchor = v
            s1 = 0.0
            s2 = 0.0
            countdown = window
        d = v - anchor
        s1 += d
        s2 += d * d
        if run > window:
            t = x[i - window] - anchor
            s1 -= t
            s2 -= t * t
        if run >= window:
            var = _window_var(s1, s2, window, ddof)
            out[i] = (d - s1 / window) / math.sqrt(var) if var > 0.0 else 0.0
        else:
            out[i] = _NAN
        countdown -= 1
        if countdown == 0 and run >= window:
            countdown = window
            anchor = v
            s1 = 0.0
            s2 = 0.0
            for j in range(i - window + 1, i + 1):
                d = x[j] - anchor
                s1 += d
                s2 += d * d
        elif countdown == 0:
            countdown = window


@_parallel
def _zscore_2d(x, window, ddof, out):
    for r in prange(x.shape[0]):
        _zscore_1d(x[r], window, ddof, out[r])


@_serial
def _bollinger_1d(x, window, nbdev, middle, upper, lower, position, bandwidth):
    n = x.shape[0]
    run = 0
    total = 0.0
    anchor = 0.0
    s1 = 0.0
    s2 = 0.0
    countdown = 0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            total = 0.0
            middle[i] = _NAN
            upper[i] = _NAN
            lower[i] = _NAN
            position[i] = _NAN
            bandwidth[i] = _NAN
            continue
        run += 1
        if run == 1:
            anchor = v
            s1 = 0.0
            s2 = 0.0
            countdown = window
        total += v
        d = v - anchor
        s1 += d
        s2 += d * d
        if run > window:
            t = x[i - window] - anchor
            s1 -= t
            s2 -= t * t
        if run >= window:
            mid = total / window
            total -= x[i - window + 1]
            width = nbdev * math.sqrt(_window_var(s1, s2, window, 0))
            hi = mid + width
            lo = mid - width
            middle[i] = mid
            upper[i] = hi
            lower[i] = lo
            # a flat window has no band: the price sits on the middle line
            position[i] = (v - lo) / (hi - lo) if hi != lo else 0.5
            bandwidth[i] = (hi - lo) / mid
        else:
            middle[i] = _NAN
            upper[i] = _NAN
            lower[i] = _NAN
            position[i] = _NAN
            bandwidth[i] = _NAN
        countdown -= 1
        if countdown == 0 and run >= window:
            countdown = window
            anchor = v
            s1 = 0.0
            s2 = 0.0
            for j in range(i - window + 1, i + 1):
                d = x[j] - anchor
                s1 += d
                s2 += d * d
        elif countdown == 0:
            countdown = window


@_parallel
def _bollinger_2d(x, window, nbdev, middle, upper, lower, position, bandwidth):
    for r in prange(x.shape[0]):
        _bollinger_1d(x[r], window, nbdev, middle[r], upper[r], lower[r], position[r], bandwidth[r])


@_serial
def _volatility_1d(x, window, ddof, scale, ring, out):
    """Rolling std of log returns; ``ring`` (length ``window``) holds the returns in the window.

    Log returns are centred near zero, so their sums need no anchor; they are still rebuilt
    from the ring every ``window`` bars so rounding from a large jump leaving the window does
    not linger.
    """
    n = x.shape[0]
    run = 0
    last = 0.0
    s1 = 0.0
    s2 = 0.0
    pos = 0
    countdown = 0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            out[i] = _NAN
            continue
        run += 1
        if run == 1:
            last = v
            s1 = 0.0
            s2 = 0.0
            pos = 0
            countdown = window
            out[i] = _NAN
            continue
        r = math.log(v / last)
        last = v
        if run > window + 1:
            t = ring[pos]
            s1 -= t
            s2 -= t * t
        ring[pos] = r
        pos += 1
        if pos == window:
            pos = 0
        s1 += r
        s2 += r * r
        if run > window:
            out[i] = math.sqrt(_window_var(s1, s2, window, ddof)) * scale
        else:
            out[i] = _NAN
        countdown -= 1
        if countdown == 0:
            countdown = window
            if run > window:
                s1 = 0.0
                s2 = 0.0
                for j in range(window):
                    t = ring[j]
                    s1 += t
                    s2 += t * t


@_parallel
def _volatility_2d(x, window, ddof, scale, out):
    for r in prange(x.shape[0]):
        ring = np.empty(window)
        _volatility_1d(x[r], window, ddof, scale, ring, out[r])


# --------------------------------------------------------------------------- differences


@_serial
def _lag_1d(x, horizon, kind, out):
    """``kind``: 0 simple return, 1 log return, 2 momentum (difference), 3 rate of change in %."""
    n = x.shape[0]
    run = 0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            out[i] = _NAN
            continue
        run += 1
        if run <= horizon:
            out[i] = _NAN
            continue
        p = x[i - horizon]
        if kind == 0:
            out[i] = (v - p) / p
        elif kind == 1:
            out[i] = math.log(v / p)
        elif kind == 2:
            out[i] = v - p
        else:
            out[i] = (v / p - 1.0) * 100.0


@_parallel
def _lag_2d(x, horizon, kind, out):
    for r in prange(x.shape[0]):
        _lag_1d(x[r], horizon, kind, out[r])


@_serial
def _volume_ratio_1d(x, window, out):
    n = x.shape[0]
    run = 0
    total = 0.0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            total = 0.0
            out[i] = _NAN
            continue
        run += 1
        total += v
        if run >= window:
            out[i] = v / (total / window)
            total -= x[i - window + 1]
        else:
            out[i] = _NAN


@_parallel
def _volume_ratio_2d(x, window, out):
    for r in prange(x.shape[0]):
        _volume_ratio_1d(x[r], window, out[r])


# --------------------------------------------------------------------------- high/low/close


@_serial
def _atr_1d(high, low, close, window, out):
    n = close.shape[0]
    inv = 1.0 / window
    keep = window - 1.0
    run = 0
    prev_close = 0.0
    total = 0.0
    atr = 0.0
    for i in range(n):
        h = high[i]
        lo = low[i]
        c = close[i]
        if not (_ok(h) and _ok(lo) and _ok(c)):
            run = 0
            out[i] = _NAN
            continue
        run += 1
        if run == 1:
            prev_close = c
            total = 0.0
            out[i] = _NAN
            continue
        tr = h - lo
        t = abs(prev_close - h)
        if t > tr:
            tr = t
        t = abs(prev_close - lo)
        if t > tr:
            tr = t
        prev_close = c
        if run <= window + 1:
            total += tr
            if run <= window:
                out[i] = _NAN
                continue
            atr = total / window
        else:
            atr = (atr * keep + tr) * inv
        out[i] = atr


@_parallel
def _atr_2d(high, low, close, window, out):
    for r in prange(close.shape[0]):
        _atr_1d(high[r], low[r], close[r], window, out[r])


@_serial
def _stochastic_1d(high, low, close, fastk, slowk, slowd, ring_k, ring_d, out_k, out_d):
    """Slow stochastic with simple moving averages; ``ring_k``/``ring_d`` (lengths ``slowk`` and
    ``slowd``) hold the fast %K and slow %K values inside the two averaging windows."""
    n = close.shape[0]
    first_k = fastk + slowk - 1
    first = first_k + slowd - 1
    run = 0
    hi_idx = 0
    lo_idx = 0
    total_k = 0.0
    total_d = 0.0
    for i in range(n):
        h = high[i]
        lo = low[i]
        c = close[i]
        if not (_ok(h) and _ok(lo) and _ok(c)):
            run = 0
            out_k[i] = _NAN
            out_d[i] = _NAN
            continue
        run += 1
        if run == 1:
            hi_idx = i
            lo_idx = i
            total_k = 0.0
            total_d = 0.0
        start = i - fastk + 1
        # keep the index of the window's extremes; rescan only when one drops out
        if hi_idx < start:
            hi_idx = start
            for j in range(start + 1, i + 1):
                if high[j] >= high[hi_idx]:
                    hi_idx = j
        elif h >= high[hi_idx]:
            hi_idx = i
        if lo_idx < start:
            lo_idx = start
            for j in range(start + 1, i + 1):
                if low[j] <= low[lo_idx]:
                    lo_idx = j
        elif lo <= low[lo_idx]:
            lo_idx = i
        if run < fastk:
            out_k[i] = _NAN
            out_d[i] = _NAN
            continue
        lowest = low[lo_idx]
        diff = (high[hi_idx] - lowest) / 100.0
        fk = (c - lowest) / diff if diff != 0.0 else 0.0
        kpos = (run - fastk) % slowk
        total_k += fk
        if run < first_k:
            ring_k[kpos] = fk
            out_k[i] = _NAN
            out_d[i] = _NAN
            continue
        sk = total_k / slowk
        # the fast %K that leaves the average next bar sits in the slot after this one
        ring_k[kpos] = fk
        total_k -= ring_k[(kpos + 1) % slowk]
        dpos = (run - first_k) % slowd
        total_d += sk
        ring_d[dpos] = sk
        if run < first:
            out_k[i] = _NAN
            out_d[i] = _NAN
            continue
        out_k[i] = sk
        out_d[i] = total_d / slowd
        total_d -= ring_d[(dpos + 1) % slowd]


@_parallel
def _stochastic_2d(high, low, close, fastk, slowk, slowd, out_k, out_d):
    for r in prange(close.shape[0]):
        ring_k = np.empty(slowk)
        ring_d = np.empty(slowd)
        _stochastic_1d(
            high[r], low[r], close[r], fastk, slowk, slowd, ring_k, ring_d, out_k[r], out_d[r]
        )


@_serial
def _obv_1d(close, volume, out):
    n = close.shape[0]
    run = 0
    last = 0.0
    total = 0.0
    for i in range(n):
        c = close[i]
        v = volume[i]
        if not (_ok(c) and _ok(v)):
            run = 0
            out[i] = _NAN
            continue
        run += 1
        if run == 1:
            total = v
        elif c > last:
            total += v
        elif c < last:
            total -= v
        last = c
        out[i] = total


@_parallel
def _obv_2d(close, volume, out):
    for r in prange(close.shape[0]):
        _obv_1d(close[r], volume[r], out[r])


# --------------------------------------------------------------------------- calendar


@_serial
def _hour_of_day_1d(ticks, ticks_per_day, out_sin, out_cos):
    n = ticks.shape[0]
    for i in range(n):
        t = ticks[i]
        day = t // ticks_per_day  # floor division: times before 1970 land on the right day
        angle = _TWO_PI * ((t - day * ticks_per_day) / ticks_per_day)
        out_sin[i] = math.sin(angle)
        out_cos[i] = math.cos(angle)


@_parallel
def _hour_of_day_2d(ticks, ticks_per_day, out_sin, out_cos):
    for r in prange(ticks.shape[0]):
        _hour_of_day_1d(ticks[r], ticks_per_day, out_sin[r], out_cos[r])


@_serial
def _day_of_week_1d(ticks, ticks_per_day, out_sin, out_cos):
    n = ticks.shape[0]
    for i in range(n):
        # 1970-01-01 was a Thursday; Monday is day 0
        dow = (ticks[i] // ticks_per_day + 3) % 7
        angle = _TWO_PI * (dow / 7.0)
        out_sin[i] = math.sin(angle)
        out_cos[i] = math.cos(angle)


@_parallel
def _day_of_week_2d(ticks, ticks_per_day, out_sin, out_cos):
    for r in prange(ticks.shape[0]):
        _day_of_week_1d(ticks[r], ticks_per_day, out_sin[r], out_cos[r])
