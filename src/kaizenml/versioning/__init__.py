"""Model versioning: semantic versions, safe artifacts, active version, comparison and rollback.

A :class:`ModelVersionManager` stores every version of a model as a checksummed artifact folder
(``<root>/<model>/<version>/``: ``arrays.npz`` + ``manifest.json``) and a row
in the shared database; it tracks the active version with an audit log, compares versions'
metrics, validates and executes rollbacks, and checkpoints training loops.

Examples
--------
>>> import numpy as np, tempfile
>>> from kaizenml.versioning import ModelVersionManager
>>> tmp = tempfile.mkdtemp()
>>> mgr = ModelVersionManager(f"sqlite:///{tmp}/k.db", f"{tmp}/artifacts")
>>> _ = mgr.create_version("mr", {"w": np.ones(2)}, change_type="architecture",
...                        metrics={"sharpe": 1.0})
>>> _ = mgr.create_version("mr", {"w": np.ones(2)}, change_type="retrain",
...                        metrics={"sharpe": 1.4})
>>> mgr.compare_versions("mr", "1.0.0", "1.1.0").recommendation.action
'upgrade'
"""

from __future__ import annotations

from ._checkpoint import Checkpoint, Checkpointer
from ._compare import (
    MetricDiff,
    Recommendation,
    VersionComparison,
    diff_metrics,
    metric_direction,
    recommend,
)
from ._history import VersionHistory
from ._manager import (
    CHANGE_TYPES,
    ModelVersionManager,
    get_model_version_manager,
    next_version_number,
)
from ._records import (
    DeploymentRecord,
    ModelVersion,
    RollbackCheck,
    RollbackImpact,
    RollbackPlan,
    RollbackResult,
)
from ._semver import Version

__all__ = [
    "CHANGE_TYPES",
    "Checkpoint",
    "Checkpointer",
    "DeploymentRecord",
    "MetricDiff",
    "ModelVersion",
    "ModelVersionManager",
    "Recommendation",
    "RollbackCheck",
    "RollbackImpact",
    "RollbackPlan",
    "RollbackResult",
    "Version",
    "VersionComparison",
    "VersionHistory",
    "diff_metrics",
    "get_model_version_manager",
    "metric_direction",
    "next_version_number",
    "recommend",
]
