"""Version a model, compare versions, and roll back safely after a bad release.

Run: python examples/03_model_versioning.py
"""

from __future__ import annotations

import tempfile

import numpy as np

from kaizenml.versioning import ModelVersionManager

root = tempfile.mkdtemp()
mgr = ModelVersionManager(f"sqlite:///{root}/models.db", f"{root}/artifacts")

v1 = mgr.create_version(
    "momentum",
    {"weights": np.array([0.4, 0.6]), "lags": [1, 5]},
    change_type="architecture",
    metrics={"sharpe": 1.2, "max_drawdown": 0.12},
)
v2 = mgr.create_version(
    "momentum",
    {"weights": np.array([0.5, 0.5]), "lags": [1, 5]},
    change_type="hyperparameter",
    metrics={"sharpe": 1.4, "max_drawdown": 0.11},
)
mgr.set_active_version("momentum", v2.version, reason="better Sharpe")
v3 = mgr.create_version(
    "momentum",
    {"weights": np.array([0.9, 0.1]), "lags": [1, 5]},
    change_type="retrain",
    metrics={"sharpe": 0.6, "max_drawdown": 0.25},
)
mgr.set_active_version("momentum", v3.version, reason="weekly retrain")
print("versions:", [v.version for v in mgr.get_version_history("momentum")])

cmp = mgr.compare_versions("momentum", v3.version, v2.version)
print(
    f"compare {v3.version} -> {v2.version}: {cmp.recommendation.action} "
    f"({cmp.recommendation.confidence:.2f}) {cmp.recommendation.reasoning}"
)

plan = mgr.create_rollback_plan("momentum", v2.version, reason="drawdown doubled")
for check in plan.checks:
    print(f"  [{'PASS' if check.passed else 'FAIL'}] {check.name}: {check.message}")
result = mgr.execute_rollback("momentum", plan.plan_id)
print("rollback:", result.success, "-> active", mgr.get_active_version("momentum").version)
print("weights of the active version:", mgr.load_artifact("momentum", v2.version)["weights"])
