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
#: Floor for empty bins in the PSI (an empty bin would make the logarithm infinite).
PSI_EPSILON = 1e-6


@dataclass(frozen=True)
class FeatureStatistics:
    """Statistics of one feature column: of its latest computation
    (:meth:`FeatureStore.get_statistics`) or of its drift reference
    (:meth:`FeatureStore.get_drift_reference`).

    ``count`` counts non-missing values, ``missing`` the NaNs; ``std`` uses ``ddof=1``;
    percentiles use linear interpolation between order statistics (numpy's default method).
    ``reference_edges``/``reference_fractions`` are the deciles and the share of values per
    bin; those of the drift reference are the bins and expected shares of
    :meth:`FeatureStore.check_drift`.
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
    """Population stability index of new values against a column's drift reference.

    Rule of thumb: PSI < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
    ``reference_origin`` says how the reference was chosen (``"computation"``: the first
    computation of the column that had values; ``"pinned"``: :meth:`FeatureStore.
    set_drift_reference`), ``reference_computed_at`` when its statistics were computed and
    ``reference_pinned_at`` when it became the reference.
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
    reference_origin: str = ""
    reference_computed_at: str = ""
    reference_pinned_at: str = ""


def _lerp(a: float, b: float, t: float) -> float:
    # numpy's interpolation formula, so the percentiles match np.percentile to the last bit
    diff = b - a
    if t >= 0.5:
        return b - diff * (1.0 - t)
    return a + diff * t


def _decile_edges(x: np.ndarray, n: int) -> np.ndarray:
    """Bin edges for the drift check: the deciles, exact below 65536 values and from a sorted
    random sample of 16384 values beyond (only the bins must be fixed; the reference shares
    stored with them are exact counts)."""
    clean = x[~np.isnan(x)] if n < x.shape[0] else x
    if n >= 65536:
        clean = K._sample(np.ascontiguousarray(clean), 16384)
    return np.asarray(np.percentile(clean, DECILES), dtype=np.float64)


def column_statistics(values: np.ndarray) -> dict[str, Any]:
    """count, missing, mean, std (ddof=1), min, max, percentiles and the decile reference."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    buf = np.empty(x.shape[0], dtype=np.float64)
    n, missing, shift, s1, s2, lo, hi = K.column_moments(x, buf)
    nan = math.nan
    out: dict[str, Any] = {"count": int(n), "missing": int(missing)}
    if n == 0:
        out.update(mean=nan, std=nan, min=nan, max=nan)
        out["percentiles"] = {q: nan for q in PERCENTILES}
        out["reference_edges"] = ()
        out["reference_fractions"] = ()
        return out
    mean = shift + s1 / n
    m2 = max(s2 - s1 * s1 / n, 0.0) if math.isfinite(s2) else nan
    out.update(
        mean=float(mean),
        std=float(math.sqrt(m2 / (n - 1))) if n > 1 else nan,
        min=float(lo),
        max=float(hi),
    )
    positions = {}
    ranks: set[int] = set()
    for q in PERCENTILES:
        virtual = (n - 1) * (q / 100)
        below = int(math.floor(virtual))
        above = min(below + 1, n - 1)
        positions[q] = (below, above, virtual - below)
        ranks.update((below, above))
    ks = np.array(sorted(ranks), dtype=np.int64)
    values = np.empty(ks.size)
    if not K.select_ranks(buf[:n], ks, values):
        buf = x[~np.isnan(x)]
        K.multiselect(buf, ks)
        values = buf[ks]
    at = {int(k): float(v) for k, v in zip(ks, values, strict=True)}
    quant = {q: _lerp(at[b], at[a], g) for q, (b, a, g) in positions.items()}
    out["percentiles"] = quant
    edges = _decile_edges(x, n)
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
