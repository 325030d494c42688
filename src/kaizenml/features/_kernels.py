"""numba kernels behind the feature store's post-processing and statistics.

Called by :mod:`kaizenml.features._store` only. Every kernel works on a flat float64 array in
*segment order* (all rows of one symbol contiguous, in time order) with ``offsets`` of shape
``(n_segments + 1,)`` marking where each segment starts; a rolling window never crosses a segment
boundary. Kernels release the GIL (``nogil=True``) so the store can post-process independent
features on several threads. Outputs are allocated by the caller with ``np.empty`` and passed
in (outputs allocated inside jitted code cost more page faults). Every kernel except
:func:`fill_backward` is causal: ``out[t]`` reads only ``x[lo:t + 1]`` of its own segment.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "rolling_sum",
    "rolling_std",
    "rolling_extreme",
    "rolling_last",
    "fill_value",
    "fill_forward",
    "fill_expanding_mean",
    "fill_backward",
    "expanding_zscore",
    "expanding_minmax",
    "combine_zscore",
    "combine_minmax",
    "pad_segments",
    "unpad_segments",
    "column_moments",
    "multiselect",
    "bin_counts",
]


@njit(cache=True, nogil=True)
def _window_sum(x, start, stop):
    total = 0.0
    for i in range(start, stop):
        total += x[i]
    return total


@njit(cache=True, nogil=True)
def rolling_sum(x, offsets, window, divide, out):
    """Rolling sum (or mean when ``divide``) over ``window`` rows; NaN until the window is full
    or while it holds a NaN or an infinity (pandas ``rolling(window)``, ``min_periods=window``)."""
    nan = np.nan
    for s in range(offsets.shape[0] - 1):
        lo = offsets[s]
        hi = offsets[s + 1]
        total = 0.0
        n_bad = 0
        since_exact = 0
        for t in range(lo, hi):
            v = x[t]
            if np.isfinite(v):
                total += v
            else:
                n_bad += 1
            if t - lo >= window:
                old = x[t - window]
                if np.isfinite(old):
                    total -= old
                else:
                    n_bad -= 1
            since_exact += 1
            if t - lo + 1 < window or n_bad > 0:
                out[t] = nan
                continue
            # Re-summing the window every `window` steps keeps the running sum from drifting
            # (cancellation error grows with the series length otherwise); amortized O(1).
            if since_exact >= window:
                total = _window_sum(x, t - window + 1, t + 1)
                since_exact = 0
            out[t] = total / window if divide else total
    return out


@njit(cache=True, nogil=True)
def rolling_std(x, offsets, window, ddof, mean_out, std_out):
    """Rolling mean and standard deviation (``ddof``) with pandas' ``min_periods=window``
    semantics; a window of identical values has a standard deviation of exactly 0.

    Sums are kept relative to an anchor ``c`` near the window mean (re-anchored and re-summed
    every ``window`` steps), so the variance does not lose digits at high price levels the way
    a running E[x^2] - E[x]^2, or an online update around an absolute mean, does.
    """
    nan = np.nan
    for s in range(offsets.shape[0] - 1):
        lo = offsets[s]
        hi = offsets[s + 1]
        anchor = 0.0
        anchored = False
        s1 = 0.0
        s2 = 0.0
        n_bad = 0
        run = 0
        since_exact = 0
        for t in range(lo, hi):
            v = x[t]
            if not np.isfinite(v):
                n_bad += 1
                run = 0
            else:
                if not anchored:
                    anchor = v
                    anchored = True
                if t > lo and v == x[t - 1]:
                    run += 1
                else:
                    run = 1
                dv = v - anchor
                s1 += dv
                s2 += dv * dv
            if t - lo >= window:
                old = x[t - window]
                if not np.isfinite(old):
                    n_bad -= 1
                else:
                    do = old - anchor
                    s1 -= do
                    s2 -= do * do
            since_exact += 1
            if t - lo + 1 < window or n_bad > 0:
                mean_out[t] = nan
                std_out[t] = nan
                continue
            m2 = s2 - s1 * s1 / window
            # Re-sum every `window` steps, and at once when the subtraction cancelled more than
            # ~9 digits (a level jump leaving the window makes the anchor stale).
            if since_exact >= window or (run < window and m2 <= 1e-9 * s2):
                anchor = _window_sum(x, t - window + 1, t + 1) / window
                s1 = 0.0
                s2 = 0.0
                for i in range(t - window + 1, t + 1):
                    d = x[i] - anchor
                    s1 += d
                    s2 += d * d
                since_exact = 0
                m2 = s2 - s1 * s1 / window
            mean_out[t] = anchor + s1 / window
            if window - ddof <= 0:
                std_out[t] = nan
            elif run >= window or m2 <= 0.0:
                std_out[t] = 0.0
            else:
                std_out[t] = np.sqrt(m2 / (window - ddof))
    return mean_out, std_out


@njit(cache=True, nogil=True)
def rolling_extreme(x, offsets, window, want_max, out):
    """Rolling minimum (or maximum) with a monotonic deque: O(n) for any window; NaN while the
    window holds a NaN or an infinity (as pandas)."""
    nan = np.nan
    n_total = x.shape[0]
    dq = np.empty(max(n_total, 1), dtype=np.int64)
    for s in range(offsets.shape[0] - 1):
        lo = offsets[s]
        hi = offsets[s + 1]
        head = 0
        tail = 0  # dq[head:tail] holds indices with monotone values
        n_nan = 0
        for t in range(lo, hi):
            v = x[t]
            if not np.isfinite(v):
                n_nan += 1
            else:
                if want_max:
                    while tail > head and x[dq[tail - 1]] <= v:
                        tail -= 1
                else:
                    while tail > head and x[dq[tail - 1]] >= v:
                        tail -= 1
                dq[tail] = t
                tail += 1
            if t - lo >= window:
                if not np.isfinite(x[t - window]):
                    n_nan -= 1
            while tail > head and dq[head] <= t - window:
                head += 1
            if t - lo + 1 < window or n_nan > 0:
                out[t] = nan
            else:
                out[t] = x[dq[head]]
    return out


@njit(cache=True, nogil=True)
def rolling_last(x, offsets, window, out):
    """The most recent finite value among the last ``window`` rows (a bounded forward fill;
    NaN and infinities are gaps, as in the other rolling kernels)."""
    nan = np.nan
    for s in range(offsets.shape[0] - 1):
        lo = offsets[s]
        hi = offsets[s + 1]
        last = -1
        for t in range(lo, hi):
            if np.isfinite(x[t]):
                last = t
            if last >= 0 and last > t - window:
                out[t] = x[last]
            else:
                out[t] = nan
    return out


@njit(cache=True, nogil=True)
def fill_value(x, value, out):
    """Replace NaN and infinities by a constant."""
    for t in range(x.shape[0]):
        v = x[t]
        out[t] = v if np.isfinite(v) else value
    return out


@njit(cache=True, nogil=True)
def fill_forward(x, offsets, out):
    """Carry the last finite value of the segment forward over NaN and infinities; leading
    gaps become NaN."""
    for s in range(offsets.shape[0] - 1):
        carry = np.nan
        for t in range(offsets[s], offsets[s + 1]):
            v = x[t]
            if np.isfinite(v):
                carry = v
                out[t] = v
            else:
                out[t] = carry
    return out


@njit(cache=True, nogil=True)
def fill_expanding_mean(x, offsets, out):
    """Replace a NaN or an infinity by the mean of the segment's earlier finite values (causal
    mean fill); an infinity is a gap, so it never enters the mean."""
    for s in range(offsets.shape[0] - 1):
        total = 0.0
        n = 0
        for t in range(offsets[s], offsets[s + 1]):
            v = x[t]
            if np.isfinite(v):
                total += v
                n += 1
                out[t] = v
            elif n > 0:
                out[t] = total / n
            else:
                out[t] = np.nan
    return out


@njit(cache=True, nogil=True)
def fill_backward(x, offsets, out):
    """Carry the next finite value backward over NaN and infinities. NOT causal: reads rows
    after t."""
    for s in range(offsets.shape[0] - 1):
        carry = np.nan
        for t in range(offsets[s + 1] - 1, offsets[s] - 1, -1):
            v = x[t]
            if np.isfinite(v):
                carry = v
                out[t] = v
            else:
                out[t] = carry
    return out


@njit(cache=True, nogil=True)
def expanding_zscore(x, offsets, ddof, out):
    """(x[t] - mean) / std over the segment's finite values up to and including t; NaN at a
    NaN or an infinity, which never enters the running moments."""
    for s in range(offsets.shape[0] - 1):
        n = 0
        mean = 0.0
        m2 = 0.0
        run = 0
        first = np.nan
        for t in range(offsets[s], offsets[s + 1]):
            v = x[t]
            if not np.isfinite(v):
                out[t] = np.nan
                continue
            if n == 0:
                first = v
            if v == first:
                run += 1
            n += 1
            d = v - mean
            mean += d / n
            m2 += d * (v - mean)
            if n - ddof <= 0:
                out[t] = np.nan
            elif run == n or m2 <= 0.0:
                out[t] = 0.0
            else:
                out[t] = (v - mean) / np.sqrt(m2 / (n - ddof))
    return out


@njit(cache=True, nogil=True)
def expanding_minmax(x, offsets, out):
    """(x[t] - min) / (max - min) over the segment's finite values up to t; 0.5 on a zero
    range; NaN at a NaN or an infinity, which never enters the running extremes."""
    for s in range(offsets.shape[0] - 1):
        lo_v = np.inf
        hi_v = -np.inf
        for t in range(offsets[s], offsets[s + 1]):
            v = x[t]
            if not np.isfinite(v):
                out[t] = np.nan
                continue
            if v < lo_v:
                lo_v = v
            if v > hi_v:
                hi_v = v
            rng = hi_v - lo_v
            out[t] = 0.5 if rng == 0.0 else (v - lo_v) / rng
    return out


@njit(cache=True, nogil=True)
def combine_zscore(x, mean, std, out):
    """(x - mean) / std elementwise; 0 where std is exactly 0."""
    for t in range(x.shape[0]):
        sd = std[t]
        if sd == 0.0 and x[t] == x[t]:
            out[t] = 0.0
        else:
            out[t] = (x[t] - mean[t]) / sd
    return out


@njit(cache=True, nogil=True)
def combine_minmax(x, lo, hi, out):
    """(x - lo) / (hi - lo) elementwise; 0.5 where the range is exactly 0."""
    for t in range(x.shape[0]):
        rng = hi[t] - lo[t]
        if rng == 0.0 and x[t] == x[t]:
            out[t] = 0.5
        else:
            out[t] = (x[t] - lo[t]) / rng
    return out


@njit(cache=True, nogil=True)
def pad_segments(x, offsets, out):
    """Scatter segments into the rows of ``out`` (n_segments, max_len), NaN-padded at the end.

    Padding at the end is safe for causal functions: trailing NaNs never reach earlier rows.
    """
    width = out.shape[1]
    for s in range(offsets.shape[0] - 1):
        lo = offsets[s]
        length = offsets[s + 1] - lo
        for j in range(length):
            out[s, j] = x[lo + j]
        for j in range(length, width):
            out[s, j] = np.nan
    return out


@njit(cache=True, nogil=True)
def unpad_segments(x2d, offsets, out):
    """Inverse of :func:`pad_segments`: gather each row's leading segment into the flat ``out``."""
    for s in range(offsets.shape[0] - 1):
        lo = offsets[s]
        length = offsets[s + 1] - lo
        for j in range(length):
            out[lo + j] = x2d[s, j]
    return out


@njit(cache=True, nogil=True)
def column_moments(x, buf):
    """One pass: count, missing, sum and sum of squares about a shift, min, max; copies the
    non-NaN values to ``buf`` (for the percentile selection).

    Sums are taken about the first value (a shift, not a running mean) so the loop carries no
    division; the variance is ``(s2 - s1**2 / n) / (n - 1)``. Infinite values count as present
    and make the moments infinite/NaN, as in numpy.
    """
    n = 0
    missing = 0
    shift = 0.0
    for i in range(x.shape[0]):
        if x[i] == x[i]:
            shift = x[i]
            break
    s1 = 0.0
    s2 = 0.0
    lo = np.inf
    hi = -np.inf
    for i in range(x.shape[0]):
        v = x[i]
        if v != v:
            missing += 1
            continue
        buf[n] = v
        n += 1
        d = v - shift
        s1 += d
        s2 += d * d
        lo = min(lo, v)
        hi = max(hi, v)
    return n, missing, shift, s1, s2, lo, hi


@njit(cache=True, nogil=True)
def _insertion_sort(a, lo, hi):
    for i in range(lo + 1, hi + 1):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@njit(cache=True, nogil=True)
def multiselect(a, ks):
    """Partially order ``a`` in place so that ``a[k]`` is the k-th smallest for every k in ``ks``.

    ``ks`` is sorted ascending. One recursive quickselect serves all ranks at once (partition,
    then descend only into the sides that still hold a wanted rank), so several percentiles cost
    about as much as one selection instead of a full sort. Ranges that keep splitting badly are
    sorted outright, which bounds the worst case at O(n log n).
    """
    n = a.shape[0]
    if n == 0 or ks.shape[0] == 0:
        return a
    depth_limit = 2 * int(np.log2(n + 1)) + 8
    # explicit stack of (lo, hi, first k index, last k index, depth)
    stack = np.empty((64 + 4 * depth_limit, 5), dtype=np.int64)
    top = 0
    stack[0, 0] = 0
    stack[0, 1] = n - 1
    stack[0, 2] = 0
    stack[0, 3] = ks.shape[0] - 1
    stack[0, 4] = 0
    top = 1
    while top > 0:
        top -= 1
        lo = stack[top, 0]
        hi = stack[top, 1]
        k0 = stack[top, 2]
        k1 = stack[top, 3]
        depth = stack[top, 4]
        if k0 > k1 or lo >= hi:
            continue
        if hi - lo < 24:
            _insertion_sort(a, lo, hi)
            continue
        if depth > depth_limit:
            a[lo : hi + 1] = np.sort(a[lo : hi + 1])
            continue
        mid = (lo + hi) // 2
        p0 = a[lo]
        p1 = a[mid]
        p2 = a[hi]
        if p0 > p1:
            p0, p1 = p1, p0
        if p1 > p2:
            p1, p2 = p2, p1
        if p0 > p1:
            p0, p1 = p1, p0
        pivot = p1
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                tmp = a[i]
                a[i] = a[j]
                a[j] = tmp
                i += 1
                j -= 1
        # now a[lo..j] <= pivot, a[i..hi] >= pivot and a[j+1..i-1] == pivot
        left_end = k0 - 1
        while left_end + 1 <= k1 and ks[left_end + 1] <= j:
            left_end += 1
        right_start = k1 + 1
        while right_start - 1 >= k0 and ks[right_start - 1] >= i:
            right_start -= 1
        if left_end >= k0:
            stack[top, 0] = lo
            stack[top, 1] = j
            stack[top, 2] = k0
            stack[top, 3] = left_end
            stack[top, 4] = depth + 1
            top += 1
        if right_start <= k1:
            stack[top, 0] = i
            stack[top, 1] = hi
            stack[top, 2] = right_start
            stack[top, 3] = k1
            stack[top, 4] = depth + 1
            top += 1
    return a


@njit(cache=True, nogil=True)
def bin_counts(x, edges, counts):
    """Count non-NaN values per bin; bin b holds edges[b-1] < v <= edges[b] (open ends), i.e.
    ``searchsorted(edges, v, side="left")``. The bin is a branch-free count of smaller edges,
    which vectorizes, instead of a binary search that mispredicts."""
    n_edges = edges.shape[0]
    for i in range(x.shape[0]):
        v = x[i]
        if v != v:
            continue
        b = 0
        for j in range(n_edges):
            b += edges[j] < v
        counts[b] += 1
    return counts


@njit(cache=True, nogil=True)
def _sample(a, m):
    """``m`` values of ``a`` at pseudo-random positions (fixed seed, so results are repeatable).

    Random rather than strided positions, so a periodic series (an hour-of-day encoding, say)
    cannot alias with the stride."""
    n = a.shape[0]
    out = np.empty(m, dtype=np.float64)
    state = np.uint64(0x9E3779B97F4A7C15)
    for j in range(m):
        state ^= state << np.uint64(13)
        state ^= state >> np.uint64(7)
        state ^= state << np.uint64(17)
        out[j] = a[np.int64(state % np.uint64(n))]
    return out


@njit(cache=True, nogil=True)
def select_ranks(a, ks, out):
    """``out[i]`` = the ``ks[i]``-th smallest value of ``a`` (``ks`` sorted); ``a`` is reordered.
    Returns False (and leaves ``a`` scrambled) in the improbable case that a bracket missed;
    the caller then selects from a fresh copy with :func:`multiselect`.

    Exact, but faster than selecting in the whole array: a sorted random sample brackets each
    wanted rank between two sample values; one pass counts the values below each bracket and
    compacts the values inside the brackets to the front of ``a``; the ranks are then selected
    in that short prefix. When a bracket misses its rank (improbable: the margin is about six
    standard deviations of the sample quantile), the caller selects in the whole array.
    """
    n = a.shape[0]
    n_k = ks.shape[0]
    if n < 65536:
        multiselect(a, ks)
        for i in range(n_k):
            out[i] = a[ks[i]]
        return True
    m = 16384
    sample = np.sort(_sample(a, m))
    margin = int(3.0 * np.sqrt(m)) + 2  # 6 sigma of a sample quantile (sigma <= sqrt(m) / 2)
    lo_b = np.empty(n_k)
    hi_b = np.empty(n_k)
    for i in range(n_k):
        pos = int(ks[i] / n * m)
        j0 = pos - margin
        j1 = pos + margin
        lo_b[i] = -np.inf if j0 <= 0 else sample[j0]
        hi_b[i] = np.inf if j1 >= m - 1 else sample[j1]
    # merge overlapping brackets into disjoint intervals [lo, hi]
    lo_m = np.empty(n_k)
    hi_m = np.empty(n_k)
    n_m = 0
    for i in range(n_k):
        if n_m > 0 and lo_b[i] <= hi_m[n_m - 1]:
            hi_m[n_m - 1] = max(hi_m[n_m - 1], hi_b[i])
        else:
            lo_m[n_m] = lo_b[i]
            hi_m[n_m] = hi_b[i]
            n_m += 1
    lo_m = lo_m[:n_m].copy()
    hi_m = hi_m[:n_m].copy()
    # c = #(lo <= v) and d = #(hi < v): v lies inside interval c - 1 exactly when c > d, and
    # below interval j exactly when c <= j. Branch-free counts and compaction keep the pass
    # free of mispredictions.
    hist = np.zeros(n_m + 1, dtype=np.int64)  # values by c
    inside = np.zeros(n_m + 1, dtype=np.int64)  # values inside interval c - 1, by c
    w = 0
    for i in range(n):
        v = a[i]
        c = 0
        d = 0
        for j in range(n_m):
            c += lo_m[j] <= v
            d += hi_m[j] < v
        hist[c] += 1
        keep = c > d
        inside[c] += keep
        a[w] = v  # in-place compaction: w <= i, so nothing unread is overwritten
        w += keep
    below = np.empty(n_m, dtype=np.int64)
    acc = 0
    for j in range(n_m):
        acc += hist[j]
        below[j] = acc
    inside = inside[1:]
    # rank inside the compacted prefix = rank - values below it that lie outside every interval
    local = np.empty(n_k, dtype=np.int64)
    for i in range(n_k):
        k = ks[i]
        found = False
        for j in range(n_m):
            if below[j] <= k < below[j] + inside[j]:
                gaps_below = below[j]
                for jj in range(j):
                    gaps_below -= inside[jj]
                local[i] = k - gaps_below
                found = True
                break
        if not found:
            return False
    prefix = a[:w]
    multiselect(prefix, local)
    for i in range(n_k):
        out[i] = prefix[local[i]]
    return True
