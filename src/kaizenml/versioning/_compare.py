"""Metric directions, per-metric diffs and the upgrade/keep/rollback recommendation.

Pure functions on metric dicts; the manager feeds them stored versions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import KaizenTypeError, ValidationError

__all__ = [
    "DEFAULT_HIGHER_IS_BETTER",
    "DEFAULT_LOWER_IS_BETTER",
    "MetricDiff",
    "Recommendation",
    "VersionComparison",
    "metric_direction",
]

DEFAULT_HIGHER_IS_BETTER = (
    "accuracy", "win_rate", "sharpe", "sortino", "calmar", "return", "returns", "auc",
    "roc_auc", "f1", "precision", "recall", "profit", "profit_factor", "r2", "hit_rate",
)
DEFAULT_LOWER_IS_BETTER = (
    "loss", "drawdown", "max_drawdown", "mse", "mae", "rmse", "error", "volatility",
    "turnover", "latency", "logloss", "log_loss",
)
_DIRECTION_WORDS = {"higher": "higher", "maximize": "higher", "max": "higher",
                    "lower": "lower", "minimize": "lower", "min": "lower"}

#: Relative change at which a metric's evidence saturates in the recommendation (5 %).
SIGNIFICANT_CHANGE = 0.05


def normalize_direction(value: Any, param: str) -> str:
    """Map ``"higher"/"maximize"/"lower"/"minimize"`` to ``"higher"`` or ``"lower"``."""
    if isinstance(value, str) and value.lower() in _DIRECTION_WORDS:
        return _DIRECTION_WORDS[value.lower()]
    raise ValidationError(
        f"{param}={value!r} is not a metric direction; use 'higher' (or 'maximize') or "
        "'lower' (or 'minimize')"
    )


def check_directions(directions: Mapping[str, str] | None) -> dict[str, str]:
    """Validate a ``metric_directions=`` mapping of metric name -> direction."""
    if directions is None:
        return {}
    if not isinstance(directions, Mapping):
        raise KaizenTypeError(
            f"metric_directions must be a mapping of metric name to 'higher'/'lower', got "
            f"{type(directions).__name__}"
        )
    return {
        str(k): normalize_direction(v, f"metric_directions[{k!r}]") for k, v in directions.items()
    }


def metric_direction(name: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """The direction of a metric: ``"higher"``, ``"lower"`` or ``None`` when unknown.

    An exact entry in ``overrides`` wins. Otherwise the name is matched, case-insensitively,
    against the built-in lists: exactly, or as a whole ``_``-separated part of it, so
    ``val_loss``, ``max_drawdown_pct`` and ``test_accuracy`` are recognised; the longest
    matching built-in name decides (``log_loss`` before ``loss``).

    Examples
    --------
    >>> metric_direction("val_loss"), metric_direction("sharpe"), metric_direction("foo")
    ('lower', 'higher', None)
    >>> metric_direction("foo", {"foo": "maximize"})
    'higher'
    """
    if overrides and name in overrides:
        return normalize_direction(overrides[name], f"metric_directions[{name!r}]")
    lowered = name.lower()
    padded = f"_{lowered.replace('-', '_').replace('.', '_')}_"
    best: tuple[int, str] | None = None
    for words, direction in (
        (DEFAULT_HIGHER_IS_BETTER, "higher"),
        (DEFAULT_LOWER_IS_BETTER, "lower"),
    ):
        for word in words:
            if f"_{word}_" in padded and (best is None or len(word) > best[0]):
                best = (len(word), direction)
    return best[1] if best else None


@dataclass(frozen=True)
class MetricDiff:
    """How one metric changes from the first version to the second.

    Attributes
    ----------
    name:
        The metric name.
    value_a, value_b:
        The metric in the first and the second version (``None`` when absent).
    absolute_change:
        ``value_b - value_a``.
    relative_change:
        ``(value_b - value_a) / |value_a|``; ``None`` when ``value_a`` is 0 (or a value is absent).
    direction:
        ``"higher"``, ``"lower"`` or ``None`` (unknown direction).
    verdict:
        ``"better"``, ``"worse"`` or ``"unchanged"`` for the second version, ``"unknown"`` when
        the direction is unknown, ``"missing"`` when one version lacks the metric.
    """

    name: str
    value_a: float | None
    value_b: float | None
    absolute_change: float | None
    relative_change: float | None
    direction: str | None
    verdict: str

    @property
    def improvement(self) -> float | None:
        """Signed relative improvement (positive = better), None when not comparable."""
        if self.verdict not in ("better", "worse", "unchanged"):
            return None
        if self.verdict == "unchanged":
            return 0.0
        magnitude = abs(self.relative_change) if self.relative_change is not None else math.inf
        return magnitude if self.verdict == "better" else -magnitude

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value_a": self.value_a,
            "value_b": self.value_b,
            "absolute_change": self.absolute_change,
            "relative_change": self.relative_change,
            "direction": self.direction,
            "verdict": self.verdict,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricDiff:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Recommendation:
    """What to do about moving from the first compared version to the second.

    Attributes
    ----------
    action:
        ``"upgrade"`` (switch to the second, newer version), ``"rollback"`` (switch to the
        second, older version) or ``"keep"`` (stay on the first).
    confidence:
        In [0, 1]; see :func:`diff_metrics` for the formula.
    reasoning:
        A sentence citing the metrics behind the action.
    """

    action: str
    confidence: float
    reasoning: str


@dataclass(frozen=True)
class VersionComparison:
    """The result of :meth:`ModelVersionManager.compare_versions`."""

    model_name: str
    version_a: str
    version_b: str
    metrics: list[MetricDiff] = field(default_factory=list)
    recommendation: Recommendation = field(
        default_factory=lambda: Recommendation("keep", 0.0, "")
    )

    def metric(self, name: str) -> MetricDiff:
        """The diff of one metric by name."""
        for diff in self.metrics:
            if diff.name == name:
                return diff
        raise KeyError(name)


def diff_metrics(
    metrics_a: Mapping[str, float],
    metrics_b: Mapping[str, float],
    directions: Mapping[str, str] | None = None,
) -> list[MetricDiff]:
    """The :class:`MetricDiff` of every metric present in either dict, sorted by name."""
    diffs = []
    for name in sorted(set(metrics_a) | set(metrics_b)):
        a = metrics_a.get(name)
        b = metrics_b.get(name)
        direction = metric_direction(name, directions)
        if a is None or b is None:
            diffs.append(MetricDiff(name, a, b, None, None, direction, "missing"))
            continue
        a, b = float(a), float(b)
        absolute = b - a
        relative = absolute / abs(a) if a != 0 else (0.0 if absolute == 0 else None)
        if direction is None:
            verdict = "unknown"
        elif absolute == 0:
            verdict = "unchanged"
        elif (absolute > 0) == (direction == "higher"):
            verdict = "better"
        else:
            verdict = "worse"
        diffs.append(MetricDiff(name, a, b, absolute, relative, direction, verdict))
    return diffs


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def _describe(diff: MetricDiff) -> str:
    rel = "" if diff.relative_change is None else f", {diff.relative_change:+.1%}"
    return f"{diff.name} {_fmt(diff.value_a)} -> {_fmt(diff.value_b)}{rel}"


def recommend(
    diffs: list[MetricDiff],
    *,
    b_is_newer: bool,
    significant_change: float = SIGNIFICANT_CHANGE,
) -> Recommendation:
    """Recommend switching from version a to version b, or keeping a.

    Each metric with a known direction present in both versions gives evidence
    ``s * min(1, |relative change| / significant_change)`` with ``s = +1`` when b is better,
    ``-1`` when worse and 0 when unchanged (a change from 0 counts as full evidence). The
    score is the mean evidence, in [-1, 1]. A positive score recommends switching to b:
    ``"upgrade"`` when b is the newer version, ``"rollback"`` when it is the older one; zero
    or negative recommends ``"keep"``. The confidence is ``|score|``: 1 when every metric
    moves the same way by at least ``significant_change``, near 0 for mixed or tiny changes.
    """
    comparable = [d for d in diffs if d.verdict in ("better", "worse", "unchanged")]
    if not comparable:
        skipped = [d.name for d in diffs]
        why = (
            f"metrics without a known direction or present in only one version: {skipped}"
            if skipped
            else "neither version has metrics"
        )
        return Recommendation(
            "keep", 0.0, f"No comparable metrics ({why}); keeping the current version."
        )
    evidence = []
    for d in comparable:
        if d.verdict == "unchanged":
            evidence.append(0.0)
            continue
        size = (
            1.0 if d.relative_change is None
            else min(1.0, abs(d.relative_change) / significant_change)
        )
        evidence.append(size if d.verdict == "better" else -size)
    score = sum(evidence) / len(evidence)
    better = [d for d in comparable if d.verdict == "better"]
    worse = [d for d in comparable if d.verdict == "worse"]
    parts = []
    if better:
        parts.append("better: " + "; ".join(_describe(d) for d in better))
    if worse:
        parts.append("worse: " + "; ".join(_describe(d) for d in worse))
    unchanged = [d.name for d in comparable if d.verdict == "unchanged"]
    if unchanged:
        parts.append("unchanged: " + ", ".join(unchanged))
    detail = " | ".join(parts)
    if score > 0:
        action = "upgrade" if b_is_newer else "rollback"
        head = (
            f"The second version is better on balance (score {score:+.2f} over "
            f"{len(comparable)} metrics)"
        )
    else:
        action = "keep"
        head = (
            f"The second version is not better on balance (score {score:+.2f} over "
            f"{len(comparable)} metrics)"
        )
    confidence = float(min(1.0, abs(score)))
    return Recommendation(action, confidence, f"{head}; {detail}.")
