"""The records returned by the version manager (plain frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._compare import MetricDiff

__all__ = [
    "DeploymentRecord",
    "ModelVersion",
    "RollbackCheck",
    "RollbackImpact",
    "RollbackPlan",
    "RollbackResult",
    "to_datetime",
]


def to_datetime(seconds: float | None) -> datetime | None:
    """UTC datetime from stored epoch seconds."""
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


@dataclass(frozen=True)
class ModelVersion:
    """One stored version of a model.

    Attributes
    ----------
    model_name, version:
        The model and its SemVer version string (``"1.2.0"``).
    change_type:
        What changed: ``"architecture"``, ``"hyperparameter"``, ``"retrain"``, ``"bugfix"``,
        ``"data"`` (or ``"initial"`` for the first version).
    parent_version:
        The version this one was bumped from (``None`` for the first).
    description, created_by, created_at:
        Free text, author, and the UTC creation time.
    metrics, tags:
        ``name -> float`` and ``key -> str``.
    artifact_path:
        The folder holding the artifact files and ``manifest.json``.
    checksum:
        sha256 of ``manifest.json`` (which holds the sha256 of every file).
    is_active:
        Whether this is the model's active version when the record was read.
    serializer:
        ``None`` for numpy + JSON artifacts, else ``"pickle"`` or ``"joblib"``.
    """

    model_name: str
    version: str
    change_type: str
    parent_version: str | None
    description: str
    created_by: str
    created_at: datetime
    metrics: dict[str, float]
    tags: dict[str, str]
    artifact_path: str
    checksum: str
    is_active: bool
    serializer: str | None = None


@dataclass(frozen=True)
class DeploymentRecord:
    """One change of a model's active version (the audit log).

    ``action`` is ``"activate"`` for :meth:`~ModelVersionManager.set_active_version` and
    ``"rollback"`` for an executed rollback plan (whose id is ``rollback_plan_id``).
    """

    model_name: str
    from_version: str | None
    to_version: str
    changed_by: str
    changed_at: datetime
    reason: str
    action: str
    rollback_plan_id: int | None = None


@dataclass(frozen=True)
class RollbackCheck:
    """One validation check of a rollback plan.

    A failed check with ``blocking=True`` stops the rollback; a failed non-blocking check
    (a warning, such as a major-version change) only raises the risk level.
    """

    name: str
    passed: bool
    message: str
    blocking: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "message": self.message,
                "blocking": self.blocking}


@dataclass(frozen=True)
class RollbackImpact:
    """The expected effect of a rollback: metric changes from the active version to the
    target, the size of the version jump and a risk level ``"low"``/``"medium"``/``"high"``."""

    metric_changes: list[MetricDiff]
    version_jump: str
    risk: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric_changes": [d.to_dict() for d in self.metric_changes],
            "version_jump": self.version_jump,
            "risk": self.risk,
        }


@dataclass(frozen=True)
class RollbackPlan:
    """A persisted rollback plan: status ``"pending"``, then ``"executed"`` or ``"failed"``."""

    plan_id: int
    model_name: str
    from_version: str | None
    to_version: str
    reason: str
    created_by: str
    created_at: datetime
    status: str
    checks: list[RollbackCheck]
    impact: RollbackImpact
    executed_at: datetime | None = None
    result_message: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every blocking check passed."""
        return all(c.passed for c in self.checks if c.blocking)

    @property
    def failed_checks(self) -> list[RollbackCheck]:
        return [c for c in self.checks if not c.passed]


@dataclass(frozen=True)
class RollbackResult:
    """The outcome of :meth:`~ModelVersionManager.execute_rollback`."""

    success: bool
    model_name: str
    from_version: str | None
    to_version: str
    message: str
    plan: RollbackPlan
