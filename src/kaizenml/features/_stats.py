"""Column statistics in one numba pass plus a multi-rank selection, and population stability."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _kernels as K

__all__ = ["DriftReport", "FeatureStatistics", "column_statistics", "population_stability_index"]

#: Percentiles reported by :class:`FeatureStatistics`.
PERCENTILES = (5, 25, 50, 75, 95)
#: Decile edges kept as the reference distribution of the drift check.
DECILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
_ALL_Q = tuple(sorted(set(PERCENTILES) | set(DECILES)))
#: Floor for empty bins in the PSI (an empty bin would make the logarithm infinite).
PSI_EPSILON = 1e-6


@dataclass(frozen=True)
class FeatureStatistics:
    """Statistics of one feature column from its last computation.

    ``count`` counts non-missing values, ``missing`` the NaNs; ``std`` uses ``ddof=1``;
    percentiles use linear interpolation between order statistics (numpy's default method).
    ``reference_edges``/``reference_fractions`` (deciles and the share of values per bin) are
    the baseline of :meth:`FeatureStore.check_drift`.
    """

    feature: str
    version: str
    column: str
    count: int
    missing: int
    mean: float
    std: float
    min: float
    max: float
    percentiles: dict[int, float]
    reference_edges: tuple[float, ...] = ()
    reference_fractions: tuple[float, ...] = ()
    computed_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "version": self.version,
            "column": self.column,
            "count": self.count,
            "missing": self.missing,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "percentiles": dict(self.percentiles),
            "computed_at": self.computed_at,
        }


@dataclass(frozen=True)
class DriftReport:
    """Population stability index of new values against a column's stored reference.

    Rule of thumb: PSI < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
    """

    feature: str
    column: str
    psi: float
    threshold: float
    drifted: bool
    edges: tuple[float, ...]
    expected: tuple[float, ...]
    actual: tuple[float, ...]
    n_values: int = 0
    contributions: tuple[float, ...] = field(default=())


def _lerp(a: float, b: float, t: float) -> float:
    # numpy's interpolation formula, so the percentiles match np.percentile to the last bit
    diff = b - a
    if t >= 0.5:
        return b - diff * (1.0 - t)
    return a + diff * t


def column_statistics(values: np.ndarray) -> dict[str, Any]:
    """count, missing, mean, std (ddof=1), min, max, percentiles and the decile reference."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    buf = np.empty(x.shape[0], dtype=np.float64)
    n, missing, mean, m2, lo, hi = K.column_moments(x, buf)
    nan = math.nan
    out: dict[str, Any] = {"count": int(n), "missing": int(missing)}
    if n == 0:
        out.update(mean=nan, std=nan, min=nan, max=nan)
        out["percentiles"] = {q: nan for q in PERCENTILES}
        out["reference_edges"] = ()
        out["reference_fractions"] = ()
        return out
    out.update(
        mean=float(mean),
        std=float(math.sqrt(m2 / (n - 1))) if n > 1 and m2 >= 0 else (0.0 if n > 1 else nan),
        min=float(lo),
        max=float(hi),
    )
    sample = buf[:n]
    positions = {}
    ranks: set[int] = set()
    for q in _ALL_Q:
        virtual = (n - 1) * (q / 100)
        below = int(math.floor(virtual))
        above = min(below + 1, n - 1)
        positions[q] = (below, above, virtual - below)
        ranks.update((below, above))
    ks = np.array(sorted(ranks), dtype=np.int64)
    K.multiselect(sample, ks)
    quant = {q: _lerp(float(sample[b]), float(sample[a]), g) for q, (b, a, g) in positions.items()}
    out["percentiles"] = {q: quant[q] for q in PERCENTILES}
    edges = np.array([quant[q] for q in DECILES], dtype=np.float64)
    counts = K.bin_counts(x, edges, np.zeros(edges.shape[0] + 1, dtype=np.int64))
    out["reference_edges"] = tuple(float(e) for e in edges)
    out["reference_fractions"] = tuple(float(c) / n for c in counts)
    return out


def population_stability_index(
    expected: np.ndarray, actual: np.ndarray, *, epsilon: float = PSI_EPSILON
) -> tuple[float, np.ndarray]:
    """PSI = sum((a - e) * ln(a / e)) over bins, shares floored at ``epsilon``."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    contrib = (a - e) * np.log(a / e)
    return float(contrib.sum()), contrib
