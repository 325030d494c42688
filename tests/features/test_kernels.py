"""Post-processing kernels and statistics against pandas and numpy oracles."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from kaizenml.features import _kernels as K
from kaizenml.features._stats import column_statistics, population_stability_index


def _series(n: int, seed: int, *, nan_frac: float = 0.05, level: float = 1e4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = level + np.cumsum(rng.normal(0, 1, n))
    x[rng.random(n) < nan_frac] = np.nan
    return x


def _segments(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, n), size=4, replace=False))
    return np.concatenate([[0], cuts, [n]]).astype(np.int64)


def _by_segment(x: np.ndarray, offsets: np.ndarray, fn) -> np.ndarray:
    """The slow oracle: apply a pandas function to each segment separately."""
    return np.concatenate(
        [
            fn(pd.Series(x[offsets[i] : offsets[i + 1]])).to_numpy(dtype=float)
            for i in range(len(offsets) - 1)
        ]
    )


def _numpy_rolling_std(s: pd.Series, window: int) -> pd.Series:
    """Two-pass std of every full window (exact oracle; pandas' online update loses digits)."""
    x = s.to_numpy()
    out = np.full(x.size, np.nan)
    if x.size >= window:
        out[window - 1 :] = np.lib.stride_tricks.sliding_window_view(x, window).std(axis=1, ddof=1)
    return pd.Series(out)


@pytest.mark.parametrize(
    "agg, window",
    [
        (a, w)
        for a in ["sum", "mean", "std", "min", "max", "last"]
        for w in [1, 2, 7, 40]
        if not (a == "std" and w == 1)
    ],
)
def test_rolling_aggregations_equal_pandas(agg: str, window: int) -> None:
    x = _series(3_000, seed=window)
    off = _segments(x.size, seed=window + 1)
    out = np.empty_like(x)
    if agg in ("sum", "mean"):
        K.rolling_sum(x, off, window, agg == "mean", out)
    elif agg == "std":
        K.rolling_std(x, off, window, 1, np.empty_like(x), out)
    elif agg in ("min", "max"):
        K.rolling_extreme(x, off, window, agg == "max", out)
    else:
        K.rolling_last(x, off, window, out)
    if agg == "last":
        expected = x if window == 1 else _by_segment(x, off, lambda s: s.ffill(limit=window - 1))
    elif agg == "std":
        expected = _by_segment(x, off, lambda s: _numpy_rolling_std(s, window))
        # the pandas result agrees to its own (online) precision
        pandas = _by_segment(x, off, lambda s: s.rolling(window).std())
        np.testing.assert_allclose(out, pandas, rtol=1e-4, atol=1e-7)
    else:
        expected = _by_segment(x, off, lambda s: getattr(s.rolling(window), agg)())
    np.testing.assert_allclose(out, expected, rtol=1e-9)
    assert np.array_equal(np.isnan(out), np.isnan(expected))


def test_rolling_std_of_constant_window_is_exactly_zero() -> None:
    x = np.array([1e9 + 0.1] * 10 + [5.0, 6.0, 7.0])
    out = np.empty_like(x)
    K.rolling_std(x, np.array([0, x.size]), 3, 1, np.empty_like(x), out)
    assert np.all(out[2:10] == 0.0)
    assert out[12] == pytest.approx(1.0)


def test_rolling_sum_does_not_drift_on_long_series() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1e6, 200_000) + 1e9
    out = np.empty_like(x)
    K.rolling_sum(x, np.array([0, x.size]), 10, False, out)
    exact = np.array([np.sum(x[i - 9 : i + 1]) for i in range(x.size - 50, x.size)])
    np.testing.assert_allclose(out[-50:], exact, rtol=1e-13)


@pytest.mark.parametrize("agg", ["sum", "mean", "min", "max", "std"])
def test_infinities_are_gaps_like_pandas(agg: str) -> None:
    x = np.array([1.0, np.inf, 2.0, 3.0, -np.inf, 4.0, 5.0, 6.0])
    off = np.array([0, x.size])
    out = np.empty_like(x)
    if agg in ("sum", "mean"):
        K.rolling_sum(x, off, 2, agg == "mean", out)
    elif agg == "std":
        K.rolling_std(x, off, 2, 1, np.empty_like(x), out)
    else:
        K.rolling_extreme(x, off, 2, agg == "max", out)
    expected = getattr(pd.Series(x).rolling(2), agg)().to_numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-14)
    assert np.array_equal(np.isnan(out), np.isnan(expected))


@pytest.mark.parametrize("policy", ["fill_zero", "fill_forward", "fill_mean", "fill_backward"])
def test_fill_policies_equal_pandas(policy: str) -> None:
    x = _series(2_000, seed=5, nan_frac=0.2)
    x[:3] = np.nan
    off = _segments(x.size, seed=6)
    kernel, oracle = _POST_PROCESSING[policy]
    out = kernel(x, off, np.empty_like(x))
    expected = oracle(x, off)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert np.array_equal(np.isnan(out), np.isnan(expected))


def test_expanding_normalizations_equal_pandas() -> None:
    x = _series(2_000, seed=7, level=50.0)
    off = _segments(x.size, seed=8)
    z = K.expanding_zscore(x, off, 1, np.empty_like(x))
    expected = _by_segment(x, off, lambda s: (s - s.expanding().mean()) / s.expanding().std())
    np.testing.assert_allclose(z, expected, rtol=1e-8, atol=1e-10)
    m = K.expanding_minmax(x, off, np.empty_like(x))
    expected = _by_segment(
        x,
        off,
        lambda s: (
            ((s - s.expanding().min()) / (s.expanding().max() - s.expanding().min()))
            .where(s.expanding().max() > s.expanding().min(), 0.5)
            .where(s.notna())
        ),
    )
    np.testing.assert_allclose(m, expected, rtol=1e-12)
    assert np.array_equal(np.isnan(m), np.isnan(expected))


def test_pad_and_unpad_round_trip() -> None:
    x = np.arange(10.0)
    off = np.array([0, 3, 3, 10])
    padded = K.pad_segments(x, off, np.empty((3, 7)))
    assert np.array_equal(padded[0, :3], [0, 1, 2]) and np.isnan(padded[0, 3:]).all()
    assert np.isnan(padded[1]).all()
    np.testing.assert_array_equal(K.unpad_segments(padded, off, np.empty(10)), x)


def _with_infinities(n: int, seed: int) -> np.ndarray:
    x = _series(n, seed=seed, nan_frac=0.1, level=50.0)
    rng = np.random.default_rng(seed + 100)
    x[rng.random(n) < 0.05] = np.inf
    x[rng.random(n) < 0.05] = -np.inf
    return x


def _expanding_minmax_oracle(s: pd.Series) -> pd.Series:
    lo, hi = s.expanding().min(), s.expanding().max()
    return ((s - lo) / (hi - lo)).where(hi > lo, 0.5).where(s.notna())


def _run(call: Any) -> Any:
    """A kernel call that returns its ``out`` argument."""

    def kernel(x: np.ndarray, off: np.ndarray, out: np.ndarray) -> np.ndarray:
        call(x, off, out)
        return out

    return kernel


# post-processing kernel -> (kernel(x, offsets, out), pandas oracle(x with gaps as NaN, offsets))
_POST_PROCESSING: dict[str, tuple[Any, Any]] = {
    "zscore": (
        _run(lambda x, off, out: K.expanding_zscore(x, off, 1, out)),
        lambda g, off: _by_segment(
            g, off, lambda s: (s - s.expanding().mean()) / s.expanding().std()
        ),
    ),
    "minmax": (
        _run(K.expanding_minmax),
        lambda g, off: _by_segment(g, off, _expanding_minmax_oracle),
    ),
    "fill_zero": (
        _run(lambda x, off, out: K.fill_value(x, 0.0, out)),
        lambda g, off: np.nan_to_num(g, nan=0.0),
    ),
    "fill_forward": (_run(K.fill_forward), lambda g, off: _by_segment(g, off, lambda s: s.ffill())),
    "fill_mean": (
        _run(K.fill_expanding_mean),
        lambda g, off: _by_segment(g, off, lambda s: s.fillna(s.expanding().mean())),
    ),
    "fill_backward": (
        _run(K.fill_backward), lambda g, off: _by_segment(g, off, lambda s: s.bfill())
    ),
    "last": (
        _run(lambda x, off, out: K.rolling_last(x, off, 4, out)),
        lambda g, off: _by_segment(g, off, lambda s: s.ffill(limit=3)),
    ),
}


@pytest.mark.parametrize("kernel", list(_POST_PROCESSING))
def test_infinities_are_gaps_in_every_post_processing_kernel(kernel: str) -> None:
    # the oracle sees the infinities as NaN: a non-finite value is a gap, never data
    x = _with_infinities(1_500, seed=21)
    assert np.isinf(x).sum() > 50
    off = _segments(x.size, seed=22)
    run, oracle = _POST_PROCESSING[kernel]
    out = run(x, off, np.empty_like(x))
    expected = oracle(np.where(np.isfinite(x), x, np.nan), off)
    assert np.isfinite(expected).sum() > 1_000
    np.testing.assert_allclose(out, expected, rtol=1e-8, atol=1e-10)
    assert np.array_equal(np.isnan(out), np.isnan(expected))


def test_one_infinity_does_not_corrupt_later_expanding_values() -> None:
    x = np.array([1.0, 2.0, 3.0, np.inf, 5.0, 6.0, 7.0, 8.0])
    off = np.array([0, x.size])
    s = pd.Series(np.where(np.isfinite(x), x, np.nan))
    m = K.expanding_minmax(x, off, np.empty_like(x))
    np.testing.assert_allclose(m, _expanding_minmax_oracle(s).to_numpy(), rtol=1e-15)
    np.testing.assert_array_equal(m, [0.5, 1.0, 1.0, np.nan, 1.0, 1.0, 1.0, 1.0])
    z = K.expanding_zscore(x, off, 1, np.empty_like(x))
    expected = ((s - s.expanding().mean()) / s.expanding().std()).to_numpy()
    np.testing.assert_allclose(z, expected, rtol=1e-12)
    assert np.isfinite(z[4:]).all()
    y = np.array([1.0, np.inf, np.nan, 3.0, np.nan])
    filled = K.fill_expanding_mean(y, np.array([0, y.size]), np.empty_like(y))
    np.testing.assert_array_equal(filled, [1.0, 1.0, 1.0, 3.0, 2.0])


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 5_000])
def test_multiselect_matches_sort(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.normal(size=n)
    a[: n // 3] = np.round(a[: n // 3])  # ties
    ks = np.unique(rng.integers(0, n, size=min(n, 12))).astype(np.int64)
    b = a.copy()
    K.multiselect(b, ks)
    np.testing.assert_array_equal(b[ks], np.sort(a)[ks])
    assert sorted(b) == sorted(a)  # a permutation, nothing lost


def test_multiselect_on_sorted_and_constant_inputs() -> None:
    for a in (np.arange(10_000.0), np.arange(10_000.0)[::-1].copy(), np.ones(10_000)):
        ks = np.array([0, 500, 4_999, 5_000, 9_999], dtype=np.int64)
        b = a.copy()
        K.multiselect(b, ks)
        np.testing.assert_array_equal(b[ks], np.sort(a)[ks])


@pytest.mark.parametrize("n", [1, 2, 7, 1_000, 20_001])
@pytest.mark.parametrize("missing", ["none", "some", "all_but_one"])
def test_statistics_equal_numpy(n: int, missing: str) -> None:
    x = _series(n, seed=n, nan_frac=0.1 if missing == "some" else 0.0, level=3.0)
    if missing == "all_but_one":
        x[np.arange(n) != n // 2] = np.nan
    st = column_statistics(x)
    clean = x[~np.isnan(x)]
    assert clean.size >= 1  # every case has values to check against numpy
    assert st["count"] == clean.size and st["missing"] == n - clean.size
    assert st["mean"] == pytest.approx(clean.mean(), rel=1e-12)
    if clean.size > 1:
        assert st["std"] == pytest.approx(clean.std(ddof=1), rel=1e-10)
    else:
        assert np.isnan(st["std"])  # ddof=1 of one value is undefined
    assert st["min"] == clean.min() and st["max"] == clean.max()
    assert set(st["percentiles"]) == {5, 25, 50, 75, 95}
    for q in (5, 25, 50, 75, 95):
        assert st["percentiles"][q] == np.percentile(clean, q), q


def test_statistics_of_all_missing_column() -> None:
    st = column_statistics(np.full(5, np.nan))
    assert st["count"] == 0 and st["missing"] == 5 and np.isnan(st["mean"])
    assert set(st["percentiles"]) == {5, 25, 50, 75, 95}
    assert all(np.isnan(v) for v in st["percentiles"].values())
    assert st["reference_edges"] == () and st["reference_fractions"] == ()


def test_reference_fractions_and_bins() -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=10_000)
    st = column_statistics(x)
    edges = np.array(st["reference_edges"])
    np.testing.assert_allclose(edges, np.percentile(x, np.arange(10, 100, 10)), rtol=1e-12)
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=10)
    np.testing.assert_allclose(st["reference_fractions"], counts / x.size)


def test_psi_equals_hand_computation() -> None:
    expected = np.array([0.1, 0.2, 0.3, 0.4])
    actual = np.array([0.25, 0.25, 0.25, 0.25])
    hand = sum((a - e) * np.log(a / e) for a, e in zip(actual, expected, strict=True))
    psi, contrib = population_stability_index(expected, actual)
    assert psi == pytest.approx(hand, rel=1e-12)
    assert contrib.sum() == pytest.approx(psi)
    assert population_stability_index(expected, expected)[0] == 0.0
    # an empty bin is floored, not infinite
    assert np.isfinite(population_stability_index(np.array([0.5, 0.5]), np.array([1.0, 0.0]))[0])


@pytest.mark.parametrize("kind", ["normal", "ties", "periodic", "sorted"])
def test_select_ranks_large_inputs_equal_sort(kind: str) -> None:
    n = 150_001
    rng = np.random.default_rng(9)
    if kind == "normal":
        a = rng.standard_cauchy(n)
    elif kind == "ties":
        a = np.where(rng.random(n) < 0.6, 0.0, rng.normal(size=n))
    elif kind == "periodic":
        a = np.sin(2 * np.pi * np.arange(n) / 24)
    else:
        a = np.arange(n, dtype=float)
    ks = np.array([0, 7_500, 7_501, 37_500, 75_000, 112_500, 142_500, 142_501, n - 1])
    out = np.empty(ks.size)
    assert K.select_ranks(a.copy(), ks, out)  # the brackets hold every rank
    np.testing.assert_array_equal(out, np.sort(a)[ks])


def test_statistics_of_a_large_column_equal_numpy() -> None:
    x = _series(300_000, seed=1, nan_frac=0.01, level=100.0)
    st = column_statistics(x)
    clean = x[~np.isnan(x)]
    assert set(st["percentiles"]) == {5, 25, 50, 75, 95}
    for q in (5, 25, 50, 75, 95):
        assert st["percentiles"][q] == np.percentile(clean, q), q
    assert st["std"] == pytest.approx(clean.std(ddof=1), rel=1e-10)
    counts = np.bincount(np.searchsorted(np.array(st["reference_edges"]), clean), minlength=10)
    np.testing.assert_allclose(st["reference_fractions"], counts / clean.size)
