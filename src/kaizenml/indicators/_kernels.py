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

Where TA-Lib has the indicator the kernels use its seeds and alignment (EMA seeded with the
mean of the first window, Wilder averages seeded with the mean of the first ``n`` changes, MACD
averages started together on the slow one's first bar, population standard deviations). The
recurrences are written with the shortest loop-carried dependency (``p*(1-k) + x*k`` for an
EMA, one addition per bar on a running sum) and without data-dependent branches, so results
agree with TA-Lib to about 1e-15 relative rather than bit for bit. Rolling variances use sums
of deviations from an anchor that moves to a recent value every ``max(window, 128)`` bars (the
sums are then rebuilt), which keeps full precision at high price levels where
``E[x^2] - E[x]^2`` cancels catastrophically.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.extending import intrinsic

__all__: list[str] = []

_NAN = np.nan
_TWO_PI = 2.0 * math.pi
# A window variance below this fraction of the mean squared deviation from the anchor is
# rounding noise of the running sums (the anchor stays within the last window, so a genuine
# variance is never that small relative to it); it is reported as exactly zero.
_VAR_NOISE = 8.0 * 2.220446049250313e-16
# Windows up to this length are scanned whole for their extremes: a branch-free scan beats
# tracking the extreme's index, whose branches the predictor cannot learn on prices.
_SCAN_MAX = 32

_log = logging.getLogger("kaizenml.indicators")
_warned_no_cache = False


def _jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``njit`` with these options; without an on-disk cache when no cache directory is usable.

    numba refuses ``cache=True`` outright when neither ``NUMBA_CACHE_DIR``, the package's
    ``__pycache__`` nor the user cache directory is writable (a read-only container, say).
    The indicators then still work, compiled in memory by each process.
    """

    def decorate(fn: Callable[..., Any]) -> Any:
        global _warned_no_cache
        try:
            return njit(**options)(fn)
        except RuntimeError as exc:
            if not options.get("cache") or "cannot cache" not in str(exc):
                raise
            if not _warned_no_cache:
                _warned_no_cache = True
                _log.warning(
                    "no writable numba cache directory (%s); indicators are compiled in "
                    "memory in every process. Set NUMBA_CACHE_DIR to a writable directory "
                    "to keep them between runs.",
                    exc,
                )
            return njit(**{**options, "cache": False})(fn)

    return decorate


# error_model="numpy": division by zero gives inf/NaN as in C (and TA-Lib) instead of raising,
# and the divisions need no zero checks in the hot loops
_serial = _jit(cache=True, nogil=True, error_model="numpy")
# The batch kernels are parallel; whether they may be cached is decided in _config.
from ._config import PARALLEL_CACHE as _PARALLEL_CACHE  # noqa: E402

_parallel = _jit(parallel=True, cache=_PARALLEL_CACHE, nogil=True, error_model="numpy")


@intrinsic
def _muladd(typingctx, a, b, c):
    """``a * b + c``, fused into one instruction where the CPU has FMA (LLVM's fmuladd).

    Used on the loop-carried chain of the exponential and Wilder averages, where it shortens
    the dependency from a multiply plus an add to a single fused operation. This is not
    fastmath: nothing is reassociated, and the fused form rounds once instead of twice.
    """
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        double = ir.DoubleType()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(double, [double, double, double]), "llvm.fmuladd.f64"
        )
        return builder.call(fn, args)

    return sig, codegen


@_serial
def _ok(v):
    return math.isfinite(v)


# --------------------------------------------------------------------------- moving averages


@_serial
def _sma_1d(x, window, out):
    n = x.shape[0]
    run = 0
    part = 0.0  # sum of the run's last window - 1 values
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            part = 0.0
            out[i] = _NAN
            continue
        run += 1
        if run < window:
            part += v
            out[i] = _NAN
        else:
            out[i] = (part + v) / window
            # one addition on the loop-carried chain instead of two
            part += v - x[i - window + 1]


@_parallel
def _sma_2d(x, window, out):
    for r in prange(x.shape[0]):
        _sma_1d(x[r], window, out[r])


@_serial
def _ema_1d(x, window, out):
    n = x.shape[0]
    k = 2.0 / (window + 1)
    keep = 1.0 - k
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
            # prev*(1-k) + v*k leaves one fused multiply-add on the chain; TA-Lib's
            # (v - prev)*k + prev has a subtraction more
            prev = _muladd(prev, keep, v * k)
            out[i] = prev


@_parallel
def _ema_2d(x, window, out):
    for r in prange(x.shape[0]):
        _ema_1d(x[r], window, out[r])


@_serial
def _rsi_1d(x, window, out):
    n = x.shape[0]
    inv = 1.0 / window
    keep = (window - 1.0) / window
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
        # branch-free split: up and down moves are a coin flip for the predictor
        up = change if change > 0.0 else 0.0
        down = -change if change < 0.0 else 0.0
        if run <= window + 1:
            gain += up
            loss += down
            if run <= window:
                out[i] = _NAN
                continue
            gain *= inv
            loss *= inv
        else:
            gain = _muladd(gain, keep, up * inv)
            loss = _muladd(loss, keep, down * inv)
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
    keep_fast = 1.0 - k_fast
    keep_slow = 1.0 - k_slow
    keep_signal = 1.0 - k_signal
    first = slow + signal - 1  # run at which all three outputs exist
    run = 0
    ema_fast = 0.0
    ema_slow = 0.0
    sig = 0.0
    i = 0
    while i < n:
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
            i += 1
            continue
        run += 1
        if run < slow:
            out_macd[i] = _NAN
            out_signal[i] = _NAN
            out_hist[i] = _NAN
            i += 1
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
            ema_slow = _muladd(ema_slow, keep_slow, v * k_slow)
            ema_fast = _muladd(ema_fast, keep_fast, v * k_fast)
        m = ema_fast - ema_slow
        out_macd[i] = m  # scratch until the signal line is seeded
        if run < first:
            out_signal[i] = _NAN
            out_hist[i] = _NAN
            i += 1
            continue
        total = 0.0
        for j in range(i - signal + 1, i + 1):
            total += out_macd[j]
        sig = total / signal
        for j in range(i - signal + 1, i):
            out_macd[j] = _NAN
        out_signal[i] = sig
        out_hist[i] = m - sig
        i += 1
        # steady state: a tight loop until the next gap
        while i < n:
            v = x[i]
            if not _ok(v):
                break
            ema_slow = _muladd(ema_slow, keep_slow, v * k_slow)
            ema_fast = _muladd(ema_fast, keep_fast, v * k_fast)
            m = ema_fast - ema_slow
            sig = _muladd(sig, keep_signal, m * k_signal)
            out_macd[i] = m
            out_signal[i] = sig
            out_hist[i] = m - sig
            i += 1
    if run < first:
        for j in range(n - run, n):
            out_macd[j] = _NAN


@_parallel
def _macd_2d(x, fast, slow, signal, out_macd, out_signal, out_hist):
    for r in prange(x.shape[0]):
        _macd_1d(x[r], fast, slow, signal, out_macd[r], out_signal[r], out_hist[r])


# --------------------------------------------------------------------------- dispersion
#
# The rolling moments are kept as sums of d = x - anchor. The anchor is the run's first value
# and moves to the newest value every `_reanchor_period(window)` bars, when the sums are
# rebuilt from the window itself; this bounds both the cancellation (the anchor is never far
# from the window) and the rounding that running sums accumulate.


@_serial
def _reanchor_period(window):
    return window if window > 128 else 128


@_serial
def _moments(x, i, window, anchor):
    s1 = 0.0
    s2 = 0.0
    for j in range(i - window + 1, i + 1):
        d = x[j] - anchor
        s1 += d
        s2 += d * d
    return s1, s2


@_serial
def _slide_sums(x, i, v, run, window, anchor, s1, s2):
    """Bar ``i`` (value ``v``, ``run`` valid bars so far) enters the window's deviation sums and,
    once the window is full, bar ``i - window`` leaves them. Returns ``(v - anchor, s1, s2)``."""
    d = v - anchor
    if run > window:
        t = x[i - window] - anchor
        return d, s1 + (d - t), s2 + (d * d - t * t)
    return d, s1 + d, s2 + d * d


@_serial
def _variance(s1, s2, inv, correction):
    """Window variance from the deviation sums; rounding noise is reported as exactly 0."""
    mean = s1 * inv
    msq = s2 * inv
    var = msq - mean * mean
    if var <= _VAR_NOISE * msq:
        return 0.0
    return var * correction


@_serial
def _spread_1d(x, window, ddof, standardize, out):
    """Rolling std (``standardize`` false) or z-score of the last value (true) into ``out``."""
    n = x.shape[0]
    inv = 1.0 / window
    correction = window / (window - ddof)
    period = _reanchor_period(window)
    run = 0
    anchor = 0.0
    s1 = 0.0
    s2 = 0.0
    countdown = 0
    flat = 0  # bars in a row equal to the one before: a flat window has exactly zero spread
    last = 0.0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            out[i] = _NAN
            continue
        run += 1
        flat = flat + 1 if v == last else 0
        last = v
        if run == 1:
            flat = 0
            anchor = v
            s1 = 0.0
            s2 = 0.0
            countdown = period
        d, s1, s2 = _slide_sums(x, i, v, run, window, anchor, s1, s2)
        if run >= window:
            var = 0.0 if flat >= window - 1 else _variance(s1, s2, inv, correction)
            if standardize:
                # a window with no spread: the value sits exactly on its mean
                out[i] = (d - s1 * inv) / math.sqrt(var) if var > 0.0 else 0.0
            else:
                out[i] = math.sqrt(var)
        else:
            out[i] = _NAN
        countdown -= 1
        if countdown == 0:  # period >= window, so the window is full here
            countdown = period
            anchor = v
            s1, s2 = _moments(x, i, window, anchor)


@_serial
def _std_1d(x, window, ddof, out):
    _spread_1d(x, window, ddof, False, out)


@_parallel
def _std_2d(x, window, ddof, out):
    for r in prange(x.shape[0]):
        _std_1d(x[r], window, ddof, out[r])


@_serial
def _zscore_1d(x, window, ddof, out):
    _spread_1d(x, window, ddof, True, out)


@_parallel
def _zscore_2d(x, window, ddof, out):
    for r in prange(x.shape[0]):
        _zscore_1d(x[r], window, ddof, out[r])


@_serial
def _bollinger_1d(x, window, nbdev, middle, upper, lower, position, bandwidth):
    n = x.shape[0]
    # empty middle/upper/lower/bandwidth: only the position is wanted (the feature store)
    full = middle.shape[0] > 0
    inv = 1.0 / window
    period = _reanchor_period(window)
    run = 0
    part = 0.0
    anchor = 0.0
    s1 = 0.0
    s2 = 0.0
    countdown = 0
    flat = 0  # bars in a row equal to the one before: a flat window has exactly zero spread
    last = 0.0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            part = 0.0
            position[i] = _NAN
            if full:
                middle[i] = _NAN
                upper[i] = _NAN
                lower[i] = _NAN
                bandwidth[i] = _NAN
            continue
        run += 1
        flat = flat + 1 if v == last else 0
        last = v
        if run == 1:
            flat = 0
            anchor = v
            s1 = 0.0
            s2 = 0.0
            countdown = period
        d, s1, s2 = _slide_sums(x, i, v, run, window, anchor, s1, s2)
        if run >= window:
            # the middle band is a running-sum SMA; the width comes from the deviations
            mid = (part + v) * inv
            part += v - x[i - window + 1]
            var = 0.0 if flat >= window - 1 else _variance(s1, s2, inv, 1.0)
            width = nbdev * math.sqrt(var)
            hi = mid + width
            lo = mid - width
            # a flat window has no band: the price sits on the middle line
            position[i] = (v - lo) / (hi - lo) if hi != lo else 0.5
            if full:
                middle[i] = mid
                upper[i] = hi
                lower[i] = lo
                bandwidth[i] = (hi - lo) / mid
        else:
            part += v
            position[i] = _NAN
            if full:
                middle[i] = _NAN
                upper[i] = _NAN
                lower[i] = _NAN
                bandwidth[i] = _NAN
        countdown -= 1
        if countdown == 0:
            countdown = period
            anchor = v
            s1, s2 = _moments(x, i, window, anchor)


@_parallel
def _bollinger_2d(x, window, nbdev, middle, upper, lower, position, bandwidth):
    for r in prange(x.shape[0]):
        _bollinger_1d(x[r], window, nbdev, middle[r], upper[r], lower[r], position[r], bandwidth[r])


@_serial
def _volatility_1d(x, window, ddof, scale, ring, out):
    """Rolling std of log returns; ``ring`` (length ``window``) holds the returns in the window.

    On entry ``out[i]`` holds ``log(x[i] / x[i - 1])`` for ``i >= 1`` (see
    :func:`_log_returns`); the kernel overwrites it in place, reading each value before writing
    its result. Log returns are centred near zero, so their sums need no anchor; they are still
    rebuilt from the ring periodically so rounding from a large jump leaving the window does not
    linger.
    """
    n = x.shape[0]
    inv = 1.0 / window
    correction = window / (window - ddof)
    period = _reanchor_period(window)
    run = 0
    s1 = 0.0
    s2 = 0.0
    pos = 0
    countdown = 0
    flat = 0  # returns in a row equal to the one before
    last_r = 0.0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            out[i] = _NAN
            continue
        run += 1
        if run == 1:
            s1 = 0.0
            s2 = 0.0
            pos = 0
            countdown = period
            out[i] = _NAN
            continue
        # run >= 2: the previous bar was valid, so out[i] is the log return from it
        r = out[i]
        if not _ok(r):
            # a zero or negative price has no log return: restart on this bar like a gap
            run = 1
            s1 = 0.0
            s2 = 0.0
            pos = 0
            countdown = period
            out[i] = _NAN
            continue
        flat = flat + 1 if (r == last_r and run > 2) else 0
        last_r = r
        if run > window + 1:
            t = ring[pos]
            s1 += r - t
            s2 += r * r - t * t
        else:
            s1 += r
            s2 += r * r
        ring[pos] = r
        pos += 1
        if pos == window:
            pos = 0
        if run > window:
            var = 0.0 if flat >= window - 1 else _variance(s1, s2, inv, correction)
            out[i] = math.sqrt(var) * scale
        else:
            out[i] = _NAN
        countdown -= 1
        if countdown == 0:
            countdown = period
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
def _lag_value(v, p, kind):
    if kind == 0:
        return (v - p) / p
    if kind == 1:
        return math.log(v / p)
    if kind == 2:
        return v - p
    return (v / p - 1.0) * 100.0


@_serial
def _lag_1d(x, horizon, kind, out):
    """``kind``: 0 simple return, 1 log return, 2 momentum (difference), 3 rate of change in %."""
    n = x.shape[0]
    for i in range(min(horizon, n)):
        out[i] = _NAN
    if n <= horizon:
        return
    # an elementwise pass over two shifted views (it vectorizes), counting non-finite results;
    # with the inputs no result reads (checked below), a clean count proves there is no gap
    now = x[horizon:]
    then = x[: n - horizon]
    dest = out[horizon:]
    m = n - horizon
    odd = 0
    if kind == 0:
        for j in range(m):
            r = (now[j] - then[j]) / then[j]
            odd += (r - r) != 0.0
            dest[j] = r
    elif kind == 1:
        for j in range(m):
            r = math.log(now[j] / then[j])
            odd += (r - r) != 0.0
            dest[j] = r
    elif kind == 2:
        for j in range(m):
            r = now[j] - then[j]
            odd += (r - r) != 0.0
            dest[j] = r
    else:
        for j in range(m):
            r = (now[j] / then[j] - 1.0) * 100.0
            odd += (r - r) != 0.0
            dest[j] = r
    # the inputs between the two views (series shorter than twice the horizon) enter no result
    for j in range(m, horizon):
        odd += not _ok(x[j])
    if odd == 0:
        return
    # a non-finite result or input: either a gap (redo with the gap policy) or a finite
    # division by zero (the pass below reproduces it)
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
        else:
            out[i] = _lag_value(v, x[i - horizon], kind)


@_parallel
def _lag_2d(x, horizon, kind, out):
    for r in prange(x.shape[0]):
        _lag_1d(x[r], horizon, kind, out[r])


@_serial
def _volume_ratio_1d(x, window, out):
    n = x.shape[0]
    run = 0
    part = 0.0
    for i in range(n):
        v = x[i]
        if not _ok(v):
            run = 0
            part = 0.0
            out[i] = _NAN
            continue
        run += 1
        if run < window:
            part += v
            out[i] = _NAN
        else:
            # v / mean with one division instead of two (v / (sum / window)); the divisions,
            # not the running sum, bound this loop
            out[i] = v * window / (part + v)
            part += v - x[i - window + 1]


@_parallel
def _volume_ratio_2d(x, window, out):
    for r in prange(x.shape[0]):
        _volume_ratio_1d(x[r], window, out[r])


# --------------------------------------------------------------------------- high/low/close


@_serial
def _atr_1d(high, low, close, window, out):
    n = close.shape[0]
    if n == 0:
        return
    # One pass without per-bar checks: `(h + lo + c) * 0.0` is 0 for finite inputs and NaN
    # otherwise (or when the sum overflows, which the redo below handles just the same),
    # so any gap turns the average NaN for good and is caught once at the end, where the
    # series is redone with the gap policy. This keeps the loop at the fused multiply-add
    # chain's latency.
    inv = 1.0 / window
    keep = (window - 1.0) / window
    out[0] = _NAN
    prev_close = close[0]
    poison = prev_close - prev_close
    total = 0.0
    for i in range(1, min(window + 1, n)):
        h = high[i]
        lo = low[i]
        c = close[i]
        poison += (h + lo + c) * 0.0
        total += max(h - lo, abs(prev_close - h), abs(prev_close - lo))
        prev_close = c
        out[i] = _NAN
    atr = total / window + poison
    if n > window:
        out[window] = atr
    if n > window + 1:
        # views from 0 let LLVM drop the negative-index handling from the loop
        highs = high[window + 1 :]
        lows = low[window + 1 :]
        closes = close[window + 1 :]
        dest = out[window + 1 :]
        for j in range(n - window - 1):
            h = highs[j]
            lo = lows[j]
            c = closes[j]
            tr = max(h - lo, abs(prev_close - h), abs(prev_close - lo))
            prev_close = c
            atr = _muladd(atr, keep, (tr + (h + lo + c) * 0.0) * inv)
            dest[j] = atr
    if not _ok(atr):
        _atr_gapped(high, low, close, window, out)


@_serial
def _atr_gapped(high, low, close, window, out):
    """ATR of a series with gaps: one sequential pass that restarts after each gap."""
    n = close.shape[0]
    inv = 1.0 / window
    keep = (window - 1.0) / window
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
        tr = max(h - lo, abs(prev_close - h), abs(prev_close - lo))
        prev_close = c
        if run <= window + 1:
            total += tr
            if run <= window:
                out[i] = _NAN
                continue
            atr = total / window
        else:
            atr = _muladd(atr, keep, tr * inv)
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
    kpos = 0
    dpos = 0
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
            kpos = 0
            dpos = 0
            total_k = 0.0
            total_d = 0.0
        start = i - fastk + 1
        if fastk <= _SCAN_MAX:
            pass  # short windows are scanned whole below, without branches
        # long windows: keep the index of the extremes; rescan only when one drops out
        elif hi_idx < start:
            hi_idx = start
            for j in range(start + 1, i + 1):
                if high[j] >= high[hi_idx]:
                    hi_idx = j
        elif h >= high[hi_idx]:
            hi_idx = i
        if fastk <= _SCAN_MAX:
            pass
        elif lo_idx < start:
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
        if fastk <= _SCAN_MAX:
            highest = h
            lowest = lo
            # views from 0 spare the loop numba's negative-index handling
            window_high = high[start:i]
            window_low = low[start:i]
            for j in range(fastk - 1):
                highest = max(highest, window_high[j])
                lowest = min(lowest, window_low[j])
        else:
            highest = high[hi_idx]
            lowest = low[lo_idx]
        diff = (highest - lowest) / 100.0
        fk = (c - lowest) / diff if diff != 0.0 else 0.0
        ring_k[kpos] = fk
        total_k += fk
        # the slot after the newest holds the oldest value of the window
        kpos += 1
        if kpos == slowk:
            kpos = 0
        if run < first_k:
            out_k[i] = _NAN
            out_d[i] = _NAN
            continue
        sk = total_k / slowk
        total_k -= ring_k[kpos]
        ring_d[dpos] = sk
        total_d += sk
        dpos += 1
        if dpos == slowd:
            dpos = 0
        if run < first:
            out_k[i] = _NAN
            out_d[i] = _NAN
            continue
        out_k[i] = sk
        out_d[i] = total_d / slowd
        total_d -= ring_d[dpos]


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
        else:
            # signed without a branch: the direction of a close is unpredictable
            total += v * ((1.0 if c > last else 0.0) - (1.0 if c < last else 0.0))
        last = c
        out[i] = total


@_parallel
def _obv_2d(close, volume, out):
    for r in prange(close.shape[0]):
        _obv_1d(close[r], volume[r], out[r])


# --------------------------------------------------------------------------- calendar


# The encodings are periodic, so sin and cos come from small tables instead of being evaluated
# per row (two libm calls per row dominated these kernels): the weekday takes one of 7 values,
# the time of day is looked up at the start of its minute (1440 slots) and rotated by the
# remaining fraction of a minute. Table entries are computed with exactly the expression of
# the definition, so rows on a whole minute get bit-identical values; the rotation by an angle
# below 2 pi / 1440 is accurate to a few 1e-16.


@_serial
def _split(t, period, inv_period):
    """``(t // period, t % period)`` for int64 ``t`` (floor semantics) without an integer
    division: a floating-point estimate of the quotient, corrected to the exact value."""
    q = np.int64(math.floor(t * inv_period))
    rest = t - q * period
    while rest < 0:
        q -= 1
        rest += period
    while rest >= period:
        q += 1
        rest -= period
    return q, rest


@_serial
def _calendar_slots(ticks_per_day):
    """Number of table slots per day: one per minute when a minute is a whole number of ticks,
    else one per tick (coarse units such as hours or days)."""
    return 1440 if ticks_per_day % 1440 == 0 else ticks_per_day


@_serial
def _hour_table(ticks_per_day, tab_sin, tab_cos):
    slots = tab_sin.shape[0]
    step = ticks_per_day // slots
    for j in range(slots):
        angle = _TWO_PI * ((j * step) / ticks_per_day)
        tab_sin[j] = math.sin(angle)
        tab_cos[j] = math.cos(angle)


@_serial
def _hour_of_day_1d(ticks, ticks_per_day, tab_sin, tab_cos, out_sin, out_cos):
    n = ticks.shape[0]
    slots = tab_sin.shape[0]
    step = ticks_per_day // slots
    inv_day = 1.0 / ticks_per_day
    inv_step = 1.0 / step
    # angle per tick; a remainder below one slot gives |b| < 2 pi / 1440 ~ 4.4e-3
    scale = _TWO_PI / ticks_per_day
    # rest * inv_step is within 3.2e-13 of the exact quotient (rest < 2^47 is exact, the
    # quotient is below 1440), and a remainder of at least one tick lifts it at least
    # 1 / step >= 1.6e-11 above the slot: adding 2e-12 lands on the right slot without a
    # correction on whole minutes (the corrections below stay as a guard)
    nudge = 2e-12
    day_start = np.int64(0)
    day_end = np.int64(0)  # empty range: the first row computes its day
    for i in range(n):
        t = ticks[i]
        if t < day_start or t >= day_end:
            # rows are usually in time order: the day is recomputed only when it changes
            q, rest = _split(t, ticks_per_day, inv_day)
            day_start = t - rest
            day_end = day_start + ticks_per_day
        rest = t - day_start
        slot = np.int64(rest * inv_step + nudge)
        r = rest - slot * step
        while r < 0:
            slot -= 1
            r += step
        while r >= step:
            slot += 1
            r -= step
        s0 = tab_sin[slot]
        c0 = tab_cos[slot]
        if r == 0:
            out_sin[i] = s0
            out_cos[i] = c0
            continue
        # rotate by the rest of the minute, b = 2 pi r / ticks_per_day; Taylor series of sin
        # and cos, whose first omitted terms are below 1e-20 for |b| < 4.4e-3
        b = r * scale
        b2 = b * b
        sb = b * (1.0 - b2 * (1.0 / 6.0 - b2 * (1.0 / 120.0)))
        cb = 1.0 - b2 * (0.5 - b2 * (1.0 / 24.0 - b2 * (1.0 / 720.0)))
        out_sin[i] = s0 * cb + c0 * sb
        out_cos[i] = c0 * cb - s0 * sb


@_parallel
def _hour_of_day_2d(ticks, ticks_per_day, tab_sin, tab_cos, out_sin, out_cos):
    for r in prange(ticks.shape[0]):
        _hour_of_day_1d(ticks[r], ticks_per_day, tab_sin, tab_cos, out_sin[r], out_cos[r])


@_serial
def _day_table(tab_sin, tab_cos):
    for dow in range(7):
        angle = _TWO_PI * (dow / 7.0)
        tab_sin[dow] = math.sin(angle)
        tab_cos[dow] = math.cos(angle)


@_serial
def _day_of_week_1d(ticks, ticks_per_day, tab_sin, tab_cos, out_sin, out_cos):
    n = ticks.shape[0]
    inv_day = 1.0 / ticks_per_day
    day_start = np.int64(0)
    day_end = np.int64(0)  # empty range: the first row computes its day
    s = 0.0
    c = 0.0
    for i in range(n):
        t = ticks[i]
        if t < day_start or t >= day_end:
            # rows are usually in time order: the weekday is recomputed only when the day changes
            day, rest = _split(t, ticks_per_day, inv_day)
            day_start = t - rest
            day_end = day_start + ticks_per_day
            # 1970-01-01 was a Thursday; Monday is day 0
            dow = (day + 3) % 7
            s = tab_sin[dow]
            c = tab_cos[dow]
        out_sin[i] = s
        out_cos[i] = c


@_parallel
def _day_of_week_2d(ticks, ticks_per_day, tab_sin, tab_cos, out_sin, out_cos):
    for r in prange(ticks.shape[0]):
        _day_of_week_1d(ticks[r], ticks_per_day, tab_sin, tab_cos, out_sin[r], out_cos[r])
